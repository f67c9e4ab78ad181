//! `signalbox jobs …` as an operator uses it: real processes on a temporary data directory,
//! talking to the store directly (no server).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::{create_tenant, json_lines, run_err, run_ok, signalbox};

fn jobs(dir: &Path, args: &[&str]) -> Vec<Value> {
    json_lines(&run_ok(signalbox(dir).arg("jobs").args(args)))
}

/// Runs a `jobs` command that must fail; returns its stderr, checked to be one line.
fn refused(dir: &Path, args: &[&str]) -> String {
    let (stdout, stderr) = run_err(signalbox(dir).arg("jobs").args(args));
    assert_eq!(stdout, "", "{args:?} printed something");
    let line = stderr.trim().to_owned();
    assert_eq!(line.lines().count(), 1, "{args:?}: {stderr}");
    line
}

#[test]
fn enqueue_list_show_cancel_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let t = tenant.as_str();

    let first = jobs(
        dir.path(),
        &[
            "enqueue",
            "jobs.noop",
            "--tenant",
            t,
            "--priority",
            "high",
            "--delay",
            "3600",
        ],
    );
    assert_eq!(first.len(), 1);
    let job = &first[0];
    assert_eq!(job["created"], true);
    assert_eq!(job["handler"], "jobs.noop");
    assert_eq!(job["queue"], "high");
    assert_eq!(job["status"], "pending");
    let id = job["id"].as_str().unwrap().to_owned();

    // A payload from a file, an ETA, a key; the repeat prints the first job.
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"user_ids": ["ann", "bob"]}"#).unwrap();
    let payload_arg = format!("@{}", payload.display());
    // An ETA a month ahead, to the second.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = server::rfc3339_ms((now_s + 30 * 86_400) * 1000);
    let recalc = [
        "enqueue",
        "weber.recalculate",
        "--tenant",
        t,
        "--payload",
        &payload_arg,
        "--at",
        &at,
        "--idempotency-key",
        "recalc-1",
        "--max-retries",
        "2",
        "--timeout",
        "90",
    ];
    let made = jobs(dir.path(), &recalc);
    assert_eq!(made[0]["created"], true);
    assert_eq!(made[0]["payload"], json!({"user_ids": ["ann", "bob"]}));
    assert_eq!(made[0]["run_at"], at.as_str());
    assert_eq!(made[0]["max_attempts"], 3);
    assert_eq!(made[0]["timeout_ms"], 90_000);
    let again = jobs(dir.path(), &recalc);
    assert_eq!(again[0]["created"], false);
    assert_eq!(again[0]["id"], made[0]["id"]);

    // Newest first; filters.
    let listed = jobs(dir.path(), &["list", "--tenant", t]);
    let ids: Vec<&str> = listed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [made[0]["id"].as_str().unwrap(), id.as_str()]);
    let high = jobs(dir.path(), &["list", "--tenant", t, "--queue", "high"]);
    assert_eq!(high.len(), 1);
    assert_eq!(high[0]["id"], id.as_str());
    let page = jobs(dir.path(), &["list", "--tenant", t, "--limit", "1"]);
    let older = jobs(
        dir.path(),
        &[
            "list",
            "--tenant",
            t,
            "--limit",
            "1",
            "--before",
            page[0]["id"].as_str().unwrap(),
        ],
    );
    assert_eq!(older[0]["id"], id.as_str());

    let shown = jobs(dir.path(), &["show", &id, "--tenant", t]);
    assert_eq!(shown[0]["id"], id.as_str());
    assert_eq!(
        shown[0]["links"]["self"],
        format!("/api/v1/jobs/{id}").as_str()
    );

    let cancelled = jobs(dir.path(), &["cancel", &id, "--tenant", t]);
    assert_eq!(cancelled[0]["status"], "cancelled");
    let line = refused(dir.path(), &["cancel", &id, "--tenant", t]);
    assert!(line.contains("is cancelled"), "{line}");
    let line = refused(dir.path(), &["retry", &id, "--tenant", t]);
    assert!(line.contains("dead or failed"), "{line}");

    let stats = jobs(dir.path(), &["stats", "--tenant", t]);
    let queues = stats[0]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 5);
    assert_eq!(queues[1]["queue"], "high");
    assert_eq!(queues[1]["by_status"]["cancelled"], 1);
    assert_eq!(queues[2]["by_status"]["pending"], 1);

    let purged = jobs(
        dir.path(),
        &["purge", "--status", "cancelled", "--tenant", t],
    );
    assert_eq!(purged[0], json!({"status": "cancelled", "purged": 1}));
    assert_eq!(jobs(dir.path(), &["list", "--tenant", t]).len(), 1);
}

#[test]
fn schedules_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let t = tenant.as_str();
    let put = jobs(
        dir.path(),
        &[
            "schedule",
            "put",
            "nightly",
            "--tenant",
            t,
            "--cron",
            "0 3 * * *",
            "--handler",
            "retention.purge",
        ],
    );
    assert_eq!(put[0]["name"], "nightly");
    assert_eq!(put[0]["enabled"], true);
    assert!(put[0]["next_run_at"]
        .as_str()
        .unwrap()
        .ends_with("T03:00:00Z"));
    jobs(
        dir.path(),
        &[
            "schedule",
            "put",
            "canary",
            "--tenant",
            t,
            "--cron",
            "*/5 * * * *",
            "--handler",
            "jobs.canary",
            "--disabled",
        ],
    );
    let listed = jobs(dir.path(), &["schedule", "list", "--tenant", t]);
    let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    // Every tenant also gets the daily predictions refit, feedback retention purge and the
    // experiments review when it is created.
    assert_eq!(
        names,
        [
            "canary",
            "experiments-review",
            "feedback-retention-purge",
            "nightly",
            "weber-refit-predictions"
        ]
    );
    assert_eq!(listed[0]["enabled"], false);
    let deleted = jobs(
        dir.path(),
        &["schedule", "delete", "nightly", "--tenant", t],
    );
    assert_eq!(deleted[0], json!({"deleted": "nightly"}));
    let line = refused(
        dir.path(),
        &["schedule", "delete", "nightly", "--tenant", t],
    );
    assert!(line.contains("not found"), "{line}");
    let line = refused(
        dir.path(),
        &[
            "schedule",
            "put",
            "x",
            "--tenant",
            t,
            "--cron",
            "61 * * * *",
            "--handler",
            "jobs.noop",
        ],
    );
    assert!(line.starts_with("error: --cron: "), "{line}");
}

#[test]
fn mistakes_get_one_line_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let t = tenant.as_str();
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(70_000));
    for (args, starts) in [
        (
            vec!["enqueue", "no.such", "--tenant", t],
            "error: HANDLER: no handler named 'no.such'",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--delay", "-5"],
            "error: --delay: ",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--payload", &big],
            "error: --payload: ",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--payload", "{oops"],
            "error: --payload: not JSON",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--payload", "[1]"],
            "error: --payload: ",
        ),
        (
            vec![
                "enqueue",
                "weber.recalculate",
                "--tenant",
                t,
                "--payload",
                r#"{"user_ids":"all"}"#,
            ],
            "error: --payload: user_ids",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--at", "soon"],
            "error: --at: ",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--max-retries", "99"],
            "error: --max-retries: ",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", t, "--timeout", "0.1"],
            "error: --timeout: ",
        ),
        (
            vec!["enqueue", "jobs.noop", "--tenant", "tn_nope"],
            "error: --tenant: no tenant 'tn_nope'",
        ),
        (
            vec!["show", "job_nope", "--tenant", t],
            "error: job job_nope not found",
        ),
        (
            vec!["purge", "--status", "running", "--tenant", t],
            "error: --status: ",
        ),
        (
            vec!["list", "--tenant", t, "--limit", "0"],
            "error: --limit: ",
        ),
    ] {
        let line = refused(dir.path(), &args);
        assert!(line.starts_with(starts), "{args:?}: {line}");
    }
    // clap's own refusals name the option too.
    let (_, stderr) = run_err(signalbox(dir.path()).args([
        "jobs",
        "enqueue",
        "jobs.noop",
        "--tenant",
        t,
        "--priority",
        "urgent",
    ]));
    assert!(stderr.contains("--priority"), "{stderr}");
    // Nothing was enqueued.
    assert_eq!(
        jobs(dir.path(), &["list", "--tenant", t]),
        Vec::<Value>::new()
    );
}
