//! Guarded rollouts: a flag's rollout raised step by step while guardrails are watched, and
//! rolled back (or the flag killed) when one is breached.
//!
//! This module is the decision logic only: plan validation, the ramp's state machine and the
//! judgement of guardrail readings. Reading the guardrails, storing the ramp and writing the
//! flag belong to the serving layer. Times are milliseconds since the Unix epoch, passed in.
//!
//! ```
//! use flags::guard::*;
//! let plan: RolloutPlan = serde_json::from_value(serde_json::json!({
//!     "steps": [100, 1000, 5000, 10000],
//!     "mode": "scheduled",
//!     "step_seconds": 3600,
//!     "evaluation_period_seconds": 300,
//!     "guardrails": [{"kind": "error_rate", "max": 0.05, "min_requests": 10}],
//!     "on_breach": "rollback"
//! })).unwrap();
//! plan.validate().unwrap();
//! let ramp = RampState::start(0);
//! assert_eq!(ramp.rollout_bp(&plan), 100);
//! // A check finds 9 errors in 100 requests: the ramp rolls back (no step passed yet: to 0).
//! let readings = [Reading::ErrorRate { requests: 100, server_errors: 9 }];
//! let decision = decide(&plan, &ramp, &readings, 60_000);
//! assert_eq!(decision.action, Action::Rollback { to: None });
//! let after = ramp.after(&plan, &decision.action, 60_000);
//! assert_eq!(after.rollout_bp(&plan), 0);
//! ```

use serde::{Deserialize, Serialize};

use crate::bucket::BUCKETS;

/// Most steps a plan may have.
pub const MAX_STEPS: usize = 20;
/// Most guardrails a plan may have.
pub const MAX_GUARDRAILS: usize = 10;
/// Shortest evaluation period, seconds.
pub const MIN_EVALUATION_PERIOD_SECONDS: u32 = 10;
/// Longest evaluation period (and step duration), seconds: one week.
pub const MAX_PERIOD_SECONDS: u32 = 604_800;
/// Requests a platform guardrail needs in a period unless its `min_requests` says otherwise.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;

/// How the ramp moves from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each step advances by itself once it has been healthy for `step_seconds`.
    Scheduled,
    /// Steps advance only when an admin says so; checks still roll back on a breach.
    Manual,
}

/// What a breach does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBreach {
    /// The rollout returns to the last step that passed (0 when none did) and the ramp stops.
    Rollback,
    /// The flag's kill switch is turned on and the ramp stops.
    Kill,
}

/// One guardrail of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuardrailSpec {
    /// Breached when any guardrail metric of the named experiment's results fails.
    Experiment {
        /// The experiment's key.
        experiment: String,
    },
    /// Breached when the share of 5xx answers in the period is above `max`.
    ErrorRate {
        /// Highest tolerated share of 5xx answers, 0 to 1.
        max: f64,
        /// Fewest requests in a period to judge it [default: 20].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_requests: Option<u64>,
    },
    /// Breached when the p99 request latency in the period is above `max` milliseconds.
    LatencyP99Ms {
        /// Highest tolerated p99, milliseconds.
        max: f64,
        /// Fewest requests in a period to judge it [default: 20].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_requests: Option<u64>,
    },
}

impl GuardrailSpec {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            GuardrailSpec::Experiment { .. } => "experiment",
            GuardrailSpec::ErrorRate { .. } => "error_rate",
            GuardrailSpec::LatencyP99Ms { .. } => "latency_p99_ms",
        }
    }
}

/// A guarded rollout plan, as an admin writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The rollout at each step, basis points, strictly increasing, 1 to 10,000.
    pub steps: Vec<u32>,
    /// Scheduled or manual advancing.
    pub mode: Mode,
    /// How long each step must stay healthy before it advances (scheduled mode), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<u32>,
    /// How often the guardrails are checked, seconds.
    pub evaluation_period_seconds: u32,
    /// What is watched.
    #[serde(default)]
    pub guardrails: Vec<GuardrailSpec>,
    /// What a breach does.
    pub on_breach: OnBreach,
}

/// Why a plan is invalid: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    /// The field path, e.g. `steps[2]`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

fn plan_error(path: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        path: path.into(),
        message: message.into(),
    }
}

impl RolloutPlan {
    /// Checks the plan's rules: 1 to [`MAX_STEPS`] strictly increasing steps in 1..=10,000;
    /// an evaluation period of 10 s to a week; in scheduled mode a `step_seconds` not shorter
    /// than the period (a step is checked at least once before it advances); at most
    /// [`MAX_GUARDRAILS`] guardrails with finite, non-negative thresholds (an error rate at
    /// most 1) and experiment keys of 1 to 64 of `A-Za-z0-9_.-`.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(plan_error(
                "steps",
                format!("a plan has 1 to {MAX_STEPS} steps"),
            ));
        }
        let mut previous = 0u32;
        for (i, step) in self.steps.iter().enumerate() {
            if *step == 0 || *step > BUCKETS {
                return Err(plan_error(
                    format!("steps[{i}]"),
                    format!("a step is a rollout of 1 to {BUCKETS} basis points"),
                ));
            }
            if *step <= previous {
                return Err(plan_error(
                    format!("steps[{i}]"),
                    format!("steps must increase: {step} does not exceed {previous}"),
                ));
            }
            previous = *step;
        }
        let period = self.evaluation_period_seconds;
        if !(MIN_EVALUATION_PERIOD_SECONDS..=MAX_PERIOD_SECONDS).contains(&period) {
            return Err(plan_error(
                "evaluation_period_seconds",
                format!("{MIN_EVALUATION_PERIOD_SECONDS} to {MAX_PERIOD_SECONDS} seconds"),
            ));
        }
        match (self.mode, self.step_seconds) {
            (Mode::Scheduled, None) => {
                return Err(plan_error(
                    "step_seconds",
                    "a scheduled plan needs step_seconds",
                ))
            }
            (_, Some(s)) if s < period || s > MAX_PERIOD_SECONDS => {
                return Err(plan_error(
                    "step_seconds",
                    format!(
                        "from the evaluation period ({period} s) to {MAX_PERIOD_SECONDS} seconds, so each step is checked before it advances"
                    ),
                ))
            }
            _ => {}
        }
        if self.guardrails.len() > MAX_GUARDRAILS {
            return Err(plan_error(
                "guardrails",
                format!("at most {MAX_GUARDRAILS} guardrails"),
            ));
        }
        for (i, g) in self.guardrails.iter().enumerate() {
            match g {
                GuardrailSpec::Experiment { experiment } => {
                    let valid = (1..=64).contains(&experiment.len())
                        && experiment
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                    if !valid {
                        return Err(plan_error(
                            format!("guardrails[{i}].experiment"),
                            "an experiment key is 1 to 64 of A-Z a-z 0-9 _ . -",
                        ));
                    }
                }
                GuardrailSpec::ErrorRate { max, .. } => {
                    if !(max.is_finite() && (0.0..=1.0).contains(max)) {
                        return Err(plan_error(
                            format!("guardrails[{i}].max"),
                            "an error rate is a share from 0 to 1",
                        ));
                    }
                }
                GuardrailSpec::LatencyP99Ms { max, .. } => {
                    if !(max.is_finite() && *max >= 0.0 && *max <= 3_600_000.0) {
                        return Err(plan_error(
                            format!("guardrails[{i}].max"),
                            "a latency is 0 to 3,600,000 milliseconds",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The rollout of step `k`, basis points (0 for no step).
    pub fn step_bp(&self, k: Option<usize>) -> u32 {
        k.and_then(|k| self.steps.get(k)).copied().unwrap_or(0)
    }
}

/// Where a ramp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RampStatus {
    /// Being ramped and checked.
    Active,
    /// Every step passed; the rollout stays at the last step.
    Completed,
    /// A breach (or an admin) returned the rollout to the last step that passed; stopped.
    RolledBack,
    /// A breach turned the kill switch on; stopped.
    Killed,
    /// An admin stopped the ramp; the rollout is back to 0.
    Aborted,
}

impl RampStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RampStatus::Active => "active",
            RampStatus::Completed => "completed",
            RampStatus::RolledBack => "rolled_back",
            RampStatus::Killed => "killed",
            RampStatus::Aborted => "aborted",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<RampStatus> {
        [
            RampStatus::Active,
            RampStatus::Completed,
            RampStatus::RolledBack,
            RampStatus::Killed,
            RampStatus::Aborted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A ramp's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RampState {
    /// Where the ramp is.
    pub status: RampStatus,
    /// The current step (the highest step reached; the rollout after a rollback is the last
    /// safe step's).
    pub step: usize,
    /// The last step that passed (was healthy for its duration, or advanced by an admin while
    /// healthy); `None` when none has.
    pub last_safe_step: Option<usize>,
    /// When the current step began.
    pub step_started_ms: i64,
}

impl RampState {
    /// A ramp starting at the first step at `now_ms`.
    pub fn start(now_ms: i64) -> RampState {
        RampState {
            status: RampStatus::Active,
            step: 0,
            last_safe_step: None,
            step_started_ms: now_ms,
        }
    }

    /// The rollout the ramp serves now, basis points.
    pub fn rollout_bp(&self, plan: &RolloutPlan) -> u32 {
        match self.status {
            // A kill leaves the rollout where it was: the kill switch decides what is served.
            RampStatus::Active | RampStatus::Completed | RampStatus::Killed => {
                plan.step_bp(Some(self.step))
            }
            RampStatus::RolledBack => plan.step_bp(self.last_safe_step),
            RampStatus::Aborted => 0,
        }
    }

    /// The state after `action` at `now_ms`. Actions that do not apply (see [`apply`]) leave
    /// the state as it is.
    pub fn after(&self, plan: &RolloutPlan, action: &Action, now_ms: i64) -> RampState {
        let mut next = *self;
        match action {
            Action::Hold => {}
            Action::Advance { to } => {
                if *to < plan.steps.len() {
                    // Advancing an active ramp passes its step; resuming after a rollback
                    // re-enters above the last safe step, which stays the last safe one.
                    if self.status == RampStatus::Active {
                        next.last_safe_step = Some(self.step);
                    }
                    next.step = *to;
                    next.status = RampStatus::Active;
                    next.step_started_ms = now_ms;
                }
            }
            Action::Complete => {
                next.last_safe_step = Some(self.step);
                next.status = RampStatus::Completed;
            }
            Action::Rollback { to } => {
                next.last_safe_step = *to;
                next.status = RampStatus::RolledBack;
            }
            Action::Kill => next.status = RampStatus::Killed,
            Action::Abort => next.status = RampStatus::Aborted,
        }
        next
    }
}

/// What a check or an admin does to a ramp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Stay at the current step.
    Hold,
    /// Move to step `to`.
    Advance {
        /// The step index.
        to: usize,
    },
    /// Return to step `to` (`None`: rollout 0) and stop.
    Rollback {
        /// The step index, always a step that passed.
        to: Option<usize>,
    },
    /// Turn the kill switch on and stop.
    Kill,
    /// The last step passed: stop with the rollout there.
    Complete,
    /// An admin stopped the ramp: rollout 0.
    Abort,
}

impl Action {
    /// The action's name (history event, metric label).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Hold => "hold",
            Action::Advance { .. } => "advance",
            Action::Rollback { .. } => "rollback",
            Action::Kill => "kill",
            Action::Complete => "complete",
            Action::Abort => "abort",
        }
    }
}

/// One guardrail's figures for a period, as the serving layer measured them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reading {
    /// An experiment's guardrail results.
    Experiment {
        /// The failing guardrails as `metric/variant` with their relative degradation.
        failing: Vec<FailingMetric>,
        /// How many guardrail comparisons the analysis made.
        compared: usize,
    },
    /// Requests and 5xx answers in the period.
    ErrorRate {
        /// Requests.
        requests: u64,
        /// 5xx answers among them.
        server_errors: u64,
    },
    /// The period's p99 latency.
    LatencyP99 {
        /// Requests.
        requests: u64,
        /// p99, milliseconds (`None` without requests).
        p99_ms: Option<f64>,
    },
    /// Nothing could be read (e.g. the experiment is gone, the baseline is from another
    /// replica).
    Unavailable {
        /// Why.
        why: String,
    },
}

/// A failing experiment guardrail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingMetric {
    /// Metric key.
    pub metric: String,
    /// Variant key.
    pub variant: String,
    /// Relative degradation measured.
    pub relative_degradation: f64,
}

/// A guardrail's verdict for a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Within its threshold.
    Healthy {
        /// The figure judged.
        figure: f64,
    },
    /// Over its threshold.
    Breached {
        /// The figure judged.
        figure: f64,
        /// The threshold it crossed.
        threshold: f64,
    },
    /// Not enough data to judge.
    NoData {
        /// Why.
        why: String,
    },
}

/// Judges one guardrail's reading. A reading of the wrong kind for the guardrail is no data.
pub fn judge(guardrail: &GuardrailSpec, reading: &Reading) -> Verdict {
    let no_data = |why: String| Verdict::NoData { why };
    match (guardrail, reading) {
        (_, Reading::Unavailable { why }) => no_data(why.clone()),
        (GuardrailSpec::Experiment { .. }, Reading::Experiment { failing, compared }) => {
            if let Some(worst) = failing
                .iter()
                .map(|f| f.relative_degradation)
                .reduce(f64::max)
            {
                Verdict::Breached {
                    figure: worst,
                    threshold: 0.0,
                }
            } else if *compared == 0 {
                no_data("the experiment's guardrails have no comparison yet".into())
            } else {
                Verdict::Healthy { figure: 0.0 }
            }
        }
        (
            GuardrailSpec::ErrorRate { max, min_requests },
            Reading::ErrorRate {
                requests,
                server_errors,
            },
        ) => {
            let min = min_requests.unwrap_or(DEFAULT_MIN_REQUESTS).max(1);
            if *requests < min {
                return no_data(format!("{requests} requests, fewer than {min}"));
            }
            let rate = *server_errors as f64 / *requests as f64;
            if rate > *max {
                Verdict::Breached {
                    figure: rate,
                    threshold: *max,
                }
            } else {
                Verdict::Healthy { figure: rate }
            }
        }
        (
            GuardrailSpec::LatencyP99Ms { max, min_requests },
            Reading::LatencyP99 { requests, p99_ms },
        ) => {
            let min = min_requests.unwrap_or(DEFAULT_MIN_REQUESTS).max(1);
            match p99_ms {
                Some(p99) if *requests >= min => {
                    if *p99 > *max {
                        Verdict::Breached {
                            figure: *p99,
                            threshold: *max,
                        }
                    } else {
                        Verdict::Healthy { figure: *p99 }
                    }
                }
                _ => no_data(format!("{requests} requests, fewer than {min}")),
            }
        }
        _ => no_data("the reading does not fit the guardrail".into()),
    }
}

/// Why a decision was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The ramp is not active: a check does nothing.
    NotActive,
    /// A guardrail was breached.
    Breach,
    /// Some guardrail had too little data: the step holds (a ramp never advances blind).
    InsufficientData,
    /// Healthy, but the step's time is not up (or the plan is manual).
    Healthy,
    /// Healthy for the step's duration: on to the next step.
    StepPassed,
    /// Healthy for the last step's duration: the ramp is complete.
    LastStepPassed,
}

/// What a check decided, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// Each guardrail's verdict, in the plan's order.
    pub verdicts: Vec<Verdict>,
}

/// Decides a check: given the plan, the ramp and one reading per guardrail (in the plan's
/// order; a missing reading counts as no data) at `now_ms`.
///
/// - Not active: hold.
/// - Any guardrail breached: roll back to the last step that passed (or 0), or kill, per
///   `on_breach`. A breach is never an advance.
/// - Any guardrail without data: hold.
/// - All healthy: in scheduled mode, once the step has lasted `step_seconds`, advance (or
///   complete after the last step); otherwise hold.
pub fn decide(plan: &RolloutPlan, ramp: &RampState, readings: &[Reading], now_ms: i64) -> Decision {
    let missing = Reading::Unavailable {
        why: "not read".into(),
    };
    let verdicts: Vec<Verdict> = plan
        .guardrails
        .iter()
        .enumerate()
        .map(|(i, g)| judge(g, readings.get(i).unwrap_or(&missing)))
        .collect();
    let decision = |action, reason| Decision {
        action,
        reason,
        verdicts: verdicts.clone(),
    };
    if ramp.status != RampStatus::Active {
        return decision(Action::Hold, Reason::NotActive);
    }
    if verdicts
        .iter()
        .any(|v| matches!(v, Verdict::Breached { .. }))
    {
        let action = match plan.on_breach {
            OnBreach::Rollback => Action::Rollback {
                to: safe_below(ramp),
            },
            OnBreach::Kill => Action::Kill,
        };
        return decision(action, Reason::Breach);
    }
    if verdicts.iter().any(|v| matches!(v, Verdict::NoData { .. })) {
        return decision(Action::Hold, Reason::InsufficientData);
    }
    let due = match (plan.mode, plan.step_seconds) {
        (Mode::Scheduled, Some(s)) => {
            now_ms.saturating_sub(ramp.step_started_ms) >= i64::from(s).saturating_mul(1000)
        }
        _ => false,
    };
    if !due {
        return decision(Action::Hold, Reason::Healthy);
    }
    if ramp.step + 1 < plan.steps.len() {
        decision(Action::Advance { to: ramp.step + 1 }, Reason::StepPassed)
    } else {
        decision(Action::Complete, Reason::LastStepPassed)
    }
}

/// The rollback target of an active ramp: its last safe step, which is always below the
/// current step.
fn safe_below(ramp: &RampState) -> Option<usize> {
    ramp.last_safe_step.filter(|s| *s < ramp.step)
}

/// What an admin asks of a ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualEvent {
    /// Pass the current step now (active), or resume after a rollback from the step after the
    /// last safe one.
    Advance,
    /// Return to the last step that passed and stop.
    Rollback,
    /// Stop the ramp, rollout 0.
    Abort,
}

/// Why an admin's event does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} a ramp that is {status}")]
pub struct TransitionError {
    /// The event's name.
    pub event: &'static str,
    /// The ramp's status.
    pub status: &'static str,
}

/// The action an admin's `event` takes on `ramp`; an error when it does not apply (advancing a
/// completed, killed or aborted ramp; rolling back or aborting a stopped one).
pub fn apply(
    plan: &RolloutPlan,
    ramp: &RampState,
    event: ManualEvent,
) -> Result<Action, TransitionError> {
    let refuse = |event| TransitionError {
        event,
        status: ramp.status.as_str(),
    };
    match (event, ramp.status) {
        (ManualEvent::Advance, RampStatus::Active) => Ok(if ramp.step + 1 < plan.steps.len() {
            Action::Advance { to: ramp.step + 1 }
        } else {
            Action::Complete
        }),
        (ManualEvent::Advance, RampStatus::RolledBack) => {
            let to = ramp.last_safe_step.map_or(0, |s| s + 1);
            if to < plan.steps.len() {
                Ok(Action::Advance { to })
            } else {
                Err(refuse("advance"))
            }
        }
        (ManualEvent::Advance, _) => Err(refuse("advance")),
        (ManualEvent::Rollback, RampStatus::Active) => Ok(Action::Rollback {
            to: safe_below(ramp),
        }),
        (ManualEvent::Rollback, _) => Err(refuse("roll back")),
        (ManualEvent::Abort, RampStatus::Active | RampStatus::RolledBack) => Ok(Action::Abort),
        (ManualEvent::Abort, _) => Err(refuse("abort")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(steps: Vec<u32>, mode: Mode, on_breach: OnBreach) -> RolloutPlan {
        RolloutPlan {
            steps,
            mode,
            step_seconds: Some(60),
            evaluation_period_seconds: 10,
            guardrails: vec![
                GuardrailSpec::ErrorRate {
                    max: 0.05,
                    min_requests: Some(10),
                },
                GuardrailSpec::LatencyP99Ms {
                    max: 250.0,
                    min_requests: Some(10),
                },
            ],
            on_breach,
        }
    }

    fn healthy() -> Vec<Reading> {
        vec![
            Reading::ErrorRate {
                requests: 100,
                server_errors: 1,
            },
            Reading::LatencyP99 {
                requests: 100,
                p99_ms: Some(80.0),
            },
        ]
    }

    #[test]
    fn plans_are_validated_naming_the_field() {
        let ok = plan(vec![100, 500, 10_000], Mode::Scheduled, OnBreach::Rollback);
        assert_eq!(ok.validate(), Ok(()));
        let path = |p: RolloutPlan| p.validate().map_err(|e| e.path);
        let mut bad = ok.clone();
        bad.steps = vec![100, 100];
        assert_eq!(path(bad), Err("steps[1]".into()));
        let mut bad = ok.clone();
        bad.steps = vec![10_001];
        assert_eq!(path(bad), Err("steps[0]".into()));
        let mut bad = ok.clone();
        bad.steps = vec![];
        assert_eq!(path(bad), Err("steps".into()));
        let mut bad = ok.clone();
        bad.step_seconds = None;
        assert_eq!(path(bad), Err("step_seconds".into()));
        let mut bad = ok.clone();
        bad.step_seconds = Some(5);
        assert_eq!(path(bad), Err("step_seconds".into()));
        let mut bad = ok.clone();
        bad.evaluation_period_seconds = 1;
        assert_eq!(path(bad), Err("evaluation_period_seconds".into()));
        let mut bad = ok.clone();
        bad.guardrails[0] = GuardrailSpec::ErrorRate {
            max: 1.5,
            min_requests: None,
        };
        assert_eq!(path(bad), Err("guardrails[0].max".into()));
        let mut bad = ok;
        bad.guardrails.push(GuardrailSpec::Experiment {
            experiment: "no spaces".into(),
        });
        assert_eq!(path(bad), Err("guardrails[2].experiment".into()));
        let mut manual = plan(vec![100], Mode::Manual, OnBreach::Kill);
        manual.step_seconds = None;
        assert_eq!(manual.validate(), Ok(()));
    }

    #[test]
    fn a_healthy_scheduled_ramp_advances_after_each_step_and_completes() {
        let p = plan(vec![100, 1000], Mode::Scheduled, OnBreach::Rollback);
        let mut ramp = RampState::start(0);
        let d = decide(&p, &ramp, &healthy(), 30_000);
        assert_eq!(
            (d.action.clone(), d.reason),
            (Action::Hold, Reason::Healthy)
        );
        let d = decide(&p, &ramp, &healthy(), 60_000);
        assert_eq!(d.action, Action::Advance { to: 1 });
        ramp = ramp.after(&p, &d.action, 60_000);
        assert_eq!((ramp.step, ramp.last_safe_step), (1, Some(0)));
        assert_eq!(ramp.rollout_bp(&p), 1000);
        let d = decide(&p, &ramp, &healthy(), 120_000);
        assert_eq!(d.action, Action::Complete);
        ramp = ramp.after(&p, &d.action, 120_000);
        assert_eq!(ramp.status, RampStatus::Completed);
        assert_eq!(ramp.rollout_bp(&p), 1000);
        assert_eq!(
            decide(&p, &ramp, &healthy(), 999_999).reason,
            Reason::NotActive
        );
    }

    #[test]
    fn a_breach_rolls_back_to_the_last_safe_step_with_its_figures() {
        let p = plan(vec![100, 1000, 5000], Mode::Scheduled, OnBreach::Rollback);
        let mut ramp = RampState::start(0);
        for (at, to) in [(60_000, 1), (120_000, 2)] {
            let d = decide(&p, &ramp, &healthy(), at);
            assert_eq!(d.action, Action::Advance { to });
            ramp = ramp.after(&p, &d.action, at);
        }
        let bad = vec![
            Reading::ErrorRate {
                requests: 200,
                server_errors: 30,
            },
            healthy()[1].clone(),
        ];
        let d = decide(&p, &ramp, &bad, 130_000);
        assert_eq!(
            (d.action.clone(), d.reason),
            (Action::Rollback { to: Some(1) }, Reason::Breach)
        );
        assert_eq!(
            d.verdicts[0],
            Verdict::Breached {
                figure: 0.15,
                threshold: 0.05
            }
        );
        ramp = ramp.after(&p, &d.action, 130_000);
        assert_eq!(
            (ramp.status, ramp.rollout_bp(&p)),
            (RampStatus::RolledBack, 1000)
        );
        // Resuming re-enters the step that broke.
        let again = apply(&p, &ramp, ManualEvent::Advance).unwrap();
        assert_eq!(again, Action::Advance { to: 2 });
        let resumed = ramp.after(&p, &again, 140_000);
        assert_eq!(
            (resumed.status, resumed.last_safe_step),
            (RampStatus::Active, Some(1))
        );
    }

    #[test]
    fn kill_and_no_data() {
        let p = plan(vec![100, 1000], Mode::Manual, OnBreach::Kill);
        let ramp = RampState::start(0);
        let slow = vec![
            healthy()[0].clone(),
            Reading::LatencyP99 {
                requests: 50,
                p99_ms: Some(900.0),
            },
        ];
        assert_eq!(decide(&p, &ramp, &slow, 1).action, Action::Kill);
        let quiet = vec![Reading::ErrorRate {
            requests: 3,
            server_errors: 3,
        }];
        let d = decide(&p, &ramp, &quiet, 1);
        assert_eq!(
            (d.action, d.reason),
            (Action::Hold, Reason::InsufficientData)
        );
        // Manual mode never advances by itself.
        assert_eq!(decide(&p, &ramp, &healthy(), i64::MAX).action, Action::Hold);
    }

    #[test]
    fn experiment_guardrails_breach_when_any_metric_fails() {
        let g = GuardrailSpec::Experiment {
            experiment: "e".into(),
        };
        let failing = Reading::Experiment {
            failing: vec![FailingMetric {
                metric: "latency".into(),
                variant: "b".into(),
                relative_degradation: 0.3,
            }],
            compared: 2,
        };
        assert!(matches!(judge(&g, &failing), Verdict::Breached { figure, .. } if figure == 0.3));
        let fine = Reading::Experiment {
            failing: vec![],
            compared: 2,
        };
        assert_eq!(judge(&g, &fine), Verdict::Healthy { figure: 0.0 });
        assert!(matches!(
            judge(
                &g,
                &Reading::Experiment {
                    failing: vec![],
                    compared: 0
                }
            ),
            Verdict::NoData { .. }
        ));
    }

    #[test]
    fn admin_events_apply_only_where_they_make_sense() {
        let p = plan(vec![100, 1000], Mode::Manual, OnBreach::Rollback);
        let ramp = RampState::start(0);
        assert_eq!(
            apply(&p, &ramp, ManualEvent::Rollback),
            Ok(Action::Rollback { to: None })
        );
        let aborted = ramp.after(&p, &Action::Abort, 1);
        assert_eq!(aborted.rollout_bp(&p), 0);
        assert!(apply(&p, &aborted, ManualEvent::Advance).is_err());
        assert!(apply(&p, &aborted, ManualEvent::Abort).is_err());
        let last = ramp.after(&p, &Action::Advance { to: 1 }, 2);
        assert_eq!(apply(&p, &last, ManualEvent::Advance), Ok(Action::Complete));
    }

    fn arb_plan() -> impl Strategy<Value = RolloutPlan> {
        (
            proptest::collection::btree_set(1u32..=10_000, 1..8),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(steps, scheduled, kill)| RolloutPlan {
                steps: steps.into_iter().collect(),
                mode: if scheduled {
                    Mode::Scheduled
                } else {
                    Mode::Manual
                },
                step_seconds: Some(60),
                evaluation_period_seconds: 10,
                guardrails: vec![
                    GuardrailSpec::ErrorRate {
                        max: 0.05,
                        min_requests: Some(10),
                    },
                    GuardrailSpec::LatencyP99Ms {
                        max: 250.0,
                        min_requests: Some(10),
                    },
                ],
                on_breach: if kill {
                    OnBreach::Kill
                } else {
                    OnBreach::Rollback
                },
            })
    }

    fn arb_reading() -> impl Strategy<Value = (u64, u64, f64)> {
        (0u64..200, 0u64..200, 0.0f64..600.0)
    }

    /// One step of a random walk: a check with some readings, or an admin event.
    #[derive(Debug, Clone)]
    enum Step {
        Check(u64, u64, f64, i64),
        Admin(ManualEvent),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (arb_reading(), 0i64..120_000).prop_map(|((r, e, l), dt)| Step::Check(r, e.min(r), l, dt)),
            1 => prop_oneof![
                Just(ManualEvent::Advance),
                Just(ManualEvent::Rollback),
                Just(ManualEvent::Abort)
            ]
            .prop_map(Step::Admin),
        ]
    }

    fn readings(requests: u64, errors: u64, p99: f64) -> Vec<Reading> {
        vec![
            Reading::ErrorRate {
                requests,
                server_errors: errors,
            },
            Reading::LatencyP99 {
                requests,
                p99_ms: (requests > 0).then_some(p99),
            },
        ]
    }

    proptest! {
        /// Whatever happened before, a check whose readings breach a guardrail never advances
        /// or completes the ramp, and a rollback's target is a step that passed, below the
        /// current one; the rollout never exceeds the current step's value.
        #[test]
        fn ramps_keep_their_invariants(p in arb_plan(), walk in proptest::collection::vec(arb_step(), 1..40)) {
            let mut ramp = RampState::start(0);
            let mut now = 0i64;
            // Steps that passed: the ones the ramp advanced from or completed.
            let mut passed: Vec<usize> = Vec::new();
            for step in walk {
                let action = match step {
                    Step::Check(r, e, l, dt) => {
                        now += dt;
                        let rs = readings(r, e, l);
                        let d = decide(&p, &ramp, &rs, now);
                        let breached = d.verdicts.iter().any(|v| matches!(v, Verdict::Breached { .. }));
                        if breached {
                            prop_assert!(!matches!(d.action, Action::Advance { .. } | Action::Complete), "{d:?}");
                        }
                        d.action
                    }
                    Step::Admin(event) => match apply(&p, &ramp, event) {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                if let Action::Rollback { to: Some(to) } = &action {
                    prop_assert!(passed.contains(to), "rollback to {to}, passed {passed:?}");
                    prop_assert!(*to < ramp.step);
                }
                match &action {
                    Action::Advance { .. } if ramp.status == RampStatus::Active => passed.push(ramp.step),
                    Action::Complete => passed.push(ramp.step),
                    _ => {}
                }
                ramp = ramp.after(&p, &action, now);
                prop_assert!(ramp.rollout_bp(&p) <= p.steps[ramp.step]);
                if let Some(s) = ramp.last_safe_step {
                    prop_assert!(passed.contains(&s), "safe {s}, passed {passed:?}");
                }
            }
        }

        /// The judgement agrees with a direct reading of the threshold.
        #[test]
        fn error_rate_breach_is_the_threshold(r in 10u64..1000, e in 0u64..1000) {
            let e = e.min(r);
            let g = GuardrailSpec::ErrorRate { max: 0.05, min_requests: Some(10) };
            let v = judge(&g, &Reading::ErrorRate { requests: r, server_errors: e });
            prop_assert_eq!(matches!(v, Verdict::Breached { .. }), e as f64 / r as f64 > 0.05);
        }
    }
}
