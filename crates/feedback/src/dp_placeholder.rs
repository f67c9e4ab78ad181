//! TEMPORARY stand-in for `privacy::mechanism` (written in parallel on another branch) with the
//! same API, so this crate compiles before it lands. Deleted when it lands: do not use elsewhere.
#![allow(dead_code)]

use privacy::{Delta, Epsilon};
use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

/// The noise distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace.
    DiscreteLaplace,
    /// Discrete Gaussian.
    DiscreteGaussian,
}

/// Calibration failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivacyError {
    /// ε is zero.
    #[error("epsilon must be positive")]
    ZeroEpsilon,
    /// δ is zero.
    #[error("delta must be positive for the Gaussian mechanism")]
    ZeroDelta,
}

/// Calibrated noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// The distribution.
    pub mechanism: Mechanism,
    /// Laplace b or Gaussian σ.
    pub scale: f64,
}

impl Noise {
    /// Laplace b = Δ₁/ε.
    pub fn laplace(sensitivity_l1: u64, epsilon: Epsilon) -> Result<Noise, PrivacyError> {
        if epsilon == Epsilon::ZERO {
            return Err(PrivacyError::ZeroEpsilon);
        }
        Ok(Noise {
            mechanism: Mechanism::DiscreteLaplace,
            scale: sensitivity_l1 as f64 / epsilon.as_f64(),
        })
    }

    /// Classic Gaussian σ.
    pub fn gaussian(
        sensitivity_l2: u64,
        epsilon: Epsilon,
        delta: Delta,
    ) -> Result<Noise, PrivacyError> {
        if epsilon == Epsilon::ZERO {
            return Err(PrivacyError::ZeroEpsilon);
        }
        if delta == Delta::ZERO {
            return Err(PrivacyError::ZeroDelta);
        }
        Ok(Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale: sensitivity_l2 as f64 * (2.0 * (1.25 / delta.as_f64()).ln()).sqrt()
                / epsilon.as_f64(),
        })
    }

    /// A draw.
    pub fn sample(&self, rng: &mut (impl RngCore + CryptoRng)) -> i64 {
        let u: f64 = rng.gen_range(-0.5..0.5);
        let x = match self.mechanism {
            Mechanism::DiscreteLaplace => -self.scale * u.signum() * (1.0 - 2.0 * u.abs()).ln(),
            Mechanism::DiscreteGaussian => {
                let v: f64 = rng.gen_range(f64::EPSILON..1.0);
                self.scale * (-2.0 * v.ln()).sqrt() * (std::f64::consts::PI * 2.0 * u).cos()
            }
        };
        x.round() as i64
    }

    /// Half-width at 1 − alpha.
    pub fn accuracy(&self, alpha: f64) -> f64 {
        match self.mechanism {
            Mechanism::DiscreteLaplace => (self.scale * (1.0 / alpha).ln()).ceil(),
            Mechanism::DiscreteGaussian => (self.scale * (2.0 * (2.0 / alpha).ln()).sqrt()).ceil(),
        }
    }

    /// The noisy value.
    pub fn release(&self, rng: &mut (impl RngCore + CryptoRng), true_value: i64) -> i64 {
        true_value.saturating_add(self.sample(rng))
    }
}

/// The scale as a decimal number.
pub fn scale_f64(noise: &Noise) -> f64 {
    noise.scale
}
