//! `signalbox flags import/export/list` as an operator uses them: real processes on a temporary
//! data directory.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{create_tenant, json_lines, run_err, run_ok, signalbox};

/// The documented example file, with every flag type.
fn example_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flags.json")
}

fn import(dir: &Path, file: &Path, tenant: &str, extra: &[&str]) -> Vec<Value> {
    let mut cmd = signalbox(dir);
    cmd.args(["flags", "import"])
        .arg(file)
        .args(["--tenant", tenant])
        .args(extra);
    json_lines(&run_ok(&mut cmd))
}

fn export(dir: &Path, tenant: &str, environment: &str) -> String {
    run_ok(signalbox(dir).args([
        "flags",
        "export",
        "--tenant",
        tenant,
        "--environment",
        environment,
    ]))
}

/// `(key, version)` of every flag, from `flags list`.
fn versions(dir: &Path, tenant: &str) -> Vec<(String, i64)> {
    json_lines(&run_ok(
        signalbox(dir).args(["flags", "list", "--tenant", tenant]),
    ))
    .iter()
    .map(|l| {
        (
            l["key"].as_str().unwrap().to_owned(),
            l["version"].as_i64().unwrap(),
        )
    })
    .collect()
}

/// `(action, key, version)` of an import's summary lines.
fn summary(lines: &[Value]) -> Vec<(String, String, i64)> {
    lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_owned(),
                l["key"].as_str().unwrap().to_owned(),
                l["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn example_keys() -> Vec<String> {
    let flags: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(example_file()).unwrap()).unwrap();
    let mut keys: Vec<String> = flags
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

#[test]
fn export_import_export_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let created = import(dir.path(), &example_file(), &tenant, &[]);
    assert_eq!(created.len(), example_keys().len());
    assert!(created
        .iter()
        .all(|l| l["action"] == "create" && l["version"] == 1));

    let first = export(dir.path(), &tenant, "production");
    // The documented format: a JSON array of flags the flags crate loads, sorted by key.
    let set = flags::FlagSet::from_json(&first).unwrap();
    let keys: Vec<&str> = set.flags().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, example_keys());
    assert!(
        first.starts_with("[\n  {\n") && first.ends_with("}\n]\n"),
        "{first}"
    );

    // Into an empty environment of another tenant, through --out, and back.
    let other = create_tenant(dir.path(), "globex");
    let exported = dir.path().join("exported.json");
    std::fs::write(&exported, &first).unwrap();
    import(dir.path(), &exported, &other, &["--environment", "staging"]);
    let out = dir.path().join("again.json");
    let reported = json_lines(&run_ok(
        signalbox(dir.path())
            .args(["flags", "export", "--tenant", &other])
            .args(["--environment", "staging", "--out"])
            .arg(&out),
    ));
    assert_eq!(reported[0]["flags"], keys.len());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first);

    // Environments and tenants are separate.
    assert_eq!(export(dir.path(), &other, "production"), "[]\n");
    assert_eq!(export(dir.path(), &tenant, "staging"), "[]\n");
}

#[test]
fn re_import_changes_nothing_and_an_edit_changes_one_flag() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    import(dir.path(), &example_file(), &tenant, &[]);
    let before = versions(dir.path(), &tenant);

    let again = import(dir.path(), &example_file(), &tenant, &[]);
    let expected: Vec<(String, String, i64)> = example_keys()
        .into_iter()
        .map(|k| ("unchanged".to_owned(), k, 1))
        .collect();
    let mut got = summary(&again);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, expected);
    assert_eq!(versions(dir.path(), &tenant), before);

    // The same flags written differently (order of fields, spacing, defaults spelled out) are
    // the same definitions.
    let mut flags: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(example_file()).unwrap()).unwrap();
    flags.reverse();
    for flag in &mut flags {
        flag["kill_switch"] = json!(false);
    }
    let respelled = dir.path().join("respelled.json");
    std::fs::write(&respelled, serde_json::to_string(&flags).unwrap()).unwrap();
    let same = import(dir.path(), &respelled, &tenant, &[]);
    assert!(same.iter().all(|l| l["action"] == "unchanged"), "{same:?}");

    let edited_key = flags[0]["key"].as_str().unwrap().to_owned();
    flags[0]["description"] = json!("edited");
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&flags).unwrap()).unwrap();
    let changed: Vec<_> = summary(&import(dir.path(), &edited, &tenant, &[]))
        .into_iter()
        .filter(|(action, _, _)| action != "unchanged")
        .collect();
    assert_eq!(changed, [("update".to_owned(), edited_key.clone(), 2)]);
    let listed = json_lines(&run_ok(
        signalbox(dir.path()).args(["flags", "list", "--tenant", &tenant]),
    ));
    let row = listed
        .iter()
        .find(|l| l["key"] == edited_key.as_str())
        .unwrap();
    assert_eq!(
        (row["version"].as_i64(), row["updated_by"].as_str()),
        (Some(2), Some("cli"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn changes_are_audited_as_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    import(dir.path(), &example_file(), &tenant, &[]);
    let store = store::Store::connect(&store::StoreOptions::sqlite_in(dir.path()))
        .await
        .unwrap();
    let audit = store
        .flag_audit(&tenant, "production", "dark-mode", 10, None)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].action, audit[0].actor.as_str()),
        (store::FlagAction::Create, "cli")
    );
    store.close().await;
}

#[test]
fn an_invalid_file_is_refused_whole_naming_flag_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    import(dir.path(), &example_file(), &tenant, &[]);
    let before = export(dir.path(), &tenant, "production");
    let versions_before = versions(dir.path(), &tenant);

    // One good new flag, one bad operator, and a cycle through a flag the file does not
    // mention: pricing-page-experiment (stored) needs new-checkout, which now needs it back.
    let stored: Vec<Value> = serde_json::from_str(&before).unwrap();
    let mut checkout = stored
        .iter()
        .find(|f| f["key"] == "new-checkout")
        .unwrap()
        .clone();
    checkout["prerequisites"] =
        json!([{"flag": "pricing-page-experiment", "variants": ["control"]}]);
    let file = json!([
        {
            "key": "fresh", "type": "boolean", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "on", "off_variant": "off"
        },
        {
            "key": "x", "type": "targeting", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "off", "off_variant": "off",
            "rules": [{"id": "r", "when": {"attribute": "email", "op": "regexx", "value": "a"}, "variant": "on"}]
        },
        checkout,
    ]);
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut cmd = signalbox(dir.path());
        cmd.args(["flags", "import"])
            .arg(&path)
            .args(["--tenant", &tenant])
            .args(extra);
        let (stdout, stderr) = run_err(&mut cmd);
        assert_eq!(stdout, "", "nothing is planned: {stdout}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.contains(&r#"flag "x": rules[0].when.op: unknown operator `regexx`"#),
            "{stderr}"
        );
        assert!(
            lines.iter().any(|l| l.contains("prerequisite cycle")
                && l.contains("new-checkout")
                && l.contains("pricing-page-experiment")),
            "{stderr}"
        );
        assert_eq!(
            lines.len(),
            3,
            "one line per problem, then the verdict: {stderr}"
        );
        assert!(
            lines[2].contains("bad.json: 2 problem(s); nothing was written"),
            "{stderr}"
        );
    }
    assert_eq!(export(dir.path(), &tenant, "production"), before);
    assert_eq!(versions(dir.path(), &tenant), versions_before);
}

#[test]
fn file_and_tenant_mistakes_get_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let check = |file: &Path, tenant: &str, extra: &[&str], mentions: &str| {
        let mut cmd = signalbox(dir.path());
        cmd.args(["flags", "import"])
            .arg(file)
            .args(["--tenant", tenant])
            .args(extra);
        let (_, stderr) = run_err(&mut cmd);
        assert!(
            stderr.contains(mentions),
            "expected {mentions:?} in {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    };
    let missing = dir.path().join("missing.json");
    check(&missing, &tenant, &[], "missing.json: cannot open");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "[\n  {\"key\": \"a\",\n   \"type\": boolean}\n]\n").unwrap();
    check(
        &broken,
        &tenant,
        &[],
        "broken.json:3:12: [0].type: expected value",
    );
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        "[{\"key\": \"a\", \"type\": \"boolean\", \"colour\": 1}]",
    )
    .unwrap();
    check(&wrong, &tenant, &[], "wrong.json:1:");
    check(&wrong, &tenant, &[], "[0].colour: unknown field `colour`");
    check(
        &example_file(),
        "tn_nope",
        &[],
        "--tenant: no tenant 'tn_nope'",
    );
    check(
        &example_file(),
        &tenant,
        &["--environment", "prod env"],
        "--environment:",
    );
    let (_, stderr) =
        run_err(signalbox(dir.path()).args(["flags", "export", "--tenant", "tn_nope"]));
    assert!(stderr.contains("--tenant: no tenant 'tn_nope'"), "{stderr}");
    assert_eq!(versions(dir.path(), &tenant), []);
}

#[test]
fn prune_deletes_what_the_file_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    import(dir.path(), &example_file(), &tenant, &[]);
    let flags: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(example_file()).unwrap()).unwrap();
    let dark_mode = flags.iter().find(|f| f["key"] == "dark-mode").unwrap();
    let subset = dir.path().join("subset.json");
    std::fs::write(&subset, json!([dark_mode]).to_string()).unwrap();

    // Without --prune the other flags stay.
    let kept = import(dir.path(), &subset, &tenant, &[]);
    assert_eq!(
        summary(&kept),
        [("unchanged".into(), "dark-mode".into(), 1)]
    );
    assert_eq!(versions(dir.path(), &tenant).len(), example_keys().len());

    let pruned = summary(&import(dir.path(), &subset, &tenant, &["--prune"]));
    let mut deleted: Vec<String> = pruned
        .iter()
        .filter(|(a, _, _)| a == "delete")
        .map(|(_, k, _)| k.clone())
        .collect();
    deleted.sort();
    let mut others = example_keys();
    others.retain(|k| k != "dark-mode");
    assert_eq!(deleted, others);
    // A flag is deleted before the prerequisites it needs.
    let position = |k: &str| pruned.iter().position(|(_, key, _)| key == k).unwrap();
    assert!(position("pricing-page-experiment") < position("new-checkout"));
    assert_eq!(versions(dir.path(), &tenant), [("dark-mode".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn prune_leaves_a_flag_an_experiment_owns() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    import(dir.path(), &example_file(), &tenant, &[]);
    // A running experiment owns `pricing-page-experiment` (as the API stores one).
    let running = json!({
        "spec": {
            "key": "pricing-layout", "hypothesis": "h", "flag_key": "pricing-page-experiment",
            "variants": [{"key": "control", "weight": 2}, {"key": "compact", "weight": 1},
                         {"key": "cards", "weight": 1}],
            "control": "control",
            "primary_metric": {"key": "signup", "kind": "conversion", "goal": "increase",
                               "minimum_detectable_effect": 0.04},
            "secondary_metrics": [], "guardrails": [], "alpha": 0.05, "power": 0.8,
            "min_sample_size": 100, "early_stopping": true
        },
        "state": "running", "created_at": 1, "started_at": 2, "paused_at": null,
        "concluded_at": null, "winner": null
    });
    let store = store::Store::connect(&store::StoreOptions::sqlite_in(dir.path()))
        .await
        .unwrap();
    store
        .create_experiment_owning(
            &tenant,
            "pricing-layout",
            "production",
            Some("pricing-page-experiment"),
            &running.to_string(),
        )
        .await
        .unwrap();
    store.close().await;
    let flags: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(example_file()).unwrap()).unwrap();
    let subset = dir.path().join("subset.json");
    let dark_mode = flags.iter().find(|f| f["key"] == "dark-mode").unwrap();
    std::fs::write(&subset, json!([dark_mode]).to_string()).unwrap();
    let (_, stderr) = run_err(
        signalbox(dir.path())
            .args(["flags", "import"])
            .arg(&subset)
            .args(["--tenant", &tenant, "--prune"]),
    );
    assert!(
        stderr.contains("belongs to experiment `pricing-layout`, which is running"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(versions(dir.path(), &tenant).len(), example_keys().len());

    // Changing its split is refused the same way; the flag's other fields may change.
    let mut reweighted: Vec<Value> = flags.clone();
    for f in &mut reweighted {
        if f["key"] == "pricing-page-experiment" {
            f["variants"][0]["weight_bp"] = json!(3000);
            f["variants"][1]["weight_bp"] = json!(4500);
        }
    }
    let file = dir.path().join("reweighted.json");
    std::fs::write(&file, serde_json::to_string(&reweighted).unwrap()).unwrap();
    let (_, stderr) = run_err(
        signalbox(dir.path())
            .args(["flags", "import"])
            .arg(&file)
            .args(["--tenant", &tenant]),
    );
    assert!(stderr.contains("split must stay"), "{stderr}");
    let mut tagged: Vec<Value> = flags.clone();
    for f in &mut tagged {
        if f["key"] == "pricing-page-experiment" {
            f["tags"] = json!(["experiment", "growth", "pricing"]);
        }
    }
    std::fs::write(&file, serde_json::to_string(&tagged).unwrap()).unwrap();
    let changed = summary(&import(dir.path(), &file, &tenant, &[]));
    assert!(changed.contains(&("update".into(), "pricing-page-experiment".into(), 2)));
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let planned = import(dir.path(), &example_file(), &tenant, &["--dry-run"]);
    assert_eq!(planned.len(), example_keys().len());
    assert!(planned
        .iter()
        .all(|l| l["action"] == "create" && l["version"] == 1));
    assert_eq!(versions(dir.path(), &tenant), []);

    import(dir.path(), &example_file(), &tenant, &[]);
    let before = export(dir.path(), &tenant, "production");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let planned = import(dir.path(), &empty, &tenant, &["--prune", "--dry-run"]);
    assert_eq!(planned.len(), example_keys().len());
    assert!(planned.iter().all(|l| l["action"] == "delete"));
    assert_eq!(export(dir.path(), &tenant, "production"), before);

    // A dry run of an edit reports the version the write would make.
    let mut flags: Vec<Value> = serde_json::from_str(&before).unwrap();
    flags[0]["owner"] = json!("someone-else");
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&flags).unwrap()).unwrap();
    let planned = summary(&import(dir.path(), &edited, &tenant, &["--dry-run"]));
    let key = flags[0]["key"].as_str().unwrap();
    assert!(
        planned.contains(&("update".into(), key.into(), 2)),
        "{planned:?}"
    );
    assert_eq!(export(dir.path(), &tenant, "production"), before);
}

#[tokio::test]
async fn flags_round_trip_through_postgresql() {
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
    let tenant = json_lines(&run_ok(with_pg().args(["tenants", "create", "pg-flags"])))[0]
        ["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let import = |file: &Path, environment: &str| {
        summary(&json_lines(&run_ok(
            with_pg().args(["flags", "import"]).arg(file).args([
                "--tenant",
                &tenant,
                "--environment",
                environment,
            ]),
        )))
    };
    let export = |environment: &str| {
        run_ok(with_pg().args([
            "flags",
            "export",
            "--tenant",
            &tenant,
            "--environment",
            environment,
        ]))
    };
    assert!(import(&example_file(), "production")
        .iter()
        .all(|(action, _, version)| action == "create" && *version == 1));
    assert!(import(&example_file(), "production")
        .iter()
        .all(|(action, _, version)| action == "unchanged" && *version == 1));
    let first = export("production");
    let exported = dir.path().join("exported.json");
    std::fs::write(&exported, &first).unwrap();
    import(&exported, "staging");
    assert_eq!(export("staging"), first);
    // The CLI really wrote to PostgreSQL, audited as itself.
    let audit = fixture
        .store
        .flag_audit(&tenant, "staging", "dark-mode", 10, None)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "cli");
    fixture.cleanup().await;
}

#[test]
fn stale_lists_the_flags_probably_safe_to_remove_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = create_tenant(dir.path(), "acme");
    let file = dir.path().join("flags.json");
    let flags = json!([
        {"key": "old-banner", "type": "boolean", "status": "archived",
         "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
         "default_variant": "on", "off_variant": "off"},
        {"key": "pricing", "type": "multivariate", "status": "active",
         "variants": [{"key": "a", "value": "a", "weight_bp": 5000},
                      {"key": "b", "value": "b", "weight_bp": 5000}],
         "default_variant": "a", "off_variant": "a"}
    ]);
    std::fs::write(&file, flags.to_string()).unwrap();
    import(dir.path(), &file, &tenant, &[]);
    let lines = json_lines(&run_ok(
        signalbox(dir.path()).args(["flags", "stale", "--tenant", &tenant, "--days", "7"]),
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "old-banner");
    assert_eq!(lines[0]["reasons"][0]["code"], "finished");
    assert_eq!(lines[0]["last_evaluated_at"], Value::Null);
    let (_, stderr) =
        run_err(signalbox(dir.path()).args(["flags", "stale", "--tenant", &tenant, "--days", "0"]));
    assert!(stderr.contains("--days"), "{stderr}");
}
