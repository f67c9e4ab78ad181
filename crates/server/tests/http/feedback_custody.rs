//! Feedback texts in custody (issue 17, acceptance 4, and the audit trail of items), both
//! backends:
//! - a unique marker ingested in item texts is nowhere in the database (the SQLite file with
//!   its -wal and -shm; every row of every table of the PostgreSQL schema cast to text), and
//!   reads back through the clear-text endpoint with the `read_clear` scope;
//! - rotating the data key while items keep arriving leaves every item readable, moves every
//!   item to the new key and leaves the old one retired;
//! - a wrong or missing master key, or an altered sealed text, is a problem+json naming the
//!   cause, never garbage;
//! - after feedback traffic (ingest, processing, clear read, purge) the tenant's audit log
//!   verifies, holds one record per history row, and a purge erases the text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use sqlx::Connection;
use store::testing::postgres_url;
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const FEEDBACK: &str = "/api/v1/feedback";

async fn request(app: &TestApp, method: Method, key: &str, path: &str, body: String) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    app.send(req).await
}

async fn post_items(app: &TestApp, key: &str, items: &[Value]) -> Value {
    let reply = request(
        app,
        Method::POST,
        key,
        FEEDBACK,
        Value::Array(items.to_vec()).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
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

/// Polls until none of the tenant's items awaits processing, for up to 60 s.
async fn wait_until_processed(app: &TestApp, tenant: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = [
            store::FeedbackStatus::Received,
            store::FeedbackStatus::Processing,
        ]
        .into_iter()
        .map(|status| store::FeedbackFilter {
            status: Some(status),
            limit: 1,
            ..Default::default()
        });
        let mut any = false;
        for filter in waiting {
            any |= !app
                .fixture
                .store
                .list_feedback(tenant, &filter)
                .await
                .unwrap()
                .is_empty();
        }
        if !any {
            return;
        }
        assert!(Instant::now() < deadline, "items still awaiting processing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn item(id: &str, tier: &str, text: &str) -> Value {
    json!({"id": id, "user_id": "u1", "type": "review", "rating": 2, "text": text, "tier": tier})
}

/// A raw connection to the fixture's database, outside the store.
async fn raw(app: &TestApp) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    match &app.fixture.options.schema {
        Some(schema) => {
            let mut conn = sqlx::AnyConnection::connect(&postgres_url()).await.unwrap();
            sqlx::raw_sql(&format!("SET search_path TO {schema}"))
                .execute(&mut conn)
                .await
                .unwrap();
            conn
        }
        None => sqlx::AnyConnection::connect(&app.fixture.options.url)
            .await
            .unwrap(),
    }
}

/// The SQLite database file of the fixture.
fn sqlite_file(app: &TestApp) -> std::path::PathBuf {
    let url = &app.fixture.options.url;
    let path = url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        .unwrap_or_else(|| panic!("not a SQLite URL: {url}"));
    std::path::PathBuf::from(path)
}

/// The marker is an e-mail address, so the redacted text (stored in clear for analysis) holds
/// `<EMAIL_ADDRESS>` instead: the original text, with the marker, exists only sealed.
async fn a_marker_is_nowhere_in_the_database(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    let (tenant, key) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let clear_key = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::ReadClear].into_iter().collect::<store::Scopes>(),
            None,
        )
        .await
        .unwrap();
    let marker = format!("zq{}", uuid::Uuid::new_v4().simple());
    let address = format!("{marker}@example.com");
    let texts: Vec<String> = (0..4)
        .map(|i| format!("Write to {address} about order {i}, the parcel never came."))
        .collect();
    let items: Vec<Value> = ["realtime", "priority", "standard", "batch"]
        .iter()
        .zip(&texts)
        .enumerate()
        .map(|(i, (tier, text))| item(&format!("m{i}"), tier, text))
        .collect();
    post_items(&app, &key.secret, &items).await;
    wait_until_processed(&app, &tenant.id).await;

    // Readable in clear, with the read_clear scope only.
    for (i, text) in texts.iter().enumerate() {
        let path = format!("{FEEDBACK}/m{i}/text");
        let reply = app.get(&path, Some(&clear_key.secret)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["text"], text.as_str());
        let redacted = app
            .get(&format!("{FEEDBACK}/m{i}"), Some(&key.secret))
            .await
            .json();
        assert!(
            redacted["text_redacted"]
                .as_str()
                .unwrap()
                .contains("<EMAIL_ADDRESS>"),
            "{redacted}"
        );
        assert_eq!(
            app.get(&path, Some(&key.secret)).await.status,
            403,
            "read and write do not read in clear"
        );
    }

    match backend {
        Backend::Sqlite => {
            let file = sqlite_file(&app);
            let mut checked = 0;
            let mut control = false;
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{}{suffix}", file.display());
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                checked += bytes.len();
                // The scan finds what is there: the redacted text's words are stored.
                control |= bytes.windows(17).any(|w| w == b"parcel never came");
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "the marker is in {path}"
                );
            }
            assert!(checked > 0, "no database file found at {}", file.display());
            assert!(control, "the redacted text is not in the files either");
        }
        Backend::Postgres => {
            let mut conn = raw(&app).await;
            let schema = app.fixture.options.schema.clone().unwrap();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            )
            .bind(&schema)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
            for needed in ["feedback_items", "feedback_history", "audit_log", "jobs"] {
                assert!(names.contains(&needed), "{needed} not among {names:?}");
            }
            for table in names {
                let (n,): (i64,) = sqlx::query_as(&format!(
                    "SELECT COUNT(*) FROM {table} t WHERE t::text LIKE $1"
                ))
                .bind(format!("%{marker}%"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
                assert_eq!(n, 0, "the marker is in {table}");
            }
            // The check itself finds what is there: the marker's neighbour words are stored
            // in the redacted text.
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM feedback_items t WHERE t::text LIKE $1")
                    .bind("%parcel never came%")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(n, 4);
            conn.close().await.unwrap();
        }
    }
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

/// Rotation while items keep arriving: every item reads back as sent, none stays under the
/// old key, and the old key is retired.
async fn rotation_under_ingest_keeps_every_item_readable(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    let store = app.fixture.store.clone();
    let (tenant, key) = app
        .tenant("acme", &[Scope::Read, Scope::Write, Scope::Admin])
        .await;
    let text_of = |i: usize| format!("Item {i}: the app logs me out every few minutes.");
    let before: Vec<Value> = (0..150)
        .map(|i| item(&format!("r{i}"), "batch", &text_of(i)))
        .collect();
    post_items(&app, &key.secret, &before).await;
    let old_key = store
        .active_data_key(&tenant.id)
        .await
        .unwrap()
        .unwrap()
        .key_id;

    // Ingest keeps going while the key rotates.
    let app = Arc::new(app);
    let ingest = {
        let (app, secret) = (app.clone(), key.secret.clone());
        tokio::spawn(async move {
            for batch in 0..10 {
                let items: Vec<Value> = (0..20)
                    .map(|j| {
                        let i = 150 + batch * 20 + j;
                        let tier = if j % 2 == 0 { "realtime" } else { "standard" };
                        item(&format!("r{i}"), tier, &text_of(i))
                    })
                    .collect();
                post_items(&app, &secret, &items).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let reply = request(
        &app,
        Method::POST,
        &key.secret,
        &format!("{FEEDBACK}/keys:rotate"),
        String::new(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let rotation = reply.json();
    let new_key = rotation["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    ingest.await.unwrap();

    // The re-encryption job finishes; a last pass moves what an ingest racing the rotation
    // sealed under the old key (as the next job would).
    let job_id = rotation["job_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = store.job(&tenant.id, job_id).await.unwrap().unwrap();
        if job.status.is_final() {
            assert_eq!(job.status, jobs::JobStatus::Success, "{job:?}");
            break;
        }
        assert!(Instant::now() < deadline, "re-encryption still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = app.state.feedback().clone();
    while !service
        .reencrypt_batch(&app.state, &tenant.id)
        .await
        .unwrap()
        .1
    {}
    wait_until_processed(&app, &tenant.id).await;

    assert_eq!(
        store
            .count_feedback_sealed_with(&tenant.id, &old_key)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_feedback_sealed_with(&tenant.id, &new_key)
            .await
            .unwrap(),
        350
    );
    let old = store.data_key(&tenant.id, &old_key).await.unwrap().unwrap();
    assert_eq!(old.state, store::DataKeyState::Retired);
    for i in 0..350 {
        let text = service
            .clear_text(&app.state, &tenant.id, &format!("r{i}"), "test")
            .await
            .unwrap();
        assert_eq!(text.as_deref(), Some(text_of(i).as_str()), "item r{i}");
    }
    let _ = stop.send(());
    workers.await.unwrap();
    match Arc::try_unwrap(app) {
        Ok(app) => app.cleanup().await,
        Err(_) => panic!("the app is still shared"),
    }
}

/// Another server over the same database whose keyring lacks the master key (or holds another
/// secret under its id), and an altered sealed text: each a problem naming the cause.
async fn wrong_or_missing_keys_are_clear_errors(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, _) = app.tenant("acme", &[Scope::Write]).await;
    let clear_key = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::ReadClear, Scope::Write]
                .into_iter()
                .collect::<store::Scopes>(),
            None,
        )
        .await
        .unwrap();
    post_items(
        &app,
        &clear_key.secret,
        &[
            item("w1", "realtime", "Fine."),
            item("w2", "realtime", "Also fine."),
        ],
    )
    .await;
    assert_eq!(
        app.get(&format!("{FEEDBACK}/w1/text"), Some(&clear_key.secret))
            .await
            .json()["text"],
        "Fine."
    );
    let master = app
        .fixture
        .store
        .active_data_key(&tenant.id)
        .await
        .unwrap()
        .unwrap()
        .master_key_id;

    for (keyring_id, cause) in [
        ("another-id", format!("master key {master}")),
        (master.as_str(), "does not unwrap".to_owned()),
    ] {
        let config = server::ServerConfig {
            custody: server::custody::CustodySettings {
                keys: Some(server::custody::CustodyKeys::generate(keyring_id).unwrap()),
                ..Default::default()
            },
            ..Default::default()
        };
        let events_dir = tempfile::tempdir().unwrap();
        let events = stream::EventLog::open_file(events_dir.path(), Default::default())
            .await
            .unwrap();
        let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
        let other = server::AppState::new(app.fixture.store.clone(), metrics, config, events)
            .expect("state");
        let router = server::app(other);
        let req = Request::builder()
            .uri(format!("{FEEDBACK}/w1/text"))
            .header("authorization", format!("Bearer {}", clear_key.secret))
            .body(Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(router, req).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let problem: Value = serde_json::from_slice(&body).unwrap();
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&cause), "{cause} not in {problem}");
        assert!(!detail.contains("Fine"), "{problem}");
    }

    // An altered sealed text (w2's moved into w1's row) does not authenticate.
    let mut conn = raw(&app).await;
    sqlx::query(
        "UPDATE feedback_items SET text_sealed =
             (SELECT text_sealed FROM feedback_items WHERE tenant_id = $1 AND id = 'w2')
         WHERE tenant_id = $2 AND id = 'w1'",
    )
    .bind(&tenant.id)
    .bind(&tenant.id)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let reply = app
        .get(&format!("{FEEDBACK}/w1/text"), Some(&clear_key.secret))
        .await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let problem = reply.json();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("does not authenticate"),
        "{problem}"
    );
    app.cleanup().await;
}

/// Feedback traffic, then the audit log: it verifies, holds one record per history row (and
/// the data key's), and a purge erased the text but not the log's verifiability.
async fn the_audit_log_verifies_after_feedback_traffic_and_a_purge(backend: Backend) {
    let (app, stop, workers) = app_with_workers(backend).await;
    let (tenant, key) = app
        .tenant(
            "acme",
            &[Scope::Read, Scope::Write, Scope::Admin, Scope::ReadClear],
        )
        .await;
    let items: Vec<Value> = (0..12)
        .map(|i| {
            let tier = ["realtime", "priority", "standard", "batch"][i % 4];
            item(
                &format!("a{i}"),
                tier,
                &format!("Mail me at user{i}@example.org, app crashes."),
            )
        })
        .collect();
    post_items(&app, &key.secret, &items).await;
    wait_until_processed(&app, &tenant.id).await;
    let reply = app
        .get(&format!("{FEEDBACK}/a3/text"), Some(&key.secret))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = request(
        &app,
        Method::DELETE,
        &key.secret,
        &format!("{FEEDBACK}/a3"),
        String::new(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["purged"], true);
    let again = request(
        &app,
        Method::DELETE,
        &key.secret,
        &format!("{FEEDBACK}/a3"),
        String::new(),
    )
    .await;
    assert_eq!(
        again.json()["purged"],
        false,
        "a second purge changes nothing"
    );
    let purged = app
        .get(&format!("{FEEDBACK}/a3"), Some(&key.secret))
        .await
        .json();
    assert_eq!(purged["status"], "purged");
    assert!(purged["text_redacted"].is_null(), "{purged}");
    let clear = app
        .get(&format!("{FEEDBACK}/a3/text"), Some(&key.secret))
        .await;
    assert_eq!(clear.status, 200);
    assert!(clear.json()["text"].is_null());
    // Only an admin purges.
    let writer = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read, Scope::Write]
                .into_iter()
                .collect::<store::Scopes>(),
            None,
        )
        .await
        .unwrap();
    let forbidden = request(
        &app,
        Method::DELETE,
        &writer.secret,
        &format!("{FEEDBACK}/a4"),
        String::new(),
    )
    .await;
    assert_eq!(forbidden.status, 403);

    let mut history_rows = 0;
    let mut events = std::collections::BTreeSet::new();
    for i in 0..12 {
        let history = app
            .fixture
            .store
            .feedback_history(&tenant.id, &format!("a{i}"))
            .await
            .unwrap();
        history_rows += history.len() as u64;
        events.extend(history.into_iter().map(|h| h.event));
    }
    for event in [
        "received",
        "redacted",
        "scored",
        "routed",
        "processed",
        "read_in_clear",
        "purged",
    ] {
        assert!(events.contains(event), "{event} not in {events:?}");
    }
    let verified = app
        .state
        .custody()
        .verify(&tenant.id, &[])
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the audit log does not verify: {e}"));
    // One record per history row, and the tenant's first data key.
    assert_eq!(verified.records, history_rows + 1, "{verified:?}");
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Sqlite).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Postgres).await; })* }
    };
}

on_both!(
    a_marker_is_nowhere_in_the_database,
    rotation_under_ingest_keeps_every_item_readable,
    wrong_or_missing_keys_are_clear_errors,
    the_audit_log_verifies_after_feedback_traffic_and_a_purge,
);
