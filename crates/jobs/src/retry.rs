//! When a failed attempt runs again.

use crate::QueueSettings;

/// The longest wait between two attempts: Celery's `task_retry_backoff_max` in seed 002
/// (600 s).
pub const RETRY_BACKOFF_MAX_MS: u64 = 600_000;

/// Capped exponential backoff with jitter.
///
/// Retry `n` (1 for the first retry) waits `cap_n = min(max_delay, base · 2^(n−1))`, then a
/// jittered wait in `[cap_n / 2, cap_n]`: `cap_n / 2 + u · cap_n / 2` for the random `u` in
/// `[0, 1)` the caller passes ("equal jitter"). Celery's full jitter draws from `[0, cap_n]`,
/// which can retry at once and hammer whatever just failed; the lower half-bound keeps the
/// exponential spacing while still spreading the retries of jobs that failed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay before jitter (the seed's per-queue `retry_delay`).
    pub base_ms: u64,
    /// The cap on any delay before jitter.
    pub max_delay_ms: u64,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

/// What happens to a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Run again at this time (Unix ms).
    RetryAt(i64),
    /// No retries left: to the dead-letter queue.
    Dead,
}

impl RetryPolicy {
    /// The queue's retry settings with the seed's 600 s cap.
    pub fn for_queue(settings: &QueueSettings) -> RetryPolicy {
        RetryPolicy {
            base_ms: settings.retry_delay_ms,
            max_delay_ms: RETRY_BACKOFF_MAX_MS,
            max_retries: settings.max_retries,
        }
    }

    /// The cap of retry `retry` (1-based) before jitter: `min(max_delay, base · 2^(retry−1))`.
    pub fn cap_ms(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1).min(63);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }

    /// The wait before retry `retry` (1-based), jittered by `unit` in `[0, 1)` (values outside
    /// are clamped).
    pub fn delay_ms(&self, retry: u32, unit: f64) -> u64 {
        let cap = self.cap_ms(retry);
        let half = cap / 2;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // `cap - half` is at most 2^63, exact enough in f64 for a wait in milliseconds.
        half + ((cap - half) as f64 * unit).floor() as u64
    }

    /// After attempt number `attempts` (1-based, counting the one that just failed) failed at
    /// `now_ms`: run again, or give up.
    pub fn after_failure(&self, attempts: u32, now_ms: i64, unit: f64) -> FailureOutcome {
        if attempts > self.max_retries {
            return FailureOutcome::Dead;
        }
        let wait = i64::try_from(self.delay_ms(attempts, unit)).unwrap_or(i64::MAX);
        FailureOutcome::RetryAt(now_ms.saturating_add(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;
    use proptest::prelude::*;

    fn normal() -> RetryPolicy {
        RetryPolicy::for_queue(&Priority::Normal.settings())
    }

    #[test]
    fn seed_delays_double_up_to_the_cap() {
        let p = normal();
        assert_eq!(p.cap_ms(1), 120_000);
        assert_eq!(p.cap_ms(2), 240_000);
        assert_eq!(p.cap_ms(3), 480_000);
        assert_eq!(p.cap_ms(4), 600_000);
        assert_eq!(p.cap_ms(200), 600_000);
        assert_eq!(p.delay_ms(1, 0.0), 60_000);
        assert_eq!(p.delay_ms(1, 0.999_999_9), 119_999);
    }

    #[test]
    fn a_job_runs_max_retries_plus_one_times() {
        let p = normal();
        let mut attempts = 0;
        let mut now = 0;
        loop {
            attempts += 1;
            match p.after_failure(attempts, now, 0.3) {
                FailureOutcome::RetryAt(at) => {
                    assert!(at > now);
                    now = at;
                }
                FailureOutcome::Dead => break,
            }
        }
        assert_eq!(attempts, p.max_retries + 1);
    }

    proptest! {
        /// The schedule is its formula: `min(max, base·2^(n−1))` halved, plus the jittered half.
        #[test]
        fn delay_matches_formula(base in 0u64..10_000_000, max in 0u64..10_000_000,
                                 retry in 1u32..80, unit in 0.0f64..1.0) {
            let p = RetryPolicy { base_ms: base, max_delay_ms: max, max_retries: 3 };
            let exact = (base as u128) << (retry - 1).min(63);
            let cap = exact.min(max as u128) as u64;
            let d = p.delay_ms(retry, unit);
            prop_assert_eq!(p.cap_ms(retry), cap);
            prop_assert!(d >= cap / 2 && d <= cap, "{} not in [{}, {}]", d, cap / 2, cap);
            prop_assert_eq!(d, cap / 2 + ((cap - cap / 2) as f64 * unit).floor() as u64);
        }

        /// Caps never shrink from one retry to the next, and jitter is monotone in `unit`.
        #[test]
        fn caps_grow_and_jitter_is_monotone(base in 1u64..1_000_000, retry in 1u32..70,
                                            a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let p = RetryPolicy { base_ms: base, max_delay_ms: RETRY_BACKOFF_MAX_MS, max_retries: 5 };
            prop_assert!(p.cap_ms(retry) <= p.cap_ms(retry + 1));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(p.delay_ms(retry, lo) <= p.delay_ms(retry, hi));
        }

        /// Exactly `max_retries` failures are retried; the next one is dead.
        #[test]
        fn dead_after_max_retries(max_retries in 0u32..20, now in 0i64..1<<50, unit in 0.0f64..1.0) {
            let p = RetryPolicy { base_ms: 1_000, max_delay_ms: 600_000, max_retries };
            for attempt in 1..=max_retries {
                let at = p.after_failure(attempt, now, unit);
                prop_assert!(matches!(at, FailureOutcome::RetryAt(t) if t >= now + 500));
            }
            prop_assert_eq!(p.after_failure(max_retries + 1, now, unit), FailureOutcome::Dead);
        }
    }
}
