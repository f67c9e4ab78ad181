//! Distribution functions and Mann-Whitney U against closed forms and brute-force oracles.

use flags::stats::{dist, mann_whitney_u, RunningSummary, Summary};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Even degrees of freedom: the chi-square survival is a finite Poisson sum.
    #[test]
    fn chi2_even_df_matches_poisson_sum(x in 0.0f64..80.0, half_df in 1u32..15) {
        let mut term = 1.0;
        let mut sum = 0.0;
        for j in 0..half_df {
            if j > 0 {
                term *= x / 2.0 / f64::from(j);
            }
            sum += term;
        }
        let expected = (-x / 2.0).exp() * sum;
        let ours = dist::chi2_sf(x, f64::from(2 * half_df));
        prop_assert!((ours - expected).abs() <= 1e-12 * expected.max(1e-300) + 1e-15, "{ours} vs {expected}");
    }

    /// t with 1 and 2 degrees of freedom has closed forms (Cauchy; 2 df).
    #[test]
    fn t_small_df_matches_closed_forms(t in -50.0f64..50.0) {
        let cauchy = 0.5 - t.atan() / std::f64::consts::PI;
        prop_assert!((dist::t_sf(t, 1.0) - cauchy).abs() < 1e-12);
        let two = 0.5 - t / (2.0 * (2.0 + t * t).sqrt());
        prop_assert!((dist::t_sf(t, 2.0) - two).abs() < 1e-12);
    }

    #[test]
    fn quantiles_invert_cdfs(p in 1e-6f64..(1.0 - 1e-6), df in 0.5f64..500.0) {
        let z = dist::normal_ppf(p);
        prop_assert!((dist::normal_cdf(z) - p).abs() < 1e-12);
        let t = dist::t_ppf(p, df);
        prop_assert!((1.0 - dist::t_sf(t, df) - p).abs() < 1e-10);
    }

    /// U counts pairs (x > y) plus half the ties.
    #[test]
    fn mann_whitney_u_matches_pair_count(
        x in prop::collection::vec(-5i32..5, 1..30),
        y in prop::collection::vec(-5i32..5, 1..30),
    ) {
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let ys: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        let mut pairs = 0.0;
        for a in &xs {
            for b in &ys {
                pairs += if a > b { 1.0 } else if a == b { 0.5 } else { 0.0 };
            }
        }
        match mann_whitney_u(&xs, &ys) {
            Ok(r) => {
                prop_assert!((r.u - pairs).abs() < 1e-9);
                prop_assert!((0.0..=1.0).contains(&r.p_value));
            }
            // Only when every value is the same.
            Err(_) => prop_assert!(xs.iter().chain(&ys).all(|v| *v == xs[0])),
        }
    }

    #[test]
    fn running_summary_matches_two_pass(values in prop::collection::vec(-1e6f64..1e6, 2..200)) {
        let mut running = RunningSummary::default();
        for v in &values {
            running.push(*v);
        }
        let streamed = running.summary().unwrap();
        let batch = Summary::from_values(&values).unwrap();
        prop_assert_eq!(streamed.n, batch.n);
        prop_assert!((streamed.mean - batch.mean).abs() <= 1e-9 * batch.mean.abs().max(1.0));
        prop_assert!((streamed.variance - batch.variance).abs() <= 1e-9 * batch.variance.max(1.0));
    }
}
