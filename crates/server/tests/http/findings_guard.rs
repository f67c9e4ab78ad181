//! Finding tests of issue 21 for guarded rollouts: they use only the test harness and JSON, so
//! they run unchanged against a build without the feature (where they fail).

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};
use server::jobs::{JobContext, JobRegistry};
use store::{Backend, Scope};

use crate::TestApp;

async fn flag_rollout(app: &TestApp, key: &str) -> Value {
    app.get("/api/v1/flags/new-checkout", Some(key))
        .await
        .json()["definition"]["rollout_bp"]
        .clone()
}

// Finding: "nothing reacts when a guardrail metric fails".
#[tokio::test]
async fn finding_guardrail_breach_rolls_back() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("guarded", &[Scope::Admin, Scope::Read]).await;
    let key = admin.secret.as_str();
    let flag = json!({
        "key": "new-checkout", "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true, "weight_bp": 10000}, {"key": "off", "value": false}],
        "default_variant": "off", "off_variant": "off", "rollout_bp": 0
    });
    let created = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(flag))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let plan = json!({
        "steps": [500, 2500, 10000], "mode": "manual", "evaluation_period_seconds": 60,
        "guardrails": [{"kind": "error_rate", "max": 0.05, "min_requests": 20}],
        "on_breach": "rollback"
    });
    let path = "/api/v1/flags/new-checkout/rollout";
    let started = app.call(Method::PUT, path, Some(key), Some(plan)).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let advanced = app
        .call(Method::POST, &format!("{path}/advance"), Some(key), None)
        .await;
    assert_eq!(advanced.status, 200, "{}", advanced.text());
    assert_eq!(flag_rollout(&app, key).await, 2500);

    // The guardrail fails: a fifth of the tenant's answers are 5xx.
    for i in 0..100 {
        app.state
            .metrics()
            .observe_http(&telemetry::HttpObservation {
                method: "POST",
                endpoint: "/ofrep/v1/evaluate/flags/{key}",
                status: if i % 5 == 0 { 500 } else { 200 },
                tenant_id: Some(&tenant.id),
                service: "flags",
                duration: Duration::from_millis(5),
                request_bytes: 0,
            });
    }
    // The check the last change scheduled (one evaluation period later), run now.
    let jobs = app
        .fixture
        .store
        .list_jobs(
            &tenant.id,
            &store::JobFilter {
                priority: None,
                status: None,
                handler: Some("flags.rollout_check"),
                before_id: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let version = advanced.json()["version"].clone();
    let job = jobs
        .iter()
        .find(|j| serde_json::from_str::<Value>(&j.payload).unwrap()["version"] == version)
        .expect("a check is scheduled while the ramp is active");
    let registry = JobRegistry::builtin(&Default::default());
    let handler = registry
        .get("flags.rollout_check")
        .expect("registered")
        .clone();
    let (ctx, _stop) = JobContext::detached(
        app.state.clone(),
        &tenant.id,
        "job_test",
        serde_json::from_str(&job.payload).unwrap(),
    );
    handler.run(ctx).await.expect("the check ran");

    // Rolled back to the last safe step (500 bp), with the reason and the figures.
    assert_eq!(flag_rollout(&app, key).await, 500);
    let state = app.get(path, Some(key)).await.json();
    assert_eq!(state["status"], "rolled_back", "{state}");
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "rollback", "{last}");
    assert_eq!(last["detail"]["reason"], "breach", "{last}");
    assert!(
        last["detail"]["guardrails"][0]["verdict"]["figure"]
            .as_f64()
            .unwrap()
            > 0.05
    );
    app.cleanup().await;
}
