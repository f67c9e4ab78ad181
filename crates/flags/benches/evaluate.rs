//! In-process evaluation of a flag with five targeting rules and a prerequisite, and of a flag
//! whose matching rule splits its users (a rule-level rollout).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flags::{EvaluationContext, Flag, FlagSet};
use serde_json::json;

fn flag_set() -> FlagSet {
    let rule = |id: &str, when: serde_json::Value| json!({"id": id, "when": when, "variant": "b"});
    let flags: Vec<Flag> = serde_json::from_value(json!([
        {
            "key": "base", "type": "operational", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "on", "off_variant": "off"
        },
        {
            "key": "checkout", "type": "multivariate", "status": "active",
            "variants": [
                {"key": "a", "value": "A", "weight_bp": 5000, "control": true},
                {"key": "b", "value": "B", "weight_bp": 5000}
            ],
            "default_variant": "a", "off_variant": "a", "rollout_bp": 8000,
            "prerequisites": [{"flag": "base", "variants": ["on"]}],
            "rules": [
                rule("staff", json!({"attribute": "email", "op": "ends_with", "value": "@example.com"})),
                rule("beta", json!({"all": [
                    {"attribute": "segment", "op": "in", "values": ["beta", "early"]},
                    {"attribute": "app_version", "op": "semver_gt", "value": "2.3.0"}
                ]})),
                rule("eu-admins", json!({"all": [
                    {"attribute": "region", "op": "in", "values": ["eu-west", "eu-central"]},
                    {"attribute": "role", "op": "equals", "value": "admin"}
                ]})),
                rule("devices", json!({"attribute": "device", "op": "regex", "value": "^(ios|android)-1[0-9]$"})),
                rule("big", json!({"attribute": "seats", "op": "gte", "value": 500}))
            ]
        },
        {
            "key": "eu-pro-split", "type": "targeting", "status": "active",
            "variants": [
                {"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "off", "value": "-"}
            ],
            "default_variant": "off", "off_variant": "off",
            "rules": [
                rule("staff", json!({"attribute": "email", "op": "ends_with", "value": "@example.com"})),
                rule("admins", json!({"attribute": "role", "op": "equals", "value": "admin"})),
                {"id": "eu-pro", "when": {"all": [
                    {"attribute": "region", "op": "in", "values": ["eu-west", "eu-central"]},
                    {"attribute": "tier", "op": "equals", "value": "pro"}
                ]}, "split": {"rollout_bp": 1000, "variants": [
                    {"variant": "a", "weight_bp": 5000}, {"variant": "b", "weight_bp": 5000}
                ]}}
            ]
        }
    ]))
    .unwrap();
    FlagSet::compile(flags).unwrap()
}

fn bench(c: &mut Criterion) {
    let set = flag_set();
    // Matches no rule, so all five are tested and the split decides.
    let ctx: EvaluationContext = serde_json::from_value(json!({
        "targetingKey": "user-12345", "email": "ann@customer.org", "segment": ["ga"],
        "app_version": "2.1.0", "region": "us-east", "role": "viewer", "device": "web", "seats": 12
    }))
    .unwrap();
    c.bench_function("evaluate_5_rules_1_prerequisite", |b| {
        b.iter(|| {
            set.evaluate(black_box("checkout"), black_box(&ctx), None, 0)
                .bucket
        })
    });
    // The last of three rules matches and splits 10 % of EU professional users 50/50; this
    // user is inside the rollout (bucket 947), so both hashes are computed.
    let eu_pro: EvaluationContext = serde_json::from_value(json!({
        "targetingKey": "user-12348", "region": "eu-west", "tier": "pro", "role": "viewer"
    }))
    .unwrap();
    c.bench_function("evaluate_rule_split", |b| {
        b.iter(|| {
            set.evaluate(black_box("eu-pro-split"), black_box(&eu_pro), None, 0)
                .bucket
        })
    });
    c.bench_function("bucket", |b| {
        b.iter(|| flags::bucket(black_box("checkout"), black_box("user-12345")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
