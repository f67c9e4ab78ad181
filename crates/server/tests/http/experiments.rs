//! Experiments over HTTP: lifecycle, metric events, results against data whose answer is known,
//! the exposure recorder feeding them, tenant isolation and bad input.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Exposure, Scope};

use crate::TestApp;

/// An experiment on `checkout-button`, which it creates when the tenant has no such flag in
/// the environment (and uses, if it matches, when it has).
pub fn spec(key: &str) -> Value {
    json!({
        "key": key,
        "hypothesis": "A green button raises checkout conversion",
        "flag_key": "checkout-button",
        "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
        "control": "control",
        "primary_metric": {"key": "checkout", "kind": "conversion", "goal": "increase",
                           "minimum_detectable_effect": 0.2},
        "secondary_metrics": [{"key": "revenue", "kind": "value", "goal": "increase",
                               "minimum_detectable_effect": 1.0}],
        "min_sample_size": 100,
        "early_stopping": false,
        "create_flag": true
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An assignment now (so inside the window of an experiment started before).
pub fn exposure(user: &str, variant: &str) -> Exposure {
    Exposure {
        environment: "production".to_owned(),
        flag_key: "checkout-button".to_owned(),
        targeting_key: user.to_owned(),
        variant: variant.to_owned(),
        at_ms: now_ms(),
    }
}

async fn post(app: &TestApp, path: &str, key: &str, body: Option<Value>) -> crate::Reply {
    app.call(Method::POST, path, Some(key), body).await
}

#[tokio::test]
async fn lifecycle_create_start_pause_resume_conclude() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    let created = post(&app, "/api/v1/experiments", key, Some(spec("exp-1"))).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.headers["location"], "/api/v1/experiments/exp-1");
    assert_eq!(created.headers["etag"], "\"1\"");
    let body = created.json();
    assert_eq!(body["state"], "draft");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["spec"]["alpha"], 0.05, "defaults filled in");
    assert_eq!(body["spec"]["flag_key"], "checkout-button");

    let got = app.get("/api/v1/experiments/exp-1", Some(key)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["etag"], "\"1\"");
    assert_eq!(got.json(), body);

    let started = post(&app, "/api/v1/experiments/exp-1/start", key, None).await;
    assert_eq!(started.status, 200, "{}", started.text());
    assert_eq!(started.json()["state"], "running");
    assert_eq!(started.json()["version"], 2);
    assert_eq!(started.headers["etag"], "\"2\"");
    assert!(started.json()["started_at"].is_string());

    let again = post(&app, "/api/v1/experiments/exp-1/start", key, None).await;
    let problem = again.assert_problem(409, "invalid_state", "/api/v1/experiments/exp-1/start");
    assert_eq!(
        problem["detail"],
        "cannot start an experiment that is running"
    );
    assert_eq!(problem["state"], "running");

    let paused = post(&app, "/api/v1/experiments/exp-1/pause", key, None).await;
    assert_eq!(paused.json()["state"], "paused");
    assert!(paused.json()["paused_at"].is_string());
    let resumed = post(&app, "/api/v1/experiments/exp-1/resume", key, None).await;
    assert_eq!(resumed.json()["state"], "running");
    assert_eq!(resumed.json()["paused_at"], Value::Null);

    let bad_winner = post(
        &app,
        "/api/v1/experiments/exp-1/conclude",
        key,
        Some(json!({"winner": "purple"})),
    )
    .await;
    let problem =
        bad_winner.assert_problem(422, "unprocessable", "/api/v1/experiments/exp-1/conclude");
    assert_eq!(problem["field"], "winner");

    let concluded = post(
        &app,
        "/api/v1/experiments/exp-1/conclude",
        key,
        Some(json!({"winner": "green"})),
    )
    .await;
    assert_eq!(concluded.status, 200, "{}", concluded.text());
    assert_eq!(concluded.json()["state"], "completed");
    assert_eq!(concluded.json()["winner"], "green");
    let resume = post(&app, "/api/v1/experiments/exp-1/resume", key, None).await;
    resume.assert_problem(409, "invalid_state", "/api/v1/experiments/exp-1/resume");

    // Conclude without a body; the listing filters by environment.
    post(
        &app,
        "/api/v1/experiments?environment=staging",
        key,
        Some(spec("exp-2")),
    )
    .await;
    post(&app, "/api/v1/experiments/exp-2/start", key, None).await;
    let plain = post(&app, "/api/v1/experiments/exp-2/conclude", key, None).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["winner"], Value::Null);
    // The windows it ran in, and the filters of the list.
    assert_eq!(concluded.json()["windows"].as_array().unwrap().len(), 2);
    assert_eq!(plain.json()["windows"].as_array().unwrap().len(), 1);
    let completed = app
        .get("/api/v1/experiments?status=completed", Some(key))
        .await
        .json();
    assert_eq!(completed["experiments"].as_array().unwrap().len(), 2);
    let drafts = app
        .get("/api/v1/experiments?status=draft", Some(key))
        .await
        .json();
    assert_eq!(drafts["experiments"], json!([]));
    let all = app.get("/api/v1/experiments", Some(key)).await.json();
    let keys: Vec<&str> = all["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["exp-1", "exp-2"]);
    let staging = app
        .get("/api/v1/experiments?environment=staging", Some(key))
        .await
        .json();
    assert_eq!(staging["experiments"].as_array().unwrap().len(), 1);
    assert_eq!(staging["experiments"][0]["environment"], "staging");
    app.cleanup().await;
}

#[tokio::test]
async fn events_are_validated_one_by_one_and_counted_once() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    post(&app, "/api/v1/experiments", key, Some(spec("exp"))).await;
    let path = "/api/v1/experiments/exp/events";
    let one = json!({"events": [{"user": "u1", "metric": "checkout"}]});

    let draft = post(&app, path, key, Some(one.clone())).await;
    let problem = draft.assert_problem(409, "invalid_state", path);
    assert_eq!(problem["state"], "draft");
    post(&app, "/api/v1/experiments/exp/start", key, None).await;

    let mixed = post(
        &app,
        path,
        key,
        Some(json!({"events": [
            {"user": "u1", "metric": "checkout", "event_id": "e-1"},
            {"user": "u1", "metric": "signup"},
            {"user": "u2", "metric": "revenue", "value": 12.5, "timestamp": "2026-01-02T03:04:05Z"},
            {"user": "", "metric": "checkout", "event_id": "e-3"},
            {"user": "u3", "metric": "revenue", "value": "lots"},
            {"user": "u1", "metric": "checkout", "event_id": "e-1"}
        ]})),
    )
    .await;
    assert_eq!(mixed.status, 200, "{}", mixed.text());
    let body = mixed.json();
    assert_eq!(
        (&body["accepted"], &body["stored"], &body["duplicates"]),
        (&json!(3), &json!(2), &json!(1))
    );
    let rejected = body["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, [(1, "metric"), (3, "user"), (4, "value")]);
    assert_eq!(rejected[1]["event_id"], "e-3");
    assert!(
        rejected[0]["reason"].as_str().unwrap().contains("signup"),
        "{body}"
    );

    // A resend of e-1 is accepted and not counted again.
    let resend = post(
        &app,
        path,
        key,
        Some(json!({"events": [{"user": "u1", "metric": "checkout", "event_id": "e-1"}]})),
    )
    .await
    .json();
    assert_eq!(
        (&resend["stored"], &resend["duplicates"]),
        (&json!(0), &json!(1))
    );

    let all_bad = post(&app, path, key, Some(json!({"events": [{"user": "u1"}]}))).await;
    let problem = all_bad.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["rejected"][0]["field"], "metric");

    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"user": format!("u{i}"), "metric": "checkout"}))
        .collect();
    let big = app
        .send(
            axum::http::Request::post(path)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({ "events": too_many }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    // The default body limit (1 MiB) or the event limit: either way 413.
    big.assert_problem(413, "payload_too_large", path);

    let not_events = post(&app, path, key, Some(json!({"evnts": []}))).await;
    let problem = not_events.assert_problem(400, "invalid_field", path);
    assert_eq!(problem["field"], "events");

    // Write scope is enough for events, not for the lifecycle.
    let writer = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Write].into_iter().collect(), None)
        .await
        .unwrap();
    let ok = post(&app, path, &writer.secret, Some(one)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let start = post(&app, "/api/v1/experiments/exp/pause", &writer.secret, None).await;
    start.assert_problem(403, "forbidden", "/api/v1/experiments/exp/pause");
    app.cleanup().await;
}

/// 100 users per variant; 10 control and 30 green users convert, each converting user also
/// spends 5.0 (revenue).
async fn known_dataset(app: &TestApp, tenant_id: &str, key: &str) {
    post(app, "/api/v1/experiments", key, Some(spec("exp"))).await;
    post(app, "/api/v1/experiments/exp/start", key, None).await;
    for i in 0..100 {
        app.state
            .exposures()
            .record(tenant_id, exposure(&format!("c{i}"), "control"));
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
        events.push(json!({"user": format!("g{i}"), "metric": "revenue", "value": 5.0}));
    }
    let stored = post(
        app,
        "/api/v1/experiments/exp/events",
        key,
        Some(json!({ "events": events })),
    )
    .await;
    assert_eq!(stored.json()["stored"], 80, "{}", stored.text());
}

async fn results_match_the_statistics_computed_directly(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    known_dataset(&app, &tenant.id, key).await;

    let reply = app.get("/api/v1/experiments/exp/results", Some(key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let r = reply.json();
    assert_eq!(r["users"], json!({"control": 100, "green": 100}));
    assert_eq!(r["srm"]["mismatch"], false);
    assert_eq!(r["srm"]["statistic"], 0.0);

    let checkout = &r["metrics"][0];
    assert_eq!(
        (&checkout["metric"], &checkout["role"], &checkout["kind"]),
        (&json!("checkout"), &json!("primary"), &json!("conversion"))
    );
    assert_eq!(checkout["variants"][0]["variant"], "control");
    assert_eq!(checkout["variants"][0]["n"], 100);
    assert_eq!(checkout["variants"][0]["mean"], 0.1);
    assert_eq!(checkout["variants"][1]["mean"], 0.3);
    let c = &checkout["comparisons"][0];
    let chi = flags::stats::chi_square_2x2(30, 100, 10, 100, true).unwrap();
    assert_eq!(c["test"], "chi_square");
    assert_eq!(c["p_value"].as_f64().unwrap(), chi.p_value);
    assert_eq!(
        c["chi_square"]["statistic"].as_f64().unwrap(),
        chi.statistic
    );
    assert!(
        chi.p_value < 0.05,
        "the dataset is significant: {}",
        chi.p_value
    );
    assert_eq!(c["significant"], true);
    assert_eq!(c["improves"], true);
    let t = flags::stats::Summary::from_conversions(30, 100).unwrap();
    let ctl = flags::stats::Summary::from_conversions(10, 100).unwrap();
    let welch = flags::stats::welch_t_test(&t, &ctl, 0.95).unwrap();
    assert_eq!(c["welch_t"]["p_value"].as_f64().unwrap(), welch.p_value);
    assert_eq!(
        c["difference"]["estimate"].as_f64().unwrap(),
        welch.difference
    );
    let lift = flags::stats::relative_lift(&t, &ctl, 0.95).unwrap();
    assert_eq!(c["relative_lift"]["estimate"].as_f64().unwrap(), lift.lift);
    assert_eq!(c["relative_lift"]["ci_low"].as_f64().unwrap(), lift.ci_low);

    // Revenue: raw per-user values, so Mann-Whitney U is reported.
    let revenue = &r["metrics"][1];
    assert_eq!(revenue["role"], "secondary");
    let values = |spenders: usize| -> Vec<f64> {
        (0..100)
            .map(|i| if i < spenders { 5.0 } else { 0.0 })
            .collect()
    };
    let mw = flags::stats::mann_whitney_u(&values(30), &values(10)).unwrap();
    assert_eq!(
        revenue["comparisons"][0]["mann_whitney_p"]
            .as_f64()
            .unwrap(),
        mw.p_value
    );
    assert_eq!(revenue["comparisons"][0]["test"], "welch_t");
    assert_eq!(revenue["variants"][1]["mean"], 1.5);

    // 100 users per variant reach the planned size: ship green, in words too.
    assert_eq!(r["recommendation"]["action"], "ship", "{r}");
    assert_eq!(r["recommendation"]["variant"], "green");
    assert_eq!(r["recommendation"]["text"], "ship green");
    assert!(r["required_per_variant"].as_u64().unwrap() >= 100);

    // The sequential test's running minimum is kept for the next look.
    let p = r["sequential"]["p_values"]["green"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    let stored = app
        .fixture
        .store
        .experiment(&tenant.id, "exp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.sequential_p.get("green"), Some(&p));
    let again = app
        .get("/api/v1/experiments/exp/results", Some(key))
        .await
        .json();
    assert!(again["sequential"]["p_values"]["green"].as_f64().unwrap() <= p);
    app.cleanup().await;
}

#[tokio::test]
async fn results_match_the_statistics_computed_directly_on_sqlite() {
    results_match_the_statistics_computed_directly(Backend::Sqlite).await;
}

#[tokio::test]
async fn results_match_the_statistics_computed_directly_on_postgres() {
    results_match_the_statistics_computed_directly(Backend::Postgres).await;
}

#[tokio::test]
async fn results_without_enough_data_say_what_is_missing() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    post(&app, "/api/v1/experiments", key, Some(spec("exp"))).await;
    let path = "/api/v1/experiments/exp/results";
    let reply = app.get(path, Some(key)).await;
    let problem = reply.assert_problem(422, "unprocessable", path);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not enough data"),
        "{problem}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn the_recorder_dedupes_counts_and_flushes_on_shutdown() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, _) = app.tenant("t", &[Scope::Admin]).await;
    let recorder = app.state.exposures();
    recorder.record(&tenant.id, exposure("u1", "green"));
    recorder.record(&tenant.id, exposure("u1", "green"));
    recorder.record(&tenant.id, exposure("u1", "control"));
    // Refused by the store's rules: counted, not queued.
    recorder.record(&tenant.id, exposure("", "green"));
    recorder.flush().await;
    let row = app
        .fixture
        .store
        .exposure(&tenant.id, "production", "checkout-button", "u1")
        .await
        .unwrap()
        .unwrap();
    // The repeat of (u1, green) was deduped; the other variant was written, the first kept.
    assert_eq!((row.variant.as_str(), row.count), ("green", 2));
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.contains(&format!(
            "flag_exposures_total{{tenant_id=\"{}\"}} 4",
            tenant.id
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("flag_exposure_write_errors_total 0"),
        "{metrics}"
    );

    // Queued, then a graceful stop: the writer stores it before returning.
    recorder.record(&tenant.id, exposure("u2", "green"));
    let _ = app.stop_worker.send(true);
    let store = app.fixture.store.clone();
    let TestApp {
        exposure_writer,
        worker,
        fixture,
        ..
    } = app;
    exposure_writer.await.unwrap();
    worker.await.unwrap();
    let u2 = store
        .exposure(&tenant.id, "production", "checkout-button", "u2")
        .await
        .unwrap();
    assert_eq!(u2.map(|e| e.variant), Some("green".to_owned()));
    fixture.cleanup().await;
}

#[tokio::test]
async fn tenants_cannot_reach_each_others_experiments_or_exposures() {
    let app = TestApp::new(Backend::Postgres).await;
    let (a, ka) = app.tenant("a", &[Scope::Admin]).await;
    let (_, kb) = app.tenant("b", &[Scope::Admin]).await;
    known_dataset(&app, &a.id, &ka.secret).await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/experiments/exp", None),
        (Method::GET, "/api/v1/experiments/exp/results", None),
        (Method::POST, "/api/v1/experiments/exp/pause", None),
        (
            Method::POST,
            "/api/v1/experiments/exp/events",
            Some(json!({"events": [{"user": "c1", "metric": "checkout"}]})),
        ),
    ] {
        let reply = app.call(method, path, Some(&kb.secret), body).await;
        reply.assert_problem(404, "not_found", path);
    }
    let listed = app
        .get("/api/v1/experiments", Some(&kb.secret))
        .await
        .json();
    assert_eq!(listed["experiments"], json!([]));
    // B's own experiment on the same flag key sees none of A's exposures or events.
    post(&app, "/api/v1/experiments", &kb.secret, Some(spec("exp"))).await;
    let b_results = app
        .get("/api/v1/experiments/exp/results", Some(&kb.secret))
        .await;
    b_results.assert_problem(422, "unprocessable", "/api/v1/experiments/exp/results");
    // A's experiment is untouched.
    let a_exp = app
        .get("/api/v1/experiments/exp", Some(&ka.secret))
        .await
        .json();
    assert_eq!(a_exp["state"], "running");
    app.cleanup().await;
}

#[tokio::test]
async fn bad_definitions_are_refused_naming_the_field() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("r", &[Scope::Read]).await;
    let key = admin.secret.as_str();
    let path = "/api/v1/experiments";
    for (change, field) in [
        (json!({"alpha": 0.7}), "alpha"),
        (json!({"power": 0.2}), "power"),
        (json!({"control": "blue"}), "control"),
        (
            json!({"variants": [{"key": "control", "weight": 1}]}),
            "variants",
        ),
        (json!({"key": "has space"}), "key"),
        (json!({"flag_key": ""}), "flag_key"),
        (
            json!({"primary_metric": {"key": "checkout", "kind": "conversion", "goal": "increase",
                                      "minimum_detectable_effect": -1.0}}),
            "primary_metric",
        ),
        // The seed's settings.
        (json!({"traffic_percentage": 0}), "traffic_percentage"),
        (json!({"traffic_percentage": 150}), "traffic_percentage"),
        (
            json!({"minimum_duration_days": 40}),
            "minimum_duration_days",
        ),
        (json!({"maximum_duration_days": 0}), "maximum_duration_days"),
        (json!({"end_at": "2001-01-01T00:00:00Z"}), "end_at"),
        (json!({"start_at": "tomorrow"}), "start_at"),
        (
            json!({"target_audience": {"colour": "red"}}),
            "target_audience",
        ),
        (
            json!({"target_audience": {"attribute": "country", "op": "sounds_like", "value": "de"}}),
            "target_audience",
        ),
        (
            json!({"exclusion_rules": [{"any": 3}]}),
            "exclusion_rules[0]",
        ),
        (json!({"tags": ["a", "a"]}), "tags"),
        // The flag: missing without create_flag.
        (
            json!({"flag_key": "nope", "create_flag": false}),
            "flag_key",
        ),
    ] {
        let mut body = spec("bad");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let reply = post(&app, path, key, Some(body)).await;
        let problem = reply.assert_problem(422, "unprocessable", path);
        assert_eq!(problem["field"], field, "{change}: {problem}");
    }
    let mut wrong_type = spec("bad");
    wrong_type["primary_metric"]["kind"] = json!("ratio");
    let problem = post(&app, path, key, Some(wrong_type))
        .await
        .assert_problem(400, "invalid_field", path);
    assert_eq!(problem["field"], "primary_metric.kind");

    let bad_env = post(
        &app,
        "/api/v1/experiments?environment=a%20b",
        key,
        Some(spec("x")),
    )
    .await;
    let problem = bad_env.assert_problem(400, "invalid_parameter", path);
    assert_eq!(problem["parameter"], "environment");

    assert_eq!(post(&app, path, key, Some(spec("dup"))).await.status, 201);
    post(&app, path, key, Some(spec("dup")))
        .await
        .assert_problem(409, "conflict", path);
    post(&app, path, &reader.secret, Some(spec("r")))
        .await
        .assert_problem(403, "forbidden", path);
    app.get("/api/v1/experiments/nope", Some(key))
        .await
        .assert_problem(404, "not_found", "/api/v1/experiments/nope");
    // Nothing invalid was stored.
    let listed = app.get(path, Some(key)).await.json();
    assert_eq!(listed["experiments"].as_array().unwrap().len(), 1);
    app.cleanup().await;
}

/// Hostile values: 1e30 and 1.7e308 were accepted, their sum overflowed and the results
/// answered 422 for good. Now each is refused on its own, the results still compute, and a
/// wrong event that was accepted can be voided.
async fn huge_values_are_refused_and_wrong_events_can_be_voided(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let writer = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Write].into_iter().collect(), None)
        .await
        .unwrap();
    let key = admin.secret.as_str();
    known_dataset(&app, &tenant.id, key).await;

    let sent = post(
        &app,
        "/api/v1/experiments/exp/events",
        key,
        Some(json!({"events": [
            {"user": "g1", "metric": "revenue", "value": 1e30, "event_id": "huge"},
            {"user": "g2", "metric": "revenue", "value": 1.7e308, "event_id": "max"},
            {"user": "g3", "metric": "revenue", "value": -1.7e308},
            {"user": "g0", "metric": "revenue", "value": 1e8, "event_id": "typo"},
        ]})),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let body = sent.json();
    assert_eq!(
        (body["accepted"].clone(), body["stored"].clone()),
        (json!(1), json!(1))
    );
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "{body}");
    for r in rejected {
        assert_eq!(r["field"], "value", "{r}");
        assert!(r["reason"].as_str().unwrap().contains("bound"), "{r}");
    }

    let revenue_mean = |r: &Value, variant: usize| {
        r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "revenue")
            .unwrap()["variants"][variant]["mean"]
            .as_f64()
            .unwrap()
    };
    let path = "/api/v1/experiments/exp/results";
    let reply = app.get(path, Some(key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(revenue_mean(&reply.json(), 1), (150.0 + 1e8) / 100.0);

    // Voiding: admin only, by event_id, recorded, and no longer counted.
    let void = "/api/v1/experiments/exp/events/typo";
    app.call(Method::DELETE, void, Some(&writer.secret), None)
        .await
        .assert_problem(403, "forbidden", void);
    let voided = app.call(Method::DELETE, void, Some(key), None).await;
    assert_eq!(voided.status, 200, "{}", voided.text());
    let voided = voided.json();
    assert_eq!(voided["value"], 1e8);
    assert_eq!(voided["voided_by"], admin.info.id.as_str());
    let again = app.call(Method::DELETE, void, Some(key), None).await.json();
    assert_eq!(
        again["voided_at"], voided["voided_at"],
        "voiding twice is harmless"
    );
    let missing = "/api/v1/experiments/exp/events/never-sent";
    app.call(Method::DELETE, missing, Some(key), None)
        .await
        .assert_problem(404, "not_found", missing);
    let reply = app.get(path, Some(key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(revenue_mean(&reply.json(), 1), 1.5);
    app.cleanup().await;
}

#[tokio::test]
async fn huge_values_are_refused_and_wrong_events_can_be_voided_on_sqlite() {
    huge_values_are_refused_and_wrong_events_can_be_voided(Backend::Sqlite).await;
}

#[tokio::test]
async fn huge_values_are_refused_and_wrong_events_can_be_voided_on_postgres() {
    huge_values_are_refused_and_wrong_events_can_be_voided(Backend::Postgres).await;
}

#[tokio::test]
async fn a_metric_sets_its_own_value_bound_within_the_limit() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let mut bounded = spec("bounded");
    bounded["secondary_metrics"][0]["max_abs_value"] = json!(50.0);
    let created = post(&app, "/api/v1/experiments", key, Some(bounded)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        created.json()["spec"]["secondary_metrics"][0]["max_abs_value"],
        50.0
    );
    post(&app, "/api/v1/experiments/bounded/start", key, None).await;
    let sent = post(
        &app,
        "/api/v1/experiments/bounded/events",
        key,
        Some(json!({"events": [
            {"user": "u1", "metric": "revenue", "value": 50.0},
            {"user": "u1", "metric": "revenue", "value": -60.0},
        ]})),
    )
    .await
    .json();
    assert_eq!(sent["stored"], 1, "{sent}");
    assert_eq!(sent["rejected"][0]["index"], 1, "{sent}");

    let mut too_wide = spec("too-wide");
    too_wide["primary_metric"]["max_abs_value"] = json!(1e13);
    let refused = post(&app, "/api/v1/experiments", key, Some(too_wide)).await;
    let problem = refused.assert_problem(422, "unprocessable", "/api/v1/experiments");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_abs_value"),
        "{problem}"
    );
    app.cleanup().await;
}

// ---- the periodic review (`experiments.review`), driven with its clock passed in ----------

const DAY_MS: i64 = 86_400_000;

async fn flag_definition(app: &TestApp, key: &str, flag: &str) -> Value {
    let reply = app
        .get(
            &format!("/api/v1/flags/{flag}?environment=production"),
            Some(key),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["definition"].clone()
}

async fn served_variant(app: &TestApp, key: &str, user: &str) -> Value {
    let reply = post(
        app,
        "/ofrep/v1/evaluate/flags/checkout-button",
        key,
        Some(json!({"context": {"targetingKey": user}})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["variant"].clone()
}

async fn review(app: &TestApp, tenant_id: &str, now: i64) -> server::experiments::ReviewSummary {
    server::experiments::review_experiments(&app.state, tenant_id, now)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_review_starts_a_scheduled_experiment_and_completes_it_at_the_maximum_duration() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let now = now_ms();
    let mut scheduled = spec("scheduled");
    scheduled["start_at"] = json!(server::rfc3339_ms(now + 3_600_000));
    scheduled["maximum_duration_days"] = json!(10);
    scheduled["owner"] = json!("growth");
    scheduled["tags"] = json!(["checkout"]);
    let created = post(&app, "/api/v1/experiments", key, Some(scheduled)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    assert_eq!(body["spec"]["traffic_percentage"], 100, "{body}");
    assert_eq!(body["spec"]["minimum_duration_days"], 7);
    assert_eq!(body["spec"]["type"], "ab_test");
    assert_eq!(body["spec"]["early_stopping"], false);
    assert!(body["spec"].get("create_flag").is_none(), "never returned");
    // The created flag: a draft (not served) with the experiment's split.
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["status"], "draft", "{flag}");
    assert_eq!(flag["variants"][1]["weight_bp"], 5000, "{flag}");
    assert_eq!(flag["track_exposure"], true);

    let early = review(&app, &tenant.id, now).await;
    assert_eq!((early.reviewed, early.actions.len()), (1, 0), "{early:?}");
    let started = review(&app, &tenant.id, now + 3_600_000).await;
    assert_eq!(started.actions[0].action, "started", "{started:?}");
    let got = app
        .get("/api/v1/experiments/scheduled", Some(key))
        .await
        .json();
    assert_eq!(got["state"], "running");
    assert_eq!(
        got["started_at"],
        json!(server::rfc3339_ms(now + 3_600_000))
    );
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["status"], "active", "{flag}");
    assert_eq!(flag["rollout_bp"], 10_000, "{flag}");
    assert!(served_variant(&app, key, "u1").await.is_string());
    // The audit trail names the experiment as the actor of the flag's changes.
    assert_eq!(
        app.get(
            "/api/v1/flags/checkout-button?environment=production",
            Some(key)
        )
        .await
        .json()["updated_by"],
        "experiment:scheduled"
    );

    let nine_days = review(&app, &tenant.id, now + 3_600_000 + 9 * DAY_MS).await;
    assert!(nine_days.actions.is_empty(), "{nine_days:?}");
    let done = review(&app, &tenant.id, now + 3_600_000 + 10 * DAY_MS).await;
    assert_eq!(done.actions[0].action, "completed", "{done:?}");
    assert_eq!(done.actions[0].reason, "maximum duration reached");
    let got = app
        .get("/api/v1/experiments/scheduled", Some(key))
        .await
        .json();
    assert_eq!(got["state"], "completed");
    assert_eq!(got["reason"], "maximum duration reached");
    assert_eq!(got["winner"], Value::Null);
    for user in ["u1", "u2", "u3", "u4"] {
        assert_eq!(served_variant(&app, key, user).await, "control");
    }
    // Filters of the list.
    for (query, n) in [
        ("owner=growth", 1),
        ("owner=other", 0),
        ("tag=checkout", 1),
        ("tag=pricing", 0),
    ] {
        let listed = app
            .get(&format!("/api/v1/experiments?{query}"), Some(key))
            .await
            .json();
        assert_eq!(
            listed["experiments"].as_array().unwrap().len(),
            n,
            "{query}"
        );
    }
    let again = review(&app, &tenant.id, now + 20 * DAY_MS).await;
    assert_eq!((again.reviewed, again.actions.len()), (0, 0));
    app.cleanup().await;
}

/// A running experiment `key` on `checkout-button` with `body`'s settings: 100 users per
/// variant assigned now, 10 control and 40 green users converting, and per user a `latency`
/// of 100 (control) or 200 (green) with some spread.
async fn review_dataset(app: &TestApp, tenant_id: &str, key: &str, body: Value) {
    let created = post(app, "/api/v1/experiments", key, Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let name = created.json()["key"].as_str().unwrap().to_owned();
    let started = post(app, &format!("/api/v1/experiments/{name}/start"), key, None).await;
    assert_eq!(started.status, 200, "{}", started.text());
    for i in 0..100 {
        app.state
            .exposures()
            .record(tenant_id, exposure(&format!("c{i}"), "control"));
        app.state
            .exposures()
            .record(tenant_id, exposure(&format!("g{i}"), "green"));
    }
    app.state.exposures().flush().await;
    let mut events = Vec::new();
    for i in 0..100 {
        let spread = f64::from(i % 10);
        events.push(json!({"user": format!("c{i}"), "metric": "latency", "value": 100.0 + spread}));
        events.push(json!({"user": format!("g{i}"), "metric": "latency", "value": 200.0 + spread}));
        if i < 10 {
            events.push(json!({"user": format!("c{i}"), "metric": "checkout"}));
        }
        if i < 40 {
            events.push(json!({"user": format!("g{i}"), "metric": "checkout"}));
        }
    }
    let stored = post(
        app,
        &format!("/api/v1/experiments/{name}/events"),
        key,
        Some(json!({ "events": events })),
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
}

#[tokio::test]
async fn the_review_completes_early_on_the_sequential_test_after_the_minimum_duration() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let mut body = spec("early");
    body["early_stopping"] = json!(true);
    body["auto_conclude"] = json!(true);
    body["secondary_metrics"] = json!([]);
    body["guardrails"] = json!([{"metric": {"key": "latency", "kind": "value",
        "goal": "decrease", "minimum_detectable_effect": 1.0}, "max_relative_degradation": 2.0}]);
    review_dataset(&app, &tenant.id, key, body).await;
    let results = app
        .get("/api/v1/experiments/early/results", Some(key))
        .await
        .json();
    assert_eq!(results["recommendation"]["action"], "ship", "{results}");
    assert_eq!(results["recommendation"]["early"], true, "{results}");

    let now = now_ms();
    let too_soon = review(&app, &tenant.id, now + 6 * DAY_MS).await;
    assert!(too_soon.actions.is_empty(), "{too_soon:?}");
    let done = review(&app, &tenant.id, now + 7 * DAY_MS + 1).await;
    assert_eq!(done.actions.len(), 1, "{done:?}");
    assert_eq!(done.actions[0].action, "completed");
    assert_eq!(done.actions[0].winner.as_deref(), Some("green"));
    let got = app.get("/api/v1/experiments/early", Some(key)).await.json();
    assert_eq!(
        (&got["state"], &got["winner"]),
        (&json!("completed"), &json!("green"))
    );
    assert!(
        got["reason"].as_str().unwrap().contains("early stopping"),
        "{got}"
    );
    for user in ["c1", "g1", "new-user"] {
        assert_eq!(served_variant(&app, key, user).await, "green");
    }
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["rules"][0]["id"], "experiment.completed", "{flag}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_review_fails_an_experiment_whose_guardrail_is_breached() {
    let app = TestApp::new(Backend::Postgres).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let mut body = spec("guarded");
    body["secondary_metrics"] = json!([]);
    body["guardrails"] = json!([{"metric": {"key": "latency", "kind": "value",
        "goal": "decrease", "minimum_detectable_effect": 1.0}, "max_relative_degradation": 0.1}]);
    review_dataset(&app, &tenant.id, key, body).await;
    let results = app
        .get("/api/v1/experiments/guarded/results", Some(key))
        .await
        .json();
    assert_eq!(
        results["recommendation"]["action"], "stop_guardrail_failed",
        "{results}"
    );

    let outcome = review(&app, &tenant.id, now_ms()).await;
    assert_eq!(outcome.actions.len(), 1, "{outcome:?}");
    assert_eq!(outcome.actions[0].action, "failed");
    let got = app
        .get("/api/v1/experiments/guarded", Some(key))
        .await
        .json();
    assert_eq!(got["state"], "failed");
    assert_eq!(got["reason"], "guardrail latency breached by green");
    for user in ["c1", "g1", "new-user"] {
        assert_eq!(served_variant(&app, key, user).await, "control");
    }
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["rules"][0]["id"], "experiment.failed", "{flag}");
    // Failed is final, and events are no longer taken.
    post(&app, "/api/v1/experiments/guarded/resume", key, None)
        .await
        .assert_problem(409, "invalid_state", "/api/v1/experiments/guarded/resume");
    app.cleanup().await;
}

#[tokio::test]
async fn the_review_puts_back_managed_rules_and_a_manual_fail_serves_the_control() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    let mut body = spec("exp");
    body["target_audience"] = json!({"attribute": "country", "op": "equals", "value": "de"});
    body["traffic_percentage"] = json!(50);
    post(&app, "/api/v1/experiments", key, Some(body)).await;
    post(&app, "/api/v1/experiments/exp/start", key, None).await;
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["rules"][0]["id"], "experiment.audience", "{flag}");
    assert_eq!(flag["rollout_bp"], 5000);
    // Outside the audience: the control, as a rule (not an assignment).
    let outside = post(
        &app,
        "/ofrep/v1/evaluate/flags/checkout-button",
        key,
        Some(json!({"context": {"targetingKey": "u1", "country": "fr"}})),
    )
    .await
    .json();
    assert_eq!(
        (&outside["variant"], &outside["reason"]),
        (&json!("control"), &json!("TARGETING_MATCH"))
    );

    // Someone removes the audience rule by hand; the review puts it back.
    let mut edited = flag.clone();
    edited["rules"] = json!([]);
    let put = app
        .call(
            Method::PUT,
            "/api/v1/flags/checkout-button?environment=production",
            Some(key),
            Some(edited),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let healed = review(&app, &tenant.id, now_ms()).await;
    assert_eq!(healed.actions[0].action, "flag_restored", "{healed:?}");
    let flag = flag_definition(&app, key, "checkout-button").await;
    assert_eq!(flag["rules"][0]["id"], "experiment.audience", "{flag}");

    let failed = post(
        &app,
        "/api/v1/experiments/exp/fail",
        key,
        Some(json!({"reason": "checkout errors"})),
    )
    .await;
    assert_eq!(failed.status, 200, "{}", failed.text());
    assert_eq!(failed.json()["state"], "failed");
    assert_eq!(failed.json()["reason"], "checkout errors");
    assert_eq!(served_variant(&app, key, "u1").await, "control");
    app.cleanup().await;
}

#[tokio::test]
async fn an_owned_flag_keeps_its_split_and_is_not_deleted_while_the_experiment_runs() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    post(&app, "/api/v1/experiments", key, Some(spec("exp"))).await;
    let flag_path = "/api/v1/flags/checkout-button?environment=production";
    // A draft's flag may not be deleted either (the experiment would have nothing to start).
    let refused = app.call(Method::DELETE, flag_path, Some(key), None).await;
    let problem = refused.assert_problem(409, "conflict", "/api/v1/flags/checkout-button");
    assert_eq!(problem["experiment"], "exp", "{problem}");
    post(&app, "/api/v1/experiments/exp/start", key, None).await;

    let mut reweighted = flag_definition(&app, key, "checkout-button").await;
    reweighted["variants"][0]["weight_bp"] = json!(9000);
    reweighted["variants"][1]["weight_bp"] = json!(1000);
    let put = app
        .call(Method::PUT, flag_path, Some(key), Some(reweighted.clone()))
        .await;
    let problem = put.assert_problem(409, "conflict", "/api/v1/flags/checkout-button");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("split must stay"),
        "{problem}"
    );
    // Other edits are the flag owner's to make.
    let mut described = flag_definition(&app, key, "checkout-button").await;
    described["description"] = json!("the checkout button's colour");
    let put = app
        .call(Method::PUT, flag_path, Some(key), Some(described))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let refused = app.call(Method::DELETE, flag_path, Some(key), None).await;
    refused.assert_problem(409, "conflict", "/api/v1/flags/checkout-button");

    // Once completed, the flag is its owner's again.
    post(&app, "/api/v1/experiments/exp/conclude", key, None).await;
    let put = app
        .call(Method::PUT, flag_path, Some(key), Some(reweighted))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let deleted = app.call(Method::DELETE, flag_path, Some(key), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    // And a new experiment cannot take it over.
    let again = post(&app, "/api/v1/experiments", key, Some(spec("exp-2"))).await;
    let problem = again.assert_problem(409, "conflict", "/api/v1/experiments");
    assert_eq!(problem["owner"], "exp", "{problem}");
    app.cleanup().await;
}
