//! The built-in handlers.
//!
//! | name                | payload                                                              | result |
//! |---------------------|----------------------------------------------------------------------|--------|
//! | `weber.recalculate` | `{"user_ids": [...]}` (at most 10,000), or `{}` for every user        | users seen, recalculated, without history |
//! | `retention.purge`   | `{"interactions_older_than_days": N, "calculations_older_than_days": M}` | rows deleted |
//! | `forecast.rebuild`  | `{"data_file": "stations.csv"}` (in the forecast data directory)     | model version, stations, rows |
//! | `weber.refit_predictions` | `{}`                                                           | model version (or why not fitted), customers, purchases |
//! | `jobs.canary`       | `{}`; fault injection: `"fail": "retry"\|"permanent"`, `"panic": true`, `"sleep_ms": N`, `"ignore_stop": true` | whether this was the first receipt |
//! | `jobs.noop`         | `{}`                                                                 | none |
//! | `feedback.process`, `feedback.reencrypt`, `feedback.retention_purge` | see `crate::feedback` | |
//! | `feedback.forward_legacy` | `{"item_ids": [...]}` (at most 100); see `crate::feedback::forward` | delivered, duplicates, already, skipped_purged, missing |
//! | `feedback.process`, `feedback.reencrypt`, `feedback.migration_check` | see `crate::feedback` | |
//! | `flags.rollout_check` | `{"environment", "flag_key", "generation", "version"}`; see `crate::rollouts` | the decision with its figures, or `stale` |

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::handler::{
    HandlerError, HandlerFuture, JobContext, JobHandler, JobRegistry, PayloadError,
};
use crate::forecasts::{ForecastService, ForecastSettings};

/// `weber.recalculate`.
pub const WEBER_RECALCULATE: &str = "weber.recalculate";
/// `retention.purge`.
pub const RETENTION_PURGE: &str = "retention.purge";
/// `forecast.rebuild`.
pub const FORECAST_REBUILD: &str = "forecast.rebuild";
/// `weber.refit_predictions`.
pub const WEBER_REFIT_PREDICTIONS: &str = "weber.refit_predictions";
/// `jobs.canary`.
pub const CANARY: &str = "jobs.canary";
/// `jobs.noop`.
pub const NOOP: &str = "jobs.noop";

/// What the built-in handlers need from the configuration.
#[derive(Debug, Clone, Default)]
pub struct JobHandlerSettings {
    /// Where `forecast.rebuild` reads data and writes the model; `None` leaves the handler
    /// out (an enqueue naming it is refused as an unknown handler).
    pub forecast: Option<ForecastRebuildSettings>,
}

/// `forecast.rebuild`'s directories.
#[derive(Debug, Clone)]
pub struct ForecastRebuildSettings {
    /// The only directory data files are read from; a payload names a file inside it, never
    /// a path elsewhere on the server.
    pub data_dir: PathBuf,
    /// The model directory written (the one `serve` loads).
    pub model_dir: PathBuf,
    /// How the rebuilt model is served when this process serves forecasts.
    pub serving: ForecastSettings,
}

impl JobRegistry {
    /// The built-in handlers.
    pub fn builtin(settings: &JobHandlerSettings) -> JobRegistry {
        let mut registry = JobRegistry::new();
        registry
            .register(WeberRecalculate)
            .register(RetentionPurge)
            .register(RefitPredictions)
            .register(Canary)
            .register(Noop)
            .register(crate::feedback::FeedbackProcess)
            .register(crate::feedback::FeedbackReencrypt)
            .register(crate::feedback::FeedbackRetentionPurge)
            .register(crate::feedback::FeedbackForwardLegacy)
            .register(crate::feedback::FeedbackMigrationCheck)
            .register(crate::rollouts::FlagRolloutCheck)
            .register(crate::experiments::ExperimentsReview);
        if let Some(forecast) = &settings.forecast {
            registry.register(ForecastRebuild(Arc::new(forecast.clone())));
        }
        registry
    }
}

// ---------------------------------------------------------------------------------------------
// weber.recalculate

/// Most user ids one `weber.recalculate` job may list.
pub const MAX_RECALCULATE_USERS: usize = 10_000;
/// Users recalculated per store round trip.
const RECALCULATE_PAGE: usize = 500;

/// Recomputes Weber profiles from the stored history: the listed users, or every user of the
/// tenant with stored interactions (paged by user id). The same recalculation as the manual
/// update route; idempotent (a profile is a function of the history).
struct WeberRecalculate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecalculatePayload {
    #[serde(default)]
    user_ids: Option<Vec<String>>,
}

impl RecalculatePayload {
    fn parse(payload: &serde_json::Value) -> Result<RecalculatePayload, PayloadError> {
        let p: RecalculatePayload = PayloadError::parse(payload)?;
        if let Some(ids) = &p.user_ids {
            if ids.is_empty() || ids.len() > MAX_RECALCULATE_USERS {
                return Err(PayloadError::new(
                    "user_ids",
                    format!(
                        "must list 1 to {MAX_RECALCULATE_USERS} users (leave it out for every user)"
                    ),
                ));
            }
            if let Some(i) = ids.iter().position(|id| !store::valid_user_id(id)) {
                return Err(PayloadError::new(
                    &format!("user_ids[{i}]"),
                    "is not a valid user id",
                ));
            }
        }
        Ok(p)
    }
}

impl JobHandler for WeberRecalculate {
    fn name(&self) -> &'static str {
        WEBER_RECALCULATE
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        RecalculatePayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload = RecalculatePayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let pipeline = ctx.state.profiles().clone();
            let mut total = crate::profiles::Recalculated::default();
            match payload.user_ids {
                Some(ids) => {
                    for chunk in ids.chunks(RECALCULATE_PAGE) {
                        ctx.check_stop()?;
                        let done = pipeline
                            .recalculate_users(&ctx.state, &ctx.tenant_id, chunk)
                            .await
                            .map_err(HandlerError::store)?;
                        total.add(done);
                    }
                }
                None => {
                    let mut after: Option<String> = None;
                    loop {
                        ctx.check_stop()?;
                        let page = ctx
                            .store()
                            .interaction_users(
                                &ctx.tenant_id,
                                after.as_deref(),
                                RECALCULATE_PAGE as u32,
                            )
                            .await
                            .map_err(HandlerError::store)?;
                        let Some(last) = page.last().cloned() else {
                            break;
                        };
                        let done = pipeline
                            .recalculate_users(&ctx.state, &ctx.tenant_id, &page)
                            .await
                            .map_err(HandlerError::store)?;
                        total.add(done);
                        if page.len() < RECALCULATE_PAGE {
                            break;
                        }
                        after = Some(last);
                    }
                }
            }
            Ok(Some(json!({
                "users": total.users,
                "recalculated": total.recalculated,
                "without_history": total.users - total.recalculated,
            })))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// weber.refit_predictions

/// Refits the tenant's lifetime models and stores every customer's predictions as one new
/// model version (see `crate::predictions`). Idempotent in effect: a repeat fits the same
/// history again and serves the same numbers under the next version. Progress is logged at
/// each step; a stop request is honoured between steps (nothing is stored until the last one).
/// A history too short to fit is a success whose result says why, not a failure: the daily
/// schedule tries again tomorrow.
struct RefitPredictions;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefitPayload {}

impl JobHandler for RefitPredictions {
    fn name(&self) -> &'static str {
        WEBER_REFIT_PREDICTIONS
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        PayloadError::parse::<RefitPayload>(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let job_id = ctx.job_id.clone();
            let tenant_id = ctx.tenant_id.clone();
            let stop = ctx.clone();
            let mut progress = move |step: crate::predictions::RefitStep| {
                tracing::info!(tenant_id, job_id, ?step, "refitting predictions");
                stop.check_stop().map_err(|e| e.to_string())
            };
            let summary = crate::predictions::PredictionService::refit_with(
                ctx.state(),
                &ctx.tenant_id,
                super::now_ms(),
                &mut progress,
            )
            .await
            .map_err(|e| match e {
                crate::predictions::RefitError::Store(e) => HandlerError::store(e),
                crate::predictions::RefitError::Fit(e) => HandlerError::Permanent(e.to_string()),
                other => HandlerError::Retry(other.to_string()),
            })?;
            Ok(Some(serde_json::to_value(&summary).unwrap_or_default()))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// retention.purge

/// Days of `weber_calculations` kept when the payload does not say.
pub const DEFAULT_CALCULATIONS_DAYS: u32 = 90;
/// The longest retention a payload may give (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Rows deleted per statement, so a purge never holds a long lock.
const PURGE_BATCH: u32 = 5_000;

/// Deletes a tenant's old interactions and calculation audit rows in batches. Interactions
/// are the system of record (a profile rebuilt afterwards sees only what is left), so they are
/// purged only when the payload names a retention for them; the audit defaults to 90 days.
struct RetentionPurge;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgePayload {
    #[serde(default)]
    interactions_older_than_days: Option<u32>,
    #[serde(default)]
    calculations_older_than_days: Option<u32>,
}

impl PurgePayload {
    fn parse(payload: &serde_json::Value) -> Result<PurgePayload, PayloadError> {
        let p: PurgePayload = PayloadError::parse(payload)?;
        for (name, days) in [
            (
                "interactions_older_than_days",
                p.interactions_older_than_days,
            ),
            (
                "calculations_older_than_days",
                p.calculations_older_than_days,
            ),
        ] {
            if let Some(days) = days {
                if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                    return Err(PayloadError::new(
                        name,
                        format!("must be 1 to {MAX_RETENTION_DAYS} days"),
                    ));
                }
            }
        }
        Ok(p)
    }
}

impl JobHandler for RetentionPurge {
    fn name(&self) -> &'static str {
        RETENTION_PURGE
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        PurgePayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload = PurgePayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let now = super::now_ms();
            let before = |days: u32| now.saturating_sub(i64::from(days) * 86_400_000);
            let mut result = serde_json::Map::new();
            if let Some(days) = payload.interactions_older_than_days {
                let before_ms = before(days);
                let mut deleted = 0u64;
                loop {
                    ctx.check_stop()?;
                    let n = ctx
                        .store()
                        .purge_interactions_before(&ctx.tenant_id, before_ms, PURGE_BATCH)
                        .await
                        .map_err(HandlerError::store)?;
                    deleted += n;
                    if n < u64::from(PURGE_BATCH) {
                        break;
                    }
                }
                result.insert("interactions_deleted".into(), deleted.into());
                result.insert("interactions_before_ms".into(), before_ms.into());
            }
            let days = payload
                .calculations_older_than_days
                .unwrap_or(DEFAULT_CALCULATIONS_DAYS);
            let before_ms = before(days);
            let mut deleted = 0u64;
            loop {
                ctx.check_stop()?;
                let n = ctx
                    .store()
                    .purge_weber_calculations_before(&ctx.tenant_id, before_ms, PURGE_BATCH)
                    .await
                    .map_err(HandlerError::store)?;
                deleted += n;
                if n < u64::from(PURGE_BATCH) {
                    break;
                }
            }
            result.insert("calculations_deleted".into(), deleted.into());
            result.insert("calculations_before_ms".into(), before_ms.into());
            Ok(Some(serde_json::Value::Object(result)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// forecast.rebuild

/// Largest data file `forecast.rebuild` reads (the bundled year of three stations is 2 MB).
pub const MAX_FORECAST_DATA_BYTES: u64 = 1024 * 1024 * 1024;

/// Rebuilds the forecast model from a station CSV in the configured data directory, with the
/// default build options, into the configured model directory (files renamed into place, the
/// manifest last). A process that serves forecasts swaps to the new model at once; other
/// replicas load it at their next start.
///
/// The model is shared by every tenant, so this is an operator's job: the payload can only
/// name a file inside the data directory the operator chose.
struct ForecastRebuild(Arc<ForecastRebuildSettings>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildPayload {
    data_file: String,
}

impl RebuildPayload {
    fn parse(payload: &serde_json::Value) -> Result<RebuildPayload, PayloadError> {
        let p: RebuildPayload = PayloadError::parse(payload)?;
        let path = Path::new(&p.data_file);
        let inside = !p.data_file.is_empty()
            && p.data_file.len() <= 255
            && !p.data_file.contains('\0')
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(PayloadError::new(
                "data_file",
                "must be a relative path inside the forecast data directory (no '..', not absolute)",
            ));
        }
        Ok(p)
    }
}

/// One rebuild at a time in a process: two would interleave their files in one directory.
static REBUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl JobHandler for ForecastRebuild {
    fn name(&self) -> &'static str {
        FORECAST_REBUILD
    }

    // The model serves every tenant: one tenant's admin must not replace it.
    fn operator_only(&self) -> bool {
        true
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        RebuildPayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let settings = self.0.clone();
        Box::pin(async move {
            let payload = RebuildPayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let _one_at_a_time = REBUILDING.lock().await;
            ctx.check_stop()?;
            let data = settings.data_dir.join(&payload.data_file);
            let out = settings.model_dir.clone();
            // The served model's build options (its index plan above all) carry over, so a
            // rebuild on new data does not silently change how the model searches.
            let options = ctx
                .state
                .forecasts()
                .map(|served| served.model().options().clone())
                .unwrap_or_default();
            let built = tokio::task::spawn_blocking(move || {
                let size = std::fs::metadata(&data)
                    .map_err(|e| {
                        HandlerError::Permanent(format!("payload.data_file: cannot read {}: {e}", data.display()))
                    })?
                    .len();
                if size > MAX_FORECAST_DATA_BYTES {
                    return Err(HandlerError::Permanent(format!(
                        "payload.data_file: {} is {size} bytes, more than {MAX_FORECAST_DATA_BYTES}",
                        data.display()
                    )));
                }
                let file = std::fs::File::open(&data).map_err(|e| {
                    HandlerError::Permanent(format!("payload.data_file: cannot read {}: {e}", data.display()))
                })?;
                crate::forecast_files::build_model_dir_from_reader(
                    std::io::BufReader::new(file),
                    &out,
                    &options,
                    &mut |_| {},
                )
                .map_err(|e| match e {
                    crate::forecast_files::ModelFileError::Write { .. } => {
                        HandlerError::Retry(e.to_string())
                    }
                    other => HandlerError::Permanent(format!("{}: {other}", data.display())),
                })
            })
            .await
            .map_err(|e| HandlerError::Retry(format!("the build task failed: {e}")))??;
            let version = built.model.version().to_owned();
            let stations = built.model.stations().join(",");
            let reloaded = if ctx.state.forecasts().is_some() {
                let service = ForecastService::new(Arc::new(built.model), &settings.serving);
                // The files are written; serving keeps the old model rather than one over the
                // memory budget (a restart would refuse the new one with the same message).
                service.check_memory_budget().map_err(|e| {
                    HandlerError::Permanent(format!("the rebuilt model is not served: {e}"))
                })?;
                let service = tokio::task::spawn_blocking(move || {
                    service.warm(10);
                    service
                })
                .await
                .map_err(|e| HandlerError::Retry(format!("warming the new model failed: {e}")))?;
                ctx.state.replace_forecasts(Arc::new(service));
                true
            } else {
                false
            };
            tracing::info!(version, stations, reloaded, "forecast model rebuilt");
            Ok(Some(json!({
                "version": version,
                "stations": stations,
                "rows": built.rows,
                "bad_rows": built.bad_rows.len(),
                "bytes_written": built.bytes_written,
                "build_ms": u64::try_from(built.elapsed.as_millis()).unwrap_or(u64::MAX),
                "reloaded": reloaded,
            })))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// jobs.canary, jobs.noop

/// Longest `sleep_ms` a canary may ask for.
pub const MAX_CANARY_SLEEP_MS: u64 = 24 * 3600 * 1000;

/// Records a receipt `(tenant, job id)` once, however many times it runs: proof that the job
/// system delivers end to end, and (counting receipts against successes) that a job's effect
/// happened exactly once. Its payload has fault-injection switches for testing alerting and
/// failure handling on a deployment: `"fail": "retry"` (every attempt fails and is retried,
/// then dead), `"fail": "permanent"`, `"panic": true` (the handler panics) and
/// `"sleep_ms": N` (a slow job, which stops early when asked to, unless `"ignore_stop": true`:
/// then only the hard time limit or the cancellation grace ends it).
struct Canary;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryPayload {
    #[serde(default)]
    fail: Option<CanaryFailure>,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    sleep_ms: Option<u64>,
    #[serde(default)]
    ignore_stop: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CanaryFailure {
    Retry,
    Permanent,
}

impl CanaryPayload {
    fn parse(payload: &serde_json::Value) -> Result<CanaryPayload, PayloadError> {
        let p: CanaryPayload = PayloadError::parse(payload)?;
        if p.sleep_ms.is_some_and(|ms| ms > MAX_CANARY_SLEEP_MS) {
            return Err(PayloadError::new(
                "sleep_ms",
                format!("must be at most {MAX_CANARY_SLEEP_MS}"),
            ));
        }
        Ok(p)
    }
}

impl JobHandler for Canary {
    fn name(&self) -> &'static str {
        CANARY
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        CanaryPayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload = CanaryPayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            if let (Some(ms), true) = (payload.sleep_ms, payload.ignore_stop) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            } else if let Some(ms) = payload.sleep_ms {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    reason = ctx.stopped() => {
                        return Err(HandlerError::Retry(format!("stopped: {}", reason.as_str())));
                    }
                }
            }
            if payload.panic {
                panic!("jobs.canary was asked to panic (payload.panic)");
            }
            match payload.fail {
                Some(CanaryFailure::Retry) => {
                    return Err(HandlerError::Retry(
                        "jobs.canary was asked to fail (payload.fail = retry)".to_owned(),
                    ))
                }
                Some(CanaryFailure::Permanent) => {
                    return Err(HandlerError::Permanent(
                        "jobs.canary was asked to fail (payload.fail = permanent)".to_owned(),
                    ))
                }
                None => {}
            }
            let first = ctx
                .store()
                .record_job_receipt(&ctx.tenant_id, &ctx.job_id, &ctx.worker_id, super::now_ms())
                .await
                .map_err(HandlerError::store)?;
            Ok(Some(json!({ "first_receipt": first })))
        })
    }
}

/// Does nothing: what the throughput benchmark runs.
struct Noop;

impl JobHandler for Noop {
    fn name(&self) -> &'static str {
        NOOP
    }

    fn run(&self, _ctx: JobContext) -> HandlerFuture {
        Box::pin(std::future::ready(Ok(None)))
    }
}
