//! Feedback items (issue 17): tables `feedback_items`, `feedback_history`, `feedback_configs`.
//!
//! What is stored: the item's fields, its original free text only sealed (a vault envelope as
//! base64, with the data key's id), and once analysed the redacted text, PII findings, sentiment,
//! toxicity, alignment, risk, route and the policy trace. The server seals, opens and analyses;
//! this module stores bytes and JSON it does not interpret.
//!
//! Guarantees:
//! - ingest is idempotent by `(tenant, id)`: the same id with the same content hash is a
//!   duplicate (nothing written), with a different one a per-item conflict;
//! - an item and the jobs that will process it commit in one transaction, so an item accepted
//!   is never left without its job (and a job never names a missing item);
//! - every state change bumps the item's `revision`, and a processing result or a re-encryption
//!   applies only at the revision it read (fencing): a retried or duplicated job attempt finds
//!   the revision moved on and changes nothing (exactly once by effect);
//! - every state change writes its history rows and audit records in the same transaction.

use std::collections::HashMap;

use jobs::Priority;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection as _, Row};

use crate::{Backend, Enqueued, NewJob, Operation, Store, StoreError, Table};

/// Items per multi-row insert statement (31 parameters a row).
const INSERT_CHUNK: usize = 200;
/// Most items one list page returns.
pub const MAX_FEEDBACK_PAGE: u32 = 500;
/// Most item ids one processing job names.
pub const FEEDBACK_ITEMS_PER_JOB: usize = 100;

/// Where an item is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    /// Stored, waiting for its processing job.
    Received,
    /// A fast-path result is stored; the full checks run in a job.
    Processing,
    /// Fully analysed.
    Processed,
    /// Fully analysed, and waiting for a person (research mode, or a risky item).
    NeedsReview,
    /// Its processing failed for good (the job used up its retries).
    Failed,
    /// Its text was erased.
    Purged,
}

impl FeedbackStatus {
    /// Every status.
    pub const ALL: [FeedbackStatus; 6] = [
        FeedbackStatus::Received,
        FeedbackStatus::Processing,
        FeedbackStatus::Processed,
        FeedbackStatus::NeedsReview,
        FeedbackStatus::Failed,
        FeedbackStatus::Purged,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::Received => "received",
            FeedbackStatus::Processing => "processing",
            FeedbackStatus::Processed => "processed",
            FeedbackStatus::NeedsReview => "needs_review",
            FeedbackStatus::Failed => "failed",
            FeedbackStatus::Purged => "purged",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<FeedbackStatus> {
        FeedbackStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a processing result may still be applied (the item awaits its full checks).
    pub fn awaits_processing(self) -> bool {
        matches!(self, FeedbackStatus::Received | FeedbackStatus::Processing)
    }
}

/// One event of an item's life, as history and audit log record it: `received`, `redacted`,
/// `scored`, `routed`, `processed`, `read_in_clear`, `purged`, `key_rotated`, `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    /// The event's name.
    pub event: &'static str,
    /// A small JSON object about it (counts, scores, key ids; never the item's text).
    pub detail: String,
    /// Who caused it: an API key id, `worker`, or `operator`.
    pub actor: String,
}

impl FeedbackEvent {
    /// An event with a detail object.
    pub fn new(event: &'static str, actor: &str, detail: serde_json::Value) -> FeedbackEvent {
        FeedbackEvent {
            event,
            detail: detail.to_string(),
            actor: actor.to_owned(),
        }
    }
}

/// What analysis found, as stored (JSON columns are written as given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackAnalysis {
    pub text_redacted: Option<String>,
    pub has_pii: bool,
    /// JSON array of findings.
    pub pii: Option<String>,
    pub sentiment: Option<f64>,
    /// JSON object.
    pub toxicity: Option<String>,
    pub alignment: Option<f64>,
    pub risk: Option<f64>,
    pub route: Option<String>,
    /// The violated principles' names.
    pub violations: Vec<String>,
    /// JSON: the policy trace.
    pub trace: Option<String>,
}

/// An item to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedbackItem {
    pub id: String,
    pub user_id: Option<String>,
    pub kind: String,
    pub channel: Option<String>,
    pub rating: Option<i64>,
    pub locale: Option<String>,
    pub region: Option<String>,
    /// JSON object text.
    pub metadata: Option<String>,
    pub occurred_ms: i64,
    pub tier: String,
    pub mode: String,
    /// Hex HMAC-SHA256 of the item as the client sent it, keyed by a server secret
    /// (idempotency; keyed so a stored hash cannot confirm a guessed text).
    pub content_hash: String,
    /// Base64 of the sealed original text, if the item has text.
    pub text_sealed: Option<String>,
    pub text_key_id: Option<String>,
    /// `Received` (queued tiers), or the status of an inline analysis.
    pub status: FeedbackStatus,
    /// The inline analysis (realtime tier, or production mode's fast path).
    pub analysis: Option<FeedbackAnalysis>,
    /// Its events at ingest, in order (received, and for an inline analysis redacted, scored,
    /// routed, processed).
    pub events: Vec<FeedbackEvent>,
}

/// What became of one item of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackInsertion {
    /// Stored now.
    Stored,
    /// The tenant already has this id with the same content: nothing written.
    Duplicate,
    /// The tenant already has this id with different content: nothing written.
    Conflict,
}

/// The jobs that process the stored items of an insert: one job per up to
/// [`FEEDBACK_ITEMS_PER_JOB`] items, payload `{"item_ids": [...]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackJobSpec<'a> {
    pub handler: &'a str,
    pub priority: Priority,
    pub max_attempts: u32,
    pub timeout_ms: u64,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRecord {
    pub id: String,
    pub user_id: Option<String>,
    pub kind: String,
    pub channel: Option<String>,
    pub rating: Option<i64>,
    pub locale: Option<String>,
    pub region: Option<String>,
    pub metadata: Option<String>,
    pub occurred_ms: i64,
    pub received_ms: i64,
    pub tier: String,
    pub mode: String,
    pub status: FeedbackStatus,
    pub revision: i64,
    pub content_hash: String,
    pub text_sealed: Option<String>,
    pub text_key_id: Option<String>,
    pub analysis: FeedbackAnalysis,
    pub attempts: i64,
    pub processed_ms: Option<i64>,
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackHistoryEntry {
    pub revision: i64,
    pub at_ms: i64,
    pub status: FeedbackStatus,
    pub event: String,
    /// JSON object text.
    #[serde(skip)]
    pub detail: String,
}

/// Which items a list shows, newest (`occurred_ms`) first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub status: Option<FeedbackStatus>,
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub region: Option<String>,
    pub user_id: Option<String>,
    pub min_alignment: Option<f64>,
    pub max_alignment: Option<f64>,
    pub has_pii: Option<bool>,
    /// Only items violating this principle.
    pub violation: Option<String>,
    /// Keyset cursor: the last item of the previous page, `(occurred_ms, id)`.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// A tenant's stored feedback configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFeedbackConfig {
    pub config: String,
    pub version: i64,
    pub updated_at_ms: i64,
}

/// An item sealed under a given key, for re-encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedText {
    pub id: String,
    pub revision: i64,
    pub text_sealed: String,
}

const ITEM_COLUMNS: &str = "id, user_id, kind, channel, rating, locale, region, metadata, \
    occurred_ms, received_ms, tier, mode, status, revision, content_hash, text_sealed, \
    text_key_id, text_redacted, has_pii, pii, sentiment, toxicity, alignment, risk, route, \
    violations, trace, attempts, processed_ms";

impl Store {
    /// Stores `items` of one tenant and, when `jobs` is given, the jobs that process the newly
    /// stored ones, in one transaction. The answer is per item, in order. An id repeated within
    /// the batch is stored once (later copies are duplicates or conflicts of the first).
    pub async fn insert_feedback(
        &self,
        tenant_id: &str,
        items: &[NewFeedbackItem],
        jobs: Option<FeedbackJobSpec<'_>>,
        now_ms: i64,
    ) -> Result<(Vec<FeedbackInsertion>, Vec<Enqueued>), StoreError> {
        self.insert_feedback_with(tenant_id, items, jobs, None, now_ms)
            .await
    }

    /// [`Store::insert_feedback`], and when `forward` is given, also the jobs that forward the
    /// newly stored items to a legacy endpoint (dual-write's outbox), in the same transaction:
    /// one job per up to [`FEEDBACK_ITEMS_PER_JOB`] items, payload `{"item_ids": [...]}`.
    /// Duplicates and conflicts get no job, so a re-sent item is never forwarded twice.
    pub async fn insert_feedback_with(
        &self,
        tenant_id: &str,
        items: &[NewFeedbackItem],
        jobs: Option<FeedbackJobSpec<'_>>,
        forward: Option<FeedbackJobSpec<'_>>,
        now_ms: i64,
    ) -> Result<(Vec<FeedbackInsertion>, Vec<Enqueued>), StoreError> {
        if items.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackItems)
            .await?;
        let mut tx = conn.begin().await?;
        let (outcomes, enqueued) = self
            .insert_feedback_in(&mut tx, tenant_id, items, jobs, forward, now_ms)
            .await?;
        tx.commit().await?;
        drop(turn);
        self.wake_enqueued(&enqueued);
        Ok((outcomes, enqueued))
    }

    /// [`Store::insert_feedback`] inside the caller's transaction (the caller holds the write
    /// turn, commits, and wakes the enqueued jobs' workers).
    pub(crate) async fn insert_feedback_in(
        &self,
        tx: &mut AnyConnection,
        tenant_id: &str,
        items: &[NewFeedbackItem],
        jobs: Option<FeedbackJobSpec<'_>>,
        forward: Option<FeedbackJobSpec<'_>>,
        now_ms: i64,
    ) -> Result<(Vec<FeedbackInsertion>, Vec<Enqueued>), StoreError> {
        let mut outcomes: Vec<Option<FeedbackInsertion>> = vec![None; items.len()];
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut unique: Vec<usize> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match first_of.get(item.id.as_str()) {
                Some(&first) => {
                    outcomes[i] = Some(if items[first].content_hash == item.content_hash {
                        FeedbackInsertion::Duplicate
                    } else {
                        FeedbackInsertion::Conflict
                    })
                }
                None => {
                    first_of.insert(&item.id, i);
                    unique.push(i);
                }
            }
        }
        let mut stored_ids: Vec<&str> = Vec::new();
        for chunk in unique.chunks(INSERT_CHUNK) {
            let inserted = insert_items(&mut *tx, self.backend, tenant_id, items, chunk, now_ms)
                .await
                .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
            let missing: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| !inserted.contains(items[i].id.as_str()))
                .collect();
            if !missing.is_empty() {
                let hashes =
                    content_hashes(&mut *tx, self.backend, tenant_id, items, &missing).await?;
                for i in missing {
                    let same = hashes.get(items[i].id.as_str()) == Some(&items[i].content_hash);
                    outcomes[i] = Some(if same {
                        FeedbackInsertion::Duplicate
                    } else {
                        FeedbackInsertion::Conflict
                    });
                }
            }
            for &i in chunk {
                if inserted.contains(items[i].id.as_str()) {
                    outcomes[i] = Some(FeedbackInsertion::Stored);
                    stored_ids.push(&items[i].id);
                }
            }
        }
        let stored: Vec<&NewFeedbackItem> = items
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Some(FeedbackInsertion::Stored))
            .map(|(item, _)| item)
            .collect();
        let history: Vec<HistoryRow<'_>> = stored
            .iter()
            .flat_map(|item| {
                item.events.iter().zip(0..).map(|(e, step)| HistoryRow {
                    item_id: &item.id,
                    revision: 1,
                    step,
                    at_ms: now_ms,
                    status: item.status,
                    event: e,
                })
            })
            .collect();
        insert_history(&mut *tx, self.backend, tenant_id, &history).await?;
        audit_in(&mut *tx, self.backend, tenant_id, &history).await?;
        let mut enqueued = Vec::new();
        for spec in [jobs, forward].into_iter().flatten() {
            let payloads: Vec<String> = stored_ids
                .chunks(FEEDBACK_ITEMS_PER_JOB)
                .map(|ids| serde_json::json!({ "item_ids": ids }).to_string())
                .collect();
            let new_jobs: Vec<NewJob<'_>> = payloads
                .iter()
                .map(|payload| NewJob {
                    handler: spec.handler,
                    payload,
                    priority: spec.priority,
                    run_at_ms: now_ms,
                    expires_at_ms: None,
                    max_attempts: spec.max_attempts,
                    timeout_ms: spec.timeout_ms,
                    idempotency_key: None,
                })
                .collect();
            enqueued.extend(
                self.enqueue_jobs_in(&mut *tx, tenant_id, &new_jobs, now_ms)
                    .await?,
            );
        }
        Ok((
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or(FeedbackInsertion::Conflict))
                .collect(),
            enqueued,
        ))
    }

    /// Applies a processing result to an item at `expected_revision` if it still awaits
    /// processing; returns whether it applied. A retried job attempt, or a second worker holding
    /// a lost lease, finds the revision moved on and changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_feedback_result(
        &self,
        tenant_id: &str,
        item_id: &str,
        expected_revision: i64,
        status: FeedbackStatus,
        analysis: &FeedbackAnalysis,
        events: &[FeedbackEvent],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::FeedbackItems)
            .await?;
        let mut tx = conn.begin().await?;
        let violations = violations_text(&analysis.violations);
        let changed = sqlx::query(
            "UPDATE feedback_items SET status = $1, revision = revision + 1,
                 text_redacted = $2, has_pii = $3, pii = $4, sentiment = $5, toxicity = $6,
                 alignment = $7, risk = $8, route = $9, violations = $10, trace = $11,
                 attempts = attempts + 1, processed_ms = $12
             WHERE tenant_id = $13 AND id = $14 AND revision = $15
               AND status IN ('received', 'processing')",
        )
        .bind(status.as_str())
        .bind(analysis.text_redacted.as_deref())
        .bind(i64::from(analysis.has_pii))
        .bind(analysis.pii.as_deref())
        .bind(analysis.sentiment)
        .bind(analysis.toxicity.as_deref())
        .bind(analysis.alignment)
        .bind(analysis.risk)
        .bind(analysis.route.as_deref())
        .bind(violations.as_deref())
        .bind(analysis.trace.as_deref())
        .bind(now_ms)
        .bind(tenant_id)
        .bind(item_id)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let rows: Vec<HistoryRow<'_>> = events
            .iter()
            .zip(0..)
            .map(|(e, step)| HistoryRow {
                item_id,
                revision: expected_revision + 1,
                step,
                at_ms: now_ms,
                status,
                event: e,
            })
            .collect();
        insert_history(&mut tx, self.backend, tenant_id, &rows).await?;
        audit_in(&mut tx, self.backend, tenant_id, &rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks an item that awaits processing as failed at `expected_revision` (its job used up
    /// its retries); returns whether it applied.
    pub async fn fail_feedback(
        &self,
        tenant_id: &str,
        item_id: &str,
        expected_revision: i64,
        event: &FeedbackEvent,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.change_status(
            tenant_id,
            item_id,
            Some(expected_revision),
            "status IN ('received', 'processing')",
            FeedbackStatus::Failed,
            event,
            now_ms,
        )
        .await
    }

    /// Erases an item's text (sealed and redacted), its findings and trace, keeping its
    /// scores and history; returns false when the tenant has no such item.
    pub async fn purge_feedback(
        &self,
        tenant_id: &str,
        item_id: &str,
        event: &FeedbackEvent,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.change_status(
            tenant_id,
            item_id,
            None,
            "status <> 'purged'",
            FeedbackStatus::Purged,
            event,
            now_ms,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn change_status(
        &self,
        tenant_id: &str,
        item_id: &str,
        expected_revision: Option<i64>,
        allowed: &str,
        status: FeedbackStatus,
        event: &FeedbackEvent,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::FeedbackItems)
            .await?;
        let mut tx = conn.begin().await?;
        let erase = if status == FeedbackStatus::Purged {
            ", text_sealed = NULL, text_key_id = NULL, text_redacted = NULL, pii = NULL, \
             trace = NULL, metadata = NULL"
        } else {
            ""
        };
        let revision: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE feedback_items SET status = $1, revision = revision + 1{erase}
             WHERE tenant_id = $2 AND id = $3 AND ($4 < 0 OR revision = $4) AND {allowed}
             RETURNING revision"
        ))
        .bind(status.as_str())
        .bind(tenant_id)
        .bind(item_id)
        .bind(expected_revision.unwrap_or(-1))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(revision) = revision else {
            return Ok(false);
        };
        let rows = [HistoryRow {
            item_id,
            revision,
            step: 0,
            at_ms: now_ms,
            status,
            event,
        }];
        insert_history(&mut tx, self.backend, tenant_id, &rows).await?;
        audit_in(&mut tx, self.backend, tenant_id, &rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records an event that changes no state (a clear-text read) in history and audit log.
    pub async fn record_feedback_event(
        &self,
        tenant_id: &str,
        item_id: &str,
        event: &FeedbackEvent,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::FeedbackHistory)
            .await?;
        let mut tx = conn.begin().await?;
        if !event_in(&mut tx, self.backend, tenant_id, item_id, event, now_ms).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One of the tenant's items; another tenant's item is `None`, like a missing one.
    pub async fn feedback_item(
        &self,
        tenant_id: &str,
        item_id: &str,
    ) -> Result<Option<FeedbackRecord>, StoreError> {
        if item_id.contains('\0') {
            return Ok(None);
        }
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM feedback_items WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(item_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| item_from_row(&row))
        .transpose()
    }

    /// The tenant's items among `ids` (missing ones left out), in no particular order.
    pub async fn feedback_items(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut p = Params::new(self.backend);
            let tenant = p.next();
            let list: Vec<String> = chunk.iter().map(|_| p.next()).collect();
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM feedback_items WHERE tenant_id = {tenant} AND id IN ({})",
                list.join(",")
            );
            let mut query = sqlx::query(&sql).bind(tenant_id);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *conn).await? {
                out.push(item_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// An item's history, oldest first.
    pub async fn feedback_history(
        &self,
        tenant_id: &str,
        item_id: &str,
    ) -> Result<Vec<FeedbackHistoryEntry>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackHistory)
            .await?;
        sqlx::query(
            "SELECT revision, at_ms, status, event, detail FROM feedback_history
             WHERE tenant_id = $1 AND item_id = $2 ORDER BY revision, step",
        )
        .bind(tenant_id)
        .bind(item_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(FeedbackHistoryEntry {
                revision: row.try_get(0)?,
                at_ms: row.try_get(1)?,
                status: status_of(&row.try_get::<String, _>(2)?)?,
                event: row.try_get(3)?,
                detail: row.try_get(4)?,
            })
        })
        .collect()
    }

    /// A page of the tenant's items matching `filter`, newest first; keyset-paginated by
    /// `(occurred_ms, id)`.
    pub async fn list_feedback(
        &self,
        tenant_id: &str,
        filter: &FeedbackFilter,
    ) -> Result<Vec<FeedbackRecord>, StoreError> {
        // No stored value holds NUL (ingest refuses it) and PostgreSQL cannot bind one: a filter
        // with NUL matches nothing.
        let texts = [
            filter.kind.as_deref(),
            filter.channel.as_deref(),
            filter.region.as_deref(),
            filter.user_id.as_deref(),
            filter.violation.as_deref(),
            filter.after.as_ref().map(|(_, id)| id.as_str()),
        ];
        if texts.iter().flatten().any(|t| t.contains('\0')) {
            return Ok(Vec::new());
        }
        let mut p = Params::new(self.backend);
        let mut clauses = vec![format!("tenant_id = {}", p.next())];
        let mut binds: Vec<Bind> = vec![Bind::Text(tenant_id.to_owned())];
        let mut push = |clause: &str, bind: Bind, p: &mut Params| {
            clauses.push(clause.replace('?', &p.next()));
            binds.push(bind);
        };
        if let Some(from) = filter.from_ms {
            push("occurred_ms >= ?", Bind::Int(from), &mut p);
        }
        if let Some(to) = filter.to_ms {
            push("occurred_ms < ?", Bind::Int(to), &mut p);
        }
        if let Some(status) = filter.status {
            push("status = ?", Bind::Text(status.as_str().to_owned()), &mut p);
        }
        for (column, value) in [
            ("kind", &filter.kind),
            ("channel", &filter.channel),
            ("region", &filter.region),
            ("user_id", &filter.user_id),
        ] {
            if let Some(value) = value {
                push(&format!("{column} = ?"), Bind::Text(value.clone()), &mut p);
            }
        }
        if let Some(min) = filter.min_alignment {
            push("alignment >= ?", Bind::Float(min), &mut p);
        }
        if let Some(max) = filter.max_alignment {
            push("alignment <= ?", Bind::Float(max), &mut p);
        }
        if let Some(has) = filter.has_pii {
            push("has_pii = ?", Bind::Int(i64::from(has)), &mut p);
        }
        if let Some(principle) = &filter.violation {
            push(
                "violations LIKE ?",
                Bind::Text(format!("%,{principle},%")),
                &mut p,
            );
        }
        if let Some((time, id)) = &filter.after {
            let t1 = p.next();
            let t2 = p.next();
            let i = p.next();
            clauses.push(format!(
                "(occurred_ms < {t1} OR (occurred_ms = {t2} AND id < {i}))"
            ));
            binds.push(Bind::Int(*time));
            binds.push(Bind::Int(*time));
            binds.push(Bind::Text(id.clone()));
        }
        let limit = filter.limit.clamp(1, MAX_FEEDBACK_PAGE);
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM feedback_items WHERE {} \
             ORDER BY occurred_ms DESC, id DESC LIMIT {limit}",
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
                Bind::Float(f) => query.bind(f),
            };
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FeedbackItems)
            .await?;
        query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(item_from_row)
            .collect()
    }

    /// Up to `limit` of the tenant's items whose text is sealed under a key other than
    /// `current_key_id`, for re-encryption, in id order.
    pub async fn feedback_sealed_under_other_keys(
        &self,
        tenant_id: &str,
        current_key_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, SealedText)>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        sqlx::query(&format!(
            "SELECT text_key_id, id, revision, text_sealed FROM feedback_items
             WHERE tenant_id = $1 AND text_key_id IS NOT NULL AND text_key_id <> $2
             ORDER BY id LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .bind(tenant_id)
        .bind(current_key_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                SealedText {
                    id: row.try_get(1)?,
                    revision: row.try_get(2)?,
                    text_sealed: row.try_get(3)?,
                },
            ))
        })
        .collect()
    }

    /// Up to `limit` of the tenant's items that occurred before `before_ms` and are not purged
    /// yet, oldest first (by `(occurred_ms, id)`): the retention purge's next batch, with each
    /// item's status.
    pub async fn feedback_past_retention(
        &self,
        tenant_id: &str,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(String, FeedbackStatus)>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        sqlx::query(&format!(
            "SELECT id, status FROM feedback_items
             WHERE tenant_id = $1 AND occurred_ms < $2 AND status <> 'purged'
             ORDER BY occurred_ms, id LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .bind(tenant_id)
        .bind(before_ms)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, status_of(&row.try_get::<String, _>(1)?)?)))
        .collect()
    }

    /// How many of the tenant's items are sealed under `key_id`.
    pub async fn count_feedback_sealed_with(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackItems)
            .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM feedback_items WHERE tenant_id = $1 AND text_key_id = $2",
        )
        .bind(tenant_id)
        .bind(key_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Replaces an item's sealed text with one sealed under `new_key_id`, only while it is
    /// still sealed under `old_key_id` (fencing: a concurrent purge or another re-encryption
    /// wins). The revision does not change: re-encryption is not a state change of the item,
    /// so a processing job that read the item still applies. Returns whether it applied.
    pub async fn reseal_feedback(
        &self,
        tenant_id: &str,
        item_id: &str,
        old_key_id: &str,
        new_key_id: &str,
        new_sealed: &str,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::FeedbackItems)
            .await?;
        let changed = sqlx::query(
            "UPDATE feedback_items SET text_sealed = $1, text_key_id = $2
             WHERE tenant_id = $3 AND id = $4 AND text_key_id = $5",
        )
        .bind(new_sealed)
        .bind(new_key_id)
        .bind(tenant_id)
        .bind(item_id)
        .bind(old_key_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// The tenant's feedback configuration, if one was stored.
    pub async fn feedback_config(
        &self,
        tenant_id: &str,
    ) -> Result<Option<StoredFeedbackConfig>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::FeedbackConfigs)
            .await?;
        sqlx::query(
            "SELECT config, version, updated_at_ms FROM feedback_configs WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| {
            Ok(StoredFeedbackConfig {
                config: row.try_get(0)?,
                version: row.try_get(1)?,
                updated_at_ms: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Stores the tenant's feedback configuration (already validated by the caller), replacing
    /// the previous one; its version counts the changes from 1.
    pub async fn put_feedback_config(
        &self,
        tenant_id: &str,
        config: &str,
        now_ms: i64,
    ) -> Result<StoredFeedbackConfig, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::FeedbackConfigs)
            .await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO feedback_configs (tenant_id, config, version, updated_at_ms)
             VALUES ($1, $2, 1, $3)
             ON CONFLICT (tenant_id) DO UPDATE
                 SET config = excluded.config, version = feedback_configs.version + 1,
                     updated_at_ms = excluded.updated_at_ms
             RETURNING version",
        )
        .bind(tenant_id)
        .bind(config)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
        Ok(StoredFeedbackConfig {
            config: config.to_owned(),
            version,
            updated_at_ms: now_ms,
        })
    }
}

enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

/// `$N` on PostgreSQL, `?` on SQLite, numbered in text order (see `jobs.rs`).
struct Params {
    backend: Backend,
    count: usize,
}

impl Params {
    fn new(backend: Backend) -> Params {
        Params { backend, count: 0 }
    }

    fn next(&mut self) -> String {
        self.count += 1;
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", self.count),
        }
    }
}

struct HistoryRow<'a> {
    item_id: &'a str,
    revision: i64,
    step: i64,
    at_ms: i64,
    status: FeedbackStatus,
    event: &'a FeedbackEvent,
}

fn violations_text(violations: &[String]) -> Option<String> {
    (!violations.is_empty()).then(|| format!(",{},", violations.join(",")))
}

/// Inserts the chunk's items; returns the ids actually inserted (the others exist already).
async fn insert_items(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    items: &[NewFeedbackItem],
    chunk: &[usize],
    now_ms: i64,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    const COLUMNS: usize = 30;
    let mut p = Params::new(backend);
    let values: Vec<String> = chunk
        .iter()
        .map(|_| {
            let mut row: Vec<String> = (0..COLUMNS).map(|_| p.next()).collect();
            // Scores go as text: over sqlx's Any driver a NULL float in one row of a cached
            // multi-row statement and a value in another can disagree on PostgreSQL's binary
            // parameter format.
            for column in [21, 23, 24] {
                row[column] = format!("CAST({} AS DOUBLE PRECISION)", row[column]);
            }
            format!("({})", row.join(","))
        })
        .collect();
    let sql = format!(
        "INSERT INTO feedback_items (tenant_id, id, user_id, kind, channel, rating, locale,
             region, metadata, occurred_ms, received_ms, tier, mode, status, revision,
             content_hash, text_sealed, text_key_id, text_redacted, has_pii, pii, sentiment,
             toxicity, alignment, risk, route, violations, trace, attempts, processed_ms)
         VALUES {}
         ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id",
        values.join(",")
    );
    let mut query = sqlx::query(&sql);
    let empty = FeedbackAnalysis::default();
    for &i in chunk {
        let item = &items[i];
        let analysis = item.analysis.as_ref().unwrap_or(&empty);
        let processed = item.analysis.is_some() && !item.status.awaits_processing();
        query = query
            .bind(tenant_id)
            .bind(item.id.as_str())
            .bind(item.user_id.as_deref())
            .bind(item.kind.as_str())
            .bind(item.channel.as_deref())
            .bind(item.rating)
            .bind(item.locale.as_deref())
            .bind(item.region.as_deref())
            .bind(item.metadata.as_deref())
            .bind(item.occurred_ms)
            .bind(now_ms)
            .bind(item.tier.as_str())
            .bind(item.mode.as_str())
            .bind(item.status.as_str())
            .bind(1_i64)
            .bind(item.content_hash.as_str())
            .bind(item.text_sealed.as_deref())
            .bind(item.text_key_id.as_deref())
            .bind(analysis.text_redacted.as_deref())
            .bind(i64::from(analysis.has_pii))
            .bind(analysis.pii.as_deref())
            .bind(analysis.sentiment.map(|v| v.to_string()))
            .bind(analysis.toxicity.as_deref())
            .bind(analysis.alignment.map(|v| v.to_string()))
            .bind(analysis.risk.map(|v| v.to_string()))
            .bind(analysis.route.as_deref())
            .bind(violations_text(&analysis.violations))
            .bind(analysis.trace.as_deref())
            .bind(i64::from(item.analysis.is_some()))
            .bind(processed.then_some(now_ms));
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

/// Records `event` of an item in its history and the audit log inside the caller's
/// transaction, after the item's current revision's last event; false when the tenant has no
/// such item.
pub(crate) async fn event_in(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    item_id: &str,
    event: &FeedbackEvent,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // The event goes after the revision's last one: the writer turn (SQLite) or this row
    // lock (PostgreSQL) keeps two reads from taking the same step.
    sqlx::query("UPDATE feedback_items SET revision = revision WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(item_id)
        .execute(&mut *conn)
        .await?;
    let row: Option<AnyRow> =
        sqlx::query("SELECT revision, status FROM feedback_items WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(item_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let revision: i64 = row.try_get(0)?;
    let status = status_of(&row.try_get::<String, _>(1)?)?;
    let step: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(step), -1) + 1 FROM feedback_history
             WHERE tenant_id = $1 AND item_id = $2 AND revision = $3",
    )
    .bind(tenant_id)
    .bind(item_id)
    .bind(revision)
    .fetch_one(&mut *conn)
    .await?;
    let rows = [HistoryRow {
        item_id,
        revision,
        step,
        at_ms: now_ms,
        status,
        event,
    }];
    insert_history(conn, backend, tenant_id, &rows).await?;
    audit_in(conn, backend, tenant_id, &rows).await?;
    Ok(true)
}

async fn content_hashes(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    items: &[NewFeedbackItem],
    which: &[usize],
) -> Result<HashMap<String, String>, StoreError> {
    let mut p = Params::new(backend);
    let tenant = p.next();
    let list: Vec<String> = which.iter().map(|_| p.next()).collect();
    let sql = format!(
        "SELECT id, content_hash FROM feedback_items WHERE tenant_id = {tenant} AND id IN ({})",
        list.join(",")
    );
    let mut query = sqlx::query(&sql).bind(tenant_id);
    for &i in which {
        query = query.bind(items[i].id.as_str());
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

async fn insert_history(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    rows: &[HistoryRow<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK * 4) {
        let mut p = Params::new(backend);
        let values: Vec<String> = chunk
            .iter()
            .map(|_| {
                let row: Vec<String> = (0..8).map(|_| p.next()).collect();
                format!("({})", row.join(","))
            })
            .collect();
        let sql = format!(
            "INSERT INTO feedback_history (tenant_id, item_id, revision, step, at_ms, status, event, detail)
             VALUES {}",
            values.join(",")
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(tenant_id)
                .bind(row.item_id)
                .bind(row.revision)
                .bind(row.step)
                .bind(row.at_ms)
                .bind(row.status.as_str())
                .bind(row.event.event)
                .bind(row.event.detail.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends one audit record per history row to the tenant's tamper-evident log inside the
/// caller's transaction, so a state change and its audit record commit together (or neither
/// does). The record holds the event, actor, item id and the SHA-256 of a small detail object
/// (the item's revision and status and the event's detail: counts, scores, key ids), never
/// content.
async fn audit_in(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    rows: &[HistoryRow<'_>],
) -> Result<(), StoreError> {
    let records = rows
        .iter()
        .map(|row| {
            let event: audit::Event =
                row.event
                    .event
                    .parse()
                    .map_err(|e: audit::ParseEventError| StoreError::Invalid {
                        field: "event",
                        reason: e.to_string(),
                    })?;
            let detail: serde_json::Value =
                serde_json::from_str(&row.event.detail).unwrap_or(serde_json::Value::Null);
            Ok(crate::NewAuditRecord::new(
                row.at_ms,
                row.item_id,
                event,
                row.event.actor.as_str(),
                &serde_json::json!({
                    "revision": row.revision,
                    "status": row.status.as_str(),
                    "detail": detail,
                }),
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    crate::audit::append_audit_in(conn, backend, tenant_id, &records).await?;
    Ok(())
}

fn status_of(name: &str) -> Result<FeedbackStatus, StoreError> {
    FeedbackStatus::parse(name).ok_or_else(|| StoreError::Corrupt {
        table: "feedback_items",
        reason: format!("unknown status '{name}'"),
    })
}

fn item_from_row(row: &AnyRow) -> Result<FeedbackRecord, StoreError> {
    let violations: Option<String> = row.try_get(25)?;
    Ok(FeedbackRecord {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        channel: row.try_get(3)?,
        rating: row.try_get(4)?,
        locale: row.try_get(5)?,
        region: row.try_get(6)?,
        metadata: row.try_get(7)?,
        occurred_ms: row.try_get(8)?,
        received_ms: row.try_get(9)?,
        tier: row.try_get(10)?,
        mode: row.try_get(11)?,
        status: status_of(&row.try_get::<String, _>(12)?)?,
        revision: row.try_get(13)?,
        content_hash: row.try_get(14)?,
        text_sealed: row.try_get(15)?,
        text_key_id: row.try_get(16)?,
        analysis: FeedbackAnalysis {
            text_redacted: row.try_get(17)?,
            has_pii: row.try_get::<i64, _>(18)? != 0,
            pii: row.try_get(19)?,
            sentiment: row.try_get(20)?,
            toxicity: row.try_get(21)?,
            alignment: row.try_get(22)?,
            risk: row.try_get(23)?,
            route: row.try_get(24)?,
            violations: violations
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            trace: row.try_get(26)?,
        },
        attempts: row.try_get(27)?,
        processed_ms: row.try_get(28)?,
    })
}
