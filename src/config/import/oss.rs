//! Alibaba OSS `<RoutingRules>` (PutBucketWebsite) → rules.

use super::xml::{Element, Fields};
use super::{
    Candidate, Headers, Imported, Report, RuleReport, Signed, finish, host_url, into_bucket,
    key_part, query_policy, redirect_status, secret_env, signed_bucket, statuses, trigger,
};
use crate::Error;
use crate::config::{HeaderConditionConfig, ReplacePrefix, RewriteConfig, RuleConfig};

pub(super) fn import(root: &Element) -> Result<Imported, Error> {
    let mut report = Report::default();
    let mut candidates = Vec::new();
    let mut seen = 0;
    match root.name.as_str() {
        "WebsiteConfiguration" => {
            let mut fields = Fields::new("WebsiteConfiguration", root);
            for (at, _) in fields.matching(|n| n == "IndexDocument" || n == "ErrorDocument") {
                report.add(
                    at.trim_end_matches("[1]"),
                    "a static website setting, not an origin rule; not imported",
                );
            }
            for (_, rules) in fields.all("RoutingRules") {
                routing_rules(&mut report, &mut candidates, &mut seen, rules);
            }
            report.unknown(fields);
        }
        "RoutingRules" => routing_rules(&mut report, &mut candidates, &mut seen, root),
        other => {
            return Err(Error::config(format!(
                "OSS XML: the root element is <{other}>, not <WebsiteConfiguration> or \
                 <RoutingRules>"
            )));
        }
    }
    Ok(finish(candidates, "oss-rule", report))
}

/// The rules of one `<RoutingRules>`; `seen` counts rules across the document.
fn routing_rules(
    report: &mut Report,
    candidates: &mut Vec<Candidate>,
    seen: &mut usize,
    element: &Element,
) {
    let mut fields = Fields::new("RoutingRules", element);
    for (_, e) in fields.all("RoutingRule") {
        *seen += 1;
        if let Some(candidate) = rule(report, format!("RoutingRule[{seen}]"), e) {
            candidates.push(candidate);
        }
    }
    report.unknown(fields);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Mirror,
    External,
    AliCdn,
}

fn rule(report: &mut Report, at: String, element: &Element) -> Option<Candidate> {
    let mut r = RuleReport::new(report);
    let mut f = Fields::new(at.clone(), element);
    let mut rule = RuleConfig::default();

    let order = r.order(&mut f, "RuleNumber");
    let condition = f.one("Condition");
    if let Some((at, e)) = r.once(condition) {
        condition_fields(&mut r, &mut rule, at, e);
    }
    let redirect = f.one("Redirect");
    match r.once(redirect) {
        Some((at, e)) => redirect_fields(&mut r, &mut rule, at, e),
        None => r.fatal(f.path("Redirect"), "missing"),
    }
    let lua = f.one("LuaConfig");
    if let Some((at, _)) = r.once(lua) {
        r.fatal(
            at,
            "a Lua script may change the request in ways a rule cannot",
        );
    }
    r.unknown(f, false);
    (!r.fatal).then_some(Candidate { order, at, rule })
}

fn condition_fields(r: &mut RuleReport<'_>, rule: &mut RuleConfig, at: String, e: &Element) {
    let mut f = Fields::new(at, e);
    rule.prefix = r
        .text(&mut f, "KeyPrefixEquals")
        .and_then(|(_, t)| key_part(&t));
    rule.suffix = r
        .text(&mut f, "KeySuffixEquals")
        .and_then(|(_, t)| (!t.is_empty()).then_some(t));
    if let Some((at, text)) = r.text(&mut f, "HttpErrorCodeReturnedEquals") {
        rule.statuses = statuses(r, &at, &text).and_then(trigger);
    }
    for (at, e) in f.all("IncludeHeader") {
        let mut h = Fields::new(at.clone(), e);
        let key = r.text(&mut h, "Key").map(|(_, k)| k).unwrap_or_default();
        let mut tests = Vec::new();
        for name in ["Equals", "StartsWith", "EndsWith"] {
            if let Some((_, value)) = r.text(&mut h, name) {
                tests.push((name, value));
            }
        }
        r.unknown(h, true);
        if key.is_empty() {
            r.fatal(at, "an IncludeHeader without a Key");
            continue;
        }
        if tests.is_empty() {
            r.fatal(
                at,
                "an IncludeHeader without Equals, StartsWith or EndsWith",
            );
        }
        for (name, value) in tests {
            let mut c = HeaderConditionConfig {
                name: key.to_ascii_lowercase(),
                ..HeaderConditionConfig::default()
            };
            match name {
                "Equals" => c.equals = Some(value),
                "StartsWith" => c.starts_with = Some(value),
                _ => c.ends_with = Some(value),
            }
            rule.when_headers.push(c);
        }
    }
    // An unknown condition would make the rule match more than in OSS.
    r.unknown(f, true);
}

/// Options of Mirror rules that cannot be expressed, and why.
const MIRROR_ONLY: &[(&str, &str)] = &[
    (
        "MirrorURLProbe",
        "failover here is decided per request (connection errors, 5xx, `fail_over_on`) with a \
         breaker, not by probing a URL",
    ),
    (
        "MirrorSNI",
        "SNI is always sent here: the origin's host, or `origin.tls_server_name` for an \
         origin reached by IP address",
    ),
    ("MirrorUsingRole", "no RAM roles here"),
    ("MirrorRole", "no RAM roles here"),
    ("MirrorIsExpressTunnel", "no private network paths here"),
    ("MirrorDstRegion", "no private network paths here"),
    ("MirrorDstVpcId", "no private network paths here"),
    ("MirrorDstSlaveVpcId", "no private network paths here"),
    ("MirrorTunnelId", "no private network paths here"),
    ("MirrorTaggings", "stored objects get no tags"),
    (
        "MirrorReturnHeaders",
        "the response carries the origin's allow-listed headers; no others can be set",
    ),
    (
        "MirrorMultiAlternates",
        "only MirrorURL and MirrorURLSlave are imported; add more hosts to `origin.standby`",
    ),
    ("MirrorAllowGetImageInfo", "no image processing here"),
    ("MirrorAllowVideoSnapshot", "no video processing here"),
    (
        "MirrorSaveOssMeta",
        "the object keeps the origin's content headers and `x-amz-meta-*`, nothing else",
    ),
    (
        "MirrorUserLastModified",
        "the store sets its own last-modified time",
    ),
    ("MirrorAllowHeadObject", "see the rule's `on_head` option"),
    (
        "MirrorSwitchAllErrors",
        "failover here is on connection errors, 5xx and the statuses in `fail_over_on`",
    ),
    (
        "MirrorPassOriginalSlashes",
        "keys with empty segments are never pulled, and paths are sent normalised",
    ),
];

/// Options whose `false` is the behaviour here anyway.
const OFF_IS_DEFAULT: &[&str] = &[
    "MirrorSNI",
    "MirrorUsingRole",
    "MirrorIsExpressTunnel",
    "MirrorAllowGetImageInfo",
    "MirrorAllowVideoSnapshot",
    "MirrorSaveOssMeta",
    "MirrorUserLastModified",
    "MirrorAllowHeadObject",
    "MirrorSwitchAllErrors",
    "MirrorPassOriginalSlashes",
];

fn redirect_fields(r: &mut RuleReport<'_>, rule: &mut RuleConfig, at: String, e: &Element) {
    let mut f = Fields::new(at, e);
    let kind = match r.text(&mut f, "RedirectType") {
        Some((_, t)) if t.eq_ignore_ascii_case("Mirror") => Type::Mirror,
        Some((_, t)) if t.eq_ignore_ascii_case("External") => Type::External,
        Some((at, t)) if t.eq_ignore_ascii_case("AliCDN") => {
            r.skip(
                at,
                "imported as an External redirect: the header that tells Alibaba Cloud CDN \
                 to follow it is not sent",
            );
            Type::AliCdn
        }
        Some((at, t)) => {
            r.fatal(at, format!("{t:?} is not one of Mirror, External, AliCDN"));
            return;
        }
        None => {
            r.fatal(f.path("RedirectType"), "missing");
            return;
        }
    };
    let pass_query = r.boolean(&mut f, "PassQueryString");
    let rewrite = rewrite(r, &mut f, rule.prefix.as_deref().unwrap_or(""));
    rule.rewrite = rewrite;
    if kind == Type::Mirror {
        mirror(r, rule, &mut f, pass_query);
    } else {
        external(r, rule, &mut f, pass_query);
    }
    r.unknown(f, false);
}

fn mirror(
    r: &mut RuleReport<'_>,
    rule: &mut RuleConfig,
    f: &mut Fields<'_>,
    pass_query: Option<bool>,
) {
    rule.mode = Some("sync".to_owned());
    match r.text(f, "MirrorURL") {
        Some((_, url)) if !url.is_empty() => rule.origin.hosts.push(url),
        _ => r.fatal(f.path("MirrorURL"), "no origin URL"),
    }
    if let Some((_, url)) = r.text(f, "MirrorURLSlave").filter(|(_, u)| !u.is_empty()) {
        rule.origin.standby.push(url);
    }
    let query = r.boolean(f, "MirrorPassQueryString").or(pass_query);
    rule.query = query_policy(query == Some(true));
    if r.boolean(f, "MirrorFollowRedirect") == Some(false) {
        rule.origin.follow_redirects = Some(0);
        r.skip(
            f.path("MirrorFollowRedirect"),
            "imported as `origin.follow_redirects = 0`, but an origin 3xx is then a 502 here; \
             OSS passes the redirect on to the client",
        );
    }
    let check_md5 = r.boolean(f, "MirrorCheckMd5");
    let headers = f.one("MirrorHeaders");
    if let Some((at, e)) = r.once(headers) {
        rule.request_headers = mirror_headers(r, at, e);
    }
    if let Some((at, codes)) = r.text(f, "TransparentMirrorResponseCodes") {
        for part in codes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u16>() {
                Ok(404) => r.skip(
                    at.clone(),
                    "404: an origin 404 always gives the store's own 404 here; not passed through",
                ),
                Ok(200) => {}
                Ok(c) if (100..1000).contains(&c) => rule.pass_through.push(c),
                _ => r.skip(
                    at.clone(),
                    format!("{part:?} is not an HTTP status; ignored"),
                ),
            }
        }
    }
    let proxy = r.boolean(f, "MirrorProxyPass") == Some(true);
    if proxy {
        rule.mode = Some("proxy".to_owned());
    }
    if let Some((at, status)) = r.text(f, "MirrorAsyncStatus") {
        match status.trim() {
            "301" | "302" | "307" if !proxy => {
                rule.mode = Some("async".to_owned());
                rule.redirect_status = status.trim().parse().ok();
            }
            _ if proxy => r.skip(
                at,
                "MirrorProxyPass stores nothing, so there is nothing to fill in the \
                 background; ignored",
            ),
            other => r.skip(
                at,
                format!(
                    "async pulls answer 301, 302 or 307 here, not {other}; pulled synchronously"
                ),
            ),
        }
    }
    match (check_md5, proxy) {
        (Some(true), true) => r.skip(
            f.path("MirrorCheckMd5"),
            "a MirrorProxyPass rule stores nothing to check; ignored",
        ),
        (Some(true), false) => rule.checksums = Some(vec!["content-md5".to_owned()]),
        (Some(false), false) => rule.checksums = Some(Vec::new()),
        _ => {}
    }
    let auth = f.one("MirrorAuth");
    if let Some((at, e)) = r.once(auth) {
        mirror_auth(r, rule, &at, e);
    }
    for (name, reason) in MIRROR_ONLY {
        for (at, e) in f.all(name) {
            let unset = e.text.is_empty() && e.children.is_empty();
            let off = e.text.eq_ignore_ascii_case("false") && OFF_IS_DEFAULT.contains(name);
            if !unset && !off {
                r.skip(
                    at.trim_end_matches("[1]"),
                    format!("{reason}; not imported"),
                );
            }
        }
    }
    for name in ["Protocol", "HostName", "HttpRedirectCode"] {
        for (at, _) in f.all(name) {
            r.skip(
                at.trim_end_matches("[1]"),
                "has no effect for RedirectType Mirror; not imported",
            );
        }
    }
}

/// `MirrorAuth` with `AuthType` S3V4 on a rule whose one origin is `MirrorURL`: the rule's
/// origin becomes a bucket origin signing as OSS does; anything else is reported.
fn mirror_auth(r: &mut RuleReport<'_>, rule: &mut RuleConfig, at: &str, e: &Element) {
    let child = |name: &str| {
        e.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.trim().to_owned())
            .unwrap_or_default()
    };
    let kind = child("AuthType");
    let why = if !kind.eq_ignore_ascii_case("S3V4") {
        format!("AuthType {kind:?} (only S3V4 is imported)")
    } else if rule.mode.as_deref() == Some("async") {
        "an async rule redirects clients to the origin, which a private bucket does not \
         serve them"
            .to_owned()
    } else if rule.origin.hosts.len() != 1 || !rule.origin.standby.is_empty() {
        "MirrorURLSlave or MirrorMultiAlternates beside MirrorURL".to_owned()
    } else if child("AccessKeyId").is_empty() || child("AccessKeySecret").is_empty() {
        "no AccessKeyId and AccessKeySecret".to_owned()
    } else {
        let rule_at = at.split('.').next().unwrap_or_default();
        let variable = secret_env("OSS", rule_at);
        let (url, region, id) = (
            rule.origin.hosts[0].clone(),
            child("Region"),
            child("AccessKeyId"),
        );
        let signed = Signed {
            url: &url,
            region: &region,
            access_key_id: &id,
            secret_env: &variable,
        };
        match signed_bucket(&signed) {
            Ok(origin) => {
                into_bucket(r, rule, origin, &format!("{at}.AccessKeySecret"));
                return;
            }
            Err(why) => why,
        }
    };
    r.skip(
        at,
        format!(
            "{why}: signed requests to a private origin are imported only as a bucket \
             origin, for S3V4 with AccessKeyId, AccessKeySecret and Region on a Mirror rule \
             with one MirrorURL; not imported"
        ),
    );
}

fn external(
    r: &mut RuleReport<'_>,
    rule: &mut RuleConfig,
    f: &mut Fields<'_>,
    pass_query: Option<bool>,
) {
    rule.mode = Some("redirect".to_owned());
    let scheme = match r.text(f, "Protocol") {
        Some((_, p)) if p.eq_ignore_ascii_case("https") => "https",
        Some((_, p)) if p.eq_ignore_ascii_case("http") => "http",
        Some((at, p)) => {
            r.fatal(at, format!("{p:?} is not one of http, https"));
            "http"
        }
        None => {
            // Without a protocol the redirect keeps the request's.
            rule.origin.protocol = Some("same".to_owned());
            "http"
        }
    };
    match r.text(f, "HostName") {
        Some((_, host)) if !host.is_empty() => rule.origin.hosts.push(host_url(scheme, &host)),
        _ => r.fatal(
            f.path("HostName"),
            "a redirect to the request's own host cannot be expressed (the origin comes from \
             configuration only)",
        ),
    }
    if let Some((at, code)) = r.text(f, "HttpRedirectCode") {
        rule.redirect_status = redirect_status(r, &at, &code);
    }
    rule.query = query_policy(pass_query == Some(true));
    let mirror_fields =
        f.matching(|n| n.starts_with("Mirror") || n == "TransparentMirrorResponseCodes");
    for (at, _) in mirror_fields {
        r.skip(
            at.trim_end_matches("[1]"),
            "has no effect for a redirect rule; not imported",
        );
    }
}

fn mirror_headers(
    r: &mut RuleReport<'_>,
    at: String,
    e: &Element,
) -> Option<crate::config::HeaderPolicyConfig> {
    let mut f = Fields::new(at, e);
    let mut h = Headers {
        pass_all: r.boolean(&mut f, "PassAll") == Some(true),
        ..Headers::default()
    };
    for (at, e) in f.all("Pass") {
        if !e.text.is_empty() {
            h.pass.push((at, e.text.clone()));
        }
    }
    for (at, e) in f.all("Remove") {
        if !e.text.is_empty() {
            h.except.push((at, e.text.clone()));
        }
    }
    for (at, e) in f.all("Set") {
        let mut s = Fields::new(at.clone(), e);
        let key = r.text(&mut s, "Key").map(|(_, k)| k).unwrap_or_default();
        let value = r.text(&mut s, "Value").map(|(_, v)| v).unwrap_or_default();
        r.unknown(s, false);
        if key.is_empty() {
            r.skip(at, "a Set without a Key; ignored");
        } else {
            h.set.push((at, key, value));
        }
    }
    r.unknown(f, false);
    h.policy(r)
}

/// `ReplaceKeyWith` / `ReplaceKeyPrefixWith`, chosen by `EnableReplacePrefix`.
fn rewrite(r: &mut RuleReport<'_>, f: &mut Fields<'_>, key_prefix: &str) -> Option<RewriteConfig> {
    let enable = r.boolean(f, "EnableReplacePrefix");
    let with = r.text(f, "ReplaceKeyWith").filter(|(_, t)| !t.is_empty());
    let prefix_with = r.text(f, "ReplaceKeyPrefixWith");
    let mut rw = RewriteConfig::default();
    let use_prefix = match (enable, &with, &prefix_with) {
        (Some(true), _, None) => {
            r.fatal(
                f.path("EnableReplacePrefix"),
                "EnableReplacePrefix without ReplaceKeyPrefixWith",
            );
            return None;
        }
        (Some(true), _, Some(_)) => true,
        (Some(false), _, _) => false,
        (None, Some(_), Some(_)) => {
            r.fatal(
                f.path("ReplaceKeyPrefixWith"),
                "both ReplaceKeyWith and ReplaceKeyPrefixWith, and no EnableReplacePrefix to \
                 choose",
            );
            return None;
        }
        (None, None, Some(_)) => true,
        (None, _, None) => false,
    };
    if use_prefix {
        if let Some((at, _)) = &with {
            r.skip(
                at.clone(),
                "EnableReplacePrefix is true, so OSS ignores it; not imported",
            );
        }
        let to = prefix_with.map(|(_, t)| t).unwrap_or_default();
        let to = to.trim_start_matches('/');
        if key_prefix != to {
            rw.replace_prefix = Some(ReplacePrefix {
                from: key_prefix.to_owned(),
                to: to.to_owned(),
            });
        }
    } else {
        if let Some((at, _)) = &prefix_with {
            r.skip(
                at.clone(),
                "EnableReplacePrefix is false, so OSS ignores it; not imported",
            );
        }
        if let Some((at, template)) = with {
            let template = template.trim_start_matches('/').to_owned();
            if template.replace("${key}", "").contains("${") {
                r.fatal(at, "only the ${key} variable can be expressed");
                return None;
            }
            if template.contains("${key}") {
                rw.template = Some(template);
            } else {
                rw.fixed = Some(template);
            }
        }
    }
    (rw != RewriteConfig::default()).then_some(rw)
}
