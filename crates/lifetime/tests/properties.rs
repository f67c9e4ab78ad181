//! Invariants of the models (proptest) and parameter recovery on simulated histories.

mod common;

use lifetime::{
    clv_interval, customer_lifetime_value, fit_bgnbd, fit_gamma_gamma, summarize, BgNbdParams,
    CustomerSummary, FitOptions, GammaGammaParams, Period, Purchase,
};
use proptest::prelude::*;

fn params() -> impl Strategy<Value = BgNbdParams> {
    (0.01f64..20.0, 0.1f64..500.0, 0.05f64..20.0, 0.05f64..20.0)
        .prop_map(|(r, alpha, a, b)| BgNbdParams { r, alpha, a, b })
}

/// (x, t_x, T) with t_x <= T and t_x = 0 when x = 0.
fn history() -> impl Strategy<Value = CustomerSummary> {
    (0u32..200, 0.0f64..1.0, 0.0f64..2000.0, 0.0f64..500.0).prop_map(|(x, share, t, m)| {
        CustomerSummary {
            customer_id: "c".into(),
            frequency: f64::from(x),
            recency: if x == 0 { 0.0 } else { (share * t).floor() },
            t,
            monetary_value: if x == 0 { 0.0 } else { m },
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn log_likelihood_is_finite(p in params(), s in history()) {
        let ll = p.log_likelihood(s.frequency, s.recency, s.t);
        // Not <= 0: the likelihood holds a density in t_x, which may exceed 1.
        prop_assert!(ll.is_finite(), "{ll}");
    }

    #[test]
    fn p_alive_is_a_probability(p in params(), s in history()) {
        let v = p.p_alive(&s);
        prop_assert!((0.0..=1.0).contains(&v));
        if s.frequency == 0.0 {
            prop_assert_eq!(v, 1.0);
        }
        let churn = p.p_no_purchase(30.0, &s);
        prop_assert!((0.0..=1.0).contains(&churn));
        // A longer window can only hold more purchases.
        prop_assert!(p.p_no_purchase(60.0, &s) <= churn + 1e-12);
        prop_assert!(churn >= 1.0 - v - 1e-12);
    }

    #[test]
    fn expected_purchases_grow_with_the_horizon(p in params(), s in history(), h in 0.0f64..400.0, dh in 0.0f64..400.0) {
        let e1 = p.expected_purchases(h, &s);
        let e2 = p.expected_purchases(h + dh, &s);
        prop_assert!(e1.is_finite() && e1 >= 0.0);
        prop_assert!(e2 >= e1 - 1e-9 * e1.max(1.0), "{e1} {e2}");
        prop_assert_eq!(p.expected_purchases(0.0, &s), 0.0);
        let n = p.expected_purchases_new(h);
        prop_assert!(n.is_finite() && n >= 0.0);
    }

    #[test]
    fn expected_purchases_many_equals_one_at_a_time(p in params(), s in history(), hs in prop::collection::vec(0.0f64..800.0, 1..14)) {
        let many = p.expected_purchases_many(&hs, &s);
        for (h, m) in hs.iter().zip(&many) {
            let one = p.expected_purchases(*h, &s);
            prop_assert!((one - m).abs() <= 1e-12 * one.abs().max(1e-300) + 1e-300, "{h}: {one} {m}");
        }
    }

    #[test]
    fn clv_is_finite_and_non_negative(p in params(), s in history(), gp in (0.5f64..20.0, 1.01f64..20.0, 0.1f64..200.0)) {
        let g = GammaGammaParams { p: gp.0, q: gp.1, v: gp.2 };
        let value = g.expected_average_value(&s);
        prop_assert!(value.is_finite() && value >= 0.0);
        let clv = customer_lifetime_value(&p, &g, &s, 12, 0.01, Period::Day);
        prop_assert!(clv.is_finite() && clv >= 0.0);
    }

    #[test]
    fn summaries_do_not_depend_on_purchase_order(
        log in prop::collection::vec((0usize..8, 0i32..100, 0.0f64..50.0), 0..60),
        seed in any::<u64>(),
        weekly in any::<bool>(),
    ) {
        let purchases: Vec<Purchase> =
            log.iter().map(|&(c, day, amount)| Purchase { customer_id: format!("c{c}"), day, amount }).collect();
        let mut shuffled = purchases.clone();
        // Fisher-Yates with a simple LCG: deterministic from the proptest seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let period = if weekly { Period::Week } else { Period::Day };
        let a = summarize(&purchases, 100, period).unwrap();
        let b = summarize(&shuffled, 100, period).unwrap();
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(&x.customer_id, &y.customer_id);
            prop_assert_eq!((x.frequency, x.recency, x.t), (y.frequency, y.recency, y.t));
            prop_assert!((x.monetary_value - y.monetary_value).abs() <= 1e-9 * x.monetary_value.max(1.0));
            prop_assert!(x.recency <= x.t);
        }
    }
}

#[test]
fn fits_recover_simulated_parameters() {
    let truth = common::TYPICAL;
    let data = common::simulate(&truth, 20_000, 100.0, 400.0, 11);
    let fit = fit_bgnbd(&data, &FitOptions::default()).unwrap();
    let p = fit.params;
    let close = |ours: f64, true_value: f64, tol: f64| (ours / true_value - 1.0).abs() < tol;
    assert!(close(p.r, truth.r, 0.15), "r {}", p.r);
    assert!(close(p.alpha, truth.alpha, 0.2), "alpha {}", p.alpha);
    assert!(close(p.a, truth.a, 0.35), "a {}", p.a);
    assert!(close(p.b, truth.b, 0.35), "b {}", p.b);
    // The standard errors are honest: the truth lies within 4 of them.
    let sd_r = fit.covariance[0][0].sqrt();
    assert!((p.r - truth.r).abs() < 4.0 * sd_r, "r {} sd {sd_r}", p.r);

    let gg = fit_gamma_gamma(&data, &FitOptions::default()).unwrap();
    assert!(close(gg.params.p, truth.p, 0.2), "p {}", gg.params.p);
    assert!(close(gg.params.q, truth.q, 0.3), "q {}", gg.params.q);
    assert!(close(gg.params.v, truth.v, 0.4), "v {}", gg.params.v);

    // The CLV interval brackets the point value and is not empty for an active customer.
    let active = data.iter().find(|s| s.frequency >= 3.0).unwrap();
    let clv = customer_lifetime_value(&p, &gg.params, active, 12, 0.01, Period::Day);
    let (lo, hi) = clv_interval(&fit, &gg, active, 12, 0.01, Period::Day, 0.9);
    assert!(lo <= clv && clv <= hi && hi > lo, "{lo} {clv} {hi}");
}
