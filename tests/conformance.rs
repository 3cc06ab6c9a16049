//! One suite of `Store` behaviours, the object_store way: a function per behaviour taking a
//! backend, run against `InMemory`, `LocalFileSystem` in a temp dir and, with the `aws`
//! feature, a real S3 protocol server (s3s-fs) reached through `AmazonS3` +
//! `HyperConnector`. Origins are real HTTP servers on 127.0.0.1.

mod common;
#[cfg(feature = "aws")]
#[path = "common/s3.rs"]
mod s3_server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Attribute, ObjectStore, ObjectStoreExt};
use tempfile::TempDir;
use tower_origin_pull::{BucketStore, HttpOrigin, OriginPullBuilder, Rule, ServeStore};

use common::*;

/// S3's smallest part (all but the last); used everywhere so every backend runs the same
/// multipart path.
const PART: usize = 5 * 1024 * 1024;

struct Backend {
    name: &'static str,
    store: Arc<dyn ObjectStore>,
    /// Whether the backend keeps object attributes (LocalFileSystem does not).
    keeps_attributes: bool,
    dir: Option<TempDir>,
    #[cfg(feature = "aws")]
    s3: Option<s3_server::S3Server>,
}

impl Backend {
    async fn memory() -> Self {
        Self {
            name: "memory",
            store: Arc::new(InMemory::new()),
            keeps_attributes: true,
            dir: None,
            #[cfg(feature = "aws")]
            s3: None,
        }
    }

    async fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            name: "local",
            store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            keeps_attributes: false,
            dir: Some(dir),
            #[cfg(feature = "aws")]
            s3: None,
        }
    }

    #[cfg(feature = "aws")]
    async fn s3() -> Self {
        let server = s3_server::S3Server::start().await;
        Self {
            name: "s3",
            store: server.store(),
            keeps_attributes: true,
            dir: None,
            s3: Some(server),
        }
    }

    /// Anything a write left behind outside the visible objects: LocalFileSystem staging
    /// files, open S3 multipart uploads.
    fn leftovers(&self) -> Vec<String> {
        let staging = self.dir.as_ref().map(|d| staging_files(d.path()));
        #[cfg(feature = "aws")]
        let uploads = self.s3.as_ref().map(|s3| s3.open_uploads());
        #[cfg(not(feature = "aws"))]
        let uploads: Option<Vec<String>> = None;
        staging.into_iter().chain(uploads).flatten().collect()
    }

    async fn assert_clean(&self, what: &str) {
        let store = self.store.clone();
        let clean = eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { listing(&*store).await.is_empty() }
        })
        .await;
        assert!(
            clean,
            "{}: {what}: objects left: {:?}",
            self.name,
            listing(&*self.store).await
        );
        let mut left = self.leftovers();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = self.leftovers();
        }
        assert_eq!(
            left,
            Vec::<String>::new(),
            "{}: {what}: leftovers",
            self.name
        );
    }
}

/// A store-serving app: `ServeStore` over the backend, the layer pulling misses into it.
async fn stack(
    b: &Backend,
    origin_url: &str,
    bucket: impl FnOnce(BucketStore) -> BucketStore,
) -> String {
    let origin = HttpOrigin::builder(origin_url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let layer = OriginPullBuilder::new(bucket(BucketStore::new(b.store.clone())))
        .rule(Rule::new(origin))
        .build();
    let app = axum::Router::new()
        .fallback_service(ServeStore::new(b.store.clone()))
        .layer(layer);
    format!("http://{}/", serve(app).await)
}

/// S3-legal multipart settings: 5 MiB parts from 5 MiB on.
fn multipart(b: BucketStore) -> BucketStore {
    b.with_multipart_threshold(PART).with_part_size(PART)
}

async fn pull_and_store(b: &Backend) {
    let origin = TestOrigin::start().await;
    origin.object("dir/hello.txt", "hello from the origin");
    let url = stack(b, &origin.url, |s| s).await;
    let c = client();
    let first = get(&c, &format!("{url}dir/hello.txt")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", b.name);
    assert_eq!(first.outcome(), Some("pulled"), "{}", b.name);
    assert_eq!(first.body(), b"hello from the origin");
    assert_eq!(
        stored(&*b.store, "dir/hello.txt").await.as_deref(),
        Some(&b"hello from the origin"[..]),
        "{}",
        b.name
    );
    let second = get(&c, &format!("{url}dir/hello.txt")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        second.outcome(),
        None,
        "{}: the second GET is a hit",
        b.name
    );
    assert_eq!(second.body(), b"hello from the origin");
    assert_eq!(origin.hits("dir/hello.txt"), 1);
    assert!(b.leftovers().is_empty(), "{}: {:?}", b.name, b.leftovers());
}

async fn large_multipart_pull(b: &Backend) {
    // Three parts: 5 MiB, 5 MiB and a short last one.
    let object = random_bytes(2 * PART + 123_457, 12);
    let origin = TestOrigin::start().await;
    origin.object("big/object.bin", object.clone());
    let url = stack(b, &origin.url, multipart).await;
    let got = get(&client(), &format!("{url}big/object.bin")).await;
    assert_eq!(got.outcome(), Some("pulled"), "{}", b.name);
    assert!(got.body() == &object[..], "{}: client bytes differ", b.name);
    let kept = stored(&*b.store, "big/object.bin").await.expect("stored");
    assert!(kept == object, "{}: stored bytes differ", b.name);
    assert_eq!(b.leftovers(), Vec::<String>::new(), "{}", b.name);
}

async fn truncated_origin_leaves_nothing(b: &Backend) {
    // Announce 12 MiB, send 7 MiB, close: the multipart path has uploaded one part by then.
    // Announce 1 MiB, send half: the single-put path.
    for (announced, sent) in [(12 * 1024 * 1024, 7 * 1024 * 1024), (1 << 20, 1 << 19)] {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n");
        let origin = RawOrigin::start(vec![
            Step::Write(Bytes::from(head)),
            Step::Write(random_bytes(sent, 3)),
        ])
        .await;
        let url = stack(b, &origin.url, multipart).await;
        let got = get(&client(), &format!("{url}cut.bin")).await;
        let what = format!("{sent} of {announced} bytes");
        assert_eq!(got.outcome(), Some("pulled"), "{}: {what}", b.name);
        assert!(
            got.body.is_err(),
            "{}: {what}: the client body must fail",
            b.name
        );
        b.assert_clean(&what).await;
    }
}

async fn create_does_not_clobber(b: &Backend) {
    // The object appears in the store while the fill runs (another replica, say), on the
    // single-put path and on the multipart path: the fill keeps the first writer's object.
    for (key, chunks) in [
        (
            "race/small.txt",
            vec![Bytes::from_static(b"from "), Bytes::from_static(b"origin")],
        ),
        (
            "race/large.bin",
            vec![random_bytes(PART, 5), random_bytes(1 << 20, 6)],
        ),
    ] {
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let origin = TestOrigin::start().await;
        origin.put(
            key,
            Behaviour::Chunked {
                chunks,
                pause: Duration::from_millis(400),
            },
        );
        let url = stack(b, &origin.url, multipart).await;
        let store = b.store.clone();
        let racer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            store
                .put(&Path::from(key), Bytes::from_static(b"first writer").into())
                .await
                .unwrap();
        });
        let got = get(&client(), &format!("{url}{key}")).await;
        racer.await.unwrap();
        assert!(
            got.body() == &whole[..],
            "{}: {key}: the client gets the origin's bytes",
            b.name
        );
        assert_eq!(
            stored(&*b.store, key).await.as_deref(),
            Some(&b"first writer"[..]),
            "{}: {key}",
            b.name
        );
        assert_eq!(b.leftovers(), Vec::<String>::new(), "{}: {key}", b.name);
    }
}

async fn metadata_round_trip(b: &Backend) {
    let origin = TestOrigin::start().await;
    let headers = vec![
        ("content-type", "image/webp"),
        ("cache-control", "public, max-age=60"),
        ("content-disposition", "inline; filename=\"pic.webp\""),
        ("content-language", "en"),
        ("x-amz-meta-owner", "alice"),
    ];
    // `.webp` keys: a file server types them as the origin did, so a store without
    // attributes may keep them (a `Set-Cookie` or another type would keep them out of it:
    // tests/security_*.rs).
    for (key, body) in [
        ("meta/small.webp", Bytes::from_static(b"not really a webp")),
        ("meta/large.webp", random_bytes(PART + 1000, 8)),
    ] {
        origin.put(
            key,
            Behaviour::Object {
                body: body.clone(),
                headers: headers.clone(),
            },
        );
        let url = stack(b, &origin.url, multipart).await;
        let c = client();
        let pulled = get(&c, &format!("{url}{key}")).await;
        assert_eq!(pulled.outcome(), Some("pulled"));
        let kept = stored_attributes(&*b.store, key).await;
        let attr = |a: Attribute| kept.get(&a).map(|v| v.to_string());
        // Served as a hit by ServeStore, from what the store kept.
        let hit = get(&c, &format!("{url}{key}")).await;
        assert_eq!(hit.outcome(), None);
        assert!(hit.body() == &body[..]);
        assert!(hit.headers.get("set-cookie").is_none());
        if b.keeps_attributes {
            assert_eq!(
                attr(Attribute::ContentType).as_deref(),
                Some("image/webp"),
                "{}: {key}",
                b.name
            );
            assert_eq!(
                attr(Attribute::CacheControl).as_deref(),
                Some("public, max-age=60")
            );
            assert_eq!(attr(Attribute::ContentLanguage).as_deref(), Some("en"));
            assert_eq!(
                attr(Attribute::ContentDisposition).as_deref(),
                Some("inline; filename=\"pic.webp\"")
            );
            assert_eq!(
                attr(Attribute::Metadata("owner".into())).as_deref(),
                Some("alice")
            );
            assert_eq!(
                hit.headers["content-type"], "image/webp",
                "{}: {key}",
                b.name
            );
            assert_eq!(hit.headers["cache-control"], "public, max-age=60");
            assert_eq!(hit.headers["content-language"], "en");
            assert_eq!(
                hit.headers["content-disposition"],
                "inline; filename=\"pic.webp\""
            );
            assert_eq!(hit.headers["x-amz-meta-owner"], "alice");
        } else {
            assert!(kept.is_empty(), "{}", b.name);
            // Guessed from the extension.
            assert_eq!(hit.headers["content-type"], "image/webp", "{}", b.name);
        }
    }
}

async fn stack_serves_the_pulled_object_with_range_and_304(b: &Backend) {
    let object = random_bytes(100_000, 9);
    let origin = TestOrigin::start().await;
    origin.object("site/app.js", object.clone());
    let url = format!("{}site/app.js", stack(b, &origin.url, |s| s).await);
    let c = client();
    assert_eq!(get(&c, &url).await.outcome(), Some("pulled"));

    let hit = get(&c, &url).await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.outcome(), None);
    assert_eq!(hit.headers["content-length"], "100000");
    assert_eq!(hit.headers["content-type"], "text/javascript");
    assert_eq!(hit.headers["accept-ranges"], "bytes");
    let etag = hit.headers["etag"].to_str().unwrap().to_owned();
    let last_modified = hit.headers["last-modified"].to_str().unwrap().to_owned();

    let range = send(&c, Method::GET, &url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT, "{}", b.name);
    assert_eq!(range.headers["content-range"], "bytes 1000-1999/100000");
    assert!(range.body() == &object[1000..2000]);

    let suffix = send(&c, Method::GET, &url, &[("range", "bytes=-10")]).await;
    assert_eq!(suffix.status, StatusCode::PARTIAL_CONTENT);
    assert!(suffix.body() == &object[99_990..]);

    let past = send(&c, Method::GET, &url, &[("range", "bytes=100000-")]).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.headers["content-range"], "bytes */100000");

    for (name, value) in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", last_modified.as_str()),
    ] {
        let cached = send(&c, Method::GET, &url, &[(name, value)]).await;
        assert_eq!(
            cached.status,
            StatusCode::NOT_MODIFIED,
            "{}: {name}",
            b.name
        );
        assert_eq!(cached.headers["etag"], etag.as_str());
        assert!(cached.body().is_empty());
    }
    let changed = send(
        &c,
        Method::GET,
        &url,
        &[("if-none-match", "\"something-else\"")],
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(changed.body() == &object[..]);

    let head = request(&c, Method::HEAD, &url).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "100000");
    assert!(head.body().is_empty());
    assert_eq!(
        origin.hits("site/app.js"),
        1,
        "{}: one pull, then hits",
        b.name
    );
}

/// A request with extra headers.
async fn send(c: &HttpClient, method: Method, url: &str, headers: &[(&str, &str)]) -> Got {
    request_with(c, method, url, headers).await
}

/// One `#[tokio::test]` per behaviour and backend.
macro_rules! conformance {
    ($backend:ident, $($behaviour:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(&super::Backend::$backend().await).await;
                }
            )+
        }
    };
}

macro_rules! suite {
    ($backend:ident) => {
        conformance!(
            $backend,
            pull_and_store,
            large_multipart_pull,
            truncated_origin_leaves_nothing,
            create_does_not_clobber,
            metadata_round_trip,
            stack_serves_the_pulled_object_with_range_and_304,
        );
    };
}

suite!(memory);
suite!(local);
#[cfg(feature = "aws")]
suite!(s3);

/// The S3 leftovers check is not vacuous: an upload that was started and not finished is
/// seen, and aborting it clears it.
#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_open_uploads_are_seen_until_aborted() {
    use object_store::MultipartUpload;
    let server = s3_server::S3Server::start().await;
    let store = server.store();
    let mut upload = store.put_multipart(&Path::from("open.bin")).await.unwrap();
    upload.put_part(random_bytes(PART, 1).into()).await.unwrap();
    assert!(
        !server.open_uploads().is_empty(),
        "an open upload must be visible"
    );
    upload.abort().await.unwrap();
    assert_eq!(server.open_uploads(), Vec::<String>::new());
}

/// A store failure is a `500` with a short reason: an S3 client whose credentials the server
/// refuses.
#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_refused_credentials_are_a_500() {
    let server = s3_server::S3Server::start().await;
    server
        .store()
        .put(&Path::from("a.txt"), Bytes::from_static(b"a").into())
        .await
        .unwrap();
    let wrong: Arc<dyn ObjectStore> = Arc::new(
        server
            .builder()
            .with_secret_access_key("not-the-secret")
            .build()
            .unwrap(),
    );
    let app = axum::Router::new().fallback_service(ServeStore::new(wrong));
    let got = get(&client(), &format!("http://{}/a.txt", serve(app).await)).await;
    assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8_lossy(got.body()).into_owned();
    assert!(text.len() < 80 && !text.contains("127.0.0.1"), "{text}");
}

/// The connector refuses plain http unless the store allows it.
#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_plain_http_needs_allow_http() {
    let server = s3_server::S3Server::start().await;
    let strict = server.builder().with_allow_http(false).build().unwrap();
    let err = strict.get(&Path::from("a.txt")).await.unwrap_err();
    assert!(format!("{err}").contains("allow_http"), "{err}");
}
