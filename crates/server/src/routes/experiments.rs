//! Experiments: create, lifecycle, metric events and results. Every query is keyed by the
//! caller's tenant, so another tenant's experiment is indistinguishable from a missing one (404).
//!
//! An experiment owns its flag in its environment and drives what it serves (see
//! [`crate::experiments`]). Its users are the users assigned by the flag's split while it ran
//! (the stored exposures whose first time lies in a running window); a user's variant is the
//! first variant they were assigned. Metric events join to users by targeting key. See
//! docs/flags.md, "Experiments over HTTP".

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use flags::experiment::{
    Comparison, Experiment, ExperimentPlan, ExperimentResults, ExperimentSpec, ExperimentState,
    ExperimentType, Goal, Guardrail, Metric, MetricKind, Recommendation, TestKind, Variant,
    VariantData,
};
use flags::stats::Summary;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{ExperimentEvent, ExperimentRecord, Scope};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::experiments::{apply, decode, load, now_ms, state_name, LifecycleAction, NewExperiment};
use crate::extract::{ApiJson, ApiQuery, Auth, OptionalJson};
use crate::ingest::RejectedEvent;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// Most metric events one request may carry; more is 413.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// The environment used when none is given.
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// Longest experiment key, flag key and environment name.
const MAX_NAME_CHARS: usize = 200;
/// Longest user id, metric key and event id, in bytes.
const MAX_ID_BYTES: usize = store::MAX_TARGETING_KEY_BYTES;

// ---- request and response shapes ---------------------------------------------------------

/// A variant and its share of the traffic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariantBody {
    /// The flag variant's key (what evaluations return as `variant`).
    #[schema(max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    key: String,
    /// Allocation weight, relative to the other variants' (positive). The flag's split must
    /// give the variant the same share (to the basis point).
    #[schema(minimum = 1)]
    weight: u32,
    /// With `create_flag`: the value the created flag serves for this variant [default: the
    /// variant key as a string]. Not stored with the experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    value: Option<Value>,
}

/// The kind of experiment (a label; the analysis is the same for all).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExperimentTypeBody {
    #[default]
    AbTest,
    Multivariate,
    FeatureFlag,
    SplitTest,
}

impl From<ExperimentTypeBody> for ExperimentType {
    fn from(t: ExperimentTypeBody) -> ExperimentType {
        match t {
            ExperimentTypeBody::AbTest => ExperimentType::AbTest,
            ExperimentTypeBody::Multivariate => ExperimentType::Multivariate,
            ExperimentTypeBody::FeatureFlag => ExperimentType::FeatureFlag,
            ExperimentTypeBody::SplitTest => ExperimentType::SplitTest,
        }
    }
}

impl From<ExperimentType> for ExperimentTypeBody {
    fn from(t: ExperimentType) -> ExperimentTypeBody {
        match t {
            ExperimentType::AbTest => ExperimentTypeBody::AbTest,
            ExperimentType::Multivariate => ExperimentTypeBody::Multivariate,
            ExperimentType::FeatureFlag => ExperimentTypeBody::FeatureFlag,
            ExperimentType::SplitTest => ExperimentTypeBody::SplitTest,
        }
    }
}

/// Whether a metric is a per-user conversion or a per-user value.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MetricKindBody {
    /// A user converted when they sent any event of the metric with a value above 0.
    Conversion,
    /// A user's value is the sum of their events' values (0 without events).
    Value,
}

/// Which direction of change is good.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GoalBody {
    Increase,
    Decrease,
}

/// A metric of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricBody {
    /// The metric key events name (1 to 256 bytes, no control characters).
    #[schema(max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    key: String,
    kind: MetricKindBody,
    goal: GoalBody,
    /// Smallest absolute change of the rate (conversion) or mean (value) worth detecting.
    #[schema(exclusive_minimum = 0.0)]
    minimum_detectable_effect: f64,
    /// Largest accepted absolute value of one event, up to 1e12; events beyond it are
    /// rejected [default: 1e9].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_abs_value: Option<f64>,
}

/// A metric that must not degrade.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GuardrailBody {
    metric: MetricBody,
    /// Tolerated relative degradation, e.g. 0.02 for 2 %.
    #[schema(minimum = 0.0)]
    max_relative_degradation: f64,
}

/// An experiment's definition (seed 002's fields).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentSpecBody {
    /// Experiment key, unique in your tenant: 1 to 200 characters of A-Z, a-z, 0-9, `_`, `.`, `-`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    key: String,
    /// The hypothesis being tested, in words (up to 2000 characters; tabs and line breaks are
    /// the only control characters allowed).
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    hypothesis: String,
    /// The flag the experiment owns: it must exist in the environment (or `create_flag`), its
    /// variants include the experiment's with the same split, and no other experiment may
    /// have owned it.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    flag_key: String,
    /// At least two variants, including the control.
    #[schema(min_items = 2)]
    variants: Vec<VariantBody>,
    /// The control variant's key.
    #[schema(max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    control: String,
    /// The decision metric.
    primary_metric: MetricBody,
    /// Reported, not decisive.
    #[serde(default)]
    secondary_metrics: Vec<MetricBody>,
    /// Metrics that must not degrade.
    #[serde(default)]
    guardrails: Vec<GuardrailBody>,
    /// Two-sided significance level, in (0, 0.5); default 0.05.
    #[serde(default = "default_alpha")]
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 0.5)]
    alpha: f64,
    /// Power of the sample-size plan, in (0.5, 1); default 0.8.
    #[serde(default = "default_power")]
    #[schema(exclusive_minimum = 0.5, exclusive_maximum = 1.0)]
    power: f64,
    /// Users per variant needed at least, whatever the power plan says; default 100.
    #[serde(default = "default_min_sample_size")]
    min_sample_size: u64,
    /// Whether the always-valid sequential test may recommend shipping early (and, with
    /// `auto_conclude`, complete the experiment); default true.
    #[serde(default = "default_true")]
    early_stopping: bool,
    /// The kind of experiment [default: `ab_test`].
    #[serde(rename = "type", default)]
    experiment_type: ExperimentTypeBody,
    /// Only users matching this condition group (the flag rule grammar) enter the experiment;
    /// the others are served the control [default: everyone].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::flag_schema::FlagRuleGroup>, nullable = false)]
    target_audience: Option<Value>,
    /// Users matching any of these condition groups never enter the experiment (served the
    /// control). At most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::flag_schema::FlagRuleGroup>, max_items = 20)]
    exclusion_rules: Vec<Value>,
    /// Share of the audience assigned, 1 to 100 (the flag's rollout at start) [default: 100].
    #[serde(default = "default_traffic")]
    #[schema(minimum = 1, maximum = 100)]
    traffic_percentage: u32,
    /// RFC 3339: when the review job starts the draft [default: started by hand].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    start_at: Option<String>,
    /// RFC 3339, in the future: when the review job completes it [default: at the maximum
    /// duration].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    end_at: Option<String>,
    /// Days after the start before an automatic early completion [default: 7].
    #[serde(default = "default_minimum_days")]
    #[schema(maximum = 365)]
    minimum_duration_days: u32,
    /// Days after the start when the review job completes it at the latest, 1 to 365
    /// [default: 30].
    #[serde(default = "default_maximum_days")]
    #[schema(minimum = 1, maximum = 365)]
    maximum_duration_days: u32,
    /// The person or team responsible (1 to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    owner: Option<String>,
    /// Free labels (at most 20, each 1 to 64 characters, unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 20)]
    tags: Vec<String>,
    /// Whether the review job may complete the experiment on its own and ship the winner
    /// [default: false].
    #[serde(default)]
    auto_conclude: bool,
    /// Create the flag when it does not exist: multivariate, status `draft`, the experiment's
    /// variants and weights, the control as default and off variant, exposures tracked.
    /// Only on create; never returned.
    #[serde(default, skip_serializing)]
    create_flag: bool,
}

fn default_true() -> bool {
    true
}

fn default_traffic() -> u32 {
    100
}

fn default_minimum_days() -> u32 {
    7
}

fn default_maximum_days() -> u32 {
    30
}

fn default_alpha() -> f64 {
    0.05
}

fn default_power() -> f64 {
    0.8
}

fn default_min_sample_size() -> u64 {
    100
}

impl From<MetricBody> for Metric {
    fn from(m: MetricBody) -> Metric {
        Metric {
            key: m.key,
            kind: match m.kind {
                MetricKindBody::Conversion => MetricKind::Conversion,
                MetricKindBody::Value => MetricKind::Value,
            },
            goal: match m.goal {
                GoalBody::Increase => Goal::Increase,
                GoalBody::Decrease => Goal::Decrease,
            },
            minimum_detectable_effect: m.minimum_detectable_effect,
            max_abs_value: m.max_abs_value,
        }
    }
}

impl From<&Metric> for MetricBody {
    fn from(m: &Metric) -> MetricBody {
        MetricBody {
            key: m.key.clone(),
            kind: match m.kind {
                MetricKind::Conversion => MetricKindBody::Conversion,
                MetricKind::Value => MetricKindBody::Value,
            },
            goal: match m.goal {
                Goal::Increase => GoalBody::Increase,
                Goal::Decrease => GoalBody::Decrease,
            },
            minimum_detectable_effect: m.minimum_detectable_effect,
            max_abs_value: m.max_abs_value,
        }
    }
}

/// A condition group of the flag grammar, naming `field` when it is not one.
fn rule_group(field: &str, value: Value) -> Result<flags::RuleGroup, ApiError> {
    serde_path_to_error::deserialize::<_, flags::RuleGroup>(value).map_err(|e| {
        ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "{field} must be a condition group of the flag rule grammar (a condition, or all/any/none of groups): {}",
                e.into_inner()
            ),
        )
        .with("field", field)
    })
}

/// An RFC 3339 time in epoch milliseconds, naming `field` when it is not one.
fn instant(field: &str, text: &str) -> Result<i64, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::Unprocessable,
                format!("{field} must be RFC 3339, e.g. 2026-01-02T03:04:05Z, got {text:?}"),
            )
            .with("field", field)
        })
}

impl ExperimentSpecBody {
    /// The experiment to create in `environment`: the definition, the plan and the flag
    /// instructions; 422 naming the field for a setting the types cannot rule out.
    fn into_new(self, environment: String) -> Result<NewExperiment, ApiError> {
        if self.traffic_percentage == 0 || self.traffic_percentage > 100 {
            return Err(ApiError::new(
                ProblemKind::Unprocessable,
                format!(
                    "traffic_percentage must be 1 to 100, got {}",
                    self.traffic_percentage
                ),
            )
            .with("field", "traffic_percentage"));
        }
        let target_audience = self
            .target_audience
            .clone()
            .map(|v| rule_group("target_audience", v))
            .transpose()?;
        let exclusion_rules = self
            .exclusion_rules
            .iter()
            .enumerate()
            .map(|(i, v)| rule_group(&format!("exclusion_rules[{i}]"), v.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = ExperimentPlan {
            experiment_type: self.experiment_type.into(),
            target_audience,
            exclusion_rules,
            traffic_percentage: self.traffic_percentage,
            start_at: self
                .start_at
                .as_deref()
                .map(|t| instant("start_at", t))
                .transpose()?,
            end_at: self
                .end_at
                .as_deref()
                .map(|t| instant("end_at", t))
                .transpose()?,
            minimum_duration_days: self.minimum_duration_days,
            maximum_duration_days: self.maximum_duration_days,
            owner: self.owner.clone(),
            tags: self.tags.clone(),
            auto_conclude: self.auto_conclude,
        };
        let values = self
            .variants
            .iter()
            .filter_map(|v| v.value.clone().map(|value| (v.key.clone(), value)))
            .collect();
        let create_flag = self.create_flag;
        Ok(NewExperiment {
            environment,
            spec: self.into(),
            plan,
            create_flag,
            values,
        })
    }

    /// The body an experiment reads back as.
    fn of(e: &Experiment) -> ExperimentSpecBody {
        let mut body = ExperimentSpecBody::from(&e.spec);
        let plan = &e.plan;
        body.experiment_type = plan.experiment_type.into();
        body.target_audience = plan
            .target_audience
            .as_ref()
            .and_then(|g| serde_json::to_value(g).ok());
        body.exclusion_rules = plan
            .exclusion_rules
            .iter()
            .filter_map(|g| serde_json::to_value(g).ok())
            .collect();
        body.traffic_percentage = plan.traffic_percentage;
        body.start_at = plan.start_at.map(crate::rfc3339_ms);
        body.end_at = plan.end_at.map(crate::rfc3339_ms);
        body.minimum_duration_days = plan.minimum_duration_days;
        body.maximum_duration_days = plan.maximum_duration_days;
        body.owner = plan.owner.clone();
        body.tags = plan.tags.clone();
        body.auto_conclude = plan.auto_conclude;
        body
    }
}

impl From<ExperimentSpecBody> for ExperimentSpec {
    fn from(b: ExperimentSpecBody) -> ExperimentSpec {
        ExperimentSpec {
            key: b.key,
            hypothesis: b.hypothesis,
            flag_key: b.flag_key,
            variants: b
                .variants
                .into_iter()
                .map(|v| Variant::new(&v.key, v.weight))
                .collect(),
            control: b.control,
            primary_metric: b.primary_metric.into(),
            secondary_metrics: b.secondary_metrics.into_iter().map(Into::into).collect(),
            guardrails: b
                .guardrails
                .into_iter()
                .map(|g| Guardrail {
                    metric: g.metric.into(),
                    max_relative_degradation: g.max_relative_degradation,
                })
                .collect(),
            alpha: b.alpha,
            power: b.power,
            min_sample_size: b.min_sample_size,
            early_stopping: b.early_stopping,
        }
    }
}

impl From<&ExperimentSpec> for ExperimentSpecBody {
    fn from(s: &ExperimentSpec) -> ExperimentSpecBody {
        ExperimentSpecBody {
            key: s.key.clone(),
            hypothesis: s.hypothesis.clone(),
            flag_key: s.flag_key.clone(),
            variants: s
                .variants
                .iter()
                .map(|v| VariantBody {
                    key: v.key.clone(),
                    weight: v.weight,
                    value: None,
                })
                .collect(),
            control: s.control.clone(),
            primary_metric: (&s.primary_metric).into(),
            secondary_metrics: s.secondary_metrics.iter().map(Into::into).collect(),
            guardrails: s
                .guardrails
                .iter()
                .map(|g| GuardrailBody {
                    metric: (&g.metric).into(),
                    max_relative_degradation: g.max_relative_degradation,
                })
                .collect(),
            alpha: s.alpha,
            power: s.power,
            min_sample_size: s.min_sample_size,
            early_stopping: s.early_stopping,
            experiment_type: ExperimentTypeBody::default(),
            target_audience: None,
            exclusion_rules: Vec::new(),
            traffic_percentage: default_traffic(),
            start_at: None,
            end_at: None,
            minimum_duration_days: default_minimum_days(),
            maximum_duration_days: default_maximum_days(),
            owner: None,
            tags: Vec::new(),
            auto_conclude: false,
            create_flag: false,
        }
    }
}

/// Lifecycle state (seed 002's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateBody {
    Draft,
    Running,
    Paused,
    Completed,
    Failed,
}

impl From<ExperimentState> for StateBody {
    fn from(s: ExperimentState) -> StateBody {
        match s {
            ExperimentState::Draft => StateBody::Draft,
            ExperimentState::Running => StateBody::Running,
            ExperimentState::Paused => StateBody::Paused,
            ExperimentState::Completed => StateBody::Completed,
            ExperimentState::Failed => StateBody::Failed,
        }
    }
}

/// A period the experiment ran; only users assigned inside one count in its results.
#[derive(Serialize, ToSchema)]
pub(crate) struct WindowBody {
    /// Start or resume (RFC 3339).
    start: String,
    /// Pause, completion or failure (RFC 3339); absent while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    end: Option<String>,
}

/// An experiment as stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExperimentResponse {
    key: String,
    /// The environment whose exposures assign users.
    environment: String,
    /// Grows by one per change; also the `ETag`.
    version: i64,
    state: StateBody,
    spec: ExperimentSpecBody,
    /// RFC 3339.
    created_at: String,
    /// First start (RFC 3339).
    started_at: Option<String>,
    /// Set while paused (RFC 3339).
    paused_at: Option<String>,
    /// Completion or failure time (RFC 3339).
    concluded_at: Option<String>,
    /// The variant chosen at completion; null when no change ships.
    winner: Option<String>,
    /// Why it failed, or what completed it automatically (the review job); null otherwise.
    reason: Option<String>,
    /// The periods it ran, oldest first.
    windows: Vec<WindowBody>,
}

/// Your experiments.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExperimentListResponse {
    /// In key order.
    experiments: Vec<ExperimentResponse>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateQuery {
    /// The environment whose flag exposures assign the experiment's users (default `production`).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    environment: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only experiments in this environment (default: every environment).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,200}$")]
    environment: Option<String>,
    /// Only experiments in this status.
    status: Option<StateBody>,
    /// Only experiments of this owner (exact).
    #[param(max_length = 200)]
    owner: Option<String>,
    /// Only experiments with this tag.
    #[param(max_length = 64)]
    tag: Option<String>,
}

/// Optional body of `fail`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailRequest {
    /// Why (up to 500 characters, no control characters) [default: "failed by an operator"].
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    reason: Option<String>,
}

/// Optional body of `conclude`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConcludeRequest {
    /// The variant to ship (one of the experiment's variant keys); omit or null when no change
    /// ships.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    winner: Option<String>,
}

/// One metric event, as `POST …/events` takes it.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the shape; events are validated one by one from JSON values
pub(crate) struct MetricEventBody {
    /// The user: the targeting key their flag evaluations used (1 to 256 bytes).
    user: String,
    /// One of the experiment's metric keys (primary, secondary or guardrail).
    metric: String,
    /// The value: 1 for a conversion (the default), or an amount for a value metric.
    value: Option<f64>,
    /// Your id for the event (1 to 256 bytes): a resend with the same id is not counted twice.
    event_id: Option<String>,
    /// When it happened, RFC 3339 (default: when received).
    timestamp: Option<String>,
}

/// Metric events for an experiment.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the shape; the body is parsed as JSON values
pub(crate) struct EventsRequest {
    /// 1 to 10,000 events.
    events: Vec<MetricEventBody>,
}

/// What became of the events.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventsResponse {
    /// Events accepted: newly stored plus duplicates.
    accepted: u64,
    /// Events stored for the first time.
    stored: u64,
    /// Events whose `event_id` was already stored: accepted, not counted again.
    duplicates: u64,
    /// The events not accepted, each with its index, field and reason.
    rejected: Vec<RejectedEvent>,
}

// ---- handlers ------------------------------------------------------------------------------

/// Creates an experiment in the draft state (admin scope) on the flag it will own in the
/// `environment`: the flag must exist (or `create_flag`), match its variants and weights, and
/// never have belonged to another experiment. Its users will be the users the flag's split
/// assigns while the experiment runs.
#[utoipa::path(post, path = "/api/v1/experiments", tag = "experiments", security(("api_key" = [])),
    params(CreateQuery),
    request_body = ExperimentSpecBody,
    responses(
        (status = 201, description = "Created; `Location` and `ETag` set", body = ExperimentResponse),
        (status = 400, description = "Malformed body or bad environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "An experiment with this key exists, or the flag belongs to another experiment (`owner`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Invalid definition, missing flag (`flag_key`) or variants not matching the flag (`variants`); `field` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(query): ApiQuery<CreateQuery>,
    ApiJson(body): ApiJson<ExperimentSpecBody>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    let environment = environment_parameter(query.environment)?;
    check_name("key", &body.key)?;
    check_name("flag_key", &body.flag_key)?;
    check_spec_text(&body)?;
    let new = body.into_new(environment)?;
    let (record, experiment) = crate::experiments::create(&state, auth.tenant_id(), new).await?;
    let location = format!("/api/v1/experiments/{}", record.key);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        with_etag(&record, respond(&record, &experiment)),
    ))
}

/// Your experiments (read scope), optionally only one environment's, status, owner or tag.
#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments", security(("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = ExperimentListResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<ExperimentListResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let environment = query
        .environment
        .map(|e| environment_parameter(Some(e)))
        .transpose()?;
    for (parameter, value, max_chars) in [
        ("owner", &query.owner, MAX_OWNER_CHARS),
        ("tag", &query.tag, MAX_TAG_CHARS),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > max_chars)
        {
            return Err(ApiError::invalid_parameter(
                parameter,
                format!("{parameter} must be at most {max_chars} characters"),
            ));
        }
    }
    let mut experiments = Vec::new();
    for record in state.store().experiments(auth.tenant_id()).await? {
        if environment
            .as_ref()
            .is_some_and(|e| *e != record.environment)
        {
            continue;
        }
        let experiment = decode(&record)?;
        if query
            .status
            .is_some_and(|s| s != StateBody::from(experiment.state))
            || query
                .owner
                .as_ref()
                .is_some_and(|o| experiment.plan.owner.as_ref() != Some(o))
            || query
                .tag
                .as_ref()
                .is_some_and(|t| !experiment.plan.tags.contains(t))
        {
            continue;
        }
        experiments.push(respond(&record, &experiment));
    }
    Ok(axum::Json(ExperimentListResponse { experiments }))
}

/// One experiment (read scope); the `ETag` is its version.
#[utoipa::path(get, path = "/api/v1/experiments/{key}", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, body = ExperimentResponse, headers(("ETag" = String, description = "The version, quoted"))),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such experiment in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Read)?;
    let record = load(&state, auth.tenant_id(), &key).await?;
    let experiment = decode(&record)?;
    Ok(with_etag(&record, respond(&record, &experiment)))
}

/// Starts a draft experiment (admin scope): its flag is turned on (status `active`, kill
/// switch off) with `rollout_bp` = traffic × 100 and the audience rule first.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/start", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, body = ExperimentResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Not a draft", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The flag is gone or no longer matches the variants (`field`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn start(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    changed(apply(&state, auth.tenant_id(), &key, LifecycleAction::Start).await)
}

/// Pauses a running experiment (admin scope): its flag serves the control to everyone (rule
/// `experiment.paused`), so nobody is assigned; users assigned meanwhile do not count. Metric
/// events are still accepted while paused.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/pause", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, body = ExperimentResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Not running", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    changed(apply(&state, auth.tenant_id(), &key, LifecycleAction::Pause).await)
}

/// Resumes a paused experiment (admin scope): the `experiment.paused` rule is removed and a
/// new running window opens.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/resume", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, body = ExperimentResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Not paused", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    changed(apply(&state, auth.tenant_id(), &key, LifecycleAction::Resume).await)
}

/// Completes a running or paused experiment (admin scope), optionally naming the winning
/// variant: its flag serves the winner (or the control) to everyone (rule
/// `experiment.completed`). The body is optional.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/conclude", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    request_body(content = Option<ConcludeRequest>, description = "Optional: `{\"winner\": \"variant\"}`"),
    responses(
        (status = 200, body = ExperimentResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Not running or paused", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The winner is not a variant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn conclude(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    OptionalJson(request): OptionalJson<ConcludeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    let request = request.unwrap_or_default();
    if let Some(winner) = &request.winner {
        check_text("winner", winner, MAX_VARIANT_CHARS, false)?;
    }
    let winner = request.winner;
    changed(
        apply(
            &state,
            auth.tenant_id(),
            &key,
            LifecycleAction::Conclude {
                winner,
                reason: None,
            },
        )
        .await,
    )
}

/// Fails a running or paused experiment (admin scope), with an optional reason: its flag
/// serves the control to everyone (rule `experiment.failed`). The review job fails an
/// experiment whose guardrail is breached the same way.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/fail", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    request_body(content = Option<FailRequest>, description = "Optional: `{\"reason\": \"...\"}`"),
    responses(
        (status = 200, body = ExperimentResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Not running or paused", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn fail(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    OptionalJson(request): OptionalJson<FailRequest>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::Admin)?;
    let request = request.unwrap_or_default();
    if let Some(reason) = &request.reason {
        check_text("reason", reason, 500, false)?;
    }
    let reason = request
        .reason
        .unwrap_or_else(|| crate::experiments::OPERATOR_FAIL_REASON.to_owned());
    changed(
        apply(
            &state,
            auth.tenant_id(),
            &key,
            LifecycleAction::Fail { reason },
        )
        .await,
    )
}

/// Metric events of the experiment's users (write scope): `{"events": [{user, metric, value?,
/// event_id?, timestamp?}]}`, at most 10,000 per request. Accepted while the experiment runs
/// or is paused (409 for a draft, completed or failed one). Each event is checked on its own: bad
/// ones are listed in `rejected` with their index, field and reason, the rest are stored.
#[utoipa::path(post, path = "/api/v1/experiments/{key}/events", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    request_body = EventsRequest,
    responses(
        (status = 200, description = "At least one event accepted (or none sent); rejected ones listed", body = EventsResponse),
        (status = 400, description = "The body is not `{\"events\": [...]}`", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "The experiment is a draft, completed or failed", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "More than 10,000 events", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every event was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<EventsResponse>, ApiError> {
    auth.require(Scope::Write)?;
    let record = load(&state, auth.tenant_id(), &key).await?;
    let experiment = decode(&record)?;
    if !matches!(
        experiment.state,
        ExperimentState::Running | ExperimentState::Paused
    ) {
        return Err(ApiError::new(
            ProblemKind::InvalidState,
            format!(
                "experiment '{key}' is {}; metric events are accepted only while it is running or paused",
                state_name(experiment.state)
            ),
        )
        .with("state", state_name(experiment.state)));
    }
    let items = match body {
        Value::Object(mut members) => {
            let items = match members.remove("events") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(ApiError::invalid_field(
                        "events",
                        "the body must be {\"events\": [...]}, an array of metric events",
                    ))
                }
            };
            if let Some(unknown) = members.keys().next() {
                return Err(ApiError::invalid_field(
                    unknown,
                    format!(
                        "unknown field `{}`: the body is {{\"events\": [...]}}",
                        crate::problem::excerpt(unknown, 64)
                    ),
                ));
            }
            items
        }
        _ => return Err(crate::extract::not_an_object()),
    };
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!(
                "{} events in one request; send at most {MAX_EVENTS_PER_REQUEST} per request",
                items.len()
            ),
        )
        .with("max_events", MAX_EVENTS_PER_REQUEST));
    }
    let metrics = experiment_metrics(&experiment.spec);
    let now = now_ms();
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match parse_event(item, &metrics, now) {
            Ok(event) => valid.push(event),
            Err((event_id, field, reason)) => rejected.push(RejectedEvent {
                index,
                event_id,
                field: field.map(str::to_owned),
                reason,
            }),
        }
    }
    if valid.is_empty() && !rejected.is_empty() {
        let listed = serde_json::to_value(&rejected).unwrap_or_default();
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "all {} events were rejected; see `rejected`",
                rejected.len()
            ),
        )
        .with("accepted", 0)
        .with("rejected", listed));
    }
    let outcome = state
        .store()
        .insert_experiment_events(auth.tenant_id(), &record.key, &valid, now)
        .await?;
    Ok(axum::Json(EventsResponse {
        accepted: valid.len() as u64,
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        rejected,
    }))
}

/// A metric event that was voided.
#[derive(Serialize, ToSchema)]
pub(crate) struct VoidedEventResponse {
    event_id: String,
    user: String,
    metric: String,
    value: f64,
    /// When it happened, RFC 3339.
    timestamp: String,
    /// When it was voided, RFC 3339 (the first time, if voided again).
    voided_at: String,
    /// The id of the API key that voided it.
    voided_by: Option<String>,
}

/// Voids one metric event by its `event_id` (admin scope): it stays stored with when and by
/// which key it was voided, and no result counts it from now on. Voiding again is harmless.
/// Events sent without an `event_id` cannot be voided one by one.
#[utoipa::path(delete, path = "/api/v1/experiments/{key}/events/{event_id}", tag = "experiments", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "Experiment key"),
        ("event_id" = String, Path, description = "The event's `event_id`, as it was sent"),
    ),
    responses(
        (status = 200, description = "The event, now voided", body = VoidedEventResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such experiment, or no event with this id in it", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn void_event(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, event_id)): Path<(String, String)>,
) -> Result<axum::Json<VoidedEventResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let record = load(&state, auth.tenant_id(), &key).await?;
    let event = state
        .store()
        .void_experiment_event(
            auth.tenant_id(),
            &record.key,
            &event_id,
            &auth.0.key_id,
            now_ms(),
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "experiment '{key}' has no event with event_id '{event_id}'"
            ))
        })?;
    tracing::info!(experiment = %record.key, event_id = %event.event_id, key_id = %auth.0.key_id, "metric event voided");
    Ok(axum::Json(VoidedEventResponse {
        event_id: event.event_id,
        user: event.targeting_key,
        metric: event.metric_key,
        value: event.value,
        timestamp: crate::rfc3339_ms(event.at_ms),
        voided_at: crate::rfc3339_ms(event.voided_at_ms.unwrap_or_default()),
        voided_by: event.voided_by,
    }))
}

// ---- results -------------------------------------------------------------------------------

/// A variant's figures for one metric.
#[derive(Serialize, ToSchema)]
pub(crate) struct VariantStats {
    variant: String,
    /// Users (exposed users of the variant).
    n: u64,
    /// Conversion rate or mean value per user.
    mean: f64,
    /// Unbiased sample variance of the per-user values (of the 0/1 outcome for conversions).
    variance: f64,
}

/// A confidence interval around an estimate.
#[derive(Serialize, ToSchema)]
pub(crate) struct Interval {
    estimate: f64,
    ci_low: f64,
    ci_high: f64,
}

/// Welch's t-test of treatment minus control.
#[derive(Serialize, ToSchema)]
pub(crate) struct WelchBody {
    t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    df: f64,
    /// Two-sided.
    p_value: f64,
}

/// A chi-square test.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChiSquareBody {
    statistic: f64,
    df: f64,
    p_value: f64,
}

/// One treatment variant against the control, on one metric.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComparisonBody {
    variant: String,
    /// Treatment minus control, with its Welch interval at 1 - alpha.
    difference: Interval,
    /// (treatment - control) / control with a delta-method interval at 1 - alpha; null when the
    /// control's mean is 0.
    relative_lift: Option<Interval>,
    /// Welch's t-test (null when a variant has fewer than two users or no variance).
    welch_t: Option<WelchBody>,
    /// Yates-corrected 2x2 chi-square test, for conversion metrics.
    chi_square: Option<ChiSquareBody>,
    /// Mann-Whitney U two-sided p-value, for value metrics with raw per-user values (up to
    /// 100,000 users per variant).
    mann_whitney_p: Option<f64>,
    /// The decisive p-value: chi-square for conversions, Welch for values.
    p_value: f64,
    /// `chi_square` or `welch_t`: which test `p_value` comes from.
    test: &'static str,
    /// `p_value` after Holm's correction across all primary and secondary comparisons of the
    /// experiment (docs/flags.md, Multiple comparisons).
    p_value_adjusted: f64,
    /// p_value_adjusted < alpha.
    significant: bool,
    /// The change goes in the metric's good direction.
    improves: bool,
}

/// One metric's results.
#[derive(Serialize, ToSchema)]
pub(crate) struct MetricResult {
    metric: String,
    /// `primary` or `secondary`.
    role: &'static str,
    kind: MetricKindBody,
    /// Control first, then the other variants in definition order.
    variants: Vec<VariantStats>,
    /// One per non-control variant.
    comparisons: Vec<ComparisonBody>,
}

/// Sample-ratio-mismatch check: are users split as the weights say?
#[derive(Serialize, ToSchema)]
pub(crate) struct SrmBody {
    /// Chi-square goodness of fit of users per variant against the weights.
    statistic: f64,
    df: f64,
    p_value: f64,
    /// p_value < 0.001: assignment is broken and results are not trustworthy.
    mismatch: bool,
}

/// The always-valid sequential test (mixture SPRT) on the primary metric.
#[derive(Serialize, ToSchema)]
pub(crate) struct SequentialBody {
    /// Running minimum always-valid p-value per non-control variant (valid at every look).
    p_values: BTreeMap<String, f64>,
    /// Whether it may stop the experiment early (the experiment's `early_stopping`).
    early_stopping: bool,
    /// Variants whose always-valid p-value is at or below alpha.
    rejects_null: Vec<String>,
}

/// Guardrail outcome for one variant.
#[derive(Serialize, ToSchema)]
pub(crate) struct GuardrailResult {
    metric: String,
    variant: String,
    /// Relative change in the bad direction (positive = worse).
    relative_degradation: f64,
    /// The degradation exceeds the threshold and is significant.
    failed: bool,
}

/// What to do next.
#[derive(Serialize, ToSchema)]
pub(crate) struct RecommendationBody {
    /// `check_assignment`, `stop_guardrail_failed`, `ship`, `keep_running` or `keep_control`.
    action: &'static str,
    /// The variant to ship, or the one that failed a guardrail.
    variant: Option<String>,
    /// The failed guardrail's metric.
    metric: Option<String>,
    /// For `ship`: whether the sequential test decided before the planned sample size.
    early: Option<bool>,
    /// For `keep_running`: users still needed per variant.
    more_users_per_variant: Option<u64>,
    /// The recommendation in plain language.
    text: String,
}

/// An experiment's analysis.
#[derive(Serialize, ToSchema)]
pub(crate) struct ResultsResponse {
    experiment: String,
    state: StateBody,
    environment: String,
    /// Exposed users per variant.
    users: BTreeMap<String, u64>,
    /// Significance level used.
    alpha: f64,
    srm: SrmBody,
    /// Users per variant the primary metric needs for its MDE, alpha and power (at least the
    /// experiment's `min_sample_size`).
    required_per_variant: u64,
    /// The primary metric first, then the secondary ones.
    metrics: Vec<MetricResult>,
    guardrails: Vec<GuardrailResult>,
    sequential: SequentialBody,
    recommendation: RecommendationBody,
    /// Secondary and guardrail comparisons the data cannot support yet (say, no variance in
    /// either group), each with the reason; the rest of the analysis stands without them.
    not_analysed: Vec<NotAnalysedBody>,
    /// RFC 3339: when this analysis was computed.
    computed_at: String,
}

/// A comparison left out of the analysis.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotAnalysedBody {
    metric: String,
    variant: String,
    /// What the data lacks.
    reason: String,
}

/// The experiment's analysis now (read scope): per metric and variant n, mean and variance;
/// per treatment the difference and relative lift with intervals, Welch, chi-square
/// (conversions) and Mann-Whitney U (values) p-values; the sample-ratio-mismatch check; the
/// always-valid sequential test (its running minimum is kept between looks); the required
/// sample size; guardrails; and a plain-language recommendation.
#[utoipa::path(get, path = "/api/v1/experiments/{key}/results", tag = "experiments", security(("api_key" = [])),
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, body = ResultsResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Not enough data to analyse yet (the detail says which metric and variant)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn results(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> Result<axum::Json<ResultsResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let analysis = crate::experiments::analyse(&state, auth.tenant_id(), &key).await?;
    Ok(axum::Json(results_body(
        &analysis.record,
        &analysis.experiment,
        &analysis.data,
        analysis.results,
    )))
}

fn results_body(
    record: &ExperimentRecord,
    experiment: &Experiment,
    data: &BTreeMap<String, VariantData>,
    results: ExperimentResults,
) -> ResultsResponse {
    let spec = &experiment.spec;
    let mut metrics = Vec::new();
    let groups = [
        ("primary", std::slice::from_ref(&spec.primary_metric)),
        ("secondary", spec.secondary_metrics.as_slice()),
    ];
    for (role, defined) in groups {
        let comparisons = if role == "primary" {
            &results.primary
        } else {
            &results.secondary
        };
        for metric in defined {
            let mine: Vec<&Comparison> = comparisons
                .iter()
                .filter(|c| c.metric == metric.key)
                .collect();
            let mut variants = Vec::new();
            if let Some(first) = mine.first() {
                variants.push(variant_stats(&spec.control, &first.control));
            }
            variants.extend(mine.iter().map(|c| variant_stats(&c.variant, &c.treatment)));
            metrics.push(MetricResult {
                metric: metric.key.clone(),
                role,
                kind: MetricBody::from(metric).kind,
                variants,
                comparisons: mine
                    .iter()
                    .map(|c| comparison_body(c, spec.alpha))
                    .collect(),
            });
        }
    }
    let rejects_null = results
        .sequential_p
        .iter()
        .filter(|(_, p)| **p <= spec.alpha)
        .map(|(v, _)| v.clone())
        .collect();
    ResultsResponse {
        experiment: record.key.clone(),
        state: experiment.state.into(),
        environment: record.environment.clone(),
        users: data.iter().map(|(k, v)| (k.clone(), v.users)).collect(),
        alpha: spec.alpha,
        srm: SrmBody {
            statistic: results.srm.test.statistic,
            df: results.srm.test.df,
            p_value: results.srm.test.p_value,
            mismatch: results.srm.mismatch,
        },
        required_per_variant: results.required_per_variant,
        metrics,
        guardrails: results
            .guardrails
            .iter()
            .map(|g| GuardrailResult {
                metric: g.metric.clone(),
                variant: g.variant.clone(),
                relative_degradation: g.relative_degradation,
                failed: g.failed,
            })
            .collect(),
        sequential: SequentialBody {
            p_values: results.sequential_p.clone(),
            early_stopping: spec.early_stopping,
            rejects_null,
        },
        recommendation: recommendation_body(&results.recommendation),
        not_analysed: results
            .not_analysed
            .iter()
            .map(|n| NotAnalysedBody {
                metric: n.metric.clone(),
                variant: n.variant.clone(),
                reason: n.reason.clone(),
            })
            .collect(),
        computed_at: crate::rfc3339_ms(crate::feature_flags::clock_ms()),
    }
}

fn variant_stats(variant: &str, s: &Summary) -> VariantStats {
    VariantStats {
        variant: variant.to_owned(),
        n: s.n,
        mean: s.mean,
        variance: s.variance,
    }
}

fn comparison_body(c: &Comparison, alpha: f64) -> ComparisonBody {
    let welch = flags::stats::welch_t_test(&c.treatment, &c.control, 1.0 - alpha).ok();
    let chi_square = match c.test {
        TestKind::ChiSquare => Some(ChiSquareBody {
            statistic: c.statistic,
            df: 1.0,
            p_value: c.p_value,
        }),
        TestKind::WelchT => None,
    };
    ComparisonBody {
        variant: c.variant.clone(),
        difference: Interval {
            estimate: c.difference.estimate,
            ci_low: c.difference.ci_low,
            ci_high: c.difference.ci_high,
        },
        relative_lift: c.relative_lift.map(|l| Interval {
            estimate: l.lift,
            ci_low: l.ci_low,
            ci_high: l.ci_high,
        }),
        welch_t: welch.map(|w| WelchBody {
            t: w.t,
            df: w.df,
            p_value: w.p_value,
        }),
        chi_square,
        mann_whitney_p: c.mann_whitney_p,
        p_value: c.p_value,
        test: match c.test {
            TestKind::ChiSquare => "chi_square",
            TestKind::WelchT => "welch_t",
        },
        p_value_adjusted: c.p_value_adjusted,
        significant: c.significant,
        improves: c.improves,
    }
}

fn recommendation_body(r: &Recommendation) -> RecommendationBody {
    let mut body = RecommendationBody {
        action: "",
        variant: None,
        metric: None,
        early: None,
        more_users_per_variant: None,
        text: r.to_string(),
    };
    match r {
        Recommendation::CheckAssignment => body.action = "check_assignment",
        Recommendation::StopGuardrailFailed { metric, variant } => {
            body.action = "stop_guardrail_failed";
            body.metric = Some(metric.clone());
            body.variant = Some(variant.clone());
        }
        Recommendation::Ship { variant, early } => {
            body.action = "ship";
            body.variant = Some(variant.clone());
            body.early = Some(*early);
        }
        Recommendation::KeepRunning {
            more_users_per_variant,
        } => {
            body.action = "keep_running";
            body.more_users_per_variant = Some(*more_users_per_variant);
        }
        Recommendation::KeepControl => body.action = "keep_control",
    }
    body
}

// ---- helpers -------------------------------------------------------------------------------

/// A lifecycle step's answer: the experiment after it, with its version as the ETag.
fn changed(
    outcome: Result<(ExperimentRecord, Experiment), ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let (record, experiment) = outcome?;
    Ok(with_etag(&record, respond(&record, &experiment)))
}

fn respond(record: &ExperimentRecord, e: &Experiment) -> ExperimentResponse {
    ExperimentResponse {
        key: record.key.clone(),
        environment: record.environment.clone(),
        version: record.version,
        state: e.state.into(),
        spec: ExperimentSpecBody::of(e),
        created_at: crate::rfc3339_ms(e.created_at),
        started_at: e.started_at.map(crate::rfc3339_ms),
        paused_at: e.paused_at.map(crate::rfc3339_ms),
        concluded_at: e.concluded_at.map(crate::rfc3339_ms),
        winner: e.winner.clone(),
        reason: e.reason.clone(),
        windows: e
            .running_windows()
            .iter()
            .map(|w| WindowBody {
                start: crate::rfc3339_ms(w.start),
                end: w.end.map(crate::rfc3339_ms),
            })
            .collect(),
    }
}

fn with_etag(record: &ExperimentRecord, body: ExperimentResponse) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        headers.insert(header::ETAG, value);
    }
    (headers, axum::Json(body))
}

fn environment_parameter(environment: Option<String>) -> Result<String, ApiError> {
    let environment = environment.unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
    if !valid_name(&environment) {
        return Err(ApiError::invalid_parameter(
            "environment",
            format!("environment must be 1 to {MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '_', '.', '-'"),
        ));
    }
    Ok(environment)
}

/// Keys the store accepts: the flags crate's key alphabet.
fn valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_NAME_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if valid_name(value) {
        return Ok(());
    }
    Err(ApiError::new(
        ProblemKind::Unprocessable,
        format!("{field} must be 1 to {MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '_', '.', '-'"),
    )
    .with("field", field))
}

/// Longest hypothesis, in characters.
const MAX_HYPOTHESIS_CHARS: usize = 2000;
/// Longest variant key (and control, winner), in characters.
const MAX_VARIANT_CHARS: usize = 128;
/// Longest owner, in characters.
const MAX_OWNER_CHARS: usize = 200;
/// Longest tag, in characters.
const MAX_TAG_CHARS: usize = 64;

/// Free text is bounded and holds no control characters (`multiline` lets tabs and line
/// breaks through): a NUL in a metric key would make an experiment no event can reach.
fn check_text(field: &str, value: &str, max_chars: usize, multiline: bool) -> Result<(), ApiError> {
    let count = value.chars().count();
    if value.is_empty() || count > max_chars {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must be 1 to {max_chars} characters (got {count})"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\t' | '\n' | '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not contain control characters (NUL, escapes...)"),
        ));
    }
    Ok(())
}

fn check_metric_text(field: &str, metric: &MetricBody) -> Result<(), ApiError> {
    // A metric key is what events name, so it obeys the event fields' byte bound too.
    check_text(&format!("{field}.key"), &metric.key, MAX_ID_BYTES, false)?;
    if metric.key.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid_field(
            &format!("{field}.key"),
            format!("{field}.key must be at most {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The bounds of the definition's free text; see [`check_text`].
fn check_spec_text(spec: &ExperimentSpecBody) -> Result<(), ApiError> {
    if !spec.hypothesis.is_empty() {
        check_text("hypothesis", &spec.hypothesis, MAX_HYPOTHESIS_CHARS, true)?;
    }
    for (i, v) in spec.variants.iter().enumerate() {
        check_text(
            &format!("variants[{i}].key"),
            &v.key,
            MAX_VARIANT_CHARS,
            false,
        )?;
    }
    check_text("control", &spec.control, MAX_VARIANT_CHARS, false)?;
    if let Some(owner) = &spec.owner {
        check_text("owner", owner, MAX_OWNER_CHARS, false)?;
    }
    if spec.tags.len() > flags::experiment::MAX_TAGS {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!("at most {} tags", flags::experiment::MAX_TAGS),
        )
        .with("field", "tags"));
    }
    for (i, tag) in spec.tags.iter().enumerate() {
        // The schema cannot bound the items, so an empty or long tag is schema-valid and its
        // refusal a 422 (the bounded fields above are schema-invalid first: 400).
        let field = format!("tags[{i}]");
        let count = tag.chars().count();
        if tag.is_empty() || count > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(ApiError::new(
                ProblemKind::Unprocessable,
                format!(
                    "{field} must be 1 to {MAX_TAG_CHARS} characters without control characters (got {count})"
                ),
            )
            .with("field", field));
        }
    }
    check_metric_text("primary_metric", &spec.primary_metric)?;
    for (i, m) in spec.secondary_metrics.iter().enumerate() {
        check_metric_text(&format!("secondary_metrics[{i}]"), m)?;
    }
    for (i, g) in spec.guardrails.iter().enumerate() {
        check_metric_text(&format!("guardrails[{i}].metric"), &g.metric)?;
    }
    Ok(())
}

fn experiment_metrics(spec: &ExperimentSpec) -> Vec<&Metric> {
    std::iter::once(&spec.primary_metric)
        .chain(&spec.secondary_metrics)
        .chain(spec.guardrails.iter().map(|g| &g.metric))
        .collect()
}

type EventRejection = (Option<String>, Option<&'static str>, String);

/// Validates one metric event.
fn parse_event(
    value: Value,
    metrics: &[&Metric],
    now: i64,
) -> Result<ExperimentEvent, EventRejection> {
    let Value::Object(obj) = value else {
        return Err((None, None, "each event must be a JSON object".to_owned()));
    };
    let event_id = match obj.get("event_id").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => {
            return Err((
                None,
                Some("event_id"),
                format!("event_id must be a string of 1 to {MAX_ID_BYTES} bytes, without NUL"),
            ))
        }
    };
    let fail = |field: &'static str, reason: String| (event_id.clone(), Some(field), reason);
    const KNOWN: [&str; 5] = ["user", "metric", "value", "event_id", "timestamp"];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err((
            event_id.clone(),
            None,
            format!(
                "unknown field `{unknown}` (expected one of: {})",
                KNOWN.join(", ")
            ),
        ));
    }
    let user = match obj.get("user") {
        Some(Value::String(u)) if valid_id(u) => u.clone(),
        _ => {
            return Err(fail(
                "user",
                format!("user is required: a string of 1 to {MAX_ID_BYTES} bytes, without NUL"),
            ))
        }
    };
    let metric = match obj.get("metric") {
        Some(Value::String(m)) => match metrics.iter().find(|metric| metric.key == *m) {
            Some(metric) => *metric,
            None => {
                let keys: Vec<&str> = metrics.iter().map(|metric| metric.key.as_str()).collect();
                return Err(fail(
                    "metric",
                    format!(
                        "metric '{m}' is not one of this experiment's metrics ({})",
                        keys.join(", ")
                    ),
                ));
            }
        },
        _ => {
            return Err(fail(
                "metric",
                "metric is required: a metric key".to_owned(),
            ))
        }
    };
    let value = match obj.get("value").filter(|v| !v.is_null()) {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| fail("value", format!("value must be a finite number, got {v}")))?,
    };
    // Bounded per metric, so that sums and variances can never overflow (a single 1.7e308
    // once made an experiment's results unanswerable).
    metric
        .check_event_value(value)
        .map_err(|reason| fail("value", reason))?;
    let at_ms = match obj.get("timestamp").filter(|v| !v.is_null()) {
        None => now,
        Some(Value::String(text)) => OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
            .ok_or_else(|| {
                fail(
                    "timestamp",
                    format!("timestamp must be RFC 3339, e.g. 2026-01-02T03:04:05Z, got {text:?}"),
                )
            })?,
        Some(other) => {
            return Err(fail(
                "timestamp",
                format!("timestamp must be an RFC 3339 string, got {other}"),
            ))
        }
    };
    Ok(ExperimentEvent {
        targeting_key: user,
        metric_key: metric.key.clone(),
        value,
        at_ms,
        event_id,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::invalid_field_of;

    #[test]
    fn invalid_definitions_name_their_field() {
        for (message, field) in [
            ("key is empty", "key"),
            ("at least two variants are needed", "variants"),
            ("control is not one of the variants", "control"),
            ("alpha must be in (0, 0.5)", "alpha"),
            ("power must be in (0.5, 1)", "power"),
            (
                "metric checkout: minimum detectable effect must be positive",
                "primary_metric",
            ),
            ("guardrail degradation threshold must be >= 0", "guardrails"),
        ] {
            assert_eq!(invalid_field_of(message), field, "{message}");
        }
    }

    #[test]
    fn events_are_validated_field_by_field() {
        let checkout = Metric::value("checkout", flags::experiment::Goal::Increase, 1.0);
        let metrics = [&checkout];
        let ok = parse_event(
            serde_json::json!({"user": "u1", "metric": "checkout", "timestamp": "2026-01-02T03:04:05Z"}),
            &metrics,
            5,
        )
        .unwrap();
        assert_eq!((ok.value, ok.at_ms), (1.0, 1_767_323_045_000));
        for (event, field) in [
            (serde_json::json!({"metric": "checkout"}), Some("user")),
            (
                serde_json::json!({"user": "u", "metric": "other"}),
                Some("metric"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "value": "x"}),
                Some("value"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "value": 1e30}),
                Some("value"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "value": -1.7e308}),
                Some("value"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "timestamp": "yesterday"}),
                Some("timestamp"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "event_id": ""}),
                Some("event_id"),
            ),
            (
                serde_json::json!({"user": "u", "metric": "checkout", "extra": 1}),
                None,
            ),
            (serde_json::json!(3), None),
        ] {
            let (_, got, reason) = parse_event(event.clone(), &metrics, 0).unwrap_err();
            assert_eq!(got, field, "{event}: {reason}");
        }
    }
}
