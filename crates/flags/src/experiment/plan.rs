//! What an experiment owns and decides beyond its statistics: the seed's operational settings
//! ([`ExperimentPlan`]), the running windows that decide which assignments count, the flag the
//! experiment drives (what each lifecycle state makes it serve) and the periodic review's
//! decisions ([`Experiment::review`]). Pure: times are passed in, flags are values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Experiment, ExperimentError, ExperimentResults, ExperimentState, Recommendation};
use crate::model::{Flag, FlagStatus, Rule, RuleGroup};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// Most running windows an experiment keeps (so at most this many starts and resumes): the
/// analysis filters assignments by every window, so the list stays bounded.
pub const MAX_RUNNING_WINDOWS: usize = 100;
/// Most exclusion rules an experiment may have.
pub const MAX_EXCLUSION_RULES: usize = 20;
/// Most tags an experiment may have.
pub const MAX_TAGS: usize = 20;
/// Longest `maximum_duration_days`.
pub const MAX_DURATION_DAYS: u32 = 365;
/// Prefix of the ids of the rules an experiment manages on its flag; rules with other ids are
/// the flag owner's and are kept.
pub const MANAGED_RULE_PREFIX: &str = "experiment.";
/// The rule that serves the control to users outside the audience (first while running).
pub const AUDIENCE_RULE: &str = "experiment.audience";
/// The rule that serves the control to everyone while the experiment is paused.
pub const PAUSED_RULE: &str = "experiment.paused";
/// The rule that serves the winner (or the control) to everyone once completed.
pub const COMPLETED_RULE: &str = "experiment.completed";
/// The rule that serves the control to everyone once the experiment failed.
pub const FAILED_RULE: &str = "experiment.failed";

/// The kind of experiment (seed 002's `ExperimentType`). It labels the experiment for people
/// and lists; the analysis is the same for all (every non-control variant against the control).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentType {
    /// Control against one or more treatments.
    #[default]
    AbTest,
    /// Several variants at once.
    Multivariate,
    /// A feature released to a share of users, measured against those without it.
    FeatureFlag,
    /// Traffic split between alternative implementations.
    SplitTest,
}

/// The seed's operational settings of an experiment. Every field has a default, so stored
/// experiments from before the plan existed read back with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExperimentPlan {
    /// The experiment's kind.
    #[serde(rename = "type")]
    pub experiment_type: ExperimentType,
    /// Only users matching this group (the flag rule grammar) enter the experiment; the others
    /// are served the control and not assigned. None: everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_audience: Option<RuleGroup>,
    /// Users matching any of these groups never enter the experiment (served the control).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclusion_rules: Vec<RuleGroup>,
    /// Share of the audience that is assigned, 1 to 100 (the flag's `rollout_bp` at start).
    pub traffic_percentage: u32,
    /// When the review job starts the draft (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    /// When the review job completes it (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<i64>,
    /// Days after the first start before an automatic early completion may happen.
    pub minimum_duration_days: u32,
    /// Days after the first start when the review job completes it at the latest.
    pub maximum_duration_days: u32,
    /// The person or team responsible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Free labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Whether the review job may complete the experiment on its own and ship the winner.
    pub auto_conclude: bool,
}

impl Default for ExperimentPlan {
    fn default() -> Self {
        ExperimentPlan {
            experiment_type: ExperimentType::AbTest,
            target_audience: None,
            exclusion_rules: Vec::new(),
            traffic_percentage: 100,
            start_at: None,
            end_at: None,
            minimum_duration_days: 7,
            maximum_duration_days: 30,
            owner: None,
            tags: Vec::new(),
            auto_conclude: false,
        }
    }
}

fn field_error(field: &str, message: impl Into<String>) -> ExperimentError {
    ExperimentError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

impl ExperimentPlan {
    /// Checks the settings of a new experiment created at `now`; the error names the field.
    pub fn validate(&self, now: i64) -> Result<(), ExperimentError> {
        if !(1..=100).contains(&self.traffic_percentage) {
            return Err(field_error(
                "traffic_percentage",
                format!(
                    "traffic_percentage must be 1 to 100, got {}",
                    self.traffic_percentage
                ),
            ));
        }
        if !(1..=MAX_DURATION_DAYS).contains(&self.maximum_duration_days) {
            return Err(field_error(
                "maximum_duration_days",
                format!("maximum_duration_days must be 1 to {MAX_DURATION_DAYS}"),
            ));
        }
        if self.minimum_duration_days > self.maximum_duration_days {
            return Err(field_error(
                "minimum_duration_days",
                format!(
                    "minimum_duration_days ({}) must not exceed maximum_duration_days ({})",
                    self.minimum_duration_days, self.maximum_duration_days
                ),
            ));
        }
        if let Some(end) = self.end_at {
            if end <= now {
                return Err(field_error("end_at", "end_at must be in the future"));
            }
            if self.start_at.is_some_and(|start| start >= end) {
                return Err(field_error("end_at", "end_at must be after start_at"));
            }
        }
        if self.exclusion_rules.len() > MAX_EXCLUSION_RULES {
            return Err(field_error(
                "exclusion_rules",
                format!("at most {MAX_EXCLUSION_RULES} exclusion rules"),
            ));
        }
        if self.owner.as_deref().is_some_and(str::is_empty) {
            return Err(field_error("owner", "owner must not be empty"));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(field_error("tags", format!("at most {MAX_TAGS} tags")));
        }
        let mut tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        if tags.iter().any(|t| t.is_empty()) || tags.windows(2).any(|w| w[0] == w[1]) {
            return Err(field_error("tags", "tags must be non-empty and unique"));
        }
        Ok(())
    }
}

/// A period the experiment ran: assignments made inside one count in its analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWindow {
    /// Start or resume (epoch ms, inclusive).
    pub start: i64,
    /// Pause, completion or failure (epoch ms, exclusive); None while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

impl RunningWindow {
    /// Whether an assignment at `at` lies inside the window.
    pub fn contains(&self, at: i64) -> bool {
        at >= self.start && self.end.is_none_or(|end| at < end)
    }
}

/// Relative weights as basis points summing to exactly 10,000 (largest remainder, ties to the
/// earlier variant), the way a flag's split states them.
pub fn weights_bp(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut bp: Vec<u64> = weights
        .iter()
        .map(|w| u64::from(*w) * 10_000 / total)
        .collect();
    let mut remainders: Vec<(u64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (u64::from(*w) * 10_000 % total, i))
        .collect();
    // Largest remainder first; the earlier variant first among equals.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = 10_000 - bp.iter().sum::<u64>();
    for (_, i) in remainders.into_iter().take(missing as usize) {
        if let Some(slot) = bp.get_mut(i) {
            *slot += 1;
        }
    }
    bp.into_iter()
        .map(|b| u32::try_from(b).unwrap_or(u32::MAX))
        .collect()
}

/// A rule built from its JSON form, so the experiment does not depend on how the flag model
/// spells a rule in Rust (only on the documented JSON format).
fn rule(id: &str, when: Value, variant: &str) -> Option<Rule> {
    serde_json::from_value(json!({"id": id, "when": when, "variant": variant})).ok()
}

fn always() -> Value {
    json!({"all": []})
}

/// What the periodic review decided for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewDecision {
    /// Its `start_at` has come: start it.
    Start,
    /// Complete it, shipping `winner` (None: the control stays), for `reason`.
    Complete {
        /// The variant to ship.
        winner: Option<String>,
        /// Why, in words (recorded on the experiment).
        reason: String,
    },
    /// Fail it for `reason` (a breached guardrail).
    Fail {
        /// Why, in words.
        reason: String,
    },
}

impl Experiment {
    /// The periods the experiment ran. An experiment stored before windows were recorded has
    /// one, from its first start to its completion or current pause (a resume in between is
    /// not known, so its pauses count as running).
    pub fn running_windows(&self) -> Vec<RunningWindow> {
        if !self.windows.is_empty() {
            return self.windows.clone();
        }
        match self.started_at {
            None => Vec::new(),
            Some(start) => vec![RunningWindow {
                start,
                end: self.concluded_at.or(self.paused_at),
            }],
        }
    }

    /// The experiment's variant weights in basis points, in definition order.
    pub fn weights_bp(&self) -> Vec<(String, u32)> {
        let weights: Vec<u32> = self.spec.variants.iter().map(|v| v.weight).collect();
        self.spec
            .variants
            .iter()
            .map(|v| v.key.clone())
            .zip(weights_bp(&weights))
            .collect()
    }

    /// Checks that `flag` can carry this experiment: every variant of the experiment is a
    /// variant of the flag, and the flag's split gives each the experiment's share (to the
    /// basis point the rounding allows). The error names `variants` and says what differs.
    pub fn check_flag(&self, flag: &Flag) -> Result<(), ExperimentError> {
        let fail = |message: String| field_error("variants", message);
        let flag_variants: Vec<&str> = flag.variants.iter().map(|v| v.key.as_str()).collect();
        for variant in &self.spec.variants {
            if !flag_variants.contains(&variant.key.as_str()) {
                return Err(fail(format!(
                    "variant `{}` is not a variant of flag `{}` (its variants: {})",
                    variant.key,
                    flag.key,
                    flag_variants.join(", ")
                )));
            }
        }
        let split: u64 = flag.variants.iter().map(|v| u64::from(v.weight_bp)).sum();
        if split != 10_000 {
            return Err(fail(format!(
                "flag `{}` has no weighted split (its variants' weight_bp sum to {split}, not 10000): an experiment assigns users by the flag's split",
                flag.key
            )));
        }
        let mine: BTreeMap<String, u32> = self.weights_bp().into_iter().collect();
        let mut differences = Vec::new();
        for variant in &flag.variants {
            let expected = mine.get(&variant.key).copied().unwrap_or(0);
            if expected.abs_diff(variant.weight_bp) > 1 {
                differences.push(format!(
                    "`{}`: flag {} bp, experiment {} bp",
                    variant.key, variant.weight_bp, expected
                ));
            }
        }
        if !differences.is_empty() {
            return Err(fail(format!(
                "the experiment's weights do not match flag `{}`'s split ({})",
                flag.key,
                differences.join("; ")
            )));
        }
        Ok(())
    }

    /// The flag `"create_flag": true` makes for this experiment: multivariate, status `draft`
    /// (not served until the experiment starts), the experiment's variants with the weights in
    /// basis points, the control as control, default and off variant, exposures tracked. A
    /// variant's value is `values[key]`, else the key as a string.
    pub fn new_flag(&self, values: &BTreeMap<String, Value>) -> Result<Flag, ExperimentError> {
        let variants: Vec<Value> = self
            .weights_bp()
            .into_iter()
            .map(|(key, weight_bp)| {
                let value = values
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Value::String(key.clone()));
                json!({
                    "key": key,
                    "value": value,
                    "weight_bp": weight_bp,
                    "control": key == self.spec.control,
                })
            })
            .collect();
        let mut definition = json!({
            "key": self.spec.flag_key,
            "type": "multivariate",
            "status": "draft",
            "description": format!("Created for experiment `{}`", self.spec.key),
            "variants": variants,
            "default_variant": self.spec.control,
            "off_variant": self.spec.control,
            "track_exposure": true,
        });
        if let Some(owner) = &self.plan.owner {
            definition["owner"] = json!(owner);
        }
        if !self.plan.tags.is_empty() {
            definition["tags"] = json!(self.plan.tags);
        }
        serde_json::from_value(definition).map_err(|e| {
            field_error(
                "variants",
                format!("the flag cannot be built from the variants: {e}"),
            )
        })
    }

    /// The rules the experiment manages on its flag in its current state, first in the flag's
    /// rule list (see docs/flags.md, "Experiments own their flag"):
    /// - draft: none (the experiment does not touch the flag before it starts);
    /// - running: `experiment.audience` serving the control to anyone outside the target
    ///   audience or matching an exclusion rule (absent when everyone is in the audience);
    /// - paused: `experiment.paused` serving the control to everyone, then the audience rule;
    /// - completed: `experiment.completed` serving the winner, or the control without one;
    /// - failed: `experiment.failed` serving the control.
    pub fn managed_rules(&self) -> Vec<Rule> {
        let control = self.spec.control.as_str();
        let audience = || -> Option<Rule> {
            let mut outside = Vec::new();
            if let Some(group) = &self.plan.target_audience {
                outside.push(json!({"none": [group]}));
            }
            for group in &self.plan.exclusion_rules {
                outside.push(json!(group));
            }
            (!outside.is_empty())
                .then(|| rule(AUDIENCE_RULE, json!({"any": outside}), control))
                .flatten()
        };
        let rules = match self.state {
            ExperimentState::Draft => Vec::new(),
            ExperimentState::Running => vec![audience()],
            ExperimentState::Paused => vec![rule(PAUSED_RULE, always(), control), audience()],
            ExperimentState::Completed => {
                let serve = self.winner.as_deref().unwrap_or(control);
                vec![rule(COMPLETED_RULE, always(), serve)]
            }
            ExperimentState::Failed => vec![rule(FAILED_RULE, always(), control)],
        };
        rules.into_iter().flatten().collect()
    }

    /// `flag` as this experiment in its current state wants it: the managed rules replaced
    /// (the owner's other rules kept, after them). `starting` also makes it served (status
    /// `active`, kill switch off) with `rollout_bp` = traffic percentage × 100; otherwise
    /// status, kill switch and rollout are left alone (an operator's kill or a guarded ramp
    /// stands). A draft experiment leaves the flag as it is.
    pub fn flag_for(&self, flag: &Flag, starting: bool) -> Flag {
        let mut next = flag.clone();
        if self.state == ExperimentState::Draft {
            return next;
        }
        let mut rules = self.managed_rules();
        rules.extend(
            flag.rules
                .iter()
                .filter(|r| !r.id.starts_with(MANAGED_RULE_PREFIX))
                .cloned(),
        );
        next.rules = rules;
        if starting {
            next.status = FlagStatus::Active;
            next.kill_switch = false;
            next.rollout_bp = Some(self.plan.traffic_percentage.min(100) * 100);
        }
        next
    }

    /// What the periodic review does with this experiment at `now`, given its latest analysis
    /// (None when there is not enough data yet), in this order:
    /// 1. a draft whose `start_at` has come starts (unless its `end_at` has passed too);
    /// 2. a running or paused one completes at `end_at` or after `maximum_duration_days` from
    ///    its first start, shipping the recommended variant when `auto_conclude` is on;
    /// 3. a running one whose guardrail is breached (the analysis says stop) fails;
    /// 4. a running one with `early_stopping` and `auto_conclude` completes with the winner
    ///    once the always-valid sequential test ships a variant early, but not before
    ///    `minimum_duration_days` from its first start.
    pub fn review(&self, now: i64, results: Option<&ExperimentResults>) -> Option<ReviewDecision> {
        let plan = &self.plan;
        let shipped = || match results.map(|r| &r.recommendation) {
            Some(Recommendation::Ship { variant, .. }) => Some(variant.clone()),
            _ => None,
        };
        match self.state {
            ExperimentState::Draft => {
                let due = plan.start_at.is_some_and(|at| at <= now);
                let over = plan.end_at.is_some_and(|at| at <= now);
                (due && !over).then_some(ReviewDecision::Start)
            }
            ExperimentState::Running | ExperimentState::Paused => {
                let started = self.started_at.unwrap_or(self.created_at);
                let max_end = started
                    .saturating_add(i64::from(plan.maximum_duration_days).saturating_mul(DAY_MS));
                let ended = match plan.end_at {
                    Some(end) if end <= now && end <= max_end => Some("end_at reached"),
                    _ if max_end <= now => Some("maximum duration reached"),
                    _ => None,
                };
                if let Some(why) = ended {
                    let winner = if plan.auto_conclude { shipped() } else { None };
                    return Some(ReviewDecision::Complete {
                        reason: match &winner {
                            Some(w) => format!("{why}; auto_conclude shipped {w}"),
                            None => why.to_owned(),
                        },
                        winner,
                    });
                }
                if self.state != ExperimentState::Running {
                    return None;
                }
                match results.map(|r| &r.recommendation) {
                    Some(Recommendation::StopGuardrailFailed { metric, variant }) => {
                        Some(ReviewDecision::Fail {
                            reason: format!("guardrail {metric} breached by {variant}"),
                        })
                    }
                    Some(Recommendation::Ship {
                        variant,
                        early: true,
                    }) if self.spec.early_stopping
                        && plan.auto_conclude
                        && now.saturating_sub(started)
                            >= i64::from(plan.minimum_duration_days).saturating_mul(DAY_MS) =>
                    {
                        Some(ReviewDecision::Complete {
                            winner: Some(variant.clone()),
                            reason: format!(
                                "early stopping: the sequential test shipped {variant} after the minimum duration"
                            ),
                        })
                    }
                    _ => None,
                }
            }
            ExperimentState::Completed | ExperimentState::Failed => None,
        }
    }
}
