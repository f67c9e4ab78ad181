//! LLM usage and cost: the last 30 days per day (a chart and a table) and per model, the
//! monthly budget, the conversations seen lately, and one conversation's timeline. Reads need
//! the read scope, as the LLM API's; the numbers come from the same service calls
//! ([`crate::LlmService::usage`], [`crate::LlmService::budget_status`],
//! [`crate::LlmService::conversation`]), so the console and the API agree.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use llm::usage::UsageRow;
use llm::{Cost, LlmEvent};
use store::Scope;

use super::{charts, page, Chrome, ConsoleError, Section, Session};
use crate::llm::{UsageQuery, MAX_TIMELINE_EVENTS};
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "llm",
    title: "LLM",
    path: "/console/llm",
    needs: Scope::Read,
};

/// Most conversations the list shows.
const SHOWN_CONVERSATIONS: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/llm", get(usage_page))
        .route("/console/llm/conversations/{id}", get(conversation_page))
}

/// A usage row as the tables show it.
struct Row {
    label: String,
    calls: u64,
    errors: u64,
    tokens: u64,
    cost: String,
    unpriced: u64,
    p50: String,
    p95: String,
}

impl Row {
    fn new(label: String, r: &UsageRow) -> Row {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_default();
        Row {
            label,
            calls: r.calls,
            errors: r.errors,
            tokens: r.tokens.total,
            cost: format!("${}", r.cost_usd),
            unpriced: r.unpriced_calls,
            p50: ms(r.p50_ms),
            p95: ms(r.p95_ms),
        }
    }
}

/// A conversation of the list: its id, the link, the last day it had a model call.
struct ConversationLink {
    id: String,
    href: String,
    last_day: String,
    calls: u64,
    cost: String,
}

struct BudgetView {
    period: String,
    monthly: Option<String>,
    spent: String,
    percent_used: Option<String>,
    thresholds: String,
    crossings: Vec<(u8, String)>,
}

#[derive(askama::Template)]
#[template(path = "console/llm.html")]
struct UsagePage {
    chrome: Chrome,
    from: String,
    to: String,
    total: Row,
    cost_chart: String,
    per_day: Vec<Row>,
    per_model: Vec<Row>,
    budget: BudgetView,
    conversations: Vec<ConversationLink>,
}

fn usd(cost: Cost) -> String {
    format!("${}", cost.usd_string())
}

async fn usage_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let tenant = session.tenant_id();
    let now = crate::jobs::now_ms();
    let today = now.div_euclid(86_400_000);
    let query = |group_by: &str| {
        UsageQuery::parse(None, None, Some(group_by), today)
            .map_err(|e| ConsoleError::Invalid(e.reason))
    };
    let service = state.llm();
    let per_day = service.usage(state.store(), tenant, &query("day")?).await?;
    let per_model = service
        .usage(state.store(), tenant, &query("provider,model")?)
        .await?;
    let by_conversation = service
        .usage(state.store(), tenant, &query("day,conversation")?)
        .await?;
    let status = service
        .budget_status(state.store(), state.metrics(), tenant, now)
        .await?;

    let bars: Vec<(&str, f64)> = per_day
        .groups
        .iter()
        .map(|r| {
            (
                r.day.as_deref().unwrap_or(""),
                r.cost_picodollars as f64 / 1e12,
            )
        })
        .collect();
    let cost_chart = charts::bar_chart("Cost per day, US dollars", "USD", &bars);

    page(
        StatusCode::OK,
        &UsagePage {
            chrome: session.chrome(SECTION.id, "LLM usage and cost"),
            from: per_day.from.clone(),
            to: per_day.to.clone(),
            total: Row::new("All".to_owned(), &per_day.totals),
            cost_chart,
            per_day: per_day
                .groups
                .iter()
                .map(|r| Row::new(r.day.clone().unwrap_or_default(), r))
                .collect(),
            per_model: per_model
                .groups
                .iter()
                .map(|r| {
                    let label = format!(
                        "{} / {}",
                        r.provider.as_deref().unwrap_or("?"),
                        r.model.as_deref().unwrap_or("?")
                    );
                    Row::new(label, r)
                })
                .collect(),
            budget: budget_view(status),
            conversations: recent_conversations(&by_conversation.groups),
        },
    )
}

/// Conversations by the last day they had a model call, newest first (ties by id).
fn recent_conversations(rows: &[UsageRow]) -> Vec<ConversationLink> {
    let mut latest: std::collections::BTreeMap<&str, (&str, u64, u64)> = Default::default();
    for row in rows {
        let (Some(Some(id)), Some(day)) = (&row.conversation_id, &row.day) else {
            continue;
        };
        let entry = latest.entry(id.as_str()).or_insert((day.as_str(), 0, 0));
        if day.as_str() > entry.0 {
            entry.0 = day.as_str();
        }
        entry.1 += row.calls;
        entry.2 = entry.2.saturating_add(row.cost_picodollars);
    }
    let mut list: Vec<_> = latest.into_iter().collect();
    list.sort_by(|a, b| b.1 .0.cmp(a.1 .0).then(a.0.cmp(b.0)));
    list.into_iter()
        .take(SHOWN_CONVERSATIONS)
        .map(|(id, (day, calls, cost))| ConversationLink {
            href: format!("/console/llm/conversations/{}", path_segment(id)),
            id: id.to_owned(),
            last_day: day.to_owned(),
            calls,
            cost: usd(Cost::from_picodollars(cost)),
        })
        .collect()
}

fn budget_view(status: crate::llm::BudgetStatus) -> BudgetView {
    let monthly = status.budget.as_ref().map(|b| b.monthly);
    BudgetView {
        period: status.period.to_string(),
        monthly: monthly.map(usd),
        spent: usd(status.spent),
        percent_used: monthly.filter(|m| *m > Cost::ZERO).map(|m| {
            format!(
                "{:.1} %",
                status.spent.picodollars() as f64 * 100.0 / m.picodollars() as f64
            )
        }),
        thresholds: status
            .budget
            .as_ref()
            .map(|b| {
                b.thresholds
                    .iter()
                    .map(|t| format!("{t} %"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        crossings: status
            .crossings
            .iter()
            .map(|c| (c.threshold, crate::rfc3339_ms(c.crossed_at_ms)))
            .collect(),
    }
}

/// One event of a conversation's timeline.
struct TimelineRow {
    time: String,
    kind: &'static str,
    detail: String,
    status: String,
    tokens: String,
    cost: String,
    latency: String,
}

fn timeline_row(event: &LlmEvent) -> TimelineRow {
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let blank = String::new;
    match event {
        LlmEvent::ConversationStarted(e) => TimelineRow {
            time: crate::rfc3339_ms(e.time_ms),
            kind: "conversation started",
            detail: format!("channel {}", e.channel),
            status: blank(),
            tokens: blank(),
            cost: blank(),
            latency: blank(),
        },
        LlmEvent::ConversationCompleted(e) => TimelineRow {
            time: crate::rfc3339_ms(e.time_ms),
            kind: "conversation completed",
            detail: format!("channel {}", e.channel),
            status: e.resolution_status.clone(),
            tokens: blank(),
            cost: blank(),
            latency: blank(),
        },
        LlmEvent::MessageProcessed(e) => TimelineRow {
            time: crate::rfc3339_ms(e.time_ms),
            kind: "message",
            detail: format!(
                "{} {} on {}",
                e.direction.as_str(),
                e.message_type,
                e.channel
            ),
            status: blank(),
            tokens: blank(),
            cost: blank(),
            latency: blank(),
        },
        LlmEvent::ModelCall(c) => TimelineRow {
            time: crate::rfc3339_ms(c.time_ms),
            kind: "model call",
            detail: format!("{} / {} ({})", c.provider, c.model, c.operation.as_str()),
            status: match &c.error_type {
                Some(error) => format!("{}: {error}", c.status.as_str()),
                None => c.status.as_str().to_owned(),
            },
            tokens: format!(
                "{} in, {} out, {} total",
                c.tokens.input,
                c.tokens.output,
                llm::usage::TokensView::from(&c.tokens).total
            ),
            cost: c.cost().map(usd).unwrap_or_else(|| "unpriced".to_owned()),
            latency: ms(c.duration_us),
        },
        LlmEvent::IntegrationCall(c) => TimelineRow {
            time: crate::rfc3339_ms(c.time_ms),
            kind: "integration call",
            detail: format!("{} ({})", c.integration_id, c.integration_type),
            status: c.status.as_str().to_owned(),
            tokens: blank(),
            cost: blank(),
            latency: ms(c.duration_us),
        },
    }
}

#[derive(askama::Template)]
#[template(path = "console/llm_conversation.html")]
struct ConversationPage {
    chrome: Chrome,
    id: String,
    total: Row,
    events: Vec<TimelineRow>,
    truncated: bool,
}

async fn conversation_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let timeline = state
        .llm()
        .conversation(state.store(), session.tenant_id(), &id, MAX_TIMELINE_EVENTS)
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "no event names conversation `{}`",
                crate::problem::excerpt(&id, 80)
            ))
        })?;
    let total = UsageRow::new(
        &llm::usage::UsageKey::default(),
        &timeline.totals,
        &llm::usage::GroupBy::none(),
    );
    let truncated = timeline.events.len() >= MAX_TIMELINE_EVENTS as usize;
    page(
        StatusCode::OK,
        &ConversationPage {
            chrome: session.chrome(
                SECTION.id,
                format!("Conversation {}", crate::problem::excerpt(&id, 80)),
            ),
            total: Row::new("All model calls".to_owned(), &total),
            events: timeline.events.iter().map(timeline_row).collect(),
            truncated,
            id,
        },
    )
}

/// `text` as one URL path segment: unreserved bytes as they are, the rest percent-encoded.
pub(super) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(path_segment("conv-1_a.b~"), "conv-1_a.b~");
        assert_eq!(path_segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
