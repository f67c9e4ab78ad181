//! Routing per mode, the tier table, and the risk score.

use feedback::routing::{
    risk_score, route, Checks, Mode, RiskSignals, RouteInputs, RouteReason, Tier,
};
use feedback::Severity;
use proptest::prelude::*;

#[test]
fn tier_table_is_the_seeds() {
    // PROCESSING_TIERS of seed 004: max_latency_ms, queue_priority, timeout_ms, retry_count.
    let seed = [
        (Tier::Realtime, 100, 1000, 200, 0),
        (Tier::Priority, 1000, 100, 2000, 1),
        (Tier::Standard, 10000, 10, 20000, 3),
        (Tier::Batch, 60000, 1, 300000, 5),
    ];
    for (tier, latency, priority, timeout, retries) in seed {
        let s = tier.settings();
        assert_eq!(
            (
                s.max_latency_ms,
                s.queue_priority,
                s.timeout_ms,
                s.retry_count
            ),
            (latency, priority, timeout, retries),
            "{tier}"
        );
        assert_eq!(Tier::parse(tier.as_str()), Some(tier));
    }
}

#[test]
fn routing_table_per_mode() {
    let inputs = |risk: f64, queue_depth: u64, tier_demands_full: bool| RouteInputs {
        risk,
        tier: Tier::Standard,
        queue_depth,
        tier_demands_full,
    };
    // (mode, risk, queue depth, tier demands full) -> (checks, human review, reason)
    let table = [
        (
            Mode::Research,
            0.0,
            0,
            false,
            Checks::Full,
            true,
            RouteReason::ResearchMode,
        ),
        (
            Mode::Research,
            0.9,
            50_000,
            false,
            Checks::Full,
            true,
            RouteReason::ResearchMode,
        ),
        (
            Mode::Production,
            0.0,
            0,
            false,
            Checks::FastThenAsync,
            false,
            RouteReason::ProductionMode,
        ),
        (
            Mode::Production,
            0.9,
            0,
            true,
            Checks::FastThenAsync,
            false,
            RouteReason::ProductionMode,
        ),
        (
            Mode::Hybrid,
            0.2,
            0,
            false,
            Checks::FastThenAsync,
            false,
            RouteReason::LowRisk,
        ),
        (
            Mode::Hybrid,
            0.5,
            0,
            false,
            Checks::FastThenAsync,
            false,
            RouteReason::LowRisk,
        ),
        (
            Mode::Hybrid,
            0.51,
            0,
            false,
            Checks::Full,
            true,
            RouteReason::HighRisk,
        ),
        (
            Mode::Hybrid,
            0.2,
            0,
            true,
            Checks::Full,
            false,
            RouteReason::TierDemandsFull,
        ),
        (
            Mode::Hybrid,
            0.2,
            10_000,
            true,
            Checks::Full,
            false,
            RouteReason::TierDemandsFull,
        ),
        (
            Mode::Hybrid,
            0.9,
            10_001,
            false,
            Checks::FastThenAsync,
            true,
            RouteReason::QueueBackedUp,
        ),
        (
            Mode::Hybrid,
            0.2,
            10_001,
            true,
            Checks::FastThenAsync,
            false,
            RouteReason::QueueBackedUp,
        ),
    ];
    for (mode, risk, depth, demands, checks, review, reason) in table {
        let r = route(mode, &inputs(risk, depth, demands));
        assert_eq!(
            (r.checks, r.human_review, r.reason),
            (checks, review, reason),
            "{mode} {risk} {depth} {demands}"
        );
        assert_eq!(r.dp_epsilon, (mode == Mode::Research).then_some(0.1));
    }
}

#[test]
fn mode_thresholds() {
    assert_eq!(Mode::Research.settings().threshold, 0.8);
    assert_eq!(Mode::Hybrid.settings().threshold, 0.7);
    assert_eq!(Mode::Production.settings().threshold, 0.6);
}

#[test]
fn risk_signals() {
    let none = RiskSignals::default();
    assert_eq!(risk_score(&none), 0.0);
    assert!(
        risk_score(&RiskSignals {
            pii_found: true,
            ..none
        }) > 0.5
    );
    assert!(
        risk_score(&RiskSignals {
            hidden_text: true,
            ..none
        }) > 0.5
    );
    let high = RiskSignals {
        toxicity_score: 0.6,
        max_severity: Some(Severity::High),
        ..none
    };
    assert!(risk_score(&high) > 0.5);
    let low = RiskSignals {
        toxicity_score: 0.1,
        max_severity: Some(Severity::Low),
        rating: Some(5),
        ..none
    };
    assert!(risk_score(&low) < 0.5);
    assert!(
        (risk_score(&RiskSignals {
            text_chars: 6_000,
            ..none
        }) - 0.2)
            .abs()
            < 1e-12
    );
}

proptest! {
    #[test]
    fn risk_is_a_probability_and_monotone(
        tox in 0.0f64..1.0, pii in any::<bool>(), hidden in any::<bool>(),
        rating in prop::option::of(1u8..=5), chars in 0usize..10_000,
        sev in prop::option::of(0usize..4),
    ) {
        let s = RiskSignals {
            pii_found: pii, toxicity_score: tox, max_severity: sev.map(|i| Severity::ALL[i]),
            hidden_text: hidden, rating, text_chars: chars,
        };
        let r = risk_score(&s);
        prop_assert!((0.0..=1.0).contains(&r));
        let with_pii = risk_score(&RiskSignals { pii_found: true, ..s });
        prop_assert!(with_pii >= r);
        let with_hidden = risk_score(&RiskSignals { hidden_text: true, ..s });
        prop_assert!(with_hidden >= r);
    }
}
