//! [`BucketStore`]: a [`Store`] over any `object_store` backend.
//!
//! Memory per write is bounded whatever the object size: an object is buffered until it
//! reaches `multipart_threshold`; a smaller one is written with one `put_opts`
//! (`PutMode::Create`, so an object that appeared meanwhile is kept, not clobbered); a larger
//! one becomes a multipart upload with at most `max_concurrent_parts` parts of `part_size`
//! in flight plus one part being filled. With the defaults (8 MiB, 8 MiB, 2) that is at most
//! 24 MiB per write.
//!
//! Both paths are atomic: `put_opts` is all-or-nothing, and a multipart upload is visible
//! only after `complete`; any failure, an explicit abort, or dropping the writer aborts it
//! (on `LocalFileSystem` that removes the staging file; on S3 it aborts the upload).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutPayloadMut,
};
use tokio::task::JoinSet;

use super::{Committed, Store, StoreWrite, StoredObject, Validation, sidecar};
use crate::Error;

/// A [`Store`] writing into an `Arc<dyn ObjectStore>`, optionally below a prefix.
///
/// Backends that reject object attributes (such as `LocalFileSystem`) still get the bytes:
/// the first `NotImplemented` answer turns attributes off for this store. Likewise for
/// `PutMode::Create` on backends without conditional writes.
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use tower_origin_pull::BucketStore;
///
/// let store = BucketStore::new(Arc::new(InMemory::new()))
///     .with_prefix("mirror".into())
///     .with_part_size(16 * 1024 * 1024);
/// ```
#[derive(Clone)]
pub struct BucketStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    multipart_threshold: usize,
    part_size: usize,
    max_concurrent_parts: usize,
    tombstones: bool,
    support: Arc<Support>,
    /// The directory of a local-disk backend, whose keys obey a file system's rules.
    local_root: Option<Arc<PathBuf>>,
    /// The directory of a bare `LocalFileSystem` (recognised, not declared), written with
    /// plain file IO ([`super::local`]).
    direct: Option<Arc<PathBuf>>,
}

/// Where tombstones live, below the store's prefix: `<prefix>/.origin-pull-tombstones/<key>`.
pub const TOMBSTONE_PREFIX: &str = ".origin-pull-tombstones";

/// What the backend turned out not to implement, learned from its answers.
#[derive(Debug)]
struct Support {
    attributes: AtomicBool,
    create: AtomicBool,
}

impl fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketStore")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("max_concurrent_parts", &self.max_concurrent_parts)
            .field("support", &self.support)
            .field("local_root", &self.local_root)
            .field("direct", &self.direct)
            .finish()
    }
}

impl BucketStore {
    /// Write into `store` at the root, with 8 MiB parts above an 8 MiB threshold.
    ///
    /// A `LocalFileSystem` is recognised by its `Display` (`LocalFileSystem(file:///root/)`)
    /// and gets the local-disk key checks of [`with_local_root`](Self::with_local_root).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let local_root = local_root(&*store).map(Arc::new);
        Self {
            direct: local_root.clone().filter(|_| cfg!(unix)),
            local_root,
            store,
            prefix: Path::default(),
            multipart_threshold: 8 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            max_concurrent_parts: 2,
            tombstones: false,
            support: Arc::new(Support {
                attributes: AtomicBool::new(true),
                create: AtomicBool::new(true),
            }),
        }
    }

    /// Store key `k` at `prefix/k`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: Path) -> Self {
        self.prefix = prefix;
        self
    }

    /// Objects of at least this many bytes are written as multipart uploads (default 8 MiB).
    #[must_use]
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes.max(1);
        self
    }

    /// The size of each multipart part but the last (default 8 MiB; S3 needs at least 5 MiB).
    #[must_use]
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// How many parts may upload at once before writing waits (default 2).
    #[must_use]
    pub fn with_max_concurrent_parts(mut self, parts: usize) -> Self {
        self.max_concurrent_parts = parts.max(1);
        self
    }

    /// The backend keeps its objects as files below `root` (a `LocalFileSystem`, perhaps
    /// inside a wrapper that hides it; a bare `LocalFileSystem` is recognised without this).
    ///
    /// A file system cannot hold every key an object store can: `a` and `a/b` cannot both be
    /// files, and `LocalFileSystem` reserves names ending in `#<digits>` for its staging
    /// files. For such a key — a key whose path is a directory of other keys, a key below a
    /// key that is a file, a staging name — [`Store::begin`] answers
    /// [`Error::Unstorable`], so the fill streams the object to its readers without storing
    /// it, and reads of it are misses; nothing becomes a `500`.
    #[must_use]
    pub fn with_local_root(mut self, root: impl Into<PathBuf>) -> Self {
        let root = Arc::new(root.into());
        if self.direct.as_ref().is_some_and(|direct| *direct != root) {
            // Declared elsewhere than recognised: write through object_store.
            self.direct = None;
        }
        self.local_root = Some(root);
        self
    }

    /// Whether `e`, from reading `key` of a `LocalFileSystem`, means the key cannot be there
    /// (a path through a file: `ENOTDIR`; a directory: `EISDIR`; a staging name): a miss.
    pub(crate) fn is_local_miss(e: &object_store::Error, key: &str) -> bool {
        let object_store::Error::Generic { store, source } = e else {
            return false;
        };
        if *store != "LocalFileSystem" {
            return false;
        }
        if key.rsplit('/').next().is_some_and(is_staging_name) {
            return true;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if is_not_a_file(io) {
                    return true;
                }
            }
            cause = e.source();
        }
        false
    }

    /// Why a local-disk backend cannot hold `location`, if it cannot (blocking: looks at
    /// the file system).
    pub(crate) fn local_conflict(root: &std::path::Path, location: &Path) -> Option<String> {
        let parts: Vec<_> = location.parts().collect();
        if parts.last().is_some_and(|p| is_staging_name(p.as_ref())) {
            return Some("a name ending in #<digits> is a staging file on a local disk".into());
        }
        let mut path = root.to_path_buf();
        let mut prefix = String::new();
        for (i, part) in parts.iter().enumerate() {
            path.push(part.as_ref());
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(part.as_ref());
            let last = i + 1 == parts.len();
            match std::fs::metadata(&path) {
                Ok(m) if last && m.is_dir() => {
                    return Some("it is a directory of other keys on a local disk".into());
                }
                Ok(m) if !last && !m.is_dir() => {
                    return Some(format!(
                        "{prefix:?} is a file on a local disk, not a directory"
                    ));
                }
                Ok(_) => {}
                // Nothing further down exists: the write creates what it needs.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) if is_not_a_file(&e) => {
                    return Some(format!("the local disk refuses the path: {e}"));
                }
                // Anything else is for the write itself to report.
                Err(_) => return None,
            }
        }
        None
    }

    /// Keep tombstones (default off): [`Store::set_deleted`] deletes an object and leaves an
    /// empty marker at `.origin-pull-tombstones/<key>` (below the prefix), and a key with a
    /// marker is never pulled back. Costs one extra store lookup per miss. Keys under the
    /// marker prefix are then never pulled.
    #[must_use]
    pub fn with_tombstones(mut self, yes: bool) -> Self {
        self.tombstones = yes;
        self
    }

    fn tombstone(&self, key: &str) -> Result<Path, Error> {
        self.location(&format!("{TOMBSTONE_PREFIX}/{key}"))
    }

    /// Delete the object at `key` and the metadata kept beside it, if any; a missing
    /// object is not an error.
    pub(crate) async fn remove(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&self.location(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store_write(key, e)),
        }
        let beside = [
            sidecar::location(&self.prefix, key),
            sidecar::validated_location(&self.prefix, key),
        ];
        for at in beside.into_iter().flatten() {
            sidecar::remove(&*self.store, &at)
                .await
                .map_err(|e| Error::store_write(key, e))?;
        }
        Ok(())
    }

    /// The backend written to.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where `key` is stored in the backend (the prefix joined with the key).
    pub fn location(&self, key: &str) -> Result<Path, Error> {
        let full = if self.prefix.as_ref().is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| Error::store_read(key, e))
    }
}

impl Store for BucketStore {
    fn is_deleted<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        async move {
            if !self.tombstones {
                return Ok(false);
            }
            if key.split('/').next() == Some(TOMBSTONE_PREFIX) {
                return Ok(true); // the markers themselves are never pulled
            }
            match self.store.head(&self.tombstone(key)?).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(Error::store_read(key, e)),
            }
        }
        .boxed()
    }

    fn set_deleted<'a>(&'a self, key: &'a str, deleted: bool) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            if !self.tombstones {
                return Err(Error::store_write(key, "tombstones are off for this store"));
            }
            let marker = self.tombstone(key)?;
            if deleted {
                self.store
                    .put(&marker, PutPayload::default())
                    .await
                    .map_err(|e| Error::store_write(key, e))?;
                self.remove(key).await
            } else {
                match self.store.delete(&marker).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(Error::store_write(key, e)),
                }
            }
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Option<StoredObject>, Error>> {
        async move {
            let location = self.location(key)?;
            let mut options = GetOptions::default();
            if offset > 0 {
                options.range = Some(GetRange::Offset(offset));
            }
            let result = match self.store.get_opts(&location, options).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) if Self::is_local_miss(&e, key) => return Ok(None),
                Err(e) => return Err(Error::store_read(key, e)),
            };
            let size = result.meta.size;
            let e_tag = result.meta.e_tag.clone();
            let mut attributes = result.attributes.clone();
            if !self.keeps_attributes() {
                if let Some(at) = sidecar::location(&self.prefix, key) {
                    attributes = sidecar::read(&*self.store, &at, size).await;
                }
            }
            let owned_key = key.to_owned();
            let body = result
                .into_stream()
                .map_err(move |e| Error::store_read(&owned_key, e))
                .boxed();
            Ok(Some(StoredObject::new(size, attributes, e_tag, body)))
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        BucketStore::remove(self, key).boxed()
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<String, Error>> {
        // object_store lists whole path segments: list the last whole segment's directory
        // and keep the keys that start with the rest.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let below = if dir.is_empty() {
            (!self.prefix.as_ref().is_empty()).then(|| self.prefix.clone())
        } else {
            self.location(dir).ok()
        };
        let strip = if self.prefix.as_ref().is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.store
            .list(below.as_ref())
            .map(move |meta| {
                let meta = meta.map_err(|e| Error::store_read(prefix, e))?;
                Ok(meta
                    .location
                    .as_ref()
                    .strip_prefix(&strip)
                    .map(str::to_owned))
            })
            .try_filter_map(move |key| {
                let keep = key.filter(|k| k.starts_with(prefix) && !sidecar::reserved(k));
                futures::future::ready(Ok(keep))
            })
            .boxed()
    }

    /// `false` for a `LocalFileSystem`, known up front by its `Display`
    /// (`LocalFileSystem(<root>)`, also inside wrappers that show their inner store), and
    /// once the backend has refused attributes (`NotImplemented`) — for a backend that hides
    /// what it is (a `PrefixStore` shows no inner store), only from then on.
    fn keeps_attributes(&self) -> bool {
        self.support.attributes.load(Ordering::Relaxed)
            && !self.store.to_string().contains("LocalFileSystem(")
    }

    fn begin<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        self.start_write(key, attributes, false).boxed()
    }

    fn begin_replace<'a>(
        &'a self,
        key: &'a str,
        attributes: Attributes,
    ) -> BoxFuture<'a, Result<Box<dyn StoreWrite>, Error>> {
        self.start_write(key, attributes, true).boxed()
    }

    fn validation<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Validation>, Error>> {
        async move {
            let location = self.location(key)?;
            let head = GetOptions {
                head: true,
                ..GetOptions::default()
            };
            let result = match self.store.get_opts(&location, head).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) if Self::is_local_miss(&e, key) => return Ok(None),
                Err(e) => return Err(Error::store_read(key, e)),
            };
            let size = result.meta.size;
            let mut attributes = result.attributes.clone();
            if !self.keeps_attributes() {
                if let Some(at) = sidecar::location(&self.prefix, key) {
                    attributes = sidecar::read(&*self.store, &at, size).await;
                }
            }
            let mut validated_at = std::time::SystemTime::from(result.meta.last_modified);
            if let Some(at) = sidecar::validated_location(&self.prefix, key) {
                if let Some(marked) = sidecar::read_time(&*self.store, &at).await {
                    validated_at = validated_at.max(marked);
                }
            }
            let meta = |name: &str| {
                attributes
                    .get(&object_store::Attribute::Metadata(name.to_owned().into()))
                    .map(|v| v.to_string())
            };
            Ok(Some(Validation {
                validated_at,
                etag: meta(crate::fill::meta::ETAG_META),
                last_modified: meta(crate::fill::meta::LAST_MODIFIED_META),
            }))
        }
        .boxed()
    }

    fn set_validated<'a>(
        &'a self,
        key: &'a str,
        at: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let Some(marker) = sidecar::validated_location(&self.prefix, key) else {
                return Err(Error::store_write(
                    key,
                    "no place for its validation marker",
                ));
            };
            sidecar::write_time(&*self.store, &marker, at)
                .await
                .map_err(|e| Error::store_write(key, e))
        }
        .boxed()
    }
}

impl BucketStore {
    /// A writer for `key`: create-only, or (`replace`) replacing what is stored.
    async fn start_write(
        &self,
        key: &str,
        attributes: Attributes,
        replace: bool,
    ) -> Result<Box<dyn StoreWrite>, Error> {
        {
            let location = self.location(key)?;
            if let Some(root) = self.direct.clone() {
                // The key check runs with the first write to disk (no hand-off before the
                // head; see `super::local`).
                let meta = sidecar::location(&self.prefix, key);
                let target = super::local::Target {
                    root,
                    location,
                    meta,
                };
                return Ok(Box::new(BucketWrite {
                    bucket: self.clone(),
                    key: key.to_owned(),
                    location: target.location.clone(),
                    attributes: Attributes::new(),
                    size: 0,
                    replace,
                    state: State::Local(super::local::LocalWrite::new(
                        key,
                        target,
                        attributes,
                        replace,
                        self.multipart_threshold,
                    )),
                }) as Box<dyn StoreWrite>);
            }
            if let Some(root) = self.local_root.clone() {
                let at = location.clone();
                let conflict =
                    tokio::task::spawn_blocking(move || Self::local_conflict(&root, &at))
                        .await
                        .ok()
                        .flatten();
                if let Some(reason) = conflict {
                    return Err(Error::Unstorable {
                        key: key.to_owned(),
                        reason,
                    });
                }
            }
            Ok(Box::new(BucketWrite {
                bucket: self.clone(),
                key: key.to_owned(),
                location,
                attributes,
                size: 0,
                replace,
                state: State::Buffering(PutPayloadMut::new()),
            }) as Box<dyn StoreWrite>)
        }
    }
}

/// The directory of a `LocalFileSystem` from its `Display`, `LocalFileSystem(file:///root/)`
/// (object_store 0.14); `None` for any other backend.
pub(crate) fn local_root(store: &dyn ObjectStore) -> Option<PathBuf> {
    let shown = store.to_string();
    let url = shown.strip_prefix("LocalFileSystem(")?.strip_suffix(')')?;
    let path = url.strip_prefix("file://")?;
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    #[cfg(unix)]
    let root = {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    };
    #[cfg(not(unix))]
    let root = {
        let text = String::from_utf8(bytes).ok()?;
        // `file:///C:/dir/` names `C:/dir/`.
        let text = match text.as_bytes() {
            [b'/', drive, b':', ..] if drive.is_ascii_alphabetic() => text[1..].to_owned(),
            _ => text,
        };
        PathBuf::from(text)
    };
    root.is_absolute().then_some(root)
}

/// `LocalFileSystem`'s staging names, which it refuses as object names: a first `#`
/// followed by digits only (`a#1`; not `a#b#1`, which it takes, as the sweep does).
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `ENOTDIR` or `EISDIR`: a path through a file, or a directory where a file was expected.
fn is_not_a_file(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::IsADirectory
    )
}

struct BucketWrite {
    bucket: BucketStore,
    key: String,
    location: Path,
    attributes: Attributes,
    /// Bytes written so far.
    size: u64,
    /// A refresh: the commit replaces the stored object instead of leaving it.
    replace: bool,
    state: State,
}

enum State {
    Buffering(PutPayloadMut),
    Multipart {
        upload: Box<dyn MultipartUpload>,
        part: PutPayloadMut,
        in_flight: JoinSet<object_store::Result<()>>,
    },
    /// Straight into a local directory ([`super::local`]).
    Local(super::local::LocalWrite),
    Done,
}

impl BucketStore {
    fn attributes(&self, attributes: &Attributes) -> Attributes {
        if self.support.attributes.load(Ordering::Relaxed) {
            attributes.clone()
        } else {
            Attributes::new()
        }
    }

    /// `put_opts`, retried without what the backend says it does not implement.
    async fn put(
        &self,
        location: &Path,
        payload: PutPayload,
        attributes: &Attributes,
        replace: bool,
    ) -> object_store::Result<Committed> {
        let mut attributes = self.attributes(attributes);
        let mut create = !replace && self.support.create.load(Ordering::Relaxed);
        loop {
            let mode = if create {
                PutMode::Create
            } else {
                PutMode::Overwrite
            };
            let mut opts = PutOptions::from(mode);
            opts.attributes = attributes.clone();
            match self.store.put_opts(location, payload.clone(), opts).await {
                Ok(_) if replace => return Ok(Committed::Refreshed),
                Ok(_) => return Ok(Committed::Written),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    return Ok(Committed::AlreadyExists);
                }
                Err(object_store::Error::NotImplemented { .. }) if !attributes.is_empty() => {
                    self.support.attributes.store(false, Ordering::Relaxed);
                    attributes = Attributes::new();
                }
                Err(object_store::Error::NotImplemented { .. }) if create => {
                    self.support.create.store(false, Ordering::Relaxed);
                    create = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_multipart(
        &self,
        location: &Path,
        attributes: &Attributes,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let attributes = self.attributes(attributes);
        let with = PutMultipartOptions::from(attributes.clone());
        match self.store.put_multipart_opts(location, with).await {
            Err(object_store::Error::NotImplemented { .. }) if !attributes.is_empty() => {
                self.support.attributes.store(false, Ordering::Relaxed);
                let without = PutMultipartOptions::default();
                self.store.put_multipart_opts(location, without).await
            }
            other => other,
        }
    }
}

impl BucketWrite {
    fn fail(&self, e: object_store::Error) -> Error {
        Error::store_write(&self.key, e)
    }

    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if let State::Local(local) = &mut self.state {
            return local.write(chunk).await;
        }
        if let State::Buffering(buffer) = &mut self.state {
            buffer.push(chunk);
            if buffer.content_length() < self.bucket.multipart_threshold {
                return Ok(());
            }
            let buffered = std::mem::take(buffer).freeze();
            let upload = self
                .bucket
                .start_multipart(&self.location, &self.attributes)
                .await
                .map_err(|e| self.fail(e))?;
            self.state = State::Multipart {
                upload,
                part: PutPayloadMut::new(),
                in_flight: JoinSet::new(),
            };
            for piece in buffered {
                self.push_part_bytes(piece).await?;
            }
            return Ok(());
        }
        self.push_part_bytes(chunk).await
    }

    async fn push_part_bytes(&mut self, mut bytes: Bytes) -> Result<(), Error> {
        let part_size = self.bucket.part_size;
        let max = self.bucket.max_concurrent_parts;
        while !bytes.is_empty() {
            let State::Multipart {
                upload,
                part,
                in_flight,
            } = &mut self.state
            else {
                return Err(Error::store_write(
                    &self.key,
                    "write after the upload ended",
                ));
            };
            let room = part_size - part.content_length();
            if bytes.len() < room {
                part.push(bytes);
                return Ok(());
            }
            part.push(bytes.split_to(room));
            while in_flight.len() >= max {
                if let Some(joined) = in_flight.join_next().await {
                    joined
                        .map_err(|e| Error::store_write(&self.key, e))?
                        .map_err(|e| Error::store_write(&self.key, e))?;
                }
            }
            let full = std::mem::take(part).freeze();
            in_flight.spawn(upload.put_part(full));
        }
        Ok(())
    }

    /// Where the backend keeps no attributes, write them beside the object first, so a
    /// visible object always has them ([`sidecar`](super::sidecar)).
    fn write_sidecar(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let bucket = self.bucket.clone();
        let (key, size, attributes) = (self.key.clone(), self.size, self.attributes.clone());
        async move {
            if bucket.keeps_attributes() || attributes.is_empty() {
                return Ok(());
            }
            let Some(at) = sidecar::location(&bucket.prefix, &key) else {
                return Ok(());
            };
            sidecar::write(&*bucket.store, &at, size, &attributes)
                .await
                .map_err(|e| Error::store_write(&key, e))
        }
    }

    /// Commit: the metadata beside the object first (where it goes there), then the object;
    /// metadata written for an object that then failed is removed again.
    async fn finish(&mut self) -> Result<Committed, Error> {
        let beside = !matches!(self.state, State::Done)
            && !self.bucket.keeps_attributes()
            && !self.attributes.is_empty();
        if beside {
            self.write_sidecar().await?;
        }
        let committed = self.finish_object().await;
        if let (true, Err(_)) = (beside, &committed) {
            if let Some(at) = sidecar::location(&self.bucket.prefix, &self.key) {
                let store = self.bucket.store.clone();
                if let Err(e) = sidecar::remove(&*store, &at).await {
                    tracing::warn!(key = %self.key, error = %e, "removing the metadata of a failed write failed");
                }
            }
        }
        committed
    }

    async fn finish_object(&mut self) -> Result<Committed, Error> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Local(mut local) => local.commit().await,
            State::Buffering(buffer) => self
                .bucket
                .put(
                    &self.location,
                    buffer.freeze(),
                    &self.attributes,
                    self.replace,
                )
                .await
                .map_err(|e| self.fail(e)),
            State::Multipart {
                mut upload,
                part,
                mut in_flight,
            } => {
                let result = async {
                    if part.content_length() > 0 {
                        in_flight.spawn(upload.put_part(part.freeze()));
                    }
                    while let Some(joined) = in_flight.join_next().await {
                        joined
                            .map_err(|e| Error::store_write(&self.key, e))?
                            .map_err(|e| Error::store_write(&self.key, e))?;
                    }
                    // Multipart uploads cannot be conditional: look before completing so an
                    // object that appeared meanwhile is not clobbered (best effort).
                    if !self.replace
                        && self.bucket.support.create.load(Ordering::Relaxed)
                        && self.bucket.store.head(&self.location).await.is_ok()
                    {
                        return Ok(None);
                    }
                    upload
                        .complete()
                        .await
                        .map_err(|e| Error::store_write(&self.key, e))?;
                    Ok::<_, Error>(Some(if self.replace {
                        Committed::Refreshed
                    } else {
                        Committed::Written
                    }))
                }
                .await;
                match result {
                    Ok(Some(done)) => Ok(done),
                    Ok(None) => {
                        upload.abort().await.map_err(|e| self.fail(e))?;
                        Ok(Committed::AlreadyExists)
                    }
                    Err(e) => {
                        in_flight.shutdown().await;
                        if let Err(abort) = upload.abort().await {
                            tracing::warn!(key = %self.key, error = %abort, "aborting a failed multipart upload failed");
                        }
                        Err(e)
                    }
                }
            }
            State::Done => Err(Error::store_write(
                &self.key,
                "commit after the upload ended",
            )),
        }
    }

    async fn discard(&mut self) -> Result<(), Error> {
        if let State::Local(local) = &mut self.state {
            let aborted = local.abort().await;
            self.state = State::Done;
            return aborted;
        }
        if let State::Multipart {
            mut upload,
            mut in_flight,
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        {
            in_flight.shutdown().await;
            upload.abort().await.map_err(|e| self.fail(e))?;
        }
        Ok(())
    }
}

impl StoreWrite for BucketWrite {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        self.write_chunk(chunk).boxed()
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<Committed, Error>> {
        async move { self.finish().await }.boxed()
    }

    fn abort(mut self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        async move { self.discard().await }.boxed()
    }

    fn staging(&mut self, batch: usize) -> Option<super::StagingFile> {
        match &mut self.state {
            State::Local(local) => Some(local.staging(batch)),
            _ => None,
        }
    }
}

impl Drop for BucketWrite {
    fn drop(&mut self) {
        if let State::Multipart {
            mut upload,
            in_flight,
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        {
            drop(in_flight); // aborts the part tasks
            let key = std::mem::take(&mut self.key);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = upload.abort().await {
                            tracing::warn!(%key, error = %e, "aborting an abandoned multipart upload failed");
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!(%key, "multipart upload abandoned outside a runtime; it could not be aborted");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::{is_staging_name, local_root};

    #[test]
    fn a_local_file_system_is_recognised_with_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("a b)c%20d");
        std::fs::create_dir(&root).unwrap();
        let fs = LocalFileSystem::new_with_prefix(&root).unwrap();
        assert_eq!(local_root(&fs).as_deref(), Some(root.as_path()));
        assert_eq!(local_root(&InMemory::new()), None);
        let hidden = object_store::prefix::PrefixStore::new(
            Arc::new(fs) as Arc<dyn super::ObjectStore>,
            "p",
        );
        assert_eq!(local_root(&hidden), None);
    }

    #[test]
    fn staging_names_are_a_hash_and_digits() {
        for (name, staging) in [
            ("a#1", true),
            ("a#0042", true),
            ("a#b#3", false),
            ("a#3#3", false),
            ("#7", true),
            ("a#", false),
            ("a#1b", false),
            ("a#b", false),
            ("a", false),
        ] {
            assert_eq!(is_staging_name(name), staging, "{name}");
        }
    }
}
