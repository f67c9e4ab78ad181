//! Acceptance with a real OpenTelemetry client: the official Python SDK (TracerProvider,
//! BatchSpanProcessor) exports GenAI spans for two models across three conversations to a
//! running `signalbox serve`, first with the official OTLP/HTTP protobuf exporter, then as
//! OTLP/JSON through the official JSON encoder (`tests/otel/send_genai_spans.py`; packages pinned
//! in `tests/otel/requirements.txt`). The usage API must then report exactly the tokens and cost
//! of what the script says it sent. Needs `python3` with `venv` and a reachable package index;
//! it fails rather than skips without them.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::{describe, json_lines, run_ok, signalbox, Server};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel")
}

/// The tenant's prices for the two models in picodollars per token (micro-dollars per million
/// tokens): (input, cache read, output).
fn price(provider: &str, model: &str) -> (u64, u64, u64) {
    match (provider, model) {
        ("openai", "gpt-4o-mini") => (150_000, 75_000, 600_000),
        ("anthropic", "claude-sonnet-4") => (3_000_000, 300_000, 15_000_000),
        other => panic!("the script sent a model with no test price: {other:?}"),
    }
}

fn prices_body() -> Value {
    json!({
        "use_defaults": false,
        "overrides": {
            "version": "otel-acceptance",
            "prices": [
                {"provider": "openai", "model": "gpt-4o-mini", "effective_from": "2020-01-01",
                 "input": "0.15", "cache_read": "0.075", "output": "0.60"},
                {"provider": "anthropic", "model": "claude-sonnet-4", "effective_from": "2020-01-01",
                 "input": "3.00", "cache_read": "0.30", "output": "15.00"}
            ]
        }
    })
}

/// One HTTP/1.1 request with a JSON body; the status and body.
fn send_json(addr: &str, method: &str, path: &str, key: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
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

/// What the usage API should say per conversation: (calls, errors, input (exclusive of cache
/// reads), cache reads, output, cost in picodollars).
type Expected = BTreeMap<String, (u64, u64, u64, u64, u64, u64)>;

fn expected(sent: &Value) -> Expected {
    let mut out = Expected::new();
    for call in sent["calls"].as_array().expect("calls") {
        // The conventions' input count includes cache reads; signalbox stores them apart.
        let cache_read = call["cache_read_tokens"].as_u64().unwrap();
        let input = call["input_tokens"].as_u64().unwrap() - cache_read;
        let output = call["output_tokens"].as_u64().unwrap();
        let (pi, pc, po) = price(
            call["provider"].as_str().unwrap(),
            call["model"].as_str().unwrap(),
        );
        let e = out
            .entry(call["conversation_id"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += 1;
        e.1 += u64::from(call["error"].as_bool().unwrap());
        e.2 += input;
        e.3 += cache_read;
        e.4 += output;
        e.5 += input * pi + cache_read * pc + output * po;
    }
    out
}

fn run_script(python: &Path, server: &Server, key: &str, encoding: &str) -> Value {
    let out = Command::new(python)
        .arg(fixture_dir().join("send_genai_spans.py"))
        .env("SIGNALBOX_URL", format!("http://{}", server.addr))
        .env("SIGNALBOX_API_KEY", key)
        .env("OTLP_ENCODING", encoding)
        .env("RUN_ID", encoding)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The SDK must not pick up a developer's own exporter settings.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nserver log: {:?}",
        describe("send_genai_spans.py", &out),
        server.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sent: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(sent["encoding"], encoding);
    sent
}

/// Usage per conversation as the API reports it, for conversations starting with `prefix`.
fn reported(server: &Server, key: &str, prefix: &str) -> Expected {
    let today = time::OffsetDateTime::now_utc().date();
    let yesterday = today.previous_day().unwrap();
    // Yesterday too: a run across midnight UTC still sees every call.
    let path = format!("/api/v1/llm/usage?from={yesterday}&to={today}&group_by=conversation");
    let (status, _, body) = server.get_raw(&path, key);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let mut out = Expected::new();
    for g in answer["groups"].as_array().unwrap() {
        let Some(conversation) = g["conversation_id"].as_str() else {
            continue;
        };
        if !conversation.starts_with(prefix) {
            continue;
        }
        out.insert(
            conversation.to_owned(),
            (
                g["calls"].as_u64().unwrap(),
                g["errors"].as_u64().unwrap(),
                g["tokens"]["input"].as_u64().unwrap(),
                g["tokens"]["cache_read"].as_u64().unwrap(),
                g["tokens"]["output"].as_u64().unwrap(),
                g["cost_picodollars"].as_u64().unwrap(),
            ),
        );
    }
    out
}

#[test]
fn the_opentelemetry_python_sdk_exports_genai_spans_in_protobuf_and_json() {
    // First, because it may take a while on a cold cache and needs no server.
    let python = support::python_venv(&fixture_dir().join("requirements.txt"), "otel-venv");

    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "otel", "--tier", "starter"]),
    ));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let key =
        json_lines(&run_ok(signalbox(dir.path()).args([
            "keys", "create", "--tenant", &tenant, "--scopes", "admin",
        ])))[0]["api_key"]
            .as_str()
            .unwrap()
            .to_owned();
    let server = Server::start(&mut signalbox(dir.path()));
    let (status, body) = send_json(
        &server.addr,
        "PUT",
        "/api/v1/llm/prices",
        &key,
        &prices_body(),
    );
    assert_eq!(status, 200, "{body}");

    for encoding in ["protobuf", "json"] {
        let sent = run_script(&python, &server, &key, encoding);
        let want = expected(&sent);
        assert_eq!(want.len(), 3, "three conversations: {sent}");
        let models: std::collections::BTreeSet<&str> = sent["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["model"].as_str().unwrap())
            .collect();
        assert_eq!(models.len(), 2, "two models: {sent}");
        let got = reported(&server, &key, &format!("{encoding}-"));
        assert_eq!(
            got,
            want,
            "{encoding}: the usage API disagrees with what was sent\nserver log: {:?}",
            server.log()
        );
    }
}
