//! Feature flags over HTTP: the admin API (CRUD, optimistic concurrency, kill switch, audit,
//! change stream) and OFREP evaluation, on both backends where storage matters.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

/// A minimal valid boolean flag.
pub fn boolean_flag(key: &str) -> Value {
    json!({
        "key": key, "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "on", "off_variant": "off"
    })
}

/// One flag per value type OFREP clients ask for, plus a split and a prerequisite.
fn typed_flags() -> Vec<Value> {
    vec![
        boolean_flag("bool-flag"),
        json!({
            "key": "string-flag", "type": "targeting", "status": "active",
            "variants": [{"key": "new", "value": "v2"}, {"key": "old", "value": "v1"}],
            "default_variant": "old", "off_variant": "old",
            "rules": [{"id": "staff", "when": {"attribute": "email", "op": "ends_with", "value": "@example.com"}, "variant": "new"}]
        }),
        json!({
            "key": "number-flag", "type": "multivariate", "status": "active",
            "variants": [
                {"key": "low", "value": 10, "weight_bp": 5000, "control": true},
                {"key": "high", "value": 20.5, "weight_bp": 5000}
            ],
            "default_variant": "low", "off_variant": "low"
        }),
        json!({
            "key": "object-flag", "type": "boolean", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "on", "off_variant": "off"
        }),
        json!({
            "key": "layout", "type": "multivariate", "status": "active",
            "variants": [
                {"key": "classic", "value": {"columns": 1}, "weight_bp": 5000, "control": true},
                {"key": "grid", "value": {"columns": 3}, "weight_bp": 5000}
            ],
            "default_variant": "classic", "off_variant": "classic",
            "prerequisites": [{"flag": "bool-flag", "variants": ["on"]}]
        }),
    ]
}

async fn send_with(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    app.send(req.body(body).unwrap()).await
}

async fn create(app: &TestApp, key: &str, env: &str, flag: Value) -> Reply {
    let reply = app
        .call(
            Method::POST,
            &format!("/api/v1/flags?environment={env}"),
            Some(key),
            Some(flag),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply
}

async fn evaluate(app: &TestApp, key: &str, flag: &str, context: Value) -> Reply {
    app.call(
        Method::POST,
        &format!("/ofrep/v1/evaluate/flags/{flag}"),
        Some(key),
        Some(json!({ "context": context })),
    )
    .await
}

fn etag(reply: &Reply) -> String {
    reply
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned()
}

async fn admin_lifecycle(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    let created = create(&app, key, "production", boolean_flag("checkout")).await;
    assert_eq!(etag(&created), "\"1\"");
    assert_eq!(
        created.headers.get("location").unwrap(),
        "/api/v1/flags/checkout"
    );
    let body = created.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["environment"], "production");
    assert_eq!(body["updated_by"], admin.info.id.as_str());
    assert_eq!(body["definition"], boolean_flag("checkout"));

    // A second create of the same key conflicts; the same key in another environment does not.
    let again = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(key),
            Some(boolean_flag("checkout")),
        )
        .await;
    again.assert_problem(409, "conflict", "/api/v1/flags");
    create(&app, key, "staging", boolean_flag("checkout")).await;

    let got = app.get("/api/v1/flags/checkout", Some(key)).await;
    assert_eq!(got.status, 200);
    assert_eq!(etag(&got), "\"1\"");

    // Replace with If-Match: the version moves; a stale If-Match is 412 naming the current one.
    let mut changed = boolean_flag("checkout");
    changed["default_variant"] = json!("off");
    changed["owner"] = json!("team-payments");
    let put = send_with(
        &app,
        Method::PUT,
        "/api/v1/flags/checkout",
        key,
        &[("if-match", "\"1\"")],
        Some(changed.clone()),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(etag(&put), "\"2\"");
    let stale = send_with(
        &app,
        Method::PUT,
        "/api/v1/flags/checkout",
        key,
        &[("if-match", "\"1\"")],
        Some(boolean_flag("checkout")),
    )
    .await;
    let problem = stale.assert_problem(412, "precondition_failed", "/api/v1/flags/checkout");
    assert_eq!(problem["current_version"], 2);
    let garbled = send_with(
        &app,
        Method::PUT,
        "/api/v1/flags/checkout",
        key,
        &[("if-match", "version two")],
        Some(boolean_flag("checkout")),
    )
    .await;
    assert_eq!(
        garbled.assert_problem(400, "invalid_parameter", "/api/v1/flags/checkout")["parameter"],
        "If-Match"
    );
    let renamed = app
        .call(
            Method::PUT,
            "/api/v1/flags/checkout",
            Some(key),
            Some(boolean_flag("other")),
        )
        .await;
    assert_eq!(
        renamed.assert_problem(422, "unprocessable", "/api/v1/flags/checkout")["field"],
        "key"
    );

    // The change is served at once.
    let served = evaluate(&app, key, "checkout", json!({"targetingKey": "u1"})).await;
    assert_eq!(served.json()["value"], false, "{}", served.text());

    // Kill switch: audited as `kill`, served as DISABLED, idempotent.
    let killed = app
        .call(Method::POST, "/api/v1/flags/checkout/kill", Some(key), None)
        .await;
    assert_eq!(killed.status, 200, "{}", killed.text());
    assert_eq!(etag(&killed), "\"3\"");
    assert_eq!(killed.json()["definition"]["kill_switch"], true);
    let again = app
        .call(Method::POST, "/api/v1/flags/checkout/kill", Some(key), None)
        .await;
    assert_eq!(etag(&again), "\"3\"");
    let served = evaluate(&app, key, "checkout", json!({"targetingKey": "u1"})).await;
    let served = served.json();
    assert_eq!(
        (
            &served["reason"],
            &served["value"],
            &served["metadata"]["disabled_by"]
        ),
        (&json!("DISABLED"), &json!(false), &json!("kill_switch")),
    );
    // Staging is another environment: untouched.
    let staging = send_with(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags/checkout",
        key,
        &[("x-environment", "staging")],
        Some(json!({"context": {}})),
    )
    .await;
    assert_eq!(staging.json()["reason"], "STATIC", "{}", staging.text());

    // The audit trail, newest first, field by field, with who did it.
    let audit = app.get("/api/v1/flags/checkout/audit", Some(key)).await;
    assert_eq!(audit.status, 200, "{}", audit.text());
    let audit = audit.json();
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["kill", "update", "create"]);
    assert!(entries.iter().all(|e| e["actor"] == admin.info.id.as_str()));
    assert_eq!(
        entries[0]["changes"],
        json!([{"path": "/kill_switch", "after": true}])
    );
    let paths: Vec<&str> = entries[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/default_variant", "/owner"]);
    assert_eq!(entries[2]["before"], Value::Null);
    let page = app
        .get("/api/v1/flags/checkout/audit?limit=2", Some(key))
        .await
        .json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let older = app
        .get(
            &format!(
                "/api/v1/flags/checkout/audit?limit=2&before={}",
                page["next_before"]
            ),
            Some(key),
        )
        .await
        .json();
    assert_eq!(older["entries"][0]["action"], "create");
    assert_eq!(older["next_before"], Value::Null);

    // Delete: gone from reads and evaluation, still in the audit trail.
    let stale_delete = send_with(
        &app,
        Method::DELETE,
        "/api/v1/flags/checkout",
        key,
        &[("if-match", "\"2\"")],
        None,
    )
    .await;
    stale_delete.assert_problem(412, "precondition_failed", "/api/v1/flags/checkout");
    let deleted = app
        .call(Method::DELETE, "/api/v1/flags/checkout", Some(key), None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    app.get("/api/v1/flags/checkout", Some(key))
        .await
        .assert_problem(404, "not_found", "/api/v1/flags/checkout");
    let gone = evaluate(&app, key, "checkout", json!({})).await;
    assert_eq!(gone.json()["errorCode"], "FLAG_NOT_FOUND");
    let audit = app
        .get("/api/v1/flags/checkout/audit", Some(key))
        .await
        .json();
    assert_eq!(audit["entries"][0]["action"], "delete");

    let listed = app
        .get("/api/v1/flags?environment=staging", Some(key))
        .await
        .json();
    assert_eq!(listed["environment"], "staging");
    assert_eq!(listed["flags"].as_array().unwrap().len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn admin_lifecycle_on_sqlite() {
    admin_lifecycle(Backend::Sqlite).await;
}

#[tokio::test]
async fn admin_lifecycle_on_postgres() {
    admin_lifecycle(Backend::Postgres).await;
}

#[tokio::test]
async fn invalid_definitions_are_refused_with_422_naming_the_field() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, "production", boolean_flag("base")).await;

    let targeting = |when: Value| {
        json!({
            "key": "t", "type": "targeting", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "off", "off_variant": "off",
            "rules": [{"id": "r", "when": when, "variant": "on"}]
        })
    };
    let mut weights = json!({
        "key": "w", "type": "multivariate", "status": "active",
        "variants": [{"key": "a", "value": 1, "weight_bp": 5000}, {"key": "b", "value": 2, "weight_bp": 4000}],
        "default_variant": "a", "off_variant": "a"
    });
    let mut unknown_prerequisite = boolean_flag("p");
    unknown_prerequisite["prerequisites"] = json!([{"flag": "nope", "variants": ["on"]}]);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            targeting(json!({"attribute": "email", "op": "matches", "value": "x"})),
            "rules[0].when.op",
            "unknown operator `matches`",
        ),
        (
            targeting(json!({"attribute": "device", "op": "regex", "value": "(unclosed"})),
            "rules[0].when.value",
            "bad regex",
        ),
        (weights.clone(), "variants", "weights sum to 9000"),
        (
            unknown_prerequisite,
            "prerequisites[0].flag",
            "unknown prerequisite flag `nope`",
        ),
    ];
    for (flag, field, detail) in cases {
        let reply = app
            .call(Method::POST, "/api/v1/flags", Some(key), Some(flag.clone()))
            .await;
        let problem = reply.assert_problem(422, "unprocessable", "/api/v1/flags");
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
        assert_eq!(problem["errors"][0]["path"], field, "{problem}");
    }
    weights["variants"][1]["weight_bp"] = json!(5000);
    create(&app, key, "production", weights).await;

    // A cycle through an existing flag: base -> c -> base.
    let mut c = boolean_flag("c");
    c["prerequisites"] = json!([{"flag": "base", "variants": ["on"]}]);
    create(&app, key, "production", c).await;
    let mut base = boolean_flag("base");
    base["prerequisites"] = json!([{"flag": "c", "variants": ["on"]}]);
    let cycle = app
        .call(Method::PUT, "/api/v1/flags/base", Some(key), Some(base))
        .await;
    let problem = cycle.assert_problem(422, "unprocessable", "/api/v1/flags/base");
    assert_eq!(problem["field"], "prerequisites");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("prerequisite cycle"),
        "{problem}"
    );
    // A flag that others need cannot be deleted.
    let delete = app
        .call(Method::DELETE, "/api/v1/flags/base", Some(key), None)
        .await;
    let problem = delete.assert_problem(409, "conflict", "/api/v1/flags/base");
    assert_eq!(problem["dependents"], json!(["c"]));

    // Type errors are 400 naming the field; nothing was stored by any refusal.
    let mut bad_type = boolean_flag("x");
    bad_type["status"] = json!("on");
    let reply = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(bad_type))
        .await;
    assert_eq!(
        reply.assert_problem(400, "invalid_field", "/api/v1/flags")["field"],
        "status"
    );
    let listed = app.get("/api/v1/flags", Some(key)).await.json();
    let keys: Vec<&str> = listed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["base", "c", "w"]);
    let base = app.get("/api/v1/flags/base", Some(key)).await.json();
    assert_eq!(base["version"], 1);

    // Writes need the admin scope; reads do not.
    let (_, reader) = app.tenant("reader", &[Scope::Read]).await;
    let denied = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(&reader.secret),
            Some(boolean_flag("r")),
        )
        .await;
    assert_eq!(
        denied.assert_problem(403, "forbidden", "/api/v1/flags")["required_scope"],
        "admin"
    );
    let bad_env = app
        .get("/api/v1/flags?environment=pro%20d", Some(key))
        .await;
    assert_eq!(
        bad_env.assert_problem(400, "invalid_parameter", "/api/v1/flags")["parameter"],
        "environment"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn ofrep_evaluates_every_value_type_and_explains_itself() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    for flag in typed_flags() {
        create(&app, key, "production", flag).await;
    }

    let b = evaluate(&app, key, "bool-flag", json!({"targetingKey": "u1"})).await;
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(
        b.json(),
        json!({"key": "bool-flag", "value": true, "reason": "STATIC", "variant": "on", "metadata": {}})
    );

    let s = evaluate(
        &app,
        key,
        "string-flag",
        json!({"targetingKey": "u1", "email": "ann@example.com"}),
    )
    .await
    .json();
    assert_eq!(
        (
            &s["value"],
            &s["reason"],
            &s["variant"],
            &s["metadata"]["rule"]
        ),
        (
            &json!("v2"),
            &json!("TARGETING_MATCH"),
            &json!("new"),
            &json!("staff")
        )
    );
    let s = evaluate(&app, key, "string-flag", json!({"targetingKey": "u1"}))
        .await
        .json();
    assert_eq!(
        (&s["value"], &s["reason"]),
        (&json!("v1"), &json!("DEFAULT"))
    );

    // The split's bucket is the documented murmur3 bucket of "{flag}:{key}".
    let n = evaluate(&app, key, "number-flag", json!({"targetingKey": "user-42"}))
        .await
        .json();
    assert_eq!(n["reason"], "SPLIT");
    let bucket = flags::bucket("number-flag", "user-42");
    assert_eq!(n["metadata"]["bucket"], json!(bucket));
    assert!(n["value"] == json!(10) || n["value"] == json!(20.5), "{n}");

    let o = evaluate(&app, key, "layout", json!({"targetingKey": "user-42"}))
        .await
        .json();
    assert!(o["value"]["columns"].is_number(), "{o}");

    // Errors: OFREP's members inside a problem.
    let missing = evaluate(&app, key, "no-such-flag", json!({})).await;
    let body = missing.assert_problem(404, "not_found", "/ofrep/v1/evaluate/flags/no-such-flag");
    assert_eq!(
        (&body["key"], &body["errorCode"]),
        (&json!("no-such-flag"), &json!("FLAG_NOT_FOUND"))
    );
    let no_key = evaluate(&app, key, "number-flag", json!({"tier": "pro"})).await;
    let body = no_key.assert_problem(
        400,
        "flag_evaluation_failed",
        "/ofrep/v1/evaluate/flags/number-flag",
    );
    assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
    assert!(body["errorDetails"]
        .as_str()
        .unwrap()
        .contains("targetingKey"));
    let bad_ctx = evaluate(&app, key, "bool-flag", json!({"targetingKey": 42})).await;
    let body = bad_ctx.assert_problem(
        400,
        "flag_evaluation_failed",
        "/ofrep/v1/evaluate/flags/bool-flag",
    );
    assert_eq!(body["errorCode"], "INVALID_CONTEXT");
    assert!(body["errorDetails"]
        .as_str()
        .unwrap()
        .contains("context.targetingKey"));
    // No body at all is an empty context.
    let empty = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/bool-flag",
            Some(key),
            None,
        )
        .await;
    assert_eq!(empty.json()["value"], true, "{}", empty.text());

    // Bulk: every flag, failures inline, an ETag that answers 304 until the answer changes.
    let bulk = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(key),
            Some(json!({"context": {"targetingKey": "user-42"}})),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text());
    let tag = etag(&bulk);
    let listed = bulk.json();
    let flags = listed["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 5);
    let number = flags.iter().find(|f| f["key"] == "number-flag").unwrap();
    assert_eq!(number["metadata"]["bucket"], json!(bucket));
    let ask = |tag: String| {
        let app = &app;
        async move {
            send_with(
                app,
                Method::POST,
                "/ofrep/v1/evaluate/flags",
                key,
                &[("if-none-match", tag.as_str())],
                Some(json!({"context": {"targetingKey": "user-42"}})),
            )
            .await
        }
    };
    let unchanged = ask(tag.clone()).await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.text());
    assert!(unchanged.body.is_empty());
    assert_eq!(ask(format!("\"other\", W/{tag}")).await.status, 304);
    let no_key_bulk = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(key),
            Some(json!({"context": {}})),
        )
        .await
        .json();
    let failure = no_key_bulk["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "number-flag")
        .unwrap()
        .clone();
    assert_eq!(failure["errorCode"], "TARGETING_KEY_MISSING");
    app.call(
        Method::POST,
        "/api/v1/flags/bool-flag/kill",
        Some(key),
        None,
    )
    .await;
    let changed = ask(tag.clone()).await;
    assert_eq!(changed.status, 200);
    assert_ne!(etag(&changed), tag);
    // The prerequisite failed, so the layout flag is disabled too.
    let layout = changed.json()["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "layout")
        .unwrap()
        .clone();
    assert_eq!(layout["metadata"]["disabled_by"], "prerequisite");

    let config = app.get("/ofrep/v1/configuration", Some(key)).await;
    assert_eq!(config.status, 200);
    assert_eq!(config.json()["name"], "signalbox");
    assert_eq!(
        config.json()["capabilities"]["cacheInvalidation"]["polling"]["enabled"],
        true
    );
    let unchanged = send_with(
        &app,
        Method::GET,
        "/ofrep/v1/configuration",
        key,
        &[("if-none-match", etag(&config).as_str())],
        None,
    )
    .await;
    assert_eq!(unchanged.status, 304);

    let metrics = app.get("/metrics", None).await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("flag_evaluations_total{reason=\"SPLIT\"}"))
        .unwrap_or_else(|| panic!("no SPLIT evaluations counted:\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    app.cleanup().await;
}

/// Reads SSE events from a streaming response until `want` events arrived.
async fn read_events(body: &mut Body, want: usize) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < want {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            if let Some(event) = field("event") {
                let data = field("data").map_or(Value::Null, |d| serde_json::from_str(&d).unwrap());
                events.push((event, field("id").unwrap_or_default(), data));
            }
        }
    }
    events
}

async fn open_stream(app: &TestApp, key: &str, last_event_id: Option<&str>) -> Body {
    let mut req = Request::builder()
        .uri("/api/v1/flags/stream")
        .header("authorization", format!("Bearer {key}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let response = tower::ServiceExt::oneshot(app.router.clone(), req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    response.into_body()
}

#[tokio::test]
async fn the_change_stream_reports_changes_and_resumes() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, "production", boolean_flag("one")).await;

    let mut live = open_stream(&app, key, None).await;
    let ready = read_events(&mut live, 1).await;
    assert_eq!(ready[0].0, "ready");
    assert_eq!(
        (ready[0].1.as_str(), &ready[0].2),
        ("1", &json!({"seq": 1}))
    );

    create(&app, key, "production", boolean_flag("two")).await;
    app.call(Method::POST, "/api/v1/flags/one/kill", Some(key), None)
        .await;
    // A change in another environment is not this stream's.
    create(&app, key, "staging", boolean_flag("elsewhere")).await;
    // A change written by another process (the CLI, a replica) arrives via the refresher.
    app.fixture
        .store
        .delete_flag(&tenant.id, "production", "two", None, "cli")
        .await
        .unwrap();
    app.state.refresh_flags().await;

    let events = read_events(&mut live, 3).await;
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .map(|(event, id, data)| {
            (
                event.clone(),
                id.clone(),
                data["key"].as_str().unwrap().to_owned(),
                data["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("change".into(), "2".into(), "two".into(), "create".into()),
            ("change".into(), "3".into(), "one".into(), "kill".into()),
            ("change".into(), "4".into(), "two".into(), "delete".into()),
        ]
    );
    // The refresher also swapped the snapshot: `two` is no longer served.
    let gone = evaluate(&app, key, "two", json!({})).await;
    assert_eq!(gone.status, 404);

    // Reconnecting with Last-Event-ID replays what came after it.
    let mut resumed = open_stream(&app, key, Some("2")).await;
    let events = read_events(&mut resumed, 3).await;
    let ids: Vec<(&str, &str)> = events
        .iter()
        .map(|(event, id, _)| (event.as_str(), id.as_str()))
        .collect();
    assert_eq!(ids, [("ready", "4"), ("change", "3"), ("change", "4")]);
    // Both streams are counted in `sse_connections_active`; one its client dropped is not.
    assert_eq!(app.state.metrics().connections().sse_active(), 2);
    drop(live);
    drop(resumed);
    assert_eq!(app.state.metrics().connections().sse_active(), 0);

    let bad = send_with(
        &app,
        Method::GET,
        "/api/v1/flags/stream",
        key,
        &[("last-event-id", "x")],
        None,
    )
    .await;
    assert_eq!(
        bad.assert_problem(400, "invalid_parameter", "/api/v1/flags/stream")["parameter"],
        "Last-Event-ID"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn an_environment_holds_a_bounded_number_of_flags() {
    let config = server::ServerConfig {
        max_flags_per_environment: 2,
        ..Default::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, "production", boolean_flag("one")).await;
    create(&app, key, "production", boolean_flag("two")).await;
    let third = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(key),
            Some(boolean_flag("three")),
        )
        .await;
    let problem = third.assert_problem(422, "unprocessable", "/api/v1/flags");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already holds 2 flags"),
        "{problem}"
    );
    // Other environments have their own bound; changing a flag is not adding one.
    create(&app, key, "staging", boolean_flag("three")).await;
    let mut changed = boolean_flag("two");
    changed["default_variant"] = json!("off");
    let put = app
        .call(Method::PUT, "/api/v1/flags/two", Some(key), Some(changed))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_writes_cannot_build_a_cycle_together() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(&app, key, "production", boolean_flag("a")).await;
    create(&app, key, "production", boolean_flag("b")).await;
    let mut a = boolean_flag("a");
    a["prerequisites"] = json!([{"flag": "b", "variants": ["on"]}]);
    let mut b = boolean_flag("b");
    b["prerequisites"] = json!([{"flag": "a", "variants": ["on"]}]);
    let (ra, rb) = tokio::join!(
        app.call(Method::PUT, "/api/v1/flags/a", Some(key), Some(a)),
        app.call(Method::PUT, "/api/v1/flags/b", Some(key), Some(b)),
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 422], "{} / {}", ra.text(), rb.text());
    app.cleanup().await;
}

/// The whole loop: a flag that tracks exposures assigns users through OFREP, metric events
/// arrive, and the experiment's results count exactly the users the flag served.
#[tokio::test]
async fn ofrep_exposures_feed_experiment_results() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    create(
        &app,
        key,
        "production",
        json!({
            "key": "checkout-button", "type": "multivariate", "status": "active",
            "track_exposure": true,
            "variants": [
                {"key": "control", "value": "grey", "weight_bp": 5000, "control": true},
                {"key": "green", "value": "green", "weight_bp": 5000}
            ],
            "default_variant": "control", "off_variant": "control"
        }),
    )
    .await;
    // A flag without tracking is evaluated alongside and must leave no exposures.
    create(&app, key, "production", boolean_flag("untracked")).await;
    let created = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(key),
            Some(crate::experiments::spec("button")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    app.call(
        Method::POST,
        "/api/v1/experiments/button/start",
        Some(key),
        None,
    )
    .await;

    let mut served = std::collections::BTreeMap::<String, u64>::new();
    let mut events = Vec::new();
    for i in 0..200 {
        let user = format!("user-{i}");
        // Evaluated twice (single and bulk): still one exposure per user.
        let single = evaluate(&app, key, "checkout-button", json!({"targetingKey": user})).await;
        let variant = single.json()["variant"].as_str().unwrap().to_owned();
        app.call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(key),
            Some(json!({"context": {"targetingKey": user}})),
        )
        .await;
        *served.entry(variant.clone()).or_default() += 1;
        if i % 4 == 0 {
            events.push(json!({"user": user, "metric": "checkout"}));
        }
    }
    app.state.exposures().flush().await;
    let posted = app
        .call(
            Method::POST,
            "/api/v1/experiments/button/events",
            Some(key),
            Some(json!({ "events": events })),
        )
        .await;
    assert!(posted.status.is_success(), "{}", posted.text());
    let results = app
        .get("/api/v1/experiments/button/results", Some(key))
        .await;
    assert_eq!(results.status, 200, "{}", results.text());
    let results = results.json();
    // Nobody spent anything yet: revenue cannot be tested, and says so without blocking the rest.
    assert_eq!(results["not_analysed"][0]["metric"], "revenue", "{results}");
    assert!(
        results["not_analysed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("variance"),
        "{results}"
    );
    // Every user the flag served is counted once, in the variant it served them.
    let served: Value = serde_json::to_value(&served).unwrap();
    assert_eq!(results["users"], served, "{results}");
    let checkout = &results["metrics"][0];
    assert_eq!(checkout["metric"], "checkout");
    let converted: f64 = checkout["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["n"], served[v["variant"].as_str().unwrap()], "{v}");
            v["n"].as_f64().unwrap() * v["mean"].as_f64().unwrap()
        })
        .sum();
    assert!((converted - 50.0).abs() < 1e-9, "{converted}");
    // The untracked flag left no exposures behind.
    for i in [0, 199] {
        let untracked = app
            .fixture
            .store
            .exposure(
                &admin.info.tenant_id,
                "production",
                "untracked",
                &format!("user-{i}"),
            )
            .await
            .unwrap();
        assert_eq!(untracked, None);
    }
    app.cleanup().await;
}
