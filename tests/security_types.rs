//! Issue 13, finding 3 and "Never upgrade an object's type": `Content-Type` travels with
//! `X-Content-Type-Options`, `Content-Security-Policy` and `Content-Disposition` — on the
//! pulled response, as stored attributes, on every `ServeStore` hit (`200`, `HEAD`, `206`,
//! and the two safety headers on `304`) and when a fill replays a stored object; and a store
//! that keeps no attributes (a local disk, served by extension) is not given an object it
//! would serve as a more dangerous type. Real origins on 127.0.0.1, real stores (InMemory,
//! LocalFileSystem, and an in-process S3 server with the `aws` feature).

mod common;
#[cfg(feature = "aws")]
#[path = "common/s3.rs"]
#[allow(dead_code, reason = "the server's inspections are for other suites")]
mod s3_server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{Attribute, Attributes, ObjectStore};
use tower::Layer;
use tower_http::services::ServeDir;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore, Store};

use common::*;

/// Headers an origin sends.
type Headers = &'static [(&'static str, &'static str)];

/// What the origin of the finding sent with `evil.html`.
const SAFETY: [(&str, &str); 4] = [
    ("content-type", "text/plain"),
    ("content-disposition", "attachment; filename=\"evil.html\""),
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "sandbox"),
];

const EVIL: &str = "<script>alert(document.domain)</script>";

fn origin_object(
    origin: &TestOrigin,
    path: &str,
    body: &'static str,
    headers: &[(&'static str, &'static str)],
) {
    origin.put(
        path,
        Behaviour::Object {
            body: Bytes::from_static(body.as_bytes()),
            headers: headers.to_vec(),
        },
    );
}

fn http_origin(url: &str) -> HttpOrigin {
    HttpOrigin::builder(url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The four headers, exactly as the origin sent them.
#[track_caller]
fn assert_safety(got: &Got, what: &str) {
    for (name, value) in SAFETY {
        assert_eq!(
            got.headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{what}: {name} in {:?}",
            got.headers
        );
    }
}

/// `ServeStore` over `store`, the layer pulling misses into it.
async fn serve_store_stack(store: Arc<dyn ObjectStore>, origin_url: &str) -> String {
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(Rule::new(http_origin(origin_url)))
        .build();
    let app = axum::Router::new()
        .fallback_service(ServeStore::new(store))
        .layer(layer);
    format!("http://{}/", serve(app).await)
}

/// The finding as found, over a store that keeps attributes: the pulled response and every
/// kind of hit keep the origin's type and its three safety headers.
async fn every_answer_keeps_them(store: Arc<dyn ObjectStore>, name: &str) {
    let origin = TestOrigin::start().await;
    origin_object(&origin, "evil.html", EVIL, &SAFETY);
    let url = format!(
        "{}evil.html",
        serve_store_stack(store.clone(), &origin.url).await
    );
    let c = client();

    let pulled = get(&c, &url).await;
    assert_eq!(pulled.status, StatusCode::OK, "{name}");
    assert!(pulled.outcome().is_some(), "{name}: the first GET pulls");
    assert_eq!(pulled.body(), EVIL.as_bytes());
    assert_safety(&pulled, &format!("{name}: pulled"));

    // Stored: the type and disposition natively, the two others as metadata.
    let attributes = stored_attributes(&*store, "evil.html").await;
    let attr = |a: Attribute| attributes.get(&a).map(|v| v.as_ref().to_owned());
    assert_eq!(
        attr(Attribute::ContentType).as_deref(),
        Some(SAFETY[0].1),
        "{name}"
    );
    assert_eq!(
        attr(Attribute::ContentDisposition).as_deref(),
        Some(SAFETY[1].1),
        "{name}"
    );
    let metadata: Vec<&str> = attributes
        .iter()
        .filter(|(a, _)| matches!(a, Attribute::Metadata(_)))
        .map(|(_, v)| v.as_ref())
        .collect();
    for value in ["nosniff", "sandbox"] {
        assert!(
            metadata.contains(&value),
            "{name}: {value} in {attributes:?}"
        );
    }

    let hit = get(&c, &url).await;
    assert_eq!(hit.status, StatusCode::OK, "{name}");
    assert_eq!(hit.outcome(), None, "{name}: the second GET is a hit");
    assert_eq!(hit.body(), EVIL.as_bytes());
    assert_safety(&hit, &format!("{name}: hit"));

    let head = request(&c, Method::HEAD, &url).await;
    assert_eq!(head.status, StatusCode::OK, "{name}");
    assert_safety(&head, &format!("{name}: HEAD"));

    let range = get_with(&c, &url, &[("range", "bytes=0-7")]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT, "{name}");
    assert_eq!(range.body(), &EVIL.as_bytes()[..8]);
    assert_safety(&range, &format!("{name}: Range"));

    let etag = hit.headers["etag"].to_str().unwrap().to_owned();
    let if_range = get_with(&c, &url, &[("range", "bytes=8-"), ("if-range", &etag)]).await;
    assert_eq!(if_range.status, StatusCode::PARTIAL_CONTENT, "{name}");
    assert_safety(&if_range, &format!("{name}: If-Range"));

    let conditional = get_with(&c, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED, "{name}");
    assert_eq!(
        conditional.headers["x-content-type-options"], "nosniff",
        "{name}"
    );
    assert_eq!(
        conditional.headers["content-security-policy"], "sandbox",
        "{name}"
    );
    assert_ne!(
        conditional
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/html"),
        "{name}: 304"
    );

    assert_eq!(
        origin.hits("evil.html"),
        1,
        "{name}: the origin is asked once"
    );
}

#[tokio::test]
async fn finding_3_in_memory_every_answer_keeps_type_and_safety_headers() {
    every_answer_keeps_them(Arc::new(InMemory::new()), "memory").await;
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn finding_3_s3_every_answer_keeps_type_and_safety_headers() {
    let server = s3_server::S3Server::start().await;
    every_answer_keeps_them(server.store(), "s3").await;
}

/// A fill that finds the object already stored (the inner service never has it) replays the
/// stored headers: the same four.
#[tokio::test]
async fn a_replayed_object_keeps_type_and_safety_headers() {
    let origin = TestOrigin::start().await;
    origin_object(&origin, "evil.html", EVIL, &SAFETY);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(Rule::new(http_origin(&origin.url)))
        .build();
    // No route: every request is a 404 to the layer.
    let app = axum::Router::new().layer(layer);
    let url = format!("http://{}/evil.html", serve(app).await);
    let c = client();
    let pulled = get(&c, &url).await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_safety(&pulled, "pulled");
    assert!(stored(&*store, "evil.html").await.is_some());
    let replayed = get(&c, &url).await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(replayed.body(), EVIL.as_bytes());
    assert_safety(&replayed, "replayed from the store");
    assert_eq!(origin.hits("evil.html"), 1, "replayed, not pulled again");
}

/// Only the four headers of the origin's response pass with the type; user metadata named
/// like the crate's own stored names does not become a header.
#[tokio::test]
async fn origin_metadata_cannot_pose_as_a_safety_header() {
    let origin = TestOrigin::start().await;
    origin_object(
        &origin,
        "page.txt",
        "plain",
        &[
            ("content-type", "text/plain"),
            ("x-amz-meta-origin_pull_content_security_policy", "sandbox"),
            ("x-amz-meta-origin_pull_x_content_type_options", "nosniff"),
        ],
    );
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let url = format!(
        "{}page.txt",
        serve_store_stack(store.clone(), &origin.url).await
    );
    let c = client();
    for what in ["pulled", "hit"] {
        let got = get(&c, &url).await;
        assert_eq!(got.status, StatusCode::OK, "{what}");
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "x-amz-meta-origin_pull_content_security_policy",
            "x-amz-meta-origin_pull_x_content_type_options",
        ] {
            assert!(got.headers.get(name).is_none(), "{what}: {name}");
        }
    }
    // The type, and the time of the pull (the origin sent no `Last-Modified`): nothing the
    // origin named.
    let stored = stored_attributes(&*store, "page.txt").await;
    let names: Vec<String> = stored.iter().map(|(a, _)| format!("{a:?}")).collect();
    assert_eq!(stored.len(), 2, "{names:?}");
    assert!(stored.get(&object_store::Attribute::ContentType).is_some());
    assert!(
        stored
            .get(&object_store::Attribute::Metadata(
                "origin_pull_last_modified".into()
            ))
            .is_some(),
        "{names:?}"
    );
}

/// What a store without attributes says about itself, up front or once it has learned it.
#[tokio::test]
async fn a_local_disk_store_says_it_keeps_no_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let local = || Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    assert!(BucketStore::new(Arc::new(InMemory::new())).keeps_attributes());
    let on_disk = BucketStore::new(local());
    assert!(!on_disk.keeps_attributes(), "known from the start");
    let shared: Arc<dyn Store> = Arc::new(on_disk);
    assert!(!shared.keeps_attributes(), "through Arc<dyn Store>");
    assert!(
        !Arc::new(shared.clone()).keeps_attributes(),
        "through Arc<Arc<dyn Store>>"
    );

    // A wrapper that hides its backend: learned from the first write with attributes.
    let hidden = BucketStore::new(Arc::new(PrefixStore::new(local(), "sub")));
    assert!(hidden.keeps_attributes(), "nothing known before a write");
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "text/plain".into());
    let mut write = hidden.begin("a.txt", attributes).await.unwrap();
    write.write(Bytes::from_static(b"x")).await.unwrap();
    write.commit().await.unwrap();
    assert!(!hidden.keeps_attributes(), "learned from NotImplemented");
    assert!(dir.path().join("sub/a.txt").exists(), "the bytes were kept");
}

/// The layer over tower-http's `ServeDir`, storing into the same directory: a file server
/// that types by extension and sends no header the origin sent.
async fn serve_dir_stack(dir: &std::path::Path, origin_url: &str) -> String {
    let store = BucketStore::new(Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap()));
    let layer = OriginPullBuilder::new(store)
        .rule(Rule::new(http_origin(origin_url)))
        .build();
    let app = axum::Router::new().fallback_service(layer.layer(ServeDir::new(dir)));
    format!("http://{}/", serve(app).await)
}

/// What a file server would serve as the origin typed it is still stored on a local disk
/// and then served by `ServeDir` (passes with or without the `type_risk` wiring).
#[tokio::test]
async fn a_local_disk_still_stores_what_a_file_server_types_the_same() {
    let origin = TestOrigin::start().await;
    // Key, the origin's headers, the type ServeDir answers.
    let objects: [(&str, Headers, &str); 4] = [
        ("a.png", &[("content-type", "image/png")], "image/png"),
        (
            "index.html",
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("content-disposition", "inline"),
            ],
            "text/html",
        ),
        // Untyped, and the guess is not an active type.
        ("notes.txt", &[], "text/plain"),
        // No guess: the file server answers octet-stream, a download.
        (
            "LICENSE",
            &[("content-type", "text/plain")],
            "application/octet-stream",
        ),
    ];
    for (key, headers, _) in &objects {
        origin_object(&origin, key, "body", headers);
    }
    let dir = tempfile::tempdir().unwrap();
    let url = serve_dir_stack(dir.path(), &origin.url).await;
    let c = client();
    for (key, _, served) in objects {
        let pulled = get(&c, &format!("{url}{key}")).await;
        assert_eq!(pulled.status, StatusCode::OK, "{key}");
        assert!(pulled.outcome().is_some(), "{key}: pulled");
        assert!(dir.path().join(key).exists(), "{key}: stored");
        let hit = get(&c, &format!("{url}{key}")).await;
        assert_eq!(hit.outcome(), None, "{key}: a hit from ServeDir");
        let ty = hit.headers["content-type"].to_str().unwrap();
        assert!(ty.starts_with(served), "{key}: {ty}");
        assert_eq!(origin.hits(key), 1, "{key}");
    }
}

/// The finding as found on a local disk: `ServeDir` would answer `evil.html` as `text/html`
/// with no disposition, no nosniff, no CSP. The object must not be stored, so every answer
/// is the origin's. Likewise for each of the four headers alone.
#[tokio::test]
async fn finding_3_local_disk_never_stores_what_a_file_server_would_retype() {
    let origin = TestOrigin::start().await;
    origin_object(&origin, "evil.html", EVIL, &SAFETY);
    let alone: [(&str, (&'static str, &'static str)); 4] = [
        ("typed.html", ("content-type", "text/plain")),
        ("attachment.txt", ("content-disposition", "attachment")),
        ("nosniff.txt", ("x-content-type-options", "nosniff")),
        ("csp.txt", ("content-security-policy", "sandbox")),
    ];
    for (key, header) in alone {
        origin_object(&origin, key, EVIL, &[header]);
    }
    // Untyped, guessed as active content.
    origin_object(&origin, "untyped.svg", EVIL, &[]);
    let dir = tempfile::tempdir().unwrap();
    let url = serve_dir_stack(dir.path(), &origin.url).await;
    let c = client();
    for round in 0..3 {
        let got = get(&c, &format!("{url}evil.html")).await;
        assert_eq!(got.status, StatusCode::OK, "round {round}");
        assert_eq!(got.body(), EVIL.as_bytes());
        assert_safety(&got, &format!("evil.html, round {round}"));
    }
    assert!(!dir.path().join("evil.html").exists(), "not stored");
    assert_eq!(origin.hits("evil.html"), 3, "every answer is the origin's");
    for (key, (name, value)) in alone {
        for round in 0..2 {
            let got = get(&c, &format!("{url}{key}")).await;
            assert_eq!(got.status, StatusCode::OK, "{key}");
            assert_eq!(got.headers[name], value, "{key}, round {round}");
        }
        assert!(!dir.path().join(key).exists(), "{key}: not stored");
    }
    for _ in 0..2 {
        let got = get(&c, &format!("{url}untyped.svg")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_ne!(
            got.headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("image/svg+xml")
        );
    }
    assert!(
        !dir.path().join("untyped.svg").exists(),
        "untyped.svg: not stored"
    );
    assert!(staging_files(dir.path()).is_empty());
}
