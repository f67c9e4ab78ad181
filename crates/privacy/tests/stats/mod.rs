//! Goodness-of-fit statistics for the calibration tests: Pearson's χ² with its p-value (the
//! regularised upper incomplete gamma function) and the Kolmogorov–Smirnov distance with its
//! asymptotic p-value. Numerical Recipes (Press et al., 3rd ed., §6.1–6.2, §14.3) formulas.

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, nine coefficients; relative error
/// below 10⁻¹⁴ on the arguments used here).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Q(a, x) = Γ(a, x) / Γ(a), the regularised upper incomplete gamma function (a > 0, x ≥ 0):
/// the series for P = 1 − Q below x = a + 1, Lentz's continued fraction above.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    assert!(a > 0.0 && x >= 0.0, "gamma_q({a}, {x})");
    if x == 0.0 {
        return 1.0;
    }
    let log_prefix = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut n = a;
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - sum * log_prefix.exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        log_prefix.exp() * h
    }
}

/// P(χ²_df ≥ statistic), the p-value of a χ² statistic with `df` degrees of freedom.
pub fn chi_square_p_value(statistic: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, statistic / 2.0)
}

/// Asymptotic p-value of a Kolmogorov–Smirnov distance `d` over `n` samples:
/// Q_KS(√n·d) = 2 Σ (−1)^(k−1) exp(−2k²λ²). For a discrete distribution the test is
/// conservative (the true p-value is larger).
pub fn ks_p_value(d: f64, n: usize) -> f64 {
    let lambda = (n as f64).sqrt() * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let sign = if k as u64 % 2 == 1 { 1.0 } else { -1.0 };
        sum += sign * (-2.0 * k * k * lambda * lambda).exp();
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The result of fitting integer samples to a pmf.
#[derive(Debug)]
pub struct Fit {
    /// Pearson's χ².
    pub chi_square: f64,
    /// Degrees of freedom (bins − 1).
    pub df: usize,
    /// P(χ²_df ≥ chi_square).
    pub chi_square_p: f64,
    /// sup |F_empirical − F| over the integers.
    pub ks_distance: f64,
    /// Asymptotic KS p-value.
    pub ks_p: f64,
}

/// Fits symmetric integer samples to a symmetric pmf on ℤ, `pmf(|x|)`: one bin per integer
/// whose expected count is at least 5, the two tails pooled into the outermost bins.
pub fn fit_symmetric(samples: &[i64], pmf: impl Fn(u64) -> f64) -> Fit {
    let n = samples.len() as f64;
    // The central range [−m, m] where every bin expects at least 5.
    let mut m = 0u64;
    while n * pmf(m + 1) >= 5.0 {
        m += 1;
    }
    let m = m as i64;
    // Bin i (0..=2m) holds value i − m; values beyond ±m go into the outermost bins.
    let bins = (2 * m + 1) as usize;
    let mut observed = vec![0f64; bins];
    for &s in samples {
        let clamped = s.clamp(-m, m);
        observed[(clamped + m) as usize] += 1.0;
    }
    let central: f64 = (-m..=m).map(|x| pmf(x.unsigned_abs())).sum();
    let tail = ((1.0 - central) / 2.0).max(0.0);
    let mut expected: Vec<f64> = (-m..=m).map(|x| n * pmf(x.unsigned_abs())).collect();
    expected[0] += n * tail;
    expected[bins - 1] += n * tail;
    let chi_square: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    let df = bins - 1;

    // KS over the observed range.
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let lo = sorted[0];
    let hi = sorted[sorted.len() - 1];
    // F(lo − 1) = P(X ≤ lo − 1) = P(X ≥ 1 − lo) by symmetry.
    let tail_above = |k: i64| -> f64 {
        // P(X ≥ k) for k ≥ 1 = (1 − p(0))/2 − Σ_{1≤x<k} p(x).
        let mut t = (1.0 - pmf(0)) / 2.0;
        for x in 1..k {
            t -= pmf(x as u64);
        }
        t.max(0.0)
    };
    let mut cdf = if lo <= 0 {
        tail_above(1 - lo)
    } else {
        1.0 - tail_above(lo)
    };
    let mut idx = 0usize;
    let mut ks_distance = 0f64;
    for x in lo..=hi {
        cdf += pmf(x.unsigned_abs());
        while idx < sorted.len() && sorted[idx] <= x {
            idx += 1;
        }
        let empirical = idx as f64 / n;
        ks_distance = ks_distance.max((empirical - cdf).abs());
    }
    Fit {
        chi_square,
        df,
        chi_square_p: chi_square_p_value(chi_square, df),
        ks_distance,
        ks_p: ks_p_value(ks_distance, samples.len()),
    }
}
