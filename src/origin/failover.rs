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
use crate::time::capped;

/// The longest delay between two walks: backon's default `max_delay`, set explicitly so the
/// [`Origin::attempt_budget`] of a set can count it.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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

    /// Add a primary host with a relative weight (0 is treated as 1; any `u32` works: the
    /// weights are summed as `u64`).
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

    /// Skip a host for `cooldown` after `failures` consecutive failures (default 3, 30 s;
    /// `failures` 0 is treated as 1). Any cooldown works, up to `Duration::MAX` (the host is
    /// then skipped until it is the last one left, as open hosts are asked last).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.threshold = failures.max(1);
        self.cooldown = cooldown;
        self
    }

    /// Walk the hosts again up to `retries` times when all failed (default 0). The delays
    /// between walks start at [`min_backoff`](Self::min_backoff), double, are capped at
    /// 60 s (or `min_backoff` when that is longer), and get up to 100 % jitter.
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// The first retry's delay; later ones double, with jitter (default 100 ms). Any
    /// duration works (capped at the crate's "far future", about 30 years).
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
        // Saturating: a threshold of `u32::MAX` must not wrap the count back to 0 (nor
        // overflow `+ 1`).
        let n = host
            .health
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .map_or(u32::MAX, |n| n.saturating_add(1));
        if n >= self.threshold {
            let cooldown = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX);
            let until = self.now_ms().saturating_add(cooldown);
            host.health.open_until.store(until, Ordering::Relaxed);
        }
    }

    /// The delays backon may sleep between walks, at their longest (jitter adds up to
    /// 100 %): `min_backoff`, then doubling, capped at the maximum delay.
    fn backoff_budget(&self) -> Duration {
        let (min, max) = self.backoff_bounds();
        let mut total = Duration::ZERO;
        let mut delay = min;
        let mut left = self.retries;
        while left > 0 {
            total = total.saturating_add(delay.saturating_mul(2));
            left -= 1;
            if delay >= max {
                // Every later delay is `max`: add them at once.
                let rest = u32::try_from(left).unwrap_or(u32::MAX);
                return total.saturating_add(max.saturating_mul(2).saturating_mul(rest));
            }
            delay = delay.saturating_mul(2).min(max);
        }
        total
    }

    /// backon's first delay and its cap.
    fn backoff_bounds(&self) -> (Duration, Duration) {
        let min = capped(self.min_backoff);
        (min, MAX_BACKOFF.max(min))
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
        // Weighted random order without replacement. The sum is a `u64`: `u32` weights
        // would overflow it (`[u32::MAX, 1]`).
        let mut ordered = Vec::with_capacity(self.hosts.len());
        while !healthy_primaries.is_empty() {
            let index = weighted_pick(&healthy_primaries, fastrand::u64(..));
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
            let (min, max) = this.backoff_bounds();
            let result = attempt
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(min)
                        .with_max_delay(max)
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

    /// Every host's budget once per walk, `retries + 1` walks, and the longest delays backon
    /// may sleep between them; saturating at `Duration::MAX`.
    fn attempt_budget(&self) -> Duration {
        let walk = self.hosts.iter().fold(Duration::ZERO, |sum, h| {
            sum.saturating_add(h.origin.attempt_budget())
        });
        let walks = u32::try_from(self.retries.saturating_add(1)).unwrap_or(u32::MAX);
        walk.saturating_mul(walks)
            .saturating_add(self.backoff_budget())
    }
}

/// The index of the host whose share of the summed weights holds `random` (reduced modulo
/// the sum). Weights are summed as `u64`, so any `u32` weights work.
fn weighted_pick(hosts: &[&Host], random: u64) -> usize {
    let total: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
    if total == 0 {
        return 0;
    }
    let mut pick = random % total;
    for (i, h) in hosts.iter().enumerate() {
        let weight = u64::from(h.weight);
        if pick < weight {
            return i;
        }
        pick -= weight;
    }
    0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::HttpOrigin;

    fn origin(first_byte: u64) -> HttpOrigin {
        HttpOrigin::builder("http://h/")
            .first_byte_timeout(Duration::from_secs(first_byte))
            .follow_redirects(0)
            .build()
            .unwrap()
    }

    #[test]
    fn weights_up_to_u32_max_pick_without_overflow() {
        let set = Origins::new()
            .primary(origin(1), u32::MAX)
            .primary(origin(1), 1)
            .primary(origin(1), u32::MAX);
        let hosts: Vec<&Host> = set.hosts.iter().collect();
        assert_eq!(weighted_pick(&hosts, 0), 0);
        assert_eq!(weighted_pick(&hosts, u64::from(u32::MAX) - 1), 0);
        assert_eq!(weighted_pick(&hosts, u64::from(u32::MAX)), 1);
        assert_eq!(weighted_pick(&hosts, u64::from(u32::MAX) + 1), 2);
        assert!(weighted_pick(&hosts, u64::MAX) < 3);
        for _ in 0..1000 {
            assert_eq!(set.order().len(), 3);
        }
    }

    #[test]
    fn a_huge_breaker_cooldown_and_threshold_saturate() {
        let set = Origins::new()
            .primary(origin(1), 1)
            .breaker(u32::MAX, Duration::MAX);
        let host = &set.hosts[0];
        host.health.failures.store(u32::MAX - 1, Ordering::Relaxed);
        set.failed(host);
        set.failed(host);
        assert_eq!(host.health.failures.load(Ordering::Relaxed), u32::MAX);
        assert!(set.is_open(host));
        assert_eq!(host.health.open_until.load(Ordering::Relaxed), u64::MAX);
    }

    #[test]
    fn the_attempt_budget_counts_every_host_every_walk_and_the_backoff() {
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        // One walk over two hosts, no retries.
        let set = Origins::new().primary(origin(2), 1).standby(origin(3));
        assert_eq!(set.attempt_budget(), secs(5));
        // Two retries: three walks, and delays of at most 2 × 100 ms and 2 × 200 ms.
        let set = set.retries(2);
        assert_eq!(set.attempt_budget(), secs(15) + ms(600));
        // The delays stop doubling at 60 s: 1, 2, 4, ..., 32, then 60 s.
        let set = Origins::new()
            .primary(origin(1), 1)
            .retries(8)
            .min_backoff(secs(1));
        let delays: u64 = [1, 2, 4, 8, 16, 32, 60, 60].iter().sum();
        assert_eq!(set.attempt_budget(), secs(9) + secs(2 * delays));
        // A first delay over 60 s stays the cap.
        let set = Origins::new()
            .primary(origin(1), 1)
            .retries(3)
            .min_backoff(secs(100));
        assert_eq!(set.attempt_budget(), secs(4) + secs(2 * 300));
        // Saturating, whatever the settings.
        let set = Origins::new()
            .primary(origin(u64::MAX), u32::MAX)
            .primary(origin(u64::MAX), u32::MAX)
            .retries(usize::MAX)
            .min_backoff(Duration::MAX);
        assert_eq!(set.attempt_budget(), Duration::MAX);
        let set = Origins::new().primary(origin(1), 1).retries(usize::MAX);
        assert!(set.attempt_budget() > secs(86_400 * 365));
        // An empty set has nothing to wait for.
        assert_eq!(Origins::new().attempt_budget(), Duration::ZERO);
    }

    #[test]
    fn backon_takes_the_largest_delays_without_panicking() {
        use backon::BackoffBuilder;
        let set = Origins::new().retries(5).min_backoff(Duration::MAX);
        let (min, max) = set.backoff_bounds();
        let delays: Vec<Duration> = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_max_times(5)
            .with_jitter()
            .build()
            .collect();
        assert_eq!(delays.len(), 5);
        assert!(delays.iter().all(|d| *d >= min && *d <= min * 2));
    }
}
