//! Versioned price tables and exact cost.
//!
//! # The TOML format
//!
//! ```toml
//! version = "2025-12-04"            # required: names the table in `GET /api/v1/llm/prices`
//!
//! [[prices]]
//! provider = "openai"               # a gen_ai.provider.name value (old spellings accepted)
//! model = "gpt-4o"
//! effective_from = "2024-10-01"     # UTC day the price starts to apply
//! input = "2.50"                    # USD per million tokens
//! output = "10.00"
//! cache_read = "1.25"               # optional
//! # cache_write = "…"               # optional
//! # reasoning = "…"                 # optional
//!
//! [[prices.tiers]]                  # optional long-context tiers
//! above_input_tokens = 200_000
//! input = "5.00"
//! output = "20.00"
//! ```
//!
//! Prices are USD per million tokens, written as decimal strings (`"2.50"`) or TOML numbers
//! (`2.5`, `3`), and read **exactly** into micro-dollars per million tokens, which is
//! picodollars per token: a price with more than 6 decimals is refused, never rounded. A
//! price above [`MAX_PRICE_USD_PER_MILLION`] is refused as a typo. Unknown keys, a missing
//! `input` or `output`, a duplicate `(provider, model, effective_from)`, a malformed date
//! and tiers not in ascending order are refused; every [`PriceError`] names the field
//! (`prices[3].input`, indexes from 0).
//!
//! The same shape in JSON (prices as strings or numbers) is what the API accepts for a
//! tenant's overrides ([`PriceTable::from_json`], or `serde::Deserialize`) and what it shows
//! (`serde::Serialize`, prices as decimal strings): a table serialised and read back is the
//! same table.
//!
//! # Which price applies
//!
//! [`PriceTable::lookup`] normalises the provider name ([`crate::provider::canonical`]),
//! then matches the model exactly or, failing that, takes the longest table model that the
//! call's model extends with `-` and a dated version (`gpt-4o-2024-08-06` → `gpt-4o`,
//! `claude-sonnet-4-20250514` → `claude-sonnet-4`, `mistral-large-2411` → `mistral-large`,
//! `…-latest`, `…-v1:0`). A suffix that is not a date or version (`gpt-4o-mini` is not
//! `gpt-4o`, `claude-opus-4-5` is not `claude-opus-4`) never matches. Among that model's
//! entries the one with the latest `effective_from` on or before the call's day applies.
//!
//! [`Pricing::cost`] looks in the tenant's overrides first, then in the defaults unless the
//! tenant switched them off. A call with no applicable price has no cost (`None`): never
//! guessed.
//!
//! # How a call is priced
//!
//! Each exclusive token type is multiplied by its rate, in integers (`u128`, no float).
//! A missing `cache_read` or `cache_write` rate bills those tokens at the `input` rate, and a
//! missing `reasoning` rate bills reasoning at the `output` rate: that is how providers
//! without separate prices bill them (OpenAI, for one, bills reasoning as output). When the
//! call's whole prompt (`input + cache_read + cache_write`) is above a tier's
//! `above_input_tokens`, the **whole call** is priced at that tier's rates (the highest such
//! tier), as Google and Anthropic bill long context.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::cost::{format_decimal, parse_decimal};
use crate::{provider, Cost, TokenCounts};

/// The shipped default price table, in the TOML format above.
pub const SHIPPED_PRICES_TOML: &str = include_str!("../prices.toml");

/// The largest accepted price, USD per million tokens (prices above are typos).
pub const MAX_PRICE_USD_PER_MILLION: u64 = 10_000;
/// At most this many tiers per entry.
pub const MAX_TIERS: usize = 16;
/// At most this many entries per table.
pub const MAX_ENTRIES: usize = 10_000;

const MICROS: u64 = 1_000_000;
const MAX_PRICE_MICROS: u64 = MAX_PRICE_USD_PER_MILLION * MICROS;
const DAY_MS: i64 = 86_400_000;

/// Prices of one model from a date on, in micro-dollars per million tokens (= picodollars per
/// token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// The canonical provider name ([`crate::provider::canonical`]); the parser stores it so,
    /// and lookups compare it as it is.
    pub provider: String,
    pub model: String,
    /// First day (Unix ms, UTC midnight) the price applies.
    pub effective_from_ms: i64,
    pub rates: Rates,
    /// Long-context tiers, by ascending `above_input_tokens`.
    pub tiers: Vec<Tier>,
}

/// Per-token-type prices in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub reasoning: Option<u64>,
}

/// Prices that replace the base rates when a call's prompt is longer than a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// A price table: a version string and its entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    pub version: String,
    pub prices: Vec<ModelPrice>,
}

/// Why a price table was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PriceError {
    pub field: String,
    pub reason: String,
}

impl PriceError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> PriceError {
        PriceError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Rates {
    /// The cost of `tokens` at these rates, exactly; `None` if it does not fit a [`Cost`].
    ///
    /// ```
    /// use llm::price::Rates;
    /// use llm::TokenCounts;
    /// // $2.50 in, $10 out per million; cache reads default to the input rate.
    /// let rates = Rates { input: 2_500_000, output: 10_000_000, ..Rates::default() };
    /// let tokens = TokenCounts { input: 1_000, output: 500, cache_read: 200, ..TokenCounts::default() };
    /// // 1,200 × $2.50/M + 500 × $10/M = $0.003 + $0.005
    /// assert_eq!(rates.cost(&tokens).unwrap().usd_string(), "0.008");
    /// ```
    pub fn cost(&self, tokens: &TokenCounts) -> Option<Cost> {
        let terms = [
            (tokens.input, self.input),
            (tokens.output, self.output),
            (tokens.cache_read, self.cache_read.unwrap_or(self.input)),
            (tokens.cache_write, self.cache_write.unwrap_or(self.input)),
            (tokens.reasoning, self.reasoning.unwrap_or(self.output)),
        ];
        let mut sum: u128 = 0;
        for (count, rate) in terms {
            // u64 × u64 always fits u128; the sum of five may not.
            sum = sum.checked_add(count as u128 * rate as u128)?;
        }
        u64::try_from(sum).ok().map(Cost::from_picodollars)
    }
}

impl ModelPrice {
    /// The rates for a call whose whole prompt (input + cache read + cache write) has
    /// `prompt_tokens` tokens: the highest tier it is above, else the base rates.
    pub fn rates_for(&self, prompt_tokens: u64) -> &Rates {
        self.tiers
            .iter()
            .rev()
            .find(|t| prompt_tokens > t.above_input_tokens)
            .map_or(&self.rates, |t| &t.rates)
    }

    /// The cost of a call with these tokens, exactly; `None` only on overflow.
    pub fn cost(&self, tokens: &TokenCounts) -> Option<Cost> {
        let prompt = tokens
            .input
            .saturating_add(tokens.cache_read)
            .saturating_add(tokens.cache_write);
        self.rates_for(prompt).cost(tokens)
    }

    /// `effective_from` as `YYYY-MM-DD`.
    pub fn effective_from(&self) -> String {
        format_day(self.effective_from_ms.div_euclid(DAY_MS))
    }
}

impl PriceTable {
    /// Parses a TOML price table (format in the module docs).
    ///
    /// ```
    /// use llm::price::PriceTable;
    /// let table = PriceTable::from_toml(r#"
    ///     version = "t1"
    ///     [[prices]]
    ///     provider = "openai"
    ///     model = "gpt-4o"
    ///     effective_from = "2024-10-01"
    ///     input = "2.50"
    ///     output = 10
    /// "#).unwrap();
    /// assert_eq!(table.prices[0].rates.input, 2_500_000);
    ///
    /// let err = PriceTable::from_toml(r#"
    ///     version = "t1"
    ///     [[prices]]
    ///     provider = "openai"
    ///     model = "gpt-4o"
    ///     effective_from = "2024-10-01"
    ///     input = "2.5000001"
    ///     output = 10
    /// "#).unwrap_err();
    /// assert_eq!(err.field, "prices[0].input");
    /// ```
    pub fn from_toml(text: &str) -> Result<PriceTable, PriceError> {
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            PriceError::new("toml", e.message().to_string() + &span_note(text, e.span()))
        })?;
        PriceTable::from_value(toml::Value::Table(value))
    }

    /// Parses the same table written as JSON (the API's shape for a tenant's overrides).
    ///
    /// ```
    /// use llm::price::PriceTable;
    /// let json = r#"{"version": "acme-1", "prices": [{"provider": "openai",
    ///   "model": "gpt-4o", "effective_from": "2025-01-01", "input": "2", "output": 8}]}"#;
    /// let table = PriceTable::from_json(json).unwrap();
    /// assert_eq!(PriceTable::from_json(&serde_json::to_string(&table).unwrap()).unwrap(), table);
    /// ```
    pub fn from_json(text: &str) -> Result<PriceTable, PriceError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PriceError::new("json", e.to_string()))?;
        PriceTable::from_json_value(value)
    }

    /// [`PriceTable::from_json`] over a parsed JSON value. A member set to `null` counts as
    /// absent (`"cache_read": null`).
    pub fn from_json_value(value: serde_json::Value) -> Result<PriceTable, PriceError> {
        PriceTable::from_value(json_to_toml(value, "")?)
    }

    /// The shipped default prices ([`SHIPPED_PRICES_TOML`]).
    pub fn shipped() -> PriceTable {
        // The shipped file is checked by a unit test, so this cannot fail in a release.
        PriceTable::from_toml(SHIPPED_PRICES_TOML)
            .unwrap_or_else(|e| panic!("the shipped prices.toml is invalid: {e}"))
    }

    /// Validates a parsed TOML (or JSON) tree.
    fn from_value(value: toml::Value) -> Result<PriceTable, PriceError> {
        let toml::Value::Table(mut root) = value else {
            return Err(PriceError::new("", "must be a table (object)"));
        };
        let version = match root.remove("version") {
            Some(toml::Value::String(v)) => v,
            Some(_) => return Err(PriceError::new("version", "must be a string")),
            None => return Err(PriceError::new("version", "is required")),
        };
        if version.is_empty()
            || version.len() > 128
            || !version.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(PriceError::new(
                "version",
                "must be 1 to 128 printable ASCII characters",
            ));
        }
        let entries = match root.remove("prices") {
            Some(toml::Value::Array(a)) => a,
            Some(_) => return Err(PriceError::new("prices", "must be an array of tables")),
            None => Vec::new(),
        };
        if let Some(key) = root.keys().next() {
            return Err(PriceError::new(
                key.as_str(),
                "unknown key (expected version, prices)",
            ));
        }
        if entries.len() > MAX_ENTRIES {
            return Err(PriceError::new(
                "prices",
                format!("more than {MAX_ENTRIES} entries"),
            ));
        }
        let mut prices = Vec::with_capacity(entries.len());
        let mut seen = HashSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("prices[{i}]");
            let price = read_entry(&at, entry)?;
            if !seen.insert((
                price.provider.clone(),
                price.model.clone(),
                price.effective_from_ms,
            )) {
                return Err(PriceError::new(
                    at,
                    format!(
                        "duplicate entry for provider {:?}, model {:?}, effective_from {}",
                        price.provider,
                        price.model,
                        price.effective_from()
                    ),
                ));
            }
            prices.push(price);
        }
        Ok(PriceTable { version, prices })
    }

    /// The price of `provider`/`model` on `time_ms`, if any (rules in the module docs).
    ///
    /// ```
    /// use llm::price::PriceTable;
    /// let table = PriceTable::shipped();
    /// let t = 1_764_806_400_000; // 2025-12-04
    /// let dated = table.lookup("openai", "gpt-4o-2024-08-06", t).unwrap();
    /// assert_eq!(dated.model, "gpt-4o");
    /// assert_eq!(table.lookup("openai", "gpt-4o-mini", t).unwrap().model, "gpt-4o-mini");
    /// assert!(table.lookup("openai", "no-such-model", t).is_none());
    /// ```
    pub fn lookup(&self, provider: &str, model: &str, time_ms: i64) -> Option<&ModelPrice> {
        let canonical = provider::canonical(provider);
        self.lookup_canonical(&canonical, model, time_ms)
            .or_else(|| {
                provider::billing_fallback(&canonical)
                    .and_then(|fallback| self.lookup_canonical(fallback, model, time_ms))
            })
    }

    fn lookup_canonical(&self, provider: &str, model: &str, time_ms: i64) -> Option<&ModelPrice> {
        let mut exact: Option<&ModelPrice> = None;
        let mut prefix: Option<&ModelPrice> = None;
        for entry in &self.prices {
            // Entries hold canonical provider names (the parser stores them so).
            if entry.effective_from_ms > time_ms || entry.provider != provider {
                continue;
            }
            if entry.model == model {
                if exact.is_none_or(|e| entry.effective_from_ms > e.effective_from_ms) {
                    exact = Some(entry);
                }
            } else if is_dated_variant(model, &entry.model) {
                let better = match prefix {
                    None => true,
                    Some(p) => {
                        entry.model.len() > p.model.len()
                            || (entry.model.len() == p.model.len()
                                && entry.effective_from_ms > p.effective_from_ms)
                    }
                };
                if better {
                    prefix = Some(entry);
                }
            }
        }
        exact.or(prefix)
    }
}

/// Whether `model` is `base` followed by `-` and a dated version: a first part of three or
/// more digits (`2024`, `20250514`, `2411`, `001`), `latest`, or `v` and digits (`v1:0`,
/// `v2.1`), then any further parts of digits or versions.
fn is_dated_variant(model: &str, base: &str) -> bool {
    let Some(rest) = model.strip_prefix(base).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let is_version = |p: &str| {
        p.strip_prefix('v').is_some_and(|v| {
            !v.is_empty()
                && v.starts_with(|c: char| c.is_ascii_digit())
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
        })
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let mut parts = rest.split('-');
    let first_ok = match parts.next() {
        Some(first) => {
            (digits(first) && first.len() >= 3) || first == "latest" || is_version(first)
        }
        None => false,
    };
    first_ok && parts.all(|p| digits(p) || is_version(p))
}

/// The prices one tenant pays: its overrides first, then (unless switched off) the defaults.
#[derive(Debug, Clone)]
pub struct Pricing<'a> {
    pub defaults: &'a PriceTable,
    pub overrides: &'a PriceTable,
    pub use_defaults: bool,
}

impl Pricing<'_> {
    /// The entry that prices a call: the tenant's override, else the default unless
    /// switched off.
    pub fn price_for(&self, provider: &str, model: &str, time_ms: i64) -> Option<&ModelPrice> {
        self.overrides.lookup(provider, model, time_ms).or_else(|| {
            self.use_defaults
                .then(|| self.defaults.lookup(provider, model, time_ms))
                .flatten()
        })
    }

    /// The cost of a call, or `None` when no price applies (never guessed).
    ///
    /// ```
    /// use llm::price::{PriceTable, Pricing};
    /// use llm::TokenCounts;
    /// let defaults = PriceTable::shipped();
    /// let overrides = PriceTable::default();
    /// let pricing = Pricing { defaults: &defaults, overrides: &overrides, use_defaults: true };
    /// let tokens = TokenCounts { input: 1_000_000, output: 1_000_000, ..TokenCounts::default() };
    /// let cost = pricing.cost("openai", "gpt-4o", 1_764_806_400_000, &tokens).unwrap();
    /// assert_eq!(cost.usd_string(), "12.50"); // $2.50 + $10.00
    /// let off = Pricing { use_defaults: false, ..pricing };
    /// assert_eq!(off.cost("openai", "gpt-4o", 1_764_806_400_000, &tokens), None);
    /// ```
    pub fn cost(
        &self,
        provider: &str,
        model: &str,
        time_ms: i64,
        tokens: &TokenCounts,
    ) -> Option<Cost> {
        self.price_for(provider, model, time_ms)?.cost(tokens)
    }
}

// ---------------------------------------------------------------------------------------
// Reading entries.

fn read_entry(at: &str, value: toml::Value) -> Result<ModelPrice, PriceError> {
    let toml::Value::Table(mut t) = value else {
        return Err(PriceError::new(at, "must be a table (object)"));
    };
    let provider = take_name(at, &mut t, "provider")?;
    let provider = provider::canonical(&provider).into_owned();
    let model = take_name(at, &mut t, "model")?;
    let effective_from_ms = match t.remove("effective_from") {
        Some(v) => read_day(&format!("{at}.effective_from"), v)? * DAY_MS,
        None => {
            return Err(PriceError::new(
                format!("{at}.effective_from"),
                "is required",
            ))
        }
    };
    let tiers_value = t.remove("tiers");
    let rates = read_rates(at, &mut t)?;
    reject_unknown(
        at,
        &t,
        "provider, model, effective_from, input, output, cache_read, cache_write, reasoning, tiers",
    )?;
    let tiers = match tiers_value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => {
            if items.len() > MAX_TIERS {
                return Err(PriceError::new(
                    format!("{at}.tiers"),
                    format!("more than {MAX_TIERS} tiers"),
                ));
            }
            let mut tiers: Vec<Tier> = Vec::with_capacity(items.len());
            for (j, item) in items.into_iter().enumerate() {
                let tat = format!("{at}.tiers[{j}]");
                let toml::Value::Table(mut tt) = item else {
                    return Err(PriceError::new(tat, "must be a table (object)"));
                };
                let above = match tt.remove("above_input_tokens") {
                    Some(toml::Value::Integer(n)) if n > 0 => n as u64,
                    Some(_) => {
                        return Err(PriceError::new(
                            format!("{tat}.above_input_tokens"),
                            "must be a positive whole number of tokens",
                        ))
                    }
                    None => {
                        return Err(PriceError::new(
                            format!("{tat}.above_input_tokens"),
                            "is required",
                        ))
                    }
                };
                let rates = read_rates(&tat, &mut tt)?;
                reject_unknown(
                    &tat,
                    &tt,
                    "above_input_tokens, input, output, cache_read, cache_write, reasoning",
                )?;
                if let Some(prev) = tiers.last() {
                    if above <= prev.above_input_tokens {
                        return Err(PriceError::new(
                            format!("{tat}.above_input_tokens"),
                            "tiers must have strictly ascending above_input_tokens",
                        ));
                    }
                }
                tiers.push(Tier {
                    above_input_tokens: above,
                    rates,
                });
            }
            tiers
        }
        Some(_) => {
            return Err(PriceError::new(
                format!("{at}.tiers"),
                "must be an array of tables",
            ))
        }
    };
    Ok(ModelPrice {
        provider,
        model,
        effective_from_ms,
        rates,
        tiers,
    })
}

fn reject_unknown(at: &str, t: &toml::Table, expected: &str) -> Result<(), PriceError> {
    match t.keys().next() {
        Some(key) => Err(PriceError::new(
            format!("{at}.{key}"),
            format!("unknown key (expected {expected})"),
        )),
        None => Ok(()),
    }
}

fn take_name(at: &str, t: &mut toml::Table, key: &str) -> Result<String, PriceError> {
    let field = format!("{at}.{key}");
    match t.remove(key) {
        Some(toml::Value::String(s)) => {
            crate::event::check_label(&s).map_err(|reason| PriceError::new(field, reason))?;
            Ok(s)
        }
        Some(_) => Err(PriceError::new(field, "must be a string")),
        None => Err(PriceError::new(field, "is required")),
    }
}

fn read_rates(at: &str, t: &mut toml::Table) -> Result<Rates, PriceError> {
    let mut get = |key: &str, required: bool| -> Result<Option<u64>, PriceError> {
        let field = format!("{at}.{key}");
        match t.remove(key) {
            Some(v) => read_price(&field, v).map(Some),
            None if required => Err(PriceError::new(field, "is required")),
            None => Ok(None),
        }
    };
    Ok(Rates {
        input: get("input", true)?.unwrap_or_default(),
        output: get("output", true)?.unwrap_or_default(),
        cache_read: get("cache_read", false)?,
        cache_write: get("cache_write", false)?,
        reasoning: get("reasoning", false)?,
    })
}

/// A price in USD per million tokens, as micro-dollars per million tokens, exactly.
fn read_price(field: &str, value: toml::Value) -> Result<u64, PriceError> {
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(n) => n.to_string(),
        // Rust prints the shortest decimal that reads back as the same f64, which is the
        // decimal written in the file for any price with up to 15 significant digits.
        toml::Value::Float(f) if f.is_finite() => format!("{f}"),
        _ => {
            return Err(PriceError::new(
                field,
                "must be a decimal string such as \"2.50\" or a number",
            ))
        }
    };
    parse_decimal(&text, 6, MAX_PRICE_MICROS)
        .map_err(|e| PriceError::new(field, format!("{text:?} {e} (USD per million tokens)")))
}

/// A `YYYY-MM-DD` day (string, or a TOML local date) as days since 1970-01-01.
fn read_day(field: &str, value: toml::Value) -> Result<i64, PriceError> {
    let bad = || PriceError::new(field, "must be a date written YYYY-MM-DD");
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        _ => return Err(bad()),
    };
    parse_day(&text).ok_or_else(bad)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date between 1970 and 9999.
pub(crate) fn parse_day(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, format).ok()?;
    if text.len() != 10 || date.year() < 1970 {
        return None;
    }
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub(crate) fn format_day(day: i64) -> String {
    let (y, m, d) = crate::budget::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            // Bytes, not str: the offset may fall inside a multi-byte character.
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// The wire shape (JSON for the API, same keys as the TOML file).

#[derive(Serialize)]
struct RatesView {
    input: String,
    output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<String>,
}

fn price_string(micros: u64) -> String {
    format_decimal(micros, 6, 2)
}

impl From<&Rates> for RatesView {
    fn from(r: &Rates) -> Self {
        RatesView {
            input: price_string(r.input),
            output: price_string(r.output),
            cache_read: r.cache_read.map(price_string),
            cache_write: r.cache_write.map(price_string),
            reasoning: r.reasoning.map(price_string),
        }
    }
}

impl Serialize for Rates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RatesView::from(self).serialize(s)
    }
}

impl Serialize for Tier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View {
            above_input_tokens: u64,
            #[serde(flatten)]
            rates: RatesView,
        }
        View {
            above_input_tokens: self.above_input_tokens,
            rates: RatesView::from(&self.rates),
        }
        .serialize(s)
    }
}

impl Serialize for ModelPrice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            provider: &'a str,
            model: &'a str,
            effective_from: String,
            #[serde(flatten)]
            rates: RatesView,
            #[serde(skip_serializing_if = "<[Tier]>::is_empty")]
            tiers: &'a [Tier],
        }
        View {
            provider: &self.provider,
            model: &self.model,
            effective_from: self.effective_from(),
            rates: RatesView::from(&self.rates),
            tiers: &self.tiers,
        }
        .serialize(s)
    }
}

impl Serialize for PriceTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            version: &'a str,
            prices: &'a [ModelPrice],
        }
        View {
            version: &self.version,
            prices: &self.prices,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PriceTable {
    /// Accepts the JSON (or TOML) shape of the module docs, with the same validation as
    /// [`PriceTable::from_toml`]; the error message names the field.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        PriceTable::from_json_value(value).map_err(serde::de::Error::custom)
    }
}

/// A JSON tree as the TOML tree the validator reads. `null` object members are dropped (an
/// absent optional price); a `null` elsewhere, or an integer beyond `i64`, is refused.
fn json_to_toml(value: serde_json::Value, at: &str) -> Result<toml::Value, PriceError> {
    use serde_json::Value as J;
    let field = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    Ok(match value {
        J::Null => return Err(PriceError::new(at, "must not be null")),
        J::Bool(b) => toml::Value::Boolean(b),
        J::String(s) => toml::Value::String(s),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if !n.is_u64() => toml::Value::Float(f),
            _ => return Err(PriceError::new(at, format!("{n} is too large"))),
        },
        J::Array(items) => toml::Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| json_to_toml(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => {
            // A TOML date-time passed through serde arrives as this one-member map.
            if map.len() == 1 {
                if let Some(J::String(d)) = map.get("$__toml_private_datetime") {
                    return Ok(toml::Value::String(d.clone()));
                }
            }
            let mut table = toml::Table::new();
            for (key, v) in map {
                if !v.is_null() {
                    let v = json_to_toml(v, &field(&key))?;
                    table.insert(key, v);
                }
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = DAY_MS;

    fn ms(date: &str) -> i64 {
        parse_day(date).expect("test date") * DAY
    }

    fn table(entries: &str) -> Result<PriceTable, PriceError> {
        PriceTable::from_toml(&format!("version = \"t\"\n{entries}"))
    }

    fn entry(model: &str, date: &str, input: &str) -> String {
        format!(
            "[[prices]]\nprovider = \"openai\"\nmodel = \"{model}\"\neffective_from = \"{date}\"\ninput = {input}\noutput = \"1\"\n"
        )
    }

    /// Parses and expects the error to name `field`.
    fn refused(text: &str, field: &str) {
        match table(text) {
            Ok(t) => panic!("accepted {text:?} as {t:?}"),
            Err(e) => assert_eq!(e.field, field, "{text:?} gave {e}"),
        }
    }

    #[test]
    fn an_error_offset_inside_a_character_still_gives_its_line() {
        assert_eq!(span_note("é\nx", Some(1..2)), " (line 1)");
        assert_eq!(span_note("é\nx", Some(3..4)), " (line 2)");
        assert_eq!(span_note("x", None), "");
    }

    #[test]
    fn the_shipped_table_parses_and_prices_what_it_lists() {
        let t = PriceTable::shipped();
        assert!(t.prices.len() >= 30, "{}", t.prices.len());
        let version_day = parse_day(&t.version).expect("the version is a date");
        for p in &t.prices {
            assert!(
                p.effective_from_ms <= version_day * DAY,
                "{} {} starts after the table's date",
                p.provider,
                p.model
            );
            assert_eq!(provider::canonical(&p.provider), p.provider);
            assert!(
                t.lookup(&p.provider, &p.model, version_day * DAY).is_some(),
                "{} {}",
                p.provider,
                p.model
            );
        }
    }

    #[test]
    fn dated_and_aliased_model_names_find_their_base_model() {
        let t = PriceTable::shipped();
        let now = ms("2026-12-04");
        let found =
            |provider: &str, model: &str| t.lookup(provider, model, now).map(|p| p.model.as_str());
        assert_eq!(found("openai", "gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            found("openai", "gpt-4o-2024-05-13"),
            Some("gpt-4o-2024-05-13")
        );
        assert_eq!(
            found("openai", "gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            found("openai", "gpt-4.1-nano-2025-04-14"),
            Some("gpt-4.1-nano")
        );
        assert_eq!(found("openai", "gpt-5-mini-2025-08-07"), Some("gpt-5-mini"));
        assert_eq!(found("openai", "gpt-5-chat-latest"), None);
        assert_eq!(found("OpenAI", "o3-2025-04-16"), Some("o3"));
        assert_eq!(
            found("anthropic", "claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            found("anthropic", "claude-sonnet-4-20250514"),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            found("anthropic", "claude-3-5-haiku-latest"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(
            found("anthropic", "claude-opus-4-1-20250805"),
            Some("claude-opus-4-1")
        );
        // A newer model with another price is not its predecessor with a suffix.
        assert_eq!(found("anthropic", "claude-opus-4-6"), None);
        assert_eq!(found("gcp.gemini", "gemini-2.5-flash-preview-05-20"), None);
        assert_eq!(
            found("gemini", "gemini-2.5-flash-lite"),
            Some("gemini-2.5-flash-lite")
        );
        // Vertex AI and the generic Google endpoint bill Gemini at the Gemini API's prices.
        assert_eq!(
            found("gcp.vertex_ai", "gemini-2.5-pro"),
            Some("gemini-2.5-pro")
        );
        assert_eq!(
            found("vertex_ai", "gemini-2.5-pro-001"),
            Some("gemini-2.5-pro")
        );
        // Azure OpenAI is not guessed from OpenAI's list prices.
        assert_eq!(found("az.ai.openai", "gpt-4o"), None);
        assert_eq!(
            found("mistral", "mistral-large-2411"),
            Some("mistral-large-2411")
        );
        assert_eq!(found("openai", "gpt-4o"), Some("gpt-4o"));
        // Before its first day a model has no price.
        assert!(t.lookup("openai", "gpt-5", ms("2025-08-06")).is_none());
    }

    #[test]
    fn the_dated_suffix_rule() {
        for (model, base, ok) in [
            ("gpt-4o-2024-08-06", "gpt-4o", true),
            ("mistral-large-2411", "mistral-large", true),
            ("claude-3-5-haiku-latest", "claude-3-5-haiku", true),
            ("claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet", true),
            ("gemini-2.5-pro-001", "gemini-2.5-pro", true),
            ("model-v2", "model", true),
            ("gpt-4o-mini", "gpt-4o", false),
            ("claude-opus-4-5", "claude-opus-4", false),
            ("gpt-4o", "gpt-4o", false),
            ("gpt-4o-", "gpt-4o", false),
            ("gpt-4o2024", "gpt-4o", false),
            ("gpt-4o-2024-preview", "gpt-4o", false),
            ("model-v", "model", false),
            ("model-vx", "model", false),
        ] {
            assert_eq!(is_dated_variant(model, base), ok, "{model} / {base}");
        }
    }

    #[test]
    fn lookup_takes_the_latest_entry_in_force() {
        let t = PriceTable::shipped();
        let o3 = |date| t.lookup("openai", "o3", ms(date)).map(|p| p.rates.input);
        assert_eq!(o3("2025-04-15"), None);
        assert_eq!(o3("2025-04-16"), Some(10_000_000));
        assert_eq!(o3("2025-06-09"), Some(10_000_000));
        assert_eq!(o3("2025-06-10"), Some(2_000_000));
        assert_eq!(o3("2026-01-01"), Some(2_000_000));
    }

    #[test]
    fn long_context_tiers_price_the_whole_call() {
        let t = PriceTable::shipped();
        let pro = t
            .lookup("gcp.gemini", "gemini-2.5-pro", ms("2026-01-01"))
            .unwrap();
        let call = |input, cache_read| TokenCounts {
            input,
            cache_read,
            output: 1_000_000,
            ..TokenCounts::default()
        };
        // 200,000 prompt tokens: base rates. 1 more, split between input and cache: tier.
        assert_eq!(
            pro.cost(&call(200_000, 0)).unwrap().usd_string(),
            "10.25" // 0.2 × 1.25 + 1 × 10
        );
        assert_eq!(
            pro.cost(&call(100_001, 100_000)).unwrap().usd_string(),
            "15.2750025" // 100,001 × 2.50/M + 100,000 × 0.25/M + 1M × 15/M
        );
        let sonnet = t
            .lookup("anthropic", "claude-sonnet-4-5", ms("2026-01-01"))
            .unwrap();
        let long = TokenCounts {
            input: 10,
            cache_write: 300_000,
            cache_read: 0,
            output: 0,
            reasoning: 0,
        };
        // 10 × $6 + 300,000 × $7.50 per million.
        assert_eq!(
            sonnet.cost(&long).unwrap().picodollars(),
            60_000_000 + 2_250_000_000_000
        );
    }

    #[test]
    fn missing_cache_and_reasoning_rates_fall_back_to_input_and_output() {
        let rates = Rates {
            input: 3,
            output: 7,
            ..Rates::default()
        };
        let tokens = TokenCounts {
            input: 1,
            output: 10,
            cache_read: 100,
            cache_write: 1_000,
            reasoning: 10_000,
        };
        assert_eq!(
            rates.cost(&tokens).unwrap().picodollars(),
            3 + 70 + 300 + 3_000 + 70_000
        );
        let separate = Rates {
            cache_read: Some(1),
            cache_write: Some(5),
            reasoning: Some(2),
            ..rates
        };
        assert_eq!(
            separate.cost(&tokens).unwrap().picodollars(),
            3 + 70 + 100 + 5_000 + 20_000
        );
    }

    #[test]
    fn cost_overflow_is_none_never_a_wrapped_number() {
        let rates = Rates {
            input: MAX_PRICE_MICROS,
            output: MAX_PRICE_MICROS,
            ..Rates::default()
        };
        let tokens = TokenCounts {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: u64::MAX,
            cache_write: u64::MAX,
            reasoning: u64::MAX,
        };
        assert_eq!(rates.cost(&tokens), None);
        // The largest call the event API accepts at the largest price still fits.
        let max = crate::event::MAX_TOKENS;
        let biggest = TokenCounts {
            input: max,
            output: max,
            cache_read: max,
            cache_write: max,
            reasoning: max,
        };
        assert!(rates.cost(&biggest).is_some());
    }

    #[test]
    fn overrides_come_first_and_defaults_can_be_switched_off() {
        let defaults = PriceTable::shipped();
        let overrides = PriceTable::from_toml(
            r#"
            version = "acme-2026"
            [[prices]]
            provider = "az.ai.openai"
            model = "gpt-4o"
            effective_from = "2026-01-01"
            input = "2.75"
            output = "11"
            [[prices]]
            provider = "openai"
            model = "gpt-4o"
            effective_from = "2026-06-01"
            input = "2"
            output = "8"
            "#,
        )
        .unwrap();
        assert_eq!(overrides.prices[0].provider, "azure.ai.openai");
        let pricing = Pricing {
            defaults: &defaults,
            overrides: &overrides,
            use_defaults: true,
        };
        let tokens = TokenCounts {
            input: 1_000_000,
            ..TokenCounts::default()
        };
        let cost = |p: &Pricing, provider, date| {
            p.cost(provider, "gpt-4o", ms(date), &tokens)
                .map(|c| c.usd_string())
        };
        assert_eq!(
            cost(&pricing, "azure.ai.openai", "2026-02-01").as_deref(),
            Some("2.75")
        );
        // The override is not yet in force: the default applies.
        assert_eq!(
            cost(&pricing, "openai", "2026-05-31").as_deref(),
            Some("2.50")
        );
        assert_eq!(
            cost(&pricing, "openai", "2026-06-01").as_deref(),
            Some("2.00")
        );
        let own_only = Pricing {
            use_defaults: false,
            ..pricing
        };
        assert_eq!(cost(&own_only, "openai", "2026-05-31"), None);
        // The override covers dated variants, even one the defaults list on its own.
        let snapshot = pricing
            .cost("openai", "gpt-4o-2024-05-13", ms("2026-06-01"), &tokens)
            .map(|c| c.usd_string());
        assert_eq!(snapshot.as_deref(), Some("2.00"));
        let snapshot_before = pricing
            .cost("openai", "gpt-4o-2024-05-13", ms("2026-05-31"), &tokens)
            .map(|c| c.usd_string());
        assert_eq!(snapshot_before.as_deref(), Some("5.00"));
        assert_eq!(
            cost(&own_only, "openai", "2026-06-01").as_deref(),
            Some("2.00")
        );
    }

    #[test]
    fn prices_are_read_exactly_from_strings_and_numbers() {
        for (written, micros) in [
            ("\"2.50\"", 2_500_000),
            ("2.5", 2_500_000),
            ("0.075", 75_000),
            ("\"0.000001\"", 1),
            ("0.000001", 1),
            ("3", 3_000_000),
            ("\"10000\"", 10_000_000_000),
            ("0", 0),
            ("1.1", 1_100_000),
            ("0.1", 100_000),
        ] {
            let t = table(&entry("m", "2025-01-01", written))
                .unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(t.prices[0].rates.input, micros, "{written}");
        }
    }

    #[test]
    fn bad_prices_are_refused_naming_the_field() {
        for bad in [
            "\"2.5000001\"",
            "0.0000001",
            "\"-1\"",
            "-1",
            "-0.5",
            "\"abc\"",
            "\"1e3\"",
            "\"\"",
            "\" 1\"",
            "10000.5",
            "1e10",
            "true",
            "nan",
            "inf",
            "[1]",
        ] {
            refused(&entry("m", "2025-01-01", bad), "prices[0].input");
        }
        let err = table(&entry("m", "2025-01-01", "\"2.5000001\"")).unwrap_err();
        assert!(err.reason.contains("6 decimals"), "{err}");
    }

    #[test]
    fn malformed_tables_are_refused_naming_the_field() {
        let ok = entry("m", "2025-01-01", "1");
        assert!(table(&ok).is_ok());
        // TOML itself refuses a repeated key.
        let twice = ok.replace("input = 1\n", "input = 1\ninput = 2\n");
        refused(&twice, "toml");
        refused(&format!("{ok}{ok}"), "prices[1]");
        // The same model on another date, or under another provider spelling of another
        // provider, is fine; the same provider under its old spelling is a duplicate.
        assert!(table(&format!("{ok}{}", entry("m", "2025-01-02", "2"))).is_ok());
        let old_spelling = |p: &str| {
            format!(
                "[[prices]]\nprovider = \"{p}\"\nmodel = \"m\"\neffective_from = \"2025-01-01\"\ninput = 1\noutput = 1\n"
            )
        };
        refused(
            &format!(
                "{}{}",
                old_spelling("azure.ai.openai"),
                old_spelling("az.ai.openai")
            ),
            "prices[1]",
        );
        refused(
            &ok.replace("output = \"1\"\n", "output = \"1\"\ncolour = \"red\"\n"),
            "prices[0].colour",
        );
        refused(&ok.replace("output = \"1\"\n", ""), "prices[0].output");
        refused(&ok.replace("model = \"m\"\n", ""), "prices[0].model");
        refused(
            &ok.replace("model = \"m\"\n", "model = \"m m\"\n"),
            "prices[0].model",
        );
        refused(
            &ok.replace("model = \"m\"\n", "model = 5\n"),
            "prices[0].model",
        );
        refused(
            &ok.replace("provider = \"openai\"\n", "provider = \"\"\n"),
            "prices[0].provider",
        );
        for date in [
            "2025-02-30",
            "2025-1-1",
            "25-01-01",
            "1969-12-31",
            "2025-01-01T00:00:00Z",
            "",
        ] {
            refused(&entry("m", date, "1"), "prices[0].effective_from");
        }
        // An unquoted TOML date is a date too; a date-time is not.
        assert!(table(&ok.replace("\"2025-01-01\"", "2025-01-01")).is_ok());
        refused(
            &ok.replace("\"2025-01-01\"", "2025-01-01T10:00:00Z"),
            "prices[0].effective_from",
        );
        refused(
            &ok.replace("effective_from = \"2025-01-01\"\n", ""),
            "prices[0].effective_from",
        );
        let tier = |above: &str| {
            format!("\n[[prices.tiers]]\nabove_input_tokens = {above}\ninput = 2\noutput = 2\n")
        };
        assert!(table(&format!("{ok}{}{}", tier("1000"), tier("2000"))).is_ok());
        refused(
            &format!("{ok}{}{}", tier("2000"), tier("2000")),
            "prices[0].tiers[1].above_input_tokens",
        );
        refused(
            &format!("{ok}{}", tier("0")),
            "prices[0].tiers[0].above_input_tokens",
        );
        refused(
            &format!("{ok}{}", tier("\"5\"")),
            "prices[0].tiers[0].above_input_tokens",
        );
        refused(
            &format!("{ok}{}", tier("5").replace("output = 2\n", "")),
            "prices[0].tiers[0].output",
        );
        refused(
            &format!("{ok}{}", tier("5") + "extra = 1\n"),
            "prices[0].tiers[0].extra",
        );
        refused("name = \"x\"\n", "name");
        assert_eq!(
            PriceTable::from_toml("prices = []").unwrap_err().field,
            "version"
        );
        assert_eq!(
            PriceTable::from_toml("version = 3").unwrap_err().field,
            "version"
        );
        assert_eq!(
            PriceTable::from_toml("version = \"\"").unwrap_err().field,
            "version"
        );
        assert_eq!(
            PriceTable::from_toml("version = \"v\"\nprices = 3")
                .unwrap_err()
                .field,
            "prices"
        );
        assert_eq!(
            PriceTable::from_toml("version = \"v\"\nprices = [3]")
                .unwrap_err()
                .field,
            "prices[0]"
        );
        assert!(PriceTable::from_toml("version = \"v\"")
            .unwrap()
            .prices
            .is_empty());
    }

    #[test]
    fn json_has_the_same_shape_and_round_trips() {
        let shipped = PriceTable::shipped();
        let json = serde_json::to_value(&shipped).unwrap();
        let gpt4o = &json["prices"][0];
        assert_eq!(gpt4o["model"], "gpt-4o");
        assert_eq!(gpt4o["input"], "2.50");
        assert_eq!(gpt4o["cache_read"], "1.25");
        assert_eq!(gpt4o["effective_from"], "2024-10-02");
        assert!(gpt4o.get("cache_write").is_none() && gpt4o.get("tiers").is_none());
        let back: PriceTable = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, shipped);
        assert_eq!(PriceTable::from_json(&json.to_string()).unwrap(), shipped);
        let err = PriceTable::from_json(r#"{"version": "v", "prices": [{"provider": "openai", "model": "m", "effective_from": "2025-01-01", "input": 1.0000001, "output": 1}]}"#).unwrap_err();
        assert_eq!(err.field, "prices[0].input");
        let err =
            serde_json::from_str::<PriceTable>(r#"{"version": "v", "extra": 1}"#).unwrap_err();
        assert!(err.to_string().starts_with("extra: unknown key"), "{err}");
        assert_eq!(PriceTable::from_json("[1]").unwrap_err().field, "");
        let nulls = r#"{"version": "v", "prices": [{"provider": "openai", "model": "m", "effective_from": "2025-01-01", "input": "1", "output": "2", "cache_read": null, "tiers": null}]}"#;
        assert_eq!(
            PriceTable::from_json(nulls).unwrap().prices[0]
                .rates
                .cache_read,
            None
        );
        let err = PriceTable::from_json(r#"{"version": "v", "prices": [null]}"#).unwrap_err();
        assert_eq!(err.field, "prices[0]");
        let err = PriceTable::from_json(r#"{"version": "v", "prices": [{"provider": "openai", "model": "m", "effective_from": "2025-01-01", "input": "1", "output": "2", "tiers": [{"above_input_tokens": 18446744073709551615, "input": 1, "output": 1}]}]}"#).unwrap_err();
        assert_eq!(err.field, "prices[0].tiers[0].above_input_tokens");
        // Through serde from the TOML format itself, dates included.
        let from_toml_serde: PriceTable = toml::from_str(SHIPPED_PRICES_TOML).unwrap();
        assert_eq!(from_toml_serde, shipped);
        let dated: PriceTable = toml::from_str(&format!(
            "version = \"v\"\n{}",
            entry("m", "2025-01-01", "1").replace("\"2025-01-01\"", "2025-01-01")
        ))
        .unwrap();
        assert_eq!(dated.prices[0].effective_from(), "2025-01-01");
        assert_eq!(PriceTable::from_json("{").unwrap_err().field, "json");
    }

    fn reference_cost(rates: &Rates, t: &TokenCounts) -> u128 {
        t.input as u128 * rates.input as u128
            + t.output as u128 * rates.output as u128
            + t.cache_read as u128 * rates.cache_read.unwrap_or(rates.input) as u128
            + t.cache_write as u128 * rates.cache_write.unwrap_or(rates.input) as u128
            + t.reasoning as u128 * rates.reasoning.unwrap_or(rates.output) as u128
    }

    fn rates() -> impl Strategy<Value = Rates> {
        let price = 0..=MAX_PRICE_MICROS;
        (
            price.clone(),
            price.clone(),
            proptest::option::of(price.clone()),
            proptest::option::of(price.clone()),
            proptest::option::of(price),
        )
            .prop_map(
                |(input, output, cache_read, cache_write, reasoning)| Rates {
                    input,
                    output,
                    cache_read,
                    cache_write,
                    reasoning,
                },
            )
    }

    fn tokens() -> impl Strategy<Value = TokenCounts> {
        let n = 0..=crate::event::MAX_TOKENS;
        (n.clone(), n.clone(), n.clone(), n.clone(), n).prop_map(
            |(input, output, cache_read, cache_write, reasoning)| TokenCounts {
                input,
                output,
                cache_read,
                cache_write,
                reasoning,
            },
        )
    }

    proptest! {
        #[test]
        fn cost_is_exact(rates in rates(), t in tokens()) {
            let expected = reference_cost(&rates, &t);
            prop_assert_eq!(rates.cost(&t).map(|c| c.picodollars() as u128), u64::try_from(expected).ok().map(u128::from));
        }

        #[test]
        fn cost_is_additive_without_tiers(rates in rates(), calls in proptest::collection::vec(tokens(), 1..20)) {
            // Keep the sum inside a Cost: divide counts so 20 calls at top price fit.
            let calls: Vec<TokenCounts> = calls.into_iter().map(|t| TokenCounts {
                input: t.input / 1000, output: t.output / 1000, cache_read: t.cache_read / 1000,
                cache_write: t.cache_write / 1000, reasoning: t.reasoning / 1000,
            }).collect();
            let mut sum_of_costs = 0u128;
            let mut sum_of_tokens = TokenCounts::default();
            for t in &calls {
                sum_of_costs += rates.cost(t).unwrap().picodollars() as u128;
                sum_of_tokens = sum_of_tokens.checked_add(t).unwrap();
            }
            prop_assert_eq!(rates.cost(&sum_of_tokens).map(|c| c.picodollars() as u128), Some(sum_of_costs));
        }

        #[test]
        fn lookup_picks_the_latest_effective_entry(
            days in proptest::collection::btree_set(19_000i64..21_000, 1..8),
            at in 18_990i64..21_010,
            dated in any::<bool>(),
        ) {
            let text: String = days.iter().map(|d| {
                entry("gpt-x", &format_day(*d), &format!("{}", d - 18_000))
            }).collect();
            let t = table(&text).unwrap();
            let model = if dated { "gpt-x-2025-01-01" } else { "gpt-x" };
            let time = at * DAY + DAY / 2;
            let expected = days.iter().copied().filter(|d| *d <= at).max();
            let got = t.lookup("openai", model, time).map(|p| p.effective_from_ms / DAY);
            prop_assert_eq!(got, expected);
            if let Some(d) = expected {
                prop_assert_eq!(t.lookup("openai", model, time).unwrap().rates.input, (d - 18_000) as u64 * MICROS);
            }
        }

        #[test]
        fn serialised_tables_read_back_equal(rates in rates(), model in "[a-z][a-z0-9.-]{0,20}", day in 0i64..80_000, above in 1u64..u64::MAX / 2) {
            let table = PriceTable {
                version: "p".into(),
                prices: vec![ModelPrice {
                    provider: "openai".into(),
                    model,
                    effective_from_ms: day * DAY,
                    rates,
                    tiers: vec![Tier { above_input_tokens: above, rates }],
                }],
            };
            let json = serde_json::to_string(&table).unwrap();
            prop_assert_eq!(PriceTable::from_json(&json).unwrap(), table);
        }
    }
}
