//! Analog-ensemble forecasts (seed 001): `GET /forecast` (the seed's path) and
//! `GET /api/v1/forecast`, plus diagnostics and the model's catalogue. Read scope. The model is
//! the same for every tenant (it is built from public station data), so no tenant key is needed
//! in the cache; the key still authenticates the caller and carries the tenant into metrics.

use analog::forecast::{Horizon, Variable};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiQuery, Auth};
use crate::forecasts::{self, Diagnostics, RequestText, MODES};
use crate::problem::ApiError;
use crate::state::AppState;

/// Query parameters of a forecast. Everything arrives as text so each error can name its
/// parameter precisely.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ForecastQuery {
    /// Station code (`EWR`, `JFK`, `LGA` in the demo model).
    #[param(required = true, pattern = "\\S")]
    station: Option<String>,
    /// `6h`, `12h`, `24h` or `48h`.
    #[param(required = true, pattern = "^(6h|12h|24h|48h)$")]
    horizon: Option<String>,
    /// Comma-separated variables: `t2m`, `dewpoint`, `humidity`, `u10`, `v10`, `msl`, `precip`
    /// [default: t2m,u10,v10,msl,precip].
    #[param(
        pattern = "^(t2m|dewpoint|humidity|u10|v10|msl|precip)(,(t2m|dewpoint|humidity|u10|v10|msl|precip))*$"
    )]
    vars: Option<String>,
    /// Ensemble size, 1 to 100; or give `mode` (not both: 422).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    k: Option<String>,
    /// `fast` (k = 5), `default` (10) or `accurate` (20).
    #[param(pattern = "^(fast|default|accurate)$")]
    mode: Option<String>,
    /// Issue time: RFC 3339 on the hour (`2013-11-05T06:00:00Z`), or a date for its midnight
    /// UTC [default: the station's latest available time].
    #[param(
        pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):00:00Z)?$"
    )]
    at: Option<String>,
    /// `seed` (L2 over the standardised state vector, through the index) or `anen` (Delle
    /// Monache et al. 2013, per-predictor distances) [default: anen].
    #[param(pattern = "^(seed|anen)$")]
    similarity: Option<String>,
}

impl ForecastQuery {
    fn as_text(&self) -> RequestText<'_> {
        RequestText {
            station: self.station.as_deref(),
            horizon: self.horizon.as_deref(),
            vars: self.vars.as_deref(),
            k: self.k.as_deref(),
            mode: self.mode.as_deref(),
            at: self.at.as_deref(),
            similarity: self.similarity.as_deref(),
        }
    }
}

/// A bounded metric label per horizon.
fn horizon_label(h: Horizon) -> &'static str {
    match h {
        Horizon::H6 => "6h",
        Horizon::H12 => "12h",
        Horizon::H24 => "24h",
        Horizon::H48 => "48h",
    }
}

fn wants_fresh(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}

async fn answer(
    state: AppState,
    auth: Auth,
    headers: HeaderMap,
    query: ForecastQuery,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let service = forecasts::service(&state)?;
    let request = service.parse_request(&query.as_text())?;
    let answer = service
        .answer(&request, wants_fresh(&headers))
        .map_err(forecasts::problem)?;
    let horizon = horizon_label(request.horizon);
    let metrics = state.metrics().forecast();
    metrics.answered(horizon, answer.outcome.as_str());
    if let Some(took) = answer.computed_in {
        metrics.searched(horizon, took);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("x-cache"),
                HeaderValue::from_static(answer.outcome.as_str()),
            ),
        ],
        answer.body,
    )
        .into_response())
}

/// One ensemble forecast (read scope); seed 001's path. Same as `/api/v1/forecast`.
#[utoipa::path(get, path = "/forecast", tag = "forecast", security(("api_key" = [])),
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast; header `X-Cache: hit|miss|bypass`", body = ForecastSchema),
        (status = 400, description = "A bad horizon, variable, k, mode, similarity or time format; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "Unknown station, or no state at `at` (outside the data or in a gap)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Both `k` and `mode` given", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 501, description = "The server has no forecast model (`forecast_model_missing`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn forecast_seed(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ForecastQuery>,
) -> Result<Response, ApiError> {
    answer(state, auth, headers, query).await
}

/// One ensemble forecast (read scope): the k nearest historical analogs of the station's state
/// at `at`, and what followed them `horizon` later. Answers are cached per parameters and model
/// version; `Cache-Control: no-cache` asks for a fresh computation.
#[utoipa::path(get, path = "/api/v1/forecast", tag = "forecast", security(("api_key" = [])),
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast; header `X-Cache: hit|miss|bypass`", body = ForecastSchema),
        (status = 400, description = "A bad horizon, variable, k, mode, similarity or time format; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "Unknown station, or no state at `at` (outside the data or in a gap)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Both `k` and `mode` given", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 501, description = "The server has no forecast model (`forecast_model_missing`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn forecast(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ForecastQuery>,
) -> Result<Response, ApiError> {
    answer(state, auth, headers, query).await
}

/// Search-latency statistics per horizon with seed 001's A-F grade, and the cache's counters
/// (read scope).
#[utoipa::path(get, path = "/api/v1/forecast/diagnostics", tag = "forecast", security(("api_key" = [])),
    responses(
        (status = 200, body = Diagnostics),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 501, description = "The server has no forecast model (`forecast_model_missing`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn diagnostics(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<Diagnostics>, ApiError> {
    auth.require(Scope::Read)?;
    Ok(axum::Json(forecasts::service(&state)?.diagnostics()))
}

/// A station the model can forecast for.
#[derive(Serialize, ToSchema)]
pub(crate) struct StationInfo {
    station: String,
    /// First issue time with a complete state (RFC 3339).
    first_issue: String,
    /// Latest issue time with a complete state: the default `at`.
    latest_issue: String,
}

/// What the loaded model can answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Catalogue {
    model_version: String,
    stations: Vec<StationInfo>,
    horizons: Vec<String>,
    variables: Vec<VariableInfo>,
    max_k: usize,
    modes: Vec<ModeInfo>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VariableInfo {
    name: String,
    unit: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ModeInfo {
    mode: &'static str,
    k: usize,
}

/// The stations, time ranges, horizons and variables the loaded model serves (read scope).
#[utoipa::path(get, path = "/api/v1/forecast/catalogue", tag = "forecast", security(("api_key" = [])),
    responses(
        (status = 200, body = Catalogue),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 501, description = "The server has no forecast model (`forecast_model_missing`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn catalogue(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<Catalogue>, ApiError> {
    auth.require(Scope::Read)?;
    let service = forecasts::service(&state)?;
    let model = service.model();
    let stations = model
        .stations()
        .into_iter()
        .filter_map(|s| {
            let (first, latest) = model.issue_range(s)?;
            Some(StationInfo {
                station: s.to_owned(),
                first_issue: crate::rfc3339_ms(first * 1000),
                latest_issue: crate::rfc3339_ms(latest * 1000),
            })
        })
        .collect();
    Ok(axum::Json(Catalogue {
        model_version: service.version().to_owned(),
        stations,
        horizons: Horizon::ALL.iter().map(ToString::to_string).collect(),
        variables: Variable::ALL
            .iter()
            .map(|v| VariableInfo {
                name: v.to_string(),
                unit: v.unit().to_owned(),
            })
            .collect(),
        max_k: model.max_k(),
        modes: MODES
            .iter()
            .map(|&(mode, k)| ModeInfo { mode, k })
            .collect(),
    }))
}

/// The forecast document (see docs/forecast.md for every field).
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only: the body is the model's own serialisation.
pub(crate) struct ForecastSchema {
    station: String,
    /// Issue time (RFC 3339).
    issued_at: String,
    /// issued_at + horizon (RFC 3339).
    valid_at: String,
    horizon: String,
    k: usize,
    similarity: String,
    /// How analogs became members: `delta` (the analog's change over the horizon added to the
    /// value now) or `absolute` (the analog's later value).
    member_kind: String,
    /// Per variable: name, unit, mean, median, p10, p90, spread, members, observed (the value
    /// at valid_at when the data holds it).
    variables: Vec<serde_json::Value>,
    /// The analogs: their issue times and distances, nearest first.
    analogs: Vec<serde_json::Value>,
    /// Version of the model that answered.
    model_version: String,
}
