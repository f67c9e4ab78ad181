//! The per-call CPU cost of ingest in the `llm` crate: reading a JSON event, reading an
//! OpenTelemetry span, and pricing a call against the shipped table. The ingest goal is 50,000
//! model calls/s on 2 cores, so each step must stay far below 20 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llm::event::{parse_json_event, validate};
use llm::genai::{read_span, AttrValue, SpanView};
use llm::price::{PriceTable, Pricing};
use llm::TokenCounts;

/// 2025-12-04T10:00:00Z
const NOW: i64 = 1_764_842_400_000;

const EVENT: &str = r#"{"type": "model_call", "id": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
  "time": "2025-12-04T09:59:58.120Z", "provider": "openai", "model": "gpt-4o-2024-08-06",
  "operation": "chat", "conversation_id": "conv_5j66UpCpwteGg4YSxUnt7lPY", "duration_ms": 812.5,
  "input_tokens": 1200, "cache_read_tokens": 1024, "output_tokens": 310, "reasoning_tokens": 0}"#;

struct Span {
    attrs: Vec<(&'static str, AttrValue<'static>)>,
}

impl SpanView for Span {
    fn trace_id(&self) -> &[u8] {
        &[
            0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
            0x31, 0x9c,
        ]
    }
    fn span_id(&self) -> &[u8] {
        &[0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
    }
    fn name(&self) -> &str {
        "chat gpt-4o"
    }
    fn start_unix_nanos(&self) -> u64 {
        NOW as u64 * 1_000_000 - 2_000_000_000
    }
    fn end_unix_nanos(&self) -> u64 {
        NOW as u64 * 1_000_000 - 1_187_500_000
    }
    fn status_is_error(&self) -> bool {
        false
    }
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

fn ingest(c: &mut Criterion) {
    c.bench_function("json event: parse + validate", |b| {
        b.iter(|| validate(parse_json_event(black_box(EVENT)).unwrap(), NOW).unwrap())
    });

    let span = Span {
        attrs: vec![
            ("gen_ai.operation.name", AttrValue::Str("chat")),
            ("gen_ai.provider.name", AttrValue::Str("openai")),
            ("gen_ai.request.model", AttrValue::Str("gpt-4o")),
            ("gen_ai.response.model", AttrValue::Str("gpt-4o-2024-08-06")),
            (
                "gen_ai.conversation.id",
                AttrValue::Str("conv_5j66UpCpwteGg4YSxUnt7lPY"),
            ),
            ("gen_ai.usage.input_tokens", AttrValue::Int(1200)),
            ("gen_ai.usage.output_tokens", AttrValue::Int(310)),
            ("gen_ai.usage.cache_read.input_tokens", AttrValue::Int(1024)),
            ("server.address", AttrValue::Str("api.openai.com")),
            ("http.response.status_code", AttrValue::Int(200)),
        ],
    };
    c.bench_function("otel span: read_span", |b| {
        b.iter(|| read_span(black_box(&span), NOW))
    });

    let defaults = PriceTable::shipped();
    let overrides = PriceTable::default();
    let pricing = Pricing {
        defaults: &defaults,
        overrides: &overrides,
        use_defaults: true,
    };
    let tokens = TokenCounts {
        input: 176,
        cache_read: 1024,
        output: 310,
        ..TokenCounts::default()
    };
    c.bench_function("price: dated model, shipped table", |b| {
        b.iter(|| {
            pricing
                .cost(
                    black_box("openai"),
                    black_box("gpt-4o-2024-08-06"),
                    NOW,
                    &tokens,
                )
                .unwrap()
        })
    });
    c.bench_function("price: unpriced model, shipped table", |b| {
        b.iter(|| {
            pricing.cost(
                black_box("az.ai.openai"),
                black_box("my-deployment"),
                NOW,
                &tokens,
            )
        })
    });
}

criterion_group!(benches, ingest);
criterion_main!(benches);
