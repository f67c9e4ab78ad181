//! `POST /api/v1/interactions` through to profiles: per-item verdicts, duplicates, late events,
//! the worker's updates (checked against the engine's batch computation), the manual update
//! route, the read cache and the size limits.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};
use weber::{Interaction, WeberParams};

use crate::TestApp;

/// The engine's own answer for these events (rating and/or text per event, in arrival order).
fn expected(events: &[Value]) -> weber::WeberProfile {
    let history: Vec<Interaction> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let text = e["text"].as_str().map(|t| sentiment::score(t).compound);
            let s = weber::combined_sentiment(e["rating"].as_f64(), text)
                .unwrap()
                .unwrap();
            Interaction::new(s, e["timestamp"].as_i64().unwrap(), i as u64)
        })
        .collect();
    weber::profile(&history, &WeberParams::default()).unwrap()
}

fn event(id: &str, user: &str, t: i64, rating: Option<u8>, text: Option<&str>) -> Value {
    let mut e = json!({"event_id": id, "user_id": user, "timestamp": t});
    if let Some(r) = rating {
        e["rating"] = json!(r);
    }
    if let Some(t) = text {
        e["text"] = json!(t);
    }
    e
}

async fn post(app: &TestApp, key: &str, events: Value) -> crate::Reply {
    app.call(
        Method::POST,
        "/api/v1/interactions",
        Some(key),
        Some(events),
    )
    .await
}

fn assert_profile_is(body: &Value, want: &weber::WeberProfile, reviews: usize) {
    assert_eq!(body["weber_constant"], json!(want.weber_constant), "{body}");
    assert_eq!(
        body["calculation_confidence"],
        json!(want.calculation_confidence),
        "{body}"
    );
    assert_eq!(
        body["sensitivity_segment"],
        want.sensitivity_segment.as_str(),
        "{body}"
    );
    assert_eq!(body["bias_ratio"], json!(want.bias_ratio), "{body}");
    assert_eq!(body["review_count"], reviews, "{body}");
}

async fn ingest_to_profile(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let key = key.secret;
    let mut history = vec![
        event("e1", "ann", 1_000, Some(5), None),
        event(
            "e2",
            "ann",
            2_000,
            None,
            Some("This is terrible, I hate it!"),
        ),
        event("e3", "ann", 3_000, Some(4), Some("Pretty good overall")),
        event("e4", "ann", 4_000, Some(1), None),
        event("e5", "ann", 5_000, Some(3), Some("meh")),
    ];
    let mut body: Vec<Value> = history.clone();
    body.insert(
        2,
        json!({"event_id": "bad1", "user_id": "ann", "timestamp": 1, "rating": 9}),
    );
    body.push(json!({"user_id": "ann", "timestamp": 1, "rating": 3}));
    let reply = post(&app, &key, Value::Array(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let r = reply.json();
    assert_eq!(
        (r["accepted"].as_u64(), r["stored"].as_u64()),
        (Some(5), Some(5)),
        "{r}"
    );
    assert_eq!(
        r["rejected"],
        json!([
            {"index": 2, "event_id": "bad1", "field": "rating", "reason": "rating must be a number from 1 to 5, got 9"},
            {"index": 6, "field": "event_id", "reason": "event_id is required: a string of 1 to 256 bytes"}
        ])
    );
    app.settle().await;
    let got = app.get("/api/v1/users/ann/weber-profile", Some(&key)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_profile_is(&got.json(), &expected(&history), 5);
    assert_eq!(got.json()["last_updated"], "1970-01-01T00:00:05Z");

    // The same events again: accepted as duplicates, nothing changes.
    let again = post(&app, &key, Value::Array(history.clone())).await.json();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(5), Some(5))
    );
    app.settle().await;
    let same = app
        .get("/api/v1/users/ann/weber-profile", Some(&key))
        .await
        .json();
    assert_profile_is(&same, &expected(&history), 5);

    // A late event (older than everything) takes its place by time, over NDJSON.
    let late = event("e0", "ann", 500, Some(1), Some("awful"));
    let ndjson = format!("{late}\n\n");
    let reply = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/interactions")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/x-ndjson")
                .body(Body::from(ndjson))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    history.insert(0, late);
    app.settle().await;
    let after_late = app
        .get("/api/v1/users/ann/weber-profile", Some(&key))
        .await
        .json();
    assert_profile_is(&after_late, &expected(&history), 6);
    assert_eq!(
        after_late["last_updated"], "1970-01-01T00:00:05Z",
        "still the newest event"
    );

    // Every recalculation is audited, newest first; the last one was a rebuild (late event).
    let audit = app
        .fixture
        .store
        .weber_calculations(&tenant.id, "ann", 100)
        .await
        .unwrap();
    assert!(audit.len() >= 2, "{audit:?}");
    assert_eq!(audit[0].cause, "rebuild");
    assert_eq!(audit[0].review_sequence, 6);

    // The manual update recalculates from the stored history: the same profile.
    let updated = app
        .call(
            Method::POST,
            "/api/v1/users/ann/weber-profile/update",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()["status"], "updated");
    assert_profile_is(&updated.json()["profile"], &expected(&history), 6);
    app.call(
        Method::POST,
        "/api/v1/users/nobody/weber-profile/update",
        Some(&key),
        None,
    )
    .await
    .assert_problem(
        404,
        "not_found",
        "/api/v1/users/nobody/weber-profile/update",
    );

    // A NUL (which PostgreSQL text cannot hold) is a per-event rejection or a 400, never a 500.
    let nul = post(
        &app,
        &key,
        json!([
            event("n1", "nul\u{0}user", 1, Some(3), None),
            event("n2", "fine", 1, Some(3), None)
        ]),
    )
    .await;
    assert_eq!(nul.status, 200, "{}", nul.text());
    assert_eq!(nul.json()["stored"], 1);
    assert_eq!(nul.json()["rejected"][0]["field"], "user_id");
    for (method, path) in [
        (Method::GET, "/api/v1/users/a%00b/weber-profile"),
        (Method::POST, "/api/v1/users/a%00b/weber-profile/update"),
    ] {
        app.call(method, path, Some(&key), None)
            .await
            .assert_problem(400, "invalid_parameter", path);
    }

    // Events with equal times keep their arrival order, also across requests.
    let ties = [
        event("t1", "tie", 7_000, Some(5), None),
        event("t2", "tie", 7_000, Some(1), None),
        event("t3", "tie", 7_000, Some(3), None),
    ];
    post(&app, &key, json!([ties[0], ties[1]])).await;
    post(&app, &key, json!([ties[2]])).await;
    app.settle().await;
    let tie = app
        .get("/api/v1/users/tie/weber-profile", Some(&key))
        .await
        .json();
    assert_profile_is(&tie, &expected(&ties), 3);

    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.contains("weber_events_ingested_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weber_profile_update_seconds_bucket"),
        "{metrics}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn ingested_events_become_profiles_on_sqlite() {
    ingest_to_profile(Backend::Sqlite).await;
}

#[tokio::test]
async fn ingested_events_become_profiles_on_postgres() {
    ingest_to_profile(Backend::Postgres).await;
}

/// Events committed without a stream message (a crash between commit and append) reach their
/// profiles through the worker's reconciliation at start.
#[tokio::test]
async fn committed_events_without_a_message_are_reconciled_at_start() {
    let fixture = store::testing::TestStore::new(Backend::Sqlite).await;
    let tenant = fixture
        .store
        .create_tenant("shop", store::Tier::Starter)
        .await
        .unwrap();
    let orphans: Vec<Value> = (0..5)
        .map(|i| {
            event(
                &format!("o{i}"),
                "orphan",
                i * 100,
                Some((i % 5 + 1) as u8),
                None,
            )
        })
        .collect();
    let stored: Vec<store::NewInteraction> = orphans
        .iter()
        .map(|e| store::NewInteraction {
            event_id: e["event_id"].as_str().unwrap().to_owned(),
            user_id: "orphan".to_owned(),
            event_time_ms: e["timestamp"].as_i64().unwrap(),
            sentiment: weber::rating_sentiment(e["rating"].as_f64().unwrap()).unwrap(),
            rating: e["rating"].as_f64(),
            text: None,
            item_id: None,
            verified_purchase: None,
            helpful_votes: None,
            channel: None,
        })
        .collect();
    fixture
        .store
        .insert_interactions(&tenant.id, &stored, 1)
        .await
        .unwrap();
    let app = TestApp::over_store(fixture).await;
    let key = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read, Scope::Write].into_iter().collect(),
            None,
        )
        .await
        .unwrap()
        .secret;
    // The worker reconciles before its first batch, so once this event is applied, so is that.
    post(
        &app,
        &key,
        json!([event("x", "someone-else", 1, Some(3), None)]),
    )
    .await;
    app.settle().await;
    let got = app
        .get("/api/v1/users/orphan/weber-profile", Some(&key))
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_profile_is(&got.json(), &expected(&orphans), 5);
    let audit = app
        .fixture
        .store
        .weber_calculations(&tenant.id, "orphan", 10)
        .await
        .unwrap();
    assert_eq!(audit[0].cause, "reconcile");
    app.cleanup().await;
}

/// The same path with NATS JetStream as the event log (as replicas run it), in a stream of its own.
#[tokio::test]
async fn ingested_events_become_profiles_over_jetstream() {
    let url = std::env::var("SIGNALBOX_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let name = format!("sbxtest_{}", uuid::Uuid::new_v4().simple());
    let events = stream::EventLog::connect_jetstream(&url, &name)
        .await
        .expect("NATS JetStream at SIGNALBOX_TEST_NATS_URL (default 127.0.0.1:4222)");
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::with_event_log(
        Backend::Sqlite,
        server::ServerConfig::default(),
        events,
        dir,
    )
    .await;
    let (_, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let history: Vec<Value> = (0..12)
        .map(|i| {
            event(
                &format!("j{i}"),
                "jet",
                i * 1000,
                Some((i * 3 % 5 + 1) as u8),
                None,
            )
        })
        .collect();
    let reply = post(&app, &key.secret, Value::Array(history.clone())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;
    let got = app
        .get("/api/v1/users/jet/weber-profile", Some(&key.secret))
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_profile_is(&got.json(), &expected(&history), 12);
    app.cleanup().await;
    let client = async_nats::connect(&url).await.unwrap();
    async_nats::jetstream::new(client)
        .delete_stream(&name)
        .await
        .expect("delete the test stream");
}

#[tokio::test]
async fn a_cached_profile_is_replaced_by_the_workers_update() {
    cached_profile_follows_updates(server::ProfileSettings::default().read_cache_capacity).await;
}

#[tokio::test]
async fn profiles_read_without_a_cache_follow_updates() {
    cached_profile_follows_updates(0).await;
}

async fn cached_profile_follows_updates(capacity: u64) {
    let mut config = server::ServerConfig::default();
    config.profiles.read_cache_capacity = capacity;
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let key = key.secret;
    let mut history: Vec<Value> = (0..4)
        .map(|i| {
            event(
                &format!("c{i}"),
                "cat",
                i * 10,
                Some((i % 5 + 1) as u8),
                None,
            )
        })
        .collect();
    post(&app, &key, Value::Array(history.clone())).await;
    app.settle().await;
    // Read twice: the second read is served from the cache.
    for _ in 0..2 {
        let p = app
            .get("/api/v1/users/cat/weber-profile", Some(&key))
            .await
            .json();
        assert_profile_is(&p, &expected(&history), 4);
    }
    let next = event("c9", "cat", 100, Some(1), None);
    post(&app, &key, json!([next])).await;
    history.push(next);
    app.settle().await;
    let p = app
        .get("/api/v1/users/cat/weber-profile", Some(&key))
        .await
        .json();
    assert_profile_is(&p, &expected(&history), 5);
    app.cleanup().await;
}

#[tokio::test]
async fn whole_bodies_that_cannot_be_taken_get_a_problem_and_store_nothing() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let key = key.secret;
    let path = "/api/v1/interactions";
    // More events than one request may carry: 413, naming the limit.
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"event_id": i.to_string(), "user_id": "u", "timestamp": i, "rating": 3}))
        .collect();
    let too_many = {
        let big = serde_json::to_vec(&many).unwrap();
        let config = server::ServerConfig {
            body_limit_bytes: 4 * big.len(),
            ..Default::default()
        };
        let roomy = TestApp::with_config(Backend::Sqlite, config).await;
        let (_, k) = roomy.tenant("shop", &[Scope::Write]).await;
        let reply = post(&roomy, &k.secret, Value::Array(many)).await;
        roomy.cleanup().await;
        reply
    };
    let problem = too_many.assert_problem(413, "payload_too_large", path);
    assert_eq!(problem["max_events"], 10_000);
    // A body over the byte limit: 413.
    let huge = "x".repeat(2 * 1024 * 1024);
    post(
        &app,
        &key,
        json!([{"event_id": "h", "user_id": "u", "timestamp": 1, "text": huge}]),
    )
    .await
    .assert_problem(413, "payload_too_large", path);
    // Every event bad: 422 listing each.
    let all_bad = post(&app, &key, json!([{"event_id": "x"}, 7])).await;
    let problem = all_bad.assert_problem(422, "unprocessable", path);
    assert_eq!(
        problem["rejected"].as_array().map(Vec::len),
        Some(2),
        "{problem}"
    );
    // Not an array, not JSON, wrong media type.
    post(&app, &key, json!({"event_id": "x"}))
        .await
        .assert_problem(400, "malformed_json", path);
    let wrong_type = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "text/csv")
                .body(Body::from("a,b"))
                .unwrap(),
        )
        .await;
    wrong_type.assert_problem(415, "unsupported_media_type", path);
    // A read-only key may not ingest.
    let (_, reader) = app.tenant("readers", &[Scope::Read]).await;
    post(
        &app,
        &reader.secret,
        json!([event("r", "u", 1, Some(3), None)]),
    )
    .await
    .assert_problem(403, "forbidden", path);
    // None of it stored anything.
    let windows = app
        .fixture
        .store
        .interaction_windows(&tenant.id, &["u".to_owned()], 100)
        .await
        .unwrap();
    assert!(windows.is_empty(), "{windows:?}");
    app.cleanup().await;
}
