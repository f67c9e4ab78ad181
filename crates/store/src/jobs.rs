//! Background jobs: the durable queue (table `jobs`), recurring schedules (`job_schedules`) and
//! the canary handler's receipts (`job_receipts`), on either backend. The database is the queue:
//! no broker (as River, Oban and graphile-worker do it).
//!
//! Two kinds of calls:
//! - tenant-scoped ones (enqueue, read, list, cancel, retry, purge, stats, schedules), which bind
//!   the tenant id like every other store call;
//! - the worker side (claim, heartbeat, finish, release, rescue, expire, the scheduler tick,
//!   depths, retention), tenant-agnostic by design because a worker serves every tenant. They
//!   never take a tenant's input: a worker names a job by its id and its lease, `(id,
//!   worker_id, attempt)`, and a write applies only while the job is `running` under exactly
//!   that lease (fencing), so a worker that lost its lease cannot overwrite what happened since.
//!
//! Every status change follows [`jobs::JobStatus::apply`]: where Rust decides (cancel, retry,
//! finish) it calls it; where one statement changes many rows (claim, rescue, release, expiry)
//! the statement's `CASE` arms are checked against it by this module's tests.
//!
//! Claiming: on PostgreSQL the due rows are locked with `FOR UPDATE SKIP LOCKED` in a subquery
//! of the `UPDATE … RETURNING` that takes them, so concurrent claimers (threads or replicas)
//! never block on nor share a job; on SQLite the same `UPDATE … RETURNING` runs in this
//! process's writer turn, and SQLite's single writer lock orders it against other processes.
//!
//! Wake-ups ([`JobWakeups`]): an enqueue of a job due now wakes the workers of its queue: on
//! PostgreSQL by `pg_notify` in the enqueue transaction (delivered at commit) to a channel named
//! after the schema, heard by one `LISTEN` connection per [`Store`]; on SQLite (and in the
//! enqueuing process on both) by an in-process signal. Workers poll as well, so a lost
//! notification or a listener that is reconnecting only costs latency.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::jobs::{JobEvent, JobStatus, Priority, Schedule};
use sqlx::any::AnyRow;
use sqlx::{Any, Connection as _, Row};

use crate::{Backend, Operation, Store, StoreError, Table};

/// Longest job payload (JSON object text), in bytes.
pub const MAX_JOB_PAYLOAD_BYTES: usize = 65_536;
/// Longest job result (text, usually JSON), in bytes.
pub const MAX_JOB_RESULT_BYTES: usize = 65_536;
/// Error texts are cut to this many bytes (on a character boundary).
pub const MAX_JOB_ERROR_BYTES: usize = 2_048;
/// Longest idempotency key, in bytes (visible ASCII).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;
/// Longest worker id, in bytes (visible ASCII).
pub const MAX_WORKER_ID_BYTES: usize = 200;
/// Most attempts a job may be given (the service allows 25 retries).
pub const MAX_JOB_ATTEMPTS: u32 = 100;
/// Most jobs one page of [`Store::list_jobs`] returns; larger limits are cut to it.
pub const MAX_JOB_PAGE: u32 = 1_000;
/// Most jobs one [`Store::claim_jobs`] takes; larger limits are cut to it.
pub const MAX_JOB_CLAIM: u32 = 1_000;

/// Rows per multi-row statement: 12 parameters a row for inserts, 7 for finishes, far below
/// both databases' parameter limits.
const CHUNK: usize = 500;
/// Schedules handled per scheduler tick call.
const SCHEDULES_PER_TICK: i64 = 1_000;

/// The job columns every read returns, in [`job_from_row`] order.
const JOB_COLUMNS: &str = "id, tenant_id, handler, payload, priority_rank, status, attempts, \
    max_attempts, run_at_ms, expires_at_ms, timeout_ms, idempotency_key, schedule, created_at_ms, \
    started_at_ms, finished_at_ms, lease_until_ms, worker_id, result, last_error, \
    CAST(CASE WHEN cancel_requested THEN 1 ELSE 0 END AS BIGINT)";

/// The statuses a worker may claim, as the claim query and the `jobs_claim` partial index
/// write them (SQLite uses a partial index only when the query repeats its predicate).
const CLAIMABLE: &str = "status IN ('pending','retrying')";

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob<'a> {
    /// A handler name ([`jobs::valid_handler_name`]); whether it exists is the runtime's concern.
    pub handler: &'a str,
    /// A JSON object, at most [`MAX_JOB_PAYLOAD_BYTES`].
    pub payload: &'a str,
    pub priority: Priority,
    /// When it may start (Unix ms); at or before the enqueue time means now.
    pub run_at_ms: i64,
    /// Not started by then, it expires.
    pub expires_at_ms: Option<i64>,
    /// Runs at most this many times (1 to [`MAX_JOB_ATTEMPTS`]): retries + 1.
    pub max_attempts: u32,
    /// The hard time limit of one attempt.
    pub timeout_ms: u64,
    /// A repeated enqueue with the same key returns the tenant's existing job.
    pub idempotency_key: Option<&'a str>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// `job_<uuid v7>`: ids sort by creation time.
    pub id: String,
    pub tenant_id: String,
    pub handler: String,
    pub payload: String,
    pub priority: Priority,
    pub status: JobStatus,
    /// Claims so far (attempts started); never more than `max_attempts`.
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub timeout_ms: u64,
    pub idempotency_key: Option<String>,
    /// The schedule that enqueued it, for recurring jobs.
    pub schedule: Option<String>,
    pub created_at_ms: i64,
    /// When the latest attempt started.
    pub started_at_ms: Option<i64>,
    /// When it reached a final status.
    pub finished_at_ms: Option<i64>,
    /// While running: the worker must heartbeat before this, or the job is rescued.
    pub lease_until_ms: Option<i64>,
    /// The worker running it (or that ran its latest attempt).
    pub worker_id: Option<String>,
    pub result: Option<String>,
    /// The latest failed attempt's error (kept after a later success, as history).
    pub last_error: Option<String>,
    /// Someone cancelled it while it ran; its worker stops it at the next heartbeat.
    pub cancel_requested: bool,
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub job: JobRecord,
    /// False when the idempotency key matched an existing job, which is returned as it is.
    pub created: bool,
}

/// Which jobs [`Store::list_jobs`] returns: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter<'a> {
    pub priority: Option<Priority>,
    pub status: Option<JobStatus>,
    pub handler: Option<&'a str>,
    /// Page cursor: only jobs older than this id (the last id of the previous page).
    pub before_id: Option<&'a str>,
    /// 1 to [`MAX_JOB_PAGE`] (0 counts as 1, more as the maximum).
    pub limit: u32,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded {
        result: Option<String>,
    },
    /// Retry at this time (from [`jobs::RetryPolicy::after_failure`]). If the job has no
    /// attempts left the store makes it dead instead.
    RetryAt {
        at_ms: i64,
        error: String,
    },
    Dead {
        error: String,
    },
    /// A failure no retry can fix.
    Failed {
        error: String,
    },
    /// Stopped because it was cancelled.
    Cancelled,
}

/// One finished attempt: the job, the attempt number it was claimed with, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish<'a> {
    pub job_id: &'a str,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
}

/// A tenant's queues at one moment ([`Store::job_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    /// One per priority, most urgent first, all five always present.
    pub queues: Vec<QueueStats>,
}

/// One queue of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub priority: Priority,
    /// Jobs per status, all eight always present, in [`JobStatus::ALL`] order.
    pub by_status: Vec<(JobStatus, u64)>,
    /// How long the longest-waiting due job (pending or retrying) has waited since its run time.
    pub oldest_pending_age_ms: Option<i64>,
    /// Jobs that succeeded in the last five minutes.
    pub finished_last_5m: u64,
    /// Jobs whose latest failed attempt (retried, dead or failed) is in the last five minutes.
    pub failed_last_5m: u64,
}

/// A recurring job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSchedule {
    pub tenant_id: String,
    pub name: String,
    pub cron: String,
    pub handler: String,
    pub payload: String,
    pub priority: Priority,
    pub enabled: bool,
    /// The next tick to enqueue (Unix ms).
    pub next_run_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What [`Store::rescue_lost_jobs`] did with running jobs whose lease ran out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Back to their queue (`retrying`, due at once).
    pub requeued: u64,
    /// Out of attempts: dead, "worker lost".
    pub dead: u64,
    /// The dead ones by queue, indexed by [`Priority::rank`].
    pub dead_by_rank: [u64; 5],
    /// Cancellation had been asked for: cancelled.
    pub cancelled: u64,
}

/// Due jobs waiting in one tenant's queue ([`Store::job_depths`]), for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDepth {
    pub tenant_id: String,
    pub priority: Priority,
    /// Pending or retrying jobs whose run time has come.
    pub pending: u64,
    pub oldest_pending_age_ms: Option<i64>,
}

/// A `jobs.canary` receipt: the effect its job had, once, however often it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReceipt {
    pub job_id: String,
    /// The worker of the first run.
    pub worker_id: String,
    pub at_ms: i64,
    /// How many runs reached the handler (1 unless a run was repeated).
    pub deliveries: u64,
}

impl Store {
    // ---- tenant-scoped -----------------------------------------------------------------

    /// Enqueues one job. With an idempotency key the tenant already used, nothing is written
    /// and the existing job is returned (`created: false`) whatever its status.
    ///
    /// Concurrent calls in this process are written together (group commit, see
    /// [`EnqueueGroup`]); a lone call writes at once. An invalid job fails only its own call.
    pub async fn enqueue_job(
        &self,
        tenant_id: &str,
        job: &NewJob<'_>,
        now_ms: i64,
    ) -> Result<Enqueued, StoreError> {
        validate_new_job(job)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = self.enqueue_group.join(Pending {
            tenant_id: tenant_id.to_owned(),
            job: OwnedJob::of(job),
            now_ms,
            reply,
        });
        if lead {
            // The writer is a task of its own, so a caller dropped mid-write loses nobody's
            // answer.
            tokio::spawn(self.clone().write_enqueue_groups());
        }
        answer
            .await
            .map_err(|_| corrupt("the enqueue writer stopped before answering".to_owned()))?
    }

    /// Enqueues jobs in one transaction (all or none), with multi-row inserts. The answer is
    /// in input order; a key repeated within the batch enqueues once and returns that job for
    /// every repeat.
    pub async fn enqueue_jobs(
        &self,
        tenant_id: &str,
        jobs: &[NewJob<'_>],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        for job in jobs {
            validate_new_job(job)?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<InsertRow<'_>> = jobs
            .iter()
            .map(|job| InsertRow {
                id: new_job_id(),
                tenant_id,
                job,
                schedule: None,
                now_ms,
            })
            .collect();
        self.write_rows(&rows).await?.into_iter().collect()
    }

    /// Enqueues jobs inside a transaction another store module holds (its writer turn taken),
    /// so that they commit or roll back with that module's rows: feedback items and the job
    /// that processes them. Call [`Store::wake_enqueued`] after the commit.
    pub(crate) async fn enqueue_jobs_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        tenant_id: &str,
        jobs: &[NewJob<'_>],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        for job in jobs {
            validate_new_job(job)?;
        }
        let rows: Vec<InsertRow<'_>> = jobs
            .iter()
            .map(|job| InsertRow {
                id: new_job_id(),
                tenant_id,
                job,
                schedule: None,
                now_ms,
            })
            .collect();
        insert_jobs(conn, self.backend, self.jobs_hub.channel(), &rows)
            .await?
            .into_iter()
            .collect()
    }

    /// Wakes this process's workers of the queues that jobs enqueued by
    /// [`Store::enqueue_jobs_in`] are due on, once their transaction committed.
    pub(crate) fn wake_enqueued(&self, enqueued: &[Enqueued]) {
        self.jobs_hub.wake_local(&due_queues(enqueued));
    }

    /// Inserts `rows` atomically (one statement, or one transaction past [`CHUNK`] rows) in
    /// this process's writer turn, and wakes the local waiters of the due jobs created. The
    /// answer is per row (an existing job being deleted concurrently fails only its row).
    async fn write_rows(
        &self,
        rows: &[InsertRow<'_>],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let notify = self.jobs_hub.channel();
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Insert, Table::Jobs).await?;
        let out = if rows.len() <= CHUNK {
            // One statement: atomic by itself.
            insert_jobs(&mut conn, self.backend, notify, rows).await?
        } else {
            let mut tx = conn.begin().await?;
            let out = insert_jobs(&mut tx, self.backend, notify, rows).await?;
            tx.commit().await?;
            out
        };
        let created: Vec<Enqueued> = out
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        self.jobs_hub.wake_local(&due_queues(&created));
        Ok(out)
    }

    /// The group writer: while calls are queued, takes up to [`GROUP_MAX`] of them, writes
    /// them in one statement and answers each. Ends when the queue is empty.
    async fn write_enqueue_groups(self) {
        let mut guard = WriterGuard {
            group: &self.enqueue_group,
            armed: true,
        };
        while let Some(batch) = guard.next_batch() {
            let answers = self.write_group(&batch).await;
            for (pending, answer) in batch.into_iter().zip(answers) {
                // A caller that went away (dropped its future) needs no answer.
                let _ = pending.reply.send(answer);
            }
        }
    }

    /// Writes one group; one answer per call, in order. A group naming an unknown tenant is
    /// written again per tenant, so that tenant's calls alone fail; any other failure (nothing
    /// of the group was stored) is every call's answer.
    async fn write_group(&self, batch: &[Pending]) -> Vec<Result<Enqueued, StoreError>> {
        let jobs: Vec<NewJob<'_>> = batch.iter().map(|p| p.job.as_new()).collect();
        let rows: Vec<InsertRow<'_>> = batch
            .iter()
            .zip(&jobs)
            .map(|(p, job)| InsertRow {
                id: new_job_id(),
                tenant_id: &p.tenant_id,
                job,
                schedule: None,
                now_ms: p.now_ms,
            })
            .collect();
        let tenants: Vec<&str> = {
            let mut seen = HashSet::new();
            rows.iter()
                .map(|r| r.tenant_id)
                .filter(|t| seen.insert(*t))
                .collect()
        };
        match self.write_rows(&rows).await {
            Ok(out) => out,
            Err(StoreError::NotFound { .. }) if tenants.len() > 1 => {
                let mut out: Vec<Option<Result<Enqueued, StoreError>>> =
                    (0..rows.len()).map(|_| None).collect();
                for tenant in tenants {
                    let (at, own): (Vec<usize>, Vec<InsertRow<'_>>) = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.tenant_id == tenant)
                        .map(|(i, r)| {
                            (
                                i,
                                InsertRow {
                                    id: r.id.clone(),
                                    ..*r
                                },
                            )
                        })
                        .unzip();
                    match self.write_rows(&own).await {
                        Ok(answers) => {
                            for (i, answer) in at.into_iter().zip(answers) {
                                out[i] = Some(answer);
                            }
                        }
                        Err(e) => {
                            for i in at {
                                out[i] = Some(Err(share_error(&e)));
                            }
                        }
                    }
                }
                out.into_iter()
                    .map(|answer| {
                        answer
                            .unwrap_or_else(|| Err(corrupt("enqueue left a job unanswered".into())))
                    })
                    .collect()
            }
            Err(e) => {
                let mut out: Vec<_> = (1..rows.len()).map(|_| Err(share_error(&e))).collect();
                out.insert(0, Err(e));
                out
            }
        }
    }

    /// One of the tenant's jobs; another tenant's job is `None`, exactly like a missing one.
    pub async fn job(
        &self,
        tenant_id: &str,
        job_id: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        if !crate::could_be_stored(job_id) {
            return Ok(None);
        }
        let mut conn = self.acquire(Operation::Select, Table::Jobs).await?;
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| job_from_row(&row))
        .transpose()
    }

    /// The tenant's jobs matching `filter`, newest first.
    pub async fn list_jobs(
        &self,
        tenant_id: &str,
        filter: &JobFilter<'_>,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1");
        let mut texts: Vec<&str> = Vec::new();
        let mut next = 2;
        let mut rank = None;
        if let Some(priority) = filter.priority {
            sql.push_str(&format!(" AND priority_rank = ${next}"));
            next += 1;
            rank = Some(i64::from(priority.rank()));
        }
        for (column, value) in [
            ("status", filter.status.map(JobStatus::as_str)),
            ("handler", filter.handler),
            ("before_id", filter.before_id),
        ] {
            let Some(value) = value else { continue };
            if !crate::could_be_stored(value) {
                return Ok(Vec::new());
            }
            let term = if column == "before_id" {
                "id <"
            } else {
                column
            };
            let op = if column == "before_id" { "" } else { " =" };
            sql.push_str(&format!(" AND {term}{op} ${next}"));
            next += 1;
            texts.push(value);
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${next}"));
        let limit = i64::from(filter.limit.clamp(1, MAX_JOB_PAGE));
        let mut query = sqlx::query(&sql).bind(tenant_id);
        if let Some(rank) = rank {
            query = query.bind(rank);
        }
        for text in texts {
            query = query.bind(text);
        }
        let mut conn = self.acquire(Operation::Select, Table::Jobs).await?;
        query
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
    }

    /// Cancels one of the tenant's jobs: a pending or retrying job is cancelled at once; a
    /// running one is marked (`cancel_requested`) and its worker stops it at its next
    /// heartbeat; a finished one is [`StoreError::JobState`].
    pub async fn cancel_job(
        &self,
        tenant_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Result<JobRecord, StoreError> {
        let cancel_running_sql = format!(
            "UPDATE jobs SET cancel_requested = TRUE
             WHERE tenant_id = $1 AND id = $2 AND status = $3 AND attempts = $4
             RETURNING {JOB_COLUMNS}"
        );
        let cancel_waiting_sql = format!(
            "UPDATE jobs SET status = $1, finished_at_ms = $2, lease_until_ms = NULL
             WHERE tenant_id = $3 AND id = $4 AND status = $5 AND attempts = $6
             RETURNING {JOB_COLUMNS}"
        );
        // Read, decide, then write only if the job is still as read; a lost race reads again.
        for _ in 0..CAS_ATTEMPTS {
            let job = self.job_or_not_found(tenant_id, job_id).await?;
            let next = job
                .status
                .apply(JobEvent::Cancel)
                .map_err(|_| job_state(&job, "cancelled"))?;
            if job.status == JobStatus::Running && job.cancel_requested {
                return Ok(job);
            }
            let _turn = self.write_turn().await;
            let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
            let query = if job.status == JobStatus::Running {
                // The worker records `cancelled` when it has stopped the handler.
                sqlx::query(&cancel_running_sql)
            } else {
                sqlx::query(&cancel_waiting_sql)
                    .bind(next.as_str())
                    .bind(now_ms)
            };
            let row = query
                .bind(tenant_id)
                .bind(job_id)
                .bind(job.status.as_str())
                .bind(i64::from(job.attempts))
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                return job_from_row(&row);
            }
        }
        Err(busy_job(job_id))
    }

    /// Sends a dead or failed job back to its queue, due now, with its attempts reset (its last
    /// error stays until its next run fails or it succeeds). Any other status is
    /// [`StoreError::JobState`].
    pub async fn retry_job(
        &self,
        tenant_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Result<JobRecord, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let job = self.job_or_not_found(tenant_id, job_id).await?;
            let next = job
                .status
                .apply(JobEvent::Retry)
                .map_err(|_| job_state(&job, "retried"))?;
            let _turn = self.write_turn().await;
            let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
            let mut tx = conn.begin().await?;
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = $4, attempts = 0, run_at_ms = $5, expires_at_ms = NULL,
                        finished_at_ms = NULL, started_at_ms = NULL, lease_until_ms = NULL,
                        worker_id = NULL, result = NULL, cancel_requested = FALSE
                 WHERE tenant_id = $1 AND id = $2 AND status = $3
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(tenant_id)
            .bind(job_id)
            .bind(job.status.as_str())
            .bind(next.as_str())
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let job = job_from_row(&row)?;
            self.jobs_hub.notify_in(&mut tx, &[job.priority]).await?;
            tx.commit().await?;
            self.jobs_hub.wake_local(&[job.priority]);
            return Ok(job);
        }
        Err(busy_job(job_id))
    }

    /// Deletes the tenant's jobs in one final status (success, failed, cancelled, expired or
    /// dead); another status is [`StoreError::Invalid`] naming `status`. Returns how many.
    pub async fn purge_jobs(&self, tenant_id: &str, status: JobStatus) -> Result<u64, StoreError> {
        if !status.is_final() {
            return Err(StoreError::Invalid {
                field: "status",
                reason: format!(
                    "only finished jobs can be purged (success, failed, cancelled, expired, dead), not {status}"
                ),
            });
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::Jobs).await?;
        Ok(
            sqlx::query("DELETE FROM jobs WHERE tenant_id = $1 AND status = $2")
                .bind(tenant_id)
                .bind(status.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        )
    }

    /// The tenant's queues: jobs per status, the oldest due job's wait, and the last five
    /// minutes' successes and failures.
    pub async fn job_stats(&self, tenant_id: &str, now_ms: i64) -> Result<JobStats, StoreError> {
        let since = now_ms.saturating_sub(5 * 60_000);
        let rows = {
            let mut conn = self.acquire(Operation::Select, Table::Jobs).await?;
            sqlx::query(&format!(
                "SELECT priority_rank, status, COUNT(*),
                        MIN(CASE WHEN {CLAIMABLE} AND run_at_ms <= $2 THEN run_at_ms END),
                        COUNT(CASE WHEN status = 'success' AND finished_at_ms >= $3 THEN 1 END),
                        COUNT(CASE WHEN last_failed_at_ms >= $3 THEN 1 END)
                 FROM jobs WHERE tenant_id = $1 GROUP BY priority_rank, status"
            ))
            .bind(tenant_id)
            .bind(now_ms)
            .bind(since)
            .fetch_all(&mut *conn)
            .await?
        };
        let mut queues: Vec<QueueStats> = Priority::ALL
            .into_iter()
            .map(|priority| QueueStats {
                priority,
                by_status: JobStatus::ALL.into_iter().map(|s| (s, 0)).collect(),
                oldest_pending_age_ms: None,
                finished_last_5m: 0,
                failed_last_5m: 0,
            })
            .collect();
        for row in rows {
            let priority = priority_of(row.try_get(0)?)?;
            let status = status_of(&row.try_get::<String, _>(1)?)?;
            let count = count_of(row.try_get(2)?);
            let oldest: Option<i64> = row.try_get(3)?;
            let queue = &mut queues[usize::from(priority.rank())];
            if let Some(slot) = queue.by_status.iter_mut().find(|(s, _)| *s == status) {
                slot.1 += count;
            }
            if let Some(oldest) = oldest {
                let age = now_ms.saturating_sub(oldest).max(0);
                queue.oldest_pending_age_ms =
                    Some(queue.oldest_pending_age_ms.map_or(age, |a| a.max(age)));
            }
            queue.finished_last_5m += count_of(row.try_get(4)?);
            queue.failed_last_5m += count_of(row.try_get(5)?);
        }
        Ok(JobStats { queues })
    }

    /// Creates or replaces the tenant's schedule `name`. Its next run is `cron`'s first tick
    /// after `now_ms`, unless the schedule existed enabled with the same expression and stays
    /// enabled (then its pending tick is kept).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_job_schedule(
        &self,
        tenant_id: &str,
        name: &str,
        cron: &Schedule,
        handler: &str,
        payload: &str,
        priority: Priority,
        enabled: bool,
        now_ms: i64,
    ) -> Result<JobSchedule, StoreError> {
        validate_schedule_name(name)?;
        validate_handler(handler)?;
        validate_payload(payload)?;
        let next_run_ms = cron.next_after_ms(now_ms).unwrap_or(i64::MAX);
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Upsert, Table::JobSchedules).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO job_schedules (tenant_id, name, cron, handler, payload, priority_rank,
                 enabled, next_run_ms, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 next_run_ms = CASE WHEN job_schedules.cron = excluded.cron
                                     AND job_schedules.enabled AND excluded.enabled
                                    THEN job_schedules.next_run_ms ELSE excluded.next_run_ms END,
                 cron = excluded.cron, handler = excluded.handler, payload = excluded.payload,
                 priority_rank = excluded.priority_rank, enabled = excluded.enabled,
                 updated_at_ms = excluded.updated_at_ms
             RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(cron.expression())
        .bind(handler)
        .bind(payload)
        .bind(i64::from(priority.rank()))
        .bind(enabled)
        .bind(next_run_ms)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        schedule_from_row(&row)
    }

    /// The tenant's schedules, by name.
    pub async fn job_schedules(&self, tenant_id: &str) -> Result<Vec<JobSchedule>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::JobSchedules).await?;
        sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM job_schedules WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(schedule_from_row)
        .collect()
    }

    /// Deletes the tenant's schedule `name` (the jobs it enqueued stay); false if none.
    pub async fn delete_job_schedule(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        if !crate::could_be_stored(name) {
            return Ok(false);
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::JobSchedules).await?;
        Ok(
            sqlx::query("DELETE FROM job_schedules WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Records that the `jobs.canary` job `job_id` ran: true the first time, false for any
    /// repeat (which only counts a delivery). The handler's idempotent effect.
    pub async fn record_job_receipt(
        &self,
        tenant_id: &str,
        job_id: &str,
        worker_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if !crate::could_be_stored(job_id) || !crate::could_be_stored(worker_id) {
            return Err(StoreError::Invalid {
                field: "job_id",
                reason: "must not contain NUL".to_owned(),
            });
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Upsert, Table::JobReceipts).await?;
        let deliveries: i64 = sqlx::query(
            "INSERT INTO job_receipts (tenant_id, job_id, worker_id, at_ms, deliveries)
             VALUES ($1, $2, $3, $4, 1)
             ON CONFLICT (tenant_id, job_id) DO UPDATE SET deliveries = job_receipts.deliveries + 1
             RETURNING deliveries",
        )
        .bind(tenant_id)
        .bind(job_id)
        .bind(worker_id)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?
        .try_get(0)?;
        Ok(deliveries == 1)
    }

    /// The tenant's canary receipts, by job id.
    pub async fn job_receipts(&self, tenant_id: &str) -> Result<Vec<JobReceipt>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::JobReceipts).await?;
        sqlx::query(
            "SELECT job_id, worker_id, at_ms, deliveries FROM job_receipts
             WHERE tenant_id = $1 ORDER BY job_id",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(JobReceipt {
                job_id: row.try_get(0)?,
                worker_id: row.try_get(1)?,
                at_ms: row.try_get(2)?,
                deliveries: count_of(row.try_get(3)?),
            })
        })
        .collect()
    }

    /// How many canary receipts (distinct jobs) the tenant has.
    pub async fn count_job_receipts(&self, tenant_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::JobReceipts).await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM job_receipts WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(count_of(n))
    }

    /// Retention: deletes up to `limit` of the tenant's interactions whose event time is
    /// before `before_ms`, oldest first. Call again until it returns less than `limit`.
    pub async fn purge_interactions_before(
        &self,
        tenant_id: &str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::Interactions).await?;
        Ok(sqlx::query(
            "DELETE FROM interactions WHERE seq IN (
                 SELECT seq FROM interactions WHERE tenant_id = $1 AND event_time_ms < $2
                 ORDER BY event_time_ms LIMIT $3)",
        )
        .bind(tenant_id)
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    /// Retention: deletes up to `limit` of the tenant's calculation audit rows computed before
    /// `before_ms`, oldest first. Call again until it returns less than `limit`.
    pub async fn purge_weber_calculations_before(
        &self,
        tenant_id: &str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Delete, Table::WeberCalculations)
            .await?;
        Ok(sqlx::query(
            "DELETE FROM weber_calculations WHERE id IN (
                 SELECT id FROM weber_calculations WHERE tenant_id = $1 AND calculated_at_ms < $2
                 ORDER BY calculated_at_ms LIMIT $3)",
        )
        .bind(tenant_id)
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    // ---- worker side (operator functions, tenant-agnostic) -----------------------------

    /// Claims up to `limit` due jobs of one queue, oldest run time first, for `worker_id`: each
    /// becomes `running` with one more attempt and a lease until `now_ms + lease_ms`. Expired
    /// jobs are not claimed. Concurrent claimers never get the same job.
    pub async fn claim_jobs(
        &self,
        priority: Priority,
        worker_id: &str,
        limit: u32,
        now_ms: i64,
        lease_ms: u64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        validate_worker_id(worker_id)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // PostgreSQL: the due rows are locked as they are picked, skipping rows another
        // claimer holds; `= ANY(ARRAY(…))` makes the pick an init plan, so the update finds its
        // rows by primary key (with `IN (…)` the planner may hash-join a scan of every
        // claimable row instead). SQLite's single writer needs neither.
        let (open, close) = match self.backend {
            Backend::Postgres => ("= ANY(ARRAY(", " FOR UPDATE SKIP LOCKED))"),
            Backend::Sqlite => ("IN (", ")"),
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_id = $1,
                    lease_until_ms = $2, started_at_ms = $3
             WHERE id {open}
                 SELECT id FROM jobs
                 WHERE {CLAIMABLE} AND priority_rank = $4 AND run_at_ms <= $3
                   AND (expires_at_ms IS NULL OR expires_at_ms > $3)
                 ORDER BY run_at_ms, id LIMIT $5{close}
               AND {CLAIMABLE}
             RETURNING {JOB_COLUMNS}"
        );
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        let mut jobs = sqlx::query(&sql)
            .bind(worker_id)
            .bind(now_ms.saturating_add(ms_i64(lease_ms)))
            .bind(now_ms)
            .bind(i64::from(priority.rank()))
            .bind(i64::from(limit.min(MAX_JOB_CLAIM)))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| (a.run_at_ms, &a.id).cmp(&(b.run_at_ms, &b.id)));
        Ok(jobs)
    }

    /// Extends the leases of the jobs `worker_id` runs (`(job id, attempt)`) to
    /// `now_ms + lease_ms`. Returns the ids, among those still held, whose cancellation was
    /// asked for. Jobs no longer held under that lease are left alone.
    pub async fn heartbeat_jobs(
        &self,
        worker_id: &str,
        running: &[(String, u32)],
        now_ms: i64,
        lease_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        validate_worker_id(worker_id)?;
        let mut cancelled = Vec::new();
        if running.is_empty() {
            return Ok(cancelled);
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        for chunk in running.chunks(CHUNK) {
            let mut p = Params::new(self.backend);
            let v = values_cte(&mut p, chunk.len(), &["id", "attempt"]);
            let (lease, worker) = (p.next(), p.next());
            let sql = format!(
                "WITH {v} UPDATE jobs SET lease_until_ms = {lease} FROM v
                 WHERE jobs.id = v.id AND jobs.attempts = v.attempt AND jobs.worker_id = {worker}
                   AND jobs.status = 'running'
                 RETURNING jobs.id, CAST(CASE WHEN jobs.cancel_requested THEN 1 ELSE 0 END AS BIGINT)"
            );
            let mut query = sqlx::query(&sql);
            for (id, attempt) in chunk {
                query = query.bind(id.as_str()).bind(i64::from(*attempt));
            }
            let query = query
                .bind(now_ms.saturating_add(ms_i64(lease_ms)))
                .bind(worker_id);
            for row in query.fetch_all(&mut *conn).await? {
                if row.try_get::<i64, _>(1)? != 0 {
                    cancelled.push(row.try_get(0)?);
                }
            }
        }
        Ok(cancelled)
    }

    /// Records finished attempts in one transaction. Each applies only if its job is still
    /// `running` under `worker_id` and that attempt; the answer says, per item in order,
    /// whether it applied. A retry asked for a job with no attempts left makes it dead, and
    /// for a job whose cancellation was asked for, cancelled.
    pub async fn finish_jobs(
        &self,
        worker_id: &str,
        finished: &[Finish<'_>],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        validate_worker_id(worker_id)?;
        let mut items = Vec::with_capacity(finished.len());
        for f in finished {
            items.push(FinishRow::new(f)?);
        }
        let mut applied = vec![false; finished.len()];
        if finished.is_empty() {
            return Ok(applied);
        }
        // A job named twice is finished by its first item only.
        let mut seen = HashSet::with_capacity(finished.len());
        let unique: Vec<usize> = (0..finished.len())
            .filter(|&i| seen.insert(finished[i].job_id))
            .collect();
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        let done = if unique.len() <= CHUNK {
            // One statement: atomic by itself.
            finish_chunks(&mut conn, self.backend, worker_id, &items, &unique, now_ms).await?
        } else {
            let mut tx = conn.begin().await?;
            let done =
                finish_chunks(&mut tx, self.backend, worker_id, &items, &unique, now_ms).await?;
            tx.commit().await?;
            done
        };
        for i in unique {
            applied[i] = done.contains(finished[i].job_id);
        }
        Ok(applied)
    }

    /// Graceful shutdown: gives back jobs `worker_id` claimed but will not finish. Each goes
    /// back to `pending` with the attempt uncounted (or to `cancelled` if that was asked for).
    /// Returns how many were released.
    pub async fn release_jobs(
        &self,
        worker_id: &str,
        running: &[(String, u32)],
    ) -> Result<u64, StoreError> {
        validate_worker_id(worker_id)?;
        if running.is_empty() {
            return Ok(0);
        }
        let now_ms = crate::now_ms();
        let mut released = 0;
        let mut queues = Vec::new();
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        let mut tx = conn.begin().await?;
        for chunk in running.chunks(CHUNK) {
            let mut p = Params::new(self.backend);
            let v = values_cte(&mut p, chunk.len(), &["id", "attempt"]);
            let (now, worker) = (p.next(), p.next());
            let sql = format!(
                "WITH {v} UPDATE jobs SET
                     status = CASE WHEN jobs.cancel_requested THEN 'cancelled' ELSE 'pending' END,
                     attempts = jobs.attempts - 1, lease_until_ms = NULL, worker_id = NULL,
                     started_at_ms = NULL,
                     finished_at_ms = CASE WHEN jobs.cancel_requested THEN {now} ELSE NULL END
                 FROM v
                 WHERE jobs.id = v.id AND jobs.attempts = v.attempt AND jobs.worker_id = {worker}
                   AND jobs.status = 'running'
                 RETURNING jobs.priority_rank"
            );
            let mut query = sqlx::query(&sql);
            for (id, attempt) in chunk {
                query = query.bind(id.as_str()).bind(i64::from(*attempt));
            }
            let query = query.bind(now_ms).bind(worker_id);
            for row in query.fetch_all(&mut *tx).await? {
                released += 1;
                queues.push(priority_of(row.try_get(0)?)?);
            }
        }
        queues.sort();
        queues.dedup();
        self.jobs_hub.notify_in(&mut tx, &queues).await?;
        tx.commit().await?;
        self.jobs_hub.wake_local(&queues);
        Ok(released)
    }

    /// Running jobs whose lease ran out before `now_ms` lost their worker: each goes back to
    /// its queue due at once (`retrying`: the job did nothing wrong), or is dead ("worker
    /// lost") when it used all its attempts, so a job that kills its worker every time ends.
    pub async fn rescue_lost_jobs(&self, now_ms: i64) -> Result<RescueReport, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET
                 status = CASE WHEN cancel_requested THEN 'cancelled'
                               WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END,
                 run_at_ms = CASE WHEN cancel_requested OR attempts >= max_attempts
                                  THEN run_at_ms ELSE $1 END,
                 finished_at_ms = CASE WHEN cancel_requested OR attempts >= max_attempts
                                       THEN $1 ELSE NULL END,
                 lease_until_ms = NULL,
                 last_error = CASE WHEN cancel_requested THEN last_error ELSE $2 END,
                 last_failed_at_ms = CASE WHEN cancel_requested THEN last_failed_at_ms ELSE $1 END
             WHERE status = 'running' AND lease_until_ms < $1
             RETURNING status, priority_rank",
        )
        .bind(now_ms)
        .bind(WORKER_LOST)
        .fetch_all(&mut *tx)
        .await?;
        let mut report = RescueReport::default();
        let mut queues = Vec::new();
        for row in rows {
            match status_of(&row.try_get::<String, _>(0)?)? {
                JobStatus::Retrying => {
                    report.requeued += 1;
                    queues.push(priority_of(row.try_get(1)?)?);
                }
                JobStatus::Dead => {
                    report.dead += 1;
                    let rank = usize::from(priority_of(row.try_get(1)?)?.rank());
                    report.dead_by_rank[rank] += 1;
                }
                _ => report.cancelled += 1,
            }
        }
        queues.sort();
        queues.dedup();
        self.jobs_hub.notify_in(&mut tx, &queues).await?;
        tx.commit().await?;
        self.jobs_hub.wake_local(&queues);
        Ok(report)
    }

    /// Pending or retrying jobs whose expiry is at or before `now_ms` become `expired`.
    /// Returns how many.
    pub async fn expire_jobs(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Jobs).await?;
        Ok(sqlx::query(&format!(
            "UPDATE jobs SET status = 'expired', finished_at_ms = $1
             WHERE {CLAIMABLE} AND expires_at_ms <= $1"
        ))
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    /// The scheduler's tick: for every enabled schedule whose next run has come, moves its
    /// next run to the tick after `now_ms` and enqueues the latest due tick, in one
    /// transaction per schedule that only the caller who moved the next run commits. So any
    /// number of replicas enqueue each tick once. Ticks missed while no scheduler ran are not
    /// back-filled: only the latest one is enqueued. Returns the jobs created.
    pub async fn enqueue_due_schedules(&self, now_ms: i64) -> Result<Vec<Enqueued>, StoreError> {
        let due = {
            let mut conn = self.acquire(Operation::Select, Table::JobSchedules).await?;
            sqlx::query(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM job_schedules
                 WHERE enabled AND next_run_ms <= $1 ORDER BY next_run_ms LIMIT $2"
            ))
            .bind(now_ms)
            .bind(SCHEDULES_PER_TICK)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(schedule_from_row)
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut created = Vec::new();
        for schedule in due {
            let cron = match Schedule::parse(&schedule.cron) {
                Ok(cron) => cron,
                Err(e) => {
                    tracing::warn!(tenant_id = %schedule.tenant_id, schedule = %schedule.name,
                        error = %e, "stored job schedule has an unusable cron expression; skipped");
                    continue;
                }
            };
            let tick = cron
                .latest_at_or_before_ms(now_ms)
                .filter(|t| *t >= schedule.next_run_ms)
                .unwrap_or(schedule.next_run_ms);
            let following = cron.next_after_ms(now_ms).unwrap_or(i64::MAX);
            let settings = schedule.priority.settings();
            let key = format!("schedule:{}:{tick}", schedule.name);
            let job = NewJob {
                handler: &schedule.handler,
                payload: &schedule.payload,
                priority: schedule.priority,
                run_at_ms: tick,
                expires_at_ms: None,
                max_attempts: settings.max_retries.saturating_add(1),
                timeout_ms: settings.timeout_ms,
                idempotency_key: Some(&key),
            };
            let row = InsertRow {
                id: new_job_id(),
                tenant_id: &schedule.tenant_id,
                job: &job,
                schedule: Some(&schedule.name),
                now_ms,
            };
            let _turn = self.write_turn().await;
            let mut conn = self.acquire(Operation::Insert, Table::Jobs).await?;
            let mut tx = conn.begin().await?;
            let moved = sqlx::query(
                "UPDATE job_schedules SET next_run_ms = $3
                 WHERE tenant_id = $1 AND name = $2 AND next_run_ms = $4 AND enabled",
            )
            .bind(&schedule.tenant_id)
            .bind(&schedule.name)
            .bind(following)
            .bind(schedule.next_run_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                // Another scheduler took this tick (or the schedule changed meanwhile).
                tx.rollback().await?;
                continue;
            }
            let mut out = insert_jobs(
                &mut tx,
                self.backend,
                self.jobs_hub.channel(),
                std::slice::from_ref(&row),
            )
            .await?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await?;
            self.jobs_hub.wake_local(&due_queues(&out));
            if let Some(enqueued) = out.pop().filter(|e| e.created) {
                created.push(enqueued);
            }
        }
        Ok(created)
    }

    /// The earliest run time after `now_ms` of a claimable job of the queue: how long a worker
    /// with nothing due may sleep.
    pub async fn next_job_run_ms(
        &self,
        priority: Priority,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Jobs).await?;
        Ok(sqlx::query(&format!(
            "SELECT MIN(run_at_ms) FROM jobs
             WHERE {CLAIMABLE} AND priority_rank = $1 AND run_at_ms > $2"
        ))
        .bind(i64::from(priority.rank()))
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?)
    }

    /// Due jobs waiting per tenant and queue (only the pairs that have some), for metrics.
    pub async fn job_depths(&self, now_ms: i64) -> Result<Vec<JobDepth>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Jobs).await?;
        sqlx::query(&format!(
            "SELECT tenant_id, priority_rank, COUNT(*), MIN(run_at_ms) FROM jobs
             WHERE {CLAIMABLE} AND run_at_ms <= $1
             GROUP BY tenant_id, priority_rank ORDER BY tenant_id, priority_rank"
        ))
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            let oldest: Option<i64> = row.try_get(3)?;
            Ok(JobDepth {
                tenant_id: row.try_get(0)?,
                priority: priority_of(row.try_get(1)?)?,
                pending: count_of(row.try_get(2)?),
                oldest_pending_age_ms: oldest.map(|t| now_ms.saturating_sub(t).max(0)),
            })
        })
        .collect()
    }

    /// Retention of finished jobs, across tenants: deletes up to `limit` jobs that reached a
    /// final status before `before_ms`, oldest first. Call again until it returns less than
    /// `limit`. (A deleted job's idempotency key may be used again.)
    pub async fn delete_finished_jobs_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::Jobs).await?;
        Ok(sqlx::query(
            "DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs WHERE finished_at_ms < $1 ORDER BY finished_at_ms LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    /// A waiter for this store's job wake-ups (see [`JobWakeups`]). On PostgreSQL the first
    /// call starts the store's `LISTEN` connection (it needs a Tokio runtime; without one,
    /// waiters only time out).
    pub fn job_wakeups(&self) -> JobWakeups {
        self.jobs_hub.start_listener();
        JobWakeups {
            seen: self.jobs_hub.generations(),
            hub: self.jobs_hub.clone(),
        }
    }

    async fn job_or_not_found(
        &self,
        tenant_id: &str,
        job_id: &str,
    ) -> Result<JobRecord, StoreError> {
        self.job(tenant_id, job_id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("job '{}'", job_id.chars().take(100).collect::<String>()),
            })
    }
}

/// How often a read-decide-write cycle (cancel, retry) is tried when the job keeps changing
/// between its read and its write.
const CAS_ATTEMPTS: usize = 5;

/// When a finish asking for a retry retries: attempts are left and nobody asked to cancel
/// the job (then it is cancelled; without attempts left it is dead).
const FINISH_RETRIES: &str = "v.status = 'retrying' AND jobs.attempts < jobs.max_attempts \
    AND NOT jobs.cancel_requested";

/// The error of a job whose lease ran out.
const WORKER_LOST: &str = "worker lost: its lease ran out before the job finished";

const SCHEDULE_COLUMNS: &str = "tenant_id, name, cron, handler, payload, priority_rank, \
    CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT), next_run_ms, created_at_ms, updated_at_ms";

struct InsertRow<'a> {
    id: String,
    tenant_id: &'a str,
    job: &'a NewJob<'a>,
    schedule: Option<&'a str>,
    /// The enqueue time: the row's `created_at_ms`.
    now_ms: i64,
}

/// One finish item, validated, with the status it asks for.
struct FinishRow<'a> {
    job_id: &'a str,
    attempt: u32,
    status: JobStatus,
    run_at_ms: Option<i64>,
    result: Option<&'a str>,
    error: Option<String>,
    failed: bool,
}

impl<'a> FinishRow<'a> {
    fn new(f: &'a Finish<'a>) -> Result<FinishRow<'a>, StoreError> {
        let (event, run_at_ms, result, error) = match &f.outcome {
            AttemptOutcome::Succeeded { result } => {
                if let Some(result) = result {
                    if result.len() > MAX_JOB_RESULT_BYTES || result.contains('\0') {
                        return Err(StoreError::Invalid {
                            field: "result",
                            reason: format!(
                                "must be at most {MAX_JOB_RESULT_BYTES} bytes, without NUL"
                            ),
                        });
                    }
                }
                (JobEvent::Succeed, None, result.as_deref(), None)
            }
            AttemptOutcome::RetryAt { at_ms, error } => (
                JobEvent::FailRetry,
                Some(*at_ms),
                None,
                Some(error_text(error)),
            ),
            AttemptOutcome::Dead { error } => {
                (JobEvent::FailDead, None, None, Some(error_text(error)))
            }
            AttemptOutcome::Failed { error } => (
                JobEvent::FailPermanently,
                None,
                None,
                Some(error_text(error)),
            ),
            AttemptOutcome::Cancelled => (JobEvent::Cancel, None, None, None),
        };
        let status = JobStatus::Running
            .apply(event)
            .map_err(|e| StoreError::Invalid {
                field: "outcome",
                reason: e.to_string(),
            })?;
        Ok(FinishRow {
            job_id: f.job_id,
            attempt: f.attempt,
            status,
            run_at_ms,
            result,
            error,
            failed: matches!(
                event,
                JobEvent::FailRetry | JobEvent::FailDead | JobEvent::FailPermanently
            ),
        })
    }
}

/// Inserts `rows` (in statements of [`CHUNK`] rows, each row under its own tenant and enqueue
/// time), skipping keys the row's tenant already used, and reads the existing jobs of those
/// keys. The answer is per row, in order. On PostgreSQL each statement also notifies the
/// queues of the due jobs it created (`notify`: the channel): in its own transaction, so the
/// notification goes out exactly when the jobs become visible, and a single-statement enqueue
/// needs no explicit transaction (one round trip instead of four).
async fn insert_jobs(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    notify: Option<&str>,
    rows: &[InsertRow<'_>],
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    const COLUMNS: usize = 12;
    let mut inserted: HashMap<String, JobRecord> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let mut p = Params::new(backend);
        let mut values = String::with_capacity(chunk.len() * 80);
        for r in 0..chunk.len() {
            if r > 0 {
                values.push(',');
            }
            let mut row: Vec<String> = (0..COLUMNS).map(|_| p.next()).collect();
            // `status` and `attempts` are the same for every new job.
            row.insert(5, "'pending'".to_owned());
            row.insert(6, "0".to_owned());
            values.push('(');
            values.push_str(&row.join(","));
            values.push(')');
        }
        let insert = format!(
            "INSERT INTO jobs (id, tenant_id, handler, payload, priority_rank, status, attempts,
                 max_attempts, run_at_ms, expires_at_ms, timeout_ms, idempotency_key, schedule,
                 created_at_ms)
             VALUES {values}
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
        );
        let sql = match notify {
            None => format!("{insert} RETURNING {JOB_COLUMNS}"),
            // PostgreSQL delivers one notification per distinct (channel, payload) of a
            // transaction, however many rows call it.
            Some(_) => {
                let channel = p.next();
                let names: String = Priority::ALL
                    .iter()
                    .map(|p| format!(" WHEN {} THEN '{}'", p.rank(), p.as_str()))
                    .collect();
                format!(
                    "WITH ins AS ({insert} RETURNING *)
                     SELECT {JOB_COLUMNS},
                            CASE WHEN run_at_ms <= created_at_ms
                                 THEN pg_notify({channel}, CASE priority_rank{names} END) IS NULL
                            END
                     FROM ins"
                )
            }
        };
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let job = row.job;
            query = query
                .bind(row.id.as_str())
                .bind(row.tenant_id)
                .bind(job.handler)
                .bind(job.payload)
                .bind(i64::from(job.priority.rank()))
                .bind(i64::from(job.max_attempts))
                .bind(job.run_at_ms)
                .bind(job.expires_at_ms)
                .bind(ms_i64(job.timeout_ms))
                .bind(job.idempotency_key)
                .bind(row.schedule)
                .bind(row.now_ms);
        }
        // Several tenants: the caller (a group commit) retries per tenant to name the one.
        let tenant_id = match chunk.first() {
            Some(first) if chunk.iter().all(|r| r.tenant_id == first.tenant_id) => first.tenant_id,
            _ => "of this group",
        };
        if let Some(channel) = notify {
            query = query.bind(channel);
        }
        for row in query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?
        {
            let job = job_from_row(&row)?;
            inserted.insert(job.id.clone(), job);
        }
    }
    // Rows not inserted had a key the tenant already used (before, or earlier in this batch).
    let mut missing: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in rows.iter().filter(|r| !inserted.contains_key(&r.id)) {
        if let Some(key) = r.job.idempotency_key {
            missing.entry(r.tenant_id).or_default().push(key);
        }
    }
    let mut existing: HashMap<(String, String), JobRecord> = HashMap::new();
    for (tenant_id, keys) in &missing {
        for chunk in keys.chunks(CHUNK) {
            let mut p = Params::new(backend);
            let tenant = p.next();
            let params: Vec<String> = chunk.iter().map(|_| p.next()).collect();
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = {tenant} AND idempotency_key IN ({})",
                params.join(",")
            );
            let mut query = sqlx::query(&sql).bind(*tenant_id);
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(&mut *conn).await? {
                let job = job_from_row(&row)?;
                if let Some(key) = job.idempotency_key.clone() {
                    existing.insert((job.tenant_id.clone(), key), job);
                }
            }
        }
    }
    Ok(rows
        .iter()
        .map(|r| {
            if let Some(job) = inserted.get(&r.id) {
                return Ok(Enqueued {
                    job: job.clone(),
                    created: true,
                });
            }
            r.job
                .idempotency_key
                .and_then(|key| existing.get(&(r.tenant_id.to_owned(), key.to_owned())))
                .map(|job| Enqueued {
                    job: job.clone(),
                    created: false,
                })
                // Only a concurrent deletion of the existing job (retention) gets here.
                .ok_or_else(|| StoreError::Conflict {
                    what: "a job with this idempotency key (being deleted right now; retry)"
                        .to_owned(),
                })
        })
        .collect())
}

/// The `UPDATE … FROM` statements of [`Store::finish_jobs`]: the ids whose finish applied.
async fn finish_chunks(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    worker_id: &str,
    items: &[FinishRow<'_>],
    unique: &[usize],
    now_ms: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut done: HashSet<String> = HashSet::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        let mut p = Params::new(backend);
        let v = values_cte(
            &mut p,
            chunk.len(),
            &[
                "id", "attempt", "status", "run_at", "result", "error", "failed",
            ],
        );
        let (finished_at, failed_at, worker) = (p.next(), p.next(), p.next());
        let sql = format!(
            "WITH {v} UPDATE jobs SET
                 status = CASE WHEN {RETRIES} THEN 'retrying'
                               WHEN v.status = 'retrying' AND jobs.cancel_requested
                               THEN 'cancelled'
                               WHEN v.status = 'retrying' THEN 'dead'
                               ELSE v.status END,
                 run_at_ms = CASE WHEN {RETRIES} THEN v.run_at ELSE jobs.run_at_ms END,
                 finished_at_ms = CASE WHEN {RETRIES} THEN NULL ELSE {finished_at} END,
                 lease_until_ms = NULL,
                 result = v.result,
                 last_error = COALESCE(v.error, jobs.last_error),
                 last_failed_at_ms = CASE WHEN v.failed = 1 THEN {failed_at}
                                          ELSE jobs.last_failed_at_ms END
             FROM v
             WHERE jobs.id = v.id AND jobs.attempts = v.attempt AND jobs.worker_id = {worker}
               AND jobs.status = 'running'
             RETURNING jobs.id",
            RETRIES = FINISH_RETRIES,
        );
        let mut query = sqlx::query(&sql);
        for &i in chunk {
            let f = &items[i];
            query = query
                .bind(f.job_id)
                .bind(i64::from(f.attempt))
                .bind(f.status.as_str())
                .bind(f.run_at_ms)
                .bind(f.result)
                .bind(f.error.as_deref())
                .bind(i64::from(f.failed));
        }
        let query = query.bind(now_ms).bind(now_ms).bind(worker_id);
        for row in query.fetch_all(&mut *conn).await? {
            done.insert(row.try_get(0)?);
        }
    }
    Ok(done)
}

/// The queues of newly created jobs that are due now: those whose workers to wake.
fn due_queues(out: &[Enqueued]) -> Vec<Priority> {
    let mut queues: Vec<Priority> = out
        .iter()
        .filter(|e| e.created && e.job.run_at_ms <= e.job.created_at_ms)
        .map(|e| e.job.priority)
        .collect();
    queues.sort();
    queues.dedup();
    queues
}

/// Statement parameters numbered in the order they appear in the text: `$1, $2, …` on
/// PostgreSQL, anonymous `?` on SQLite, where sqlx finds each numbered parameter by its name
/// and SQLite's lookup is a linear scan, so binding a batch's thousand `$N` grew with its square
/// (see `llm.rs`). The binds then follow the text's order on both.
struct Params {
    backend: Backend,
    count: usize,
}

impl Params {
    fn new(backend: Backend) -> Params {
        Params { backend, count: 0 }
    }

    fn next(&mut self) -> String {
        self.count += 1;
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", self.count),
        }
    }
}

/// `v(c1, c2) AS (VALUES (p, p), …)`: a named row source for `WITH … UPDATE … FROM v`, which
/// both dialects accept (SQLite's `VALUES` cannot be aliased with column names otherwise), and
/// which PostgreSQL plans as one scan however many rows it has.
fn values_cte(params: &mut Params, rows: usize, columns: &[&str]) -> String {
    let mut sql = format!("v({}) AS (VALUES ", columns.join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns.len() {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&params.next());
        }
        sql.push(')');
    }
    sql.push(')');
    sql
}

fn new_job_id() -> String {
    format!("job_{}", uuid::Uuid::now_v7().simple())
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn count_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: "jobs",
        reason,
    }
}

fn priority_of(rank: i64) -> Result<Priority, StoreError> {
    u8::try_from(rank)
        .ok()
        .and_then(Priority::from_rank)
        .ok_or_else(|| corrupt(format!("priority rank {rank}")))
}

fn status_of(status: &str) -> Result<JobStatus, StoreError> {
    status
        .parse()
        .map_err(|e: ::jobs::ParseStatusError| corrupt(e.to_string()))
}

fn job_state(job: &JobRecord, action: &'static str) -> StoreError {
    StoreError::JobState {
        job_id: job.id.clone(),
        status: job.status,
        action,
    }
}

fn busy_job(job_id: &str) -> StoreError {
    StoreError::Conflict {
        what: format!("a change to job '{job_id}' made at the same moment (retry)"),
    }
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let u32_of = |n: i64, what: &str| {
        u32::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
    };
    let timeout: i64 = row.try_get(10)?;
    Ok(JobRecord {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        handler: row.try_get(2)?,
        payload: row.try_get(3)?,
        priority: priority_of(row.try_get(4)?)?,
        status: status_of(&row.try_get::<String, _>(5)?)?,
        attempts: u32_of(row.try_get(6)?, "attempts")?,
        max_attempts: u32_of(row.try_get(7)?, "max_attempts")?,
        run_at_ms: row.try_get(8)?,
        expires_at_ms: row.try_get(9)?,
        timeout_ms: u64::try_from(timeout).map_err(|_| corrupt(format!("timeout {timeout}")))?,
        idempotency_key: row.try_get(11)?,
        schedule: row.try_get(12)?,
        created_at_ms: row.try_get(13)?,
        started_at_ms: row.try_get(14)?,
        finished_at_ms: row.try_get(15)?,
        lease_until_ms: row.try_get(16)?,
        worker_id: row.try_get(17)?,
        result: row.try_get(18)?,
        last_error: row.try_get(19)?,
        cancel_requested: row.try_get::<i64, _>(20)? != 0,
    })
}

fn schedule_from_row(row: &AnyRow) -> Result<JobSchedule, StoreError> {
    Ok(JobSchedule {
        tenant_id: row.try_get(0)?,
        name: row.try_get(1)?,
        cron: row.try_get(2)?,
        handler: row.try_get(3)?,
        payload: row.try_get(4)?,
        priority: priority_of(row.try_get(5)?)?,
        enabled: row.try_get::<i64, _>(6)? != 0,
        next_run_ms: row.try_get(7)?,
        created_at_ms: row.try_get(8)?,
        updated_at_ms: row.try_get(9)?,
    })
}

// ---- validation ---------------------------------------------------------------------------

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn validate_new_job(job: &NewJob<'_>) -> Result<(), StoreError> {
    validate_handler(job.handler)?;
    validate_payload(job.payload)?;
    if !(1..=MAX_JOB_ATTEMPTS).contains(&job.max_attempts) {
        return Err(invalid(
            "max_attempts",
            format!("must be 1 to {MAX_JOB_ATTEMPTS}"),
        ));
    }
    if job.timeout_ms == 0 || job.timeout_ms > i64::MAX as u64 {
        return Err(invalid("timeout_ms", "must be at least 1 ms"));
    }
    if let Some(key) = job.idempotency_key {
        if !valid_idempotency_key(key) {
            return Err(invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"),
            ));
        }
    }
    Ok(())
}

/// Whether `key` is an acceptable idempotency key: 1 to 200 visible ASCII characters.
pub fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && key.bytes().all(|b| b.is_ascii_graphic())
}

fn validate_handler(handler: &str) -> Result<(), StoreError> {
    if ::jobs::valid_handler_name(handler) {
        Ok(())
    } else {
        Err(invalid(
            "handler",
            "must be 1 to 64 characters of a-z, 0-9, '_', '-' and '.', starting with a letter",
        ))
    }
}

fn validate_schedule_name(name: &str) -> Result<(), StoreError> {
    // The same shape as a handler name keeps the tick's idempotency key well inside its limit.
    if ::jobs::valid_handler_name(name) {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "must be 1 to 64 characters of a-z, 0-9, '_', '-' and '.', starting with a letter",
        ))
    }
}

fn validate_payload(payload: &str) -> Result<(), StoreError> {
    if payload.len() > MAX_JOB_PAYLOAD_BYTES {
        return Err(invalid(
            "payload",
            format!(
                "is {} bytes; at most {MAX_JOB_PAYLOAD_BYTES} are accepted",
                payload.len()
            ),
        ));
    }
    let object = payload.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok();
    if !object {
        return Err(invalid("payload", "must be a JSON object"));
    }
    Ok(())
}

fn validate_worker_id(worker_id: &str) -> Result<(), StoreError> {
    if !worker_id.is_empty()
        && worker_id.len() <= MAX_WORKER_ID_BYTES
        && worker_id.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(())
    } else {
        Err(invalid(
            "worker_id",
            format!("must be 1 to {MAX_WORKER_ID_BYTES} visible ASCII characters"),
        ))
    }
}

/// `error` cut to [`MAX_JOB_ERROR_BYTES`] on a character boundary, without NUL (which
/// PostgreSQL text cannot hold).
pub fn error_text(error: &str) -> String {
    let mut end = error.len().min(MAX_JOB_ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].replace('\0', "")
}

// ---- wake-ups -----------------------------------------------------------------------------

/// One queue's wake-up signal: a generation counter bumped on every wake-up, and a `Notify`
/// for the waiters. A waiter compares the generation with the last it saw, so a wake-up that
/// came while it was busy (claiming) is not lost.
#[derive(Debug, Default)]
struct QueueSignal {
    generation: AtomicU64,
    notify: tokio::sync::Notify,
}

/// Most jobs one group commit writes (one statement: far below [`CHUNK`]).
const GROUP_MAX: usize = 256;

/// Group commit of concurrent [`Store::enqueue_job`] calls (shared by a store's clones).
///
/// Each call is validated first (an invalid job fails its call alone), then queued here with
/// a oneshot reply. The call that finds no writer running starts one: a task that takes up
/// to [`GROUP_MAX`] queued calls, inserts them with one multi-row statement (several tenants
/// in one statement; keys repeated within it enqueue once, `created` only for the first),
/// answers each call, and goes on while calls queued up during its write, ending when the
/// queue is empty. A lone call is thus written at once, and concurrent calls share one
/// commit (and one writer turn on SQLite) instead of queuing for one each. The writer is a
/// task, not a caller, so a caller dropped mid-write costs nobody their answer (its own job
/// may still be written: the same as a request that timed out).
#[derive(Debug, Default)]
pub(crate) struct EnqueueGroup {
    state: std::sync::Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    queue: std::collections::VecDeque<Pending>,
    /// A writer task is running and will take what is queued.
    writing: bool,
}

/// One queued [`Store::enqueue_job`] call.
#[derive(Debug)]
struct Pending {
    tenant_id: String,
    job: OwnedJob,
    now_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// A [`NewJob`] that owns its text, to cross into the writer task.
#[derive(Debug)]
struct OwnedJob {
    handler: String,
    payload: String,
    priority: Priority,
    run_at_ms: i64,
    expires_at_ms: Option<i64>,
    max_attempts: u32,
    timeout_ms: u64,
    idempotency_key: Option<String>,
}

impl OwnedJob {
    fn of(job: &NewJob<'_>) -> OwnedJob {
        OwnedJob {
            handler: job.handler.to_owned(),
            payload: job.payload.to_owned(),
            priority: job.priority,
            run_at_ms: job.run_at_ms,
            expires_at_ms: job.expires_at_ms,
            max_attempts: job.max_attempts,
            timeout_ms: job.timeout_ms,
            idempotency_key: job.idempotency_key.map(str::to_owned),
        }
    }

    fn as_new(&self) -> NewJob<'_> {
        NewJob {
            handler: &self.handler,
            payload: &self.payload,
            priority: self.priority,
            run_at_ms: self.run_at_ms,
            expires_at_ms: self.expires_at_ms,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            idempotency_key: self.idempotency_key.as_deref(),
        }
    }
}

impl EnqueueGroup {
    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // The lock is never held across an await or user code; a poisoned one still holds a
        // consistent queue.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a call; true when no writer runs and the caller must start one.
    fn join(&self, pending: Pending) -> bool {
        let mut state = self.state();
        state.queue.push_back(pending);
        !std::mem::replace(&mut state.writing, true)
    }
}

/// The running writer's hold on the group: hands out batches, and if the writer ends any other
/// way than by emptying the queue (a panic, its runtime shutting down) lets the next call start
/// a writer, dropping the queued calls' replies so they fail instead of waiting forever.
struct WriterGuard<'a> {
    group: &'a EnqueueGroup,
    armed: bool,
}

impl WriterGuard<'_> {
    /// The next calls to write, or `None` (the writer is done) when none are queued.
    fn next_batch(&mut self) -> Option<Vec<Pending>> {
        let mut state = self.group.state();
        if state.queue.is_empty() {
            state.writing = false;
            self.armed = false;
            return None;
        }
        let n = state.queue.len().min(GROUP_MAX);
        Some(state.queue.drain(..n).collect())
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.group.state();
            state.writing = false;
            state.queue.clear();
        }
    }
}

/// A copy of a group's error for each of its callers (database errors are not `Clone`: the
/// copies carry the text).
fn share_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Invalid { field, reason } => StoreError::Invalid {
            field,
            reason: reason.clone(),
        },
        StoreError::Conflict { what } => StoreError::Conflict { what: what.clone() },
        StoreError::NotFound { what } => StoreError::NotFound { what: what.clone() },
        StoreError::Corrupt { table, reason } => StoreError::Corrupt {
            table,
            reason: reason.clone(),
        },
        StoreError::StatementTimeout => StoreError::StatementTimeout,
        StoreError::PoolTimedOut => StoreError::PoolTimedOut,
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// The wake-up signals of one [`Store`] (shared by its clones), and on PostgreSQL the
/// listener's state.
#[derive(Debug)]
pub(crate) struct JobHub {
    queues: [QueueSignal; 5],
    /// PostgreSQL: the database URL and channel to `LISTEN` on.
    postgres: Option<(String, String)>,
    started: AtomicBool,
    listening: AtomicBool,
    shutdown: Arc<tokio::sync::Notify>,
}

impl Drop for JobHub {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

/// The PostgreSQL `LISTEN` channel of job wake-ups for the tables in `schema` (`None`: the
/// default search path): `signalbox_jobs_<schema>`, or `signalbox_jobs_<40 hex digits of the
/// schema's SHA-256>` when that would pass the 63 bytes of an identifier. Per schema, because
/// schemas share a database and one schema's enqueues must not wake another's workers.
pub fn jobs_channel(schema: Option<&str>) -> String {
    const PREFIX: &str = "signalbox_jobs";
    match schema {
        None => PREFIX.to_owned(),
        Some(schema) if PREFIX.len() + 1 + schema.len() <= 63 => format!("{PREFIX}_{schema}"),
        Some(schema) => {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(schema.as_bytes()));
            format!("{PREFIX}_{}", &digest[..40])
        }
    }
}

impl JobHub {
    pub(crate) fn new(backend: Backend, url: &str, schema: Option<&str>) -> JobHub {
        JobHub {
            queues: Default::default(),
            postgres: (backend == Backend::Postgres)
                .then(|| (url.to_owned(), jobs_channel(schema))),
            started: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            shutdown: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// PostgreSQL: the channel to notify.
    fn channel(&self) -> Option<&str> {
        self.postgres.as_ref().map(|(_, channel)| channel.as_str())
    }

    fn signal(&self, priority: Priority) -> &QueueSignal {
        &self.queues[usize::from(priority.rank())]
    }

    fn generations(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.queues[i].generation.load(Ordering::SeqCst))
    }

    fn wake(&self, priority: Priority) {
        let signal = self.signal(priority);
        signal.generation.fetch_add(1, Ordering::SeqCst);
        signal.notify.notify_waiters();
    }

    fn wake_all(&self) {
        for priority in Priority::ALL {
            self.wake(priority);
        }
    }

    /// Wakes this process's waiters of `queues` (after the commit that made their jobs due).
    fn wake_local(&self, queues: &[Priority]) {
        for &priority in queues {
            self.wake(priority);
        }
    }

    /// PostgreSQL: queues a notification per queue in `tx`, delivered when it commits.
    async fn notify_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        queues: &[Priority],
    ) -> Result<(), StoreError> {
        let Some((_, channel)) = &self.postgres else {
            return Ok(());
        };
        for priority in queues {
            sqlx::query("SELECT pg_notify($1, $2) IS NULL")
                .bind(channel.as_str())
                .bind(priority.as_str())
                .fetch_one(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Stops the listener (the store is closing).
    pub(crate) fn stop(&self) {
        self.shutdown.notify_one();
    }

    /// PostgreSQL: starts the `LISTEN` task once.
    fn start_listener(self: &Arc<Self>) {
        let Some((url, channel)) = self.postgres.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let hub = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        runtime.spawn(listen(hub, url, channel, shutdown));
    }
}

/// The listener task: `LISTEN`s on the store's channel and wakes the named queue's waiters.
/// After a lost connection it reconnects with a growing pause (up to 5 s), and wakes every
/// queue once connected again, since notifications sent meanwhile are lost; until then waiters
/// fall back to their timeouts. It ends when the store is closed or dropped.
async fn listen(
    hub: Weak<JobHub>,
    url: String,
    channel: String,
    shutdown: Arc<tokio::sync::Notify>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let connect = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            _ = shutdown.notified() => return,
            connected = connect => connected,
        };
        match connected {
            Ok(mut listener) => {
                {
                    let Some(hub) = hub.upgrade() else { return };
                    hub.listening.store(true, Ordering::SeqCst);
                    hub.wake_all();
                }
                pause = Duration::from_millis(100);
                loop {
                    let received = tokio::select! {
                        _ = shutdown.notified() => return,
                        received = listener.try_recv() => received,
                    };
                    let Some(hub) = hub.upgrade() else { return };
                    match received {
                        Ok(Some(notification)) => {
                            if let Ok(priority) = notification.payload().parse::<Priority>() {
                                hub.wake(priority);
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "job wake-up listener lost its connection; reconnecting"
                            );
                            hub.listening.store(false, Ordering::SeqCst);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "job wake-up listener failed; reconnecting");
                            hub.listening.store(false, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64,
                    "job wake-up listener cannot connect; workers poll meanwhile");
            }
        }
        tokio::select! {
            _ = shutdown.notified() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Waits for work in a queue: woken when a job due now is enqueued (or released, rescued,
/// retried) in it, by this process or, on PostgreSQL, by any. A wake-up that happens while the
/// waiter is not waiting (between its claim and its next wait) is kept for that next wait, so
/// the pattern `loop { claim; if nothing { wait } }` never sleeps past a job. Wake-ups may be
/// spurious (claim again and find nothing).
#[derive(Debug)]
pub struct JobWakeups {
    hub: Arc<JobHub>,
    /// Each queue's generation as of this waiter's last wake-up.
    seen: [u64; 5],
}

impl JobWakeups {
    /// Waits until the queue is woken or `timeout` passes; true if woken. Returns at once if
    /// the queue was woken since this waiter last returned (or was created).
    pub async fn wait(&mut self, priority: Priority, timeout: Duration) -> bool {
        let index = usize::from(priority.rank());
        let signal = self.hub.signal(priority);
        let notified = signal.notify.notified();
        tokio::pin!(notified);
        // Registered before the generation is read: a wake-up after the read wakes it.
        notified.as_mut().enable();
        let current = signal.generation.load(Ordering::SeqCst);
        if current != self.seen[index] {
            self.seen[index] = current;
            return true;
        }
        let woken = tokio::time::timeout(timeout, notified).await.is_ok();
        self.seen[index] = signal.generation.load(Ordering::SeqCst);
        woken
    }

    /// Whether wake-ups from other processes arrive: on PostgreSQL, whether the listener is
    /// connected; on SQLite always false (other processes are only seen by polling).
    pub fn listening(&self) -> bool {
        self.hub.listening.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses the set-based statements write are the state machine's.
    #[test]
    fn sql_transitions_follow_the_state_machine() {
        use JobEvent as E;
        use JobStatus as S;
        let claimable: Vec<JobStatus> = S::ALL
            .into_iter()
            .filter(|s| s.apply(E::Claim).is_ok())
            .collect();
        let list = claimable
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(CLAIMABLE, format!("status IN ({list})"));
        for (index, sql) in [
            (0, include_str!("../migrations/0009_jobs.sqlite.sql")),
            (1, include_str!("../migrations/0009_jobs.postgres.sql")),
        ] {
            assert!(
                sql.contains(&format!("WHERE {CLAIMABLE};")),
                "migration {index} partial index predicate"
            );
        }
        let expiring: Vec<JobStatus> = S::ALL
            .into_iter()
            .filter(|s| s.apply(E::Expire).is_ok())
            .collect();
        assert_eq!(expiring, claimable);
        assert_eq!(S::Running.apply(E::FailRetry), Ok(S::Retrying), "rescue");
        assert_eq!(S::Running.apply(E::FailDead), Ok(S::Dead), "rescue");
        assert_eq!(
            S::Running.apply(E::Cancel),
            Ok(S::Cancelled),
            "rescue, release"
        );
        assert_eq!(S::Running.apply(E::Release), Ok(S::Pending), "release");
        assert_eq!(S::Pending.apply(E::Expire), Ok(S::Expired), "expire");
    }

    #[test]
    fn errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_JOB_ERROR_BYTES);
        let cut = error_text(&long);
        assert!(cut.len() <= MAX_JOB_ERROR_BYTES && cut.len() >= MAX_JOB_ERROR_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(error_text("a\0b"), "ab");
    }

    #[test]
    fn channels_fit_an_identifier() {
        assert_eq!(jobs_channel(None), "signalbox_jobs");
        assert_eq!(jobs_channel(Some("app")), "signalbox_jobs_app");
        let long = "s".repeat(63);
        let channel = jobs_channel(Some(&long));
        assert!(channel.len() <= 63, "{channel}");
        assert_ne!(channel, jobs_channel(Some(&"t".repeat(63))));
    }

    #[test]
    fn payloads_must_be_json_objects() {
        assert!(validate_payload("{}").is_ok());
        assert!(validate_payload(" {\"a\":[1,2]}").is_ok());
        for bad in ["[]", "1", "{", "", "{\"a\":1} x"] {
            assert!(
                matches!(
                    validate_payload(bad),
                    Err(StoreError::Invalid {
                        field: "payload",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
