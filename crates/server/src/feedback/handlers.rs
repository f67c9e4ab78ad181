//! The feedback job handlers.
//!
//! | name                 | payload                          | result |
//! |----------------------|----------------------------------|--------|
//! | `feedback.process`   | `{"item_ids": [...]}` (at most 100) | processed, skipped, failed |
//! | `feedback.reencrypt` | `{"key_id": "..."}` (informative) | items re-sealed |
//! | `feedback.forward_legacy` | `{"item_ids": [...]}` (at most 100) | see [`super::forward`] |
//! | `feedback.migration_check` | `{"generation": G, "version": V}` (the plan state it judges) | judged or stale, verdict, window figures |

use serde::Deserialize;
use serde_json::json;

use crate::jobs::{HandlerError, HandlerFuture, JobContext, JobHandler, PayloadError};

/// `feedback.process`.
pub const FEEDBACK_PROCESS: &str = "feedback.process";
/// `feedback.reencrypt`.
pub const FEEDBACK_REENCRYPT: &str = "feedback.reencrypt";

/// Fully analyses stored items that await processing. Exactly once by effect: each result is
/// applied only at the revision it read, so a repeated attempt skips what an earlier one did.
/// On the job's last attempt a failure marks its remaining items `failed`.
pub(crate) struct FeedbackProcess;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessPayload {
    item_ids: Vec<String>,
}

impl ProcessPayload {
    fn parse(payload: &serde_json::Value) -> Result<ProcessPayload, PayloadError> {
        let p: ProcessPayload = PayloadError::parse(payload)?;
        if p.item_ids.is_empty() || p.item_ids.len() > store::FEEDBACK_ITEMS_PER_JOB {
            return Err(PayloadError::new(
                "item_ids",
                format!("must list 1 to {} items", store::FEEDBACK_ITEMS_PER_JOB),
            ));
        }
        Ok(p)
    }
}

impl JobHandler for FeedbackProcess {
    fn name(&self) -> &'static str {
        FEEDBACK_PROCESS
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        ProcessPayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload = ProcessPayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let service = ctx.state().feedback().clone();
            match service
                .process_items(ctx.state(), &ctx.tenant_id, &payload.item_ids)
                .await
            {
                Ok(report) => Ok(Some(json!(report))),
                Err(e) => {
                    if ctx.attempt >= ctx.max_attempts {
                        let _ = service
                            .fail_items(
                                ctx.state(),
                                &ctx.tenant_id,
                                &payload.item_ids,
                                &e.to_string(),
                            )
                            .await;
                    }
                    Err(HandlerError::Retry(e.to_string()))
                }
            }
        })
    }
}

/// Re-encrypts a tenant's items under its active data key in batches, then retires the old
/// keys. Resumable: each batch reads what is still sealed under another key.
pub(crate) struct FeedbackReencrypt;

impl JobHandler for FeedbackReencrypt {
    fn name(&self) -> &'static str {
        FEEDBACK_REENCRYPT
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let service = ctx.state().feedback().clone();
            let mut total = 0;
            loop {
                ctx.check_stop()?;
                let (done, finished) = service
                    .reencrypt_batch(ctx.state(), &ctx.tenant_id)
                    .await
                    .map_err(|e| HandlerError::Retry(e.to_string()))?;
                total += done;
                if finished {
                    break;
                }
            }
            Ok(Some(json!({ "resealed": total })))
        })
    }
}

/// Judges the live stage of a traffic-shift plan when its monitoring window ends (enqueued by
/// each stage start with `run_at` = the window's end). Stale (a no-op) when the plan moved on
/// since it was scheduled; see [`super::migration::MigrationService::check`].
pub(crate) struct FeedbackMigrationCheck;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckPayload {
    generation: i64,
    version: i64,
}

impl JobHandler for FeedbackMigrationCheck {
    fn name(&self) -> &'static str {
        super::migration::MIGRATION_CHECK
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        PayloadError::parse::<CheckPayload>(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload: CheckPayload = PayloadError::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let outcome = super::migration::MigrationService
                .check(
                    ctx.state(),
                    &ctx.tenant_id,
                    payload.generation,
                    payload.version,
                    crate::jobs::now_ms(),
                )
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            Ok(Some(json!(outcome)))
        })
    }
}
