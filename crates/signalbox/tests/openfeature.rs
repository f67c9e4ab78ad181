//! OpenFeature conformance with a client not written here: the Python `openfeature-sdk` and its
//! OFREP provider from PyPI (pinned in `tests/openfeature/requirements.txt`) evaluate boolean,
//! string, number and object flags against a running `signalbox serve`, after the flags were
//! imported with `signalbox flags import`. Needs `python3` with `venv` and access to PyPI (or a
//! pip mirror configured for pip); it fails rather than skips without them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{describe, json_lines, run_ok, signalbox, Server};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature")
}

fn client_python() -> PathBuf {
    support::python_venv(&fixture_dir().join("requirements.txt"), "openfeature-venv")
}

/// One HTTP/1.1 request; the status and body.
fn post(addr: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let reply = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, reply)
}

#[test]
fn the_openfeature_python_sdk_evaluates_flags_over_ofrep() {
    // First, because it may take a while on a cold cache and needs no server.
    let python = client_python();

    // Tenant, key and flags first, through the CLI, then the server: it reads the flags from the
    // store on the first evaluation, so nothing has to wait for a refresh.
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(signalbox(dir.path()).args([
        "tenants",
        "create",
        "openfeature",
        "--tier",
        "starter",
    ])));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let read_key = json_lines(&run_ok(
        signalbox(dir.path()).args(["keys", "create", "--tenant", &tenant, "--scopes", "read"]),
    ))[0]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let flags_file = fixture_dir().join("flags.json");
    let imported = json_lines(&run_ok(
        signalbox(dir.path())
            .args(["flags", "import"])
            .arg(&flags_file)
            .args(["--tenant", &tenant, "--environment", "production"]),
    ));
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&flags_file).unwrap()).unwrap();
    assert_eq!(imported.len(), expected.len(), "{imported:?}");
    assert!(
        imported.iter().all(|l| l["action"] == "create"),
        "{imported:?}"
    );

    let server = Server::start(&mut signalbox(dir.path()));
    // The routes are there and serve the imported flags (not an SDK check: a clear failure).
    let probe = expected[0]["key"].as_str().unwrap();
    let (status, body) = post(
        &server.addr,
        &format!("/ofrep/v1/evaluate/flags/{probe}"),
        &read_key,
        r#"{"context":{"targetingKey":"probe"}}"#,
    );
    assert_eq!(status, 200, "{body}\nserver log: {:?}", server.log());

    let out = Command::new(&python)
        .arg(fixture_dir().join("check_ofrep.py"))
        .env("SIGNALBOX_URL", format!("http://{}", server.addr))
        .env("SIGNALBOX_API_KEY", &read_key)
        .env("SIGNALBOX_FLAGS_FILE", &flags_file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nserver log: {:?}",
        describe("check_ofrep.py", &out),
        server.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ok: "), "{stdout}");
    eprintln!("{}", stdout.trim_end());
}
