//! Staged traffic shift (issue 20): tables `feedback_migration_plans` and
//! `feedback_migration_history` (migration 0018), and the window figures the health check
//! reads.
//!
//! The server validates plans and decides transitions (`feedback::migration`); this module
//! stores them. Guarantees:
//! - every change applies only at the plan version the caller read (fencing), so two replicas
//!   judging the same window change the plan once;
//! - a change, its history row, its audit-log record and the next window's check job commit in
//!   one transaction.

use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::{Enqueued, NewJob, Operation, Store, StoreError, Table};

/// Most history rows one read returns.
pub const MAX_MIGRATION_HISTORY: u32 = 1_000;

/// A tenant's stored plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlanRecord {
    /// How many plans the tenant has written (this one included).
    pub generation: i64,
    /// This plan's state changes, from 1.
    pub version: i64,
    /// The flag environment the plan drives.
    pub environment: String,
    /// The flag the plan drives.
    pub flag_key: String,
    /// The stages' JSON.
    pub stages: String,
    /// `pending`, `running`, `completed`, `rolled_back` or `aborted`.
    pub status: String,
    /// The live (or last) stage.
    pub stage: Option<i64>,
    /// When the live stage's window began.
    pub stage_started_ms: Option<i64>,
    /// The share of the last stage that passed.
    pub last_healthy_percent: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationHistoryRecord {
    pub seq: i64,
    pub at_ms: i64,
    /// `planned`, `started`, `passed`, `extended`, `advanced`, `rolled_back`, `aborted`,
    /// `completed`.
    pub event: String,
    pub stage: Option<i64>,
    /// The share served after the event.
    pub new_percent: i64,
    pub actor: String,
    /// JSON object.
    pub detail: String,
}

/// A plan's new state, written at the version read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationChange<'a> {
    pub status: &'a str,
    pub stage: Option<i64>,
    pub stage_started_ms: Option<i64>,
    pub last_healthy_percent: i64,
    /// The history row's event name; the audit-log event is `migration.<event>`.
    pub event: &'a str,
    pub new_percent: i64,
    pub actor: &'a str,
    /// JSON object.
    pub detail: &'a serde_json::Value,
}

/// What a monitoring window measured, from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrationWindow {
    /// Feedback items received in the window.
    pub items: i64,
    /// Of them, items whose processing failed.
    pub failed: i64,
    /// Dead jobs of the named handler that finished in the window.
    pub dead_letters: i64,
    /// Nearest-rank p99 of `processed_ms - received_ms` over the window's processed items.
    pub p99_processing_ms: Option<i64>,
    /// How many items that p99 is over.
    pub processed: i64,
}

const PLAN_COLUMNS: &str = "generation, version, environment, flag_key, stages, status, stage, \
    stage_started_ms, last_healthy_percent, created_at_ms, updated_at_ms, updated_by";

fn plan_from_row(row: &AnyRow) -> Result<MigrationPlanRecord, StoreError> {
    Ok(MigrationPlanRecord {
        generation: row.try_get(0)?,
        version: row.try_get(1)?,
        environment: row.try_get(2)?,
        flag_key: row.try_get(3)?,
        stages: row.try_get(4)?,
        status: row.try_get(5)?,
        stage: row.try_get(6)?,
        stage_started_ms: row.try_get(7)?,
        last_healthy_percent: row.try_get(8)?,
        created_at_ms: row.try_get(9)?,
        updated_at_ms: row.try_get(10)?,
        updated_by: row.try_get(11)?,
    })
}

async fn append_history(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    tenant_id: &str,
    generation: i64,
    change: &MigrationChange<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO feedback_migration_history
             (tenant_id, generation, seq, at_ms, event, stage, new_percent, actor, detail)
         SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8
         FROM feedback_migration_history WHERE tenant_id = $1 AND generation = $2",
    )
    .bind(tenant_id)
    .bind(generation)
    .bind(now_ms)
    .bind(change.event)
    .bind(change.stage)
    .bind(change.new_percent)
    .bind(change.actor)
    .bind(change.detail.to_string())
    .execute(&mut *conn)
    .await?;
    let event: audit::Event =
        format!("migration.{}", change.event)
            .parse()
            .map_err(|e: audit::ParseEventError| StoreError::Invalid {
                field: "event",
                reason: e.to_string(),
            })?;
    let record = crate::NewAuditRecord::new(
        now_ms,
        format!("feedback-migration/{generation}"),
        event,
        change.actor,
        &serde_json::json!({
            "stage": change.stage,
            "new_percent": change.new_percent,
            "detail": change.detail,
        }),
    );
    crate::audit::append_audit_in(conn, backend, tenant_id, &[record]).await?;
    Ok(())
}

impl Store {
    /// The tenant's plan, if it wrote one.
    pub async fn migration_plan(
        &self,
        tenant_id: &str,
    ) -> Result<Option<MigrationPlanRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackMigrationPlans)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM feedback_migration_plans WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    /// Writes a new pending plan (the next generation), unless the current one is `running`
    /// (a conflict: finish, roll back or abort it first). Records `planned`.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_migration_plan(
        &self,
        tenant_id: &str,
        environment: &str,
        flag_key: &str,
        stages_json: &str,
        actor: &str,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<MigrationPlanRecord, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::FeedbackMigrationPlans)
            .await?;
        let mut tx = conn.begin().await?;
        // PostgreSQL locks the row; on SQLite the writer turn serialises writers.
        let lock = match self.backend {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let current: Option<(i64, String)> = sqlx::query(&format!(
            "SELECT generation, status FROM feedback_migration_plans WHERE tenant_id = $1{lock}"
        ))
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, StoreError>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        if let Some((_, status)) = current.as_ref().filter(|(_, s)| s == "running") {
            return Err(StoreError::Conflict {
                what: format!("a {status} traffic-shift plan"),
            });
        }
        let generation = current.map_or(1, |(g, _)| g + 1);
        sqlx::query("DELETE FROM feedback_migration_plans WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO feedback_migration_plans ({PLAN_COLUMNS}, tenant_id)
             VALUES ($1, 1, $2, $3, $4, 'pending', NULL, NULL, 0, $5, $5, $6, $7)"
        ))
        .bind(generation)
        .bind(environment)
        .bind(flag_key)
        .bind(stages_json)
        .bind(now_ms)
        .bind(actor)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        let change = MigrationChange {
            status: "pending",
            stage: None,
            stage_started_ms: None,
            last_healthy_percent: 0,
            event: "planned",
            new_percent: 0,
            actor,
            detail,
        };
        append_history(
            &mut tx,
            self.backend,
            tenant_id,
            generation,
            &change,
            now_ms,
        )
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM feedback_migration_plans WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let record = plan_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Applies `change` to the plan of `generation` at `expected_version`, with its history
    /// row, audit record and (when given) the next check job, in one transaction. `None` when
    /// the plan moved on (another writer changed it first): nothing is written.
    pub async fn change_migration_plan(
        &self,
        tenant_id: &str,
        generation: i64,
        expected_version: i64,
        change: &MigrationChange<'_>,
        check: Option<&NewJob<'_>>,
        now_ms: i64,
    ) -> Result<Option<(MigrationPlanRecord, Vec<Enqueued>)>, StoreError> {
        let turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::FeedbackMigrationPlans)
            .await?;
        let mut tx = conn.begin().await?;
        let changed = sqlx::query(
            "UPDATE feedback_migration_plans SET version = version + 1, status = $1, stage = $2,
                 stage_started_ms = $3, last_healthy_percent = $4, updated_at_ms = $5,
                 updated_by = $6
             WHERE tenant_id = $7 AND generation = $8 AND version = $9",
        )
        .bind(change.status)
        .bind(change.stage)
        .bind(change.stage_started_ms)
        .bind(change.last_healthy_percent)
        .bind(now_ms)
        .bind(change.actor)
        .bind(tenant_id)
        .bind(generation)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        append_history(&mut tx, self.backend, tenant_id, generation, change, now_ms).await?;
        let enqueued = match check {
            Some(job) => {
                self.enqueue_jobs_in(&mut tx, tenant_id, std::slice::from_ref(job), now_ms)
                    .await?
            }
            None => Vec::new(),
        };
        let row = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM feedback_migration_plans WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let record = plan_from_row(&row)?;
        tx.commit().await?;
        drop(turn);
        self.wake_enqueued(&enqueued);
        Ok(Some((record, enqueued)))
    }

    /// The history of the tenant's plan `generation`, oldest first (at most
    /// [`MAX_MIGRATION_HISTORY`] rows, the newest).
    pub async fn migration_history(
        &self,
        tenant_id: &str,
        generation: i64,
    ) -> Result<Vec<MigrationHistoryRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackMigrationHistory)
            .await?;
        let rows = sqlx::query(
            "SELECT seq, at_ms, event, stage, new_percent, actor, detail
             FROM feedback_migration_history WHERE tenant_id = $1 AND generation = $2
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(generation)
        .bind(i64::from(MAX_MIGRATION_HISTORY))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(MigrationHistoryRecord {
                    seq: row.try_get(0)?,
                    at_ms: row.try_get(1)?,
                    event: row.try_get(2)?,
                    stage: row.try_get(3)?,
                    new_percent: row.try_get(4)?,
                    actor: row.try_get(5)?,
                    detail: row.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// The figures of the window `[from_ms, to_ms)`: the tenant's feedback items received in
    /// it (all, failed, and the p99 of accept → processed latency of the processed ones), and
    /// its dead jobs of `dead_handler` that finished in it. Read from the primary, so any
    /// replica of the server judges the same window alike.
    pub async fn migration_window(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
        dead_handler: &str,
    ) -> Result<MigrationWindow, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let row = sqlx::query(
            "SELECT COUNT(*),
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN processed_ms IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM feedback_items
             WHERE tenant_id = $1 AND received_ms >= $2 AND received_ms < $3",
        )
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&mut *conn)
        .await?;
        let items: i64 = row.try_get(0)?;
        let failed: i64 = row.try_get(1)?;
        let processed: i64 = row.try_get(2)?;
        // Nearest rank ceil(0.99 n), counted from the top: skip n - rank of the largest.
        let p99_processing_ms = if processed > 0 {
            let rank = (processed * 99 + 99) / 100;
            let skip = processed - rank.max(1);
            sqlx::query_scalar::<_, i64>(
                "SELECT processed_ms - received_ms FROM feedback_items
                 WHERE tenant_id = $1 AND received_ms >= $2 AND received_ms < $3
                   AND processed_ms IS NOT NULL
                 ORDER BY processed_ms - received_ms DESC LIMIT 1 OFFSET $4",
            )
            .bind(tenant_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(skip)
            .fetch_optional(&mut *conn)
            .await?
        } else {
            None
        };
        let dead_letters: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs
             WHERE tenant_id = $1 AND handler = $2 AND status = 'dead'
               AND finished_at_ms >= $3 AND finished_at_ms < $4",
        )
        .bind(tenant_id)
        .bind(dead_handler)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&mut *conn)
        .await?;
        Ok(MigrationWindow {
            items,
            failed,
            dead_letters,
            p99_processing_ms,
            processed,
        })
    }
}
