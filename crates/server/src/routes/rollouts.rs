//! `/api/v1/flags/{key}/rollout`: a flag's guarded rollout in one environment (`?environment=`
//! or `X-Environment`, default `production`). Reads need the read scope, changes admin. The
//! use cases are [`crate::rollouts::RolloutService`]'s; the actions are sub-resources like the
//! flag's `/kill`.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;
use store::{RolloutKey, Scope};
use utoipa::ToSchema;

use crate::extract::{ApiJson, Auth, FlagEnvironment};
use crate::problem::ApiError;
use crate::rollouts::{RolloutService, RolloutView};
use crate::state::AppState;
use flags::guard::ManualEvent;

/// One guardrail of a plan. In the schema each kind is its own closed object (an untagged
/// `oneOf`), so that unknown members are schema-invalid as the server treats them; the server
/// parses the plan with `flags::guard`'s types.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutGuardrail)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum GuardrailSchema {
    Experiment(ExperimentGuardrailSchema),
    ErrorRate(ErrorRateGuardrailSchema),
    LatencyP99Ms(LatencyGuardrailSchema),
}

/// Breached when any guardrail metric of the experiment's results fails.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutExperimentGuardrail)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ExperimentGuardrailSchema {
    kind: ExperimentKind,
    /// The experiment's key (the tenant must have it).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    experiment: String,
}

/// Breached when the period's share of 5xx answers is above `max`.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutErrorRateGuardrail)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ErrorRateGuardrailSchema {
    kind: ErrorRateKind,
    #[schema(minimum = 0, maximum = 1)]
    max: f64,
    /// Fewest requests in a period to judge it [default: 20].
    #[schema(minimum = 0, nullable = false)]
    min_requests: Option<u64>,
}

/// Breached when the period's p99 request latency is above `max` milliseconds.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutLatencyGuardrail)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct LatencyGuardrailSchema {
    kind: LatencyKind,
    #[schema(minimum = 0, maximum = 3_600_000)]
    max: f64,
    /// Fewest requests in a period to judge it [default: 20].
    #[schema(minimum = 0, nullable = false)]
    min_requests: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ExperimentKind {
    Experiment,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ErrorRateKind {
    ErrorRate,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum LatencyKind {
    LatencyP99Ms,
}

/// How steps advance.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutMode)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ModeSchema {
    Scheduled,
    Manual,
}

/// What a breach does.
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutOnBreach)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum OnBreachSchema {
    Rollback,
    Kill,
}

/// A guarded rollout plan (docs/flags.md, "Guarded rollouts").
#[derive(Deserialize, ToSchema)]
#[schema(as = RolloutPlan)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct PlanSchema {
    /// The rollout at each step, basis points, strictly increasing.
    #[schema(min_items = 1, max_items = 20, value_type = Vec<u32>)]
    steps: Vec<u32>,
    mode: ModeSchema,
    /// How long each step must stay healthy before it advances (scheduled mode; required
    /// there), seconds; not shorter than the evaluation period.
    #[schema(minimum = 10, maximum = 604_800, nullable = false)]
    step_seconds: Option<u32>,
    /// How often the guardrails are checked, seconds.
    #[schema(minimum = 10, maximum = 604_800)]
    evaluation_period_seconds: u32,
    /// What is watched (at most 10) [default: none].
    #[schema(max_items = 10, nullable = false)]
    guardrails: Option<Vec<GuardrailSchema>>,
    on_breach: OnBreachSchema,
}

const CONFLICT: &str = "The ramp is not in a status this step applies to, or changed meanwhile";

fn key_of<'a>(auth: &'a Auth, environment: &'a str, flag_key: &'a str) -> RolloutKey<'a> {
    RolloutKey {
        tenant_id: auth.tenant_id(),
        environment,
        flag_key,
    }
}

/// Writes the flag's guarded rollout plan and starts its ramp at the first step (admin
/// scope): the flag's rollout is set to the first step and the guardrails are checked every
/// evaluation period. Replaces a stopped ramp; refused while one is active.
#[utoipa::path(put, path = "/api/v1/flags/{key}/rollout", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    request_body = PlanSchema,
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "Malformed body or a field of the wrong type (`field` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "A ramp of the flag is active, or the flag is killed or has a schedule ramp", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The plan breaks the rules (steps not increasing, step_seconds shorter than the period, an unknown experiment; `field` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_rollout(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<RolloutView>, ApiError> {
    auth.require(Scope::Admin)?;
    let view = RolloutService
        .put_plan(
            &state,
            key_of(&auth, &environment, &key),
            &auth.0.key_id,
            body,
            crate::jobs::now_ms(),
        )
        .await?;
    Ok(axum::Json(view))
}

/// The flag's guarded rollout: plan, current step, last safe step, last check with its
/// figures, and every action with its reason (read scope).
#[utoipa::path(get, path = "/api/v1/flags/{key}/rollout", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No guarded rollout of this flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_rollout(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
) -> Result<axum::Json<RolloutView>, ApiError> {
    auth.require(Scope::Read)?;
    Ok(axum::Json(
        RolloutService
            .get(&state, key_of(&auth, &environment, &key))
            .await?,
    ))
}

async fn step(
    state: AppState,
    auth: Auth,
    environment: String,
    key: String,
    event: ManualEvent,
) -> Result<axum::Json<RolloutView>, ApiError> {
    auth.require(Scope::Admin)?;
    let view = RolloutService
        .manual(
            &state,
            key_of(&auth, &environment, &key),
            &auth.0.key_id,
            event,
            crate::jobs::now_ms(),
        )
        .await?;
    Ok(axum::Json(view))
}

/// Passes the current step now (admin scope): the next step starts (or the ramp completes
/// after the last); on a rolled-back ramp, resumes from the step after the last safe one.
#[utoipa::path(post, path = "/api/v1/flags/{key}/rollout/advance", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No guarded rollout of this flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn advance_rollout(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
) -> Result<axum::Json<RolloutView>, ApiError> {
    step(state, auth, environment, key, ManualEvent::Advance).await
}

/// Rolls an active ramp back by hand (admin scope): the rollout returns to the last step that
/// passed (0 when none did) and the ramp stops.
#[utoipa::path(post, path = "/api/v1/flags/{key}/rollout/rollback", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No guarded rollout of this flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn rollback_rollout(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
) -> Result<axum::Json<RolloutView>, ApiError> {
    step(state, auth, environment, key, ManualEvent::Rollback).await
}

/// Stops an active or rolled-back ramp (admin scope): the flag's rollout returns to 0.
#[utoipa::path(post, path = "/api/v1/flags/{key}/rollout/abort", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No guarded rollout of this flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = CONFLICT, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn abort_rollout(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
) -> Result<axum::Json<RolloutView>, ApiError> {
    step(state, auth, environment, key, ManualEvent::Abort).await
}
