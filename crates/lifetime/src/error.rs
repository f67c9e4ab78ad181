//! Errors and fit options shared by the models.

use serde::{Deserialize, Serialize};

/// Why a model could not be fitted. Fits never return NaN: they return one of these instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Fewer usable customers than the model needs.
    #[error("too few customers to fit: needed {needed}, got {got}")]
    TooFewCustomers {
        /// Minimum number of usable customers.
        needed: usize,
        /// Usable customers given.
        got: usize,
    },
    /// No customer bought more than once: the dropout process is not identified.
    #[error("no customer has a repeat purchase: the model cannot be fitted")]
    NoRepeatPurchases,
    /// The optimiser stopped at its iteration limit before the gradient vanished.
    #[error("the fit did not converge within {iterations} iterations")]
    DidNotConverge {
        /// Iterations run.
        iterations: u64,
    },
    /// The likelihood has no interior maximum (a parameter runs to 0 or infinity), the
    /// information matrix is singular, or the fitted values make the model meaningless
    /// (Gamma-Gamma with q <= 1 has an infinite mean spend).
    #[error("degenerate fit: {reason}")]
    Degenerate {
        /// What went wrong, in words.
        reason: String,
    },
    /// A customer summary is unusable (negative or non-finite field, recency > T, ...).
    #[error("customer {customer_id:?}: {reason}")]
    InvalidCustomer {
        /// The customer's id.
        customer_id: String,
        /// What is wrong with the summary.
        reason: String,
    },
    /// The fit options are unusable.
    #[error("invalid fit option {field}: {reason}")]
    InvalidOption {
        /// Name of the option.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Errors of the crate's data handling (summaries, dates) and of the use cases built on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LifetimeError {
    /// A date that is neither `YYYY-MM-DD` nor `YYYYMMDD`, or not a real calendar day.
    #[error("invalid date {value:?}: expected YYYY-MM-DD or YYYYMMDD")]
    InvalidDate {
        /// The text given.
        value: String,
    },
    /// A negative purchase amount. Refunds are the caller's business: send net amounts.
    #[error("customer {customer_id:?}: negative amount {amount} (refunds: send the net amount)")]
    NegativeAmount {
        /// The customer's id.
        customer_id: String,
        /// The amount given.
        amount: f64,
    },
    /// A NaN or infinite purchase amount.
    #[error("customer {customer_id:?}: amount is not a finite number")]
    NonFiniteAmount {
        /// The customer's id.
        customer_id: String,
    },
    /// A purchase dated after the end of the observation window.
    #[error("customer {customer_id:?}: purchase on day {day} is after the observation end (day {observation_end})")]
    PurchaseAfterEnd {
        /// The customer's id.
        customer_id: String,
        /// The purchase's day (days since 1970-01-01).
        day: i32,
        /// The observation end (days since 1970-01-01).
        observation_end: i32,
    },
    /// An empty customer id.
    #[error("a purchase has an empty customer_id")]
    EmptyCustomerId,
    /// The calibration end is after the observation end.
    #[error("calibration end (day {calibration_end}) is after the observation end (day {observation_end})")]
    CalibrationAfterObservation {
        /// Calibration end day.
        calibration_end: i32,
        /// Observation end day.
        observation_end: i32,
    },
    /// A setting or argument is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Name of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A model could not be fitted.
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// Options of the maximum-likelihood fits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitOptions {
    /// L2 penalty on the parameters, as lifetimes' `penalizer_coef` (0 = plain maximum
    /// likelihood, lifetimes' default). BG/NBD penalises α in time scaled so that the largest
    /// T is 1, exactly as lifetimes does.
    pub penalizer: f64,
    /// Iteration limit of the L-BFGS optimiser.
    pub max_iterations: u64,
    /// Gradient tolerance: the optimiser stops when the largest component of the gradient of
    /// the mean negative log-likelihood per customer with respect to the log-parameters is below
    /// it.
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            penalizer: 0.0,
            max_iterations: 500,
            tolerance: 1e-9,
        }
    }
}

impl FitOptions {
    pub(crate) fn validate(&self) -> Result<(), FitError> {
        if !(self.penalizer.is_finite() && self.penalizer >= 0.0) {
            return Err(FitError::InvalidOption {
                field: "penalizer",
                reason: "must be a finite number >= 0".into(),
            });
        }
        if self.max_iterations == 0 {
            return Err(FitError::InvalidOption {
                field: "max_iterations",
                reason: "must be >= 1".into(),
            });
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(FitError::InvalidOption {
                field: "tolerance",
                reason: "must be a finite number > 0".into(),
            });
        }
        Ok(())
    }
}
