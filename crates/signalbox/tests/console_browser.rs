//! The web console end to end in a real browser: headless Chromium driven by `playwright-core`
//! (pinned with `axe-core` in `tests/console/package-lock.json`) signs in to `signalbox serve`'s
//! demo with the demo key through the sign-in form, visits every page of the navigation and the
//! detail pages they link to, checks each with axe-core (no serious or critical violation) and
//! takes a screenshot; flips a flag's kill switch and sees the evaluation tester's answer
//! change; creates a key (its secret shown once) and revokes it; finds the forecast fan chart
//! drawn; signs out; and, signed in with a read-only key, finds no write control on any page
//! and a post made anyway refused with 403. It prints the script and style bytes each page
//! loads and axe's counts.
//!
//! Screenshots go to `docs/console/` with `SIGNALBOX_UPDATE_SCREENSHOTS=1`, else beside the
//! build's temporary files.
//!
//! Needs Node.js with npm, access to the npm registry (or a mirror configured for npm) on the
//! first run, and Chromium (`CHROMIUM`, default `/usr/bin/chromium`; `scripts/test` installs it).
//! It fails rather than skips without them.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::{signalbox, Server};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Where the screenshots go: the documentation's when asked to update it, else the target dir.
fn screenshot_dir() -> PathBuf {
    if std::env::var("SIGNALBOX_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
    }
}

/// One HTTP/1.1 request with a key and a JSON body; the status and body.
fn request(addr: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, reply) = support::request_raw(addr, method, path, &headers, body);
    (status, reply)
}

/// Runs the driver to the end; its reports, in order. Its stderr and the reports so far are in
/// the failure message when it fails.
fn drive(node_dir: &Path, server: &Server, admin_key: &str, read_key: &str) -> Vec<Value> {
    let mut child = Command::new("node")
        .arg("run.mjs")
        .current_dir(node_dir)
        .env("SIGNALBOX_URL", format!("http://{}", server.addr))
        .env("SIGNALBOX_ADMIN_KEY", admin_key)
        .env("SIGNALBOX_READ_KEY", read_key)
        .env("CHROMIUM", support::chromium())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js) is needed for the browser test");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut reports = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        reports.push(report);
    }
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap_or_default();
    // Kept for a look at everything the driver saw (the test prints only a summary).
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser-reports.json");
    std::fs::write(&saved, serde_json::to_string_pretty(&reports).unwrap()).unwrap();
    let failed = reports.iter().find(|r| r["step"] == "error");
    assert!(
        status.success() && failed.is_none(),
        "the driver failed ({status}): {:#}\n--- stderr\n{stderr}\n--- server log\n{}",
        failed.cloned().unwrap_or(Value::Null),
        server.log().join("\n")
    );
    reports
}

/// The one report of `step`, which must not have been skipped.
fn step<'a>(reports: &'a [Value], step: &str) -> &'a Value {
    let found: Vec<&Value> = reports.iter().filter(|r| r["step"] == step).collect();
    assert_eq!(found.len(), 1, "one `{step}` report expected: {reports:#?}");
    assert!(
        found[0]["skipped"].is_null(),
        "`{step}` was skipped: {}",
        found[0]["skipped"]
    );
    found[0]
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

#[test]
fn the_console_works_in_chromium_for_an_admin_and_a_read_only_key() {
    // First, because it may take a while on a cold cache and needs no server.
    let node_dir = support::node_packages(&fixture_dir(), "console-node", &["run.mjs"]);
    std::fs::create_dir_all(screenshot_dir()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    // An empty embedded store gets the demo tenant, its admin key and its data.
    let server = Server::start(&mut signalbox(dir.path()));
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo-tenant.json")).unwrap(),
    )
    .unwrap();
    let admin_key = demo["api_key"].as_str().unwrap().to_owned();
    let (status, created) = request(
        &server.addr,
        "POST",
        "/api/v1/tenant/keys",
        &admin_key,
        &json!({"scopes": ["read"], "label": "console read-only"}).to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let read_key = created["api_key"].as_str().unwrap().to_owned();

    let reports = drive(&node_dir, &server, &admin_key, &read_key);

    // 1. Signed in through the form, with a cookie scripts cannot read and other sites never send.
    let signed_in = step(&reports, "signed-in");
    assert_eq!(signed_in["path"], "/console", "{signed_in:#}");
    let cookies = signed_in["cookies"].as_array().unwrap();
    assert!(
        cookies.iter().any(|c| c["name"] == "signalbox_session"
            && c["httpOnly"] == true
            && c["sameSite"] == "Strict"),
        "{cookies:?}"
    );

    // 2. Every page: answered, one heading, no serious or critical axe finding, no CSP breach.
    let pages: Vec<&Value> = reports.iter().filter(|r| r["step"] == "page").collect();
    let mut problems = Vec::new();
    for page in &pages {
        let name = text(&page["name"]);
        for violation in page["axe"]["violations"].as_array().unwrap() {
            if matches!(text(&violation["impact"]), "serious" | "critical") {
                problems.push(format!("{name}: axe {violation}"));
            }
        }
        for error in page["consoleErrors"].as_array().unwrap() {
            problems.push(format!("{name}: browser console error: {error}"));
        }
        if name != "not-found" && page["h1"] != 1 {
            problems.push(format!("{name}: {} <h1> elements, not one", page["h1"]));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let visited: Vec<&str> = pages.iter().map(|p| text(&p["name"])).collect();
    for expected in ["sign-in", "overview", "predictions", "not-found"] {
        assert!(
            visited.contains(&expected),
            "{expected} not visited: {visited:?}"
        );
    }
    // The demo tenant's predictions were fitted on first start: the page has its charts (the
    // weekly tracking, risk levels and CLV ranges).
    let predictions = pages.iter().find(|p| p["name"] == "predictions").unwrap();
    assert!(
        predictions["charts"].as_u64().unwrap_or(0) >= 3,
        "{predictions:#}"
    );
    let not_found = pages.iter().find(|p| p["name"] == "not-found").unwrap();
    assert_eq!(not_found["status"], 404);

    // Keyboard: the skip link first, then (through the header) the navigation, focus visible.
    let stops = step(&reports, "keyboard")["stops"].as_array().unwrap();
    assert_eq!(stops[0]["skipLink"], true, "{stops:#?}");
    assert!(stops.last().unwrap()["inNav"] == true, "{stops:#?}");
    for stop in stops {
        assert_eq!(stop["outlineVisible"], true, "focus not visible: {stop}");
        assert_eq!(stop["onScreen"], true, "focused but off screen: {stop}");
    }

    // 3. The kill switch changes the tester's answer, and turning it back on restores it.
    let kill = step(&reports, "kill-switch");
    assert!(
        text(&kill["offerBefore"]).contains("Turn off (kill switch)"),
        "{kill:#}"
    );
    let (before, killed, restored) = (&kill["before"], &kill["killed"], &kill["restored"]);
    assert!(
        before["value"] != killed["value"] || before["reason"] != killed["reason"],
        "the kill switch changed nothing the tester shows: {kill:#}"
    );
    assert_eq!(before["value"], restored["value"], "{kill:#}");
    assert_eq!(before["reason"], restored["reason"], "{kill:#}");

    // 4. A key's secret is shown once, on creation, and never on the list; revoking it works.
    let keys = step(&reports, "keys");
    assert!(keys["secretLength"].as_u64().unwrap() >= 20, "{keys:#}");
    assert_eq!(keys["secretShownOnCreation"], true, "{keys:#}");
    assert_eq!(keys["listShowsLabel"], true, "{keys:#}");
    assert_eq!(keys["listShowsSecret"], false, "{keys:#}");
    assert_eq!(keys["worksBeforeRevoke"], 200, "{keys:#}");
    assert_eq!(keys["worksAfterRevoke"], 401, "{keys:#}");

    // 5. The fan chart is drawn, as an image with a name.
    let forecast = step(&reports, "forecast");
    let shapes = |tag: &str| forecast["shapes"][tag].as_u64().unwrap_or(0);
    assert!(shapes("polygon") > 0, "no p10-p90 band: {forecast:#}");
    assert!(
        shapes("polyline") + shapes("path") > 1,
        "no median and member lines: {forecast:#}"
    );
    assert_eq!(forecast["role"], "img", "{forecast:#}");
    assert!(!text(&forecast["label"]).is_empty(), "{forecast:#}");

    // 6. Signed out, a console page sends the browser to sign in, and back afterwards.
    let signed_out = step(&reports, "signed-out");
    assert_eq!(signed_out["landedOn"], "/console/sign-in", "{signed_out:#}");
    assert!(
        text(&signed_out["next"]).starts_with("/console"),
        "{signed_out:#}"
    );
    assert!(
        !signed_out["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "signalbox_session"),
        "{signed_out:#}"
    );

    // 7. A read-only key: no write control on any page it can open; posting anyway is 403.
    let read_only = step(&reports, "read-only");
    let read_pages = read_only["pages"].as_array().unwrap();
    assert!(!read_pages.is_empty(), "{read_only:#}");
    for page in read_pages {
        let controls = &page["controls"];
        assert!(
            controls["forms"].as_array().unwrap().is_empty()
                && controls["htmx"].as_array().unwrap().is_empty(),
            "a read-only key is offered write controls on {}: {controls:#}",
            page["path"]
        );
    }
    // The admin's pages its navigation leaves out (keys, jobs) answer 403 if opened anyway.
    let hidden = read_only["hidden"].as_array().unwrap();
    assert!(
        hidden.iter().any(|p| p["path"] == "/console/keys"),
        "{read_only:#}"
    );
    for page in hidden {
        assert_eq!(page["status"], 403, "{page:#}");
        assert!(
            page["controls"]["forms"].as_array().unwrap().is_empty(),
            "{page:#}"
        );
    }
    assert_eq!(read_only["refused"]["killSwitch"], 403, "{read_only:#}");
    assert_eq!(read_only["refused"]["createKey"], 403, "{read_only:#}");

    // 8. For the record: what each page loads (as the page gets it, and compressed as sent),
    // and what axe found.
    println!(
        "{:<20} {:>6} {:>14} {:>13} {:>9} {:>13}",
        "page", "status", "script B (sent)", "style B (sent)", "axe passed", "axe lesser"
    );
    let mut most_script = 0;
    for page in &pages {
        let impacts = &page["axe"]["impacts"];
        let lesser =
            impacts["minor"].as_u64().unwrap_or(0) + impacts["moderate"].as_u64().unwrap_or(0);
        let script = page["scriptBytes"].as_u64().unwrap_or(0);
        most_script = most_script.max(script);
        println!(
            "{:<20} {:>6} {:>14} {:>13} {:>9} {:>13}",
            text(&page["name"]),
            page["status"],
            format!("{script} ({})", page["scriptSentBytes"]),
            format!("{} ({})", page["styleBytes"], page["styleSentBytes"]),
            page["axe"]["passes"],
            lesser
        );
    }
    // The budget: under 100 KB of script on any page.
    assert!(
        most_script < 100_000,
        "a page loads {most_script} bytes of script"
    );
}
