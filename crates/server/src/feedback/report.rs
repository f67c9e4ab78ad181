//! Signed research reports (issue 20; seed 004's `generate_research_report`): the service the
//! routes (`/api/v1/feedback/reports`) and the CLI (`signalbox feedback report generate`) call.
//!
//! A report is made once, signed with the server's audit signing key over
//! `"signalbox research report v1\n"` + the canonical JSON of its body
//! ([`::feedback::report`]), stored byte for byte in `feedback_reports`, and served again from
//! there without spending privacy budget.

use ::feedback::private_analytics::{self as pa, GroupBy, Mechanism, Metric, Query, Release};
use ::feedback::report::{
    PrivacySection, Report, ReportPeriod, Statistic, StatisticGroup, StatisticPart, REPORT_FORMAT,
};
use privacy::budget::Spend;
use privacy::{Delta, Epsilon};
use serde::{Deserialize, Serialize};
use store::FeedbackReportRecord;
use utoipa::ToSchema;

use super::private_analytics as pas;
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
    /// The privacy budget refused the spend (the releases were discarded), or the ledger failed.
    #[error(transparent)]
    Ledger(#[from] pas::LedgerError),
    /// The noise could not be calibrated.
    #[error("{0}")]
    Analytics(String),
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
        // Well-typed fields breaking the report's rules (an impossible date, a window ending
        // before it starts): 422, as for the analytics queries.
        ReportServiceError::Invalid { field, message } => {
            ApiError::new(ProblemKind::Unprocessable, message).with("field", field)
        }
        ReportServiceError::NotFound(id) => {
            ApiError::not_found(format!("no report '{id}' in your tenant"))
        }
        ReportServiceError::Ledger(e) => crate::problem::ApiError::from(e),
        ReportServiceError::Analytics(e) => ApiError::new(ProblemKind::Unprocessable, e),
        ReportServiceError::Sign(e) => {
            tracing::error!(error = %e, "a research report cannot be signed");
            ApiError::new(
                ProblemKind::Internal,
                format!("the report cannot be signed: {e}"),
            )
        }
    }
}

/// The ε of a report when the request names none: half the default monthly budget (ε 1.0), so
/// a tenant on the defaults can make two reports a month, or one and a few queries.
pub const DEFAULT_REPORT_EPSILON: f64 = 0.5;
/// The least ε of a report: each of its releases gets at least the smallest query ε.
pub const MIN_REPORT_EPSILON: f64 = 0.007;
/// The most ε of a report.
pub const MAX_REPORT_EPSILON: f64 = 10.0;

/// The releases of a report, in order, and the section each goes to: every metric of the
/// analytics, ungrouped, with discrete Laplace noise (pure ε-DP, δ = 0).
pub const REPORT_METRICS: [(Metric, Section); 7] = [
    (Metric::Count, Section::Statistics),
    (Metric::RatingMean, Section::Statistics),
    (Metric::RatingHistogram, Section::Statistics),
    (Metric::SentimentMean, Section::Statistics),
    (Metric::TextLengthMean, Section::Statistics),
    (Metric::AlignmentMean, Section::Alignment),
    (Metric::ViolationCount, Section::Ethics),
];

/// Where a release goes in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `statistics`.
    Statistics,
    /// `alignment`.
    Alignment,
    /// `ethics`.
    Ethics,
}

/// A request for a report.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FeedbackReportRequest)]
pub struct ReportRequest {
    /// The first day covered, `YYYY-MM-DD` (UTC).
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        min_length = 10,
        max_length = 10
    )]
    pub from: String,
    /// The day after the last covered (exclusive), `YYYY-MM-DD`; at most 366 days after
    /// `from` and no later than tomorrow.
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        min_length = 10,
        max_length = 10
    )]
    pub to: String,
    /// The report's total ε, 0.007 to 10, split evenly over its seven releases
    /// [default 0.5].
    #[schema(minimum = 0.007, maximum = 10.0)]
    pub epsilon: Option<f64>,
}

fn invalid(field: &str, message: impl Into<String>) -> ReportServiceError {
    ReportServiceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The ε of each release: an even split in units of 10⁻⁹, the remainder on the first, so the
/// shares add up to the total exactly.
fn shares(total: Epsilon) -> Vec<Epsilon> {
    let n = REPORT_METRICS.len() as u64;
    let each = total.nanos() / n;
    let rest = total.nanos() - each * n;
    (0..n)
        .map(|i| Epsilon::from_nanos(if i == 0 { each + rest } else { each }))
        .collect()
}

fn statistic(release: &Release) -> Statistic {
    Statistic {
        metric: release.metric.as_str().to_owned(),
        group_by: release.group_by.as_str().to_owned(),
        mechanism: pa::mechanism_name(release.mechanism).to_owned(),
        epsilon_nanos: Epsilon::from_f64(release.epsilon).map_or(0, |e| e.nanos()),
        delta_femtos: Delta::from_f64(release.delta).map_or(0, |d| d.femtos()),
        parts: release
            .parts
            .iter()
            .map(|p| StatisticPart {
                name: p.name.to_owned(),
                sensitivity: p.sensitivity,
                scale: p.scale,
                epsilon: p.epsilon,
                delta: p.delta,
            })
            .collect(),
        groups: release
            .groups
            .iter()
            .map(|g| StatisticGroup {
                key: g.key.clone(),
                bin: g.bin.clone(),
                value: g.value.filter(|v| v.is_finite()),
                accuracy_95: g.accuracy_95.filter(|v| v.is_finite()),
            })
            .collect(),
    }
}

/// The methodology text of every report.
pub const METHODOLOGY: &str = "Each figure is a differentially private release over the \
feedback items that occurred in the period. The unit of privacy is one person (user_id) with all \
their items: each person contributes at most contribution_cap items (the earliest by occurred_at, \
then id), and every value is clamped to its declared bounds (rating 1 to 5, sentiment -1 to 1, \
alignment 0 to 1, text length 100 characters, 7 principles per item), which bounds each \
release's sensitivity. Noise is discrete Laplace with scale sensitivity / epsilon, sampled \
exactly from the operating system's cryptographic random source. Means are a noisy sum over a \
noisy count, epsilon split evenly; accuracy_95 is the half-width of an interval holding the true \
value with 95% probability (for means, from 97.5% intervals of sum and count). The report's \
epsilon is split evenly over its releases and spent once, in one privacy ledger entry, before the \
report was signed; composition is basic (epsilons add).";

/// The limitations text of every report.
pub const LIMITATIONS: &str = "Figures are noisy by design: read each with its accuracy_95, \
and expect small counts and small groups to be dominated by noise. Counts are post-processed to \
be at least 0 and means clamped to their bounds, which biases figures near a bound. People with \
more than contribution_cap items are under-counted. Items without a user_id each count as their \
own person. Items purged by retention keep their scores, so they are counted; items not yet \
analysed have no sentiment or alignment and are left out of those means. The report describes \
this tenant's feedback only, not a sample of any population, and shows no individual item.";

/// Makes a report of the tenant's feedback in `[from, to)`: gathers every release through
/// the analytics' own code ([`pa::answer`], noise from the OS's CSPRNG), spends the report's ε
/// once through the privacy ledger (kind `report`), then signs it with the audit key and stores
/// it. A refused spend discards the releases: nothing unrecorded is returned. If storing failed
/// after the spend, the ε stays spent (conservative) and the error is returned.
pub async fn generate(
    state: &AppState,
    tenant_id: &str,
    actor: &str,
    request: &ReportRequest,
    now_ms: i64,
) -> Result<(ReportSummary, String), ReportServiceError> {
    let period = ReportPeriod::parse(&request.from, &request.to, now_ms)
        .map_err(|e| invalid(e.field, e.message))?;
    let epsilon = request.epsilon.unwrap_or(DEFAULT_REPORT_EPSILON);
    if !epsilon.is_finite() || !(MIN_REPORT_EPSILON..=MAX_REPORT_EPSILON).contains(&epsilon) {
        return Err(invalid(
            "epsilon",
            format!("must be {MIN_REPORT_EPSILON} to {MAX_REPORT_EPSILON}"),
        ));
    }
    let total = Epsilon::from_f64(epsilon).map_err(|e| invalid("epsilon", e.to_string()))?;
    let store = state.store();
    let config = pas::tenant_config(store, tenant_id).await?;
    let queries: Vec<Query> = REPORT_METRICS
        .iter()
        .zip(shares(total))
        .map(|((metric, _), epsilon)| Query {
            metric: *metric,
            group_by: GroupBy::None,
            from_ms: period.from_ms,
            to_ms: period.to_ms,
            mechanism: Mechanism::DiscreteLaplace,
            epsilon,
            delta: Delta::ZERO,
        })
        .collect();
    let rows = pas::load_rows(store, tenant_id, &queries[0])
        .await
        .map_err(analytics_error)?;
    let mut releases = Vec::with_capacity(queries.len());
    for query in &queries {
        releases.push(
            pa::answer(query, &rows, &config.privacy, &mut rand::rngs::OsRng)
                .map_err(|e| analytics_error(e.into()))?,
        );
    }
    drop(rows);
    let id = new_report_id();
    let ledger = pas::PrivacyLedger::new(store.clone());
    let description = serde_json::json!({
        "report_id": id,
        "from": period.from,
        "to": period.to,
        "metrics": REPORT_METRICS.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        "mechanism": "discrete_laplace",
        "epsilon": total.as_f64(),
    });
    let spend = Spend {
        epsilon: total,
        delta: Delta::ZERO,
    };
    let (_, ledger_id) = ledger
        .spend_at(
            tenant_id,
            actor,
            pas::ReleaseKind::Report,
            &description,
            spend,
            now_ms,
        )
        .await?;
    let mut report = Report {
        format: REPORT_FORMAT.to_owned(),
        id,
        tenant_id: tenant_id.to_owned(),
        created_at: crate::rfc3339_ms(now_ms),
        period,
        statistics: Vec::new(),
        alignment: Vec::new(),
        ethics: Vec::new(),
        methodology: METHODOLOGY.to_owned(),
        limitations: LIMITATIONS.to_owned(),
        privacy: PrivacySection {
            mechanisms: vec!["discrete_laplace".to_owned()],
            unit: "one person (user_id) with all their items".to_owned(),
            contribution_cap: config.privacy.contribution_cap,
            epsilon_nanos: total.nanos(),
            delta_femtos: 0,
            ledger_entry_id: ledger_id.to_string(),
        },
    };
    for ((_, section), release) in REPORT_METRICS.iter().zip(&releases) {
        let target = match section {
            Section::Statistics => &mut report.statistics,
            Section::Alignment => &mut report.alignment,
            Section::Ethics => &mut report.ethics,
        };
        target.push(statistic(release));
    }
    sign_and_store(state, tenant_id, &report, now_ms).await
}

fn analytics_error(e: pas::AnalyticsError) -> ReportServiceError {
    match e {
        pas::AnalyticsError::Store(e) => ReportServiceError::Store(e),
        pas::AnalyticsError::Ledger(e) => ReportServiceError::Ledger(e),
        pas::AnalyticsError::TooManyRows => invalid(
            "from",
            format!(
                "the period holds more than {} feedback items; make it shorter",
                pas::MAX_ANALYTICS_ROWS
            ),
        ),
        other => ReportServiceError::Analytics(other.to_string()),
    }
}
