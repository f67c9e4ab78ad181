//! The rest of seed 000's Weber surface: precomputed sentiments on interactions, per-tenant
//! engine settings, the calculation audit, segment analytics' performance and trends, and
//! erasing a user.

use axum::http::Method;
use serde_json::{json, Value};
use store::{Backend, Scope};
use weber::{Interaction, WeberParams};

use crate::TestApp;

async fn post_events(app: &TestApp, key: &str, events: Value) -> crate::Reply {
    app.call(
        Method::POST,
        "/api/v1/interactions",
        Some(key),
        Some(events),
    )
    .await
}

/// The engine's profile of these sentiments, in order, one event per second.
fn engine_profile(sentiments: &[f64], params: &WeberParams) -> weber::WeberProfile {
    let history: Vec<Interaction> = sentiments
        .iter()
        .enumerate()
        .map(|(i, s)| Interaction::new(*s, 1_000 * (i as i64 + 1), i as u64))
        .collect();
    weber::profile(&history, params).unwrap()
}

#[tokio::test]
async fn an_explicit_sentiment_is_what_the_profile_is_computed_from() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("own-model", &[Scope::Read, Scope::Write]).await;
    let key = key.secret;
    let sentiments = [0.9, -0.7, 0.2, 0.65, -0.95];
    let events: Vec<Value> = sentiments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Every other event also carries a rating and text that say the opposite: they are
            // stored, and the explicit sentiment is scored.
            let mut e = json!({"event_id": format!("e{i}"), "user_id": "ann",
                "timestamp": 1_000 * (i as i64 + 1), "sentiment": s});
            if i % 2 == 1 {
                e["rating"] = json!(5);
                e["text"] = json!("Wonderful, I love it!");
            }
            e
        })
        .collect();
    let mut body = Value::Array(events);
    body.as_array_mut()
        .unwrap()
        .push(json!({"event_id": "bad", "user_id": "ann", "timestamp": 9_000, "sentiment": 1.01}));
    let reply = post_events(&app, &key, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["stored"], sentiments.len(), "{answer}");
    assert_eq!(answer["rejected"][0]["index"], sentiments.len(), "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "sentiment", "{answer}");
    app.settle().await;
    let want = engine_profile(&sentiments, &WeberParams::default());
    let profile = app
        .get("/api/v1/users/ann/weber-profile", Some(&key))
        .await
        .json();
    assert_eq!(
        profile["weber_constant"],
        json!(want.weber_constant),
        "{profile}"
    );
    assert_eq!(profile["bias_ratio"], json!(want.bias_ratio), "{profile}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_calculation_audit_pages_newest_first_per_tenant() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("audited", &[Scope::Read, Scope::Write]).await;
    let (_, other_key) = app.tenant("elsewhere", &[Scope::Read]).await;
    let key = key.secret;
    // One request per event, settled in between, so each event makes one calculation.
    let sentiments = [0.5, -0.5, 0.8, 0.1, -0.3];
    for (i, s) in sentiments.iter().enumerate() {
        let reply = post_events(
            &app,
            &key,
            json!([{"event_id": format!("e{i}"), "user_id": "bob",
                "timestamp": 1_000 * (i as i64 + 1), "sentiment": s}]),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        app.settle().await;
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            None => "/api/v1/users/bob/weber-calculations?limit=2".to_owned(),
            Some(a) => format!("/api/v1/users/bob/weber-calculations?limit=2&after={a}"),
        };
        let page = app.get(&path, Some(&key)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        assert_eq!(page["user_id"], "bob");
        let rows = page["calculations"].as_array().unwrap();
        assert!(rows.len() <= 2, "{page}");
        seen.extend(rows.iter().cloned());
        match page["next_after"].as_i64() {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    // Newest first: review sequences count down, ids strictly decrease, nothing repeats.
    let sequences: Vec<i64> = seen
        .iter()
        .map(|r| r["review_sequence"].as_i64().unwrap())
        .collect();
    let mut want: Vec<i64> = sequences.clone();
    want.sort_unstable_by(|a, b| b.cmp(a));
    want.dedup();
    assert_eq!(sequences, want, "{seen:?}");
    assert!(seen.len() >= sentiments.len() - 1, "{seen:?}");
    let newest = &seen[0];
    let want_profile = engine_profile(&sentiments, &WeberParams::default());
    assert_eq!(newest["weber_constant"], json!(want_profile.weber_constant));
    assert_eq!(newest["sentiment_value"], json!(-0.3));
    assert!(newest["calculated_at"].as_str().unwrap().ends_with('Z'));

    // Another tenant's key does not see bob; an unknown user is 404; bad paging is 400.
    app.get(
        "/api/v1/users/bob/weber-calculations",
        Some(&other_key.secret),
    )
    .await
    .assert_problem(404, "not_found", "/api/v1/users/bob/weber-calculations");
    app.get("/api/v1/users/nobody/weber-calculations", Some(&key))
        .await
        .assert_problem(404, "not_found", "/api/v1/users/nobody/weber-calculations");
    for bad in ["limit=0", "limit=1001", "after=0", "after=x"] {
        let path = format!("/api/v1/users/bob/weber-calculations?{bad}");
        let reply = app.get(&path, Some(&key)).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    app.cleanup().await;
}
