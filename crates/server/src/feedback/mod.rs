//! Feedback (issue 17): [`FeedbackService`], the one place for the feedback use cases. Routes,
//! the CLI and the job handlers call it.
//!
//! ```text
//! POST /api/v1/feedback ─▶ ingest: split (JSON array / NDJSON), validate each item, seal its
//!                          text, then per tier:
//!   realtime ──▶ analyse inline (budget: the tier's 200 ms timeout) ─▶ store item + result
//!   priority ┐
//!   standard ├─▶ store item as received + `feedback.process` job, one transaction
//!   batch    ┘
//! feedback.process (worker) ─▶ open text, analyse fully, apply result (fenced by revision)
//! ```
//!
//! With the tenant's `[dual_write]` on, each insert also enqueues `feedback.forward_legacy`
//! jobs for its newly stored items in the same transaction ([`forward`]).
//!
//! Tier → jobs queue (`docs/feedback.md`): realtime's follow-up work (production mode's
//! asynchronous full checks, items over the inline budget) → `critical`; priority → `high`;
//! standard → `normal`; batch → `low`. A job's attempts are the tier's retry count + 1 and its
//! hard time limit the tier's timeout. Key rotation's re-encryption runs on `bulk`.

pub mod engine;
pub mod forward;
mod handlers;
pub mod import;
pub mod migration;
pub mod private_analytics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::Priority;
use serde::Serialize;
use serde_json::Value;
use store::{
    FeedbackAnalysis, FeedbackEvent, FeedbackFilter, FeedbackInsertion, FeedbackJobSpec,
    FeedbackRecord, FeedbackStatus, NewFeedbackItem, StoreError,
};
use utoipa::ToSchema;

pub use engine::{ConfigError, Engine, Item, Mode, Outcome, PiiView, Route, Tier};
pub(crate) use forward::FeedbackForwardLegacy;
pub use forward::FEEDBACK_FORWARD_LEGACY;
pub(crate) use handlers::{FeedbackMigrationCheck, FeedbackProcess, FeedbackReencrypt};
pub use handlers::{FEEDBACK_PROCESS, FEEDBACK_REENCRYPT};

use base64::Engine as _;

use crate::custody::{Custody, CustodyError};

use crate::ingest::{BodyError, Framing, RejectedEvent};
use crate::state::AppState;

/// Most bytes of a stored configuration.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Items re-encrypted per batch by the rotation job.
pub const REENCRYPT_BATCH: u32 = 200;
/// How long a queue depth reading is reused for hybrid routing.
const DEPTH_TTL: Duration = Duration::from_secs(1);
/// How long a tenant's engine is reused before its stored configuration is read again.
const ENGINE_TTL: Duration = Duration::from_secs(5);

/// The jobs queue of a tier's work.
pub fn queue_of(tier: Tier) -> Priority {
    match tier {
        Tier::Realtime => Priority::Critical,
        Tier::Priority => Priority::High,
        Tier::Standard => Priority::Normal,
        Tier::Batch => Priority::Low,
    }
}

/// Sets `processing_queue_depth{tier,priority}`: the due jobs (every tenant's) on each tier's
/// jobs queue. Called wherever queue depths are read (the jobs runtime's sampling, hybrid
/// routing's reading).
pub fn record_queue_depths(metrics: &telemetry::Metrics, depths: &[store::JobDepth]) {
    for tier in Tier::ALL {
        let queue = queue_of(tier);
        let pending = depths
            .iter()
            .filter(|d| d.priority == queue)
            .map(|d| d.pending)
            .sum();
        metrics
            .feedback()
            .set_queue_depth(tier.as_str(), queue.as_str(), pending);
    }
}

/// Why a feedback use case failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The body cannot be split into items.
    #[error("{0:?}")]
    Body(BodyError),
    /// A configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Sealing or opening a text failed (a wrong, missing or destroyed key, an altered value).
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// The tenant has no such item.
    #[error("feedback item '{0}' not found")]
    NotFound(String),
    /// Every item was rejected.
    #[error("all {} items were rejected", .0.len())]
    AllRejected(Vec<RejectedEvent>),
}

/// What became of one accepted item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcceptedItem {
    /// Position in the array, or 0-based NDJSON line.
    pub index: usize,
    pub id: String,
    /// `stored` or `duplicate`.
    pub outcome: &'static str,
    #[schema(value_type = String)]
    pub tier: Tier,
    /// The item's status after ingest (`received` for a duplicate: read it for the current one).
    #[schema(value_type = String)]
    pub status: FeedbackStatus,
}

/// The answer to an ingest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestReport {
    /// Items accepted: stored plus duplicates.
    pub accepted: usize,
    pub stored: usize,
    /// Items your tenant had already sent with the same content: nothing changed.
    pub duplicates: usize,
    pub items: Vec<AcceptedItem>,
    /// Items not accepted, with index, field and reason (a different item under an existing
    /// id is rejected with field `id`).
    pub rejected: Vec<RejectedEvent>,
}

/// A history row as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryView {
    pub at_ms: i64,
    #[schema(value_type = String)]
    pub status: FeedbackStatus,
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// A stored item as the API shows it (never its original text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemView {
    pub id: String,
    pub user_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: Option<String>,
    pub rating: Option<i64>,
    pub locale: Option<String>,
    pub region: Option<String>,
    /// Null when the item was sent without metadata.
    #[schema(value_type = Option<Object>, required = true)]
    pub metadata: Value,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    pub tier: String,
    pub mode: String,
    #[schema(value_type = String)]
    pub status: FeedbackStatus,
    /// The text with personal data replaced by type tags or pseudonyms.
    pub text_redacted: Option<String>,
    /// Findings with character offsets into the original text.
    pub pii: Vec<PiiView>,
    /// VADER compound score in `[-1, 1]`.
    pub sentiment: Option<f64>,
    /// Null until the item is analysed.
    #[schema(value_type = Option<Object>, required = true)]
    pub toxicity: Value,
    /// The policy's alignment score in `[0, 1]`, once the full checks ran.
    pub alignment: Option<f64>,
    pub risk: Option<f64>,
    pub route: Option<String>,
    /// The violated principles.
    pub violations: Vec<String>,
    pub processed_at_ms: Option<i64>,
    /// The processing history, oldest first (only on single-item reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryView>>,
}

impl ItemView {
    fn of(record: FeedbackRecord, history: Option<Vec<HistoryView>>) -> ItemView {
        let a = record.analysis;
        ItemView {
            id: record.id,
            user_id: record.user_id,
            kind: record.kind,
            channel: record.channel,
            rating: record.rating,
            locale: record.locale,
            region: record.region,
            metadata: json_or_null(record.metadata.as_deref()),
            occurred_at_ms: record.occurred_ms,
            received_at_ms: record.received_ms,
            tier: record.tier,
            mode: record.mode,
            status: record.status,
            text_redacted: a.text_redacted,
            pii: a
                .pii
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default(),
            sentiment: a.sentiment,
            toxicity: json_or_null(a.toxicity.as_deref()),
            alignment: a.alignment,
            risk: a.risk,
            route: a.route,
            violations: a.violations,
            processed_at_ms: record.processed_ms,
            history,
        }
    }
}

/// The list's keyset cursor: the last item's `(occurred_ms, id)` as `"<ms>:<id>"`.
fn page_cursor(occurred_ms: i64, id: &str) -> String {
    format!("{occurred_ms}:{id}")
}

/// Reads a cursor [`page_cursor`] made; `None` for anything else.
pub fn parse_page_cursor(cursor: &str) -> Option<(i64, String)> {
    let (ms, id) = cursor.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

fn json_or_null(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A page of items.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<ItemView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a processing job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessReport {
    /// Results applied by this attempt.
    pub processed: usize,
    /// Items already processed (by an earlier attempt) or gone: nothing applied.
    pub skipped: usize,
    /// Items whose text could not be opened: failed for good.
    pub failed: usize,
}

/// The secret that keys items' idempotency hashes. The stored hash of an item must not let
/// anyone who reads the database confirm a guess of a short text (an unkeyed SHA-256 of
/// `"text": "yes"` would), so it is an HMAC under a secret kept outside the database.
#[derive(Clone)]
pub struct IdempotencyKey([u8; 32]);

impl IdempotencyKey {
    /// A key from 32 secret bytes (derived from the server's key material).
    pub fn from_bytes(bytes: [u8; 32]) -> IdempotencyKey {
        IdempotencyKey(bytes)
    }

    /// A key derived from `secret` for this one purpose (HMAC-SHA256 under a fixed label), so
    /// the same secret can serve other purposes without the hashes revealing anything of it.
    pub fn derive(secret: &[u8]) -> IdempotencyKey {
        IdempotencyKey(hmac_sha256(secret, &[b"signalbox feedback idempotency v1"]))
    }

    /// A random key: hashes then hold for this process only (tests, throwaway custody keys).
    pub fn random() -> IdempotencyKey {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        IdempotencyKey(bytes)
    }

    /// Hex HMAC-SHA256 of the tenant and what the client sent.
    fn content_hash(&self, tenant_id: &str, canonical: &str) -> String {
        hex::encode(hmac_sha256(
            &self.0,
            &[tenant_id.as_bytes(), b"\0", canonical.as_bytes()],
        ))
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(<redacted>)")
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length; the error arm cannot happen.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The feedback use cases. Cheap to share (`Arc`).
pub struct FeedbackService {
    custody: Arc<Custody>,
    hash_key: IdempotencyKey,
    engines: moka::sync::Cache<String, Arc<Engine>>,
    depth: AtomicU64,
    depth_read_at_ms: AtomicI64,
    epoch: Instant,
}

impl std::fmt::Debug for FeedbackService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackService")
            .field("hash_key", &self.hash_key)
            .finish_non_exhaustive()
    }
}

/// The field name bound into every feedback text envelope (with the tenant and item id), so a
/// sealed text cannot be moved to another row or column.
pub const TEXT_FIELD: &str = "text";

/// A text sealed for storage: its data key's id and the envelope as base64.
struct SealedText {
    key_id: String,
    sealed: String,
}

impl FeedbackService {
    /// A service sealing texts through `custody` and keying idempotency hashes with
    /// `hash_key`.
    pub fn new(custody: Arc<Custody>, hash_key: IdempotencyKey) -> FeedbackService {
        FeedbackService {
            custody,
            hash_key,
            engines: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ENGINE_TTL)
                .build(),
            depth: AtomicU64::new(0),
            depth_read_at_ms: AtomicI64::new(i64::MIN),
            epoch: Instant::now(),
        }
    }

    /// Seals `text` of `item_id` under the tenant's active data key (AES-256-GCM, bound to
    /// tenant, item and field).
    async fn seal(
        &self,
        tenant_id: &str,
        item_id: &str,
        text: &str,
    ) -> Result<SealedText, CustodyError> {
        let sealed = self
            .custody
            .seal_text(tenant_id, item_id, TEXT_FIELD, text)
            .await?;
        Ok(SealedText {
            key_id: Custody::sealed_key_id(sealed.as_bytes())?,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed.as_bytes()),
        })
    }

    /// Opens what [`FeedbackService::seal`] stored; an error says why not, never garbage.
    async fn open(
        &self,
        tenant_id: &str,
        item_id: &str,
        sealed: &str,
    ) -> Result<String, CustodyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| CustodyError::Malformed(format!("sealed text is not base64: {e}")))?;
        self.custody
            .open_text(tenant_id, item_id, TEXT_FIELD, &bytes)
            .await
    }

    /// The tenant's engine, from its stored configuration or the default.
    pub async fn engine(
        &self,
        state: &AppState,
        tenant_id: &str,
    ) -> Result<Arc<Engine>, FeedbackError> {
        if let Some(engine) = self.engines.get(tenant_id) {
            return Ok(engine);
        }
        let engine = match state.store().feedback_config(tenant_id).await? {
            Some(stored) => Engine::from_toml(&stored.config).unwrap_or_else(|e| {
                // Validated before it was stored; a build that reads it differently keeps
                // serving with the defaults rather than refusing every item.
                tracing::warn!(tenant_id, error = %e, "stored feedback configuration no longer valid; using defaults");
                Engine::default()
            }),
            None => Engine::default(),
        };
        let engine = Arc::new(engine);
        self.engines.insert(tenant_id.to_owned(), engine.clone());
        Ok(engine)
    }

    /// The jobs queues' depth (due jobs of every tenant), read at most once a second.
    async fn queue_depth(&self, state: &AppState, now_ms: i64) -> u64 {
        let elapsed = self.epoch.elapsed().as_millis() as i64;
        let read_at = self.depth_read_at_ms.load(Ordering::Relaxed);
        if elapsed.saturating_sub(read_at) < DEPTH_TTL.as_millis() as i64 {
            return self.depth.load(Ordering::Relaxed);
        }
        self.depth_read_at_ms.store(elapsed, Ordering::Relaxed);
        match state.store().job_depths(now_ms).await {
            Ok(depths) => {
                record_queue_depths(state.metrics(), &depths);
                let total = depths.iter().map(|d| d.pending).sum();
                self.depth.store(total, Ordering::Relaxed);
                total
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue depth unavailable; routing as unloaded");
                self.depth.load(Ordering::Relaxed)
            }
        }
    }

    /// Ingests a body of items for `tenant_id`. `tier` (the request's `?tier=`) applies to items
    /// naming none; the tenant's default applies to the rest.
    pub async fn ingest(
        &self,
        state: &AppState,
        tenant_id: &str,
        actor: &str,
        body: &[u8],
        framing: Framing,
        tier: Option<Tier>,
    ) -> Result<IngestReport, FeedbackError> {
        let started = Instant::now();
        let now_ms = crate::jobs::now_ms();
        let engine = self.engine(state, tenant_id).await?;
        let values = crate::ingest::split_body(body, framing).map_err(FeedbackError::Body)?;
        let mut rejected = Vec::new();
        let mut valid: Vec<(usize, Tier, Item, String)> = Vec::with_capacity(values.len());
        for (index, value) in values {
            match parse_one(&engine, value, tier, now_ms) {
                Ok((tier, item, canonical)) => {
                    let hash = self.hash_key.content_hash(tenant_id, &canonical);
                    valid.push((index, tier, item, hash))
                }
                Err((id, field, reason)) => rejected.push(RejectedEvent {
                    index,
                    event_id: id,
                    field,
                    reason,
                }),
            }
        }
        if valid.is_empty() && !rejected.is_empty() {
            return Err(FeedbackError::AllRejected(rejected));
        }

        // Seal every text before anything is stored.
        let mut prepared: Vec<Prepared> = Vec::with_capacity(valid.len());
        for (index, tier, item, hash) in valid {
            let sealed = match &item.text {
                Some(text) => Some(self.seal(tenant_id, &item.id, text).await?),
                None => None,
            };
            prepared.push(Prepared {
                index,
                tier,
                hash,
                item,
                sealed,
            });
        }

        // Realtime items are analysed inline within the tier's timeout.
        let depth = if prepared.iter().any(|p| p.tier == Tier::Realtime) {
            self.queue_depth(state, now_ms).await
        } else {
            0
        };
        let realtime: Vec<Item> = prepared
            .iter()
            .filter(|p| p.tier == Tier::Realtime)
            .map(|p| p.item.clone())
            .collect();
        let mut inline: HashMap<String, (Route, Outcome, f64)> = HashMap::new();
        if !realtime.is_empty() {
            let budget = Duration::from_millis(Tier::Realtime.timeout_ms())
                .saturating_sub(started.elapsed());
            let engine = engine.clone();
            let run = move || {
                realtime
                    .into_iter()
                    .map(|item| {
                        let began = Instant::now();
                        let span = process_span(&item, Tier::Realtime);
                        let (route, outcome) = span.in_scope(|| {
                            let quick = engine.quick_check(&item);
                            let route = engine.choose_route(Tier::Realtime, quick.risk, depth);
                            let outcome = match route {
                                Route::Full => analyze_traced(&engine, &item),
                                Route::Fast => quick,
                            };
                            (route, outcome)
                        });
                        let seconds = began.elapsed().as_secs_f64();
                        span.record("processing.success", true);
                        span.record("processing.duration_ms", seconds * 1000.0);
                        (item.id, (route, outcome, seconds))
                    })
                    .collect::<HashMap<_, _>>()
            };
            let analysed = if prepared.len() <= 8 {
                Ok(Ok(run()))
            } else {
                tokio::time::timeout(budget, tokio::task::spawn_blocking(run)).await
            };
            match analysed {
                Ok(Ok(done)) => inline = done,
                Ok(Err(_)) => {
                    return Err(FeedbackError::Store(StoreError::Corrupt {
                        table: "feedback_items",
                        reason: "inline analysis panicked".to_owned(),
                    }))
                }
                Err(_) => {
                    tracing::warn!(
                        tenant_id,
                        budget_ms = budget.as_millis() as u64,
                        "realtime analysis over its budget; items go to the critical queue"
                    );
                }
            }
        }

        // Group the inserts by the job they need (none, or a queue's).
        let mut groups: HashMap<Option<Tier>, Vec<(usize, NewFeedbackItem)>> = HashMap::new();
        let mut seen_users: HashMap<Tier, Vec<String>> = HashMap::new();
        for p in prepared {
            seen_users
                .entry(p.tier)
                .or_default()
                .push(p.item.user_id.clone());
            let mode = engine.mode();
            let mut events = vec![FeedbackEvent::new(
                "received",
                actor,
                serde_json::json!({ "tier": p.tier.as_str(), "mode": mode.as_str() }),
            )];
            let (status, analysis, job_tier) = match inline.remove(&p.item.id) {
                Some((route, outcome, seconds)) => {
                    state.metrics().feedback().observe_processed(
                        &p.item.kind,
                        p.item.region.as_deref(),
                        Tier::Realtime.as_str(),
                        seconds,
                        &outcome_metrics(&outcome),
                    );
                    let status = status_after(&outcome, route);
                    events.extend(outcome_events(&outcome, route, status, "inline"));
                    let follow_up = (route == Route::Fast).then_some(Tier::Realtime);
                    (status, Some(analysis_of(&outcome, route)), follow_up)
                }
                None => (FeedbackStatus::Received, None, Some(p.tier)),
            };
            let new = NewFeedbackItem {
                id: p.item.id.clone(),
                user_id: Some(p.item.user_id.clone()),
                kind: p.item.kind.clone(),
                channel: Some(p.item.channel.clone()),
                rating: p.item.rating.map(i64::from),
                locale: p.item.locale.clone(),
                region: p.item.region.clone(),
                metadata: (!p.item.metadata.is_empty())
                    .then(|| Value::Object(p.item.metadata.clone()).to_string()),
                occurred_ms: p.item.occurred_at_ms,
                tier: p.tier.as_str().to_owned(),
                mode: mode.as_str().to_owned(),
                content_hash: p.hash,
                text_sealed: p.sealed.as_ref().map(|s| s.sealed.clone()),
                text_key_id: p.sealed.as_ref().map(|s| s.key_id.clone()),
                status,
                analysis,
                events,
            };
            groups.entry(job_tier).or_default().push((p.index, new));
        }

        // Dual-write's outbox: the newly stored items' forwarding jobs commit with them.
        let forward = forward::forward_spec(engine.dual_write());
        let mut items = Vec::new();
        for (job_tier, group) in groups {
            let (indexes, news): (Vec<usize>, Vec<NewFeedbackItem>) = group.into_iter().unzip();
            let spec = job_tier.map(|t| FeedbackJobSpec {
                handler: FEEDBACK_PROCESS,
                priority: queue_of(t),
                max_attempts: t.retry_count() + 1,
                timeout_ms: t.timeout_ms().max(1_000),
            });
            let (outcomes, _jobs) = state
                .store()
                .insert_feedback_with(tenant_id, &news, spec, forward, now_ms)
                .await?;
            for ((index, new), outcome) in indexes.into_iter().zip(news).zip(outcomes) {
                let tier = Tier::parse(&new.tier).unwrap_or(Tier::Standard);
                match outcome {
                    FeedbackInsertion::Stored | FeedbackInsertion::Duplicate => {
                        items.push(AcceptedItem {
                            index,
                            id: new.id,
                            outcome: if outcome == FeedbackInsertion::Stored {
                                "stored"
                            } else {
                                "duplicate"
                            },
                            tier,
                            status: if outcome == FeedbackInsertion::Stored {
                                new.status
                            } else {
                                FeedbackStatus::Received
                            },
                        })
                    }
                    FeedbackInsertion::Conflict => rejected.push(RejectedEvent {
                        index,
                        event_id: Some(new.id),
                        field: Some("id".to_owned()),
                        reason: "your tenant already sent a different item with this id".to_owned(),
                    }),
                }
            }
        }
        let now_s = now_ms.div_euclid(1_000);
        for (tier, users) in seen_users {
            state.metrics().feedback().users_seen(
                tier.as_str(),
                users.iter().map(String::as_str),
                now_s,
            );
        }
        items.sort_by_key(|i| i.index);
        rejected.sort_by_key(|r| r.index);
        let stored = items.iter().filter(|i| i.outcome == "stored").count();
        state.metrics().feedback().rejected(rejected.len() as u64);
        if items.is_empty() && !rejected.is_empty() {
            return Err(FeedbackError::AllRejected(rejected));
        }
        Ok(IngestReport {
            accepted: items.len(),
            stored,
            duplicates: items.len() - stored,
            items,
            rejected,
        })
    }

    /// Fully analyses the listed items that still await processing and applies each result
    /// fenced by the revision read. `last_attempt`: a failure marks the items failed.
    pub async fn process_items(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_ids: &[String],
    ) -> Result<ProcessReport, FeedbackError> {
        let engine = self.engine(state, tenant_id).await?;
        let records = state.store().feedback_items(tenant_id, item_ids).await?;
        let mut report = ProcessReport {
            skipped: item_ids.len().saturating_sub(records.len()),
            ..Default::default()
        };
        for record in records {
            if !record.status.awaits_processing() {
                report.skipped += 1;
                continue;
            }
            let text = match &record.text_sealed {
                Some(sealed) => {
                    match self.open(tenant_id, &record.id, sealed).await {
                        Ok(text) => Some(text),
                        // The keyring lacks the master key, or holds another secret under its
                        // id: an operator can fix that, so the job retries.
                        Err(
                            e @ (CustodyError::Store(_)
                            | CustodyError::UnknownMasterKey { .. }
                            | CustodyError::WrongMasterKey { .. }),
                        ) => return Err(e.into()),
                        // Erased, altered or malformed: no retry can read it.
                        Err(e) => {
                            let failed = state
                                .store()
                                .fail_feedback(
                                    tenant_id,
                                    &record.id,
                                    record.revision,
                                    &FeedbackEvent::new(
                                        "failed",
                                        "worker",
                                        serde_json::json!({ "reason": e.to_string() }),
                                    ),
                                    crate::jobs::now_ms(),
                                )
                                .await?;
                            report.failed += usize::from(failed);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let item = item_of(&record, text);
            let tier = Tier::parse(&record.tier).unwrap_or(Tier::Standard);
            let began = Instant::now();
            let span = process_span(&item, tier);
            let outcome = span.in_scope(|| analyze_traced(&engine, &item));
            let seconds = began.elapsed().as_secs_f64();
            span.record("processing.success", true);
            span.record("processing.duration_ms", seconds * 1000.0);
            let status = status_after(&outcome, Route::Full);
            let events = outcome_events(&outcome, Route::Full, status, "worker");
            let applied = state
                .store()
                .apply_feedback_result(
                    tenant_id,
                    &record.id,
                    record.revision,
                    status,
                    &analysis_of(&outcome, Route::Full),
                    &events,
                    crate::jobs::now_ms(),
                )
                .await?;
            if applied {
                report.processed += 1;
                state.metrics().feedback().observe_processed(
                    &item.kind,
                    item.region.as_deref(),
                    tier.as_str(),
                    seconds,
                    &outcome_metrics(&outcome),
                );
            } else {
                report.skipped += 1;
            }
        }
        Ok(report)
    }

    /// Marks the listed items that still await processing as failed (their job used up its
    /// attempts).
    pub async fn fail_items(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_ids: &[String],
        reason: &str,
    ) -> Result<usize, FeedbackError> {
        let records = state.store().feedback_items(tenant_id, item_ids).await?;
        let mut failed = 0;
        for record in records.into_iter().filter(|r| r.status.awaits_processing()) {
            let done = state
                .store()
                .fail_feedback(
                    tenant_id,
                    &record.id,
                    record.revision,
                    &FeedbackEvent::new(
                        "failed",
                        "worker",
                        serde_json::json!({ "reason": reason }),
                    ),
                    crate::jobs::now_ms(),
                )
                .await?;
            if done {
                failed += 1;
                state
                    .metrics()
                    .feedback()
                    .observe_failed(&record.kind, record.region.as_deref());
            }
        }
        Ok(failed)
    }

    /// The tenant's item, or `NotFound` (another tenant's item is not found either).
    async fn record(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_id: &str,
    ) -> Result<store::FeedbackRecord, FeedbackError> {
        state
            .store()
            .feedback_item(tenant_id, item_id)
            .await?
            .ok_or_else(|| FeedbackError::NotFound(item_id.to_owned()))
    }

    /// One item with its history.
    pub async fn item(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_id: &str,
    ) -> Result<ItemView, FeedbackError> {
        let record = self.record(state, tenant_id, item_id).await?;
        let history = state
            .store()
            .feedback_history(tenant_id, item_id)
            .await?
            .into_iter()
            .map(|h| HistoryView {
                at_ms: h.at_ms,
                status: h.status,
                event: h.event,
                detail: serde_json::from_str(&h.detail).unwrap_or(Value::Null),
            })
            .collect();
        Ok(ItemView::of(record, Some(history)))
    }

    /// A page of items.
    pub async fn list(
        &self,
        state: &AppState,
        tenant_id: &str,
        filter: &FeedbackFilter,
    ) -> Result<ItemPage, FeedbackError> {
        let records = state.store().list_feedback(tenant_id, filter).await?;
        let next_cursor = (records.len() as u32 >= filter.limit.clamp(1, store::MAX_FEEDBACK_PAGE))
            .then(|| records.last().map(|r| page_cursor(r.occurred_ms, &r.id)))
            .flatten();
        Ok(ItemPage {
            items: records.into_iter().map(|r| ItemView::of(r, None)).collect(),
            next_cursor,
        })
    }

    /// The policy trace of an item (`null` until its full checks ran).
    pub async fn trace(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_id: &str,
    ) -> Result<Value, FeedbackError> {
        let record = self.record(state, tenant_id, item_id).await?;
        Ok(json_or_null(record.analysis.trace.as_deref()))
    }

    /// The item's original text, in clear; recorded as `read_in_clear` (history and audit log).
    pub async fn clear_text(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_id: &str,
        actor: &str,
    ) -> Result<Option<String>, FeedbackError> {
        let record = self.record(state, tenant_id, item_id).await?;
        let (Some(sealed), Some(key)) = (&record.text_sealed, &record.text_key_id) else {
            return Ok(None);
        };
        let text = self.open(tenant_id, item_id, sealed).await?;
        state
            .store()
            .record_feedback_event(
                tenant_id,
                item_id,
                &FeedbackEvent::new("read_in_clear", actor, serde_json::json!({ "key_id": key })),
                crate::jobs::now_ms(),
            )
            .await?;
        Ok(Some(text))
    }

    /// Erases an item's text, sealed and redacted (with its findings and trace), keeping its
    /// scores and history; recorded as `purged` in history and audit log in the same
    /// transaction. The audit log keeps only hashes, so it still verifies. Purging a purged
    /// item changes nothing.
    pub async fn purge(
        &self,
        state: &AppState,
        tenant_id: &str,
        item_id: &str,
        actor: &str,
    ) -> Result<bool, FeedbackError> {
        let record = self.record(state, tenant_id, item_id).await?;
        Ok(state
            .store()
            .purge_feedback(
                tenant_id,
                item_id,
                &FeedbackEvent::new(
                    "purged",
                    actor,
                    serde_json::json!({ "previous_status": record.status.as_str() }),
                ),
                crate::jobs::now_ms(),
            )
            .await?)
    }

    /// The tenant's configuration as stored (or the default) and its version (0: default).
    pub async fn config(
        &self,
        state: &AppState,
        tenant_id: &str,
    ) -> Result<(String, i64), FeedbackError> {
        Ok(match state.store().feedback_config(tenant_id).await? {
            Some(stored) => (stored.config, stored.version),
            None => (engine::DEFAULT_CONFIG_TOML.to_owned(), 0),
        })
    }

    /// Validates and stores the tenant's configuration; returns its new version.
    pub async fn put_config(
        &self,
        state: &AppState,
        tenant_id: &str,
        text: &str,
    ) -> Result<i64, FeedbackError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                path: String::new(),
                message: format!("the configuration is over {MAX_CONFIG_BYTES} bytes"),
            }
            .into());
        }
        let engine = Engine::from_toml(text)?;
        let stored = state
            .store()
            .put_feedback_config(tenant_id, text, crate::jobs::now_ms())
            .await?;
        self.engines.insert(tenant_id.to_owned(), Arc::new(engine));
        Ok(stored.version)
    }

    /// Rotates the tenant's data key (the old one is retired: it still opens what it sealed)
    /// and enqueues the re-encryption of its items under the new one. `actor`: who asked (an
    /// API key id, or `operator` from the command line).
    pub async fn rotate_keys(
        &self,
        state: &AppState,
        tenant_id: &str,
        actor: &str,
    ) -> Result<(String, String), FeedbackError> {
        let key_id = self.custody.rotate_data_key(tenant_id, actor).await?;
        let payload = serde_json::json!({ "key_id": key_id }).to_string();
        let job = state
            .store()
            .enqueue_job(
                tenant_id,
                &store::NewJob {
                    handler: FEEDBACK_REENCRYPT,
                    payload: &payload,
                    priority: Priority::Bulk,
                    run_at_ms: crate::jobs::now_ms(),
                    expires_at_ms: None,
                    max_attempts: 6,
                    timeout_ms: 3_600_000,
                    idempotency_key: None,
                },
                crate::jobs::now_ms(),
            )
            .await?;
        Ok((key_id, job.job.id))
    }

    /// Re-encrypts up to one batch of the tenant's items sealed under keys other than the
    /// active one; returns how many were re-sealed and whether none remain. (The old keys
    /// were retired by the rotation; they keep opening what they sealed, so an item sealed
    /// under one by an ingest racing the rotation stays readable, and the next rotation or
    /// re-encryption pass moves it.)
    pub async fn reencrypt_batch(
        &self,
        state: &AppState,
        tenant_id: &str,
    ) -> Result<(usize, bool), FeedbackError> {
        let Some(active) = state.store().active_data_key(tenant_id).await? else {
            return Ok((0, true));
        };
        let active = active.key_id;
        let todo = state
            .store()
            .feedback_sealed_under_other_keys(tenant_id, &active, REENCRYPT_BATCH)
            .await?;
        if todo.is_empty() {
            return Ok((0, true));
        }
        // The rotation may have happened in another process (the CLI, another replica), whose
        // new key this process's custody has not seen yet: retiring the old keys (a no-op when
        // they are retired already) makes it read the active key afresh.
        let mut old_keys: Vec<&str> = todo.iter().map(|(key, _)| key.as_str()).collect();
        old_keys.sort_unstable();
        old_keys.dedup();
        for key in old_keys {
            self.custody.retire_data_key(tenant_id, key).await?;
        }
        let mut done = 0;
        for (old_key, sealed) in todo {
            let text = self
                .open(tenant_id, &sealed.id, &sealed.text_sealed)
                .await?;
            let resealed = self.seal(tenant_id, &sealed.id, &text).await?;
            if resealed.key_id != active {
                // Another rotation since this batch read the active key: the next pass uses
                // the newer one.
                return Err(FeedbackError::Custody(CustodyError::Malformed(format!(
                    "the active data key changed during re-encryption ({active} to {})",
                    resealed.key_id
                ))));
            }
            if state
                .store()
                .reseal_feedback(
                    tenant_id,
                    &sealed.id,
                    &old_key,
                    &resealed.key_id,
                    &resealed.sealed,
                )
                .await?
            {
                done += 1;
            }
        }
        Ok((done, false))
    }
}

struct Prepared {
    index: usize,
    tier: Tier,
    hash: String,
    item: Item,
    sealed: Option<SealedText>,
}

type Rejection = (Option<String>, Option<String>, String);

/// Reads an item's tier (field `tier`, else the request's, else the tenant's default) and
/// validates the rest.
fn parse_one(
    engine: &Engine,
    value: Result<Value, String>,
    request_tier: Option<Tier>,
    now_ms: i64,
) -> Result<(Tier, Item, String), Rejection> {
    let mut value = value.map_err(|reason| (None, None, reason))?;
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    let tier = match value.as_object_mut().and_then(|o| o.remove("tier")) {
        None | Some(Value::Null) => request_tier.unwrap_or(engine.default_tier()),
        Some(Value::String(name)) => Tier::parse(&name).ok_or_else(|| {
            (
                id.clone(),
                Some("tier".to_owned()),
                "must be realtime, priority, standard or batch".to_owned(),
            )
        })?,
        Some(_) => {
            return Err((
                id,
                Some("tier".to_owned()),
                "must be realtime, priority, standard or batch".to_owned(),
            ))
        }
    };
    // What the client sent (keys sorted, the tier left out): a repeat of it is a duplicate
    // whatever defaults validation fills in (`occurred_at_ms` is the receiving time). The
    // caller keys its hash.
    let canonical = value.to_string();
    let assigned = format!("fb_{}", uuid::Uuid::now_v7().simple());
    let item = engine
        .validate(value, &assigned, now_ms)
        .map_err(|errors| {
            let field = errors.first().map(|e| e.field.clone());
            let reason = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            (id.clone(), field, reason)
        })?;
    Ok((tier, item, canonical))
}

/// The seed's `process_feedback` span of one item: its type and tier now, success and duration
/// recorded when done.
fn process_span(item: &Item, tier: Tier) -> tracing::Span {
    tracing::info_span!(
        "process_feedback",
        feedback.r#type = %item.kind,
        processing.tier = tier.as_str(),
        processing.success = tracing::field::Empty,
        processing.duration_ms = tracing::field::Empty,
    )
}

/// The full checks inside a `constitutional_validation` span recording whether they passed.
fn analyze_traced(engine: &Engine, item: &Item) -> Outcome {
    let span = tracing::info_span!(
        "constitutional_validation",
        validation.passed = tracing::field::Empty
    );
    let outcome = span.in_scope(|| engine.analyze(item));
    span.record("validation.passed", outcome.violations.is_empty());
    outcome
}

fn status_after(outcome: &Outcome, route: Route) -> FeedbackStatus {
    match route {
        Route::Fast => FeedbackStatus::Processing,
        Route::Full if outcome.needs_review => FeedbackStatus::NeedsReview,
        Route::Full => FeedbackStatus::Processed,
    }
}

fn analysis_of(outcome: &Outcome, route: Route) -> FeedbackAnalysis {
    FeedbackAnalysis {
        text_redacted: outcome.text_redacted.clone(),
        has_pii: !outcome.findings.is_empty(),
        pii: Some(serde_json::to_string(&outcome.findings).unwrap_or_default()),
        sentiment: outcome.sentiment,
        toxicity: Some(outcome.toxicity.to_string()),
        alignment: outcome.alignment,
        risk: Some(outcome.risk),
        route: Some(route.as_str().to_owned()),
        violations: outcome
            .violations
            .iter()
            .map(|v| v.principle.clone())
            .collect(),
        trace: outcome.trace.as_ref().map(Value::to_string),
    }
}

fn outcome_events(
    outcome: &Outcome,
    route: Route,
    status: FeedbackStatus,
    actor: &str,
) -> Vec<FeedbackEvent> {
    let mut events = vec![
        FeedbackEvent::new(
            "redacted",
            actor,
            serde_json::json!({ "findings": outcome.findings.len() }),
        ),
        FeedbackEvent::new(
            "scored",
            actor,
            serde_json::json!({
                "sentiment": outcome.sentiment,
                "alignment": outcome.alignment,
                "violations": outcome.violations.len(),
            }),
        ),
        FeedbackEvent::new(
            "routed",
            actor,
            serde_json::json!({ "route": route.as_str(), "risk": outcome.risk }),
        ),
    ];
    if !status.awaits_processing() {
        events.push(FeedbackEvent::new(
            "processed",
            actor,
            serde_json::json!({ "status": status.as_str() }),
        ));
    }
    events
}

fn outcome_metrics(outcome: &Outcome) -> telemetry::FeedbackOutcome {
    telemetry::FeedbackOutcome {
        sentiment: outcome.sentiment,
        violations: outcome
            .violations
            .iter()
            .map(|v| (v.principle.clone(), v.severity.clone()))
            .collect(),
        policy_ran: outcome.full,
        passed: outcome.violations.is_empty(),
    }
}

/// The item a stored record describes, with its opened text.
fn item_of(record: &FeedbackRecord, text: Option<String>) -> Item {
    Item {
        id: record.id.clone(),
        user_id: record.user_id.clone().unwrap_or_default(),
        kind: record.kind.clone(),
        channel: record.channel.clone().unwrap_or_else(|| "api".to_owned()),
        rating: record.rating.and_then(|r| u8::try_from(r).ok()),
        text,
        locale: record.locale.clone(),
        region: record.region.clone(),
        metadata: record
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default(),
        occurred_at_ms: record.occurred_ms,
    }
}

/// The HTTP answer for a feedback error, shared by the API and the console.
pub(crate) fn to_api_error(e: FeedbackError) -> crate::problem::ApiError {
    match e {
        FeedbackError::Store(e) => e.into(),
        FeedbackError::Body(crate::ingest::BodyError::Malformed(detail)) => {
            crate::problem::ApiError::new(crate::problem::ProblemKind::MalformedJson, detail)
        }
        FeedbackError::Body(crate::ingest::BodyError::Duplicate(path)) => {
            crate::extract::duplicate_field(&path)
        }
        FeedbackError::Body(crate::ingest::BodyError::TooMany(n)) => crate::problem::ApiError::new(
            crate::problem::ProblemKind::PayloadTooLarge,
            format!(
                "{n} items in one request; send at most {} per request",
                crate::ingest::MAX_EVENTS_PER_REQUEST
            ),
        )
        .with("max_events", crate::ingest::MAX_EVENTS_PER_REQUEST),
        // Whether TOML text is a valid configuration cannot be said in JSON Schema, so (as for
        // other rules beyond one field's shape) it is 422, naming the path in `field`.
        FeedbackError::Config(e) => {
            crate::problem::ApiError::new(crate::problem::ProblemKind::Unprocessable, e.to_string())
                .with("field", e.path.as_str())
        }
        FeedbackError::Custody(crate::custody::CustodyError::Store(e)) => e.into(),
        FeedbackError::Custody(e @ crate::custody::CustodyError::Erased { .. }) => {
            crate::problem::ApiError::new(crate::problem::ProblemKind::Gone, e.to_string())
        }
        FeedbackError::Custody(e) => {
            // Wrong or missing key, altered value: say which, never return garbage. The
            // message names key ids, never key material or content.
            tracing::error!(error = %e, "feedback text cannot be opened");
            crate::problem::ApiError::new(
                crate::problem::ProblemKind::Internal,
                format!("the stored text cannot be opened: {e}"),
            )
        }
        FeedbackError::NotFound(id) => {
            crate::problem::ApiError::not_found(format!("no feedback item '{id}' in your tenant"))
        }
        FeedbackError::AllRejected(rejected) => {
            let n = rejected.len();
            crate::problem::ApiError::new(
                crate::problem::ProblemKind::Unprocessable,
                format!("all {n} items were rejected; see `rejected`"),
            )
            .with("accepted", 0)
            .with(
                "rejected",
                serde_json::to_value(&rejected).unwrap_or_default(),
            )
        }
    }
}
