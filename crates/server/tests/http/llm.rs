//! LLM observability over HTTP: OTLP/HTTP traces (protobuf and JSON, gzip, partial success,
//! OTLP error bodies), the event API (per-item rejections, duplicates, limits), usage (JSON and
//! CSV, exact), conversation timelines, budgets crossed once per period (also across a
//! restart), prices and tenant isolation. Every scenario runs on both backends.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{json, Value};
use server::{AppState, ServerConfig};
use store::{Backend, Scope};
use tower::ServiceExt;

use proptest::prelude::*;

use crate::{Reply, TestApp};

/// Test prices: two models with round rates so expected costs are easy to write down.
/// `acme/large`: $3 in, $15 out per million; `acme/small`: $0.25 in, $1.25 out.
const PRICES: &str = r#"{
    "version": "test-1",
    "prices": [
        {"provider": "acme", "model": "large", "effective_from": "2020-01-01",
         "input": "3.00", "output": "15.00"},
        {"provider": "acme", "model": "small", "effective_from": "2020-01-01",
         "input": "0.25", "output": "1.25"}
    ]
}"#;

/// Picodollars of a call at the test prices.
fn cost(model: &str, input: u64, output: u64) -> u64 {
    let (i, o) = match model {
        "large" => (3_000_000, 15_000_000),
        "small" => (250_000, 1_250_000),
        other => panic!("no test price for {other}"),
    };
    input * i + output * o
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn today() -> String {
    server::rfc3339_ms(now_ms())[..10].to_owned()
}

/// A tenant with an admin key whose prices are the test prices only.
async fn priced_tenant(app: &TestApp, name: &str) -> (store::Tenant, String) {
    let (tenant, key) = app.tenant(name, &[Scope::Admin]).await;
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/prices",
            Some(&key.secret),
            Some(json!({"use_defaults": false, "overrides": serde_json::from_str::<Value>(PRICES).unwrap()})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    (tenant, key.secret)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// A GenAI chat span.
fn genai_span(n: u8, model: &str, conversation: &str, input: i64, output: i64) -> Span {
    let start = (now_ms() as u64 - 60_000) * 1_000_000;
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("chat {model}"),
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 250_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s(model)),
            kv("gen_ai.conversation.id", s(conversation)),
            kv("gen_ai.usage.input_tokens", i(input)),
            kv("gen_ai.usage.output_tokens", i(output)),
        ],
        ..Default::default()
    }
}

/// A span that is no GenAI call.
fn plain_span(n: u8) -> Span {
    let start = (now_ms() as u64 - 60_000) * 1_000_000;
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: "GET /checkout".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        ..Default::default()
    }
}

/// Spans under a resource naming the provider (read from the resource as a fallback).
fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("chatbot")),
                    kv("gen_ai.provider.name", s("acme")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    key: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    app.send(req.body(Body::from(body)).unwrap()).await
}

async fn post_protobuf(app: &TestApp, key: &str, req: &ExportTraceServiceRequest) -> Reply {
    post_raw(
        app,
        "/v1/traces",
        key,
        "application/x-protobuf",
        None,
        req.encode_to_vec(),
    )
    .await
}

async fn usage(app: &TestApp, key: &str, query: &str) -> Value {
    let reply = app
        .get(&format!("/api/v1/llm/usage?{query}"), Some(key))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

async fn otlp_ingest(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = priced_tenant(&app, "otlp").await;

    // Protobuf: three GenAI spans and one other span.
    let pb = request(vec![
        genai_span(1, "large", "conv-1", 1000, 200),
        genai_span(2, "small", "conv-1", 4000, 100),
        plain_span(3),
        genai_span(4, "large", "conv-2", 10, 5),
    ]);
    let reply = post_protobuf(&app, &key, &pb).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(&reply.body[..]).unwrap();
    assert!(
        answer
            .partial_success
            .as_ref()
            .is_none_or(|p| p.rejected_spans == 0),
        "{answer:?}"
    );

    // JSON, gzip-compressed, through the OTLP/JSON encoding rules (hex ids, strings for int64).
    let json_body =
        serde_json::to_vec(&request(vec![genai_span(5, "small", "conv-3", 300, 30)])).unwrap();
    let text = String::from_utf8(json_body.clone()).unwrap();
    assert!(text.contains("\"traceId\":\"0505"), "{text}");
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/json",
        Some("gzip"),
        gzip(&json_body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/json");

    // Retrying the same export changes nothing.
    let again = post_protobuf(&app, &key, &pb).await;
    assert_eq!(again.status, 200);

    let by_model = usage(&app, &key, "group_by=model").await;
    let groups = by_model["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{by_model}");
    let large = &groups[0];
    assert_eq!(large["model"], "large");
    assert_eq!(large["calls"], 2);
    assert_eq!(large["tokens"]["input"], 1010);
    assert_eq!(large["tokens"]["output"], 205);
    assert_eq!(
        large["cost_picodollars"],
        cost("large", 1000, 200) + cost("large", 10, 5)
    );
    let small = &groups[1];
    assert_eq!(small["model"], "small");
    assert_eq!(small["calls"], 2);
    assert_eq!(
        small["cost_picodollars"],
        cost("small", 4000, 100) + cost("small", 300, 30)
    );
    assert_eq!(by_model["totals"]["calls"], 4);
    assert_eq!(
        by_model["totals"]["tokens"]["total"],
        1010 + 205 + 4300 + 130
    );
    // 250 ms per span: the quantile is within ±4.4 %.
    let p50 = by_model["totals"]["p50_ms"].as_f64().unwrap();
    assert!((239.0..=261.0).contains(&p50), "{p50}");
    app.cleanup().await;
}

#[tokio::test]
async fn otlp_ingest_on_sqlite() {
    otlp_ingest(Backend::Sqlite).await;
}

#[tokio::test]
async fn otlp_ingest_on_postgres() {
    otlp_ingest(Backend::Postgres).await;
}

async fn otlp_partial_success_and_bad_input(backend: Backend) {
    let mut config = ServerConfig::default();
    config.llm.max_spans_per_request = 5;
    config.llm.body_limit_bytes = 64 * 1024;
    let app = TestApp::with_config(backend, config).await;
    let (_, key) = priced_tenant(&app, "bad").await;

    // One negative token count, one unknown operation: rejected; the good span is stored.
    let mut unknown_op = genai_span(2, "large", "c", 1, 1);
    unknown_op.attributes[0] = kv("gen_ai.operation.name", s("teleport"));
    let pb = request(vec![
        genai_span(1, "large", "c", 100, 10),
        genai_span(3, "small", "c", -5, 10),
        unknown_op,
    ]);
    let reply = post_protobuf(&app, &key, &pb).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = ExportTraceServiceResponse::decode(&reply.body[..]).unwrap();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2, "{partial:?}");
    assert!(
        partial.error_message.contains("gen_ai.usage.input_tokens"),
        "{partial:?}"
    );
    assert!(
        partial.error_message.contains("gen_ai.operation.name"),
        "{partial:?}"
    );
    let json_reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/json",
        None,
        serde_json::to_vec(&request(vec![genai_span(3, "small", "c", -5, 10)])).unwrap(),
    )
    .await;
    assert_eq!(json_reply.status, 200, "{}", json_reply.text());
    assert_eq!(
        json_reply.json()["partialSuccess"]["rejectedSpans"],
        json!(1)
    );

    let before = usage(&app, &key, "group_by=").await;
    assert_eq!(before["totals"]["calls"], 1, "{before}");

    // Malformed protobuf: 400 with a google.rpc.Status in protobuf.
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.content_type(), "application/x-protobuf");
    let status = server::llm::otlp::RpcStatus::decode(&reply.body[..]).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.contains("protobuf"), "{status:?}");

    // JSON of the wrong shape: 400 with a JSON Status.
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/json",
        None,
        br#"{"resourceSpans": {"not": "a list"}}"#.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["code"], 3);
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("OTLP/JSON"));

    // Corrupt gzip, unsupported content type, unsupported encoding.
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = post_raw(&app, "/v1/traces", &key, "text/plain", None, b"x".to_vec()).await;
    assert_eq!(reply.status, 415);
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/x-protobuf",
        Some("br"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 415);

    // Too many spans (limit 5 here), a body over the limit, gzip inflating past the limit.
    let many: Vec<Span> = (10..16)
        .map(|n| genai_span(n, "large", "c", 1, 1))
        .collect();
    let reply = post_protobuf(&app, &key, &request(many)).await;
    assert_eq!(reply.status, 413);
    let status = server::llm::otlp::RpcStatus::decode(&reply.body[..]).unwrap();
    assert!(status.message.contains("at most 5"), "{status:?}");
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/x-protobuf",
        None,
        vec![0u8; 64 * 1024 + 1],
    )
    .await;
    assert_eq!(reply.status, 413);
    let reply = post_raw(
        &app,
        "/v1/traces",
        &key,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&vec![0u8; 1024 * 1024]),
    )
    .await;
    assert_eq!(reply.status, 413);

    // Without a key or the write scope: 401 / 403, still OTLP Status bodies.
    let reply = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .body(Body::from(pb.encode_to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        server::llm::otlp::RpcStatus::decode(&reply.body[..])
            .unwrap()
            .code,
        16
    );
    let (_, reader) = app.tenant("reader", &[Scope::Read]).await;
    let reply = post_protobuf(&app, &reader.secret, &pb).await;
    assert_eq!(reply.status, 403);

    // Nothing of a refused request was stored.
    let after = usage(&app, &key, "group_by=").await;
    assert_eq!(after, before);
    app.cleanup().await;
}

#[tokio::test]
async fn otlp_partial_success_and_bad_input_on_sqlite() {
    otlp_partial_success_and_bad_input(Backend::Sqlite).await;
}

#[tokio::test]
async fn otlp_partial_success_and_bad_input_on_postgres() {
    otlp_partial_success_and_bad_input(Backend::Postgres).await;
}

fn model_call(id: &str, model: &str, conv: Option<&str>, input: u64, output: u64) -> Value {
    let mut e = json!({
        "type": "model_call", "id": id, "time": server::rfc3339_ms(now_ms() - 1000),
        "provider": "acme", "model": model, "operation": "chat",
        "duration_ms": 120, "input_tokens": input, "output_tokens": output,
    });
    if let Some(c) = conv {
        e["conversation_id"] = json!(c);
    }
    e
}

async fn events(app: &TestApp, key: &str, body: Value) -> Reply {
    app.call(Method::POST, "/api/v1/llm/events", Some(key), Some(body))
        .await
}

async fn event_api(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = priced_tenant(&app, "events").await;
    let t = |offset: i64| server::rfc3339_ms(now_ms() - 10_000 + offset);
    let batch = json!([
        {"type": "conversation_started", "id": "e1", "time": t(0), "conversation_id": "c-9", "channel": "web"},
        {"type": "message_processed", "id": "e2", "time": t(1), "conversation_id": "c-9", "channel": "web", "direction": "inbound", "message_type": "text"},
        model_call("e3", "large", Some("c-9"), 500, 50),
        {"type": "integration_call", "id": "e4", "time": t(3), "conversation_id": "c-9", "integration_id": "crm", "integration_type": "crm", "status": "success", "duration_ms": 40},
        {"type": "conversation_completed", "id": "e5", "time": t(4), "conversation_id": "c-9", "channel": "web", "resolution_status": "resolved"},
        // Rejected: negative tokens, absurd tokens, unknown operation, a part larger than its whole.
        {"type": "model_call", "id": "bad1", "time": t(5), "provider": "acme", "model": "large", "operation": "chat", "duration_ms": 1, "input_tokens": -1, "output_tokens": 1},
        {"type": "model_call", "id": "bad2", "time": t(5), "provider": "acme", "model": "large", "operation": "chat", "duration_ms": 1, "input_tokens": 1_000_000_000_000u64, "output_tokens": 1},
        {"type": "model_call", "id": "bad3", "time": t(5), "provider": "acme", "model": "large", "operation": "summon", "duration_ms": 1, "input_tokens": 1, "output_tokens": 1},
        {"type": "model_call", "id": "bad4", "time": t(5), "provider": "acme", "model": "large", "operation": "chat", "duration_ms": 1, "input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 5},
        {"type": "teleport", "id": "bad5", "time": t(5)},
    ]);
    let reply = events(&app, &key, batch.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["accepted"], 5, "{body}");
    assert_eq!(body["stored"], 5, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    let fields: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            (5, "input_tokens"),
            (6, "input_tokens"),
            (7, "operation"),
            (8, "cache_read_tokens"),
            (9, "type")
        ],
        "{body}"
    );

    // The same batch again: all duplicates, nothing changes.
    let first = usage(&app, &key, "group_by=conversation").await;
    let reply = events(&app, &key, batch).await;
    assert_eq!(reply.json()["duplicates"], 5, "{}", reply.text());
    assert_eq!(reply.json()["stored"], 0);
    assert_eq!(usage(&app, &key, "group_by=conversation").await, first);

    // NDJSON works too.
    let ndjson = format!(
        "{}\n\n{}\n",
        model_call("n1", "small", None, 10, 1),
        model_call("n2", "small", None, 20, 2)
    );
    let reply = post_raw(
        &app,
        "/api/v1/llm/events",
        &key,
        "application/x-ndjson",
        None,
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["stored"], 2);

    // All rejected: 422 with the list.
    let reply = events(&app, &key, json!([{"type": "model_call", "id": "x"}])).await;
    let problem = reply.assert_problem(422, "unprocessable", "/api/v1/llm/events");
    assert_eq!(problem["rejected"][0]["index"], 0);
    // Not an array; wrong content type; more than 10,000 events: refused whole.
    let reply = events(&app, &key, json!({"type": "model_call"})).await;
    reply.assert_problem(400, "malformed_json", "/api/v1/llm/events");
    let reply = post_raw(&app, "/api/v1/llm/events", &key, "text/plain", None, vec![]).await;
    reply.assert_problem(415, "unsupported_media_type", "/api/v1/llm/events");
    let many: Vec<Value> = (0..10_001)
        .map(|n| model_call(&format!("m{n}"), "small", None, 1, 1))
        .collect();
    let before = usage(&app, &key, "group_by=").await;
    let reply = events(&app, &key, Value::Array(many)).await;
    let problem = reply.assert_problem(413, "payload_too_large", "/api/v1/llm/events");
    assert_eq!(problem["max_events"], 10_000);
    assert_eq!(usage(&app, &key, "group_by=").await, before);
    app.cleanup().await;
}

#[tokio::test]
async fn event_api_on_sqlite() {
    event_api(Backend::Sqlite).await;
}

#[tokio::test]
async fn event_api_on_postgres() {
    event_api(Backend::Postgres).await;
}

async fn usage_and_timeline(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = priced_tenant(&app, "usage").await;
    let mut failed = model_call("u3", "small", Some("c,\"2\""), 100, 0);
    failed["status"] = json!("error");
    failed["error_type"] = json!("timeout");
    let mut client_cost = model_call("u4", "large", Some("c1"), 1, 1);
    client_cost["cost_usd"] = json!(0.5);
    let reply = events(
        &app,
        &key,
        json!([
            model_call("u1", "large", Some("c1"), 1000, 100),
            model_call("u2", "small", Some("c1"), 2000, 300),
            failed,
            client_cost,
            {"type": "message_processed", "id": "m1", "time": server::rfc3339_ms(now_ms() - 5000), "conversation_id": "c1", "channel": "web", "direction": "inbound", "message_type": "text"},
        ]),
    )
    .await;
    assert_eq!(reply.json()["stored"], 5, "{}", reply.text());

    let day = today();
    let answer = usage(
        &app,
        &key,
        &format!("from={day}&to={day}&group_by=day,conversation"),
    )
    .await;
    assert_eq!(answer["from"], day);
    assert_eq!(answer["group_by"], json!(["day", "conversation"]));
    let groups = answer["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{answer}");
    let c1 = groups
        .iter()
        .find(|g| g["conversation_id"] == "c1")
        .unwrap();
    assert_eq!(c1["day"], day);
    assert_eq!(c1["calls"], 3);
    assert_eq!(c1["errors"], 0);
    let c1_cost = cost("large", 1000, 100) + cost("small", 2000, 300) + 500_000_000_000;
    assert_eq!(c1["cost_picodollars"], c1_cost, "the client's cost wins");
    let c2 = groups
        .iter()
        .find(|g| g["conversation_id"] != "c1")
        .unwrap();
    assert_eq!(c2["errors"], 1);
    assert_eq!(answer["totals"]["tokens"]["input"], 3101);
    assert_eq!(answer["totals"]["tokens"]["output"], 401);

    // CSV: the same numbers, ids quoted.
    let reply = app
        .send(
            Request::builder()
                .uri(format!(
                    "/api/v1/llm/usage?from={day}&to={day}&group_by=provider,model"
                ))
                .header("authorization", format!("Bearer {key}"))
                .header("accept", "text/csv")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type().starts_with("text/csv"),
        "{}",
        reply.content_type()
    );
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "provider,model,calls,errors,input_tokens,output_tokens,cache_read_tokens,\
         cache_write_tokens,reasoning_tokens,total_tokens,cost_picodollars,cost_usd,\
         unpriced_calls,p50_ms,p95_ms"
    );
    let large_cost = cost("large", 1000, 100) + 500_000_000_000;
    assert!(
        lines[1].starts_with(&format!(
            "acme,large,2,0,1001,101,0,0,0,1102,{large_cost},{},0,",
            llm::Cost::from_picodollars(large_cost).usd_string()
        )),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");

    // Bad parameters name themselves.
    let reply = app
        .get("/api/v1/llm/usage?group_by=tenant", Some(&key))
        .await;
    let problem = reply.assert_problem(400, "invalid_parameter", "/api/v1/llm/usage");
    assert_eq!(problem["parameter"], "group_by");
    let reply = app
        .get("/api/v1/llm/usage?from=yesterday", Some(&key))
        .await;
    assert_eq!(
        reply.assert_problem(400, "invalid_parameter", "/api/v1/llm/usage")["parameter"],
        "from"
    );

    // The timeline, in time order, with tokens, cost and latency.
    let reply = app.get("/api/v1/llm/conversations/c1", Some(&key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let timeline = reply.json();
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "message_processed", "{timeline}");
    assert_eq!(kinds.len(), 4, "{timeline}");
    assert_eq!(timeline["totals"]["calls"], 3);
    assert_eq!(timeline["totals"]["cost_picodollars"], c1_cost);
    let call = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "u1")
        .unwrap();
    assert_eq!(call["tokens"]["input"], 1000);
    assert_eq!(call["cost_picodollars"], cost("large", 1000, 100));
    assert_eq!(call["duration_ms"], 120.0);
    let reply = app.get("/api/v1/llm/conversations/nope", Some(&key)).await;
    reply.assert_problem(404, "not_found", "/api/v1/llm/conversations/nope");
    app.cleanup().await;
}

#[tokio::test]
async fn usage_and_timeline_on_sqlite() {
    usage_and_timeline(Backend::Sqlite).await;
}

#[tokio::test]
async fn usage_and_timeline_on_postgres() {
    usage_and_timeline(Backend::Postgres).await;
}

/// A call whose cost is `usd` dollars (client-supplied).
fn spend(id: &str, usd: f64) -> Value {
    let mut e = model_call(id, "large", None, 1, 1);
    e["cost_usd"] = json!(usd);
    e
}

fn crossings(budget: &Value) -> Vec<u64> {
    budget["crossings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["threshold"].as_u64().unwrap())
        .collect()
}

async fn budgets(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, key) = priced_tenant(&app, "budget").await;
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/budget",
            Some(&key),
            Some(json!({"monthly_usd": 10.0})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["thresholds"], json!([50, 80, 100]));
    assert_eq!(crossings(&reply.json()), Vec::<u64>::new());

    events(&app, &key, json!([spend("b1", 4.0)])).await;
    let b = app.get("/api/v1/llm/budget", Some(&key)).await.json();
    assert_eq!(crossings(&b), Vec::<u64>::new(), "{b}");
    events(&app, &key, json!([spend("b2", 1.5)])).await; // 55 %
    events(&app, &key, json!([spend("b2", 1.5)])).await; // a duplicate: still 55 %
    events(&app, &key, json!([spend("b3", 0.5)])).await; // 60 %
    let b = app.get("/api/v1/llm/budget", Some(&key)).await.json();
    assert_eq!(crossings(&b), vec![50], "{b}");
    assert_eq!(b["spent_picodollars"], 6_000_000_000_000u64);
    events(&app, &key, json!([spend("b4", 2.5)])).await; // 85 %
    let b = app.get("/api/v1/llm/budget", Some(&key)).await.json();
    assert_eq!(crossings(&b), vec![50, 80], "{b}");
    let metrics = app.get("/api/v1/metrics", Some(&key)).await.text();
    assert!(metrics.contains(&tenant.id), "{metrics}");

    // A restart: the same database, a new application state. Nothing is recorded twice.
    let store = app.fixture.reopen().await;
    let events_dir = tempfile::tempdir().unwrap();
    let log = stream::EventLog::open_file(events_dir.path(), Default::default())
        .await
        .unwrap();
    let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
    let state = AppState::new(store.clone(), metrics, ServerConfig::default(), log).unwrap();
    let router = server::app(state);
    let call = |body: Value| {
        let router = router.clone();
        let key = key.clone();
        async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/llm/events")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = router.oneshot(req).await.unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    call(json!([spend("r1", 0.1)])).await; // 86 %: 50 and 80 stay recorded once
    call(json!([spend("r2", 1.4)])).await; // 100 %
    call(json!([spend("r3", 3.0)])).await; // 130 %
    let b = app.get("/api/v1/llm/budget", Some(&key)).await.json();
    assert_eq!(crossings(&b), vec![50, 80, 100], "{b}");
    assert_eq!(b["spent_picodollars"], 13_000_000_000_000u64);
    let first = b["crossings"][0]["crossed_at"].clone();
    call(json!([spend("r4", 1.0)])).await;
    let b = app.get("/api/v1/llm/budget", Some(&key)).await.json();
    assert_eq!(crossings(&b), vec![50, 80, 100], "{b}");
    assert_eq!(b["crossings"][0]["crossed_at"], first);
    store.close().await;

    // Only admins set budgets.
    let (_, writer) = app.tenant("writer", &[Scope::Write, Scope::Read]).await;
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/budget",
            Some(&writer.secret),
            Some(json!({"monthly_usd": 1.0})),
        )
        .await;
    reply.assert_problem(403, "forbidden", "/api/v1/llm/budget");
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/budget",
            Some(&key),
            Some(json!({"monthly_usd": -1.0})),
        )
        .await;
    let problem = reply.assert_problem(400, "invalid_field", "/api/v1/llm/budget");
    assert_eq!(problem["field"], "monthly_usd", "{problem}");
    // Threshold rules are the llm crate's Budget rules, each naming the field.
    for (thresholds, field) in [
        (json!([50, 0]), "thresholds[1]"),
        (json!([]), "thresholds"),
        (json!((1..=11).collect::<Vec<u8>>()), "thresholds"),
    ] {
        let reply = app
            .call(
                Method::PUT,
                "/api/v1/llm/budget",
                Some(&key),
                Some(json!({"monthly_usd": 5.0, "thresholds": thresholds})),
            )
            .await;
        let problem = reply.assert_problem(400, "invalid_field", "/api/v1/llm/budget");
        assert_eq!(problem["field"], field, "{problem}");
    }
    // None of the refused budgets replaced the one set.
    let budget = app
        .call(Method::GET, "/api/v1/llm/budget", Some(&key), None)
        .await
        .json();
    assert_ne!(budget["monthly_usd"], 5.0, "{budget}");
    app.cleanup().await;
}

#[tokio::test]
async fn budgets_on_sqlite() {
    budgets(Backend::Sqlite).await;
}

#[tokio::test]
async fn budgets_on_postgres() {
    budgets(Backend::Postgres).await;
}

async fn prices(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = app.tenant("prices", &[Scope::Admin]).await;
    let key = key.secret;
    let shown = app.get("/api/v1/llm/prices", Some(&key)).await.json();
    assert_eq!(shown["use_defaults"], true, "{shown}");
    assert!(shown["defaults_models"].as_u64().unwrap() > 0, "{shown}");
    // A bad table names the field.
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/prices",
            Some(&key),
            Some(json!({"use_defaults": true, "overrides": {"version": "x", "prices": [
                {"provider": "acme", "model": "m", "effective_from": "2020-01-01", "input": "-1", "output": "1"}
            ]}})),
        )
        .await;
    let problem = reply.assert_problem(422, "unprocessable", "/api/v1/llm/prices");
    assert_eq!(problem["field"], "overrides.prices[0].input", "{problem}");
    // With no price for the model and defaults off, a call is unpriced (never guessed).
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/prices",
            Some(&key),
            Some(json!({"use_defaults": false})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["use_defaults"], false);
    events(&app, &key, json!([model_call("p1", "large", None, 10, 10)])).await;
    let u = usage(&app, &key, "group_by=").await;
    assert_eq!(u["totals"]["unpriced_calls"], 1, "{u}");
    assert_eq!(u["totals"]["cost_picodollars"], 0);
    // New prices apply to calls ingested from then on.
    let (_, _) = (0, 0);
    let reply = app
        .call(
            Method::PUT,
            "/api/v1/llm/prices",
            Some(&key),
            Some(json!({"use_defaults": false, "overrides": serde_json::from_str::<Value>(PRICES).unwrap()})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    events(&app, &key, json!([model_call("p2", "large", None, 10, 10)])).await;
    let u = usage(&app, &key, "group_by=").await;
    assert_eq!(
        u["totals"]["cost_picodollars"],
        cost("large", 10, 10),
        "{u}"
    );
    assert_eq!(u["totals"]["unpriced_calls"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn prices_on_sqlite() {
    prices(Backend::Sqlite).await;
}

#[tokio::test]
async fn prices_on_postgres() {
    prices(Backend::Postgres).await;
}

async fn isolation(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (a, ka) = priced_tenant(&app, "llm-a").await;
    let (b, kb) = priced_tenant(&app, "llm-b").await;
    let reply = events(
        &app,
        &ka,
        json!([model_call(
            "a1",
            "large",
            Some("a-secret-conversation"),
            777_777,
            1
        )]),
    )
    .await;
    assert_eq!(reply.json()["stored"], 1);
    // B reusing A's event id stores B's own event.
    let reply = events(
        &app,
        &kb,
        json!([model_call("a1", "small", Some("b-conv"), 5, 5)]),
    )
    .await;
    assert_eq!(reply.json()["stored"], 1, "{}", reply.text());

    for (key, own, other) in [(&kb, &b, &a), (&ka, &a, &b)] {
        let u = app
            .get("/api/v1/llm/usage?group_by=conversation,model", Some(key))
            .await;
        assert_eq!(u.status, 200);
        assert_eq!(u.json()["totals"]["calls"], 1, "{}", u.text());
        let m = app.get("/api/v1/metrics", Some(key)).await;
        assert_eq!(m.status, 200, "{}", m.text());
        assert!(!m.text().contains(&other.id), "{}", m.text());
        assert!(m.text().contains(&own.id), "{}", m.text());
    }
    let u = app
        .get("/api/v1/llm/usage?group_by=conversation", Some(&kb))
        .await
        .text();
    assert!(
        !u.contains("a-secret-conversation") && !u.contains("777777"),
        "{u}"
    );
    let reply = app
        .get("/api/v1/llm/conversations/a-secret-conversation", Some(&kb))
        .await;
    reply.assert_problem(
        404,
        "not_found",
        "/api/v1/llm/conversations/a-secret-conversation",
    );
    let reply = app
        .get("/api/v1/llm/conversations/a-secret-conversation", Some(&ka))
        .await;
    assert_eq!(reply.status, 200);
    app.cleanup().await;
}

#[tokio::test]
async fn tenants_are_isolated_on_sqlite() {
    isolation(Backend::Sqlite).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_postgres() {
    isolation(Backend::Postgres).await;
}

async fn retention(backend: Backend) {
    let mut config = ServerConfig::default();
    config.llm.retention_days = Some(1);
    let app = TestApp::with_config(backend, config).await;
    let (_, key) = priced_tenant(&app, "retention").await;
    let mut old = model_call("old", "large", Some("old-conversation"), 100, 10);
    old["time"] = json!(server::rfc3339_ms(now_ms() - 2 * 86_400_000));
    let fresh = model_call("fresh", "large", Some("fresh-conversation"), 100, 10);
    let reply = events(&app, &key, json!([old, fresh])).await;
    assert_eq!(reply.json()["stored"], 2, "{}", reply.text());

    let purged = app
        .state
        .llm()
        .purge(app.state.store(), now_ms())
        .await
        .unwrap();
    assert_eq!(purged, 1);
    // The raw call is gone: its timeline too. The daily rollups keep its usage.
    let reply = app
        .get("/api/v1/llm/conversations/old-conversation", Some(&key))
        .await;
    assert_eq!(reply.status, 404);
    let reply = app
        .get("/api/v1/llm/conversations/fresh-conversation", Some(&key))
        .await;
    assert_eq!(reply.status, 200);
    let u = usage(&app, &key, "group_by=model").await;
    assert_eq!(u["totals"]["calls"], 2, "{u}");
    // Without a retention setting nothing is purged.
    let keep = server::LlmService::new(server::LlmSettings::default());
    assert_eq!(keep.purge(app.state.store(), now_ms()).await.unwrap(), 0);
    app.cleanup().await;
}

#[tokio::test]
async fn retention_on_sqlite() {
    retention(Backend::Sqlite).await;
}

#[tokio::test]
async fn retention_on_postgres() {
    retention(Backend::Postgres).await;
}

/// Picodollars of a decimal text such as `12.3456` (as the exposition writes cents), exactly.
fn cents_text_to_picodollars(text: &str) -> u64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 10, "more decimals than a picodollar: {text}");
    let frac = format!("{frac:0<10}");
    whole.parse::<u64>().unwrap() * llm::Cost::PER_CENT + frac.parse::<u64>().unwrap()
}

/// Sums of the tenant's samples of `family` whose labels contain `filter`.
fn sum_samples(text: &str, family: &str, filter: &str, parse: impl Fn(&str) -> u64) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(filter))
        .map(|l| parse(l.rsplit(' ').next().unwrap()))
        .sum()
}

/// One generated call: model (0 large, 1 small, 2 unpriced), inclusive input, cache reads
/// (part of input), output, a client cost in micro-dollars, and which id it takes.
type GenCall = (usize, u64, u64, u64, Option<u64>, usize);

fn exactness_case(calls: &[GenCall], split: usize) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = TestApp::new(Backend::Sqlite).await;
        let (tenant, key) = priced_tenant(&app, "exact").await;
        let models = ["large", "small", "unpriced"];
        let mut seen = std::collections::HashSet::new();
        let (mut calls_n, mut input, mut output, mut cache_read, mut cost, mut unpriced) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut bodies = Vec::new();
        for (m, total_in, cached, out, client_micro, id) in calls {
            let cached = cached.min(total_in);
            let mut e = model_call(
                &format!("x{id}"),
                models[*m],
                Some(&format!("c{}", id % 3)),
                *total_in,
                *out,
            );
            e["cache_read_tokens"] = json!(cached);
            if let Some(micro) = client_micro {
                e["cost_usd"] = json!(*micro as f64 / 1e6);
            }
            if seen.insert(*id) {
                // The first event with an id counts; later ones are duplicates.
                calls_n += 1;
                input += total_in - cached;
                cache_read += cached;
                output += out;
                match (client_micro, *m) {
                    (Some(micro), _) => cost += micro * 1_000_000,
                    (None, 2) => unpriced += 1,
                    // No cache-read price: cache reads bill at the input rate.
                    (None, m) => cost += cost_of(models[m], *total_in, *out),
                }
            }
            bodies.push(e);
        }
        let cut = split.min(bodies.len());
        for part in [&bodies[..cut], &bodies[cut..]] {
            if part.is_empty() {
                continue;
            }
            let reply = events(&app, &key, Value::Array(part.to_vec())).await;
            prop_assert_eq!(reply.status, 200, "{}", reply.text());
        }
        // The usage API from the rollups (no conversation) and from raw calls (conversation).
        for query in [
            "group_by=",
            "group_by=model,operation,day",
            "group_by=conversation",
        ] {
            let answer = usage(&app, &key, query).await;
            let t = &answer["totals"];
            prop_assert_eq!(&t["calls"], &json!(calls_n), "{}: {}", query, answer);
            prop_assert_eq!(&t["tokens"]["input"], &json!(input), "{}", query);
            prop_assert_eq!(&t["tokens"]["cache_read"], &json!(cache_read), "{}", query);
            prop_assert_eq!(&t["tokens"]["output"], &json!(output), "{}", query);
            prop_assert_eq!(&t["cost_picodollars"], &json!(cost), "{}", query);
            prop_assert_eq!(&t["unpriced_calls"], &json!(unpriced), "{}", query);
        }
        // The Prometheus counters, through the tenant's own scrape.
        let text = app.get("/api/v1/metrics", Some(&key)).await.text();
        let tid = format!("tenant_id=\"{}\"", tenant.id);
        let int = |v: &str| v.parse::<f64>().unwrap() as u64;
        prop_assert_eq!(
            sum_samples(&text, "model_api_calls_total", &tid, int),
            calls_n
        );
        for (token_type, want) in [
            ("input", input),
            ("output", output),
            ("cache_read", cache_read),
        ] {
            let filter = format!("token_type=\"{token_type}\"");
            let got = sum_samples(&text, "model_api_tokens_total", &filter, int);
            prop_assert_eq!(got, want, "{}", token_type);
        }
        let cents = sum_samples(
            &text,
            "model_api_cost_cents_total",
            &tid,
            cents_text_to_picodollars,
        );
        prop_assert_eq!(cents, cost, "{}", text);
        app.cleanup().await;
        Ok(())
    })
}

fn cost_of(model: &str, input: u64, output: u64) -> u64 {
    cost(model, input, output)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// For any set of events (repeated ids included, in one or two requests), the usage API's
    /// totals (from the rollups and from the raw calls), and the Prometheus counters agree
    /// with the events to the unit; a repeated id changes nothing.
    #[test]
    fn usage_rollups_and_counters_agree_exactly(
        calls in prop::collection::vec(
            (0usize..3, 0u64..50_000, 0u64..20_000, 0u64..10_000,
             prop::option::weighted(0.2, 0u64..5_000_000), 0usize..12),
            1..30,
        ),
        split in 0usize..30,
    ) {
        exactness_case(&calls, split)?;
    }
}
