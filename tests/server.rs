//! The hardened server loop (`tower_origin_pull::server`) and the mirror example on it.
//!
//! In process: each setting of `Server` on 127.0.0.1:0 (the connection cap, the idle and
//! header-read timeouts apart, header limits, the send timeout, graceful shutdown, HTTP/2)
//! and the admin token's layer. Against the mirror example's binary (built here with this
//! test's features if needed), the way issue 13's finding 6 and issue 15's burst were
//! found: 300 Slowloris connections (default cap, a cap of 50 with attackers that reconnect,
//! an open-file limit of 200), 1,000 connections opened at once, and the admin token.
//!
//! The tests that measure time run one at a time (`SERIAL`); each prints its figures
//! (`cargo test --all-features --test server -- --nocapture`).

mod common;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower_origin_pull::config::Config;
use tower_origin_pull::server::{AdminToken, Server};

/// The tests that measure time run one at a time, whatever the test threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOKEN: &str = "s3cr3t-admin-token-0123456789";

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Raise this process's soft open-file limit to the hard one; returns the soft limit.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            let before = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                limit.rlim_cur = before;
            }
        }
    }
    #[allow(clippy::useless_conversion)]
    u64::from(limit.rlim_cur)
}

// ---------------------------------------------------------------------------------------
// Helpers: a server in process, raw HTTP/1.1
// ---------------------------------------------------------------------------------------

/// A running in-process server; shut down (gracefully) by `stop`.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(server: Server, app: Router) -> Self {
        let listening = server.listen().unwrap();
        let addr = listening.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            listening
                .serve(app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Send the shutdown signal; the task ends once every connection has.
    fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow"
            }),
        )
        .route(
            "/forever",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
}

fn request(path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n").into_bytes()
}

/// One HTTP/1.1 response (status and body; `Content-Length` bodies only).
async fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}

/// Connect, send one request, read the response.
async fn get_once(addr: SocketAddr, path: &str, headers: &str) -> (u16, Vec<u8>) {
    send_once(addr, "GET", path, headers).await
}

/// Connect, send one bodiless request, read the response.
async fn send_once(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut stream).await.unwrap()
}

/// Read until the server closes the connection (EOF or reset); when it did, or `None` if it
/// did not within `limit`. Data the server sends first is skipped.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------
// The loop, in process
// ---------------------------------------------------------------------------------------

/// Cap 2: two kept-alive connections hold both slots; a third connects (the kernel
/// completes its handshake: it waits in the listen queue) but gets no answer until one of
/// them closes, then at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_connection_waits_in_the_queue_until_a_slot_frees() {
    let _serial = SERIAL.lock().await;
    let server = Server::bind(localhost()).with_max_connections(2);
    let running = Running::start(server, app()).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(running.addr).await.unwrap();
        s.write_all(&request("/ok", false)).await.unwrap();
        assert_eq!(read_response(&mut s).await.unwrap().0, 200);
        holders.push(s);
    }
    let mut third = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(running.addr))
        .await
        .expect("the handshake completes in the listen queue")
        .unwrap();
    third.write_all(&request("/ok", true)).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(700), third.peek(&mut byte)).await;
    assert!(
        early.is_err(),
        "the third connection was served past a cap of 2"
    );
    let freed = Instant::now();
    drop(holders.pop());
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), read_response(&mut third))
        .await
        .expect("served once a slot freed")
        .unwrap();
    let waited = freed.elapsed();
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    println!(
        "cap 2: the 3rd connection got no answer for 700 ms; served {} after a slot freed",
        ms(waited)
    );
    assert!(waited < Duration::from_millis(500), "{waited:?}");
}

/// HTTP/1 keep-alive: a connection idle between requests is kept past the header-read
/// timeout (300 ms) and closed at the idle timeout (1 s); one that begins a head and stalls
/// is closed at the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_closed_at_the_idle_timeout_and_a_stalled_head_at_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let server = Server::bind(localhost())
        .with_header_read_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_secs(1));
    let running = Running::start(server, app()).await;

    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&request("/ok", false)).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(&request("/ok", false)).await.unwrap();
    assert_eq!(
        read_response(&mut s).await.unwrap().0,
        200,
        "a connection idle 600 ms (past the 300 ms header-read timeout) still serves"
    );
    let idle_from = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("closed at the idle timeout");
    let idle = closed - idle_from;
    println!(
        "idle keep-alive closed after {} (idle timeout 1 s)",
        ms(idle)
    );
    assert!(
        idle >= Duration::from_millis(950) && idle < Duration::from_millis(1600),
        "{idle:?}"
    );

    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&request("/ok", false)).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let begun = Instant::now();
    s.write_all(b"GET /ok HT").await.unwrap();
    let closed = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("closed at the header-read timeout");
    let head = closed - begun;
    println!(
        "stalled second head closed after {} (header-read timeout 300 ms)",
        ms(head)
    );
    assert!(
        head >= Duration::from_millis(280) && head < Duration::from_millis(800),
        "{head:?}"
    );

    // A connection that sends nothing at all, and one that stalls in the HTTP/2 preface
    // (before the protocol is known), are closed at the header-read timeout too.
    for first in [&b""[..], &b"PRI * HTTP/2.0\r\n"[..]] {
        let opened = Instant::now();
        let mut s = TcpStream::connect(running.addr).await.unwrap();
        s.write_all(first).await.unwrap();
        let closed = closed_within(&mut s, Duration::from_secs(3))
            .await
            .expect("closed at the header-read timeout");
        let after = closed - opened;
        assert!(after < Duration::from_millis(800), "{first:?}: {after:?}");
    }
}

/// Heads over `max_header_size` (default 64 KiB) and more than 100 header fields get `431`
/// (or, if the client is still writing when hyper answers, a closed connection); the
/// connection is not served further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_heads_get_431() {
    let running = Running::start(Server::bind(localhost()), app()).await;
    let small = Running::start(
        Server::bind(localhost()).with_max_header_size(16 * 1024),
        app(),
    )
    .await;

    async fn send(addr: SocketAddr, extra: &str) -> Option<u16> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /ok HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        match tokio::time::timeout(Duration::from_secs(5), read_response(&mut s)).await {
            Ok(Ok((status, _))) => Some(status),
            Ok(Err(_)) => None,
            Err(_) => panic!("no answer and no close"),
        }
    }

    let big = |n: usize| format!("x-big: {}\r\n", "a".repeat(n));
    assert_eq!(send(running.addr, &big(8 * 1024)).await, Some(200));
    assert_eq!(send(running.addr, &big(60 * 1024)).await, Some(200));
    let over = send(running.addr, &big(100 * 1024)).await;
    assert!(matches!(over, Some(431) | None), "{over:?}");
    assert_eq!(send(small.addr, &big(8 * 1024)).await, Some(200));
    let over_small = send(small.addr, &big(20 * 1024)).await;
    assert!(matches!(over_small, Some(431) | None), "{over_small:?}");
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let fields = send(running.addr, &many).await;
    assert_eq!(fields, Some(431), "101 header fields");
    let fine: String = (0..90).map(|i| format!("x-h{i}: v\r\n")).collect();
    assert_eq!(send(running.addr, &fine).await, Some(200));
    println!(
        "100 KiB head: {over:?}; 20 KiB head over a 16 KiB limit: {over_small:?}; 101 fields: {fields:?}"
    );
}

/// A client that asks for a large body and reads none of it is closed at the send timeout
/// (the response body is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_closed_at_the_send_timeout() {
    let _serial = SERIAL.lock().await;
    let dropped = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = dropped.clone();
    let app = Router::new().route(
        "/endless",
        get(move || {
            let flag = Flag(flag.clone());
            async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let stream = futures::stream::repeat_with(move || {
                    let _hold = &flag;
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                Body::from_stream(stream)
            }
        }),
    );
    let server = Server::bind(localhost()).with_send_timeout(Duration::from_millis(500));
    let running = Running::start(server, app).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&request("/endless", true)).await.unwrap();
    let sent = Instant::now();
    let deadline = sent + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the stalled response was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "a non-reading client's response dropped {} after the request (send timeout 500 ms, \
         plus the time to fill the socket buffers)",
        ms(sent.elapsed())
    );
}

/// Shutdown: the listener closes at once, a request in flight finishes, idle connections
/// close, and a request that never ends is cut at the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight_and_cuts_the_rest_at_the_grace() {
    let _serial = SERIAL.lock().await;
    let server = Server::bind(localhost()).with_shutdown_grace(Duration::from_millis(1500));
    let mut running = Running::start(server, app()).await;
    let mut idle = TcpStream::connect(running.addr).await.unwrap();
    idle.write_all(&request("/ok", false)).await.unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().0, 200);
    let mut slow = TcpStream::connect(running.addr).await.unwrap();
    slow.write_all(&request("/slow", false)).await.unwrap();
    let mut stuck = TcpStream::connect(running.addr).await.unwrap();
    stuck.write_all(&request("/forever", false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let signalled = Instant::now();
    running.signal();
    assert!(
        closed_within(&mut idle, Duration::from_millis(500))
            .await
            .is_some(),
        "an idle connection closes at once"
    );
    let (status, body) = read_response(&mut slow).await.unwrap();
    assert_eq!((status, body.as_slice()), (200, b"slow".as_slice()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "the listener is closed"
    );
    let cut = closed_within(&mut stuck, Duration::from_secs(4))
        .await
        .expect("the stuck request is cut at the grace");
    let after = cut - signalled;
    (&mut running.task).await.unwrap().unwrap();
    println!(
        "shutdown: in-flight request finished, stuck one cut {} after the signal (grace 1.5 s)",
        ms(after)
    );
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_millis(2500),
        "{after:?}"
    );
}

/// HTTP/2 by prior knowledge is served, and an idle HTTP/2 connection is closed at the idle
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_served_and_closed_when_idle() {
    let server = Server::bind(localhost()).with_idle_timeout(Duration::from_millis(500));
    let running = Running::start(server, app()).await;
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(format!("http://{}/ok", running.addr))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    let idle = idle_from.elapsed();
    println!(
        "idle HTTP/2 connection closed after {} (idle timeout 500 ms)",
        ms(idle)
    );
    assert!(idle >= Duration::from_millis(450), "{idle:?}");
}

// ---------------------------------------------------------------------------------------
// The admin token
// ---------------------------------------------------------------------------------------

fn admin_app(token: Option<&AdminToken>) -> Router {
    let admin = Router::new().route("/status", get(|| async { "{\"ok\":true}" }));
    let admin = match token {
        Some(token) => admin.layer(token.layer()),
        None => admin,
    };
    Router::new().nest("/_origin_pull", admin)
}

#[tokio::test]
async fn the_admin_token_layer_answers_401_without_the_bearer_token() {
    let token = AdminToken::new(TOKEN).unwrap();
    let app = admin_app(Some(&token));
    let call = |auth: Option<String>| {
        let app = app.clone();
        async move {
            let mut req = Request::get("/_origin_pull/status");
            if let Some(auth) = auth {
                req = req.header(http::header::AUTHORIZATION, auth);
            }
            app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
        }
    };
    let denied = call(None).await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.headers()[http::header::WWW_AUTHENTICATE],
        "Bearer realm=\"origin-pull\""
    );
    assert_eq!(denied.headers()[http::header::CACHE_CONTROL], "no-store");
    for wrong in [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        assert_eq!(call(Some(wrong.clone())).await.status(), 401, "{wrong:?}");
    }
    for right in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER  {TOKEN} "),
    ] {
        assert_eq!(call(Some(right.clone())).await.status(), 200, "{right:?}");
    }
    let open = admin_app(None)
        .oneshot(
            Request::get("/_origin_pull/status")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(open.status(), 200, "no token: open");
}

#[test]
fn admin_tokens_are_long_visible_ascii_and_never_printed() {
    assert!(AdminToken::new("").is_err());
    assert!(AdminToken::new("short").is_err());
    assert!(AdminToken::new("has a space in it, long enough").is_err());
    assert!(AdminToken::new("0123456789abcdef").is_ok());
    let token = AdminToken::new(TOKEN).unwrap();
    assert!(!format!("{token:?}").contains(TOKEN));
    assert!(token.matches(TOKEN.as_bytes()));
    assert!(!token.matches(b"s3cr3t-admin-token-012345678"));
    // `cargo test` sets CARGO (a path: long enough, visible ASCII); the mirror test reads a
    // token from a variable of its own.
    if let Ok(cargo) = std::env::var("CARGO") {
        assert_eq!(
            AdminToken::from_env("CARGO").unwrap(),
            AdminToken::new(&cargo).unwrap()
        );
    }
    assert!(AdminToken::from_env("ORIGIN_PULL_TEST_TOKEN_UNSET").is_err());
}

#[test]
fn server_section_is_validated_with_locations_and_applied() {
    let config = Config::from_toml(
        r#"
        [store]
        url = "memory://"
        [[rules]]
        origin = { hosts = ["http://127.0.0.1:9/"] }
        [server]
        admin_token = "short"
        header_read_timeout = "0s"
        idle_timeout = "soon"
        max_connections = 0
        backlog = 70000
        max_header_size = "1KiB"
        max_headers = 0
        "#,
    )
    .unwrap();
    let problems: Vec<String> = config.validate().iter().map(|p| p.at.clone()).collect();
    for at in [
        "server.admin_token",
        "server.header_read_timeout",
        "server.idle_timeout",
        "server.max_connections",
        "server.backlog",
        "server.max_header_size",
        "server.max_headers",
    ] {
        assert!(problems.iter().any(|p| p == at), "{at} not in {problems:?}");
    }
    let both = Config::from_toml(&format!(
        "[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"http://127.0.0.1:9/\"] }}\n\
         [server]\nadmin_token = \"{TOKEN}\"\nadmin_token_env = \"X\"\n"
    ))
    .unwrap();
    assert!(
        both.validate()
            .iter()
            .any(|p| p.at == "server.admin_token_env")
    );

    let good = Config::from_toml(&format!(
        "[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"http://127.0.0.1:9/\"] }}\n\
         [server]\nadmin_token = \"{TOKEN}\"\nmax_connections = 77\nheader_read_timeout = \"2s\"\n"
    ))
    .unwrap();
    assert!(good.validate().is_empty(), "{:?}", good.validate());
    let section = good.server.as_ref().unwrap();
    assert!(
        !format!("{good:?}").contains(TOKEN),
        "Debug shows the token"
    );
    let server = Server::bind(localhost()).with_config(section).unwrap();
    assert_eq!(server.max_connections(), 77);
    assert_eq!(
        AdminToken::from_config(section).unwrap(),
        Some(AdminToken::new(TOKEN).unwrap())
    );
}

// ---------------------------------------------------------------------------------------
// The mirror example, as a process
// ---------------------------------------------------------------------------------------

/// A mirror process on 127.0.0.1 (port chosen by the system) over a local store holding
/// `hello.txt` (4 KiB); its origin is a port where nothing listens (hits only).
struct Mirror {
    addr: SocketAddr,
    _process: common::MirrorProcess,
    _store: tempfile::TempDir,
}

impl Mirror {
    fn start(extra: &[&str], envs: &[(&str, &str)], open_files: Option<u64>) -> Self {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("hello.txt"), vec![b'h'; 4096]).unwrap();
        let mut cmd = Command::new(common::mirror_binary());
        cmd.args(["--origin", "http://127.0.0.1:9/", "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(format!("file://{}", store.path().display()))
            .args(extra)
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let process = common::MirrorProcess::spawn(cmd);
        println!("{}", process.listen_line.trim());
        Self {
            addr: process.addr,
            _process: process,
            _store: store,
        }
    }
}

/// Connect and send half a request line, then nothing.
async fn half_line(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /hello.txt HT").await?;
    Ok(s)
}

/// A legitimate request for `hello.txt`: status and how long it took.
async fn legit(addr: SocketAddr, limit: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(limit, get_once(addr, "/hello.txt", ""))
        .await
        .unwrap_or_else(|_| panic!("the legitimate request timed out after {limit:?}"));
    if status == 200 {
        assert_eq!(body.len(), 4096);
    }
    (status, started.elapsed())
}

/// Finding 6 as found: 300 connections send half a request line and then nothing. With a
/// 500 ms header-read timeout each is closed about 500 ms after it connected, and a
/// legitimate request is served at once while they hold on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_slowloris_300_half_request_lines_are_closed_and_a_legit_request_is_served() {
    let _serial = SERIAL.lock().await;
    raise_open_files();
    let mirror = Mirror::start(&["--header-read-timeout", "0.5"], &[], None);
    let addr = mirror.addr;
    let mut attackers = Vec::new();
    let opened = Instant::now();
    for _ in 0..300 {
        attackers.push(half_line(addr).await.unwrap());
    }
    let all_open = opened.elapsed();
    let (status, took) = legit(addr, Duration::from_secs(2)).await;
    assert_eq!(status, 200);
    let closes: Vec<_> = attackers
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let started = Instant::now();
                closed_within(&mut s, Duration::from_secs(10))
                    .await
                    .map(|at| at - started)
            })
        })
        .collect();
    let mut held = Vec::new();
    for c in closes {
        held.push(
            c.await
                .unwrap()
                .expect("a Slowloris connection was never closed"),
        );
    }
    let total = opened.elapsed();
    held.sort();
    println!(
        "300 half request lines opened in {}; legit request served in {} while they held; \
         all 300 closed {} after the first connected (header-read timeout 500 ms; each \
         held at most {} more after we started watching)",
        ms(all_open),
        ms(took),
        ms(total),
        ms(*held.last().unwrap()),
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(total < Duration::from_secs(3), "{total:?}");
}

/// The same with a cap of 50 and attackers that reconnect as soon as they are closed (300
/// of them, so the listen queue always holds about 250): legitimate requests still get
/// through, each within a few header-read timeouts, for as long as the attack goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_slowloris_with_a_cap_of_50_and_reconnecting_attackers() {
    let _serial = SERIAL.lock().await;
    raise_open_files();
    let mirror = Mirror::start(
        &["--header-read-timeout", "0.5", "--max-connections", "50"],
        &[],
        None,
    );
    report_attack(mirror.addr, "cap 50").await;
}

/// Finding 6's second half as found: the mirror's open-file limit at 200 (hard and soft).
/// The mirror fits its connection cap under it (136), so the attackers cannot take the
/// descriptors a legitimate request needs to open its object, and legitimate requests get
/// through while 300 reconnecting attackers hold on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_slowloris_with_an_open_file_limit_of_200() {
    let _serial = SERIAL.lock().await;
    raise_open_files();
    let mirror = Mirror::start(&["--header-read-timeout", "0.5"], &[], Some(200));
    report_attack(mirror.addr, "open files 200").await;
}

/// 300 reconnecting Slowloris attackers for as long as 5 legitimate requests take, one
/// after the other; each must be served within 8 s (the queue ahead of it drains by a cap's
/// worth per header-read timeout).
async fn report_attack(addr: SocketAddr, what: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..300 {
        let (stop, closed) = (stop.clone(), closed.clone());
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut s) = half_line(addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if closed_within(&mut s, Duration::from_secs(30))
                    .await
                    .is_some()
                {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let (status, took) = legit(addr, Duration::from_secs(8)).await;
        assert_eq!(status, 200, "{what}");
        waits.push(took);
    }
    stop.store(true, Ordering::SeqCst);
    let closed_count = closed.load(Ordering::SeqCst);
    for a in attackers {
        a.abort();
    }
    println!(
        "{what}: 300 reconnecting Slowloris attackers; 5 legitimate requests served in {}; \
         {closed_count} attacker connections closed by the header-read timeout meanwhile",
        waits.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
    );
    assert!(closed_count >= 300, "{closed_count}");
}

/// Issue 15's burst: 1,000 connections opened at once to the mirror, one request each.
/// None waits for a `SYN` retransmit (1 s): every first byte comes within 200 ms of the
/// median, which a listen queue of 128 (tokio's `TcpListener::bind`) does not give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_burst_of_1000_connections_none_waits_for_a_syn_retransmit() {
    let _serial = SERIAL.lock().await;
    let files = raise_open_files();
    // This process holds the client side only; keep 100 descriptors for the rest.
    let n = 1000.min(usize::try_from(files.saturating_sub(100)).unwrap_or(1000));
    if n < 1000 {
        println!("open-file limit {files}: the burst is capped to {n} connections");
    }
    // BURST_BACKLOG=128 shows what tokio's default listen queue does to the same burst
    // (the assertion below then fails).
    let backlog = std::env::var("BURST_BACKLOG").ok();
    let extra: Vec<&str> = match &backlog {
        Some(n) => vec!["--backlog", n],
        None => vec![],
    };
    let mirror = Mirror::start(&extra, &[], None);
    let addr = mirror.addr;
    let overflows_before = listen_overflows();
    let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut clients = Vec::new();
    for _ in 0..n {
        let barrier = barrier.clone();
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&request("/hello.txt", true)).await.unwrap();
            let mut byte = [0u8; 1];
            s.peek(&mut byte).await.unwrap();
            let first = started.elapsed();
            let (status, body) = read_response(&mut s).await.unwrap();
            assert_eq!((status, body.len()), (200, 4096));
            first
        }));
    }
    barrier.wait().await;
    let mut firsts = Vec::new();
    for c in clients {
        firsts.push(c.await.unwrap());
    }
    firsts.sort();
    let median = percentile(&firsts, 0.5);
    let max = *firsts.last().unwrap();
    let overflows = listen_overflows().zip(overflows_before).map(|(a, b)| a - b);
    println!(
        "burst of {n}: first byte min {} median {} p99 {} max {}; spread over the median {}; \
         ListenOverflows +{} (system-wide)",
        ms(firsts[0]),
        ms(median),
        ms(percentile(&firsts, 0.99)),
        ms(max),
        ms(max - median),
        overflows.map_or("?".to_owned(), |n| n.to_string()),
    );
    assert!(
        max - median < Duration::from_millis(200),
        "a first byte came {:?} after the median: a SYN retransmit",
        max - median
    );
}

/// The kernel's `TcpExt: ListenOverflows` counter (Linux), if readable.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let i = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        return values.split_whitespace().nth(i)?.parse().ok();
    }
    None
}

/// The admin token, as the mirror uses it: without a token the status endpoint is open;
/// with `--admin-token` or `--admin-token-env` it needs `Authorization: Bearer`; an unknown
/// `/_origin_pull/*` path is the admin router's (`401` or `404`), never an object pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_admin_token() {
    let open = Mirror::start(&[], &[], None);
    assert_eq!(get_once(open.addr, "/_origin_pull/status", "").await.0, 200);
    assert_eq!(get_once(open.addr, "/_origin_pull/nope", "").await.0, 404);
    assert_eq!(get_once(open.addr, "/hello.txt", "").await.0, 200);
    // Without a token there is no purge endpoint.
    let purge = "/_origin_pull/purge/hello.txt";
    assert_eq!(send_once(open.addr, "POST", purge, "").await.0, 404);
    assert!(open._store.path().join("hello.txt").exists());
    drop(open);

    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let by_flag = Mirror::start(&["--admin-token", TOKEN], &[], None);
    let by_env = Mirror::start(
        &["--admin-token-env", "MIRROR_ADMIN"],
        &[("MIRROR_ADMIN", TOKEN)],
        None,
    );
    for mirror in [&by_flag, &by_env] {
        let addr = mirror.addr;
        let (status, body) = get_once(addr, "/_origin_pull/status", "").await;
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        let wrong = "Authorization: Bearer not-the-admin-token-at-all\r\n";
        assert_eq!(get_once(addr, "/_origin_pull/status", wrong).await.0, 401);
        let (status, body) = get_once(addr, "/_origin_pull/status", &bearer).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("\"requests\""));
        assert_eq!(get_once(addr, "/_origin_pull/nope", "").await.0, 401);
        assert_eq!(get_once(addr, "/_origin_pull/nope", &bearer).await.0, 404);
        assert_eq!(
            get_once(addr, "/hello.txt", "").await.0,
            200,
            "objects stay open"
        );
        // Purge: behind the token; removes the object and leaves no tombstone.
        let purge = "/_origin_pull/purge/hello.txt";
        assert_eq!(send_once(addr, "POST", purge, "").await.0, 401);
        assert!(mirror._store.path().join("hello.txt").exists());
        let (status, body) = send_once(addr, "POST", purge, &bearer).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(!mirror._store.path().join("hello.txt").exists());
        assert!(
            !mirror
                ._store
                .path()
                .join(".origin-pull-tombstones")
                .exists()
        );
        // The next GET is a miss again (pulled from the origin, which is not there here).
        assert_eq!(get_once(addr, "/hello.txt", "").await.0, 502);
        let bad = "/_origin_pull/purge/a/../b";
        assert_ne!(send_once(addr, "POST", bad, &bearer).await.0, 200);
    }
}
