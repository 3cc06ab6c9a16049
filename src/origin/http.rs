//! [`HttpOrigin`]: an HTTP(S) server fixed in configuration, over hyper-util's pooled client.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use http::header::{CONTENT_LENGTH, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body::Body;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{Origin, OriginRequest, OriginResponse};
use crate::Error;

#[cfg(feature = "rustls")]
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
pub(crate) type Connector = HttpConnector;

/// The connector every outgoing request of the crate uses: TCP with `TCP_NODELAY` and a
/// connect timeout, and TLS (rustls, webpki roots, ALPN h2/http1.1) for `https`.
pub(crate) fn make_connector(connect_timeout: Duration) -> Result<Connector, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    connector(http)
}

/// Characters percent-encoded in each path segment sent to the origin: everything but
/// RFC 3986 `pchar` (unreserved, sub-delims, `:` and `@`). Non-ASCII is always encoded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An origin reached over HTTP/1.1 or HTTP/2, `http://` or `https://` (rustls, webpki roots).
///
/// The scheme, host, port and base path come from the URL given here and nowhere else.
/// Connections are pooled per origin. Build one and share it (`Arc` or clone: clones share
/// the pool).
///
/// ```
/// use std::time::Duration;
/// use tower_origin_pull::HttpOrigin;
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let origin = HttpOrigin::builder("http://127.0.0.1:8080/bucket")
///     .connect_timeout(Duration::from_secs(2))
///     .first_byte_timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpOrigin {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    client: Client<Connector, Empty<Bytes>>,
}

/// Settings for an [`HttpOrigin`]; see [`HttpOrigin::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpOriginBuilder {
    base_url: String,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    http2_prior_knowledge: bool,
}

impl HttpOrigin {
    /// An origin at `base_url` (`http://host:port/optional/base/path`) with default timeouts.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::builder(base_url).build()
    }

    /// Start configuring an origin at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> HttpOriginBuilder {
        HttpOriginBuilder {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            http2_prior_knowledge: false,
        }
    }

    /// The URL requested for `path` (and `query`), always on the configured host.
    pub fn url_for(&self, path: &str, query: Option<&str>) -> Result<Uri, Error> {
        let mut pq = self.base_path.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            pq.push('/');
            pq.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if pq.is_empty() {
            pq.push('/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq).map_err(|e| Error::OriginRequest {
            url: format!("{}://{}{}", self.scheme, self.authority, self.base_path),
            source: e.into(),
        })?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| Error::OriginRequest {
                url: format!("{}://{}{}", self.scheme, self.authority, self.base_path),
                source: e.into(),
            })
    }
}

impl HttpOriginBuilder {
    /// How long connecting (TCP, and TLS for `https`) may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long until the origin's response headers arrive, connecting included (default 30 s).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// How long the body may go without a byte before the fill fails (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept (default 64).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Speak HTTP/2 without negotiation (h2c) to an `http://` origin (default `false`;
    /// `https://` origins negotiate HTTP/2 or HTTP/1.1 through ALPN either way).
    pub fn http2_prior_knowledge(mut self, yes: bool) -> Self {
        self.http2_prior_knowledge = yes;
        self
    }

    /// Check the URL and build the origin.
    pub fn build(self) -> Result<HttpOrigin, Error> {
        let bad = |why: &str| Error::config(format!("origin URL {:?}: {why}", self.base_url));
        let uri: Uri = self.base_url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("scheme must be http or https"));
        }
        if scheme == Scheme::HTTPS && cfg!(not(feature = "rustls")) {
            return Err(bad("https needs the `rustls` feature"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL cannot have a query string"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();

        let connector = make_connector(self.connect_timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_prior_knowledge)
            .build(connector);
        Ok(HttpOrigin {
            scheme,
            authority,
            base_path,
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
            client,
        })
    }
}

#[cfg(feature = "rustls")]
fn connector(http: HttpConnector) -> Result<Connector, Error> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

#[cfg(not(feature = "rustls"))]
fn connector(http: HttpConnector) -> Result<Connector, Error> {
    Ok(http)
}

impl Origin for HttpOrigin {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        let uri = self.url_for(&request.path, request.query.as_deref());
        let this = self.clone();
        async move {
            let uri = uri?;
            let url = format!("{}://{}{}", this.scheme, this.authority, uri.path());
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(uri)
                .body(Empty::new())
                .map_err(|e| Error::OriginRequest {
                    url: url.clone(),
                    source: e.into(),
                })?;
            *req.headers_mut() = request.headers;
            // The Host always names the configured origin, never the client's host.
            req.headers_mut().remove(HOST);
            if let Ok(host) = HeaderValue::from_str(this.authority.as_str()) {
                req.headers_mut().insert(HOST, host);
            }
            let response = tokio::time::timeout(this.first_byte_timeout, this.client.request(req))
                .await
                .map_err(|_| Error::OriginTimeout {
                    url: url.clone(),
                    timeout: this.first_byte_timeout,
                })?
                .map_err(|e| Error::OriginRequest {
                    url: url.clone(),
                    source: e.into(),
                })?;
            let (parts, body) = response.into_parts();
            let content_length = content_length(&parts.headers);
            let body = IdleBody {
                body,
                sleep: tokio::time::sleep(this.idle_timeout),
                idle: this.idle_timeout,
                url,
                received: 0,
                done: false,
            };
            Ok(OriginResponse::new(
                parts.status,
                parts.headers,
                content_length,
                Box::pin(body),
            ))
        }
        .boxed()
    }

    fn location(&self, request: &OriginRequest) -> Option<Uri> {
        self.url_for(&request.path, request.query.as_deref()).ok()
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pin_project! {
    /// The origin's body as a stream of chunks that fails when no byte arrives for `idle`.
    struct IdleBody {
        #[pin]
        body: Incoming,
        #[pin]
        sleep: Sleep,
        idle: Duration,
        url: String,
        received: u64,
        done: bool,
    }
}

impl Stream for IdleBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.sleep.as_mut().reset(Instant::now() + *this.idle);
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        *this.received += data.len() as u64;
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers carry nothing we keep.
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::OriginBody {
                        url: this.url.clone(),
                        received: *this.received,
                        source: e.into(),
                    })));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    ready!(this.sleep.as_mut().poll(cx));
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::OriginStalled {
                        url: this.url.clone(),
                        timeout: *this.idle,
                        received: *this.received,
                    })));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HttpOrigin;

    #[test]
    fn urls_stay_on_the_configured_host() {
        let o = HttpOrigin::new("http://origin.example:8080/base/").unwrap();
        let u = o.url_for("a b/c?d#e", Some("x=1")).unwrap();
        assert_eq!(
            u.to_string(),
            "http://origin.example:8080/base/a%20b/c%3Fd%23e?x=1"
        );
        let u = o.url_for("//evil.example/x", None).unwrap();
        assert_eq!(u.host(), Some("origin.example"));
        assert_eq!(u.path(), "/base/evil.example/x");
        let u = HttpOrigin::new("http://h")
            .unwrap()
            .url_for("", None)
            .unwrap();
        assert_eq!(u.to_string(), "http://h/");
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for bad in [
            "",
            "h",
            "ftp://h/",
            "http://u:p@h/",
            "http://h/?q=1",
            "/path",
        ] {
            assert!(HttpOrigin::new(bad).is_err(), "{bad}");
        }
    }
}
