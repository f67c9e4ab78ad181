//! Guarded rollouts (issue 21): a flag's rollout raised step by step in one environment while
//! guardrails are watched; the use cases behind `/api/v1/flags/{key}/rollout` and the
//! `flags.rollout_check` job.
//!
//! ```text
//! PUT plan ─▶ validate (flags::guard) ─▶ store the ramp at step 0 + first check job
//!            (one transaction) ─▶ flag rollout = steps[0]
//! check    ─▶ re-apply the ramp's rollout ─▶ read each guardrail for the period ─▶ decide
//!            (flags::guard::decide) ─▶ hold | advance | rollback | kill | complete,
//!            committed with the next check job while the ramp stays active
//! ```
//!
//! The ramp is the source of truth: every change commits (fenced by the ramp's version, with
//! its history row, an audit-log record `rollout.<event>` holding the reason and the figures,
//! and the next check job) before the flag is written to the committed state through
//! [`crate::flag_admin`] (validated, versioned, in the flag's audit trail; the kill through
//! [`flag_admin::kill`]). A check first re-applies the ramp's rollout to the flag, so a crash
//! between the two is repaired by the next check.
//!
//! Platform guardrails (`error_rate`, `latency_p99_ms`) read this tenant's HTTP tallies of
//! the replica that runs the check ([`telemetry::Metrics::http_snapshot`]): the counters'
//! deltas since the previous check, whose counters the ramp keeps (`baseline`, tagged with the
//! replica). A check on another replica, or after a restart, cannot take a delta: that period
//! has no data for them (the step holds) and the next check measures from its counters.

use std::sync::OnceLock;

use flags::guard::{
    self, Action, Decision, FailingMetric, GuardrailSpec, ManualEvent, RampState, RampStatus,
    Reading, RolloutPlan,
};
use jobs::Priority;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{FlagRolloutChange, FlagRolloutRecord, NewJob, RolloutKey, StoreError};
use utoipa::ToSchema;

use crate::flag_admin::{self, FlagTarget};
use crate::jobs::{HandlerError, HandlerFuture, JobContext, JobHandler, PayloadError};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// `flags.rollout_check`.
pub const ROLLOUT_CHECK: &str = "flags.rollout_check";
/// The actor of the changes checks make.
pub const GUARD_ACTOR: &str = "rollout-guard";
/// Attempts of a check job.
const CHECK_ATTEMPTS: u32 = 5;
/// Hard time limit of a check attempt.
const CHECK_TIMEOUT_MS: u64 = 60_000;

/// One history row as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutHistoryView {
    pub seq: i64,
    pub at_ms: i64,
    /// `started`, `advance`, `rollback`, `kill`, `complete` or `abort`.
    pub event: String,
    pub step: Option<i64>,
    /// The rollout served after the event, basis points.
    pub rollout_bp: i64,
    /// The API key id of the admin, or `rollout-guard` for a check.
    pub actor: String,
    /// The reason and each guardrail's figures and verdict, or `{"manual": true}`.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// A flag's guarded rollout and where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutView {
    pub flag_key: String,
    pub environment: String,
    /// How many plans were written for this flag in this environment (this one included).
    pub generation: i64,
    /// This ramp's state changes.
    pub version: i64,
    /// `active`, `completed`, `rolled_back`, `killed` or `aborted`.
    pub status: String,
    /// The highest step reached (index into `plan.steps`).
    pub step: i64,
    /// The last step that passed; null when none has.
    pub last_safe_step: Option<i64>,
    /// The rollout the ramp serves now, basis points.
    pub rollout_bp: i64,
    /// When the current step began (ms).
    pub step_started_ms: i64,
    /// When the last check ran (ms); null before the first.
    pub last_check_ms: Option<i64>,
    /// The last check's decision: its action, reason and each guardrail's verdict and figures.
    #[schema(value_type = Option<Object>)]
    pub last_check: Option<Value>,
    /// The plan as stored.
    #[schema(value_type = Object)]
    pub plan: Value,
    /// Every action, oldest first.
    pub history: Vec<RolloutHistoryView>,
}

/// What one check did.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// `checked`, or `stale` when the ramp moved on since the check was scheduled.
    pub outcome: &'static str,
    /// The ramp's status afterwards.
    pub status: Option<String>,
    /// The decision with its figures, when checked.
    pub decision: Option<Decision>,
}

/// This process's identity in a baseline: a delta is only taken against counters of the same
/// process.
fn replica_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// The HTTP counters a delta is taken from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Baseline {
    replica: String,
    requests: u64,
    server_errors: u64,
    latency: Vec<u64>,
}

fn baseline_now(state: &AppState, tenant_id: &str) -> Baseline {
    let snap = state
        .metrics()
        .http_snapshot(Some(tenant_id))
        .unwrap_or_default();
    Baseline {
        replica: replica_id().to_owned(),
        requests: snap.requests,
        server_errors: snap.server_errors,
        latency: snap.latency.counts,
    }
}

/// This period's HTTP figures: the delta from `before` to `now`, or why there is none.
fn http_delta(before: Option<&Baseline>, now: &Baseline) -> Result<(u64, u64, Vec<u64>), String> {
    let Some(before) = before else {
        return Err("no counters from a previous check".into());
    };
    if before.replica != now.replica {
        return Err(
            "the previous check ran on another replica (or before a restart); measuring from now"
                .into(),
        );
    }
    let sub = |a: u64, b: u64| a.checked_sub(b);
    let latency: Option<Vec<u64>> = now
        .latency
        .iter()
        .zip(before.latency.iter().chain(std::iter::repeat(&0)))
        .map(|(n, b)| sub(*n, *b))
        .collect();
    match (
        sub(now.requests, before.requests),
        sub(now.server_errors, before.server_errors),
        latency,
    ) {
        (Some(r), Some(e), Some(l)) => Ok((r, e, l)),
        _ => Err("the counters went back (a restart); measuring from now".into()),
    }
}

/// Reads every guardrail of `plan` for the period since `before`.
async fn read_guardrails(
    state: &AppState,
    tenant_id: &str,
    plan: &RolloutPlan,
    before: Option<&Baseline>,
    now: &Baseline,
) -> Result<Vec<Reading>, ApiError> {
    let delta = http_delta(before, now);
    let mut readings = Vec::with_capacity(plan.guardrails.len());
    for g in &plan.guardrails {
        let reading = match (g, &delta) {
            (GuardrailSpec::Experiment { experiment }, _) => {
                match crate::experiments::analyse(state, tenant_id, experiment).await {
                    Ok(analysis) => Reading::Experiment {
                        failing: analysis
                            .results
                            .guardrails
                            .iter()
                            .filter(|g| g.failed)
                            .map(|g| FailingMetric {
                                metric: g.metric.clone(),
                                variant: g.variant.clone(),
                                relative_degradation: g.relative_degradation,
                            })
                            .collect(),
                        compared: analysis.results.guardrails.len(),
                    },
                    // Not enough data yet, or the experiment is gone: no reading this period.
                    Err(e)
                        if matches!(e.kind, ProblemKind::Unprocessable | ProblemKind::NotFound) =>
                    {
                        Reading::Unavailable { why: e.detail }
                    }
                    Err(e) => return Err(e),
                }
            }
            (_, Err(why)) => Reading::Unavailable { why: why.clone() },
            (GuardrailSpec::ErrorRate { .. }, Ok((requests, errors, _))) => Reading::ErrorRate {
                requests: *requests,
                server_errors: *errors,
            },
            (GuardrailSpec::LatencyP99Ms { .. }, Ok((requests, _, counts))) => {
                let histogram = telemetry::LatencyHistogram {
                    bounds: &telemetry::DURATION_BUCKETS,
                    counts: counts.clone(),
                };
                Reading::LatencyP99 {
                    requests: *requests,
                    p99_ms: histogram.quantile(0.99).map(|s| s * 1000.0),
                }
            }
        };
        readings.push(reading);
    }
    Ok(readings)
}

fn plan_of(record: &FlagRolloutRecord) -> Result<RolloutPlan, ApiError> {
    serde_json::from_str(&record.plan).map_err(|_| ApiError::internal())
}

fn ramp_of(record: &FlagRolloutRecord) -> Result<RampState, ApiError> {
    Ok(RampState {
        status: RampStatus::parse(&record.status).ok_or_else(ApiError::internal)?,
        step: usize::try_from(record.step).map_err(|_| ApiError::internal())?,
        last_safe_step: record
            .last_safe_step
            .map(usize::try_from)
            .transpose()
            .map_err(|_| ApiError::internal())?,
        step_started_ms: record.step_started_ms,
    })
}

/// Reads a plan from JSON: a wrong JSON type is 400 naming the field; a well-typed plan that
/// breaks the plan's rules is 422 naming it.
pub fn parse_plan(body: Value) -> Result<RolloutPlan, ApiError> {
    let plan: RolloutPlan = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ApiError::invalid_field(
                crate::extract::BODY_FIELD,
                format!("the request body must be a rollout plan object: {inner}"),
            )
        } else {
            ApiError::invalid_field(&path, format!("field `{path}`: {inner}"))
        }
    })?;
    plan.validate().map_err(|e| {
        ApiError::new(
            ProblemKind::Unprocessable,
            format!("field `{}`: {}", e.path, e.message),
        )
        .with("field", e.path)
    })?;
    Ok(plan)
}

fn no_ramp(key: &str, environment: &str) -> ApiError {
    ApiError::not_found(format!(
        "flag `{key}` has no guarded rollout in environment `{environment}`; write one with PUT /api/v1/flags/{key}/rollout"
    ))
}

fn history_view(h: store::FlagRolloutHistoryRecord) -> RolloutHistoryView {
    RolloutHistoryView {
        seq: h.seq,
        at_ms: h.at_ms,
        event: h.event,
        step: h.step,
        rollout_bp: h.rollout_bp,
        actor: h.actor,
        detail: serde_json::from_str(&h.detail).unwrap_or(Value::Null),
    }
}

fn view(
    record: FlagRolloutRecord,
    history: Vec<store::FlagRolloutHistoryRecord>,
) -> Result<RolloutView, ApiError> {
    let plan = plan_of(&record)?;
    let ramp = ramp_of(&record)?;
    Ok(RolloutView {
        rollout_bp: i64::from(ramp.rollout_bp(&plan)),
        plan: serde_json::to_value(&plan).map_err(|_| ApiError::internal())?,
        last_check: record
            .last_check
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
        flag_key: record.flag_key,
        environment: record.environment,
        generation: record.generation,
        version: record.version,
        status: record.status,
        step: record.step,
        last_safe_step: record.last_safe_step,
        step_started_ms: record.step_started_ms,
        last_check_ms: record.last_check_ms,
        history: history.into_iter().map(history_view).collect(),
    })
}

/// The check job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckPayload {
    environment: String,
    flag_key: String,
    generation: i64,
    version: i64,
}

/// The check of ramp `(generation, version)`, due one evaluation period after `now_ms`.
struct CheckJob {
    payload: String,
    idempotency: String,
    run_at_ms: i64,
}

impl CheckJob {
    fn new(
        key: RolloutKey<'_>,
        plan: &RolloutPlan,
        generation: i64,
        version: i64,
        now_ms: i64,
    ) -> CheckJob {
        let payload = json!({
            "environment": key.environment,
            "flag_key": key.flag_key,
            "generation": generation,
            "version": version,
        })
        .to_string();
        // Checks are fenced by the ramp's version; the key only keeps a retried enqueue single.
        let idempotency = format!(
            "flag-rollout:{generation}:{version}:{}",
            hex::encode(sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(format!(
                    "{}\n{}",
                    key.environment, key.flag_key
                ))
            ))
        );
        CheckJob {
            payload,
            idempotency,
            run_at_ms: now_ms
                .saturating_add(i64::from(plan.evaluation_period_seconds).saturating_mul(1000)),
        }
    }

    fn job(&self) -> NewJob<'_> {
        NewJob {
            handler: ROLLOUT_CHECK,
            payload: &self.payload,
            priority: Priority::Normal,
            run_at_ms: self.run_at_ms,
            expires_at_ms: None,
            max_attempts: CHECK_ATTEMPTS,
            timeout_ms: CHECK_TIMEOUT_MS,
            idempotency_key: Some(&self.idempotency),
        }
    }
}

/// Writes the flag to the ramp's committed state: its rollout, or the kill switch for a
/// killed ramp. A no-op when the flag is there already.
async fn sync_flag(
    state: &AppState,
    key: RolloutKey<'_>,
    record: &FlagRolloutRecord,
    actor: &str,
) -> Result<(), ApiError> {
    let plan = plan_of(record)?;
    let ramp = ramp_of(record)?;
    let target = FlagTarget {
        tenant_id: key.tenant_id,
        environment: key.environment,
        key: key.flag_key,
        actor,
    };
    if ramp.status == RampStatus::Killed {
        flag_admin::kill(state, target, None).await?;
    } else {
        flag_admin::set_rollout(state, target, ramp.rollout_bp(&plan)).await?;
    }
    Ok(())
}

/// The guarded-rollout use cases; stateless (everything lives in the database).
#[derive(Debug, Default, Clone, Copy)]
pub struct RolloutService;

impl RolloutService {
    /// Writes a plan for the flag and starts its ramp at the first step (admin). Refused with
    /// 404 for a flag the environment lacks, 409 while a ramp of the flag is active or when the
    /// flag's rollout is driven otherwise (a schedule ramp) or it is killed, 422 for a plan
    /// that breaks the rules or names an experiment the tenant lacks.
    pub async fn put_plan(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
        actor: &str,
        body: Value,
        now_ms: i64,
    ) -> Result<RolloutView, ApiError> {
        let plan = parse_plan(body)?;
        let flag_record = state
            .store()
            .flag(key.tenant_id, key.environment, key.flag_key)
            .await?
            .ok_or_else(|| flag_admin::not_found(key.flag_key, key.environment))?;
        let flag = flag_admin::definition_of(&flag_record)?;
        if flag.schedule.as_ref().is_some_and(|s| s.ramp.is_some()) {
            return Err(ApiError::new(
                ProblemKind::Conflict,
                format!("flag `{}` has a scheduled ramp (`schedule.ramp`), which sets its rollout; remove it before a guarded rollout", key.flag_key),
            ));
        }
        if flag.kill_switch {
            return Err(ApiError::new(
                ProblemKind::Conflict,
                format!(
                    "flag `{}` is killed; turn the kill switch off before a guarded rollout",
                    key.flag_key
                ),
            ));
        }
        // Every step must be a rollout the flag can serve (a rollout below 100 % needs a
        // split): tried with the first, the smallest.
        let mut trial = flag.clone();
        *flag_admin::rollout_slot(&mut trial, key.environment) = Some(plan.step_bp(Some(0)));
        if let Err(e) =
            flag_admin::check_replacement(state, key.tenant_id, key.environment, &trial).await
        {
            return Err(ApiError::new(
                ProblemKind::Conflict,
                format!(
                    "flag `{}` cannot carry a guarded rollout: {}",
                    key.flag_key, e.detail
                ),
            )
            .with("field", "steps"));
        }
        for (i, g) in plan.guardrails.iter().enumerate() {
            if let GuardrailSpec::Experiment { experiment } = g {
                if state
                    .store()
                    .experiment(key.tenant_id, experiment)
                    .await?
                    .is_none()
                {
                    let field = format!("guardrails[{i}].experiment");
                    return Err(ApiError::new(
                        ProblemKind::Unprocessable,
                        format!("field `{field}`: no experiment `{experiment}` in your tenant"),
                    )
                    .with("field", field));
                }
            }
        }
        let current = state.store().flag_rollout(key).await?;
        if current
            .as_ref()
            .is_some_and(|c| c.status == RampStatus::Active.as_str())
        {
            return Err(active_conflict(key.flag_key));
        }
        let generation = current.map_or(1, |c| c.generation + 1);
        let plan_json = serde_json::to_string(&plan).map_err(|_| ApiError::internal())?;
        let baseline = serde_json::to_string(&baseline_now(state, key.tenant_id))
            .map_err(|_| ApiError::internal())?;
        let check = CheckJob::new(key, &plan, generation, 1, now_ms);
        let first_bp = i64::from(plan.step_bp(Some(0)));
        let detail = json!({
            "manual": true,
            "steps": plan.steps,
            "previous_rollout_bp": flag.rollout_bp,
        });
        let (record, _) = state
            .store()
            .start_flag_rollout(
                key,
                &plan_json,
                first_bp,
                Some(&baseline),
                actor,
                &detail,
                generation,
                Some(&check.job()),
                now_ms,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => active_conflict(key.flag_key),
                e => e.into(),
            })?;
        sync_flag(state, key, &record, actor).await?;
        self.get(state, key).await
    }

    /// The ramp with its history (read).
    pub async fn get(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
    ) -> Result<RolloutView, ApiError> {
        let record = state
            .store()
            .flag_rollout(key)
            .await?
            .ok_or_else(|| no_ramp(key.flag_key, key.environment))?;
        let history = state
            .store()
            .flag_rollout_history(key, record.generation)
            .await?;
        view(record, history)
    }

    /// The ramp, if the flag has one (read); for the console.
    pub async fn find(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
    ) -> Result<Option<RolloutView>, ApiError> {
        match self.get(state, key).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ProblemKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An admin's step: `advance` (pass the current step now, or resume after a rollback),
    /// `rollback` (to the last step that passed) or `abort` (rollout 0). 409 when the ramp's
    /// status does not allow it or it changed meanwhile.
    pub async fn manual(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
        actor: &str,
        event: ManualEvent,
        now_ms: i64,
    ) -> Result<RolloutView, ApiError> {
        let record = state
            .store()
            .flag_rollout(key)
            .await?
            .ok_or_else(|| no_ramp(key.flag_key, key.environment))?;
        let plan = plan_of(&record)?;
        let ramp = ramp_of(&record)?;
        let action = guard::apply(&plan, &ramp, event).map_err(|e| {
            ApiError::new(ProblemKind::Conflict, e.to_string())
                .with("status", record.status.clone())
        })?;
        let detail = json!({ "manual": true, "reason": "manual" });
        let baseline = baseline_now(state, key.tenant_id);
        let committed = self
            .transition(
                state,
                key,
                &record,
                &plan,
                &ramp,
                &action,
                actor,
                &detail,
                None,
                Some(&baseline),
                now_ms,
            )
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ProblemKind::Conflict,
                    "the ramp changed meanwhile (a check or another admin); read it and try again",
                )
            })?;
        sync_flag(state, key, &committed, actor).await?;
        self.get(state, key).await
    }

    /// Commits `action` on the ramp as read in `record` (with the next check job while the
    /// ramp stays active); `None` when the ramp moved on.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
        record: &FlagRolloutRecord,
        plan: &RolloutPlan,
        ramp: &RampState,
        action: &Action,
        actor: &str,
        detail: &Value,
        last_check: Option<&Value>,
        baseline: Option<&Baseline>,
        now_ms: i64,
    ) -> Result<Option<FlagRolloutRecord>, ApiError> {
        let after = ramp.after(plan, action, now_ms);
        let next_version = record.version + 1;
        let check = (after.status == RampStatus::Active)
            .then(|| CheckJob::new(key, plan, record.generation, next_version, now_ms));
        let baseline = baseline
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| ApiError::internal())?;
        let event = match action {
            Action::Hold => None,
            other => Some(other.name()),
        };
        let change = FlagRolloutChange {
            status: after.status.as_str(),
            step: i64::try_from(after.step).map_err(|_| ApiError::internal())?,
            last_safe_step: after.last_safe_step.and_then(|s| i64::try_from(s).ok()),
            step_started_ms: after.step_started_ms,
            last_check_ms: last_check.map(|_| now_ms),
            last_check,
            baseline: baseline.as_deref(),
            event,
            rollout_bp: i64::from(after.rollout_bp(plan)),
            actor,
            detail,
        };
        let committed = state
            .store()
            .change_flag_rollout(
                key,
                record.generation,
                record.version,
                &change,
                check.as_ref().map(CheckJob::job).as_ref(),
                now_ms,
            )
            .await?;
        if committed.is_some() {
            if let Some(name) = event {
                state.metrics().flags().rollout_action(name);
            }
        }
        Ok(committed.map(|(r, _)| r))
    }

    /// The `flags.rollout_check` job: if the ramp is still at `(generation, version)` and
    /// active, re-applies its rollout to the flag, reads every guardrail for the period since
    /// the previous check, decides ([`guard::decide`]) and commits the decision with the next
    /// check. Stale (a no-op) otherwise.
    pub async fn check(
        &self,
        state: &AppState,
        key: RolloutKey<'_>,
        generation: i64,
        version: i64,
        now_ms: i64,
    ) -> Result<CheckOutcome, ApiError> {
        let stale = |status: Option<String>| CheckOutcome {
            outcome: "stale",
            status,
            decision: None,
        };
        let Some(record) = state.store().flag_rollout(key).await? else {
            return Ok(stale(None));
        };
        if record.generation != generation
            || record.version != version
            || record.status != RampStatus::Active.as_str()
        {
            return Ok(stale(Some(record.status)));
        }
        let plan = plan_of(&record)?;
        let ramp = ramp_of(&record)?;
        if state
            .store()
            .flag(key.tenant_id, key.environment, key.flag_key)
            .await?
            .is_none()
        {
            // The flag was deleted: the ramp has nothing left to drive.
            let detail = json!({ "reason": "flag_deleted" });
            let committed = self
                .transition(
                    state,
                    key,
                    &record,
                    &plan,
                    &ramp,
                    &Action::Abort,
                    GUARD_ACTOR,
                    &detail,
                    Some(&detail),
                    None,
                    now_ms,
                )
                .await?;
            return Ok(match committed {
                Some(r) => CheckOutcome {
                    outcome: "checked",
                    status: Some(r.status),
                    decision: None,
                },
                None => stale(None),
            });
        }
        sync_flag(state, key, &record, GUARD_ACTOR).await?;
        let before: Option<Baseline> = record
            .baseline
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok());
        let now = baseline_now(state, key.tenant_id);
        let readings = read_guardrails(state, key.tenant_id, &plan, before.as_ref(), &now).await?;
        let decision = guard::decide(&plan, &ramp, &readings, now_ms);
        let figures: Vec<Value> = plan
            .guardrails
            .iter()
            .zip(readings.iter().zip(&decision.verdicts))
            .map(|(g, (reading, verdict))| {
                json!({ "guardrail": g, "reading": reading, "verdict": verdict })
            })
            .collect();
        let detail = json!({
            "action": decision.action,
            "reason": decision.reason,
            "step": ramp.step,
            "rollout_bp": ramp.rollout_bp(&plan),
            "period": {
                "from_ms": record.last_check_ms.unwrap_or(record.step_started_ms),
                "to_ms": now_ms,
            },
            "guardrails": figures,
        });
        let committed = self
            .transition(
                state,
                key,
                &record,
                &plan,
                &ramp,
                &decision.action,
                GUARD_ACTOR,
                &detail,
                Some(&detail),
                Some(&now),
                now_ms,
            )
            .await?;
        let Some(committed) = committed else {
            return Ok(stale(None));
        };
        if decision.action != Action::Hold {
            sync_flag(state, key, &committed, GUARD_ACTOR).await?;
        }
        if matches!(decision.action, Action::Rollback { .. } | Action::Kill) {
            tracing::warn!(
                tenant_id = key.tenant_id,
                environment = key.environment,
                flag = key.flag_key,
                action = decision.action.name(),
                "guarded rollout breached a guardrail"
            );
        }
        Ok(CheckOutcome {
            outcome: "checked",
            status: Some(committed.status),
            decision: Some(decision),
        })
    }
}

fn active_conflict(flag_key: &str) -> ApiError {
    ApiError::new(
        ProblemKind::Conflict,
        format!("flag `{flag_key}` has an active guarded rollout; roll it back or abort it first"),
    )
}

/// Checks a flag's ramp once per evaluation period while it is active (enqueued by every
/// change of an active ramp with `run_at` one period later). Stale (a no-op) when the ramp
/// moved on since it was scheduled; see [`RolloutService::check`].
pub(crate) struct FlagRolloutCheck;

impl JobHandler for FlagRolloutCheck {
    fn name(&self) -> &'static str {
        ROLLOUT_CHECK
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        PayloadError::parse::<CheckPayload>(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload: CheckPayload = PayloadError::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let key = RolloutKey {
                tenant_id: &ctx.tenant_id,
                environment: &payload.environment,
                flag_key: &payload.flag_key,
            };
            let outcome = RolloutService
                .check(
                    ctx.state(),
                    key,
                    payload.generation,
                    payload.version,
                    crate::jobs::now_ms(),
                )
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            Ok(Some(json!(outcome)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(replica: &str, requests: u64, errors: u64) -> Baseline {
        Baseline {
            replica: replica.into(),
            requests,
            server_errors: errors,
            latency: vec![requests; 3],
        }
    }

    #[test]
    fn deltas_are_taken_only_against_the_same_process() {
        let now = baseline("a", 150, 12);
        assert_eq!(
            http_delta(Some(&baseline("a", 100, 2)), &now),
            Ok((50, 10, vec![50, 50, 50]))
        );
        assert!(http_delta(Some(&baseline("b", 100, 2)), &now).is_err());
        assert!(http_delta(Some(&baseline("a", 200, 2)), &now).is_err());
        assert!(http_delta(None, &now).is_err());
    }

    /// The plan example in docs/flags.md is a valid plan.
    #[test]
    fn the_documented_plan_parses() {
        let doc = include_str!("../../../docs/flags.md");
        let (_, after) = doc
            .split_once("**The plan** (`PUT /api/v1/flags/{key}/rollout`, admin):\n\n```json\n")
            .expect("the plan example");
        let (block, _) = after.split_once("\n```").expect("the block ends");
        let body: Value = serde_json::from_str(block).expect("JSON");
        let plan = parse_plan(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.guardrails.len(), 3);
    }
}
