//! `signalbox feedback report verify` as a reader of a research report runs it (issue 20,
//! acceptance 4): a signed report verifies (exit 0, key id, period and ε on one line); a
//! one-byte change anywhere fails (exit 1, one line naming what failed); so does another key.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use feedback::report::{key_id, sign, Report};

fn verify_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["feedback", "report", "verify"])
        .args(args)
        .env_remove("SIGNALBOX_CONFIG")
        .output()
        .expect("run signalbox")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b64(key: &audit::VerifyingKey) -> String {
    server::custody::public_key_text(key)
}

/// Checks one verification that must fail: exit 1 and one line starting `FAILED`.
fn assert_fails(path: &Path, args: &[&str], what: &str) -> String {
    let mut all = vec![path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = verify_cmd(&all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {}",
        support::describe("feedback report verify", &out)
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{what}: {text}");
    assert!(text.starts_with("FAILED "), "{what}: {text}");
    text
}

#[test]
fn a_signed_report_verifies_and_a_one_byte_change_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = audit::SigningKey::from_bytes(&[42; 32]);
    let public = key.verifying_key();
    let file = sign(&Report::example(), &key).unwrap().into_bytes();
    let path = dir.path().join("report.json");
    std::fs::write(&path, &file).unwrap();

    // Verifies, with the expected key as base64, as @FILE (base64 or the public-key
    // endpoint's JSON) and without one.
    let key_file = dir.path().join("key.json");
    std::fs::write(
        &key_file,
        serde_json::json!({"algorithm": "ed25519", "public_key": b64(&public)}).to_string(),
    )
    .unwrap();
    let key_at = format!("@{}", key_file.display());
    for args in [
        vec!["--public-key", b64(&public).as_str()],
        vec!["--public-key", key_at.as_str()],
        vec![],
    ] {
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(&args);
        let out = verify_cmd(&all);
        assert!(
            out.status.success(),
            "{}",
            support::describe("feedback report verify", &out)
        );
        assert_eq!(
            stdout(&out),
            format!(
                "OK report rep_example signed by key {}, period 2026-11-01..2026-12-01, epsilon 0.3\n",
                key_id(&public)
            )
        );
    }

    // Another key: refused, naming both key ids.
    let other = audit::SigningKey::from_bytes(&[43; 32]).verifying_key();
    let line = assert_fails(&path, &["--public-key", &b64(&other)], "another key");
    assert!(line.contains(&key_id(&other)), "{line}");

    // One byte changed, at positions spread over the whole file (every 5th, and the last).
    let altered_path = dir.path().join("altered.json");
    let mut positions: Vec<usize> = (0..file.len()).step_by(5).collect();
    positions.push(file.len() - 1);
    for position in positions {
        let mut altered = file.clone();
        altered[position] ^= 0x01;
        std::fs::write(&altered_path, &altered).unwrap();
        assert_fails(
            &altered_path,
            &["--public-key", &b64(&public)],
            &format!("byte {position} flipped"),
        );
    }

    // A bad --public-key and a missing file are one-line errors naming the argument.
    let out = verify_cmd(&[path.to_str().unwrap(), "--public-key", "not-a-key"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--public-key"),
        "{}",
        support::describe("feedback report verify", &out)
    );
    let out = verify_cmd(&[dir.path().join("missing.json").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FILE"),
        "{}",
        support::describe("feedback report verify", &out)
    );
}

/// `signalbox ARGS` on a data directory, isolated from the environment.
fn signalbox(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SIGNALBOX_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run signalbox")
}

/// Acceptance 4 end to end: a report generated through the service verifies; a one-byte change
/// fails; a second file name is refused rather than overwritten.
#[test]
fn a_generated_report_verifies_and_a_one_byte_change_fails() {
    let dir = tempfile::tempdir().unwrap();
    let created = signalbox(dir.path(), &["tenants", "create", "lab"]);
    assert!(
        created.status.success(),
        "{}",
        support::describe("tenants create", &created)
    );
    let out = dir.path().join("report.json");
    let args = [
        "feedback",
        "report",
        "generate",
        "--tenant",
        "lab",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-01",
        "--out",
        out.to_str().unwrap(),
    ];
    let generated = signalbox(dir.path(), &args);
    assert!(
        generated.status.success(),
        "{}",
        support::describe("report generate", &generated)
    );
    let summary: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert_eq!(summary["epsilon"], 0.5, "{summary}");
    let ok = verify_cmd(&[out.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        support::describe("report verify", &ok)
    );
    assert!(
        stdout(&ok).starts_with(&format!(
            "OK report {} signed by key {}",
            summary["id"].as_str().unwrap(),
            summary["key_id"].as_str().unwrap()
        )),
        "{}",
        stdout(&ok)
    );
    let mut bytes = std::fs::read(&out).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let altered = dir.path().join("altered.json");
    std::fs::write(&altered, &bytes).unwrap();
    assert_fails(&altered, &[], "one byte changed in a generated report");
    // The output file is never overwritten.
    let again = signalbox(dir.path(), &args);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--out"),
        "{}",
        support::describe("again", &again)
    );
}
