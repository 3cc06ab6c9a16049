//! [`OriginPullHandle`]: the live operations of a built layer — events, progress, deletes,
//! shutdown, warm-up — shared by every clone of the layer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::engine::Engine;
use crate::events::FillEvent;
use crate::fill::registry::{BackgroundStats, ShutdownReport};
use crate::fill::spool::SpoolStats;
use crate::progress::Progress;

/// The live state of an [`OriginPullLayer`](crate::OriginPullLayer), from
/// [`OriginPullLayer::handle`](crate::OriginPullLayer::handle). Cheap to clone; every handle
/// of a layer and of its clones acts on the same fills, counters and events.
#[derive(Clone)]
pub struct OriginPullHandle {
    engine: Arc<Engine>,
}

impl fmt::Debug for OriginPullHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginPullHandle")
            .field("fills_in_flight", &self.fills_in_flight())
            .finish_non_exhaustive()
    }
}

impl OriginPullHandle {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Receive an event when a fill starts, completes, finds nothing, or fails.
    ///
    /// Sending never waits for a subscriber: one that falls more than
    /// [`EVENT_CAPACITY`](crate::events::EVENT_CAPACITY) events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<FillEvent> {
        self.engine.events.subscribe()
    }

    /// How much was served from the store versus pulled, since the layer was built.
    pub fn progress(&self) -> Progress {
        self.engine.counters.snapshot(self.engine.fills.in_flight())
    }

    /// Delete `key` from the store and leave a tombstone so that misses for it are not
    /// pulled back from the origin (the store must keep tombstones, see
    /// [`BucketStore::with_tombstones`](crate::BucketStore::with_tombstones)).
    ///
    /// A fill of `key` in flight is cancelled first (its write is aborted), so it cannot
    /// write the object back after the delete.
    pub async fn delete(&self, key: &str) -> Result<(), crate::Error> {
        self.engine.fills.cancel_key(key);
        self.engine.store.set_deleted(key, true).await
    }

    /// Purge `key`: remove it from the store, with what is kept beside it, and leave no
    /// tombstone, so the next miss pulls it again (a purge is not a [`delete`](Self::delete)).
    /// A fill of `key` in flight is cancelled first, so it cannot write the old object back.
    /// To pull it again at once, hand the key to [`Warmup`](crate::warmup::Warmup).
    pub async fn purge(&self, key: &str) -> Result<(), crate::Error> {
        if !crate::key::is_clean(key) {
            return Err(crate::Error::config(format!("{key:?} is not a clean key")));
        }
        self.engine.fills.cancel_key(key);
        self.engine.store.remove(key).await
    }

    /// Purge every stored key that starts with `prefix` (a plain string prefix; `""` is the
    /// whole store), as [`purge`](Self::purge) does one, and return the keys purged. On an
    /// error the keys before it are purged, the rest are not.
    pub async fn purge_prefix(&self, prefix: &str) -> Result<Vec<String>, crate::Error> {
        use futures::TryStreamExt;
        let keys: Vec<String> = self.engine.store.list(prefix).try_collect().await?;
        for key in &keys {
            self.engine.fills.cancel_key(key);
            self.engine.store.remove(key).await?;
        }
        Ok(keys)
    }

    /// Remove `key`'s tombstone: misses for it are pulled again.
    pub async fn undelete(&self, key: &str) -> Result<(), crate::Error> {
        self.engine.store.set_deleted(key, false).await
    }

    /// Counters of the async-mode background queue.
    pub fn background_stats(&self) -> BackgroundStats {
        self.engine.fills.background_stats()
    }

    /// Counters of the fills' spools (fills spooled, bytes on disk now, fallbacks past
    /// `spool_max_bytes` or on an IO error, reads served from a spool) and of ranged misses
    /// under [`RangeMiss::JoinFill`](crate::RangeMiss::JoinFill) (joined or proxied).
    pub fn spool_stats(&self) -> SpoolStats {
        self.engine.fills.spool_stats()
    }

    /// Fills in flight right now, of every kind (the slots of `max_fills` in use).
    pub fn fills_in_flight(&self) -> usize {
        self.engine.fills.in_flight()
    }

    /// Stop starting fills, give the ones in flight `grace` to finish, then cancel the rest
    /// (their writes are aborted: nothing partial is left in the store). Queued async-mode
    /// fills that have not started are dropped. Requests arriving afterwards get the inner
    /// service's response untouched. Acts on the fills started through every clone of the
    /// layer.
    pub fn shutdown(&self, grace: Duration) -> impl Future<Output = ShutdownReport> + Send + use<> {
        let fills = self.engine.fills.clone();
        async move { fills.shutdown(grace).await }
    }
}

impl From<&crate::OriginPullLayer> for OriginPullHandle {
    fn from(layer: &crate::OriginPullLayer) -> Self {
        layer.handle()
    }
}

impl From<&OriginPullHandle> for OriginPullHandle {
    fn from(handle: &OriginPullHandle) -> Self {
        handle.clone()
    }
}
