//! A pull-through mirror of an HTTP origin, kept in a local directory.
//!
//! ```text
//! cargo run --example axum_serve_dir -- --dir ./data --origin http://127.0.0.1:9000/ [--listen 127.0.0.1:8080] [--threads N]
//! ```
//!
//! tower-http's `ServeDir` serves `--dir` (created if missing). A `GET` for a file that is not
//! there is pulled from `--origin` (the request path appended to the origin URL), streamed
//! to the client and written into `--dir` at the same time, so the next request for it is a
//! plain hit served from disk. Pulled responses carry `x-origin-pull: pulled`; if the origin
//! does not have the object either, the client gets `ServeDir`'s 404.
//!
//! ```text
//! curl -i http://127.0.0.1:8080/some/file.txt   # first time: x-origin-pull: pulled
//! curl -i http://127.0.0.1:8080/some/file.txt   # then: from ./data/some/file.txt
//! ```
//!
//! `--threads N` sets the runtime's worker threads, as in `examples/mirror.rs`: by default the
//! CPUs the process may use (its affinity mask), and `1` runs a single-threaded runtime.
//!
//! Ctrl-C stops the server gracefully (in-flight responses are finished first).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use object_store::local::LocalFileSystem;
use tower_http::services::ServeDir;
use tower_layer::Layer;
use tower_origin_pull::server::Server;
use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};

// The allocator the mirror example ships with (see there), so that the side-by-side
// harness compares the two services, not two allocators.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: axum_serve_dir --dir <DIR> --origin <URL> [--listen <ADDR>] [--threads N]

  --dir <DIR>       directory served and filled with pulled objects (created if missing)
  --origin <URL>    origin base URL, e.g. http://127.0.0.1:9000/ (http or https)
  --listen <ADDR>   address to listen on (default 127.0.0.1:8080)
  --threads N       runtime worker threads (default: the CPUs the process may use);
                    1 runs a single-threaded runtime
  -h, --help        show this help";

struct Args {
    dir: PathBuf,
    origin: HttpOrigin,
    origin_url: String,
    listen: String,
    /// Runtime worker threads; 1 is a single-threaded runtime.
    threads: usize,
}

/// Parse the command line, or say why not.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut dir, mut origin, mut listen, mut threads) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--dir" => &mut dir,
            "--origin" => &mut origin,
            "--listen" => &mut listen,
            "--threads" => &mut threads,
            other => return Err(format!("unexpected argument {other:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{arg} given twice"));
        }
    }
    let dir: String = dir.ok_or("--dir is required")?;
    let origin_url: String = origin.ok_or("--origin is required")?;
    let origin = HttpOrigin::new(&origin_url).map_err(|e| e.to_string())?;
    // The default follows the affinity mask: pinned to one CPU, one thread.
    let threads = match threads {
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(format!("--threads {n:?}: a whole number, at least 1")),
        },
        None => tower_origin_pull::server::default_threads(),
    };
    Ok(Some(Args {
        dir: PathBuf::from(dir),
        origin,
        origin_url,
        listen: listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        threads,
    }))
}

fn main() -> ExitCode {
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
    let runtime = tower_origin_pull::server::runtime(args.threads);
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("creating {}: {e}", args.dir.display()))?;

    // The layer writes into the very directory ServeDir reads, so a pulled object is a hit
    // from then on. It wraps ServeDir alone (axum boxes that service once), not the whole
    // `Router`, whose `layer` re-boxes the service, its future and its body per request.
    let store = Arc::new(LocalFileSystem::new_with_prefix(&args.dir)?);
    let layer = OriginPullBuilder::from_object_store(store)
        .rule(Rule::new(args.origin))
        .build();
    let app: Router = Router::new().fallback_service(layer.layer(ServeDir::new(&args.dir)));

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
        "serving {} on http://{}/, pulling misses from {} (Ctrl-C to stop)",
        args.dir.display(),
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
