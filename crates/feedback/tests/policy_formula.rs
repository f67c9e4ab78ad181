//! The scoring formula: contributions add up, weights act as the formula says, counterfactuals
//! are recomputations.

use feedback::policy::{
    compile_rules, Policy, PolicyInput, PolicyOutcome, Principle, PrincipleWeights, RuleKind,
    RuleSpec,
};
use feedback::toxicity::ToxicityReport;
use feedback::Severity;
use proptest::prelude::*;

/// A rule per (principle, penalty): a pattern rule firing on the word `m{i}`.
fn marker_rules(rules: &[(usize, f64)]) -> Vec<RuleSpec> {
    rules
        .iter()
        .enumerate()
        .map(|(i, &(p, penalty))| RuleSpec {
            id: format!("r{i}"),
            principle: Principle::ALL[p],
            kind: RuleKind::Pattern,
            severity: Severity::Medium,
            penalty,
            description: None,
            params: toml::Value::Table(
                [(
                    "regex".to_owned(),
                    toml::Value::String(format!(r"\bm{i}\b")),
                )]
                .into_iter()
                .collect(),
            ),
        })
        .collect()
}

fn run(specs: &[RuleSpec], weights: PrincipleWeights, text: &str) -> PolicyOutcome {
    let policy = Policy::new(compile_rules(specs, "rules").unwrap(), weights, 0.8).unwrap();
    policy.evaluate(&PolicyInput {
        text: Some(text),
        rating: None,
        findings: &[],
        toxicity: &ToxicityReport::default(),
        sentiment: None,
    })
}

fn weights(w: &[f64]) -> PrincipleWeights {
    let mut weights = PrincipleWeights::research();
    for (p, &v) in Principle::ALL.iter().zip(w) {
        weights.set(*p, v);
    }
    weights
}

fn arb_case() -> impl Strategy<Value = (Vec<(usize, f64)>, Vec<bool>, Vec<f64>)> {
    prop::collection::vec((0usize..7, 0.01f64..=1.0), 1..12).prop_flat_map(|rules| {
        let n = rules.len();
        (
            Just(rules),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(0.0f64..5.0, 7)
                .prop_filter("some weight", |w| w.iter().sum::<f64>() > 0.1),
        )
    })
}

fn text_of(present: &[bool]) -> String {
    present
        .iter()
        .enumerate()
        .filter(|(_, &p)| p)
        .map(|(i, _)| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #[test]
    fn contributions_add_up_to_the_loss((rules, present, w) in arb_case()) {
        let outcome = run(&marker_rules(&rules), weights(&w), &text_of(&present));
        prop_assert_eq!(outcome.trace.len(), present.iter().filter(|&&p| p).count());
        let sum: f64 = outcome.trace.iter().map(|f| f.contribution).sum();
        prop_assert!((1.0 - sum - outcome.alignment).abs() < 1e-9, "1 - {} vs {}", sum, outcome.alignment);
        // The definition: alignment = Σ w_p score_p / Σ w_p, score_p = 1 − min(1, Σ penalties).
        let total: f64 = w.iter().sum();
        let mut expected = 0.0;
        for (p, &principle) in Principle::ALL.iter().enumerate() {
            let sum: f64 = rules.iter().zip(&present)
                .filter(|((q, _), &on)| *q == p && on)
                .map(|((_, penalty), _)| penalty)
                .sum();
            let score = 1.0 - sum.min(1.0);
            let reported = outcome.principles.iter().find(|s| s.principle == principle).unwrap().score;
            prop_assert!((score - reported).abs() < 1e-9);
            expected += w[p] * score;
        }
        prop_assert!((expected / total - outcome.alignment).abs() < 1e-9);
    }

    #[test]
    fn changing_one_weight_changes_alignment_as_the_formula_says(
        (rules, present, w) in arb_case(),
        which in 0usize..7,
        new_weight in 0.0f64..5.0,
    ) {
        let specs = marker_rules(&rules);
        let text = text_of(&present);
        let before = run(&specs, weights(&w), &text);
        let mut w2 = w.clone();
        w2[which] = new_weight;
        prop_assume!(w2.iter().sum::<f64>() > 0.1);
        let after = run(&specs, weights(&w2), &text);
        let score = |p: usize| before.principles[p].score;
        let old_total: f64 = w.iter().sum();
        let numerator = before.alignment * old_total - w[which] * score(which) + new_weight * score(which);
        let expected = numerator / (old_total - w[which] + new_weight);
        prop_assert!((after.alignment - expected).abs() < 1e-9, "{} vs {}", after.alignment, expected);
    }

    #[test]
    fn counterfactuals_are_recomputed_without_the_rule((rules, present, w) in arb_case()) {
        let specs = marker_rules(&rules);
        let text = text_of(&present);
        let outcome = run(&specs, weights(&w), &text);
        for fired in &outcome.trace {
            let without: Vec<RuleSpec> = specs.iter().filter(|s| s.id != fired.rule_id).cloned().collect();
            let again = run(&without, weights(&w), &text);
            prop_assert!((again.alignment - fired.counterfactual_alignment).abs() < 1e-12);
            prop_assert!(fired.counterfactual_alignment >= outcome.alignment - 1e-12);
        }
    }
}

#[test]
fn penalties_over_one_are_scaled_within_the_principle() {
    // Two HARMLESS rules of 0.8 and 0.4: scaled to 2/3 and 1/3.
    let specs = marker_rules(&[(1, 0.8), (1, 0.4)]);
    let outcome = run(&specs, PrincipleWeights::research(), "m0 m1");
    assert!((outcome.trace[0].scaled_penalty - 0.8 / 1.2).abs() < 1e-12);
    assert!((outcome.trace[1].scaled_penalty - 0.4 / 1.2).abs() < 1e-12);
    let expected = 1.0 - 3.0 / 14.5;
    assert!((outcome.alignment - expected).abs() < 1e-12);
    // Without the 0.8 rule HARMLESS loses only 0.4.
    assert!((outcome.trace[0].counterfactual_alignment - (1.0 - 3.0 * 0.4 / 14.5)).abs() < 1e-12);
    assert!(!outcome.passed, "{} < 0.8", outcome.alignment);
}

#[test]
fn research_weights_are_the_seeds() {
    let w = PrincipleWeights::research();
    let expected = [
        (Principle::Harmless, 3.0),
        (Principle::Privacy, 2.5),
        (Principle::Aligned, 2.5),
        (Principle::Honest, 2.0),
        (Principle::Transparent, 2.0),
        (Principle::Fair, 1.5),
        (Principle::Helpful, 1.0),
    ];
    for (p, v) in expected {
        assert_eq!(w.get(p), v, "{p}");
    }
    assert_eq!(w.total(), 14.5);
}
