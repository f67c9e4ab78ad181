//! Job statuses and the transitions between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. Seed 002's seven statuses, plus `dead`.
///
/// ```text
///            claim             succeed
///  pending ────────► running ──────────► success
///     ▲  ▲              │  fail, retries left
///     │  │   claim      ▼
///     │  └──────── retrying
///     │                 fail, none left ──► dead ──┐
///     │                 fail permanently ─► failed ┤ retry (a person)
///     └────────────────────────────────────────────┘
///  pending / retrying ── cancel ──► cancelled;  ── expire ──► expired
///  running ── cancel (the worker stops it) ──► cancelled
///  running ── release (its worker shuts down) ──► pending
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its run time and a free worker.
    Pending,
    /// Claimed by a worker, which holds its lease.
    Running,
    /// Finished; its result is kept.
    Success,
    /// Failed in a way a retry cannot fix (the handler said so, or its input is invalid).
    Failed,
    /// An attempt failed; it runs again after its backoff.
    Retrying,
    /// Cancelled before it finished.
    Cancelled,
    /// Not started before its expiry.
    Expired,
    /// Used up its retries: the dead-letter queue, until a person retries or purges it.
    Dead,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Success,
        JobStatus::Failed,
        JobStatus::Retrying,
        JobStatus::Cancelled,
        JobStatus::Expired,
        JobStatus::Dead,
    ];

    /// The status's name, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Success => "success",
            JobStatus::Failed => "failed",
            JobStatus::Retrying => "retrying",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Expired => "expired",
            JobStatus::Dead => "dead",
        }
    }

    /// Whether a worker may claim a job in this status (once its run time has come).
    pub fn is_claimable(self) -> bool {
        matches!(self, JobStatus::Pending | JobStatus::Retrying)
    }

    /// Whether the job is over: no worker will run it unless a person retries it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Success
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::Expired
                | JobStatus::Dead
        )
    }

    /// The status after `event`, or why it cannot happen.
    pub fn apply(self, event: JobEvent) -> Result<JobStatus, IllegalTransition> {
        use JobEvent as E;
        use JobStatus as S;
        let next = match (self, event) {
            (S::Pending | S::Retrying, E::Claim) => S::Running,
            (S::Running, E::Succeed) => S::Success,
            (S::Running, E::FailRetry) => S::Retrying,
            (S::Running, E::FailDead) => S::Dead,
            (S::Running, E::FailPermanently) => S::Failed,
            (S::Pending | S::Retrying | S::Running, E::Cancel) => S::Cancelled,
            (S::Pending | S::Retrying, E::Expire) => S::Expired,
            (S::Dead | S::Failed, E::Retry) => S::Pending,
            (S::Running, E::Release) => S::Pending,
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the eight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status '{0}': expected pending, running, success, failed, retrying, cancelled, expired or dead")]
pub struct ParseStatusError(pub String);

impl FromStr for JobStatus {
    type Err = ParseStatusError;
    fn from_str(s: &str) -> Result<JobStatus, ParseStatusError> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.chars().take(32).collect()))
    }
}

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobEvent {
    /// A worker takes it (and its lease).
    Claim,
    /// Its handler finished.
    Succeed,
    /// An attempt failed (or its worker was lost) and retries are left.
    FailRetry,
    /// An attempt failed and no retries are left.
    FailDead,
    /// An attempt failed in a way no retry can fix.
    FailPermanently,
    /// Someone cancelled it.
    Cancel,
    /// Its expiry passed before it started.
    Expire,
    /// A person sent a dead or failed job back to its queue.
    Retry,
    /// Its worker shut down before running it to the end and gave it back: the attempt does
    /// not count, and the job waits for another worker.
    Release,
}

/// `event` cannot happen to a job in status `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot {event:?}")]
pub struct IllegalTransition {
    /// The job's status.
    pub from: JobStatus,
    /// What was asked.
    pub event: JobEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_and_dead_letter() {
        let s = JobStatus::Pending.apply(JobEvent::Claim).unwrap();
        assert_eq!(s, JobStatus::Running);
        assert_eq!(s.apply(JobEvent::Succeed), Ok(JobStatus::Success));
        let r = s.apply(JobEvent::FailRetry).unwrap();
        assert_eq!(r.apply(JobEvent::Claim), Ok(JobStatus::Running));
        let dead = s.apply(JobEvent::FailDead).unwrap();
        assert_eq!(dead.apply(JobEvent::Retry), Ok(JobStatus::Pending));
    }

    #[test]
    fn final_statuses_only_leave_by_retry() {
        let events = [
            JobEvent::Claim,
            JobEvent::Succeed,
            JobEvent::FailRetry,
            JobEvent::FailDead,
            JobEvent::FailPermanently,
            JobEvent::Cancel,
            JobEvent::Expire,
            JobEvent::Retry,
            JobEvent::Release,
        ];
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for event in events {
                match status.apply(event) {
                    Ok(next) => {
                        assert_eq!(event, JobEvent::Retry, "{status} left by {event:?}");
                        assert_eq!(next, JobStatus::Pending);
                    }
                    Err(e) => assert_eq!(e.from, status),
                }
            }
        }
        assert!(JobStatus::Success.apply(JobEvent::Retry).is_err());
        assert!(JobStatus::Running.apply(JobEvent::Expire).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
            assert_eq!(
                s.is_claimable(),
                matches!(s, JobStatus::Pending | JobStatus::Retrying)
            );
        }
        assert!("done".parse::<JobStatus>().is_err());
    }
}
