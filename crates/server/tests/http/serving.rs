//! Serving over real sockets: readiness against real Redis and NATS, and graceful shutdown.

use std::time::Duration;

use server::ServerConfig;
use store::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestApp;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A port nothing listens on: bind, note the port, close.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn ready_checks_storage_redis_and_nats() {
    let config = ServerConfig {
        redis_url: Some(env_or("SIGNALBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
        nats_url: Some(env_or("SIGNALBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Postgres, config).await;
    let reply = app.get("/ready", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    for component in ["storage", "redis", "nats"] {
        assert_eq!(body["components"][component]["status"], "up", "{body}");
    }
    assert_eq!(body["components"]["storage"]["backend"], "postgres");
    app.cleanup().await;
}

#[tokio::test]
async fn ready_is_503_naming_what_is_down() {
    let config = ServerConfig {
        redis_url: Some(format!("redis://127.0.0.1:{}", dead_port())),
        nats_url: Some(format!("nats://127.0.0.1:{}", dead_port())),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let reply = app.get("/ready", None).await;
    let body = reply.assert_problem(503, "unavailable", "/ready");
    assert_eq!(body["detail"], "not ready: redis, nats down");
    assert_eq!(body["components"]["storage"]["status"], "up");
    assert_eq!(body["components"]["redis"]["status"], "down");
    assert!(body["components"]["redis"]["error"].is_string());
    // Liveness stays 200 and reports the degradation.
    let health = app.get("/health", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "degraded");
    app.cleanup().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("t", &[store::Scope::Admin]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, app.state.clone(), async {
        let _ = stop_rx.await;
    }));

    // Start a request and leave its body half sent, so it is in flight inside the server.
    let body = br#"{"scopes":["read"],"label":"drain"}"#;
    let (head, tail) = body.split_at(10);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/v1/tenant/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        key.secret,
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn.write_all(head).await.unwrap();
    // Wait (on a condition, not a clock) until the server counts it in flight.
    let metrics = app.state.metrics().clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.summary().requests_in_flight < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the request reached the server");

    stop_tx.send(()).unwrap();
    // Shutdown has begun; the in-flight request still completes.
    conn.write_all(tail).await.unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("server stopped after draining")
        .unwrap()
        .unwrap();
    let keys = app
        .fixture
        .store
        .list_api_keys(&key.info.tenant_id)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.label.as_deref() == Some("drain")),
        "the drained request's write is kept"
    );
    app.cleanup().await;
}
