//! Gamma-Gamma spend model (Fader and Hardie 2013, "The Gamma-Gamma Model of Monetary
//! Value"): the expected average transaction value of a customer.
//!
//! Assumptions: a customer's transaction values are Gamma(p, ν) around their mean p/ν;
//! ν ~ Gamma(q, v) across customers; spend is independent of the purchase process (check
//! the correlation of frequency and monetary value before trusting it). The mean spend exists
//! only for q > 1, so a fit with q <= 1 is reported as degenerate.
//!
//! Log-likelihood of a customer with `x` repeat purchases of mean value `m`:
//!
//! ```text
//! ln Γ(px+q) - ln Γ(px) - ln Γ(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v)
//! ```
//!
//! Fitted on customers with `x > 0` and `m > 0` only (others carry no information about spend,
//! and ln 0 is undefined); the excluded counts are part of the fit result.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{FitError, FitOptions};
use crate::optimize::{self, LOG_PARAM_BOUND, LOG_PARAM_DEGENERATE};
use crate::special::{digamma, ln_gamma};
use crate::summary::CustomerSummary;

/// Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    /// Shape of the per-transaction value distribution.
    pub p: f64,
    /// Shape of the across-customer distribution of ν.
    pub q: f64,
    /// Scale of the across-customer distribution of ν (in money units).
    pub v: f64,
}

/// A fitted Gamma-Gamma model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaFit {
    /// Maximum-likelihood parameters.
    pub params: GammaGammaParams,
    /// Total log-likelihood over the customers fitted (without the penalty).
    pub log_likelihood: f64,
    /// Customers fitted (frequency > 0 and monetary value > 0).
    pub customers: usize,
    /// Customers left out because they made no repeat purchase.
    pub excluded_no_repeat: usize,
    /// Customers left out because their mean repeat spend is 0 (free orders).
    pub excluded_zero_value: usize,
    /// Optimiser iterations.
    pub iterations: u64,
    /// Covariance of (p, q, v): the inverse observed information at the optimum.
    pub covariance: [[f64; 3]; 3],
}

impl GammaGammaParams {
    /// Expected average transaction value of a customer (lifetimes'
    /// `conditional_expected_average_profit`): a weighted mean of the population mean
    /// `v p / (q - 1)` and the customer's own mean, weight `p x / (p x + q - 1)`.
    ///
    /// With `q <= 1` (never returned by a fit) the population mean is infinite: the customer's
    /// own mean is returned instead, 0 without repeat purchases. Never NaN or negative.
    pub fn expected_average_value(&self, s: &CustomerSummary) -> f64 {
        self.expected_average_value_at(s.frequency, s.monetary_value)
    }

    /// [`Self::expected_average_value`] from raw (frequency, monetary value).
    pub fn expected_average_value_at(&self, x: f64, m: f64) -> f64 {
        let GammaGammaParams { p, q, v } = *self;
        let own = if x > 0.0 && m.is_finite() && m > 0.0 {
            m
        } else {
            0.0
        };
        if !(q > 1.0) {
            return own;
        }
        let population = v * p / (q - 1.0);
        let value = if x > 0.0 {
            let w = p * x / (p * x + q - 1.0);
            (1.0 - w) * population + w * own
        } else {
            population
        };
        if value.is_finite() && value >= 0.0 {
            value
        } else {
            own
        }
    }

    /// Log-likelihood of one customer (`x > 0`, `m > 0`).
    pub fn log_likelihood(&self, x: f64, m: f64) -> f64 {
        let GammaGammaParams { p, q, v } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * v.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (x * m + v).ln()
    }
}

struct Grouped {
    xs: Vec<f64>,
    ln_xs: Vec<f64>,
    x_weight: Vec<f64>,
    /// (x index, m, ln m, weight)
    groups: Vec<(u32, f64, f64, f64)>,
    n: f64,
    mean_m: f64,
}

impl Grouped {
    fn ll_and_grad(&self, th: &GammaGammaParams) -> (f64, [f64; 3]) {
        let GammaGammaParams { p, q, v } = *th;
        let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let mut ll = self.n * (q * ln_v - lg_q);
        let mut g = [0.0, self.n * (ln_v - dg_q), self.n * q / v];
        for (i, &x) in self.xs.iter().enumerate() {
            let w = self.x_weight[i];
            let px = p * x;
            ll += w * (ln_gamma(px + q) - ln_gamma(px) + px * self.ln_xs[i]);
            let dg_pxq = digamma(px + q);
            g[0] += w * x * (dg_pxq - digamma(px) + self.ln_xs[i]);
            g[1] += w * dg_pxq;
        }
        for &(xi, m, ln_m, w) in &self.groups {
            let x = self.xs[xi as usize];
            let px = p * x;
            let xm_v = x * m + v;
            let l = xm_v.ln();
            ll += w * ((px - 1.0) * ln_m - (px + q) * l);
            g[0] += w * x * (ln_m - l);
            g[1] -= w * l;
            g[2] -= w * (px + q) / xm_v;
        }
        (ll, g)
    }
}

/// Fits Gamma-Gamma by maximum likelihood on the customers with repeat purchases and a
/// positive mean spend.
///
/// Needs at least 10 such customers. Errors: `TooFewCustomers`, `NoRepeatPurchases`,
/// `InvalidCustomer` (negative or non-finite monetary value), `DidNotConverge`, `Degenerate`
/// (q <= 1, a parameter running to 0 or infinity, e.g. when every customer spends exactly the
/// same, or a singular information matrix).
pub fn fit_gamma_gamma(
    customers: &[CustomerSummary],
    options: &FitOptions,
) -> Result<GammaGammaFit, FitError> {
    options.validate()?;
    const NEEDED: usize = 10;
    let (mut excluded_no_repeat, mut excluded_zero_value) = (0usize, 0usize);
    let mut xm: HashMap<u64, u32> = HashMap::new();
    let mut xs: Vec<f64> = Vec::new();
    let mut patterns: HashMap<(u32, u64), f64> = HashMap::new();
    let mut used = 0usize;
    let mut sum_m = 0.0;
    for s in customers {
        let bad = |reason: &str| FitError::InvalidCustomer {
            customer_id: s.customer_id.clone(),
            reason: reason.into(),
        };
        if !(s.frequency.is_finite() && s.frequency >= 0.0) {
            return Err(bad("frequency must be a finite number >= 0"));
        }
        if !(s.monetary_value.is_finite() && s.monetary_value >= 0.0) {
            return Err(bad("monetary_value must be a finite number >= 0"));
        }
        if s.frequency == 0.0 {
            excluded_no_repeat += 1;
            continue;
        }
        if s.monetary_value == 0.0 {
            excluded_zero_value += 1;
            continue;
        }
        let xi = *xm.entry(s.frequency.to_bits()).or_insert_with(|| {
            xs.push(s.frequency);
            (xs.len() - 1) as u32
        });
        *patterns
            .entry((xi, s.monetary_value.to_bits()))
            .or_insert(0.0) += 1.0;
        used += 1;
        sum_m += s.monetary_value;
    }
    if used == 0 && excluded_zero_value == 0 && !customers.is_empty() {
        return Err(FitError::NoRepeatPurchases);
    }
    if used < NEEDED {
        return Err(FitError::TooFewCustomers {
            needed: NEEDED,
            got: used,
        });
    }
    let mut groups: Vec<(u32, f64, f64, f64)> = patterns
        .into_iter()
        .map(|((xi, mb), w)| (xi, f64::from_bits(mb), f64::from_bits(mb).ln(), w))
        .collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut x_weight = vec![0.0; xs.len()];
    for g in &groups {
        x_weight[g.0 as usize] += g.3;
    }
    let ln_xs = xs.iter().map(|x| x.ln()).collect();
    let data = Grouped {
        xs,
        ln_xs,
        x_weight,
        groups,
        n: used as f64,
        mean_m: sum_m / used as f64,
    };
    let penalizer = options.penalizer;
    let n = data.n;
    let objective = |phi: &[f64]| {
        let th: Vec<f64> = phi
            .iter()
            .map(|v| v.clamp(-LOG_PARAM_BOUND, LOG_PARAM_BOUND).exp())
            .collect();
        let (ll, g) = data.ll_and_grad(&GammaGammaParams {
            p: th[0],
            q: th[1],
            v: th[2],
        });
        let penalty: f64 = penalizer * th.iter().map(|v| v * v).sum::<f64>();
        let grad: Vec<f64> = (0..3)
            .map(|i| th[i] * (-g[i] / n + 2.0 * penalizer * th[i]))
            .collect();
        (-ll / n + penalty, grad)
    };
    // Start at p = 1, q = 2 (a finite mean), v = the mean spend (population mean = mean spend).
    let x0 = vec![0.0, 2f64.ln(), data.mean_m.ln()];
    let min = optimize::minimize(&objective, x0, options)?;
    for (i, name) in ["p", "q", "v"].iter().enumerate() {
        if min.x[i].abs() > LOG_PARAM_DEGENERATE {
            let to = if min.x[i] > 0.0 { "infinity" } else { "zero" };
            return Err(FitError::Degenerate {
                reason: format!("Gamma-Gamma parameter {name} runs to {to}"),
            });
        }
    }
    let params = GammaGammaParams {
        p: min.x[0].exp(),
        q: min.x[1].exp(),
        v: min.x[2].exp(),
    };
    if params.q <= 1.0 {
        return Err(FitError::Degenerate {
            reason: format!(
                "Gamma-Gamma q = {:.4} <= 1: the population mean spend is infinite",
                params.q
            ),
        });
    }
    let (ll, _) = data.ll_and_grad(&params);
    let grad_theta = |th: &[f64]| -> Vec<f64> {
        let (_, g) = data.ll_and_grad(&GammaGammaParams {
            p: th[0],
            q: th[1],
            v: th[2],
        });
        g.iter().map(|v| -v).collect()
    };
    let hessian =
        optimize::numeric_hessian(&grad_theta, &[params.p, params.q, params.v], 1e-5, 0.0);
    let inverse = optimize::invert_spd(&hessian).ok_or_else(|| FitError::Degenerate {
        reason: "the Gamma-Gamma information matrix is not positive definite".into(),
    })?;
    let mut covariance = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            covariance[i][j] = inverse[i][j];
        }
    }
    if !ll.is_finite() || covariance.iter().flatten().any(|v| !v.is_finite()) {
        return Err(FitError::Degenerate {
            reason: "non-finite Gamma-Gamma log-likelihood or covariance".into(),
        });
    }
    Ok(GammaGammaFit {
        params,
        log_likelihood: ll,
        customers: used,
        excluded_no_repeat,
        excluded_zero_value,
        iterations: min.iterations,
        covariance,
    })
}
