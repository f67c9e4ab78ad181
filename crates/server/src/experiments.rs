//! Experiments as a use case: loading one of the tenant's experiments, lifecycle changes with
//! optimistic concurrency, and the analysis of its results. The API routes
//! (`routes::experiments`) and the console both call these, so the rules live once.

use std::collections::BTreeMap;

use flags::experiment::{
    Experiment, ExperimentError, ExperimentResults, ExperimentState, MetricData, MetricKind,
    VariantData,
};
use flags::stats::Summary;
use store::{AnalysisQuery, ExperimentRecord, MetricObservations, MetricShape, StoreError};

use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// How often a read-modify-write of an experiment is retried when another writer won the race.
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
    /// Running or paused to concluded, naming the variant to ship (or none).
    Conclude { winner: Option<String> },
}

impl LifecycleAction {
    /// The steps an experiment in `state` can take (the domain refuses the others with 409).
    pub(crate) fn allowed_in(state: ExperimentState) -> &'static [&'static str] {
        match state {
            ExperimentState::Draft => &["start"],
            ExperimentState::Running => &["pause", "conclude"],
            ExperimentState::Paused => &["resume", "conclude"],
            ExperimentState::Concluded => &[],
        }
    }
}

/// Applies a lifecycle step to the tenant's experiment `key` (the caller checked the admin
/// scope); returns the stored record and the experiment after it.
pub(crate) async fn apply(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    action: LifecycleAction,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    transition(state, tenant_id, key, move |e, now| match &action {
        LifecycleAction::Start => e.start(now),
        LifecycleAction::Pause => e.pause(now),
        LifecycleAction::Resume => e.resume(),
        LifecycleAction::Conclude { winner } => e.conclude(now, winner.clone()),
    })
    .await
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
    change: impl Fn(&mut Experiment, i64) -> Result<(), ExperimentError>,
) -> Result<(ExperimentRecord, Experiment), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let record = load(state, tenant_id, key).await?;
        let mut experiment = decode(&record)?;
        change(&mut experiment, now_ms()).map_err(experiment_error)?;
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
        ExperimentState::Concluded => "concluded",
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
