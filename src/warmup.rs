//! Warm-up: pull a list of keys before clients ask for them.
//!
//! Each key goes through the layer's rules and fill machinery, so a key that live traffic is
//! pulling at the same moment is fetched once and shared; keys already in the store (or
//! deleted on purpose) are skipped, which makes a run resumable: running it again pulls only
//! what is missing.
//!
//! ```no_run
//! # async fn run(layer: tower_origin_pull::OriginPullLayer) {
//! use tower_origin_pull::warmup::Warmup;
//!
//! let keys = vec!["img/a.png".to_owned(), "img/b.png".to_owned()];
//! let report = Warmup::new(layer.handle())
//!     .concurrency(16)
//!     .run(keys, |p| eprint!("\r{} / {:?} keys", p.done, p.total))
//!     .await;
//! for (key, why) in &report.failures {
//!     eprintln!("{key}: {why}");
//! }
//! # }
//! ```

use std::time::{Duration, Instant};

use futures::StreamExt;
use http::{Method, StatusCode, Uri};

use crate::OriginPullHandle;
use crate::fill::FillSpec;
use crate::fill::shared::Ended;
use crate::key;
use crate::rule::Mode;
use crate::store::Committed;

/// Pulls a list of keys with bounded concurrency; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Warmup {
    handle: OriginPullHandle,
    concurrency: usize,
    /// Revalidate stored keys instead of pulling missing ones ([`Warmup::refresh`]).
    refreshing: bool,
}

/// Where a warm-up run stands.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct WarmupProgress {
    /// How many keys the run was given, when known up front.
    pub total: Option<u64>,
    /// Keys finished (pulled, skipped or failed).
    pub done: u64,
    /// Keys pulled by this run (or by live traffic it joined).
    pub pulled: u64,
    /// Keys already in the store, or deleted on purpose.
    pub skipped: u64,
    /// Keys that could not be pulled.
    pub failed: u64,
    /// Bytes pulled.
    pub bytes: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl WarmupProgress {
    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }

    /// The time left at the current pace of keys, when the total is known.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        if self.done == 0 {
            return None;
        }
        let per_key = self.elapsed.as_secs_f64() / self.done as f64;
        Some(Duration::from_secs_f64(
            per_key * total.saturating_sub(self.done) as f64,
        ))
    }
}

#[cfg(feature = "metrics")]
impl WarmupProgress {
    /// Set the warm-up gauges of the `metrics` facade (the last run to report wins):
    /// `origin_pull_warmup_keys{state}` (`total` when known, `done`, `pulled`, `skipped`,
    /// `failed`), `origin_pull_warmup_bytes` and `origin_pull_warmup_eta_seconds` (when
    /// known).
    fn record(&self) {
        let keys = |state: &'static str, n: u64| {
            metrics::gauge!("origin_pull_warmup_keys", "state" => state).set(n as f64);
        };
        if let Some(total) = self.total {
            keys("total", total);
        }
        keys("done", self.done);
        keys("pulled", self.pulled);
        keys("skipped", self.skipped);
        keys("failed", self.failed);
        metrics::gauge!("origin_pull_warmup_bytes").set(self.bytes as f64);
        if let Some(eta) = self.eta() {
            metrics::gauge!("origin_pull_warmup_eta_seconds").set(eta.as_secs_f64());
        }
    }
}

/// The end of a warm-up run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WarmupReport {
    /// The final counts.
    pub progress: WarmupProgress,
    /// Each key that failed, and why.
    pub failures: Vec<(String, String)>,
}

enum One {
    Pulled(u64),
    Skipped,
    Failed(String),
}

impl Warmup {
    /// Warm up through a layer's live state (its rules, store and fills: pass the layer or
    /// its [`OriginPullHandle`]), 8 keys at a time.
    pub fn new(layer: impl Into<OriginPullHandle>) -> Self {
        Self {
            handle: layer.into(),
            concurrency: 8,
            refreshing: false,
        }
    }

    /// How many keys are pulled at once (default 8).
    pub fn concurrency(mut self, keys: usize) -> Self {
        self.concurrency = keys.max(1);
        self
    }

    /// Pull every key (no leading `/`, not percent-encoded), calling `on_progress` after
    /// each one.
    pub async fn run<I>(self, keys: I, mut on_progress: impl FnMut(&WarmupProgress)) -> WarmupReport
    where
        I: IntoIterator<Item = String>,
        I::IntoIter: Send,
    {
        let keys = keys.into_iter();
        let started = Instant::now();
        let mut report = WarmupReport {
            progress: WarmupProgress {
                total: match keys.size_hint() {
                    (low, Some(high)) if low == high => Some(low as u64),
                    _ => None,
                },
                ..WarmupProgress::default()
            },
            failures: Vec::new(),
        };
        let this = &self;
        let mut results = futures::stream::iter(keys)
            .map(|key| async move {
                let one = this.one(&key).await;
                (key, one)
            })
            .buffer_unordered(self.concurrency);
        while let Some((key, one)) = results.next().await {
            let p = &mut report.progress;
            p.done += 1;
            match one {
                One::Pulled(bytes) => {
                    p.pulled += 1;
                    p.bytes += bytes;
                }
                One::Skipped => p.skipped += 1,
                One::Failed(why) => {
                    p.failed += 1;
                    report.failures.push((key, why));
                }
            }
            p.elapsed = started.elapsed();
            #[cfg(feature = "metrics")]
            p.record();
            on_progress(p);
        }
        report
    }

    /// Revalidate every key against its origin now, whatever its age (see
    /// [`Rule::revalidate_after`](crate::Rule::revalidate_after), which need not be set):
    /// a key whose origin has a new version is replaced (`pulled`, with its bytes), one
    /// that is unchanged is `skipped`, one that is not stored, not stored any more, or
    /// cannot be revalidated is `failed` with the reason. Same bound, deduplication and
    /// progress reporting as [`run`](Self::run).
    pub async fn refresh<I>(
        mut self,
        keys: I,
        on_progress: impl FnMut(&WarmupProgress),
    ) -> WarmupReport
    where
        I: IntoIterator<Item = String>,
        I::IntoIter: Send,
    {
        self.refreshing = true;
        self.run(keys, on_progress).await
    }

    async fn refresh_one(&self, key: &str) -> One {
        let engine = self.handle.engine();
        let Some(spec) = crate::refresh::spec(engine, key, &Uri::from_static("/"), true) else {
            return One::Failed("no rule that stores objects matches it".to_owned());
        };
        let Some(fill) = engine.fills.ensure(spec).await else {
            return One::Failed("the layer is shutting down".to_owned());
        };
        fill.wait_ended().await;
        match (fill.ended(), fill.committed()) {
            (Some(Ended::Stored(bytes)), Some(Committed::Refreshed)) => One::Pulled(bytes),
            (Some(Ended::Stored(_)), _) => One::Skipped,
            (Some(Ended::NotFound), _) => One::Failed("the origin does not have it".to_owned()),
            (Some(Ended::NotStored), _) => One::Failed("not stored, or not refreshed".to_owned()),
            (Some(Ended::Failed(e)), _) => One::Failed(e.to_string()),
            (None, _) => One::Failed("the refresh did not end".to_owned()),
        }
    }

    async fn one(&self, key: &str) -> One {
        if !key::is_clean(key) {
            return One::Failed("not a clean key".to_owned());
        }
        if self.refreshing {
            return self.refresh_one(key).await;
        }
        let config = self.handle.engine();
        let uri = Uri::from_static("/");
        let Some((rule, request)) =
            config.plan(key, &Method::GET, StatusCode::NOT_FOUND, &uri, None)
        else {
            return One::Failed("no rule matches it".to_owned());
        };
        if !matches!(rule.mode, Mode::Sync | Mode::Async) {
            return One::Failed(format!("rule {} stores nothing", rule.label()));
        }
        match config.store.is_deleted(key).await {
            Ok(true) => return One::Skipped,
            Ok(false) => {}
            Err(e) => return One::Failed(e.to_string()),
        }
        match config.store.read(key, 0).await {
            Ok(Some(_)) => return One::Skipped,
            Ok(None) => {}
            Err(e) => return One::Failed(e.to_string()),
        }
        let spec = FillSpec {
            key: key.to_owned(),
            rule: rule.label(),
            origin: rule.origin.clone(),
            request,
            store: Some(config.store.clone()),
            on_disconnect: rule.on_disconnect,
            pinned: true,
            report: true,
            checks: rule.checks.clone(),
        };
        let Some(fill) = config.fills.ensure(spec).await else {
            return One::Failed("the layer is shutting down".to_owned());
        };
        fill.wait_ended().await;
        match fill.ended() {
            Some(Ended::Stored(bytes)) => One::Pulled(bytes),
            Some(Ended::NotFound) => One::Failed("the origin does not have it".to_owned()),
            Some(Ended::NotStored) => One::Failed("pulled but not stored".to_owned()),
            Some(Ended::Failed(e)) => One::Failed(e.to_string()),
            None => One::Failed("the fill did not end".to_owned()),
        }
    }
}
