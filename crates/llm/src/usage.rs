//! Usage grouped by any subset of day, provider, model, operation and conversation.
//!
//! A report is a list of [`UsageRow`]s, one per distinct [`UsageKey`] under a [`GroupBy`]:
//! the key holds only the grouped dimensions. [`UsageTotals`] add by [`UsageTotals::merge`],
//! so rows can be built from stored daily rollups or from raw calls alike.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::ModelCall;
use crate::latency::LatencyHistogram;
use crate::{CallStatus, Cost, Operation, TokenCounts};

const DAY_MS: i64 = 86_400_000;

/// A dimension usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Day,
    Provider,
    Model,
    Operation,
    Conversation,
}

impl Dimension {
    /// Every dimension, in column order.
    pub const ALL: [Dimension; 5] = [
        Dimension::Day,
        Dimension::Provider,
        Dimension::Model,
        Dimension::Operation,
        Dimension::Conversation,
    ];

    /// The name in `group_by` (and the CSV column, except `conversation` whose column is
    /// `conversation_id`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
            Dimension::Operation => "operation",
            Dimension::Conversation => "conversation",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Dimension::Conversation => "conversation_id",
            other => other.as_str(),
        }
    }
}

/// Why a `group_by` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "group_by: {0:?} is not a dimension; allowed: day, provider, model, operation, conversation"
)]
pub struct GroupByError(pub String);

/// A set of dimensions, always iterated in [`Dimension::ALL`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupBy(BTreeSet<Dimension>);

impl GroupBy {
    /// No grouping: one row with every call.
    pub fn none() -> GroupBy {
        GroupBy::default()
    }

    /// Parses a comma-separated list (`"day,provider,model"`); blanks around items are
    /// ignored, repeats count once, an empty string groups nothing.
    ///
    /// ```
    /// use llm::usage::{Dimension, GroupBy};
    /// let g = GroupBy::parse("model, day").unwrap();
    /// assert_eq!(g.dimensions().collect::<Vec<_>>(), [Dimension::Day, Dimension::Model]);
    /// assert_eq!(GroupBy::parse("day,region").unwrap_err().0, "region");
    /// ```
    pub fn parse(text: &str) -> Result<GroupBy, GroupByError> {
        let mut set = BTreeSet::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let d = Dimension::ALL
                .into_iter()
                .find(|d| d.as_str() == item)
                .ok_or_else(|| GroupByError(item.to_string()))?;
            set.insert(d);
        }
        Ok(GroupBy(set))
    }

    /// A set of the given dimensions.
    pub fn of(dimensions: impl IntoIterator<Item = Dimension>) -> GroupBy {
        GroupBy(dimensions.into_iter().collect())
    }

    /// Whether `d` is grouped by.
    pub fn contains(&self, d: Dimension) -> bool {
        self.0.contains(&d)
    }

    /// The dimensions, in column order.
    pub fn dimensions(&self) -> impl Iterator<Item = Dimension> + '_ {
        self.0.iter().copied()
    }

    /// The canonical text (`"day,provider"`), e.g. for a cache key.
    pub fn to_text(&self) -> String {
        self.dimensions()
            .map(Dimension::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The day number (days since 1970-01-01, UTC) of a Unix-millisecond time.
///
/// ```
/// use llm::usage::{day_of, format_day};
/// assert_eq!(format_day(day_of(1_764_806_400_000)), "2025-12-04");
/// assert_eq!(day_of(-1), -1);
/// ```
pub fn day_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i64) -> String {
    crate::price::format_day(day)
}

/// The day number of a `YYYY-MM-DD` date (1970 to 9999), if it is one.
pub fn parse_day(text: &str) -> Option<i64> {
    crate::price::parse_day(text)
}

/// A group's key: the grouped dimensions' values, `None` for the others. A call without a
/// conversation has `conversation: None` also when grouping by conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UsageKey {
    /// Day number (see [`day_of`]).
    pub day: Option<i64>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub operation: Option<Operation>,
    pub conversation: Option<String>,
}

impl UsageKey {
    /// The key of a call under `group_by`.
    pub fn of_call(call: &ModelCall, group_by: &GroupBy) -> UsageKey {
        let g = |d| group_by.contains(d);
        UsageKey {
            day: g(Dimension::Day).then(|| day_of(call.time_ms)),
            provider: g(Dimension::Provider).then(|| call.provider.clone()),
            model: g(Dimension::Model).then(|| call.model.clone()),
            operation: g(Dimension::Operation).then_some(call.operation),
            conversation: if g(Dimension::Conversation) {
                call.conversation_id.clone()
            } else {
                None
            },
        }
    }
}

/// The sums of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub calls: u64,
    pub errors: u64,
    pub tokens: TokenCounts,
    /// Sum of the effective cost of priced calls.
    pub cost: Cost,
    /// Calls with no price (their cost is not in `cost`).
    pub unpriced_calls: u64,
    pub latency: LatencyHistogram,
}

impl UsageTotals {
    /// Counts one call: its tokens, its effective cost ([`ModelCall::cost`]) or one more
    /// unpriced call, and its duration. Sums saturate rather than wrap.
    ///
    /// ```
    /// use llm::usage::UsageTotals;
    /// use llm::{CallStatus, Cost, ModelCall, Operation, TokenCounts};
    /// let call = ModelCall {
    ///     id: "a".into(), time_ms: 0, provider: "openai".into(), model: "gpt-4o".into(),
    ///     operation: Operation::Chat, conversation_id: None, duration_us: 900_000,
    ///     tokens: TokenCounts { input: 10, output: 5, ..TokenCounts::default() },
    ///     status: CallStatus::Success, error_type: None,
    ///     client_cost: None, computed_cost: Some(Cost::from_picodollars(75)),
    /// };
    /// let mut totals = UsageTotals::default();
    /// totals.add_call(&call);
    /// totals.add_call(&ModelCall { computed_cost: None, ..call });
    /// assert_eq!((totals.calls, totals.unpriced_calls, totals.tokens.total()), (2, 1, 30));
    /// assert_eq!(totals.cost, Cost::from_picodollars(75));
    /// ```
    pub fn add_call(&mut self, call: &ModelCall) {
        self.calls = self.calls.saturating_add(1);
        if call.status == CallStatus::Error {
            self.errors = self.errors.saturating_add(1);
        }
        self.tokens = saturating_tokens(&self.tokens, &call.tokens);
        match call.cost() {
            Some(cost) => self.cost = self.cost.saturating_add(cost),
            None => self.unpriced_calls = self.unpriced_calls.saturating_add(1),
        }
        self.latency.record(call.duration_us);
    }

    /// Adds another group's sums.
    pub fn merge(&mut self, other: &UsageTotals) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.tokens = saturating_tokens(&self.tokens, &other.tokens);
        self.cost = self.cost.saturating_add(other.cost);
        self.unpriced_calls = self.unpriced_calls.saturating_add(other.unpriced_calls);
        self.latency.merge(&other.latency);
    }
}

fn saturating_tokens(a: &TokenCounts, b: &TokenCounts) -> TokenCounts {
    TokenCounts {
        input: a.input.saturating_add(b.input),
        output: a.output.saturating_add(b.output),
        cache_read: a.cache_read.saturating_add(b.cache_read),
        cache_write: a.cache_write.saturating_add(b.cache_write),
        reasoning: a.reasoning.saturating_add(b.reasoning),
    }
}

/// Tokens by exclusive type and their total, as the API shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensView {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    pub total: u64,
}

impl From<&TokenCounts> for TokensView {
    fn from(t: &TokenCounts) -> Self {
        TokensView {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
            reasoning: t.reasoning,
            total: t.total(),
        }
    }
}

/// One row of `GET /api/v1/llm/usage`. Key fields appear only for grouped dimensions
/// (`conversation_id` is `null` in a row of calls outside any conversation). Cost is given
/// exactly twice: integer picodollars (`cost_picodollars`, may exceed 2^53 for totals above
/// about $9,000, so JavaScript clients should read `cost_usd`) and a decimal dollar string
/// (`cost_usd`). Latencies are milliseconds, within ±4.43 % (see [`crate::latency`]), `null`
/// without calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Outer `None`: not grouped by conversation; `Some(None)`: calls without one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub conversation_id: Option<Option<String>>,
    pub calls: u64,
    pub errors: u64,
    pub tokens: TokensView,
    pub cost_picodollars: u64,
    pub cost_usd: String,
    pub unpriced_calls: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// A present field (even `null`) is `Some`; an absent one is `None` via `default`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

impl UsageRow {
    /// The row of a group.
    ///
    /// ```
    /// use llm::usage::{GroupBy, UsageKey, UsageRow, UsageTotals};
    /// let g = GroupBy::parse("day,model").unwrap();
    /// let key = UsageKey { day: Some(20_426), model: Some("gpt-4o".into()), ..UsageKey::default() };
    /// let row = UsageRow::new(&key, &UsageTotals::default(), &g);
    /// assert_eq!(row.day.as_deref(), Some("2025-12-04"));
    /// assert_eq!(UsageRow::csv_header(&g)[..2], ["day", "model"]);
    /// assert_eq!(row.csv_record(&g)[..2], ["2025-12-04", "gpt-4o"]);
    /// ```
    pub fn new(key: &UsageKey, totals: &UsageTotals, group_by: &GroupBy) -> UsageRow {
        let g = |d| group_by.contains(d);
        UsageRow {
            day: if g(Dimension::Day) {
                key.day.map(format_day)
            } else {
                None
            },
            provider: if g(Dimension::Provider) {
                key.provider.clone()
            } else {
                None
            },
            model: if g(Dimension::Model) {
                key.model.clone()
            } else {
                None
            },
            operation: if g(Dimension::Operation) {
                key.operation
            } else {
                None
            },
            conversation_id: g(Dimension::Conversation).then(|| key.conversation.clone()),
            calls: totals.calls,
            errors: totals.errors,
            tokens: TokensView::from(&totals.tokens),
            cost_picodollars: totals.cost.picodollars(),
            cost_usd: totals.cost.usd_string(),
            unpriced_calls: totals.unpriced_calls,
            p50_ms: totals.latency.quantile_us(0.5).map(|us| us / 1000.0),
            p95_ms: totals.latency.quantile_us(0.95).map(|us| us / 1000.0),
        }
    }

    /// The CSV header for rows grouped by `group_by`: the grouped dimensions in column
    /// order, then the measures.
    pub fn csv_header(group_by: &GroupBy) -> Vec<&'static str> {
        let mut header: Vec<&'static str> = group_by.dimensions().map(Dimension::column).collect();
        header.extend_from_slice(&CSV_MEASURES);
        header
    }

    /// The CSV fields of this row, matching [`UsageRow::csv_header`]. Empty fields for
    /// missing values (no conversation, no latency). Values are label-safe strings and
    /// numbers, so no field needs quoting.
    pub fn csv_record(&self, group_by: &GroupBy) -> Vec<String> {
        let mut out: Vec<String> = group_by
            .dimensions()
            .map(|d| match d {
                Dimension::Day => self.day.clone().unwrap_or_default(),
                Dimension::Provider => self.provider.clone().unwrap_or_default(),
                Dimension::Model => self.model.clone().unwrap_or_default(),
                Dimension::Operation => self
                    .operation
                    .map(|o| o.as_str().to_string())
                    .unwrap_or_default(),
                Dimension::Conversation => {
                    self.conversation_id.clone().flatten().unwrap_or_default()
                }
            })
            .collect();
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        out.extend([
            self.calls.to_string(),
            self.errors.to_string(),
            self.tokens.input.to_string(),
            self.tokens.output.to_string(),
            self.tokens.cache_read.to_string(),
            self.tokens.cache_write.to_string(),
            self.tokens.reasoning.to_string(),
            self.tokens.total.to_string(),
            self.cost_picodollars.to_string(),
            self.cost_usd.clone(),
            self.unpriced_calls.to_string(),
            ms(self.p50_ms),
            ms(self.p95_ms),
        ]);
        out
    }
}

/// The measure columns of the CSV, after the grouped dimensions.
pub const CSV_MEASURES: [&str; 13] = [
    "calls",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_picodollars",
    "cost_usd",
    "unpriced_calls",
    "p50_ms",
    "p95_ms",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn call(
        i: u64,
        day: i64,
        model: &str,
        conversation: Option<&str>,
        cost: Option<u64>,
    ) -> ModelCall {
        ModelCall {
            id: format!("c{i}"),
            time_ms: day * DAY_MS + (i as i64 % DAY_MS),
            provider: "openai".into(),
            model: model.into(),
            operation: Operation::Chat,
            conversation_id: conversation.map(str::to_string),
            duration_us: 1_000 + i * 37,
            tokens: TokenCounts {
                input: i,
                output: 2 * i,
                cache_read: 3,
                cache_write: 0,
                reasoning: i % 5,
            },
            status: if i.is_multiple_of(7) {
                CallStatus::Error
            } else {
                CallStatus::Success
            },
            error_type: None,
            client_cost: None,
            computed_cost: cost.map(Cost::from_picodollars),
        }
    }

    #[test]
    fn group_by_parses_sets_and_names_the_unknown_item() {
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::none());
        assert_eq!(
            GroupBy::parse(" day , day,model ").unwrap().to_text(),
            "day,model"
        );
        assert_eq!(
            GroupBy::parse("conversation,operation,model,provider,day")
                .unwrap()
                .to_text(),
            "day,provider,model,operation,conversation"
        );
        let err = GroupBy::parse("day,Model").unwrap_err();
        assert_eq!(err.0, "Model");
        assert!(err.to_string().starts_with("group_by:"), "{err}");
        assert!(GroupBy::parse("day,,").is_ok());
    }

    #[test]
    fn days_format_and_parse() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("2025-12-04"), Some(20_426));
        assert_eq!(format_day(20_426), "2025-12-04");
        assert_eq!(parse_day("2025-13-01"), None);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
    }

    #[test]
    fn rows_show_grouped_keys_and_exact_cost() {
        let g = GroupBy::parse("day,model,conversation").unwrap();
        let mut totals = UsageTotals::default();
        let priced = call(1, 20_426, "gpt-4o", None, Some(1_250_000_000_000));
        totals.add_call(&priced);
        totals.add_call(&call(2, 20_426, "gpt-4o", None, None));
        let key = UsageKey::of_call(&priced, &g);
        assert_eq!(key.provider, None);
        let row = UsageRow::new(&key, &totals, &g);
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["day"], "2025-12-04");
        assert!(json.get("provider").is_none());
        assert!(
            json["conversation_id"].is_null()
                && json.as_object().unwrap().contains_key("conversation_id")
        );
        assert_eq!(json["cost_usd"], "1.25");
        assert_eq!(json["cost_picodollars"], 1_250_000_000_000u64);
        assert_eq!(json["unpriced_calls"], 1);
        assert_eq!(json["tokens"]["total"], 1 + 2 + 3 + 2 + 4 + 3 + 1 + 2);
        let back: UsageRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, row);
        let header = UsageRow::csv_header(&g);
        let record = row.csv_record(&g);
        assert_eq!(header.len(), record.len());
        assert_eq!(header[..4], ["day", "model", "conversation_id", "calls"]);
        assert_eq!(record[..4], ["2025-12-04", "gpt-4o", "", "2"]);
        assert_eq!(header.last(), Some(&"p95_ms"));
        let none = GroupBy::none();
        assert_eq!(UsageRow::csv_header(&none).len(), CSV_MEASURES.len());
        assert_eq!(
            UsageRow::new(&UsageKey::default(), &UsageTotals::default(), &none).p50_ms,
            None
        );
    }

    proptest! {
        /// Totals built by merging per-group totals equal totals built call by call, and the
        /// per-group sums add up to the ungrouped total.
        #[test]
        fn grouping_and_merging_agree(
            spec in proptest::collection::vec((0u64..1_000, 0i64..3, 0usize..3, proptest::option::of(0usize..2), proptest::option::of(0u64..1_000_000)), 0..60),
            dims in proptest::collection::btree_set(0usize..5, 0..5),
        ) {
            let models = ["gpt-4o", "gpt-4o-mini", "o3"];
            let convs = ["a", "b"];
            let calls: Vec<ModelCall> = spec.iter().enumerate().map(|(i, (n, day, m, c, cost))| {
                call(i as u64 * 1000 + n, 20_000 + day, models[*m], c.map(|c| convs[c]), *cost)
            }).collect();
            let g = GroupBy::of(dims.iter().map(|i| Dimension::ALL[*i]));
            let mut groups: BTreeMap<UsageKey, UsageTotals> = BTreeMap::new();
            let mut all = UsageTotals::default();
            for c in &calls {
                groups.entry(UsageKey::of_call(c, &g)).or_default().add_call(c);
                all.add_call(c);
            }
            let mut merged = UsageTotals::default();
            for t in groups.values() {
                merged.merge(t);
            }
            prop_assert_eq!(&merged, &all);
            prop_assert_eq!(all.calls, calls.len() as u64);
            prop_assert_eq!(all.unpriced_calls, calls.iter().filter(|c| c.cost().is_none()).count() as u64);
            prop_assert_eq!(all.cost.picodollars(), calls.iter().filter_map(|c| c.cost()).map(|c| c.picodollars()).sum::<u64>());
            for (key, totals) in &groups {
                let row = UsageRow::new(key, totals, &g);
                prop_assert_eq!(UsageRow::csv_header(&g).len(), row.csv_record(&g).len());
            }
        }
    }
}
