//! Experiment statistics: two-sample tests, relative lift, sample-ratio-mismatch check,
//! sample-size planning and an always-valid sequential test (mSPRT).
//!
//! Conventions match `scipy.stats` defaults so results can be checked against it:
//! [`welch_t_test`] is `ttest_ind(equal_var=False)`, [`chi_square_2x2`] with `yates = true` is
//! `chi2_contingency` (which applies Yates' correction to 2x2 tables by default),
//! [`mann_whitney_u`] is `mannwhitneyu` with its default `method='auto'` (exact for small
//! samples without ties, else the tie-corrected normal approximation with continuity correction) and [`sample_ratio_mismatch`] is `chisquare`.
//!
//! ```
//! use flags::stats::{welch_t_test, Summary};
//! let control = Summary::from_values(&[1.0, 2.0, 3.0, 4.0]).unwrap();
//! let treatment = Summary::from_values(&[2.0, 3.0, 4.0, 5.0]).unwrap();
//! let test = welch_t_test(&treatment, &control, 0.95).unwrap();
//! assert!((test.difference - 1.0).abs() < 1e-12);
//! assert!(test.p_value > 0.05);
//! ```

pub mod dist;

use thiserror::Error;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// A sample is too small for the statistic (e.g. variance needs two observations).
    #[error("too few observations: {needed} needed, {got} given")]
    TooFewObservations {
        /// Minimum required.
        needed: u64,
        /// Number given.
        got: u64,
    },
    /// An input value is NaN or infinite.
    #[error("non-finite input value")]
    NonFinite,
    /// A parameter is outside its domain.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The statistic is undefined for this data (e.g. zero variance in both groups).
    #[error("degenerate data: {0}")]
    Degenerate(&'static str),
}

/// Summary statistics of one variant's observations of a metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Number of observations.
    pub n: u64,
    /// Sample mean.
    pub mean: f64,
    /// Unbiased sample variance (denominator n - 1).
    pub variance: f64,
}

impl Summary {
    /// Summarises raw observations (two-pass, for accuracy). Needs at least two finite values.
    pub fn from_values(values: &[f64]) -> Result<Self, StatsError> {
        if values.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::NonFinite);
        }
        let n = values.len() as u64;
        if n < 2 {
            return Err(StatsError::TooFewObservations { needed: 2, got: n });
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        Ok(Self {
            n,
            mean,
            variance: ss / (n - 1) as f64,
        })
    }

    /// Summarises a conversion metric: `conversions` successes out of `n` (Bernoulli data).
    pub fn from_conversions(conversions: u64, n: u64) -> Result<Self, StatsError> {
        if n < 2 {
            return Err(StatsError::TooFewObservations { needed: 2, got: n });
        }
        if conversions > n {
            return Err(StatsError::InvalidParameter("conversions exceed n"));
        }
        let p = conversions as f64 / n as f64;
        Ok(Self {
            n,
            mean: p,
            variance: p * (1.0 - p) * n as f64 / (n - 1) as f64,
        })
    }

    fn variance_of_mean(&self) -> f64 {
        self.variance / self.n as f64
    }
}

/// Streaming accumulator of a metric's observations (Welford's update, numerically stable),
/// for when raw values are not kept.
///
/// ```
/// use flags::stats::RunningSummary;
/// let mut running = RunningSummary::default();
/// for v in [1.0, 2.0, 3.0] {
///     running.push(v);
/// }
/// let summary = running.summary().unwrap();
/// assert_eq!(summary.n, 3);
/// assert!((summary.variance - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningSummary {
    n: u64,
    mean: f64,
    sum_squared_deviations: f64,
    non_finite_seen: bool,
}

impl RunningSummary {
    /// Adds one observation.
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            self.non_finite_seen = true;
            return;
        }
        self.n += 1;
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.sum_squared_deviations += delta * (value - self.mean);
    }

    /// The summary so far; needs two observations and no non-finite value pushed.
    pub fn summary(&self) -> Result<Summary, StatsError> {
        if self.non_finite_seen {
            return Err(StatsError::NonFinite);
        }
        if self.n < 2 {
            return Err(StatsError::TooFewObservations {
                needed: 2,
                got: self.n,
            });
        }
        Ok(Summary {
            n: self.n,
            mean: self.mean,
            variance: self.sum_squared_deviations / (self.n - 1) as f64,
        })
    }
}

/// Result of Welch's unequal-variance t-test of `treatment - control`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    /// t statistic.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Difference of means, treatment minus control.
    pub difference: f64,
    /// Lower bound of the confidence interval of the difference.
    pub ci_low: f64,
    /// Upper bound of the confidence interval of the difference.
    pub ci_high: f64,
}

fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter("confidence must be in (0, 1)"))
    }
}

/// Welch's t-test (two-sided) with a `confidence` interval for the difference of means.
pub fn welch_t_test(
    treatment: &Summary,
    control: &Summary,
    confidence: f64,
) -> Result<WelchTest, StatsError> {
    check_confidence(confidence)?;
    for s in [treatment, control] {
        if s.n < 2 {
            return Err(StatsError::TooFewObservations {
                needed: 2,
                got: s.n,
            });
        }
    }
    let vt = treatment.variance_of_mean();
    let vc = control.variance_of_mean();
    let se2 = vt + vc;
    if se2 <= 0.0 || !se2.is_finite() {
        return Err(StatsError::Degenerate("zero variance in both groups"));
    }
    let se = se2.sqrt();
    let difference = treatment.mean - control.mean;
    let t = difference / se;
    let df = se2 * se2 / (vt * vt / (treatment.n - 1) as f64 + vc * vc / (control.n - 1) as f64);
    let p_value = (2.0 * dist::t_sf(t.abs(), df)).min(1.0);
    let q = dist::t_ppf(0.5 + confidence / 2.0, df);
    Ok(WelchTest {
        t,
        df,
        p_value,
        difference,
        ci_low: difference - q * se,
        ci_high: difference + q * se,
    })
}

/// Relative lift `(treatment - control) / control` of the means, with a delta-method
/// normal confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelativeLift {
    /// Point estimate of the relative lift.
    pub lift: f64,
    /// Lower bound of the interval.
    pub ci_low: f64,
    /// Upper bound of the interval.
    pub ci_high: f64,
}

/// Relative lift with its delta-method interval:
/// `Var(T/C) ≈ Var(T)/C² + T² Var(C)/C⁴` with `Var` the variance of each mean.
pub fn relative_lift(
    treatment: &Summary,
    control: &Summary,
    confidence: f64,
) -> Result<RelativeLift, StatsError> {
    check_confidence(confidence)?;
    if control.mean == 0.0 || control.n == 0 || treatment.n == 0 {
        return Err(StatsError::Degenerate("control mean is zero"));
    }
    let c = control.mean;
    let t = treatment.mean;
    let lift = t / c - 1.0;
    let var = treatment.variance_of_mean() / (c * c)
        + t * t * control.variance_of_mean() / (c * c * c * c);
    let half = dist::normal_ppf(0.5 + confidence / 2.0) * var.sqrt();
    Ok(RelativeLift {
        lift,
        ci_low: lift - half,
        ci_high: lift + half,
    })
}

/// Result of a chi-square test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChiSquareTest {
    /// Chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: f64,
    /// p-value (upper tail).
    pub p_value: f64,
}

/// Chi-square test of independence on the 2x2 table
/// `[[treatment conversions, non-conversions], [control conversions, non-conversions]]`.
/// With `yates = true` each |observed - expected| is reduced by 0.5 (never past zero), as
/// scipy's `chi2_contingency` does by default for one degree of freedom.
pub fn chi_square_2x2(
    treatment_conversions: u64,
    treatment_n: u64,
    control_conversions: u64,
    control_n: u64,
    yates: bool,
) -> Result<ChiSquareTest, StatsError> {
    if treatment_conversions > treatment_n || control_conversions > control_n {
        return Err(StatsError::InvalidParameter("conversions exceed n"));
    }
    let observed = [
        [
            treatment_conversions as f64,
            (treatment_n - treatment_conversions) as f64,
        ],
        [
            control_conversions as f64,
            (control_n - control_conversions) as f64,
        ],
    ];
    let total = (treatment_n + control_n) as f64;
    let row = [treatment_n as f64, control_n as f64];
    let converted = (treatment_conversions + control_conversions) as f64;
    let col = [converted, total - converted];
    let mut statistic = 0.0;
    for (obs_row, r) in observed.iter().zip(row) {
        for (o, c) in obs_row.iter().zip(col) {
            let e = r * c / total;
            if e <= 0.0 {
                return Err(StatsError::Degenerate("an expected cell count is zero"));
            }
            let mut diff = (o - e).abs();
            if yates {
                diff = (diff - 0.5).max(0.0);
            }
            statistic += diff * diff / e;
        }
    }
    Ok(ChiSquareTest {
        statistic,
        df: 1.0,
        p_value: dist::chi2_sf(statistic, 1.0),
    })
}

/// Chi-square goodness-of-fit of observed assignment counts against planned allocation
/// weights (any positive scale), as `scipy.stats.chisquare(observed, f_exp)`.
pub fn chi_square_goodness_of_fit(
    observed: &[u64],
    weights: &[f64],
) -> Result<ChiSquareTest, StatsError> {
    if observed.len() != weights.len() || observed.len() < 2 {
        return Err(StatsError::InvalidParameter(
            "need one weight per observed count, and at least two",
        ));
    }
    if weights.iter().any(|w| !w.is_finite() || *w <= 0.0) {
        return Err(StatsError::InvalidParameter("weights must be positive"));
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if total <= 0.0 {
        return Err(StatsError::TooFewObservations { needed: 1, got: 0 });
    }
    let weight_sum: f64 = weights.iter().sum();
    let statistic = observed
        .iter()
        .zip(weights)
        .map(|(&o, w)| {
            let e = total * w / weight_sum;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let df = (observed.len() - 1) as f64;
    Ok(ChiSquareTest {
        statistic,
        df,
        p_value: dist::chi2_sf(statistic, df),
    })
}

/// p-value below which a sample ratio mismatch is reported.
pub const SRM_ALERT_P: f64 = 0.001;

/// Sample-ratio-mismatch check: the goodness-of-fit test and whether it alerts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SrmCheck {
    /// The goodness-of-fit test.
    pub test: ChiSquareTest,
    /// True when `p < SRM_ALERT_P`: assignment does not follow the planned allocation.
    pub mismatch: bool,
}

/// Checks observed per-variant user counts against the planned allocation weights.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<SrmCheck, StatsError> {
    let test = chi_square_goodness_of_fit(observed, weights)?;
    Ok(SrmCheck {
        test,
        mismatch: test.p_value < SRM_ALERT_P,
    })
}

/// Result of the Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the first sample (scipy's `statistic`).
    pub u: f64,
    /// Standardised statistic (with continuity correction).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Exact or normal approximation.
    pub method: MannWhitneyMethod,
}

/// Largest number of equally likely rank arrangements for which the exact distribution is
/// computed: below 2^53 every count is an exact integer in f64.
const EXACT_ARRANGEMENTS_LIMIT: f64 = 9.0e15;

/// Counts of U = 0..=m·n over all arrangements of samples of sizes `m` and `n` without ties:
/// the coefficients of the Gaussian binomial `∏ᵢ₌₁..ₘ (1 - q^(n+i)) / (1 - q^i)`.
fn exact_u_counts(m: usize, n: usize) -> Vec<f64> {
    let mut counts = vec![0.0; m * n + 1];
    if let Some(first) = counts.first_mut() {
        *first = 1.0;
    }
    for i in 1..=m {
        let shift = n + i;
        for k in (shift..counts.len()).rev() {
            let lower = counts.get(k - shift).copied().unwrap_or(0.0);
            if let Some(c) = counts.get_mut(k) {
                *c -= lower;
            }
        }
        // Division by (1 - q^i) is exact: the quotient is the next Gaussian binomial.
        for k in i..counts.len() {
            let lower = counts.get(k - i).copied().unwrap_or(0.0);
            if let Some(c) = counts.get_mut(k) {
                *c += lower;
            }
        }
    }
    counts
}

fn arrangements(m: usize, n: usize) -> f64 {
    let small = m.min(n);
    (1..=small).fold(1.0, |acc, i| acc * (m + n + 1 - i) as f64 / i as f64)
}

/// How the Mann-Whitney p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MannWhitneyMethod {
    /// Exact distribution of U (no ties, a sample of at most 8).
    Exact,
    /// Normal approximation with tie and continuity correction.
    Asymptotic,
}

/// Mann-Whitney U test, two-sided, choosing the method as scipy's default `method='auto'`:
/// the exact distribution when there are no ties and either sample has at most 8 values,
/// otherwise the normal approximation with tie correction and continuity correction
/// (`method='asymptotic'`). Deviation from scipy: when the exact distribution would need more
/// than ~9e15 arrangements (a sample of ≤ 8 against a very large one), the normal
/// approximation is used.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Result<MannWhitney, StatsError> {
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    if x.is_empty() || y.is_empty() {
        return Err(StatsError::TooFewObservations { needed: 1, got: 0 });
    }
    let n1 = x.len() as f64;
    let n2 = y.len() as f64;
    let n = n1 + n2;
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let value = pooled.get(start).map_or(0.0, |p| p.0);
        let (count, count_x) = pooled
            .iter()
            .skip(start)
            .take_while(|p| p.0 == value)
            .fold((0usize, 0usize), |(all, from_x), p| {
                (all + 1, from_x + usize::from(p.1))
            });
        // Ranks start + 1 ..= start + count share their average.
        let average_rank = start as f64 + (count as f64 + 1.0) / 2.0;
        rank_sum_x += average_rank * count_x as f64;
        let t = count as f64;
        tie_term += t * t * t - t;
        start += count.max(1);
    }
    let u1 = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let mu = n1 * n2 / 2.0;
    let sigma2 = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if sigma2 <= 0.0 {
        return Err(StatsError::Degenerate("all values are tied"));
    }
    let u = u1.max(u2);
    let z = (u - mu - 0.5) / sigma2.sqrt();
    let (small, large) = (x.len().min(y.len()), x.len().max(y.len()));
    let exact =
        tie_term == 0.0 && small <= 8 && arrangements(small, large) < EXACT_ARRANGEMENTS_LIMIT;
    if exact {
        let counts = exact_u_counts(small, large);
        let total: f64 = counts.iter().sum();
        // U is an integer without ties; P(U' >= u) by symmetry-free direct summation.
        let at_least: f64 = counts.iter().skip(u.round() as usize).sum();
        return Ok(MannWhitney {
            u: u1,
            z,
            p_value: (2.0 * at_least / total).min(1.0),
            method: MannWhitneyMethod::Exact,
        });
    }
    let p_value = (2.0 * dist::normal_sf(z)).min(1.0);
    Ok(MannWhitney {
        u: u1,
        z,
        p_value,
        method: MannWhitneyMethod::Asymptotic,
    })
}

/// A planned sample size per variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSize {
    /// The unrounded solution of the formula.
    pub exact: f64,
    /// `exact` rounded up: users needed in each variant.
    pub per_variant: u64,
}

fn check_alpha_power(alpha: f64, power: f64) -> Result<(), StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidParameter("alpha must be in (0, 1)"));
    }
    if !(power > 0.0 && power < 1.0) {
        return Err(StatsError::InvalidParameter("power must be in (0, 1)"));
    }
    Ok(())
}

/// Solves `power(n) = Φ(|δ|/se(n) - z) + Φ(-|δ|/se(n) - z)` for n, with `se(n)² = variance_sum / n`
/// and `z = z₁₋α/₂`: the exact two-sided z-test power, as statsmodels' `NormalIndPower` solves it.
/// The closed formula `(z + z_power)² variance_sum / δ²` ignores the far tail and so bounds n
/// from above; bisection below it converges to the exact root.
fn sample_size(variance_sum: f64, effect: f64, alpha: f64, power: f64) -> SampleSize {
    let z_alpha = dist::normal_ppf(1.0 - alpha / 2.0);
    let z = z_alpha + dist::normal_ppf(power);
    let effect = effect.abs();
    let closed = z * z * variance_sum / (effect * effect);
    let power_at = |n: f64| {
        let shift = effect / (variance_sum / n).sqrt();
        dist::normal_sf(z_alpha - shift) + dist::normal_cdf(-z_alpha - shift)
    };
    let mut lo = 0.0;
    let mut hi = closed;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if power_at(mid) < power {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    let exact = 0.5 * (lo + hi);
    SampleSize {
        exact,
        per_variant: exact.ceil() as u64,
    }
}

/// Users per variant to detect an absolute change `mde` of a conversion rate from `baseline`
/// (two-sided z-test at `alpha`, with `power`), unpooled variance
/// `p₁(1-p₁) + p₂(1-p₂)` with `p₂ = baseline + mde`; approximately
/// `n = (z₁₋α/₂ + z_power)² (p₁(1-p₁) + p₂(1-p₂)) / mde²` (the exact root also counts the far tail).
pub fn sample_size_proportions(
    baseline: f64,
    mde: f64,
    alpha: f64,
    power: f64,
) -> Result<SampleSize, StatsError> {
    check_alpha_power(alpha, power)?;
    let p2 = baseline + mde;
    if !(baseline > 0.0 && baseline < 1.0 && p2 > 0.0 && p2 < 1.0) || mde == 0.0 {
        return Err(StatsError::InvalidParameter(
            "baseline and baseline + mde must be in (0, 1), mde non-zero",
        ));
    }
    Ok(sample_size(
        baseline * (1.0 - baseline) + p2 * (1.0 - p2),
        mde,
        alpha,
        power,
    ))
}

/// Users per variant to detect an absolute change `mde` of a mean whose per-user standard
/// deviation is `std_dev` in both variants (two-sided z-test); approximately
/// `n = 2 (z₁₋α/₂ + z_power)² σ² / mde²`, solved exactly as statsmodels' `NormalIndPower` does.
pub fn sample_size_means(
    std_dev: f64,
    mde: f64,
    alpha: f64,
    power: f64,
) -> Result<SampleSize, StatsError> {
    check_alpha_power(alpha, power)?;
    if !(std_dev > 0.0 && std_dev.is_finite()) || mde == 0.0 || !mde.is_finite() {
        return Err(StatsError::InvalidParameter(
            "std_dev must be positive, mde non-zero",
        ));
    }
    Ok(sample_size(2.0 * std_dev * std_dev, mde, alpha, power))
}

/// Mixture sequential probability ratio test (mSPRT, Johari et al. 2017) for the difference of
/// means, with a normal mixing distribution `N(0, tau²)` over the true difference θ.
///
/// With `θ̂` the observed difference and `V` its variance (sum of each variant's
/// `variance / n`), the mixture likelihood ratio against θ = 0 is
/// `Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))`.
/// Under the null, `Λ` is a martingale, so by Ville's inequality `P(sup Λ ≥ 1/α) ≤ α`: the
/// running p-value `min(1, 1/max Λ)` is valid at every look, however often one looks.
/// `tau²` should be on the scale of plausible effects (e.g. the MDE squared).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialTest {
    /// Variance τ² of the normal mixing distribution.
    pub tau_squared: f64,
    /// The always-valid p-value so far (non-increasing over looks).
    pub p_value: f64,
}

impl SequentialTest {
    /// A fresh test with mixing variance `tau_squared` (> 0).
    pub fn new(tau_squared: f64) -> Result<Self, StatsError> {
        if !(tau_squared > 0.0 && tau_squared.is_finite()) {
            return Err(StatsError::InvalidParameter("tau_squared must be positive"));
        }
        Ok(Self {
            tau_squared,
            p_value: 1.0,
        })
    }

    /// The mixture likelihood ratio Λ for the current summaries.
    pub fn likelihood_ratio(
        &self,
        treatment: &Summary,
        control: &Summary,
    ) -> Result<f64, StatsError> {
        if treatment.n == 0 || control.n == 0 {
            return Err(StatsError::TooFewObservations { needed: 1, got: 0 });
        }
        let v = treatment.variance_of_mean() + control.variance_of_mean();
        if v <= 0.0 || !v.is_finite() {
            return Err(StatsError::Degenerate("zero variance in both groups"));
        }
        let tau2 = self.tau_squared;
        let theta = treatment.mean - control.mean;
        Ok((v / (v + tau2)).sqrt() * (tau2 * theta * theta / (2.0 * v * (v + tau2))).exp())
    }

    /// Records one look at the data and returns the updated always-valid p-value.
    pub fn look(&mut self, treatment: &Summary, control: &Summary) -> Result<f64, StatsError> {
        let lr = self.likelihood_ratio(treatment, control)?;
        if lr > 0.0 {
            self.p_value = self.p_value.min(1.0 / lr);
        }
        Ok(self.p_value)
    }

    /// True when the test may stop and reject at level `alpha`.
    pub fn rejects(&self, alpha: f64) -> bool {
        self.p_value <= alpha
    }
}

/// Holm's step-down correction of `p` for multiple comparisons (controls the family-wise error
/// rate at alpha for any dependence between the tests), as
/// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]` computes it: sorted
/// ascending, the i-th smallest (from 0) is multiplied by `m - i`, a running maximum keeps the
/// adjusted values monotone in that order, and values are capped at 1. The answer is in the
/// order of `p`. A NaN p-value (a test that could not be computed) counts as 1.
///
/// ```
/// // Sorted: 0.0625 × 3, 0.125 × 2, 0.25 × 1, then the running maximum.
/// let adjusted = flags::stats::holm(&[0.0625, 0.25, 0.125]);
/// assert_eq!(adjusted, vec![0.1875, 0.25, 0.25]);
/// ```
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let clean = |x: f64| if x.is_nan() { 1.0 } else { x };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (p.get(a).copied(), p.get(b).copied());
        clean(pa.unwrap_or(1.0)).total_cmp(&clean(pb.unwrap_or(1.0)))
    });
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        let raw = clean(p.get(i).copied().unwrap_or(1.0)) * (m - rank) as f64;
        running = running.max(raw);
        if let Some(slot) = adjusted.get_mut(i) {
            *slot = running.min(1.0);
        }
    }
    adjusted
}
