//! A pull-through mirror of an HTTP origin, kept in an S3 (or S3-compatible) bucket.
//!
//! ```text
//! AWS_BUCKET_NAME=mirror AWS_REGION=us-east-1 \
//! AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//! AWS_ENDPOINT=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true \
//!   cargo run --features aws --example s3_mirror -- --origin https://origin.example/ [--listen 127.0.0.1:8080]
//! ```
//!
//! The bucket, endpoint and credentials come from the environment with object_store's usual
//! names (`AmazonS3Builder::from_env`: `AWS_BUCKET_NAME`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`,
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ...). S3 is reached through `HyperConnector`, so the
//! build has neither reqwest nor aws-lc.
//!
//! `ServeStore` serves the bucket (ranges, conditional requests, stored metadata). A `GET`
//! for an object the bucket lacks is pulled from `--origin`, streamed to the client and
//! written into the bucket (multipart with 8 MiB parts above 8 MiB), so the next request is
//! a hit served from S3:
//!
//! ```text
//! curl -i http://127.0.0.1:8080/img/cat.jpg                      # x-origin-pull: pulled
//! curl -i -H 'Range: bytes=0-99' http://127.0.0.1:8080/img/cat.jpg   # 206 from the bucket
//! ```
//!
//! Ctrl-C stops the server gracefully (in-flight responses are finished first).

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use tower_origin_pull::server::Server;
use tower_origin_pull::{HttpOrigin, HyperConnector, OriginPullBuilder, Rule, ServeStore};

const USAGE: &str = "\
usage: s3_mirror --origin <URL> [--listen <ADDR>]

  --origin <URL>    origin base URL, e.g. https://origin.example/ (http or https)
  --listen <ADDR>   address to listen on (default 127.0.0.1:8080)
  -h, --help        show this help

The bucket and its credentials come from the AWS_* environment variables that
object_store's AmazonS3Builder::from_env reads (AWS_BUCKET_NAME, AWS_REGION,
AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP, ...).";

struct Args {
    origin: HttpOrigin,
    origin_url: String,
    listen: String,
}

/// Parse the command line, or say why not.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut origin, mut listen) = (None, None);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--origin" => &mut origin,
            "--listen" => &mut listen,
            other => return Err(format!("unexpected argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{arg} given twice"));
        }
    }
    let origin_url: String = origin.ok_or("--origin is required")?;
    let origin = HttpOrigin::new(&origin_url).map_err(|e| e.to_string())?;
    Ok(Some(Args {
        origin,
        origin_url,
        listen: listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
    }))
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
    let bucket: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_http_connector(HyperConnector::new())
            .build()
            .map_err(|e| format!("S3 settings from the environment: {e}"))?,
    );

    // ServeStore reads the very bucket the layer writes into, so a pulled object is a hit
    // from then on.
    let app = Router::new()
        .fallback_service(ServeStore::new(bucket.clone()))
        .layer(
            OriginPullBuilder::from_object_store(bucket.clone())
                .rule(Rule::new(args.origin))
                .build(),
        );

    // The crate's hardened server loop: header-read, idle and send timeouts, a connection
    // cap and a backlog of 1,024 (see `tower_origin_pull::server`).
    let addr: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let listening = Server::bind(addr)
        .listen()
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    println!(
        "serving {bucket} on http://{}/, pulling misses from {} (Ctrl-C to stop)",
        listening.local_addr()?,
        args.origin_url,
    );
    listening
        .serve(app)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
            println!("shutting down");
        })
        .await?;
    Ok(())
}
