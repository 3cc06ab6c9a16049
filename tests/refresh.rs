//! Refresh: a stored object older than `revalidate_after` is served at once and revalidated
//! in the background with one conditional origin request; `304` rewrites nothing, `200`
//! replaces it; the validation time survives a restart; `Warmup::refresh` does it on demand.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use tower_origin_pull::warmup::Warmup;
use tower_origin_pull::{
    BucketStore, HttpOrigin, OriginGone, OriginPullBuilder, OriginPullHandle, Rule, ServeStore,
};

use common::*;

/// An origin with one current version per path that honours `If-None-Match`.
#[derive(Clone, Default)]
struct Versioned {
    current: Arc<Mutex<Option<(&'static str, &'static str)>>>,
    requests: Arc<AtomicUsize>,
    conditional: Arc<AtomicUsize>,
}

async fn versioned(State(v): State<Versioned>, req: Request) -> Response {
    v.requests.fetch_add(1, Ordering::SeqCst);
    let asked = req.headers().get("if-none-match").cloned();
    if asked.is_some() {
        v.conditional.fetch_add(1, Ordering::SeqCst);
    }
    let Some((body, etag)) = *v.current.lock().unwrap() else {
        return Response::builder().status(404).body(Body::empty()).unwrap();
    };
    if asked.is_some_and(|a| a == etag) {
        return Response::builder()
            .status(304)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap();
    }
    Response::builder()
        .header("etag", etag)
        .header("content-type", "text/plain")
        .body(Body::from(body))
        .unwrap()
}

impl Versioned {
    async fn start() -> (Self, String) {
        let v = Versioned::default();
        *v.current.lock().unwrap() = Some(("version one", "\"v1\""));
        let app = Router::new().fallback(versioned).with_state(v.clone());
        let url = format!("http://{}/", serve(app).await);
        (v, url)
    }

    fn set(&self, version: Option<(&'static str, &'static str)>) {
        *self.current.lock().unwrap() = version;
    }
}

async fn mirror(
    store: Arc<dyn ObjectStore>,
    origin: &str,
    rule: impl FnOnce(Rule) -> Rule,
) -> (String, OriginPullHandle) {
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(rule(Rule::new(HttpOrigin::new(origin).unwrap())))
        .build();
    let handle = layer.handle();
    let app = Router::new()
        .fallback_service(ServeStore::new(store))
        .layer(layer);
    (format!("http://{}/", serve(app).await), handle)
}

#[tokio::test]
async fn a_changed_origin_is_refreshed_once_in_the_background_and_an_unchanged_one_is_not_rewritten()
 {
    let (origin, origin_url) = Versioned::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (url, _handle) = mirror(store.clone(), &origin_url, |r| {
        r.revalidate_after(Duration::from_secs(1))
    })
    .await;
    let url = format!("{url}doc.txt");
    let c = client();
    assert_eq!(get(&c, &url).await.body(), b"version one");
    // Fresh: hits ask the origin nothing.
    for _ in 0..10 {
        assert_eq!(get(&c, &url).await.outcome(), None);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);

    // Unchanged at the origin: one conditional request, 304, the bytes are not rewritten.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = store.head(&"doc.txt".into()).await.unwrap();
    assert_eq!(get(&c, &url).await.body(), b"version one");
    let asked = eventually(Duration::from_secs(3), || async {
        origin.conditional.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(asked, "one conditional request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = store.head(&"doc.txt".into()).await.unwrap();
    assert_eq!(before.last_modified, after.last_modified, "not rewritten");
    assert_eq!(before.e_tag, after.e_tag);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 2);

    // Changed at the origin: 100 concurrent hits after the age serve the old bytes at once
    // and start exactly one conditional request; then hits serve the new bytes.
    origin.set(Some(("version two", "\"v2\"")));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hits: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for hit in hits {
        let hit = hit.await.unwrap();
        assert_eq!(hit.outcome(), None, "served from the store");
        let body = hit.body();
        assert!(
            body == b"version one" || body == b"version two",
            "never a mix"
        );
    }
    let refreshed = eventually(Duration::from_secs(2), || {
        let c = c.clone();
        let url = url.clone();
        async move { get(&c, &url).await.body() == b"version two" }
    })
    .await;
    assert!(refreshed, "hits serve the new bytes within 2 s");
    assert_eq!(
        origin.conditional.load(Ordering::SeqCst),
        2,
        "one more conditional request"
    );
    assert_eq!(origin.requests.load(Ordering::SeqCst), 3);
    let hit = get(&c, &url).await;
    assert_eq!(
        hit.headers["etag"], "\"v2\"",
        "the new version's validators"
    );
}

#[tokio::test]
async fn the_validation_time_survives_a_restart_and_off_means_never_asked() {
    let (origin, origin_url) = Versioned::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let after = Duration::from_secs(2);
    let (url, _) = mirror(store.clone(), &origin_url, |r| r.revalidate_after(after)).await;
    let c = client();
    assert_eq!(
        get(&c, &format!("{url}a.txt")).await.outcome(),
        Some("pulled")
    );
    // A new layer over the same store ("a restart") knows the object is fresh.
    let (url2, _) = mirror(store.clone(), &origin_url, |r| r.revalidate_after(after)).await;
    for _ in 0..5 {
        assert_eq!(get(&c, &format!("{url2}a.txt")).await.outcome(), None);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        1,
        "fresh after a restart"
    );
    // Without refresh, an old object is never revalidated.
    let (url3, _) = mirror(store.clone(), &origin_url, |r| r).await;
    tokio::time::sleep(after).await;
    origin.set(Some(("version two", "\"v2\"")));
    assert_eq!(
        get(&c, &format!("{url3}a.txt")).await.body(),
        b"version one"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        1,
        "refresh off: never asked"
    );
}

#[tokio::test]
async fn warmup_refresh_and_origin_gone() {
    let (origin, origin_url) = Versioned::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (url, handle) = mirror(store.clone(), &origin_url, |r| {
        r.on_origin_gone(OriginGone::Delete)
    })
    .await;
    let c = client();
    let mut events = handle.subscribe();
    assert_eq!(
        get(&c, &format!("{url}w.txt")).await.outcome(),
        Some("pulled")
    );
    // Unchanged: skipped; changed: pulled (replaced), with a `refreshed` completion.
    let report = Warmup::new(handle.clone())
        .refresh(["w.txt".to_owned()], |_| {})
        .await;
    assert_eq!(
        (report.progress.skipped, report.progress.pulled),
        (1, 0),
        "{report:?}"
    );
    origin.set(Some(("version two", "\"v2\"")));
    let report = Warmup::new(handle.clone())
        .refresh(["w.txt".to_owned()], |_| {})
        .await;
    assert_eq!(report.progress.pulled, 1, "{report:?}");
    assert_eq!(report.progress.bytes, 11);
    // One revalidated (304), one replaced: both counted as refreshes.
    assert_eq!(handle.progress().refreshed, 2);
    assert_eq!(get(&c, &format!("{url}w.txt")).await.body(), b"version two");
    let mut refreshed = false;
    while let Ok(event) = events.try_recv() {
        if let tower_origin_pull::events::FillEvent::Completed { committed, .. } = event {
            refreshed |= committed == tower_origin_pull::Committed::Refreshed;
        }
    }
    assert!(refreshed, "a Completed event says refreshed");
    // Gone at the origin, and the rule deletes: removed from the store.
    origin.set(None);
    let report = Warmup::new(handle.clone())
        .refresh(["w.txt".to_owned()], |_| {})
        .await;
    assert_eq!(report.progress.failed, 1);
    assert_eq!(
        stored(&*store, "w.txt").await,
        None,
        "removed when the origin lost it"
    );
}

#[tokio::test]
async fn revalidate_before_serve_never_serves_the_old_bytes_after_the_origin_changed() {
    let (origin, origin_url) = Versioned::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (url, _) = mirror(store.clone(), &origin_url, |r| {
        r.revalidate_after(Duration::from_secs(1))
            .revalidate_before_serve(true)
    })
    .await;
    let url = format!("{url}s.txt");
    let c = client();
    assert_eq!(get(&c, &url).await.body(), b"version one");
    // Fresh: served at once, the origin is not asked.
    assert_eq!(get(&c, &url).await.outcome(), None);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
    origin.set(Some(("version two", "\"v2\"")));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hits: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for hit in hits {
        let hit = hit.await.unwrap();
        assert_eq!(hit.status, http::StatusCode::OK);
        assert_eq!(hit.body(), b"version two", "never the old bytes");
        assert_eq!(hit.headers["etag"], "\"v2\"");
    }
    assert_eq!(
        origin.conditional.load(Ordering::SeqCst),
        1,
        "one revalidation for all"
    );
    assert_eq!(get(&c, &url).await.outcome(), None, "a plain hit again");
    // Unchanged: the stored object after a 304.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = get(&c, &url).await;
    assert_eq!(hit.outcome(), None);
    assert_eq!(hit.body(), b"version two");
    assert_eq!(origin.conditional.load(Ordering::SeqCst), 2);
    // Gone at the origin: 404, not the old bytes.
    origin.set(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &url).await.status, http::StatusCode::NOT_FOUND);
}
