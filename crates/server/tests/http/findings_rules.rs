//! Findings of issue 21 about flag targeting (rule-level rollouts, environment overrides),
//! shown over HTTP with the admin API and OFREP only.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

async fn evaluate_in(
    app: &TestApp,
    key: &str,
    flag: &str,
    environment: &str,
    context: Value,
) -> Value {
    let reply = app
        .call(
            Method::POST,
            &format!("/ofrep/v1/evaluate/flags/{flag}?environment={environment}"),
            Some(key),
            Some(json!({ "context": context })),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

// Finding: "a targeting rule serves one variant: 10% of EU professional users cannot be expressed".
#[tokio::test]
async fn finding_a_rule_can_split() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let flag = json!({
        "key": "new-checkout", "type": "targeting", "status": "active",
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "off", "off_variant": "off",
        "rules": [{
            "id": "eu-pro",
            "when": {"all": [
                {"attribute": "region", "op": "equals", "value": "eu"},
                {"attribute": "tier", "op": "equals", "value": "pro"}
            ]},
            "split": {"rollout_bp": 1000, "variants": [{"variant": "on", "weight_bp": 10000}]}
        }]
    });
    let created = app
        .call(
            Method::POST,
            "/api/v1/flags?environment=production",
            Some(key),
            Some(flag),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());

    let mut on = 0;
    for i in 0..400 {
        let user = format!("user-{i}");
        let e = evaluate_in(
            &app,
            key,
            "new-checkout",
            "production",
            json!({"targetingKey": user, "region": "eu", "tier": "pro"}),
        )
        .await;
        assert_eq!(e["metadata"]["rule"], "eu-pro", "{e}");
        let bucket = e["metadata"]["bucket"].as_u64().expect("a bucket");
        if bucket < 1000 {
            on += 1;
            assert_eq!(
                (&e["reason"], &e["variant"], &e["value"]),
                (&json!("SPLIT"), &json!("on"), &json!(true)),
                "{e}"
            );
        } else {
            assert_eq!(
                (&e["reason"], &e["variant"]),
                (&json!("DEFAULT"), &json!("off")),
                "{e}"
            );
        }
    }
    // About 10 % of 400: the binomial's 99.99 % range is well inside 15..=70.
    assert!(
        (15..=70).contains(&on),
        "{on} of 400 EU professional users got the flag"
    );
    // Users the rule does not match are not bucketed by it.
    let us = evaluate_in(
        &app,
        key,
        "new-checkout",
        "production",
        json!({"targetingKey": "user-1", "region": "us", "tier": "pro"}),
    )
    .await;
    assert_eq!(
        (&us["reason"], &us["variant"]),
        (&json!("DEFAULT"), &json!("off")),
        "{us}"
    );
    assert!(us["metadata"].get("rule").is_none(), "{us}");
    app.cleanup().await;
}

// Finding: "environment overrides can only switch a flag or change its rollout and default, and
// come after targeting".
#[tokio::test]
async fn finding_environment_override_serves_any_variant_before_targeting() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let flag = json!({
        "key": "search-engine", "type": "targeting", "status": "active",
        "variants": [
            {"key": "legacy", "value": "solr"},
            {"key": "vector", "value": "qdrant"},
            {"key": "hybrid", "value": "both"}
        ],
        "default_variant": "legacy", "off_variant": "legacy",
        "required_tiers": ["enterprise"],
        "rules": [{"id": "beta", "when": {"attribute": "segment", "op": "in", "values": ["beta"]}, "variant": "vector"}],
        "environments": {
            "staging": {"variant": "hybrid"},
            "demo": {"value": "demo-index"}
        }
    });
    for environment in ["production", "staging", "demo"] {
        let created = app
            .call(
                Method::POST,
                &format!("/api/v1/flags?environment={environment}"),
                Some(key),
                Some(flag.clone()),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text());
    }
    // In staging everyone gets `hybrid`: the tier restriction and the `beta` rule come after the
    // override, so neither a free-tier user nor a beta tester sees anything else.
    for context in [
        json!({"targetingKey": "u1", "tier": "free"}),
        json!({"targetingKey": "u2", "tier": "enterprise", "segment": ["beta"]}),
    ] {
        let e = evaluate_in(&app, key, "search-engine", "staging", context.clone()).await;
        assert_eq!(
            (&e["reason"], &e["variant"], &e["value"]),
            (&json!("STATIC"), &json!("hybrid"), &json!("both")),
            "{context}: {e}"
        );
        assert_eq!(e["metadata"]["environment_override"], "staging", "{e}");
        // A value of its own, with no variant.
        let demo = evaluate_in(&app, key, "search-engine", "demo", context.clone()).await;
        assert_eq!(
            (&demo["reason"], &demo["value"]),
            (&json!("STATIC"), &json!("demo-index")),
            "{demo}"
        );
        assert!(demo.get("variant").is_none(), "{demo}");
    }
    // Production has no override: targeting applies as before.
    let free = evaluate_in(
        &app,
        key,
        "search-engine",
        "production",
        json!({"targetingKey": "u1", "tier": "free"}),
    )
    .await;
    assert_eq!(free["reason"], "DISABLED", "{free}");
    let beta = evaluate_in(
        &app,
        key,
        "search-engine",
        "production",
        json!({"targetingKey": "u2", "tier": "enterprise", "segment": ["beta"]}),
    )
    .await;
    assert_eq!(
        (&beta["reason"], &beta["variant"]),
        (&json!("TARGETING_MATCH"), &json!("vector")),
        "{beta}"
    );

    // The override is validated like the rest of the definition: 422 naming the field.
    let mut wrong = flag.clone();
    wrong["key"] = json!("other");
    wrong["environments"] = json!({"staging": {"value": 3}});
    let reply = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(wrong))
        .await;
    let problem = reply.assert_problem(422, "unprocessable", "/api/v1/flags");
    assert_eq!(problem["field"], "environments.staging.value", "{problem}");
    app.cleanup().await;
}
