//! Privacy-loss parameters as exact integers.
//!
//! The ledger adds and compares ε and δ; with `f64`, ten spends of 0.1 sum to
//! 0.9999999999999999 and fifty to 5.000000000000002, so a budget of 5 would refuse the
//! fiftieth. Both are kept as integer counts of a fixed unit instead.

use serde::{Deserialize, Serialize};

/// Why a number is not a valid ε or δ.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// Not a finite number.
    #[error("must be a finite number")]
    NotFinite,
    /// Outside the accepted range.
    #[error("must be in {min}..={max}")]
    OutOfRange {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
}

/// ε, the privacy loss of a release, in units of 10⁻⁹.
///
/// ```
/// use privacy::Epsilon;
/// let one_tenth = Epsilon::from_f64(0.1).unwrap();
/// let mut spent = Epsilon::ZERO;
/// for _ in 0..50 {
///     spent = spent.checked_add(one_tenth).unwrap();
/// }
/// assert_eq!(spent, Epsilon::from_f64(5.0).unwrap());
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epsilon(u64);

/// δ, the probability with which a release may exceed its ε, in units of 10⁻¹⁵.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Delta(u64);

impl Epsilon {
    /// Units per 1.0.
    pub const SCALE: u64 = 1_000_000_000;
    /// No privacy loss.
    pub const ZERO: Epsilon = Epsilon(0);
    /// The largest ε accepted from a caller (a budget or a query): beyond it, differential
    /// privacy no longer means anything useful.
    pub const MAX_F64: f64 = 1000.0;

    /// ε from its count of 10⁻⁹ units.
    pub const fn from_nanos(nanos: u64) -> Epsilon {
        Epsilon(nanos)
    }

    /// The count of 10⁻⁹ units.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// ε from a decimal number, rounded to the nearest 10⁻⁹; 0 and values up to
    /// [`Epsilon::MAX_F64`] are accepted.
    pub fn from_f64(value: f64) -> Result<Epsilon, UnitError> {
        from_f64(value, Self::SCALE, Self::MAX_F64).map(Epsilon)
    }

    /// As a decimal number (for display and for noise calibration).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Epsilon) -> Option<Epsilon> {
        self.0.checked_add(other.0).map(Epsilon)
    }

    /// The difference, or `None` below zero.
    pub fn checked_sub(self, other: Epsilon) -> Option<Epsilon> {
        self.0.checked_sub(other.0).map(Epsilon)
    }

    /// The difference, floored at zero.
    pub fn saturating_sub(self, other: Epsilon) -> Epsilon {
        Epsilon(self.0.saturating_sub(other.0))
    }
}

impl Delta {
    /// Units per 1.0.
    pub const SCALE: u64 = 1_000_000_000_000_000;
    /// No δ (pure differential privacy).
    pub const ZERO: Delta = Delta(0);
    /// The largest δ accepted: a δ should be far below 1 / (number of people); 10⁻³ is already
    /// generous.
    pub const MAX_F64: f64 = 1e-3;

    /// δ from its count of 10⁻¹⁵ units.
    pub const fn from_femtos(femtos: u64) -> Delta {
        Delta(femtos)
    }

    /// The count of 10⁻¹⁵ units.
    pub const fn femtos(self) -> u64 {
        self.0
    }

    /// δ from a decimal number, rounded to the nearest 10⁻¹⁵; 0 to [`Delta::MAX_F64`].
    pub fn from_f64(value: f64) -> Result<Delta, UnitError> {
        from_f64(value, Self::SCALE, Self::MAX_F64).map(Delta)
    }

    /// As a decimal number.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Delta) -> Option<Delta> {
        self.0.checked_add(other.0).map(Delta)
    }

    /// The difference, or `None` below zero.
    pub fn checked_sub(self, other: Delta) -> Option<Delta> {
        self.0.checked_sub(other.0).map(Delta)
    }

    /// The difference, floored at zero.
    pub fn saturating_sub(self, other: Delta) -> Delta {
        Delta(self.0.saturating_sub(other.0))
    }
}

fn from_f64(value: f64, scale: u64, max: f64) -> Result<u64, UnitError> {
    if !value.is_finite() {
        return Err(UnitError::NotFinite);
    }
    if !(0.0..=max).contains(&value) {
        return Err(UnitError::OutOfRange { min: 0.0, max });
    }
    // In range, so the product is below 2^63 for both units and the cast cannot saturate.
    Ok((value * scale as f64).round() as u64)
}

impl std::fmt::Display for Epsilon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:e}", self.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_values_round_to_the_nearest_unit() {
        assert_eq!(Epsilon::from_f64(0.1).unwrap().nanos(), 100_000_000);
        assert_eq!(Epsilon::from_f64(1e-10).unwrap().nanos(), 0);
        assert_eq!(Delta::from_f64(1e-6).unwrap().femtos(), 1_000_000_000);
        assert_eq!(Epsilon::from_f64(0.3).unwrap().as_f64(), 0.3);
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(Epsilon::from_f64(f64::NAN), Err(UnitError::NotFinite));
        assert!(Epsilon::from_f64(-0.1).is_err());
        assert!(Epsilon::from_f64(1001.0).is_err());
        assert!(Delta::from_f64(0.01).is_err());
    }

    #[test]
    fn sums_are_exact() {
        let tenth = Epsilon::from_f64(0.1).unwrap();
        let total = (0..10).fold(Epsilon::ZERO, |acc, _| acc.checked_add(tenth).unwrap());
        assert_eq!(total, Epsilon::from_f64(1.0).unwrap());
        assert_eq!(total.checked_sub(Epsilon::from_f64(1.5).unwrap()), None);
    }
}
