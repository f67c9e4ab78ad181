//! Feedback: the tenant's recent items with the filters the service supports, and one item
//! with its scores, routing decision, policy trace and history. Reads need the read scope, as
//! the feedback API's; the page shows the redacted text only. A key holding `read_clear` gets a
//! button that asks for the original text through [`crate::feedback::FeedbackService::clear_text`],
//! which records the read (item history and audit log); the text is shown in that one answer.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use store::{FeedbackFilter, FeedbackStatus, Scope};

use super::llm::path_segment;
use super::{page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::feedback::{to_api_error, ItemView};
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "feedback",
    title: "Feedback",
    path: "/console/feedback",
    needs: Scope::Read,
};

/// Items the list shows.
const SHOWN: u32 = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/feedback", get(list_page))
        .route("/console/feedback/{id}", get(item_page).post(clear_text))
}

/// The list's filters (a GET form); empty fields filter nothing.
#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    violation: String,
    #[serde(default)]
    has_pii: String,
}

struct ItemRow {
    id: String,
    href: String,
    kind: String,
    tier: String,
    mode: String,
    status: &'static str,
    alignment: String,
    risk: String,
    violations: String,
    created: String,
}

fn score(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

impl From<&ItemView> for ItemRow {
    fn from(i: &ItemView) -> ItemRow {
        ItemRow {
            href: format!("/console/feedback/{}", path_segment(&i.id)),
            id: i.id.clone(),
            kind: i.kind.clone(),
            tier: i.tier.clone(),
            mode: i.mode.clone(),
            status: i.status.as_str(),
            alignment: score(i.alignment),
            risk: score(i.risk),
            violations: i.violations.join(", "),
            created: crate::rfc3339_ms(i.occurred_at_ms),
        }
    }
}

struct Choice {
    value: &'static str,
    selected: bool,
}

#[derive(askama::Template)]
#[template(path = "console/feedback.html")]
struct ListPage {
    chrome: Chrome,
    items: Vec<ItemRow>,
    statuses: Vec<Choice>,
    kind: String,
    violation: String,
    has_pii: String,
}

async fn list_page(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let status = match filter.status.as_str() {
        "" => None,
        s => Some(FeedbackStatus::parse(s).ok_or_else(|| {
            ConsoleError::Invalid(
                "field `status`: must be received, processing, processed, needs_review, failed or purged"
                    .to_owned(),
            )
        })?),
    };
    let has_pii = match filter.has_pii.as_str() {
        "" => None,
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            return Err(ConsoleError::Invalid(
                "field `has_pii`: must be true or false".to_owned(),
            ))
        }
    };
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let query = FeedbackFilter {
        from_ms: None,
        to_ms: None,
        status,
        kind: nonempty(&filter.r#type),
        channel: None,
        region: None,
        user_id: None,
        min_alignment: None,
        max_alignment: None,
        has_pii,
        violation: nonempty(&filter.violation).map(|v| v.to_ascii_uppercase()),
        after: None,
        limit: SHOWN,
    };
    let items = state
        .feedback()
        .list(&state, session.tenant_id(), &query)
        .await
        .map_err(to_api_error)?;
    page(
        StatusCode::OK,
        &ListPage {
            chrome: session.chrome(SECTION.id, "Feedback"),
            items: items.items.iter().map(ItemRow::from).collect(),
            statuses: FeedbackStatus::ALL
                .iter()
                .map(|s| Choice {
                    value: s.as_str(),
                    selected: status == Some(*s),
                })
                .collect(),
            kind: filter.r#type,
            violation: filter.violation,
            has_pii: filter.has_pii,
        },
    )
}

/// A principle's score in the trace.
struct PrincipleRow {
    principle: String,
    weight: String,
    score: String,
}

/// A fired rule in the trace.
struct RuleRow {
    rule_id: String,
    principle: String,
    kind: String,
    severity: String,
    penalty: String,
    contribution: String,
    counterfactual: String,
    description: String,
    evidence: String,
}

/// The policy trace, read from the stored JSON (the engine's `PolicyOutcome`).
struct TraceView {
    alignment: String,
    threshold: String,
    passed: bool,
    vetoed_by: Option<String>,
    principles: Vec<PrincipleRow>,
    rules: Vec<RuleRow>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> String {
    v.as_f64().map(|n| format!("{n:.3}")).unwrap_or_default()
}

fn trace_view(trace: &Value) -> Option<TraceView> {
    let obj = trace.as_object()?;
    let list = |name: &str| {
        obj.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Some(TraceView {
        alignment: number(obj.get("alignment")?),
        threshold: obj.get("threshold").map(number).unwrap_or_default(),
        passed: obj.get("passed").and_then(Value::as_bool).unwrap_or(false),
        vetoed_by: obj.get("vetoed_by").filter(|v| !v.is_null()).map(text),
        principles: list("principles")
            .iter()
            .map(|p| PrincipleRow {
                principle: text(&p["principle"]),
                weight: number(&p["weight"]),
                score: number(&p["score"]),
            })
            .collect(),
        rules: list("trace")
            .iter()
            .map(|r| RuleRow {
                rule_id: text(&r["rule_id"]),
                principle: text(&r["principle"]),
                kind: text(&r["kind"]),
                severity: text(&r["severity"]),
                penalty: number(&r["penalty"]),
                contribution: number(&r["contribution"]),
                counterfactual: number(&r["counterfactual_alignment"]),
                description: text(&r["description"]),
                evidence: r["evidence"]
                    .as_array()
                    .map(|spans| {
                        spans
                            .iter()
                            .map(|e| {
                                let chars = &e["chars"];
                                format!(
                                    "{} (characters {}–{})",
                                    text(&e["label"]),
                                    text(&chars["start"]),
                                    text(&chars["end"])
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    })
}

struct HistoryRow {
    at: String,
    status: &'static str,
    event: String,
    detail: String,
}

#[derive(askama::Template)]
#[template(path = "console/feedback_item.html")]
struct ItemPage {
    chrome: Chrome,
    item: ItemView,
    href: String,
    sentiment: String,
    alignment: String,
    risk: String,
    pii: Vec<(String, usize, usize, String)>,
    trace: Option<TraceView>,
    history: Vec<HistoryRow>,
    can_read_clear: bool,
    /// Only in the answer to the `read_clear` post.
    clear_text: Option<Option<String>>,
}

async fn render_item(
    state: &AppState,
    session: &Session,
    id: &str,
    clear_text: Option<Option<String>>,
) -> Result<Response, ConsoleError> {
    let service = state.feedback();
    let item = service
        .item(state, session.tenant_id(), id)
        .await
        .map_err(to_api_error)?;
    let trace = service
        .trace(state, session.tenant_id(), id)
        .await
        .map_err(to_api_error)?;
    let history = item
        .history
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|h| HistoryRow {
            at: crate::rfc3339_ms(h.at_ms),
            status: h.status.as_str(),
            event: h.event.clone(),
            detail: if h.detail.is_null() {
                String::new()
            } else {
                h.detail.to_string()
            },
        })
        .collect();
    let view = ItemPage {
        chrome: session.chrome(
            SECTION.id,
            format!("Feedback item {}", crate::problem::excerpt(id, 80)),
        ),
        href: format!("/console/feedback/{}", path_segment(id)),
        sentiment: score(item.sentiment),
        alignment: score(item.alignment),
        risk: score(item.risk),
        pii: item
            .pii
            .iter()
            .map(|p| {
                (
                    p.entity_type.clone(),
                    p.start,
                    p.end,
                    format!("{:.2}", p.confidence),
                )
            })
            .collect(),
        trace: trace_view(&trace),
        history,
        can_read_clear: session.can(Scope::ReadClear),
        clear_text,
        item,
    };
    let mut response = page(StatusCode::OK, &view)?;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn item_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    render_item(&state, &session, &id, None).await
}

/// `POST /console/feedback/{id}`: the original text, for a key with `read_clear`, through the
/// service call that records the read. A post, not a link: the read has an effect (the record).
async fn clear_text(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, .. }: Submitted<serde::de::IgnoredAny>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::ReadClear)?;
    let text = state
        .feedback()
        .clear_text(&state, session.tenant_id(), &id, &session.principal.key_id)
        .await
        .map_err(to_api_error)?;
    render_item(&state, &session, &id, Some(text)).await
}
