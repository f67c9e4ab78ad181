//! Signed research reports (issue 20), both backends: a report made over real feedback is
//! signed with the audit key and verifies, any one-byte change fails, it is fetched again byte
//! for byte without spending, its ε is spent once in the ledger (kind `report`), and a report
//! the budget cannot cover is refused with nothing stored.

use axum::body::Body;
use axum::http::{Method, Request};
use feedback::report::{verify, ReportError};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

const REPORTS: &str = "/api/v1/feedback/reports";
const DAY_MS: i64 = 86_400_000;

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(req).await
}

fn day(ms: i64) -> String {
    server::rfc3339_ms(ms)[..10].to_owned()
}

async fn a_report_is_signed_verifies_and_spends_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app
        .tenant("lab", &[Scope::Read, Scope::Write, Scope::Admin])
        .await;
    let key = key.secret.as_str();
    let now = server::jobs::now_ms();
    let items: Vec<Value> = (0..30)
        .map(|i| {
            json!({
                "id": format!("f{i}"), "user_id": format!("u{}", i % 12), "type": "review",
                "rating": 1 + i % 5, "text": format!("Item {i}: I love it, thanks"),
                "tier": "realtime", "occurred_at_ms": now - (i as i64 % 3) * DAY_MS - 1000,
            })
        })
        .collect();
    let reply = post(&app, key, "/api/v1/feedback", Value::Array(items)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let (from, to) = (day(now - 5 * DAY_MS), day(now + DAY_MS));
    let created = post(&app, key, REPORTS, json!({"from": from, "to": to})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let summary = created.json();
    assert_eq!(summary["epsilon"], 0.5, "{summary}");
    let href = summary["href"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["location"], href.as_str());

    let fetched = app.get(&href, Some(key)).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    let bytes = fetched.text().into_bytes();
    let audit_key = app.state.custody().verifying_key();
    let verified = verify(&bytes, Some(&audit_key)).unwrap_or_else(|e| panic!("{e}"));
    let report = &verified.report;
    assert_eq!(report.tenant_id, tenant.id);
    assert_eq!(
        (report.period.from.as_str(), report.period.to.as_str()),
        (from.as_str(), to.as_str())
    );
    assert_eq!(report.statistics.len(), 5);
    assert_eq!(report.alignment[0].metric, "alignment_mean");
    assert_eq!(report.ethics[0].metric, "violation_count");
    assert_eq!(report.privacy.epsilon_nanos, 500_000_000);
    let shares: u64 = report
        .statistics
        .iter()
        .chain(&report.alignment)
        .chain(&report.ethics)
        .map(|s| s.epsilon_nanos)
        .sum();
    assert_eq!(
        shares, 500_000_000,
        "the releases' ε add up to the report's"
    );
    assert_eq!(
        summary["ledger_entry_id"],
        report.privacy.ledger_entry_id.as_str()
    );
    assert_eq!(summary["key_id"], verified.key_id.as_str());
    // Any one-byte change fails verification.
    for position in (0..bytes.len()).step_by(7) {
        let mut altered = bytes.clone();
        altered[position] ^= 0x01;
        assert!(
            verify(&altered, Some(&audit_key)).is_err(),
            "byte {position}"
        );
    }
    // Another key is refused.
    let other = audit::SigningKey::from_bytes(&[3; 32]).verifying_key();
    assert!(matches!(
        verify(&bytes, Some(&other)),
        Err(ReportError::WrongKey { .. })
    ));

    // Spent once: fetching and listing again spend nothing.
    let ledger = server::feedback::private_analytics::PrivacyLedger::new(app.fixture.store.clone());
    let spent = ledger
        .state(&tenant.id, now)
        .await
        .unwrap()
        .spent
        .epsilon
        .nanos();
    assert_eq!(spent, 500_000_000);
    let again = app.get(&href, Some(key)).await;
    assert_eq!(again.text().into_bytes(), bytes, "served byte for byte");
    let list = app.get(REPORTS, Some(key)).await.json();
    assert_eq!(list["reports"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        ledger
            .state(&tenant.id, now)
            .await
            .unwrap()
            .spent
            .epsilon
            .nanos(),
        spent
    );

    // More than the budget left (default ε 1.0 a month): refused, nothing stored or spent.
    let refused = post(
        &app,
        key,
        REPORTS,
        json!({"from": from, "to": to, "epsilon": 0.6}),
    )
    .await;
    refused.assert_problem(403, "privacy_budget_exhausted", REPORTS);
    assert_eq!(
        ledger
            .state(&tenant.id, now)
            .await
            .unwrap()
            .spent
            .epsilon
            .nanos(),
        spent
    );
    let list = app.get(REPORTS, Some(key)).await.json();
    assert_eq!(list["reports"].as_array().unwrap().len(), 1, "{list}");

    // Bad fields are named.
    for (body, field) in [
        (json!({"from": "2026-13-01", "to": to}), "from"),
        (json!({"from": to, "to": from}), "to"),
        (json!({"from": from, "to": to, "epsilon": 0.0}), "epsilon"),
    ] {
        let bad = post(&app, key, REPORTS, body).await;
        assert_eq!(
            bad.assert_problem(422, "unprocessable", REPORTS)["field"],
            field
        );
    }
    // Only an admin makes one; a reader reads.
    let reader = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read].into_iter().collect::<store::Scopes>(),
            None,
        )
        .await
        .unwrap();
    let forbidden = post(
        &app,
        &reader.secret,
        REPORTS,
        json!({"from": from, "to": to}),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(app.get(&href, Some(&reader.secret)).await.status, 200);
    app.cleanup().await;
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Sqlite).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(store::Backend::Postgres).await; })* }
    };
}

on_both!(a_report_is_signed_verifies_and_spends_once);
