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

// Index loops read closest to the formulas in the small covariance computations.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{FitError, FitOptions};
use crate::optimize::{self, FastMap, LOG_PARAM_BOUND};
use crate::special::{digamma, ln_gamma, trigamma};
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
        if q.is_nan() || q <= 1.0 {
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

/// A positive normal float as (mantissa in [1, 2), binary exponent).
fn split_exponent(v: f64) -> (f64, i64) {
    let bits = v.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    (f64::from_bits((bits & !(0x7ff << 52)) | (1023 << 52)), e)
}

struct Grouped {
    xs: Vec<f64>,
    ln_xs: Vec<f64>,
    x_weight: Vec<f64>,
    /// Σ w ln m per distinct x.
    ln_m_sum: Vec<f64>,
    /// (x index, m, ln m, weight), sorted by x index
    groups: Vec<(u32, f64, f64, f64)>,
    n: f64,
    mean_m: f64,
}

impl Grouped {
    /// Every `stride`-th pattern (at least one in two), with the per-x sums recounted.
    fn subsample(&self, stride: usize) -> Grouped {
        let groups: Vec<(u32, f64, f64, f64)> =
            self.groups.iter().step_by(stride.max(2)).copied().collect();
        let mut x_weight = vec![0.0; self.xs.len()];
        let mut ln_m_sum = vec![0.0; self.xs.len()];
        for g in &groups {
            x_weight[g.0 as usize] += g.3;
            ln_m_sum[g.0 as usize] += g.3 * g.2;
        }
        Grouped {
            xs: self.xs.clone(),
            ln_xs: self.ln_xs.clone(),
            x_weight,
            ln_m_sum,
            n: groups.iter().map(|g| g.3).sum(),
            groups,
            mean_m: self.mean_m,
        }
    }

    /// Hessian of the total log-likelihood with respect to (p, q, v), analytic.
    fn hessian(&self, th: &GammaGammaParams) -> [[f64; 3]; 3] {
        let GammaGammaParams { p, q, v } = *th;
        let mut h = [[0.0f64; 3]; 3];
        let tg_q = trigamma(q);
        h[1][1] -= self.n * tg_q;
        h[1][2] += self.n / v;
        h[2][2] -= self.n * q / (v * v);
        let mut r1 = vec![0.0; self.xs.len()];
        let mut r2 = vec![0.0; self.xs.len()];
        for &(xi, m, _, w) in &self.groups {
            let inv = 1.0 / (self.xs[xi as usize] * m + v);
            r1[xi as usize] += w * inv;
            r2[xi as usize] += w * inv * inv;
        }
        for (i, &x) in self.xs.iter().enumerate() {
            let w = self.x_weight[i];
            let px = p * x;
            let tg_pxq = trigamma(px + q);
            h[0][0] += w * x * x * (tg_pxq - trigamma(px));
            h[0][1] += w * x * tg_pxq;
            h[1][1] += w * tg_pxq;
            h[0][2] -= x * r1[i];
            h[1][2] -= r1[i];
            h[2][2] += (px + q) * r2[i];
        }
        for i in 0..3 {
            for j in 0..i {
                h[i][j] = h[j][i];
            }
        }
        h
    }

    fn ll_and_grad(&self, th: &GammaGammaParams) -> (f64, [f64; 3]) {
        let GammaGammaParams { p, q, v } = *th;
        let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let mut ll = self.n * (q * ln_v - lg_q);
        let mut g = [0.0, self.n * (ln_v - dg_q), self.n * q / v];
        for (i, &x) in self.xs.iter().enumerate() {
            let w = self.x_weight[i];
            let px = p * x;
            ll += w * (ln_gamma(px + q) - ln_gamma(px) + px * self.ln_xs[i])
                + (px - 1.0) * self.ln_m_sum[i];
            let dg_pxq = digamma(px + q);
            g[0] += w * x * (dg_pxq - digamma(px) + self.ln_xs[i]) + x * self.ln_m_sum[i];
            g[1] += w * dg_pxq;
        }
        // Per distinct x (the groups are sorted by x): S = Σ w ln(xm + v) as the logarithm of a
        // running product renormalised through the exponent bits (one log per x instead of
        // one per customer: the hot loop's largest cost), and R = Σ w / (xm + v).
        let mut start = 0;
        while start < self.groups.len() {
            let xi = self.groups[start].0;
            let mut end = start;
            let (mut product, mut exponent, mut pending) = (1.0f64, 0i64, 0u32);
            let (mut direct, mut inverse) = (0.0f64, 0.0f64);
            while end < self.groups.len() && self.groups[end].0 == xi {
                let (_, m, _, w) = self.groups[end];
                let x = self.xs[xi as usize];
                let xm_v = x * m + v;
                inverse += w / xm_v;
                if w == 1.0 && (1e-15..=1e15).contains(&xm_v) {
                    product *= xm_v;
                    pending += 1;
                    if pending == 16 {
                        let (mantissa, e) = split_exponent(product);
                        product = mantissa;
                        exponent += e;
                        pending = 0;
                    }
                } else {
                    direct += w * xm_v.ln();
                }
                end += 1;
            }
            let sum_ln = direct + product.ln() + exponent as f64 * std::f64::consts::LN_2;
            let x = self.xs[xi as usize];
            let px = p * x;
            ll -= (px + q) * sum_ln;
            g[0] -= x * sum_ln;
            g[1] -= sum_ln;
            g[2] -= (px + q) * inverse;
            start = end;
        }
        (ll, g)
    }
}

/// Minimises the mean negative log-likelihood (plus penalty) of `data` over log-parameters.
fn optimise(
    data: &Grouped,
    x0: Vec<f64>,
    warm: bool,
    options: &FitOptions,
) -> Result<optimize::Minimum, FitError> {
    let penalizer = options.penalizer;
    let n = data.n;
    let theta = |phi: &[f64]| -> [f64; 3] {
        let mut th = [0.0; 3];
        for (t, v) in th.iter_mut().zip(phi) {
            *t = v.clamp(-LOG_PARAM_BOUND, LOG_PARAM_BOUND).exp();
        }
        th
    };
    let objective = |phi: &[f64]| {
        let th = theta(phi);
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
    // Hessian of the cost in log-parameters: D H D + diag(∂cost/∂φ), D = diag(θ).
    let hessian_phi = |phi: &[f64], grad_phi: &[f64]| -> Vec<Vec<f64>> {
        let th = theta(phi);
        let h = data.hessian(&GammaGammaParams {
            p: th[0],
            q: th[1],
            v: th[2],
        });
        let mut out = vec![vec![0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                out[i][j] =
                    th[i] * th[j] * (-h[i][j] / n + if i == j { 2.0 * penalizer } else { 0.0 });
            }
            out[i][i] += grad_phi[i];
        }
        out
    };
    optimize::minimize(&objective, Some(&hessian_phi), x0, warm, options)
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
    let mut xm: FastMap<u64, u32> = FastMap::default();
    let mut xs: Vec<f64> = Vec::new();
    // Patterns: bucket by x index, then sort each bucket's m bits (m > 0, so bit order is
    // numeric order) and merge equal values.
    let mut keys: Vec<(u32, u64)> = Vec::with_capacity(customers.len());
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
        keys.push((xi, s.monetary_value.to_bits()));
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
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); xs.len()];
    for (xi, m) in keys {
        buckets[xi as usize].push(m);
    }
    let mut groups: Vec<(u32, f64, f64, f64)> = Vec::new();
    for (xi, bucket) in buckets.iter_mut().enumerate() {
        bucket.sort_unstable();
        for &mb in bucket.iter() {
            let m = f64::from_bits(mb);
            match groups.last_mut() {
                Some(last) if last.0 == xi as u32 && last.1 == m => last.3 += 1.0,
                _ => groups.push((xi as u32, m, m.ln(), 1.0)),
            }
        }
    }
    let mut x_weight = vec![0.0; xs.len()];
    let mut ln_m_sum = vec![0.0; xs.len()];
    for g in &groups {
        x_weight[g.0 as usize] += g.3;
        ln_m_sum[g.0 as usize] += g.3 * g.2;
    }
    let ln_xs = xs.iter().map(|x| x.ln()).collect();
    let data = Grouped {
        xs,
        ln_xs,
        x_weight,
        ln_m_sum,
        groups,
        n: used as f64,
        mean_m: sum_m / used as f64,
    };
    // Start at p = 1, q = 2 (a finite mean), v = the mean spend (population mean = mean spend).
    let x0 = vec![0.0, 2f64.ln(), data.mean_m.ln()];
    // As for BG/NBD: L-BFGS on a systematic subsample, then Newton steps on all data.
    let min = if data.groups.len() > 20_000 {
        let sub = data.subsample(data.groups.len() / 5_000);
        match optimise(&sub, x0.clone(), false, options) {
            Ok(m) if m.converged => {
                let mut full = optimise(&data, m.x, true, options)?;
                full.iterations += m.iterations;
                full
            }
            _ => optimise(&data, x0, false, options)?,
        }
    } else {
        optimise(&data, x0, false, options)?
    };
    // v in units of the mean spend, so the bounds do not depend on the currency.
    let scaled = [min.x[0], min.x[1], min.x[2] - data.mean_m.ln()];
    optimize::check_outcome("Gamma-Gamma", &["p", "q", "v"], &scaled, &min)?;
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
    // Observed information: Hessian of the total negative log-likelihood in (p, q, v).
    let hessian: Vec<Vec<f64>> = data
        .hessian(&params)
        .iter()
        .map(|row| row.iter().map(|v| -v).collect())
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups customers (all with x > 0 and m > 0) one pattern each.
    fn grouped_for_tests(c: &[CustomerSummary]) -> Grouped {
        let mut xs: Vec<f64> = c.iter().map(|s| s.frequency).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut groups: Vec<(u32, f64, f64, f64)> = c
            .iter()
            .map(|s| {
                let xi = xs.iter().position(|x| *x == s.frequency).unwrap_or(0) as u32;
                (xi, s.monetary_value, s.monetary_value.ln(), 1.0)
            })
            .collect();
        groups.sort_by_key(|g| g.0);
        let mut x_weight = vec![0.0; xs.len()];
        let mut ln_m_sum = vec![0.0; xs.len()];
        for g in &groups {
            x_weight[g.0 as usize] += 1.0;
            ln_m_sum[g.0 as usize] += g.2;
        }
        let ln_xs = xs.iter().map(|x| x.ln()).collect();
        Grouped {
            xs,
            ln_xs,
            x_weight,
            ln_m_sum,
            groups,
            n: c.len() as f64,
            mean_m: 1.0,
        }
    }

    #[test]
    fn subsample_start_reaches_the_optimum_of_all_customers() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        use rand_distr::{Distribution, Gamma};
        let mut rng = StdRng::seed_from_u64(5);
        let nu = Gamma::new(4.0, 1.0 / 40.0).unwrap();
        let cs: Vec<CustomerSummary> = (0..40_000)
            .map(|i| {
                let x = f64::from(rng.gen_range(1u32..=12));
                let scale = 1.0 / nu.sample(&mut rng);
                let spend = Gamma::new(5.0 * x, scale / x).unwrap();
                CustomerSummary {
                    customer_id: i.to_string(),
                    frequency: x,
                    recency: 1.0,
                    t: 2.0,
                    monetary_value: spend.sample(&mut rng).max(0.01),
                }
            })
            .collect();
        let fit = fit_gamma_gamma(&cs, &FitOptions::default()).unwrap();
        let data = grouped_for_tests(&cs);
        let (_, g) = data.ll_and_grad(&fit.params);
        let th = [fit.params.p, fit.params.q, fit.params.v];
        for i in 0..3 {
            // Gradient of the mean log-likelihood in log-parameters: zero at the optimum.
            assert!(
                (th[i] * g[i] / data.n).abs() < 1e-6,
                "{:?} {g:?}",
                fit.params
            );
        }
        assert!(
            (fit.params.p / 5.0 - 1.0).abs() < 0.2 && (fit.params.q / 4.0 - 1.0).abs() < 0.2,
            "{:?}",
            fit.params
        );
    }

    #[test]
    fn analytic_hessian_matches_the_gradient() {
        let cs: Vec<CustomerSummary> = (0..40)
            .map(|i| CustomerSummary {
                customer_id: i.to_string(),
                frequency: 1.0 + (i % 6) as f64,
                recency: 1.0,
                t: 2.0,
                monetary_value: 5.0 + (i * 7 % 13) as f64,
            })
            .collect();
        let data = grouped_for_tests(&cs);
        let th = [2.5, 3.5, 20.0];
        let h = data.hessian(&GammaGammaParams {
            p: th[0],
            q: th[1],
            v: th[2],
        });
        for j in 0..3 {
            let step = 1e-6 * th[j];
            let mut up = th;
            up[j] += step;
            let mut down = th;
            down[j] -= step;
            let gu = data
                .ll_and_grad(&GammaGammaParams {
                    p: up[0],
                    q: up[1],
                    v: up[2],
                })
                .1;
            let gd = data
                .ll_and_grad(&GammaGammaParams {
                    p: down[0],
                    q: down[1],
                    v: down[2],
                })
                .1;
            for i in 0..3 {
                let numeric = (gu[i] - gd[i]) / (2.0 * step);
                assert!(
                    (numeric - h[i][j]).abs() <= 1e-5 * numeric.abs().max(1.0),
                    "[{i}][{j}] {numeric} {}",
                    h[i][j]
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn gradient_matches_finite_differences(
            p in 0.2f64..20.0, q in 0.5f64..20.0, v in 0.5f64..500.0,
            hist in proptest::collection::vec((1u32..30, 0.5f64..300.0), 1..40),
        ) {
            let mut xs: Vec<f64> = hist.iter().map(|h| f64::from(h.0)).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            let groups: Vec<(u32, f64, f64, f64)> = hist
                .iter()
                .map(|&(x, m)| (xs.iter().position(|v| *v == f64::from(x)).unwrap_or(0) as u32, m, m.ln(), 1.0))
                .collect();
            let mut groups = groups;
            groups.sort_by_key(|g| g.0);
            let mut x_weight = vec![0.0; xs.len()];
            let mut ln_m_sum = vec![0.0; xs.len()];
            for g in &groups {
                x_weight[g.0 as usize] += 1.0;
                ln_m_sum[g.0 as usize] += g.2;
            }
            let ln_xs = xs.iter().map(|x| x.ln()).collect();
            let data = Grouped { xs, ln_xs, x_weight, ln_m_sum, groups, n: hist.len() as f64, mean_m: 1.0 };
            let th = [p, q, v];
            let (ll, grad) = data.ll_and_grad(&GammaGammaParams { p, q, v });
            let direct: f64 = hist.iter().map(|&(x, m)| GammaGammaParams { p, q, v }.log_likelihood(f64::from(x), m)).sum();
            proptest::prop_assert!((ll - direct).abs() <= 1e-9 * direct.abs().max(1.0));
            for i in 0..3 {
                let h = 1e-6 * th[i];
                let mut up = th;
                up[i] += h;
                let mut down = th;
                down[i] -= h;
                let f = |t: [f64; 3]| data.ll_and_grad(&GammaGammaParams { p: t[0], q: t[1], v: t[2] }).0;
                let numeric = (f(up) - f(down)) / (2.0 * h);
                let tol = 1e-5 * numeric.abs().max(1.0) + 1e-7 * ll.abs();
                proptest::prop_assert!((numeric - grad[i]).abs() <= tol, "param {i}: analytic {} numeric {numeric}", grad[i]);
            }
        }
    }
}
