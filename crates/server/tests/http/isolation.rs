//! Tenant isolation: every tenant-scoped route, called with another tenant's key, behaves as if
//! the other tenant's data did not exist (404 for its resources, only the caller's own data in
//! listings), and without a valid key nothing is served (401). Run on both backends.

use axum::http::Method;
use serde_json::json;
use store::{Backend, Scope};

use crate::TestApp;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every operation in the OpenAPI document that requires a key.
fn secured_operations(doc: &serde_json::Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if op.get("security").is_some() {
                ops.push((method.to_uppercase().parse().expect("method"), path.clone()));
            }
        }
    }
    assert!(!ops.is_empty());
    ops
}

/// Tenant A's Weber constant: digits distinctive enough that finding them in B's answer can only
/// be a leak (times and counts will not contain them by chance).
const A_CONSTANT: f64 = 0.913_579_246_8;
const A_CONSTANT_TEXT: &str = "0.9135792468";

/// What tenant B must get when it points a route at tenant A's data.
enum Expect {
    /// A's resource does not exist for B.
    NotFound,
    /// A category both tenants share (a segment): B gets 200 with only B's data.
    OwnDataOnly,
    /// B's own singleton that may not exist yet or not be in a state the step applies to
    /// (the traffic-shift plan): 200, 404 or 409, never A's data.
    OwnStateOnly,
}

async fn isolation(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (a, ka) = app.tenant("tenant-a", &[Scope::Admin]).await;
    let (b, kb) = app
        .tenant("tenant-b", &[Scope::Admin, Scope::ReadClear])
        .await;
    let a_user = "a-user-only";
    app.fixture
        .store
        .upsert_weber_profiles(&a.id, &[crate::weber::profile_record(a_user, A_CONSTANT)])
        .await
        .unwrap();
    let a_flag = crate::flags::boolean_flag("a-flag");
    let created = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(&ka.secret),
            Some(a_flag.clone()),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let a_experiment = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(&ka.secret),
            Some(crate::experiments::spec("a-exp")),
        )
        .await;
    assert_eq!(a_experiment.status, 201, "{}", a_experiment.text());
    // An LLM conversation of A's, with a model call.
    let a_llm = app
        .call(
            Method::POST,
            "/api/v1/llm/events",
            Some(&ka.secret),
            Some(json!([{
                "type": "model_call", "id": "a-call", "time": server::rfc3339_ms(now_ms()),
                "provider": "acme", "model": "a-model", "operation": "chat",
                "conversation_id": "a-conversation", "duration_ms": 5,
                "input_tokens": 913579, "output_tokens": 1
            }])),
        )
        .await;
    assert_eq!(a_llm.status, 200, "{}", a_llm.text());
    // A delayed job of A's (so nothing runs it) and a schedule.
    let a_job = app
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&ka.secret),
            Some(json!({"handler": "jobs.noop", "delay_ms": 3_600_000})),
        )
        .await;
    assert_eq!(a_job.status, 202, "{}", a_job.text());
    let a_job = a_job.json()["id"].as_str().unwrap().to_owned();
    let a_schedule = app
        .call(
            Method::PUT,
            "/api/v1/jobs/schedules/a-schedule",
            Some(&ka.secret),
            Some(json!({"cron": "@daily", "handler": "jobs.noop"})),
        )
        .await;
    assert_eq!(a_schedule.status, 200, "{}", a_schedule.text());
    // A feedback item of A's, processed before the answer, carrying A's marker digits.
    let a_feedback = app
        .call(
            Method::POST,
            "/api/v1/feedback?tier=realtime",
            Some(&ka.secret),
            Some(json!([{
                "id": "a-feedback", "user_id": a_user, "type": "review", "rating": 4,
                "text": format!("Order {A_CONSTANT_TEXT} arrived late")
            }])),
        )
        .await;
    assert_eq!(a_feedback.status, 200, "{}", a_feedback.text());
    // A purchase of A's user, carrying A's marker digits as its amount.
    let a_purchase = app
        .call(
            Method::POST,
            "/api/v1/transactions",
            Some(&ka.secret),
            Some(json!([{
                "order_id": "a-order", "customer_id": a_user,
                "occurred_at": server::rfc3339_ms(now_ms() - 86_400_000), "amount": 913579.0
            }])),
        )
        .await;
    assert_eq!(a_purchase.status, 200, "{}", a_purchase.text());
    // A signed research report of A's, stored as generation stores one, carrying A's marker.
    app.fixture
        .store
        .insert_feedback_report(
            &a.id,
            &store::FeedbackReportRecord {
                id: "a-report".to_owned(),
                created_at_ms: now_ms(),
                period_from: "2026-11-01".to_owned(),
                period_to: "2026-12-01".to_owned(),
                epsilon_nanos: 913_579,
                delta_femtos: 0,
                ledger_entry_id: "913579".to_owned(),
                key_id: "913579aa".to_owned(),
                signature: "913579".to_owned(),
                body: format!(
                    "{{\"report\":{{\"tenant_id\":\"{}\",\"user\":\"{a_user}\"}}}}\n",
                    a.id
                ),
            },
        )
        .await
        .unwrap();
    // A running traffic-shift plan of A's.
    let a_plan =
        json!({"stages": [{"name": "a-stage", "new_percent": 7, "monitoring_seconds": 600}]});
    let put = app
        .call(
            Method::PUT,
            "/api/v1/feedback/migration",
            Some(&ka.secret),
            Some(a_plan),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let started = app
        .call(
            Method::POST,
            "/api/v1/feedback/migration:start",
            Some(&ka.secret),
            None,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    // A differentially private query of A's, recorded in A's privacy ledger under A's key id.
    let a_query = app
        .call(
            Method::POST,
            "/api/v1/feedback/analytics",
            Some(&ka.secret),
            Some(json!({"metric": "rating_mean", "from": now_ms() - 86_400_000, "to": now_ms() + 60_000})),
        )
        .await;
    assert_eq!(a_query.status, 200, "{}", a_query.text());
    let doc = app.get("/openapi.json", None).await.json();

    for (method, template) in secured_operations(&doc) {
        // Point every path parameter at tenant A's data of that kind.
        let (path, expect) = match template.as_str() {
            t if t.starts_with("/api/v1/experiments/{key}") => (
                t.replace("{key}", "a-exp").replace("{event_id}", "a-event"),
                Expect::NotFound,
            ),
            t if t.contains("{key_id}") => (t.replace("{key_id}", &ka.info.id), Expect::NotFound),
            t if t.contains("{user_id}") => (t.replace("{user_id}", a_user), Expect::NotFound),
            t if t.contains("/flags/{key}") => (t.replace("{key}", "a-flag"), Expect::NotFound),
            t if t.starts_with("/api/v1/llm/conversations/{id}") => {
                (t.replace("{id}", "a-conversation"), Expect::NotFound)
            }
            t if t.starts_with("/api/v1/jobs/{id}") => {
                (t.replace("{id}", &a_job), Expect::NotFound)
            }
            t @ "/api/v1/feedback/reports/{id}" => {
                (t.replace("{id}", "a-report"), Expect::NotFound)
            }
            t if t.starts_with("/api/v1/feedback/{id}") => {
                (t.replace("{id}", "a-feedback"), Expect::NotFound)
            }
            // B's PUT of that name makes B's own schedule.
            t if t.contains("/jobs/schedules/{name}") && method == Method::PUT => {
                (t.replace("{name}", "a-schedule"), Expect::OwnDataOnly)
            }
            t if t.contains("/jobs/schedules/{name}") => {
                (t.replace("{name}", "a-schedule"), Expect::NotFound)
            }
            "/api/v1/jobs" if method == Method::DELETE => {
                ("/api/v1/jobs?status=dead".to_owned(), Expect::OwnDataOnly)
            }
            // A record number of B's own (empty) log: not A's record 0.
            t @ "/api/v1/audit/proofs/inclusion" => (format!("{t}?seq=0"), Expect::NotFound),
            t if t.contains("{segment}") => (
                t.replace("{segment}", "Highly_Sensitive"),
                Expect::OwnDataOnly,
            ),
            // The forecast model is shared, public-data, not tenant data.
            "/forecast" | "/api/v1/forecast" => (
                format!("{template}?station=JFK&horizon=24h"),
                Expect::OwnDataOnly,
            ),
            // B has no fitted model, and none of A's users.
            t @ "/api/v1/predictions/model" => (t.to_owned(), Expect::NotFound),
            t @ "/api/v1/recommendations/weber-enhanced" if method == Method::GET => {
                (format!("{t}?user_id={a_user}"), Expect::NotFound)
            }
            t @ "/api/v1/recommendations/weber-enhanced" => (t.to_owned(), Expect::NotFound),
            t if t.starts_with("/api/v1/feedback/migration") => {
                (t.to_owned(), Expect::OwnStateOnly)
            }
            t => (t.to_owned(), Expect::OwnDataOnly),
        };
        assert!(
            !path.contains('{'),
            "add an isolation fixture for the parameters of {template}"
        );
        let body = match (method.as_str(), template.as_str()) {
            ("POST", "/api/v1/tenant/keys") => Some(json!({"scopes": ["read"]})),
            ("POST", "/api/v1/weber-profiles:batchGet") => Some(json!({"user_ids": [a_user]})),
            ("POST", "/api/v1/interactions") => Some(json!([
                {"event_id": "iso-1", "user_id": "b-own-user", "timestamp": 1, "rating": 5}
            ])),
            ("POST", t) if t.ends_with("/weber-profile/update") => None,
            ("POST", "/api/v1/flags") => Some(crate::flags::boolean_flag("b-own-flag")),
            ("PUT", "/api/v1/flags/{key}") => Some(a_flag.clone()),
            ("POST", t) if t.starts_with("/ofrep/") => {
                Some(json!({"context": {"targetingKey": "u"}}))
            }
            ("POST", "/api/v1/flags/{key}/kill") => None,
            ("POST", t) if t.starts_with("/api/v1/flags/{key}/rollout/") => None,
            ("PUT", "/api/v1/flags/{key}/rollout") => Some(json!({
                "steps": [100, 10000], "mode": "manual", "evaluation_period_seconds": 60,
                "on_breach": "rollback"
            })),
            ("POST", "/api/v1/experiments") => Some(crate::experiments::spec("b-own-exp")),
            ("POST", "/api/v1/experiments/{key}/events") => {
                Some(json!({"events": [{"user": "b-own-user", "metric": "checkout"}]}))
            }
            ("POST", t) if t.starts_with("/api/v1/experiments/{key}/") => None,
            ("POST", "/v1/traces") => Some(json!({"resourceSpans": []})),
            ("POST", "/api/v1/jobs") => {
                Some(json!({"handler": "jobs.noop", "delay_ms": 3_600_000}))
            }
            ("POST", t) if t.starts_with("/api/v1/jobs/{id}/") => None,
            ("PUT", "/api/v1/jobs/schedules/{name}") => {
                Some(json!({"cron": "@hourly", "handler": "jobs.noop"}))
            }
            ("POST", "/api/v1/weber-profiles:recalculate") => Some(json!({})),
            ("POST", "/api/v1/transactions") => Some(json!([{
                "order_id": "b-own-order", "customer_id": "b-own-user",
                "occurred_at": server::rfc3339_ms(now_ms()), "amount": 5.0
            }])),
            ("POST", "/api/v1/recommendations/weber-enhanced") => Some(json!({"user_id": a_user})),
            ("POST", "/api/v1/predictions/refit") => None,
            // The forecast model is shared, public-data, not tenant data.
            ("POST", "/api/v1/forecast/batch") => Some(json!({"requests": [{"station": "JFK"}]})),
            ("POST", "/api/v1/llm/events") => Some(json!([{
                "type": "conversation_started", "id": "b-own", "time": server::rfc3339_ms(now_ms()),
                "conversation_id": "b-conversation", "channel": "web"
            }])),
            ("PUT", "/api/v1/llm/budget") => Some(json!({"monthly_usd": 5.0})),
            ("PUT", "/api/v1/weber/settings") => Some(json!({"eps": 0.1, "window": 100})),
            ("PUT", "/api/v1/llm/prices") => Some(json!({"use_defaults": true})),
            ("POST", "/api/v1/feedback") => Some(json!([
                {"id": "b-own", "user_id": "b-own-user", "type": "review", "rating": 5}
            ])),
            ("POST", "/api/v1/feedback/keys:rotate") => None,
            // B's own report, over a day of B's (empty) feedback.
            ("POST", "/api/v1/feedback/reports") => Some(json!({
                "from": server::rfc3339_ms(now_ms() - 86_400_000)[..10].to_owned(),
                "to": server::rfc3339_ms(now_ms())[..10].to_owned(),
                "epsilon": 0.01
            })),
            ("PUT", "/api/v1/feedback/migration") => Some(json!({"stages": [
                {"name": "b-stage", "new_percent": 50, "monitoring_seconds": 60}
            ]})),
            ("POST", t) if t.starts_with("/api/v1/feedback/migration:") => None,
            ("PUT", "/api/v1/feedback/config") => {
                Some(json!({"config": "# tenant B keeps the defaults\n"}))
            }
            ("POST", "/api/v1/feedback/analytics") => Some(json!({
                "metric": "count", "group_by": "segment",
                "from": now_ms() - 86_400_000, "to": now_ms() + 60_000
            })),
            ("PUT", "/api/v1/privacy/budget") => {
                Some(json!({"period": "week", "epsilon": 2.0, "delta": 1e-6}))
            }
            ("POST", t) => panic!("add an isolation request body for POST {t}"),
            _ => None,
        };

        // A problem's `instance` is the path without the query.
        let instance = path.split('?').next().unwrap_or_default();
        let anonymous = app.call(method.clone(), &path, None, body.clone()).await;
        let garbage = app
            .call(method.clone(), &path, Some("sbx_not-a-key"), body.clone())
            .await;
        if template == "/v1/traces" {
            // OTLP/HTTP answers errors with a google.rpc.Status in the request's encoding.
            for reply in [&anonymous, &garbage] {
                assert_eq!(reply.status, 401, "{}", reply.text());
                assert_eq!(reply.json()["code"], 16, "{}", reply.text());
            }
        } else {
            anonymous.assert_problem(401, "unauthorized", instance);
            garbage.assert_problem(401, "unauthorized", instance);
        }

        let as_b = app
            .call(method.clone(), &path, Some(&kb.secret), body.clone())
            .await;
        let text = as_b.text();
        assert!(
            !text.contains(&a.id),
            "{method} {template} leaked tenant A's id: {text}"
        );
        // Forecasts are public weather numbers, which might contain any digits.
        let public_numbers = template.ends_with("/forecast");
        assert!(
            public_numbers || !text.contains(A_CONSTANT_TEXT),
            "{method} {template} leaked A's profile: {text}"
        );
        assert!(
            !text.contains("913579") && !text.contains("a-model"),
            "{method} {template} leaked A's model calls: {text}"
        );
        // (A 404 for A's job quotes the id B asked for, which B knew.)
        assert!(
            path.contains(&a_job) || !text.contains(&a_job),
            "{method} {template} leaked A's job: {text}"
        );
        match expect {
            Expect::NotFound => {
                as_b.assert_problem(404, "not_found", instance);
            }
            Expect::OwnStateOnly => {
                assert!(
                    [200, 404, 409].contains(&as_b.status.as_u16()),
                    "{method} {template}: {text}"
                );
                assert!(
                    !text.contains("a-stage"),
                    "{method} {template} leaked A's plan: {text}"
                );
            }
            Expect::OwnDataOnly => {
                assert!(as_b.status.is_success(), "{method} {template}: {text}");
                assert!(!text.contains(&ka.info.id), "{method} {template}: {text}");
                if !template.contains("batchGet") {
                    assert!(
                        !text.contains(a_user),
                        "{method} {template} listed A's user: {text}"
                    );
                }
            }
        }
    }
    // Nothing B did reached A's traffic-shift plan.
    let a_plan = app
        .get("/api/v1/feedback/migration", Some(&ka.secret))
        .await
        .json();
    assert_eq!(
        (a_plan["status"].as_str(), a_plan["version"].as_i64()),
        (Some("running"), Some(2)),
        "{a_plan}"
    );
    // Nothing B did reached A's privacy budget or ledger: A's one query, A's default budget.
    let a_budget = app
        .get("/api/v1/privacy/budget", Some(&ka.secret))
        .await
        .json();
    assert_eq!(a_budget["period"], "month", "{a_budget}");
    assert_eq!(a_budget["epsilon_spent"], 0.1, "{a_budget}");
    assert_eq!(
        a_budget["ledger"].as_array().map(Vec::len),
        Some(1),
        "{a_budget}"
    );
    assert_eq!(
        a_budget["ledger"][0]["actor"],
        ka.info.id.as_str(),
        "{a_budget}"
    );
    // Nothing B did reached A's flag.
    let still = app.get("/api/v1/flags/a-flag", Some(&ka.secret)).await;
    assert_eq!(still.status, 200, "{}", still.text());
    assert_eq!(still.json()["version"], 1);
    assert_eq!(still.json()["definition"], a_flag);
    // Nothing B did reached A's profile.
    app.settle().await;
    let a_profile = app
        .fixture
        .store
        .weber_profile(&a.id, a_user)
        .await
        .unwrap();
    assert_eq!(a_profile.map(|p| p.weber_constant), Some(A_CONSTANT));
    // Nor A's experiment: still the draft A created.
    let a_exp = app
        .fixture
        .store
        .experiment(&a.id, "a-exp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_exp.version, 1);
    // Nor A's job and schedule.
    let job = app
        .get(&format!("/api/v1/jobs/{a_job}"), Some(&ka.secret))
        .await
        .json();
    assert_eq!(job["status"], "pending", "{job}");
    let schedule = app
        .get("/api/v1/jobs/schedules/a-schedule", Some(&ka.secret))
        .await
        .json();
    assert_eq!(schedule["cron"], "@daily", "{schedule}");
    // B's batchGet of A's user finds nothing.
    let batch = app
        .call(
            Method::POST,
            "/api/v1/weber-profiles:batchGet",
            Some(&kb.secret),
            Some(json!({"user_ids": [a_user]})),
        )
        .await
        .json();
    assert_eq!(batch["profiles"], json!([]));
    assert_eq!(batch["missing"], json!([a_user]));

    // B's view of itself is B, and its listing holds only B's keys.
    let me = app.get("/api/v1/tenant", Some(&kb.secret)).await.json();
    assert_eq!(me["id"], b.id.as_str());
    let listed = app
        .get("/api/v1/tenant/keys", Some(&kb.secret))
        .await
        .json();
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&kb.info.id.as_str()) && !ids.contains(&ka.info.id.as_str()),
        "{ids:?}"
    );
    // B's attempt to revoke A's key changed nothing: A's key still works.
    let still = app.get("/api/v1/tenant", Some(&ka.secret)).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["id"], a.id.as_str());
    // Keys B created through the API belong to B.
    for key in app.fixture.store.list_api_keys(&a.id).await.unwrap() {
        assert_eq!(key.tenant_id, a.id);
    }
    assert_eq!(
        app.fixture.store.list_api_keys(&a.id).await.unwrap().len(),
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn tenants_are_isolated_on_sqlite() {
    isolation(Backend::Sqlite).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_postgres() {
    isolation(Backend::Postgres).await;
}

#[tokio::test]
async fn scopes_are_enforced_with_403() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, reader) = app.tenant("t", &[Scope::Read]).await;
    let whoami = app.get("/api/v1/tenant", Some(&reader.secret)).await;
    assert_eq!(whoami.status, 200);
    assert_eq!(whoami.json()["scopes"], json!(["read"]));
    let create = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&reader.secret),
            Some(json!({"scopes": ["read"]})),
        )
        .await;
    let body = create.assert_problem(403, "forbidden", "/api/v1/tenant/keys");
    assert_eq!(body["required_scope"], "admin");
    let list = app.get("/api/v1/tenant/keys", Some(&reader.secret)).await;
    list.assert_problem(403, "forbidden", "/api/v1/tenant/keys");
    app.cleanup().await;
}

#[tokio::test]
async fn created_keys_work_once_shown_and_revocation_is_immediate() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let created = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&admin.secret),
            Some(json!({"scopes": ["read", "write"], "label": "ingest"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    let secret = body["api_key"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers["location"],
        format!("/api/v1/tenant/keys/{id}").as_str()
    );
    assert_eq!(body["scopes"], json!(["read", "write"]));
    let me = app.get("/api/v1/tenant", Some(&secret)).await.json();
    assert_eq!(me["id"], tenant.id.as_str());
    assert_eq!(me["key_id"], id.as_str());
    // Shown once: the listing never carries a secret.
    let listed = app
        .get(&format!("/api/v1/tenant/keys/{id}"), Some(&admin.secret))
        .await;
    assert!(!listed.text().contains(&secret[12..]));
    assert_eq!(listed.json()["label"], "ingest");

    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenant/keys/{id}"),
            Some(&admin.secret),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.json()["revoked_at"].is_string());
    let after = app.get("/api/v1/tenant", Some(&secret)).await;
    after.assert_problem(401, "unauthorized", "/api/v1/tenant");
    app.cleanup().await;
}

#[tokio::test]
async fn an_admin_key_cannot_revoke_itself_when_it_is_the_tenants_last() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let own = format!("/api/v1/tenant/keys/{}", admin.info.id);
    let refused = app
        .call(Method::DELETE, &own, Some(&admin.secret), None)
        .await;
    let body = refused.assert_problem(409, "last_admin_key", &own);
    assert_eq!(body["key_id"], admin.info.id.as_str());
    assert!(
        body["detail"].as_str().unwrap().contains("admin key first"),
        "{body}"
    );
    // Still the tenant's way in.
    assert_eq!(
        app.get("/api/v1/tenant", Some(&admin.secret)).await.status,
        200
    );

    // With a second admin key, the first may go (itself included); then the second is last.
    let created = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&admin.secret),
            Some(json!({"scopes": ["admin"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let second = created.json();
    let second_secret = second["api_key"].as_str().unwrap().to_owned();
    let second_path = format!("/api/v1/tenant/keys/{}", second["id"].as_str().unwrap());
    let revoked = app
        .call(Method::DELETE, &own, Some(&admin.secret), None)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let refused = app
        .call(Method::DELETE, &second_path, Some(&second_secret), None)
        .await;
    refused.assert_problem(409, "last_admin_key", &second_path);
    app.cleanup().await;
}
