//! Migration progress and metrics: how much is served from the store versus pulled.
//!
//! [`OriginPullHandle::progress`](crate::OriginPullHandle::progress) reads counters kept with
//! relaxed atomics (one increment per request the layer could have pulled). With the
//! `metrics` feature the same events go to the [`metrics`](https://docs.rs/metrics) facade:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `origin_pull_requests_total` | counter | `outcome` = [`Outcome::as_str`]: `hit` / `inner-error` / `pulled` / `coalesced` / `proxied` / `passed-through` / `async` / `redirect` / `failed` / `unavailable` / `missed` | requests by what happened (`missed`: a miss nobody pulled — no rule, origin `404`, unclean key) |
//! | `origin_pull_origin_bytes_total` | counter | — | bytes of objects stored by fills |
//! | `origin_pull_fills_total` | counter | `result` = `completed` / `failed` / `not_found` | fills by how they ended |
//! | `origin_pull_fill_duration_seconds` | histogram | — | from a fill's start to its commit |
//! | `origin_pull_fills_in_flight` | gauge | — | fills running now |
//! | `origin_pull_fill_failures_total` | counter | `reason` = [`failure_reason`]: `origin_status` / `origin_timeout` / `origin_request` / `origin_body` / `origin_redirect` / `length_mismatch` / `checksum` / `too_large` / `store` / `timeout` / `aborted` / `died` / `other` | failed fills by why (a bounded set of labels, never the error's text) |
//! | `origin_pull_refreshed_total` | counter | — | objects revalidated or replaced by refresh |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What happened to one request the layer saw: the value of its `x-origin-pull` header
/// (where it has one), the progress counter it adds to, and its metric label — one type
/// from the decision to the counter, never a string parsed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The inner service answered with a status no rule triggers on that is not an error
    /// (`2xx`, `3xx`: served from the store).
    Hit,
    /// The inner service answered a `4xx`/`5xx` that no rule triggers on (a bad request, a
    /// store failure): not served from the store, not pulled.
    InnerError,
    /// A miss that started a fill.
    Pulled,
    /// A miss that joined a fill in flight.
    Coalesced,
    /// A miss streamed from the origin without storing (proxy mode, a cold `Range`, a
    /// `HEAD` answered by the origin).
    Proxied,
    /// A miss answered with the origin's own non-`200` answer, as a rule passes it through
    /// (its `pass_through` statuses, a `416` for a client's range).
    PassedThrough,
    /// A miss answered with an async-mode redirect (the fill runs in the background).
    Async,
    /// A miss answered with a redirect-mode redirect.
    Redirect,
    /// A miss the layer answered `502` (the origin failed, or could not be redirected to).
    Failed,
    /// A miss answered `503` because every fill slot was taken.
    Unavailable,
    /// A miss nobody pulled: no rule, an unclean key, the origin's `404`, a tombstone, a
    /// remembered `404`, shutdown. The inner response stands.
    Missed,
}

impl Outcome {
    /// The label: the `x-origin-pull` header value and the metric's `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::InnerError => "inner-error",
            Self::Pulled => "pulled",
            Self::Coalesced => "coalesced",
            Self::Proxied => "proxied",
            Self::PassedThrough => "passed-through",
            Self::Async => "async",
            Self::Redirect => "redirect",
            Self::Failed => "failed",
            Self::Unavailable => "unavailable",
            Self::Missed => "missed",
        }
    }

    /// The header value saying what happened.
    pub(crate) fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_static(self.as_str())
    }

    /// The outcome of an inner response that no rule triggers on.
    pub(crate) fn of_inner(status: http::StatusCode) -> Self {
        if status.is_client_error() || status.is_server_error() {
            Self::InnerError
        } else {
            Self::Hit
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the layer's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Requests the inner service answered without a miss and without an error (hits,
    /// `304`s, ...).
    pub hits: u64,
    /// Requests the inner service answered `4xx`/`5xx` that no rule triggers on.
    pub inner_errors: u64,
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
    /// Misses answered with the origin's own non-`200` answer, passed through by a rule.
    pub passed_through: u64,
    /// Misses answered `502`.
    pub failed: u64,
    /// Misses answered `503` because every fill slot was taken.
    pub unavailable: u64,
    /// Misses nobody pulled (no rule, unclean key, origin `404`).
    pub missed: u64,
    /// Objects stored by fills.
    pub keys_pulled: u64,
    /// Bytes of those objects.
    pub bytes_pulled: u64,
    /// Fills that failed.
    pub fills_failed: u64,
    /// Objects revalidated or replaced by refresh.
    pub refreshed: u64,
    /// Fills running now.
    pub fills_in_flight: usize,
}

impl Progress {
    /// Every request counted, whatever its outcome (the sum of the request counters).
    pub fn requests(&self) -> u64 {
        self.hits
            + self.inner_errors
            + self.pulled
            + self.coalesced
            + self.async_redirects
            + self.redirects
            + self.proxied
            + self.passed_through
            + self.failed
            + self.unavailable
            + self.missed
    }

    /// The share of `GET`s served from the store, of those the layer saw (0 when none).
    pub fn store_share(&self) -> f64 {
        let total = self.requests();
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// `origin_pull_requests_total{outcome}` by one, through the facade. A literal label per
/// outcome makes each key a `static` (a label computed at run time would allocate its key
/// on every request, the hits included).
#[cfg(feature = "metrics")]
#[inline]
fn request_metric(outcome: Outcome) {
    macro_rules! by_outcome {
        ($($variant:ident => $label:literal),* $(,)?) => {
            match outcome {
                $(Outcome::$variant => {
                    debug_assert_eq!(outcome.as_str(), $label);
                    metrics::counter!("origin_pull_requests_total", "outcome" => $label).increment(1)
                })*
            }
        };
    }
    by_outcome!(
        Hit => "hit",
        InnerError => "inner-error",
        Pulled => "pulled",
        Coalesced => "coalesced",
        Proxied => "proxied",
        PassedThrough => "passed-through",
        Async => "async",
        Redirect => "redirect",
        Failed => "failed",
        Unavailable => "unavailable",
        Missed => "missed",
    );
}

/// The name of the requests counter (the Prometheus exporter renders it itself).
#[cfg(feature = "prometheus")]
pub(crate) const REQUESTS_TOTAL: &str = "origin_pull_requests_total";

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    inner_errors: AtomicU64,
    pulled: AtomicU64,
    coalesced: AtomicU64,
    async_redirects: AtomicU64,
    redirects: AtomicU64,
    proxied: AtomicU64,
    passed_through: AtomicU64,
    failed: AtomicU64,
    unavailable: AtomicU64,
    missed: AtomicU64,
    keys_pulled: AtomicU64,
    bytes_pulled: AtomicU64,
    fills_failed: AtomicU64,
    refreshed: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn request(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::InnerError => &self.inner_errors,
            Outcome::Pulled => &self.pulled,
            Outcome::Coalesced => &self.coalesced,
            Outcome::Async => &self.async_redirects,
            Outcome::Redirect => &self.redirects,
            Outcome::Proxied => &self.proxied,
            Outcome::PassedThrough => &self.passed_through,
            Outcome::Failed => &self.failed,
            Outcome::Unavailable => &self.unavailable,
            Outcome::Missed => &self.missed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        request_metric(outcome);
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

    /// A fill ended without storing anything; `event` is its final event (a
    /// [`FillEvent::Failed`](crate::FillEvent::Failed), whose reason labels the metric).
    pub(crate) fn fill_failed(&self, event: &crate::FillEvent) {
        self.fills_failed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("origin_pull_fills_total", "result" => "failed").increment(1);
            let reason = match event {
                crate::FillEvent::Failed { reason, .. } => failure_reason(reason),
                _ => "other",
            };
            metrics::counter!("origin_pull_fill_failures_total", "reason" => reason).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }

    /// A refresh found an object current at its origin (`304`) or replaced it: called by
    /// the fill's guard once per such refresh fill.
    pub(crate) fn refreshed(&self) {
        self.refreshed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("origin_pull_refreshed_total").increment(1);
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
            inner_errors: get(&self.inner_errors),
            pulled: get(&self.pulled),
            coalesced: get(&self.coalesced),
            async_redirects: get(&self.async_redirects),
            redirects: get(&self.redirects),
            proxied: get(&self.proxied),
            passed_through: get(&self.passed_through),
            failed: get(&self.failed),
            unavailable: get(&self.unavailable),
            missed: get(&self.missed),
            keys_pulled: get(&self.keys_pulled),
            bytes_pulled: get(&self.bytes_pulled),
            fills_failed: get(&self.fills_failed),
            refreshed: get(&self.refreshed),
            fills_in_flight,
        }
    }
}

/// The bounded label of a failed fill's reason (the text of a [`crate::Error`]): what kind
/// of failure, never the key or the origin's address, so the metric keeps a fixed set of
/// series however many keys fail.
pub fn failure_reason(reason: &str) -> &'static str {
    // Ordered: the more specific shapes first (a stall of the origin's body before the
    // fill's own stall).
    const SHAPES: &[(&str, &str)] = &[
        ("origin answered ", "origin_status"),
        ("sent no response headers within", "origin_timeout"),
        ("body stalled for", "origin_stalled"),
        ("body failed after", "origin_body"),
        ("origin request to", "origin_request"),
        (" answered with ", "origin_redirect"),
        ("Content-Length announced", "length_mismatch"),
        ("the origin announced", "checksum"),
        ("is not a valid digest", "checksum"),
        ("bytes its rule allows", "too_large"),
        ("store read for key", "store"),
        ("store write for key", "store"),
        ("the store cannot hold", "store"),
        ("got no response head within", "timeout"),
        ("stalled for", "timeout"),
        ("stopped before it finished", "aborted"),
        (" died: ", "died"),
    ];
    SHAPES
        .iter()
        .find(|(shape, _)| reason.contains(shape))
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::failure_reason;
    use crate::Error;

    /// The labels follow the errors' own messages: a reworded message fails here, not in a
    /// dashboard.
    #[test]
    fn failure_reasons_follow_the_error_messages() {
        let key = "k".to_owned();
        let cases = [
            (
                Error::OriginStatus {
                    status: http::StatusCode::INTERNAL_SERVER_ERROR,
                    key: key.clone(),
                },
                "origin_status",
            ),
            (
                Error::TooLarge {
                    key: key.clone(),
                    limit: 1,
                },
                "too_large",
            ),
            (
                Error::HeadTimeout {
                    key: key.clone(),
                    timeout: Duration::from_secs(1),
                },
                "timeout",
            ),
            (
                Error::FillDied {
                    key: key.clone(),
                    message: "gone".to_owned(),
                },
                "died",
            ),
        ];
        for (error, label) in cases {
            assert_eq!(failure_reason(&error.to_string()), label, "{error}");
        }
        assert_eq!(failure_reason("something new"), "other");
    }
}
