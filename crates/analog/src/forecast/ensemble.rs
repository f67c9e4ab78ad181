//! Ensemble statistics and the CRPS.
//!
//! Quantiles interpolate linearly between order statistics (numpy's default, "type 7"): for
//! sorted members `x_0 ≤ … ≤ x_{n-1}`, `q(p) = x_⌊h⌋ + (h − ⌊h⌋)(x_⌊h⌋+1 − x_⌊h⌋)` with
//! `h = (n − 1) p`. The median is `q(0.5)`; p10 and p90 are `q(0.1)` and `q(0.9)`. The
//! spread is the sample standard deviation (divisor `n − 1`; 0 for one member).

/// Summary of one variable's ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnsembleStats {
    /// Arithmetic mean.
    pub mean: f64,
    /// `q(0.5)`.
    pub median: f64,
    /// `q(0.1)`.
    pub p10: f64,
    /// `q(0.9)`.
    pub p90: f64,
    /// Sample standard deviation (`n − 1`), 0 for one member.
    pub spread: f64,
}

/// Statistics of a non-empty ensemble (`None` when `members` is empty or holds a NaN).
///
/// ```
/// let s = analog::forecast::ensemble_stats(&[1.0, 2.0, 3.0, 4.0]).unwrap();
/// assert_eq!((s.mean, s.median), (2.5, 2.5));
/// assert!((s.p10 - 1.3).abs() < 1e-12 && (s.p90 - 3.7).abs() < 1e-12);
/// ```
pub fn ensemble_stats(members: &[f64]) -> Option<EnsembleStats> {
    if members.is_empty() || members.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut sorted = members.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    let spread = if sorted.len() > 1 {
        (sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Some(EnsembleStats {
        // The mean of finite values can round a hair outside [min, max]; keep it inside.
        mean: mean.clamp(sorted[0], sorted[sorted.len() - 1]),
        median: quantile_sorted(&sorted, 0.5),
        p10: quantile_sorted(&sorted, 0.1),
        p90: quantile_sorted(&sorted, 0.9),
        spread,
    })
}

/// `q(p)` of ascending, non-empty `sorted` (see the module docs), `p` in `[0, 1]`.
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    // The lerp in this form is monotone in `p` and exact at the order statistics.
    let (a, b) = (sorted[lo], sorted[hi]);
    if frac == 0.0 {
        a
    } else {
        (a + frac * (b - a)).clamp(a, b)
    }
}

/// CRPS of an ensemble against an observation, by the standard ensemble estimator
/// `E|X − y| − ½ E|X − X'|`, the expectations over members and over all ordered pairs of members
/// (the same as `properscoring.crps_ensemble`). Equals the integral of `(F(x) − 1{x ≥ y})²`
/// for the members' empirical CDF `F`. With one member it is `|x − y|`, the absolute error.
/// Computed in `O(n log n)` from the sorted members.
///
/// ```
/// use analog::forecast::crps_ensemble;
/// assert_eq!(crps_ensemble(&[2.0], 5.0), Some(3.0));
/// // E|X-y| = 1, E|X-X'| = 1: CRPS = 0.5.
/// assert_eq!(crps_ensemble(&[0.0, 2.0], 1.0), Some(0.5));
/// ```
pub fn crps_ensemble(members: &[f64], observation: f64) -> Option<f64> {
    if members.is_empty() || members.iter().any(|x| x.is_nan()) || observation.is_nan() {
        return None;
    }
    let mut sorted = members.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let abs_error = sorted.iter().map(|x| (x - observation).abs()).sum::<f64>() / n;
    // Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − n + 1) x_(i) for ascending x_(i), i from 0.
    let pairs: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * i as f64 - n + 1.0) * x)
        .sum::<f64>()
        * 2.0;
    Some((abs_error - 0.5 * pairs / (n * n)).max(0.0))
}
