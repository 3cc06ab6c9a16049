//! The S3 operations `S3Front` answers; `s3s` answers `NotImplemented` for the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, PutMode};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use super::object::{self, Upload, etag_of, timestamp};
use super::{S3Bucket, list, multipart};
use crate::fill::meta::{ETAG_META, LAST_MODIFIED_META};
use crate::handle::OriginPullHandle;

/// The buckets, and the layer's handle for deletes.
pub(super) struct Api {
    pub(super) buckets: Arc<BTreeMap<String, S3Bucket>>,
    pub(super) handle: Option<OriginPullHandle>,
}

impl Api {
    fn bucket(&self, name: &str) -> S3Result<&S3Bucket> {
        self.buckets
            .get(name)
            .ok_or_else(|| s3_error!(NoSuchBucket))
    }

    fn locate(&self, name: &str, key: &str) -> S3Result<(&S3Bucket, Path)> {
        let bucket = self.bucket(name)?;
        Ok((bucket, bucket.location(key)?))
    }

    /// Delete `key`: through the layer's handle (cancel its fill, leave a tombstone) when
    /// there is one, then the object and what is kept beside it.
    async fn delete_key(&self, name: &str, key: &str) -> S3Result<()> {
        let (bucket, at) = self.locate(name, key)?;
        if let Some(handle) = &self.handle {
            handle.delete(at.as_ref()).await.map_err(|e| {
                tracing::warn!(error = %e, key = at.as_ref(), "S3Front delete");
                s3_error!(InternalError, "the delete failed")
            })?;
        }
        object::remove(bucket, &at).await
    }
}

fn etag(tag: Option<String>) -> Option<ETag> {
    tag.map(|t| ETag::Strong(t.trim_matches('"').to_owned()))
}

/// A copy's attributes: the source's without the origin's validators (the copy is a new
/// object, of its own time and tag).
fn copied(mut attributes: Attributes) -> Attributes {
    for name in [ETAG_META, LAST_MODIFIED_META] {
        attributes.remove(&Attribute::Metadata(name.into()));
    }
    attributes
}

#[async_trait::async_trait]
impl S3 for Api {
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        if req.input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "partNumber is not supported"));
        }
        let (bucket, at) = self.locate(&req.input.bucket, &req.input.key)?;
        let answer = object::read(bucket, &at, &req.headers, false).await?;
        let output = GetObjectOutput {
            body: answer.body,
            content_length: i64::try_from(answer.length).ok(),
            content_range: answer.range,
            e_tag: etag_of(&answer.headers),
            last_modified: Some(timestamp(&answer.meta)),
            ..GetObjectOutput::default()
        };
        let mut response = S3Response::new(output);
        response.headers = answer.headers;
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        if req.input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "partNumber is not supported"));
        }
        let (bucket, at) = self.locate(&req.input.bucket, &req.input.key)?;
        let answer = object::read(bucket, &at, &req.headers, true).await?;
        let output = HeadObjectOutput {
            content_length: i64::try_from(answer.length).ok(),
            content_range: answer.range,
            e_tag: etag_of(&answer.headers),
            last_modified: Some(timestamp(&answer.meta)),
            ..HeadObjectOutput::default()
        };
        let mut response = S3Response::new(output);
        response.headers = answer.headers;
        Ok(response)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let (bucket, at) = self.locate(&input.bucket, &input.key)?;
        let mode = match (&input.if_match, &input.if_none_match) {
            (None, None) => PutMode::Overwrite,
            (None, Some(ETagCondition::Any)) => PutMode::Create,
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "conditional writes other than If-None-Match: *"
                ));
            }
        };
        let attributes = Upload {
            content_type: input.content_type.as_deref(),
            cache_control: input.cache_control.as_deref(),
            content_disposition: input.content_disposition.as_deref(),
            content_encoding: input.content_encoding.as_deref(),
            content_language: input.content_language.as_deref(),
            metadata: input.metadata.as_ref(),
        }
        .attributes();
        let body = input
            .body
            .unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let meta = object::write(bucket, &at, body, (attributes, mode)).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: etag(meta.e_tag),
            size: i64::try_from(meta.size).ok(),
            ..PutObjectOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket {
            bucket: from, key, ..
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "copy from an access point"));
        };
        let (source, source_at) = self.locate(from, key)?;
        let (bucket, at) = self.locate(&input.bucket, &input.key)?;
        let (result, attributes) = object::look(source, &source_at, GetOptions::default()).await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let attributes = if replace {
            Upload {
                content_type: input.content_type.as_deref(),
                cache_control: input.cache_control.as_deref(),
                content_disposition: input.content_disposition.as_deref(),
                content_encoding: input.content_encoding.as_deref(),
                content_language: input.content_language.as_deref(),
                metadata: input.metadata.as_ref(),
            }
            .attributes()
        } else {
            copied(attributes)
        };
        let body = result.into_stream();
        let meta = object::write(bucket, &at, body, (attributes, PutMode::Overwrite)).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: etag(meta.e_tag.clone()),
                last_modified: Some(timestamp(&meta)),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_key(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            match self.delete_key(&input.bucket, &object.key).await {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..DeletedObject::default()
                }),
                Err(e) => errors.push(Error {
                    key: Some(object.key),
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    ..Error::default()
                }),
            }
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let name = req.input.bucket.clone();
        let bucket = self.bucket(&name)?;
        Ok(S3Response::new(
            list::list_v2(bucket, &name, req.input).await?,
        ))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .buckets
            .keys()
            .map(|name| Bucket {
                name: Some(name.clone()),
                ..Bucket::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..ListBucketsOutput::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let attributes = Upload {
            content_type: input.content_type.as_deref(),
            cache_control: input.cache_control.as_deref(),
            content_disposition: input.content_disposition.as_deref(),
            content_encoding: input.content_encoding.as_deref(),
            content_language: input.content_language.as_deref(),
            metadata: input.metadata.as_ref(),
        }
        .attributes();
        let id = multipart::create(bucket, &input.bucket, &input.key, &attributes).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let body = input
            .body
            .unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let ids = (
            input.bucket.as_str(),
            input.key.as_str(),
            input.upload_id.as_str(),
        );
        let tag = multipart::upload_part(bucket, ids, input.part_number, body).await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: etag(tag),
            ..UploadPartOutput::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let (bucket, at) = self.locate(&input.bucket, &input.key)?;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let ids = (
            input.bucket.as_str(),
            input.key.as_str(),
            input.upload_id.as_str(),
        );
        let meta = multipart::complete(bucket, ids, &at, parts).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: etag(meta.e_tag),
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let ids = (
            input.bucket.as_str(),
            input.key.as_str(),
            input.upload_id.as_str(),
        );
        multipart::abort(bucket, ids).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let ids = (
            input.bucket.as_str(),
            input.key.as_str(),
            input.upload_id.as_str(),
        );
        let parts = multipart::list_parts(bucket, ids).await?;
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            parts: Some(parts),
            is_truncated: Some(false),
            ..ListPartsOutput::default()
        }))
    }
}
