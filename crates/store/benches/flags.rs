//! Flag persistence costs: the audit diff of a realistic definition, and a versioned update
//! (counter bump, read, conditional write, audit row, commit) on an embedded SQLite store.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

/// A flag of realistic size: a few variants, a dozen targeting rules, some metadata.
fn definition(enabled: bool, owner: &str) -> Value {
    let rules: Vec<Value> = (0..12)
        .map(|i| {
            json!({
                "id": format!("rule-{i}"),
                "when": {"attribute": "country", "op": "in", "values": ["DE", "FR", "NL", i]},
                "serve": {"variant": if i % 2 == 0 { "on" } else { "off" }},
            })
        })
        .collect();
    json!({
        "key": "checkout-redesign",
        "enabled": enabled,
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "off",
        "rules": rules,
        "meta": {"owner": owner, "tags": ["checkout", "q4"], "description": "new checkout"},
    })
}

fn bench_diff(c: &mut Criterion) {
    let before = definition(false, "ann");
    let after = definition(true, "bob");
    c.bench_function("json_diff/flag_two_fields_changed", |b| {
        b.iter(|| store::json_diff(black_box(&before), black_box(&after)))
    });
}

fn bench_update(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the bench");
    let fixture = runtime.block_on(store::testing::TestStore::sqlite());
    let store = &fixture.store;
    let tenant = runtime
        .block_on(store.create_tenant("bench", store::Tier::Starter))
        .expect("bench tenant");
    let texts = [
        definition(false, "ann").to_string(),
        definition(true, "bob").to_string(),
    ];
    runtime
        .block_on(store.create_flag(&tenant.id, "prod", "checkout-redesign", &texts[0], "key"))
        .expect("bench flag");
    let mut version = 1_i64;
    c.bench_function("update_flag/sqlite_expected_version", |b| {
        b.iter(|| {
            let text = &texts[usize::from(version % 2 == 1)];
            let record = runtime
                .block_on(store.update_flag(
                    &tenant.id,
                    "prod",
                    "checkout-redesign",
                    text,
                    Some(version),
                    "key",
                ))
                .expect("versioned update");
            version = record.version;
        })
    });
    runtime.block_on(fixture.cleanup());
}

criterion_group!(benches, bench_diff, bench_update);
criterion_main!(benches);
