//! `signalbox loadtest --scenario llm-ingest`: how many model calls per second the server
//! stores, through OTLP/HTTP protobuf, OTLP/HTTP JSON or the JSON event API.
//!
//! Every request carries `--batch` new model calls (unique trace and span ids, so nothing is
//! a duplicate), each a GenAI `chat` span or `model_call` event over a few providers, models
//! and conversations. Payloads are built before the clock starts, so the figure is the
//! server's, not the generator's: each connection keeps one decoded template and only
//! rewrites the ids before encoding (a few percent of the server's work per call). Only 2xx
//! answers with nothing rejected count as stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{json, Value};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// The wire format of an `llm-ingest` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestFormat {
    /// `POST /v1/traces`, `application/x-protobuf`.
    OtlpProtobuf,
    /// `POST /v1/traces`, `application/json`.
    OtlpJson,
    /// `POST /api/v1/llm/events`, a JSON array of `model_call` events.
    Events,
}

pub struct IngestPlan {
    pub base: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connections: usize,
    pub duration: Duration,
    pub batch: usize,
    pub format: IngestFormat,
}

const PROVIDERS: [(&str, &str); 4] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
];

fn now_nanos() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A request body kept decoded, so that each request only rewrites ids and re-encodes.
enum Template {
    Otlp(ExportTraceServiceRequest, bool),
    Events(Vec<Value>),
}

impl Template {
    fn new(format: IngestFormat, batch: usize) -> anyhow::Result<Template> {
        let start = now_nanos();
        if format == IngestFormat::Events {
            let time = time::OffsetDateTime::from_unix_timestamp_nanos(start as i128)?
                .format(&time::format_description::well_known::Rfc3339)?;
            let events = (0..batch as u64)
                .map(|n| {
                    let (provider, model) = PROVIDERS[(n % 4) as usize];
                    json!({"type": "model_call", "id": "", "time": time,
                           "provider": provider, "model": model, "operation": "chat",
                           "conversation_id": format!("conv-{}", n % 1000),
                           "duration_ms": 250 + n % 1000, "input_tokens": 100 + n % 900,
                           "output_tokens": 20 + n % 300, "status": "success"})
                })
                .collect();
            return Ok(Template::Events(events));
        }
        let spans: Vec<Span> = (0..batch as u64)
            .map(|n| {
                let (provider, model) = PROVIDERS[(n % 4) as usize];
                let text = |s: &str| any_value::Value::StringValue(s.to_owned());
                Span {
                    trace_id: vec![0; 16],
                    span_id: vec![0; 8],
                    name: format!("chat {model}"),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 250_000_000 + (n % 1000) * 1_000_000,
                    attributes: vec![
                        kv("gen_ai.operation.name", text("chat")),
                        kv("gen_ai.provider.name", text(provider)),
                        kv("gen_ai.request.model", text(model)),
                        kv("gen_ai.response.model", text(model)),
                        kv(
                            "gen_ai.conversation.id",
                            text(&format!("conv-{}", n % 1000)),
                        ),
                        kv(
                            "gen_ai.usage.input_tokens",
                            any_value::Value::IntValue(100 + (n % 900) as i64),
                        ),
                        kv(
                            "gen_ai.usage.output_tokens",
                            any_value::Value::IntValue(20 + (n % 300) as i64),
                        ),
                    ],
                    status: Some(Status::default()),
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("signalbox-loadtest".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "signalbox.loadtest".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Ok(Template::Otlp(request, format == IngestFormat::OtlpJson))
    }

    /// The body with ids made from `run` and `request`.
    fn encode(&mut self, run: u64, request: u64) -> anyhow::Result<Bytes> {
        match self {
            Template::Events(events) => {
                for (n, event) in events.iter_mut().enumerate() {
                    event["id"] = Value::String(format!("load-{run:x}-{request:x}-{n}"));
                }
                Ok(Bytes::from(serde_json::to_vec(events)?))
            }
            Template::Otlp(request_body, json) => {
                for scope in request_body
                    .resource_spans
                    .iter_mut()
                    .flat_map(|r| r.scope_spans.iter_mut())
                {
                    for (n, span) in scope.spans.iter_mut().enumerate() {
                        span.trace_id[..8].copy_from_slice(&run.to_be_bytes());
                        span.trace_id[8..].copy_from_slice(&request.to_be_bytes());
                        span.span_id.copy_from_slice(&(n as u64 + 1).to_be_bytes());
                    }
                }
                Ok(if *json {
                    Bytes::from(serde_json::to_vec(request_body)?)
                } else {
                    Bytes::from(request_body.encode_to_vec())
                })
            }
        }
    }
}

async fn connect(base: &Uri) -> anyhow::Result<Sender> {
    let authority = base
        .authority()
        .context("url: no host")?
        .as_str()
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("url: cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub async fn run(plan: IngestPlan) -> anyhow::Result<Value> {
    if plan.connections == 0 || plan.batch == 0 || plan.batch > 10_000 {
        bail!("batch: must be 1 to 10000 calls per request");
    }
    let (path, content_type) = match plan.format {
        IngestFormat::OtlpProtobuf => ("/v1/traces", "application/x-protobuf"),
        IngestFormat::OtlpJson => ("/v1/traces", "application/json"),
        IngestFormat::Events => ("/api/v1/llm/events", "application/json"),
    };
    let run = u64::from_be_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into()?);
    let plan = Arc::new(plan);
    let stored = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut tasks = Vec::new();
    for c in 0..plan.connections {
        let (plan, stored, failed) = (plan.clone(), stored.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&plan.base).await?;
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
            let authority = plan
                .base
                .authority()
                .map(|a| a.as_str())
                .unwrap_or("")
                .to_owned();
            let mut template = Template::new(plan.format, plan.batch)?;
            let mut request_no = 0u64;
            while Instant::now() < deadline {
                // Ids: run, connection, request and position, so no call repeats.
                let body = template.encode(run, ((c as u64) << 40) | request_no)?;
                request_no += 1;
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(http::header::HOST, &authority)
                    .header(http::header::CONTENT_TYPE, content_type);
                for (k, v) in &plan.headers {
                    req = req.header(k, v);
                }
                let sent_at = Instant::now();
                // A server closes the connection after refusing a request whose body it did
                // not read (a 429, say): open another and go on.
                if sender.ready().await.is_err() {
                    sender = connect(&plan.base).await?;
                    sender.ready().await?;
                }
                let resp = sender.send_request(req.body(Full::new(body))?).await?;
                let status = resp.status();
                let reply = resp.into_body().collect().await?.to_bytes();
                latencies
                    .record(u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX))?;
                if status.is_success() && !rejected_any(plan.format, &reply) {
                    stored.fetch_add(plan.batch as u64, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if failed.load(Ordering::Relaxed) == 1 {
                        eprintln!(
                            "loadtest: first refused request: {status} {}",
                            String::from_utf8_lossy(&reply)
                        );
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    for t in tasks {
        latencies.add(t.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "format": format!("{:?}", plan.format),
        "batch": plan.batch,
        "connections": plan.connections,
        "seconds": elapsed,
        "requests": latencies.len(),
        "failed_requests": failed.load(Ordering::Relaxed),
        "calls_stored_per_s": stored.load(Ordering::Relaxed) as f64 / elapsed,
        "request_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": latencies.max() as f64 / 1000.0},
    }))
}

/// Whether a 2xx answer still reports rejected items (OTLP partial success or the event
/// API's `rejected` list).
fn rejected_any(format: IngestFormat, reply: &[u8]) -> bool {
    match format {
        IngestFormat::OtlpProtobuf => {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                reply,
            )
            .map(|r| r.partial_success.is_some_and(|p| p.rejected_spans > 0))
            .unwrap_or(true)
        }
        _ => serde_json::from_slice::<Value>(reply)
            .map(|v| {
                v["rejected"].as_array().is_some_and(|a| !a.is_empty())
                    || v["partialSuccess"]["rejectedSpans"].as_i64().unwrap_or(0) > 0
                    || v["partialSuccess"]["rejectedSpans"]
                        .as_str()
                        .is_some_and(|s| s != "0")
            })
            .unwrap_or(true),
    }
}
