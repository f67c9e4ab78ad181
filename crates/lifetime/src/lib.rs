//! # lifetime: customer lifetime models
//!
//! A pure library (no I/O, no async, no clock: "now" and random seeds are inputs) holding the
//! field's standard buy-till-you-die models and what signalbox builds on them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod churn;
pub mod recommend;
pub mod simulate;
