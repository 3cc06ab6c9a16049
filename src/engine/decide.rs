//! The miss decision: from (key, method, inner status, request parts) to an [`Action`], in
//! one function with no side effects. The response future only carries the action out.

use std::sync::Arc;
use std::time::Duration;

use http::header::RANGE;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::{Engine, variant};
use crate::fill::FillSpec;
use crate::origin::OriginRequest;
use crate::progress::Outcome;
use crate::rule::{FillChecks, HeadMiss, Mode, RangeMiss, Rule};
use crate::serve::range::{self, Ask};

/// What a request that triggered a rule brings to the decision.
#[derive(Debug, Clone)]
pub(crate) struct Miss<'a> {
    /// The request path as received (the key is parsed from it here).
    pub(crate) uri: &'a Uri,
    pub(crate) method: &'a Method,
    /// The inner service's status.
    pub(crate) status: StatusCode,
    /// The request's headers, when some rule reads them.
    pub(crate) headers: Option<&'a HeaderMap>,
    /// The request's `Range`, if any.
    pub(crate) range: Option<&'a HeaderValue>,
    /// The request's `If-Range`, if any: sent with a range the origin is asked for, so the
    /// origin answers the whole object when the client's copy is stale.
    pub(crate) if_range: Option<&'a HeaderValue>,
    /// The inner service is `ServeStore` and looked the key up in the store just now: the
    /// fill need not look again.
    pub(crate) store_checked: bool,
    /// The key `ServeStore` parsed from this very path and looked up, when it did: not
    /// parsed again.
    pub(crate) key: Option<String>,
}

/// What to do with a miss.
pub(crate) enum Action {
    /// Leave the inner response as it is (not a clean key, no rule).
    Untouched,
    /// Join the key's shared fill, or start it (sync mode; `HEAD` fills).
    Fill(Pull),
    /// A fill of this request's own, shared with nobody and stored nowhere (proxy mode, a
    /// cold `Range`, a `HEAD` answered by the origin).
    Proxy(Pull),
    /// Answer a redirect to the origin (async and redirect modes).
    Redirect(Redirect),
    /// The rule wants a redirect but its origin has no URL clients can reach: `502`.
    CannotRedirect {
        /// The rule's name.
        rule: Arc<str>,
    },
}

/// A request that reads a fill.
pub(crate) struct Pull {
    pub(crate) spec: FillSpec,
    /// The client's `Range`, answered from the fill's head and bytes (one range decision,
    /// the same as `ServeStore`'s).
    pub(crate) range: Option<HeaderValue>,
    /// A `HEAD`: the head only, no body.
    pub(crate) head_only: bool,
    /// The outcome when this request starts the fill (`Pulled` or `Proxied`).
    pub(crate) outcome: Outcome,
    /// A full fill to queue in the background alongside (a cold `Range` under
    /// [`RangeMiss::ServeRangeAndFill`]).
    pub(crate) background: Option<FillSpec>,
    /// A range under [`RangeMiss::JoinFill`]: read from the fill if it reaches the range in
    /// time, else proxied with this.
    pub(crate) join: Option<Join>,
}

/// A range that joins a fill only if the fill reaches its first byte within `max_wait`.
pub(crate) struct Join {
    pub(crate) max_wait: Duration,
    /// The private fill that serves the range from the origin otherwise.
    pub(crate) proxy: FillSpec,
}

/// A redirect to the origin.
pub(crate) struct Redirect {
    pub(crate) status: StatusCode,
    pub(crate) location: HeaderValue,
    /// `Async` or `Redirect`.
    pub(crate) outcome: Outcome,
    /// Async mode: the background fill to queue.
    pub(crate) background: Option<FillSpec>,
}

/// Decide what a miss becomes. It starts nothing and counts nothing but the variants of a
/// key (for `max_variants`).
pub(crate) fn decide(engine: &Engine, miss: Miss<'_>) -> Action {
    let Some(key) = miss.key.or_else(|| crate::key::parse(miss.uri.path())) else {
        return Action::Untouched;
    };
    // Variants' keys are written only as variants, never by a request naming them.
    if variant::reserved(&key) || crate::store::sidecar::reserved(&key) {
        return Action::Untouched;
    }
    let Some((rule, mut request)) =
        engine.plan(&key, miss.method, miss.status, miss.uri, miss.headers)
    else {
        return Action::Untouched;
    };
    let head_only = miss.method == Method::HEAD;
    let mut reason = private(rule, &request, miss.headers);
    // Keyed input: this request is a variant of the key, stored and filled as its own key,
    // and its keyed input goes to the origin.
    let key = match variant::of(rule, &key, miss.uri, miss.headers) {
        Some(variant) => {
            if !engine.variants.admit(&key, &variant, rule.max_variants) {
                reason.get_or_insert("the key has as many variants as the rule keeps");
            }
            request.query = match (variant.query, request.query.take()) {
                (Some(keyed), Some(rest)) => Some(format!("{keyed}&{rest}")),
                (keyed, rest) => keyed.or(rest),
            };
            request.headers.extend(variant.headers);
            variant.key
        }
        None => key,
    };
    let planned = Planned {
        engine,
        rule,
        key,
        head_only,
        if_range: miss.if_range,
        store_checked: miss.store_checked,
    };
    if let Some(reason) = reason {
        tracing::debug!(key = %planned.key, reason, "miss: answered for this client only");
        return planned.private(request, asked(miss.range));
    }
    match rule.mode {
        Mode::Redirect | Mode::Async => planned.redirect(&request),
        Mode::Sync if head_only => match rule.head_miss {
            HeadMiss::OriginHead => planned.proxy(request.with_method(Method::HEAD), None),
            _ => planned.fill(&request, true, None),
        },
        Mode::Proxy if head_only => planned.proxy(request.with_method(Method::HEAD), None),
        Mode::Sync | Mode::Proxy => planned.get(request, asked(miss.range)),
    }
}

/// Why the answer to this request must be this client's alone — never stored, never shared
/// with other requests — when it must (RFC 9111 §3, and the key rule: whatever reaches
/// the origin is in the key, or the answer is not kept).
fn private(
    rule: &Rule,
    request: &OriginRequest,
    headers: Option<&HeaderMap>,
) -> Option<&'static str> {
    let input = rule.headers.client_input(headers);
    if input.credentials && !rule.checks.store_private {
        return Some("the request forwards the client's credentials");
    }
    if (input.headers || request.query.is_some()) && !rule.unkeyed_forwarding {
        return Some("the request forwards input that is not in the key");
    }
    None
}

/// What the client's `Range` asks for, with the header.
#[derive(Clone, Copy)]
enum Asked<'a> {
    Whole,
    One(&'a HeaderValue),
    Several(&'a HeaderValue),
}

/// What the client's range asks, before the object's length is known.
fn asked(range: Option<&HeaderValue>) -> Asked<'_> {
    match range {
        Some(value) => match range::ask(value) {
            Ask::Whole => Asked::Whole,
            Ask::One => Asked::One(value),
            Ask::Several => Asked::Several(value),
        },
        None => Asked::Whole,
    }
}

/// A miss a rule took: builds the action's parts.
struct Planned<'a> {
    engine: &'a Engine,
    rule: &'a Rule,
    key: String,
    head_only: bool,
    if_range: Option<&'a HeaderValue>,
    store_checked: bool,
}

impl Planned<'_> {
    fn spec(&self, request: &OriginRequest, stored: bool, pinned: bool) -> FillSpec {
        FillSpec {
            key: self.key.clone(),
            rule: self.rule.label(),
            origin: self.rule.origin.clone(),
            request: request.clone(),
            store: stored.then(|| self.engine.store.clone()),
            on_disconnect: self.rule.on_disconnect,
            pinned,
            report: stored,
            checks: FillChecks {
                store_checked: self.store_checked,
                ..self.rule.checks.clone()
            },
        }
    }

    fn pull(&self, spec: FillSpec, range: Option<&HeaderValue>, outcome: Outcome) -> Pull {
        Pull {
            spec,
            range: range.cloned(),
            head_only: self.head_only,
            outcome,
            background: None,
            join: None,
        }
    }

    /// Join or start the key's stored fill; `pinned`: it finishes even if this request
    /// leaves (it serves a part of the object, or only its head).
    fn fill(&self, request: &OriginRequest, pinned: bool, range: Option<&HeaderValue>) -> Action {
        Action::Fill(self.pull(self.spec(request, true, pinned), range, Outcome::Pulled))
    }

    /// A private fill, stored nowhere.
    fn proxy(&self, request: OriginRequest, range: Option<&HeaderValue>) -> Action {
        Action::Proxy(self.pull(self.spec(&request, false, false), range, Outcome::Proxied))
    }

    /// A `GET` in sync or proxy mode, by what its `Range` asks.
    fn get(&self, request: OriginRequest, asked: Asked<'_>) -> Action {
        let proxy_mode = self.rule.mode == Mode::Proxy;
        match asked {
            // No `Range`, or one that is ignored (malformed, another unit, first > last):
            // the whole object.
            Asked::Whole if proxy_mode => self.proxy(request, None),
            Asked::Whole => self.fill(&request, false, None),
            // Several ranges: whether they make a `206` depends on the object's length, so
            // the whole object is fetched and the ranges are decided on it (and cut from it).
            Asked::Several(value)
                if proxy_mode || self.rule.range_miss == RangeMiss::ProxyRange =>
            {
                self.proxy(request, Some(value))
            }
            Asked::Several(value) => self.fill(&request, true, Some(value)),
            // One range: the origin is asked for it (or the fill serves it).
            Asked::One(value) if proxy_mode => {
                self.proxy(self.forward(request, value), Some(value))
            }
            Asked::One(value) => match self.rule.range_miss {
                RangeMiss::FillThenServe => self.fill(&request, true, Some(value)),
                RangeMiss::ProxyRange => self.proxy(self.forward(request, value), Some(value)),
                RangeMiss::JoinFill { max_wait } => {
                    let proxy = self.spec(&self.forward(request.clone(), value), false, false);
                    match self.fill(&request, true, Some(value)) {
                        Action::Fill(mut pull) => {
                            pull.join = Some(Join { max_wait, proxy });
                            Action::Fill(pull)
                        }
                        other => other,
                    }
                }
                RangeMiss::ServeRangeAndFill => {
                    let ranged = self.spec(&self.forward(request.clone(), value), false, false);
                    let mut ranged = self.pull(ranged, Some(value), Outcome::Proxied);
                    ranged.background = Some(self.spec(&request, true, true));
                    Action::Proxy(ranged)
                }
            },
        }
    }

    /// The answer for this client only: a proxy (or a redirect with no background fill).
    fn private(&self, request: OriginRequest, asked: Asked<'_>) -> Action {
        match (self.rule.mode, asked) {
            (Mode::Redirect | Mode::Async, _) => match self.redirect(&request) {
                Action::Redirect(mut redirect) => {
                    redirect.background = None;
                    redirect.outcome = Outcome::Redirect;
                    Action::Redirect(redirect)
                }
                other => other,
            },
            _ if self.head_only => self.proxy(request.with_method(Method::HEAD), None),
            (_, Asked::Whole) => self.proxy(request, None),
            (_, Asked::One(value)) => self.proxy(self.forward(request, value), Some(value)),
            (_, Asked::Several(value)) => self.proxy(request, Some(value)),
        }
    }

    /// A redirect to the origin; in async mode, with a background fill.
    fn redirect(&self, request: &OriginRequest) -> Action {
        let location = self
            .rule
            .origin
            .location(request)
            .and_then(|uri| location_value(&uri));
        let Some(location) = location else {
            return Action::CannotRedirect {
                rule: self.rule.label(),
            };
        };
        let asynchronous = self.rule.mode == Mode::Async;
        Action::Redirect(Redirect {
            status: self.rule.redirect_status.status(),
            location,
            outcome: if asynchronous {
                Outcome::Async
            } else {
                Outcome::Redirect
            },
            // A key already being filled (every request but the first, while it crawls)
            // builds no fill at all.
            background: (asynchronous && !self.engine.fills.deduplicated(&self.key))
                .then(|| self.spec(request, true, true)),
        })
    }
}

/// `uri` as a `Location` value: what its `Display` writes, built without the formatting
/// machinery and moved into the value without a copy (a redirect builds one per request).
fn location_value(uri: &http::Uri) -> Option<HeaderValue> {
    let (path, query) = (uri.path(), uri.query());
    let mut text = String::with_capacity(
        uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + path.len()
            + query.map_or(0, |q| q.len() + 1),
    );
    if let Some(scheme) = uri.scheme_str() {
        text.push_str(scheme);
        text.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        text.push_str(authority.as_str());
    }
    text.push_str(path);
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// The request with the client's `Range` forwarded to the origin.
impl Planned<'_> {
    /// `request` asking the origin for the range `value` (with the client's `If-Range`).
    fn forward(&self, mut request: OriginRequest, value: &HeaderValue) -> OriginRequest {
        request.headers.insert(RANGE, value.clone());
        if let Some(if_range) = self.if_range {
            request
                .headers
                .insert(http::header::IF_RANGE, if_range.clone());
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fill::registry::FillSettings;
    use crate::{HttpOrigin, Origin, Rule};

    fn engine(rule: Rule) -> Engine {
        Engine::new(
            vec![rule.named("r")],
            Arc::new(crate::BucketStore::new(Arc::new(
                object_store::memory::InMemory::new(),
            ))),
            None,
            false,
            FillSettings::default(),
        )
    }

    fn origin() -> Arc<dyn Origin> {
        Arc::new(HttpOrigin::new("http://127.0.0.1:9/base/").unwrap())
    }

    /// The action for `method /k.bin` with `range`, as a short description.
    fn act(rule: Rule, method: Method, range: Option<&'static str>) -> String {
        let engine = engine(rule);
        let uri: Uri = "/k.bin".parse().unwrap();
        let range = range.map(HeaderValue::from_static);
        let action = decide(
            &engine,
            Miss {
                uri: &uri,
                method: &method,
                status: StatusCode::NOT_FOUND,
                headers: None,
                range: range.as_ref(),
                if_range: None,
                store_checked: false,
                key: None,
            },
        );
        describe(&action)
    }

    fn describe(action: &Action) -> String {
        let pull = |kind: &str, p: &Pull| {
            format!(
                "{kind}(method={} stored={} pinned={} fwd-range={} range={} head-only={} outcome={} bg={})",
                p.spec.request.method,
                p.spec.store.is_some(),
                p.spec.pinned,
                p.spec.request.headers.contains_key(RANGE),
                p.range.is_some(),
                p.head_only,
                p.outcome,
                p.background.is_some(),
            )
        };
        match action {
            Action::Untouched => "untouched".to_owned(),
            Action::Fill(p) => pull("fill", p),
            Action::Proxy(p) => pull("proxy", p),
            Action::Redirect(r) => format!(
                "redirect({} {} outcome={} bg={})",
                r.status.as_u16(),
                r.location.to_str().unwrap(),
                r.outcome,
                r.background.is_some()
            ),
            Action::CannotRedirect { rule } => format!("cannot-redirect({rule})"),
        }
    }

    const ONE: Option<&str> = Some("bytes=0-9");
    const SEVERAL: Option<&str> = Some("bytes=0-9,20-29");
    const IGNORED: Option<&str> = Some("bytes=9-0");

    #[test]
    fn sync_get() {
        let r = || Rule::new(origin());
        assert_eq!(
            act(r(), Method::GET, None),
            "fill(method=GET stored=true pinned=false fwd-range=false range=false head-only=false outcome=pulled bg=false)"
        );
        assert_eq!(act(r(), Method::GET, IGNORED), act(r(), Method::GET, None));
        assert_eq!(
            act(r().on_range(RangeMiss::ServeRangeAndFill), Method::GET, ONE),
            "proxy(method=GET stored=false pinned=false fwd-range=true range=true head-only=false outcome=proxied bg=true)"
        );
        assert_eq!(
            act(r().on_range(RangeMiss::FillThenServe), Method::GET, ONE),
            "fill(method=GET stored=true pinned=true fwd-range=false range=true head-only=false outcome=pulled bg=false)"
        );
        assert_eq!(
            act(r().on_range(RangeMiss::ProxyRange), Method::GET, ONE),
            "proxy(method=GET stored=false pinned=false fwd-range=true range=true head-only=false outcome=proxied bg=false)"
        );
        for policy in [RangeMiss::ServeRangeAndFill, RangeMiss::FillThenServe] {
            assert_eq!(
                act(r().on_range(policy), Method::GET, SEVERAL),
                "fill(method=GET stored=true pinned=true fwd-range=false range=true head-only=false outcome=pulled bg=false)",
                "{policy:?}"
            );
        }
        assert_eq!(
            act(r().on_range(RangeMiss::ProxyRange), Method::GET, SEVERAL),
            "proxy(method=GET stored=false pinned=false fwd-range=false range=true head-only=false outcome=proxied bg=false)"
        );
    }

    #[test]
    fn sync_head() {
        let r = || Rule::new(origin());
        assert_eq!(
            act(r(), Method::HEAD, None),
            "untouched",
            "HEAD is ignored by default"
        );
        assert_eq!(
            act(r().on_head(HeadMiss::OriginHead), Method::HEAD, ONE),
            "proxy(method=HEAD stored=false pinned=false fwd-range=false range=false head-only=true outcome=proxied bg=false)"
        );
        assert_eq!(
            act(r().on_head(HeadMiss::Fill), Method::HEAD, ONE),
            "fill(method=GET stored=true pinned=true fwd-range=false range=false head-only=true outcome=pulled bg=false)"
        );
    }

    #[test]
    fn proxy_mode() {
        let r = || Rule::new(origin()).mode(Mode::Proxy);
        let plain = "proxy(method=GET stored=false pinned=false fwd-range=false range=false head-only=false outcome=proxied bg=false)";
        assert_eq!(act(r(), Method::GET, None), plain);
        assert_eq!(act(r(), Method::GET, IGNORED), plain);
        assert_eq!(
            act(r(), Method::GET, ONE),
            "proxy(method=GET stored=false pinned=false fwd-range=true range=true head-only=false outcome=proxied bg=false)"
        );
        assert_eq!(
            act(r(), Method::GET, SEVERAL),
            "proxy(method=GET stored=false pinned=false fwd-range=false range=true head-only=false outcome=proxied bg=false)"
        );
        assert_eq!(
            act(r().on_head(HeadMiss::OriginHead), Method::HEAD, None),
            "proxy(method=HEAD stored=false pinned=false fwd-range=false range=false head-only=true outcome=proxied bg=false)"
        );
    }

    #[test]
    fn a_location_value_is_the_uris_display() {
        for uri in [
            "http://127.0.0.1:9/base/k.bin",
            "https://example.com/a%20b/c?x=1&y=%2F",
            "http://[::1]:8080/",
            "http://h/p?",
            "/relative/path?q",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(location_value(&uri).unwrap(), uri.to_string().as_str());
        }
    }

    #[test]
    fn redirect_and_async_modes() {
        for range in [None, ONE, SEVERAL] {
            assert_eq!(
                act(Rule::new(origin()).mode(Mode::Redirect), Method::GET, range),
                "redirect(302 http://127.0.0.1:9/base/k.bin outcome=redirect bg=false)"
            );
            assert_eq!(
                act(Rule::new(origin()).mode(Mode::Async), Method::GET, range),
                "redirect(302 http://127.0.0.1:9/base/k.bin outcome=async bg=true)"
            );
        }
        #[derive(Debug)]
        struct Hidden;
        impl Origin for Hidden {
            fn fetch(
                &self,
                _: OriginRequest,
            ) -> futures::future::BoxFuture<'static, Result<crate::OriginResponse, crate::Error>>
            {
                unreachable!()
            }
        }
        assert_eq!(
            act(Rule::new(Hidden).mode(Mode::Async), Method::GET, None),
            "cannot-redirect(r)"
        );
    }

    #[test]
    fn the_clients_scheme_counts_only_when_trusted() {
        let uri: Uri = "http://mirror/k.bin".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        for (trust, expected) in [(false, None), (true, Some(http::uri::Scheme::HTTP))] {
            let engine = Engine::new(
                vec![Rule::new(origin()).named("r")],
                Arc::new(crate::BucketStore::new(Arc::new(
                    object_store::memory::InMemory::new(),
                ))),
                None,
                trust,
                FillSettings::default(),
            );
            let (_, request) = engine
                .plan(
                    "k.bin",
                    &Method::GET,
                    StatusCode::NOT_FOUND,
                    &uri,
                    Some(&headers),
                )
                .unwrap();
            assert_eq!(request.client_scheme, expected, "trust {trust}");
            let relative: Uri = "/k.bin".parse().unwrap();
            let (_, request) = engine
                .plan(
                    "k.bin",
                    &Method::GET,
                    StatusCode::NOT_FOUND,
                    &relative,
                    Some(&headers),
                )
                .unwrap();
            let forwarded = trust.then_some(http::uri::Scheme::HTTPS);
            assert_eq!(
                request.client_scheme, forwarded,
                "X-Forwarded-Proto, trust {trust}"
            );
        }
    }

    #[test]
    fn what_no_rule_takes_is_untouched() {
        let engine = engine(Rule::new(origin()).prefix("img/"));
        let miss = |path: &'static str, method: &'static Method, status| {
            let uri: Uri = path.parse().unwrap();
            describe(&decide(
                &engine,
                Miss {
                    uri: &uri,
                    method,
                    status,
                    headers: None,
                    range: None,
                    if_range: None,
                    store_checked: false,
                    key: None,
                },
            ))
        };
        assert_eq!(
            miss("/txt/a", &Method::GET, StatusCode::NOT_FOUND),
            "untouched"
        );
        assert_eq!(
            miss("/img/../a", &Method::GET, StatusCode::NOT_FOUND),
            "untouched"
        );
        assert_eq!(
            miss("/img/a", &Method::GET, StatusCode::FORBIDDEN),
            "untouched"
        );
        assert_eq!(
            miss("/img/a", &Method::POST, StatusCode::NOT_FOUND),
            "untouched"
        );
        assert!(miss("/img/a", &Method::GET, StatusCode::NOT_FOUND).starts_with("fill("));
    }
}
