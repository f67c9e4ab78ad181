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

    /// A client-reported dollar amount (e.g. `gen_ai.usage.cost`). The number is read as the
    /// shortest decimal that denotes it (what the client wrote, for up to 15 significant
    /// digits), exactly when that has at most 12 decimals, else rounded to the nearest
    /// picodollar.
    ///
    /// ```
    /// use llm::Cost;
    /// assert_eq!(Cost::from_usd(0.3).unwrap().picodollars(), 300_000_000_000);
    /// assert_eq!(Cost::from_usd(0.000_000_25).unwrap().picodollars(), 250_000);
    /// assert!(Cost::from_usd(-0.01).is_err());
    /// ```
    pub fn from_usd(usd: f64) -> Result<Cost, CostError> {
        if !usd.is_finite() || usd < 0.0 {
            return Err(CostError::NotFinite);
        }
        if usd > Self::MAX_USD {
            return Err(CostError::TooLarge(usd));
        }
        // `{}` prints the shortest decimal that reads back as `usd`: exact when it fits.
        if let Ok(cost) = Cost::parse_usd(&format!("{usd}")) {
            return Ok(cost);
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

/// Why a decimal amount could not be read exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("must be a decimal number such as \"2.50\" (digits, an optional point and digits)")]
    Malformed,
    #[error("must not be negative")]
    Negative,
    #[error("has more than {max} decimals (the smallest unit is 10^-{max})")]
    TooManyDecimals { max: u32 },
    #[error("is over the limit of {max}")]
    TooLarge { max: String },
}

/// Reads a non-negative decimal such as `"2.50"` as an integer count of `10^-scale` units,
/// exactly: `parse_decimal("2.5", 6, u64::MAX) == Ok(2_500_000)`. No sign, exponent or
/// spaces; more than `scale` decimals is an error (never rounded). `max` is in units.
pub(crate) fn parse_decimal(text: &str, scale: u32, max: u64) -> Result<u64, DecimalError> {
    if let Some(rest) = text.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(DecimalError::Negative);
        }
        return Err(DecimalError::Malformed);
    }
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err(DecimalError::Malformed);
    }
    let frac = frac.unwrap_or("");
    // Trailing zeros carry no value: "2.5000000" is 2.5 and fine at scale 6.
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return Err(DecimalError::TooManyDecimals { max: scale });
    }
    let too_large = || DecimalError::TooLarge {
        max: format_decimal(max, scale, 0),
    };
    let whole = whole.trim_start_matches('0');
    // More than 39 digits cannot fit a u128; refuse before parsing.
    if whole.len() > 30 {
        return Err(too_large());
    }
    let mut units: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().map_err(|_| too_large())?
    };
    units = units.checked_mul(10u128.pow(scale)).ok_or_else(too_large)?;
    if !frac.is_empty() {
        let f: u128 = frac.parse().map_err(|_| DecimalError::Malformed)?;
        units += f * 10u128.pow(scale - frac.len() as u32);
    }
    if units > max as u128 {
        return Err(too_large());
    }
    Ok(units as u64)
}

/// Formats `units` of `10^-scale` as an exact decimal with at least `min_decimals` decimals
/// and no trailing zeros beyond them: `format_decimal(2_500_000, 6, 2) == "2.50"`.
pub(crate) fn format_decimal(units: u64, scale: u32, min_decimals: usize) -> String {
    let div = 10u64.pow(scale);
    let whole = units / div;
    let frac = format!("{:0width$}", units % div, width = scale as usize);
    let trimmed = frac.trim_end_matches('0');
    let keep = trimmed.len().max(min_decimals.min(scale as usize));
    if keep == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", &frac[..keep])
    }
}

impl Cost {
    /// Reads a dollar amount written as a decimal (`"12.50"`), exactly: up to 12 decimals
    /// (one picodollar), at most [`Cost::MAX_USD`].
    ///
    /// ```
    /// use llm::Cost;
    /// assert_eq!(Cost::parse_usd("0.000001").unwrap().picodollars(), 1_000_000);
    /// assert!(Cost::parse_usd("0.0000000000001").is_err()); // 13 decimals
    /// ```
    pub fn parse_usd(text: &str) -> Result<Cost, DecimalError> {
        parse_decimal(text, 12, Self::MAX_USD as u64 * Self::PER_USD).map(Cost)
    }

    /// The exact amount as a decimal dollar string with at least two decimals and no
    /// rounding: `"0.25"`, `"0.000125"`, `"12.00"`.
    ///
    /// ```
    /// use llm::Cost;
    /// assert_eq!(Cost::from_picodollars(2_500_000_000).usd_string(), "0.0025");
    /// assert_eq!(Cost::from_picodollars(12 * Cost::PER_USD).usd_string(), "12.00");
    /// ```
    pub fn usd_string(self) -> String {
        format_decimal(self.0, 12, 2)
    }

    /// The sum, saturating at the largest amount (for running totals that must never wrap).
    pub fn saturating_add(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimals_parse_exactly_or_not_at_all() {
        let p = |s| parse_decimal(s, 6, u64::MAX);
        assert_eq!(p("2.50"), Ok(2_500_000));
        assert_eq!(p("0.075"), Ok(75_000));
        assert_eq!(p("15"), Ok(15_000_000));
        assert_eq!(p("0.0000010"), Ok(1));
        assert_eq!(p("007.5"), Ok(7_500_000));
        assert_eq!(
            p("0.0000001"),
            Err(DecimalError::TooManyDecimals { max: 6 })
        );
        assert_eq!(p("-1"), Err(DecimalError::Negative));
        for bad in [
            "", ".5", "5.", "1e3", "+1", " 1", "1 ", "1.2.3", "0x10", "١",
        ] {
            assert_eq!(p(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert!(matches!(
            parse_decimal("10.000001", 6, 10_000_000),
            Err(DecimalError::TooLarge { .. })
        ));
        assert!(matches!(
            p("99999999999999999999999999999999999999999"),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn decimals_format_exactly() {
        assert_eq!(format_decimal(2_500_000, 6, 2), "2.50");
        assert_eq!(format_decimal(75_000, 6, 2), "0.075");
        assert_eq!(format_decimal(1, 6, 2), "0.000001");
        assert_eq!(format_decimal(0, 6, 2), "0.00");
        assert_eq!(format_decimal(7, 0, 2), "7");
        assert_eq!(format_decimal(u64::MAX, 12, 2), "18446744.073709551615");
    }

    #[test]
    fn client_costs_keep_their_decimal_digits() {
        assert_eq!(Cost::from_usd(0.0042).unwrap().picodollars(), 4_200_000_000);
        assert_eq!(
            Cost::from_usd(0.1 + 0.2).unwrap().picodollars(),
            300_000_000_000
        );
        assert_eq!(Cost::from_usd(1e-13).unwrap().picodollars(), 0);
        assert_eq!(Cost::from_usd(6e-13).unwrap().picodollars(), 1);
        assert_eq!(Cost::from_usd(0.0).unwrap(), Cost::ZERO);
        assert_eq!(
            Cost::from_usd(1_000_000.0).unwrap().usd_string(),
            "1000000.00"
        );
        assert!(matches!(
            Cost::from_usd(1_000_000.01),
            Err(CostError::TooLarge(_))
        ));
        assert_eq!(Cost::from_usd(f64::NAN), Err(CostError::NotFinite));
    }

    proptest! {
        #[test]
        fn written_dollar_amounts_are_exact(cents in 0u64..100_000_000, micro in 0u64..1_000_000) {
            // An amount with up to 12 significant decimals, as a client would write it.
            let text = format!("{}.{:02}{:06}", cents / 100, cents % 100, micro);
            let usd: f64 = text.parse().unwrap();
            prop_assert_eq!(Cost::from_usd(usd).unwrap(), Cost::parse_usd(&text).unwrap());
        }

        #[test]
        fn decimal_format_parse_round_trip(units in any::<u64>(), scale in 0u32..=12, min in 0usize..4) {
            let text = format_decimal(units, scale, min);
            prop_assert_eq!(parse_decimal(&text, scale, u64::MAX), Ok(units));
        }
    }
}
