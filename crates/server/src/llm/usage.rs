//! Usage queries: parsing `from`, `to` and `group_by`, asking the store, and rendering the
//! answer as JSON or CSV. Rows are the `llm` crate's [`UsageRow`]s, so the API, the CSV and the
//! rollups agree on every number.

use llm::usage::{format_day, Dimension, GroupBy, UsageKey, UsageRow, UsageTotals};
use serde::Serialize;
use store::{Store, StoreError};
use utoipa::ToSchema;

/// Longest range one usage query may cover, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The range when `from` is not given: the 30 days ending with `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// A validated usage query: UTC day numbers, both ends included, and the dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageQuery {
    /// Days since 1970-01-01.
    pub from_day: i64,
    pub to_day: i64,
    pub group_by: GroupBy,
}

/// Why a query was refused: the parameter and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub parameter: &'static str,
    pub reason: String,
    /// The parameters are each well-formed but do not go together (`from` after `to`, a range
    /// too long): 422 rather than 400.
    pub conflicting: bool,
}

/// The day number of a `YYYY-MM-DD` date (any year 0000 to 9999; before 1970 is negative).
fn parse_day(text: &str) -> Option<i64> {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, format).ok()?;
    (text.len() == 10).then(|| i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
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
        let day = |parameter: &'static str, text: &str| {
            parse_day(text).ok_or_else(|| QueryError {
                parameter,
                reason: format!(
                    "`{}` is not a date; write YYYY-MM-DD (UTC)",
                    crate::problem::excerpt(text, 40)
                ),
                conflicting: false,
            })
        };
        let to_day = match to {
            Some(t) => day("to", t)?,
            None => today_day,
        };
        let from_day = match from {
            Some(f) => day("from", f)?,
            None => to_day - (DEFAULT_RANGE_DAYS - 1),
        };
        if from_day > to_day {
            return Err(QueryError {
                parameter: "from",
                reason: "from must not be after to".into(),
                conflicting: true,
            });
        }
        if to_day - from_day + 1 > MAX_RANGE_DAYS {
            return Err(QueryError {
                parameter: "to",
                reason: format!("a query covers at most {MAX_RANGE_DAYS} days"),
                conflicting: true,
            });
        }
        let group_by = match group_by {
            None => GroupBy::of([Dimension::Day]),
            Some(list) => GroupBy::parse(list).map_err(|e| QueryError {
                parameter: "group_by",
                reason: format!(
                    "unknown dimension `{}`; use any of day, provider, model, operation, conversation",
                    crate::problem::excerpt(&e.0, 40)
                ),
                conflicting: false,
            })?,
        };
        Ok(UsageQuery {
            from_day,
            to_day,
            group_by,
        })
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
    pub group_by: Vec<&'static str>,
    /// One entry per group with any call, ordered by the dimensions: the grouped dimensions'
    /// values, `calls`, `errors`, `tokens` by exclusive type and `total`, `cost_picodollars`
    /// (exact), `cost_usd` (exact decimal string), `unpriced_calls`, `p50_ms`, `p95_ms`.
    #[schema(value_type = Vec<Object>)]
    pub groups: Vec<UsageRow>,
    /// Every call of the range, in the same shape without dimensions.
    #[schema(value_type = Object)]
    pub totals: UsageRow,
}

/// Runs a query against the store.
pub async fn compute(
    store: &Store,
    tenant_id: &str,
    query: &UsageQuery,
) -> Result<UsageAnswer, StoreError> {
    let dimensions: Vec<Dimension> = query.group_by.dimensions().collect();
    let rows = store
        // The store's range excludes its end; ours includes `to`.
        .llm_usage(tenant_id, query.from_day, query.to_day + 1, &dimensions)
        .await?;
    let mut all = UsageTotals::default();
    let mut groups = Vec::with_capacity(rows.len());
    for (key, totals) in rows {
        all.merge(&totals);
        groups.push(UsageRow::new(&key, &totals, &query.group_by));
    }
    Ok(UsageAnswer {
        from: format_day(query.from_day),
        to: format_day(query.to_day),
        group_by: query.group_by.dimensions().map(Dimension::as_str).collect(),
        groups,
        totals: UsageRow::new(&UsageKey::default(), &all, &GroupBy::none()),
    })
}

/// The answer as CSV (RFC 4180): a header, one line per group, no totals line.
pub fn to_csv(answer: &UsageAnswer, group_by: &GroupBy) -> String {
    let mut out = String::new();
    out.push_str(&UsageRow::csv_header(group_by).join(","));
    out.push_str("\r\n");
    for row in &answer.groups {
        let cells: Vec<String> = row
            .csv_record(group_by)
            .iter()
            .map(|c| csv_cell(c))
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A CSV field, quoted when it must be (conversation ids may hold `,` or `"`); a field
/// starting with `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet never runs a
/// client-chosen id as a formula. Numbers are never negative, so they are left alone.
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
        assert_eq!(q.group_by, GroupBy::of([Dimension::Day]));
        let q = UsageQuery::parse(
            Some("1970-01-02"),
            Some("1970-01-31"),
            Some("model,day,model"),
            today,
        )
        .unwrap();
        assert_eq!((q.from_day, q.to_day), (1, 30));
        assert_eq!(q.group_by, GroupBy::of([Dimension::Day, Dimension::Model]));
        assert!(
            UsageQuery::parse(None, None, Some(""), today)
                .unwrap()
                .group_by
                == GroupBy::none()
        );
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
    }

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
    }
}
