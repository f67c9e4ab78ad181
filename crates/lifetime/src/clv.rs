//! Discounted customer lifetime value (lifetimes' `customer_lifetime_value`) and its
//! delta-method interval.
//!
//! CLV = Σ_{i=1..months} m̂ (E[X(i·f)] - E[X((i-1)·f)]) / (1 + d)^i, where E[X(t)] is the BG/NBD
//! conditional expected number of purchases, f the periods per month (30 days or 4.345 weeks,
//! lifetimes' factors), m̂ the Gamma-Gamma expected average value and d the monthly discount
//! rate. The value is in the currency of the amounts.

// Index loops read closest to the formulas in the small covariance computations.
#![allow(clippy::needless_range_loop)]

use crate::bgnbd::{BgNbdFit, BgNbdParams};
use crate::gamma_gamma::{GammaGammaFit, GammaGammaParams};
use crate::special::normal_quantile;
use crate::summary::{CustomerSummary, Period};

/// Discounted expected value of a customer's purchases over the next `months` months.
///
/// A discount rate that is not a finite number > -1 is treated as 0. Never negative or NaN.
pub fn customer_lifetime_value(
    bgnbd: &BgNbdParams,
    gg: &GammaGammaParams,
    s: &CustomerSummary,
    months: u32,
    monthly_discount_rate: f64,
    period: Period,
) -> f64 {
    let rate = if monthly_discount_rate.is_finite() && monthly_discount_rate > -1.0 {
        monthly_discount_rate
    } else {
        0.0
    };
    let value = gg.expected_average_value(s);
    let factor = period.per_month();
    let horizons: Vec<f64> = (1..=months).map(|i| f64::from(i) * factor).collect();
    let cumulative = bgnbd.expected_purchases_many(&horizons, s);
    let mut previous = 0.0;
    let mut total = 0.0;
    let mut discount = 1.0;
    for now in cumulative {
        discount /= 1.0 + rate;
        total += value * (now - previous) * discount;
        previous = now;
    }
    if total.is_finite() && total > 0.0 {
        total
    } else {
        0.0
    }
}

/// A `level` (e.g. 0.9) interval for [`customer_lifetime_value`] by the delta method.
///
/// Var(CLV) ≈ ∇ᵀ Σ ∇ with the numeric gradient of CLV in the seven parameters and the fits'
/// covariances (inverse observed information; the two fits taken as independent). It covers
/// parameter uncertainty only, not the randomness of the customer's future purchases.
/// The bounds are floored at 0; a `level` outside (0, 1) is taken as 0.9.
pub fn clv_interval(
    fit_bgnbd: &BgNbdFit,
    fit_gg: &GammaGammaFit,
    s: &CustomerSummary,
    months: u32,
    monthly_discount_rate: f64,
    period: Period,
    level: f64,
) -> (f64, f64) {
    let level = if level > 0.0 && level < 1.0 {
        level
    } else {
        0.9
    };
    let b = fit_bgnbd.params;
    let g = fit_gg.params;
    let clv = |b: &BgNbdParams, g: &GammaGammaParams| {
        customer_lifetime_value(b, g, s, months, monthly_discount_rate, period)
    };
    let value = clv(&b, &g);
    let h = 1e-6;
    let bgnbd_values = [b.r, b.alpha, b.a, b.b];
    let gg_values = [g.p, g.q, g.v];
    let mut grad_b = [0.0; 4];
    for (i, &x) in bgnbd_values.iter().enumerate() {
        let step = h * x.abs().max(1e-12);
        let mut up = bgnbd_values;
        let mut down = bgnbd_values;
        up[i] += step;
        down[i] -= step;
        let pu = BgNbdParams {
            r: up[0],
            alpha: up[1],
            a: up[2],
            b: up[3],
        };
        let pd = BgNbdParams {
            r: down[0],
            alpha: down[1],
            a: down[2],
            b: down[3],
        };
        grad_b[i] = (clv(&pu, &g) - clv(&pd, &g)) / (2.0 * step);
    }
    let mut grad_g = [0.0; 3];
    for (i, &x) in gg_values.iter().enumerate() {
        let step = h * x.abs().max(1e-12);
        let mut up = gg_values;
        let mut down = gg_values;
        up[i] += step;
        down[i] -= step;
        let pu = GammaGammaParams {
            p: up[0],
            q: up[1],
            v: up[2],
        };
        let pd = GammaGammaParams {
            p: down[0],
            q: down[1],
            v: down[2],
        };
        grad_g[i] = (clv(&b, &pu) - clv(&b, &pd)) / (2.0 * step);
    }
    let mut var = 0.0;
    for i in 0..4 {
        for j in 0..4 {
            var += grad_b[i] * fit_bgnbd.covariance[i][j] * grad_b[j];
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            var += grad_g[i] * fit_gg.covariance[i][j] * grad_g[j];
        }
    }
    let sd = var.max(0.0).sqrt();
    let z = normal_quantile(0.5 + level / 2.0);
    let (lo, hi) = ((value - z * sd).max(0.0), value + z * sd);
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (value, value)
    }
}
