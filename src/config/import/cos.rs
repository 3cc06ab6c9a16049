//! Tencent COS `<OriginConfiguration>` (PutBucketOrigin) → rules.

use super::xml::{Element, Fields};
use super::{
    Candidate, Headers, Imported, Report, RuleReport, Signed, finish, host_url, into_bucket,
    key_part, query_policy, redirect_status, secret_env, signed_bucket, statuses, trigger,
};
use crate::Error;
use crate::config::{OriginConfig, ReplacePrefix, RewriteConfig, RuleConfig};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    /// Sync origin-pull.
    Mirror,
    /// Async origin-pull: a redirect now, the object filled in the background.
    Proxy,
    Redirect,
}

pub(super) fn import(root: &Element) -> Result<Imported, Error> {
    if root.name != "OriginConfiguration" {
        return Err(Error::config(format!(
            "COS XML: the root element is <{}>, not <OriginConfiguration>",
            root.name
        )));
    }
    let mut report = Report::default();
    let mut fields = Fields::new("OriginConfiguration", root);
    let mut candidates = Vec::new();
    for (i, (_, element)) in fields.all("OriginRule").into_iter().enumerate() {
        let at = format!("OriginRule[{}]", i + 1);
        if let Some(candidate) = rule(&mut report, at, element) {
            candidates.push(candidate);
        }
    }
    report.unknown(fields);
    Ok(finish(candidates, "cos-rule", report))
}

fn rule(report: &mut Report, at: String, element: &Element) -> Option<Candidate> {
    let mut r = RuleReport::new(report);
    let mut f = Fields::new(at.clone(), element);
    let mut rule = RuleConfig::default();

    let order = r.order(&mut f, "RulePriority");
    let kind = match r.text(&mut f, "OriginType") {
        Some((_, t)) if t.eq_ignore_ascii_case("Mirror") => Some(Type::Mirror),
        Some((_, t)) if t.eq_ignore_ascii_case("Proxy") => Some(Type::Proxy),
        Some((_, t)) if t.eq_ignore_ascii_case("Redirect") => Some(Type::Redirect),
        Some((at, t)) => {
            r.fatal(at, format!("{t:?} is not one of Mirror, Proxy, Redirect"));
            None
        }
        None => {
            r.fatal(f.path("OriginType"), "missing");
            None
        }
    };
    rule.mode = kind.map(|k| {
        match k {
            Type::Mirror => "sync",
            Type::Proxy => "async",
            Type::Redirect => "redirect",
        }
        .to_owned()
    });
    let kind = kind.unwrap_or(Type::Mirror);

    let condition = f.one("OriginCondition");
    if let Some((at, e)) = r.once(condition) {
        condition_fields(&mut r, &mut rule, at, e);
    }
    // COS forwards the query string unless told not to.
    rule.query = query_policy(true);
    let mut scheme = "http";
    let parameter = f.one("OriginParameter");
    if let Some((at, e)) = r.once(parameter) {
        scheme = parameter_fields(&mut r, &mut rule, kind, at, e);
    }
    let info = f.one("OriginInfo");
    match r.once(info) {
        Some((at, e)) => info_fields(&mut r, &mut rule, scheme, at, e),
        None => r.fatal(f.path("OriginInfo"), "no origin"),
    }
    let standby = f.one("HTTPStandbyCode");
    if let Some((at, e)) = r.once(standby) {
        let mut s = Fields::new(at, e);
        for (at, code) in s.all("StatusCode") {
            match code.text.trim().parse::<u16>() {
                // 5xx fail over anyway.
                Ok(c) if (500..600).contains(&c) => {}
                Ok(c) if (100..1000).contains(&c) => rule.origin.fail_over_on.push(c),
                _ => r.skip(
                    at,
                    format!("{:?} is not an HTTP status; ignored", code.text),
                ),
            }
        }
        r.unknown(s, false);
    }
    r.unknown(f, false);
    (!r.fatal).then_some(Candidate { order, at, rule })
}

fn condition_fields(r: &mut RuleReport<'_>, rule: &mut RuleConfig, at: String, e: &Element) {
    let mut f = Fields::new(at, e);
    if let Some((at, text)) = r.text(&mut f, "HTTPStatusCode") {
        rule.statuses = statuses(r, &at, &text).and_then(trigger);
    }
    rule.prefix = r.text(&mut f, "Prefix").and_then(|(_, t)| key_part(&t));
    rule.suffix = r
        .text(&mut f, "Suffix")
        .and_then(|(_, t)| (!t.is_empty()).then_some(t));
    let filter = f.one("FilterHost");
    if let Some((at, e)) = r.once(filter) {
        let mut filter = Fields::new(at, e);
        let forbid = filter.one("ForbidHost");
        if let Some((at, e)) = r.once(forbid) {
            let mut forbid = Fields::new(at, e);
            for (at, list) in forbid.all("DomainList") {
                let mut list = Fields::new(at, list);
                for (_, domain) in list.all("Domain") {
                    if !domain.text.is_empty() {
                        rule.deny_hosts.push(domain.text.to_ascii_lowercase());
                    }
                }
                r.unknown(list, true);
            }
            r.unknown(forbid, true);
        }
        r.unknown(filter, true);
    }
    // An unknown condition would make the rule match more than in COS.
    r.unknown(f, true);
}

/// The parameters; gives the scheme of the host URLs.
fn parameter_fields(
    r: &mut RuleReport<'_>,
    rule: &mut RuleConfig,
    kind: Type,
    at: String,
    e: &Element,
) -> &'static str {
    let mut f = Fields::new(at, e);
    let mut scheme = "http";
    match r.text(&mut f, "Protocol") {
        None => {}
        Some((_, p)) if p.eq_ignore_ascii_case("HTTP") => {}
        Some((_, p)) if p.eq_ignore_ascii_case("HTTPS") => scheme = "https",
        Some((_, p)) if p.eq_ignore_ascii_case("FOLLOW") => {
            rule.origin.protocol = Some("same".to_owned());
        }
        Some((at, p)) => r.fatal(at, format!("{p:?} is not one of HTTP, HTTPS, FOLLOW")),
    }
    if let Some(true) = r.boolean(&mut f, "TransparentErrorCode") {
        r.skip(
            f.path("TransparentErrorCode"),
            "origin errors are a 502 here, except the statuses listed in `pass_through`; \
             list the ones to pass on there",
        );
    }
    if let Some(false) = r.boolean(&mut f, "FollowQueryString") {
        rule.query = query_policy(false);
    }
    let header = f.one("HttpHeader");
    if let Some((at, e)) = r.once(header) {
        if kind == Type::Redirect {
            r.skip(
                at,
                "a Redirect rule sends no request to the origin; not imported",
            );
        } else {
            rule.request_headers = headers(r, at, e);
        }
    }
    if let Some(false) = r.boolean(&mut f, "FollowRedirection") {
        rule.origin.follow_redirects = Some(0);
        if kind != Type::Redirect {
            r.skip(
                f.path("FollowRedirection"),
                "imported as `origin.follow_redirects = 0`, but an origin 3xx is then a 502 \
                 here; COS passes the redirect on to the client",
            );
        }
    }
    let follow = f.one("FollowRedirectionConfiguration");
    if let Some((at, _)) = r.once(follow) {
        r.skip(
            at,
            "redirects are followed with the rule's own request headers and the Location as \
             given; not imported",
        );
    }
    if let Some((at, code)) = r.text(&mut f, "HttpRedirectCode") {
        if kind == Type::Mirror {
            r.skip(at, "only for Redirect and Proxy rules; ignored");
        } else {
            rule.redirect_status = redirect_status(r, &at, &code);
        }
    }
    if let Some(false) = r.boolean(&mut f, "CopyOriginData") {
        r.skip(
            f.path("CopyOriginData"),
            "a rule that does not keep what it pulls is `mode = \"proxy\"`; not imported",
        );
    }
    r.unknown(f, false);
    scheme
}

fn headers(
    r: &mut RuleReport<'_>,
    at: String,
    e: &Element,
) -> Option<crate::config::HeaderPolicyConfig> {
    let mut f = Fields::new(at, e);
    let mut h = Headers {
        pass_all: r.boolean(&mut f, "FollowAllHeaders") == Some(true),
        ..Headers::default()
    };
    for (at, key, value) in header_list(r, &mut f, "NewHttpHeaders") {
        match value {
            // COS adds nothing for an empty value.
            Some(v) if !v.is_empty() => h.set.push((at, key, v)),
            _ => {}
        }
    }
    for (at, key, _) in header_list(r, &mut f, "FollowHttpHeaders") {
        h.pass.push((at, key));
    }
    // The documentation spells it ForbidFollowHeaders, the SDKs ForbidFollowHttpHeaders.
    for name in ["ForbidFollowHeaders", "ForbidFollowHttpHeaders"] {
        for (at, key, _) in header_list(r, &mut f, name) {
            h.except.push((at, key));
        }
    }
    r.unknown(f, false);
    h.policy(r)
}

/// The `Header`s (`Key`, `Value`) of list `name`.
fn header_list(
    r: &mut RuleReport<'_>,
    f: &mut Fields<'_>,
    name: &str,
) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    let list = f.one(name);
    if let Some((at, e)) = r.once(list) {
        let mut list = Fields::new(at, e);
        for (at, header) in list.all("Header") {
            let mut hf = Fields::new(at.clone(), header);
            let key = r.text(&mut hf, "Key").map(|(_, k)| k);
            let value = r.text(&mut hf, "Value").map(|(_, v)| v);
            r.unknown(hf, false);
            match key {
                Some(k) if !k.is_empty() => out.push((at, k, value)),
                _ => r.skip(at, "a header without a Key; ignored"),
            }
        }
        r.unknown(list, false);
    }
    out
}

fn info_fields(
    r: &mut RuleReport<'_>,
    rule: &mut RuleConfig,
    scheme: &str,
    at: String,
    e: &Element,
) {
    let rule_at = at.split('.').next().unwrap_or_default().to_owned();
    let mut f = Fields::new(at, e);
    let sync = rule.mode.as_deref() == Some("sync");
    let mut signed = None;
    let origin: &mut OriginConfig = &mut rule.origin;
    let mut weights = Vec::new();
    let infos = f.all("HostInfo");
    if infos.is_empty() {
        r.fatal(f.path("HostInfo"), "no origin host");
    }
    let single = infos.len() == 1;
    for (at, host) in infos {
        let mut h = Fields::new(at.clone(), host);
        let name = r.text(&mut h, "HostName").map(|(_, n)| n);
        let weight = r
            .text(&mut h, "Weight")
            .and_then(|(at, w)| match w.parse::<u32>() {
                Ok(w) if w > 0 => Some(w),
                _ => {
                    r.skip(at, format!("{w:?} is not a positive weight; weight 1"));
                    None
                }
            });
        let mut standby =
            h.matching(|n| n == "StandbyHostName" || n.starts_with("StandbyHostName_"));
        // StandbyHostName_1, _2, ... in their numbered order.
        standby.sort_by_key(|(_, e)| {
            e.name
                .strip_prefix("StandbyHostName_")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let private = h.matching(|n| n == "PrivateHost" || n.starts_with("PrivateStandbyHost_"));
        // Exact only for a Mirror rule whose one origin is the private host.
        let alone = single && sync && name.is_none() && standby.is_empty() && private.len() == 1;
        if let Some(found) = private_hosts(r, private, alone, scheme, &rule_at) {
            signed = Some(found);
        }
        r.unknown(h, false);
        if signed.is_some() {
            continue;
        }
        match name {
            Some(n) if !n.is_empty() => {
                origin.hosts.push(host_url(scheme, &n));
                weights.push(weight);
            }
            _ => r.fatal(at, "no HostName"),
        }
        for (_, s) in standby {
            if !s.text.is_empty() {
                origin.standby.push(host_url(scheme, &s.text));
            }
        }
    }
    if weights.iter().any(Option::is_some) {
        origin.weights = weights.into_iter().map(|w| w.unwrap_or(1)).collect();
    }
    if let Some((bucket, secret_at)) = signed {
        into_bucket(r, rule, bucket, &secret_at);
    }
    let file = f.one("FileInfo");
    if let Some((at, e)) = r.once(file) {
        rule.rewrite = file_info(r, at, e);
    }
    r.unknown(f, false);
}

fn file_info(r: &mut RuleReport<'_>, at: String, e: &Element) -> Option<RewriteConfig> {
    let mut f = Fields::new(at, e);
    let mut rw = RewriteConfig::default();
    // The older form: a flag and a prefix/suffix whose use is not documented precisely.
    let directive = r.boolean(&mut f, "PrefixDirective");
    let old_prefix = r.text(&mut f, "Prefix").filter(|(_, t)| !t.is_empty());
    let old_suffix = r.text(&mut f, "Suffix").filter(|(_, t)| !t.is_empty());
    if directive == Some(true) || old_prefix.is_some() || old_suffix.is_some() {
        r.fatal(
            f.at().to_owned(),
            "the older FileInfo form (PrefixDirective, Prefix, Suffix) is not imported; \
             rewrite it with PrefixConfiguration / SuffixConfiguration",
        );
    }
    let prefix = f.one("PrefixConfiguration");
    if let Some((at, e)) = r.once(prefix) {
        let mut p = Fields::new(at, e);
        let from = r.text(&mut p, "Prefix").map(|(_, t)| t).unwrap_or_default();
        let to = r
            .text(&mut p, "ReplacedWithPrefix")
            .map(|(_, t)| t)
            .unwrap_or_default();
        r.unknown(p, true);
        let (from, to) = (from.trim_start_matches('/'), to.trim_start_matches('/'));
        if from != to {
            rw.replace_prefix = Some(ReplacePrefix {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
    }
    let suffix = f.one("SuffixConfiguration");
    if let Some((at, e)) = r.once(suffix) {
        let mut s = Fields::new(at.clone(), e);
        let from = r.text(&mut s, "Suffix").map(|(_, t)| t).unwrap_or_default();
        let to = r
            .text(&mut s, "ReplacedWithSuffix")
            .map(|(_, t)| t)
            .unwrap_or_default();
        r.unknown(s, true);
        if from.is_empty() {
            rw.add_suffix = (!to.is_empty()).then_some(to);
        } else if from != to {
            rw.replace_suffix = Some(ReplacePrefix { from, to });
        }
    }
    let fixed = f.one("FixedFileConfiguration");
    if let Some((at, e)) = r.once(fixed) {
        let mut x = Fields::new(at.clone(), e);
        let path = r
            .text(&mut x, "FixedFilePath")
            .map(|(_, t)| t)
            .unwrap_or_default();
        r.unknown(x, true);
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            r.fatal(at, "no FixedFilePath");
        } else if rw != RewriteConfig::default() {
            r.fatal(
                at,
                "a fixed file together with a prefix or suffix change is ambiguous",
            );
        } else {
            rw.fixed = Some(path.to_owned());
        }
    }
    r.unknown(f, true);
    (rw != RewriteConfig::default()).then_some(rw)
}

/// The private hosts of a `HostInfo`: the signed bucket origin (and where its secret was)
/// when the rule's one origin is a private host that maps exactly (`alone`); every other
/// one is reported.
fn private_hosts(
    r: &mut RuleReport<'_>,
    private: Vec<(String, &Element)>,
    alone: bool,
    scheme: &str,
    rule_at: &str,
) -> Option<(OriginConfig, String)> {
    let mut signed = None;
    for (at, p) in private {
        let why = if !alone || p.name != "PrivateHost" {
            "a private host beside other hosts, or on a rule that is not Mirror".to_owned()
        } else {
            match private_host(scheme, rule_at, &at, p) {
                Ok(found) => {
                    signed = Some(found);
                    continue;
                }
                Err(why) => why,
            }
        };
        r.skip(
            at,
            format!(
                "{why}: only a Mirror rule whose one origin is a private host with SecretId, \
                 SecretKey and a SigV4 algorithm is imported, as a bucket origin; not imported"
            ),
        );
    }
    signed
}

/// A `PrivateHost` with its `CredentialProvider` as a signed bucket origin, and where its
/// secret was; or why it cannot be one.
fn private_host(
    scheme: &str,
    rule_at: &str,
    at: &str,
    element: &Element,
) -> Result<(OriginConfig, String), String> {
    let child = |e: &Element, name: &str| {
        e.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.trim().to_owned())
    };
    let host = child(element, "Host")
        .filter(|h| !h.is_empty())
        .ok_or("no Host")?;
    let credentials = element
        .children
        .iter()
        .find(|c| c.name == "CredentialProvider")
        .ok_or("no CredentialProvider")?;
    if child(credentials, "Role").is_some_and(|r| !r.is_empty()) {
        return Err("a Role (no CAM roles here)".to_owned());
    }
    let algorithm = child(credentials, "AuthorizationAlgorithm").unwrap_or_default();
    let lower = algorithm.to_ascii_lowercase();
    if !(lower.is_empty() || lower.contains("v4") || lower.starts_with("aws4") || lower == "s3") {
        return Err(format!(
            "AuthorizationAlgorithm {algorithm:?} (only AWS SigV4 here)"
        ));
    }
    let id = child(credentials, "SecretId").unwrap_or_default();
    let secret = child(credentials, "SecretKey").unwrap_or_default();
    if id.is_empty() || secret.is_empty() {
        return Err("no SecretId and SecretKey (an EncryptedSecretKey cannot be read)".to_owned());
    }
    // COS hosts name their region: <bucket>.cos.<region>.myqcloud.com.
    let region = child(credentials, "Region")
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let rest = host.split_once(".cos.")?.1;
            rest.strip_suffix(".myqcloud.com").map(str::to_owned)
        })
        .ok_or("no Region")?;
    let secret_env = secret_env("COS", rule_at);
    let signed = Signed {
        url: &host_url(scheme, &host),
        region: &region,
        access_key_id: &id,
        secret_env: &secret_env,
    };
    let origin = signed_bucket(&signed)?;
    Ok((origin, format!("{at}.CredentialProvider.SecretKey")))
}
