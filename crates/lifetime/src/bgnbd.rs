//! BG/NBD (Fader, Hardie and Lee 2005, "Counting Your Customers the Easy Way"): how many
//! purchases a customer will make, and whether they are still "alive".
//!
//! Assumptions: while alive a customer buys as a Poisson process with rate λ; after each
//! purchase they drop out for good with probability p; λ ~ Gamma(r, α) and p ~ Beta(a, b)
//! across customers, independently. Time is in summary periods (days or weeks).
//!
//! The log-likelihood of a customer with `x` repeat purchases, last at `t_x`, observed for `T`:
//!
//! ```text
//! ln L = ln Γ(r+x) - ln Γ(r) + r ln α + ln Γ(a+b) + ln Γ(b+x) - ln Γ(b) - ln Γ(a+b+x)
//!      + ln( (α+T)^-(r+x) + [x>0] a/(b+x-1) (α+t_x)^-(r+x) )
//! ```
//!
//! summed with log-sum-exp, as lifetimes does. The fit maximises it over log-parameters with
//! L-BFGS (argmin, More-Thuente line search) and an analytic gradient, then polishes with Newton
//! steps; customers with identical (x, t_x, T) are grouped and the Γ/ψ terms computed once per
//! distinct x, the logarithms once per distinct T and t_x, so a pass over 100,000 customers
//! costs one exponential and one logarithm per distinct pattern.
//!
//! The conditional expectation (lifetimes' `conditional_expected_number_of_purchases_up_to_time`,
//! eq. 10 of the paper) needs ₂F₁(r+x, b+x; a+b+x-1; z) with z = h/(α+T+h); we always evaluate
//! it through Euler's transform, so the power of (1-z) folds into `(1-z)^(a-1)` and the series
//! ₂F₁(a+b-1-r, a-1; a+b+x-1; z) has small numerator parameters (no overflow for large x).
//! At `a = 1` the formula is 0/0; we average the values at a ± 1e-6 (a documented deviation:
//! lifetimes returns NaN there).

// Index loops read closest to the formulas in the small covariance computations.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{FitError, FitOptions};
use crate::optimize::{self, FastMap, LOG_PARAM_BOUND};
use crate::special::{digamma, euler_series, ln_gamma, trigamma};
use crate::summary::CustomerSummary;

/// BG/NBD parameters: λ ~ Gamma(shape `r`, rate `alpha`), p ~ Beta(`a`, `b`). `alpha` is in
/// summary periods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Rate (scale in time units) of the purchase-rate distribution.
    pub alpha: f64,
    /// First shape of the dropout-probability distribution.
    pub a: f64,
    /// Second shape of the dropout-probability distribution.
    pub b: f64,
}

/// A fitted BG/NBD model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbdFit {
    /// Maximum-likelihood parameters.
    pub params: BgNbdParams,
    /// Total log-likelihood over the customers (without the penalty), in the summaries' units.
    pub log_likelihood: f64,
    /// Customers fitted.
    pub customers: usize,
    /// Optimiser iterations (L-BFGS on the subsample or the data, plus Newton steps).
    pub iterations: u64,
    /// Covariance of (r, alpha, a, b): the inverse of the observed information (the numeric
    /// Hessian of the total negative log-likelihood from the analytic gradient) at the optimum.
    pub covariance: [[f64; 4]; 4],
}

fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        fallback
    }
}

impl BgNbdParams {
    /// Log-likelihood of one customer with `x` repeat purchases, the last at `t_x`, observed for
    /// `t` periods.
    pub fn log_likelihood(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            let m = a3.max(a4);
            a1 + a2 + m + ((a3 - m).exp() + (a4 - m).exp()).ln()
        } else {
            a1 + a2 + a3
        }
    }

    /// Expected repeat purchases in the next `horizon` periods for a customer with summary
    /// `s` (lifetimes' `conditional_expected_number_of_purchases_up_to_time`). 0 for a horizon
    /// <= 0; never negative or NaN.
    pub fn expected_purchases(&self, horizon: f64, s: &CustomerSummary) -> f64 {
        self.expected_purchases_at(horizon, s.frequency, s.recency, s.t)
    }

    /// [`Self::expected_purchases`] from raw (frequency, recency, T).
    pub fn expected_purchases_at(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> f64 {
        if horizon.is_nan() || horizon <= 0.0 {
            return 0.0;
        }
        let v = if (self.a - 1.0).abs() < 1e-7 {
            let lo = BgNbdParams {
                a: 1.0 - 1e-6,
                ..*self
            };
            let hi = BgNbdParams {
                a: 1.0 + 1e-6,
                ..*self
            };
            0.5 * (lo.conditional(horizon, x, t_x, t) + hi.conditional(horizon, x, t_x, t))
        } else {
            self.conditional(horizon, x, t_x, t)
        };
        if v.is_finite() && v > 0.0 {
            v
        } else {
            0.0
        }
    }

    /// [`Self::expected_purchases`] at several horizons at once (same values), sharing the
    /// hypergeometric series' coefficients between them: what CLV needs.
    pub fn expected_purchases_many(&self, horizons: &[f64], s: &CustomerSummary) -> Vec<f64> {
        let (x, t_x, t) = (s.frequency, s.recency, s.t);
        if (self.a - 1.0).abs() < 1e-7 || horizons.iter().any(|h| h.is_nan() || *h <= 0.0) {
            return horizons
                .iter()
                .map(|h| self.expected_purchases_at(*h, x, t_x, t))
                .collect();
        }
        let BgNbdParams { r, alpha, a, b } = *self;
        let l_t = (alpha + t).ln();
        let zs: Vec<f64> = horizons.iter().map(|h| h / (alpha + t + h)).collect();
        let c = a + b + x - 1.0;
        let mut f = vec![0.0; horizons.len()];
        crate::special::euler_series_many(a + b - 1.0 - r, a - 1.0, c, &zs, &mut f);
        let first = c / (a - 1.0);
        let denominator = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((r + x) * (l_t - (alpha + t_x).ln())).exp()
        } else {
            1.0
        };
        horizons
            .iter()
            .zip(&f)
            .map(|(h, &fj)| {
                let ln_1mz = l_t - (alpha + t + h).ln();
                let second = if fj > 0.0 {
                    -((a - 1.0) * ln_1mz + fj.ln()).exp_m1()
                } else {
                    1.0
                };
                let v = first * second / denominator;
                if v.is_finite() && v > 0.0 {
                    v
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn conditional(&self, h: f64, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let l_t = (alpha + t).ln();
        let ln_1mz = l_t - (alpha + t + h).ln();
        let z = h / (alpha + t + h);
        let c = a + b + x - 1.0;
        let f = euler_series(a + b - 1.0 - r, a - 1.0, c, z);
        // 1 - (1-z)^(a-1) F, computed as -expm1 for precision at small horizons.
        let second = if f > 0.0 {
            -((a - 1.0) * ln_1mz + f.ln()).exp_m1()
        } else {
            1.0
        };
        let first = c / (a - 1.0);
        let denominator = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((r + x) * (l_t - (alpha + t_x).ln())).exp()
        } else {
            1.0
        };
        first * second / denominator
    }

    /// Probability that the customer is still alive (lifetimes'
    /// `conditional_probability_alive`); 1 when `frequency` is 0.
    pub fn p_alive(&self, s: &CustomerSummary) -> f64 {
        self.p_alive_at(s.frequency, s.recency, s.t)
    }

    /// [`Self::p_alive`] from raw (frequency, recency, T).
    pub fn p_alive_at(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x.is_nan() || x <= 0.0 {
            return 1.0;
        }
        let BgNbdParams { r, alpha, a, b } = *self;
        let log_div = (r + x) * ((alpha + t).ln() - (alpha + t_x).ln()) + (a / (b + x - 1.0)).ln();
        // expit(-log_div), stable on both tails.
        let v = if log_div >= 0.0 {
            let e = (-log_div).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + log_div.exp())
        };
        finite_or(v, 1.0).clamp(0.0, 1.0)
    }

    /// Probability of no purchase in the next `horizon` periods: dead, or alive and silent,
    /// `(1 - P_alive) + P_alive ((α+T)/(α+T+h))^(r+x)`. This is signalbox's churn risk.
    pub fn p_no_purchase(&self, horizon: f64, s: &CustomerSummary) -> f64 {
        let alive = self.p_alive(s);
        if horizon.is_nan() || horizon <= 0.0 {
            return 1.0 - alive;
        }
        let silent = ((self.r + s.frequency)
            * ((self.alpha + s.t).ln() - (self.alpha + s.t + horizon).ln()))
        .exp();
        finite_or((1.0 - alive) + alive * silent, 1.0 - alive).clamp(0.0, 1.0)
    }

    /// Expected repeat purchases within `t` periods of a new customer's first purchase
    /// (lifetimes' `expected_number_of_purchases_up_to_time`), for the tracking plot.
    pub fn expected_purchases_new(&self, t: f64) -> f64 {
        // The unconditional formula is the conditional one at x = t_x = T = 0.
        self.expected_purchases_at(t, 0.0, 0.0, 0.0)
    }
}

/// Customers grouped by (x, t_x, T), with the distinct values each term depends on.
struct Grouped {
    xs: Vec<f64>,
    /// Total weight per distinct x.
    x_weight: Vec<f64>,
    ts: Vec<f64>,
    txs: Vec<f64>,
    /// (x index, t_x index, T index, weight)
    groups: Vec<(u32, u32, u32, f64)>,
    n: f64,
    max_t: f64,
}

fn index_of(map: &mut FastMap<u64, u32>, values: &mut Vec<f64>, v: f64) -> u32 {
    *map.entry(v.to_bits()).or_insert_with(|| {
        values.push(v);
        (values.len() - 1) as u32
    })
}

fn validate(s: &CustomerSummary) -> Result<(), FitError> {
    let bad = |reason: &str| FitError::InvalidCustomer {
        customer_id: s.customer_id.clone(),
        reason: reason.into(),
    };
    if !(s.frequency.is_finite() && s.frequency >= 0.0 && s.frequency == s.frequency.floor()) {
        return Err(bad("frequency must be a whole number >= 0"));
    }
    if !(s.recency.is_finite() && s.recency >= 0.0) {
        return Err(bad("recency must be a finite number >= 0"));
    }
    if !(s.t.is_finite() && s.t >= s.recency) {
        return Err(bad("T must be a finite number >= recency"));
    }
    if s.frequency == 0.0 && s.recency != 0.0 {
        return Err(bad("recency must be 0 when frequency is 0"));
    }
    Ok(())
}

impl Grouped {
    fn new(customers: &[CustomerSummary]) -> Result<Grouped, FitError> {
        let (mut xm, mut tm, mut txm) =
            (FastMap::default(), FastMap::default(), FastMap::default());
        let (mut xs, mut ts, mut txs) = (Vec::new(), Vec::new(), Vec::new());
        // Patterns by sorting packed keys (radix sort when they fit 64 bits): a hash map of
        // 100,000 entries missed the cache on every insert and cost more than the optimisation.
        let mut triples: Vec<(u32, u32, u32)> = Vec::with_capacity(customers.len());
        let mut max_t = 0.0f64;
        for s in customers {
            validate(s)?;
            let xi = index_of(&mut xm, &mut xs, s.frequency);
            let ti = index_of(&mut tm, &mut ts, s.t);
            let txi = index_of(&mut txm, &mut txs, s.recency);
            triples.push((xi, txi, ti));
            max_t = max_t.max(s.t);
        }
        let width = |n: usize| usize::BITS - n.leading_zeros();
        let (bx, btx, bt) = (width(xs.len()), width(txs.len()), width(ts.len()));
        let mut groups: Vec<(u32, u32, u32, f64)> = Vec::new();
        let mut push = |xi: u32, txi: u32, ti: u32| match groups.last_mut() {
            Some(last) if (last.0, last.1, last.2) == (xi, txi, ti) => last.3 += 1.0,
            _ => groups.push((xi, txi, ti, 1.0)),
        };
        if bx + btx + bt <= 64 {
            let mut keys: Vec<u64> = triples
                .iter()
                .map(|&(xi, txi, ti)| {
                    u64::from(xi) << (btx + bt) | u64::from(txi) << bt | u64::from(ti)
                })
                .collect();
            optimize::radix_sort(&mut keys, bx + btx + bt);
            let (mask_tx, mask_t) = ((1u64 << btx) - 1, (1u64 << bt) - 1);
            for key in keys {
                push(
                    (key >> (btx + bt)) as u32,
                    ((key >> bt) & mask_tx) as u32,
                    (key & mask_t) as u32,
                );
            }
        } else {
            triples.sort_unstable();
            for (xi, txi, ti) in triples {
                push(xi, txi, ti);
            }
        }
        let mut x_weight = vec![0.0; xs.len()];
        for g in &groups {
            x_weight[g.0 as usize] += g.3;
        }
        Ok(Grouped {
            xs,
            x_weight,
            ts,
            txs,
            groups,
            n: customers.len() as f64,
            max_t,
        })
    }

    /// Hessian of the total log-likelihood with respect to (r, alpha, a, b), analytic.
    ///
    /// With L = LSE(A3, A4) per pattern, ∇²L = w3 ∇²A3 + w4 ∇²A4 + w3 w4 d dᵀ where
    /// d = ∇A3 - ∇A4; the Γ terms contribute trigamma values per distinct x.
    fn hessian(&self, p: &BgNbdParams) -> [[f64; 4]; 4] {
        let BgNbdParams { r, alpha, a, b } = *p;
        let mut h = [[0.0f64; 4]; 4];
        let (tg_r, tg_ab, tg_b) = (trigamma(r), trigamma(a + b), trigamma(b));
        h[0][1] += self.n / alpha;
        h[1][1] -= self.n * r / (alpha * alpha);
        let mut rx = Vec::with_capacity(self.xs.len());
        let mut lnb1 = Vec::with_capacity(self.xs.len());
        let mut invb1 = Vec::with_capacity(self.xs.len());
        for (i, &x) in self.xs.iter().enumerate() {
            let w = self.x_weight[i];
            let tg_abx = trigamma(a + b + x);
            h[0][0] += w * (trigamma(r + x) - tg_r);
            h[2][2] += w * (tg_ab - tg_abx);
            h[2][3] += w * (tg_ab - tg_abx);
            h[3][3] += w * (tg_ab + trigamma(b + x) - tg_b - tg_abx);
            rx.push(r + x);
            let b1 = if x > 0.0 { b + x - 1.0 } else { 1.0 };
            lnb1.push(b1.ln());
            invb1.push(1.0 / b1);
        }
        let l_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let i_t: Vec<f64> = self.ts.iter().map(|t| 1.0 / (alpha + t)).collect();
        let l_tx: Vec<f64> = self.txs.iter().map(|t| (alpha + t).ln()).collect();
        let i_tx: Vec<f64> = self.txs.iter().map(|t| 1.0 / (alpha + t)).collect();
        let ln_a = a.ln();
        let inv_a = 1.0 / a;
        for &(xi, txi, ti, w) in &self.groups {
            let (xi, txi, ti) = (xi as usize, txi as usize, ti as usize);
            let rxv = rx[xi];
            let it = i_t[ti];
            if self.xs[xi] > 0.0 {
                let a3 = -rxv * l_t[ti];
                let a4 = ln_a - lnb1[xi] - rxv * l_tx[txi];
                let w3 = 1.0 / (1.0 + (a4 - a3).exp());
                let w4 = 1.0 - w3;
                let itx = i_tx[txi];
                h[0][1] -= w * (w3 * it + w4 * itx);
                h[1][1] += w * rxv * (w3 * it * it + w4 * itx * itx);
                h[2][2] -= w * w4 * inv_a * inv_a;
                h[3][3] += w * w4 * invb1[xi] * invb1[xi];
                let d = [l_tx[txi] - l_t[ti], rxv * (itx - it), -inv_a, invb1[xi]];
                let c = w * w3 * w4;
                for i in 0..4 {
                    for j in i..4 {
                        h[i][j] += c * d[i] * d[j];
                    }
                }
            } else {
                h[0][1] -= w * it;
                h[1][1] += w * rxv * it * it;
            }
        }
        for i in 0..4 {
            for j in 0..i {
                h[i][j] = h[j][i];
            }
        }
        h
    }

    /// Every `stride`-th pattern (at least one in two), with the weights recounted.
    fn subsample(&self, stride: usize) -> Grouped {
        let groups: Vec<(u32, u32, u32, f64)> =
            self.groups.iter().step_by(stride.max(2)).copied().collect();
        let mut x_weight = vec![0.0; self.xs.len()];
        for g in &groups {
            x_weight[g.0 as usize] += g.3;
        }
        Grouped {
            xs: self.xs.clone(),
            x_weight,
            ts: self.ts.clone(),
            txs: self.txs.clone(),
            n: groups.iter().map(|g| g.3).sum(),
            groups,
            max_t: self.max_t,
        }
    }

    /// Total log-likelihood and its gradient with respect to (r, alpha, a, b).
    fn ll_and_grad(&self, p: &BgNbdParams) -> (f64, [f64; 4]) {
        let BgNbdParams { r, alpha, a, b } = *p;
        let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
        let (dg_r, dg_ab, dg_b) = (digamma(r), digamma(a + b), digamma(b));
        let ln_a = a.ln();
        let mut ll = self.n * r * alpha.ln();
        let mut g = [self.n * alpha.ln(), self.n * r / alpha, 0.0, 0.0];
        // Per distinct x: r + x, ln(b + x - 1), 1/(b + x - 1).
        let mut rx = Vec::with_capacity(self.xs.len());
        let mut lnb1 = Vec::with_capacity(self.xs.len());
        let mut invb1 = Vec::with_capacity(self.xs.len());
        for (i, &x) in self.xs.iter().enumerate() {
            let w = self.x_weight[i];
            ll +=
                w * (ln_gamma(r + x) - lg_r + lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x));
            let dg_abx = digamma(a + b + x);
            g[0] += w * (digamma(r + x) - dg_r);
            g[2] += w * (dg_ab - dg_abx);
            g[3] += w * (dg_ab + digamma(b + x) - dg_b - dg_abx);
            rx.push(r + x);
            let b1 = if x > 0.0 { b + x - 1.0 } else { 1.0 };
            lnb1.push(b1.ln());
            invb1.push(1.0 / b1);
        }
        let l_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let i_t: Vec<f64> = self.ts.iter().map(|t| 1.0 / (alpha + t)).collect();
        let l_tx: Vec<f64> = self.txs.iter().map(|t| (alpha + t).ln()).collect();
        let i_tx: Vec<f64> = self.txs.iter().map(|t| 1.0 / (alpha + t)).collect();
        let (mut s_ll, mut s_r, mut s_alpha, mut s_a, mut s_b) = (0.0, 0.0, 0.0, 0.0, 0.0);
        // Σ w ln(1 + e) is taken as the log of a running product of (1 + e) ∈ (1, 2], flushed
        // before it could overflow (2^1000 < f64::MAX): one logarithm per ~1000 customers
        // instead of one per pattern, the hot loop's largest cost.
        let (mut product, mut budget) = (1.0f64, 0.0f64);
        for &(xi, txi, ti, w) in &self.groups {
            let (xi, txi, ti) = (xi as usize, txi as usize, ti as usize);
            let rxv = rx[xi];
            let a3 = -rxv * l_t[ti];
            if self.xs[xi] > 0.0 {
                let a4 = ln_a - lnb1[xi] - rxv * l_tx[txi];
                // log-sum-exp with weights w3 = e^A3 / (e^A3 + e^A4), w4 = 1 - w3.
                let (top, e) = if a3 >= a4 {
                    (a3, (a4 - a3).exp())
                } else {
                    (a4, (a3 - a4).exp())
                };
                let inv = 1.0 / (1.0 + e);
                let w3 = if a3 >= a4 { inv } else { e * inv };
                let w4 = 1.0 - w3;
                s_ll += w * top;
                if w == 1.0 {
                    product *= 1.0 + e;
                    budget += 1.0;
                    if budget >= 1000.0 {
                        s_ll += product.ln();
                        product = 1.0;
                        budget = 0.0;
                    }
                } else {
                    s_ll += w * (1.0 + e).ln();
                }
                s_r -= w * (w3 * l_t[ti] + w4 * l_tx[txi]);
                s_alpha -= w * rxv * (w3 * i_t[ti] + w4 * i_tx[txi]);
                s_a += w * w4;
                s_b -= w * w4 * invb1[xi];
            } else {
                s_ll += w * a3;
                s_r -= w * l_t[ti];
                s_alpha -= w * rxv * i_t[ti];
            }
        }
        s_ll += product.ln();
        ll += s_ll;
        g[0] += s_r;
        g[1] += s_alpha;
        g[2] += s_a / a;
        g[3] += s_b;
        (ll, g)
    }
}

/// Minimises the mean negative log-likelihood (plus penalty) of `data` over log-parameters.
fn optimise(
    data: &Grouped,
    scale: f64,
    x0: Vec<f64>,
    warm: bool,
    options: &FitOptions,
) -> Result<optimize::Minimum, FitError> {
    let penalizer = options.penalizer;
    let n = data.n;
    let theta = |phi: &[f64]| -> BgNbdParams {
        let th: Vec<f64> = phi
            .iter()
            .map(|v| v.clamp(-LOG_PARAM_BOUND, LOG_PARAM_BOUND).exp())
            .collect();
        BgNbdParams {
            r: th[0],
            alpha: th[1],
            a: th[2],
            b: th[3],
        }
    };
    // Penalty as lifetimes: penalizer * (r² + (alpha * scale)² + a² + b²).
    let pen_diag = [
        2.0 * penalizer,
        2.0 * penalizer * scale * scale,
        2.0 * penalizer,
        2.0 * penalizer,
    ];
    let objective = |phi: &[f64]| {
        let p = theta(phi);
        let th = [p.r, p.alpha, p.a, p.b];
        let (ll, g) = data.ll_and_grad(&p);
        let penalty: f64 = (0..4).map(|i| 0.5 * pen_diag[i] * th[i] * th[i]).sum();
        let grad: Vec<f64> = (0..4)
            .map(|i| th[i] * (-g[i] / n + pen_diag[i] * th[i]))
            .collect();
        (-ll / n + penalty, grad)
    };
    // Hessian of the cost in log-parameters: D H D + diag(∂cost/∂φ), D = diag(θ).
    let hessian_phi = |phi: &[f64], grad_phi: &[f64]| -> Vec<Vec<f64>> {
        let p = theta(phi);
        let th = [p.r, p.alpha, p.a, p.b];
        let h = data.hessian(&p);
        let mut out = vec![vec![0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                out[i][j] = th[i] * th[j] * (-h[i][j] / n + if i == j { pen_diag[i] } else { 0.0 });
            }
            out[i][i] += grad_phi[i];
        }
        out
    };
    optimize::minimize(&objective, Some(&hessian_phi), x0, warm, options)
}

/// Fits BG/NBD by maximum likelihood.
///
/// Needs at least 10 customers, some with repeat purchases. Errors: `TooFewCustomers`,
/// `NoRepeatPurchases`, `InvalidCustomer` (non-integer frequency, recency > T, ...),
/// `DidNotConverge`, `Degenerate` (a parameter runs to 0 or infinity, e.g. when every customer
/// has the same history, or the information matrix is singular).
///
/// ```
/// use lifetime::bgnbd::{fit_bgnbd, BgNbdParams};
/// use lifetime::summary::CustomerSummary;
/// use lifetime::FitOptions;
/// let c = |i: usize, x: f64, tx: f64, t: f64| CustomerSummary {
///     customer_id: i.to_string(), frequency: x, recency: tx, t, monetary_value: 0.0 };
/// let data: Vec<_> = (0..60).map(|i| match i % 6 {
///     0 => c(i, 0.0, 0.0, 30.0), 1 => c(i, 1.0, 5.0, 38.0), 2 => c(i, 3.0, 20.0, 35.0),
///     3 => c(i, 0.0, 0.0, 25.0), 4 => c(i, 6.0, 30.0, 32.0), _ => c(i, 2.0, 8.0, 36.0) }).collect();
/// let fit = fit_bgnbd(&data, &FitOptions::default()).unwrap();
/// assert!(fit.log_likelihood.is_finite() && fit.params.r > 0.0);
/// ```
pub fn fit_bgnbd(
    customers: &[CustomerSummary],
    options: &FitOptions,
) -> Result<BgNbdFit, FitError> {
    options.validate()?;
    const NEEDED: usize = 10;
    if customers.len() < NEEDED {
        return Err(FitError::TooFewCustomers {
            needed: NEEDED,
            got: customers.len(),
        });
    }
    let data = Grouped::new(customers)?;
    if data.xs.iter().all(|&x| x == 0.0) {
        return Err(FitError::NoRepeatPurchases);
    }
    // lifetimes fits in time scaled so that the largest T is 1; in log-parameters that only
    // moves alpha's starting point (and where the penalty applies), so we keep the data as is.
    let scale = 1.0 / data.max_t;
    let x0 = vec![0.0, data.max_t.ln(), 0.0, 0.0];
    // On many patterns, find the optimum of a systematic subsample (every k-th pattern, about
    // 5,000) with L-BFGS first, then finish on all data with Newton steps from there: a few
    // full passes instead of twenty.
    let min = if data.groups.len() > 20_000 {
        let sub = data.subsample(data.groups.len() / 5_000);
        match optimise(&sub, scale, x0.clone(), false, options) {
            Ok(m) if m.converged => {
                let mut full = optimise(&data, scale, m.x, true, options)?;
                full.iterations += m.iterations;
                full
            }
            _ => optimise(&data, scale, x0, false, options)?,
        }
    } else {
        optimise(&data, scale, x0, false, options)?
    };
    // In scaled time (largest T = 1) so the bounds mean the same for days and weeks.
    let scaled = [min.x[0], min.x[1] + scale.ln(), min.x[2], min.x[3]];
    optimize::check_outcome("BG/NBD", &["r", "alpha", "a", "b"], &scaled, &min)?;
    let params = BgNbdParams {
        r: min.x[0].exp(),
        alpha: min.x[1].exp(),
        a: min.x[2].exp(),
        b: min.x[3].exp(),
    };
    let (ll, _) = data.ll_and_grad(&params);
    // Observed information: Hessian of the total negative log-likelihood in (r, alpha, a, b).
    let hessian: Vec<Vec<f64>> = data
        .hessian(&params)
        .iter()
        .map(|row| row.iter().map(|v| -v).collect())
        .collect();
    let inverse = optimize::invert_spd(&hessian).ok_or_else(|| FitError::Degenerate {
        reason: "the BG/NBD information matrix is not positive definite".into(),
    })?;
    let mut covariance = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            covariance[i][j] = inverse[i][j];
        }
    }
    if !ll.is_finite() || covariance.iter().flatten().any(|v| !v.is_finite()) {
        return Err(FitError::Degenerate {
            reason: "non-finite BG/NBD log-likelihood or covariance".into(),
        });
    }
    Ok(BgNbdFit {
        params,
        log_likelihood: ll,
        customers: customers.len(),
        iterations: min.iterations,
        covariance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_likelihood_equals_the_per_customer_sum() {
        let p = BgNbdParams {
            r: 0.24,
            alpha: 4.4,
            a: 0.79,
            b: 2.4,
        };
        let cs: Vec<CustomerSummary> = [
            (0.0, 0.0, 30.0),
            (2.0, 10.0, 30.0),
            (2.0, 10.0, 30.0),
            (5.0, 28.5, 39.0),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(x, tx, t))| CustomerSummary {
            customer_id: i.to_string(),
            frequency: x,
            recency: tx,
            t,
            monetary_value: 0.0,
        })
        .collect();
        let g = Grouped::new(&cs).unwrap();
        let (ll, _) = g.ll_and_grad(&p);
        let direct: f64 = cs
            .iter()
            .map(|s| p.log_likelihood(s.frequency, s.recency, s.t))
            .sum();
        assert!((ll - direct).abs() < 1e-10 * direct.abs(), "{ll} {direct}");
        assert_eq!(g.groups.len(), 3);
    }

    #[test]
    fn analytic_hessian_matches_the_gradient() {
        let cs: Vec<CustomerSummary> = (0..60)
            .map(|i| CustomerSummary {
                customer_id: i.to_string(),
                frequency: (i % 7) as f64,
                recency: if i % 7 == 0 { 0.0 } else { (i % 23) as f64 },
                t: 25.0 + (i % 5) as f64,
                monetary_value: 0.0,
            })
            .collect();
        let g = Grouped::new(&cs).unwrap();
        let p = [0.4, 6.0, 0.8, 2.5];
        let h = g.hessian(&BgNbdParams {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        });
        for j in 0..4 {
            let step = 1e-6 * p[j];
            let mut up = p;
            up[j] += step;
            let mut down = p;
            down[j] -= step;
            let gu = g
                .ll_and_grad(&BgNbdParams {
                    r: up[0],
                    alpha: up[1],
                    a: up[2],
                    b: up[3],
                })
                .1;
            let gd = g
                .ll_and_grad(&BgNbdParams {
                    r: down[0],
                    alpha: down[1],
                    a: down[2],
                    b: down[3],
                })
                .1;
            for i in 0..4 {
                let numeric = (gu[i] - gd[i]) / (2.0 * step);
                assert!(
                    (numeric - h[i][j]).abs() <= 1e-5 * numeric.abs().max(1.0),
                    "[{i}][{j}] {numeric} {}",
                    h[i][j]
                );
            }
        }
    }

    /// A seeded BG/NBD population in whole days with many distinct patterns.
    fn many_patterns(n: usize) -> Vec<CustomerSummary> {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        use rand_distr::{Beta, Distribution, Exp, Gamma};
        let mut rng = StdRng::seed_from_u64(3);
        let (lambda, dropout) = (
            Gamma::new(0.5, 1.0 / 20.0).unwrap(),
            Beta::new(1.2, 3.5).unwrap(),
        );
        (0..n)
            .map(|i| {
                let t = f64::from(rng.gen_range(30u32..=730));
                let l: f64 = lambda.sample(&mut rng);
                let p: f64 = dropout.sample(&mut rng);
                let gap = Exp::new(l.max(1e-9)).unwrap();
                let (mut now, mut x, mut tx) = (0.0f64, 0.0, 0.0);
                loop {
                    now += gap.sample(&mut rng);
                    if now > t {
                        break;
                    }
                    if now.floor() > tx {
                        x += 1.0;
                        tx = now.floor();
                    }
                    if rng.gen::<f64>() < p {
                        break;
                    }
                }
                CustomerSummary {
                    customer_id: i.to_string(),
                    frequency: x,
                    recency: tx,
                    t,
                    monetary_value: 0.0,
                }
            })
            .collect()
    }

    #[test]
    fn subsample_start_reaches_the_same_optimum() {
        let cs = many_patterns(60_000);
        let data = Grouped::new(&cs).unwrap();
        assert!(data.groups.len() > 20_000, "{} patterns", data.groups.len());
        let fit = fit_bgnbd(&cs, &FitOptions::default()).unwrap();
        let cold = optimise(
            &data,
            1.0 / data.max_t,
            vec![0.0, data.max_t.ln(), 0.0, 0.0],
            false,
            &FitOptions::default(),
        )
        .unwrap();
        assert!(cold.converged);
        let ours = [fit.params.r, fit.params.alpha, fit.params.a, fit.params.b];
        for (o, c) in ours.iter().zip(&cold.x) {
            assert!(
                (o / c.exp() - 1.0).abs() < 1e-5,
                "{ours:?} vs {:?}",
                cold.x.iter().map(|v| v.exp()).collect::<Vec<_>>()
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn gradient_matches_finite_differences(
            r in 0.05f64..5.0, alpha in 0.5f64..100.0, a in 0.1f64..5.0, b in 0.1f64..10.0,
            hist in proptest::collection::vec((0u32..30, 0.0f64..1.0, 1.0f64..300.0), 1..40),
        ) {
            let cs: Vec<CustomerSummary> = hist.iter().enumerate().map(|(i, &(x, share, t))| CustomerSummary {
                customer_id: i.to_string(),
                frequency: f64::from(x),
                recency: if x == 0 { 0.0 } else { share * t },
                t,
                monetary_value: 0.0,
            }).collect();
            let g = Grouped::new(&cs).unwrap();
            let p = [r, alpha, a, b];
            let (ll, grad) = g.ll_and_grad(&BgNbdParams { r, alpha, a, b });
            proptest::prop_assert!(ll.is_finite());
            for i in 0..4 {
                let h = 1e-6 * p[i];
                let mut up = p;
                up[i] += h;
                let mut down = p;
                down[i] -= h;
                let f = |q: [f64; 4]| g.ll_and_grad(&BgNbdParams { r: q[0], alpha: q[1], a: q[2], b: q[3] }).0;
                let numeric = (f(up) - f(down)) / (2.0 * h);
                let tol = 1e-5 * numeric.abs().max(1.0) + 1e-7 * ll.abs();
                proptest::prop_assert!((numeric - grad[i]).abs() <= tol, "param {i}: analytic {} numeric {numeric}", grad[i]);
            }
        }
    }
}
