//! # lifetime: customer lifetime models
//!
//! A pure library (no I/O, no async, no clock: "now" and random seeds are inputs) holding the
//! field's standard buy-till-you-die models and what signalbox builds on them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bgnbd;
pub mod churn;
pub mod clv;
mod error;
pub mod gamma_gamma;
pub mod model;
mod optimize;
pub mod recommend;
pub mod simulate;
pub mod special;
pub mod summary;

pub use bgnbd::{fit_bgnbd, BgNbdFit, BgNbdParams};
pub use clv::{clv_interval, customer_lifetime_value};
pub use error::{FitError, FitOptions, LifetimeError};
pub use gamma_gamma::{fit_gamma_gamma, GammaGammaFit, GammaGammaParams};
pub use summary::{
    calibration_and_holdout, day_from_ymd, parse_day, summarize, CalibrationHoldout,
    CustomerSummary, Period, Purchase,
};
