//! A tenant's Weber engine settings (`weber_settings`) and the erasure of one user's Weber data
//! with its audit (`weber_erasures`). Every query is keyed by tenant.

use sha2::{Digest, Sha256};
use sqlx::{Connection as _, Row};

use crate::{Operation, Store, StoreError, Table};

/// A tenant's stored Weber settings. The store keeps the numbers; their bounds are the engine's
/// (`weber::WeberParams`), checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct WeberSettingsRecord {
    pub eps: f64,
    pub window: i64,
    pub updated_at_ms: i64,
    /// The id of the API key that last changed them.
    pub updated_by: String,
}

/// What one erasure removed, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    pub interactions: u64,
    pub profiles: u64,
    pub calculations: u64,
    /// Purchases (`weber_transactions`, by `customer_id`).
    pub transactions: u64,
    /// Predictions (`weber_business_metrics`).
    pub business_metrics: u64,
}

impl ErasureCounts {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.interactions
            + self.profiles
            + self.calculations
            + self.transactions
            + self.business_metrics
    }
}

/// A recorded erasure, as read back (for the operator and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub subject_hash: String,
    pub counts: ErasureCounts,
    pub key_id: String,
    pub erased_at_ms: i64,
}

/// The pseudonym an erasure is audited under: the hex SHA-256 of `tenant_id`, a NUL byte and
/// `user_id` (user ids cannot hold NUL, so two pairs never share an input).
pub fn erasure_subject_hash(tenant_id: &str, user_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant_id.as_bytes());
    h.update([0u8]);
    h.update(user_id.as_bytes());
    hex::encode(h.finalize())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// The tenant's Weber settings, if it ever set any.
    pub async fn weber_settings(
        &self,
        tenant_id: &str,
    ) -> Result<Option<WeberSettingsRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberSettings)
            .await?;
        let row = sqlx::query(
            "SELECT eps, window_size, updated_at_ms, updated_by FROM weber_settings
             WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| {
            Ok(WeberSettingsRecord {
                eps: r.try_get(0)?,
                window: r.try_get(1)?,
                updated_at_ms: r.try_get(2)?,
                updated_by: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Sets the tenant's Weber settings (insert or replace).
    pub async fn put_weber_settings(
        &self,
        tenant_id: &str,
        settings: &WeberSettingsRecord,
    ) -> Result<(), StoreError> {
        if !settings.eps.is_finite() || settings.eps <= 0.0 {
            return Err(StoreError::Invalid {
                field: "eps",
                reason: "must be a finite, positive number".to_owned(),
            });
        }
        if settings.window < 1 {
            return Err(StoreError::Invalid {
                field: "window",
                reason: "must be at least 1".to_owned(),
            });
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::WeberSettings)
            .await?;
        sqlx::query(
            "INSERT INTO weber_settings (tenant_id, eps, window_size, updated_at_ms, updated_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET eps = excluded.eps,
                 window_size = excluded.window_size, updated_at_ms = excluded.updated_at_ms,
                 updated_by = excluded.updated_by",
        )
        .bind(tenant_id)
        .bind(settings.eps)
        .bind(settings.window)
        .bind(settings.updated_at_ms)
        .bind(&settings.updated_by)
        .execute(&mut *conn)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        Ok(())
    }

    /// Erases one user's Weber data in the tenant, in one transaction: interactions, profile,
    /// calculation audit, purchases and predictions. When anything was removed, an audit row
    /// (the user's [`erasure_subject_hash`], the counts, the key id, the time) is written in the
    /// same transaction, so an erasure is never half done nor done unrecorded. Erasing a user
    /// with nothing stored changes nothing, records nothing, and answers zero counts.
    pub async fn erase_weber_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        key_id: &str,
        now_ms: i64,
    ) -> Result<ErasureCounts, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::Interactions).await?;
        let mut tx = conn.begin().await?;
        let delete = |sql: &'static str| {
            sqlx::query(sql)
                .bind(tenant_id.to_owned())
                .bind(user_id.to_owned())
        };
        let interactions = delete("DELETE FROM interactions WHERE tenant_id = $1 AND user_id = $2")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let profiles = delete("DELETE FROM weber_profiles WHERE tenant_id = $1 AND user_id = $2")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let calculations =
            delete("DELETE FROM weber_calculations WHERE tenant_id = $1 AND user_id = $2")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let transactions =
            delete("DELETE FROM weber_transactions WHERE tenant_id = $1 AND customer_id = $2")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let business_metrics =
            delete("DELETE FROM weber_business_metrics WHERE tenant_id = $1 AND user_id = $2")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let counts = ErasureCounts {
            interactions,
            profiles,
            calculations,
            transactions,
            business_metrics,
        };
        if counts.total() > 0 {
            sqlx::query(
                "INSERT INTO weber_erasures (tenant_id, subject_hash, interactions, profiles,
                     calculations, transactions, business_metrics, key_id, erased_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(tenant_id)
            .bind(erasure_subject_hash(tenant_id, user_id))
            .bind(signed(counts.interactions))
            .bind(signed(counts.profiles))
            .bind(signed(counts.calculations))
            .bind(signed(counts.transactions))
            .bind(signed(counts.business_metrics))
            .bind(key_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// The recorded erasures of the user (by their [`erasure_subject_hash`]), oldest first.
    pub async fn weber_erasures(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<ErasureRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberErasures)
            .await?;
        let rows = sqlx::query(
            "SELECT subject_hash, interactions, profiles, calculations, transactions,
                    business_metrics, key_id, erased_at_ms
             FROM weber_erasures WHERE tenant_id = $1 AND subject_hash = $2 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(erasure_subject_hash(tenant_id, user_id))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ErasureRecord {
                    subject_hash: r.try_get(0)?,
                    counts: ErasureCounts {
                        interactions: count(r.try_get(1)?),
                        profiles: count(r.try_get(2)?),
                        calculations: count(r.try_get(3)?),
                        transactions: count(r.try_get(4)?),
                        business_metrics: count(r.try_get(5)?),
                    },
                    key_id: r.try_get(6)?,
                    erased_at_ms: r.try_get(7)?,
                })
            })
            .collect()
    }
}
