//! Special functions the models need: ln Γ, digamma, the Gauss hypergeometric function 2F1
//! and the standard normal quantile.
//!
//! ln Γ comes from `libm` (a port of musl's `lgamma`, accurate to about one ulp); digamma, 2F1
//! and the normal quantile are written here and tested against scipy values.

/// Natural logarithm of the gamma function for `x > 0` (the only domain the models use).
///
/// ```
/// let v = lifetime::special::ln_gamma(5.0);
/// assert!((v - 24f64.ln()).abs() < 1e-14);
/// ```
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// Digamma ψ(x) = d/dx ln Γ(x) for `x > 0`.
///
/// Shifts the argument above 10 with ψ(x) = ψ(x + 1) - 1/x, then uses the asymptotic series
/// ln x - 1/(2x) - Σ B₂ₖ/(2k x²ᵏ) up to x⁻¹⁴ (absolute error below 1e-15 there). Returns NaN
/// for `x <= 0` or NaN input; callers only pass positive parameters.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let mut acc = 0.0;
    let mut y = x;
    while y < 10.0 {
        acc -= 1.0 / y;
        y += 1.0;
    }
    let inv = 1.0 / y;
    let inv2 = inv * inv;
    // Bernoulli terms B2k / (2k): 1/12, -1/120, 1/252, -1/240, 1/132, -691/32760, 1/12.
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0
                                    - inv2
                                        * (1.0 / 132.0
                                            - inv2 * (691.0 / 32760.0 - inv2 / 12.0))))));
    acc + y.ln() - 0.5 * inv - series
}

/// Trigamma ψ₁(x) = d²/dx² ln Γ(x) for `x > 0`: recurrence ψ₁(x) = ψ₁(x + 1) + 1/x² up to
/// 10, then the asymptotic series 1/x + 1/(2x²) + Σ B₂ₖ/x²ᵏ⁺¹ (error below 1e-16 there).
pub fn trigamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let mut acc = 0.0;
    let mut y = x;
    while y < 10.0 {
        acc += 1.0 / (y * y);
        y += 1.0;
    }
    let inv = 1.0 / y;
    let inv2 = inv * inv;
    // B2k terms: 1/6, -1/30, 1/42, -1/30, 5/66, -691/2730, 7/6.
    let series = inv2
        * (1.0 / 6.0
            - inv2
                * (1.0 / 30.0
                    - inv2
                        * (1.0 / 42.0
                            - inv2
                                * (1.0 / 30.0
                                    - inv2
                                        * (5.0 / 66.0
                                            - inv2 * (691.0 / 2730.0 - inv2 * 7.0 / 6.0))))));
    acc + inv + 0.5 * inv2 + inv * series
}

/// Most terms [`hyp2f1`] sums before giving up.
///
/// With `z <= 0.999` and parameters of the size the models produce the series has converged
/// long before (the terms shrink roughly like `z^k`); the limit only bounds the work.
pub const HYP2F1_MAX_TERMS: usize = 100_000;

/// Why [`hyp2f1`] could not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Hyp2f1Error {
    /// `z` outside `[0, 1)` (or not finite): the series does not converge there and the models
    /// never need it.
    #[error("2F1 argument z = {0} is outside [0, 1)")]
    OutOfDomain(f64),
    /// `c` is zero or a negative integer (a pole), or a parameter is not finite.
    #[error("2F1 parameters are invalid")]
    InvalidParameters,
    /// The series did not reach relative precision 1e-16 within [`HYP2F1_MAX_TERMS`] terms.
    #[error("2F1 series did not converge within {HYP2F1_MAX_TERMS} terms")]
    NoConvergence,
}

/// The plain power series Σ (a)ₖ(b)ₖ/((c)ₖ k!) zᵏ, with `z` in `[0, 1)`.
///
/// Returns the (partial) sum and whether it converged. Stops when a term is below 1e-17 of the
/// running sum's magnitude twice in a row (once is not enough when a factor crosses zero).
fn series(a: f64, b: f64, c: f64, z: f64) -> (f64, bool) {
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut small = 0;
    for k in 0..HYP2F1_MAX_TERMS {
        let kf = k as f64;
        term *= (a + kf) * (b + kf) / ((c + kf) * (kf + 1.0)) * z;
        sum += term;
        if term == 0.0 {
            return (sum, true);
        }
        if term.abs() <= 1e-17 * sum.abs() {
            small += 1;
            if small >= 2 {
                return (sum, true);
            }
        } else {
            small = 0;
        }
        if !sum.is_finite() {
            return (sum, false);
        }
    }
    (sum, false)
}

/// Gauss hypergeometric function ₂F₁(a, b; c; z) for `z` in `[0, 1)`.
///
/// Sums the power series; when `c - a - b < 0` it sums Euler's transform
/// ₂F₁(a, b; c; z) = (1 - z)^(c-a-b) ₂F₁(c - a, c - b; c; z) instead, whose terms stay small
/// (the form lifetimes falls back to when the direct value overflows). `z >= 1` is an error,
/// not a transformation: the models only evaluate `z = t / (α + T + t) < 1`.
///
/// ```
/// // 2F1(1, 1; 2; z) = -ln(1 - z) / z
/// let z = 0.5;
/// let v = lifetime::special::hyp2f1(1.0, 1.0, 2.0, z).unwrap();
/// assert!((v - (-(1.0f64 - z).ln() / z)).abs() < 1e-14);
/// ```
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64, Hyp2f1Error> {
    if !(a.is_finite() && b.is_finite() && c.is_finite()) {
        return Err(Hyp2f1Error::InvalidParameters);
    }
    if c <= 0.0 && c == c.floor() {
        return Err(Hyp2f1Error::InvalidParameters);
    }
    if !(0.0..1.0).contains(&z) {
        return Err(Hyp2f1Error::OutOfDomain(z));
    }
    let (value, ok) = if c - a - b < 0.0 {
        let (s, ok) = series(c - a, c - b, c, z);
        (s * (1.0 - z).powf(c - a - b), ok)
    } else {
        series(a, b, c, z)
    };
    if ok && value.is_finite() {
        Ok(value)
    } else {
        Err(Hyp2f1Error::NoConvergence)
    }
}

/// The Euler-transformed series ₂F₁(c - a, c - b; c; z) without the (1 - z) power, for the
/// BG/NBD expectations that fold that power into their own exponent (see `bgnbd`).
///
/// Returns the partial sum even when the term limit is reached (the caller clamps the result).
pub(crate) fn euler_series(c_minus_a: f64, c_minus_b: f64, c: f64, z: f64) -> f64 {
    series(c_minus_a, c_minus_b, c, z).0
}

/// [`euler_series`] at several `zs` at once (written to `out`), sharing the coefficients:
/// CLV needs the same customer's series at twelve horizons. Each sum stops as in the single
/// series (two consecutive terms below 1e-17 of it); the loop ends when all have.
pub(crate) fn euler_series_many(
    c_minus_a: f64,
    c_minus_b: f64,
    c: f64,
    zs: &[f64],
    out: &mut [f64],
) {
    let n = zs.len().min(out.len());
    let mut powers = vec![1.0f64; n];
    let mut small = vec![0u8; n];
    for o in out.iter_mut().take(n) {
        *o = 1.0;
    }
    let mut coefficient = 1.0f64;
    for k in 0..HYP2F1_MAX_TERMS {
        let kf = k as f64;
        coefficient *= (c_minus_a + kf) * (c_minus_b + kf) / ((c + kf) * (kf + 1.0));
        let mut done = true;
        for j in 0..n {
            if small[j] >= 2 {
                continue;
            }
            powers[j] *= zs[j];
            let term = coefficient * powers[j];
            out[j] += term;
            if term == 0.0 || !out[j].is_finite() {
                small[j] = 2;
            } else if term.abs() <= 1e-17 * out[j].abs() {
                small[j] += 1;
            } else {
                small[j] = 0;
            }
            done &= small[j] >= 2;
        }
        if done {
            return;
        }
    }
}

/// Quantile of the standard normal distribution (Acklam's rational approximation, relative
/// error below 1.2e-9, ample for interval bounds). `p` is clamped into `[1e-15, 1 - 1e-15]`.
pub fn normal_quantile(p: f64) -> f64 {
    let p = if p.is_nan() {
        0.5
    } else {
        p.clamp(1e-15, 1.0 - 1e-15)
    };
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_recurrence_and_known_values() {
        // ψ(1) = -γ, ψ(1/2) = -γ - 2 ln 2
        let gamma = 0.577_215_664_901_532_9;
        assert!(
            (digamma(1.0) + gamma).abs() < 1e-14,
            "{}",
            digamma(1.0) + gamma
        );
        assert!((digamma(0.5) + gamma + 2.0 * 2f64.ln()).abs() < 1e-14);
        for &x in &[0.01, 0.3, 2.5, 7.0, 55.5] {
            assert!((digamma(x + 1.0) - digamma(x) - 1.0 / x).abs() < 1e-12);
        }
        assert!(digamma(0.0).is_nan());
    }

    #[test]
    fn trigamma_known_values() {
        // ψ₁(1) = π²/6, ψ₁(1/2) = π²/2
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        assert!(
            (trigamma(1.0) - pi2 / 6.0).abs() < 1e-14,
            "{}",
            trigamma(1.0) - pi2 / 6.0
        );
        assert!((trigamma(0.5) - pi2 / 2.0).abs() < 1e-13);
        for &x in &[0.01, 0.3, 2.5, 7.0, 55.5] {
            assert!(
                (trigamma(x) - trigamma(x + 1.0) - 1.0 / (x * x)).abs() < 1e-12 * (1.0 / (x * x))
            );
        }
    }

    #[test]
    fn hyp2f1_domain_errors() {
        assert_eq!(
            hyp2f1(1.0, 1.0, 2.0, 1.0),
            Err(Hyp2f1Error::OutOfDomain(1.0))
        );
        assert_eq!(
            hyp2f1(1.0, 1.0, -2.0, 0.5),
            Err(Hyp2f1Error::InvalidParameters)
        );
    }

    #[test]
    fn normal_quantile_known_values() {
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-8);
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.05) + 1.644_853_626_951_472_2).abs() < 1e-8);
    }
}
