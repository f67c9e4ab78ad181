//! Envoy's global rate-limit protocol with a client not written here: `tests/envoy/
//! should_rate_limit.py` calls `ShouldRateLimit` through grpcio with Envoy's published protos
//! (`xds-protos`, pinned in `tests/envoy/requirements.txt`) against a running `signalbox serve
//! --rate-limit-grpc-listen`, and checks OK / OVER_LIMIT, the current limit and its unit, the
//! remaining units, the reset, the error statuses, and that the HTTP API and gRPC share one
//! quota. Needs `python3` with `venv` and access to PyPI (or a pip mirror configured for pip);
//! it fails rather than skips without them.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{create_tenant, describe, json_lines, run_err, run_ok, signalbox};

/// The rules the script expects (its docstring lists them).
const RULES: &str = r#"
[[rule]]
name = "per_user"
scope = "user"
algorithm = "fixed_window"
limit = 5
window_secs = 3600
action = { kind = "reject" }

[[rule]]
name = "per_tenant"
scope = "tenant"
algorithm = "fixed_window"
limit = 600
window_secs = 60
action = { kind = "reject" }

[rule.tiers]
free = { limit = 10 }
"#;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy")
}

fn client_python() -> PathBuf {
    support::python_venv(&fixture_dir().join("requirements.txt"), "envoy-rls-venv")
}

/// A running `signalbox serve` with both listeners on loopback ports, killed on drop.
struct Serving {
    child: Child,
    http: String,
    grpc: String,
    log: mpsc::Receiver<String>,
}

impl Serving {
    /// Starts `cmd` (`signalbox … serve …`) and waits until it has logged both addresses.
    fn start(cmd: &mut Command) -> Serving {
        let mut child = cmd
            .env("SIGNALBOX_LOG_FORMAT", "human")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let address = |line: &str, scheme: &str| {
            line.split(scheme)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut http, mut grpc, mut seen) = (None, None, Vec::new());
        while http.is_none() || grpc.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match log.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "the server did not announce both addresses ({e}); its log:\n{}",
                    seen.join("\n")
                ),
            };
            http = http.or_else(|| address(&line, "listening on http://"));
            grpc = grpc.or_else(|| address(&line, "listening on grpc://"));
            seen.push(line);
        }
        Serving {
            child,
            http: http.unwrap_or_default(),
            grpc: grpc.unwrap_or_default(),
            log,
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `signalbox serve` on `dir`, without the rate-limit settings of the developer's environment.
fn serve(dir: &Path) -> Command {
    let mut cmd = signalbox(dir);
    for var in [
        "SIGNALBOX_RATE_LIMITS",
        "SIGNALBOX_RATE_LIMIT_BACKEND",
        "SIGNALBOX_RATE_LIMIT_GRPC_LISTEN",
        "SIGNALBOX_RATE_LIMIT_GRPC_DOMAIN",
        "SIGNALBOX_DEMO",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--demo", "false"]);
    cmd
}

#[test]
fn envoys_published_client_is_answered_over_grpc() {
    // First, because it may take a while on a cold cache and needs no server.
    let python = client_python();

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("limits.toml");
    std::fs::write(&rules, RULES).unwrap();
    // The domain from the config file, the listener from the flag: both sources are wired.
    let config = dir.path().join("signalbox.toml");
    std::fs::write(&config, "[rate_limits]\ngrpc_domain = \"edge\"\n").unwrap();
    // The HTTP request of the shared-quota check names its user in X-User-Id, which counts
    // only from a key allowed to assert users.
    let tenant = create_tenant(dir.path(), "envoy");
    let key = json_lines(&run_ok(signalbox(dir.path()).args([
        "keys",
        "create",
        "--tenant",
        &tenant,
        "--scopes",
        "read,assert_user",
    ])))[0]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Serving::start(
        serve(dir.path())
            .arg("--rate-limits")
            .arg(&rules)
            .args(["--rate-limit-grpc-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config),
    );

    let out = Command::new(&python)
        .arg(fixture_dir().join("should_rate_limit.py"))
        .arg(&server.grpc)
        .args(["--http", &server.http, "--key", &key, "--domain", "edge"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "{}\n--- server log\n{}",
        describe("should_rate_limit.py", &out),
        log.join("\n")
    );
    println!("{stdout}");
}

#[test]
fn grpc_listen_without_rate_limits_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    std::fs::write(
        &config,
        "[rate_limits]\nrules = \"off\"\ngrpc_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (_, stderr) = run_err(serve(dir.path()).arg("--config").arg(&config));
    assert!(
        stderr.contains("needs rate limits on") && stderr.contains("--rate-limit-grpc-listen"),
        "{stderr}"
    );
}

#[test]
fn a_taken_grpc_port_stops_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = run_err(serve(dir.path()).args(["--rate-limit-grpc-listen", &addr]));
    assert!(
        stderr.contains(&format!("rate-limit gRPC listen: cannot bind {addr}")),
        "{stderr}"
    );
}
