//! Weber sensitivity profiles (seed 000's paths and shapes), read from the store. Every query is
//! keyed by the caller's tenant, so another tenant's user is indistinguishable from a missing one.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use store::{Scope, WeberProfileRecord};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::weber_reads::{self, check_user_id, valid_user_id, MAX_USER_ID_CHARS};

/// Most ids one batchGet may ask for.
pub const BATCH_GET_LIMIT: usize = 1000;

/// Seed 000's WeberProfileResponse.
#[derive(Serialize, ToSchema)]
pub(crate) struct WeberProfileResponse {
    user_id: String,
    weber_constant: f64,
    /// `Highly_Sensitive`, `Moderately_Sensitive`, `Low_Sensitive` or `Insensitive`.
    sensitivity_segment: String,
    calculation_confidence: f64,
    /// Every interaction of the user (the profile covers the most recent 100).
    review_count: i64,
    /// Negativity bias; null unless the window has both worse- and better-than-baseline events.
    bias_ratio: Option<f64>,
    /// Time of the newest interaction in the profile (RFC 3339).
    last_updated: Option<String>,
}

impl From<&WeberProfileRecord> for WeberProfileResponse {
    fn from(r: &WeberProfileRecord) -> Self {
        WeberProfileResponse {
            user_id: r.user_id.clone(),
            weber_constant: r.weber_constant,
            sensitivity_segment: r.sensitivity_segment.clone(),
            calculation_confidence: r.calculation_confidence,
            review_count: r.review_count,
            bias_ratio: r.bias_ratio,
            last_updated: r.newest_event_ms.map(crate::rfc3339_ms),
        }
    }
}

/// The pattern of a user id in the document: see [`valid_user_id`].
pub(crate) const USER_ID_PATTERN: &str = "^[^\\x00]{1,256}$";

/// `user_ids` of a batchGet: 1 to 1000 user ids.
fn user_ids_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .pattern(Some(USER_ID_PATTERN)),
        )
        .min_items(Some(1))
        .max_items(Some(BATCH_GET_LIMIT))
        .build()
}

/// One user's Weber profile (read scope).
#[utoipa::path(get, path = "/api/v1/users/{user_id}/weber-profile", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The user's id in your system")),
    responses(
        (status = 200, body = WeberProfileResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No profile for this user in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_profile(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<WeberProfileResponse>, ApiError> {
    auth.require(Scope::Read)?;
    check_user_id("user_id", &user_id)?;
    let (found, source) = state
        .profiles()
        .read(&state, auth.tenant_id(), &user_id)
        .await?;
    state.metrics().weber().profile_read(source.as_str());
    let Some(profile) = found else {
        return Err(ApiError::not_found(format!(
            "no Weber profile for user '{user_id}'"
        )));
    };
    Ok(axum::Json(WeberProfileResponse::from(&profile)))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileUpdateResponse {
    user_id: String,
    /// `updated`: the profile was recalculated from the stored interactions.
    status: &'static str,
    profile: WeberProfileResponse,
}

/// Recalculates one user's profile from their stored interactions, now (write scope). The
/// worker keeps profiles current on its own; this repairs or refreshes one on demand.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/weber-profile/update", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The user's id in your system")),
    responses(
        (status = 200, body = ProfileUpdateResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No stored interactions for this user in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn update_profile(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<ProfileUpdateResponse>, ApiError> {
    auth.require(Scope::Write)?;
    check_user_id("user_id", &user_id)?;
    let profile = state
        .profiles()
        .recalculate(&state, auth.tenant_id(), &user_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no stored interactions for user '{user_id}' to recalculate from"
            ))
        })?;
    Ok(axum::Json(ProfileUpdateResponse {
        user_id,
        status: "updated",
        profile: WeberProfileResponse::from(&*profile),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchGetRequest {
    /// 1 to 1000 user ids; duplicates are answered once.
    #[schema(schema_with = user_ids_schema)]
    user_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BatchGetResponse {
    /// The profiles found, in user id order.
    profiles: Vec<WeberProfileResponse>,
    /// Requested ids with no profile in your tenant.
    missing: Vec<String>,
}

/// Many users' profiles at once (read scope).
#[utoipa::path(post, path = "/api/v1/weber-profiles:batchGet", tag = "weber", security(("api_key" = [])),
    request_body = BatchGetRequest,
    responses(
        (status = 200, body = BatchGetResponse),
        (status = 400, description = "Malformed body, no ids, more than 1000, or a bad id", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn batch_get(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<BatchGetRequest>,
) -> Result<axum::Json<BatchGetResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let mut ids = body.user_ids;
    if ids.is_empty() || ids.len() > BATCH_GET_LIMIT {
        return Err(ApiError::invalid_field(
            "user_ids",
            format!(
                "user_ids must hold 1 to {BATCH_GET_LIMIT} ids (got {})",
                ids.len()
            ),
        ));
    }
    if let Some(i) = ids.iter().position(|id| !valid_user_id(id)) {
        return Err(ApiError::invalid_field(
            &format!("user_ids[{i}]"),
            format!("user_ids[{i}] must be 1 to {MAX_USER_ID_CHARS} characters, without NUL"),
        ));
    }
    ids.sort_unstable();
    ids.dedup();
    let found = state.store().weber_profiles(auth.tenant_id(), &ids).await?;
    let missing = ids
        .into_iter()
        .filter(|id| {
            found
                .binary_search_by(|p| p.user_id.as_str().cmp(id))
                .is_err()
        })
        .collect();
    Ok(axum::Json(BatchGetResponse {
        profiles: found.iter().map(Into::into).collect(),
        missing,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Continue after this user id (the previous page's `next_after`).
    #[param(pattern = "^[^\\x00]{1,256}$")]
    after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentUsersResponse {
    segment: String,
    /// User ids in order.
    users: Vec<String>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<String>,
}

/// The users in one sensitivity segment, a page at a time (read scope).
#[utoipa::path(get, path = "/api/v1/segments/{segment}/users", tag = "weber", security(("api_key" = [])),
    params(("segment" = String, Path, description = "Highly_Sensitive, Moderately_Sensitive, Low_Sensitive or Insensitive (another name is 404)"), PageQuery),
    responses(
        (status = 200, body = SegmentUsersResponse),
        (status = 400, description = "Bad limit or after", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such segment", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn segment_users(
    State(state): State<AppState>,
    auth: Auth,
    Path(segment): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<axum::Json<SegmentUsersResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let page = weber_reads::segment_users(
        state.store(),
        auth.tenant_id(),
        &segment,
        page.after.as_deref(),
        page.limit,
    )
    .await?;
    Ok(axum::Json(SegmentUsersResponse {
        segment: page.segment.as_str().to_owned(),
        users: page.users,
        next_after: page.next_after,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CalculationsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Continue after this row (the previous page's `next_after`).
    #[param(minimum = 1)]
    after: Option<i64>,
}

/// One row of the calculation audit: the newest event of a recalculated window against its
/// baseline, and the profile that resulted.
#[derive(Serialize, ToSchema)]
pub(crate) struct CalculationResponse {
    /// The row's id (increasing in write order).
    id: i64,
    /// 1-based position of the event in the user's history.
    review_sequence: i64,
    sentiment_value: f64,
    baseline_sentiment: f64,
    weber_ratio: f64,
    weber_constant: f64,
    calculation_confidence: f64,
    sensitivity_segment: String,
    /// `event` (the real-time path), `rebuild` (a late event), `reconcile` (catch-up at start)
    /// or `manual` (the update route and the `weber.recalculate` job).
    cause: String,
    /// RFC 3339, UTC.
    calculated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CalculationsResponse {
    user_id: String,
    /// Newest first.
    calculations: Vec<CalculationResponse>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<i64>,
}

/// One user's calculation audit, newest first, a page at a time (read scope).
#[utoipa::path(get, path = "/api/v1/users/{user_id}/weber-calculations", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The user's id in your system"), CalculationsQuery),
    responses(
        (status = 200, body = CalculationsResponse),
        (status = 400, description = "Bad user id, limit or after", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "Neither a profile nor calculations for this user in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn calculations(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
    ApiQuery(page): ApiQuery<CalculationsQuery>,
) -> Result<axum::Json<CalculationsResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let page = weber_reads::calculations_page(
        state.store(),
        auth.tenant_id(),
        &user_id,
        page.after,
        page.limit,
    )
    .await?;
    Ok(axum::Json(CalculationsResponse {
        user_id,
        calculations: page
            .calculations
            .into_iter()
            .map(|c| CalculationResponse {
                id: c.id,
                review_sequence: c.review_sequence,
                sentiment_value: c.sentiment_value,
                baseline_sentiment: c.baseline_sentiment,
                weber_ratio: c.weber_ratio,
                weber_constant: c.weber_constant,
                calculation_confidence: c.calculation_confidence,
                sensitivity_segment: c.sensitivity_segment,
                cause: c.cause,
                calculated_at: crate::rfc3339_ms(c.calculated_at_ms),
            })
            .collect(),
        next_after: page.next_after,
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentAnalytics {
    segment: &'static str,
    users: i64,
    /// This segment's share of all profiled users, 0 to 1.
    share: f64,
    mean_constant: f64,
    /// Population standard deviation of the users' constants.
    std_constant: f64,
    mean_confidence: f64,
    mean_review_count: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentAnalyticsResponse {
    /// RFC 3339, UTC.
    timestamp: String,
    total_users: i64,
    /// Users per segment (seed 000's `segment_distribution`).
    segment_distribution: std::collections::BTreeMap<&'static str, i64>,
    /// Every segment, most sensitive first, zeros included.
    segments: Vec<SegmentAnalytics>,
    /// How the real-time path performed for your tenant on the server that answered, over the
    /// last one to two minutes (seed 000's `performance_metrics`).
    performance_metrics: SegmentPerformanceMetrics,
    /// Segment shares at the end of each of the last 30 UTC days, oldest first; the last entry
    /// is today so far. From the calculation audit: each user counts in the segment of their
    /// newest calculation before the day's end.
    trends: Vec<SegmentTrend>,
}

/// (Named apart from the health check's `PerformanceMetrics`: OpenAPI schemas share one
/// namespace.)
#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentPerformanceMetrics {
    /// Profile recalculations of your users per second.
    calculations_per_second: f64,
    /// Mean time from an interaction's commit to its profile being readable, in milliseconds;
    /// null when no interaction was applied in the span.
    average_latency_ms: Option<f64>,
    /// Interactions rejected at ingest or whose profile update failed, over all interactions
    /// offered, 0 to 1; null when none were offered in the span.
    error_rate: Option<f64>,
    /// The span the figures cover, in seconds (0: no activity on this server recently).
    window_seconds: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentTrend {
    /// The UTC day, `YYYY-MM-DD`.
    date: String,
    /// Users counted at the end of the day.
    total_users: i64,
    /// Each segment's share of them, 0 to 1 (all zeros when none).
    shares: std::collections::BTreeMap<&'static str, f64>,
    /// Users per segment.
    users: std::collections::BTreeMap<&'static str, i64>,
}

impl SegmentTrend {
    fn of(at: &store::SegmentCountsAt) -> Self {
        let users: std::collections::BTreeMap<&'static str, i64> = weber::SensitivitySegment::ALL
            .iter()
            .map(|seg| {
                let n = at
                    .counts
                    .iter()
                    .find(|(name, _)| name == seg.as_str())
                    .map_or(0, |(_, n)| *n);
                (seg.as_str(), n)
            })
            .collect();
        let total_users: i64 = users.values().sum();
        let shares = users
            .iter()
            .map(|(seg, n)| {
                let share = if total_users > 0 {
                    *n as f64 / total_users as f64
                } else {
                    0.0
                };
                (*seg, share)
            })
            .collect();
        // The day an instant ends: the instant just before it.
        let day =
            time::OffsetDateTime::from_unix_timestamp(at.at_ms.saturating_sub(1).div_euclid(1000))
                .map(|t| t.date().to_string())
                .unwrap_or_default();
        SegmentTrend {
            date: day,
            total_users,
            shares,
            users,
        }
    }
}

/// How your users spread over the sensitivity segments (read scope).
///
/// `timestamp` is when the answer was computed: past the `analytics_requests` rate limit (a `degrade` action) the
/// tenant's last answer, up to 10 minutes old, is served with `Signalbox-Degraded`.
#[utoipa::path(get, path = "/api/v1/analytics/weber-segments", tag = "weber", security(("api_key" = [])),
    responses(
        (status = 200, body = SegmentAnalyticsResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn segment_analytics(
    State(state): State<AppState>,
    auth: Auth,
    degraded: Option<axum::Extension<crate::rate_limit::Degraded>>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require(Scope::Read)?;
    let (answer, served) = state
        .segment_analytics()
        .segment_stats(state.store(), auth.tenant_id(), degraded.is_some())
        .await?;
    let (total_users, summaries) = weber_reads::summarise(&answer.stats);
    let segments: Vec<SegmentAnalytics> = summaries
        .into_iter()
        .map(|s| SegmentAnalytics {
            segment: s.segment,
            users: s.users,
            share: s.share,
            mean_constant: s.mean_constant,
            std_constant: s.std_constant,
            mean_confidence: s.mean_confidence,
            mean_review_count: s.mean_review_count,
        })
        .collect();
    let body = axum::Json(SegmentAnalyticsResponse {
        timestamp: crate::rfc3339_ms(answer.computed_at_ms),
        total_users,
        segment_distribution: segments.iter().map(|s| (s.segment, s.users)).collect(),
        segments,
        performance_metrics: {
            let p = state.metrics().weber().performance(auth.tenant_id());
            SegmentPerformanceMetrics {
                calculations_per_second: p.calculations_per_second,
                average_latency_ms: p.average_latency_ms,
                error_rate: p.error_rate,
                window_seconds: p.window_seconds,
            }
        },
        trends: answer.trends.iter().map(SegmentTrend::of).collect(),
    });
    // Tells the rate-limit middleware this answer is the cheaper one (`Signalbox-Degraded`).
    let marker =
        (served == crate::analytics::Served::Cached).then_some(crate::rate_limit::AnsweredDegraded);
    Ok((axum::Extension(marker), body))
}

/// A tenant's Weber engine settings.
#[derive(Serialize, ToSchema)]
pub(crate) struct WeberSettingsResponse {
    /// The `eps` of the ratio denominator `|baseline| + eps`.
    eps: f64,
    /// How many of a user's most recent interactions a profile covers.
    window: u64,
    /// `tenant`: set by `PUT`; `default`: the server's defaults.
    source: &'static str,
    /// When the tenant last set them (RFC 3339); null for the defaults.
    updated_at: Option<String>,
    /// The server's defaults.
    defaults: WeberParamsView,
    /// After a `PUT` that changed the settings: the `weber.recalculate` job (bulk queue) that
    /// recalculates every stored profile with them (`/api/v1/jobs/{id}`). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    recalculation_job_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WeberParamsView {
    eps: f64,
    window: u64,
}

impl WeberParamsView {
    fn of(p: &weber::WeberParams) -> Self {
        WeberParamsView {
            eps: p.eps(),
            window: p.window() as u64,
        }
    }
}

impl WeberSettingsResponse {
    fn of(s: &crate::weber_admin::EffectiveSettings, job: Option<String>) -> Self {
        WeberSettingsResponse {
            eps: s.params.eps(),
            window: s.params.window() as u64,
            source: if s.updated_at_ms.is_some() {
                "tenant"
            } else {
                "default"
            },
            updated_at: s.updated_at_ms.map(crate::rfc3339_ms),
            defaults: WeberParamsView::of(&s.defaults),
            recalculation_job_id: job,
        }
    }
}

/// New Weber settings for the tenant (both fields).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeberSettingsRequest {
    /// Finite, from 1e-9 to 1e9.
    #[schema(minimum = 1e-9, maximum = 1e9)]
    eps: f64,
    /// 1 to 10,000.
    #[schema(minimum = 1, maximum = 10000)]
    window: u64,
}

/// The tenant's Weber engine settings: `eps` and `window` (read scope).
#[utoipa::path(get, path = "/api/v1/weber/settings", tag = "weber", security(("api_key" = [])),
    responses(
        (status = 200, body = WeberSettingsResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<WeberSettingsResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let settings = crate::weber_admin::settings(&state, auth.tenant_id()).await?;
    Ok(axum::Json(WeberSettingsResponse::of(&settings, None)))
}

/// Sets the tenant's Weber engine settings (admin scope). New profiles use them at once on this
/// server and within 30 s on the others; when they change, a `weber.recalculate` job
/// recalculates the stored profiles (its id is in the answer).
#[utoipa::path(put, path = "/api/v1/weber/settings", tag = "weber", security(("api_key" = [])),
    request_body = WeberSettingsRequest,
    responses(
        (status = 200, body = WeberSettingsResponse),
        (status = 400, description = "Malformed body, or eps / window out of range (`field` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<WeberSettingsRequest>,
) -> Result<axum::Json<WeberSettingsResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let changed = crate::weber_admin::put_settings(
        &state,
        auth.tenant_id(),
        &auth.0.key_id,
        body.eps,
        body.window,
    )
    .await?;
    Ok(axum::Json(WeberSettingsResponse::of(
        &changed.settings,
        changed.recalculation.map(|e| e.job.id),
    )))
}

/// What an erasure removed.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErasedCounts {
    interactions: u64,
    profiles: u64,
    calculations: u64,
    /// Purchases (`POST /api/v1/transactions`) with this customer id.
    transactions: u64,
    /// Stored predictions (CLV, churn).
    predictions: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErasureResponse {
    user_id: String,
    /// `erased`.
    status: &'static str,
    erased: ErasedCounts,
}

/// Erases a user's data in your tenant for a GDPR request (admin scope): interactions, Weber
/// profile, calculation audit, purchases and predictions, in one transaction, audited without
/// the user id in clear. A second erasure of the same user finds nothing and is 404.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "weber", security(("api_key" = [])),
    params(("user_id" = String, Path, pattern = "^[^\\x00]{1,256}$", description = "The user's id in your system")),
    responses(
        (status = 200, description = "Erased; the counts of what was removed", body = ErasureResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "Nothing stored for this user in your tenant (never, or already erased)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<axum::Json<ErasureResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let counts = crate::weber_admin::erase_user(&state, auth.tenant_id(), &user_id, &auth.0.key_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "nothing stored for user '{user_id}' (never sent, or already erased)"
            ))
        })?;
    Ok(axum::Json(ErasureResponse {
        user_id,
        status: "erased",
        erased: ErasedCounts {
            interactions: counts.interactions,
            profiles: counts.profiles,
            calculations: counts.calculations,
            transactions: counts.transactions,
            predictions: counts.business_metrics,
        },
    }))
}
