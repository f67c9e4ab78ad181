//! In-process evaluation of a flag with five targeting rules and a prerequisite.

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
    c.bench_function("bucket", |b| {
        b.iter(|| flags::bucket(black_box("checkout"), black_box("user-12345")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
