//! Where missing objects come from.
//!
//! An [`Origin`] fetches one object by path. [`HttpOrigin`] fetches from an HTTP(S) server
//! whose address is fixed in configuration: nothing in the client's request (its `Host`, an
//! absolute-form URI, forwarded headers) can change which host is asked.

mod bucket;
mod failover;
pub(crate) mod http;
mod idle;
pub(crate) mod tls;

use std::fmt;
use std::sync::Arc;

use ::http::uri::Scheme;
use ::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use self::bucket::BucketOrigin;
pub use self::failover::Origins;
pub use self::http::{HttpOrigin, HttpOriginBuilder, Protocol};
use crate::Error;

/// A request for one object, as the origin will see it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OriginRequest {
    /// `GET`, or `HEAD` (answering a `HEAD` miss from the origin).
    pub method: Method,
    /// The object's path below the origin's base, without a leading `/`, not percent-encoded
    /// (the origin encodes it).
    pub path: String,
    /// The query string to send, without the `?`, already encoded as it came from the client.
    pub query: Option<String>,
    /// Extra request headers (already filtered by the rule's header policy).
    pub headers: HeaderMap,
    /// The scheme the client used, when known (for origins whose protocol follows it).
    pub client_scheme: Option<Scheme>,
}

impl Default for OriginRequest {
    fn default() -> Self {
        Self {
            method: Method::GET,
            path: String::new(),
            query: None,
            headers: HeaderMap::new(),
            client_scheme: None,
        }
    }
}

impl OriginRequest {
    /// A request for `path` with no query string and no extra headers.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Set the query string (without the `?`).
    #[must_use]
    pub fn with_query(mut self, query: Option<String>) -> Self {
        self.query = query;
        self
    }

    /// Set the request headers.
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Set the method (`GET` or `HEAD`).
    #[must_use]
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// The origin's answer: status, headers and a streamed body.
#[non_exhaustive]
pub struct OriginResponse {
    /// The origin's status code.
    pub status: StatusCode,
    /// The origin's response headers.
    pub headers: HeaderMap,
    /// The body length the origin announced (`Content-Length`), if any.
    pub content_length: Option<u64>,
    /// The body, chunk by chunk. It ends with `None` only when the origin finished cleanly;
    /// any transport failure is an `Err` item.
    pub body: BoxStream<'static, Result<Bytes, Error>>,
}

impl OriginResponse {
    /// A response from its parts.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        content_length: Option<u64>,
        body: BoxStream<'static, Result<Bytes, Error>>,
    ) -> Self {
        Self {
            status,
            headers,
            content_length,
            body,
        }
    }
}

impl fmt::Debug for OriginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// A source of objects.
///
/// Object-safe so that rules can hold `Arc<dyn Origin>`; `Arc<O>` is an origin too, so one
/// origin can serve several rules.
pub trait Origin: fmt::Debug + Send + Sync + 'static {
    /// Fetch one object. The future resolves once the response headers are in; the body
    /// streams afterwards.
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>>;

    /// The URL a client can be redirected to for `request` ([`Mode::Async`] and
    /// [`Mode::Redirect`]); `None` if the origin cannot be reached by clients directly
    /// (the default). Built from configuration only, never from the client's request.
    ///
    /// [`Mode::Async`]: crate::Mode::Async
    /// [`Mode::Redirect`]: crate::Mode::Redirect
    fn location(&self, request: &OriginRequest) -> Option<::http::Uri> {
        let _ = request;
        None
    }

    /// The longest one [`fetch`](Origin::fetch) may take to resolve, every attempt included
    /// (connect and first byte, redirects, failover to other hosts, retries and their
    /// backoff). Readers of a fill wait for the origin's head at most this long (plus a
    /// margin for the store), unless
    /// [`OriginPullBuilder::head_timeout`](crate::OriginPullBuilder::head_timeout) says otherwise.
    /// The default, for origins that do not know, is 60 s.
    fn attempt_budget(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }
}

impl<O: Origin + ?Sized> Origin for Arc<O> {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        (**self).fetch(request)
    }

    fn location(&self, request: &OriginRequest) -> Option<::http::Uri> {
        (**self).location(request)
    }

    fn attempt_budget(&self) -> std::time::Duration {
        (**self).attempt_budget()
    }
}

impl<O: Origin + ?Sized> Origin for Box<O> {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        (**self).fetch(request)
    }

    fn location(&self, request: &OriginRequest) -> Option<::http::Uri> {
        (**self).location(request)
    }

    fn attempt_budget(&self) -> std::time::Duration {
        (**self).attempt_budget()
    }
}
