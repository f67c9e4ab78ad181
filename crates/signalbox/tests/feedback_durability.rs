//! Feedback durability end to end (issue 17, acceptance 6): items answered 2xx by
//! `POST /api/v1/feedback` survive a SIGKILL of `signalbox serve` and are processed exactly once
//! by their effect, on SQLite and on PostgreSQL.
//!
//! Clients post realtime (analysed inline) and standard (queued) items concurrently; the server
//! is SIGKILLed mid-stream and started again on the same database. Then every item answered
//! 2xx is stored, every stored item (answered or not) ends processed, with one `received` and
//! one `processed` event and one result write, and none is half-written (an item without its
//! history, or left waiting for processing that never comes).

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use store::testing::TestStore;
use store::{FeedbackFilter, FeedbackStatus, Scope, Scopes, Store};
use support::{signalbox, Server};

/// Research mode: every item gets the full checks at once (realtime inline, standard in its
/// job), so each item has exactly one result write.
const RESEARCH: &str = "mode = \"research\"\n";
/// Client threads posting at once.
const CLIENTS: usize = 4;
/// Items per request.
const BATCH: usize = 10;
/// Items accepted before the SIGKILL.
const KILL_AFTER: usize = 300;

/// One HTTP/1.1 POST; the status (0 when the connection failed) and body.
fn post(addr: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let sent = write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = String::new();
    if sent.is_err() || conn.read_to_string(&mut raw).is_err() {
        return (0, String::new());
    }
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let reply = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, reply)
}

struct Fixture {
    store: TestStore,
    dir: tempfile::TempDir,
    tenant: String,
    key: String,
}

impl Fixture {
    async fn new(postgres: bool) -> Fixture {
        let store = if postgres {
            TestStore::postgres().await
        } else {
            TestStore::sqlite().await
        };
        let tenant = store
            .store
            .create_tenant("feedback", store::Tier::Professional)
            .await
            .unwrap()
            .id;
        let key = store
            .store
            .issue_api_key(
                &tenant,
                Scopes::from_iter([Scope::Read, Scope::Write]),
                None,
            )
            .await
            .unwrap()
            .secret;
        store
            .store
            .put_feedback_config(&tenant, RESEARCH, 0)
            .await
            .unwrap();
        Fixture {
            store,
            dir: tempfile::tempdir().unwrap(),
            tenant,
            key,
        }
    }

    fn store(&self) -> &Store {
        &self.store.store
    }

    /// `signalbox serve` on the fixture's database: a 2 s job lease so the killed server's jobs
    /// come back fast, no start rate limits, a small connection pool.
    fn serve(&self) -> Command {
        let mut cmd = signalbox(self.dir.path());
        cmd.env("DATABASE_URL", &self.store.options.url)
            .env("SIGNALBOX_JOBS_LEASE", "2s")
            .env("SIGNALBOX_JOBS_POLL_INTERVAL", "200ms")
            .env("SIGNALBOX_DATABASE_POOL_SIZE", "5")
            .env("SIGNALBOX_JOBS_QUEUES", "*.rate_per_minute=0");
        match &self.store.options.schema {
            Some(schema) => cmd.env("SIGNALBOX_DATABASE_SCHEMA", schema),
            None => cmd.env_remove("SIGNALBOX_DATABASE_SCHEMA"),
        };
        cmd
    }

    /// Every stored item of the tenant.
    async fn all_items(&self) -> Vec<store::FeedbackRecord> {
        let mut all = Vec::new();
        let mut filter = FeedbackFilter {
            limit: store::MAX_FEEDBACK_PAGE,
            ..Default::default()
        };
        loop {
            let page = self
                .store()
                .list_feedback(&self.tenant, &filter)
                .await
                .unwrap();
            let last = page.last().map(|r| (r.occurred_ms, r.id.clone()));
            let full = page.len() as u32 == store::MAX_FEEDBACK_PAGE;
            all.extend(page);
            match (full, last) {
                (true, Some(after)) => filter.after = Some(after),
                _ => return all,
            }
        }
    }
}

/// Posts batches from `CLIENTS` threads until the server stops answering; each thread sends
/// the ids of every 2xx batch on `accepted`.
fn start_clients(
    addr: &str,
    key: &str,
    accepted: mpsc::Sender<Vec<String>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client| {
            let (addr, key, accepted) = (addr.to_owned(), key.to_owned(), accepted.clone());
            std::thread::spawn(move || {
                for round in 0.. {
                    let tier = if round % 2 == 0 { "realtime" } else { "standard" };
                    let items: Vec<serde_json::Value> = (0..BATCH)
                        .map(|i| {
                            serde_json::json!({
                                "id": format!("c{client}-r{round}-i{i}"),
                                "user_id": format!("user-{}", i % 7),
                                "type": "review",
                                "rating": 1 + (i % 5),
                                "text": format!("Round {round}: the checkout page was slow, item {i}."),
                            })
                        })
                        .collect();
                    let body = serde_json::Value::Array(items).to_string();
                    let (status, reply) =
                        post(&addr, &format!("/api/v1/feedback?tier={tier}"), &key, &body);
                    if !(200..300).contains(&status) {
                        // The server is gone (or answered an error): stop this client.
                        return;
                    }
                    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
                    let ids = reply["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i["id"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>();
                    assert_eq!(ids.len(), BATCH, "every item accepted: {reply}");
                    if accepted.send(ids).is_err() {
                        return;
                    }
                }
            })
        })
        .collect()
}

async fn accepted_items_survive_kill_9_and_are_processed_once(postgres: bool) {
    let fx = Fixture::new(postgres).await;
    let mut server = Server::start(&mut fx.serve());
    let (tx, rx) = mpsc::channel();
    let clients = start_clients(&server.addr, &fx.key, tx);
    let mut answered: HashSet<String> = HashSet::new();
    while answered.len() < KILL_AFTER {
        let ids = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("clients stalled; server log: {:?}", server.log()));
        answered.extend(ids);
    }
    // Mid-stream: the clients are still posting.
    server.kill();
    for client in clients {
        client.join().unwrap();
    }
    answered.extend(rx.try_iter().flatten());

    // Start again on the same database; its workers pick up the killed server's jobs once
    // their lease runs out.
    let server = Server::start(&mut fx.serve());
    let deadline = Instant::now() + Duration::from_secs(120);
    let items = loop {
        let items = fx.all_items().await;
        if items.iter().all(|i| !i.status.awaits_processing()) {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "items still awaiting processing after 2 minutes: {:?}\nserver log: {:?}",
            items
                .iter()
                .filter(|i| i.status.awaits_processing())
                .map(|i| (&i.id, i.status))
                .take(10)
                .collect::<Vec<_>>(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let stored: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "answered 2xx but not stored: {lost:?}");
    assert!(answered.len() >= KILL_AFTER);
    let realtime = items.iter().filter(|i| i.tier == "realtime").count();
    let standard = items.iter().filter(|i| i.tier == "standard").count();
    assert!(realtime > 0 && standard > 0, "{realtime} / {standard}");

    // Every stored item, answered or cut off by the kill: processed exactly once by effect.
    for item in &items {
        assert_eq!(
            item.status,
            FeedbackStatus::NeedsReview,
            "research mode flags every item for review: {}",
            item.id
        );
        assert_eq!(item.attempts, 1, "one result write for {}", item.id);
        assert!(item.analysis.text_redacted.is_some(), "{}", item.id);
        assert!(item.text_sealed.is_some(), "{}", item.id);
        let history = fx
            .store()
            .feedback_history(&fx.tenant, &item.id)
            .await
            .unwrap();
        let count = |event: &str| history.iter().filter(|h| h.event == event).count();
        assert_eq!(count("received"), 1, "{}: {history:?}", item.id);
        assert_eq!(count("scored"), 1, "{}: {history:?}", item.id);
        assert_eq!(count("processed"), 1, "{}: {history:?}", item.id);
        assert_eq!(count("failed"), 0, "{}: {history:?}", item.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_feedback_survives_kill_9_on_sqlite() {
    accepted_items_survive_kill_9_and_are_processed_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_feedback_survives_kill_9_on_postgres() {
    accepted_items_survive_kill_9_and_are_processed_once(true).await;
}

/// The operator's path after feedback traffic: `signalbox feedback keys rotate` (beside the
/// running server, on the same database and keys) makes a new data key whose re-encryption job
/// the server works off, every text still reads back, and `signalbox audit verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_from_the_cli_and_the_audit_log_verifies() {
    let fx = Fixture::new(false).await;
    let server = Server::start(&mut fx.serve());
    let items: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            let tier = ["realtime", "standard"][i % 2];
            serde_json::json!({"id": format!("k{i}"), "user_id": "ann", "type": "review",
                "rating": 2, "text": format!("Item {i}: refund to ann{i}@example.com please"),
                "tier": tier})
        })
        .collect();
    let (status, reply) = post(
        &server.addr,
        "/api/v1/feedback",
        &fx.key,
        &serde_json::Value::Array(items).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let old_key = fx
        .store()
        .active_data_key(&fx.tenant)
        .await
        .unwrap()
        .unwrap()
        .key_id;

    let out = fx
        .serve()
        .args(["feedback", "keys", "rotate", "--tenant", &fx.tenant])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_key = rotated["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);

    // Well under custody's one-minute key cache: the server must not keep resealing under
    // the key it cached before the CLI rotated.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = fx
            .store()
            .count_feedback_sealed_with(&fx.tenant, &old_key)
            .await
            .unwrap();
        let waiting = fx
            .all_items()
            .await
            .iter()
            .any(|i| i.status.awaits_processing());
        if left == 0 && !waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} items still under the old key; server log: {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fx.store()
            .count_feedback_sealed_with(&fx.tenant, &new_key)
            .await
            .unwrap(),
        30
    );

    let out = fx
        .serve()
        .args(["audit", "verify", "--tenant", &fx.tenant])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
