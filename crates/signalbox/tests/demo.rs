//! A fresh `signalbox serve` gives its demo tenant a history every console page can show: the
//! API reads the experiment with its results, Weber profiles, LLM usage with costs, feedback
//! items with personal data and a policy violation, and finished and dead jobs.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{signalbox, Server};

fn get(server: &Server, path: &str, key: &str) -> (u16, Value) {
    let (status, _, body) = server.get_raw(path, key);
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, json)
}

/// Reads `path` until `done` holds, for up to 30 s: profiles and queued work are finished by
/// background workers after the server starts listening.
fn eventually(server: &Server, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(server, path, key);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {status} {body}\nlog: {:?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fresh_serve_gives_the_demo_tenant_a_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mut signalbox(dir.path()));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let key = demo["api_key"].as_str().unwrap();

    // The experiment runs on one of the demo flags and its results have something to say.
    let (status, listed) = get(&server, "/api/v1/experiments", key);
    assert_eq!(status, 200, "{listed}");
    let experiment = &listed["experiments"][0];
    assert_eq!(experiment["key"], "pricing-layout", "{listed}");
    assert_eq!(experiment["state"], "running", "{listed}");
    assert_eq!(experiment["spec"]["flag_key"], "pricing-page-experiment");
    let (status, results) = get(&server, "/api/v1/experiments/pricing-layout/results", key);
    assert_eq!(status, 200, "{results}");
    let users: u64 = results["users"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(users, 1_200, "{results}");
    assert_eq!(results["srm"]["mismatch"], false, "{results}");
    let primary = &results["metrics"][0];
    assert_eq!(primary["metric"], "signup", "{results}");
    let comparisons = primary["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2, "{results}");
    for c in comparisons {
        let lift = &c["relative_lift"];
        assert!(
            lift["ci_low"].as_f64().unwrap() < lift["estimate"].as_f64().unwrap()
                && lift["estimate"].as_f64().unwrap() < lift["ci_high"].as_f64().unwrap(),
            "{c}"
        );
    }
    assert!(
        results["sequential"]["p_values"]
            .as_object()
            .is_some_and(|p| p.len() == 2),
        "{results}"
    );
    assert!(results["recommendation"].is_object(), "{results}");

    // Profiles are computed by the profile worker from the ingested interactions.
    let analytics = eventually(&server, "/api/v1/analytics/weber-segments", key, |a| {
        a["total_users"] == 200
    });
    let populated = analytics["segment_distribution"]
        .as_object()
        .unwrap()
        .values()
        .filter(|n| n.as_u64().unwrap_or(0) > 0)
        .count();
    assert!(populated >= 3, "segments should differ: {analytics}");
    let (status, profile) = get(&server, "/api/v1/users/user-010/weber-profile", key);
    assert_eq!(status, 200, "{profile}");
    assert!(profile["review_count"].as_u64().unwrap() >= 2, "{profile}");

    // Purchases were written and the predictions fitted before the server listened: a demo
    // user's CLV, churn risk and recommendations answer at once, from the first model version.
    let (status, clv) = get(&server, "/api/v1/users/user-001/clv-prediction", key);
    assert_eq!(status, 200, "{clv}");
    assert_eq!(clv["model_version"], "bgnbd-gg-v1", "{clv}");
    let predicted = clv["predicted_clv"].as_f64().unwrap();
    let interval = clv["confidence_interval"].as_array().unwrap();
    assert!(
        interval[0].as_f64().unwrap() <= predicted && predicted <= interval[1].as_f64().unwrap(),
        "{clv}"
    );
    let (status, churn) = get(&server, "/api/v1/users/user-001/churn-prediction", key);
    assert_eq!(status, 200, "{churn}");
    // Enough demo users have profiles and a holdout for the Weber-enhanced model.
    assert_eq!(churn["model"], "weber_enhanced", "{churn}");
    let risk = churn["churn_risk_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&risk), "{churn}");
    assert!(
        churn["key_risk_factors"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{churn}"
    );
    let (status, recommended) = get(
        &server,
        "/api/v1/recommendations/weber-enhanced?user_id=user-001",
        key,
    );
    assert_eq!(status, 200, "{recommended}");
    assert!(
        recommended["recommendations"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{recommended}"
    );
    assert_eq!(recommended["model_version"], "bgnbd-gg-v1", "{recommended}");
    // Customers who only buy have predictions too; the model saw every simulated customer.
    let (status, model) = get(&server, "/api/v1/predictions/model", key);
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["customers"], 350, "{model}");
    assert!(model["evaluation"]["auc_timing"].is_number(), "{model}");

    // LLM usage over the last fortnight, priced.
    let (status, usage) = get(&server, "/api/v1/llm/usage?group_by=", key);
    assert_eq!(status, 200, "{usage}");
    let totals = &usage["groups"][0];
    assert!(totals["calls"].as_u64().unwrap() >= 60, "{usage}");
    assert!(totals["cost_picodollars"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(totals["unpriced_calls"], 0, "{usage}");
    let (status, conversation) = get(&server, "/api/v1/llm/conversations/conv-001", key);
    assert_eq!(status, 200, "{conversation}");

    // Feedback across tiers: personal data found, one item breaking the policy; the queued
    // tiers are processed by the job workers.
    let (status, violation) = get(&server, "/api/v1/feedback/fb-violation", key);
    assert_eq!(status, 200, "{violation}");
    assert!(
        violation["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{violation}"
    );
    let pii = eventually(&server, "/api/v1/feedback/fb-pii-2", key, |i| {
        i["status"] != "received"
    });
    assert!(
        pii["pii"].as_array().is_some_and(|p| !p.is_empty()),
        "{pii}"
    );
    let (status, items) = get(&server, "/api/v1/feedback?limit=100", key);
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["items"].as_array().unwrap().len(), 34, "{items}");

    // Jobs: finished ones and a dead letter.
    let stats = eventually(&server, "/api/v1/jobs/stats", key, |s| {
        let sum = |status: &str| -> u64 {
            s["queues"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| q["by_status"][status].as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        // At least the canary: on a loaded machine a feedback job may also run out of time.
        sum("dead") >= 1 && sum("success") >= 3
    });
    assert!(stats["queues"].is_array());

    // The key is in its file, never in the log (what was logged after listening).
    let log = server.log().join("\n");
    assert!(!log.contains(key), "the demo key leaked into the log");
}

#[test]
fn the_demo_history_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&mut signalbox(dir.path()));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let key = demo["api_key"].as_str().unwrap().to_owned();
    drop(first);
    let second = Server::start(&mut signalbox(dir.path()));
    let (status, listed) = get(&second, "/api/v1/experiments", &key);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["experiments"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let (status, items) = get(&second, "/api/v1/feedback?limit=100", &key);
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["items"].as_array().unwrap().len(), 34, "{items}");
}

/// One raw HTTP/1.1 request to the server; returns the status, the headers (names lower-cased)
/// and the body.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    support::request_raw(&server.addr, method, path, headers, body)
}

/// Signing in to the console, reading pages and signing out, with a log of every request
/// (`SIGNALBOX_LOG=debug`): the log never holds the API key or the session cookie.
#[test]
fn the_console_never_logs_the_key_or_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(signalbox(dir.path()).env("SIGNALBOX_LOG", "debug"));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let key = demo["api_key"].as_str().unwrap();

    let form = format!(
        "api_key={}&next=%2Fconsole",
        key.replace('+', "%2B").replace('/', "%2F")
    );
    let form_type = ("content-type", "application/x-www-form-urlencoded");
    // A wrong key first: the refusal must not log what was typed either.
    let wrong = format!("{key}x");
    let (status, _, _) = request(
        &server,
        "POST",
        "/console/sign-in",
        &[form_type],
        &format!("api_key={wrong}"),
    );
    assert_eq!(status, 401);
    let (status, headers, _) = request(&server, "POST", "/console/sign-in", &[form_type], &form);
    assert_eq!(status, 303);
    let set_cookie = headers
        .iter()
        .find(|(name, _)| name == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let session = cookie.split_once('=').unwrap().1.to_owned();
    let (status, _, page) = request(&server, "GET", "/console", &[("cookie", &cookie)], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("demo"), "{page}");
    assert!(!page.contains(key));
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF token") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];
    let (status, _, _) = request(
        &server,
        "POST",
        "/console/sign-out",
        &[form_type, ("cookie", &cookie)],
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303);
    // After sign-out the cookie is worth nothing.
    let (status, _, _) = request(&server, "GET", "/console", &[("cookie", &cookie)], "");
    assert_eq!(status, 303);

    // The whole log: stop the server and read its stderr to the end.
    server.kill();
    let mut log = server.startup_log.clone();
    log.extend(server.stderr.iter());
    assert!(
        log.iter().any(|l| l.contains("/console/sign-in")),
        "requests are logged at debug: {log:?}"
    );
    for line in &log {
        assert!(!line.contains(key), "the API key is in the log: {line}");
        assert!(!line.contains(&wrong), "a typed key is in the log: {line}");
        assert!(
            !line.contains(&session),
            "the session is in the log: {line}"
        );
        assert!(!line.contains(csrf), "the CSRF token is in the log: {line}");
    }
}

/// `signalbox loadtest --scenario console` signs in with the demo key from the data directory,
/// finds the pages from the overview and reports each one's latency and weight.
#[test]
fn the_console_load_scenario_measures_each_page() {
    let dir = tempfile::tempdir().unwrap();
    // Every page of the demo tenant, many times: no per-tenant rate limit in the way.
    let server = Server::start(signalbox(dir.path()).env("SIGNALBOX_RATE_LIMITS", "off"));
    let out = signalbox(dir.path())
        .args([
            "loadtest",
            "--scenario",
            "console",
            "--url",
            &format!("http://{}", server.addr),
            "--connections",
            "1",
            "--requests",
            "20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pages = report["pages"].as_array().unwrap();
    let overview = pages
        .iter()
        .find(|p| p["path"] == "/console")
        .unwrap_or_else(|| panic!("{report}"));
    for page in pages {
        assert_eq!(page["status_counts"]["200"], 20, "{page}");
        assert!(page["median_ms"].as_f64().unwrap() > 0.0, "{page}");
        assert!(
            page["p99_ms"].as_f64().unwrap() >= page["median_ms"].as_f64().unwrap(),
            "{page}"
        );
    }
    // Every page loads the console's whole script and style, served smaller compressed.
    let script = report["script_bytes_total"].as_u64().unwrap();
    assert!(script > 0 && script < 100 * 1024, "{report}");
    assert_eq!(overview["script_bytes"].as_u64(), Some(script), "{report}");
    assert_eq!(
        overview["style_bytes"], report["style_bytes_total"],
        "{report}"
    );
    assert!(
        overview["script_bytes_compressed"].as_u64().unwrap() < script,
        "{report}"
    );
    // A wrong key is refused with a clear message.
    let out = signalbox(dir.path())
        .args([
            "loadtest",
            "--scenario",
            "console",
            "--url",
            &format!("http://{}", server.addr),
            "--key",
            "sb_wrong",
            "--connections",
            "1",
            "--requests",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sign-in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
