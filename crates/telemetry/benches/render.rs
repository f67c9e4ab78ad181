//! `/metrics` render time with 100 tenants × 20 models, every LLM family populated (seed 003's
//! goal: under 20 ms), in both exposition formats, and one tenant's scrape.
//!
//! `cargo bench -p telemetry --bench render`; after criterion's report, the medians of 51
//! further renders of each are printed, with the exposition's size.

use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use llm::{
    event::Direction, CallStatus, ConversationCompleted, ConversationStarted, Cost,
    IntegrationCall, LlmEvent, MessageProcessed, ModelCall, Operation, TokenCounts,
};
use telemetry::{EventOutcome, Format, Metrics, MetricsConfig, SpanOutcome};

const TENANTS: usize = 100;
const MODELS: usize = 20;

fn populated() -> Metrics {
    let metrics = Metrics::new(MetricsConfig {
        tenant_label_limit: TENANTS,
        ..MetricsConfig::default()
    });
    let llm = metrics.llm();
    for t in 0..TENANTS {
        let tenant = format!("tn_{t:03}");
        for m in 0..MODELS {
            for (i, status) in [CallStatus::Success, CallStatus::Error]
                .into_iter()
                .enumerate()
            {
                let call = ModelCall {
                    id: format!("{t}-{m}-{i}"),
                    time_ms: 0,
                    provider: ["openai", "anthropic", "google", "mistral"][m % 4].to_owned(),
                    model: format!("model-{m:02}"),
                    operation: if m % 5 == 4 {
                        Operation::Embeddings
                    } else {
                        Operation::Chat
                    },
                    conversation_id: None,
                    duration_us: 400_000 + (m as u64) * 150_000,
                    tokens: TokenCounts {
                        input: 1_000 + m as u64,
                        output: 200,
                        cache_read: 300,
                        cache_write: 50,
                        reasoning: 20,
                    },
                    status,
                    error_type: (status == CallStatus::Error).then(|| "timeout".to_owned()),
                    client_cost: None,
                    // One model in ten has no price: the unpriced series too.
                    computed_cost: (m % 10 != 9).then(|| Cost::from_picodollars(123_456_789)),
                };
                llm.record_model_call(&tenant, &call);
            }
        }
        for channel in ["web", "sms", "voice"] {
            let started = LlmEvent::ConversationStarted(ConversationStarted {
                id: format!("{tenant}-{channel}-s"),
                time_ms: 0,
                conversation_id: channel.to_owned(),
                channel: channel.to_owned(),
            });
            let completed = LlmEvent::ConversationCompleted(ConversationCompleted {
                id: format!("{tenant}-{channel}-c"),
                time_ms: 1,
                conversation_id: channel.to_owned(),
                channel: channel.to_owned(),
                resolution_status: "resolved".to_owned(),
            });
            llm.record_event(&tenant, &started);
            llm.record_event(&tenant, &completed);
            for direction in [Direction::Inbound, Direction::Outbound] {
                let message = LlmEvent::MessageProcessed(MessageProcessed {
                    id: format!("{tenant}-{channel}-m"),
                    time_ms: 0,
                    conversation_id: None,
                    channel: channel.to_owned(),
                    direction,
                    message_type: "text".to_owned(),
                });
                llm.record_event(&tenant, &message);
            }
        }
        for i in 0..3 {
            let call = LlmEvent::IntegrationCall(IntegrationCall {
                id: format!("{tenant}-i{i}"),
                time_ms: 0,
                conversation_id: None,
                integration_id: format!("integration-{i}"),
                integration_type: "crm".to_owned(),
                status: CallStatus::Success,
                duration_us: 250_000,
            });
            llm.record_event(&tenant, &call);
        }
        for outcome in [
            SpanOutcome::ModelCall,
            SpanOutcome::NotGenAi,
            SpanOutcome::Rejected,
            SpanOutcome::Duplicate,
        ] {
            llm.record_span_outcome(&tenant, outcome, 10);
        }
        for outcome in [
            EventOutcome::Accepted,
            EventOutcome::Duplicate,
            EventOutcome::Rejected,
        ] {
            llm.record_event_outcome(&tenant, "model_call", outcome, 5);
        }
        llm.set_budget(&tenant, 0.85, &[50, 80]);
    }
    metrics
}

fn median(mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(51);
    let mut size = 0;
    for _ in 0..51 {
        let started = Instant::now();
        size = black_box(f());
        times.push(started.elapsed());
    }
    times.sort_unstable();
    (times[times.len() / 2], size)
}

fn main() {
    let metrics = populated();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    let mut group = c.benchmark_group("metrics_render_100_tenants_20_models");
    group.bench_function("openmetrics", |b| b.iter(|| metrics.encode().len()));
    group.bench_function("text_0.0.4", |b| {
        b.iter(|| metrics.encode_as(Format::Text004).len())
    });
    group.bench_function("tenant_scrape", |b| {
        b.iter(|| metrics.encode_tenant("tn_050", Format::OpenMetrics).len())
    });
    group.finish();
    c.final_summary();

    for (name, format) in [
        ("openmetrics", Format::OpenMetrics),
        ("text_0.0.4", Format::Text004),
    ] {
        let (t, size) = median(|| metrics.encode_as(format).len());
        println!(
            "median {name}: {:.2} ms ({size} bytes)",
            t.as_secs_f64() * 1e3
        );
    }
    let (t, size) = median(|| metrics.encode_tenant("tn_050", Format::OpenMetrics).len());
    println!(
        "median tenant_scrape: {:.2} ms ({size} bytes)",
        t.as_secs_f64() * 1e3
    );
}
