//! Predictions: the tenant's fitted lifetime model (parameters, fit, held-out accuracy with the
//! weekly tracking chart), how churn risk and CLV spread over its customers, the customers at
//! highest risk and of highest CLV a page at a time (linking to their Weber page), and a
//! "Refit now" button for admin keys. Read scope like the prediction API's reads; the refit
//! needs admin, as `POST /api/v1/predictions/refit` does, and enqueues the same job. Every read
//! goes through [`crate::predictions::PredictionService`].

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use store::{BusinessMetricsRecord, MetricsOrder, Scope};

use super::charts::{self, LineChart, Series};
use super::{page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::predictions::{PredictionReadError, PredictionService};
use crate::problem::ApiError;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "predictions",
    title: "Predictions",
    path: "/console/predictions",
    needs: Scope::Read,
};

/// Customers per page of the ranked tables.
const PAGE_ROWS: u32 = 20;
/// The furthest page a ranked table goes to (keeps offsets bounded).
const MAX_PAGE: u64 = 5_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/predictions", get(predictions_page))
        .route("/console/predictions/refit", post(refit))
}

/// A read failure as the console shows it: nothing fitted is a 404 with the reason, a stored
/// model this build cannot read is logged and shown as an internal error.
pub(super) fn read_error(e: PredictionReadError) -> ConsoleError {
    match e {
        PredictionReadError::NotFound(missing) => ConsoleError::NotFound(missing.to_string()),
        PredictionReadError::Store(e) => ConsoleError::Api(e.into()),
        PredictionReadError::CorruptModel { version, reason } => {
            tracing::error!(version, reason, "stored prediction model cannot be read");
            ConsoleError::Internal
        }
    }
}

#[derive(Deserialize, Default)]
struct PageQuery {
    risk_page: Option<String>,
    clv_page: Option<String>,
    /// Set after a refit was queued: the job's id, shown in a notice.
    refit_job: Option<String>,
}

/// A 1-based page number from the query, naming the field when it is not one.
fn page_number(field: &str, raw: Option<&str>) -> Result<u64, ConsoleError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(1),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ConsoleError::Invalid(format!(
                "field `{field}`: a page number from 1 to {MAX_PAGE}, got '{s}'"
            ))),
        },
    }
}

/// One fact of the model card.
struct Fact {
    name: &'static str,
    value: String,
}

/// The model card, formatted.
struct Card {
    version: String,
    fitted_at: String,
    observation_end: String,
    customers: i64,
    churn_model: String,
    bgnbd: Vec<Fact>,
    gamma_gamma: Vec<Fact>,
    settings: Vec<Fact>,
    evaluation: Option<Vec<Fact>>,
    tracking_chart: Option<String>,
    tracking_rows: Vec<TrackingRow>,
    importance: Vec<Fact>,
}

struct TrackingRow {
    week_start: String,
    actual: String,
    predicted: String,
}

/// One customer of a ranked table.
struct CustomerRow {
    rank: u64,
    user_id: String,
    href: String,
    clv: String,
    interval: String,
    risk: String,
    level: String,
    p_alive: String,
    strategy: String,
}

/// A ranked table with its paging links.
struct Ranked {
    /// Section id (the paging links' anchor).
    id: &'static str,
    title: &'static str,
    rows: Vec<CustomerRow>,
    page: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

struct Bar {
    label: String,
    customers: i64,
}

#[derive(askama::Template)]
#[template(path = "console/predictions.html")]
struct PredictionsPage {
    chrome: Chrome,
    card: Option<Card>,
    customers: i64,
    total_clv: String,
    risk_chart: String,
    risk_bars: Vec<Bar>,
    clv_chart: String,
    clv_bars: Vec<Bar>,
    /// Highest risk, then highest CLV.
    tables: Vec<Ranked>,
    refit_job: Option<String>,
}

fn number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

fn fact(name: &'static str, value: String) -> Fact {
    Fact { name, value }
}

fn day_text(day: i64) -> String {
    crate::rfc3339_ms(day.saturating_mul(86_400_000))
        .get(..10)
        .map_or_else(String::new, str::to_owned)
}

fn card(found: &crate::predictions::ModelCard) -> Card {
    let m = &found.model;
    let b = &m.bgnbd;
    let g = &m.gamma_gamma;
    let evaluation = m.evaluation.as_ref();
    let tracking: Vec<(f64, f64, f64)> = evaluation
        .map(|e| {
            e.weekly_tracking
                .iter()
                .map(|w| {
                    (
                        f64::from(w.week_start_day),
                        w.actual_cumulative,
                        w.predicted_cumulative,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let actual: Vec<(f64, f64)> = tracking.iter().map(|(d, a, _)| (*d, *a)).collect();
    let predicted: Vec<(f64, f64)> = tracking.iter().map(|(d, _, p)| (*d, *p)).collect();
    let tracking_chart = (!tracking.is_empty()).then(|| {
        charts::line_chart(&LineChart {
            title: "Held-out purchases, cumulative by week: actual and predicted",
            x_label: "week starting",
            y_label: "purchases (cumulative)",
            series: &[
                Series {
                    label: "actual",
                    points: &actual,
                },
                Series {
                    label: "predicted",
                    points: &predicted,
                },
            ],
            x_format: |day| day_text(day as i64),
        })
    });
    let auc = |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |a| number(a, 3));
    Card {
        version: found.model_version.clone(),
        fitted_at: crate::rfc3339_ms(found.fitted_at_ms),
        observation_end: day_text(found.observation_end_day),
        customers: found.customers,
        churn_model: m.weber_model_status.clone(),
        bgnbd: vec![
            fact("r", number(b.params.r, 4)),
            fact("alpha", number(b.params.alpha, 4)),
            fact("a", number(b.params.a, 4)),
            fact("b", number(b.params.b, 4)),
            fact("log-likelihood", number(b.log_likelihood, 2)),
            fact("customers", b.customers.to_string()),
        ],
        gamma_gamma: vec![
            fact("p", number(g.params.p, 4)),
            fact("q", number(g.params.q, 4)),
            fact("v", number(g.params.v, 4)),
            fact("log-likelihood", number(g.log_likelihood, 2)),
            fact("customers", g.customers.to_string()),
            fact(
                "left out (no repeat purchase / zero value)",
                format!("{} / {}", g.excluded_no_repeat, g.excluded_zero_value),
            ),
        ],
        settings: vec![
            fact(
                "Churn horizon",
                format!("{} days", m.settings.churn_horizon_days),
            ),
            fact(
                "CLV horizon",
                format!(
                    "{} months at {} % a month",
                    m.settings.clv_months,
                    number(m.settings.monthly_discount_rate * 100.0, 2)
                ),
            ),
        ],
        evaluation: evaluation.map(|e| {
            vec![
                fact(
                    "holdout",
                    format!(
                        "{} to {}",
                        day_text(i64::from(e.holdout_start_day)),
                        day_text(i64::from(e.holdout_end_day))
                    ),
                ),
                fact("customers", e.customers.to_string()),
                fact(
                    "mean absolute error (purchases per customer)",
                    number(e.mae_purchases, 3),
                ),
                fact(
                    "purchases: actual / predicted",
                    format!(
                        "{} / {}",
                        number(e.actual_total, 0),
                        number(e.predicted_total, 1)
                    ),
                ),
                fact("churn AUC, timing only", auc(e.auc_timing)),
                fact("churn AUC, Weber-enhanced", auc(e.auc_weber)),
                fact(
                    "AUC customers (churned)",
                    format!("{} ({})", e.auc_customers, e.auc_churned),
                ),
            ]
        }),
        tracking_chart,
        tracking_rows: tracking
            .iter()
            .map(|(d, a, p)| TrackingRow {
                week_start: day_text(*d as i64),
                actual: number(*a, 0),
                predicted: number(*p, 1),
            })
            .collect(),
        importance: m
            .weber_features_importance()
            .into_iter()
            .filter(|(_, share)| share.is_finite())
            .map(|(name, share)| Fact {
                name: "",
                value: format!("{name}: {} %", number(share * 100.0, 1)),
            })
            .collect(),
    }
}

fn customer_row(rank: u64, r: &BusinessMetricsRecord) -> CustomerRow {
    CustomerRow {
        rank,
        user_id: r.user_id.clone(),
        href: super::weber::user_href(&r.user_id),
        clv: number(r.predicted_clv, 2),
        interval: format!("{} to {}", number(r.clv_low, 2), number(r.clv_high, 2)),
        risk: number(r.churn_risk_score, 3),
        level: r.risk_level.clone(),
        p_alive: number(r.p_alive, 3),
        strategy: r
            .recommendation_strategy
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
    }
}

async fn ranked(
    (id, title): (&'static str, &'static str),
    state: &AppState,
    tenant_id: &str,
    order: MetricsOrder,
    page_no: u64,
    href: impl Fn(u64) -> String,
) -> Result<Ranked, ConsoleError> {
    let offset = (page_no - 1) * u64::from(PAGE_ROWS);
    // One more than shown tells whether a next page exists.
    let rows = PredictionService::ranked(state, tenant_id, order, offset, PAGE_ROWS + 1).await?;
    let more = rows.len() > PAGE_ROWS as usize;
    Ok(Ranked {
        id,
        title,
        rows: rows
            .iter()
            .take(PAGE_ROWS as usize)
            .zip(offset + 1..)
            .map(|(r, rank)| customer_row(rank, r))
            .collect(),
        page: page_no,
        prev_href: (page_no > 1).then(|| href(page_no - 1)),
        next_href: (more && page_no < MAX_PAGE).then(|| href(page_no + 1)),
    })
}

async fn predictions_page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let risk_page = page_number("risk_page", query.risk_page.as_deref())?;
    let clv_page = page_number("clv_page", query.clv_page.as_deref())?;
    let tenant_id = session.tenant_id();
    let card = state
        .predictions()
        .model_card(&state, tenant_id)
        .await
        .map_err(read_error)?;
    let spread = PredictionService::distribution(&state, tenant_id).await?;
    let risk_bars: Vec<Bar> = spread
        .by_risk_level
        .iter()
        .map(|(level, n)| Bar {
            label: (*level).to_owned(),
            customers: *n,
        })
        .collect();
    let clv_bars: Vec<Bar> = spread
        .clv_buckets
        .iter()
        .map(|b| Bar {
            label: match b.high {
                Some(high) => format!(
                    "{}–{}",
                    charts::format_number(b.low),
                    charts::format_number(high)
                ),
                None => format!("≥ {}", charts::format_number(b.low)),
            },
            customers: b.customers,
        })
        .collect();
    let chart = |title: &str, bars: &[Bar]| {
        let points: Vec<(&str, f64)> = bars
            .iter()
            .map(|b| (b.label.as_str(), b.customers as f64))
            .collect();
        charts::bar_chart(
            title,
            "customers",
            if spread.customers == 0 { &[] } else { &points },
        )
    };
    let risk_chart = chart("Customers per churn risk level", &risk_bars);
    let clv_chart = chart("Customers per predicted CLV range", &clv_bars);
    let by_risk = ranked(
        ("at-risk", "Highest churn risk"),
        &state,
        tenant_id,
        MetricsOrder::ChurnRiskDesc,
        risk_page,
        |n| format!("/console/predictions?risk_page={n}&clv_page={clv_page}#at-risk"),
    )
    .await?;
    let by_clv = ranked(
        ("top-clv", "Highest CLV"),
        &state,
        tenant_id,
        MetricsOrder::ClvDesc,
        clv_page,
        |n| format!("/console/predictions?risk_page={risk_page}&clv_page={n}#top-clv"),
    )
    .await?;
    page(
        StatusCode::OK,
        &PredictionsPage {
            chrome: session.chrome(SECTION.id, "Predictions"),
            card: card.as_ref().map(card_of),
            customers: spread.customers,
            total_clv: number(spread.total_clv, 2),
            risk_chart,
            risk_bars,
            clv_chart,
            clv_bars,
            tables: vec![by_risk, by_clv],
            refit_job: query.refit_job.filter(|j| {
                !j.is_empty()
                    && j.len() <= 64
                    && j.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }),
        },
    )
}

fn card_of(found: &crate::predictions::ModelCard) -> Card {
    card(found)
}

/// `POST /console/predictions/refit` (admin, CSRF-checked): enqueues the
/// `weber.refit_predictions` job as `POST /api/v1/predictions/refit` does, then shows the page
/// with the job's id.
async fn refit(
    State(state): State<AppState>,
    Submitted { session, .. }: Submitted<serde::de::IgnoredAny>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let request = crate::jobs::EnqueueRequest {
        handler: crate::jobs::WEBER_REFIT_PREDICTIONS.to_owned(),
        payload: serde_json::json!({}),
        ..crate::jobs::EnqueueRequest::default()
    };
    let enqueued = state
        .jobs()
        .enqueue(session.tenant_id(), &request, crate::jobs::now_ms())
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to(&format!(
        "/console/predictions?refit_job={}",
        enqueued.job.id
    ))
    .into_response())
}
