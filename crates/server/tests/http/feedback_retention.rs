//! Retention of feedback texts (issue 20), both backends: the `feedback.retention_purge` job
//! purges the items past the tenant's `[retention] days` exactly as a manual purge does (text
//! gone, `purged` with reason `retention` and the policy's days in history and audit log),
//! keeps the others' texts and other tenants' items, leaves the audit log verifying, and
//! changes nothing when it runs again. The daily schedule is created once.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const FEEDBACK: &str = "/api/v1/feedback";
const DAY_MS: i64 = 86_400_000;

async fn request(
    app: &TestApp,
    method: Method,
    key: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    app.send(req).await
}

async fn app_with_workers(
    backend: Backend,
) -> (
    TestApp,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let jobs = server::JobSettings {
        poll_interval: Duration::from_millis(20),
        ..Default::default()
    };
    let app = TestApp::with_config(
        backend,
        server::ServerConfig {
            jobs,
            ..Default::default()
        },
    )
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(server::run_job_workers(app.state.clone(), async move {
        let _ = stopped.await;
    }));
    (app, stop, workers)
}

/// Sets the tenant's configuration and posts realtime items (analysed inline, so they hold a
/// redacted text), `old` of them 40 days back and `recent` 10 days back.
async fn tenant_with_items(
    app: &TestApp,
    name: &str,
    config: &str,
    old: usize,
    recent: usize,
) -> (String, String) {
    let (tenant, key) = app
        .tenant(name, &[Scope::Read, Scope::Write, Scope::Admin])
        .await;
    let put = request(
        app,
        Method::PUT,
        &key.secret,
        &format!("{FEEDBACK}/config"),
        "application/toml",
        config.to_owned(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let now = server::jobs::now_ms();
    let items: Vec<Value> = (0..old + recent)
        .map(|i| {
            let age = if i < old { 40 * DAY_MS } else { 10 * DAY_MS };
            json!({
                "id": format!("{}{i}", if i < old { "old" } else { "new" }),
                "user_id": format!("u{i}"),
                "type": "review",
                "rating": 4,
                "text": format!("Item {i}: the app crashes, mail me at u{i}@example.org"),
                "tier": "realtime",
                "occurred_at_ms": now - age - i as i64,
            })
        })
        .collect();
    let reply = request(
        app,
        Method::POST,
        &key.secret,
        FEEDBACK,
        "application/json",
        Value::Array(items).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["stored"], old + recent, "{}", reply.text());
    (tenant.id, key.secret.to_string())
}

/// Enqueues the retention job for the key's tenant and polls until it finished; its result.
async fn run_retention_job(app: &TestApp, key: &str) -> Value {
    let reply = request(
        app,
        Method::POST,
        key,
        "/api/v1/jobs",
        "application/json",
        json!({"handler": "feedback.retention_purge", "payload": {}}).to_string(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = app
            .get(&format!("/api/v1/jobs/{id}"), Some(key))
            .await
            .json();
        match job["status"].as_str() {
            Some("success") => return job["result"].clone(),
            Some("pending" | "running" | "retrying") => {}
            other => panic!("the retention job ended {other:?}: {job}"),
        }
        assert!(
            Instant::now() < deadline,
            "the retention job did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn item(app: &TestApp, key: &str, id: &str) -> Value {
    let reply = app.get(&format!("{FEEDBACK}/{id}"), Some(key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn items_past_retention_are_purged_and_the_log_verifies(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    // More old items than one batch, so the job works in batches.
    let old = server::feedback::retention::RETENTION_BATCH as usize + 5;
    let (tenant, key) = tenant_with_items(
        &app,
        "acme",
        "mode = \"production\"\n[retention]\ndays = 30\n",
        old,
        4,
    )
    .await;
    // Another tenant with the same policy and old items: its job never ran.
    let (other, other_key) =
        tenant_with_items(&app, "globex", "[retention]\ndays = 30\n", 3, 0).await;

    let result = run_retention_job(&app, &key).await;
    assert_eq!(result["purged"], old, "{result}");
    assert_eq!(result["retention_days"], 30, "{result}");
    assert_eq!(result["finished"], true, "{result}");

    for i in 0..old {
        let purged = item(&app, &key, &format!("old{i}")).await;
        assert_eq!(purged["status"], "purged", "{purged}");
        assert!(purged["text_redacted"].is_null(), "{purged}");
    }
    let history = item(&app, &key, "old0").await["history"].clone();
    let purge = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "purged")
        .unwrap_or_else(|| panic!("no purged event: {history}"))
        .clone();
    assert_eq!(purge["detail"]["reason"], "retention", "{purge}");
    assert_eq!(purge["detail"]["retention_days"], 30, "{purge}");
    for i in old..old + 4 {
        let kept = item(&app, &key, &format!("new{i}")).await;
        assert_ne!(kept["status"], "purged", "{kept}");
        assert!(
            kept["text_redacted"]
                .as_str()
                .unwrap_or_default()
                .contains("crashes"),
            "{kept}"
        );
    }
    for i in 0..3 {
        let untouched = item(&app, &other_key, &format!("old{i}")).await;
        assert_ne!(untouched["status"], "purged", "{untouched}");
        assert!(untouched["text_redacted"].is_string(), "{untouched}");
    }

    // The audit log verifies, with one record per history row (and the first data key's).
    let mut history_rows = 0;
    let mut retention_purges = 0;
    for i in 0..old + 4 {
        let id = if i < old {
            format!("old{i}")
        } else {
            format!("new{i}")
        };
        let history = app
            .fixture
            .store
            .feedback_history(&tenant, &id)
            .await
            .unwrap();
        history_rows += history.len() as u64;
        retention_purges += history
            .iter()
            .filter(|h| h.event == "purged" && h.detail.contains("\"retention\""))
            .count();
    }
    assert_eq!(retention_purges, old);
    let verified = app
        .state
        .custody()
        .verify(&tenant, &[])
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the audit log does not verify: {e}"));
    assert_eq!(verified.records, history_rows + 1, "{verified:?}");
    app.state
        .custody()
        .verify(&other, &[])
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the other tenant's audit log does not verify: {e}"));

    // Again: nothing left to purge, nothing changes.
    let again = run_retention_job(&app, &key).await;
    assert_eq!(again["purged"], 0, "{again}");
    let verified_again = app
        .state
        .custody()
        .verify(&tenant, &[])
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the audit log does not verify: {e}"));
    assert_eq!(verified_again.records, verified.records);
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

/// `days = 0` keeps texts forever; the mode's default (production: 365) keeps 40-day-old ones.
async fn zero_days_and_the_default_keep_recent_texts(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    let (_, forever) = tenant_with_items(&app, "keep", "[retention]\ndays = 0\n", 2, 0).await;
    let (_, default) = tenant_with_items(&app, "prod", "mode = \"production\"\n", 2, 0).await;
    let result = run_retention_job(&app, &forever).await;
    assert_eq!(result["purged"], 0, "{result}");
    assert_eq!(result["retention_days"], 0, "{result}");
    assert!(result["cutoff_ms"].is_null(), "{result}");
    let result = run_retention_job(&app, &default).await;
    assert_eq!(result["purged"], 0, "{result}");
    assert_eq!(result["retention_days"], 365, "{result}");
    for key in [&forever, &default] {
        let kept = item(&app, key, "old0").await;
        assert!(kept["text_redacted"].is_string(), "{kept}");
    }
    // A retention over the bound is refused naming the field.
    let bad = request(
        &app,
        Method::PUT,
        &forever,
        &format!("{FEEDBACK}/config"),
        "application/toml",
        "[retention]\ndays = 40000\n".to_owned(),
    )
    .await;
    assert_eq!(
        bad.assert_problem(422, "unprocessable", &format!("{FEEDBACK}/config"))["field"],
        "retention.days"
    );
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn a_daily_retention_schedule_is_created_once() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (t, _) = app.tenant("shop", &[Scope::Read]).await;
    let store = &app.fixture.store;
    let now = server::jobs::now_ms();
    assert!(
        server::feedback::ensure_retention_schedule(store, &t.id, now)
            .await
            .unwrap()
    );
    assert!(
        !server::feedback::ensure_retention_schedule(store, &t.id, now)
            .await
            .unwrap()
    );
    let schedules = store.job_schedules(&t.id).await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].name, server::feedback::RETENTION_SCHEDULE);
    assert_eq!(schedules[0].handler, "feedback.retention_purge");
    assert_eq!(schedules[0].payload, "{}");
    app.cleanup().await;
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Sqlite).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Postgres).await; })* }
    };
}

on_both!(
    items_past_retention_are_purged_and_the_log_verifies,
    zero_days_and_the_default_keep_recent_texts,
);
