//! Matches the engine against the committed numpy oracle fixture
//! (`oracle/fixture.jsonl`, produced by `oracle/weber_oracle.py`).

use serde::Deserialize;
use weber::{Interaction, ProfileState, Update, WeberParams, WeberProfile};

#[derive(Deserialize)]
struct Expected {
    weber_constant: f64,
    calculation_confidence: f64,
    sensitivity_segment: String,
    bias_ratio: Option<f64>,
    window_len: usize,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    window: usize,
    eps: f64,
    interactions: Vec<(f64, i64, u64)>,
    expected: Expected,
}

const TOL: f64 = 1e-6;

fn close(a: f64, b: f64) -> bool {
    // Absolute 1e-6, relative for large bias ratios.
    (a - b).abs() <= TOL * b.abs().max(1.0)
}

fn check(name: &str, got: &WeberProfile, exp: &Expected) -> Result<(), String> {
    let mut errs = Vec::new();
    if !close(got.weber_constant, exp.weber_constant) {
        errs.push(format!(
            "constant {} vs {}",
            got.weber_constant, exp.weber_constant
        ));
    }
    if !close(got.calculation_confidence, exp.calculation_confidence) {
        errs.push(format!(
            "confidence {} vs {}",
            got.calculation_confidence, exp.calculation_confidence
        ));
    }
    if got.sensitivity_segment.as_str() != exp.sensitivity_segment {
        errs.push(format!(
            "segment {} vs {}",
            got.sensitivity_segment, exp.sensitivity_segment
        ));
    }
    match (got.bias_ratio, exp.bias_ratio) {
        (None, None) => {}
        (Some(a), Some(b)) if close(a, b) => {}
        (a, b) => errs.push(format!("bias {a:?} vs {b:?}")),
    }
    if got.window_len != exp.window_len {
        errs.push(format!(
            "window_len {} vs {}",
            got.window_len, exp.window_len
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", errs.join("; ")))
    }
}

fn cases() -> Vec<Case> {
    let text = include_str!("../oracle/fixture.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line parses"))
        .collect()
}

#[test]
fn oracle_fixture_matches_batch_and_streaming() {
    let cases = cases();
    assert!(cases.len() >= 200, "fixture has {} cases", cases.len());
    let mut failures = Vec::new();
    let mut max_diff = 0.0f64;
    for case in &cases {
        let params = WeberParams::new(case.window, case.eps).expect("fixture params valid");
        let inter: Vec<Interaction> = case
            .interactions
            .iter()
            .map(|&(s, t, tb)| Interaction::new(s, t, tb))
            .collect();

        // Batch.
        let got = weber::profile(&inter, &params).expect("fixture sentiments valid");
        if let Err(e) = check(&case.name, &got, &case.expected) {
            failures.push(format!("batch {e}"));
        }
        max_diff = max_diff
            .max((got.weber_constant - case.expected.weber_constant).abs())
            .max((got.calculation_confidence - case.expected.calculation_confidence).abs());

        // Streaming replay (store + rebuild on NeedsRebuild) ends identical.
        let mut store: Vec<Interaction> = Vec::new();
        let mut state = ProfileState::new();
        for it in &inter {
            match state.apply(it, &params).expect("valid") {
                Update::Updated(_) => store.push(*it),
                Update::Duplicate => {}
                Update::NeedsRebuild => {
                    if !store.iter().any(|s| s.key() == it.key()) {
                        store.push(*it);
                    }
                    state = ProfileState::rebuild(&store, &params).expect("valid");
                }
            }
        }
        let streamed = state.profile(&params).expect("covers window");
        if streamed != got {
            failures.push(format!(
                "{}: streaming {streamed:?} != batch {got:?}",
                case.name
            ));
        }
    }
    eprintln!(
        "oracle: {} cases, max |diff| constant/confidence = {max_diff:e}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
