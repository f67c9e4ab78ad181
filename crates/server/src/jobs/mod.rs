//! Background jobs: the use cases ([`JobService`]), the handlers a job can name
//! ([`JobRegistry`], [`JobHandler`]) and the worker runtime ([`run_job_workers`]).
//!
//! ```text
//! POST /api/v1/jobs ─┐                     ┌─ claim loop per queue (critical … bulk):
//! signalbox jobs …  ─┼─▶ JobService ─▶ store: jobs ◀─┤   semaphore (max_workers), start rate (limits::Gcra),
//! job handlers      ─┘   (validate,         ▲        │   wake-ups (NOTIFY / in-process) + polling
//!                         enqueue)          │        ├─ job task: handler.run(ctx) with soft/hard timeouts,
//!                                           │        │   panics caught, cancellation via heartbeats
//!                                           └────────┴─ finisher: outcomes batched into finish_jobs
//! ```
//!
//! The database is the queue: `store` claims with leases (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the writer turn on SQLite), fences every completion by (job, worker, attempt),
//! and gives a dead worker's jobs back after their lease. Execution is at least once; a
//! handler whose effect is idempotent (`jobs.canary`'s receipt, `weber.recalculate`) is
//! effectively once. The guarantees and their limits are in `docs/jobs.md`.
//!
//! Decisions live in the pure `jobs` crate (statuses, retry schedule, cron); this module adds
//! the clock, randomness, handlers and I/O.

mod handler;
mod handlers;
mod runtime;
mod service;

pub use handler::{
    HandlerError, HandlerFuture, JobContext, JobHandler, JobOutput, JobRegistry, PayloadError,
    StopReason,
};
pub use handlers::{
    ForecastRebuildSettings, JobHandlerSettings, CANARY, DEFAULT_CALCULATIONS_DAYS,
    FORECAST_REBUILD, MAX_CANARY_SLEEP_MS, MAX_FORECAST_DATA_BYTES, MAX_RECALCULATE_USERS,
    MAX_RETENTION_DAYS, NOOP, RETENTION_PURGE, WEBER_RECALCULATE, WEBER_REFIT_PREDICTIONS,
};
pub use runtime::{run_job_workers, worker_id, JobSettings};
pub use service::{
    EnqueueRequest, JobError, JobService, ListQuery, ScheduleRequest, DEFAULT_LIST_LIMIT,
    MAX_DELAY_MS, MAX_IDEMPOTENCY_KEY_BYTES, MAX_LIST_LIMIT, MAX_RETRIES, MAX_SCHEDULE_NAME_BYTES,
    MAX_TIMEOUT_MS, MIN_TIMEOUT_MS,
};

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now: the clock every job decision is given.
/// A schedule the server gives every tenant (name, cron, handler and queue; payload `{}`).
#[derive(Debug, Clone, Copy)]
pub struct DefaultSchedule {
    /// The schedule's name, unique per tenant.
    pub name: &'static str,
    /// When it runs (5-field cron, UTC).
    pub cron: &'static str,
    /// The job handler it enqueues.
    pub handler: &'static str,
    /// The queue.
    pub priority: ::jobs::Priority,
}

/// Gives the tenant `schedule` unless it has one by that name (a tenant that changed or
/// disabled it keeps its choice). Returns whether it was created. Called when a tenant is
/// created (CLI, demo tenant).
pub async fn ensure_default_schedule(
    store: &store::Store,
    tenant_id: &str,
    schedule: DefaultSchedule,
    now_ms: i64,
) -> Result<bool, store::StoreError> {
    if store
        .job_schedules(tenant_id)
        .await?
        .iter()
        .any(|s| s.name == schedule.name)
    {
        return Ok(false);
    }
    let cron = ::jobs::Schedule::parse(schedule.cron).map_err(|e| store::StoreError::Invalid {
        field: "cron",
        reason: e.to_string(),
    })?;
    store
        .put_job_schedule(
            tenant_id,
            schedule.name,
            &cron,
            schedule.handler,
            "{}",
            schedule.priority,
            true,
            now_ms,
        )
        .await?;
    Ok(true)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
