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
    assert_eq!(
        accurate["variables"].as_array().unwrap().len(),
        5,
        "the default variables are t2m,u10,v10,msl,precip"
    );
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
            "/api/v1/forecast?station=JFK".into(),
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
