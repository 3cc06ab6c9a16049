//! Coalescing, modes, remembered 404s, events and shutdown, against a real loopback origin
//! that counts requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tower_origin_pull::{
    BucketStore, FillEvent, HttpOrigin, Mode, OriginPullBuilder, OriginPullLayer, RedirectStatus,
    Rule,
};

use common::*;

struct App {
    url: String,
    store: Arc<dyn ObjectStore>,
    layer: OriginPullLayer,
    dir: Option<tempfile::TempDir>,
}

impl App {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

async fn app(
    origin_url: &str,
    rule: impl FnOnce(Rule) -> Rule,
    layer: impl FnOnce(OriginPullBuilder) -> OriginPullBuilder,
) -> App {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    build(origin_url, store, None, BucketStore::new, rule, layer).await
}

async fn build(
    origin_url: &str,
    store: Arc<dyn ObjectStore>,
    dir: Option<tempfile::TempDir>,
    bucket: impl FnOnce(Arc<dyn ObjectStore>) -> BucketStore,
    rule: impl FnOnce(Rule) -> Rule,
    layer: impl FnOnce(OriginPullBuilder) -> OriginPullBuilder,
) -> App {
    let origin = HttpOrigin::new(origin_url).unwrap();
    let layer = layer(OriginPullBuilder::new(bucket(store.clone())))
        .rule(rule(Rule::new(origin)))
        .build();
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    App {
        url: format!("http://{addr}/"),
        store,
        layer,
        dir,
    }
}

/// A GET that reports when its first body byte arrived.
async fn timed_get(c: &HttpClient, url: &str, since: Instant) -> (Got, Option<Duration>) {
    let req = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    let res = c.request(req).await.unwrap();
    let (parts, mut body) = res.into_parts();
    let mut first = None;
    let mut bytes = Vec::new();
    let outcome = loop {
        match body.frame().await {
            None => break Ok(Bytes::from(bytes)),
            Some(Err(e)) => break Err(format!("{e:?}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    first.get_or_insert_with(|| since.elapsed());
                    bytes.extend_from_slice(&data);
                }
            }
        }
    };
    let got = Got {
        status: parts.status,
        headers: parts.headers,
        body: outcome,
    };
    (got, first)
}

fn slow_object(origin: &TestOrigin, path: &str, object: &Bytes, pieces: usize, pause: Duration) {
    let size = object.len().div_ceil(pieces);
    let chunks = object.chunks(size).map(Bytes::copy_from_slice).collect();
    origin.put(path, Behaviour::Chunked { chunks, pause });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cold_gets_share_one_fetch_and_all_stream_at_once() {
    let origin = TestOrigin::start().await;
    // Small pieces: the test measures waiting, not how fast a debug build copies 200 bodies.
    let object = random_bytes(256 * 1024, 200);
    // The whole object takes the origin 3 s; its first bytes leave at once.
    slow_object(&origin, "hot/video.bin", &object, 4, Duration::from_secs(1));
    let app = app(&origin.url, |r| r, |l| l).await;
    let c = client();
    // Open the 200 client connections first (a path that is not a key: no pull), so that
    // what is measured is the coalescing, not 200 simultaneous TCP handshakes (which the
    // kernel may answer with a 1 s SYN retransmit).
    let warm: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (c.clone(), app.at(""));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let started = Instant::now();
    let url = app.at("hot/video.bin");
    let gets: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { timed_get(&c, &url, started).await })
        })
        .collect();
    let mut outcomes = std::collections::HashMap::<String, usize>::new();
    let mut slowest_first_byte = Duration::ZERO;
    for get in gets {
        let (got, first) = get.await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert!(
            got.body() == &object[..],
            "every body equals the origin's bytes"
        );
        *outcomes
            .entry(got.outcome().unwrap().to_owned())
            .or_default() += 1;
        slowest_first_byte = slowest_first_byte.max(first.unwrap());
    }
    assert_eq!(
        origin.hits("hot/video.bin"),
        1,
        "one origin fetch for 200 requests"
    );
    assert_eq!(outcomes.get("pulled"), Some(&1));
    assert_eq!(outcomes.get("coalesced"), Some(&199));
    assert!(
        slowest_first_byte < Duration::from_secs(1),
        "every waiter streams while the fill runs (slowest first byte {slowest_first_byte:?})"
    );
    assert!(stored(&*app.store, "hot/video.bin").await.unwrap() == object);
}

#[tokio::test]
async fn the_leader_leaving_does_not_stop_the_others() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(600 * 1024, 3);
    slow_object(&origin, "k.bin", &object, 3, Duration::from_millis(300));
    let app = app(&origin.url, |r| r, |l| l).await;
    let c = client();
    let req = http::Request::get(app.at("k.bin"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let leader = c.request(req).await.unwrap();
    assert_eq!(leader.headers()["x-origin-pull"], "pulled");
    drop(leader);
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (c.clone(), app.at("k.bin"));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for w in waiters {
        let got = w.await.unwrap();
        assert_eq!(got.outcome(), Some("coalesced"));
        assert!(got.body() == &object[..]);
    }
    assert_eq!(origin.hits("k.bin"), 1);
    assert!(stored(&*app.store, "k.bin").await.unwrap() == object);
}

#[tokio::test]
async fn an_origin_dying_mid_body_fails_every_waiter_and_the_next_request_refills() {
    let object = random_bytes(2 * 1024 * 1024, 9);
    let dying = vec![
        Step::Write(head_with_length(object.len())),
        Step::Write(object.slice(..1024 * 1024)),
        Step::Sleep(Duration::from_millis(500)),
        Step::Reset,
    ];
    let healthy = vec![
        Step::Write(head_with_length(object.len())),
        Step::Write(object.clone()),
    ];
    let origin = RawOrigin::start_sequence(vec![dying, healthy]).await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let c = client();
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let (c, url) = (c.clone(), app.at("fragile.bin"));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for w in waiters {
        let got = w.await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.body.is_err(), "a broken fill never ends cleanly");
    }
    assert_eq!(origin.requests(), 1);
    assert!(listing(&*app.store).await.is_empty(), "nothing stored");

    let again = get(&c, &app.at("fragile.bin")).await;
    assert_eq!(again.outcome(), Some("pulled"));
    assert!(again.body() == &object[..]);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn concurrent_misses_for_a_missing_key_ask_the_origin_once() {
    for remember in [false, true] {
        let origin = TestOrigin::start().await;
        origin.put(
            "ghost.txt",
            Behaviour::SlowMissing(Duration::from_millis(300)),
        );
        let app = app(
            &origin.url,
            |r| r,
            |l| {
                if remember {
                    l.remember_not_found(Duration::from_secs(60))
                } else {
                    l
                }
            },
        )
        .await;
        let c = client();
        let gets: Vec<_> = (0..100)
            .map(|_| {
                let (c, url) = (c.clone(), app.at("ghost.txt"));
                tokio::spawn(async move { get(&c, &url).await })
            })
            .collect();
        for g in gets {
            let got = g.await.unwrap();
            assert_eq!(got.status, StatusCode::NOT_FOUND);
            assert_eq!(got.body(), b"not in store", "the inner 404, untouched");
        }
        assert_eq!(origin.hits("ghost.txt"), 1);
        let later = get(&c, &app.at("ghost.txt")).await;
        assert_eq!(later.status, StatusCode::NOT_FOUND);
        let expected = if remember { 1 } else { 2 };
        assert_eq!(
            origin.hits("ghost.txt"),
            expected,
            "remember_not_found = {remember}"
        );
    }
}

#[tokio::test]
async fn async_mode_redirects_every_request_and_fills_each_key_once() {
    let origin = TestOrigin::start().await;
    let objects: Vec<Bytes> = (0..10).map(|i| random_bytes(50_000, 100 + i)).collect();
    for (i, object) in objects.iter().enumerate() {
        // Slow enough that every request below arrives while the fills are in flight.
        slow_object(
            &origin,
            &format!("a/{i}.bin"),
            object,
            2,
            Duration::from_secs(3),
        );
    }
    let app = app(&origin.url, |r| r.mode(Mode::Async), |l| l).await;
    let mut events = app.layer.handle().subscribe();
    let c = client();
    let redirects = futures::stream::iter(0..1000)
        .map(|n| {
            let (c, url) = (c.clone(), app.at(&format!("a/{}.bin", n % 10)));
            async move { get(&c, &url).await }
        })
        .buffer_unordered(100)
        .collect::<Vec<_>>()
        .await;
    for (n, got) in redirects.iter().enumerate() {
        assert_eq!(got.status, StatusCode::FOUND, "request {n}");
        assert_eq!(got.outcome(), Some("async"));
        let location = got.headers["location"].to_str().unwrap();
        assert!(location.starts_with(&origin.url), "{location}");
    }
    let stats = app.layer.handle().background_stats();
    assert_eq!(stats.queued, 10, "{stats:?}");
    assert_eq!(stats.deduplicated, 990, "{stats:?}");

    let mut completed = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while completed < 10 {
            if let FillEvent::Completed { bytes, .. } = events.recv().await.unwrap() {
                assert_eq!(bytes, 50_000);
                completed += 1;
            }
        }
    })
    .await
    .expect("10 completion events");
    for (i, object) in objects.iter().enumerate() {
        let key = format!("a/{i}.bin");
        assert_eq!(origin.hits(&key), 1, "{key}");
        assert!(stored(&*app.store, &key).await.unwrap() == *object);
    }
    // Now a hit: no redirect.
    assert_eq!(get(&c, &app.at("a/0.bin")).await.outcome(), None);
}

#[tokio::test]
async fn redirect_mode_only_redirects() {
    let origin = TestOrigin::start().await;
    origin.object("r/x.txt", "x");
    let app = app(
        &origin.url,
        |r| {
            r.mode(Mode::Redirect)
                .redirect_status(RedirectStatus::TemporaryRedirect)
        },
        |l| l,
    )
    .await;
    let got = get(&client(), &app.at("r/x.txt?sig=1")).await;
    assert_eq!(got.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(got.outcome(), Some("redirect"));
    assert_eq!(got.headers["location"], format!("{}r/x.txt", origin.url));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(origin.total_hits(), 0);
    assert!(listing(&*app.store).await.is_empty());
}

#[tokio::test]
async fn proxy_mode_streams_without_storing() {
    let origin = TestOrigin::start().await;
    origin.object("p/x.txt", "proxied bytes");
    let app = app(&origin.url, |r| r.mode(Mode::Proxy), |l| l).await;
    let c = client();
    for n in 1..=2 {
        let got = get(&c, &app.at("p/x.txt")).await;
        assert_eq!(got.outcome(), Some("proxied"));
        assert_eq!(got.body(), b"proxied bytes");
        assert_eq!(origin.hits("p/x.txt"), n);
    }
    assert!(listing(&*app.store).await.is_empty());
}

#[tokio::test]
async fn a_slow_reader_does_not_hold_the_others_and_still_gets_every_byte() {
    let origin = TestOrigin::start().await;
    // Larger than what loopback socket buffers absorb, so the slow client really lags.
    let object = random_bytes(24 * 1024 * 1024, 5);
    origin.object("big.bin", object.clone());
    let app = app(
        &origin.url,
        |r| r,
        |l| {
            l.coalesce_window(64 * 1024)
                .slow_reader_grace(Duration::from_millis(100))
        },
    )
    .await;
    let c = client();
    let slow = {
        let (c, url) = (c.clone(), app.at("big.bin"));
        tokio::spawn(async move {
            let req = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
            let mut body = c.request(req).await.unwrap().into_body();
            let mut all = body
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
                .to_vec();
            tokio::time::sleep(Duration::from_secs(3)).await;
            all.extend_from_slice(&body.collect().await.unwrap().to_bytes());
            all
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let fast = get(&c, &app.at("big.bin")).await;
    let fast_took = started.elapsed();
    assert!(fast.body() == &object[..]);
    assert!(
        fast_took < Duration::from_secs(3),
        "the fast reader finished in {fast_took:?}, not held by the slow one"
    );
    assert!(
        slow.await.unwrap() == object,
        "the slow reader got every byte, in order"
    );
    assert_eq!(origin.hits("big.bin"), 1);
}

#[tokio::test]
async fn a_late_joiner_gets_the_whole_object_from_the_store() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(2 * 1024 * 1024, 6);
    slow_object(&origin, "late.bin", &object, 8, Duration::from_millis(100));
    let app = app(&origin.url, |r| r, |l| l.coalesce_window(64 * 1024)).await;
    let c = client();
    let first = {
        let (c, url) = (c.clone(), app.at("late.bin"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    // Byte 0 has left the 64 KiB window by now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = get(&c, &app.at("late.bin")).await;
    assert_eq!(late.outcome(), Some("coalesced"));
    assert!(late.body() == &object[..]);
    assert!(first.await.unwrap().body() == &object[..]);
    assert_eq!(origin.hits("late.bin"), 1);
}

#[tokio::test]
async fn events_report_start_completion_and_failure() {
    let origin = TestOrigin::start().await;
    origin.put(
        "e/ok.txt",
        Behaviour::Object {
            body: Bytes::from_static(b"event"),
            headers: vec![("etag", "\"v1\"")],
        },
    );
    origin.put("e/bad.txt", Behaviour::Status(503));
    let app = app(&origin.url, |r| r.named("events"), |l| l).await;
    let mut events = app.layer.handle().subscribe();
    let c = client();
    get(&c, &app.at("e/ok.txt")).await;
    get(&c, &app.at("e/bad.txt")).await;
    get(&c, &app.at("e/none.txt")).await;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| (e.kind(), e.key().to_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("started", "e/ok.txt".to_owned()),
            ("completed", "e/ok.txt".to_owned()),
            ("started", "e/bad.txt".to_owned()),
            ("failed", "e/bad.txt".to_owned()),
            ("started", "e/none.txt".to_owned()),
            ("not_found", "e/none.txt".to_owned()),
        ]
    );
    match &seen[1] {
        FillEvent::Completed {
            bytes,
            origin_etag,
            rule,
            ..
        } => {
            assert_eq!(*bytes, 5);
            assert_eq!(origin_etag.as_deref(), Some("\"v1\""));
            assert_eq!(&**rule, "events");
        }
        other => panic!("{other:?}"),
    }
    match &seen[3] {
        FillEvent::Failed { reason, .. } => assert!(reason.contains("503"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutdown_aborts_fills_that_do_not_finish_in_time() {
    let origin = TestOrigin::start().await;
    let object = random_bytes(5 * 1024 * 1024, 8);
    slow_object(
        &origin,
        "s/long.bin",
        &object,
        10,
        Duration::from_millis(300),
    );
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let app = build(
        &origin.url,
        store,
        Some(dir),
        |s| {
            BucketStore::new(s)
                .with_multipart_threshold(1024 * 1024)
                .with_part_size(1024 * 1024)
        },
        |r| r,
        |l| l,
    )
    .await;
    let c = client();
    let client_get = {
        let (c, url) = (c.clone(), app.at("s/long.bin"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(app.layer.handle().fills_in_flight(), 1);
    let report = app
        .layer
        .handle()
        .shutdown(Duration::from_millis(100))
        .await;
    assert_eq!(report.aborted, 1, "{report:?}");
    assert!(client_get.await.unwrap().body.is_err());
    assert!(listing(&*app.store).await.is_empty());
    assert!(staging_files(app.dir.as_ref().unwrap().path()).is_empty());
    // After shutdown, misses get the inner response untouched.
    let after = get(&c, &app.at("s/other.bin")).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(after.outcome(), None);
}

/// A loopback webhook receiver: records JSON bodies; answers per `mode`.
async fn receiver(
    mode: &'static str,
) -> (
    String,
    Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, n) = (seen.clone(), calls.clone());
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (s, n) = (s.clone(), n.clone());
        async move {
            let call = n.fetch_add(1, Ordering::SeqCst);
            match mode {
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }
                "flaky" if call % 2 == 0 => StatusCode::SERVICE_UNAVAILABLE,
                _ => {
                    s.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    StatusCode::NO_CONTENT
                }
            }
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/hook"), seen, calls)
}

#[tokio::test]
async fn the_webhook_delivers_events_as_json_with_retries() {
    let origin = TestOrigin::start().await;
    origin.object("w/ok.txt", "webhook");
    let (url, seen, calls) = receiver("flaky").await;
    let app = app(&origin.url, |r| r.named("hooked"), |l| l).await;
    let hook = tower_origin_pull::Webhook::new(&url)
        .unwrap()
        .min_backoff(Duration::from_millis(10))
        .spawn(app.layer.handle().subscribe());
    get(&client(), &app.at("w/ok.txt")).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            hook.stats().delivered == 2
        })
        .await,
        "{:?}",
        hook.stats()
    );
    let seen = seen.lock().unwrap().clone();
    let mut kinds: Vec<_> = seen
        .iter()
        .map(|v| v["event"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["completed", "started"]);
    let done = seen.iter().find(|v| v["event"] == "completed").unwrap();
    assert_eq!(done["key"], "w/ok.txt");
    assert_eq!(done["rule"], "hooked");
    assert_eq!(done["bytes"], 7);
    assert_eq!(done["committed"], "written");
    // Every event failed once (503) before it was accepted.
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_hanging_webhook_receiver_does_not_slow_fills() {
    let origin = TestOrigin::start().await;
    for i in 0..40 {
        origin.object(&format!("h/{i}.txt"), format!("object {i}"));
    }
    let (url, _, calls) = receiver("hang").await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let hook = tower_origin_pull::Webhook::new(&url)
        .unwrap()
        .max_in_flight(2)
        .spawn(app.layer.handle().subscribe());
    let c = client();
    let started = Instant::now();
    for i in 0..40 {
        let got = get(&c, &app.at(&format!("h/{i}.txt"))).await;
        assert_eq!(got.outcome(), Some("pulled"));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "40 pulls took {took:?}");
    assert_eq!(listing(&*app.store).await.len(), 40);
    // Two deliveries hang; the rest wait (bounded) and nothing was delivered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(hook.stats().delivered, 0);
}

#[tokio::test]
async fn a_full_background_queue_still_redirects_and_counts_the_skipped_fills() {
    let origin = TestOrigin::start().await;
    for i in 0..5 {
        slow_object(
            &origin,
            &format!("q/{i}.bin"),
            &random_bytes(1000, i),
            2,
            Duration::from_secs(1),
        );
    }
    let app = app(
        &origin.url,
        |r| r.mode(Mode::Async),
        |l| l.background_queue(1).background_concurrency(1),
    )
    .await;
    let c = client();
    for i in 0..5 {
        let got = get(&c, &app.at(&format!("q/{i}.bin"))).await;
        assert_eq!(got.status, StatusCode::FOUND, "always redirected");
    }
    let stats = app.layer.handle().background_stats();
    // At most one fill runs, one waits in the dispatcher and one in the queue.
    assert!(stats.dropped_queue_full >= 2, "{stats:?}");
    assert_eq!(stats.queued + stats.dropped_queue_full, 5, "{stats:?}");
    let report = app.layer.handle().shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.aborted, 0, "{report:?}");
}

#[tokio::test]
async fn past_the_fill_limit_misses_wait_for_a_slot_or_are_told_to_retry() {
    // queue timeout shorter than the slow fill: 503 + Retry-After; longer: it waits, then pulls.
    for (wait, expect_wait) in [
        (Duration::from_millis(100), false),
        (Duration::from_secs(5), true),
    ] {
        let origin = TestOrigin::start().await;
        slow_object(
            &origin,
            "l/slow.bin",
            &random_bytes(2000, 1),
            2,
            Duration::from_millis(600),
        );
        origin.object("l/other.txt", "other");
        let app = app(
            &origin.url,
            |r| r,
            |l| {
                l.max_fills(1)
                    .fill_queue_timeout(wait)
                    .retry_after(Duration::from_secs(3))
            },
        )
        .await;
        let c = client();
        let slow = {
            let (c, url) = (c.clone(), app.at("l/slow.bin"));
            tokio::spawn(async move { get(&c, &url).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(app.layer.handle().fills_in_flight(), 1);
        // The same key still joins the running fill.
        let joined = {
            let (c, url) = (c.clone(), app.at("l/slow.bin"));
            tokio::spawn(async move { get(&c, &url).await })
        };
        let other = get(&c, &app.at("l/other.txt")).await;
        if expect_wait {
            assert_eq!(other.outcome(), Some("pulled"), "waited for the slot");
            assert_eq!(other.body(), b"other");
        } else {
            assert_eq!(other.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(other.headers["retry-after"], "3");
            assert!(
                stored(&*app.store, "l/other.txt").await.is_none(),
                "not stored past the limit"
            );
            assert_eq!(
                origin.hits("l/other.txt"),
                0,
                "no origin request past the bound"
            );
        }
        assert_eq!(joined.await.unwrap().outcome(), Some("coalesced"));
        assert_eq!(slow.await.unwrap().outcome(), Some("pulled"));
        assert!(
            common::eventually(Duration::from_secs(2), || async {
                app.layer.handle().fills_in_flight() == 0
            })
            .await
        );
    }
}
