//! [`OriginPullLayer`] and its [`OriginPullBuilder`]: the middleware's configuration,
//! built once into the live engine that every clone of the layer shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use crate::engine::Engine;
use crate::fill::registry::FillSettings;
use crate::handle::OriginPullHandle;
use crate::rule::Rule;
use crate::service::OriginPull;
use crate::store::{BucketStore, Store};

/// The default name of the header telling the client what happened (`pulled`, ...).
pub const DEFAULT_HEADER_NAME: HeaderName = HeaderName::from_static("x-origin-pull");

/// Configures an [`OriginPullLayer`]: rules, store, fill settings. [`build`] makes the
/// layer and its live state (fill registry and bound, counters, events) once; every clone of
/// the built layer, and every service it makes, shares that state.
///
/// [`build`]: OriginPullBuilder::build
#[derive(Clone)]
#[must_use]
pub struct OriginPullBuilder {
    rules: Vec<Rule>,
    store: Arc<dyn Store>,
    header_name: Option<HeaderName>,
    trust_forwarded_proto: bool,
    settings: FillSettings,
}

impl fmt::Debug for OriginPullBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPullBuilder")
            .field("rules", &self.rules)
            .field("store", &self.store)
            .field("header_name", &self.header_name)
            .field("trust_forwarded_proto", &self.trust_forwarded_proto)
            .field("settings", &self.settings)
            .finish()
    }
}

impl OriginPullBuilder {
    /// A builder writing pulled objects into `store`, with no rules yet (so the layer pulls
    /// nothing).
    pub fn new(store: impl Store) -> Self {
        Self {
            rules: Vec::new(),
            store: Arc::new(store),
            header_name: Some(DEFAULT_HEADER_NAME),
            trust_forwarded_proto: false,
            settings: FillSettings::default(),
        }
    }

    /// A builder writing into an `object_store` backend through a default [`BucketStore`].
    pub fn from_object_store(store: Arc<dyn object_store::ObjectStore>) -> Self {
        Self::new(BucketStore::new(store))
    }

    fn with_settings(mut self, change: impl FnOnce(&mut FillSettings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// Let the client's scheme choose the origin's for [`Protocol::SameAsRequest`] origins: an
    /// absolute-form request target, HTTP/2's `:scheme`, `X-Forwarded-Proto` (default
    /// `false`: the origin's configured scheme is used). Turn it on only behind a proxy that
    /// sets `X-Forwarded-Proto` itself; an `https` origin is never downgraded either way.
    ///
    /// [`Protocol::SameAsRequest`]: crate::Protocol::SameAsRequest
    pub fn trust_forwarded_proto(mut self, trust: bool) -> Self {
        self.trust_forwarded_proto = trust;
        self
    }

    /// Append a rule; rules are tried in the order they were added, the first match wins.
    /// An unnamed rule is named `rule#N` after its position (from 0).
    pub fn rule(mut self, rule: Rule) -> Self {
        let position = self.rules.len();
        let rule = if rule.name.is_none() {
            rule.named(format!("rule#{position}"))
        } else {
            rule
        };
        self.rules.push(rule);
        self
    }

    /// Append several rules in order; see [`OriginPullBuilder::rule`].
    pub fn rules(self, rules: impl IntoIterator<Item = Rule>) -> Self {
        rules.into_iter().fold(self, Self::rule)
    }

    /// Name the response header that says what happened (default [`DEFAULT_HEADER_NAME`]).
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.header_name = Some(name);
        self
    }

    /// How many bytes of an object in flight are kept in memory for the requests that share
    /// its fill (default 4 MiB). Requests that join before the object outgrows it stream
    /// from byte 0 at once; a request that falls further behind, or joins later, reads the
    /// fill's spool at its own offset (see [`spool_max_bytes`](Self::spool_max_bytes)), or
    /// without one continues from the store once the object is committed. This is the
    /// per-fill memory bound (plus one chunk, plus what the store buffers, plus 128 KiB per
    /// reader of the spool).
    pub fn coalesce_window(self, bytes: usize) -> Self {
        self.with_settings(|s| s.window = bytes.max(1))
    }

    /// How long a reader that keeps the window full may hold its fill (and the other readers)
    /// up before it is moved to reading from the store after the commit (default 250 ms).
    pub fn slow_reader_grace(self, grace: Duration) -> Self {
        self.with_settings(|s| s.grace = grace)
    }

    /// Remember an origin `404` for `ttl`, answering the inner response without asking the
    /// origin again (default: not remembered; concurrent requests share one `404` anyway).
    /// `Duration::ZERO` turns it off.
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
    pub fn max_fills(self, fills: usize) -> Self {
        self.with_settings(|s| s.max_fills = fills.max(1))
    }

    /// How long a request that would start a fill waits for a slot of
    /// [`max_fills`](Self::max_fills) before it is answered `503` (default 1 s).
    pub fn fill_queue_timeout(self, wait: Duration) -> Self {
        self.with_settings(|s| s.queue_timeout = wait)
    }

    /// The `Retry-After` of the `503` that a request gets when no fill slot freed up in
    /// time (default 1 s; whole seconds, at least 1).
    pub fn retry_after(self, after: Duration) -> Self {
        self.with_settings(|s| s.retry_after = after)
    }

    /// How long a fill may take to get the origin's head (the store re-check, every origin
    /// attempt, the start of the store write) and how long its readers wait for it; then
    /// the fill fails and its readers get `502`. Default: the rule's origin's
    /// [`attempt_budget`](crate::Origin::attempt_budget) plus 10 s for the store.
    pub fn head_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.head_timeout = Some(timeout))
    }

    /// How long any one step of a fill after the head may take — the next body chunk from
    /// the origin, a store write, the commit — before the fill fails and its readers' bodies
    /// end in an error (default 60 s). This bounds origins and stores that hang.
    pub fn stall_timeout(self, timeout: Duration) -> Self {
        self.with_settings(|s| s.stall_timeout = timeout)
    }

    /// How many background fills (async mode, the full fill behind a cold `Range`) may wait
    /// to start (default 1024). When the queue is full, a
    /// request is still redirected but its fill is skipped (and counted in
    /// [`OriginPullHandle::background_stats`]).
    pub fn background_queue(self, capacity: usize) -> Self {
        self.with_settings(|s| s.queue = capacity.max(1))
    }

    /// How many slots of [`max_fills`](Self::max_fills) background fills — async mode, the
    /// full fill behind a cold `Range`, warm-up — may hold at once (default 4, at least 1,
    /// at most `max_fills`). Live misses can always use the other `max_fills − n` slots, so
    /// background work never starves live traffic when `n < max_fills`.
    pub fn background_concurrency(self, fills: usize) -> Self {
        self.with_settings(|s| s.background = fills.max(1))
    }

    /// Where fills spool their bytes for the readers outside the window (default: the
    /// system temp dir). Each process uses its own directory in it,
    /// `tower-origin-pull-<pid>`, and on its first spool removes the directories of
    /// processes that are gone. Spool files are unlinked as soon as they are created, so
    /// none outlives its fill's last reader, nor the process.
    pub fn spool_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        self.with_settings(|s| s.spool_dir = Some(dir))
    }

    /// The bound on the bytes every spool of this layer holds together (default
    /// [`DEFAULT_SPOOL_MAX_BYTES`](crate::DEFAULT_SPOOL_MAX_BYTES), 1 GiB; `0`: no spools).
    /// A fill whose next chunk would pass it stops spooling (counted in
    /// [`SpoolStats::fallback_full`](crate::SpoolStats::fallback_full)): its readers past
    /// what is spooled continue from the store after the commit, as without a spool. A fill
    /// spools only when it is shared and stored and its object may outgrow the
    /// [`coalesce_window`](Self::coalesce_window).
    pub fn spool_max_bytes(self, bytes: u64) -> Self {
        self.with_settings(|s| s.spool_max_bytes = bytes)
    }

    /// Do not add the header that says what happened.
    pub fn without_header(mut self) -> Self {
        self.header_name = None;
        self
    }

    /// Build the layer and its live state.
    pub fn build(self) -> OriginPullLayer {
        OriginPullLayer {
            engine: Arc::new(Engine::new(
                self.rules,
                self.store,
                self.header_name,
                self.trust_forwarded_proto,
                self.settings,
            )),
        }
    }
}

/// Applies [`OriginPull`] to a service: misses matching a [`Rule`] are pulled from the rule's
/// origin, streamed to the client and written into the [`Store`].
///
/// Built once by an [`OriginPullBuilder`]; cheap to clone, and every clone (and every
/// service it makes) shares one live state: one fill per key across all of them, one bound,
/// one set of counters and events. The live operations (shutdown, progress, events,
/// deletes, warm-up) are on its [`OriginPullHandle`].
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use object_store::memory::InMemory;
/// use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let store = Arc::new(InMemory::new());
/// let layer = OriginPullBuilder::from_object_store(store)
///     .rule(Rule::new(HttpOrigin::new("http://127.0.0.1:9000/")?).prefix("img/"))
///     .build();
/// let handle = layer.handle(); // shutdown, progress, events, ...
/// let app: Router = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .layer(layer);
/// # let _ = handle;
/// # Ok(()) }
/// ```
///
/// Settings belong to the builder: a built layer has none, so clones cannot drift apart.
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use tower_origin_pull::OriginPullBuilder;
/// let layer = OriginPullBuilder::from_object_store(Arc::new(object_store::memory::InMemory::new())).build();
/// let other = layer.clone().max_fills(3); // no such method on a built layer
/// ```
#[derive(Clone)]
pub struct OriginPullLayer {
    pub(crate) engine: Arc<Engine>,
}

impl fmt::Debug for OriginPullLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPullLayer")
            .field("engine", &self.engine)
            .finish()
    }
}

impl OriginPullLayer {
    /// A builder writing pulled objects into `store`; see [`OriginPullBuilder`].
    pub fn builder(store: impl Store) -> OriginPullBuilder {
        OriginPullBuilder::new(store)
    }

    /// The handle to the live state this layer shares with all its clones.
    pub fn handle(&self) -> OriginPullHandle {
        OriginPullHandle::new(self.engine.clone())
    }
}

impl<S> Layer<S> for OriginPullLayer {
    type Service = OriginPull<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginPull::new(inner, self.clone())
    }
}
