//! Where pulled objects are written.
//!
//! A [`Store`] opens a [`StoreWrite`] per object; bytes are written chunk by chunk and become
//! visible only on [`StoreWrite::commit`]. [`StoreWrite::abort`] (or dropping the writer)
//! leaves nothing behind. [`BucketStore`] implements this over any `object_store` backend.

mod bucket;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::Attributes;

pub use self::bucket::BucketStore;
use crate::Error;

/// How a committed write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Committed {
    /// The object was written by this fill.
    Written,
    /// Another writer stored the object first; it was left as it was.
    AlreadyExists,
}

/// A destination for pulled objects.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// Start writing the object at `key` (a clean key, as the client asked for it) with
    /// `attributes` kept from the origin's headers. Nothing is visible until commit.
    fn begin<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>>;
}

/// One object being written; see [`Store::begin`].
///
/// Dropping a writer without committing must abort it (as [`StoreWrite::abort`] does), so a
/// fill that is cancelled or panics leaves nothing partial behind.
pub trait StoreWrite: Send {
    /// Append a chunk. May wait (backpressure) while earlier chunks are being uploaded.
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), Error>>;

    /// Make the object visible, complete. On error nothing is visible.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<Committed, Error>>;

    /// Discard everything written so far.
    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<(), Error>>;
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn begin<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        (**self).begin(key, attributes)
    }
}
