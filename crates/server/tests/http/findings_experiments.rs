//! Findings of issue 21 about experiments, each as a test that failed before the fix. They use
//! only the HTTP harness (and the exposure recorder's flush and the store's read of one
//! exposure, both older than the issue), so they run against the code before it too.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Returns once the clock has moved past `t`, so what happens next is strictly later (a
/// running window's bounds are compared to the millisecond).
fn wait_for_clock_past(t: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while now_ms() <= t {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock does not move"
        );
        std::hint::spin_loop();
    }
}

/// A multivariate flag that tracks exposures: a 50/50 split of `control` and `green`, and a
/// rule that always serves `green` to staff.
fn split_flag(key: &str, weights: [u32; 2]) -> Value {
    json!({
        "key": key, "type": "multivariate", "status": "active", "track_exposure": true,
        "variants": [
            {"key": "control", "value": "grey", "weight_bp": weights[0], "control": true},
            {"key": "green", "value": "green", "weight_bp": weights[1]}
        ],
        "default_variant": "control", "off_variant": "control",
        "rules": [{"id": "staff", "when": {"attribute": "staff", "op": "equals", "value": true},
                   "variant": "green"}]
    })
}

fn experiment(key: &str, flag: &str) -> Value {
    json!({
        "key": key,
        "hypothesis": "A green button raises checkout conversion",
        "flag_key": flag,
        "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
        "control": "control",
        "primary_metric": {"key": "checkout", "kind": "conversion", "goal": "increase",
                           "minimum_detectable_effect": 0.2},
        "min_sample_size": 10
    })
}

async fn post(app: &TestApp, key: &str, path: &str, body: Option<Value>) -> crate::Reply {
    app.call(Method::POST, path, Some(key), body).await
}

async fn create_flag(app: &TestApp, key: &str, flag: Value) {
    let created = post(app, key, "/api/v1/flags", Some(flag)).await;
    assert_eq!(created.status, 201, "{}", created.text());
}

/// The variant and reason the flag serves `context`.
async fn served(app: &TestApp, key: &str, flag: &str, context: Value) -> (Value, Value) {
    let reply = post(
        app,
        key,
        &format!("/ofrep/v1/evaluate/flags/{flag}"),
        Some(json!({ "context": context })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    (body["variant"].clone(), body["reason"].clone())
}

// Finding: an exposure was recorded for every answer with a variant, so users served a fixed
// rule variant (not randomised) entered experiment analyses.
#[tokio::test]
async fn finding_exposures_are_recorded_only_for_split_assignments() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create_flag(&app, key, split_flag("button", [5000, 5000])).await;
    for i in 0..10 {
        let staff = served(
            &app,
            key,
            "button",
            json!({"targetingKey": format!("staff-{i}"), "staff": true}),
        )
        .await;
        assert_eq!(staff, (json!("green"), json!("TARGETING_MATCH")));
        let visitor = served(
            &app,
            key,
            "button",
            json!({"targetingKey": format!("visitor-{i}")}),
        )
        .await;
        assert_eq!(visitor.1, json!("SPLIT"));
    }
    app.state.exposures().flush().await;
    for i in 0..10 {
        let exposure = |user: String| {
            let store = app.fixture.store.clone();
            let tenant_id = tenant.id.clone();
            async move {
                store
                    .exposure(&tenant_id, "production", "button", &user)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            exposure(format!("staff-{i}")).await,
            None,
            "a rule's fixed variant is not an assignment"
        );
        assert!(exposure(format!("visitor-{i}")).await.is_some());
    }
    app.cleanup().await;
}

// Finding: an experiment could be created (and started) on a flag that does not exist.
#[tokio::test]
async fn finding_experiment_on_missing_flag_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let path = "/api/v1/experiments";
    let reply = post(&app, &admin.secret, path, Some(experiment("exp", "ghost"))).await;
    let problem = reply.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["field"], "flag_key", "{problem}");
    let listed = app.get(path, Some(&admin.secret)).await.json();
    assert_eq!(listed["experiments"], json!([]));
    app.cleanup().await;
}

// Finding: an experiment's variants and weights were never checked against its flag's, and any
// number of experiments could share one flag.
#[tokio::test]
async fn finding_experiment_variants_must_match_the_flag() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let path = "/api/v1/experiments";
    create_flag(&app, key, split_flag("skewed", [8000, 2000])).await;
    let reply = post(&app, key, path, Some(experiment("skewed-exp", "skewed"))).await;
    let problem = reply.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["field"], "variants", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("green"),
        "the difference is named: {problem}"
    );

    create_flag(&app, key, split_flag("button", [5000, 5000])).await;
    let mut purple = experiment("purple-exp", "button");
    purple["variants"][1]["key"] = json!("purple");
    let reply = post(&app, key, path, Some(purple)).await;
    let problem = reply.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["field"], "variants", "{problem}");

    let first = post(&app, key, path, Some(experiment("first", "button"))).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let second = post(&app, key, path, Some(experiment("second", "button"))).await;
    let problem = second.assert_problem(409, "conflict", path);
    assert!(
        problem["detail"].as_str().unwrap().contains("first"),
        "the owner is named: {problem}"
    );
    app.cleanup().await;
}

// Finding: pausing or concluding an experiment did not change what its flag serves.
#[tokio::test]
async fn finding_pause_and_conclude_change_what_the_flag_serves() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create_flag(&app, key, split_flag("button", [5000, 5000])).await;
    let created = post(
        &app,
        key,
        "/api/v1/experiments",
        Some(experiment("exp", "button")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    post(&app, key, "/api/v1/experiments/exp/start", None).await;
    let users: Vec<Value> = (0..30)
        .map(|i| json!({"targetingKey": format!("user-{i}")}))
        .collect();
    let mut variants = std::collections::BTreeSet::new();
    for user in &users {
        variants.insert(
            served(&app, key, "button", user.clone())
                .await
                .0
                .to_string(),
        );
    }
    assert_eq!(variants.len(), 2, "running: both variants are served");

    let paused = post(&app, key, "/api/v1/experiments/exp/pause", None).await;
    assert_eq!(paused.status, 200, "{}", paused.text());
    for user in &users {
        assert_eq!(
            served(&app, key, "button", user.clone()).await.0,
            json!("control"),
            "paused: everyone gets the control ({user})"
        );
    }
    post(&app, key, "/api/v1/experiments/exp/resume", None).await;
    let mut variants = std::collections::BTreeSet::new();
    for user in &users {
        variants.insert(
            served(&app, key, "button", user.clone())
                .await
                .0
                .to_string(),
        );
    }
    assert_eq!(variants.len(), 2, "resumed: the split again");

    let concluded = post(
        &app,
        key,
        "/api/v1/experiments/exp/conclude",
        Some(json!({"winner": "green"})),
    )
    .await;
    assert_eq!(concluded.status, 200, "{}", concluded.text());
    for user in &users {
        assert_eq!(
            served(&app, key, "button", user.clone()).await.0,
            json!("green"),
            "concluded: everyone gets the winner ({user})"
        );
    }
    app.cleanup().await;
}

/// Evaluates `button` for 40 users named `{prefix}-{i}`, one in three converting (their
/// events are added to `events`); returns the time after the exposures were stored.
async fn evaluate_all(app: &TestApp, key: &str, prefix: &str, events: &mut Vec<Value>) -> i64 {
    for i in 0..40 {
        let user = format!("{prefix}-{i}");
        served(app, key, "button", json!({"targetingKey": user})).await;
        if i % 3 == 0 {
            events.push(json!({"user": user, "metric": "checkout"}));
        }
    }
    app.state.exposures().flush().await;
    now_ms()
}

// Finding: users exposed while an experiment was a draft or paused counted in its analysis.
#[tokio::test]
async fn finding_exposures_outside_running_windows_do_not_count() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create_flag(&app, key, split_flag("button", [5000, 5000])).await;
    let created = post(
        &app,
        key,
        "/api/v1/experiments",
        Some(experiment("exp", "button")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut events = Vec::new();
    // While a draft, the flag (already active) serves its split: not the experiment's users.
    let last = evaluate_all(&app, key, "draft", &mut events).await;
    wait_for_clock_past(last);
    post(&app, key, "/api/v1/experiments/exp/start", None).await;
    let last = evaluate_all(&app, key, "running", &mut events).await;
    wait_for_clock_past(last);
    post(&app, key, "/api/v1/experiments/exp/pause", None).await;
    evaluate_all(&app, key, "paused", &mut events).await;
    post(&app, key, "/api/v1/experiments/exp/resume", None).await;
    let stored = post(
        &app,
        key,
        "/api/v1/experiments/exp/events",
        Some(json!({ "events": events })),
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text());

    let results = app.get("/api/v1/experiments/exp/results", Some(key)).await;
    assert_eq!(results.status, 200, "{}", results.text());
    let results = results.json();
    let users: u64 = results["users"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        users, 40,
        "only the users assigned while running: {results}"
    );
    let checkout = &results["metrics"][0];
    let converted: f64 = checkout["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["n"].as_f64().unwrap() * v["mean"].as_f64().unwrap())
        .sum();
    assert!((converted - 14.0).abs() < 1e-9, "{converted}: {results}");
    app.cleanup().await;
}
