//! Holm's correction in an analysis: every primary and secondary comparison is one hypothesis of
//! the family; `significant` and the ship decision use the adjusted p-value.

use std::collections::BTreeMap;

use flags::experiment::*;
use flags::stats::holm;

fn spec() -> ExperimentSpec {
    ExperimentSpec {
        key: "exp".into(),
        hypothesis: "one of three treatments converts better".into(),
        flag_key: "flag".into(),
        variants: ["A", "B", "C", "D"]
            .iter()
            .map(|k| Variant::new(k, 1))
            .collect(),
        control: "A".into(),
        primary_metric: Metric::conversion("signup", Goal::Increase, 0.02),
        secondary_metrics: vec![Metric::conversion("upgrade", Goal::Increase, 0.02)],
        guardrails: vec![],
        alpha: 0.05,
        power: 0.8,
        min_sample_size: 100,
        early_stopping: false,
    }
}

/// 10,000 users; `signup` and `upgrade` conversions.
fn variant(signup: u64, upgrade: u64) -> VariantData {
    let n = 10_000;
    let metrics = BTreeMap::from([
        (
            "signup".to_string(),
            MetricData::Conversions {
                conversions: signup,
                n,
            },
        ),
        (
            "upgrade".to_string(),
            MetricData::Conversions {
                conversions: upgrade,
                n,
            },
        ),
    ]);
    VariantData {
        users: n,
        metrics,
        previous_sequential_p: None,
    }
}

#[test]
fn a_lucky_looking_treatment_is_not_significant_after_holm() {
    // B's signup lift has a raw p-value near 0.02: significant alone, not among six tests.
    let data = BTreeMap::from([
        ("A".to_string(), variant(1_000, 500)),
        ("B".to_string(), variant(1_105, 505)),
        ("C".to_string(), variant(1_010, 495)),
        ("D".to_string(), variant(990, 510)),
    ]);
    let r = Experiment::create(spec(), 0)
        .unwrap()
        .analyze(&data)
        .unwrap();
    let all: Vec<&Comparison> = r.primary.iter().chain(&r.secondary).collect();
    assert_eq!(all.len(), 6);
    let raw: Vec<f64> = all.iter().map(|c| c.p_value).collect();
    for (c, adjusted) in all.iter().zip(holm(&raw)) {
        assert_eq!(c.p_value_adjusted, adjusted, "{} {}", c.metric, c.variant);
        assert_eq!(c.significant, adjusted < 0.05);
    }
    let b = &r.primary[0];
    assert_eq!(b.variant, "B");
    assert!(b.p_value < 0.05, "raw p {}", b.p_value);
    assert!(
        b.p_value_adjusted >= 0.05,
        "adjusted p {}",
        b.p_value_adjusted
    );
    assert!(!b.significant);
    // At the planned size nothing significant improves: the control stays.
    assert_eq!(r.recommendation, Recommendation::KeepControl);
}

#[test]
fn a_single_comparison_is_unchanged_and_a_strong_one_survives() {
    let mut one = spec();
    one.variants.truncate(2);
    one.secondary_metrics.clear();
    let data = BTreeMap::from([
        ("A".to_string(), variant(1_000, 500)),
        ("B".to_string(), variant(1_105, 505)),
    ]);
    let r = Experiment::create(one, 0).unwrap().analyze(&data).unwrap();
    let b = &r.primary[0];
    assert_eq!(b.p_value_adjusted, b.p_value);
    assert!(b.significant);
    assert_eq!(
        r.recommendation,
        Recommendation::Ship {
            variant: "B".into(),
            early: false
        }
    );
    // Among six, a strong effect still ships.
    let data = BTreeMap::from([
        ("A".to_string(), variant(1_000, 500)),
        ("B".to_string(), variant(1_250, 505)),
        ("C".to_string(), variant(1_010, 495)),
        ("D".to_string(), variant(990, 510)),
    ]);
    let r = Experiment::create(spec(), 0)
        .unwrap()
        .analyze(&data)
        .unwrap();
    assert!(r.primary[0].significant);
    assert_eq!(
        r.recommendation,
        Recommendation::Ship {
            variant: "B".into(),
            early: false
        }
    );
}
