//! Weber predictions: purchases (`weber_transactions`), fitted lifetime models
//! (`weber_prediction_models`) and the per-customer predictions served from them
//! (`weber_business_metrics`). Every query is keyed by tenant.
//!
//! A purchase is stored once per order id: sending the same order again with the same values is
//! a duplicate and changes nothing; the same order id with different values is a conflict, and
//! the stored order stays as it was (a purchase history that silently changes under a fitted
//! model would make its predictions unexplainable).
//!
//! A refit replaces the tenant's predictions in one transaction ([`Store::store_predictions`]):
//! readers see every row of one model version or every row of the next, never a mix.
//!
//! As elsewhere in this crate, the `lifetime` model types stay out of the store: models are
//! stored as the JSON the caller serialised, predictions as plain records.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::{Operation, Store, StoreError, Table};

/// Rows per multi-row INSERT of purchases: 7 parameters each.
const TRANSACTION_CHUNK: usize = 500;
/// Rows per multi-row INSERT of predictions: 18 parameters each.
const METRICS_CHUNK: usize = 200;
/// Ids per `IN (…)` list.
const LOOKUP_CHUNK: usize = 500;
/// Longest order, customer and currency identifiers accepted.
pub const MAX_TRANSACTION_ID_BYTES: usize = 256;
/// Most purchases one page of [`Store::weber_transactions_page`] returns.
pub const MAX_TRANSACTION_PAGE: u32 = 50_000;

/// A purchase to store, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    pub order_id: String,
    pub customer_id: String,
    /// When the order was placed, epoch milliseconds (UTC).
    pub occurred_at_ms: i64,
    /// Net value, finite and `>= 0`.
    pub amount: f64,
    pub currency: Option<String>,
}

/// What became of one [`NewTransaction`] passed to [`Store::insert_transactions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionInsertion {
    /// Newly stored.
    Stored,
    /// The tenant already had this order with the same customer, time, amount and currency (or
    /// it appeared earlier in the same batch): nothing was written.
    Duplicate,
    /// The tenant already had this order id with different values (or an earlier item of the
    /// same batch did): nothing was written.
    Conflict,
}

/// A stored purchase, as fitting reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTransaction {
    pub order_id: String,
    pub customer_id: String,
    pub occurred_at_ms: i64,
    pub amount: f64,
    pub currency: Option<String>,
}

/// Where a page of [`Store::weber_transactions_page`] resumes: after this purchase in
/// `(customer_id, occurred_at_ms, order_id)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionCursor {
    pub customer_id: String,
    pub occurred_at_ms: i64,
    pub order_id: String,
}

impl StoredTransaction {
    /// The cursor that resumes after this purchase.
    pub fn cursor(&self) -> TransactionCursor {
        TransactionCursor {
            customer_id: self.customer_id.clone(),
            occurred_at_ms: self.occurred_at_ms,
            order_id: self.order_id.clone(),
        }
    }
}

/// A fitted model to store; its version is assigned by [`Store::store_predictions`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewPredictionModel {
    pub fitted_at_ms: i64,
    /// The last day (days since 1970-01-01, UTC) of the purchase history the model saw.
    pub observation_end_day: i64,
    /// The fitted model, serialised by the caller.
    pub model_json: String,
    /// The holdout evaluation, when the history allowed one.
    pub evaluation_json: Option<String>,
    /// Customers the model scored.
    pub customers: i64,
}

/// A stored fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionModelRecord {
    /// Per-tenant fit counter, from 1.
    pub version: i64,
    pub fitted_at_ms: i64,
    pub observation_end_day: i64,
    pub model_json: String,
    pub evaluation_json: Option<String>,
    pub customers: i64,
}

/// One customer's stored predictions (a `weber_business_metrics` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessMetricsRecord {
    pub user_id: String,
    /// The model version that wrote the row (set by [`Store::store_predictions`]).
    pub model_version: i64,
    pub predicted_clv: f64,
    pub clv_low: f64,
    pub clv_high: f64,
    /// `1 - (clv_high - clv_low) / (2 * clv)`, clamped to `[0, 1]`.
    pub clv_confidence: f64,
    /// The served churn risk (Weber-enhanced when that model exists).
    pub churn_risk_score: f64,
    /// The timing-only churn risk.
    pub churn_risk_timing: f64,
    /// `low`, `medium` or `high`.
    pub risk_level: String,
    pub p_alive: f64,
    /// Expected purchases over the churn horizon.
    pub expected_purchases: f64,
    pub expected_average_value: f64,
    /// The day (days since 1970-01-01) the churn horizon ends.
    pub churn_prediction_date: i64,
    /// Expected purchases over the churn horizon (the seed's engagement score).
    pub engagement_score: f64,
    /// The segment's strategy, when the customer has a Weber profile.
    pub recommendation_strategy: Option<String>,
    /// The churn risk factors, JSON serialised by the caller.
    pub risk_factors_json: String,
    pub last_prediction_update_ms: i64,
}

/// How [`Store::weber_business_metrics_page`] orders customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsOrder {
    /// Highest predicted CLV first.
    ClvDesc,
    /// Highest churn risk first.
    ChurnRiskDesc,
}

/// Counts of a tenant's stored predictions by risk level and by strategy.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetricsSummary {
    pub customers: i64,
    pub total_clv: f64,
    /// `(risk_level, customers)`, by level name.
    pub by_risk_level: Vec<(String, i64)>,
    /// `(strategy, customers)`, by strategy name; customers without one are left out.
    pub by_strategy: Vec<(String, i64)>,
}

impl Store {
    /// Stores the tenant's purchases in one transaction and reports, per input in order, whether
    /// it was stored, a duplicate or a conflict (see [`TransactionInsertion`]).
    pub async fn insert_transactions(
        &self,
        tenant_id: &str,
        transactions: &[NewTransaction],
        received_at_ms: i64,
    ) -> Result<Vec<TransactionInsertion>, StoreError> {
        let mut outcome = vec![TransactionInsertion::Duplicate; transactions.len()];
        // The first occurrence of an order id in the batch is the one stored; a later repeat is
        // compared with it, exactly like a repeat of a stored order.
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(transactions.len());
        let mut fresh = Vec::with_capacity(transactions.len());
        for (i, t) in transactions.iter().enumerate() {
            validate_transaction(t)?;
            match first.entry(t.order_id.as_str()) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(i);
                    fresh.push(i);
                }
                std::collections::hash_map::Entry::Occupied(slot) => {
                    if !same_purchase(&transactions[*slot.get()], t) {
                        outcome[i] = TransactionInsertion::Conflict;
                    }
                }
            }
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::WeberTransactions)
            .await?;
        let mut tx = conn.begin().await?;
        for chunk in fresh.chunks(TRANSACTION_CHUNK) {
            let sql = format!(
                "INSERT INTO weber_transactions (tenant_id, order_id, customer_id, \
                 occurred_at_ms, amount, currency, received_at_ms) VALUES {} \
                 ON CONFLICT (tenant_id, order_id) DO NOTHING RETURNING order_id",
                crate::weber::values_list(chunk.len(), 7, 1)
            );
            let mut query = sqlx::query(&sql).persistent(false);
            for &i in chunk {
                let t = &transactions[i];
                query = query
                    .bind(tenant_id)
                    .bind(&t.order_id)
                    .bind(&t.customer_id)
                    .bind(t.occurred_at_ms)
                    .bind(t.amount)
                    .bind(t.currency.as_deref())
                    .bind(received_at_ms);
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
            let mut stored = std::collections::HashSet::with_capacity(rows.len());
            for row in rows {
                let order_id: String = row.try_get(0)?;
                stored.insert(order_id);
            }
            // The orders that were already there: compare with what is stored.
            let existing: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| !stored.contains(&transactions[i].order_id))
                .collect();
            let mut previous: HashMap<String, StoredTransaction> = HashMap::new();
            for ids in existing.chunks(LOOKUP_CHUNK) {
                let placeholders: Vec<String> =
                    (0..ids.len()).map(|k| format!("${}", k + 2)).collect();
                let sql = format!(
                    "SELECT {TRANSACTION_COLUMNS} FROM weber_transactions \
                     WHERE tenant_id = $1 AND order_id IN ({})",
                    placeholders.join(",")
                );
                let mut query = sqlx::query(&sql).bind(tenant_id);
                for &i in ids {
                    query = query.bind(&transactions[i].order_id);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    let t = transaction_from_row(&row)?;
                    previous.insert(t.order_id.clone(), t);
                }
            }
            for &i in chunk {
                let t = &transactions[i];
                outcome[i] = if stored.contains(&t.order_id) {
                    TransactionInsertion::Stored
                } else {
                    match previous.get(&t.order_id) {
                        Some(p) if same_stored(p, t) => TransactionInsertion::Duplicate,
                        Some(_) => TransactionInsertion::Conflict,
                        // Neither inserted nor found: only a concurrent erasure between the two
                        // statements can do that; reporting a duplicate stores nothing twice.
                        None => TransactionInsertion::Duplicate,
                    }
                };
            }
        }
        tx.commit().await?;
        // A later repeat inside the batch follows what became of its first occurrence when
        // that one conflicted with a stored order: the values it repeats were not stored.
        for (i, t) in transactions.iter().enumerate() {
            if let Some(&f) = first.get(t.order_id.as_str()) {
                if f != i
                    && outcome[f] == TransactionInsertion::Conflict
                    && outcome[i] == TransactionInsertion::Duplicate
                {
                    outcome[i] = TransactionInsertion::Conflict;
                }
            }
        }
        Ok(outcome)
    }

    /// A page of the tenant's purchases in `(customer_id, occurred_at_ms, order_id)` order,
    /// after `after`, at most `limit` (capped at [`MAX_TRANSACTION_PAGE`]). Fitting walks every
    /// purchase this way; pass the last row's [`StoredTransaction::cursor`] to continue.
    pub async fn weber_transactions_page(
        &self,
        tenant_id: &str,
        after: Option<&TransactionCursor>,
        limit: u32,
    ) -> Result<Vec<StoredTransaction>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_TRANSACTION_PAGE));
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberTransactions)
            .await?;
        let rows = match after {
            None => {
                sqlx::query(&format!(
                    "SELECT {TRANSACTION_COLUMNS} FROM weber_transactions WHERE tenant_id = $1 \
                     ORDER BY customer_id, occurred_at_ms, order_id LIMIT $2"
                ))
                .bind(tenant_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            Some(c) => {
                // Spelled out rather than a row-value comparison, which older SQLite lacks.
                sqlx::query(&format!(
                    "SELECT {TRANSACTION_COLUMNS} FROM weber_transactions WHERE tenant_id = $1 \
                     AND (customer_id > $2 OR (customer_id = $2 AND (occurred_at_ms > $3 \
                          OR (occurred_at_ms = $3 AND order_id > $4)))) \
                     ORDER BY customer_id, occurred_at_ms, order_id LIMIT $5"
                ))
                .bind(tenant_id)
                .bind(&c.customer_id)
                .bind(c.occurred_at_ms)
                .bind(&c.order_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        rows.iter().map(transaction_from_row).collect()
    }

    /// How many purchases the tenant has stored for one customer.
    pub async fn weber_customer_transaction_count(
        &self,
        tenant_id: &str,
        customer_id: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberTransactions)
            .await?;
        let row = sqlx::query(
            "SELECT COUNT(*) FROM weber_transactions WHERE tenant_id = $1 AND customer_id = $2",
        )
        .bind(tenant_id)
        .bind(customer_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// How many purchases the tenant has stored.
    pub async fn weber_transaction_count(&self, tenant_id: &str) -> Result<i64, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberTransactions)
            .await?;
        let row = sqlx::query("SELECT COUNT(*) FROM weber_transactions WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Stores a newly fitted model and its predictions in one transaction: the model gets the
    /// next version of the tenant, every given row is written with that version, and rows of
    /// older versions that the new fit did not score are removed. Readers see the old model
    /// with all its rows or the new one with all of its. Returns the new version.
    ///
    /// Concurrent calls for one tenant are serialised (on the tenant's row), so versions are
    /// gapless and the later commit wins.
    pub async fn store_predictions(
        &self,
        tenant_id: &str,
        model: &NewPredictionModel,
        rows: &[BusinessMetricsRecord],
    ) -> Result<i64, StoreError> {
        for r in rows {
            validate_metrics(r)?;
        }
        if model.model_json.contains('\0')
            || model
                .evaluation_json
                .as_deref()
                .is_some_and(|e| e.contains('\0'))
        {
            return Err(StoreError::Invalid {
                field: "model_json",
                reason: "must not contain NUL".to_owned(),
            });
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::WeberBusinessMetrics)
            .await?;
        let mut tx = conn.begin().await?;
        let touched = sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if touched == 0 {
            return Err(StoreError::NotFound {
                what: format!("tenant '{tenant_id}'"),
            });
        }
        let version: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM weber_prediction_models WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO weber_prediction_models (tenant_id, version, fitted_at_ms, \
             observation_end_day, model_json, evaluation_json, customers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .persistent(false)
        .bind(tenant_id)
        .bind(version)
        .bind(model.fitted_at_ms)
        .bind(model.observation_end_day)
        .bind(&model.model_json)
        .bind(model.evaluation_json.as_deref())
        .bind(model.customers)
        .execute(&mut *tx)
        .await?;
        for chunk in rows.chunks(METRICS_CHUNK) {
            let sql = format!(
                "INSERT INTO weber_business_metrics (tenant_id, {METRICS_COLUMNS}) VALUES {} \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                 model_version = excluded.model_version, \
                 predicted_clv = excluded.predicted_clv, clv_low = excluded.clv_low, \
                 clv_high = excluded.clv_high, clv_confidence = excluded.clv_confidence, \
                 churn_risk_score = excluded.churn_risk_score, \
                 churn_risk_timing = excluded.churn_risk_timing, \
                 risk_level = excluded.risk_level, p_alive = excluded.p_alive, \
                 expected_purchases = excluded.expected_purchases, \
                 expected_average_value = excluded.expected_average_value, \
                 churn_prediction_date = excluded.churn_prediction_date, \
                 engagement_score = excluded.engagement_score, \
                 recommendation_strategy = excluded.recommendation_strategy, \
                 risk_factors_json = excluded.risk_factors_json, \
                 last_prediction_update_ms = excluded.last_prediction_update_ms",
                crate::weber::values_list(chunk.len(), 18, 1)
            );
            let mut query = sqlx::query(&sql).persistent(false);
            for r in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(&r.user_id)
                    .bind(version)
                    .bind(r.predicted_clv)
                    .bind(r.clv_low)
                    .bind(r.clv_high)
                    .bind(r.clv_confidence)
                    .bind(r.churn_risk_score)
                    .bind(r.churn_risk_timing)
                    .bind(&r.risk_level)
                    .bind(r.p_alive)
                    .bind(r.expected_purchases)
                    .bind(r.expected_average_value)
                    .bind(r.churn_prediction_date)
                    .bind(r.engagement_score)
                    .bind(r.recommendation_strategy.as_deref())
                    .bind(&r.risk_factors_json)
                    .bind(r.last_prediction_update_ms);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            "DELETE FROM weber_business_metrics WHERE tenant_id = $1 AND model_version < $2",
        )
        .bind(tenant_id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// The tenant's newest fitted model, if any.
    pub async fn latest_prediction_model(
        &self,
        tenant_id: &str,
    ) -> Result<Option<PredictionModelRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberPredictionModels)
            .await?;
        sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM weber_prediction_models WHERE tenant_id = $1 \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| model_from_row(&row))
        .transpose()
    }

    /// One fitted model of the tenant by version, if it exists.
    pub async fn prediction_model(
        &self,
        tenant_id: &str,
        version: i64,
    ) -> Result<Option<PredictionModelRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberPredictionModels)
            .await?;
        sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM weber_prediction_models \
             WHERE tenant_id = $1 AND version = $2"
        ))
        .bind(tenant_id)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| model_from_row(&row))
        .transpose()
    }

    /// One customer's stored predictions in the tenant, if any.
    pub async fn weber_business_metrics(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<BusinessMetricsRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::WeberBusinessMetrics)
            .await?;
        sqlx::query(&format!(
            "SELECT {METRICS_COLUMNS} FROM weber_business_metrics \
             WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| metrics_from_row(&row))
        .transpose()
    }

    /// The first `limit` customers of the tenant by `order` (ties by user id).
    pub async fn weber_business_metrics_page(
        &self,
        tenant_id: &str,
        order: MetricsOrder,
        limit: u32,
    ) -> Result<Vec<BusinessMetricsRecord>, StoreError> {
        let order_by = match order {
            MetricsOrder::ClvDesc => "predicted_clv DESC, user_id",
            MetricsOrder::ChurnRiskDesc => "churn_risk_score DESC, user_id",
        };
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberBusinessMetrics)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {METRICS_COLUMNS} FROM weber_business_metrics WHERE tenant_id = $1 \
             ORDER BY {order_by} LIMIT $2"
        ))
        .bind(tenant_id)
        .bind(i64::from(limit.min(10_000)))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(metrics_from_row).collect()
    }

    /// Counts of the tenant's stored predictions by risk level and strategy, and the CLV total.
    pub async fn weber_business_metrics_summary(
        &self,
        tenant_id: &str,
    ) -> Result<MetricsSummary, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberBusinessMetrics)
            .await?;
        let totals = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(predicted_clv), 0) AS DOUBLE PRECISION) \
             FROM weber_business_metrics WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut *conn)
        .await?;
        let levels = sqlx::query(
            "SELECT risk_level, COUNT(*) FROM weber_business_metrics WHERE tenant_id = $1 \
             GROUP BY risk_level ORDER BY risk_level",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        let strategies = sqlx::query(
            "SELECT recommendation_strategy, COUNT(*) FROM weber_business_metrics \
             WHERE tenant_id = $1 AND recommendation_strategy IS NOT NULL \
             GROUP BY recommendation_strategy ORDER BY recommendation_strategy",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        let pairs = |rows: &[AnyRow]| -> Result<Vec<(String, i64)>, StoreError> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        Ok(MetricsSummary {
            customers: totals.try_get(0)?,
            total_clv: totals.try_get(1)?,
            by_risk_level: pairs(&levels)?,
            by_strategy: pairs(&strategies)?,
        })
    }

    /// Customers `offset .. offset + limit` of the tenant by `order` (ties by user id): the
    /// console's paged tables of highest risk and highest CLV. `limit` is capped at 1,000.
    pub async fn weber_business_metrics_ranked(
        &self,
        tenant_id: &str,
        order: MetricsOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<BusinessMetricsRecord>, StoreError> {
        let order_by = match order {
            MetricsOrder::ClvDesc => "predicted_clv DESC, user_id",
            MetricsOrder::ChurnRiskDesc => "churn_risk_score DESC, user_id",
        };
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberBusinessMetrics)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {METRICS_COLUMNS} FROM weber_business_metrics WHERE tenant_id = $1 \
             ORDER BY {order_by} LIMIT $2 OFFSET $3"
        ))
        .bind(tenant_id)
        .bind(i64::from(limit.min(1_000)))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(metrics_from_row).collect()
    }

    /// How many of the tenant's customers have a predicted CLV in each bucket `[edges[i],
    /// edges[i + 1])`, the last bucket open above (`edges.len()` counts; customers below
    /// `edges[0]` are left out). `edges` must be increasing and finite.
    pub async fn weber_clv_histogram(
        &self,
        tenant_id: &str,
        edges: &[f64],
    ) -> Result<Vec<i64>, StoreError> {
        if edges.is_empty() {
            return Ok(Vec::new());
        }
        if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StoreError::Invalid {
                field: "edges",
                reason: "must be finite and increasing".to_owned(),
            });
        }
        // One pass: a SUM(CASE ...) per bucket, the bounds bound as parameters.
        let mut columns = Vec::with_capacity(edges.len());
        let mut param = 2;
        for i in 0..edges.len() {
            if i + 1 < edges.len() {
                columns.push(format!(
                    "CAST(COALESCE(SUM(CASE WHEN predicted_clv >= ${} AND predicted_clv < ${} \
                     THEN 1 ELSE 0 END), 0) AS BIGINT)",
                    param,
                    param + 1
                ));
                param += 2;
            } else {
                columns.push(format!(
                    "CAST(COALESCE(SUM(CASE WHEN predicted_clv >= ${param} THEN 1 ELSE 0 END), \
                     0) AS BIGINT)"
                ));
            }
        }
        let sql = format!(
            "SELECT {} FROM weber_business_metrics WHERE tenant_id = $1",
            columns.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant_id);
        for (i, edge) in edges.iter().enumerate() {
            query = query.bind(*edge);
            if let Some(next) = edges.get(i + 1) {
                query = query.bind(*next);
            }
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberBusinessMetrics)
            .await?;
        let row = query.fetch_one(&mut *conn).await?;
        (0..edges.len())
            .map(|i| row.try_get::<i64, _>(i).map_err(StoreError::from))
            .collect()
    }
}

const TRANSACTION_COLUMNS: &str = "order_id, customer_id, occurred_at_ms, amount, currency";

const MODEL_COLUMNS: &str = "version, fitted_at_ms, observation_end_day, model_json, \
     evaluation_json, customers";

const METRICS_COLUMNS: &str = "user_id, model_version, predicted_clv, clv_low, clv_high, \
     clv_confidence, churn_risk_score, churn_risk_timing, risk_level, p_alive, \
     expected_purchases, expected_average_value, churn_prediction_date, engagement_score, \
     recommendation_strategy, risk_factors_json, last_prediction_update_ms";

fn transaction_from_row(row: &AnyRow) -> Result<StoredTransaction, StoreError> {
    Ok(StoredTransaction {
        order_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        occurred_at_ms: row.try_get(2)?,
        amount: row.try_get(3)?,
        currency: row.try_get(4)?,
    })
}

fn model_from_row(row: &AnyRow) -> Result<PredictionModelRecord, StoreError> {
    Ok(PredictionModelRecord {
        version: row.try_get(0)?,
        fitted_at_ms: row.try_get(1)?,
        observation_end_day: row.try_get(2)?,
        model_json: row.try_get(3)?,
        evaluation_json: row.try_get(4)?,
        customers: row.try_get(5)?,
    })
}

fn metrics_from_row(row: &AnyRow) -> Result<BusinessMetricsRecord, StoreError> {
    Ok(BusinessMetricsRecord {
        user_id: row.try_get(0)?,
        model_version: row.try_get(1)?,
        predicted_clv: row.try_get(2)?,
        clv_low: row.try_get(3)?,
        clv_high: row.try_get(4)?,
        clv_confidence: row.try_get(5)?,
        churn_risk_score: row.try_get(6)?,
        churn_risk_timing: row.try_get(7)?,
        risk_level: row.try_get(8)?,
        p_alive: row.try_get(9)?,
        expected_purchases: row.try_get(10)?,
        expected_average_value: row.try_get(11)?,
        churn_prediction_date: row.try_get(12)?,
        engagement_score: row.try_get(13)?,
        recommendation_strategy: row.try_get(14)?,
        risk_factors_json: row.try_get(15)?,
        last_prediction_update_ms: row.try_get(16)?,
    })
}

/// Whether a later item of a batch repeats an earlier one exactly.
fn same_purchase(a: &NewTransaction, b: &NewTransaction) -> bool {
    a.customer_id == b.customer_id
        && a.occurred_at_ms == b.occurred_at_ms
        && a.amount.to_bits() == b.amount.to_bits()
        && a.currency == b.currency
}

/// Whether a sent purchase repeats the stored one. Amounts compare exactly: both databases
/// keep an f64 as sent.
fn same_stored(stored: &StoredTransaction, sent: &NewTransaction) -> bool {
    stored.customer_id == sent.customer_id
        && stored.occurred_at_ms == sent.occurred_at_ms
        && stored.amount == sent.amount
        && stored.currency == sent.currency
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TRANSACTION_ID_BYTES && !s.contains('\0')
}

fn validate_transaction(t: &NewTransaction) -> Result<(), StoreError> {
    let invalid = |field: &'static str, reason: &str| StoreError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if !valid_id(&t.order_id) {
        return Err(invalid("order_id", "must be 1 to 256 bytes, without NUL"));
    }
    if !valid_id(&t.customer_id) {
        return Err(invalid(
            "customer_id",
            "must be 1 to 256 bytes, without NUL",
        ));
    }
    if t.currency.as_deref().is_some_and(|c| !valid_id(c)) {
        return Err(invalid("currency", "must be 1 to 256 bytes, without NUL"));
    }
    if !t.amount.is_finite() || t.amount < 0.0 {
        return Err(invalid("amount", "must be a finite number >= 0"));
    }
    if t.occurred_at_ms < 0 {
        return Err(invalid("occurred_at", "must not be before 1970"));
    }
    Ok(())
}

fn validate_metrics(r: &BusinessMetricsRecord) -> Result<(), StoreError> {
    let invalid = |field: &'static str, reason: &str| StoreError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if !valid_id(&r.user_id) {
        return Err(invalid("user_id", "must be 1 to 256 bytes, without NUL"));
    }
    let numbers = [
        r.predicted_clv,
        r.clv_low,
        r.clv_high,
        r.clv_confidence,
        r.churn_risk_score,
        r.churn_risk_timing,
        r.p_alive,
        r.expected_purchases,
        r.expected_average_value,
        r.engagement_score,
    ];
    if numbers.iter().any(|v| !v.is_finite()) {
        return Err(invalid(
            "predicted_clv",
            "prediction numbers must be finite",
        ));
    }
    if r.risk_level.contains('\0')
        || r.risk_factors_json.contains('\0')
        || r.recommendation_strategy
            .as_deref()
            .is_some_and(|s| s.contains('\0'))
    {
        return Err(invalid("risk_level", "text must not contain NUL"));
    }
    Ok(())
}
