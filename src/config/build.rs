//! Config → layer, in two passes over the same code: a check pass that only looks at the
//! values (no store opened, no directory created, no client built) and collects every
//! problem with its location, and — only when that found nothing — a build pass that opens
//! and builds.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderName;
use object_store::ObjectStore;
use object_store::path::Path;

use super::limits;
use super::{
    Config, HeaderPolicyConfig, KeepHeadersConfig, OriginConfig, RewriteConfig, RuleConfig,
    ServerConfig, StoreConfig,
};
use crate::error::Problem;
use crate::origin::{BucketOrigin, HttpOrigin, Origin, Origins, Protocol};
use crate::rule::{
    Checksum, ClientDisconnect, Glob, HeadMiss, HeaderMatch, HeaderPolicy, KeepHeaders, Mode,
    OriginGone, Oversize, QueryPolicy, RangeMiss, RedirectStatus, Rewrite, Rule,
};
use crate::{BucketStore, DEFAULT_MAX_FILLS, OriginPullBuilder, OriginPullLayer, Webhook};

/// Collects problems; in the build pass, also opens and builds.
struct Check {
    problems: Vec<Problem>,
    /// `false`: only check (the validation pass); `true`: open stores, build clients.
    build: bool,
    /// A store is given in code: `store.url` is not opened, so it need not be valid.
    store_given: bool,
    /// Check that the environment variables `*_env` options name are set (not when
    /// importing rules, which name variables the operator sets afterwards).
    env: bool,
}

impl Check {
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }

    /// Any duration humantime reads, up to `Duration::MAX`: the layer saturates the long
    /// ones to "far future".
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

    /// A duration after which something fails: zero would fail every request.
    fn timeout(&mut self, at: &str, value: &Option<String>) -> Option<Duration> {
        let d = self.duration(at, value)?;
        if d.is_zero() {
            self.problem(
                at,
                "a zero timeout would fail every request; give a duration",
            );
            return None;
        }
        Some(d)
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

    /// A size held in memory: at most the platform's `usize`.
    fn memory_size(&mut self, at: &str, value: &Option<String>) -> Option<usize> {
        let size = self.size(at, value)?;
        match usize::try_from(size) {
            Ok(n) => Some(n),
            Err(_) => {
                self.problem(
                    at,
                    format!("{size} bytes is more than this platform can address"),
                );
                None
            }
        }
    }

    /// A count within `min ..= max`.
    fn count<T: Copy + PartialOrd + std::fmt::Display>(
        &mut self,
        at: &str,
        value: Option<T>,
        min: T,
        max: T,
    ) -> Option<T> {
        let n = value?;
        if n < min || n > max {
            self.problem(at, format!("{n} is not within {min} ..= {max}"));
            return None;
        }
        Some(n)
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

    /// The durations among object_store client options: readable, and at most
    /// [`limits::CLIENT_OPTION_DURATION`] (object_store and its connector add them to
    /// instants).
    fn client_options(&mut self, at: &str, options: &BTreeMap<String, String>) {
        for (key, value) in options {
            if !CLIENT_DURATIONS.contains(&key.as_str()) {
                continue;
            }
            let at = format!("{at}.{key}");
            match humantime::parse_duration(value) {
                Ok(d) if d > limits::CLIENT_OPTION_DURATION => self.problem(
                    at,
                    format!("{value:?} is longer than the limit of 365 days"),
                ),
                Ok(_) => {}
                Err(e) => self.problem(
                    at,
                    format!("{value:?} is not a duration ({e}); write \"30s\", \"250ms\""),
                ),
            }
        }
    }
}

/// object_store's client options that are durations.
const CLIENT_DURATIONS: &[&str] = &[
    "timeout",
    "connect_timeout",
    "read_timeout",
    "pool_idle_timeout",
    "http2_keep_alive_interval",
    "http2_keep_alive_timeout",
];

/// `store.staging_max_age`: `None` for `"off"`, the default (one day) when not given.
pub(super) fn staging_age(text: Option<&str>) -> Result<Option<Duration>, String> {
    match text {
        None => Ok(Some(crate::sweep::DEFAULT_STAGING_MAX_AGE)),
        Some("off") => Ok(None),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d < limits::STAGING_MIN_AGE => Err(format!(
                "{text:?} could remove the staging files of writes still running; give at \
                 least \"1m\" (a day is the default), or \"off\""
            )),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!(
                "{text:?} is neither \"off\" nor a duration ({e}); write \"1d\", \"12h\""
            )),
        },
    }
}

/// Check a store URL without opening anything.
pub(crate) fn check_store_url(url: &str, options: &BTreeMap<String, String>) -> Result<(), String> {
    if url == "memory://" || url == "memory:///" {
        return Ok(());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("a file URL needs an absolute path: file:///var/data".to_owned());
        }
        return Ok(());
    }
    if url.starts_with("s3://") {
        return check_s3(url, options);
    }
    Err("not a store URL: use file:///path, memory:// or s3://bucket/prefix".to_owned())
}

/// Open a store from its URL; `create`: create a `file://` directory that is missing.
pub(crate) fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
    create: bool,
) -> Result<Arc<dyn ObjectStore>, String> {
    check_store_url(url, options)?;
    if url == "memory://" || url == "memory:///" {
        return Ok(Arc::new(object_store::memory::InMemory::new()));
    }
    if let Some(path) = url.strip_prefix("file://") {
        if create {
            std::fs::create_dir_all(path).map_err(|e| format!("cannot create {path}: {e}"))?;
        }
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| format!("{path}: {e}"))?;
        return Ok(Arc::new(fs));
    }
    open_s3(url, options)
}

#[cfg(feature = "aws")]
fn check_s3(url: &str, options: &BTreeMap<String, String>) -> Result<(), String> {
    use object_store::aws::AmazonS3ConfigKey;
    let rest = url.trim_start_matches("s3://");
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err("an s3 URL names a bucket: s3://bucket/prefix".to_owned());
    }
    for key in options.keys() {
        AmazonS3ConfigKey::from_str(super::bucket::option_name(key))
            .map_err(|e| format!("option {key:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(not(feature = "aws"))]
fn check_s3(_url: &str, _options: &BTreeMap<String, String>) -> Result<(), String> {
    Err("s3:// stores need the `aws` feature".to_owned())
}

#[cfg(feature = "aws")]
fn open_s3(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut builder = AmazonS3Builder::from_env()
        .with_url(url)
        .with_http_connector(crate::HyperConnector::new());
    for (key, value) in &super::bucket::resolve(options)? {
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
    _options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err("s3:// stores need the `aws` feature".to_owned())
}

/// The prefix inside an `s3://bucket/prefix` URL (the bucket itself is the store).
pub(super) fn url_prefix(url: &str) -> Option<String> {
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
    let url_ok = match check_store_url(&config.url, &config.options) {
        Ok(()) => true,
        Err(e) => {
            // A store given in code replaces the URL's: its URL need not open.
            if given.is_none() && !c.store_given {
                c.problem("store.url", e);
            }
            false
        }
    };
    c.client_options("store.options", &config.options);
    for (key, message) in super::bucket::env_problems(&config.options, c.env) {
        c.problem(format!("store.options.{key}"), message);
    }
    let threshold = c.memory_size("store.multipart_threshold", &config.multipart_threshold);
    let part = c.memory_size("store.part_size", &config.part_size);
    if config.url.starts_with("s3://") {
        if threshold.is_some_and(|t| t as u64 > limits::S3_MAX_PART) {
            c.problem(
                "store.multipart_threshold",
                "S3 takes at most 5 GiB in one PUT; give at most \"5GiB\"",
            );
        }
        if part.is_some_and(|p| p as u64 > limits::S3_MAX_PART || (p as u64) < limits::S3_MIN_PART)
        {
            c.problem(
                "store.part_size",
                "S3 parts are 5 MiB to 5 GiB; give a size within \"5MiB\" ..= \"5GiB\"",
            );
        }
    }
    let parts = c.count(
        "store.max_concurrent_parts",
        config.max_concurrent_parts,
        1,
        limits::CONCURRENT_PARTS,
    );
    if let Err(e) = staging_age(config.staging_max_age.as_deref()) {
        c.problem("store.staging_max_age", e);
    }
    let prefix = config.prefix.clone().or_else(|| url_prefix(&config.url));
    let prefix = match prefix.as_deref().map(Path::parse) {
        Some(Err(e)) => {
            c.problem("store.prefix", e.to_string());
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if !c.build {
        return None;
    }
    let opened = match given {
        Some(store) => store,
        None if url_ok => match open_store(&config.url, &config.options, true) {
            Ok(store) => store,
            Err(e) => {
                c.problem("store.url", e);
                return None;
            }
        },
        None => return None,
    };
    let mut bucket = BucketStore::new(opened);
    if let Some(p) = prefix {
        bucket = bucket.with_prefix(p);
    }
    if let Some(t) = threshold {
        bucket = bucket.with_multipart_threshold(t);
    }
    if let Some(p) = part {
        bucket = bucket.with_part_size(p);
    }
    if let Some(n) = parts {
        bucket = bucket.with_max_concurrent_parts(n);
    }
    if let Some(yes) = config.tombstones {
        bucket = bucket.with_tombstones(yes);
    }
    Some(bucket)
}

/// An origin's settings shared by its hosts, read once.
struct HostSettings {
    connect: Option<Duration>,
    first_byte: Option<Duration>,
    idle: Option<Duration>,
    total: Option<Duration>,
    redirects: Option<usize>,
    protocol: Option<Protocol>,
    /// The valid entries of `allow_redirect_to` and `trust_redirect_credentials`.
    redirect_to: Vec<String>,
    trusted: Vec<String>,
    /// `host_header`, `tls_server_name`, `ca_file`, when valid.
    host_header: Option<String>,
    tls_server_name: Option<String>,
    ca_file: Option<String>,
}

impl HostSettings {
    fn read(c: &mut Check, at: &str, o: &OriginConfig) -> Self {
        let protocols = [
            ("http", Protocol::Http),
            ("https", Protocol::Https),
            ("same", Protocol::SameAsRequest),
        ];
        Self {
            connect: c.timeout(&format!("{at}.connect_timeout"), &o.connect_timeout),
            first_byte: c.timeout(&format!("{at}.first_byte_timeout"), &o.first_byte_timeout),
            idle: c.timeout(&format!("{at}.idle_timeout"), &o.idle_timeout),
            total: c.timeout(&format!("{at}.total_timeout"), &o.total_timeout),
            redirects: c.count(
                &format!("{at}.follow_redirects"),
                o.follow_redirects,
                0,
                limits::REDIRECTS,
            ),
            protocol: c.one_of(&format!("{at}.protocol"), &o.protocol, &protocols),
            redirect_to: redirect_targets(
                c,
                &format!("{at}.allow_redirect_to"),
                &o.allow_redirect_to,
            ),
            trusted: redirect_targets(
                c,
                &format!("{at}.trust_redirect_credentials"),
                &o.trust_redirect_credentials,
            ),
            host_header: checked(c, &format!("{at}.host_header"), &o.host_header, |v| {
                crate::origin::tls::check_host_header(v).map(|_| ())
            }),
            tls_server_name: checked(
                c,
                &format!("{at}.tls_server_name"),
                &o.tls_server_name,
                crate::origin::tls::check_server_name,
            ),
            ca_file: checked(c, &format!("{at}.ca_file"), &o.ca_file, |v| {
                crate::origin::tls::check_ca_file(std::path::Path::new(v))
            }),
        }
    }
}

/// `value` when `check` accepts it; else a problem at `at`.
fn checked(
    c: &mut Check,
    at: &str,
    value: &Option<String>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    let value = value.as_deref()?;
    match check(value) {
        Ok(()) => Some(value.to_owned()),
        Err(e) => {
            c.problem(at, e);
            None
        }
    }
}

/// The entries that are `host` or `host:port`; the others are problems at their index.
fn redirect_targets(c: &mut Check, at: &str, entries: &[String]) -> Vec<String> {
    let mut valid = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match crate::origin::http::check_redirect_target(entry) {
            Ok(()) => valid.push(entry.clone()),
            Err(e) => c.problem(format!("{at}[{i}]"), e),
        }
    }
    valid
}

fn http_origin(c: &mut Check, at: &str, url: &str, settings: &HostSettings) -> Option<HttpOrigin> {
    let mut b = HttpOrigin::builder(url);
    if let Some(d) = settings.connect {
        b = b.connect_timeout(d);
    }
    if let Some(d) = settings.first_byte {
        b = b.first_byte_timeout(d);
    }
    if let Some(d) = settings.idle {
        b = b.idle_timeout(d);
    }
    if let Some(d) = settings.total {
        b = b.total_timeout(d);
    }
    if let Some(n) = settings.redirects {
        b = b.follow_redirects(n);
    }
    for host in &settings.redirect_to {
        b = b.allow_redirect_to(host.clone());
    }
    b = b.trust_redirect_credentials(settings.trusted.iter().cloned());
    if let Some(p) = settings.protocol {
        b = b.protocol(p);
    }
    if let Some(host) = &settings.host_header {
        b = b.host_header(host.clone());
    }
    if let Some(name) = &settings.tls_server_name {
        b = b.tls_server_name(name.clone());
    }
    if let Some(path) = &settings.ca_file {
        b = b.ca_file(path.clone());
    }
    // The check pass builds no client (nor TLS setup).
    let built = if c.build {
        b.build().map(Some)
    } else {
        b.check().map(|()| None)
    };
    match built {
        Ok(origin) => origin,
        Err(e) => {
            c.problem(at, strip(e));
            None
        }
    }
}

/// A `bucket` origin: its options (with the `*_env` ones), `public_url`, and no setting
/// that only HTTP hosts use.
fn bucket_origin(
    c: &mut Check,
    at: &str,
    bucket: &str,
    o: &OriginConfig,
) -> Option<Arc<dyn Origin>> {
    if !o.hosts.is_empty() || !o.standby.is_empty() {
        c.problem(at, "give either `bucket` or `hosts`, not both");
    }
    let options_at = format!("{at}.bucket_options");
    c.client_options(&options_at, &o.bucket_options);
    for (key, message) in super::bucket::env_problems(&o.bucket_options, c.env) {
        c.problem(format!("{options_at}.{key}"), message);
    }
    for (field, set) in [
        ("host_header", o.host_header.is_some()),
        ("tls_server_name", o.tls_server_name.is_some()),
        ("ca_file", o.ca_file.is_some()),
    ] {
        if set {
            c.problem(format!("{at}.{field}"), "applies to hosts, not to a bucket");
        }
    }
    let public_url = checked(
        c,
        &format!("{at}.public_url"),
        &o.public_url,
        super::bucket::check_public_url,
    );
    let budget = o
        .bucket_options
        .get("timeout")
        .and_then(|t| humantime::parse_duration(t).ok());
    if let Err(e) = check_store_url(bucket, &o.bucket_options) {
        c.problem(format!("{at}.bucket"), e);
        return None;
    }
    if !c.build {
        return None;
    }
    // An origin bucket is read, never created.
    match open_store(bucket, &o.bucket_options, false) {
        Ok(store) => {
            let mut origin = BucketOrigin::new(store);
            if let Some(prefix) = url_prefix(bucket) {
                origin = origin.with_prefix(Path::from(prefix));
            }
            if let Some(budget) = budget {
                origin = origin.with_attempt_budget(budget);
            }
            if let Some(url) = public_url {
                origin = origin.with_public_url(url);
            }
            Some(Arc::new(origin))
        }
        Err(e) => {
            c.problem(format!("{at}.bucket"), e);
            None
        }
    }
}

fn origin(c: &mut Check, at: &str, o: &OriginConfig) -> Option<Arc<dyn Origin>> {
    if let Some(bucket) = &o.bucket {
        return bucket_origin(c, at, bucket, o);
    }
    if o.public_url.is_some() {
        c.problem(
            format!("{at}.public_url"),
            "only a bucket origin has a public_url (clients are redirected to the hosts' URLs)",
        );
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
    let retries = c.count(&format!("{at}.retries"), o.retries, 0, limits::RETRIES);
    let settings = HostSettings::read(c, at, o);
    let primaries: Vec<Option<HttpOrigin>> = o
        .hosts
        .iter()
        .enumerate()
        .map(|(i, url)| http_origin(c, &format!("{at}.hosts[{i}]"), url, &settings))
        .collect();
    let standbys: Vec<Option<HttpOrigin>> = o
        .standby
        .iter()
        .enumerate()
        .map(|(i, url)| http_origin(c, &format!("{at}.standby[{i}]"), url, &settings))
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
    if let Some(n) = retries {
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
    bucket_needs_public_url(c, at, r, mode);
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
    unkeyed(c, at, r, &query, policy.as_ref());
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
            (
                "join_fill",
                RangeMiss::JoinFill {
                    max_wait: RangeMiss::DEFAULT_MAX_WAIT,
                },
            ),
        ],
    );
    let range = join_fill_wait(c, at, r, range);
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

    let fresh = Freshness::read(c, at, r);
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
    if !r.key_headers.is_empty() {
        match rule
            .clone()
            .key_headers(r.key_headers.iter().map(String::as_str))
        {
            Ok(keyed) => rule = keyed,
            Err(e) => c.problem(format!("{at}.key_headers"), strip(e)),
        }
    }
    if let Some(n) = c.count(&format!("{at}.max_variants"), r.max_variants, 1, 10_000) {
        rule = rule.max_variants(n);
    }
    rule = rule
        .key_query(r.key_query.iter().cloned())
        .unkeyed_forwarding(r.unkeyed_forwarding.unwrap_or(false))
        .store_private(r.store_private.unwrap_or(false))
        .store_mistyped(r.store_mistyped.unwrap_or(false));
    Some(fresh.apply(rule))
}

/// The options that keep a stored object true to its origin: kept headers and refresh,
/// read (and checked) before the rule can be built, so validation reports them too.
struct Freshness {
    keep: Option<KeepHeaders>,
    after: Option<Duration>,
    before_serve: bool,
    gone: Option<OriginGone>,
}

impl Freshness {
    fn read(c: &mut Check, at: &str, r: &RuleConfig) -> Self {
        let keep = match &r.keep_response_headers {
            None => None,
            Some(KeepHeadersConfig::All(all)) if all == "all" => Some(KeepHeaders::All),
            Some(KeepHeadersConfig::All(other)) => {
                c.problem(
                    format!("{at}.keep_response_headers"),
                    format!("{other:?} is neither \"all\" nor a list of header names"),
                );
                None
            }
            Some(KeepHeadersConfig::Names(names)) => {
                match KeepHeaders::only(names.iter().map(String::as_str)) {
                    Ok(keep) => Some(keep),
                    Err(e) => {
                        c.problem(format!("{at}.keep_response_headers"), strip(e));
                        None
                    }
                }
            }
        };
        let after = c.duration(&format!("{at}.revalidate_after"), &r.revalidate_after);
        if r.revalidate_before_serve == Some(true) && r.revalidate_after.is_none() {
            c.problem(
                format!("{at}.revalidate_before_serve"),
                "needs revalidate_after: when an object is due for revalidation",
            );
        }
        let gone = c.one_of(
            &format!("{at}.on_origin_gone"),
            &r.on_origin_gone,
            &[("keep", OriginGone::Keep), ("delete", OriginGone::Delete)],
        );
        Self {
            keep,
            after,
            before_serve: r.revalidate_before_serve.unwrap_or(false),
            gone,
        }
    }

    fn apply(self, mut rule: Rule) -> Rule {
        if let Some(keep) = self.keep {
            rule = rule.keep_response_headers(keep);
        }
        if let Some(after) = self.after {
            rule = rule.revalidate_after(after);
        }
        if let Some(gone) = self.gone {
            rule = rule.on_origin_gone(gone);
        }
        rule.revalidate_before_serve(self.before_serve)
    }
}

/// An `async` or `redirect` rule sends clients to the origin's URL for the key: a bucket
/// origin has one only with `public_url`, checked here rather than failing at request time.
fn bucket_needs_public_url(c: &mut Check, at: &str, r: &RuleConfig, mode: Mode) {
    let redirects = matches!(mode, Mode::Async | Mode::Redirect);
    if redirects && r.origin.bucket.is_some() && r.origin.public_url.is_none() {
        let name = r
            .name
            .as_deref()
            .map_or(at.to_owned(), |n| format!("{n:?}"));
        c.problem(
            format!("{at}.origin.public_url"),
            format!(
                "rule {name} redirects clients (mode {}) and its bucket origin has no URL \
                 of its own: give `public_url`, or use mode sync",
                r.mode.as_deref().unwrap_or("sync")
            ),
        );
    }
}

/// A rule that forwards request input that is not in the key (the query, client headers)
/// would let one client's request decide what everyone is served: refused unless the rule
/// says `unkeyed_forwarding = true`, knowingly.
fn unkeyed(
    c: &mut Check,
    at: &str,
    r: &RuleConfig,
    query: &QueryPolicy,
    headers: Option<&HeaderPolicy>,
) {
    if r.unkeyed_forwarding == Some(true)
        || !matches!(r.mode.as_deref(), None | Some("sync" | "async"))
    {
        return;
    }
    if *query != QueryPolicy::Drop {
        let field = if r.query_params.is_empty() {
            "query"
        } else {
            "query_params"
        };
        c.problem(
            format!("{at}.{field}"),
            "forwards the query, which is not part of the store key: the first answer would \
             be everyone's. Set `unkeyed_forwarding = true` to accept that (what COS and OSS \
             do), or drop the query",
        );
    }
    if headers.is_some_and(HeaderPolicy::reads_request) {
        c.problem(
            format!("{at}.request_headers"),
            "forwards client headers, which are not part of the store key: the first answer \
             would be everyone's. Set `unkeyed_forwarding = true` to accept that, or only \
             `set` headers",
        );
    }
}

/// Every problem in `config`; nothing is opened or built. `store_given`: the store is given
/// in code, so `store.url` is not checked.
pub(super) fn validate(config: &Config, store_given: bool) -> Vec<Problem> {
    validate_with(config, store_given, true)
}

/// [`validate`]; `env`: whether the variables `*_env` options name must be set.
pub(super) fn validate_with(config: &Config, store_given: bool, env: bool) -> Vec<Problem> {
    let mut c = Check {
        problems: Vec::new(),
        build: false,
        store_given,
        env,
    };
    let _ = assemble(&mut c, config, None);
    c.problems
}

/// Validate `config`, then (only when it is valid) open its store (unless `given`) and build
/// the layer and the webhook it names (not started).
pub(super) fn build(
    config: &Config,
    given: Option<Arc<dyn ObjectStore>>,
) -> Result<(OriginPullLayer, Option<Webhook>), Vec<Problem>> {
    let problems = validate(config, given.is_some());
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut c = Check {
        problems: Vec::new(),
        build: true,
        store_given: given.is_some(),
        env: true,
    };
    match assemble(&mut c, config, given) {
        _ if !c.problems.is_empty() => Err(c.problems),
        Some(built) => Ok(built),
        None => Err(vec![Problem {
            at: String::new(),
            message: "the configuration could not be built".to_owned(),
        }]),
    }
}

/// One pass over the whole configuration: `None` in the check pass, or when something could
/// not be built (a problem says why).
fn assemble(
    c: &mut Check,
    config: &Config,
    given: Option<Arc<dyn ObjectStore>>,
) -> Option<(OriginPullLayer, Option<Webhook>)> {
    let store = store(c, &config.store, given);
    let rules: Vec<Option<Rule>> = config
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(c, &format!("rules[{i}]"), r))
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
    let window = c.memory_size("coalesce_window", &config.coalesce_window);
    let spool_max = c.size("spool_max_bytes", &config.spool_max_bytes);
    let grace = c.duration("slow_reader_grace", &config.slow_reader_grace);
    let negative = c.duration("remember_not_found", &config.remember_not_found);
    if config.fill_overflow.is_some() {
        c.problem(
            "fill_overflow",
            "removed (see CHANGELOG, Unreleased): past `max_fills` a miss waits `fill_queue_timeout`, then gets `503` \
             with `Retry-After` (`retry_after`); delete this line",
        );
    }
    let retry_after = c.duration("retry_after", &config.retry_after);
    let queue_timeout = c.duration("fill_queue_timeout", &config.fill_queue_timeout);
    let head_timeout = c.timeout("head_timeout", &config.head_timeout);
    let stall_timeout = c.timeout("stall_timeout", &config.stall_timeout);
    let max_fills = c.count("max_fills", config.max_fills, 1, limits::MAX_FILLS);
    let background = c.count(
        "background_concurrency",
        config.background_concurrency,
        1,
        usize::MAX,
    );
    if let Some(n) = background {
        let bound = config.max_fills.unwrap_or(DEFAULT_MAX_FILLS);
        if n > bound {
            let of = if config.max_fills.is_some() {
                "`max_fills`"
            } else {
                "the default `max_fills`"
            };
            c.problem(
                "background_concurrency",
                format!(
                    "{n} is more than {of} ({bound}): background fills take their slots from \
                     that bound; give at most {bound} (less leaves room for live misses)"
                ),
            );
        }
    }
    let queue = c.count(
        "background_queue",
        config.background_queue,
        1,
        limits::BACKGROUND_QUEUE,
    );
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
    let mut webhook = None;
    if let Some(events) = &config.events {
        c.count(
            "events.max_in_flight",
            events.max_in_flight,
            1,
            limits::WEBHOOK_IN_FLIGHT,
        );
        c.count(
            "events.attempts",
            events.attempts,
            1,
            limits::WEBHOOK_ATTEMPTS,
        );
        if let Some(url) = &events.webhook {
            if let Err(e) = Webhook::check_url(url) {
                c.problem("events.webhook", strip(e));
            } else if c.build {
                match config.webhook() {
                    Ok(w) => webhook = w,
                    Err(e) => c.problem("events.webhook", strip(e)),
                }
            }
        }
    }
    if let Some(server) = &config.server {
        let _ = server_values(c, server);
    }
    if !c.build || !c.problems.is_empty() {
        return None;
    }
    let (Some(store), Some(rules)) = (store, rules.into_iter().collect::<Option<Vec<_>>>()) else {
        return None;
    };
    let mut layer = OriginPullBuilder::new(store).rules(rules);
    if let Some(w) = window {
        layer = layer.coalesce_window(w);
    }
    if let Some(g) = grace {
        layer = layer.slow_reader_grace(g);
    }
    if let Some(dir) = &config.spool_dir {
        layer = layer.spool_dir(dir);
    }
    if let Some(n) = spool_max {
        layer = layer.spool_max_bytes(n);
    }
    if let Some(n) = negative {
        layer = layer.remember_not_found(n);
    }
    if let Some(q) = queue {
        layer = layer.background_queue(q);
    }
    if let Some(n) = max_fills {
        layer = layer.max_fills(n);
    }
    if let Some(n) = background {
        layer = layer.background_concurrency(n);
    }
    if let Some(d) = queue_timeout {
        layer = layer.fill_queue_timeout(d);
    }
    if let Some(r) = retry_after {
        layer = layer.retry_after(r);
    }
    if let Some(d) = head_timeout {
        layer = layer.head_timeout(d);
    }
    if let Some(d) = stall_timeout {
        layer = layer.stall_timeout(d);
    }
    match header {
        Some(Some(name)) => layer = layer.header_name(name),
        Some(None) if config.header_name.is_some() => layer = layer.without_header(),
        _ => {}
    }
    Some((layer.build(), webhook))
}

/// `on_range_max_wait`: the `max_wait` of `on_range = "join_fill"`, refused with any other
/// `on_range`.
fn join_fill_wait(
    c: &mut Check,
    at: &str,
    r: &RuleConfig,
    range: Option<RangeMiss>,
) -> Option<RangeMiss> {
    let wait = c.duration(&format!("{at}.on_range_max_wait"), &r.on_range_max_wait);
    match (range, wait) {
        (Some(RangeMiss::JoinFill { .. }), Some(max_wait)) => {
            Some(RangeMiss::JoinFill { max_wait })
        }
        (range, None) => range,
        (_, Some(_)) => {
            c.problem(
                format!("{at}.on_range_max_wait"),
                "only `on_range = \"join_fill\"` has a `max_wait`",
            );
            range
        }
    }
}

/// `[server]`'s values, read (what is not given is `None`).
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct ServerValues {
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) send_timeout: Option<Duration>,
    pub(crate) shutdown_grace: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) backlog: Option<u32>,
    pub(crate) max_header_size: Option<usize>,
    pub(crate) max_headers: Option<usize>,
    pub(crate) http2_max_concurrent_streams: Option<u32>,
}

/// Check `[server]` (reading no environment variable) and read its values.
fn server_values(c: &mut Check, s: &ServerConfig) -> ServerValues {
    use crate::server;
    if let Some(token) = &s.admin_token {
        if let Err(e) = server::check_token(token) {
            c.problem("server.admin_token", e);
        }
    }
    if let Some(name) = &s.admin_token_env {
        if s.admin_token.is_some() {
            c.problem(
                "server.admin_token_env",
                "give `admin_token` or `admin_token_env`, not both",
            );
        } else if name.is_empty() || name.contains(['=', '\0']) {
            c.problem(
                "server.admin_token_env",
                format!("{name:?} is not an environment variable's name"),
            );
        }
    }
    let max_header_size = c.memory_size("server.max_header_size", &s.max_header_size);
    if let Some(n) = max_header_size {
        if !(server::MIN_MAX_HEADER_SIZE..=server::MAX_MAX_HEADER_SIZE).contains(&n) {
            c.problem(
                "server.max_header_size",
                format!("{n} bytes is not within \"8KiB\" ..= \"16MiB\""),
            );
        }
    }
    ServerValues {
        header_read_timeout: c.timeout("server.header_read_timeout", &s.header_read_timeout),
        idle_timeout: c.timeout("server.idle_timeout", &s.idle_timeout),
        send_timeout: c.timeout("server.send_timeout", &s.send_timeout),
        shutdown_grace: c.duration("server.shutdown_grace", &s.shutdown_grace),
        max_connections: c.count(
            "server.max_connections",
            s.max_connections,
            1,
            server::MAX_CONNECTIONS,
        ),
        backlog: c.count("server.backlog", s.backlog, 1, server::MAX_BACKLOG),
        max_header_size,
        max_headers: c.count("server.max_headers", s.max_headers, 1, server::MAX_HEADERS),
        http2_max_concurrent_streams: c.count(
            "server.http2_max_concurrent_streams",
            s.http2_max_concurrent_streams,
            1,
            server::MAX_HTTP2_CONCURRENT_STREAMS,
        ),
    }
}

impl ServerConfig {
    /// The values, or every problem (at `server.…`).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn values(&self) -> Result<ServerValues, crate::Error> {
        let mut c = Check {
            problems: Vec::new(),
            build: false,
            store_given: true,
            env: true,
        };
        let values = server_values(&mut c, self);
        if c.problems.is_empty() {
            Ok(values)
        } else {
            Err(crate::Error::InvalidConfig {
                problems: c.problems,
            })
        }
    }
}

impl StoreConfig {
    /// Open the store the URL names (creating a `file://` directory if needed).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, crate::Error> {
        open_store(&self.url, &self.options, true)
            .map_err(|e| crate::Error::config(format!("store.url: {e}")))
    }

    /// The key prefix inside the store: `prefix`, else the path of an `s3://bucket/path` URL.
    pub fn key_prefix(&self) -> Option<Path> {
        self.prefix
            .clone()
            .or_else(|| url_prefix(&self.url))
            .and_then(|p| Path::parse(p).ok())
    }

    /// The directory of a `file://` store.
    pub fn local_root(&self) -> Option<std::path::PathBuf> {
        let path = self.url.strip_prefix("file://")?;
        path.starts_with('/').then(|| path.into())
    }

    /// What to sweep at start (see [`sweep`](crate::sweep)): the directory of a `file://`
    /// store and [`staging_max_age`](Self::staging_max_age) (one day when not given), or
    /// `None` for other stores and `staging_max_age = "off"`.
    ///
    /// ```no_run
    /// # async fn run(config: tower_origin_pull::config::Config) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some((root, age)) = config.store.staging_sweep()? {
    ///     let report = tower_origin_pull::sweep::sweep_staging(&root, age).await?;
    ///     println!("removed {} abandoned staging files", report.removed);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn staging_sweep(&self) -> Result<Option<(std::path::PathBuf, Duration)>, crate::Error> {
        let age = staging_age(self.staging_max_age.as_deref())
            .map_err(|e| crate::Error::config(format!("store.staging_max_age: {e}")))?;
        Ok(age.and_then(|age| self.local_root().map(|root| (root, age))))
    }
}

impl Config {
    /// The webhook the configuration names, built (its HTTP client too) and ready to
    /// [`spawn`](Webhook::spawn). [`OriginPullLayer::from_config`] and [`Config::build`]
    /// already start it: use this only to deliver the events of a layer built otherwise.
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
