//! Calibration parity with OpenDP.
//!
//! `tests/fixtures/opendp_scales.json` was computed by OpenDP itself (`oracle/opendp_scales.py`,
//! version pinned in `oracle/requirements.txt`): for each (sensitivity, ε[, δ]) the noise scale
//! its `binary_search_param` picks and the accuracy at α = 0.05. This test checks that
//! [`Noise::laplace`], [`Noise::gaussian`] and [`Noise::accuracy`] agree with it.
//!
//! Tolerances, and why:
//! - Laplace scale: ours is exactly Δ/ε; OpenDP's is the float its bisection stops at, with its
//!   privacy map rounded outwards, so a few ulps above. Relative 10⁻⁹.
//! - Gaussian σ: ours is the smallest multiple of 10⁻⁶ whose δ is within budget, so it lies in
//!   [σ_opendp, σ_opendp + 10⁻⁶], widened by a relative 10⁻⁹ either side for the float
//!   arithmetic of the conversion (OpenDP rounds outwards; we nudge every step one ulp up).
//! - Accuracy at OpenDP's scale: the same formula on the same float, so relative 10⁻¹² for the
//!   Laplace and equality for the Gaussian (an integer).
//! - Accuracy at our own scale: Laplace relative 10⁻⁶ (the scales differ by ≤ 10⁻⁹ relative);
//!   Gaussian equal, or one more (our σ can be up to 10⁻⁶ larger, which can move the integer
//!   half-width up by one at a boundary, never down).
//!
//! Run: `cargo test -p privacy --test opendp_parity -- --nocapture` (prints the largest gaps).

use num_bigint::BigUint;
use privacy::{Delta, Epsilon, Mechanism, Noise, Rational};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    opendp_version: String,
    alpha: f64,
    laplace: Vec<LaplaceCase>,
    gaussian: Vec<GaussianCase>,
}

#[derive(Deserialize)]
struct LaplaceCase {
    sensitivity: u64,
    epsilon: f64,
    scale: f64,
    accuracy_95: f64,
}

#[derive(Deserialize)]
struct GaussianCase {
    sensitivity: u64,
    epsilon: f64,
    delta: f64,
    scale: f64,
    accuracy_95: f64,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/opendp_scales.json");
    serde_json::from_str(text).expect("the committed fixture parses")
}

/// The exact value of a finite non-negative `f64` (a dyadic fraction).
fn exact(x: f64) -> Rational {
    assert!(x.is_finite() && x >= 0.0);
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exp2) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), exponent - 1075)
    };
    let m = BigUint::from(mantissa);
    let value = if exp2 >= 0 {
        Rational::from_integer(m << exp2 as usize)
    } else {
        Rational::new(m, BigUint::from(1u32) << (-exp2) as usize).unwrap()
    };
    assert_eq!(value.to_f64(), x);
    value
}

fn relative_gap(ours: f64, theirs: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn fixture_covers_the_grid() {
    let f = fixture();
    println!("OpenDP {} fixture, alpha {}", f.opendp_version, f.alpha);
    assert_eq!(f.alpha, 0.05);
    assert_eq!(f.laplace.len(), 30);
    assert_eq!(f.gaussian.len(), 90);
}

#[test]
fn laplace_scale_and_accuracy_match_opendp() {
    let f = fixture();
    let mut worst_scale = 0f64;
    let mut worst_accuracy = 0f64;
    for case in &f.laplace {
        let eps = Epsilon::from_f64(case.epsilon).unwrap();
        let noise = Noise::laplace(case.sensitivity, eps).unwrap();
        let ours = noise.scale.to_f64();
        let gap = relative_gap(ours, case.scale);
        worst_scale = worst_scale.max(gap);
        assert!(
            gap <= 1e-9,
            "Δ {} ε {}: scale {ours} vs OpenDP {}",
            case.sensitivity,
            case.epsilon,
            case.scale
        );

        let at_theirs = Noise {
            mechanism: Mechanism::DiscreteLaplace,
            scale: exact(case.scale),
        };
        let gap = relative_gap(at_theirs.accuracy(f.alpha), case.accuracy_95);
        worst_accuracy = worst_accuracy.max(gap);
        assert!(
            gap <= 1e-12,
            "Δ {} ε {}: accuracy gap {gap}",
            case.sensitivity,
            case.epsilon
        );
        let gap = relative_gap(noise.accuracy(f.alpha), case.accuracy_95);
        assert!(
            gap <= 1e-6,
            "Δ {} ε {}: own-scale accuracy gap {gap}",
            case.sensitivity,
            case.epsilon
        );
    }
    println!(
        "laplace: {} cases, largest relative scale gap {worst_scale:.3e}, accuracy gap {worst_accuracy:.3e}",
        f.laplace.len()
    );
}

#[test]
fn gaussian_sigma_and_accuracy_match_opendp() {
    let f = fixture();
    let mut worst_above = 0f64;
    let mut worst_below = 0f64;
    let mut accuracy_one_more = 0;
    for case in &f.gaussian {
        let eps = Epsilon::from_f64(case.epsilon).unwrap();
        let delta = Delta::from_f64(case.delta).unwrap();
        let noise = Noise::gaussian(case.sensitivity, eps, delta).unwrap();
        let ours = noise.scale.to_f64();
        let theirs = case.scale;
        let slack = theirs * 1e-9;
        let label = format!(
            "Δ {} ε {} δ {:e}: σ {ours} vs OpenDP {theirs}",
            case.sensitivity, case.epsilon, case.delta
        );
        assert!(ours >= theirs - slack, "{label}: below OpenDP's σ");
        assert!(
            ours <= theirs + 1e-6 + slack,
            "{label}: more than one grid step above"
        );
        worst_above = worst_above.max(ours - theirs);
        worst_below = worst_below.max(theirs - ours);

        let at_theirs = Noise {
            mechanism: Mechanism::DiscreteGaussian,
            scale: exact(theirs),
        };
        assert_eq!(
            at_theirs.accuracy(f.alpha),
            case.accuracy_95,
            "{label}: accuracy"
        );
        let own = noise.accuracy(f.alpha);
        assert!(
            own == case.accuracy_95 || own == case.accuracy_95 + 1.0,
            "{label}: own-scale accuracy {own} vs {}",
            case.accuracy_95
        );
        if own != case.accuracy_95 {
            accuracy_one_more += 1;
        }
    }
    println!(
        "gaussian: {} cases, σ at most {worst_above:.3e} above and {worst_below:.3e} below OpenDP's; \
         accuracy one more than OpenDP's in {accuracy_one_more} cases",
        f.gaussian.len()
    );
}
