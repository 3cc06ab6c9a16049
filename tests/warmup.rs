//! Warm-up of key lists, and tombstones that keep deleted keys deleted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower_origin_pull::warmup::Warmup;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, OriginPullLayer, Rule};

use common::*;

fn layer(origin: &str, store: Arc<dyn ObjectStore>) -> OriginPullLayer {
    OriginPullBuilder::new(BucketStore::new(store).with_tombstones(true))
        .rule(Rule::new(HttpOrigin::new(origin).unwrap()).prefix("w/"))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keys_warm_up_once_and_a_second_run_pulls_nothing() {
    let origin = TestOrigin::start().await;
    let keys: Vec<String> = (0..1000).map(|i| format!("w/{i:04}.bin")).collect();
    for (i, key) in keys.iter().enumerate() {
        origin.object(key, random_bytes(1000 + i, i as u64));
    }
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = layer(&origin.url, store.clone());
    let mut updates = 0;
    let mut last = None;
    let report = Warmup::new(&layer)
        .concurrency(16)
        .run(keys.clone(), |p| {
            updates += 1;
            last = Some(p.clone());
        })
        .await;
    let p = report.progress;
    assert_eq!(
        (p.done, p.pulled, p.skipped, p.failed),
        (1000, 1000, 0, 0),
        "{:?}",
        report.failures
    );
    assert_eq!(p.total, Some(1000));
    assert_eq!(updates, 1000, "progress after every key");
    assert_eq!(last.unwrap().done, 1000);
    assert_eq!(p.bytes, (0..1000u64).map(|i| 1000 + i).sum::<u64>());
    assert_eq!(origin.total_hits(), 1000);
    assert_eq!(listing(&*store).await.len(), 1000);

    let again = Warmup::new(&layer).concurrency(16).run(keys, |_| {}).await;
    assert_eq!((again.progress.pulled, again.progress.skipped), (0, 1000));
    assert_eq!(origin.total_hits(), 1000, "the second run pulled nothing");
}

#[tokio::test]
async fn warm_up_reports_what_it_cannot_pull_and_shares_fills_with_live_traffic() {
    let origin = TestOrigin::start().await;
    origin.put(
        "w/slow.bin",
        Behaviour::Chunked {
            chunks: vec![random_bytes(1000, 1), random_bytes(1000, 2)],
            pause: Duration::from_millis(300),
        },
    );
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = layer(&origin.url, store.clone());
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    // Live traffic starts the fill; the warm-up joins it.
    let live =
        tokio::spawn(async move { get(&client(), &format!("http://{addr}/w/slow.bin")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let keys = [
        "w/slow.bin",
        "w/missing.bin",
        "x/no-rule.bin",
        "w/../up",
        "w/5xx.bin",
    ];
    origin.put("w/5xx.bin", Behaviour::Status(500));
    let report = Warmup::new(&layer)
        .run(keys.iter().map(|k| k.to_string()), |_| {})
        .await;
    assert_eq!(live.await.unwrap().outcome(), Some("pulled"));
    assert_eq!(
        origin.hits("w/slow.bin"),
        1,
        "one fetch shared by traffic and warm-up"
    );
    assert_eq!(report.progress.pulled, 1);
    let mut failed: Vec<&str> = report.failures.iter().map(|(k, _)| k.as_str()).collect();
    failed.sort();
    assert_eq!(
        failed,
        ["w/../up", "w/5xx.bin", "w/missing.bin", "x/no-rule.bin"]
    );
}

#[tokio::test]
async fn deleted_keys_stay_deleted_until_undeleted() {
    let origin = TestOrigin::start().await;
    origin.object("w/gone.txt", "bring me back?");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = layer(&origin.url, store.clone());
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    let c = client();
    let url = format!("http://{addr}/w/gone.txt");
    assert_eq!(get(&c, &url).await.outcome(), Some("pulled"));

    layer.handle().delete("w/gone.txt").await.unwrap();
    assert!(stored(&*store, "w/gone.txt").await.is_none());
    let after = get(&c, &url).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "not pulled back");
    assert_eq!(origin.hits("w/gone.txt"), 1);
    // The warm-up respects it too.
    let report = Warmup::new(&layer)
        .run(["w/gone.txt".to_owned()], |_| {})
        .await;
    assert_eq!(report.progress.skipped, 1);
    // The markers themselves are never pulled.
    let marker = get(
        &c,
        &format!("http://{addr}/.origin-pull-tombstones/w/other.txt"),
    )
    .await;
    assert_eq!(marker.outcome(), None);

    layer.handle().undelete("w/gone.txt").await.unwrap();
    assert_eq!(get(&c, &url).await.outcome(), Some("pulled"));
    assert_eq!(origin.hits("w/gone.txt"), 2);
}
