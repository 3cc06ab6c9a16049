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
//! [`FILL_DURATION_BUCKETS`]. The recorder is global: one per process, and the counters of
//! every layer in the process add up in it.
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

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{BoxError, OriginPullHandle};

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
#[derive(Debug, Clone)]
pub struct PrometheusExporter {
    handle: PrometheusHandle,
}

impl PrometheusExporter {
    /// Install the recorder for the whole process, with the metrics described (`# HELP`)
    /// and the fill-duration histogram's buckets. Within a Tokio runtime it also starts the
    /// recorder's upkeep every 5 s (outside one, [`render`](Self::render) does it).
    ///
    /// Fails if the process already has a `metrics` recorder.
    pub fn install() -> Result<Self, BoxError> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("origin_pull_fill_duration_seconds".to_owned()),
                FILL_DURATION_BUCKETS,
            )?
            .install_recorder()?;
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
        Ok(Self { handle })
    }

    /// The Prometheus text of every metric, after setting the gauges read from `layer`
    /// now (the store share, fills in flight, the background queue's counters).
    pub fn render(&self, layer: &OriginPullHandle) -> String {
        let p = layer.progress();
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
