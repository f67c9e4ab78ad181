//! Staged traffic shift from a legacy feedback system to signalbox (seed 004's
//! `TrafficMigrationController`), as data and decisions: the plan, its state machine and the
//! health judgement of a stage's monitoring window.
//!
//! The adapters (the server) do the rest: they set a flag's rollout to the stage's share,
//! read the window's figures from the database when the window ends, ask [`judge`] and feed
//! the verdict to [`PlanState::apply`], then persist the new state and apply its
//! [`Effect`] to the flag.
//!
//! ```text
//!            start            healthy (not last)        healthy (last)
//! pending ─────────▶ running 0 ───────────────▶ running 1 … ───────────▶ completed
//!                        │  inconclusive: the window restarts (same stage)
//!                        │  unhealthy / manual rollback ─▶ rolled_back (rollout = last healthy)
//!                        └─ abort ─▶ aborted (rollout = 0: all legacy)
//! ```
//!
//! Decisions on the seed's open points, written down:
//! - **Fewer items than `min_items`** in a window make it *inconclusive*, not healthy: the
//!   window restarts at the same stage (moving more traffic without evidence is the risky
//!   direction). An operator can still advance by hand. Dead letters are an absolute count,
//!   so crossing `max_dead_letters` rolls back even in an inconclusive window.
//! - **Rollback** returns to the last *healthy* stage's share (0 when no stage passed), the
//!   seed's `rollback_stage`; **abort** returns everything to legacy (share 0).

use serde::{Deserialize, Serialize};

/// Most stages a plan may have.
pub const MAX_STAGES: usize = 20;
/// Shortest monitoring window, seconds.
pub const MIN_MONITORING_SECONDS: u32 = 10;
/// Longest monitoring window, seconds (7 days).
pub const MAX_MONITORING_SECONDS: u32 = 7 * 24 * 3600;
/// Most characters of a stage name.
pub const MAX_STAGE_NAME: usize = 64;
/// The default flag key a plan drives.
pub const DEFAULT_FLAG_KEY: &str = "feedback-migration";
/// The variant served to traffic that stays on the legacy system.
pub const LEGACY_VARIANT: &str = "legacy";
/// The variant served to traffic moved to signalbox.
pub const NEW_VARIANT: &str = "new";

/// A refused plan: the field path (`stages[2].new_percent`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    /// Where the fault is.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn fault(path: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        path: path.into(),
        message: message.into(),
    }
}

/// When a stage's monitoring window counts as unhealthy. A field left out takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Most share (0..=1) of the window's feedback items that may have failed processing.
    pub max_error_share: f64,
    /// Most dead `feedback.forward_legacy` jobs (dual-write dead letters) in the window.
    pub max_dead_letters: u64,
    /// Most p99 of accept → processed latency, milliseconds.
    pub max_p99_processing_ms: u64,
    /// Fewest items the window needs to judge shares and latency; below it the window is
    /// inconclusive.
    pub min_items: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            max_error_share: 0.01,
            max_dead_letters: 0,
            max_p99_processing_ms: 5_000,
            min_items: 100,
        }
    }
}

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Name (`[a-z0-9_-]`, 1 to 64 characters), unique in the plan.
    pub name: String,
    /// Share of routing keys sent to the new system, percent (0..=100).
    pub new_percent: u8,
    /// How long the stage is watched before it is judged, seconds.
    pub monitoring_seconds: u32,
    /// When the window is unhealthy.
    #[serde(default)]
    pub thresholds: Thresholds,
}

impl Stage {
    /// The flag rollout of this stage, basis points.
    pub fn rollout_bp(&self) -> u32 {
        u32::from(self.new_percent) * 100
    }
}

/// A validated plan's stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

impl Plan {
    /// Validates `stages`, naming the first field at fault.
    pub fn new(stages: Vec<Stage>) -> Result<Plan, PlanError> {
        validate_stages(&stages)?;
        Ok(Plan { stages })
    }
}

/// Checks a plan's stages: 1 to [`MAX_STAGES`], unique well-formed names, `new_percent` in
/// 0..=100 and non-decreasing, windows in [`MIN_MONITORING_SECONDS`]..=[`MAX_MONITORING_SECONDS`],
/// `max_error_share` in 0..=1.
pub fn validate_stages(stages: &[Stage]) -> Result<(), PlanError> {
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(fault(
            "stages",
            format!("must list 1 to {MAX_STAGES} stages"),
        ));
    }
    let mut previous: Option<u8> = None;
    for (i, s) in stages.iter().enumerate() {
        let at = |field: &str| format!("stages[{i}].{field}");
        if s.name.is_empty()
            || s.name.chars().count() > MAX_STAGE_NAME
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(fault(
                at("name"),
                format!("must be 1 to {MAX_STAGE_NAME} of a-z, 0-9, `_`, `-`"),
            ));
        }
        if stages[..i].iter().any(|o| o.name == s.name) {
            return Err(fault(
                at("name"),
                format!("`{}` names an earlier stage too", s.name),
            ));
        }
        if s.new_percent > 100 {
            return Err(fault(at("new_percent"), "must be 0 to 100"));
        }
        if let Some(p) = previous.filter(|p| s.new_percent < *p) {
            return Err(fault(
                at("new_percent"),
                format!(
                    "must not be below the previous stage's {p} (stages only move traffic forward)"
                ),
            ));
        }
        previous = Some(s.new_percent);
        if !(MIN_MONITORING_SECONDS..=MAX_MONITORING_SECONDS).contains(&s.monitoring_seconds) {
            return Err(fault(
                at("monitoring_seconds"),
                format!("must be {MIN_MONITORING_SECONDS} to {MAX_MONITORING_SECONDS}"),
            ));
        }
        let t = &s.thresholds;
        if !(0.0..=1.0).contains(&t.max_error_share) {
            return Err(fault(
                at("thresholds.max_error_share"),
                "must be a share from 0 to 1",
            ));
        }
        if t.max_dead_letters > 1_000_000_000 {
            return Err(fault(
                at("thresholds.max_dead_letters"),
                "must be at most 1000000000",
            ));
        }
        if t.max_p99_processing_ms > 86_400_000 {
            return Err(fault(
                at("thresholds.max_p99_processing_ms"),
                "must be at most 86400000 (one day)",
            ));
        }
        if t.min_items > 1_000_000_000 {
            return Err(fault(
                at("thresholds.min_items"),
                "must be at most 1000000000",
            ));
        }
    }
    Ok(())
}

/// What a monitoring window measured (read from the database by the adapter).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowMetrics {
    /// Feedback items accepted in the window.
    pub items: u64,
    /// Of them, items whose processing failed or that were rejected.
    pub failed: u64,
    /// Dead `feedback.forward_legacy` jobs in the window.
    pub dead_letters: u64,
    /// p99 of accept → processed latency of the window's processed items, ms (`None` when
    /// none was processed).
    pub p99_processing_ms: Option<u64>,
}

impl WindowMetrics {
    /// `failed / items`; 0 for an empty window.
    pub fn error_share(&self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.failed as f64 / self.items as f64
        }
    }
}

/// One threshold a window crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// The threshold's name: `max_error_share`, `max_dead_letters`, `max_p99_processing_ms`.
    pub threshold: String,
    /// What the window measured.
    pub observed: f64,
    /// The threshold's value.
    pub limit: f64,
}

/// The judgement of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every threshold held over enough items.
    Healthy,
    /// At least one threshold was crossed.
    Unhealthy {
        /// Each threshold crossed.
        reasons: Vec<Breach>,
    },
    /// Too few items to judge shares and latency (and no absolute threshold crossed).
    Inconclusive {
        /// Items seen.
        items: u64,
        /// Items needed.
        min_items: u64,
    },
}

/// Judges a window against a stage's thresholds. A threshold is crossed when the measure is
/// strictly above it. Dead letters are judged on any window; the error share and the p99 only
/// on a window of at least `min_items` items.
pub fn judge(window: &WindowMetrics, thresholds: &Thresholds) -> Verdict {
    let mut reasons = Vec::new();
    if window.dead_letters > thresholds.max_dead_letters {
        reasons.push(Breach {
            threshold: "max_dead_letters".into(),
            observed: window.dead_letters as f64,
            limit: thresholds.max_dead_letters as f64,
        });
    }
    if window.items < thresholds.min_items {
        return if reasons.is_empty() {
            Verdict::Inconclusive {
                items: window.items,
                min_items: thresholds.min_items,
            }
        } else {
            Verdict::Unhealthy { reasons }
        };
    }
    let share = window.error_share();
    if share > thresholds.max_error_share {
        reasons.push(Breach {
            threshold: "max_error_share".into(),
            observed: share,
            limit: thresholds.max_error_share,
        });
    }
    if let Some(p99) = window
        .p99_processing_ms
        .filter(|p| *p > thresholds.max_p99_processing_ms)
    {
        reasons.push(Breach {
            threshold: "max_p99_processing_ms".into(),
            observed: p99 as f64,
            limit: thresholds.max_p99_processing_ms as f64,
        });
    }
    if reasons.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Unhealthy { reasons }
    }
}

/// The nearest-rank p99 of `values` (sorted in place); `None` when empty.
pub fn p99(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    // Nearest rank: ceil(0.99 n), 1-based.
    let n = values.len();
    let rank = (n * 99).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// Where a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Written, not started.
    Pending,
    /// A stage is live and watched.
    Running,
    /// Every stage passed.
    Completed,
    /// A stage failed (or was rolled back by hand); traffic is at the last healthy share.
    RolledBack,
    /// Stopped by hand; all traffic is back on legacy.
    Aborted,
}

impl PlanStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Pending => "pending",
            PlanStatus::Running => "running",
            PlanStatus::Completed => "completed",
            PlanStatus::RolledBack => "rolled_back",
            PlanStatus::Aborted => "aborted",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<PlanStatus> {
        [
            PlanStatus::Pending,
            PlanStatus::Running,
            PlanStatus::Completed,
            PlanStatus::RolledBack,
            PlanStatus::Aborted,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the plan can no longer move (a new plan must be written to start again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PlanStatus::Completed | PlanStatus::RolledBack | PlanStatus::Aborted
        )
    }
}

/// A plan's state: what the adapter stores next to the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanState {
    /// Where the plan is.
    pub status: PlanStatus,
    /// The live stage (running), or the stage the plan ended at (final); `None` before start.
    pub stage: Option<usize>,
    /// The share of the last stage that passed its window (0 when none did).
    pub last_healthy_percent: u8,
}

impl Default for PlanState {
    fn default() -> PlanState {
        PlanState::PENDING
    }
}

/// What happens to a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start the first stage.
    Start,
    /// The live stage `stage`'s window was judged. A verdict for another stage (a late check of
    /// an earlier stage) is refused.
    Judged {
        /// The stage judged.
        stage: usize,
        /// The verdict.
        verdict: Verdict,
    },
    /// Pass the live stage by hand without waiting for its window.
    Advance,
    /// Roll back by hand to the last healthy share.
    Rollback,
    /// Stop, all traffic back to legacy.
    Abort,
}

/// What the adapter must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// The rollout to set on the flag, percent of routing keys on `new` (`None`: unchanged).
    pub set_new_percent: Option<u8>,
    /// Whether a new monitoring window starts (schedule a check `monitoring_seconds` ahead
    /// for the live stage).
    pub watch: bool,
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event does not apply in the plan's status.
    #[error("the plan is {status}; {event} is not possible")]
    NotAllowed {
        /// The plan's status.
        status: &'static str,
        /// The event's name.
        event: &'static str,
    },
    /// A verdict for a stage that is not the live one.
    #[error("stage {judged} was judged but stage {live:?} is live")]
    StaleVerdict {
        /// The stage judged.
        judged: usize,
        /// The live stage.
        live: Option<usize>,
    },
}

impl Event {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Judged { .. } => "judge",
            Event::Advance => "advance",
            Event::Rollback => "rollback",
            Event::Abort => "abort",
        }
    }
}

impl PlanState {
    /// A plan not yet started.
    pub const PENDING: PlanState = PlanState {
        status: PlanStatus::Pending,
        stage: None,
        last_healthy_percent: 0,
    };

    /// The share of routing keys on `new` this state serves.
    pub fn new_percent(&self, plan: &Plan) -> u8 {
        match self.status {
            PlanStatus::Pending | PlanStatus::Aborted => 0,
            PlanStatus::RolledBack => self.last_healthy_percent,
            PlanStatus::Running | PlanStatus::Completed => self
                .stage
                .and_then(|k| plan.stages.get(k))
                .map_or(self.last_healthy_percent, |s| s.new_percent),
        }
    }

    /// The state after `event`, and what to do to the flag.
    pub fn apply(
        &self,
        plan: &Plan,
        event: &Event,
    ) -> Result<(PlanState, Effect), TransitionError> {
        let refuse = || TransitionError::NotAllowed {
            status: self.status.as_str(),
            event: event.name(),
        };
        match (self.status, event) {
            (PlanStatus::Pending, Event::Start) => {
                let first = plan.stages.first().ok_or_else(refuse)?;
                Ok((
                    PlanState {
                        status: PlanStatus::Running,
                        stage: Some(0),
                        last_healthy_percent: 0,
                    },
                    Effect {
                        set_new_percent: Some(first.new_percent),
                        watch: true,
                    },
                ))
            }
            (PlanStatus::Running, Event::Judged { stage, verdict }) => {
                if self.stage != Some(*stage) {
                    return Err(TransitionError::StaleVerdict {
                        judged: *stage,
                        live: self.stage,
                    });
                }
                match verdict {
                    Verdict::Healthy => Ok(self.pass(plan)),
                    Verdict::Unhealthy { .. } => Ok(self.roll_back()),
                    Verdict::Inconclusive { .. } => Ok((
                        *self,
                        Effect {
                            set_new_percent: None,
                            watch: true,
                        },
                    )),
                }
            }
            (PlanStatus::Running, Event::Advance) => Ok(self.pass(plan)),
            (PlanStatus::Running, Event::Rollback) => Ok(self.roll_back()),
            (PlanStatus::Running | PlanStatus::Pending, Event::Abort) => Ok((
                PlanState {
                    status: PlanStatus::Aborted,
                    ..*self
                },
                Effect {
                    set_new_percent: Some(0),
                    watch: false,
                },
            )),
            (PlanStatus::Pending, Event::Judged { stage, .. }) => {
                Err(TransitionError::StaleVerdict {
                    judged: *stage,
                    live: None,
                })
            }
            _ => Err(refuse()),
        }
    }

    /// The live stage passed: checkpoint it and go to the next, or complete.
    fn pass(&self, plan: &Plan) -> (PlanState, Effect) {
        let k = self.stage.unwrap_or(0);
        let healthy = plan
            .stages
            .get(k)
            .map_or(self.last_healthy_percent, |s| s.new_percent);
        match plan.stages.get(k + 1) {
            Some(next) => (
                PlanState {
                    status: PlanStatus::Running,
                    stage: Some(k + 1),
                    last_healthy_percent: healthy,
                },
                Effect {
                    set_new_percent: Some(next.new_percent),
                    watch: true,
                },
            ),
            None => (
                PlanState {
                    status: PlanStatus::Completed,
                    stage: Some(k),
                    last_healthy_percent: healthy,
                },
                Effect {
                    set_new_percent: None,
                    watch: false,
                },
            ),
        }
    }

    /// The live stage failed: back to the last healthy share.
    fn roll_back(&self) -> (PlanState, Effect) {
        (
            PlanState {
                status: PlanStatus::RolledBack,
                ..*self
            },
            Effect {
                set_new_percent: Some(self.last_healthy_percent),
                watch: false,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stage(name: &str, pct: u8) -> Stage {
        Stage {
            name: name.into(),
            new_percent: pct,
            monitoring_seconds: 60,
            thresholds: Thresholds::default(),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(Vec<Stage>, &str)> = vec![
            (vec![], "stages"),
            (vec![stage("A", 1)], "stages[0].name"),
            (vec![stage("a", 5), stage("a", 10)], "stages[1].name"),
            (vec![stage("a", 101)], "stages[0].new_percent"),
            (
                vec![stage("a", 50), stage("b", 10)],
                "stages[1].new_percent",
            ),
            (
                vec![Stage {
                    monitoring_seconds: 9,
                    ..stage("a", 1)
                }],
                "stages[0].monitoring_seconds",
            ),
            (
                vec![
                    stage("a", 1),
                    Stage {
                        thresholds: Thresholds {
                            max_error_share: 1.5,
                            ..Thresholds::default()
                        },
                        ..stage("b", 2)
                    },
                ],
                "stages[1].thresholds.max_error_share",
            ),
        ];
        for (stages, path) in cases {
            let err = Plan::new(stages.clone()).expect_err(path);
            assert_eq!(err.path, path, "{stages:?}");
        }
        assert!(Plan::new(vec![stage("a", 10), stage("b", 10), stage("c", 100)]).is_ok());
    }

    #[test]
    fn judge_checks_each_threshold() {
        let t = Thresholds {
            max_error_share: 0.1,
            max_dead_letters: 2,
            max_p99_processing_ms: 1000,
            min_items: 10,
        };
        let ok = WindowMetrics {
            items: 10,
            failed: 1,
            dead_letters: 2,
            p99_processing_ms: Some(1000),
        };
        assert_eq!(judge(&ok, &t), Verdict::Healthy);
        let bad = WindowMetrics {
            failed: 2,
            p99_processing_ms: Some(1001),
            dead_letters: 3,
            ..ok
        };
        let Verdict::Unhealthy { reasons } = judge(&bad, &t) else {
            panic!("expected unhealthy")
        };
        let names: Vec<&str> = reasons.iter().map(|r| r.threshold.as_str()).collect();
        assert_eq!(
            names,
            [
                "max_dead_letters",
                "max_error_share",
                "max_p99_processing_ms"
            ]
        );
        assert_eq!(reasons[1].observed, 0.2);
        let few = WindowMetrics {
            items: 9,
            failed: 9,
            ..ok
        };
        assert_eq!(
            judge(&few, &t),
            Verdict::Inconclusive {
                items: 9,
                min_items: 10
            }
        );
        let few_dead = WindowMetrics {
            dead_letters: 3,
            ..few
        };
        assert!(matches!(judge(&few_dead, &t), Verdict::Unhealthy { .. }));
    }

    #[test]
    fn p99_is_nearest_rank() {
        assert_eq!(p99(&mut []), None);
        assert_eq!(p99(&mut [5]), Some(5));
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(p99(&mut v), Some(99));
        let mut v: Vec<u64> = (1..=1000).collect();
        assert_eq!(p99(&mut v), Some(990));
    }

    #[test]
    fn a_plan_runs_to_completion_and_rolls_back_to_the_last_healthy_share() {
        let plan = Plan::new(vec![stage("a", 5), stage("b", 25), stage("c", 100)]).unwrap();
        let (s, e) = PlanState::PENDING.apply(&plan, &Event::Start).unwrap();
        assert_eq!((s.stage, e.set_new_percent), (Some(0), Some(5)));
        let healthy = |k| Event::Judged {
            stage: k,
            verdict: Verdict::Healthy,
        };
        let (s, e) = s.apply(&plan, &healthy(0)).unwrap();
        assert_eq!(
            (s.stage, e.set_new_percent, s.last_healthy_percent),
            (Some(1), Some(25), 5)
        );
        // A late verdict for stage 0 is refused.
        assert!(matches!(
            s.apply(&plan, &healthy(0)),
            Err(TransitionError::StaleVerdict { .. })
        ));
        let (r, e) = s
            .apply(
                &plan,
                &Event::Judged {
                    stage: 1,
                    verdict: Verdict::Unhealthy { reasons: vec![] },
                },
            )
            .unwrap();
        assert_eq!(
            (r.status, e.set_new_percent),
            (PlanStatus::RolledBack, Some(5))
        );
        assert_eq!(r.new_percent(&plan), 5);
        assert!(r.apply(&plan, &Event::Advance).is_err());
        let (s, _) = s.apply(&plan, &Event::Advance).unwrap();
        let (done, e) = s.apply(&plan, &healthy(2)).unwrap();
        assert_eq!(
            (done.status, e.set_new_percent),
            (PlanStatus::Completed, None)
        );
        assert_eq!(done.new_percent(&plan), 100);
        let (a, e) = s.apply(&plan, &Event::Abort).unwrap();
        assert_eq!(
            (a.status, e.set_new_percent, a.new_percent(&plan)),
            (PlanStatus::Aborted, Some(0), 0)
        );
    }

    fn arb_plan() -> impl Strategy<Value = Plan> {
        proptest::collection::vec(0u8..=100, 1..8).prop_map(|mut pcts| {
            pcts.sort_unstable();
            Plan::new(
                pcts.iter()
                    .enumerate()
                    .map(|(i, p)| stage(&format!("s{i}"), *p))
                    .collect(),
            )
            .unwrap()
        })
    }

    fn arb_event() -> impl Strategy<Value = (u8, usize)> {
        (0u8..8, 0usize..8)
    }

    fn event_of(kind: u8, stage: usize, live: Option<usize>) -> Event {
        let k = if stage.is_multiple_of(2) {
            live.unwrap_or(stage)
        } else {
            stage
        };
        match kind {
            0 => Event::Start,
            1 | 2 => Event::Judged {
                stage: k,
                verdict: Verdict::Healthy,
            },
            3 => Event::Judged {
                stage: k,
                verdict: Verdict::Unhealthy { reasons: vec![] },
            },
            4 => Event::Judged {
                stage: k,
                verdict: Verdict::Inconclusive {
                    items: 0,
                    min_items: 1,
                },
            },
            5 => Event::Advance,
            6 => Event::Rollback,
            _ => Event::Abort,
        }
    }

    proptest! {
        /// Reference model: the stage moves by exactly one per pass and never otherwise; the
        /// flag's share always equals the state's share; a rollback serves the share of the
        /// last stage that passed (0 when none did).
        #[test]
        fn the_state_machine_never_skips_a_stage_and_rolls_back_to_the_last_healthy(
            plan in arb_plan(),
            events in proptest::collection::vec(arb_event(), 0..40),
        ) {
            let mut state = PlanState::PENDING;
            let mut flag_percent: u8 = 0;
            let mut passed: Vec<usize> = Vec::new();
            for (kind, k) in events {
                let event = event_of(kind, k, state.stage);
                let before = state;
                match before.apply(&plan, &event) {
                    Err(_) => {
                        // A refused event changes nothing.
                        continue;
                    }
                    Ok((after, effect)) => {
                        if let Some(p) = effect.set_new_percent {
                            flag_percent = p;
                        }
                        prop_assert_eq!(flag_percent, after.new_percent(&plan));
                        match (before.stage, after.stage) {
                            (None, Some(s)) => prop_assert_eq!(s, 0),
                            (Some(a), Some(b)) => {
                                prop_assert!(b == a || b == a + 1, "skipped from {} to {}", a, b);
                                if b == a + 1 {
                                    passed.push(a);
                                }
                            }
                            (a, b) => prop_assert_eq!(a, b),
                        }
                        if after.status == PlanStatus::Completed && before.status == PlanStatus::Running {
                            passed.push(before.stage.unwrap_or(0));
                        }
                        if after.status == PlanStatus::RolledBack {
                            let expected = passed.last().map_or(0, |k| plan.stages[*k].new_percent);
                            prop_assert_eq!(flag_percent, expected);
                            prop_assert_eq!(after.last_healthy_percent, expected);
                        }
                        if after.status == PlanStatus::Running {
                            // The passed stages are exactly 0..live.
                            let live = after.stage.unwrap_or(0);
                            prop_assert_eq!(&passed, &(0..live).collect::<Vec<_>>());
                        }
                        if before.status.is_final() {
                            prop_assert!(false, "a final plan moved");
                        }
                        state = after;
                    }
                }
            }
        }
    }
}
