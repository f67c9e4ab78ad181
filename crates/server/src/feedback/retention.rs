//! Retention of feedback texts (issue 20): the tenant's `[retention] days` (default by mode:
//! research 3650, hybrid 730, production 365; 0 keeps texts forever), enforced by the daily
//! `feedback.retention_purge` job.
//!
//! Each item past retention is purged exactly as `DELETE /api/v1/feedback/{id}` purges one
//! (the store's purge: text, findings and trace erased, scores and history kept, `purged` in
//! history and audit log in the same transaction), with the reason `retention` and the policy's
//! days in the event's detail. Idempotent: a purged item is never purged again, so a repeated
//! or resumed job only does what is left.

use serde::{Deserialize, Serialize};
use serde_json::json;
use store::FeedbackEvent;

use super::{FeedbackError, FeedbackService};
use crate::jobs::{HandlerError, HandlerFuture, JobContext, JobHandler, PayloadError};
use crate::state::AppState;

/// `feedback.retention_purge`.
pub const FEEDBACK_RETENTION_PURGE: &str = "feedback.retention_purge";
/// The name of every tenant's daily retention purge schedule.
pub const RETENTION_SCHEDULE: &str = "feedback-retention-purge";
/// When it runs: daily at 02:43 UTC (off the hour, before the 03:17 predictions refit).
pub const RETENTION_CRON: &str = "43 2 * * *";
/// Items purged per batch (one read, then one transaction per item, as a manual purge).
pub const RETENTION_BATCH: u32 = 200;
/// The actor recorded on retention purges.
pub const RETENTION_ACTOR: &str = "retention";

/// What one retention run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionSummary {
    /// The days in force (0: texts are kept forever and nothing was purged).
    pub retention_days: u32,
    /// Items that occurred before this time (epoch ms) were past retention; `None` when kept
    /// forever.
    pub cutoff_ms: Option<i64>,
    /// Items purged by this run.
    pub purged: u64,
    /// Whether none past retention remain (false when stopped between batches).
    pub finished: bool,
}

impl FeedbackService {
    /// The tenant's retention policy in days (its `[retention] days`, else its mode's default),
    /// and its cut-off at `now_ms`.
    pub async fn retention(
        &self,
        state: &AppState,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<(u32, Option<i64>), FeedbackError> {
        let (text, _) = self.config(state, tenant_id).await?;
        let config = ::feedback::config::FeedbackConfig::parse(&text).unwrap_or_else(|e| {
            // Validated before it was stored; a build that reads it differently applies the
            // defaults, as the engine does.
            tracing::warn!(tenant_id, error = %e, "stored feedback configuration no longer valid; using the default retention");
            ::feedback::config::FeedbackConfig::default()
        });
        let mode = config.mode.0;
        Ok((
            config.retention.days_for(mode),
            config.retention.cutoff_ms(mode, now_ms),
        ))
    }

    /// Purges one batch (up to [`RETENTION_BATCH`]) of the tenant's items that occurred before
    /// `cutoff_ms`, each through the store's purge as `DELETE /api/v1/feedback/{id}` does, with
    /// `reason: "retention"` and `retention_days` in the `purged` event. Returns how many were
    /// purged and whether none remain.
    pub async fn purge_retention_batch(
        &self,
        state: &AppState,
        tenant_id: &str,
        retention_days: u32,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<(u64, bool), FeedbackError> {
        let batch = state
            .store()
            .feedback_past_retention(tenant_id, cutoff_ms, RETENTION_BATCH)
            .await?;
        let mut purged = 0;
        for (item_id, status) in &batch {
            let event = FeedbackEvent::new(
                "purged",
                RETENTION_ACTOR,
                json!({
                    "previous_status": status.as_str(),
                    "reason": "retention",
                    "retention_days": retention_days,
                }),
            );
            // False when a concurrent purge got there first: nothing to do.
            if state
                .store()
                .purge_feedback(tenant_id, item_id, &event, now_ms)
                .await?
            {
                purged += 1;
            }
        }
        Ok((purged, (batch.len() as u32) < RETENTION_BATCH))
    }

    /// Purges every item of the tenant past retention at `now_ms`, batch by batch;
    /// `between_batches` may stop the run (a job's stop request), leaving the rest to the next.
    pub async fn purge_past_retention(
        &self,
        state: &AppState,
        tenant_id: &str,
        now_ms: i64,
        between_batches: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<RetentionSummary, FeedbackError> {
        let (retention_days, cutoff_ms) = self.retention(state, tenant_id, now_ms).await?;
        let mut summary = RetentionSummary {
            retention_days,
            cutoff_ms,
            purged: 0,
            finished: true,
        };
        let Some(cutoff) = cutoff_ms else {
            return Ok(summary);
        };
        loop {
            let (purged, finished) = self
                .purge_retention_batch(state, tenant_id, retention_days, cutoff, now_ms)
                .await?;
            summary.purged += purged;
            if finished {
                return Ok(summary);
            }
            if !between_batches() {
                summary.finished = false;
                return Ok(summary);
            }
        }
    }
}

/// Gives the tenant its daily `feedback.retention_purge` schedule unless it has one by that
/// name (a tenant that changed or disabled it keeps its choice). Returns whether it was
/// created. Called when a tenant is created (CLI, demo tenant).
pub async fn ensure_retention_schedule(
    store: &store::Store,
    tenant_id: &str,
    now_ms: i64,
) -> Result<bool, store::StoreError> {
    crate::jobs::ensure_default_schedule(
        store,
        tenant_id,
        crate::jobs::DefaultSchedule {
            name: RETENTION_SCHEDULE,
            cron: RETENTION_CRON,
            handler: FEEDBACK_RETENTION_PURGE,
            priority: jobs::Priority::Bulk,
        },
        now_ms,
    )
    .await
}

/// `feedback.retention_purge`: purges the tenant's items past its retention (payload `{}`).
pub(crate) struct FeedbackRetentionPurge;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionPayload {}

impl JobHandler for FeedbackRetentionPurge {
    fn name(&self) -> &'static str {
        FEEDBACK_RETENTION_PURGE
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        PayloadError::parse::<RetentionPayload>(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            PayloadError::parse::<RetentionPayload>(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let service = ctx.state().feedback().clone();
            let stop = ctx.clone();
            let mut go_on = move || stop.check_stop().is_ok();
            let summary = service
                .purge_past_retention(
                    ctx.state(),
                    &ctx.tenant_id,
                    crate::jobs::now_ms(),
                    &mut go_on,
                )
                .await
                .map_err(|e| match e {
                    FeedbackError::Store(e) => HandlerError::store(e),
                    other => HandlerError::Retry(other.to_string()),
                })?;
            tracing::info!(tenant_id = %ctx.tenant_id, purged = summary.purged, days = summary.retention_days, "feedback retention purge");
            if !summary.finished {
                ctx.check_stop()?;
            }
            Ok(Some(json!(summary)))
        })
    }
}
