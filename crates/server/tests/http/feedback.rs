//! Feedback over HTTP: ingest and read per tier (realtime analysed inline, queued tiers
//! processed by the workers), per-item rejections, NDJSON, idempotent re-posts and conflicts,
//! scopes (clear text needs `read_clear`; admin does not imply it), tenant isolation, config
//! validation naming the path, and a retried job that does not apply twice. Both backends.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const FEEDBACK: &str = "/api/v1/feedback";

async fn post(app: &TestApp, key: &str, path: &str, content_type: &str, body: String) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
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
        poll_interval: std::time::Duration::from_millis(20),
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

/// Polls the item until `done` holds, for up to 30 s.
async fn wait_for(app: &TestApp, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let item = app.get(&format!("{FEEDBACK}/{id}"), Some(key)).await.json();
        if done(&item) {
            return item;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "item {id} never got there: {item}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn item(id: &str, tier: &str, text: &str) -> Value {
    json!({"id": id, "user_id": "u1", "type": "review", "rating": 2, "text": text,
           "region": "eu", "tier": tier})
}

async fn every_tier_round_trips(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    let (_, key) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let key = key.secret.as_str();
    let body = json!([
        item("rt", "realtime", "Terrible service, never again."),
        item("pr", "priority", "Slow delivery but friendly staff."),
        item("st", "standard", "Great product!"),
        item("ba", "batch", "It works."),
    ]);
    let reply = post(&app, key, FEEDBACK, "application/json", body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let report = reply.json();
    assert_eq!(report["accepted"], 4, "{report}");
    assert_eq!(report["stored"], 4);
    let statuses: Vec<(&str, &str)> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            // Hybrid mode, low risk: the fast path now, the full checks on the critical queue.
            ("rt", "processing"),
            ("pr", "received"),
            ("st", "received"),
            ("ba", "received")
        ]
    );
    // Realtime: the fast path's findings before the answer, the full checks soon after.
    let rt = app.get(&format!("{FEEDBACK}/rt"), Some(key)).await.json();
    assert!(rt["toxicity"].is_object(), "{rt}");
    let rt = wait_for(&app, key, "rt", |i| i["status"] == "processed").await;
    assert!(rt["sentiment"].as_f64().unwrap() < 0.0, "{rt}");
    assert!(rt.get("text").is_none(), "never the original text: {rt}");
    let events: Vec<&str> = rt["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "received",
            "redacted",
            "scored",
            "routed",
            "redacted",
            "scored",
            "routed",
            "processed"
        ]
    );
    // Queued tiers: processed by the workers.
    for id in ["pr", "st", "ba"] {
        let done = wait_for(&app, key, id, |i| i["status"] == "processed").await;
        assert!(done["sentiment"].is_number(), "{done}");
        assert_eq!(done["route"], "full");
        let events: Vec<&str> = done["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["received", "redacted", "scored", "routed", "processed"],
            "{done}"
        );
    }
    // The list finds them all, and filters.
    let page = app
        .get(&format!("{FEEDBACK}?limit=3"), Some(key))
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("{FEEDBACK}?limit=3&cursor={cursor}"), Some(key))
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    let processed = app
        .get(&format!("{FEEDBACK}?status=processed&region=eu"), Some(key))
        .await
        .json();
    assert_eq!(processed["items"].as_array().unwrap().len(), 4);
    let trace = app
        .get(&format!("{FEEDBACK}/st/trace"), Some(key))
        .await
        .json();
    assert!(trace["trace"].is_object(), "{trace}");
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

async fn bad_items_are_rejected_one_by_one(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let key = key.secret.as_str();
    let ndjson = [
        json!({"id": "ok", "user_id": "u", "type": "review", "rating": 5, "tier": "batch"})
            .to_string(),
        String::new(),
        json!({"id": "bad-rating", "user_id": "u", "type": "review", "rating": 9}).to_string(),
        "{not json".to_owned(),
        json!({"id": "no-user", "type": "review", "text": "hi"}).to_string(),
        json!({"id": "bad-tier", "user_id": "u", "type": "review", "text": "hi", "tier": "asap"})
            .to_string(),
        json!({"id": "extra", "user_id": "u", "type": "review", "text": "hi", "colour": 1})
            .to_string(),
    ]
    .join("\n");
    let reply = post(&app, key, FEEDBACK, "application/x-ndjson", ndjson).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let report = reply.json();
    assert_eq!(report["accepted"], 1);
    let rejected: Vec<(u64, Option<&str>)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (2, Some("rating")),
            (3, None),
            (4, Some("user_id")),
            (5, Some("tier")),
            (6, Some("colour"))
        ],
        "{report}"
    );
    // All rejected: 422 listing them; a bad body: 400; a bad tier parameter: 400 naming it.
    let all_bad = post(
        &app,
        key,
        FEEDBACK,
        "application/json",
        json!([{"x": 1}]).to_string(),
    )
    .await;
    let problem = all_bad.assert_problem(422, "unprocessable", FEEDBACK);
    assert_eq!(problem["rejected"][0]["index"], 0);
    let malformed = post(&app, key, FEEDBACK, "application/json", "{".to_owned()).await;
    malformed.assert_problem(400, "malformed_json", FEEDBACK);
    let path = format!("{FEEDBACK}?tier=asap");
    let bad_tier = post(&app, key, &path, "application/json", "[]".to_owned()).await;
    assert_eq!(
        bad_tier.assert_problem(400, "invalid_parameter", FEEDBACK)["parameter"],
        "tier"
    );
    app.cleanup().await;
}

async fn reposts_are_idempotent_and_conflicts_rejected(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let key = key.secret.as_str();
    let body = json!([item("a", "realtime", "fine"), item("b", "batch", "ok")]).to_string();
    let first = post(&app, key, FEEDBACK, "application/json", body.clone())
        .await
        .json();
    assert_eq!(first["stored"], 2);
    let again = post(&app, key, FEEDBACK, "application/json", body).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let again = again.json();
    assert_eq!(
        (again["stored"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    let changed = post(
        &app,
        key,
        FEEDBACK,
        "application/json",
        json!([item("a", "realtime", "something else")]).to_string(),
    )
    .await;
    let problem = changed.assert_problem(422, "unprocessable", FEEDBACK);
    assert_eq!(problem["rejected"][0]["field"], "id", "{problem}");
    let a = app.get(&format!("{FEEDBACK}/a"), Some(key)).await.json();
    let received = a["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "received")
        .count();
    assert_eq!(received, 1, "nothing re-applied: {a}");
    app.cleanup().await;
}

async fn clear_text_needs_its_scope_and_tenants_are_isolated(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, writer) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let (_, other) = app.tenant("other", &[Scope::Admin]).await;
    let admin = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Admin].into_iter().collect(), None)
        .await
        .unwrap();
    let clear = app
        .fixture
        .store
        .issue_api_key(&tenant.id, "read_clear".parse().unwrap(), None)
        .await
        .unwrap();
    let text = "call me on +44 20 7946 0958";
    post(
        &app,
        &writer.secret,
        FEEDBACK,
        "application/json",
        json!([item("x", "realtime", text)]).to_string(),
    )
    .await;
    let path = format!("{FEEDBACK}/x/text");
    app.get(&path, Some(&writer.secret))
        .await
        .assert_problem(403, "forbidden", &path);
    app.get(&path, Some(&admin.secret))
        .await
        .assert_problem(403, "forbidden", &path);
    let read = app.get(&path, Some(&clear.secret)).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["text"], text);
    // The read is recorded.
    let item = app
        .get(&format!("{FEEDBACK}/x"), Some(&writer.secret))
        .await
        .json();
    let last = item["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "read_in_clear", "{item}");
    // Another tenant: 404 everywhere, and its list is empty.
    for p in [format!("{FEEDBACK}/x"), format!("{FEEDBACK}/x/trace")] {
        app.get(&p, Some(&other.secret))
            .await
            .assert_problem(404, "not_found", &p);
    }
    let list = app.get(FEEDBACK, Some(&other.secret)).await.json();
    assert!(list["items"].as_array().unwrap().is_empty());
    app.cleanup().await;
}

async fn config_is_validated_naming_the_path(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let path = format!("{FEEDBACK}/config");
    let default = app.get(&path, Some(key)).await.json();
    assert_eq!(default["version"], 0);
    let put = |body: &str| {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(&path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/toml")
            .body(Body::from(body.to_owned()))
            .unwrap();
        app.send(req)
    };
    let bad = put("mode = \"reckless\"\n").await;
    assert_eq!(
        bad.assert_problem(422, "unprocessable", &path)["field"],
        "mode"
    );
    let good = put("mode = \"research\"\ndefault_tier = \"realtime\"\n").await;
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.json()["version"], 1);
    // The tenant's default tier and mode now apply: research flags every item for review.
    let reply = post(
        &app,
        key,
        FEEDBACK,
        "application/json",
        json!([{"id": "r", "user_id": "u", "type": "review", "text": "ok"}]).to_string(),
    )
    .await
    .json();
    assert_eq!(reply["items"][0]["tier"], "realtime", "{reply}");
    assert_eq!(reply["items"][0]["status"], "needs_review", "{reply}");
    app.cleanup().await;
}

/// Two runs of the same processing job (a retry after a lost lease): the second applies nothing.
async fn a_repeated_job_applies_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    post(
        &app,
        &key.secret,
        FEEDBACK,
        "application/json",
        json!([
            item("q1", "standard", "good"),
            item("q2", "standard", "bad")
        ])
        .to_string(),
    )
    .await;
    let ids = vec!["q1".to_owned(), "q2".to_owned()];
    let service = app.state.feedback().clone();
    let first = service
        .process_items(&app.state, &tenant.id, &ids)
        .await
        .unwrap();
    let second = service
        .process_items(&app.state, &tenant.id, &ids)
        .await
        .unwrap();
    assert_eq!((first.processed, first.skipped), (2, 0));
    assert_eq!((second.processed, second.skipped), (0, 2));
    let q1 = app
        .get(&format!("{FEEDBACK}/q1"), Some(&key.secret))
        .await
        .json();
    let processed = q1["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "processed")
        .count();
    assert_eq!(processed, 1, "{q1}");
    app.cleanup().await;
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test] async fn $case() { super::$case(store::Backend::Sqlite).await; })* }
        mod postgres { $(#[tokio::test] async fn $case() { super::$case(store::Backend::Postgres).await; })* }
    };
}

on_both!(
    every_tier_round_trips,
    bad_items_are_rejected_one_by_one,
    reposts_are_idempotent_and_conflicts_rejected,
    clear_text_needs_its_scope_and_tenants_are_isolated,
    config_is_validated_naming_the_path,
    a_repeated_job_applies_once,
);
