//! CORS proven with a real browser: a page served from another origin evaluates flags through the
//! OpenFeature web SDK and its OFREP provider (`@openfeature/web-sdk`,
//! `@openfeature/ofrep-web-provider` from npm, pinned in `tests/browser/package-lock.json`) in
//! headless Chromium driven by `playwright-core`: bulk evaluation, ETag revalidation (304s while
//! nothing changed) and a change made through the admin API reaching the page. With CORS off
//! (the default) the same page is refused.
//!
//! Needs Node.js with npm, access to the npm registry (or a mirror configured for npm) on the
//! first run, and Chromium (`CHROMIUM`, default `/usr/bin/chromium`; `scripts/test` installs it).
//! It fails rather than skips without them.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{json_lines, run_ok, signalbox, Server};

const ENVIRONMENT: &str = "web";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// A port free a moment ago, for the page's origin (which the server must be told first).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with a key and the test's environment; the status and body.
fn request(addr: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         x-environment: {ENVIRONMENT}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let reply = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, reply)
}

/// The Node driver (`tests/browser/run.mjs`), with its report lines arriving on a channel.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Driver {
    fn start(node_dir: &Path, server: &Server, key: &str, page_port: u16, expect: &str) -> Driver {
        let mut child = Command::new("node")
            .arg("run.mjs")
            .current_dir(node_dir)
            .env("SIGNALBOX_URL", format!("http://{}", server.addr))
            .env("SIGNALBOX_API_KEY", key)
            .env("SIGNALBOX_ENVIRONMENT", ENVIRONMENT)
            .env("PAGE_PORT", page_port.to_string())
            .env("CHROMIUM", support::chromium())
            .env("EXPECT", expect)
            .env("CHANGED_GREETING", "bonjour")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (Node.js) is needed for the browser test");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Driver {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// The next report, which must be `step`.
    fn expect_step(&mut self, step: &str) -> Value {
        let line = match self.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
                panic!(
                    "the driver reported no `{step}` step; its stderr:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
        };
        let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(report["step"], step, "{report:#}");
        report
    }

    fn signal(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "changed").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap_or_default();
        assert!(status.success(), "the driver failed: {status}\n{stderr}");
    }
}

fn flag_value(report: &Value, key: &str) -> Value {
    report["values"][key]["value"].clone()
}

#[test]
fn the_openfeature_web_sdk_evaluates_flags_from_another_origin_in_chromium() {
    // First, because it may take a while on a cold cache and needs no server.
    let node_dir = support::node_packages(&fixture_dir(), "browser-node", &["run.mjs", "page.js"]);

    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "browser"]),
    ));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let key_with = |scopes: &str| {
        json_lines(&run_ok(
            signalbox(dir.path()).args(["keys", "create", "--tenant", &tenant, "--scopes", scopes]),
        ))[0]["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (read_key, admin_key) = (key_with("read"), key_with("read,admin"));
    let flags_file = fixture_dir().join("flags.json");
    run_ok(
        signalbox(dir.path())
            .args(["flags", "import"])
            .arg(&flags_file)
            .args(["--tenant", &tenant, "--environment", ENVIRONMENT]),
    );
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");

    // CORS off (the default): the browser refuses the page's calls.
    {
        let server = Server::start(&mut signalbox(dir.path()));
        let mut driver = Driver::start(&node_dir, &server, &read_key, page_port, "refused");
        let init = driver.expect_step("init");
        assert_eq!(init["ok"], false, "{init:#}");
        assert_eq!(init["pageOrigin"], page_origin.as_str());
        // The preflight was refused, so the evaluation itself never got an answer.
        let requests = init["requests"].as_array().unwrap();
        assert!(requests.iter().all(|r| r["status"] != 200), "{requests:?}");
        assert!(
            requests.iter().any(|r| r["failed"].is_string()),
            "{requests:?}"
        );
        println!("with CORS off the provider failed: {}", init["error"]);
        driver.finish();
    }

    // CORS on for exactly the page's origin.
    let server =
        Server::start(signalbox(dir.path()).env("SIGNALBOX_CORS_ALLOW_ORIGINS", &page_origin));
    let mut driver = Driver::start(&node_dir, &server, &read_key, page_port, "works");
    let init = driver.expect_step("init");
    assert_eq!(init["ok"], true, "{init:#}\nserver log: {:?}", server.log());
    // The bulk evaluation's values, for the context the page set (an @example.com email).
    assert_eq!(flag_value(&init, "new-dashboard"), true, "{init:#}");
    assert_eq!(init["values"]["new-dashboard"]["reason"], "TARGETING_MATCH");
    assert_eq!(flag_value(&init, "greeting"), "hello");
    assert_eq!(flag_value(&init, "max-items"), 50);
    let bulk: Vec<&Value> = init["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/ofrep/v1/evaluate/flags" && r["method"] == "POST")
        .collect();
    assert!(
        bulk.iter()
            .any(|r| r["status"] == 200 && r["origin"] == page_origin.as_str()),
        "{bulk:?}"
    );

    // While nothing changes, the provider revalidates with the ETag it could read, and gets 304.
    let polled = driver.expect_step("polled");
    let revalidations: Vec<&Value> = polled["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 304)
        .collect();
    assert!(revalidations.len() >= 2, "{polled:#}");
    assert!(revalidations.iter().all(|r| r["ifNoneMatch"].is_string()));

    // A change through the admin API reaches the page through its polling.
    let mut greeting: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&flags_file).unwrap()).unwrap();
    let mut definition = greeting.remove(1);
    assert_eq!(definition["key"], "greeting");
    definition["default_variant"] = "bonjour".into();
    let (status, body) = request(
        &server.addr,
        "PUT",
        "/api/v1/flags/greeting",
        &admin_key,
        &definition.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    driver.signal();
    let changed = driver.expect_step("changed");
    assert_eq!(flag_value(&changed, "greeting"), "bonjour", "{changed:#}");
    assert_eq!(flag_value(&changed, "new-dashboard"), true);
    let events = changed["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["type"] == "configuration_changed"),
        "{events:?}"
    );
    println!(
        "the page on {page_origin} saw the change {} ms after the admin API answered; {} revalidations answered 304 before it",
        changed["seenAfterMs"],
        revalidations.len()
    );
    driver.finish();
}
