//! Exact non-negative rational numbers for the samplers and noise scales.
//!
//! The samplers of [`crate::sample`] are exact only if their parameters are: a noise scale is
//! kept as a fraction of two arbitrary-precision integers, always reduced, never as a float.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{One, ToPrimitive, Zero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative rational number `numer / denom` in lowest terms (`denom > 0`).
///
/// ```
/// use privacy::Rational;
/// let a = Rational::new(1u32, 10u32).unwrap();
/// let sum = (0..10).fold(Rational::zero(), |acc, _| acc.add(&a));
/// assert_eq!(sum, Rational::from_integer(1u32));
/// assert_eq!(Rational::new(6u32, 4u32).unwrap().to_string(), "3/2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rational {
    numer: BigUint,
    denom: BigUint,
}

/// Why a text is not a [`Rational`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RationalError {
    /// The denominator is zero.
    #[error("denominator must not be zero")]
    ZeroDenominator,
    /// Not of the form `n` or `n/d` with decimal digits.
    #[error("must be a non-negative fraction written n or n/d (at most 200 digits each)")]
    Syntax,
}

/// The longest numerator or denominator accepted when parsing (input size limit).
const MAX_DIGITS: usize = 200;

impl Rational {
    /// `numer / denom`, reduced; `None` when `denom` is zero.
    pub fn new(numer: impl Into<BigUint>, denom: impl Into<BigUint>) -> Option<Rational> {
        let (numer, denom) = (numer.into(), denom.into());
        if denom.is_zero() {
            return None;
        }
        Some(Rational::reduced(numer, denom))
    }

    /// The integer `n` as `n / 1`.
    pub fn from_integer(n: impl Into<BigUint>) -> Rational {
        Rational {
            numer: n.into(),
            denom: BigUint::one(),
        }
    }

    /// Zero.
    pub fn zero() -> Rational {
        Rational::from_integer(0u32)
    }

    /// One.
    pub fn one() -> Rational {
        Rational::from_integer(1u32)
    }

    fn reduced(numer: BigUint, denom: BigUint) -> Rational {
        if numer.is_zero() {
            return Rational {
                numer,
                denom: BigUint::one(),
            };
        }
        let g = numer.gcd(&denom);
        if g.is_one() {
            Rational { numer, denom }
        } else {
            Rational {
                numer: numer / &g,
                denom: denom / g,
            }
        }
    }

    /// The numerator (lowest terms).
    pub fn numer(&self) -> &BigUint {
        &self.numer
    }

    /// The denominator (lowest terms, never zero).
    pub fn denom(&self) -> &BigUint {
        &self.denom
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.numer.is_zero()
    }

    /// The exact sum.
    pub fn add(&self, other: &Rational) -> Rational {
        Rational::reduced(
            &self.numer * &other.denom + &other.numer * &self.denom,
            &self.denom * &other.denom,
        )
    }

    /// The exact difference, or `None` when it would be negative.
    pub fn checked_sub(&self, other: &Rational) -> Option<Rational> {
        let left = &self.numer * &other.denom;
        let right = &other.numer * &self.denom;
        if left < right {
            return None;
        }
        Some(Rational::reduced(left - right, &self.denom * &other.denom))
    }

    /// `|self − other|`, exactly.
    pub fn abs_diff(&self, other: &Rational) -> Rational {
        let left = &self.numer * &other.denom;
        let right = &other.numer * &self.denom;
        let diff = if left >= right {
            left - right
        } else {
            right - left
        };
        Rational::reduced(diff, &self.denom * &other.denom)
    }

    /// The exact product.
    pub fn mul(&self, other: &Rational) -> Rational {
        Rational::reduced(&self.numer * &other.numer, &self.denom * &other.denom)
    }

    /// The exact quotient, or `None` when `other` is zero.
    pub fn checked_div(&self, other: &Rational) -> Option<Rational> {
        if other.is_zero() {
            return None;
        }
        Some(Rational::reduced(
            &self.numer * &other.denom,
            &self.denom * &other.numer,
        ))
    }

    /// The reciprocal, or `None` for zero.
    pub fn recip(&self) -> Option<Rational> {
        if self.is_zero() {
            return None;
        }
        Some(Rational {
            numer: self.denom.clone(),
            denom: self.numer.clone(),
        })
    }

    /// The largest integer not above this number.
    pub fn floor(&self) -> BigUint {
        &self.numer / &self.denom
    }

    /// The nearest `f64` (for display and for the floating-point calibration formulas; never
    /// used to draw noise).
    pub fn to_f64(&self) -> f64 {
        match (self.numer.to_f64(), self.denom.to_f64()) {
            (Some(n), Some(d)) if n.is_finite() && d.is_finite() => n / d,
            // Beyond f64's range: scale both down by the same power of two first.
            _ => {
                let shift = self
                    .numer
                    .bits()
                    .max(self.denom.bits())
                    .saturating_sub(1000);
                let n = (&self.numer >> shift).to_f64().unwrap_or(f64::INFINITY);
                let d = (&self.denom >> shift).to_f64().unwrap_or(f64::INFINITY);
                n / d
            }
        }
    }
}

impl Ord for Rational {
    fn cmp(&self, other: &Rational) -> Ordering {
        (&self.numer * &other.denom).cmp(&(&other.numer * &self.denom))
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Rational) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Rational {
    /// `n` for integers, `n/d` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.denom.is_one() {
            write!(f, "{}", self.numer)
        } else {
            write!(f, "{}/{}", self.numer, self.denom)
        }
    }
}

impl FromStr for Rational {
    type Err = RationalError;

    fn from_str(text: &str) -> Result<Rational, RationalError> {
        fn digits(part: &str) -> Result<BigUint, RationalError> {
            if part.is_empty()
                || part.len() > MAX_DIGITS
                || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(RationalError::Syntax);
            }
            BigUint::parse_bytes(part.as_bytes(), 10).ok_or(RationalError::Syntax)
        }
        let (numer, denom) = match text.split_once('/') {
            Some((n, d)) => (digits(n)?, digits(d)?),
            None => (digits(text)?, BigUint::one()),
        };
        Rational::new(numer, denom).ok_or(RationalError::ZeroDenominator)
    }
}

/// Serialised as the string of [`Display`](fmt::Display) (`"3/2"`), exact in any JSON reader.
impl Serialize for Rational {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rational {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rational, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u64, d: u64) -> Rational {
        Rational::new(n, d).unwrap()
    }

    #[test]
    fn fractions_are_kept_in_lowest_terms() {
        assert_eq!(r(10, 4), r(5, 2));
        assert_eq!(r(10, 4).numer(), &BigUint::from(5u32));
        assert_eq!(r(0, 7).denom(), &BigUint::one());
        assert_eq!(Rational::new(1u32, 0u32), None);
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(r(1, 3).add(&r(1, 6)), r(1, 2));
        assert_eq!(r(1, 3).checked_sub(&r(1, 2)), None);
        assert_eq!(r(1, 3).abs_diff(&r(1, 2)), r(1, 6));
        assert_eq!(r(2, 3).mul(&r(9, 4)), r(3, 2));
        assert_eq!(r(2, 3).checked_div(&r(4, 9)), Some(r(3, 2)));
        assert_eq!(r(7, 2).floor(), BigUint::from(3u32));
        assert!(r(1, 3) < r(34, 100));
    }

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        assert_eq!("3/2".parse::<Rational>().unwrap(), r(3, 2));
        assert_eq!("6/4".parse::<Rational>().unwrap().to_string(), "3/2");
        assert_eq!("10".parse::<Rational>().unwrap().to_string(), "10");
        assert_eq!(
            "1/0".parse::<Rational>(),
            Err(RationalError::ZeroDenominator)
        );
        for bad in ["", "-1", "1/", "/2", "1.5", "1/2/3", " 1"] {
            assert_eq!(
                bad.parse::<Rational>(),
                Err(RationalError::Syntax),
                "{bad:?}"
            );
        }
        let json = serde_json::to_string(&r(3, 2)).unwrap();
        assert_eq!(json, "\"3/2\"");
        assert_eq!(serde_json::from_str::<Rational>(&json).unwrap(), r(3, 2));
    }

    #[test]
    fn huge_values_convert_to_f64() {
        let big = BigUint::from(10u32).pow(400);
        let x = Rational::new(big.clone() * 3u32, big).unwrap();
        assert_eq!(x.to_f64(), 3.0);
        let y = Rational::new(
            BigUint::from(10u32).pow(400) * 3u32,
            BigUint::from(7u32).pow(470),
        )
        .unwrap();
        assert!(y.to_f64().is_finite());
    }
}
