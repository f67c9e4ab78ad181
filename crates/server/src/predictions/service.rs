//! The predictions use cases: refit a tenant's lifetime models, and read what they predicted.
//!
//! A refit loads the tenant's purchases (paged) and Weber profiles, fits the models with
//! [`lifetime::model::fit_model`] (`Split::Serving`: the holdout evaluation and the
//! Weber-enhanced churn model come from a split of the last `churn_horizon_days`, the served
//! BG/NBD and Gamma-Gamma from the whole history), scores every customer and stores the model
//! and every customer's row in one transaction ([`store::Store::store_predictions`]): a reader
//! sees one model version's predictions or the next one's, never a mix.
//!
//! Reads return plain structs (the routes, the console and the demo use them alike); a customer
//! without a prediction is a [`PredictionReadError::NotFound`] that says why.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use lifetime::churn::{RiskFactor, RiskLevel, WeberFeatures};
use lifetime::model::{fit_model, ChurnModelKind, FittedModel, ModelSettings, Split};
use lifetime::recommend::RecommendationTable;
use lifetime::summary::{Period, Purchase};
use lifetime::{FitError, LifetimeError};
use serde::Serialize;
use store::{BusinessMetricsRecord, NewPredictionModel, StoreError, TransactionCursor};
use utoipa::ToSchema;

use crate::state::AppState;

/// Purchases read per store round trip while loading a tenant's history.
const LOAD_PAGE: u32 = 20_000;
/// Customers whose profiles are read per store round trip.
const PROFILE_PAGE: usize = 500;
const DAY_MS: i64 = 86_400_000;

/// How predictions are made and served; the server configuration's `[predictions]` section.
#[derive(Debug, Clone)]
pub struct PredictionSettings {
    /// Churn risk is the probability of no purchase within this many days [default: 30].
    pub churn_horizon_days: u32,
    /// Months of CLV [default: 12].
    pub clv_months: u32,
    /// Monthly discount rate of CLV [default: 0.01].
    pub monthly_discount_rate: f64,
    /// The time unit of the models' summaries [default: days].
    pub period: Period,
    /// What each segment is recommended, and the churn interventions per risk level.
    pub recommendations: Arc<RecommendationTable>,
}

impl Default for PredictionSettings {
    fn default() -> Self {
        PredictionSettings {
            churn_horizon_days: 30,
            clv_months: 12,
            monthly_discount_rate: 0.01,
            period: Period::Day,
            recommendations: Arc::new(RecommendationTable::default()),
        }
    }
}

/// A `[predictions]` setting that cannot be used; the message names the setting (and the
/// file and field of a recommendation table).
#[derive(Debug, thiserror::Error)]
#[error("predictions.{field}: {reason}")]
pub struct PredictionSettingsError {
    pub field: &'static str,
    pub reason: String,
}

impl PredictionSettings {
    /// The settings from the configuration's `[predictions]` values (defaults for those not
    /// given), validated at start: the churn horizon 1 to 3,660 days, CLV months 1 to 1,200, the
    /// monthly discount rate in `[0, 1)`, and the recommendation table file (TOML, the shape of
    /// the default table) read and checked, its errors naming the file and the field.
    pub fn from_config(
        churn_horizon_days: Option<u32>,
        clv_months: Option<u32>,
        monthly_discount_rate: Option<f64>,
        recommendations: Option<&std::path::Path>,
    ) -> Result<PredictionSettings, PredictionSettingsError> {
        let defaults = PredictionSettings::default();
        let bad = |field: &'static str, reason: String| PredictionSettingsError { field, reason };
        let churn_horizon_days = churn_horizon_days.unwrap_or(defaults.churn_horizon_days);
        if !(1..=3660).contains(&churn_horizon_days) {
            return Err(bad(
                "churn_horizon_days",
                format!("must be 1 to 3660 days, got {churn_horizon_days}"),
            ));
        }
        let clv_months = clv_months.unwrap_or(defaults.clv_months);
        if !(1..=1200).contains(&clv_months) {
            return Err(bad(
                "clv_months",
                format!("must be 1 to 1200 months, got {clv_months}"),
            ));
        }
        let monthly_discount_rate = monthly_discount_rate.unwrap_or(defaults.monthly_discount_rate);
        if !(monthly_discount_rate.is_finite() && (0.0..1.0).contains(&monthly_discount_rate)) {
            return Err(bad(
                "monthly_discount_rate",
                format!("must be a number in [0, 1), got {monthly_discount_rate}"),
            ));
        }
        let recommendations = match recommendations {
            None => defaults.recommendations,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        "recommendations",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let table = RecommendationTable::from_toml_str(&text)
                    .map_err(|e| bad("recommendations", format!("{}: {e}", path.display())))?;
                Arc::new(table)
            }
        };
        Ok(PredictionSettings {
            churn_horizon_days,
            clv_months,
            monthly_discount_rate,
            period: defaults.period,
            recommendations,
        })
    }

    /// The pure crate's settings for a fit.
    pub fn model_settings(&self) -> ModelSettings {
        ModelSettings {
            period: self.period,
            churn_horizon_days: self.churn_horizon_days,
            clv_months: self.clv_months,
            monthly_discount_rate: self.monthly_discount_rate,
            ..ModelSettings::default()
        }
    }
}

/// The answer's model version string, `bgnbd-gg-v{n}`.
pub fn version_name(version: i64) -> String {
    format!("bgnbd-gg-v{version}")
}

/// What a refit did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RefitSummary {
    /// Whether a model was fitted and stored; `false` when the history cannot support a fit
    /// yet (`reason` says why), which is not an error.
    pub fitted: bool,
    /// The stored model's version (`bgnbd-gg-v{n}`), when fitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Purchases and customers the fit saw.
    pub purchases: usize,
    pub customers: usize,
    /// Customers with a Weber profile among them.
    pub customers_with_profiles: usize,
    /// Why nothing was fitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last day of history the model saw (`YYYY-MM-DD`).
    pub observation_end: String,
    pub elapsed_ms: u64,
}

/// Why a refit failed.
#[derive(Debug, thiserror::Error)]
pub enum RefitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fit itself failed (did not converge, degenerate parameters): refitting the same
    /// history gives the same answer, so this is not retried.
    #[error("the lifetime models could not be fitted: {0}")]
    Fit(LifetimeError),
    /// Asked to stop between steps (a job's cancellation or soft time limit).
    #[error("stopped: {0}")]
    Stopped(String),
    #[error("the fit task failed: {0}")]
    Task(String),
}

/// A step of a refit, reported to the caller's progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefitStep {
    /// Purchases loaded so far.
    Loading { purchases: usize },
    /// Weber profiles loaded for this many customers.
    Profiles { customers: usize },
    /// Fitting on this many customers.
    Fitting { customers: usize },
    /// Storing this many customers' predictions.
    Storing { customers: usize },
}

/// One customer's CLV, in the seed's `CLVPredictionResponse` shape plus what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClvPrediction {
    pub user_id: String,
    /// Discounted CLV over `horizon_months`, in the currency of the tenant's amounts.
    pub predicted_clv: f64,
    /// `[low, high]`: a 90% interval from the delta method on the fitted parameters'
    /// covariance (parameter uncertainty only), floored at 0.
    pub confidence_interval: [f64; 2],
    /// Share of each feature in the Weber-enhanced churn model (|standardised coefficient|,
    /// summing to 1); empty when the tenant has no such model yet.
    pub weber_features_importance: BTreeMap<String, f64>,
    /// `bgnbd-gg-v{n}`.
    pub model_version: String,
    /// When the model that made this prediction was fitted (RFC 3339).
    pub prediction_date: String,
    /// Expected purchases within the churn horizon (`expected_purchases_horizon_days`).
    pub expected_purchases: f64,
    pub expected_purchases_horizon_days: u32,
    /// Probability that the customer is still active.
    pub p_alive: f64,
    /// Expected value of one of the customer's future purchases (Gamma-Gamma).
    pub expected_average_value: f64,
    pub horizon_months: u32,
}

/// One customer's churn risk, in the seed's `ChurnPredictionResponse` shape plus its basis.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChurnPrediction {
    pub user_id: String,
    /// Probability of no purchase within `prediction_horizon_days` (Weber-enhanced when the
    /// tenant has that model, else from purchase timing alone).
    pub churn_risk_score: f64,
    /// `low` (< 0.3), `medium` (< 0.6) or `high`.
    pub risk_level: String,
    /// What drives the risk, from the fitted model: `{factor, value, contribution}`.
    #[schema(value_type = Vec<Object>)]
    pub key_risk_factors: Vec<RiskFactor>,
    /// The interventions of the risk level (configurable table).
    pub recommended_interventions: Vec<String>,
    pub prediction_horizon_days: u32,
    pub model_version: String,
    /// `weber_enhanced` or `timing`.
    pub model: String,
    /// The risk from purchase timing alone (BG/NBD).
    pub churn_risk_timing: f64,
    pub p_alive: f64,
}

/// One recommendation of [`RecommendationAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecommendationItem {
    pub action: String,
    pub channel: String,
    /// 1 is the most important.
    pub priority: u32,
    /// Why, when asked for (`include_rationale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// `segment` or `churn_intervention`.
    pub source: String,
}

/// The seed's `RecommendationResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecommendationAnswer {
    pub user_id: String,
    pub recommendations: Vec<RecommendationItem>,
    /// The segment's strategy (`stability_reassurance`, `value_messaging`, ...).
    pub strategy: String,
    pub weber_segment: String,
    /// The Weber profile's calculation confidence, in `[0, 1]`.
    pub confidence_score: f64,
    pub generation_time_ms: f64,
    /// The churn risk level the interventions are for, when the customer has a prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_risk_level: Option<String>,
    /// The model version of that prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// The tenant's current model, for `GET /api/v1/predictions/model`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelInfo {
    pub model_version: String,
    pub fitted_at: String,
    /// The last day of purchase history the model saw (`YYYY-MM-DD`).
    pub observation_end: String,
    pub customers: i64,
    /// The fitted model: parameters, log-likelihoods, the churn model.
    #[schema(value_type = Object)]
    pub model: serde_json::Value,
    /// Holdout accuracy (MAE of purchases, weekly tracking, churn AUCs), when the history
    /// allowed a holdout.
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<serde_json::Value>,
}

/// Why a read found nothing.
#[derive(Debug, thiserror::Error)]
pub enum PredictionReadError {
    #[error("{0}")]
    NotFound(Missing),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored model that does not parse (written by an incompatible build).
    #[error("stored model {version} cannot be read: {reason}")]
    CorruptModel { version: i64, reason: String },
}

/// Why a customer has no prediction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("user '{0}' has no purchases; send them to POST /api/v1/transactions")]
    NoPurchases(String),
    #[error("no model has been fitted for this tenant yet; the daily refit (or POST /api/v1/predictions/refit) makes one")]
    NotFitted,
    #[error("user '{0}' has purchases newer than the current model; the next refit scores them")]
    NotScoredYet(String),
    #[error("user '{0}' has no Weber profile; recommendations follow the sensitivity segment")]
    NoProfile(String),
}

impl Missing {
    /// A stable code for the problem's `reason` member.
    pub fn code(&self) -> &'static str {
        match self {
            Missing::NoPurchases(_) => "no_purchases",
            Missing::NotFitted => "not_fitted",
            Missing::NotScoredYet(_) => "not_scored_yet",
            Missing::NoProfile(_) => "no_weber_profile",
        }
    }
}

/// The prediction reads, with parsed stored models cached by (tenant, version) with their fit
/// time: reads need the churn model's importances, and a model never changes once stored.
#[derive(Clone)]
pub struct PredictionService {
    models: moka::sync::Cache<(String, i64), Arc<CachedModel>>,
}

/// A parsed stored model and when it was fitted (epoch ms).
type CachedModel = (Arc<FittedModel>, i64);

impl Default for PredictionService {
    fn default() -> Self {
        PredictionService {
            models: moka::sync::Cache::builder().max_capacity(256).build(),
        }
    }
}

impl PredictionService {
    /// Refits the tenant's models now, inline (the demo data and tests call this; the job
    /// calls [`PredictionService::refit_with`] to report progress and honour stop requests).
    pub async fn refit(state: &AppState, tenant_id: &str) -> Result<RefitSummary, RefitError> {
        PredictionService::refit_with(state, tenant_id, crate::jobs::now_ms(), &mut |_| Ok(()))
            .await
    }

    /// [`PredictionService::refit`] as of `now_ms`, calling `progress` between steps; an
    /// `Err` from it stops the refit with [`RefitError::Stopped`].
    pub async fn refit_with(
        state: &AppState,
        tenant_id: &str,
        now_ms: i64,
        progress: &mut (dyn FnMut(RefitStep) -> Result<(), String> + Send),
    ) -> Result<RefitSummary, RefitError> {
        let started = Instant::now();
        let settings = state.config().predictions.clone();
        let metrics = state.metrics().predictions();
        let result = refit_inner(state, tenant_id, now_ms, &settings, progress, started).await;
        let outcome = match &result {
            Ok(s) if s.fitted => "fitted",
            Ok(_) => "insufficient_data",
            Err(RefitError::Stopped(_)) => "stopped",
            Err(_) => "failed",
        };
        metrics.refit(tenant_id, outcome, started.elapsed());
        if let Ok(s) = &result {
            if s.fitted {
                metrics.scored(tenant_id, s.customers as u64);
            }
        }
        result
    }

    /// The tenant's current model.
    pub async fn model(
        state: &AppState,
        tenant_id: &str,
    ) -> Result<ModelInfo, PredictionReadError> {
        let record = state
            .store()
            .latest_prediction_model(tenant_id)
            .await?
            .ok_or(PredictionReadError::NotFound(Missing::NotFitted))?;
        let parse = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                PredictionReadError::CorruptModel {
                    version: record.version,
                    reason: e.to_string(),
                }
            })
        };
        Ok(ModelInfo {
            model_version: version_name(record.version),
            fitted_at: rfc3339(record.fitted_at_ms),
            observation_end: day_text(record.observation_end_day),
            customers: record.customers,
            model: parse(&record.model_json)?,
            evaluation: record.evaluation_json.as_deref().map(parse).transpose()?,
        })
    }

    /// One customer's CLV prediction.
    pub async fn clv(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<ClvPrediction, PredictionReadError> {
        let row = self.row(state, tenant_id, user_id).await?;
        let settings = &state.config().predictions;
        let (model, fitted_at_ms) = self.fitted(state, tenant_id, row.model_version).await?;
        let weber_features_importance = model
            .weber_features_importance()
            .into_iter()
            .filter(|(_, share)| share.is_finite())
            .collect();
        Ok(ClvPrediction {
            user_id: row.user_id,
            predicted_clv: row.predicted_clv,
            confidence_interval: [row.clv_low, row.clv_high],
            weber_features_importance,
            model_version: version_name(row.model_version),
            prediction_date: rfc3339(fitted_at_ms),
            expected_purchases: row.expected_purchases,
            expected_purchases_horizon_days: settings.churn_horizon_days,
            p_alive: row.p_alive,
            expected_average_value: row.expected_average_value,
            horizon_months: settings.clv_months,
        })
    }

    /// One customer's churn prediction.
    pub async fn churn(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<ChurnPrediction, PredictionReadError> {
        let row = self.row(state, tenant_id, user_id).await?;
        let settings = &state.config().predictions;
        let level = RiskLevel::of(row.churn_risk_score);
        let stored: StoredRiskFactors =
            serde_json::from_str(&row.risk_factors_json).unwrap_or_default();
        Ok(ChurnPrediction {
            user_id: row.user_id,
            churn_risk_score: row.churn_risk_score,
            risk_level: level.as_str().to_owned(),
            key_risk_factors: stored.factors,
            recommended_interventions: settings
                .recommendations
                .interventions(level)
                .iter()
                .map(|r| r.action.clone())
                .collect(),
            prediction_horizon_days: settings.churn_horizon_days,
            model_version: version_name(row.model_version),
            model: stored.model.as_str().to_owned(),
            churn_risk_timing: row.churn_risk_timing,
            p_alive: row.p_alive,
        })
    }

    /// Recommendations for one customer: the segment's (from the Weber profile, which is
    /// required, as in the seed) then, when the customer has a churn prediction at medium or
    /// high risk, that level's interventions; at most `max` in all.
    pub async fn recommendations(
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
        max: usize,
        include_rationale: bool,
    ) -> Result<RecommendationAnswer, PredictionReadError> {
        let started = Instant::now();
        let profile = state
            .store()
            .weber_profile(tenant_id, user_id)
            .await?
            .ok_or_else(|| PredictionReadError::NotFound(Missing::NoProfile(user_id.to_owned())))?;
        let segment = parse_segment(&profile.sensitivity_segment);
        let table = &state.config().predictions.recommendations;
        let plan = table.for_segment(segment);
        let row = state
            .store()
            .weber_business_metrics(tenant_id, user_id)
            .await?;
        let level = row.as_ref().map(|r| RiskLevel::of(r.churn_risk_score));
        let interventions = match level {
            Some(l @ (RiskLevel::Medium | RiskLevel::High)) => table.interventions(l),
            _ => &[],
        };
        // Interventions first when the customer is at risk: keeping them comes before upselling.
        let mut items: Vec<RecommendationItem> = Vec::new();
        for (source, list) in [
            ("churn_intervention", interventions),
            ("segment", &plan.recommendations[..]),
        ] {
            for r in list {
                if items.len() >= max {
                    break;
                }
                items.push(RecommendationItem {
                    action: r.action.clone(),
                    channel: r.channel.clone(),
                    priority: items.len() as u32 + 1,
                    rationale: include_rationale.then(|| r.rationale.clone()),
                    source: source.to_owned(),
                });
            }
        }
        Ok(RecommendationAnswer {
            user_id: user_id.to_owned(),
            recommendations: items,
            strategy: plan.strategy.clone(),
            weber_segment: segment.as_str().to_owned(),
            confidence_score: profile.calculation_confidence.clamp(0.0, 1.0),
            generation_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            churn_risk_level: level.map(|l| l.as_str().to_owned()),
            model_version: row.map(|r| version_name(r.model_version)),
        })
    }

    /// The customer's stored row, or why there is none.
    async fn row(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<BusinessMetricsRecord, PredictionReadError> {
        let store = state.store();
        if let Some(row) = store.weber_business_metrics(tenant_id, user_id).await? {
            return Ok(row);
        }
        let missing = if store
            .weber_customer_transaction_count(tenant_id, user_id)
            .await?
            == 0
        {
            Missing::NoPurchases(user_id.to_owned())
        } else if store.latest_prediction_model(tenant_id).await?.is_none() {
            Missing::NotFitted
        } else {
            Missing::NotScoredYet(user_id.to_owned())
        };
        Err(PredictionReadError::NotFound(missing))
    }

    /// The parsed model of a version, and when it was fitted: from the cache when this
    /// process has read it before (a stored model never changes), else from the store.
    pub(crate) async fn fitted(
        &self,
        state: &AppState,
        tenant_id: &str,
        version: i64,
    ) -> Result<(Arc<FittedModel>, i64), PredictionReadError> {
        let key = (tenant_id.to_owned(), version);
        if let Some(cached) = self.models.get(&key) {
            return Ok((cached.0.clone(), cached.1));
        }
        let record = state
            .store()
            .prediction_model(tenant_id, version)
            .await?
            .ok_or(PredictionReadError::NotFound(Missing::NotFitted))?;
        let model: FittedModel = serde_json::from_str(&record.model_json).map_err(|e| {
            PredictionReadError::CorruptModel {
                version,
                reason: e.to_string(),
            }
        })?;
        let model = Arc::new(model);
        self.models
            .insert(key, Arc::new((model.clone(), record.fitted_at_ms)));
        Ok((model, record.fitted_at_ms))
    }
}

async fn refit_inner(
    state: &AppState,
    tenant_id: &str,
    now_ms: i64,
    settings: &PredictionSettings,
    progress: &mut (dyn FnMut(RefitStep) -> Result<(), String> + Send),
    started: Instant,
) -> Result<RefitSummary, RefitError> {
    let store = state.store();
    // 1. Purchases, customer by customer.
    let mut purchases: Vec<Purchase> = Vec::new();
    let mut cursor: Option<TransactionCursor> = None;
    let mut last_day = i32::MIN;
    loop {
        let page = store
            .weber_transactions_page(tenant_id, cursor.as_ref(), LOAD_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor());
        let full = page.len() == LOAD_PAGE as usize;
        for t in page {
            let day = day_of(t.occurred_at_ms);
            last_day = last_day.max(day);
            purchases.push(Purchase {
                customer_id: t.customer_id,
                day,
                amount: t.amount,
            });
        }
        progress(RefitStep::Loading {
            purchases: purchases.len(),
        })
        .map_err(RefitError::Stopped)?;
        if !full {
            break;
        }
    }
    // Today, or the newest purchase's day when a sender's clock runs a little ahead.
    let observation_end = day_of(now_ms).max(last_day);
    let mut customers: Vec<String> = purchases.iter().map(|p| p.customer_id.clone()).collect();
    customers.dedup();

    // 2. Weber profiles of those customers.
    let mut weber: HashMap<String, WeberFeatures> = HashMap::new();
    for chunk in customers.chunks(PROFILE_PAGE) {
        for p in store.weber_profiles(tenant_id, chunk).await? {
            if let Some(features) = features_of(&p) {
                weber.insert(p.user_id, features);
            }
        }
    }
    progress(RefitStep::Profiles {
        customers: weber.len(),
    })
    .map_err(RefitError::Stopped)?;

    let mut summary = RefitSummary {
        fitted: false,
        model_version: None,
        purchases: purchases.len(),
        customers: customers.len(),
        customers_with_profiles: weber.len(),
        reason: None,
        observation_end: day_text(i64::from(observation_end)),
        elapsed_ms: 0,
    };

    // 3. Fit and score, off the async executor.
    progress(RefitStep::Fitting {
        customers: customers.len(),
    })
    .map_err(RefitError::Stopped)?;
    let model_settings = settings.model_settings();
    let table = settings.recommendations.clone();
    let horizon = settings.churn_horizon_days;
    let fitted_at_ms = now_ms;
    let scored = tokio::task::spawn_blocking(move || {
        score(
            &purchases,
            &weber,
            observation_end,
            &model_settings,
            &table,
            horizon,
            fitted_at_ms,
        )
    })
    .await
    .map_err(|e| RefitError::Task(e.to_string()))?;
    let (model, rows) = match scored {
        Ok(done) => done,
        Err(e) if insufficient(&e) => {
            summary.reason = Some(e.to_string());
            summary.elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(tenant_id, reason = %e, "predictions not refitted: not enough purchase history yet");
            return Ok(summary);
        }
        Err(e) => return Err(RefitError::Fit(e)),
    };

    // 4. Store the model and every row, as one version.
    progress(RefitStep::Storing {
        customers: rows.len(),
    })
    .map_err(RefitError::Stopped)?;
    let version = store.store_predictions(tenant_id, &model, &rows).await?;
    summary.fitted = true;
    summary.model_version = Some(version_name(version));
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        tenant_id,
        version,
        customers = rows.len(),
        elapsed_ms = summary.elapsed_ms,
        "refitted the lifetime models"
    );
    Ok(summary)
}

/// Whether a fit failed for want of data (not an error of the job: the next refit may succeed).
fn insufficient(e: &LifetimeError) -> bool {
    matches!(
        e,
        LifetimeError::Fit(FitError::TooFewCustomers { .. } | FitError::NoRepeatPurchases)
    )
}

/// Fits the models and makes every customer's row (pure CPU work).
fn score(
    purchases: &[Purchase],
    weber: &HashMap<String, WeberFeatures>,
    observation_end: i32,
    settings: &ModelSettings,
    table: &RecommendationTable,
    horizon_days: u32,
    fitted_at_ms: i64,
) -> Result<(NewPredictionModel, Vec<BusinessMetricsRecord>), LifetimeError> {
    let fitted = fit_model(
        purchases,
        weber,
        Split::Serving { observation_end },
        settings,
    )?;
    let churn_date = i64::from(observation_end) + i64::from(horizon_days);
    let mut rows = Vec::with_capacity(fitted.summaries.len());
    for (customer_id, p) in fitted.predict_all(weber) {
        let features = weber.get(&customer_id);
        let [low, high] = p.clv_interval;
        let factors = StoredRiskFactors {
            model: p.model,
            factors: p.risk_factors,
        };
        rows.push(BusinessMetricsRecord {
            user_id: customer_id,
            model_version: 0,
            predicted_clv: finite(p.clv),
            clv_low: finite(low),
            clv_high: finite(high),
            clv_confidence: clv_confidence(p.clv, low, high),
            churn_risk_score: finite(p.churn_risk),
            churn_risk_timing: finite(p.churn_risk_timing),
            risk_level: p.risk_level.as_str().to_owned(),
            p_alive: finite(p.p_alive),
            expected_purchases: finite(p.expected_purchases),
            expected_average_value: finite(p.expected_average_value),
            churn_prediction_date: churn_date,
            engagement_score: finite(p.expected_purchases),
            recommendation_strategy: features
                .map(|f| table.for_segment(f.segment).strategy.clone()),
            risk_factors_json: serde_json::to_string(&factors).unwrap_or_else(|_| "{}".to_owned()),
            last_prediction_update_ms: fitted_at_ms,
        });
    }
    let model_json = serde_json::to_string(&fitted).map_err(|e| LifetimeError::Invalid {
        field: "model".to_owned(),
        reason: e.to_string(),
    })?;
    let evaluation_json = fitted
        .evaluation
        .as_ref()
        .and_then(|e| serde_json::to_string(e).ok());
    Ok((
        NewPredictionModel {
            fitted_at_ms,
            observation_end_day: i64::from(observation_end),
            model_json,
            evaluation_json,
            customers: rows.len() as i64,
        },
        rows,
    ))
}

/// What `risk_factors_json` holds: the churn model that scored the customer and its factors.
#[derive(Debug, Serialize, serde::Deserialize)]
struct StoredRiskFactors {
    model: ChurnModelKind,
    factors: Vec<RiskFactor>,
}

impl Default for StoredRiskFactors {
    fn default() -> Self {
        StoredRiskFactors {
            model: ChurnModelKind::Timing,
            factors: Vec::new(),
        }
    }
}

/// `1 - (high - low) / (2 * max(clv, tiny))`, clamped to `[0, 1]`: 1 when the interval is a
/// point, 0 when its half-width reaches the CLV itself.
pub fn clv_confidence(clv: f64, low: f64, high: f64) -> f64 {
    let c = 1.0 - (high - low) / (2.0 * clv.max(1e-9));
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Stored numbers are finite: the pure crate promises it, and this keeps a slip from failing
/// a whole refit.
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn features_of(p: &store::WeberProfileRecord) -> Option<WeberFeatures> {
    let finite = p.weber_constant.is_finite() && p.calculation_confidence.is_finite();
    finite.then(|| WeberFeatures {
        weber_constant: p.weber_constant,
        bias_ratio: p.bias_ratio.filter(|b| b.is_finite()),
        segment: parse_segment(&p.sensitivity_segment),
        confidence: p.calculation_confidence.clamp(0.0, 1.0),
    })
}

/// A stored segment name; an unknown one (a newer build's) is read from nothing as the least
/// sensitive, which recommends the least intrusive plan.
fn parse_segment(name: &str) -> weber::SensitivitySegment {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .unwrap_or(weber::SensitivitySegment::Insensitive)
}

/// Days since 1970-01-01 (UTC) of an epoch-milliseconds time.
fn day_of(ms: i64) -> i32 {
    i32::try_from(ms.div_euclid(DAY_MS)).unwrap_or(i32::MAX)
}

fn day_text(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_name_the_field_and_file() {
        let s = PredictionSettings::from_config(Some(60), None, Some(0.02), None).unwrap();
        assert_eq!((s.churn_horizon_days, s.clv_months), (60, 12));
        for (got, field) in [
            (
                PredictionSettings::from_config(Some(0), None, None, None),
                "churn_horizon_days",
            ),
            (
                PredictionSettings::from_config(None, Some(0), None, None),
                "clv_months",
            ),
            (
                PredictionSettings::from_config(None, None, Some(1.0), None),
                "monthly_discount_rate",
            ),
            (
                PredictionSettings::from_config(None, None, Some(f64::NAN), None),
                "monthly_discount_rate",
            ),
        ] {
            assert_eq!(got.unwrap_err().field, field);
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let e = PredictionSettings::from_config(None, None, None, Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("none.toml"), "{e}");
        let bad = dir.path().join("bad.toml");
        let text = lifetime::recommend::DEFAULT_TABLE_TOML.replace(
            "strategy = \"premium_upsell\"",
            "strategy = \"Premium Upsell\"",
        );
        std::fs::write(&bad, text).unwrap();
        let e = PredictionSettings::from_config(None, None, None, Some(&bad)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("predictions.recommendations: ")
                && text.contains("bad.toml")
                && text.contains("segments.Insensitive.strategy"),
            "{text}"
        );
        let good = dir.path().join("good.toml");
        std::fs::write(&good, lifetime::recommend::DEFAULT_TABLE_TOML).unwrap();
        assert!(PredictionSettings::from_config(None, None, None, Some(&good)).is_ok());
    }

    #[test]
    fn clv_confidence_is_bounded_and_one_for_a_point() {
        assert_eq!(clv_confidence(100.0, 100.0, 100.0), 1.0);
        assert_eq!(clv_confidence(100.0, 80.0, 120.0), 0.8);
        assert_eq!(clv_confidence(100.0, 0.0, 400.0), 0.0);
        assert_eq!(clv_confidence(0.0, 0.0, 1.0), 0.0);
        assert_eq!(clv_confidence(f64::NAN, 0.0, 1.0), 0.0);
    }

    #[test]
    fn days_and_segments_read_back() {
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(86_400_000), 1);
        assert_eq!(day_text(20_089), "2025-01-01");
        assert_eq!(
            parse_segment("Highly_Sensitive"),
            weber::SensitivitySegment::HighlySensitive
        );
        assert_eq!(
            parse_segment("nonsense"),
            weber::SensitivitySegment::Insensitive
        );
    }
}
