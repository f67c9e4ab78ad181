//! The tenant-wide reads behind the console's predictions page: the current model as a typed
//! card, how the stored predictions spread over risk levels and CLV, and the customers ranked
//! by risk or CLV a page at a time.

use std::sync::Arc;

use lifetime::model::FittedModel;
use store::{BusinessMetricsRecord, MetricsOrder, StoreError};

use super::service::{version_name, PredictionReadError, PredictionService};
use crate::state::AppState;

/// The tenant's current model with what the store keeps beside it.
#[derive(Debug, Clone)]
pub struct ModelCard {
    /// `bgnbd-gg-v{n}`.
    pub model_version: String,
    pub fitted_at_ms: i64,
    /// The last day of purchase history the model saw (days since 1970-01-01).
    pub observation_end_day: i64,
    /// Customers scored.
    pub customers: i64,
    /// The fitted model (parameters, log-likelihoods, churn model, holdout evaluation).
    pub model: Arc<FittedModel>,
}

/// One bucket of the CLV distribution: `[low, high)`, `high` open for the last.
#[derive(Debug, Clone, PartialEq)]
pub struct ClvBucket {
    pub low: f64,
    pub high: Option<f64>,
    pub customers: i64,
}

/// How the tenant's stored predictions spread.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PredictionDistribution {
    pub customers: i64,
    pub total_clv: f64,
    /// Customers per risk level, in the order low, medium, high (zero counts included).
    pub by_risk_level: Vec<(&'static str, i64)>,
    /// Customers per recommendation strategy, by name.
    pub by_strategy: Vec<(String, i64)>,
    /// Customers per CLV bucket (edges 0, then 1-2.5-5 steps up to the highest CLV).
    pub clv_buckets: Vec<ClvBucket>,
}

/// Bucket edges for CLVs up to `max`: 0, then the 1-2.5-5 sequence from the step that keeps
/// the buckets at most ten, so the chart stays readable whatever the currency's scale.
pub(crate) fn clv_edges(max: f64) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0];
    }
    let mut edges = vec![0.0];
    let mut magnitude = 10f64.powi(max.log10().floor() as i32 - 2);
    let steps = [1.0, 2.5, 5.0];
    let mut i = 0;
    let mut edge = magnitude;
    // Grow the first positive edge until at most ten buckets cover [0, max].
    while max / edge > 10.0 {
        i += 1;
        if i == steps.len() {
            i = 0;
            magnitude *= 10.0;
        }
        edge = steps[i] * magnitude;
    }
    let mut k = 1.0;
    while edge * k <= max {
        edges.push(edge * k);
        k += 1.0;
    }
    edges
}

impl PredictionService {
    /// The tenant's current model as a card, `None` before the first fit.
    pub async fn model_card(
        &self,
        state: &AppState,
        tenant_id: &str,
    ) -> Result<Option<ModelCard>, PredictionReadError> {
        let Some(record) = state.store().latest_prediction_model(tenant_id).await? else {
            return Ok(None);
        };
        let (model, fitted_at_ms) = self.fitted(state, tenant_id, record.version).await?;
        Ok(Some(ModelCard {
            model_version: version_name(record.version),
            fitted_at_ms,
            observation_end_day: record.observation_end_day,
            customers: record.customers,
            model,
        }))
    }

    /// How the tenant's stored predictions spread over risk levels, strategies and CLV.
    pub async fn distribution(
        state: &AppState,
        tenant_id: &str,
    ) -> Result<PredictionDistribution, StoreError> {
        let summary = state
            .store()
            .weber_business_metrics_summary(tenant_id)
            .await?;
        let count = |level: &str| {
            summary
                .by_risk_level
                .iter()
                .find(|(l, _)| l == level)
                .map_or(0, |(_, n)| *n)
        };
        let by_risk_level = ["low", "medium", "high"]
            .into_iter()
            .map(|l| (l, count(l)))
            .collect();
        let top = state
            .store()
            .weber_business_metrics_ranked(tenant_id, MetricsOrder::ClvDesc, 0, 1)
            .await?;
        let max = top.first().map_or(0.0, |r| r.predicted_clv);
        let edges = clv_edges(max);
        let counts = if summary.customers == 0 {
            Vec::new()
        } else {
            state.store().weber_clv_histogram(tenant_id, &edges).await?
        };
        let clv_buckets = counts
            .iter()
            .enumerate()
            .map(|(i, n)| ClvBucket {
                low: edges[i],
                high: edges.get(i + 1).copied(),
                customers: *n,
            })
            .collect();
        Ok(PredictionDistribution {
            customers: summary.customers,
            total_clv: summary.total_clv,
            by_risk_level,
            by_strategy: summary.by_strategy,
            clv_buckets,
        })
    }

    /// Customers `offset ..` of the tenant ranked by churn risk or CLV (highest first), at
    /// most `limit`.
    pub async fn ranked(
        state: &AppState,
        tenant_id: &str,
        order: MetricsOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<BusinessMetricsRecord>, StoreError> {
        state
            .store()
            .weber_business_metrics_ranked(tenant_id, order, offset, limit)
            .await
    }

    /// One customer's stored prediction row, `None` when they have none.
    pub async fn stored(
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<BusinessMetricsRecord>, StoreError> {
        state
            .store()
            .weber_business_metrics(tenant_id, user_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::clv_edges;

    #[test]
    fn clv_edges_cover_the_range_in_at_most_ten_nice_buckets() {
        assert_eq!(clv_edges(0.0), vec![0.0]);
        assert_eq!(clv_edges(f64::NAN), vec![0.0]);
        assert_eq!(
            clv_edges(480.0),
            vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0]
        );
        for max in [0.003, 0.7, 9.99, 10.0, 123.4, 5_000.0, 77_777.0, 1e9] {
            let edges = clv_edges(max);
            assert!(edges.len() <= 11, "{max}: {edges:?}");
            assert!(edges.len() >= 4, "{max}: {edges:?}");
            assert!(*edges.last().unwrap() <= max, "{max}: {edges:?}");
            // The open last bucket starts within one step of the maximum.
            let step = edges[1];
            assert!(max - edges.last().unwrap() < step, "{max}: {edges:?}");
        }
    }
}
