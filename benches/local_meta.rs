//! What the metadata kept beside objects on a local disk costs a hit through `ServeStore`.
//!
//! ```text
//! cargo bench --bench local_meta
//! ```
//!
//! 4 KiB objects in one `LocalFileSystem` directory, served by `ServeStore` three ways:
//!
//! - `beside`: objects written as a pull writes them, with their attributes in
//!   `.origin-pull-meta/<key>.meta`; `ServeStore`'s local path reads that file in the same
//!   blocking task as the object;
//! - `none`: the same objects without metadata files (the lookup of the missing file is
//!   still made): `beside` − `none` is what the metadata costs a hit;
//! - `object_store`: the metadata-less objects through a `PrefixStore` with an empty prefix,
//!   which hides that it is a local disk, so `ServeStore` goes through object_store's
//!   `LocalFileSystem` (a blocking-pool hand-off per step) as it did before its local path.
//!
//! Each round serves `REQUESTS` hits one at a time and then 32 at a time, on a two-thread
//! runtime; rounds alternate and the medians are printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{Attribute, Attributes, ObjectStore};
use tower::ServiceExt;
use tower_origin_pull::{BucketStore, ServeStore, Store};

const OBJECTS: usize = 64;
const REQUESTS: usize = 4_000;
const ROUNDS: usize = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    // Written as a pull writes them: with attributes, which land beside each object.
    let store = BucketStore::new(local.clone());
    for i in 0..OBJECTS {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/octet-stream".into());
        attributes.insert(
            Attribute::Metadata("origin_pull_etag".into()),
            format!("\"origin-{i}\"").into(),
        );
        let mut w = store
            .begin(&format!("o/{i}.bin"), attributes)
            .await
            .unwrap();
        w.write(Bytes::from(vec![b'x'; 4096])).await.unwrap();
        w.commit().await.unwrap();
    }
    let plain_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(plain_dir.path().join("o")).unwrap();
    for i in 0..OBJECTS {
        std::fs::write(
            plain_dir.path().join(format!("o/{i}.bin")),
            vec![b'x'; 4096],
        )
        .unwrap();
    }
    let plain: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(plain_dir.path()).unwrap());
    let services = [
        ("beside", ServeStore::new(local)),
        ("none", ServeStore::new(plain.clone())),
        (
            "object_store",
            ServeStore::new(Arc::new(PrefixStore::new(plain, "")) as Arc<dyn ObjectStore>),
        ),
    ];
    // They really differ in what they answer.
    assert_eq!(etag(&services[0].1).await, "\"origin-0\"");
    assert_ne!(etag(&services[1].1).await, "\"origin-0\"");
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, _) in &services {
        rows.push((format!("{name}: one at a time (µs/hit)"), Vec::new()));
        rows.push((format!("{name}: 32 at once (hits/s)"), Vec::new()));
    }
    for _ in 0..ROUNDS {
        for (i, (_, svc)) in services.iter().enumerate() {
            rows[2 * i].1.push(per_hit_us(sequential(svc).await));
            rows[2 * i + 1].1.push(rate(concurrent(svc).await));
        }
    }
    for (name, mut values) in rows {
        values.sort_by(f64::total_cmp);
        println!(
            "{name:<40} median {:>9.1}   (all: {values:.1?})",
            values[values.len() / 2]
        );
    }
}

async fn etag(svc: &ServeStore) -> String {
    let req = Request::get("/o/0.bin").body(()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    res.headers()["etag"].to_str().unwrap().to_owned()
}

async fn hit(svc: ServeStore, i: usize) {
    let req = Request::get(format!("/o/{}.bin", i % OBJECTS))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 4096);
}

async fn sequential(svc: &ServeStore) -> Duration {
    let started = Instant::now();
    for i in 0..REQUESTS {
        hit(svc.clone(), i).await;
    }
    started.elapsed()
}

async fn concurrent(svc: &ServeStore) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..REQUESTS)
        .for_each_concurrent(32, |i| hit(svc.clone(), i))
        .await;
    started.elapsed()
}

fn per_hit_us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / REQUESTS as f64
}

fn rate(d: Duration) -> f64 {
    REQUESTS as f64 / d.as_secs_f64()
}
