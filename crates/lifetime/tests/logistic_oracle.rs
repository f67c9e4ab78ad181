//! The penalised logistic model and AUC against scikit-learn (fixture written by
//! `oracle/logistic_oracle.py`; see its docstring for how the oracle fits).

use lifetime::churn::{auc, LogisticModel, LogisticOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    l2_penalty: f64,
    feature_names: Vec<String>,
    rows: Vec<Vec<f64>>,
    labels: Vec<bool>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    means: Vec<f64>,
    sds: Vec<f64>,
    coefficients: Vec<f64>,
    intercept: f64,
    probabilities: Vec<f64>,
    auc_of_probabilities: f64,
    tied_scores: Vec<f64>,
    auc_of_tied_scores: f64,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/logistic_oracle.json");
    match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance,
            "{what}[{i}]: got {g}, sklearn {w} (tolerance {tolerance})"
        );
    }
}

#[test]
fn coefficients_match_scikit_learn_within_1e6() {
    let fixture = fixture();
    assert!(fixture.cases.len() >= 3);
    for case in fixture.cases {
        let names: Vec<&str> = case.feature_names.iter().map(String::as_str).collect();
        let options = LogisticOptions {
            l2_penalty: case.l2_penalty,
            ..LogisticOptions::default()
        };
        let model = match LogisticModel::fit(&names, &case.rows, &case.labels, &options) {
            Ok(m) => m,
            Err(e) => panic!("{}: {e}", case.name),
        };
        let name = case.name.as_str();
        close(
            &format!("{name} means"),
            &model.means,
            &case.expected.means,
            1e-9,
        );
        close(&format!("{name} sds"), &model.sds, &case.expected.sds, 1e-9);
        close(
            &format!("{name} coefficients"),
            &model.coefficients,
            &case.expected.coefficients,
            1e-6,
        );
        close(
            &format!("{name} intercept"),
            &[model.intercept],
            &[case.expected.intercept],
            1e-6,
        );
        let probabilities: Vec<f64> = case.rows.iter().map(|r| model.predict(r)).collect();
        close(
            &format!("{name} probabilities"),
            &probabilities,
            &case.expected.probabilities,
            1e-6,
        );
    }
}

#[test]
fn auc_matches_roc_auc_score_including_ties() {
    for case in fixture().cases {
        let name = case.name.as_str();
        let got = auc(&case.expected.probabilities, &case.labels);
        close(
            &format!("{name} auc"),
            &[got.unwrap_or(f64::NAN)],
            &[case.expected.auc_of_probabilities],
            1e-12,
        );
        let got = auc(&case.expected.tied_scores, &case.labels);
        close(
            &format!("{name} auc with ties"),
            &[got.unwrap_or(f64::NAN)],
            &[case.expected.auc_of_tied_scores],
            1e-12,
        );
    }
}
