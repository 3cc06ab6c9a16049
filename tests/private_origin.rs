//! A private bucket as the origin, through a config file, against a real S3 protocol server
//! (s3s-fs in process) that checks SigV4 signatures: credentials from options naming
//! environment variables, from object_store's `AWS_*` environment, or inline; a wrong secret
//! is a `502` with the server's reason and stores nothing; `public_url` for the rules that
//! redirect, refused at validation when missing.
#![cfg(all(feature = "aws", feature = "config"))]

mod common;
#[path = "common/s3.rs"]
#[allow(dead_code)]
mod s3_server;

use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tower_origin_pull::OriginPullLayer;
use tower_origin_pull::config::Config;
use tower_origin_pull::events::FillEvent;

use common::*;
use s3_server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// The variables these tests name, set once before any test reads the environment
/// (object_store reads `AWS_*` whenever an `s3://` bucket is opened).
fn environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test of this binary calls this first, and `Once` holds the others
        // until it is done, so no thread reads the environment meanwhile.
        unsafe {
            std::env::set_var("ORIGIN_PULL_TEST_KEY_ID", ACCESS_KEY);
            std::env::set_var("ORIGIN_PULL_TEST_SECRET", SECRET_KEY);
            std::env::set_var("ORIGIN_PULL_TEST_WRONG_SECRET", "not-the-secret");
            std::env::set_var("ORIGIN_PULL_TEST_EMPTY", "");
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        }
    });
}

/// The S3 server with `exports/<key>` holding `bytes`.
async fn private_bucket(key: &str, bytes: &'static [u8]) -> S3Server {
    let server = S3Server::start().await;
    server
        .store()
        .put(
            &Path::from(format!("exports/{key}")),
            Bytes::from_static(bytes).into(),
        )
        .await
        .unwrap();
    server
}

/// A rule's origin table for the server's bucket below `exports`, with `credentials`
/// (`key = "value"` pairs) among its options.
fn origin(server: &S3Server, credentials: &str) -> String {
    format!(
        "{{ bucket = \"s3://{BUCKET}/exports\", bucket_options = {{ endpoint = {:?}, \
         allow_http = \"true\", virtual_hosted_style_request = \"false\", \
         region = \"us-east-1\"{credentials} }} }}",
        server.endpoint
    )
}

fn config(origin: &str, extra: &str) -> Config {
    let toml = format!("[store]\nurl = \"memory://\"\n\n[[rules]]\n{extra}origin = {origin}\n");
    Config::from_toml(&toml).unwrap_or_else(|e| panic!("{toml}\n{e}"))
}

/// A mirror built from `config`, writing into a fresh memory store.
async fn mirror(config: &Config) -> (String, Arc<dyn ObjectStore>, OriginPullLayer) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullLayer::from_config_with(config, store.clone()).unwrap();
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    (format!("http://{addr}/"), store, layer)
}

#[tokio::test]
async fn right_credentials_from_named_environment_variables_pull_and_store() {
    environment();
    let server = private_bucket("a/report.csv", b"private,bytes\n").await;
    let credentials = ", access_key_id_env = \"ORIGIN_PULL_TEST_KEY_ID\", \
                       secret_access_key_env = \"ORIGIN_PULL_TEST_SECRET\"";
    let (url, store, _) = mirror(&config(&origin(&server, credentials), "")).await;
    let got = get(&client(), &format!("{url}a/report.csv")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), b"private,bytes\n");
    assert_eq!(
        stored(&*store, "a/report.csv").await.as_deref(),
        Some(&b"private,bytes\n"[..])
    );
}

#[tokio::test]
async fn right_credentials_from_the_aws_environment_or_inline_pull_and_store() {
    environment();
    let server = private_bucket("b.bin", b"bee").await;
    let inline = format!(", access_key_id = {ACCESS_KEY:?}, secret_access_key = {SECRET_KEY:?}");
    for credentials in ["", inline.as_str()] {
        let (url, store, _) = mirror(&config(&origin(&server, credentials), "")).await;
        let got = get(&client(), &format!("{url}b.bin")).await;
        assert_eq!(got.status, StatusCode::OK, "{credentials:?}");
        assert_eq!(stored(&*store, "b.bin").await.as_deref(), Some(&b"bee"[..]));
    }
}

#[tokio::test]
async fn a_wrong_secret_is_a_502_that_says_the_signature_was_refused_and_stores_nothing() {
    environment();
    let server = private_bucket("c.bin", b"sea").await;
    for credentials in [
        ", access_key_id_env = \"ORIGIN_PULL_TEST_KEY_ID\", \
         secret_access_key_env = \"ORIGIN_PULL_TEST_WRONG_SECRET\"",
        ", access_key_id = \"test-access-key\", secret_access_key = \"wrong\"",
    ] {
        let (url, store, layer) = mirror(&config(&origin(&server, credentials), "")).await;
        let mut events = layer.handle().subscribe();
        let got = get(&client(), &format!("{url}c.bin")).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY);
        let reason = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let FillEvent::Failed { reason, .. } = events.recv().await.unwrap() {
                    return reason;
                }
            }
        })
        .await
        .expect("a Failed event");
        assert!(reason.contains("SignatureDoesNotMatch"), "{reason}");
        assert!(!reason.contains("not-the-secret"), "{reason}");
        assert!(listing(&*store).await.is_empty());
    }
}

#[tokio::test]
async fn async_and_redirect_rules_need_a_public_url_and_redirect_to_it() {
    environment();
    let server = private_bucket("d/e.bin", b"dee").await;
    let bucket = origin(&server, "");
    for mode in ["async", "redirect"] {
        let problems =
            config(&bucket, &format!("name = \"exports\"\nmode = \"{mode}\"\n")).validate();
        let problem = problems
            .iter()
            .find(|p| p.at == "rules[0].origin.public_url")
            .unwrap_or_else(|| panic!("{problems:?}"));
        assert!(
            problem.message.contains("\"exports\""),
            "{}",
            problem.message
        );
        assert!(problem.message.contains(mode), "{}", problem.message);
    }
    let with_url = bucket.replacen(
        "bucket =",
        "public_url = \"https://cdn.example/exports/\", bucket =",
        1,
    );
    for mode in ["async", "redirect"] {
        let (url, store, _) = mirror(&config(&with_url, &format!("mode = \"{mode}\"\n"))).await;
        for (path, location) in [
            ("d/e.bin", "https://cdn.example/exports/d/e.bin"),
            // Segments encoded as on an HTTP origin's paths.
            (
                "d/e%20f%3F.bin",
                "https://cdn.example/exports/d/e%20f%3F.bin",
            ),
        ] {
            let got = get(&client(), &format!("{url}{path}")).await;
            assert!(got.status.is_redirection(), "{mode}: {}", got.status);
            assert_eq!(got.headers["location"], location, "{mode}");
        }
        // The async rule fills in the background through the signed bucket; redirect never.
        let limit = Duration::from_millis(if mode == "async" { 10_000 } else { 300 });
        let filled = eventually(limit, || {
            let store = store.clone();
            async move { stored(&*store, "d/e.bin").await.is_some() }
        })
        .await;
        assert_eq!(filled, mode == "async", "{mode}");
    }
}

#[test]
fn credential_options_are_checked_at_validation_without_printing_values() {
    environment();
    let at = "rules[0].origin.bucket_options";
    let cases = [
        (
            ", secret_access_key_env = \"ORIGIN_PULL_TEST_UNSET\"",
            "secret_access_key_env",
            "ORIGIN_PULL_TEST_UNSET is not set",
        ),
        (
            ", secret_access_key_env = \"ORIGIN_PULL_TEST_EMPTY\"",
            "secret_access_key_env",
            "is empty",
        ),
        (
            ", secret_access_key_env = \"A=B\"",
            "secret_access_key_env",
            "not an environment variable name",
        ),
        (
            ", secret_access_key = \"x\", secret_access_key_env = \"ORIGIN_PULL_TEST_SECRET\"",
            "secret_access_key_env",
            "not both",
        ),
        (
            ", no_such_option_env = \"ORIGIN_PULL_TEST_SECRET\"",
            "",
            "no_such_option_env",
        ),
    ];
    let bucket = "{ bucket = \"s3://b/p\", bucket_options = { endpoint = \"http://127.0.0.1:1\"";
    for (options, key, message) in cases {
        let problems = config(&format!("{bucket}{options} }} }}"), "").validate();
        let where_ = if key.is_empty() {
            "rules[0].origin.bucket".to_owned()
        } else {
            format!("{at}.{key}")
        };
        assert!(
            problems
                .iter()
                .any(|p| p.at == where_ && p.message.contains(message)),
            "{options}: {problems:?}"
        );
        for p in &problems {
            assert!(!p.message.contains(SECRET_KEY), "{p:?}");
        }
    }
    // Settings of HTTP hosts on a bucket, a public URL on hosts, a bad public URL.
    let problems = config(
        "{ bucket = \"memory://\", tls_server_name = \"h\", public_url = \"ftp://x/\" }",
        "",
    )
    .validate();
    for at in [
        "rules[0].origin.tls_server_name",
        "rules[0].origin.public_url",
    ] {
        assert!(problems.iter().any(|p| p.at == at), "{at}: {problems:?}");
    }
    let problems = config(
        "{ hosts = [\"http://127.0.0.1:1/\"], public_url = \"https://cdn.example/\" }",
        "",
    )
    .validate();
    assert!(
        problems
            .iter()
            .any(|p| p.at == "rules[0].origin.public_url" && p.message.contains("bucket")),
        "{problems:?}"
    );
}
