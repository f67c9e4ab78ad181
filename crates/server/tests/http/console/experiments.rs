//! The Experiments pages: list and results, lifecycle actions, the sample-ratio warning, what a
//! read-only key may do, and tenant isolation.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{Backend, Scope, Scopes};

use crate::experiments::{exposure, spec};
use crate::TestApp;

/// Creates and starts `exp`, exposes `control` and `green` users, and converts 10 and 30 of
/// them.
async fn running_experiment(app: &TestApp, tenant_id: &str, key: &str, control: u32, green: u32) {
    let created = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(key),
            Some(spec("exp")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let started = app
        .call(
            Method::POST,
            "/api/v1/experiments/exp/start",
            Some(key),
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    for i in 0..control {
        app.state
            .exposures()
            .record(tenant_id, exposure(&format!("c{i}"), "control"));
    }
    for i in 0..green {
        app.state
            .exposures()
            .record(tenant_id, exposure(&format!("g{i}"), "green"));
    }
    app.state.exposures().flush().await;
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(json!({"user": format!("c{i}"), "metric": "checkout"}));
        events.push(json!({"user": format!("c{i}"), "metric": "revenue", "value": 5.0}));
    }
    for i in 0..30 {
        events.push(json!({"user": format!("g{i}"), "metric": "checkout"}));
        events.push(json!({"user": format!("g{i}"), "metric": "revenue", "value": 7.0}));
    }
    let stored = app
        .call(
            Method::POST,
            "/api/v1/experiments/exp/events",
            Some(key),
            Some(json!({ "events": events })),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
}

fn experiment_action_forms(html: &str) -> Vec<String> {
    html.match_indices("<form")
        .filter_map(|(i, _)| html[i..].find('>').map(|end| html[i..i + end].to_owned()))
        .filter(|tag| tag.contains("experiment-action"))
        .collect()
}

#[tokio::test]
async fn the_list_and_the_results_page_show_what_the_api_answers() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    running_experiment(&app, &tenant.id, &admin.secret, 100, 100).await;
    let console = app.console(&admin.secret).await;

    let list = console.get("/console/experiments").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let html = list.text();
    assert!(html.contains("href=\"/console/experiments/exp\""), "{html}");
    assert!(html.contains("href=\"/console/flags/production/checkout-button\""));
    assert!(html.contains("status-running"));
    assert!(
        html.contains("<td class=\"num\">200</td>"),
        "exposed users: {html}"
    );

    let api = app
        .get("/api/v1/experiments/exp/results", Some(&admin.secret))
        .await
        .json();
    let detail = console.get("/console/experiments/exp").await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text());
    let html = detail.text();
    let recommendation = api["recommendation"]["text"].as_str().unwrap();
    assert!(
        html.contains(recommendation),
        "{recommendation} not in {html}"
    );
    for expected in [
        "A green button raises checkout conversion",
        "id=\"exposures\"",
        "<th scope=\"row\">control</th><td class=\"num\">100</td>",
        // The primary metric's conversions and rates: 10 of 100, 30 of 100.
        "<td class=\"num\">10</td><td class=\"num\">10%</td>",
        "<td class=\"num\">30</td><td class=\"num\">30%</td>",
        "significantly better",
        "id=\"sequential\"",
        "Lift interval",
    ] {
        assert!(html.contains(expected), "the page lacks {expected}: {html}");
    }
    let lift = api["metrics"][0]["comparisons"][0]["relative_lift"]["estimate"]
        .as_f64()
        .unwrap();
    // 30% against 10%: the API's relative lift is 2, shown as 200%.
    assert!((lift - 2.0).abs() < 1e-9, "{lift}");
    assert!(html.contains("<td class=\"num\">200%</td>"), "{html}");
    assert!(!html.contains("id=\"srm-warning\""), "a balanced split");
    let chart = &html[html
        .find("<figure class=\"chart\" id=\"lift-chart\">")
        .expect("the lift chart")..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    assert!(chart.contains("<svg"), "{chart}");
    assert!(chart.contains("role=\"img\""), "{chart}");
    assert!(
        chart.contains("aria-label=\"Relative lift of checkout against control"),
        "{chart}"
    );
    assert!(chart.contains("<figcaption>"));
    let forms = experiment_action_forms(&html);
    assert_eq!(forms.len(), 3, "{forms:?}");
    assert!(forms[0].contains("action=\"/console/experiments/exp/pause\""));
    assert!(forms[1].contains("action=\"/console/experiments/exp/conclude\""));
    assert!(forms[2].contains("action=\"/console/experiments/exp/fail\""));
    // The seed's settings and the running window are shown, with the owned flag linked.
    for expected in [
        "<dt>Type</dt><dd>A/B test</dd>",
        "<dt>Traffic</dt><dd>100% of the audience is assigned</dd>",
        "at least 7 days before an automatic early completion, at most 30 days",
        "id=\"experiment-windows\"",
        "<td>running</td>",
        "id=\"experiment-flag\"",
    ] {
        assert!(html.contains(expected), "the page lacks {expected}: {html}");
    }
    assert_eq!(
        console.get("/console/experiments/nope").await.status,
        StatusCode::NOT_FOUND
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_sample_ratio_mismatch_is_warned_about() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    running_experiment(&app, &tenant.id, &admin.secret, 100, 300).await;
    let api = app
        .get("/api/v1/experiments/exp/results", Some(&admin.secret))
        .await
        .json();
    assert_eq!(api["srm"]["mismatch"], true, "{api}");
    let console = app.console(&admin.secret).await;
    let html = console.get("/console/experiments/exp").await.text();
    assert!(html.contains("id=\"srm-warning\""), "{html}");
    assert!(html.contains("check assignment"), "{html}");
    app.cleanup().await;
}

#[tokio::test]
async fn lifecycle_actions_follow_the_state() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let created = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(&admin.secret),
            Some(spec("exp")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let console = app.console(&admin.secret).await;
    let state = || async {
        app.get("/api/v1/experiments/exp", Some(&admin.secret))
            .await
            .json()["state"]
            .clone()
    };

    let draft = console.get("/console/experiments/exp").await.text();
    assert!(draft.contains("has not started"), "{draft}");
    let forms = experiment_action_forms(&draft);
    assert_eq!(forms.len(), 1);
    assert!(forms[0].contains("/exp/start"));

    for (action, expected) in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
    ] {
        let reply = console
            .post(&format!("/console/experiments/exp/{action}"), &[])
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
        assert_eq!(reply.headers["location"], "/console/experiments/exp");
        assert_eq!(state().await, expected, "after {action}");
    }
    let refused = console.post("/console/experiments/exp/start", &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "not a draft");
    assert!(
        refused.text().contains("cannot start"),
        "{}",
        refused.text()
    );
    let not_a_variant = console
        .post("/console/experiments/exp/conclude", &[("winner", "purple")])
        .await;
    assert_eq!(not_a_variant.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(state().await, "running");
    let unknown = console.post("/console/experiments/exp/explode", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let concluded = console
        .post("/console/experiments/exp/conclude", &[("winner", "green")])
        .await;
    assert_eq!(concluded.status, StatusCode::SEE_OTHER);
    let api = app
        .get("/api/v1/experiments/exp", Some(&admin.secret))
        .await
        .json();
    assert_eq!(
        (&api["state"], &api["winner"]),
        (&json!("completed"), &json!("green"))
    );
    let done = console.get("/console/experiments/exp").await.text();
    assert!(experiment_action_forms(&done).is_empty());
    assert!(done.contains("shipping green"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_read_only_key_sees_no_actions_and_is_refused_if_it_posts() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    running_experiment(&app, &tenant.id, &admin.secret, 100, 100).await;
    let reader = app
        .state
        .store()
        .issue_api_key(
            &tenant.id,
            [Scope::Read].into_iter().collect::<Scopes>(),
            None,
        )
        .await
        .unwrap();
    let console = app.console(&reader.secret).await;
    for path in ["/console/experiments", "/console/experiments/exp"] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let posts: Vec<_> = page
            .text()
            .match_indices("method=\"post\"")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(posts.len(), 1, "only sign-out posts on {path}");
        assert!(page.text().contains("action=\"/console/sign-out\""));
    }
    let pause = console.post("/console/experiments/exp/pause", &[]).await;
    assert_eq!(pause.status, StatusCode::FORBIDDEN);
    let api = app
        .get("/api/v1/experiments/exp", Some(&admin.secret))
        .await
        .json();
    assert_eq!(api["state"], "running");
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenant_cannot_see_or_change_an_experiment() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant_a, admin_a) = app.tenant("tenant-a", &[Scope::Admin]).await;
    let (_, admin_b) = app.tenant("tenant-b", &[Scope::Admin]).await;
    running_experiment(&app, &tenant_a.id, &admin_a.secret, 100, 100).await;
    let b = app.console(&admin_b.secret).await;
    let list = b.get("/console/experiments").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text().contains("/console/experiments/exp"));
    assert_eq!(
        b.get("/console/experiments/exp").await.status,
        StatusCode::NOT_FOUND
    );
    let pause = b.post("/console/experiments/exp/pause", &[]).await;
    assert_eq!(pause.status, StatusCode::NOT_FOUND);
    let api = app
        .get("/api/v1/experiments/exp", Some(&admin_a.secret))
        .await
        .json();
    assert_eq!(api["state"], "running");
    app.cleanup().await;
}

#[tokio::test]
async fn the_lists_read_environments_and_exposures_on_postgres_too() {
    let app = TestApp::new(Backend::Postgres).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    running_experiment(&app, &tenant.id, &admin.secret, 100, 300).await;
    // The experiment created `checkout-button` in production; the other environments get one.
    let flag = crate::flags::boolean_flag("checkout-button");
    for environment in ["staging", "Zeta"] {
        let created = app
            .call(
                Method::POST,
                &format!("/api/v1/flags?environment={environment}"),
                Some(&admin.secret),
                Some(flag.clone()),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    }
    let console = app.console(&admin.secret).await;

    let list = console.get("/console/experiments").await.text();
    assert!(list.contains("<td class=\"num\">400</td>"), "{list}");
    let flags = console
        .get("/console/flags?environment=staging")
        .await
        .text();
    let options: Vec<&str> = flags
        .match_indices("<option value=\"")
        .map(|(i, m)| {
            let rest = &flags[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(options, ["Zeta", "production", "staging"], "byte order");
    let detail = console.get("/console/experiments/exp").await.text();
    assert!(detail.contains("id=\"srm-warning\""), "{detail}");
    app.cleanup().await;
}
