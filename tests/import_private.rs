//! Import of private origins: a COS `PrivateHost` with its `CredentialProvider` and an OSS
//! `MirrorAuth` (`S3V4`) become bucket origins that sign their requests (SigV4), their
//! secrets never written into the configuration but read from the environment variables the
//! report names. Pulled through against a real S3 protocol server that checks signatures
//! (s3s-fs in process). What cannot be mapped exactly is reported, with its place.
#![cfg(all(feature = "aws", feature = "config"))]

mod common;
#[path = "common/s3.rs"]
#[allow(dead_code)]
mod s3_server;

use std::sync::{Arc, Once};

use bytes::Bytes;
use http::StatusCode;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tower_origin_pull::OriginPullLayer;
use tower_origin_pull::config::Config;
use tower_origin_pull::config::import::{self, Imported};

use common::*;
use s3_server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// The variables the imports below name, set once before any test reads the environment.
fn environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test of this binary calls this first, and `Once` holds the others
        // until it is done, so no thread reads the environment meanwhile.
        unsafe {
            std::env::set_var("ORIGIN_PULL_COS_RULE_1_SECRET", SECRET_KEY);
            std::env::set_var("ORIGIN_PULL_OSS_RULE_1_SECRET", SECRET_KEY);
        }
    });
}

/// A COS Mirror rule whose one origin is the private host `host` (`ip:port`), keys under
/// `BUCKET/` there (a FileInfo prefix), signed with the server's keys.
fn cos(host: &str, credentials: &str) -> String {
    format!(
        r#"<OriginConfiguration><OriginRule>
  <RulePriority>1</RulePriority>
  <OriginType>Mirror</OriginType>
  <OriginCondition><HTTPStatusCode>404</HTTPStatusCode></OriginCondition>
  <OriginParameter><Protocol>HTTP</Protocol></OriginParameter>
  <OriginInfo>
    <HostInfo>
      <PrivateHost>
        <Host>{host}</Host>
        <CredentialProvider>{credentials}</CredentialProvider>
      </PrivateHost>
    </HostInfo>
    <FileInfo><PrefixConfiguration><Prefix></Prefix><ReplacedWithPrefix>{BUCKET}/</ReplacedWithPrefix></PrefixConfiguration></FileInfo>
  </OriginInfo>
</OriginRule></OriginConfiguration>"#
    )
}

fn cos_credentials() -> String {
    format!(
        "<AuthorizationAlgorithm>AWS4-HMAC-SHA256</AuthorizationAlgorithm>\
         <Region>us-east-1</Region><SecretId>{ACCESS_KEY}</SecretId>\
         <SecretKey>{SECRET_KEY}</SecretKey>"
    )
}

/// An OSS Mirror rule pulling from `url` (path style: the bucket in the path) with
/// `MirrorAuth` `auth`, and `extra` Redirect fields.
fn oss(url: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"<RoutingRules><RoutingRule>
  <RuleNumber>1</RuleNumber>
  <Condition><HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals></Condition>
  <Redirect>
    <RedirectType>Mirror</RedirectType>
    <MirrorURL>{url}</MirrorURL>
    <MirrorAuth>{auth}</MirrorAuth>{extra}
  </Redirect>
</RoutingRule></RoutingRules>"#
    )
}

fn oss_auth(kind: &str) -> String {
    format!(
        "<AuthType>{kind}</AuthType><Region>us-east-1</Region>\
         <AccessKeyId>{ACCESS_KEY}</AccessKeyId><AccessKeySecret>{SECRET_KEY}</AccessKeySecret>"
    )
}

fn reason<'a>(imported: &'a Imported, at: &str) -> &'a str {
    imported
        .unsupported
        .iter()
        .find(|u| u.at == at)
        .map(|u| u.reason.as_str())
        .unwrap_or_else(|| panic!("nothing reported at {at}: {:?}", imported.unsupported))
}

/// The imported rules pulling `key` from the server, where it holds `bytes`: 200, stored.
async fn pulls(server: &S3Server, imported: Imported, key: &str, bytes: &'static [u8]) {
    server
        .store()
        .put(&Path::from(key), Bytes::from_static(bytes).into())
        .await
        .unwrap();
    let mut config = Config::from_toml("store = { url = \"memory://\" }").unwrap();
    config.rules = imported.rules;
    // The secret is nowhere in the configuration.
    let toml = config.to_toml().unwrap();
    assert!(!toml.contains(SECRET_KEY), "{toml}");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullLayer::from_config_with(&config, store.clone()).unwrap();
    let addr = serve(store_service(store.clone()).layer(layer)).await;
    let got = get(&client(), &format!("http://{addr}/{key}")).await;
    assert_eq!(got.status, StatusCode::OK, "{toml}");
    assert_eq!(got.body(), bytes);
    assert_eq!(stored(&*store, key).await.as_deref(), Some(bytes));
}

#[tokio::test]
async fn a_cos_private_host_with_credentials_becomes_a_signed_bucket_origin_that_pulls() {
    environment();
    let server = S3Server::start().await;
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let imported = import::from_cos_xml(&cos(&host, &cos_credentials())).unwrap();
    assert_eq!(imported.rules.len(), 1, "{:?}", imported.unsupported);
    let origin = &imported.rules[0].origin;
    assert!(origin.hosts.is_empty());
    assert_eq!(
        origin.bucket_options["secret_access_key_env"],
        "ORIGIN_PULL_COS_RULE_1_SECRET"
    );
    assert!(!origin.bucket_options.contains_key("secret_access_key"));
    let said = reason(
        &imported,
        "OriginRule[1].OriginInfo.HostInfo[1].PrivateHost[1].CredentialProvider.SecretKey",
    );
    assert!(said.contains("ORIGIN_PULL_COS_RULE_1_SECRET"), "{said}");
    assert!(!said.contains(SECRET_KEY), "{said}");
    pulls(&server, imported, "a/cos.bin", b"from a private COS origin").await;
}

#[tokio::test]
async fn an_oss_mirror_auth_s3v4_becomes_a_signed_bucket_origin_that_pulls() {
    environment();
    let server = S3Server::start().await;
    let url = format!("{}/{BUCKET}/", server.endpoint);
    let imported = import::from_oss_xml(&oss(&url, &oss_auth("S3V4"), "")).unwrap();
    assert_eq!(imported.rules.len(), 1, "{:?}", imported.unsupported);
    let origin = &imported.rules[0].origin;
    assert_eq!(
        origin.bucket.as_deref(),
        Some(format!("s3://127/{BUCKET}").as_str())
    );
    let said = reason(
        &imported,
        "RoutingRule[1].Redirect.MirrorAuth.AccessKeySecret",
    );
    assert!(said.contains("ORIGIN_PULL_OSS_RULE_1_SECRET"), "{said}");
    pulls(&server, imported, "b/oss.bin", b"from a private OSS origin").await;
}

#[test]
fn what_cannot_be_mapped_exactly_is_reported_and_never_written() {
    environment();
    let at = "OriginRule[1].OriginInfo.HostInfo[1].PrivateHost[1]";
    // A role, another algorithm, an encrypted secret: reported; with no other host the rule
    // has no origin and is not imported.
    for (credentials, why) in [
        ("<Role>qcs::cam::uin/1:roleName/r</Role>".to_owned(), "Role"),
        (
            cos_credentials().replace("AWS4-HMAC-SHA256", "COS-HMAC-SHA1"),
            "AuthorizationAlgorithm",
        ),
        (
            "<Region>us-east-1</Region><SecretId>id</SecretId><EncryptedSecretKey>x</EncryptedSecretKey>"
                .to_owned(),
            "EncryptedSecretKey",
        ),
    ] {
        let imported = import::from_cos_xml(&cos("bucket.example", &credentials)).unwrap();
        assert!(reason(&imported, at).contains(why), "{why}: {:?}", imported.unsupported);
        assert!(imported.rules.is_empty());
    }
    // Beside a public HostName: the private host is reported, the public one kept.
    let xml = cos("bucket.example", &cos_credentials()).replace(
        "<HostInfo>",
        "<HostInfo><HostName>public.example</HostName>",
    );
    let imported = import::from_cos_xml(&xml).unwrap();
    assert!(reason(&imported, at).contains("beside other hosts"));
    assert_eq!(imported.rules[0].origin.hosts, ["http://public.example/"]);
    for u in &imported.unsupported {
        assert!(!u.reason.contains(SECRET_KEY), "{u}");
    }
    // OSS: another AuthType, a standby, an async rule: reported, the rule kept as HTTP.
    let at = "RoutingRule[1].Redirect.MirrorAuth";
    let url = "https://bucket.s3.example/";
    for (auth, extra, why) in [
        (oss_auth("OSS"), "", "AuthType"),
        (
            oss_auth("S3V4"),
            "<MirrorURLSlave>https://other.example/</MirrorURLSlave>",
            "MirrorURLSlave",
        ),
        (
            oss_auth("S3V4"),
            "<MirrorAsyncStatus>302</MirrorAsyncStatus>",
            "async",
        ),
    ] {
        let imported = import::from_oss_xml(&oss(url, &auth, extra)).unwrap();
        assert!(
            reason(&imported, at).contains(why),
            "{why}: {:?}",
            imported.unsupported
        );
        assert_eq!(imported.rules[0].origin.hosts, [url]);
        assert!(imported.rules[0].origin.bucket.is_none());
    }
}
