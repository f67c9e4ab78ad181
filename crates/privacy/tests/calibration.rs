//! Calibration acceptance: released values follow the distribution the privacy proof assumes.
//!
//! For each mechanism, 20,000 releases of a count of 1,000 with a seeded ChaCha20 generator;
//! the errors (released − true) are fitted to the exact pmf of the calibrated noise:
//! Pearson's χ² (one bin per integer expecting ≥ 5, tails pooled) must have p > 0.01, and the
//! Kolmogorov–Smirnov distance to the exact CDF too. A negative control checks that the same
//! test rejects noise whose scale is 10% off, so a passing run means something.
//!
//! Run `cargo test -p privacy --test calibration -- --nocapture` to print the statistics.

mod stats;

use privacy::{Delta, Epsilon, Mechanism, Noise, Rational};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stats::{chi_square_p_value, fit_symmetric, gamma_q, ks_p_value, Fit};

const RELEASES: usize = 20_000;
const TRUE_COUNT: i64 = 1_000;

/// The exact pmf at |x| of the noise (in `f64`, for the expected counts).
fn pmf(noise: &Noise) -> impl Fn(u64) -> f64 {
    let scale = noise.scale.to_f64();
    let mechanism = noise.mechanism;
    // Gaussian normalising constant: Σ exp(−x²/2σ²) over ℤ.
    let weight = move |x: u64| (-((x as f64) / scale).powi(2) / 2.0).exp();
    let norm = weight(0)
        + (1..)
            .map(weight)
            .take_while(|w| *w > 0.0)
            .map(|w| 2.0 * w)
            .sum::<f64>();
    move |x: u64| match mechanism {
        Mechanism::DiscreteLaplace => {
            let r = (-1.0 / scale).exp();
            (1.0 - r) / (1.0 + r) * (-(x as f64) / scale).exp()
        }
        Mechanism::DiscreteGaussian => weight(x) / norm,
    }
}

fn errors(noise: &Noise, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..RELEASES)
        .map(|_| noise.release(&mut rng, TRUE_COUNT) - TRUE_COUNT)
        .collect()
}

fn fit(label: &str, sampled: &Noise, expected: &Noise, seed: u64) -> Fit {
    let errs = errors(sampled, seed);
    let fit = fit_symmetric(&errs, pmf(expected));
    let mean = errs.iter().sum::<i64>() as f64 / errs.len() as f64;
    println!(
        "{label}: scale {} ({:.6}), mean error {mean:.3}, χ² = {:.2} on {} df, p = {:.4}; \
         KS D = {:.5}, p = {:.4}",
        expected.scale,
        expected.scale.to_f64(),
        fit.chi_square,
        fit.df,
        fit.chi_square_p,
        fit.ks_distance,
        fit.ks_p
    );
    fit
}

fn accept(label: &str, noise: &Noise, seed: u64) {
    let f = fit(label, noise, noise, seed);
    assert!(f.df >= 5, "{label}: too few bins ({})", f.df);
    assert!(f.chi_square_p > 0.01, "{label}: χ² p = {}", f.chi_square_p);
    assert!(f.ks_p > 0.01, "{label}: KS p = {}", f.ks_p);
}

fn eps(x: f64) -> Epsilon {
    Epsilon::from_f64(x).unwrap()
}

#[test]
fn discrete_laplace_epsilon_0_1_fits_its_pmf() {
    accept("laplace Δ1 ε0.1", &Noise::laplace(1, eps(0.1)).unwrap(), 11);
}

#[test]
fn discrete_laplace_epsilon_1_fits_its_pmf() {
    accept("laplace Δ1 ε1.0", &Noise::laplace(1, eps(1.0)).unwrap(), 12);
}

#[test]
fn discrete_gaussian_sensitivity_1_fits_its_pmf() {
    let d = Delta::from_f64(1e-6).unwrap();
    accept(
        "gaussian Δ1 ε0.5 δ1e-6",
        &Noise::gaussian(1, eps(0.5), d).unwrap(),
        13,
    );
}

#[test]
fn discrete_gaussian_sensitivity_5_fits_its_pmf() {
    let d = Delta::from_f64(1e-6).unwrap();
    accept(
        "gaussian Δ5 ε0.5 δ1e-6",
        &Noise::gaussian(5, eps(0.5), d).unwrap(),
        14,
    );
}

/// The test has power: noise 10% wider than the pmf it is checked against is rejected.
#[test]
fn a_scale_ten_percent_off_is_rejected() {
    let nominal = Noise::laplace(1, eps(0.1)).unwrap();
    let wider = Noise {
        scale: Rational::from_integer(11u32),
        ..nominal.clone()
    };
    let f = fit(
        "control: laplace scale 11 vs pmf of 10",
        &wider,
        &nominal,
        15,
    );
    assert!(f.chi_square_p < 0.01, "χ² p = {}", f.chi_square_p);
    assert!(f.ks_p < 0.01, "KS p = {}", f.ks_p);

    let d = Delta::from_f64(1e-6).unwrap();
    let nominal = Noise::gaussian(1, eps(0.5), d).unwrap();
    let wider = Noise {
        scale: nominal.scale.mul(&Rational::new(11u32, 10u32).unwrap()),
        ..nominal.clone()
    };
    let f = fit("control: gaussian σ·1.1 vs pmf of σ", &wider, &nominal, 16);
    assert!(f.chi_square_p < 0.01, "χ² p = {}", f.chi_square_p);
    assert!(f.ks_p < 0.01, "KS p = {}", f.ks_p);
}

#[test]
fn p_values_match_known_quantiles() {
    // χ² 95% quantiles: 3.841459 (1 df), 18.307038 (10 df); 99%: 37.566235 (20 df).
    assert!((chi_square_p_value(3.841_458_820_694_124, 1) - 0.05).abs() < 1e-9);
    assert!((chi_square_p_value(18.307_038_053_275_146, 10) - 0.05).abs() < 1e-9);
    assert!((chi_square_p_value(37.566_234_841_161_2, 20) - 0.01).abs() < 1e-9);
    assert_eq!(chi_square_p_value(0.0, 3), 1.0);
    assert!(chi_square_p_value(500.0, 10) < 1e-90);
    // Q(1, x) = e^(−x).
    assert!((gamma_q(1.0, 2.5) - (-2.5f64).exp()).abs() < 1e-14);
    // Kolmogorov: P(K > 1.628) ≈ 0.01, P(K > 1.358) ≈ 0.05.
    assert!((ks_p_value(1.627_6 / 100.0, 10_000) - 0.01).abs() < 2e-4);
    assert!((ks_p_value(1.358_1 / 100.0, 10_000) - 0.05).abs() < 2e-4);
}
