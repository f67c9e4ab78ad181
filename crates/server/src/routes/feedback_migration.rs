//! `/api/v1/feedback/migration`: the staged traffic shift from a legacy feedback system (admin
//! scope). The use cases are [`crate::feedback::migration::MigrationService`]'s.

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use store::Scope;
use utoipa::ToSchema;

use crate::extract::{ApiJson, Auth};
use crate::feedback::migration::{MigrationService, MigrationView};
use crate::problem::ApiError;
use crate::state::AppState;
use feedback::migration::Event;

/// When a stage's monitoring window counts as unhealthy (a threshold is crossed when the
/// window's figure is above it). Each field defaults: error share 0.01, dead letters 0, p99
/// 5000 ms, 100 items.
#[derive(Deserialize, ToSchema)]
#[schema(as = MigrationThresholds)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ThresholdsSchema {
    /// Most share of the window's items whose processing failed.
    #[schema(minimum = 0, maximum = 1, nullable = false)]
    max_error_share: Option<f64>,
    /// Most dead `feedback.forward_legacy` jobs (dual-write dead letters) in the window.
    #[schema(minimum = 0, maximum = 1_000_000_000, nullable = false)]
    max_dead_letters: Option<u64>,
    /// Most p99 of accept → processed latency, ms.
    #[schema(minimum = 0, maximum = 86_400_000, nullable = false)]
    max_p99_processing_ms: Option<u64>,
    /// Fewest items to judge the error share and the p99; below it the window is inconclusive
    /// and restarts.
    #[schema(minimum = 0, maximum = 1_000_000_000, nullable = false)]
    min_items: Option<u64>,
}

/// One stage of a plan.
#[derive(Deserialize, ToSchema)]
#[schema(as = MigrationStage)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct StageSchema {
    /// Unique in the plan.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
    /// Share of routing keys sent to the new system, percent; not below the previous stage's.
    #[schema(minimum = 0, maximum = 100)]
    new_percent: u8,
    /// How long the stage is watched before it is judged, seconds.
    #[schema(minimum = 10, maximum = 604_800)]
    monitoring_seconds: u32,
    /// [default: error share 0.01, no dead letters, p99 5000 ms, 100 items]
    #[schema(nullable = false)]
    thresholds: Option<ThresholdsSchema>,
}

/// A traffic-shift plan.
#[derive(Deserialize, ToSchema)]
#[schema(as = MigrationPlan)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct PlanSchema {
    /// The flag that routes traffic [default: `feedback-migration`]; created when missing.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", max_length = 64)]
    flag_key: Option<String>,
    /// The flag environment [default: `production`].
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", max_length = 64)]
    environment: Option<String>,
    /// 1 to 20 stages, shares non-decreasing.
    #[schema(min_items = 1, max_items = 20)]
    stages: Vec<StageSchema>,
}

const CONFLICT: &str = "The plan is not in a status this step applies to, or changed meanwhile";

/// Writes the tenant's traffic-shift plan (admin scope), replacing a finished or pending one
/// (refused while one runs). Creates the flag (`feedback-migration` unless named) with
/// variants `legacy` / `new`, default `legacy`, rollout 0, or checks that the existing flag
/// can carry the plan.
#[utoipa::path(put, path = "/api/v1/feedback/migration", tag = "feedback", security(("api_key" = [])),
    request_body = PlanSchema,
    responses(
        (status = 200, body = MigrationView),
        (status = 400, description = "Malformed body or a field out of bounds (`field` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "A plan is running, or the existing flag cannot carry the plan", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The stages break the plan's rules (a repeated name, a falling share; `field` names it), the flag's environment is full or the flag does not validate", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_plan(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<MigrationView>, ApiError> {
    auth.require(Scope::Admin)?;
    let view = MigrationService
        .put_plan(
            &state,
            auth.tenant_id(),
            &auth.0.key_id,
            body,
            crate::jobs::now_ms(),
        )
        .await?;
    Ok(axum::Json(view))
}

/// The tenant's traffic-shift plan, where it is, and its history (admin scope).
#[utoipa::path(get, path = "/api/v1/feedback/migration", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No plan written", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_plan(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<MigrationView>, ApiError> {
    auth.require(Scope::Admin)?;
    Ok(axum::Json(
        MigrationService.get(&state, auth.tenant_id()).await?,
    ))
}

async fn step(
    state: AppState,
    auth: Auth,
    event: Event,
) -> Result<axum::Json<MigrationView>, ApiError> {
    auth.require(Scope::Admin)?;
    let view = MigrationService
        .manual(
            &state,
            auth.tenant_id(),
            &auth.0.key_id,
            event,
            crate::jobs::now_ms(),
        )
        .await?;
    Ok(axum::Json(view))
}

/// Starts a pending plan (admin scope): the first stage's share goes to `new` and its window
/// is judged when it ends.
#[utoipa::path(post, path = "/api/v1/feedback/migration:start", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No plan written", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn start(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<MigrationView>, ApiError> {
    step(state, auth, Event::Start).await
}

/// Passes the live stage by hand without waiting for its window (admin scope): the next
/// stage starts, or the plan completes after the last.
#[utoipa::path(post, path = "/api/v1/feedback/migration:advance", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No plan written", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn advance(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<MigrationView>, ApiError> {
    step(state, auth, Event::Advance).await
}

/// Rolls a running plan back by hand (admin scope): the share returns to the last stage that
/// passed (0 when none did).
#[utoipa::path(post, path = "/api/v1/feedback/migration:rollback", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No plan written", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<MigrationView>, ApiError> {
    step(state, auth, Event::Rollback).await
}

/// Aborts a pending or running plan (admin scope): all traffic returns to legacy (share 0).
#[utoipa::path(post, path = "/api/v1/feedback/migration:abort", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = MigrationView),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No plan written", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn abort(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<MigrationView>, ApiError> {
    step(state, auth, Event::Abort).await
}
