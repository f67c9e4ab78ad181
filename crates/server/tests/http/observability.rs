//! `/metrics` after real traffic, read with a real Prometheus text parser, and request ids.

use axum::body::Body;
use axum::http::{Method, Request};
use store::{Backend, Scope};
use telemetry::testing::{parse, samples as find, total, OpenMetricsValue};

use crate::TestApp;

#[tokio::test]
async fn metrics_show_route_templates_tenants_and_errors() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, key) = app.tenant("acme", &[Scope::Admin]).await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/api/v1/tenant", Some(&key.secret)).await.status,
            200
        );
    }
    let raw_path = format!("/api/v1/tenant/keys/{}", key.info.id);
    assert_eq!(app.get(&raw_path, Some(&key.secret)).await.status, 200);
    assert_eq!(app.get("/api/v1/tenant", None).await.status, 401);
    assert_eq!(app.get("/no/such/route", None).await.status, 404);
    let created = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&key.secret),
            Some(serde_json::json!({"scopes": ["read"]})),
        )
        .await;
    assert_eq!(created.status, 201);

    let reply = app
        .send(
            Request::get("/metrics")
                .header("accept", "application/openmetrics-text; version=1.0.0")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .content_type()
        .starts_with("application/openmetrics-text"));
    let text = reply.text();
    let s = parse(&text);

    let ok = [
        ("method", "GET"),
        ("endpoint", "/api/v1/tenant"),
        ("status", "200"),
        ("tenant_id", tenant.id.as_str()),
        ("service", "platform"),
    ];
    assert_eq!(total(&s, "http_requests", &ok), Some(3.0), "{text}");
    // The route template, never the raw path with its id.
    assert_eq!(
        find(
            &s,
            "http_requests",
            &[("endpoint", "/api/v1/tenant/keys/{key_id}")]
        )
        .len(),
        1
    );
    assert!(!text.contains(&raw_path), "a raw path became a label");
    assert_eq!(
        find(
            &s,
            "http_requests",
            &[("endpoint", "unmatched"), ("status", "404")]
        )
        .len(),
        1
    );
    let unauthorized = [("error_type", "unauthorized"), ("tenant_id", "unknown")];
    assert_eq!(total(&s, "errors", &unauthorized), Some(1.0));

    let durations = find(
        &s,
        "http_request_duration_seconds",
        &[
            ("endpoint", "/api/v1/tenant"),
            ("tenant_id", tenant.id.as_str()),
        ],
    );
    match durations.first().expect("duration histogram") {
        OpenMetricsValue::Histogram(h) => {
            let les: Vec<f64> = h.buckets.iter().map(|b| b.upper_bound).collect();
            for seed_bucket in [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0] {
                assert!(
                    les.contains(&seed_bucket),
                    "seed 003 bucket {seed_bucket} missing: {les:?}"
                );
            }
            assert_eq!(h.count, Some(3));
        }
        other => panic!("expected a histogram, got {other:?}"),
    }
    let sizes = find(
        &s,
        "http_request_size_bytes",
        &[("endpoint", "/api/v1/tenant/keys"), ("method", "POST")],
    );
    assert!(!sizes.is_empty(), "request size histogram present");
    for process in [
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        assert_eq!(find(&s, process, &[]).len(), 1, "{process} missing");
    }
    // The secret never shows up in metrics.
    assert!(!text.contains(&key.secret));
    app.cleanup().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_minted() {
    let app = TestApp::new(Backend::Sqlite).await;
    let req = Request::builder()
        .uri("/health")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let reply = app.send(req).await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    let minted = app.get("/health", None).await;
    let id = minted.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let req = Request::builder()
        .uri("/nope")
        .header("x-request-id", "bad id!")
        .body(Body::empty())
        .unwrap();
    let problem = app.send(req).await;
    let body = problem.assert_problem(404, "route_not_found", "/nope");
    assert_ne!(body["request_id"], "bad id!");
    app.cleanup().await;
}

#[tokio::test]
async fn health_has_the_seed_shape() {
    let app = TestApp::new(Backend::Sqlite).await;
    for path in ["/health", "/api/v1/health"] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["status"], "healthy", "{body}");
        assert!(time::OffsetDateTime::parse(
            body["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
        assert_eq!(body["components"]["storage"]["status"], "up");
        assert_eq!(body["components"]["storage"]["backend"], "sqlite");
        assert_eq!(body["components"]["redis"]["status"], "not_configured");
        assert!(body["performance_metrics"]["uptime_seconds"]
            .as_f64()
            .is_some());
        assert!(body["performance_metrics"]["requests_total"]
            .as_u64()
            .is_some());
    }
    app.cleanup().await;
}
