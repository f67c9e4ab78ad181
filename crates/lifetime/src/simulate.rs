//! Simulated customers: the BG/NBD purchase process with Gamma-Gamma spend, optionally
//! correlated with a Weber sensitivity segment.
//!
//! Used for the demo tenant's history, for tests, and for the evaluation that shows Weber
//! features carrying signal. Deterministic for a seeded RNG (same seed, same customers).
//!
//! ## The purchase process ([`PurchaseProcess`], time unit: days)
//!
//! As in Fader, Hardie and Lee (2005) and `lifetimes`' generator: each customer has a purchase
//! rate `lambda ~ Gamma(shape r, rate alpha)` and a dropout probability `p ~ Beta(a, b)`. They
//! make a first purchase on their acquisition day (uniform over the first
//! `acquisition_fraction` of the window), then repeat purchases after exponential gaps of rate
//! `lambda`; after each repeat purchase they leave for good with probability `p`. Spend follows
//! Gamma-Gamma (Fader and Hardie 2013): `nu ~ Gamma(shape q, rate v)` per customer and each
//! amount `~ Gamma(shape p_spend, rate nu)` (mean `p_spend * v / (q - 1)` over customers),
//! rounded to cents (at least 0.01). Purchases are whole days; several on one day are kept (the
//! summary merges them into one period, as `lifetimes` does).
//!
//! ## The Weber effect ([`WeberEffect`])
//!
//! Each customer gets a sensitivity segment (shares [`WeberEffect::segment_shares`], most
//! sensitive first). A share [`WeberEffect::review_share`] of them also writes reviews: a
//! sentiment sequence (between `min_reviews` and `max_reviews` long, spread over their active
//! life) built so that every Weber ratio `|s_i - baseline_i| / (|baseline_i| + 0.1)` is close to
//! a target drawn inside the segment's range (Highly_Sensitive 0.9..1.4, Moderately 0.45..0.75,
//! Low 0.22..0.38, Insensitive 0.03..0.17, each ratio jittered by 15%), so that
//! `weber::profile` with default parameters puts the customer in that segment most of the time
//! (98.6% of 1,730 reviewing customers in the seed-5 test run with the defaults; the test requires at least 80%).
//!
//! **Effect size.** Sensitivity raises the dropout probability:
//! `p_effective = 1 - (1 - p)^(1 + dropout_effect * w)`, with weight `w` = 1 for
//! Highly_Sensitive, 2/3 Moderately, 1/3 Low and 0 Insensitive. With the default
//! `dropout_effect = 2.0` a highly sensitive customer's per-purchase dropout is about three times
//! an insensitive one's (exactly `1 - (1 - p)^3`), a moderately sensitive one's about 2.3 times.
//! `dropout_effect = 0` gives the plain BG/NBD process (Weber features then carry no signal).
//! The segment acts on customers without reviews too (it is a latent trait); they just have no
//! Weber profile.

use rand::Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};
use weber::{Interaction, SensitivitySegment};

const MS_PER_DAY: i64 = 86_400_000;

/// The BG/NBD + Gamma-Gamma parameters of the simulation (time unit: days).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PurchaseProcess {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Rate of the purchase-rate distribution (per day).
    pub alpha: f64,
    /// Beta `a` of the dropout probability.
    pub a: f64,
    /// Beta `b` of the dropout probability.
    pub b: f64,
    /// Gamma-Gamma shape of each transaction's value.
    pub p_spend: f64,
    /// Gamma-Gamma shape of the per-customer scale.
    pub q: f64,
    /// Gamma-Gamma rate of the per-customer scale.
    pub v: f64,
    /// Share of the window (from its start) over which customers are acquired, in `(0, 1]`.
    pub acquisition_fraction: f64,
}

impl Default for PurchaseProcess {
    /// A mean purchase rate of one per 60 days (`r = 0.5`, `alpha = 30`), mean dropout 0.2 per
    /// repeat purchase (`a = 1`, `b = 4`), and `lifetimes`' CDNOW Gamma-Gamma estimates
    /// (`p = 6.25`, `q = 3.74`, `v = 15.44`: mean spend about 35), acquisition over the first
    /// half of the window.
    fn default() -> Self {
        Self {
            r: 0.5,
            alpha: 30.0,
            a: 1.0,
            b: 4.0,
            p_spend: 6.25,
            q: 3.74,
            v: 15.44,
            acquisition_fraction: 0.5,
        }
    }
}

/// How sensitivity shows in reviews and in dropout (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeberEffect {
    /// Share of each segment, in [`SensitivitySegment::ALL`] order (most sensitive first);
    /// non-negative, not all zero (normalised internally).
    pub segment_shares: [f64; 4],
    /// Share of customers who write reviews, in `[0, 1]`.
    pub review_share: f64,
    /// Fewest reviews of a reviewing customer (at least 3, the fewest a Weber profile needs).
    pub min_reviews: u32,
    /// Most reviews of a reviewing customer (`>= min_reviews`, at most 100).
    pub max_reviews: u32,
    /// Exponent weight of sensitivity on dropout (`>= 0`, at most 10).
    pub dropout_effect: f64,
}

impl Default for WeberEffect {
    /// Shares 20/30/30/20 %, 85% of customers reviewing 5 to 15 times, `dropout_effect` 2.
    fn default() -> Self {
        Self {
            segment_shares: [0.2, 0.3, 0.3, 0.2],
            review_share: 0.85,
            min_reviews: 5,
            max_reviews: 15,
            dropout_effect: 2.0,
        }
    }
}

/// Everything [`simulate_customers`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SimulationParams {
    /// The purchase process.
    pub process: PurchaseProcess,
    /// The Weber correlation.
    pub weber: WeberEffect,
}

/// Parameters [`simulate_customers`] cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("simulation parameter {field}: {reason}")]
pub struct SimulationError {
    /// The parameter, e.g. `process.alpha`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// One purchase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimulatedPurchase {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Amount (> 0, whole cents).
    pub amount: f64,
}

/// One review: a sentiment at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimulatedReview {
    /// Milliseconds since 1970-01-01 (distinct and increasing per customer).
    pub time_ms: i64,
    /// Sentiment in `[-1, 1]` on the Weber engine's `1e-4` grid.
    pub sentiment: f64,
}

/// A simulated customer: the hidden truth plus the observable history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedCustomer {
    /// `cust-000001`, ... in generation order.
    pub customer_id: String,
    /// The true (latent) segment.
    pub segment: SensitivitySegment,
    /// The true purchase rate per day.
    pub purchase_rate: f64,
    /// The true per-purchase dropout probability, after the Weber effect.
    pub dropout_probability: f64,
    /// Day of the first purchase.
    pub first_day: i32,
    /// Day of leaving (just after the last purchase) when the customer left within the window.
    pub dropped_out_after: Option<i32>,
    /// Purchases, in time order (the first on `first_day`).
    pub purchases: Vec<SimulatedPurchase>,
    /// Reviews, in time order (empty for non-reviewing customers).
    pub reviews: Vec<SimulatedReview>,
}

impl SimulatedCustomer {
    /// The purchases as [`crate::summary::Purchase`]s, ready for the summaries and
    /// [`crate::model::fit_model`].
    #[must_use]
    pub fn purchases_for_summary(&self) -> Vec<crate::summary::Purchase> {
        self.purchases
            .iter()
            .map(|p| crate::summary::Purchase {
                customer_id: self.customer_id.clone(),
                day: p.day,
                amount: p.amount,
            })
            .collect()
    }

    /// The reviews as Weber engine interactions (tiebreak = position).
    #[must_use]
    pub fn interactions(&self) -> Vec<Interaction> {
        self.reviews
            .iter()
            .enumerate()
            .map(|(i, r)| Interaction::new(r.sentiment, r.time_ms, i as u64))
            .collect()
    }
}

fn positive(field: &'static str, v: f64) -> Result<(), SimulationError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(SimulationError {
            field,
            reason: "must be finite and > 0",
        })
    }
}

impl SimulationParams {
    /// Checks every parameter's range (see the field docs).
    ///
    /// # Errors
    /// The first parameter out of range.
    pub fn validate(&self) -> Result<(), SimulationError> {
        let p = &self.process;
        positive("process.r", p.r)?;
        positive("process.alpha", p.alpha)?;
        positive("process.a", p.a)?;
        positive("process.b", p.b)?;
        positive("process.p_spend", p.p_spend)?;
        positive("process.q", p.q)?;
        positive("process.v", p.v)?;
        positive("process.acquisition_fraction", p.acquisition_fraction)?;
        if p.acquisition_fraction > 1.0 {
            return Err(SimulationError {
                field: "process.acquisition_fraction",
                reason: "must be at most 1",
            });
        }
        let w = &self.weber;
        if w.segment_shares
            .iter()
            .any(|s| !(s.is_finite() && *s >= 0.0))
            || w.segment_shares.iter().sum::<f64>() <= 0.0
        {
            return Err(SimulationError {
                field: "weber.segment_shares",
                reason: "must be finite, >= 0 and not all 0",
            });
        }
        if !(0.0..=1.0).contains(&w.review_share) {
            return Err(SimulationError {
                field: "weber.review_share",
                reason: "must be in [0, 1]",
            });
        }
        if w.min_reviews < 3 || w.max_reviews < w.min_reviews || w.max_reviews > 100 {
            return Err(SimulationError {
                field: "weber.min_reviews",
                reason: "need 3 <= min_reviews <= max_reviews <= 100",
            });
        }
        if !(0.0..=10.0).contains(&w.dropout_effect) {
            return Err(SimulationError {
                field: "weber.dropout_effect",
                reason: "must be in [0, 10]",
            });
        }
        Ok(())
    }
}

/// Weight of a segment in the dropout effect.
#[must_use]
pub fn sensitivity_weight(segment: SensitivitySegment) -> f64 {
    match segment {
        SensitivitySegment::HighlySensitive => 1.0,
        SensitivitySegment::ModeratelySensitive => 2.0 / 3.0,
        SensitivitySegment::LowSensitive => 1.0 / 3.0,
        SensitivitySegment::Insensitive => 0.0,
    }
}

/// The per-ratio target range of a segment (see the module docs).
fn target_range(segment: SensitivitySegment) -> (f64, f64) {
    match segment {
        SensitivitySegment::HighlySensitive => (0.9, 1.4),
        SensitivitySegment::ModeratelySensitive => (0.45, 0.75),
        SensitivitySegment::LowSensitive => (0.22, 0.38),
        SensitivitySegment::Insensitive => (0.03, 0.17),
    }
}

/// Rounds to the Weber engine's `1e-4` sentiment grid, inside `[-1, 1]`.
fn on_grid(s: f64) -> f64 {
    ((s.clamp(-1.0, 1.0) * 10_000.0).round() / 10_000.0).clamp(-1.0, 1.0)
}

/// A sentiment sequence of length `n` whose Weber ratios are all near `target` (module docs).
fn sentiments<R: Rng + ?Sized>(rng: &mut R, n: usize, target: f64) -> Vec<f64> {
    const EPS: f64 = weber::DEFAULT_EPS;
    // The engine counts ratio_0 = 0 and drops the largest ratio (its 99th percentile filter
    // keeps ratios <= p99); scaling by (n - 1) / (n - 2) recentres the mean of what it keeps.
    let scale = if n > 2 {
        (n as f64 - 1.0) / (n as f64 - 2.0)
    } else {
        1.0
    };
    let centre = rng.gen_range(0.1..0.4);
    let mut out = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 0..n {
        let s = if i == 0 {
            on_grid(centre)
        } else {
            let baseline = sum / i as f64;
            let jitter = 1.0 + 0.15 * (rng.gen::<f64>() * 2.0 - 1.0) * 3f64.sqrt();
            let step = target * scale * jitter.max(0.0) * (f64::abs(baseline) + EPS);
            // Lean back towards the centre (70%) so the baseline does not wander off.
            let towards = if baseline < centre { 1.0 } else { -1.0 };
            let sign = if rng.gen_bool(0.7) { towards } else { -towards };
            let up = baseline + sign * step;
            let down = baseline - sign * step;
            // Keep inside [-1, 1] when the other direction fits.
            if (-1.0..=1.0).contains(&up) || !(-1.0..=1.0).contains(&down) {
                on_grid(up)
            } else {
                on_grid(down)
            }
        };
        sum += s;
        out.push(s);
    }
    out
}

fn pick_segment<R: Rng + ?Sized>(rng: &mut R, shares: &[f64; 4]) -> SensitivitySegment {
    let total: f64 = shares.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (seg, share) in SensitivitySegment::ALL.iter().zip(shares) {
        if u < *share {
            return *seg;
        }
        u -= share;
    }
    SensitivitySegment::Insensitive
}

/// Simulates `n` customers over the days `start_day .. start_day + days` (see the module docs).
///
/// ```
/// use lifetime::simulate::{simulate_customers, SimulationParams};
/// use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let customers = simulate_customers(&mut rng, &SimulationParams::default(), 100, 19_000, 365)?;
/// assert_eq!(customers.len(), 100);
/// assert!(customers.iter().all(|c| !c.purchases.is_empty()));
/// # Ok::<(), lifetime::simulate::SimulationError>(())
/// ```
///
/// # Errors
/// [`SimulationError`] when a parameter is out of range or `days` is 0.
pub fn simulate_customers<R: Rng + ?Sized>(
    rng: &mut R,
    params: &SimulationParams,
    n: usize,
    start_day: i32,
    days: u32,
) -> Result<Vec<SimulatedCustomer>, SimulationError> {
    params.validate()?;
    if days == 0 || i32::try_from(days).is_err() || start_day.checked_add_unsigned(days).is_none() {
        return Err(SimulationError {
            field: "days",
            reason: "must be > 0 and keep the window inside the i32 day range",
        });
    }
    let p = &params.process;
    let w = &params.weber;
    let distribution_error = |field| SimulationError {
        field,
        reason: "not a valid distribution parameter",
    };
    let rate_dist =
        Gamma::new(p.r, 1.0 / p.alpha).map_err(|_| distribution_error("process.alpha"))?;
    let dropout_dist = Beta::new(p.a, p.b).map_err(|_| distribution_error("process.b"))?;
    let scale_dist = Gamma::new(p.q, 1.0 / p.v).map_err(|_| distribution_error("process.v"))?;
    // The window is [start, end) in continuous days.
    let end = f64::from(days);
    let acquisition = end * p.acquisition_fraction;

    let mut out = Vec::with_capacity(n);
    for index in 0..n {
        let segment = pick_segment(rng, &w.segment_shares);
        let lambda = rate_dist.sample(rng).max(1e-12);
        let base_p: f64 = dropout_dist.sample(rng);
        let exponent = 1.0 + w.dropout_effect * sensitivity_weight(segment);
        let dropout = (1.0 - (1.0 - base_p).clamp(0.0, 1.0).powf(exponent)).clamp(0.0, 1.0);
        let nu = scale_dist.sample(rng).max(1e-12);
        let spend_dist =
            Gamma::new(p.p_spend, 1.0 / nu).map_err(|_| distribution_error("process.p_spend"))?;
        let gap = Exp::new(lambda).map_err(|_| distribution_error("process.r"))?;
        let amount = |rng: &mut R| {
            let z: f64 = spend_dist.sample(rng);
            ((z * 100.0).round() / 100.0).max(0.01)
        };

        let birth = rng.gen::<f64>() * acquisition;
        // Whole days from the start: floor of a value in [0, days), so within the window.
        let day_of = |t: f64| start_day.saturating_add(t.floor() as i32);
        let mut purchases = vec![SimulatedPurchase {
            day: day_of(birth),
            amount: amount(rng),
        }];
        let mut t = birth;
        let mut dropped = None;
        loop {
            t += gap.sample(rng);
            if t >= end {
                break;
            }
            purchases.push(SimulatedPurchase {
                day: day_of(t),
                amount: amount(rng),
            });
            if rng.gen_bool(dropout) {
                dropped = Some(t);
                break;
            }
        }
        // Reviews are written while the customer is active.
        let active_until = dropped.unwrap_or(end).min(end);
        let reviews = if rng.gen_bool(w.review_share) {
            let count = rng.gen_range(w.min_reviews..=w.max_reviews) as usize;
            let (lo, hi) = target_range(segment);
            let target = rng.gen_range(lo..hi);
            let values = sentiments(rng, count, target);
            let span_ms = ((active_until - birth).max(0.0) * MS_PER_DAY as f64) as i64;
            let start_ms = i64::from(start_day) * MS_PER_DAY + (birth * MS_PER_DAY as f64) as i64;
            let mut times: Vec<i64> = (0..count)
                .map(|_| start_ms + rng.gen_range(0..=span_ms.max(0)))
                .collect();
            times.sort_unstable();
            // Distinct, increasing times (a millisecond apart at worst).
            for i in 1..times.len() {
                if times[i] <= times[i - 1] {
                    times[i] = times[i - 1] + 1;
                }
            }
            times
                .into_iter()
                .zip(values)
                .map(|(time_ms, sentiment)| SimulatedReview { time_ms, sentiment })
                .collect()
        } else {
            Vec::new()
        };
        out.push(SimulatedCustomer {
            customer_id: format!("cust-{:06}", index + 1),
            segment,
            purchase_rate: lambda,
            dropout_probability: dropout,
            first_day: day_of(birth),
            dropped_out_after: dropped.map(day_of),
            purchases,
            reviews,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn run(seed: u64, params: &SimulationParams, n: usize) -> Vec<SimulatedCustomer> {
        let mut rng = StdRng::seed_from_u64(seed);
        simulate_customers(&mut rng, params, n, 20_000, 540).unwrap_or_default()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let params = SimulationParams::default();
        let a = run(42, &params, 300);
        assert_eq!(a.len(), 300);
        assert_eq!(a, run(42, &params, 300));
        assert_ne!(a, run(43, &params, 300));
    }

    #[test]
    fn histories_stay_in_the_window_and_are_valid() {
        for c in run(1, &SimulationParams::default(), 500) {
            assert!(!c.purchases.is_empty());
            assert_eq!(c.purchases[0].day, c.first_day);
            assert!(c.purchases.windows(2).all(|w| w[0].day <= w[1].day));
            assert!(c
                .purchases
                .iter()
                .all(|p| (20_000..20_540).contains(&p.day) && p.amount >= 0.01));
            assert!(c.reviews.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
            assert!(c
                .reviews
                .iter()
                .all(|r| (-1.0..=1.0).contains(&r.sentiment)));
            assert!((0.0..=1.0).contains(&c.dropout_probability));
        }
    }

    #[test]
    fn reviews_profile_into_the_simulated_segment_most_of_the_time() {
        let params = weber::WeberParams::default();
        let customers = run(5, &SimulationParams::default(), 2_000);
        let mut reviewed = 0;
        let mut agree = 0;
        for c in customers.iter().filter(|c| !c.reviews.is_empty()) {
            let profile = weber::profile(&c.interactions(), &params);
            assert!(profile.is_ok(), "{profile:?}");
            if let Ok(p) = profile {
                reviewed += 1;
                agree += usize::from(p.sensitivity_segment == c.segment);
            }
        }
        let share = agree as f64 / reviewed as f64;
        eprintln!("{agree} of {reviewed} reviewing customers profile into their segment");
        assert!(reviewed > 1_500, "{reviewed} reviewing customers");
        assert!(share >= 0.8, "only {share:.3} profile into their segment");
    }

    #[test]
    fn sensitivity_raises_dropout() {
        let customers = run(9, &SimulationParams::default(), 4_000);
        let mean = |seg| {
            let ps: Vec<f64> = customers
                .iter()
                .filter(|c| c.segment == seg)
                .map(|c| c.dropout_probability)
                .collect();
            ps.iter().sum::<f64>() / ps.len() as f64
        };
        let high = mean(SensitivitySegment::HighlySensitive);
        let none = mean(SensitivitySegment::Insensitive);
        assert!(high > 2.0 * none, "high {high:.3} vs insensitive {none:.3}");

        let mut plain = SimulationParams::default();
        plain.weber.dropout_effect = 0.0;
        plain.weber.review_share = 0.0;
        let plain = run(9, &plain, 200);
        assert!(plain.iter().all(|c| c.reviews.is_empty()));
    }

    #[test]
    fn bad_parameters_are_errors() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut params = SimulationParams::default();
        params.process.alpha = f64::NAN;
        assert_eq!(
            simulate_customers(&mut rng, &params, 1, 0, 10).map_err(|e| e.field),
            Err("process.alpha")
        );
        let params = SimulationParams::default();
        assert_eq!(
            simulate_customers(&mut rng, &params, 1, 0, 0).map_err(|e| e.field),
            Err("days")
        );
    }
}
