//! [`Webhook`]: deliver fill events as JSON `POST`s to a URL.
//!
//! ```no_run
//! use std::sync::Arc;
//! use object_store::memory::InMemory;
//! use tower_origin_pull::{OriginPullBuilder, OriginPullLayer, Webhook};
//!
//! # async fn run() -> Result<(), tower_origin_pull::Error> {
//! let layer = OriginPullBuilder::from_object_store(Arc::new(InMemory::new())).build();
//! let webhook = Webhook::new("http://127.0.0.1:9100/fills")?.spawn(layer.handle().subscribe());
//! // ... later
//! println!("{:?}", webhook.stats());
//! # Ok(()) }
//! ```
//!
//! Each event is one request with `Content-Type: application/json`, for example
//! `{"event":"completed","key":"img/a.png","rule":"images","bytes":1234,"duration_ms":56,
//! "origin_etag":"\"v1\"","committed":"written"}`. A delivery is retried with exponential
//! backoff and jitter on connection errors and on non-2xx answers. At most `max_in_flight`
//! deliveries run at once; while they are all busy, events wait in the layer's event channel
//! and, when that is full, the oldest are lost (counted in [`WebhookStats::lost`]). A receiver
//! that hangs therefore costs lost notifications, never slower fills.
//!
//! The URL may carry credentials: user information (`https://user:password@host/...`) is
//! sent as `Authorization: Basic` and kept out of the request URI; a query string
//! (`?token=...`) is sent as it is. No log line, error message or `Debug` output of this
//! module shows either (they read `REDACTED`). The webhook follows no redirects: a `3xx` answer is a
//! failed attempt, and the `Location` is never asked.
//!
//! A webhook named in a configuration (`[events] webhook = "..."`) is started by
//! [`OriginPullLayer::from_config`](crate::OriginPullLayer::from_config) itself; build one
//! here for a layer built in code (or use
//! [`Config::build`](crate::config::Config::build) to keep its [`WebhookHandle`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinHandle;

use crate::Error;
use crate::events::FillEvent;
use crate::origin::http::{Connector, make_connector};
use crate::store::Committed;
use crate::time::capped;

/// Delivers fill events to an HTTP endpoint; see the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct Webhook {
    /// The URL without its user information.
    url: Uri,
    /// The URL as logs and errors show it (see [`redact`]).
    shown: Arc<str>,
    /// `Basic` credentials from the URL's user information (a sensitive header value).
    authorization: Option<HeaderValue>,
    max_in_flight: usize,
    attempts: usize,
    timeout: Duration,
    min_backoff: Duration,
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("max_in_flight", &self.max_in_flight)
            .field("attempts", &self.attempts)
            .field("timeout", &self.timeout)
            .field("min_backoff", &self.min_backoff)
            .finish_non_exhaustive()
    }
}

/// `url` with its user information and its query string (and any fragment) replaced by
/// `REDACTED`: `https://REDACTED@host/hook?REDACTED`. Works on text that is not a valid URL
/// too, since that is what an error about an invalid URL shows.
pub(crate) fn redact(url: &str) -> String {
    let (rest, tail) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], "?REDACTED"),
        None => (url, ""),
    };
    let (scheme, after) = match rest.find("://") {
        Some(i) => (&rest[..i + 3], &rest[i + 3..]),
        None => ("", rest),
    };
    // Up to the last `@`, even past a `/`: better a path redacted too than a password
    // that contained a `/` shown.
    let after = match after.rfind('@') {
        Some(i) => format!("REDACTED@{}", &after[i + 1..]),
        None => after.to_owned(),
    };
    format!("{scheme}{after}{tail}")
}

/// `uri` without its user information, and that information as `Basic` credentials (a
/// sensitive header value); neither a log line of the HTTP client nor its pool key then
/// holds the password.
fn without_userinfo(uri: Uri) -> Result<(Uri, Option<HeaderValue>), &'static str> {
    let split = uri
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(userinfo, host)| (userinfo.to_owned(), host.to_owned()));
    let Some((userinfo, host)) = split else {
        return Ok((uri, None));
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&userinfo).collect();
    let mut credentials = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(decoded)))
        .map_err(|_| "the user information is not valid")?;
    credentials.set_sensitive(true);
    let mut parts = uri.into_parts();
    parts.authority = Some(host.parse().map_err(|_| "no host")?);
    let uri = Uri::from_parts(parts).map_err(|_| "not a URL")?;
    Ok((uri, Some(credentials)))
}

/// Delivery counters of a running [`Webhook`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Events the receiver acknowledged with a 2xx.
    pub delivered: u64,
    /// Events given up on after every attempt failed.
    pub failed: u64,
    /// Events lost because deliveries could not keep up.
    pub lost: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

/// A running webhook: its counters, and the task (aborted when the handle is dropped,
/// unless [`detach`](WebhookHandle::detach)ed).
#[derive(Debug)]
pub struct WebhookHandle {
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl WebhookHandle {
    /// What was delivered, failed and lost so far.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            lost: self.counters.lost.load(Ordering::Relaxed),
        }
    }

    /// Let the webhook run without this handle: it delivers until the layer whose events it
    /// receives (and every service made from it) is dropped, or the runtime shuts down.
    pub fn detach(mut self) {
        self.task.take();
    }
}

impl Drop for WebhookHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Webhook {
    /// A webhook posting to `url` (`http://` or `https://`), with at most 8 deliveries in
    /// flight, 3 attempts each and a 5 s timeout per attempt. This builds its HTTP client
    /// (and TLS setup); nothing is sent until [`spawn`](Self::spawn).
    pub fn new(url: &str) -> Result<Self, Error> {
        let (uri, authorization) = without_userinfo(Self::check_url(url)?)
            .map_err(|why| Error::config(format!("webhook URL {:?}: {why}", redact(url))))?;
        let connector = make_connector(Duration::from_secs(5))?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            shown: redact(url).into(),
            url: uri,
            authorization,
            max_in_flight: 8,
            attempts: 3,
            timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(200),
            client,
        })
    }

    /// What [`Webhook::new`] checks about `url`, without building a client.
    pub(crate) fn check_url(url: &str) -> Result<Uri, Error> {
        let bad = |why: &str| Error::config(format!("webhook URL {:?}: {why}", redact(url)));
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "rustls") => {}
            Some("https") => return Err(bad("https needs the `rustls` feature")),
            _ => return Err(bad("scheme must be http or https")),
        }
        if uri.host().is_none() {
            return Err(bad("no host"));
        }
        Ok(uri)
    }

    /// How many deliveries may be in flight at once (default 8; at least 1, at most
    /// Tokio's `Semaphore::MAX_PERMITS`).
    pub fn max_in_flight(mut self, deliveries: usize) -> Self {
        self.max_in_flight = deliveries.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How many times one event is tried (default 3).
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// How long one attempt may take (default 5 s; any duration works, capped at the crate's
    /// "far future", about 30 years).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first retry's delay; later ones double up to 60 s (or this delay, when longer),
    /// with jitter (default 200 ms; any duration works, capped like [`timeout`](Self::timeout)).
    pub fn min_backoff(mut self, delay: Duration) -> Self {
        self.min_backoff = delay;
        self
    }

    /// Deliver every event received from `events` (see
    /// [`OriginPullHandle::subscribe`](crate::OriginPullHandle::subscribe)) on the current
    /// Tokio runtime, until the layer is dropped or the handle is.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as `tokio::spawn` does.
    pub fn spawn(self, mut events: broadcast::Receiver<FillEvent>) -> WebhookHandle {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let this = Arc::new(self);
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(this.max_in_flight));
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        c.lost.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (this, c) = (this.clone(), c.clone());
                tokio::spawn(async move {
                    let counter = match this.deliver(&event).await {
                        Ok(()) => &c.delivered,
                        // The error names the URL redacted (see `failure`).
                        Err(e) => {
                            tracing::warn!(key = event.key(), error = %e, "webhook delivery failed");
                            &c.failed
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        });
        WebhookHandle {
            counters,
            task: Some(task),
        }
    }

    async fn deliver(&self, event: &FillEvent) -> Result<(), Error> {
        let body = Bytes::from(to_json(event).to_string());
        let attempt = || async {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(body.clone()))
                .map_err(|e| self.failure(e))?;
            if let Some(credentials) = &self.authorization {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, credentials.clone());
            }
            let response = tokio::time::timeout(capped(self.timeout), self.client.request(request))
                .await
                .map_err(|_| self.failure("timed out"))?
                .map_err(|e| self.failure(e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(self.failure(format!("answered {}", response.status())))
            }
        };
        let min = capped(self.min_backoff);
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(min)
                    .with_max_delay(min.max(Duration::from_secs(60)))
                    .with_max_times(self.attempts.saturating_sub(1))
                    .with_jitter(),
            )
            .await
    }

    fn failure(&self, source: impl Into<crate::BoxError>) -> Error {
        Error::Webhook {
            url: self.shown.to_string(),
            source: source.into(),
        }
    }
}

/// The JSON form of an event.
pub fn to_json(event: &FillEvent) -> serde_json::Value {
    use serde_json::json;
    match event {
        FillEvent::Started {
            key,
            rule,
            background,
        } => json!({"event": "started", "key": key, "rule": &**rule, "background": background}),
        FillEvent::Completed {
            key,
            rule,
            bytes,
            duration,
            origin_etag,
            committed,
        } => json!({
            "event": "completed",
            "key": key,
            "rule": &**rule,
            "bytes": bytes,
            "duration_ms": duration.as_millis() as u64,
            "origin_etag": origin_etag,
            "committed": match committed {
                Committed::Written => "written",
                Committed::AlreadyExists => "already_exists",
                Committed::Refreshed => "refreshed",
            },
        }),
        FillEvent::Revalidated {
            key,
            rule,
            asked_origin,
        } => json!({
            "event": "revalidated",
            "key": key,
            "rule": &**rule,
            "asked_origin": asked_origin,
        }),
        FillEvent::NotFound { key, rule } => {
            json!({"event": "not_found", "key": key, "rule": &**rule})
        }
        FillEvent::Failed { key, rule, reason } => {
            json!({"event": "failed", "key": key, "rule": &**rule, "reason": reason})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Webhook, redact};

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        for (url, shown) in [
            ("http://h/hook", "http://h/hook"),
            ("http://h:9/hook?token=s3cret", "http://h:9/hook?REDACTED"),
            (
                "https://user:pw@h/hook?token=s3cret&x=1",
                "https://REDACTED@h/hook?REDACTED",
            ),
            ("https://token@h", "https://REDACTED@h"),
            ("http://u:p/w@h/x#frag", "http://REDACTED@h/x?REDACTED"),
            ("not a url?token=s3cret", "not a url?REDACTED"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn userinfo_becomes_basic_credentials_and_leaves_the_uri() {
        let uri = "http://us%40er:p%3Aw@h:9/x?token=1".parse().unwrap();
        let (uri, auth) = super::without_userinfo(uri).unwrap();
        assert_eq!(uri.to_string(), "http://h:9/x?token=1");
        let auth = auth.unwrap();
        assert!(auth.is_sensitive());
        // base64("us@er:p:w")
        assert_eq!(auth, "Basic dXNAZXI6cDp3");
        let (uri, auth) = super::without_userinfo("https://h/x".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "https://h/x");
        assert!(auth.is_none());
    }

    #[test]
    fn errors_and_debug_never_show_the_secrets() {
        for bad in [
            "ftp://user:pw@h/?token=s3cret",
            "http://user:pw@/?token=s3cret",
        ] {
            let e = Webhook::check_url(bad).unwrap_err().to_string();
            assert!(!e.contains("pw") && !e.contains("s3cret"), "{e}");
        }
        let w = Webhook::new("http://user:pw@h/x?token=s3cret").unwrap();
        let shown = format!("{w:?} {}", w.failure("refused"));
        assert!(
            !shown.contains("pw") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("http://REDACTED@h/x?REDACTED"), "{shown}");
    }
}
