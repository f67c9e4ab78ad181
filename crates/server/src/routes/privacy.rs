//! Differentially private analytics and the privacy budget: `POST /api/v1/feedback/analytics`
//! (write scope: answering spends the tenant's budget, so a read-only key, such as a dashboard's,
//! cannot exhaust it), `GET /api/v1/privacy/budget` (read) and `PUT /api/v1/privacy/budget`
//! (admin). The use cases are [`crate::feedback::private_analytics`]'s.

use axum::extract::State;
use feedback::private_analytics::QueryRequest;
use privacy::budget::{Budget, Period};
use privacy::{Delta, Epsilon};
use serde::{Deserialize, Serialize};
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::feedback::private_analytics::{
    answer_query, AnalyticsError, BudgetState, LedgerEntry, PrivacyLedger, MAX_ANALYTICS_ROWS,
};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// An analytics query.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PrivateAnalyticsQuery)]
#[allow(dead_code)] // The schema only: the body is read as a loose `QueryRequest`.
pub(crate) struct QueryBody {
    /// What to measure.
    #[schema(
        pattern = "^(count|rating_mean|rating_histogram|sentiment_mean|violation_count|alignment_mean|text_length_mean)$"
    )]
    metric: String,
    /// How to group [default: none]. Day and week keys come from the window (at most 366 days
    /// or 53 weeks), type and channel from their closed sets, region from the tenant's
    /// `[privacy] regions` plus `other`, segment from the Weber segments plus `unknown`.
    #[schema(pattern = "^(none|day|week|type|channel|region|segment)$")]
    group_by: Option<String>,
    /// Window start (inclusive): RFC 3339 text or epoch milliseconds.
    #[schema(value_type = WindowInstant)]
    from: serde_json::Value,
    /// Window end (exclusive): RFC 3339 text or epoch milliseconds; after `from`, at most 3660
    /// days after it.
    #[schema(value_type = WindowInstant)]
    to: serde_json::Value,
    /// ε to spend, 0.001 to 10 [default: the tenant's `[privacy] epsilon`, else research and
    /// hybrid 0.1, production 1.0].
    #[schema(minimum = 0.001, maximum = 10.0)]
    epsilon: Option<f64>,
    /// The noise [default: the tenant's `[privacy] mechanism`, else discrete_laplace].
    #[schema(pattern = "^(discrete_laplace|discrete_gaussian)$")]
    mechanism: Option<String>,
    /// δ to spend, discrete_gaussian only, above 0 up to 0.001 [default: the tenant's, else
    /// 1e-6].
    #[schema(minimum = 0.0, maximum = 0.001)]
    delta: Option<f64>,
}

/// An instant of an analytics window: RFC 3339 text or Unix epoch milliseconds (years 1970 to
/// 9999).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The schema only.
pub(crate) enum WindowInstant {
    /// RFC 3339 text, e.g. `2026-11-01T00:00:00Z`.
    #[schema(format = DateTime)]
    Text(String),
    /// Unix epoch milliseconds.
    EpochMs(i64),
}

/// One noisy release inside an answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivateAnalyticsPart)]
pub(crate) struct PartView {
    /// `count` (or the histogram's counts) or `sum` (a mean's centred sum).
    name: &'static str,
    /// The sensitivity the noise is calibrated to (L1 for Laplace, L2 for Gaussian).
    sensitivity: u64,
    /// Laplace b or Gaussian σ.
    scale: f64,
    /// ε of this part.
    epsilon: f64,
    /// δ of this part.
    delta: f64,
}

/// One released value.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivateAnalyticsValue)]
pub(crate) struct GroupView {
    /// The group key.
    key: String,
    /// The bin (rating 1 to 5, or a principle) of histograms.
    #[serde(skip_serializing_if = "Option::is_none")]
    bin: Option<String>,
    /// The noisy value (`null`: a mean whose noisy count was not positive).
    value: Option<f64>,
    /// Half-width of the 95% interval.
    accuracy_95: Option<f64>,
}

/// The budget of the current period.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivacyBudgetState)]
pub(crate) struct BudgetView {
    /// `day`, `week`, `month`, `quarter` or `year` (UTC calendar periods).
    period: &'static str,
    /// Whether the tenant set the budget (false: the default, ε 1.0 and δ 1e-5 a month).
    configured: bool,
    /// The period's start (RFC 3339).
    period_start: String,
    /// When the budget renews (RFC 3339).
    period_end: String,
    /// Total ε per period.
    epsilon_total: f64,
    /// Total δ per period.
    delta_total: f64,
    /// ε spent in the period.
    epsilon_spent: f64,
    /// δ spent in the period.
    delta_spent: f64,
    /// ε left.
    epsilon_remaining: f64,
    /// δ left.
    delta_remaining: f64,
}

impl From<&BudgetState> for BudgetView {
    fn from(s: &BudgetState) -> BudgetView {
        let remaining = s.remaining();
        BudgetView {
            period: s.budget.period.as_str(),
            configured: s.configured,
            period_start: crate::rfc3339_ms(s.period_start_ms),
            period_end: crate::rfc3339_ms(s.period_end_ms),
            epsilon_total: s.budget.epsilon.as_f64(),
            delta_total: s.budget.delta.as_f64(),
            epsilon_spent: s.spent.epsilon.as_f64(),
            delta_spent: s.spent.delta.as_f64(),
            epsilon_remaining: remaining.epsilon.as_f64(),
            delta_remaining: remaining.delta.as_f64(),
        }
    }
}

/// A differentially private answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivateAnalyticsAnswer)]
pub(crate) struct AnswerView {
    /// The metric.
    metric: &'static str,
    /// The grouping.
    group_by: &'static str,
    /// Window start (RFC 3339).
    from: String,
    /// Window end, exclusive (RFC 3339).
    to: String,
    /// `discrete_laplace` or `discrete_gaussian`.
    mechanism: &'static str,
    /// ε spent.
    epsilon: f64,
    /// δ spent.
    delta: f64,
    /// Items per person counted (the earliest in the window).
    contribution_cap: u32,
    /// The noisy releases the values come from.
    parts: Vec<PartView>,
    /// The values, one per group (and bin).
    groups: Vec<GroupView>,
    /// The ledger row recording this release.
    ledger_id: i64,
    /// The budget after this release.
    budget: BudgetView,
}

fn analytics_error(e: AnalyticsError) -> ApiError {
    match e {
        AnalyticsError::Invalid(errors) => {
            let first = errors.first().map(|e| e.field.clone()).unwrap_or_default();
            let detail = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let listed: Vec<serde_json::Value> = errors
                .iter()
                .map(|e| serde_json::json!({"field": e.field, "message": e.message}))
                .collect();
            // Well-formed JSON whose values break the query's rules (a window ending before it
            // starts, δ on a mechanism without one): 422, as for other semantic refusals.
            ApiError::new(ProblemKind::Unprocessable, detail)
                .with("field", first)
                .with("errors", listed)
        }
        AnalyticsError::TooManyRows => ApiError::new(ProblemKind::Unprocessable, e.to_string())
            .with("field", "to")
            .with("max_items", MAX_ANALYTICS_ROWS),
        AnalyticsError::Ledger(e) => e.into(),
        AnalyticsError::Calibration(e) => ApiError::new(ProblemKind::Unprocessable, e.to_string()),
        AnalyticsError::Store(e) => e.into(),
    }
}

/// Answers a differentially private analytics query over the tenant's feedback (write scope:
/// it spends privacy budget). Each person (`user_id`) counts with at most the tenant's
/// `[privacy] contribution_cap` items (the earliest in the window); values are clamped to
/// declared bounds; noise (discrete Laplace, or discrete Gaussian spending δ) is calibrated to
/// the resulting sensitivity. Means are a noisy sum over a noisy count (ε split evenly). Every
/// group is released, empty or not. The spend is recorded in the ledger before the answer
/// leaves; when the period's budget cannot cover it the answer is 403
/// `privacy_budget_exhausted` naming what is left, and nothing is released.
#[utoipa::path(post, path = "/api/v1/feedback/analytics", tag = "feedback", security(("api_key" = [])),
    request_body = QueryBody,
    responses(
        (status = 200, body = AnswerView),
        (status = 400, description = "The body is not JSON or a field has the wrong type", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "Missing scope, or `privacy_budget_exhausted` (`remaining_epsilon`, `remaining_delta`, `period_end`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A field breaks the query's rules (`field`; `errors` lists each), or the window holds too many items", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn analytics(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<axum::Json<AnswerView>, ApiError> {
    auth.require(Scope::Write)?;
    let now_ms = crate::jobs::now_ms();
    let answered = answer_query(&state, auth.tenant_id(), &auth.0.key_id, &request, now_ms)
        .await
        .map_err(analytics_error)?;
    let r = &answered.release;
    Ok(axum::Json(AnswerView {
        metric: r.metric.as_str(),
        group_by: r.group_by.as_str(),
        from: crate::rfc3339_ms(r.from_ms),
        to: crate::rfc3339_ms(r.to_ms),
        mechanism: feedback::private_analytics::mechanism_name(r.mechanism),
        epsilon: r.epsilon,
        delta: r.delta,
        contribution_cap: r.contribution_cap,
        parts: r
            .parts
            .iter()
            .map(|p| PartView {
                name: p.name,
                sensitivity: p.sensitivity,
                scale: p.scale,
                epsilon: p.epsilon,
                delta: p.delta,
            })
            .collect(),
        groups: r
            .groups
            .iter()
            .map(|g| GroupView {
                key: g.key.clone(),
                bin: g.bin.clone(),
                value: g.value,
                accuracy_95: g.accuracy_95,
            })
            .collect(),
        ledger_id: answered.ledger_id,
        budget: BudgetView::from(&answered.budget),
    }))
}

/// A page of the ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerParams {
    /// Only rows with a smaller id (the previous page's `next_before`).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Rows per page, 1 to 500 [default: 50].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The budget of the current period and its ledger.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivacyBudgetPage)]
pub(crate) struct BudgetPage {
    /// The budget and what is spent.
    #[serde(flatten)]
    budget: BudgetView,
    /// The period's releases, newest first.
    ledger: Vec<LedgerEntry>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

/// The tenant's privacy budget in the current period (read scope): totals, spent, remaining,
/// when it renews, and a page of the period's ledger (every release that spent from it: who,
/// when, what, how much), newest first.
#[utoipa::path(get, path = "/api/v1/privacy/budget", tag = "feedback", security(("api_key" = [])),
    params(LedgerParams),
    responses(
        (status = 200, body = BudgetPage),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_budget(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<LedgerParams>,
) -> Result<axum::Json<BudgetPage>, ApiError> {
    auth.require(Scope::Read)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=store::MAX_PRIVACY_LEDGER_PAGE).contains(&limit) {
        return Err(ApiError::invalid_parameter("limit", "must be 1 to 500"));
    }
    if params.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid_parameter("before", "must be at least 1"));
    }
    let ledger = PrivacyLedger::new(state.store().clone());
    let budget = ledger
        .state(auth.tenant_id(), crate::jobs::now_ms())
        .await?;
    let rows = ledger
        .ledger(
            auth.tenant_id(),
            budget.period_start_ms,
            params.before,
            limit,
        )
        .await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(BudgetPage {
        budget: BudgetView::from(&budget),
        ledger: rows,
        next_before,
    }))
}

/// A new budget.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PrivacyBudgetUpdate)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetBody {
    /// The renewal period (UTC calendar).
    #[schema(pattern = "^(day|week|month|quarter|year)$")]
    period: String,
    /// Total ε per period, 0 to 1000.
    #[schema(minimum = 0.0, maximum = 1000.0)]
    epsilon: f64,
    /// Total δ per period, 0 to 0.001 [default: 0, pure DP only].
    #[schema(minimum = 0.0, maximum = 0.001)]
    delta: Option<f64>,
}

/// Sets the tenant's privacy budget (admin scope). What the current period already spent stays
/// spent: lowering the budget below it refuses every release until the period ends.
#[utoipa::path(put, path = "/api/v1/privacy/budget", tag = "feedback", security(("api_key" = [])),
    request_body = BudgetBody,
    responses(
        (status = 200, body = BudgetView),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_budget(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<axum::Json<BudgetView>, ApiError> {
    auth.require(Scope::Admin)?;
    let period = Period::parse(&body.period).ok_or_else(|| {
        ApiError::invalid_field("period", "must be day, week, month, quarter or year")
    })?;
    let epsilon = Epsilon::from_f64(body.epsilon)
        .map_err(|e| ApiError::invalid_field("epsilon", format!("epsilon {e}")))?;
    let delta = Delta::from_f64(body.delta.unwrap_or(0.0))
        .map_err(|e| ApiError::invalid_field("delta", format!("delta {e}")))?;
    let budget = Budget {
        period,
        epsilon,
        delta,
    };
    let state = PrivacyLedger::new(state.store().clone())
        .put_budget(
            auth.tenant_id(),
            budget,
            &auth.0.key_id,
            crate::jobs::now_ms(),
        )
        .await?;
    Ok(axum::Json(BudgetView::from(&state)))
}
