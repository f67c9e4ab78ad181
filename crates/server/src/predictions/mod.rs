//! Weber predictions: purchases in ([`transactions`]), customer lifetime value and churn out.
//!
//! Purchases arrive through `POST /api/v1/transactions` and are stored per tenant. The
//! `weber.refit_predictions` job fits the lifetime models on them (with the tenant's Weber
//! profiles as extra churn features) and stores every customer's predictions, which the CLV,
//! churn and recommendation endpoints serve with the model version that made them.

mod overview;
mod service;
pub mod transactions;

pub use overview::{ClvBucket, ModelCard, PredictionDistribution};
pub use service::{
    clv_confidence, version_name, ChurnPrediction, ClvPrediction, Missing, ModelInfo,
    PredictionReadError, PredictionService, PredictionSettings, PredictionSettingsError,
    RecommendationAnswer, RecommendationItem, RefitError, RefitStep, RefitSummary,
};

/// The name of every tenant's daily refit schedule.
pub const REFIT_SCHEDULE: &str = "weber-refit-predictions";
/// When it runs: daily at 03:17 UTC (off the hour, away from other nightly work).
pub const REFIT_CRON: &str = "17 3 * * *";

/// Gives the tenant its daily `weber.refit_predictions` schedule unless it has one by that name
/// (a tenant that changed or disabled it keeps its choice). Returns whether it was created.
/// Called when a tenant is created (CLI, demo tenant).
pub async fn ensure_refit_schedule(
    store: &store::Store,
    tenant_id: &str,
    now_ms: i64,
) -> Result<bool, store::StoreError> {
    crate::jobs::ensure_default_schedule(
        store,
        tenant_id,
        crate::jobs::DefaultSchedule {
            name: REFIT_SCHEDULE,
            cron: REFIT_CRON,
            handler: crate::jobs::WEBER_REFIT_PREDICTIONS,
            priority: jobs::Priority::Normal,
        },
        now_ms,
    )
    .await
}
