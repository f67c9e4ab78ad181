//! The stale-flag rule "serves one variant to everyone" agrees with evaluation: whenever
//! `single_variant_served` names a variant, every context is served exactly that variant.

use flags::{single_variant_served, EvaluationContext, Flag, FlagSet};
use proptest::prelude::*;
use serde_json::json;

/// A flag of two or three variants with a random split, rollout and environment override.
fn flag_strategy() -> impl Strategy<Value = Flag> {
    (
        2usize..=3,
        prop::sample::select(vec![0u32, 2_500, 5_000, 10_000]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![0u32, 5_000, 10_000])),
        prop::option::of(prop::sample::select(vec![0u32, 5_000, 10_000])),
        0usize..3,
        prop::option::of(0usize..3),
        prop::option::of(0usize..3),
    )
        .prop_map(
            |(n, first_weight, split, rollout, env_rollout, default, env_default, env_variant)| {
                let keys = ["a", "b", "c"];
                let weights: Vec<u32> = if split {
                    let rest = 10_000 - first_weight;
                    let mut w = vec![first_weight, rest];
                    w.resize(n, 0);
                    w
                } else {
                    vec![0; n]
                };
                let variants: Vec<_> = (0..n)
                    .map(|i| json!({"key": keys[i], "value": i, "weight_bp": weights[i]}))
                    .collect();
                let default = keys[default % n];
                let mut environment = json!({});
                if let Some(bp) = env_rollout.filter(|_| split) {
                    environment["rollout_bp"] = json!(bp);
                }
                if let Some(d) = env_default {
                    environment["default_variant"] = json!(keys[d % n]);
                }
                if let Some(v) = env_variant {
                    environment["variant"] = json!(keys[v % n]);
                }
                let mut flag = json!({
                    "key": "f", "type": "multivariate", "status": "active",
                    "variants": variants, "default_variant": default, "off_variant": default,
                    "environments": {"production": environment}
                });
                if let Some(bp) = rollout.filter(|_| split) {
                    flag["rollout_bp"] = json!(bp);
                }
                serde_json::from_value(flag).expect("a well-formed flag")
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_flag_said_to_serve_one_variant_serves_it_to_everyone(flag in flag_strategy(), users in prop::collection::vec("[a-z0-9]{1,12}", 40)) {
        let served = single_variant_served(&flag, "production", 0).map(str::to_owned);
        let set = FlagSet::compile(vec![flag]).map_err(|e| TestCaseError::reject(format!("{e:?}")))?;
        if let Some(variant) = served {
            for user in users {
                let e = set.evaluate("f", &EvaluationContext::with_key(user), Some("production"), 0);
                prop_assert_eq!(e.variant, Some(variant.as_str()));
            }
        }
    }
}
