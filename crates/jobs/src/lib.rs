//! # jobs: the background job model
//!
//! A pure library (no I/O, no clock, no random source: times are Unix milliseconds and
//! randomness is a number in `[0, 1)`, both passed in) for signalbox's durable job queues:
//!
//! - [`Priority`]: seed 002's five queues (critical, high, normal, low, bulk) and their
//!   [`QueueSettings`] (timeout, retries, retry delay, rate, concurrency) from the seed's table;
//! - [`JobStatus`] and its state machine ([`JobStatus::apply`]): the seed's statuses plus `dead`,
//!   where a job that used up its retries waits for a person (the dead-letter queue);
//! - [`RetryPolicy`]: when a failed attempt runs again (capped exponential backoff with jitter);
//! - [`Schedule`]: cron expressions for recurring jobs, and the tick each replica enqueues once.
//!
//! Storage (claiming with leases, `SKIP LOCKED`) lives in `store`, the worker runtime in
//! `server`. The guarantees are specified in `docs/jobs.md`.
//!
//! ```
//! use jobs::{Priority, RetryPolicy};
//! let settings = Priority::Normal.settings();
//! assert_eq!(settings.max_retries, 3);
//! let policy = RetryPolicy::for_queue(&settings);
//! // The first retry of a normal job waits between half and all of its 120 s retry delay.
//! let wait = policy.delay_ms(1, 0.5);
//! assert!((60_000..=120_000).contains(&wait));
//! ```

#![warn(missing_docs)]

mod cron;
mod priority;
mod retry;
mod status;

pub use cron::{CronError, Schedule};
pub use priority::{ParsePriorityError, Priority, QueueSettings};
pub use retry::{FailureOutcome, RetryPolicy, RETRY_BACKOFF_MAX_MS};
pub use status::{IllegalTransition, JobEvent, JobStatus, ParseStatusError};

/// Longest handler name, in bytes.
pub const MAX_HANDLER_NAME_BYTES: usize = 64;

/// Whether `name` is a well-formed handler name: 1 to 64 bytes of lower-case ASCII letters,
/// digits, `_`, `-` and `.` (`weber.recalculate`), starting with a letter. Whether a handler
/// of that name exists is the runtime's question.
pub fn valid_handler_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HANDLER_NAME_BYTES
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// When a job that is not started by then expires, if the caller gave no expiry: the seed
/// expires a job scheduled for an ETA 24 hours after it; a job to run now never expires.
pub fn default_expiry_ms(run_at_ms: i64, enqueued_at_ms: i64) -> Option<i64> {
    (run_at_ms > enqueued_at_ms).then(|| run_at_ms.saturating_add(DEFAULT_ETA_EXPIRY_MS))
}

/// Seed 002: `expires = eta + timedelta(hours=24)`.
pub const DEFAULT_ETA_EXPIRY_MS: i64 = 24 * 3600 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names() {
        assert!(valid_handler_name("weber.recalculate"));
        assert!(valid_handler_name("retention.purge"));
        assert!(!valid_handler_name(""));
        assert!(!valid_handler_name("Weber"));
        assert!(!valid_handler_name("1x"));
        assert!(!valid_handler_name("a b"));
        assert!(!valid_handler_name(&"a".repeat(65)));
    }

    #[test]
    fn eta_jobs_expire_a_day_after_their_eta() {
        assert_eq!(default_expiry_ms(1_000, 1_000), None);
        assert_eq!(
            default_expiry_ms(5_000, 1_000),
            Some(5_000 + DEFAULT_ETA_EXPIRY_MS)
        );
    }
}
