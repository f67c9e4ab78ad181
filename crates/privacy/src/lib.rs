//! # privacy: differential privacy for aggregate releases
//!
//! A pure library (no I/O, no clock: randomness and time are passed in):
//!
//! - [`units`]: [`Epsilon`] and [`Delta`] as exact integer multiples of 10⁻⁹ and 10⁻¹⁵, so a
//!   ledger's sums never drift by floating-point rounding (50 × 0.1 is exactly 5).
//! - [`budget`]: a tenant's per-period budget ([`budget::Budget`]) and the check that no
//!   spend exceeds it (basic composition).
//!
//! Noise is always drawn from an integer distribution by exact samplers: a floating-point
//! Laplace sample leaks through the gaps between doubles (Mironov, 2012).
#![forbid(unsafe_code)]

pub mod budget;
pub mod units;

pub use units::{Delta, Epsilon, UnitError};
