//! Signed research reports (issue 20; seed 004's `generate_research_report`): the service the
//! routes (`/api/v1/feedback/reports`) and the CLI (`signalbox feedback report generate`) call.
//!
//! A report is made once, signed with the server's audit signing key over
//! `"signalbox research report v1\n"` + the canonical JSON of its body
//! ([`::feedback::report`]), stored byte for byte in `feedback_reports`, and served again from
//! there without spending privacy budget.

use serde::Serialize;
use store::FeedbackReportRecord;
use utoipa::ToSchema;

use crate::state::AppState;

/// Most reports listed.
pub const MAX_REPORTS_LISTED: u32 = store::MAX_FEEDBACK_REPORT_PAGE;

/// Why a report use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportServiceError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A field of the request is refused.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// The tenant has no such report.
    #[error("no report '{0}' in your tenant")]
    NotFound(String),
    /// Signing failed (a report over the size limit).
    #[error(transparent)]
    Sign(#[from] ::feedback::report::ReportError),
}

/// A stored report as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = FeedbackReportSummary)]
pub struct ReportSummary {
    /// The report's id.
    pub id: String,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// The first day covered (`YYYY-MM-DD`).
    pub from: String,
    /// The day after the last covered.
    pub to: String,
    /// The ε spent on it.
    pub epsilon: f64,
    /// The δ spent on it.
    pub delta: f64,
    /// The privacy ledger entry of the spend.
    pub ledger_entry_id: String,
    /// The signing key's id (hex): the audit public key's.
    pub key_id: String,
    /// Where the signed file is.
    pub href: String,
}

impl ReportSummary {
    fn of(r: &FeedbackReportRecord) -> ReportSummary {
        ReportSummary {
            href: format!("/api/v1/feedback/reports/{}", r.id),
            id: r.id.clone(),
            created_at: crate::rfc3339_ms(r.created_at_ms),
            from: r.period_from.clone(),
            to: r.period_to.clone(),
            epsilon: r.epsilon_nanos as f64 / 1e9,
            delta: r.delta_femtos as f64 / 1e15,
            ledger_entry_id: r.ledger_entry_id.clone(),
            key_id: r.key_id.clone(),
        }
    }
}

/// The tenant's reports, newest first (at most [`MAX_REPORTS_LISTED`]).
pub async fn list(
    state: &AppState,
    tenant_id: &str,
    limit: u32,
) -> Result<Vec<ReportSummary>, ReportServiceError> {
    Ok(state
        .store()
        .feedback_reports(tenant_id, limit)
        .await?
        .iter()
        .map(ReportSummary::of)
        .collect())
}

/// The exact signed file of one of the tenant's reports.
pub async fn signed_file(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> Result<String, ReportServiceError> {
    state
        .store()
        .feedback_report(tenant_id, id)
        .await?
        .map(|r| r.body)
        .ok_or_else(|| ReportServiceError::NotFound(id.to_owned()))
}

/// Signs `report` with the server's audit key and stores it; its summary. The report's
/// privacy section must already name the ledger entry of its spend.
pub async fn sign_and_store(
    state: &AppState,
    tenant_id: &str,
    report: &::feedback::report::Report,
    created_at_ms: i64,
) -> Result<(ReportSummary, String), ReportServiceError> {
    let body = state.custody().sign_research_report(report)?;
    // Read back what was signed, for the record's copies of the signature and key id.
    let verified =
        ::feedback::report::verify(body.as_bytes(), Some(&state.custody().verifying_key()))?;
    let signature = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["signature"]["value"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let record = FeedbackReportRecord {
        id: report.id.clone(),
        created_at_ms,
        period_from: report.period.from.clone(),
        period_to: report.period.to.clone(),
        epsilon_nanos: i64::try_from(report.privacy.epsilon_nanos).unwrap_or(i64::MAX),
        delta_femtos: i64::try_from(report.privacy.delta_femtos).unwrap_or(i64::MAX),
        ledger_entry_id: report.privacy.ledger_entry_id.clone(),
        key_id: verified.key_id,
        signature,
        body: body.clone(),
    };
    state
        .store()
        .insert_feedback_report(tenant_id, &record)
        .await?;
    Ok((ReportSummary::of(&record), body))
}

/// A new report id.
pub fn new_report_id() -> String {
    format!("rep_{}", uuid::Uuid::new_v4().simple())
}

/// Maps a report error onto the API's problems.
pub(crate) fn to_api_error(e: ReportServiceError) -> crate::problem::ApiError {
    use crate::problem::{ApiError, ProblemKind};
    match e {
        ReportServiceError::Store(e) => e.into(),
        ReportServiceError::Invalid { field, message } => ApiError::invalid_field(&field, message),
        ReportServiceError::NotFound(id) => {
            ApiError::not_found(format!("no report '{id}' in your tenant"))
        }
        ReportServiceError::Sign(e) => {
            tracing::error!(error = %e, "a research report cannot be signed");
            ApiError::new(
                ProblemKind::Internal,
                format!("the report cannot be signed: {e}"),
            )
        }
    }
}
