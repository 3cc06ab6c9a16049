//! [`ServeStore`]: the service, and the path of one request through it.

use std::convert::Infallible;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use object_store::path::Path;
use object_store::{Attributes, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt};
use tower_service::Service;

use super::body::ServeBody;
use super::conditional::{self, Outcome};
use super::future::ServeFuture;
use super::headers::Representation;
use super::local::{Local, Missing};
use super::range::{self, Decision};
use crate::key;

/// How often a read pinned to the version just looked at may find the object replaced
/// before the request gives up with `500`.
const ATTEMPTS: usize = 3;

/// Serves `GET` and `HEAD` for the objects of any `object_store` backend, with ranges and
/// conditional requests (RFC 9110); the rules are under [Behaviour](#behaviour).
///
/// The request path, decoded once and validated by [`key::parse`], is the object's key
/// (below an optional prefix). Objects are streamed, never read whole into memory. The
/// service never fails (`Error = Infallible`): store failures become `500` responses, so it
/// is usable as an axum fallback service and as the inner service of
/// [`OriginPullLayer`](crate::OriginPullLayer).
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use object_store::memory::InMemory;
/// use tower_origin_pull::{HttpOrigin, OriginPullBuilder, Rule, ServeStore};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let store = Arc::new(InMemory::new());
/// let app: Router = Router::new()
///     .fallback_service(ServeStore::new(store.clone()))
///     .layer(
///         OriginPullBuilder::from_object_store(store)
///             .rule(Rule::new(HttpOrigin::new("http://127.0.0.1:9000/")?))
///             .build(),
///     );
/// # Ok(()) }
/// ```
///
/// # Behaviour
///
/// | request | answer |
/// |---|---|
/// | `GET`/`HEAD` of a stored key | `200`, Content-Length, Content-Type, ETag, Last-Modified, Accept-Ranges, stored cache-control / content-disposition / content-encoding / content-language, `x-amz-meta-*` |
/// | missing key | `404` (so [`OriginPullLayer`](crate::OriginPullLayer) can pull it); on a local disk also a key that cannot be a file there (below a file, a directory, `<name>#<digits>`) |
/// | path that is not a clean key (`..`, `%2F`, control characters, ...) | `400` |
/// | other methods | `405` with `Allow: GET, HEAD` |
/// | the store fails | `500` with a one-line reason (details in the log) |
/// | failed `If-Match` / `If-Unmodified-Since` | `412` |
/// | matching `If-None-Match` / unchanged since `If-Modified-Since` | `304` with ETag, Last-Modified, Cache-Control |
/// | `GET` with one satisfiable range (and a matching `If-Range`, if any) | `206` with Content-Range |
/// | `GET` with no satisfiable range | `416` with `Content-Range: bytes */len` |
/// | `GET` with several satisfiable ranges, an unknown unit, a malformed header, or an `If-Range` that does not match | `200`, the whole object |
///
/// Preconditions are evaluated in the order of RFC 9110 §13.2.2 (If-Match, else
/// If-Unmodified-Since; then If-None-Match, else If-Modified-Since; then If-Range),
/// strong comparison for If-Match and If-Range, weak for If-None-Match, dates at
/// one-second resolution. `Range` is honoured for `GET` only, as RFC 9110 §14.2 defines it.
///
/// A plain `GET` or `HEAD` is one store request. A request with a precondition or a range
/// first reads the object's metadata, decides, and then reads the bytes pinned to the ETag
/// it decided on (`GetOptions::if_match`), so the answer never mixes two versions of an
/// object that is replaced meanwhile; a replaced object is looked at again. On a local
/// directory every request is one lookup (open, stat, the metadata beside the object, and
/// an object up to 64 KiB read whole; see [`ServeStore::inline_local_reads`]), and the bytes
/// come from the file it opened, which a replacement (a rename) does not change.
///
/// ## Where it differs from tower-http's `ServeDir`, and why
///
/// The same table of RFC 9110 cases runs against both (`tests/serve_store.rs`). They
/// differ where `ServeDir` departs from the RFC:
///
/// - **A suffix longer than the object** (`bytes=-500` of 100 bytes): RFC 9110 §14.1.1
///   says the whole representation is used, so `206 bytes 0-99/100`; `ServeDir` answers `416`.
/// - **Several ranges**: `ServeDir` answers `416`, which tells the client its ranges can
///   never be satisfied although they can; we send the whole object with `200`, which
///   §14.2 allows (a server MAY ignore `Range`).
/// - **A malformed `Range` or an unknown range unit** (`items=0-5`, `bytes=5-3`): §14.2 says
///   a server MUST ignore a unit it does not understand, and MAY ignore an invalid
///   specifier; `ServeDir` answers `416`, we answer `200`.
/// - **`Range` on `HEAD`**: range handling is defined for `GET` only (§14.2), so a `HEAD`
///   gets the `200` headers; `ServeDir` answers `206`.
/// - **A range of an empty object**: no range of a zero-length representation is
///   satisfiable (§14.1.1): `416 bytes */0`; `ServeDir` answers `206` with an impossible
///   `Content-Range: bytes 0-0/0`.
/// - **`If-Range`**: a validator that does not match means the whole object with `200`
///   (§13.1.5); `ServeDir` ignores `If-Range` and answers `206` with the bytes of the
///   changed object, which a client would splice into its stale copy.
#[derive(Clone)]
pub struct ServeStore {
    store: Arc<dyn ObjectStore>,
    prefix: Arc<Path>,
    /// The backend keeps no attributes (a local disk): read them from beside the object.
    sidecar: bool,
    /// The backend is a local directory, served directly (see [`super::local`]).
    local: Option<Arc<Local>>,
    /// Look local objects up on the runtime thread ([`ServeStore::inline_local_reads`]).
    inline: bool,
}

impl fmt::Debug for ServeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeStore")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .field("sidecar", &self.sidecar)
            .field("inline", &self.inline)
            .finish()
    }
}

impl ServeStore {
    /// Serve the objects of `store`, the request path being the key.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let sidecar = store.to_string().contains("LocalFileSystem(");
        let local = Local::of(&*store).map(Arc::new);
        Self {
            store,
            prefix: Arc::default(),
            sidecar,
            local,
            inline: false,
        }
    }

    /// Serve key `k` from `prefix/k` (as [`BucketStore::with_prefix`](crate::BucketStore::with_prefix)
    /// stores it).
    #[must_use]
    pub fn with_prefix(mut self, prefix: Path) -> Self {
        self.prefix = Arc::new(prefix);
        self
    }

    /// On a local directory, look small objects up on the runtime's own thread instead of
    /// handing each request to tokio's blocking pool (default `false`).
    ///
    /// The lookup — open, stat, the metadata beside the object, and the bytes of an object
    /// up to 64 KiB — is a few system calls that the page cache usually answers in
    /// microseconds, and a hand-off to the pool and back costs more than that (a third of
    /// the throughput of 4 KiB hits, measured: BENCHMARKS.md). nginx reads this way too.
    /// The price: while a disk is slow to answer (a cold spinning disk, a network file
    /// system), the runtime thread waits with it, and so do the other requests on it. Larger
    /// objects are always streamed through the pool. Other backends are not affected.
    #[must_use]
    pub fn inline_local_reads(mut self, yes: bool) -> Self {
        self.inline = yes;
        self
    }

    /// The backend served.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn location(&self, key: &str) -> Option<Path> {
        let full = if self.prefix.as_ref().as_ref().is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(full).ok()
    }
}

impl<B> Service<Request<B>> for ServeStore {
    type Response = Response<ServeBody>;
    type Error = Infallible;
    type Future = ServeFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ServeFuture {
        let (parts, _body) = req.into_parts();
        let head = match parts.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut res = message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return ServeFuture::ready(res);
            }
        };
        // A local directory needs no object_store `Path` (parsing one costs a hit more than
        // the lookup's own work): its keys are the files' names below the root.
        let found = key::parse(parts.uri.path()).and_then(|key| {
            let location = match self.local {
                Some(_) => Path::default(),
                None => self.location(&key)?,
            };
            Some((location, key))
        });
        let Some((location, key)) = found else {
            return ServeFuture::ready(message(StatusCode::BAD_REQUEST, "not a valid key\n"));
        };
        // The crate's own bookkeeping (tombstones, metadata) is never served as an object.
        if crate::store::sidecar::reserved(&key) {
            return ServeFuture::ready(message(StatusCode::NOT_FOUND, "not found\n"));
        }
        let store = self.store.clone();
        let sidecar = (self.sidecar && self.local.is_none())
            .then(|| crate::store::sidecar::location(&self.prefix, &key))
            .flatten();
        let local = self.local.clone().map(|local| {
            // The object and its metadata below the prefix, as keys (no `Path` parsing).
            let file = if self.prefix.as_ref().as_ref().is_empty() {
                key.clone()
            } else {
                format!("{}/{key}", self.prefix)
            };
            (local, file)
        });
        let prefix = self.prefix.clone();
        let inline = self.inline;
        ServeFuture::new(
            async move {
                let request = Get {
                    store: &*store,
                    location: &location,
                    sidecar: sidecar.as_ref(),
                    local: local.as_ref(),
                    prefix: &prefix,
                    inline,
                    key: &key,
                    head,
                    headers: &parts.headers,
                };
                let mut response = request.respond().await;
                // A miss hands the layer the key it was looked up under, with the path it
                // came from, so the layer need not parse the same path again.
                if let Some(checked) = response.extensions_mut().get_mut::<StoreChecked>() {
                    checked.parsed = Some((parts.uri, key));
                }
                response
            }
            .boxed(),
        )
    }
}

/// One `GET` or `HEAD` of a valid key.
struct Get<'a> {
    store: &'a dyn ObjectStore,
    location: &'a Path,
    /// Where the object's metadata is kept beside it, on a backend without attributes.
    sidecar: Option<&'a Path>,
    /// A local directory served directly, with the object's and its metadata's keys below
    /// the store's root.
    local: Option<&'a (Arc<Local>, String)>,
    /// The store's prefix (for the metadata's key, made only when it is read).
    prefix: &'a Path,
    /// Its lookups on the runtime thread.
    inline: bool,
    key: &'a str,
    head: bool,
    headers: &'a HeaderMap,
}

impl Get<'_> {
    async fn respond(&self) -> Response<ServeBody> {
        if let Some((local, file)) = self.local {
            return self.respond_local(local.clone(), file).await;
        }
        let ranged = !self.head && self.headers.contains_key(RANGE);
        if !ranged && !conditional::any(self.headers) {
            let options = GetOptions {
                head: self.head,
                ..GetOptions::default()
            };
            return match self.get_with_meta(options).await {
                Ok((result, attributes)) => {
                    let r = Representation::new(self.key, &result.meta, &attributes);
                    self.send(StatusCode::OK, &r, result)
                }
                Err(e) => self.failed(e),
            };
        }
        for _ in 0..ATTEMPTS {
            let looked = GetOptions {
                head: true,
                ..GetOptions::default()
            };
            let r = match self.get_with_meta(looked).await {
                Ok((result, attributes)) => {
                    Representation::new(self.key, &result.meta, &attributes)
                }
                Err(e) => return self.failed(e),
            };
            let (code, range) = match self.decide(&r) {
                Ok(decided) => decided,
                Err(answered) => return answered,
            };
            let pinned = GetOptions {
                if_match: r.e_tag.clone(),
                range: range.map(GetRange::Bounded),
                ..GetOptions::default()
            };
            match self.store.get_opts(self.location, pinned).await {
                Ok(result) => return self.send(code, &r, result),
                // Replaced since we looked: decide again on the new version.
                Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return self.failed(e),
            }
        }
        tracing::warn!(key = self.key, "object kept changing while being served");
        message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the object kept changing while being read\n",
        )
    }

    /// The preconditions, `HEAD` and the range decided on the representation `r`: the status
    /// and the bytes to send, or the whole answer (`304`, `412`, `416`, a `HEAD`'s `200`).
    #[allow(clippy::result_large_err)]
    fn decide(
        &self,
        r: &Representation,
    ) -> Result<(StatusCode, Option<Range<u64>>), Response<ServeBody>> {
        match conditional::evaluate(self.headers, &r.validators) {
            Outcome::Proceed => {}
            Outcome::NotModified => {
                let mut res = status(StatusCode::NOT_MODIFIED, ServeBody::empty());
                *res.headers_mut() = r.not_modified_headers();
                return Err(res);
            }
            Outcome::Failed => {
                return Err(message(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed\n",
                ));
            }
        }
        if self.head {
            let mut res = status(StatusCode::OK, ServeBody::empty());
            *res.headers_mut() = r.headers.clone();
            res.headers_mut().insert(CONTENT_LENGTH, r.size.into());
            return Err(res);
        }
        let decision = match self.headers.get(RANGE) {
            Some(range) if conditional::if_range_holds(self.headers, &r.validators) => {
                range::decide(range, r.size)
            }
            _ => Decision::Full,
        };
        match decision {
            Decision::Full => Ok((StatusCode::OK, None)),
            Decision::Partial(bytes) => Ok((StatusCode::PARTIAL_CONTENT, Some(bytes))),
            Decision::Unsatisfiable => {
                let mut res = status(StatusCode::RANGE_NOT_SATISFIABLE, ServeBody::empty());
                let all = format!("bytes */{}", r.size);
                if let Ok(value) = HeaderValue::from_str(&all) {
                    res.headers_mut().insert(CONTENT_RANGE, value);
                }
                Err(res)
            }
        }
    }

    /// A local directory: one blocking lookup (see [`super::local`]), then the same
    /// decisions, and the bytes from memory (small objects) or the file already open.
    async fn respond_local(&self, local: Arc<Local>, file: &str) -> Response<ServeBody> {
        let whole = !self.head;
        // The metadata's key is made only if its file is read (not on a miss, not for an
        // object version whose metadata is remembered).
        let looked = if self.inline {
            Ok(local.look(
                file,
                || crate::store::sidecar::key_of(self.prefix, self.key),
                whole,
            ))
        } else {
            let (file, prefix, key) =
                (file.to_owned(), self.prefix.to_owned(), self.key.to_owned());
            tokio::task::spawn_blocking(move || {
                local.look(
                    &file,
                    || crate::store::sidecar::key_of(&prefix, &key),
                    whole,
                )
            })
            .await
        };
        let looked = match looked {
            Ok(Ok(looked)) => looked,
            Ok(Err(Missing::NotFound)) => {
                return missing();
            }
            Ok(Err(Missing::Failed(e))) => {
                tracing::error!(key = self.key, error = %e, "serving from the local store failed");
                let reason = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "the store denied the read\n"
                } else {
                    "the store failed to read the object\n"
                };
                return message(StatusCode::INTERNAL_SERVER_ERROR, reason);
            }
            Err(e) => {
                tracing::error!(key = self.key, error = %e, "the local lookup did not finish");
                return message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store failed to read the object\n",
                );
            }
        };
        let r = Representation::from_parts(
            self.key,
            looked.size,
            looked.last_modified,
            Some(looked.e_tag.clone()),
            &looked.attributes,
        );
        let (code, range) = match self.decide(&r) {
            Ok(decided) => decided,
            Err(answered) => return answered,
        };
        let bytes = range.unwrap_or(0..r.size);
        let length = bytes.end - bytes.start;
        let body = match looked.bytes {
            Some(all) => ServeBody::message(all.slice(bytes.start as usize..bytes.end as usize)),
            None => ServeBody::stream(
                super::body::file_stream(looked.file, looked.path, bytes.clone()),
                length,
            ),
        };
        self.answer(code, &r, body, bytes)
    }

    /// The object (or its metadata) and its attributes: the store's, or on a backend
    /// without attributes those kept beside it, read at the same time.
    async fn get_with_meta(
        &self,
        options: GetOptions,
    ) -> object_store::Result<(GetResult, Attributes)> {
        let Some(at) = self.sidecar else {
            let result = self.store.get_opts(self.location, options).await?;
            let attributes = result.attributes.clone();
            return Ok((result, attributes));
        };
        let meta = async {
            match self.store.get(at).await {
                Ok(found) => found.bytes().await.ok(),
                Err(_) => None,
            }
        };
        let (result, meta) =
            futures::future::join(self.store.get_opts(self.location, options), meta).await;
        let result = result?;
        let attributes = meta
            .and_then(|bytes| crate::store::sidecar::decode(&bytes, result.meta.size))
            .unwrap_or_else(|| result.attributes.clone());
        Ok((result, attributes))
    }

    /// A `200` or `206` with the bytes of `result`.
    fn send(&self, code: StatusCode, r: &Representation, result: GetResult) -> Response<ServeBody> {
        let bytes = result.range.clone();
        let length = bytes.end - bytes.start;
        let body = if self.head {
            ServeBody::empty()
        } else {
            ServeBody::stream(super::body::result_stream(result), length)
        };
        self.answer(code, r, body, bytes)
    }

    /// A `200` or `206` with `body`, the bytes `bytes` of the representation `r`.
    fn answer(
        &self,
        code: StatusCode,
        r: &Representation,
        body: ServeBody,
        bytes: Range<u64>,
    ) -> Response<ServeBody> {
        let length = bytes.end - bytes.start;
        let mut res = status(code, body);
        *res.headers_mut() = r.headers.clone();
        res.headers_mut().insert(CONTENT_LENGTH, length.into());
        if code == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {}-{}/{}", bytes.start, bytes.end - 1, r.size);
            if let Ok(value) = HeaderValue::from_str(&range) {
                res.headers_mut().insert(CONTENT_RANGE, value);
            }
        }
        res
    }

    /// `404` for a missing object, else `500` with a one-line reason (the details, which may
    /// name buckets and endpoints, go to the log only). On a local disk, a key that cannot
    /// be a file there (a path through a file, a directory, a staging name `<key>#<n>`) is
    /// missing too: the layer pulls it, it is never a `500`.
    fn failed(&self, e: object_store::Error) -> Response<ServeBody> {
        if crate::BucketStore::is_local_miss(&e, self.key) {
            return missing();
        }
        let reason = match e {
            object_store::Error::NotFound { .. } => {
                return missing();
            }
            object_store::Error::PermissionDenied { .. } => "the store denied the read\n",
            object_store::Error::Unauthenticated { .. } => "the store refused our credentials\n",
            _ => "the store failed to read the object\n",
        };
        tracing::error!(key = self.key, error = %e, "serving from the store failed");
        message(StatusCode::INTERNAL_SERVER_ERROR, reason)
    }
}

fn status(code: StatusCode, body: ServeBody) -> Response<ServeBody> {
    let mut res = Response::new(body);
    *res.status_mut() = code;
    res
}

/// A response extension on `ServeStore`'s `404` for a key it looked up in the store just
/// now. When the path it parsed the key from is the layer's request path, the layer takes
/// the key from here and its fill skips its own re-check of the store; otherwise (a service
/// between them rewrote the path) neither (see ARCHITECTURE.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreChecked {
    /// The request URI `ServeStore` was asked for, and the key it parsed from its path.
    pub(crate) parsed: Option<(http::Uri, String)>,
}

impl StoreChecked {
    /// The key, if it was parsed from `path`: the same path gives the same key
    /// ([`key::parse`] is a function of the path alone), while a service between the layer
    /// and `ServeStore` that rewrote the path (a nest, a prefix) made it another key.
    pub(crate) fn key_for(self, path: &str) -> Option<String> {
        self.parsed
            .filter(|(uri, _)| uri.path() == path)
            .map(|(_, key)| key)
    }
}

/// `404` for a key the store does not have, marked [`StoreChecked`].
fn missing() -> Response<ServeBody> {
    let mut res = message(StatusCode::NOT_FOUND, "no such object\n");
    res.extensions_mut().insert(StoreChecked::default());
    res
}

fn message(code: StatusCode, text: &'static str) -> Response<ServeBody> {
    let mut res = status(code, ServeBody::message(text));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
