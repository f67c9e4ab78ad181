//! The privacy budget holds across replicas: two `signalbox serve` processes on one PostgreSQL
//! schema, a budget of ε 5.0, and 200 concurrent queries of ε 0.1 split over both. Exactly 50
//! are answered and 150 refused, and the ledger sums to exactly 5.0, read over HTTP and in SQL.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Barrier};

use support::{json_lines, run_ok, signalbox, Server};

/// Sends one request over a fresh connection; returns the status and the body.
fn request(addr: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

const QUERIES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_answer_exactly_the_budget_and_refuse_the_rest() {
    let fixture = store::testing::TestStore::postgres().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let command = |dir: &Path| {
        let mut cmd = signalbox(dir);
        cmd.env("DATABASE_URL", &fixture.options.url)
            .env(
                "SIGNALBOX_DATABASE_SCHEMA",
                fixture.options.schema.as_deref().unwrap(),
            )
            .env("SIGNALBOX_DEMO", "false")
            .env("SIGNALBOX_RATE_LIMITS", "off")
            // Few connections (the database's are shared), waited for long enough that 100
            // queued requests per process are served, not answered database_busy.
            .env("SIGNALBOX_DATABASE_POOL_SIZE", "4")
            .env("SIGNALBOX_DATABASE_ACQUIRE_TIMEOUT", "60s");
        cmd
    };
    let created = json_lines(&run_ok(
        command(dirs[0].path()).args(["tenants", "create", "budgeted"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap().to_owned();
    let tenant_id = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let servers = [
        Server::start(&mut command(dirs[0].path())),
        Server::start(&mut command(dirs[1].path())),
    ];
    let addrs = [servers[0].addr.clone(), servers[1].addr.clone()];

    let (status, body) = request(
        &addrs[0],
        "PUT",
        "/api/v1/privacy/budget",
        &key,
        r#"{"period": "month", "epsilon": 5.0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let items = serde_json::json!([
        {"id": "f1", "user_id": "u1", "type": "review", "rating": 4},
        {"id": "f2", "user_id": "u2", "type": "praise", "rating": 5},
    ]);
    let (status, body) = request(
        &addrs[1],
        "POST",
        "/api/v1/feedback?tier=realtime",
        &key,
        &items.to_string(),
    );
    assert_eq!(status, 200, "{body}");

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let query = serde_json::json!({
        "metric": "count", "from": now_ms - 86_400_000, "to": now_ms + 3_600_000, "epsilon": 0.1
    })
    .to_string();
    // All 200 start together, alternating between the two processes.
    let start = Arc::new(Barrier::new(QUERIES));
    let workers: Vec<_> = (0..QUERIES)
        .map(|i| {
            let (addr, key, query, start) = (
                addrs[i % 2].clone(),
                key.clone(),
                query.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                request(&addr, "POST", "/api/v1/feedback/analytics", &key, &query)
            })
        })
        .collect();
    let replies: Vec<(u16, String)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let answered = replies.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&String> = replies
        .iter()
        .filter(|(s, _)| *s == 403)
        .map(|(_, b)| b)
        .collect();
    let other: Vec<_> = replies
        .iter()
        .filter(|(s, _)| *s != 200 && *s != 403)
        .collect();
    let per_server: Vec<usize> = (0..2)
        .map(|k| {
            replies
                .iter()
                .enumerate()
                .filter(|(i, (s, _))| i % 2 == k && *s == 200)
                .count()
        })
        .collect();
    println!(
        "privacy budget over two replicas: {QUERIES} concurrent queries of epsilon 0.1 against 5.0: \
         {answered} answered (replica A {}, replica B {}), {} refused, {} other",
        per_server[0],
        per_server[1],
        refused.len(),
        other.len()
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!(answered, 50);
    assert_eq!(refused.len(), 150);
    for body in &refused {
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("privacy_budget_exhausted"),
            "{problem}"
        );
        assert!(
            problem["remaining_epsilon"].as_f64().unwrap() < 0.1,
            "{problem}"
        );
    }

    // The ledger over HTTP: exactly 5.0 spent, 50 rows (from either process).
    let (status, body) = request(
        &addrs[1],
        "GET",
        "/api/v1/privacy/budget?limit=500",
        &key,
        "",
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["epsilon_spent"], 5.0, "{page}");
    assert_eq!(page["epsilon_remaining"], 0.0, "{page}");
    let rows = page["ledger"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    let http_sum_nanos: i64 = rows
        .iter()
        .map(|r| (r["epsilon"].as_f64().unwrap() * 1e9).round() as i64)
        .sum();
    assert_eq!(http_sum_nanos, 5_000_000_000);

    // And in SQL: the ledger's sum and the period's spend are both exactly 5.0.
    let period_start = privacy::budget::Period::Month.start_ms(now_ms);
    let (sum, count) = fixture
        .store
        .privacy_ledger_totals(&tenant_id, period_start)
        .await
        .unwrap();
    let spent = fixture
        .store
        .privacy_spent(&tenant_id, period_start)
        .await
        .unwrap();
    println!(
        "ledger in SQL: {count} rows, epsilon sum {} nanos; privacy_spend {} nanos",
        sum.epsilon_nanos, spent.epsilon_nanos
    );
    assert_eq!((sum.epsilon_nanos, count), (5_000_000_000, 50));
    assert_eq!(spent.epsilon_nanos, 5_000_000_000);
    drop(servers);
    fixture.cleanup().await;
}
