//! # privacy: differential privacy for aggregate releases
//!
//! A pure library (no I/O, no clock: randomness and time are passed in):
//!
//! - [`units`]: [`Epsilon`] and [`Delta`] as exact integer multiples of 10⁻⁹ and 10⁻¹⁵, so a
//!   ledger's sums never drift by floating-point rounding (50 × 0.1 is exactly 5).
//! - [`budget`]: a tenant's per-period budget ([`budget::Budget`]) and the check that no
//!   spend exceeds it (basic composition).
//! - [`rational`]: [`Rational`], exact non-negative fractions for noise scales.
//! - [`sample`]: the exact samplers of Canonne, Kamath and Steinke (2020): Bernoulli(exp(−γ)),
//!   discrete Laplace, discrete Gaussian, from a cryptographic random source.
//! - [`mechanism`]: [`Noise`], calibrated as OpenDP does (Laplace b = Δ₁/ε; Gaussian σ from
//!   ρ-zCDP converted to (ε, δ)-DP), with OpenDP's accuracy intervals.
//!
//! Noise is always drawn from an integer distribution by exact samplers: a floating-point
//! Laplace sample leaks through the gaps between doubles (Mironov, 2012).
#![forbid(unsafe_code)]

pub mod budget;
pub mod mechanism;
pub mod rational;
pub mod sample;
pub mod units;

pub use mechanism::{Mechanism, Noise, PrivacyError};
pub use rational::{Rational, RationalError};
pub use units::{Delta, Epsilon, UnitError};
