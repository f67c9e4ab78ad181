//! A flag's guarded rollout, as a section of the flag's page: the plan, current step, last safe
//! step, the last check's figures and the history with each action's reason (read scope, as
//! `GET /api/v1/flags/{key}/rollout`), and for admin keys the advance / rollback / abort
//! buttons, which call [`RolloutService::manual`] as the API's routes do.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::Router;
use flags::guard::ManualEvent;
use serde::Deserialize;
use store::{RolloutKey, Scope};

use super::{ConsoleError, Session, Submitted};
use crate::extract::check_environment;
use crate::rollouts::{RolloutService, RolloutView};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/console/flags/{environment}/{key}/rollout/{action}",
        post(act),
    )
}

/// History rows the section shows (newest first).
const HISTORY_SHOWN: usize = 50;

struct StepRow {
    index: usize,
    percent: String,
    current: bool,
    safe: bool,
}

struct HistoryRow {
    at: String,
    event: String,
    step: String,
    percent: String,
    actor: String,
    reason: String,
    detail: String,
}

struct RampCard {
    status: String,
    mode: String,
    percent: String,
    step: i64,
    last_safe_step: String,
    evaluation_period_seconds: u32,
    step_seconds: String,
    on_breach: String,
    guardrails: Vec<String>,
    last_check: String,
    steps: Vec<StepRow>,
    history: Vec<HistoryRow>,
    /// Which admin buttons apply in this status.
    can_advance: bool,
    can_rollback: bool,
    can_abort: bool,
}

fn percent(bp: i64) -> String {
    format!("{}%", bp as f64 / 100.0)
}

fn card_of(view: RolloutView) -> RampCard {
    let plan = &view.plan;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let steps: Vec<i64> = plan["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|v| v.as_i64()).collect())
        .unwrap_or_default();
    let active = view.status == "active";
    RampCard {
        mode: text(&plan["mode"]),
        percent: percent(view.rollout_bp),
        step: view.step,
        last_safe_step: view
            .last_safe_step
            .map_or_else(|| "none yet".to_owned(), |s| s.to_string()),
        evaluation_period_seconds: plan["evaluation_period_seconds"].as_u64().unwrap_or(0) as u32,
        step_seconds: plan["step_seconds"]
            .as_u64()
            .map_or_else(|| "manual".to_owned(), |s| format!("{s} s")),
        on_breach: text(&plan["on_breach"]),
        guardrails: plan["guardrails"]
            .as_array()
            .map(|g| g.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default(),
        last_check: view
            .last_check
            .as_ref()
            .map(|c| {
                format!(
                    "{} at {}: {} ({})",
                    c["action"]["action"].as_str().unwrap_or("?"),
                    view.last_check_ms
                        .map(crate::rfc3339_ms)
                        .unwrap_or_default(),
                    c["reason"].as_str().unwrap_or("?"),
                    c["guardrails"]
                )
            })
            .unwrap_or_else(|| "not checked yet".to_owned()),
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, bp)| StepRow {
                index: i,
                percent: percent(*bp),
                current: i64::try_from(i).ok() == Some(view.step),
                safe: view
                    .last_safe_step
                    .is_some_and(|s| i64::try_from(i).is_ok_and(|i| i <= s)),
            })
            .collect(),
        history: view
            .history
            .iter()
            .rev()
            .take(HISTORY_SHOWN)
            .map(|h| HistoryRow {
                at: crate::rfc3339_ms(h.at_ms),
                event: h.event.clone(),
                step: h.step.map(|s| s.to_string()).unwrap_or_default(),
                percent: percent(h.rollout_bp),
                actor: h.actor.clone(),
                reason: h.detail["reason"].as_str().unwrap_or_default().to_owned(),
                detail: h.detail.to_string(),
            })
            .collect(),
        can_advance: active || view.status == "rolled_back",
        can_rollback: active,
        can_abort: active || view.status == "rolled_back",
        status: view.status,
    }
}

#[derive(askama::Template)]
#[template(path = "console/flag_rollout.html")]
struct RolloutSection {
    ramp: Option<RampCard>,
    can_admin: bool,
    csrf: String,
    base_path: String,
}

/// The flag page's guarded-rollout section, rendered (the caller checked the read scope).
pub(super) async fn section(
    state: &AppState,
    session: &Session,
    environment: &str,
    key: &str,
    base_path: &str,
) -> Result<String, ConsoleError> {
    let view = RolloutService
        .find(
            state,
            RolloutKey {
                tenant_id: session.tenant_id(),
                environment,
                flag_key: key,
            },
        )
        .await?;
    let section = RolloutSection {
        ramp: view.map(card_of),
        can_admin: session.can(Scope::Admin),
        csrf: session.csrf.clone(),
        base_path: base_path.to_owned(),
    };
    askama::Template::render(&section).map_err(|e| {
        tracing::error!(error = %e, "console template failed to render");
        ConsoleError::Internal
    })
}

#[derive(Deserialize)]
struct ActForm {}

/// `POST …/rollout/{advance|rollback|abort}` (admin scope, as the API's routes).
async fn act(
    State(state): State<AppState>,
    Path((environment, key, action)): Path<(String, String, String)>,
    Submitted { session, form: _ }: Submitted<ActForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let environment = check_environment(environment)?;
    let event = match action.as_str() {
        "advance" => ManualEvent::Advance,
        "rollback" => ManualEvent::Rollback,
        "abort" => ManualEvent::Abort,
        _ => {
            return Err(ConsoleError::Invalid(
                "the action must be advance, rollback or abort".to_owned(),
            ))
        }
    };
    RolloutService
        .manual(
            &state,
            RolloutKey {
                tenant_id: session.tenant_id(),
                environment: &environment,
                flag_key: &key,
            },
            &session.principal.key_id,
            event,
            crate::jobs::now_ms(),
        )
        .await?;
    let path = format!(
        "/console/flags/{}/{}",
        super::flags::encode_segment(&environment),
        super::flags::encode_segment(&key)
    );
    Ok(Redirect::to(&path).into_response())
}
