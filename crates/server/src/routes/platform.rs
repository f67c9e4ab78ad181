//! Health, readiness, metrics and the API description: routes with no tenant.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, ProblemKind};
use crate::readiness::Components;
use crate::state::AppState;

/// Seed 000's health shape.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthResponse {
    /// `healthy` when every configured dependency answers, else `degraded`.
    status: &'static str,
    /// RFC 3339, UTC.
    timestamp: String,
    version: &'static str,
    components: Components,
    performance_metrics: PerformanceMetrics,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PerformanceMetrics {
    uptime_seconds: f64,
    requests_total: u64,
    errors_total: u64,
    requests_in_flight: i64,
}

/// Readiness answer when everything is up.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReadyResponse {
    /// Always `ready` (a dependency that is down gives a 503 problem instead).
    status: &'static str,
    components: Components,
}

async fn health_body(state: &AppState) -> HealthResponse {
    let components = state.inner.readiness.check(state.store()).await;
    let summary = state.metrics().summary();
    HealthResponse {
        status: if components.all_up() {
            "healthy"
        } else {
            "degraded"
        },
        timestamp: crate::rfc3339_now(),
        version: env!("CARGO_PKG_VERSION"),
        components,
        performance_metrics: PerformanceMetrics {
            uptime_seconds: summary.uptime_seconds,
            requests_total: summary.requests_total,
            errors_total: summary.errors_total,
            requests_in_flight: summary.requests_in_flight,
        },
    }
}

/// Liveness: always 200 while the process serves; `status` tells whether dependencies are up.
#[utoipa::path(get, path = "/health", tag = "platform",
    responses((status = 200, description = "The process is alive", body = HealthResponse)))]
pub(crate) async fn health(State(state): State<AppState>) -> axum::Json<HealthResponse> {
    axum::Json(health_body(&state).await)
}

/// Liveness under the versioned API prefix (seed 000's path); same answer as `/health`.
#[utoipa::path(get, path = "/api/v1/health", tag = "platform",
    responses((status = 200, description = "The process is alive", body = HealthResponse)))]
pub(crate) async fn health_v1(State(state): State<AppState>) -> axum::Json<HealthResponse> {
    axum::Json(health_body(&state).await)
}

/// Readiness: 200 when storage and every configured dependency (Redis, NATS) answer, else 503.
#[utoipa::path(get, path = "/ready", tag = "platform",
    responses(
        (status = 200, description = "Ready to serve", body = ReadyResponse),
        (status = 503, description = "A dependency is down; `components` says which",
            content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ready(
    State(state): State<AppState>,
) -> Result<axum::Json<ReadyResponse>, ApiError> {
    let components = state.inner.readiness.check(state.store()).await;
    if components.all_up() {
        return Ok(axum::Json(ReadyResponse {
            status: "ready",
            components,
        }));
    }
    let down: Vec<&str> = [
        ("storage", &components.storage),
        ("redis", &components.redis),
        ("nats", &components.nats),
    ]
    .into_iter()
    .filter(|(_, c)| c.is_down())
    .map(|(name, _)| name)
    .collect();
    let detail = format!("not ready: {} down", down.join(", "));
    let components = serde_json::to_value(&components).unwrap_or_default();
    Err(ApiError::new(ProblemKind::Unavailable, detail).with("components", components))
}

/// Prometheus exposition of every metric: OpenMetrics 1.0.0 when `Accept` asks for
/// `application/openmetrics-text`, else the Prometheus text format 0.0.4. With a scrape token
/// configured (`--metrics-token`), only `Authorization: Bearer <token>` is answered.
#[utoipa::path(get, path = "/metrics", tag = "platform",
    responses(
        (status = 200, description = "The metrics, in the format `Accept` asked for",
            content(
                (String = "text/plain; version=0.0.4"),
                (String = "application/openmetrics-text; version=1.0.0"),
            )),
        (status = 401, description = "A scrape token is configured and was not presented",
            content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.config().metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
            });
        if !presented.is_some_and(|t| token.matches(t)) {
            return Err(ApiError::unauthorized(
                "this endpoint needs the metrics scrape token: Authorization: Bearer <token>",
            ));
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = telemetry::Format::negotiate(accept);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept, Authorization"),
        ],
        state.metrics().encode_as(format),
    )
        .into_response())
}

/// This API's OpenAPI 3.1 description, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "platform",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Always set by `app()`; a state used without it is a bug, answered as one.
    let document = state
        .inner
        .openapi_json
        .get()
        .cloned()
        .ok_or_else(ApiError::internal)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        document,
    )
        .into_response())
}
