//! Agreement with scipy.stats / statsmodels within 1e-6 on the committed fixture
//! (regenerate with `python3 fixtures/make_stats_fixture.py`).

use flags::stats::{
    chi_square_2x2, mann_whitney_u, sample_ratio_mismatch, sample_size_means,
    sample_size_proportions, welch_t_test, MannWhitneyMethod, Summary,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture() -> Value {
    let text = include_str!("../fixtures/stats_scipy.json");
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn cases<'a>(fixture: &'a Value, key: &str) -> &'a [Value] {
    let list = fixture[key].as_array().expect("fixture section is a list");
    assert!(!list.is_empty(), "fixture section {key} is empty");
    list
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number"))
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"))
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Absolute agreement, relative for magnitudes above 1 (statistics, sample sizes).
fn assert_close(what: &str, ours: f64, reference: f64) {
    let scale = reference.abs().max(1.0);
    assert!(
        (ours - reference).abs() <= TOLERANCE * scale,
        "{what}: ours {ours}, scipy {reference}"
    );
}

#[test]
fn welch_t_matches_scipy_ttest_ind() {
    let f = fixture();
    for case in cases(&f, "welch") {
        let t = Summary::from_values(&floats(case, "treatment")).unwrap();
        let c = Summary::from_values(&floats(case, "control")).unwrap();
        let r = welch_t_test(&t, &c, num(case, "confidence")).unwrap();
        assert_close("t", r.t, num(case, "t"));
        assert_close("df", r.df, num(case, "df"));
        assert_close("p", r.p_value, num(case, "p"));
        assert_close("ci_low", r.ci_low, num(case, "ci_low"));
        assert_close("ci_high", r.ci_high, num(case, "ci_high"));
    }
}

#[test]
fn chi_square_2x2_matches_scipy_chi2_contingency() {
    let f = fixture();
    for case in cases(&f, "chi2_2x2") {
        let count = |k: &str| case[k].as_u64().expect("count");
        let r = chi_square_2x2(
            count("treatment_conversions"),
            count("treatment_n"),
            count("control_conversions"),
            count("control_n"),
            case["yates"].as_bool().expect("bool"),
        )
        .unwrap();
        assert_close("chi2", r.statistic, num(case, "statistic"));
        assert_close("p", r.p_value, num(case, "p"));
        assert_close("dof", r.df, num(case, "dof"));
    }
}

#[test]
fn mann_whitney_matches_scipy_auto_and_asymptotic() {
    let f = fixture();
    for case in cases(&f, "mann_whitney") {
        let r = mann_whitney_u(&floats(case, "x"), &floats(case, "y")).unwrap();
        assert_close("U", r.u, num(case, "u"));
        assert_close("p", r.p_value, num(case, "p"));
        let expected = match case["method"].as_str() {
            Some("exact") => MannWhitneyMethod::Exact,
            _ => MannWhitneyMethod::Asymptotic,
        };
        assert_eq!(r.method, expected);
    }
}

#[test]
fn srm_matches_scipy_chisquare() {
    let f = fixture();
    for case in cases(&f, "srm") {
        let observed: Vec<u64> = case["observed"]
            .as_array()
            .expect("list")
            .iter()
            .map(|x| x.as_u64().expect("count"))
            .collect();
        let r = sample_ratio_mismatch(&observed, &floats(case, "weights")).unwrap();
        assert_close("chi2", r.test.statistic, num(case, "statistic"));
        assert_close("p", r.test.p_value, num(case, "p"));
        assert_eq!(r.mismatch, num(case, "p") < 0.001);
    }
}

#[test]
fn sample_size_means_matches_statsmodels() {
    let f = fixture();
    for case in cases(&f, "sample_size_means") {
        let r = sample_size_means(
            num(case, "std_dev"),
            num(case, "mde"),
            num(case, "alpha"),
            num(case, "power"),
        )
        .unwrap();
        let reference = num(case, "statsmodels_n");
        assert_close("n", r.exact, reference);
        assert_eq!(r.per_variant, reference.ceil() as u64);
        assert!(r.exact <= num(case, "closed_n"));
    }
}

#[test]
fn sample_size_proportions_matches_reference_solver() {
    let f = fixture();
    for case in cases(&f, "sample_size_proportions") {
        let r = sample_size_proportions(
            num(case, "baseline"),
            num(case, "mde"),
            num(case, "alpha"),
            num(case, "power"),
        )
        .unwrap();
        assert_close("n", r.exact, num(case, "exact_n"));
        assert!(r.exact <= num(case, "closed_n"));
    }
}
