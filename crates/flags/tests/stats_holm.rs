//! Holm's correction against statsmodels (`fixtures/make_holm_fixtures.py`) and its invariants.

use flags::stats::holm;
use proptest::prelude::*;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[test]
fn holm_matches_statsmodels() {
    let fixture: Value =
        serde_json::from_str(include_str!("holm_statsmodels.json")).expect("fixture parses");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let (mut values, mut largest_gap) = (0usize, 0.0f64);
    for case in cases {
        let p = floats(&case["p"]);
        let want = floats(&case["adjusted"]);
        let got = holm(&p);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-12,
                "holm({p:?}) = {got:?}, statsmodels {want:?}"
            );
            values += 1;
            largest_gap = largest_gap.max((g - w).abs());
        }
    }
    eprintln!(
        "holm vs statsmodels multipletests(method=\"holm\"): {} cases, {values} adjusted p-values, \
         largest gap {largest_gap:.3e}",
        cases.len()
    );
}

#[test]
fn holm_edge_cases() {
    assert!(holm(&[]).is_empty());
    assert_eq!(holm(&[0.03]), vec![0.03]);
    // A NaN (a test that could not be computed) rejects nothing and does not poison the rest.
    let adjusted = holm(&[f64::NAN, 0.01]);
    assert_eq!(adjusted, vec![1.0, 0.02]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// In the order of the raw p-values the adjusted ones never decrease; each is at least its
    /// raw p-value and at most 1; the smallest is multiplied by exactly m (capped).
    #[test]
    fn holm_is_monotone_bounded_and_conservative(p in prop::collection::vec(0.0f64..=1.0, 1..40)) {
        let adjusted = holm(&p);
        prop_assert_eq!(adjusted.len(), p.len());
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
        for pair in order.windows(2) {
            prop_assert!(adjusted[pair[0]] <= adjusted[pair[1]], "{:?} -> {:?}", p, adjusted);
        }
        for (raw, adj) in p.iter().zip(&adjusted) {
            prop_assert!(*adj >= *raw && *adj <= 1.0, "{raw} -> {adj}");
        }
        let smallest = order[0];
        prop_assert_eq!(adjusted[smallest], (p[smallest] * p.len() as f64).min(1.0));
    }

    /// Holm never rejects less than Bonferroni and never more than the uncorrected tests.
    #[test]
    fn holm_lies_between_bonferroni_and_raw(p in prop::collection::vec(0.0f64..=1.0, 1..40), alpha in 0.001f64..0.2) {
        let adjusted = holm(&p);
        let m = p.len() as f64;
        for (raw, adj) in p.iter().zip(&adjusted) {
            prop_assert!(*adj <= (raw * m).min(1.0));
            if *adj < alpha {
                prop_assert!(*raw < alpha);
            }
        }
    }
}
