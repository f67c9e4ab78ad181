//! Staged traffic shift over HTTP: a plan creates its flag, each stage sets the flag's rollout,
//! the `feedback.migration_check` job judges a window from the database (run directly here
//! instead of waiting for its `run_at`), healthy windows advance, a window with failed items
//! rolls back within that one check to the last healthy share, audited with the threshold
//! crossed, and OFREP routing of a fixed key is sticky across stages. Both backends.

use axum::http::Method;
use serde_json::{json, Value};
use server::jobs::{JobContext, JobRegistry};
use store::{Backend, FeedbackEvent, Scope};

use crate::{Reply, TestApp};

const PLAN: &str = "/api/v1/feedback/migration";
const FLAG: &str = "feedback-migration";
/// Routing keys whose assignment the test follows.
const KEYS: usize = 300;

fn plan() -> Value {
    let thresholds = json!({
        "max_error_share": 0.1, "max_dead_letters": 0,
        "max_p99_processing_ms": 3_600_000, "min_items": 3
    });
    json!({"stages": [
        {"name": "canary", "new_percent": 10, "monitoring_seconds": 10, "thresholds": thresholds},
        {"name": "third", "new_percent": 30, "monitoring_seconds": 10, "thresholds": thresholds},
        {"name": "most", "new_percent": 60, "monitoring_seconds": 10, "thresholds": thresholds},
    ]})
}

async fn step(app: &TestApp, key: &str, action: &str) -> Reply {
    app.call(Method::POST, &format!("{PLAN}:{action}"), Some(key), None)
        .await
}

async fn rollout_bp(app: &TestApp, key: &str) -> Value {
    let flag = app.get(&format!("/api/v1/flags/{FLAG}"), Some(key)).await;
    assert_eq!(flag.status, 200, "{}", flag.text());
    flag.json()["definition"]["rollout_bp"].clone()
}

/// The routing keys OFREP sends to `new`.
async fn on_new(app: &TestApp, key: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for i in 0..KEYS {
        let reply = app
            .call(
                Method::POST,
                &format!("/ofrep/v1/evaluate/flags/{FLAG}"),
                Some(key),
                Some(json!({"context": {"targetingKey": format!("account-{i}")}})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        match reply.json()["value"].as_str() {
            Some("new") => out.push(i),
            Some("legacy") => {}
            other => panic!("unexpected value {other:?}"),
        }
    }
    out
}

/// Ingests `n` standard-tier items (stored `received`, processed by nobody here).
async fn ingest(app: &TestApp, key: &str, prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let items: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "user_id": "u-1", "type": "review", "rating": 4, "tier": "standard"}))
        .collect();
    let reply = app
        .call(
            Method::POST,
            "/api/v1/feedback",
            Some(key),
            Some(json!(items)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["stored"], n, "{}", reply.text());
    ids
}

/// Runs the check job the last transition scheduled, directly (not at its `run_at`).
async fn run_check(app: &TestApp, tenant_id: &str, generation: i64, version: i64) -> Value {
    let registry = JobRegistry::builtin(&Default::default());
    let handler = registry
        .get("feedback.migration_check")
        .expect("registered")
        .clone();
    let (ctx, _stop) = JobContext::detached(
        app.state.clone(),
        tenant_id,
        "job_test",
        json!({"generation": generation, "version": version}),
    );
    handler
        .run(ctx)
        .await
        .expect("check ran")
        .expect("a result")
}

/// The check job the plan's last change enqueued: its payload, and that it waits for the
/// window's end.
async fn scheduled_check(app: &TestApp, tenant_id: &str, state: &Value) -> (i64, i64) {
    let jobs = app
        .fixture
        .store
        .list_jobs(
            tenant_id,
            &store::JobFilter {
                priority: None,
                status: None,
                handler: Some("feedback.migration_check"),
                before_id: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let version = state["version"].as_i64().unwrap();
    let job = jobs
        .iter()
        .find(|j| {
            j.handler == "feedback.migration_check"
                && serde_json::from_str::<Value>(&j.payload).unwrap()["version"] == version
        })
        .unwrap_or_else(|| panic!("no check job for version {version}: {jobs:?}"));
    assert_eq!(
        job.run_at_ms,
        state["check_due_ms"].as_i64().unwrap(),
        "the check runs when the window ends"
    );
    (state["generation"].as_i64().unwrap(), version)
}

async fn stages_advance_and_roll_back(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app
        .tenant("shift", &[Scope::Admin, Scope::Write, Scope::Read])
        .await;
    let key = key.secret.as_str();

    // Bad plans are refused naming the field.
    let mut bad = plan();
    bad["stages"][1]["new_percent"] = json!(5);
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(bad)).await;
    let problem = reply.assert_problem(422, "unprocessable", PLAN);
    assert_eq!(problem["field"], "stages[1].new_percent", "{problem}");
    let mut bad = plan();
    bad["stages"][0]["monitoring_seconds"] = json!(9);
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(bad)).await;
    assert_eq!(
        reply.json()["field"],
        "stages[0].monitoring_seconds",
        "{}",
        reply.text()
    );
    app.get(PLAN, Some(key))
        .await
        .assert_problem(404, "not_found", PLAN);

    // The plan creates the flag, everyone on legacy.
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(plan())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "pending");
    assert_eq!(rollout_bp(&app, key).await, 0);
    assert!(on_new(&app, key).await.is_empty());

    // Stage 0: 10 %.
    let started = step(&app, key, "start").await;
    assert_eq!(started.status, 200, "{}", started.text());
    let started = started.json();
    assert_eq!(
        (started["status"].as_str(), started["stage"].as_i64()),
        (Some("running"), Some(0))
    );
    assert_eq!(rollout_bp(&app, key).await, 1000);
    let at_10 = on_new(&app, key).await;
    assert!(
        !at_10.is_empty() && at_10.len() < KEYS / 4,
        "{}",
        at_10.len()
    );
    let (g, v) = scheduled_check(&app, &tenant.id, &started).await;

    // A healthy window: the check moves to stage 1 (30 %).
    ingest(&app, key, "w0", 4).await;
    let outcome = run_check(&app, &tenant.id, g, v).await;
    assert_eq!(outcome["outcome"], "judged", "{outcome}");
    assert_eq!(outcome["verdict"]["verdict"], "healthy", "{outcome}");
    let state = app.get(PLAN, Some(key)).await.json();
    assert_eq!(
        (state["status"].as_str(), state["stage"].as_i64()),
        (Some("running"), Some(1)),
        "{state}"
    );
    assert_eq!(state["last_healthy_percent"], 10);
    assert_eq!(rollout_bp(&app, key).await, 3000);
    let at_30 = on_new(&app, key).await;
    assert!(
        at_10.iter().all(|k| at_30.contains(k)),
        "a key on new stays on new"
    );
    assert!(at_30.len() > at_10.len());
    // The earlier check, run again, is stale: nothing moves.
    let stale = run_check(&app, &tenant.id, g, v).await;
    assert_eq!(stale["outcome"], "stale", "{stale}");
    assert_eq!(
        app.get(PLAN, Some(key)).await.json()["version"],
        state["version"]
    );

    // Another healthy window: stage 2 (60 %).
    let (g, v) = scheduled_check(&app, &tenant.id, &state).await;
    ingest(&app, key, "w1", 4).await;
    let outcome = run_check(&app, &tenant.id, g, v).await;
    assert_eq!(outcome["verdict"]["verdict"], "healthy", "{outcome}");
    let state = app.get(PLAN, Some(key)).await.json();
    assert_eq!(state["stage"], 2, "{state}");
    assert_eq!(rollout_bp(&app, key).await, 6000);
    let at_60 = on_new(&app, key).await;
    assert!(
        at_30.iter().all(|k| at_60.contains(k)),
        "a key on new stays on new"
    );

    // A window with failed items: rolled back within this one check to stage 1's share.
    let (g, v) = scheduled_check(&app, &tenant.id, &state).await;
    let ids = ingest(&app, key, "w2", 5).await;
    for id in &ids[..3] {
        let item = app
            .fixture
            .store
            .feedback_item(&tenant.id, id)
            .await
            .unwrap()
            .unwrap();
        let failed = app
            .fixture
            .store
            .fail_feedback(
                &tenant.id,
                id,
                item.revision,
                &FeedbackEvent::new("failed", "worker", json!({"error": "test"})),
                item.received_ms,
            )
            .await
            .unwrap();
        assert!(failed);
    }
    let outcome = run_check(&app, &tenant.id, g, v).await;
    assert_eq!(outcome["verdict"]["verdict"], "unhealthy", "{outcome}");
    let state = app.get(PLAN, Some(key)).await.json();
    assert_eq!(state["status"], "rolled_back", "{state}");
    assert_eq!(state["new_percent"], 30, "{state}");
    assert_eq!(rollout_bp(&app, key).await, 3000);
    assert_eq!(
        on_new(&app, key).await,
        at_30,
        "back to exactly stage 1's keys"
    );
    let history = state["history"].as_array().unwrap();
    let events: Vec<&str> = history
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["planned", "started", "passed", "passed", "rolled_back"]
    );
    let last = history.last().unwrap();
    assert_eq!(last["actor"], "feedback.migration_check");
    let reasons = &last["detail"]["verdict"]["reasons"];
    assert_eq!(reasons[0]["threshold"], "max_error_share", "{last}");
    assert!(reasons[0]["observed"].as_f64().unwrap() > 0.1, "{last}");
    assert!(
        last["detail"]["window"]["failed"].as_u64().unwrap() >= 3,
        "{last}"
    );
    // The tamper-evident audit log holds the rollback too.
    let audit = app
        .fixture
        .store
        .audit_records(&tenant.id, 0, 1000)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.record.event.as_str() == "migration.rolled_back"),
        "no rollback in the audit log"
    );
    // A rolled-back plan moves no more.
    step(&app, key, "advance")
        .await
        .assert_problem(409, "conflict", &format!("{PLAN}:advance"));

    // A new plan replaces it: started and advanced by hand to completion; abort returns
    // everyone to legacy.
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(plan())).await;
    assert_eq!(reply.json()["generation"], 2, "{}", reply.text());
    assert_eq!(step(&app, key, "start").await.status, 200);
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(plan())).await;
    reply.assert_problem(409, "conflict", PLAN);
    for _ in 0..3 {
        let reply = step(&app, key, "advance").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let state = app.get(PLAN, Some(key)).await.json();
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(rollout_bp(&app, key).await, 6000);
    step(&app, key, "abort")
        .await
        .assert_problem(409, "conflict", &format!("{PLAN}:abort"));
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(plan())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(step(&app, key, "start").await.status, 200);
    let reply = step(&app, key, "abort").await;
    assert_eq!(reply.json()["status"], "aborted", "{}", reply.text());
    assert_eq!(rollout_bp(&app, key).await, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn stages_advance_and_roll_back_sqlite() {
    stages_advance_and_roll_back(Backend::Sqlite).await;
}

#[tokio::test]
async fn stages_advance_and_roll_back_postgres() {
    stages_advance_and_roll_back(Backend::Postgres).await;
}

/// An existing flag that would route around the rollout is refused, naming `flag_key`.
#[tokio::test]
async fn an_unfit_existing_flag_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("shift-unfit", &[Scope::Admin]).await;
    let key = key.secret.as_str();
    let created = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(key),
            Some(crate::flags::boolean_flag("routing")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut body = plan();
    body["flag_key"] = json!("routing");
    let reply = app.call(Method::PUT, PLAN, Some(key), Some(body)).await;
    let problem = reply.assert_problem(409, "conflict", PLAN);
    assert_eq!(problem["field"], "flag_key", "{problem}");
    app.cleanup().await;
}
