//! The sampled progress: a ring of cumulative counters, read back as intervals.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::Progress;

/// The counters of one sample, cumulative since the layer was built (48 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: SystemTime,
    hits: u64,
    requests: u64,
    bytes_pulled: u64,
    keys_pulled: u64,
}

/// One point of a chart: the intervals between consecutive samples, merged when there are
/// more than the chart's points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bucket {
    /// The end of the last interval merged.
    pub(super) at: SystemTime,
    /// Requests served from the store in these intervals.
    pub(super) hits: u64,
    /// Requests of any outcome in these intervals.
    pub(super) requests: u64,
    /// Bytes pulled since the layer was built, at `at`.
    pub(super) bytes_pulled: u64,
    /// Keys pulled since the layer was built, at `at`.
    pub(super) keys_pulled: u64,
}

/// At most `capacity` samples, the oldest dropped first.
#[derive(Debug)]
pub(super) struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub(super) fn push(&mut self, at: SystemTime, p: &Progress) {
        if self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at,
            hits: p.hits,
            requests: p.requests(),
            bytes_pulled: p.bytes_pulled,
            keys_pulled: p.keys_pulled,
        });
    }

    /// The intervals between the samples kept, merged into at most `max` buckets of equal
    /// numbers of intervals (the last bucket may hold fewer).
    pub(super) fn buckets(&self, max: usize) -> Vec<Bucket> {
        let intervals = self.samples.len().saturating_sub(1);
        if intervals == 0 || max == 0 {
            return Vec::new();
        }
        let per = intervals.div_ceil(max);
        let mut out = Vec::with_capacity(intervals.div_ceil(per));
        let mut start = 0;
        while start < intervals {
            let end = (start + per).min(intervals);
            if let (Some(from), Some(to)) = (self.samples.get(start), self.samples.get(end)) {
                out.push(Bucket {
                    at: to.at,
                    hits: to.hits.saturating_sub(from.hits),
                    requests: to.requests.saturating_sub(from.requests),
                    bytes_pulled: to.bytes_pulled,
                    keys_pulled: to.keys_pulled,
                });
            }
            start = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::History;
    use crate::Progress;

    fn progress(hits: u64, missed: u64, bytes: u64) -> Progress {
        Progress {
            hits,
            missed,
            bytes_pulled: bytes,
            ..Progress::default()
        }
    }

    /// Bounded: the oldest sample goes first; merged buckets add up to the same totals.
    #[test]
    fn the_ring_is_bounded_and_buckets_add_up() {
        let mut h = History::new(5);
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..10u64 {
            h.push(t0 + Duration::from_secs(i), &progress(i * 2, i, i * 100));
        }
        assert_eq!(h.samples.len(), 5);
        let all = h.buckets(100);
        assert_eq!(all.len(), 4);
        let two = h.buckets(2);
        assert_eq!(two.len(), 2);
        let sum = |b: &[super::Bucket]| {
            b.iter()
                .map(|b| (b.hits, b.requests))
                .fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1))
        };
        assert_eq!(sum(&all), sum(&two));
        assert_eq!(sum(&all), (8, 12));
        assert_eq!(two.last().map(|b| b.bytes_pulled), Some(900));
    }
}
