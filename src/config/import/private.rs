//! Private origins the clouds sign their requests to (COS `PrivateHost`, OSS `MirrorAuth`)
//! as bucket origins that send the same signed requests, their secrets left to the
//! environment.

use super::RuleReport;
use crate::config::{HeaderPolicyConfig, OriginConfig, RuleConfig};

/// A private S3-compatible bucket the cloud signs its requests to with AWS SigV4.
pub(super) struct Signed<'a> {
    /// `scheme://host[:port][/path]`: the bucket's endpoint as the cloud reaches it (the
    /// bucket in the host or in the path, either way), the path a key prefix.
    pub(super) url: &'a str,
    pub(super) region: &'a str,
    pub(super) access_key_id: &'a str,
    /// The environment variable the secret is to be read from; it is never written.
    pub(super) secret_env: &'a str,
}

/// The bucket origin that sends exactly the requests the cloud sends to a private
/// S3-compatible origin: `GET <url>/<key>`, signed with SigV4 for `region`. The endpoint is
/// used as given (`virtual_hosted_style_request = true` makes object_store take it as the
/// bucket's own URL), so a path-style URL (`https://s3.example/bucket/`) works as well as a
/// virtual-hosted one.
pub(super) fn signed_bucket(signed: &Signed<'_>) -> Result<OriginConfig, String> {
    let url =
        url::Url::parse(signed.url).map_err(|e| format!("{:?} is not a URL ({e})", signed.url))?;
    let host = url.host_str().filter(|h| !h.is_empty());
    let (Some(host), "http" | "https") = (host, url.scheme()) else {
        return Err(format!("{:?} is not an http(s) URL", signed.url));
    };
    if !url.username().is_empty() || url.query().is_some() {
        return Err(format!("{:?} has credentials or a query", signed.url));
    }
    if signed.region.is_empty() || signed.access_key_id.is_empty() {
        return Err("a region and an access key id are needed to sign".to_owned());
    }
    let label = host
        .split('.')
        .next()
        .unwrap_or(host)
        .trim_matches(['[', ']']);
    let prefix = url.path().trim_matches('/');
    let bucket = match prefix {
        "" => format!("s3://{label}"),
        prefix => format!("s3://{label}/{prefix}"),
    };
    let endpoint = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let mut options = std::collections::BTreeMap::new();
    for (key, value) in [
        ("endpoint", endpoint.as_str()),
        ("virtual_hosted_style_request", "true"),
        ("region", signed.region),
        ("access_key_id", signed.access_key_id),
        ("secret_access_key_env", signed.secret_env),
    ] {
        options.insert(key.to_owned(), value.to_owned());
    }
    if url.scheme() == "http" {
        options.insert("allow_http".to_owned(), "true".to_owned());
    }
    Ok(OriginConfig {
        bucket: Some(bucket),
        bucket_options: options,
        ..OriginConfig::default()
    })
}

/// The environment variable an imported rule's secret is read from: `cloud` and the rule's
/// place (`OriginRule[2]` → `ORIGIN_PULL_COS_RULE_2_SECRET`).
pub(super) fn secret_env(cloud: &str, rule_at: &str) -> String {
    let number: String = rule_at.chars().filter(char::is_ascii_digit).collect();
    format!("ORIGIN_PULL_{cloud}_RULE_{number}_SECRET")
}

/// Make `rule`'s origin the signed bucket: what only HTTP origins use (request headers, the
/// query) is dropped and reported, and the secret's variable is reported for the operator
/// to set (`secret_at`: where the secret was).
pub(super) fn into_bucket(
    r: &mut RuleReport<'_>,
    rule: &mut RuleConfig,
    origin: OriginConfig,
    secret_at: &str,
) {
    if let Some(headers) = rule.request_headers.take() {
        if headers != HeaderPolicyConfig::default() {
            r.skip(
                secret_at,
                "the request headers of the rule are not sent to a bucket origin (it sends \
                 signed S3 requests); not imported",
            );
        }
    }
    // A bucket answers the same object whatever the query: nothing to forward.
    rule.query = None;
    rule.query_params.clear();
    let variable = origin
        .bucket_options
        .get("secret_access_key_env")
        .cloned()
        .unwrap_or_default();
    r.skip(
        secret_at,
        format!(
            "imported as a bucket origin signing with AWS SigV4; the secret is not written \
             into the configuration: set the environment variable {variable} to it \
             (`bucket_options.secret_access_key_env`)"
        ),
    );
    rule.origin = origin;
}
