//! Interactions (the weber engine's input history), profile updates derived from them, and the
//! per-event calculation audit. Every query is keyed by tenant, except the operator-level
//! reconciliation and metrics reads, whose names say so.
//!
//! An interaction is committed once: `(tenant_id, event_id)` is unique, and a repeated event id
//! is reported as a duplicate and changes nothing. Its `seq` is the arrival order, which breaks
//! ties between events with equal times (so equal-time events keep their input order).

use std::collections::HashMap;

use sqlx::{Connection as _, Row};

use crate::{Operation, Store, StoreError, Table};

/// Rows per multi-row INSERT: 13 parameters each stays far below both databases' limits.
const INSERT_CHUNK: usize = 400;
/// Users per windowed history query (each user is one `LIMIT` subquery of the statement).
const WINDOW_CHUNK: usize = 100;

/// An interaction to store, already validated, with its sentiment already derived.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    pub event_id: String,
    pub user_id: String,
    pub event_time_ms: i64,
    /// In `[-1, 1]`: what the profile is computed from.
    pub sentiment: f64,
    pub rating: Option<f64>,
    pub text: Option<String>,
    pub item_id: Option<String>,
    pub verified_purchase: Option<bool>,
    pub helpful_votes: Option<i64>,
    pub channel: Option<String>,
}

/// What became of one [`NewInteraction`] passed to [`Store::insert_interactions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// Newly stored, with this arrival sequence number.
    Stored { seq: i64 },
    /// The tenant already had this event id (or it appeared earlier in the same batch): nothing
    /// was written.
    Duplicate,
}

/// One stored event as the profile computation needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredEvent {
    pub event_time_ms: i64,
    pub seq: i64,
    pub sentiment: f64,
}

/// A user's most recent events (oldest first, at most the requested window) and history totals.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionWindow {
    pub user_id: String,
    /// The last `window` events in `(event_time_ms, seq)` order.
    pub events: Vec<StoredEvent>,
    /// Every stored event of the user.
    pub total: i64,
    /// The highest `seq` among all the user's events.
    pub max_seq: i64,
}

/// One profile recalculation: the new profile, the highest event sequence it includes, and the
/// audit row describing the newest event of its window.
#[derive(Debug, Clone, PartialEq)]
pub struct WeberUpdate {
    pub tenant_id: String,
    pub profile: crate::WeberProfileRecord,
    /// Highest `seq` the profile includes; an update never replaces a profile with a higher one.
    pub applied_seq: i64,
    pub calculation: Option<CalculationRecord>,
}

/// A row of the calculation audit (`weber_calculations`): the newest event's ratio against its
/// baseline, and the profile that resulted.
#[derive(Debug, Clone, PartialEq)]
pub struct CalculationRecord {
    pub event_seq: i64,
    /// 1-based position of the event in the user's history.
    pub review_sequence: i64,
    pub sentiment_value: f64,
    pub baseline_sentiment: f64,
    pub weber_ratio: f64,
    /// What caused the recalculation: `event`, `rebuild` or `manual`.
    pub cause: &'static str,
}

/// A stored audit row, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCalculation {
    /// The row's id: increasing in the order rows were written, the audit's paging cursor.
    pub id: i64,
    pub event_seq: i64,
    pub review_sequence: i64,
    pub sentiment_value: f64,
    pub baseline_sentiment: f64,
    pub weber_ratio: f64,
    pub weber_constant: f64,
    pub calculation_confidence: f64,
    pub sensitivity_segment: String,
    pub cause: String,
    pub calculated_at_ms: i64,
}

impl Store {
    /// Stores the tenant's new interactions in one transaction and reports, per input in order,
    /// whether it was stored (with its sequence number) or was a duplicate event id. When this
    /// returns `Ok`, every stored interaction is committed.
    pub async fn insert_interactions(
        &self,
        tenant_id: &str,
        events: &[NewInteraction],
        received_at_ms: i64,
    ) -> Result<Vec<Insertion>, StoreError> {
        let mut outcome = vec![Insertion::Duplicate; events.len()];
        // The first occurrence of an id in the batch is the one stored, like a later repeat.
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(events.len());
        let mut fresh = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            validate_interaction(e)?;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                first.entry(e.event_id.as_str())
            {
                slot.insert(i);
                fresh.push(i);
            }
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Insert, Table::Interactions).await?;
        let mut tx = conn.begin().await?;
        for chunk in fresh.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO interactions (tenant_id, event_id, user_id, event_time_ms, sentiment, \
                 rating, review_text, item_id, verified_purchase, helpful_votes, channel, \
                 received_at_ms) VALUES {} ON CONFLICT (tenant_id, event_id) DO NOTHING \
                 RETURNING seq, event_id",
                crate::weber::values_list(chunk.len(), 12, 1)
            );
            // `rating` is an `Option<f64>`.
            let mut query = crate::weber::nullable_float_query(&sql);
            for &i in chunk {
                let e = &events[i];
                query = query
                    .bind(tenant_id)
                    .bind(&e.event_id)
                    .bind(&e.user_id)
                    .bind(e.event_time_ms)
                    .bind(e.sentiment)
                    .bind(e.rating)
                    .bind(e.text.as_deref())
                    .bind(e.item_id.as_deref())
                    .bind(e.verified_purchase)
                    .bind(e.helpful_votes)
                    .bind(e.channel.as_deref())
                    .bind(received_at_ms);
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
            for row in rows {
                let seq: i64 = row.try_get(0)?;
                let event_id: String = row.try_get(1)?;
                let index =
                    first
                        .get(event_id.as_str())
                        .copied()
                        .ok_or_else(|| StoreError::Corrupt {
                            table: "interactions",
                            reason: format!(
                                "insert returned an event id not in the batch: {event_id}"
                            ),
                        })?;
                outcome[index] = Insertion::Stored { seq };
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// For each given user of the tenant who has stored interactions: the last `window` events
    /// in `(event_time_ms, seq)` order, the total count and the highest sequence number. Users
    /// without interactions are absent from the result; the result is in user id order.
    pub async fn interaction_windows(
        &self,
        tenant_id: &str,
        user_ids: &[String],
        window: u32,
    ) -> Result<Vec<InteractionWindow>, StoreError> {
        let mut ids: Vec<&String> = user_ids.iter().collect();
        ids.sort();
        ids.dedup();
        let mut out: Vec<InteractionWindow> = Vec::with_capacity(ids.len());
        let mut conn = self.acquire(Operation::Select, Table::Interactions).await?;
        for chunk in ids.chunks(WINDOW_CHUNK) {
            // One statement, so the windows and the totals come from one snapshot. Each user's
            // window is its own `ORDER BY … LIMIT`, which both databases answer by walking the
            // (tenant_id, user_id, event_time_ms, seq) index backwards: O(W) per user however
            // long the history. The totals are a count over the same index.
            let users: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let mut parts: Vec<String> = users
                .iter()
                .map(|u| {
                    format!(
                        "SELECT * FROM (SELECT user_id, event_time_ms, seq, sentiment, 0 AS kind \
                         FROM interactions WHERE tenant_id = $1 AND user_id = {u} \
                         ORDER BY event_time_ms DESC, seq DESC LIMIT $2) w"
                    )
                })
                .collect();
            parts.push(format!(
                "SELECT user_id, COUNT(*), MAX(seq), CAST(0 AS DOUBLE PRECISION), 1 \
                 FROM interactions WHERE tenant_id = $1 AND user_id IN ({}) GROUP BY user_id",
                users.join(",")
            ));
            let sql = parts.join(" UNION ALL ");
            let mut query = sqlx::query(&sql).bind(tenant_id).bind(i64::from(window));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
            let mut events: HashMap<String, Vec<StoredEvent>> = HashMap::new();
            for row in query.fetch_all(&mut *conn).await? {
                let user_id: String = row.try_get(0)?;
                let kind: i32 = row.try_get(4)?;
                if kind == 1 {
                    totals.insert(user_id, (row.try_get(1)?, row.try_get(2)?));
                } else {
                    events.entry(user_id).or_default().push(StoredEvent {
                        event_time_ms: row.try_get(1)?,
                        seq: row.try_get(2)?,
                        sentiment: row.try_get(3)?,
                    });
                }
            }
            for id in chunk {
                let (Some(mut recent), Some(&(total, max_seq))) =
                    (events.remove(id.as_str()), totals.get(id.as_str()))
                else {
                    continue;
                };
                // Read newest first; the engine wants oldest first.
                recent.reverse();
                out.push(InteractionWindow {
                    user_id: (*id).clone(),
                    events: recent,
                    total,
                    max_seq,
                });
            }
        }
        Ok(out)
    }

    /// A page of the tenant's users with stored interactions, in user id order, after
    /// `after` (a bulk recalculation walks them all this way).
    pub async fn interaction_users(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Interactions).await?;
        let rows = sqlx::query(
            "SELECT DISTINCT user_id FROM interactions
             WHERE tenant_id = $1 AND user_id > $2
             ORDER BY user_id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// Writes recalculated profiles and their audit rows in one transaction. A profile is only
    /// replaced by one whose `applied_seq` is at least as high, so a slow writer holding an
    /// older view of the history cannot overwrite a newer profile. Returns how many profiles
    /// were written. Each `(tenant_id, user_id)` may appear at most once.
    pub async fn record_weber_updates(&self, updates: &[WeberUpdate]) -> Result<u64, StoreError> {
        for u in updates {
            crate::weber::validate(&u.profile)?;
        }
        let now = crate::now_ms();
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::WeberProfiles)
            .await?;
        let mut tx = conn.begin().await?;
        let mut written = 0;
        for chunk in updates.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO weber_profiles (tenant_id, {}, applied_seq) VALUES {} \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                 weber_constant = excluded.weber_constant, \
                 calculation_confidence = excluded.calculation_confidence, \
                 sensitivity_segment = excluded.sensitivity_segment, \
                 bias_ratio = excluded.bias_ratio, review_count = excluded.review_count, \
                 window_len = excluded.window_len, newest_event_ms = excluded.newest_event_ms, \
                 updated_at_ms = excluded.updated_at_ms, applied_seq = excluded.applied_seq \
                 WHERE excluded.applied_seq >= weber_profiles.applied_seq",
                crate::weber::COLUMNS,
                crate::weber::values_list(chunk.len(), 11, 1)
            );
            let mut query = crate::weber::nullable_float_query(&sql);
            for u in chunk {
                query =
                    crate::weber::bind_profile(query, &u.tenant_id, &u.profile).bind(u.applied_seq);
            }
            written += query.execute(&mut *tx).await?.rows_affected();

            let audited: Vec<(&WeberUpdate, &CalculationRecord)> = chunk
                .iter()
                .filter_map(|u| u.calculation.as_ref().map(|c| (u, c)))
                .collect();
            if audited.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO weber_calculations (tenant_id, user_id, event_seq, review_sequence, \
                 sentiment_value, baseline_sentiment, weber_ratio, weber_constant, \
                 calculation_confidence, sensitivity_segment, cause, calculated_at_ms) VALUES {}",
                crate::weber::values_list(audited.len(), 12, 1)
            );
            let mut query = sqlx::query(&sql);
            for (u, c) in audited {
                query = query
                    .bind(&u.tenant_id)
                    .bind(&u.profile.user_id)
                    .bind(c.event_seq)
                    .bind(c.review_sequence)
                    .bind(c.sentiment_value)
                    .bind(c.baseline_sentiment)
                    .bind(c.weber_ratio)
                    .bind(u.profile.weber_constant)
                    .bind(u.profile.calculation_confidence)
                    .bind(&u.profile.sensitivity_segment)
                    .bind(c.cause)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// The user's most recent calculation audit rows, newest first.
    pub async fn weber_calculations(
        &self,
        tenant_id: &str,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredCalculation>, StoreError> {
        self.weber_calculations_page(tenant_id, user_id, None, limit)
            .await
    }

    /// A page of the user's calculation audit, newest first: the rows with an id below
    /// `before_id` (all when `None`), at most `limit`.
    pub async fn weber_calculations_page(
        &self,
        tenant_id: &str,
        user_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredCalculation>, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberCalculations)
            .await?;
        let rows = sqlx::query(
            "SELECT event_seq, review_sequence, sentiment_value, baseline_sentiment, weber_ratio,
                    weber_constant, calculation_confidence, sensitivity_segment, cause,
                    calculated_at_ms, id
             FROM weber_calculations WHERE tenant_id = $1 AND user_id = $2 AND id < $3
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredCalculation {
                    id: r.try_get(10)?,
                    event_seq: r.try_get(0)?,
                    review_sequence: r.try_get(1)?,
                    sentiment_value: r.try_get(2)?,
                    baseline_sentiment: r.try_get(3)?,
                    weber_ratio: r.try_get(4)?,
                    weber_constant: r.try_get(5)?,
                    calculation_confidence: r.try_get(6)?,
                    sensitivity_segment: r.try_get(7)?,
                    cause: r.try_get(8)?,
                    calculated_at_ms: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Operator-level: the highest interaction sequence number stored (0 when none).
    pub async fn operator_newest_interaction_seq(&self) -> Result<i64, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Interactions).await?;
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM interactions")
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Operator-level: up to `limit` `(tenant_id, user_id)` pairs, across all tenants, with
    /// stored interactions up to sequence `up_to_seq` newer than their profile (`applied_seq`),
    /// or with no profile. The profile worker recalculates these at start, so an event
    /// committed just before a crash, whose stream message was never written, still reaches its
    /// profile. The bound keeps a pass finite while new events keep arriving (those come
    /// through the stream).
    pub async fn operator_stale_weber_users(
        &self,
        up_to_seq: i64,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Interactions).await?;
        let rows = sqlx::query(
            "SELECT i.tenant_id, i.user_id FROM interactions i
             LEFT JOIN weber_profiles p ON p.tenant_id = i.tenant_id AND p.user_id = i.user_id
             WHERE i.seq <= $1
             GROUP BY i.tenant_id, i.user_id
             HAVING MAX(i.seq) > COALESCE(MAX(p.applied_seq), 0)
             ORDER BY i.tenant_id, i.user_id LIMIT $2",
        )
        .bind(up_to_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Operator-level, for the metrics gauge: profile counts per tenant and segment.
    pub async fn operator_weber_segment_counts(
        &self,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut conn = self
            .acquire_read(Operation::Select, Table::WeberProfiles)
            .await?;
        let rows = sqlx::query(
            "SELECT tenant_id, sensitivity_segment, COUNT(*) FROM weber_profiles
             GROUP BY tenant_id, sensitivity_segment ORDER BY tenant_id, sensitivity_segment",
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

fn validate_interaction(e: &NewInteraction) -> Result<(), StoreError> {
    let invalid = |field: &'static str, reason: &str| StoreError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    // PostgreSQL text cannot hold NUL; refusing it here keeps both backends alike.
    if e.event_id.is_empty() || e.event_id.len() > 256 || e.event_id.contains('\0') {
        return Err(invalid("event_id", "must be 1 to 256 bytes, without NUL"));
    }
    if e.user_id.is_empty() || e.user_id.len() > 256 || e.user_id.contains('\0') {
        return Err(invalid("user_id", "must be 1 to 256 bytes, without NUL"));
    }
    let texts = [&e.text, &e.item_id, &e.channel];
    if texts
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
    {
        return Err(invalid(
            "text",
            "text, item_id and channel must not contain NUL",
        ));
    }
    if !e.sentiment.is_finite() || !(-1.0..=1.0).contains(&e.sentiment) {
        return Err(invalid("sentiment", "must be a finite number in [-1, 1]"));
    }
    Ok(())
}
