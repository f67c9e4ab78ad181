//! Flag usage analytics and the stale-flag report (read scope), over
//! [`crate::flag_usage`]. Static paths (`/api/v1/flags/usage`, `/api/v1/flags/stale`) win
//! over `/api/v1/flags/{key}`, as `/api/v1/flags/stream` does.

use axum::extract::{Path, State};
use serde::Deserialize;
use store::Scope;
use utoipa::IntoParams;

use crate::extract::{ApiQuery, Auth, FlagEnvironment};
use crate::flag_admin::not_found;
use crate::flag_usage::{self, QueryError, StaleReport, UsageQuery, UsageReport};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// The environment [default: production]; or the X-Environment header.
    #[allow(dead_code)]
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    environment: Option<String>,
    /// First instant (RFC 3339), widened to its bucket's start [default: 24 hours before `to`
    /// by hour, 30 days by day].
    #[param(format = DateTime)]
    from: Option<String>,
    /// End (RFC 3339), widened to its bucket's end [default: now]. At most 7 days by hour and
    /// 366 days by day (422 past that, or when `from` is after `to`).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Bucket width (UTC) [default: hour].
    #[param(pattern = "^(hour|day)$")]
    granularity: Option<String>,
    /// Only this flag.
    #[param(pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    flag: Option<String>,
}

fn query_error(e: QueryError) -> ApiError {
    if e.conflicting {
        ApiError::new(ProblemKind::Unprocessable, e.reason).with("field", e.parameter)
    } else {
        ApiError::invalid_parameter(e.parameter, e.reason)
    }
}

fn parse(
    environment: &str,
    params: &UsageParams,
    flag: Option<&str>,
) -> Result<UsageQuery, ApiError> {
    UsageQuery::parse(
        environment,
        params.from.as_deref(),
        params.to.as_deref(),
        params.granularity.as_deref(),
        flag,
        crate::feature_flags::clock_ms(),
    )
    .map_err(query_error)
}

/// Evaluations and assigned users of the environment's flags over time (read scope).
///
/// Evaluations per flag, variant and hour or day, and the users first exposed (assigned) per
/// variant in the same buckets. Every OFREP answer of a flag with `track_events` counts,
/// whatever its reason.
#[utoipa::path(get, path = "/api/v1/flags/usage", tag = "flags", security(("api_key" = [])),
    params(UsageParams),
    responses(
        (status = 200, body = UsageReport),
        (status = 400, description = "A bad `from`, `to`, `granularity` or environment; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "`from` after `to`, or a range too long for the granularity", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    auth.require(Scope::Read)?;
    // The flag key alphabet of the flag format, as the parameter's schema says: anything else
    // names no flag. (A path key is not checked: an unknown one is a 404.)
    if params
        .flag
        .as_deref()
        .is_some_and(|f| !flags::is_valid_flag_key(f))
    {
        return Err(ApiError::invalid_parameter(
            "flag",
            "flag must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '-', '.'",
        ));
    }
    let query = parse(&environment, &params, params.flag.as_deref())?;
    let report = flag_usage::usage(
        state.store(),
        Some(flag_usage::Pending::of(&state)),
        auth.tenant_id(),
        &query,
    )
    .await?;
    Ok(axum::Json(report))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FlagUsageParams {
    /// The environment [default: production]; or the X-Environment header.
    #[allow(dead_code)]
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    environment: Option<String>,
    /// First instant (RFC 3339), widened to its bucket's start [default: 24 hours before `to`
    /// by hour, 30 days by day].
    #[param(format = DateTime)]
    from: Option<String>,
    /// End (RFC 3339), widened to its bucket's end [default: now]. At most 7 days by hour and
    /// 366 days by day.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Bucket width (UTC) [default: hour].
    #[param(pattern = "^(hour|day)$")]
    granularity: Option<String>,
}

/// One flag's evaluations and assigned users over time (read scope).
///
/// The same document as `GET /api/v1/flags/usage`, with that flag only.
#[utoipa::path(get, path = "/api/v1/flags/{key}/usage", tag = "flags", security(("api_key" = [])),
    params(("key" = String, Path, description = "The flag key"), FlagUsageParams),
    responses(
        (status = 200, body = UsageReport),
        (status = 400, description = "A bad `from`, `to`, `granularity` or environment; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "`from` after `to`, or a range too long for the granularity", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn flag_usage(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    ApiQuery(params): ApiQuery<FlagUsageParams>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    auth.require(Scope::Read)?;
    let params = UsageParams {
        environment: None,
        from: params.from,
        to: params.to,
        granularity: params.granularity,
        flag: None,
    };
    let query = parse(&environment, &params, Some(&key))?;
    flag_usage::flag_usage(
        state.store(),
        Some(flag_usage::Pending::of(&state)),
        auth.tenant_id(),
        &query,
    )
    .await?
    .map(axum::Json)
    .ok_or_else(|| not_found(&key, &environment))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StaleParams {
    /// The environment [default: production]; or the X-Environment header.
    #[allow(dead_code)]
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    environment: Option<String>,
    /// Flags not evaluated for this many days are stale, 1-3650 [default: 30].
    #[param(minimum = 1, maximum = 3650)]
    days: Option<u32>,
}

/// The environment's stale flags, probably safe to remove (read scope).
///
/// Flags not evaluated for `days` days (a flag never evaluated counts from its creation; flags with `track_events:
/// false` are not judged on this), serving one variant to everyone, expired, or `completed` /
/// `archived` but still defined. Each with its reasons and last evaluation.
#[utoipa::path(get, path = "/api/v1/flags/stale", tag = "flags", security(("api_key" = [])),
    params(StaleParams),
    responses(
        (status = 200, body = StaleReport),
        (status = 400, description = "A bad `days` or environment; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn stale(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    ApiQuery(params): ApiQuery<StaleParams>,
) -> Result<axum::Json<StaleReport>, ApiError> {
    auth.require(Scope::Read)?;
    let days = params.days.unwrap_or(flag_usage::DEFAULT_STALE_DAYS);
    if !(1..=flag_usage::MAX_STALE_DAYS).contains(&days) {
        return Err(ApiError::invalid_parameter(
            "days",
            format!(
                "`days` must be 1 to {} (got {days})",
                flag_usage::MAX_STALE_DAYS
            ),
        ));
    }
    let report = flag_usage::stale_flags(
        state.store(),
        Some(flag_usage::Pending::of(&state)),
        auth.tenant_id(),
        &environment,
        days,
        crate::feature_flags::clock_ms(),
    )
    .await?;
    Ok(axum::Json(report))
}
