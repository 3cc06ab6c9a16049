//! `S3Front` driven by a real S3 client (object_store's `AmazonS3`, SigV4, through
//! `HyperConnector`) on 127.0.0.1:0, alone and inside the origin-pull layer, with origins
//! that are a real HTTP server and an object_store bucket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::StatusCode;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use tower_layer::Layer;
use tower_origin_pull::s3::{S3Bucket, S3Front, pull_rule};
use tower_origin_pull::server::Server;
use tower_origin_pull::{
    BucketOrigin, BucketStore, HttpOrigin, HyperConnector, OriginPullBuilder, OriginPullHandle,
};

use common::{Behaviour, TestOrigin, random_bytes};

const BUCKET: &str = "mirror";
const ACCESS: &str = "gateway-access";
const SECRET: &str = "gateway-secret";
const DOMAIN: &str = "s3.test";

/// An S3 front (inside the origin-pull layer when it has rules) served on 127.0.0.1:0.
struct Gateway {
    endpoint: String,
    store: Arc<dyn ObjectStore>,
    handle: Option<OriginPullHandle>,
}

struct Setup {
    rules: Vec<tower_origin_pull::Rule>,
    merge: Option<(Arc<dyn ObjectStore>, Path)>,
}

impl Gateway {
    /// The front alone, over an in-memory bucket.
    async fn plain() -> Self {
        Self::start(Setup {
            rules: vec![],
            merge: None,
        })
        .await
    }

    /// The front inside the layer, pulling `BUCKET`'s misses from `origin`.
    async fn pulling(origin: impl tower_origin_pull::Origin) -> Self {
        Self::start(Setup {
            rules: vec![pull_rule(BUCKET, origin)],
            merge: None,
        })
        .await
    }

    async fn start(setup: Setup) -> Self {
        Self::start_on(Arc::new(InMemory::new()), setup).await
    }

    async fn start_on(store: Arc<dyn ObjectStore>, setup: Setup) -> Self {
        let mut bucket = S3Bucket::behind_layer(store.clone(), BUCKET);
        if let Some((origin, prefix)) = setup.merge {
            bucket = bucket.list_merge(origin, prefix);
        }
        let builder = S3Front::builder()
            .bucket(BUCKET, bucket)
            .key(ACCESS, SECRET)
            .domain(DOMAIN);
        let listening = Server::bind("127.0.0.1:0".parse().unwrap())
            .listen()
            .unwrap();
        let addr = listening.local_addr().unwrap();
        let endpoint = format!("http://{addr}");
        if setup.rules.is_empty() {
            let front = builder.build().unwrap();
            let service = front.path_style().layer(front);
            tokio::spawn(listening.serve(service).into_future());
            return Self {
                endpoint,
                store,
                handle: None,
            };
        }
        let layer = OriginPullBuilder::new(BucketStore::new(store.clone()).with_tombstones(true))
            .rules(setup.rules)
            .build();
        let handle = layer.handle();
        let front = builder.pull_handle(handle.clone()).build().unwrap();
        let service = front.path_style().layer(layer.layer(front));
        tokio::spawn(listening.serve(service).into_future());
        Self {
            endpoint,
            store,
            handle: Some(handle),
        }
    }

    fn builder(&self, secret: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS)
            .with_secret_access_key(secret)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_http_connector(HyperConnector::new())
    }

    fn client(&self) -> AmazonS3 {
        self.builder(SECRET).build().unwrap()
    }

    /// What the bucket holds in the store, by key in the bucket.
    async fn stored(&self, key: &str) -> Option<Bytes> {
        let at = Path::from(format!("{BUCKET}/{key}"));
        match self.store.get(&at).await {
            Ok(found) => Some(found.bytes().await.unwrap()),
            Err(_) => None,
        }
    }
}

fn status(e: &object_store::Error) -> String {
    format!("{e:?}")
}

#[tokio::test]
async fn put_get_head_range_copy_and_delete() {
    let gw = Gateway::plain().await;
    let s3 = gw.client();
    let bytes = random_bytes(100_000, 1);
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "image/png".into());
    attributes.insert(Attribute::CacheControl, "max-age=60".into());
    attributes.insert(Attribute::Metadata("owner".into()), "alice".into());
    let put = s3
        .put_opts(
            &Path::from("dir/a.png"),
            bytes.clone().into(),
            attributes.clone().into(),
        )
        .await
        .unwrap();
    assert!(put.e_tag.is_some());

    // GET: the bytes, the attributes, the ETag the PUT answered, Last-Modified.
    let got = s3.get(&Path::from("dir/a.png")).await.unwrap();
    assert_eq!(got.meta.size, 100_000);
    assert_eq!(got.meta.e_tag, put.e_tag);
    assert_eq!(got.attributes, attributes);
    assert_eq!(got.bytes().await.unwrap(), bytes);

    // HEAD, and a range (object_store checks Content-Range).
    let head = s3.head(&Path::from("dir/a.png")).await.unwrap();
    assert_eq!(head.size, 100_000);
    let range = s3
        .get_range(&Path::from("dir/a.png"), 1000..2000)
        .await
        .unwrap();
    assert_eq!(range, bytes.slice(1000..2000));
    let suffix = s3
        .get_opts(
            &Path::from("dir/a.png"),
            GetOptions {
                range: Some(GetRange::Suffix(10)),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(suffix.bytes().await.unwrap(), bytes.slice(99_990..));

    // Conditionals: If-None-Match with the ETag → 304 (NotModified), If-Match other → 412.
    let not_modified = s3
        .get_opts(
            &Path::from("dir/a.png"),
            GetOptions {
                if_none_match: put.e_tag.clone(),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(not_modified, object_store::Error::NotModified { .. }),
        "{not_modified:?}"
    );
    let failed = s3
        .get_opts(
            &Path::from("dir/a.png"),
            GetOptions {
                if_match: Some("\"other\"".into()),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(failed, object_store::Error::Precondition { .. }),
        "{failed:?}"
    );

    // CopyObject keeps the metadata.
    s3.copy(&Path::from("dir/a.png"), &Path::from("b.png"))
        .await
        .unwrap();
    let copy = s3.get(&Path::from("b.png")).await.unwrap();
    assert_eq!(copy.attributes, attributes);
    assert_eq!(copy.bytes().await.unwrap(), bytes);

    // A create-only put (If-None-Match: *) of an existing key fails and changes nothing;
    // of a new key it writes.
    let exists = s3
        .put_opts(
            &Path::from("dir/a.png"),
            "other".into(),
            object_store::PutMode::Create.into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            exists,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ),
        "{exists:?}"
    );
    assert_eq!(gw.stored("dir/a.png").await.unwrap(), bytes);
    s3.put_opts(
        &Path::from("fresh"),
        "new".into(),
        object_store::PutMode::Create.into(),
    )
    .await
    .unwrap();
    assert_eq!(gw.stored("fresh").await.unwrap(), "new");

    // DeleteObject; then GetObject is NoSuchKey (404) and the store no longer has it.
    s3.delete(&Path::from("dir/a.png")).await.unwrap();
    let gone = s3.get(&Path::from("dir/a.png")).await.unwrap_err();
    assert!(
        matches!(gone, object_store::Error::NotFound { .. }),
        "{gone:?}"
    );
    assert!(gw.stored("dir/a.png").await.is_none());
    assert_eq!(gw.stored("b.png").await.unwrap(), bytes);
}

#[tokio::test]
async fn list_with_prefix_delimiter_and_continuation_hides_reserved_keys() {
    let gw = Gateway::plain().await;
    // 1,050 keys: more than one page of 1,000, so the client must continue.
    for i in 0..1050 {
        let at = Path::from(format!("{BUCKET}/many/k{i:04}"));
        gw.store
            .put(&at, PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    for key in ["top.txt", "dir/a", "dir/sub/b", "dirt"] {
        let at = Path::from(format!("{BUCKET}/{key}"));
        gw.store
            .put(&at, PutPayload::from_static(b"y"))
            .await
            .unwrap();
    }
    // The crate's bookkeeping, in the bucket's prefix and at the store's root.
    for key in [
        format!("{BUCKET}/.origin-pull-meta/x.meta"),
        format!(".origin-pull-tombstones/{BUCKET}/gone"),
        format!("{BUCKET}/.origin-pull-tombstones/gone"),
    ] {
        gw.store
            .put(&Path::from(key), PutPayload::from_static(b"z"))
            .await
            .unwrap();
    }
    let s3 = gw.client();
    let all: Vec<String> = s3
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 1054, "every key once, no reserved key");
    assert!(all.iter().all(|k| !k.contains(".origin-pull-")));
    let many: Vec<_> = s3
        .list(Some(&Path::from("many")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(many.len(), 1050);

    // Delimiter: common prefixes and the objects at this level only.
    let top = s3.list_with_delimiter(None).await.unwrap();
    let mut prefixes: Vec<String> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
    prefixes.sort();
    assert_eq!(prefixes, ["dir", "many"]);
    let mut objects: Vec<String> = top.objects.iter().map(|m| m.location.to_string()).collect();
    objects.sort();
    assert_eq!(objects, ["dirt", "top.txt"]);
    let dir = s3
        .list_with_delimiter(Some(&Path::from("dir")))
        .await
        .unwrap();
    assert_eq!(dir.objects.len(), 1);
    assert_eq!(dir.objects[0].location.as_ref(), "dir/a");
    assert_eq!(dir.common_prefixes, [Path::from("dir/sub")]);

    // A reserved key is refused (400), not NoSuchKey: never a pull trigger.
    let refused = s3
        .get(&Path::from(".origin-pull-meta/x.meta"))
        .await
        .unwrap_err();
    assert!(status(&refused).contains("400"), "{refused:?}");
}

#[tokio::test]
async fn delete_many_and_multipart_upload() {
    let gw = Gateway::plain().await;
    let s3 = gw.client();
    for i in 0..5 {
        s3.put(&Path::from(format!("d/{i}")), PutPayload::from_static(b"1"))
            .await
            .unwrap();
    }
    // object_store deletes through DeleteObjects (one request for the batch).
    let locations = futures::stream::iter((0..5).map(|i| Ok(Path::from(format!("d/{i}"))))).boxed();
    let deleted: Vec<Path> = s3.delete_stream(locations).try_collect().await.unwrap();
    assert_eq!(deleted.len(), 5);
    for i in 0..5 {
        assert!(gw.stored(&format!("d/{i}")).await.is_none());
    }

    // Multipart: three parts of 5 MiB, 5 MiB, 1 MiB (create, upload part ×3, complete).
    let bytes = random_bytes(11 * 1024 * 1024, 7);
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "video/mp4".into());
    let upload = s3
        .put_multipart_opts(&Path::from("big.mp4"), attributes.clone().into())
        .await
        .unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    writer.write(&bytes);
    writer.finish().await.unwrap();
    let got = s3.get(&Path::from("big.mp4")).await.unwrap();
    assert_eq!(got.attributes, attributes);
    assert_eq!(got.bytes().await.unwrap(), bytes);

    // Abort: nothing is left, neither the object nor the staged parts.
    let mut upload = s3.put_multipart(&Path::from("aborted")).await.unwrap();
    upload
        .put_part(Bytes::from(vec![1u8; 5 * 1024 * 1024]).into())
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert!(gw.stored("aborted").await.is_none());
    let staged: Vec<_> = gw
        .store
        .list(Some(&Path::from(".origin-pull-uploads")))
        .try_collect()
        .await
        .unwrap();
    assert!(staged.is_empty(), "{staged:?}");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_pulls_nothing() {
    let origin = TestOrigin::start().await;
    origin.object("secret.bin", random_bytes(1000, 2));
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let wrong: AmazonS3 = gw.builder("not-the-secret").build().unwrap();
    for _ in 0..2 {
        let e = wrong.get(&Path::from("secret.bin")).await.unwrap_err();
        assert!(status(&e).contains("403"), "{e:?}");
        let e = wrong.head(&Path::from("secret.bin")).await.unwrap_err();
        assert!(status(&e).contains("403"), "{e:?}");
    }
    // Unsigned (anonymous) requests too.
    let http = common::client();
    let url = format!("{}/{BUCKET}/secret.bin", gw.endpoint);
    for method in [http::Method::GET, http::Method::HEAD] {
        let got = common::request(&http, method, &url).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(origin.total_hits(), 0, "the origin was never asked");
    assert!(gw.stored("secret.bin").await.is_none());
    assert_eq!(gw.handle.unwrap().fills_in_flight(), 0);
}

#[tokio::test]
async fn head_then_get_of_a_cold_key_pulls_it_once_from_an_http_origin() {
    let origin = TestOrigin::start().await;
    let bytes = random_bytes(300_000, 3);
    origin.put(
        "img/cat.jpg",
        Behaviour::Object {
            body: bytes.clone(),
            headers: vec![
                ("etag", "\"origin-v1\""),
                ("content-type", "image/jpeg"),
                ("x-amz-meta-camera", "x100"),
            ],
        },
    );
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let s3 = gw.client();
    let head = s3.head(&Path::from("img/cat.jpg")).await.unwrap();
    assert_eq!(head.size, 300_000);
    assert_eq!(
        head.e_tag.as_deref(),
        Some("\"origin-v1\""),
        "the origin's ETag"
    );
    let got = s3.get(&Path::from("img/cat.jpg")).await.unwrap();
    assert_eq!(
        got.meta.e_tag, head.e_tag,
        "the same validator cold and stored"
    );
    assert_eq!(
        got.attributes
            .get(&Attribute::ContentType)
            .unwrap()
            .as_ref(),
        "image/jpeg"
    );
    let camera = Attribute::Metadata("camera".into());
    assert_eq!(got.attributes.get(&camera).unwrap().as_ref(), "x100");
    assert_eq!(got.bytes().await.unwrap(), bytes);
    assert_eq!(origin.hits("img/cat.jpg"), 1);
    assert_eq!(gw.stored("img/cat.jpg").await.unwrap(), bytes);
    // A key the origin lacks stays NoSuchKey.
    let e = s3.get(&Path::from("img/none.jpg")).await.unwrap_err();
    assert!(matches!(e, object_store::Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn a_cold_key_is_pulled_once_from_a_bucket_origin() {
    let source: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let bytes = random_bytes(50_000, 4);
    let at = Path::from("old/report.csv");
    source.put(&at, bytes.clone().into()).await.unwrap();
    let origin = BucketOrigin::new(source.clone()).with_prefix(Path::from("old"));
    let gw = Gateway::pulling(origin).await;
    let s3 = gw.client();
    assert_eq!(
        s3.get(&Path::from("report.csv"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        bytes
    );
    // Gone from the origin: still served, so it was stored (and not fetched again).
    source.delete(&at).await.unwrap();
    assert_eq!(
        s3.get(&Path::from("report.csv"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        bytes
    );
    assert_eq!(gw.stored("report.csv").await.unwrap(), bytes);
}

#[tokio::test]
async fn eight_parallel_ranged_gets_of_a_cold_20_mib_object_cost_one_origin_get() {
    let origin = TestOrigin::start().await;
    let len = 20 * 1024 * 1024;
    let bytes = random_bytes(len, 5);
    origin.object("video/big.bin", bytes.clone());
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let s3 = Arc::new(gw.client());
    let part = len / 8;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s3 = s3.clone();
            tokio::spawn(async move {
                s3.get_range(
                    &Path::from("video/big.bin"),
                    (i * part) as u64..((i + 1) * part) as u64,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let got = task.await.unwrap();
        assert_eq!(got, bytes.slice(i * part..(i + 1) * part), "range {i}");
    }
    assert_eq!(origin.hits("video/big.bin"), 1, "one full origin GET");
    let stored_in_time = common::eventually(Duration::from_secs(5), || async {
        gw.stored("video/big.bin").await.is_some()
    })
    .await;
    assert!(stored_in_time);
    assert_eq!(gw.stored("video/big.bin").await.unwrap(), bytes);
}

#[tokio::test]
async fn a_deleted_key_stays_deleted() {
    let origin = TestOrigin::start().await;
    origin.object("doc.txt", "hello");
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let s3 = gw.client();
    assert_eq!(
        s3.get(&Path::from("doc.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        "hello"
    );
    s3.delete(&Path::from("doc.txt")).await.unwrap();
    for _ in 0..2 {
        let e = s3.get(&Path::from("doc.txt")).await.unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e:?}");
        let e = s3.head(&Path::from("doc.txt")).await.unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e:?}");
    }
    assert_eq!(origin.hits("doc.txt"), 1, "not pulled back");
    // Put again by a client: it is there again.
    s3.put(&Path::from("doc.txt"), PutPayload::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(
        s3.get(&Path::from("doc.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        "new"
    );
}

#[tokio::test]
async fn list_merge_lists_origin_keys_not_yet_copied_nor_deleted() {
    let source: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for key in ["a.txt", "b.txt", "sub/c.txt"] {
        source
            .put(
                &Path::from(format!("old/{key}")),
                PutPayload::from_static(b"origin"),
            )
            .await
            .unwrap();
    }
    let origin = BucketOrigin::new(source.clone()).with_prefix(Path::from("old"));
    let gw = Gateway::start(Setup {
        rules: vec![pull_rule(BUCKET, origin)],
        merge: Some((source.clone(), Path::from("old"))),
    })
    .await;
    let s3 = gw.client();
    s3.put(&Path::from("local.txt"), PutPayload::from_static(b"here"))
        .await
        .unwrap();
    // b.txt is pulled, then deleted: the tombstone hides the origin's copy too.
    s3.get(&Path::from("b.txt")).await.unwrap();
    s3.delete(&Path::from("b.txt")).await.unwrap();
    let mut keys: Vec<String> = s3
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a.txt", "local.txt", "sub/c.txt"]);
    let top = s3.list_with_delimiter(None).await.unwrap();
    assert_eq!(top.common_prefixes, [Path::from("sub")]);
    // A listed, not yet copied key is pulled on GET.
    assert_eq!(
        s3.get(&Path::from("sub/c.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        "origin"
    );
}

#[tokio::test]
async fn list_merge_is_off_by_default() {
    let source: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    source
        .put(&Path::from("a.txt"), PutPayload::from_static(b"origin"))
        .await
        .unwrap();
    let gw = Gateway::pulling(BucketOrigin::new(source)).await;
    let keys: Vec<_> = gw.client().list(None).try_collect().await.unwrap();
    assert!(keys.is_empty());
}

#[tokio::test]
async fn part_number_is_refused_cleanly_and_pulls_nothing() {
    let origin = TestOrigin::start().await;
    origin.object("p.bin", "bytes");
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let res = signed(&gw, "GET", &format!("/{BUCKET}/p.bin?partNumber=1"), None).await;
    assert_eq!(res.0, StatusCode::NOT_IMPLEMENTED, "{}", res.1);
    assert_eq!(origin.total_hits(), 0);
}

#[tokio::test]
async fn virtual_hosted_style_reaches_the_same_bucket_and_pulls() {
    let origin = TestOrigin::start().await;
    origin.object("v/x.txt", "virtual");
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let host = format!("{BUCKET}.{DOMAIN}");
    let res = signed(&gw, "GET", "/v/x.txt", Some(&host)).await;
    assert_eq!(res.0, StatusCode::OK, "{}", res.1);
    assert_eq!(res.1, "virtual");
    assert_eq!(gw.stored("v/x.txt").await.unwrap(), "virtual");
    // Path-style sees the same object, now a hit.
    let s3 = gw.client();
    assert_eq!(
        s3.get(&Path::from("v/x.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        "virtual"
    );
    assert_eq!(origin.hits("v/x.txt"), 1);
    // Other S3 calls virtual-hosted: ListObjectsV2 and HeadBucket.
    let list = signed(&gw, "GET", "/?list-type=2", Some(&host)).await;
    assert_eq!(list.0, StatusCode::OK, "{}", list.1);
    assert!(list.1.contains("<Key>v/x.txt</Key>"), "{}", list.1);
    let bucket = signed(&gw, "HEAD", "/", Some(&host)).await;
    assert_eq!(bucket.0, StatusCode::OK);
}

#[tokio::test]
async fn buckets_location_parts_and_what_is_not_implemented() {
    let gw = Gateway::plain().await;
    let list = signed(&gw, "GET", "/", None).await;
    assert_eq!(list.0, StatusCode::OK, "{}", list.1);
    assert!(list.1.contains("<Name>mirror</Name>"), "{}", list.1);
    let location = signed(&gw, "GET", &format!("/{BUCKET}?location"), None).await;
    assert_eq!(location.0, StatusCode::OK, "{}", location.1);
    let missing = signed(&gw, "HEAD", "/nobucket", None).await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);

    // ListParts of an upload in progress.
    let created = signed(&gw, "POST", &format!("/{BUCKET}/up.bin?uploads"), None).await;
    assert_eq!(created.0, StatusCode::OK, "{}", created.1);
    let id = created
        .1
        .split("<UploadId>")
        .nth(1)
        .and_then(|s| s.split("</UploadId>").next())
        .unwrap()
        .to_owned();
    let s3 = gw.client();
    let _ = s3; // the part goes through a signed request below
    let part = signed_body(
        &gw,
        "PUT",
        &format!("/{BUCKET}/up.bin?partNumber=1&uploadId={id}"),
        Bytes::from_static(b"part one"),
    )
    .await;
    assert_eq!(part.0, StatusCode::OK, "{}", part.1);
    let parts = signed(&gw, "GET", &format!("/{BUCKET}/up.bin?uploadId={id}"), None).await;
    assert_eq!(parts.0, StatusCode::OK, "{}", parts.1);
    assert!(
        parts.1.contains("<PartNumber>1</PartNumber>"),
        "{}",
        parts.1
    );
    assert!(parts.1.contains("<Size>8</Size>"), "{}", parts.1);

    // Everything else: NotImplemented (here ListObjects v1 and GetObjectAcl).
    let v1 = signed(&gw, "GET", &format!("/{BUCKET}"), None).await;
    assert_eq!(v1.0, StatusCode::NOT_IMPLEMENTED, "{}", v1.1);
    let acl = signed(&gw, "GET", &format!("/{BUCKET}/up.bin?acl"), None).await;
    assert_eq!(acl.0, StatusCode::NOT_IMPLEMENTED, "{}", acl.1);
}

/// A SigV4-signed request (object_store's own signer) with an optional `Host`, sent to the
/// gateway's address whatever the host says.
async fn signed(
    gw: &Gateway,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> (StatusCode, String) {
    send(gw, method, path, host, Bytes::new(), &[]).await
}

async fn signed_body(gw: &Gateway, method: &str, path: &str, body: Bytes) -> (StatusCode, String) {
    send(gw, method, path, None, body, &[]).await
}

async fn send(
    gw: &Gateway,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: Bytes,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    use http_body_util::{BodyExt, Full};
    use object_store::aws::{AwsAuthorizer, AwsCredential};

    let addr = gw.endpoint.trim_start_matches("http://");
    let port = addr.rsplit(':').next().unwrap();
    let authority = host.map_or_else(|| addr.to_owned(), |h| format!("{h}:{port}"));
    let url = format!("http://{authority}{path}");
    let mut builder = http::Request::builder().method(method).uri(&url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request: object_store::client::HttpRequest = builder.body(body.clone().into()).unwrap();
    let credential = AwsCredential {
        key_id: ACCESS.into(),
        secret_key: SECRET.into(),
        token: None,
    };
    AwsAuthorizer::new(&credential, "s3", "us-east-1")
        .try_authorize(&mut request, None)
        .unwrap();
    let (parts, _) = request.into_parts();
    let mut req = http::Request::from_parts(parts, Full::new(body));
    req.headers_mut()
        .insert(http::header::HOST, authority.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // The request target in origin-form, as clients send it.
    *req.uri_mut() = path.parse().unwrap();
    let res = sender.send_request(req).await.unwrap();
    let code = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn copy_object_replaces_metadata_when_asked() {
    let gw = Gateway::plain().await;
    let s3 = gw.client();
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "text/plain".into());
    attributes.insert(Attribute::Metadata("a".into()), "1".into());
    s3.put_opts(&Path::from("src.txt"), "text".into(), attributes.into())
        .await
        .unwrap();
    let copy = send(
        &gw,
        "PUT",
        &format!("/{BUCKET}/dst.txt"),
        None,
        Bytes::new(),
        &[
            ("x-amz-copy-source", "/mirror/src.txt"),
            ("x-amz-metadata-directive", "REPLACE"),
            ("content-type", "text/markdown"),
            ("x-amz-meta-b", "2"),
        ],
    )
    .await;
    assert_eq!(copy.0, StatusCode::OK, "{}", copy.1);
    assert!(copy.1.contains("<ETag>"), "{}", copy.1);
    let got = s3.get(&Path::from("dst.txt")).await.unwrap();
    let mut expected = Attributes::new();
    expected.insert(Attribute::ContentType, "text/markdown".into());
    expected.insert(Attribute::Metadata("b".into()), "2".into());
    assert_eq!(got.attributes, expected);
    assert_eq!(got.bytes().await.unwrap(), "text");
}

#[tokio::test]
async fn a_local_directory_bucket_keeps_metadata_beside_objects_and_pulls_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let origin = TestOrigin::start().await;
    origin.put(
        "pulled.css",
        Behaviour::Object {
            body: Bytes::from_static(b"body {}"),
            headers: vec![("etag", "\"css-1\""), ("content-type", "text/css")],
        },
    );
    let gw = Gateway::start_on(
        store,
        Setup {
            rules: vec![pull_rule(BUCKET, HttpOrigin::new(&origin.url).unwrap())],
            merge: None,
        },
    )
    .await;
    let s3 = gw.client();
    // Put with metadata: a local directory keeps it beside the object.
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "application/json".into());
    attributes.insert(Attribute::Metadata("team".into()), "ops".into());
    s3.put_opts(
        &Path::from("conf/a.json"),
        "{}".into(),
        attributes.clone().into(),
    )
    .await
    .unwrap();
    let got = s3.get(&Path::from("conf/a.json")).await.unwrap();
    assert_eq!(got.attributes, attributes);
    assert!(
        dir.path()
            .join(".origin-pull-meta/mirror/conf/a.json.meta")
            .exists()
    );
    // A pulled object: the origin's type and ETag, cold and then from the directory.
    let cold = s3.get(&Path::from("pulled.css")).await.unwrap();
    assert_eq!(cold.meta.e_tag.as_deref(), Some("\"css-1\""));
    assert_eq!(cold.bytes().await.unwrap(), "body {}");
    let hit = s3.get(&Path::from("pulled.css")).await.unwrap();
    assert_eq!(hit.meta.e_tag.as_deref(), Some("\"css-1\""));
    assert_eq!(
        hit.attributes
            .get(&Attribute::ContentType)
            .unwrap()
            .as_ref(),
        "text/css"
    );
    assert_eq!(origin.hits("pulled.css"), 1);
    assert!(dir.path().join("mirror/pulled.css").exists());
    // The listing shows the objects, not what is kept beside them.
    let mut keys: Vec<String> = s3
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["conf/a.json", "pulled.css"]);
}

/// Clients no one here wrote (boto3, awscli, rclone) against the gateway:
/// cold GET, cold HEAD, a cold 64 MiB `download_file` (parallel ranged GETs), `aws s3 cp`
/// and `aws s3 sync`, rclone down and up, put + list + delete + get, a wrong secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_s3_clients() {
    // Installed when missing (as `.ci/run` does): a failure in CI, a skip elsewhere.
    let tools = common::tools::required(
        common::tools::s3_clients_python().zip(common::tools::debian_tool(&["rclone"], "rclone")),
        "boto3 + awscli (python3 -m venv, pip) or rclone (apt-get install rclone)",
    );
    let Some((python, _)) = tools else {
        return;
    };
    let origin = TestOrigin::start().await;
    // As web servers and buckets do: `aws s3 cp` needs the `Last-Modified` of its `HEAD`,
    // which a cold answer has only when the origin sent one.
    let object = |path: &str, body: Bytes| {
        let headers = vec![("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")];
        origin.put(path, Behaviour::Object { body, headers });
    };
    let big = random_bytes(64 * 1024 * 1024, 9);
    object("cold/big.bin", big.clone());
    for (key, len) in [
        ("get", 1000),
        ("head", 2000),
        ("deleted", 10),
        ("secret", 10),
    ] {
        object(&format!("cold/{key}.bin"), random_bytes(len, 10));
    }
    object("cold/cp.bin", random_bytes(3000, 11));
    object("cold/rclone.bin", random_bytes(4000, 12));
    let gw = Gateway::pulling(HttpOrigin::new(&origin.url).unwrap()).await;
    let work = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_clients/check.py");
    let endpoint = gw.endpoint.clone();
    let dir = work.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([endpoint.as_str(), ACCESS, SECRET, BUCKET])
            .arg(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let hex: String = random_bytes(1000, 10)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(seen["get_cold"], hex.as_str());
    assert_eq!(seen["head_cold"], 2000);
    assert_eq!(seen["download_file"], 64 * 1024 * 1024);
    assert_eq!(std::fs::read(work.path().join("big.bin")).unwrap(), big);
    assert_eq!(seen["listed"], serde_json::json!(["up/new.txt"]));
    assert_eq!(seen["deleted"], "NoSuchKey");
    assert_eq!(seen["wrong_secret"], "SignatureDoesNotMatch");
    assert_eq!(seen["aws_cp"], 3000);
    assert_eq!(seen["aws_sync"], serde_json::json!(["new.txt"]));
    for key in ["get", "head", "big", "deleted", "cp"] {
        assert_eq!(
            origin.hits(&format!("cold/{key}.bin")),
            1,
            "{key}: one origin GET"
        );
    }
    assert_eq!(
        origin.hits("cold/secret.bin"),
        0,
        "a wrong secret pulls nothing"
    );
    assert_eq!(seen["rclone_down"], 4000);
    assert_eq!(origin.hits("cold/rclone.bin"), 1);
    assert_eq!(
        seen["rclone_up"],
        serde_json::json!(["file 0", "file 1", "file 2"])
    );
}
