//! [`Origins`]: several hosts behind one [`Origin`] — weighted primaries, standbys, failover
//! on connection errors and chosen statuses, a circuit breaker per host, and retries with
//! exponential backoff and jitter before the first byte.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{StatusCode, Uri};

use super::{Origin, OriginRequest, OriginResponse};
use crate::Error;

/// Several origins tried in turn for one request.
///
/// Each fetch tries the healthy primaries first (in a random order weighted by their
/// weights, so load spreads), then the healthy standbys, then the hosts whose breaker is
/// open (so a request is never refused while some host might answer). A host *fails* on a
/// connection error, a timeout, or a status listed by [`Origins::fail_over_on`] (every 5xx by
/// default); after [`Origins::breaker`]`.0` consecutive failures it is skipped for
/// `breaker.1`, so a dead primary does not add its timeout to every request. When every host
/// failed, the whole walk is retried [`Origins::retries`] times with exponential backoff and
/// jitter. Nothing is retried once the response headers are in: bytes may have reached a
/// client.
///
/// ```
/// use tower_origin_pull::{HttpOrigin, Origins};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let origins = Origins::new()
///     .primary(HttpOrigin::new("http://10.0.0.1:8080/")?, 3)
///     .primary(HttpOrigin::new("http://10.0.0.2:8080/")?, 1)
///     .standby(HttpOrigin::new("http://backup.example:8080/")?)
///     .retries(2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Origins {
    hosts: Vec<Host>,
    fail_over_on: Vec<StatusCode>,
    server_errors: bool,
    threshold: u32,
    cooldown: Duration,
    retries: usize,
    min_backoff: Duration,
    epoch: Arc<OnceLock<Instant>>,
}

#[derive(Debug, Clone)]
struct Host {
    origin: Arc<dyn Origin>,
    weight: u32,
    standby: bool,
    health: Arc<Health>,
}

#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    /// Milliseconds since the set's epoch until which the host is skipped.
    open_until: AtomicU64,
}

impl Default for Origins {
    fn default() -> Self {
        Self::new()
    }
}

/// Why one walk over the hosts did not give a usable response.
enum Walk {
    /// Every host failed; the last one answered this (a failover status).
    Status(OriginResponse),
    Error(Error),
}

impl Origins {
    /// An empty set: add hosts with [`Origins::primary`] and [`Origins::standby`].
    pub fn new() -> Self {
        Self {
            hosts: Vec::new(),
            fail_over_on: Vec::new(),
            server_errors: true,
            threshold: 3,
            cooldown: Duration::from_secs(30),
            retries: 0,
            min_backoff: Duration::from_millis(100),
            epoch: Arc::default(),
        }
    }

    /// Add a primary host with a relative weight (0 is treated as 1).
    pub fn primary(mut self, origin: impl Origin, weight: u32) -> Self {
        self.hosts.push(Host {
            origin: Arc::new(origin),
            weight: weight.max(1),
            standby: false,
            health: Arc::default(),
        });
        self
    }

    /// Add a standby host, asked only when every primary failed.
    pub fn standby(mut self, origin: impl Origin) -> Self {
        self.hosts.push(Host {
            origin: Arc::new(origin),
            weight: 1,
            standby: true,
            health: Arc::default(),
        });
        self
    }

    /// Fail over on these statuses too (for example `403` or `404` for a primary that may
    /// not have everything). Every 5xx fails over unless [`Origins::server_errors`] says no.
    pub fn fail_over_on(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.fail_over_on.extend(statuses);
        self
    }

    /// Whether every 5xx fails over (default `true`).
    pub fn server_errors(mut self, yes: bool) -> Self {
        self.server_errors = yes;
        self
    }

    /// Skip a host for `cooldown` after `failures` consecutive failures (default 3, 30 s).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.threshold = failures.max(1);
        self.cooldown = cooldown;
        self
    }

    /// Walk the hosts again up to `retries` times when all failed (default 0).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// The first retry's delay; later ones double, with jitter (default 100 ms).
    pub fn min_backoff(mut self, delay: Duration) -> Self {
        self.min_backoff = delay;
        self
    }

    fn now_ms(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(Instant::now);
        epoch.elapsed().as_millis() as u64
    }

    fn is_open(&self, host: &Host) -> bool {
        host.health.open_until.load(Ordering::Relaxed) > self.now_ms()
    }

    fn fails_over(&self, status: StatusCode) -> bool {
        (self.server_errors && status.is_server_error()) || self.fail_over_on.contains(&status)
    }

    fn failed(&self, host: &Host) {
        let n = host.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            host.health.open_until.store(until, Ordering::Relaxed);
        }
    }

    fn succeeded(&self, host: &Host) {
        host.health.failures.store(0, Ordering::Relaxed);
        host.health.open_until.store(0, Ordering::Relaxed);
    }

    /// The order in which to ask the hosts for one request.
    fn order(&self) -> Vec<&Host> {
        let mut healthy_primaries: Vec<&Host> = Vec::new();
        let mut healthy_standbys = Vec::new();
        let mut open = Vec::new();
        for host in &self.hosts {
            match (self.is_open(host), host.standby) {
                (true, _) => open.push(host),
                (false, false) => healthy_primaries.push(host),
                (false, true) => healthy_standbys.push(host),
            }
        }
        // Weighted random order without replacement.
        let mut ordered = Vec::with_capacity(self.hosts.len());
        while !healthy_primaries.is_empty() {
            let total: u32 = healthy_primaries.iter().map(|h| h.weight).sum();
            let mut pick = fastrand::u32(0..total);
            let index = healthy_primaries
                .iter()
                .position(|h| {
                    if pick < h.weight {
                        true
                    } else {
                        pick -= h.weight;
                        false
                    }
                })
                .unwrap_or(0);
            ordered.push(healthy_primaries.swap_remove(index));
        }
        ordered.extend(healthy_standbys);
        ordered.extend(open);
        ordered
    }

    async fn walk(&self, request: &OriginRequest) -> Result<OriginResponse, Walk> {
        let mut last = Walk::Error(Error::config("an Origins set needs at least one host"));
        for host in self.order() {
            match host.origin.fetch(request.clone()).await {
                Ok(response) if self.fails_over(response.status) => {
                    tracing::debug!(origin = ?host.origin, status = %response.status, "failing over");
                    self.failed(host);
                    last = Walk::Status(response);
                }
                Ok(response) => {
                    self.succeeded(host);
                    return Ok(response);
                }
                Err(e) => {
                    tracing::debug!(origin = ?host.origin, error = %e, "failing over");
                    self.failed(host);
                    last = Walk::Error(e);
                }
            }
        }
        Err(last)
    }
}

impl Origin for Origins {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        let this = self.clone();
        async move {
            let attempt = || this.walk(&request);
            let result = attempt
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(this.min_backoff)
                        .with_max_times(this.retries)
                        .with_jitter(),
                )
                .await;
            match result {
                Ok(response) | Err(Walk::Status(response)) => Ok(response),
                Err(Walk::Error(e)) => Err(e),
            }
        }
        .boxed()
    }

    fn location(&self, request: &OriginRequest) -> Option<Uri> {
        self.order()
            .into_iter()
            .find_map(|host| host.origin.location(request))
    }
}
