//! Crash hygiene: remove the staging files a killed process left in a `LocalFileSystem` store.
//!
//! object_store's `LocalFileSystem` writes an object to `<key>#<n>` (`n` = 1, 2, ...: the
//! first name free) and renames (or hard-links) it to `<key>` when the write completes; an
//! aborted write removes it. A process killed mid-fill (`kill -9`, OOM, power loss) leaves
//! the staging file behind, and nothing else ever removes it: `LocalFileSystem` hides such
//! names from listings, so they only take disk space.
//!
//! [`sweep_staging`] removes them. A file is removed only when
//!
//! 1. it is a regular file (not a directory, not a symlink; symlinks are never followed),
//! 2. its name is what `LocalFileSystem` itself refuses as an object name: one `#` followed
//!    by digits only (`k.bin#1`, `a/b#12`) — names such as `a#b`, `a#1x` or `a#b#1` are
//!    objects (or may be) and are never touched — and
//! 3. it was last modified at least `older_than` ago.
//!
//! ## Why age is the safety
//!
//! A staging file belongs to a live write until it is renamed, and a live write keeps
//! writing it: `BucketStore` appends a part each `part_size` bytes (8 MiB by default), and a
//! fill whose origin or store makes no progress fails after the layer's `stall_timeout` /
//! the origin's idle timeout (a minute or so). So a staging file untouched for a day has no
//! writer left, in this process or any other one sharing the directory — unless an origin
//! trickles a part so slowly that it takes longer than `older_than` (8 MiB over a day is
//! under 100 bytes per second). Keep `older_than` well above `part_size` divided by the
//! slowest origin rate you accept, and above every stall and idle timeout you configured.
//! The default, [`DEFAULT_STAGING_MAX_AGE`], is one day.
//!
//! Even a wrong guess cannot corrupt an object: on Unix, a writer whose staging file was
//! removed keeps writing to the unlinked file, its final rename fails, and the fill fails
//! and is retried by the next request — nothing partial becomes visible.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use tower_origin_pull::sweep::{DEFAULT_STAGING_MAX_AGE, sweep_staging};
//!
//! let report = sweep_staging("/var/lib/mirror".as_ref(), DEFAULT_STAGING_MAX_AGE).await?;
//! println!("{} staging files removed ({} bytes)", report.removed, report.bytes);
//! # Ok(()) }
//! ```
//!
//! S3 and other object stores have no staging files; an abandoned *multipart upload* is their
//! equivalent. A bucket lifecycle rule (`AbortIncompleteMultipartUpload`) clears those: see
//! "Crash hygiene" in the README.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default age past which a staging file is considered abandoned: one day.
pub const DEFAULT_STAGING_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many error messages are kept in a [`SweepReport`] (all are counted).
const ERROR_SAMPLES: usize = 10;

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Staging files removed.
    pub removed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Staging files kept because they are younger than the age given (live writes, or
    /// writes that died recently).
    pub kept_young: u64,
    /// Directories read.
    pub directories: u64,
    /// Entries that could not be read or removed (a removal that lost a race with the
    /// file's owner, which renamed or removed it first, is not an error).
    pub errors: u64,
    /// The first few of those errors, each with its path.
    pub error_samples: Vec<String>,
}

impl SweepReport {
    fn error(&mut self, path: &Path, e: &io::Error) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(format!("{}: {e}", path.display()));
        }
    }
}

/// Whether `name` is a `LocalFileSystem` staging file name: `<something>#<digits>` with a
/// single `#` — exactly the file names `LocalFileSystem` does not take for objects.
pub fn is_staging_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Remove the staging files under `root` (recursively, not following symlinks) last modified
/// at least `older_than` ago; see the [module docs](self) for which files and why age keeps
/// live writes safe. Runs on a blocking thread of the current Tokio runtime.
///
/// A `root` that cannot be read is an error; an entry below it that cannot be read or
/// removed is counted in [`SweepReport::errors`] and the sweep goes on. Any `older_than`
/// works: one too large to subtract from now removes nothing.
///
/// # Panics
///
/// Outside a Tokio runtime, as `tokio::task::spawn_blocking` does.
pub async fn sweep_staging(root: &Path, older_than: Duration) -> io::Result<SweepReport> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || sweep_staging_blocking(&root, older_than))
        .await
        .map_err(io::Error::other)?
}

/// [`sweep_staging`] on the calling thread (it blocks on the file system).
pub fn sweep_staging_blocking(root: &Path, older_than: Duration) -> io::Result<SweepReport> {
    let mut report = SweepReport::default();
    // `None`: `older_than` reaches before the clock's epoch, so nothing is that old.
    let cutoff = SystemTime::now().checked_sub(older_than);
    // The root must be a directory we can read; below it, problems are counted.
    let first = std::fs::read_dir(root)?;
    let mut pending: Vec<(PathBuf, Option<std::fs::ReadDir>)> =
        vec![(root.to_path_buf(), Some(first))];
    while let Some((dir, entries)) = pending.pop() {
        let entries = match entries {
            Some(entries) => entries,
            None => match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    report.error(&dir, &e);
                    continue;
                }
            },
        };
        report.directories += 1;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    report.error(&dir, &e);
                    continue;
                }
            };
            let path = entry.path();
            // `DirEntry::file_type` does not follow symlinks.
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) => {
                    report.error(&path, &e);
                    continue;
                }
            };
            if kind.is_dir() {
                pending.push((path, None));
                continue;
            }
            if !kind.is_file() || !is_staging_name(&entry.file_name()) {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks either (and this is a file).
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    report.error(&path, &e);
                    continue;
                }
            };
            let modified = match meta.modified() {
                Ok(modified) => modified,
                Err(e) => {
                    report.error(&path, &e);
                    continue;
                }
            };
            if cutoff.is_none_or(|cutoff| modified > cutoff) {
                report.kept_young += 1;
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    report.removed += 1;
                    report.bytes += meta.len();
                    tracing::debug!(path = %path.display(), bytes = meta.len(), "removed a staging file");
                }
                // Its owner published or removed it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => report.error(&path, &e),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::is_staging_name;

    #[test]
    fn staging_names_are_what_local_file_system_refuses_as_objects() {
        for (name, staging) in [
            ("k.bin#1", true),
            ("k#12", true),
            ("#3", true),
            ("k", false),
            ("k#", false),
            ("a#b", false),
            ("a#1x", false),
            ("a#b#1", false),
            ("a#1#2", false),
            ("k#١", false),
        ] {
            assert_eq!(is_staging_name(name.as_ref()), staging, "{name}");
        }
    }
}
