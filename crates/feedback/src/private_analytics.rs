//! Differentially private feedback analytics: the query, the per-person contribution cap, the
//! public group keys, the sensitivities and the noisy release with its accuracy.
//!
//! The neighbouring relation is *add or remove one person* (`user_id`) with all their items.
//! Each person contributes at most [`PrivacyConfig::contribution_cap`] items to a query (the
//! earliest in the window by `(occurred_at, id)`), and every value is clamped to a declared
//! bound, so one person changes the true answer by at most the declared sensitivity; noise of
//! that scale (discrete Laplace or discrete Gaussian, from the `privacy` crate) hides them.
//!
//! Group keys are public and never read from the data: days and weeks come from the query's
//! window, types and channels from their closed sets, regions from the tenant's declared list
//! (plus `other`), segments from the closed set of Weber sensitivity segments (plus `unknown`).
//! A group with no items is still released (with noise), so the set of keys reveals nothing.
//!
//! Means are released as a noisy (centred) sum and a noisy count, ε and δ split evenly, and the
//! mean's accuracy is derived by interval arithmetic from the two 97.5% intervals (95% jointly).
//! Noisy counts are post-processed to at least 0 and means clamped to the value's bounds
//! (post-processing costs no privacy).
//!
//! [`answer`] is pure: the adapter loads [`Row`]s, passes a cryptographic random source and
//! records the spend (the budget ledger) before returning the [`Release`].

use std::collections::{BTreeMap, HashMap};

use privacy::budget::Spend;
use privacy::{Delta, Epsilon};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::PrivacyConfig;
use crate::item::{Channel, FeedbackKind, FieldError};
use crate::policy::Principle;
use crate::routing::Mode;

pub use privacy::{Mechanism, Noise, PrivacyError};

const DAY_MS: i64 = 86_400_000;
/// Most day groups of a query (a year, leap or not).
pub const MAX_DAY_GROUPS: i64 = 366;
/// Most week groups of a query.
pub const MAX_WEEK_GROUPS: i64 = 53;
/// Longest query window: ten years (the seed's research retention).
pub const MAX_WINDOW_MS: i64 = 3_660 * DAY_MS;
/// Latest accepted instant (9999-12-31T23:59:59.999Z).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Smallest ε a query may spend (below it the noise drowns any answer).
pub const MIN_QUERY_EPSILON: f64 = 0.001;
/// Largest ε a query may spend.
pub const MAX_QUERY_EPSILON: f64 = 10.0;
/// The default per-query δ of the Gaussian mechanism (the seed's `delta`).
pub const DEFAULT_DELTA: f64 = 1e-6;
/// The Weber sensitivity segments (closed set; `unknown` is added for people without one).
pub const SEGMENTS: [&str; 4] = [
    "Highly_Sensitive",
    "Moderately_Sensitive",
    "Low_Sensitive",
    "Insensitive",
];
/// The text length bound, in characters (the seed's `sensitivity_bounds.text_length`).
pub const TEXT_LENGTH_BOUND: u32 = 100;

/// What a query measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Number of items.
    Count,
    /// Mean rating (1 to 5) of rated items.
    RatingMean,
    /// Number of items per rating 1 to 5.
    RatingHistogram,
    /// Mean VADER compound sentiment (−1 to 1, quantised to 0.01) of analysed items.
    SentimentMean,
    /// Number of items violating each of the seven principles.
    ViolationCount,
    /// Mean alignment score (0 to 1, quantised to 0.001) of checked items.
    AlignmentMean,
    /// Mean text length in characters, each clamped to 100.
    TextLengthMean,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 7] = [
        Metric::Count,
        Metric::RatingMean,
        Metric::RatingHistogram,
        Metric::SentimentMean,
        Metric::ViolationCount,
        Metric::AlignmentMean,
        Metric::TextLengthMean,
    ];

    /// The wire name (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Count => "count",
            Metric::RatingMean => "rating_mean",
            Metric::RatingHistogram => "rating_histogram",
            Metric::SentimentMean => "sentiment_mean",
            Metric::ViolationCount => "violation_count",
            Metric::AlignmentMean => "alignment_mean",
            Metric::TextLengthMean => "text_length_mean",
        }
    }

    /// The metric of a wire name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// For a mean: (centre, largest distance from the centre, unit) in integer units, where the
    /// real value is `units × unit`.
    fn mean_bounds(self) -> Option<(i64, i64, f64)> {
        match self {
            Metric::RatingMean => Some((3, 2, 1.0)),
            Metric::SentimentMean => Some((0, 100, 0.01)),
            Metric::AlignmentMean => Some((500, 500, 0.001)),
            Metric::TextLengthMean => Some((50, 50, 1.0)),
            _ => None,
        }
    }

    /// Bins per group: 5 ratings, 7 principles, else 1.
    fn bins(self) -> usize {
        match self {
            Metric::RatingHistogram => 5,
            Metric::ViolationCount => Principle::ALL.len(),
            _ => 1,
        }
    }
}

/// How answers are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One answer (default).
    #[default]
    None,
    /// Per UTC day of the window.
    Day,
    /// Per ISO week (Monday start) of the window.
    Week,
    /// Per feedback type.
    Type,
    /// Per channel.
    Channel,
    /// Per declared region, plus `other`.
    Region,
    /// Per Weber sensitivity segment, plus `unknown`.
    Segment,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 7] = [
        GroupBy::None,
        GroupBy::Day,
        GroupBy::Week,
        GroupBy::Type,
        GroupBy::Channel,
        GroupBy::Region,
        GroupBy::Segment,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Type => "type",
            GroupBy::Channel => "channel",
            GroupBy::Region => "region",
            GroupBy::Segment => "segment",
        }
    }

    /// The grouping of a wire name.
    pub fn parse(name: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// A query as received (JSON), every field loose so that validation names each fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct QueryRequest {
    /// The [`Metric`] name (required).
    #[serde(default)]
    pub metric: Option<Value>,
    /// The [`GroupBy`] name (default `none`).
    #[serde(default)]
    pub group_by: Option<Value>,
    /// Window start (inclusive): RFC 3339 text or epoch milliseconds (required).
    #[serde(default)]
    pub from: Option<Value>,
    /// Window end (exclusive): RFC 3339 text or epoch milliseconds (required).
    #[serde(default)]
    pub to: Option<Value>,
    /// ε to spend (default: the tenant's `[privacy] epsilon`, else the mode's).
    #[serde(default)]
    pub epsilon: Option<Value>,
    /// `discrete_laplace` or `discrete_gaussian` (default: the tenant's).
    #[serde(default)]
    pub mechanism: Option<Value>,
    /// δ to spend, discrete Gaussian only (default: the tenant's, else 10⁻⁶).
    #[serde(default)]
    pub delta: Option<Value>,
    /// Any other field (refused by name).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    /// What is measured.
    pub metric: Metric,
    /// How answers are grouped.
    pub group_by: GroupBy,
    /// Window start, epoch ms (inclusive).
    pub from_ms: i64,
    /// Window end, epoch ms (exclusive).
    pub to_ms: i64,
    /// The noise distribution.
    pub mechanism: Mechanism,
    /// ε spent.
    pub epsilon: Epsilon,
    /// δ spent (zero for Laplace).
    pub delta: Delta,
}

/// The default per-query ε of a mode: research 0.1 (seed), hybrid 0.1 (the seed's hybrid
/// pipeline), production 1.0.
pub fn default_epsilon(mode: Mode) -> Epsilon {
    match mode {
        Mode::Research | Mode::Hybrid => Epsilon::from_nanos(Epsilon::SCALE / 10),
        Mode::Production => Epsilon::from_nanos(Epsilon::SCALE),
    }
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn time_field(value: Option<&Value>, field: &str) -> Result<i64, FieldError> {
    let ms = match value.filter(|v| !v.is_null()) {
        None => {
            return Err(field_error(
                field,
                "is required: RFC 3339 text or epoch milliseconds",
            ))
        }
        Some(Value::String(s)) => {
            if s.len() > 64 {
                return Err(field_error(field, "is longer than 64 bytes"));
            }
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| field_error(field, format!("`{s}` is not RFC 3339: {e}")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| field_error(field, "is out of range"))?
        }
        Some(v) => v.as_i64().ok_or_else(|| {
            field_error(field, "must be RFC 3339 text or whole epoch milliseconds")
        })?,
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(field_error(
            field,
            "must lie between 1970-01-01 and 9999-12-31",
        ));
    }
    Ok(ms)
}

fn name_field<T>(
    value: Option<&Value>,
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<Option<T>, FieldError> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::String(s)) => parse(s).map(Some).ok_or_else(|| {
            let shown: String = s.chars().take(40).collect();
            field_error(
                field,
                format!("`{shown}` is not one of {}", names.join(", ")),
            )
        }),
        Some(_) => Err(field_error(
            field,
            format!("must be one of {}", names.join(", ")),
        )),
    }
}

fn number_field(value: Option<&Value>, field: &str) -> Result<Option<f64>, FieldError> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| field_error(field, "must be a number")),
    }
}

fn parse_mechanism(name: &str) -> Option<Mechanism> {
    match name {
        "discrete_laplace" => Some(Mechanism::DiscreteLaplace),
        "discrete_gaussian" => Some(Mechanism::DiscreteGaussian),
        _ => None,
    }
}

/// A query ε in bounds, as exact units.
pub fn query_epsilon(value: f64, field: &str) -> Result<Epsilon, FieldError> {
    if !(MIN_QUERY_EPSILON..=MAX_QUERY_EPSILON).contains(&value) {
        return Err(field_error(
            field,
            format!("must be in {MIN_QUERY_EPSILON}..={MAX_QUERY_EPSILON}"),
        ));
    }
    Epsilon::from_f64(value).map_err(|e| field_error(field, e.to_string()))
}

/// A query δ in bounds (greater than 0, at most 10⁻³), as exact units.
pub fn query_delta(value: f64, field: &str) -> Result<Delta, FieldError> {
    let delta = Delta::from_f64(value).map_err(|e| field_error(field, e.to_string()))?;
    if delta == Delta::ZERO {
        return Err(field_error(
            field,
            "must be greater than 0 (at least 1e-15)",
        ));
    }
    Ok(delta)
}

impl Query {
    /// Validates a request against the tenant's `[privacy]` settings and mode, naming every
    /// failing field.
    pub fn from_request(
        request: &QueryRequest,
        config: &PrivacyConfig,
        mode: Mode,
    ) -> Result<Query, Vec<FieldError>> {
        let mut errors = Vec::new();
        for name in request.unknown.keys() {
            let shown: String = name.chars().take(40).collect();
            errors.push(field_error(&shown, "is not a field of an analytics query"));
        }
        let metric_names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        let metric = match name_field(
            request.metric.as_ref(),
            "metric",
            Metric::parse,
            &metric_names,
        ) {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                errors.push(field_error(
                    "metric",
                    format!("is required: one of {}", metric_names.join(", ")),
                ));
                None
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let group_names: Vec<&str> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
        let group_by = name_field(
            request.group_by.as_ref(),
            "group_by",
            GroupBy::parse,
            &group_names,
        )
        .map_err(|e| errors.push(e))
        .ok()
        .map(Option::unwrap_or_default);
        let from = time_field(request.from.as_ref(), "from")
            .map_err(|e| errors.push(e))
            .ok();
        let to = time_field(request.to.as_ref(), "to")
            .map_err(|e| errors.push(e))
            .ok();
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                errors.push(field_error("to", "must be after `from`"));
            } else if to - from > MAX_WINDOW_MS {
                errors.push(field_error("to", "the window is longer than 3660 days"));
            } else if let Some(g @ (GroupBy::Day | GroupBy::Week)) = group_by {
                let (count, max) = match g {
                    GroupBy::Day => (day_keys(from, to).len() as i64, MAX_DAY_GROUPS),
                    _ => (week_keys(from, to).len() as i64, MAX_WEEK_GROUPS),
                };
                if count > max {
                    errors.push(field_error(
                        "group_by",
                        format!("the window spans {count} {}s, more than {max}", g.as_str()),
                    ));
                }
            }
        }
        let mechanism = name_field(
            request.mechanism.as_ref(),
            "mechanism",
            parse_mechanism,
            &["discrete_laplace", "discrete_gaussian"],
        )
        .map_err(|e| errors.push(e))
        .ok()
        .map(|m| m.unwrap_or(config.mechanism));
        let epsilon = match number_field(request.epsilon.as_ref(), "epsilon") {
            Ok(Some(e)) => query_epsilon(e, "epsilon").map_err(|e| errors.push(e)).ok(),
            Ok(None) => Some(match config.epsilon {
                Some(e) => Epsilon::from_f64(e).unwrap_or_else(|_| default_epsilon(mode)),
                None => default_epsilon(mode),
            }),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let delta = match (mechanism, number_field(request.delta.as_ref(), "delta")) {
            (_, Err(e)) => {
                errors.push(e);
                None
            }
            // δ = 0 restates what Laplace spends; any other δ asks for something it cannot
            // use.
            (Some(Mechanism::DiscreteLaplace), Ok(Some(d))) if d != 0.0 => {
                errors.push(field_error(
                    "delta",
                    "applies to the discrete_gaussian mechanism only (discrete_laplace has delta 0)",
                ));
                None
            }
            (Some(Mechanism::DiscreteLaplace), Ok(_)) => Some(Delta::ZERO),
            (_, Ok(value)) => {
                let value = value.or(config.delta).unwrap_or(DEFAULT_DELTA);
                query_delta(value, "delta").map_err(|e| errors.push(e)).ok()
            }
        };
        match (metric, group_by, from, to, mechanism, epsilon, delta) {
            (
                Some(metric),
                Some(group_by),
                Some(from_ms),
                Some(to_ms),
                Some(mechanism),
                Some(epsilon),
                Some(delta),
            ) if errors.is_empty() => Ok(Query {
                metric,
                group_by,
                from_ms,
                to_ms,
                mechanism,
                epsilon,
                delta,
            }),
            _ => Err(errors),
        }
    }

    /// What the query spends.
    pub fn spend(&self) -> Spend {
        Spend {
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }

    /// The query as stored in the ledger (small JSON, no data).
    pub fn ledger_json(&self) -> Value {
        serde_json::json!({
            "metric": self.metric.as_str(),
            "group_by": self.group_by.as_str(),
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "mechanism": mechanism_name(self.mechanism),
            "epsilon": self.epsilon.as_f64(),
            "delta": self.delta.as_f64(),
        })
    }
}

/// The wire name of a mechanism.
pub fn mechanism_name(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::DiscreteLaplace => "discrete_laplace",
        Mechanism::DiscreteGaussian => "discrete_gaussian",
    }
}

/// One feedback item as the analytics need it (never its text).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The item id (orders a person's items at equal times).
    pub id: String,
    /// The person (`user_id`); an item without one counts as its own person.
    pub person: Option<String>,
    /// When it happened, epoch ms.
    pub occurred_at_ms: i64,
    /// The feedback type.
    pub kind: FeedbackKind,
    /// The channel.
    pub channel: Channel,
    /// The region label as sent.
    pub region: Option<String>,
    /// The person's Weber sensitivity segment, if profiled.
    pub segment: Option<String>,
    /// Rating 1 to 5.
    pub rating: Option<u8>,
    /// VADER compound sentiment, if analysed.
    pub sentiment: Option<f64>,
    /// Alignment score, if checked.
    pub alignment: Option<f64>,
    /// Violated principles.
    pub violations: Vec<Principle>,
    /// Text length in characters, if the item has text.
    pub text_chars: Option<u32>,
}

/// Keeps at most `cap` items per person: each person's earliest by `(occurred_at, id)`. Rows
/// outside `[from_ms, to_ms)` are dropped first.
pub fn cap_contributions(rows: &[Row], cap: u32, from_ms: i64, to_ms: i64) -> Vec<&Row> {
    let mut by_person: HashMap<(bool, &str), Vec<&Row>> = HashMap::new();
    for row in rows
        .iter()
        .filter(|r| (from_ms..to_ms).contains(&r.occurred_at_ms))
    {
        let key = match &row.person {
            Some(p) => (true, p.as_str()),
            None => (false, row.id.as_str()),
        };
        by_person.entry(key).or_default().push(row);
    }
    let mut kept = Vec::new();
    for (_, mut items) in by_person {
        items.sort_by(|a, b| (a.occurred_at_ms, &a.id).cmp(&(b.occurred_at_ms, &b.id)));
        items.truncate(cap as usize);
        kept.extend(items);
    }
    kept.sort_by(|a, b| (a.occurred_at_ms, &a.id).cmp(&(b.occurred_at_ms, &b.id)));
    kept
}

fn day_floor(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

fn week_floor(ms: i64) -> i64 {
    let day = ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: three days after a Monday.
    (day - (day + 3).rem_euclid(7)) * DAY_MS
}

fn date_key(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => ms.to_string(),
    }
}

fn stepped_keys(start: i64, to: i64, step: i64) -> Vec<i64> {
    let mut keys = Vec::new();
    let mut at = start;
    // Bounded by the window check (at most 3660 days) in validation; the extra bound keeps a
    // direct caller from looping long.
    while at < to && keys.len() <= 4_000 {
        keys.push(at);
        at += step;
    }
    keys
}

fn day_keys(from: i64, to: i64) -> Vec<i64> {
    stepped_keys(day_floor(from), to, DAY_MS)
}

fn week_keys(from: i64, to: i64) -> Vec<i64> {
    stepped_keys(week_floor(from), to, 7 * DAY_MS)
}

/// The public group keys of a query, in release order: dates (`YYYY-MM-DD`, a week by its
/// Monday), the closed sets of types, channels and segments, or the declared regions.
pub fn group_keys(query: &Query, config: &PrivacyConfig) -> Vec<String> {
    match query.group_by {
        GroupBy::None => vec!["all".to_owned()],
        GroupBy::Day => day_keys(query.from_ms, query.to_ms)
            .into_iter()
            .map(date_key)
            .collect(),
        GroupBy::Week => week_keys(query.from_ms, query.to_ms)
            .into_iter()
            .map(date_key)
            .collect(),
        GroupBy::Type => FeedbackKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        GroupBy::Channel => Channel::ALL.iter().map(|c| c.as_str().to_owned()).collect(),
        GroupBy::Region => config
            .regions
            .iter()
            .cloned()
            .chain(std::iter::once("other".to_owned()))
            .collect(),
        GroupBy::Segment => SEGMENTS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once("unknown".to_owned()))
            .collect(),
    }
}

fn group_of(row: &Row, query: &Query, config: &PrivacyConfig) -> usize {
    match query.group_by {
        GroupBy::None => 0,
        GroupBy::Day => {
            ((day_floor(row.occurred_at_ms) - day_floor(query.from_ms)) / DAY_MS) as usize
        }
        GroupBy::Week => {
            ((week_floor(row.occurred_at_ms) - week_floor(query.from_ms)) / (7 * DAY_MS)) as usize
        }
        GroupBy::Type => row.kind as usize,
        GroupBy::Channel => row.channel as usize,
        GroupBy::Region => row
            .region
            .as_deref()
            .and_then(|r| config.regions.iter().position(|d| d == r))
            .unwrap_or(config.regions.len()),
        GroupBy::Segment => row
            .segment
            .as_deref()
            .and_then(|s| SEGMENTS.iter().position(|d| *d == s))
            .unwrap_or(SEGMENTS.len()),
    }
}

/// The per-item value of a mean metric, centred, in integer units within ±bound.
fn mean_value(metric: Metric, row: &Row) -> Option<i64> {
    let (centre, bound, _) = metric.mean_bounds()?;
    let units = match metric {
        Metric::RatingMean => i64::from(row.rating?),
        Metric::SentimentMean => (row.sentiment?.clamp(-1.0, 1.0) * 100.0).round() as i64,
        Metric::AlignmentMean => (row.alignment?.clamp(0.0, 1.0) * 1000.0).round() as i64,
        Metric::TextLengthMean => i64::from(row.text_chars?.min(TEXT_LENGTH_BOUND)),
        _ => return None,
    };
    Some((units - centre).clamp(-bound, bound))
}

/// The exact (noise-free) cells of a query: the counts, and for means the centred sums.
#[derive(Debug, Clone, PartialEq)]
struct Tally {
    counts: Vec<i64>,
    sums: Option<Vec<i64>>,
}

fn tally(query: &Query, rows: &[Row], config: &PrivacyConfig) -> Tally {
    let groups = group_keys(query, config).len();
    let bins = query.metric.bins();
    let mut counts = vec![0i64; groups * bins];
    let mut sums = query.metric.mean_bounds().map(|_| vec![0i64; groups]);
    let kept = cap_contributions(rows, config.contribution_cap, query.from_ms, query.to_ms);
    for row in kept {
        let g = group_of(row, query, config);
        if g >= groups {
            continue;
        }
        match query.metric {
            Metric::Count => counts[g] += 1,
            Metric::RatingHistogram => {
                if let Some(r @ 1..=5) = row.rating {
                    counts[g * bins + usize::from(r - 1)] += 1;
                }
            }
            Metric::ViolationCount => {
                let mut seen = [false; 7];
                for p in &row.violations {
                    seen[*p as usize] = true;
                }
                for (i, s) in seen.iter().enumerate() {
                    if *s {
                        counts[g * bins + i] += 1;
                    }
                }
            }
            _ => {
                if let (Some(v), Some(sums)) = (mean_value(query.metric, row), sums.as_mut()) {
                    sums[g] += v;
                    counts[g] += 1;
                }
            }
        }
    }
    Tally { counts, sums }
}

/// The L1 and L2 sensitivities of the count cells and (for means) the sum cells, under adding
/// or removing one person with at most `cap` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sensitivity {
    /// L1 of the count (or histogram) vector.
    pub count_l1: u64,
    /// L2 of the count vector, rounded up.
    pub count_l2: u64,
    /// L1 (= L2) of the centred-sum vector of a mean, else 0.
    pub sum: u64,
}

/// The declared sensitivities of a metric under a contribution cap.
pub fn sensitivity(metric: Metric, cap: u32) -> Sensitivity {
    let c = u64::from(cap);
    let (count_l1, count_l2) = match metric {
        // An item violates each principle at most once: up to 7 per item, c per principle.
        Metric::ViolationCount => (7 * c, ceil_sqrt(7 * c * c)),
        _ => (c, c),
    };
    let sum = metric
        .mean_bounds()
        .map(|(_, bound, _)| bound as u64 * c)
        .unwrap_or(0);
    Sensitivity {
        count_l1,
        count_l2,
        sum,
    }
}

fn ceil_sqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while r * r < n {
        r += 1;
    }
    r
}

/// Why a query could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    /// The noise could not be calibrated.
    #[error("noise calibration: {0}")]
    Calibration(#[from] PrivacyError),
}

/// One noisy release inside a query: its sensitivity, the calibrated scale and its share of ε
/// and δ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleasePart {
    /// `count` (or the histogram) or `sum` (a mean's centred sum).
    pub name: &'static str,
    /// The sensitivity the noise is calibrated to (L1 for Laplace, L2 for Gaussian).
    pub sensitivity: u64,
    /// Laplace b or Gaussian σ, in the value's units.
    pub scale: f64,
    /// ε of this part.
    pub epsilon: f64,
    /// δ of this part.
    pub delta: f64,
}

/// One released value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupValue {
    /// The group key.
    pub key: String,
    /// The bin within the group (rating `1`..`5` or a principle), for histograms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    /// The noisy value; `null` for a mean whose noisy count is not positive.
    pub value: Option<f64>,
    /// Half-width of the 95% interval around the true value (for a mean, derived from the
    /// sum's and the count's 97.5% intervals), capped at the value's range.
    pub accuracy_95: Option<f64>,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    /// What was measured.
    pub metric: Metric,
    /// The grouping.
    pub group_by: GroupBy,
    /// Window start, epoch ms.
    pub from_ms: i64,
    /// Window end, epoch ms (exclusive).
    pub to_ms: i64,
    /// The noise distribution.
    pub mechanism: Mechanism,
    /// ε spent.
    pub epsilon: f64,
    /// δ spent.
    pub delta: f64,
    /// Items per person counted.
    pub contribution_cap: u32,
    /// The noisy releases the answer is computed from.
    pub parts: Vec<ReleasePart>,
    /// The values, in key (then bin) order.
    pub groups: Vec<GroupValue>,
}

fn calibrate(
    mechanism: Mechanism,
    l1: u64,
    l2: u64,
    epsilon: Epsilon,
    delta: Delta,
) -> Result<Noise, PrivacyError> {
    match mechanism {
        Mechanism::DiscreteLaplace => Noise::laplace(l1, epsilon),
        Mechanism::DiscreteGaussian => Noise::gaussian(l2, epsilon, delta),
    }
}

fn part(name: &'static str, noise: &Noise, l1: u64, l2: u64, e: Epsilon, d: Delta) -> ReleasePart {
    ReleasePart {
        name,
        sensitivity: match noise.mechanism {
            Mechanism::DiscreteLaplace => l1,
            Mechanism::DiscreteGaussian => l2,
        },
        scale: noise.scale.to_f64(),
        epsilon: e.as_f64(),
        delta: d.as_f64(),
    }
}

/// Answers `query` over `rows` with noise from `rng` (pass `OsRng` in production). The caller
/// must record [`Query::spend`] in the tenant's budget before returning the release.
pub fn answer(
    query: &Query,
    rows: &[Row],
    config: &PrivacyConfig,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Release, AnalyticsError> {
    let keys = group_keys(query, config);
    let cap = config.contribution_cap;
    let sens = sensitivity(query.metric, cap);
    let tally = tally(query, rows, config);
    let mut parts = Vec::new();
    let mut groups = Vec::new();
    match (query.metric.mean_bounds(), &tally.sums) {
        (Some((centre, bound, unit)), Some(sums)) => {
            let e_sum = Epsilon::from_nanos(query.epsilon.nanos() / 2);
            let e_count = Epsilon::from_nanos(query.epsilon.nanos() - e_sum.nanos());
            let d_sum = Delta::from_femtos(query.delta.femtos() / 2);
            let d_count = Delta::from_femtos(query.delta.femtos() - d_sum.femtos());
            let sum_noise = calibrate(query.mechanism, sens.sum, sens.sum, e_sum, d_sum)?;
            let count_noise = calibrate(
                query.mechanism,
                sens.count_l1,
                sens.count_l2,
                e_count,
                d_count,
            )?;
            parts.push(part("sum", &sum_noise, sens.sum, sens.sum, e_sum, d_sum));
            parts.push(part(
                "count",
                &count_noise,
                sens.count_l1,
                sens.count_l2,
                e_count,
                d_count,
            ));
            let a_sum = sum_noise.accuracy(0.025);
            let a_count = count_noise.accuracy(0.025);
            let (lo, hi) = (
                (centre - bound) as f64 * unit,
                (centre + bound) as f64 * unit,
            );
            for (g, key) in keys.into_iter().enumerate() {
                let s = sum_noise.release(rng, sums[g]) as f64;
                let n = count_noise.release(rng, tally.counts[g]) as f64;
                let value = (n > 0.0).then(|| ((centre as f64 + s / n) * unit).clamp(lo, hi));
                let accuracy = if n - a_count > 0.0 {
                    let m = s / n;
                    let corners = [
                        (s - a_sum) / (n - a_count),
                        (s - a_sum) / (n + a_count),
                        (s + a_sum) / (n - a_count),
                        (s + a_sum) / (n + a_count),
                    ];
                    let dev = corners.iter().map(|c| (c - m).abs()).fold(0.0, f64::max);
                    (dev * unit).min(hi - lo)
                } else {
                    hi - lo
                };
                groups.push(GroupValue {
                    key,
                    bin: None,
                    value,
                    accuracy_95: Some(accuracy),
                });
            }
        }
        _ => {
            let noise = calibrate(
                query.mechanism,
                sens.count_l1,
                sens.count_l2,
                query.epsilon,
                query.delta,
            )?;
            parts.push(part(
                "count",
                &noise,
                sens.count_l1,
                sens.count_l2,
                query.epsilon,
                query.delta,
            ));
            let accuracy = noise.accuracy(0.05);
            let bins = query.metric.bins();
            for (g, key) in keys.into_iter().enumerate() {
                for b in 0..bins {
                    let bin = match query.metric {
                        Metric::RatingHistogram => Some((b + 1).to_string()),
                        Metric::ViolationCount => Some(Principle::ALL[b].as_str().to_owned()),
                        _ => None,
                    };
                    let noisy = noise.release(rng, tally.counts[g * bins + b]).max(0);
                    groups.push(GroupValue {
                        key: key.clone(),
                        bin,
                        value: Some(noisy as f64),
                        accuracy_95: Some(accuracy),
                    });
                }
            }
        }
    }
    Ok(Release {
        metric: query.metric,
        group_by: query.group_by,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        mechanism: query.mechanism,
        epsilon: query.epsilon.as_f64(),
        delta: query.delta.as_f64(),
        contribution_cap: cap,
        parts,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const T0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a Monday

    fn row(id: usize, person: &str, at: i64) -> Row {
        Row {
            id: format!("fb-{id:04}"),
            person: Some(person.to_owned()),
            occurred_at_ms: at,
            kind: FeedbackKind::ALL[id % 9],
            channel: Channel::ALL[id % 8],
            region: Some(["eu", "us", "mars"][id % 3].to_owned()),
            segment: (!id.is_multiple_of(4)).then(|| SEGMENTS[id % 4].to_owned()),
            rating: Some((id % 5 + 1) as u8),
            sentiment: Some(((id % 21) as f64 - 10.0) / 10.0),
            alignment: Some((id % 11) as f64 / 10.0),
            violations: Principle::ALL.iter().copied().take(id % 8).collect(),
            text_chars: Some((id * 37 % 300) as u32),
        }
    }

    fn config() -> PrivacyConfig {
        PrivacyConfig {
            regions: vec!["eu".into(), "us".into()],
            ..PrivacyConfig::default()
        }
    }

    fn request(json: serde_json::Value) -> QueryRequest {
        serde_json::from_value(json).unwrap()
    }

    fn query(metric: Metric, group_by: GroupBy) -> Query {
        Query {
            metric,
            group_by,
            from_ms: T0,
            to_ms: T0 + 7 * DAY_MS,
            mechanism: Mechanism::DiscreteLaplace,
            epsilon: Epsilon::from_nanos(Epsilon::SCALE),
            delta: Delta::ZERO,
        }
    }

    #[test]
    fn a_query_is_validated_with_defaults_from_the_mode_and_config() {
        let q = Query::from_request(
            &request(serde_json::json!({"metric": "count", "from": "2025-12-01T00:00:00Z", "to": T0 + DAY_MS})),
            &config(),
            Mode::Research,
        )
        .unwrap();
        assert_eq!(q.from_ms, T0);
        assert_eq!(q.group_by, GroupBy::None);
        assert_eq!(q.epsilon, Epsilon::from_f64(0.1).unwrap());
        assert_eq!(q.delta, Delta::ZERO);
        let q = Query::from_request(
            &request(serde_json::json!({"metric": "count", "from": 0, "to": 1, "mechanism": "discrete_gaussian"})),
            &config(),
            Mode::Production,
        )
        .unwrap();
        assert_eq!(q.epsilon, Epsilon::from_f64(1.0).unwrap());
        assert_eq!(q.delta, Delta::from_f64(1e-6).unwrap());
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = Query::from_request(
            &request(serde_json::json!({
                "metric": "median", "group_by": "hour", "from": "yesterday", "to": -5,
                "epsilon": 50, "delta": 1e-6, "extra": 1
            })),
            &config(),
            Mode::Hybrid,
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["extra", "metric", "group_by", "from", "to", "epsilon", "delta"]
        );
        let errors = Query::from_request(
            &request(serde_json::json!({"metric": "count", "group_by": "day", "from": T0, "to": T0 + 367 * DAY_MS})),
            &config(),
            Mode::Hybrid,
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "group_by");
        assert!(Query::from_request(
            &request(serde_json::json!({"metric": "count", "group_by": "day", "from": T0, "to": T0 + 366 * DAY_MS})),
            &config(),
            Mode::Hybrid,
        )
        .is_ok());
        let errors = Query::from_request(
            &request(serde_json::json!({"metric": "count", "group_by": "week", "from": T0, "to": T0 + 54 * 7 * DAY_MS})),
            &config(),
            Mode::Hybrid,
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "group_by");
        let errors = Query::from_request(
            &request(serde_json::json!({"metric": "count", "from": T0, "to": T0})),
            &config(),
            Mode::Hybrid,
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "to");
    }

    #[test]
    fn group_keys_are_public_and_complete() {
        let c = config();
        let q = query(Metric::Count, GroupBy::Day);
        let keys = group_keys(&q, &c);
        assert_eq!(keys.len(), 7);
        assert_eq!(keys[0], "2025-12-01");
        assert_eq!(keys[6], "2025-12-07");
        let q = Query {
            from_ms: T0 + 3 * DAY_MS,
            to_ms: T0 + 8 * DAY_MS,
            ..query(Metric::Count, GroupBy::Week)
        };
        assert_eq!(group_keys(&q, &c), ["2025-12-01", "2025-12-08"]);
        assert_eq!(
            group_keys(&query(Metric::Count, GroupBy::Region), &c),
            ["eu", "us", "other"]
        );
        assert_eq!(
            group_keys(&query(Metric::Count, GroupBy::Segment), &c).len(),
            5
        );
        assert_eq!(
            group_keys(&query(Metric::Count, GroupBy::Type), &c).len(),
            9
        );
        assert_eq!(
            group_keys(&query(Metric::Count, GroupBy::Channel), &c).len(),
            8
        );
    }

    #[test]
    fn undeclared_regions_group_as_other() {
        let c = config();
        let rows: Vec<Row> = (0..30)
            .map(|i| row(i, &format!("p{i}"), T0 + i as i64))
            .collect();
        let t = tally(&query(Metric::Count, GroupBy::Region), &rows, &c);
        assert_eq!(t.counts, [10, 10, 10]);
    }

    #[test]
    fn the_cap_keeps_each_persons_earliest_items() {
        let rows: Vec<Row> = (0..10)
            .map(|i| row(i, "alice", T0 + (10 - i as i64) * 1000))
            .collect();
        let kept = cap_contributions(&rows, 3, T0, T0 + DAY_MS);
        let ids: Vec<_> = kept.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["fb-0009", "fb-0008", "fb-0007"]);
    }

    #[test]
    fn a_release_has_every_group_with_noise_and_accuracy() {
        let c = config();
        let rows: Vec<Row> = (0..200)
            .map(|i| row(i, &format!("p{}", i % 40), T0 + i as i64 * 60_000))
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for metric in Metric::ALL {
            let r = answer(&query(metric, GroupBy::Segment), &rows, &c, &mut rng).unwrap();
            assert_eq!(r.groups.len(), 5 * metric.bins(), "{metric:?}");
            assert!(r
                .groups
                .iter()
                .all(|g| g.accuracy_95.is_some_and(|a| a > 0.0)));
            let parts = if metric.mean_bounds().is_some() { 2 } else { 1 };
            assert_eq!(r.parts.len(), parts);
            let eps: f64 = r.parts.iter().map(|p| p.epsilon).sum();
            assert!((eps - 1.0).abs() < 1e-12);
        }
        // Counts are at least zero; means stay in their bounds.
        let r = answer(
            &query(Metric::RatingMean, GroupBy::None),
            &rows,
            &c,
            &mut rng,
        )
        .unwrap();
        let v = r.groups[0].value.unwrap();
        assert!((1.0..=5.0).contains(&v));
        // With a large ε the answer is close to the truth (200 items capped at 5 per person
        // over 40 people: all 200 counted).
        let q = Query {
            epsilon: Epsilon::from_f64(10.0).unwrap(),
            ..query(Metric::Count, GroupBy::None)
        };
        let r = answer(&q, &rows, &c, &mut rng).unwrap();
        assert!((r.groups[0].value.unwrap() - 200.0).abs() <= 20.0);
    }

    #[test]
    fn the_gaussian_mechanism_spends_delta() {
        let c = config();
        let rows: Vec<Row> = (0..20)
            .map(|i| row(i, &format!("p{i}"), T0 + i as i64))
            .collect();
        let q = Query {
            mechanism: Mechanism::DiscreteGaussian,
            delta: Delta::from_f64(1e-6).unwrap(),
            ..query(Metric::SentimentMean, GroupBy::None)
        };
        let r = answer(&q, &rows, &c, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
        let delta: f64 = r.parts.iter().map(|p| p.delta).sum();
        assert!((delta - 1e-6).abs() < 1e-18);
    }

    fn l1_l2(a: &[i64], b: &[i64]) -> (u64, f64) {
        let l1 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).sum();
        let l2 = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        (l1, l2)
    }

    fn arb_rows() -> impl Strategy<Value = Vec<Row>> {
        proptest::collection::vec((0usize..1000, 0usize..8, 0i64..8 * DAY_MS), 0..120).prop_map(
            |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (seed, person, at))| {
                        let mut r = row(seed, &format!("p{person}"), T0 - DAY_MS / 2 + at);
                        r.id = format!("fb-{i:04}");
                        r
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn capping_keeps_at_most_cap_items_per_person(rows in arb_rows(), cap in 1u32..8) {
            let kept = cap_contributions(&rows, cap, T0, T0 + 7 * DAY_MS);
            let mut per: HashMap<&str, u32> = HashMap::new();
            for r in &kept {
                prop_assert!((T0..T0 + 7 * DAY_MS).contains(&r.occurred_at_ms));
                *per.entry(r.person.as_deref().unwrap()).or_default() += 1;
            }
            for (person, n) in per {
                let available = rows.iter().filter(|r| r.person.as_deref() == Some(person) && (T0..T0 + 7 * DAY_MS).contains(&r.occurred_at_ms)).count() as u32;
                prop_assert_eq!(n, available.min(cap));
            }
        }

        #[test]
        fn removing_one_person_moves_the_answer_by_at_most_the_sensitivity(
            rows in arb_rows(),
            cap in 1u32..7,
            victim in 0usize..8,
            metric_i in 0usize..7,
            group_i in 0usize..7,
        ) {
            let c = PrivacyConfig { contribution_cap: cap, ..config() };
            let q = query(Metric::ALL[metric_i], GroupBy::ALL[group_i]);
            let victim = format!("p{victim}");
            let without: Vec<Row> = rows.iter().filter(|r| r.person.as_deref() != Some(victim.as_str())).cloned().collect();
            let a = tally(&q, &rows, &c);
            let b = tally(&q, &without, &c);
            let s = sensitivity(q.metric, cap);
            let (l1, l2) = l1_l2(&a.counts, &b.counts);
            prop_assert!(l1 <= s.count_l1, "count l1 {} > {}", l1, s.count_l1);
            prop_assert!(l2 <= s.count_l2 as f64 + 1e-9, "count l2 {} > {}", l2, s.count_l2);
            if let (Some(x), Some(y)) = (&a.sums, &b.sums) {
                let (l1, l2) = l1_l2(x, y);
                prop_assert!(l1 <= s.sum && l2 <= s.sum as f64 + 1e-9, "sum {} > {}", l1, s.sum);
            }
        }
    }
}
