//! Experiment analysis: each recommendation from data built to trigger it.

use std::collections::BTreeMap;

use flags::experiment::*;
use flags::stats::{chi_square_2x2, sample_size_proportions};

fn spec() -> ExperimentSpec {
    ExperimentSpec {
        key: "exp".into(),
        hypothesis: "B converts better".into(),
        flag_key: "flag".into(),
        variants: vec![Variant::new("A", 1), Variant::new("B", 1)],
        control: "A".into(),
        primary_metric: Metric::conversion("signup", Goal::Increase, 0.02),
        secondary_metrics: vec![],
        guardrails: vec![],
        alpha: 0.05,
        power: 0.8,
        min_sample_size: 100,
        early_stopping: false,
    }
}

fn conversions(users: u64, conv: u64) -> VariantData {
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "signup".to_string(),
        MetricData::Conversions {
            conversions: conv,
            n: users,
        },
    );
    VariantData {
        users,
        metrics,
        previous_sequential_p: None,
    }
}

fn data(a: VariantData, b: VariantData) -> BTreeMap<String, VariantData> {
    BTreeMap::from([("A".to_string(), a), ("B".to_string(), b)])
}

fn analyze(spec: ExperimentSpec, d: &BTreeMap<String, VariantData>) -> ExperimentResults {
    Experiment::create(spec, 0).unwrap().analyze(d).unwrap()
}

#[test]
fn clear_winner_ships() {
    let r = analyze(
        spec(),
        &data(conversions(10_000, 1_000), conversions(10_000, 1_200)),
    );
    let expected_p = chi_square_2x2(1_200, 10_000, 1_000, 10_000, true)
        .unwrap()
        .p_value;
    let b = &r.primary[0];
    assert_eq!(b.p_value, expected_p);
    assert!(b.significant && b.improves);
    let lift = b.relative_lift.unwrap();
    assert!((lift.lift - 0.2).abs() < 1e-12 && lift.ci_low > 0.0);
    assert_eq!(
        r.recommendation,
        Recommendation::Ship {
            variant: "B".into(),
            early: false
        }
    );
    assert_eq!(r.recommendation.to_string(), "ship B");
}

#[test]
fn too_few_users_keeps_running_with_the_planned_shortfall() {
    let r = analyze(spec(), &data(conversions(500, 50), conversions(500, 56)));
    let planned = sample_size_proportions(0.1, 0.02, 0.05, 0.8)
        .unwrap()
        .per_variant;
    assert_eq!(r.required_per_variant, planned);
    assert_eq!(
        r.recommendation,
        Recommendation::KeepRunning {
            more_users_per_variant: planned - 500
        }
    );
    assert!(r.recommendation.to_string().starts_with("keep running: "));
}

#[test]
fn no_difference_at_planned_size_keeps_control() {
    let r = analyze(
        spec(),
        &data(conversions(10_000, 1_000), conversions(10_000, 1_010)),
    );
    assert_eq!(r.recommendation, Recommendation::KeepControl);
}

#[test]
fn sample_ratio_mismatch_overrides_everything() {
    let r = analyze(
        spec(),
        &data(conversions(10_000, 1_000), conversions(11_000, 1_500)),
    );
    assert!(r.srm.mismatch);
    assert_eq!(r.recommendation, Recommendation::CheckAssignment);
    assert_eq!(
        r.recommendation.to_string(),
        "check assignment: sample ratio mismatch"
    );
}

#[test]
fn degraded_guardrail_stops_and_tolerated_one_does_not() {
    let with_latency = |a: VariantData, b: VariantData, mean_b: f64| {
        let mut d = data(a, b);
        for (key, mean) in [("A", 100.0), ("B", mean_b)] {
            let values: Vec<f64> = (0..2_000)
                .map(|i| mean + f64::from(i % 21) - 10.0)
                .collect();
            d.get_mut(key)
                .unwrap()
                .metrics
                .insert("latency".into(), MetricData::Values(values));
        }
        d
    };
    let mut s = spec();
    s.guardrails = vec![Guardrail {
        metric: Metric::value("latency", Goal::Decrease, 1.0),
        max_relative_degradation: 0.05,
    }];
    // 10 % slower: significant and beyond the 5 % tolerance.
    let r = analyze(
        s.clone(),
        &with_latency(
            conversions(10_000, 1_000),
            conversions(10_000, 1_200),
            110.0,
        ),
    );
    assert!(r.guardrails[0].failed);
    assert!(r.guardrails[0].relative_degradation > 0.09);
    assert_eq!(
        r.recommendation.to_string(),
        "stop: guardrail latency failed for B"
    );
    // 2 % slower is significant but tolerated.
    let r = analyze(
        s,
        &with_latency(
            conversions(10_000, 1_000),
            conversions(10_000, 1_200),
            102.0,
        ),
    );
    assert!(!r.guardrails[0].failed);
    assert!(matches!(r.recommendation, Recommendation::Ship { .. }));
}

#[test]
fn early_stopping_ships_a_strong_effect_before_the_planned_size_and_carries_p() {
    let mut s = spec();
    s.early_stopping = true;
    let d = data(conversions(600, 60), conversions(600, 150));
    let r = analyze(s.clone(), &d);
    assert!(r.sequential_p["B"] <= 0.05);
    assert_eq!(
        r.recommendation,
        Recommendation::Ship {
            variant: "B".into(),
            early: true
        }
    );
    // Without a strong effect the earlier running minimum is kept, not raised.
    let mut later = data(conversions(700, 70), conversions(700, 72));
    later.get_mut("B").unwrap().previous_sequential_p = Some(0.3);
    let r = analyze(s, &later);
    assert!(r.sequential_p["B"] <= 0.3);
    assert!(matches!(
        r.recommendation,
        Recommendation::KeepRunning { .. }
    ));
}

#[test]
fn missing_variant_data_is_an_error() {
    let mut d = data(conversions(100, 10), conversions(100, 10));
    d.remove("B");
    let err = Experiment::create(spec(), 0)
        .unwrap()
        .analyze(&d)
        .unwrap_err();
    assert!(matches!(err, ExperimentError::MissingData(_)));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary counts (zeros, conversions above n, unbalanced arms) give a result or an
        /// error, never a panic; a result's p-values are probabilities.
        #[test]
        fn analyze_any_counts(
            a in (0u64..5_000, 0u64..6_000),
            b in (0u64..5_000, 0u64..6_000),
            early in any::<bool>(),
            previous in prop::option::of(prop_oneof![Just(f64::NAN), 0.0f64..2.0]),
        ) {
            let mut s = spec();
            s.early_stopping = early;
            let mut d = data(conversions(a.0, a.1), conversions(b.0, b.1));
            if let Some(v) = d.get_mut("B") {
                v.previous_sequential_p = previous;
            }
            if let Ok(r) = Experiment::create(s, 0).unwrap().analyze(&d) {
                prop_assert!(r.primary.iter().all(|c| (0.0..=1.0).contains(&c.p_value)));
                prop_assert!(r.sequential_p.values().all(|p| (0.0..=1.0).contains(p)));
                prop_assert!((0.0..=1.0).contains(&r.srm.test.p_value));
            }
        }
    }
}
