//! The layer's metrics as Prometheus text, for a `/metrics`-style endpoint on your own
//! router (feature `prometheus`).
//!
//! [`PrometheusExporter::install`] installs `metrics-exporter-prometheus`'s recorder as the
//! process's [`metrics`](https://docs.rs/metrics) recorder (without that crate's HTTP
//! listener: the text is served by the router you already run, behind the guards you
//! already have). [`PrometheusExporter::render`] sets the gauges read from the layer at
//! scrape time, then renders every metric: the ones the `progress` module lists, and
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `origin_pull_served_from_store_ratio` | gauge | — | [`Progress::store_share`](crate::Progress::store_share) at scrape time |
//! | `origin_pull_background_queued_total` | counter | — | background (async-mode) fills put on the queue |
//! | `origin_pull_background_dropped_total` | counter | `reason` = `queue_full` / `shutdown` | background fills not run |
//! | `origin_pull_warmup_keys` | gauge | `state` = `total` / `done` / `pulled` / `skipped` / `failed` | the last warm-up run's keys |
//! | `origin_pull_warmup_bytes` | gauge | — | bytes that run pulled |
//! | `origin_pull_warmup_eta_seconds` | gauge | — | its time left at its pace so far |
//!
//! `origin_pull_fill_duration_seconds` is a histogram with the buckets of
//! [`FILL_DURATION_BUCKETS`]. The recorder is global: one per process, and the fill
//! counters of every layer in the process add up in it.
//!
//! `origin_pull_requests_total` is the exception: it is the rendered layer's own
//! [`Progress`](crate::Progress) counters, set at scrape time, and the recorder ignores the
//! facade's per-request increments. A request then costs what it costs without this
//! exporter (one relaxed increment of the layer's counter); through the recorder's registry
//! every hit would also take a read lock and clone a handle.
//!
//! ```
//! # async fn run(layer: tower_origin_pull::OriginPullLayer) -> Result<(), tower_origin_pull::BoxError> {
//! use tower_origin_pull::prometheus::PrometheusExporter;
//!
//! let exporter = PrometheusExporter::install()?;
//! let text = exporter.render(&layer.handle());
//! assert!(text.contains("origin_pull_served_from_store_ratio"));
//! # Ok(()) }
//! ```

use std::time::Duration;

use std::sync::Arc;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::progress::REQUESTS_TOTAL;
use crate::{BoxError, OriginPullHandle, Outcome};

/// The `Content-Type` of [`PrometheusExporter::render`]'s text (exposition format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The upper bounds (seconds) of `origin_pull_fill_duration_seconds`'s buckets: from a
/// small object on a near origin to a large one on a far origin.
pub const FILL_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often the recorder's histograms are drained when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The installed recorder; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct PrometheusExporter {
    handle: PrometheusHandle,
    /// The recorder itself, past the filter: the requests counters are set through it.
    recorder: Arc<PrometheusRecorder>,
}

impl std::fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusExporter").finish_non_exhaustive()
    }
}

/// The installed recorder: everything to Prometheus's, but the per-request counter.
struct SkipRequests(Arc<PrometheusRecorder>);

impl Recorder for SkipRequests {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if key.name() == REQUESTS_TOTAL {
            return Counter::noop();
        }
        self.0.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

/// Where the requests counters are said to come from.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl PrometheusExporter {
    /// Install the recorder for the whole process, with the metrics described (`# HELP`)
    /// and the fill-duration histogram's buckets. Within a Tokio runtime it also starts the
    /// recorder's upkeep every 5 s (outside one, [`render`](Self::render) does it).
    ///
    /// Fails if the process already has a `metrics` recorder.
    pub fn install() -> Result<Self, BoxError> {
        let recorder = Arc::new(
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("origin_pull_fill_duration_seconds".to_owned()),
                    FILL_DURATION_BUCKETS,
                )?
                .build_recorder(),
        );
        let handle = recorder.handle();
        metrics::set_global_recorder(SkipRequests(recorder.clone()))
            .map_err(|e| format!("installing the Prometheus recorder: {e}"))?;
        describe();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let upkeep = handle.clone();
            runtime.spawn(async move {
                let mut every = tokio::time::interval(UPKEEP);
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
        }
        Ok(Self { handle, recorder })
    }

    /// The Prometheus text of every metric, after setting the gauges read from `layer`
    /// now (the store share, fills in flight, the background queue's counters).
    pub fn render(&self, layer: &OriginPullHandle) -> String {
        let p = layer.progress();
        for (outcome, n) in [
            (Outcome::Hit, p.hits),
            (Outcome::InnerError, p.inner_errors),
            (Outcome::Pulled, p.pulled),
            (Outcome::Coalesced, p.coalesced),
            (Outcome::Proxied, p.proxied),
            (Outcome::PassedThrough, p.passed_through),
            (Outcome::Async, p.async_redirects),
            (Outcome::Redirect, p.redirects),
            (Outcome::Failed, p.failed),
            (Outcome::Unavailable, p.unavailable),
            (Outcome::Missed, p.missed),
        ] {
            let key = Key::from_parts(
                REQUESTS_TOTAL,
                vec![Label::new("outcome", outcome.as_str())],
            );
            self.recorder.register_counter(&key, &METADATA).absolute(n);
        }
        metrics::gauge!("origin_pull_served_from_store_ratio").set(p.store_share());
        metrics::gauge!("origin_pull_fills_in_flight").set(p.fills_in_flight as f64);
        let q = layer.background_stats();
        metrics::counter!("origin_pull_background_queued_total").absolute(q.queued);
        metrics::counter!("origin_pull_background_dropped_total", "reason" => "queue_full")
            .absolute(q.dropped_queue_full);
        metrics::counter!("origin_pull_background_dropped_total", "reason" => "shutdown")
            .absolute(q.dropped_shutdown);
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// The `# HELP` line of every metric the crate records.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "origin_pull_requests_total",
        "Requests the layer saw, by outcome (hit: served from the store)."
    );
    describe_counter!(
        "origin_pull_origin_bytes_total",
        Unit::Bytes,
        "Bytes of objects pulled from the origin and stored."
    );
    describe_counter!(
        "origin_pull_fills_total",
        "Fills by how they ended (completed: a key pulled and stored)."
    );
    describe_counter!("origin_pull_fill_failures_total", "Failed fills by reason.");
    describe_counter!(
        "origin_pull_refreshed_total",
        "Objects revalidated or replaced by refresh."
    );
    describe_histogram!(
        "origin_pull_fill_duration_seconds",
        Unit::Seconds,
        "From a fill's start to its commit."
    );
    describe_gauge!("origin_pull_fills_in_flight", "Fills running now.");
    describe_gauge!(
        "origin_pull_served_from_store_ratio",
        "Share of requests served from the store since start."
    );
    describe_counter!(
        "origin_pull_background_queued_total",
        "Background fills put on the queue."
    );
    describe_counter!(
        "origin_pull_background_dropped_total",
        "Background fills not run, by reason."
    );
    describe_gauge!(
        "origin_pull_warmup_keys",
        "The last warm-up run's keys, by state."
    );
    describe_gauge!(
        "origin_pull_warmup_bytes",
        Unit::Bytes,
        "Bytes the last warm-up run pulled."
    );
    describe_gauge!(
        "origin_pull_warmup_eta_seconds",
        Unit::Seconds,
        "The last warm-up run's time left at its pace so far."
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::PrometheusExporter;
    use crate::OriginPullBuilder;

    /// The requests counter is the layer's, not the facade's: increments that reach the
    /// recorder (on every request, hits included) are not counted twice, nor kept at all.
    #[test]
    fn requests_come_from_the_layer_not_the_facade() {
        let exporter = PrometheusExporter::install().unwrap();
        metrics::counter!("origin_pull_requests_total", "outcome" => "hit").increment(5);
        metrics::counter!("origin_pull_fills_total", "result" => "completed").increment(2);
        let layer =
            OriginPullBuilder::from_object_store(Arc::new(object_store::memory::InMemory::new()))
                .build();
        let text = exporter.render(&layer.handle());
        assert!(
            text.contains("origin_pull_requests_total{outcome=\"hit\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("origin_pull_fills_total{result=\"completed\"} 2\n"),
            "{text}"
        );
        assert!(
            PrometheusExporter::install().is_err(),
            "one recorder per process"
        );
    }
}
