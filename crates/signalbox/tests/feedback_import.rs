//! `signalbox feedback import` and `signalbox feedback reconcile` as an operator runs them,
//! against PostgreSQL (a schema of its own).
//!
//! A generated legacy export of 30,000 rows, some of them bad, is imported; the import is
//! SIGKILLed twice mid-way (the test polls the checkpoint row to know it progressed) and run
//! again to completion. Then exactly the valid rows are stored, checked by id, every bad row is
//! listed once with its line and reason, reconcile against the same file finds no difference,
//! and a modified export shows missing, extra and different items.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use store::testing::TestStore;
use store::{FeedbackFilter, Store};
use support::{json_lines, signalbox};

const ROWS: u64 = 30_000;
const BATCH: &str = "500";

const MAPPING: &str = r#"
format = "csv"
time_format = "epoch_s"

[columns]
id = "ticket"
user_id = "customer"
type = "category"
rating = "score"
text = "comment"
occurred_at = "created"

[metadata]
agent = "agent"

[values.type]
"Bug" = "bug_report"
"Idea" = "feature_request"
"Kudos" = "praise"

[rating]
min = 0
max = 10

[defaults]
channel = "email"
"#;

/// Whether data row `i` (1-based) is bad, and why (the field the report must name).
fn bad(i: u64) -> Option<&'static str> {
    if i.is_multiple_of(997) {
        Some("rating")
    } else if i.is_multiple_of(1_499) {
        Some("type")
    } else if i.is_multiple_of(2_003) {
        Some("occurred_at")
    } else {
        None
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One CSV data row (row `i`, line `i + 1`).
fn row(i: u64, base_s: u64) -> String {
    let category = match bad(i) {
        Some("type") => "Nonsense",
        _ => ["Bug", "Idea", "Kudos", "review"][(i % 4) as usize],
    };
    let score = match bad(i) {
        Some("rating") => "99".to_owned(),
        _ => (i % 11).to_string(),
    };
    let created = match bad(i) {
        Some("occurred_at") => "yesterday".to_owned(),
        _ => (base_s - i * 60).to_string(),
    };
    format!(
        "L-{i},cust-{},{category},{score},\"Row {i}: the app, it {}\",{created},agent{}\n",
        i % 500,
        ["works", "crashes", "is slow", "is great"][(i % 4) as usize],
        i % 7
    )
}

fn write_export(path: &Path, rows: u64, base_s: u64) {
    let mut text = String::from("ticket,customer,category,score,comment,created,agent\n");
    for i in 1..=rows {
        text.push_str(&row(i, base_s));
    }
    std::fs::write(path, text).unwrap();
}

struct Fixture {
    store: TestStore,
    dir: tempfile::TempDir,
    tenant: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let store = TestStore::postgres().await;
        let tenant = store
            .store
            .create_tenant("legacy", store::Tier::Professional)
            .await
            .unwrap()
            .id;
        Fixture {
            store,
            dir: tempfile::tempdir().unwrap(),
            tenant,
        }
    }

    fn store(&self) -> &Store {
        &self.store.store
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `signalbox feedback ARGS` on the fixture's database.
    fn feedback(&self, args: &[&str]) -> Command {
        let mut cmd = signalbox(&self.path("data"));
        cmd.arg("feedback")
            .args(args)
            .env("DATABASE_URL", &self.store.options.url)
            .env("SIGNALBOX_DATABASE_POOL_SIZE", "3");
        match &self.store.options.schema {
            Some(schema) => cmd.env("SIGNALBOX_DATABASE_SCHEMA", schema),
            None => cmd.env_remove("SIGNALBOX_DATABASE_SCHEMA"),
        };
        cmd
    }

    fn import_cmd(&self, file: &Path) -> Command {
        let mut cmd = self.feedback(&["import"]);
        cmd.arg(file)
            .args(["--tenant", &self.tenant, "--batch-size", BATCH])
            .arg("--mapping")
            .arg(self.path("mapping.toml"))
            .arg("--report")
            .arg(self.path("rejects.jsonl"));
        cmd
    }

    /// The import's checkpoint line, once its row exists.
    async fn next_line(&self, import_id: &str) -> Option<i64> {
        self.store()
            .feedback_import(&self.tenant, import_id)
            .await
            .unwrap()
            .map(|i| i.next_line)
    }

    /// Starts the import, waits until its checkpoint passed `line`, SIGKILLs it.
    async fn import_and_kill_after(&self, file: &Path, import_id: &str, line: i64) {
        let mut child = self
            .import_cmd(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if self.next_line(import_id).await.unwrap_or(0) > line {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the import ended ({status}) before passing line {line}");
            }
            assert!(
                Instant::now() < deadline,
                "the import did not pass line {line}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let import = self
            .store()
            .feedback_import(&self.tenant, import_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(import.status, "running", "killed mid-way, not finished");
        assert!((import.next_line as u64) < ROWS + 2);
    }

    async fn all_ids(&self) -> Vec<String> {
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
            all.extend(page.into_iter().map(|r| r.id));
            match (full, last) {
                (true, Some(after)) => filter.after = Some(after),
                _ => return all,
            }
        }
    }
}

fn import_id_of(file: &Path) -> String {
    let digest = feedback::import::sha256_hex(&std::fs::read(file).unwrap());
    format!("imp_{}", &digest[..24])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_survives_two_kills_then_reconciles() {
    let f = Fixture::new().await;
    std::fs::write(f.path("mapping.toml"), MAPPING).unwrap();
    let export = f.path("legacy.csv");
    let base_s = now_s() - 3_600;
    write_export(&export, ROWS, base_s);
    let import_id = import_id_of(&export);

    // Validation alone stores nothing and reports the bad rows.
    let out = f
        .import_cmd(&export)
        .arg("--validate-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        support::describe("validate", &out)
    );
    let bad_rows: BTreeSet<u64> = (1..=ROWS).filter(|i| bad(*i).is_some()).collect();
    let summary = &json_lines(&String::from_utf8(out.stdout).unwrap())[0];
    assert_eq!(summary["rows"], ROWS);
    assert_eq!(summary["rejected"], bad_rows.len() as u64);
    assert!(f.next_line(&import_id).await.is_none());

    // Two SIGKILLs mid-way, then to completion.
    f.import_and_kill_after(&export, &import_id, 5_000).await;
    let after_first = f.next_line(&import_id).await.unwrap();
    f.import_and_kill_after(&export, &import_id, after_first + 5_000)
        .await;
    let out = f.import_cmd(&export).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        support::describe("import", &out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming import"), "{stderr}");
    assert!(stderr.contains("rows/s"), "{stderr}");

    // Exactly the valid rows, by id.
    let ids = f.all_ids().await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an item stored twice");
    let expected: HashSet<String> = (1..=ROWS)
        .filter(|i| bad(*i).is_none())
        .map(|i| format!("L-{i}"))
        .collect();
    assert_eq!(unique.len(), expected.len());
    assert!(ids.iter().all(|id| expected.contains(id)));
    let import = f
        .store()
        .feedback_import(&f.tenant, &import_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(import.status, "completed");
    assert_eq!(import.stored as usize, expected.len());
    assert_eq!(import.rejected as usize, bad_rows.len());

    // Each bad row once, with its line (row i is line i + 1) and the failing field.
    let report = json_lines(&std::fs::read_to_string(f.path("rejects.jsonl")).unwrap());
    let lines: Vec<u64> = report.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    let want_lines: Vec<u64> = bad_rows.iter().map(|i| i + 1).collect();
    assert_eq!(lines, want_lines, "each bad row listed once, in line order");
    for r in &report {
        let row = r["line"].as_u64().unwrap() - 1;
        assert_eq!(r["field"], bad(row).unwrap(), "{r}");
        assert!(!r["reason"].as_str().unwrap().is_empty());
    }

    // The items were analysed and recorded as imported.
    let item = f
        .store()
        .feedback_item(&f.tenant, "L-5")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.kind, "feature_request");
    assert_eq!(item.rating, Some(3), "5 on 0..10 is 3 on 1..5");
    assert!(item.analysis.sentiment.is_some());
    assert!(!item.status.awaits_processing());
    let history = f.store().feedback_history(&f.tenant, "L-5").await.unwrap();
    assert_eq!(history[0].event, "received");

    // `import status` lists it.
    let status = f
        .feedback(&["import", "status", "--tenant", &f.tenant])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        support::describe("status", &status)
    );
    let listed = json_lines(&String::from_utf8(status.stdout).unwrap());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["import_id"], import_id.as_str());

    // Reconcile against the same file: no difference.
    let reconcile = |file: &Path, out: &Path| {
        let mut cmd = f.feedback(&["reconcile"]);
        cmd.arg(file)
            .args(["--tenant", &f.tenant])
            .arg("--mapping")
            .arg(f.path("mapping.toml"))
            .arg("--out")
            .arg(out);
        cmd.output().unwrap()
    };
    let same = reconcile(&export, &f.path("same.jsonl"));
    assert!(
        same.status.success(),
        "{}",
        support::describe("reconcile", &same)
    );
    let summary = &json_lines(&String::from_utf8(same.stdout).unwrap())[0];
    assert_eq!(summary["missing"], 0, "{summary}");
    assert_eq!(summary["extra"], 0, "{summary}");
    assert_eq!(summary["different"], 0, "{summary}");
    assert_eq!(summary["compared"], expected.len() as u64);

    // A modified export: row 10 dropped (extra here), a new row (missing here), row 20's
    // rating and row 30's text changed (different).
    let text = std::fs::read_to_string(&export).unwrap();
    let mut modified = String::new();
    for line in text.lines() {
        if line.starts_with("L-10,") {
            continue;
        } else if line.starts_with("L-20,") {
            modified.push_str(&line.replacen(",Bug,9,", ",Bug,0,", 1));
        } else if line.starts_with("L-30,") {
            modified.push_str(&line.replacen("Row 30", "Row thirty", 1));
        } else {
            modified.push_str(line);
        }
        modified.push('\n');
    }
    modified.push_str(&row(ROWS + 1, base_s));
    let changed = f.path("changed.csv");
    std::fs::write(&changed, modified).unwrap();
    let diff = reconcile(&changed, &f.path("diff.jsonl"));
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        support::describe("reconcile", &diff)
    );
    let summary = &json_lines(&String::from_utf8(diff.stdout).unwrap())[0];
    assert_eq!(
        (
            &summary["missing"],
            &summary["extra"],
            &summary["different"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(2)),
        "{summary}"
    );
    let diffs = json_lines(&std::fs::read_to_string(f.path("diff.jsonl")).unwrap());
    let found: BTreeSet<(String, String, String)> = diffs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["id"].as_str().unwrap().to_owned(),
                d["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("missing", format!("L-{}", ROWS + 1), ""),
        ("extra", "L-10".to_owned(), ""),
        ("different", "L-20".to_owned(), "rating"),
        ("different", "L-30".to_owned(), "text"),
    ]
    .into_iter()
    .map(|(k, id, field)| (k.to_owned(), id, field.to_owned()))
    .collect();
    assert_eq!(found, want);
    f.store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mapping_fails_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("x.csv");
    std::fs::write(&export, "a,b\n1,2\n").unwrap();
    let cases = [
        (
            MAPPING.replace("format = \"csv\"", "format = \"xml\""),
            "format",
        ),
        (
            MAPPING.replace("\"Kudos\" = \"praise\"", "\"Kudos\" = \"nice\""),
            "values.type.Kudos",
        ),
        // Columns the file lacks are named by their mapping field.
        (MAPPING.to_owned(), "columns.id"),
    ];
    for (mapping, field) in cases {
        let path = dir.path().join("m.toml");
        std::fs::write(&path, mapping).unwrap();
        let out = signalbox(&dir.path().join("data"))
            .args(["feedback", "import"])
            .arg(&export)
            .args(["--tenant", "t", "--validate-only", "--mapping"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{field}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_after_the_batch_and_the_next_run_resumes() {
    const SMALL: u64 = 6_000;
    let f = Fixture::new().await;
    std::fs::write(f.path("mapping.toml"), MAPPING).unwrap();
    let export = f.path("small.csv");
    write_export(&export, SMALL, now_s() - 3_600);
    let import_id = import_id_of(&export);
    let child = f
        .import_cmd(&export)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while f.next_line(&import_id).await.unwrap_or(0) <= 1_000 {
        assert!(Instant::now() < deadline, "the import did not progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: signalling a child this test started, by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        support::describe("import", &out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    let import = f
        .store()
        .feedback_import(&f.tenant, &import_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(import.status, "interrupted");
    assert!(
        (import.next_line as u64) < SMALL + 2,
        "stopped before the end"
    );
    // Stopped at a batch boundary: everything before the checkpoint is stored or rejected.
    assert_eq!(
        (import.stored + import.rejected) as u64,
        import.next_line as u64 - 2,
        "{import:?}"
    );
    let out = f.import_cmd(&export).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        support::describe("resume", &out)
    );
    let expected = (1..=SMALL).filter(|i| bad(*i).is_none()).count();
    assert_eq!(f.all_ids().await.len(), expected);
    f.store.cleanup().await;
}
