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
