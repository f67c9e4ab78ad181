//! Guarded rollouts over HTTP: a plan starts a flag's ramp, the `flags.rollout_check` job
//! (driven here with a passed-in time, not at its `run_at`) advances healthy steps, and a
//! degraded period (5xx answers in this tenant's HTTP series) rolls the ramp back at the first
//! check after the degradation, i.e. within one evaluation period, with the reason and the
//! figures in the ramp's history, the flag's audit trail and the audit log.

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};
use server::rollouts::RolloutService;
use store::{Backend, RolloutKey, Scope};

use crate::TestApp;

const FLAG: &str = "checkout";
const ROLLOUT: &str = "/api/v1/flags/checkout/rollout";
const PERIOD_MS: i64 = 10_000;

fn flag() -> Value {
    json!({
        "key": FLAG, "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true, "weight_bp": 10000}, {"key": "off", "value": false}],
        "default_variant": "off", "off_variant": "off", "rollout_bp": 0
    })
}

fn plan(on_breach: &str) -> Value {
    json!({
        "steps": [1000, 5000, 10000],
        "mode": "scheduled",
        "step_seconds": 60,
        "evaluation_period_seconds": 10,
        "guardrails": [
            {"kind": "error_rate", "max": 0.05, "min_requests": 20},
            {"kind": "latency_p99_ms", "max": 250, "min_requests": 20}
        ],
        "on_breach": on_breach
    })
}

/// `n` answers of the tenant's traffic, `errors` of them 5xx, as the HTTP middleware records
/// them.
fn traffic(app: &TestApp, tenant_id: &str, n: usize, errors: usize, ms: u64) {
    for i in 0..n {
        app.state
            .metrics()
            .observe_http(&telemetry::HttpObservation {
                method: "POST",
                endpoint: "/ofrep/v1/evaluate/flags/{key}",
                status: if i < errors { 503 } else { 200 },
                tenant_id: Some(tenant_id),
                service: "flags",
                duration: Duration::from_millis(ms),
                request_bytes: 0,
            });
    }
}

async fn flag_definition(app: &TestApp, key: &str) -> Value {
    let reply = app.get(&format!("/api/v1/flags/{FLAG}"), Some(key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["definition"].clone()
}

/// The pending check job of the ramp's current version: (generation, version, run_at_ms).
async fn pending_check(app: &TestApp, tenant_id: &str, state: &Value) -> Option<(i64, i64, i64)> {
    let jobs = app
        .fixture
        .store
        .list_jobs(
            tenant_id,
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
    let version = state["version"].as_i64().unwrap();
    jobs.iter()
        .map(|j| {
            (
                serde_json::from_str::<Value>(&j.payload).unwrap(),
                j.run_at_ms,
            )
        })
        .find(|(p, _)| p["version"] == version && p["flag_key"] == FLAG)
        .map(|(p, run_at)| (p["generation"].as_i64().unwrap(), version, run_at))
}

async fn check(app: &TestApp, tenant_id: &str, job: (i64, i64, i64), at_ms: i64) -> Value {
    let key = RolloutKey {
        tenant_id,
        environment: "production",
        flag_key: FLAG,
    };
    let outcome = RolloutService
        .check(&app.state, key, job.0, job.1, at_ms)
        .await
        .unwrap_or_else(|e| panic!("check failed: {e:?}"));
    serde_json::to_value(outcome).unwrap()
}

async fn a_degraded_period_rolls_back_within_one_check(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, admin) = app.tenant("ramp", &[Scope::Admin, Scope::Read]).await;
    let key = admin.secret.as_str();
    let created = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(flag()))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());

    let started = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(plan("rollback")))
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let state = started.json();
    assert_eq!(
        (state["status"].as_str(), state["step"].as_i64()),
        (Some("active"), Some(0))
    );
    assert_eq!(state["rollout_bp"], 1000);
    assert_eq!(flag_definition(&app, key).await["rollout_bp"], 1000);
    let t0 = state["step_started_ms"].as_i64().unwrap();
    let job = pending_check(&app, &tenant.id, &state)
        .await
        .expect("first check scheduled");
    assert_eq!(job.2, t0 + PERIOD_MS, "checked one evaluation period later");

    // Healthy and step time not up: hold, with the figures.
    traffic(&app, &tenant.id, 40, 0, 20);
    let outcome = check(&app, &tenant.id, job, t0 + PERIOD_MS).await;
    assert_eq!(outcome["decision"]["action"]["action"], "hold", "{outcome}");
    assert_eq!(outcome["decision"]["reason"], "healthy", "{outcome}");
    // Healthy for the step's 60 s: on to step 1.
    let state = app.get(ROLLOUT, Some(key)).await.json();
    let job = pending_check(&app, &tenant.id, &state)
        .await
        .expect("next check");
    traffic(&app, &tenant.id, 40, 0, 20);
    let outcome = check(&app, &tenant.id, job, t0 + 60_000).await;
    assert_eq!(
        outcome["decision"]["action"],
        json!({"action": "advance", "to": 1}),
        "{outcome}"
    );
    let state = app.get(ROLLOUT, Some(key)).await.json();
    assert_eq!(
        (state["step"].as_i64(), state["last_safe_step"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(flag_definition(&app, key).await["rollout_bp"], 5000);

    // A healthy check at step 1, then the error rate degrades right after it.
    let job = pending_check(&app, &tenant.id, &state)
        .await
        .expect("next check");
    let healthy_at = t0 + 70_000;
    traffic(&app, &tenant.id, 40, 1, 20);
    let outcome = check(&app, &tenant.id, job, healthy_at).await;
    assert_eq!(outcome["decision"]["action"]["action"], "hold", "{outcome}");
    traffic(&app, &tenant.id, 50, 10, 20);

    // The very next check, due one period after the healthy one, rolls back.
    let state = app.get(ROLLOUT, Some(key)).await.json();
    let job = pending_check(&app, &tenant.id, &state)
        .await
        .expect("next check");
    assert_eq!(
        job.2,
        healthy_at + PERIOD_MS,
        "the first check after the degradation is one period later"
    );
    let outcome = check(&app, &tenant.id, job, job.2).await;
    assert_eq!(
        outcome["decision"]["action"],
        json!({"action": "rollback", "to": 0}),
        "{outcome}"
    );
    assert_eq!(outcome["status"], "rolled_back");
    let state = app.get(ROLLOUT, Some(key)).await.json();
    assert_eq!(state["status"], "rolled_back", "{state}");
    assert_eq!(state["rollout_bp"], 1000);
    assert_eq!(flag_definition(&app, key).await["rollout_bp"], 1000);
    assert!(
        pending_check(&app, &tenant.id, &state).await.is_none(),
        "a stopped ramp is not checked"
    );

    // The history says why, with the figures.
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["event"].as_str(), last["actor"].as_str()),
        (Some("rollback"), Some("rollout-guard")),
        "{last}"
    );
    assert_eq!(last["rollout_bp"], 1000);
    assert_eq!(last["detail"]["reason"], "breach", "{last}");
    let error_rate = &last["detail"]["guardrails"][0];
    assert_eq!(error_rate["verdict"]["verdict"], "breached", "{last}");
    assert_eq!(error_rate["verdict"]["threshold"], 0.05);
    let figure = error_rate["verdict"]["figure"].as_f64().unwrap();
    let requests = error_rate["reading"]["requests"].as_u64().unwrap();
    assert_eq!(error_rate["reading"]["server_errors"], 10, "{last}");
    assert!(
        requests >= 50 && figure > 0.05 && (figure - 10.0 / requests as f64).abs() < 1e-12,
        "{last}"
    );
    assert_eq!(
        last["detail"]["guardrails"][1]["verdict"]["verdict"], "healthy",
        "{last}"
    );
    eprintln!(
        "{backend:?}: degraded right after the healthy check at +{} s; rolled back at the next check, {} s later (period {} s): error rate {figure:.4} > 0.05 over {requests} requests, rollout 5000 -> 1000 bp",
        (healthy_at - t0) / 1000,
        (job.2 - healthy_at) / 1000,
        PERIOD_MS / 1000
    );
    // The flag's audit trail shows the guard's write; the audit log the action.
    let trail = app
        .get(&format!("/api/v1/flags/{FLAG}/audit"), Some(key))
        .await
        .json();
    let newest = &trail["entries"][0];
    assert_eq!(
        (
            newest["actor"].as_str(),
            newest["after"]["rollout_bp"].as_i64()
        ),
        (Some("rollout-guard"), Some(1000)),
        "{trail}"
    );
    let log = app
        .get("/api/v1/audit/records?limit=1000", Some(key))
        .await
        .json();
    let events: Vec<(&str, &str)> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert!(
        events.contains(&("rollout.rollback", "rollout-guard")),
        "{events:?}"
    );
    assert!(
        events.contains(&("rollout.advance", "rollout-guard")),
        "{events:?}"
    );

    // Resuming re-enters step 1 from the safe step; a latency breach with kill-on-breach is
    // covered below.
    let resumed = app
        .call(Method::POST, &format!("{ROLLOUT}/advance"), Some(key), None)
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    assert_eq!(
        (
            resumed.json()["status"].as_str(),
            resumed.json()["step"].as_i64()
        ),
        (Some("active"), Some(1))
    );
    let aborted = app
        .call(Method::POST, &format!("{ROLLOUT}/abort"), Some(key), None)
        .await;
    assert_eq!(aborted.json()["status"], "aborted", "{}", aborted.text());
    assert_eq!(flag_definition(&app, key).await["rollout_bp"], 0);
    app.call(Method::POST, &format!("{ROLLOUT}/abort"), Some(key), None)
        .await
        .assert_problem(409, "conflict", &format!("{ROLLOUT}/abort"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_degraded_period_rolls_back_within_one_check_on_sqlite() {
    a_degraded_period_rolls_back_within_one_check(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_degraded_period_rolls_back_within_one_check_on_postgres() {
    a_degraded_period_rolls_back_within_one_check(Backend::Postgres).await;
}

#[tokio::test]
async fn a_latency_breach_kills_the_flag_when_the_plan_says_so() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("ramp", &[Scope::Admin, Scope::Read]).await;
    let key = admin.secret.as_str();
    app.call(Method::POST, "/api/v1/flags", Some(key), Some(flag()))
        .await;
    let state = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(plan("kill")))
        .await
        .json();
    let job = pending_check(&app, &tenant.id, &state)
        .await
        .expect("scheduled");
    traffic(&app, &tenant.id, 100, 0, 900);
    let outcome = check(&app, &tenant.id, job, job.2).await;
    assert_eq!(outcome["decision"]["action"]["action"], "kill", "{outcome}");
    let definition = flag_definition(&app, key).await;
    assert_eq!(definition["kill_switch"], true, "{definition}");
    let trail = app
        .get(&format!("/api/v1/flags/{FLAG}/audit"), Some(key))
        .await
        .json();
    assert_eq!(
        (
            trail["entries"][0]["action"].as_str(),
            trail["entries"][0]["actor"].as_str()
        ),
        (Some("kill"), Some("rollout-guard"))
    );
    let state = app.get(ROLLOUT, Some(key)).await.json();
    assert_eq!(state["status"], "killed");
    let p99 = state["last_check"]["guardrails"][1]["verdict"]["figure"]
        .as_f64()
        .unwrap();
    assert!(p99 > 250.0, "{state}");
    // A stale job (the ramp moved on) changes nothing.
    let again = check(&app, &tenant.id, job, job.2 + 1).await;
    assert_eq!(again["outcome"], "stale");
    app.cleanup().await;
}

#[tokio::test]
async fn plans_are_validated_scoped_and_exclusive() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("a", &[Scope::Admin, Scope::Read]).await;
    let reader = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Read].into_iter().collect(), None)
        .await
        .unwrap();
    let key = admin.secret.as_str();
    app.call(Method::PUT, ROLLOUT, Some(key), Some(plan("rollback")))
        .await
        .assert_problem(404, "not_found", ROLLOUT);
    app.call(Method::POST, "/api/v1/flags", Some(key), Some(flag()))
        .await;
    let mut bad = plan("rollback");
    bad["steps"] = json!([1000, 1000]);
    let problem = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(bad))
        .await
        .assert_problem(422, "unprocessable", ROLLOUT);
    assert_eq!(problem["field"], "steps[1]");
    let mut bad = plan("rollback");
    bad["step_seconds"] = json!(5);
    let problem = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(bad))
        .await
        .assert_problem(422, "unprocessable", ROLLOUT);
    assert_eq!(problem["field"], "step_seconds");
    let mut bad = plan("rollback");
    bad["guardrails"] = json!([{"kind": "experiment", "experiment": "nope"}]);
    let problem = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(bad))
        .await
        .assert_problem(422, "unprocessable", ROLLOUT);
    assert_eq!(problem["field"], "guardrails[0].experiment");
    let mut bad = plan("rollback");
    bad["steps"] = json!("all");
    let problem = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(bad))
        .await
        .assert_problem(400, "invalid_field", ROLLOUT);
    assert_eq!(problem["field"], "steps");
    let mut bad = plan("rollback");
    bad["surprise"] = json!(1);
    app.call(Method::PUT, ROLLOUT, Some(key), Some(bad))
        .await
        .assert_problem(400, "invalid_field", ROLLOUT);
    app.get(ROLLOUT, Some(key))
        .await
        .assert_problem(404, "not_found", ROLLOUT);
    // A flag without a split cannot serve a partial rollout: 409 before anything is stored.
    let mut plain = flag();
    plain["key"] = json!("plain");
    plain["variants"][0]["weight_bp"] = json!(0);
    plain["rollout_bp"] = json!(10000);
    app.call(Method::POST, "/api/v1/flags", Some(key), Some(plain))
        .await;
    let plain_path = "/api/v1/flags/plain/rollout";
    let problem = app
        .call(Method::PUT, plain_path, Some(key), Some(plan("rollback")))
        .await
        .assert_problem(409, "conflict", plain_path);
    assert!(
        problem["detail"].as_str().unwrap().contains("split"),
        "{problem}"
    );
    app.get(plain_path, Some(key))
        .await
        .assert_problem(404, "not_found", plain_path);

    let reply = app
        .call(Method::PUT, ROLLOUT, Some(key), Some(plan("rollback")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.call(Method::PUT, ROLLOUT, Some(key), Some(plan("rollback")))
        .await
        .assert_problem(409, "conflict", ROLLOUT);
    // Read scope reads, admin changes.
    let read = reader.secret.as_str();
    assert_eq!(app.get(ROLLOUT, Some(read)).await.status, 200);
    app.call(
        Method::POST,
        &format!("{ROLLOUT}/rollback"),
        Some(read),
        None,
    )
    .await
    .assert_problem(403, "forbidden", &format!("{ROLLOUT}/rollback"));
    // Another tenant sees nothing of it; other environments are separate.
    let (_, other) = app.tenant("b", &[Scope::Admin, Scope::Read]).await;
    app.get(ROLLOUT, Some(other.secret.as_str()))
        .await
        .assert_problem(404, "not_found", ROLLOUT);
    app.call(
        Method::POST,
        &format!("{ROLLOUT}/abort"),
        Some(other.secret.as_str()),
        None,
    )
    .await
    .assert_problem(404, "not_found", &format!("{ROLLOUT}/abort"));
    let staging = format!("{ROLLOUT}?environment=staging");
    app.get(&staging, Some(key))
        .await
        .assert_problem(404, "not_found", ROLLOUT);
    // A manual rollback with no step passed: rollout 0.
    let rolled = app
        .call(
            Method::POST,
            &format!("{ROLLOUT}/rollback"),
            Some(key),
            None,
        )
        .await
        .json();
    assert_eq!(
        (rolled["status"].as_str(), rolled["rollout_bp"].as_i64()),
        (Some("rolled_back"), Some(0))
    );
    assert_eq!(rolled["history"][1]["detail"]["manual"], true);
    app.cleanup().await;
}
