//! [`BucketOrigin`]: another object_store bucket as an origin (bucket-to-bucket migration
//! with the source's own credentials).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderName, LAST_MODIFIED, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::{Origin, OriginRequest, OriginResponse};
use crate::Error;

/// An [`Origin`] reading from any `object_store` backend (S3, GCS, Azure, a local directory,
/// object_store's HTTP store), optionally below a prefix. Its content type, cache control,
/// content disposition/encoding/language and user metadata (as `x-amz-meta-*`) pass through
/// to the pull, so they are stored with the copy.
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use tower_origin_pull::{BucketOrigin, Rule};
///
/// let source = Arc::new(InMemory::new());
/// let rule = Rule::new(BucketOrigin::new(source).with_prefix("exports".into()));
/// ```
#[derive(Clone)]
pub struct BucketOrigin {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    public_url: Option<String>,
    budget: Option<Duration>,
}

/// The [`Origin::attempt_budget`] of a [`BucketOrigin`] whose client timeout is not known.
pub(crate) const DEFAULT_BUCKET_BUDGET: Duration = Duration::from_secs(60);

impl fmt::Debug for BucketOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketOrigin")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .field("public_url", &self.public_url)
            .field("budget", &self.budget)
            .finish()
    }
}

impl BucketOrigin {
    /// Read objects from `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            prefix: Path::default(),
            public_url: None,
            budget: None,
        }
    }

    /// Read key `k` at `prefix/k`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: Path) -> Self {
        self.prefix = prefix;
        self
    }

    /// The URL clients can be redirected to for a key (async and redirect modes): `base`
    /// followed by the key, each segment percent-encoded as in an HTTP origin's paths (what
    /// is not an RFC 3986 `pchar`), for example `https://bucket.s3.amazonaws.com/`.
    #[must_use]
    pub fn with_public_url(mut self, base: impl Into<String>) -> Self {
        self.public_url = Some(base.into());
        self
    }

    /// How long one fetch may take to get the object's head: the store client's request
    /// timeout (object_store's `timeout` client option), when you know it. Default 60 s.
    /// Readers of a fill wait for the head this long (see
    /// [`Origin::attempt_budget`]).
    #[must_use]
    pub fn with_attempt_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    fn location_of(&self, path: &str) -> Result<Path, Error> {
        let full = match self.prefix.as_ref() {
            "" => path.to_owned(),
            prefix => format!("{prefix}/{path}"),
        };
        Path::parse(&full).map_err(|e| Error::OriginRequest {
            url: format!("{}/{full}", self.store),
            source: e.into(),
        })
    }
}

/// A single range from a `Range` header, as object_store understands it.
fn get_range(headers: &HeaderMap) -> Option<GetRange> {
    let value = headers.get(RANGE)?.to_str().ok()?;
    let parsed = http_range_header::parse_range_header(value).ok()?;
    let [range] = parsed.ranges.as_slice() else {
        return None;
    };
    use http_range_header::{EndPosition, StartPosition};
    Some(match (range.start, range.end) {
        (StartPosition::Index(s), EndPosition::Index(e)) => GetRange::Bounded(s..e + 1),
        (StartPosition::Index(s), EndPosition::LastByte) => GetRange::Offset(s),
        (StartPosition::FromLast(n), _) => GetRange::Suffix(n),
    })
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

impl Origin for BucketOrigin {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        let this = self.clone();
        async move {
            let location = this.location_of(&request.path)?;
            let url = format!("{}/{location}", this.store);
            let range = get_range(&request.headers);
            let options = GetOptions {
                head: request.method == Method::HEAD,
                range: range.clone(),
                ..GetOptions::default()
            };
            let result = match this.store.get_opts(&location, options).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => {
                    let empty = futures::stream::empty().boxed();
                    return Ok(OriginResponse::new(
                        StatusCode::NOT_FOUND,
                        HeaderMap::new(),
                        Some(0),
                        empty,
                    ));
                }
                // A refused signature or missing permission says so, whole.
                Err(e) => {
                    return Err(Error::OriginRequest {
                        url,
                        source: super::tls::explain(&e).into(),
                    });
                }
            };
            let mut headers = HeaderMap::new();
            let size = result.meta.size;
            let span = result.range.clone();
            let length = span.end - span.start;
            insert(&mut headers, CONTENT_LENGTH, &length.to_string());
            if let Some(etag) = &result.meta.e_tag {
                insert(&mut headers, ETAG, etag);
            }
            let modified = httpdate::fmt_http_date(result.meta.last_modified.into());
            insert(&mut headers, LAST_MODIFIED, &modified);
            crate::fill::meta::insert_attribute_headers(&result.attributes, &mut headers);
            let status = if range.is_some() {
                let last = span.end.saturating_sub(1);
                insert(
                    &mut headers,
                    CONTENT_RANGE,
                    &format!("bytes {}-{last}/{size}", span.start),
                );
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            let body = if request.method == Method::HEAD {
                futures::stream::empty().boxed()
            } else {
                let url = url.clone();
                result
                    .into_stream()
                    .map_err(move |e| Error::OriginBody {
                        url: url.clone(),
                        received: 0,
                        source: e.into(),
                    })
                    .boxed()
            };
            Ok(OriginResponse::new(status, headers, Some(length), body))
        }
        .boxed()
    }

    /// The client timeout given to [`BucketOrigin::with_attempt_budget`], else 60 s.
    fn attempt_budget(&self) -> Duration {
        self.budget.unwrap_or(DEFAULT_BUCKET_BUDGET)
    }

    fn location(&self, request: &OriginRequest) -> Option<Uri> {
        let base = self.public_url.as_deref()?;
        let separator = if base.ends_with('/') { "" } else { "/" };
        let path: String = request
            .path
            .split('/')
            // As an HTTP origin's paths: everything but RFC 3986 `pchar` is encoded.
            .map(|s| percent_encoding::utf8_percent_encode(s, super::http::SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/");
        format!("{base}{separator}{path}").parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use object_store::memory::InMemory;

    use super::{BucketOrigin, DEFAULT_BUCKET_BUDGET};
    use crate::Origin;

    #[test]
    fn the_attempt_budget_is_the_client_timeout_or_a_minute() {
        let origin = BucketOrigin::new(Arc::new(InMemory::new()));
        assert_eq!(origin.attempt_budget(), DEFAULT_BUCKET_BUDGET);
        assert_eq!(DEFAULT_BUCKET_BUDGET, Duration::from_secs(60));
        let origin = origin.with_attempt_budget(Duration::from_secs(7));
        assert_eq!(origin.attempt_budget(), Duration::from_secs(7));
        // Through the forwarding impls too.
        let shared: Arc<dyn Origin> = Arc::new(origin);
        assert_eq!(shared.attempt_budget(), Duration::from_secs(7));
    }
}
