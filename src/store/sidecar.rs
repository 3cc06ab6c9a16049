//! Metadata beside the object, for backends that keep no attributes (`LocalFileSystem`).
//!
//! An object's attributes — the same ones other backends keep with the object (see
//! `fill::meta::attributes`) — are written as a small JSON object at
//! `<prefix>/.origin-pull-meta/<key>.meta` before the object itself is committed, so a
//! visible object always has its metadata beside it. The file records the object's size;
//! metadata whose size is not the object's (the object was replaced by other means) is
//! ignored. The `.meta` suffix keeps `a` and `a/b`'s files apart, as the objects are.
//!
//! What it costs: one small write per stored object, and one small read per object version
//! served through [`ServeStore`](crate::ServeStore) on a local disk (in the same lookup as
//! the object's, then remembered by the object's ETag: 3 % of 4 KiB hits, `benches/local_meta.rs`).

use bytes::Bytes;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutPayload};

/// Where metadata lives, below the store's prefix. Reserved: never pulled, never served.
pub const META_PREFIX: &str = ".origin-pull-meta";

/// The metadata location of `key` below `prefix`.
pub(crate) fn location(prefix: &Path, key: &str) -> Option<Path> {
    Path::parse(key_of(prefix, key)).ok()
}

/// The same as a key below the store's root, unparsed.
pub(crate) fn key_of(prefix: &Path, key: &str) -> String {
    if prefix.as_ref().is_empty() {
        format!("{META_PREFIX}/{key}.meta")
    } else {
        format!("{prefix}/{META_PREFIX}/{key}.meta")
    }
}

/// The location of `key`'s validation marker below `prefix`: when a refresh last found the
/// stored object unchanged at the origin (seconds since the epoch).
pub(crate) fn validated_location(prefix: &Path, key: &str) -> Option<Path> {
    let full = if prefix.as_ref().is_empty() {
        format!("{META_PREFIX}/{key}.validated")
    } else {
        format!("{prefix}/{META_PREFIX}/{key}.validated")
    };
    Path::parse(full).ok()
}

/// Where `S3Front` keeps the parts of multipart uploads in progress (feature `s3-front`).
pub(crate) const UPLOADS_PREFIX: &str = ".origin-pull-uploads";

/// Whether `key` is one of the crate's own bookkeeping objects (metadata, tombstones, the
/// parts of S3 multipart uploads).
pub(crate) fn reserved(key: &str) -> bool {
    // Every reserved prefix begins so: most keys are told apart by their first byte.
    if !key.starts_with(".origin-pull-") {
        return false;
    }
    matches!(
        key.split('/').next(),
        Some(META_PREFIX | super::TOMBSTONE_PREFIX | UPLOADS_PREFIX)
    )
}

fn name(attribute: &Attribute) -> Option<String> {
    Some(match attribute {
        Attribute::ContentType => "content-type".into(),
        Attribute::CacheControl => "cache-control".into(),
        Attribute::ContentDisposition => "content-disposition".into(),
        Attribute::ContentEncoding => "content-encoding".into(),
        Attribute::ContentLanguage => "content-language".into(),
        Attribute::Metadata(meta) => format!("meta:{meta}"),
        _ => return None,
    })
}

fn attribute(name: &str) -> Option<Attribute> {
    Some(match name {
        "content-type" => Attribute::ContentType,
        "cache-control" => Attribute::CacheControl,
        "content-disposition" => Attribute::ContentDisposition,
        "content-encoding" => Attribute::ContentEncoding,
        "content-language" => Attribute::ContentLanguage,
        other => Attribute::Metadata(other.strip_prefix("meta:")?.to_owned().into()),
    })
}

/// The file's bytes for an object of `size` bytes.
pub(crate) fn encode(size: u64, attributes: &Attributes) -> Bytes {
    let mut map = serde_json::Map::new();
    for (a, value) in attributes.iter() {
        if let Some(name) = name(a) {
            map.insert(name, value.as_ref().into());
        }
    }
    let doc = serde_json::json!({ "size": size, "attributes": map });
    Bytes::from(doc.to_string())
}

/// The attributes in `bytes` if they describe an object of `size` bytes.
pub(crate) fn decode(bytes: &[u8], size: u64) -> Option<Attributes> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if doc.get("size")?.as_u64()? != size {
        return None;
    }
    let mut out = Attributes::new();
    for (name, value) in doc.get("attributes")?.as_object()? {
        if let (Some(a), Some(v)) = (attribute(name), value.as_str()) {
            out.insert(a, v.to_owned().into());
        }
    }
    Some(out)
}

/// The attributes kept beside the object of `size` bytes at `at`; empty when there are none
/// or they cannot be read (the object is served with what the store itself knows).
pub(crate) async fn read(store: &dyn ObjectStore, at: &Path, size: u64) -> Attributes {
    match store.get(at).await {
        Ok(result) => match result.bytes().await {
            Ok(bytes) => decode(&bytes, size).unwrap_or_default(),
            Err(_) => Attributes::new(),
        },
        Err(_) => Attributes::new(),
    }
}

/// Write the metadata of an object of `size` bytes at `at` (overwriting older metadata).
pub(crate) async fn write(
    store: &dyn ObjectStore,
    at: &Path,
    size: u64,
    attributes: &Attributes,
) -> object_store::Result<()> {
    store
        .put(at, PutPayload::from(encode(size, attributes)))
        .await
        .map(drop)
}

/// The time in the validation marker at `at`, if there is one.
pub(crate) async fn read_time(store: &dyn ObjectStore, at: &Path) -> Option<std::time::SystemTime> {
    let bytes = store.get(at).await.ok()?.bytes().await.ok()?;
    let secs: u64 = std::str::from_utf8(&bytes).ok()?.trim().parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

/// Write `time` (whole seconds) as the validation marker at `at`.
pub(crate) async fn write_time(
    store: &dyn ObjectStore,
    at: &Path,
    time: std::time::SystemTime,
) -> object_store::Result<()> {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    store
        .put(at, PutPayload::from(secs.to_string()))
        .await
        .map(drop)
}

/// Remove the metadata at `at`, if any.
pub(crate) async fn remove(store: &dyn ObjectStore, at: &Path) -> object_store::Result<()> {
    match store.delete(at).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_keys_are_the_first_segments_named_so() {
        for prefix in [META_PREFIX, crate::store::TOMBSTONE_PREFIX, UPLOADS_PREFIX] {
            assert!(reserved(prefix));
            assert!(reserved(&format!("{prefix}/a/b.txt")));
            assert!(!reserved(&format!("{prefix}x/a")));
            assert!(!reserved(&format!("a/{prefix}/b")));
        }
        for key in [
            "a.txt",
            "a/b",
            ".origin-pull-",
            ".origin-pull-other/x",
            ".hidden",
        ] {
            assert!(!reserved(key), "{key}");
        }
    }

    #[test]
    fn round_trip_and_size_check() {
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, "text/plain".into());
        a.insert(
            Attribute::Metadata("origin_pull_etag".into()),
            "\"x\"".into(),
        );
        let bytes = encode(5, &a);
        let back = decode(&bytes, 5).expect("decodes");
        assert_eq!(
            back.get(&Attribute::ContentType).unwrap().as_ref(),
            "text/plain"
        );
        assert_eq!(
            back.get(&Attribute::Metadata("origin_pull_etag".into()))
                .unwrap()
                .as_ref(),
            "\"x\""
        );
        assert!(decode(&bytes, 6).is_none(), "another object's metadata");
        assert!(decode(b"not json", 5).is_none());
        assert_eq!(
            location(&Path::default(), "a/b").unwrap().as_ref(),
            ".origin-pull-meta/a/b.meta"
        );
        assert!(reserved(".origin-pull-meta/a.meta"));
        assert!(reserved(".origin-pull-tombstones/a"));
        assert!(!reserved("a/.origin-pull-meta"));
    }
}
