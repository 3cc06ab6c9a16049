//! Stress and resource bounds.
//!
//! Two "replicas" (two `OriginPullLayer`s, each behind its own server) share one store
//! (`LocalFileSystem` in a temp dir) and one flaky origin: 10 % of origin answers are one of
//! nine faults. Concurrent clients send GETs for random keys to random replicas. Every answer
//! must be the object's exact bytes, a `502`, or a body that ends in an error after a correct
//! prefix; afterwards no fill is stuck, every key can be served, every stored object's SHA-256
//! equals the origin's, no staging file is left, and the heap stayed within a stated bound.
//!
//! `reduced_stress_two_replicas` (1,000 GETs over 50 keys) runs in `cargo test`;
//! `full_stress_two_replicas` (10,000 GETs over 500 keys) is ignored for its run time:
//! `cargo test --release --test stress -- --ignored --nocapture`.
//!
//! Memory is measured with a counting global allocator (live and peak heap bytes), so the
//! tests that measure run one at a time (`SERIAL`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore};

use common::faulty::*;
use common::*;

use common::heap::{LIVE, PEAK};

#[global_allocator]
static HEAP: common::heap::Counting = common::heap::Counting;

/// The tests that measure the heap run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Start measuring: the peak is reset to what is live now, which is returned.
fn heap_baseline() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

const MIB: usize = 1024 * 1024;

#[derive(Clone)]
struct Config {
    keys: usize,
    gets: usize,
    clients: usize,
    fault_percent: u64,
    /// Objects are 1 KiB to this many bytes.
    max_object: usize,
    time_limit: Duration,
}

/// What went wrong or right, counted.
#[derive(Debug, Default)]
struct Report {
    gets: usize,
    complete: usize,
    bad_gateway: usize,
    body_errors: usize,
    hits: usize,
    pulled: usize,
    coalesced: usize,
    wrong: Vec<String>,
    faults_injected: u64,
    origin_requests: usize,
    final_pass_gets: usize,
    objects_verified: usize,
    peak_heap_growth: usize,
    vm_hwm_kib: u64,
    elapsed: Duration,
}

/// The faults the flaky origin draws from.
fn faults() -> Vec<Fault> {
    vec![
        Fault::Status(503),
        Fault::Status(500),
        Fault::ShortBody,
        Fault::LengthPlusOne,
        Fault::ChunkedCut,
        Fault::ResetMidBody,
        Fault::StallAfterHalf,
        Fault::GarbageStatusLine,
        Fault::ResetBeforeHead,
    ]
}

fn key_of(i: usize) -> String {
    format!("s/{:02}/object-{i}.bin", i % 16)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

async fn stress(cfg: Config) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    let origin = FaultyOrigin::start().await;
    let mut expected = HashMap::new();
    let mut objects = Vec::new();
    for i in 0..cfg.keys {
        let size = 1024 + (i * 7919 * 31) % cfg.max_object.saturating_sub(1024).max(1);
        let object = random_bytes(size, 10_000 + i as u64);
        expected.insert(key_of(i), sha256(&object));
        origin.flaky(&key_of(i), object.clone(), cfg.fault_percent, faults(), 42);
        objects.push(object);
    }
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mut replicas = Vec::new();
    let mut layers = Vec::new();
    for _ in 0..2 {
        let http = HttpOrigin::builder(&origin.url)
            .first_byte_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let bucket = BucketStore::new(store.clone())
            .with_multipart_threshold(64 * 1024)
            .with_part_size(32 * 1024);
        // A small window: large objects and late joiners go through demotion to the store.
        let layer = OriginPullBuilder::new(bucket)
            .coalesce_window(64 * 1024)
            .rule(Rule::new(http))
            .build();
        let app = axum::Router::new()
            .fallback_service(ServeStore::new(store.clone()))
            .layer(layer.clone());
        replicas.push(format!("http://{}/", serve(app).await));
        layers.push(layer);
    }

    let baseline = heap_baseline();
    let http = client();
    let run = async {
        let answers = futures::stream::iter(0..cfg.gets)
            .map(|n| {
                let i = (mix(n as u64) % cfg.keys as u64) as usize;
                let url = format!("{}{}", replicas[n % 2], key_of(i));
                let http = http.clone();
                async move { (i, fetch(&http, &url).await) }
            })
            .buffer_unordered(cfg.clients);
        futures::pin_mut!(answers);
        while let Some((i, got)) = answers.next().await {
            report.gets += 1;
            let object = &objects[i];
            match got.outcome() {
                None => report.hits += 1,
                Some("pulled") => report.pulled += 1,
                Some("coalesced") => report.coalesced += 1,
                _ => {}
            }
            match (got.status, &got.error) {
                (StatusCode::OK, None) if got.bytes == object[..] => report.complete += 1,
                (StatusCode::OK, Some(_)) if object.starts_with(&got.bytes) => {
                    report.body_errors += 1;
                }
                (StatusCode::BAD_GATEWAY, None) => report.bad_gateway += 1,
                (status, error) => report.wrong.push(format!(
                    "{}: {status}, {} bytes, error {error:?}",
                    key_of(i),
                    got.bytes.len()
                )),
            }
        }
    };
    tokio::time::timeout(cfg.time_limit, run)
        .await
        .expect("the GETs finished within the time limit (no stuck request)");

    for layer in &layers {
        let layer = layer.clone();
        assert!(
            eventually(Duration::from_secs(10), || async {
                layer.handle().fills_in_flight() == 0
            })
            .await,
            "a fill is stuck: {} in flight",
            layer.handle().fills_in_flight()
        );
    }

    // Every key can be served (the origin is still flaky: retry a failed answer).
    for (i, object) in objects.iter().enumerate() {
        let mut served = false;
        for attempt in 0..40 {
            report.final_pass_gets += 1;
            let url = format!("{}{}", replicas[attempt % 2], key_of(i));
            let got = fetch(&http, &url).await;
            if got.status == StatusCode::OK && got.error.is_none() {
                assert!(got.bytes == object[..], "{}: wrong bytes", key_of(i));
                served = true;
                break;
            }
        }
        assert!(served, "{} could not be served in 40 attempts", key_of(i));
    }
    report.peak_heap_growth = heap_peak().saturating_sub(baseline);

    // Every stored object is the origin's, byte for byte.
    let listed = listing(&*store).await;
    for name in &listed {
        let bytes = stored(&*store, name).await.unwrap();
        let want = expected
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name}: stored but never asked for"));
        assert_eq!(&sha256(&bytes), want, "{name}: stored bytes differ");
        report.objects_verified += 1;
    }
    assert_eq!(report.objects_verified, cfg.keys, "every key is stored");
    assert_eq!(staging_files(dir.path()), Vec::<String>::new());
    report.faults_injected = origin.injected();
    report.origin_requests = origin.total_requests();
    report.vm_hwm_kib = vm_hwm_kib();
    report.elapsed = started.elapsed();
    report
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The heap bound: what the clients hold (each a whole object, they collect bodies to check
/// them) plus, per fill in flight, the window plus the store's buffers (threshold 64 KiB,
/// then parts of 32 KiB × 3), plus connection buffers, plus a fixed 16 MiB for everything
/// else (runtime, pools, the event channels). One fill per client at most.
fn heap_bound(cfg: &Config) -> usize {
    let per_client = cfg.max_object + 64 * 1024 + 64 * 1024 + 3 * 32 * 1024 + 512 * 1024;
    cfg.clients * per_client + 16 * MIB
}

fn check(cfg: &Config, report: &Report) {
    println!("{report:#?}");
    assert_eq!(
        report.wrong,
        Vec::<String>::new(),
        "answers that are never allowed"
    );
    assert_eq!(report.gets, cfg.gets);
    assert!(
        report.faults_injected > 0,
        "the origin injected faults: {report:?}"
    );
    assert!(
        report.peak_heap_growth < heap_bound(cfg),
        "peak heap growth {} MiB over the bound {} MiB",
        report.peak_heap_growth / MIB,
        heap_bound(cfg) / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduced_stress_two_replicas() {
    let _serial = SERIAL.lock().await;
    let cfg = Config {
        keys: 50,
        gets: 1_000,
        clients: 32,
        fault_percent: 10,
        max_object: 192 * 1024,
        time_limit: Duration::from_secs(120),
    };
    let report = stress(cfg.clone()).await;
    check(&cfg, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full run (10,000 GETs over 500 keys) takes about a minute; run it on purpose"]
async fn full_stress_two_replicas() {
    let _serial = SERIAL.lock().await;
    let cfg = Config {
        keys: 500,
        gets: 10_000,
        clients: 64,
        fault_percent: 10,
        max_object: 192 * 1024,
        time_limit: Duration::from_secs(900),
    };
    let report = stress(cfg.clone()).await;
    check(&cfg, &report);
}

// ----- a slow reader -----

/// Policy (see `src/fill/shared.rs`): a reader that keeps the coalescing window full holds the
/// fill for at most `slow_reader_grace`; then it is demoted and continues from the store once
/// the object is committed. So a client reading 1 KiB/s neither stalls the others nor makes
/// the fill buffer the object for it: the heap grows by about the window plus the store's
/// part buffers, not by the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_at_1_kib_per_s_neither_stalls_others_nor_grows_memory() {
    let _serial = SERIAL.lock().await;
    const OBJECT: usize = 32 * MIB;
    const WINDOW: usize = 256 * 1024;
    let object = random_bytes(OBJECT, 99);
    let want = sha256(&object);
    let origin = FaultyOrigin::start().await;
    origin.object("big.bin", object.clone());
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let bucket = BucketStore::new(store.clone())
        .with_multipart_threshold(MIB)
        .with_part_size(MIB)
        .with_max_concurrent_parts(2);
    let layer = OriginPullBuilder::new(bucket)
        .coalesce_window(WINDOW)
        .slow_reader_grace(Duration::from_millis(100))
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()))
        .build();
    let events = EventLog::spawn(&layer);
    let misses = Misses::default();
    let inner = axum::Router::new().fallback_service(ServeStore::new(store.clone()));
    let addr = serve(misses.count(inner).layer(layer.clone())).await;
    let gate = origin.hold("big.bin");

    let baseline = heap_baseline();
    // The slow client: raw TCP, reads 1 KiB a second.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    misses.wait_for("big.bin", 1).await;
    // Four fast clients that hash as they read (holding nothing).
    let fast: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://{addr}/big.bin");
            tokio::spawn(async move {
                use http_body_util::BodyExt;
                let req = http::Request::get(url)
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap();
                let mut body = client().request(req).await.unwrap().into_body();
                let mut hash = Sha256::new();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        hash.update(&data);
                    }
                }
                hex(&hash.finalize())
            })
        })
        .collect();
    misses.wait_for("big.bin", 5).await;
    let opened = Instant::now();
    gate.open();

    let slow_read = Arc::new(AtomicUsize::new(0));
    let reading = {
        let slow_read = slow_read.clone();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 1024];
            while kept.len() < 8 * 1024 {
                let n = slow.read(&mut buf).await.unwrap();
                assert!(n > 0, "the slow client's answer ended early");
                kept.extend_from_slice(&buf[..n]);
                slow_read.store(kept.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (slow, kept)
        })
    };
    for f in fast {
        assert_eq!(f.await.unwrap(), want, "a fast reader's bytes");
    }
    let fast_took = opened.elapsed();
    assert_eq!(events.ended("big.bin", 1).await.kind(), "completed");
    let slow_had = slow_read.load(Ordering::SeqCst);
    let growth = heap_peak().saturating_sub(baseline);
    println!(
        "fast readers: {fast_took:?}; the slow reader had read {slow_had} bytes; peak heap growth {} KiB",
        growth / 1024
    );
    assert!(
        slow_had < 64 * 1024,
        "the fill did not wait for the slow reader ({slow_had} bytes read)"
    );
    assert!(
        fast_took < Duration::from_secs(30),
        "the fast readers took {fast_took:?}"
    );
    // The window, three 1 MiB parts (two uploading, one filling), hyper's buffers on six
    // connections (at most ~400 KiB each), 4 MiB for the rest; the object is 32 MiB, and a
    // fill that buffered it for the slow reader would grow the heap by ~28 MiB (the kernel's
    // socket buffers hold the other few).
    let bound = WINDOW + 3 * MIB + 6 * 512 * 1024 + 4 * MIB;
    assert!(
        growth < bound,
        "peak heap growth {} KiB over the bound {} KiB",
        growth / 1024,
        bound / 1024
    );

    // The slow reader, demoted, continues from the store: every byte, in order.
    let (mut slow, mut answer) = reading.await.unwrap();
    slow.read_to_end(&mut answer).await.unwrap();
    let body_at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(
        answer.len() - body_at,
        OBJECT,
        "the slow reader's body length"
    );
    assert_eq!(sha256(&answer[body_at..]), want, "the slow reader's bytes");
}
