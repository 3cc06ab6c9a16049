//! The spool: a temporary file per fill holding every byte the fill has handed to its
//! readers, so a reader that is not in the in-memory window (it joined late, fell behind, or
//! asked for a range far from the window) reads at its own offset as soon as the bytes are
//! there, instead of waiting for the commit.
//!
//! # Where spools live, and why none outlives its fill
//!
//! Spools go to `<spool_dir>/tower-origin-pull-<pid>/` (`spool_dir`: the system temp dir by
//! default), one directory per process. Each spool file is **unlinked as soon as it is
//! created**: it has no name, only the fill's open descriptor (shared by the readers that
//! read it). Its disk space is freed by the kernel when the last descriptor closes: when the
//! fill's guard has settled the fill and no reader still reads it — and, whatever happens,
//! when the process exits, `kill -9` included. So no spool can outlive its process.
//!
//! What a killed process can leave is its (empty) directory, or a file caught between its
//! creation and its unlinking (microseconds). When a layer creates its process's directory
//! it sweeps its siblings: a `tower-origin-pull-<pid>` directory whose `<pid>` is not a
//! live process (`/proc/<pid>` is absent) is removed. Another live process's directory is
//! never touched. Where `/proc` is not mounted nothing is swept. A pid reused by an unrelated
//! live process keeps a stale directory until that process ends; it holds nothing but what
//! the gap above could leave.
//!
//! # Bounds
//!
//! Disk: every spool of the layer together holds at most `spool_max_bytes`; a fill whose
//! next chunk would exceed it stops spooling (counted in [`SpoolStats::fallback_full`]),
//! and its readers past the spool fall back to the window-or-store path. Memory: a reader
//! of the spool holds at most [`READ_BUFFER`] bytes at a time.
//!
//! Reads and writes are positional (`pread`/`pwrite`) and run on Tokio's blocking pool, one
//! blocking call per chunk written and per read, never on the runtime's threads.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// The most a spool reader reads at once (its fixed buffer).
pub(crate) const READ_BUFFER: usize = 128 * 1024;

/// The default bound on the bytes of every spool of a layer together: 1 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// Numbers the spool files of this process (each is unlinked right after its creation).
static NEXT_SPOOL: AtomicU64 = AtomicU64::new(0);

/// The prefix of a process's spool directory name (followed by its pid).
pub const SPOOL_DIR_PREFIX: &str = "tower-origin-pull-";

/// Counters of the spool and of ranged misses that joined a fill
/// ([`OriginPullHandle::spool_stats`](crate::OriginPullHandle::spool_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Fills that spooled their bytes.
    pub spooled_fills: u64,
    /// Bytes held by spools now (freed when a spool's last reader is done).
    pub bytes_now: u64,
    /// Fills that stopped spooling because `spool_max_bytes` was reached.
    pub fallback_full: u64,
    /// Fills that could not spool (no directory, a write failed).
    pub fallback_error: u64,
    /// Of `spooled_fills`, those whose spool was the store's own staging file (a local
    /// directory written by [`BucketStore`](crate::BucketStore)): every byte written once.
    pub from_staging: u64,
    /// Reads served from a spool.
    pub reads: u64,
    /// Ranged misses that joined a fill under [`RangeMiss::JoinFill`](crate::RangeMiss::JoinFill).
    pub ranges_joined: u64,
    /// Ranged misses proxied under [`RangeMiss::JoinFill`](crate::RangeMiss::JoinFill)
    /// because the fill would not reach them within `max_wait`.
    pub ranges_proxied: u64,
}

#[derive(Debug, Default)]
struct Counters {
    spooled_fills: AtomicU64,
    from_staging: AtomicU64,
    fallback_full: AtomicU64,
    fallback_error: AtomicU64,
    reads: AtomicU64,
    ranges_joined: AtomicU64,
    ranges_proxied: AtomicU64,
}

/// A layer's spools: where they go, the disk bound, the counters.
#[derive(Debug)]
pub(crate) struct Spools {
    base: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    /// The process directory, created (and its stale siblings swept) on first use.
    dir: Mutex<Option<PathBuf>>,
    counters: Counters,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Spools {
    /// `base`: the spool directory's parent (`None`: the system temp dir).
    pub(crate) fn new(base: Option<PathBuf>, max_bytes: u64) -> Self {
        Self {
            base: base.unwrap_or_else(std::env::temp_dir),
            max_bytes,
            used: AtomicU64::new(0),
            dir: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// Whether spooling is on at all (`spool_max_bytes` above 0, a platform with
    /// positional file IO).
    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes > 0 && cfg!(unix)
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        let c = &self.counters;
        SpoolStats {
            spooled_fills: c.spooled_fills.load(Ordering::Relaxed),
            from_staging: c.from_staging.load(Ordering::Relaxed),
            bytes_now: self.used.load(Ordering::Relaxed),
            fallback_full: c.fallback_full.load(Ordering::Relaxed),
            fallback_error: c.fallback_error.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            ranges_joined: c.ranges_joined.load(Ordering::Relaxed),
            ranges_proxied: c.ranges_proxied.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn counted_read(&self) {
        count(&self.counters.reads);
    }

    pub(crate) fn counted_range(&self, joined: bool) {
        if joined {
            count(&self.counters.ranges_joined);
        } else {
            count(&self.counters.ranges_proxied);
        }
    }

    pub(crate) fn counted_fallback(&self, full: bool) {
        if full {
            count(&self.counters.fallback_full);
        } else {
            count(&self.counters.fallback_error);
        }
    }

    fn lock_dir(&self) -> MutexGuard<'_, Option<PathBuf>> {
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This process's spool directory, created on first use (sweeping dead processes').
    fn process_dir(&self) -> io::Result<PathBuf> {
        let mut dir = self.lock_dir();
        if let Some(dir) = dir.as_ref() {
            if dir.is_dir() {
                return Ok(dir.clone());
            }
        }
        std::fs::create_dir_all(&self.base)?;
        sweep_dead(&self.base);
        let path = self
            .base
            .join(format!("{SPOOL_DIR_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        *dir = Some(path.clone());
        Ok(path)
    }

    /// Create a new, already unlinked, spool file (blocking: call on the blocking pool).
    pub(crate) fn create(self: &Arc<Self>) -> io::Result<Spool> {
        let dir = self.process_dir()?;
        // One counter for the process: layers of one process share its directory.
        let n = NEXT_SPOOL.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{n}.spool"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        count(&self.counters.spooled_fills);
        Ok(Spool {
            file: Backing::Own(file),
            spools: self.clone(),
            reserved: AtomicU64::new(0),
        })
    }

    /// A spool that is the store write's own staging file (nothing is written to it here,
    /// nothing counts against `spool_max_bytes`: the bytes are the store's).
    pub(crate) fn of_staging(self: &Arc<Self>, staging: crate::store::StagingFile) -> Spool {
        count(&self.counters.spooled_fills);
        count(&self.counters.from_staging);
        Spool {
            file: Backing::Staging(staging.0),
            spools: self.clone(),
            reserved: AtomicU64::new(0),
        }
    }

    fn reserve(&self, len: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&n| n <= self.max_bytes)
            })
            .is_ok()
    }
}

/// Remove the spool directories of processes that are gone (see the module docs).
fn sweep_dead(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPOOL_DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if pid == me || !is_dir || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), "removed a dead process's spools")
            }
            Err(e) => tracing::warn!(dir = %entry.path().display(), error = %e, "spool sweep"),
        }
    }
}

/// Why a chunk was not spooled.
#[derive(Debug)]
pub(crate) enum SpoolError {
    /// `spool_max_bytes` reached.
    Full,
    Io(io::Error),
}

/// One fill's spool file (unlinked). Its bytes are released from the layer's bound when the
/// last holder drops it.
#[derive(Debug)]
pub(crate) struct Spool {
    file: Backing,
    spools: Arc<Spools>,
    reserved: AtomicU64,
}

/// Where a spool's bytes are.
#[derive(Debug)]
enum Backing {
    /// The spool's own unlinked file, written by the fill.
    Own(File),
    /// The store write's staging file, written by the store.
    Staging(Arc<crate::store::local::Staged>),
}

impl Drop for Spool {
    fn drop(&mut self) {
        let reserved = *self.reserved.get_mut();
        self.spools.used.fetch_sub(reserved, Ordering::AcqRel);
    }
}

impl Spool {
    pub(crate) fn spools(&self) -> &Arc<Spools> {
        &self.spools
    }

    /// The bytes the store has staged, for a spool that is the store's staging file.
    pub(crate) fn staged(&self) -> Option<u64> {
        match &self.file {
            Backing::Own(_) => None,
            Backing::Staging(staged) => Some(staged.written()),
        }
    }

    /// Write `bytes` at `offset`, on the blocking pool, within the layer's disk bound.
    pub(crate) async fn write(
        self: Arc<Self>,
        offset: u64,
        bytes: Bytes,
    ) -> Result<(), SpoolError> {
        let len = bytes.len() as u64;
        if !self.spools.reserve(len) {
            return Err(SpoolError::Full);
        }
        self.reserved.fetch_add(len, Ordering::AcqRel);
        let written = tokio::task::spawn_blocking(move || self.write_at(&bytes, offset)).await;
        match written {
            Ok(result) => result.map_err(SpoolError::Io),
            Err(e) => Err(SpoolError::Io(io::Error::other(e))),
        }
    }

    /// Read `len` bytes at `offset`, on the blocking pool; bytes not all there are an error.
    pub(crate) async fn read(self: Arc<Self>, offset: u64, len: usize) -> io::Result<Bytes> {
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            self.read_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }

    #[cfg(unix)]
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match &self.file {
            Backing::Own(file) => std::os::unix::fs::FileExt::write_all_at(file, bytes, offset),
            Backing::Staging(_) => Err(io::Error::other("the store writes its staging file")),
        }
    }

    #[cfg(unix)]
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match &self.file {
            Backing::Own(file) => std::os::unix::fs::FileExt::read_exact_at(file, buf, offset),
            Backing::Staging(staged) => staged.read_at(buf, offset),
        }
    }

    #[cfg(not(unix))]
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("spools need positional file IO (Unix)"))
    }

    #[cfg(not(unix))]
    fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("spools need positional file IO (Unix)"))
    }
}
