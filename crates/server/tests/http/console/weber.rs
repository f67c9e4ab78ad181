//! The console's Weber pages: the segment chart and table, the user lookup, a user's profile
//! (the numbers the API gives), the calculation audit, segment members, and tenant isolation.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use store::{Backend, Scope};

use crate::TestApp;

/// Ingests a short history for `user` through the API and waits for the profile.
async fn ingest(app: &TestApp, key: &str, user: &str) {
    let events: Vec<Value> = [5, 1, 4, 2, 5, 3, 1]
        .iter()
        .enumerate()
        .map(|(i, rating)| {
            json!({"event_id": format!("{user}-{i}"), "user_id": user,
                   "timestamp": 1_000 * (i as i64 + 1), "rating": rating})
        })
        .collect();
    let reply = app
        .call(
            Method::POST,
            "/api/v1/interactions",
            Some(key),
            Some(Value::Array(events)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;
}

/// The text of the element carrying `data-field="{field}"`, tags stripped.
fn field(html: &str, field: &str) -> String {
    let marker = format!("data-field=\"{field}\">");
    let start = html.find(&marker).expect(&marker) + marker.len();
    let end = start + html[start..].find("</dd>").expect("closing dd");
    let mut text = String::new();
    let mut in_tag = false;
    for c in html[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

#[tokio::test]
async fn the_segments_page_charts_and_tabulates_the_profiled_users() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    ingest(&app, &key.secret, "ann").await;
    ingest(&app, &key.secret, "bob").await;
    let console = app.console(&key.secret).await;

    let reply = console.get("/console/weber").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    assert!(html.contains("id=\"segment-chart\""), "{html}");
    let chart = &html[html.find("id=\"segment-chart\"").unwrap()..];
    assert!(chart.contains("<svg ") && chart.contains("role=\"img\""));
    assert!(html.contains("2 profiled users"), "{html}");
    assert!(html.contains("form id=\"user-lookup\" method=\"get\""));
    assert!(html.contains("name=\"user_id\""));
    for segment in weber::SensitivitySegment::ALL {
        assert!(
            html.contains(&format!(
                "href=\"/console/weber/segments/{}\"",
                segment.as_str()
            )),
            "{segment:?}"
        );
    }
    // A read page offers no write form (only sign-out posts).
    assert_eq!(html.matches("method=\"post\"").count(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn the_user_page_shows_the_profile_the_api_gives_with_its_history_and_audit() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    ingest(&app, &key.secret, "ann").await;
    let api = app
        .get("/api/v1/users/ann/weber-profile", Some(&key.secret))
        .await;
    assert_eq!(api.status, 200, "{}", api.text());
    let api = api.json();
    let console = app.console(&key.secret).await;

    // The lookup form sends the browser to the user's page.
    let lookup = console.get("/console/weber/users?user_id=ann").await;
    assert_eq!(lookup.status, StatusCode::SEE_OTHER);
    assert_eq!(
        lookup.headers.get("location").unwrap(),
        "/console/weber/users/ann"
    );

    let reply = console.get("/console/weber/users/ann").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    let number = |name: &str| -> f64 {
        let text = field(&html, name);
        text.split_whitespace().next().unwrap().parse().unwrap()
    };
    let close = |name: &str, digits: i32| {
        let want = api[name].as_f64().unwrap();
        let tolerance = 0.5 * 10f64.powi(-digits) + 1e-12;
        assert!(
            (number(name) - want).abs() <= tolerance,
            "{name}: page {} vs API {want}",
            field(&html, name)
        );
    };
    close("weber_constant", 3);
    close("calculation_confidence", 2);
    assert_eq!(
        field(&html, "sensitivity_segment"),
        api["sensitivity_segment"].as_str().unwrap()
    );
    assert_eq!(number("review_count"), 7.0);
    match api["bias_ratio"].as_f64() {
        Some(_) => close("bias_ratio", 3),
        None => assert_eq!(field(&html, "bias_ratio"), "not enough data"),
    }
    assert_eq!(
        field(&html, "last_updated"),
        api["last_updated"].as_str().unwrap()
    );
    let chart = &html[html
        .find("id=\"sentiment-chart\"")
        .expect("sentiment chart")..];
    assert!(chart.contains("<svg ") && chart.contains(">\nsentiment\n</text>"));
    assert!(html.contains("id=\"calculation-audit\""), "{html}");
    // One audit row per calculation the worker made, each a table row with its cause.
    assert!(html.matches("<td>event</td>").count() + html.matches("<td>rebuild</td>").count() >= 1);
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_users_and_other_tenants_users_are_not_found() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, a_key) = app.tenant("a", &[Scope::Read, Scope::Write]).await;
    let (_, b_key) = app.tenant("b", &[Scope::Read]).await;
    ingest(&app, &a_key.secret, "ann").await;

    let a = app.console(&a_key.secret).await;
    let missing = a.get("/console/weber/users/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing
            .text()
            .contains("no Weber profile for user &#39;nobody&#39;")
            || missing
                .text()
                .contains("no Weber profile for user 'nobody'"),
        "{}",
        missing.text()
    );

    let b = app.console(&b_key.secret).await;
    let theirs = b.get("/console/weber/users/ann").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.text());
    let segments = b.get("/console/weber").await.text();
    assert!(segments.contains("0 profiled users"), "{segments}");
    assert!(!segments.contains("ann"));

    // An empty lookup is the form again, naming the field.
    let empty = a.get("/console/weber/users?user_id=").await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = empty.text();
    assert!(html.contains("id=\"user-id-error\""), "{html}");
    assert!(html.contains("user_id must be 1 to 256 characters"));
    assert!(html.contains("aria-invalid=\"true\""));
    app.cleanup().await;
}

#[tokio::test]
async fn segment_pages_list_members_a_page_at_a_time() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, key) = app.tenant("shop", &[Scope::Read]).await;
    let rows: Vec<_> = (0..105)
        .map(|i| crate::weber::profile_record(&format!("u{i:03}"), 0.05))
        .collect();
    app.fixture
        .store
        .upsert_weber_profiles(&tenant.id, &rows)
        .await
        .unwrap();
    let console = app.console(&key.secret).await;
    let segment = rows[0].sensitivity_segment.clone();

    let first = console
        .get(&format!("/console/weber/segments/{segment}"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let html = first.text();
    assert_eq!(html.matches("href=\"/console/weber/users/u").count(), 100);
    assert!(html.contains(&format!(
        "href=\"/console/weber/segments/{segment}?after=u099\""
    )));
    let second = console
        .get(&format!("/console/weber/segments/{segment}?after=u099"))
        .await
        .text();
    assert_eq!(second.matches("href=\"/console/weber/users/u").count(), 5);
    assert!(!second.contains("rel=\"next\""));

    let unknown = console.get("/console/weber/segments/Nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}
