//! A live view of a migration for people (feature `monitor`): a bounded history of the
//! layer's progress, the last failures, the keys most often missed, the warm-up's progress,
//! and the HTML page that shows them.
//!
//! [`Monitor::start`] samples [`OriginPullHandle::progress`] on a timer (never per request:
//! the hit path pays nothing for it) into a ring of at most
//! [`MonitorOptions::history`] samples, and reads the layer's [fill events](crate::events)
//! for the failures and the missed keys. [`Monitor::render_html`] is a self-contained page
//! (inline CSS and SVG, no script, no external asset, refreshing itself) with:
//!
//! - the share of requests served from the store, per sampling interval, and the bytes
//!   pulled, over time: two SVG charts of at most 60 points (more intervals are merged),
//!   whose lines carry their points' values as lists (`data-hits`, `data-requests`,
//!   `data-bytes`, `data-keys`);
//! - the counters now (requests, hits, keys and bytes pulled, fills in flight, failures);
//! - the last [`MonitorOptions::failures`] failed fills with their reasons;
//! - the [`MonitorOptions::top_missed`] keys whose misses started the most fills, counted
//!   by a fixed number of counters (the space-saving algorithm: memory stays bounded
//!   whatever the number of keys; a count may be over-estimated, never under-estimated);
//! - the warm-up's progress and ETA, as given to [`Monitor::record_warmup`].
//!
//! Memory is bounded by the options: a sample is 48 bytes; failures and missed keys keep at
//! most their number of keys and reasons. The tasks end when the last clone of the
//! [`Monitor`] is dropped.
//!
//! ```
//! # async fn run(layer: tower_origin_pull::OriginPullLayer) -> Result<(), tower_origin_pull::Error> {
//! use std::time::Duration;
//! use tower_origin_pull::monitor::{Monitor, MonitorOptions};
//!
//! let monitor = Monitor::start(
//!     layer.handle(),
//!     MonitorOptions::default().with_resolution(Duration::from_secs(10)),
//! )?;
//! let page: String = monitor.render_html();
//! assert!(page.starts_with("<!doctype html>"));
//! # Ok(()) }
//! ```

mod history;
mod page;
mod topk;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::events::FillEvent;
use crate::warmup::WarmupProgress;
use crate::{Error, OriginPullHandle};

use self::history::History;
use self::topk::TopK;

/// What a [`Monitor`] keeps, and how often it samples.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorOptions {
    /// How often the progress is sampled (default 60 s); the page refreshes itself at this
    /// pace too (between 5 s and 60 s).
    pub resolution: Duration,
    /// How many samples are kept (default 1,440: a day at 60 s), the oldest dropped first.
    pub history: usize,
    /// How many of the last failed fills are kept (default 10).
    pub failures: usize,
    /// How many of the most missed keys the page shows (default 10; 8 times as many are
    /// counted).
    pub top_missed: usize,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            resolution: Duration::from_secs(60),
            history: 1440,
            failures: 10,
            top_missed: 10,
        }
    }
}

impl MonitorOptions {
    /// Set [`resolution`](Self::resolution) (at least 10 ms).
    #[must_use]
    pub fn with_resolution(mut self, every: Duration) -> Self {
        self.resolution = every.max(Duration::from_millis(10));
        self
    }

    /// Set [`history`](Self::history) (at least 2).
    #[must_use]
    pub fn with_history(mut self, samples: usize) -> Self {
        self.history = samples.max(2);
        self
    }

    /// Set [`failures`](Self::failures).
    #[must_use]
    pub fn with_failures(mut self, kept: usize) -> Self {
        self.failures = kept;
        self
    }

    /// Set [`top_missed`](Self::top_missed).
    #[must_use]
    pub fn with_top_missed(mut self, keys: usize) -> Self {
        self.top_missed = keys;
        self
    }
}

/// A failed fill, as the page lists it.
#[derive(Debug, Clone)]
struct Failure {
    at: SystemTime,
    key: String,
    reason: String,
}

#[derive(Debug)]
struct State {
    history: History,
    failures: VecDeque<Failure>,
    missed: TopK,
    warmup: Option<WarmupProgress>,
    /// Events lost because the monitor fell behind the channel.
    lost_events: u64,
}

#[derive(Debug)]
struct Shared {
    handle: OriginPullHandle,
    options: MonitorOptions,
    state: Mutex<State>,
    /// Dropped with the last [`Monitor`]: its receivers end the tasks.
    _stop: watch::Sender<()>,
}

/// The live view of a layer; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl Monitor {
    /// Start sampling `handle`'s progress and reading its events, within the current Tokio
    /// runtime (an [`Error::Config`] outside one).
    pub fn start(
        handle: impl Into<OriginPullHandle>,
        options: MonitorOptions,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::config(format!("the monitor needs a Tokio runtime: {e}")))?;
        let handle = handle.into();
        let (stop, stopped) = watch::channel(());
        let events = handle.subscribe();
        let mut history = History::new(options.history);
        history.push(SystemTime::now(), &handle.progress());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history,
                failures: VecDeque::with_capacity(options.failures),
                missed: TopK::new(options.top_missed.saturating_mul(8)),
                warmup: None,
                lost_events: 0,
            }),
            handle,
            options,
            _stop: stop,
        });
        runtime.spawn(sample(Arc::downgrade(&shared), stopped.clone()));
        runtime.spawn(read_events(Arc::downgrade(&shared), events, stopped));
        Ok(Self { shared })
    }

    /// Show `progress` as the warm-up's (pass it from
    /// [`Warmup::run`](crate::warmup::Warmup::run)'s `on_progress`).
    pub fn record_warmup(&self, progress: &WarmupProgress) {
        self.shared.state().warmup = Some(progress.clone());
    }

    /// The page: see the [module docs](self).
    pub fn render_html(&self) -> String {
        let now = self.shared.handle.progress();
        let in_flight = now.fills_in_flight;
        let view = {
            let state = self.shared.state();
            page::View {
                now,
                in_flight,
                history: state.history.buckets(page::MAX_POINTS),
                failures: state.failures.iter().rev().cloned().collect(),
                missed: state.missed.top(self.shared.options.top_missed),
                warmup: state.warmup.clone(),
                lost_events: state.lost_events,
                refresh: self.shared.options.resolution,
            }
        };
        page::render(&view)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it cannot leave the state half-written in a way that
        // matters to a view: take it as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sample the progress every `resolution` until the monitor is dropped.
async fn sample(shared: Weak<Shared>, mut stopped: watch::Receiver<()>) {
    let Some(every) = shared.upgrade().map(|s| s.options.resolution) else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is now: the start's sample is taken
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let progress = shared.handle.progress();
        shared.state().history.push(SystemTime::now(), &progress);
    }
}

/// Keep the failures and the missed keys from the fill events until the monitor is dropped.
async fn read_events(
    shared: Weak<Shared>,
    mut events: broadcast::Receiver<FillEvent>,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stopped.changed() => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state();
        match event {
            Ok(FillEvent::Started { key, .. }) => state.missed.add(&key),
            Ok(FillEvent::Failed { key, reason, .. }) => {
                let kept = shared.options.failures;
                if kept == 0 {
                    continue;
                }
                if state.failures.len() >= kept {
                    state.failures.pop_front();
                }
                state.failures.push_back(Failure {
                    at: SystemTime::now(),
                    key,
                    reason,
                });
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => state.lost_events += n,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Monitor, MonitorOptions};
    use crate::OriginPullBuilder;

    fn layer() -> crate::OriginPullLayer {
        OriginPullBuilder::from_object_store(Arc::new(object_store::memory::InMemory::new()))
            .build()
    }

    /// Outside a runtime: an error, not a panic.
    #[test]
    fn start_needs_a_runtime() {
        let err = Monitor::start(&layer(), MonitorOptions::default()).unwrap_err();
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    /// Two tasks while a clone lives; none once the last is dropped.
    #[tokio::test(flavor = "current_thread")]
    async fn the_tasks_end_with_the_last_clone() {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let options = MonitorOptions::default().with_resolution(Duration::from_millis(10));
        let monitor = Monitor::start(&layer(), options).unwrap();
        let clone = monitor.clone();
        assert_eq!(alive(), 2);
        drop(monitor);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(alive(), 2);
        drop(clone);
        for _ in 0..100 {
            if alive() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(alive(), 0);
    }
}
