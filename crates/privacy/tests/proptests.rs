//! Invariants of the samplers, the calibration and the rationals.

use privacy::sample::{bernoulli_exp, discrete_gaussian, discrete_laplace};
use privacy::{Delta, Epsilon, Mechanism, Noise, PrivacyError, Rational};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn rational() -> impl Strategy<Value = Rational> {
    (any::<u64>(), 1..=u64::MAX).prop_map(|(n, d)| Rational::new(n, d).unwrap())
}

fn small_positive_rational() -> impl Strategy<Value = Rational> {
    (1..=1_000_000u64, 1..=1_000u64).prop_map(|(n, d)| Rational::new(n, d).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn bernoulli_exp_of_zero_is_always_true(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for _ in 0..20 {
            prop_assert!(bernoulli_exp(&mut rng, &Rational::zero()));
        }
    }

    #[test]
    fn laplace_scale_grows_as_epsilon_shrinks(
        sensitivity in 1..=1_000_000u64,
        a in 1..=1_000_000_000_000u64,
        b in 1..=1_000_000_000_000u64,
    ) {
        prop_assume!(a != b);
        let (small, large) = (a.min(b), a.max(b));
        let wide = Noise::laplace(sensitivity, Epsilon::from_nanos(small)).unwrap();
        let narrow = Noise::laplace(sensitivity, Epsilon::from_nanos(large)).unwrap();
        prop_assert!(wide.scale > narrow.scale);
    }

    #[test]
    fn gaussian_sigma_grows_as_epsilon_or_delta_shrinks(
        sensitivity in 1..=1_000u64,
        a in 10_000_000..=10_000_000_000u64,
        b in 10_000_000..=10_000_000_000u64,
        delta in 1_000..=1_000_000_000_000u64,
    ) {
        prop_assume!(a != b);
        let (small, large) = (a.min(b), a.max(b));
        let d = Delta::from_femtos(delta);
        let wide = Noise::gaussian(sensitivity, Epsilon::from_nanos(small), d).unwrap();
        let narrow = Noise::gaussian(sensitivity, Epsilon::from_nanos(large), d).unwrap();
        prop_assert!(wide.scale >= narrow.scale);
        let stricter = Noise::gaussian(sensitivity, Epsilon::from_nanos(large), Delta::from_femtos(delta / 2)).unwrap();
        prop_assert!(stricter.scale >= narrow.scale);
    }

    #[test]
    fn accuracy_shrinks_as_alpha_grows(
        scale in small_positive_rational(),
        gaussian in any::<bool>(),
        a in 1e-12..1.0f64,
        b in 1e-12..1.0f64,
    ) {
        let mechanism = if gaussian { Mechanism::DiscreteGaussian } else { Mechanism::DiscreteLaplace };
        let noise = Noise { mechanism, scale };
        let (small, large) = (a.min(b), a.max(b));
        let strict = noise.accuracy(small);
        let loose = noise.accuracy(large);
        prop_assert!(strict.is_finite() && loose.is_finite());
        prop_assert!(strict >= loose, "accuracy({small}) = {strict} < accuracy({large}) = {loose}");
    }

    #[test]
    fn release_saturates_instead_of_panicking(
        seed in any::<u64>(),
        true_value in prop_oneof![Just(i64::MAX), Just(i64::MIN), any::<i64>()],
        sensitivity in prop_oneof![Just(u64::MAX), 1..=u64::MAX],
        nanos in prop_oneof![Just(1u64), 1..=1_000_000_000_000u64],
        femtos in prop_oneof![Just(1u64), 1..=1_000_000_000_000u64],
        alpha in prop_oneof![Just(0.0), Just(f64::NAN), Just(2.0), any::<f64>()],
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let laplace = Noise::laplace(sensitivity, Epsilon::from_nanos(nanos)).unwrap();
        let _ = laplace.release(&mut rng, true_value);
        prop_assert!(!laplace.accuracy(alpha).is_nan());
        match Noise::gaussian(sensitivity, Epsilon::from_nanos(nanos), Delta::from_femtos(femtos)) {
            Ok(gaussian) => {
                let _ = gaussian.release(&mut rng, true_value);
                prop_assert!(!gaussian.accuracy(alpha).is_nan());
            }
            Err(e) => prop_assert_eq!(e, PrivacyError::Overflow),
        }
    }

    #[test]
    fn samples_of_small_scales_stay_small(seed in any::<u64>(), scale in small_positive_rational()) {
        // Scale ≤ 10⁶: a sample beyond 10⁸ has probability below e^(−100).
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        prop_assert!(discrete_laplace(&mut rng, &scale).unsigned_abs() < 100_000_000);
        prop_assert!(discrete_gaussian(&mut rng, &scale).unsigned_abs() < 100_000_000);
    }

    #[test]
    fn rational_arithmetic_is_exact(a in rational(), b in rational(), c in rational()) {
        prop_assert_eq!(a.add(&b), b.add(&a));
        prop_assert_eq!(a.add(&b).add(&c), a.add(&b.add(&c)));
        prop_assert_eq!(a.add(&b).checked_sub(&b), Some(a.clone()));
        prop_assert_eq!(a.abs_diff(&b), b.abs_diff(&a));
        prop_assert_eq!(a.mul(&b.add(&c)), a.mul(&b).add(&a.mul(&c)));
        if !b.is_zero() {
            prop_assert_eq!(a.mul(&b).checked_div(&b), Some(a.clone()));
        }
        prop_assert_eq!(a.checked_sub(&b).is_some(), a >= b);
        let text = a.to_string();
        prop_assert_eq!(text.parse::<Rational>().unwrap(), a.clone());
        // Lowest terms: equal values have equal parts.
        let doubled = Rational::new(a.numer() * 2u32, a.denom() * 2u32).unwrap();
        prop_assert_eq!(doubled.numer(), a.numer());
    }
}
