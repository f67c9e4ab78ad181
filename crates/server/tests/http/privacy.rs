//! Differentially private analytics and the privacy budget over HTTP: answers, the ledger, the
//! refusal naming what is left, scopes and validation. Tenant isolation of the ledger is in
//! `isolation.rs` too.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn window() -> (i64, i64) {
    (now_ms() - 86_400_000, now_ms() + 60_000)
}

async fn ingest(app: &TestApp, key: &str, n: usize) {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("fb-{i}"), "user_id": format!("u{}", i % 7), "type": "review",
                   "rating": i % 5 + 1, "region": "eu-west"})
        })
        .collect();
    let reply = app
        .call(
            Method::POST,
            "/api/v1/feedback?tier=realtime",
            Some(key),
            Some(json!(items)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn query(app: &TestApp, key: &str, body: Value) -> crate::Reply {
    app.call(
        Method::POST,
        "/api/v1/feedback/analytics",
        Some(key),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn answers_spend_the_budget_and_the_refusal_names_what_is_left() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("dp", &[Scope::Admin]).await;
    ingest(&app, &admin.secret, 30).await;
    let put = app
        .call(
            Method::PUT,
            "/api/v1/privacy/budget",
            Some(&admin.secret),
            Some(json!({"period": "week", "epsilon": 0.25})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["epsilon_total"], 0.25);
    assert_eq!(put.json()["configured"], true);

    let (from, to) = window();
    let first = query(
        &app,
        &admin.secret,
        json!({"metric": "count", "from": from, "to": to, "epsilon": 0.1}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let answer = first.json();
    assert_eq!(answer["groups"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["contribution_cap"], 5);
    assert_eq!(answer["parts"][0]["sensitivity"], 5);
    assert_eq!(answer["parts"][0]["scale"], 50.0);
    assert!(answer["groups"][0]["accuracy_95"].as_f64().unwrap() > 0.0);
    assert!(answer["groups"][0]["value"].as_f64().unwrap() >= 0.0);
    assert_eq!(answer["budget"]["epsilon_spent"], 0.1);

    let second = query(
        &app,
        &admin.secret,
        json!({"metric": "rating_histogram", "group_by": "region", "from": from, "to": to,
               "epsilon": 0.1}),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.text());
    // No declared regions: every item groups as `other`, five rating bins.
    let groups = second.json()["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 5);
    assert!(groups.iter().all(|g| g["key"] == "other"));

    let refused = query(
        &app,
        &admin.secret,
        json!({"metric": "rating_mean", "from": from, "to": to, "epsilon": 0.1}),
    )
    .await;
    let problem = refused.assert_problem(
        403,
        "privacy_budget_exhausted",
        "/api/v1/feedback/analytics",
    );
    let left = problem["remaining_epsilon"].as_f64().unwrap();
    assert!((left - 0.05).abs() < 1e-12, "{problem}");
    assert_eq!(problem["requested_epsilon"], 0.1);
    assert!(
        problem["period_end"].as_str().unwrap().ends_with('Z'),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("0.05"),
        "{problem}"
    );

    // The ledger holds the two answers, newest first, and sums to the spend.
    let budget = app
        .get("/api/v1/privacy/budget?limit=1", Some(&admin.secret))
        .await;
    assert_eq!(budget.status, 200, "{}", budget.text());
    let page = budget.json();
    assert_eq!(page["period"], "week");
    assert_eq!(page["epsilon_spent"], 0.2);
    assert!((page["epsilon_remaining"].as_f64().unwrap() - 0.05).abs() < 1e-12);
    assert_eq!(
        page["ledger"][0]["query"]["metric"], "rating_histogram",
        "{page}"
    );
    assert_eq!(page["ledger"][0]["actor"], admin.info.id.as_str());
    assert_eq!(page["ledger"][0]["kind"], "query");
    let next = page["next_before"].as_i64().expect("a second page");
    let rest = app
        .get(
            &format!("/api/v1/privacy/budget?before={next}"),
            Some(&admin.secret),
        )
        .await
        .json();
    assert_eq!(rest["ledger"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["ledger"][0]["query"]["metric"], "count");
    assert!(rest.get("next_before").is_none());
    let period_start = privacy::budget::Period::Week.start_ms(now_ms());
    let (sum, rows) = app
        .fixture
        .store
        .privacy_ledger_totals(&tenant.id, period_start)
        .await
        .unwrap();
    assert_eq!((sum.epsilon_nanos, rows), (200_000_000, 2));

    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.contains("privacy_releases_total{metric=\"rating_mean\",outcome=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("privacy_releases_total{metric=\"count\",outcome=\"answered\"} 1"));
}

#[tokio::test]
async fn the_default_budget_and_grouping_follow_the_tenant_config() {
    let app = TestApp::new(Backend::Postgres).await;
    let (_, admin) = app.tenant("dp-config", &[Scope::Admin]).await;
    let config = "mode = \"research\"\n[privacy]\ncontribution_cap = 2\nregions = [\"eu-west\", \"us-east\"]\n";
    let put = app
        .call(
            Method::PUT,
            "/api/v1/feedback/config",
            Some(&admin.secret),
            Some(json!({"config": config})),
        )
        .await;
    assert!(put.status.is_success(), "{}", put.text());
    ingest(&app, &admin.secret, 20).await;
    let (from, to) = window();
    let reply = query(
        &app,
        &admin.secret,
        json!({"metric": "sentiment_mean", "group_by": "region", "from": server::rfc3339_ms(from),
               "to": to, "mechanism": "discrete_gaussian"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    // Research mode's ε 0.1, the seed's δ 1e-6, split between the sum and the count.
    assert_eq!(answer["epsilon"], 0.1);
    assert_eq!(answer["delta"], 1e-6);
    assert_eq!(answer["contribution_cap"], 2);
    assert_eq!(answer["parts"].as_array().unwrap().len(), 2);
    let keys: Vec<&str> = answer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["eu-west", "us-east", "other"]);
    // The default budget: ε 1.0 and δ 1e-5 a month.
    let budget = app
        .get("/api/v1/privacy/budget", Some(&admin.secret))
        .await
        .json();
    assert_eq!(budget["configured"], false);
    assert_eq!(budget["period"], "month");
    assert_eq!(budget["epsilon_total"], 1.0);
    assert_eq!(budget["delta_total"], 1e-5);
    assert_eq!(budget["delta_spent"], 1e-6);
}

#[tokio::test]
async fn bad_queries_name_their_fields_and_scopes_are_enforced() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("dp-bad", &[Scope::Admin]).await;
    let read = app
        .fixture
        .store
        .issue_api_key(&tenant.id, store::Scopes::from_iter([Scope::Read]), None)
        .await
        .unwrap();
    let write = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            store::Scopes::from_iter([Scope::Read, Scope::Write]),
            None,
        )
        .await
        .unwrap();
    let (from, to) = window();
    let body = json!({"metric": "count", "from": from, "to": to});
    // Spending budget needs write; reading it, read; setting it, admin.
    query(&app, &read.secret, body.clone())
        .await
        .assert_problem(403, "forbidden", "/api/v1/feedback/analytics");
    assert_eq!(query(&app, &write.secret, body).await.status, 200);
    assert_eq!(
        app.get("/api/v1/privacy/budget", Some(&read.secret))
            .await
            .status,
        200
    );
    app.call(
        Method::PUT,
        "/api/v1/privacy/budget",
        Some(&write.secret),
        Some(json!({"period": "month", "epsilon": 9.0})),
    )
    .await
    .assert_problem(403, "forbidden", "/api/v1/privacy/budget");

    let bad = query(
        &app,
        &admin.secret,
        json!({"metric": "median", "from": "yesterday", "to": to, "epsilon": 0}),
    )
    .await;
    let problem = bad.assert_problem(422, "unprocessable", "/api/v1/feedback/analytics");
    assert_eq!(problem["field"], "metric");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metric", "from", "epsilon"]);
    let too_many_days = query(
        &app,
        &admin.secret,
        json!({"metric": "count", "group_by": "day", "from": 0, "to": 400 * 86_400_000_i64}),
    )
    .await;
    assert_eq!(
        too_many_days.assert_problem(422, "unprocessable", "/api/v1/feedback/analytics")["field"],
        "group_by"
    );
    for (body, field) in [
        (json!({"period": "decade", "epsilon": 1.0}), "period"),
        (json!({"period": "day", "epsilon": -1.0}), "epsilon"),
        (
            json!({"period": "day", "epsilon": 1.0, "delta": 0.5}),
            "delta",
        ),
    ] {
        let reply = app
            .call(
                Method::PUT,
                "/api/v1/privacy/budget",
                Some(&admin.secret),
                Some(body),
            )
            .await;
        assert_eq!(
            reply.assert_problem(400, "invalid_field", "/api/v1/privacy/budget")["field"],
            field
        );
    }
    // Nothing refused was recorded: one answered query in the ledger.
    let page = app
        .get("/api/v1/privacy/budget", Some(&admin.secret))
        .await
        .json();
    assert_eq!(page["ledger"].as_array().unwrap().len(), 1, "{page}");
}
