//! Background jobs over HTTP: enqueue (202 + Location, idempotent repeats), reading, listing
//! with filters and pages, cancel, retry of a dead job, purge, statistics, schedules, the bulk
//! Weber recalculation as a job, and every refusal naming its field. On both backends where
//! storage matters.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const JOBS: &str = "/api/v1/jobs";

async fn post_with(
    app: &TestApp,
    key: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Reply {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    app.send(req.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn enqueue(app: &TestApp, key: &str, body: Value) -> Reply {
    app.call(Method::POST, JOBS, Some(key), Some(body)).await
}

/// Enqueues and expects 202; returns the job.
async fn enqueued(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = enqueue(app, key, body).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    reply.json()
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("a job id").to_owned()
}

/// Expects a problem with `status` and `code` naming `field`.
fn assert_field(reply: &Reply, status: u16, code: &str, instance: &str, field: &str) -> Value {
    let body = reply.assert_problem(status, code, instance);
    assert_eq!(body["field"], field, "{body}");
    body
}

/// Polls the job until `done` holds for it (a worker is working it), for up to 30 s.
async fn wait_for(app: &TestApp, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job = app.get(&format!("{JOBS}/{id}"), Some(key)).await.json();
        if done(&job) {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} never got there: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An application whose job workers run, with retry delays of 20 ms so a failing job uses up
/// its attempts at once. Returns the app and what stops the workers.
async fn app_with_workers(
    backend: Backend,
) -> (
    TestApp,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut jobs = server::JobSettings {
        poll_interval: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    for queue in &mut jobs.queues {
        queue.retry_delay_ms = 20;
    }
    let config = server::ServerConfig {
        jobs,
        ..Default::default()
    };
    let app = TestApp::with_config(backend, config).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(server::run_job_workers(app.state.clone(), async move {
        let _ = stopped.await;
    }));
    (app, stop, workers)
}

async fn enqueue_follow_and_page(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    // 202, the job, and its URL.
    let reply = enqueue(
        &app,
        key,
        json!({"handler": "jobs.noop", "priority": "high", "delay_ms": 60_000}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let job = reply.json();
    let id = id_of(&job);
    let location = format!("/api/v1/jobs/{id}");
    assert_eq!(reply.headers["location"], location.as_str());
    assert!(id.starts_with("job_"), "{id}");
    assert_eq!(job["handler"], "jobs.noop");
    assert_eq!(job["queue"], "high");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["payload"], json!({}));
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["links"]["self"], location.as_str());
    assert_eq!(
        job["links"]["cancel"],
        format!("{location}/cancel").as_str()
    );
    // A delayed job expires a day after its run time unless told otherwise.
    assert!(job["expires_at"].is_string(), "{job}");
    assert!(job["run_at"].as_str().unwrap() > job["created_at"].as_str().unwrap());

    // The URL answers with the same job.
    let read = app.get(&location, Some(key)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["id"], id.as_str());
    assert_eq!(read.json()["status"], "pending");

    // Idempotency: the header (bare or as a Structured Field string) and the body field are
    // one key; a repeat is 200 with the first job.
    let first = post_with(
        &app,
        key,
        JOBS,
        &[("idempotency-key", "nightly-42")],
        json!({"handler": "jobs.noop"}),
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.text());
    let first_id = id_of(&first.json());
    for (headers, body) in [
        (
            vec![("idempotency-key", "nightly-42")],
            json!({"handler": "jobs.noop"}),
        ),
        (
            vec![("idempotency-key", "\"nightly-42\"")],
            json!({"handler": "jobs.noop"}),
        ),
        (
            vec![],
            json!({"handler": "jobs.noop", "idempotency_key": "nightly-42"}),
        ),
        (
            vec![("idempotency-key", "nightly-42")],
            json!({"handler": "jobs.noop", "idempotency_key": "nightly-42"}),
        ),
    ] {
        let again = post_with(&app, key, JOBS, &headers, body).await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(id_of(&again.json()), first_id);
        assert_eq!(
            again.headers["location"],
            format!("/api/v1/jobs/{first_id}").as_str()
        );
    }
    let differ = post_with(
        &app,
        key,
        JOBS,
        &[("idempotency-key", "one")],
        json!({"handler": "jobs.noop", "idempotency_key": "two"}),
    )
    .await;
    assert_field(&differ, 422, "unprocessable", JOBS, "idempotency_key");

    // Five more jobs of two handlers, then list newest first, filter, and page.
    let mut ids = vec![id.clone(), first_id.clone()];
    for i in 0..5 {
        let handler = if i % 2 == 0 {
            "jobs.canary"
        } else {
            "jobs.noop"
        };
        ids.push(id_of(
            &enqueued(&app, key, json!({"handler": handler, "priority": "bulk"})).await,
        ));
    }
    let listed = app.get(JOBS, Some(key)).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed = listed.json();
    let got: Vec<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(got, newest_first);
    assert!(listed.get("next_before").is_none(), "{listed}");

    let canaries = app
        .get("/api/v1/jobs?handler=jobs.canary", Some(key))
        .await
        .json();
    assert_eq!(canaries["jobs"].as_array().unwrap().len(), 3, "{canaries}");
    let high = app
        .get("/api/v1/jobs?queue=high&status=pending", Some(key))
        .await
        .json();
    let high: Vec<String> = high["jobs"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(high, vec![id.clone()]);
    let none = app.get("/api/v1/jobs?status=dead", Some(key)).await.json();
    assert_eq!(none["jobs"], json!([]));

    let mut paged = Vec::new();
    let mut path = format!("{JOBS}?limit=3");
    loop {
        let page = app.get(&path, Some(key)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 3);
        paged.extend(jobs.iter().map(id_of));
        match page["next_before"].as_str() {
            Some(before) => path = format!("{JOBS}?limit=3&before={before}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    // Bad filters are 400 naming the parameter.
    for (query, parameter) in [
        ("status=bogus", "status"),
        ("queue=urgent", "queue"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("handler=Not%20A%20Name", "handler"),
        ("before=job%3Bdrop", "before"),
    ] {
        let reply = app.get(&format!("{JOBS}?{query}"), Some(key)).await;
        let body = reply.assert_problem(400, "invalid_parameter", JOBS);
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn enqueue_follow_and_page_on_sqlite() {
    enqueue_follow_and_page(Backend::Sqlite).await;
}

#[tokio::test]
async fn enqueue_follow_and_page_on_postgres() {
    enqueue_follow_and_page(Backend::Postgres).await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_enqueues_nothing() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let big = "x".repeat(store::MAX_JOB_PAYLOAD_BYTES);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        // Rules JSON Schema cannot state: 422 naming the field.
        (
            json!({"handler": "no.such.handler"}),
            422,
            "unprocessable",
            "handler",
        ),
        (
            json!({"handler": "jobs.noop", "delay_ms": -1}),
            422,
            "unprocessable",
            "delay_ms",
        ),
        (
            json!({"handler": "jobs.noop", "delay_ms": 1000, "run_at": "2030-01-01T00:00:00Z"}),
            422,
            "unprocessable",
            "run_at",
        ),
        (
            json!({"handler": "jobs.noop", "run_at": "2999-01-01T00:00:00Z"}),
            422,
            "unprocessable",
            "run_at",
        ),
        (
            json!({"handler": "jobs.noop", "expires_at": "2000-01-01T00:00:00Z"}),
            422,
            "unprocessable",
            "expires_at",
        ),
        (
            json!({"handler": "jobs.noop", "max_retries": 26}),
            422,
            "unprocessable",
            "max_retries",
        ),
        (
            json!({"handler": "jobs.noop", "timeout_ms": 10}),
            422,
            "unprocessable",
            "timeout_ms",
        ),
        (
            json!({"handler": "jobs.noop", "payload": [1, 2]}),
            422,
            "unprocessable",
            "payload",
        ),
        (
            json!({"handler": "weber.recalculate", "payload": {"user_ids": "everyone"}}),
            422,
            "unprocessable",
            "payload.user_ids",
        ),
        (
            json!({"handler": "jobs.noop", "idempotency_key": "has space"}),
            422,
            "unprocessable",
            "idempotency_key",
        ),
        (
            json!({"handler": "jobs\u{0}noop"}),
            422,
            "unprocessable",
            "handler",
        ),
        // Over 64 KiB of payload: 413 naming it.
        (
            json!({"handler": "jobs.noop", "payload": {"blob": big}}),
            413,
            "payload_too_large",
            "payload",
        ),
        // The document's own rules: 400 naming the field.
        (
            json!({"handler": "jobs.noop", "priority": "urgent"}),
            400,
            "invalid_field",
            "priority",
        ),
        (
            json!({"handler": "jobs.noop", "delay_ms": 1e30}),
            400,
            "invalid_field",
            "delay_ms",
        ),
        (
            json!({"handler": "jobs.noop", "max_retries": 18_446_744_073_709_551_615_u64}),
            400,
            "invalid_field",
            "max_retries",
        ),
        (
            json!({"handler": "jobs.noop", "run_at": "tomorrow"}),
            400,
            "invalid_field",
            "run_at",
        ),
        (
            json!({"handler": "jobs.noop", "colour": "red"}),
            400,
            "invalid_field",
            "colour",
        ),
        (json!({"payload": {}}), 400, "invalid_field", "handler"),
    ];
    for (body, status, code, field) in cases {
        let reply = enqueue(&app, key, body.clone()).await;
        let problem = reply.assert_problem(status, code, JOBS);
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // A field given twice.
    let req = Request::builder()
        .method(Method::POST)
        .uri(JOBS)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    let dup = app
        .send(
            req.body(Body::from(
                r#"{"handler":"jobs.noop","handler":"weber.recalculate"}"#,
            ))
            .unwrap(),
        )
        .await;
    assert_field(&dup, 400, "invalid_field", JOBS, "handler");
    // An Idempotency-Key the service cannot use is 422, as the body's would be.
    let bad_header = post_with(
        &app,
        key,
        JOBS,
        &[("idempotency-key", "a b")],
        json!({"handler": "jobs.noop"}),
    )
    .await;
    assert_field(&bad_header, 422, "unprocessable", JOBS, "idempotency_key");
    // Nothing was enqueued by any of them.
    let listed = app.get(JOBS, Some(key)).await.json();
    assert_eq!(listed["jobs"], json!([]), "{listed}");
    app.cleanup().await;
}

async fn lifecycle(backend: Backend) {
    let (app, stop_workers, workers) = app_with_workers(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    // Cancel a pending job; cancelling it again is 409 naming its status.
    let waiting = id_of(
        &enqueued(
            &app,
            key,
            json!({"handler": "jobs.noop", "delay_ms": 3_600_000}),
        )
        .await,
    );
    let cancel_path = format!("{JOBS}/{waiting}/cancel");
    let cancelled = app.call(Method::POST, &cancel_path, Some(key), None).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert!(cancelled.json()["finished_at"].is_string());
    let again = app.call(Method::POST, &cancel_path, Some(key), None).await;
    let problem = again.assert_problem(409, "invalid_state", &cancel_path);
    assert_eq!(problem["field"], "status", "{problem}");
    assert_eq!(problem["current_status"], "cancelled", "{problem}");

    // A job that always fails runs max_retries + 1 times and ends dead; the API runs it again.
    let doomed = id_of(
        &enqueued(
            &app,
            key,
            json!({"handler": "jobs.canary", "payload": {"fail": "retry"}, "priority": "critical", "max_retries": 2}),
        )
        .await,
    );
    let dead = wait_for(&app, key, &doomed, |j| j["status"] == "dead").await;
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["max_attempts"], 3, "{dead}");
    let error = dead["error"].as_str().unwrap().to_owned();
    assert!(error.contains("asked to fail"), "{dead}");
    assert!(dead["finished_at"].is_string(), "{dead}");
    let listed = app
        .get(&format!("{JOBS}?status=dead"), Some(key))
        .await
        .json();
    assert_eq!(listed["jobs"][0]["id"], doomed.as_str());
    let retry_path = format!("{JOBS}/{doomed}/retry");
    let retried = app.call(Method::POST, &retry_path, Some(key), None).await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    let retried = retried.json();
    assert_eq!(retried["status"], "pending", "{retried}");
    assert_eq!(retried["attempts"], 0);
    // The last error stays on the record until the job runs again.
    assert_eq!(retried["error"], error.as_str());
    // Three more attempts, and dead again.
    let dead = wait_for(&app, key, &doomed, |j| j["status"] == "dead").await;
    assert_eq!(dead["attempts"], 3, "{dead}");
    // Only a dead or failed job can be retried: 409 naming the status.
    let pending_path = format!("{JOBS}/{waiting}/retry");
    let refused = app.call(Method::POST, &pending_path, Some(key), None).await;
    assert_eq!(
        refused.assert_problem(409, "invalid_state", &pending_path)["current_status"],
        "cancelled"
    );

    // Statistics: every queue, every status, and what happened above.
    let kept = id_of(
        &enqueued(
            &app,
            key,
            json!({"handler": "jobs.noop", "delay_ms": 3_600_000}),
        )
        .await,
    );
    let stats = app.get(&format!("{JOBS}/stats"), Some(key)).await;
    assert_eq!(stats.status, 200, "{}", stats.text());
    let stats = stats.json();
    assert_eq!(stats["window_ms"], 300_000);
    let queues = stats["queues"].as_array().unwrap();
    let names: Vec<&str> = queues
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["critical", "high", "normal", "low", "bulk"]);
    for q in queues {
        let statuses: Vec<&String> = q["by_status"].as_object().unwrap().keys().collect();
        assert_eq!(statuses.len(), 8, "{q}");
    }
    let normal = &queues[2];
    assert_eq!(normal["by_status"]["pending"], 1, "{normal}");
    assert_eq!(normal["by_status"]["cancelled"], 1, "{normal}");
    // Delayed jobs are not due, so none is waiting past its run time.
    assert_eq!(normal["oldest_pending_age_ms"], Value::Null, "{normal}");
    let critical = &queues[0];
    assert_eq!(critical["by_status"]["dead"], 1, "{critical}");
    assert_eq!(critical["succeeded_last_5m"], 0, "{critical}");
    assert_eq!(critical["failed_last_5m"], 1, "{critical}");
    assert_eq!(critical["failure_rate"], 1.0, "{critical}");
    assert_eq!(queues[4]["failure_rate"], Value::Null);
    assert_eq!(queues[4]["throughput_per_minute"], 0.0);

    // Purge: only the dead ones go.
    let purged = app
        .call(
            Method::DELETE,
            &format!("{JOBS}?status=dead"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json(), json!({"status": "dead", "purged": 1}));
    let gone = app.get(&format!("{JOBS}/{doomed}"), Some(key)).await;
    gone.assert_problem(404, "not_found", &format!("{JOBS}/{doomed}"));
    assert_eq!(
        app.get(&format!("{JOBS}/{kept}"), Some(key)).await.status,
        200
    );
    for query in ["status=running", "status=pending", "", "status=bogus"] {
        let reply = app
            .call(Method::DELETE, &format!("{JOBS}?{query}"), Some(key), None)
            .await;
        let problem = reply.assert_problem(400, "invalid_parameter", JOBS);
        assert_eq!(problem["parameter"], "status", "{query}: {problem}");
    }

    // A job due now is run by the workers: its result and timings.
    let now = id_of(&enqueued(&app, key, json!({"handler": "jobs.canary"})).await);
    let done = wait_for(&app, key, &now, |j| j["status"] == "success").await;
    assert_eq!(done["result"], json!({"first_receipt": true}), "{done}");
    assert_eq!(done["attempts"], 1);
    assert!(done["run_ms"].as_i64().is_some_and(|ms| ms >= 0), "{done}");
    assert!(
        done["queued_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{done}"
    );

    let _ = stop_workers.send(());
    workers.await.expect("workers stop cleanly");
    app.cleanup().await;
}

#[tokio::test]
async fn cancel_retry_purge_and_stats_on_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test]
async fn cancel_retry_purge_and_stats_on_postgres() {
    lifecycle(Backend::Postgres).await;
}

async fn schedules(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, other) = app.tenant("other", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let path = "/api/v1/jobs/schedules/nightly-purge";

    let put = app
        .call(
            Method::PUT,
            path,
            Some(key),
            Some(json!({"cron": "0 3 * * *", "handler": "retention.purge", "payload": {}, "priority": "low"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let created = put.json();
    assert_eq!(created["name"], "nightly-purge");
    assert_eq!(created["cron"], "0 3 * * *");
    assert_eq!(created["queue"], "low");
    assert_eq!(created["enabled"], true);
    let next = created["next_run_at"].as_str().unwrap();
    assert!(next.ends_with("T03:00:00Z"), "{next}");

    // Replace: new cron, disabled.
    let replaced = app
        .call(
            Method::PUT,
            path,
            Some(key),
            Some(json!({"cron": "*/15 * * * *", "handler": "jobs.canary", "enabled": false})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(replaced.json()["cron"], "*/15 * * * *");
    assert_eq!(replaced.json()["enabled"], false);
    assert_eq!(replaced.json()["queue"], "normal");

    let second = app
        .call(
            Method::PUT,
            "/api/v1/jobs/schedules/a-first",
            Some(key),
            Some(json!({"cron": "@hourly", "handler": "jobs.noop"})),
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text());
    let listed = app.get("/api/v1/jobs/schedules", Some(key)).await.json();
    let names: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-first", "nightly-purge"]);
    let read = app.get(path, Some(key)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["handler"], "jobs.canary");

    // Another tenant sees none of it.
    app.get(path, Some(&other.secret))
        .await
        .assert_problem(404, "not_found", path);
    let theirs = app
        .get("/api/v1/jobs/schedules", Some(&other.secret))
        .await
        .json();
    assert_eq!(theirs["schedules"], json!([]));
    app.call(Method::DELETE, path, Some(&other.secret), None)
        .await
        .assert_problem(404, "not_found", path);

    // Refusals name the field.
    for (body, status, code, field) in [
        (
            json!({"cron": "61 * * * *", "handler": "jobs.noop"}),
            422,
            "unprocessable",
            "cron",
        ),
        (
            json!({"cron": "0 0 30 2 *", "handler": "jobs.noop"}),
            422,
            "unprocessable",
            "cron",
        ),
        (
            json!({"cron": "", "handler": "jobs.noop"}),
            422,
            "unprocessable",
            "cron",
        ),
        (
            json!({"cron": "@daily", "handler": "no.such"}),
            422,
            "unprocessable",
            "handler",
        ),
        (
            json!({"cron": "@daily", "handler": "jobs.canary", "payload": {"fail": "sometimes"}}),
            422,
            "unprocessable",
            "payload.fail",
        ),
        (json!({"cron": "@daily"}), 400, "invalid_field", "handler"),
        (
            json!({"cron": 5, "handler": "jobs.noop"}),
            400,
            "invalid_field",
            "cron",
        ),
    ] {
        let reply = app
            .call(Method::PUT, path, Some(key), Some(body.clone()))
            .await;
        let problem = reply.assert_problem(status, code, path);
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let bad_name = "/api/v1/jobs/schedules/no%20spaces";
    let reply = app
        .call(
            Method::PUT,
            bad_name,
            Some(key),
            Some(json!({"cron": "@daily", "handler": "jobs.noop"})),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert_eq!(reply.json()["field"], "name");
    // The refused changes left the schedule as it was.
    assert_eq!(
        app.get(path, Some(key)).await.json()["cron"],
        "*/15 * * * *"
    );

    let deleted = app.call(Method::DELETE, path, Some(key), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    app.call(Method::DELETE, path, Some(key), None)
        .await
        .assert_problem(404, "not_found", path);
    app.get(path, Some(key))
        .await
        .assert_problem(404, "not_found", path);
    app.cleanup().await;
}

#[tokio::test]
async fn schedules_crud_on_sqlite() {
    schedules(Backend::Sqlite).await;
}

#[tokio::test]
async fn schedules_crud_on_postgres() {
    schedules(Backend::Postgres).await;
}

#[tokio::test]
async fn another_tenants_jobs_do_not_exist_and_a_read_key_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, a) = app.tenant("a", &[Scope::Admin]).await;
    let (_, b) = app.tenant("b", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("r", &[Scope::Read, Scope::Write]).await;
    let a_job = id_of(
        &enqueued(
            &app,
            &a.secret,
            json!({"handler": "jobs.noop", "delay_ms": 60_000}),
        )
        .await,
    );
    let path = format!("{JOBS}/{a_job}");
    app.get(&path, Some(&b.secret))
        .await
        .assert_problem(404, "not_found", &path);
    for action in ["cancel", "retry"] {
        let p = format!("{path}/{action}");
        app.call(Method::POST, &p, Some(&b.secret), None)
            .await
            .assert_problem(404, "not_found", &p);
    }
    assert_eq!(
        app.get(JOBS, Some(&b.secret)).await.json()["jobs"],
        json!([])
    );
    // B's purge of dead jobs leaves A's alone, and B's idempotency keys are B's own.
    let key_a = post_with(
        &app,
        &a.secret,
        JOBS,
        &[("idempotency-key", "k")],
        json!({"handler": "jobs.noop"}),
    )
    .await;
    let key_b = post_with(
        &app,
        &b.secret,
        JOBS,
        &[("idempotency-key", "k")],
        json!({"handler": "jobs.noop"}),
    )
    .await;
    assert_eq!((key_a.status.as_u16(), key_b.status.as_u16()), (202, 202));
    assert_ne!(id_of(&key_a.json()), id_of(&key_b.json()));
    // A's job is untouched.
    assert_eq!(
        app.get(&path, Some(&a.secret)).await.json()["status"],
        "pending"
    );

    // Every job route needs the admin scope.
    for (method, p) in [
        (Method::GET, JOBS.to_owned()),
        (Method::POST, JOBS.to_owned()),
        (Method::DELETE, format!("{JOBS}?status=dead")),
        (Method::GET, path.clone()),
        (Method::POST, format!("{path}/cancel")),
        (Method::POST, format!("{path}/retry")),
        (Method::GET, format!("{JOBS}/stats")),
        (Method::GET, format!("{JOBS}/schedules")),
        (Method::GET, format!("{JOBS}/schedules/x")),
        (Method::PUT, format!("{JOBS}/schedules/x")),
        (Method::DELETE, format!("{JOBS}/schedules/x")),
        (
            Method::POST,
            "/api/v1/weber-profiles:recalculate".to_owned(),
        ),
    ] {
        let body = match (&method, p.as_str()) {
            (&Method::POST, JOBS) => Some(json!({"handler": "jobs.noop"})),
            (&Method::PUT, _) => Some(json!({"handler": "jobs.noop", "cron": "@daily"})),
            (&Method::POST, p) if p.ends_with(":recalculate") => Some(json!({})),
            _ => None,
        };
        let reply = app
            .call(method.clone(), &p, Some(&reader.secret), body)
            .await;
        let instance = p.split('?').next().unwrap();
        let problem = reply.assert_problem(403, "forbidden", instance);
        assert_eq!(problem["required_scope"], "admin", "{method} {p}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn bulk_weber_recalculation_is_answered_with_a_job() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let path = "/api/v1/weber-profiles:recalculate";

    let all = app
        .call(Method::POST, path, Some(key), Some(json!({})))
        .await;
    assert_eq!(all.status, 202, "{}", all.text());
    let job = all.json();
    assert_eq!(job["handler"], "weber.recalculate");
    assert_eq!(job["queue"], "bulk");
    assert_eq!(job["payload"], json!({}));
    assert_eq!(
        all.headers["location"],
        format!("/api/v1/jobs/{}", id_of(&job)).as_str()
    );

    let some = post_with(
        &app,
        key,
        path,
        &[("idempotency-key", "recalc-1")],
        json!({"user_ids": ["u1", "u2"], "priority": "high"}),
    )
    .await;
    assert_eq!(some.status, 202, "{}", some.text());
    assert_eq!(some.json()["payload"], json!({"user_ids": ["u1", "u2"]}));
    assert_eq!(some.json()["queue"], "high");
    let repeat = post_with(
        &app,
        key,
        path,
        &[("idempotency-key", "recalc-1")],
        json!({"user_ids": ["u1", "u2"]}),
    )
    .await;
    assert_eq!(repeat.status, 200, "{}", repeat.text());
    assert_eq!(id_of(&repeat.json()), id_of(&some.json()));

    let bad = app
        .call(
            Method::POST,
            path,
            Some(key),
            Some(json!({"user_ids": [""]})),
        )
        .await;
    let problem = bad.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["field"], "payload.user_ids[0]", "{problem}");
    let bad = app
        .call(
            Method::POST,
            path,
            Some(key),
            Some(json!({"users": ["u1"]})),
        )
        .await;
    assert_field(&bad, 400, "invalid_field", path, "users");
    app.cleanup().await;
}
