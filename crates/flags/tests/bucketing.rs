//! Bucketing against the `mmh3` reference vectors, uniformity, stickiness and minimal movement.

use flags::{bucket, murmur3_x86_32, variant_index, BUCKETS};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("bucketing_vectors.json");
    serde_json::from_str(text).unwrap()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn murmur3_matches_mmh3_vectors() {
    let v = vectors();
    let cases = v["murmur3_x86_32"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let data = hex_bytes(case["hex"].as_str().unwrap());
        let seed = case["seed"].as_u64().unwrap() as u32;
        let want = case["hash"].as_u64().unwrap() as u32;
        assert_eq!(murmur3_x86_32(&data, seed), want, "case {case}");
    }
}

#[test]
fn buckets_match_mmh3_vectors() {
    let v = vectors();
    let cases = v["buckets"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let flag = case["flag_key"].as_str().unwrap();
        let key = case["bucketing_key"].as_str().unwrap();
        assert_eq!(
            u64::from(bucket(flag, key)),
            case["bucket"].as_u64().unwrap(),
            "case {case}"
        );
    }
}

/// Chi-square over 100 equal bins of 100 buckets each, 100,000 keys: the statistic must stay
/// under the 0.999 quantile of chi-square with 99 degrees of freedom (scipy.stats.chi2.ppf(0.999, 99)
/// = 148.23), i.e. p > 0.001.
#[test]
fn buckets_are_uniform_chi_square() {
    const KEYS: usize = 100_000;
    const BINS: usize = 100;
    let mut counts = [0usize; BINS];
    for i in 0..KEYS {
        let b = bucket("uniformity", &format!("user-{i}")) as usize;
        counts[b * BINS / BUCKETS as usize] += 1;
    }
    let expected = KEYS as f64 / BINS as f64;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 148.23, "chi-square {chi2} (p < 0.001)");
}

/// An independent oracle for the variant of a bucket: expand the weights into a table of 10,000
/// entries.
fn table(weights: &[u32]) -> Vec<Option<usize>> {
    let mut t = Vec::with_capacity(BUCKETS as usize);
    for (i, w) in weights.iter().enumerate() {
        t.extend(std::iter::repeat_n(Some(i), *w as usize));
    }
    t.resize(BUCKETS as usize, None);
    t
}

fn weights_strategy() -> impl Strategy<Value = Vec<u32>> {
    // Cut points of [0, 10000] give weights that sum to 10,000.
    prop::collection::vec(0u32..=BUCKETS, 1..6).prop_map(|mut cuts| {
        cuts.sort_unstable();
        let mut prev = 0;
        let mut w: Vec<u32> = cuts
            .iter()
            .map(|c| {
                let d = c - prev;
                prev = *c;
                d
            })
            .collect();
        w.push(BUCKETS - prev);
        w
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn variant_index_matches_table(weights in weights_strategy(), b in 0u16..10_000) {
        prop_assert_eq!(variant_index(&weights, b), table(&weights)[b as usize]);
    }

    /// Raising the rollout never removes a key that was in: membership is `bucket < rollout`.
    #[test]
    fn raising_rollout_keeps_everyone_in(key in ".{0,20}", low in 0u32..=10_000, raise in 0u32..=10_000) {
        let high = (low + raise).min(BUCKETS);
        let b = u32::from(bucket("sticky", &key));
        if b < low {
            prop_assert!(b < high);
        }
    }

    /// Moving weight between two adjacent variants moves exactly |delta| buckets, the fewest any
    /// assignment can move (the variant that shrinks must lose |delta| buckets).
    #[test]
    fn adjacent_weight_change_moves_minimum(weights in weights_strategy(), pick in any::<prop::sample::Index>(), delta in 0u32..=10_000) {
        prop_assume!(weights.len() >= 2);
        let i = pick.index(weights.len() - 1);
        let delta = delta.min(weights[i + 1]);
        let mut changed = weights.clone();
        changed[i] += delta;
        changed[i + 1] -= delta;
        let moved = (0..10_000u16)
            .filter(|b| variant_index(&weights, *b) != variant_index(&changed, *b))
            .count();
        prop_assert_eq!(moved as u32, delta);
    }

    /// For any reweighting, the buckets that move are bounded by the total shift of the range
    /// boundaries (the honest general guarantee: only buckets between old and new boundaries move).
    #[test]
    fn any_weight_change_moves_only_boundary_buckets(a in weights_strategy(), b in weights_strategy()) {
        prop_assume!(a.len() == b.len());
        let bounds = |w: &[u32]| w.iter().scan(0u32, |s, x| { *s += x; Some(*s) }).collect::<Vec<_>>();
        let shift: u32 = bounds(&a).iter().zip(bounds(&b)).map(|(x, y)| x.abs_diff(y)).sum();
        let moved = (0..10_000u16).filter(|k| variant_index(&a, *k) != variant_index(&b, *k)).count();
        prop_assert!(moved as u32 <= shift);
    }
}

/// The vectors printed in docs/flags.md are the ones the code computes.
#[test]
fn documented_vectors_hold() {
    let doc = include_str!("../../../docs/flags.md");
    let unquote = |s: &str| -> String {
        let s = s.trim();
        if s == "(empty)" {
            String::new()
        } else {
            s.trim_matches('`').to_owned()
        }
    };
    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() != 6 {
            continue;
        }
        let (Ok(hash), Ok(b)) = (
            cells[3].trim().parse::<u32>(),
            cells[4].trim().parse::<u16>(),
        ) else {
            continue;
        };
        let (flag, key) = (unquote(cells[1]), unquote(cells[2]));
        assert_eq!(
            murmur3_x86_32(format!("{flag}:{key}").as_bytes(), 0),
            hash,
            "{line}"
        );
        assert_eq!(bucket(&flag, &key), b, "{line}");
        rows += 1;
    }
    assert_eq!(rows, 6);
}
