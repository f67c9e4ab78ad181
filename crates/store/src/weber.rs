//! Weber sensitivity profiles: one row per (tenant, user), written in batches, read by user, by
//! segment page and as per-segment statistics. Every query is keyed by tenant.
//!
//! The store keeps plain records; the `weber` engine's types stay out of this crate, so the
//! storage layer does not change when the engine does.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::{Operation, Store, StoreError, Table};

/// A stored profile. `sensitivity_segment` is the engine's segment name (`Highly_Sensitive`, …).
/// Deserialize too, so read caches can keep it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeberProfileRecord {
    pub user_id: String,
    pub weber_constant: f64,
    pub calculation_confidence: f64,
    pub sensitivity_segment: String,
    pub bias_ratio: Option<f64>,
    /// Every interaction the user has had, not only the window's.
    pub review_count: i64,
    /// How many interactions the profile was computed over (at most the window).
    pub window_len: i64,
    pub newest_event_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// Per-segment figures for the analytics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStats {
    pub segment: String,
    pub users: i64,
    pub mean_constant: f64,
    /// Population standard deviation of the users' constants.
    pub std_constant: f64,
    pub mean_confidence: f64,
    pub mean_review_count: f64,
}

/// How many users were in each segment at one instant, by the calculation audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentCountsAt {
    /// The instant, epoch milliseconds (exclusive: calculations before it count).
    pub at_ms: i64,
    /// `(segment, users)`, segments by name; absent segments had no users.
    pub counts: Vec<(String, i64)>,
}

/// Rows per INSERT: 10 parameters each keeps a statement far below both databases' limits.
const UPSERT_CHUNK: usize = 500;
/// Ids per `IN (…)` list.
const LOOKUP_CHUNK: usize = 500;

pub(crate) const COLUMNS: &str =
    "user_id, weber_constant, calculation_confidence, sensitivity_segment, \
     bias_ratio, review_count, window_len, newest_event_ms, updated_at_ms";

impl Store {
    /// Inserts or replaces the tenant's profiles, all in one transaction: readers see the old
    /// set or the new one, never half. Returns how many rows were written.
    pub async fn upsert_weber_profiles(
        &self,
        tenant_id: &str,
        profiles: &[WeberProfileRecord],
    ) -> Result<u64, StoreError> {
        for p in profiles {
            validate(p)?;
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::WeberProfiles)
            .await?;
        let mut tx = conn.begin().await?;
        let mut written = 0;
        for chunk in profiles.chunks(UPSERT_CHUNK) {
            let mut sql = format!(
                "INSERT INTO weber_profiles (tenant_id, {COLUMNS}) VALUES {}",
                values_list(chunk.len(), 10, 1)
            );
            sql.push_str(
                " ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                 weber_constant = excluded.weber_constant, \
                 calculation_confidence = excluded.calculation_confidence, \
                 sensitivity_segment = excluded.sensitivity_segment, \
                 bias_ratio = excluded.bias_ratio, review_count = excluded.review_count, \
                 window_len = excluded.window_len, newest_event_ms = excluded.newest_event_ms, \
                 updated_at_ms = excluded.updated_at_ms",
            );
            let mut query = nullable_float_query(&sql);
            for p in chunk {
                query = bind_profile(query, tenant_id, p);
            }
            written += query
                .execute(&mut *tx)
                .await
                .map_err(|e| foreign_key_or(e, tenant_id))?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    /// One user's profile in the tenant, if any.
    pub async fn weber_profile(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<WeberProfileRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberProfiles)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM weber_profiles WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| record_from_row(&row))
        .transpose()
    }

    /// The profiles of the given users that exist in the tenant, in user id order.
    pub async fn weber_profiles(
        &self,
        tenant_id: &str,
        user_ids: &[String],
    ) -> Result<Vec<WeberProfileRecord>, StoreError> {
        let mut out = Vec::with_capacity(user_ids.len());
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberProfiles)
            .await?;
        for chunk in user_ids.chunks(LOOKUP_CHUNK) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM weber_profiles WHERE tenant_id = $1 AND user_id IN ({}) ORDER BY user_id",
                placeholders.join(",")
            );
            let mut query = sqlx::query(&sql).bind(tenant_id);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut *conn).await? {
                out.push(record_from_row(&row)?);
            }
        }
        out.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        out.dedup_by(|a, b| a.user_id == b.user_id);
        Ok(out)
    }

    /// A page of the users in one segment, in user id order, starting after `after`.
    pub async fn weber_segment_users(
        &self,
        tenant_id: &str,
        segment: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberProfiles)
            .await?;
        let rows = sqlx::query(
            "SELECT user_id FROM weber_profiles
             WHERE tenant_id = $1 AND sensitivity_segment = $2 AND user_id > $3
             ORDER BY user_id LIMIT $4",
        )
        .bind(tenant_id)
        .bind(segment)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// For each instant of `at_ms`, how many of the tenant's users were in each segment then:
    /// each user counts in the segment of their newest calculation audit row written before the
    /// instant. Users without audit rows (profiles loaded in batch) and erased users are not
    /// counted.
    pub async fn weber_segment_counts_at(
        &self,
        tenant_id: &str,
        at_ms: &[i64],
    ) -> Result<Vec<SegmentCountsAt>, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberCalculations)
            .await?;
        let mut out = Vec::with_capacity(at_ms.len());
        for &at in at_ms {
            // Audit ids increase in write order, so the newest row before the instant is the
            // user's highest id among them.
            let rows = sqlx::query(
                "SELECT c.sensitivity_segment, COUNT(*) FROM weber_calculations c
                 JOIN (SELECT user_id, MAX(id) AS id FROM weber_calculations
                       WHERE tenant_id = $1 AND calculated_at_ms < $2 GROUP BY user_id) newest
                   ON c.id = newest.id
                 WHERE c.tenant_id = $1
                 GROUP BY c.sensitivity_segment ORDER BY c.sensitivity_segment",
            )
            .bind(tenant_id)
            .bind(at)
            .fetch_all(&mut *conn)
            .await?;
            let counts = rows
                .iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push(SegmentCountsAt { at_ms: at, counts });
        }
        Ok(out)
    }

    /// Per-segment user counts and the mean and spread of their constants, segments by name.
    pub async fn weber_segment_stats(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<SegmentStats>, StoreError> {
        // Sums rather than SQL's stddev: SQLite has none, and the sums give the same answer on
        // both backends. The review-count sum is cast because PostgreSQL sums BIGINT to NUMERIC.
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberProfiles)
            .await?;
        let rows = sqlx::query(
            "SELECT sensitivity_segment, COUNT(*), SUM(weber_constant),
                    SUM(weber_constant * weber_constant), SUM(calculation_confidence),
                    CAST(SUM(review_count) AS DOUBLE PRECISION)
             FROM weber_profiles WHERE tenant_id = $1
             GROUP BY sensitivity_segment ORDER BY sensitivity_segment",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let users: i64 = r.try_get(1)?;
                let n = users.max(1) as f64;
                let sum: f64 = r.try_get(2)?;
                let sum_sq: f64 = r.try_get(3)?;
                let mean = sum / n;
                Ok(SegmentStats {
                    segment: r.try_get(0)?,
                    users,
                    mean_constant: mean,
                    std_constant: (sum_sq / n - mean * mean).max(0.0).sqrt(),
                    mean_confidence: r.try_get::<f64, _>(4)? / n,
                    mean_review_count: r.try_get::<f64, _>(5)? / n,
                })
            })
            .collect()
    }
}

/// `($1,$2,…)` groups for a multi-row VALUES list.
pub(crate) fn values_list(rows: usize, columns: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(first + r * columns + c).to_string());
        }
        sql.push(')');
    }
    sql
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds `tenant_id` and a profile's fields, in [`COLUMNS`] order.
/// A query that binds an `Option<f64>`, prepared afresh on every call.
///
/// sqlx 0.8's `Any` driver binds a missing `f64` as a PostgreSQL `float4` (its `Null(Double)`
/// maps to `f32`), and a statement cached on its connection with that parameter type then
/// refuses a present `f64` ("incorrect binary data format in bind parameter N"). Not caching the
/// statement costs one parse per call, on write paths that batch their rows.
pub(crate) fn nullable_float_query(sql: &str) -> AnyQuery<'_> {
    sqlx::query(sql).persistent(false)
}

pub(crate) fn bind_profile<'q>(
    query: AnyQuery<'q>,
    tenant_id: &'q str,
    p: &'q WeberProfileRecord,
) -> AnyQuery<'q> {
    query
        .bind(tenant_id)
        .bind(&p.user_id)
        .bind(p.weber_constant)
        .bind(p.calculation_confidence)
        .bind(&p.sensitivity_segment)
        .bind(p.bias_ratio)
        .bind(p.review_count)
        .bind(p.window_len)
        .bind(p.newest_event_ms)
        .bind(p.updated_at_ms)
}

fn record_from_row(row: &AnyRow) -> Result<WeberProfileRecord, StoreError> {
    Ok(WeberProfileRecord {
        user_id: row.try_get(0)?,
        weber_constant: row.try_get(1)?,
        calculation_confidence: row.try_get(2)?,
        sensitivity_segment: row.try_get(3)?,
        bias_ratio: row.try_get(4)?,
        review_count: row.try_get(5)?,
        window_len: row.try_get(6)?,
        newest_event_ms: row.try_get(7)?,
        updated_at_ms: row.try_get(8)?,
    })
}

pub(crate) fn validate(p: &WeberProfileRecord) -> Result<(), StoreError> {
    let invalid = |field: &'static str, reason: &str| StoreError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if p.user_id.is_empty() || p.user_id.len() > 256 || p.user_id.contains('\0') {
        return Err(invalid("user_id", "must be 1 to 256 bytes, without NUL"));
    }
    let finite = [
        Some(p.weber_constant),
        Some(p.calculation_confidence),
        p.bias_ratio,
    ];
    if finite.iter().flatten().any(|v| !v.is_finite()) {
        return Err(invalid("weber_constant", "profile numbers must be finite"));
    }
    if p.review_count < 0 || p.window_len < 0 {
        return Err(invalid("review_count", "counts must not be negative"));
    }
    Ok(())
}

pub(crate) fn foreign_key_or(e: sqlx::Error, tenant_id: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
            StoreError::NotFound {
                what: format!("tenant '{tenant_id}'"),
            }
        }
        _ => StoreError::Database(e),
    }
}
