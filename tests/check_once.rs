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
