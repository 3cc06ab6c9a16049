//! Deletes win over fills, and the crate's bookkeeping is never served as an object.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore};

use common::*;

#[tokio::test]
async fn a_delete_during_a_fill_cancels_it_and_a_tombstone_is_never_served() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 41);
    let size = object.len().div_ceil(4);
    let chunks = object.chunks(size).map(Bytes::copy_from_slice).collect();
    origin.put(
        "d/slow.bin",
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(300),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()).with_tombstones(true))
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let handle = layer.handle();
    let app = Router::new()
        .fallback_service(ServeStore::new(store.clone()))
        .layer(layer);
    let url = format!("http://{}/", serve(app).await);
    let c = client();
    let pending = {
        let (c, url) = (c.clone(), format!("{url}d/slow.bin"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            handle.fills_in_flight() == 1
        })
        .await
    );
    handle.delete("d/slow.bin").await.unwrap();
    let got = pending.await.unwrap();
    assert!(
        got.body.is_err(),
        "the cancelled fill's reader gets an error"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            handle.fills_in_flight() == 0
        })
        .await
    );
    assert!(
        stored(&*store, "d/slow.bin").await.is_none(),
        "not written back after the delete"
    );
    assert!(staging_files(dir.path()).is_empty());
    // Deleted on purpose: not pulled back.
    let again = get(&c, &format!("{url}d/slow.bin")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(origin.hits("d/slow.bin"), 1);
    // The tombstone itself is not an object anyone gets.
    let marker = get(&c, &format!("{url}.origin-pull-tombstones/d/slow.bin")).await;
    assert_eq!(marker.status, StatusCode::NOT_FOUND);
    assert_eq!(marker.outcome(), None, "and never pulled");
}
