//! The in-flight registry: one fill per key, coalescing, remembered 404s, the background
//! queue of async mode, and shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::reader::Reader;
use super::shared::Fill;
use super::{FillSpec, task};
use crate::events::Events;
use crate::progress::Counters;

/// At most this many keys are remembered as missing at the origin.
const MAX_NEGATIVE: usize = 100_000;

/// Settings of the fill machinery; see the setters on [`OriginPullLayer`](crate::OriginPullLayer).
#[derive(Debug, Clone)]
pub(crate) struct FillSettings {
    pub(crate) window: usize,
    pub(crate) grace: Duration,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) queue: usize,
    pub(crate) concurrency: usize,
    pub(crate) max_fills: Option<usize>,
}

/// What a sync miss gets when [`OriginPullLayer::max_fills`](crate::OriginPullLayer::max_fills)
/// fills are already running (a request joining a fill in flight is never refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOverflow {
    /// Stream the object from the origin without storing it (`x-origin-pull: proxied`).
    Proxy,
    /// Answer `503 Service Unavailable` with `Retry-After` (whole seconds, at least 1).
    Unavailable(Duration),
}

impl Default for FillSettings {
    fn default() -> Self {
        Self {
            window: 4 * 1024 * 1024,
            grace: Duration::from_millis(250),
            negative_ttl: None,
            queue: 1024,
            concurrency: 4,
            max_fills: None,
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
    /// As many fills as allowed are running; this key has none.
    Full,
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

/// What [`OriginPullLayer::shutdown`](crate::OriginPullLayer::shutdown) did.
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
    negative: Mutex<HashMap<(Arc<str>, String), Instant>>,
    closing: AtomicBool,
    cancelling: AtomicBool,
    cancel: Notify,
    queue: Mutex<Option<mpsc::Sender<FillSpec>>>,
    queued: Mutex<HashSet<String>>,
    queue_counters: QueueCounters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fills {
    pub(crate) fn new(settings: FillSettings, events: Events, counters: Arc<Counters>) -> Self {
        Self {
            settings,
            events,
            counters,
            map: Mutex::default(),
            negative: Mutex::default(),
            closing: AtomicBool::new(false),
            cancelling: AtomicBool::new(false),
            cancel: Notify::new(),
            queue: Mutex::new(None),
            queued: Mutex::default(),
            queue_counters: QueueCounters::default(),
        }
    }

    fn new_fill(&self, spec: &FillSpec) -> Arc<Fill> {
        let grace = spec.store.as_ref().map(|_| self.settings.grace);
        Arc::new(Fill::new(
            spec.key.clone(),
            spec.store.clone(),
            self.settings.window,
            grace,
            spec.cancel_when_alone(),
        ))
    }

    fn spawn(self: &Arc<Self>, rt: &tokio::runtime::Handle, fill: Arc<Fill>, spec: FillSpec) {
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
        rt.spawn(task::run(self.clone(), fill, spec).instrument(span));
    }

    fn known_missing(&self, spec: &FillSpec) -> bool {
        if self.settings.negative_ttl.is_none() {
            return false;
        }
        let mut negative = lock(&self.negative);
        let entry = (spec.rule.clone(), spec.key.clone());
        match negative.get(&entry) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                negative.remove(&entry);
                false
            }
            None => false,
        }
    }

    /// Attach a reader to the fill of `spec.key`, starting the fill if there is none.
    pub(crate) fn join_or_start(self: &Arc<Self>, spec: FillSpec) -> Joined {
        if self.closing.load(Ordering::Acquire) {
            return Joined::Refused;
        }
        if self.known_missing(&spec) {
            return Joined::KnownMissing;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Joined::Refused;
        };
        let mut map = lock(&self.map);
        if let Some(fill) = map.get(&spec.key) {
            return Joined::Waiter(Reader::join(fill.clone()));
        }
        if self.settings.max_fills.is_some_and(|max| map.len() >= max) {
            return Joined::Full;
        }
        let fill = self.new_fill(&spec);
        let reader = Reader::join(fill.clone());
        map.insert(spec.key.clone(), fill.clone());
        self.counters.fills_in_flight(map.len());
        drop(map);
        self.spawn(&rt, fill, spec);
        Joined::Leader(reader)
    }

    /// Start a fill that is not shared with other requests (proxy mode).
    pub(crate) fn start_private(self: &Arc<Self>, spec: FillSpec) -> Option<Reader> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let fill = self.new_fill(&spec);
        let reader = Reader::join(fill.clone());
        self.spawn(&rt, fill, spec);
        Some(reader)
    }

    /// The fill in flight for `spec.key`, or a new one nobody reads (warm-up): `None` when
    /// shutting down or outside a runtime.
    pub(crate) fn ensure(self: &Arc<Self>, spec: FillSpec) -> Option<Arc<Fill>> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        if let Some(fill) = lock(&self.map).get(&spec.key) {
            return Some(fill.clone());
        }
        let key = spec.key.clone();
        // Lost a race with another starter: join theirs.
        self.start_detached(spec)
            .or_else(|| lock(&self.map).get(&key).cloned())
    }

    /// Start a fill nobody reads, unless one for the key is in flight.
    fn start_detached(self: &Arc<Self>, spec: FillSpec) -> Option<Arc<Fill>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let mut map = lock(&self.map);
        if map.contains_key(&spec.key) || self.closing.load(Ordering::Acquire) {
            return None;
        }
        let fill = self.new_fill(&spec);
        map.insert(spec.key.clone(), fill.clone());
        self.counters.fills_in_flight(map.len());
        drop(map);
        self.spawn(&rt, fill.clone(), spec);
        Some(fill)
    }

    /// Called by the fill task when its fill has ended.
    pub(crate) fn finished(&self, fill: &Arc<Fill>, rule: &Arc<str>, not_found: bool) {
        let mut map = lock(&self.map);
        if map.get(&fill.key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(&fill.key);
            self.counters.fills_in_flight(map.len());
        }
        drop(map);
        if let (true, Some(ttl)) = (not_found, self.settings.negative_ttl) {
            let mut negative = lock(&self.negative);
            let now = Instant::now();
            if negative.len() >= MAX_NEGATIVE {
                negative.retain(|_, until| *until > now);
            }
            if negative.len() < MAX_NEGATIVE {
                negative.insert((rule.clone(), fill.key.clone()), now + ttl);
            }
        }
    }

    /// Resolves once shutdown cancels the fills in flight.
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.cancel.notified();
            if self.cancelling.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    // ----- async mode -----

    /// Queue a background fill for `spec.key` unless one is queued or running.
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
        let (tx, rx) = mpsc::channel(self.settings.queue.max(1));
        rt.spawn(self.clone().dispatch(rx));
        *queue = Some(tx.clone());
        Some(tx)
    }

    /// Run queued fills, at most `concurrency` at a time.
    async fn dispatch(self: Arc<Self>, mut rx: mpsc::Receiver<FillSpec>) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        while let Some(spec) = rx.recv().await {
            let key = spec.key.clone();
            if self.closing.load(Ordering::Acquire) {
                lock(&self.queued).remove(&key);
                self.queue_counters
                    .dropped_shutdown
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let fill = self.start_detached(spec);
            // Removed only now that the fill is in the registry: no gap for a duplicate.
            lock(&self.queued).remove(&key);
            if let Some(fill) = fill {
                tokio::spawn(async move {
                    fill.wait_ended().await;
                    drop(permit);
                });
            }
        }
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

    /// Fills in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.map).len()
    }

    // ----- shutdown -----

    pub(crate) async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.closing.store(true, Ordering::Release);
        let dropped_before = self.queue_counters.dropped_shutdown.load(Ordering::Relaxed);
        // Closing the queue lets the dispatcher drain it, dropping every job.
        lock(&self.queue).take();
        let pending = lock(&self.queued).len() as u64;
        lock(&self.queued).clear();
        let fills: Vec<Arc<Fill>> = lock(&self.map).values().cloned().collect();
        let deadline = Instant::now() + grace;
        let mut report = ShutdownReport {
            dropped_queued: pending
                .max(self.queue_counters.dropped_shutdown.load(Ordering::Relaxed) - dropped_before),
            ..ShutdownReport::default()
        };
        let mut late = Vec::new();
        for fill in fills {
            if tokio::time::timeout_at(deadline, fill.wait_ended())
                .await
                .is_ok()
            {
                report.finished += 1;
            } else {
                late.push(fill);
            }
        }
        if !late.is_empty() {
            self.cancelling.store(true, Ordering::Release);
            self.cancel.notify_waiters();
            for fill in &late {
                fill.cancel();
            }
            for fill in &late {
                // A cancelled fill aborts its write and ends promptly; do not hang on one
                // whose store does not answer.
                let _ = tokio::time::timeout(Duration::from_secs(10), fill.wait_ended()).await;
            }
            report.aborted = late.len();
        }
        report
    }
}
