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

    /// `bucket` hashes `"{flag}:{key}"` in pieces; the pieces may split 4-byte blocks anywhere.
    #[test]
    fn bucket_is_the_hash_of_the_joined_text(flag in ".{0,40}", key in ".{0,40}") {
        let joined = murmur3_x86_32(format!("{flag}:{key}").as_bytes(), 0);
        prop_assert_eq!(u32::from(bucket(&flag, &key)), joined % BUCKETS);
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

/// A targeting flag whose single rule (matching `region` = `eu`) splits its matches: rollout
/// `rollout_bp`, then `variants` (`[{"variant", "weight_bp"}]`); everyone else gets `off`.
fn rule_split_flag(key: &str, rollout_bp: u32, variants: &Value) -> flags::FlagSet {
    let mut defs: Vec<Value> = variants
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::json!({"key": v["variant"], "value": v["variant"]}))
        .collect();
    defs.push(serde_json::json!({"key": "off", "value": "off"}));
    let flag = serde_json::json!({
        "key": key, "type": "targeting", "status": "active",
        "variants": defs, "default_variant": "off", "off_variant": "off",
        "rules": [{"id": "eu", "when": {"attribute": "region", "op": "equals", "value": "eu"},
                   "split": {"rollout_bp": rollout_bp, "variants": variants}}]
    });
    flags::FlagSet::compile(vec![serde_json::from_value(flag).unwrap()]).unwrap()
}

fn eu(key: &str) -> flags::EvaluationContext {
    let mut c = flags::EvaluationContext::with_key(key);
    c.attributes
        .insert("region".into(), flags::AttributeValue::String("eu".into()));
    c
}

/// The published rule-split vectors (computed with `mmh3` by fixtures/make_bucketing_vectors.py):
/// in or out of the rule's rollout, and the variant, through the evaluator.
#[test]
fn rule_splits_match_mmh3_vectors() {
    let v = vectors();
    let cases = v["rule_splits"].as_array().unwrap();
    assert!(cases.len() >= 50);
    let mut ins = 0;
    for case in cases {
        let flag = case["flag_key"].as_str().unwrap();
        let key = case["bucketing_key"].as_str().unwrap();
        let rollout = case["rollout_bp"].as_u64().unwrap() as u32;
        assert_eq!(
            u64::from(bucket(flag, key)),
            case["bucket"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(bucket(&format!("{flag}/split"), key)),
            case["split_bucket"].as_u64().unwrap()
        );
        let set = rule_split_flag(flag, rollout, &case["variants"]);
        let e = set.evaluate(flag, &eu(key), None, 0);
        assert_eq!(e.rule_id, Some("eu"), "case {case}");
        assert_eq!(
            u64::from(e.bucket.unwrap()),
            case["bucket"].as_u64().unwrap()
        );
        if case["in_rollout"].as_bool().unwrap() {
            ins += 1;
            assert_eq!(e.reason, flags::Reason::Split, "case {case}");
            assert_eq!(e.variant, case["variant"].as_str(), "case {case}");
        } else {
            assert_eq!(e.reason, flags::Reason::Default, "case {case}");
            assert_eq!(e.variant, Some("off"), "case {case}");
        }
    }
    assert!(
        ins > 0 && ins < cases.len(),
        "vectors both in and out of rollouts"
    );
}

/// Inside a rule's split the variants get their weights' shares: chi-square over 30,000 keys
/// with weights 20/30/50 % stays under the 0.999 quantile of chi-square with 2 degrees of
/// freedom (13.816), and the rollout admits its share (chi-square, 1 df: 10.828).
#[test]
fn rule_split_variants_are_uniform_chi_square() {
    const KEYS: usize = 30_000;
    let variants = serde_json::json!([
        {"variant": "a", "weight_bp": 2000},
        {"variant": "b", "weight_bp": 3000},
        {"variant": "c", "weight_bp": 5000}
    ]);
    let set = rule_split_flag("rule-uniformity", 4000, &variants);
    let mut counts = [0usize; 3];
    let mut inside = 0usize;
    for i in 0..KEYS {
        let e = set.evaluate("rule-uniformity", &eu(&format!("user-{i}")), None, 0);
        match e.variant {
            Some("a") => counts[0] += 1,
            Some("b") => counts[1] += 1,
            Some("c") => counts[2] += 1,
            _ => continue,
        }
        inside += 1;
    }
    let expected_in = KEYS as f64 * 0.4;
    let expected_out = KEYS as f64 * 0.6;
    let rollout_chi2 = (inside as f64 - expected_in).powi(2) / expected_in
        + ((KEYS - inside) as f64 - expected_out).powi(2) / expected_out;
    assert!(rollout_chi2 < 10.828, "rollout chi-square {rollout_chi2}");
    let chi2: f64 = counts
        .iter()
        .zip([0.2, 0.3, 0.5])
        .map(|(&c, share)| {
            let expected = inside as f64 * share;
            (c as f64 - expected).powi(2) / expected
        })
        .sum();
    assert!(chi2 < 13.816, "variant chi-square {chi2} over {counts:?}");
    eprintln!(
        "rule split over {KEYS} keys: {inside} inside a 40 % rollout (chi-square {rollout_chi2:.3}, \
         df 1, limit 10.828); variants {counts:?} for 20/30/50 (chi-square {chi2:.3}, df 2, limit 13.816)"
    );
}

/// Two versions of a flag for the stickiness properties: a split rule with `rollout_bp`, and,
/// when `edited`, the rule's condition widened, its id changed and another rule put before it.
fn sticky_rule_flag(rollout_bp: u32, edited: bool) -> flags::FlagSet {
    let split = serde_json::json!({"rollout_bp": rollout_bp, "variants": [
        {"variant": "a", "weight_bp": 3000}, {"variant": "b", "weight_bp": 7000}]});
    let rules = if edited {
        serde_json::json!([
            {"id": "free", "when": {"attribute": "tier", "op": "equals", "value": "free"}, "variant": "off"},
            {"id": "eu-or-uk", "when": {"attribute": "region", "op": "in", "values": ["eu", "uk"]}, "split": split}
        ])
    } else {
        serde_json::json!([
            {"id": "eu", "when": {"attribute": "region", "op": "equals", "value": "eu"}, "split": split}
        ])
    };
    let flag = serde_json::json!({
        "key": "sticky-rule", "type": "targeting", "status": "active",
        "variants": [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "off", "value": 0}],
        "default_variant": "off", "off_variant": "off", "rules": rules
    });
    flags::FlagSet::compile(vec![serde_json::from_value(flag).unwrap()]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Raising a rule's rollout never removes a matched key from it, nor changes its variant.
    #[test]
    fn raising_rule_rollout_keeps_everyone(key in ".{1,20}", low in 0u32..=10_000, raise in 0u32..=10_000) {
        let high = (low + raise).min(BUCKETS);
        let c = eu(&key);
        let before = sticky_rule_flag(low, false);
        let after = sticky_rule_flag(high, false);
        let (x, y) = (before.evaluate("sticky-rule", &c, None, 0), after.evaluate("sticky-rule", &c, None, 0));
        if x.reason == flags::Reason::Split {
            prop_assert_eq!(y.reason, flags::Reason::Split);
            prop_assert_eq!(x.variant, y.variant);
        }
    }

    /// Editing the rule's condition, renaming it or moving it behind another rule keeps the
    /// rollout membership and variant of everyone the rule still matches.
    #[test]
    fn editing_or_moving_a_rule_keeps_variants(key in ".{1,20}", rollout in 0u32..=10_000, tier in prop::sample::select(vec!["free", "pro"])) {
        let mut c = eu(&key);
        c.attributes.insert("tier".into(), flags::AttributeValue::String(tier.into()));
        let (old, new) = (sticky_rule_flag(rollout, false), sticky_rule_flag(rollout, true));
        let before = old.evaluate("sticky-rule", &c, None, 0);
        let after = new.evaluate("sticky-rule", &c, None, 0);
        if after.rule_id == Some("eu-or-uk") {
            prop_assert_eq!((before.reason, before.variant, before.bucket), (after.reason, after.variant, after.bucket));
        } else {
            prop_assert_eq!(tier, "free");
        }
    }
}

/// The rule-split vectors printed in docs/flags.md are the ones the evaluator serves.
#[test]
fn documented_rule_split_vectors_hold() {
    let doc = include_str!("../../../docs/flags.md");
    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 9 {
            continue;
        }
        let (Ok(rollout), Ok(b), Ok(split)) = (
            cells[3].parse::<u32>(),
            cells[5].parse::<u16>(),
            cells[6].parse::<u16>(),
        ) else {
            continue;
        };
        let (flag, key) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'));
        let variants: Vec<Value> = cells[4]
            .split(", ")
            .map(|part| {
                let (name, weight) = part.rsplit_once(' ').unwrap();
                serde_json::json!({"variant": name.trim_matches('`'), "weight_bp": weight.parse::<u32>().unwrap()})
            })
            .collect();
        assert_eq!(bucket(flag, key), b, "{line}");
        assert_eq!(bucket(&format!("{flag}/split"), key), split, "{line}");
        let set = rule_split_flag(flag, rollout, &Value::Array(variants));
        let e = set.evaluate(flag, &eu(key), None, 0);
        let served = match e.reason {
            flags::Reason::Split => format!("`{}` (SPLIT)", e.variant.unwrap()),
            flags::Reason::Default => "default (DEFAULT)".to_owned(),
            other => panic!("{other:?} for {line}"),
        };
        assert_eq!(served, cells[7], "{line}");
        rows += 1;
    }
    assert_eq!(rows, 7);
}
