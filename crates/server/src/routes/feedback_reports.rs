//! `/api/v1/feedback/reports`: signed research reports. The use cases are
//! [`crate::feedback::report`]'s.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiQuery, Auth};
use crate::feedback::report::{self, ReportSummary};
use crate::problem::ApiError;
use crate::state::AppState;

/// How many reports to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportListParams {
    /// 1 to 200 [default 50].
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// The tenant's reports.
#[derive(Serialize, ToSchema)]
#[schema(as = FeedbackReportList)]
pub(crate) struct ReportList {
    /// Newest first.
    reports: Vec<ReportSummary>,
}

/// The tenant's signed research reports, newest first (read scope). Listing spends no privacy
/// budget.
#[utoipa::path(get, path = "/api/v1/feedback/reports", tag = "feedback", security(("api_key" = [])),
    params(ReportListParams),
    responses(
        (status = 200, body = ReportList),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list_reports(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ReportListParams>,
) -> Result<axum::Json<ReportList>, ApiError> {
    auth.require(Scope::Read)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=report::MAX_REPORTS_LISTED).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!("must be 1 to {}", report::MAX_REPORTS_LISTED),
        ));
    }
    let reports = report::list(&state, auth.tenant_id(), limit)
        .await
        .map_err(report::to_api_error)?;
    Ok(axum::Json(ReportList { reports }))
}

/// One signed research report, the exact signed bytes (read scope): canonical JSON
/// `{"report": {...}, "signature": {"algorithm", "key_id", "public_key", "value"}}` and a
/// newline. Check it with `signalbox feedback report verify FILE --public-key KEY` (the key of
/// `GET /api/v1/audit/public-key`). Fetching spends no privacy budget.
#[utoipa::path(get, path = "/api/v1/feedback/reports/{id}", tag = "feedback", security(("api_key" = [])),
    params(("id" = String, Path, description = "The report's id", max_length = 64)),
    responses(
        (status = 200, description = "The signed report file", content_type = "application/json", body = Object),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such report in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_report(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Read)?;
    let body = report::signed_file(&state, auth.tenant_id(), &id)
        .await
        .map_err(report::to_api_error)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Makes a signed research report of the tenant's feedback over `[from, to)` (admin scope: it
/// spends privacy budget). Seven differentially private releases (count, rating mean and
/// histogram, sentiment mean, text length mean, alignment mean, violations by principle),
/// discrete Laplace noise, the report's ε (default 0.5) split evenly and spent once in the
/// privacy ledger (kind `report`); signed with the audit key and stored. 201 with its summary;
/// the signed file is at `href`. 403 `privacy_budget_exhausted` when the period's budget
/// cannot cover it (nothing is released).
#[utoipa::path(post, path = "/api/v1/feedback/reports", tag = "feedback", security(("api_key" = [])),
    request_body = report::ReportRequest,
    responses(
        (status = 201, body = ReportSummary),
        (status = 400, description = "The body is not JSON or a field has the wrong type", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope, or the privacy budget is exhausted", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A field breaks the report's rules: an impossible date, a window ending before it starts, ε out of range (`field` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn create_report(
    State(state): State<AppState>,
    auth: Auth,
    body: crate::extract::ApiJson<report::ReportRequest>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    let (summary, _) = report::generate(
        &state,
        auth.tenant_id(),
        &auth.0.key_id,
        &body.0,
        crate::jobs::now_ms(),
    )
    .await
    .map_err(report::to_api_error)?;
    Ok((
        axum::http::StatusCode::CREATED,
        [(header::LOCATION, summary.href.clone())],
        axum::Json(summary),
    ))
}
