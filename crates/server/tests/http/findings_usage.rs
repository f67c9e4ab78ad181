//! Finding tests of issue 21 owned by usage analytics: written against the HTTP surface and the
//! test harness only (JSON bodies, no crate types), so they also run against older builds.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

fn series_total(flag: &Value, variant: &str, field: &str) -> u64 {
    flag["series"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter(|p| p["variant"] == variant)
                .filter_map(|p| p[field].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn by_key<'a>(list: &'a Value, key: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|f| f["key"] == key)
}

// Finding: "there is no way to see which flags are evaluated, by variant, or which are stale."
#[tokio::test]
async fn finding_flag_usage_and_stale_flags_are_visible() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let flags = [
        // Serves `on` to everyone: fully rolled out.
        json!({"key": "checkout", "type": "boolean", "status": "active",
               "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
               "default_variant": "on", "off_variant": "off"}),
        // A 50/50 experiment split whose users are recorded.
        json!({"key": "pricing", "type": "multivariate", "status": "active",
               "variants": [{"key": "a", "value": "a", "weight_bp": 5000, "control": true},
                            {"key": "b", "value": "b", "weight_bp": 5000}],
               "default_variant": "a", "off_variant": "a", "track_exposure": true}),
        // Archived but still defined.
        json!({"key": "old-banner", "type": "boolean", "status": "archived",
               "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
               "default_variant": "on", "off_variant": "off"}),
        // Expired.
        json!({"key": "winter-sale", "type": "boolean", "status": "active",
               "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
               "default_variant": "on", "off_variant": "off",
               "expires_at": "2020-01-01T00:00:00Z"}),
    ];
    for flag in flags {
        let reply = app
            .call(Method::POST, "/api/v1/flags", Some(key), Some(flag))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    // Five users evaluate everything; a sixth evaluates `pricing` alone.
    for user in 1..=5 {
        let reply = app
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags",
                Some(key),
                Some(json!({"context": {"targetingKey": format!("user-{user}")}})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let single = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/pricing",
            Some(key),
            Some(json!({"context": {"targetingKey": "user-6"}})),
        )
        .await;
    assert_eq!(single.status, 200, "{}", single.text());

    // Evaluations by flag and variant, with the users assigned to each variant.
    let usage = app.get("/api/v1/flags/usage", Some(key)).await;
    assert_eq!(usage.status, 200, "{}", usage.text());
    let usage = usage.json();
    let pricing = by_key(&usage["flags"], "pricing").expect("pricing listed");
    assert_eq!(pricing["evaluations"], 6, "{usage}");
    assert_eq!(pricing["assigned_users"], 6, "{usage}");
    let (a, b) = (
        series_total(pricing, "a", "evaluations"),
        series_total(pricing, "b", "evaluations"),
    );
    assert_eq!(a + b, 6, "{pricing}");
    assert_eq!(
        series_total(pricing, "a", "assigned_users") + series_total(pricing, "b", "assigned_users"),
        6
    );
    let checkout = by_key(&usage["flags"], "checkout").expect("checkout listed");
    assert_eq!(checkout["evaluations"], 5);
    assert_eq!(series_total(checkout, "on", "evaluations"), 5);
    assert!(checkout["last_evaluated_at"].is_string(), "{checkout}");

    // One flag, by day.
    let one = app
        .get("/api/v1/flags/pricing/usage?granularity=day", Some(key))
        .await;
    assert_eq!(one.status, 200, "{}", one.text());
    let one = one.json();
    assert_eq!(one["flags"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["flags"][0]["evaluations"], 6);

    // Stale flags, each with its reason and last evaluation.
    let stale = app.get("/api/v1/flags/stale?days=30", Some(key)).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    let stale = stale.json();
    let reasons = |flag: &str| -> Vec<String> {
        by_key(&stale["flags"], flag)
            .and_then(|f| f["reasons"].as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|r| r["code"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(reasons("checkout"), ["fully_rolled_out"], "{stale}");
    assert_eq!(reasons("old-banner"), ["finished"], "{stale}");
    assert_eq!(reasons("winter-sale"), ["expired"], "{stale}");
    assert!(by_key(&stale["flags"], "pricing").is_none(), "{stale}");
    assert!(
        by_key(&stale["flags"], "checkout").expect("checkout")["last_evaluated_at"].is_string()
    );
    app.cleanup().await;
}
