//! Degenerate inputs (acceptance 4): clear errors, never NaN.

use lifetime::{
    fit_bgnbd, fit_gamma_gamma, summarize, CustomerSummary, FitError, FitOptions, LifetimeError,
    Period, Purchase,
};

fn c(i: usize, x: f64, tx: f64, t: f64, m: f64) -> CustomerSummary {
    CustomerSummary {
        customer_id: format!("c{i}"),
        frequency: x,
        recency: tx,
        t,
        monetary_value: m,
    }
}

mod common;

/// A simulated population (a valid fit).
fn population() -> Vec<CustomerSummary> {
    common::simulate(&common::TYPICAL, 500, 30.0, 200.0, 7)
}

#[test]
fn no_customers() {
    assert_eq!(
        fit_bgnbd(&[], &FitOptions::default()),
        Err(FitError::TooFewCustomers { needed: 10, got: 0 })
    );
    assert_eq!(
        fit_gamma_gamma(&[], &FitOptions::default()),
        Err(FitError::TooFewCustomers { needed: 10, got: 0 })
    );
    assert!(summarize(&[], 0, Period::Day).unwrap().is_empty());
}

#[test]
fn no_repeat_purchases() {
    let cs: Vec<_> = (0..50)
        .map(|i| c(i, 0.0, 0.0, 10.0 + i as f64, 0.0))
        .collect();
    assert_eq!(
        fit_bgnbd(&cs, &FitOptions::default()),
        Err(FitError::NoRepeatPurchases)
    );
    assert_eq!(
        fit_gamma_gamma(&cs, &FitOptions::default()),
        Err(FitError::NoRepeatPurchases)
    );
}

#[test]
fn identical_customers_are_degenerate_not_nan() {
    let cs: Vec<_> = (0..50).map(|i| c(i, 2.0, 5.0, 10.0, 20.0)).collect();
    match fit_bgnbd(&cs, &FitOptions::default()) {
        Err(FitError::Degenerate { .. }) | Err(FitError::DidNotConverge { .. }) => {}
        Ok(fit) => panic!(
            "identical histories identify no BG/NBD population: {:?}",
            fit.params
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
    // Everyone spending the same: the spend variance is 0, p runs to infinity.
    match fit_gamma_gamma(&cs, &FitOptions::default()) {
        Err(FitError::Degenerate { .. }) | Err(FitError::DidNotConverge { .. }) => {}
        Ok(fit) => panic!(
            "identical spend identifies no Gamma-Gamma population: {:?}",
            fit.params
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn iteration_limit_reports_did_not_converge() {
    let options = FitOptions {
        max_iterations: 1,
        ..FitOptions::default()
    };
    assert!(matches!(
        fit_bgnbd(&population(), &options),
        Err(FitError::DidNotConverge { .. })
    ));
    assert!(matches!(
        fit_gamma_gamma(&population(), &options),
        Err(FitError::DidNotConverge { .. })
    ));
    let bad = FitOptions {
        tolerance: f64::NAN,
        ..FitOptions::default()
    };
    assert!(matches!(
        fit_bgnbd(&population(), &bad),
        Err(FitError::InvalidOption {
            field: "tolerance",
            ..
        })
    ));
}

#[test]
fn varied_population_fits() {
    let fit = fit_bgnbd(&population(), &FitOptions::default()).unwrap();
    assert!(fit.log_likelihood.is_finite());
    assert!(fit.covariance.iter().flatten().all(|v| v.is_finite()));
    for i in 0..4 {
        assert!(fit.covariance[i][i] > 0.0);
    }
}

#[test]
fn gamma_gamma_with_heavy_tailed_spend_is_degenerate() {
    // Spend spread over orders of magnitude across customers, each perfectly consistent:
    // the across-customer distribution has no finite mean (q <= 1) or p runs away.
    let cs: Vec<_> = (0..60)
        .map(|i| {
            c(
                i,
                1.0 + (i % 3) as f64,
                5.0,
                10.0,
                10f64.powi((i % 6) as i32),
            )
        })
        .collect();
    match fit_gamma_gamma(&cs, &FitOptions::default()) {
        Err(FitError::Degenerate { reason }) => assert!(!reason.is_empty()),
        Err(FitError::DidNotConverge { .. }) => {}
        Ok(fit) => assert!(
            fit.params.q > 1.0,
            "a returned fit always has q > 1: {:?}",
            fit.params
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn zero_amounts_are_skipped_and_counted() {
    let mut cs = population();
    for s in cs.iter_mut().take(30) {
        if s.frequency > 0.0 {
            s.monetary_value = 0.0;
        }
    }
    let zero = cs
        .iter()
        .filter(|s| s.frequency > 0.0 && s.monetary_value == 0.0)
        .count();
    let fit = fit_gamma_gamma(&cs, &FitOptions::default()).unwrap();
    assert_eq!(fit.excluded_zero_value, zero);
    assert_eq!(
        fit.excluded_no_repeat,
        cs.iter().filter(|s| s.frequency == 0.0).count()
    );
    assert_eq!(
        fit.customers + fit.excluded_zero_value + fit.excluded_no_repeat,
        cs.len()
    );
}

#[test]
fn invalid_summaries_name_the_customer() {
    let mut cs = population();
    cs[3].recency = cs[3].t + 1.0;
    match fit_bgnbd(&cs, &FitOptions::default()) {
        Err(FitError::InvalidCustomer { customer_id, .. }) => assert_eq!(customer_id, "s3"),
        other => panic!("{other:?}"),
    }
    let mut cs = population();
    cs[5].monetary_value = -1.0;
    match fit_gamma_gamma(&cs, &FitOptions::default()) {
        Err(FitError::InvalidCustomer { customer_id, .. }) => assert_eq!(customer_id, "s5"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn negative_and_future_purchases_are_errors() {
    let p = |id: &str, day, amount| Purchase {
        customer_id: id.into(),
        day,
        amount,
    };
    assert!(matches!(
        summarize(&[p("a", 1, 5.0), p("b", 2, -3.0)], 10, Period::Day),
        Err(LifetimeError::NegativeAmount { ref customer_id, .. }) if customer_id == "b"
    ));
    assert!(matches!(
        summarize(&[p("a", 11, 5.0)], 10, Period::Day),
        Err(LifetimeError::PurchaseAfterEnd { ref customer_id, .. }) if customer_id == "a"
    ));
    assert!(matches!(
        summarize(&[p("a", 1, f64::NAN)], 10, Period::Day),
        Err(LifetimeError::NonFiniteAmount { .. })
    ));
    // Zero amounts are purchases.
    let s = summarize(&[p("a", 1, 0.0), p("a", 3, 0.0)], 10, Period::Day).unwrap();
    assert_eq!((s[0].frequency, s[0].monetary_value), (1.0, 0.0));
}
