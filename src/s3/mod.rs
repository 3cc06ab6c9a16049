//! An S3 API over object_store buckets, for S3 clients (feature `s3-front`).
//!
//! [`S3Front`] answers the S3 REST API (SigV4-signed, path-style or virtual-hosted-style)
//! from one or more buckets, each an `Arc<dyn ObjectStore>` and a prefix in it. It is a
//! plain tower service, so the [`OriginPullLayer`](crate::OriginPullLayer) wraps it like any
//! other: a `GetObject` or `HeadObject` that ends in `NoSuchKey` (`404`) is the layer's
//! trigger, and the pulled object is written where `S3Front` reads it.
//!
//! | operation | supported |
//! |---|---|
//! | `GetObject` (`Range`, `If-*`; `partNumber` → `NotImplemented`) | yes |
//! | `HeadObject` | yes |
//! | `PutObject` (user metadata, `Content-Type` and the representation headers; `If-None-Match: *`, other conditions → `NotImplemented`) | yes |
//! | `CopyObject` (`COPY` or `REPLACE` metadata) | yes |
//! | `DeleteObject`, `DeleteObjects` (a tombstone behind the layer) | yes |
//! | `ListObjectsV2` (`prefix`, `delimiter`, `start-after`, continuation; `list_merge`) | yes |
//! | `HeadBucket`, `ListBuckets`, `GetBucketLocation` | yes |
//! | `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`, `AbortMultipartUpload`, `ListParts` | yes |
//! | everything else (ACLs, versions, tagging, policies, `ListObjects` v1, ...) | `NotImplemented` |
//!
//! Every row is tested in `tests/s3_front.rs`, through object_store's `AmazonS3` client or
//! requests signed with its SigV4 signer, and with boto3, awscli and rclone (`real_s3_clients`).
//!
//! # Keys, and the layer around it
//!
//! A bucket `b` with prefix `p` keeps the object `k` at `p/k` in its store. Behind the
//! origin-pull layer the layer's key is the request path, `b/k` in path-style; so give the
//! bucket the prefix `b` on the layer's store ([`S3Bucket::behind_layer`]) and every pulled
//! object lands where the bucket reads it. A virtual-hosted-style request (`Host:
//! b.s3.example`) is first turned into path-style by [`PathStyle`], so rules see `b/k`
//! either way; `S3Front` restores the request as signed before checking its signature.
//! Rules match the bucket as the key's first segment (`Rule::prefix("b/")`) and drop it
//! with `Rewrite::identity().strip_prefix("b/")`.
//!
//! # ETags
//!
//! The `ETag` is the object's validator as [`ServeStore`](crate::ServeStore) serves it: for
//! a pulled object the origin's own (kept as reserved metadata), else the store's. It is the
//! MD5 of the bytes only when that validator is one: a client that compares a single-part
//! ETag with the MD5 of what it downloaded (rclone does when the ETag looks like an MD5) can
//! see a mismatch for a pulled object whose origin's ETag is 32 hex digits but not an MD5.
//! `ListObjectsV2` lists the store's ETag, which for a pulled object differs from the one
//! `HeadObject` answers; tools that compare size and time (`aws s3 sync` by default) are not
//! affected.
//!
//! # Security
//!
//! Every request is authenticated (SigV4 through `s3s`) before any operation runs, so an
//! unsigned or badly signed request is answered `403` and never reaches the `404` that
//! triggers a pull. Keys whose first segment is one of the crate's reserved prefixes
//! (`.origin-pull-…`) are refused (`400`), never listed and never pulled.

mod api;
mod list;
mod multipart;
mod object;
mod path_style;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use object_store::ObjectStore;
use object_store::path::Path;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tower_service::Service;

pub use self::path_style::{PathStyle, PathStyleLayer};
use crate::handle::OriginPullHandle;
use crate::{Error, HeadMiss, Origin, RangeMiss, Rewrite, Rule};

/// The rule that pulls the misses of bucket `bucket` (path-style key `bucket/k`, see the
/// [module docs](self)) from `origin`, as S3 clients need it:
///
/// - it matches the bucket as the key's first segment and asks the origin for `k`;
/// - `HEAD` of a cold key fills it (`HeadMiss::Fill`): clients `HEAD` before they `GET`;
/// - ranged `GET`s of a cold key join the one full fill whatever their offset
///   (`RangeMiss::JoinFill` with no limit on the wait), each streaming as soon as its bytes
///   are in the fill's spool, so parallel ranged downloads cost one origin fetch per key.
///
/// Further options go on the returned rule.
pub fn pull_rule(bucket: &str, origin: impl Origin) -> Rule {
    let segment = format!("{bucket}/");
    Rule::new(origin)
        .prefix(segment.clone())
        .rewrite(Rewrite::identity().strip_prefix(segment))
        .on_head(HeadMiss::Fill)
        // Every range joins the one fill, however far ahead it starts: each streams from the
        // fill's spool as soon as its bytes are there.
        .on_range(RangeMiss::JoinFill {
            max_wait: std::time::Duration::MAX,
        })
}

/// The body of every [`S3Front`] response.
pub type S3Body = s3s::Body;

/// One bucket of an [`S3Front`]: a store, a prefix in it, and the options of the bucket.
#[derive(Clone)]
pub struct S3Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) merge: Option<(Arc<dyn ObjectStore>, Path)>,
    pub(crate) sidecar: bool,
}

impl fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Bucket")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .field("list_merge", &self.merge.is_some())
            .finish()
    }
}

impl S3Bucket {
    /// A bucket whose objects are the whole of `store` (no prefix).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        // A local directory keeps attributes beside the object, as `BucketStore` writes them.
        let sidecar = store.to_string().contains("LocalFileSystem(");
        Self {
            store,
            prefix: Path::default(),
            merge: None,
            sidecar,
        }
    }

    /// The bucket `name` as the origin-pull layer over `store` (a `BucketStore` without a
    /// prefix) writes it: its objects under the prefix `name`, where a pulled `name/k` lands.
    pub fn behind_layer(store: Arc<dyn ObjectStore>, name: &str) -> Self {
        Self::new(store).with_prefix(Path::from(name))
    }

    /// Keep the bucket's objects under `prefix` in the store.
    #[must_use]
    pub fn with_prefix(mut self, prefix: Path) -> Self {
        self.prefix = prefix;
        self
    }

    /// `list_merge` (off by default): `ListObjectsV2` also lists the keys of the origin
    /// bucket `origin` (under `origin_prefix`, the key appended as the rule's rewrite would)
    /// that are not stored yet and not deleted, so clients see the whole bucket before it is
    /// copied. Costs one listing of the origin, and one of the tombstones, per page, on top
    /// of the store's own.
    #[must_use]
    pub fn list_merge(mut self, origin: Arc<dyn ObjectStore>, origin_prefix: Path) -> Self {
        self.merge = Some((origin, origin_prefix));
        self
    }

    /// Where `key` lives in the store.
    pub(crate) fn location(&self, key: &str) -> Result<Path, s3s::S3Error> {
        object::check_key(key)?;
        let full = if self.prefix.as_ref().is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|_| s3s::s3_error!(InvalidArgument, "not a valid key"))
    }
}

/// Builds an S3 API service over buckets; see the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use tower_origin_pull::s3::{S3Bucket, S3Front};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let store = Arc::new(InMemory::new());
/// let front = S3Front::builder()
///     .bucket("photos", S3Bucket::behind_layer(store, "photos"))
///     .key("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG")
///     .build()?;
/// # let _ = front; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct S3FrontBuilder {
    buckets: BTreeMap<String, S3Bucket>,
    keys: Vec<(String, String)>,
    domains: Vec<String>,
    handle: Option<OriginPullHandle>,
}

impl S3FrontBuilder {
    /// Serve `bucket` as the bucket named `name`.
    #[must_use]
    pub fn bucket(mut self, name: impl Into<String>, bucket: S3Bucket) -> Self {
        self.buckets.insert(name.into(), bucket);
        self
    }

    /// Accept requests signed with this access key and secret (SigV4). At least one key is
    /// required: `S3Front` never answers anonymous requests.
    #[must_use]
    pub fn key(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.keys.push((access_key.into(), secret_key.into()));
        self
    }

    /// Accept virtual-hosted-style requests for `<bucket>.<domain>` (e.g. `s3.example.com`).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domains.push(domain.into());
        self
    }

    /// Deletes go through the origin-pull layer's handle: a fill of the key in flight is
    /// cancelled and a tombstone is left, so the object is not pulled back. The layer's store
    /// must keep tombstones (`BucketStore::with_tombstones(true)`).
    #[must_use]
    pub fn pull_handle(mut self, handle: OriginPullHandle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// The service. Fails without buckets or without keys.
    pub fn build(self) -> Result<S3Front, Error> {
        if self.buckets.is_empty() {
            return Err(Error::config("S3Front needs at least one bucket"));
        }
        if self.keys.is_empty() {
            return Err(Error::config("S3Front needs at least one access key"));
        }
        let mut auth = SimpleAuth::new();
        for (access, secret) in self.keys {
            auth.register(access, secret.into());
        }
        let domains = self.domains.clone();
        let api = api::Api {
            buckets: Arc::new(self.buckets),
            handle: self.handle,
        };
        let mut builder = S3ServiceBuilder::new(api);
        builder.set_auth(auth);
        let domains = Arc::new(domains);
        builder.set_host(path_style::Domains(domains.clone()));
        Ok(S3Front {
            inner: builder.build(),
            domains,
        })
    }
}

/// The S3 API as a tower service; see the [module docs](self).
#[derive(Clone)]
pub struct S3Front {
    inner: S3Service,
    domains: Arc<Vec<String>>,
}

impl fmt::Debug for S3Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Front")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl S3Front {
    /// A builder with no bucket and no key.
    pub fn builder() -> S3FrontBuilder {
        S3FrontBuilder::default()
    }

    /// The layer that turns virtual-hosted-style requests for this front's domains into
    /// path-style ones before the origin-pull layer sees them (outermost).
    pub fn path_style(&self) -> PathStyleLayer {
        PathStyleLayer::new(self.domains.iter().cloned())
    }
}

impl<B> Service<Request<B>> for S3Front
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<S3Body>;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        path_style::restore(&mut req);
        Service::call(&mut self.inner, req)
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[test]
    fn a_front_needs_a_bucket_and_a_key() {
        let bucket = S3Bucket::new(Arc::new(InMemory::new()));
        let no_bucket = S3Front::builder().key("a", "b").build();
        assert!(no_bucket.unwrap_err().to_string().contains("bucket"));
        let no_key = S3Front::builder().bucket("b", bucket.clone()).build();
        assert!(no_key.unwrap_err().to_string().contains("access key"));
        assert!(
            S3Front::builder()
                .bucket("b", bucket)
                .key("a", "b")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn reserved_and_empty_keys_have_no_location() {
        let bucket = S3Bucket::behind_layer(Arc::new(InMemory::new()), "photos");
        assert_eq!(
            bucket.location("a/b.jpg").unwrap().as_ref(),
            "photos/a/b.jpg"
        );
        for key in [
            "",
            ".origin-pull-meta/x",
            ".origin-pull-uploads/1",
            ".origin-pull-anything",
        ] {
            assert!(bucket.location(key).is_err(), "{key:?}");
        }
    }
}
