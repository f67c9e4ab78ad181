//! `signalbox audit …` and `signalbox keyring …` as an operator uses them: real processes on a
//! temporary data directory, the log written through the store and tampered with by raw SQL.
//! `audit verify` exits 0 on an intact log, 2 naming the first bad record, 1 when it cannot run.

mod support;

use std::path::Path;

use sqlx::Connection;
use support::{create_tenant, run_ok, signalbox};

/// The base64 of a fixed 32-byte Ed25519 seed: the data directory's audit signing key.
const SIGNING_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
/// Another key's public half (RFC 8032 test 1), for a verifier holding the wrong key.
const OTHER_PUBLIC_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `n` records to the tenant's log through the store.
fn append(dir: &Path, tenant: &str, from: u64, n: u64) {
    runtime().block_on(async {
        let store = store::Store::connect(&store::StoreOptions::sqlite_in(dir))
            .await
            .unwrap();
        let records: Vec<store::NewAuditRecord> = (from..from + n)
            .map(|i| {
                store::NewAuditRecord::new(
                    1_796_083_200_000 + i as i64,
                    format!("fb_{i}"),
                    audit::Event::Received,
                    "key_cli",
                    &serde_json::json!({"i": i}),
                )
            })
            .collect();
        store.append_audit(tenant, &records).await.unwrap();
        store.close().await;
    });
}

/// Runs SQL on the data directory's database behind the store's back.
fn tamper(dir: &Path, sql: &str) {
    runtime().block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", dir.join(store::SQLITE_FILE).display());
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

fn verify(dir: &Path, tenant: &str, extra: &[&str]) -> (i32, String, String) {
    let out = signalbox(dir)
        .args(["audit", "verify", "--tenant", tenant])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn logged(name: &str, n: u64) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit-signing.key"), SIGNING_KEY).unwrap();
    let tenant = create_tenant(dir.path(), name);
    append(dir.path(), &tenant, 0, n);
    run_ok(signalbox(dir.path()).args(["audit", "checkpoint", "--tenant", &tenant]));
    (dir, tenant)
}

#[test]
fn an_intact_log_verifies_exports_and_proves() {
    let (dir, tenant) = logged("acme", 60);
    let (code, out, err) = verify(dir.path(), &tenant, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK tenant"), "{out}");
    assert!(
        out.contains("60 records") && out.contains("records/s"),
        "{out}"
    );
    // By name too.
    assert_eq!(verify(dir.path(), "acme", &[]).0, 0);

    let note = dir.path().join("cp.note");
    run_ok(
        signalbox(dir.path())
            .args(["audit", "checkpoint", "--tenant", &tenant, "--out"])
            .arg(&note),
    );
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(
        text.starts_with(&format!("signalbox/audit/{tenant}\n60\n")),
        "{text}"
    );
    let (code, out, _) = verify(
        dir.path(),
        &tenant,
        &["--checkpoint", note.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("largest trusted checkpoint: 60"), "{out}");

    let proof: serde_json::Value = serde_json::from_str(&run_ok(
        signalbox(dir.path()).args(["audit", "prove", "--tenant", &tenant, "--seq", "41"]),
    ))
    .unwrap();
    assert_eq!(
        (proof["seq"].as_u64(), proof["size"].as_u64()),
        (Some(41), Some(60))
    );
    assert_eq!(proof["proof"].as_array().unwrap().len(), 6);
    assert!(proof["checkpoint"].as_str().unwrap().contains("\n60\n"));
}

#[test]
fn an_edited_record_exits_2_naming_it() {
    let (dir, tenant) = logged("acme", 30);
    tamper(
        dir.path(),
        &format!("UPDATE audit_log SET event = 'purged' WHERE tenant_id = '{tenant}' AND seq = 13"),
    );
    let (code, out, _) = verify(dir.path(), &tenant, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("FAILED"), "{out}");
    assert!(
        out.contains("record 13: its content does not match"),
        "{out}"
    );
}

#[test]
fn a_deleted_record_exits_2_naming_it() {
    let (dir, tenant) = logged("acme", 30);
    tamper(
        dir.path(),
        &format!("DELETE FROM audit_log WHERE tenant_id = '{tenant}' AND seq = 4"),
    );
    let (code, out, _) = verify(dir.path(), &tenant, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("record 4: it is missing"), "{out}");
}

#[test]
fn truncation_is_caught_by_an_exported_checkpoint() {
    let (dir, tenant) = logged("acme", 40);
    let note = dir.path().join("witness.note");
    run_ok(
        signalbox(dir.path())
            .args(["audit", "checkpoint", "--tenant", &tenant, "--out"])
            .arg(&note),
    );
    tamper(
        dir.path(),
        &format!(
            "DELETE FROM audit_log WHERE tenant_id = '{tenant}' AND seq >= 35;
             DELETE FROM audit_heads WHERE tenant_id = '{tenant}';
             DELETE FROM audit_checkpoints WHERE tenant_id = '{tenant}';"
        ),
    );
    assert_eq!(
        verify(dir.path(), &tenant, &[]).0,
        0,
        "nothing in the database shows it"
    );
    let (code, out, _) = verify(
        dir.path(),
        &tenant,
        &["--checkpoint", note.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("record 35") && out.contains("truncated"),
        "{out}"
    );
}

#[test]
fn the_wrong_key_or_no_key_is_refused() {
    let (dir, tenant) = logged("acme", 5);
    let (code, out, _) = verify(dir.path(), &tenant, &["--public-key", OTHER_PUBLIC_KEY]);
    assert_eq!(
        code, 2,
        "stored checkpoints do not verify with another key: {out}"
    );
    assert!(out.contains("stored checkpoint"), "{out}");
    std::fs::remove_file(dir.path().join("audit-signing.key")).unwrap();
    let (code, _, err) = verify(dir.path(), &tenant, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("audit signing key"), "{err}");
    let (code, _, err) = verify(dir.path(), "nobody", &["--public-key", OTHER_PUBLIC_KEY]);
    assert_eq!(code, 1);
    assert!(err.contains("no tenant"), "{err}");
}

#[test]
fn keyring_generate_writes_a_private_valid_keyring_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.toml");
    run_ok(
        signalbox(dir.path())
            .args(["keyring", "generate", "--id", "k2027-01", "--out"])
            .arg(&path),
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("id = \"k2027-01\"") && text.contains("active = true"),
        "{text}"
    );
    let ring = vault::Keyring::from_toml(&text).unwrap();
    assert_eq!(ring.active().id, "k2027-01");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    let out = signalbox(dir.path())
        .args(["keyring", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Two runs make two different keys.
    let a = run_ok(signalbox(dir.path()).args(["keyring", "generate"]));
    let b = run_ok(signalbox(dir.path()).args(["keyring", "generate"]));
    assert_ne!(a, b);
}
