//! Multipart uploads: each part an object under `.origin-pull-uploads/<id>/` at the store's
//! root, concatenated into the object (one multipart write of the store) on completion.
//!
//! object_store's multipart upload lives in one process and takes parts in order; S3
//! clients send parts as separate, parallel, unordered requests, so they are staged.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attributes, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode};
use s3s::dto::{CompletedPart, ETag, Part};
use s3s::{S3Result, s3_error};

use super::S3Bucket;
use super::object::{self, store_error, timestamp};
use crate::store::sidecar::{self, UPLOADS_PREFIX};

/// S3's bound on part numbers.
const MAX_PART: i32 = 10_000;

/// The staging bucket: the store's root, attributes in the store if at all.
fn staging(bucket: &S3Bucket) -> S3Bucket {
    S3Bucket {
        store: bucket.store.clone(),
        prefix: Path::default(),
        merge: None,
        sidecar: false,
    }
}

fn dir(id: &str) -> S3Result<Path> {
    let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(s3_error!(NoSuchUpload));
    }
    Ok(Path::from(format!("{UPLOADS_PREFIX}/{id}")))
}

fn part_at(id: &str, number: i32) -> S3Result<Path> {
    if !(1..=MAX_PART).contains(&number) {
        return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
    }
    Ok(dir(id)?.clone().join(format!("{number:05}")))
}

/// Start an upload of `key` in bucket `name` with `attributes`; its id.
pub(super) async fn create(
    bucket: &S3Bucket,
    name: &str,
    key: &str,
    attributes: &Attributes,
) -> S3Result<String> {
    object::check_key(key)?;
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let doc = serde_json::json!({
        "bucket": name,
        "key": key,
        "attributes": String::from_utf8_lossy(&sidecar::encode(0, attributes)),
    });
    let at = dir(&id)?.clone().join("upload");
    bucket
        .store
        .put(&at, Bytes::from(doc.to_string()).into())
        .await
        .map_err(store_error)?;
    Ok(id)
}

/// The attributes of the upload `id`, checked to be of `key` in bucket `name`.
async fn upload(bucket: &S3Bucket, name: &str, key: &str, id: &str) -> S3Result<Attributes> {
    let at = dir(id)?.clone().join("upload");
    let bytes = match bucket.store.get(&at).await {
        Ok(found) => found.bytes().await.map_err(store_error)?,
        Err(object_store::Error::NotFound { .. }) => return Err(s3_error!(NoSuchUpload)),
        Err(e) => return Err(store_error(e)),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| s3_error!(NoSuchUpload))?;
    if doc["bucket"] != name || doc["key"] != key {
        return Err(s3_error!(NoSuchUpload));
    }
    let attributes = doc["attributes"].as_str().unwrap_or("");
    Ok(sidecar::decode(attributes.as_bytes(), 0).unwrap_or_default())
}

/// Store part `number` of upload `id`; its ETag.
pub(super) async fn upload_part<S, E>(
    bucket: &S3Bucket,
    (name, key, id): (&str, &str, &str),
    number: i32,
    body: S,
) -> S3Result<Option<String>>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    upload(bucket, name, key, id).await?;
    let at = part_at(id, number)?;
    let meta = object::write(
        &staging(bucket),
        &at,
        body,
        (Attributes::new(), PutMode::Overwrite),
    )
    .await?;
    Ok(meta.e_tag)
}

/// The parts stored so far, in order.
async fn parts(bucket: &S3Bucket, id: &str) -> S3Result<Vec<(i32, ObjectMeta)>> {
    let found: Vec<ObjectMeta> = bucket
        .store
        .list(Some(&dir(id)?))
        .try_collect()
        .await
        .map_err(store_error)?;
    let mut out: Vec<(i32, ObjectMeta)> = found
        .into_iter()
        .filter_map(|m| Some((m.location.filename()?.parse().ok()?, m)))
        .collect();
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// `ListParts` of upload `id`.
pub(super) async fn list_parts(
    bucket: &S3Bucket,
    (name, key, id): (&str, &str, &str),
) -> S3Result<Vec<Part>> {
    upload(bucket, name, key, id).await?;
    Ok(parts(bucket, id)
        .await?
        .into_iter()
        .map(|(number, meta)| Part {
            part_number: Some(number),
            size: i64::try_from(meta.size).ok(),
            last_modified: Some(timestamp(&meta)),
            e_tag: meta
                .e_tag
                .map(|t| ETag::Strong(t.trim_matches('"').to_owned())),
            ..Part::default()
        })
        .collect())
}

/// Concatenate the `chosen` parts (ascending, each with the ETag the client was given) into
/// the object at `at`, then remove the upload.
pub(super) async fn complete(
    bucket: &S3Bucket,
    (name, key, id): (&str, &str, &str),
    at: &Path,
    chosen: Vec<CompletedPart>,
) -> S3Result<ObjectMeta> {
    let attributes = upload(bucket, name, key, id).await?;
    let stored = parts(bucket, id).await?;
    let mut locations = Vec::with_capacity(chosen.len());
    let mut previous = 0;
    for part in &chosen {
        let number = part.part_number.unwrap_or(0);
        if number <= previous {
            return Err(s3_error!(InvalidPartOrder));
        }
        previous = number;
        let Some((_, meta)) = stored.iter().find(|(n, _)| *n == number) else {
            return Err(s3_error!(InvalidPart));
        };
        let given = part.e_tag.as_ref().map(ETag::value);
        let ours = meta.e_tag.as_deref().map(|t| t.trim_matches('"'));
        if given.is_some() && given != ours {
            return Err(s3_error!(InvalidPart));
        }
        locations.push(meta.location.clone());
    }
    if locations.is_empty() {
        return Err(s3_error!(MalformedXML, "no parts"));
    }
    let body = Concat {
        store: bucket.store.clone(),
        rest: locations.into(),
        opening: None,
        current: None,
    };
    let meta = object::write(bucket, at, body, (attributes, PutMode::Overwrite)).await?;
    abort(bucket, (name, key, id)).await?;
    Ok(meta)
}

type PartStream = BoxStream<'static, object_store::Result<Bytes>>;

/// The bytes of the parts at `rest`, one after the other.
struct Concat {
    store: Arc<dyn ObjectStore>,
    rest: VecDeque<Path>,
    opening: Option<BoxFuture<'static, object_store::Result<PartStream>>>,
    current: Option<PartStream>,
}

impl Stream for Concat {
    type Item = object_store::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(current) = &mut this.current {
                match ready!(current.poll_next_unpin(cx)) {
                    Some(item) => return Poll::Ready(Some(item)),
                    None => this.current = None,
                }
            }
            if let Some(opening) = &mut this.opening {
                let opened = ready!(opening.as_mut().poll(cx));
                this.opening = None;
                match opened {
                    Ok(stream) => this.current = Some(stream),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
                continue;
            }
            let Some(at) = this.rest.pop_front() else {
                return Poll::Ready(None);
            };
            let store = this.store.clone();
            this.opening = Some(Box::pin(
                async move { Ok(store.get(&at).await?.into_stream()) },
            ));
        }
    }
}

/// Remove upload `id` and its parts.
pub(super) async fn abort(bucket: &S3Bucket, (name, key, id): (&str, &str, &str)) -> S3Result<()> {
    upload(bucket, name, key, id).await?;
    let found: Vec<ObjectMeta> = bucket
        .store
        .list(Some(&dir(id)?))
        .try_collect()
        .await
        .map_err(store_error)?;
    for meta in found {
        match bucket.store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
    }
    Ok(())
}
