//! Money in exact integer units.
//!
//! Prices are quoted in US dollars per million tokens with at most six decimals (a
//! micro-dollar per million tokens), so one token costs a whole number of picodollars
//! (10⁻¹² USD): `cost = tokens × price_in_micro_dollars_per_million`. Sums stay exact; the
//! only rounding is in display (`cents`, `usd`).

use serde::{Deserialize, Serialize};

/// An amount of money in picodollars (10⁻¹² USD).
///
/// ```
/// use llm::Cost;
/// let c = Cost::from_picodollars(2_500_000_000); // a quarter of a cent
/// assert_eq!(c.cents(), 0.25);
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cost(u64);

/// Why an amount could not be represented.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    #[error("cost must be a finite, non-negative number of dollars")]
    NotFinite,
    #[error("cost of {0} USD is over the limit of {max} USD", max = Cost::MAX_USD)]
    TooLarge(f64),
    #[error("cost sum overflowed")]
    Overflow,
}

impl Cost {
    /// Picodollars in a dollar.
    pub const PER_USD: u64 = 1_000_000_000_000;
    /// Picodollars in a cent.
    pub const PER_CENT: u64 = 10_000_000_000;
    /// The largest single amount accepted from a client, in dollars.
    pub const MAX_USD: f64 = 1_000_000.0;
    /// Nothing.
    pub const ZERO: Cost = Cost(0);

    /// An amount in picodollars.
    pub const fn from_picodollars(p: u64) -> Cost {
        Cost(p)
    }

    /// The amount in picodollars.
    pub const fn picodollars(self) -> u64 {
        self.0
    }

    /// A client-reported dollar amount (e.g. `gen_ai.usage.cost`), rounded to the nearest
    /// picodollar.
    pub fn from_usd(usd: f64) -> Result<Cost, CostError> {
        if !usd.is_finite() || usd < 0.0 {
            return Err(CostError::NotFinite);
        }
        if usd > Self::MAX_USD {
            return Err(CostError::TooLarge(usd));
        }
        Ok(Cost((usd * Self::PER_USD as f64).round() as u64))
    }

    /// The sum, or an error on overflow.
    pub fn checked_add(self, other: Cost) -> Result<Cost, CostError> {
        self.0
            .checked_add(other.0)
            .map(Cost)
            .ok_or(CostError::Overflow)
    }

    /// The amount in cents, for display and the `model_api_cost_cents_total` counter.
    pub fn cents(self) -> f64 {
        self.0 as f64 / Self::PER_CENT as f64
    }

    /// The amount in dollars, for display.
    pub fn usd(self) -> f64 {
        self.0 as f64 / Self::PER_USD as f64
    }
}
