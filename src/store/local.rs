//! The write path of a [`BucketStore`](super::BucketStore) over a bare `LocalFileSystem`:
//! done here with plain file IO instead of through object_store, for two reasons measured in
//! `BENCHMARKS.md` (M2, M3):
//!
//! - **Every byte is written once.** The staging file is also what a fill's readers outside
//!   its in-memory window read ([`StagingFile`]), so a fill over a local disk needs no spool
//!   of its own (a spool wrote every byte a second time: cold pulls fell from 1.6× nginx's
//!   throughput to 0.65–0.83×).
//! - **One hand-off to the blocking pool per batch, one per commit.** object_store's
//!   `LocalFileSystem` costs one for the key check, one for the metadata beside, one for
//!   the object; a small object now costs one in all, after its bytes reached the readers.
//!
//! The files are the ones `LocalFileSystem` writes: the object at its
//! `path_to_filesystem`, staged as `<file>#<n>` beside it (the name `LocalFileSystem`, its
//! listings and this crate's sweep already treat as staging), made visible by a hard link
//! (create: an object that appeared meanwhile is kept) or a rename (a refresh replaces),
//! its metadata at `.origin-pull-meta/<key>.meta` written and renamed into place first.
//! Nothing partial is ever visible under the object's name.
//!
//! At most one batch ([`BATCH`]) is written at a time while the next gathers, so a write
//! holds at most two batches of memory (or, before it starts streaming, the store's
//! `multipart_threshold`).

use std::fs::File;
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use object_store::Attributes;
use object_store::path::Path;
use tokio::task::JoinHandle;

use super::{Committed, sidecar};
use crate::Error;

/// Bytes gathered before one positional write to the staging file (at most: a fill whose
/// window is small asks for less, see `StoreWrite::staging`).
pub(crate) const BATCH: usize = 1024 * 1024;

/// A local file a [`StoreWrite`](super::StoreWrite) keeps its bytes in before the commit,
/// readable while it is being written: a fill's readers outside its in-memory window read
/// it at their own offsets instead of a spool of the fill's own, so every byte is written
/// to disk once.
///
/// Made by the crate's own stores ([`BucketStore`](super::BucketStore) over a bare
/// `LocalFileSystem`) through [`StoreWrite::staging`](super::StoreWrite::staging); other
/// stores answer `None` there and fills that need one keep a spool instead.
#[derive(Debug, Clone)]
pub struct StagingFile(pub(crate) Arc<Staged>);

/// The shared state of a staging file: the writer appends, readers read below `written`.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The open file, once the first batch created it.
    file: OnceLock<File>,
    /// Bytes written from offset 0 (what readers may read).
    written: AtomicU64,
    /// The staging file's name while it has one, and whether the writer was dropped.
    name: Mutex<Naming>,
}

#[derive(Debug, Default)]
struct Naming {
    path: Option<PathBuf>,
    abandoned: bool,
}

impl Staged {
    fn naming(&self) -> MutexGuard<'_, Naming> {
        self.name.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes readers may read.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Read exactly `buf.len()` bytes at `offset` (blocking), all below [`Self::written`].
    #[cfg(unix)]
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let file = self
            .file
            .get()
            .ok_or_else(|| io::Error::other("nothing staged yet"))?;
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }

    #[cfg(not(unix))]
    pub(crate) fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
        Err(io::Error::other(
            "staging reads need positional file IO (Unix)",
        ))
    }

    /// Create the staging file beside `dest` (blocking), unless the writer is gone.
    fn create(&self, dest: &FsPath) -> io::Result<&File> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let mut naming = self.naming();
        if naming.abandoned {
            return Err(io::Error::other("the write was abandoned"));
        }
        let (file, path) = new_staging(dest)?;
        naming.path = Some(path);
        drop(naming);
        Ok(self.file.get_or_init(|| file))
    }

    /// The staging file's name, taken (it is being linked, renamed or removed).
    fn take_path(&self) -> Option<PathBuf> {
        self.naming().path.take()
    }

    /// Remove the staging file, if it still has a name (blocking); later creations are
    /// refused. What readers hold open stays readable.
    fn discard(&self) {
        let path = {
            let mut naming = self.naming();
            naming.abandoned = true;
            naming.path.take()
        };
        if let Some(path) = path {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing a staging file failed");
                }
            }
        }
    }

    /// Append `batch` at the end (blocking).
    pub(crate) fn append(&self, dest: &FsPath, batch: &[Bytes]) -> io::Result<()> {
        let file = self.create(dest)?;
        let mut at = self.written();
        for bytes in batch {
            write_all_at(file, bytes, at)?;
            at += bytes.len() as u64;
        }
        self.written.store(at, Ordering::Release);
        Ok(())
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(not(unix))]
fn write_all_at(_: &File, _: &[u8], _: u64) -> io::Result<()> {
    Err(io::Error::other(
        "direct local writes need positional file IO (Unix)",
    ))
}

/// A new staging file `<dest>#<n>` (the first free `n` from 1, as `LocalFileSystem` picks
/// it), creating `dest`'s directories if they are missing.
fn new_staging(dest: &FsPath) -> io::Result<(File, PathBuf)> {
    let mut n: u64 = 1;
    let mut made_dirs = false;
    loop {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let path = PathBuf::from(name);
        match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dirs => {
                made_dirs = true;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where one key's files are.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The store's root directory.
    pub(crate) root: Arc<PathBuf>,
    /// The object's location below it (the store's prefix included).
    pub(crate) location: Path,
    /// The metadata's location below the root (`None`: the key has no such location).
    pub(crate) meta: Option<Path>,
}

impl Target {
    fn file(&self, location: &Path) -> PathBuf {
        self.root.join(location.as_ref())
    }
}

/// One object being written straight into a local directory.
pub(crate) struct LocalWrite {
    key: String,
    target: Target,
    dest: PathBuf,
    attributes: Attributes,
    replace: bool,
    staged: Arc<Staged>,
    /// Chunks not yet handed to a write.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Buffer up to this much before writing anything (a small object is written whole at
    /// the commit); 0 once streaming.
    threshold: usize,
    in_flight: Option<JoinHandle<io::Result<()>>>,
    /// Bytes gathered before one write to the file, once streaming.
    batch: usize,
    /// Bytes given to `write` so far.
    size: u64,
    done: bool,
}

impl LocalWrite {
    pub(crate) fn new(
        key: &str,
        target: Target,
        attributes: Attributes,
        replace: bool,
        threshold: usize,
    ) -> Self {
        let dest = target.file(&target.location);
        Self {
            key: key.to_owned(),
            target,
            dest,
            attributes,
            replace,
            staged: Arc::default(),
            pending: Vec::new(),
            pending_len: 0,
            threshold,
            in_flight: None,
            batch: BATCH,
            size: 0,
            done: false,
        }
    }

    /// Readers may read the staging file from now on: write it in batches of at most
    /// `batch` bytes (and at most [`BATCH`]) from the start.
    pub(crate) fn staging(&mut self, batch: usize) -> StagingFile {
        self.threshold = 0;
        self.batch = batch.clamp(1, BATCH);
        StagingFile(self.staged.clone())
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::store_write(&self.key, e)
    }

    async fn settle(&mut self) -> Result<(), Error> {
        if let Some(task) = self.in_flight.take() {
            task.await
                .map_err(|e| self.error(e))?
                .map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    fn io_error(&self, e: io::Error) -> Error {
        if let Some(reason) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Unstorable>())
        {
            return Error::Unstorable {
                key: self.key.clone(),
                reason: reason.0.clone(),
            };
        }
        self.error(e)
    }

    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if self.done {
            return Err(self.error("write after the write ended"));
        }
        self.size = self.size.saturating_add(chunk.len() as u64);
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len < self.batch.max(self.threshold) {
            return Ok(());
        }
        self.threshold = 0;
        // One batch on the pool at a time: wait for the previous one (backpressure).
        self.settle().await?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let staged = self.staged.clone();
        let (dest, first) = (self.dest.clone(), staged.file.get().is_none());
        let check = first.then(|| self.check_fn());
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            if let Some(check) = check {
                check()?;
            }
            staged.append(&dest, &batch)
        }));
        Ok(())
    }

    /// The key check, run (blocking) before the staging file is created: a key the disk
    /// cannot hold is [`Error::Unstorable`] (an [`Unstorable`] inside an `io::Error` until
    /// [`Self::io_error`]), and the fill then streams the object without storing it.
    fn check_fn(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let (root, location) = (self.target.root.clone(), self.target.location.clone());
        move || match super::bucket::BucketStore::local_conflict(&root, &location) {
            Some(reason) => Err(io::Error::other(Unstorable(reason))),
            None => Ok(()),
        }
    }

    /// Write what is left, the metadata beside, and make the object visible: one blocking
    /// task.
    pub(crate) async fn commit(&mut self) -> Result<Committed, Error> {
        if std::mem::replace(&mut self.done, true) {
            return Err(self.error("commit after the write ended"));
        }
        if let Err(e) = self.settle().await {
            self.staged.discard();
            return Err(e);
        }
        let batch = std::mem::take(&mut self.pending);
        let staged = self.staged.clone();
        let (dest, target, replace, size) = (
            self.dest.clone(),
            self.target.clone(),
            self.replace,
            self.size,
        );
        // The metadata beside: written when there is any; else an old file there (of an
        // object replaced or removed by other means) is removed, so none is served with it.
        let meta = target.meta.as_ref().map(|at| {
            let bytes =
                (!self.attributes.is_empty()).then(|| sidecar::encode(size, &self.attributes));
            (target.file(at), bytes)
        });
        let check = staged.file.get().is_none().then(|| self.check_fn());
        let committed = tokio::task::spawn_blocking(move || {
            let result = (|| {
                if let Some(check) = check {
                    check()?;
                }
                staged.append(&dest, &batch)?;
                commit_files(&staged, &dest, meta, replace)
            })();
            if result.is_err() {
                staged.discard();
            }
            result
        })
        .await
        .map_err(|e| self.error(e))?;
        committed.map_err(|e| self.io_error(e))
    }

    pub(crate) async fn abort(&mut self) -> Result<(), Error> {
        self.done = true;
        let settled = self.settle().await;
        let staged = self.staged.clone();
        let _ = tokio::task::spawn_blocking(move || staged.discard()).await;
        match settled {
            // A key the disk cannot hold left nothing to abort.
            Err(Error::Unstorable { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LocalWrite {
    fn drop(&mut self) {
        if !self.done {
            // An unlink (or nothing, if no batch was written yet); a batch still in flight
            // finds the write abandoned and creates nothing.
            self.staged.discard();
        }
    }
}

/// Why a key cannot be stored, carried through an `io::Error`.
#[derive(Debug)]
struct Unstorable(String);

impl std::fmt::Display for Unstorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unstorable {}

/// The metadata beside (written, then renamed into place; or an old one removed), then the
/// object: linked into place (create: an object already there is kept, with its metadata)
/// or renamed over it (replace). Whatever fails, the staging name is gone afterwards and
/// metadata written for an object that was not placed is removed. Blocking.
fn commit_files(
    staged: &Staged,
    dest: &FsPath,
    meta: Option<(PathBuf, Option<Bytes>)>,
    replace: bool,
) -> io::Result<Committed> {
    let staging = staged
        .take_path()
        .ok_or_else(|| io::Error::other("the staging file is gone"))?;
    if !replace && std::fs::symlink_metadata(dest).is_ok() {
        // Another writer got there first: its object and its metadata stay as they are.
        let _ = std::fs::remove_file(&staging);
        return Ok(Committed::AlreadyExists);
    }
    let mut meta_written = None;
    let placed = (|| {
        match meta {
            Some((path, None)) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
            Some((path, Some(bytes))) => {
                let (file, tmp) = new_staging(&path)?;
                let written =
                    write_all_at(&file, &bytes, 0).and_then(|()| std::fs::rename(&tmp, &path));
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                meta_written = Some(path);
            }
            None => {}
        }
        if replace {
            return std::fs::rename(&staging, dest).map(|()| Committed::Refreshed);
        }
        match std::fs::hard_link(&staging, dest) {
            Ok(()) => Ok(Committed::Written),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Committed::AlreadyExists),
            Err(e) => Err(e),
        }
    })();
    // Linked, or not placed: the staging name goes (renamed: it is gone already).
    if !(replace && placed.is_ok()) {
        let _ = std::fs::remove_file(&staging);
    }
    if let (Err(_), Some(path)) = (&placed, meta_written) {
        let _ = std::fs::remove_file(path);
    }
    placed
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use object_store::local::LocalFileSystem;
    use object_store::{Attribute, Attributes};

    use crate::store::{BucketStore, Committed, Store};

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    fn typed(t: &'static str) -> Attributes {
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, t.into());
        a
    }

    async fn put(
        store: &BucketStore,
        key: &str,
        bytes: &'static [u8],
        a: Attributes,
        replace: bool,
    ) -> Committed {
        let mut w = if replace {
            store.begin_replace(key, a).await.unwrap()
        } else {
            store.begin(key, a).await.unwrap()
        };
        // Streamed in 2-byte batches through the staging file, as a large fill writes.
        assert!(
            w.staging(2).is_some(),
            "a bare LocalFileSystem is written directly"
        );
        for piece in bytes.chunks(3) {
            w.write(Bytes::from_static(piece)).await.unwrap();
        }
        w.commit().await.unwrap()
    }

    /// A streaming write holds at most two batches not yet in the file (one gathering, one
    /// being written), however large the object: what ARCHITECTURE.md and RELIABILITY.md
    /// count as its memory.
    #[tokio::test]
    async fn a_streaming_write_is_at_most_two_batches_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let store = BucketStore::new(Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap()));
        let mut w = store.begin("big.bin", Attributes::new()).await.unwrap();
        let staged = w.staging(usize::MAX).unwrap().0;
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let mut size = 0u64;
        for _ in 0..80 {
            w.write(chunk.clone()).await.unwrap();
            size += chunk.len() as u64;
            let behind = size - staged.written();
            assert!(behind <= 2 * super::BATCH as u64, "{behind} bytes behind");
        }
        assert!(staged.written() > 0, "batches were written while streaming");
        assert_eq!(w.commit().await.unwrap(), Committed::Written);
        assert_eq!(std::fs::metadata(root.join("big.bin")).unwrap().len(), size);
    }

    /// Create keeps what is there (object and metadata); replace renames over it, with its
    /// own metadata or none (an old metadata file is removed, never served with new bytes);
    /// a dropped or aborted write leaves no file.
    #[tokio::test]
    async fn direct_local_writes_create_replace_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let store = BucketStore::new(Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap()));
        let meta = root.join(".origin-pull-meta/a/b.txt.meta");

        assert_eq!(
            put(
                &store,
                "a/b.txt",
                b"first version",
                typed("text/plain"),
                false
            )
            .await,
            Committed::Written
        );
        assert_eq!(
            std::fs::read(root.join("a/b.txt")).unwrap(),
            b"first version"
        );
        let first_meta = std::fs::read_to_string(&meta).unwrap();
        assert!(
            first_meta.contains("text/plain") && first_meta.contains("13"),
            "{first_meta}"
        );

        assert_eq!(
            put(&store, "a/b.txt", b"other", typed("text/html"), false).await,
            Committed::AlreadyExists
        );
        assert_eq!(
            std::fs::read(root.join("a/b.txt")).unwrap(),
            b"first version"
        );
        assert_eq!(
            std::fs::read_to_string(&meta).unwrap(),
            first_meta,
            "its metadata kept"
        );

        assert_eq!(
            put(
                &store,
                "a/b.txt",
                b"second, same size!",
                typed("text/csv"),
                true
            )
            .await,
            Committed::Refreshed
        );
        assert_eq!(
            std::fs::read(root.join("a/b.txt")).unwrap(),
            b"second, same size!"
        );
        assert!(std::fs::read_to_string(&meta).unwrap().contains("text/csv"));

        assert_eq!(
            put(&store, "a/b.txt", b"third", Attributes::new(), true).await,
            Committed::Refreshed
        );
        assert!(
            !meta.exists(),
            "no metadata for an object that came with none"
        );

        for abort in [false, true] {
            let mut w = store.begin("c.bin", typed("x/y")).await.unwrap();
            w.staging(1);
            w.write(Bytes::from_static(b"partial")).await.unwrap();
            w.write(Bytes::from_static(b"more")).await.unwrap();
            if abort {
                w.abort().await.unwrap();
            } else {
                drop(w);
            }
            tokio::task::yield_now().await;
            // A batch still in flight when the writer went finds it abandoned.
            for _ in 0..100 {
                if files(&root).len() == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(files(&root), ["a/b.txt"], "abort: {abort}");
        }
    }
}
