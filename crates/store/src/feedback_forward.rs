//! Dual-write deliveries (issue 20): table `feedback_forwards`, one row per feedback item
//! forwarded to the tenant's legacy endpoint (or skipped because it was purged).
//!
//! A delivery row and the item's `forwarded_legacy` history and audit event commit in one
//! transaction, and the row is written at most once, so a retried forwarding job skips what
//! an earlier attempt delivered and the audit log holds one event per item.

use std::collections::HashMap;

use sqlx::{Connection as _, Row};

use crate::feedback::{event_in, FeedbackEvent};
use crate::{Operation, Store, StoreError, Table};

/// What became of a forwarded item, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardOutcome {
    /// The legacy endpoint answered 2xx or 409.
    Delivered,
    /// The item was purged before it was sent: nothing to forward.
    SkippedPurged,
}

impl ForwardOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardOutcome::Delivered => "delivered",
            ForwardOutcome::SkippedPurged => "skipped_purged",
        }
    }

    fn parse(name: &str) -> Result<ForwardOutcome, StoreError> {
        match name {
            "delivered" => Ok(ForwardOutcome::Delivered),
            "skipped_purged" => Ok(ForwardOutcome::SkippedPurged),
            other => Err(StoreError::Corrupt {
                table: "feedback_forwards",
                reason: format!("unknown outcome '{other}'"),
            }),
        }
    }
}

/// One delivery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeedbackForward<'a> {
    pub item_id: &'a str,
    pub outcome: ForwardOutcome,
    /// The endpoint's status code (none when skipped).
    pub status_code: Option<u16>,
    /// The forwarding job and its attempt.
    pub job_id: &'a str,
    pub attempt: u32,
}

impl Store {
    /// Which of `ids` the tenant has already forwarded (or skipped), with the outcome.
    pub async fn feedback_forwards(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<HashMap<String, ForwardOutcome>, StoreError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        for chunk in ids.chunks(200) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT item_id, outcome FROM feedback_forwards
                 WHERE tenant_id = $1 AND item_id IN ({})",
                list.join(",")
            );
            let mut query = sqlx::query(&sql).bind(tenant_id);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *conn).await? {
                let outcome = ForwardOutcome::parse(&row.try_get::<String, _>(1)?)?;
                out.insert(row.try_get(0)?, outcome);
            }
        }
        Ok(out)
    }

    /// Records a delivery with the item's `event` (history and audit log) in one transaction;
    /// false (nothing written) when the item was already recorded or the tenant has no such
    /// item.
    pub async fn record_feedback_forward(
        &self,
        tenant_id: &str,
        forward: &NewFeedbackForward<'_>,
        event: &FeedbackEvent,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackHistory)
            .await?;
        let mut tx = conn.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO feedback_forwards
                 (tenant_id, item_id, outcome, status_code, job_id, attempt, at_ms)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM feedback_items WHERE tenant_id = $1 AND id = $2)
             ON CONFLICT (tenant_id, item_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(forward.item_id)
        .bind(forward.outcome.as_str())
        .bind(forward.status_code.map(i64::from))
        .bind(forward.job_id)
        .bind(i64::from(forward.attempt))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if !event_in(
            &mut tx,
            self.backend,
            tenant_id,
            forward.item_id,
            event,
            now_ms,
        )
        .await?
        {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// How many of the tenant's items were forwarded with `outcome` since `since_ms`.
    pub async fn count_feedback_forwards(
        &self,
        tenant_id: &str,
        outcome: ForwardOutcome,
        since_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM feedback_forwards
             WHERE tenant_id = $1 AND outcome = $2 AND at_ms >= $3",
        )
        .bind(tenant_id)
        .bind(outcome.as_str())
        .bind(since_ms)
        .fetch_one(&mut *conn)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
