//! Dual-write end to end (issue 20, acceptance 5): with a tenant's `[dual_write]` on, every
//! item `signalbox serve` accepts over HTTP reaches a legacy endpoint exactly as sent, even
//! when that endpoint is down while the items arrive.
//!
//! A legacy server (axum on an ephemeral port, storing what it receives by `Idempotency-Key`)
//! answers 503 while items are posted; it stays down until the jobs API shows failed
//! forwarding attempts for every accepted item, then comes up. Then every accepted item has
//! arrived, byte-equal, exactly once; a re-sent (duplicate) item is not forwarded twice; an
//! item purged before delivery is not forwarded (recorded `skipped_purged`); an item the
//! endpoint refuses (422) fails its job with the reason. `signalbox feedback reconcile` of
//! what the legacy endpoint received against signalbox reports zero differences (the purged
//! item is listed as `purged_here_only`, not counted).
//!
//! `SIGNALBOX_DUAL_WRITE_OUTAGE_S=30` keeps the endpoint down for at least that long while
//! items keep arriving, and prints the figures (`scripts/feedback/dual_write_outage.sh`).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use store::testing::TestStore;
use store::{FeedbackEvent, Scope, Scopes};
use support::{get_raw, signalbox, Server};

const TOKEN: &str = "Bearer legacy-test-token";

/// What the legacy endpoint saw.
#[derive(Default)]
struct Legacy {
    up: bool,
    /// Body of each stored item, by Idempotency-Key.
    stored: HashMap<String, Value>,
    /// Requests answered 2xx per key (more than one would be a double forward).
    created: HashMap<String, u32>,
    /// Requests answered 503.
    refused_down: u64,
    /// Requests answered 409.
    conflicts: u64,
    /// Requests without the configured Authorization header.
    unauthorised: u64,
}

type Shared = Arc<Mutex<Legacy>>;

async fn legacy_feedback(
    State(legacy): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut l = legacy.lock().unwrap();
    if !l.up {
        l.refused_down += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        l.unauthorised += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(item) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if item["id"] != key.as_str() {
        return StatusCode::BAD_REQUEST;
    }
    if item["text"]
        .as_str()
        .is_some_and(|t| t.contains("REFUSE-ME"))
    {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    if l.stored.contains_key(&key) {
        l.conflicts += 1;
        return StatusCode::CONFLICT;
    }
    l.stored.insert(key.clone(), item);
    *l.created.entry(key).or_default() += 1;
    StatusCode::CREATED
}

/// Starts the legacy server (down); returns its state and URL.
async fn start_legacy() -> (Shared, String) {
    let legacy: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/legacy/feedback", axum::routing::post(legacy_feedback))
        .with_state(legacy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (legacy, format!("http://{addr}/legacy/feedback"))
}

/// One HTTP/1.1 request; the status and body.
fn send(addr: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (
        status,
        raw.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

struct Fixture {
    store: TestStore,
    dir: tempfile::TempDir,
    tenant: String,
    key: String,
}

impl Fixture {
    async fn new(postgres: bool, legacy_url: &str) -> Fixture {
        let store = if postgres {
            TestStore::postgres().await
        } else {
            TestStore::sqlite().await
        };
        let tenant = store
            .store
            .create_tenant("dual-write", store::Tier::Professional)
            .await
            .unwrap()
            .id;
        let key = store
            .store
            .issue_api_key(
                &tenant,
                Scopes::from_iter([Scope::Read, Scope::Write, Scope::Admin]),
                None,
            )
            .await
            .unwrap()
            .secret;
        let config = format!(
            "[dual_write]\nenabled = true\nurl = \"{legacy_url}\"\ntimeout_ms = 2000\n\
             max_attempts = 25\nauth_header_env = \"LEGACY_TOKEN\"\n"
        );
        store
            .store
            .put_feedback_config(&tenant, &config, 0)
            .await
            .unwrap();
        Fixture {
            store,
            dir: tempfile::tempdir().unwrap(),
            tenant,
            key,
        }
    }

    /// `signalbox serve` with a short retry schedule on the forwarding queue (200 ms doubling,
    /// capped at 2 s by the test's pace: the 25 attempts span minutes).
    fn serve(&self) -> Command {
        let mut cmd = signalbox(self.dir.path());
        cmd.env("DATABASE_URL", &self.store.options.url)
            .env("LEGACY_TOKEN", TOKEN)
            .env("SIGNALBOX_JOBS_POLL_INTERVAL", "100ms")
            .env("SIGNALBOX_DATABASE_POOL_SIZE", "5")
            .env(
                "SIGNALBOX_JOBS_QUEUES",
                "*.rate_per_minute=0,low.retry_delay=200ms",
            );
        match &self.store.options.schema {
            Some(schema) => cmd.env("SIGNALBOX_DATABASE_SCHEMA", schema),
            None => cmd.env_remove("SIGNALBOX_DATABASE_SCHEMA"),
        };
        cmd
    }

    /// The tenant's forwarding jobs, as the jobs API shows them.
    fn forward_jobs(&self, addr: &str) -> Vec<Value> {
        let (status, _, body) = get_raw(
            addr,
            "/api/v1/jobs?handler=feedback.forward_legacy&limit=500",
            &self.key,
        );
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        page["jobs"].as_array().cloned().unwrap_or_default()
    }
}

/// A batch of items with awkward texts (quotes, newlines, emoji, combining marks, a lone
/// backslash), metadata, both queued and inline tiers, and one item without text.
fn batch(round: usize) -> Vec<Value> {
    let texts = [
        "Plain: the app is great.",
        "Quotes \"double\" and 'single', a tab\tand a newline\nhere.",
        "Émojis 😀🚀 and combining e\u{301} and CJK 反馈",
        "Backslash \\ and a null-ish \\u0000 literal",
        "Email me at someone@example.com about order 42.",
    ];
    (0..texts.len() + 1)
        .map(|i| {
            let mut item = json!({
                "id": format!("dw-r{round}-i{i}"),
                "user_id": format!("user-{}", i % 3),
                "type": if i % 2 == 0 { "review" } else { "complaint" },
                "channel": "web",
                "rating": 1 + (i % 5),
                "locale": "en-GB",
                "region": "eu",
                "occurred_at_ms": 1_764_000_000_000i64 + (round * 100 + i) as i64,
                "metadata": {"plan": "pro", "n": i},
                "tier": if i % 3 == 0 { "realtime" } else { "standard" },
            });
            if let Some(text) = texts.get(i) {
                item["text"] = json!(format!("{text} (round {round})"));
            }
            item
        })
        .collect()
}

fn post_batch(server: &Server, key: &str, items: &[Value]) -> Vec<(String, String)> {
    let (status, reply) = send(
        &server.addr,
        "POST",
        "/api/v1/feedback",
        key,
        &Value::Array(items.to_vec()).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `limit` with `what`.
async fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn items_reach_the_legacy_endpoint_after_an_outage(postgres: bool) {
    let outage = std::env::var("SIGNALBOX_DUAL_WRITE_OUTAGE_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (legacy, url) = start_legacy().await;
    let fx = Fixture::new(postgres, &url).await;
    let server = Server::start(&mut fx.serve());

    // The endpoint is down (503) while items arrive.
    let mut sent: BTreeMap<String, Value> = BTreeMap::new();
    let mut post_round = |round: usize| {
        let items = batch(round);
        let answers = post_batch(&server, &fx.key, &items);
        assert!(answers.iter().all(|(_, o)| o == "stored"), "{answers:?}");
        for item in items {
            sent.insert(item["id"].as_str().unwrap().to_owned(), item);
        }
    };
    let down_since = Instant::now();
    post_round(0);
    post_round(1);
    // An idempotent re-send: duplicates, stored nothing, forwarded nothing more.
    let again = post_batch(&server, &fx.key, &batch(0));
    assert!(again.iter().all(|(_, o)| o == "duplicate"), "{again:?}");
    // Purged before the endpoint comes back: never forwarded.
    let purged = "dw-r1-i2";
    assert!(fx
        .store
        .store
        .purge_feedback(
            &fx.tenant,
            purged,
            &FeedbackEvent::new("purged", "test", json!({})),
            0,
        )
        .await
        .unwrap());
    let mut round = 2;
    if let Some(outage) = outage {
        // The issue's figure: a real outage while traffic keeps arriving, about 1 batch/s.
        while down_since.elapsed() < outage {
            post_round(round);
            round += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    // Down until the jobs API shows failed attempts covering every accepted item.
    let accepted: HashSet<String> = sent.keys().cloned().collect();
    let failed_attempts = poll(
        Duration::from_secs(120),
        "failed forwarding attempts",
        || {
            let jobs = fx.forward_jobs(&server.addr);
            let mut covered = HashSet::new();
            let mut attempts = 0;
            for job in &jobs {
                let failed = job["status"] == "retrying"
                    && job["attempts"].as_u64().unwrap_or(0) >= 1
                    && job["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("answered 503"));
                if failed {
                    attempts += job["attempts"].as_u64().unwrap_or(0);
                    for id in job["payload"]["item_ids"].as_array().unwrap() {
                        covered.insert(id.as_str().unwrap().to_owned());
                    }
                }
            }
            (covered == accepted).then_some(attempts)
        },
    )
    .await;
    let refused_down = legacy.lock().unwrap().refused_down;
    assert!(refused_down >= 1);
    assert!(legacy.lock().unwrap().stored.is_empty());
    let down_for = down_since.elapsed();

    // Up: every accepted item but the purged one arrives, exactly as sent, exactly once.
    legacy.lock().unwrap().up = true;
    let up_at = Instant::now();
    let expected: HashSet<String> = accepted
        .iter()
        .filter(|id| *id != purged)
        .cloned()
        .collect();
    poll(
        Duration::from_secs(120),
        "every item at the legacy endpoint",
        || {
            let l = legacy.lock().unwrap();
            let got: HashSet<String> = l.stored.keys().cloned().collect();
            (got == expected).then_some(())
        },
    )
    .await;
    let drained_in = up_at.elapsed();
    let export = fx.dir.path().join("legacy-export.jsonl");
    let conflicts = {
        let l = legacy.lock().unwrap();
        for id in &expected {
            let original = &sent[id];
            let got = &l.stored[id];
            for field in [
                "id",
                "user_id",
                "type",
                "channel",
                "rating",
                "locale",
                "region",
                "occurred_at_ms",
                "metadata",
            ] {
                assert_eq!(got[field], original[field], "{id}: {field}");
            }
            // Byte-equal text (JSON strings compare by their characters).
            assert_eq!(
                got["text"].as_str().map(str::as_bytes),
                original["text"].as_str().map(str::as_bytes),
                "{id}: text"
            );
            assert_eq!(l.created[id], 1, "{id} forwarded more than once");
        }
        assert!(!l.stored.contains_key(purged));
        assert_eq!(
            l.unauthorised, 0,
            "the Authorization header comes from LEGACY_TOKEN"
        );
        // What the legacy side holds, exported as JSON lines, for reconcile.
        let lines: Vec<String> = l.stored.values().map(Value::to_string).collect();
        std::fs::write(&export, lines.join("\n") + "\n").unwrap();
        l.conflicts
    };

    // Reconcile (the import's mapping file, read as the legacy export's description): every
    // item agrees field by field and text by text; the one difference is the item purged
    // before it could be forwarded, which signalbox still holds (its text erased) and the
    // legacy side never got.
    let mapping = fx.dir.path().join("legacy-mapping.toml");
    std::fs::write(
        &mapping,
        "format = \"jsonl\"\ntime_format = \"epoch_ms\"\n[columns]\nid = \"id\"\n\
         user_id = \"user_id\"\ntype = \"type\"\nchannel = \"channel\"\nrating = \"rating\"\n\
         text = \"text\"\nlocale = \"locale\"\nregion = \"region\"\noccurred_at = \"occurred_at_ms\"\n",
    )
    .unwrap();
    let diff = fx.dir.path().join("reconcile.jsonl");
    let out = fx
        .serve()
        .arg("feedback")
        .arg("reconcile")
        .arg(&export)
        .args(["--tenant", &fx.tenant, "--mapping"])
        .arg(&mapping)
        .arg("--out")
        .arg(&diff)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", support::describe("feedback reconcile", &out)));
    assert_eq!(summary["compared"], expected.len(), "{summary}");
    assert_eq!(summary["missing"], 0, "{summary}");
    assert_eq!(summary["different"], 0, "{summary}");
    assert_eq!(summary["export_rows_skipped"], 0, "{summary}");
    let differences = support::json_lines(&std::fs::read_to_string(&diff).unwrap());
    // The item purged before delivery is listed, not counted: its content no longer exists.
    assert_eq!(summary["extra"], 0, "{summary}: {differences:?}");
    assert_eq!(summary["purged"], 1, "{summary}: {differences:?}");
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(
        differences[0]["kind"], "purged_here_only",
        "{differences:?}"
    );
    assert_eq!(differences[0]["id"], purged, "{differences:?}");
    assert!(out.status.success(), "exit 0: zero differences ({summary})");

    // Every forwarding job ends successful, with its attempts on record.
    let jobs = poll(
        Duration::from_secs(60),
        "forwarding jobs to succeed",
        || {
            let jobs = fx.forward_jobs(&server.addr);
            jobs.iter()
                .all(|j| j["status"] == "success")
                .then_some(jobs)
        },
    )
    .await;
    assert!(jobs.iter().all(|j| j["attempts"].as_u64().unwrap() >= 2));

    // History: one forwarded_legacy per delivered item; the purged one is skipped.
    let history = |id: &str| {
        let store = fx.store.store.clone();
        let tenant = fx.tenant.clone();
        let id = id.to_owned();
        async move { store.feedback_history(&tenant, &id).await.unwrap() }
    };
    for id in expected.iter().take(5) {
        let h = history(id).await;
        let n = h.iter().filter(|e| e.event == "forwarded_legacy").count();
        assert_eq!(n, 1, "{id}: {h:?}");
    }
    let h = history(purged).await;
    assert!(h.iter().any(|e| e.event == "forward_skipped"), "{h:?}");
    assert!(!h.iter().any(|e| e.event == "forwarded_legacy"), "{h:?}");

    // An item the endpoint refuses (422): its job fails at once with the reason; its
    // neighbour in the same request is delivered.
    let refused = post_batch(
        &server,
        &fx.key,
        &[
            json!({"id": "dw-refused", "user_id": "u", "type": "review", "text": "REFUSE-ME"}),
            json!({"id": "dw-fine", "user_id": "u", "type": "review", "text": "fine"}),
        ],
    );
    assert_eq!(refused.len(), 2);
    let failed = poll(
        Duration::from_secs(60),
        "the refused item's job to fail",
        || {
            fx.forward_jobs(&server.addr).into_iter().find(|j| {
                j["payload"]["item_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i == "dw-refused"))
                    && j["status"] == "failed"
            })
        },
    )
    .await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("dw-refused") && error.contains("422"),
        "{error}"
    );
    assert_eq!(failed["attempts"], 1, "permanent: no retry");
    assert!(legacy.lock().unwrap().stored.contains_key("dw-fine"));

    // The metric counts each outcome.
    let (_, _, metrics) = get_raw(&server.addr, "/metrics", &fx.key);
    let delivered_line = metrics
        .lines()
        .find(|l| l.starts_with("feedback_legacy_forward_total{outcome=\"delivered\"}"))
        .unwrap_or_else(|| panic!("no delivered count in {metrics}"));
    let delivered: u64 = delivered_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(delivered as usize, expected.len() + 1, "{delivered_line}");

    println!(
        "dual-write outage ({}): {} items accepted while the legacy endpoint was down for \
         {:.1} s ({} requests refused 503, {} failed job attempts on record); all {} \
         delivered {:.1} s after it came back, none lost, none twice ({} conflicts), 1 purged \
         item skipped",
        if postgres { "postgresql" } else { "sqlite" },
        accepted.len(),
        down_for.as_secs_f64(),
        refused_down,
        failed_attempts,
        expected.len(),
        drained_in.as_secs_f64(),
        conflicts,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_reach_the_legacy_endpoint_after_an_outage_on_postgres() {
    items_reach_the_legacy_endpoint_after_an_outage(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_reach_the_legacy_endpoint_after_an_outage_on_sqlite() {
    items_reach_the_legacy_endpoint_after_an_outage(false).await;
}
