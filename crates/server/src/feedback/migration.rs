//! Staged traffic shift from a legacy feedback system (issue 20, seed 004's
//! `TrafficMigrationController`): the use cases behind `/api/v1/feedback/migration` and the
//! `feedback.migration_check` job.
//!
//! ```text
//! PUT plan ─▶ validate (feedback::migration) ─▶ create or check the flag ─▶ store, pending
//! :start   ─▶ running stage 0 ─▶ flag rollout_bp = stage share × 100
//!             + feedback.migration_check job, run_at = window end (same transaction)
//! check    ─▶ window figures from the database ─▶ judge ─▶ next stage | rolled_back | extended
//! ```
//!
//! Traffic moves by the flag's rollout (`flags` engine): variants `legacy` / `new`, default
//! `legacy`, the whole split on `new`, `rollout_bp` = the stage's share. The flag is bucketed by
//! the targeting key (the client's routing key), so a key once on `new` stays there while the
//! share grows. The flag is changed only through [`crate::flag_admin`], the path the flag
//! routes take (validation, write lock, version check, flag audit trail, change feed).
//!
//! The plan is the source of truth: each change commits (fenced by the plan's version, with its
//! history row, audit record and next check job) before the flag is set to the committed
//! state's share; every check first re-applies the plan's share to the flag, so a crash between
//! the two is repaired by the next check.

use feedback::migration::{
    self, judge, Event, Plan, PlanState, PlanStatus, Stage, Verdict, WindowMetrics,
};
use flags::{Flag, FlagStatus, FlagType, Variant};
use jobs::Priority;
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{MigrationChange, MigrationPlanRecord, NewJob, StoreError};
use utoipa::ToSchema;

use crate::flag_admin::{self, FlagTarget};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// `feedback.migration_check`.
pub const MIGRATION_CHECK: &str = "feedback.migration_check";
/// The dual-write forwarding job whose dead letters a window counts.
pub const FORWARD_LEGACY: &str = "feedback.forward_legacy";
/// The default flag environment a plan drives.
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// Attempts of a check job.
const CHECK_ATTEMPTS: u32 = 5;
/// Hard time limit of a check attempt.
const CHECK_TIMEOUT_MS: u64 = 60_000;
/// Actor of the changes the check job makes.
pub const CHECK_ACTOR: &str = "feedback.migration_check";

/// A plan as written (`PUT /api/v1/feedback/migration`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// The flag that routes traffic [default: `feedback-migration`].
    #[serde(default)]
    pub flag_key: Option<String>,
    /// The flag environment [default: `production`].
    #[serde(default)]
    pub environment: Option<String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One history row as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationHistoryView {
    pub seq: i64,
    pub at_ms: i64,
    /// `planned`, `started`, `passed`, `extended`, `advanced`, `rolled_back`, `aborted` or
    /// `completed`.
    pub event: String,
    pub stage: Option<i64>,
    /// The share of routing keys on `new` after the event, percent.
    pub new_percent: i64,
    pub actor: String,
    /// The verdict with the window's figures and the thresholds crossed, or `{"manual": true}`.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A plan and where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationView {
    /// How many plans the tenant has written (this one included).
    pub generation: i64,
    /// This plan's state changes.
    pub version: i64,
    pub flag_key: String,
    pub environment: String,
    /// `pending`, `running`, `completed`, `rolled_back` or `aborted`.
    pub status: String,
    /// The live stage's index (or the last one's when finished).
    pub stage: Option<i64>,
    /// The share of routing keys the plan sends to `new` now, percent.
    pub new_percent: i64,
    /// The share of the last stage that passed.
    pub last_healthy_percent: i64,
    /// When the live stage's monitoring window began (ms).
    pub stage_started_ms: Option<i64>,
    /// When the live stage is judged (ms), while running.
    pub check_due_ms: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    pub stages: Vec<Stage>,
    /// Every change, oldest first.
    pub history: Vec<MigrationHistoryView>,
}

/// What one check did.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// `judged`, or `stale` when the plan moved on since the check was scheduled.
    pub outcome: &'static str,
    /// The plan's status afterwards.
    pub status: Option<String>,
    /// The verdict, when judged.
    pub verdict: Option<Verdict>,
    /// The window's figures, when judged.
    pub window: Option<WindowMetrics>,
}

fn plan_of(record: &MigrationPlanRecord) -> Result<Plan, ApiError> {
    let stages: Vec<Stage> =
        serde_json::from_str(&record.stages).map_err(|_| ApiError::internal())?;
    Plan::new(stages).map_err(|_| ApiError::internal())
}

fn state_of(record: &MigrationPlanRecord) -> Result<PlanState, ApiError> {
    Ok(PlanState {
        status: PlanStatus::parse(&record.status).ok_or_else(ApiError::internal)?,
        stage: record.stage.and_then(|s| usize::try_from(s).ok()),
        last_healthy_percent: u8::try_from(record.last_healthy_percent)
            .map_err(|_| ApiError::internal())?,
    })
}

/// Reads a plan from JSON, naming the field at fault.
pub fn parse_plan(body: serde_json::Value) -> Result<(PlanSpec, Plan), ApiError> {
    let spec: PlanSpec = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ApiError::invalid_field(
                crate::extract::BODY_FIELD,
                format!("the request body must be a plan object: {inner}"),
            )
        } else {
            ApiError::invalid_field(&path, format!("field `{path}`: {inner}"))
        }
    })?;
    let valid_name = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if let Some(k) = spec.flag_key.as_deref().filter(|k| !valid_name(k)) {
        return Err(ApiError::invalid_field(
            "flag_key",
            format!(
                "field `flag_key`: `{}` is not 1 to 64 of A-Z a-z 0-9 _ . -",
                crate::problem::excerpt(k, 64)
            ),
        ));
    }
    if let Some(e) = spec.environment.as_deref().filter(|e| !valid_name(e)) {
        return Err(ApiError::invalid_field(
            "environment",
            format!(
                "field `environment`: `{}` is not 1 to 64 of A-Z a-z 0-9 _ . -",
                crate::problem::excerpt(e, 64)
            ),
        ));
    }
    // Well-typed stages that break the plan's rules (a repeated name, a falling share): 422.
    let plan = Plan::new(spec.stages.clone()).map_err(|e| {
        ApiError::new(
            ProblemKind::Unprocessable,
            format!("field `{}`: {}", e.path, e.message),
        )
        .with("field", e.path)
    })?;
    Ok((spec, plan))
}

/// The flag a plan creates: `legacy` / `new`, default and off `legacy`, the whole split on
/// `new`, rollout 0 (everyone on legacy until the plan starts).
pub fn migration_flag(key: &str) -> Flag {
    Flag {
        key: key.to_owned(),
        flag_type: FlagType::Percentage,
        status: FlagStatus::Active,
        description: Some(
            "Traffic shift from the legacy feedback system to signalbox (feedback migration plan)"
                .into(),
        ),
        variants: vec![
            Variant {
                key: migration::LEGACY_VARIANT.into(),
                value: json!(migration::LEGACY_VARIANT),
                weight_bp: 0,
                control: false,
            },
            Variant {
                key: migration::NEW_VARIANT.into(),
                value: json!(migration::NEW_VARIANT),
                weight_bp: 10_000,
                control: false,
            },
        ],
        default_variant: migration::LEGACY_VARIANT.into(),
        off_variant: migration::LEGACY_VARIANT.into(),
        rules: Vec::new(),
        rollout_bp: Some(0),
        bucket_by: None,
        kill_switch: false,
        environments: Default::default(),
        prerequisites: Vec::new(),
        tags: vec!["feedback-migration".into()],
        owner: None,
        expires_at: None,
        allowed_tenants: Vec::new(),
        required_tiers: Vec::new(),
        schedule: None,
        track_exposure: false,
        track_events: true,
    }
}

/// Why an existing flag cannot carry a plan, if it cannot.
fn unfit(flag: &Flag, environment: &str) -> Option<String> {
    let weight = |k: &str| {
        flag.variants
            .iter()
            .find(|v| v.key == k)
            .map(|v| v.weight_bp)
    };
    if weight(migration::LEGACY_VARIANT).is_none() || weight(migration::NEW_VARIANT) != Some(10_000)
    {
        return Some(
            "it needs variants `legacy` and `new` with the whole split (weight_bp 10000) on `new`"
                .into(),
        );
    }
    if flag.default_variant != migration::LEGACY_VARIANT
        || flag.off_variant != migration::LEGACY_VARIANT
    {
        return Some("its default and off variants must be `legacy`".into());
    }
    if !flag.rules.is_empty() || !flag.prerequisites.is_empty() {
        return Some("it must have no targeting rules or prerequisites (they would route keys around the rollout)".into());
    }
    if flag.bucket_by.is_some() {
        return Some("it must bucket by the targeting key (no `bucket_by`)".into());
    }
    if flag.schedule.as_ref().is_some_and(|s| s.ramp.is_some()) {
        return Some("it must have no rollout ramp (the plan sets the rollout)".into());
    }
    if flag
        .environments
        .get(environment)
        .is_some_and(|e| e.rollout_bp.is_some() || e.default_variant.is_some())
    {
        return Some(format!(
            "its `{environment}` override must not set rollout_bp or default_variant"
        ));
    }
    None
}

/// Creates the plan's flag, or checks that the existing one can carry the plan (409 naming
/// `flag_key` otherwise).
async fn ensure_flag(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    key: &str,
    actor: &str,
) -> Result<(), ApiError> {
    match state.store().flag(tenant_id, environment, key).await? {
        None => {
            let target = FlagTarget {
                tenant_id,
                environment,
                key,
                actor,
            };
            match flag_admin::create(state, target, &migration_flag(key)).await {
                Ok(_) => Ok(()),
                // Created concurrently: check it like an existing one.
                Err(e) if e.kind == ProblemKind::Conflict => {
                    Box::pin(ensure_flag(state, tenant_id, environment, key, actor)).await
                }
                Err(e) => Err(e),
            }
        }
        Some(record) => {
            let flag = flag_admin::definition_of(&record)?;
            match unfit(&flag, environment) {
                None => Ok(()),
                Some(why) => Err(ApiError::new(
                    ProblemKind::Conflict,
                    format!("flag `{key}` in environment `{environment}` cannot carry a traffic-shift plan: {why}"),
                )
                .with("field", "flag_key")),
            }
        }
    }
}

/// Sets the flag's rollout to `percent` through the flag admin service (a no-op when it is
/// there already; [`flag_admin::set_rollout`]). The migration flag has no environment
/// override of `rollout_bp` (see [`unfit`]), so its own rollout is the one set.
async fn set_rollout(
    state: &AppState,
    tenant_id: &str,
    record: &MigrationPlanRecord,
    percent: u8,
    actor: &str,
) -> Result<(), ApiError> {
    let target = FlagTarget {
        tenant_id,
        environment: &record.environment,
        key: &record.flag_key,
        actor,
    };
    flag_admin::set_rollout(state, target, u32::from(percent) * 100).await?;
    Ok(())
}

/// Sets the flag to the share the stored plan serves, reading the plan again afterwards: when
/// another change committed meanwhile, its share is set (so the flag ends at the latest
/// committed state's share). A pending plan does not drive the flag yet.
async fn sync_flag(state: &AppState, tenant_id: &str, actor: &str) -> Result<(), ApiError> {
    let mut seen: Option<(i64, i64)> = None;
    for _ in 0..3 {
        let Some(record) = state.store().migration_plan(tenant_id).await? else {
            return Ok(());
        };
        if seen == Some((record.generation, record.version)) {
            return Ok(());
        }
        seen = Some((record.generation, record.version));
        let plan_state = state_of(&record)?;
        if plan_state.status == PlanStatus::Pending {
            return Ok(());
        }
        let percent = plan_state.new_percent(&plan_of(&record)?);
        set_rollout(state, tenant_id, &record, percent, actor).await?;
    }
    Ok(())
}

fn view(
    record: MigrationPlanRecord,
    history: Vec<store::MigrationHistoryRecord>,
) -> Result<MigrationView, ApiError> {
    let plan = plan_of(&record)?;
    let plan_state = state_of(&record)?;
    let check_due_ms = match (plan_state.status, plan_state.stage, record.stage_started_ms) {
        (PlanStatus::Running, Some(k), Some(start)) => plan
            .stages
            .get(k)
            .map(|s| start.saturating_add(i64::from(s.monitoring_seconds) * 1000)),
        _ => None,
    };
    Ok(MigrationView {
        generation: record.generation,
        version: record.version,
        new_percent: i64::from(plan_state.new_percent(&plan)),
        flag_key: record.flag_key,
        environment: record.environment,
        status: record.status,
        stage: record.stage,
        last_healthy_percent: record.last_healthy_percent,
        stage_started_ms: record.stage_started_ms,
        check_due_ms,
        stages: plan.stages,
        history: history
            .into_iter()
            .map(|h| MigrationHistoryView {
                seq: h.seq,
                at_ms: h.at_ms,
                event: h.event,
                stage: h.stage,
                new_percent: h.new_percent,
                actor: h.actor,
                detail: serde_json::from_str(&h.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    })
}

/// The history event name of a transition.
fn event_name(event: &Event, after: PlanStatus) -> &'static str {
    match (event, after) {
        (Event::Start, _) => "started",
        (_, PlanStatus::Completed) => "completed",
        (_, PlanStatus::RolledBack) => "rolled_back",
        (_, PlanStatus::Aborted) => "aborted",
        (
            Event::Judged {
                verdict: Verdict::Inconclusive { .. },
                ..
            },
            _,
        ) => "extended",
        (Event::Judged { .. }, _) => "passed",
        _ => "advanced",
    }
}

fn no_plan() -> ApiError {
    ApiError::not_found(
        "the tenant has no traffic-shift plan; write one with PUT /api/v1/feedback/migration",
    )
}

/// The traffic-shift use cases; stateless (everything lives in the database).
#[derive(Debug, Default, Clone, Copy)]
pub struct MigrationService;

impl MigrationService {
    /// Writes a new plan (admin): validates it, creates or checks its flag, stores it pending.
    /// Refused (409) while the current plan runs.
    pub async fn put_plan(
        &self,
        state: &AppState,
        tenant_id: &str,
        actor: &str,
        body: serde_json::Value,
        now_ms: i64,
    ) -> Result<MigrationView, ApiError> {
        let (spec, plan) = parse_plan(body)?;
        let flag_key = spec
            .flag_key
            .unwrap_or_else(|| migration::DEFAULT_FLAG_KEY.to_owned());
        let environment = spec
            .environment
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
        if let Some(current) = state.store().migration_plan(tenant_id).await? {
            if current.status == PlanStatus::Running.as_str() {
                return Err(running_conflict());
            }
        }
        ensure_flag(state, tenant_id, &environment, &flag_key, actor).await?;
        let stages = serde_json::to_string(&plan.stages).map_err(|_| ApiError::internal())?;
        let record = state
            .store()
            .put_migration_plan(
                tenant_id,
                &environment,
                &flag_key,
                &stages,
                actor,
                &json!({ "stages": plan.stages.len() }),
                now_ms,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => running_conflict(),
                e => e.into(),
            })?;
        let history = state
            .store()
            .migration_history(tenant_id, record.generation)
            .await?;
        view(record, history)
    }

    /// The plan with its history (read).
    pub async fn get(&self, state: &AppState, tenant_id: &str) -> Result<MigrationView, ApiError> {
        let record = state
            .store()
            .migration_plan(tenant_id)
            .await?
            .ok_or_else(no_plan)?;
        let history = state
            .store()
            .migration_history(tenant_id, record.generation)
            .await?;
        view(record, history)
    }

    /// A manual step (admin): `start`, `advance` (pass the live stage without waiting),
    /// `rollback` (to the last healthy share) or `abort` (all traffic back to legacy).
    pub async fn manual(
        &self,
        state: &AppState,
        tenant_id: &str,
        actor: &str,
        event: Event,
        now_ms: i64,
    ) -> Result<MigrationView, ApiError> {
        let record = state
            .store()
            .migration_plan(tenant_id)
            .await?
            .ok_or_else(no_plan)?;
        if matches!(event, Event::Start) {
            ensure_flag(
                state,
                tenant_id,
                &record.environment,
                &record.flag_key,
                actor,
            )
            .await?;
        }
        let detail = json!({ "manual": true });
        let committed = self
            .transition(state, tenant_id, &record, &event, actor, &detail, now_ms)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ProblemKind::Conflict,
                    "the plan changed meanwhile (a check or another admin); read it and try again",
                )
            })?;
        sync_flag(state, tenant_id, actor).await?;
        let history = state
            .store()
            .migration_history(tenant_id, committed.generation)
            .await?;
        view(committed, history)
    }

    /// Applies `event` to the plan as read in `record`; `None` when the plan moved on.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        state: &AppState,
        tenant_id: &str,
        record: &MigrationPlanRecord,
        event: &Event,
        actor: &str,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Option<MigrationPlanRecord>, ApiError> {
        let plan = plan_of(record)?;
        let before = state_of(record)?;
        let (after, effect) = before.apply(&plan, event).map_err(|e| {
            ApiError::new(ProblemKind::Conflict, e.to_string())
                .with("status", record.status.clone())
        })?;
        let next_version = record.version + 1;
        let payload =
            json!({ "generation": record.generation, "version": next_version }).to_string();
        let idempotency = format!("feedback-migration:{}:{next_version}", record.generation);
        let window_ms = after
            .stage
            .and_then(|k| plan.stages.get(k))
            .map_or(0, |s| i64::from(s.monitoring_seconds) * 1000);
        let check = effect.watch.then(|| NewJob {
            handler: MIGRATION_CHECK,
            payload: &payload,
            priority: Priority::Normal,
            run_at_ms: now_ms.saturating_add(window_ms),
            expires_at_ms: None,
            max_attempts: CHECK_ATTEMPTS,
            timeout_ms: CHECK_TIMEOUT_MS,
            idempotency_key: Some(&idempotency),
        });
        let change = MigrationChange {
            status: after.status.as_str(),
            stage: after.stage.and_then(|k| i64::try_from(k).ok()),
            stage_started_ms: if effect.watch {
                Some(now_ms)
            } else {
                record.stage_started_ms
            },
            last_healthy_percent: i64::from(after.last_healthy_percent),
            event: event_name(event, after.status),
            new_percent: i64::from(after.new_percent(&plan)),
            actor,
            detail,
        };
        let committed = state
            .store()
            .change_migration_plan(
                tenant_id,
                record.generation,
                record.version,
                &change,
                check.as_ref(),
                now_ms,
            )
            .await?;
        Ok(committed.map(|(r, _)| r))
    }

    /// The `feedback.migration_check` job: re-applies the plan's share to the flag, then, if
    /// the plan is still at `(generation, version)` and running, judges the live stage's window
    /// from the database and moves the plan (next stage, rolled back, or the window extended).
    /// A check run before its window ends (by hand) judges the window so far.
    pub async fn check(
        &self,
        state: &AppState,
        tenant_id: &str,
        generation: i64,
        version: i64,
        now_ms: i64,
    ) -> Result<CheckOutcome, ApiError> {
        sync_flag(state, tenant_id, CHECK_ACTOR).await?;
        let stale = |status: Option<String>| CheckOutcome {
            outcome: "stale",
            status,
            verdict: None,
            window: None,
        };
        let Some(record) = state.store().migration_plan(tenant_id).await? else {
            return Ok(stale(None));
        };
        if record.generation != generation
            || record.version != version
            || record.status != PlanStatus::Running.as_str()
        {
            return Ok(stale(Some(record.status)));
        }
        let plan = plan_of(&record)?;
        let plan_state = state_of(&record)?;
        let Some((k, stage)) = plan_state
            .stage
            .and_then(|k| plan.stages.get(k).map(|s| (k, s)))
        else {
            return Ok(stale(Some(record.status)));
        };
        let from_ms = record.stage_started_ms.unwrap_or(now_ms);
        let window_end = from_ms.saturating_add(i64::from(stage.monitoring_seconds) * 1000);
        let to_ms = window_end.min(now_ms.saturating_add(1));
        let figures = state
            .store()
            .migration_window(tenant_id, from_ms, to_ms, FORWARD_LEGACY)
            .await?;
        let window = WindowMetrics {
            items: u64::try_from(figures.items).unwrap_or(0),
            failed: u64::try_from(figures.failed).unwrap_or(0),
            dead_letters: u64::try_from(figures.dead_letters).unwrap_or(0),
            p99_processing_ms: figures
                .p99_processing_ms
                .and_then(|p| u64::try_from(p).ok()),
        };
        let verdict = judge(&window, &stage.thresholds);
        let detail = json!({
            "verdict": verdict,
            "window": {
                "from_ms": from_ms,
                "to_ms": to_ms,
                "items": window.items,
                "failed": window.failed,
                "error_share": window.error_share(),
                "dead_letters": window.dead_letters,
                "p99_processing_ms": window.p99_processing_ms,
                "processed": figures.processed,
            },
            "thresholds": stage.thresholds,
        });
        let event = Event::Judged {
            stage: k,
            verdict: verdict.clone(),
        };
        let committed = self
            .transition(
                state,
                tenant_id,
                &record,
                &event,
                CHECK_ACTOR,
                &detail,
                now_ms,
            )
            .await?;
        let Some(committed) = committed else {
            return Ok(stale(None));
        };
        sync_flag(state, tenant_id, CHECK_ACTOR).await?;
        if let Verdict::Unhealthy { reasons } = &verdict {
            tracing::warn!(
                tenant_id,
                stage = %stage.name,
                thresholds = ?reasons.iter().map(|r| r.threshold.as_str()).collect::<Vec<_>>(),
                "traffic-shift stage rolled back"
            );
        }
        Ok(CheckOutcome {
            outcome: "judged",
            status: Some(committed.status),
            verdict: Some(verdict),
            window: Some(window),
        })
    }
}

fn running_conflict() -> ApiError {
    ApiError::new(
        ProblemKind::Conflict,
        "the tenant's traffic-shift plan is running; let it finish, or roll it back or abort it first",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_created_flag_can_carry_a_plan_and_validates() {
        let flag = migration_flag("feedback-migration");
        assert_eq!(unfit(&flag, "production"), None);
        flags::FlagSet::compile(vec![flag.clone()]).expect("the migration flag validates");
        let mut bad = flag;
        bad.default_variant = "new".into();
        assert!(unfit(&bad, "production").is_some());
    }

    /// The plan example in docs/feedback.md is a valid plan, and partial thresholds default.
    #[test]
    fn the_documented_plan_parses() {
        let doc = include_str!("../../../../docs/feedback.md");
        let (_, after) = doc
            .split_once("**The plan** (`PUT /api/v1/feedback/migration`, admin):\n\n```json\n")
            .expect("the plan example");
        let (block, _) = after.split_once("\n```").expect("the block ends");
        let body: serde_json::Value = serde_json::from_str(block).expect("JSON");
        let (spec, plan) = parse_plan(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.flag_key.as_deref(), Some(migration::DEFAULT_FLAG_KEY));
        assert_eq!(plan.stages.len(), 3);
        assert_eq!(plan.stages[0].thresholds.min_items, 200);
        assert_eq!(plan.stages[1].thresholds, migration::Thresholds::default());
        let partial = json!({"stages": [{"name": "a", "new_percent": 1, "monitoring_seconds": 10,
            "thresholds": {"min_items": 5}}]});
        let (_, plan) = parse_plan(partial).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.stages[0].thresholds.min_items, 5);
        assert_eq!(plan.stages[0].thresholds.max_error_share, 0.01);
    }
}
