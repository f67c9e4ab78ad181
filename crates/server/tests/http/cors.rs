//! CORS for browser clients: preflights answered before authentication and rate limiting,
//! exposed headers on every answer (problems, 304s and 429s included), and off by default.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use server::{CorsSettings, ServerConfig};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const ORIGIN: &str = "http://127.0.0.1:5173";

/// Everyone shares one request per hour: any request the limiter saw would be refused.
const ONE_PER_HOUR: &str = r#"
[[rule]]
name = "everyone"
scope = "global"
algorithm = "fixed_window"
limit = 1
window_secs = 3600
action = { kind = "reject" }
"#;

async fn app(origins: &[&str]) -> TestApp {
    let config = ServerConfig {
        cors: CorsSettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsSettings::default()
        },
        rate_limits: server::RateLimitSettings {
            config: Some(limits::Config::parse("test.toml", ONE_PER_HOUR).unwrap()),
            ..server::RateLimitSettings::default()
        },
        ..ServerConfig::default()
    };
    TestApp::with_config(Backend::Sqlite, config).await
}

fn preflight(origin: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,if-none-match,x-environment",
        )
        .body(Body::empty())
        .unwrap()
}

fn header(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_key_or_rate_limit() {
    let app = app(&[ORIGIN, "https://other.example"]).await;
    for _ in 0..3 {
        let reply = app
            .send(preflight(ORIGIN, "/ofrep/v1/evaluate/flags"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            header(&reply, "access-control-allow-origin").unwrap(),
            ORIGIN
        );
        let methods = header(&reply, "access-control-allow-methods").unwrap();
        assert!(
            methods.contains("post") && methods.contains("put"),
            "{methods}"
        );
        let headers = header(&reply, "access-control-allow-headers").unwrap();
        for h in [
            "authorization",
            "content-type",
            "if-none-match",
            "x-environment",
        ] {
            assert!(headers.contains(h), "{headers}");
        }
        assert_eq!(header(&reply, "access-control-max-age").unwrap(), "600");
        assert!(header(&reply, "access-control-allow-credentials").is_none());
        // Not counted against the one request an hour, nor answered with its headers.
        assert!(header(&reply, "ratelimit").is_none(), "{:?}", reply.headers);
    }
}

#[tokio::test]
async fn answers_expose_etag_and_rate_limit_fields_even_when_refused() {
    let app = app(&[ORIGIN]).await;
    let (_, key) = app.tenant("browser", &[Scope::Read]).await;
    let evaluate = || {
        Request::post("/ofrep/v1/evaluate/flags")
            .header("origin", ORIGIN)
            .header("authorization", format!("Bearer {}", key.secret))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"context":{"targetingKey":"u1"}}"#))
            .unwrap()
    };
    let reply = app.send(evaluate()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        header(&reply, "access-control-allow-origin").unwrap(),
        ORIGIN
    );
    let exposed = header(&reply, "access-control-expose-headers").unwrap();
    for h in ["etag", "ratelimit", "ratelimit-policy", "retry-after"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert!(header(&reply, "etag").is_some());
    // The second request is over the limit: the 429 problem is readable by the page too.
    let reply = app.send(evaluate()).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&reply, "access-control-allow-origin").unwrap(),
        ORIGIN
    );
    assert!(header(&reply, "retry-after").is_some());
}

#[tokio::test]
async fn a_not_modified_answer_carries_the_cors_headers() {
    let config = ServerConfig {
        cors: CorsSettings {
            allowed_origins: vec!["*".to_owned()],
            ..CorsSettings::default()
        },
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, key) = app.tenant("browser", &[Scope::Read]).await;
    let evaluate = |etag: Option<&str>| {
        let mut request = Request::post("/ofrep/v1/evaluate/flags")
            .header("origin", ORIGIN)
            .header("authorization", format!("Bearer {}", key.secret))
            .header("content-type", "application/json");
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.body(Body::from("{}")).unwrap()
    };
    let first = app.send(evaluate(None)).await;
    let etag = header(&first, "etag").unwrap();
    let again = app.send(evaluate(Some(&etag))).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "access-control-allow-origin").unwrap(), "*");
    assert!(header(&again, "access-control-expose-headers")
        .unwrap()
        .contains("etag"));
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let app = app(&[ORIGIN]).await;
    let reply = app
        .send(preflight("http://evil.example", "/ofrep/v1/evaluate/flags"))
        .await;
    assert!(header(&reply, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_is_off_by_default_and_a_preflight_is_then_a_405_problem() {
    let app = TestApp::new(Backend::Sqlite).await;
    let reply = app
        .send(preflight(ORIGIN, "/ofrep/v1/evaluate/flags"))
        .await;
    reply.assert_problem(405, "method_not_allowed", "/ofrep/v1/evaluate/flags");
    assert!(header(&reply, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_bad_origin_is_refused_at_setup() {
    let config = ServerConfig {
        cors: CorsSettings {
            allowed_origins: vec!["https://app.example.com/".to_owned()],
            ..CorsSettings::default()
        },
        ..ServerConfig::default()
    };
    let fixture = store::testing::TestStore::sqlite().await;
    let events_dir = tempfile::tempdir().unwrap();
    let events = stream::EventLog::open_file(events_dir.path(), Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(telemetry::Metrics::new(Default::default()));
    let refused = server::AppState::new(fixture.store.clone(), metrics, config, events);
    assert!(matches!(refused, Err(server::SetupError::Cors(_))));
}
