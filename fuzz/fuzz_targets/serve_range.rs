//! `ServeStore` with arbitrary `Range`, `If-Range`, `If-Match`, `If-None-Match` and
//! `If-Modified-Since` values over an object of arbitrary length: never panics; every answer
//! is one of 200/206/304/412/416 and its bytes match it.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tower::ServiceExt;
use tower_origin_pull::ServeStore;

const NAMES: [&str; 5] = [
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
];

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(*len) % 4096);
    let object: Bytes = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let mut req = Request::get("/o.bin");
    for (name, value) in NAMES.iter().zip(rest.split(|&b| b == b'\n')) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            req = req.header(*name, value);
        }
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store
            .put(&Path::from("o.bin"), object.clone().into())
            .await
            .unwrap();
        let res = ServeStore::new(store).oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        match parts.status.as_u16() {
            200 => assert_eq!(body, object),
            206 => {
                let cr = parts.headers["content-range"].to_str().unwrap();
                let (span, total) = cr.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
                assert_eq!(total, len.to_string());
                let (a, b) = span.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                assert!(a <= b && b < len);
                assert_eq!(body, object.slice(a..=b));
            }
            416 => assert_eq!(
                parts.headers["content-range"].to_str().unwrap(),
                format!("bytes */{len}")
            ),
            304 => assert!(body.is_empty()),
            412 => assert!(body.len() < 100),
            other => panic!("status {other}"),
        }
    });
});
