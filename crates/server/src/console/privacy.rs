//! Privacy and migration: the tenant's differential-privacy budget in the current period with
//! its ledger (read scope, as `GET /api/v1/privacy/budget`), its signed research reports (read,
//! as `GET /api/v1/feedback/reports`), and, for admin keys, the legacy
//! traffic shift's plan, live stage and history (as `GET /api/v1/feedback/migration`). The page
//! only reads: budgets, queries and plan steps go through the API or the CLI, where each is
//! one audited use case.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use store::Scope;

use super::{page, Chrome, ConsoleError, Section, Session};
use crate::feedback::migration::{MigrationService, MigrationView};
use crate::feedback::private_analytics::{LedgerEntry, PrivacyLedger};
use crate::feedback::report::{self, ReportSummary};
use crate::problem::ProblemKind;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "privacy",
    title: "Privacy",
    path: "/console/privacy",
    needs: Scope::Read,
};

/// Ledger rows the page shows.
const SHOWN: u32 = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/privacy", get(privacy_page))
}

/// The budget as the page shows it.
struct BudgetCard {
    period: &'static str,
    configured: bool,
    period_start: String,
    period_end: String,
    epsilon_total: String,
    epsilon_spent: String,
    epsilon_remaining: String,
    delta_total: String,
    delta_spent: String,
    /// Spent share of ε, 0 to 100, for the meter.
    spent_percent: u32,
}

struct LedgerRow {
    id: i64,
    released_at: String,
    actor: String,
    kind: String,
    query: String,
    epsilon: String,
    delta: String,
}

impl From<LedgerEntry> for LedgerRow {
    fn from(e: LedgerEntry) -> LedgerRow {
        LedgerRow {
            id: e.id,
            released_at: e.released_at,
            actor: e.actor,
            kind: e.kind,
            query: e.query.to_string(),
            epsilon: format!("{}", e.epsilon),
            delta: if e.delta == 0.0 {
                "0".to_owned()
            } else {
                format!("{:e}", e.delta)
            },
        }
    }
}

struct StageRow {
    index: usize,
    name: String,
    new_percent: u8,
    monitoring_seconds: u32,
    live: bool,
}

struct HistoryRow {
    at: String,
    event: String,
    stage: String,
    new_percent: i64,
    actor: String,
    detail: String,
}

/// The traffic shift as the page shows it.
struct ShiftCard {
    flag_key: String,
    environment: String,
    status: String,
    new_percent: i64,
    last_healthy_percent: i64,
    check_due: String,
    stages: Vec<StageRow>,
    history: Vec<HistoryRow>,
}

impl From<MigrationView> for ShiftCard {
    fn from(v: MigrationView) -> ShiftCard {
        let live = v.stage.and_then(|s| usize::try_from(s).ok());
        ShiftCard {
            stages: v
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageRow {
                    index: i,
                    name: s.name.clone(),
                    new_percent: s.new_percent,
                    monitoring_seconds: s.monitoring_seconds,
                    live: v.status == "running" && live == Some(i),
                })
                .collect(),
            history: v
                .history
                .iter()
                .rev()
                .map(|h| HistoryRow {
                    at: crate::rfc3339_ms(h.at_ms),
                    event: h.event.clone(),
                    stage: h.stage.map(|s| s.to_string()).unwrap_or_default(),
                    new_percent: h.new_percent,
                    actor: h.actor.clone(),
                    detail: h.detail.to_string(),
                })
                .collect(),
            check_due: v.check_due_ms.map(crate::rfc3339_ms).unwrap_or_default(),
            flag_key: v.flag_key,
            environment: v.environment,
            status: v.status,
            new_percent: v.new_percent,
            last_healthy_percent: v.last_healthy_percent,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/privacy.html")]
struct PrivacyPage {
    chrome: Chrome,
    budget: BudgetCard,
    ledger: Vec<LedgerRow>,
    reports: Vec<ReportSummary>,
    /// `None` for keys without the admin scope (the plan is admin-only, as in the API).
    shift: Option<Option<ShiftCard>>,
}

async fn privacy_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let tenant = session.tenant_id();
    let ledger = PrivacyLedger::new(state.store().clone());
    let budget = ledger.state(tenant, crate::jobs::now_ms()).await?;
    let rows = ledger
        .ledger(tenant, budget.period_start_ms, None, SHOWN)
        .await?;
    let reports = report::list(&state, tenant, SHOWN)
        .await
        .map_err(report::to_api_error)?;
    let remaining = budget.remaining();
    let total = budget.budget.epsilon.nanos();
    let spent_percent = if total == 0 {
        100
    } else {
        // At most 100: the ledger never spends past the total.
        (u128::from(budget.spent.epsilon.nanos()) * 100 / u128::from(total)).min(100) as u32
    };
    let can_admin = session.chrome(SECTION.id, "").can_admin;
    let shift = if can_admin {
        match MigrationService.get(&state, tenant).await {
            Ok(view) => Some(Some(ShiftCard::from(view))),
            Err(e) if e.kind == ProblemKind::NotFound => Some(None),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    page(
        StatusCode::OK,
        &PrivacyPage {
            chrome: session.chrome(SECTION.id, "Privacy"),
            budget: BudgetCard {
                period: budget.budget.period.as_str(),
                configured: budget.configured,
                period_start: crate::rfc3339_ms(budget.period_start_ms),
                period_end: crate::rfc3339_ms(budget.period_end_ms),
                epsilon_total: format!("{}", budget.budget.epsilon),
                epsilon_spent: format!("{}", budget.spent.epsilon),
                epsilon_remaining: format!("{}", remaining.epsilon),
                delta_total: format!("{}", budget.budget.delta),
                delta_spent: format!("{}", budget.spent.delta),
                spent_percent,
            },
            ledger: rows.into_iter().map(LedgerRow::from).collect(),
            reports,
            shift,
        },
    )
}
