//! [`Engine`]: the live middleware behind every clone of a layer — its rules and store, the
//! fill registry with its bound, the counters and the events — and [`decide`], the one
//! place where a miss becomes an [`Action`].
//!
//! The path of a request, by file: `layer.rs` (configuration) → `service.rs` (the hit
//! path) → `future.rs` (carries out the action) → `engine/decide.rs` (which action) →
//! `fill/` (the fill, its guard and readers) → `origin/` and `store/` → `body.rs`.

mod decide;
pub(crate) mod variant;

use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode, Uri};

pub(crate) use self::decide::{Action, Join, Miss, Pull, decide};
use crate::events::Events;
use crate::fill::registry::{FillSettings, Fills};
use crate::origin::OriginRequest;
use crate::progress::Counters;
use crate::rule::Rule;
use crate::store::Store;

/// The live middleware: built once, shared by every clone of the layer and every service it
/// made.
pub(crate) struct Engine {
    pub(crate) rules: Vec<Rule>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) header_name: Option<HeaderName>,
    /// Whether the client's scheme (an absolute-form target, HTTP/2 `:scheme`,
    /// `X-Forwarded-Proto`) may choose the origin's scheme for `Protocol::SameAsRequest`.
    pub(crate) trust_forwarded_proto: bool,
    /// Some rule accepts HEAD.
    head: bool,
    /// Some rule reads the request's headers (conditions or header policy).
    pub(crate) needs_headers: bool,
    /// The union of the rules' trigger statuses.
    statuses: Vec<StatusCode>,
    /// Some rule puts request input in the key (then the hit path asks the inner service
    /// for a request's variant).
    keyed: bool,
    /// Some rule refreshes stored objects (then hits are looked at; see `crate::refresh`).
    pub(crate) refresh: bool,
    /// Variants seen per key, for `max_variants`.
    pub(crate) variants: variant::Counted,
    pub(crate) settings: FillSettings,
    pub(crate) events: Events,
    pub(crate) counters: Arc<Counters>,
    pub(crate) fills: Arc<Fills>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules)
            .field("store", &self.store)
            .field("header_name", &self.header_name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The live engine for this configuration: a fresh registry, counters and events.
    pub(crate) fn new(
        rules: Vec<Rule>,
        store: Arc<dyn Store>,
        header_name: Option<HeaderName>,
        trust_forwarded_proto: bool,
        settings: FillSettings,
    ) -> Self {
        let events = Events::new();
        let counters = Arc::new(Counters::default());
        let fills = Arc::new(Fills::new(
            settings.clone(),
            events.clone(),
            counters.clone(),
        ));
        let mut statuses = Vec::new();
        for status in rules.iter().flat_map(|r| r.statuses()) {
            if !statuses.contains(status) {
                statuses.push(*status);
            }
        }
        Self {
            keyed: rules.iter().any(Rule::keys_input),
            refresh: rules.iter().any(|r| r.checks.revalidate.is_some()),
            variants: variant::Counted::default(),
            head: rules.iter().any(|r| r.accepts(&Method::HEAD)),
            needs_headers: trust_forwarded_proto || rules.iter().any(Rule::reads_request_headers),
            statuses,
            rules,
            store,
            header_name,
            trust_forwarded_proto,
            settings,
            events,
            counters,
            fills,
        }
    }

    /// Whether a request with this method may ever be pulled (checked before the inner
    /// service runs, so other requests cost nothing).
    #[inline]
    pub(crate) fn wants(&self, method: &Method) -> bool {
        (method == Method::GET || (self.head && method == Method::HEAD)) && !self.rules.is_empty()
    }

    /// The path the inner service is asked for: the request's variant's key when the rule
    /// that would take the request keys some of its input, else `None` (the path as it is).
    /// Costs nothing unless some rule keys input.
    #[inline]
    pub(crate) fn variant_path(
        &self,
        method: &Method,
        uri: &Uri,
        headers: Option<&HeaderMap>,
    ) -> Option<String> {
        if !self.keyed {
            return None;
        }
        let key = crate::key::parse(uri.path())?;
        let rule = self.rules.iter().find(|r| r.takes(&key, method, headers))?;
        let variant = variant::of(rule, &key, uri, headers)?;
        Some(crate::key::to_path(&variant.key))
    }

    /// Whether an inner response with this status may be pulled.
    #[inline]
    pub(crate) fn triggers_on(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }

    /// The first rule matching, and the origin request it makes.
    pub(crate) fn plan(
        &self,
        key: &str,
        method: &Method,
        status: StatusCode,
        uri: &Uri,
        headers: Option<&HeaderMap>,
    ) -> Option<(&Rule, OriginRequest)> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(key, method, status, headers))?;
        let mut request = OriginRequest::new(rule.rewrite.apply(key))
            .with_query(rule.query.apply(uri.query()))
            .with_headers(rule.headers.apply(headers));
        request.client_scheme = self.client_scheme(uri, headers);
        Some((rule, request))
    }

    /// The scheme the client used, when configuration trusts the request to say so.
    fn client_scheme(&self, uri: &Uri, headers: Option<&HeaderMap>) -> Option<http::uri::Scheme> {
        if !self.trust_forwarded_proto {
            return None;
        }
        uri.scheme().cloned().or_else(|| {
            let proto = headers?.get("x-forwarded-proto")?.to_str().ok()?;
            proto
                .eq_ignore_ascii_case("https")
                .then_some(http::uri::Scheme::HTTPS)
        })
    }
}
