//! Invariants of the scaling decisions, over generated rules, readings and counts.

use proptest::prelude::*;
use scaling::{
    hpa_desired, Direction, Metric, MetricWindow, Reading, Reason, ScalingInput, ScalingPolicy,
    ScalingRule, DEFAULT_TOLERANCE,
};

const NOW: i64 = 10_000_000;

fn arb_rule() -> impl Strategy<Value = ScalingRule> {
    (
        prop::sample::select(Metric::ALL.to_vec()),
        0.0f64..500.0,
        1.0f64..500.0,
        0u64..600_000,
        0u64..900_000,
        1u32..5,
        1u32..10,
        0u32..40,
    )
        .prop_map(
            |(metric, down, gap, evaluation, cooldown, step, min, extra)| ScalingRule {
                metric,
                threshold_up: down + gap,
                threshold_down: down,
                evaluation_period_ms: evaluation,
                cooldown_period_ms: cooldown,
                scale_step: step,
                min_replicas: min,
                max_replicas: min + extra,
            },
        )
}

fn arb_policy() -> impl Strategy<Value = ScalingPolicy> {
    prop::collection::vec(arb_rule(), 1..4)
        .prop_map(|rules| ScalingPolicy::new(rules).expect("generated rules are valid"))
}

/// Readings of every metric over the last 15 minutes.
fn arb_windows() -> impl Strategy<Value = Vec<(Metric, Vec<Reading>)>> {
    let reading = (0i64..900_000, 0.0f64..2_000.0).prop_map(|(ago, value)| Reading {
        at_ms: NOW - ago,
        value,
    });
    prop::collection::vec(prop::collection::vec(reading, 0..8), 6).prop_map(|all| {
        Metric::ALL
            .iter()
            .copied()
            .zip(all)
            .collect::<Vec<(Metric, Vec<Reading>)>>()
    })
}

fn windows(owned: &[(Metric, Vec<Reading>)]) -> Vec<MetricWindow<'_>> {
    owned
        .iter()
        .map(|(metric, readings)| MetricWindow {
            metric: *metric,
            readings,
        })
        .collect()
}

proptest! {
    #[test]
    fn hpa_stays_within_bounds(
        current in 1u32..1_000,
        metric in 0.0f64..1e7,
        target in 0.001f64..1e4,
        tolerance in 0.0f64..0.5,
        min in 1u32..50,
        extra in 0u32..100,
    ) {
        let d = hpa_desired(current, metric, target, tolerance, min, min + extra);
        prop_assert!((min..=min + extra).contains(&d), "{d}");
    }

    #[test]
    fn hpa_within_tolerance_keeps_the_count(
        current in 1u32..1_000,
        target in 0.01f64..1e4,
        within in -0.999f64..0.999,
        tolerance in 0.01f64..0.5,
    ) {
        let metric = target * (1.0 + within * tolerance);
        prop_assert_eq!(hpa_desired(current, metric, target, tolerance, 1, 1_000), current);
    }

    #[test]
    fn hpa_is_the_formula_outside_tolerance(
        current in 1u32..1_000,
        target in 0.01f64..1e4,
        metric in 0.0f64..1e5,
    ) {
        let ratio = metric / target;
        prop_assume!((ratio - 1.0).abs() > DEFAULT_TOLERANCE);
        let want = (f64::from(current) * ratio).ceil().clamp(1.0, 1e9) as u32;
        prop_assert_eq!(hpa_desired(current, metric, target, DEFAULT_TOLERANCE, 1, 1_000_000_000), want);
    }

    #[test]
    fn hpa_is_monotone_in_the_metric(
        current in 1u32..1_000,
        target in 0.01f64..1e4,
        a in 0.0f64..1e5,
        b in 0.0f64..1e5,
        tolerance in 0.0f64..0.5,
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(
            hpa_desired(current, low, target, tolerance, 1, 10_000)
                <= hpa_desired(current, high, target, tolerance, 1, 10_000)
        );
    }

    #[test]
    fn decisions_stay_within_bounds_and_agree_with_their_direction(
        policy in arb_policy(),
        owned in arb_windows(),
        current in 0u32..100,
        last_ago in prop::option::of(0i64..2_000_000),
    ) {
        let w = windows(&owned);
        let input = ScalingInput {
            current_replicas: current,
            now_ms: NOW,
            last_scaled_at_ms: last_ago.map(|ago| NOW - ago),
            windows: &w,
        };
        for d in [policy.decide(&input), policy.desired_replicas(&input, DEFAULT_TOLERANCE)] {
            prop_assert!(
                (policy.min_replicas()..=policy.max_replicas()).contains(&d.desired_replicas),
                "{d:?}"
            );
            match d.direction {
                Direction::Up => prop_assert!(d.desired_replicas > current),
                Direction::Down => prop_assert!(d.desired_replicas < current),
                Direction::Stable => prop_assert_eq!(d.desired_replicas, current),
            }
        }
        // The formula never moves the other way than the rules, and never down by more than
        // the rules' step.
        let seed = policy.decide(&input);
        let both = policy.desired_replicas(&input, DEFAULT_TOLERANCE);
        match seed.direction {
            Direction::Up => prop_assert!(both.desired_replicas >= seed.desired_replicas),
            Direction::Down => prop_assert!(both.desired_replicas >= seed.desired_replicas),
            Direction::Stable => prop_assert_eq!(both.desired_replicas, current),
        }
    }

    #[test]
    fn nothing_changes_within_the_cooldown(
        policy in arb_policy(),
        owned in arb_windows(),
        current in 1u32..60,
        fraction in 0.0f64..1.0,
    ) {
        prop_assume!(policy.cooldown_ms() > 0);
        prop_assume!((policy.min_replicas()..=policy.max_replicas()).contains(&current));
        let ago = (policy.cooldown_ms() as f64 * fraction) as i64;
        let w = windows(&owned);
        let input = ScalingInput {
            current_replicas: current,
            now_ms: NOW,
            last_scaled_at_ms: Some(NOW - ago),
            windows: &w,
        };
        let d = policy.desired_replicas(&input, DEFAULT_TOLERANCE);
        prop_assert_eq!(d.desired_replicas, current);
        let cooling = matches!(d.reason, Reason::CooldownPeriod { .. });
        prop_assert!(cooling);
    }

    #[test]
    fn more_load_never_means_fewer_replicas(
        current in 1u32..30,
        cpu in (0.0f64..200.0, 0.0f64..200.0),
        queue in (0.0f64..2_000.0, 0.0f64..2_000.0),
    ) {
        // The same load held for the last 15 minutes, once lighter and once heavier.
        let policy = ScalingPolicy::signalbox();
        let held = |value: f64| vec![Reading { at_ms: NOW - 900_000, value }];
        let desired = |cpu: f64, queue: f64| {
            let (c, q) = (held(cpu), held(queue));
            let w = [
                MetricWindow { metric: Metric::CpuUtilization, readings: &c },
                MetricWindow { metric: Metric::QueueLength, readings: &q },
            ];
            let input = ScalingInput {
                current_replicas: current,
                now_ms: NOW,
                last_scaled_at_ms: None,
                windows: &w,
            };
            policy.desired_replicas(&input, DEFAULT_TOLERANCE).desired_replicas
        };
        let (c1, c2) = if cpu.0 <= cpu.1 { cpu } else { (cpu.1, cpu.0) };
        let (q1, q2) = if queue.0 <= queue.1 { queue } else { (queue.1, queue.0) };
        prop_assert!(desired(c1, q1) <= desired(c2, q2), "{c1} {q1} -> {c2} {q2}");
    }
}
