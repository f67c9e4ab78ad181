//! Weber predictions over HTTP: purchases in (`POST /api/v1/transactions`), CLV, churn and
//! recommendations out, the current model and its refit. The handlers only translate; the use
//! cases live in `crate::predictions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{body_error, ApiJson, ApiQuery, Auth};
use crate::ingest::{BodyError, MAX_EVENTS_PER_REQUEST};
use crate::predictions::transactions::{self, TransactionIngestError, TransactionReport};
use crate::predictions::{
    ChurnPrediction, ClvPrediction, ModelInfo, PredictionReadError, PredictionService,
    RecommendationAnswer,
};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;
use crate::weber_reads::check_user_id;

/// Ingests purchases (write scope): a JSON array (`application/json`) or NDJSON
/// (`application/x-ndjson`), at most 10,000 per request. Each purchase is `{order_id,
/// customer_id, occurred_at (RFC 3339 or epoch ms), amount, currency?}`: `amount` is the order's
/// net value, a number from 0 (a free order is a purchase) to 1e12 (negative amounts are
/// rejected: send refunds as the net amount); `occurred_at` at most 5 minutes in the future;
/// `currency` an ISO 4217 code (predictions assume one currency per tenant). Bad purchases are
/// rejected one by one (index, field, reason) and the rest are accepted. An order is stored
/// once: the same `order_id` with the same values is a duplicate and changes nothing; with
/// different values it is rejected (`field: order_id`) and the stored order stays.
#[utoipa::path(post, path = "/api/v1/transactions", tag = "weber", security(("api_key" = [])),
    request_body(content = Vec<Object>, description = "Purchases as a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, description = "At least one purchase accepted (or none sent); rejected ones listed", body = TransactionReport),
        (status = 400, description = "The body is not a JSON array / NDJSON", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "Body over the size limit or more than 10,000 purchases", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every purchase was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ingest_transactions(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<TransactionReport>, ApiError> {
    auth.require(Scope::Write)?;
    let framing = crate::extract::batch_framing(&headers, "purchases")?;
    let body = body.map_err(body_error)?;
    let now_ms = crate::profiles::now_us() / 1000;
    match transactions::ingest(&state, auth.tenant_id(), &body, framing, now_ms).await {
        Ok(report) => Ok(axum::Json(report)),
        Err(TransactionIngestError::Body(e)) => Err(match e {
            BodyError::Malformed(detail) => ApiError::new(
                ProblemKind::MalformedJson,
                detail.replace("events", "purchases"),
            ),
            BodyError::Duplicate(path) => crate::extract::duplicate_field(&path),
            BodyError::TooMany(n) => ApiError::new(
                ProblemKind::PayloadTooLarge,
                format!(
                    "{n} purchases in one request; send at most {MAX_EVENTS_PER_REQUEST} per \
                     request"
                ),
            )
            .with("max_events", MAX_EVENTS_PER_REQUEST),
        }),
        Err(TransactionIngestError::AllRejected(rejected)) => {
            let listed = serde_json::to_value(&rejected).unwrap_or_default();
            Err(ApiError::new(
                ProblemKind::Unprocessable,
                format!(
                    "all {} purchases were rejected; see `rejected`",
                    rejected.len()
                ),
            )
            .with("accepted", 0)
            .with("rejected", listed))
        }
        Err(TransactionIngestError::Store(e)) => Err(e.into()),
    }
}

// ---- predictions ----------------------------------------------------------------------------

/// The problem for a read that found nothing (404 naming why in `reason`), or the store's.
fn read_error(e: PredictionReadError) -> ApiError {
    match e {
        PredictionReadError::NotFound(missing) => {
            ApiError::not_found(missing.to_string()).with("reason", missing.code())
        }
        PredictionReadError::Store(e) => e.into(),
        PredictionReadError::CorruptModel { version, reason } => {
            tracing::error!(version, reason, "a stored prediction model cannot be read");
            ApiError::internal()
        }
    }
}

/// One customer's predicted lifetime value (read scope): seed 000's CLVPredictionResponse
/// (`predicted_clv`, `confidence_interval`, `weber_features_importance`, `model_version`,
/// `prediction_date`) plus what it rests on. CLV is discounted over `horizon_months` (12 by
/// default, 1% a month) in the currency of the tenant's amounts; the interval is the delta
/// method's 95% interval on the fitted parameters (parameter uncertainty only).
/// `weber_features_importance` are the Weber-enhanced churn model's standardised coefficient
/// shares (empty until the tenant's history allows that model). 404 (`reason`:
/// `no_purchases`, `not_fitted`, `not_scored_yet`) when there is no prediction.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/clv-prediction", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The customer's id (the purchases' customer_id)")),
    responses(
        (status = 200, body = ClvPrediction),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No prediction for this customer; `reason` says why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn clv_prediction(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<ClvPrediction>, ApiError> {
    auth.require(Scope::Read)?;
    check_user_id("user_id", &user_id)?;
    let answer = state
        .predictions()
        .clv(&state, auth.tenant_id(), &user_id)
        .await;
    state.metrics().predictions().read("clv", answer.is_ok());
    answer.map(axum::Json).map_err(read_error)
}

/// One customer's churn risk (read scope): seed 000's ChurnPredictionResponse plus the model
/// version. The risk is the probability of no purchase within `prediction_horizon_days` (30 by
/// default): from the Weber-enhanced logistic model (`model: weber_enhanced`) when the tenant's
/// history trained one, else from purchase timing alone (BG/NBD, `model: timing`).
/// `key_risk_factors` come from the fitted model (contribution to the risk's log-odds, or to
/// the probability for the timing model); levels: low < 0.3 <= medium < 0.6 <= high.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/churn-prediction", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The customer's id (the purchases' customer_id)")),
    responses(
        (status = 200, body = ChurnPrediction),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No prediction for this customer; `reason` says why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn churn_prediction(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<ChurnPrediction>, ApiError> {
    auth.require(Scope::Read)?;
    check_user_id("user_id", &user_id)?;
    let answer = state
        .predictions()
        .churn(&state, auth.tenant_id(), &user_id)
        .await;
    state.metrics().predictions().read("churn", answer.is_ok());
    answer.map(axum::Json).map_err(read_error)
}

/// Seed 000's RecommendationRequest, as query parameters (GET) or a JSON body (POST).
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecommendationRequest {
    /// The customer's id.
    #[param(pattern = "^[^\\x00]{1,256}$")]
    #[schema(pattern = "^[^\\x00]{1,256}$")]
    user_id: String,
    /// Accepted for the seed's shape; not used (recommendations follow the segment and the
    /// churn risk).
    #[serde(default)]
    #[allow(dead_code)]
    // Only in the POST body: as a query parameter a free-form object would spread over
    // arbitrary keys.
    #[param(ignore)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Value>,
    /// 1 to 50 [default: 10].
    #[param(minimum = 1, maximum = 50)]
    #[schema(minimum = 1, maximum = 50)]
    max_recommendations: Option<u32>,
    /// Whether each recommendation says why [default: true].
    include_rationale: Option<bool>,
}

async fn recommend(
    state: &AppState,
    auth: &Auth,
    request: RecommendationRequest,
) -> Result<axum::Json<RecommendationAnswer>, ApiError> {
    auth.require(Scope::Read)?;
    check_user_id("user_id", &request.user_id)?;
    let max = request.max_recommendations.unwrap_or(10);
    if !(1..=50).contains(&max) {
        return Err(ApiError::invalid_parameter(
            "max_recommendations",
            format!("max_recommendations must be 1 to 50, got {max}"),
        ));
    }
    let answer = PredictionService::recommendations(
        state,
        auth.tenant_id(),
        &request.user_id,
        max as usize,
        request.include_rationale.unwrap_or(true),
    )
    .await;
    state
        .metrics()
        .predictions()
        .read("recommendations", answer.is_ok());
    answer.map(axum::Json).map_err(read_error)
}

/// Weber-enhanced recommendations for one customer (read scope): seed 000's
/// RecommendationResponse. The plan of the customer's sensitivity segment (a configurable
/// table: Highly_Sensitive -> `stability_reassurance`, Moderately_Sensitive ->
/// `value_messaging`, Low_Sensitive -> `balanced_engagement`, Insensitive -> `premium_upsell`),
/// preceded by the churn interventions when the customer's prediction is at medium or high
/// risk. `confidence_score` is the Weber profile's calculation confidence. 404 (`reason`:
/// `no_weber_profile`) without a profile, as in the seed.
#[utoipa::path(get, path = "/api/v1/recommendations/weber-enhanced", tag = "weber", security(("api_key" = [])),
    params(RecommendationRequest),
    responses(
        (status = 200, body = RecommendationAnswer),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "The customer has no Weber profile", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn recommendations(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(request): ApiQuery<RecommendationRequest>,
) -> Result<axum::Json<RecommendationAnswer>, ApiError> {
    recommend(&state, &auth, request).await
}

/// The same as the GET, with seed 000's RecommendationRequest as a JSON body (the seed declares
/// a GET with a body, which common HTTP clients and proxies do not send: a documented
/// deviation).
#[utoipa::path(post, path = "/api/v1/recommendations/weber-enhanced", tag = "weber", security(("api_key" = [])),
    request_body = RecommendationRequest,
    responses(
        (status = 200, body = RecommendationAnswer),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "The customer has no Weber profile", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn recommendations_post(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<RecommendationRequest>,
) -> Result<axum::Json<RecommendationAnswer>, ApiError> {
    recommend(&state, &auth, request).await
}

/// The tenant's current lifetime model (read scope): version, fit time, parameters,
/// log-likelihoods and the holdout evaluation (purchases MAE, weekly tracking, churn AUC of the
/// timing-only and the Weber-enhanced model). 404 (`reason`: `not_fitted`) before the first fit.
#[utoipa::path(get, path = "/api/v1/predictions/model", tag = "weber", security(("api_key" = [])),
    responses(
        (status = 200, body = ModelInfo),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No model fitted yet", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn current_model(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<ModelInfo>, ApiError> {
    auth.require(Scope::Read)?;
    let answer = PredictionService::model(&state, auth.tenant_id()).await;
    state.metrics().predictions().read("model", answer.is_ok());
    answer.map(axum::Json).map_err(read_error)
}

/// Refits the tenant's lifetime models now, as a `weber.refit_predictions` job (admin scope;
/// the job also runs daily per tenant). Answers 202 with the job; its result names the new
/// model version, or why the history cannot support a fit yet.
#[utoipa::path(post, path = "/api/v1/predictions/refit", tag = "weber", security(("api_key" = [])),
    responses(
        (status = 202, description = "Enqueued (a `weber.refit_predictions` job)", body = crate::JobView, headers(("location" = String, description = "The job's URL"))),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn refit(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::response::Response, ApiError> {
    auth.require(Scope::Admin)?;
    let request = crate::jobs::EnqueueRequest {
        handler: crate::jobs::WEBER_REFIT_PREDICTIONS.to_owned(),
        payload: serde_json::json!({}),
        ..crate::jobs::EnqueueRequest::default()
    };
    let enqueued = state
        .jobs()
        .enqueue(auth.tenant_id(), &request, crate::jobs::now_ms())
        .await
        .map_err(super::jobs::job_error)?;
    Ok(super::jobs::enqueued_response(enqueued))
}
