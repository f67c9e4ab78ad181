//! What an experiment does to its flag, its running windows and the review's decisions.

use std::collections::BTreeMap;

use flags::experiment::*;
use flags::{EvaluationContext, Flag, FlagSet, Reason};
use proptest::prelude::*;
use serde_json::json;

fn spec() -> ExperimentSpec {
    ExperimentSpec {
        key: "exp".into(),
        hypothesis: "green converts better".into(),
        flag_key: "button".into(),
        variants: vec![Variant::new("control", 1), Variant::new("green", 1)],
        control: "control".into(),
        primary_metric: Metric::conversion("signup", Goal::Increase, 0.02),
        secondary_metrics: vec![],
        guardrails: vec![],
        alpha: 0.05,
        power: 0.8,
        min_sample_size: 100,
        early_stopping: true,
    }
}

fn flag(weights: [u32; 2]) -> Flag {
    serde_json::from_value(json!({
        "key": "button", "type": "multivariate", "status": "draft",
        "variants": [
            {"key": "control", "value": "grey", "weight_bp": weights[0]},
            {"key": "green", "value": "green", "weight_bp": weights[1]}
        ],
        "default_variant": "control", "off_variant": "control",
        "rules": [{"id": "staff", "when": {"attribute": "staff", "op": "equals", "value": true},
                   "variant": "green"}],
        "track_exposure": true
    }))
    .unwrap()
}

fn serve(flag: &Flag, ctx: &EvaluationContext) -> (Option<String>, Reason) {
    let set = FlagSet::compile(vec![flag.clone()]).unwrap();
    let e = set.evaluate(&flag.key, ctx, None, 0);
    (e.variant.map(str::to_owned), e.reason)
}

#[test]
fn weights_match_the_flag_split_or_name_the_difference() {
    let e = Experiment::create(spec(), 0).unwrap();
    assert!(e.check_flag(&flag([5000, 5000])).is_ok());
    let ExperimentError::InvalidField { field, message } =
        e.check_flag(&flag([3000, 7000])).unwrap_err()
    else {
        panic!("not a field error");
    };
    assert_eq!(field, "variants");
    assert!(
        message.contains("`green`: flag 7000 bp, experiment 5000 bp"),
        "{message}"
    );
    let no_split = e.check_flag(&flag([0, 0])).unwrap_err();
    assert!(
        no_split.to_string().contains("no weighted split"),
        "{no_split}"
    );
    let mut purple = spec();
    purple.variants[1].key = "purple".into();
    let other = Experiment::create(purple, 0).unwrap();
    assert!(other
        .check_flag(&flag([5000, 5000]))
        .unwrap_err()
        .to_string()
        .contains("`purple` is not a variant"));
}

proptest! {
    #[test]
    fn basis_points_sum_to_ten_thousand_and_follow_the_weights(
        weights in prop::collection::vec(1u32..1000, 1..8)
    ) {
        let bp = weights_bp(&weights);
        prop_assert_eq!(bp.iter().sum::<u32>(), 10_000);
        let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
        for (w, b) in weights.iter().zip(&bp) {
            prop_assert!((f64::from(*w) / total * 10_000.0 - f64::from(*b)).abs() < 1.0);
        }
    }
}

#[test]
fn a_created_flag_carries_the_experiment() {
    let mut s = spec();
    s.variants = vec![
        Variant::new("control", 1),
        Variant::new("green", 1),
        Variant::new("blue", 1),
    ];
    let e = Experiment::create(s, 0).unwrap();
    let values = BTreeMap::from([("blue".to_owned(), json!({"rgb": "00f"}))]);
    let f = e.new_flag(&values).unwrap();
    let set = FlagSet::compile(vec![f.clone()]).unwrap();
    assert_eq!(set.flag("button").map(|f| f.track_exposure), Some(true));
    let weights: Vec<u32> = f.variants.iter().map(|v| v.weight_bp).collect();
    assert_eq!(weights, [3334, 3333, 3333]);
    assert_eq!(f.variants[1].value, json!("green"));
    assert_eq!(f.variants[2].value, json!({"rgb": "00f"}));
    assert!(f.variants[0].control);
    assert_eq!(f.status, flags::FlagStatus::Draft);
    assert!(e.check_flag(&f).is_ok());
}

#[test]
fn each_state_decides_what_the_flag_serves() {
    let plan = ExperimentPlan {
        target_audience: Some(
            serde_json::from_value(json!({"attribute": "country", "op": "equals", "value": "de"}))
                .unwrap(),
        ),
        exclusion_rules: vec![serde_json::from_value(
            json!({"attribute": "plan", "op": "equals", "value": "free"}),
        )
        .unwrap()],
        traffic_percentage: 40,
        ..ExperimentPlan::default()
    };
    let mut e = Experiment::create_with(spec(), plan, 0).unwrap();
    let draft = flag([5000, 5000]);
    assert_eq!(
        e.flag_for(&draft, false),
        draft,
        "a draft leaves the flag alone"
    );

    e.start(1).unwrap();
    let running = e.flag_for(&draft, true);
    assert_eq!(running.status, flags::FlagStatus::Active);
    assert_eq!(running.rollout_bp, Some(4000));
    let ids: Vec<&str> = running.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [AUDIENCE_RULE, "staff"]);
    let ctx = |key: &str, attrs: serde_json::Value| {
        let mut obj = attrs;
        obj["targetingKey"] = json!(key);
        EvaluationContext::from_json(&obj).unwrap()
    };
    // Outside the audience, or excluded: the control, not a split.
    for outside in [
        json!({"country": "fr"}),
        json!({"country": "de", "plan": "free"}),
    ] {
        assert_eq!(
            serve(&running, &ctx("u1", outside.clone())),
            (Some("control".to_owned()), Reason::TargetingMatch),
            "{outside}"
        );
    }
    // In the audience: some users are split, the rest (outside the 40 %) get the default.
    let mut reasons = BTreeMap::new();
    for i in 0..400 {
        let (_, reason) = serve(&running, &ctx(&format!("u{i}"), json!({"country": "de"})));
        *reasons.entry(format!("{reason:?}")).or_insert(0) += 1;
    }
    assert!(
        reasons.get("Split").is_some_and(|n| (100..220).contains(n)),
        "{reasons:?}"
    );
    assert!(reasons.contains_key("Default"), "{reasons:?}");

    e.pause(2).unwrap();
    let paused = e.flag_for(&running, false);
    let ids: Vec<&str> = paused.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [PAUSED_RULE, AUDIENCE_RULE, "staff"]);
    assert_eq!(paused.rollout_bp, Some(4000), "pausing leaves the rollout");
    assert_eq!(
        serve(&paused, &ctx("u1", json!({"country": "de", "staff": true}))).0,
        Some("control".to_owned())
    );

    e.resume(3).unwrap();
    assert_eq!(e.flag_for(&paused, false), running);

    e.conclude(4, Some("green".into())).unwrap();
    let done = e.flag_for(&running, false);
    let ids: Vec<&str> = done.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [COMPLETED_RULE, "staff"]);
    for i in 0..20 {
        assert_eq!(
            serve(&done, &ctx(&format!("u{i}"), json!({"country": "fr"}))).0,
            Some("green".to_owned())
        );
    }
}

#[test]
fn a_failed_experiment_serves_the_control() {
    let mut e = Experiment::create(spec(), 0).unwrap();
    e.start(1).unwrap();
    e.fail(2, "guardrail latency breached by green".into())
        .unwrap();
    let f = e.flag_for(&flag([5000, 5000]), false);
    assert_eq!(f.rules[0].id, FAILED_RULE);
    let ctx = EvaluationContext::with_key("u1");
    assert_eq!(
        serve(&f, &ctx).1,
        Reason::Disabled,
        "the flag is still a draft here: off"
    );
    let mut active = f.clone();
    active.status = flags::FlagStatus::Active;
    assert_eq!(serve(&active, &ctx).0, Some("control".to_owned()));
    assert_eq!(
        e.reason.as_deref(),
        Some("guardrail latency breached by green")
    );
}

#[test]
fn windows_decide_which_assignments_count() {
    let mut e = Experiment::create(spec(), 0).unwrap();
    assert!(e.running_windows().is_empty());
    e.start(100).unwrap();
    e.pause(200).unwrap();
    e.resume(300).unwrap();
    let counts = |at: i64| e.running_windows().iter().any(|w| w.contains(at));
    assert!(!counts(99) && counts(100) && counts(199));
    assert!(!counts(200) && !counts(299));
    assert!(
        counts(300) && counts(i64::MAX),
        "the open window runs until now"
    );

    // A stored experiment from before windows: one window from start to pause.
    let mut old: Experiment = serde_json::from_value(json!({
        "spec": serde_json::to_value(spec()).unwrap(),
        "state": "concluded", "created_at": 0, "started_at": 10, "paused_at": null,
        "concluded_at": 50, "winner": null
    }))
    .unwrap();
    assert_eq!(old.state, ExperimentState::Completed);
    assert_eq!(old.plan, ExperimentPlan::default());
    assert_eq!(
        old.running_windows(),
        [RunningWindow {
            start: 10,
            end: Some(50)
        }]
    );
    old.state = ExperimentState::Paused;
    old.concluded_at = None;
    old.paused_at = Some(30);
    assert_eq!(old.running_windows()[0].end, Some(30));
}

#[test]
fn the_plan_is_validated_naming_the_field() {
    let cases: Vec<(&str, ExperimentPlan)> = vec![
        (
            "traffic_percentage",
            ExperimentPlan {
                traffic_percentage: 0,
                ..ExperimentPlan::default()
            },
        ),
        (
            "traffic_percentage",
            ExperimentPlan {
                traffic_percentage: 101,
                ..ExperimentPlan::default()
            },
        ),
        (
            "minimum_duration_days",
            ExperimentPlan {
                minimum_duration_days: 31,
                ..ExperimentPlan::default()
            },
        ),
        (
            "maximum_duration_days",
            ExperimentPlan {
                maximum_duration_days: 0,
                minimum_duration_days: 0,
                ..ExperimentPlan::default()
            },
        ),
        (
            "end_at",
            ExperimentPlan {
                end_at: Some(5),
                ..ExperimentPlan::default()
            },
        ),
        (
            "end_at",
            ExperimentPlan {
                start_at: Some(2_000),
                end_at: Some(1_500),
                ..ExperimentPlan::default()
            },
        ),
        (
            "tags",
            ExperimentPlan {
                tags: vec!["a".into(), "a".into()],
                ..ExperimentPlan::default()
            },
        ),
    ];
    for (expected, plan) in cases {
        match Experiment::create_with(spec(), plan, 1_000) {
            Err(ExperimentError::InvalidField { field, .. }) => assert_eq!(field, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
    let defaults = ExperimentPlan::default();
    assert_eq!(
        (
            defaults.traffic_percentage,
            defaults.minimum_duration_days,
            defaults.maximum_duration_days,
            defaults.auto_conclude,
            defaults.experiment_type
        ),
        (100, 7, 30, false, ExperimentType::AbTest)
    );
}

fn results(recommendation: Recommendation) -> ExperimentResults {
    ExperimentResults {
        srm: flags::stats::sample_ratio_mismatch(&[100, 100], &[1.0, 1.0]).unwrap(),
        required_per_variant: 100,
        primary: vec![],
        secondary: vec![],
        guardrails: vec![],
        sequential_p: BTreeMap::new(),
        recommendation,
        not_analysed: vec![],
    }
}

#[test]
fn the_review_starts_completes_and_fails_on_time() {
    let day = DAY_MS;
    let plan = ExperimentPlan {
        start_at: Some(10 * day),
        auto_conclude: true,
        ..ExperimentPlan::default()
    };
    let mut e = Experiment::create_with(spec(), plan, 0).unwrap();
    assert_eq!(e.review(10 * day - 1, None), None);
    assert_eq!(e.review(10 * day, None), Some(ReviewDecision::Start));
    e.start(10 * day).unwrap();

    let ship = results(Recommendation::Ship {
        variant: "green".into(),
        early: true,
    });
    // Before the minimum duration, an early ship waits.
    assert_eq!(e.review(16 * day, Some(&ship)), None);
    assert!(matches!(
        e.review(17 * day, Some(&ship)),
        Some(ReviewDecision::Complete { winner: Some(ref w), .. }) if w == "green"
    ));
    // Without auto_conclude or early stopping, it does not.
    let mut manual = e.clone();
    manual.plan.auto_conclude = false;
    assert_eq!(manual.review(17 * day, Some(&ship)), None);
    let mut fixed = e.clone();
    fixed.spec.early_stopping = false;
    assert_eq!(fixed.review(17 * day, Some(&ship)), None);

    let breached = results(Recommendation::StopGuardrailFailed {
        metric: "latency".into(),
        variant: "green".into(),
    });
    assert_eq!(
        e.review(11 * day, Some(&breached)),
        Some(ReviewDecision::Fail {
            reason: "guardrail latency breached by green".into()
        })
    );

    // The maximum duration completes it; without a recommendation to ship, no winner.
    let keep = results(Recommendation::KeepControl);
    assert_eq!(e.review(40 * day - 1, Some(&keep)), None);
    assert_eq!(
        manual.review(40 * day, Some(&ship)),
        Some(ReviewDecision::Complete {
            winner: None,
            reason: "maximum duration reached".into()
        })
    );
    // A paused one completes on time too.
    e.pause(20 * day).unwrap();
    assert!(matches!(
        e.review(40 * day, None),
        Some(ReviewDecision::Complete { winner: None, .. })
    ));
    assert_eq!(
        e.review(21 * day, Some(&breached)),
        None,
        "paused: not failed"
    );
}
