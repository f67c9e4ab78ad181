//! What hostile testing found in a running server: slow or idle clients holding connections,
//! a second server on a taken port doing its start-up work before failing, files readable by
//! every local user, a missing forecast model logged as an error per request, and an operator
//! revoking a tenant's last admin key. Each test drives the real binary.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{json_lines, run_ok, signalbox};

/// A `signalbox serve` started with a permissive umask (022, what most shells have), so file
/// modes show what the server asked for; killed on drop.
struct Serving {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
    /// Lines logged up to the address announcement.
    started: Vec<String>,
}

impl Serving {
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> Serving {
        let mut cmd = signalbox(data_dir);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGNALBOX_LOG_FORMAT", "human")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        permissive_umask(&mut cmd);
        let mut child = cmd.spawn().expect("start the server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| {
                    panic!("the server never announced its address ({e}): {seen:?}")
                });
            let addr = line
                .split("listening on http://")
                .nth(1)
                .map(|rest| rest.trim().to_owned());
            seen.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        Serving {
            child,
            addr,
            log: rx,
            started: seen,
        }
    }

    /// Sends SIGTERM, waits for the exit and returns everything logged since the start.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        let mut lines = std::mem::take(&mut self.started);
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stderr never closed: {lines:?}"),
            }
        }
        lines
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn permissive_umask(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
}

/// Sends one keep-alive request on `conn` and reads exactly its response; returns the status
/// and the body.
fn request(conn: &mut TcpStream, path: &str, extra_headers: &str) -> (u16, String) {
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nhost: test\r\n{extra_headers}\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content-length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Blocks until the server closes `conn` (end of stream or reset); returns how long that took.
/// Fails if it is still open after `within` or sends anything.
fn closed_by_server(conn: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    conn.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("the server answered a request it should not have"),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!(
            "the connection was still open after {within:?} ({e}): the server did not close it"
        ),
    }
    start.elapsed()
}

/// The value of one sample line of the scrape, 0 when absent.
fn metric(addr: &str, sample: &str) -> f64 {
    let mut conn = TcpStream::connect(addr).unwrap();
    let (status, text) = request(&mut conn, "/metrics", "connection: close\r\n");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(sample).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

#[test]
fn a_half_sent_request_head_is_disconnected_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serving::start(
        dir.path(),
        &[
            ("SIGNALBOX_DEMO", "false"),
            ("SIGNALBOX_HEADER_READ_TIMEOUT", "500ms"),
            ("SIGNALBOX_IDLE_TIMEOUT", "1s"),
        ],
    );
    // Slowloris: half a request, then nothing.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\nx-wait: ")
        .unwrap();
    // A client that connects and never sends a byte is held to the same deadline.
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    // A keep-alive client that finished its request and went quiet: the idle timeout.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    assert_eq!(request(&mut idle, "/health", "").0, 200);

    let took = closed_by_server(&mut slow, Duration::from_secs(10));
    assert!(took < Duration::from_secs(10), "{took:?}");
    closed_by_server(&mut silent, Duration::from_secs(10));
    closed_by_server(&mut idle, Duration::from_secs(10));

    // Complete requests are still served, and the closes are counted.
    let header_timeouts = metric(
        &server.addr,
        "http_connections_closed_total{reason=\"header_timeout\"}",
    );
    assert!(header_timeouts >= 2.0, "{header_timeouts}");
    let idle_timeouts = metric(
        &server.addr,
        "http_connections_closed_total{reason=\"idle_timeout\"}",
    );
    assert!(idle_timeouts >= 1.0, "{idle_timeouts}");
}

#[test]
fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serving::start(
        dir.path(),
        &[
            ("SIGNALBOX_DEMO", "false"),
            ("SIGNALBOX_MAX_CONNECTIONS", "2"),
        ],
    );
    let mut first = TcpStream::connect(&server.addr).unwrap();
    let mut second = TcpStream::connect(&server.addr).unwrap();
    // Both are being served (and so hold the two slots).
    assert_eq!(request(&mut first, "/health", "").0, 200);
    assert_eq!(request(&mut second, "/health", "").0, 200);

    let mut third = TcpStream::connect(&server.addr).unwrap();
    let _ = third.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n");
    closed_by_server(&mut third, Duration::from_secs(10));

    // A slot freed is a slot the next client gets.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let mut conn = TcpStream::connect(&server.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut scrape = String::new();
        let _ = write!(
            conn,
            "GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
        );
        let _ = conn.read_to_string(&mut scrape);
        if scrape.starts_with("HTTP/1.1 200") {
            break scrape
                .lines()
                .find_map(|l| {
                    l.strip_prefix("http_connections_closed_total{reason=\"over_limit\"}")
                        .map(|v| v.trim().parse::<f64>().unwrap())
                })
                .unwrap_or(0.0);
        }
        assert!(
            Instant::now() < deadline,
            "no slot came free after a client left"
        );
    };
    assert!(refused >= 1.0, "{refused}");
    assert_eq!(request(&mut second, "/health", "").0, 200, "kept its slot");
}

#[test]
fn a_second_server_on_a_taken_port_fails_before_touching_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for args in [
        vec!["serve", "--listen", &addr],
        // The optional gRPC listener too.
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-grpc-listen",
            &addr,
        ],
    ] {
        let start = Instant::now();
        let out = signalbox(&data).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} started on a taken port");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(&addr) && errors[0].contains("cannot bind"),
            "{stderr}"
        );
        // No database, demo tenant or forecast model: the data directory was never made.
        assert!(
            !data.exists(),
            "{args:?} created {} before failing to bind (after {:?})",
            data.display(),
            start.elapsed()
        );
    }
}

#[test]
fn the_data_directory_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The demo start writes every kind of file: database, event log, demo key, forecast model.
    let server = Serving::start(&data, &[]);
    // Something in the event log, so its segment and offsets exist.
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-tenant.json")).unwrap())
            .unwrap();
    let key = demo["api_key"].as_str().unwrap();
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    let body =
        r#"[{"event_id":"e1","user_id":"u1","timestamp":1700000000000,"rating":5,"text":"great"}]"#;
    write!(
        conn,
        "POST /api/v1/interactions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 2"), "{reply}");
    server.stop();

    use std::os::unix::fs::PermissionsExt;
    let mut seen = Vec::new();
    let mut todo = vec![data.clone()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "{} is {mode:o}: readable by other local users",
            path.display()
        );
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
        seen.push(path.strip_prefix(&data).unwrap().display().to_string());
    }
    for expected in ["signalbox.db", "demo-tenant.json", "events", "forecast"] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} missing: {seen:?}"
        );
    }
    assert!(seen.iter().any(|s| s.starts_with("events/")), "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("forecast/")), "{seen:?}");
}

#[test]
fn without_a_forecast_model_routes_say_so_and_the_log_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "acme"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap().to_owned();
    let server = Serving::start(dir.path(), &[("SIGNALBOX_DEMO", "false")]);
    for _ in 0..3 {
        let mut conn = TcpStream::connect(&server.addr).unwrap();
        write!(
            conn,
            "GET /api/v1/forecast?station=JFK&horizon=24h HTTP/1.1\r\nhost: test\r\n\
             authorization: Bearer {key}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 501"), "{raw}");
        assert!(
            !head.to_ascii_lowercase().contains("retry-after"),
            "a configuration problem is not retried: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            problem["type"], "urn:signalbox:problem:forecast_model_missing",
            "{problem}"
        );
    }
    let log = server.stop();
    let warnings: Vec<_> = log
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("no forecast model"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    let errors: Vec<_> = log.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_cli_refuses_to_revoke_a_tenants_last_admin_key_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "acme"]),
    ));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let keys = json_lines(&run_ok(
        signalbox(dir.path()).args(["keys", "list", "--tenant", &tenant]),
    ));
    let admin = keys[0]["id"].as_str().unwrap().to_owned();

    let (_, stderr) = support::run_err(signalbox(dir.path()).args(["keys", "revoke", &admin]));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: key_id: ")
            && stderr.contains("last active admin key")
            && stderr.contains(&format!("keys create --tenant {tenant} --scopes admin"))
            && stderr.contains("--force"),
        "{stderr}"
    );

    // Forced: done, with a warning naming the recovery.
    let out = signalbox(dir.path())
        .args(["keys", "revoke", &admin, "--force"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        support::describe("revoke --force", &out)
    );
    let revoked = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert!(revoked[0]["revoked_at_ms"].is_i64(), "{revoked:?}");
    let warning = String::from_utf8(out.stderr).unwrap();
    assert!(
        warning.contains("no active admin key") && warning.contains("--scopes admin"),
        "{warning}"
    );

    // The documented recovery.
    let recovered =
        json_lines(&run_ok(signalbox(dir.path()).args([
            "keys", "create", "--tenant", &tenant, "--scopes", "admin",
        ])));
    assert_eq!(recovered[0]["scopes"], serde_json::json!(["admin"]));
}

/// Sends `head` whole on a new connection and reads the answer to its end; the status, the
/// lower-cased head and the body.
fn send_raw(addr: &str, head: &[u8]) -> (u16, String, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and stop reading before all of it is sent.
    let _ = conn.write_all(head);
    let mut raw = Vec::new();
    if let Err(e) = conn.read_to_end(&mut raw) {
        assert!(
            !raw.is_empty(),
            "no answer before the connection failed ({e})"
        );
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (top, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {raw:?}"));
    let status = top.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, top.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_request_head_over_64_kib_gets_a_problem_not_a_bare_status() {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "acme"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap().to_owned();
    let server = Serving::start(dir.path(), &[("SIGNALBOX_DEMO", "false")]);

    // A 100 KB request target: past what `http::Uri` can hold, where hyper alone answered a
    // bodiless 414.
    let target = format!("/api/v1/tenant?q={}", "a".repeat(100_000));
    let head = format!("GET {target} HTTP/1.1\r\nhost: test\r\n\r\n");
    let (status, top, body) = send_raw(&server.addr, head.as_bytes());
    assert_eq!(status, 414, "{top}");
    assert!(
        top.contains("content-type: application/problem+json"),
        "{top}"
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"], "urn:signalbox:problem:uri_too_long",
        "{problem}"
    );
    assert_eq!(problem["status"], 414);
    assert_eq!(problem["max_bytes"], 65536);

    // A short request line with 70 KB of header fields: 431, also a problem.
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: test\r\nx-filler: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let (status, top, body) = send_raw(&server.addr, head.as_bytes());
    assert_eq!(status, 431, "{top}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"], "urn:signalbox:problem:headers_too_large",
        "{problem}"
    );

    // A large body is not a large head: 2,000 events (over 100 KB) sent with their small head
    // in one burst are all read and stored.
    let events: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                r#"{{"event_id":"e{i}","user_id":"u{}","timestamp":{},"rating":4}}"#,
                i % 50,
                1_714_561_200_000u64 + i
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    assert!(body.len() > 100_000);
    let head = format!(
        "POST /api/v1/interactions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, top, answer) = send_raw(&server.addr, head.as_bytes());
    assert!((200..300).contains(&status), "{top}\n{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["accepted"], 2000, "{answer}");

    // A large body the route never reads (refused before it, for the missing key) is not
    // taken for the next request's head, whether hyper then reads it away or closes.
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let unread = "d".repeat(200_000);
    let _ = write!(
        conn,
        "POST /api/v1/tenant/keys HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{unread}GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
        unread.len()
    );
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(!raw.contains(" 431 ") && !raw.contains(" 414 "), "{raw}");

    // And the server goes on serving.
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    let (status, _) = request(&mut conn, "/health", "connection: close\r\n");
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &server.addr,
            "http_connections_closed_total{reason=\"head_too_large\"}"
        ),
        2.0
    );
}
