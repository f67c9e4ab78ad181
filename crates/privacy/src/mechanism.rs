//! Noise mechanisms: calibration (ε, δ, sensitivity → scale), sampling and accuracy.
//!
//! Calibration and accuracy follow OpenDP (the library of the OpenDP project, version pinned in
//! `oracle/requirements.txt`) formula by formula, and `tests/opendp_parity.rs` checks them
//! against a fixture that OpenDP itself computed.

use num_bigint::BigUint;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::rational::Rational;
use crate::sample::{discrete_gaussian, discrete_laplace};
use crate::units::{Delta, Epsilon};

/// The grid of Gaussian σ: σ is a multiple of 10⁻⁶, rounded up.
pub const GAUSSIAN_SIGMA_DENOMINATOR: u64 = 1_000_000;

/// Up to this σ the Gaussian accuracy is OpenDP's sum of the pmf (about 2σ terms at α = 0.05,
/// 8σ at α = 10⁻¹⁵); above it the sub-Gaussian tail bound is used instead (wider, still valid).
const GAUSSIAN_ACCURACY_EXACT_MAX_SIGMA: f64 = 1_000_000.0;

/// From this σ on, the discrete Gaussian's normalising constant is σ·√(2π) to the last bit.
const GAUSSIAN_CLOSED_FORM_NORM_MIN_SIGMA: f64 = 8.0;

/// Which noise distribution a release uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace (two-sided geometric): pure ε-DP for an L1 sensitivity.
    DiscreteLaplace,
    /// Discrete Gaussian: ρ-zCDP for an L2 sensitivity, converted to (ε, δ)-DP.
    DiscreteGaussian,
}

/// Why noise cannot be calibrated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    /// ε = 0 would need infinite noise.
    #[error("epsilon must be greater than zero")]
    ZeroEpsilon,
    /// The Gaussian mechanism cannot give pure DP: δ must be positive.
    #[error("delta must be greater than zero for the discrete Gaussian mechanism")]
    ZeroDelta,
    /// A sensitivity of zero means the query does not depend on the data: nothing to protect,
    /// and almost certainly a mistake in the caller.
    #[error("sensitivity must be greater than zero")]
    ZeroSensitivity,
    /// The scale needed is beyond what can be represented (a Gaussian σ above 4·10³¹).
    #[error("the noise scale needed is too large to represent")]
    Overflow,
}

/// A calibrated noise distribution: a mechanism and its scale (the Laplace b, or the Gaussian σ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noise {
    /// The distribution.
    pub mechanism: Mechanism,
    /// Laplace: b in P(x) ∝ exp(−|x|/b). Gaussian: σ in P(x) ∝ exp(−x²/(2σ²)).
    pub scale: Rational,
}

impl Noise {
    /// Discrete Laplace noise for an ε-DP release of a query whose L1 sensitivity (the most one
    /// person can change it) is `sensitivity_l1`: scale = Δ₁ / ε, exactly. Pure ε-DP (δ = 0).
    ///
    /// ```
    /// use privacy::{Epsilon, Noise};
    /// let noise = Noise::laplace(1, Epsilon::from_f64(0.1).unwrap()).unwrap();
    /// assert_eq!(noise.scale.to_string(), "10");
    /// ```
    pub fn laplace(sensitivity_l1: u64, epsilon: Epsilon) -> Result<Noise, PrivacyError> {
        if sensitivity_l1 == 0 {
            return Err(PrivacyError::ZeroSensitivity);
        }
        if epsilon.nanos() == 0 {
            return Err(PrivacyError::ZeroEpsilon);
        }
        // Δ / (nanos · 10⁻⁹) = Δ · 10⁹ / nanos.
        let scale = Rational::new(
            BigUint::from(sensitivity_l1) * Epsilon::SCALE,
            BigUint::from(epsilon.nanos()),
        )
        .ok_or(PrivacyError::ZeroEpsilon)?;
        Ok(Noise {
            mechanism: Mechanism::DiscreteLaplace,
            scale,
        })
    }

    /// Discrete Gaussian noise for an (ε, δ)-DP release of a query with L2 sensitivity
    /// `sensitivity_l2`.
    ///
    /// The discrete Gaussian with σ is ρ-zCDP with ρ = Δ₂²/(2σ²) (Canonne, Kamath and Steinke
    /// 2020); ρ-zCDP implies (ε, δ)-DP for δ = [`cdp_delta`]`(ρ, ε)`, OpenDP's
    /// conversion (their Section 2.3, optimised over the Rényi order). σ is the smallest
    /// multiple of 10⁻⁶ whose δ is at most the given one, so it is never less private than
    /// asked (rounded up, not to the nearest).
    pub fn gaussian(
        sensitivity_l2: u64,
        epsilon: Epsilon,
        delta: Delta,
    ) -> Result<Noise, PrivacyError> {
        if sensitivity_l2 == 0 {
            return Err(PrivacyError::ZeroSensitivity);
        }
        if epsilon.nanos() == 0 {
            return Err(PrivacyError::ZeroEpsilon);
        }
        if delta.femtos() == 0 {
            return Err(PrivacyError::ZeroDelta);
        }
        let eps = epsilon.as_f64();
        let target = delta.as_f64();
        let sens = sensitivity_l2 as f64;
        let grid = GAUSSIAN_SIGMA_DENOMINATOR as f64;
        let private_enough = |k: u128| -> bool {
            let sigma = k as f64 / grid;
            gaussian_delta(sens, sigma, eps) <= target
        };
        // Find an upper bound by doubling, then binary-search the smallest grid point.
        let mut hi: u128 = GAUSSIAN_SIGMA_DENOMINATOR as u128;
        while !private_enough(hi) {
            hi = hi.checked_mul(2).ok_or(PrivacyError::Overflow)?;
            if hi > 1u128 << 125 {
                return Err(PrivacyError::Overflow);
            }
        }
        let mut lo: u128 = 0; // σ = 0 is never private enough.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if private_enough(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let scale = Rational::new(BigUint::from(hi), BigUint::from(GAUSSIAN_SIGMA_DENOMINATOR))
            .ok_or(PrivacyError::Overflow)?;
        Ok(Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale,
        })
    }

    /// One noise value, drawn exactly (see [`crate::sample`]).
    pub fn sample(&self, rng: &mut (impl RngCore + CryptoRng)) -> i64 {
        match self.mechanism {
            Mechanism::DiscreteLaplace => discrete_laplace(rng, &self.scale),
            Mechanism::DiscreteGaussian => discrete_gaussian(rng, &self.scale),
        }
    }

    /// `true_value` plus one noise value, saturating at the `i64` bounds.
    pub fn release(&self, rng: &mut (impl RngCore + CryptoRng), true_value: i64) -> i64 {
        true_value.saturating_add(self.sample(rng))
    }

    /// The half-width `a` of the symmetric interval holding the noise with probability at least
    /// 1 − `alpha`: P(|noise| ≥ a) ≤ alpha. `accuracy(0.05)` is the "±95%" figure.
    ///
    /// As OpenDP computes it: for the discrete Laplace with scale b,
    /// a = b · ln(2 / ((e^(1/b) + 1) · α)) + 1 (`discrete_laplacian_scale_to_accuracy`; the
    /// floor can be taken without losing coverage); for the discrete Gaussian, one plus the
    /// smallest i with P(|X| ≤ i) ≥ 1 − α, summing the pmf in `f64`
    /// (`discrete_gaussian_scale_to_accuracy`; its normalising constant, a sum of about 39σ
    /// terms there, is σ·√(2π) here from σ = 8 on, equal in `f64` by Poisson summation). For σ
    /// above 10⁶, where the sum would take millions of terms, the sub-Gaussian bound
    /// a = ⌈1 + σ·√(2 ln(1/α))⌉ (from P(X ≥ m) ≤ P(N(0, σ²) ≥ m − 1), CKS20 Proposition 25) is
    /// used: wider, still valid.
    ///
    /// `alpha` is clamped to [10⁻¹⁵, 1] (NaN counts as 10⁻¹⁵).
    pub fn accuracy(&self, alpha: f64) -> f64 {
        let alpha = if alpha.is_nan() {
            1e-15
        } else {
            alpha.clamp(1e-15, 1.0)
        };
        let scale = self.scale.to_f64();
        match self.mechanism {
            Mechanism::DiscreteLaplace => discrete_laplace_accuracy(scale, alpha),
            Mechanism::DiscreteGaussian => discrete_gaussian_accuracy(scale, alpha),
        }
    }
}

/// OpenDP's `discrete_laplacian_scale_to_accuracy(scale, alpha)`.
fn discrete_laplace_accuracy(scale: f64, alpha: f64) -> f64 {
    if scale <= 0.0 {
        return 0.0;
    }
    let term = 2.0 / (scale.recip().exp() + 1.0);
    scale * (alpha.recip() * term).ln() + 1.0
}

/// exp(−(x/σ)²/2), the unnormalised discrete Gaussian pmf (OpenDP's `dg_pdf`).
fn dg_weight(x: u64, sigma: f64) -> f64 {
    (-(x as f64 / sigma).powi(2) / 2.0).exp()
}

/// OpenDP's `discrete_gaussian_scale_to_accuracy(scale, alpha)`, with the tail bound above
/// [`GAUSSIAN_ACCURACY_EXACT_MAX_SIGMA`].
fn discrete_gaussian_accuracy(sigma: f64, alpha: f64) -> f64 {
    if sigma <= 0.0 {
        return 0.0;
    }
    if sigma > GAUSSIAN_ACCURACY_EXACT_MAX_SIGMA {
        return (1.0 + sigma * (2.0 * (1.0 / alpha).ln()).sqrt()).ceil();
    }
    // Normalising constant Σ_{x∈ℤ} exp(−x²/(2σ²)). By Poisson summation it equals
    // σ√(2π)·(1 + 2 Σ_{k≥1} exp(−2π²σ²k²)); from σ = 8 the correction is below e^(−1263),
    // nothing in f64. Below that, OpenDP's sum of weights until they underflow to zero.
    let norm = if sigma >= GAUSSIAN_CLOSED_FORM_NORM_MIN_SIGMA {
        sigma * (2.0 * std::f64::consts::PI).sqrt()
    } else {
        let mut norm = dg_weight(0, sigma);
        let mut i = 0u64;
        loop {
            i += 1;
            let w = 2.0 * dg_weight(i, sigma);
            if w == 0.0 {
                break;
            }
            norm += w;
        }
        norm
    };
    let mut remaining = (1.0 - alpha) * norm - dg_weight(0, sigma);
    let mut i = 0u64;
    while remaining > 0.0 {
        i += 1;
        let w = 2.0 * dg_weight(i, sigma);
        if w == 0.0 {
            break;
        }
        remaining -= w;
    }
    (i + 1) as f64
}

/// ρ of the discrete Gaussian with this σ: (Δ/σ)²/2, rounded up.
fn gaussian_rho(sensitivity: f64, sigma: f64) -> f64 {
    up(up(up(sensitivity / sigma).powi(2)) / 2.0)
}

/// δ of the discrete Gaussian with σ at ε, through ρ-zCDP.
fn gaussian_delta(sensitivity: f64, sigma: f64, epsilon: f64) -> f64 {
    if sigma <= 0.0 {
        return 1.0;
    }
    cdp_delta(gaussian_rho(sensitivity, sigma), epsilon)
}

/// The next `f64` up (OpenDP rounds its conversion arithmetic towards the conservative side;
/// without directed rounding, each step is nudged one ulp up instead, which is at least as
/// conservative).
fn up(x: f64) -> f64 {
    x.next_up()
}

/// The smallest δ such that ρ-zCDP implies (ε, δ)-DP, as OpenDP computes it (`cdp_delta` in
/// its zCDP → approximate-DP cast): for any Rényi order α > 1,
/// δ = exp((α − 1)(αρ − ε) + α·ln(1 − 1/α)) / (α − 1) (Canonne, Kamath and Steinke 2020,
/// Section 2.3), with α found by bisection on the derivative of the exponent,
/// (2α − 1)ρ − ε + ln(1 − 1/α), between 1.01 and (ε + 1)/(2ρ) + 2. Capped at 1.
pub fn cdp_delta(rho: f64, epsilon: f64) -> f64 {
    if rho.is_nan() || epsilon.is_nan() {
        return 1.0;
    }
    if rho <= 0.0 || epsilon == f64::INFINITY {
        return 0.0;
    }
    if rho == f64::INFINITY {
        return 1.0;
    }
    let epsilon = epsilon.max(0.0);
    let mut a_max = up(up(up(epsilon + 1.0) / (2.0 * rho).next_down()) + 2.0);
    let mut a_min = 1.01f64;
    loop {
        let diff = a_max - a_min;
        let a_mid = a_min + diff / 2.0;
        if a_mid == a_max || a_mid == a_min {
            break;
        }
        let deriv = (2.0 * a_mid - 1.0) * rho - epsilon + (-a_mid.recip()).ln_1p();
        if deriv.is_sign_negative() {
            a_min = a_mid;
        } else {
            a_max = a_mid;
        }
    }
    let a_1 = up(a_max - 1.0);
    let ar_e = up(up(a_max * rho) - epsilon);
    let t1 = up(a_1 * ar_e);
    let t1 = if t1 == f64::NEG_INFINITY {
        f64::MIN
    } else {
        t1
    };
    let t2 = up(a_max * up((-a_max.recip()).ln_1p()));
    let delta = up(up(up(t1 + t2).exp()) / (a_max - 1.0).next_down());
    if delta.is_nan() {
        return 1.0;
    }
    delta.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(x: f64) -> Epsilon {
        Epsilon::from_f64(x).unwrap()
    }

    #[test]
    fn laplace_scale_is_sensitivity_over_epsilon_exactly() {
        let n = Noise::laplace(3, eps(0.3)).unwrap();
        assert_eq!(n.scale, Rational::from_integer(10u32));
        let n = Noise::laplace(1, eps(0.7)).unwrap();
        assert_eq!(n.scale, Rational::new(10u32, 7u32).unwrap());
    }

    #[test]
    fn zero_parameters_are_refused() {
        assert_eq!(
            Noise::laplace(1, Epsilon::ZERO),
            Err(PrivacyError::ZeroEpsilon)
        );
        assert_eq!(
            Noise::laplace(0, eps(1.0)),
            Err(PrivacyError::ZeroSensitivity)
        );
        let d = Delta::from_f64(1e-6).unwrap();
        assert_eq!(
            Noise::gaussian(1, Epsilon::ZERO, d),
            Err(PrivacyError::ZeroEpsilon)
        );
        assert_eq!(
            Noise::gaussian(1, eps(1.0), Delta::ZERO),
            Err(PrivacyError::ZeroDelta)
        );
        assert_eq!(
            Noise::gaussian(0, eps(1.0), d),
            Err(PrivacyError::ZeroSensitivity)
        );
    }

    #[test]
    fn gaussian_sigma_is_the_smallest_grid_point_that_suffices() {
        let d = Delta::from_f64(1e-6).unwrap();
        let noise = Noise::gaussian(1, eps(0.5), d).unwrap();
        let k = noise
            .scale
            .mul(&Rational::from_integer(GAUSSIAN_SIGMA_DENOMINATOR));
        assert_eq!(k.denom(), &BigUint::from(1u32), "σ on the 10⁻⁶ grid");
        let sigma = noise.scale.to_f64();
        assert!(gaussian_delta(1.0, sigma, 0.5) <= 1e-6);
        assert!(gaussian_delta(1.0, sigma - 1e-6, 0.5) > 1e-6);
        // Sanity against the classic bound σ = Δ·√(2 ln(1.25/δ))/ε ≈ 10.6: zCDP is tighter.
        assert!((5.0..10.6).contains(&sigma), "σ = {sigma}");
    }

    #[test]
    fn cdp_delta_edges() {
        assert_eq!(cdp_delta(0.0, 1.0), 0.0);
        assert_eq!(cdp_delta(f64::INFINITY, 1.0), 1.0);
        assert_eq!(cdp_delta(1.0, f64::INFINITY), 0.0);
        assert!(cdp_delta(0.01, 1.0) < cdp_delta(0.02, 1.0));
        assert!(cdp_delta(100.0, 0.1) <= 1.0);
    }

    #[test]
    fn laplace_accuracy_matches_the_closed_form() {
        // b = 10, α = 0.05: 10·ln(2/((e^0.1 + 1)·0.05)) + 1.
        let n = Noise::laplace(1, eps(0.1)).unwrap();
        let expected = 10.0 * (2.0 / ((0.1f64.exp() + 1.0) * 0.05)).ln() + 1.0;
        assert!((n.accuracy(0.05) - expected).abs() < 1e-12);
    }

    #[test]
    fn gaussian_accuracy_covers_its_interval() {
        let noise = Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale: Rational::from_integer(3u32),
        };
        let a = noise.accuracy(0.05) as u64;
        let w = |x: u64| dg_weight(x, 3.0);
        let norm: f64 = w(0) + (1..200).map(|x| 2.0 * w(x)).sum::<f64>();
        let inside = |m: u64| (w(0) + (1..m).map(|x| 2.0 * w(x)).sum::<f64>()) / norm;
        assert!(inside(a) >= 0.95, "P(|X| < {a}) = {}", inside(a));
        assert!(inside(a - 1) < 0.95);
    }

    #[test]
    fn the_servers_generator_is_accepted() {
        let noise = Noise::laplace(1, eps(1.0)).unwrap();
        let released = noise.release(&mut rand::rngs::OsRng, 100);
        // b = 1: |noise| ≥ 60 has probability below e^(−59).
        assert!((40..=160).contains(&released), "{released}");
    }

    #[test]
    fn closed_form_gaussian_norm_equals_the_sum() {
        for sigma in [8.0, 8.676631, 50.5, 1_000.0, 43_383.154] {
            let mut sum = dg_weight(0, sigma);
            let mut i = 0;
            loop {
                i += 1;
                let w = 2.0 * dg_weight(i, sigma);
                if w == 0.0 {
                    break;
                }
                sum += w;
            }
            let closed = sigma * (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (sum - closed).abs() <= closed * 1e-12,
                "σ {sigma}: {sum} vs {closed}"
            );
        }
    }

    #[test]
    fn huge_gaussian_scales_use_a_valid_tail_bound() {
        // Above 10⁶ the half-width is the sub-Gaussian bound: never below the continuous
        // Gaussian's 1.96σ, and not far above it (2.45σ at α = 0.05).
        let noise = Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale: Rational::from_integer(2_000_000u32),
        };
        let a = noise.accuracy(0.05);
        assert!((1.96 * 2e6..=2.45 * 2e6 + 2.0).contains(&a), "{a}");
        // Just below the switch, the sum: close to the continuous quantile.
        let noise = Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale: Rational::from_integer(900_000u32),
        };
        let a = noise.accuracy(0.05);
        assert!((a / 900_000.0 - 1.959_964).abs() < 1e-4, "{a}");
    }

    #[test]
    fn extreme_scales_do_not_panic() {
        let n = Noise::laplace(u64::MAX, Epsilon::from_nanos(1)).unwrap();
        assert!(n.accuracy(0.05).is_finite());
        let g = Noise::gaussian(u64::MAX, Epsilon::from_nanos(1), Delta::from_femtos(1));
        if let Ok(g) = g {
            assert!(g.accuracy(0.05).is_finite());
        }
    }
}
