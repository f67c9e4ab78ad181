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

async fn profile_of(app: &TestApp, key: &str, user: &str) -> Value {
    let reply = app
        .get(&format!("/api/v1/users/{user}/weber-profile"), Some(key))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// An application whose job workers run (polling every 20 ms).
async fn app_with_job_workers() -> (
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
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(server::run_job_workers(app.state.clone(), async move {
        let _ = stopped.await;
    }));
    (app, stop, workers)
}

/// Polls a job until it has finished (the job runs on the workers' own schedule).
async fn job_done(app: &TestApp, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job = app
            .get(&format!("/api/v1/jobs/{id}"), Some(key))
            .await
            .json();
        if job["status"] == "success" {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job {id}: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tenant_settings_validate_apply_to_new_profiles_and_recalculate_stored_ones() {
    let (app, stop, workers) = app_with_job_workers().await;
    let (tenant, admin) = app.tenant("tuned", &[Scope::Admin]).await;
    let (_, other) = app.tenant("untouched", &[Scope::Admin]).await;
    let admin = admin.secret;
    let key_with = |scopes: &'static [Scope]| {
        let store = app.fixture.store.clone();
        let tenant_id = tenant.id.clone();
        async move {
            store
                .issue_api_key(&tenant_id, scopes.iter().copied().collect(), None)
                .await
                .unwrap()
                .secret
        }
    };
    let reader = key_with(&[Scope::Read]).await;
    let path = "/api/v1/weber/settings";
    let defaults = app.get(path, Some(&reader)).await;
    assert_eq!(defaults.status, 200, "{}", defaults.text());
    let defaults = defaults.json();
    assert_eq!(defaults["source"], "default", "{defaults}");
    assert_eq!(defaults["eps"], json!(weber::DEFAULT_EPS));
    assert_eq!(defaults["window"], json!(weber::DEFAULT_WINDOW));

    // Each bad value is a problem naming its field; a read key may not write.
    for (body, field) in [
        (json!({"eps": 0.0, "window": 10}), "eps"),
        (json!({"eps": -1.0, "window": 10}), "eps"),
        (json!({"eps": 2e9, "window": 10}), "eps"),
        (json!({"eps": 0.1, "window": 0}), "window"),
        (json!({"eps": 0.1, "window": 10_001}), "window"),
    ] {
        let reply = app
            .call(Method::PUT, path, Some(&admin), Some(body.clone()))
            .await;
        let problem = reply.assert_problem(400, "invalid_field", path);
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let reply = app
        .call(
            Method::PUT,
            path,
            Some(&reader),
            Some(json!({"eps": 0.5, "window": 3})),
        )
        .await;
    reply.assert_problem(403, "forbidden", path);

    // A history profiled with the defaults…
    let sentiments = [0.9, -0.8, 0.7, -0.2, 0.95, -0.9];
    let events: Vec<Value> = sentiments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"event_id": format!("e{i}"), "user_id": "cy",
            "timestamp": 1_000 * (i as i64 + 1), "sentiment": s})
        })
        .collect();
    let write = key_with(&[Scope::Write, Scope::Read]).await;
    assert_eq!(
        post_events(&app, &write, Value::Array(events)).await.status,
        200
    );
    app.settle().await;
    let before = profile_of(&app, &write, "cy").await;
    assert_eq!(
        before["weber_constant"],
        json!(engine_profile(&sentiments, &WeberParams::default()).weber_constant)
    );

    // …then new settings: stored profiles are recalculated by the job the answer names.
    let reply = app
        .call(
            Method::PUT,
            path,
            Some(&admin),
            Some(json!({"eps": 0.5, "window": 3})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let set = reply.json();
    assert_eq!(
        (set["eps"].clone(), set["window"].clone()),
        (json!(0.5), json!(3))
    );
    assert_eq!(set["source"], "tenant");
    let job_id = set["recalculation_job_id"]
        .as_str()
        .expect("a job")
        .to_owned();
    let job = job_done(&app, &admin, &job_id).await;
    assert_eq!(job["handler"], "weber.recalculate");
    let tuned = WeberParams::new(3, 0.5).unwrap();
    let last3 = &sentiments[sentiments.len() - 3..];
    let want = engine_profile(last3, &tuned);
    let after = profile_of(&app, &write, "cy").await;
    assert_eq!(
        after["weber_constant"],
        json!(want.weber_constant),
        "{after}"
    );
    assert_ne!(after["weber_constant"], before["weber_constant"]);

    // New events use the new settings at once.
    let reply = post_events(
        &app,
        &write,
        json!([{"event_id": "e-next", "user_id": "cy", "timestamp": 10_000, "sentiment": 0.1}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;
    let want = engine_profile(&[sentiments[4], sentiments[5], 0.1], &tuned);
    assert_eq!(
        profile_of(&app, &write, "cy").await["weber_constant"],
        json!(want.weber_constant)
    );

    // The same settings again: nothing to recalculate. Another tenant keeps the defaults.
    let again = app
        .call(
            Method::PUT,
            path,
            Some(&admin),
            Some(json!({"eps": 0.5, "window": 3})),
        )
        .await
        .json();
    assert!(again.get("recalculation_job_id").is_none(), "{again}");
    let untouched = app.get(path, Some(&other.secret)).await.json();
    assert_eq!(untouched["source"], "default", "{untouched}");
    let _ = stop.send(());
    workers.await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn erasing_a_user_removes_their_data_once_and_is_audited_by_pseudonym() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app
        .tenant("erasing", &[Scope::Admin, Scope::Read, Scope::Write])
        .await;
    let (_, reader) = app.tenant("reader-only", &[Scope::Read]).await;
    let (other_tenant, other) = app
        .tenant("bystander", &[Scope::Admin, Scope::Read, Scope::Write])
        .await;
    let key = admin.secret;
    let events = |user: &str| -> Value {
        Value::Array(
            [0.5, -0.5, 0.8, 0.1]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    json!({"event_id": format!("{user}-{i}"), "user_id": user,
                    "timestamp": 1_000 * (i as i64 + 1), "sentiment": s})
                })
                .collect(),
        )
    };
    for (k, user) in [(&key, "dee"), (&key, "eve"), (&other.secret, "dee")] {
        assert_eq!(post_events(&app, k, events(user)).await.status, 200);
    }
    app.settle().await;
    // Read once so the read cache holds dee's profile.
    let profile = app.get("/api/v1/users/dee/weber-profile", Some(&key)).await;
    assert_eq!(profile.status, 200, "{}", profile.text());

    let path = "/api/v1/users/dee";
    app.call(Method::DELETE, path, Some(&reader.secret), None)
        .await
        .assert_problem(403, "forbidden", path);
    let reply = app.call(Method::DELETE, path, Some(&key), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let erased = reply.json();
    assert_eq!(erased["erased"]["interactions"], 4, "{erased}");
    assert_eq!(erased["erased"]["profiles"], 1, "{erased}");
    assert!(
        erased["erased"]["calculations"].as_u64().unwrap() >= 1,
        "{erased}"
    );

    // Nothing of dee is served any more, from the cache or the store.
    app.get("/api/v1/users/dee/weber-profile", Some(&key))
        .await
        .assert_problem(404, "not_found", "/api/v1/users/dee/weber-profile");
    app.get("/api/v1/users/dee/weber-calculations", Some(&key))
        .await
        .assert_problem(404, "not_found", "/api/v1/users/dee/weber-calculations");
    let store = &app.fixture.store;
    assert!(store
        .interaction_windows(&tenant.id, &["dee".to_owned()], 100)
        .await
        .unwrap()
        .is_empty());
    // The audit keeps a pseudonym, the counts and the key, never the id.
    let audit = store.weber_erasures(&tenant.id, "dee").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].subject_hash,
        store::erasure_subject_hash(&tenant.id, "dee")
    );
    // (Not "does not contain dee": d and e are hex digits, so a digest may well contain it.)
    assert_eq!(audit[0].subject_hash.len(), 64);
    assert!(audit[0]
        .subject_hash
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(audit[0].counts.interactions, 4);
    assert!(!audit[0].key_id.is_empty());

    // A second erasure finds nothing: 404, and no second audit row.
    app.call(Method::DELETE, path, Some(&key), None)
        .await
        .assert_problem(404, "not_found", path);
    assert_eq!(
        store.weber_erasures(&tenant.id, "dee").await.unwrap().len(),
        1
    );

    // Other users and other tenants' users of the same id are untouched.
    for (k, user) in [(&key, "eve"), (&other.secret, "dee")] {
        let reply = app
            .get(&format!("/api/v1/users/{user}/weber-profile"), Some(k))
            .await;
        assert_eq!(reply.status, 200, "{user}: {}", reply.text());
    }
    assert!(store
        .weber_erasures(&other_tenant.id, "dee")
        .await
        .unwrap()
        .is_empty());

    // A new event after the erasure starts a fresh history: the worker does not carry the
    // erased sentiments over.
    let reply = post_events(
        &app,
        &key,
        json!([{"event_id": "dee-new", "user_id": "dee", "timestamp": 50_000, "sentiment": -0.4}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;
    let fresh = app
        .get("/api/v1/users/dee/weber-profile", Some(&key))
        .await
        .json();
    assert_eq!(fresh["review_count"], 1, "{fresh}");
    app.cleanup().await;
}

#[tokio::test]
async fn segment_analytics_report_recent_performance_and_daily_segment_shares() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("trending", &[Scope::Read, Scope::Write]).await;
    let (_, quiet) = app.tenant("quiet", &[Scope::Read]).await;
    let key = key.secret;
    // Three users, each with a volatile history (sensitive) or a flat one (insensitive), and one
    // rejected event.
    let mut events = Vec::new();
    for (user, pattern) in [
        ("hi-1", [0.9, -0.9, 0.9, -0.9]),
        ("hi-2", [0.8, -0.8, 0.8, -0.8]),
        ("flat", [0.5, 0.5, 0.5, 0.5]),
    ] {
        for (i, s) in pattern.iter().enumerate() {
            events.push(json!({"event_id": format!("{user}-{i}"), "user_id": user,
                "timestamp": 1_000 * (i as i64 + 1), "sentiment": s}));
        }
    }
    events.push(json!({"event_id": "bad", "user_id": "x", "timestamp": 1, "sentiment": 7}));
    let reply = post_events(&app, &key, Value::Array(events)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    app.settle().await;

    let reply = app
        .get("/api/v1/analytics/weber-segments", Some(&key))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let perf = &body["performance_metrics"];
    assert!(
        perf["calculations_per_second"].as_f64().unwrap() > 0.0,
        "{perf}"
    );
    assert!(perf["window_seconds"].as_f64().unwrap() >= 1.0, "{perf}");
    assert!(
        perf["average_latency_ms"].as_f64().unwrap() >= 0.0,
        "{perf}"
    );
    // 1 rejected of 13 offered.
    assert_eq!(perf["error_rate"], json!(1.0 / 13.0), "{perf}");

    let trends = body["trends"].as_array().unwrap();
    assert_eq!(trends.len(), 30, "{body}");
    let today = trends.last().unwrap();
    let profiles = &body["segment_distribution"];
    assert_eq!(today["total_users"], 3, "{today}");
    for seg in [
        "Highly_Sensitive",
        "Moderately_Sensitive",
        "Low_Sensitive",
        "Insensitive",
    ] {
        assert_eq!(
            today["users"][seg], profiles[seg],
            "{seg}: {today} vs {profiles}"
        );
        let want = profiles[seg].as_f64().unwrap() / 3.0;
        assert_eq!(today["shares"][seg], json!(want), "{seg}: {today}");
    }
    // Everything was calculated today: the earlier days count nobody.
    assert!(
        trends[..29].iter().all(|d| d["total_users"] == 0),
        "{trends:?}"
    );
    let dates: Vec<&str> = trends.iter().map(|d| d["date"].as_str().unwrap()).collect();
    let mut sorted = dates.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, dates, "one entry per day, oldest first");

    // Another tenant sees none of this tenant's activity.
    let other = app
        .get("/api/v1/analytics/weber-segments", Some(&quiet.secret))
        .await
        .json();
    assert_eq!(
        other["performance_metrics"]["calculations_per_second"], 0.0,
        "{other}"
    );
    assert_eq!(
        other["performance_metrics"]["error_rate"],
        Value::Null,
        "{other}"
    );
    assert_eq!(other["trends"][29]["total_users"], 0, "{other}");
    app.cleanup().await;
}

#[tokio::test]
async fn an_erased_profile_is_not_served_from_the_redis_layer() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let prefix = format!("test:cache:{}:", uuid::Uuid::new_v4().simple());
    let config = server::ServerConfig {
        read_caches: server::ReadCacheSettings {
            redis_url: Some(
                std::env::var("SIGNALBOX_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            key_prefix: prefix,
        },
        ..server::ServerConfig::default()
    };
    let first = TestApp::with_config(Backend::Sqlite, config.clone()).await;
    let (tenant, key) = first.tenant("forgetful", &[Scope::Admin]).await;
    first
        .fixture
        .store
        .upsert_weber_profiles(&tenant.id, &[crate::weber::profile_record("gone", 0.5)])
        .await
        .unwrap();
    let path = "/api/v1/users/gone/weber-profile";
    // The read puts the profile in this replica's memory and in Redis.
    assert_eq!(first.get(path, Some(&key.secret)).await.status, 200);
    let erased = first
        .call(
            Method::DELETE,
            "/api/v1/users/gone",
            Some(&key.secret),
            None,
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text());
    first
        .get(path, Some(&key.secret))
        .await
        .assert_problem(404, "not_found", path);

    // A second replica over the same store and Redis, with an empty memory layer: Redis no
    // longer has the profile either.
    let events_dir = tempfile::tempdir().unwrap();
    let events = stream::EventLog::open_file(events_dir.path(), Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(telemetry::Metrics::new(Default::default()));
    let second =
        server::AppState::new(first.fixture.store.clone(), metrics, config, events).expect("state");
    let request = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {}", key.secret))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = server::app(second).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    first.cleanup().await;
}
