//! Differential privacy's records: a tenant's budget (`privacy_budgets`), what it spent per
//! period (`privacy_spend`), the ledger of releases (`privacy_ledger`), and the feedback rows an
//! analytics query reads. Every query is keyed by tenant.
//!
//! Spending is atomic: [`Store::spend_privacy`] raises the period's spend by one conditional
//! `UPDATE … WHERE epsilon_nanos + $e <= $total AND delta_femtos + $d <= $dtotal` (no update: the
//! spend is refused) and inserts the ledger row in the same transaction, so concurrent spenders
//! on any number of replicas never pass the total, and the ledger always sums to the spend.

use sqlx::{Connection as _, Row};

use crate::{Operation, Store, StoreError, Table};

/// Most ledger rows one page returns.
pub const MAX_PRIVACY_LEDGER_PAGE: u32 = 500;
/// Largest stored query JSON of a ledger row, in bytes.
pub const MAX_PRIVACY_QUERY_BYTES: usize = 4_096;
/// Longest actor (an API key id, `cli`, or a job's name), in bytes.
pub const MAX_PRIVACY_ACTOR_BYTES: usize = 128;

/// A tenant's stored budget (units: 10⁻⁹ ε, 10⁻¹⁵ δ; the period's name is the domain's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyBudgetRecord {
    pub period: String,
    pub epsilon_nanos: i64,
    pub delta_femtos: i64,
    pub updated_at_ms: i64,
    /// The API key id (or `cli`) that set it.
    pub updated_by: String,
}

/// What a tenant spent in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivacySpent {
    pub epsilon_nanos: i64,
    pub delta_femtos: i64,
}

/// A release to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrivacyRelease<'a> {
    /// The first millisecond of the budget period it spends from.
    pub period_start_ms: i64,
    pub released_at_ms: i64,
    pub actor: &'a str,
    /// `query` or `report`.
    pub kind: &'a str,
    /// The query, as JSON (never data).
    pub query: &'a str,
    pub epsilon_nanos: i64,
    pub delta_femtos: i64,
}

/// The period's limits a spend must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacyLimit {
    pub epsilon_nanos: i64,
    pub delta_femtos: i64,
}

/// The outcome of [`Store::spend_privacy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivacySpendOutcome {
    /// Recorded: the ledger row's id and the period's spend after it.
    Spent { ledger_id: i64, spent: PrivacySpent },
    /// It did not fit; nothing was written. The period's spend as it stands.
    Refused { spent: PrivacySpent },
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyLedgerRecord {
    pub id: i64,
    pub period_start_ms: i64,
    pub released_at_ms: i64,
    pub actor: String,
    pub kind: String,
    /// The query JSON as stored.
    pub query: String,
    pub epsilon_nanos: i64,
    pub delta_femtos: i64,
}

/// A feedback item's columns that analytics read (never its text: only the redacted text's
/// length is computed in SQL).
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyAnalyticsRow {
    pub id: String,
    pub user_id: Option<String>,
    pub occurred_ms: i64,
    pub kind: String,
    pub channel: Option<String>,
    pub region: Option<String>,
    /// The user's Weber sensitivity segment, when profiled.
    pub segment: Option<String>,
    pub rating: Option<i64>,
    pub sentiment: Option<f64>,
    pub alignment: Option<f64>,
    /// Violated principles as stored (`,P1,P2,`).
    pub violations: Option<String>,
    /// Characters of the redacted text.
    pub text_chars: Option<i64>,
}

fn invalid(field: &'static str, reason: &str) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

fn spent_of(row: Option<sqlx::any::AnyRow>) -> Result<PrivacySpent, StoreError> {
    Ok(match row {
        Some(r) => PrivacySpent {
            epsilon_nanos: r.try_get(0)?,
            delta_femtos: r.try_get(1)?,
        },
        None => PrivacySpent::default(),
    })
}

impl Store {
    /// The tenant's budget, if it set one.
    pub async fn privacy_budget(
        &self,
        tenant_id: &str,
    ) -> Result<Option<PrivacyBudgetRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::PrivacyBudgets)
            .await?;
        let row = sqlx::query(
            "SELECT period, epsilon_nanos, delta_femtos, updated_at_ms, updated_by
             FROM privacy_budgets WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| {
            Ok(PrivacyBudgetRecord {
                period: r.try_get(0)?,
                epsilon_nanos: r.try_get(1)?,
                delta_femtos: r.try_get(2)?,
                updated_at_ms: r.try_get(3)?,
                updated_by: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Sets the tenant's budget (insert or replace). What was spent in the current period stays
    /// spent.
    pub async fn put_privacy_budget(
        &self,
        tenant_id: &str,
        budget: &PrivacyBudgetRecord,
    ) -> Result<(), StoreError> {
        if budget.epsilon_nanos < 0 || budget.delta_femtos < 0 {
            return Err(invalid("budget", "epsilon and delta must not be negative"));
        }
        if budget.updated_by.len() > MAX_PRIVACY_ACTOR_BYTES || budget.period.len() > 16 {
            return Err(invalid("budget", "period or actor too long"));
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::PrivacyBudgets)
            .await?;
        sqlx::query(
            "INSERT INTO privacy_budgets
                 (tenant_id, period, epsilon_nanos, delta_femtos, updated_at_ms, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET period = excluded.period,
                 epsilon_nanos = excluded.epsilon_nanos, delta_femtos = excluded.delta_femtos,
                 updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
        )
        .bind(tenant_id)
        .bind(&budget.period)
        .bind(budget.epsilon_nanos)
        .bind(budget.delta_femtos)
        .bind(budget.updated_at_ms)
        .bind(&budget.updated_by)
        .execute(&mut *conn)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        Ok(())
    }

    /// What the tenant spent in the period starting at `period_start_ms`.
    pub async fn privacy_spent(
        &self,
        tenant_id: &str,
        period_start_ms: i64,
    ) -> Result<PrivacySpent, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::PrivacySpend).await?;
        let row = sqlx::query(
            "SELECT epsilon_nanos, delta_femtos FROM privacy_spend
             WHERE tenant_id = $1 AND period_start_ms = $2",
        )
        .bind(tenant_id)
        .bind(period_start_ms)
        .fetch_optional(&mut *conn)
        .await?;
        spent_of(row)
    }

    /// Spends `release`'s ε and δ from its period if they fit within the tenant's stored budget
    /// (or `limit` when it has none: the default), and records the ledger row, in one
    /// transaction. Under concurrency (any number of processes) the period's spend never passes
    /// the budget: the spend is one conditional `UPDATE` that reads the budget itself, so a
    /// budget lowered while a query was being answered is the one that holds.
    pub async fn spend_privacy(
        &self,
        tenant_id: &str,
        release: &NewPrivacyRelease<'_>,
        limit: PrivacyLimit,
    ) -> Result<PrivacySpendOutcome, StoreError> {
        if release.epsilon_nanos < 0 || release.delta_femtos < 0 {
            return Err(invalid("spend", "epsilon and delta must not be negative"));
        }
        if release.query.len() > MAX_PRIVACY_QUERY_BYTES {
            return Err(invalid("query", "longer than 4096 bytes"));
        }
        if release.actor.is_empty() || release.actor.len() > MAX_PRIVACY_ACTOR_BYTES {
            return Err(invalid("actor", "must be 1 to 128 bytes"));
        }
        if !matches!(release.kind, "query" | "report") {
            return Err(invalid("kind", "must be query or report"));
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::PrivacySpend).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO privacy_spend (tenant_id, period_start_ms, epsilon_nanos, delta_femtos)
             VALUES ($1, $2, 0, 0) ON CONFLICT (tenant_id, period_start_ms) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(release.period_start_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        let updated = sqlx::query(
            "UPDATE privacy_spend
             SET epsilon_nanos = epsilon_nanos + $3, delta_femtos = delta_femtos + $4
             WHERE tenant_id = $1 AND period_start_ms = $2
               AND epsilon_nanos + $3 <= COALESCE(
                   (SELECT b.epsilon_nanos FROM privacy_budgets b WHERE b.tenant_id = $1), $5)
               AND delta_femtos + $4 <= COALESCE(
                   (SELECT b.delta_femtos FROM privacy_budgets b WHERE b.tenant_id = $1), $6)
             RETURNING epsilon_nanos, delta_femtos",
        )
        .bind(tenant_id)
        .bind(release.period_start_ms)
        .bind(release.epsilon_nanos)
        .bind(release.delta_femtos)
        .bind(limit.epsilon_nanos)
        .bind(limit.delta_femtos)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            let current = sqlx::query(
                "SELECT epsilon_nanos, delta_femtos FROM privacy_spend
                 WHERE tenant_id = $1 AND period_start_ms = $2",
            )
            .bind(tenant_id)
            .bind(release.period_start_ms)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(PrivacySpendOutcome::Refused {
                spent: spent_of(current)?,
            });
        };
        let spent = spent_of(Some(row))?;
        let id: i64 = sqlx::query(
            "INSERT INTO privacy_ledger (tenant_id, period_start_ms, released_at_ms, actor, kind,
                 query, epsilon_nanos, delta_femtos)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id",
        )
        .bind(tenant_id)
        .bind(release.period_start_ms)
        .bind(release.released_at_ms)
        .bind(release.actor)
        .bind(release.kind)
        .bind(release.query)
        .bind(release.epsilon_nanos)
        .bind(release.delta_femtos)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        Ok(PrivacySpendOutcome::Spent {
            ledger_id: id,
            spent,
        })
    }

    /// The tenant's ledger rows of one period, newest first, below `before_id` when given (the
    /// previous page's last id), at most `limit` (capped at [`MAX_PRIVACY_LEDGER_PAGE`]).
    pub async fn privacy_ledger(
        &self,
        tenant_id: &str,
        period_start_ms: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PrivacyLedgerRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PRIVACY_LEDGER_PAGE));
        let mut conn = self
            .acquire(Operation::Select, Table::PrivacyLedger)
            .await?;
        let rows = sqlx::query(
            "SELECT id, period_start_ms, released_at_ms, actor, kind, query, epsilon_nanos,
                    delta_femtos
             FROM privacy_ledger
             WHERE tenant_id = $1 AND period_start_ms = $2 AND id < $3
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id)
        .bind(period_start_ms)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PrivacyLedgerRecord {
                    id: r.try_get(0)?,
                    period_start_ms: r.try_get(1)?,
                    released_at_ms: r.try_get(2)?,
                    actor: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    query: r.try_get(5)?,
                    epsilon_nanos: r.try_get(6)?,
                    delta_femtos: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// The tenant's ledger totals for a period (ε, δ, rows), summed in SQL.
    pub async fn privacy_ledger_totals(
        &self,
        tenant_id: &str,
        period_start_ms: i64,
    ) -> Result<(PrivacySpent, i64), StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::PrivacyLedger)
            .await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(epsilon_nanos), 0) AS BIGINT),
                    CAST(COALESCE(SUM(delta_femtos), 0) AS BIGINT), COUNT(*)
             FROM privacy_ledger WHERE tenant_id = $1 AND period_start_ms = $2",
        )
        .bind(tenant_id)
        .bind(period_start_ms)
        .fetch_one(&mut *conn)
        .await?;
        Ok((
            PrivacySpent {
                epsilon_nanos: row.try_get(0)?,
                delta_femtos: row.try_get(1)?,
            },
            row.try_get(2)?,
        ))
    }

    /// The tenant's feedback items that occurred in `[from_ms, to_ms)` (not purged), with their
    /// user's Weber segment, oldest first, at most `limit`. Only the analysed columns are read:
    /// never the text (its length is computed in SQL from the redacted text).
    pub async fn privacy_analytics_rows(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<PrivacyAnalyticsRow>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let rows = sqlx::query(
            "SELECT f.id, f.user_id, f.occurred_ms, f.kind, f.channel, f.region,
                    w.sensitivity_segment, f.rating, f.sentiment, f.alignment, f.violations,
                    CAST(LENGTH(f.text_redacted) AS BIGINT)
             FROM feedback_items f
             LEFT JOIN weber_profiles w ON w.tenant_id = f.tenant_id AND w.user_id = f.user_id
             WHERE f.tenant_id = $1 AND f.occurred_ms >= $2 AND f.occurred_ms < $3
               AND f.status <> 'purged'
             ORDER BY f.occurred_ms, f.id LIMIT $4",
        )
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PrivacyAnalyticsRow {
                    id: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    occurred_ms: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    channel: r.try_get(4)?,
                    region: r.try_get(5)?,
                    segment: r.try_get(6)?,
                    rating: r.try_get(7)?,
                    sentiment: r.try_get(8)?,
                    alignment: r.try_get(9)?,
                    violations: r.try_get(10)?,
                    text_chars: r.try_get(11)?,
                })
            })
            .collect()
    }
}
