//! # flags: feature flags and experiments
//!
//! A pure library (no I/O, no clock, no global randomness: "now" and seeds are inputs) for the
//! feature-flag and experiment engine of seed 002. The HTTP layer (OFREP, the admin API, the
//! change stream) lives in `server`; flag configurations are stored by `store`.

#![warn(missing_docs)]

pub mod experiment;
pub mod stats;
