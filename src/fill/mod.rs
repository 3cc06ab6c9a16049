//! The fill: check the store again → fetch from the origin → verify → tee to the readers and
//! the store → commit or abort.
//!
//! A fill runs as its own Tokio task ([`task`]); requests only *read* it ([`reader`]). So a
//! client that disconnects cannot cancel the write-back by accident (the rule's
//! [`ClientDisconnect`] policy decides, and only once the last reader is gone), coalescing is
//! "one more reader of the same fill" ([`registry`]), an async-mode fill is a fill with no
//! reader, and a failure has exactly one place where it becomes "every reader sees an error"
//! and "the store write is aborted".
//!
//! Memory per fill is bounded whatever the object size and the number of readers: the
//! shared window ([`shared`], 4 MiB by default) plus what the [`Store`] buffers (for
//! [`BucketStore`](crate::BucketStore): at most 24 MiB with its defaults), plus for each
//! reader outside the window one spool read ([`spool::READ_BUFFER`], 128 KiB). Disk: the
//! [`spool`]s of all fills together hold at most `spool_max_bytes`.

mod guard;
pub(crate) mod meta;
pub(crate) mod reader;
pub(crate) mod registry;
pub(crate) mod shared;
pub(crate) mod spool;
mod task;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::origin::{Origin, OriginRequest};
use crate::rule::{ClientDisconnect, FillChecks};
use crate::store::Store;

/// Everything a fill needs, decided by the service from the request and the matched rule.
#[derive(Clone)]
pub(crate) struct FillSpec {
    pub(crate) key: String,
    pub(crate) rule: Arc<str>,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) request: OriginRequest,
    /// Where to write; `None` streams without storing (proxy mode).
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) on_disconnect: ClientDisconnect,
    /// Finish the fill even with no reader (async mode, `HEAD`).
    pub(crate) pinned: bool,
    /// Send fill events for it.
    pub(crate) report: bool,
    /// Checksums, size limit, statuses passed through.
    pub(crate) checks: FillChecks,
}

impl FillSpec {
    fn cancel_when_alone(&self) -> bool {
        !self.pinned && (self.store.is_none() || self.on_disconnect == ClientDisconnect::CancelFill)
    }
}

/// What a fill's task needs besides its spec: how long its steps may take and when to stop.
/// The task gets this, not the registry: only the fill's guard talks to the registry.
#[derive(Clone)]
pub(crate) struct Limits {
    pub(crate) cancel: Arc<Cancel>,
    /// How long everything up to the head may take.
    pub(crate) head_timeout: Duration,
    /// How long any one later step may take.
    pub(crate) stall_timeout: Duration,
    /// Where the fill spools its bytes (shared fills only; `None`: no spool).
    pub(crate) spools: Option<Arc<spool::Spools>>,
}

impl Limits {
    /// Resolves once shutdown cancels the fills in flight.
    pub(crate) async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Shutdown's signal to every fill in flight.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}
