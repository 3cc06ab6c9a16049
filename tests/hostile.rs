//! Hostile input, table-driven. Requests go over a raw `TcpStream`, so the request line and
//! headers are exactly what the table says (no client normalises them first).
//!
//! - Paths that are not clean keys (traversals, encoded separators, backslashes, double
//!   encoding, control characters, invalid UTF-8, 64 KiB paths, ...): in every mode and
//!   behind every inner service, the origin sees no request (not even a connection), the
//!   store no write, and the answer is never a pull.
//! - Absolute-form URIs and spoofed `Host` / `X-Forwarded-*` / `Forwarded`: the object is
//!   pulled from the configured origin only (its `Host` header included), redirects point at
//!   the configured origin only, and the "evil" hosts named in the request see nothing.
//! - CR/LF: an encoded CR/LF in a forwarded query string stays encoded; raw CR or folded
//!   header lines are refused by the HTTP server before the layer sees them.
//! - A `Range` header of 10,000 ranges: not forwarded on a fill, no crash, the whole object.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tempfile::TempDir;
use tower::Layer;
use tower_http::services::ServeDir;
use tower_origin_pull::{BucketStore, HttpOrigin, Mode, OriginPullBuilder, Rule, ServeStore};

use common::faulty::*;
use common::*;

/// The service behind the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    /// Answers `404` to everything: the layer alone must refuse.
    AlwaysMissing,
    /// `ServeStore` over the same store (refuses unclean keys with `400` itself).
    ServeStore,
    /// tower-http's `ServeDir` over the local directory the store writes into.
    ServeDir,
}

struct App {
    addr: SocketAddr,
    origin: FaultyOrigin,
    store: Arc<CountingStore>,
    _dir: Option<TempDir>,
}

impl App {
    async fn start(inner: Inner, rule: impl FnOnce(Rule) -> Rule) -> Self {
        let origin = FaultyOrigin::start().await;
        let (backend, dir): (Arc<dyn ObjectStore>, _) = match inner {
            Inner::ServeDir => {
                let dir = tempfile::tempdir().unwrap();
                let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
                (Arc::new(fs), Some(dir))
            }
            _ => (Arc::new(InMemory::new()), None),
        };
        let store = CountingStore::new(backend);
        let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
            .rule(rule(Rule::new(HttpOrigin::new(&origin.url).unwrap())))
            .build();
        let app = match inner {
            Inner::AlwaysMissing => axum::Router::new().layer(layer),
            Inner::ServeStore => axum::Router::new()
                .fallback_service(ServeStore::new(store.clone()))
                .layer(layer),
            Inner::ServeDir => axum::Router::new()
                .fallback_service(layer.layer(ServeDir::new(dir.as_ref().unwrap().path()))),
        };
        Self {
            addr: serve(app).await,
            origin,
            store,
            _dir: dir,
        }
    }

    async fn send(&self, head: &[u8]) -> Answer {
        let (status, raw) = raw_request(self.addr, head).await;
        Answer { status, raw }
    }
}

struct Answer {
    status: u16,
    raw: Vec<u8>,
}

impl Answer {
    /// A header of the answer's head, by lower-case name.
    fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.raw);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn body(&self) -> &[u8] {
        let at = self
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.raw.len(), |p| p + 4);
        &self.raw[at..]
    }
}

/// `GET <target>` with a plain Host and `Connection: close`, plus `extra` header lines.
fn get_line(target: &[u8], extra: &str) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: app.test\r\n");
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Request targets that are not clean keys, with what each one tries.
fn unclean_targets() -> Vec<(&'static str, Vec<u8>)> {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        ("`..` first", s("/../secret")),
        ("`..` inside", s("/a/../secret")),
        ("`..` last", s("/a/..")),
        ("`..` alone", s("/..")),
        ("`.` inside", s("/a/./b")),
        ("`.` first", s("/./a")),
        ("`.` alone", s("/.")),
        ("%2e%2e", s("/%2e%2e/secret")),
        ("%2E%2E", s("/a/%2E%2E/secret")),
        (".%2e", s("/.%2e/secret")),
        ("%2e.", s("/%2e./secret")),
        ("%2e", s("/a/%2e/b")),
        ("%2f", s("/a%2fb")),
        ("%2F traversal", s("/..%2Fsecret")),
        ("%2f chain", s("/a%2f..%2f..%2fsecret")),
        ("%5c", s("/a%5cb")),
        ("%5C traversal", s("/..%5Csecret")),
        ("raw backslash", s("/a\\b")),
        ("raw backslash traversal", s("/..\\secret")),
        ("double-encoded `..`", s("/%252e%252e/secret")),
        ("double-encoded `/`", s("/a%252fb")),
        ("double-encoded `\\`", s("/a%255cb")),
        ("double-encoded `%`", s("/a%2525")),
        ("encoded `%2e`", s("/%25%32%65%25%32%65/secret")),
        ("%00", s("/a%00b")),
        ("%0a", s("/a%0ab")),
        ("%0d%0a header", s("/a%0d%0aX-Injected:%20yes")),
        ("%09", s("/a%09b")),
        ("%1b escape", s("/a%1b[31m")),
        ("%7f", s("/a%7f")),
        ("C1 %c2%85", s("/a%c2%85")),
        ("C1 %c2%9b", s("/a%c2%9b")),
        ("raw NUL", b"/a\0b".to_vec()),
        ("raw DEL", b"/a\x7fb".to_vec()),
        ("raw ESC", b"/a\x1bb".to_vec()),
        ("invalid UTF-8 %ff", s("/a%ff")),
        ("truncated UTF-8", s("/a%c3")),
        ("UTF-16 surrogate", s("/a%ed%a0%80")),
        ("overlong `/`", s("/%c0%af")),
        ("overlong `..`", s("/%c0%ae%c0%ae/secret")),
        ("raw invalid UTF-8", b"/a\xffb".to_vec()),
        ("malformed escape", s("/a%zz")),
        ("truncated escape", s("/a%2")),
        ("lone `%`", s("/a%")),
        ("empty key", s("/")),
        ("empty segment", s("/a//b")),
        ("leading `//`", s("//a")),
        ("trailing `/`", s("/a/")),
        (
            "64 KiB path",
            format!("/{}", "a".repeat(64 * 1024)).into_bytes(),
        ),
        ("64 KiB of segments", "/a".repeat(32 * 1024).into_bytes()),
        // Under the HTTP server's 64 KiB URI limit, so the layer sees them.
        (
            "16 KiB path",
            format!("/{}", "a".repeat(16 * 1024)).into_bytes(),
        ),
        (
            "1025-byte key",
            format!("/{}", "k".repeat(1025)).into_bytes(),
        ),
        ("asterisk-form", s("*")),
        ("authority-form", s("evil.test:80")),
        ("absolute-form traversal", s("http://app.test/a/../secret")),
    ]
}

#[tokio::test]
async fn unclean_paths_are_never_fetched_nor_stored() {
    let setups: [(Inner, Mode); 6] = [
        (Inner::AlwaysMissing, Mode::Sync),
        (Inner::AlwaysMissing, Mode::Async),
        (Inner::AlwaysMissing, Mode::Redirect),
        (Inner::AlwaysMissing, Mode::Proxy),
        (Inner::ServeStore, Mode::Sync),
        (Inner::ServeDir, Mode::Sync),
    ];
    for (inner, mode) in setups {
        let app = App::start(inner, |r| r.mode(mode)).await;
        for (row, target) in unclean_targets() {
            let what = format!("{inner:?} / {mode:?} / {row}");
            let answer = app.send(&get_line(&target, "")).await;
            assert_ne!(answer.status, 0, "{what}: no answer");
            if inner == Inner::AlwaysMissing {
                // The inner 404, untouched, or the HTTP server's own refusal.
                assert!(
                    [400, 404, 414].contains(&answer.status),
                    "{what}: answered {}",
                    answer.status
                );
            }
            // Whatever the inner service said (ServeDir redirects `/.` to `/./`), the layer
            // added nothing: no pull, no redirect to the origin.
            assert_eq!(answer.header("x-origin-pull"), None, "{what}");
            let location = answer.header("location").unwrap_or_default();
            assert!(
                !location.contains(&app.origin.authority()),
                "{what}: {location}"
            );
            assert_eq!(
                app.origin.connections(),
                0,
                "{what}: the origin was contacted"
            );
            assert_eq!(app.store.writes(), 0, "{what}: the store was written");
        }
        // Async mode: nothing was queued either (give a queued fill time to show).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(app.origin.connections(), 0, "{inner:?} / {mode:?}");
        assert_eq!(listing(&*app.store).await, Vec::<String>::new());
    }
}

/// Servers the request names but the configuration does not: they must see nothing.
struct Evil {
    other_ip: FaultyOrigin,
    other_port: FaultyOrigin,
}

impl Evil {
    async fn start() -> Self {
        Self {
            other_ip: FaultyOrigin::start_on("127.0.0.2").await,
            other_port: FaultyOrigin::start().await,
        }
    }

    fn hosts(&self) -> [String; 2] {
        [self.other_ip.authority(), self.other_port.authority()]
    }

    fn connections(&self) -> usize {
        self.other_ip.connections() + self.other_port.connections()
    }
}

/// Requests that name another host in every way HTTP allows, for `key`.
fn spoofs(key: &str, evil: &str) -> Vec<(&'static str, Vec<u8>)> {
    let line = |target: String, host: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .into_bytes()
    };
    vec![
        (
            "absolute-form http",
            line(format!("http://{evil}/{key}"), evil, ""),
        ),
        (
            "absolute-form https",
            line(format!("https://{evil}/{key}"), evil, ""),
        ),
        ("Host", line(format!("/{key}"), evil, "")),
        (
            "X-Forwarded-Host",
            line(
                format!("/{key}"),
                "app.test",
                &format!(
                    "X-Forwarded-Host: {evil}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
                ),
            ),
        ),
        (
            "Forwarded",
            line(
                format!("/{key}"),
                "app.test",
                &format!("Forwarded: for=1.2.3.4;host={evil};proto=https\r\n"),
            ),
        ),
        (
            "X-Original-URL",
            line(
                format!("/{key}"),
                "app.test",
                &format!(
                    "X-Original-URL: http://{evil}/other\r\nX-Rewrite-URL: /other\r\nX-Forwarded-Prefix: /evil\r\n"
                ),
            ),
        ),
    ]
}

#[tokio::test]
async fn the_origin_comes_from_configuration_only() {
    let evil = Evil::start().await;
    let app = App::start(Inner::ServeStore, |r| r).await;
    let mut n = 0;
    for host in evil.hosts() {
        for (row, _) in spoofs("x", &host) {
            let key = format!("spoof/{n}.bin");
            n += 1;
            let object = random_bytes(2000, n as u64);
            app.origin.object(&key, object.clone());
            let (_, raw) = spoofs(&key, &host)
                .into_iter()
                .find(|(r, _)| *r == row)
                .unwrap();
            let answer = app.send(&raw).await;
            let what = format!("{row} ({host})");
            assert_eq!(answer.status, 200, "{what}");
            assert_eq!(answer.header("x-origin-pull").as_deref(), Some("pulled"));
            assert!(
                answer.body() == &object[..],
                "{what}: the configured origin's bytes"
            );
            assert_eq!(app.origin.requests(&key), 1, "{what}");
        }
    }
    for seen in app.origin.seen() {
        assert_eq!(
            seen.host.as_deref(),
            Some(app.origin.authority().as_str()),
            "the origin's Host header names the origin: {}",
            seen.head
        );
        assert!(seen.target.starts_with("/spoof/"), "{}", seen.target);
    }
    assert_eq!(
        evil.connections(),
        0,
        "a host named by the client was contacted"
    );
    assert_eq!(app.store.writes(), n);
}

#[tokio::test]
async fn redirects_point_at_the_configured_origin_only() {
    let evil = Evil::start().await;
    for mode in [Mode::Redirect, Mode::Async] {
        let app = App::start(Inner::AlwaysMissing, |r| r.mode(mode)).await;
        for host in evil.hosts() {
            for (row, raw) in spoofs("r/x.bin", &host) {
                let answer = app.send(&raw).await;
                let what = format!("{mode:?} / {row} ({host})");
                assert_eq!(answer.status, 302, "{what}");
                assert_eq!(
                    answer.header("location").as_deref(),
                    Some(format!("{}r/x.bin", app.origin.url).as_str()),
                    "{what}"
                );
            }
        }
    }
    assert_eq!(evil.connections(), 0);
}

#[tokio::test]
async fn crlf_never_reaches_the_origin_as_a_header() {
    let app = App::start(Inner::ServeStore, |r| {
        r.forward_query(true).unkeyed_forwarding(true)
    })
    .await;
    app.origin.object("q.bin", Bytes::from_static(b"query"));
    // Encoded in the query string: forwarded as it came, still encoded.
    let target = "/q.bin?x=%0d%0aX-Injected:%20yes&y=%0aHost:%20evil";
    let answer = app.send(&get_line(target.as_bytes(), "")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body(), b"query");
    let seen = app.origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, target);
    assert_eq!(
        seen[0].host.as_deref(),
        Some(app.origin.authority().as_str())
    );
    let injected = seen[0]
        .head
        .split("\r\n")
        .any(|l| l.to_ascii_lowercase().starts_with("x-injected"));
    assert!(!injected, "{}", seen[0].head);
    assert_eq!(listing(&*app.store).await, vec!["q.bin".to_owned()]);

    // Raw: the HTTP server refuses them before any service runs.
    for (row, extra) in [
        ("bare CR in a value", "X-Note: a\rX-Injected: yes\r\n"),
        ("folded header line", "X-Note: a\r\n X-Injected: yes\r\n"),
        ("NUL in a value", "X-Note: a\0b\r\n"),
    ] {
        let answer = app.send(&get_line(b"/crlf.bin", extra)).await;
        assert_eq!(answer.status, 400, "{row}");
    }
    assert_eq!(app.origin.connections(), 1, "only the query request");
}

#[tokio::test]
async fn a_range_header_of_ten_thousand_ranges() {
    let app = App::start(Inner::ServeStore, |r| r).await;
    let object = random_bytes(100_000, 77);
    app.origin.object("ranges.bin", object.clone());
    let all: Vec<String> = (0..10_000).map(|i| format!("{i}-{i}")).collect();
    let many = format!("Range: bytes={}\r\n", all.join(","));
    // On a miss: the fill does not forward Range and the client gets the whole object.
    let pulled = app.send(&get_line(b"/ranges.bin", &many)).await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.header("x-origin-pull").as_deref(), Some("pulled"));
    assert!(pulled.body() == &object[..]);
    let seen = app.origin.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].head.to_ascii_lowercase().contains("\r\nrange:"),
        "Range is never forwarded on a fill: {}",
        seen[0].head
    );
    // On a hit: several satisfiable ranges are answered with the whole object.
    let hit = app.send(&get_line(b"/ranges.bin", &many)).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-origin-pull"), None);
    assert!(hit.body() == &object[..]);
    // 9,999 unsatisfiable ranges and one that is: that one, 206.
    let mut one: Vec<String> = (0..9_999)
        .map(|i| format!("{}-{}", 200_000 + i, 200_000 + i))
        .collect();
    one.push("10-19".to_owned());
    let one = format!("Range: bytes={}\r\n", one.join(","));
    let partial = app.send(&get_line(b"/ranges.bin", &one)).await;
    assert_eq!(partial.status, 206);
    assert_eq!(
        partial.header("content-range").as_deref(),
        Some("bytes 10-19/100000")
    );
    assert!(partial.body() == &object[10..20]);
    assert_eq!(app.origin.total_requests(), 1);
}

/// A `Range` GET on a miss (the default `RangeMiss::ServeRangeAndFill`): the client gets its
/// range from the origin; what is stored is the whole object, fetched without `Range` (a
/// range stored as the object would poison every later hit).
#[tokio::test]
async fn a_range_miss_never_stores_the_range() {
    let app = App::start(Inner::ServeStore, |r| r).await;
    let object = random_bytes(100_000, 78);
    app.origin.object("r.bin", object.clone());
    let answer = app
        .send(&get_line(b"/r.bin", "Range: bytes=100-199\r\n"))
        .await;
    assert_eq!(answer.status, 206);
    assert!(answer.body() == &object[100..200]);
    let store = app.store.clone();
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            let store = store.clone();
            async move { stored(&*store, "r.bin").await.is_some() }
        })
        .await,
        "the background fill stored the object"
    );
    assert!(stored(&*app.store, "r.bin").await.unwrap() == object);
    let fills: Vec<_> = app
        .origin
        .seen()
        .into_iter()
        .filter(|s| !s.head.to_ascii_lowercase().contains("\r\nrange:"))
        .collect();
    assert_eq!(fills.len(), 1, "one fill, without Range");
    let hit = app.send(&get_line(b"/r.bin", "")).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-origin-pull"), None);
    assert!(hit.body() == &object[..]);
}

/// A rule that strips a prefix without its `/` turns the clean key `img../secret` into the
/// origin path `../secret`: the origin must never be asked for it (it once got
/// `/bucket/../secret`); the fill fails instead.
#[tokio::test]
async fn a_rewritten_key_never_leaves_the_origin_base_path() {
    let origin = FaultyOrigin::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let http = HttpOrigin::new(&format!("{}bucket", origin.url)).unwrap();
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(
            Rule::new(http)
                .prefix("img")
                .rewrite(tower_origin_pull::Rewrite::identity().strip_prefix("img")),
        )
        .build();
    let addr = serve(axum::Router::new().layer(layer)).await;
    let (status, _) = raw_request(addr, &get_line(b"/img../secret", "")).await;
    assert_eq!(status, 502, "refused as a failed pull");
    assert_eq!(origin.connections(), 0, "the origin was not asked");
    assert!(listing(&*store).await.is_empty());
    for seen in origin.seen() {
        assert!(
            seen.target.starts_with("/bucket/")
                && !seen.target.split('/').any(|s| s == ".." || s == "."),
            "left the base path: {}",
            seen.target
        );
    }
}

/// What each unclean target gets from each inner service, for RELIABILITY.md
/// (`cargo test --test hostile -- --ignored --nocapture answers_table`).
#[tokio::test]
#[ignore = "prints a table; the assertions are in unclean_paths_are_never_fetched_nor_stored"]
async fn answers_table() {
    let apps = [
        App::start(Inner::AlwaysMissing, |r| r).await,
        App::start(Inner::ServeStore, |r| r).await,
        App::start(Inner::ServeDir, |r| r).await,
    ];
    println!("| input | always-404 inner | ServeStore | ServeDir |");
    println!("|---|---|---|---|");
    for (row, target) in unclean_targets() {
        let mut cells = Vec::new();
        for app in &apps {
            cells.push(app.send(&get_line(&target, "")).await.status.to_string());
        }
        println!("| {row} | {} |", cells.join(" | "));
    }
}
