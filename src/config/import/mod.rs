//! Import of Tencent COS and Alibaba OSS origin rules into [`RuleConfig`]s.
//!
//! [`from_cos_xml`] reads the `<OriginConfiguration>` body of COS `PutBucketOrigin` (as
//! `GetBucketOrigin` returns it); [`from_oss_xml`] reads the `<RoutingRules>` of OSS
//! `PutBucketWebsite` (a whole `<WebsiteConfiguration>` or the `<RoutingRules>` element
//! alone). Both give the rules in the cloud's order (COS `RulePriority`, OSS `RuleNumber`,
//! lower first) and a list of everything that was not imported, each with its place in the
//! document (`OriginRule[1].OriginParameter.CopyOriginData`) and why. Nothing is dropped
//! without a report, unknown elements included.
//!
//! A field that only changes *how* an object is fetched (a probe URL, credentials, MD5 checks
//! on a proxy rule, ...) is reported and the rule is kept. When a rule would match other
//! keys or fetch other paths than in the cloud (an unknown condition, a key rewrite that
//! cannot be expressed, no origin host), the rule itself is not imported and the report
//! says so (`...; the rule is not imported`). Every imported rule passes
//! [`Config::validate`](super::Config::validate) once the environment variables named for
//! its secrets are set (see "Private origins" below).
//!
//! # Private origins
//!
//! A COS `PrivateHost` and an OSS `MirrorAuth` (`S3V4`) are origins the cloud signs its
//! requests to. Where the mapping is exact they become a bucket origin that sends the same
//! requests, signed with AWS SigV4: `origin.bucket = "s3://<first label of the host>[/<path>]"`
//! with `bucket_options` `endpoint` (the host as given, `virtual_hosted_style_request =
//! "true"` so it is used as it is, path-style or virtual-hosted), `region`, `access_key_id`
//! and `secret_access_key_env`. **The secret is never written into the configuration**: the
//! option names an environment variable, `ORIGIN_PULL_COS_RULE_<n>_SECRET` or
//! `ORIGIN_PULL_OSS_RULE_<n>_SECRET` (`<n>`: the rule's place in the document), and the
//! report says, at the secret's place, which variable to set. Exact means: a COS `Mirror`
//! rule whose one origin is the `PrivateHost` (no `HostName`, no standby) with `SecretId`,
//! `SecretKey`, a `Region` (or a `<bucket>.cos.<region>.myqcloud.com` host) and no
//! `AuthorizationAlgorithm` or a SigV4 one; an OSS `Mirror` rule (sync or
//! `MirrorProxyPass`) with one `MirrorURL` and a `MirrorAuth` with `AuthType` `S3V4`,
//! `Region`, `AccessKeyId` and `AccessKeySecret`. The rule's request headers are not sent
//! to a bucket (reported) and its query is dropped (a bucket answers the same object).
//! Anything else — a `Role`, an `EncryptedSecretKey`, another algorithm or `AuthType`, a
//! private host beside other hosts, an async rule (it would redirect clients to a private
//! bucket) — is reported with why.
//!
//! ```
//! use tower_origin_pull::config::{Config, import};
//! use tower_origin_pull::OriginPullLayer;
//!
//! # fn main() -> Result<(), tower_origin_pull::Error> {
//! let imported = import::from_oss_xml(r#"
//!   <RoutingRules><RoutingRule>
//!     <RuleNumber>1</RuleNumber>
//!     <Condition>
//!       <KeyPrefixEquals>abc/</KeyPrefixEquals>
//!       <HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals>
//!     </Condition>
//!     <Redirect>
//!       <RedirectType>Mirror</RedirectType>
//!       <MirrorURL>http://127.0.0.1:9000/</MirrorURL>
//!       <MirrorURLProbe>http://127.0.0.1:9000/health</MirrorURLProbe>
//!     </Redirect>
//!   </RoutingRule></RoutingRules>"#)?;
//! assert_eq!(imported.rules[0].prefix.as_deref(), Some("abc/"));
//! assert_eq!(imported.unsupported[0].at, "RoutingRule[1].Redirect.MirrorURLProbe");
//!
//! let mut config = Config::from_toml("store = { url = \"memory://\" }")?;
//! config.rules = imported.rules;
//! let layer = OriginPullLayer::from_config(&config)?;
//! # Ok(()) }
//! ```
//!
//! # COS `OriginRule`
//!
//! | COS | here |
//! |---|---|
//! | `RulePriority` | the rule's place (lower first); name `cos-rule-<priority>` |
//! | `OriginType` `Mirror` (sync origin-pull) / `Proxy` (async: a redirect now, filled in the background) / `Redirect` | `mode` `sync` / `async` / `redirect` |
//! | `OriginCondition` `HTTPStatusCode`, `Prefix`, `Suffix` | `statuses`, `prefix`, `suffix` (a leading `/` dropped: keys have none) |
//! | `OriginCondition.FilterHost.ForbidHost.DomainList.Domain` | `deny_hosts` |
//! | `OriginParameter.Protocol` `HTTP` / `HTTPS` / `FOLLOW` | the host URLs' scheme / `protocol = "same"` (absent: `http`) |
//! | `FollowQueryString` (default true) | `query = "forward"` / `"drop"` |
//! | `HttpHeader` `FollowAllHeaders`, `ForbidFollowHeaders` | `request_headers.pass = "all"`, `except` |
//! | `HttpHeader.FollowHttpHeaders` / `NewHttpHeaders` | `request_headers.pass_only` / `set` |
//! | `FollowRedirection` false | `origin.follow_redirects = 0` |
//! | `HttpRedirectCode` (Redirect, Proxy) | `redirect_status` |
//! | `CopyOriginData` true | what `sync` / `async` do anyway |
//! | `OriginInfo.HostInfo` `HostName`, `Weight`, `StandbyHostName_N` | `origin.hosts`, `weights`, `standby` |
//! | `OriginInfo.FileInfo` `PrefixConfiguration`, `SuffixConfiguration`, `FixedFileConfiguration` | `rewrite.replace_prefix`, `replace_suffix` (or `add_suffix` for an empty `Suffix`), `fixed` |
//! | `HTTPStandbyCode.StatusCode` | `origin.fail_over_on` |
//!
//! | `OriginInfo.HostInfo.PrivateHost` + `CredentialProvider` (exact cases: see "Private origins") | `origin.bucket`, `bucket_options` (`secret_access_key_env`) |
//!
//! Reported: `TransparentErrorCode`, `CopyOriginData` false, `FollowRedirectionConfiguration`,
//! `PrivateHost` / `PrivateStandbyHost_N` that cannot be mapped exactly, the legacy
//! `FileInfo` `PrefixDirective` / `Prefix` / `Suffix` (the rule is not imported), headers a
//! rule may not name (`Host`,
//! `Range`, hop-by-hop, conditional), and headers on a `Redirect` rule.
//!
//! # OSS `RoutingRule`
//!
//! | OSS | here |
//! |---|---|
//! | `RuleNumber` | the rule's place; name `oss-rule-<number>` |
//! | `Condition` `KeyPrefixEquals`, `KeySuffixEquals`, `HttpErrorCodeReturnedEquals` | `prefix`, `suffix`, `statuses` |
//! | `Condition.IncludeHeader` `Key` + `Equals` / `StartsWith` / `EndsWith` | `when_headers` |
//! | `RedirectType` `Mirror` | `mode = "sync"` (`"proxy"` with `MirrorProxyPass`, `"async"` with a 301/302/307 `MirrorAsyncStatus`) |
//! | `RedirectType` `External` / `AliCDN` | `mode = "redirect"` to `Protocol://HostName/` (no `Protocol`: `protocol = "same"`) |
//! | `MirrorURL`, `MirrorURLSlave` | `origin.hosts`, `origin.standby` |
//! | `MirrorPassQueryString` (else `PassQueryString`, default false) | `query` |
//! | `MirrorFollowRedirect` false | `origin.follow_redirects = 0` |
//! | `MirrorCheckMd5` true / false | `checksums = ["content-md5"]` / `[]` (absent: this crate's default, `content-md5`, which only checks when the origin sends one) |
//! | `MirrorHeaders` `PassAll`, `Remove`, `Pass`, `Set` | `request_headers` `pass = "all"`, `except`, `pass_only`, `set` |
//! | `ReplaceKeyWith` (`${key}`) / `ReplaceKeyPrefixWith`, `EnableReplacePrefix` | `rewrite.template` or `fixed` / `rewrite.replace_prefix` from `KeyPrefixEquals` |
//! | `TransparentMirrorResponseCodes` | `pass_through` (without 404: an origin 404 always gives the store's own) |
//! | `HttpRedirectCode` (External, AliCDN) | `redirect_status` |
//! | `MirrorAuth` `S3V4` (exact cases: see "Private origins") | `origin.bucket`, `bucket_options` (`secret_access_key_env`) |
//!
//! Reported: `MirrorURLProbe` (failover here is per request, on errors and 5xx, with a
//! breaker), `MirrorSNI`, `MirrorAuth` that cannot be mapped exactly, `MirrorUsingRole` /
//! `MirrorRole`, the private
//! network options (`MirrorIsExpressTunnel`, `MirrorDst*`, `MirrorTunnelId`),
//! `MirrorTaggings`, `MirrorReturnHeaders`, `MirrorMultiAlternates`, the image and video
//! options, `MirrorSaveOssMeta`, `MirrorUserLastModified`, `MirrorAllowHeadObject`,
//! `MirrorSwitchAllErrors`, `MirrorPassOriginalSlashes`, that `AliCDN` is served as a plain
//! redirect, fields that do nothing for the rule's `RedirectType`, the static website
//! settings (`IndexDocument`, `ErrorDocument`), and `LuaConfig` (the rule is not imported).
//!
//! # Differences that hold for every imported rule
//!
//! - Origin redirects are followed (3 hops by default) only to the origin's own host (or
//!   `origin.allow_redirect_to`); the clouds follow them anywhere. With following turned
//!   off, an origin `3xx` is a `502` here, where the clouds pass the redirect on.
//! - `pass = "all"` never sends `Authorization`, `Cookie` or `Accept-Encoding`, and never
//!   hop-by-hop, `Host`, `Range` or conditional headers; OSS also keeps back its `x-oss-*`
//!   headers, which are sent here.

mod cos;
mod oss;
mod private;
mod xml;

use std::fmt;

use http::header::HeaderName;

use super::{Config, HeaderPolicyConfig, RuleConfig, StoreConfig};
use crate::{Error, HeaderPolicy};
use private::{Signed, into_bucket, secret_env, signed_bucket};

/// What an import gives: the rules that could be expressed, and what could not.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Imported {
    /// The rules, in the cloud's order (first match wins, as there).
    pub rules: Vec<RuleConfig>,
    /// Every field, element or rule that was not imported, in document order.
    pub unsupported: Vec<Unsupported>,
}

/// A part of the document that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unsupported {
    /// Where it is: element names from the rule down, 1-based indexes for repeated
    /// elements (`OriginRule[1].OriginParameter.CopyOriginData`), `@name` for an attribute.
    pub at: String,
    /// Why it was not imported, and what was done instead.
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// Import a Tencent COS origin configuration: the `<OriginConfiguration>` XML body of
/// `PutBucketOrigin`. See the [module documentation](self) for the mapping.
///
/// A document that is not XML or whose root is not `<OriginConfiguration>` is an error;
/// anything inside it that cannot be expressed is in [`Imported::unsupported`].
pub fn from_cos_xml(xml: &str) -> Result<Imported, Error> {
    let root = xml::parse(xml).map_err(|e| Error::config(format!("COS XML: {e}")))?;
    cos::import(&root)
}

/// Import Alibaba OSS mirror and redirect rules: the `<RoutingRules>` of `PutBucketWebsite`,
/// as a whole `<WebsiteConfiguration>` or the `<RoutingRules>` element alone. See the
/// [module documentation](self) for the mapping.
///
/// A document that is not XML or has another root is an error; anything inside it that
/// cannot be expressed is in [`Imported::unsupported`].
pub fn from_oss_xml(xml: &str) -> Result<Imported, Error> {
    let root = xml::parse(xml).map_err(|e| Error::config(format!("OSS XML: {e}")))?;
    oss::import(&root)
}

/// The list of what was not imported, as it grows.
#[derive(Default)]
struct Report {
    items: Vec<Unsupported>,
}

impl Report {
    fn add(&mut self, at: impl Into<String>, reason: impl Into<String>) {
        self.items.push(Unsupported {
            at: at.into(),
            reason: reason.into(),
        });
    }

    /// Report the elements nobody asked for.
    fn unknown(&mut self, fields: xml::Fields<'_>) {
        for at in fields.unknown() {
            self.add(at, "not a documented element here; not imported");
        }
    }
}

/// One rule being imported: its reports, and whether it can be imported at all.
struct RuleReport<'r> {
    report: &'r mut Report,
    fatal: bool,
}

impl<'r> RuleReport<'r> {
    fn new(report: &'r mut Report) -> Self {
        Self {
            report,
            fatal: false,
        }
    }

    /// A field that is not imported; the rule still is.
    fn skip(&mut self, at: impl Into<String>, reason: impl Into<String>) {
        self.report.add(at, reason);
    }

    /// Something without which the rule would match or fetch differently than in the cloud.
    fn fatal(&mut self, at: impl Into<String>, reason: impl AsRef<str>) {
        self.fatal = true;
        self.report
            .add(at, format!("{}; the rule is not imported", reason.as_ref()));
    }

    /// Unknown elements: `fatal` where they could be conditions or key mappings.
    fn unknown(&mut self, fields: xml::Fields<'_>, fatal: bool) {
        for at in fields.unknown() {
            if fatal {
                self.fatal(
                    at,
                    "not a documented element here, so what it means is unknown",
                );
            } else {
                self.skip(at, "not a documented element here; not imported");
            }
        }
    }

    /// Report repeats of an element that may appear once; the first one is used.
    fn once<'a>(&mut self, one: xml::One<'a>) -> Option<(String, &'a xml::Element)> {
        for at in one.repeated {
            self.skip(at, "repeated; only the first one is imported");
        }
        one.first
    }

    /// The text of child `name`, if present.
    fn text(&mut self, fields: &mut xml::Fields<'_>, name: &str) -> Option<(String, String)> {
        let one = fields.one(name);
        self.once(one).map(|(at, e)| (at, e.text.clone()))
    }

    /// A rule's priority (COS `RulePriority`, OSS `RuleNumber`); not a number is reported
    /// and the rule is ordered last.
    fn order(&mut self, fields: &mut xml::Fields<'_>, name: &str) -> Option<i64> {
        let (at, text) = self.text(fields, name)?;
        text.parse::<i64>().map_or_else(
            |_| {
                self.skip(at, format!("{text:?} is not a number; ordered last"));
                None
            },
            Some,
        )
    }

    /// A `true` / `false` child; anything else is reported and treated as absent.
    fn boolean(&mut self, fields: &mut xml::Fields<'_>, name: &str) -> Option<bool> {
        let (at, text) = self.text(fields, name)?;
        match text.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.skip(at, format!("{text:?} is not true or false; ignored"));
                None
            }
        }
    }
}

/// A rule ready to be ordered, named and checked.
struct Candidate {
    /// `RulePriority` / `RuleNumber`.
    order: Option<i64>,
    /// Where the rule is (`OriginRule[2]`).
    at: String,
    rule: RuleConfig,
}

/// Order the rules as the cloud does (by number, then document order; unnumbered last),
/// name them `<prefix>-<number>`, and keep only those that build.
fn finish(mut candidates: Vec<Candidate>, prefix: &str, mut report: Report) -> Imported {
    candidates.sort_by_key(|c| (c.order.is_none(), c.order));
    let mut names = std::collections::HashSet::new();
    let mut rules = Vec::new();
    for (i, mut candidate) in candidates.into_iter().enumerate() {
        let base = match candidate.order {
            Some(n) => format!("{prefix}-{n}"),
            None => format!("{prefix}-{}", i + 1),
        };
        let mut name = base.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        candidate.rule.name = Some(name);
        let forwards_query = candidate.rule.query.as_deref() == Some("forward")
            || !candidate.rule.query_params.is_empty();
        let forwards_headers = candidate.rule.request_headers.as_ref().is_some_and(|h| {
            h.pass.as_deref().is_some_and(|p| p != "none") || !h.pass_only.is_empty()
        });
        if forwards_query || forwards_headers {
            // What the cloud does: the first answer for a key is everyone's.
            candidate.rule.unkeyed_forwarding = Some(true);
            report.add(
                candidate.at.clone(),
                "imported with `unkeyed_forwarding = true`: the query string or client headers \
                 reach the origin but are not part of the store key, so the first answer for \
                 a key is served to everyone (as the cloud does); drop the forwarding to \
                 keep one client's input from deciding what others get"
                    .to_owned(),
            );
        }
        let config = Config {
            store: StoreConfig {
                url: "memory://".to_owned(),
                ..StoreConfig::default()
            },
            rules: vec![candidate.rule],
            ..Config::default()
        };
        // The variables named for secrets are set by the operator after the import.
        let problems = super::build::validate_with(&config, false, false);
        if problems.is_empty() {
            rules.extend(config.rules);
        } else {
            for p in problems {
                let field = p.at.trim_start_matches("rules[0]").trim_start_matches('.');
                report.add(
                    candidate.at.clone(),
                    format!(
                        "imported as `{field}`, which is invalid: {}; the rule is not imported",
                        p.message
                    ),
                );
            }
        }
    }
    Imported {
        rules,
        unsupported: report.items,
    }
}

/// Headers that [`HeaderPolicy::pass_all`] never sends but `pass_only` may name.
const SENSITIVE: [&str; 3] = ["authorization", "cookie", "accept-encoding"];

/// The clouds' request header settings, gathered before they become a policy.
#[derive(Default)]
struct Headers {
    pass_all: bool,
    /// (where, name)
    pass: Vec<(String, String)>,
    /// (where, name), with `pass_all`
    except: Vec<(String, String)>,
    /// (where, name, value)
    set: Vec<(String, String, String)>,
}

impl Headers {
    fn policy(self, r: &mut RuleReport<'_>) -> Option<HeaderPolicyConfig> {
        let mut policy = HeaderPolicyConfig::default();
        let reason = |e: Error| {
            e.to_string()
                .trim_start_matches("invalid configuration: ")
                .to_owned()
        };
        if self.pass_all {
            policy.pass = Some("all".to_owned());
            for (at, name) in self.except {
                match HeaderName::try_from(name.as_str()) {
                    Ok(h) => policy.except.push(h.as_str().to_owned()),
                    Err(_) => r.skip(at, format!("{name:?} is not a header name; ignored")),
                }
            }
            for (at, name) in self.pass {
                let lower = name.to_ascii_lowercase();
                if SENSITIVE.contains(&lower.as_str()) {
                    r.skip(
                        at,
                        format!(
                            "passing all headers never sends {name}, and one cannot be added \
                             to it; list every header to pass instead to send it"
                        ),
                    );
                } else if let Err(e) = HeaderPolicy::pass_only([name.as_str()]) {
                    r.skip(at, format!("{}; not passed", reason(e)));
                }
            }
        } else {
            let removed: Vec<String> = self
                .except
                .iter()
                .map(|(_, n)| n.to_ascii_lowercase())
                .collect();
            for (at, name) in self.pass {
                match HeaderPolicy::pass_only([name.as_str()]) {
                    Ok(_) if removed.contains(&name.to_ascii_lowercase()) => {}
                    Ok(_) => policy.pass_only.push(name.to_ascii_lowercase()),
                    Err(e) => r.skip(at, format!("{}; not passed", reason(e))),
                }
            }
        }
        for (at, name, value) in self.set {
            match HeaderPolicy::none().set(&name, &value) {
                Ok(_) => {
                    policy.set.insert(name.to_ascii_lowercase(), value);
                }
                Err(e) => r.skip(at, format!("{}; not sent", reason(e))),
            }
        }
        (policy.pass.is_some() || !policy.pass_only.is_empty() || !policy.set.is_empty())
            .then_some(policy)
    }
}

/// A key prefix or suffix as a condition on keys, which never start with `/`.
fn key_part(text: &str) -> Option<String> {
    let text = text.trim_start_matches('/');
    (!text.is_empty()).then(|| text.to_owned())
}

/// `scheme://host/` from a host name that may carry a port, a path or its own scheme.
fn host_url(scheme: &str, host: &str) -> String {
    let bare = host
        .strip_prefix("http://")
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host)
        .trim_end_matches('/');
    format!("{scheme}://{bare}/")
}

/// Statuses written as `404` or `404,403`.
fn statuses(r: &mut RuleReport<'_>, at: &str, text: &str) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(code) if (100..=999).contains(&code) => out.push(code),
            _ => {
                r.fatal(at, format!("{part:?} is not an HTTP status"));
                return None;
            }
        }
    }
    Some(out)
}

/// `query = "forward"` or `"drop"`.
fn query_policy(forward: bool) -> Option<String> {
    let policy = if forward { "forward" } else { "drop" };
    Some(policy.to_owned())
}

/// `statuses` as a rule condition: `[404]` is the default and left out.
fn trigger(codes: Vec<u16>) -> Option<Vec<u16>> {
    (!codes.is_empty() && codes != [404]).then_some(codes)
}

/// A redirect status the rules can answer with.
fn redirect_status(r: &mut RuleReport<'_>, at: &str, text: &str) -> Option<u16> {
    match text.trim() {
        "301" => Some(301),
        "302" => Some(302),
        "307" => Some(307),
        other => {
            r.skip(
                at,
                format!("{other:?} is not one of 301, 302, 307; redirects answer 302"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_urls() {
        assert_eq!(host_url("http", "example.com"), "http://example.com/");
        assert_eq!(
            host_url("https", "http://example.com:8080/dir/"),
            "https://example.com:8080/dir/"
        );
    }

    #[test]
    fn key_parts() {
        assert_eq!(key_part("/"), None);
        assert_eq!(key_part("/img/"), Some("img/".to_owned()));
        assert_eq!(key_part(""), None);
    }
}
