//! The spool (issue 16): late joiners and ranged readers of a fill stream at once, at any
//! offset; ranged misses join the fill under `RangeMiss::JoinFill`; the spool never
//! outlives its fill; `spool_max_bytes` bounds the disk; memory stays bounded.
//!
//! The origin here is a real HTTP server on 127.0.0.1:0 whose body is *gated*: it sends
//! the object only up to the offset the test allows, so every "before the gate opens" is an
//! order, not a timing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tokio::sync::{oneshot, watch};
use tower_origin_pull::{
    BucketStore, HttpOrigin, Origin, OriginPullBuilder, OriginPullLayer, OriginRequest,
    OriginResponse, RangeMiss, Rule, ServeStore,
};

use common::*;

// ----- a counting allocator: peak heap, not RSS -----

use common::heap::{LIVE, PEAK};

#[global_allocator]
static HEAP: common::heap::Counting = common::heap::Counting;

/// The memory test measures the whole process's heap: no other test may run beside it.
static SERIAL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const PIECE: usize = 16 * KIB;

// ----- the gated origin -----

/// A real origin serving one object whose body goes out only up to the offset the test
/// allows (`allow`); a `Range` request is answered at once (`206`). Counts whole and ranged
/// requests (as they arrive). `hold` keeps the response heads of either kind back (nothing
/// is sent, not even the status line) until released.
#[derive(Clone)]
struct Gated {
    url: String,
    allowed: Arc<watch::Sender<u64>>,
    held: Arc<watch::Sender<Held>>,
    sent: Arc<AtomicU64>,
    whole: Arc<AtomicUsize>,
    ranged: Arc<AtomicUsize>,
    /// The requests' kinds (`"whole"`, `"ranged"`) in the order they arrived.
    order: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

#[derive(Clone)]
struct GateState {
    object: Bytes,
    allowed: watch::Receiver<u64>,
    held: watch::Receiver<Held>,
    sent: Arc<AtomicU64>,
    whole: Arc<AtomicUsize>,
    ranged: Arc<AtomicUsize>,
    order: Arc<std::sync::Mutex<Vec<&'static str>>>,
    /// Break the body off (an error, so the connection is cut) at this offset.
    fail_at: Option<u64>,
}

/// Which responses' heads the gated origin holds back.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Held {
    whole: bool,
    ranged: bool,
}

impl Gated {
    async fn start(object: Bytes, fail_at: Option<u64>) -> Self {
        let (tx, rx) = watch::channel(0);
        let (held_tx, held) = watch::channel(Held::default());
        let state = GateState {
            object,
            allowed: rx,
            held,
            sent: Arc::default(),
            whole: Arc::default(),
            ranged: Arc::default(),
            order: Arc::default(),
            fail_at,
        };
        let gated = Self {
            url: String::new(),
            allowed: Arc::new(tx),
            held: Arc::new(held_tx),
            sent: state.sent.clone(),
            whole: state.whole.clone(),
            ranged: state.ranged.clone(),
            order: state.order.clone(),
        };
        let addr = serve(Router::new().fallback(gated_handler).with_state(state)).await;
        Self {
            url: format!("http://{addr}/"),
            ..gated
        }
    }

    fn allow(&self, upto: usize) {
        self.allowed.send_replace(upto as u64);
    }

    /// Hold back the heads of whole (`GET` without `Range`) and ranged responses, or
    /// release them (`false`).
    fn hold(&self, whole: bool, ranged: bool) {
        self.held.send_replace(Held { whole, ranged });
    }

    /// Wait until the origin has received `whole` whole and `ranged` ranged requests.
    async fn received(&self, whole: usize, ranged: usize) {
        assert!(
            eventually(Duration::from_secs(20), || async {
                self.whole.load(Ordering::Relaxed) >= whole
                    && self.ranged.load(Ordering::Relaxed) >= ranged
            })
            .await,
            "the origin never received {whole} whole and {ranged} ranged requests"
        );
    }

    /// Wait until the origin has sent every whole piece of the first `n` bytes.
    async fn sent_at_least(&self, n: usize) {
        let n = n / PIECE * PIECE;
        assert!(
            eventually(Duration::from_secs(20), || async {
                self.sent.load(Ordering::Relaxed) >= n as u64
            })
            .await,
            "the origin never sent {n} bytes"
        );
    }
}

async fn gated_handler(State(s): State<GateState>, req: Request) -> Response {
    if let Some(range) = req.headers().get(http::header::RANGE) {
        s.ranged.fetch_add(1, Ordering::Relaxed);
        s.order.lock().unwrap().push("ranged");
        let _ = s.held.clone().wait_for(|h| !h.ranged).await;
        let (first, last) = parse_range(range.to_str().unwrap(), s.object.len());
        return Response::builder()
            .status(206)
            .header(
                "content-range",
                format!("bytes {first}-{last}/{}", s.object.len()),
            )
            .body(Body::from(s.object.slice(first..=last)))
            .unwrap();
    }
    s.whole.fetch_add(1, Ordering::Relaxed);
    s.order.lock().unwrap().push("whole");
    let _ = s.held.clone().wait_for(|h| !h.whole).await;
    let len = s.object.len();
    let pieces = (0..len)
        .step_by(PIECE)
        .map(move |at| (at, (at + PIECE).min(len)));
    let body = futures::stream::iter(pieces).then(move |(at, end)| {
        let mut s = s.clone();
        async move {
            let _ = s.allowed.wait_for(|a| *a >= end as u64).await;
            if s.fail_at.is_some_and(|f| end as u64 > f) {
                return Err(std::io::Error::other("origin breaks off"));
            }
            s.sent.fetch_add((end - at) as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(s.object.slice(at..end))
        }
    });
    Response::builder()
        .header("content-length", len)
        .body(Body::from_stream(body))
        .unwrap()
}

fn parse_range(value: &str, len: usize) -> (usize, usize) {
    let spec = value.strip_prefix("bytes=").unwrap();
    let (a, b) = spec.split_once('-').unwrap();
    if a.is_empty() {
        // A suffix: the last `b` bytes.
        let n: usize = b.parse().unwrap();
        return (len - n.min(len), len - 1);
    }
    let first: usize = a.parse().unwrap();
    let last = if b.is_empty() {
        len - 1
    } else {
        b.parse::<usize>().unwrap().min(len - 1)
    };
    (first, last)
}

// ----- the app -----

struct App {
    url: String,
    layer: OriginPullLayer,
    spool_dir: tempfile::TempDir,
    _store_dir: Option<tempfile::TempDir>,
}

impl App {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Spool files this process has open in this app's spool directory.
    fn open_spools(&self) -> usize {
        open_files_under(self.spool_dir.path())
    }

    /// Wait until no spool file of this app is open (none outlives its fill).
    async fn spools_gone(&self) {
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.open_spools() == 0
            })
            .await,
            "{} spool files still open",
            self.open_spools()
        );
        assert_eq!(self.layer.handle().spool_stats().bytes_now, 0);
    }

    /// The fill a test started went on and stored the object: once no fill is in flight, a
    /// plain GET of `name` is a hit with the whole `object`.
    async fn serves_stored(&self, client: &HttpClient, name: &str, object: &Bytes) {
        fills_done(&self.layer.handle()).await;
        let again = get(client, &self.at(name)).await;
        assert_eq!(again.outcome(), None, "a hit");
        assert!(again.body() == &object[..]);
    }
}

/// Once no fill is in flight: the origin saw `whole` whole and `ranged` ranged requests, and
/// the layer counted `joined` and `proxied` ranges.
async fn settled(
    app: &App,
    origin: &Gated,
    (whole, ranged): (usize, usize),
    (joined, proxied): (u64, u64),
) {
    let handle = app.layer.handle();
    fills_done(&handle).await;
    assert_eq!(
        origin.whole.load(Ordering::Relaxed),
        whole,
        "whole requests"
    );
    assert_eq!(
        origin.ranged.load(Ordering::Relaxed),
        ranged,
        "ranged requests"
    );
    let stats = handle.spool_stats();
    assert_eq!(
        (stats.ranges_joined, stats.ranges_proxied),
        (joined, proxied)
    );
}

/// Wait (bounded) until no fill of the layer is in flight.
async fn fills_done(handle: &tower_origin_pull::OriginPullHandle) {
    assert!(
        eventually(Duration::from_secs(20), || async {
            handle.fills_in_flight() == 0
        })
        .await,
        "fills still in flight"
    );
}

fn open_files_under(dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
        .count()
}

async fn app_with(
    origin: Arc<dyn Origin>,
    store: Arc<dyn ObjectStore>,
    store_dir: Option<tempfile::TempDir>,
    rule: impl FnOnce(Rule) -> Rule,
    layer: impl FnOnce(OriginPullBuilder) -> OriginPullBuilder,
) -> App {
    let spool_dir = tempfile::tempdir().unwrap();
    let bucket = BucketStore::new(store.clone())
        .with_multipart_threshold(256 * KIB)
        .with_part_size(256 * KIB)
        .with_max_concurrent_parts(1);
    let builder = OriginPullBuilder::new(bucket)
        .coalesce_window(64 * KIB)
        .spool_dir(spool_dir.path());
    let layer = layer(builder).rule(rule(Rule::new(origin))).build();
    // `ServeStore` as the inner service: a range that arrives after the commit is a hit,
    // answered `206` like any other.
    let inner = Router::new().fallback_service(ServeStore::new(store));
    let addr = serve(inner.layer(layer.clone())).await;
    App {
        url: format!("http://{addr}/"),
        layer,
        spool_dir,
        _store_dir: store_dir,
    }
}

/// The cold-range tests' setting: a `len`-byte object (from `seed`) behind a gated origin
/// that has let nothing through yet, and a mirror whose ranges may join a fill for 5 s.
async fn cold_range_setup(len: usize, seed: u64) -> (Bytes, Gated, App) {
    let object = random_bytes(len, seed);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, join_fill(Duration::from_secs(5)), |l| l).await;
    (object, origin, app)
}

async fn app(
    origin_url: &str,
    rule: impl FnOnce(Rule) -> Rule,
    layer: impl FnOnce(OriginPullBuilder) -> OriginPullBuilder,
) -> App {
    let origin: Arc<dyn Origin> = Arc::new(HttpOrigin::new(origin_url).unwrap());
    app_with(origin, Arc::new(InMemory::new()), None, rule, layer).await
}

// ----- clients that report their first byte -----

/// A GET whose first body frame is signalled; its whole answer comes from the handle.
struct Streaming {
    first: oneshot::Receiver<()>,
    done: tokio::task::JoinHandle<Got>,
}

fn start_get(client: &HttpClient, url: &str, range: Option<String>) -> Streaming {
    let (tx, first) = oneshot::channel();
    let mut req = http::Request::get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let request = client.request(req.body(Empty::<Bytes>::new()).unwrap());
    let done = tokio::spawn(async move {
        let res = request.await.unwrap();
        let (parts, mut body) = res.into_parts();
        let mut tx = Some(tx);
        let mut bytes = Vec::new();
        let body = loop {
            match body.frame().await {
                None => break Ok(Bytes::from(bytes)),
                Some(Err(e)) => break Err(format!("{e:?}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        bytes.extend_from_slice(&data);
                    }
                }
            }
        };
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    });
    Streaming { first, done }
}

/// A GET whose body is compared with `expected` as it arrives and not kept (so the test's
/// own heap does not grow with the object): `Ok(true)` when it is `expected` exactly.
fn start_checked_get(
    client: &HttpClient,
    url: &str,
    expected: Bytes,
) -> (
    oneshot::Receiver<()>,
    tokio::task::JoinHandle<Result<bool, String>>,
) {
    let (tx, first) = oneshot::channel();
    let request = client.request(http::Request::get(url).body(Empty::<Bytes>::new()).unwrap());
    let done = tokio::spawn(async move {
        let mut body = request.await.map_err(|e| format!("{e:?}"))?.into_body();
        let mut tx = Some(tx);
        let mut pos = 0;
        let mut same = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{e:?}"))?;
            if let Ok(data) = frame.into_data() {
                if let Some(tx) = tx.take().filter(|_| !data.is_empty()) {
                    let _ = tx.send(());
                }
                let end = pos + data.len();
                same &= end <= expected.len() && expected[pos..end] == data[..];
                pos = end;
            }
        }
        Ok(same && pos == expected.len())
    });
    (first, done)
}

impl Streaming {
    /// The first body byte arrived (bounded, so a broken build fails instead of hanging).
    async fn first_byte(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(20), &mut self.first)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn got(self) -> Got {
        self.done.await.unwrap()
    }
}

// ----- late joiners -----

/// Readers joining at 10 %, 50 % and 90 % of the fill (far behind a 64 KiB window) each get
/// their first body bytes while the origin is still held there, from the spool, and every
/// body is the object. One origin request; afterwards no spool file is open.
#[tokio::test]
async fn late_joiners_at_10_50_90_percent_stream_before_the_gate_opens() {
    let _serial = SERIAL.read().await;
    let object = random_bytes(4 * MIB, 16);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let client = client();
    let leader = start_get(&client, &app.at("big.bin"), None);
    let mut joiners = Vec::new();
    for percent in [10, 50, 90] {
        let at = object.len() * percent / 100;
        origin.allow(at);
        origin.sent_at_least(at).await;
        let mut joiner = start_get(&client, &app.at("big.bin"), None);
        assert!(
            joiner.first_byte().await,
            "the reader joining at {percent} % got no byte while the origin was held"
        );
        assert_eq!(
            *origin.allowed.borrow(),
            at as u64,
            "the gate was still held at {percent} %"
        );
        assert!(app.open_spools() >= 1, "the fill spools");
        joiners.push(joiner);
    }
    let reads_before_release = app.layer.handle().spool_stats().reads;
    assert!(reads_before_release >= 3, "the joiners read the spool");
    origin.allow(object.len());
    let leader = leader.got().await;
    assert_eq!(leader.body(), &object[..]);
    for joiner in joiners {
        let got = joiner.got().await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.outcome(), Some("coalesced"));
        assert!(got.body() == &object[..], "a joiner's bytes are the object");
    }
    assert_eq!(
        origin.whole.load(Ordering::Relaxed),
        1,
        "one origin request"
    );
    assert_eq!(app.layer.handle().spool_stats().spooled_fills, 1);
    app.spools_gone().await;
}

// ----- a local directory: the store's staging file is the spool -----

/// A store in a temporary directory (kept with the app) and an app over it.
async fn local_app(origin: &Gated) -> (App, PathBuf) {
    let store_dir = tempfile::tempdir().unwrap();
    let root = store_dir.path().canonicalize().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let origin: Arc<dyn Origin> = Arc::new(HttpOrigin::new(&origin.url).unwrap());
    (
        app_with(origin, store, Some(store_dir), |r| r, |l| l).await,
        root,
    )
}

/// On a local directory the same late joiners stream before the gate opens, from the store
/// write's own staging file (`big.bin#1`, beside where the object will be): the fill opens
/// no spool file of its own and holds nothing against `spool_max_bytes`, so every byte is
/// written to disk once. Afterwards the object and its metadata are in place and no
/// staging file is left.
#[tokio::test]
async fn on_a_local_disk_late_joiners_read_the_stores_staging_file() {
    let _serial = SERIAL.read().await;
    let object = random_bytes(4 * MIB, 17);
    let origin = Gated::start(object.clone(), None).await;
    let (app, root) = local_app(&origin).await;
    let client = client();
    let leader = start_get(&client, &app.at("big.bin"), None);
    let mut joiners = Vec::new();
    for percent in [10, 50, 90] {
        let at = object.len() * percent / 100;
        origin.allow(at);
        origin.sent_at_least(at).await;
        let mut joiner = start_get(&client, &app.at("big.bin"), None);
        assert!(
            joiner.first_byte().await,
            "the reader joining at {percent} % got no byte while the origin was held"
        );
        assert_eq!(*origin.allowed.borrow(), at as u64, "the gate was held");
        assert_eq!(app.open_spools(), 0, "no spool file of the fill's own");
        assert_eq!(app.layer.handle().spool_stats().bytes_now, 0);
        assert_eq!(files_below(&root), ["big.bin#1"], "only the staging file");
        joiners.push(joiner);
    }
    let stats = app.layer.handle().spool_stats();
    assert!(stats.reads >= 3, "the joiners read the staging file");
    assert_eq!((stats.spooled_fills, stats.from_staging), (1, 1));
    origin.allow(object.len());
    assert_eq!(leader.got().await.body(), &object[..]);
    for joiner in joiners {
        let got = joiner.got().await;
        assert_eq!(got.outcome(), Some("coalesced"));
        assert!(got.body() == &object[..], "a joiner's bytes are the object");
    }
    assert_eq!(
        origin.whole.load(Ordering::Relaxed),
        1,
        "one origin request"
    );
    assert_eq!(
        files_below(&root),
        [".origin-pull-meta/big.bin.meta", "big.bin"]
    );
    assert!(std::fs::read(root.join("big.bin")).unwrap() == object[..]);
    app.spools_gone().await;
}

/// A local fill that fails midway: the reader reading the staging file gets an error (never
/// a short body that looks whole), and neither the object, its metadata nor the staging
/// file is left.
#[tokio::test]
async fn on_a_local_disk_a_failed_fill_leaves_nothing_and_its_readers_error() {
    let _serial = SERIAL.read().await;
    let object = random_bytes(4 * MIB, 18);
    let origin = Gated::start(object.clone(), Some(3 * MIB as u64)).await;
    let (app, root) = local_app(&origin).await;
    let client = client();
    let leader = start_get(&client, &app.at("big.bin"), None);
    origin.allow(2 * MIB);
    origin.sent_at_least(2 * MIB).await;
    let mut joiner = start_get(&client, &app.at("big.bin"), None);
    assert!(
        joiner.first_byte().await,
        "the joiner read the staging file"
    );
    origin.allow(object.len());
    assert!(leader.got().await.body.is_err(), "the leader's body breaks");
    assert!(joiner.got().await.body.is_err(), "the joiner's body breaks");
    assert!(
        eventually(Duration::from_secs(10), || async {
            files_below(&root).is_empty()
        })
        .await,
        "left behind: {:?}",
        files_below(&root)
    );
    app.spools_gone().await;
}

/// A large object at a key the disk cannot hold (below a key that is a file) is found out
/// at the first write to disk, not before the head: every reader still gets the whole
/// object, and nothing is stored or left behind.
#[tokio::test]
async fn on_a_local_disk_a_key_the_disk_cannot_hold_is_streamed_unstored() {
    let _serial = SERIAL.read().await;
    let object = random_bytes(4 * MIB, 19);
    let origin = Gated::start(object.clone(), None).await;
    let (app, root) = local_app(&origin).await;
    std::fs::write(root.join("file"), "a file").unwrap();
    let client = client();
    let leader = start_get(&client, &app.at("file/big.bin"), None);
    origin.allow(MIB);
    origin.sent_at_least(MIB).await;
    let joiner = start_get(&client, &app.at("file/big.bin"), None);
    origin.allow(object.len());
    assert!(leader.got().await.body() == &object[..]);
    // (The joiner, behind the window of a fill that stores nothing, fetches its own.)
    assert!(joiner.got().await.body() == &object[..]);
    assert_eq!(files_below(&root), ["file"], "nothing stored, nothing left");
    app.spools_gone().await;
}

// ----- ranged readers -----

fn join_fill(max_wait: Duration) -> impl FnOnce(Rule) -> Rule {
    move |r| r.on_range(RangeMiss::JoinFill { max_wait })
}

/// 200 readers of one cold object, each asking for a random range, arriving at random
/// points of the fill (between steps of the gate), under `JoinFill` with an unbounded
/// `max_wait`: one origin request for all of them, every body the right bytes.
#[tokio::test]
async fn two_hundred_random_ranges_join_one_fill() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let object = random_bytes(len, 200);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, join_fill(Duration::MAX), |l| l).await;
    let client = client();
    let mut rng = fastrand::Rng::with_seed(200);
    let mut readers = Vec::new();
    for step in 0..20 {
        for _ in 0..10 {
            let first = rng.usize(0..len);
            let last = rng.usize(first..len.min(first + 512 * KIB));
            let range = format!("bytes={first}-{last}");
            readers.push((
                first,
                last,
                start_get(&client, &app.at("r.bin"), Some(range)),
            ));
        }
        // This batch has reached the layer (each range is counted when it is decided,
        // once the fill's head is in), then the fill moves on by a random amount.
        let sent = readers.len() as u64;
        let handle = app.layer.handle();
        assert!(
            eventually(Duration::from_secs(20), || async {
                let stats = handle.spool_stats();
                stats.ranges_joined + stats.ranges_proxied >= sent
            })
            .await
        );
        let upto = (len * (step + 1) / 21).saturating_sub(rng.usize(0..PIECE));
        origin.allow(upto);
    }
    origin.allow(len);
    for (first, last, reader) in readers {
        let got = reader.got().await;
        assert_eq!(got.status, StatusCode::PARTIAL_CONTENT, "{first}-{last}");
        assert!(
            got.body() == &object[first..=last],
            "the bytes of {first}-{last}"
        );
    }
    assert_eq!(
        origin.whole.load(Ordering::Relaxed),
        1,
        "one origin request"
    );
    assert_eq!(origin.ranged.load(Ordering::Relaxed), 0, "no range proxied");
    let stats = app.layer.handle().spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (200, 0));
    app.spools_gone().await;
}

/// With a small `max_wait`, ranges far ahead of a held fill are proxied (counted, the
/// origin asked for exactly those ranges, right bytes at once), while ranges already
/// spooled join the fill and get their bytes before the gate opens.
#[tokio::test]
async fn far_ranges_are_proxied_under_a_small_max_wait() {
    let _serial = SERIAL.read().await;
    let len = 4 * MIB;
    let object = random_bytes(len, 7);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, join_fill(Duration::from_millis(20)), |l| l).await;
    let client = client();
    let leader = start_get(&client, &app.at("f.bin"), None);
    origin.allow(len / 10);
    origin.sent_at_least(len / 10).await;
    let mut far = Vec::new();
    for i in 0..5 {
        let first = len / 2 + i * 300 * KIB;
        let last = first + 100 * KIB;
        far.push((
            first,
            last,
            start_get(
                &client,
                &app.at("f.bin"),
                Some(format!("bytes={first}-{last}")),
            ),
        ));
    }
    for (first, last, reader) in far {
        // Answered while the fill is still held at 10 %.
        let got = reader.got().await;
        assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(got.outcome(), Some("proxied"));
        assert!(got.body() == &object[first..=last]);
    }
    assert_eq!(*origin.allowed.borrow(), (len / 10) as u64);
    assert_eq!(origin.ranged.load(Ordering::Relaxed), 5);
    // A range in what is spooled joins, and streams before the gate opens.
    let mut near = start_get(
        &client,
        &app.at("f.bin"),
        Some("bytes=1000-99999".to_owned()),
    );
    assert!(near.first_byte().await, "a spooled range streams at once");
    origin.allow(len);
    let near = near.got().await;
    assert_eq!(near.outcome(), Some("coalesced"));
    assert!(near.body() == &object[1000..=99_999]);
    assert!(leader.got().await.body() == &object[..]);
    let stats = app.layer.handle().spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (1, 5));
    assert_eq!(origin.whole.load(Ordering::Relaxed), 1);
    app.spools_gone().await;
}

/// A cold range far from the start, under a bounded `max_wait`, is proxied as soon as the
/// full fill it started has its head (no wait for a rate that cannot be known yet), while
/// that fill goes on and stores the object: the next plain GET is a hit.
#[tokio::test]
async fn a_cold_far_range_is_proxied_at_once_and_its_fill_goes_on() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let (object, origin, app) = cold_range_setup(len, 14).await;
    let client = client();
    let got = get_with(
        &client,
        &app.at("cold.bin"),
        &[("range", "bytes=1500000-1500099")],
    )
    .await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.outcome(), Some("proxied"));
    assert!(got.body() == &object[1_500_000..1_500_100]);
    assert_eq!(
        *origin.allowed.borrow(),
        0,
        "answered while the fill was held at 0"
    );
    assert_eq!(app.layer.handle().spool_stats().ranges_proxied, 1);
    origin.allow(len);
    app.serves_stored(&client, "cold.bin", &object).await;
    assert_eq!(origin.whole.load(Ordering::Relaxed), 1);
    app.spools_gone().await;
}

/// A cold suffix range of an object larger than the window (where it starts is not known
/// before the length, and it turns out far beyond the first window): its ranged origin
/// request starts alongside the full fill it leads, so the range is answered while the
/// origin still holds the full fill's response head — one origin round trip, not the
/// fill's head and then the range's. The origin sees one whole and one ranged request;
/// the fill goes on and stores the object.
#[tokio::test]
async fn a_cold_suffix_range_does_not_wait_for_the_fills_head() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let (object, origin, app) = cold_range_setup(len, 18).await;
    origin.hold(true, false);
    let client = client();
    let url = app.at("tail.bin");
    let ranged = get_with(&client, &url, &[("range", "bytes=-100")]);
    let got = tokio::time::timeout(Duration::from_secs(10), ranged)
        .await
        .expect("the range was answered while the fill's head was held");
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.outcome(), Some("proxied"));
    assert!(got.body() == &object[len - 100..]);
    assert_eq!(
        got.headers["content-range"],
        format!("bytes {}-{}/{len}", len - 100, len - 1)
    );
    origin.received(1, 1).await;
    let stats = app.layer.handle().spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (0, 1));
    // The full fill was held at its head all along; it goes on and stores the object.
    origin.hold(false, false);
    origin.allow(len);
    app.serves_stored(&client, "tail.bin", &object).await;
    assert_eq!(origin.whole.load(Ordering::Relaxed), 1);
    assert_eq!(origin.ranged.load(Ordering::Relaxed), 1);
    let stats = app.layer.handle().spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (0, 1));
    app.spools_gone().await;
}

/// A cold suffix range's own request goes out before its fill's: with one connection idle
/// in the origin pool (left by an earlier pull), the origin receives the ranged request
/// first (on that connection; the fill connects anew), so the range does not wait behind
/// the fill's request and head on one CPU.
#[tokio::test]
async fn a_cold_suffix_ranges_request_goes_out_before_its_fills() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let (object, origin, app) = cold_range_setup(len, 21).await;
    origin.allow(len);
    let client = client();
    // An earlier pull leaves its connection idle in the pool.
    assert!(get(&client, &app.at("earlier.bin")).await.body() == &object[..]);
    let handle = app.layer.handle();
    fills_done(&handle).await;
    origin.order.lock().unwrap().clear();
    let got = get_with(&client, &app.at("tail.bin"), &[("range", "bytes=-100")]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert!(got.body() == &object[len - 100..]);
    origin.received(2, 1).await;
    assert_eq!(
        *origin.order.lock().unwrap(),
        ["ranged", "whole"],
        "the range's request went out first"
    );
    app.spools_gone().await;
}

/// A cold far range whose full fill's head comes first (the origin holds the ranged
/// response's head): the head proxies the range, and the speculative ranged request, sent
/// alongside the fill before that head came, answers it — no second ranged request.
#[tokio::test]
async fn a_cold_far_range_proxied_on_the_fills_head_uses_its_speculative_request() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let (object, origin, app) = cold_range_setup(len, 21).await;
    origin.hold(true, true);
    let handle = app.layer.handle();
    let client = client();
    let ranged = start_get(
        &client,
        &app.at("far.bin"),
        Some("bytes=1500000-1500099".to_owned()),
    );
    // The ranged request went out before the fill's head came.
    origin.received(1, 1).await;
    origin.hold(false, true);
    assert!(
        eventually(Duration::from_secs(20), || async {
            handle.spool_stats().ranges_proxied == 1
        })
        .await,
        "the fill's head proxied the range"
    );
    origin.hold(false, false);
    let got = ranged.got().await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.outcome(), Some("proxied"));
    assert!(got.body() == &object[1_500_000..1_500_100]);
    origin.allow(len);
    settled(&app, &origin, (1, 1), (0, 1)).await;
    app.spools_gone().await;
}

/// A cold suffix range of an object within the window: its speculative ranged request
/// goes out (the length is not known yet), but the full fill's head puts the range within
/// reach, so the range joins the fill (counted once, as joined) and the speculative fill is
/// cancelled at once — while the origin still holds its response head: it holds no slot
/// and no connection waiting for it. Two origin requests at most; the object is stored.
#[tokio::test]
async fn a_cold_suffix_range_within_the_window_joins_and_cancels_its_speculative_request() {
    let _serial = SERIAL.read().await;
    let len = 48 * KIB;
    let (object, origin, app) = cold_range_setup(len, 19).await;
    origin.hold(true, true);
    origin.allow(len);
    let handle = app.layer.handle();
    let client = client();
    let ranged = start_get(&client, &app.at("small.bin"), Some("bytes=-100".to_owned()));
    // Both requests are at the origin, both heads held: the fill and the speculative fill.
    origin.received(1, 1).await;
    assert_eq!(handle.fills_in_flight(), 2);
    // The full fill's head (the ranged one is still held) decides: the range joins.
    origin.hold(false, true);
    let got = ranged.got().await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert!(got.body() == &object[len - 100..]);
    let stats = handle.spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (1, 0));
    assert!(
        eventually(Duration::from_secs(20), || async {
            handle.fills_in_flight() == 0
        })
        .await,
        "the speculative fill stopped waiting for its held head"
    );
    origin.hold(false, false);
    let again = get(&client, &app.at("small.bin")).await;
    assert_eq!(again.outcome(), None, "the object is stored: a hit");
    assert!(again.body() == &object[..]);
    let requests = origin.whole.load(Ordering::Relaxed) + origin.ranged.load(Ordering::Relaxed);
    assert!(requests <= 2, "{requests} origin requests");
    let stats = handle.spool_stats();
    assert_eq!((stats.ranges_joined, stats.ranges_proxied), (1, 0));
}

/// A cold range known to start within the first window (`bytes=0-99`) joins the fill it
/// starts and never costs a speculative request: one origin request, one fill in flight.
#[tokio::test]
async fn a_cold_range_within_the_first_window_sends_one_origin_request() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let (object, origin, app) = cold_range_setup(len, 20).await;
    origin.hold(true, false);
    let handle = app.layer.handle();
    let client = client();
    let ranged = start_get(&client, &app.at("head.bin"), Some("bytes=0-99".to_owned()));
    origin.received(1, 0).await;
    // A speculative fill would have started with the fill, before its request went out;
    // give a wrong build ample time to show it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.fills_in_flight(), 1, "no speculative fill");
    assert_eq!(origin.ranged.load(Ordering::Relaxed), 0);
    origin.hold(false, false);
    origin.allow(len);
    let got = ranged.got().await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert!(got.body() == &object[..100]);
    settled(&app, &origin, (1, 0), (1, 0)).await;
    app.spools_gone().await;
}

// ----- the spool never outlives its fill -----

/// A fill that fails mid-object (the origin breaks off): a reader of the spool gets a body
/// error, never a clean short body, and the spool is gone.
#[tokio::test]
async fn a_failed_fill_ends_spool_readers_in_an_error_and_removes_the_spool() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let object = random_bytes(len, 3);
    let origin = Gated::start(object.clone(), Some((len / 2) as u64)).await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let client = client();
    let leader = start_get(&client, &app.at("x.bin"), None);
    origin.allow(len / 4);
    origin.sent_at_least(len / 4).await;
    let mut joiner = start_get(&client, &app.at("x.bin"), None);
    assert!(joiner.first_byte().await);
    assert!(app.open_spools() >= 1);
    origin.allow(len);
    for got in [leader.got().await, joiner.got().await] {
        assert!(got.body.is_err(), "a failed fill's reader gets an error");
    }
    app.spools_gone().await;
}

/// A cold range whose fill fails never ends cleanly either: its last byte is held until the
/// fill ends well.
#[tokio::test]
async fn a_joined_range_of_a_failed_fill_ends_in_an_error() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let object = random_bytes(len, 4);
    let origin = Gated::start(object.clone(), Some((len - PIECE) as u64)).await;
    let app = app(&origin.url, join_fill(Duration::MAX), |l| l).await;
    let client = client();
    let mut ranged = start_get(&client, &app.at("y.bin"), Some("bytes=0-999".to_owned()));
    origin.allow(len / 2);
    assert!(ranged.first_byte().await);
    origin.allow(len);
    let got = ranged.got().await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert!(got.body.is_err(), "all but the last byte, then an error");
    app.spools_gone().await;
}

/// An origin whose body panics mid-object (user code): the fill's guard settles it; the
/// spool reader gets an error; the spool is gone.
#[derive(Debug)]
struct Panicky {
    inner: HttpOrigin,
    at: u64,
}

impl Origin for Panicky {
    fn fetch(
        &self,
        request: OriginRequest,
    ) -> futures::future::BoxFuture<'static, Result<OriginResponse, tower_origin_pull::Error>> {
        let fetch = self.inner.fetch(request);
        let at = self.at;
        async move {
            let mut response = fetch.await?;
            let mut seen = 0u64;
            response.body = response
                .body
                .map(move |chunk| {
                    if let Ok(c) = &chunk {
                        seen += c.len() as u64;
                    }
                    assert!(seen <= at, "the origin's body panics");
                    chunk
                })
                .boxed();
            Ok(response)
        }
        .boxed()
    }
}

#[tokio::test]
async fn a_fill_that_panics_removes_its_spool() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let object = random_bytes(len, 5);
    let origin = Gated::start(object.clone(), None).await;
    let panicky = Arc::new(Panicky {
        inner: HttpOrigin::new(&origin.url).unwrap(),
        at: (len / 2) as u64,
    });
    let app = app_with(panicky, Arc::new(InMemory::new()), None, |r| r, |l| l).await;
    let client = client();
    let leader = start_get(&client, &app.at("p.bin"), None);
    origin.allow(len / 4);
    origin.sent_at_least(len / 4).await;
    let mut joiner = start_get(&client, &app.at("p.bin"), None);
    assert!(joiner.first_byte().await);
    origin.allow(len);
    assert!(leader.got().await.body.is_err());
    assert!(joiner.got().await.body.is_err());
    app.spools_gone().await;
}

/// Shutdown cancels a fill held mid-object: its spool reader gets an error, the spool is
/// gone.
#[tokio::test]
async fn shutdown_removes_the_spool() {
    let _serial = SERIAL.read().await;
    let len = 2 * MIB;
    let object = random_bytes(len, 6);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let client = client();
    let leader = start_get(&client, &app.at("s.bin"), None);
    origin.allow(len / 4);
    origin.sent_at_least(len / 4).await;
    let mut joiner = start_get(&client, &app.at("s.bin"), None);
    assert!(joiner.first_byte().await);
    let report = app.layer.handle().shutdown(Duration::ZERO).await;
    assert_eq!(report.aborted, 1);
    assert!(leader.got().await.body.is_err());
    assert!(joiner.got().await.body.is_err());
    app.spools_gone().await;
}

/// A fill whose runtime shuts down (the task is dropped, not run to its end): its spool
/// file is closed with it.
#[test]
fn a_fill_whose_runtime_shuts_down_removes_its_spool() {
    let len = 2 * MIB;
    let object = random_bytes(len, 8);
    let main = tokio::runtime::Runtime::new().unwrap();
    let _serial = main.block_on(SERIAL.read());
    let origin = main.block_on(Gated::start(object.clone(), None));
    let fill_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (app, joiner) = fill_rt.block_on(async {
        let app = app(&origin.url, |r| r, |l| l).await;
        let client = client();
        let _leader = start_get(&client, &app.at("rt.bin"), None);
        origin.allow(len / 4);
        origin.sent_at_least(len / 4).await;
        let mut joiner = start_get(&client, &app.at("rt.bin"), None);
        assert!(joiner.first_byte().await);
        assert!(app.open_spools() >= 1);
        (app, joiner)
    });
    fill_rt.shutdown_timeout(Duration::from_secs(5));
    drop(joiner);
    assert!(
        main.block_on(eventually(Duration::from_secs(10), || async {
            app.open_spools() == 0
        })),
        "the spool closed with its runtime"
    );
}

// ----- the disk bound -----

/// A fill that reaches `spool_max_bytes` stops spooling (counted); a late joiner reads what
/// is spooled, then the rest from the store after the commit: the right bytes.
#[tokio::test]
async fn spool_max_bytes_reached_falls_back_and_counts() {
    let _serial = SERIAL.read().await;
    let len = MIB;
    let object = random_bytes(len, 9);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l.spool_max_bytes(256 * KIB as u64)).await;
    let client = client();
    let leader = start_get(&client, &app.at("m.bin"), None);
    origin.allow(len / 2);
    origin.sent_at_least(len / 2).await;
    let handle = app.layer.handle();
    assert!(
        eventually(Duration::from_secs(20), || async {
            handle.spool_stats().fallback_full == 1
        })
        .await,
        "the bound was reached (once)"
    );
    let mut joiner = start_get(&client, &app.at("m.bin"), None);
    assert!(joiner.first_byte().await, "what is spooled streams at once");
    let stats = handle.spool_stats();
    assert_eq!(stats.fallback_full, 1, "the bound was reached once");
    assert!(stats.bytes_now <= 256 * KIB as u64);
    origin.allow(len);
    assert!(leader.got().await.body() == &object[..]);
    assert!(
        joiner.got().await.body() == &object[..],
        "the rest from the store"
    );
    assert_eq!(origin.whole.load(Ordering::Relaxed), 1);
    app.spools_gone().await;
}

/// A spool directory that cannot be created (its parent is a file): the fill goes on
/// without a spool (counted in `fallback_error`) and every reader gets the object.
#[tokio::test]
async fn a_spool_that_cannot_be_created_is_counted_and_the_fill_goes_on() {
    let _serial = SERIAL.read().await;
    let len = MIB;
    let object = random_bytes(len, 15);
    let origin = Gated::start(object.clone(), None).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let app = app(
        &origin.url,
        |r| r,
        |l| l.spool_dir(file.path().join("spools")),
    )
    .await;
    let client = client();
    let leader = start_get(&client, &app.at("e.bin"), None);
    origin.allow(len / 2);
    origin.sent_at_least(len / 2).await;
    let joiner = start_get(&client, &app.at("e.bin"), None);
    origin.allow(len);
    assert!(leader.got().await.body() == &object[..]);
    assert!(
        joiner.got().await.body() == &object[..],
        "from the store after the commit"
    );
    let stats = app.layer.handle().spool_stats();
    assert_eq!((stats.spooled_fills, stats.fallback_error), (0, 1));
}

/// `spool_max_bytes(0)` turns spooling off: a late joiner waits for the commit, as before.
#[tokio::test]
async fn no_spool_when_the_bound_is_zero() {
    let _serial = SERIAL.read().await;
    let len = MIB;
    let object = random_bytes(len, 10);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l.spool_max_bytes(0)).await;
    let client = client();
    let leader = start_get(&client, &app.at("z.bin"), None);
    origin.allow(len / 2);
    origin.sent_at_least(len / 2).await;
    let mut joiner = start_get(&client, &app.at("z.bin"), None);
    assert!(
        (&mut joiner.first).now_or_never().is_none(),
        "no byte before the commit"
    );
    origin.allow(len);
    assert!(leader.got().await.body() == &object[..]);
    assert!(joiner.got().await.body() == &object[..]);
    assert_eq!(app.layer.handle().spool_stats().spooled_fills, 0);
    assert_eq!(app.open_spools(), 0);
}

// ----- crash hygiene -----

/// A pid that is no process's any more.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// The first spool of a process removes the spool directories of processes that are gone
/// (`kill -9` leaves at most that: spool files are unlinked as soon as they are created)
/// and leaves a live process's directory alone.
#[tokio::test]
async fn a_dead_processs_spool_directory_is_swept_and_a_live_ones_kept() {
    let _serial = SERIAL.read().await;
    let object = random_bytes(MIB, 11);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l).await;
    let dead = app
        .spool_dir
        .path()
        .join(format!("tower-origin-pull-{}", dead_pid()));
    let live = app.spool_dir.path().join("tower-origin-pull-1");
    for dir in [&dead, &live] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("0.spool"), b"left behind").unwrap();
    }
    origin.allow(object.len());
    assert!(get(&client(), &app.at("c.bin")).await.body() == &object[..]);
    assert!(!dead.exists(), "a dead process's spools are swept");
    assert!(live.join("0.spool").exists(), "a live process's are kept");
    let mine: PathBuf = app
        .spool_dir
        .path()
        .join(format!("tower-origin-pull-{}", std::process::id()));
    assert!(mine.is_dir());
    assert_eq!(
        std::fs::read_dir(&mine).unwrap().count(),
        0,
        "spools have no name"
    );
}

// ----- memory -----

/// 10 readers join a 48 MiB fill late (all from the spool, at different offsets, while the
/// object streams): the heap grows by at most the stated bound — the window, the store's
/// buffers, 128 KiB per spool reader, the connections — not by the object.
#[tokio::test]
async fn peak_heap_stays_within_the_window_plus_a_buffer_per_reader() {
    let _serial = SERIAL.write().await;
    let len = 48 * MIB;
    let object = random_bytes(len, 12);
    let origin = Gated::start(object.clone(), None).await;
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir.path()).unwrap());
    let origin_arc: Arc<dyn Origin> = Arc::new(HttpOrigin::new(&origin.url).unwrap());
    let app = app_with(origin_arc, store, Some(store_dir), |r| r, |l| l).await;
    let client = client();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let readers = 10;
    let (_, leader) = start_checked_get(&client, &app.at("mem.bin"), object.clone());
    let mut all = vec![leader];
    for i in 1..=readers {
        let at = len * i / (readers + 2);
        origin.allow(at);
        origin.sent_at_least(at).await;
        let (first, late) = start_checked_get(&client, &app.at("mem.bin"), object.clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(20), first)
                .await
                .is_ok_and(|r| r.is_ok()),
            "reader {i} streams before the gate opens"
        );
        all.push(late);
    }
    origin.allow(len);
    for reader in all {
        assert_eq!(reader.await.unwrap(), Ok(true), "every body is the object");
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    // The stated bound (ARCHITECTURE.md, invariant 5): the window (64 KiB) + one chunk +
    // the store's buffers (256 KiB parts × 2) + 11 readers × 128 KiB of spool buffer +
    // 12 connections × 512 KiB on each end (server and client are both in this process)
    // + 4 MiB. Buffering the object would be 48 MiB.
    let conns = readers + 2;
    let bound = 64 * KIB
        + 64 * KIB
        + 512 * KIB
        + (readers + 1) * 128 * KIB
        + 2 * conns * 512 * KIB
        + 4 * MIB;
    eprintln!("peak heap growth: {peak} bytes (bound {bound}) for a {len}-byte object");
    assert!(peak <= bound, "peak heap growth {peak} > {bound}");
    app.spools_gone().await;
}

// ----- configuration -----

/// `on_range = "join_fill"` with `on_range_max_wait`, `spool_dir` and `spool_max_bytes` from
/// a configuration file: a cold range joins the fill it starts and the fill spools in the
/// configured directory. `on_range_max_wait` with another `on_range` is refused at its
/// location.
#[tokio::test]
async fn join_fill_and_the_spool_from_configuration() {
    use tower_origin_pull::config::Config;
    let _serial = SERIAL.read().await;
    let len = MIB;
    let object = random_bytes(len, 13);
    let origin = Gated::start(object.clone(), None).await;
    let spool_dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "coalesce_window = \"64KiB\"\nspool_dir = {:?}\nspool_max_bytes = \"64MiB\"\n\
         [store]\nurl = \"memory://\"\n[[rules]]\non_range = \"join_fill\"\n\
         on_range_max_wait = \"10s\"\norigin = {{ hosts = [\"{}\"] }}\n",
        spool_dir.path().display().to_string(),
        origin.url
    );
    let config = Config::from_toml(&toml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let layer = OriginPullLayer::from_config(&config).unwrap();
    let inner = store_service(Arc::new(InMemory::new()));
    let addr = serve(inner.layer(layer.clone())).await;
    let client = client();
    let url = format!("http://{addr}/cfg.bin");
    let leader = start_get(&client, &url, None);
    origin.allow(len / 2);
    origin.sent_at_least(len / 2).await;
    // The origin's bytes may sit in the socket while the fill still creates its spool.
    assert!(
        eventually(Duration::from_secs(20), || async {
            open_files_under(spool_dir.path()) >= 1
        })
        .await,
        "spooled where configured"
    );
    let mut ranged = start_get(&client, &url, Some("bytes=1000-1999".to_owned()));
    assert!(ranged.first_byte().await);
    origin.allow(len);
    assert!(ranged.got().await.body() == &object[1000..2000]);
    assert!(leader.got().await.body() == &object[..]);
    assert_eq!(layer.handle().spool_stats().ranges_joined, 1);

    let wrong = Config::from_toml(
        "[store]\nurl = \"memory://\"\n[[rules]]\non_range = \"proxy_range\"\n\
         on_range_max_wait = \"1s\"\norigin = { hosts = [\"http://h/\"] }\n",
    )
    .unwrap();
    let at: Vec<String> = wrong.validate().into_iter().map(|p| p.at).collect();
    assert_eq!(at, vec!["rules[0].on_range_max_wait".to_owned()]);
}

/// `kill -9` of a process in the middle of a spooled fill: its spool file had no name to
/// leave (the kernel frees it with the process), only its empty `tower-origin-pull-<pid>`
/// directory is left, and the next process's first spool removes it.
///
/// The killed process is this test binary run again as a child (`SPOOL_KILL_CHILD` names
/// the spool directory): it starts a fill held mid-object, prints `ready` once its spool
/// is open, and waits to be killed.
#[tokio::test]
async fn after_kill_9_nothing_is_left_that_the_next_start_does_not_sweep() {
    let _serial = SERIAL.read().await;
    if let Ok(dir) = std::env::var("SPOOL_KILL_CHILD") {
        let origin = Gated::start(random_bytes(MIB, 16), None).await;
        let app = app(&origin.url, |r| r, |l| l.spool_dir(&dir)).await;
        let _held = start_get(&client(), &app.at("k.bin"), None);
        origin.allow(MIB / 2);
        origin.sent_at_least(MIB / 2).await;
        assert!(
            eventually(Duration::from_secs(20), || async {
                open_files_under(Path::new(&dir)) >= 1
            })
            .await
        );
        println!("ready");
        std::future::pending::<()>().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "after_kill_9_nothing_is_left_that_the_next_start_does_not_sweep",
            "--nocapture",
        ])
        .env("SPOOL_KILL_CHILD", dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the child reached its spooled fill");
    let left = dir.path().join(format!("tower-origin-pull-{pid}"));
    assert!(left.is_dir());
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    assert_eq!(
        std::fs::read_dir(&left).unwrap().count(),
        0,
        "no spool file has a name"
    );
    // The next start: its first spool sweeps the dead process's directory.
    let object = random_bytes(MIB, 17);
    let origin = Gated::start(object.clone(), None).await;
    let app = app(&origin.url, |r| r, |l| l.spool_dir(dir.path())).await;
    origin.allow(MIB);
    assert!(get(&client(), &app.at("n.bin")).await.body() == &object[..]);
    assert!(!left.exists(), "swept");
}
