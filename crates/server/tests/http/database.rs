//! The database under pressure (statement timeout, pool exhausted: 503 problems naming the
//! cause, never a hang), the `database_*` series, and `/metrics` itself: both exposition
//! formats, the scrape token, and `promtool check metrics` on a real scrape.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use sqlx::Connection;
use store::testing::{postgres_url, TestStore};
use store::{Backend, Scope};
use telemetry::testing::{parse, samples, total, OpenMetricsValue};

use crate::TestApp;

/// Takes an exclusive lock on the fixture's `api_keys` table from a connection of its own, so
/// every request that reads keys (authentication, key listing) waits on it.
async fn lock_api_keys(fixture: &TestStore) -> sqlx::AnyConnection {
    let mut conn = sqlx::AnyConnection::connect(&postgres_url()).await.unwrap();
    let schema = fixture.options.schema.as_deref().unwrap();
    sqlx::raw_sql(&format!(
        "BEGIN; LOCK TABLE {schema}.api_keys IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// Polls until some session waits for the lock on the fixture's `api_keys`.
async fn wait_for_a_lock_waiter(fixture: &TestStore) {
    let mut conn = sqlx::AnyConnection::connect(&postgres_url()).await.unwrap();
    let schema = fixture.options.schema.as_deref().unwrap();
    let sql = format!(
        "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND relation = '{schema}.api_keys'::regclass"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row: (i64,) = sqlx::query_as(&sql).fetch_one(&mut conn).await.unwrap();
        if row.0 > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request ever waited for the lock"
        );
        tokio::task::yield_now().await;
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_a_503_database_timeout() {
    let fixture =
        TestStore::postgres_with(|o| o.statement_timeout = Some(Duration::from_millis(200))).await;
    let app = TestApp::over_store(fixture).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let reply = app.get("/api/v1/tenant/keys", Some(&key.secret)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let lock = lock_api_keys(&app.fixture).await;
    let started = Instant::now();
    let reply = app.get("/api/v1/tenant/keys", Some(&key.secret)).await;
    let waited = started.elapsed();
    let body = reply.assert_problem(503, "database_timeout", "/api/v1/tenant/keys");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("statement timeout")),
        "{body}"
    );
    assert_eq!(reply.headers["retry-after"], "1");
    // Cancelled by the database at its timeout, far from the request timeout (30 s).
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    lock.close().await.unwrap();
    let reply = app.get("/api/v1/tenant/keys", Some(&key.secret)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.cleanup().await;
}

#[tokio::test]
async fn an_exhausted_pool_is_a_503_database_busy_and_counted() {
    let fixture = TestStore::postgres_with(|o| {
        o.max_connections = 1;
        o.acquire_timeout = Duration::from_millis(300);
    })
    .await;
    let app = TestApp::over_store(fixture).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let reply = app.get("/api/v1/tenant/keys", Some(&key.secret)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The first request takes the only connection and waits on the lock with it...
    let lock = lock_api_keys(&app.fixture).await;
    let first = {
        let router = app.router.clone();
        let secret = key.secret.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let request = Request::get("/api/v1/tenant/keys")
                .header("authorization", format!("Bearer {secret}"))
                .body(Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        })
    };
    wait_for_a_lock_waiter(&app.fixture).await;
    // ...so the second finds none free and is answered at the acquire timeout.
    let started = Instant::now();
    let reply = app.get("/api/v1/tenant/keys", Some(&key.secret)).await;
    let waited = started.elapsed();
    let body = reply.assert_problem(503, "database_busy", "/api/v1/tenant/keys");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("acquire timeout")),
        "{body}"
    );
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    lock.close().await.unwrap();
    assert_eq!(first.await.unwrap(), 200, "the waiting request completes");

    let text = scrape(&app, "application/openmetrics-text").await;
    let exp = parse(&text);
    let primary = [("database_type", "postgres"), ("pool", "primary")];
    assert_eq!(
        total(&exp, "database_pool_acquire_timeouts", &primary),
        Some(1.0),
        "{text}"
    );
    assert_eq!(total(&exp, "database_connections_max", &primary), Some(1.0));
    assert_eq!(
        total(&exp, "errors", &[("error_type", "database_busy")]),
        Some(1.0)
    );
    app.cleanup().await;
}

async fn scrape(app: &TestApp, accept: &str) -> String {
    let request = Request::get("/metrics")
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Traffic through every engine, so counters, gauges, histograms, caches and the database
/// series all have samples: ingestion and profiles (weber, the read cache), flags (admin and
/// OFREP), forecasts, tenant keys, and errors.
async fn traffic(app: &TestApp) {
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let key = key.secret;
    let events: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            json!({"event_id": format!("e{i}"), "user_id": "ann", "timestamp": 1_000 + i,
                   "rating": 1 + i % 5, "text": "pretty good overall"})
        })
        .collect();
    let reply = app
        .call(
            Method::POST,
            "/api/v1/interactions",
            Some(&key),
            Some(json!(events)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;
    for _ in 0..2 {
        let reply = app.get("/api/v1/users/ann/weber-profile", Some(&key)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let flag = crate::flags::boolean_flag("checkout");
    let reply = app
        .call(
            Method::POST,
            "/api/v1/flags?environment=production",
            Some(&key),
            Some(flag),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/checkout",
            Some(&key),
            Some(json!({"context": {"targetingKey": "ann"}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for _ in 0..2 {
        let reply = app
            .get(
                "/api/v1/forecast?station=JFK&horizon=24h&vars=t2m,msl&at=2013-11-05T06:00:00Z",
                Some(&key),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(app.get("/api/v1/tenant/keys", Some(&key)).await.status, 200);
    assert_eq!(app.get("/api/v1/tenant", None).await.status, 401);
}

#[tokio::test]
async fn promtool_finds_nothing_to_report_in_a_scrape_after_traffic() {
    let app = TestApp::new(Backend::Sqlite).await;
    traffic(&app).await;
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = reply.text();
    for family in [
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE database_query_duration_seconds histogram",
        "# TYPE database_slow_queries_total counter",
        "# TYPE database_connections_active gauge",
        "# TYPE cache_hits_total counter",
        "# TYPE weber_events_ingested_total counter",
        "# TYPE forecast_requests_total counter",
        "# TYPE flag_evaluations_total counter",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package `prometheus`; scripts/test installs it)");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}\n--- scrape ---\n{text}",
        out.status
    );
    app.cleanup().await;
}

#[tokio::test]
async fn openmetrics_scrapes_parse_and_carry_real_database_timings() {
    let app = TestApp::new(Backend::Sqlite).await;
    traffic(&app).await;
    let request = Request::get("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .body(Body::empty())
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(
        reply.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = reply.text();
    assert!(text.ends_with("# EOF\n"));
    let exp = parse(&text);
    let reads = samples(
        &exp,
        "database_query_duration_seconds",
        &[
            ("database_type", "sqlite"),
            ("operation", "select"),
            ("table", "api_keys"),
        ],
    );
    match reads.first() {
        Some(OpenMetricsValue::Histogram(h)) => {
            assert!(h.count.unwrap_or(0) >= 1, "{h:?}");
            assert!(h.sum.map(|s| s.as_f64()).unwrap_or(0.0) > 0.0, "{h:?}");
            let les: Vec<f64> = h.buckets.iter().map(|b| b.upper_bound).collect();
            for seed_bucket in [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0] {
                assert!(les.contains(&seed_bucket), "{les:?}");
            }
        }
        other => panic!("no api_keys select timings: {other:?}\n{text}"),
    }
    for (op, table) in [
        ("insert", "interactions"),
        ("upsert", "weber_profiles"),
        ("insert", "flags"),
    ] {
        assert!(
            !samples(
                &exp,
                "database_query_duration_seconds",
                &[("operation", op), ("table", table)]
            )
            .is_empty(),
            "no {op} on {table}:\n{text}"
        );
    }
    let primary = [("database_type", "sqlite"), ("pool", "primary")];
    assert_eq!(
        total(&exp, "database_connections_max", &primary),
        Some(20.0)
    );
    // The pool holds the connections the traffic opened: idle, or handed out at this instant to
    // a background worker (which one is a race, so only the sum is asserted).
    let open = total(&exp, "database_connections_idle", &primary).unwrap_or(0.0)
        + total(&exp, "database_connections_active", &primary).unwrap_or(0.0);
    assert!(open >= 1.0, "{text}");
    assert_eq!(
        total(&exp, "database_slow_queries", &[("table", "api_keys")]),
        Some(0.0),
        "nothing here takes a second"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_scrape_token_guards_metrics() {
    let config = server::ServerConfig {
        metrics_token: server::MetricsToken::new("s3cret-scrape-token"),
        ..Default::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let reply = app.get("/metrics", None).await;
    reply.assert_problem(401, "unauthorized", "/metrics");
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let wrong = app.get("/metrics", Some("s3cret-scrape-tokem")).await;
    wrong.assert_problem(401, "unauthorized", "/metrics");
    let right = app.get("/metrics", Some("s3cret-scrape-token")).await;
    assert_eq!(right.status, 200);
    assert!(right.text().contains("# TYPE http_requests_total counter"));
    assert!(format!("{:?}", app.state.config()).contains("<redacted>"));
    assert!(!format!("{:?}", app.state.config()).contains("s3cret"));
    app.cleanup().await;
}
