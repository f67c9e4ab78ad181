//! The five priority queues and their settings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's queue. Seed 002 names five, most urgent first; a worker serves each with its own
/// concurrency and rate, and within a queue jobs start in order of their run time.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// System-critical operations.
    Critical,
    /// User-facing operations.
    High,
    /// Standard background tasks (the default).
    #[default]
    Normal,
    /// Batch processing, analytics.
    Low,
    /// Large data operations.
    Bulk,
}

impl Priority {
    /// Every queue, most urgent first.
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Bulk,
    ];

    /// The queue's name, as stored and as the `queue_name` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Bulk => "bulk",
        }
    }

    /// 0 for critical up to 4 for bulk: smaller is more urgent.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The queue of a [`Priority::rank`].
    pub fn from_rank(rank: u8) -> Option<Priority> {
        Priority::ALL.get(usize::from(rank)).copied()
    }

    /// Seed 002's settings for this queue (`_initialize_queue_configs`).
    pub fn settings(self) -> QueueSettings {
        let (max_workers, timeout_s, max_retries, retry_delay_s, rate_per_minute, prefetch) =
            match self {
                Priority::Critical => (10, 300, 5, 30, 100, 1),
                Priority::High => (20, 600, 3, 60, 200, 2),
                Priority::Normal => (30, 1800, 3, 120, 500, 4),
                Priority::Low => (15, 3600, 2, 300, 100, 8),
                Priority::Bulk => (5, 7200, 1, 600, 50, 1),
            };
        QueueSettings {
            max_workers,
            timeout_ms: timeout_s * 1000,
            max_retries,
            retry_delay_ms: retry_delay_s * 1000,
            rate_per_minute,
            prefetch,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority '{0}': expected critical, high, normal, low or bulk")]
pub struct ParsePriorityError(pub String);

impl FromStr for Priority {
    type Err = ParsePriorityError;
    fn from_str(s: &str) -> Result<Priority, ParsePriorityError> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePriorityError(s.chars().take(32).collect()))
    }
}

/// How one queue is worked. The defaults are seed 002's table; an operator may override any of
/// them per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Most jobs of this queue one worker process runs at once (the seed's `max_workers`).
    pub max_workers: u32,
    /// A job's default time limit (the seed's `default_timeout`): past it the attempt is
    /// stopped and counts as failed.
    pub timeout_ms: u64,
    /// Retries after the first attempt, so a job runs at most `max_retries + 1` times.
    pub max_retries: u32,
    /// The first retry's base delay; later retries double it, up to
    /// [`RETRY_BACKOFF_MAX_MS`](crate::RETRY_BACKOFF_MAX_MS).
    pub retry_delay_ms: u64,
    /// Most jobs of this queue started per minute by one worker process (the seed's
    /// `rate_limit`, e.g. `"100/m"`); 0 means unlimited.
    pub rate_per_minute: u32,
    /// Most jobs claimed in one round trip (the seed's `prefetch_count`).
    pub prefetch: u32,
}

impl QueueSettings {
    /// The soft time limit: the handler is asked to stop this long after it started, and is
    /// stopped at the hard limit ([`QueueSettings::timeout_ms`]). The seed sets the soft limit
    /// 60 s before the hard one; for timeouts under two minutes that would leave nothing, so
    /// the soft limit is then at half the timeout.
    pub fn soft_timeout_ms(timeout_ms: u64) -> u64 {
        if timeout_ms >= 120_000 {
            timeout_ms - 60_000
        } else {
            timeout_ms / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ranks_order_by_urgency() {
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(usize::from(p.rank()), i);
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
        }
        assert!(Priority::Critical < Priority::Bulk);
        assert!("urgent".parse::<Priority>().is_err());
        assert_eq!(Priority::from_rank(5), None);
    }

    #[test]
    fn seed_table() {
        let c = Priority::Critical.settings();
        assert_eq!(
            (
                c.timeout_ms,
                c.max_retries,
                c.retry_delay_ms,
                c.rate_per_minute
            ),
            (300_000, 5, 30_000, 100)
        );
        let b = Priority::Bulk.settings();
        assert_eq!(
            (
                b.max_workers,
                b.timeout_ms,
                b.max_retries,
                b.retry_delay_ms,
                b.rate_per_minute
            ),
            (5, 7_200_000, 1, 600_000, 50)
        );
        assert_eq!(Priority::Low.settings().prefetch, 8);
    }

    #[test]
    fn soft_timeout() {
        assert_eq!(QueueSettings::soft_timeout_ms(300_000), 240_000);
        assert_eq!(QueueSettings::soft_timeout_ms(60_000), 30_000);
    }
}
