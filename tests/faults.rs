//! The fault matrix and client faults.
//!
//! Every origin fault (the `matrix!` below) × {one client, 50 coalesced requests, an
//! async-mode background fill} × {`InMemory`, `LocalFileSystem`, S3 (with the `aws`
//! feature)}: one test per fault and backend, running the three client shapes at once on one
//! app (one layer, one store, one origin, a key each). For each cell:
//!
//! - the client gets what [`Fault::expect`] says: a clean `502` before any body, or a `200`
//!   whose body ends in an error after a correct prefix (never a clean short `200`), or,
//!   for the faults that are not failures at the HTTP level, the complete object;
//! - the fill ends with the matching event, and the 50 requests shared one fill;
//! - nothing partial is in the store, and no staging file (`LocalFileSystem`) or open
//!   multipart upload (S3) is left;
//! - no request ever reaches another host (redirects are not followed today);
//! - once the origin heals, the next request succeeds and the one after it is a hit.
//!
//! Objects are small: 12 KiB for the single client (the one-`put` path), 64 KiB with 16 KiB
//! parts for the others (the multipart path; on S3 parts are 5 MiB, so the upload is
//! created and must be aborted). `s3_faults_after_an_uploaded_part` covers a fault after a
//! real 5 MiB part.
//!
//! Client faults: a client leaving before the head, at the first byte, midway, or just
//! before the last byte, as the leader or as a waiter, under both disconnect policies.

mod common;
#[cfg(feature = "aws")]
#[path = "common/s3.rs"]
mod s3_server;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tower_origin_pull::{
    BucketStore, ClientDisconnect, HttpOrigin, Mode, OriginPullBuilder, OriginPullLayer, Rule,
    ServeStore,
};

use common::faulty::*;
use common::*;

/// The single client's object: under the multipart threshold (one `put_opts`).
const SMALL: usize = 12 * 1024;
/// The coalesced and background objects: four 16 KiB parts.
const LARGE: usize = 64 * 1024;
const THRESHOLD: usize = 16 * 1024;
const WAITERS: usize = 50;
/// Origin requests one fill may make: one today. Following a redirect chain (bounded at 10
/// hops) or retrying may add a bounded few; more would be a loop.
const MAX_FETCHES_PER_FILL: usize = 11;

const SINGLE: &str = "single/object.bin";
const COALESCED: &str = "coalesced/object.bin";
const BACKGROUND: &str = "async/object.bin";

/// Servers on other hosts that a redirect points at; they must never be contacted.
struct Foreign {
    other_ip: FaultyOrigin,
    other_port: FaultyOrigin,
}

impl Foreign {
    async fn start() -> Self {
        let other_ip = FaultyOrigin::start_on("127.0.0.2").await;
        let other_port = FaultyOrigin::start().await;
        for f in [&other_ip, &other_port] {
            f.object("evil.bin", Bytes::from_static(b"EVIL"));
        }
        Self {
            other_ip,
            other_port,
        }
    }

    fn connections(&self) -> usize {
        self.other_ip.connections() + self.other_port.connections()
    }
}

struct Cell {
    backend: Backend,
    origin: FaultyOrigin,
    layer: OriginPullLayer,
    url: String,
    misses: Misses,
    events: EventLog,
}

/// A backend of `kind`; S3 through this binary's in-process server.
async fn backend(kind: Kind) -> Backend {
    #[cfg(feature = "aws")]
    if kind == Kind::S3 {
        let server = s3_server::S3Server::start().await;
        let store = server.store();
        return Backend::s3(store, Box::new(move || server.open_uploads()));
    }
    Backend::new(kind).await
}

impl Cell {
    async fn new(kind: Kind, fault: &Fault) -> Self {
        let backend = backend(kind).await;
        let origin = FaultyOrigin::start().await;
        let (first_byte, idle) = fault.timeouts();
        let http = || {
            HttpOrigin::builder(&origin.url)
                .first_byte_timeout(first_byte)
                .idle_timeout(idle)
                .build()
                .unwrap()
        };
        let bucket = BucketStore::new(backend.store.clone())
            .with_multipart_threshold(THRESHOLD)
            .with_part_size(backend.part_size(THRESHOLD));
        let layer = OriginPullBuilder::new(bucket)
            .rule(Rule::new(http()).prefix("async/").mode(Mode::Async))
            .rule(Rule::new(http()))
            .build();
        let misses = Misses::default();
        let inner = axum::Router::new().fallback_service(ServeStore::new(backend.store.clone()));
        let app = misses.count(inner).layer(layer.clone());
        let url = format!("http://{}/", serve(app).await);
        let events = EventLog::spawn(&layer);
        Self {
            backend,
            origin,
            layer,
            url,
            misses,
            events,
        }
    }

    fn at(&self, key: &str) -> String {
        format!("{}{key}", self.url)
    }
}

/// What a client got, against what the fault allows.
fn check_client(got: &Fetched, expect: Expect, object: &Bytes, what: &str) {
    match expect {
        Expect::BadGateway => {
            assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{what}");
            assert_eq!(got.outcome(), Some("failed"), "{what}");
            assert!(got.error.is_none(), "{what}: the 502 itself is complete");
            let text = String::from_utf8_lossy(&got.bytes);
            assert!(text.starts_with("502 Bad Gateway"), "{what}: {text}");
            assert!(
                !text.contains("secret") && !text.contains("EVIL"),
                "{what}: nothing of the origin's answer is echoed: {text}"
            );
        }
        Expect::BodyError => {
            assert_eq!(got.status, StatusCode::OK, "{what}");
            assert!(
                got.error.is_some(),
                "{what}: the body ended cleanly after {} bytes",
                got.bytes.len()
            );
            assert!(
                object.starts_with(&got.bytes),
                "{what}: the bytes before the error are the object's"
            );
        }
        Expect::Complete(n) => {
            assert_eq!(got.status, StatusCode::OK, "{what}");
            assert!(got.error.is_none(), "{what}: {:?}", got.error);
            assert!(got.bytes == object[..n], "{what}: wrong bytes");
        }
    }
}

fn check_end(event: &tower_origin_pull::FillEvent, expect: Expect, what: &str) {
    let kind = match expect {
        Expect::BadGateway | Expect::BodyError => "failed",
        Expect::Complete(_) => "completed",
    };
    assert_eq!(event.kind(), kind, "{what}: {event:?}");
}

async fn single(c: &Cell, fault: &Fault) {
    let what = format!("{:?} / {} / single", c.backend.kind, fault.name());
    let object = random_bytes(SMALL, 1);
    c.origin.fault(SINGLE, object.clone(), fault.clone());
    let got = fetch(&client(), &c.at(SINGLE)).await;
    let expect = fault.expect(SMALL);
    check_client(&got, expect, &object, &what);
    if got.status == StatusCode::OK {
        assert_eq!(got.outcome(), Some("pulled"), "{what}");
    }
    check_end(&c.events.ended(SINGLE, 1).await, expect, &what);
    assert!(c.origin.requests(SINGLE) <= MAX_FETCHES_PER_FILL, "{what}");
}

async fn coalesced(c: &Cell, fault: &Fault) {
    let what = format!(
        "{:?} / {} / {WAITERS} coalesced",
        c.backend.kind,
        fault.name()
    );
    let object = random_bytes(LARGE, 2);
    c.origin.fault(COALESCED, object.clone(), fault.clone());
    // The origin holds the fill's request until every client has joined the fill.
    let gate = c.origin.hold(COALESCED);
    let http = client();
    let gets: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (http, url) = (http.clone(), c.at(COALESCED));
            tokio::spawn(async move { fetch(&http, &url).await })
        })
        .collect();
    c.misses.wait_for(COALESCED, WAITERS).await;
    gate.open();
    let expect = fault.expect(LARGE);
    let mut pulled = 0;
    for get in gets {
        let got = get.await.unwrap();
        check_client(&got, expect, &object, &what);
        pulled += usize::from(got.outcome() == Some("pulled"));
    }
    if expect != Expect::BadGateway {
        assert_eq!(pulled, 1, "{what}: one leader, the others coalesced");
    }
    check_end(&c.events.ended(COALESCED, 1).await, expect, &what);
    assert_eq!(
        c.events.count(COALESCED, "started"),
        1,
        "{what}: one fill for all"
    );
    let fetches = c.origin.requests(COALESCED);
    assert!(
        (1..=MAX_FETCHES_PER_FILL).contains(&fetches),
        "{what}: {fetches} origin requests"
    );
}

async fn background(c: &Cell, fault: &Fault) {
    let what = format!("{:?} / {} / async", c.backend.kind, fault.name());
    let object = random_bytes(LARGE, 3);
    c.origin.fault(BACKGROUND, object.clone(), fault.clone());
    let got = fetch(&client(), &c.at(BACKGROUND)).await;
    assert_eq!(got.status, StatusCode::FOUND, "{what}");
    assert_eq!(got.outcome(), Some("async"), "{what}");
    assert_eq!(
        got.headers["location"],
        format!("{}{BACKGROUND}", c.origin.url),
        "{what}"
    );
    check_end(
        &c.events.ended(BACKGROUND, 1).await,
        fault.expect(LARGE),
        &what,
    );
    assert!(
        c.origin.requests(BACKGROUND) <= MAX_FETCHES_PER_FILL,
        "{what}"
    );
}

/// What the store must hold for `key` after the fault: the complete answer or nothing.
async fn check_store(c: &Cell, key: &str, expect: Expect, object: &Bytes, what: &str) {
    let kept = stored(&*c.backend.store, key).await;
    match expect {
        Expect::Complete(n) => {
            assert!(kept.as_deref() == Some(&object[..n]), "{what}: {key}")
        }
        _ => assert!(
            kept.is_none(),
            "{what}: {key}: {} bytes stored",
            kept.unwrap().len()
        ),
    }
}

/// One cell of the matrix: the three client shapes at once, then the checks, then healing.
async fn run(kind: Kind, make: impl FnOnce(&Foreign) -> Fault) {
    let foreign = Foreign::start().await;
    let fault = make(&foreign);
    let c = Cell::new(kind, &fault).await;
    let what = format!("{kind:?} / {}", fault.name());
    tokio::join!(
        single(&c, &fault),
        coalesced(&c, &fault),
        background(&c, &fault)
    );

    let objects = [
        (SINGLE, random_bytes(SMALL, 1)),
        (COALESCED, random_bytes(LARGE, 2)),
        (BACKGROUND, random_bytes(LARGE, 3)),
    ];
    for (key, object) in &objects {
        check_store(&c, key, fault.expect(object.len()), object, &what).await;
    }
    assert_eq!(
        c.backend.settled_leftovers().await,
        Vec::<String>::new(),
        "{what}: leftovers"
    );
    let layer = c.layer.clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            layer.handle().fills_in_flight() == 0
        })
        .await,
        "{what}: a fill is stuck"
    );

    // Heal; the next request succeeds, the one after is a hit.
    let http = client();
    for (key, object) in &objects {
        let expect = fault.expect(object.len());
        let failed_before = !matches!(expect, Expect::Complete(_));
        c.origin.heal(key);
        let kept = match expect {
            Expect::Complete(n) => object.slice(..n),
            _ => object.clone(),
        };
        if *key == BACKGROUND && failed_before {
            let got = fetch(&http, &c.at(key)).await;
            assert_eq!(got.status, StatusCode::FOUND, "{what}: {key} healed");
            assert_eq!(c.events.ended(key, 2).await.kind(), "completed", "{what}");
        } else {
            let got = fetch(&http, &c.at(key)).await;
            assert_eq!(got.status, StatusCode::OK, "{what}: {key} healed");
            assert!(got.error.is_none(), "{what}: {key} healed: {:?}", got.error);
            assert!(got.bytes == kept, "{what}: {key} healed: wrong bytes");
            let outcome = if failed_before { Some("pulled") } else { None };
            assert_eq!(got.outcome(), outcome, "{what}: {key} healed");
        }
        let hit = fetch(&http, &c.at(key)).await;
        assert_eq!(hit.status, StatusCode::OK, "{what}: {key}");
        assert_eq!(hit.outcome(), None, "{what}: {key}: a hit after healing");
        assert!(hit.bytes == kept, "{what}: {key}: hit bytes");
        assert!(
            stored(&*c.backend.store, key).await.as_deref() == Some(&kept[..]),
            "{what}: {key}: stored bytes"
        );
    }
    assert_eq!(
        c.backend.settled_leftovers().await,
        Vec::<String>::new(),
        "{what}: leftovers after healing"
    );
    assert_eq!(
        foreign.connections(),
        0,
        "{what}: another host was contacted"
    );
}

macro_rules! matrix {
    ($($name:ident => $make:expr),+ $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    run(Kind::Memory, $make).await;
                }
            )+
        }
        mod local {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    run(Kind::Local, $make).await;
                }
            )+
        }
        #[cfg(feature = "aws")]
        mod s3 {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    run(Kind::S3, $make).await;
                }
            )+
        }
    };
}

matrix! {
    status_500 => |_| Fault::Status(500),
    status_502 => |_| Fault::Status(502),
    status_503 => |_| Fault::Status(503),
    redirect_loop => |_| Fault::RedirectLoop,
    redirect_to_another_ip => |f: &Foreign| Fault::RedirectTo(format!("{}evil.bin", f.other_ip.url)),
    redirect_to_another_port => |f: &Foreign| Fault::RedirectTo(format!("{}evil.bin", f.other_port.url)),
    garbage_status_line => |_| Fault::GarbageStatusLine,
    invalid_header_bytes => |_| Fault::InvalidHeaderBytes,
    huge_header_section => |_| Fault::HugeHeaders,
    no_response_headers => |_| Fault::NoHeaders,
    reset_before_the_head => |_| Fault::ResetBeforeHead,
    short_body_under_content_length => |_| Fault::ShortBody,
    content_length_one_longer => |_| Fault::LengthPlusOne,
    content_length_shorter_than_the_body => |_| Fault::LengthShorter,
    chunked_cut_before_the_last_chunk => |_| Fault::ChunkedCut,
    invalid_chunk_size => |_| Fault::BadChunk,
    reset_mid_body => |_| Fault::ResetMidBody,
    stall_after_half => |_| Fault::StallAfterHalf,
    slow_drip => |_| Fault::SlowDrip { piece: 4096, pause: Duration::from_millis(10) },
    content_md5_mismatch => |_| Fault::Md5Mismatch,
}

/// A fault after a real 5 MiB part went up to S3: the upload and its part are aborted.
#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_faults_after_an_uploaded_part() {
    let part = 5 * 1024 * 1024;
    for fault in [Fault::ShortBody, Fault::ResetMidBody, Fault::StallAfterHalf] {
        let backend = backend(Kind::S3).await;
        let origin = FaultyOrigin::start().await;
        // 11 MiB: the fault at half comes after the first part was uploaded.
        let object = random_bytes(2 * part + 1024 * 1024, 4);
        origin.fault("big.bin", object.clone(), fault.clone());
        let (first_byte, idle) = fault.timeouts();
        let http = HttpOrigin::builder(&origin.url)
            .first_byte_timeout(first_byte)
            .idle_timeout(idle)
            .build()
            .unwrap();
        let bucket = BucketStore::new(backend.store.clone())
            .with_multipart_threshold(part)
            .with_part_size(part);
        let layer = OriginPullBuilder::new(bucket).rule(Rule::new(http)).build();
        let events = EventLog::spawn(&layer);
        let inner = axum::Router::new().fallback_service(ServeStore::new(backend.store.clone()));
        let url = format!("http://{}/big.bin", serve(inner.layer(layer)).await);
        let got = fetch(&client(), &url).await;
        let what = format!("S3 / {} / after a part", fault.name());
        check_client(&got, Expect::BodyError, &object, &what);
        assert_eq!(events.ended("big.bin", 1).await.kind(), "failed", "{what}");
        assert!(stored(&*backend.store, "big.bin").await.is_none(), "{what}");
        assert_eq!(
            backend.settled_leftovers().await,
            Vec::<String>::new(),
            "{what}"
        );
    }
}

// ----- client faults -----

/// Where a client leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// While the fill waits for the origin's head.
    BeforeHead,
    /// Right after the first body bytes.
    FirstByte,
    /// After half the object.
    Midway,
    /// With every byte but the last piece (which the fill holds until the commit).
    LastByte,
}

const PIECE: usize = 16 * 1024;
const PACED: usize = 16 * PIECE;

struct Paced {
    backend: Backend,
    origin: FaultyOrigin,
    layer: OriginPullLayer,
    url: String,
    misses: Misses,
    events: EventLog,
    object: Bytes,
}

/// A local-disk app over an origin that sends 256 KiB in 16 KiB pieces 25 ms apart, with
/// 32 KiB multipart parts (so a write in progress has staging files to leave behind).
async fn paced(policy: ClientDisconnect) -> Paced {
    let backend = Backend::new(Kind::Local).await;
    let origin = FaultyOrigin::start().await;
    let object = random_bytes(PACED, 21);
    origin.fault(
        "paced.bin",
        object.clone(),
        Fault::SlowDrip {
            piece: PIECE,
            pause: Duration::from_millis(25),
        },
    );
    let bucket = BucketStore::new(backend.store.clone())
        .with_multipart_threshold(2 * PIECE)
        .with_part_size(2 * PIECE);
    let layer = OriginPullBuilder::new(bucket)
        .rule(Rule::new(HttpOrigin::new(&origin.url).unwrap()).on_client_disconnect(policy))
        .build();
    let misses = Misses::default();
    let inner = axum::Router::new().fallback_service(ServeStore::new(backend.store.clone()));
    let app = misses.count(inner).layer(layer.clone());
    let url = format!("http://{}/paced.bin", serve(app).await);
    let events = EventLog::spawn(&layer);
    Paced {
        backend,
        origin,
        layer,
        url,
        misses,
        events,
        object,
    }
}

/// A GET that leaves at `at`: drops the request or its body there.
async fn leave_at(http: HttpClient, url: String, at: At) {
    use http_body_util::BodyExt;
    let req = http::Request::get(&url)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    if at == At::BeforeHead {
        // The origin is held: no head can come in 300 ms.
        let res = tokio::time::timeout(Duration::from_millis(300), http.request(req)).await;
        assert!(res.is_err(), "the head came while the origin was held");
        return;
    }
    let mut body = http.request(req).await.unwrap().into_body();
    let until = match at {
        At::FirstByte => 1,
        At::Midway => PACED / 2,
        At::LastByte => PACED - PIECE,
        At::BeforeHead => unreachable!(),
    };
    let mut received = 0;
    while received < until {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
            other => panic!("the leaver's body ended early after {received} bytes: {other:?}"),
        }
    }
    drop(body);
}

/// One client leaves at `at` (the leader or a waiter) while four others read to the end:
/// they get every byte, the fill completes and stores the object, nothing is left behind,
/// and the next request is a hit.
async fn one_leaves_others_stay(leader_leaves: bool, at: At, policy: ClientDisconnect) {
    let what = format!("leader leaves: {leader_leaves} / {at:?} / {policy:?}");
    let p = paced(policy).await;
    let gate = p.origin.hold("paced.bin");
    let http = client();
    let spawn_get = |http: &HttpClient| {
        let (http, url) = (http.clone(), p.url.clone());
        tokio::spawn(async move { fetch(&http, &url).await })
    };
    let leaver = |http: &HttpClient| tokio::spawn(leave_at(http.clone(), p.url.clone(), at));
    // The leader first (the first miss starts the fill), then the others.
    let mut stayers = Vec::new();
    let leaving = if leader_leaves {
        let l = leaver(&http);
        p.misses.wait_for("paced.bin", 1).await;
        l
    } else {
        stayers.push(spawn_get(&http));
        p.misses.wait_for("paced.bin", 1).await;
        leaver(&http)
    };
    while stayers.len() < 4 {
        stayers.push(spawn_get(&http));
    }
    p.misses.wait_for("paced.bin", 5).await;
    let leaving = if at == At::BeforeHead {
        leaving.await.unwrap();
        None
    } else {
        Some(leaving)
    };
    gate.open();
    for s in stayers {
        let got = s.await.unwrap();
        assert_eq!(got.status, StatusCode::OK, "{what}");
        assert!(got.error.is_none(), "{what}: {:?}", got.error);
        assert!(got.bytes == p.object, "{what}: a stayer's bytes");
    }
    if let Some(leaving) = leaving {
        leaving.await.unwrap();
    }
    assert_eq!(
        p.events.ended("paced.bin", 1).await.kind(),
        "completed",
        "{what}"
    );
    assert!(stored(&*p.backend.store, "paced.bin").await.as_deref() == Some(&p.object[..]));
    check_settled(&p, &what).await;
    let hit = fetch(&http, &p.url).await;
    assert_eq!(hit.outcome(), None, "{what}: a hit");
    assert_eq!(p.origin.requests("paced.bin"), 1, "{what}");
}

async fn check_settled(p: &Paced, what: &str) {
    assert_eq!(
        p.backend.settled_leftovers().await,
        Vec::<String>::new(),
        "{what}: staging files"
    );
    let layer = p.layer.clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            layer.handle().fills_in_flight() == 0
        })
        .await,
        "{what}: the fill is still registered"
    );
}

#[tokio::test]
async fn the_leader_leaving_at_any_point_does_not_hurt_the_waiters() {
    let runs = [At::BeforeHead, At::FirstByte, At::Midway, At::LastByte]
        .map(|at| one_leaves_others_stay(true, at, ClientDisconnect::FinishFill));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_waiter_leaving_at_any_point_does_not_hurt_the_others() {
    let runs = [At::BeforeHead, At::FirstByte, At::Midway, At::LastByte]
        .map(|at| one_leaves_others_stay(false, at, ClientDisconnect::FinishFill));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn cancel_fill_keeps_going_while_other_readers_remain() {
    let runs = [At::FirstByte, At::Midway, At::LastByte]
        .map(|at| one_leaves_others_stay(true, at, ClientDisconnect::CancelFill));
    futures::future::join_all(runs).await;
}

/// The only client leaves: with `FinishFill` the object is still stored; with `CancelFill`
/// nothing is (or, at the last byte, possibly the complete object: the commit may already
/// have happened), and either way nothing is left behind and the next request succeeds.
async fn alone_leaves(at: At, policy: ClientDisconnect) {
    let what = format!("alone / {at:?} / {policy:?}");
    let p = paced(policy).await;
    let gate = p.origin.hold("paced.bin");
    let http = client();
    let leaving = tokio::spawn(leave_at(http.clone(), p.url.clone(), at));
    p.misses.wait_for("paced.bin", 1).await;
    if at == At::BeforeHead {
        leaving.await.unwrap();
        gate.open();
    } else {
        gate.open();
        leaving.await.unwrap();
    }
    let end = p.events.ended("paced.bin", 1).await;
    let kept = stored(&*p.backend.store, "paced.bin").await;
    match (policy, at) {
        (ClientDisconnect::FinishFill, _) => {
            assert_eq!(end.kind(), "completed", "{what}");
            assert!(kept.as_deref() == Some(&p.object[..]), "{what}");
        }
        (ClientDisconnect::CancelFill, At::LastByte) => {
            assert!(
                kept.is_none() || kept.as_deref() == Some(&p.object[..]),
                "{what}: nothing or everything"
            );
        }
        (ClientDisconnect::CancelFill, _) => {
            assert_eq!(end.kind(), "failed", "{what}");
            assert!(kept.is_none(), "{what}: nothing stored");
        }
    }
    check_settled(&p, &what).await;
    let next = fetch(&http, &p.url).await;
    assert_eq!(next.status, StatusCode::OK, "{what}");
    assert!(next.error.is_none() && next.bytes == p.object, "{what}");
}

#[tokio::test]
async fn the_only_client_leaving_under_finish_fill_still_stores() {
    let runs = [At::BeforeHead, At::FirstByte, At::Midway, At::LastByte]
        .map(|at| alone_leaves(at, ClientDisconnect::FinishFill));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn the_only_client_leaving_under_cancel_fill_stores_nothing_partial() {
    let runs = [At::BeforeHead, At::FirstByte, At::Midway, At::LastByte]
        .map(|at| alone_leaves(at, ClientDisconnect::CancelFill));
    futures::future::join_all(runs).await;
}

/// Under `CancelFill`, the only client leaving with every byte but the held last piece:
/// the fill commits (the object is complete and stored), then finds itself abandoned when it
/// pushes the held piece; it must still report `Completed` (it once reported `Failed`, and
/// subscribers — async-mode callers, webhooks — were told the object was not there).
#[tokio::test]
async fn cancel_fill_at_the_last_byte_reports_what_was_stored() {
    for _ in 0..3 {
        let p = paced(ClientDisconnect::CancelFill).await;
        leave_at(client(), p.url.clone(), At::LastByte).await;
        let end = p.events.ended("paced.bin", 1).await;
        let kept = stored(&*p.backend.store, "paced.bin").await;
        if kept.is_some() {
            assert_eq!(end.kind(), "completed", "stored, yet reported: {end:?}");
        } else {
            assert_eq!(end.kind(), "failed");
        }
    }
}
