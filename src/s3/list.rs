//! `ListObjectsV2`: the store's listing (and with `list_merge`, the origin's), filtered by
//! prefix, grouped by delimiter, paged by key.
//!
//! object_store lists by whole path segments and in no promised order, so a page lists the
//! segment that holds the prefix, sorts, and cuts: a page costs a listing of everything
//! under that segment. The continuation token is the last key (or common prefix) returned.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::S3Result;
use s3s::dto::{CommonPrefix, ETag, ListObjectsV2Input, ListObjectsV2Output, Object};

use super::S3Bucket;
use super::object::{is_reserved, store_error, timestamp};

const MAX_KEYS: i32 = 1000;

/// `encoding-type=url`: what S3 leaves unescaped in keys.
const URL_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Every key under `base` (relative to it) that starts with `prefix`, from `store`.
async fn keys_under(
    store: &dyn ObjectStore,
    base: &Path,
    prefix: &str,
) -> S3Result<BTreeMap<String, ObjectMeta>> {
    let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let joined = [base.as_ref(), dir]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let at = Path::from(joined);
    let found: Vec<ObjectMeta> = store
        .list(Some(&at))
        .try_collect()
        .await
        .map_err(store_error)?;
    let mut out = BTreeMap::new();
    for meta in found {
        let full = meta.location.as_ref();
        let key = if base.as_ref().is_empty() {
            full
        } else {
            match full
                .strip_prefix(base.as_ref())
                .and_then(|k| k.strip_prefix('/'))
            {
                Some(key) => key,
                None => continue,
            }
        };
        let reserved = key.split('/').next().is_some_and(is_reserved);
        if !reserved && key.starts_with(prefix) {
            out.insert(key.to_owned(), meta);
        }
    }
    Ok(out)
}

/// The keys to list: the store's, and with `list_merge` the origin's not stored and not
/// deleted.
async fn entries(bucket: &S3Bucket, prefix: &str) -> S3Result<BTreeMap<String, ObjectMeta>> {
    let mut keys = keys_under(&*bucket.store, &bucket.prefix, prefix).await?;
    let Some((origin, origin_prefix)) = &bucket.merge else {
        return Ok(keys);
    };
    let tombstones = if bucket.prefix.as_ref().is_empty() {
        Path::from(crate::store::TOMBSTONE_PREFIX)
    } else {
        Path::from(format!(
            "{}/{}",
            crate::store::TOMBSTONE_PREFIX,
            bucket.prefix
        ))
    };
    let deleted: BTreeSet<String> = keys_under(&*bucket.store, &tombstones, prefix)
        .await?
        .into_keys()
        .collect();
    for (key, meta) in keys_under(&**origin, origin_prefix, prefix).await? {
        if !deleted.contains(&key) {
            keys.entry(key).or_insert(meta);
        }
    }
    Ok(keys)
}

/// What one page lists, before encoding.
struct Page {
    contents: Vec<(String, ObjectMeta)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix listed: the continuation token.
    last: Option<String>,
}

/// The page of at most `max` entries after `after` of the sorted `entries`, keys grouped by
/// `delimiter` after `prefix` into common prefixes (each one entry).
fn cut(
    entries: BTreeMap<String, ObjectMeta>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page {
    let mut page = Page {
        contents: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    for (key, meta) in entries {
        if !key.starts_with(prefix) {
            continue;
        }
        let group = delimiter.and_then(|d| {
            let rest = key.get(prefix.len()..)?;
            let end = prefix.len() + rest.find(d)? + d.len();
            key.get(..end).map(str::to_owned)
        });
        let entry = group.clone().unwrap_or_else(|| key.clone());
        if after.is_some_and(|a| entry.as_str() <= a) {
            continue;
        }
        if group.is_some() && page.prefixes.last() == group.as_ref() {
            continue;
        }
        if page.contents.len() + page.prefixes.len() == max {
            page.truncated = true;
            break;
        }
        page.last = Some(entry);
        match group {
            Some(group) => page.prefixes.push(group),
            None => page.contents.push((key, meta)),
        }
    }
    page
}

/// One page of `ListObjectsV2` for the bucket `name`.
pub(super) async fn list_v2(
    bucket: &S3Bucket,
    name: &str,
    input: ListObjectsV2Input,
) -> S3Result<ListObjectsV2Output> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let max = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize;
    let after = match (&input.continuation_token, &input.start_after) {
        (Some(token), _) => Some(token.clone()),
        (None, after) => after.clone(),
    };
    let url = input
        .encoding_type
        .as_ref()
        .is_some_and(|e| e.as_str() == "url");
    let encode = |s: &str| {
        if url {
            utf8_percent_encode(s, URL_KEY).to_string()
        } else {
            s.to_owned()
        }
    };
    let page = cut(
        entries(bucket, &prefix).await?,
        &prefix,
        delimiter.as_deref(),
        after.as_deref(),
        max,
    );
    let (truncated, last) = (page.truncated, page.last);
    let prefixes = page.prefixes;
    let contents: Vec<Object> = page
        .contents
        .into_iter()
        .map(|(key, meta)| Object {
            key: Some(encode(&key)),
            size: i64::try_from(meta.size).ok(),
            last_modified: Some(timestamp(&meta)),
            e_tag: meta
                .e_tag
                .as_deref()
                .map(|t| ETag::Strong(t.trim_matches('"').to_owned())),
            ..Object::default()
        })
        .collect();
    let count = contents.len() + prefixes.len();
    Ok(ListObjectsV2Output {
        name: Some(name.to_owned()),
        prefix: Some(encode(&prefix)),
        delimiter: delimiter.as_deref().map(encode),
        max_keys: Some(max as i32),
        key_count: i32::try_from(count).ok(),
        continuation_token: input.continuation_token,
        start_after: input.start_after.as_deref().map(encode),
        is_truncated: Some(truncated),
        next_continuation_token: if truncated { last } else { None },
        encoding_type: input.encoding_type,
        contents: Some(contents),
        common_prefixes: Some(
            prefixes
                .iter()
                .map(|p| CommonPrefix {
                    prefix: Some(encode(p)),
                })
                .collect(),
        ),
        ..ListObjectsV2Output::default()
    })
}

#[cfg(test)]
mod tests {
    use object_store::path::Path;

    use super::*;

    fn entries(keys: &[&str]) -> BTreeMap<String, ObjectMeta> {
        keys.iter()
            .map(|k| {
                let meta = ObjectMeta {
                    location: Path::from(*k),
                    last_modified: "2026-01-01T00:00:00Z".parse().unwrap(),
                    size: 1,
                    e_tag: None,
                    version: None,
                };
                ((*k).to_owned(), meta)
            })
            .collect()
    }

    #[test]
    fn pages_continue_after_a_common_prefix_and_group_by_delimiter() {
        let all = entries(&["a/1", "a/2", "b", "c/1", "c/x/2", "d"]);
        let page = cut(all.clone(), "", Some("/"), None, 2);
        assert_eq!(page.prefixes, ["a/"]);
        assert_eq!(page.contents.len(), 1);
        assert!(page.truncated);
        assert_eq!(page.last.as_deref(), Some("b"));
        let next = cut(all.clone(), "", Some("/"), page.last.as_deref(), 2);
        assert_eq!(next.prefixes, ["c/"]);
        assert_eq!(next.contents[0].0, "d");
        assert!(!next.truncated);
        // Resuming after a common prefix skips every key in it.
        let after_group = cut(all.clone(), "", Some("/"), Some("a/"), 10);
        assert_eq!(after_group.contents[0].0, "b");
        // Inside a prefix, without a delimiter, keys as they are.
        let inside = cut(all, "c/", None, None, 10);
        let keys: Vec<_> = inside.contents.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["c/1", "c/x/2"]);
    }
}
