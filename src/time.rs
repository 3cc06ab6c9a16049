//! Deadlines that never overflow: every duration the configuration accepts, up to
//! `Duration::MAX`, becomes an instant (at worst "far future", about 30 years out).

use std::time::Duration;

use tokio::time::Instant;

/// How far "forever" is: far enough for any deployment, near enough for every clock.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, saturating at about 30 years from now.
pub(crate) fn deadline(d: Duration) -> Instant {
    after(Instant::now(), d)
}

/// `start + d`, saturating at about 30 years from `start`.
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(FAR)).unwrap_or(start)
}

/// `d` capped at the same "far future", for APIs that take a duration rather than an
/// instant (`tokio::time::sleep`, `timeout`).
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_duration_is_far_future_not_a_panic() {
        let now = Instant::now();
        let far = after(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(86_400 * 365 * 29));
        assert_eq!(capped(Duration::MAX), FAR);
    }
}
