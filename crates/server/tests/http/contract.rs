//! Request-input hardening found by hostile testing: duplicated JSON fields, content types and
//! unknown fields on every body, bounded free text without control characters, short quotes of
//! bad values, a sensible name for a body that is not an object, long request targets, revoked
//! keys. (The whole document is checked against the server by tests/schemathesis.rs in the
//! signalbox crate.)

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    content_type: Option<&str>,
    body: impl Into<Vec<u8>>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    app.send(req.body(Body::from(body.into())).unwrap()).await
}

async fn post_json(app: &TestApp, path: &str, key: &str, body: &str) -> Reply {
    raw(
        app,
        Method::POST,
        path,
        key,
        Some("application/json"),
        body.as_bytes().to_vec(),
    )
    .await
}

fn flag(key: &str) -> Value {
    json!({
        "key": key, "type": "boolean", "status": "active",
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "on", "off_variant": "off"
    })
}

/// A running experiment `exp` on the flag it creates, `checkout-button`.
async fn running_experiment(app: &TestApp, key: &str) {
    let created = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(key),
            Some(crate::experiments::spec("exp")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let started = app
        .call(
            Method::POST,
            "/api/v1/experiments/exp/start",
            Some(key),
            None,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
}

#[tokio::test]
async fn a_field_given_twice_is_refused_wherever_json_is_read() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    running_experiment(&app, key).await;

    // The hostile case: the last value would have made this an admin key.
    let cases: [(&str, &str, &str); 6] = [
        (
            "/api/v1/tenant/keys",
            r#"{"scopes":["read"],"label":"ci","scopes":["admin"]}"#,
            "scopes",
        ),
        (
            "/api/v1/flags",
            r#"{"key":"f","type":"boolean","status":"active","variants":[{"key":"on","value":true,"key":"off"}],"default_variant":"on","off_variant":"on"}"#,
            "variants[0].key",
        ),
        (
            "/api/v1/interactions",
            r#"[{"event_id":"e1","user_id":"u","timestamp":1,"rating":5},{"event_id":"e2","user_id":"u","user_id":"v","timestamp":2,"rating":1}]"#,
            "[1].user_id",
        ),
        (
            "/api/v1/experiments/exp/events",
            r#"{"events":[{"user":"u","metric":"checkout","metric":"revenue"}]}"#,
            "events[0].metric",
        ),
        (
            "/api/v1/experiments/exp/conclude",
            r#"{"winner":"control","winner":"green"}"#,
            "winner",
        ),
        (
            "/ofrep/v1/evaluate/flags",
            r#"{"context":{"targetingKey":"alice","targetingKey":"bob"}}"#,
            "context.targetingKey",
        ),
    ];
    for (path, body, field) in cases {
        let reply = post_json(&app, path, key, body).await;
        let code = if path.starts_with("/ofrep") {
            "flag_evaluation_failed"
        } else {
            "invalid_field"
        };
        let problem = reply.assert_problem(400, code, path);
        assert_eq!(problem["field"], field, "{path}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("more than once"),
            "{path}: {problem}"
        );
    }
    // Nothing was created by the refused requests.
    let keys = app.get("/api/v1/tenant/keys", Some(key)).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    let flags = app.get("/api/v1/flags", Some(key)).await.json();
    let keys: Vec<&str> = flags["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["checkout-button"], "only the experiment's own flag");

    // NDJSON is read line by line: the line with the duplicate is rejected, the rest stored.
    let ndjson = "{\"event_id\":\"n1\",\"user_id\":\"u\",\"timestamp\":1,\"rating\":4}\n\
                  {\"event_id\":\"n2\",\"user_id\":\"u\",\"timestamp\":2,\"rating\":4,\"rating\":1}\n";
    let reply = raw(
        &app,
        Method::POST,
        "/api/v1/interactions",
        key,
        Some("application/x-ndjson"),
        ndjson,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["stored"], 1, "{body}");
    assert_eq!(body["rejected"][0]["index"], 1, "{body}");
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("`rating` is given more than once"),
        "{body}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn conclude_and_ofrep_bodies_must_be_json_and_known() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    running_experiment(&app, key).await;

    // 415 for a body that is not sent as JSON, as on every other route.
    for path in [
        "/api/v1/experiments/exp/conclude",
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/any",
    ] {
        let reply = raw(
            &app,
            Method::POST,
            path,
            key,
            Some("text/plain"),
            r#"{"context":{}}"#,
        )
        .await;
        reply.assert_problem(415, "unsupported_media_type", path);
    }
    // Unknown top-level members are refused; OFREP's context stays an open map.
    let reply = post_json(
        &app,
        "/ofrep/v1/evaluate/flags",
        key,
        r#"{"context":{"plan":"pro","anything":{"goes":1}},"contxt":{}}"#,
    )
    .await;
    let problem = reply.assert_problem(400, "flag_evaluation_failed", "/ofrep/v1/evaluate/flags");
    assert_eq!(problem["field"], "contxt", "{problem}");
    assert_eq!(problem["errorCode"], "INVALID_CONTEXT", "{problem}");
    let reply = post_json(
        &app,
        "/ofrep/v1/evaluate/flags",
        key,
        r#"{"context":{"plan":"pro","anything":{"goes":1}}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // No body at all (an OFREP client may send none) is still an empty context.
    let reply = raw(
        &app,
        Method::POST,
        "/ofrep/v1/evaluate/flags",
        key,
        None,
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let path = "/api/v1/experiments/exp/events";
    let reply = post_json(
        &app,
        path,
        key,
        r#"{"events":[{"user":"u","metric":"checkout"}],"dry_run":true}"#,
    )
    .await;
    let problem = reply.assert_problem(400, "invalid_field", path);
    assert_eq!(problem["field"], "dry_run", "{problem}");
    app.cleanup().await;
}

#[tokio::test]
async fn free_text_is_bounded_and_free_of_control_characters() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    // A NUL in a metric key would make an experiment no event can reach.
    let mut spec = crate::experiments::spec("nul");
    spec["primary_metric"]["key"] = json!("check\u{0}out");
    let reply = app
        .call(Method::POST, "/api/v1/experiments", Some(key), Some(spec))
        .await;
    let problem = reply.assert_problem(400, "invalid_field", "/api/v1/experiments");
    assert_eq!(problem["field"], "primary_metric.key", "{problem}");
    let mut spec = crate::experiments::spec("long");
    spec["hypothesis"] = json!("h".repeat(2001));
    let reply = app
        .call(Method::POST, "/api/v1/experiments", Some(key), Some(spec))
        .await;
    let problem = reply.assert_problem(400, "invalid_field", "/api/v1/experiments");
    assert_eq!(problem["field"], "hypothesis", "{problem}");
    let mut spec = crate::experiments::spec("variant");
    spec["variants"][1]["key"] = json!("gr\u{1b}[31meen");
    let reply = app
        .call(Method::POST, "/api/v1/experiments", Some(key), Some(spec))
        .await;
    let problem = reply.assert_problem(400, "invalid_field", "/api/v1/experiments");
    assert_eq!(problem["field"], "variants[1].key", "{problem}");

    // Flags: the validation names the field (422, with every problem listed).
    for (field, value) in [
        ("description", json!("a\u{0}b")),
        ("description", json!("d".repeat(2001))),
        ("owner", json!("team\u{7}")),
    ] {
        let mut definition = flag("text");
        definition[field] = value;
        let reply = app
            .call(Method::POST, "/api/v1/flags", Some(key), Some(definition))
            .await;
        let problem = reply.assert_problem(422, "unprocessable", "/api/v1/flags");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let mut definition = flag("multiline");
    definition["description"] = json!("first line\n\tsecond line");
    let reply = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(definition))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());

    // OFREP's targeting key: at most 256 bytes, no control characters.
    for targeting_key in [json!("u".repeat(257)), json!("alice\u{0}")] {
        let body = json!({"context": {"targetingKey": targeting_key}});
        let reply = app
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags/multiline",
                Some(key),
                Some(body),
            )
            .await;
        let problem = reply.assert_problem(
            400,
            "flag_evaluation_failed",
            "/ofrep/v1/evaluate/flags/multiline",
        );
        assert_eq!(problem["field"], "context.targetingKey", "{problem}");
        assert_eq!(problem["errorCode"], "INVALID_CONTEXT", "{problem}");
    }
    let body = json!({"context": {"targetingKey": "u".repeat(256)}});
    let reply = app
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/multiline",
            Some(key),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.cleanup().await;
}

#[tokio::test]
async fn problems_quote_only_a_short_excerpt_of_a_bad_value() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let huge = "x".repeat(900_000);
    let mut definition = flag("echo");
    definition["default_variant"] = json!(huge);
    let reply = app
        .call(Method::POST, "/api/v1/flags", Some(key), Some(definition))
        .await;
    reply.assert_problem(422, "unprocessable", "/api/v1/flags");
    assert!(
        reply.body.len() < 8 * 1024,
        "a {}-byte problem for a rejected value",
        reply.body.len()
    );
    assert!(reply.text().contains("more bytes"), "{}", reply.text());

    let body = format!(r#"{{"scopes":["{huge}"]}}"#);
    let reply = post_json(&app, "/api/v1/tenant/keys", key, &body).await;
    reply.assert_problem(400, "invalid_field", "/api/v1/tenant/keys");
    assert!(reply.body.len() < 8 * 1024, "{} bytes", reply.body.len());
    app.cleanup().await;
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_named_body() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    running_experiment(&app, key).await;
    for path in [
        "/api/v1/tenant/keys",
        "/api/v1/flags",
        "/api/v1/experiments",
        "/api/v1/experiments/exp/events",
        "/api/v1/weber-profiles:batchGet",
    ] {
        for body in ["null", "[]", "3"] {
            let reply = post_json(&app, path, key, body).await;
            let problem = reply.assert_problem(400, "invalid_field", path);
            assert_eq!(problem["field"], "body", "{path} {body}: {problem}");
            assert!(
                problem["detail"].as_str().unwrap().contains("JSON object"),
                "{path} {body}: {problem}"
            );
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_long_request_target_is_a_414_problem() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let long = format!(
        "/api/v1/tenant?pad={}",
        "a".repeat(server::envelope::MAX_URI_BYTES)
    );
    let reply = app.get(&long, Some(&admin.secret)).await;
    let problem = reply.assert_problem(414, "uri_too_long", "/api/v1/tenant");
    assert_eq!(problem["max_bytes"], server::envelope::MAX_URI_BYTES);
    let fits = format!("/api/v1/tenant?pad={}", "a".repeat(1000));
    assert_eq!(app.get(&fits, Some(&admin.secret)).await.status, 200);
    app.cleanup().await;
}

#[tokio::test]
async fn a_revoked_key_is_gone_but_still_listed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let created = post_json(&app, "/api/v1/tenant/keys", key, r#"{"scopes":["read"]}"#).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tenant/keys/{id}");
    let revoked = app.call(Method::DELETE, &path, Some(key), None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let problem = app
        .get(&path, Some(key))
        .await
        .assert_problem(410, "gone", &path);
    assert!(problem["revoked_at"].is_string(), "{problem}");
    let listed = app.get("/api/v1/tenant/keys", Some(key)).await.json();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["revoked_at"].is_string()),
        "{listed}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn an_integral_number_fits_an_integer_field() {
    // JSON has one number type: 50.0 is the integer 50 (schemathesis sends such values).
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let mut spec = crate::experiments::spec("float");
    spec["variants"][0]["weight"] = json!(50.0);
    let reply = app
        .call(
            Method::POST,
            "/api/v1/experiments",
            Some(&admin.secret),
            Some(spec),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["spec"]["variants"][0]["weight"], 50);
    app.cleanup().await;
}
