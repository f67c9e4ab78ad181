//! Table-driven tests of evaluation semantics and validation (see docs/flags.md).

use std::collections::BTreeMap;

use flags::{
    AttributeValue, DisabledBy, ErrorCode, EvaluationContext, Flag, FlagSet, Reason,
    ValidationError,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn flag(v: Value) -> Flag {
    serde_json::from_value(v).unwrap()
}

fn set(flags: Vec<Value>) -> FlagSet {
    FlagSet::compile(flags.into_iter().map(flag).collect()).unwrap()
}

fn errors(flags: Vec<Value>) -> Vec<ValidationError> {
    FlagSet::compile(flags.into_iter().map(flag).collect()).unwrap_err()
}

fn ctx(v: Value) -> EvaluationContext {
    serde_json::from_value(v).unwrap()
}

fn targeting(condition: Value) -> Value {
    json!({
        "key": "t", "type": "targeting", "status": "active",
        "variants": [{"key": "yes", "value": true}, {"key": "no", "value": false}],
        "default_variant": "no", "off_variant": "no",
        "rules": [{"id": "r1", "when": condition, "variant": "yes"}]
    })
}

#[test]
fn every_operator() {
    // (condition, context, expected match)
    let rows: Vec<(Value, Value, bool)> = vec![
        (
            json!({"attribute": "region", "op": "in", "values": ["eu", "us"]}),
            json!({"region": "eu"}),
            true,
        ),
        (
            json!({"attribute": "region", "op": "in", "values": ["eu", "us"]}),
            json!({"region": "ap"}),
            false,
        ),
        (
            json!({"attribute": "region", "op": "not_in", "values": ["eu"]}),
            json!({"region": "ap"}),
            true,
        ),
        (
            json!({"attribute": "region", "op": "not_in", "values": ["eu"]}),
            json!({"region": "eu"}),
            false,
        ),
        (
            json!({"attribute": "region", "op": "not_in", "values": ["eu"]}),
            json!({}),
            false,
        ),
        (
            json!({"attribute": "segment", "op": "in", "values": ["beta"]}),
            json!({"segment": ["staff", "beta"]}),
            true,
        ),
        (
            json!({"attribute": "seats", "op": "in", "values": [5, 10]}),
            json!({"seats": 10}),
            true,
        ),
        (
            json!({"attribute": "role", "op": "equals", "value": "admin"}),
            json!({"role": "admin"}),
            true,
        ),
        (
            json!({"attribute": "role", "op": "equals", "value": "admin"}),
            json!({"role": "Admin"}),
            false,
        ),
        (
            json!({"attribute": "role", "op": "equals", "value": "admin", "case_insensitive": true}),
            json!({"role": "ADMIN"}),
            true,
        ),
        (
            json!({"attribute": "role", "op": "not_equals", "value": "admin"}),
            json!({"role": "viewer"}),
            true,
        ),
        (
            json!({"attribute": "paying", "op": "equals", "value": true}),
            json!({"paying": true}),
            true,
        ),
        (
            json!({"attribute": "paying", "op": "equals", "value": true}),
            json!({"paying": "true"}),
            false,
        ),
        (
            json!({"attribute": "email", "op": "starts_with", "value": "ops"}),
            json!({"email": "ops@x.io"}),
            true,
        ),
        (
            json!({"attribute": "email", "op": "ends_with", "value": "@x.io"}),
            json!({"email": "ops@x.io"}),
            true,
        ),
        (
            json!({"attribute": "email", "op": "ends_with", "value": "@X.IO", "case_insensitive": true}),
            json!({"email": "ops@x.io"}),
            true,
        ),
        (
            json!({"attribute": "email", "op": "contains", "value": "@"}),
            json!({"email": "nobody"}),
            false,
        ),
        (
            json!({"attribute": "device", "op": "regex", "value": "^ios-1[5-9]$"}),
            json!({"device": "ios-17"}),
            true,
        ),
        (
            json!({"attribute": "device", "op": "regex", "value": "^ios"}),
            json!({"device": "IOS-17"}),
            false,
        ),
        (
            json!({"attribute": "device", "op": "regex", "value": "^ios", "case_insensitive": true}),
            json!({"device": "IOS-17"}),
            true,
        ),
        (
            json!({"attribute": "seats", "op": "eq", "value": 3}),
            json!({"seats": 3}),
            true,
        ),
        (
            json!({"attribute": "seats", "op": "gt", "value": 3}),
            json!({"seats": 3}),
            false,
        ),
        (
            json!({"attribute": "seats", "op": "gte", "value": 3}),
            json!({"seats": 3}),
            true,
        ),
        (
            json!({"attribute": "seats", "op": "lt", "value": 3}),
            json!({"seats": 2.5}),
            true,
        ),
        (
            json!({"attribute": "seats", "op": "lte", "value": 3}),
            json!({"seats": 4}),
            false,
        ),
        (
            json!({"attribute": "seats", "op": "gt", "value": 3}),
            json!({"seats": "10"}),
            false,
        ),
        (
            json!({"attribute": "signup", "op": "before", "value": "2024-01-01T00:00:00Z"}),
            json!({"signup": "2023-12-31T23:59:59Z"}),
            true,
        ),
        (
            json!({"attribute": "signup", "op": "before", "value": "2024-01-01T00:00:00Z"}),
            json!({"signup": 1704067200000.0}),
            false,
        ),
        (
            json!({"attribute": "signup", "op": "after", "value": 1704067200000i64}),
            json!({"signup": "2024-01-01T00:00:00.001Z"}),
            true,
        ),
        (
            json!({"attribute": "app", "op": "semver_eq", "value": "2.3.0"}),
            json!({"app": "v2.3.0"}),
            true,
        ),
        (
            json!({"attribute": "app", "op": "semver_gt", "value": "2.3.0"}),
            json!({"app": "2.10.0"}),
            true,
        ),
        (
            json!({"attribute": "app", "op": "semver_lt", "value": "2.3.0"}),
            json!({"app": "2.3.0-beta.1"}),
            true,
        ),
        (
            json!({"attribute": "app", "op": "semver_gt", "value": "2.3.0"}),
            json!({"app": "not-a-version"}),
            false,
        ),
        (
            json!({"attribute": "tenant", "op": "is_set"}),
            json!({"tenant": "acme"}),
            true,
        ),
        (
            json!({"attribute": "tenant", "op": "is_set"}),
            json!({}),
            false,
        ),
        (
            json!({"attribute": "tenant", "op": "is_not_set"}),
            json!({}),
            true,
        ),
        (
            json!({"attribute": "targetingKey", "op": "starts_with", "value": "user-"}),
            json!({"targetingKey": "user-1"}),
            true,
        ),
        (
            json!({"attribute": "region", "op": "in", "values": ["eu"], "negate": true}),
            json!({"region": "us"}),
            true,
        ),
        (
            json!({"attribute": "region", "op": "not_in", "values": ["eu"], "negate": true}),
            json!({"region": "eu"}),
            true,
        ),
        (
            json!({"attribute": "tenant", "op": "is_set", "negate": true}),
            json!({"tenant": "a"}),
            false,
        ),
        (json!({"all": []}), json!({}), true),
        (json!({"any": []}), json!({}), false),
        (json!({"none": []}), json!({}), true),
        (
            json!({"all": [{"attribute": "a", "op": "equals", "value": 1}, {"attribute": "b", "op": "equals", "value": 2}]}),
            json!({"a": 1, "b": 2}),
            true,
        ),
        (
            json!({"all": [{"attribute": "a", "op": "equals", "value": 1}, {"attribute": "b", "op": "equals", "value": 2}]}),
            json!({"a": 1, "b": 3}),
            false,
        ),
        (
            json!({"any": [{"attribute": "a", "op": "equals", "value": 1}, {"attribute": "b", "op": "equals", "value": 2}]}),
            json!({"a": 0, "b": 2}),
            true,
        ),
        (
            json!({"none": [{"attribute": "a", "op": "equals", "value": 1}, {"any": [{"attribute": "b", "op": "equals", "value": 2}]}]}),
            json!({"a": 0, "b": 2}),
            false,
        ),
        (
            json!({"none": [{"attribute": "a", "op": "equals", "value": 1}]}),
            json!({"a": 0}),
            true,
        ),
    ];
    for (condition, context, expected) in rows {
        let s = set(vec![targeting(condition.clone())]);
        let e = s.evaluate("t", &ctx(context.clone()), None, 0);
        let (reason, value, rule) = if expected {
            (Reason::TargetingMatch, json!(true), Some("r1"))
        } else {
            (Reason::Default, json!(false), None)
        };
        assert_eq!(e.reason, reason, "{condition} on {context}");
        assert_eq!(e.value, &value, "{condition} on {context}");
        assert_eq!(e.rule_id, rule, "{condition} on {context}");
    }
}

fn gated() -> Value {
    json!({
        "key": "g", "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "on", "off_variant": "off",
        "allowed_tenants": ["acme"], "required_tiers": ["pro"],
        "environments": {"prod": {"enabled": false}, "dev": {"default_variant": "off"}},
        "expires_at": "2030-01-01T00:00:00Z",
        "schedule": {"enable_at": "2025-01-01T00:00:00Z"},
        "prerequisites": [{"flag": "base", "variants": ["on"]}]
    })
}

fn base(kill: bool) -> Value {
    json!({
        "key": "base", "type": "operational", "status": "active", "kill_switch": kill,
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "on", "off_variant": "off"
    })
}

const T2026: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[test]
fn precedence_of_disabling_steps() {
    let good = json!({"tenant": "acme", "tier": "pro"});
    // (patch to the gated flag, base kill switch, context, environment, now, expected)
    type Row = (
        Value,
        bool,
        Value,
        Option<&'static str>,
        i64,
        Option<DisabledBy>,
    );
    let rows: Vec<Row> = vec![
        (json!({}), false, good.clone(), None, T2026, None),
        // The kill switch wins over everything after it, including a bad status.
        (
            json!({"kill_switch": true, "status": "draft"}),
            false,
            good.clone(),
            None,
            T2026,
            Some(DisabledBy::KillSwitch),
        ),
        (
            json!({"status": "draft"}),
            false,
            json!({}),
            Some("prod"),
            0,
            Some(DisabledBy::Status),
        ),
        (
            json!({"status": "completed"}),
            false,
            good.clone(),
            None,
            T2026,
            Some(DisabledBy::Status),
        ),
        (
            json!({"status": "archived"}),
            false,
            good.clone(),
            None,
            T2026,
            Some(DisabledBy::Status),
        ),
        (
            json!({"status": "deprecated"}),
            false,
            good.clone(),
            None,
            T2026,
            None,
        ),
        (
            json!({}),
            false,
            json!({}),
            Some("prod"),
            1_900_000_000_000,
            Some(DisabledBy::Expired),
        ),
        (
            json!({}),
            false,
            json!({}),
            Some("prod"),
            0,
            Some(DisabledBy::NotYetEnabled),
        ),
        (
            json!({}),
            false,
            json!({}),
            Some("prod"),
            T2026,
            Some(DisabledBy::Environment),
        ),
        (
            json!({}),
            false,
            json!({"tier": "pro"}),
            Some("dev"),
            T2026,
            Some(DisabledBy::Tenant),
        ),
        (
            json!({}),
            false,
            json!({"tenant": "acme", "tier": "free"}),
            None,
            T2026,
            Some(DisabledBy::Tier),
        ),
        (
            json!({}),
            true,
            good.clone(),
            None,
            T2026,
            Some(DisabledBy::Prerequisite),
        ),
    ];
    for (patch, kill, context, env, now, expected) in rows {
        let mut g = gated();
        for (k, v) in patch.as_object().unwrap() {
            g[k] = v.clone();
        }
        let s = set(vec![g, base(kill)]);
        let e = s.evaluate("g", &ctx(context.clone()), env, now);
        assert_eq!(e.disabled_by, expected, "{patch} {context} {env:?} {now}");
        if expected.is_some() {
            assert_eq!(e.reason, Reason::Disabled);
            assert_eq!(e.variant, Some("off"));
        } else {
            assert_eq!(e.reason, Reason::Default);
            assert_eq!(e.variant, Some("on"));
        }
    }
    // The environment's default variant replaces the flag's.
    let s = set(vec![gated(), base(false)]);
    let e = s.evaluate(
        "g",
        &ctx(json!({"tenant": "acme", "tier": "pro"})),
        Some("dev"),
        T2026,
    );
    assert_eq!((e.variant, e.reason), (Some("off"), Reason::Default));
}

fn split_flag() -> Value {
    json!({
        "key": "exp", "type": "multivariate", "status": "active",
        "variants": [
            {"key": "a", "value": "A", "weight_bp": 5000, "control": true},
            {"key": "b", "value": "B", "weight_bp": 5000},
            {"key": "none", "value": "-"}
        ],
        "default_variant": "none", "off_variant": "none", "rollout_bp": 5000,
        "rules": [{"id": "vip", "when": {"attribute": "role", "op": "equals", "value": "vip"}, "variant": "b"}]
    })
}

#[test]
fn rules_then_rollout_then_default() {
    let s = set(vec![split_flag()]);
    // A rule match beats the split.
    let e = s.evaluate(
        "exp",
        &ctx(json!({"targetingKey": "u1", "role": "vip"})),
        None,
        0,
    );
    assert_eq!(
        (e.reason, e.rule_id, e.variant),
        (Reason::TargetingMatch, Some("vip"), Some("b"))
    );
    let mut seen = BTreeMap::new();
    for i in 0..2000 {
        let key = format!("user-{i}");
        let e = s.evaluate("exp", &EvaluationContext::with_key(&key), None, 0);
        let b = flags::bucket("exp", &key);
        assert_eq!(e.bucket, Some(b));
        if b < 5000 {
            assert_eq!(e.reason, Reason::Split);
            let split = flags::bucket("exp/split", &key);
            assert_eq!(e.variant, Some(if split < 5000 { "a" } else { "b" }));
        } else {
            assert_eq!((e.reason, e.variant), (Reason::Default, Some("none")));
        }
        *seen.entry(e.variant.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn reasons_static_and_errors() {
    let s = set(vec![split_flag(), base(false)]);
    assert_eq!(
        s.evaluate("base", &EvaluationContext::default(), None, 0)
            .reason,
        Reason::Static
    );
    let missing = s.evaluate("nope", &EvaluationContext::default(), None, 0);
    assert_eq!(
        (missing.reason, missing.error_code),
        (Reason::Error, Some(ErrorCode::FlagNotFound))
    );
    assert_eq!(missing.value, &Value::Null);
    let no_key = s.evaluate("exp", &EvaluationContext::default(), None, 0);
    assert_eq!(no_key.error_code, Some(ErrorCode::TargetingKeyMissing));
    assert_eq!(no_key.value, &json!("-"));
    let mut by_tenant = split_flag();
    by_tenant["bucket_by"] = json!("tenant");
    let s = set(vec![by_tenant]);
    let bad = s.evaluate(
        "exp",
        &ctx(json!({"targetingKey": "u", "tenant": 7})),
        None,
        0,
    );
    assert_eq!(bad.error_code, Some(ErrorCode::InvalidContext));
    let ok = s.evaluate("exp", &ctx(json!({"tenant": "acme"})), None, 0);
    assert_eq!(ok.bucket, Some(flags::bucket("exp", "acme")));
    assert_eq!(
        s.evaluate_all(&EvaluationContext::default(), None, 0).len(),
        1
    );
}

#[test]
fn ramp_and_environment_rollout() {
    let mut f = split_flag();
    f["rules"] = json!([]);
    f["schedule"] = json!({"ramp": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-11T00:00:00Z", "from_bp": 0, "to_bp": 10000}});
    f["environments"] = json!({"staging": {"rollout_bp": 10000}});
    let s = set(vec![f]);
    let day = 86_400_000;
    for i in 0..300 {
        let key = format!("k{i}");
        let b = i64::from(flags::bucket("exp", &key));
        let c = EvaluationContext::with_key(&key);
        for (now, rollout) in [
            (T2026 - day, 0),
            (T2026 + 3 * day, 3000),
            (T2026 + 20 * day, 10_000),
        ] {
            let in_rollout = s.evaluate("exp", &c, None, now).reason == Reason::Split;
            assert_eq!(in_rollout, b < rollout, "{key} at {now}");
        }
        assert_eq!(
            s.evaluate("exp", &c, Some("staging"), T2026).reason,
            Reason::Split
        );
    }
}

#[test]
fn validation_names_fields() {
    let mut bad = targeting(json!({"all": [
        {"attribute": "a", "op": "frobnicate", "value": 1},
        {"attribute": "a", "op": "regex", "value": "("},
        {"attribute": "a", "op": "semver_gt", "value": "1.x"},
        {"attribute": "a", "op": "before", "value": "yesterday"},
        {"attribute": "a", "op": "in"}
    ]}));
    bad["prerequisites"] = json!([{"flag": "ghost", "variants": ["on"]}]);
    bad["expires_at"] = json!("soon");
    let errs = errors(vec![bad]);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "rules[0].when.all[0].op",
        "rules[0].when.all[1].value",
        "rules[0].when.all[2].value",
        "rules[0].when.all[3].value",
        "rules[0].when.all[4].values",
        "prerequisites[0].flag",
        "expires_at",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    let mut weights = split_flag();
    weights["variants"][1]["weight_bp"] = json!(4000);
    weights["default_variant"] = json!("zzz");
    let errs = errors(vec![weights]);
    assert!(errs
        .iter()
        .any(|e| e.path == "variants" && e.message.contains("9000")));
    assert!(errs.iter().any(|e| e.path == "default_variant"));
    let mut boolean = base(false);
    boolean["variants"][0]["value"] = json!("yes");
    assert_eq!(errors(vec![boolean])[0].path, "variants[0].value");
}

#[test]
fn prerequisite_cycles_are_refused_with_the_cycle() {
    let node = |key: &str, pre: &str| {
        let mut f = base(false);
        f["key"] = json!(key);
        f["prerequisites"] = json!([{"flag": pre, "variants": ["on"]}]);
        f
    };
    let errs = errors(vec![node("a", "b"), node("b", "c"), node("c", "a")]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("a -> b -> c -> a"), "{}", errs[0]);
    let errs = errors(vec![node("self", "self")]);
    assert!(errs[0].message.contains("self -> self"));
}

#[test]
fn example_file_loads_validates_and_roundtrips() {
    let text = include_str!("../../../examples/flags.json");
    let defs: Vec<Flag> = serde_json::from_str(text).unwrap();
    let kinds: std::collections::BTreeSet<String> =
        defs.iter().map(|f| format!("{:?}", f.flag_type)).collect();
    assert_eq!(kinds.len(), 5, "every flag type: {kinds:?}");
    let s = FlagSet::compile(defs.clone()).unwrap();
    let again: Vec<Flag> =
        serde_json::from_str(&serde_json::to_string(&s.flags().collect::<Vec<_>>()).unwrap())
            .unwrap();
    assert_eq!(again, defs);
    let e = s.evaluate(
        "beta-reports",
        &ctx(json!({"targetingKey": "u", "tenant": "acme", "email": "Ann@Example.com"})),
        None,
        T2026,
    );
    assert_eq!((e.rule_id, e.value), (Some("staff"), &json!("v2")));
}

fn attribute() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<f64>().prop_map(AttributeValue::Number),
        ".{0,12}".prop_map(AttributeValue::String),
        Just(AttributeValue::String("2.4.0".into())),
        Just(AttributeValue::String("2023-05-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(AttributeValue::List)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Evaluation returns a result for any context, environment and time, never panicking, and
    /// agrees with itself (determinism).
    #[test]
    fn evaluation_never_panics(
        key in proptest::option::of(".{0,10}"),
        attrs in prop::collection::btree_map(
            prop_oneof![Just("tenant".to_string()), Just("tier".to_string()), Just("segment".to_string()),
                Just("app_version".to_string()), Just("signup_date".to_string()), Just("seats".to_string()),
                Just("email".to_string()), Just("device".to_string()), Just("region".to_string()), ".{0,6}"],
            attribute(), 0..8),
        env in proptest::option::of(prop_oneof![Just("staging"), Just("production"), Just("x")]),
        now in any::<i64>(),
    ) {
        let text = include_str!("../../../examples/flags.json");
        let s = FlagSet::compile(serde_json::from_str(text).unwrap()).unwrap();
        let c = EvaluationContext { targeting_key: key, attributes: attrs };
        for (k, e) in s.evaluate_all(&c, env, now) {
            prop_assert_eq!(&e, &s.evaluate(k, &c, env, now));
            prop_assert_eq!(e.error_code.is_some(), e.reason == Reason::Error);
        }
    }
}

#[test]
fn results_serialise_with_ofrep_names() {
    let s = set(vec![split_flag()]);
    let e = s.evaluate(
        "exp",
        &ctx(json!({"targetingKey": "u1", "role": "vip"})),
        None,
        0,
    );
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["reason"], json!("TARGETING_MATCH"));
    assert_eq!(v["rule_id"], json!("vip"));
    let e = s.evaluate("exp", &EvaluationContext::default(), None, 0);
    assert_eq!(
        serde_json::to_value(e).unwrap()["error_code"],
        json!("TARGETING_KEY_MISSING")
    );
    let err = &errors(vec![targeting(json!({"attribute": "a", "op": "nope"}))])[0];
    assert_eq!(
        err.to_string(),
        "flag `t`: rules[0].when.op: unknown operator `nope`"
    );
}

const OPS: [&str; 20] = [
    "in",
    "not_in",
    "equals",
    "not_equals",
    "starts_with",
    "ends_with",
    "contains",
    "regex",
    "eq",
    "gt",
    "gte",
    "lt",
    "lte",
    "before",
    "after",
    "semver_eq",
    "semver_gt",
    "semver_lt",
    "is_set",
    "is_not_set",
];

fn literal() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
        Just(json!("1.2.3")),
        Just(json!("2024-02-29T12:00:00+02:00")),
        Just(json!("^a.*")),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(OPS.to_vec()),
        prop_oneof![Just("a"), Just("b"), Just("targetingKey")],
        literal(),
        prop::collection::vec(literal(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(op, attribute, value, values, negate, ci)| {
            json!({"attribute": attribute, "op": op, "value": value, "values": values,
                   "negate": negate, "case_insensitive": ci})
        })
}

fn group() -> impl Strategy<Value = Value> {
    condition().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|g| json!({"all": g})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|g| json!({"any": g})),
            prop::collection::vec(inner, 0..3).prop_map(|g| json!({"none": g})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary rule trees either fail validation with field paths or evaluate without panicking
    /// on arbitrary contexts; a match always reports the rule.
    #[test]
    fn arbitrary_rules_never_panic(
        when in group(),
        a in attribute(),
        b in attribute(),
        key in proptest::option::of(".{0,6}"),
    ) {
        let defs = vec![flag(targeting(when))];
        match FlagSet::compile(defs) {
            Err(errs) => prop_assert!(errs.iter().all(|e| e.path.starts_with("rules[0].when"))),
            Ok(s) => {
                let mut attributes = BTreeMap::new();
                attributes.insert("a".to_string(), a);
                attributes.insert("b".to_string(), b);
                let c = EvaluationContext { targeting_key: key, attributes };
                let e = s.evaluate("t", &c, None, 0);
                prop_assert_eq!(e.rule_id.is_some(), e.reason == Reason::TargetingMatch);
            }
        }
    }

    /// Raising the rollout keeps everyone who was in, in the same variant.
    #[test]
    fn rollout_increase_keeps_members_and_variants(key in ".{1,12}", low in 0u32..=10_000, raise in 0u32..=10_000) {
        let at = |bp: u32| {
            let mut f = split_flag();
            f["rules"] = json!([]);
            f["rollout_bp"] = json!(bp);
            set(vec![f])
        };
        let (before, after) = (at(low), at((low + raise).min(10_000)));
        let c = EvaluationContext::with_key(&key);
        let (x, y) = (before.evaluate("exp", &c, None, 0), after.evaluate("exp", &c, None, 0));
        if x.reason == Reason::Split {
            prop_assert_eq!(y.reason, Reason::Split);
            prop_assert_eq!(x.variant, y.variant);
        }
    }
}

#[test]
fn loading_json_reports_parse_paths_and_validation() {
    let text = include_str!("../../../examples/flags.json");
    assert_eq!(FlagSet::from_json(text).unwrap().flags().count(), 5);
    let err = FlagSet::from_json(r#"[{"key": "x", "type": "boolean", "status": "active", "variants": [{"key": "on", "value": true, "weight": 1}], "default_variant": "on", "off_variant": "on"}]"#).unwrap_err();
    match &err {
        flags::LoadError::Parse { path, .. } => assert_eq!(path, "[0].variants[0].weight"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert_eq!(err.error_code(), ErrorCode::ParseError);
    let err = FlagSet::from_json(r#"[{"key": "x", "type": "boolean", "status": "active", "variants": [{"key": "on", "value": true}], "default_variant": "on", "off_variant": "gone"}]"#).unwrap_err();
    assert!(
        matches!(&err, flags::LoadError::Invalid(v) if v[0].path == "off_variant"),
        "{err:?}"
    );
    assert!(matches!(
        FlagSet::from_json("{"),
        Err(flags::LoadError::Parse { .. })
    ));
}

#[test]
fn example_flags_behave_as_documented() {
    let s = FlagSet::from_json(include_str!("../../../examples/flags.json")).unwrap();
    let beta = ctx(
        json!({"targetingKey": "u", "tenant": "globex", "segment": ["early-access"],
        "app_version": "2.4.1", "role": "admin", "region": "us-east", "device": "android-14"}),
    );
    let e = s.evaluate("beta-reports", &beta, None, T2026);
    assert_eq!(e.rule_id, Some("beta-segment-recent-app"));
    let mut legacy = beta.clone();
    legacy
        .attributes
        .insert("device".into(), AttributeValue::String("legacy-3".into()));
    assert_eq!(
        s.evaluate("beta-reports", &legacy, None, T2026).reason,
        Reason::Default
    );
    let old = ctx(json!({"tenant": "acme", "signup_date": "2023-03-01T00:00:00Z", "seats": 12}));
    assert_eq!(
        s.evaluate("beta-reports", &old, None, T2026).rule_id,
        Some("old-accounts")
    );
    let outsider = ctx(json!({"tenant": "initech", "email": "a@example.com"}));
    assert_eq!(
        s.evaluate("beta-reports", &outsider, None, T2026)
            .disabled_by,
        Some(DisabledBy::Tenant)
    );
    // The experiment needs the pro tier and new-checkout "on": in staging new-checkout is at 100 %.
    let pro = ctx(json!({"targetingKey": "user-42", "tier": "pro"}));
    let e = s.evaluate("pricing-page-experiment", &pro, Some("staging"), T2026);
    assert_eq!(e.reason, Reason::Split);
    let free = ctx(json!({"targetingKey": "user-42", "tier": "free"}));
    let e = s.evaluate("pricing-page-experiment", &free, Some("staging"), T2026);
    assert_eq!(e.disabled_by, Some(DisabledBy::Tier));
    // Maintenance switch: scheduled from 2026-01-01.
    let m = s.evaluate(
        "ingest-maintenance",
        &EvaluationContext::default(),
        None,
        T2026 - 1,
    );
    assert_eq!(m.disabled_by, Some(DisabledBy::NotYetEnabled));
}

#[test]
fn the_bulk_load_test_set_is_valid_and_varied() {
    let set = FlagSet::from_json(include_str!("../benches/fifty_flags.json")).unwrap();
    assert_eq!(set.len(), 50);
    let c = ctx(json!({"targetingKey": "user-1", "tier": "pro", "seats": 10}));
    let reasons: std::collections::BTreeSet<String> = set
        .evaluate_all(&c, Some("production"), T2026)
        .iter()
        .map(|(_, e)| format!("{:?}", e.reason))
        .collect();
    assert!(reasons.len() >= 3, "{reasons:?}");
}

/// A multivariate flag (weights 50/50 over `a`/`b`, default `none`) with a rule for EU
/// professional users that splits them (`split` as given) and a later rule serving `b` to
/// staff.
fn rule_split(split: Value) -> Value {
    json!({
        "key": "checkout", "type": "multivariate", "status": "active",
        "variants": [
            {"key": "a", "value": "A", "weight_bp": 5000, "control": true},
            {"key": "b", "value": "B", "weight_bp": 5000},
            {"key": "none", "value": "-"}
        ],
        "default_variant": "none", "off_variant": "none", "rollout_bp": 0,
        "environments": {"staging": {"default_variant": "a"}},
        "rules": [
            {"id": "eu-pro", "when": {"all": [
                {"attribute": "region", "op": "equals", "value": "eu"},
                {"attribute": "tier", "op": "equals", "value": "pro"}
            ]}, "split": split},
            {"id": "staff", "when": {"attribute": "role", "op": "equals", "value": "staff"}, "variant": "b"}
        ]
    })
}

fn eu_pro(key: &str) -> EvaluationContext {
    ctx(json!({"targetingKey": key, "region": "eu", "tier": "pro", "role": "staff"}))
}

#[test]
fn a_rule_splits_ten_percent_of_its_matches_to_one_variant() {
    let s = set(vec![rule_split(json!({
        "rollout_bp": 1000, "variants": [{"variant": "b", "weight_bp": 10000}]
    }))]);
    let mut inside = 0;
    for i in 0..5000 {
        let key = format!("user-{i}");
        let e = s.evaluate("checkout", &eu_pro(&key), None, 0);
        let b = flags::bucket("checkout", &key);
        assert_eq!((e.rule_id, e.bucket), (Some("eu-pro"), Some(b)), "{key}");
        if b < 1000 {
            inside += 1;
            assert_eq!((e.reason, e.variant), (Reason::Split, Some("b")), "{key}");
        } else {
            // Outside the rule's rollout: the default variant; the later `staff` rule, which
            // these users also match, is not tried.
            assert_eq!(
                (e.reason, e.variant),
                (Reason::Default, Some("none")),
                "{key}"
            );
            let staging = s.evaluate("checkout", &eu_pro(&key), Some("staging"), 0);
            assert_eq!(
                (staging.reason, staging.variant),
                (Reason::Default, Some("a"))
            );
        }
    }
    assert!(
        (400..600).contains(&inside),
        "{inside} of 5000 in a 10 % rollout"
    );
    // Users the rule does not match go on to the next rule, then the flag's own rollout.
    let us = ctx(json!({"targetingKey": "u1", "region": "us", "tier": "pro", "role": "staff"}));
    let e = s.evaluate("checkout", &us, None, 0);
    assert_eq!(
        (e.reason, e.rule_id, e.variant),
        (Reason::TargetingMatch, Some("staff"), Some("b"))
    );
    let e = s.evaluate("checkout", &ctx(json!({"targetingKey": "u1"})), None, 0);
    assert_eq!(
        (e.reason, e.rule_id, e.variant),
        (Reason::Default, None, Some("none"))
    );
}

#[test]
fn a_rule_split_without_variants_uses_the_flag_weights_and_buckets() {
    let rule = set(vec![rule_split(json!({"rollout_bp": 10000}))]);
    let mut flag_level = rule_split(json!({}));
    flag_level["rules"] = json!([]);
    flag_level["rollout_bp"] = json!(10000);
    let flag_level = set(vec![flag_level]);
    let mut seen = BTreeMap::new();
    for i in 0..1000 {
        let key = format!("user-{i}");
        let e = rule.evaluate("checkout", &eu_pro(&key), None, 0);
        let f = flag_level.evaluate("checkout", &EvaluationContext::with_key(&key), None, 0);
        // The same published buckets: a user keeps their variant when a flag-level split
        // becomes a rule's split, or the other way round.
        assert_eq!(
            (e.reason, e.variant, e.bucket),
            (f.reason, f.variant, f.bucket)
        );
        *seen.entry(e.variant.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec!["a", "b"]);
    // An empty split object is the same split to everyone matched.
    let empty = set(vec![rule_split(json!({}))]);
    let e = empty.evaluate("checkout", &eu_pro("user-7"), None, 0);
    assert_eq!(e.reason, Reason::Split);
}

#[test]
fn a_rule_split_fifty_fifty_and_zero_rollout() {
    let s = set(vec![rule_split(json!({"variants": [
        {"variant": "b", "weight_bp": 5000}, {"variant": "none", "weight_bp": 5000}
    ]}))]);
    for i in 0..500 {
        let key = format!("k{i}");
        let e = s.evaluate("checkout", &eu_pro(&key), None, 0);
        let split = flags::bucket("checkout/split", &key);
        let want = if split < 5000 { "b" } else { "none" };
        assert_eq!((e.reason, e.variant), (Reason::Split, Some(want)));
    }
    let zero = set(vec![rule_split(json!({"rollout_bp": 0}))]);
    for i in 0..100 {
        let e = zero.evaluate("checkout", &eu_pro(&format!("k{i}")), None, 0);
        assert_eq!((e.reason, e.rule_id), (Reason::Default, Some("eu-pro")));
    }
}

#[test]
fn a_rule_split_needs_a_bucketing_key_only_when_it_matches() {
    // A targeting flag without weights of its own: only the rule's split buckets.
    let mut f = rule_split(json!({"rollout_bp": 5000,
        "variants": [{"variant": "a", "weight_bp": 10000}]}));
    f["type"] = json!("targeting");
    f["bucket_by"] = json!("account");
    f["variants"][0]["weight_bp"] = json!(0);
    f["variants"][1]["weight_bp"] = json!(0);
    f["rollout_bp"] = Value::Null;
    let s = set(vec![f]);
    let matched = ctx(json!({"region": "eu", "tier": "pro"}));
    let e = s.evaluate("checkout", &matched, None, 0);
    assert_eq!(e.error_code, Some(ErrorCode::TargetingKeyMissing));
    let unmatched = s.evaluate("checkout", &ctx(json!({"region": "us"})), None, 0);
    assert_eq!(
        (unmatched.reason, unmatched.variant),
        (Reason::Default, Some("none"))
    );
    let bad = ctx(json!({"region": "eu", "tier": "pro", "account": 7}));
    assert_eq!(
        s.evaluate("checkout", &bad, None, 0).error_code,
        Some(ErrorCode::InvalidContext)
    );
    // bucket_by applies to the rule's buckets.
    let by_account =
        ctx(json!({"targetingKey": "ignored", "region": "eu", "tier": "pro", "account": "acme"}));
    let e = s.evaluate("checkout", &by_account, None, 0);
    assert_eq!(e.bucket, Some(flags::bucket("checkout", "acme")));
    let b = flags::bucket("checkout", "acme");
    assert_eq!(
        e.reason,
        if b < 5000 {
            Reason::Split
        } else {
            Reason::Default
        }
    );
}

#[test]
fn rule_split_validation_names_fields() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"id": "r", "when": {"all": []}}),
            "rules[0].variant",
            "needs",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "variant": "a", "split": {}}),
            "rules[0].split",
            "not both",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "split": {"rollout_bp": 10001}}),
            "rules[0].split.rollout_bp",
            "10001",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "split": {"variants": []}}),
            "rules[0].split.variants",
            "at least one",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "split": {"variants": [{"variant": "zzz", "weight_bp": 10000}]}}),
            "rules[0].split.variants[0].variant",
            "unknown variant `zzz`",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "split": {"variants": [
                {"variant": "a", "weight_bp": 5000}, {"variant": "a", "weight_bp": 5000}]}}),
            "rules[0].split.variants[1].variant",
            "duplicate",
        ),
        (
            json!({"id": "r", "when": {"all": []}, "split": {"variants": [
                {"variant": "a", "weight_bp": 5000}, {"variant": "b", "weight_bp": 4000}]}}),
            "rules[0].split.variants",
            "9000",
        ),
    ];
    for (rule, path, message) in cases {
        let mut f = split_flag();
        f["rules"] = json!([rule]);
        let errs = errors(vec![f]);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(message)),
            "{path} / {message} not in {errs:?}"
        );
    }
    // Without weights of its own, the flag gives a split nothing to default to.
    let mut unweighted = targeting(json!({"all": []}));
    unweighted["rules"][0] = json!({"id": "r", "when": {"all": []}, "split": {"rollout_bp": 100}});
    let errs = errors(vec![unweighted]);
    assert_eq!(errs[0].path, "rules[0].split.variants", "{errs:?}");
    // A split with its own variants needs no flag weights.
    let mut own = targeting(json!({"all": []}));
    own["rules"][0] = json!({"id": "r", "when": {"all": []},
        "split": {"rollout_bp": 100, "variants": [{"variant": "yes", "weight_bp": 10000}]}});
    set(vec![own]);
}

#[test]
fn rules_round_trip_as_written() {
    let f =
        rule_split(json!({"rollout_bp": 1000, "variants": [{"variant": "b", "weight_bp": 10000}]}));
    let parsed = flag(f.clone());
    assert_eq!(serde_json::to_value(&parsed).unwrap()["rules"], f["rules"]);
    let bare = flag(rule_split(json!({})));
    assert_eq!(
        serde_json::to_value(&bare).unwrap()["rules"][0]["split"],
        json!({})
    );
    // Unknown members of a split are refused, as everywhere in the format.
    let err = FlagSet::from_json(
        &serde_json::to_string(&json!([rule_split(json!({"rollout": 10}))])).unwrap(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("[0].rules[0].split.rollout"),
        "{err}"
    );
}

/// The gated flag with an environment `eu` that serves the off variant to everyone and an
/// environment `ops` that serves a value of its own.
fn overridden() -> Value {
    let mut g = gated();
    g["rules"] = json!([{"id": "all", "when": {"all": []}, "variant": "on"}]);
    g["environments"] = json!({
        "prod": {"enabled": false, "variant": "on"},
        "eu": {"variant": "off"},
        "ops": {"value": true, "rollout_bp": 10000}
    });
    g
}

#[test]
fn environment_overrides_serve_everyone_before_targeting() {
    let s = set(vec![overridden(), base(true)]);
    // Neither tenant, tier nor prerequisite (base is killed) is looked at: the override comes
    // first, so "everyone in the environment" means everyone.
    for c in [json!({}), json!({"tenant": "other", "tier": "free"})] {
        let e = s.evaluate("g", &ctx(c.clone()), Some("eu"), T2026);
        assert_eq!(
            (e.reason, e.variant, e.value, e.environment_override),
            (Reason::Static, Some("off"), &json!(false), Some("eu")),
            "{c}"
        );
        let e = s.evaluate("g", &ctx(c.clone()), Some("ops"), T2026);
        assert_eq!(
            (e.reason, e.variant, e.value, e.environment_override),
            (Reason::Static, None, &json!(true), Some("ops")),
            "{c}"
        );
        // Without the override the gates apply.
        let e = s.evaluate("g", &ctx(c), None, T2026);
        assert_eq!(e.reason, Reason::Disabled);
        assert_eq!(e.environment_override, None);
    }
    // `enabled: false` of the same environment, the kill switch, status, expiry and
    // enable_at come before the override.
    let e = s.evaluate("g", &EvaluationContext::default(), Some("prod"), T2026);
    assert_eq!(e.disabled_by, Some(DisabledBy::Environment));
    let mut killed = overridden();
    killed["kill_switch"] = json!(true);
    let s2 = set(vec![killed, base(false)]);
    let e = s2.evaluate("g", &EvaluationContext::default(), Some("eu"), T2026);
    assert_eq!(e.disabled_by, Some(DisabledBy::KillSwitch));
    let early = s.evaluate("g", &EvaluationContext::default(), Some("eu"), 0);
    assert_eq!(early.disabled_by, Some(DisabledBy::NotYetEnabled));
}

#[test]
fn environment_overrides_feed_prerequisites() {
    let mut dependent = base(false);
    dependent["key"] = json!("dependent");
    dependent["prerequisites"] = json!([{"flag": "g", "variants": ["on"]}]);
    let mut g = overridden();
    g["environments"]["on-everywhere"] = json!({"variant": "on"});
    let s = set(vec![g, base(true), dependent]);
    let none = EvaluationContext::default();
    let e = s.evaluate("dependent", &none, Some("on-everywhere"), T2026);
    assert_eq!((e.reason, e.variant), (Reason::Default, Some("on")));
    let e = s.evaluate("dependent", &none, Some("eu"), T2026);
    assert_eq!(e.disabled_by, Some(DisabledBy::Prerequisite));
    // A value override serves no variant, so no prerequisite on a variant of it holds.
    let e = s.evaluate("dependent", &none, Some("ops"), T2026);
    assert_eq!(e.disabled_by, Some(DisabledBy::Prerequisite));
}

#[test]
fn environment_override_validation_names_fields() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"variant": "zzz"}),
            "environments.x.variant",
            "unknown variant",
        ),
        (
            json!({"variant": "on", "value": true}),
            "environments.x.value",
            "not both",
        ),
        (json!({"value": "yes"}), "environments.x.value", "boolean"),
        (json!({"value": 1}), "environments.x.value", "got a number"),
    ];
    for (env, path, message) in cases {
        let mut f = base(false);
        f["environments"] = json!({"x": env});
        let errs = errors(vec![f]);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.contains(message)),
            "{path} / {message} not in {errs:?}"
        );
    }
    // Objects for object flags; the value need not be one of the variants' values.
    let mut obj = split_flag();
    obj["variants"][0]["value"] = json!({"colour": "blue"});
    obj["variants"][1]["value"] = json!({"colour": "red"});
    obj["variants"][2]["value"] = json!({});
    obj["environments"] = json!({"demo": {"value": {"colour": "green"}}});
    let s = set(vec![obj.clone()]);
    let e = s.evaluate("exp", &EvaluationContext::default(), Some("demo"), 0);
    assert_eq!((e.value, e.variant), (&json!({"colour": "green"}), None));
    obj["environments"] = json!({"demo": {"value": "green"}});
    assert_eq!(errors(vec![obj])[0].path, "environments.demo.value");
}

#[test]
fn evaluation_reports_the_environment_override() {
    let s = set(vec![overridden(), base(false)]);
    let e = s.evaluate("g", &EvaluationContext::default(), Some("ops"), T2026);
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["environment_override"], json!("ops"));
    assert_eq!(v["reason"], json!("STATIC"));
    assert_eq!(v["variant"], Value::Null);
}

#[test]
fn example_rule_split_and_overrides_behave_as_documented() {
    let s = FlagSet::from_json(include_str!("../../../examples/flags.json")).unwrap();
    // EU professional users get new-checkout at 50 % (the rule's split over the flag's
    // weights); everyone else at the flag's 25 % rollout.
    for i in 0..300 {
        let key = format!("user-{i}");
        let b = flags::bucket("new-checkout", &key);
        let eu = ctx(json!({"targetingKey": key, "region": "eu-west", "tier": "pro"}));
        let e = s.evaluate("new-checkout", &eu, Some("production"), 0);
        assert_eq!(e.rule_id, Some("eu-professional-early"));
        assert_eq!(
            e.variant,
            Some(if b < 5000 { "on" } else { "off" }),
            "{key}"
        );
        let other = s.evaluate(
            "new-checkout",
            &EvaluationContext::with_key(&key),
            Some("production"),
            0,
        );
        assert_eq!(
            other.variant,
            Some(if b < 2500 { "on" } else { "off" }),
            "{key}"
        );
    }
    // In the demo environment everyone sees the cards layout, tier or not.
    let e = s.evaluate(
        "pricing-page-experiment",
        &EvaluationContext::default(),
        Some("demo"),
        T2026,
    );
    assert_eq!(
        (e.reason, e.variant, e.environment_override),
        (Reason::Static, Some("cards"), Some("demo"))
    );
    let e = s.evaluate(
        "beta-reports",
        &EvaluationContext::default(),
        Some("preview"),
        T2026,
    );
    assert_eq!((e.value, e.variant), (&json!("v3-preview"), None));
}
