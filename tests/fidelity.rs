//! Objects answer as their origin did: validators, metadata of every convention and kept
//! headers survive the pull on every store (memory, local disk, S3), and preconditions are
//! evaluated on a miss exactly as on the hit after it.

mod common;
#[cfg(feature = "aws")]
#[path = "common/s3.rs"]
#[allow(dead_code)]
mod s3_server;

use std::sync::Arc;

use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tempfile::TempDir;
use tower_origin_pull::{
    BucketStore, HttpOrigin, KeepHeaders, OriginPullBuilder, Rule, ServeStore,
};

use common::*;

const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// What the origin sends with every object here.
const ORIGIN_HEADERS: [(&str, &str); 10] = [
    ("etag", "\"origin-v1\""),
    ("last-modified", LAST_MODIFIED),
    ("cache-control", "public, max-age=60"),
    ("content-disposition", "inline; filename=\"a.txt\""),
    ("expires", "Thu, 01 Dec 2044 16:00:00 GMT"),
    ("x-oss-meta-a", "one"),
    ("x-cos-meta-b", "two"),
    ("content-type", "text/plain"),
    ("x-request-count", "1"),
    ("set-cookie", "session=secret"),
];

/// Headers the pulled response and every hit carry alike.
const SAME: [&str; 10] = [
    "etag",
    "last-modified",
    "cache-control",
    "content-disposition",
    "expires",
    "x-oss-meta-a",
    "x-cos-meta-b",
    "content-type",
    "accept-ranges",
    "content-length",
];

struct Mirror {
    name: &'static str,
    url: String,
    origin: TestOrigin,
    _dir: Option<TempDir>,
    #[cfg(feature = "aws")]
    _s3: Option<s3_server::S3Server>,
}

async fn stores() -> Vec<(&'static str, Arc<dyn ObjectStore>, Option<TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    vec![
        ("memory", Arc::new(InMemory::new()), None),
        ("local", local, Some(dir)),
    ]
}

/// A mirror over `store` (layer + ServeStore) in front of a fresh origin.
async fn mirror(
    name: &'static str,
    store: Arc<dyn ObjectStore>,
    rule: impl Fn(Rule) -> Rule,
) -> (String, TestOrigin) {
    let origin = TestOrigin::start().await;
    let layer = OriginPullBuilder::new(BucketStore::new(store.clone()))
        .rule(rule(
            Rule::new(HttpOrigin::new(&origin.url).unwrap()).store_private(true),
        ))
        .build();
    let app = axum::Router::new()
        .fallback_service(ServeStore::new(store))
        .layer(layer);
    let addr = serve(app).await;
    let _ = name;
    (format!("http://{addr}/"), origin)
}

async fn every_mirror(keep: bool) -> Vec<Mirror> {
    let rule = move |r: Rule| {
        if keep {
            r.keep_response_headers(KeepHeaders::All)
        } else {
            r
        }
    };
    let mut out = Vec::new();
    for (name, store, dir) in stores().await {
        let (url, origin) = mirror(name, store, rule).await;
        out.push(Mirror {
            name,
            url,
            origin,
            _dir: dir,
            #[cfg(feature = "aws")]
            _s3: None,
        });
    }
    #[cfg(feature = "aws")]
    {
        let server = s3_server::S3Server::start().await;
        let (url, origin) = mirror("s3", server.store(), rule).await;
        out.push(Mirror {
            name: "s3",
            url,
            origin,
            _dir: None,
            _s3: Some(server),
        });
    }
    out
}

fn object(m: &Mirror, key: &str, body: &'static [u8]) -> String {
    m.origin.put(
        key,
        Behaviour::Object {
            body: body.into(),
            headers: ORIGIN_HEADERS.to_vec(),
        },
    );
    format!("{}{key}", m.url)
}

#[tokio::test]
async fn validators_and_metadata_survive_the_pull_on_every_store() {
    let c = client();
    for m in every_mirror(false).await {
        let url = object(&m, "docs/a.txt", b"hello, world");
        let pulled = get(&c, &url).await;
        assert_eq!(pulled.status, StatusCode::OK, "{}", m.name);
        assert_eq!(pulled.outcome(), Some("pulled"), "{}", m.name);
        let hit = get(&c, &url).await;
        assert_eq!(hit.outcome(), None, "{}: a plain hit", m.name);
        assert_eq!(hit.body(), b"hello, world");
        for name in SAME {
            assert_eq!(
                hit.headers.get(name),
                pulled.headers.get(name),
                "{}: {name} differs between the pull and the hit",
                m.name
            );
            assert!(hit.headers.contains_key(name), "{}: {name} missing", m.name);
        }
        assert_eq!(hit.headers["etag"], "\"origin-v1\"", "{}", m.name);
        // Revalidating with what the pull gave: 304; resuming with it: 206.
        let revalidated = get_with(&c, &url, &[("if-none-match", "\"origin-v1\"")]).await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{}", m.name);
        let since = get_with(&c, &url, &[("if-modified-since", LAST_MODIFIED)]).await;
        assert_eq!(since.status, StatusCode::NOT_MODIFIED, "{}", m.name);
        let resumed = get_with(
            &c,
            &url,
            &[("range", "bytes=7-"), ("if-range", "\"origin-v1\"")],
        )
        .await;
        assert_eq!(resumed.status, StatusCode::PARTIAL_CONTENT, "{}", m.name);
        assert_eq!(resumed.body(), b"world");
        // Only the one origin request.
        assert_eq!(m.origin.hits("docs/a.txt"), 1, "{}", m.name);
        // Not kept unless asked: the application's own header, and never the cookie.
        assert!(hit.headers.get("x-request-count").is_none(), "{}", m.name);
        assert!(hit.headers.get("set-cookie").is_none(), "{}", m.name);
    }
}

#[tokio::test]
async fn kept_headers_are_on_every_hit_and_cookies_never() {
    let c = client();
    for m in every_mirror(true).await {
        let url = object(&m, "k.txt", b"kept");
        let pulled = get(&c, &url).await;
        assert_eq!(pulled.outcome(), Some("pulled"), "{}", m.name);
        assert_eq!(pulled.headers["x-request-count"], "1", "{}", m.name);
        assert!(pulled.headers.get("set-cookie").is_none(), "{}", m.name);
        for _ in 0..3 {
            let hit = get(&c, &url).await;
            assert_eq!(hit.outcome(), None, "{}", m.name);
            assert_eq!(hit.headers["x-request-count"], "1", "{}", m.name);
            assert!(hit.headers.get("set-cookie").is_none(), "{}", m.name);
        }
    }
}

/// The preconditions of the table, each with the status it gets on the object above.
#[allow(clippy::type_complexity)]
fn preconditions() -> Vec<(&'static str, Vec<(&'static str, &'static str)>, StatusCode)> {
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    let future = "Sat, 01 Jan 2050 00:00:00 GMT";
    vec![
        (
            "inm *",
            vec![("if-none-match", "*")],
            StatusCode::NOT_MODIFIED,
        ),
        (
            "inm match",
            vec![("if-none-match", "\"origin-v1\"")],
            StatusCode::NOT_MODIFIED,
        ),
        (
            "inm weak match",
            vec![("if-none-match", "W/\"origin-v1\"")],
            StatusCode::NOT_MODIFIED,
        ),
        (
            "inm other",
            vec![("if-none-match", "\"other\"")],
            StatusCode::OK,
        ),
        (
            "im match",
            vec![("if-match", "\"origin-v1\"")],
            StatusCode::OK,
        ),
        (
            "im other",
            vec![("if-match", "\"other\"")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            "ims past",
            vec![("if-modified-since", past)],
            StatusCode::OK,
        ),
        (
            "ims future",
            vec![("if-modified-since", future)],
            StatusCode::NOT_MODIFIED,
        ),
        (
            "ius past",
            vec![("if-unmodified-since", past)],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            "ius future",
            vec![("if-unmodified-since", future)],
            StatusCode::OK,
        ),
        (
            "if-range fresh",
            vec![("range", "bytes=0-3"), ("if-range", "\"origin-v1\"")],
            StatusCode::PARTIAL_CONTENT,
        ),
        (
            "if-range stale",
            vec![("range", "bytes=0-3"), ("if-range", "\"origin-v0\"")],
            StatusCode::OK,
        ),
        (
            "if-range date",
            vec![("range", "bytes=0-3"), ("if-range", LAST_MODIFIED)],
            StatusCode::PARTIAL_CONTENT,
        ),
    ]
}

#[tokio::test]
async fn preconditions_answer_the_same_cold_and_stored() {
    let c = client();
    for m in every_mirror(false).await {
        for (i, (what, headers, expected)) in preconditions().into_iter().enumerate() {
            let key = format!("p{i}.txt");
            let url = object(&m, &key, b"0123456789");
            let cold = get_with(&c, &url, &headers).await;
            assert_eq!(cold.status, expected, "{}: {what} cold", m.name);
            // The fill went on whatever the client got: the object is stored.
            let stored = eventually(std::time::Duration::from_secs(5), || {
                let c = c.clone();
                let url = url.clone();
                async move { get(&c, &url).await.outcome().is_none() }
            })
            .await;
            assert!(stored, "{}: {what}: stored after the cold answer", m.name);
            let hit = get_with(&c, &url, &headers).await;
            assert_eq!(hit.status, expected, "{}: {what} stored", m.name);
            for name in [
                "etag",
                "last-modified",
                "cache-control",
                "expires",
                "content-range",
                "content-length",
            ] {
                assert_eq!(
                    cold.headers.get(name),
                    hit.headers.get(name),
                    "{}: {what}: {name} cold vs stored",
                    m.name
                );
            }
            assert_eq!(cold.body(), hit.body(), "{}: {what}: body", m.name);
            // One origin request, a cold range too (it joins the fill: `RangeMiss::JoinFill`).
            assert_eq!(m.origin.hits(&key), 1, "{}: {what}", m.name);
        }
    }
}

#[tokio::test]
async fn an_origin_without_last_modified_gets_the_pull_time_on_the_pull_and_every_hit() {
    let c = client();
    for m in every_mirror(false).await {
        m.origin.put(
            "n.txt",
            Behaviour::Object {
                body: "no date".into(),
                headers: vec![("etag", "\"n1\"")],
            },
        );
        let url = format!("{}n.txt", m.url);
        let pulled = get(&c, &url).await;
        assert_eq!(pulled.outcome(), Some("pulled"), "{}", m.name);
        let date = pulled
            .headers
            .get("last-modified")
            .expect("a Last-Modified")
            .clone();
        let hit = get(&c, &url).await;
        assert_eq!(hit.outcome(), None, "{}", m.name);
        assert_eq!(hit.headers.get("last-modified"), Some(&date), "{}", m.name);
        let since = date.to_str().unwrap();
        let revalidated = get_with(&c, &url, &[("if-modified-since", since)]).await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{}", m.name);
    }
}
