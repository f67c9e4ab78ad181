//! Flag usage analytics and the stale-flag report over HTTP: counting on the OFREP paths,
//! `track_events`, the memory bound, the writer, parameter errors and tenant isolation.

use axum::http::Method;
use serde_json::{json, Value};
use server::ServerConfig;
use store::{Backend, Scope, UsageRange, DAY_MS, HOUR_MS};

use crate::TestApp;

fn boolean(key: &str) -> Value {
    json!({"key": key, "type": "boolean", "status": "active",
           "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
           "default_variant": "on", "off_variant": "off"})
}

async fn create(app: &TestApp, key: &str, flag: Value) {
    let reply = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(flag))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

async fn bulk(app: &TestApp, key: &str, user: &str) {
    let reply = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(key),
            Some(json!({"context": {"targetingKey": user}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

fn evaluations(usage: &Value, flag: &str) -> Option<u64> {
    usage["flags"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == flag)?["evaluations"]
        .as_u64()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn usage_is_counted_and_isolated(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, a) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, b) = app.tenant("globex", &[Scope::Admin]).await;
    let (a, b) = (a.secret.as_str(), b.secret.as_str());
    create(&app, a, boolean("checkout")).await;
    create(&app, b, boolean("checkout")).await;
    create(&app, b, boolean("only-b")).await;
    for user in ["u1", "u2", "u3"] {
        bulk(&app, a, user).await;
    }
    bulk(&app, b, "u1").await;
    // An error answer (no targeting key for a split) still counts, without a variant.
    create(
        &app,
        a,
        json!({"key": "split", "type": "multivariate", "status": "active",
               "variants": [{"key": "x", "value": 1, "weight_bp": 5000},
                            {"key": "y", "value": 2, "weight_bp": 5000}],
               "default_variant": "x", "off_variant": "x"}),
    )
    .await;
    let failed = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/split",
            Some(a),
            Some(json!({"context": {}})),
        )
        .await;
    assert_eq!(failed.status, 400, "{}", failed.text());

    let usage_a = app.get("/api/v1/flags/usage", Some(a)).await.json();
    let usage_b = app.get("/api/v1/flags/usage", Some(b)).await.json();
    assert_eq!(evaluations(&usage_a, "checkout"), Some(3), "{usage_a}");
    assert_eq!(evaluations(&usage_a, "split"), Some(1), "{usage_a}");
    assert_eq!(usage_a["flags"][1]["series"][0]["variant"], Value::Null);
    assert_eq!(evaluations(&usage_a, "only-b"), None, "{usage_a}");
    assert_eq!(evaluations(&usage_b, "checkout"), Some(1), "{usage_b}");
    assert_eq!(evaluations(&usage_b, "only-b"), Some(1), "{usage_b}");
    // Another tenant's flag is missing, exactly like a flag that does not exist.
    let other = app.get("/api/v1/flags/only-b/usage", Some(a)).await;
    other.assert_problem(404, "not_found", "/api/v1/flags/only-b/usage");
    // Another environment's counts are separate.
    let staging = app
        .get("/api/v1/flags/usage?environment=staging", Some(a))
        .await
        .json();
    assert_eq!(staging["flags"], json!([]), "{staging}");
    let stale_a = app.get("/api/v1/flags/stale", Some(a)).await.json();
    let keys: Vec<&str> = stale_a["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["checkout"], "{stale_a}");
    app.cleanup().await;
}

#[tokio::test]
async fn usage_is_counted_per_tenant_and_environment_on_sqlite() {
    usage_is_counted_and_isolated(Backend::Sqlite).await;
}

#[tokio::test]
async fn usage_is_counted_per_tenant_and_environment_on_postgres() {
    usage_is_counted_and_isolated(Backend::Postgres).await;
}

#[tokio::test]
async fn flags_without_track_events_are_neither_counted_nor_judged_unused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let mut quiet = boolean("quiet");
    quiet["track_events"] = json!(false);
    create(&app, key, quiet.clone()).await;
    create(&app, key, boolean("loud")).await;
    // `track_events: false` reads back as written; the default is left out.
    let read = app.get("/api/v1/flags/quiet", Some(key)).await.json();
    assert_eq!(read["definition"], quiet);
    let read = app.get("/api/v1/flags/loud", Some(key)).await.json();
    assert_eq!(read["definition"], boolean("loud"));
    bulk(&app, key, "u1").await;
    let usage = app.get("/api/v1/flags/usage", Some(key)).await.json();
    assert_eq!(evaluations(&usage, "quiet"), Some(0), "{usage}");
    assert_eq!(evaluations(&usage, "loud"), Some(1), "{usage}");

    // 31 days on: `loud` was last evaluated a month ago; `quiet` is not judged on usage.
    let later = now_ms() + 31 * DAY_MS;
    let report = server::flag_usage::stale_flags(
        &app.fixture.store,
        None,
        &tenant.id,
        "production",
        30,
        later,
    )
    .await
    .expect("report");
    let codes = |flag: &str| -> Vec<&str> {
        report
            .flags()
            .iter()
            .find(|f| f.key() == flag)
            .map(|f| f.reasons().iter().map(|r| r.code()).collect())
            .unwrap_or_default()
    };
    assert_eq!(codes("loud"), ["not_evaluated", "fully_rolled_out"]);
    assert_eq!(codes("quiet"), ["fully_rolled_out"]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_flag_never_evaluated_is_unused_from_its_creation() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create(&app, admin.secret.as_str(), boolean("never")).await;
    let report = |days_later: i64| {
        let store = app.fixture.store.clone();
        let tenant_id = tenant.id.clone();
        async move {
            server::flag_usage::stale_flags(
                &store,
                None,
                &tenant_id,
                "production",
                30,
                now_ms() + days_later * DAY_MS,
            )
            .await
            .expect("report")
        }
    };
    let soon = report(29).await;
    let reasons = soon.flags()[0].reasons();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].code(), "fully_rolled_out");
    let late = report(31).await;
    let reasons = late.flags()[0].reasons();
    assert_eq!(reasons[0].code(), "not_evaluated");
    assert!(
        reasons[0].detail().starts_with("never evaluated"),
        "{}",
        reasons[0].detail()
    );
    assert_eq!(late.flags()[0].last_evaluated_at(), None);
    app.cleanup().await;
}

#[tokio::test]
async fn the_counter_holds_a_bounded_number_of_cells_and_counts_what_it_drops() {
    let mut config = ServerConfig::default();
    config.flag_usage.max_cells = 1;
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, boolean("first")).await;
    create(&app, key, boolean("second")).await;
    bulk(&app, key, "u1").await;
    bulk(&app, key, "u2").await;
    let usage = app.get("/api/v1/flags/usage", Some(key)).await.json();
    // One cell held: the first flag's evaluations count, the second's are dropped.
    let counted =
        evaluations(&usage, "first").unwrap_or(0) + evaluations(&usage, "second").unwrap_or(0);
    assert_eq!(counted, 2, "{usage}");
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.lines().any(|l| l == "flag_usage_dropped_total 2"),
        "{metrics}"
    );
    // A flush empties the counter, so the next evaluations have room again.
    bulk(&app, key, "u3").await;
    let usage = app.get("/api/v1/flags/usage", Some(key)).await.json();
    let counted =
        evaluations(&usage, "first").unwrap_or(0) + evaluations(&usage, "second").unwrap_or(0);
    assert_eq!(counted, 3, "{usage}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_writer_stores_the_counts_when_it_stops() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, boolean("checkout")).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(server::run_flag_usage_writer(
        app.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    bulk(&app, key, "u1").await;
    bulk(&app, key, "u2").await;
    let _ = stop.send(());
    writer.await.expect("the writer ends cleanly");
    let now = now_ms();
    let stored = app
        .fixture
        .store
        .flag_evaluations(
            &tenant.id,
            &UsageRange {
                environment: "production",
                from_ms: now - DAY_MS,
                to_ms: now + HOUR_MS,
                bucket_ms: HOUR_MS,
                flag_key: None,
            },
        )
        .await
        .expect("read");
    let total: u64 = stored.iter().map(|b| b.evaluations).sum();
    assert_eq!(total, 2, "{stored:?}");
    assert_eq!(stored[0].variant.as_deref(), Some("on"));
    let last = app
        .fixture
        .store
        .flags_last_evaluated(&tenant.id, "production")
        .await
        .expect("read");
    assert!(last
        .get("checkout")
        .is_some_and(|at| (now - at).abs() < DAY_MS));
    app.cleanup().await;
}

#[tokio::test]
async fn bad_usage_parameters_are_refused_with_the_parameter_named() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, reader) = app.tenant("acme", &[Scope::Read]).await;
    let key = reader.secret.as_str();
    let bad = app
        .get("/api/v1/flags/usage?granularity=week", Some(key))
        .await;
    let body = bad.assert_problem(400, "invalid_parameter", "/api/v1/flags/usage");
    assert_eq!(body["parameter"], "granularity");
    let bad = app
        .get("/api/v1/flags/usage?from=yesterday", Some(key))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let backwards = app
        .get(
            "/api/v1/flags/usage?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            Some(key),
        )
        .await;
    assert_eq!(backwards.status, 422, "{}", backwards.text());
    let too_long = app
        .get(
            "/api/v1/flags/usage?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
            Some(key),
        )
        .await;
    assert_eq!(too_long.status, 422, "{}", too_long.text());
    let by_day = app
        .get(
            "/api/v1/flags/usage?granularity=day&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
            Some(key),
        )
        .await;
    assert_eq!(by_day.status, 200, "{}", by_day.text());
    let days = app.get("/api/v1/flags/stale?days=0", Some(key)).await;
    let body = days.assert_problem(400, "invalid_parameter", "/api/v1/flags/stale");
    assert_eq!(body["parameter"], "days");
    assert_eq!(app.get("/api/v1/flags/stale", None).await.status, 401);
    app.cleanup().await;
}
