//! [`FillGuard`]: owns everything a fill's readers and the registry depend on, and settles it
//! in `Drop` — however the fill's task ends.
//!
//! The task returns normally (the event is set), returns an error, panics in user code or
//! ours (the supervisor catches the panic and names it), is aborted, or is dropped with its
//! runtime. In every case the guard's `Drop`:
//!
//! 1. ends the fill if it has not ended: every reader's head or body gets an error
//!    ([`Error::FillDied`]), never a clean short body, never a hang;
//! 2. removes the registry entry (so the next request for the key starts a fresh fill) and
//!    remembers an origin `404` when configured;
//! 3. releases the fill's slot of the bound (the permits are fields of the guard);
//! 4. counts the fill and sends its final event (`Completed`, `NotFound` or `Failed`);
//! 5. settles the fill's spool through (1): a fill that did not end well drops it at once
//!    (its readers get the error, not the spool's bytes); one that ended well keeps it
//!    only while a reader outside the window still reads it. The file was unlinked when it
//!    was created, so its bytes go with its last descriptor (see [`super::spool`]).
//!
//! The store write in flight is dropped with the task's state; [`BucketStore`]'s writer
//! aborts its upload when dropped, so nothing partial becomes visible.
//!
//! This is Pingora's cache-lock permit: its `Drop` releases every waiter with an explicit
//! state, so no exit path can strand them.
//!
//! [`BucketStore`]: crate::BucketStore

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::FillSpec;
use super::registry::Fills;
use super::shared::Fill;
use crate::Error;
use crate::events::FillEvent;

/// A fill's place in the bound: one permit of `max_fills`, and for background fills one of
/// the background share too. Released when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _share: Option<OwnedSemaphorePermit>,
}

impl Slot {
    pub(crate) fn live(permit: OwnedSemaphorePermit) -> Self {
        Self {
            _permit: permit,
            _share: None,
        }
    }

    pub(crate) fn background(permit: OwnedSemaphorePermit, share: OwnedSemaphorePermit) -> Self {
        Self {
            _permit: permit,
            _share: Some(share),
        }
    }
}

/// See the [module docs](self).
pub(crate) struct FillGuard {
    pub(crate) fills: Arc<Fills>,
    pub(crate) fill: Arc<Fill>,
    rule: Arc<str>,
    report: bool,
    /// Whether the fill is in the registry's map (shared), or private to one request.
    shared: bool,
    pub(crate) started: Instant,
    /// The fill's final event, set by the task when it ends on its own.
    event: Option<FillEvent>,
    /// How the task died, when it did not end on its own.
    died: Option<String>,
    slot: Option<Slot>,
}

impl FillGuard {
    pub(crate) fn new(
        fills: Arc<Fills>,
        fill: Arc<Fill>,
        spec: &FillSpec,
        slot: Slot,
        shared: bool,
    ) -> Self {
        Self {
            fills,
            fill,
            rule: spec.rule.clone(),
            report: spec.report,
            shared,
            started: Instant::now(),
            event: None,
            died: None,
            slot: Some(slot),
        }
    }

    /// The task ended on its own with this event.
    pub(crate) fn ended(&mut self, event: FillEvent) {
        self.event = Some(event);
    }

    /// The task panicked with this message.
    pub(crate) fn panicked(&mut self, message: String) {
        self.died = Some(format!("panicked: {message}"));
    }

    fn settle(&mut self) -> FillEvent {
        if let Some(event) = self.event.take() {
            return event;
        }
        let message = self.died.take().unwrap_or_else(|| {
            "its task was dropped before the fill ended (aborted, or the runtime shut down)"
                .to_owned()
        });
        let error = Error::FillDied {
            key: self.fill.key.clone(),
            message,
        };
        let reason = error.to_string();
        // A no-op if the fill ended (its outcome stands); otherwise every reader is woken
        // with the error.
        self.fill.fail(error);
        FillEvent::Failed {
            key: self.fill.key.clone(),
            rule: self.rule.clone(),
            reason,
        }
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let event = self.settle();
        // Whatever happened, no reader may still wait on this fill.
        self.fill.fail(Error::FillDied {
            key: self.fill.key.clone(),
            message: "the fill ended without settling its readers".to_owned(),
        });
        match &event {
            FillEvent::Completed {
                bytes,
                duration,
                committed,
                ..
            } => tracing::info!(bytes, ?duration, ?committed, "fill complete"),
            FillEvent::NotFound { .. } => tracing::debug!("origin does not have the object"),
            // A proxied response (nothing to store by design) is not a failed fill.
            FillEvent::Failed { reason, .. } if !self.report => tracing::debug!(%reason, "proxied"),
            FillEvent::Failed { reason, .. } => {
                tracing::warn!(%reason, "fill failed; nothing stored");
            }
            FillEvent::Revalidated { asked_origin, .. } => {
                tracing::debug!(asked_origin, "stored object still current");
            }
            FillEvent::Started { .. } => {}
        }
        let not_found = matches!(event, FillEvent::NotFound { .. });
        if self.report {
            match &event {
                FillEvent::Completed {
                    bytes,
                    duration,
                    committed,
                    ..
                } => {
                    self.fills.counters.fill_completed(*bytes, *duration);
                    if *committed == crate::Committed::Refreshed {
                        self.fills.counters.refreshed();
                    }
                }
                FillEvent::NotFound { .. } => self.fills.counters.fill_not_found(),
                // A refresh that asked the origin and found the object current.
                FillEvent::Revalidated { asked_origin, .. } => {
                    if *asked_origin {
                        self.fills.counters.refreshed();
                    }
                }
                _ => self.fills.counters.fill_failed(&event),
            }
        }
        self.fills
            .finished(&self.fill, &self.rule, self.shared, not_found);
        drop(self.slot.take());
        self.fills.released();
        if self.report {
            self.fills.events.emit(event);
        }
    }
}
