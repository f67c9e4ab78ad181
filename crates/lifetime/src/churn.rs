//! Churn risk: levels, the Weber-enhanced logistic model, AUC and risk factors.
//!
//! ## The churn definition
//!
//! A customer *churns* within a horizon (30 days by default) when they make **no purchase** in
//! that window: either they have left for good, or they are still active but silent. The
//! timing-only risk is the BG/NBD probability of exactly that event
//! (`bgnbd::BgNbdParams::p_no_purchase`); the holdout label used to train and evaluate the
//! Weber-enhanced model is the same event observed after the calibration end.
//!
//! ## Risk levels
//!
//! [`RiskLevel::of`]: `low` below 0.3, `medium` from 0.3 up to (not including) 0.6, `high` from
//! 0.6. A NaN risk (which no function of this crate returns) is treated as `high`, the
//! conservative reading.
//!
//! ## The Weber-enhanced model
//!
//! A logistic regression of the churn label on the features of
//! [`ENHANCED_FEATURE_NAMES`] (see [`enhanced_features`]), fitted by maximum likelihood with a
//! small L2 penalty ([`LogisticOptions::l2_penalty`], default 1.0) on **standardised** features
//! (mean 0, population standard deviation 1; a constant column is kept as zeros). The intercept
//! is not penalised. The penalty keeps the fit finite on separable data (where the plain maximum
//! likelihood estimate does not exist) and with a few hundred customers shrinks the coefficients
//! only slightly. The objective is
//!
//! `sum_i logloss(y_i, b0 + z_i . b) + (l2_penalty / 2) * |b|^2`,
//!
//! which is scikit-learn's `LogisticRegression(C = 1 / l2_penalty)` on standardised features;
//! a committed oracle (`oracle/logistic_oracle.py`) checks the coefficients to 1e-6. It is
//! minimised by Newton's method with step halving (the problem has 13 parameters, so the exact
//! Hessian is cheap); convergence is declared when the largest Newton step is below
//! [`LogisticOptions::tolerance`], otherwise the fit is an error.
//!
//! `key_risk_factors` come from [`LogisticModel::contributions`] (coefficient times the
//! standardised value, i.e. how far this customer's feature moves the log-odds of churn from
//! the average customer's), and `weber_features_importance` from [`LogisticModel::importance`]
//! (the absolute standardised coefficients normalised to sum 1): both are read off the fitted
//! model, never set by hand.
//!
//! ## Timing-only risk factors
//!
//! Without a logistic model (too few customers with Weber profiles, no holdout) or for a
//! customer without a Weber profile, the risk is the BG/NBD one and [`timing_risk_factors`]
//! splits it exactly into its two parts: the probability that the customer has already left
//! (driven by the silence since the last purchase) and the probability that an active customer
//! makes no purchase within the horizon at their estimated rate. The two contributions add up to
//! the risk.

use serde::{Deserialize, Serialize};
use weber::SensitivitySegment;

/// Cut-off between `low` and `medium` risk.
pub const MEDIUM_RISK_FROM: f64 = 0.3;
/// Cut-off between `medium` and `high` risk.
pub const HIGH_RISK_FROM: f64 = 0.6;

/// Churn risk level: low < 0.3 <= medium < 0.6 <= high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Risk below 0.3.
    Low,
    /// Risk in `[0.3, 0.6)`.
    Medium,
    /// Risk of 0.6 or more (and NaN, defensively).
    High,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 3] = [Self::Low, Self::Medium, Self::High];

    /// The level of a churn risk.
    ///
    /// ```
    /// use lifetime::churn::RiskLevel;
    /// assert_eq!(RiskLevel::of(0.29), RiskLevel::Low);
    /// assert_eq!(RiskLevel::of(0.3), RiskLevel::Medium);
    /// assert_eq!(RiskLevel::of(0.6), RiskLevel::High);
    /// ```
    #[must_use]
    pub fn of(risk: f64) -> Self {
        if risk < MEDIUM_RISK_FROM {
            Self::Low
        } else if risk < HIGH_RISK_FROM {
            Self::Medium
        } else {
            // Also NaN: the comparisons above are false for it.
            Self::High
        }
    }

    /// The wire name: `"low"`, `"medium"` or `"high"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl std::fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the Weber engine knows about a customer, as the churn model uses it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeberFeatures {
    /// The Weber constant (finite, `>= 0`).
    pub weber_constant: f64,
    /// Negativity bias, when the profile has both drops and rises.
    pub bias_ratio: Option<f64>,
    /// The sensitivity segment.
    pub segment: SensitivitySegment,
    /// Calculation confidence in `[0, 1]`.
    pub confidence: f64,
}

impl From<&weber::WeberProfile> for WeberFeatures {
    fn from(p: &weber::WeberProfile) -> Self {
        Self {
            weber_constant: p.weber_constant,
            bias_ratio: p.bias_ratio,
            segment: p.sensitivity_segment,
            confidence: p.calculation_confidence,
        }
    }
}

/// One factor behind a customer's churn risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskFactor {
    /// Stable snake_case name (a feature name of [`ENHANCED_FEATURE_NAMES`] or one of the
    /// timing factors of [`timing_risk_factors`]).
    pub factor: String,
    /// The customer's value of the factor (in its natural unit, not standardised).
    pub value: f64,
    /// How much it adds to the risk: log-odds for the logistic model, probability for the
    /// timing factors. Positive raises the risk.
    pub contribution: f64,
}

/// Names of the Weber-enhanced model's features, in the order of [`enhanced_features`]. They are
/// the `factor` of `key_risk_factors` and the keys of `weber_features_importance`.
pub const ENHANCED_FEATURE_NAMES: [&str; 12] = [
    "timing_risk_logit",
    "log_frequency",
    "recency_ratio",
    "customer_age",
    "log_monetary_value",
    "weber_constant",
    "bias_ratio",
    "has_bias_ratio",
    "segment_highly_sensitive",
    "segment_moderately_sensitive",
    "segment_low_sensitive",
    "weber_confidence",
];

/// The timing quantities of one customer the enhanced model uses (from the purchase summary and
/// the BG/NBD fit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingInputs {
    /// The BG/NBD churn risk (probability of no purchase in the horizon).
    pub timing_risk: f64,
    /// Repeat purchase periods.
    pub frequency: f64,
    /// Age at the last repeat purchase, in periods.
    pub recency: f64,
    /// Age at the end of observation, in periods.
    pub t: f64,
    /// Mean repeat-purchase value.
    pub monetary_value: f64,
}

/// The feature vector of the enhanced model, in the order of [`ENHANCED_FEATURE_NAMES`]:
/// `logit(timing_risk)` (risk clamped to `[1e-6, 1 - 1e-6]`), `ln(1 + frequency)`,
/// `recency / T` (0 when `T = 0`), `T`, `ln(1 + monetary_value)`, the Weber constant, the bias
/// ratio (0 when absent) and a has-bias indicator, the segment one-hot (Insensitive is the base)
/// and the confidence. Non-finite or negative inputs become 0 so the vector is always finite.
#[must_use]
pub fn enhanced_features(timing: &TimingInputs, weber: &WeberFeatures) -> Vec<f64> {
    // Capped at 1e6 so standardising and multiplying stay finite.
    let clean = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v.min(1e6)
        } else {
            0.0
        }
    };
    let risk = if timing.timing_risk.is_finite() {
        timing.timing_risk.clamp(1e-6, 1.0 - 1e-6)
    } else {
        0.5
    };
    let t = clean(timing.t);
    let recency_ratio = if t > 0.0 {
        (clean(timing.recency) / t).min(1.0)
    } else {
        0.0
    };
    let seg = |s: SensitivitySegment| f64::from(u8::from(weber.segment == s));
    vec![
        (risk / (1.0 - risk)).ln(),
        clean(timing.frequency).ln_1p(),
        recency_ratio,
        t,
        clean(timing.monetary_value).ln_1p(),
        clean(weber.weber_constant),
        weber.bias_ratio.map_or(0.0, clean),
        f64::from(u8::from(weber.bias_ratio.is_some_and(f64::is_finite))),
        seg(SensitivitySegment::HighlySensitive),
        seg(SensitivitySegment::ModeratelySensitive),
        seg(SensitivitySegment::LowSensitive),
        clean(weber.confidence).min(1.0),
    ]
}

/// Options of [`LogisticModel::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticOptions {
    /// L2 penalty on the standardised coefficients (scikit-learn's `1 / C`); must be `> 0` so
    /// the fit exists on separable data. Default 1.0.
    pub l2_penalty: f64,
    /// Newton iterations before giving up. Default 100.
    pub max_iterations: u32,
    /// Convergence: the largest Newton step below this. Default 1e-10.
    pub tolerance: f64,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            l2_penalty: 1.0,
            max_iterations: 100,
            tolerance: 1e-10,
        }
    }
}

/// Why a logistic model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogisticError {
    /// Rows, labels and names disagree in length, or there are no features.
    #[error("logistic fit: {0}")]
    Shape(String),
    /// A feature value is NaN or infinite.
    #[error("logistic fit: feature '{feature}' of row {row} is not finite")]
    NotFinite {
        /// Feature name.
        feature: String,
        /// Row index.
        row: usize,
    },
    /// Both label classes are needed.
    #[error("logistic fit: needs both churned and retained customers (got {positives} churned of {rows})")]
    OneClass {
        /// Rows labelled true.
        positives: usize,
        /// All rows.
        rows: usize,
    },
    /// Options out of range.
    #[error("logistic fit: {0}")]
    Options(String),
    /// Newton's method did not converge.
    #[error("logistic fit did not converge in {iterations} iterations")]
    DidNotConverge {
        /// Iterations run.
        iterations: u32,
    },
}

/// A fitted logistic regression on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Column means used for standardisation.
    pub means: Vec<f64>,
    /// Column population standard deviations (1 for a constant column).
    pub sds: Vec<f64>,
    /// Coefficients on the standardised features.
    pub coefficients: Vec<f64>,
    /// Intercept (log-odds of churn for the average customer).
    pub intercept: f64,
    /// The L2 penalty it was fitted with.
    pub l2_penalty: f64,
    /// Newton iterations used.
    pub iterations: u32,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky). `None` when `a` is not
/// positive definite (cannot happen with a positive penalty, but no panic either way).
// Index loops read like the textbook algorithm here.
#[allow(clippy::needless_range_loop)]
fn cholesky_solve(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i][j];
            for k in 0..j {
                sum -= l[i][k] * l[j][k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[i][k] * y[k];
        }
        y[i] = sum / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut sum = y[i];
        for k in i + 1..n {
            sum -= l[k][i] * x[k];
        }
        x[i] = sum / l[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

impl LogisticModel {
    /// Fits the model by penalised maximum likelihood (see the module docs). `rows[i]` are the
    /// raw features of customer `i`, `labels[i]` whether they churned.
    ///
    /// # Errors
    /// [`LogisticError`] on mismatched shapes, non-finite features, a single label class, bad
    /// options or no convergence.
    // Index loops read like the Newton equations here.
    #[allow(clippy::needless_range_loop)]
    pub fn fit(
        feature_names: &[&str],
        rows: &[Vec<f64>],
        labels: &[bool],
        options: &LogisticOptions,
    ) -> Result<Self, LogisticError> {
        let k = feature_names.len();
        if k == 0 {
            return Err(LogisticError::Shape("no features".into()));
        }
        if rows.len() != labels.len() {
            return Err(LogisticError::Shape(format!(
                "{} rows but {} labels",
                rows.len(),
                labels.len()
            )));
        }
        if !(options.l2_penalty.is_finite() && options.l2_penalty > 0.0) {
            return Err(LogisticError::Options(
                "l2_penalty must be finite and > 0".into(),
            ));
        }
        if !(options.tolerance.is_finite() && options.tolerance > 0.0) {
            return Err(LogisticError::Options(
                "tolerance must be finite and > 0".into(),
            ));
        }
        for (r, row) in rows.iter().enumerate() {
            if row.len() != k {
                return Err(LogisticError::Shape(format!(
                    "row {r} has {} features, expected {k}",
                    row.len()
                )));
            }
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(LogisticError::NotFinite {
                    feature: feature_names[j].to_owned(),
                    row: r,
                });
            }
        }
        let n = rows.len();
        let positives = labels.iter().filter(|l| **l).count();
        if positives == 0 || positives == n {
            return Err(LogisticError::OneClass { positives, rows: n });
        }

        // Standardise (population sd, as scikit-learn's StandardScaler).
        let nf = n as f64;
        let means: Vec<f64> = (0..k)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / nf)
            .collect();
        let sds: Vec<f64> = (0..k)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - means[j]).powi(2)).sum::<f64>() / nf;
                let sd = var.sqrt();
                // A constant column standardises to zeros; its coefficient stays 0.
                if sd > 1e-12 && sd.is_finite() {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        let z: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| (0..k).map(|j| (r[j] - means[j]) / sds[j]).collect())
            .collect();
        let y: Vec<f64> = labels.iter().map(|l| f64::from(u8::from(*l))).collect();

        // Parameters: theta[0] = intercept, theta[1..] = coefficients.
        let p = k + 1;
        let lambda = options.l2_penalty;
        let objective = |theta: &[f64]| -> f64 {
            let mut f = 0.0;
            for (zi, yi) in z.iter().zip(&y) {
                let eta = theta[0] + zi.iter().zip(&theta[1..]).map(|(a, b)| a * b).sum::<f64>();
                // logloss = softplus(eta) - y * eta
                f += softplus(eta) - yi * eta;
            }
            f + 0.5 * lambda * theta[1..].iter().map(|b| b * b).sum::<f64>()
        };
        // Start from the intercept-only optimum.
        let base = positives as f64 / nf;
        let mut theta = vec![0.0; p];
        theta[0] = (base / (1.0 - base)).ln();
        let mut f = objective(&theta);
        for iteration in 1..=options.max_iterations {
            let mut grad = vec![0.0; p];
            let mut hess = vec![vec![0.0; p]; p];
            for (zi, yi) in z.iter().zip(&y) {
                let eta = theta[0] + zi.iter().zip(&theta[1..]).map(|(a, b)| a * b).sum::<f64>();
                let mu = sigmoid(eta);
                let w = mu * (1.0 - mu);
                let r = mu - yi;
                grad[0] += r;
                hess[0][0] += w;
                for a in 0..k {
                    grad[a + 1] += r * zi[a];
                    hess[a + 1][0] += w * zi[a];
                    for b in 0..=a {
                        hess[a + 1][b + 1] += w * zi[a] * zi[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += lambda * theta[a];
                hess[a][a] += lambda;
            }
            for a in 0..p {
                for b in 0..a {
                    hess[b][a] = hess[a][b];
                }
            }
            let Some(step) = cholesky_solve(&hess, &grad) else {
                return Err(LogisticError::DidNotConverge {
                    iterations: iteration,
                });
            };
            // Step halving keeps every step a descent step (the objective is convex, so the
            // full Newton step is almost always taken).
            let mut scale = 1.0;
            let mut next = theta.clone();
            let mut f_next = f;
            for _ in 0..40 {
                next = theta
                    .iter()
                    .zip(&step)
                    .map(|(t, s)| t - scale * s)
                    .collect();
                f_next = objective(&next);
                if f_next <= f + 1e-12 * f.abs().max(1.0) {
                    break;
                }
                scale *= 0.5;
            }
            let max_step = step.iter().fold(0.0_f64, |m, s| m.max((scale * s).abs()));
            theta = next;
            f = f_next;
            if max_step < options.tolerance {
                return Ok(Self {
                    feature_names: feature_names.iter().map(|s| (*s).to_owned()).collect(),
                    means,
                    sds,
                    coefficients: theta[1..].to_vec(),
                    intercept: theta[0],
                    l2_penalty: lambda,
                    iterations: iteration,
                });
            }
        }
        Err(LogisticError::DidNotConverge {
            iterations: options.max_iterations,
        })
    }

    fn standardised(&self, features: &[f64]) -> impl Iterator<Item = f64> + '_ {
        let features: Vec<f64> = features.to_vec();
        (0..self.coefficients.len()).map(move |j| {
            let v = features.get(j).copied().filter(|v| v.is_finite());
            // A missing or non-finite value counts as the average customer's.
            // Clamped so that a wild input cannot overflow a contribution to infinity.
            v.map_or(0.0, |v| {
                ((v - self.means[j]) / self.sds[j]).clamp(-1e6, 1e6)
            })
        })
    }

    /// Probability of churn for one customer's raw features, in `[0, 1]` and never NaN (missing
    /// or non-finite features count as the training mean).
    #[must_use]
    pub fn predict(&self, features: &[f64]) -> f64 {
        let eta = self.intercept
            + self
                .standardised(features)
                .zip(&self.coefficients)
                .map(|(z, b)| z * b)
                .sum::<f64>();
        let p = sigmoid(eta);
        if p.is_finite() {
            p
        } else {
            0.5
        }
    }

    /// Each feature's contribution to this customer's log-odds of churn relative to the average
    /// customer (coefficient times standardised value), largest risk-raising first.
    #[must_use]
    pub fn contributions(&self, features: &[f64]) -> Vec<RiskFactor> {
        let mut out: Vec<RiskFactor> = self
            .standardised(features)
            .zip(&self.coefficients)
            .zip(&self.feature_names)
            .enumerate()
            .map(|(j, ((z, b), name))| RiskFactor {
                factor: name.clone(),
                value: features
                    .get(j)
                    .copied()
                    .filter(|v| v.is_finite())
                    .unwrap_or(self.means[j]),
                contribution: z * b,
            })
            .collect();
        out.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        out
    }

    /// Feature importance: `|coefficient|` on the standardised scale, normalised to sum 1
    /// (all zero when every coefficient is 0), in feature order.
    #[must_use]
    pub fn importance(&self) -> Vec<(String, f64)> {
        let total: f64 = self.coefficients.iter().map(|b| b.abs()).sum();
        self.feature_names
            .iter()
            .zip(&self.coefficients)
            .map(|(name, b)| {
                let share = if total > 0.0 { b.abs() / total } else { 0.0 };
                (name.clone(), share)
            })
            .collect()
    }
}

/// Area under the ROC curve of `scores` for `labels` (true = churned, higher score = riskier):
/// the Mann-Whitney statistic with ties counting 1/2. `None` when the lengths differ, a class is
/// missing, or a score is not finite.
///
/// ```
/// use lifetime::churn::auc;
/// assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
/// assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
/// assert_eq!(auc(&[0.5], &[true]), None);
/// ```
#[must_use]
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    // Sum of the (mid)ranks of the positives, ranks starting at 1.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let tied_pos = order[i..=j].iter().filter(|o| labels[**o]).count();
        rank_sum += mid_rank * tied_pos as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    let u = rank_sum - p * (p + 1.0) / 2.0;
    Some((u / (p * n)).clamp(0.0, 1.0))
}

/// Name of the timing factor "the customer may already have left".
pub const FACTOR_DAYS_SINCE_LAST_PURCHASE: &str = "days_since_last_purchase";
/// Name of the timing factor "an active customer may not buy within the horizon".
pub const FACTOR_EXPECTED_PURCHASES_IF_ACTIVE: &str = "expected_purchases_if_active";

/// The timing-only risk factors, an exact split of the BG/NBD churn risk
/// `risk = (1 - p_alive) + p_alive * p_silent_if_alive`:
///
/// - `days_since_last_purchase` (value: days since the last purchase), contribution
///   `1 - p_alive`: the risk that the customer has already left, which the silence since the
///   last purchase drives;
/// - `expected_purchases_if_active` (value: the purchases an active customer is expected to
///   make within the horizon at their estimated rate), contribution
///   `p_alive * p_silent_if_alive`: the risk that an active customer simply buys nothing.
///
/// Sorted by contribution, largest first. Inputs are clamped to `[0, 1]` (probabilities) and
/// `>= 0` (the values); non-finite ones become 0.
#[must_use]
pub fn timing_risk_factors(
    p_alive: f64,
    p_silent_if_alive: f64,
    days_since_last_purchase: f64,
    expected_purchases_if_active: f64,
) -> Vec<RiskFactor> {
    let prob = |v: f64| {
        if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let nonneg = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let alive = prob(p_alive);
    let mut out = vec![
        RiskFactor {
            factor: FACTOR_DAYS_SINCE_LAST_PURCHASE.to_owned(),
            value: nonneg(days_since_last_purchase),
            contribution: 1.0 - alive,
        },
        RiskFactor {
            factor: FACTOR_EXPECTED_PURCHASES_IF_ACTIVE.to_owned(),
            value: nonneg(expected_purchases_if_active),
            contribution: alive * prob(p_silent_if_alive),
        },
    ];
    out.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn risk_level_cut_offs() {
        for (risk, level) in [
            (0.0, RiskLevel::Low),
            (0.299_999, RiskLevel::Low),
            (0.3, RiskLevel::Medium),
            (0.599_999, RiskLevel::Medium),
            (0.6, RiskLevel::High),
            (1.0, RiskLevel::High),
            (f64::NAN, RiskLevel::High),
        ] {
            assert_eq!(RiskLevel::of(risk), level, "risk {risk}");
        }
        assert_eq!(
            serde_json::to_string(&RiskLevel::Medium).ok().as_deref(),
            Some("\"medium\"")
        );
    }

    #[test]
    fn auc_of_a_perfect_ranking_is_one_and_its_reverse_zero() {
        let scores = [0.1, 0.2, 0.3, 0.4];
        let labels = [false, false, true, true];
        assert_eq!(auc(&scores, &labels), Some(1.0));
        let reversed: Vec<f64> = scores.iter().map(|s| -s).collect();
        assert_eq!(auc(&reversed, &labels), Some(0.0));
    }

    #[test]
    fn fit_is_finite_on_separable_data() {
        let rows: Vec<Vec<f64>> = (0..40).map(|i| vec![f64::from(i)]).collect();
        let labels: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        let model = LogisticModel::fit(&["x"], &rows, &labels, &LogisticOptions::default());
        let model = model.map_err(|e| e.to_string());
        assert!(model.is_ok(), "{model:?}");
        if let Ok(m) = model {
            assert!(m.coefficients[0].is_finite() && m.coefficients[0] > 0.0);
            assert!(m.predict(&[39.0]) > 0.9 && m.predict(&[0.0]) < 0.1);
        }
    }

    #[test]
    fn fit_rejects_one_class_and_nan() {
        let rows = vec![vec![1.0], vec![2.0]];
        assert!(matches!(
            LogisticModel::fit(&["x"], &rows, &[true, true], &LogisticOptions::default()),
            Err(LogisticError::OneClass {
                positives: 2,
                rows: 2
            })
        ));
        let rows = vec![vec![1.0], vec![f64::NAN]];
        assert!(matches!(
            LogisticModel::fit(&["x"], &rows, &[true, false], &LogisticOptions::default()),
            Err(LogisticError::NotFinite { row: 1, .. })
        ));
    }

    #[test]
    fn timing_factors_add_up_to_the_risk() {
        let (alive, silent) = (0.7, 0.4);
        let factors = timing_risk_factors(alive, silent, 45.0, 0.9);
        let total: f64 = factors.iter().map(|f| f.contribution).sum();
        assert!((total - ((1.0 - alive) + alive * silent)).abs() < 1e-12);
        assert_eq!(factors[0].factor, FACTOR_DAYS_SINCE_LAST_PURCHASE);
    }

    fn segment() -> impl Strategy<Value = SensitivitySegment> {
        prop::sample::select(SensitivitySegment::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn levels_follow_the_cut_offs(risk in 0.0..=1.0f64) {
            let level = RiskLevel::of(risk);
            prop_assert_eq!(level == RiskLevel::Low, risk < MEDIUM_RISK_FROM);
            prop_assert_eq!(level == RiskLevel::High, risk >= HIGH_RISK_FROM);
        }

        #[test]
        fn auc_is_in_unit_interval_and_flips(
            data in prop::collection::vec((-5.0..5.0f64, any::<bool>()), 2..60)
        ) {
            let scores: Vec<f64> = data.iter().map(|d| (d.0 * 4.0).round() / 4.0).collect();
            let labels: Vec<bool> = data.iter().map(|d| d.1).collect();
            match auc(&scores, &labels) {
                Some(a) => {
                    prop_assert!((0.0..=1.0).contains(&a));
                    let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
                    let b = auc(&neg, &labels).unwrap_or(f64::NAN);
                    prop_assert!((a + b - 1.0).abs() < 1e-12);
                }
                None => prop_assert!(labels.iter().all(|l| *l) || labels.iter().all(|l| !*l)),
            }
        }

        #[test]
        fn perfect_ranking_gives_one(n_neg in 1usize..30, n_pos in 1usize..30) {
            let scores: Vec<f64> = (0..n_neg + n_pos).map(|i| i as f64).collect();
            let labels: Vec<bool> = (0..n_neg + n_pos).map(|i| i >= n_neg).collect();
            prop_assert_eq!(auc(&scores, &labels), Some(1.0));
            let rev: Vec<f64> = scores.iter().map(|s| -s).collect();
            prop_assert_eq!(auc(&rev, &labels), Some(0.0));
        }

        #[test]
        fn features_and_predictions_are_finite(
            risk in prop::num::f64::ANY,
            freq in prop::num::f64::ANY,
            rec in prop::num::f64::ANY,
            t in prop::num::f64::ANY,
            m in prop::num::f64::ANY,
            c in prop::num::f64::ANY,
            bias in prop::option::of(prop::num::f64::ANY),
            conf in prop::num::f64::ANY,
            seg in segment(),
        ) {
            let w = WeberFeatures { weber_constant: c, bias_ratio: bias, segment: seg, confidence: conf };
            let x = enhanced_features(
                &TimingInputs { timing_risk: risk, frequency: freq, recency: rec, t, monetary_value: m },
                &w,
            );
            prop_assert_eq!(x.len(), ENHANCED_FEATURE_NAMES.len());
            prop_assert!(x.iter().all(|v| v.is_finite()));
            let model = LogisticModel {
                feature_names: ENHANCED_FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
                means: vec![0.5; 12],
                sds: vec![1.0; 12],
                coefficients: vec![3.0; 12],
                intercept: -1.0,
                l2_penalty: 1.0,
                iterations: 1,
            };
            let p = model.predict(&x);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!(model.contributions(&x).iter().all(|f| f.contribution.is_finite()));
        }

        #[test]
        fn fits_are_finite_or_errors_on_any_data(
            data in prop::collection::vec(
                (prop::collection::vec(-1e3..1e3f64, 3), any::<bool>()),
                0..80,
            ),
            penalty in 0.01..100.0f64,
        ) {
            let rows: Vec<Vec<f64>> = data.iter().map(|d| d.0.clone()).collect();
            let labels: Vec<bool> = data.iter().map(|d| d.1).collect();
            let options = LogisticOptions { l2_penalty: penalty, ..LogisticOptions::default() };
            match LogisticModel::fit(&["a", "b", "c"], &rows, &labels, &options) {
                Ok(m) => {
                    prop_assert!(m.coefficients.iter().all(|b| b.is_finite()) && m.intercept.is_finite());
                    let total: f64 = m.importance().iter().map(|(_, s)| s).sum();
                    prop_assert!(total == 0.0 || (total - 1.0).abs() < 1e-9);
                    for r in &rows {
                        prop_assert!((0.0..=1.0).contains(&m.predict(r)));
                    }
                }
                Err(e) => {
                    let one_class = labels.iter().all(|l| *l) || labels.iter().all(|l| !*l);
                    prop_assert!(one_class, "unexpected error {e}");
                }
            }
        }

        #[test]
        fn timing_factors_are_probabilities(a in prop::num::f64::ANY, s in prop::num::f64::ANY) {
            let total: f64 = timing_risk_factors(a, s, 1.0, 1.0).iter().map(|f| f.contribution).sum();
            prop_assert!((0.0..=1.0).contains(&total));
        }
    }
}
