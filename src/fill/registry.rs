//! The in-flight registry: one fill per key, coalescing, remembered 404s, the bound on fills
//! of every kind (`max_fills`, with the background share), the background queue of async
//! mode, and shutdown.
//!
//! Every fill, shared or private, live or background, holds a [`Slot`] of the bound from
//! before its task is spawned until its [`FillGuard`] drops, whatever ends the task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::guard::{FillGuard, Slot};
use super::reader::Reader;
use super::shared::Fill;
use super::spool::{DEFAULT_SPOOL_MAX_BYTES, SpoolStats, Spools};
use super::{Cancel, FillSpec, Limits, task};
use crate::events::{Events, FillEvent};
use crate::progress::Counters;
use crate::time;

/// At most this many keys are remembered as missing at the origin.
const MAX_NEGATIVE: usize = 100_000;

/// Settings of the fill machinery; see the setters on [`OriginPullLayer`](crate::OriginPullLayer).
#[derive(Debug, Clone)]
pub(crate) struct FillSettings {
    pub(crate) window: usize,
    pub(crate) grace: Duration,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) queue: usize,
    /// Slots of the bound that background fills (async, Range background, warm-up) may use.
    pub(crate) background: usize,
    /// The bound on fills of every kind in flight at once.
    pub(crate) max_fills: usize,
    /// How long a live miss waits for a slot before `503`.
    pub(crate) queue_timeout: Duration,
    /// The `Retry-After` of that `503`.
    pub(crate) retry_after: Duration,
    /// How long readers wait for the origin's head; `None`: the origin's attempt budget
    /// plus [`STORE_MARGIN`].
    pub(crate) head_timeout: Option<Duration>,
    /// How long one step of a fill after its head may take (a body chunk, a store write).
    pub(crate) stall_timeout: Duration,
    /// Where spools go (`None`: the system temp dir).
    pub(crate) spool_dir: Option<std::path::PathBuf>,
    /// The bound on every spool's bytes together (0: no spools).
    pub(crate) spool_max_bytes: u64,
}

/// Added to an origin's attempt budget for the store's part of a fill's head (the re-check
/// of the store and the start of the write).
pub(crate) const STORE_MARGIN: Duration = Duration::from_secs(10);

/// The default bound on fills in flight.
pub const DEFAULT_MAX_FILLS: usize = 64;

impl Default for FillSettings {
    fn default() -> Self {
        Self {
            window: 4 * 1024 * 1024,
            grace: Duration::from_millis(250),
            negative_ttl: None,
            queue: 1024,
            background: 4,
            max_fills: DEFAULT_MAX_FILLS,
            queue_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            head_timeout: None,
            stall_timeout: Duration::from_secs(60),
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

/// How a request got attached to a fill.
pub(crate) enum Joined {
    /// It started the fill.
    Leader(Reader),
    /// It joined a fill in flight.
    Waiter(Reader),
    /// The origin said 404 for this key a moment ago.
    KnownMissing,
    /// The layer is shutting down, or there is no runtime: no new fills.
    Refused,
    /// No slot of the bound freed up within the queue timeout.
    Full,
    /// Every slot is taken: this resolves once one frees up (then as above), or to `Full`
    /// after the queue timeout.
    Queued(BoxFuture<'static, Joined>),
}

/// What happened to an async-mode request for a background fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    Deduplicated,
    QueueFull,
    Refused,
}

/// Counters of the background queue (async mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackgroundStats {
    /// Fills put on the queue.
    pub queued: u64,
    /// Requests whose key was already queued or being filled.
    pub deduplicated: u64,
    /// Requests redirected without a fill because the queue was full.
    pub dropped_queue_full: u64,
    /// Queued fills dropped by shutdown before they started.
    pub dropped_shutdown: u64,
}

/// What [`OriginPullHandle::shutdown`](crate::OriginPullHandle::shutdown) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Fills in flight that ended on their own within the grace period.
    pub finished: usize,
    /// Fills still running after the grace period, cancelled (their writes aborted).
    pub aborted: usize,
    /// Queued background fills that never started.
    pub dropped_queued: u64,
}

#[derive(Debug, Default)]
struct QueueCounters {
    queued: AtomicU64,
    deduplicated: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_shutdown: AtomicU64,
}

pub(crate) struct Fills {
    settings: FillSettings,
    pub(crate) events: Events,
    pub(crate) counters: Arc<Counters>,
    map: Mutex<HashMap<String, Arc<Fill>>>,
    /// Keys the origin said 404 for, per rule (rules may name different origins).
    negative: Mutex<Negative>,
    /// The bound: one permit per fill in flight, of every kind.
    slots: Arc<Semaphore>,
    /// The share of the bound background fills may hold.
    background: Arc<Semaphore>,
    /// Notified whenever a fill's guard drops (shutdown waits on it).
    settled: Notify,
    closing: AtomicBool,
    /// Shutdown's signal to the fills in flight.
    cancel: Arc<Cancel>,
    queue: Mutex<Option<mpsc::Sender<FillSpec>>>,
    queued: Mutex<HashSet<String>>,
    queue_counters: QueueCounters,
    pub(crate) spools: Arc<Spools>,
    /// Keys whose fill committed in the last [`RECENT`]: a new fill of such a key re-checks
    /// the store even if `ServeStore` just said it looked (it may have looked during the
    /// commit).
    recent: Mutex<HashMap<String, std::time::Instant>>,
}

/// How long a key's commit makes a new fill of it re-check the store (far longer than the
/// time from `ServeStore`'s look to the fill's start).
const RECENT: Duration = Duration::from_secs(1);

/// At most this many recently committed keys are remembered; past it, those older than
/// [`RECENT`] are dropped, and if that is not enough, all (a forgotten key only costs a
/// possible extra origin request).
const MAX_RECENT: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a fill is shared through the registry (one per key) or private to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    Shared,
    Private,
}

impl Fills {
    pub(crate) fn new(settings: FillSettings, events: Events, counters: Arc<Counters>) -> Self {
        let max = settings.max_fills.clamp(1, Semaphore::MAX_PERMITS);
        let background = settings.background.clamp(1, max);
        let spools = Arc::new(Spools::new(
            settings.spool_dir.clone(),
            settings.spool_max_bytes,
        ));
        Self {
            settings,
            events,
            counters,
            map: Mutex::default(),
            negative: Mutex::default(),
            slots: Arc::new(Semaphore::new(max)),
            background: Arc::new(Semaphore::new(background)),
            settled: Notify::new(),
            closing: AtomicBool::new(false),
            cancel: Arc::default(),
            queue: Mutex::new(None),
            queued: Mutex::default(),
            queue_counters: QueueCounters::default(),
            spools,
            recent: Mutex::default(),
        }
    }

    /// `spec`, re-checking the store unless `ServeStore` looked just now and no fill of the
    /// key committed lately (see `FillChecks::store_checked`).
    fn checked(&self, mut spec: FillSpec) -> FillSpec {
        if spec.checks.store_checked {
            let recent = lock(&self.recent);
            if recent
                .get(&spec.key)
                .is_some_and(|at| at.elapsed() < RECENT)
            {
                spec.checks.store_checked = false;
            }
        }
        spec
    }

    /// Remember that `key`'s fill committed now.
    fn committed(&self, key: &str) {
        let mut recent = lock(&self.recent);
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, at| at.elapsed() < RECENT);
            if recent.len() >= MAX_RECENT {
                recent.clear();
            }
        }
        recent.insert(key.to_owned(), std::time::Instant::now());
    }

    fn max_fills(&self) -> usize {
        self.settings.max_fills.clamp(1, Semaphore::MAX_PERMITS)
    }

    fn new_fill(&self, spec: &FillSpec) -> Arc<Fill> {
        let head_timeout = self.head_timeout(spec);
        Arc::new(Fill::new(
            spec.key.clone(),
            spec.store.clone(),
            self.settings.window,
            self.settings.grace,
            spec.cancel_when_alone(),
            time::deadline(head_timeout),
        ))
    }

    /// How long the fill of `spec` may take to get its head.
    fn head_timeout(&self, spec: &FillSpec) -> Duration {
        self.settings
            .head_timeout
            .unwrap_or_else(|| spec.origin.attempt_budget().saturating_add(STORE_MARGIN))
    }

    /// What bounds a fill's task; a shared, stored fill may spool.
    fn limits(&self, spec: &FillSpec, sharing: Sharing) -> Limits {
        let spools = (sharing == Sharing::Shared && spec.store.is_some() && self.spools.enabled())
            .then(|| self.spools.clone());
        Limits {
            cancel: self.cancel.clone(),
            head_timeout: self.head_timeout(spec),
            stall_timeout: self.settings.stall_timeout,
            spools,
        }
    }

    /// Spawn the task of a fill that holds `slot`; `shared`: it is in the map.
    fn spawn(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        fill: Arc<Fill>,
        spec: FillSpec,
        slot: Slot,
        sharing: Sharing,
    ) {
        let origin = spec
            .origin
            .location(&spec.request)
            .and_then(|u| u.authority().map(|a| a.to_string()));
        let span = tracing::info_span!(
            "fill",
            key = %spec.key,
            rule = %spec.rule,
            origin = origin.as_deref().unwrap_or("-"),
            background = spec.pinned,
            stored = spec.store.is_some(),
        );
        if spec.report {
            self.events.emit(FillEvent::Started {
                key: spec.key.clone(),
                rule: spec.rule.clone(),
                background: spec.pinned,
            });
        }
        self.counters.fills_in_flight(self.in_flight());
        let guard = FillGuard::new(self.clone(), fill, &spec, slot, sharing == Sharing::Shared);
        let limits = self.limits(&spec, sharing);
        rt.spawn(task::supervise(guard, spec, limits).instrument(span));
    }

    fn known_missing(&self, spec: &FillSpec) -> bool {
        if self.settings.negative_ttl.is_none() {
            return false;
        }
        lock(&self.negative).holds(&(spec.rule.clone(), spec.key.clone()))
    }

    /// The fill in flight for `key`, unless it has already failed (a failed fill may linger
    /// in the map for a moment until its guard drops; a new request starts afresh).
    fn in_flight_for(&self, key: &str) -> Option<Arc<Fill>> {
        lock(&self.map)
            .get(key)
            .filter(|f| !f.has_failed())
            .cloned()
    }

    fn live_slot(&self) -> Result<Option<Slot>, ()> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(Slot::live(permit))),
            Err(TryAcquireError::NoPermits) => Ok(None),
            Err(TryAcquireError::Closed) => Err(()),
        }
    }

    /// Attach a reader to the fill of `spec.key`, starting the fill if there is none and a
    /// slot of the bound is free (else queue for one).
    pub(crate) fn join_or_start(self: &Arc<Self>, spec: FillSpec) -> Joined {
        self.admit(spec, Sharing::Shared)
    }

    /// Start a fill that is not shared with other requests (proxy mode, a `Range` proxied),
    /// counted against the same bound.
    pub(crate) fn start_private(self: &Arc<Self>, spec: FillSpec) -> Joined {
        self.admit(spec, Sharing::Private)
    }

    fn admit(self: &Arc<Self>, spec: FillSpec, sharing: Sharing) -> Joined {
        if self.closing.load(Ordering::Acquire) {
            return Joined::Refused;
        }
        if sharing == Sharing::Shared && self.known_missing(&spec) {
            return Joined::KnownMissing;
        }
        if sharing == Sharing::Shared {
            if let Some(fill) = self.in_flight_for(&spec.key) {
                return Joined::Waiter(Reader::join(fill.clone()));
            }
        }
        let spec = self.checked(spec);
        match self.live_slot() {
            Ok(Some(slot)) => self.start_with(spec, slot, sharing),
            Ok(None) => Joined::Queued(self.clone().wait_for_slot(spec, sharing).boxed()),
            Err(()) => Joined::Refused,
        }
    }

    /// Wait (at most the queue timeout) for a slot, then start or join.
    async fn wait_for_slot(self: Arc<Self>, spec: FillSpec, sharing: Sharing) -> Joined {
        let wait = time::capped(self.settings.queue_timeout);
        let acquired = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        let joined_meanwhile = |this: &Self, spec: &FillSpec| {
            (sharing == Sharing::Shared)
                .then(|| this.in_flight_for(&spec.key))
                .flatten()
                .map(|fill| Joined::Waiter(Reader::join(fill)))
        };
        match acquired {
            Ok(Ok(permit)) => self.start_with(spec, Slot::live(permit), sharing),
            Ok(Err(_closed)) => Joined::Refused,
            Err(_elapsed) => joined_meanwhile(&self, &spec).unwrap_or(Joined::Full),
        }
    }

    /// Start the fill with the slot it holds, or join one that started meanwhile.
    fn start_with(self: &Arc<Self>, spec: FillSpec, slot: Slot, sharing: Sharing) -> Joined {
        if self.closing.load(Ordering::Acquire) {
            return Joined::Refused;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Joined::Refused;
        };
        let fill = self.new_fill(&spec);
        let reader = Reader::lead(fill.clone());
        if sharing == Sharing::Shared {
            let mut map = lock(&self.map);
            if let Some(existing) = map.get(&spec.key).filter(|f| !f.has_failed()) {
                return Joined::Waiter(Reader::join(existing.clone()));
            }
            map.insert(spec.key.clone(), fill.clone());
        }
        self.spawn(&rt, fill, spec, slot, sharing);
        Joined::Leader(reader)
    }

    /// A slot for a background fill: one of the background share, then one of the bound.
    /// `None` when shutting down.
    async fn background_slot(&self) -> Option<Slot> {
        let share = self.background.clone().acquire_owned().await.ok()?;
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        Some(Slot::background(permit, share))
    }

    /// The fill in flight for `spec.key`, or a new one nobody reads (warm-up), once a
    /// background slot is free: `None` when shutting down or outside a runtime.
    pub(crate) async fn ensure(self: &Arc<Self>, spec: FillSpec) -> Option<Arc<Fill>> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        if let Some(fill) = self.in_flight_for(&spec.key) {
            return Some(fill.clone());
        }
        let slot = self.background_slot().await?;
        match self.start_detached(&spec, slot) {
            Detached::Started(fill) | Detached::InFlight(fill) => Some(fill),
            Detached::Refused => None,
        }
    }

    /// Start a fill nobody reads with `slot`, unless one for the key is in flight.
    fn start_detached(self: &Arc<Self>, spec: &FillSpec, slot: Slot) -> Detached {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Detached::Refused;
        };
        let mut map = lock(&self.map);
        if let Some(fill) = map.get(&spec.key).filter(|f| !f.has_failed()) {
            return Detached::InFlight(fill.clone());
        }
        if self.closing.load(Ordering::Acquire) {
            return Detached::Refused;
        }
        let fill = self.new_fill(spec);
        map.insert(spec.key.clone(), fill.clone());
        drop(map);
        // A background fill may start long after the inner service looked: it re-checks.
        let mut spec = spec.clone();
        spec.checks.store_checked = false;
        self.spawn(&rt, fill.clone(), spec, slot, Sharing::Shared);
        Detached::Started(fill)
    }

    /// Cancel the shared fill of `key` in flight, if any (a delete wins over it).
    pub(crate) fn cancel_key(&self, key: &str) {
        if let Some(fill) = lock(&self.map).get(key) {
            fill.cancel();
        }
    }

    /// Called by a fill's guard when the fill has ended, however it ended.
    pub(crate) fn finished(
        &self,
        fill: &Arc<Fill>,
        rule: &Arc<str>,
        shared: bool,
        not_found: bool,
    ) {
        if shared {
            if fill.committed().is_some() {
                self.committed(&fill.key);
            }
            let mut map = lock(&self.map);
            if map.get(&fill.key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
                map.remove(&fill.key);
            }
        }
        // Only a shared fill's 404 is everyone's: a private fill asked with this request's
        // own input (its query, headers, credentials), which may be why the origin said 404.
        if let (true, true, Some(ttl)) = (shared, not_found, self.settings.negative_ttl) {
            let until = time::deadline(ttl);
            lock(&self.negative).remember((rule.clone(), fill.key.clone()), until);
        }
    }

    /// Called by a fill's guard once its slot is released.
    pub(crate) fn released(&self) {
        self.counters.fills_in_flight(self.in_flight());
        self.settled.notify_waiters();
    }

    // ----- async mode -----

    /// Queue a background fill for `spec.key` unless one is queued or running.
    /// Whether a background fill of `key` would be deduplicated (a fill of it runs or is
    /// queued): counted as such, so the caller builds no fill for it. `false` says nothing
    /// for sure (the caller then [`enqueue`](Self::enqueue)s, which looks again).
    pub(crate) fn deduplicated(&self, key: &str) -> bool {
        let known = lock(&self.map).contains_key(key) || lock(&self.queued).contains(key);
        if known {
            self.queue_counters
                .deduplicated
                .fetch_add(1, Ordering::Relaxed);
        }
        known
    }

    pub(crate) fn enqueue(self: &Arc<Self>, spec: FillSpec) -> Enqueued {
        if self.closing.load(Ordering::Acquire) {
            return Enqueued::Refused;
        }
        if lock(&self.map).contains_key(&spec.key) {
            self.queue_counters
                .deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return Enqueued::Deduplicated;
        }
        let mut queued = lock(&self.queued);
        if queued.contains(&spec.key) {
            self.queue_counters
                .deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return Enqueued::Deduplicated;
        }
        let Some(tx) = self.queue_sender() else {
            return Enqueued::Refused;
        };
        let key = spec.key.clone();
        match tx.try_send(spec) {
            Ok(()) => {
                queued.insert(key);
                self.queue_counters.queued.fetch_add(1, Ordering::Relaxed);
                Enqueued::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queue_counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Enqueued::QueueFull
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Enqueued::Refused,
        }
    }

    fn queue_sender(self: &Arc<Self>) -> Option<mpsc::Sender<FillSpec>> {
        let mut queue = lock(&self.queue);
        if let Some(tx) = queue.as_ref() {
            return Some(tx.clone());
        }
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(self.settings.queue.clamp(1, MAX_QUEUE));
        rt.spawn(self.clone().dispatch(rx));
        *queue = Some(tx.clone());
        Some(tx)
    }

    /// Run queued fills as background slots free up.
    async fn dispatch(self: Arc<Self>, mut rx: mpsc::Receiver<FillSpec>) {
        while let Some(spec) = rx.recv().await {
            let key = spec.key.clone();
            let slot = if self.closing.load(Ordering::Acquire) {
                None
            } else {
                self.background_slot().await
            };
            let started = match slot {
                Some(slot) => !matches!(self.start_detached(&spec, slot), Detached::Refused),
                None => false,
            };
            // Removed only now that the fill is in the registry: no gap for a duplicate.
            lock(&self.queued).remove(&key);
            if !started {
                self.queue_counters
                    .dropped_shutdown
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn retry_after(&self) -> Duration {
        self.settings.retry_after
    }

    pub(crate) fn background_stats(&self) -> BackgroundStats {
        BackgroundStats {
            queued: self.queue_counters.queued.load(Ordering::Relaxed),
            deduplicated: self.queue_counters.deduplicated.load(Ordering::Relaxed),
            dropped_queue_full: self
                .queue_counters
                .dropped_queue_full
                .load(Ordering::Relaxed),
            dropped_shutdown: self.queue_counters.dropped_shutdown.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn spool_stats(&self) -> SpoolStats {
        self.spools.stats()
    }

    /// Fills in flight now, of every kind (the slots of the bound in use).
    pub(crate) fn in_flight(&self) -> usize {
        self.max_fills()
            .saturating_sub(self.slots.available_permits())
    }

    async fn all_settled(&self, until: Instant) -> bool {
        loop {
            let notified = self.settled.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    // ----- shutdown -----

    pub(crate) async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.closing.store(true, Ordering::Release);
        let dropped_before = self.queue_counters.dropped_shutdown.load(Ordering::Relaxed);
        // Closing the queue lets the dispatcher drain it, dropping every job.
        lock(&self.queue).take();
        let pending = lock(&self.queued).len() as u64;
        lock(&self.queued).clear();
        let running = self.in_flight();
        let mut report = ShutdownReport {
            dropped_queued: pending.max(
                self.queue_counters
                    .dropped_shutdown
                    .load(Ordering::Relaxed)
                    .saturating_sub(dropped_before),
            ),
            ..ShutdownReport::default()
        };
        if self.all_settled(time::deadline(grace)).await {
            report.finished = running;
        } else {
            let late = self.in_flight();
            report.finished = running.saturating_sub(late);
            report.aborted = late;
            self.cancel.cancel();
            let fills: Vec<Arc<Fill>> = lock(&self.map).values().cloned().collect();
            for fill in &fills {
                fill.cancel();
            }
            // A cancelled fill aborts its write and ends promptly; do not hang on one whose
            // store does not answer.
            self.all_settled(time::deadline(SHUTDOWN_ABORT_WAIT)).await;
        }
        // Waiters for a slot (live requests, background jobs, warm-up) give up now.
        self.slots.close();
        self.background.close();
        report
    }
}

/// The remembered 404s: a map for lookups and the order they were remembered in (the TTL
/// is one for all, so that is also the order they expire in), so that making room is O(1)
/// per entry instead of a scan of the whole table under the lock.
#[derive(Default)]
struct Negative {
    until: HashMap<(Arc<str>, String), Instant>,
    order: VecDeque<((Arc<str>, String), Instant)>,
}

impl Negative {
    fn holds(&mut self, entry: &(Arc<str>, String)) -> bool {
        match self.until.get(entry) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.until.remove(entry);
                false
            }
            None => false,
        }
    }

    fn remember(&mut self, entry: (Arc<str>, String), until: Instant) {
        let now = Instant::now();
        // Forget what expired, then the oldest, until there is room.
        while let Some((oldest, expires)) = self.order.front() {
            if *expires > now
                && self.until.len() < MAX_NEGATIVE
                && self.order.len() < 2 * MAX_NEGATIVE
            {
                break;
            }
            if self.until.get(oldest) == Some(expires) {
                self.until.remove(oldest);
            }
            self.order.pop_front();
        }
        self.until.insert(entry.clone(), until);
        self.order.push_back((entry, until));
    }
}

/// How long shutdown waits for cancelled fills to abort their writes.
const SHUTDOWN_ABORT_WAIT: Duration = Duration::from_secs(10);

/// The async-mode queue holds at most this many jobs, whatever `background_queue` says
/// (tokio's channel refuses larger capacities).
pub(crate) const MAX_QUEUE: usize = 1 << 20;

enum Detached {
    Started(Arc<Fill>),
    InFlight(Arc<Fill>),
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{Origin, OriginRequest, OriginResponse};
    use crate::rule::{ClientDisconnect, FillChecks};

    /// An origin that never answers: the fill stays in flight until it is failed.
    #[derive(Debug)]
    struct Silent;

    impl Origin for Silent {
        fn fetch(
            &self,
            _: OriginRequest,
        ) -> BoxFuture<'static, Result<OriginResponse, crate::Error>> {
            futures::future::pending().boxed()
        }
    }

    fn spec() -> FillSpec {
        FillSpec {
            key: "k".to_owned(),
            rule: Arc::from("r"),
            origin: Arc::new(Silent),
            request: OriginRequest::new("k"),
            store: None,
            on_disconnect: ClientDisconnect::FinishFill,
            pinned: true,
            report: false,
            checks: FillChecks::default(),
        }
    }

    /// A fill started right after `ServeStore` looked skips its store re-check, unless a
    /// fill of the key committed lately (the look may have come during that commit).
    #[test]
    fn a_recent_commit_brings_the_re_check_back() {
        let fills = Fills::new(FillSettings::default(), Events::new(), Arc::default());
        let mut checked = spec();
        checked.checks.store_checked = true;
        assert!(fills.checked(checked.clone()).checks.store_checked);
        fills.committed("k");
        assert!(!fills.checked(checked.clone()).checks.store_checked);
        let mut other = checked.clone();
        other.key = "other".to_owned();
        assert!(fills.checked(other).checks.store_checked);
        // Bounded: past the bound the memory starts over.
        for i in 0..MAX_RECENT + 1 {
            fills.committed(&format!("k{i}"));
        }
        assert!(lock(&fills.recent).len() <= MAX_RECENT);
    }

    /// The default head timeout is the origin's attempt budget plus the store's margin; a
    /// configured one replaces it.
    #[test]
    fn the_head_timeout_covers_the_origins_attempt_budget() {
        let default = Fills::new(FillSettings::default(), Events::new(), Arc::default());
        assert_eq!(
            default.head_timeout(&spec()),
            Silent.attempt_budget() + STORE_MARGIN
        );
        let set = Fills::new(
            FillSettings {
                head_timeout: Some(Duration::from_secs(3)),
                ..FillSettings::default()
            },
            Events::new(),
            Arc::default(),
        );
        assert_eq!(set.head_timeout(&spec()), Duration::from_secs(3));
    }

    /// Invariant 8: a fill that has failed, even while its guard has not yet removed it
    /// from the map, is never joined; the next request starts a fresh one.
    #[tokio::test]
    async fn a_failed_fill_still_in_the_map_is_not_joined() {
        let fills = Arc::new(Fills::new(
            FillSettings::default(),
            Events::new(),
            Arc::default(),
        ));
        assert!(matches!(fills.join_or_start(spec()), Joined::Leader(_)));
        assert!(matches!(fills.join_or_start(spec()), Joined::Waiter(_)));
        let first = lock(&fills.map).get("k").cloned().unwrap();
        first.fail(crate::Error::FillAborted {
            key: "k".to_owned(),
            reason: "failed for the test",
        });
        assert!(
            matches!(fills.join_or_start(spec()), Joined::Leader(_)),
            "a fresh fill"
        );
        let now = lock(&fills.map).get("k").cloned().unwrap();
        assert!(!Arc::ptr_eq(&first, &now));
        fills.shutdown(Duration::ZERO).await;
    }

    #[test]
    fn the_remembered_404s_stay_bounded_and_make_room_without_a_scan() {
        let mut negative = Negative::default();
        let rule: Arc<str> = Arc::from("r");
        let later = time::deadline(Duration::from_secs(60));
        for i in 0..MAX_NEGATIVE + 10 {
            negative.remember((rule.clone(), format!("k{i}")), later);
        }
        assert_eq!(negative.until.len(), MAX_NEGATIVE);
        assert!(
            !negative.holds(&(rule.clone(), "k0".to_owned())),
            "the oldest made room"
        );
        assert!(negative.holds(&(rule.clone(), format!("k{}", MAX_NEGATIVE + 9))));
        // One key remembered again and again does not grow the order without bound.
        for _ in 0..3 * MAX_NEGATIVE {
            negative.remember((rule.clone(), "again".to_owned()), later);
        }
        assert!(negative.order.len() <= 2 * MAX_NEGATIVE);
        assert!(negative.holds(&(rule, "again".to_owned())));
    }
}
