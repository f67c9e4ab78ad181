//! Guarded rollouts (issue 21): tables `flag_rollouts` and `flag_rollout_history` (migration
//! 0020).
//!
//! The server validates plans and decides actions (`flags::guard`); this module stores them.
//! Guarantees:
//! - every change applies only at the ramp version the caller read (fencing), so two replicas
//!   checking the same period change the ramp once;
//! - a change, its history row, its audit-log record (`rollout.<event>`) and the next check
//!   job commit in one transaction;
//! - every query is scoped by tenant, environment and flag.

use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::{Enqueued, NewJob, Operation, Store, StoreError, Table};

/// Most history rows one read returns.
pub const MAX_ROLLOUT_HISTORY: u32 = 1_000;

/// A flag's stored ramp in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRolloutRecord {
    pub environment: String,
    pub flag_key: String,
    /// How many plans were written for this flag (this one included).
    pub generation: i64,
    /// This ramp's state changes, from 1.
    pub version: i64,
    /// The plan's JSON.
    pub plan: String,
    /// `active`, `completed`, `rolled_back`, `killed` or `aborted`.
    pub status: String,
    /// The highest step reached.
    pub step: i64,
    /// The last step that passed.
    pub last_safe_step: Option<i64>,
    /// When the current step began.
    pub step_started_ms: i64,
    /// When the last check ran.
    pub last_check_ms: Option<i64>,
    /// The last check's decision and figures (JSON).
    pub last_check: Option<String>,
    /// The counters the next check takes its deltas from (JSON).
    pub baseline: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRolloutHistoryRecord {
    pub seq: i64,
    pub at_ms: i64,
    /// `started`, `advance`, `rollback`, `kill`, `complete` or `abort`.
    pub event: String,
    pub step: Option<i64>,
    /// The rollout served after the event, basis points.
    pub rollout_bp: i64,
    pub actor: String,
    /// JSON object.
    pub detail: String,
}

/// A ramp's new state, written at the version read.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRolloutChange<'a> {
    pub status: &'a str,
    pub step: i64,
    pub last_safe_step: Option<i64>,
    pub step_started_ms: i64,
    /// When this change is a check: its time and decision.
    pub last_check_ms: Option<i64>,
    pub last_check: Option<&'a serde_json::Value>,
    /// The counters the next check starts from.
    pub baseline: Option<&'a str>,
    /// The history row's event (and the audit-log event `rollout.<event>`); `None` for a
    /// check that only held (no history row, no audit record).
    pub event: Option<&'a str>,
    pub rollout_bp: i64,
    pub actor: &'a str,
    /// JSON object.
    pub detail: &'a serde_json::Value,
}

const COLUMNS: &str = "environment, flag_key, generation, version, plan, status, step, \
    last_safe_step, step_started_ms, last_check_ms, last_check, baseline, created_at_ms, \
    updated_at_ms, updated_by";

fn from_row(row: &AnyRow) -> Result<FlagRolloutRecord, StoreError> {
    Ok(FlagRolloutRecord {
        environment: row.try_get(0)?,
        flag_key: row.try_get(1)?,
        generation: row.try_get(2)?,
        version: row.try_get(3)?,
        plan: row.try_get(4)?,
        status: row.try_get(5)?,
        step: row.try_get(6)?,
        last_safe_step: row.try_get(7)?,
        step_started_ms: row.try_get(8)?,
        last_check_ms: row.try_get(9)?,
        last_check: row.try_get(10)?,
        baseline: row.try_get(11)?,
        created_at_ms: row.try_get(12)?,
        updated_at_ms: row.try_get(13)?,
        updated_by: row.try_get(14)?,
    })
}

/// Which ramp.
#[derive(Debug, Clone, Copy)]
pub struct RolloutKey<'a> {
    pub tenant_id: &'a str,
    pub environment: &'a str,
    pub flag_key: &'a str,
}

#[allow(clippy::too_many_arguments)]
async fn append_history(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    key: RolloutKey<'_>,
    generation: i64,
    event: &str,
    step: Option<i64>,
    rollout_bp: i64,
    actor: &str,
    detail: &serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO flag_rollout_history
             (tenant_id, environment, flag_key, generation, seq, at_ms, event, step, rollout_bp,
              actor, detail)
         SELECT $1, $2, $3, $4, COALESCE(MAX(seq), 0) + 1, $5, $6, $7, $8, $9, $10
         FROM flag_rollout_history
         WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND generation = $4",
    )
    .bind(key.tenant_id)
    .bind(key.environment)
    .bind(key.flag_key)
    .bind(generation)
    .bind(now_ms)
    .bind(event)
    .bind(step)
    .bind(rollout_bp)
    .bind(actor)
    .bind(detail.to_string())
    .execute(&mut *conn)
    .await?;
    let audit_event: audit::Event =
        format!("rollout.{event}")
            .parse()
            .map_err(|e: audit::ParseEventError| StoreError::Invalid {
                field: "event",
                reason: e.to_string(),
            })?;
    let record = crate::NewAuditRecord::new(
        now_ms,
        format!(
            "flag-rollout/{}/{}/{generation}",
            key.environment, key.flag_key
        ),
        audit_event,
        actor,
        &serde_json::json!({
            "step": step,
            "rollout_bp": rollout_bp,
            "detail": detail,
        }),
    );
    crate::audit::append_audit_in(conn, backend, key.tenant_id, &[record]).await?;
    Ok(())
}

async fn select_in(
    conn: &mut sqlx::AnyConnection,
    key: RolloutKey<'_>,
) -> Result<Option<FlagRolloutRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM flag_rollouts
         WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3"
    ))
    .bind(key.tenant_id)
    .bind(key.environment)
    .bind(key.flag_key)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

impl Store {
    /// The flag's ramp in the environment, if a plan was written.
    pub async fn flag_rollout(
        &self,
        key: RolloutKey<'_>,
    ) -> Result<Option<FlagRolloutRecord>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::FlagRollouts).await?;
        select_in(&mut conn, key).await
    }

    /// Writes a new plan and starts its ramp at the first step as generation `generation`
    /// (the stored one plus one: the caller read it, and names it in the check job), with its
    /// `started` history row, audit record and first check job. A conflict when the current
    /// ramp is `active` (roll it back or abort it first) or another plan was written meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_flag_rollout(
        &self,
        key: RolloutKey<'_>,
        plan_json: &str,
        first_bp: i64,
        baseline: Option<&str>,
        actor: &str,
        detail: &serde_json::Value,
        generation: i64,
        check: Option<&NewJob<'_>>,
        now_ms: i64,
    ) -> Result<(FlagRolloutRecord, Vec<Enqueued>), StoreError> {
        let turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Upsert, Table::FlagRollouts).await?;
        let mut tx = conn.begin().await?;
        // PostgreSQL locks the row; on SQLite the writer turn serialises writers.
        let lock = match self.backend {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let current: Option<(i64, String)> = sqlx::query(&format!(
            "SELECT generation, status FROM flag_rollouts
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3{lock}"
        ))
        .bind(key.tenant_id)
        .bind(key.environment)
        .bind(key.flag_key)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, StoreError>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        if current.as_ref().is_some_and(|(_, s)| s == "active") {
            return Err(StoreError::Conflict {
                what: format!("an active guarded rollout of flag {}", key.flag_key),
            });
        }
        if current.as_ref().map_or(1, |(g, _)| g + 1) != generation {
            return Err(StoreError::Conflict {
                what: format!("another guarded rollout plan of flag {}", key.flag_key),
            });
        }
        sqlx::query(
            "DELETE FROM flag_rollouts WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3",
        )
        .bind(key.tenant_id)
        .bind(key.environment)
        .bind(key.flag_key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO flag_rollouts ({COLUMNS}, tenant_id)
             VALUES ($1, $2, $3, 1, $4, 'active', 0, NULL, $5, NULL, NULL, $6, $5, $5, $7, $8)"
        ))
        .bind(key.environment)
        .bind(key.flag_key)
        .bind(generation)
        .bind(plan_json)
        .bind(now_ms)
        .bind(baseline)
        .bind(actor)
        .bind(key.tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, key.tenant_id))?;
        append_history(
            &mut tx,
            self.backend,
            key,
            generation,
            "started",
            Some(0),
            first_bp,
            actor,
            detail,
            now_ms,
        )
        .await?;
        let enqueued = match check {
            Some(job) => {
                self.enqueue_jobs_in(&mut tx, key.tenant_id, std::slice::from_ref(job), now_ms)
                    .await?
            }
            None => Vec::new(),
        };
        let record = select_in(&mut tx, key)
            .await?
            .ok_or_else(|| StoreError::Conflict {
                what: "a guarded rollout written meanwhile".into(),
            })?;
        tx.commit().await?;
        drop(turn);
        self.wake_enqueued(&enqueued);
        Ok((record, enqueued))
    }

    /// Applies `change` to the ramp of `generation` at `expected_version`, with its history
    /// row and audit record (when it has an event) and the next check job (when given), in one
    /// transaction. `None` when the ramp moved on (another writer changed it first): nothing
    /// is written.
    pub async fn change_flag_rollout(
        &self,
        key: RolloutKey<'_>,
        generation: i64,
        expected_version: i64,
        change: &FlagRolloutChange<'_>,
        check: Option<&NewJob<'_>>,
        now_ms: i64,
    ) -> Result<Option<(FlagRolloutRecord, Vec<Enqueued>)>, StoreError> {
        let turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::FlagRollouts).await?;
        let mut tx = conn.begin().await?;
        let changed = sqlx::query(
            "UPDATE flag_rollouts SET version = version + 1, status = $1, step = $2,
                 last_safe_step = $3, step_started_ms = $4,
                 last_check_ms = COALESCE($5, last_check_ms),
                 last_check = COALESCE($6, last_check),
                 baseline = COALESCE($7, baseline),
                 updated_at_ms = $8, updated_by = $9
             WHERE tenant_id = $10 AND environment = $11 AND flag_key = $12
               AND generation = $13 AND version = $14",
        )
        .bind(change.status)
        .bind(change.step)
        .bind(change.last_safe_step)
        .bind(change.step_started_ms)
        .bind(change.last_check_ms)
        .bind(change.last_check.map(|v| v.to_string()))
        .bind(change.baseline)
        .bind(now_ms)
        .bind(change.actor)
        .bind(key.tenant_id)
        .bind(key.environment)
        .bind(key.flag_key)
        .bind(generation)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        if let Some(event) = change.event {
            append_history(
                &mut tx,
                self.backend,
                key,
                generation,
                event,
                Some(change.step),
                change.rollout_bp,
                change.actor,
                change.detail,
                now_ms,
            )
            .await?;
        }
        let enqueued = match check {
            Some(job) => {
                self.enqueue_jobs_in(&mut tx, key.tenant_id, std::slice::from_ref(job), now_ms)
                    .await?
            }
            None => Vec::new(),
        };
        let record = select_in(&mut tx, key)
            .await?
            .ok_or_else(|| StoreError::Conflict {
                what: "a guarded rollout removed meanwhile".into(),
            })?;
        tx.commit().await?;
        drop(turn);
        self.wake_enqueued(&enqueued);
        Ok(Some((record, enqueued)))
    }

    /// The history of the ramp `generation`, oldest first (at most [`MAX_ROLLOUT_HISTORY`]
    /// rows, the newest).
    pub async fn flag_rollout_history(
        &self,
        key: RolloutKey<'_>,
        generation: i64,
    ) -> Result<Vec<FlagRolloutHistoryRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FlagRolloutHistory)
            .await?;
        let rows = sqlx::query(
            "SELECT seq, at_ms, event, step, rollout_bp, actor, detail
             FROM flag_rollout_history
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND generation = $4
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(key.tenant_id)
        .bind(key.environment)
        .bind(key.flag_key)
        .bind(generation)
        .bind(i64::from(MAX_ROLLOUT_HISTORY))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(FlagRolloutHistoryRecord {
                    seq: row.try_get(0)?,
                    at_ms: row.try_get(1)?,
                    event: row.try_get(2)?,
                    step: row.try_get(3)?,
                    rollout_bp: row.try_get(4)?,
                    actor: row.try_get(5)?,
                    detail: row.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }
}
