//! Helpers shared by the integration tests that drive the binary as an operator does.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// `signalbox --data-dir DIR`, isolated from the developer's environment.
pub fn signalbox(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    cmd.arg("--data-dir").arg(data_dir);
    for var in [
        "DATABASE_URL",
        "SIGNALBOX_CONFIG",
        "SIGNALBOX_DATA_DIR",
        "SIGNALBOX_DATABASE_SCHEMA",
        "REDIS_URL",
        "NATS_URL",
        "SIGNALBOX_LISTEN",
        "SIGNALBOX_RATE_LIMITS",
        "SIGNALBOX_RATE_LIMITS_DIR",
        "SIGNALBOX_RATE_LIMIT_BACKEND",
        "SIGNALBOX_RATE_LIMIT_KEY_PREFIX",
        "SIGNALBOX_RATE_LIMIT_MAX_KEYS",
        "SIGNALBOX_RATE_LIMIT_LEGACY_HEADERS",
        "SIGNALBOX_RATE_LIMIT_GRPC_LISTEN",
        "SIGNALBOX_CACHE_BACKEND",
        "SIGNALBOX_CACHE_KEY_PREFIX",
        "SIGNALBOX_EVENT_LOG",
        "SIGNALBOX_EVENT_LOG_STREAM",
        "SIGNALBOX_CORS_ALLOW_ORIGINS",
        "SIGNALBOX_CORS_MAX_AGE",
        "SIGNALBOX_LLM_PRICES",
        "SIGNALBOX_LLM_DEFAULT_PRICES",
        "SIGNALBOX_LLM_RETENTION_DAYS",
        "SIGNALBOX_LLM_PURGE_INTERVAL",
        "SIGNALBOX_LLM_MAX_EVENTS",
        "SIGNALBOX_LLM_MAX_SPANS",
        "SIGNALBOX_LLM_BODY_LIMIT_BYTES",
        "SIGNALBOX_LLM_USAGE_CACHE_TTL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run signalbox");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs a command that must fail; returns its stdout and stderr.
pub fn run_err(cmd: &mut Command) -> (String, String) {
    let out: Output = cmd.output().expect("run signalbox");
    assert!(!out.status.success(), "{cmd:?} should have failed");
    (
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Creates a tenant and returns its id.
pub fn create_tenant(data_dir: &Path, name: &str) -> String {
    let created = json_lines(&run_ok(
        signalbox(data_dir).args(["tenants", "create", name]),
    ));
    created[0]["tenant_id"].as_str().unwrap().to_owned()
}

/// A running `signalbox serve` on a loopback port, killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    /// The server's log lines, for failure messages.
    pub stderr: mpsc::Receiver<String>,
    /// What it logged up to and including "listening on …" (read by `start`).
    pub startup_log: Vec<String>,
}

impl Server {
    pub fn start(cmd: &mut Command) -> Server {
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
        let mut startup_log = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the server announces its address");
            let addr = line
                .split("listening on http://")
                .nth(1)
                .map(|rest| rest.trim().to_owned());
            startup_log.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        Server {
            child,
            addr,
            stderr: rx,
            startup_log,
        }
    }

    /// Sends `GET path` with an API key over a fresh connection; returns the status, the
    /// headers (names lower-cased) and the body.
    pub fn get_raw(&self, path: &str, key: &str) -> (u16, Vec<(String, String)>, String) {
        get_raw(&self.addr, path, key)
    }

    /// SIGKILL: no shutdown, no drain; waits until the process is gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// What the server logged so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `GET path` with an API key to `addr` over a fresh connection; returns the status, the
/// headers (names lower-cased) and the body.
pub fn get_raw(addr: &str, path: &str, key: &str) -> (u16, Vec<(String, String)>, String) {
    let auth = format!("Bearer {key}");
    request_raw(addr, "GET", path, &[("authorization", &auth)], "")
}

/// One HTTP/1.1 request to `addr` over a fresh connection, with `headers` and `body` as given;
/// returns the status, the headers (names lower-cased) and the body.
pub fn request_raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    conn.write_all(head.as_bytes()).expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// What a finished command printed, for failure messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Python virtual environment with the pinned `requirements` (a committed file), made once
/// under the target directory as `name` and reused while it holds exactly those requirements (a
/// stamp written after a successful install records which). Returns its interpreter. Fails,
/// never skips, without python3 or a reachable package index.
pub fn python_venv(requirements_path: &Path, name: &str) -> std::path::PathBuf {
    // The tests of one binary run on parallel threads and share the environment: the first
    // creates it while the others wait, instead of all racing to create the same directory.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _creating = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let requirements = std::fs::read_to_string(requirements_path).unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin").join("python");
    let stamp = venv.join("signalbox-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return python;
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).unwrap();
    }
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed for this conformance test");
    assert!(
        out.status.success(),
        "{}",
        describe("python3 -m venv", &out)
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(requirements_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cannot install the pinned client: {}",
        describe(
            &format!("pip install -r {}", requirements_path.display()),
            &out
        )
    );
    std::fs::write(&stamp, &requirements).unwrap();
    python
}

/// Debian's Chromium, or the one `CHROMIUM` names. `scripts/test` installs it; the browser
/// tests fail, never skip, without it.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// The pinned Node packages of `fixture` (a committed directory holding `package.json` and
/// `package-lock.json`), installed once under the target directory as `name` with `npm ci`
/// and reused while the lock file is unchanged (a stamp written after a successful install
/// records which); the files `per_run` (the driver, its page) are copied beside them on every
/// run. Install scripts stay off: no package here needs one (the browser is Debian's, not a
/// download). Returns the directory.
pub fn node_packages(fixture: &Path, name: &str, per_run: &[&str]) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let lock = std::fs::read_to_string(fixture.join("package-lock.json")).unwrap();
    let stamp = dir.join("signalbox-package-lock.json");
    let installed = dir.join("node_modules").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&lock);
    if !installed {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .output()
            .expect("npm (Node.js) is needed for the browser tests");
        assert!(
            out.status.success(),
            "cannot install the pinned packages: {}",
            describe("npm ci", &out)
        );
        std::fs::write(&stamp, &lock).unwrap();
    }
    for file in per_run {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    dir
}
