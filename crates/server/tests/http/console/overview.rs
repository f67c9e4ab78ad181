//! The overview's figures, read back from the server's own metrics: a tenant sees its own, an
//! admin key also the whole server's, the refusals per rule and the caches.

use axum::http::StatusCode;
use server::{RateLimitSettings, ServerConfig};
use store::{Backend, Scope};

use crate::TestApp;

const API_ONLY: &str = r#"
[[rule]]
name = "api_per_key"
scope = "api_key"
algorithm = "fixed_window"
limit = 2
window_secs = 3600
paths = ["/api/*"]
action = { kind = "reject" }
"#;

/// The cell of the row headed `label` in the traffic table, the tenant's column.
fn tenant_cell(html: &str, label: &str) -> String {
    let row = html
        .find(&format!("<th scope=\"row\">{label}</th>"))
        .unwrap_or_else(|| panic!("no row {label}"));
    let start = row + html[row..].find("<td class=\"num\">").expect("a cell") + 16;
    let end = start + html[start..].find("</td>").expect("cell end");
    html[start..end].to_owned()
}

#[tokio::test]
async fn a_tenant_sees_its_own_traffic_and_an_admin_the_whole_servers() {
    let config = ServerConfig {
        rate_limits: RateLimitSettings {
            config: Some(limits::Config::parse("test.toml", API_ONLY).unwrap()),
            ..RateLimitSettings::default()
        },
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("other", &[Scope::Read]).await;

    // acme: two answered requests, then a refusal from the rule.
    for expected in [200, 200, 429] {
        let reply = app.get("/api/v1/tenant", Some(&admin.secret)).await;
        assert_eq!(reply.status.as_u16(), expected, "{}", reply.text());
    }

    let console = app.console(&admin.secret).await;
    let page = console.get("/console").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("class=\"cards\""), "{html}");
    assert_eq!(tenant_cell(&html, "Rate-limit refusals (429)"), "1");
    assert_eq!(tenant_cell(&html, "Client errors (4xx)"), "1");
    assert!(
        tenant_cell(&html, "Latency p50").ends_with('s'),
        "a duration"
    );
    assert!(
        html.contains("Whole server"),
        "an admin sees the server's figures"
    );
    assert!(
        html.contains("<th scope=\"row\">api_per_key</th><td class=\"num\">1</td>"),
        "{html}"
    );
    assert!(html.contains("id=\"cache-hit-rates\""));
    assert!(html.contains("<th scope=\"row\">forecast</th>"));

    // The other tenant, read-only: its own figures only, none of acme's refusals.
    let other = app.console(&reader.secret).await;
    let html = other.get("/console").await.text();
    assert_eq!(tenant_cell(&html, "Rate-limit refusals (429)"), "0");
    assert_eq!(tenant_cell(&html, "Client errors (4xx)"), "0");
    assert!(!html.contains("Whole server"));
    assert!(
        !html.contains("api_per_key"),
        "rule figures mix tenants: admin only"
    );
    assert!(!html.contains("id=\"cache-hit-rates\""));
    app.cleanup().await;
}
