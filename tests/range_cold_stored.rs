//! One range decision: a `Range` gets the same status, `Content-Range` and bytes whether
//! the object is stored (a `ServeStore` hit) or cold (pulled under each `RangeMiss`
//! policy) — and a cold range is never a `5xx`. The origin answers ranges by RFC 9110: it is
//! `ServeStore` itself, over an in-memory store, behind a real HTTP server.

mod common;

use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tower_origin_pull::{
    HttpOrigin, Mode, OriginPullBuilder, RangeMiss, Rewrite, Rule, ServeStore,
};

use common::*;

/// 10,000 bytes, as RFC 9110's examples.
const LEN: usize = 10_000;

const RANGES: &[&str] = &[
    "bytes=0-499",
    "bytes=500-999",
    "bytes=-500",
    "bytes=9500-",
    "bytes=0-0,-1",
    "bytes=500-600,601-999",
    "bytes=0-",
    "bytes=0-9999",
    "bytes=0-99999",
    "bytes=1-1",
    "bytes=9999-",
    "bytes=10000-",
    "bytes=10001-",
    "bytes=10000-20000",
    "bytes=-0",
    "bytes=-1",
    "bytes=-10000",
    "bytes=-10001",
    "bytes=-99999999999999",
    "bytes=5-2",
    "bytes=0-1,5-2",
    "bytes=0-9,20000-30000",
    "bytes=0-9,500-600",
    "bytes=18446744073709551615-",
    "bytes=0-18446744073709551615",
    "bytes=abc",
    "items=0-5",
    "bytes=",
    "bytes=-",
    "BYTES=0-9",
];

async fn put(store: &dyn ObjectStore, key: &str, object: &Bytes) {
    store
        .put(&Path::from(key), PutPayload::from(object.clone()))
        .await
        .unwrap();
}

/// A server of `store` (a real `ServeStore` behind axum), wrapped in the layer if given.
async fn serve_store(
    store: Arc<dyn ObjectStore>,
    layer: Option<tower_origin_pull::OriginPullLayer>,
) -> String {
    let router = Router::new().fallback_service(ServeStore::new(store));
    let router = match layer {
        Some(layer) => router.layer(layer),
        None => router,
    };
    format!("http://{}/", serve(router).await)
}

fn summary(got: &Got) -> (StatusCode, Option<String>, Result<Bytes, String>) {
    (
        got.status,
        got.headers
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_owned()),
        got.body.clone(),
    )
}

#[tokio::test]
async fn every_range_answers_the_same_cold_and_stored() {
    let object = random_bytes(LEN, 14);
    // The origin: RFC 9110 ranges, by ServeStore.
    let origin_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&*origin_store, "o.bin", &object).await;
    let origin = serve_store(origin_store, None).await;
    // The stored side: the object already in the mirror's store.
    let stored_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&*stored_store, "s.bin", &object).await;
    let stored = serve_store(stored_store, None).await;

    let c = client();
    let policies = [
        (
            "sync/serve-range-and-fill",
            Mode::Sync,
            RangeMiss::ServeRangeAndFill,
        ),
        ("sync/fill-then-serve", Mode::Sync, RangeMiss::FillThenServe),
        ("sync/proxy-range", Mode::Sync, RangeMiss::ProxyRange),
        ("proxy", Mode::Proxy, RangeMiss::ProxyRange),
    ];
    let mut compared = 0;
    for (name, mode, policy) in policies {
        // A fresh mirror store per policy; every request below is for a key it lacks.
        let mirror_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layer = OriginPullBuilder::from_object_store(mirror_store.clone())
            .rule(
                Rule::new(HttpOrigin::new(&origin).unwrap())
                    .mode(mode)
                    .on_range(policy)
                    .rewrite(Rewrite::fixed("o.bin")),
            )
            .build();
        let mirror = serve_store(mirror_store, Some(layer)).await;
        for (i, range) in RANGES.iter().enumerate() {
            let want = summary(&get_with(&c, &format!("{stored}s.bin"), &[("range", range)]).await);
            let got = get_with(&c, &format!("{mirror}cold/{i}.bin"), &[("range", range)]).await;
            assert!(
                !got.status.is_server_error(),
                "{name} {range:?}: {} {:?}",
                got.status,
                got.body
            );
            assert!(
                got.outcome().is_some(),
                "{name} {range:?}: the layer answered it"
            );
            assert_eq!(
                summary(&got),
                want,
                "{name} {range:?} ({:?})",
                got.outcome()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, RANGES.len() * 4);
}
