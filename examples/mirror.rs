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
//! - `--config FILE`   TOML or JSON (see `tower_origin_pull::config`; its `[server]` section
//!   sets the server's limits and admin token, below)
//! - `--listen ADDR`   default `127.0.0.1:8080`
//! - `--origin URL`    the origin (one host)
//! - `--store URL`     `file:///path`, `memory://`, `s3://bucket/prefix` (feature `aws`)
//! - `--mode MODE`     `sync` (default), `async`, `redirect`, `proxy`
//! - `--grace SECS`    how long Ctrl-C (or SIGTERM) lets requests in flight finish, then how
//!   long it lets the fills still running finish before aborting them (10 each)
//! - `--drain SECS`    on Ctrl-C or SIGTERM, how long `/_origin_pull/ready` answers `503`
//!   while the server still serves everything, so a balancer moves traffic away before
//!   the server stops accepting (5; `0` skips it; a second signal cuts it short)
//! - `--no-layer`      serve the store without the origin-pull layer (the bare inner
//!   service, for benchmarks: `benches/README.md`)
//! - `--admin-token TOKEN`, `--admin-token-env NAME`: every `/_origin_pull/*` endpoint then
//!   requires `Authorization: Bearer TOKEN` (`401` otherwise), except the two probes
//!   below. `--admin-token-env` reads the
//!   token from the environment variable `NAME`, which keeps it out of the process list
//!   (`--admin-token` is visible there to every local user). At least 16 characters.
//! - `--threads N`     runtime worker threads (default: the CPUs the process may use, its
//!   affinity mask); `1` runs a single-threaded runtime, as nginx's one worker
//! - `--pool-reads`    look local objects up through tokio's blocking pool; by default small
//!   ones are read on the runtime thread (`ServeStore::inline_local_reads`)
//! - `--header-read-timeout SECS` (10), `--idle-timeout SECS` (60), `--send-timeout SECS`
//!   (60), `--max-connections N` (1024), `--backlog N` (1024), `--max-header-size BYTES`
//!   (65536): the server's limits (`tower_origin_pull::server` says what each bounds);
//!   `SECS` may be fractional (`0.5`).
//! - `--warmup FILE`   at start, pull the keys listed in `FILE` (one a line; blank lines and
//!   `#` comments skipped) in the background, through the rules and the fill bound; its
//!   progress shows on the page and in the metrics below, its end in the log
//! - `--history-resolution SECS`  how often the progress page samples the progress (60)
//!
//! The server is `tower_origin_pull::server::Server`: HTTP/1.1 and HTTP/2, a client must
//! send a request head within the header-read timeout (Slowloris connections are closed),
//! idle connections close after the idle timeout, at most `--max-connections` are served at
//! once (more wait in the listen queue of `--backlog`), heads over `--max-header-size` get
//! `431`. At start the process raises its open-file limit to the hard limit (every
//! connection is a file descriptor); if that still leaves fewer than 64 descriptors beside
//! `--max-connections`, the cap is lowered to fit, with a warning.
//!
//! `GET /_origin_pull/health` (liveness: `200` while the process runs) and
//! `GET /_origin_pull/ready` (readiness: `200` when a cheap store call, a `HEAD` of the key
//! `.origin-pull-ready`, answers within 2 s (`NotFound` counts as reachable) and the mirror
//! is not draining; `503` otherwise) are for balancers and orchestrators: they answer
//! without the admin token, reveal nothing beyond `ok`/`draining`/`store unreachable`, and
//! are never pulled from the origin.
//!
//! `GET /_origin_pull/status` answers the migration's progress as JSON: requests served
//! from the store versus pulled, keys and bytes pulled, fills in flight, background queue.
//! It is open unless an admin token is set. With an admin token (only then),
//! `POST /_origin_pull/purge/<key>` purges the key (removed from the store, no tombstone: the
//! next miss pulls it again) and `POST /_origin_pull/purge/<key>?repull=1` also pulls it
//! again at once.
//! With the feature `prometheus`, `GET /_origin_pull/metrics` answers the same and more as
//! Prometheus text (`tower_origin_pull::prometheus`); with the feature `monitor`,
//! `GET /_origin_pull/` is the progress page (`tower_origin_pull::monitor`). The metrics
//! are under `/_origin_pull/`, not at `/metrics`, because every other path is an object
//! key (a bucket may hold a key `metrics`). All three are open unless an admin token is
//! set, then they need it like every admin endpoint: they tell the same as `status`
//! (traffic, failing keys), and Prometheus sends a bearer token as it scrapes
//! (`authorization: { credentials_file: ... }`). Other `/_origin_pull/*` paths are `404`
//! (never pulled from the origin). Logs go to stderr (`RUST_LOG=debug` for more). On Ctrl-C or
//! SIGTERM `ready` turns `503` for `--drain`, then the server stops accepting, requests in flight get `--grace` to finish, then
//! fills still running get `--grace`, the rest are aborted: nothing partial is left.
//!
//! At start, for a `file://` store, staging files that a killed process left behind (older
//! than `store.staging_max_age`, one day by default; see `tower_origin_pull::sweep`) are
//! removed and the result logged. The webhook of `[events]`, if any, is started with the
//! layer (`Config::build`); its counters are logged at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use tower_layer::Layer;
use tower_origin_pull::config::{Config, OriginConfig, RuleConfig, StoreConfig};
#[cfg(feature = "monitor")]
use tower_origin_pull::monitor::{Monitor, MonitorOptions};
use tower_origin_pull::server::{AdminToken, Server};
use tower_origin_pull::warmup::Warmup;
use tower_origin_pull::{OriginPullLayer, ServeStore, sweep};

// mimalloc rather than the system allocator: by callgrind (`benches/profile_hits.sh`), about
// 10 % fewer instructions per 4 KiB hit and per async redirect than glibc's malloc, whose
// per-request cost also swung by hundreds of instructions with unrelated changes (when hyper's
// read buffer is freed, `malloc_consolidate`). See BENCHMARKS.md, "The allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: mirror [--config FILE] [--listen ADDR] [--origin URL] \
                     [--store URL] [--mode sync|async|redirect|proxy] [--grace SECS] \
                     [--drain SECS] \
                     [--no-layer] [--admin-token TOKEN | --admin-token-env NAME] \
                     [--header-read-timeout SECS] [--idle-timeout SECS] \
                     [--send-timeout SECS] [--max-connections N] [--backlog N] \
                     [--max-header-size BYTES] [--threads N] [--pool-reads] \
                     [--warmup FILE] [--history-resolution SECS] \
                     [--spool-max-bytes SIZE]";

struct Args {
    config: Option<String>,
    listen: SocketAddr,
    origin: Option<String>,
    store: Option<String>,
    mode: Option<String>,
    grace: Duration,
    /// `--grace` given: it then overrides `[server] shutdown_grace` too.
    grace_given: bool,
    /// How long `ready` answers `503` before the server stops accepting.
    drain: Duration,
    no_layer: bool,
    admin_token: Option<String>,
    admin_token_env: Option<String>,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    max_connections: Option<usize>,
    backlog: Option<u32>,
    max_header_size: Option<usize>,
    /// Runtime worker threads; 1 is a single-threaded runtime.
    threads: usize,
    /// Look local objects up through tokio's blocking pool instead of inline.
    pool_reads: bool,
    /// A file of keys (one a line) to warm up at start.
    warmup: Option<String>,
    /// How often the progress page samples the progress.
    history_resolution: Duration,
    /// `spool_max_bytes` of the config (a size: `0` turns spools off).
    spool_max_bytes: Option<String>,
}

/// `SECS` as a duration (fractions allowed).
fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag}: {text:?} is not a positive number of seconds"))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        listen: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        origin: None,
        store: None,
        mode: None,
        grace: Duration::from_secs(10),
        grace_given: false,
        drain: Duration::from_secs(5),
        no_layer: false,
        admin_token: None,
        admin_token_env: None,
        header_read_timeout: None,
        idle_timeout: None,
        send_timeout: None,
        max_connections: None,
        backlog: None,
        max_header_size: None,
        // The CPUs this process may run on (its affinity mask, so `taskset -c 0` gives 1).
        threads: tower_origin_pull::server::default_threads(),
        pool_reads: false,
        warmup: None,
        history_resolution: Duration::from_secs(60),
        spool_max_bytes: None,
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
                args.grace_given = true;
            }
            "--drain" => {
                let text = value()?;
                args.drain = text
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| format!("--drain: {text:?} is not a number of seconds"))?;
            }
            "--no-layer" => args.no_layer = true,
            "--admin-token" => args.admin_token = Some(value()?),
            "--admin-token-env" => args.admin_token_env = Some(value()?),
            "--header-read-timeout" => args.header_read_timeout = Some(seconds(&flag, &value()?)?),
            "--idle-timeout" => args.idle_timeout = Some(seconds(&flag, &value()?)?),
            "--send-timeout" => args.send_timeout = Some(seconds(&flag, &value()?)?),
            "--max-connections" => args.max_connections = Some(number(&flag, &value()?)?),
            "--backlog" => args.backlog = Some(number(&flag, &value()?)?),
            "--max-header-size" => args.max_header_size = Some(number(&flag, &value()?)?),
            "--threads" => {
                args.threads = number(&flag, &value()?)?;
                if args.threads == 0 {
                    return Err("--threads: at least 1".to_owned());
                }
            }
            "--pool-reads" => args.pool_reads = true,
            "--warmup" => args.warmup = Some(value()?),
            "--history-resolution" => args.history_resolution = seconds(&flag, &value()?)?,
            "--spool-max-bytes" => args.spool_max_bytes = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.admin_token.is_some() && args.admin_token_env.is_some() {
        return Err("give --admin-token or --admin-token-env, not both".to_owned());
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
    if let Some(size) = &args.spool_max_bytes {
        config.spool_max_bytes = Some(size.clone());
    }
    Ok(config)
}

fn main() {
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
    let runtime = tower_origin_pull::server::runtime(args.threads);
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
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
    // Small local objects are looked up on the runtime thread, as nginx reads them (see
    // `ServeStore::inline_local_reads`); `--pool-reads` hands every lookup to the pool.
    let mut serve_store = ServeStore::new(store.clone()).inline_local_reads(!args.pool_reads);
    if let Some(prefix) = config.store.key_prefix() {
        serve_store = serve_store.with_prefix(prefix);
    }
    let server_config = config.server.clone().unwrap_or_default();
    let token = match (&args.admin_token, &args.admin_token_env) {
        (Some(token), _) => Some(AdminToken::new(token)?),
        (None, Some(name)) => Some(AdminToken::from_env(name)?),
        (None, None) => AdminToken::from_config(&server_config)?,
    };
    #[cfg(feature = "monitor")]
    let monitor = Monitor::start(
        layer.handle(),
        MonitorOptions::default().with_resolution(args.history_resolution),
    )?;
    let admin = admin_router(
        &layer,
        token.as_ref(),
        #[cfg(feature = "monitor")]
        monitor.clone(),
    )?;
    if let Some(path) = &args.warmup {
        start_warmup(
            &layer,
            path,
            #[cfg(feature = "monitor")]
            monitor,
        )?;
    }
    // The probes are outside the token (balancers and orchestrators call them; they reveal
    // nothing): exact routes win over the admin router's catch-all.
    let draining = Arc::new(AtomicBool::new(false));
    let marker = match config.store.key_prefix() {
        Some(prefix) => prefix.join(READY_MARKER),
        None => Path::from(READY_MARKER),
    };
    let probe = Probe {
        store: store.clone(),
        marker,
        draining: draining.clone(),
    };
    let app = Router::new()
        .route("/_origin_pull/health", get(|| async { "ok\n" }))
        .route(
            "/_origin_pull/ready",
            get(move || {
                let probe = probe.clone();
                async move { probe.ready().await }
            }),
        )
        .merge(admin);
    // The layer wraps the store's service only (the admin routes are not objects), so
    // axum boxes the layered service once, as it boxes the bare one. `--no-layer`: the
    // same router without the layer, to measure what the layer costs.
    let app = if args.no_layer {
        app.fallback_service(serve_store)
    } else {
        app.fallback_service(layer.layer(serve_store))
    };

    let server = fit_open_file_limit(server(&args, &server_config)?);
    let server_max = server.max_connections();
    let listening = server.listen()?;
    tracing::info!(
        listen = %listening.local_addr()?,
        store = %config.store.url,
        rules = config.rules.len(),
        max_connections = server_max,
        admin_token = token.is_some(),
        "mirror serving"
    );
    let drain = args.drain;
    listening
        .serve(app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.store(true, Ordering::SeqCst);
            if !drain.is_zero() {
                tracing::info!(
                    drain = ?drain,
                    "draining: ready answers 503, still serving (a second signal cuts it short)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(drain) => {}
                    _ = shutdown_signal() => {}
                }
            }
            tracing::info!("shutting down: no new connections, requests in flight finish");
        })
        .await?;
    let report = layer.handle().shutdown(args.grace).await;
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

/// Every `/_origin_pull/*` path but the probes: `status`, `metrics` (feature `prometheus`),
/// the progress page at `/_origin_pull/` (feature `monitor`); unknown ones are `404`, never
/// pulled. Behind the token when there is one. Full paths, not a nested router: a nested
/// router's `/` does not take `/_origin_pull/`.
fn admin_router(
    layer: &OriginPullLayer,
    token: Option<&AdminToken>,
    #[cfg(feature = "monitor")] monitor: Monitor,
) -> Result<Router, BoxError> {
    let status_layer = layer.clone();
    #[allow(unused_mut)]
    let mut admin = Router::new().route(
        "/_origin_pull/status",
        get(move || {
            let layer = status_layer.clone();
            async move { Json(status(&layer)) }
        }),
    );
    #[cfg(feature = "prometheus")]
    {
        let exporter = tower_origin_pull::prometheus::PrometheusExporter::install()?;
        let handle = layer.handle();
        admin = admin.route(
            "/_origin_pull/metrics",
            get(move || {
                let text = exporter.render(&handle);
                async move {
                    let content_type = tower_origin_pull::prometheus::CONTENT_TYPE;
                    ([(axum::http::header::CONTENT_TYPE, content_type)], text)
                }
            }),
        );
    }
    #[cfg(feature = "monitor")]
    {
        let page = get(move || {
            let page = monitor.render_html();
            async move { axum::response::Html(page) }
        });
        admin = admin
            .route("/_origin_pull/", page.clone())
            .route("/_origin_pull", page);
    }
    // Purging changes the store: only behind a token.
    if token.is_some() {
        let handle = layer.handle();
        admin = admin.route(
            "/_origin_pull/purge/{*key}",
            post(
                move |axum::extract::Path(key): axum::extract::Path<String>,
                      axum::extract::RawQuery(query): axum::extract::RawQuery| {
                    let handle = handle.clone();
                    async move { purge(&handle, &key, query.as_deref() == Some("repull=1")).await }
                },
            ),
        );
    }
    let admin = admin.route(
        "/_origin_pull/{*rest}",
        any(|| async { (StatusCode::NOT_FOUND, "no such admin endpoint\n") }),
    );
    Ok(match token {
        Some(token) => admin.route_layer(token.layer()),
        None => admin,
    })
}

/// Warm up the keys listed in `path` (one a line; blank lines and `#` comments skipped) in
/// the background, through the layer's rules and fill bound; the progress page and
/// `/metrics` show how far it is, the log its end.
fn start_warmup(
    layer: &OriginPullLayer,
    path: &str,
    #[cfg(feature = "monitor")] monitor: Monitor,
) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--warmup {path}: {e}"))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let warmup = Warmup::new(layer.handle());
    tokio::spawn(async move {
        let report = warmup
            .run(keys, |_p| {
                #[cfg(feature = "monitor")]
                monitor.record_warmup(_p);
            })
            .await;
        let p = &report.progress;
        tracing::info!(
            pulled = p.pulled,
            skipped = p.skipped,
            failed = p.failed,
            bytes = p.bytes,
            "warm-up finished"
        );
        for (key, why) in report.failures.iter().take(20) {
            tracing::warn!(%key, %why, "warm-up");
        }
    });
    Ok(())
}

/// The server: `[server]` of the config file, then the flags.
fn server(
    args: &Args,
    config: &tower_origin_pull::config::ServerConfig,
) -> Result<Server, BoxError> {
    let mut server = Server::bind(args.listen)
        .with_shutdown_grace(args.grace)
        .with_config(config)?;
    if args.grace_given {
        server = server.with_shutdown_grace(args.grace);
    }
    if let Some(d) = args.header_read_timeout {
        server = server.with_header_read_timeout(d);
    }
    if let Some(d) = args.idle_timeout {
        server = server.with_idle_timeout(d);
    }
    if let Some(d) = args.send_timeout {
        server = server.with_send_timeout(d);
    }
    if let Some(n) = args.max_connections {
        server = server.with_max_connections(n);
    }
    if let Some(n) = args.backlog {
        server = server.with_backlog(n);
    }
    if let Some(n) = args.max_header_size {
        server = server.with_max_header_size(n);
    }
    Ok(server)
}

/// The key `ready` asks the store about (a `HEAD`; it need not exist).
const READY_MARKER: &str = ".origin-pull-ready";

/// How long `ready` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/_origin_pull/ready` checks: the store answers, and the mirror is not draining.
#[derive(Clone)]
struct Probe {
    store: Arc<dyn ObjectStore>,
    marker: Path,
    draining: Arc<AtomicBool>,
}

impl Probe {
    async fn ready(&self) -> (StatusCode, &'static str) {
        if self.draining.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "draining\n");
        }
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        match tokio::time::timeout(READY_TIMEOUT, self.store.get_opts(&self.marker, head)).await {
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => (StatusCode::OK, "ok\n"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ready: the store is unreachable");
                (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
            }
            Err(_) => {
                tracing::warn!(timeout = ?READY_TIMEOUT, "ready: the store did not answer");
                (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
            }
        }
    }
}

/// Ctrl-C, or SIGTERM (what service managers and container runtimes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Room kept in the open-file limit beside the connections: the store's files, the origins'
/// connections, the runtime's own descriptors.
const SPARE_FILES: u64 = 64;

/// Raise the soft open-file limit to the hard one (every connection is a file descriptor,
/// and many systems start processes at 1,024), then fit the connection cap under it with
/// room to spare: a connection accepted without a descriptor left to open its object would
/// fail.
fn fit_open_file_limit(server: Server) -> Server {
    let Some(files) = raise_open_file_limit() else {
        return server;
    };
    let fits = usize::try_from(files.saturating_sub(SPARE_FILES).max(1)).unwrap_or(usize::MAX);
    if fits < server.max_connections() {
        tracing::warn!(
            open_files = files,
            max_connections = fits,
            "the open-file limit leaves room for fewer connections than the cap: lowered \
             (raise `ulimit -n` to serve more)"
        );
        return server.with_max_connections(fits);
    }
    server
}

/// The soft open-file limit after raising it to the hard one, if it can be read.
#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                limit.rlim_cur = before;
            }
        }
        if limit.rlim_cur != before {
            tracing::debug!(
                from = before,
                to = limit.rlim_cur,
                "raised the open-file limit"
            );
        }
    }
    #[allow(clippy::useless_conversion)]
    Some(u64::from(limit.rlim_cur))
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
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

/// `POST /_origin_pull/purge/<key>[?repull=1]`: remove the key from the store (no
/// tombstone), and with `repull=1` pull it again at once.
async fn purge(
    handle: &tower_origin_pull::OriginPullHandle,
    key: &str,
    repull: bool,
) -> (StatusCode, String) {
    if let Err(e) = handle.purge(key).await {
        let code = match e {
            tower_origin_pull::Error::Config { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return (code, format!("purge of {key} failed: {e}\n"));
    }
    tracing::info!(%key, repull, "purged");
    if !repull {
        return (StatusCode::OK, format!("purged {key}\n"));
    }
    let report = tower_origin_pull::warmup::Warmup::new(handle.clone())
        .run([key.to_owned()], |_| {})
        .await;
    match report.failures.first() {
        None => (StatusCode::OK, format!("purged {key}, pulled again\n")),
        Some((_, why)) => (
            StatusCode::BAD_GATEWAY,
            format!("purged {key}; pulling it again failed: {why}\n"),
        ),
    }
}

fn status(layer: &OriginPullLayer) -> serde_json::Value {
    let p = layer.handle().progress();
    let q = layer.handle().background_stats();
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
            "passed_through": p.passed_through,
            "unavailable": p.unavailable,
            "inner_errors": p.inner_errors,
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
