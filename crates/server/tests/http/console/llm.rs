//! The LLM pages: usage and cost, the budget, recent conversations, a conversation's timeline.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{Backend, Scope};

use crate::TestApp;

fn now_ms() -> i64 {
    server::jobs::now_ms()
}

#[tokio::test]
async fn usage_conversations_and_a_timeline_render_and_stay_in_their_tenant() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, a) = app.tenant("tenant-a", &[Scope::Read, Scope::Write]).await;
    let (_, b) = app.tenant("tenant-b", &[Scope::Read]).await;
    let t = |offset: i64| server::rfc3339_ms(now_ms() - 10_000 + offset);
    let batch = json!([
        {"type": "conversation_started", "id": "e1", "time": t(0), "conversation_id": "conv<one>", "channel": "web"},
        {"type": "message_processed", "id": "e2", "time": t(1), "conversation_id": "conv<one>", "channel": "web", "direction": "inbound", "message_type": "text"},
        {"type": "model_call", "id": "e3", "time": t(2), "provider": "acme", "model": "large", "operation": "chat",
         "duration_ms": 120, "input_tokens": 500, "output_tokens": 50, "conversation_id": "conv<one>", "cost_usd": 0.25},
        {"type": "integration_call", "id": "e4", "time": t(3), "conversation_id": "conv<one>", "integration_id": "crm", "integration_type": "crm", "status": "success", "duration_ms": 40},
    ]);
    let reply = app
        .call(
            Method::POST,
            "/api/v1/llm/events",
            Some(&a.secret),
            Some(batch),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["stored"], 4, "{}", reply.text());

    let console = app.console(&a.secret).await;
    let page = console.get("/console/llm").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    for expected in [
        "id=\"cost-chart\"",
        "<svg",
        "acme / large",
        "id=\"budget\"",
        "href=\"/console/llm/conversations/conv%3Cone%3E\"",
        "$0.25",
    ] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }
    assert!(!html.contains("conv<one>"), "ids are escaped");

    let timeline = console
        .get("/console/llm/conversations/conv%3Cone%3E")
        .await;
    assert_eq!(timeline.status, StatusCode::OK, "{}", timeline.text());
    let html = timeline.text();
    for expected in [
        "conversation started",
        "inbound text on web",
        "acme / large (chat)",
        "500 in, 50 out, 550 total",
        "120.0 ms",
        "integration call",
    ] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }

    // Tenant B: none of A's usage, and A's conversation does not exist.
    let other = app.console(&b.secret).await;
    let html = other.get("/console/llm").await.text();
    assert!(!html.contains("acme / large") && !html.contains("conv%3Cone%3E"));
    let missing = other.get("/console/llm/conversations/conv%3Cone%3E").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}
