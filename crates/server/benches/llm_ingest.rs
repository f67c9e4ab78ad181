//! LLM ingest speed through the whole application (router, auth, decoding, validation,
//! pricing, one SQLite transaction per request, metrics), against its CPU-only peer: decoding
//! the same OTLP protobuf body and reading its spans, with no HTTP and no store.
//!
//! Each request carries 1,000 new model calls (fresh ids every iteration, so every call is
//! priced, stored and counted); throughput is model calls per second.
//!
//! ```text
//! cargo bench -p server --bench llm_ingest
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use server::{AppState, ServerConfig};
use store::testing::TestStore;
use store::{Backend, Scope, Scopes, Tier};
use tower::ServiceExt;

/// Model calls per request.
const BATCH: u64 = 1_000;
const MODELS: [&str; 4] = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "claude-haiku-4-5",
];

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A request of `BATCH` GenAI chat spans whose ids start at `first`.
fn otlp_request(first: u64) -> ExportTraceServiceRequest {
    let start = now_ns() - 60_000_000_000;
    let spans = (first..first + BATCH)
        .map(|n| {
            let model = MODELS[(n % MODELS.len() as u64) as usize];
            let provider = if model.starts_with("gpt") {
                "openai"
            } else {
                "anthropic"
            };
            Span {
                trace_id: [n.to_be_bytes(), 7u64.to_be_bytes()].concat(),
                span_id: n.to_be_bytes().to_vec(),
                name: format!("chat {model}"),
                kind: 3,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 400_000_000 + n % 1000 * 1_000_000,
                attributes: vec![
                    kv(
                        "gen_ai.operation.name",
                        any_value::Value::StringValue("chat".into()),
                    ),
                    kv(
                        "gen_ai.provider.name",
                        any_value::Value::StringValue(provider.into()),
                    ),
                    kv(
                        "gen_ai.request.model",
                        any_value::Value::StringValue(model.into()),
                    ),
                    kv(
                        "gen_ai.conversation.id",
                        any_value::Value::StringValue(format!("conv-{}", n / 8)),
                    ),
                    kv(
                        "gen_ai.usage.input_tokens",
                        any_value::Value::IntValue(1200),
                    ),
                    kv(
                        "gen_ai.usage.output_tokens",
                        any_value::Value::IntValue(300),
                    ),
                    kv(
                        "gen_ai.usage.cache_read.input_tokens",
                        any_value::Value::IntValue(1024),
                    ),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("chatbot".into()),
                )],
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

/// A JSON array of `BATCH` model-call events whose ids start at `first`.
fn events_body(first: u64) -> String {
    let time = server::rfc3339_ms((now_ns() / 1_000_000) as i64 - 60_000);
    let events: Vec<serde_json::Value> = (first..first + BATCH)
        .map(|n| {
            serde_json::json!({
                "type": "model_call", "id": format!("e{n}"), "time": time,
                "provider": "openai", "model": MODELS[(n % 2) as usize], "operation": "chat",
                "conversation_id": format!("conv-{}", n / 8), "duration_ms": 420,
                "input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 1024,
            })
        })
        .collect();
    serde_json::Value::Array(events).to_string()
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    key: String,
    _fixture: TestStore,
    _events: tempfile::TempDir,
}

fn setup() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (router, key, fixture, events) = runtime.block_on(async {
        let fixture = TestStore::new(Backend::Sqlite).await;
        let tenant = fixture
            .store
            .create_tenant("bench", Tier::Enterprise)
            .await
            .expect("tenant");
        let key = fixture
            .store
            .issue_api_key(
                &tenant.id,
                [Scope::Write].into_iter().collect::<Scopes>(),
                None,
            )
            .await
            .expect("key");
        let events = tempfile::tempdir().expect("temp dir");
        let log = stream::EventLog::open_file(events.path(), Default::default())
            .await
            .expect("event log");
        let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
        let mut config = ServerConfig::default();
        // The bench measures ingest, not the shipped rate limits.
        config.rate_limits.config = None;
        let state = AppState::new(fixture.store.clone(), metrics, config, log).expect("state");
        (server::app(state), key.secret, fixture, events)
    });
    Bench {
        runtime,
        router,
        key,
        _fixture: fixture,
        _events: events,
    }
}

impl Bench {
    fn post(&self, path: &str, content_type: &str, body: Vec<u8>) {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let response = self
            .runtime
            .block_on(self.router.clone().oneshot(req))
            .expect("infallible");
        assert_eq!(response.status(), 200, "{path}");
    }
}

fn llm_ingest(c: &mut Criterion) {
    let bench = setup();
    // Ids start at 1: an all-zero span id is invalid.
    let next = AtomicU64::new(1);
    let mut group = c.benchmark_group("llm_ingest");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    // The peer: what decoding and reading the spans alone costs on one core.
    let body = otlp_request(1).encode_to_vec();
    group.bench_function("otlp_protobuf_decode_and_read", |b| {
        b.iter(|| {
            let request = ExportTraceServiceRequest::decode(&body[..]).expect("decode");
            let mut calls = 0;
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        let view = server::llm::otlp::OtlpSpan {
                            span,
                            resource: &[],
                        };
                        if let llm::genai::SpanReading::ModelCall(_) =
                            llm::genai::read_span(&view, (now_ns() / 1_000_000) as i64)
                        {
                            calls += 1;
                        }
                    }
                }
            }
            assert_eq!(calls, BATCH);
        })
    });

    group.bench_function("otlp_protobuf_http_sqlite", |b| {
        b.iter_custom(|iters| {
            let bodies: Vec<Vec<u8>> = (0..iters)
                .map(|_| otlp_request(next.fetch_add(BATCH, Ordering::Relaxed)).encode_to_vec())
                .collect();
            let started = Instant::now();
            for body in bodies {
                bench.post("/v1/traces", "application/x-protobuf", body);
            }
            started.elapsed()
        })
    });

    group.bench_function("events_json_http_sqlite", |b| {
        b.iter_custom(|iters| {
            let bodies: Vec<Vec<u8>> = (0..iters)
                .map(|_| events_body(next.fetch_add(BATCH, Ordering::Relaxed)).into_bytes())
                .collect();
            let started = Instant::now();
            for body in bodies {
                bench.post("/api/v1/llm/events", "application/json", body);
            }
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, llm_ingest);
criterion_main!(benches);
