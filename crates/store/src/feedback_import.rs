//! Feedback imports from a legacy system (issue 20): tables `feedback_imports` and
//! `feedback_import_rejects`.
//!
//! Guarantees:
//! - a batch's items (with their history and audit records), its rejected rows and the
//!   advanced checkpoint commit in ONE transaction: a crash loses at most the batch in flight,
//!   and a resume redoes exactly that batch;
//! - the checkpoint only moves forward from where the batch read it (fenced by `next_line`), so
//!   two processes importing the same file cannot both commit the same batch;
//! - items keep the ingest path's idempotency (same id and content → duplicate), so even a lost
//!   checkpoint never stores an item twice. No job is enqueued for imported items (they are
//!   analysed by the importer, and never forwarded to the legacy system they came from).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::feedback::{FeedbackInsertion, NewFeedbackItem};
use crate::{Operation, Store, StoreError, Table};

/// Longest source name kept (the file's name as given).
pub const MAX_IMPORT_SOURCE_BYTES: usize = 512;
/// Longest reject reason kept, in bytes.
pub const MAX_REJECT_REASON_BYTES: usize = 1_024;

/// An import's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackImport {
    pub import_id: String,
    pub source_name: String,
    pub file_sha256: String,
    pub mapping_sha256: String,
    /// `running`, `interrupted`, `completed` or `failed`.
    pub status: String,
    /// The 1-based line of the next unread row.
    pub next_line: i64,
    /// Where that row starts in the file.
    pub byte_offset: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// A refused row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReject {
    pub line: i64,
    pub field: String,
    pub reason: String,
}

/// Where a batch leaves the import: the next row to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportCheckpoint {
    pub next_line: i64,
    pub byte_offset: i64,
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportBatchOutcome {
    pub stored: i64,
    pub duplicates: i64,
    /// Rows refused (by validation, or an existing item with the same id and other content).
    pub rejected: i64,
    /// The ids refused because the tenant holds other content under them, by position.
    pub conflicts: Vec<usize>,
}

const IMPORT_COLUMNS: &str = "import_id, source_name, file_sha256, mapping_sha256, status, \
    next_line, byte_offset, stored, duplicates, rejected, started_at_ms, updated_at_ms, \
    finished_at_ms";

fn import_from_row(row: &AnyRow) -> Result<FeedbackImport, StoreError> {
    Ok(FeedbackImport {
        import_id: row.try_get(0)?,
        source_name: row.try_get(1)?,
        file_sha256: row.try_get(2)?,
        mapping_sha256: row.try_get(3)?,
        status: row.try_get(4)?,
        next_line: row.try_get(5)?,
        byte_offset: row.try_get(6)?,
        stored: row.try_get(7)?,
        duplicates: row.try_get(8)?,
        rejected: row.try_get(9)?,
        started_at_ms: row.try_get(10)?,
        updated_at_ms: row.try_get(11)?,
        finished_at_ms: row.try_get(12)?,
    })
}

fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Store {
    /// The tenant's import `import_id`, if any.
    pub async fn feedback_import(
        &self,
        tenant_id: &str,
        import_id: &str,
    ) -> Result<Option<FeedbackImport>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let sql = format!(
            "SELECT {IMPORT_COLUMNS} FROM feedback_imports WHERE tenant_id = $1 AND import_id = $2"
        );
        sqlx::query(&sql)
            .bind(tenant_id)
            .bind(import_id)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(import_from_row)
            .transpose()
    }

    /// The tenant's imports, newest first.
    pub async fn feedback_imports(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<FeedbackImport>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let sql = format!(
            "SELECT {IMPORT_COLUMNS} FROM feedback_imports WHERE tenant_id = $1
             ORDER BY started_at_ms DESC, import_id LIMIT 1000"
        );
        sqlx::query(&sql)
            .bind(tenant_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(import_from_row)
            .collect()
    }

    /// Starts import `import_id` at line `first_line`/`first_offset`, or (when it exists and
    /// `restart` is false) returns it as it is for a resume; `restart` resets its checkpoint,
    /// counts and rejects. Its status becomes `running`.
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_feedback_import(
        &self,
        tenant_id: &str,
        import_id: &str,
        source_name: &str,
        file_sha256: &str,
        mapping_sha256: &str,
        first: ImportCheckpoint,
        restart: bool,
        now_ms: i64,
    ) -> Result<FeedbackImport, StoreError> {
        let turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackItems)
            .await?;
        let mut tx = conn.begin().await?;
        let source_name = truncated(source_name, MAX_IMPORT_SOURCE_BYTES);
        if restart {
            sqlx::query(
                "DELETE FROM feedback_import_rejects WHERE tenant_id = $1 AND import_id = $2",
            )
            .bind(tenant_id)
            .bind(import_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM feedback_imports WHERE tenant_id = $1 AND import_id = $2")
                .bind(tenant_id)
                .bind(import_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO feedback_imports (tenant_id, import_id, source_name, file_sha256,
                 mapping_sha256, status, next_line, byte_offset, started_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $8)
             ON CONFLICT (tenant_id, import_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(source_name)
        .bind(file_sha256)
        .bind(mapping_sha256)
        .bind(first.next_line)
        .bind(first.byte_offset)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        sqlx::query(
            "UPDATE feedback_imports SET status = 'running', updated_at_ms = $3,
                 finished_at_ms = NULL
             WHERE tenant_id = $1 AND import_id = $2 AND status <> 'completed'",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT {IMPORT_COLUMNS} FROM feedback_imports WHERE tenant_id = $1 AND import_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(import_id)
            .fetch_one(&mut *tx)
            .await?;
        let import = import_from_row(&row)?;
        tx.commit().await?;
        drop(turn);
        Ok(import)
    }

    /// Stores one batch of an import in one transaction: `items` (no jobs enqueued), the
    /// refused rows `rejects` (line, field, reason), the counts, and the checkpoint moved from
    /// `from` to `to`. Fails with `VersionMismatch` (nothing written) when the checkpoint is no
    /// longer at `from` (another process imported this batch).
    #[allow(clippy::too_many_arguments)]
    pub async fn store_feedback_import_batch(
        &self,
        tenant_id: &str,
        import_id: &str,
        items: &[NewFeedbackItem],
        rejects: &[(i64, String, String)],
        from: ImportCheckpoint,
        to: ImportCheckpoint,
        now_ms: i64,
    ) -> Result<ImportBatchOutcome, StoreError> {
        let turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackItems)
            .await?;
        let mut tx = conn.begin().await?;
        // The fence first: it waits for any other transaction holding this import's row (a
        // killed importer's last commit may still land) and then sees whether the checkpoint
        // is still where this batch started.
        let moved = sqlx::query(
            "UPDATE feedback_imports SET next_line = $3, byte_offset = $4, updated_at_ms = $5
             WHERE tenant_id = $1 AND import_id = $2 AND next_line = $6 AND byte_offset = $7",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(to.next_line)
        .bind(to.byte_offset)
        .bind(now_ms)
        .bind(from.next_line)
        .bind(from.byte_offset)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(StoreError::VersionMismatch {
                what: format!("import {import_id}'s checkpoint"),
                expected: from.next_line,
                current: None,
            });
        }
        let (insertions, _) = self
            .insert_feedback_in(&mut tx, tenant_id, items, None, None, now_ms)
            .await?;
        let mut outcome = ImportBatchOutcome::default();
        let mut all_rejects: Vec<(i64, &str, &str)> = rejects
            .iter()
            .map(|(line, field, reason)| (*line, field.as_str(), reason.as_str()))
            .collect();
        let mut rejected_lines: std::collections::BTreeSet<i64> =
            rejects.iter().map(|r| r.0).collect();
        const CONFLICT: &str = "your tenant already holds a different item with this id";
        let conflict_lines: Vec<(usize, i64)> = insertions
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == FeedbackInsertion::Conflict)
            .map(|(i, _)| (i, line_of(&items[i])))
            .collect();
        for (i, line) in &conflict_lines {
            outcome.conflicts.push(*i);
            rejected_lines.insert(*line);
            all_rejects.push((*line, "id", CONFLICT));
        }
        outcome.stored = insertions
            .iter()
            .filter(|o| **o == FeedbackInsertion::Stored)
            .count() as i64;
        outcome.duplicates = insertions
            .iter()
            .filter(|o| **o == FeedbackInsertion::Duplicate)
            .count() as i64;
        outcome.rejected = rejected_lines.len() as i64;
        all_rejects.sort_by_key(|r| r.0);
        let mut seq = 0i64;
        let mut last_line = i64::MIN;
        for chunk in all_rejects.chunks(200) {
            let mut values = Vec::with_capacity(chunk.len());
            for n in 0..chunk.len() {
                let b = n * 6;
                values.push(format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
            }
            let sql = format!(
                "INSERT INTO feedback_import_rejects (tenant_id, import_id, line, seq, field, reason)
                 VALUES {}",
                values.join(",")
            );
            let mut query = sqlx::query(&sql);
            for (line, field, reason) in chunk {
                if *line != last_line {
                    seq = 0;
                    last_line = *line;
                } else {
                    seq += 1;
                }
                query = query
                    .bind(tenant_id)
                    .bind(import_id)
                    .bind(*line)
                    .bind(seq)
                    .bind(truncated(field, 256))
                    .bind(truncated(reason, MAX_REJECT_REASON_BYTES));
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE feedback_imports SET stored = stored + $3, duplicates = duplicates + $4,
                 rejected = rejected + $5
             WHERE tenant_id = $1 AND import_id = $2",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(outcome.stored)
        .bind(outcome.duplicates)
        .bind(outcome.rejected)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(turn);
        Ok(outcome)
    }

    /// Sets an import's status (`interrupted`, `completed`, `failed`); `completed` and
    /// `failed` record the finishing time.
    pub async fn set_feedback_import_status(
        &self,
        tenant_id: &str,
        import_id: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::FeedbackItems)
            .await?;
        let finished = matches!(status, "completed" | "failed").then_some(now_ms);
        sqlx::query(
            "UPDATE feedback_imports SET status = $3, updated_at_ms = $4, finished_at_ms = $5
             WHERE tenant_id = $1 AND import_id = $2",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(status)
        .bind(now_ms)
        .bind(finished)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// An import's refused rows in line order (at most `limit`).
    pub async fn feedback_import_rejects(
        &self,
        tenant_id: &str,
        import_id: &str,
        limit: u32,
    ) -> Result<Vec<ImportReject>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        sqlx::query(
            "SELECT line, field, reason FROM feedback_import_rejects
             WHERE tenant_id = $1 AND import_id = $2 ORDER BY line, seq LIMIT $3",
        )
        .bind(tenant_id)
        .bind(import_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(ImportReject {
                line: row.try_get(0)?,
                field: row.try_get(1)?,
                reason: row.try_get(2)?,
            })
        })
        .collect()
    }
}

/// The source line an imported item came from, recorded in its `received` event's detail as
/// `import_line` (0 when absent).
fn line_of(item: &NewFeedbackItem) -> i64 {
    item.events
        .first()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.detail).ok())
        .and_then(|d| d.get("import_line").and_then(serde_json::Value::as_i64))
        .unwrap_or(0)
}
