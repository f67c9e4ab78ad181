//! The API contract, checked by a tool not written here: schemathesis (pinned in
//! `tests/schemathesis/requirements.txt`, settings in `tests/schemathesis/schemathesis.toml`)
//! reads `/openapi.json` from a running `signalbox serve` and sends every operation generated
//! requests, valid and invalid, with an admin key, running every check it has (server errors,
//! undocumented statuses, response and SSE schemas, headers, valid data refused, invalid data
//! accepted, use after delete, ...). Once on the embedded SQLite store, once on PostgreSQL (a
//! schema of its own). Any failure fails the test, with schemathesis's failure report.
//!
//! Rate limits are off for the run: the document states the 429 of every limited operation,
//! and with the shipped rules on the fuzzer's bursts would be refused instead of exercising
//! the routes. The seed is fixed, so a run is reproducible; docs/errors.md ("The contract")
//! says how to run it by hand. Needs `python3` with `venv` and access to PyPI (or a pip mirror);
//! it fails rather than skips without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{describe, signalbox, Server};

/// Test cases per operation and phase: enough to reach every documented status, few enough
/// that both runs together take a few minutes on two cores.
const EXAMPLES_PER_OPERATION: &str = "10";
/// Fixed, so a failure reproduces (`st replay` or the same command).
const SEED: &str = "1";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis")
}

/// What one schemathesis run found.
struct Outcome {
    operations: usize,
    cases: usize,
    failures: usize,
    errors: usize,
}

/// One run at a time: both tests share the virtual environment (made by the first), and two
/// fuzzers at once would only slow each other down.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs schemathesis against `server` with `key`; panics with its report on any finding.
fn check_contract(label: &str, server: &Server, key: &str, report_dir: &Path) -> Outcome {
    let _turn = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = support::python_venv(&fixture_dir().join("requirements.txt"), "schemathesis-venv");
    let schemathesis = python.with_file_name("schemathesis");
    let junit = report_dir.join(format!("{label}.xml"));
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(fixture_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("http://{}/openapi.json", server.addr))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--seed", SEED])
        // One worker: hypothesis on Python 3.11 can trip over itself in concurrent threads.
        .args(["--workers", "1"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        // Its cache and reports stay in the test's temporary directory.
        .current_dir(report_dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    let outcome = Outcome {
        // One test case per operation (`GET /path`), plus one for the stateful phase.
        operations: ["GET ", "POST ", "PUT ", "DELETE ", "PATCH "]
            .iter()
            .map(|m| report.matches(&format!("<testcase name=\"{m}")).count())
            .sum(),
        cases: generated_cases(&stdout),
        failures: junit_count(&report, "failures"),
        errors: junit_count(&report, "errors"),
    };
    assert!(
        out.status.success() && outcome.failures == 0 && outcome.errors == 0,
        "schemathesis found {} failure(s) and {} error(s) on {label}:\n{}\n{}",
        outcome.failures,
        outcome.errors,
        findings(&stdout),
        describe("schemathesis", &out)
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        outcome.operations > 0 && outcome.cases > 0,
        "schemathesis tested nothing on {label}:\n{stdout}"
    );
    println!(
        "schemathesis on {label}: {} operations, {} generated cases, 0 failures",
        outcome.operations, outcome.cases
    );
    outcome
}

/// The `N` of the report's `N generated` line.
fn generated_cases(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.trim().split_once(" generated"))
        .filter_map(|(n, _)| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// The sum of a count attribute (`failures="2"`) over the report's test suites.
fn junit_count(report: &str, attribute: &str) -> usize {
    let needle = format!(" {attribute}=\"");
    report
        .lines()
        .filter(|l| l.contains("<testsuite"))
        .filter_map(|l| l.split(&needle).nth(1))
        .filter_map(|rest| rest.split('"').next())
        .filter_map(|n| n.parse::<usize>().ok())
        .sum()
}

/// The FAILURES (and ERRORS) part of schemathesis's output, which names each failure and the
/// curl command that reproduces it.
fn findings(stdout: &str) -> String {
    let start = stdout
        .find("= ERRORS =")
        .or_else(|| stdout.find("= FAILURES ="))
        .unwrap_or(0);
    let end = stdout[start..]
        .find("= WARNINGS =")
        .or_else(|| stdout[start..].find("= SUMMARY ="))
        .map_or(stdout.len(), |e| start + e);
    stdout[start..end].to_owned()
}

/// The demo tenant's admin key, written by `serve` on a store it seeded.
fn demo_key(data_dir: &Path) -> String {
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("demo-tenant.json")).unwrap())
            .unwrap();
    demo["api_key"].as_str().unwrap().to_owned()
}

#[test]
fn the_api_keeps_its_openapi_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // An empty embedded store gets the demo: tenant, admin key, example flags, forecast model.
    let server = Server::start(signalbox(dir.path()).env("SIGNALBOX_RATE_LIMITS", "off"));
    check_contract("sqlite", &server, &demo_key(dir.path()), dir.path());
}

#[tokio::test]
async fn the_api_keeps_its_openapi_contract_on_postgresql() {
    let fixture = store::testing::TestStore::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = signalbox(dir.path());
    command
        .env("DATABASE_URL", &fixture.options.url)
        .env(
            "SIGNALBOX_DATABASE_SCHEMA",
            fixture.options.schema.as_deref().unwrap(),
        )
        .env("SIGNALBOX_RATE_LIMITS", "off")
        // The same demo as on SQLite (off by default on PostgreSQL), so every route has
        // something to answer with: flags to evaluate, a forecast model.
        .env("SIGNALBOX_DEMO", "true");
    let server = Server::start(&mut command);
    // Blocking on purpose: schemathesis is a child process, and nothing else runs here.
    check_contract("postgresql", &server, &demo_key(dir.path()), dir.path());
    drop(server);
    fixture.cleanup().await;
}
