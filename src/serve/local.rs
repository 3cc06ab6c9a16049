//! `ServeStore` on a local directory: one blocking task per request looks the object up —
//! open, stat, the metadata kept beside it, and for a small object its bytes — instead of
//! one hand-off to the blocking pool per step (object_store's `LocalFileSystem` does each
//! open, stat and read there). Larger objects stream from the file already open, in
//! 256 KiB reads, so the bytes served are the version that was looked at even if the key
//! is replaced meanwhile (a replacement is a rename: the open file keeps the old bytes).
//!
//! The metadata kept beside each object (`.origin-pull-meta/<key>.meta`) is read once per
//! version of the object and remembered by the object's entity tag (inode, modification
//! time, size: any replacement of the object changes it, and the metadata is only ever
//! written with a new object), at most [`MAX_REMEMBERED`] objects; a hit on a remembered
//! object reads no second file.
//!
//! Keys map to files exactly as `LocalFileSystem` maps them (its own `path_to_filesystem`),
//! its staging files (`<name>#<digits>`) and directories are misses, and the `ETag` and
//! `Last-Modified` are computed as it computes them, so both paths answer alike.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use object_store::Attributes;
use object_store::local::LocalFileSystem;

/// Objects up to this size are read whole in the same blocking task as the lookup.
pub(crate) const SMALL: u64 = 64 * 1024;

/// How many objects' metadata a `ServeStore` remembers (past it, it starts over).
pub(crate) const MAX_REMEMBERED: usize = 16_384;

/// A local directory served directly.
#[derive(Debug)]
pub(crate) struct Local {
    /// Maps keys to files where [`Local::path`] does not (off Unix).
    #[cfg_attr(unix, allow(dead_code))]
    fs: LocalFileSystem,
    /// Its root, as `LocalFileSystem` was given it (from its `Display`).
    root: PathBuf,
    /// The metadata beside each object version served, by entity tag.
    remembered: Mutex<HashMap<String, Arc<Attributes>>>,
}

/// An object looked up on disk.
pub(crate) struct Looked {
    pub(crate) size: u64,
    pub(crate) last_modified: SystemTime,
    pub(crate) e_tag: String,
    pub(crate) attributes: Arc<Attributes>,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// The whole object, when it is small and its bytes were asked for.
    pub(crate) bytes: Option<Bytes>,
}

/// Why a lookup found nothing to serve.
pub(crate) enum Missing {
    /// No such object (or a key a local disk cannot hold as a file).
    NotFound,
    /// The file system refused or failed.
    Failed(std::io::Error),
}

impl Local {
    /// The local directory behind `store`, if it is a `LocalFileSystem`.
    pub(crate) fn of(store: &dyn object_store::ObjectStore) -> Option<Self> {
        let root = crate::store::bucket::local_root(store)?;
        let fs = LocalFileSystem::new_with_prefix(&root).ok()?;
        Some(Self {
            fs,
            root,
            remembered: Mutex::default(),
        })
    }

    /// Look `location` up (blocking): the file, its metadata, the attributes kept at
    /// `meta()` beside it (called only when they are not remembered), and its bytes if
    /// `whole` and it is small.
    pub(crate) fn look(
        &self,
        location: &str,
        meta: impl FnOnce() -> String,
        whole: bool,
    ) -> Result<Looked, Missing> {
        if location
            .rsplit('/')
            .next()
            .is_some_and(crate::store::bucket::is_staging_name)
        {
            return Err(Missing::NotFound);
        }
        let path = self.path(location).ok_or(Missing::NotFound)?;
        let mut file = File::open(&path).map_err(missing)?;
        let stat = file.metadata().map_err(Missing::Failed)?;
        if !stat.is_file() {
            return Err(Missing::NotFound);
        }
        let size = stat.len();
        let last_modified = stat.modified().map_err(Missing::Failed)?;
        let bytes = if whole && size <= SMALL {
            let mut buf = Vec::with_capacity(size as usize);
            (&mut file)
                .take(size)
                .read_to_end(&mut buf)
                .map_err(Missing::Failed)?;
            // Cut under us (truncated meanwhile): let the body report the short read.
            (buf.len() as u64 == size).then(|| Bytes::from(buf))
        } else {
            None
        };
        let e_tag = e_tag(&stat);
        let attributes = self.attributes(meta, &e_tag, size);
        Ok(Looked {
            size,
            last_modified,
            e_tag,
            attributes,
            file,
            path,
            bytes,
        })
    }
}

impl Local {
    /// The file of `location`: its root joined with the location's segments, which is what
    /// `LocalFileSystem::path_to_filesystem` computes through a URL (each segment
    /// percent-encoded into it, then decoded out of it) at several times the cost.
    /// `location` is a clean key (below the store's prefix): what `Path::parse` takes as it
    /// is, so the file is the same whichever way it is computed.
    #[cfg(unix)]
    fn path(&self, location: &str) -> Option<PathBuf> {
        Some(self.root.join(location))
    }

    #[cfg(not(unix))]
    fn path(&self, location: &str) -> Option<PathBuf> {
        let location = object_store::path::Path::parse(location).ok()?;
        self.fs.path_to_filesystem(&location).ok()
    }

    /// The attributes kept at `meta` for the object version `e_tag` of `size` bytes:
    /// remembered, or read (blocking) and remembered.
    fn attributes(&self, meta: impl FnOnce() -> String, e_tag: &str, size: u64) -> Arc<Attributes> {
        let lock = || self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = lock().get(e_tag) {
            return known.clone();
        }
        let read = self
            .path(&meta())
            .and_then(|m| std::fs::read(m).ok())
            .and_then(|b| crate::store::sidecar::decode(&b, size))
            .unwrap_or_default();
        let read = Arc::new(read);
        let mut remembered = lock();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(e_tag.to_owned(), read.clone());
        read
    }
}

fn missing(e: std::io::Error) -> Missing {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    match e.kind() {
        NotFound | NotADirectory | IsADirectory => Missing::NotFound,
        _ => Missing::Failed(e),
    }
}

/// `LocalFileSystem`'s entity tag: inode, modification time in microseconds and size.
fn e_tag(stat: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(stat);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = stat
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    // As `format!("\"{inode:x}-{mtime:x}-{size:x}\"")`, without the formatting machinery
    // (a fifth of the instructions of a 4 KiB hit, measured).
    let mut tag = String::with_capacity(2 + 16 + 1 + 32 + 1 + 16);
    tag.push('"');
    push_hex(&mut tag, u128::from(inode));
    tag.push('-');
    push_hex(&mut tag, mtime);
    tag.push('-');
    push_hex(&mut tag, u128::from(stat.len()));
    tag.push('"');
    tag
}

/// `n` in lowercase hex without leading zeros (`0` for zero), as `{:x}` writes it.
fn push_hex(out: &mut String, n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
}

#[cfg(all(test, unix))]
mod tests {
    use object_store::path::Path;

    use super::*;

    #[tokio::test]
    async fn the_etag_and_time_are_local_file_systems() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.bin"), b"four").unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let local = Local::of(&store).unwrap();
        let looked = local
            .look("f.bin", || ".origin-pull-meta/f.bin.meta".into(), true)
            .ok()
            .unwrap();
        let meta = store.head(&Path::from("f.bin")).await.unwrap();
        assert_eq!(Some(looked.e_tag), meta.e_tag);
        assert_eq!(
            chrono_free(looked.last_modified),
            chrono_free(std::time::SystemTime::from(meta.last_modified))
        );
        assert_eq!(looked.bytes.as_deref(), Some(&b"four"[..]));
        assert!(matches!(
            local.look("f.bin#1", || "m".into(), true),
            Err(Missing::NotFound)
        ));
    }

    fn chrono_free(t: std::time::SystemTime) -> u128 {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros()
    }

    #[test]
    fn hex_as_format_writes_it() {
        for n in [
            0u128,
            1,
            15,
            16,
            255,
            0xdead_beef,
            u128::from(u64::MAX),
            u128::MAX,
        ] {
            let mut s = String::new();
            push_hex(&mut s, n);
            assert_eq!(s, format!("{n:x}"));
        }
    }

    #[test]
    fn files_are_where_local_file_system_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let local = Local::of(&store).expect("a local directory");
        for key in [
            "a.txt",
            "dir/sub/a b.txt",
            "100%.bin",
            "q?x#y.bin",
            "中文/ключ.txt",
            "sp ace/%41/;x",
            "colon:a/@b/+c",
        ] {
            let location = Path::parse(key).unwrap_or_else(|_| Path::from(key));
            assert_eq!(
                local.path(location.as_ref()).unwrap(),
                store.path_to_filesystem(&location).unwrap(),
                "{key}"
            );
        }
    }
}
