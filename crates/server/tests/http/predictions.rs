//! Weber predictions over HTTP: purchases in (`POST /api/v1/transactions`), with every rejection
//! reason, idempotency and tenant isolation, on SQLite and PostgreSQL.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

const PATH: &str = "/api/v1/transactions";

async fn post(app: &TestApp, key: &str, body: Value) -> crate::Reply {
    app.call(Method::POST, PATH, Some(key), Some(body)).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn purchase(order: &str, customer: &str, at: &str, amount: f64) -> Value {
    json!({"order_id": order, "customer_id": customer, "occurred_at": at, "amount": amount})
}

async fn purchases_are_idempotent_by_order_id(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let key = key.secret;
    let first = post(
        &app,
        &key,
        json!([
            purchase("o1", "ann", "2025-03-01T10:00:00Z", 19.99),
            purchase("o2", "ann", "2025-03-09T10:00:00+02:00", 0.0),
            {"order_id": "o3", "customer_id": "bob", "occurred_at": 1_740_000_000_000i64,
             "amount": 5, "currency": "EUR"},
        ]),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.json(),
        json!({"accepted": 3, "stored": 3, "duplicates": 0, "rejected": []})
    );
    // The same orders again: duplicates. The same order id with another amount: rejected, and
    // the stored order keeps its values.
    let again = post(
        &app,
        &key,
        json!([
            purchase("o1", "ann", "2025-03-01T10:00:00Z", 19.99),
            purchase("o2", "ann", "2025-03-09T10:00:00+02:00", 25.0),
            purchase("o4", "cid", "2025-03-10T00:00:00Z", 1.0),
        ]),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
    let body = again.json();
    assert_eq!(
        (&body["accepted"], &body["stored"], &body["duplicates"]),
        (&json!(2), &json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(
        body["rejected"],
        json!([{"index": 1, "order_id": "o2", "field": "order_id",
                "reason": body["rejected"][0]["reason"].clone()}]),
        "{body}"
    );
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already sent")),
        "{body}"
    );
    let stored = app
        .fixture
        .store
        .weber_transactions_page(&tenant.id, None, 100)
        .await
        .unwrap();
    let o2 = stored.iter().find(|t| t.order_id == "o2").unwrap();
    assert_eq!(o2.amount, 0.0);
    assert_eq!(stored.len(), 4);

    // NDJSON works too, and its indexes are line numbers.
    let nd = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(PATH)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/x-ndjson")
                .body(Body::from(format!(
                    "{}\n\n{}\n",
                    purchase("o5", "dee", "2025-04-01T00:00:00Z", 3.5),
                    json!({"order_id": "o6"})
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(nd.status, 200, "{}", nd.text());
    assert_eq!(nd.json()["stored"], 1);
    assert_eq!(nd.json()["rejected"][0]["index"], 2);

    // A key without the write scope may not send purchases.
    let (_, reader) = {
        let store = &app.fixture.store;
        let key = store
            .issue_api_key(&tenant.id, [Scope::Read].into_iter().collect(), None)
            .await
            .unwrap();
        ((), key)
    };
    post(&app, &reader.secret, json!([]))
        .await
        .assert_problem(403, "forbidden", PATH);
    app.cleanup().await;
}

#[tokio::test]
async fn purchases_are_idempotent_by_order_id_sqlite() {
    purchases_are_idempotent_by_order_id(Backend::Sqlite).await;
}

#[tokio::test]
async fn purchases_are_idempotent_by_order_id_postgres() {
    purchases_are_idempotent_by_order_id(Backend::Postgres).await;
}

async fn each_bad_purchase_is_rejected_with_its_field(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = app.tenant("shop", &[Scope::Write]).await;
    let key = key.secret;
    let future = now_ms() + 10 * 60 * 1000;
    let good = purchase("ok", "ann", "2025-01-01T00:00:00Z", 1.0);
    let mut cases: Vec<(Value, Option<&str>, &str)> = vec![
        (
            purchase("n", "ann", "2025-01-01T00:00:00Z", -3.0),
            Some("amount"),
            "refunds",
        ),
        (
            json!({"order_id": "s", "customer_id": "ann", "occurred_at": "2025-01-01T00:00:00Z", "amount": "NaN"}),
            Some("amount"),
            "number",
        ),
        (
            purchase("h", "ann", "2025-01-01T00:00:00Z", 1e15),
            Some("amount"),
            "finite",
        ),
        (
            json!({"order_id": "f", "customer_id": "ann", "occurred_at": future, "amount": 1}),
            Some("occurred_at"),
            "future",
        ),
        (
            json!({"customer_id": "ann", "occurred_at": "2025-01-01T00:00:00Z", "amount": 1}),
            Some("order_id"),
            "required",
        ),
        (
            json!({"order_id": "c", "occurred_at": "2025-01-01T00:00:00Z", "amount": 1}),
            Some("customer_id"),
            "required",
        ),
        (
            json!({"order_id": "t", "customer_id": "ann", "amount": 1}),
            Some("occurred_at"),
            "required",
        ),
        (
            json!({"order_id": "a", "customer_id": "ann", "occurred_at": "2025-01-01T00:00:00Z"}),
            Some("amount"),
            "required",
        ),
        (json!(42), None, "JSON object"),
    ];
    let mut body: Vec<Value> = cases.iter().map(|(v, _, _)| v.clone()).collect();
    body.push(good);
    let reply = post(&app, &key, Value::Array(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["stored"], 1, "{answer}");
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), cases.len(), "{answer}");
    for (i, (value, field, has)) in cases.drain(..).enumerate() {
        let r = &rejected[i];
        assert_eq!(r["index"], i, "{r}");
        assert_eq!(r["field"].as_str(), field, "{value}: {r}");
        assert!(
            r["reason"].as_str().is_some_and(|t| t.contains(has)),
            "{value}: {r}"
        );
    }
    // Numbers JSON cannot carry (1e400) make the body malformed as a whole.
    let raw = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(PATH)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"[{"order_id":"x","customer_id":"a","occurred_at":1,"amount":1e400}]"#,
                ))
                .unwrap(),
        )
        .await;
    raw.assert_problem(400, "malformed_json", PATH);
    // Every purchase bad: 422 listing each, nothing stored.
    let all_bad = post(&app, &key, json!([{"order_id": "x"}, 7])).await;
    let problem = all_bad.assert_problem(422, "unprocessable", PATH);
    assert_eq!(problem["rejected"].as_array().map(Vec::len), Some(2));
    // Over the byte limit: 413.
    let huge = "x".repeat(2 * 1024 * 1024);
    post(
        &app,
        &key,
        json!([purchase(&huge, "a", "2025-01-01T00:00:00Z", 1.0)]),
    )
    .await
    .assert_problem(413, "payload_too_large", PATH);
    // Not an array; wrong media type.
    post(&app, &key, good_object())
        .await
        .assert_problem(400, "malformed_json", PATH);
    let csv = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(PATH)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "text/csv")
                .body(Body::from("a,b"))
                .unwrap(),
        )
        .await;
    csv.assert_problem(415, "unsupported_media_type", PATH);
    assert_eq!(
        app.fixture
            .store
            .weber_transaction_count(&tenant.id)
            .await
            .unwrap(),
        1
    );
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weber_transactions_ingested_total")
                && l.contains("outcome=\"rejected\"")),
        "{metrics}"
    );
    app.cleanup().await;
}

fn good_object() -> Value {
    purchase("obj", "ann", "2025-01-01T00:00:00Z", 1.0)
}

#[tokio::test]
async fn each_bad_purchase_is_rejected_with_its_field_sqlite() {
    each_bad_purchase_is_rejected_with_its_field(Backend::Sqlite).await;
}

#[tokio::test]
async fn each_bad_purchase_is_rejected_with_its_field_postgres() {
    each_bad_purchase_is_rejected_with_its_field(Backend::Postgres).await;
}

#[tokio::test]
async fn another_tenants_orders_are_its_own() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (a, ka) = app.tenant("a", &[Scope::Write]).await;
    let (b, kb) = app.tenant("b", &[Scope::Write]).await;
    let order = purchase("o1", "ann", "2025-01-01T00:00:00Z", 10.0);
    assert_eq!(
        post(&app, &ka.secret, json!([order])).await.json()["stored"],
        1
    );
    // The same order id in another tenant is a new order, even with other values.
    let other = purchase("o1", "zed", "2025-02-01T00:00:00Z", 99.0);
    let reply = post(&app, &kb.secret, json!([other])).await;
    assert_eq!(reply.json()["stored"], 1, "{}", reply.text());
    let store = &app.fixture.store;
    let a_rows = store
        .weber_transactions_page(&a.id, None, 10)
        .await
        .unwrap();
    let b_rows = store
        .weber_transactions_page(&b.id, None, 10)
        .await
        .unwrap();
    assert_eq!((a_rows.len(), b_rows.len()), (1, 1));
    assert_eq!((a_rows[0].amount, b_rows[0].amount), (10.0, 99.0));
    app.cleanup().await;
}
