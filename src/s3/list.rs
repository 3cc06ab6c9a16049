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
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last = None;
    let mut truncated = false;
    for (key, meta) in entries(bucket, &prefix).await? {
        let group = delimiter.as_deref().and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d)
                .map(|at| key[..prefix.len() + at + d.len()].to_owned())
        });
        let entry = group.clone().unwrap_or_else(|| key.clone());
        if after.as_deref().is_some_and(|a| entry.as_str() <= a) {
            continue;
        }
        if group.is_some() && prefixes.last() == group.as_ref() {
            continue;
        }
        if contents.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        last = Some(entry);
        match group {
            Some(group) => prefixes.push(group),
            None => contents.push(Object {
                key: Some(encode(&key)),
                size: i64::try_from(meta.size).ok(),
                last_modified: Some(timestamp(&meta)),
                e_tag: meta
                    .e_tag
                    .as_deref()
                    .map(|t| ETag::Strong(t.trim_matches('"').to_owned())),
                ..Object::default()
            }),
        }
    }
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
