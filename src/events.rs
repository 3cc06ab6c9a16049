//! Fill events: started, completed, failed — for notification (the FAQ's "how will I be
//! notified after the offline origin-pull succeeds") and for progress views.
//!
//! Events go out on a bounded broadcast channel ([`OriginPullHandle::subscribe`]): sending
//! never waits, so a slow subscriber can never slow a fill; it loses the oldest events instead
//! (and its receiver reports how many, as `RecvError::Lagged`).
//!
//! [`OriginPullHandle::subscribe`]: crate::OriginPullHandle::subscribe

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::store::Committed;

/// How many events a subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 4096;

/// Something that happened to a fill.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FillEvent {
    /// A fill began (one per fill, not per coalesced request).
    Started {
        /// The store key.
        key: String,
        /// The rule that matched.
        rule: Arc<str>,
        /// Whether it runs in the background (async mode, `HEAD`, ...) with no client reading.
        background: bool,
    },
    /// The object is in the store.
    Completed {
        /// The store key.
        key: String,
        /// The rule that matched.
        rule: Arc<str>,
        /// The object's size.
        bytes: u64,
        /// From the start of the fill to the commit.
        duration: Duration,
        /// The origin's `ETag`, if it sent one.
        origin_etag: Option<String>,
        /// Whether this fill wrote it, or found it already there.
        committed: Committed,
    },
    /// A refresh found the stored object current: the origin answered `304`
    /// (`asked_origin`), or it had been validated recently enough to not ask.
    Revalidated {
        /// The store key.
        key: String,
        /// The rule that matched.
        rule: Arc<str>,
        /// Whether the origin was asked.
        asked_origin: bool,
    },
    /// The origin does not have the object; nothing was stored.
    NotFound {
        /// The store key.
        key: String,
        /// The rule that matched.
        rule: Arc<str>,
    },
    /// The fill failed; nothing was stored.
    Failed {
        /// The store key.
        key: String,
        /// The rule that matched.
        rule: Arc<str>,
        /// What went wrong.
        reason: String,
    },
}

impl FillEvent {
    /// The store key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Started { key, .. }
            | Self::Completed { key, .. }
            | Self::NotFound { key, .. }
            | Self::Revalidated { key, .. }
            | Self::Failed { key, .. } => key,
        }
    }

    /// A short name for the kind of event: `started`, `completed`, `not_found`,
    /// `revalidated`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Completed { .. } => "completed",
            Self::NotFound { .. } => "not_found",
            Self::Revalidated { .. } => "revalidated",
            Self::Failed { .. } => "failed",
        }
    }
}

/// The sending side, shared by every fill of a layer.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<FillEvent>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    pub(crate) fn emit(&self, event: FillEvent) {
        // No subscriber is not an error; a full channel drops the oldest event.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<FillEvent> {
        self.tx.subscribe()
    }
}
