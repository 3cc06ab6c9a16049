//! A misbehaving origin for the reliability suite, and what the fault tests share: the
//! backends (memory, local disk, S3) with their leftover checks, a store wrapper that counts
//! writes, and a counter of inner-service misses (to know when coalesced requests have all
//! joined a fill).
//!
//! [`FaultyOrigin`] is a real HTTP/1.1 server on a loopback address, written on raw TCP so
//! that it can say what no well-behaved server would: short or cut bodies, resets, stalls,
//! wrong lengths, garbage status lines, invalid header bytes, huge header sections, redirect
//! loops. Each path has an object and a [`Fault`]; `heal` makes the path answer correctly
//! (honouring a single closed `Range`).
//! It records every request (target, `Host`, the raw head) and every accepted connection, so
//! tests can also prove that nothing was asked of it at all.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Step, staging_files};

/// How long a stalled origin keeps its connection open without sending anything.
const STALL: Duration = Duration::from_secs(60);

/// One way for an origin to misbehave. Scripts are built from the path's object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A bare `status` (500, 502, 503) with an error page the client must never see.
    Status(u16),
    /// `302` to the very URL that was requested.
    RedirectLoop,
    /// `302` to this absolute URL (another host).
    RedirectTo(String),
    /// A status line that does not parse.
    GarbageStatusLine,
    /// A NUL byte in a header value.
    InvalidHeaderBytes,
    /// 2 MiB of response headers.
    HugeHeaders,
    /// Reads the request and never answers.
    NoHeaders,
    /// Resets the connection before answering.
    ResetBeforeHead,
    /// `Content-Length: n`, sends half, closes cleanly.
    ShortBody,
    /// `Content-Length: n + 1`, sends all n bytes, closes cleanly.
    LengthPlusOne,
    /// `Content-Length: n - 10`, sends all n bytes: indistinguishable from a complete answer
    /// of n - 10 bytes (HTTP framing says the object is that long).
    LengthShorter,
    /// Chunked; every data chunk is sent but not the final `0` chunk, then the connection
    /// closes cleanly.
    ChunkedCut,
    /// Chunked; a chunk-size line that is not hex arrives mid-body.
    BadChunk,
    /// Sends half the body, then resets the connection.
    ResetMidBody,
    /// Sends half the body, then nothing for [`STALL`] (the origin's idle timeout fires).
    StallAfterHalf,
    /// Healthy but slow: the body in `piece`-byte writes with `pause` between them.
    SlowDrip { piece: usize, pause: Duration },
    /// The right body with a `Content-MD5` that does not match it.
    Md5Mismatch,
}

/// What a client of a fill hit by a fault must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A clean `502` before any body byte; nothing stored.
    BadGateway,
    /// A `200` whose body ends in an error (never cleanly); nothing stored.
    BodyError,
    /// The first `n` bytes of the object, cleanly, and exactly those stored.
    Complete(usize),
}

impl Fault {
    /// A short name for messages.
    pub fn name(&self) -> String {
        match self {
            Fault::Status(code) => format!("status {code}"),
            Fault::RedirectTo(_) => "redirect to a foreign host".to_owned(),
            other => format!("{other:?}"),
        }
    }

    /// What the client gets for an object of `len` bytes (today's behaviour).
    pub fn expect(&self, len: usize) -> Expect {
        match self {
            Fault::Status(_)
            | Fault::RedirectLoop
            | Fault::RedirectTo(_)
            | Fault::GarbageStatusLine
            | Fault::InvalidHeaderBytes
            | Fault::HugeHeaders
            | Fault::NoHeaders
            | Fault::ResetBeforeHead => Expect::BadGateway,
            Fault::ShortBody
            | Fault::LengthPlusOne
            | Fault::ChunkedCut
            | Fault::BadChunk
            | Fault::ResetMidBody
            | Fault::StallAfterHalf
            | Fault::Md5Mismatch => Expect::BodyError,
            Fault::LengthShorter => Expect::Complete(len - 10),
            Fault::SlowDrip { .. } => Expect::Complete(len),
        }
    }

    /// The origin's `(first_byte_timeout, idle_timeout)` for a cell of this fault: short
    /// where the fault is a silence, long elsewhere (so only the fault ends a fill).
    pub fn timeouts(&self) -> (Duration, Duration) {
        match self {
            Fault::NoHeaders => (Duration::from_secs(3), Duration::from_secs(10)),
            Fault::StallAfterHalf => (Duration::from_secs(10), Duration::from_millis(300)),
            _ => (Duration::from_secs(10), Duration::from_secs(10)),
        }
    }

    /// The raw answer to a request for `target` on the origin at `origin` (`http://host:port`).
    pub fn script(&self, object: &Bytes, origin: &str, target: &str) -> Vec<Step> {
        let n = object.len();
        let half = n / 2;
        let head = |extra: &str, len: usize| -> Step {
            Step::Write(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
                )
                .into(),
            )
        };
        let chunked = Step::Write(Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        ));
        let redirect = |location: &str| {
            Step::Write(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .into(),
            )
        };
        match self {
            Fault::Status(code) => {
                let page = "origin secret error page";
                vec![Step::Write(
                    format!(
                        "HTTP/1.1 {code} Origin Trouble\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    )
                    .into(),
                )]
            }
            Fault::RedirectLoop => vec![redirect(&format!("{origin}{target}"))],
            Fault::RedirectTo(url) => vec![redirect(url)],
            Fault::GarbageStatusLine => vec![Step::Write(Bytes::from_static(
                b"HTTP/1.1 OK 200\r\nContent-Length: 5\r\n\r\nhello",
            ))],
            Fault::InvalidHeaderBytes => {
                vec![head("X-Bad: a\0b\r\n", n), Step::Write(object.clone())]
            }
            Fault::HugeHeaders => {
                let mut h = String::from("HTTP/1.1 200 OK\r\n");
                for i in 0..2048 {
                    h.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(1024)));
                }
                h.push_str(&format!("Content-Length: {n}\r\nConnection: close\r\n\r\n"));
                vec![Step::Write(h.into()), Step::Write(object.clone())]
            }
            Fault::NoHeaders => vec![Step::Sleep(STALL)],
            Fault::ResetBeforeHead => vec![Step::Reset],
            Fault::ShortBody => vec![head("", n), Step::Write(object.slice(..half))],
            Fault::LengthPlusOne => vec![head("", n + 1), Step::Write(object.clone())],
            Fault::LengthShorter => vec![head("", n - 10), Step::Write(object.clone())],
            Fault::ChunkedCut => vec![
                chunked,
                Step::Write(chunk(&object.slice(..half))),
                Step::Write(chunk(&object.slice(half..))),
            ],
            Fault::BadChunk => vec![
                chunked,
                Step::Write(chunk(&object.slice(..half))),
                Step::Write(Bytes::from_static(b"zz\r\nnot a chunk\r\n")),
            ],
            Fault::ResetMidBody => vec![
                head("", n),
                Step::Write(object.slice(..half)),
                Step::Sleep(Duration::from_millis(50)),
                Step::Reset,
            ],
            Fault::StallAfterHalf => vec![
                head("", n),
                Step::Write(object.slice(..half)),
                Step::Sleep(STALL),
            ],
            Fault::SlowDrip { piece, pause } => {
                let mut steps = vec![head("", n)];
                for (i, start) in (0..n).step_by((*piece).max(1)).enumerate() {
                    if i > 0 {
                        steps.push(Step::Sleep(*pause));
                    }
                    steps.push(Step::Write(object.slice(start..(start + piece).min(n))));
                }
                steps
            }
            // Sixteen zero bytes in base64: not the MD5 of any object used here.
            Fault::Md5Mismatch => vec![
                head("Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==\r\n", n),
                Step::Write(object.clone()),
            ],
        }
    }
}

/// One HTTP/1.1 chunk.
fn chunk(data: &Bytes) -> Bytes {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out.into()
}

/// A healthy answer: the object with its length, then close.
pub fn healthy(object: &Bytes) -> Vec<Step> {
    vec![
        Step::Write(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                object.len()
            )
            .into(),
        ),
        Step::Write(object.clone()),
    ]
}

/// `Range: bytes=a-b` (one closed range inside an object of `len` bytes), if the head has one.
fn single_range(head: &str, len: usize) -> Option<(usize, usize)> {
    let value = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("range").then(|| value.trim())
    })?;
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && b < len).then_some((a, b))
}

/// A `206` for bytes `a..=b`.
fn partial(object: &Bytes, a: usize, b: usize) -> Vec<Step> {
    vec![
        Step::Write(
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                object.len(),
                b - a + 1
            )
            .into(),
        ),
        Step::Write(object.slice(a..=b)),
    ]
}

fn not_found() -> Vec<Step> {
    vec![Step::Write(Bytes::from_static(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ))]
}

/// A request as the origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request target, exactly as sent (`/a%20b?x=1`).
    pub target: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The whole request head, lossily decoded.
    pub head: String,
}

enum Answer {
    Healthy,
    Faulty(Fault),
    /// Each request is faulty with probability `percent`/100 (decided by a hash of the
    /// seed, the path and the request's number), with a fault drawn from `faults`.
    Flaky {
        percent: u64,
        faults: Vec<Fault>,
        seed: u64,
    },
}

struct Route {
    object: Bytes,
    answer: Answer,
    gate: Option<watch::Receiver<bool>>,
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    per_path: Mutex<HashMap<String, usize>>,
    connections: AtomicUsize,
    injected: AtomicU64,
}

/// Holds requests for a path at the origin until opened.
pub struct Gate(watch::Sender<bool>);

impl Gate {
    pub fn open(&self) {
        let _ = self.0.send(true);
    }
}

/// The scriptable misbehaving origin.
#[derive(Clone)]
pub struct FaultyOrigin {
    /// `http://host:port/`.
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl fmt::Debug for FaultyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyOrigin")
            .field("url", &self.url)
            .finish()
    }
}

impl FaultyOrigin {
    /// An origin on 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// An origin on another loopback address (`127.0.0.2`: another host as far as URLs go).
    pub async fn start_on(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let origin = format!("http://{addr}");
        let state = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(socket, state.clone(), origin.clone()));
            }
        });
        Self {
            url: format!("http://{addr}/"),
            addr,
            shared,
        }
    }

    /// `host:port`, as the `Host` header of a request to it must read.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    fn set(&self, path: &str, object: Bytes, answer: Answer) {
        self.shared.routes.lock().unwrap().insert(
            format!("/{path}"),
            Route {
                object,
                answer,
                gate: None,
            },
        );
    }

    /// `path` (no leading `/`, as requested: percent-encoded) answers `object` correctly.
    pub fn object(&self, path: &str, object: Bytes) {
        self.set(path, object, Answer::Healthy);
    }

    /// `path` misbehaves with `fault` until healed.
    pub fn fault(&self, path: &str, object: Bytes, fault: Fault) {
        self.set(path, object, Answer::Faulty(fault));
    }

    /// `path` misbehaves for `percent` % of its requests, with one of `faults`.
    pub fn flaky(&self, path: &str, object: Bytes, percent: u64, faults: Vec<Fault>, seed: u64) {
        self.set(
            path,
            object,
            Answer::Flaky {
                percent,
                faults,
                seed,
            },
        );
    }

    /// `path` answers correctly from now on (the gate, if any, is dropped).
    pub fn heal(&self, path: &str) {
        if let Some(route) = self
            .shared
            .routes
            .lock()
            .unwrap()
            .get_mut(&format!("/{path}"))
        {
            route.answer = Answer::Healthy;
            route.gate = None;
        }
    }

    /// Requests for `path` wait (after being counted) until the gate opens.
    pub fn hold(&self, path: &str) -> Gate {
        let (tx, rx) = watch::channel(false);
        let mut routes = self.shared.routes.lock().unwrap();
        let route = routes
            .get_mut(&format!("/{path}"))
            .expect("hold a known path");
        route.gate = Some(rx);
        Gate(tx)
    }

    /// Requests seen for `path` (without the query string).
    pub fn requests(&self, path: &str) -> usize {
        self.shared
            .per_path
            .lock()
            .unwrap()
            .get(&format!("/{path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Every request seen.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn total_requests(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    /// TCP connections accepted (a connection that never sent a request counts too).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Faulty answers given by flaky paths.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Read one request head, record it, wait at the gate, play the path's script, close.
async fn answer(mut socket: TcpStream, shared: Arc<Shared>, origin: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 1 << 20 {
            return;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head
        .split("\r\n")
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let host = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host")
            .then(|| value.trim().to_owned())
    });
    let path = target.split('?').next().unwrap_or("").to_owned();
    let n = {
        let mut per_path = shared.per_path.lock().unwrap();
        let n = per_path.entry(path.clone()).or_default();
        *n += 1;
        *n - 1
    };
    shared.seen.lock().unwrap().push(Seen {
        target: target.clone(),
        host,
        head: head.clone(),
    });
    let (script, gate) = {
        let routes = shared.routes.lock().unwrap();
        match routes.get(&path) {
            None => (not_found(), None),
            Some(route) => {
                let script = match &route.answer {
                    Answer::Healthy => match single_range(&head, route.object.len()) {
                        Some((a, b)) => partial(&route.object, a, b),
                        None => healthy(&route.object),
                    },
                    Answer::Faulty(fault) => fault.script(&route.object, &origin, &target),
                    Answer::Flaky {
                        percent,
                        faults,
                        seed,
                    } => {
                        let roll = mix(seed ^ hash_str(&path) ^ mix(n as u64));
                        if roll % 100 < *percent && !faults.is_empty() {
                            shared.injected.fetch_add(1, Ordering::SeqCst);
                            let fault = &faults[(roll / 100) as usize % faults.len()];
                            fault.script(&route.object, &origin, &target)
                        } else {
                            healthy(&route.object)
                        }
                    }
                };
                (script, route.gate.clone())
            }
        }
    };
    if let Some(mut gate) = gate {
        let _ = gate.wait_for(|open| *open).await;
    }
    super::play(socket, script).await;
}

// ----- backends -----

/// The store backends of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Local,
    #[cfg(feature = "aws")]
    S3,
}

/// Lists what an S3 server keeps of unfinished uploads (and keeps the server alive).
pub type OpenUploads = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// A store backend and what is needed to see its leftovers.
pub struct Backend {
    pub kind: Kind,
    pub store: Arc<dyn ObjectStore>,
    pub dir: Option<TempDir>,
    pub open_uploads: Option<OpenUploads>,
}

impl Backend {
    /// `InMemory` or `LocalFileSystem` in a temp dir. (An S3 backend comes from
    /// [`Backend::s3`]: the test binary includes `common/s3.rs` itself.)
    pub async fn new(kind: Kind) -> Self {
        let (store, dir): (Arc<dyn ObjectStore>, _) = match kind {
            Kind::Memory => (Arc::new(InMemory::new()), None),
            Kind::Local => {
                let dir = tempfile::tempdir().unwrap();
                let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
                (Arc::new(fs), Some(dir))
            }
            #[cfg(feature = "aws")]
            Kind::S3 => panic!("use Backend::s3 with the binary's S3 server"),
        };
        Self {
            kind,
            store,
            dir,
            open_uploads: None,
        }
    }

    /// An S3 backend: its store, and how to list its open uploads.
    #[cfg(feature = "aws")]
    pub fn s3(store: Arc<dyn ObjectStore>, open_uploads: OpenUploads) -> Self {
        Self {
            kind: Kind::S3,
            store,
            dir: None,
            open_uploads: Some(open_uploads),
        }
    }

    /// The smallest multipart part the backend takes (S3: 5 MiB; the others: anything, so
    /// small parts keep multipart tests small).
    pub fn part_size(&self, small: usize) -> usize {
        match self.kind {
            #[cfg(feature = "aws")]
            Kind::S3 => 5 * 1024 * 1024,
            _ => small,
        }
    }

    /// What writes left outside the visible objects: `LocalFileSystem` staging files
    /// (`name#N`), open S3 multipart uploads and their parts.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = self
            .dir
            .as_ref()
            .map(|d| staging_files(d.path()))
            .unwrap_or_default();
        if let Some(open_uploads) = &self.open_uploads {
            out.extend(open_uploads());
        }
        out
    }

    /// Wait (up to 5 s: an abort may be spawned from a `Drop`) until no leftovers remain;
    /// returns what is still there.
    pub async fn settled_leftovers(&self) -> Vec<String> {
        for _ in 0..100 {
            let left = self.leftovers();
            if left.is_empty() {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.leftovers()
    }
}

pub const KINDS: &[Kind] = &[
    Kind::Memory,
    Kind::Local,
    #[cfg(feature = "aws")]
    Kind::S3,
];

// ----- a store that counts writes -----

/// An `ObjectStore` that forwards everything and counts the calls that write, and reads.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    writes: AtomicUsize,
    reads: AtomicUsize,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            writes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        })
    }

    /// `get_opts` calls so far (object reads and metadata looks).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// `put_opts` and `put_multipart_opts` calls so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

// ----- inner-service misses -----

/// Counts, per request path, the inner service's `404`s. The layer joins (or starts) a fill
/// in the same poll in which it sees the inner `404`, so once `n` misses are counted, `n`
/// requests are attached to fills (give it a moment for the last poll to finish).
#[derive(Clone, Default)]
pub struct Misses(Arc<Mutex<HashMap<String, usize>>>);

impl Misses {
    pub fn get(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .get(&format!("/{path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Wrap `inner` (a router) so that its `404`s are counted.
    pub fn count(&self, inner: axum::Router) -> axum::Router {
        let misses = self.0.clone();
        inner.layer(middleware::from_fn(move |req: Request, next: Next| {
            let misses = misses.clone();
            async move {
                let path = req.uri().path().to_owned();
                let res: Response<Body> = next.run(req).await;
                if res.status() == http::StatusCode::NOT_FOUND {
                    *misses.lock().unwrap().entry(path).or_default() += 1;
                }
                res
            }
        }))
    }

    /// Wait until `path` has `n` misses (10 s at most).
    pub async fn wait_for(&self, path: &str, n: usize) {
        let ok = super::eventually(Duration::from_secs(10), || async { self.get(path) >= n }).await;
        assert!(
            ok,
            "{path}: only {} of {n} requests arrived",
            self.get(path)
        );
        // The join happens in the poll that saw the 404; let those polls finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send `raw` (a whole request head, and body if any) to `addr` and read the answer until
/// the server closes (5 s at most). Returns the status code (0 if none parsed) and the raw
/// response.
pub async fn raw_request(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    if socket.write_all(raw).await.is_err() {
        // The server may refuse early (a huge head): read what it said.
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out)).await;
    let status = std::str::from_utf8(out.get(..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

// ----- clients and events -----

/// A response read frame by frame: the bytes that arrived, and how the body ended.
pub struct Fetched {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub bytes: Vec<u8>,
    /// `None`: the body ended cleanly; `Some(why)`: it ended in an error.
    pub error: Option<String>,
}

impl Fetched {
    pub fn outcome(&self) -> Option<&str> {
        self.headers
            .get("x-origin-pull")
            .map(|v| v.to_str().unwrap())
    }
}

/// GET `url`, keeping the bytes that arrived before any body error.
pub async fn fetch(client: &super::HttpClient, url: &str) -> Fetched {
    use http_body_util::BodyExt;
    let req = http::Request::get(url)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let (parts, mut body) = res.into_parts();
    let mut bytes = Vec::new();
    let error = loop {
        match body.frame().await {
            None => break None,
            Some(Err(e)) => break Some(format!("{e:?}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
        }
    };
    Fetched {
        status: parts.status,
        headers: parts.headers,
        bytes,
        error,
    }
}

/// Every event of a layer, collected in the background.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<tower_origin_pull::FillEvent>>>);

impl EventLog {
    pub fn spawn(layer: &tower_origin_pull::OriginPullLayer) -> Self {
        let log = Self::default();
        let mut rx = layer.handle().subscribe();
        let sink = log.0.clone();
        tokio::spawn(async move {
            while let Ok(event) = rx.recv().await {
                sink.lock().unwrap().push(event);
            }
        });
        log
    }

    pub fn count(&self, key: &str, kind: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.key() == key && e.kind() == kind)
            .count()
    }

    /// The `n`-th (from 1) event that ended a fill of `key` (completed, failed, not found);
    /// waits up to 20 s for it.
    pub async fn ended(&self, key: &str, n: usize) -> tower_origin_pull::FillEvent {
        let find = || {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.key() == key && e.kind() != "started")
                .nth(n - 1)
                .cloned()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(event) = find() {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key}: fill #{n} did not end within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
