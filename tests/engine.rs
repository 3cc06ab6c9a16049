//! One engine behind a cheap layer: clones share it; the miss decision across every mode,
//! method, Range/HEAD policy and state of the fill bound.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower_origin_pull::{
    HeadMiss, HttpOrigin, Mode, OriginPullBuilder, OriginPullLayer, RangeMiss, Rule,
};

use common::*;

fn slow(origin: &TestOrigin, key: &str, object: &Bytes, pause: Duration) {
    let size = object.len().div_ceil(4);
    let chunks = object.chunks(size).map(Bytes::copy_from_slice).collect();
    origin.put(key, Behaviour::Chunked { chunks, pause });
}

async fn router(store: Arc<dyn ObjectStore>, layer: OriginPullLayer) -> String {
    let app = Router::new()
        .fallback_service(store_service(store))
        .layer(layer);
    format!("http://{}/", serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clones_in_two_routers_share_one_fill_and_one_shutdown() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 21);
    slow(&origin, "shared.bin", &object, Duration::from_millis(200));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .max_fills(8)
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let (a, b) = (layer.clone(), layer);
    let url_a = router(store.clone(), a.clone()).await;
    let url_b = router(store.clone(), b.clone()).await;
    let c = client();
    let gets: Vec<_> = (0..50)
        .map(|i| {
            let url = format!("{}shared.bin", if i % 2 == 0 { &url_a } else { &url_b });
            let c = c.clone();
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for got in gets {
        assert_eq!(got.await.unwrap().body.unwrap(), object);
    }
    assert_eq!(
        origin.hits("shared.bin"),
        1,
        "one origin request for both routers"
    );
    let progress = a.handle().progress();
    assert_eq!(progress.pulled + progress.coalesced, 50, "{progress:?}");
    assert_eq!(b.handle().progress(), progress, "one set of counters");

    // A fill started through router B is stopped by a shutdown through A's handle.
    slow(
        &origin,
        "long.bin",
        &random_bytes(64 * 1024, 22),
        Duration::from_secs(5),
    );
    let pending = {
        let (c, url) = (c.clone(), format!("{url_b}long.bin"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.handle().fills_in_flight() == 1
        })
        .await
    );
    let report = a.handle().shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.aborted, 1, "{report:?}");
    assert_eq!(b.handle().fills_in_flight(), 0);
    let got = pending.await.unwrap();
    assert!(
        got.body.is_err(),
        "the reader of the aborted fill gets an error"
    );
    assert!(stored(&*store, "long.bin").await.is_none());
}

/// One row of the decision table: what a cold request gets.
struct Row {
    name: &'static str,
    rule: fn(Rule) -> Rule,
    method: Method,
    range: Option<&'static str>,
    /// Status and `x-origin-pull` with a free slot.
    free: (StatusCode, &'static str),
    /// With every slot taken.
    full: (StatusCode, &'static str),
}

fn rows() -> Vec<Row> {
    use StatusCode as S;
    let busy = (S::SERVICE_UNAVAILABLE, "unavailable");
    let row = |name, rule, method, range, free, full| Row {
        name,
        rule,
        method,
        range,
        free,
        full,
    };
    vec![
        row(
            "sync GET",
            |r| r,
            Method::GET,
            None,
            (S::OK, "pulled"),
            busy,
        ),
        row(
            "sync GET ignored range",
            |r| r,
            Method::GET,
            Some("bytes=5-2"),
            (S::OK, "pulled"),
            busy,
        ),
        row(
            "sync HEAD ignored",
            |r| r,
            Method::HEAD,
            None,
            (S::NOT_FOUND, ""),
            (S::NOT_FOUND, ""),
        ),
        row(
            "sync HEAD fill",
            |r| r.on_head(HeadMiss::Fill),
            Method::HEAD,
            None,
            (S::OK, "pulled"),
            busy,
        ),
        row(
            "sync HEAD origin",
            |r| r.on_head(HeadMiss::OriginHead),
            Method::HEAD,
            None,
            (S::OK, "proxied"),
            busy,
        ),
        row(
            "sync range serve+fill",
            |r| r.on_range(RangeMiss::ServeRangeAndFill),
            Method::GET,
            Some("bytes=0-9"),
            (S::PARTIAL_CONTENT, "proxied"),
            busy,
        ),
        row(
            "sync range fill-then-serve",
            |r| r.on_range(RangeMiss::FillThenServe),
            Method::GET,
            Some("bytes=0-9"),
            (S::PARTIAL_CONTENT, "pulled"),
            busy,
        ),
        row(
            "sync range proxy",
            |r| r.on_range(RangeMiss::ProxyRange),
            Method::GET,
            Some("bytes=0-9"),
            (S::PARTIAL_CONTENT, "proxied"),
            busy,
        ),
        row(
            "sync several ranges",
            |r| r,
            Method::GET,
            Some("bytes=0-9,20-29"),
            (S::OK, "pulled"),
            busy,
        ),
        row(
            "sync range join-fill (the default)",
            |r| r,
            Method::GET,
            Some("bytes=0-9"),
            (S::PARTIAL_CONTENT, "pulled"),
            busy,
        ),
        // The test origin ignores ranges: the 416 is decided here, on its 200.
        row(
            "sync unsatisfiable range, join-fill (the default): the full fill answers",
            |r| r,
            Method::GET,
            Some("bytes=99999-"),
            (S::RANGE_NOT_SATISFIABLE, "pulled"),
            busy,
        ),
        row(
            "sync unsatisfiable range, serve+fill",
            |r| r.on_range(RangeMiss::ServeRangeAndFill),
            Method::GET,
            Some("bytes=99999-"),
            (S::RANGE_NOT_SATISFIABLE, "proxied"),
            busy,
        ),
        row(
            "proxy GET",
            |r| r.mode(Mode::Proxy),
            Method::GET,
            None,
            (S::OK, "proxied"),
            busy,
        ),
        row(
            "proxy range",
            |r| r.mode(Mode::Proxy),
            Method::GET,
            Some("bytes=0-9"),
            (S::PARTIAL_CONTENT, "proxied"),
            busy,
        ),
        row(
            "proxy HEAD",
            |r| r.mode(Mode::Proxy).on_head(HeadMiss::OriginHead),
            Method::HEAD,
            None,
            (S::OK, "proxied"),
            busy,
        ),
        row(
            "redirect GET",
            |r| r.mode(Mode::Redirect),
            Method::GET,
            None,
            (S::FOUND, "redirect"),
            (S::FOUND, "redirect"),
        ),
        row(
            "redirect range",
            |r| r.mode(Mode::Redirect),
            Method::GET,
            Some("bytes=0-9"),
            (S::FOUND, "redirect"),
            (S::FOUND, "redirect"),
        ),
        row(
            "async GET",
            |r| r.mode(Mode::Async),
            Method::GET,
            None,
            (S::FOUND, "async"),
            (S::FOUND, "async"),
        ),
        row(
            "async HEAD",
            |r| r.mode(Mode::Async).on_head(HeadMiss::Fill),
            Method::HEAD,
            None,
            (S::FOUND, "async"),
            (S::FOUND, "async"),
        ),
    ]
}

#[tokio::test]
async fn every_mode_method_and_policy_with_a_free_and_a_full_bound() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(4096, 23);
    let c = client();
    for (full, label) in [(false, "free"), (true, "full")] {
        for (i, row) in rows().into_iter().enumerate() {
            let key = format!("t/{label}/{i}.bin");
            origin.object(&key, object.clone());
            slow(&origin, "hold.bin", &object, Duration::from_secs(3));
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let layer = OriginPullBuilder::from_object_store(store.clone())
                .max_fills(1)
                .fill_queue_timeout(Duration::from_millis(20))
                // Takes the only slot when the bound is to be full.
                .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()).prefix("hold"))
                .rule((row.rule)(Rule::new(HttpOrigin::new(&origin.url).unwrap())))
                .build();
            let url = router(store, layer.clone()).await;
            let holder = full.then(|| {
                let (c, url) = (c.clone(), format!("{url}hold.bin"));
                tokio::spawn(async move { get(&c, &url).await })
            });
            if full {
                assert!(
                    eventually(Duration::from_secs(5), || async {
                        layer.handle().fills_in_flight() == 1
                    })
                    .await
                );
            }
            let headers: Vec<(&str, &str)> = row.range.map(|r| ("range", r)).into_iter().collect();
            let got = request_with(&c, row.method.clone(), &format!("{url}{key}"), &headers).await;
            let (status, outcome) = if full { row.full } else { row.free };
            assert_eq!(got.status, status, "{label} {}", row.name);
            assert_eq!(got.outcome().unwrap_or(""), outcome, "{label} {}", row.name);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(got.headers.contains_key("retry-after"), "{}", row.name);
            }
            if let Some(holder) = holder {
                layer.handle().shutdown(Duration::ZERO).await;
                let _ = holder.await;
            }
        }
    }
}

/// Background fills hold at most `background_concurrency` of the `max_fills` slots: with
/// the background share full of slow async fills, a live miss still gets a slot at once.
#[tokio::test]
async fn a_full_background_share_never_starves_a_live_miss() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(4096, 31);
    for i in 0..6 {
        slow(
            &origin,
            &format!("bg/{i}.bin"),
            &object,
            Duration::from_secs(2),
        );
    }
    origin.object("live.bin", object.clone());
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .max_fills(3)
        .background_concurrency(2)
        .fill_queue_timeout(Duration::from_millis(50))
        .rule(
            Rule::new(HttpOrigin::new(&origin.url).unwrap())
                .prefix("bg/")
                .mode(Mode::Async),
        )
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let url = router(store, layer.clone()).await;
    let c = client();
    for i in 0..6 {
        let got = get(&c, &format!("{url}bg/{i}.bin")).await;
        assert_eq!(got.status, StatusCode::FOUND);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            layer.handle().fills_in_flight() == 2
        })
        .await,
        "the background share is full"
    );
    let live = get(&c, &format!("{url}live.bin")).await;
    assert_eq!(
        live.outcome(),
        Some("pulled"),
        "a live miss gets the slot left"
    );
    assert_eq!(live.body.unwrap(), object);
    assert_eq!(
        layer.handle().fills_in_flight(),
        2,
        "still only 2 background fills"
    );
    layer.handle().shutdown(Duration::ZERO).await;
}
