//! Warm-up from the command line: pull a list of keys into the store before clients ask.
//!
//! ```text
//! cargo run --example prefetch -- --origin http://127.0.0.1:9000/ --store file:///tmp/mirror \
//!     --keys keys.txt --concurrency 16
//! find /data -type f -printf '%P\n' | cargo run --example prefetch -- --config mirror.toml
//! ```
//!
//! - `--config FILE`     the mirror's config (rules, store); or `--origin` and `--store`
//! - `--keys FILE`       one key per line (no leading `/`, not percent-encoded); default stdin
//! - `--from-bucket URL` instead of a list: every object of a bucket (`file:///…`, `s3://…`),
//!   below `--prefix P` if given; the listed names are used as keys as they are
//! - `--concurrency N`   keys pulled at once (default 16)
//!
//! Keys already in the store are skipped, so running it again resumes where it stopped.
//! On a terminal a progress line shows keys, bytes, rate and ETA; at the end a summary lists
//! every key that failed, and the exit status is 1 if any did.

use std::io::{BufRead, IsTerminal, Write};

use tower_origin_pull::OriginPullLayer;
use tower_origin_pull::config::{Config, OriginConfig, RuleConfig};
use tower_origin_pull::warmup::{Warmup, WarmupProgress};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: prefetch [--config FILE | --origin URL --store URL] \
                     [--keys FILE | --from-bucket URL [--prefix P]] [--concurrency N]";

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("prefetch: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn run() -> Result<bool, BoxError> {
    let (mut config_file, mut origin, mut store, mut keys_file) = (None, None, None, None);
    let (mut from_bucket, mut prefix) = (None, None::<String>);
    let mut concurrency = 16;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config_file = Some(value()?),
            "--origin" => origin = Some(value()?),
            "--store" => store = Some(value()?),
            "--keys" => keys_file = Some(value()?),
            "--from-bucket" => from_bucket = Some(value()?),
            "--prefix" => prefix = Some(value()?),
            "--concurrency" => concurrency = value()?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let mut config = match config_file {
        Some(path) => Config::load(path)?,
        None => {
            let (Some(origin), Some(_)) = (&origin, &store) else {
                return Err("give --config FILE, or --origin URL and --store URL".into());
            };
            let mut config = Config::default();
            let mut rule = RuleConfig::default();
            rule.origin = OriginConfig::default();
            rule.origin.hosts = vec![origin.clone()];
            config.rules.push(rule);
            config
        }
    };
    if let Some(store) = store {
        config.store.url = store;
    }
    let layer = OriginPullLayer::from_config(&config)?;

    let keys: Vec<String> = match from_bucket {
        Some(url) => list_bucket(&url, prefix.as_deref()).await?,
        None => {
            let reader: Box<dyn BufRead> = match keys_file {
                Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
                None => Box::new(std::io::stdin().lock()),
            };
            reader
                .lines()
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|line| line.trim().trim_start_matches('/').to_owned())
                .filter(|line| !line.is_empty())
                .collect()
        }
    };

    let terminal = std::io::stderr().is_terminal();
    let mut last_print = std::time::Instant::now();
    let report = Warmup::new(&layer)
        .concurrency(concurrency)
        .run(keys, |p| {
            if terminal && (last_print.elapsed().as_millis() > 100 || Some(p.done) == p.total) {
                last_print = std::time::Instant::now();
                eprint!("\r{}", line(p));
                let _ = std::io::stderr().flush();
            }
        })
        .await;
    if terminal {
        eprintln!();
    }
    let p = &report.progress;
    println!("{}", line(p));
    for (key, why) in &report.failures {
        println!("failed  {key}: {why}");
    }
    Ok(report.failures.is_empty())
}

/// Every object name in the bucket at `url`, below `prefix`.
async fn list_bucket(url: &str, prefix: Option<&str>) -> Result<Vec<String>, BoxError> {
    use futures::TryStreamExt;
    let mut source = tower_origin_pull::config::StoreConfig::default();
    source.url = url.to_owned();
    let store = source.open()?;
    let prefix = prefix.map(object_store::path::Path::from);
    let objects: Vec<_> = store.list(prefix.as_ref()).try_collect().await?;
    Ok(objects
        .into_iter()
        .map(|m| m.location.to_string())
        .collect())
}

fn line(p: &WarmupProgress) -> String {
    let total = p.total.map_or("?".to_owned(), |t| t.to_string());
    let eta = p
        .eta()
        .map_or("-".to_owned(), |d| format!("{}s", d.as_secs()));
    format!(
        "{}/{total} keys  pulled {}  skipped {}  failed {}  {:.1} MiB  {:.1} MiB/s  ETA {eta}",
        p.done,
        p.pulled,
        p.skipped,
        p.failed,
        p.bytes as f64 / 1048576.0,
        p.rate() / 1048576.0,
    )
}
