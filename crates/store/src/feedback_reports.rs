//! Signed research reports (issue 20): table `feedback_reports`. A report is written once, with
//! the exact signed file as `body`, and read back byte for byte.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Operation, Store, StoreError, Table};

/// Most reports listed per page.
pub const MAX_FEEDBACK_REPORT_PAGE: u32 = 200;

/// A stored report. `body` is the signed file; listings leave it empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackReportRecord {
    pub id: String,
    pub created_at_ms: i64,
    /// The first day covered, `YYYY-MM-DD`.
    pub period_from: String,
    /// The day after the last covered.
    pub period_to: String,
    /// The ε spent, in units of 10⁻⁹.
    pub epsilon_nanos: i64,
    /// The δ spent, in units of 10⁻¹⁵.
    pub delta_femtos: i64,
    /// The privacy ledger entry of the spend.
    pub ledger_entry_id: String,
    /// The signing key's id (hex).
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
    /// The signed file (empty in listings).
    pub body: String,
}

const COLUMNS: &str = "id, created_at_ms, period_from, period_to, epsilon_nanos, delta_femtos, \
                       ledger_entry_id, key_id, signature";

fn record(row: &AnyRow, body: bool) -> Result<FeedbackReportRecord, StoreError> {
    Ok(FeedbackReportRecord {
        id: row.try_get(0)?,
        created_at_ms: row.try_get(1)?,
        period_from: row.try_get(2)?,
        period_to: row.try_get(3)?,
        epsilon_nanos: row.try_get(4)?,
        delta_femtos: row.try_get(5)?,
        ledger_entry_id: row.try_get(6)?,
        key_id: row.try_get(7)?,
        signature: row.try_get(8)?,
        body: if body { row.try_get(9)? } else { String::new() },
    })
}

impl Store {
    /// Stores a signed report of the tenant; a second report under the same id is a conflict.
    pub async fn insert_feedback_report(
        &self,
        tenant_id: &str,
        report: &FeedbackReportRecord,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackReports)
            .await?;
        sqlx::query(
            "INSERT INTO feedback_reports (tenant_id, id, created_at_ms, period_from, period_to,
                 epsilon_nanos, delta_femtos, ledger_entry_id, key_id, signature, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(tenant_id)
        .bind(&report.id)
        .bind(report.created_at_ms)
        .bind(&report.period_from)
        .bind(&report.period_to)
        .bind(report.epsilon_nanos)
        .bind(report.delta_femtos)
        .bind(&report.ledger_entry_id)
        .bind(&report.key_id)
        .bind(&report.signature)
        .bind(&report.body)
        .execute(&mut *conn)
        .await
        .map_err(|e| crate::conflict_or(e, || format!("feedback report '{}'", report.id)))?;
        Ok(())
    }

    /// One of the tenant's reports with its signed body; another tenant's is `None`.
    pub async fn feedback_report(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<FeedbackReportRecord>, StoreError> {
        if id.contains('\0') {
            return Ok(None);
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FeedbackReports)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS}, body FROM feedback_reports WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| record(&row, true))
        .transpose()
    }

    /// The tenant's reports, newest first, without bodies; at most `limit` (1 to
    /// [`MAX_FEEDBACK_REPORT_PAGE`]).
    pub async fn feedback_reports(
        &self,
        tenant_id: &str,
        limit: u32,
    ) -> Result<Vec<FeedbackReportRecord>, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::FeedbackReports)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM feedback_reports WHERE tenant_id = $1
             ORDER BY created_at_ms DESC, id DESC LIMIT {}",
            limit.clamp(1, MAX_FEEDBACK_REPORT_PAGE)
        ))
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| record(row, false))
        .collect()
    }
}
