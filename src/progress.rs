//! Migration progress and metrics: how much is served from the store versus pulled.
//!
//! [`OriginPullLayer::progress`](crate::OriginPullLayer::progress) reads counters kept with
//! relaxed atomics (one increment per request the layer could have pulled). With the
//! `metrics` feature the same events go to the [`metrics`](https://docs.rs/metrics) facade:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `origin_pull_requests_total` | counter | `outcome` = `hit` / `pulled` / `coalesced` / `async` / `redirect` / `proxied` / `failed` / `missed` | requests by what happened (`missed`: a miss nobody pulled — no rule, origin `404`, unclean key) |
//! | `origin_pull_origin_bytes_total` | counter | — | bytes of objects stored by fills |
//! | `origin_pull_fills_total` | counter | `result` = `completed` / `failed` / `not_found` | fills by how they ended |
//! | `origin_pull_fill_duration_seconds` | histogram | — | from a fill's start to its commit |
//! | `origin_pull_fills_in_flight` | gauge | — | fills running now |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What happened to one request, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Pulled,
    Coalesced,
    Async,
    Redirect,
    Proxied,
    Failed,
    Missed,
}

impl Outcome {
    pub(crate) fn from_tag(tag: &str) -> Self {
        match tag {
            "pulled" => Self::Pulled,
            "coalesced" => Self::Coalesced,
            "async" => Self::Async,
            "redirect" => Self::Redirect,
            "proxied" => Self::Proxied,
            _ => Self::Failed,
        }
    }

    #[cfg(feature = "metrics")]
    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Pulled => "pulled",
            Self::Coalesced => "coalesced",
            Self::Async => "async",
            Self::Redirect => "redirect",
            Self::Proxied => "proxied",
            Self::Failed => "failed",
            Self::Missed => "missed",
        }
    }
}

/// A snapshot of the layer's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Requests the inner service answered without a miss (hits, `304`s, ...).
    pub hits: u64,
    /// Misses that started a fill.
    pub pulled: u64,
    /// Misses that joined a fill in flight.
    pub coalesced: u64,
    /// Misses answered with an async-mode redirect.
    pub async_redirects: u64,
    /// Misses answered with a redirect-mode redirect.
    pub redirects: u64,
    /// Misses streamed from the origin without storing.
    pub proxied: u64,
    /// Misses answered `502`.
    pub failed: u64,
    /// Misses nobody pulled (no rule, unclean key, origin `404`).
    pub missed: u64,
    /// Objects stored by fills.
    pub keys_pulled: u64,
    /// Bytes of those objects.
    pub bytes_pulled: u64,
    /// Fills that failed.
    pub fills_failed: u64,
    /// Fills running now.
    pub fills_in_flight: usize,
}

impl Progress {
    /// The share of `GET`s served from the store, of those the layer saw (0 when none).
    pub fn store_share(&self) -> f64 {
        let total = self.hits
            + self.pulled
            + self.coalesced
            + self.async_redirects
            + self.redirects
            + self.proxied
            + self.failed
            + self.missed;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    pulled: AtomicU64,
    coalesced: AtomicU64,
    async_redirects: AtomicU64,
    redirects: AtomicU64,
    proxied: AtomicU64,
    failed: AtomicU64,
    missed: AtomicU64,
    keys_pulled: AtomicU64,
    bytes_pulled: AtomicU64,
    fills_failed: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn request(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Pulled => &self.pulled,
            Outcome::Coalesced => &self.coalesced,
            Outcome::Async => &self.async_redirects,
            Outcome::Redirect => &self.redirects,
            Outcome::Proxied => &self.proxied,
            Outcome::Failed => &self.failed,
            Outcome::Missed => &self.missed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("origin_pull_requests_total", "outcome" => outcome.label()).increment(1);
    }

    pub(crate) fn fill_completed(&self, bytes: u64, duration: Duration) {
        self.keys_pulled.fetch_add(1, Ordering::Relaxed);
        self.bytes_pulled.fetch_add(bytes, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("origin_pull_origin_bytes_total").increment(bytes);
            metrics::counter!("origin_pull_fills_total", "result" => "completed").increment(1);
            metrics::histogram!("origin_pull_fill_duration_seconds").record(duration.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = duration;
    }

    pub(crate) fn fill_failed(&self) {
        self.fills_failed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("origin_pull_fills_total", "result" => "failed").increment(1);
    }

    pub(crate) fn fill_not_found(&self) {
        #[cfg(feature = "metrics")]
        metrics::counter!("origin_pull_fills_total", "result" => "not_found").increment(1);
    }

    pub(crate) fn fills_in_flight(&self, n: usize) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("origin_pull_fills_in_flight").set(n as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    pub(crate) fn snapshot(&self, fills_in_flight: usize) -> Progress {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Progress {
            hits: get(&self.hits),
            pulled: get(&self.pulled),
            coalesced: get(&self.coalesced),
            async_redirects: get(&self.async_redirects),
            redirects: get(&self.redirects),
            proxied: get(&self.proxied),
            failed: get(&self.failed),
            missed: get(&self.missed),
            keys_pulled: get(&self.keys_pulled),
            bytes_pulled: get(&self.bytes_pulled),
            fills_failed: get(&self.fills_failed),
            fills_in_flight,
        }
    }
}
