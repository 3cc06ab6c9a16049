//! Config → layer: every value is checked, every problem collected with its location.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderName;
use object_store::ObjectStore;
use object_store::path::Path;

use super::{Config, HeaderPolicyConfig, OriginConfig, RewriteConfig, RuleConfig, StoreConfig};
use crate::error::Problem;
use crate::origin::{BucketOrigin, HttpOrigin, Origin, Origins, Protocol};
use crate::rule::{
    Checksum, ClientDisconnect, Glob, HeadMiss, HeaderMatch, HeaderPolicy, Mode, Oversize,
    QueryPolicy, RangeMiss, RedirectStatus, Rewrite, Rule,
};
use crate::{BucketStore, FillOverflow, OriginPullLayer, Webhook};

/// Collects problems while building.
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, at: &str, value: &Option<String>) -> Option<Duration> {
        let text = value.as_deref()?;
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    at,
                    format!("{text:?} is not a duration ({e}); write \"30s\", \"250ms\""),
                );
                None
            }
        }
    }

    fn size(&mut self, at: &str, value: &Option<String>) -> Option<u64> {
        let text = value.as_deref()?;
        match bytesize::ByteSize::from_str(text) {
            Ok(size) => Some(size.as_u64()),
            Err(_) => {
                self.problem(
                    at,
                    format!("{text:?} is not a size; write \"64MiB\", \"1GB\" or bytes"),
                );
                None
            }
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        at: &str,
        value: &Option<String>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = value.as_deref()?;
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.problem(at, format!("{text:?} is not one of {}", names.join(", ")));
                None
            }
        }
    }

    fn status(&mut self, at: &str, code: u16) -> Option<StatusCode> {
        match StatusCode::from_u16(code) {
            Ok(s) => Some(s),
            Err(_) => {
                self.problem(at, format!("{code} is not an HTTP status"));
                None
            }
        }
    }
}

/// Open a store from its URL.
pub(crate) fn open_store(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    if url == "memory://" || url == "memory:///" {
        return Ok(Arc::new(object_store::memory::InMemory::new()));
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("a file URL needs an absolute path: file:///var/data".to_owned());
        }
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create {path}: {e}"))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(fs));
    }
    if url.starts_with("s3://") {
        return open_s3(url, options);
    }
    Err("not a store URL: use file:///path, memory:// or s3://bucket/prefix".to_owned())
}

#[cfg(feature = "aws")]
fn open_s3(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut builder = AmazonS3Builder::from_env()
        .with_url(url)
        .with_http_connector(crate::HyperConnector::new());
    for (key, value) in options {
        let key = AmazonS3ConfigKey::from_str(key).map_err(|e| format!("option {key:?}: {e}"))?;
        builder = builder.with_config(key, value);
    }
    builder
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "aws"))]
fn open_s3(
    _url: &str,
    _options: &std::collections::BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err("s3:// stores need the `aws` feature".to_owned())
}

/// The prefix inside an `s3://bucket/prefix` URL (the bucket itself is the store).
fn url_prefix(url: &str) -> Option<String> {
    let rest = url.strip_prefix("s3://")?;
    let (_, prefix) = rest.split_once('/')?;
    let prefix = prefix.trim_matches('/');
    (!prefix.is_empty()).then(|| prefix.to_owned())
}

fn store(
    c: &mut Check,
    config: &StoreConfig,
    given: Option<Arc<dyn ObjectStore>>,
) -> Option<BucketStore> {
    let opened = match given.map_or_else(|| open_store(&config.url, &config.options), Ok) {
        Ok(s) => Some(s),
        Err(e) => {
            c.problem("store.url", e);
            None
        }
    };
    let threshold = c.size("store.multipart_threshold", &config.multipart_threshold);
    let part = c.size("store.part_size", &config.part_size);
    let prefix = config.prefix.clone().or_else(|| url_prefix(&config.url));
    let prefix = match prefix.as_deref().map(Path::parse) {
        Some(Err(e)) => {
            c.problem("store.prefix", e.to_string());
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let mut bucket = BucketStore::new(opened?);
    if let Some(p) = prefix {
        bucket = bucket.with_prefix(p);
    }
    if let Some(t) = threshold {
        bucket = bucket.with_multipart_threshold(t as usize);
    }
    if let Some(p) = part {
        bucket = bucket.with_part_size(p as usize);
    }
    if let Some(n) = config.max_concurrent_parts {
        bucket = bucket.with_max_concurrent_parts(n);
    }
    if let Some(yes) = config.tombstones {
        bucket = bucket.with_tombstones(yes);
    }
    Some(bucket)
}

fn http_origin(c: &mut Check, at: &str, url: &str, o: &OriginConfig) -> Option<HttpOrigin> {
    let mut b = HttpOrigin::builder(url);
    if let Some(d) = c.duration(&format!("{at}.connect_timeout"), &o.connect_timeout) {
        b = b.connect_timeout(d);
    }
    if let Some(d) = c.duration(&format!("{at}.first_byte_timeout"), &o.first_byte_timeout) {
        b = b.first_byte_timeout(d);
    }
    if let Some(d) = c.duration(&format!("{at}.idle_timeout"), &o.idle_timeout) {
        b = b.idle_timeout(d);
    }
    if let Some(d) = c.duration(&format!("{at}.total_timeout"), &o.total_timeout) {
        b = b.total_timeout(d);
    }
    if let Some(n) = o.follow_redirects {
        b = b.follow_redirects(n);
    }
    for host in &o.allow_redirect_to {
        b = b.allow_redirect_to(host.clone());
    }
    let protocols = [
        ("http", Protocol::Http),
        ("https", Protocol::Https),
        ("same", Protocol::SameAsRequest),
    ];
    if let Some(p) = c.one_of(&format!("{at}.protocol"), &o.protocol, &protocols) {
        b = b.protocol(p);
    }
    match b.build() {
        Ok(origin) => Some(origin),
        Err(e) => {
            c.problem(
                at,
                e.to_string()
                    .trim_start_matches("invalid configuration: ")
                    .to_owned(),
            );
            None
        }
    }
}

fn origin(c: &mut Check, at: &str, o: &OriginConfig) -> Option<Arc<dyn Origin>> {
    if let Some(bucket) = &o.bucket {
        if !o.hosts.is_empty() || !o.standby.is_empty() {
            c.problem(at, "give either `bucket` or `hosts`, not both");
        }
        return match open_store(bucket, &o.bucket_options) {
            Ok(store) => {
                let mut origin = BucketOrigin::new(store);
                if let Some(prefix) = url_prefix(bucket) {
                    origin = origin.with_prefix(Path::from(prefix));
                }
                Some(Arc::new(origin))
            }
            Err(e) => {
                c.problem(format!("{at}.bucket"), e);
                None
            }
        };
    }
    if o.hosts.is_empty() {
        c.problem(
            format!("{at}.hosts"),
            "an origin needs at least one host (or a bucket)",
        );
        return None;
    }
    if !o.weights.is_empty() && o.weights.len() != o.hosts.len() {
        c.problem(
            format!("{at}.weights"),
            format!("{} weights for {} hosts", o.weights.len(), o.hosts.len()),
        );
    }
    let cooldown = c.duration(&format!("{at}.breaker_cooldown"), &o.breaker_cooldown);
    let primaries: Vec<Option<HttpOrigin>> = o
        .hosts
        .iter()
        .enumerate()
        .map(|(i, url)| http_origin(c, &format!("{at}.hosts[{i}]"), url, o))
        .collect();
    let standbys: Vec<Option<HttpOrigin>> = o
        .standby
        .iter()
        .enumerate()
        .map(|(i, url)| http_origin(c, &format!("{at}.standby[{i}]"), url, o))
        .collect();
    let fail_over: Vec<StatusCode> = o
        .fail_over_on
        .iter()
        .enumerate()
        .filter_map(|(i, code)| c.status(&format!("{at}.fail_over_on[{i}]"), *code))
        .collect();
    let simple = o.hosts.len() == 1
        && o.standby.is_empty()
        && o.retries.unwrap_or(0) == 0
        && fail_over.is_empty();
    if simple {
        return primaries
            .into_iter()
            .next()
            .flatten()
            .map(|p| Arc::new(p) as Arc<dyn Origin>);
    }
    let mut set = Origins::new().fail_over_on(fail_over);
    for (i, p) in primaries.into_iter().enumerate() {
        set = set.primary(p?, o.weights.get(i).copied().unwrap_or(1));
    }
    for s in standbys {
        set = set.standby(s?);
    }
    if o.breaker_failures.is_some() || cooldown.is_some() {
        set = set.breaker(
            o.breaker_failures.unwrap_or(3),
            cooldown.unwrap_or(Duration::from_secs(30)),
        );
    }
    if let Some(n) = o.retries {
        set = set.retries(n);
    }
    Some(Arc::new(set))
}

fn rewrite(c: &mut Check, at: &str, r: &RewriteConfig) -> Rewrite {
    if let Some(fixed) = &r.fixed {
        if r.strip_prefix.is_some()
            || r.replace_prefix.is_some()
            || r.add_suffix.is_some()
            || r.template.is_some()
        {
            c.problem(at, "`fixed` cannot be combined with other rewrite steps");
        }
        return Rewrite::fixed(fixed.clone());
    }
    let mut out = Rewrite::identity();
    match (&r.strip_prefix, &r.replace_prefix) {
        (Some(_), Some(_)) => c.problem(at, "give either `strip_prefix` or `replace_prefix`"),
        (Some(p), None) => out = out.strip_prefix(p.clone()),
        (None, Some(rp)) => out = out.replace_prefix(rp.from.clone(), rp.to.clone()),
        (None, None) => {}
    }
    if let Some(rs) = &r.replace_suffix {
        out = out.replace_suffix(rs.from.clone(), rs.to.clone());
    }
    if let Some(s) = &r.add_suffix {
        out = out.add_suffix(s.clone());
    }
    if let Some(t) = &r.template {
        if !t.contains("${key}") {
            c.problem(
                format!("{at}.template"),
                "a template needs `${key}` (or use `fixed`)",
            );
        }
        out = out.then_template(t.clone());
    }
    out
}

fn header_policy(c: &mut Check, at: &str, h: &HeaderPolicyConfig) -> HeaderPolicy {
    let base = match (h.pass.as_deref(), h.pass_only.is_empty()) {
        (Some(_), false) => {
            c.problem(at, "give either `pass` or `pass_only`");
            Ok(HeaderPolicy::none())
        }
        (None | Some("none"), true) => {
            if !h.except.is_empty() {
                c.problem(
                    format!("{at}.except"),
                    "`except` goes with `pass = \"all\"`",
                );
            }
            Ok(HeaderPolicy::none())
        }
        (Some("all"), true) => HeaderPolicy::pass_all_except(h.except.iter().map(String::as_str)),
        (Some(other), true) => {
            c.problem(
                format!("{at}.pass"),
                format!("{other:?} is not one of none, all"),
            );
            Ok(HeaderPolicy::none())
        }
        (None, false) => HeaderPolicy::pass_only(h.pass_only.iter().map(String::as_str)),
    };
    let mut policy = match base {
        Ok(p) => p,
        Err(e) => {
            let field = if h.pass_only.is_empty() {
                "except"
            } else {
                "pass_only"
            };
            c.problem(format!("{at}.{field}"), strip(e));
            HeaderPolicy::none()
        }
    };
    for (name, value) in &h.set {
        match policy.clone().set(name, value) {
            Ok(p) => policy = p,
            Err(e) => c.problem(format!("{at}.set.{name}"), strip(e)),
        }
    }
    policy
}

fn strip(e: crate::Error) -> String {
    e.to_string()
        .trim_start_matches("invalid configuration: ")
        .to_owned()
}

fn rule(c: &mut Check, at: &str, r: &RuleConfig) -> Option<Rule> {
    let origin = origin(c, &format!("{at}.origin"), &r.origin);
    let modes = [
        ("sync", Mode::Sync),
        ("async", Mode::Async),
        ("redirect", Mode::Redirect),
        ("proxy", Mode::Proxy),
    ];
    let mode = c
        .one_of(&format!("{at}.mode"), &r.mode, &modes)
        .unwrap_or(Mode::Sync);
    let stores = matches!(mode, Mode::Sync | Mode::Async);
    // Options that only make sense when something is stored.
    if !stores {
        for (field, set) in [
            ("checksums", r.checksums.is_some()),
            ("max_object_size", r.max_object_size.is_some()),
            ("on_client_disconnect", r.on_client_disconnect.is_some()),
        ] {
            if set {
                c.problem(
                    format!("{at}.{field}"),
                    format!("a {} rule stores nothing", r.mode.as_deref().unwrap_or("")),
                );
            }
        }
    }
    if mode == Mode::Redirect && (r.on_range.is_some() || r.on_head.is_some()) {
        c.problem(at, "a redirect rule cannot have `on_range` or `on_head`");
    }
    let glob = r.glob.as_deref().and_then(|g| match Glob::new(g) {
        Ok(g) => Some(g),
        Err(e) => {
            c.problem(format!("{at}.glob"), strip(e));
            None
        }
    });
    let mut headers = Vec::new();
    for (i, h) in r.when_headers.iter().enumerate() {
        let hat = format!("{at}.when_headers[{i}]");
        let name = match HeaderName::try_from(h.name.as_str()) {
            Ok(n) => Some(n),
            Err(_) => {
                c.problem(
                    format!("{hat}.name"),
                    format!("{:?} is not a header name", h.name),
                );
                None
            }
        };
        let tests: Vec<HeaderMatch> = [
            h.equals.clone().map(HeaderMatch::Equals),
            h.starts_with.clone().map(HeaderMatch::StartsWith),
            h.ends_with.clone().map(HeaderMatch::EndsWith),
            h.present.filter(|p| *p).map(|_| HeaderMatch::Present),
        ]
        .into_iter()
        .flatten()
        .collect();
        if tests.len() != 1 {
            c.problem(
                &hat,
                "give exactly one of equals, starts_with, ends_with, present = true",
            );
        }
        if let (Some(name), Some(test)) = (name, tests.into_iter().next()) {
            headers.push((name, test));
        }
    }
    let statuses: Vec<StatusCode> = r
        .statuses
        .clone()
        .unwrap_or_else(|| vec![404])
        .iter()
        .enumerate()
        .filter_map(|(i, s)| c.status(&format!("{at}.statuses[{i}]"), *s))
        .collect();
    if r.statuses.as_ref().is_some_and(Vec::is_empty) {
        c.problem(format!("{at}.statuses"), "an empty list never matches");
    }
    let rewrite = r
        .rewrite
        .as_ref()
        .map(|rw| rewrite(c, &format!("{at}.rewrite"), rw));
    let query = match (r.query.as_deref(), r.query_params.is_empty()) {
        (_, false) if r.query.as_deref().is_some_and(|q| q != "forward") => {
            c.problem(
                format!("{at}.query_params"),
                "`query_params` forwards some parameters: drop `query = \"drop\"`",
            );
            QueryPolicy::Drop
        }
        (_, false) => QueryPolicy::Only(r.query_params.clone()),
        (q, true) => c
            .one_of(
                &format!("{at}.query"),
                &q.map(str::to_owned),
                &[("drop", 0), ("forward", 1)],
            )
            .map_or(QueryPolicy::Drop, |v| {
                if v == 1 {
                    QueryPolicy::Forward
                } else {
                    QueryPolicy::Drop
                }
            }),
    };
    let policy = r
        .request_headers
        .as_ref()
        .map(|h| header_policy(c, &format!("{at}.request_headers"), h));
    let head = c.one_of(
        &format!("{at}.on_head"),
        &r.on_head,
        &[
            ("ignore", HeadMiss::Ignore),
            ("origin_head", HeadMiss::OriginHead),
            ("fill", HeadMiss::Fill),
        ],
    );
    let range = c.one_of(
        &format!("{at}.on_range"),
        &r.on_range,
        &[
            ("serve_range_and_fill", RangeMiss::ServeRangeAndFill),
            ("fill_then_serve", RangeMiss::FillThenServe),
            ("proxy_range", RangeMiss::ProxyRange),
        ],
    );
    let disconnect = c.one_of(
        &format!("{at}.on_client_disconnect"),
        &r.on_client_disconnect,
        &[
            ("finish", ClientDisconnect::FinishFill),
            ("cancel", ClientDisconnect::CancelFill),
        ],
    );
    let redirect = match r.redirect_status {
        None => None,
        Some(301) => Some(RedirectStatus::MovedPermanently),
        Some(302) => Some(RedirectStatus::Found),
        Some(307) => Some(RedirectStatus::TemporaryRedirect),
        Some(other) => {
            c.problem(
                format!("{at}.redirect_status"),
                format!("{other} is not one of 301, 302, 307"),
            );
            None
        }
    };
    if redirect.is_some() && !matches!(mode, Mode::Async | Mode::Redirect) {
        c.problem(
            format!("{at}.redirect_status"),
            "only async and redirect rules redirect",
        );
    }
    let mut checksums = Vec::new();
    for (i, name) in r.checksums.iter().flatten().enumerate() {
        match name.as_str() {
            "content-md5" => checksums.push(Checksum::ContentMd5),
            "etag-md5" => checksums.push(Checksum::EtagMd5),
            other => match other.strip_prefix("sha256:").map(HeaderName::try_from) {
                Some(Ok(header)) => checksums.push(Checksum::Sha256Header(header)),
                _ => c.problem(
                    format!("{at}.checksums[{i}]"),
                    format!("{other:?} is not one of content-md5, etag-md5, sha256:<header>"),
                ),
            },
        }
    }
    let max_size = c.size(&format!("{at}.max_object_size"), &r.max_object_size);
    let oversize = c.one_of(
        &format!("{at}.oversize"),
        &r.oversize,
        &[("proxy", Oversize::Proxy), ("refuse", Oversize::Refuse)],
    );
    if r.oversize.is_some() && r.max_object_size.is_none() {
        c.problem(
            format!("{at}.oversize"),
            "`oversize` needs `max_object_size`",
        );
    }
    let pass_through: Vec<StatusCode> = r
        .pass_through
        .iter()
        .enumerate()
        .filter_map(|(i, s)| c.status(&format!("{at}.pass_through[{i}]"), *s))
        .collect();
    if r.pass_through.contains(&404) {
        c.problem(
            format!("{at}.pass_through"),
            "404 always gives the inner response",
        );
    }

    let mut rule = Rule::new(origin?).mode(mode).on_status(statuses);
    if let Some(name) = &r.name {
        rule = rule.named(name);
    }
    if let Some(p) = &r.prefix {
        rule = rule.prefix(p.clone());
    }
    if let Some(s) = &r.suffix {
        rule = rule.suffix(s.clone());
    }
    if let Some(g) = glob {
        rule = rule.glob(g);
    }
    for (name, test) in headers {
        rule = rule.when_header(name, test);
    }
    rule = rule
        .allow_hosts(r.allow_hosts.iter().map(String::as_str))
        .deny_hosts(r.deny_hosts.iter().map(String::as_str))
        .query(query)
        .pass_through(pass_through);
    if let Some(rw) = rewrite {
        rule = rule.rewrite(rw);
    }
    if let Some(p) = policy {
        rule = rule.headers(p);
    }
    if let Some(h) = head {
        rule = rule.on_head(h);
    }
    if let Some(r) = range {
        rule = rule.on_range(r);
    }
    if let Some(d) = disconnect {
        rule = rule.on_client_disconnect(d);
    }
    if let Some(s) = redirect {
        rule = rule.redirect_status(s);
    }
    if r.checksums.is_some() {
        rule = rule.no_checksums();
        for checksum in checksums {
            rule = rule.verify(checksum);
        }
    }
    if let Some(max) = max_size {
        rule = rule.max_object_size(max, oversize.unwrap_or_default());
    }
    Some(rule)
}

pub(super) fn build(
    config: &Config,
    given: Option<Arc<dyn ObjectStore>>,
) -> Result<OriginPullLayer, Vec<Problem>> {
    let mut c = Check {
        problems: Vec::new(),
    };
    let store = store(&mut c, &config.store, given);
    let rules: Vec<Option<Rule>> = config
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(&mut c, &format!("rules[{i}]"), r))
        .collect();
    if config.rules.is_empty() {
        c.problem("rules", "no rules: the layer would pull nothing");
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in config.rules.iter().enumerate() {
        if let Some(name) = &r.name {
            if !names.insert(name) {
                c.problem(
                    format!("rules[{i}].name"),
                    format!("{name:?} names two rules"),
                );
            }
        }
    }
    let window = c.size("coalesce_window", &config.coalesce_window);
    let grace = c.duration("slow_reader_grace", &config.slow_reader_grace);
    let negative = c.duration("remember_not_found", &config.remember_not_found);
    let retry_after = c
        .duration("retry_after", &config.retry_after)
        .unwrap_or(Duration::from_secs(5));
    let overflow = c.one_of(
        "fill_overflow",
        &config.fill_overflow,
        &[
            ("proxy", FillOverflow::Proxy),
            ("unavailable", FillOverflow::Unavailable(retry_after)),
        ],
    );
    if config.max_fills.is_none()
        && (config.fill_overflow.is_some() || config.retry_after.is_some())
    {
        c.problem(
            "fill_overflow",
            "`fill_overflow` and `retry_after` need `max_fills`",
        );
    }
    let header = match config.header_name.as_deref() {
        None => Some(None),
        Some("") => Some(Some(None)).flatten(),
        Some(name) => match HeaderName::try_from(name) {
            Ok(h) => Some(Some(h)),
            Err(_) => {
                c.problem("header_name", format!("{name:?} is not a header name"));
                None
            }
        },
    };
    if let Some(events) = &config.events {
        if let Some(url) = &events.webhook {
            if let Err(e) = Webhook::new(url) {
                c.problem("events.webhook", strip(e));
            }
        }
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let (Some(store), Some(rules)) = (store, rules.into_iter().collect::<Option<Vec<_>>>()) else {
        return Err(vec![Problem {
            at: String::new(),
            message: "the configuration could not be built".to_owned(),
        }]);
    };
    let mut layer = OriginPullLayer::new(store).rules(rules);
    if let Some(w) = window {
        layer = layer.coalesce_window(w as usize);
    }
    if let Some(g) = grace {
        layer = layer.slow_reader_grace(g);
    }
    if let Some(n) = negative {
        layer = layer.remember_not_found(n);
    }
    if let Some(q) = config.background_queue {
        layer = layer.background_queue(q);
    }
    if let Some(n) = config.background_concurrency {
        layer = layer.background_concurrency(n);
    }
    if let Some(n) = config.max_fills {
        layer = layer.max_fills(n, overflow.unwrap_or(FillOverflow::Proxy));
    }
    match header {
        Some(Some(name)) => layer = layer.header_name(name),
        Some(None) if config.header_name.is_some() => layer = layer.without_header(),
        _ => {}
    }
    Ok(layer)
}

impl StoreConfig {
    /// Open the store the URL names (creating a `file://` directory if needed).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, crate::Error> {
        open_store(&self.url, &self.options)
            .map_err(|e| crate::Error::config(format!("store.url: {e}")))
    }

    /// The key prefix inside the store: `prefix`, else the path of an `s3://bucket/path` URL.
    pub fn key_prefix(&self) -> Option<Path> {
        self.prefix
            .clone()
            .or_else(|| url_prefix(&self.url))
            .and_then(|p| Path::parse(p).ok())
    }
}

impl Config {
    /// The webhook the configuration names, ready to [`spawn`](Webhook::spawn).
    pub fn webhook(&self) -> Result<Option<Webhook>, crate::Error> {
        let Some(events) = &self.events else {
            return Ok(None);
        };
        let Some(url) = &events.webhook else {
            return Ok(None);
        };
        let mut webhook = Webhook::new(url)?;
        if let Some(n) = events.max_in_flight {
            webhook = webhook.max_in_flight(n);
        }
        if let Some(n) = events.attempts {
            webhook = webhook.attempts(n);
        }
        Ok(Some(webhook))
    }
}
