//! Progress counters and the `metrics` facade move as documented in `progress`.

mod common;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_metrics_count_what_happened() {
    #[cfg(feature = "metrics")]
    let snapshotter = {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    };

    let origin = TestOrigin::start().await;
    origin.object("a.txt", "aaaa");
    origin.object("b.txt", "bbbbbb");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let addr = serve(store_service(store).layer(layer.clone())).await;
    let c = client();
    let at = |p: &str| format!("http://{addr}/{p}");
    get(&c, &at("a.txt")).await; // pulled
    get(&c, &at("a.txt")).await; // hit
    get(&c, &at("a.txt")).await; // hit
    get(&c, &at("b.txt")).await; // pulled
    get(&c, &at("none.txt")).await; // missed (origin 404)

    let p = layer.handle().progress();
    assert_eq!((p.hits, p.pulled, p.missed), (2, 2, 1), "{p:?}");
    assert_eq!((p.keys_pulled, p.bytes_pulled), (2, 10), "{p:?}");
    assert_eq!(p.fills_in_flight, 0);
    assert!((p.store_share() - 0.4).abs() < 1e-9, "{}", p.store_share());

    #[cfg(feature = "metrics")]
    {
        use metrics_util::debugging::DebugValue;
        let snapshot = snapshotter.snapshot().into_vec();
        let find = |name: &str, label: Option<(&str, &str)>| {
            snapshot.iter().find_map(|(key, _, _, value)| {
                let k = key.key();
                let labelled =
                    label.is_none_or(|(n, v)| k.labels().any(|l| l.key() == n && l.value() == v));
                (k.name() == name && labelled).then_some(value)
            })
        };
        let counter = |name, label| match find(name, label) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {label:?}: {other:?}"),
        };
        assert_eq!(
            counter("origin_pull_requests_total", Some(("outcome", "hit"))),
            2
        );
        assert_eq!(
            counter("origin_pull_requests_total", Some(("outcome", "pulled"))),
            2
        );
        assert_eq!(
            counter("origin_pull_requests_total", Some(("outcome", "missed"))),
            1
        );
        assert_eq!(counter("origin_pull_origin_bytes_total", None), 10);
        assert_eq!(
            counter("origin_pull_fills_total", Some(("result", "completed"))),
            2
        );
        assert_eq!(
            counter("origin_pull_fills_total", Some(("result", "not_found"))),
            1
        );
        match find("origin_pull_fill_duration_seconds", None) {
            Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 2),
            other => panic!("histogram: {other:?}"),
        }
        match find("origin_pull_fills_in_flight", None) {
            Some(DebugValue::Gauge(v)) => assert_eq!(v.0, 0.0),
            other => panic!("gauge: {other:?}"),
        }
    }
}
