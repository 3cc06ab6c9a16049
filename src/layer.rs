//! [`OriginPullLayer`]: the middleware's configuration.

use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use http::{Method, StatusCode};
use tower_layer::Layer;

use crate::origin::OriginRequest;
use crate::rule::Rule;
use crate::service::OriginPull;
use crate::store::{BucketStore, Store};

/// The default name of the header telling the client what happened (`pulled`, ...).
pub const DEFAULT_HEADER_NAME: HeaderName = HeaderName::from_static("x-origin-pull");

/// Applies [`OriginPull`] to a service: misses matching a [`Rule`] are pulled from the rule's
/// origin, streamed to the client and written into the [`Store`].
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use object_store::memory::InMemory;
/// use tower_origin_pull::{HttpOrigin, OriginPullLayer, Rule};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let store = Arc::new(InMemory::new());
/// let app: Router = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .layer(
///         OriginPullLayer::from_object_store(store)
///             .rule(Rule::new(HttpOrigin::new("http://127.0.0.1:9000/")?).prefix("img/")),
///     );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OriginPullLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) rules: Vec<Rule>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) header_name: Option<HeaderName>,
    /// Some rule accepts HEAD.
    head: bool,
    /// The union of the rules' trigger statuses.
    statuses: Vec<StatusCode>,
}

impl fmt::Debug for OriginPullLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPullLayer")
            .field("rules", &self.config.rules)
            .field("store", &self.config.store)
            .field("header_name", &self.config.header_name)
            .finish()
    }
}

impl OriginPullLayer {
    /// A layer writing pulled objects into `store`, with no rules yet (so it pulls nothing).
    pub fn new(store: impl Store) -> Self {
        Self {
            config: Arc::new(Config {
                rules: Vec::new(),
                store: Arc::new(store),
                header_name: Some(DEFAULT_HEADER_NAME),
                head: false,
                statuses: Vec::new(),
            }),
        }
    }

    /// A layer writing into an `object_store` backend through a default [`BucketStore`].
    pub fn from_object_store(store: Arc<dyn object_store::ObjectStore>) -> Self {
        Self::new(BucketStore::new(store))
    }

    /// Append a rule; rules are tried in the order they were added, the first match wins.
    /// An unnamed rule is named `rule#N` after its position (from 0).
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        let config = Arc::make_mut(&mut self.config);
        let position = config.rules.len();
        let rule = if rule.name.is_none() {
            rule.named(format!("rule#{position}"))
        } else {
            rule
        };
        config.head |= rule.accepts(&Method::HEAD);
        for status in rule.statuses() {
            if !config.statuses.contains(status) {
                config.statuses.push(*status);
            }
        }
        config.rules.push(rule);
        self
    }

    /// Append several rules in order; see [`OriginPullLayer::rule`].
    #[must_use]
    pub fn rules(self, rules: impl IntoIterator<Item = Rule>) -> Self {
        rules.into_iter().fold(self, Self::rule)
    }

    /// Name the response header that says what happened (default [`DEFAULT_HEADER_NAME`]).
    #[must_use]
    pub fn header_name(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).header_name = Some(name);
        self
    }

    /// Do not add the header that says what happened.
    #[must_use]
    pub fn without_header(mut self) -> Self {
        Arc::make_mut(&mut self.config).header_name = None;
        self
    }
}

impl Config {
    /// Whether a request with this method may ever be pulled (checked before the inner
    /// service runs, so other requests cost nothing).
    #[inline]
    pub(crate) fn wants(&self, method: &Method) -> bool {
        (method == Method::GET || (self.head && method == Method::HEAD)) && !self.rules.is_empty()
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
        query: Option<&str>,
    ) -> Option<(&Rule, OriginRequest)> {
        let rule = self.rules.iter().find(|r| r.matches(key, method, status))?;
        let query = rule
            .forward_query
            .then(|| query.map(str::to_owned))
            .flatten();
        let request = OriginRequest::new(rule.rewrite.apply(key)).with_query(query);
        Some((rule, request))
    }
}

impl<S> Layer<S> for OriginPullLayer {
    type Service = OriginPull<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginPull::new(inner, self.clone())
    }
}
