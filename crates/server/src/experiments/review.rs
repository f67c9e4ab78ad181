//! The periodic review of a tenant's experiments (`experiments.review`, scheduled for every
//! tenant as `experiments-review`): starts drafts whose `start_at` has come, completes
//! experiments at `end_at` or their maximum duration, completes early on the sequential test
//! (with `early_stopping` and `auto_conclude`, after the minimum duration), fails those whose
//! guardrail is breached, and puts back managed flag rules someone changed. The decisions are
//! the domain's (`Experiment::review`); this applies them through the same lifecycle the API
//! uses, at the `now` it is given.

use serde::{Deserialize, Serialize};

use flags::experiment::{ExperimentState, ReviewDecision};

use super::{analyse, apply_at, decode, sync_flag, LifecycleAction};
use crate::jobs::{HandlerError, HandlerFuture, JobContext, JobHandler, PayloadError};
use crate::state::AppState;

/// `experiments.review`.
pub const EXPERIMENTS_REVIEW: &str = "experiments.review";
/// The name of every tenant's review schedule.
pub const REVIEW_SCHEDULE: &str = "experiments-review";
/// When it runs: every 15 minutes, so a scheduled start or end happens within 15 minutes of
/// its time and a breached guardrail stops the experiment within 15 minutes of the analysis
/// showing it.
pub const REVIEW_CRON: &str = "*/15 * * * *";

/// What the review did to one experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewOutcome {
    /// The experiment.
    pub experiment: String,
    /// `started`, `completed`, `failed`, or `flag_restored` (managed rules put back).
    pub action: &'static str,
    /// Why.
    pub reason: String,
    /// The variant shipped, when completed with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

/// What one review run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReviewSummary {
    /// Experiments looked at (drafts, running and paused ones).
    pub reviewed: u64,
    /// What changed.
    pub actions: Vec<ReviewOutcome>,
    /// Experiments the review could not act on, with why (retried next run).
    pub errors: Vec<String>,
}

/// Reviews every experiment of the tenant at `now` (epoch ms). One experiment's failure is
/// recorded in `errors` and does not stop the others; only failing to list them is an error.
pub async fn review_experiments(
    state: &AppState,
    tenant_id: &str,
    now: i64,
) -> Result<ReviewSummary, store::StoreError> {
    let mut summary = ReviewSummary::default();
    for record in state.store().experiments(tenant_id).await? {
        let key = record.key.clone();
        let Ok(experiment) = decode(&record) else {
            summary
                .errors
                .push(format!("{key}: stored definition unreadable"));
            continue;
        };
        if matches!(
            experiment.state,
            ExperimentState::Completed | ExperimentState::Failed
        ) {
            continue;
        }
        summary.reviewed += 1;
        let results = if experiment.state == ExperimentState::Draft {
            None
        } else {
            // Not enough data yet is the usual reason for no analysis: no data-driven decision.
            analyse(state, tenant_id, &key)
                .await
                .ok()
                .map(|a| a.results)
        };
        let decision = experiment.review(now, results.as_ref());
        let (action, outcome) = match decision {
            None => {
                if experiment.state != ExperimentState::Draft {
                    match sync_flag(state, tenant_id, &key, false).await {
                        Ok(true) => summary.actions.push(ReviewOutcome {
                            experiment: key.clone(),
                            action: "flag_restored",
                            reason: "the flag's experiment rules had been changed".into(),
                            winner: None,
                        }),
                        Ok(false) => {}
                        Err(e) => summary.errors.push(format!("{key}: {}", e.detail)),
                    }
                }
                continue;
            }
            Some(ReviewDecision::Start) => (
                LifecycleAction::Start,
                ReviewOutcome {
                    experiment: key.clone(),
                    action: "started",
                    reason: "start_at reached".into(),
                    winner: None,
                },
            ),
            Some(ReviewDecision::Complete { winner, reason }) => (
                LifecycleAction::Conclude {
                    winner: winner.clone(),
                    reason: Some(reason.clone()),
                },
                ReviewOutcome {
                    experiment: key.clone(),
                    action: "completed",
                    reason,
                    winner,
                },
            ),
            Some(ReviewDecision::Fail { reason }) => (
                LifecycleAction::Fail {
                    reason: reason.clone(),
                },
                ReviewOutcome {
                    experiment: key.clone(),
                    action: "failed",
                    reason,
                    winner: None,
                },
            ),
        };
        match apply_at(state, tenant_id, &key, action, now).await {
            Ok(_) => {
                tracing::info!(tenant_id, experiment = %key, action = outcome.action, reason = %outcome.reason, "experiment review acted");
                summary.actions.push(outcome);
            }
            Err(e) => summary.errors.push(format!("{key}: {}", e.detail)),
        }
    }
    Ok(summary)
}

/// Gives the tenant its `experiments.review` schedule unless it has one by that name (a tenant
/// that changed or disabled it keeps its choice). Returns whether it was created. Called when
/// a tenant is created (CLI, demo tenant).
pub async fn ensure_review_schedule(
    store: &store::Store,
    tenant_id: &str,
    now_ms: i64,
) -> Result<bool, store::StoreError> {
    crate::jobs::ensure_default_schedule(
        store,
        tenant_id,
        crate::jobs::DefaultSchedule {
            name: REVIEW_SCHEDULE,
            cron: REVIEW_CRON,
            handler: EXPERIMENTS_REVIEW,
            priority: jobs::Priority::Normal,
        },
        now_ms,
    )
    .await
}

/// `experiments.review`: reviews the tenant's experiments now (payload `{}`).
pub struct ExperimentsReview;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewPayload {}

impl JobHandler for ExperimentsReview {
    fn name(&self) -> &'static str {
        EXPERIMENTS_REVIEW
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        PayloadError::parse::<ReviewPayload>(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            PayloadError::parse::<ReviewPayload>(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let summary = review_experiments(ctx.state(), &ctx.tenant_id, crate::jobs::now_ms())
                .await
                .map_err(HandlerError::store)?;
            serde_json::to_value(&summary)
                .map(Some)
                .map_err(|e| HandlerError::Permanent(e.to_string()))
        })
    }
}
