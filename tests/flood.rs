//! One bound over every fill kind: 2,000 distinct cold keys from 200 concurrent clients
//! against a slow origin that counts the requests it has in flight, with `max_fills(8)`.
//! Whatever the kind (sync, proxy, async, cold `Range`, warm-up), the origin never has more
//! than 8 requests in flight, at least 8 pulls complete, and every request gets its
//! documented answer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tokio::sync::Semaphore;
use tower_origin_pull::warmup::Warmup;
use tower_origin_pull::{HttpOrigin, Mode, OriginPullBuilder, OriginPullLayer, Rule};

use common::*;

const KEYS: usize = 2_000;
const CLIENTS: usize = 200;
const BOUND: usize = 8;

/// Counts requests in flight (from the handler's start to the end of its body) and keeps
/// the highest count seen.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

struct Leaving(InFlight);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InFlight {
    fn enter(&self) -> Leaving {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        Leaving(self.clone())
    }
}

/// Every object is `object <key>` padded to 4 KiB; the origin takes 10 ms to send it.
fn object_for(key: &str) -> Vec<u8> {
    let mut body = format!("object {key}\n").into_bytes();
    body.resize(4096, b'.');
    body
}

async fn slow_origin(counter: InFlight) -> String {
    let app = Router::new().fallback(move |req: Request| {
        let counter = counter.clone();
        async move {
            let leaving = counter.enter();
            let key = req.uri().path().trim_start_matches('/').to_owned();
            let mut body = object_for(&key);
            // The one range the flood asks for.
            let ranged = req
                .headers()
                .get("range")
                .is_some_and(|v| v == "bytes=0-99");
            if ranged {
                body.truncate(100);
            }
            let len = body.len();
            let stream = futures::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(leaving);
                Ok::<_, std::io::Error>(bytes::Bytes::from(body))
            });
            let response = Response::builder().header("content-length", len);
            let response = if ranged {
                response
                    .status(206)
                    .header("content-range", "bytes 0-99/4096")
            } else {
                response
            };
            response.body(Body::from_stream(stream)).unwrap()
        }
    });
    format!("http://{}/", serve(app).await)
}

struct Flood {
    url: String,
    layer: OriginPullLayer,
    store: Arc<dyn ObjectStore>,
    origin: InFlight,
}

async fn flood_app(mode: Mode, background: usize) -> Flood {
    let origin = InFlight::default();
    let origin_url = slow_origin(origin.clone()).await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .max_fills(BOUND)
        .background_concurrency(background)
        .fill_queue_timeout(Duration::from_millis(200))
        .rule(Rule::new(HttpOrigin::new(&origin_url).unwrap()).mode(mode))
        .build();
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    Flood {
        url: format!("http://{addr}/"),
        layer,
        store,
        origin,
    }
}

/// GET every key once from `CLIENTS` concurrent clients; returns the answers.
async fn flood(app: &Flood, range: bool) -> Vec<(String, Got)> {
    let c = client();
    let clients = Arc::new(Semaphore::new(CLIENTS));
    let tasks: Vec<_> = (0..KEYS)
        .map(|i| {
            let (c, clients) = (c.clone(), clients.clone());
            let key = format!("f/{i}.bin");
            let url = format!("{}{key}", app.url);
            tokio::spawn(async move {
                let _client = clients.acquire_owned().await.unwrap();
                let headers: &[(&str, &str)] = if range {
                    &[("range", "bytes=0-99")]
                } else {
                    &[]
                };
                (key, get_with(&c, &url, headers).await)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(KEYS);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// A `503` past the bound, with `Retry-After`.
fn is_retry_later(got: &Got) -> bool {
    got.status == StatusCode::SERVICE_UNAVAILABLE && got.headers.contains_key("retry-after")
}

async fn settle(app: &Flood) {
    assert!(
        eventually(Duration::from_secs(30), || async {
            app.layer.handle().fills_in_flight() == 0
        })
        .await,
        "every fill ends"
    );
    let max = app.origin.max.load(Ordering::SeqCst);
    assert!(max <= BOUND, "{max} requests in flight at the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flood_never_exceeds_the_bound() {
    let app = flood_app(Mode::Sync, 4).await;
    let mut pulled = 0;
    for (key, got) in flood(&app, false).await {
        match got.outcome() {
            Some("pulled") | Some("coalesced") => {
                assert_eq!(got.status, StatusCode::OK);
                assert_eq!(got.body.unwrap(), object_for(&key));
                pulled += 1;
            }
            _ => assert!(is_retry_later(&got), "{key}: {}", got.status),
        }
    }
    settle(&app).await;
    assert!(pulled >= BOUND, "{pulled} pulls");
    assert!(listing(&*app.store).await.len() >= pulled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_flood_never_exceeds_the_bound() {
    let app = flood_app(Mode::Proxy, 4).await;
    let mut proxied = 0;
    for (key, got) in flood(&app, false).await {
        match got.outcome() {
            Some("proxied") => {
                assert_eq!(got.body.unwrap(), object_for(&key));
                proxied += 1;
            }
            _ => assert!(is_retry_later(&got), "{key}: {}", got.status),
        }
    }
    settle(&app).await;
    assert!(proxied >= BOUND, "{proxied} proxied");
    assert!(
        listing(&*app.store).await.is_empty(),
        "proxy stores nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flood_never_exceeds_the_bound() {
    let app = flood_app(Mode::Async, BOUND).await;
    for (key, got) in flood(&app, false).await {
        assert_eq!(got.status, StatusCode::FOUND, "{key}: always redirected");
    }
    settle(&app).await;
    let stats = app.layer.handle().background_stats();
    let stored = listing(&*app.store).await.len();
    assert!(stored >= BOUND, "{stored} stored");
    assert_eq!(
        stats.queued + stats.deduplicated + stats.dropped_queue_full,
        KEYS as u64,
        "{stats:?}"
    );
    assert_eq!(
        stored as u64, stats.queued,
        "every queued fill ran: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_range_flood_never_exceeds_the_bound() {
    let app = flood_app(Mode::Sync, 4).await;
    let mut served = 0;
    for (key, got) in flood(&app, true).await {
        match got.status {
            StatusCode::PARTIAL_CONTENT => {
                assert_eq!(got.body.unwrap(), object_for(&key)[..100]);
                served += 1;
            }
            _ => assert!(is_retry_later(&got), "{key}: {}", got.status),
        }
    }
    settle(&app).await;
    assert!(served >= BOUND, "{served} ranges served");
    assert!(
        !listing(&*app.store).await.is_empty(),
        "background fills ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_flood_never_exceeds_the_bound() {
    let app = flood_app(Mode::Sync, BOUND).await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("f/{i}.bin")).collect();
    let report = Warmup::new(&app.layer)
        .concurrency(CLIENTS)
        .run(keys, |_| {})
        .await;
    assert_eq!(report.progress.pulled, KEYS as u64, "{:?}", report.failures);
    settle(&app).await;
    assert_eq!(listing(&*app.store).await.len(), KEYS);
    assert_eq!(app.origin.total.load(Ordering::SeqCst), KEYS);
}
