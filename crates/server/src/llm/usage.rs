//! Usage queries: parsing `from`, `to` and `group_by`, asking the store, and rendering the
//! answer as JSON or CSV.

use llm::usage::{Dimension, UsageTotals};
use llm::TokenCounts;
use serde::Serialize;
use store::{Store, StoreError};
use utoipa::ToSchema;

/// Longest range one usage query may cover, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The range when `from` is not given: the 30 days ending with `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// A validated usage query: UTC days, both ends included, and the dimensions in canonical
/// order (day, provider, model, operation, conversation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageQuery {
    /// Days since 1970-01-01.
    pub from_day: i64,
    pub to_day: i64,
    pub group_by: Vec<Dimension>,
}

/// Why a query was refused: the parameter and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub parameter: &'static str,
    pub reason: String,
}

impl UsageQuery {
    /// Reads the query parameters. `to` defaults to `today_day`, `from` to 29 days before
    /// `to`, `group_by` to `day`; `group_by=` (empty) asks for one total.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        group_by: Option<&str>,
        today_day: i64,
    ) -> Result<UsageQuery, QueryError> {
        let to_day = match to {
            Some(t) => parse_day("to", t)?,
            None => today_day,
        };
        let from_day = match from {
            Some(f) => parse_day("from", f)?,
            None => to_day - (DEFAULT_RANGE_DAYS - 1),
        };
        if from_day > to_day {
            return Err(QueryError {
                parameter: "from",
                reason: "from must not be after to".into(),
            });
        }
        if to_day - from_day + 1 > MAX_RANGE_DAYS {
            return Err(QueryError {
                parameter: "to",
                reason: format!("a query covers at most {MAX_RANGE_DAYS} days"),
            });
        }
        let mut dims = Vec::new();
        match group_by {
            None => dims.push(Dimension::Day),
            Some(list) => {
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let dim = match name {
                        "day" => Dimension::Day,
                        "provider" => Dimension::Provider,
                        "model" => Dimension::Model,
                        "operation" => Dimension::Operation,
                        "conversation" => Dimension::Conversation,
                        other => {
                            return Err(QueryError {
                                parameter: "group_by",
                                reason: format!(
                                    "unknown dimension `{}`; use any of day, provider, model, \
                                     operation, conversation",
                                    crate::problem::excerpt(other, 40)
                                ),
                            })
                        }
                    };
                    dims.push(dim);
                }
            }
        }
        dims.sort_unstable();
        dims.dedup();
        Ok(UsageQuery {
            from_day,
            to_day,
            group_by: dims,
        })
    }
}

fn parse_day(parameter: &'static str, text: &str) -> Result<i64, QueryError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format)
        .map(|d| i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
        .map_err(|_| QueryError {
            parameter,
            reason: format!(
                "`{}` is not a date; write YYYY-MM-DD (UTC)",
                crate::problem::excerpt(text, 40)
            ),
        })
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// `YYYY-MM-DD` of a day number.
pub fn day_string(day: i64) -> String {
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02}",
                d.year(),
                u8::from(d.month()),
                d.day()
            )
        })
        .unwrap_or_default()
}

/// One group of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageGroup {
    /// `YYYY-MM-DD` (UTC), when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The conversation id (`null` for calls in no conversation), when grouped by conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Option<String>>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The sums of a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Totals {
    pub calls: u64,
    /// Calls with status `error`.
    pub errors: u64,
    /// Exclusive token counts by type, and their total.
    pub tokens: Tokens,
    /// The effective cost (the client's when sent, else computed) of the priced calls, exact,
    /// in picodollars (10⁻¹² USD).
    pub cost_picodollars: u64,
    /// The same cost in dollars, for display.
    pub cost_usd: f64,
    /// Calls with no price: not in the cost.
    pub unpriced_calls: u64,
    /// Median latency in milliseconds (within ±4.4 %), `null` without calls.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds (within ±4.4 %).
    pub latency_p95_ms: Option<f64>,
}

/// Tokens by exclusive type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    pub total: u64,
}

impl From<&TokenCounts> for Tokens {
    fn from(t: &TokenCounts) -> Tokens {
        Tokens {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
            reasoning: t.reasoning,
            total: t.total(),
        }
    }
}

impl From<&UsageTotals> for Totals {
    fn from(u: &UsageTotals) -> Totals {
        let ms = |q: f64| u.latency.quantile_us(q).map(|us| (us / 10.0).round() / 100.0);
        Totals {
            calls: u.calls,
            errors: u.errors,
            tokens: Tokens::from(&u.tokens),
            cost_picodollars: u.cost.picodollars(),
            cost_usd: u.cost.usd(),
            unpriced_calls: u.unpriced_calls,
            latency_p50_ms: ms(0.5),
            latency_p95_ms: ms(0.95),
        }
    }
}

/// A usage answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageAnswer {
    /// First day, `YYYY-MM-DD` (UTC), included.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// The dimensions of each group, in canonical order.
    #[schema(value_type = Vec<String>)]
    pub group_by: Vec<Dimension>,
    /// One entry per group with any call, ordered by the dimensions.
    pub groups: Vec<UsageGroup>,
    /// Every call of the range.
    pub totals: Totals,
}

/// Runs a query against the store.
pub async fn compute(
    store: &Store,
    tenant_id: &str,
    query: &UsageQuery,
) -> Result<UsageAnswer, StoreError> {
    let rows = store
        .llm_usage(tenant_id, query.from_day, query.to_day, &query.group_by)
        .await?;
    let mut all = UsageTotals::default();
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        merge(&mut all, &row.totals);
        let has = |d: Dimension| query.group_by.contains(&d);
        groups.push(UsageGroup {
            day: has(Dimension::Day).then(|| row.day.map(day_string).unwrap_or_default()),
            provider: has(Dimension::Provider).then(|| row.provider.clone().unwrap_or_default()),
            model: has(Dimension::Model).then(|| row.model.clone().unwrap_or_default()),
            operation: has(Dimension::Operation)
                .then(|| row.operation.clone().unwrap_or_default()),
            conversation_id: has(Dimension::Conversation).then(|| row.conversation_id.clone()),
            totals: Totals::from(&row.totals),
        });
    }
    Ok(UsageAnswer {
        from: day_string(query.from_day),
        to: day_string(query.to_day),
        group_by: query.group_by.clone(),
        groups,
        totals: Totals::from(&all),
    })
}

fn merge(into: &mut UsageTotals, other: &UsageTotals) {
    into.calls = into.calls.saturating_add(other.calls);
    into.errors = into.errors.saturating_add(other.errors);
    into.tokens = into.tokens.checked_add(&other.tokens).unwrap_or(TokenCounts {
        input: u64::MAX,
        output: u64::MAX,
        cache_read: u64::MAX,
        cache_write: u64::MAX,
        reasoning: u64::MAX,
    });
    into.cost = into
        .cost
        .checked_add(other.cost)
        .unwrap_or(llm::Cost::from_picodollars(u64::MAX));
    into.unpriced_calls = into.unpriced_calls.saturating_add(other.unpriced_calls);
    into.latency.merge(&other.latency);
}

/// Exact dollars of a picodollar amount: `0.000123450000`.
pub fn usd_exact(picodollars: u64) -> String {
    format!(
        "{}.{:012}",
        picodollars / llm::Cost::PER_USD,
        picodollars % llm::Cost::PER_USD
    )
}

/// The answer as CSV (RFC 4180): a header, one line per group, no totals line.
pub fn to_csv(answer: &UsageAnswer) -> String {
    let mut out = String::new();
    let mut header: Vec<&str> = answer
        .group_by
        .iter()
        .map(|d| match d {
            Dimension::Day => "day",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
            Dimension::Operation => "operation",
            Dimension::Conversation => "conversation_id",
        })
        .collect();
    header.extend([
        "calls",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "latency_p50_ms",
        "latency_p95_ms",
    ]);
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for g in &answer.groups {
        let mut cells: Vec<String> = Vec::new();
        for d in &answer.group_by {
            let value = match d {
                Dimension::Day => g.day.clone(),
                Dimension::Provider => g.provider.clone(),
                Dimension::Model => g.model.clone(),
                Dimension::Operation => g.operation.clone(),
                Dimension::Conversation => g.conversation_id.clone().flatten(),
            };
            cells.push(csv_cell(value.as_deref().unwrap_or("")));
        }
        let t = &g.totals;
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        cells.extend([
            t.calls.to_string(),
            t.errors.to_string(),
            t.tokens.input.to_string(),
            t.tokens.output.to_string(),
            t.tokens.cache_read.to_string(),
            t.tokens.cache_write.to_string(),
            t.tokens.reasoning.to_string(),
            t.tokens.total.to_string(),
            usd_exact(t.cost_picodollars),
            t.unpriced_calls.to_string(),
            opt(t.latency_p50_ms),
            opt(t.latency_p95_ms),
        ]);
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with `'` so a
/// spreadsheet never runs a client-chosen id as a formula.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_have_documented_defaults_and_errors() {
        let today = 20_000;
        let q = UsageQuery::parse(None, None, None, today).unwrap();
        assert_eq!((q.from_day, q.to_day), (today - 29, today));
        assert_eq!(q.group_by, vec![Dimension::Day]);
        let q = UsageQuery::parse(
            Some("1970-01-02"),
            Some("1970-01-31"),
            Some("model,day,model"),
            today,
        )
        .unwrap();
        assert_eq!((q.from_day, q.to_day), (1, 30));
        assert_eq!(q.group_by, vec![Dimension::Day, Dimension::Model]);
        assert!(UsageQuery::parse(None, None, Some(""), today)
            .unwrap()
            .group_by
            .is_empty());
        assert_eq!(
            UsageQuery::parse(None, None, Some("tenant"), today)
                .unwrap_err()
                .parameter,
            "group_by"
        );
        assert_eq!(
            UsageQuery::parse(Some("2026-13-01"), None, None, today)
                .unwrap_err()
                .parameter,
            "from"
        );
        assert_eq!(
            UsageQuery::parse(Some("2026-02-01"), Some("2026-01-01"), None, today)
                .unwrap_err()
                .parameter,
            "from"
        );
        assert_eq!(
            UsageQuery::parse(Some("2020-01-01"), Some("2026-01-01"), None, today)
                .unwrap_err()
                .parameter,
            "to"
        );
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_426), "2025-12-04");
    }

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(usd_exact(1_234_500_000), "0.001234500000");
        assert_eq!(usd_exact(2 * llm::Cost::PER_USD + 5), "2.000000000005");
    }
}
