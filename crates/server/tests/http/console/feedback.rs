//! The feedback pages: the list with filters, an item with its policy trace and history,
//! redacted text only unless a `read_clear` key asks (and the read is recorded).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use store::{Backend, Scope};

use crate::TestApp;

const TEXT: &str = "Terrible service, you idiots. Call me on +44 20 7946 0958";

async fn ingest(app: &TestApp, key: &str, id: &str) {
    let body = json!([{"id": id, "user_id": "u1", "type": "review", "rating": 1, "text": TEXT,
                       "region": "eu", "tier": "realtime"}]);
    let reply = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/feedback")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn an_item_shows_its_trace_routing_and_history_but_never_clear_text_by_default() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, writer) = app.tenant("acme", &[Scope::Read, Scope::Write]).await;
    let clear = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read, Scope::ReadClear].into_iter().collect(),
            None,
        )
        .await
        .unwrap();
    ingest(&app, &writer.secret, "fb-1").await;
    // The full checks, as the job would run them.
    app.state
        .feedback()
        .process_items(&app.state, &tenant.id, &["fb-1".to_owned()])
        .await
        .unwrap();

    let console = app.console(&writer.secret).await;
    let list = console.get("/console/feedback").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let html = list.text();
    assert!(html.contains("href=\"/console/feedback/fb-1\""), "{html}");
    assert!(html.contains("realtime"));
    let none = console.get("/console/feedback?status=failed").await.text();
    assert!(!none.contains("fb-1"), "the status filter applies");
    let bad = console.get("/console/feedback?status=asleep").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let item = console.get("/console/feedback/fb-1").await;
    assert_eq!(item.status, StatusCode::OK, "{}", item.text());
    let html = item.text();
    for expected in [
        "id=\"policy-trace\"",
        "id=\"principles\"",
        "id=\"rules-fired\"",
        "id=\"route\"",
        "id=\"history\"",
        "received",
        "id=\"redacted-text\"",
    ] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }
    assert!(!html.contains("7946 0958"), "no clear text: {html}");
    assert!(
        !html.contains("id=\"read-clear\""),
        "no read_clear scope, no button"
    );
    let refused = console.post("/console/feedback/fb-1", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // A read_clear key: a button; the answer to it shows the text and the read is recorded.
    let clear_console = app.console(&clear.secret).await;
    let html = clear_console.get("/console/feedback/fb-1").await.text();
    assert!(html.contains("id=\"read-clear\""));
    assert!(!html.contains("7946 0958"), "not by default");
    let shown = clear_console.post("/console/feedback/fb-1", &[]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert!(shown.text().contains(TEXT.split(',').next().unwrap()));
    assert!(shown.text().contains("7946 0958"));
    assert_eq!(shown.headers["cache-control"], "no-store");
    let after = clear_console.get("/console/feedback/fb-1").await.text();
    assert!(!after.contains("7946 0958"), "shown only in that answer");
    assert!(
        after.contains("read_in_clear"),
        "the read is in the history"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenants_feedback_does_not_exist() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, a) = app.tenant("tenant-a", &[Scope::Read, Scope::Write]).await;
    let (_, b) = app.tenant("tenant-b", &[Scope::Read]).await;
    ingest(&app, &a.secret, "a-item").await;
    let console = app.console(&b.secret).await;
    let html = console.get("/console/feedback").await.text();
    assert!(!html.contains("a-item"));
    assert!(
        !html.contains("method=\"post\" action=\"/console/feedback"),
        "no write controls"
    );
    let missing = console.get("/console/feedback/a-item").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

/// Every page of this area, as a read-only key sees it: no POST form but sign-out, and the
/// admin pages refused.
#[tokio::test]
async fn a_read_only_key_sees_no_write_controls_on_the_operations_pages() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, reader) = app.tenant("acme", &[Scope::Read]).await;
    let console = app.console(&reader.secret).await;
    for path in [
        "/console",
        "/console/rate-limits",
        "/console/llm",
        "/console/feedback",
    ] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text());
        let html = page.text();
        assert_eq!(
            html.matches("method=\"post\"").count(),
            1,
            "{path}: only the sign-out form: {html}"
        );
        assert!(html.contains("action=\"/console/sign-out\""));
        assert!(!html.contains("hx-post"), "{path}");
    }
    for path in ["/console/keys", "/console/jobs"] {
        assert_eq!(
            console.get(path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    app.cleanup().await;
}
