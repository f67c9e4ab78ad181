//! The guarded-rollout section of a flag's page: plan, current and last safe step, history
//! with reasons, the admin buttons calling the same use case as the API, what a read-only key
//! sees, and tenant isolation.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{Backend, Scope, Scopes};

use crate::TestApp;

const PAGE: &str = "/console/flags/production/slow-path";

#[tokio::test]
async fn the_flag_page_shows_the_ramp_and_admins_can_roll_it_back() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("ramp", &[Scope::Admin, Scope::Read]).await;
    let key = admin.secret.as_str();
    let flag = json!({
        "key": "slow-path", "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true, "weight_bp": 10000}, {"key": "off", "value": false}],
        "default_variant": "off", "off_variant": "off", "rollout_bp": 0
    });
    let created = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(flag))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let console = app.console(key).await;

    let page = console.get(PAGE).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(
        page.text().contains("id=\"guarded-rollout-none\""),
        "{}",
        page.text()
    );

    let plan = json!({
        "steps": [250, 2500, 10000], "mode": "manual", "evaluation_period_seconds": 60,
        "guardrails": [{"kind": "error_rate", "max": 0.02}], "on_breach": "rollback"
    });
    let put = app
        .call(
            Method::PUT,
            "/api/v1/flags/slow-path/rollout",
            Some(key),
            Some(plan),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let advanced = console.post(&format!("{PAGE}/rollout/advance"), &[]).await;
    assert_eq!(
        advanced.status,
        StatusCode::SEE_OTHER,
        "{}",
        advanced.text()
    );
    assert_eq!(advanced.headers["location"], PAGE);

    let html = console.get(PAGE).await.text();
    for expected in [
        "id=\"rollout-state\"",
        "status-active",
        "25%",
        "(current)",
        "&#34;error_rate&#34;",
        "action=\"/console/flags/production/slow-path/rollout/advance\"",
        "action=\"/console/flags/production/slow-path/rollout/rollback\"",
        "action=\"/console/flags/production/slow-path/rollout/abort\"",
    ] {
        assert!(html.contains(expected), "missing {expected}: {html}");
    }

    let rolled = console.post(&format!("{PAGE}/rollout/rollback"), &[]).await;
    assert_eq!(rolled.status, StatusCode::SEE_OTHER, "{}", rolled.text());
    let html = console.get(PAGE).await.text();
    assert!(html.contains("status-rolled_back"), "{html}");
    assert!(html.contains("Resume the ramp"), "{html}");
    assert!(
        !html.contains("/rollout/rollback\""),
        "no rollback of a stopped ramp: {html}"
    );
    let api = app
        .get("/api/v1/flags/slow-path/rollout", Some(key))
        .await
        .json();
    assert_eq!(api["status"], "rolled_back");
    assert_eq!(api["rollout_bp"], 250, "back to the last safe step");
    let last = api["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["event"].as_str(), last["detail"]["reason"].as_str()),
        (Some("rollback"), Some("manual"))
    );
    // A second rollback is a conflict, shown as an error page.
    let again = console.post(&format!("{PAGE}/rollout/rollback"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    // A read-only key sees the section, no buttons, and cannot act.
    let read = app
        .state
        .store()
        .issue_api_key(
            &tenant.id,
            [Scope::Read].into_iter().collect::<Scopes>(),
            None,
        )
        .await
        .unwrap()
        .secret;
    let reader = app.console(&read).await;
    let html = reader.get(PAGE).await.text();
    assert!(html.contains("id=\"rollout-state\""), "{html}");
    assert!(!html.contains("/rollout/advance"), "{html}");
    let refused = reader.post(&format!("{PAGE}/rollout/abort"), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());

    // Another tenant's admin reaches nothing.
    let (_, other) = app.tenant("other", &[Scope::Admin, Scope::Read]).await;
    let stranger = app.console(&other.secret).await;
    assert_eq!(stranger.get(PAGE).await.status, StatusCode::NOT_FOUND);
    let refused = stranger.post(&format!("{PAGE}/rollout/abort"), &[]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text());
    let api = app
        .get("/api/v1/flags/slow-path/rollout", Some(key))
        .await
        .json();
    assert_eq!(api["status"], "rolled_back", "untouched by the stranger");
    app.cleanup().await;
}
