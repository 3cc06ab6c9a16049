//! Every fill is supervised: whatever user code does (an `Origin` or `Store` that panics,
//! hangs or is dropped with its runtime), every reader's answer ends — an error, never a
//! clean short body, never a hang — the slot of the bound is released, nothing partial is
//! stored, and the next request for the key starts a fresh fill.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tokio::sync::watch;
use tower::ServiceExt;
use tower_origin_pull::{
    BucketStore, Error, HttpOrigin, Origin, OriginPullBuilder, OriginPullLayer, OriginRequest,
    OriginResponse, Rule, Store, StoreWrite, StoredObject,
};

use common::*;

const HEALTHY: u8 = 0;
const PANIC_FETCH: u8 = 1;
const PANIC_BODY: u8 = 2;
const HANG_FETCH: u8 = 3;
const HANG_BODY: u8 = 4;

/// A real HTTP origin behind user code that misbehaves on demand, after a gate opens (so
/// that the waiters can join the fill first).
#[derive(Debug, Clone)]
struct Misbehaving {
    inner: HttpOrigin,
    mode: Arc<AtomicU8>,
    gate: watch::Receiver<bool>,
}

impl Origin for Misbehaving {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        let this = self.clone();
        async move {
            let mut gate = this.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            match this.mode.load(Ordering::SeqCst) {
                PANIC_FETCH => panic!("the origin's fetch exploded"),
                HANG_FETCH => futures::future::pending().await,
                mode @ (PANIC_BODY | HANG_BODY) => {
                    let response = this.inner.fetch(request).await?;
                    let body = response
                        .body
                        .enumerate()
                        .then(move |(i, chunk)| async move {
                            if i == 1 {
                                if mode == PANIC_BODY {
                                    panic!("the origin's body exploded");
                                }
                                futures::future::pending::<()>().await;
                            }
                            chunk
                        })
                        .boxed();
                    Ok(OriginResponse::new(
                        response.status,
                        response.headers,
                        response.content_length,
                        body,
                    ))
                }
                _ => this.inner.fetch(request).await,
            }
        }
        .boxed()
    }
}

/// A real store whose writer panics at its second chunk while armed.
#[derive(Debug)]
struct PanickyStore {
    inner: BucketStore,
    armed: Arc<AtomicU8>,
}

struct PanickyWrite {
    inner: Box<dyn StoreWrite>,
    armed: bool,
    writes: usize,
}

impl StoreWrite for PanickyWrite {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        self.writes += 1;
        if self.armed && self.writes == 2 {
            panic!("the store's write exploded");
        }
        self.inner.write(chunk)
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<tower_origin_pull::Committed, Error>> {
        self.inner.commit()
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        self.inner.abort()
    }
}

impl Store for PanickyStore {
    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<StoredObject>, Error>> {
        self.inner.read(key, offset)
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        attributes: object_store::Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        async move {
            let inner = self.inner.begin(key, attributes).await?;
            Ok(Box::new(PanickyWrite {
                inner,
                armed: self.armed.load(Ordering::SeqCst) == 1,
                writes: 0,
            }) as Box<dyn StoreWrite>)
        }
        .boxed()
    }
}

struct App {
    url: String,
    store: Arc<dyn ObjectStore>,
    layer: OriginPullLayer,
    mode: Arc<AtomicU8>,
    store_armed: Arc<AtomicU8>,
    gate: watch::Sender<bool>,
    inner_calls: Arc<AtomicUsize>,
    _dir: Option<tempfile::TempDir>,
}

impl App {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// An app over `store` whose origin and store misbehave on demand; `LocalFileSystem` gets
/// small multipart parts so an upload is in progress when things break.
async fn app(
    origin: &TestOrigin,
    local: bool,
    layer: impl FnOnce(OriginPullBuilder) -> OriginPullBuilder,
) -> App {
    let (store, dir): (Arc<dyn ObjectStore>, _) = if local {
        let dir = tempfile::tempdir().unwrap();
        (
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            Some(dir),
        )
    } else {
        (Arc::new(InMemory::new()), None)
    };
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let store_armed = Arc::new(AtomicU8::new(0));
    let (gate, gate_rx) = watch::channel(true);
    let misbehaving = Misbehaving {
        inner: HttpOrigin::new(&origin.url).unwrap(),
        mode: mode.clone(),
        gate: gate_rx,
    };
    let bucket = BucketStore::new(store.clone())
        .with_multipart_threshold(16 * 1024)
        .with_part_size(16 * 1024);
    let layer = layer(OriginPullBuilder::new(PanickyStore {
        inner: bucket,
        armed: store_armed.clone(),
    }))
    .rule(Rule::new(misbehaving))
    .build();
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = inner_calls.clone();
        let router = store_service(store.clone());
        tower::service_fn(move |req| {
            calls.fetch_add(1, Ordering::SeqCst);
            router.clone().oneshot(req)
        })
    };
    let addr = serve(Router::new().fallback_service(inner).layer(layer.clone())).await;
    App {
        url: format!("http://{addr}/"),
        store,
        layer,
        mode,
        store_armed,
        gate,
        inner_calls,
        _dir: dir,
    }
}

/// The object, in four pieces 20 ms apart (so a body fault falls mid-object).
fn put_object(origin: &TestOrigin, key: &str, object: &Bytes) {
    let size = object.len().div_ceil(4);
    let chunks = object.chunks(size).map(Bytes::copy_from_slice).collect();
    origin.put(
        key,
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(20),
        },
    );
}

/// A leader and 20 waiters on one fill that breaks once they have all joined: every answer
/// ends in an error, within `bound`; then nothing is in flight and nothing partial stored.
async fn twenty_one_break(app: &App, key: &str, object: &Bytes, bound: Duration) {
    app.gate.send_replace(false);
    let c = client();
    let started = Instant::now();
    let calls_before = app.inner_calls.load(Ordering::SeqCst);
    let gets: Vec<_> = (0..21)
        .map(|_| {
            let (c, url) = (c.clone(), app.at(key));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    // Every request has had its 404 from the inner service (and joined the fill, which
    // happens in the same poll); then the fault is let loose.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.inner_calls.load(Ordering::SeqCst) - calls_before == 21
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        app.layer.handle().fills_in_flight(),
        1,
        "one fill for the 21 requests"
    );
    app.gate.send_replace(true);
    for got in gets {
        let got = got.await.unwrap();
        match got.status {
            StatusCode::BAD_GATEWAY => assert_eq!(got.outcome(), Some("failed")),
            StatusCode::OK => {
                let err = got
                    .body
                    .as_ref()
                    .expect_err("a broken fill never ends cleanly");
                assert!(!err.is_empty());
            }
            other => panic!("unexpected {other}"),
        }
        if let Ok(body) = &got.body {
            assert_ne!(body, object);
        }
    }
    assert!(
        started.elapsed() < bound,
        "every answer within {bound:?}: {:?}",
        started.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.layer.handle().fills_in_flight() == 0
        })
        .await,
        "the slot is released"
    );
    assert!(
        stored(&*app.store, key).await.is_none(),
        "nothing partial is visible"
    );
    if let Some(dir) = &app._dir {
        assert!(
            eventually(Duration::from_secs(5), || async {
                staging_files(dir.path()).is_empty()
            })
            .await,
            "no staging file: {:?}",
            staging_files(dir.path())
        );
    }
}

/// After healing, the next request pulls the object whole and stores it; the one after
/// is a hit.
async fn heals(app: &App, origin: &TestOrigin, key: &str, object: &Bytes) {
    app.mode.store(HEALTHY, Ordering::SeqCst);
    app.store_armed.store(0, Ordering::SeqCst);
    let c = client();
    let got = get(&c, &app.at(key)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.outcome(), Some("pulled"), "a fresh fill");
    assert_eq!(got.body.as_ref().unwrap(), object);
    assert!(
        eventually(Duration::from_secs(5), || async {
            stored(&*app.store, key).await.as_ref() == Some(object)
        })
        .await
    );
    let before = origin.total_hits();
    let hit = get(&c, &app.at(key)).await;
    assert_eq!(hit.outcome(), None, "a plain hit");
    assert_eq!(hit.body.as_ref().unwrap(), object);
    assert_eq!(origin.total_hits(), before);
}

async fn fault_then_heal(local: bool, fault: impl Fn(&App)) {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 7);
    put_object(&origin, "p/obj.bin", &object);
    let app = app(&origin, local, |l| l.head_timeout(Duration::from_secs(5))).await;
    fault(&app);
    twenty_one_break(&app, "p/obj.bin", &object, Duration::from_secs(5)).await;
    heals(&app, &origin, "p/obj.bin", &object).await;
}

#[tokio::test]
async fn an_origin_whose_fetch_panics_fails_every_reader_and_heals() {
    for local in [false, true] {
        fault_then_heal(local, |app| app.mode.store(PANIC_FETCH, Ordering::SeqCst)).await;
    }
}

#[tokio::test]
async fn an_origin_whose_body_panics_mid_object_fails_every_reader_and_heals() {
    for local in [false, true] {
        fault_then_heal(local, |app| app.mode.store(PANIC_BODY, Ordering::SeqCst)).await;
    }
}

#[tokio::test]
async fn a_store_whose_write_panics_fails_every_reader_and_heals() {
    for local in [false, true] {
        fault_then_heal(local, |app| app.store_armed.store(1, Ordering::SeqCst)).await;
    }
}

#[tokio::test]
async fn an_origin_that_never_answers_is_bounded_by_the_head_timeout() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 8);
    put_object(&origin, "h/obj.bin", &object);
    let app = app(&origin, false, |l| {
        l.head_timeout(Duration::from_millis(300))
    })
    .await;
    app.mode.store(HANG_FETCH, Ordering::SeqCst);
    let c = client();
    let started = Instant::now();
    let got = get(&c, &app.at("h/obj.bin")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            app.layer.handle().fills_in_flight() == 0
        })
        .await
    );
    heals(&app, &origin, "h/obj.bin", &object).await;
}

#[tokio::test]
async fn an_origin_body_that_stalls_is_bounded_by_the_stall_timeout() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 9);
    put_object(&origin, "s/obj.bin", &object);
    let app = app(&origin, true, |l| {
        l.stall_timeout(Duration::from_millis(300))
    })
    .await;
    app.mode.store(HANG_BODY, Ordering::SeqCst);
    let got = get(&client(), &app.at("s/obj.bin")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body.is_err(),
        "a stalled fill ends the body in an error"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            app.layer.handle().fills_in_flight() == 0
        })
        .await
    );
    assert!(stored(&*app.store, "s/obj.bin").await.is_none());
    heals(&app, &origin, "s/obj.bin", &object).await;
}

#[tokio::test]
async fn a_hundred_panics_with_a_bound_of_two_still_serve_a_healthy_key() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(8 * 1024, 10);
    put_object(&origin, "ok/healthy.bin", &object);
    for i in 0..100 {
        put_object(&origin, &format!("bad/{i}"), &random_bytes(4096, i));
    }
    let app = app(&origin, false, |l| {
        l.max_fills(2).fill_queue_timeout(Duration::from_millis(50))
    })
    .await;
    let c = client();
    for (i, mode) in [PANIC_FETCH, PANIC_BODY]
        .into_iter()
        .cycle()
        .take(100)
        .enumerate()
    {
        app.mode.store(mode, Ordering::SeqCst);
        let got = get(&c, &app.at(&format!("bad/{i}"))).await;
        assert!(
            got.status == StatusCode::BAD_GATEWAY || got.body.is_err(),
            "panic {i}: {} {:?}",
            got.status,
            got.body
        );
    }
    assert!(
        eventually(Duration::from_secs(2), || async {
            app.layer.handle().fills_in_flight() == 0
        })
        .await,
        "every slot came back"
    );
    heals(&app, &origin, "ok/healthy.bin", &object).await;
}

/// A body error of a pulled response is the crate's `Error`, downcast through the client's
/// error chain is not possible over HTTP, so this reads the layer's body in process.
#[tokio::test]
async fn a_body_error_downcasts_to_the_crate_error() {
    use http_body_util::BodyExt;
    let origin = TestOrigin::start().await;
    let object = random_bytes(64 * 1024, 11);
    put_object(&origin, "d/obj.bin", &object);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mode = Arc::new(AtomicU8::new(PANIC_BODY));
    let (_gate, gate_rx) = watch::channel(true);
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(Misbehaving {
            inner: HttpOrigin::new(&origin.url).unwrap(),
            mode,
            gate: gate_rx,
        }))
        .build();
    let service = store_service(store).layer(layer);
    let response = service
        .oneshot(
            http::Request::get("/d/obj.bin")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let error = loop {
        match body.frame().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("a panicked fill never ends cleanly"),
        }
    };
    // axum boxes the body's error once more.
    let source: &(dyn std::error::Error + 'static) =
        std::error::Error::source(&error).unwrap_or(&error as &(dyn std::error::Error + 'static));
    let ours = source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not the crate's Error: {source:?}"));
    assert!(
        matches!(ours.root(), Error::FillDied { message, .. } if message.contains("body exploded")),
        "{ours:?}"
    );
}

#[test]
fn a_fill_whose_runtime_shuts_down_releases_its_waiters() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (app, object) = main.block_on(async {
        let origin = TestOrigin::start().await;
        let object = random_bytes(16 * 1024, 12);
        put_object(&origin, "r/obj.bin", &object);
        let app = app(&origin, false, |l| l.head_timeout(Duration::from_secs(60))).await;
        app.mode.store(HANG_FETCH, Ordering::SeqCst);
        (app, object)
    });
    // The leader's request runs on the doomed runtime, so its fill is spawned there.
    let service = {
        let store = app.store.clone();
        store_service(store).layer(app.layer.clone())
    };
    doomed.spawn(async move {
        let _ = service
            .oneshot(
                http::Request::get("/r/obj.bin")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
    });
    main.block_on(async {
        assert!(
            eventually(Duration::from_secs(5), || async {
                app.layer.handle().fills_in_flight() == 1
            })
            .await
        );
        // A waiter over HTTP, on the main runtime.
        let waiter = {
            let url = app.at("r/obj.bin");
            tokio::spawn(async move { get(&client(), &url).await })
        };
        assert!(
            eventually(Duration::from_secs(5), || async {
                app.inner_calls.load(Ordering::SeqCst) == 1
            })
            .await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        doomed.shutdown_background();
        let got = waiter.await.unwrap();
        assert_eq!(
            got.status,
            StatusCode::BAD_GATEWAY,
            "released, not stranded"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(app.layer.handle().fills_in_flight(), 0);
        app.mode.store(HEALTHY, Ordering::SeqCst);
        let got = get(&client(), &app.at("r/obj.bin")).await;
        assert_eq!(got.body.unwrap(), object, "the next request starts afresh");
    });
}

/// A proxied response to a client that never reads: after the slow-reader grace the
/// client is dropped, the fill stops, its origin request ends and its slot comes back.
#[tokio::test]
async fn a_proxy_client_that_never_reads_is_dropped_after_the_grace() {
    use tokio::io::AsyncWriteExt;
    let origin = TestOrigin::start().await;
    // Far larger than the window plus every socket buffer between here and the client.
    let object = random_bytes(48 * 1024 * 1024, 13);
    origin.object("big/never-read.bin", object);
    origin.object("big/next.bin", "next");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .max_fills(1)
        .coalesce_window(256 * 1024)
        .slow_reader_grace(Duration::from_millis(200))
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()).mode(tower_origin_pull::Mode::Proxy))
        .build();
    let addr = serve(store_service(store).layer(layer.clone())).await;
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /big/never-read.bin HTTP/1.1\r\nHost: mirror\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            layer.handle().fills_in_flight() == 1
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            layer.handle().fills_in_flight() == 0
        })
        .await,
        "the fill gave up on a client that reads nothing"
    );
    let got = get(&client(), &format!("http://{addr}/big/next.bin")).await;
    assert_eq!(got.body.unwrap(), &b"next"[..], "the slot came back");
    drop(stuck);
}
