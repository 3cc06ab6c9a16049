//! Test helpers: real origins on 127.0.0.1:0 (a well-behaved one and a raw fault-scripted
//! one), a small store-serving inner service, an HTTP client and store inspections.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub mod faulty;
pub mod heap;
pub mod tools;

/// The mirror example's binary, built with the running test's features if it is not there
/// yet (`cargo test --test <name>` alone does not build examples).
pub fn mirror_binary() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test>-HASH → target/<profile>/examples/mirror
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap();
            let binary = profile_dir.join("examples/mirror");
            let mut features = Vec::new();
            for (on, name) in [
                (cfg!(feature = "rustls"), "rustls"),
                (cfg!(feature = "aws"), "aws"),
                (cfg!(feature = "config"), "config"),
                (cfg!(feature = "metrics"), "metrics"),
                (cfg!(feature = "prometheus"), "prometheus"),
                (cfg!(feature = "monitor"), "monitor"),
                (cfg!(feature = "server"), "server"),
            ] {
                if on {
                    features.push(name);
                }
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = std::process::Command::new(cargo);
            build
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--example", "mirror", "--no-default-features"])
                .arg("--features")
                .arg(features.join(","));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo build --example mirror");
            assert!(status.success(), "cargo build --example mirror failed");
            assert!(binary.exists(), "{} missing", binary.display());
            binary
        })
        .clone()
}

/// What the well-behaved origin does for a path.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with Content-Length and the given extra headers.
    Object {
        body: Bytes,
        headers: Vec<(&'static str, &'static str)>,
    },
    /// 200 without Content-Length (chunked), chunks sent with `pause` between them.
    Chunked { chunks: Vec<Bytes>, pause: Duration },
    /// A bare status with a body the client must never see.
    Status(u16),
    /// 404, after a delay (to make concurrent misses overlap).
    SlowMissing(Duration),
}

/// A real HTTP origin (axum on 127.0.0.1:0) that counts requests per path.
#[derive(Clone)]
pub struct TestOrigin {
    pub url: String,
    objects: Arc<Mutex<HashMap<String, Behaviour>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl TestOrigin {
    pub async fn start() -> Self {
        let objects: Arc<Mutex<HashMap<String, Behaviour>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let app = Router::new()
            .fallback(origin_handler)
            .with_state((objects.clone(), hits.clone()));
        let addr = serve(app).await;
        Self {
            url: format!("http://{addr}/"),
            objects,
            hits,
        }
    }

    pub fn put(&self, path: &str, behaviour: Behaviour) {
        self.objects
            .lock()
            .unwrap()
            .insert(format!("/{path}"), behaviour);
    }

    pub fn object(&self, path: &str, body: impl Into<Bytes>) {
        self.put(
            path,
            Behaviour::Object {
                body: body.into(),
                headers: vec![],
            },
        );
    }

    /// GET requests seen for `path` (as requested, percent-encoded).
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(&format!("/{path}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    /// Whether a request with this HTTP version (`"HTTP/2.0"`, ...) was seen.
    pub fn saw_version(&self, version: http::Version) -> bool {
        self.hits
            .lock()
            .unwrap()
            .contains_key(&format!("{version:?}"))
    }
}

type OriginState = (
    Arc<Mutex<HashMap<String, Behaviour>>>,
    Arc<Mutex<HashMap<String, usize>>>,
);

async fn origin_handler(State((objects, hits)): State<OriginState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    // Versions are recorded under a key no path can have (paths start with `/`).
    hits.lock()
        .unwrap()
        .entry(format!("{:?}", req.version()))
        .or_default();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let behaviour = objects.lock().unwrap().get(&path).cloned();
    let mut builder = Response::builder();
    match behaviour {
        None => builder
            .status(404)
            .body(Body::from("origin: no such object"))
            .unwrap(),
        Some(Behaviour::SlowMissing(delay)) => {
            tokio::time::sleep(delay).await;
            builder
                .status(404)
                .body(Body::from("origin: no such object"))
                .unwrap()
        }
        Some(Behaviour::Status(code)) => builder
            .status(code)
            .body(Body::from("origin secret error page"))
            .unwrap(),
        Some(Behaviour::Object { body, headers }) => {
            for (k, v) in headers {
                builder = builder.header(k, v);
            }
            builder.body(Body::from(body)).unwrap()
        }
        Some(Behaviour::Chunked { chunks, pause }) => {
            let stream = futures::stream::iter(chunks.into_iter().enumerate()).then(
                move |(i, chunk)| async move {
                    if i > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    Ok::<_, Infallible>(chunk)
                },
            );
            builder.body(Body::from_stream(stream)).unwrap()
        }
    }
}

/// One step of a raw, scripted HTTP response.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Bytes),
    Sleep(Duration),
    /// Close with a TCP reset (SO_LINGER 0).
    Reset,
}

/// A raw TCP origin: reads one request per connection, plays the script, closes.
pub struct RawOrigin {
    pub url: String,
    pub requests: Arc<Mutex<usize>>,
}

impl RawOrigin {
    pub async fn start(script: Vec<Step>) -> Self {
        Self::start_sequence(vec![script]).await
    }

    /// Request N plays `scripts[N]`, and every request after the last plays the last.
    pub async fn start_sequence(scripts: Vec<Vec<Step>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let scripts = scripts.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let n = {
                        let mut count = count.lock().unwrap();
                        *count += 1;
                        *count - 1
                    };
                    play(socket, scripts[n.min(scripts.len() - 1)].clone()).await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/"),
            requests,
        }
    }

    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

/// Play a script on a connection, then close it (with a RST for [`Step::Reset`]).
pub async fn play(mut socket: tokio::net::TcpStream, script: Vec<Step>) {
    for step in script {
        match step {
            Step::Write(b) => {
                if socket.write_all(&b).await.is_err() {
                    return;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Reset => {
                // A zero linger makes the close a RST, which is the point; the deprecation
                // is about blocking on a non-zero linger.
                #[allow(deprecated)]
                let _ = socket.set_linger(Some(Duration::ZERO));
                drop(socket);
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

/// A raw HTTP/1.1 response head with a Content-Length.
pub fn head_with_length(len: usize) -> Bytes {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into()
}

/// Serve a router on 127.0.0.1:0 in the background.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A minimal store-serving inner service: GET a key → 200 with its bytes, or 404
/// (`not in store`). Stands in for a real object-serving service.
pub fn store_service(store: Arc<dyn ObjectStore>) -> Router {
    Router::new().fallback(move |req: Request| {
        let store = store.clone();
        async move {
            let Some(key) = tower_origin_pull::key::parse(req.uri().path()) else {
                return Response::builder()
                    .status(404)
                    .body(Body::from("not in store"))
                    .unwrap();
            };
            match store.get(&Path::from(key)).await {
                Ok(r) => Response::new(Body::from(r.bytes().await.unwrap())),
                Err(_) => Response::builder()
                    .status(404)
                    .body(Body::from("not in store"))
                    .unwrap(),
            }
        }
    })
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Got {
    pub fn outcome(&self) -> Option<&str> {
        self.headers
            .get("x-origin-pull")
            .map(|v| v.to_str().unwrap())
    }

    pub fn body(&self) -> &[u8] {
        self.body.as_ref().expect("body completed")
    }
}

pub async fn request(client: &HttpClient, method: Method, url: &str) -> Got {
    request_with(client, method, url, &[]).await
}

/// A request with extra headers; the body is collected (or why it broke off).
pub async fn request_with(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e:?}"));
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A GET with extra headers.
pub async fn get_with(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Got {
    request_with(client, Method::GET, url, headers).await
}

/// The whole body of a GET, or why there is none: the request failing before the response
/// head (the server cut the connection) counts as an error like a body that breaks off.
pub async fn body_of(client: &HttpClient, url: &str) -> Result<Bytes, String> {
    let req = http::Request::get(url).body(Empty::new()).unwrap();
    let res = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    res.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e:?}"))
}

pub async fn get(client: &HttpClient, url: &str) -> Got {
    request(client, Method::GET, url).await
}

/// The stored bytes at `key`, if any.
pub async fn stored(store: &dyn ObjectStore, key: &str) -> Option<Bytes> {
    match store
        .get_opts(&Path::from(key), GetOptions::default())
        .await
    {
        Ok(r) => Some(r.bytes().await.unwrap()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("store error: {e}"),
    }
}

/// The attributes the store keeps for `key` (`get_opts` with `head`, since
/// `ObjectStoreExt::head` drops them).
pub async fn stored_attributes(store: &dyn ObjectStore, key: &str) -> object_store::Attributes {
    let options = GetOptions {
        head: true,
        ..Default::default()
    };
    store
        .get_opts(&Path::from(key), options)
        .await
        .unwrap()
        .attributes
}

/// Every object in the store but the metadata kept beside objects on a local disk
/// (`.origin-pull-meta/`, see [`meta_listing`]).
pub async fn listing(store: &dyn ObjectStore) -> Vec<String> {
    let all: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    all.into_iter()
        .filter(|l| !l.starts_with(tower_origin_pull::store::META_PREFIX))
        .collect()
}

/// The metadata files kept beside objects (local disk).
pub async fn meta_listing(store: &dyn ObjectStore) -> Vec<String> {
    let all: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    all.into_iter()
        .filter(|l| l.starts_with(tower_origin_pull::store::META_PREFIX))
        .collect()
}

/// Files under `dir` that look like `LocalFileSystem` staging files (`name#N`).
pub fn staging_files(dir: &FsPath) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().contains('#') {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// Wait until `check` holds, up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A mirror example process: started from a prepared command (its standard error is piped
/// here and read for the `listen=` line), stopped with SIGINT when dropped (killed after
/// 15 s). `MIRROR_LOG=1` echoes its log.
pub struct MirrorProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// The log line that gave the address.
    pub listen_line: String,
}

impl MirrorProcess {
    pub fn spawn(mut cmd: std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MIRROR_LOG").is_some() {
                    eprintln!("mirror: {line}");
                }
                if let Some(at) = line.find("listen=") {
                    let addr: String = line[at + 7..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((addr, line.clone()));
                    }
                }
            }
        });
        let (addr, listen_line) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the mirror did not start");
        Self {
            child,
            addr: addr.parse().unwrap(),
            listen_line,
        }
    }
}

impl Drop for MirrorProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's id.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file below `dir` (not directories), relative to it, sorted.
pub fn files_below(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
