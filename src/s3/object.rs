//! Objects: read (with the representation `ServeStore` serves), write, copy, delete.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{HeaderMap, HeaderValue};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, GetResult, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use s3s::dto::{ETag, Metadata, StreamingBlob, Timestamp};
use s3s::{S3Error, S3Result, s3_error};

use super::S3Bucket;
use crate::serve::conditional::{self, Outcome};
use crate::serve::headers::Representation;
use crate::serve::range::{self, Decision};

/// Bodies up to this size are written with one `put`; larger ones in parts of this size.
pub(super) const PART: usize = 8 * 1024 * 1024;

/// Keys S3 clients may use: not empty, and not under one of the crate's reserved prefixes
/// (`.origin-pull-meta`, `.origin-pull-tombstones`, `.origin-pull-uploads`, ...).
pub(super) fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.split('/').next().is_some_and(is_reserved) {
        return Err(s3_error!(InvalidArgument, "this key is reserved"));
    }
    Ok(())
}

/// Whether a key segment names the crate's own bookkeeping.
pub(super) fn is_reserved(segment: &str) -> bool {
    segment.starts_with(".origin-pull-")
}

/// A store error as S3 reports it.
pub(super) fn store_error(e: object_store::Error) -> S3Error {
    match e {
        object_store::Error::NotFound { .. } => s3_error!(NoSuchKey),
        object_store::Error::Precondition { .. } => s3_error!(PreconditionFailed),
        object_store::Error::AlreadyExists { .. } => s3_error!(PreconditionFailed),
        e => {
            tracing::warn!(error = %e, "S3Front store failure");
            s3_error!(InternalError, "the store failed")
        }
    }
}

/// A store stream made `Sync` for `s3s` (it is only ever polled through `&mut`).
pub(super) struct SyncStream(Mutex<BoxStream<'static, object_store::Result<Bytes>>>);

impl Stream for SyncStream {
    type Item = object_store::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(stream) => stream.poll_next_unpin(cx),
            Err(_) => Poll::Ready(None),
        }
    }
}

/// The body of a store read.
pub(super) fn blob(result: GetResult) -> StreamingBlob {
    StreamingBlob::wrap(SyncStream(Mutex::new(result.into_stream())))
}

/// The object's metadata and attributes (those kept beside it on a local directory).
pub(super) async fn look(
    bucket: &S3Bucket,
    at: &Path,
    options: GetOptions,
) -> S3Result<(GetResult, Attributes)> {
    let result = bucket
        .store
        .get_opts(at, options)
        .await
        .map_err(store_error)?;
    let mut attributes = result.attributes.clone();
    if bucket.sidecar {
        if let Some(beside) = crate::store::sidecar::location(&Path::default(), at.as_ref()) {
            let size = result.meta.size;
            attributes = crate::store::sidecar::read(&*bucket.store, &beside, size).await;
        }
    }
    Ok((result, attributes))
}

/// What a `GetObject` or `HeadObject` answers: the representation, and for a `GET` the
/// bytes (whole or one range), decided as `ServeStore` decides.
pub(super) struct Answer {
    pub(super) headers: HeaderMap,
    pub(super) meta: ObjectMeta,
    pub(super) length: u64,
    pub(super) range: Option<String>,
    pub(super) body: Option<StreamingBlob>,
}

/// Read `at` for a request with `headers`: preconditions (`304`/`412`), the range (`416`),
/// and a read pinned to the version looked at.
pub(super) async fn read(
    bucket: &S3Bucket,
    at: &Path,
    headers: &HeaderMap,
    head: bool,
) -> S3Result<Answer> {
    let looked = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    let (result, attributes) = look(bucket, at, looked).await?;
    let r = Representation::new(at.as_ref(), &result.meta, &attributes);
    match conditional::evaluate(headers, &r.validators) {
        Outcome::Proceed => {}
        Outcome::NotModified => return Err(s3_error!(NotModified)),
        Outcome::Failed => return Err(s3_error!(PreconditionFailed)),
    }
    let decision = match headers.get(RANGE) {
        Some(value) if conditional::if_range_holds(headers, &r.validators) => {
            range::decide(value, r.size)
        }
        _ => Decision::Full,
    };
    let bytes = match decision {
        Decision::Full => 0..r.size,
        Decision::Partial(bytes) => bytes,
        Decision::Unsatisfiable => return Err(s3_error!(InvalidRange)),
    };
    let partial = (bytes.start, bytes.end) != (0, r.size);
    let range = partial.then(|| format!("bytes {}-{}/{}", bytes.start, bytes.end - 1, r.size));
    let mut answer = Answer {
        headers: r.headers.clone(),
        meta: result.meta,
        length: bytes.end - bytes.start,
        range,
        body: None,
    };
    if !head {
        let pinned = GetOptions {
            if_match: r.e_tag.clone(),
            range: partial.then_some(GetRange::Bounded(bytes)),
            ..GetOptions::default()
        };
        let result = bucket
            .store
            .get_opts(at, pinned)
            .await
            .map_err(store_error)?;
        answer.body = Some(blob(result));
    }
    answer.headers.insert(CONTENT_LENGTH, answer.length.into());
    if let Some(value) = answer.range.as_deref() {
        if let Ok(value) = HeaderValue::from_str(value) {
            answer.headers.insert(CONTENT_RANGE, value);
        }
    }
    Ok(answer)
}

/// The entity-tag an S3 response carries, from the representation's headers.
pub(super) fn etag_of(headers: &HeaderMap) -> Option<ETag> {
    ETag::parse_http_header(headers.get(http::header::ETAG)?.as_bytes()).ok()
}

/// The S3 time of an object's `Last-Modified` in the store.
pub(super) fn timestamp(meta: &ObjectMeta) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(meta.last_modified))
}

/// The attributes an upload sets: the representation headers and the user metadata.
pub(super) struct Upload<'a> {
    pub(super) content_type: Option<&'a str>,
    pub(super) cache_control: Option<&'a str>,
    pub(super) content_disposition: Option<&'a str>,
    pub(super) content_encoding: Option<&'a str>,
    pub(super) content_language: Option<&'a str>,
    pub(super) metadata: Option<&'a Metadata>,
}

impl Upload<'_> {
    pub(super) fn attributes(&self) -> Attributes {
        let mut out = Attributes::new();
        let fields = [
            (Attribute::ContentType, self.content_type),
            (Attribute::CacheControl, self.cache_control),
            (Attribute::ContentDisposition, self.content_disposition),
            (Attribute::ContentEncoding, self.content_encoding),
            (Attribute::ContentLanguage, self.content_language),
        ];
        for (attribute, value) in fields {
            if let Some(value) = value {
                out.insert(attribute, value.to_owned().into());
            }
        }
        for (name, value) in self.metadata.into_iter().flatten() {
            let name = name.to_ascii_lowercase();
            out.insert(Attribute::Metadata(name.into()), value.clone().into());
        }
        out
    }
}

/// Write `body` at `at` with `attributes` (beside it on a local directory): one `put` up to
/// [`PART`] bytes, else a multipart write, aborted on any failure. `PutMode::Create` is
/// atomic for one `put` and best effort (a look before the write) for a multipart one,
/// which object_store cannot make conditional.
pub(super) async fn write<S, E>(
    bucket: &S3Bucket,
    at: &Path,
    mut body: S,
    (attributes, mode): (Attributes, PutMode),
) -> S3Result<ObjectMeta>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let on_store = if bucket.sidecar {
        Attributes::new()
    } else {
        attributes.clone()
    };
    let mut first = Vec::new();
    let mut size = 0usize;
    while size <= PART {
        match body.next().await {
            Some(Ok(chunk)) => {
                size += chunk.len();
                first.push(chunk);
            }
            Some(Err(e)) => return Err(s3_error!(IncompleteBody, "{e}")),
            None => {
                let payload: PutPayload = first.into_iter().collect();
                let opts = PutOptions {
                    attributes: on_store,
                    mode,
                    ..PutOptions::default()
                };
                bucket
                    .store
                    .put_opts(at, payload, opts)
                    .await
                    .map_err(store_error)?;
                return finish(bucket, at, &attributes).await;
            }
        }
    }
    if matches!(mode, PutMode::Create) && bucket.store.head(at).await.is_ok() {
        return Err(s3_error!(PreconditionFailed));
    }
    let opts = PutMultipartOptions {
        attributes: on_store,
        ..PutMultipartOptions::default()
    };
    let upload = bucket
        .store
        .put_multipart_opts(at, opts)
        .await
        .map_err(store_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    for chunk in first {
        writer.put(chunk);
    }
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(s3_error!(IncompleteBody, "{e}"));
            }
        };
        if let Err(e) = writer.wait_for_capacity(2).await {
            let _ = writer.abort().await;
            return Err(store_error(e));
        }
        writer.put(chunk);
    }
    writer.finish().await.map_err(store_error)?;
    finish(bucket, at, &attributes).await
}

/// After a write: the attributes beside the object on a local directory, and its metadata.
async fn finish(bucket: &S3Bucket, at: &Path, attributes: &Attributes) -> S3Result<ObjectMeta> {
    let meta = bucket.store.head(at).await.map_err(store_error)?;
    if bucket.sidecar {
        if let Some(beside) = crate::store::sidecar::location(&Path::default(), at.as_ref()) {
            let bytes = crate::store::sidecar::encode(meta.size, attributes);
            bucket
                .store
                .put(&beside, bytes.into())
                .await
                .map_err(store_error)?;
        }
    }
    Ok(meta)
}

/// Delete the object at `at` (and what is kept beside it); a missing object is no error.
pub(super) async fn remove(bucket: &S3Bucket, at: &Path) -> S3Result<()> {
    match bucket.store.delete(at).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_error(e)),
    }
    if bucket.sidecar {
        if let Some(beside) = crate::store::sidecar::location(&Path::default(), at.as_ref()) {
            match bucket.store.delete(&beside).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
    }
    Ok(())
}
