//! An S3 endpoint over any store that pulls the objects it lacks from an origin: a
//! self-hosted Sippy. S3 clients (`aws`, boto3, rclone, object_store) point at it.
//!
//! ```text
//! S3_SECRET=... cargo run --features s3-front,aws --example s3_gateway -- \
//!     --listen 127.0.0.1:9000 --store file:///srv/new --bucket media \
//!     --origin https://old-cdn.example/ --access-key gateway --secret-key-env S3_SECRET
//! aws --endpoint-url http://127.0.0.1:9000 s3 cp s3://media/img/cat.jpg .
//! ```
//!
//! Flags:
//!
//! - `--listen ADDR` (default `127.0.0.1:9000`)
//! - `--store URL`: where the bucket lives: `file:///path`, `memory://`, `s3://bucket/prefix`
//!   (credentials from the `AWS_*` environment variables)
//! - `--bucket NAME`: the bucket name clients use
//! - `--origin URL`: `http(s)://host/base/` (an HTTP origin), or a bucket origin: `s3://...`,
//!   `file:///path`, `memory://`. Misses of `NAME/k` are pulled from `<origin>/k`.
//! - `--access-key ID` and `--secret-key SECRET` or `--secret-key-env NAME` (the secret
//!   from that environment variable, kept out of the process list): SigV4 credentials
//!   clients sign with
//! - `--domain DOMAIN`: also accept virtual-hosted-style requests for `NAME.DOMAIN`
//! - `--list-merge`: `ListObjectsV2` also lists the bucket origin's keys not copied yet
//!   (one origin listing per page)
//! - `--config FILE`: the origin-pull layer from a configuration file
//!   (`tower_origin_pull::config`) instead of `--origin`; its rules see path-style keys
//!   `NAME/k` (use `rewrite.strip_prefix = "NAME/"`), and it should set
//!   `store.tombstones = true` so deletes stick.
//!
//! Deleted keys leave a tombstone and are not pulled back. The server is
//! `tower_origin_pull::server::Server`; Ctrl-C stops it gracefully.

use std::process::ExitCode;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use tower_layer::Layer;
use tower_origin_pull::config::{Config, StoreConfig};
use tower_origin_pull::s3::{S3Bucket, S3Front, pull_rule};
use tower_origin_pull::server::Server;
use tower_origin_pull::{BucketOrigin, BucketStore, HttpOrigin, OriginPullBuilder};

const USAGE: &str = "\
usage: s3_gateway --store URL --bucket NAME (--origin URL | --config FILE)
                  --access-key ID (--secret-key SECRET | --secret-key-env NAME)
                  [--listen ADDR] [--domain DOMAIN] [--list-merge]";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    store: Option<String>,
    bucket: Option<String>,
    origin: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    secret_key_env: Option<String>,
    domain: Option<String>,
    config: Option<String>,
    list_merge: bool,
}

/// Parse the command line, or say why not (`None`: help).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args::default();
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--list-merge" => {
                out.list_merge = true;
                continue;
            }
            "--listen" => &mut out.listen,
            "--store" => &mut out.store,
            "--bucket" => &mut out.bucket,
            "--origin" => &mut out.origin,
            "--access-key" => &mut out.access_key,
            "--secret-key" => &mut out.secret_key,
            "--secret-key-env" => &mut out.secret_key_env,
            "--domain" => &mut out.domain,
            "--config" => &mut out.config,
            other => return Err(format!("unexpected argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{arg} given twice"));
        }
    }
    Ok(Some(out))
}

/// The store a URL names, its `s3://bucket/prefix` path (or `prefix`) applied.
fn open(url: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let mut config = StoreConfig::default();
    config.url = url.to_owned();
    let store = config.open().map_err(|e| e.to_string())?;
    Ok(match config.key_prefix() {
        Some(prefix) if !prefix.as_ref().is_empty() => Arc::new(PrefixStore::new(store, prefix)),
        _ => store,
    })
}

fn secret(args: &Args) -> Result<String, String> {
    match (&args.secret_key, &args.secret_key_env) {
        (Some(secret), None) => Ok(secret.clone()),
        (None, Some(name)) => {
            std::env::var(name).map_err(|_| format!("--secret-key-env: {name} is not set"))
        }
        _ => Err("give one of --secret-key and --secret-key-env".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let name = args.bucket.clone().ok_or("--bucket is required")?;
    let store = open(args.store.as_deref().ok_or("--store is required")?)?;
    let access = args.access_key.clone().ok_or("--access-key is required")?;
    let mut bucket = S3Bucket::behind_layer(store.clone(), &name);
    let layer = match (&args.config, &args.origin) {
        (Some(file), None) => Config::load(file)?.build(Some(store.clone()))?.layer,
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            let rule = pull_rule(&name, HttpOrigin::new(url)?);
            OriginPullBuilder::new(BucketStore::new(store.clone()).with_tombstones(true))
                .rule(rule)
                .build()
        }
        (None, Some(url)) => {
            let origin = open(url)?;
            if args.list_merge {
                bucket = bucket.list_merge(origin.clone(), Path::default());
            }
            let rule = pull_rule(&name, BucketOrigin::new(origin));
            OriginPullBuilder::new(BucketStore::new(store.clone()).with_tombstones(true))
                .rule(rule)
                .build()
        }
        _ => return Err("give one of --origin and --config".into()),
    };
    let mut front = S3Front::builder()
        .bucket(name.clone(), bucket)
        .key(access, secret(&args)?)
        .pull_handle(layer.handle());
    if let Some(domain) = &args.domain {
        front = front.domain(domain.clone());
    }
    let front = front.build()?;
    let service = front.path_style().layer(layer.layer(front));
    let listen = args.listen.as_deref().unwrap_or("127.0.0.1:9000");
    let listening = Server::bind(listen.parse()?).listen()?;
    println!(
        "S3 bucket {name} on http://{}/ (Ctrl-C to stop)",
        listening.local_addr()?
    );
    listening
        .serve(service)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
            println!("shutting down");
        })
        .await?;
    Ok(())
}
