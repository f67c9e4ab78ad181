//! The privacy page: the budget with its ledger, and the traffic shift for admin keys.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{Backend, Scope};

use crate::TestApp;

fn now_ms() -> i64 {
    server::jobs::now_ms()
}

/// The text between `id="{id}"` and the end of its element's table or list.
fn part<'a>(html: &'a str, id: &str, end: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_page_shows_the_budget_the_ledger_and_the_shift_to_admins_only() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_other, other_admin) = app.tenant("other", &[Scope::Admin]).await;
    let reader = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Read].into_iter().collect(), None)
        .await
        .unwrap();

    let console = app.console(&admin.secret).await;
    let before = console.get("/console/privacy").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    let html = before.text();
    assert!(
        part(&html, "privacy-ledger", "</table>").contains("Nothing released this period."),
        "{html}"
    );
    assert!(html.contains("id=\"traffic-shift-none\""), "{html}");

    // One query (ε 0.1 of the default 1.0) and a plan.
    let query = app
        .call(
            Method::POST,
            "/api/v1/feedback/analytics",
            Some(&admin.secret),
            Some(json!({"metric": "count", "from": now_ms() - 86_400_000, "to": now_ms() + 60_000, "epsilon": 0.1})),
        )
        .await;
    assert_eq!(query.status, 200, "{}", query.text());
    let plan = app
        .call(
            Method::PUT,
            "/api/v1/feedback/migration",
            Some(&admin.secret),
            Some(json!({"stages": [
                {"name": "canary", "new_percent": 5, "monitoring_seconds": 600},
                {"name": "half", "new_percent": 50, "monitoring_seconds": 600}
            ]})),
        )
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text());

    let html = console.get("/console/privacy").await.text();
    let budget = part(&html, "privacy-budget", "</dl>");
    assert!(budget.contains("id=\"epsilon-spent\">0.1<"), "{budget}");
    assert!(budget.contains("id=\"epsilon-remaining\">0.9<"), "{budget}");
    let ledger = part(&html, "privacy-ledger", "</table>");
    assert!(ledger.contains(&admin.info.id), "the actor: {ledger}");
    assert!(ledger.contains("count"), "the query: {ledger}");
    let stages = part(&html, "shift-stages", "</table>");
    assert!(
        stages.contains("canary") && stages.contains("half"),
        "{stages}"
    );
    assert!(html.contains("<meter id=\"epsilon-meter\""), "{html}");

    // A research report is listed (its ε spent from the same budget).
    let made = app
        .call(
            Method::POST,
            "/api/v1/feedback/reports",
            Some(&admin.secret),
            Some(json!({"from": "2026-01-01", "to": "2026-02-01", "epsilon": 0.2})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let html = console.get("/console/privacy").await.text();
    assert!(
        part(&html, "research-reports", "</table>").contains(&id),
        "{html}"
    );
    assert!(
        part(&html, "privacy-budget", "</dl>").contains("id=\"epsilon-spent\">0.3<"),
        "{html}"
    );

    // A read key sees the budget but not the plan (admin-only, as in the API).
    let read_html = app
        .console(&reader.secret)
        .await
        .get("/console/privacy")
        .await
        .text();
    assert!(read_html.contains("id=\"privacy-budget\""), "{read_html}");
    assert!(!read_html.contains("shift-heading"), "{read_html}");

    // Another tenant sees none of it.
    let other_html = app
        .console(&other_admin.secret)
        .await
        .get("/console/privacy")
        .await
        .text();
    assert!(
        part(&other_html, "privacy-ledger", "</table>").contains("Nothing released this period."),
        "{other_html}"
    );
    assert!(!other_html.contains(&admin.info.id), "{other_html}");
    assert!(
        other_html.contains("id=\"traffic-shift-none\""),
        "{other_html}"
    );
    app.cleanup().await;
}
