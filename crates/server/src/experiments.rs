//! Experiments as a use case: creating one on the flag it owns, lifecycle changes with
//! optimistic concurrency that also change what the flag serves, the analysis of its results,
//! and the periodic review (`experiments.review`). The API routes (`routes::experiments`), the
//! console, the demo and the job handler all call these, so the rules live once.
//!
//! An experiment writes its flag only through [`crate::flag_admin`] (validated, audited, actor
//! `experiment:<key>`), replacing only the rules whose ids start with `experiment.`; see
//! `flags::experiment::Experiment::flag_for` for what each state serves.

use std::collections::BTreeMap;

use flags::experiment::{
    Experiment, ExperimentError, ExperimentPlan, ExperimentResults, ExperimentSpec,
    ExperimentState, MetricData, MetricKind, VariantData,
};
use flags::stats::Summary;
use flags::Flag;
use serde_json::Value;
use store::{
    AnalysisQuery, AssignmentWindow, ExperimentRecord, MetricObservations, MetricShape, StoreError,
};

use crate::feature_flags::{parse_records, validate_change};
use crate::flag_admin::{self, FlagTarget};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

mod review;
pub use review::{
    ensure_review_schedule, review_experiments, ExperimentsReview, ReviewOutcome, ReviewSummary,
    EXPERIMENTS_REVIEW, REVIEW_CRON, REVIEW_SCHEDULE,
};

/// How often a read-modify-write of an experiment (or its flag) is retried when another
/// writer won the race.
const WRITE_ATTEMPTS: usize = 3;

/// A lifecycle step of an experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LifecycleAction {
    /// Draft to running.
    Start,
    /// Running to paused.
    Pause,
    /// Paused to running.
    Resume,
    /// Running or paused to completed, naming the variant to ship (or none), and what
    /// completed it when not a person (the review job's reason).
    Conclude {
        winner: Option<String>,
        reason: Option<String>,
    },
    /// Running or paused to failed, with the reason.
    Fail { reason: String },
}

/// The reason recorded when a person fails an experiment without giving one (API and console).
pub(crate) const OPERATOR_FAIL_REASON: &str = "failed by an operator";

impl LifecycleAction {
    /// The steps an experiment in `state` can take (the domain refuses the others with 409).
    pub(crate) fn allowed_in(state: ExperimentState) -> &'static [&'static str] {
        match state {
            ExperimentState::Draft => &["start"],
            ExperimentState::Running => &["pause", "conclude", "fail"],
            ExperimentState::Paused => &["resume", "conclude", "fail"],
            ExperimentState::Completed | ExperimentState::Failed => &[],
        }
    }
}

/// The actor an experiment's flag changes are recorded under.
pub(crate) fn flag_actor(experiment_key: &str) -> String {
    format!("experiment:{experiment_key}")
}

/// What creating an experiment takes besides its definition.
pub(crate) struct NewExperiment {
    /// The environment whose flag it owns.
    pub environment: String,
    /// The definition.
    pub spec: ExperimentSpec,
    /// The seed's operational settings.
    pub plan: ExperimentPlan,
    /// Create the flag when it does not exist.
    pub create_flag: bool,
    /// Values of the created flag's variants (others: the key as a string).
    pub values: BTreeMap<String, Value>,
}

/// Creates a draft experiment that owns its flag (admin scope, checked by the caller): the
/// flag must exist in the environment (422 `flag_key`) unless `create_flag` makes it (an
/// existing flag is used as it is), its
/// variants and split must match the experiment's (422 `variants`), and no other experiment
/// may ever have owned it (409 naming the owner).
pub(crate) async fn create(
    state: &AppState,
    tenant_id: &str,
    new: NewExperiment,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    let NewExperiment {
        environment,
        spec,
        plan,
        create_flag,
        values,
    } = new;
    let experiment = Experiment::create_with(spec, plan, now_ms()).map_err(experiment_error)?;
    let key = experiment.spec.key.clone();
    let flag_key = experiment.spec.flag_key.clone();
    let store = state.store();
    if store.experiment(tenant_id, &key).await?.is_some() {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("experiment '{key}' already exists"),
        ));
    }
    // Experiments from before ownership was stored are found by their definitions.
    for record in store.experiments(tenant_id).await? {
        if record.environment == environment
            && decode(&record).is_ok_and(|e| e.spec.flag_key == flag_key)
        {
            return Err(owned_by(&flag_key, &environment, &record.key));
        }
    }
    let actor = flag_actor(&key);
    let target = FlagTarget {
        tenant_id,
        environment: &environment,
        key: &flag_key,
        actor: &actor,
    };
    match store.flag(tenant_id, &environment, &flag_key).await? {
        Some(record) => {
            let flag = flag_admin::definition_of(&record)?;
            experiment.check_flag(&flag).map_err(experiment_error)?;
            check_audience(state, tenant_id, &environment, &experiment, &flag).await?;
        }
        None if create_flag => {
            let flag = experiment.new_flag(&values).map_err(experiment_error)?;
            check_audience(state, tenant_id, &environment, &experiment, &flag).await?;
            flag_admin::create(state, target, &flag).await?;
        }
        None => {
            return Err(ApiError::new(
                ProblemKind::Unprocessable,
                format!(
                    "no flag `{flag_key}` in environment `{environment}`: create it first, or send `\"create_flag\": true` to have the experiment create it"
                ),
            )
            .with("field", "flag_key"))
        }
    }
    let record = store
        .create_experiment_owning(
            tenant_id,
            &key,
            &environment,
            Some(&flag_key),
            &encode(&experiment)?,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { what } if what.contains("owning flag") => {
                ApiError::new(
                    ProblemKind::Conflict,
                    format!("flag `{flag_key}` in environment `{environment}` already belongs to another experiment"),
                )
            }
            other => other.into(),
        })?;
    Ok((record, experiment))
}

fn owned_by(flag_key: &str, environment: &str, owner: &str) -> ApiError {
    ApiError::new(
        ProblemKind::Conflict,
        format!(
            "flag `{flag_key}` in environment `{environment}` belongs to experiment `{owner}`; a flag belongs to one experiment, ever: use another flag (or `create_flag`)"
        ),
    )
    .with("owner", owner)
}

/// Why a change of the flag `flag_key` in `environment` is refused because an experiment owns
/// it, if it is: deleting (`next` None) a flag whose experiment is a draft, running or paused,
/// or replacing the flag of a running or paused experiment with variants or a split that no
/// longer match it. Completed and failed experiments leave their flag to its owner. Shared by
/// the admin API (`flag_admin`) and `signalbox flags import`, so the rule is written once.
pub async fn owned_flag_change_refused(
    store: &store::Store,
    tenant_id: &str,
    environment: &str,
    flag_key: &str,
    next: Option<&Flag>,
) -> Result<Option<(String, String)>, StoreError> {
    for record in store.experiments(tenant_id).await? {
        if record.environment != environment {
            continue;
        }
        let Ok(experiment) = serde_json::from_str::<Experiment>(&record.definition_json) else {
            continue;
        };
        if experiment.spec.flag_key != flag_key {
            continue;
        }
        let state = state_name(experiment.state);
        let refused = match (next, experiment.state) {
            (_, ExperimentState::Completed | ExperimentState::Failed) => None,
            (None, _) => Some(format!(
                "flag `{flag_key}` belongs to experiment `{}`, which is {state}; complete or fail the experiment before deleting its flag",
                record.key
            )),
            (Some(_), ExperimentState::Draft) => None,
            (Some(flag), _) => experiment.check_flag(flag).err().map(|e| {
                let why = match e {
                    ExperimentError::InvalidField { message, .. } => message,
                    other => other.to_string(),
                };
                format!(
                    "flag `{flag_key}` belongs to experiment `{}`, which is {state}: its variants and split must stay the experiment's ({why}); complete or fail the experiment first",
                    record.key
                )
            }),
        };
        if let Some(message) = refused {
            return Ok(Some((record.key, message)));
        }
    }
    Ok(None)
}

/// [`owned_flag_change_refused`] as the API answers it: 409 naming the experiment.
pub(crate) async fn check_owned_flag_change(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    flag_key: &str,
    next: Option<&Flag>,
) -> Result<(), ApiError> {
    match owned_flag_change_refused(state.store(), tenant_id, environment, flag_key, next).await? {
        None => Ok(()),
        Some((experiment, message)) => {
            Err(ApiError::new(ProblemKind::Conflict, message).with("experiment", experiment))
        }
    }
}

/// The target audience and exclusion rules must compile as the flag's first rule does once
/// the experiment starts (operators, values); 422 naming the field otherwise.
async fn check_audience(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    experiment: &Experiment,
    flag: &Flag,
) -> Result<(), ApiError> {
    if experiment.plan.target_audience.is_none() && experiment.plan.exclusion_rules.is_empty() {
        return Ok(());
    }
    let mut started = experiment.clone();
    started.start(0).map_err(experiment_error)?;
    let candidate = started.flag_for(flag, true);
    let current = parse_records(&state.store().flags(tenant_id, environment).await?)?;
    validate_change(current, Some(&candidate), None).map_err(|errors| {
        let field = if experiment.plan.target_audience.is_some() {
            "target_audience"
        } else {
            "exclusion_rules"
        };
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::new(
            ProblemKind::Unprocessable,
            format!("the audience rule built from target_audience and exclusion_rules is invalid: {detail}"),
        )
        .with("field", field)
    })
}

/// Applies a lifecycle step to the tenant's experiment `key` now (the caller checked the admin
/// scope) and makes its flag serve what the new state says; returns the stored record and the
/// experiment after it.
pub(crate) async fn apply(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    action: LifecycleAction,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    apply_at(state, tenant_id, key, action, now_ms()).await
}

/// [`apply`] at `now` (epoch ms): the review job and the demo pass their own clock.
pub(crate) async fn apply_at(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    action: LifecycleAction,
    now: i64,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    let starting = action == LifecycleAction::Start;
    // The flag must take the new state before the experiment commits to it: a start on a flag
    // that no longer matches, or a rule the flag set refuses, changes nothing.
    {
        let record = load(state, tenant_id, key).await?;
        let mut next = decode(&record)?;
        step(&mut next, &action, now).map_err(experiment_error)?;
        let flag = state
            .store()
            .flag(tenant_id, &record.environment, &next.spec.flag_key)
            .await?;
        match flag {
            Some(flag_record) => {
                let flag = flag_admin::definition_of(&flag_record)?;
                if starting {
                    next.check_flag(&flag).map_err(experiment_error)?;
                }
                let current =
                    parse_records(&state.store().flags(tenant_id, &record.environment).await?)?;
                validate_change(current, Some(&next.flag_for(&flag, starting)), None)
                    .map_err(flag_admin::invalid_definition)?;
            }
            None if starting => {
                return Err(ApiError::new(
                    ProblemKind::Unprocessable,
                    format!(
                        "no flag `{}` in environment `{}`: the experiment cannot start without its flag",
                        next.spec.flag_key, record.environment
                    ),
                )
                .with("field", "flag_key"))
            }
            None => {}
        }
    }
    let outcome = transition(state, tenant_id, key, |e| step(e, &action, now)).await?;
    sync_flag(state, tenant_id, key, starting).await?;
    Ok(outcome)
}

fn step(e: &mut Experiment, action: &LifecycleAction, now: i64) -> Result<(), ExperimentError> {
    match action {
        LifecycleAction::Start => e.start(now),
        LifecycleAction::Pause => e.pause(now),
        LifecycleAction::Resume => e.resume(now),
        LifecycleAction::Conclude { winner, reason } => {
            e.conclude(now, winner.clone())?;
            e.reason = reason.clone();
            Ok(())
        }
        LifecycleAction::Fail { reason } => e.fail(now, reason.clone()),
    }
}

/// Makes the experiment's flag serve what the experiment's stored state says (see
/// `Experiment::flag_for`); `starting` also turns it on with the experiment's traffic. The
/// flag is read before the experiment and written only at the version read, so a sync that
/// read an older state can never overwrite a newer one. A missing flag is left missing
/// (nothing to serve) unless the experiment is starting.
pub(crate) async fn sync_flag(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    starting: bool,
) -> Result<bool, ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let peek = load(state, tenant_id, key).await?;
        let environment = peek.environment.clone();
        let flag_key = decode(&peek)?.spec.flag_key;
        let Some(flag_record) = state
            .store()
            .flag(tenant_id, &environment, &flag_key)
            .await?
        else {
            if starting {
                return Err(flag_admin::not_found(&flag_key, &environment));
            }
            tracing::warn!(tenant_id, experiment = key, flag = %flag_key, "the experiment's flag is gone; nothing to change");
            return Ok(false);
        };
        let experiment = decode(&load(state, tenant_id, key).await?)?;
        let current = flag_admin::definition_of(&flag_record)?;
        let wanted = experiment.flag_for(&current, starting);
        if wanted == current {
            return Ok(false);
        }
        let actor = flag_actor(key);
        let target = FlagTarget {
            tenant_id,
            environment: &environment,
            key: &flag_key,
            actor: &actor,
        };
        match flag_admin::replace(state, target, &wanted, Some(flag_record.version)).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind == ProblemKind::PreconditionFailed && attempt < WRITE_ATTEMPTS * 2 => {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

/// An experiment's analysis now, with what it was computed from.
pub(crate) struct Analysis {
    pub record: ExperimentRecord,
    pub experiment: Experiment,
    /// Users and metric observations per variant.
    pub data: BTreeMap<String, VariantData>,
    pub results: ExperimentResults,
}

/// Analyses the tenant's experiment `key` (read scope) and keeps the sequential test's running
/// minimum for the next look; the version check keeps two concurrent looks from losing each
/// other's minimum.
pub(crate) async fn analyse(
    state: &AppState,
    tenant_id: &str,
    key: &str,
) -> Result<Analysis, ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let record = load(state, tenant_id, key).await?;
        let experiment = decode(&record)?;
        let data = analysis_data(state, tenant_id, &record, &experiment).await?;
        let results = experiment.analyze(&data).map_err(experiment_error)?;
        let merged: BTreeMap<String, f64> = results
            .sequential_p
            .iter()
            .map(|(variant, p)| {
                let previous = record.sequential_p.get(variant).copied().unwrap_or(1.0);
                (variant.clone(), p.min(previous))
            })
            .collect();
        if merged != record.sequential_p {
            match state
                .store()
                .update_experiment(
                    tenant_id,
                    &record.key,
                    &record.definition_json,
                    &merged,
                    record.version,
                )
                .await
            {
                Ok(_) => {}
                Err(StoreError::VersionMismatch { .. }) if attempt < WRITE_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Analysis {
            record,
            experiment,
            data,
            results,
        });
    }
}

async fn analysis_data(
    state: &AppState,
    tenant_id: &str,
    record: &ExperimentRecord,
    experiment: &Experiment,
) -> Result<BTreeMap<String, VariantData>, ApiError> {
    let spec = &experiment.spec;
    let variants: Vec<String> = spec.variants.iter().map(|v| v.key.clone()).collect();
    // Only assignments made while the experiment ran count.
    let windows: Vec<AssignmentWindow> = experiment
        .running_windows()
        .iter()
        .map(|w| AssignmentWindow {
            start_ms: w.start,
            end_ms: w.end,
        })
        .collect();
    let mut metrics: Vec<(String, MetricShape)> = Vec::new();
    let all = std::iter::once(&spec.primary_metric)
        .chain(&spec.secondary_metrics)
        .chain(spec.guardrails.iter().map(|g| &g.metric));
    for metric in all {
        if !metrics.iter().any(|(k, _)| *k == metric.key) {
            let shape = match metric.kind {
                MetricKind::Conversion => MetricShape::Conversion,
                MetricKind::Value => MetricShape::Value,
            };
            metrics.push((metric.key.clone(), shape));
        }
    }
    let inputs = state
        .store()
        .experiment_analysis(
            tenant_id,
            &AnalysisQuery {
                experiment_key: &record.key,
                environment: &record.environment,
                flag_key: &spec.flag_key,
                variants: &variants,
                metrics: &metrics,
                raw_values_limit: store::RAW_VALUES_LIMIT,
                windows: &windows,
            },
        )
        .await?;
    let mut data: BTreeMap<String, VariantData> = inputs
        .users
        .iter()
        .map(|(variant, users)| {
            (
                variant.clone(),
                VariantData {
                    users: *users,
                    metrics: BTreeMap::new(),
                    previous_sequential_p: record.sequential_p.get(variant).copied(),
                },
            )
        })
        .collect();
    for (metric, by_variant) in inputs.metrics {
        for (variant, observations) in by_variant {
            let value = match observations {
                MetricObservations::Conversions { conversions, n } => {
                    MetricData::Conversions { conversions, n }
                }
                MetricObservations::Values(values) => MetricData::Values(values),
                MetricObservations::Summary { n, mean, variance } => {
                    MetricData::Summary(Summary { n, mean, variance })
                }
            };
            if let Some(v) = data.get_mut(&variant) {
                v.metrics.insert(metric.clone(), value);
            }
        }
    }
    Ok(data)
}

/// Applies a lifecycle change with optimistic concurrency, retrying when another writer won.
async fn transition(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    change: impl Fn(&mut Experiment) -> Result<(), ExperimentError>,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let record = load(state, tenant_id, key).await?;
        let mut experiment = decode(&record)?;
        change(&mut experiment).map_err(experiment_error)?;
        match state
            .store()
            .update_experiment(
                tenant_id,
                &record.key,
                &encode(&experiment)?,
                &record.sequential_p,
                record.version,
            )
            .await
        {
            Ok(updated) => return Ok((updated, experiment)),
            Err(StoreError::VersionMismatch { .. }) if attempt < WRITE_ATTEMPTS => continue,
            Err(StoreError::VersionMismatch { .. }) => {
                return Err(ApiError::new(
                    ProblemKind::Conflict,
                    format!("experiment '{key}' is being changed concurrently; retry"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) async fn load(
    state: &AppState,
    tenant_id: &str,
    key: &str,
) -> Result<ExperimentRecord, ApiError> {
    state
        .store()
        .experiment(tenant_id, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no experiment '{key}' in your tenant")))
}

pub(crate) fn decode(record: &ExperimentRecord) -> Result<Experiment, ApiError> {
    serde_json::from_str(&record.definition_json).map_err(|e| {
        tracing::error!(error = %e, key = record.key, "stored experiment does not parse");
        ApiError::internal()
    })
}

pub(crate) fn encode(experiment: &Experiment) -> Result<String, ApiError> {
    serde_json::to_string(experiment).map_err(|e| {
        tracing::error!(error = %e, "experiment does not serialise");
        ApiError::internal()
    })
}

/// The state's name, as the API spells it.
pub(crate) fn state_name(state: ExperimentState) -> &'static str {
    match state {
        ExperimentState::Draft => "draft",
        ExperimentState::Running => "running",
        ExperimentState::Paused => "paused",
        ExperimentState::Completed => "completed",
        ExperimentState::Failed => "failed",
    }
}

/// 409 for a lifecycle step the state does not allow, 422 naming the field for an invalid
/// definition, 422 naming the metric and variant when the data cannot be analysed yet.
pub(crate) fn experiment_error(e: ExperimentError) -> ApiError {
    match e {
        ExperimentError::Invalid(message) => {
            let field = invalid_field_of(&message);
            ApiError::new(ProblemKind::Unprocessable, message).with("field", field)
        }
        ExperimentError::InvalidField { field, message } => {
            ApiError::new(ProblemKind::Unprocessable, message).with("field", field)
        }
        ExperimentError::InvalidTransition { from, action } => ApiError::new(
            ProblemKind::InvalidState,
            format!("cannot {action} an experiment that is {}", state_name(from)),
        )
        .with("state", state_name(from)),
        ExperimentError::MissingData(what) => ApiError::new(
            ProblemKind::Unprocessable,
            format!("not enough data to analyse yet: no {what}"),
        ),
        ExperimentError::Stats {
            metric,
            variant,
            source,
        } => ApiError::new(
            ProblemKind::Unprocessable,
            format!("not enough data to analyse {metric} for {variant} yet: {source}"),
        )
        .with("metric", metric)
        .with("variant", variant),
    }
}

/// The definition field an `ExperimentError::Invalid` message is about.
pub(crate) fn invalid_field_of(message: &str) -> &'static str {
    // Most specific first: "metric key is empty" is about a metric, not the experiment key.
    const FIELDS: &[(&str, &str)] = &[
        ("metric key is empty", "primary_metric"),
        ("key is empty", "key"),
        ("winner", "winner"),
        ("control", "control"),
        ("variant", "variants"),
        ("alpha", "alpha"),
        ("power", "power"),
        ("guardrail", "guardrails"),
        ("metric", "primary_metric"),
    ];
    FIELDS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("definition", |(_, field)| field)
}

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    crate::profiles::now_us() / 1000
}
