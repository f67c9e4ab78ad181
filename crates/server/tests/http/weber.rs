//! The Weber profile routes over stored profiles: shapes, pagination, limits and errors.

use axum::http::Method;
use serde_json::json;
use store::{Backend, Scope, WeberProfileRecord};

use crate::TestApp;

pub fn profile_record(user: &str, constant: f64) -> WeberProfileRecord {
    WeberProfileRecord {
        user_id: user.to_owned(),
        weber_constant: constant,
        calculation_confidence: 0.75,
        sensitivity_segment: weber::SensitivitySegment::from_constant(constant)
            .as_str()
            .to_owned(),
        bias_ratio: Some(1.5),
        review_count: 12,
        window_len: 12,
        newest_event_ms: Some(1_588_687_728_923),
        updated_at_ms: 1_700_000_000_000,
    }
}

async fn app_with_profiles() -> (TestApp, String) {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, key) = app.tenant("analysts", &[Scope::Read]).await;
    let mut rows: Vec<_> = (0..7)
        .map(|i| profile_record(&format!("hi-{i}"), 0.9 + i as f64 / 100.0))
        .collect();
    rows.push(profile_record("low-1", 0.25));
    rows.push(profile_record("calm-1", 0.05));
    rows.push(profile_record("calm-2", 0.15));
    app.fixture
        .store
        .upsert_weber_profiles(&tenant.id, &rows)
        .await
        .unwrap();
    (app, key.secret)
}

#[tokio::test]
async fn a_profile_has_seed_000s_shape() {
    let (app, key) = app_with_profiles().await;
    let reply = app
        .get("/api/v1/users/low-1/weber-profile", Some(&key))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "user_id": "low-1", "weber_constant": 0.25, "sensitivity_segment": "Low_Sensitive",
            "calculation_confidence": 0.75, "review_count": 12, "bias_ratio": 1.5,
            "last_updated": "2020-05-05T14:08:48.923Z"
        })
    );
    let missing = app
        .get("/api/v1/users/nobody/weber-profile", Some(&key))
        .await;
    missing.assert_problem(404, "not_found", "/api/v1/users/nobody/weber-profile");
    app.cleanup().await;
}

#[tokio::test]
async fn profile_reads_are_counted_by_whether_the_read_cache_answered() {
    let (app, key) = app_with_profiles().await;
    for _ in 0..3 {
        let reply = app
            .get("/api/v1/users/low-1/weber-profile", Some(&key))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let metrics = app.get("/metrics", None).await.text();
    let count = |cache: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("weber_profile_reads_total{{cache=\"{cache}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {cache} count in:\n{metrics}"))
    };
    // The first read goes to the store and fills the cache; the next two are hits.
    assert_eq!((count("miss"), count("hit")), (1, 2));
    app.cleanup().await;
}

#[tokio::test]
async fn batch_get_answers_found_and_missing_and_enforces_limits() {
    let (app, key) = app_with_profiles().await;
    let path = "/api/v1/weber-profiles:batchGet";
    let reply = app
        .call(
            Method::POST,
            path,
            Some(&key),
            Some(json!({"user_ids": ["calm-2", "nobody", "calm-1", "calm-2"]})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let users: Vec<&str> = body["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["calm-1", "calm-2"]);
    assert_eq!(body["missing"], json!(["nobody"]));

    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    for (ids, field) in [
        (json!([]), "user_ids"),
        (json!(too_many), "user_ids"),
        (json!(["ok", ""]), "user_ids[1]"),
    ] {
        let reply = app
            .call(
                Method::POST,
                path,
                Some(&key),
                Some(json!({"user_ids": ids})),
            )
            .await;
        let problem = reply.assert_problem(400, "invalid_field", path);
        assert_eq!(problem["field"], field);
    }
    let exactly: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    let ok = app
        .call(
            Method::POST,
            path,
            Some(&key),
            Some(json!({"user_ids": exactly})),
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["missing"].as_array().unwrap().len(), 1000);
    app.cleanup().await;
}

#[tokio::test]
async fn segments_page_through_users_and_reject_bad_parameters() {
    let (app, key) = app_with_profiles().await;
    let mut seen = Vec::new();
    let mut next = Some(String::new());
    while let Some(after) = next {
        let path = if after.is_empty() {
            "/api/v1/segments/Highly_Sensitive/users?limit=3".to_owned()
        } else {
            format!("/api/v1/segments/Highly_Sensitive/users?limit=3&after={after}")
        };
        let page = app.get(&path, Some(&key)).await.json();
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 3);
        seen.extend(users.iter().map(|u| u.as_str().unwrap().to_owned()));
        next = page["next_after"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, (0..7).map(|i| format!("hi-{i}")).collect::<Vec<_>>());

    let base = "/api/v1/segments/Highly_Sensitive/users";
    let long_after = format!("after={}", "x".repeat(300));
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=abc", "limit"),
        (long_after.as_str(), "after"),
    ] {
        let reply = app.get(&format!("{base}?{query}"), Some(&key)).await;
        let problem = reply.assert_problem(400, "invalid_parameter", base);
        assert_eq!(problem["parameter"], parameter, "{query}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(parameter),
            "{query}: the detail names {parameter}: {detail}"
        );
    }
    let unknown = app
        .get("/api/v1/segments/Very_Sensitive/users", Some(&key))
        .await;
    let problem = unknown.assert_problem(404, "not_found", "/api/v1/segments/Very_Sensitive/users");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("Highly_Sensitive"));
    app.cleanup().await;
}

#[tokio::test]
async fn analytics_cover_every_segment() {
    let (app, key) = app_with_profiles().await;
    let body = app
        .get("/api/v1/analytics/weber-segments", Some(&key))
        .await
        .json();
    assert_eq!(body["total_users"], 10);
    assert_eq!(
        body["segment_distribution"],
        json!({"Highly_Sensitive": 7, "Insensitive": 2, "Low_Sensitive": 1, "Moderately_Sensitive": 0})
    );
    let segments = body["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 4);
    let calm = segments
        .iter()
        .find(|s| s["segment"] == "Insensitive")
        .unwrap();
    assert!((calm["mean_constant"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!((calm["std_constant"].as_f64().unwrap() - 0.05).abs() < 1e-12);
    assert!((calm["share"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    assert_eq!(
        segments[1]["users"], 0,
        "empty segments are listed with zeros"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn weber_routes_need_the_read_scope_and_are_labelled_weber() {
    let (app, read_key) = app_with_profiles().await;
    let (_, writer) = app.tenant("writer-only", &[Scope::Write]).await;
    let reply = app
        .get("/api/v1/analytics/weber-segments", Some(&writer.secret))
        .await;
    let problem = reply.assert_problem(403, "forbidden", "/api/v1/analytics/weber-segments");
    assert_eq!(problem["required_scope"], "read");
    assert_eq!(
        app.get("/api/v1/users/low-1/weber-profile", Some(&read_key))
            .await
            .status,
        200
    );
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.contains(r#"endpoint="/api/v1/users/{user_id}/weber-profile",status="200""#)
            && metrics.contains(r#"service="weber""#),
        "weber routes carry service=\"weber\""
    );
    app.cleanup().await;
}

/// The value of the exposition line that starts with `series` (name and labels).
fn series_value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

async fn metrics_text(router: &axum::Router) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn with_a_redis_layer_a_second_replica_reads_cached_profiles_without_the_store() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let prefix = format!("test:cache:{}:", uuid::Uuid::new_v4().simple());
    let config = server::ServerConfig {
        read_caches: server::ReadCacheSettings {
            redis_url: Some(
                std::env::var("SIGNALBOX_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            key_prefix: prefix.clone(),
        },
        ..server::ServerConfig::default()
    };
    let first = TestApp::with_config(Backend::Sqlite, config.clone()).await;
    let (tenant, key) = first.tenant("analysts", &[Scope::Read]).await;
    let (_, other_key) = first.tenant("others", &[Scope::Read]).await;
    first
        .fixture
        .store
        .upsert_weber_profiles(&tenant.id, &[profile_record("low-1", 0.25)])
        .await
        .unwrap();
    let path = "/api/v1/users/low-1/weber-profile";
    let from_first = first.get(path, Some(&key.secret)).await;
    assert_eq!(from_first.status, 200, "{}", from_first.text());

    // A second replica over the same store and Redis, with an empty memory layer.
    let events_dir = tempfile::tempdir().unwrap();
    let events = stream::EventLog::open_file(events_dir.path(), Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(telemetry::Metrics::new(Default::default()));
    let second =
        server::AppState::new(first.fixture.store.clone(), metrics, config, events).expect("state");
    let router = server::app(second);
    let read = |secret: String| {
        let router = router.clone();
        async move {
            let request = axum::http::Request::get(path)
                .header("authorization", format!("Bearer {secret}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (status, body) = read(key.secret.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body, from_first.json());
    // Another tenant's read of the same user id is another key: it asks the store, finds none.
    let (status, _) = read(other_key.secret.clone()).await;
    assert_eq!(status, 404);

    let metrics = metrics_text(&router).await;
    let of = |s: &str| series_value(&metrics, s);
    assert_eq!(
        of(r#"cache_hits_total{cache="weber_profile",layer="l2"}"#),
        1
    );
    assert_eq!(
        of(r#"cache_misses_total{cache="weber_profile",layer="l1"}"#),
        2
    );
    // Only the other tenant's read reached the store.
    assert_eq!(of(r#"cache_loads_total{cache="weber_profile"}"#), 1);
    assert_eq!(of(r#"weber_profile_reads_total{cache="hit"}"#), 1);
    assert_eq!(of(r#"weber_profile_reads_total{cache="miss"}"#), 1);

    // Leave no keys behind in the shared Redis.
    let client = redis::Client::open(
        std::env::var("SIGNALBOX_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one cached profile: {keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    first.cleanup().await;
}
