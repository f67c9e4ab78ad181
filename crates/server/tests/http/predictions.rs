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

// ---- refits and the prediction endpoints ----------------------------------------------------

use std::collections::HashMap;

use lifetime::churn::WeberFeatures;
use lifetime::simulate::{simulate_customers, SimulatedCustomer, SimulationParams};
use rand::SeedableRng;
use store::WeberProfileRecord;

const DAY_MS: i64 = 86_400_000;

fn today() -> i32 {
    (now_ms().div_euclid(DAY_MS)) as i32
}

/// A simulated tenant history: 400 customers over the 300 days before today.
fn simulated(seed: u64) -> Vec<SimulatedCustomer> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    simulate_customers(
        &mut rng,
        &SimulationParams::default(),
        400,
        today() - 300,
        300,
    )
    .unwrap()
}

/// Sends every simulated purchase through the API, in requests of at most 5,000.
async fn send_purchases(app: &TestApp, key: &str, customers: &[SimulatedCustomer]) -> usize {
    let all: Vec<Value> = customers
        .iter()
        .flat_map(|c| {
            c.purchases.iter().enumerate().map(|(k, p)| {
                json!({"order_id": format!("{}-{k}", c.customer_id), "customer_id": c.customer_id,
                       "occurred_at": i64::from(p.day) * DAY_MS + 43_200_000, "amount": p.amount})
            })
        })
        .collect();
    for chunk in all.chunks(5_000) {
        let reply = post(app, key, Value::Array(chunk.to_vec())).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["stored"], chunk.len(), "{}", reply.text());
    }
    all.len()
}

/// Profiles from the simulated reviews, through the Weber engine, stored directly.
async fn store_profiles(
    app: &TestApp,
    tenant_id: &str,
    customers: &[SimulatedCustomer],
) -> Vec<WeberProfileRecord> {
    let mut records = Vec::new();
    for c in customers.iter().filter(|c| !c.reviews.is_empty()) {
        let history: Vec<weber::Interaction> = c
            .reviews
            .iter()
            .enumerate()
            .map(|(i, r)| weber::Interaction::new(r.sentiment, r.time_ms, i as u64))
            .collect();
        let Ok(p) = weber::profile(&history, &weber::WeberParams::default()) else {
            continue;
        };
        records.push(WeberProfileRecord {
            user_id: c.customer_id.clone(),
            weber_constant: p.weber_constant,
            calculation_confidence: p.calculation_confidence,
            sensitivity_segment: p.sensitivity_segment.as_str().to_owned(),
            bias_ratio: p.bias_ratio,
            review_count: history.len() as i64,
            window_len: history.len() as i64,
            newest_event_ms: history.last().map(|i| i.time_ms),
            updated_at_ms: now_ms(),
        });
    }
    app.fixture
        .store
        .upsert_weber_profiles(tenant_id, &records)
        .await
        .unwrap();
    records
}

async fn app_with_job_workers(
    backend: Backend,
) -> (
    TestApp,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let jobs = server::JobSettings {
        poll_interval: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let config = server::ServerConfig {
        jobs,
        ..Default::default()
    };
    let app = TestApp::with_config(backend, config).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(server::run_job_workers(app.state.clone(), async move {
        let _ = stopped.await;
    }));
    (app, stop, workers)
}

/// Polls the job until it is final, for up to 120 s (a refit fits models on a loaded machine).
async fn finished_job(app: &TestApp, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = app
            .get(&format!("/api/v1/jobs/{id}"), Some(key))
            .await
            .json();
        if ["success", "failed", "dead", "cancelled", "expired"]
            .contains(&job["status"].as_str().unwrap_or(""))
        {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job {id}: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn assert_missing(reply: &crate::Reply, path: &str, reason: &str) {
    let problem = reply.assert_problem(404, "not_found", path);
    assert_eq!(problem["reason"], reason, "{problem}");
}

async fn refit_through_the_job_serves_the_three_endpoints(backend: Backend) {
    let (app, stop, workers) = app_with_job_workers(backend).await;
    let (tenant, key) = app
        .tenant("shop", &[Scope::Read, Scope::Write, Scope::Admin])
        .await;
    let key = key.secret;
    let customers = simulated(11);
    let first = customers[0].customer_id.clone();
    let clv_path = format!("/api/v1/users/{first}/clv-prediction");

    // Nothing yet: no purchases, then purchases but no model.
    assert_missing(
        &app.get(&clv_path, Some(&key)).await,
        &clv_path,
        "no_purchases",
    );
    assert_missing(
        &app.get("/api/v1/predictions/model", Some(&key)).await,
        "/api/v1/predictions/model",
        "not_fitted",
    );
    let sent = send_purchases(&app, &key, &customers).await;
    let profiles = store_profiles(&app, &tenant.id, &customers).await;
    assert_missing(
        &app.get(&clv_path, Some(&key)).await,
        &clv_path,
        "not_fitted",
    );

    // The refit, through the job queue.
    let reply = app
        .call(Method::POST, "/api/v1/predictions/refit", Some(&key), None)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let job_id = reply.json()["id"].as_str().unwrap().to_owned();
    let job = finished_job(&app, &key, &job_id).await;
    assert_eq!(job["status"], "success", "{job}");
    let result = &job["result"];
    assert_eq!(result["fitted"], true, "{job}");
    assert_eq!(result["model_version"], "bgnbd-gg-v1", "{job}");
    assert_eq!(result["purchases"], sent, "{job}");
    assert_eq!(result["customers"], customers.len(), "{job}");
    assert_eq!(result["customers_with_profiles"], profiles.len(), "{job}");

    let model = app.get("/api/v1/predictions/model", Some(&key)).await;
    assert_eq!(model.status, 200, "{}", model.text());
    let model = model.json();
    assert_eq!(model["model_version"], "bgnbd-gg-v1");
    assert_eq!(model["customers"], customers.len());
    assert!(
        model["model"]["bgnbd"]["params"]["r"].as_f64().unwrap() > 0.0,
        "{model}"
    );

    // The same fit, made here from the same inputs, is what the endpoints serve.
    let purchases: Vec<lifetime::summary::Purchase> = customers
        .iter()
        .flat_map(|c| c.purchases_for_summary())
        .collect();
    let weber: HashMap<String, WeberFeatures> = profiles
        .iter()
        .map(|p| {
            let segment = serde_json::from_value(json!(p.sensitivity_segment)).unwrap();
            (
                p.user_id.clone(),
                WeberFeatures {
                    weber_constant: p.weber_constant,
                    bias_ratio: p.bias_ratio,
                    segment,
                    confidence: p.calculation_confidence,
                },
            )
        })
        .collect();
    let settings = app.state.config().predictions.model_settings();
    let expected = lifetime::model::fit_model(
        &purchases,
        &weber,
        lifetime::model::Split::Serving {
            observation_end: today(),
        },
        &settings,
    )
    .unwrap();
    let predictions: HashMap<String, lifetime::model::CustomerPrediction> =
        expected.predict_all(&weber).into_iter().collect();

    let with_profile = &profiles[0].user_id;
    for user in [&first, with_profile] {
        let want = &predictions[user.as_str()];
        let clv_path = format!("/api/v1/users/{user}/clv-prediction");
        let clv = app.get(&clv_path, Some(&key)).await;
        assert_eq!(clv.status, 200, "{}", clv.text());
        let clv = clv.json();
        assert_eq!(clv["user_id"], user.as_str());
        assert_eq!(clv["predicted_clv"], json!(want.clv), "{clv}");
        assert_eq!(
            clv["confidence_interval"],
            json!(want.clv_interval),
            "{clv}"
        );
        assert_eq!(clv["p_alive"], json!(want.p_alive), "{clv}");
        assert_eq!(clv["expected_purchases"], json!(want.expected_purchases));
        assert_eq!(
            clv["expected_average_value"],
            json!(want.expected_average_value)
        );
        assert_eq!(clv["model_version"], "bgnbd-gg-v1");
        assert_eq!(clv["horizon_months"], 12);
        assert!(clv["prediction_date"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z')));
        let importance = clv["weber_features_importance"].as_object().unwrap();
        assert_eq!(
            importance.len(),
            expected.weber_features_importance().len(),
            "{clv}"
        );

        let churn_path = format!("/api/v1/users/{user}/churn-prediction");
        let churn = app.get(&churn_path, Some(&key)).await;
        assert_eq!(churn.status, 200, "{}", churn.text());
        let churn = churn.json();
        assert_eq!(churn["churn_risk_score"], json!(want.churn_risk), "{churn}");
        assert_eq!(churn["churn_risk_timing"], json!(want.churn_risk_timing));
        assert_eq!(churn["risk_level"], want.risk_level.as_str());
        assert_eq!(churn["model"], want.model.as_str());
        assert_eq!(churn["prediction_horizon_days"], 30);
        assert_eq!(churn["model_version"], "bgnbd-gg-v1");
        assert_eq!(
            churn["key_risk_factors"],
            serde_json::to_value(&want.risk_factors).unwrap()
        );
        let interventions = churn["recommended_interventions"].as_array().unwrap();
        assert!(!interventions.is_empty() && interventions.iter().all(Value::is_string));
    }

    // Recommendations: each segment's strategy from the default table; interventions first for
    // customers at medium or high risk.
    let table = lifetime::recommend::RecommendationTable::default();
    let mut seen = std::collections::HashSet::new();
    for p in &profiles {
        if !seen.insert(p.sensitivity_segment.clone()) {
            continue;
        }
        let segment: weber::SensitivitySegment =
            serde_json::from_value(json!(p.sensitivity_segment)).unwrap();
        let path = format!(
            "/api/v1/recommendations/weber-enhanced?user_id={}&max_recommendations=3&include_rationale=false",
            p.user_id
        );
        let reply = app.get(&path, Some(&key)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer = reply.json();
        assert_eq!(
            answer["strategy"],
            table.for_segment(segment).strategy.as_str()
        );
        assert_eq!(answer["weber_segment"], p.sensitivity_segment.as_str());
        assert_eq!(answer["confidence_score"], json!(p.calculation_confidence));
        assert!(answer["generation_time_ms"].as_f64().is_some());
        assert_eq!(answer["model_version"], "bgnbd-gg-v1");
        let items = answer["recommendations"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 3, "{answer}");
        assert!(
            items.iter().all(|i| i.get("rationale").is_none()),
            "{answer}"
        );
        let at_risk = predictions[&p.user_id].risk_level != lifetime::churn::RiskLevel::Low;
        assert_eq!(
            items[0]["source"] == "churn_intervention",
            at_risk,
            "{answer}"
        );
        let body = json!({"user_id": p.user_id, "max_recommendations": 50});
        let posted = app
            .call(
                Method::POST,
                "/api/v1/recommendations/weber-enhanced",
                Some(&key),
                Some(body),
            )
            .await;
        assert_eq!(posted.status, 200, "{}", posted.text());
        let all = posted.json()["recommendations"].as_array().unwrap().clone();
        assert!(all.len() >= items.len());
        assert!(all.iter().all(|i| i["rationale"].is_string()));
    }
    assert_eq!(seen.len(), 4, "the simulation covers every segment");
    let without_profile = customers
        .iter()
        .find(|c| !profiles.iter().any(|p| p.user_id == c.customer_id))
        .unwrap();
    let path = format!(
        "/api/v1/recommendations/weber-enhanced?user_id={}",
        without_profile.customer_id
    );
    let reply = app.get(&path, Some(&key)).await;
    let problem = reply.assert_problem(404, "not_found", "/api/v1/recommendations/weber-enhanced");
    assert_eq!(problem["reason"], "no_weber_profile");
    app.get(
        "/api/v1/recommendations/weber-enhanced?user_id=x&max_recommendations=51",
        Some(&key),
    )
    .await
    .assert_problem(
        400,
        "invalid_parameter",
        "/api/v1/recommendations/weber-enhanced",
    );

    // A second refit (inline, as the demo data does) serves under the next version.
    let again = server::predictions::PredictionService::refit(&app.state, &tenant.id)
        .await
        .unwrap();
    assert_eq!(again.model_version.as_deref(), Some("bgnbd-gg-v2"));
    let clv = app.get(&clv_path, Some(&key)).await.json();
    assert_eq!(clv["model_version"], "bgnbd-gg-v2");

    let metrics = app.get("/metrics", None).await.text();
    for series in [
        "weber_prediction_refits_total",
        "weber_prediction_refit_seconds",
        "weber_prediction_customers_scored_total",
        "weber_prediction_reads_total",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn refit_through_the_job_serves_the_three_endpoints_sqlite() {
    refit_through_the_job_serves_the_three_endpoints(Backend::Sqlite).await;
}

#[tokio::test]
async fn refit_through_the_job_serves_the_three_endpoints_postgres() {
    refit_through_the_job_serves_the_three_endpoints(Backend::Postgres).await;
}

async fn another_tenant_can_neither_read_nor_refit_the_predictions(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (a, ka) = app.tenant("a", &[Scope::Read, Scope::Write]).await;
    let (b, kb) = app
        .tenant("b", &[Scope::Read, Scope::Write, Scope::Admin])
        .await;
    let customers = simulated(5);
    send_purchases(&app, &ka.secret, &customers).await;
    let fitted = server::predictions::PredictionService::refit(&app.state, &a.id)
        .await
        .unwrap();
    assert!(fitted.fitted, "{fitted:?}");
    let user = &customers[1].customer_id;
    let clv = format!("/api/v1/users/{user}/clv-prediction");
    assert_eq!(app.get(&clv, Some(&ka.secret)).await.status, 200);
    // Tenant b sees none of it.
    assert_missing(&app.get(&clv, Some(&kb.secret)).await, &clv, "no_purchases");
    let churn = format!("/api/v1/users/{user}/churn-prediction");
    assert_missing(
        &app.get(&churn, Some(&kb.secret)).await,
        &churn,
        "no_purchases",
    );
    assert_missing(
        &app.get("/api/v1/predictions/model", Some(&kb.secret)).await,
        "/api/v1/predictions/model",
        "not_fitted",
    );
    // Its refit fits its own (empty) history: nothing, and a's model is untouched.
    let b_refit = server::predictions::PredictionService::refit(&app.state, &b.id)
        .await
        .unwrap();
    assert!(!b_refit.fitted && b_refit.reason.is_some(), "{b_refit:?}");
    let a_model = app
        .fixture
        .store
        .latest_prediction_model(&a.id)
        .await
        .unwrap();
    assert_eq!(a_model.map(|m| m.version), Some(1));
    // a's key without the admin scope may not ask for a refit.
    app.call(
        Method::POST,
        "/api/v1/predictions/refit",
        Some(&ka.secret),
        None,
    )
    .await
    .assert_problem(403, "forbidden", "/api/v1/predictions/refit");
    // A one-purchase history is too short to fit: a result that says so, not an error.
    let (c, kc) = app.tenant("c", &[Scope::Write]).await;
    post(
        &app,
        &kc.secret,
        json!([purchase("o", "solo", "2025-01-01T00:00:00Z", 3.0)]),
    )
    .await;
    let short = server::predictions::PredictionService::refit(&app.state, &c.id)
        .await
        .unwrap();
    assert_eq!((short.fitted, short.purchases), (false, 1), "{short:?}");
    let solo = "/api/v1/users/solo/clv-prediction";
    let (_, kc_read) = {
        let k = app
            .fixture
            .store
            .issue_api_key(&c.id, [Scope::Read].into_iter().collect(), None)
            .await
            .unwrap();
        ((), k)
    };
    assert_missing(
        &app.get(solo, Some(&kc_read.secret)).await,
        solo,
        "not_fitted",
    );
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenant_can_neither_read_nor_refit_the_predictions_sqlite() {
    another_tenant_can_neither_read_nor_refit_the_predictions(Backend::Sqlite).await;
}

#[tokio::test]
async fn another_tenant_can_neither_read_nor_refit_the_predictions_postgres() {
    another_tenant_can_neither_read_nor_refit_the_predictions(Backend::Postgres).await;
}

#[tokio::test]
async fn a_daily_refit_schedule_is_created_once() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (t, _) = app.tenant("shop", &[Scope::Read]).await;
    let store = &app.fixture.store;
    assert!(
        server::predictions::ensure_refit_schedule(store, &t.id, now_ms())
            .await
            .unwrap()
    );
    assert!(
        !server::predictions::ensure_refit_schedule(store, &t.id, now_ms())
            .await
            .unwrap()
    );
    let schedules = store.job_schedules(&t.id).await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].handler, "weber.refit_predictions");
    assert_eq!(schedules[0].cron, server::predictions::REFIT_CRON);
    app.cleanup().await;
}
