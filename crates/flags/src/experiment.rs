//! Experiments: definition, lifecycle (draft → running ⇄ paused → completed or failed), the
//! flag the experiment owns (what each state makes it serve), the periodic review's decisions,
//! and analysis of results into a plain-language recommendation.
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller.
//!
//! ```
//! use flags::experiment::*;
//! let spec = ExperimentSpec {
//!     key: "checkout-button".into(),
//!     hypothesis: "A green button raises checkout conversion".into(),
//!     flag_key: "checkout-button-color".into(),
//!     variants: vec![Variant::new("control", 50), Variant::new("green", 50)],
//!     control: "control".into(),
//!     primary_metric: Metric::conversion("checkout", Goal::Increase, 0.01),
//!     secondary_metrics: vec![],
//!     guardrails: vec![],
//!     alpha: 0.05,
//!     power: 0.8,
//!     min_sample_size: 1000,
//!     early_stopping: false,
//! };
//! let mut experiment = Experiment::create(spec, 0).unwrap();
//! experiment.start(1).unwrap();
//! assert_eq!(experiment.state, ExperimentState::Running);
//! assert!(experiment.start(2).is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::stats::{self, StatsError, Summary};

mod plan;
pub use plan::*;

/// Why an experiment could not be created, changed or analysed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ExperimentError {
    /// The definition is invalid.
    #[error("invalid experiment: {0}")]
    Invalid(String),
    /// The lifecycle does not allow this action in the current state.
    #[error("cannot {action} an experiment that is {from:?}")]
    InvalidTransition {
        /// State the experiment is in.
        from: ExperimentState,
        /// The refused action.
        action: &'static str,
    },
    /// A setting is invalid; `field` names it as the API spells it.
    #[error("invalid experiment: {field}: {message}")]
    InvalidField {
        /// The field at fault (`traffic_percentage`, `variants`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Data for a variant or metric is missing.
    #[error("missing data: {0}")]
    MissingData(String),
    /// A statistic failed on the data.
    #[error("statistics for {metric} / {variant}: {source}")]
    Stats {
        /// Metric key.
        metric: String,
        /// Variant key.
        variant: String,
        /// Underlying error.
        source: StatsError,
    },
}

/// Lifecycle state of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    /// Defined, not yet exposed to users.
    Draft,
    /// Assigning users and collecting data.
    Running,
    /// Temporarily not assigning new users.
    Paused,
    /// Finished (stored as `concluded` before the seed's names were adopted); no further
    /// transitions.
    #[serde(alias = "concluded")]
    Completed,
    /// Stopped because a guardrail was breached (or an operator failed it); no further
    /// transitions.
    Failed,
}

/// Whether a metric is a rate of conversions or a per-user value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Per-user 0/1 outcome: analysed with the chi-square test (Yates-corrected, as scipy).
    Conversion,
    /// Per-user real value: analysed with Welch's t-test (and Mann-Whitney U given raw values).
    Value,
}

/// Which direction of change is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Higher is better.
    Increase,
    /// Lower is better.
    Decrease,
}

/// A metric of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric key, matching the data's keys.
    pub key: String,
    /// Conversion or value.
    pub kind: MetricKind,
    /// Good direction.
    pub goal: Goal,
    /// Minimum detectable effect: the smallest absolute change of the mean (or rate) worth
    /// detecting; drives the sample size and the sequential test's mixing variance (τ² = MDE²).
    pub minimum_detectable_effect: f64,
    /// Largest accepted absolute value of one event; `None` means
    /// [`DEFAULT_MAX_ABS_EVENT_VALUE`]. At most [`MAX_ABS_EVENT_VALUE_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_value: Option<f64>,
}

/// The bound on one metric event's absolute value when the metric sets none: generous for
/// counts, amounts in cents and durations in milliseconds, far from where sums lose precision.
pub const DEFAULT_MAX_ABS_EVENT_VALUE: f64 = 1e9;

/// The largest bound a metric may set. Events are summed per user and squared for variances:
/// with every value within 1e12, no sum over any realistic number of events (even 1e18 of them)
/// comes near `f64::MAX`, so an analysis never overflows.
pub const MAX_ABS_EVENT_VALUE_LIMIT: f64 = 1e12;

impl Metric {
    /// The largest accepted absolute value of one event of this metric.
    pub fn value_bound(&self) -> f64 {
        self.max_abs_value.unwrap_or(DEFAULT_MAX_ABS_EVENT_VALUE)
    }

    /// Whether one event's value is accepted: finite and within [`Metric::value_bound`]. The
    /// error says why, for the caller to report per event.
    pub fn check_event_value(&self, value: f64) -> Result<(), String> {
        let bound = self.value_bound();
        if !value.is_finite() {
            return Err(format!("value must be a finite number, got {value}"));
        }
        if value.abs() > bound {
            return Err(format!(
                "value {value:e} is outside metric {}'s bound of ±{bound:e} (its \
                 `max_abs_value`); a value this large is almost certainly an error",
                self.key
            ));
        }
        Ok(())
    }

    /// A conversion metric.
    pub fn conversion(key: &str, goal: Goal, minimum_detectable_effect: f64) -> Self {
        Self {
            key: key.into(),
            kind: MetricKind::Conversion,
            goal,
            minimum_detectable_effect,
            max_abs_value: None,
        }
    }

    /// A value metric.
    pub fn value(key: &str, goal: Goal, minimum_detectable_effect: f64) -> Self {
        Self {
            key: key.into(),
            kind: MetricKind::Value,
            goal,
            minimum_detectable_effect,
            max_abs_value: None,
        }
    }
}

/// A guardrail: a metric that must not degrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    /// The guarded metric (its goal says which direction is a degradation).
    pub metric: Metric,
    /// Tolerated relative degradation, e.g. 0.02 for 2 %. The guardrail fails when a variant's
    /// relative change is worse than this and the change is significant at the experiment's alpha.
    pub max_relative_degradation: f64,
}

/// A variant and its share of the experiment's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Variant key.
    pub key: String,
    /// Allocation weight (relative to the other variants' weights).
    pub weight: u32,
}

impl Variant {
    /// A variant with `weight`.
    pub fn new(key: &str, weight: u32) -> Self {
        Self {
            key: key.into(),
            weight,
        }
    }
}

/// What the caller supplies to create an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// Experiment key.
    pub key: String,
    /// The hypothesis being tested, in words.
    pub hypothesis: String,
    /// Flag whose variations are the variants.
    pub flag_key: String,
    /// Variants with allocation weights (at least two, including the control).
    pub variants: Vec<Variant>,
    /// Key of the control variant.
    pub control: String,
    /// The decision metric.
    pub primary_metric: Metric,
    /// Reported, not decisive.
    pub secondary_metrics: Vec<Metric>,
    /// Metrics that must not degrade.
    pub guardrails: Vec<Guardrail>,
    /// Significance level (two-sided).
    pub alpha: f64,
    /// Power for the sample-size plan.
    pub power: f64,
    /// Users per variant required at least, whatever the power calculation says.
    pub min_sample_size: u64,
    /// Whether the always-valid sequential test may end the experiment early.
    pub early_stopping: bool,
}

/// An experiment with its lifecycle state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The definition.
    pub spec: ExperimentSpec,
    /// Current state.
    pub state: ExperimentState,
    /// Creation time (ms).
    pub created_at: i64,
    /// First start time (ms).
    pub started_at: Option<i64>,
    /// Last pause time (ms), while paused.
    pub paused_at: Option<i64>,
    /// Conclusion time (ms).
    pub concluded_at: Option<i64>,
    /// Variant chosen at conclusion (None: no change shipped).
    pub winner: Option<String>,
    /// The seed's operational settings (type, audience, traffic, schedule, owner, ...).
    #[serde(default)]
    pub plan: ExperimentPlan,
    /// The periods the experiment ran (start or resume to pause, completion or now). Stored
    /// experiments from before windows were kept read as one window; see
    /// [`Experiment::running_windows`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<RunningWindow>,
    /// Why the experiment failed, or what completed it automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn invalid(message: &str) -> ExperimentError {
    ExperimentError::Invalid(message.into())
}

fn validate_metric(metric: &Metric) -> Result<(), ExperimentError> {
    if metric.key.is_empty() {
        return Err(invalid("metric key is empty"));
    }
    if !(metric.minimum_detectable_effect > 0.0 && metric.minimum_detectable_effect.is_finite()) {
        return Err(ExperimentError::Invalid(format!(
            "metric {}: minimum detectable effect must be positive",
            metric.key
        )));
    }
    if let Some(bound) = metric.max_abs_value {
        if !(bound > 0.0 && bound <= MAX_ABS_EVENT_VALUE_LIMIT) {
            return Err(ExperimentError::Invalid(format!(
                "metric {}: max_abs_value must be positive and at most {MAX_ABS_EVENT_VALUE_LIMIT:e}",
                metric.key
            )));
        }
    }
    Ok(())
}

fn validate(spec: &ExperimentSpec) -> Result<(), ExperimentError> {
    if spec.key.is_empty() {
        return Err(invalid("key is empty"));
    }
    if spec.variants.len() < 2 {
        return Err(invalid("at least two variants are needed"));
    }
    let mut keys: Vec<&str> = spec.variants.iter().map(|v| v.key.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(invalid("variant keys must be unique"));
    }
    if spec.variants.iter().any(|v| v.weight == 0) {
        return Err(invalid("variant weights must be positive"));
    }
    if !spec.variants.iter().any(|v| v.key == spec.control) {
        return Err(invalid("control is not one of the variants"));
    }
    if !(spec.alpha > 0.0 && spec.alpha < 0.5) {
        return Err(invalid("alpha must be in (0, 0.5)"));
    }
    if !(spec.power > 0.5 && spec.power < 1.0) {
        return Err(invalid("power must be in (0.5, 1)"));
    }
    validate_metric(&spec.primary_metric)?;
    for metric in &spec.secondary_metrics {
        validate_metric(metric)?;
    }
    for guardrail in &spec.guardrails {
        validate_metric(&guardrail.metric)?;
        if !(guardrail.max_relative_degradation >= 0.0
            && guardrail.max_relative_degradation.is_finite())
        {
            return Err(invalid("guardrail degradation threshold must be >= 0"));
        }
    }
    Ok(())
}

impl Experiment {
    /// Validates `spec` and creates a draft experiment at `now` with the default plan.
    pub fn create(spec: ExperimentSpec, now: i64) -> Result<Self, ExperimentError> {
        Self::create_with(spec, ExperimentPlan::default(), now)
    }

    /// Validates `spec` and `plan` and creates a draft experiment at `now`.
    pub fn create_with(
        spec: ExperimentSpec,
        plan: ExperimentPlan,
        now: i64,
    ) -> Result<Self, ExperimentError> {
        validate(&spec)?;
        plan.validate(now)?;
        Ok(Self {
            spec,
            state: ExperimentState::Draft,
            created_at: now,
            started_at: None,
            paused_at: None,
            concluded_at: None,
            winner: None,
            plan,
            windows: Vec::new(),
            reason: None,
        })
    }

    fn refuse(&self, action: &'static str) -> ExperimentError {
        ExperimentError::InvalidTransition {
            from: self.state,
            action,
        }
    }

    /// Draft → running.
    pub fn start(&mut self, now: i64) -> Result<(), ExperimentError> {
        if self.state != ExperimentState::Draft {
            return Err(self.refuse("start"));
        }
        self.state = ExperimentState::Running;
        self.started_at = Some(now);
        self.windows.push(RunningWindow {
            start: now,
            end: None,
        });
        Ok(())
    }

    /// Closes the open running window at `now` (at its start if `now` is earlier).
    fn close_window(&mut self, now: i64) {
        if let Some(open) = self.windows.last_mut().filter(|w| w.end.is_none()) {
            open.end = Some(now.max(open.start));
        }
    }

    /// Running → paused.
    pub fn pause(&mut self, now: i64) -> Result<(), ExperimentError> {
        if self.state != ExperimentState::Running {
            return Err(self.refuse("pause"));
        }
        self.state = ExperimentState::Paused;
        self.paused_at = Some(now);
        self.close_window(now);
        Ok(())
    }

    /// Paused → running.
    pub fn resume(&mut self, now: i64) -> Result<(), ExperimentError> {
        if self.state != ExperimentState::Paused {
            return Err(self.refuse("resume"));
        }
        if self.windows.len() >= MAX_RUNNING_WINDOWS {
            return Err(ExperimentError::InvalidField {
                field: "state".into(),
                message: format!(
                    "the experiment has been resumed {} times, the most it may; complete it and start a new one",
                    MAX_RUNNING_WINDOWS - 1
                ),
            });
        }
        self.state = ExperimentState::Running;
        self.paused_at = None;
        self.windows.push(RunningWindow {
            start: now,
            end: None,
        });
        Ok(())
    }

    /// Running or paused → failed, with the reason (a breached guardrail, an operator's words).
    pub fn fail(&mut self, now: i64, reason: String) -> Result<(), ExperimentError> {
        if !matches!(
            self.state,
            ExperimentState::Running | ExperimentState::Paused
        ) {
            return Err(self.refuse("fail"));
        }
        self.state = ExperimentState::Failed;
        self.concluded_at = Some(now);
        self.paused_at = None;
        self.winner = None;
        self.reason = Some(reason);
        self.close_window(now);
        Ok(())
    }

    /// Running or paused → completed, optionally naming the winning variant.
    pub fn conclude(&mut self, now: i64, winner: Option<String>) -> Result<(), ExperimentError> {
        if !matches!(
            self.state,
            ExperimentState::Running | ExperimentState::Paused
        ) {
            return Err(self.refuse("conclude"));
        }
        if let Some(w) = &winner {
            if !self.spec.variants.iter().any(|v| &v.key == w) {
                return Err(ExperimentError::Invalid(format!(
                    "winner {w} is not a variant"
                )));
            }
        }
        self.state = ExperimentState::Completed;
        self.concluded_at = Some(now);
        self.paused_at = None;
        self.winner = winner;
        self.close_window(now);
        Ok(())
    }
}

/// Observations of one metric in one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricData {
    /// Conversion counts.
    Conversions {
        /// Users who converted.
        conversions: u64,
        /// Users exposed.
        n: u64,
    },
    /// Raw per-user values (enables Mann-Whitney U).
    Values(Vec<f64>),
    /// Streaming summary of per-user values.
    Summary(Summary),
}

/// Data of one variant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VariantData {
    /// Users assigned (for the sample-ratio-mismatch check).
    pub users: u64,
    /// Observations per metric key.
    pub metrics: BTreeMap<String, MetricData>,
    /// The always-valid p-value of the primary metric returned by the previous analysis
    /// (the sequential test's running minimum); None on the first look.
    pub previous_sequential_p: Option<f64>,
}

/// Which test produced a comparison's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Chi-square 2x2 with Yates' correction.
    ChiSquare,
    /// Welch's t-test.
    WelchT,
}

/// One metric, one variant against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Metric key.
    pub metric: String,
    /// Variant key.
    pub variant: String,
    /// Variant summary.
    pub treatment: Summary,
    /// Control summary.
    pub control: Summary,
    /// Relative lift and its interval at 1 - alpha (None when the control mean is 0).
    pub relative_lift: Option<stats::RelativeLift>,
    /// Difference of means (treatment - control) and its Welch interval at 1 - alpha.
    pub difference: Difference,
    /// Test used for `p_value`.
    pub test: TestKind,
    /// Test statistic.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Mann-Whitney U p-value, when raw values were given.
    pub mann_whitney_p: Option<f64>,
    /// `p_value` after Holm's correction across every primary and secondary comparison of the
    /// analysis ([`stats::holm`]); guardrail comparisons are separate tests and keep their raw
    /// p-value here.
    pub p_value_adjusted: f64,
    /// `p_value_adjusted` < alpha.
    pub significant: bool,
    /// The change is in the metric's good direction.
    pub improves: bool,
}

/// A difference of means with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Treatment mean minus control mean.
    pub estimate: f64,
    /// Lower bound of the interval.
    pub ci_low: f64,
    /// Upper bound of the interval.
    pub ci_high: f64,
}

/// Guardrail outcome for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailStatus {
    /// Metric key.
    pub metric: String,
    /// Variant key.
    pub variant: String,
    /// Relative change in the bad direction (positive = worse).
    pub relative_degradation: f64,
    /// True when the degradation exceeds the threshold and is significant.
    pub failed: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Recommendation {
    /// Assignment does not follow the planned allocation: results are not trustworthy.
    CheckAssignment,
    /// A guardrail failed: stop the experiment.
    StopGuardrailFailed {
        /// Guardrail metric.
        metric: String,
        /// Variant that degraded it.
        variant: String,
    },
    /// Ship this variant.
    Ship {
        /// Winning variant.
        variant: String,
        /// Whether the always-valid sequential test decided before the planned sample size.
        early: bool,
    },
    /// The planned sample size is not reached.
    KeepRunning {
        /// Users still needed in each variant.
        more_users_per_variant: u64,
    },
    /// Planned sample reached, no variant is significantly better: keep the control.
    KeepControl,
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CheckAssignment => write!(f, "check assignment: sample ratio mismatch"),
            Self::StopGuardrailFailed { metric, variant } => {
                write!(f, "stop: guardrail {metric} failed for {variant}")
            }
            Self::Ship {
                variant,
                early: false,
            } => write!(f, "ship {variant}"),
            Self::Ship {
                variant,
                early: true,
            } => write!(f, "ship {variant} (sequential test stopped early)"),
            Self::KeepRunning {
                more_users_per_variant,
            } => write!(
                f,
                "keep running: {more_users_per_variant} more {} per variant needed",
                if *more_users_per_variant == 1 {
                    "user"
                } else {
                    "users"
                }
            ),
            Self::KeepControl => write!(f, "stop: no variant beats the control; keep the control"),
        }
    }
}

/// Full analysis of an experiment's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// Sample-ratio-mismatch check on assigned users.
    pub srm: stats::SrmCheck,
    /// Users per variant the primary metric needs (max of the power plan and the minimum).
    pub required_per_variant: u64,
    /// Primary metric comparisons, one per non-control variant.
    pub primary: Vec<Comparison>,
    /// Secondary metric comparisons.
    pub secondary: Vec<Comparison>,
    /// Guardrail outcomes.
    pub guardrails: Vec<GuardrailStatus>,
    /// Updated always-valid p-value of the primary metric per variant (store it and pass it
    /// back as `previous_sequential_p` next time).
    pub sequential_p: BTreeMap<String, f64>,
    /// The recommendation.
    pub recommendation: Recommendation,
    /// Secondary and guardrail comparisons the data cannot support yet (e.g. no variance in
    /// either group), so that they do not hold up the rest of the analysis.
    pub not_analysed: Vec<NotAnalysed>,
}

/// A comparison left out of an analysis, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotAnalysed {
    /// Metric key.
    pub metric: String,
    /// Variant key.
    pub variant: String,
    /// What the data lacks.
    pub reason: String,
}

fn summary_of(data: &MetricData) -> Result<Summary, StatsError> {
    match data {
        MetricData::Conversions { conversions, n } => Summary::from_conversions(*conversions, *n),
        MetricData::Values(values) => Summary::from_values(values),
        MetricData::Summary(s) => Ok(*s),
    }
}

fn metric_data<'a>(
    data: &'a BTreeMap<String, VariantData>,
    variant: &str,
    metric: &str,
) -> Result<&'a MetricData, ExperimentError> {
    data.get(variant)
        .and_then(|v| v.metrics.get(metric))
        .ok_or_else(|| ExperimentError::MissingData(format!("{metric} for {variant}")))
}

fn compare(
    metric: &Metric,
    variant: &str,
    control: &str,
    data: &BTreeMap<String, VariantData>,
    alpha: f64,
) -> Result<Comparison, ExperimentError> {
    let wrap = |source| ExperimentError::Stats {
        metric: metric.key.clone(),
        variant: variant.into(),
        source,
    };
    let t_data = metric_data(data, variant, &metric.key)?;
    let c_data = metric_data(data, control, &metric.key)?;
    let treatment = summary_of(t_data).map_err(wrap)?;
    let control_summary = summary_of(c_data).map_err(wrap)?;
    let welch = stats::welch_t_test(&treatment, &control_summary, 1.0 - alpha).map_err(wrap)?;
    let (test, statistic, p_value) = match (metric.kind, t_data, c_data) {
        (
            MetricKind::Conversion,
            MetricData::Conversions {
                conversions: tc,
                n: tn,
            },
            MetricData::Conversions {
                conversions: cc,
                n: cn,
            },
        ) => {
            let chi = stats::chi_square_2x2(*tc, *tn, *cc, *cn, true).map_err(wrap)?;
            (TestKind::ChiSquare, chi.statistic, chi.p_value)
        }
        _ => (TestKind::WelchT, welch.t, welch.p_value),
    };
    let mann_whitney_p = match (t_data, c_data) {
        (MetricData::Values(x), MetricData::Values(y)) => {
            Some(stats::mann_whitney_u(x, y).map_err(wrap)?.p_value)
        }
        _ => None,
    };
    let improves = match metric.goal {
        Goal::Increase => welch.difference > 0.0,
        Goal::Decrease => welch.difference < 0.0,
    };
    Ok(Comparison {
        metric: metric.key.clone(),
        variant: variant.into(),
        treatment,
        control: control_summary,
        relative_lift: stats::relative_lift(&treatment, &control_summary, 1.0 - alpha).ok(),
        difference: Difference {
            estimate: welch.difference,
            ci_low: welch.ci_low,
            ci_high: welch.ci_high,
        },
        test,
        statistic,
        p_value,
        mann_whitney_p,
        p_value_adjusted: p_value,
        significant: p_value < alpha,
        improves,
    })
}

/// Users per variant the primary metric needs, planned from the control's observed rate
/// (conversion) or standard deviation (value) and the metric's MDE.
fn planned_sample_size(spec: &ExperimentSpec, control: &Summary) -> Result<u64, StatsError> {
    let metric = &spec.primary_metric;
    let mde = metric.minimum_detectable_effect;
    let planned = match metric.kind {
        MetricKind::Conversion => {
            // Plan for the direction that stays inside (0, 1).
            let baseline = control.mean.clamp(1e-6, 1.0 - 1e-6);
            let effect = if baseline + mde < 1.0 { mde } else { -mde };
            stats::sample_size_proportions(baseline, effect, spec.alpha, spec.power)?
        }
        MetricKind::Value => {
            stats::sample_size_means(control.variance.sqrt(), mde, spec.alpha, spec.power)?
        }
    };
    Ok(planned.per_variant.max(spec.min_sample_size))
}

impl Experiment {
    /// Analyses per-variant data (keyed by variant key) and recommends what to do.
    ///
    /// Order of precedence: a sample ratio mismatch invalidates everything; then a failed
    /// guardrail stops the experiment; then, with early stopping on, a variant whose
    /// always-valid p-value is below alpha and that improves the primary metric ships; then
    /// below the planned sample size it keeps running; at the planned size the best
    /// significantly improving variant ships, else the control stays.
    pub fn analyze(
        &self,
        data: &BTreeMap<String, VariantData>,
    ) -> Result<ExperimentResults, ExperimentError> {
        let spec = &self.spec;
        let mut observed = Vec::with_capacity(spec.variants.len());
        let mut weights = Vec::with_capacity(spec.variants.len());
        for variant in &spec.variants {
            let users = data
                .get(&variant.key)
                .ok_or_else(|| ExperimentError::MissingData(variant.key.clone()))?
                .users;
            observed.push(users);
            weights.push(f64::from(variant.weight));
        }
        let srm = stats::sample_ratio_mismatch(&observed, &weights).map_err(|source| {
            ExperimentError::Stats {
                metric: "assignment".into(),
                variant: "all".into(),
                source,
            }
        })?;

        let treatments: Vec<&str> = spec
            .variants
            .iter()
            .map(|v| v.key.as_str())
            .filter(|k| *k != spec.control)
            .collect();
        let compare_all = |metric: &Metric| -> Result<Vec<Comparison>, ExperimentError> {
            treatments
                .iter()
                .map(|v| compare(metric, v, &spec.control, data, spec.alpha))
                .collect()
        };
        let mut primary = compare_all(&spec.primary_metric)?;
        // Secondary metrics and guardrails whose data cannot be tested yet are reported, not
        // fatal: the primary metric decides, and it alone may stop the analysis.
        let mut not_analysed = Vec::new();
        let mut compare_some = |metric: &Metric| -> Result<Vec<Comparison>, ExperimentError> {
            let mut out = Vec::new();
            for v in &treatments {
                match compare(metric, v, &spec.control, data, spec.alpha) {
                    Ok(c) => out.push(c),
                    Err(ExperimentError::Stats {
                        metric,
                        variant,
                        source,
                    }) => not_analysed.push(NotAnalysed {
                        metric,
                        variant,
                        reason: source.to_string(),
                    }),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        };
        let mut secondary = Vec::new();
        for metric in &spec.secondary_metrics {
            secondary.extend(compare_some(metric)?);
        }
        // Every (treatment, metric) pair of the primary and secondary metrics is one hypothesis
        // of the family: Holm keeps the chance of any false "significant" at alpha.
        let raw: Vec<f64> = primary
            .iter()
            .chain(&secondary)
            .map(|c| c.p_value)
            .collect();
        for (c, adjusted) in primary
            .iter_mut()
            .chain(secondary.iter_mut())
            .zip(stats::holm(&raw))
        {
            c.p_value_adjusted = adjusted;
            c.significant = adjusted < spec.alpha;
        }
        let mut guardrail_comparisons = Vec::new();
        for guardrail in &spec.guardrails {
            guardrail_comparisons.push((guardrail, compare_some(&guardrail.metric)?));
        }
        let mut guardrails = Vec::new();
        for (guardrail, comparisons) in guardrail_comparisons {
            for c in comparisons {
                let relative = c.relative_lift.map_or(0.0, |l| l.lift);
                let relative_degradation = match guardrail.metric.goal {
                    Goal::Increase => -relative,
                    Goal::Decrease => relative,
                };
                guardrails.push(GuardrailStatus {
                    failed: c.significant
                        && !c.improves
                        && relative_degradation > guardrail.max_relative_degradation,
                    metric: c.metric,
                    variant: c.variant,
                    relative_degradation,
                });
            }
        }

        let tau_squared = spec.primary_metric.minimum_detectable_effect.powi(2);
        let mut sequential_p = BTreeMap::new();
        for c in &primary {
            let mut test = stats::SequentialTest::new(tau_squared).map_err(|source| {
                ExperimentError::Stats {
                    metric: c.metric.clone(),
                    variant: c.variant.clone(),
                    source,
                }
            })?;
            if let Some(previous) = data
                .get(&c.variant)
                .and_then(|v| v.previous_sequential_p)
                .filter(|p| !p.is_nan())
            {
                test.p_value = previous.clamp(0.0, 1.0);
            }
            // A degenerate look (e.g. zero variance) leaves the running p-value unchanged.
            let _ = test.look(&c.treatment, &c.control);
            sequential_p.insert(c.variant.clone(), test.p_value);
        }

        let control_summary = primary.first().map(|c| c.control);
        let required_per_variant = match control_summary {
            Some(s) => planned_sample_size(spec, &s).map_err(|source| ExperimentError::Stats {
                metric: spec.primary_metric.key.clone(),
                variant: spec.control.clone(),
                source,
            })?,
            None => spec.min_sample_size,
        };
        let smallest_n = primary
            .iter()
            .flat_map(|c| [c.treatment.n, c.control.n])
            .min()
            .unwrap_or(0);

        let best = |candidates: &mut dyn Iterator<Item = &Comparison>| {
            candidates
                .max_by(|a, b| {
                    let gain = |c: &Comparison| match spec.primary_metric.goal {
                        Goal::Increase => c.difference.estimate,
                        Goal::Decrease => -c.difference.estimate,
                    };
                    gain(a).total_cmp(&gain(b))
                })
                .map(|c| c.variant.clone())
        };
        let recommendation = if srm.mismatch {
            Recommendation::CheckAssignment
        } else if let Some(g) = guardrails.iter().find(|g| g.failed) {
            Recommendation::StopGuardrailFailed {
                metric: g.metric.clone(),
                variant: g.variant.clone(),
            }
        } else if let Some(variant) = spec
            .early_stopping
            .then(|| {
                best(&mut primary.iter().filter(|c| {
                    c.improves
                        && sequential_p
                            .get(&c.variant)
                            .is_some_and(|p| *p <= spec.alpha)
                }))
            })
            .flatten()
        {
            Recommendation::Ship {
                variant,
                early: true,
            }
        } else if smallest_n < required_per_variant {
            Recommendation::KeepRunning {
                more_users_per_variant: required_per_variant - smallest_n,
            }
        } else if let Some(variant) =
            best(&mut primary.iter().filter(|c| c.significant && c.improves))
        {
            Recommendation::Ship {
                variant,
                early: false,
            }
        } else {
            Recommendation::KeepControl
        };

        Ok(ExperimentResults {
            srm,
            required_per_variant,
            primary,
            secondary,
            guardrails,
            sequential_p,
            recommendation,
            not_analysed,
        })
    }
}
