//! [`OriginPullLayer`]: the middleware's configuration.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, StatusCode};
use tokio::sync::broadcast;
use tower_layer::Layer;

use crate::events::{Events, FillEvent};
use crate::fill::registry::{BackgroundStats, FillSettings, Fills, ShutdownReport};
use crate::origin::OriginRequest;
use crate::progress::{Counters, Progress};
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
    /// Some rule reads the request's headers (conditions or header policy).
    pub(crate) needs_headers: bool,
    /// The union of the rules' trigger statuses.
    statuses: Vec<StatusCode>,
    settings: FillSettings,
    events: Events,
    pub(crate) counters: Arc<Counters>,
    pub(crate) fills: Arc<Fills>,
}

impl fmt::Debug for OriginPullLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPullLayer")
            .field("rules", &self.config.rules)
            .field("store", &self.config.store)
            .field("header_name", &self.config.header_name)
            .field("settings", &self.config.settings)
            .finish()
    }
}

impl OriginPullLayer {
    /// A layer writing pulled objects into `store`, with no rules yet (so it pulls nothing).
    pub fn new(store: impl Store) -> Self {
        let settings = FillSettings::default();
        let events = Events::new();
        let counters = Arc::new(Counters::default());
        let fills = Arc::new(Fills::new(
            settings.clone(),
            events.clone(),
            counters.clone(),
        ));
        Self {
            config: Arc::new(Config {
                rules: Vec::new(),
                store: Arc::new(store),
                header_name: Some(DEFAULT_HEADER_NAME),
                head: false,
                needs_headers: false,
                statuses: Vec::new(),
                settings,
                events,
                counters,
                fills,
            }),
        }
    }

    fn with_settings(mut self, change: impl FnOnce(&mut FillSettings)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        change(&mut config.settings);
        config.fills = Arc::new(Fills::new(
            config.settings.clone(),
            config.events.clone(),
            config.counters.clone(),
        ));
        self
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
        config.needs_headers |= rule.reads_request_headers();
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

    /// How many bytes of an object in flight are kept in memory for the requests that share
    /// its fill (default 4 MiB). Requests that join before the object outgrows it stream
    /// from byte 0 at once; a request that falls further behind, or joins later, continues
    /// from the store once the object is committed. This is the per-fill memory bound (plus
    /// one chunk, plus what the store buffers).
    #[must_use]
    pub fn coalesce_window(self, bytes: usize) -> Self {
        self.with_settings(|s| s.window = bytes.max(1))
    }

    /// How long a reader that keeps the window full may hold its fill (and the other readers)
    /// up before it is moved to reading from the store after the commit (default 250 ms).
    #[must_use]
    pub fn slow_reader_grace(self, grace: Duration) -> Self {
        self.with_settings(|s| s.grace = grace)
    }

    /// Remember an origin `404` for `ttl`, answering the inner response without asking the
    /// origin again (default: not remembered; concurrent requests share one `404` anyway).
    /// `Duration::ZERO` turns it off.
    #[must_use]
    pub fn remember_not_found(self, ttl: Duration) -> Self {
        self.with_settings(|s| s.negative_ttl = (!ttl.is_zero()).then_some(ttl))
    }

    /// The bound on fills of every kind in flight at once — sync, proxy, `HEAD`, cold
    /// `Range` proxies, async and Range-background fills, warm-up — counted in one place
    /// (default [`DEFAULT_MAX_FILLS`](crate::DEFAULT_MAX_FILLS); at least 1).
    ///
    /// At most this many requests are in flight at the origins, and the memory of all fills
    /// together is at most `fills × (coalesce_window + one chunk + the store's write buffer)`
    /// (the store's buffer: [`BucketStore`]'s multipart threshold, or part size × (1 + parts
    /// in flight); none for fills that store nothing). At the bound, a request that would
    /// start a fill waits up to [`fill_queue_timeout`](Self::fill_queue_timeout) for a slot,
    /// then gets `503` with `Retry-After` ([`retry_after`](Self::retry_after)); a request for
    /// a key whose fill is running joins it at once; background fills wait in their bounded
    /// queue, warm-up waits.
    #[must_use]
    pub fn max_fills(self, fills: usize) -> Self {
        self.with_settings(|s| s.max_fills = fills.max(1))
    }

    /// How long a request that would start a fill waits for a slot of
    /// [`max_fills`](Self::max_fills) before it is answered `503` (default 1 s).
    #[must_use]
    pub fn fill_queue_timeout(self, wait: Duration) -> Self {
        self.with_settings(|s| s.queue_timeout = wait)
    }

    /// The `Retry-After` of the `503` that a request gets when no fill slot freed up in
    /// time (default 1 s; whole seconds, at least 1).
    #[must_use]
    pub fn retry_after(self, after: Duration) -> Self {
        self.with_settings(|s| s.retry_after = after)
    }

    /// How long a fill may take to get the origin's head (the store re-check, every origin
    /// attempt, the start of the store write) and how long its readers wait for it; then
    /// the fill fails and its readers get `502`. Default: the rule's origin's
    /// [`attempt_budget`](crate::Origin::attempt_budget) plus 10 s for the store.
    #[must_use]
    pub fn head_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.head_timeout = Some(timeout))
    }

    /// How long any one step of a fill after the head may take — the next body chunk from
    /// the origin, a store write, the commit — before the fill fails and its readers' bodies
    /// end in an error (default 60 s). This bounds origins and stores that hang.
    #[must_use]
    pub fn stall_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.stall_timeout = timeout)
    }

    /// How many async-mode fills may wait to start (default 1024). When the queue is full, a
    /// request is still redirected but its fill is skipped (and counted in
    /// [`OriginPullLayer::background_stats`]).
    #[must_use]
    pub fn background_queue(self, capacity: usize) -> Self {
        self.with_settings(|s| s.queue = capacity.max(1))
    }

    /// How many slots of [`max_fills`](Self::max_fills) background fills — async mode, the
    /// full fill behind a cold `Range`, warm-up — may hold at once (default 4, at least 1,
    /// at most `max_fills`). Live misses can always use the other `max_fills − n` slots, so
    /// background work never starves live traffic when `n < max_fills`.
    #[must_use]
    pub fn background_concurrency(self, fills: usize) -> Self {
        self.with_settings(|s| s.background = fills.max(1))
    }

    /// Receive an event when a fill starts, completes, finds nothing, or fails.
    ///
    /// Sending never waits for a subscriber: one that falls more than
    /// [`EVENT_CAPACITY`](crate::events::EVENT_CAPACITY) events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<FillEvent> {
        self.config.events.subscribe()
    }

    /// How much was served from the store versus pulled, since the layer was built (shared
    /// by every clone of the layer and every service it made).
    pub fn progress(&self) -> Progress {
        self.config.counters.snapshot(self.config.fills.in_flight())
    }

    /// Delete `key` from the store and leave a tombstone so that misses for it are not
    /// pulled back from the origin (the store must keep tombstones, see
    /// [`BucketStore::with_tombstones`]).
    pub async fn delete(&self, key: &str) -> Result<(), crate::Error> {
        self.config.store.set_deleted(key, true).await
    }

    /// Remove `key`'s tombstone: misses for it are pulled again.
    pub async fn undelete(&self, key: &str) -> Result<(), crate::Error> {
        self.config.store.set_deleted(key, false).await
    }

    /// Counters of the async-mode background queue.
    pub fn background_stats(&self) -> BackgroundStats {
        self.config.fills.background_stats()
    }

    /// Fills in flight right now (sync and background).
    pub fn fills_in_flight(&self) -> usize {
        self.config.fills.in_flight()
    }

    /// Stop starting fills, give the ones in flight `grace` to finish, then cancel the rest
    /// (their writes are aborted: nothing partial is left in the store). Queued async-mode
    /// fills that have not started are dropped. Requests arriving afterwards get the inner
    /// service's response untouched.
    pub fn shutdown(
        &self,
        grace: Duration,
    ) -> impl Future<Output = ShutdownReport> + Send + 'static {
        let fills = self.config.fills.clone();
        async move { fills.shutdown(grace).await }
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
        uri: &http::Uri,
        headers: Option<&http::HeaderMap>,
    ) -> Option<(&Rule, OriginRequest)> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(key, method, status, headers))?;
        let client_scheme = uri.scheme().cloned().or_else(|| {
            let proto = headers?.get("x-forwarded-proto")?.to_str().ok()?;
            proto
                .eq_ignore_ascii_case("https")
                .then_some(http::uri::Scheme::HTTPS)
        });
        let mut request = OriginRequest::new(rule.rewrite.apply(key))
            .with_query(rule.query.apply(uri.query()))
            .with_headers(rule.headers.apply(headers));
        request.client_scheme = client_scheme;
        Some((rule, request))
    }
}

impl<S> Layer<S> for OriginPullLayer {
    type Service = OriginPull<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginPull::new(inner, self.clone())
    }
}
