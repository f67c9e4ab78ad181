//! Flag usage analytics: how often each flag was evaluated, per variant and hour, and when it was
//! last evaluated. Every query is keyed by tenant.
//!
//! - The server counts evaluations in memory and hands the store batches of
//!   [`EvaluationCount`]s; [`Store::record_flag_evaluations`] adds them to the stored hourly
//!   counts (so batches from several replicas add up) and moves each flag's last evaluation
//!   time forward, never back.
//! - Reads bucket the hourly rows by hour or by UTC day, and the exposures of
//!   `flag_exposures` by the time of each user's first exposure (their assignment).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::flags::validate_name;
use crate::weber::{foreign_key_or, values_list};
use crate::{could_be_stored, Operation, Store, StoreError, Table};

/// One hour in milliseconds: the granularity evaluations are stored at.
pub const HOUR_MS: i64 = 3_600_000;
/// One UTC day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// Longest variant key stored, in bytes (the flags crate's bound).
const MAX_VARIANT_BYTES: usize = 256;
/// Rows per upsert statement: 6 parameters each.
const CHUNK: usize = 500;

/// Evaluations of one flag, variant and hour, as the server's counter hands them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationCount {
    /// The environment the flag was evaluated in.
    pub environment: String,
    /// The flag.
    pub flag_key: String,
    /// The variant served; `None` when the answer had none (an evaluation error).
    pub variant: Option<String>,
    /// Start of the UTC hour (epoch milliseconds, a multiple of [`HOUR_MS`]).
    pub hour_ms: i64,
    /// How many evaluations.
    pub evaluations: u64,
    /// The latest of them (epoch milliseconds).
    pub last_evaluated_ms: i64,
}

impl EvaluationCount {
    /// Checks what the store would refuse, so a caller can drop a bad count on its own.
    pub fn validate(&self) -> Result<(), StoreError> {
        validate_name("environment", &self.environment)?;
        validate_name("flag_key", &self.flag_key)?;
        if let Some(v) = &self.variant {
            if v.is_empty() || v.len() > MAX_VARIANT_BYTES || v.contains('\0') {
                return Err(StoreError::Invalid {
                    field: "variant",
                    reason: format!("must be 1 to {MAX_VARIANT_BYTES} bytes, without NUL"),
                });
            }
        }
        if self.hour_ms.rem_euclid(HOUR_MS) != 0 {
            return Err(StoreError::Invalid {
                field: "hour_ms",
                reason: "must be the start of an hour".to_owned(),
            });
        }
        if i64::try_from(self.evaluations).is_err() {
            return Err(StoreError::Invalid {
                field: "evaluations",
                reason: "too large".to_owned(),
            });
        }
        Ok(())
    }
}

/// What a usage read covers.
#[derive(Debug, Clone, Copy)]
pub struct UsageRange<'a> {
    /// The environment.
    pub environment: &'a str,
    /// First instant included (epoch milliseconds).
    pub from_ms: i64,
    /// First instant excluded (epoch milliseconds).
    pub to_ms: i64,
    /// Bucket width: [`HOUR_MS`] or [`DAY_MS`] (buckets start at multiples of it, UTC).
    pub bucket_ms: i64,
    /// Only this flag, when given.
    pub flag_key: Option<&'a str>,
}

/// Evaluations of one flag and variant in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationBucket {
    /// The flag.
    pub flag_key: String,
    /// The variant served; `None` for answers without one.
    pub variant: Option<String>,
    /// Start of the bucket (epoch milliseconds).
    pub bucket_ms: i64,
    /// Evaluations counted.
    pub evaluations: u64,
}

/// Users first exposed to (assigned) one variant of a flag in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentBucket {
    /// The flag.
    pub flag_key: String,
    /// The variant assigned.
    pub variant: String,
    /// Start of the bucket (epoch milliseconds).
    pub bucket_ms: i64,
    /// Users whose first exposure falls in the bucket.
    pub users: u64,
}

impl Store {
    /// Adds evaluation counts to the stored hourly counts and moves each flag's last
    /// evaluation time forward, in one transaction. Any invalid count fails the whole call with
    /// [`StoreError::Invalid`] before anything is written; an unknown tenant is
    /// [`StoreError::NotFound`].
    pub async fn record_flag_evaluations(
        &self,
        tenant_id: &str,
        counts: &[EvaluationCount],
    ) -> Result<(), StoreError> {
        if !could_be_stored(tenant_id) {
            return Err(StoreError::NotFound {
                what: format!("tenant '{}'", tenant_id.escape_debug()),
            });
        }
        for c in counts {
            c.validate()?;
        }
        // One row per key per statement (PostgreSQL refuses an upsert touching a row twice), in
        // key order so concurrent writers lock rows in one order.
        let mut hourly: BTreeMap<(&str, &str, i64, &str), i64> = BTreeMap::new();
        let mut last: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for c in counts {
            let variant = c.variant.as_deref().unwrap_or("");
            *hourly
                .entry((
                    c.environment.as_str(),
                    c.flag_key.as_str(),
                    c.hour_ms,
                    variant,
                ))
                .or_default() += i64::try_from(c.evaluations).unwrap_or(i64::MAX);
            let at = last
                .entry((c.environment.as_str(), c.flag_key.as_str()))
                .or_insert(i64::MIN);
            *at = (*at).max(c.last_evaluated_ms);
        }
        if hourly.is_empty() {
            return Ok(());
        }
        let hourly: Vec<_> = hourly.into_iter().collect();
        let last: Vec<_> = last.into_iter().collect();
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::FlagEvaluations)
            .await?;
        let mut tx = conn.begin().await?;
        for chunk in hourly.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO flag_evaluations (tenant_id, environment, flag_key, hour_ms, \
                 variant, evaluations) VALUES {} \
                 ON CONFLICT (tenant_id, environment, flag_key, hour_ms, variant) DO UPDATE SET \
                 evaluations = flag_evaluations.evaluations + excluded.evaluations",
                values_list(chunk.len(), 6, 1)
            );
            let mut query = sqlx::query(&sql);
            for ((environment, flag_key, hour_ms, variant), n) in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(*environment)
                    .bind(*flag_key)
                    .bind(*hour_ms)
                    .bind(*variant)
                    .bind(*n);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| foreign_key_or(e, tenant_id))?;
        }
        for chunk in last.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO flag_last_evaluated (tenant_id, environment, flag_key, \
                 last_evaluated_ms) VALUES {} \
                 ON CONFLICT (tenant_id, environment, flag_key) DO UPDATE SET \
                 last_evaluated_ms = CASE \
                     WHEN excluded.last_evaluated_ms > flag_last_evaluated.last_evaluated_ms \
                     THEN excluded.last_evaluated_ms \
                     ELSE flag_last_evaluated.last_evaluated_ms END",
                values_list(chunk.len(), 4, 1)
            );
            let mut query = sqlx::query(&sql);
            for ((environment, flag_key), at) in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(*environment)
                    .bind(*flag_key)
                    .bind(*at);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| foreign_key_or(e, tenant_id))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Evaluations per flag, variant and bucket in the range, ordered by flag, bucket and
    /// variant. Another tenant's counts are never read.
    pub async fn flag_evaluations(
        &self,
        tenant_id: &str,
        range: &UsageRange<'_>,
    ) -> Result<Vec<EvaluationBucket>, StoreError> {
        let bucket = checked_bucket(range.bucket_ms)?;
        if !readable(tenant_id, range) {
            return Ok(Vec::new());
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagEvaluations)
            .await?;
        // The bucket width is one of two constants, never input, so it is written inline.
        let sql = format!(
            "SELECT flag_key, variant, (hour_ms / {bucket}) * {bucket} AS bucket_ms, \
                    CAST(SUM(evaluations) AS BIGINT) \
             FROM flag_evaluations \
             WHERE tenant_id = $1 AND environment = $2 AND hour_ms >= $3 AND hour_ms < $4 \
               AND ($5 = '' OR flag_key = $5) \
             GROUP BY flag_key, variant, bucket_ms"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(range.environment)
            .bind(range.from_ms)
            .bind(range.to_ms)
            .bind(range.flag_key.unwrap_or(""))
            .fetch_all(&mut *conn)
            .await?;
        let mut buckets = rows
            .iter()
            .map(|r| {
                let variant: String = r.try_get(1)?;
                Ok(EvaluationBucket {
                    flag_key: r.try_get(0)?,
                    variant: Some(variant).filter(|v| !v.is_empty()),
                    bucket_ms: r.try_get(2)?,
                    evaluations: count(r, 3, "flag_evaluations")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here: PostgreSQL's collation and SQLite's byte order disagree on mixed case.
        buckets.sort_by(|a, b| {
            (&a.flag_key, a.bucket_ms, &a.variant).cmp(&(&b.flag_key, b.bucket_ms, &b.variant))
        });
        Ok(buckets)
    }

    /// Users first exposed (assigned) per flag, variant and bucket in the range, ordered by
    /// flag, bucket and variant: from `flag_exposures`, bucketed by each user's first exposure.
    pub async fn flag_assignments(
        &self,
        tenant_id: &str,
        range: &UsageRange<'_>,
    ) -> Result<Vec<AssignmentBucket>, StoreError> {
        let bucket = checked_bucket(range.bucket_ms)?;
        if !readable(tenant_id, range) {
            return Ok(Vec::new());
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagExposures)
            .await?;
        let sql = format!(
            "SELECT flag_key, variant, (first_seen_ms / {bucket}) * {bucket} AS bucket_ms, \
                    COUNT(*) \
             FROM flag_exposures \
             WHERE tenant_id = $1 AND environment = $2 \
               AND first_seen_ms >= $3 AND first_seen_ms < $4 \
               AND ($5 = '' OR flag_key = $5) \
             GROUP BY flag_key, variant, bucket_ms"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(range.environment)
            .bind(range.from_ms)
            .bind(range.to_ms)
            .bind(range.flag_key.unwrap_or(""))
            .fetch_all(&mut *conn)
            .await?;
        let mut buckets = rows
            .iter()
            .map(|r| {
                Ok(AssignmentBucket {
                    flag_key: r.try_get(0)?,
                    variant: r.try_get(1)?,
                    bucket_ms: r.try_get(2)?,
                    users: count(r, 3, "flag_exposures")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        buckets.sort_by(|a, b| {
            (&a.flag_key, a.bucket_ms, &a.variant).cmp(&(&b.flag_key, b.bucket_ms, &b.variant))
        });
        Ok(buckets)
    }

    /// When each flag of the environment that was ever counted was last evaluated (epoch
    /// milliseconds), by flag key.
    pub async fn flags_last_evaluated(
        &self,
        tenant_id: &str,
        environment: &str,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        if ![tenant_id, environment].into_iter().all(could_be_stored) {
            return Ok(BTreeMap::new());
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagLastEvaluated)
            .await?;
        let rows = sqlx::query(
            "SELECT flag_key, last_evaluated_ms FROM flag_last_evaluated
             WHERE tenant_id = $1 AND environment = $2",
        )
        .bind(tenant_id)
        .bind(environment)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| -> Result<(String, i64), StoreError> { Ok((r.try_get(0)?, r.try_get(1)?)) })
            .collect()
    }
}

fn checked_bucket(bucket_ms: i64) -> Result<i64, StoreError> {
    if bucket_ms == HOUR_MS || bucket_ms == DAY_MS {
        Ok(bucket_ms)
    } else {
        Err(StoreError::Invalid {
            field: "bucket_ms",
            reason: "must be an hour or a day".to_owned(),
        })
    }
}

fn readable(tenant_id: &str, range: &UsageRange<'_>) -> bool {
    [tenant_id, range.environment, range.flag_key.unwrap_or("")]
        .into_iter()
        .all(could_be_stored)
}

fn count(row: &AnyRow, index: usize, table: &'static str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(index)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative count {n}"),
    })
}
