//! A cold GET checks the store once: `ServeStore`'s `404` tells the fill it just looked, so
//! the fill does not look again; behind another inner service the fill still re-checks.

mod common;

use std::sync::Arc;

use axum::Router;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore};

use common::faulty::CountingStore;
use common::*;

#[tokio::test]
async fn a_cold_get_behind_serve_store_reads_the_store_once() {
    let origin = TestOrigin::start().await;
    origin.object("a.txt", "hello");
    for serve_store in [true, false] {
        let counting = CountingStore::new(Arc::new(InMemory::new()));
        let store: Arc<dyn ObjectStore> = counting.clone();
        let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
            .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
            .build();
        let app = if serve_store {
            Router::new().fallback_service(ServeStore::new(store.clone()))
        } else {
            store_service(store.clone())
        };
        let url = format!("http://{}/a.txt", serve(app.layer(layer)).await);
        let pulled = get(&client(), &url).await;
        assert_eq!(pulled.outcome(), Some("pulled"));
        assert_eq!(pulled.body(), b"hello");
        let reads = counting.reads();
        if serve_store {
            assert_eq!(reads, 1, "ServeStore's look only");
        } else {
            assert_eq!(reads, 2, "the inner service's look and the fill's re-check");
        }
    }
}

// `ServeStore`'s `404` speaks for the key it parsed, and the layer takes it (and skips the
// fill's re-check) only when it was parsed from the request's own path. Behind a nest
// (`ServeStore` sees `/a.txt`, the layer `/files/a.txt`) the layer's key is `files/a.txt`, and
// the fill still looks for it in the store: the second GET finds the object the first one
// stored and costs the origin nothing.
#[tokio::test]
async fn a_404_for_another_path_neither_names_the_key_nor_spares_the_recheck() {
    let origin = TestOrigin::start().await;
    origin.object("files/a.txt", "nested");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let app = Router::new().nest_service("/files", ServeStore::new(store.clone()));
    let url = format!("http://{}/files/a.txt", serve(app.layer(layer)).await);
    let first = get(&client(), &url).await;
    assert_eq!(first.outcome(), Some("pulled"));
    assert_eq!(first.body(), b"nested");
    assert_eq!(
        stored(&*store, "files/a.txt").await.as_deref(),
        Some(&b"nested"[..])
    );
    let second = get(&client(), &url).await;
    assert_eq!(second.body(), b"nested");
    assert_eq!(
        origin.hits("files/a.txt"),
        1,
        "the fill found the stored object"
    );
    assert_eq!(
        origin.total_hits(),
        1,
        "no request for the nested path's key"
    );
}
