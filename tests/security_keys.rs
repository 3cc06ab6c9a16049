//! Issue 13, keys: findings 7 and 8 reproduced the way the review found them, the hostile
//! key table for what servers read as dot segments, and a property over it.
//!
//! - Finding 7, `..;` reaches the origin: `/..;/admin/secret.txt` (and `..;jsessionid=…`,
//!   `.;`, fullwidth and other Unicode dots, fullwidth solidus) is not a key, so the origin is
//!   never asked; Tomcat, Jetty and Spring would have read it as `..`.
//! - Finding 8, keys that break a local disk: with `ServeStore` over a `LocalFileSystem` as
//!   the inner service, `assets` and `assets/logo.png` both answer `200` with their bytes,
//!   every time, in either order; keys ending in `#<digits>` too. Nothing answers `500`;
//!   what the disk cannot hold is streamed without being stored.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use proptest::prelude::*;
use tower_origin_pull::{
    BucketStore, Error, HttpOrigin, OriginPullBuilder, Rule, ServeStore, Store, key,
};

use common::faulty::raw_request;
use common::*;

fn origin(url: &str) -> HttpOrigin {
    HttpOrigin::builder(url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

// ----- finding 7: dot segments servers read as `..` -----

/// Paths whose decoded segments a server may read as `.` or `..`, or split at a `/`.
const DOT_LIKE: &[&str] = &[
    "/..;/admin/secret.txt",
    "/..;jsessionid=1/admin/secret.txt",
    "/.;/admin/secret.txt",
    "/.;x/admin/secret.txt",
    "/a/..;/..;/admin/secret.txt",
    "/%2e%2e;/admin/secret.txt",
    "/..%3b/admin/secret.txt",
    "/..%3Bjsessionid=abc/admin/secret.txt",
    "/%EF%BC%8E%EF%BC%8E/admin/secret.txt",   // fullwidth ．．
    "/%EF%BC%8E/admin/secret.txt",            // fullwidth ．
    "/%EF%BC%8E%EF%BC%8E;x/admin/secret.txt", // ．．;x
    "/.%EF%BC%8E/admin/secret.txt",           // .．
    "/%E2%80%A4%E2%80%A4/admin/secret.txt",   // one-dot leaders ․․
    "/%E2%80%A5/admin/secret.txt",            // two-dot leader ‥
    "/%EF%B9%92%EF%B9%92/admin/secret.txt",   // small full stops ﹒﹒
    "/%EF%B8%B0/admin/secret.txt",            // vertical two-dot leader ︰
    "/..%EF%BC%9B/admin/secret.txt",          // .. and a fullwidth semicolon
    "/..%EF%B9%94x/admin/secret.txt",         // .. and a small semicolon
    "/..%CD%BE/admin/secret.txt",             // .. and a Greek question mark (NFC: ;)
    "/%EF%BC%8F..%EF%BC%8Fadmin/secret.txt",  // fullwidth solidus around ..
    "/x%EF%BC%BC..%EF%BC%BCadmin",            // fullwidth reverse solidus
    "/x%EF%B9%A8..",                          // small reverse solidus
];

#[tokio::test]
async fn dot_segments_for_java_servers_never_reach_the_origin() {
    // An origin below /public that, like Tomcat, would resolve `..;` to `..`: it answers
    // every path, so any request that reached it would be a 200.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let any = serve(Router::new().fallback(move |req: Request| {
        let s = s.clone();
        async move {
            let target = req.uri().to_string();
            s.lock().unwrap().push(target.clone());
            Response::new(Body::from(format!("origin:{target}")))
        }
    }))
    .await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(origin(&format!("http://{any}/public"))))
        .build();
    let m = serve(
        Router::new()
            .fallback_service(ServeStore::new(store.clone()))
            .layer(layer),
    )
    .await;
    for target in DOT_LIKE {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_request(m, raw.as_bytes()).await;
        assert_ne!(
            status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(status < 500, "{target}: {status}");
    }
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "asked the origin"
    );
    assert!(listing(&*store).await.is_empty());
    // What is not a dot segment still works, `;` and dots included.
    for (target, asked) in [
        ("/x;v=1", "/public/x;v=1"),
        ("/a/...;/b", "/public/a/...;/b"),
        ("/a/b..;c", "/public/a/b..;c"),
        ("/%E2%80%A6/e", "/public/%E2%80%A6/e"), // an ellipsis is three dots
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
        assert_eq!(raw_request(m, raw.as_bytes()).await.0, 200, "{target}");
        assert_eq!(seen.lock().unwrap().last().map(String::as_str), Some(asked));
    }
}

#[test]
fn the_hostile_key_table_for_dot_segments() {
    for target in DOT_LIKE {
        assert_eq!(key::parse(target), None, "{target}");
        // The same key given decoded (a warm-up list, an API caller) is refused too.
        let decoded = percent_decode_str(&target[1..]).decode_utf8().unwrap();
        assert!(!key::is_clean(&decoded), "{decoded:?}");
    }
    for (segment, dot_like) in [
        (".", true),
        ("..", true),
        ("..;", true),
        (".;", true),
        ("..;jsessionid=0123", true),
        (".;x", true),
        ("..;/", true),
        ("．．", true),
        ("．", true),
        ("‥", true),
        ("․․", true),
        ("﹒;", true),
        ("..；", true),
        ("..;;", true),
        ("...", false),
        ("…", false),
        ("...;", false),
        (".a", false),
        ("a..", false),
        (";..", false),
        (";", false),
        ("", false),
        ("⒈", false),
        (".．.", false),
    ] {
        assert_eq!(key::reads_as_dot_segment(segment), dot_like, "{segment:?}");
    }
}

/// The NFKC form of the code points whose NFKC form holds `.`, `;`, `/` or `\` (Unicode's
/// data, listed independently of the crate's tables; every other code point this test
/// uses is its own NFKC form).
const NFKC: &[(char, &str)] = &[
    ('\u{37E}', ";"),
    ('\u{2024}', "."),
    ('\u{2025}', ".."),
    ('\u{2026}', "..."),
    ('\u{2100}', "a/c"),
    ('\u{2101}', "a/s"),
    ('\u{2105}', "c/o"),
    ('\u{2106}', "c/u"),
    ('\u{2488}', "1."),
    ('\u{2491}', "10."),
    ('\u{33C2}', "a.m."),
    ('\u{33C7}', "Co."),
    ('\u{FE14}', ";"),
    ('\u{FE19}', "..."),
    ('\u{FE30}', ".."),
    ('\u{FE52}', "."),
    ('\u{FE54}', ";"),
    ('\u{FE68}', "\\"),
    ('\u{FF0E}', "."),
    ('\u{FF0F}', "/"),
    ('\u{FF1B}', ";"),
    ('\u{FF3C}', "\\"),
    ('\u{1F100}', "0."),
];

fn nfkc(segment: &str) -> String {
    let table: HashMap<char, &str> = NFKC.iter().copied().collect();
    segment
        .chars()
        .map(|c| {
            table
                .get(&c)
                .map_or_else(|| c.to_string(), |s| (*s).to_owned())
        })
        .collect()
}

/// A segment a server that strips path parameters and normalises NFKC could misread.
fn model_misread(segment: &str) -> bool {
    let normal = nfkc(segment);
    let before = normal.split(';').next().unwrap_or_default();
    before == "." || before == ".." || normal.contains('/') || normal.contains('\\')
}

fn atoms() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        ".",
        "..",
        ";",
        "；",
        "\u{37E}",
        "．",
        "‥",
        "․",
        "﹒",
        "︰",
        "…",
        "／",
        "＼",
        "﹨",
        "℅",
        "⒈",
        "㏂",
        "a",
        "jsessionid=1",
        "x",
        " ",
        "é",
    ])
    .prop_map(str::to_owned)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// A key is accepted exactly when none of its segments is empty or misread by the model,
    /// and an accepted key's origin URL has no segment the model misreads either.
    #[test]
    fn keys_are_accepted_exactly_when_no_server_misreads_a_segment(
        segments in prop::collection::vec(prop::collection::vec(atoms(), 0..4), 1..4)
    ) {
        let segments: Vec<String> = segments.into_iter().map(|s| s.concat()).collect();
        let clean = segments.iter().all(|s| !s.is_empty() && !model_misread(s));
        let path: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string())
            .collect();
        let parsed = key::parse(&format!("/{}", path.join("/")));
        let joined = segments.join("/");
        prop_assert_eq!(parsed.as_deref(), clean.then_some(joined.as_str()));
        prop_assert_eq!(key::is_clean(&joined), clean, "{:?}", joined);
        if let Some(k) = parsed {
            let o = HttpOrigin::new("http://h/base").unwrap();
            let url = o.url_for(&k, None).unwrap();
            let rest = url.path().strip_prefix("/base/").unwrap();
            for sent in rest.split('/') {
                let sent = percent_decode_str(sent).decode_utf8().unwrap();
                prop_assert!(!model_misread(&sent), "{:?} in {}", sent, url);
            }
        }
    }
}

// ----- finding 8: keys that break a local disk -----

struct Disk {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    url: String,
    origin: TestOrigin,
}

/// `ServeStore` over a `LocalFileSystem` as the inner service, the layer writing to the same
/// directory, an origin with `assets` and `assets/logo.png` (and `v#1`, `d/f.txt#12`).
async fn disk() -> Disk {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let origin = TestOrigin::start().await;
    origin.object("assets", "the assets file");
    origin.object("assets/logo.png", "PNG bytes");
    origin.object("v%231", "staging-like 1");
    origin.object("d/f.txt%2312", "staging-like 2");
    let layer = OriginPullBuilder::from_object_store(fs.clone())
        .rule(Rule::new(origin_of(&origin)))
        .build();
    let addr = serve(
        Router::new()
            .fallback_service(ServeStore::new(fs))
            .layer(layer),
    )
    .await;
    Disk {
        _dir: dir,
        root,
        url: format!("http://{addr}/"),
        origin,
    }
}

fn origin_of(o: &TestOrigin) -> HttpOrigin {
    origin(&o.url)
}

/// The objects' files below `root` (not the metadata kept beside them), relative, sorted.
fn files(root: &std::path::Path) -> Vec<String> {
    let meta = format!("{}/", tower_origin_pull::store::META_PREFIX);
    files_below(root)
        .into_iter()
        .filter(|f| !f.starts_with(&meta))
        .collect()
}

async fn expect(c: &HttpClient, url: &str, body: &str) {
    let got = get(c, url).await;
    assert_eq!(got.status, StatusCode::OK, "{url}: {:?}", got.body);
    assert_eq!(got.body(), body.as_bytes(), "{url}");
}

#[tokio::test]
async fn a_file_and_a_directory_of_the_same_name_both_answer_200_every_time() {
    let c = client();
    // The review's order: `assets` first, which becomes a file...
    let d = disk().await;
    for _ in 0..3 {
        expect(&c, &format!("{}assets", d.url), "the assets file").await;
        expect(&c, &format!("{}assets/logo.png", d.url), "PNG bytes").await;
    }
    assert_eq!(files(&d.root), ["assets"]);
    // ...so `assets/logo.png` cannot be stored and is pulled each time.
    assert_eq!(d.origin.hits("assets"), 1);
    assert_eq!(d.origin.hits("assets/logo.png"), 3);

    // The other order: `assets/logo.png` first makes `assets` a directory.
    let d = disk().await;
    for _ in 0..3 {
        expect(&c, &format!("{}assets/logo.png", d.url), "PNG bytes").await;
        expect(&c, &format!("{}assets", d.url), "the assets file").await;
    }
    assert_eq!(files(&d.root), ["assets/logo.png"]);
    assert_eq!(d.origin.hits("assets/logo.png"), 1);
    assert_eq!(d.origin.hits("assets"), 3);
}

#[tokio::test]
async fn keys_named_like_staging_files_answer_200_and_are_not_stored() {
    let c = client();
    let d = disk().await;
    for _ in 0..2 {
        expect(&c, &format!("{}v%231", d.url), "staging-like 1").await;
        expect(&c, &format!("{}d/f.txt%2312", d.url), "staging-like 2").await;
    }
    assert_eq!(files(&d.root), Vec::<String>::new());
    assert!(staging_files(&d.root).is_empty());
}

#[tokio::test]
async fn serve_store_answers_404_for_what_a_local_disk_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("assets"), "a file").unwrap();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::write(root.join("dir/sub/x"), "x").unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let m = serve(Router::new().fallback_service(ServeStore::new(fs))).await;
    let c = client();
    for (path, status) in [
        ("assets", 200),
        ("assets/logo.png", 404), // ENOTDIR
        ("assets/a/b", 404),      // ENOTDIR, deeper
        ("dir", 404),             // a directory
        ("dir/sub", 404),         // a directory
        ("dir/sub/x", 200),
        ("x%231", 404),           // a staging name
        ("dir/sub/x%23123", 404), // a staging name
    ] {
        for method in [http::Method::GET, http::Method::HEAD] {
            let got = request(&c, method.clone(), &format!("http://{m}/{path}")).await;
            assert_eq!(got.status.as_u16(), status, "{method} {path}");
        }
        let ranged = get_with(&c, &format!("http://{m}/{path}"), &[("range", "bytes=0-0")]).await;
        assert!(ranged.status.as_u16() < 500, "ranged {path}");
    }
}

#[tokio::test]
async fn the_store_refuses_what_a_local_disk_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("assets"), "a file").unwrap();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    // Recognised by itself, or named when a wrapper hides it.
    let hidden: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
        LocalFileSystem::new_with_prefix(&root).unwrap(),
        "dir",
    ));
    for (store, keys) in [
        (
            BucketStore::new(fs.clone()),
            vec![
                "assets/logo.png",
                "assets/a/b",
                "dir",
                "dir/sub",
                "x#1",
                "dir/y#0042",
            ],
        ),
        (
            BucketStore::new(hidden).with_local_root(root.join("dir")),
            vec!["sub", "z#7"],
        ),
        (
            BucketStore::new(Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap()))
                .with_prefix(Path::from("dir")),
            vec!["sub", "z#7"],
        ),
    ] {
        for key in keys {
            // A wrapper that hides the disk is checked at `begin`; a bare LocalFileSystem,
            // written directly, with its first write to disk (here: the commit), so the
            // fill's head never waits for the check.
            let refused = match store.begin(key, object_store::Attributes::new()).await {
                Ok(mut w) => {
                    w.write(bytes::Bytes::from_static(b"x")).await.unwrap();
                    w.commit().await.map(|_| "committed")
                }
                Err(e) => Err(e),
            };
            match refused {
                Err(Error::Unstorable { key: k, reason }) => {
                    assert_eq!(k, key);
                    assert!(!reason.is_empty());
                }
                other => panic!("{key}: {other:?}"),
            }
            // A read of it is a miss, not an error.
            assert!(store.read(key, 0).await.unwrap().is_none(), "{key}");
        }
        // Keys the disk can hold are written as before.
        for key in ["new/file.txt", "x#a", "x#1b", "x#"] {
            let w = store.begin(key, object_store::Attributes::new()).await;
            assert!(w.is_ok(), "{key}");
        }
    }
    // What was refused left nothing behind: no staging file, no object.
    assert_eq!(files_below(&root), ["assets"], "files left");
    assert!(root.join("dir/sub").is_dir());
    // Object stores are not file systems: the same keys are fine in memory.
    let memory = BucketStore::new(Arc::new(InMemory::new()));
    for key in ["assets/logo.png", "dir", "x#1"] {
        let mut w = memory
            .begin(key, object_store::Attributes::new())
            .await
            .unwrap();
        w.write(bytes::Bytes::from_static(b"m")).await.unwrap();
        w.commit().await.unwrap();
    }
}
