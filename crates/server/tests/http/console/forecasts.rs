//! The console's forecasts page: the default view draws a fan chart without any input, the
//! picker's values are checked like the API's parameters (each error next to its field), and a
//! server without a model says so.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use store::{Backend, Scope};

use crate::TestApp;

/// The `<figure id="fan-chart">` element's markup.
fn fan_chart(html: &str) -> &str {
    let start = html.find("id=\"fan-chart\"").expect("a fan chart");
    let end = start + html[start..].find("</figure>").expect("figure closes");
    &html[start..end]
}

#[tokio::test]
async fn the_default_view_draws_the_latest_forecast_as_a_fan_chart() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;

    let reply = console.get("/console/forecasts").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    assert!(html.contains("<form id=\"forecast-picker\" method=\"get\""));
    for name in ["station", "horizon", "variable"] {
        assert!(
            html.contains(&format!("<select id=\"{name}\" name=\"{name}\"")),
            "{name}"
        );
    }
    assert!(html.contains("name=\"at\""));
    // The first station, 24 h and t2m are picked; the issue time shown is the station's latest.
    assert!(html.contains("<option value=\"EWR\" selected>"), "{html}");
    assert!(html.contains("<option value=\"24h\" selected>"));
    assert!(html.contains("<option value=\"t2m\" selected>"));
    let catalogue = app
        .get("/api/v1/forecast/catalogue", Some(&key.secret))
        .await
        .json();
    let latest = catalogue["stations"][0]["latest_issue"].as_str().unwrap();
    assert!(html.contains(&format!("value=\"{latest}\"")), "{latest}");

    let chart = fan_chart(&html);
    assert!(chart.contains("<svg "), "{chart}");
    assert!(chart.contains("role=\"img\""));
    assert!(chart.contains("<polygon"), "the p10–p90 band: {chart}");
    for tick in ["+6 h", "+12 h", "+24 h", "+48 h"] {
        assert!(chart.contains(tick), "a tick at each horizon: {tick}");
    }
    assert!(html.contains("<table id=\"analogs\">"));
    assert_eq!(
        html.matches("<tr><th scope=\"row\" class=\"num\">").count(),
        10,
        "the default ensemble has 10 analogs"
    );
    assert!(html.contains("id=\"skill\""));
    assert!(html.contains("holds no verification report"));
    // How the model is served: the fan's four searches, one per horizon, are counted.
    assert!(html.contains("<table id=\"search-diagnostics\">"), "{html}");
    for h in ["6h", "12h", "24h", "48h"] {
        assert!(
            html.contains(&format!(
                "<tr><th scope=\"row\">{h}</th><td class=\"num\">1</td>"
            )),
            "{h}: {html}"
        );
    }
    assert!(html.contains("<dt>Re-warming</dt><dd>every 300 s; no run yet</dd>"));
    // The index table: one row per station and horizon.
    assert!(html.contains("<table id=\"indexes\">"), "{html}");
    for station in ["EWR", "JFK", "LGA"] {
        assert_eq!(
            html.matches(&format!("<tr><th scope=\"row\">{station}</th><td>"))
                .count(),
            4,
            "{station}: {html}"
        );
    }
    assert!(html.contains("resident, no budget set"), "{html}");
    assert!(html.contains("<dt>Slow requests</dt><dd>none"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_picked_forecast_matches_the_api_and_shows_what_was_observed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;
    let at = "2013-11-05T06:00:00Z";

    let reply = console
        .get(&format!(
            "/console/forecasts?station=JFK&horizon=12h&variable=msl&at={at}"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    let api = app
        .get(
            &format!("/api/v1/forecast?station=JFK&horizon=12h&vars=msl&at={at}"),
            Some(&key.secret),
        )
        .await
        .json();
    // The analogs table lists the API's analogs, in order.
    for analog in api["analogs"].as_array().unwrap() {
        let time = analog["time"].as_str().unwrap();
        assert!(html.contains(&format!("<td>{time}</td>")), "{time}");
    }
    let median = api["variables"][0]["median"].as_f64().unwrap();
    assert!(html.contains(&format!("{median:.2}")), "median {median}");
    assert!(html.contains("<option value=\"JFK\" selected>"));
    assert!(html.contains("<option value=\"msl\" selected>"));
    // The demo data holds the observation 12 h later, so the case is scored.
    if api["variables"][0]["observed"].is_number() {
        assert!(html.contains("id=\"case-scores\""), "{html}");
        assert!(fan_chart(&html).contains("observed"));
    }
    app.cleanup().await;
}

#[tokio::test]
async fn picker_errors_are_shown_next_to_their_field() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;
    let cases = [
        ("station=NOPE&horizon=24h&variable=t2m", "station", "NOPE"),
        ("station=JFK&horizon=7h&variable=t2m", "horizon", "7h"),
        ("station=JFK&horizon=24h&variable=snow", "variable", "snow"),
        (
            "station=JFK&horizon=24h&variable=t2m,msl",
            "variable",
            "one variable",
        ),
        (
            "station=JFK&horizon=24h&variable=t2m&at=yesterday",
            "at",
            "at",
        ),
        (
            "station=JFK&horizon=24h&variable=t2m&at=1999-01-01",
            "at",
            "1999",
        ),
    ];
    for (query, field, mentions) in cases {
        let reply = console.get(&format!("/console/forecasts?{query}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let html = reply.text();
        let marker = format!("<p class=\"field-error\" id=\"{field}-error\">");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("{query}: {html}"));
        let message = &html[start..start + html[start..].find("</p>").unwrap()];
        assert!(message.contains(mentions), "{query}: {message}");
        assert!(html.contains("aria-invalid=\"true\""), "{query}");
        assert!(!html.contains("id=\"fan-chart\""), "{query}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn without_a_model_the_page_says_so() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("forecaster", &[Scope::Read]).await;
    // The same store and sessions, no forecast model installed.
    let state = server::AppState::new(
        app.fixture.store.clone(),
        Arc::new(telemetry::Metrics::new(Default::default())),
        Default::default(),
        app.state.events().clone(),
    )
    .expect("state");
    let router = server::app(state);
    let send = |req: Request<Body>| tower::ServiceExt::oneshot(router.clone(), req);
    let body = crate::console::form(&[("api_key", &key.secret), ("next", "/console")]);
    let signed_in = send(
        Request::post("/console/sign-in")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let response = send(
        Request::get("/console/forecasts")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    let html = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains("No forecast model is loaded"), "{html}");
    assert!(html.contains("signalbox forecast build"));
    assert!(!html.contains("forecast-picker"));
    app.cleanup().await;
}
