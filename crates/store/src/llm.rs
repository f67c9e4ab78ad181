//! LLM and chatbot observability data (seed 003): model calls and the other chatbot events,
//! daily usage rollups, monthly budgets with their crossed thresholds, and per-tenant price
//! overrides. Every query is keyed by tenant, except [`Store::purge_llm_events_before`], the
//! retention job, which walks every tenant (each delete is still bound to one tenant).
//!
//! ## Exactly once
//! An event is stored once per `(tenant, event id)`: a repeated id, in a later batch or later
//! in the same batch, is a duplicate and changes nothing. Model calls and the other events are
//! two id spaces (two tables). [`Store::insert_llm_batch`] inserts the raw rows and increments
//! the rollups in one transaction, and increments them by the calls its insert actually
//! created, so rollups always equal the sums of the raw calls (until those are purged).
//!
//! ## Rollups and retention
//! `llm_usage_daily` holds, per `(tenant, UTC day, provider, model, operation)`, the calls,
//! errors, the five exclusive token sums, the effective cost of the priced calls and the count
//! of unpriced ones; `llm_usage_latency` holds the same groups' latency histograms (calls per
//! [`llm::latency`] bucket), `llm_usage_latency_by_day` the histograms per day only (read by
//! usage grouped by day or not at all) and `llm_usage_latency_monthly` the groups' histograms
//! per calendar month (read for the whole months of a range not grouped by day). Usage grouped by any subset of day, provider, model and operation
//! is read from them, so it costs the same however many calls are stored, and it survives
//! [`Store::purge_llm_events_before`]. Usage grouped by conversation and conversation
//! timelines are read from the raw rows, so they cover only the retained history.
//!
//! ## Money and overflow
//! Costs are integer picodollars in `BIGINT` columns: one rollup row holds up to about
//! 9.2 million dollars. A value or a sum that would not fit is refused with
//! [`StoreError::Invalid`] naming the field, and the whole batch is rolled back.

use std::collections::{BTreeMap, HashMap};

use llm::budget::Period;
use llm::latency::{bucket_of, LatencyHistogram};
use llm::usage::{Dimension, UsageTotals};
use llm::{
    CallStatus, ConversationCompleted, ConversationStarted, Cost, IntegrationCall, LlmEvent,
    MessageProcessed, ModelCall, TokenCounts,
};
use sqlx::any::AnyRow;
use sqlx::{Connection as _, Row};

use crate::{Backend, Operation, Store, StoreError, Table};

/// Rows per multi-row statement: 20 parameters per call row stays below SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters.
const CALL_CHUNK: usize = 500;
/// Longest id or label accepted (event ids, provider, model, conversation id, …), in bytes.
pub const MAX_LLM_TEXT_BYTES: usize = 256;
/// Largest per-tenant price table text accepted, in bytes.
pub const MAX_LLM_PRICES_BYTES: usize = 1 << 20;
const DAY_MS: i64 = 86_400_000;
/// 0000-01-01 and 10000-01-01 as day numbers: the span usage queries are clamped to.
const FIRST_DAY: i64 = -719_528;
const LAST_DAY: i64 = 2_932_897;

/// What became of one call or event passed to [`Store::insert_llm_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmInsertion {
    /// Stored now (and, for a model call, added to the rollups).
    New,
    /// The tenant already had this id, or it appeared earlier in the batch: nothing written.
    Duplicate,
}

/// Per input, in input order: whether it was new or a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LlmInsertOutcome {
    pub calls: Vec<LlmInsertion>,
    pub events: Vec<LlmInsertion>,
}

impl LlmInsertOutcome {
    /// How many calls were newly stored.
    pub fn new_calls(&self) -> usize {
        self.calls
            .iter()
            .filter(|i| **i == LlmInsertion::New)
            .count()
    }

    /// How many other events were newly stored.
    pub fn new_events(&self) -> usize {
        self.events
            .iter()
            .filter(|i| **i == LlmInsertion::New)
            .count()
    }
}

/// The group of one usage row: the `llm` crate's [`llm::usage::UsageKey`] (the dimensions
/// asked for are set, the others `None`; under [`Dimension::Conversation`], calls without a
/// conversation form the group whose `conversation` is `None`).
pub type LlmUsageKey = llm::usage::UsageKey;

/// A tenant's monthly budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmBudget {
    pub monthly: Cost,
    /// Percentages of `monthly`, ascending, without repeats.
    pub thresholds: Vec<u8>,
    pub updated_at_ms: i64,
}

/// A threshold recorded as crossed in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmBudgetCrossing {
    pub threshold: u8,
    pub crossed_at_ms: i64,
    /// The period's spend when the crossing was recorded.
    pub spent: Cost,
}

/// A tenant's price overrides as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmPrices {
    /// The price table text as the tenant sent it (parsed by the `llm` crate, not here).
    pub text: String,
    /// Whether the shipped default prices apply to models the overrides do not list.
    pub use_defaults: bool,
    pub updated_at_ms: i64,
}

/// How many raw rows [`Store::purge_llm_events_before`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LlmPurged {
    pub calls: u64,
    pub events: u64,
}

/// The sums of the calls of one rollup group, as the rollup upsert adds them.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    calls: i64,
    errors: i64,
    tokens: [i64; 5],
    cost: i64,
    unpriced: i64,
}

/// One model call's values in the columns' types, checked.
struct CallRow<'a> {
    call: &'a ModelCall,
    day: i64,
    duration_us: i64,
    bucket: i64,
    tokens: [i64; 5],
    client_cost: Option<i64>,
    computed_cost: Option<i64>,
    cost: Option<i64>,
}

type RollupKey<'a> = (i64, &'a str, &'a str, &'static str);

impl Store {
    /// Stores model calls and other chatbot events of one tenant in one transaction, and adds
    /// the newly stored calls to the daily rollups (sums and latency histograms) in the same
    /// transaction. A call or event whose id the tenant already has, or which repeats an id
    /// earlier in the batch, is a duplicate: it changes nothing, rollups included. The outcome
    /// says, per input in order, which were new.
    ///
    /// `events` holds the kinds other than [`LlmEvent::ModelCall`] (those go in `calls`); a
    /// model call there is refused. A value that does not fit its column, or a rollup sum that
    /// would overflow, fails the whole batch with [`StoreError::Invalid`]; an unknown tenant
    /// with [`StoreError::NotFound`].
    pub async fn insert_llm_batch(
        &self,
        tenant_id: &str,
        calls: &[ModelCall],
        events: &[LlmEvent],
    ) -> Result<LlmInsertOutcome, StoreError> {
        let rows = calls.iter().map(call_row).collect::<Result<Vec<_>, _>>()?;
        for event in events {
            validate_event(event)?;
        }
        let mut outcome = LlmInsertOutcome {
            calls: vec![LlmInsertion::Duplicate; calls.len()],
            events: vec![LlmInsertion::Duplicate; events.len()],
        };
        // First occurrence of an id wins. Inserting in id order keeps concurrent PostgreSQL
        // batches with overlapping ids from waiting on each other in a cycle.
        let call_first = first_occurrences(calls.iter().map(|c| c.id.as_str()));
        let event_first = first_occurrences(events.iter().map(LlmEvent::id));
        let mut fresh_calls: Vec<usize> = call_first.values().copied().collect();
        fresh_calls.sort_unstable_by(|a, b| calls[*a].id.cmp(&calls[*b].id));
        let mut fresh_events: Vec<usize> = event_first.values().copied().collect();
        fresh_events.sort_unstable_by(|a, b| events[*a].id().cmp(events[*b].id()));
        if fresh_calls.is_empty() && fresh_events.is_empty() {
            return Ok(outcome);
        }

        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::LlmModelCalls)
            .await?;
        let mut tx = conn.begin().await?;
        for chunk in fresh_calls.chunks(CALL_CHUNK) {
            let sql = format!(
                "INSERT INTO llm_model_calls (tenant_id, event_id, time_ms, day, provider, model, \
                 operation, conversation_id, duration_us, latency_bucket, input_tokens, \
                 output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, status, \
                 error_type, client_cost_pico, computed_cost_pico, cost_pico) VALUES {} \
                 ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id",
                values_rows(self.backend, chunk.len(), 20)
            );
            let mut query = sqlx::query(&sql);
            for &i in chunk {
                let r = &rows[i];
                query = query
                    .bind(tenant_id)
                    .bind(&r.call.id)
                    .bind(r.call.time_ms)
                    .bind(r.day)
                    .bind(&r.call.provider)
                    .bind(&r.call.model)
                    .bind(r.call.operation.as_str())
                    .bind(r.call.conversation_id.as_deref())
                    .bind(r.duration_us)
                    .bind(r.bucket)
                    .bind(r.tokens[0])
                    .bind(r.tokens[1])
                    .bind(r.tokens[2])
                    .bind(r.tokens[3])
                    .bind(r.tokens[4])
                    .bind(r.call.status.as_str())
                    .bind(r.call.error_type.as_deref())
                    .bind(r.client_cost)
                    .bind(r.computed_cost)
                    .bind(r.cost);
            }
            let inserted = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
            mark_new(
                &inserted,
                &call_first,
                &mut outcome.calls,
                "llm_model_calls",
            )?;
        }

        // The rollup increments of the calls just inserted, in key order (a fixed lock order
        // between concurrent PostgreSQL transactions).
        let mut sums: BTreeMap<RollupKey, Sums> = BTreeMap::new();
        let mut latency: BTreeMap<(RollupKey, i64), i64> = BTreeMap::new();
        let mut latency_by_day: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut latency_monthly: BTreeMap<(RollupKey, i64), i64> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if outcome.calls[i] != LlmInsertion::New {
                continue;
            }
            let key = (
                r.day,
                r.call.provider.as_str(),
                r.call.model.as_str(),
                r.call.operation.as_str(),
            );
            add_to_sums(sums.entry(key).or_default(), r)?;
            *latency.entry((key, r.bucket)).or_default() += 1;
            *latency_by_day.entry((r.day, r.bucket)).or_default() += 1;
            let month_key = (month_of_day(r.day), key.1, key.2, key.3);
            *latency_monthly.entry((month_key, r.bucket)).or_default() += 1;
        }
        let sums: Vec<_> = sums.into_iter().collect();
        for chunk in sums.chunks(CALL_CHUNK) {
            let sql = rollup_upsert_sql(
                self.backend,
                "llm_usage_daily",
                &["day", "provider", "model", "operation"],
                &[
                    "calls",
                    "errors",
                    "input_tokens",
                    "output_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "reasoning_tokens",
                    "cost_pico",
                    "unpriced_calls",
                ],
                chunk.len(),
            );
            let mut query = sqlx::query(&sql);
            for ((day, provider, model, operation), s) in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(*day)
                    .bind(*provider)
                    .bind(*model)
                    .bind(*operation)
                    .bind(s.calls)
                    .bind(s.errors)
                    .bind(s.tokens[0])
                    .bind(s.tokens[1])
                    .bind(s.tokens[2])
                    .bind(s.tokens[3])
                    .bind(s.tokens[4])
                    .bind(s.cost)
                    .bind(s.unpriced);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
        }
        let latency: Vec<_> = latency.into_iter().collect();
        for chunk in latency.chunks(CALL_CHUNK) {
            let sql = rollup_upsert_sql(
                self.backend,
                "llm_usage_latency",
                &["day", "provider", "model", "operation", "bucket"],
                &["calls"],
                chunk.len(),
            );
            let mut query = sqlx::query(&sql);
            for (((day, provider, model, operation), bucket), n) in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(*day)
                    .bind(*provider)
                    .bind(*model)
                    .bind(*operation)
                    .bind(*bucket)
                    .bind(*n);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
        }

        let latency_by_day: Vec<_> = latency_by_day.into_iter().collect();
        for chunk in latency_by_day.chunks(CALL_CHUNK) {
            let sql = rollup_upsert_sql(
                self.backend,
                "llm_usage_latency_by_day",
                &["day", "bucket"],
                &["calls"],
                chunk.len(),
            );
            let mut query = sqlx::query(&sql);
            for ((day, bucket), n) in chunk {
                query = query.bind(tenant_id).bind(*day).bind(*bucket).bind(*n);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
        }

        let latency_monthly: Vec<_> = latency_monthly.into_iter().collect();
        for chunk in latency_monthly.chunks(CALL_CHUNK) {
            let sql = rollup_upsert_sql(
                self.backend,
                "llm_usage_latency_monthly",
                &["month", "provider", "model", "operation", "bucket"],
                &["calls"],
                chunk.len(),
            );
            let mut query = sqlx::query(&sql);
            for (((month, provider, model, operation), bucket), n) in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(*month)
                    .bind(*provider)
                    .bind(*model)
                    .bind(*operation)
                    .bind(*bucket)
                    .bind(*n);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
        }

        for chunk in fresh_events.chunks(CALL_CHUNK) {
            let sql = format!(
                "INSERT INTO llm_events (tenant_id, event_id, kind, time_ms, conversation_id, \
                 channel, resolution_status, direction, message_type, integration_id, \
                 integration_type, status, duration_us) VALUES {} \
                 ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id",
                values_rows(self.backend, chunk.len(), 13)
            );
            let mut query = sqlx::query(&sql);
            for &i in chunk {
                let c = event_columns(&events[i])?;
                query = query
                    .bind(tenant_id)
                    .bind(events[i].id())
                    .bind(c.kind)
                    .bind(c.time_ms)
                    .bind(c.conversation_id)
                    .bind(c.channel)
                    .bind(c.resolution_status)
                    .bind(c.direction)
                    .bind(c.message_type)
                    .bind(c.integration_id)
                    .bind(c.integration_type)
                    .bind(c.status)
                    .bind(c.duration_us);
            }
            let inserted = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| write_error(e, tenant_id))?;
            mark_new(&inserted, &event_first, &mut outcome.events, "llm_events")?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The tenant's usage over UTC days `[from_day, to_day)` (day numbers since 1970-01-01),
    /// grouped by `group_by` (any subset; empty: one total), ordered by key. Groups without
    /// calls are absent.
    ///
    /// Without [`Dimension::Conversation`] it is read from the daily rollups: its cost does not
    /// grow with the number of stored calls, and it covers history whose raw rows were purged.
    /// With it, it is read from the raw calls (retained history only).
    pub async fn llm_usage(
        &self,
        tenant_id: &str,
        from_day: i64,
        to_day: i64,
        group_by: &[Dimension],
    ) -> Result<Vec<(LlmUsageKey, UsageTotals)>, StoreError> {
        // Days outside years 0 to 9999 hold nothing; clamping keeps the calendar arithmetic of
        // `whole_months` far from overflow whatever the caller passes.
        let (from_day, to_day) = (
            from_day.clamp(FIRST_DAY, LAST_DAY),
            to_day.clamp(FIRST_DAY, LAST_DAY),
        );
        let mut dims: Vec<Dimension> = group_by.to_vec();
        dims.sort_unstable();
        dims.dedup();
        if from_day >= to_day {
            return Ok(Vec::new());
        }
        let mut groups: BTreeMap<LlmUsageKey, UsageTotals> = BTreeMap::new();
        if dims.contains(&Dimension::Conversation) {
            self.usage_from_calls(tenant_id, from_day, to_day, &dims, &mut groups)
                .await?;
        } else {
            self.usage_from_rollups(tenant_id, from_day, to_day, &dims, &mut groups)
                .await?;
        }
        Ok(groups.into_iter().collect())
    }

    async fn usage_from_rollups(
        &self,
        tenant_id: &str,
        from_day: i64,
        to_day: i64,
        dims: &[Dimension],
        groups: &mut BTreeMap<LlmUsageKey, UsageTotals>,
    ) -> Result<(), StoreError> {
        let cols: Vec<&str> = dims.iter().map(|d| dimension_column(*d)).collect();
        let select = cols.iter().map(|c| format!("{c}, ")).collect::<String>();
        let group = if cols.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {}", cols.join(", "))
        };
        // A group's histogram comes back as one text, "bucket:count,…": one row per group
        // rather than one per group and bucket, which is what the driver spends its time on.
        let concat = match self.backend {
            Backend::Sqlite => "group_concat(bucket || ':' || n, ',')",
            Backend::Postgres => "string_agg(bucket || ':' || n, ',')",
        };
        // Where the histograms come from: grouped by day or not at all, the per-day ones (all
        // providers, models and operations together: a few dozen rows a day); grouped by day and
        // more, the per-group daily ones; otherwise the monthly ones for the whole months of the
        // range and the daily ones for the days before and after them. `$4..$5` is the span of
        // whole months (empty when there is none).
        let (whole_from, whole_to) = whole_months(from_day, to_day);
        let latency_rows = if dims.iter().all(|d| *d == Dimension::Day) {
            format!(
                "SELECT {select}bucket, calls FROM llm_usage_latency_by_day \
                 WHERE tenant_id = $1 AND day >= $2 AND day < $3"
            )
        } else if dims.contains(&Dimension::Day) || whole_from >= whole_to {
            format!(
                "SELECT {select}bucket, calls FROM llm_usage_latency \
                 WHERE tenant_id = $1 AND day >= $2 AND day < $3"
            )
        } else {
            format!(
                "SELECT {select}bucket, calls FROM llm_usage_latency \
                 WHERE tenant_id = $1 AND ((day >= $2 AND day < $4) OR (day >= $5 AND day < $3)) \
                 UNION ALL \
                 SELECT {select}bucket, calls FROM llm_usage_latency_monthly \
                 WHERE tenant_id = $1 AND month >= $4 AND month < $5"
            )
        };
        // One statement, so the sums and the histograms come from one snapshot. `part` 0 rows
        // are sums, `part` 1 rows histograms.
        let sql = format!(
            "SELECT CAST(0 AS BIGINT), {select}CAST(NULL AS TEXT), \
             CAST(COUNT(*) AS BIGINT), CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT), \
             CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
             CAST(SUM(cache_read_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT), \
             CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(cost_pico) AS BIGINT), \
             CAST(SUM(unpriced_calls) AS BIGINT) \
             FROM llm_usage_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3 {group} \
             UNION ALL \
             SELECT CAST(1 AS BIGINT), {select}{concat}, CAST(COUNT(*) AS BIGINT), \
             CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), \
             CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), \
             CAST(0 AS BIGINT) \
             FROM (SELECT {select}bucket, CAST(SUM(calls) AS BIGINT) AS n \
                   FROM ({latency_rows}) r GROUP BY {select}bucket) l {group}"
        );
        let mut conn = self
            .acquire_read(Operation::Select, Table::LlmUsageDaily)
            .await?;
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(from_day)
            .bind(to_day)
            .bind(whole_from)
            .bind(whole_to)
            .fetch_all(&mut *conn)
            .await
            .map_err(read_error)?;
        let table = "llm_usage_daily";
        for row in rows {
            let part: i64 = row.try_get(0)?;
            let key = key_from_row(&row, dims, 1)?;
            let at = 1 + dims.len();
            let rows_in_group: i64 = row.try_get(at + 1)?;
            if rows_in_group == 0 {
                // The empty grouping's aggregate row over no rows.
                continue;
            }
            let n = |i: usize| -> Result<u64, StoreError> {
                let v: Option<i64> = row.try_get(at + i)?;
                to_u64(table, v.unwrap_or(0))
            };
            let totals = groups.entry(key).or_default();
            if part == 0 {
                totals.calls = n(2)?;
                totals.errors = n(3)?;
                totals.tokens = TokenCounts {
                    input: n(4)?,
                    output: n(5)?,
                    cache_read: n(6)?,
                    cache_write: n(7)?,
                    reasoning: n(8)?,
                };
                totals.cost = Cost::from_picodollars(n(9)?);
                totals.unpriced_calls = n(10)?;
            } else {
                let text: Option<String> = row.try_get(at)?;
                parse_histogram(text.as_deref().unwrap_or(""), &mut totals.latency)?;
            }
        }
        Ok(())
    }

    async fn usage_from_calls(
        &self,
        tenant_id: &str,
        from_day: i64,
        to_day: i64,
        dims: &[Dimension],
        groups: &mut BTreeMap<LlmUsageKey, UsageTotals>,
    ) -> Result<(), StoreError> {
        let cols: Vec<&str> = dims.iter().map(|d| dimension_column(*d)).collect();
        let select = cols.iter().map(|c| format!("{c}, ")).collect::<String>();
        let sql = format!(
            "SELECT {select}latency_bucket, CAST(COUNT(*) AS BIGINT), \
             CAST(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
             CAST(SUM(cache_read_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT), \
             CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(COALESCE(cost_pico, 0)) AS BIGINT), \
             CAST(SUM(CASE WHEN cost_pico IS NULL THEN 1 ELSE 0 END) AS BIGINT) \
             FROM llm_model_calls WHERE tenant_id = $1 AND time_ms >= $2 AND time_ms < $3 \
             GROUP BY {select}latency_bucket"
        );
        let (from_ms, to_ms) = (day_start_ms(from_day), day_start_ms(to_day));
        let mut conn = self
            .acquire_read(Operation::Select, Table::LlmModelCalls)
            .await?;
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&mut *conn)
            .await
            .map_err(read_error)?;
        let table = "llm_model_calls";
        for row in rows {
            let key = key_from_row(&row, dims, 0)?;
            let at = dims.len();
            let bucket: i64 = row.try_get(at)?;
            let bucket = u16::try_from(bucket).map_err(|_| StoreError::Corrupt {
                table,
                reason: format!("latency bucket {bucket} out of range"),
            })?;
            let n = |i: usize| -> Result<u64, StoreError> {
                let v: Option<i64> = row.try_get(at + i)?;
                to_u64(table, v.unwrap_or(0))
            };
            let calls = n(1)?;
            let part = UsageTotals {
                calls,
                errors: n(2)?,
                tokens: TokenCounts {
                    input: n(3)?,
                    output: n(4)?,
                    cache_read: n(5)?,
                    cache_write: n(6)?,
                    reasoning: n(7)?,
                },
                cost: Cost::from_picodollars(n(8)?),
                unpriced_calls: n(9)?,
                latency: LatencyHistogram::new(),
            };
            let totals = groups.entry(key).or_default();
            add_totals(totals, &part)?;
            totals.latency.add_to_bucket(bucket, calls);
        }
        Ok(())
    }

    /// One conversation's model calls and other events, in `(time_ms, event id)` order (ids
    /// compared bytewise), at most `limit` of them: the earliest ones. Only retained raw rows
    /// appear (see [`Store::purge_llm_events_before`]).
    pub async fn llm_conversation_timeline(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        limit: u32,
    ) -> Result<Vec<LlmEvent>, StoreError> {
        if !crate::could_be_stored(conversation_id) || limit == 0 {
            return Ok(Vec::new());
        }
        // Bytewise id order on both backends (PostgreSQL's default collation is the locale's).
        let order = match self.backend {
            Backend::Sqlite => "ORDER BY time_ms, event_id",
            Backend::Postgres => "ORDER BY time_ms, event_id COLLATE \"C\"",
        };
        let mut conn = self
            .acquire_read(Operation::Select, Table::LlmModelCalls)
            .await?;
        let calls = sqlx::query(&format!(
            "SELECT {CALL_COLUMNS} FROM llm_model_calls \
             WHERE tenant_id = $1 AND conversation_id = $2 {order} LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let others = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM llm_events \
             WHERE tenant_id = $1 AND conversation_id = $2 {order} LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut timeline = calls
            .iter()
            .map(|r| call_from_row(r).map(LlmEvent::ModelCall))
            .chain(others.iter().map(event_from_row))
            .collect::<Result<Vec<_>, _>>()?;
        timeline.sort_by(|a, b| {
            (event_time(a), a.id().as_bytes()).cmp(&(event_time(b), b.id().as_bytes()))
        });
        timeline.truncate(limit as usize);
        Ok(timeline)
    }

    /// The tenant's monthly budget, if it set one.
    pub async fn get_llm_budget(&self, tenant_id: &str) -> Result<Option<LlmBudget>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::LlmBudgets).await?;
        let row = sqlx::query(
            "SELECT monthly_pico, thresholds, updated_at_ms FROM llm_budgets WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let monthly: i64 = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let thresholds = text
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u8>().map_err(|_| StoreError::Corrupt {
                    table: "llm_budgets",
                    reason: format!("threshold {t:?} is not a percentage"),
                })
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Some(LlmBudget {
            monthly: Cost::from_picodollars(to_u64("llm_budgets", monthly)?),
            thresholds,
            updated_at_ms: row.try_get(2)?,
        }))
    }

    /// Sets (or replaces) the tenant's monthly budget. `thresholds` are percentages from 1 to
    /// 255, stored ascending without repeats (see [`llm::budget::DEFAULT_THRESHOLDS`]).
    /// Thresholds already recorded as crossed this period stay recorded.
    pub async fn put_llm_budget(
        &self,
        tenant_id: &str,
        monthly: Cost,
        thresholds: &[u8],
    ) -> Result<LlmBudget, StoreError> {
        let monthly_pico = to_i64("monthly", monthly.picodollars())?;
        if thresholds.contains(&0) {
            return Err(StoreError::Invalid {
                field: "thresholds",
                reason: "each threshold must be a percentage from 1 to 255".to_owned(),
            });
        }
        let mut thresholds = thresholds.to_vec();
        thresholds.sort_unstable();
        thresholds.dedup();
        let text = thresholds
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let budget = LlmBudget {
            monthly,
            thresholds,
            updated_at_ms: crate::now_ms(),
        };
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Upsert, Table::LlmBudgets).await?;
        sqlx::query(
            "INSERT INTO llm_budgets (tenant_id, monthly_pico, thresholds, updated_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
             monthly_pico = excluded.monthly_pico, thresholds = excluded.thresholds, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id)
        .bind(monthly_pico)
        .bind(text)
        .bind(budget.updated_at_ms)
        .execute(&mut *conn)
        .await
        .map_err(|e| write_error(e, tenant_id))?;
        Ok(budget)
    }

    /// The effective cost of the tenant's priced calls in a calendar month (UTC), from the
    /// rollups (so it survives raw-row retention).
    pub async fn llm_month_spend(
        &self,
        tenant_id: &str,
        period: Period,
    ) -> Result<Cost, StoreError> {
        let from_day = period.start_ms().div_euclid(DAY_MS);
        let to_day = period.end_ms().div_euclid(DAY_MS);
        let mut conn = self
            .acquire(Operation::Select, Table::LlmUsageDaily)
            .await?;
        let row = sqlx::query(
            "SELECT CAST(SUM(cost_pico) AS BIGINT) FROM llm_usage_daily \
             WHERE tenant_id = $1 AND day >= $2 AND day < $3",
        )
        .bind(tenant_id)
        .bind(from_day)
        .bind(to_day)
        .fetch_one(&mut *conn)
        .await
        .map_err(read_error)?;
        let spent: Option<i64> = row.try_get(0)?;
        Ok(Cost::from_picodollars(to_u64(
            "llm_usage_daily",
            spent.unwrap_or(0),
        )?))
    }

    /// Records each of `thresholds` as crossed in `period` at `now_ms` with `spent`, unless it
    /// already is, and returns those recorded now (ascending). A threshold is recorded once per
    /// tenant and period whoever records it: concurrent callers, other replicas and restarts
    /// see it already recorded. Pass the thresholds the spend has reached
    /// ([`llm::budget::reached`]).
    pub async fn record_llm_budget_crossings(
        &self,
        tenant_id: &str,
        period: Period,
        thresholds: &[u8],
        spent: Cost,
        now_ms: i64,
    ) -> Result<Vec<u8>, StoreError> {
        let mut thresholds = thresholds.to_vec();
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.is_empty() {
            return Ok(Vec::new());
        }
        let spent = to_i64("spent", spent.picodollars())?;
        let sql = format!(
            "INSERT INTO llm_budget_crossings (tenant_id, period, threshold, crossed_at_ms, \
             spent_pico) VALUES {} ON CONFLICT (tenant_id, period, threshold) DO NOTHING \
             RETURNING threshold",
            (0..thresholds.len())
                .map(|i| format!("($1, $2, ${}, $3, $4)", i + 5))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(period.to_string())
            .bind(now_ms)
            .bind(spent);
        for t in &thresholds {
            query = query.bind(i64::from(*t));
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::LlmBudgetCrossings)
            .await?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| write_error(e, tenant_id))?;
        let mut recorded = rows
            .iter()
            .map(|r| threshold_from(r.try_get(0)?))
            .collect::<Result<Vec<u8>, _>>()?;
        recorded.sort_unstable();
        Ok(recorded)
    }

    /// The thresholds recorded as crossed in `period`, ascending.
    pub async fn list_llm_budget_crossings(
        &self,
        tenant_id: &str,
        period: Period,
    ) -> Result<Vec<LlmBudgetCrossing>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::LlmBudgetCrossings)
            .await?;
        let rows = sqlx::query(
            "SELECT threshold, crossed_at_ms, spent_pico FROM llm_budget_crossings \
             WHERE tenant_id = $1 AND period = $2 ORDER BY threshold",
        )
        .bind(tenant_id)
        .bind(period.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LlmBudgetCrossing {
                    threshold: threshold_from(r.try_get(0)?)?,
                    crossed_at_ms: r.try_get(1)?,
                    spent: Cost::from_picodollars(to_u64("llm_budget_crossings", r.try_get(2)?)?),
                })
            })
            .collect()
    }

    /// The tenant's price overrides, if it set any.
    pub async fn get_llm_prices(&self, tenant_id: &str) -> Result<Option<LlmPrices>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::LlmPrices).await?;
        let row = sqlx::query(
            // sqlx's Any driver reads no SQLite BOOLEAN column; an integer reads on both.
            "SELECT price_table, CAST(CASE WHEN use_defaults THEN 1 ELSE 0 END AS BIGINT), \
             updated_at_ms FROM llm_prices WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| {
            Ok(LlmPrices {
                text: r.try_get(0)?,
                use_defaults: r.try_get::<i64, _>(1)? != 0,
                updated_at_ms: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Sets (or replaces) the tenant's price overrides: the table's text (validated by the
    /// caller with the `llm` crate; stored as given, at most [`MAX_LLM_PRICES_BYTES`]) and
    /// whether the default prices still apply to models it does not list.
    pub async fn put_llm_prices(
        &self,
        tenant_id: &str,
        text: &str,
        use_defaults: bool,
    ) -> Result<LlmPrices, StoreError> {
        if text.len() > MAX_LLM_PRICES_BYTES || text.contains('\0') {
            return Err(StoreError::Invalid {
                field: "prices",
                reason: format!("must be at most {MAX_LLM_PRICES_BYTES} bytes, without NUL"),
            });
        }
        let prices = LlmPrices {
            text: text.to_owned(),
            use_defaults,
            updated_at_ms: crate::now_ms(),
        };
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Upsert, Table::LlmPrices).await?;
        sqlx::query(
            "INSERT INTO llm_prices (tenant_id, price_table, use_defaults, updated_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
             price_table = excluded.price_table, use_defaults = excluded.use_defaults, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id)
        .bind(&prices.text)
        .bind(use_defaults)
        .bind(prices.updated_at_ms)
        .execute(&mut *conn)
        .await
        .map_err(|e| write_error(e, tenant_id))?;
        Ok(prices)
    }

    /// Retention, across every tenant: deletes the raw model calls and other events older than
    /// `before_ms`. The daily rollups are kept, so usage by day, provider, model and operation
    /// (and budgets' month spend) still covers the purged history; usage by conversation and
    /// conversation timelines do not. Each tenant is purged in its own statements, so ingest
    /// waits for one tenant's delete at most.
    pub async fn purge_llm_events_before(&self, before_ms: i64) -> Result<LlmPurged, StoreError> {
        let tenants: Vec<String> = {
            let mut conn = self.acquire(Operation::Select, Table::Tenants).await?;
            sqlx::query("SELECT id FROM tenants ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?
        };
        let mut purged = LlmPurged::default();
        for tenant in tenants {
            let _turn = self.write_turn().await;
            {
                let mut conn = self
                    .acquire(Operation::Delete, Table::LlmModelCalls)
                    .await?;
                purged.calls += sqlx::query(
                    "DELETE FROM llm_model_calls WHERE tenant_id = $1 AND time_ms < $2",
                )
                .bind(&tenant)
                .bind(before_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            }
            let mut conn = self.acquire(Operation::Delete, Table::LlmEvents).await?;
            purged.events +=
                sqlx::query("DELETE FROM llm_events WHERE tenant_id = $1 AND time_ms < $2")
                    .bind(&tenant)
                    .bind(before_ms)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
        }
        Ok(purged)
    }
}

/// The `VALUES` rows of a multi-row insert: `(?, ?, …)` on SQLite, `($1, $2, …)` on
/// PostgreSQL. SQLite gets anonymous parameters because sqlx looks each numbered one up by
/// name, and SQLite's lookup is a linear scan: with thousands of `$N` per statement, binding
/// cost grew with the square of the batch (a 1,000-call batch took about 200 ms, not 10).
fn values_rows(backend: Backend, rows: usize, per_row: usize) -> String {
    let mut sql = String::with_capacity(rows * (per_row * 6 + 3));
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..per_row {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(1 + r * per_row + c).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// A rollup increment for `rows` rows: `INSERT INTO table (tenant_id, keys…, sums…) VALUES …`,
/// adding each of `sums` to the row already there for the same tenant and keys. Binds go in
/// that column order.
fn rollup_upsert_sql(
    backend: Backend,
    table: &str,
    keys: &[&str],
    sums: &[&str],
    rows: usize,
) -> String {
    let columns = keys
        .iter()
        .chain(sums)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let add = sums
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} (tenant_id, {columns}) VALUES {} \
         ON CONFLICT (tenant_id, {}) DO UPDATE SET {add}",
        values_rows(backend, rows, 1 + keys.len() + sums.len()),
        keys.join(", "),
    )
}

fn first_occurrences<'a>(ids: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut first = HashMap::new();
    for (i, id) in ids.enumerate() {
        first.entry(id).or_insert(i);
    }
    first
}

fn mark_new(
    inserted: &[AnyRow],
    first: &HashMap<&str, usize>,
    outcome: &mut [LlmInsertion],
    table: &'static str,
) -> Result<(), StoreError> {
    for row in inserted {
        let id: String = row.try_get(0)?;
        let index = first
            .get(id.as_str())
            .copied()
            .ok_or_else(|| StoreError::Corrupt {
                table,
                reason: format!("insert returned an event id not in the batch: {id}"),
            })?;
        outcome[index] = LlmInsertion::New;
    }
    Ok(())
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        field,
        reason: format!("{v} is over the storable maximum {}", i64::MAX),
    })
}

fn to_u64(table: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative amount {v}"),
    })
}

fn threshold_from(v: i64) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "llm_budget_crossings",
        reason: format!("threshold {v} is not a percentage"),
    })
}

/// The day number of the first day of the month containing `day`.
fn month_of_day(day: i64) -> i64 {
    Period::containing(day_start_ms(day))
        .start_ms()
        .div_euclid(DAY_MS)
}

/// The whole calendar months inside days `[from_day, to_day)`, as `[first day, end day)`;
/// empty (`from >= to`) when none fits.
fn whole_months(from_day: i64, to_day: i64) -> (i64, i64) {
    let first = month_of_day(from_day);
    let start = if first == from_day {
        first
    } else {
        Period::containing(day_start_ms(from_day))
            .end_ms()
            .div_euclid(DAY_MS)
    };
    (start, month_of_day(to_day).max(start))
}

fn day_start_ms(day: i64) -> i64 {
    day.saturating_mul(DAY_MS)
}

fn check_text(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_LLM_TEXT_BYTES || value.contains('\0') {
        return Err(StoreError::Invalid {
            field,
            reason: format!("must be 1 to {MAX_LLM_TEXT_BYTES} bytes, without NUL"),
        });
    }
    Ok(())
}

fn check_optional_text(field: &'static str, value: Option<&str>) -> Result<(), StoreError> {
    value.map_or(Ok(()), |v| check_text(field, v))
}

fn call_row(call: &ModelCall) -> Result<CallRow<'_>, StoreError> {
    check_text("id", &call.id)?;
    check_text("provider", &call.provider)?;
    check_text("model", &call.model)?;
    check_optional_text("conversation_id", call.conversation_id.as_deref())?;
    check_optional_text("error_type", call.error_type.as_deref())?;
    let day = call.time_ms.div_euclid(DAY_MS);
    // Usage is read over years 0 to 9999; a call outside them would be summed and never shown.
    if !(FIRST_DAY..LAST_DAY).contains(&day) {
        return Err(StoreError::Invalid {
            field: "time_ms",
            reason: "must fall within the years 0 to 9999".into(),
        });
    }
    let t = &call.tokens;
    let cost = |field, c: Option<Cost>| c.map(|c| to_i64(field, c.picodollars())).transpose();
    Ok(CallRow {
        call,
        day,
        duration_us: to_i64("duration_us", call.duration_us)?,
        bucket: i64::from(bucket_of(call.duration_us)),
        tokens: [
            to_i64("input_tokens", t.input)?,
            to_i64("output_tokens", t.output)?,
            to_i64("cache_read_tokens", t.cache_read)?,
            to_i64("cache_write_tokens", t.cache_write)?,
            to_i64("reasoning_tokens", t.reasoning)?,
        ],
        client_cost: cost("client_cost", call.client_cost)?,
        computed_cost: cost("computed_cost", call.computed_cost)?,
        cost: cost("cost", call.cost())?,
    })
}

fn add_to_sums(s: &mut Sums, r: &CallRow<'_>) -> Result<(), StoreError> {
    let overflow = |field: &'static str| StoreError::Invalid {
        field,
        reason: "the batch's sum for one day, provider, model and operation is over the \
                 storable maximum"
            .to_owned(),
    };
    s.calls += 1;
    if r.call.status == CallStatus::Error {
        s.errors += 1;
    }
    const FIELDS: [&str; 5] = [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ];
    for (i, field) in FIELDS.iter().enumerate() {
        s.tokens[i] = s.tokens[i]
            .checked_add(r.tokens[i])
            .ok_or_else(|| overflow(field))?;
    }
    match r.cost {
        Some(c) => s.cost = s.cost.checked_add(c).ok_or_else(|| overflow("cost"))?,
        None => s.unpriced += 1,
    }
    Ok(())
}

fn add_totals(into: &mut UsageTotals, part: &UsageTotals) -> Result<(), StoreError> {
    let overflow = || StoreError::Invalid {
        field: "usage",
        reason: "a group's sum is over the representable maximum".to_owned(),
    };
    into.calls = into.calls.checked_add(part.calls).ok_or_else(overflow)?;
    into.errors = into.errors.checked_add(part.errors).ok_or_else(overflow)?;
    into.tokens = into.tokens.checked_add(&part.tokens).ok_or_else(overflow)?;
    into.cost = into.cost.checked_add(part.cost).map_err(|_| overflow())?;
    into.unpriced_calls = into
        .unpriced_calls
        .checked_add(part.unpriced_calls)
        .ok_or_else(overflow)?;
    into.latency.merge(&part.latency);
    Ok(())
}

/// A write failure in LLM terms: an unknown tenant, or a rollup sum past `BIGINT` (SQLite's
/// overflow CHECK, PostgreSQL's `numeric_value_out_of_range`).
fn write_error(e: sqlx::Error, tenant_id: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.kind() == sqlx::error::ErrorKind::CheckViolation
            || db.code().as_deref() == Some("22003")
        {
            return StoreError::Invalid {
                field: "usage",
                reason: "a stored usage sum (tokens or cost of one day, provider, model and \
                         operation) would exceed the storable maximum"
                    .to_owned(),
            };
        }
    }
    crate::weber::foreign_key_or(e, tenant_id)
}

/// A read failure in LLM terms: a sum past `BIGINT` (SQLite's "integer overflow", PostgreSQL's
/// `numeric_value_out_of_range`).
fn read_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("22003") || db.message().contains("integer overflow") {
            return StoreError::Invalid {
                field: "usage",
                reason: "a sum over the requested range exceeds the representable maximum; \
                         ask for a shorter range or a finer grouping"
                    .to_owned(),
            };
        }
    }
    StoreError::from(e)
}

/// Adds a histogram text, `bucket:count` pairs separated by commas, to `into`.
fn parse_histogram(text: &str, into: &mut LatencyHistogram) -> Result<(), StoreError> {
    let corrupt = |pair: &str| StoreError::Corrupt {
        table: "llm_usage_latency",
        reason: format!("bad histogram entry {pair:?}"),
    };
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (bucket, count) = pair.split_once(':').ok_or_else(|| corrupt(pair))?;
        let bucket: u16 = bucket.parse().map_err(|_| corrupt(pair))?;
        let count: u64 = count.parse().map_err(|_| corrupt(pair))?;
        into.add_to_bucket(bucket, count);
    }
    Ok(())
}

fn dimension_column(d: Dimension) -> &'static str {
    match d {
        Dimension::Day => "day",
        Dimension::Provider => "provider",
        Dimension::Model => "model",
        Dimension::Operation => "operation",
        Dimension::Conversation => "conversation_id",
    }
}

/// Reads the group key from `dims.len()` columns starting at `first` (`dims` sorted).
fn key_from_row(row: &AnyRow, dims: &[Dimension], first: usize) -> Result<LlmUsageKey, StoreError> {
    let mut key = LlmUsageKey::default();
    for (i, d) in dims.iter().enumerate() {
        let at = first + i;
        match d {
            Dimension::Day => key.day = Some(row.try_get(at)?),
            Dimension::Provider => key.provider = Some(row.try_get(at)?),
            Dimension::Model => key.model = Some(row.try_get(at)?),
            Dimension::Operation => {
                let name: String = row.try_get(at)?;
                key.operation = Some(parse_operation(&name)?);
            }
            Dimension::Conversation => key.conversation = row.try_get(at)?,
        }
    }
    Ok(key)
}

fn parse_operation(name: &str) -> Result<llm::Operation, StoreError> {
    llm::Operation::parse(name).ok_or_else(|| StoreError::Corrupt {
        table: "llm_model_calls",
        reason: format!("unknown operation {name:?}"),
    })
}

fn parse_status(name: &str, table: &'static str) -> Result<CallStatus, StoreError> {
    match name {
        "success" => Ok(CallStatus::Success),
        "error" => Ok(CallStatus::Error),
        other => Err(StoreError::Corrupt {
            table,
            reason: format!("unknown status {other:?}"),
        }),
    }
}

const CALL_COLUMNS: &str = "event_id, time_ms, provider, model, operation, conversation_id, \
    duration_us, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
    reasoning_tokens, status, error_type, client_cost_pico, computed_cost_pico";

fn call_from_row(r: &AnyRow) -> Result<ModelCall, StoreError> {
    let table = "llm_model_calls";
    let n = |i: usize| -> Result<u64, StoreError> { to_u64(table, r.try_get(i)?) };
    let cost = |i: usize| -> Result<Option<Cost>, StoreError> {
        let v: Option<i64> = r.try_get(i)?;
        v.map(|v| to_u64(table, v).map(Cost::from_picodollars))
            .transpose()
    };
    let operation: String = r.try_get(4)?;
    let status: String = r.try_get(12)?;
    Ok(ModelCall {
        id: r.try_get(0)?,
        time_ms: r.try_get(1)?,
        provider: r.try_get(2)?,
        model: r.try_get(3)?,
        operation: parse_operation(&operation)?,
        conversation_id: r.try_get(5)?,
        duration_us: n(6)?,
        tokens: TokenCounts {
            input: n(7)?,
            output: n(8)?,
            cache_read: n(9)?,
            cache_write: n(10)?,
            reasoning: n(11)?,
        },
        status: parse_status(&status, table)?,
        error_type: r.try_get(13)?,
        client_cost: cost(14)?,
        computed_cost: cost(15)?,
    })
}

const EVENT_COLUMNS: &str = "event_id, kind, time_ms, conversation_id, channel, \
    resolution_status, direction, message_type, integration_id, integration_type, status, \
    duration_us";

/// The `llm_events` columns of one event (the id aside).
struct EventColumns<'a> {
    kind: &'static str,
    time_ms: i64,
    conversation_id: Option<&'a str>,
    channel: Option<&'a str>,
    resolution_status: Option<&'a str>,
    direction: Option<&'static str>,
    message_type: Option<&'a str>,
    integration_id: Option<&'a str>,
    integration_type: Option<&'a str>,
    status: Option<&'static str>,
    duration_us: Option<i64>,
}

fn event_columns(event: &LlmEvent) -> Result<EventColumns<'_>, StoreError> {
    let empty = |kind, time_ms| EventColumns {
        kind,
        time_ms,
        conversation_id: None,
        channel: None,
        resolution_status: None,
        direction: None,
        message_type: None,
        integration_id: None,
        integration_type: None,
        status: None,
        duration_us: None,
    };
    Ok(match event {
        LlmEvent::ConversationStarted(e) => EventColumns {
            conversation_id: Some(&e.conversation_id),
            channel: Some(&e.channel),
            ..empty("conversation_started", e.time_ms)
        },
        LlmEvent::ConversationCompleted(e) => EventColumns {
            conversation_id: Some(&e.conversation_id),
            channel: Some(&e.channel),
            resolution_status: Some(&e.resolution_status),
            ..empty("conversation_completed", e.time_ms)
        },
        LlmEvent::MessageProcessed(e) => EventColumns {
            conversation_id: e.conversation_id.as_deref(),
            channel: Some(&e.channel),
            direction: Some(e.direction.as_str()),
            message_type: Some(&e.message_type),
            ..empty("message_processed", e.time_ms)
        },
        LlmEvent::IntegrationCall(e) => EventColumns {
            conversation_id: e.conversation_id.as_deref(),
            integration_id: Some(&e.integration_id),
            integration_type: Some(&e.integration_type),
            status: Some(e.status.as_str()),
            duration_us: Some(to_i64("duration_us", e.duration_us)?),
            ..empty("integration_call", e.time_ms)
        },
        LlmEvent::ModelCall(_) => {
            return Err(StoreError::Invalid {
                field: "events",
                reason: "model calls are passed as calls, not events".to_owned(),
            })
        }
    })
}

fn validate_event(event: &LlmEvent) -> Result<(), StoreError> {
    check_text("id", event.id())?;
    let c = event_columns(event)?;
    check_optional_text("conversation_id", c.conversation_id)?;
    check_optional_text("channel", c.channel)?;
    check_optional_text("resolution_status", c.resolution_status)?;
    check_optional_text("message_type", c.message_type)?;
    check_optional_text("integration_id", c.integration_id)?;
    check_optional_text("integration_type", c.integration_type)
}

fn event_from_row(r: &AnyRow) -> Result<LlmEvent, StoreError> {
    let table = "llm_events";
    let id: String = r.try_get(0)?;
    let kind: String = r.try_get(1)?;
    let time_ms: i64 = r.try_get(2)?;
    let conversation_id: Option<String> = r.try_get(3)?;
    let text = |i: usize, field: &str| -> Result<String, StoreError> {
        let v: Option<String> = r.try_get(i)?;
        v.ok_or_else(|| StoreError::Corrupt {
            table,
            reason: format!("{kind} event {id} has no {field}"),
        })
    };
    let conversation = || {
        conversation_id.clone().ok_or_else(|| StoreError::Corrupt {
            table,
            reason: format!("{kind} event {id} has no conversation_id"),
        })
    };
    Ok(match kind.as_str() {
        "conversation_started" => LlmEvent::ConversationStarted(ConversationStarted {
            conversation_id: conversation()?,
            channel: text(4, "channel")?,
            id: id.clone(),
            time_ms,
        }),
        "conversation_completed" => LlmEvent::ConversationCompleted(ConversationCompleted {
            conversation_id: conversation()?,
            channel: text(4, "channel")?,
            resolution_status: text(5, "resolution_status")?,
            id: id.clone(),
            time_ms,
        }),
        "message_processed" => {
            let direction = match text(6, "direction")?.as_str() {
                "inbound" => llm::event::Direction::Inbound,
                "outbound" => llm::event::Direction::Outbound,
                other => {
                    return Err(StoreError::Corrupt {
                        table,
                        reason: format!("unknown direction {other:?}"),
                    })
                }
            };
            LlmEvent::MessageProcessed(MessageProcessed {
                conversation_id: conversation_id.clone(),
                channel: text(4, "channel")?,
                direction,
                message_type: text(7, "message_type")?,
                id: id.clone(),
                time_ms,
            })
        }
        "integration_call" => {
            let duration: Option<i64> = r.try_get(11)?;
            LlmEvent::IntegrationCall(IntegrationCall {
                conversation_id: conversation_id.clone(),
                integration_id: text(8, "integration_id")?,
                integration_type: text(9, "integration_type")?,
                status: parse_status(&text(10, "status")?, table)?,
                duration_us: to_u64(table, duration.unwrap_or(0))?,
                id: id.clone(),
                time_ms,
            })
        }
        other => {
            return Err(StoreError::Corrupt {
                table,
                reason: format!("unknown event kind {other:?}"),
            })
        }
    })
}

fn event_time(e: &LlmEvent) -> i64 {
    match e {
        LlmEvent::ConversationStarted(e) => e.time_ms,
        LlmEvent::ConversationCompleted(e) => e.time_ms,
        LlmEvent::MessageProcessed(e) => e.time_ms,
        LlmEvent::ModelCall(e) => e.time_ms,
        LlmEvent::IntegrationCall(e) => e.time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_months_are_the_calendar_months_inside_the_range() {
        // 2026-01-01 is day 20454; 2026-02-01 day 20485; 2026-03-01 day 20513.
        assert_eq!(month_of_day(20454 + 40), 20485);
        assert_eq!(whole_months(20454, 20513), (20454, 20513));
        assert_eq!(whole_months(20455, 20513), (20485, 20513));
        assert_eq!(whole_months(20455, 20512), (20485, 20485), "none: empty");
        assert_eq!(
            whole_months(20455, 20460),
            (20485, 20485),
            "inside one month: empty"
        );
    }

    #[test]
    fn a_rollup_upsert_adds_every_sum_column_under_its_key() {
        assert_eq!(
            rollup_upsert_sql(
                Backend::Postgres,
                "t",
                &["day", "bucket"],
                &["calls", "errors"],
                2
            ),
            "INSERT INTO t (tenant_id, day, bucket, calls, errors) VALUES \
             ($1,$2,$3,$4,$5),($6,$7,$8,$9,$10) ON CONFLICT (tenant_id, day, bucket) DO UPDATE SET \
             calls = t.calls + excluded.calls, errors = t.errors + excluded.errors"
        );
    }

    #[test]
    fn values_rows_number_postgres_parameters_and_leave_sqlite_ones_anonymous() {
        assert_eq!(values_rows(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(values_rows(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
    }
}
