//! Experiment definition validation and lifecycle transitions.

use flags::experiment::*;
use proptest::prelude::*;

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

type Mutation = Box<dyn Fn(&mut ExperimentSpec)>;

#[test]
fn invalid_specs_are_refused() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("one variant", Box::new(|s| s.variants.truncate(1))),
        (
            "duplicate",
            Box::new(|s| s.variants.push(Variant::new("A", 1))),
        ),
        ("zero weight", Box::new(|s| s.variants[1].weight = 0)),
        ("unknown control", Box::new(|s| s.control = "Z".into())),
        ("alpha", Box::new(|s| s.alpha = 0.0)),
        ("power", Box::new(|s| s.power = 1.0)),
        (
            "mde",
            Box::new(|s| s.primary_metric.minimum_detectable_effect = 0.0),
        ),
        ("empty key", Box::new(|s| s.key.clear())),
        (
            "bound beyond the limit",
            Box::new(|s| s.primary_metric.max_abs_value = Some(MAX_ABS_EVENT_VALUE_LIMIT * 10.0)),
        ),
        (
            "zero bound",
            Box::new(|s| s.primary_metric.max_abs_value = Some(0.0)),
        ),
        (
            "NaN bound",
            Box::new(|s| s.primary_metric.max_abs_value = Some(f64::NAN)),
        ),
    ];
    for (name, mutate) in cases {
        let mut s = spec();
        mutate(&mut s);
        assert!(
            matches!(Experiment::create(s, 0), Err(ExperimentError::Invalid(_))),
            "{name} accepted"
        );
    }
    assert!(Experiment::create(spec(), 0).is_ok());
}

#[test]
fn lifecycle_records_times_and_winner() {
    let mut e = Experiment::create(spec(), 10).unwrap();
    e.start(20).unwrap();
    e.pause(30).unwrap();
    assert_eq!(e.paused_at, Some(30));
    e.resume(35).unwrap();
    assert_eq!(e.paused_at, None);
    assert!(e.conclude(40, Some("Z".into())).is_err());
    e.conclude(40, Some("B".into())).unwrap();
    assert_eq!(
        (
            e.created_at,
            e.started_at,
            e.concluded_at,
            e.winner.as_deref()
        ),
        (10, Some(20), Some(40), Some("B"))
    );
    let err = e.start(50).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot start an experiment that is Completed"
    );
    // The windows it ran in: start to pause, resume to completion.
    assert_eq!(
        e.windows,
        [
            RunningWindow {
                start: 20,
                end: Some(30)
            },
            RunningWindow {
                start: 35,
                end: Some(40)
            }
        ]
    );
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Start,
    Pause,
    Resume,
    Conclude,
    Fail,
}

/// The allowed transitions, written out as a table.
fn oracle(state: ExperimentState, action: Action) -> Option<ExperimentState> {
    use ExperimentState::*;
    match (state, action) {
        (Draft, Action::Start) => Some(Running),
        (Running, Action::Pause) => Some(Paused),
        (Paused, Action::Resume) => Some(Running),
        (Running | Paused, Action::Conclude) => Some(Completed),
        (Running | Paused, Action::Fail) => Some(Failed),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn transitions_follow_the_table(actions in prop::collection::vec(0u8..5, 0..12)) {
        let mut e = Experiment::create(spec(), 0).unwrap();
        for (i, a) in actions.iter().enumerate() {
            let action = match a { 0 => Action::Start, 1 => Action::Pause, 2 => Action::Resume, 3 => Action::Conclude, _ => Action::Fail };
            let now = i as i64;
            let before = e.state;
            let result = match action {
                Action::Start => e.start(now),
                Action::Pause => e.pause(now),
                Action::Resume => e.resume(now),
                Action::Conclude => e.conclude(now, None),
                Action::Fail => e.fail(now, "guardrail".into()),
            };
            match oracle(before, action) {
                Some(next) => { prop_assert!(result.is_ok()); prop_assert_eq!(e.state, next); }
                None => {
                    let refused = matches!(result, Err(ExperimentError::InvalidTransition { from, .. }) if from == before);
                    prop_assert!(refused);
                    prop_assert_eq!(e.state, before);
                }
            }
            // Windows never overlap, and only a running experiment has an open one.
            for pair in e.windows.windows(2) {
                prop_assert!(pair[0].end.is_some_and(|end| end <= pair[1].start));
            }
            let open = e.windows.last().is_some_and(|w| w.end.is_none());
            prop_assert_eq!(open, e.state == ExperimentState::Running);
        }
    }
}

#[test]
fn event_values_are_bounded_per_metric() {
    let default = Metric::value("revenue", Goal::Increase, 1.0);
    assert_eq!(default.value_bound(), DEFAULT_MAX_ABS_EVENT_VALUE);
    for ok in [
        0.0,
        -1.0,
        42.5,
        DEFAULT_MAX_ABS_EVENT_VALUE,
        -DEFAULT_MAX_ABS_EVENT_VALUE,
    ] {
        assert!(default.check_event_value(ok).is_ok(), "{ok}");
    }
    // The values hostile testing sent, which once overflowed a sum.
    for bad in [1e30, 1.7e308, -1.7e308, f64::MAX, f64::INFINITY, f64::NAN] {
        let reason = default.check_event_value(bad).unwrap_err();
        assert!(
            reason.contains("revenue") || reason.contains("finite"),
            "{reason}"
        );
    }
    let tight = Metric {
        max_abs_value: Some(50.0),
        ..default
    };
    assert!(tight.check_event_value(50.0).is_ok());
    assert!(tight.check_event_value(-50.5).is_err());
    // Stored definitions from before bounds existed read back with the default.
    let old: Metric = serde_json::from_str(
        r#"{"key":"revenue","kind":"value","goal":"increase","minimum_detectable_effect":1.0}"#,
    )
    .unwrap();
    assert_eq!(old.max_abs_value, None);
}
