//! Forecasts over HTTP: the answer's shape, the cache (miss, hit, bypass, keyed by every
//! parameter), diagnostics, and every bad parameter named in a problem.

use std::sync::{Arc, LazyLock};

use analog::forecast::{BuildOptions, ForecastModel};
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use store::{Backend, Scope};

use crate::TestApp;

static DEMO: LazyLock<Arc<ForecastModel>> = LazyLock::new(|| {
    let csv = include_str!("../../../../demo/nyc_weather_2013.csv");
    let data = analog::forecast::parse_csv(csv.as_bytes()).expect("demo data parses");
    Arc::new(
        ForecastModel::build(&data, &BuildOptions::default(), &mut |_, _| {})
            .expect("demo model builds"),
    )
});

/// The model built from the bundled demo data, once per test binary.
pub fn demo_model() -> Arc<ForecastModel> {
    DEMO.clone()
}

async fn get_with(app: &TestApp, path: &str, key: &str, no_cache: bool) -> crate::Reply {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

fn x_cache(reply: &crate::Reply) -> &str {
    reply
        .headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_forecast_is_an_ensemble_served_from_the_cache_the_second_time() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let path = "/api/v1/forecast?station=JFK&horizon=24h&vars=t2m,msl&at=2013-11-05T06:00:00Z";

    let first = get_with(&app, path, &key.secret, false).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(x_cache(&first), "miss");
    let body = first.json();
    assert_eq!(body["station"], "JFK");
    assert_eq!(body["issued_at"], "2013-11-05T06:00:00Z");
    assert_eq!(body["valid_at"], "2013-11-06T06:00:00Z");
    assert_eq!(body["horizon"], "24h");
    assert_eq!(body["k"], 10);
    assert_eq!(
        body["model_version"],
        app.state.forecasts().unwrap().version()
    );
    let vars = body["variables"].as_array().expect("variables");
    assert_eq!(
        vars.iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["t2m", "msl"]
    );
    for v in vars {
        let (p10, median, p90) = (
            v["p10"].as_f64().unwrap(),
            v["median"].as_f64().unwrap(),
            v["p90"].as_f64().unwrap(),
        );
        assert!(p10 <= median && median <= p90, "{v}");
        assert_eq!(v["members"].as_array().unwrap().len(), 10, "{v}");
    }
    assert_eq!(v_units(vars), ["°C", "hPa"]);
    let analogs = body["analogs"].as_array().expect("analogs");
    assert_eq!(analogs.len(), 10);
    let distances: Vec<f64> = analogs
        .iter()
        .map(|a| a["distance"].as_f64().unwrap())
        .collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");

    let second = get_with(&app, path, &key.secret, false).await;
    assert_eq!(x_cache(&second), "hit");
    assert_eq!(second.body, first.body);
    // The seed's path answers the same document.
    let seed_path = path.replace("/api/v1/forecast", "/forecast");
    let seed = get_with(&app, &seed_path, &key.secret, false).await;
    assert_eq!((x_cache(&seed), &seed.body), ("hit", &first.body));
    // A client can insist on a fresh computation; the answer is the same.
    let fresh = get_with(&app, path, &key.secret, true).await;
    assert_eq!(x_cache(&fresh), "bypass");
    assert_eq!(fresh.body, first.body);

    // Every parameter is part of the key.
    for changed in [
        path.replace("JFK", "LGA"),
        path.replace("24h", "48h"),
        path.replace("t2m,msl", "t2m"),
        format!("{path}&k=5"),
        format!("{path}&similarity=seed"),
        path.replace("06:00:00Z", "07:00:00Z"),
    ] {
        let reply = get_with(&app, &changed, &key.secret, false).await;
        assert_eq!(reply.status, 200, "{changed}: {}", reply.text());
        assert_eq!(x_cache(&reply), "miss", "{changed}");
        assert_ne!(reply.body, first.body, "{changed}");
    }
    // `mode` picks k; without `at` the station's latest time is used.
    let accurate = get_with(
        &app,
        "/forecast?station=EWR&horizon=6h&mode=accurate",
        &key.secret,
        false,
    )
    .await
    .json();
    assert_eq!(accurate["k"], 20);
    let latest = app
        .state
        .forecasts()
        .unwrap()
        .model()
        .issue_range("EWR")
        .unwrap()
        .1;
    assert_eq!(accurate["issued_at"], analog::forecast::format_time(latest));
    let names: Vec<&str> = accurate["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t2m", "u10", "v10"], "seed 001's default variables");
    // Without `horizon`, seed 001's 24h.
    let default_horizon = get_with(&app, "/forecast?station=EWR", &key.secret, false).await;
    assert_eq!(default_horizon.status, 200, "{}", default_horizon.text());
    assert_eq!(default_horizon.json()["horizon"], "24h");
    app.cleanup().await;
}

fn v_units(vars: &[Value]) -> Vec<&str> {
    vars.iter().map(|v| v["unit"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn diagnostics_report_latency_grades_and_cache_counters() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    for at in [
        "2013-06-01T12:00:00Z",
        "2013-06-02T12:00:00Z",
        "2013-06-02T12:00:00Z",
    ] {
        let reply = get_with(
            &app,
            &format!("/api/v1/forecast?station=LGA&horizon=12h&at={at}"),
            &key.secret,
            false,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let diag = app
        .get("/api/v1/forecast/diagnostics", Some(&key.secret))
        .await
        .json();
    let horizons = diag["horizons"].as_array().expect("horizons");
    assert_eq!(horizons.len(), 4);
    let h12 = horizons.iter().find(|h| h["horizon"] == "12h").unwrap();
    assert_eq!(h12["searches"], 2, "{h12}");
    assert!(
        ["A", "B", "C", "D", "F"].contains(&h12["grade"].as_str().unwrap()),
        "{h12}"
    );
    assert!(h12["p50_ms"].as_f64().unwrap() > 0.0, "{h12}");
    let h6 = horizons.iter().find(|h| h["horizon"] == "6h").unwrap();
    assert_eq!(
        (h6["searches"].as_u64(), &h6["grade"]),
        (Some(0), &Value::Null),
        "{h6}"
    );
    assert_eq!(diag["cache"]["hits"], 1, "{diag}");
    assert_eq!(diag["cache"]["misses"], 2, "{diag}");
    assert_eq!(
        diag["model_version"],
        app.state.forecasts().unwrap().version()
    );

    // The metrics carry the same counts.
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.contains(r#"forecast_requests_total{horizon="12h",cache="hit"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"forecast_search_duration_seconds_count{horizon="12h"} 2"#),
        "{metrics}"
    );

    let catalogue = app
        .get("/api/v1/forecast/catalogue", Some(&key.secret))
        .await
        .json();
    let stations: Vec<&str> = catalogue["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["station"].as_str().unwrap())
        .collect();
    assert_eq!(stations, ["EWR", "JFK", "LGA"]);
    assert_eq!(catalogue["max_k"], analog::forecast::MAX_K);
    app.cleanup().await;
}

#[tokio::test]
async fn every_bad_parameter_is_named() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let base = "/api/v1/forecast?station=JFK&horizon=24h";
    let cases: &[(String, u16, &str, &str)] = &[
        (
            "/api/v1/forecast?horizon=24h".into(),
            400,
            "invalid_parameter",
            "station",
        ),
        (
            "/api/v1/forecast?station=JFK&horizon=".into(),
            400,
            "invalid_parameter",
            "horizon",
        ),
        (
            base.replace("24h", "6h,24h,6h"),
            400,
            "invalid_parameter",
            "horizon",
        ),
        (
            base.replace("24h", "6h,12h,24h,48h,6h"),
            400,
            "invalid_parameter",
            "horizon",
        ),
        (
            base.replace("24h", "6h,,24h"),
            400,
            "invalid_parameter",
            "horizon",
        ),
        (base.replace("JFK", "ORD"), 404, "not_found", "station"),
        (
            base.replace("24h", "36h"),
            400,
            "invalid_parameter",
            "horizon",
        ),
        (
            format!("{base}&vars=t2m,snow"),
            400,
            "invalid_parameter",
            "vars",
        ),
        (format!("{base}&vars="), 400, "invalid_parameter", "vars"),
        (format!("{base}&k=0"), 400, "invalid_parameter", "k"),
        (format!("{base}&k=101"), 400, "invalid_parameter", "k"),
        (format!("{base}&k=ten"), 400, "invalid_parameter", "k"),
        (
            format!("{base}&k=5&mode=fast"),
            422,
            "unprocessable",
            "mode",
        ),
        (
            format!("{base}&mode=turbo"),
            400,
            "invalid_parameter",
            "mode",
        ),
        (
            format!("{base}&similarity=cosine"),
            400,
            "invalid_parameter",
            "similarity",
        ),
        (
            format!("{base}&at=yesterday"),
            400,
            "invalid_parameter",
            "at",
        ),
        (
            format!("{base}&at=2013-11-05T06:30:00Z"),
            400,
            "invalid_parameter",
            "at",
        ),
        (
            format!("{base}&at=2014-01-05T06:00:00Z"),
            404,
            "not_found",
            "at",
        ),
        (
            format!("{base}&at=2012-12-31T00:00:00Z"),
            404,
            "not_found",
            "at",
        ),
    ];
    for (path, status, code, parameter) in cases {
        let reply = app.get(path, Some(&key.secret)).await;
        let instance = path.split('?').next().unwrap();
        let body = reply.assert_problem(*status, code, instance);
        assert_eq!(body["parameter"], *parameter, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(parameter),
            "{path}: the detail names the parameter: {body}"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn without_a_model_forecasts_say_so_and_do_not_ask_for_a_retry() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    // A state with no model installed (the test app installs one; build a bare one).
    let state = server::AppState::new(
        app.fixture.store.clone(),
        Arc::new(telemetry::Metrics::new(Default::default())),
        Default::default(),
        app.state.events().clone(),
    )
    .expect("state");
    let router = server::app(state);
    let req = Request::builder()
        .uri("/api/v1/forecast?station=JFK&horizon=24h")
        .header("authorization", format!("Bearer {}", key.secret))
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(router, req).await.unwrap();
    // Configuration, not a transient outage: 501 naming the cause, and no Retry-After that
    // would have clients poll forever.
    assert_eq!(response.status(), 501);
    assert!(
        response.headers().get("retry-after").is_none(),
        "{:?}",
        response.headers()
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem["type"],
        "urn:signalbox:problem:forecast_model_missing"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("signalbox forecast build"),
        "{problem}"
    );
    app.cleanup().await;
}

/// The forecast of `path` answered alone (a single-horizon GET).
async fn single(app: &TestApp, path: &str, key: &str, no_cache: bool) -> Value {
    let reply = get_with(app, path, key, no_cache).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

#[tokio::test]
async fn several_horizons_answer_what_each_single_request_answers() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let query = "station=JFK&vars=t2m,msl&k=7&at=2013-11-05T06:00:00Z";
    let horizons = ["48h", "6h", "24h"];
    // Uncached first: each horizon is computed by the multi-horizon request.
    let multi = get_with(
        &app,
        &format!("/api/v1/forecast?{query}&horizon={}", horizons.join(",")),
        &key.secret,
        false,
    )
    .await;
    assert_eq!(multi.status, 200, "{}", multi.text());
    assert_eq!(x_cache(&multi), "miss, miss, miss");
    let multi = multi.json();
    let version = app.state.forecasts().unwrap().version().to_owned();
    assert_eq!(multi["model_version"], version.as_str());
    let docs = multi["forecasts"].as_array().expect("forecasts");
    assert_eq!(docs.len(), 3);
    for (doc, h) in docs.iter().zip(horizons) {
        let path = format!("/api/v1/forecast?{query}&horizon={h}");
        // Cached by the multi-horizon request, and the same as computed afresh.
        assert_eq!(*doc, single(&app, &path, &key.secret, false).await, "{h}");
        assert_eq!(*doc, single(&app, &path, &key.secret, true).await, "{h}");
    }
    // The seed's path too; now every horizon is a hit.
    let again = get_with(
        &app,
        &format!("/forecast?{query}&horizon={}", horizons.join(",")),
        &key.secret,
        false,
    )
    .await;
    assert_eq!(x_cache(&again), "hit, hit, hit");
    assert_eq!(again.json(), multi);
    // One horizon keeps the single document's shape.
    let one = single(
        &app,
        &format!("/api/v1/forecast?{query}&horizon=6h"),
        &key.secret,
        false,
    )
    .await;
    assert!(one.get("forecasts").is_none(), "{one}");
    assert_eq!(one, docs[1]);
    // A horizon the station cannot answer fails the request as its single request would.
    let late = get_with(
        &app,
        "/api/v1/forecast?station=JFK&horizon=6h,48h&at=2014-01-05T06:00:00Z",
        &key.secret,
        false,
    )
    .await;
    assert_eq!(late.status, 404, "{}", late.text());
    app.cleanup().await;
}

async fn post_batch(app: &TestApp, key: &str, body: Value) -> crate::Reply {
    app.call(
        Method::POST,
        "/api/v1/forecast/batch",
        Some(key),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn a_batch_answers_each_item_as_its_single_request_and_a_bad_item_in_its_slot() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let items = serde_json::json!([
        {"station": "JFK", "horizon": "6h", "at": "2013-11-05T06:00:00Z"},
        {"station": "ORD"},
        {"station": "LGA", "horizon": "48h", "vars": "t2m,precip", "k": 5, "similarity": "seed",
         "at": "2013-06-01T00:00:00Z"},
        {"station": "JFK", "horizon": "36h"},
        {"station": "JFK", "k": 5, "mode": "fast"},
        {"station": "EWR", "mode": "accurate"},
        {"station": "JFK", "at": "2014-01-05T06:00:00Z"},
        {"station": "JFK", "k": 0},
        {"station": "JFK", "k": 1000},
    ]);
    let singles = [
        Some("/api/v1/forecast?station=JFK&horizon=6h&at=2013-11-05T06:00:00Z"),
        None,
        Some("/api/v1/forecast?station=LGA&horizon=48h&vars=t2m,precip&k=5&similarity=seed&at=2013-06-01T00:00:00Z"),
        None,
        None,
        Some("/api/v1/forecast?station=EWR&mode=accurate"),
        None,
        None,
        None,
    ];
    // Each item's problem: status, code and parameter, as its GET answers them.
    let problems = [
        None,
        Some((404, "not_found", "station")),
        None,
        Some((400, "invalid_parameter", "horizon")),
        Some((422, "unprocessable", "mode")),
        None,
        Some((404, "not_found", "at")),
        Some((400, "invalid_parameter", "k")),
        Some((400, "invalid_parameter", "k")),
    ];
    let reply = post_batch(&app, &key.secret, serde_json::json!({"requests": items})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(
        body["model_version"],
        app.state.forecasts().unwrap().version()
    );
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), singles.len());
    for (i, result) in results.iter().enumerate() {
        let object = result.as_object().expect("object");
        assert_eq!(object.len(), 1, "item {i}: {result}");
        match (singles[i], problems[i]) {
            (Some(path), None) => {
                assert_eq!(
                    result["forecast"],
                    single(&app, path, &key.secret, true).await,
                    "item {i}"
                );
            }
            (None, Some((status, code, parameter))) => {
                let problem = &result["error"];
                assert_eq!(problem["status"], status, "item {i}: {problem}");
                assert_eq!(
                    problem["type"],
                    format!("urn:signalbox:problem:{code}"),
                    "item {i}: {problem}"
                );
                assert_eq!(problem["parameter"], parameter, "item {i}: {problem}");
                assert_eq!(problem["instance"], "/api/v1/forecast/batch");
                assert_eq!(
                    problem["request_id"],
                    reply.headers["x-request-id"].to_str().unwrap(),
                    "item {i}: the batch request's id"
                );
                // The same problem the item's GET answers.
                let item = items[i].as_object().unwrap();
                let query: Vec<String> = item
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        // `1e+20`: a `+` in a query is a space.
                        other => format!("{k}={}", other.to_string().replace('+', "%2B")),
                    })
                    .collect();
                let get = app
                    .get(
                        &format!("/api/v1/forecast?{}", query.join("&")),
                        Some(&key.secret),
                    )
                    .await
                    .json();
                assert_eq!(get["detail"], problem["detail"], "item {i}");
            }
            _ => unreachable!(),
        }
    }
    // Computed once: the batch filled the cache for the single requests.
    let first = get_with(&app, singles[0].unwrap(), &key.secret, false).await;
    assert_eq!(x_cache(&first), "hit");
    // An empty batch is an empty answer.
    let empty = post_batch(&app, &key.secret, serde_json::json!({"requests": []})).await;
    assert_eq!(empty.json()["results"], serde_json::json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_that_is_not_the_documented_shape_fails_as_a_whole() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let path = "/api/v1/forecast/batch";
    let item = serde_json::json!({"station": "JFK"});
    let too_many = serde_json::json!({"requests": vec![item.clone(); 101]});
    let reply = post_batch(&app, &key.secret, too_many).await;
    let problem = reply.assert_problem(422, "unprocessable", path);
    assert_eq!(problem["field"], "requests", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("100"),
        "{problem}"
    );
    // A hundred is fine.
    let hundred = serde_json::json!({"requests": vec![item.clone(); 100]});
    let reply = post_batch(&app, &key.secret, hundred).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["results"].as_array().unwrap().len(), 100);
    for (body, field) in [
        (serde_json::json!({}), "requests"),
        (serde_json::json!({"requests": {}}), "requests"),
        (serde_json::json!({"requests": [1]}), "requests[0]"),
        (
            serde_json::json!({"requests": [{"horizon": "6h"}]}),
            "requests[0]",
        ),
        (
            serde_json::json!({"requests": [{"station": "JFK", "k": "5"}]}),
            "requests[0].k",
        ),
        (
            serde_json::json!({"requests": [{"station": "JFK", "colour": "red"}]}),
            "requests[0]",
        ),
        (serde_json::json!({"requests": [], "extra": 1}), "body"),
        (
            serde_json::json!({"requests": [{"station": "JFK", "horizon": null}]}),
            "requests[0].horizon",
        ),
        (
            serde_json::json!({"requests": [{"station": "JFK"}, {"station": "JFK", "k": 2.5}]}),
            "requests[1].k",
        ),
        (
            serde_json::json!({"requests": [{"station": "JFK", "k": 1e20}]}),
            "requests[0].k",
        ),
        (
            serde_json::json!({"requests": [{"station": "JFK", "k": -9.223372036854776e18}]}),
            "requests[0].k",
        ),
    ] {
        let reply = post_batch(&app, &key.secret, body.clone()).await;
        let problem = reply.assert_problem(400, "invalid_field", path);
        assert!(
            problem["field"].as_str().unwrap().starts_with(field) || problem["field"] == "extra",
            "{body}: {problem}"
        );
    }
    // Not JSON; not declared as JSON; too large.
    let send = |body: Body, content_type: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {}", key.secret))
            .header("content-type", content_type)
            .body(body)
            .unwrap()
    };
    let reply = app.send(send(Body::from("{"), "application/json")).await;
    reply.assert_problem(400, "malformed_json", path);
    let reply = app
        .send(send(Body::from(r#"{"requests":[]}"#), "text/plain"))
        .await;
    reply.assert_problem(415, "unsupported_media_type", path);
    let huge = format!(r#"{{"requests":[{{"station":"{}"}}]}}"#, "J".repeat(70_000));
    let reply = app.send(send(Body::from(huge), "application/json")).await;
    reply.assert_problem(413, "payload_too_large", path);
    app.cleanup().await;
}

#[tokio::test]
async fn diagnostics_count_search_statuses_and_report_rewarming() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    for h in ["6h", "6h,48h"] {
        let reply = get_with(
            &app,
            &format!("/api/v1/forecast?station=EWR&horizon={h}&at=2013-03-01T00:00:00Z"),
            &key.secret,
            true,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let service = app.state.forecasts().unwrap();
    let diag = app
        .get("/api/v1/forecast/diagnostics", Some(&key.secret))
        .await
        .json();
    let h6 = diag["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["horizon"] == "6h")
        .unwrap()
        .clone();
    let statuses = &h6["statuses"];
    let counted: u64 = ["optimal", "suboptimal", "slow"]
        .iter()
        .map(|s| statuses[s].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 2, "{h6}");
    assert!(
        ["optimal", "suboptimal", "slow"].contains(&h6["last_status"].as_str().unwrap()),
        "{h6}"
    );
    assert_eq!(h6["recent_searches"], 2, "{h6}");
    assert_eq!(h6["advice"], serde_json::json!([]), "{h6}");
    assert_eq!(diag["slow_requests"]["total_slow_requests"], 0, "{diag}");
    assert_eq!(
        diag["slow_requests"]["severity_distribution"],
        serde_json::json!({"critical": 0, "high": 0, "medium": 0, "low": 0})
    );
    // The model's indexes: every station and horizon, with seed 001's advice.
    let model = &diag["model"];
    let indexes = model["indexes"].as_array().expect("indexes");
    assert_eq!(
        indexes.len(),
        service.model().stations().len() * 4,
        "{model}"
    );
    for index in indexes {
        assert!(
            ["flat", "ivfpq", "ivfpq-rerank"].contains(&index["kind"].as_str().unwrap()),
            "{index}"
        );
        assert!(index["vectors"].as_u64().unwrap() > 0, "{index}");
        assert!(index["bytes"].as_u64().unwrap() > 0, "{index}");
        // A year of hours is under 50,000 vectors: no advice for a flat index.
        assert_eq!(index["advice"], serde_json::json!([]), "{index}");
    }
    assert_eq!(
        model["resident_bytes"].as_u64(),
        Some(service.model().resident_bytes())
    );
    assert_eq!(model["memory_budget"], Value::Null);
    assert_eq!(diag["rewarm"]["interval_seconds"], 300, "{diag}");
    assert_eq!(diag["rewarm"]["runs"], 0, "{diag}");
    assert_eq!(diag["rewarm"]["last"], Value::Null, "{diag}");
    let metrics = app.get("/metrics", None).await.text();
    let status_total: u64 = metrics
        .lines()
        .filter(|l| l.starts_with(r#"forecast_search_status_total{horizon="6h""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(status_total, 2, "{metrics}");

    // A slow request is analysed and kept.
    service.observe_request("/api/v1/forecast", std::time::Duration::from_millis(2500));
    // A re-warm recomputes every popular configuration and refreshes the cache.
    let warmed = service.rewarm();
    let stations = service.model().stations().len();
    assert_eq!(
        warmed,
        stations * server::forecasts::POPULAR.len() * 2,
        "every station, popular configuration and similarity"
    );
    let diag = app
        .get("/api/v1/forecast/diagnostics", Some(&key.secret))
        .await
        .json();
    assert_eq!(diag["rewarm"]["runs"], 1, "{diag}");
    assert_eq!(diag["rewarm"]["last"]["warmed"], warmed, "{diag}");
    let slow = &diag["slow_requests"];
    assert_eq!(slow["total_slow_requests"], 1, "{slow}");
    assert_eq!(slow["severity_distribution"]["medium"], 1, "{slow}");
    assert_eq!(
        slow["most_problematic_routes"],
        serde_json::json!([{"route": "/api/v1/forecast", "count": 1}])
    );
    assert_eq!(
        slow["recent_issues"][0]["potential_causes"][0],
        "Inefficient FAISS search"
    );
    let popular = get_with(
        &app,
        "/forecast?station=JFK&horizon=6h&vars=t2m,u10,v10",
        &key.secret,
        false,
    )
    .await;
    assert_eq!(x_cache(&popular), "hit");
    app.cleanup().await;
}

#[tokio::test]
async fn a_model_over_the_memory_budget_is_refused_naming_both_figures() {
    let model = demo_model();
    let resident = model.resident_bytes();
    let with_budget = |budget: u64| {
        server::forecasts::ForecastService::new(
            model.clone(),
            &server::forecasts::ForecastSettings {
                memory_budget: Some(budget),
                ..Default::default()
            },
        )
    };
    assert!(with_budget(resident).check_memory_budget().is_ok());
    let refused = with_budget(resident - 1)
        .check_memory_budget()
        .expect_err("over the budget");
    let text = refused.to_string();
    assert!(text.contains(&format!("{resident} bytes")), "{text}");
    assert!(text.contains(&format!("{} bytes", resident - 1)), "{text}");
    assert!(text.contains("signalbox forecast build"), "{text}");
    assert_eq!(
        with_budget(resident - 1).diagnostics().model.memory_budget,
        Some(resident - 1)
    );
}
