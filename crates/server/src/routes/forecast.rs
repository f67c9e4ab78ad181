//! Analog-ensemble forecasts (seed 001): `GET /forecast` (the seed's path) and
//! `GET /api/v1/forecast` (one horizon or several), `POST /api/v1/forecast/batch`, plus
//! diagnostics and the model's catalogue. Read scope. The model is
//! the same for every tenant (it is built from public station data), so no tenant key is needed
//! in the cache; the key still authenticates the caller and carries the tenant into metrics.

use std::time::Instant;

use analog::forecast::{ForecastRequest, Horizon, Variable};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::context::RequestContext;
use crate::extract::{parse_json, require_json, ApiQuery, Auth};
use crate::forecast_diagnostics::search_status;
use crate::forecasts::{self, Diagnostics, ForecastService, RequestText, MODES};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// Query parameters of a forecast. Everything arrives as text so each error can name its
/// parameter precisely.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ForecastQuery {
    /// Station code (`EWR`, `JFK`, `LGA` in the demo model).
    #[param(required = true, pattern = "\\S")]
    station: Option<String>,
    /// `6h`, `12h`, `24h` or `48h`, or up to four of them separated by commas, none twice
    /// (`6h,24h`: one forecast per horizon, in this order) [default: 24h].
    #[param(
        pattern = "^(6h|12h|24h|48h|6h,12h|6h,24h|6h,48h|12h,6h|12h,24h|12h,48h|24h,6h|24h,12h|24h,48h|48h,6h|48h,12h|48h,24h|6h,12h,24h|6h,12h,48h|6h,24h,12h|6h,24h,48h|6h,48h,12h|6h,48h,24h|12h,6h,24h|12h,6h,48h|12h,24h,6h|12h,24h,48h|12h,48h,6h|12h,48h,24h|24h,6h,12h|24h,6h,48h|24h,12h,6h|24h,12h,48h|24h,48h,6h|24h,48h,12h|48h,6h,12h|48h,6h,24h|48h,12h,6h|48h,12h,24h|48h,24h,6h|48h,24h,12h|6h,12h,24h,48h|6h,12h,48h,24h|6h,24h,12h,48h|6h,24h,48h,12h|6h,48h,12h,24h|6h,48h,24h,12h|12h,6h,24h,48h|12h,6h,48h,24h|12h,24h,6h,48h|12h,24h,48h,6h|12h,48h,6h,24h|12h,48h,24h,6h|24h,6h,12h,48h|24h,6h,48h,12h|24h,12h,6h,48h|24h,12h,48h,6h|24h,48h,6h,12h|24h,48h,12h,6h|48h,6h,12h,24h|48h,6h,24h,12h|48h,12h,6h,24h|48h,12h,24h,6h|48h,24h,6h,12h|48h,24h,12h,6h)$"
    )]
    horizon: Option<String>,
    /// Comma-separated variables: `t2m`, `dewpoint`, `humidity`, `u10`, `v10`, `msl`, `precip`
    /// [default: t2m,u10,v10].
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
    route: &'static str,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    auth.require(Scope::Read)?;
    let service = forecasts::service(&state)?;
    let result = answer_query(&state, &service, &headers, &query);
    service.observe_request(route, started.elapsed());
    result
}

/// One forecast per asked horizon, each answered (cached, computed) as its single request.
fn answer_query(
    state: &AppState,
    service: &ForecastService,
    headers: &HeaderMap,
    query: &ForecastQuery,
) -> Result<Response, ApiError> {
    let requests = service.parse_requests(&query.as_text())?;
    let fresh = wants_fresh(headers);
    let mut answers = Vec::with_capacity(requests.len());
    for request in &requests {
        let answer = service.answer(request, fresh).map_err(forecasts::problem)?;
        count(state, request, &answer);
        answers.push(answer);
    }
    let (body, x_cache) = match answers.as_slice() {
        // One horizon: the document exactly as before multi-horizon requests existed.
        [one] => (
            one.body.clone(),
            HeaderValue::from_static(one.outcome.as_str()),
        ),
        several => {
            let outcomes: Vec<&str> = several.iter().map(|a| a.outcome.as_str()).collect();
            let docs: Vec<&[u8]> = several.iter().map(|a| a.body.as_ref()).collect();
            (
                envelope(service.version(), "forecasts", &docs),
                // One outcome per horizon, in the answer's order.
                HeaderValue::from_str(&outcomes.join(", "))
                    .unwrap_or_else(|_| HeaderValue::from_static("miss")),
            )
        }
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::HeaderName::from_static("x-cache"), x_cache),
        ],
        body,
    )
        .into_response())
}

/// Counts one answered forecast in the metrics.
fn count(state: &AppState, request: &ForecastRequest, answer: &forecasts::Answer) {
    let horizon = horizon_label(request.horizon);
    let metrics = state.metrics().forecast();
    metrics.answered(horizon, answer.outcome.as_str());
    if let Some(took) = answer.computed_in {
        metrics.searched(horizon, took);
        metrics.search_status(horizon, search_status(took).as_str());
    }
}

/// `{"model_version": …, "<member>": [doc, …]}` around documents that are already JSON (the
/// cached bodies), without parsing them again.
fn envelope(version: &str, member: &str, docs: &[&[u8]]) -> Bytes {
    // Serialising a string cannot fail.
    let version = serde_json::to_string(version).unwrap_or_default();
    let mut out = Vec::with_capacity(64 + docs.iter().map(|d| d.len() + 1).sum::<usize>());
    out.extend_from_slice(b"{\"model_version\":");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(doc);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// One ensemble forecast (read scope); seed 001's path. Same as `/api/v1/forecast`.
#[utoipa::path(get, path = "/forecast", tag = "forecast", security(("api_key" = [])),
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast, or for several horizons `{model_version, forecasts}`; header `X-Cache: hit|miss|bypass` (several horizons: one per horizon, comma-separated)", body = ForecastAnswerSchema),
        (status = 400, description = "A bad horizon (or one asked twice, or more than four), variable, k, mode, similarity or time format; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
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
    answer(state, auth, headers, query, "/forecast").await
}

/// One ensemble forecast (read scope): the k nearest historical analogs of the station's state
/// at `at`, and what followed them `horizon` later. Answers are cached per parameters and model
/// version; `Cache-Control: no-cache` asks for a fresh computation.
#[utoipa::path(get, path = "/api/v1/forecast", tag = "forecast", security(("api_key" = [])),
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast, or for several horizons `{model_version, forecasts}`; header `X-Cache: hit|miss|bypass` (several horizons: one per horizon, comma-separated)", body = ForecastAnswerSchema),
        (status = 400, description = "A bad horizon (or one asked twice, or more than four), variable, k, mode, similarity or time format; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
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
    answer(state, auth, headers, query, "/api/v1/forecast").await
}

/// Most items one batch may hold.
pub(crate) const MAX_BATCH_ITEMS: usize = 100;
/// Largest batch body, in bytes: 100 items of every parameter take well under this.
pub(crate) const MAX_BATCH_BODY_BYTES: usize = 64 * 1024;

/// `POST /api/v1/forecast/batch`: forecasts for many stations, times or settings at once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// The forecasts, answered in this order; at most 100.
    #[schema(max_items = 100)]
    requests: Vec<BatchItem>,
}

/// One forecast of a batch: the GET query's parameters, checked by the same function. The
/// schema gives each field's JSON type only: a value that function refuses (an unknown horizon,
/// `k` out of range, an unknown station) is that item's problem, answered in its slot, not the
/// batch's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    /// Station code.
    station: String,
    /// One horizon: `6h`, `12h`, `24h` or `48h` [default: 24h].
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    horizon: Option<String>,
    /// Comma-separated variables: `t2m`, `dewpoint`, `humidity`, `u10`, `v10`, `msl`, `precip`
    /// [default: t2m,u10,v10].
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    vars: Option<String>,
    /// Ensemble size, 1 to 100; or give `mode` (not both: a 422 problem for this item).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, nullable = false)]
    k: Option<serde_json::Number>,
    /// `fast` (k = 5), `default` (10) or `accurate` (20).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    mode: Option<String>,
    /// Issue time: RFC 3339 on the hour, or a date [default: the station's latest time].
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    at: Option<String>,
    /// `seed` or `anen` [default: anen].
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    similarity: Option<String>,
}

/// An optional field that, when given, is not null (absent is the default; `null` is a type
/// error, as the schema says).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A batch item's `k` as the GET query's text: a whole number within the documented int64
/// (the shared check then says whether it is 1 to 100); a fraction or a number past int64 is
/// not the documented type, so the body's fault.
fn k_text(k: &serde_json::Number, item: usize) -> Result<String, ApiError> {
    if let Some(k) = k.as_i64() {
        return Ok(k.to_string());
    }
    match k.as_f64() {
        // `5.0` is the integer 5 to JSON Schema. Whole-number literals within int64 were read
        // exactly above; a float only stands for an int64 while it is exact (below 2^53), as
        // `-9223372036854775809` rounds to i64::MIN.
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => Ok(format!("{f:.0}")),
        _ => Err(ApiError::invalid_field(
            &format!("requests[{item}].k"),
            format!("field `requests[{item}].k`: must be a whole number within int64 (got {k})"),
        )),
    }
}

/// The answer to a batch: one result per item, in order.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documentation only: the body is assembled from the cached documents.
pub(crate) struct BatchResponse {
    /// Version of the model that answered.
    model_version: String,
    /// `{"forecast": …}` or `{"error": problem}` per item, in the request's order.
    results: Vec<BatchResult>,
}

/// One item's result.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only.
pub(crate) enum BatchResult {
    /// The forecast, exactly as `GET /api/v1/forecast` answers it.
    Forecast(BatchForecast),
    /// Why this item has no forecast: the problem its GET would have answered.
    Error(BatchError),
}

/// A batch item's forecast.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct BatchForecast {
    forecast: ForecastSchema,
}

/// A batch item's problem.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct BatchError {
    error: crate::openapi::Problem,
}

/// Path template of the batch route (the problems' `instance`).
const BATCH_PATH: &str = "/api/v1/forecast/batch";

/// Many forecasts in one request (read scope): each item is checked by the GET query's rules
/// and answered (cached, computed) as its single GET would be; an item the rules or the model
/// refuse gets that GET's problem object in its slot, and the others are still answered.
/// `Cache-Control: no-cache` asks for fresh computations of every item.
#[utoipa::path(post, path = "/api/v1/forecast/batch", tag = "forecast", security(("api_key" = [])),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per item, in order", body = BatchResponse),
        (status = 400, description = "Not JSON, or not the documented shape (`field` names the place)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "A body over 64 KiB", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "More than 100 items (`field`: `requests`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 501, description = "The server has no forecast model (`forecast_model_missing`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    auth: Auth,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    auth.require(Scope::Read)?;
    let service = forecasts::service(&state)?;
    let result = answer_batch(&state, &service, request).await;
    service.observe_request(BATCH_PATH, started.elapsed());
    result
}

async fn answer_batch(
    state: &AppState,
    service: &ForecastService,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    require_json(&parts.headers)?;
    let bytes = axum::body::to_bytes(body, MAX_BATCH_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                ProblemKind::PayloadTooLarge,
                format!("a forecast batch body takes at most {MAX_BATCH_BODY_BYTES} bytes"),
            )
        })?;
    let batch: BatchRequest = parse_json(&bytes)?;
    if batch.requests.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "requests holds at most {MAX_BATCH_ITEMS} forecasts (got {}); send several \
                 batches",
                batch.requests.len()
            ),
        )
        .with("field", "requests"));
    }
    // The shape is the whole body's: every `k` is checked before any item is answered.
    let ks = batch
        .requests
        .iter()
        .enumerate()
        .map(|(i, item)| item.k.as_ref().map(|k| k_text(k, i)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let fresh = wants_fresh(&parts.headers);
    let request_id = parts
        .extensions
        .get::<RequestContext>()
        .map(|ctx| ctx.request_id().to_owned());
    let mut results: Vec<Vec<u8>> = Vec::with_capacity(batch.requests.len());
    for (item, k) in batch.requests.iter().zip(&ks) {
        let text = RequestText {
            station: Some(&item.station),
            horizon: item.horizon.as_deref(),
            vars: item.vars.as_deref(),
            k: k.as_deref(),
            mode: item.mode.as_deref(),
            at: item.at.as_deref(),
            similarity: item.similarity.as_deref(),
        };
        let answered = service.parse_request(&text).and_then(|request| {
            let answer = service
                .answer(&request, fresh)
                .map_err(forecasts::problem)?;
            count(state, &request, &answer);
            Ok(answer)
        });
        let mut slot = Vec::new();
        match answered {
            Ok(answer) => {
                slot.extend_from_slice(b"{\"forecast\":");
                slot.extend_from_slice(&answer.body);
            }
            Err(problem) => {
                slot.extend_from_slice(b"{\"error\":");
                // Serialising a JSON value cannot fail.
                slot.extend(
                    serde_json::to_vec(&problem.to_body(BATCH_PATH, request_id.as_deref()))
                        .unwrap_or_default(),
                );
            }
        }
        slot.push(b'}');
        results.push(slot);
    }
    let docs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        envelope(service.version(), "results", &docs),
    )
        .into_response())
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
    let started = Instant::now();
    auth.require(Scope::Read)?;
    let service = forecasts::service(&state)?;
    let diagnostics = service.diagnostics();
    service.observe_request("/api/v1/forecast/diagnostics", started.elapsed());
    Ok(axum::Json(diagnostics))
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

/// What the forecast GET routes answer: one document, or several in an envelope.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only.
pub(crate) enum ForecastAnswerSchema {
    /// One horizon asked for.
    One(ForecastSchema),
    /// Several horizons asked for.
    Several(ForecastsSchema),
}

/// Several horizons' forecasts: each exactly the document its single-horizon request answers.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct ForecastsSchema {
    /// Version of the model that answered.
    model_version: String,
    /// One forecast per horizon, in the order asked.
    forecasts: Vec<ForecastSchema>,
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
