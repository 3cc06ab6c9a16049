//! [`OriginPull`]: the hit path, and handing misses to the fill.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::{Captured, ResponseFuture};
use crate::layer::OriginPullLayer;

/// Middleware that pulls missing objects from an origin; see [`OriginPullLayer`].
///
/// Requests that no rule could match (other methods, or no rules) go straight to the inner
/// service. For the others the request's method, URI and `Range` are remembered (refcounts;
/// the headers too when a rule reads them; when a rule keys request input, the inner
/// service is asked for the request's variant), the inner service answers, and only a
/// response whose status triggers a rule goes further. The service's error type is the inner service's: the middleware's own
/// failures become responses (`502`) or body errors.
#[derive(Clone, Debug)]
pub struct OriginPull<S> {
    inner: S,
    layer: OriginPullLayer,
}

impl<S> OriginPull<S> {
    /// Wrap `inner` with the configuration in `layer`.
    pub fn new(inner: S, layer: OriginPullLayer) -> Self {
        Self { inner, layer }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginPull<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let engine = &self.layer.engine;
        let captured = engine.wants(req.method()).then(|| Captured {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: engine.needs_headers.then(|| Box::new(headers_of(&req))),
            conditions: range_and_conditions(req.headers()),
            engine: engine.clone(),
        });
        // A variant of a key (a rule keys some of the request's input) is its own object:
        // the inner service is asked for the variant's key.
        if let Some(c) = &captured {
            if let Some(path) = engine.variant_path(&c.method, &c.uri, c.headers.as_deref()) {
                if let Ok(uri) = http::Uri::builder().path_and_query(path).build() {
                    *req.uri_mut() = uri;
                }
            }
        }
        ResponseFuture::new(self.inner.call(req), captured)
    }
}

/// The request's `Range` and preconditions (`If-*`; `None`, and nothing copied, when it has
/// none). Most requests carry none, so the names are scanned first (one pass over the map's
/// entries, no hashing); only a request that has one pays for the copy.
fn range_and_conditions(headers: &http::HeaderMap) -> Option<Box<http::HeaderMap>> {
    use http::header::{
        HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
        RANGE,
    };
    fn wanted(name: &HeaderName) -> bool {
        *name == RANGE
            || *name == IF_MATCH
            || *name == IF_NONE_MATCH
            || *name == IF_MODIFIED_SINCE
            || *name == IF_UNMODIFIED_SINCE
            || *name == IF_RANGE
    }
    if !headers.keys().any(wanted) {
        return None;
    }
    let mut conditions = Box::new(http::HeaderMap::new());
    for (name, value) in headers {
        if wanted(name) {
            conditions.append(name.clone(), value.clone());
        }
    }
    Some(conditions)
}

/// The request's headers for rules that read them; an HTTP/2 request carries its host as
/// the URI's authority (`:authority`), not a `Host` header, so it is added as one here and
/// host conditions hold for both protocols.
fn headers_of<B>(req: &Request<B>) -> http::HeaderMap {
    let mut headers = req.headers().clone();
    if !headers.contains_key(http::header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(http::header::HOST, host);
        }
    }
    headers
}
