//! Weber pages: how the tenant's users spread over the sensitivity segments, one user's profile
//! with its sentiment history and calculation audit, and a segment's members. Read scope, like
//! the API's Weber routes; the same reads (the profile pipeline, the segment analytics service,
//! [`crate::weber_reads`]) answer both.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use store::{Scope, StoredCalculation, WeberProfileRecord};

use super::charts::{self, LineChart, Series};
use super::{page, Chrome, ConsoleError, Section, Session};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::weber_reads;

pub(super) const SECTION: Section = Section {
    id: "weber",
    title: "Weber",
    path: "/console/weber",
    needs: Scope::Read,
};

/// Audit rows a user page shows (newest first).
const AUDIT_ROWS: u32 = 100;
/// Users per segment page.
const SEGMENT_PAGE: u32 = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/weber", get(segments_page))
        .route("/console/weber/users", get(lookup))
        .route("/console/weber/users/{user_id}", get(user_page))
        .route("/console/weber/segments/{segment}", get(segment_page))
}

/// One segment's row of the analytics table, formatted.
struct SegmentRow {
    segment: &'static str,
    href: String,
    users: i64,
    share: String,
    mean_constant: String,
    std_constant: String,
    mean_confidence: String,
    mean_review_count: String,
}

#[derive(askama::Template)]
#[template(path = "console/weber.html")]
struct SegmentsPage {
    chrome: Chrome,
    total_users: i64,
    computed_at: String,
    chart: String,
    rows: Vec<SegmentRow>,
    /// What was typed into the lookup form, shown again with its error.
    user_id: String,
    user_id_error: Option<String>,
}

async fn segments_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    render_segments(&state, &session, String::new(), None).await
}

async fn render_segments(
    state: &AppState,
    session: &Session,
    user_id: String,
    user_id_error: Option<String>,
) -> Result<Response, ConsoleError> {
    let (answer, _) = state
        .segment_analytics()
        .segment_stats(state.store(), session.tenant_id(), false)
        .await?;
    let (total_users, summaries) = weber_reads::summarise(&answer.stats);
    let bars: Vec<(&str, f64)> = summaries
        .iter()
        .map(|s| (s.segment, s.users as f64))
        .collect();
    let chart = if total_users == 0 {
        charts::bar_chart("Users per sensitivity segment", "users", &[])
    } else {
        charts::bar_chart("Users per sensitivity segment", "users", &bars)
    };
    let rows = summaries
        .iter()
        .map(|s| SegmentRow {
            segment: s.segment,
            href: format!("/console/weber/segments/{}", s.segment),
            users: s.users,
            share: format!("{:.1} %", s.share * 100.0),
            mean_constant: format!("{:.3}", s.mean_constant),
            std_constant: format!("{:.3}", s.std_constant),
            mean_confidence: format!("{:.2}", s.mean_confidence),
            mean_review_count: format!("{:.1}", s.mean_review_count),
        })
        .collect();
    let status = if user_id_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(
        status,
        &SegmentsPage {
            chrome: session.chrome(SECTION.id, "Weber sensitivity"),
            total_users,
            computed_at: crate::rfc3339_ms(answer.computed_at_ms),
            chart,
            rows,
            user_id,
            user_id_error,
        },
    )
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(default)]
    user_id: String,
}

/// The lookup form's target: sends the browser to the user's page, or shows the form again
/// with what is wrong with the id.
async fn lookup(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LookupQuery>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let user_id = query.user_id.trim().to_owned();
    if let Err(e) = weber_reads::check_user_id("user_id", &user_id) {
        return render_segments(&state, &session, user_id, Some(e.detail)).await;
    }
    Ok(Redirect::to(&user_href(&user_id)).into_response())
}

/// One audit row, formatted.
struct AuditRow {
    review_sequence: i64,
    sentiment: String,
    baseline: String,
    ratio: String,
    constant: String,
    confidence: String,
    segment: String,
    cause: String,
    calculated_at: String,
}

impl From<&StoredCalculation> for AuditRow {
    fn from(c: &StoredCalculation) -> Self {
        AuditRow {
            review_sequence: c.review_sequence,
            sentiment: format!("{:.3}", c.sentiment_value),
            baseline: format!("{:.3}", c.baseline_sentiment),
            ratio: format!("{:.3}", c.weber_ratio),
            constant: format!("{:.3}", c.weber_constant),
            confidence: format!("{:.2}", c.calculation_confidence),
            segment: c.sensitivity_segment.clone(),
            cause: c.cause.clone(),
            calculated_at: crate::rfc3339_ms(c.calculated_at_ms),
        }
    }
}

/// The profile's facts as the API gives them, formatted.
struct ProfileFacts {
    user_id: String,
    weber_constant: String,
    confidence: String,
    segment: String,
    segment_href: String,
    bias_ratio: String,
    review_count: i64,
    window_len: i64,
    last_event: String,
    updated_at: String,
}

impl From<&WeberProfileRecord> for ProfileFacts {
    fn from(p: &WeberProfileRecord) -> Self {
        ProfileFacts {
            user_id: p.user_id.clone(),
            weber_constant: format!("{:.3}", p.weber_constant),
            confidence: format!("{:.2}", p.calculation_confidence),
            segment: p.sensitivity_segment.clone(),
            segment_href: format!(
                "/console/weber/segments/{}",
                path_segment(&p.sensitivity_segment)
            ),
            bias_ratio: p
                .bias_ratio
                .map_or_else(|| "not enough data".to_owned(), |b| format!("{b:.3}")),
            review_count: p.review_count,
            window_len: p.window_len,
            last_event: p
                .newest_event_ms
                .map_or_else(|| "none".to_owned(), crate::rfc3339_ms),
            updated_at: crate::rfc3339_ms(p.updated_at_ms),
        }
    }
}

/// One key risk factor, formatted.
struct FactorRow {
    factor: String,
    value: String,
    contribution: String,
}

/// One recommended action, formatted.
struct ActionRow {
    action: String,
    channel: String,
    rationale: String,
    source: String,
}

/// The user's stored prediction as the prediction API gives it, formatted.
struct PredictionFacts {
    model_version: String,
    prediction_date: String,
    clv: String,
    interval: String,
    horizon_months: u32,
    expected_purchases: String,
    horizon_days: u32,
    p_alive: String,
    average_value: String,
    churn_risk: String,
    churn_risk_timing: String,
    risk_level: String,
    churn_model: String,
    factors: Vec<FactorRow>,
    interventions: Vec<String>,
    strategy: Option<String>,
    actions: Vec<ActionRow>,
}

/// The user's prediction, or why there is none (a sentence for the page).
async fn prediction_facts(
    state: &AppState,
    tenant_id: &str,
    user_id: &str,
    has_profile: bool,
) -> Result<Result<PredictionFacts, String>, ConsoleError> {
    use crate::predictions::{PredictionReadError, PredictionService};
    let service = state.predictions();
    let clv = match service.clv(state, tenant_id, user_id).await {
        Ok(clv) => clv,
        Err(PredictionReadError::NotFound(missing)) => return Ok(Err(missing.to_string())),
        Err(e) => return Err(super::predictions::read_error(e)),
    };
    let churn = service
        .churn(state, tenant_id, user_id)
        .await
        .map_err(super::predictions::read_error)?;
    // Recommendations follow the Weber segment, so they need the profile.
    let recommended = if has_profile {
        match PredictionService::recommendations(state, tenant_id, user_id, 10, true).await {
            Ok(r) => Some(r),
            Err(PredictionReadError::NotFound(_)) => None,
            Err(e) => return Err(super::predictions::read_error(e)),
        }
    } else {
        None
    };
    Ok(Ok(PredictionFacts {
        model_version: clv.model_version,
        prediction_date: clv.prediction_date,
        clv: format!("{:.2}", clv.predicted_clv),
        interval: format!(
            "{:.2} to {:.2}",
            clv.confidence_interval[0], clv.confidence_interval[1]
        ),
        horizon_months: clv.horizon_months,
        expected_purchases: format!("{:.2}", clv.expected_purchases),
        horizon_days: churn.prediction_horizon_days,
        p_alive: format!("{:.3}", clv.p_alive),
        average_value: format!("{:.2}", clv.expected_average_value),
        churn_risk: format!("{:.3}", churn.churn_risk_score),
        churn_risk_timing: format!("{:.3}", churn.churn_risk_timing),
        risk_level: churn.risk_level,
        churn_model: churn.model,
        factors: churn
            .key_risk_factors
            .iter()
            .map(|f| FactorRow {
                factor: f.factor.clone(),
                value: format!("{:.3}", f.value),
                contribution: format!("{:+.3}", f.contribution),
            })
            .collect(),
        interventions: churn.recommended_interventions,
        strategy: recommended.as_ref().map(|r| r.strategy.clone()),
        actions: recommended
            .map(|r| {
                r.recommendations
                    .into_iter()
                    .map(|a| ActionRow {
                        action: a.action,
                        channel: a.channel,
                        rationale: a.rationale.unwrap_or_default(),
                        source: a.source.replace('_', " "),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

#[derive(askama::Template)]
#[template(path = "console/weber_user.html")]
struct UserPage {
    chrome: Chrome,
    user_id: String,
    /// `None` for a customer who buys without reviewing.
    profile: Option<ProfileFacts>,
    prediction: Option<PredictionFacts>,
    /// Why there is no prediction.
    prediction_missing: String,
    sentiment_chart: String,
    ratio_chart: String,
    history_len: usize,
    audit: Vec<AuditRow>,
}

async fn user_page(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    weber_reads::check_user_id("user_id", &user_id).map_err(|e| ConsoleError::Invalid(e.detail))?;
    let tenant_id = session.tenant_id();
    let (found, source) = state.profiles().read(&state, tenant_id, &user_id).await?;
    state.metrics().weber().profile_read(source.as_str());
    let prediction = prediction_facts(&state, tenant_id, &user_id, found.is_some()).await?;
    // A customer who buys without reviewing has a page for their prediction alone.
    let (prediction, prediction_missing) = match prediction {
        Ok(p) => (Some(p), String::new()),
        Err(_) if found.is_none() => {
            return Err(ConsoleError::NotFound(format!(
                "no Weber profile for user '{user_id}' in this tenant, and no prediction"
            )))
        }
        Err(why) => (None, why),
    };
    let params = state
        .profiles()
        .params_for(state.store(), tenant_id)
        .await?;
    let window = crate::profiles::window_u32(&params);
    let history = state
        .store()
        .interaction_windows(tenant_id, std::slice::from_ref(&user_id), window)
        .await?
        .into_iter()
        .next();
    let mut audit = state
        .store()
        .weber_calculations(tenant_id, &user_id, AUDIT_ROWS)
        .await?;
    // Stored newest first; the charts run oldest to newest.
    audit.reverse();
    let sentiment: Vec<(f64, f64)> = history
        .as_ref()
        .map(|w| {
            // The window is the last events of the history: its first is number total - len + 1.
            let first = w.total - w.events.len() as i64 + 1;
            w.events
                .iter()
                .zip(first..)
                .map(|(e, n)| (n as f64, e.sentiment))
                .collect()
        })
        .unwrap_or_default();
    let baseline: Vec<(f64, f64)> = audit
        .iter()
        .map(|c| (c.review_sequence as f64, c.baseline_sentiment))
        .collect();
    let ratios: Vec<(f64, f64)> = audit
        .iter()
        .map(|c| (c.review_sequence as f64, c.weber_ratio))
        .collect();
    let sentiment_chart = charts::line_chart(&LineChart {
        title: "Sentiment and baseline over the user's interactions",
        x_label: "interaction number",
        y_label: "sentiment (−1 to 1)",
        series: &[
            Series {
                label: "sentiment",
                points: &sentiment,
            },
            Series {
                label: "baseline at calculation",
                points: &baseline,
            },
        ],
        x_format: charts::whole_number,
    });
    let ratio_chart = charts::line_chart(&LineChart {
        title: "Weber ratio at each calculation",
        x_label: "interaction number",
        y_label: "Weber ratio",
        series: &[Series {
            label: "Weber ratio",
            points: &ratios,
        }],
        x_format: charts::whole_number,
    });
    page(
        StatusCode::OK,
        &UserPage {
            chrome: session.chrome(SECTION.id, format!("User {user_id}")),
            profile: found.as_ref().map(ProfileFacts::from),
            prediction,
            prediction_missing,
            user_id,
            sentiment_chart,
            ratio_chart,
            history_len: sentiment.len(),
            audit: audit.iter().rev().map(AuditRow::from).collect(),
        },
    )
}

#[derive(Deserialize)]
struct SegmentQuery {
    after: Option<String>,
}

struct MemberLink {
    user_id: String,
    href: String,
}

#[derive(askama::Template)]
#[template(path = "console/weber_segment.html")]
struct SegmentPage {
    chrome: Chrome,
    segment: &'static str,
    members: Vec<MemberLink>,
    /// Whether this is a later page (a link back to the first is shown).
    paged: bool,
    next_href: Option<String>,
}

async fn segment_page(
    State(state): State<AppState>,
    session: Session,
    Path(segment): Path<String>,
    Query(query): Query<SegmentQuery>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let after = query.after.filter(|a| !a.is_empty());
    let found = weber_reads::segment_users(
        state.store(),
        session.tenant_id(),
        &segment,
        after.as_deref(),
        Some(SEGMENT_PAGE),
    )
    .await
    .map_err(page_error)?;
    let segment = found.segment.as_str();
    page(
        StatusCode::OK,
        &SegmentPage {
            chrome: session.chrome(SECTION.id, format!("Segment {segment}")),
            segment,
            members: found
                .users
                .iter()
                .map(|u| MemberLink {
                    user_id: u.clone(),
                    href: user_href(u),
                })
                .collect(),
            paged: after.is_some(),
            next_href: found.next_after.map(|a| {
                format!(
                    "/console/weber/segments/{segment}?after={}",
                    form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
                )
            }),
        },
    )
}

/// A bad query parameter is the page's input being wrong (422 naming it); anything else keeps
/// the API's status.
fn page_error(e: ApiError) -> ConsoleError {
    if e.kind.status() == StatusCode::BAD_REQUEST {
        ConsoleError::Invalid(e.detail)
    } else {
        ConsoleError::Api(e)
    }
}

pub(super) fn user_href(user_id: &str) -> String {
    format!("/console/weber/users/{}", path_segment(user_id))
}

/// Percent-encodes everything but unreserved characters, so any user id is one path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_become_one_path_segment() {
        assert_eq!(path_segment("ann"), "ann");
        assert_eq!(path_segment("a/b c?d#é"), "a%2Fb%20c%3Fd%23%C3%A9");
    }
}
