//! Where pulled objects are written.
//!
//! A [`Store`] opens a [`StoreWrite`] per object; bytes are written chunk by chunk and become
//! visible only on [`StoreWrite::commit`]. [`StoreWrite::abort`] (or dropping the writer)
//! leaves nothing behind. [`BucketStore`] implements this over any `object_store` backend.

pub(crate) mod bucket;
pub(crate) mod local;
pub(crate) mod sidecar;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::Attributes;

pub use self::bucket::{BucketStore, TOMBSTONE_PREFIX};
pub use self::local::StagingFile;
pub use self::sidecar::META_PREFIX;

use crate::Error;

/// How a committed write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Committed {
    /// The object was written by this fill.
    Written,
    /// Another writer stored the object first; it was left as it was.
    AlreadyExists,
    /// A refresh replaced the stored object with the origin's new version.
    Refreshed,
}

/// What a refresh needs to know about a stored object (see [`Store::validation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Validation {
    /// When the object was last known to match its origin: stored, or revalidated since.
    pub validated_at: std::time::SystemTime,
    /// The origin's `ETag` kept with the object, if any.
    pub etag: Option<String>,
    /// The origin's `Last-Modified` kept with the object, if any.
    pub last_modified: Option<String>,
}

/// A stored object being read back (see [`Store::read`]).
#[non_exhaustive]
pub struct StoredObject {
    /// The object's full size in bytes (not only the part being read).
    pub size: u64,
    /// The attributes stored with the object.
    pub attributes: Attributes,
    /// The store's entity tag for the object, if it has one.
    pub e_tag: Option<String>,
    /// The bytes from the requested offset to the end.
    pub body: BoxStream<'static, Result<Bytes, Error>>,
}

impl StoredObject {
    /// An object read from its parts.
    pub fn new(
        size: u64,
        attributes: Attributes,
        e_tag: Option<String>,
        body: BoxStream<'static, Result<Bytes, Error>>,
    ) -> Self {
        Self {
            size,
            attributes,
            e_tag,
            body,
        }
    }
}

impl fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredObject")
            .field("size", &self.size)
            .field("attributes", &self.attributes)
            .field("e_tag", &self.e_tag)
            .finish_non_exhaustive()
    }
}

/// A destination for pulled objects.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// Read the object at `key` from byte `offset` (less than its size, or 0) to the end;
    /// `Ok(None)` if there is no such object.
    ///
    /// Used to check the store once more before pulling (the object may have landed since
    /// the inner service looked), and to serve readers of a fill who fell too far behind it
    /// once the object is committed.
    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<StoredObject>, Error>>;

    /// Whether `key` was deleted on purpose (a tombstone): such keys are not pulled back.
    /// The default store has no tombstones.
    fn is_deleted<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let _ = key;
        Box::pin(futures::future::ready(Ok(false)))
    }

    /// Delete the object at `key` and, where the store keeps tombstones, mark it deleted so
    /// that misses for it are not pulled again; `deleted = false` removes the mark.
    fn set_deleted<'a>(&'a self, key: &'a str, deleted: bool) -> BoxFuture<'a, Result<(), Error>> {
        let _ = deleted;
        Box::pin(futures::future::ready(Err(Error::store_write(
            key,
            "this store keeps no tombstones",
        ))))
    }

    /// Remove the object at `key` and whatever the store keeps beside it, leaving no
    /// tombstone (a purge: misses for it are pulled again). A missing object is not an
    /// error. The default store cannot remove objects and says so.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(futures::future::ready(Err(Error::store_write(
            key,
            "this store cannot remove objects",
        ))))
    }

    /// The keys of the objects whose key starts with `prefix` (a plain string prefix, not
    /// only whole path segments), without the store's own bookkeeping. The default store
    /// cannot list and says so.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<String, Error>> {
        Box::pin(futures::stream::once(futures::future::ready(Err(
            Error::store_read(prefix, "this store cannot list its objects"),
        ))))
    }

    /// When `key` was last validated against its origin and the validators kept with it;
    /// `Ok(None)` if there is no such object. The default store cannot refresh objects.
    fn validation<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Validation>, Error>> {
        Box::pin(futures::future::ready(Err(Error::store_read(
            key,
            "this store cannot refresh objects",
        ))))
    }

    /// Record that `key` was validated against its origin at `at` (its bytes unchanged).
    fn set_validated<'a>(
        &'a self,
        key: &'a str,
        at: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = at;
        Box::pin(futures::future::ready(Err(Error::store_write(
            key,
            "this store cannot refresh objects",
        ))))
    }

    /// Start writing a new version of the object at `key`, replacing the stored one
    /// atomically on commit (which answers [`Committed::Refreshed`]); see [`Store::begin`].
    /// The default store cannot replace objects.
    fn begin_replace<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        let _ = attributes;
        Box::pin(futures::future::ready(Err(Error::store_write(
            key,
            "this store cannot replace objects",
        ))))
    }

    /// Whether objects keep the `attributes` given to [`Store::begin`] — Content-Type,
    /// Content-Disposition and the metadata that carries `X-Content-Type-Options` and
    /// `Content-Security-Policy` — so that what serves them later can send them back.
    ///
    /// A store that answers `false` keeps the bytes only; whatever serves it (`ServeDir`, a
    /// web server over a directory) types the object by its key's extension and sends none of
    /// the origin's safety headers, so an object whose type would change that way, or that
    /// came with such headers, is not stored there. The default is `true`: a store that drops
    /// attributes must say so.
    fn keeps_attributes(&self) -> bool {
        true
    }

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

    /// The local file this write keeps its bytes in before the commit, if it has one that
    /// can be read while it is written: from this call on, the writer writes its bytes
    /// there as they come, in batches of at most `batch` bytes, rather than gathering a
    /// small object whole, and a fill's readers outside its in-memory window read that file
    /// instead of a spool of the fill's own. The default is `None` (the fill spools if it
    /// needs to).
    fn staging(&mut self, batch: usize) -> Option<StagingFile> {
        let _ = batch;
        None
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn is_deleted<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        (**self).is_deleted(key)
    }

    fn set_deleted<'a>(&'a self, key: &'a str, deleted: bool) -> BoxFuture<'a, Result<(), Error>> {
        (**self).set_deleted(key, deleted)
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<StoredObject>, Error>> {
        (**self).read(key, offset)
    }

    fn keeps_attributes(&self) -> bool {
        (**self).keeps_attributes()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        (**self).remove(key)
    }

    fn validation<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Validation>, Error>> {
        (**self).validation(key)
    }

    fn set_validated<'a>(
        &'a self,
        key: &'a str,
        at: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), Error>> {
        (**self).set_validated(key, at)
    }

    fn begin_replace<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        (**self).begin_replace(key, attributes)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<String, Error>> {
        (**self).list(prefix)
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        (**self).begin(key, attributes)
    }
}
