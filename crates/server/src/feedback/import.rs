//! Importing feedback from a legacy system, and reconciling signalbox's items with a legacy
//! export (issue 20). The CLI (`signalbox feedback import`, `signalbox feedback reconcile`)
//! reads the file and maps its rows with [`::feedback::import::Mapping`]; this service stores a
//! batch of mapped rows and compares an export with the stored items.
//!
//! An imported item goes the realtime path's way, in the importing process: its text is sealed,
//! it is fully analysed with the tenant's engine, and it is stored with its analysis, history
//! and audit records, in one transaction with the batch's rejects and the import's checkpoint.
//! No job is enqueued: nothing is left to process, and an imported item is never forwarded to
//! the legacy system it came from (dual-write hooks the HTTP ingest path only).

use std::collections::{HashMap, HashSet};

use ::feedback::import::{sha256_hex, MappedRow, RowError};
use serde::Serialize;
use store::{
    FeedbackEvent, FeedbackFilter, FeedbackStatus, ImportBatchOutcome, ImportCheckpoint,
    NewFeedbackItem,
};

use super::{
    analysis_of, outcome_events, status_after, FeedbackError, FeedbackService, Item, Route, Tier,
};
use crate::state::AppState;

/// The actor of an import's history and audit records.
pub const IMPORT_ACTOR: &str = "import";
/// The tier imported items are recorded under (they are analysed by the importer, so no queue
/// is involved; `batch` says they arrived in bulk).
pub const IMPORT_TIER: Tier = Tier::Batch;

/// One valid row of a batch: its source line and the mapped item.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub mapped: MappedRow,
}

/// One item of a legacy export, as reconcile compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    pub line: u64,
    pub kind: String,
    pub rating: Option<u8>,
    pub user_id: String,
    pub occurred_at_ms: i64,
    /// Hex SHA-256 of the text, if the item has one.
    pub text_sha256: Option<String>,
}

impl ExportItem {
    /// The comparable fields of a mapped row.
    pub fn of(line: u64, item: &::feedback::item::FeedbackItem) -> ExportItem {
        ExportItem {
            line,
            kind: item.kind.as_str().to_owned(),
            rating: item.rating,
            user_id: item.user_id.clone(),
            occurred_at_ms: item.occurred_at_ms,
            text_sha256: item.text.as_deref().map(|t| sha256_hex(t.as_bytes())),
        }
    }
}

/// One difference between an export and signalbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// In the export, not in signalbox.
    Missing { id: String, line: u64 },
    /// In signalbox (within the compared time range), not in the export.
    Extra { id: String, occurred_at_ms: i64 },
    /// In both, with a field that differs (`text` compares SHA-256 digests, never texts).
    Different {
        id: String,
        line: u64,
        field: &'static str,
        export: serde_json::Value,
        signalbox: serde_json::Value,
    },
    /// In both, but signalbox's text was purged (by request or retention): its text cannot be
    /// compared, which is expected rather than a difference.
    Purged { id: String, line: u64 },
    /// Only in signalbox, and purged there: its content was erased, so a legacy side that
    /// never got it (dual-write does not forward purged items) or deleted it agrees.
    PurgedHereOnly { id: String, occurred_at_ms: i64 },
}

/// Counts of a reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileSummary {
    /// Export items compared.
    pub compared: u64,
    pub missing: u64,
    pub extra: u64,
    /// Items with at least one differing field.
    pub different: u64,
    pub purged: u64,
}

impl ReconcileSummary {
    /// Whether export and signalbox agree (purged items do not count as disagreement).
    pub fn agrees(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0
    }
}

/// Items read per page while walking the tenant's items.
const RECONCILE_PAGE: u32 = 500;

impl FeedbackService {
    /// Stores one batch of import `import_id`: seals and fully analyses each row's item with
    /// the tenant's engine, then commits items (with their history and audit records), the
    /// batch's `rejects` and the checkpoint move `from` → `to` in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn import_batch(
        &self,
        state: &AppState,
        tenant_id: &str,
        import_id: &str,
        rows: Vec<ImportRow>,
        rejects: &[RowError],
        from: ImportCheckpoint,
        to: ImportCheckpoint,
    ) -> Result<ImportBatchOutcome, FeedbackError> {
        let now_ms = crate::jobs::now_ms();
        let engine = self.engine(state, tenant_id).await?;
        let mode = engine.mode();
        let mut prepared = Vec::with_capacity(rows.len());
        for row in rows {
            let sealed = match &row.mapped.item.text {
                Some(text) => Some(self.seal(tenant_id, &row.mapped.item.id, text).await?),
                None => None,
            };
            let canonical = serde_json::Value::Object(row.mapped.raw.clone()).to_string();
            let hash = self.hash_key.content_hash(tenant_id, &canonical);
            prepared.push((row, sealed, hash));
        }
        // The full checks, off the runtime's threads (CPU-bound).
        let items: Vec<Item> = prepared
            .iter()
            .map(|(row, _, _)| item_of_domain(&row.mapped.item))
            .collect();
        let analyse = engine.clone();
        let outcomes = tokio::task::spawn_blocking(move || {
            items
                .iter()
                .map(|item| analyse.analyze(item))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| {
            FeedbackError::Store(store::StoreError::Corrupt {
                table: "feedback_items",
                reason: "import analysis panicked".to_owned(),
            })
        })?;
        let news: Vec<NewFeedbackItem> = prepared
            .into_iter()
            .zip(outcomes)
            .map(|((row, sealed, hash), outcome)| {
                let item = &row.mapped.item;
                let status = status_after(&outcome, Route::Full);
                let mut events = vec![FeedbackEvent::new(
                    "received",
                    IMPORT_ACTOR,
                    serde_json::json!({
                        "tier": IMPORT_TIER.as_str(),
                        "mode": mode.as_str(),
                        "import_id": import_id,
                        "import_line": row.line,
                    }),
                )];
                events.extend(outcome_events(&outcome, Route::Full, status, IMPORT_ACTOR));
                NewFeedbackItem {
                    id: item.id.clone(),
                    user_id: Some(item.user_id.clone()),
                    kind: item.kind.as_str().to_owned(),
                    channel: Some(item.channel.as_str().to_owned()),
                    rating: item.rating.map(i64::from),
                    locale: item.locale.clone(),
                    region: item.region.clone(),
                    metadata: (!item.metadata.is_empty())
                        .then(|| serde_json::Value::Object(item.metadata.clone()).to_string()),
                    occurred_ms: item.occurred_at_ms,
                    tier: IMPORT_TIER.as_str().to_owned(),
                    mode: mode.as_str().to_owned(),
                    content_hash: hash,
                    text_sealed: sealed.as_ref().map(|s| s.sealed.clone()),
                    text_key_id: sealed.as_ref().map(|s| s.key_id.clone()),
                    status,
                    analysis: Some(analysis_of(&outcome, Route::Full)),
                    events,
                }
            })
            .collect();
        let rejects: Vec<(i64, String, String)> = rejects
            .iter()
            .map(|r| {
                (
                    i64::try_from(r.line).unwrap_or(i64::MAX),
                    r.field.clone(),
                    r.reason.clone(),
                )
            })
            .collect();
        Ok(state
            .store()
            .store_feedback_import_batch(tenant_id, import_id, &news, &rejects, from, to, now_ms)
            .await?)
    }

    /// Compares the tenant's items with a legacy export (id → item): every export item is
    /// looked up (`missing`, `different` per field, `purged`); a stored item absent from the
    /// export is `extra` when it occurred within `range` (inclusive Unix ms; `None`: any time),
    /// or `purged_here_only` when it was purged (its content no longer exists to compare).
    /// Texts are compared by SHA-256 of the opened sealed text. Differences come in the order
    /// found: stored items newest first, then the missing ones by line.
    pub async fn reconcile(
        &self,
        state: &AppState,
        tenant_id: &str,
        export: &HashMap<String, ExportItem>,
        range: Option<(i64, i64)>,
    ) -> Result<(ReconcileSummary, Vec<Difference>), FeedbackError> {
        let mut summary = ReconcileSummary::default();
        let mut differences = Vec::new();
        let mut seen: HashSet<String> = HashSet::with_capacity(export.len());
        let mut filter = FeedbackFilter {
            limit: RECONCILE_PAGE,
            ..FeedbackFilter::default()
        };
        loop {
            let page = state.store().list_feedback(tenant_id, &filter).await?;
            let last = page.last().map(|r| (r.occurred_ms, r.id.clone()));
            for record in page {
                let Some(want) = export.get(&record.id) else {
                    if range.is_none_or(|(from, to)| (from..=to).contains(&record.occurred_ms)) {
                        if record.status == FeedbackStatus::Purged {
                            summary.purged += 1;
                            differences.push(Difference::PurgedHereOnly {
                                id: record.id,
                                occurred_at_ms: record.occurred_ms,
                            });
                            continue;
                        }
                        summary.extra += 1;
                        differences.push(Difference::Extra {
                            id: record.id,
                            occurred_at_ms: record.occurred_ms,
                        });
                    }
                    continue;
                };
                seen.insert(record.id.clone());
                summary.compared += 1;
                let mut fields: Vec<(&'static str, serde_json::Value, serde_json::Value)> =
                    Vec::new();
                if want.kind != record.kind {
                    fields.push(("type", want.kind.clone().into(), record.kind.clone().into()));
                }
                let held_rating = record.rating.and_then(|r| u8::try_from(r).ok());
                if want.rating != held_rating {
                    fields.push(("rating", want.rating.into(), record.rating.into()));
                }
                if Some(&want.user_id) != record.user_id.as_ref() {
                    fields.push((
                        "user_id",
                        want.user_id.clone().into(),
                        record.user_id.clone().into(),
                    ));
                }
                if want.occurred_at_ms != record.occurred_ms {
                    fields.push((
                        "occurred_at",
                        want.occurred_at_ms.into(),
                        record.occurred_ms.into(),
                    ));
                }
                if record.status == FeedbackStatus::Purged {
                    summary.purged += 1;
                    differences.push(Difference::Purged {
                        id: record.id.clone(),
                        line: want.line,
                    });
                } else {
                    let held_text = match &record.text_sealed {
                        Some(sealed) => Some(sha256_hex(
                            self.open(tenant_id, &record.id, sealed).await?.as_bytes(),
                        )),
                        None => None,
                    };
                    if want.text_sha256 != held_text {
                        fields.push(("text", want.text_sha256.clone().into(), held_text.into()));
                    }
                }
                if !fields.is_empty() {
                    summary.different += 1;
                }
                for (field, export_value, held) in fields {
                    differences.push(Difference::Different {
                        id: record.id.clone(),
                        line: want.line,
                        field,
                        export: export_value,
                        signalbox: held,
                    });
                }
            }
            match last {
                Some(after) => filter.after = Some(after),
                None => break,
            }
        }
        let mut missing: Vec<(&String, &ExportItem)> = export
            .iter()
            .filter(|(id, _)| !seen.contains(*id))
            .collect();
        missing.sort_by_key(|(_, item)| item.line);
        summary.missing = missing.len() as u64;
        differences.extend(missing.into_iter().map(|(id, item)| Difference::Missing {
            id: id.clone(),
            line: item.line,
        }));
        Ok((summary, differences))
    }
}

/// The engine's item of a validated domain item.
fn item_of_domain(item: &::feedback::item::FeedbackItem) -> Item {
    Item {
        id: item.id.clone(),
        user_id: item.user_id.clone(),
        kind: item.kind.as_str().to_owned(),
        channel: item.channel.as_str().to_owned(),
        rating: item.rating,
        text: item.text.clone(),
        locale: item.locale.clone(),
        region: item.region.clone(),
        metadata: item.metadata.clone(),
        occurred_at_ms: item.occurred_at_ms,
    }
}
