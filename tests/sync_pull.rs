//! Sync origin-pull end to end: a real origin on 127.0.0.1, the layer in front of a real
//! inner service, real stores (`InMemory`, `LocalFileSystem` in a temp dir).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Attribute, ObjectStore, ObjectStoreExt};
use tempfile::TempDir;
use tower::Layer;
use tower_http::services::ServeDir;
use tower_origin_pull::{BucketStore, ClientDisconnect, HttpOrigin, OriginPullBuilder, Rule};

use common::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// `InMemory`, served by a small store-serving router, layer applied with `Router::layer`.
    Memory,
    /// `LocalFileSystem` in a temp dir, served by tower-http `ServeDir` wrapped directly.
    Local,
}

const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::Local];

struct Stack {
    url: String,
    store: Arc<dyn ObjectStore>,
    dir: Option<TempDir>,
}

impl Stack {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn staging_files(&self) -> Vec<String> {
        self.dir
            .as_ref()
            .map(|d| staging_files(d.path()))
            .unwrap_or_default()
    }

    async fn assert_empty(&self) {
        assert_eq!(
            listing(&*self.store).await,
            Vec::<String>::new(),
            "store must be empty"
        );
        assert_eq!(
            self.staging_files(),
            Vec::<String>::new(),
            "no staging files"
        );
    }
}

async fn stack_with(
    backend: Backend,
    origin_url: &str,
    rule: impl FnOnce(Rule) -> Rule,
    bucket: impl FnOnce(BucketStore) -> BucketStore,
) -> Stack {
    let origin = HttpOrigin::builder(origin_url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (store, dir): (Arc<dyn ObjectStore>, _) = match backend {
        Backend::Memory => (Arc::new(InMemory::new()), None),
        Backend::Local => {
            let dir = tempfile::tempdir().unwrap();
            let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            (Arc::new(fs), Some(dir))
        }
    };
    let layer = OriginPullBuilder::new(bucket(BucketStore::new(store.clone())))
        .rule(rule(Rule::new(origin)))
        .build();
    let app = match &dir {
        None => store_service(store.clone()).layer(layer),
        Some(dir) => axum::Router::new().fallback_service(layer.layer(ServeDir::new(dir.path()))),
    };
    let addr = serve(app).await;
    Stack {
        url: format!("http://{addr}/"),
        store,
        dir,
    }
}

async fn stack(backend: Backend, origin_url: &str) -> Stack {
    stack_with(backend, origin_url, |r| r, |b| b).await
}

#[tokio::test]
async fn miss_is_pulled_stored_then_served_as_a_hit() {
    for backend in BACKENDS {
        let origin = TestOrigin::start().await;
        origin.object("dir/hello.txt", "hello from the origin");
        let s = stack(backend, &origin.url).await;
        let c = client();

        let first = get(&c, &s.at("dir/hello.txt")).await;
        assert_eq!(first.status, StatusCode::OK, "{backend:?}");
        assert_eq!(first.outcome(), Some("pulled"), "{backend:?}");
        assert_eq!(first.body(), b"hello from the origin");
        assert_eq!(
            stored(&*s.store, "dir/hello.txt").await.as_deref(),
            Some(&b"hello from the origin"[..])
        );

        let second = get(&c, &s.at("dir/hello.txt")).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(
            second.outcome(),
            None,
            "{backend:?}: the second GET is a plain hit"
        );
        assert_eq!(second.body(), b"hello from the origin");
        assert_eq!(origin.hits("dir/hello.txt"), 1, "{backend:?}");
        assert!(s.staging_files().is_empty());
    }
}

#[tokio::test]
async fn unknown_length_bodies_are_pulled() {
    for backend in BACKENDS {
        let origin = TestOrigin::start().await;
        let chunks: Vec<Bytes> = (0..5).map(|i| random_bytes(10_000 + i, i as u64)).collect();
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        origin.put(
            "chunked.bin",
            Behaviour::Chunked {
                chunks,
                pause: Duration::from_millis(5),
            },
        );
        let s = stack(backend, &origin.url).await;
        let got = get(&client(), &s.at("chunked.bin")).await;
        assert_eq!(got.outcome(), Some("pulled"));
        assert_eq!(got.body(), &whole[..]);
        assert_eq!(
            stored(&*s.store, "chunked.bin").await.as_deref(),
            Some(&whole[..])
        );
    }
}

#[tokio::test]
async fn bytes_reach_the_client_before_the_origin_finishes() {
    let origin = TestOrigin::start().await;
    let first = random_bytes(1024, 1);
    let rest = random_bytes(4096, 2);
    origin.put(
        "slow.bin",
        Behaviour::Chunked {
            chunks: vec![first.clone(), rest.clone()],
            pause: Duration::from_secs(2),
        },
    );
    let s = stack(Backend::Memory, &origin.url).await;
    let started = Instant::now();
    let req = http::Request::get(s.at("slow.bin"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = client().request(req).await.unwrap();
    assert_eq!(res.headers()["x-origin-pull"], "pulled");
    let mut body = res.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first_byte_after = started.elapsed();
    assert!(
        first_byte_after < Duration::from_millis(1500),
        "first chunk took {first_byte_after:?}; the origin paused 2 s after it"
    );
    assert_eq!(&frame[..], &first[..frame.len()]);
    let mut all = frame.to_vec();
    all.extend_from_slice(&body.collect().await.unwrap().to_bytes());
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(all.len(), first.len() + rest.len());
    assert_eq!(&all[..first.len()], &first[..]);
}

#[tokio::test]
async fn large_object_is_stored_identically() {
    let object = random_bytes(64 * 1024 * 1024, 64);
    for backend in BACKENDS {
        let origin = TestOrigin::start().await;
        origin.object("big/64mib.bin", object.clone());
        let s = stack(backend, &origin.url).await;
        let got = get(&client(), &s.at("big/64mib.bin")).await;
        assert_eq!(got.outcome(), Some("pulled"));
        assert!(
            got.body() == &object[..],
            "{backend:?}: client bytes differ"
        );
        let kept = stored(&*s.store, "big/64mib.bin").await.unwrap();
        assert!(kept == object, "{backend:?}: stored bytes differ");
        assert!(s.staging_files().is_empty());
    }
}

fn faulty_scripts() -> Vec<(&'static str, Vec<Step>)> {
    let part = random_bytes(2 * 1024 * 1024, 7);
    let head_cl = Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 3145728\r\n\r\n");
    let head_chunked = Bytes::from_static(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
    chunk.extend_from_slice(&part);
    chunk.extend_from_slice(b"\r\n");
    vec![
        (
            "short body under Content-Length",
            vec![Step::Write(head_cl.clone()), Step::Write(part.clone())],
        ),
        (
            "chunked body cut before the last chunk",
            vec![Step::Write(head_chunked), Step::Write(chunk.into())],
        ),
        (
            "connection reset mid-body",
            vec![
                Step::Write(head_cl),
                Step::Write(part),
                Step::Sleep(Duration::from_millis(50)),
                Step::Reset,
            ],
        ),
    ]
}

#[tokio::test]
async fn broken_origin_bodies_error_and_store_nothing() {
    for (fault, script) in faulty_scripts() {
        for backend in BACKENDS {
            // Both write paths: a single buffered put, and a multipart upload of 1 MiB parts.
            for multipart in [false, true] {
                let origin = RawOrigin::start(script.clone()).await;
                let s = stack_with(
                    backend,
                    &origin.url,
                    |r| r,
                    |b| {
                        if multipart {
                            b.with_multipart_threshold(1 << 20).with_part_size(1 << 20)
                        } else {
                            b
                        }
                    },
                )
                .await;
                let got = get(&client(), &s.at("broken.bin")).await;
                let what = format!("{fault} / {backend:?} / multipart {multipart}");
                assert_eq!(got.status, StatusCode::OK, "{what}");
                assert_eq!(got.outcome(), Some("pulled"), "{what}");
                assert!(
                    got.body.is_err(),
                    "{what}: the client body must end in an error"
                );
                // The abort of a multipart upload may finish just after the client saw the
                // error; give it a moment, then nothing may remain.
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.assert_empty().await;
                assert_eq!(origin.requests(), 1, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn origin_404_returns_the_inner_404_and_500_becomes_502() {
    for backend in BACKENDS {
        let origin = TestOrigin::start().await;
        origin.put("boom.txt", Behaviour::Status(500));
        let s = stack(backend, &origin.url).await;
        let c = client();

        let missing = get(&c, &s.at("nowhere.txt")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            missing.outcome(),
            None,
            "the inner 404 comes back untouched"
        );
        let inner_body: &[u8] = match backend {
            Backend::Memory => b"not in store",
            Backend::Local => b"",
        };
        assert_eq!(missing.body(), inner_body);
        assert_eq!(origin.hits("nowhere.txt"), 1);

        let boom = get(&c, &s.at("boom.txt")).await;
        assert_eq!(boom.status, StatusCode::BAD_GATEWAY);
        assert_eq!(boom.outcome(), Some("failed"));
        let text = String::from_utf8(boom.body().to_vec()).unwrap();
        assert!(text.contains("origin answered 500"), "{text}");
        assert!(text.contains("boom.txt"), "{text}");
        assert!(
            !text.contains("secret"),
            "the origin's body is not echoed: {text}"
        );
        s.assert_empty().await;
    }
}

#[tokio::test]
async fn unreachable_origin_is_a_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = stack(Backend::Memory, &format!("http://127.0.0.1:{port}/")).await;
    let got = get(&client(), &s.at("a.txt")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(got.body()).contains("origin unreachable"));
    s.assert_empty().await;
}

#[tokio::test]
async fn non_matching_requests_pass_through_untouched() {
    for backend in BACKENDS {
        let origin = TestOrigin::start().await;
        origin.object("img/a.png", "png");
        origin.object("doc/a.txt", "txt");
        let s = stack_with(backend, &origin.url, |r| r.prefix("img/"), |b| b).await;
        let c = client();

        // A key outside the rule's prefix.
        let other = get(&c, &s.at("doc/a.txt")).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND);
        assert_eq!(other.outcome(), None);

        // Methods other than GET.
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let got = request(&c, method.clone(), &s.at("img/a.png")).await;
            assert_ne!(got.status, StatusCode::OK, "{method}");
            assert_eq!(got.outcome(), None, "{method}");
        }

        // Unclean keys, even under the prefix.
        for path in [
            "img/../img/a.png",
            "img/%2e%2e/img/a.png",
            "img/..%2fimg%2fa.png",
            "img//a.png",
            "img/a.png/",
            "img/a%00.png",
            "img/a%5c..%5ca.png",
            "img/%252e%252e/a.png",
            "img/a%FF.png",
        ] {
            let got = get(&c, &s.at(path)).await;
            assert_ne!(got.status, StatusCode::OK, "{path}");
            assert_eq!(got.outcome(), None, "{path}");
        }
        assert_eq!(
            origin.total_hits(),
            0,
            "{backend:?}: the origin saw no request"
        );
        s.assert_empty().await;
    }
}

#[tokio::test]
async fn rewrite_and_query_forwarding_shape_the_origin_request() {
    let origin = TestOrigin::start().await;
    origin.object("v2/assets/logo.svg", "<svg/>");
    let s = stack_with(
        Backend::Memory,
        &origin.url,
        |r| {
            r.prefix("static/").rewrite(
                tower_origin_pull::Rewrite::identity().replace_prefix("static/", "v2/assets/"),
            )
        },
        |b| b,
    )
    .await;
    let got = get(&client(), &s.at("static/logo.svg?cache=bust")).await;
    assert_eq!(got.outcome(), Some("pulled"));
    assert_eq!(got.body(), b"<svg/>");
    assert_eq!(origin.hits("v2/assets/logo.svg"), 1);
    // Stored under the client's key, without the query string.
    assert_eq!(listing(&*s.store).await, vec!["static/logo.svg".to_owned()]);
}

async fn drop_after_first_chunk(policy: ClientDisconnect) -> (Stack, TestOrigin, Vec<u8>) {
    let origin = TestOrigin::start().await;
    let chunks: Vec<Bytes> = (0..4).map(|i| random_bytes(256 * 1024, 10 + i)).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    origin.put(
        "leave.bin",
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(200),
        },
    );
    let s = stack_with(
        Backend::Local,
        &origin.url,
        |r| r.on_client_disconnect(policy),
        |b| {
            b.with_multipart_threshold(300 * 1024)
                .with_part_size(300 * 1024)
        },
    )
    .await;
    let req = http::Request::get(s.at("leave.bin"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = client().request(req).await.unwrap();
    let mut body = res.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert!(frame.is_data());
    drop(body);
    (s, origin, whole)
}

#[tokio::test]
async fn client_leaving_midway_still_stores_the_whole_object() {
    let (s, origin, whole) = drop_after_first_chunk(ClientDisconnect::FinishFill).await;
    let store = s.store.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { stored(&*store, "leave.bin").await.is_some() }
        })
        .await,
        "the fill finished after the client left"
    );
    assert!(stored(&*s.store, "leave.bin").await.unwrap() == whole);
    assert_eq!(origin.hits("leave.bin"), 1);
    assert!(s.staging_files().is_empty());
}

#[tokio::test]
async fn cancel_policy_stores_nothing_when_the_client_leaves() {
    let (s, _origin, _) = drop_after_first_chunk(ClientDisconnect::CancelFill).await;
    // Longer than the origin needs to send everything (3 pauses of 200 ms).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.assert_empty().await;
}

#[tokio::test]
async fn metadata_round_trips_through_in_memory() {
    let origin = TestOrigin::start().await;
    origin.put(
        "meta/pic.png",
        Behaviour::Object {
            body: Bytes::from_static(b"\x89PNG...."),
            headers: vec![
                ("content-type", "image/png"),
                ("cache-control", "public, max-age=60"),
                ("content-language", "en"),
                ("x-amz-meta-owner", "alice"),
                // (A Set-Cookie would keep the response out of the store altogether.)
                ("x-internal", "origin=secret"),
            ],
        },
    );
    let s = stack(Backend::Memory, &origin.url).await;
    let got = get(&client(), &s.at("meta/pic.png")).await;
    assert_eq!(got.headers["content-type"], "image/png");
    assert_eq!(got.headers["cache-control"], "public, max-age=60");
    assert!(
        got.headers.get("x-internal").is_none(),
        "origin headers are allow-listed"
    );

    let kept = stored_attributes(&*s.store, "meta/pic.png").await;
    let attr = |a: Attribute| kept.get(&a).map(|v| v.to_string());
    assert_eq!(attr(Attribute::ContentType).as_deref(), Some("image/png"));
    assert_eq!(
        attr(Attribute::CacheControl).as_deref(),
        Some("public, max-age=60")
    );
    assert_eq!(attr(Attribute::ContentLanguage).as_deref(), Some("en"));
    assert_eq!(
        attr(Attribute::Metadata("owner".into())).as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn head_pulls_only_when_the_rule_allows_it() {
    let origin = TestOrigin::start().await;
    origin.object("h.txt", "head me");
    let s = stack_with(
        Backend::Memory,
        &origin.url,
        |r| r.on_head(tower_origin_pull::HeadMiss::Fill),
        |b| b,
    )
    .await;
    let got = request(&client(), Method::HEAD, &s.at("h.txt")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.outcome(), Some("pulled"));
    assert_eq!(got.headers["content-length"], "7");
    assert!(got.body().is_empty());
    let store = s.store.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { stored(&*store, "h.txt").await.is_some() }
        })
        .await
    );
}

#[tokio::test]
async fn an_existing_object_is_not_clobbered() {
    // The object lands in the store while the fill runs (another replica, say): the fill's
    // create-only write leaves it alone and the client still gets the origin's bytes.
    let origin = TestOrigin::start().await;
    origin.put(
        "race.txt",
        Behaviour::Chunked {
            chunks: vec![Bytes::from_static(b"from "), Bytes::from_static(b"origin")],
            pause: Duration::from_millis(300),
        },
    );
    let s = stack(Backend::Local, &origin.url).await;
    let store = s.store.clone();
    let racer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        store
            .put(
                &Path::from("race.txt"),
                Bytes::from_static(b"first writer").into(),
            )
            .await
            .unwrap();
    });
    let got = get(&client(), &s.at("race.txt")).await;
    racer.await.unwrap();
    assert_eq!(got.body(), b"from origin");
    assert_eq!(
        stored(&*s.store, "race.txt").await.as_deref(),
        Some(&b"first writer"[..])
    );
}

#[tokio::test]
async fn http2_origins_work_with_prior_knowledge() {
    let origin = TestOrigin::start().await; // axum serves HTTP/1.1 and h2c on one port
    origin.object("h2.bin", random_bytes(300_000, 2));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let h2 = HttpOrigin::builder(&origin.url)
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let app = store_service(store.clone()).layer(
        OriginPullBuilder::from_object_store(store.clone())
            .rule(Rule::new(h2))
            .build(),
    );
    let addr = serve(app).await;
    let got = get(&client(), &format!("http://{addr}/h2.bin")).await;
    assert_eq!(got.outcome(), Some("pulled"));
    assert!(got.body() == &random_bytes(300_000, 2)[..]);
    assert!(stored(&*store, "h2.bin").await.is_some());
    assert!(origin.saw_version(http::Version::HTTP_2));
    assert!(!origin.saw_version(http::Version::HTTP_11));
}
