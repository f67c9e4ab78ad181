//! Versioned price tables and exact cost.
//!
//! (H1 fills in: the TOML format, the shipped table, lookup by provider/model/date with
//! long-context tiers, per-tenant overrides, and the fallbacks, all documented here.)

use crate::{Cost, TokenCounts};

/// Prices of one model from a date on, in micro-dollars per million tokens (= picodollars per
/// token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelPrice {
    pub provider: String,
    pub model: String,
    /// First day (Unix ms, UTC midnight) the price applies.
    pub effective_from_ms: i64,
    pub rates: Rates,
    /// Long-context tiers, by ascending `above_input_tokens`.
    pub tiers: Vec<Tier>,
}

/// Per-token-type prices in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub reasoning: Option<u64>,
}

/// Prices that replace the base rates when a call's prompt is longer than a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// A price table: a version string and its entries.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
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

impl PriceTable {
    /// Parses a TOML price table.
    pub fn from_toml(_text: &str) -> Result<PriceTable, PriceError> {
        todo!("H1")
    }

    /// The price of `provider`/`model` on `time_ms`, if any.
    pub fn lookup(&self, _provider: &str, _model: &str, _time_ms: i64) -> Option<&ModelPrice> {
        todo!("H1")
    }
}

/// The prices one tenant pays: its overrides first, then (unless switched off) the defaults.
#[derive(Debug, Clone)]
pub struct Pricing<'a> {
    pub defaults: &'a PriceTable,
    pub overrides: &'a PriceTable,
    pub use_defaults: bool,
}

impl Pricing<'_> {
    /// The cost of a call, or `None` when no price applies (never guessed).
    pub fn cost(
        &self,
        _provider: &str,
        _model: &str,
        _time_ms: i64,
        _tokens: &TokenCounts,
    ) -> Option<Cost> {
        todo!("H1")
    }
}
