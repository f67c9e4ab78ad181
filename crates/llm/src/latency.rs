//! Latency histograms that merge by addition.
//!
//! A duration falls in one of [`BUCKETS`] fixed, log-spaced buckets (eight per doubling, so a
//! bucket's bounds are within 9.05 % of each other). Stored rollups keep a count per bucket
//! index, which adds across batches, replicas and days, and p50 / p95 are read back from the
//! merged counts. A quantile is reported as the geometric middle of its bucket: at most ±4.43 %
//! ([`MAX_RELATIVE_ERROR`]) from the true value, whatever the number of calls.

use serde::{Deserialize, Serialize};

/// The largest relative error of a reported quantile, `2^(1/16) − 1` (about 4.43 %): a
/// bucket's geometric middle is that far from either bound.
pub const MAX_RELATIVE_ERROR: f64 = 0.044_273_782_427_413_755;

/// Buckets per doubling of the duration.
pub const PER_DOUBLING: u32 = 8;
/// Number of buckets: 1 µs to 2³⁷ µs (about 38 hours, past the longest call accepted,
/// [`crate::event::MAX_DURATION_MS`]); longer durations go in the last one.
pub const BUCKETS: usize = 37 * PER_DOUBLING as usize + 1;

/// The bucket index of a duration in microseconds: 0 for ≤ 1 µs, else
/// `ceil(log2(µs) × 8)`, capped at `BUCKETS - 1`.
///
/// ```
/// use llm::latency::bucket_of;
/// assert_eq!(bucket_of(0), 0);
/// assert_eq!(bucket_of(1), 0);
/// assert_eq!(bucket_of(2), 8);
/// assert!(bucket_of(1_000) < bucket_of(1_100));
/// ```
pub fn bucket_of(duration_us: u64) -> u16 {
    if duration_us <= 1 {
        return 0;
    }
    let index = ((duration_us as f64).log2() * PER_DOUBLING as f64 - 1e-9).ceil();
    (index.max(0.0) as usize).min(BUCKETS - 1) as u16
}

/// The upper bound of a bucket, in microseconds.
pub fn upper_bound_us(bucket: u16) -> f64 {
    2f64.powf(bucket as f64 / PER_DOUBLING as f64)
}

/// The value reported for a bucket: the geometric middle of its bounds, in microseconds.
pub fn representative_us(bucket: u16) -> f64 {
    if bucket == 0 {
        return 1.0;
    }
    2f64.powf((bucket as f64 - 0.5) / PER_DOUBLING as f64)
}

/// Counts per bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram::default()
    }

    /// Counts one duration.
    pub fn record(&mut self, duration_us: u64) {
        self.add_to_bucket(bucket_of(duration_us), 1);
    }

    /// Adds `count` to a bucket (as read back from storage). Indexes past the last bucket
    /// are counted in it.
    pub fn add_to_bucket(&mut self, bucket: u16, count: u64) {
        let index = (bucket as usize).min(BUCKETS - 1);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] = self.counts[index].saturating_add(count);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bucket, count) in other.buckets() {
            self.add_to_bucket(bucket, count);
        }
    }

    /// Non-empty buckets and their counts, in bucket order.
    pub fn buckets(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u16, *c))
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |s, c| s.saturating_add(*c))
    }

    /// The `q`-quantile (0 < q ≤ 1) in microseconds, nearest-rank over buckets, or `None`
    /// when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bucket, count) in self.buckets() {
            // Counts come from storage too: a corrupt row must not overflow the sum.
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(representative_us(bucket));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_error_bound_is_half_a_bucket() {
        assert!((MAX_RELATIVE_ERROR - (2f64.powf(1.0 / 16.0) - 1.0)).abs() < 1e-15);
    }

    #[test]
    fn huge_stored_counts_saturate_instead_of_overflowing() {
        let mut h = LatencyHistogram::new();
        h.add_to_bucket(8, u64::MAX - 1);
        h.add_to_bucket(80, 2);
        assert_eq!(h.count(), u64::MAX);
        assert_eq!(h.quantile_us(1.0), Some(representative_us(80)));
        assert_eq!(h.quantile_us(0.5), Some(representative_us(8)));
    }

    #[test]
    fn the_longest_accepted_call_has_a_bucket_of_its_own() {
        let day_us = crate::event::MAX_DURATION_MS * 1_000;
        assert!(usize::from(bucket_of(day_us)) < BUCKETS - 1);
    }

    proptest! {
        /// p50 and p95 from the buckets are within ±4.43 % of the exact nearest-rank quantile
        /// of the durations recorded (for durations of at least 1 µs).
        #[test]
        fn quantiles_are_within_the_documented_error(
            durations in proptest::collection::vec(1u64..=crate::event::MAX_DURATION_MS * 1_000, 1..300),
            q in prop_oneof![Just(0.5f64), Just(0.95), Just(0.99), 0.01f64..=1.0],
        ) {
            let mut h = LatencyHistogram::new();
            for d in &durations {
                h.record(*d);
            }
            let mut sorted = durations.clone();
            sorted.sort_unstable();
            let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1] as f64;
            let got = h.quantile_us(q).unwrap();
            prop_assert!((got - exact).abs() <= exact * MAX_RELATIVE_ERROR + 1e-9, "q={q} exact={exact} got={got}");
        }

        #[test]
        fn merging_is_adding(a in proptest::collection::vec(0u64..1 << 40, 0..50), b in proptest::collection::vec(0u64..1 << 40, 0..50)) {
            let mut ha = LatencyHistogram::new();
            let mut hb = LatencyHistogram::new();
            let mut both = LatencyHistogram::new();
            a.iter().for_each(|d| { ha.record(*d); both.record(*d); });
            b.iter().for_each(|d| { hb.record(*d); both.record(*d); });
            ha.merge(&hb);
            prop_assert_eq!(ha.buckets().collect::<Vec<_>>(), both.buckets().collect::<Vec<_>>());
            prop_assert_eq!(both.count(), (a.len() + b.len()) as u64);
        }
    }
}
