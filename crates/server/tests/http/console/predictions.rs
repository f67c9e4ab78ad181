//! The predictions page and the prediction on a Weber user's page: empty before a fit, the
//! model card, distributions and ranked tables after one, tenant isolation, and the refit
//! button (admin and CSRF).

use axum::http::StatusCode;
use lifetime::simulate::{simulate_customers, SimulationParams};
use rand::SeedableRng;
use server::predictions::PredictionService;
use store::{Backend, NewTransaction, Scope};

use crate::TestApp;

const DAY_MS: i64 = 86_400_000;

/// A year of simulated purchases for 300 customers, all before today, stored for `tenant`
/// (`cust-000001`, ...), then one refit. Returns a customer id that has a prediction.
async fn fitted(app: &TestApp, tenant: &str) -> String {
    let today = (server::jobs::now_ms() / DAY_MS) as i32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let customers = simulate_customers(
        &mut rng,
        &SimulationParams::default(),
        300,
        today - 366,
        365,
    )
    .unwrap();
    let purchases: Vec<NewTransaction> = customers
        .iter()
        .flat_map(|c| {
            c.purchases
                .iter()
                .enumerate()
                .map(move |(n, p)| NewTransaction {
                    order_id: format!("{}-{n}", c.customer_id),
                    customer_id: c.customer_id.clone(),
                    occurred_at_ms: i64::from(p.day) * DAY_MS + 12 * 3_600_000,
                    amount: p.amount,
                    currency: None,
                })
        })
        .collect();
    app.fixture
        .store
        .insert_transactions(tenant, &purchases, server::jobs::now_ms())
        .await
        .unwrap();
    let summary = PredictionService::refit(&app.state, tenant).await.unwrap();
    assert!(summary.fitted, "{summary:?}");
    assert_eq!(summary.model_version.as_deref(), Some("bgnbd-gg-v1"));
    customers[0].customer_id.clone()
}

/// The rows of a ranked table: the user ids it links to, in order.
fn linked_users(html: &str, table_id: &str) -> Vec<String> {
    let Some(start) = html.find(&format!("id=\"{table_id}\"")) else {
        return Vec::new();
    };
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table
        .split("href=\"/console/weber/users/")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

#[tokio::test]
async fn the_page_is_empty_before_a_fit_and_full_after_one() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&admin.secret).await;

    let empty = console.get("/console/predictions").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text());
    let html = empty.text();
    assert!(html.contains("id=\"no-model\""), "{html}");
    assert!(html.contains("id=\"no-predictions\""), "{html}");
    assert!(!html.contains("id=\"model-card\""), "{html}");
    assert!(linked_users(&html, "at-risk-table").is_empty());
    // The navigation has the section.
    assert!(html.contains("href=\"/console/predictions\""), "{html}");

    let customer = fitted(&app, &tenant.id).await;
    let page = console.get("/console/predictions").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("id=\"model-card\""), "{html}");
    assert!(html.contains("bgnbd-gg-v1"), "{html}");
    assert!(html.contains("id=\"bgnbd-params\""), "{html}");
    assert!(html.contains("id=\"gamma-gamma-params\""), "{html}");
    assert!(html.contains("id=\"tracking-chart\""), "{html}");
    assert!(html.contains("<svg"), "{html}");
    assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");

    // The ranked tables hold 20 customers each, in the service's order, and page on.
    let by_risk = PredictionService::ranked(
        &app.state,
        &tenant.id,
        store::MetricsOrder::ChurnRiskDesc,
        0,
        40,
    )
    .await
    .unwrap();
    let ids: Vec<String> = by_risk.iter().map(|r| r.user_id.clone()).collect();
    assert_eq!(linked_users(&html, "at-risk-table"), ids[..20]);
    let second = console.get("/console/predictions?risk_page=2").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(linked_users(&second.text(), "at-risk-table"), ids[20..40]);
    assert!(second.text().contains("rel=\"prev\""));
    let by_clv =
        PredictionService::ranked(&app.state, &tenant.id, store::MetricsOrder::ClvDesc, 0, 20)
            .await
            .unwrap();
    assert_eq!(
        linked_users(&html, "top-clv-table"),
        by_clv.iter().map(|r| r.user_id.clone()).collect::<Vec<_>>()
    );
    let bad = console.get("/console/predictions?clv_page=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().contains("clv_page"), "{}", bad.text());

    // The risk levels in the table add up to the customers scored.
    let spread = PredictionService::distribution(&app.state, &tenant.id)
        .await
        .unwrap();
    assert_eq!(
        spread.by_risk_level.iter().map(|(_, n)| n).sum::<i64>(),
        spread.customers
    );
    assert_eq!(
        spread.clv_buckets.iter().map(|b| b.customers).sum::<i64>(),
        spread.customers
    );
    for (level, n) in &spread.by_risk_level {
        assert!(
            html.contains(&format!("risk {level}</th><td class=\"num\">{n}</td>")),
            "{level} {n}: {html}"
        );
    }

    // A customer without reviews has a user page with the prediction alone.
    let user = console
        .get(&format!("/console/weber/users/{customer}"))
        .await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text());
    let html = user.text();
    assert!(html.contains("id=\"no-profile\""), "{html}");
    assert!(html.contains("id=\"prediction\""), "{html}");
    assert!(html.contains("data-field=\"predicted_clv\""), "{html}");
    assert!(html.contains("id=\"risk-factors\""), "{html}");
    // Neither a profile nor a prediction: not found.
    let nobody = console.get("/console/weber/users/nobody").await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenant_sees_none_of_it() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (acme, _) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, other_key) = app.tenant("other", &[Scope::Read]).await;
    let customer = fitted(&app, &acme.id).await;
    let console = app.console(&other_key.secret).await;
    let page = console.get("/console/predictions").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("id=\"no-model\""), "{html}");
    assert!(!html.contains("bgnbd-gg-v1"), "{html}");
    assert!(!html.contains("cust-0"), "{html}");
    let user = console
        .get(&format!("/console/weber/users/{customer}"))
        .await;
    assert_eq!(user.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refitting_needs_an_admin_key_and_the_csrf_token() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let reader = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Read].into_iter().collect(), None)
        .await
        .unwrap();

    // A read-only key sees no button, and a post made anyway is refused.
    let read_console = app.console(&reader.secret).await;
    let page = read_console.get("/console/predictions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text().contains("id=\"refit-now\""), "{}", page.text());
    let refused = read_console.post("/console/predictions/refit", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let console = app.console(&admin.secret).await;
    let page = console.get("/console/predictions").await;
    assert!(page.text().contains("id=\"refit-now\""), "{}", page.text());
    // Without the token, or from another site: refused, nothing queued.
    let no_token = console
        .post_raw("/console/predictions/refit", "", false)
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let csrf = format!("csrf={}", console.csrf);
    let cross = console
        .post_raw("/console/predictions/refit", &csrf, true)
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let queued = |jobs: &[store::JobRecord]| {
        jobs.iter()
            .filter(|j| j.handler == "weber.refit_predictions")
            .count()
    };
    let jobs = app
        .fixture
        .store
        .list_jobs(&tenant.id, &store::JobFilter::default())
        .await
        .unwrap();
    assert_eq!(queued(&jobs), 0);

    let done = console.post("/console/predictions/refit", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    let location = done.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/console/predictions?refit_job="),
        "{location}"
    );
    let jobs = app
        .fixture
        .store
        .list_jobs(&tenant.id, &store::JobFilter::default())
        .await
        .unwrap();
    assert_eq!(queued(&jobs), 1);
    let shown = console.get(&location).await;
    assert!(
        shown.text().contains("id=\"refit-queued\""),
        "{}",
        shown.text()
    );
}
