//! [`Webhook`]: deliver fill events as JSON `POST`s to a URL.
//!
//! ```no_run
//! use std::sync::Arc;
//! use object_store::memory::InMemory;
//! use tower_origin_pull::{OriginPullLayer, Webhook};
//!
//! # async fn run() -> Result<(), tower_origin_pull::Error> {
//! let layer = OriginPullLayer::from_object_store(Arc::new(InMemory::new()));
//! let webhook = Webhook::new("http://127.0.0.1:9100/fills")?.spawn(layer.subscribe());
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
//! A webhook named in a configuration (`[events] webhook = "..."`) is started by
//! [`OriginPullLayer::from_config`](crate::OriginPullLayer::from_config) itself; build one
//! here for a layer built in code (or use
//! [`Config::build`](crate::config::Config::build) to keep its [`WebhookHandle`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
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
#[derive(Debug, Clone)]
#[must_use]
pub struct Webhook {
    url: Uri,
    max_in_flight: usize,
    attempts: usize,
    timeout: Duration,
    min_backoff: Duration,
    client: Client<Connector, Full<Bytes>>,
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
        let uri = Self::check_url(url)?;
        let connector = make_connector(Duration::from_secs(5))?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            url: uri,
            max_in_flight: 8,
            attempts: 3,
            timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(200),
            client,
        })
    }

    /// What [`Webhook::new`] checks about `url`, without building a client.
    pub(crate) fn check_url(url: &str) -> Result<Uri, Error> {
        let bad = |why: &str| Error::config(format!("webhook URL {url:?}: {why}"));
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
    /// [`OriginPullLayer::subscribe`](crate::OriginPullLayer::subscribe)) on the current
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
            let request = Request::builder()
                .method(Method::POST)
                .uri(self.url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(body.clone()))
                .map_err(|e| self.failure(e))?;
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
            url: self.url.to_string(),
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
            },
        }),
        FillEvent::NotFound { key, rule } => {
            json!({"event": "not_found", "key": key, "rule": &**rule})
        }
        FillEvent::Failed { key, rule, reason } => {
            json!({"event": "failed", "key": key, "rule": &**rule, "reason": reason})
        }
    }
}
