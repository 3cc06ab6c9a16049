//! A ready mirror server: `ServeStore` over a store, wrapped in the origin-pull layer, with a
//! JSON status endpoint and graceful shutdown.
//!
//! ```text
//! cargo run --example mirror -- --origin http://127.0.0.1:9000/ --store file:///tmp/mirror
//! cargo run --example mirror -- --config mirror.toml
//! ```
//!
//! Flags (each overrides the config file; without `--config` they build a one-rule config):
//!
//! - `--config FILE`   TOML or JSON (see `tower_origin_pull::config`)
//! - `--listen ADDR`   default `127.0.0.1:8080`
//! - `--origin URL`    the origin (one host)
//! - `--store URL`     `file:///path`, `memory://`, `s3://bucket/prefix` (feature `aws`)
//! - `--mode MODE`     `sync` (default), `async`, `redirect`, `proxy`
//! - `--grace SECS`    how long Ctrl-C lets fills in flight finish before aborting them (10)
//! - `--no-layer`      serve the store without the origin-pull layer (the bare inner
//!   service, for benchmarks: `benches/README.md`)
//!
//! `GET /_origin_pull/status` answers the migration's progress as JSON: requests served
//! from the store versus pulled, keys and bytes pulled, fills in flight, background queue.
//! Logs go to stderr (`RUST_LOG=debug` for more). On Ctrl-C the server stops accepting,
//! fills in flight get `--grace` to finish, the rest are aborted: nothing partial is left.
//!
//! At start, for a `file://` store, staging files that a killed process left behind (older
//! than `store.staging_max_age`, one day by default; see `tower_origin_pull::sweep`) are
//! removed and the result logged. The webhook of `[events]`, if any, is started with the
//! layer (`Config::build`); its counters are logged at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use tower_layer::Layer;
use tower_origin_pull::config::{Config, OriginConfig, RuleConfig, StoreConfig};
use tower_origin_pull::{OriginPullLayer, ServeStore, sweep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: mirror [--config FILE] [--listen ADDR] [--origin URL] \
                     [--store URL] [--mode sync|async|redirect|proxy] [--grace SECS] \
                     [--no-layer]";

struct Args {
    config: Option<String>,
    listen: SocketAddr,
    origin: Option<String>,
    store: Option<String>,
    mode: Option<String>,
    grace: Duration,
    no_layer: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        listen: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        origin: None,
        store: None,
        mode: None,
        grace: Duration::from_secs(10),
        no_layer: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => args.config = Some(value()?),
            "--listen" => {
                args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
            }
            "--origin" => args.origin = Some(value()?),
            "--store" => args.store = Some(value()?),
            "--mode" => args.mode = Some(value()?),
            "--grace" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--grace: {e}"))?;
                args.grace = Duration::from_secs(secs);
            }
            "--no-layer" => args.no_layer = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn config(args: &Args) -> Result<Config, BoxError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let (Some(_), Some(_)) = (&args.origin, &args.store) else {
                return Err("give --config FILE, or both --origin URL and --store URL".into());
            };
            let mut config = Config::default();
            config.store = StoreConfig::default();
            config.rules.push(RuleConfig::default());
            config
        }
    };
    if let Some(store) = &args.store {
        config.store.url = store.clone();
    }
    if let Some(origin) = &args.origin {
        for rule in &mut config.rules {
            rule.origin = OriginConfig::default();
            rule.origin.hosts = vec![origin.clone()];
        }
    }
    if let Some(mode) = &args.mode {
        for rule in &mut config.rules {
            rule.mode = Some(mode.clone());
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mirror: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(args).await {
        eprintln!("mirror: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let config = config(&args)?;
    // Validate before anything is opened or created.
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(tower_origin_pull::Error::InvalidConfig { problems }.into());
    }
    let store = config.store.open()?;
    sweep_staging(&config.store).await?;
    // Builds the layer and starts the webhook of `[events]`, if any (once: not again here).
    let built = config.build(Some(store.clone()))?;
    let (layer, webhook) = (built.layer, built.webhook);
    let mut serve_store = ServeStore::new(store);
    if let Some(prefix) = config.store.key_prefix() {
        serve_store = serve_store.with_prefix(prefix);
    }
    let status_layer = layer.clone();
    let app = Router::new().route(
        "/_origin_pull/status",
        get(move || {
            let layer = status_layer.clone();
            async move { Json(status(&layer)) }
        }),
    );
    // The layer wraps the store's service only (the status route is not an object), so
    // axum boxes the layered service once, as it boxes the bare one. `--no-layer`: the
    // same router without the layer, to measure what the layer costs.
    let app = if args.no_layer {
        app.fallback_service(serve_store)
    } else {
        app.fallback_service(layer.layer(serve_store))
    };

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        store = %config.store.url,
        rules = config.rules.len(),
        "mirror serving"
    );
    // Small responses go out at once: without TCP_NODELAY a response whose head and body
    // are written separately waits for the client's delayed ACK (about 40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: no new connections");
        })
        .await?;
    let report = layer.shutdown(args.grace).await;
    tracing::info!(
        finished = report.finished,
        aborted = report.aborted,
        dropped_queued = report.dropped_queued,
        "fills settled; nothing partial left in the store"
    );
    if let Some(webhook) = webhook {
        let stats = webhook.stats();
        tracing::info!(
            delivered = stats.delivered,
            failed = stats.failed,
            lost = stats.lost,
            "webhook"
        );
    }
    Ok(())
}

/// Remove the staging files a killed mirror left in a `file://` store, and say so.
async fn sweep_staging(store: &StoreConfig) -> Result<(), BoxError> {
    let Some((root, age)) = store.staging_sweep()? else {
        return Ok(());
    };
    let report = sweep::sweep_staging(&root, age).await?;
    tracing::info!(
        root = %root.display(),
        older_than = %humantime_like(age),
        removed = report.removed,
        bytes = report.bytes,
        kept_young = report.kept_young,
        errors = report.errors,
        "swept abandoned staging files"
    );
    for error in &report.error_samples {
        tracing::warn!(%error, "staging sweep");
    }
    Ok(())
}

/// `age` as whole seconds, for the log.
fn humantime_like(age: Duration) -> String {
    format!("{}s", age.as_secs())
}

fn status(layer: &OriginPullLayer) -> serde_json::Value {
    let p = layer.progress();
    let q = layer.background_stats();
    serde_json::json!({
        "requests": {
            "from_store": p.hits,
            "pulled": p.pulled,
            "coalesced": p.coalesced,
            "async": p.async_redirects,
            "redirect": p.redirects,
            "proxied": p.proxied,
            "failed": p.failed,
            "missed": p.missed,
        },
        "store_share": p.store_share(),
        "keys_pulled": p.keys_pulled,
        "bytes_pulled": p.bytes_pulled,
        "fills_failed": p.fills_failed,
        "fills_in_flight": p.fills_in_flight,
        "background": {
            "queued": q.queued,
            "deduplicated": q.deduplicated,
            "dropped_queue_full": q.dropped_queue_full,
        },
    })
}
