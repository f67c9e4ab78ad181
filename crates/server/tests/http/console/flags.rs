//! The Flags pages: list and detail, the kill switch seen through the evaluation tester, edits
//! validated like the API's, the audit diff, what a read-only key may do, and tenant isolation.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use store::{Backend, Scope, Scopes};

use crate::flags::boolean_flag;
use crate::{Reply, TestApp};

/// A targeting flag with a rule, a split-free default and an exposure setting.
fn checkout_flag() -> Value {
    json!({
        "key": "new-checkout", "type": "targeting", "status": "active",
        "description": "The one-page checkout",
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "off", "off_variant": "off",
        "rules": [{"id": "us-users", "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]}, "variant": "on"}],
        "track_exposure": true
    })
}

async fn create_flag(app: &TestApp, key: &str, environment: &str, flag: Value) {
    let reply = app
        .call(
            Method::POST,
            &format!("/api/v1/flags?environment={environment}"),
            Some(key),
            Some(flag),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

/// A second key of the same tenant with `scopes`.
async fn another_key(app: &TestApp, tenant_id: &str, scopes: &[Scope]) -> String {
    app.state
        .store()
        .issue_api_key(tenant_id, scopes.iter().copied().collect::<Scopes>(), None)
        .await
        .unwrap()
        .secret
}

/// The value of `attribute` on the element with `id` (the first occurrence).
fn attribute_of(html: &str, id: &str, attribute: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let tag_end = start + html[start..].find('>')?;
    let tag = &html[start..tag_end];
    let marker = format!("{attribute}=\"");
    let from = tag.find(&marker)? + marker.len();
    let to = from + tag[from..].find('"')?;
    Some(tag[from..to].to_owned())
}

/// The `<form …>` start tags that post, other than sign-out.
fn post_forms(html: &str) -> Vec<String> {
    html.match_indices("<form")
        .filter_map(|(i, _)| html[i..].find('>').map(|end| html[i..i + end].to_owned()))
        .filter(|tag| tag.contains("method=\"post\"") && !tag.contains("/console/sign-out"))
        .collect()
}

fn assert_tester_says(reply: &Reply, value: &str, variant: &str, reason: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    assert_eq!(
        attribute_of(&html, "evaluation-result", "data-value").as_deref(),
        Some(value),
        "{html}"
    );
    assert_eq!(
        attribute_of(&html, "evaluation-result", "data-variant").as_deref(),
        Some(variant)
    );
    assert_eq!(
        attribute_of(&html, "evaluation-result", "data-reason").as_deref(),
        Some(reason)
    );
}

#[tokio::test]
async fn the_list_and_a_flag_page_show_rules_variants_and_the_controls() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    create_flag(&app, &admin.secret, "production", boolean_flag("dark-mode")).await;
    create_flag(&app, &admin.secret, "staging", boolean_flag("staging-only")).await;
    let console = app.console(&admin.secret).await;

    let list = console.get("/console/flags?environment=production").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let html = list.text();
    assert!(html.contains("href=\"/console/flags/production/new-checkout\""));
    assert!(html.contains("href=\"/console/flags/production/dark-mode\""));
    assert!(!html.contains("staging-only"), "another environment's flag");
    assert!(
        html.contains("<option value=\"staging\">staging</option>"),
        "the picker offers the tenant's environments: {html}"
    );
    assert!(html.contains("href=\"/console/flags\" aria-current=\"page\""));

    let staging = console.get("/console/flags?environment=staging").await;
    assert!(staging.text().contains("staging-only"));
    let bad = console.get("/console/flags?environment=no%20spaces").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let detail = console.get("/console/flags/production/new-checkout").await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text());
    let html = detail.text();
    for expected in [
        "The one-page checkout",
        "us-users",
        "country in [&#34;US&#34;,&#34;CA&#34;]",
        "<form id=\"kill-switch\"",
        "Turn off (kill switch)",
        "<form id=\"evaluation-tester\"",
        "hx-post=\"/console/flags/production/new-checkout/evaluate\"",
        "hx-target=\"#evaluation-result\"",
        "name=\"context\"",
        "id=\"evaluation-result\"",
        "records no exposure",
        "<details>",
        "id=\"definition-json\"",
        "href=\"/console/flags/production/new-checkout/edit\"",
        "create (version 1)",
    ] {
        assert!(html.contains(expected), "the page lacks {expected}: {html}");
    }
    let missing = console.get("/console/flags/production/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

#[tokio::test]
async fn the_kill_switch_changes_what_the_tester_answers_and_the_tester_records_no_exposure() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    let console = app.console(&admin.secret).await;
    let evaluate = "/console/flags/production/new-checkout/evaluate";
    let us_user = r#"{"targetingKey":"user-1","country":"US"}"#;

    let before = console.post_htmx(evaluate, &[("context", us_user)]).await;
    assert_tester_says(&before, "true", "on", "TARGETING_MATCH");
    assert!(before.text().contains("us-users"), "the matched rule");
    assert!(
        !before.text().contains("<h1>"),
        "htmx gets the fragment only"
    );

    let killed = console
        .post(
            "/console/flags/production/new-checkout/kill-switch",
            &[("turn", "off"), ("version", "1")],
        )
        .await;
    assert_eq!(killed.status, StatusCode::SEE_OTHER, "{}", killed.text());
    assert_eq!(
        killed.headers["location"],
        "/console/flags/production/new-checkout"
    );
    let after = console.post_htmx(evaluate, &[("context", us_user)]).await;
    assert_tester_says(&after, "false", "off", "DISABLED");
    assert!(after.text().contains("kill_switch"), "{}", after.text());

    // A plain form post answers the whole page, with the result and the switch's new state.
    let page = console.post(evaluate, &[("context", us_user)]).await;
    assert_tester_says(&page, "false", "off", "DISABLED");
    assert!(page.text().contains("<h1>Flag new-checkout</h1>"));
    assert!(page.text().contains("Turn back on"));
    assert!(page.text().contains("kill (version 2)"), "the audit entry");

    let revived = console
        .post(
            "/console/flags/production/new-checkout/kill-switch",
            &[("turn", "on"), ("version", "2")],
        )
        .await;
    assert_eq!(revived.status, StatusCode::SEE_OTHER, "{}", revived.text());
    let again = console.post_htmx(evaluate, &[("context", us_user)]).await;
    assert_tester_says(&again, "true", "on", "TARGETING_MATCH");

    // A stale version is a conflict, not a silent overwrite.
    let stale = console
        .post(
            "/console/flags/production/new-checkout/kill-switch",
            &[("turn", "off"), ("version", "1")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);

    let bad = console
        .post_htmx(evaluate, &[("context", "{not json")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().contains("context"), "{}", bad.text());
    let bad_page = console.post(evaluate, &[("context", "[1, 2]")]).await;
    assert_eq!(bad_page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_page.text().contains("aria-invalid=\"true\""));

    app.state.exposures().flush().await;
    let exposure = app
        .state
        .store()
        .exposure(&tenant.id, "production", "new-checkout", "user-1")
        .await
        .unwrap();
    assert_eq!(exposure, None, "the console tester records no exposure");
    app.cleanup().await;
}

#[tokio::test]
async fn a_read_only_key_sees_no_write_controls_and_is_refused_if_it_posts() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    let reader = another_key(&app, &tenant.id, &[Scope::Read]).await;
    let console = app.console(&reader).await;

    for path in [
        "/console/flags?environment=production",
        "/console/flags/production/new-checkout",
    ] {
        let page = console.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let forms = post_forms(&page.text());
        // The evaluation tester is a read (it evaluates, as OFREP does with a read key).
        assert!(
            forms.iter().all(|f| f.contains("id=\"evaluation-tester\"")),
            "{path} shows a write form: {forms:?}"
        );
        assert!(!page.text().contains("kill-switch"), "{path}");
        assert!(!page.text().contains("/edit\""), "{path}");
    }
    let tester = console
        .post_htmx(
            "/console/flags/production/new-checkout/evaluate",
            &[("context", r#"{"targetingKey":"u"}"#)],
        )
        .await;
    assert_eq!(tester.status, StatusCode::OK, "a read key may test");

    let kill = console
        .post(
            "/console/flags/production/new-checkout/kill-switch",
            &[("turn", "off"), ("version", "1")],
        )
        .await;
    assert_eq!(kill.status, StatusCode::FORBIDDEN);
    let edit = console
        .post(
            "/console/flags/production/new-checkout/edit",
            &[
                ("definition", &checkout_flag().to_string()),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(edit.status, StatusCode::FORBIDDEN);
    let delete = console
        .post(
            "/console/flags/production/new-checkout/delete",
            &[("version", "1")],
        )
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert_eq!(
        console
            .get("/console/flags/production/new-checkout/edit")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let stored = app
        .get("/api/v1/flags/new-checkout", Some(&admin.secret))
        .await;
    assert_eq!(stored.json()["version"], 1, "nothing changed");
    assert_eq!(stored.json()["definition"].get("kill_switch"), None);
    app.cleanup().await;
}

#[tokio::test]
async fn an_invalid_edit_is_shown_inline_and_stores_nothing() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    let console = app.console(&admin.secret).await;
    let path = "/console/flags/production/new-checkout/edit";

    let form = console.get(path).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text().contains("<form id=\"flag-edit\""));
    assert!(form.text().contains("name=\"version\" value=\"1\""));

    let mut unknown_variant = checkout_flag();
    unknown_variant["default_variant"] = json!("purple");
    let mut wrong_type = checkout_flag();
    wrong_type["variants"] = json!("many");
    for (definition, expected) in [
        (unknown_variant.to_string(), "purple"),
        (wrong_type.to_string(), "variants"),
        ("{\"key\": ".to_owned(), "not valid JSON"),
    ] {
        let reply = console
            .post(path, &[("definition", &definition), ("version", "1")])
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text()
        );
        let html = reply.text();
        assert!(html.contains("id=\"definition-error\""), "{html}");
        assert!(html.contains(expected), "{expected}: {html}");
        assert!(html.contains("aria-invalid=\"true\""));
        assert!(
            html.contains("aria-describedby=\"definition-hint definition-error\""),
            "{html}"
        );
    }
    let stored = app
        .get("/api/v1/flags/new-checkout", Some(&admin.secret))
        .await;
    assert_eq!(stored.json()["version"], 1, "nothing was stored");
    assert_eq!(stored.json()["definition"]["default_variant"], "off");

    let mut better = checkout_flag();
    better["description"] = json!("Edited in the console");
    let saved = console
        .post(
            path,
            &[("definition", &better.to_string()), ("version", "1")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text());
    let stored = app
        .get("/api/v1/flags/new-checkout", Some(&admin.secret))
        .await;
    assert_eq!(stored.json()["version"], 2);
    assert_eq!(
        stored.json()["definition"]["description"],
        "Edited in the console"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn two_editors_cannot_overwrite_each_other_silently() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    let console = app.console(&admin.secret).await;
    // The form is opened at version 1; meanwhile someone changes the flag over the API.
    let form = console
        .get("/console/flags/production/new-checkout/edit")
        .await;
    assert!(form.text().contains("name=\"version\" value=\"1\""));
    let mut theirs = checkout_flag();
    theirs["description"] = json!("Their change");
    let put = app
        .call(
            Method::PUT,
            "/api/v1/flags/new-checkout",
            Some(&admin.secret),
            Some(theirs),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());

    let mut mine = checkout_flag();
    mine["description"] = json!("My change");
    let reply = console
        .post(
            "/console/flags/production/new-checkout/edit",
            &[("definition", &mine.to_string()), ("version", "1")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    let html = reply.text();
    assert!(html.contains("id=\"edit-conflict\""), "{html}");
    assert!(html.contains("now at version 2"), "{html}");
    assert!(html.contains("My change"), "the typed definition is kept");
    let stored = app
        .get("/api/v1/flags/new-checkout", Some(&admin.secret))
        .await;
    assert_eq!(stored.json()["definition"]["description"], "Their change");
    app.cleanup().await;
}

#[tokio::test]
async fn the_history_shows_a_change_made_through_the_api_field_by_field() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", checkout_flag()).await;
    let mut changed = checkout_flag();
    changed["default_variant"] = json!("on");
    let put = app
        .call(
            Method::PUT,
            "/api/v1/flags/new-checkout",
            Some(&admin.secret),
            Some(changed),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let key_id = put.json()["updated_by"].as_str().unwrap().to_owned();

    let console = app.console(&admin.secret).await;
    let html = console
        .get("/console/flags/production/new-checkout")
        .await
        .text();
    let history = &html[html.find("id=\"audit\"").expect("the history table")..];
    assert!(history.contains("update (version 2)"), "{history}");
    assert!(
        history.contains("<code>/default_variant</code>"),
        "{history}"
    );
    assert!(
        history.contains(
            "class=\"diff-old\"><span class=\"sr-only\">was </span><code>&#34;off&#34;</code>"
        ),
        "{history}"
    );
    assert!(
        history.contains(
            "class=\"diff-new\"><span class=\"sr-only\">now </span><code>&#34;on&#34;</code>"
        ),
        "{history}"
    );
    assert!(history.contains(&key_id), "who made it");
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenant_cannot_see_or_change_a_flag() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin_a) = app.tenant("tenant-a", &[Scope::Admin]).await;
    let (_, admin_b) = app.tenant("tenant-b", &[Scope::Admin]).await;
    create_flag(&app, &admin_a.secret, "production", checkout_flag()).await;
    let b = app.console(&admin_b.secret).await;

    let list = b.get("/console/flags?environment=production").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text().contains("new-checkout"));
    for path in [
        "/console/flags/production/new-checkout",
        "/console/flags/production/new-checkout/edit",
    ] {
        assert_eq!(b.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let tester = b
        .post_htmx(
            "/console/flags/production/new-checkout/evaluate",
            &[("context", "{}")],
        )
        .await;
    assert_eq!(tester.status, StatusCode::NOT_FOUND);
    let kill = b
        .post(
            "/console/flags/production/new-checkout/kill-switch",
            &[("turn", "off"), ("version", "1")],
        )
        .await;
    assert_eq!(kill.status, StatusCode::NOT_FOUND);
    let delete = b
        .post(
            "/console/flags/production/new-checkout/delete",
            &[("version", "1")],
        )
        .await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
    let stored = app
        .get("/api/v1/flags/new-checkout", Some(&admin_a.secret))
        .await;
    assert_eq!(stored.json()["version"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn deleting_follows_the_api_rules() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    create_flag(&app, &admin.secret, "production", boolean_flag("base")).await;
    let mut dependent = boolean_flag("dependent");
    dependent["prerequisites"] = json!([{"flag": "base", "variants": ["on"]}]);
    create_flag(&app, &admin.secret, "production", dependent).await;
    let console = app.console(&admin.secret).await;
    assert!(console
        .get("/console/flags/production/base")
        .await
        .text()
        .contains("<form id=\"delete-flag\""));

    let refused = console
        .post("/console/flags/production/base/delete", &[("version", "1")])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.text().contains("prerequisite of `dependent`"),
        "{}",
        refused.text()
    );
    let stale = console
        .post(
            "/console/flags/production/dependent/delete",
            &[("version", "7")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);

    let deleted = console
        .post(
            "/console/flags/production/dependent/delete",
            &[("version", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text());
    assert_eq!(
        deleted.headers["location"],
        "/console/flags?environment=production"
    );
    let gone = app
        .get("/api/v1/flags/dependent", Some(&admin.secret))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let base = app.get("/api/v1/flags/base", Some(&admin.secret)).await;
    assert_eq!(base.status, StatusCode::OK, "the prerequisite stays");
    app.cleanup().await;
}

#[tokio::test]
async fn a_rule_split_and_an_environment_override_are_shown_and_explained_by_the_tester() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let mut flag = checkout_flag();
    flag["rules"] = json!([{"id": "eu-pro",
        "when": {"attribute": "region", "op": "equals", "value": "eu"},
        "split": {"rollout_bp": 1000, "variants": [{"variant": "on", "weight_bp": 10000}]}}]);
    flag["environments"] = json!({"staging": {"variant": "on"}});
    create_flag(&app, &admin.secret, "staging", flag).await;
    let console = app.console(&admin.secret).await;

    let html = console
        .get("/console/flags/staging/new-checkout")
        .await
        .text();
    for expected in [
        "eu-pro",
        "10% of matches get a split: on 100%; the rest the default variant",
        "Serves everyone",
        "variant on",
    ] {
        assert!(html.contains(expected), "the page lacks {expected}: {html}");
    }
    // In staging the override answers before the rule, for everyone.
    let reply = console
        .post_htmx(
            "/console/flags/staging/new-checkout/evaluate",
            &[("context", r#"{"targetingKey":"user-1","region":"us"}"#)],
        )
        .await;
    assert_tester_says(&reply, "true", "on", "STATIC");
    assert!(
        reply
            .text()
            .contains("Environment override</dt><dd>staging"),
        "{}",
        reply.text()
    );
    app.cleanup().await;
}
