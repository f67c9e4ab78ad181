//! Reading evaluation contexts from JSON as OpenFeature clients send them.

use flags::{AttributeValue, EvaluationContext, FlagSet, Reason};
use proptest::prelude::*;
use serde_json::{json, Value};

#[test]
fn contexts_are_read_flattened_and_nulls_dropped() {
    let ctx = EvaluationContext::from_json(&json!({
        "targetingKey": "u1",
        "tier": "pro",
        "seats": 12,
        "beta": true,
        "tags": ["a", 2, null, false],
        "user": {"plan": "team", "org": {"region": "eu"}, "gone": null},
        "missing": null
    }))
    .unwrap();
    assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
    let get = |name: &str| ctx.attributes.get(name).cloned();
    assert_eq!(get("tier"), Some(AttributeValue::from("pro")));
    assert_eq!(get("seats"), Some(AttributeValue::Number(12.0)));
    assert_eq!(get("beta"), Some(AttributeValue::Bool(true)));
    assert_eq!(
        get("tags"),
        Some(AttributeValue::List(vec![
            AttributeValue::from("a"),
            AttributeValue::Number(2.0),
            AttributeValue::Bool(false)
        ]))
    );
    assert_eq!(get("user.plan"), Some(AttributeValue::from("team")));
    assert_eq!(get("user.org.region"), Some(AttributeValue::from("eu")));
    assert_eq!(get("user.gone"), None);
    assert_eq!(get("missing"), None);
    assert_eq!(ctx.attributes.len(), 6);

    let null_key = EvaluationContext::from_json(&json!({"targetingKey": null})).unwrap();
    assert_eq!(null_key, EvaluationContext::default());
}

#[test]
fn bad_contexts_name_the_member() {
    let cases = [
        (json!([1]), "context.: must be a JSON object, not a list"),
        (
            json!({"targetingKey": 5}),
            "context.targetingKey: must be a string, not a number",
        ),
        (
            json!({"tags": ["a", {"b": 1}]}),
            "context.tags[1]: list elements must be strings, numbers or booleans, not an object",
        ),
        (
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
            "context.a.b.c.d.e.f.g.h: objects may be nested at most 8 deep",
        ),
    ];
    for (input, expected) in cases {
        let err = EvaluationContext::from_json(&input).unwrap_err();
        assert_eq!(err.to_string(), expected, "{input}");
    }
}

#[test]
fn flattened_attributes_can_be_targeted() {
    let set = FlagSet::from_json(
        &json!([{
            "key": "eu-only", "type": "targeting", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "off", "off_variant": "off",
            "rules": [{"id": "eu", "when": {"attribute": "user.org.region", "op": "in", "values": ["eu"]}, "variant": "on"}]
        }])
        .to_string(),
    )
    .unwrap();
    let ctx = EvaluationContext::from_json(&json!({"user": {"org": {"region": "eu"}}})).unwrap();
    let e = set.evaluate("eu-only", &ctx, None, 0);
    assert_eq!((e.reason, e.rule_id), (Reason::TargetingMatch, Some("eu")));
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(12, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("targetingKey".to_owned()),
                    Just("tier".to_owned()),
                    ".{0,5}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any JSON at all is either a context or a named refusal, and a context evaluates every
    /// example flag without panicking.
    #[test]
    fn any_json_is_a_context_or_a_named_error(json in any_json()) {
        let set = FlagSet::from_json(include_str!("../../../examples/flags.json")).unwrap();
        match EvaluationContext::from_json(&json) {
            Ok(ctx) => {
                for (_, e) in set.evaluate_all(&ctx, Some("production"), 1_700_000_000_000) {
                    prop_assert_eq!(e.error_code.is_some(), e.reason == Reason::Error);
                }
            }
            Err(err) => prop_assert!(err.to_string().starts_with("context.")),
        }
    }
}
