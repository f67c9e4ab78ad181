//! Dual-write (issue 20): forwarding the items a tenant's HTTP ingest accepted to its legacy
//! endpoint, through the jobs queue.
//!
//! ```text
//! POST /api/v1/feedback ─▶ ingest transaction: items + history + audit + feedback.process
//!                          + feedback.forward_legacy (one per ≤ 100 newly stored items)
//! feedback.forward_legacy (worker, queue `low`) ─▶ per item not yet delivered: open the
//!   sealed text, POST the item's JSON with `Idempotency-Key: <item id>`
//!     2xx / 409        ─▶ delivered: feedback_forwards row + `forwarded_legacy` event (one tx)
//!     5xx/408/429, no answer, timeout ─▶ stop; the job retries on the queue's backoff
//!                                         (dead after `max_attempts`)
//!     other 4xx, 3xx   ─▶ refused: the other items go on; the job fails with the reasons
//!   purged item        ─▶ `skipped_purged` row + `forward_skipped` event, nothing sent
//! ```
//!
//! The outbox (the job in the ingest transaction) means an accepted item is never lost while
//! the legacy endpoint is down, and the delivery rows mean a retried job re-sends only what
//! was not delivered. Duplicates (idempotent re-sends) are stored nothing and get no job.
//! Imports (`signalbox feedback import`) store through another path and forward nothing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use jobs::Priority;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{FeedbackEvent, FeedbackJobSpec, FeedbackStatus, ForwardOutcome, NewFeedbackForward};

use ::feedback::forward::{verdict, DualWriteConfig, LegacyItem, LegacyUrl, Verdict};

use super::{FeedbackError, FeedbackService};
use crate::custody::CustodyError;
use crate::jobs::{HandlerError, HandlerFuture, JobContext, JobHandler, PayloadError};
use crate::state::AppState;

/// `feedback.forward_legacy`.
pub const FEEDBACK_FORWARD_LEGACY: &str = "feedback.forward_legacy";
/// The jobs queue forwarding runs on: background work that must not hold up processing
/// (`critical` to `normal` carry the tiers' analyses); its retry delay is the queue's.
pub const FORWARD_QUEUE: Priority = Priority::Low;
/// Most bytes of a legacy answer's body read (and discarded).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The outbox job spec for a tenant's settings, when forwarding is on: its attempts are
/// `max_attempts`, its time limit room for a full job's requests at the per-request timeout.
pub fn forward_spec(config: &DualWriteConfig) -> Option<FeedbackJobSpec<'static>> {
    config.target()?;
    let per_job = config
        .timeout_ms
        .saturating_mul(store::FEEDBACK_ITEMS_PER_JOB as u64)
        .saturating_add(30_000);
    Some(FeedbackJobSpec {
        handler: FEEDBACK_FORWARD_LEGACY,
        priority: FORWARD_QUEUE,
        max_attempts: config.max_attempts,
        timeout_ms: per_job.clamp(crate::jobs::MIN_TIMEOUT_MS, crate::jobs::MAX_TIMEOUT_MS),
    })
}

/// What one forwarding attempt did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardReport {
    /// Items the endpoint took now (2xx).
    pub delivered: usize,
    /// Items it already had (409).
    pub duplicates: usize,
    /// Items an earlier attempt delivered or skipped.
    pub already: usize,
    /// Items purged before they could be sent.
    pub skipped_purged: usize,
    /// Items the job names that the tenant does not have.
    pub missing: usize,
    /// Items the endpoint refused for good: `(id, reason)`.
    pub refused: Vec<(String, String)>,
    /// Why the attempt stopped early (the endpoint is down or unwell), if it did.
    pub retry: Option<String>,
}

/// Why one request did not get an answer.
#[derive(Debug)]
struct NoAnswer(String);

impl FeedbackService {
    /// Forwards the listed items to the tenant's legacy endpoint, skipping those already
    /// delivered; see the module's documentation.
    pub async fn forward_items(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_ids: &[String],
        job_id: &str,
        attempt: u32,
    ) -> Result<ForwardReport, FeedbackError> {
        let engine = self.engine(state, tenant_id).await?;
        let config = engine.dual_write();
        let mut report = ForwardReport::default();
        let Some(target) = config.target() else {
            report.refused = item_ids
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        "dual_write is not enabled for this tenant".into(),
                    )
                })
                .collect();
            return Ok(report);
        };
        let headers = match resolve_headers(config) {
            Ok(h) => h,
            Err(why) => {
                report.retry = Some(why);
                return Ok(report);
            }
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let done = state.store().feedback_forwards(tenant_id, item_ids).await?;
        let mut records: std::collections::HashMap<String, store::FeedbackRecord> = state
            .store()
            .feedback_items(tenant_id, item_ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let metrics = state.metrics().feedback();
        for id in item_ids {
            if done.contains_key(id) {
                report.already += 1;
                continue;
            }
            let Some(record) = records.remove(id) else {
                report.missing += 1;
                continue;
            };
            let (text, erased) = match (&record.status, &record.text_sealed) {
                (FeedbackStatus::Purged, _) => (None, true),
                (_, Some(sealed)) => match self.open(tenant_id, id, sealed).await {
                    Ok(text) => (Some(text), false),
                    // The key was destroyed (crypto-shredded): as good as purged.
                    Err(CustodyError::Erased { .. }) => (None, true),
                    Err(e) => {
                        report.retry = Some(format!("{id}: the text cannot be opened: {e}"));
                        return Ok(report);
                    }
                },
                (_, None) => (None, false),
            };
            if erased {
                let recorded = state
                    .store()
                    .record_feedback_forward(
                        tenant_id,
                        &NewFeedbackForward {
                            item_id: id,
                            outcome: ForwardOutcome::SkippedPurged,
                            status_code: None,
                            job_id,
                            attempt,
                        },
                        &FeedbackEvent::new(
                            "forward_skipped",
                            "worker",
                            json!({ "reason": "purged", "job_id": job_id }),
                        ),
                        crate::jobs::now_ms(),
                    )
                    .await?;
                if recorded {
                    metrics.legacy_forwarded("skipped_purged");
                }
                report.skipped_purged += 1;
                continue;
            }
            let item = LegacyItem {
                id: record.id.clone(),
                user_id: record.user_id.clone(),
                kind: record.kind.clone(),
                channel: record.channel.clone(),
                rating: record.rating,
                text,
                locale: record.locale.clone(),
                region: record.region.clone(),
                occurred_at_ms: record.occurred_ms,
                metadata: record
                    .metadata
                    .as_deref()
                    .and_then(|m| serde_json::from_str(m).ok())
                    .unwrap_or(Value::Null),
            };
            let status = match post(&target, &headers, id, item.body(), timeout).await {
                Ok(status) => status,
                Err(NoAnswer(why)) => {
                    metrics.legacy_forwarded("retry");
                    report.retry = Some(format!("{id}: {why}"));
                    return Ok(report);
                }
            };
            match verdict(status) {
                Verdict::Delivered => {
                    let recorded = state
                        .store()
                        .record_feedback_forward(
                            tenant_id,
                            &NewFeedbackForward {
                                item_id: id,
                                outcome: ForwardOutcome::Delivered,
                                status_code: Some(status),
                                job_id,
                                attempt,
                            },
                            &FeedbackEvent::new(
                                "forwarded_legacy",
                                "worker",
                                json!({ "status": status, "job_id": job_id, "attempt": attempt }),
                            ),
                            crate::jobs::now_ms(),
                        )
                        .await?;
                    if status == 409 {
                        report.duplicates += 1;
                        metrics.legacy_forwarded("duplicate");
                    } else {
                        report.delivered += 1;
                        metrics.legacy_forwarded("delivered");
                    }
                    if !recorded {
                        // Another worker recorded it meanwhile (a lost lease): still delivered.
                        report.already += 1;
                    }
                }
                Verdict::Retry => {
                    metrics.legacy_forwarded("retry");
                    report.retry = Some(format!("{id}: the legacy endpoint answered {status}"));
                    return Ok(report);
                }
                Verdict::Permanent => {
                    metrics.legacy_forwarded("rejected");
                    report
                        .refused
                        .push((id.clone(), format!("the legacy endpoint answered {status}")));
                }
            }
        }
        Ok(report)
    }
}

/// The configured headers with their values from the environment; an unset or unusable
/// variable is an error naming it (never its value).
fn resolve_headers(
    config: &DualWriteConfig,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    config
        .header_envs()
        .into_iter()
        .map(|(name, env)| {
            let value = std::env::var(env).map_err(|_| {
                format!("environment variable {env} (for header {name}) is not set")
            })?;
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name} is not a header name"))?;
            let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
                format!("environment variable {env} does not hold a valid header value")
            })?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

/// POSTs one item; the status code, or why there was none within `timeout`.
async fn post(
    target: &LegacyUrl,
    headers: &[(http::HeaderName, http::HeaderValue)],
    item_id: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<u16, NoAnswer> {
    if target.tls {
        return Err(NoAnswer(
            "https legacy endpoints are not supported by this build (use http, e.g. through a \
             local TLS-terminating proxy)"
                .to_owned(),
        ));
    }
    let exchange = async {
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((host, target.port))
            .await
            .map_err(|e| NoAnswer(format!("cannot connect to {}: {e}", target.authority())))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| NoAnswer(format!("HTTP handshake failed: {e}")))?;
        let driver = tokio::spawn(conn);
        let mut request = http::Request::post(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "signalbox-dual-write/1")
            .header("idempotency-key", item_id);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NoAnswer(format!("cannot build the request: {e}")))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| NoAnswer(format!("the request failed: {e}")));
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let status = answer.status().as_u16();
        // Read (a bounded part of) the answer so the exchange completes; its content is not
        // used.
        let _ = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        driver.abort();
        Ok(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(NoAnswer(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Forwards items to the tenant's legacy endpoint; see the module's documentation.
pub(crate) struct FeedbackForwardLegacy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardPayload {
    item_ids: Vec<String>,
}

impl ForwardPayload {
    fn parse(payload: &Value) -> Result<ForwardPayload, PayloadError> {
        let p: ForwardPayload = PayloadError::parse(payload)?;
        if p.item_ids.is_empty() || p.item_ids.len() > store::FEEDBACK_ITEMS_PER_JOB {
            return Err(PayloadError::new(
                "item_ids",
                format!("must list 1 to {} items", store::FEEDBACK_ITEMS_PER_JOB),
            ));
        }
        if let Some(i) = p
            .item_ids
            .iter()
            .position(|id| id.is_empty() || id.len() > 256)
        {
            return Err(PayloadError::new(
                &format!("item_ids[{i}]"),
                "must be 1 to 256 bytes",
            ));
        }
        Ok(p)
    }
}

impl JobHandler for FeedbackForwardLegacy {
    fn name(&self) -> &'static str {
        FEEDBACK_FORWARD_LEGACY
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        ForwardPayload::parse(payload).map(|_| ())
    }

    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move {
            let payload = ForwardPayload::parse(&ctx.payload)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let service = ctx.state().feedback().clone();
            let report = service
                .forward_items(
                    ctx.state(),
                    &ctx.tenant_id,
                    &payload.item_ids,
                    &ctx.job_id,
                    ctx.attempt,
                )
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            if let Some(why) = &report.retry {
                return Err(HandlerError::Retry(why.clone()));
            }
            if !report.refused.is_empty() {
                let reasons: Vec<String> = report
                    .refused
                    .iter()
                    .take(10)
                    .map(|(id, why)| format!("{id}: {why}"))
                    .collect();
                return Err(HandlerError::Permanent(format!(
                    "{} of {} items refused: {}",
                    report.refused.len(),
                    payload.item_ids.len(),
                    reasons.join("; ")
                )));
            }
            Ok(Some(json!(report)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_spec_follows_the_settings() {
        assert_eq!(forward_spec(&DualWriteConfig::default()), None);
        let mut config = DualWriteConfig {
            enabled: true,
            url: Some("http://127.0.0.1:9/legacy".into()),
            max_attempts: 12,
            ..Default::default()
        };
        let spec = forward_spec(&config).unwrap();
        assert_eq!(spec.handler, FEEDBACK_FORWARD_LEGACY);
        assert_eq!(spec.priority, Priority::Low);
        assert_eq!(spec.max_attempts, 12);
        assert_eq!(spec.timeout_ms, 5_000 * 100 + 30_000);
        config.timeout_ms = 60_000;
        assert_eq!(forward_spec(&config).unwrap().timeout_ms, 6_030_000);
        config.enabled = false;
        assert_eq!(forward_spec(&config), None);
    }

    #[test]
    fn payloads_are_checked_at_enqueue() {
        let handler = FeedbackForwardLegacy;
        assert!(handler.validate(&json!({"item_ids": ["fb_1"]})).is_ok());
        for (payload, field) in [
            (json!({"item_ids": []}), "payload.item_ids"),
            (json!({"item_ids": [""]}), "payload.item_ids[0]"),
            (json!({"ids": ["x"]}), "payload"),
        ] {
            let e = handler.validate(&payload).unwrap_err();
            assert!(e.field.starts_with(field), "{payload}: {e}");
        }
        let many: Vec<String> = (0..=store::FEEDBACK_ITEMS_PER_JOB)
            .map(|i| format!("fb_{i}"))
            .collect();
        assert!(handler.validate(&json!({ "item_ids": many })).is_err());
    }

    #[test]
    fn headers_come_from_the_environment_and_name_a_missing_variable() {
        let config = DualWriteConfig {
            enabled: true,
            url: Some("http://x/".into()),
            auth_header_env: Some("SIGNALBOX_TEST_SURELY_UNSET_TOKEN".into()),
            ..Default::default()
        };
        let e = resolve_headers(&config).unwrap_err();
        assert!(e.contains("SIGNALBOX_TEST_SURELY_UNSET_TOKEN"), "{e}");
        assert!(resolve_headers(&DualWriteConfig::default())
            .unwrap()
            .is_empty());
    }
}
