//! [`HyperConnector`]: object_store's HTTP client over hyper-util, so S3 support needs
//! neither reqwest nor aws-lc (feature `aws`).
//!
//! object_store's `aws` feature brings reqwest and aws-lc-rs, which more than double a clean
//! build on a small machine. Its `aws-base` + `ring` features build `AmazonS3` without any
//! HTTP client; this connector provides one over the hyper-util pooled client this crate
//! already uses for origins (`https://` through rustls and the webpki roots with the
//! `rustls` feature).
//!
//! ```no_run
//! use std::sync::Arc;
//! use object_store::aws::AmazonS3Builder;
//! use tower_origin_pull::{HyperConnector, ServeStore};
//!
//! # fn main() -> Result<(), object_store::Error> {
//! let s3 = AmazonS3Builder::from_env() // AWS_BUCKET_NAME, AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ...
//!     .with_http_connector(HyperConnector::new())
//!     .build()?;
//! let serve = ServeStore::new(Arc::new(s3));
//! # Ok(()) }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<TcpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = TcpConnector;

/// An object_store [`HttpConnector`] over hyper-util's pooled client (HTTP/1.1 and HTTP/2).
///
/// Pass it to a builder's `with_http_connector` (`AmazonS3Builder`, and the other cloud
/// builders when their `*-base` features are on). It honours these [`ClientOptions`]:
/// `allow_http` (plain `http://` is refused unless set), `connect_timeout`, `timeout`,
/// `read_timeout`, `pool_idle_timeout`, `pool_max_idle_per_host`, `http1_only`,
/// `http2_only` and `user_agent`.
///
/// - `timeout` bounds the wait for the response *headers* (connecting included), not the
///   whole body: a multi-gigabyte object streamed to a slow client must not be cut off after
///   30 s. `read_timeout`, when set, bounds the wait for each body chunk.
/// - `https://` uses rustls with the webpki roots (feature `rustls`). Proxies, extra root
///   certificates and invalid certificates are not supported: `connect` refuses options that
///   ask for a proxy or for invalid certificates rather than silently ignoring them.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct HyperConnector {}

impl HyperConnector {
    /// A connector taking every setting from the store builder's [`ClientOptions`].
    pub fn new() -> Self {
        Self {}
    }
}

impl HttpConnector for HyperConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let settings = Settings::read(options)?;
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(settings.connect_timeout.map(crate::time::capped));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(settings.http2_only);
        if let Some(idle) = settings.pool_idle_timeout {
            builder.pool_idle_timeout(crate::time::capped(idle));
        }
        if let Some(max) = settings.pool_max_idle_per_host {
            builder.pool_max_idle_per_host(max);
        }
        let client = builder.build(connector(tcp, settings.http1_only)?);
        Ok(HttpClient::new(HyperService { client, settings }))
    }
}

/// The [`ClientOptions`] this connector honours, parsed once.
#[derive(Debug, Clone)]
struct Settings {
    allow_http: bool,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
    http1_only: bool,
    http2_only: bool,
    user_agent: Option<http::HeaderValue>,
}

impl Settings {
    fn read(options: &ClientOptions) -> object_store::Result<Self> {
        let get = |key| options.get_config_value(&key);
        let flag = |key: ClientConfigKey| -> object_store::Result<bool> {
            get(key).map_or(Ok(false), |v| parse(key, &v))
        };
        let duration = |key: ClientConfigKey| -> object_store::Result<Option<Duration>> {
            get(key)
                .map(|v| humantime::parse_duration(&v).map_err(|e| unsupported(key, e.to_string())))
                .transpose()
        };
        if get(ClientConfigKey::ProxyUrl).is_some() {
            return Err(unsupported(ClientConfigKey::ProxyUrl, "proxies"));
        }
        if flag(ClientConfigKey::AllowInvalidCertificates)? {
            return Err(unsupported(
                ClientConfigKey::AllowInvalidCertificates,
                "invalid certificates",
            ));
        }
        Ok(Self {
            allow_http: flag(ClientConfigKey::AllowHttp)?,
            connect_timeout: duration(ClientConfigKey::ConnectTimeout)?,
            timeout: duration(ClientConfigKey::Timeout)?,
            read_timeout: duration(ClientConfigKey::ReadTimeout)?,
            pool_idle_timeout: duration(ClientConfigKey::PoolIdleTimeout)?,
            pool_max_idle_per_host: get(ClientConfigKey::PoolMaxIdlePerHost)
                .map(|v| parse(ClientConfigKey::PoolMaxIdlePerHost, &v))
                .transpose()?,
            http1_only: flag(ClientConfigKey::Http1Only)?,
            http2_only: flag(ClientConfigKey::Http2Only)?,
            user_agent: get(ClientConfigKey::UserAgent).and_then(|v| v.parse().ok()),
        })
    }
}

fn parse<T: FromStr>(key: ClientConfigKey, value: &str) -> object_store::Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| unsupported(key, format!("{value:?}: {e}")))
}

fn unsupported(key: ClientConfigKey, what: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("HyperConnector: client option {}: {what}", key.as_ref()).into(),
    }
}

#[cfg(feature = "rustls")]
fn connector(tcp: TcpConnector, http1_only: bool) -> object_store::Result<Connector> {
    let provider = rustls::crypto::ring::default_provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| object_store::Error::Generic {
            store: "HyperConnector",
            source: Box::new(e),
        })?
        .https_or_http();
    Ok(if http1_only {
        builder.enable_http1().wrap_connector(tcp)
    } else {
        builder.enable_http1().enable_http2().wrap_connector(tcp)
    })
}

#[cfg(not(feature = "rustls"))]
fn connector(tcp: TcpConnector, _http1_only: bool) -> object_store::Result<Connector> {
    Ok(tcp)
}

/// The [`HttpService`] a [`HyperConnector`] hands to object_store.
#[derive(Debug)]
struct HyperService {
    client: Client<Connector, HttpRequestBody>,
    settings: Settings,
}

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let scheme = req.uri().scheme().cloned();
        if scheme == Some(Scheme::HTTP) && !self.settings.allow_http {
            return Err(HttpError::new(
                HttpErrorKind::Unknown,
                Refused("plain http:// needs the allow_http client option"),
            ));
        }
        if scheme == Some(Scheme::HTTPS) && cfg!(not(feature = "rustls")) {
            return Err(HttpError::new(
                HttpErrorKind::Unknown,
                Refused("https:// needs the `rustls` feature of tower-origin-pull"),
            ));
        }
        if let Some(agent) = &self.settings.user_agent {
            req.headers_mut()
                .entry(http::header::USER_AGENT)
                .or_insert_with(|| agent.clone());
        }
        let sent = self.client.request(req);
        let response = match self.settings.timeout {
            Some(limit) => tokio::time::timeout(crate::time::capped(limit), sent)
                .await
                .map_err(|_| {
                    HttpError::new(HttpErrorKind::Timeout, Refused("no response in time"))
                })?,
            None => sent.await,
        }
        .map_err(|e| {
            let kind = if e.is_connect() {
                HttpErrorKind::Connect
            } else {
                classify(&e)
            };
            HttpError::new(kind, e)
        })?;
        let (parts, body) = response.into_parts();
        let body = ReadBody {
            body,
            idle: self.settings.read_timeout,
            sleep: self
                .settings
                .read_timeout
                .map(|d| tokio::time::sleep(crate::time::capped(d))),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// A request this connector will not send, or that got no answer in time.
#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Refused {}

/// What object_store should make of a failure (it retries `Request`, `Timeout` and
/// `Interrupted`), read from the error's sources as object_store does for reqwest.
fn classify(error: &(dyn StdError + 'static)) -> HttpErrorKind {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_closed() || e.is_incomplete_message() || e.is_body_write_aborted() {
                return HttpErrorKind::Request;
            }
            if e.is_timeout() {
                return HttpErrorKind::Timeout;
            }
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match e.kind() {
                TimedOut => return HttpErrorKind::Timeout,
                ConnectionAborted | ConnectionReset | BrokenPipe | UnexpectedEof => {
                    return HttpErrorKind::Interrupted;
                }
                _ => {}
            }
        }
        source = e.source();
    }
    HttpErrorKind::Unknown
}

pin_project! {
    /// A response body whose errors are [`HttpError`]s, failing when a chunk takes longer
    /// than `read_timeout`.
    struct ReadBody {
        #[pin]
        body: Incoming,
        idle: Option<Duration>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Body for ReadBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let mut this = self.project();
        match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(sleep), Some(idle)) = (this.sleep.as_mut().as_pin_mut(), *this.idle) {
                    sleep.reset(crate::time::deadline(idle));
                }
                Poll::Ready(frame.map(|f| {
                    f.map_err(|e| {
                        let kind = match classify(&e) {
                            HttpErrorKind::Unknown => HttpErrorKind::Decode,
                            kind => kind,
                        };
                        HttpError::new(kind, e)
                    })
                }))
            }
            Poll::Pending => {
                let stalled = this
                    .sleep
                    .as_pin_mut()
                    .is_some_and(|sleep| sleep.poll(cx).is_ready());
                if stalled {
                    let e = Refused("body stalled past read_timeout");
                    Poll::Ready(Some(Err(HttpError::new(HttpErrorKind::Timeout, e))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
