//! The rate limits page: the rules in force for the tenant and the refusals so far.

use axum::http::StatusCode;
use server::{RateLimitSettings, ServerConfig};
use store::{Backend, Scope};

use crate::TestApp;

const RULES: &str = r#"
[[rule]]
name = "api_per_key"
scope = "api_key"
algorithm = "fixed_window"
limit = 1
window_secs = 3600
paths = ["/api/*"]
action = { kind = "reject" }
tiers = { starter = { limit = 1, burst = 0 } }

[[rule]]
name = "watch_tenant"
scope = "tenant"
algorithm = "token_bucket"
limit = 500
burst = 50
window_secs = 60
shadow = true
action = { kind = "reject" }
"#;

const OWN_RULES: &str = r#"
[[rule]]
name = "special_tenant_rule"
scope = "tenant"
algorithm = "sliding_window"
limit = 7
window_secs = 10
action = { kind = "delay", max_delay_ms = 250 }
"#;

#[tokio::test]
async fn the_rules_in_force_and_refusals_per_rule_are_shown() {
    let fixture = store::testing::TestStore::new(Backend::Sqlite).await;
    let special = fixture
        .store
        .create_tenant("special", store::Tier::Starter)
        .await
        .unwrap();
    let special_key = fixture
        .store
        .issue_api_key(&special.id, [Scope::Read].into_iter().collect(), None)
        .await
        .unwrap();
    let mut tenant_configs = std::collections::BTreeMap::new();
    tenant_configs.insert(
        special.id.clone(),
        limits::Config::parse("own.toml", OWN_RULES).unwrap(),
    );
    let config = ServerConfig {
        rate_limits: RateLimitSettings {
            config: Some(limits::Config::parse("test.toml", RULES).unwrap()),
            tenant_configs,
            ..RateLimitSettings::default()
        },
        ..ServerConfig::default()
    };
    let app = TestApp::over_store_with_config(fixture, config).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("reader", &[Scope::Read]).await;
    assert_eq!(
        app.get("/api/v1/tenant", Some(&admin.secret)).await.status,
        200
    );
    assert_eq!(
        app.get("/api/v1/tenant", Some(&admin.secret)).await.status,
        429
    );

    let console = app.console(&admin.secret).await;
    let page = console.get("/console/rate-limits").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    for expected in [
        "data-rule=\"api_per_key\"",
        "fixed window",
        "token bucket",
        "500 + 50 burst",
        "starter: 1",
        "/api/*",
        "shadow: counts only",
        "<td class=\"num refused\">1</td>",
        "id=\"tenant-refusals\">1<",
    ] {
        assert!(html.contains(expected), "{expected} missing: {html}");
    }
    assert!(
        !html.contains("special_tenant_rule"),
        "another tenant's own rules"
    );

    let reader_console = app.console(&reader.secret).await;
    let html = reader_console.get("/console/rate-limits").await.text();
    assert!(html.contains("data-rule=\"api_per_key\""));
    assert!(
        !html.contains("class=\"num refused\""),
        "per-rule counts are admin only"
    );
    assert!(html.contains("id=\"tenant-refusals\">0<"), "{html}");

    let special_console = app.console(&special_key.secret).await;
    let html = special_console.get("/console/rate-limits").await.text();
    assert!(html.contains("data-rule=\"special_tenant_rule\""), "{html}");
    assert!(html.contains("delay up to 250 ms"));
    assert!(
        !html.contains("data-rule=\"api_per_key\""),
        "its own rules replace the server's"
    );
    app.cleanup().await;
}
