//! Issue 13, the origin side: each finding reproduced the way the review found it (real
//! origins on 127.0.0.1, a real store, the layer over a store-serving inner service), and a
//! test for each item the review checked and found sound.
//!
//! - Finding 4, credentials follow redirects: a redirect to another port of an allowed host
//!   gets no forwarded `Authorization` / `Cookie` nor the configured secret header (unless
//!   trusted with them); `allow_redirect_to` entries are `host:port` (a bare host means the
//!   scheme's default port); a `Location` with userinfo is refused. (https → http is refused
//!   at the URL level: `origin::http` unit tests.)
//! - Finding 5, the client picks the origin's scheme: `Protocol::SameAsRequest` never asks an
//!   https origin over http, whatever the request target or `X-Forwarded-Proto` say.
//! - Point 9, webhook URL secrets: the userinfo and query of a webhook URL appear in no log
//!   line nor error.
//! - Checked and sound: redirect `Location`s come from configuration; CR/LF never becomes a
//!   header; keys cannot escape the store prefix; TLS is verified (self-signed: 502); the
//!   webhook follows no redirects.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_origin_pull::{
    BucketStore, HeaderPolicy, HttpOrigin, Mode, OriginPullBuilder, OriginPullLayer, Protocol,
    Rule, ServeStore, Store, Webhook,
};

use common::faulty::raw_request;
use common::*;

// ----- helpers -----

/// Every request a recording server saw: path and headers.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, HeaderMap)>>>);

impl Log {
    fn push(&self, path: String, headers: HeaderMap) {
        self.0.lock().unwrap().push((path, headers));
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The headers of the requests for `path`.
    fn at(&self, path: &str) -> Vec<HeaderMap> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

/// A server that records every request and answers, by path:
/// `/to/<port>/<rest>` → 302 to `http://127.0.0.1:<port>/<rest>`;
/// `/userinfo/<port>/<rest>` → 302 to `http://user:pw@127.0.0.1:<port>/<rest>`;
/// `/same/<rest>` → 302 to `/final/<rest>`; anything else → 200 `<name>:<path>`.
async fn recording(name: &'static str) -> (SocketAddr, Log) {
    let log = Log::default();
    let l = log.clone();
    let app = Router::new().fallback(move |req: Request| {
        let log = l.clone();
        async move {
            let path = req.uri().path().to_owned();
            log.push(path.clone(), req.headers().clone());
            let redirect = |to: String| {
                Response::builder()
                    .status(302)
                    .header("location", to)
                    .body(Body::empty())
                    .unwrap()
            };
            if let Some((port, rest)) = path.strip_prefix("/to/").and_then(|r| r.split_once('/')) {
                return redirect(format!("http://127.0.0.1:{port}/{rest}"));
            }
            if let Some((port, rest)) = path
                .strip_prefix("/userinfo/")
                .and_then(|r| r.split_once('/'))
            {
                return redirect(format!("http://user:pw@127.0.0.1:{port}/{rest}"));
            }
            if let Some(rest) = path.strip_prefix("/same/") {
                return redirect(format!("/final/{rest}"));
            }
            Response::new(Body::from(format!("{name}:{path}")))
        }
    });
    (serve(app).await, log)
}

/// The credentials a client sends, and the secret the rule adds.
const CLIENT_CREDENTIALS: &[(&str, &str)] = &[
    ("authorization", "Bearer alice-token"),
    ("cookie", "session=alice"),
    ("accept", "application/octet-stream"),
];

/// The header policy of the review: the client's credentials forwarded, a secret set.
fn secret_policy() -> HeaderPolicy {
    HeaderPolicy::pass_only(["authorization", "cookie"])
        .unwrap()
        .set("x-origin-token", "s3cr3t")
        .unwrap()
}

/// Which of the secrets a request carried.
fn secrets(headers: &HeaderMap) -> Vec<&'static str> {
    [
        "authorization",
        "cookie",
        "x-origin-token",
        "proxy-authorization",
    ]
    .into_iter()
    .filter(|h| headers.contains_key(*h))
    .collect()
}

/// The layer (rule over `origin`) over the tests' store-serving inner service.
async fn mirror(rule: Rule) -> String {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(rule)
        .build();
    let addr = serve(store_service(store).layer(layer)).await;
    format!("http://{addr}/")
}

fn origin(url: &str) -> tower_origin_pull::HttpOriginBuilder {
    HttpOrigin::builder(url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
}

// ----- finding 4: credentials follow redirects -----

#[tokio::test]
async fn a_redirect_to_another_port_gets_no_credentials_nor_configured_headers() {
    let (a, a_log) = recording("origin").await;
    let (b, b_log) = recording("elsewhere").await;
    let o = origin(&format!("http://{a}/"))
        .allow_redirect_to(format!("127.0.0.1:{}", b.port()))
        .build()
        .unwrap();
    let url = mirror(Rule::new(o).headers(secret_policy())).await;
    let c = client();
    let got = get_with(
        &c,
        &format!("{url}to/{}/obj.bin", b.port()),
        CLIENT_CREDENTIALS,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), b"elsewhere:/obj.bin");
    // The origin itself got them: they were configured for it.
    let asked = a_log.at(&format!("/to/{}/obj.bin", b.port()));
    assert_eq!(
        secrets(&asked[0]),
        ["authorization", "cookie", "x-origin-token"]
    );
    let followed = b_log.at("/obj.bin");
    assert_eq!(followed.len(), 1);
    assert!(
        secrets(&followed[0]).is_empty(),
        "the other port received {:?}",
        secrets(&followed[0])
    );
    assert_eq!(followed[0]["host"], format!("127.0.0.1:{}", b.port()));
}

#[tokio::test]
async fn a_redirect_on_the_same_authority_keeps_them() {
    let (a, a_log) = recording("origin").await;
    let o = origin(&format!("http://{a}/")).build().unwrap();
    let url = mirror(Rule::new(o).headers(secret_policy())).await;
    let got = get_with(&client(), &format!("{url}same/obj.bin"), CLIENT_CREDENTIALS).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), b"origin:/final/obj.bin");
    let followed = a_log.at("/final/obj.bin");
    assert_eq!(
        secrets(&followed[0]),
        ["authorization", "cookie", "x-origin-token"]
    );
    assert_eq!(followed[0]["authorization"], "Bearer alice-token");
    assert_eq!(followed[0]["x-origin-token"], "s3cr3t");
}

#[tokio::test]
async fn a_target_trusted_with_credentials_gets_them() {
    let (a, _) = recording("origin").await;
    let (b, b_log) = recording("elsewhere").await;
    let o = origin(&format!("http://{a}/"))
        .trust_redirect_credentials([format!("127.0.0.1:{}", b.port())])
        .build()
        .unwrap();
    let url = mirror(Rule::new(o).headers(secret_policy())).await;
    let got = get_with(
        &client(),
        &format!("{url}to/{}/obj.bin", b.port()),
        CLIENT_CREDENTIALS,
    )
    .await;
    assert_eq!(got.body(), b"elsewhere:/obj.bin");
    assert_eq!(
        secrets(&b_log.at("/obj.bin")[0]),
        ["authorization", "cookie", "x-origin-token"]
    );
}

#[tokio::test]
async fn an_allowed_host_without_a_port_allows_only_the_default_port() {
    let (a, _) = recording("origin").await;
    let (b, b_log) = recording("elsewhere").await;
    // The review's configuration: `allow_redirect_to = ["127.0.0.1"]`.
    let o = origin(&format!("http://{a}/"))
        .allow_redirect_to("127.0.0.1")
        .build()
        .unwrap();
    let url = mirror(Rule::new(o).headers(secret_policy())).await;
    let got = get_with(
        &client(),
        &format!("{url}to/{}/obj.bin", b.port()),
        CLIENT_CREDENTIALS,
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(b_log.count(), 0, "a port never configured was contacted");
}

#[tokio::test]
async fn a_location_with_userinfo_is_refused() {
    let (a, _) = recording("origin").await;
    let (b, b_log) = recording("elsewhere").await;
    // The review's `allow_redirect_to = ["localhost"]`, and the target's port too: allowed
    // either way, but for the userinfo.
    let o = origin(&format!("http://{a}/"))
        .allow_redirect_to("127.0.0.1")
        .allow_redirect_to(format!("127.0.0.1:{}", b.port()))
        .build()
        .unwrap();
    let url = mirror(Rule::new(o.clone())).await;
    let got = get(&client(), &format!("{url}userinfo/{}/obj.bin", b.port())).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(b_log.count(), 0, "followed a Location with userinfo");
    let body = String::from_utf8_lossy(got.body()).into_owned();
    assert!(!body.contains("pw"), "{body}");
    // The error (which is logged) does not repeat the password either.
    let request = tower_origin_pull::OriginRequest::new(format!("userinfo/{}/obj.bin", b.port()));
    let e = tower_origin_pull::Origin::fetch(&o, request)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("credentials") && !e.contains("pw"), "{e}");
}

// ----- finding 5: the client picks the origin's scheme -----

/// A TCP server that keeps the first bytes of each connection and closes it.
async fn sniffer() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let n = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                buf.truncate(n);
                s.lock().unwrap().push(buf);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn same_as_request_never_fetches_an_https_origin_over_http() {
    let (o_addr, seen) = sniffer().await;
    let o = origin(&format!("https://127.0.0.1:{}/", o_addr.port()))
        .protocol(Protocol::SameAsRequest)
        .build()
        .unwrap();
    let rule = Rule::new(o).headers(secret_policy());
    let url = mirror(rule.clone()).await;
    let m: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // Even a layer that trusts the client's scheme (behind a proxy that sets it).
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let trusting = OriginPullLayer::builder(BucketStore::new(store.clone()))
        .trust_forwarded_proto(true)
        .rule(rule)
        .build();
    let t = serve(store_service(store).layer(trusting)).await;
    for (row, m, raw) in [
        (
            "absolute-form target",
            m,
            format!("GET http://{m}/k.bin HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "X-Forwarded-Proto: http",
            m,
            format!(
                "GET /k.bin HTTP/1.1\r\nHost: {m}\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            "X-Forwarded-Proto: http, trusted",
            t,
            format!(
                "GET /k.bin HTTP/1.1\r\nHost: {t}\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            "absolute-form target, trusted",
            t,
            format!("GET http://{t}/k2.bin HTTP/1.1\r\nHost: {t}\r\nConnection: close\r\n\r\n"),
        ),
    ] {
        let (status, _) = raw_request(m, raw.as_bytes()).await;
        // The sniffer speaks no TLS: the fetch fails, which is the point.
        assert_eq!(status, 502, "{row}");
    }
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the origin was asked");
    for bytes in &seen {
        assert!(
            !bytes.starts_with(b"GET") && !bytes.windows(6).any(|w| w == b"s3cr3t"),
            "asked over plain http: {}",
            String::from_utf8_lossy(bytes)
        );
        // A TLS handshake record.
        assert_eq!(bytes.first(), Some(&0x16));
    }
}

// ----- point 9: webhook URL secrets -----

/// Every log line of this test binary from the moment [`Captured::install`] runs (a global
/// subscriber: a scoped one can miss events whose callsite another thread cached).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Self {
        static GLOBAL: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let captured = Captured::default();
                let writer = captured.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .with_max_level(tracing::Level::TRACE)
                    .finish();
                tracing::subscriber::set_global_default(subscriber).unwrap();
                captured
            })
            .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn webhook_url_secrets_are_never_logged() {
    let captured = Captured::install();

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://user:pw@{closed}/hook?token=s3cret&x=1");
    let from = TestOrigin::start().await;
    from.object("w.txt", "webhook");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(origin(&from.url).build().unwrap()))
        .build();
    let hook = Webhook::new(&url)
        .unwrap()
        .attempts(2)
        .min_backoff(Duration::from_millis(10))
        .spawn(layer.handle().subscribe());
    let addr = serve(store_service(store).layer(layer)).await;
    assert_eq!(
        get(&client(), &format!("http://{addr}/w.txt")).await.body(),
        b"webhook"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            hook.stats().failed >= 2
        })
        .await
    );

    // Errors built from such URLs, and the webhook's Debug, redact them too.
    let invalid = Webhook::new("ftp://user:pw@h/hook?token=s3cret").unwrap_err();
    let debug = format!("{:?}", Webhook::new(&url).unwrap());
    let logged = captured.text();
    assert!(logged.contains("webhook delivery failed"), "{logged}");
    for shown in [logged.as_str(), &invalid.to_string(), &debug] {
        assert!(
            !shown.contains("pw@") && !shown.contains("s3cret") && !shown.contains("user:"),
            "{shown}"
        );
    }
    assert!(
        logged.contains(&format!("http://REDACTED@{closed}/hook?REDACTED")),
        "{logged}"
    );
}

// ----- checked and sound -----

/// An inner service that never has the object.
fn always_missing() -> Router {
    Router::new().fallback(|| async {
        Response::builder()
            .status(404)
            .body(Body::from("not here"))
            .unwrap()
    })
}

/// The value of `name` in a raw response head.
fn header_of(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

#[tokio::test]
async fn redirect_locations_come_from_configuration() {
    let from = TestOrigin::start().await;
    from.object("r/x.bin", "redirected");
    for mode in [Mode::Redirect, Mode::Async] {
        let layer = OriginPullBuilder::from_object_store(Arc::new(InMemory::new()))
            .rule(Rule::new(origin(&from.url).build().unwrap()).mode(mode))
            .build();
        let m = serve(always_missing().layer(layer)).await;
        for (row, raw) in [
            (
                "Host",
                "GET /r/x.bin HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
                    .to_owned(),
            ),
            (
                "X-Forwarded-Host",
                format!(
                    "GET /r/x.bin HTTP/1.1\r\nHost: {m}\r\nX-Forwarded-Host: evil.example\r\n\
                     X-Forwarded-Proto: https\r\nForwarded: host=evil.example\r\n\
                     Connection: close\r\n\r\n"
                ),
            ),
            (
                "absolute-form",
                "GET http://evil.example:8080/r/x.bin HTTP/1.1\r\nHost: evil.example:8080\r\n\
                 Connection: close\r\n\r\n"
                    .to_owned(),
            ),
        ] {
            let (status, answer) = raw_request(m, raw.as_bytes()).await;
            assert_eq!(status, 302, "{mode:?} / {row}");
            assert_eq!(
                header_of(&answer, "location"),
                Some(format!("{}r/x.bin", from.url)),
                "{mode:?} / {row}"
            );
        }
    }
}

/// A raw origin that keeps each request head and answers `200 ok`.
async fn head_recorder() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, heads)
}

fn injected(head: &str) -> bool {
    head.split("\r\n").any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("x-injected") || line.starts_with("set-cookie")
    })
}

#[tokio::test]
async fn cr_lf_never_becomes_a_header() {
    let (o_addr, heads) = head_recorder().await;
    let rule = Rule::new(origin(&format!("http://{o_addr}/")).build().unwrap()).forward_query(true);
    let m = serve(
        always_missing().layer(
            OriginPullBuilder::from_object_store(Arc::new(InMemory::new()))
                .rule(rule.clone())
                .build(),
        ),
    )
    .await;
    // In the key: not a clean key, nothing is asked.
    for target in ["/a%0d%0aX-Injected:%20yes", "/a%0aX-Injected:%20yes/b"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_request(m, raw.as_bytes()).await;
        assert_eq!(status, 404, "{target}");
        assert!(!injected(&String::from_utf8_lossy(&answer)));
    }
    assert!(heads.lock().unwrap().is_empty(), "the origin was asked");
    // In the query: forwarded as it came, still encoded, on the request line only.
    let target = "/q.bin?x=%0d%0aX-Injected:%20yes&y=%0aSet-Cookie:%20a=b";
    let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let (status, answer) = raw_request(m, raw.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(!injected(&String::from_utf8_lossy(&answer)));
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with(&format!("GET {target} HTTP/1.1\r\n")),
        "{}",
        heads[0]
    );
    assert!(!injected(&heads[0]), "{}", heads[0]);
    // In a redirect's Location: still encoded.
    let m = serve(
        always_missing().layer(
            OriginPullBuilder::from_object_store(Arc::new(InMemory::new()))
                .rule(rule.mode(Mode::Redirect))
                .build(),
        ),
    )
    .await;
    let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let (status, answer) = raw_request(m, raw.as_bytes()).await;
    assert_eq!(status, 302);
    assert!(!injected(&String::from_utf8_lossy(&answer)));
    assert_eq!(
        header_of(&answer, "location"),
        Some(format!("http://{o_addr}{target}"))
    );
    // In a configured header: refused when configured.
    assert!(
        HeaderPolicy::none()
            .set("x-a", "a\r\nX-Injected: yes")
            .is_err()
    );
    assert!(HeaderPolicy::none().set("x-a", "a\nb").is_err());
}

#[tokio::test]
async fn keys_cannot_escape_the_store_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("secret.txt"), "SECRET").unwrap();
    std::fs::create_dir(root.join("mirror")).unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    // An origin that has every path.
    let any = serve(Router::new().fallback(|req: Request| async move {
        Response::new(Body::from(format!("origin:{}", req.uri().path())))
    }))
    .await;
    let bucket = BucketStore::new(fs.clone()).with_prefix(Path::from("mirror"));
    let layer = OriginPullBuilder::new(bucket.clone())
        .rule(Rule::new(
            origin(&format!("http://{any}/")).build().unwrap(),
        ))
        .build();
    let inner = ServeStore::new(fs.clone()).with_prefix(Path::from("mirror"));
    let m = serve(Router::new().fallback_service(inner).layer(layer)).await;
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/a/../../secret.txt",
        "/a/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/..;/secret.txt",
        "/%EF%BC%8E%EF%BC%8E/secret.txt",
        "/%252e%252e/secret.txt",
        "/./secret.txt",
        "//secret.txt",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_request(m, raw.as_bytes()).await;
        assert_ne!(status, 200, "{target}");
        assert!(
            !answer.windows(6).any(|w| w == b"SECRET"),
            "{target}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The store itself refuses such keys.
    for key in ["../secret.txt", "a/../../secret.txt", "..", "."] {
        assert!(bucket.location(key).is_err(), "{key}");
        assert!(bucket.read(key, 0).await.is_err(), "{key}");
        assert!(
            bucket
                .begin(key, object_store::Attributes::new())
                .await
                .is_err(),
            "{key}"
        );
    }
    // And a clean key lands below the prefix. Nothing was written anywhere else.
    let raw = "GET /ok/file.txt HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(m, raw.as_bytes()).await.0, 200);
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    // The object and the metadata kept beside it, both below the prefix.
    assert_eq!(
        files,
        [
            "mirror/.origin-pull-meta/ok/file.txt.meta",
            "mirror/ok/file.txt",
            "secret.txt"
        ]
    );
    assert_eq!(std::fs::read(root.join("secret.txt")).unwrap(), b"SECRET");
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (P-256, DER, base64), and its
/// PKCS#8 key: `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
/// -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 36500`.
#[cfg(feature = "rustls")]
const SELF_SIGNED_CERT: &str = "MIIBmjCCAUGgAwIBAgIUYbkk/qc2prmsc51fa1wYw/UmUm4wCgYIKoZIzj0EAwIwFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTE5NDEyMloYDzIxMjYxMTA1MTk0MTIyWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATSIYl8DKUb6aPo8GjEIvdqvHA6bXk37+tH3iQOLNzFtgIg/566PJIyVFuj5u1bGqFK+vXZCYYK163mvKg/vZ/vo28wbTAdBgNVHQ4EFgQU3TAHVqLZJL4qw0uhub2eSjYaPw0wHwYDVR0jBBgwFoAU3TAHVqLZJL4qw0uhub2eSjYaPw0wDwYDVR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZIzj0EAwIDRwAwRAIgQog49R9kvJio4nGjsHRMq8/UNgbs22vCbNnlgyYe5SUCIGNXHKrYuqKSO6P1Klz7plsxvHioln4sYT2yTISmM/ej";
#[cfg(feature = "rustls")]
const SELF_SIGNED_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZwFUw3Zv2lms5xy0lWfDaBUpDkZEUwvAueET7k/0dfihRANCAATSIYl8DKUb6aPo8GjEIvdqvHA6bXk37+tH3iQOLNzFtgIg/566PJIyVFuj5u1bGqFK+vXZCYYK163mvKg/vZ/v";

/// Handshakes by outcome (`completed`, `failed`), with the error of each failed one.
#[cfg(feature = "rustls")]
type Outcomes = Arc<Mutex<std::collections::HashMap<&'static str, Vec<String>>>>;

/// A TLS server presenting the self-signed certificate; counts handshakes that completed
/// and keeps why the others failed.
#[cfg(feature = "rustls")]
fn tls_server() -> (SocketAddr, Outcomes) {
    use base64::Engine;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let b64 = base64::engine::general_purpose::STANDARD;
    let cert = CertificateDer::from(b64.decode(SELF_SIGNED_CERT).unwrap());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        b64.decode(SELF_SIGNED_KEY).unwrap(),
    ));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let outcomes = Outcomes::default();
    let o = outcomes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { return };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let outcome = loop {
                if !conn.is_handshaking() {
                    break ("completed", String::new());
                }
                if let Err(e) = conn.complete_io(&mut tcp) {
                    break ("failed", e.to_string());
                }
            };
            o.lock()
                .unwrap()
                .entry(outcome.0)
                .or_default()
                .push(outcome.1);
        }
    });
    (addr, outcomes)
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn tls_is_always_verified() {
    let (addr, outcomes) = tls_server();
    let url = format!("https://localhost:{}/", addr.port());
    let o = origin(&url).build().unwrap();
    // Straight from the origin: an error that says why.
    let e = tower_origin_pull::Origin::fetch(&o, tower_origin_pull::OriginRequest::new("x"))
        .await
        .unwrap_err();
    let mut why = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        why.push_str(&format!(" / {c}"));
        cause = c.source();
    }
    assert!(why.to_ascii_lowercase().contains("certificate"), "{why}");
    // Through the layer: a 502, nothing stored.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(o))
        .build();
    let m = serve(store_service(store.clone()).layer(layer)).await;
    let got = get(&client(), &format!("http://{m}/x.bin")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(listing(&*store).await.is_empty());
    // The server thread records each refused handshake once its connection ends.
    let failed = || outcomes.lock().unwrap().get("failed").map_or(0, Vec::len);
    assert!(eventually(Duration::from_secs(5), || async { failed() >= 2 }).await);
    let outcomes = outcomes.lock().unwrap().clone();
    assert!(!outcomes.contains_key("completed"), "{outcomes:?}");
}

#[tokio::test]
async fn the_webhook_follows_no_redirects() {
    let (elsewhere, elsewhere_log) = recording("elsewhere").await;
    let redirects = Log::default();
    let r = redirects.clone();
    let hook_addr = serve(Router::new().fallback(move |req: Request| {
        let r = r.clone();
        async move {
            r.push(req.uri().to_string(), req.headers().clone());
            Response::builder()
                .status(302)
                .header("location", format!("http://{elsewhere}/hook"))
                .body(Body::empty())
                .unwrap()
        }
    }))
    .await;
    let from = TestOrigin::start().await;
    from.object("w.txt", "webhook");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(origin(&from.url).build().unwrap()))
        .build();
    // Credentials in the URL: sent as Basic credentials, to the configured host only.
    let hook = Webhook::new(&format!("http://hook:s3cret@{hook_addr}/hook?token=t"))
        .unwrap()
        .attempts(2)
        .min_backoff(Duration::from_millis(10))
        .spawn(layer.handle().subscribe());
    let m = serve(store_service(store).layer(layer)).await;
    assert_eq!(
        get(&client(), &format!("http://{m}/w.txt")).await.body(),
        b"webhook"
    );
    // Started and Completed, two attempts each, all answered 302.
    assert!(
        eventually(Duration::from_secs(10), || async {
            hook.stats().failed == 2
        })
        .await
    );
    let asked = redirects.0.lock().unwrap().clone();
    assert_eq!(asked.len(), 4);
    for (target, headers) in &asked {
        assert_eq!(target, "/hook?token=t");
        assert_eq!(headers["host"], hook_addr.to_string());
        // base64("hook:s3cret")
        assert_eq!(headers["authorization"], "Basic aG9vazpzM2NyZXQ=");
    }
    assert_eq!(hook.stats().delivered, 0);
    assert_eq!(elsewhere_log.count(), 0, "the webhook followed a redirect");
}

#[cfg(feature = "config")]
#[tokio::test]
async fn redirect_targets_from_configuration() {
    use tower_origin_pull::config::Config;
    // Entries that are not `host` or `host:port` are refused where they are.
    let config = Config::from_toml(
        "[store]\nurl = \"memory://\"\n[[rules]]\norigin = { hosts = [\"http://h/\"], \
         allow_redirect_to = [\"https://cdn.example\", \"cdn.example:8080\", \"cdn.example\"], \
         trust_redirect_credentials = [\"user@h\", \"h:81\"] }\n",
    )
    .unwrap();
    let at: Vec<String> = config.validate().into_iter().map(|p| p.at).collect();
    assert_eq!(
        at,
        [
            "rules[0].origin.allow_redirect_to[0]",
            "rules[0].origin.trust_redirect_credentials[0]"
        ]
    );
    // A configured secret goes to a trusted target, not to a merely allowed one.
    let (a, _) = recording("origin").await;
    let (allowed, allowed_log) = recording("allowed").await;
    let (trusted, trusted_log) = recording("trusted").await;
    let config = Config::from_toml(&format!(
        "[store]\nurl = \"memory://\"\n[[rules]]\n\
         request_headers = {{ set = {{ \"x-origin-token\" = \"s3cr3t\" }} }}\n\
         origin = {{ hosts = [\"http://{a}/\"], allow_redirect_to = [\"{allowed}\"], \
         trust_redirect_credentials = [\"{trusted}\"] }}\n"
    ))
    .unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullLayer::from_config_with(&config, store.clone()).unwrap();
    let m = serve(store_service(store).layer(layer)).await;
    let c = client();
    for (to, log) in [(allowed, &allowed_log), (trusted, &trusted_log)] {
        let got = get(&c, &format!("http://{m}/to/{}/cfg.bin", to.port())).await;
        assert_eq!(got.status, StatusCode::OK);
        let seen = log.at("/cfg.bin");
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].get("x-origin-token").is_some(),
            to == trusted,
            "{to}"
        );
    }
}
