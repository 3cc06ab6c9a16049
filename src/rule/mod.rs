//! Rules: which misses are pulled, from where, and how.
//!
//! A [`Rule`] is a set of conditions (key prefix, suffix and glob, the inner service's
//! status, the request method, request headers and host) and an action (an [`Origin`], a
//! [`Mode`], a [`Rewrite`] of the key into the origin path, and policies for headers, query
//! strings, ranges, `HEAD`, integrity and size). Rules are tried in the order they were
//! added; the first match wins.

mod condition;
mod policy;
mod rewrite;

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode};

pub use self::condition::{Glob, HeaderMatch};
pub(crate) use self::condition::{HeaderCondition, HostCondition};
pub(crate) use self::policy::FillChecks;
pub use self::policy::{
    Checksum, HeadMiss, HeaderPolicy, KeepHeaders, OriginGone, Oversize, QueryPolicy, RangeMiss,
};
pub use self::rewrite::Rewrite;
use crate::origin::Origin;

/// What a matching rule does with a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Fetch from the origin now, stream the bytes to the client while writing them to the
    /// store; the next request for the key is a plain hit. Concurrent misses for one key
    /// share one fetch (`x-origin-pull: pulled` for the first, `coalesced` for the others).
    #[default]
    Sync,
    /// Answer at once with a redirect to the origin's URL for the key and fill the store in
    /// the background (deduplicated per key, through a bounded queue); `x-origin-pull: async`.
    Async,
    /// Only redirect to the origin's URL for the key; store nothing; `x-origin-pull: redirect`.
    Redirect,
    /// Stream from the origin without storing; `x-origin-pull: proxied`.
    Proxy,
}

/// The status of the redirects answered in [`Mode::Async`] and [`Mode::Redirect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectStatus {
    /// `301 Moved Permanently` (clients and caches may remember it).
    MovedPermanently,
    /// `302 Found` (the default, as the clouds' async origin-pull answers).
    #[default]
    Found,
    /// `307 Temporary Redirect` (the method and body are kept).
    TemporaryRedirect,
}

impl RedirectStatus {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::MovedPermanently => StatusCode::MOVED_PERMANENTLY,
            Self::Found => StatusCode::FOUND,
            Self::TemporaryRedirect => StatusCode::TEMPORARY_REDIRECT,
        }
    }
}

/// What a sync fill does when the client that started it goes away mid-body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientDisconnect {
    /// Keep pulling and store the object anyway (the default, as nginx `proxy_store` does):
    /// the next request will be a hit.
    #[default]
    FinishFill,
    /// Stop pulling and abort the write; nothing is stored.
    CancelFill,
}

/// The default of [`Rule::max_variants`].
pub const DEFAULT_MAX_VARIANTS: usize = 32;

/// One origin-pull rule: conditions and an action.
///
/// ```
/// use http::StatusCode;
/// use http::header::HeaderName;
/// use tower_origin_pull::{Glob, HeaderMatch, HttpOrigin, QueryPolicy, Rewrite, Rule};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let rule = Rule::new(HttpOrigin::new("http://127.0.0.1:9000/assets")?)
///     .named("images")
///     .prefix("img/")
///     .glob(Glob::new("img/*/*.png")?)
///     .when_header(HeaderName::from_static("x-tenant"), HeaderMatch::StartsWith("blue".into()))
///     .allow_hosts(["cdn.example.com"])
///     .on_status([StatusCode::NOT_FOUND, StatusCode::FORBIDDEN])
///     .query(QueryPolicy::Only(vec!["v".into()]))
///     .rewrite(Rewrite::identity().strip_prefix("img/"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) name: Option<Arc<str>>,
    prefix: String,
    suffix: String,
    glob: Option<Glob>,
    header_conditions: Vec<HeaderCondition>,
    hosts: HostCondition,
    statuses: Vec<StatusCode>,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) mode: Mode,
    pub(crate) rewrite: Rewrite,
    pub(crate) query: QueryPolicy,
    pub(crate) headers: HeaderPolicy,
    pub(crate) on_disconnect: ClientDisconnect,
    pub(crate) redirect_status: RedirectStatus,
    pub(crate) range_miss: RangeMiss,
    pub(crate) head_miss: HeadMiss,
    pub(crate) checks: FillChecks,
    pub(crate) unkeyed_forwarding: bool,
    pub(crate) key_query: Vec<String>,
    pub(crate) key_headers: Vec<HeaderName>,
    pub(crate) max_variants: usize,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("glob", &self.glob)
            .field("header_conditions", &self.header_conditions)
            .field("hosts", &self.hosts)
            .field("statuses", &self.statuses)
            .field("origin", &self.origin)
            .field("mode", &self.mode)
            .field("rewrite", &self.rewrite)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("on_disconnect", &self.on_disconnect)
            .field("redirect_status", &self.redirect_status)
            .field("range_miss", &self.range_miss)
            .field("head_miss", &self.head_miss)
            .field("checks", &self.checks)
            .finish()
    }
}

impl Rule {
    /// A rule that pulls every `GET` whose inner response is `404` from `origin`, in
    /// [`Mode::Sync`], requesting the key unchanged, verifying `Content-MD5` when sent.
    pub fn new(origin: impl Origin) -> Self {
        Self {
            name: None,
            prefix: String::new(),
            suffix: String::new(),
            glob: None,
            header_conditions: Vec::new(),
            hosts: HostCondition::default(),
            statuses: vec![StatusCode::NOT_FOUND],
            origin: Arc::new(origin),
            mode: Mode::Sync,
            rewrite: Rewrite::identity(),
            query: QueryPolicy::Drop,
            headers: HeaderPolicy::none(),
            on_disconnect: ClientDisconnect::FinishFill,
            redirect_status: RedirectStatus::Found,
            range_miss: RangeMiss::default(),
            head_miss: HeadMiss::Ignore,
            checks: FillChecks::default(),
            unkeyed_forwarding: false,
            key_query: Vec::new(),
            key_headers: Vec::new(),
            max_variants: DEFAULT_MAX_VARIANTS,
        }
    }

    /// Name the rule in logs, errors and events (default `rule#N`, N its position).
    #[must_use]
    pub fn named(mut self, name: impl AsRef<str>) -> Self {
        self.name = Some(Arc::from(name.as_ref()));
        self
    }

    /// The rule's name, if it has one yet.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Match only keys starting with `prefix` (keys have no leading `/`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Match only keys ending with `suffix`.
    #[must_use]
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Match only keys matching `glob` (`*` does not cross `/`, `**` does).
    #[must_use]
    pub fn glob(mut self, glob: Glob) -> Self {
        self.glob = Some(glob);
        self
    }

    /// Match only requests whose header `name` passes `test` (OSS `IncludeHeader`). Several
    /// conditions must all hold.
    #[must_use]
    pub fn when_header(mut self, name: HeaderName, test: HeaderMatch) -> Self {
        self.header_conditions.push(HeaderCondition { name, test });
        self
    }

    /// Match only requests whose `Host` is one of `hosts` (COS `FilterHost`; no port,
    /// case-insensitive).
    #[must_use]
    pub fn allow_hosts<'a>(mut self, hosts: impl IntoIterator<Item = &'a str>) -> Self {
        self.hosts
            .allow
            .extend(hosts.into_iter().map(str::to_ascii_lowercase));
        self
    }

    /// Never match requests whose `Host` is one of `hosts` (COS `ForbidHost`).
    #[must_use]
    pub fn deny_hosts<'a>(mut self, hosts: impl IntoIterator<Item = &'a str>) -> Self {
        self.hosts
            .deny
            .extend(hosts.into_iter().map(str::to_ascii_lowercase));
        self
    }

    /// The inner service's statuses that make this rule pull (default `[404]`).
    ///
    /// An empty list makes the rule never match.
    #[must_use]
    pub fn on_status(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// What a `HEAD` miss does (default [`HeadMiss::Ignore`]: only `GET` is pulled).
    #[must_use]
    pub fn on_head(mut self, policy: HeadMiss) -> Self {
        self.head_miss = policy;
        self
    }

    /// What a `GET` with a `Range` header does on a miss (default
    /// [`RangeMiss::JoinFill`] with a `max_wait` of
    /// [`RangeMiss::DEFAULT_MAX_WAIT`], 2 s; see [`RangeMiss`] for why).
    #[must_use]
    pub fn on_range(mut self, policy: RangeMiss) -> Self {
        self.range_miss = policy;
        self
    }

    /// What to do with a match (default [`Mode::Sync`]).
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How the key maps to the origin path (default: unchanged).
    #[must_use]
    pub fn rewrite(mut self, rewrite: Rewrite) -> Self {
        self.rewrite = rewrite;
        self
    }

    /// Which part of the query string goes to the origin (default [`QueryPolicy::Drop`]).
    #[must_use]
    pub fn query(mut self, policy: QueryPolicy) -> Self {
        self.query = policy;
        self
    }

    /// Send the whole query string to the origin, or none of it (default `false`).
    #[must_use]
    pub fn forward_query(self, yes: bool) -> Self {
        self.query(if yes {
            QueryPolicy::Forward
        } else {
            QueryPolicy::Drop
        })
    }

    /// Which request headers go to the origin (default: none of the client's).
    #[must_use]
    pub fn headers(mut self, policy: HeaderPolicy) -> Self {
        self.headers = policy;
        self
    }

    /// Also verify `checksum` before storing (`Content-MD5` is verified by default).
    #[must_use]
    pub fn verify(mut self, checksum: Checksum) -> Self {
        if !self.checks.checksums.contains(&checksum) {
            self.checks.checksums.push(checksum);
        }
        self
    }

    /// Verify no checksum, not even `Content-MD5`.
    #[must_use]
    pub fn no_checksums(mut self) -> Self {
        self.checks.checksums.clear();
        self
    }

    /// Objects larger than `bytes` are not stored: see [`Oversize`] (default: no limit).
    #[must_use]
    pub fn max_object_size(mut self, bytes: u64, oversize: Oversize) -> Self {
        self.checks.max_size = Some((bytes, oversize));
        self
    }

    /// Origin statuses answered to the client as they are (status and body, not stored),
    /// instead of `502` (default: none; an origin `404` always gives the inner response).
    #[must_use]
    pub fn pass_through(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.checks.pass_through = statuses.into_iter().collect();
        self
    }

    /// The redirect status in [`Mode::Async`] and [`Mode::Redirect`] (default `302`).
    #[must_use]
    pub fn redirect_status(mut self, status: RedirectStatus) -> Self {
        self.redirect_status = status;
        self
    }

    /// What a sync fill does when its client disconnects (default
    /// [`ClientDisconnect::FinishFill`]).
    #[must_use]
    pub fn on_client_disconnect(mut self, policy: ClientDisconnect) -> Self {
        self.on_disconnect = policy;
        self
    }

    /// Store and share responses the shared-cache rules would keep to their requester: a
    /// response marked `Cache-Control: private`, `no-store` or `no-cache`, with `Set-Cookie`
    /// or `Vary: *`, and the response to a request that forwarded the client's own
    /// `Authorization` or `Cookie` (default `false`, as RFC 9111 §3 asks of a shared cache).
    ///
    /// For migrations whose origin marks public objects private. The risk: whatever one
    /// client's credentials fetch, every client is then served, for as long as the object
    /// is stored. Headers the rule [`set`](HeaderPolicy::set)s (an origin token) are
    /// configuration, not client credentials, and never make a response private.
    #[must_use]
    pub fn store_private(mut self, yes: bool) -> Self {
        self.checks.store_private = yes;
        self
    }

    /// Store objects even where the store cannot keep the origin's `Content-Type` (a local
    /// directory) and a file server would type them differently by their extension, or
    /// serve them without the `Content-Disposition`, `X-Content-Type-Options` or
    /// `Content-Security-Policy` the origin sent (default `false`: such objects are served
    /// to their requester and not stored, so a `text/plain` `evil.html` never becomes
    /// `text/html` on the mirror's origin).
    #[must_use]
    pub fn store_mistyped(mut self, yes: bool) -> Self {
        self.checks.store_mistyped = yes;
        self
    }

    /// Keep these origin response headers with the object and send them on every hit, as
    /// the pulled response had them (default [`KeepHeaders::None`]); see [`KeepHeaders`] for
    /// what is always kept and what never is.
    #[must_use]
    pub fn keep_response_headers(mut self, keep: KeepHeaders) -> Self {
        self.checks.keep = keep;
        self
    }

    /// Refresh stored objects (default: never, an object is mirrored once): a hit on an
    /// object last validated longer than `after` ago is served from the store at once and
    /// queues one background conditional request to the origin (`If-None-Match` /
    /// `If-Modified-Since` from the validators kept with it), deduplicated per key and
    /// counted against [`max_fills`](crate::OriginPullBuilder::max_fills) like an async
    /// fill. `304` records the validation (the bytes are not rewritten); `200` replaces the
    /// object atomically (a [`FillEvent::Completed`](crate::events::FillEvent::Completed)
    /// with [`Committed::Refreshed`](crate::Committed::Refreshed)), under the same storing
    /// rules as the first pull; `404` is [`on_origin_gone`](Self::on_origin_gone). The
    /// validation time lives beside the object in the store, so it survives a restart.
    /// Variants of keys ([`key_query`](Self::key_query)) are not refreshed.
    #[must_use]
    pub fn revalidate_after(mut self, after: Duration) -> Self {
        self.checks.revalidate = Some(crate::refresh::Revalidate::new(after));
        self
    }

    /// Revalidate a due object before answering the hit instead of after (default `false`),
    /// for users who must never serve an object their origin has changed: the hit waits
    /// for the conditional request (joined with any fill of the key in flight, and for at
    /// most [`fill_queue_timeout`](crate::OriginPullBuilder::fill_queue_timeout) for a slot
    /// of the bound). Unchanged: the stored object; changed: the new version, pulled and
    /// stored; gone at the origin: `404`; origin unreachable or the new version not
    /// storable: `502` (never the old bytes). Only with
    /// [`revalidate_after`](Self::revalidate_after).
    #[must_use]
    pub fn revalidate_before_serve(mut self, yes: bool) -> Self {
        self.checks.before_serve = yes;
        self
    }

    /// What a refresh ([`revalidate_after`](Self::revalidate_after)) does when the origin
    /// answers `404` for a stored object (default [`OriginGone::Keep`]).
    #[must_use]
    pub fn on_origin_gone(mut self, gone: OriginGone) -> Self {
        self.checks.gone = gone;
        self
    }

    /// Put these query parameters in the key: each combination of their values is a variant
    /// of the key, sent to the origin, stored and coalesced on its own (under
    /// `.origin-pull-variants/<key>/v-<hash>`, which the inner service is asked for, so each
    /// variant is a hit of its own). Parameters are compared decoded, in any order; a
    /// request without any of them is the plain key. At most
    /// [`max_variants`](Self::max_variants) variants per key are stored.
    #[must_use]
    pub fn key_query<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.key_query.extend(names.into_iter().map(Into::into));
        self
    }

    /// Put these request headers in the key (compared trimmed and case-insensitively): each
    /// value is a variant of the key, sent to the origin, stored and coalesced on its own;
    /// see [`key_query`](Self::key_query). A name that is never sent to an origin (`Host`,
    /// `Range`, hop-by-hop, conditionals) is an error.
    pub fn key_headers<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, crate::Error> {
        for name in names {
            let checked = crate::HeaderPolicy::pass_only([name])?;
            drop(checked);
            let name = HeaderName::try_from(name)
                .map_err(|_| crate::Error::config(format!("header name {name:?} is not valid")))?;
            self.key_headers.push(name);
        }
        Ok(self)
    }

    /// How many variants of one key ([`key_query`](Self::key_query),
    /// [`key_headers`](Self::key_headers)) are stored at most (default 32, at least 1);
    /// further variants are answered privately (proxied, not stored), so a client cannot
    /// fill the store with variants of one key. Counted per process.
    #[must_use]
    pub fn max_variants(mut self, variants: usize) -> Self {
        self.max_variants = variants.max(1);
        self
    }

    /// Store and share responses although the rule forwards request input that is not part
    /// of the key — a query string, client headers (default `false`: such requests are
    /// proxied to their client only, and their `404`s are not remembered, so one client's
    /// crafted query or header cannot decide what everyone else is served). COS and OSS
    /// forward the query and store the result under the plain key; set this to do the
    /// same, knowing that the first answer for a key is everyone's answer.
    #[must_use]
    pub fn unkeyed_forwarding(mut self, yes: bool) -> Self {
        self.unkeyed_forwarding = yes;
        self
    }

    pub(crate) fn statuses(&self) -> &[StatusCode] {
        &self.statuses
    }

    pub(crate) fn label(&self) -> Arc<str> {
        self.name.clone().unwrap_or_else(|| Arc::from("rule"))
    }

    /// Whether matching or planning needs the request's headers.
    pub(crate) fn reads_request_headers(&self) -> bool {
        !self.header_conditions.is_empty()
            || !self.hosts.is_empty()
            || self.headers.reads_request()
            || !self.key_headers.is_empty()
    }

    /// Whether the rule puts request input in the key.
    pub(crate) fn keys_input(&self) -> bool {
        !self.key_query.is_empty() || !self.key_headers.is_empty()
    }

    /// Whether the rule would take a request for `key`, whatever the inner status.
    pub(crate) fn takes(&self, key: &str, method: &Method, headers: Option<&HeaderMap>) -> bool {
        self.statuses
            .first()
            .is_some_and(|status| self.matches(key, method, *status, headers))
    }

    pub(crate) fn accepts(&self, method: &Method) -> bool {
        method == Method::GET || (self.head_miss != HeadMiss::Ignore && method == Method::HEAD)
    }

    pub(crate) fn matches(
        &self,
        key: &str,
        method: &Method,
        status: StatusCode,
        headers: Option<&HeaderMap>,
    ) -> bool {
        let empty = HeaderMap::new();
        let headers = headers.unwrap_or(&empty);
        self.accepts(method)
            && self.statuses.contains(&status)
            && key.starts_with(self.prefix.as_str())
            && key.ends_with(self.suffix.as_str())
            && self.glob.as_ref().is_none_or(|g| g.matches(key))
            && self.header_conditions.iter().all(|c| c.holds(headers))
            && (self.hosts.is_empty() || self.hosts.holds(headers))
    }
}
