//! The binary as an operator uses it: real processes, a real server on a loopback port.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{json_lines, run_ok, signalbox};

fn run_err(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run signalbox");
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

#[test]
fn tenants_and_keys_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "acme", "--tier", "starter"]),
    ));
    assert_eq!(created.len(), 1);
    let tenant_id = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let first_key = created[0]["api_key"].as_str().unwrap().to_owned();
    assert!(
        first_key.starts_with("sbx_") && first_key.len() == 52,
        "{first_key}"
    );

    let listed = json_lines(&run_ok(signalbox(dir.path()).args(["tenants", "list"])));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "acme");
    assert_eq!(listed[0]["tier"], "starter");

    let key = json_lines(&run_ok(signalbox(dir.path()).args([
        "keys",
        "create",
        "--tenant",
        &tenant_id,
        "--scopes",
        "read,write",
        "--label",
        "etl",
    ])));
    let key_id = key[0]["key_id"].as_str().unwrap().to_owned();
    assert_eq!(key[0]["scopes"], serde_json::json!(["read", "write"]));

    let keys_text = run_ok(signalbox(dir.path()).args(["keys", "list", "--tenant", &tenant_id]));
    assert!(
        !keys_text.contains(&first_key[12..]),
        "listing shows a secret"
    );
    assert_eq!(json_lines(&keys_text).len(), 2);

    let revoked = json_lines(&run_ok(
        signalbox(dir.path()).args(["keys", "revoke", &key_id]),
    ));
    assert!(revoked[0]["revoked_at_ms"].is_i64(), "{:?}", revoked[0]);

    // A key bound to a user, allowed to assert users (per-user rate limits).
    let bound = json_lines(&run_ok(signalbox(dir.path()).args([
        "keys",
        "create",
        "--tenant",
        &tenant_id,
        "--scopes",
        "read,assert_user",
        "--user-id",
        "ann",
    ])));
    assert_eq!(bound[0]["user_id"], "ann");
    assert_eq!(
        bound[0]["scopes"],
        serde_json::json!(["read", "assert_user"])
    );
}

#[test]
fn cli_mistakes_get_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(signalbox(dir.path()).args(["tenants", "create", "acme"]));
    let check = |args: &[&str], env: Option<(&str, &str)>, mentions: &str| {
        let mut cmd = signalbox(dir.path());
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let err = run_err(&mut cmd);
        assert!(
            err.contains(mentions),
            "{args:?}: expected {mentions:?} in {err}"
        );
        err
    };
    let dup = check(
        &["tenants", "create", "acme"],
        None,
        "name: tenant named 'acme' already exists",
    );
    assert_eq!(dup.trim().lines().count(), 1, "{dup}");
    check(
        &["tenants", "create", "x", "--tier", "gold"],
        None,
        "unknown tier 'gold'",
    );
    check(&["tenants", "create", "   "], None, "invalid name");
    check(
        &["keys", "create", "--tenant", "tn_nope", "--scopes", "read"],
        None,
        "tenant: tenant 'tn_nope' not found",
    );
    check(
        &["keys", "create", "--tenant", "tn_nope", "--scopes", "root"],
        None,
        "unknown scope 'root'",
    );
    check(
        &[
            "keys",
            "create",
            "--tenant",
            "tn_nope",
            "--scopes",
            "read",
            "--user-id",
            "a b",
        ],
        None,
        "user_id",
    );
    check(
        &["serve", "--trusted-proxies", "10.0.0.0/8,10.0.0.0/40"],
        None,
        "`10.0.0.0/40` is not a CIDR block",
    );
    let proxies = dir.path().join("proxies.toml");
    std::fs::write(&proxies, "[http]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap();
    check(
        &[
            "--config",
            proxies.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
        "http.trusted_proxies: `10.0.0.1/8` is not a CIDR block",
    );
    check(
        &["keys", "revoke", "key_nope"],
        None,
        "key_id: no key 'key_nope'",
    );
    check(
        &["tenants", "list"],
        Some(("DATABASE_URL", "mysql://localhost/x")),
        "database_url:",
    );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nbody_limit = 5\n").unwrap();
    let err = check(
        &["--config", config.to_str().unwrap(), "tenants", "list"],
        None,
        "unknown field `body_limit`",
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    check(
        &[
            "loadtest",
            "--url",
            "http://10.1.2.3/",
            "--connections",
            "1",
            "--requests",
            "1",
        ],
        None,
        "not a loopback address",
    );
    check(
        &[
            "loadtest",
            "--url",
            "http://127.0.0.1:1/",
            "--preset",
            "extreme",
        ],
        None,
        "preset: unknown preset \"extreme\" (expected light, normal, heavy or stress)",
    );
    check(
        &[
            "loadtest",
            "--url",
            "http://127.0.0.1:1/",
            "--requests",
            "1",
        ],
        None,
        "connections: give --connections or --preset",
    );
    check(
        &[
            "loadtest",
            "--url",
            "http://127.0.0.1:1/a",
            "--url",
            "http://127.0.0.1:2/b",
            "--preset",
            "light",
        ],
        None,
        "url: http://127.0.0.1:2/b is not on the same host and port as http://127.0.0.1:1/a",
    );
    let cors = check(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cors-allow-origin",
            "https://app.example.com/",
        ],
        None,
        "cors allow origin: CORS origin `https://app.example.com/`",
    );
    assert_eq!(cors.trim().lines().count(), 1, "{cors}");
    check(
        &["serve", "--listen", "127.0.0.1:0"],
        Some(("SIGNALBOX_EVENT_LOG_STREAM", "no spaces")),
        "event log stream: must be 1 to 64 characters",
    );
    // A bad LLM price table stops the start naming the file and the entry at fault.
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "version = \"x\"\n[[prices]]\nprovider = \"acme\"\nmodel = \"m\"\n\
         effective_from = \"2025-01-01\"\ninput = \"-1\"\noutput = \"1\"\n",
    )
    .unwrap();
    let err = check(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--llm-prices",
            prices.to_str().unwrap(),
        ],
        None,
        "prices[0].input",
    );
    assert!(
        err.contains("llm prices: ") && err.contains("prices.toml"),
        "{err}"
    );
    check(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--llm-prices",
            "/nonexistent/prices.toml",
        ],
        None,
        "llm prices: cannot read /nonexistent/prices.toml",
    );
    check(
        &["serve", "--listen", "127.0.0.1:0"],
        Some(("SIGNALBOX_LLM_MAX_EVENTS", "0")),
        "llm max events per request: must be more than zero",
    );
}

/// A running `signalbox serve`, stopped with SIGTERM on drop.
struct Server {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGNALBOX_LOG_FORMAT", "human")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the server announces its address");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().to_owned();
            }
        };
        Server {
            child,
            addr,
            stderr: rx,
        }
    }

    fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Sends one request with a JSON body (or none) and returns the status and JSON reply.
    fn send(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> (u16, Value) {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        let body = body.unwrap_or("");
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let reply = raw.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(reply).unwrap_or(Value::Null))
    }

    /// Kills the process with SIGKILL: no shutdown code runs, as in a crash or power cut.
    fn crash(mut self) {
        // SAFETY: signalling our own child process.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) },
            0
        );
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status:?}");
    }

    /// Sends SIGTERM and returns whether it exited cleanly, and what it logged after.
    fn terminate(mut self) -> (bool, Vec<String>) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().unwrap();
        // The reader thread may still be forwarding the last lines; it ends at EOF, which
        // disconnects the channel. Drain until then.
        let mut rest = Vec::new();
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stderr never closed: {rest:?}"),
            }
        }
        (status.success(), rest)
    }
}

#[test]
fn serve_runs_with_demo_data_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mut signalbox(dir.path()));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let demo_key = demo["api_key"].as_str().unwrap();
    let (status, me) = server.get("/api/v1/tenant", demo_key);
    assert_eq!(status, 200);
    assert_eq!(me["name"], "demo");

    // Operator commands work against the same data while the server runs.
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "live"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap();
    let (status, me) = server.get("/api/v1/tenant", key);
    assert_eq!((status, me["name"].as_str()), (200, Some("live")));

    // The built-in load generator against the running server.
    let report = run_ok(Command::new(env!("CARGO_BIN_EXE_signalbox")).args([
        "loadtest",
        "--url",
        &format!("http://{}/api/v1/tenant", server.addr),
        "--header",
        &format!("Authorization: Bearer {key}"),
        "--connections",
        "4",
        "--requests",
        "200",
        "--json",
    ]));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["requests"], 200);
    assert_eq!(report["status_counts"]["200"], 200);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);

    let (clean, log) = server.terminate();
    assert!(clean, "exit status after SIGTERM: {log:?}");
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
    // Restarting keeps the data and does not mint another demo tenant.
    let listed = json_lines(&run_ok(signalbox(dir.path()).args(["tenants", "list"])));
    assert_eq!(listed.len(), 2);
}

#[test]
fn accepted_interactions_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mut signalbox(dir.path()));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let key = demo["api_key"].as_str().unwrap().to_owned();
    const USERS: usize = 20;
    const BATCHES: usize = 10;
    let mut sent = 0usize;
    for b in 0..BATCHES {
        let events: Vec<Value> = (0..USERS)
            .map(|u| {
                serde_json::json!({
                    "event_id": format!("b{b}-u{u}"), "user_id": format!("user-{u}"),
                    "timestamp": 1_700_000_000_000i64 + (b * 1000) as i64,
                    "rating": (b + u) % 5 + 1, "text": "arrived late but works"
                })
            })
            .collect();
        let body = serde_json::to_string(&events).unwrap();
        let (status, reply) = server.send("POST", "/api/v1/interactions", &key, Some(&body));
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["stored"], USERS, "{reply}");
        sent += USERS;
    }
    // Crash right after the last 2xx: whatever the worker had not applied is still pending.
    server.crash();

    let server = Server::start(&mut signalbox(dir.path()));
    // Every accepted event is in the store: a recalculation from stored history counts them all.
    let mut counted = 0;
    for u in 0..USERS {
        let path = format!("/api/v1/users/user-{u}/weber-profile/update");
        let (status, reply) = server.send("POST", &path, &key, None);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["profile"]["review_count"], BATCHES, "{reply}");
        counted += reply["profile"]["review_count"].as_u64().unwrap() as usize;
    }
    assert_eq!(counted, sent);
    // Sending everything again changes nothing: all duplicates.
    let again: Vec<Value> = (0..USERS)
        .map(|u| serde_json::json!({"event_id": format!("b0-u{u}"), "user_id": format!("user-{u}"), "timestamp": 1, "rating": 1}))
        .collect();
    let (status, reply) = server.send(
        "POST",
        "/api/v1/interactions",
        &key,
        Some(&serde_json::to_string(&again).unwrap()),
    );
    assert_eq!(
        (status, reply["duplicates"].as_u64()),
        (200, Some(USERS as u64)),
        "{reply}"
    );
    let (status, profile) = server.get("/api/v1/users/user-3/weber-profile", &key);
    assert_eq!(
        (status, profile["review_count"].as_u64()),
        (200, Some(BATCHES as u64))
    );
    let (clean, log) = server.terminate();
    assert!(clean, "{log:?}");
}

#[tokio::test]
async fn the_cli_drives_postgresql_through_database_url() {
    let fixture = store::testing::TestStore::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let with_pg = || {
        let mut cmd = signalbox(dir.path());
        cmd.env("DATABASE_URL", &fixture.options.url).env(
            "SIGNALBOX_DATABASE_SCHEMA",
            fixture.options.schema.as_deref().unwrap(),
        );
        cmd
    };
    let created = json_lines(&run_ok(with_pg().args([
        "tenants",
        "create",
        "pg-tenant",
        "--tier",
        "enterprise",
    ])));
    let tenant_id = created[0]["tenant_id"].as_str().unwrap();
    // Visible through the library on the same schema: the CLI really wrote to PostgreSQL.
    let tenant = fixture
        .store
        .tenant(tenant_id)
        .await
        .unwrap()
        .expect("tenant in PostgreSQL");
    assert_eq!(tenant.tier, store::Tier::Enterprise);
    let server = Server::start(&mut with_pg());
    let (status, me) = server.get("/api/v1/tenant", created[0]["api_key"].as_str().unwrap());
    assert_eq!((status, me["tier"].as_str()), (200, Some("enterprise")));
    assert!(
        !dir.path().join("demo-tenant.json").exists(),
        "no demo tenant on PostgreSQL by default"
    );
    let (clean, _) = server.terminate();
    assert!(clean);
    fixture.cleanup().await;
}

#[test]
fn sentiment_scores_stdin_lines_in_order() {
    let lines = [
        "VADER is smart, handsome, and funny!",
        "",
        "The food was not good.",
        "caf\u{e9} :)",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .arg("sentiment")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Invalid UTF-8 on the last line must not stop the command.
    let mut input = lines.join("\n").into_bytes();
    input.extend_from_slice(b"\nbad \xff byte\n");
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(got.len(), lines.len() + 1);
    for (line, value) in lines.iter().zip(&got) {
        let want = serde_json::to_value(sentiment::score(line)).unwrap();
        assert_eq!(value, &want, "{line:?}");
    }
    assert!(got[0]["compound"].as_f64().unwrap() > 0.5);
    assert!(got[2]["compound"].as_f64().unwrap() < 0.0);
    assert_eq!(got[1]["compound"], 0.0);
}

mod weber_batch {
    use super::*;

    fn gen(dir: &Path, name: &str, users: &str, reviews: &str, seed: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        run_ok(
            signalbox(dir)
                .args([
                    "weber",
                    "gen",
                    "--users",
                    users,
                    "--reviews",
                    reviews,
                    "--seed",
                    seed,
                ])
                .arg(&path),
        );
        path
    }

    /// The expected profiles, computed straight from the libraries: VADER on "title. text", the
    /// rating mapped and averaged with it, events ordered by (timestamp, line number).
    fn expected(path: &Path) -> std::collections::BTreeMap<String, Value> {
        let mut by_user: std::collections::BTreeMap<String, Vec<weber::Interaction>> =
            Default::default();
        for (i, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
            let r: Value = serde_json::from_str(line).unwrap();
            let text = match (r["title"].as_str(), r["text"].as_str()) {
                (Some(t), Some(b)) if !t.is_empty() && !b.is_empty() => Some(format!("{t}. {b}")),
                (Some(t), _) if !t.is_empty() => Some(t.to_owned()),
                (_, Some(b)) if !b.is_empty() => Some(b.to_owned()),
                _ => None,
            };
            let compound = text.map(|t| sentiment::score(&t).compound);
            let s = weber::combined_sentiment(r["rating"].as_f64(), compound)
                .unwrap()
                .unwrap();
            by_user
                .entry(r["user_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(weber::Interaction::new(
                    s,
                    r["timestamp"].as_i64().unwrap(),
                    i as u64 + 1,
                ));
        }
        let params = weber::WeberParams::default();
        by_user
            .into_iter()
            .map(|(user, events)| {
                let p = weber::profile(&events, &params).unwrap();
                let row = serde_json::json!({
                    "user_id": user,
                    "weber_constant": p.weber_constant,
                    "sensitivity_segment": p.sensitivity_segment.as_str(),
                    "calculation_confidence": p.calculation_confidence,
                    "review_count": events.len(),
                    "bias_ratio": p.bias_ratio,
                });
                (user, row)
            })
            .collect()
    }

    #[test]
    fn gen_is_deterministic_per_seed() {
        let dir = tempfile::tempdir().unwrap();
        let a = gen(dir.path(), "a.jsonl", "20", "300", "7");
        let b = gen(dir.path(), "b.jsonl", "20", "300", "7");
        let c = gen(dir.path(), "c.jsonl", "20", "300", "8");
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.iter().filter(|x| **x == b'\n').count(), 300);
        let err = run_err(
            signalbox(dir.path())
                .args(["weber", "gen", "--users", "0", "--reviews", "5"])
                .arg(dir.path().join("x")),
        );
        assert!(err.contains("users: must be between"), "{err}");
    }

    #[test]
    fn batch_profiles_match_the_libraries_and_csv_matches_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let input = gen(dir.path(), "reviews.jsonl", "40", "3000", "11");
        let out = dir.path().join("profiles.jsonl");
        run_ok(
            signalbox(dir.path())
                .args(["weber", "batch"])
                .arg(&input)
                .arg("--out")
                .arg(&out),
        );
        let got = json_lines(&std::fs::read_to_string(&out).unwrap());
        let want = expected(&input);
        assert_eq!(got.len(), want.len());
        let users: Vec<&str> = got.iter().map(|p| p["user_id"].as_str().unwrap()).collect();
        let mut sorted = users.clone();
        sorted.sort_unstable();
        assert_eq!(users, sorted, "profiles are sorted by user id");
        for row in &got {
            let user = row["user_id"].as_str().unwrap();
            let mut row = row.clone();
            assert!(row["last_updated"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')));
            row.as_object_mut().unwrap().remove("last_updated");
            assert_eq!(&row, &want[user], "user {user}");
        }

        // The same reviews as CSV give the same profiles, and CSV output has the same columns.
        let csv_in = gen(dir.path(), "reviews.csv", "40", "3000", "11");
        let from_csv = run_ok(signalbox(dir.path()).args(["weber", "batch"]).arg(&csv_in));
        assert_eq!(json_lines(&from_csv), got);
        let csv_out = dir.path().join("profiles.csv");
        run_ok(
            signalbox(dir.path())
                .args(["weber", "batch"])
                .arg(&input)
                .arg("--out")
                .arg(&csv_out),
        );
        let csv_text = std::fs::read_to_string(&csv_out).unwrap();
        assert_eq!(
            csv_text.lines().next(),
            Some("user_id,weber_constant,sensitivity_segment,calculation_confidence,review_count,bias_ratio,last_updated")
        );
        assert_eq!(csv_text.lines().count(), got.len() + 1);
    }

    #[test]
    fn equal_timestamps_keep_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("ties.jsonl");
        // Same user, same millisecond: the order of the two middle reviews changes the profile.
        let lines = [
            r#"{"user_id":"u","timestamp":1000,"rating":5}"#,
            r#"{"user_id":"u","timestamp":2000,"rating":1}"#,
            r#"{"user_id":"u","timestamp":2000,"rating":4}"#,
            r#"{"user_id":"u","timestamp":500,"rating":3}"#,
        ];
        std::fs::write(&input, lines.join("\n")).unwrap();
        let got = json_lines(&run_ok(
            signalbox(dir.path()).args(["weber", "batch"]).arg(&input),
        ));
        let events = [
            (0.0, 500, 4),
            (1.0, 1000, 1),
            (-1.0, 2000, 2),
            (0.5, 2000, 3),
        ]
        .map(|(s, t, line)| weber::Interaction::new(s, t, line));
        let want = weber::profile(&events, &weber::WeberParams::default()).unwrap();
        assert_eq!(got[0]["weber_constant"].as_f64(), Some(want.weber_constant));
        let swapped = [
            (0.0, 500, 4),
            (1.0, 1000, 1),
            (0.5, 2000, 2),
            (-1.0, 2000, 3),
        ]
        .map(|(s, t, line)| weber::Interaction::new(s, t, line));
        let other = weber::profile(&swapped, &weber::WeberParams::default()).unwrap();
        assert_ne!(
            other.weber_constant, want.weber_constant,
            "the test must be sensitive to order"
        );
    }

    #[test]
    fn bad_rows_are_listed_by_line_and_nothing_is_written_unless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("mixed.jsonl");
        let lines = [
            r#"{"user_id":"a","timestamp":1,"rating":5}"#,
            r#"{"user_id":"a","timestamp":2,"rating":9}"#,
            "not json",
            "",
            r#"{"user_id":"a","timestamp":3}"#,
            r#"{"user_id":"a","timestamp":4,"text":"awful"}"#,
        ];
        std::fs::write(&input, lines.join("\n")).unwrap();
        let out = dir.path().join("p.jsonl");
        let err = run_err(
            signalbox(dir.path())
                .args(["weber", "batch"])
                .arg(&input)
                .arg("--out")
                .arg(&out),
        );
        assert!(err.contains("line 2: rating:"), "{err}");
        assert!(err.contains("line 3: not a JSON object"), "{err}");
        assert!(err.contains("line 5: at least one of"), "{err}");
        assert!(err.contains("3 bad rows"), "{err}");
        assert!(!out.exists(), "no output after a failed run");
        run_ok(
            signalbox(dir.path())
                .args(["weber", "batch", "--skip-bad-rows"])
                .arg(&input)
                .arg("--out")
                .arg(&out),
        );
        let got = json_lines(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["review_count"], 2);
    }
}

#[tokio::test]
async fn weber_batch_loads_profiles_into_the_tenants_store() {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "analysts"]),
    ));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let input = dir.path().join("reviews.jsonl");
    run_ok(
        signalbox(dir.path())
            .args([
                "weber",
                "gen",
                "--users",
                "30",
                "--reviews",
                "900",
                "--seed",
                "3",
            ])
            .arg(&input),
    );
    let file_out = dir.path().join("profiles.jsonl");
    run_ok(
        signalbox(dir.path())
            .args(["weber", "batch"])
            .arg(&input)
            .arg("--out")
            .arg(&file_out),
    );
    let expected = json_lines(&std::fs::read_to_string(&file_out).unwrap());

    for _ in 0..2 {
        // Loading twice is safe: the second run replaces the same rows.
        let printed = run_ok(
            signalbox(dir.path())
                .args(["weber", "batch", "--load", "--tenant", &tenant])
                .arg(&input),
        );
        assert!(printed.is_empty(), "--load prints no profiles: {printed}");
    }
    let store = store::Store::connect(&store::StoreOptions::sqlite_in(dir.path()))
        .await
        .unwrap();
    let ids: Vec<String> = expected
        .iter()
        .map(|p| p["user_id"].as_str().unwrap().to_owned())
        .collect();
    let stored = store.weber_profiles(&tenant, &ids).await.unwrap();
    assert_eq!(stored.len(), expected.len());
    for (want, got) in expected.iter().zip(&stored) {
        assert_eq!(want["user_id"].as_str(), Some(got.user_id.as_str()));
        assert_eq!(want["weber_constant"].as_f64(), Some(got.weber_constant));
        assert_eq!(
            want["sensitivity_segment"].as_str(),
            Some(got.sensitivity_segment.as_str())
        );
        assert_eq!(want["review_count"].as_i64(), Some(got.review_count));
    }
    let stats = store.weber_segment_stats(&tenant).await.unwrap();
    assert_eq!(
        stats.iter().map(|s| s.users).sum::<i64>(),
        expected.len() as i64
    );
    store.close().await;

    let err = run_err(
        signalbox(dir.path())
            .args(["weber", "batch", "--load", "--tenant", "tn_nope"])
            .arg(&input),
    );
    assert!(err.contains("tenant: no tenant 'tn_nope'"), "{err}");
}

#[test]
fn weber_batch_refuses_a_file_with_an_endless_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one-line.jsonl");
    // 65 MiB and not a newline in sight.
    let file = std::fs::File::create(&input).unwrap();
    file.set_len(65 << 20).unwrap();
    let err = run_err(signalbox(dir.path()).args(["weber", "batch"]).arg(&input));
    assert!(err.contains("line 1 is longer than 64 MiB"), "{err}");
}

#[tokio::test]
async fn with_the_redis_cache_backend_profiles_the_server_writes_are_kept_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = run_err(signalbox(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cache-backend",
        "redis",
    ]));
    assert!(
        stderr.contains("cache: --cache-backend redis needs --redis-url"),
        "{stderr}"
    );

    let redis_url = std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test:cache:{}:", uuid::Uuid::new_v4().simple());
    let server = Server::start(
        signalbox(dir.path())
            .env("SIGNALBOX_CACHE_BACKEND", "redis")
            .env("SIGNALBOX_CACHE_KEY_PREFIX", &prefix)
            .env("REDIS_URL", &redis_url),
    );
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let key = demo["api_key"].as_str().unwrap().to_owned();
    let tenant_id = demo["tenant_id"].as_str().unwrap().to_owned();
    let events: Vec<Value> = (0..3)
        .map(|i| serde_json::json!({"event_id": format!("c{i}"), "user_id": "cached-1", "timestamp": i, "rating": i + 1}))
        .collect();
    let body = serde_json::to_string(&events).unwrap();
    let (status, reply) = server.send("POST", "/api/v1/interactions", &key, Some(&body));
    assert_eq!(status, 200, "{reply}");
    // The manual recalculation writes the profile through to both layers before answering.
    let (status, reply) = server.send(
        "POST",
        "/api/v1/users/cached-1/weber-profile/update",
        &key,
        None,
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["profile"]["review_count"], 3, "{reply}");

    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("{prefix}weber_profile:v1:{tenant_id}:cached-1");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // One tag byte (0: stored as is), then the profile record as JSON.
    assert_eq!(stored.first(), Some(&0), "{stored:?}");
    let record: Value = serde_json::from_slice(&stored[1..]).unwrap();
    assert_eq!(
        (record["user_id"].as_str(), record["review_count"].as_u64()),
        (Some("cached-1"), Some(3))
    );
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 30_000, "{ttl_ms}");
    let (status, profile) = server.get("/api/v1/users/cached-1/weber-profile", &key);
    assert_eq!((status, profile["review_count"].as_u64()), (200, Some(3)));

    let (clean, log) = server.terminate();
    assert!(clean, "{log:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}
