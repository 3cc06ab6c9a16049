//! Purge: an object removed from the store with what is kept beside it, no tombstone left,
//! a fill in flight cancelled first, and the next miss pulls it again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tower_origin_pull::warmup::Warmup;
use tower_origin_pull::{
    BucketStore, HttpOrigin, OriginPullBuilder, OriginPullHandle, Rule, ServeStore,
};

use common::*;

async fn mirror(store: Arc<dyn ObjectStore>, origin: &TestOrigin) -> (String, OriginPullHandle) {
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()).with_tombstones(true))
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let handle = layer.handle();
    let app = Router::new()
        .fallback_service(ServeStore::new(store))
        .layer(layer);
    (format!("http://{}/", serve(app).await), handle)
}

#[tokio::test]
async fn purge_removes_the_object_and_its_metadata_and_the_key_is_pulled_again() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    for (name, store) in [
        ("memory", Arc::new(InMemory::new()) as Arc<dyn ObjectStore>),
        ("local", local),
    ] {
        let origin = TestOrigin::start().await;
        let (url, handle) = mirror(store.clone(), &origin).await;
        let c = client();
        for key in ["img/a.txt", "img/b.txt", "imgx/c.txt", "other/d.txt"] {
            origin.put(
                key,
                Behaviour::Object {
                    body: Bytes::from_static(b"v1"),
                    headers: vec![("etag", "\"v1\""), ("content-type", "text/plain")],
                },
            );
            assert_eq!(
                get(&c, &format!("{url}{key}")).await.outcome(),
                Some("pulled")
            );
        }
        if name == "local" {
            assert_eq!(
                meta_listing(&*store).await.len(),
                4,
                "metadata beside each object"
            );
        }
        handle.purge("other/d.txt").await.unwrap();
        assert_eq!(stored(&*store, "other/d.txt").await, None, "{name}");
        // A prefix is a plain string prefix: `img` takes `imgx/` too; `img/` does not.
        let purged = handle.purge_prefix("img/").await.unwrap();
        assert_eq!(purged.len(), 2, "{name}: {purged:?}");
        assert_eq!(listing(&*store).await, ["imgx/c.txt"], "{name}");
        if name == "local" {
            assert_eq!(
                meta_listing(&*store).await,
                [".origin-pull-meta/imgx/c.txt.meta"],
                "the purged keys' metadata went with them"
            );
        }
        // No tombstone: the next miss pulls the origin's current version.
        origin.put(
            "img/a.txt",
            Behaviour::Object {
                body: Bytes::from_static(b"v2"),
                headers: vec![("etag", "\"v2\"")],
            },
        );
        let again = get(&c, &format!("{url}img/a.txt")).await;
        assert_eq!(again.outcome(), Some("pulled"), "{name}");
        assert_eq!(again.body(), b"v2");
        assert_eq!(origin.hits("img/a.txt"), 2, "{name}");
        // Re-pull at once through warm-up.
        let report = Warmup::new(handle.clone())
            .run(["other/d.txt".to_owned()], |_| {})
            .await;
        assert_eq!(report.progress.pulled, 1, "{name}: {:?}", report.failures);
        assert_eq!(get(&c, &format!("{url}other/d.txt")).await.outcome(), None);
        // Not a clean key: refused, nothing touched.
        assert!(handle.purge("a/../imgx/c.txt").await.is_err());
        assert!(stored(&*store, "imgx/c.txt").await.is_some());
    }
}

#[tokio::test]
async fn a_purge_during_a_fill_cancels_it() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 7);
    let chunks = object
        .chunks(16 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    origin.put(
        "slow.bin",
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(300),
        },
    );
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (url, handle) = mirror(store.clone(), &origin).await;
    let c = client();
    let reader = tokio::spawn({
        let c = c.clone();
        let url = format!("{url}slow.bin");
        async move { body_of(&c, &url).await }
    });
    let started = eventually(Duration::from_secs(5), || {
        let handle = handle.clone();
        async move { handle.fills_in_flight() == 1 }
    })
    .await;
    assert!(started);
    handle.purge("slow.bin").await.unwrap();
    assert!(
        reader.await.unwrap().is_err(),
        "the cancelled fill's reader gets an error"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stored(&*store, "slow.bin").await,
        None,
        "the fill wrote nothing back"
    );
}
