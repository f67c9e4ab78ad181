//! Seed 003's chatbot and model-call series, the OpenTelemetry GenAI client metrics, ingest
//! accounting and budgets. Reach them through [`crate::Metrics::llm`]; the catalogue (names,
//! labels, buckets, deviations from the seed) is in `docs/metrics.md`.
//!
//! Every family carries `tenant_id` behind the tenant guard. Label values a client chooses
//! (provider, model, channel, resolution_status, message_type, integration_id,
//! integration_type, error_type) each pass through their own [`crate::LabelGuard`]: the first N
//! distinct values keep their name, later ones share `other` ([`crate::MetricsConfig`] sets N).
//!
//! ```
//! use telemetry::{Metrics, MetricsConfig};
//! use llm::{CallStatus, Cost, ModelCall, Operation, TokenCounts};
//! let metrics = Metrics::new(MetricsConfig::default());
//! let call = ModelCall {
//!     id: "c1".into(), time_ms: 0, provider: "openai".into(), model: "gpt-4o".into(),
//!     operation: Operation::Chat, conversation_id: None, duration_us: 1_200_000,
//!     tokens: TokenCounts { input: 100, output: 20, ..Default::default() },
//!     status: CallStatus::Success, error_type: None, client_cost: None,
//!     computed_cost: Some(Cost::from_picodollars(2_500_000_000)),
//! };
//! metrics.llm().record_model_call("tn_1", &call);
//! let text = metrics.encode();
//! assert!(text.contains(r#"model_api_cost_cents_total{provider="openai",model="gpt-4o",tenant_id="tn_1"} 0.25"#));
//! assert!(text.contains(r#"model_api_tokens_total{provider="openai",model="gpt-4o",tenant_id="tn_1",token_type="input"} 100"#));
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use llm::{CallStatus, LlmEvent, ModelCall};

use crate::llm_calls::ModelCalls;
use crate::{Buckets, MetricsConfig, TenantLabels};

/// Seed 003's `model_api_duration_seconds` buckets.
pub const MODEL_DURATION_BUCKETS: [f64; 7] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// Seed 003's `integration_duration_seconds` buckets.
pub const INTEGRATION_DURATION_BUCKETS: [f64; 7] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The OpenTelemetry GenAI semantic conventions' advised buckets for
/// `gen_ai.client.token.usage`: powers of 4 from 1 to 4¹³ = 67,108,864.
pub const GENAI_TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The OpenTelemetry GenAI semantic conventions' advised buckets for
/// `gen_ai.client.operation.duration`, in seconds (doubling from 10 ms).
pub const GENAI_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The `error_type` of a failed call that named no error class (the conventions' fallback).
pub const OTHER_ERROR: &str = "_OTHER";

/// What became of one OTLP span at ingest, the `outcome` of `otlp_spans_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanOutcome {
    /// A GenAI span, stored as a model call.
    ModelCall,
    /// No GenAI operation: counted and dropped.
    NotGenAi,
    /// A malformed GenAI span.
    Rejected,
    /// A span whose id was stored already.
    Duplicate,
}

impl SpanOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanOutcome::ModelCall => "model_call",
            SpanOutcome::NotGenAi => "not_genai",
            SpanOutcome::Rejected => "rejected",
            SpanOutcome::Duplicate => "duplicate",
        }
    }
}

/// What became of one JSON event at ingest, the `outcome` of `llm_events_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    Accepted,
    /// An event whose id was stored already.
    Duplicate,
    Rejected,
}

impl EventOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Rejected => "rejected",
        }
    }
}

/// The event types of the JSON event API; `event_type` of an event that could not be read
/// is `unknown`.
pub const EVENT_TYPES: [&str; 5] = [
    "conversation_started",
    "conversation_completed",
    "message_processed",
    "model_call",
    "integration_call",
];

/// The `event_type` label value of an event.
pub fn event_type(event: &LlmEvent) -> &'static str {
    match event {
        LlmEvent::ConversationStarted(_) => EVENT_TYPES[0],
        LlmEvent::ConversationCompleted(_) => EVENT_TYPES[1],
        LlmEvent::MessageProcessed(_) => EVENT_TYPES[2],
        LlmEvent::ModelCall(_) => EVENT_TYPES[3],
        LlmEvent::IntegrationCall(_) => EVENT_TYPES[4],
    }
}

/// A gauge exposed with type `unknown` (`untyped` in the 0.0.4 text), for the seed's
/// `conversations_active_total`: `promtool check metrics` rejects a *gauge* whose name ends in
/// `_total` but accepts an untyped one, and PromQL treats both alike.
#[derive(Debug, Clone, Default)]
pub(crate) struct UntypedGauge(Gauge);

impl TypedMetric for UntypedGauge {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UntypedGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    tenant_id: String,
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompletedLabels {
    tenant_id: String,
    channel: String,
    resolution_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    tenant_id: String,
    channel: String,
    direction: &'static str,
    message_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationStatusLabels {
    tenant_id: String,
    integration_id: String,
    integration_type: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    tenant_id: String,
    integration_id: String,
    integration_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    tenant_id: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    tenant_id: String,
    event_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOnly {
    tenant_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThresholdLabels {
    tenant_id: String,
    threshold: String,
}

/// One guard per client-chosen label.
#[derive(Debug)]
struct Guards {
    provider: TenantLabels,
    model: TenantLabels,
    channel: TenantLabels,
    resolution_status: TenantLabels,
    message_type: TenantLabels,
    integration_id: TenantLabels,
    integration_type: TenantLabels,
    error_type: TenantLabels,
}

/// The LLM series; reach them through [`crate::Metrics::llm`].
#[derive(Debug)]
pub struct LlmMetrics {
    conversations_active: Family<ChannelLabels, UntypedGauge>,
    conversations_started: Family<ChannelLabels, Counter>,
    conversations_completed: Family<CompletedLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    /// The model-call families (`model_api_*`, `gen_ai_client_*`), written by
    /// [`crate::Metrics::encode`] itself (module `llm_calls`).
    pub(crate) calls: ModelCalls,
    integration_calls: Family<IntegrationStatusLabels, Counter>,
    integration_durations: Family<IntegrationLabels, Histogram, Buckets>,
    spans: Family<SpanLabels, Counter>,
    events: Family<EventLabels, Counter>,
    budget_ratio: Family<TenantOnly, Gauge<f64, AtomicU64>>,
    budget_reached: Family<ThresholdLabels, Gauge>,
    /// The thresholds each tenant label has a `llm_budget_threshold_reached` series for, so a
    /// new period can set them back to 0.
    budget_thresholds: Mutex<HashMap<String, BTreeSet<u8>>>,
    guards: Guards,
}

impl LlmMetrics {
    pub(crate) fn register(registry: &mut Registry, config: &MetricsConfig) -> LlmMetrics {
        let m = LlmMetrics {
            conversations_active: Family::default(),
            conversations_started: Family::default(),
            conversations_completed: Family::default(),
            messages: Family::default(),
            calls: ModelCalls::default(),
            integration_calls: Family::default(),
            integration_durations: Family::new_with_constructor(Buckets(
                &INTEGRATION_DURATION_BUCKETS,
            )),
            spans: Family::default(),
            events: Family::default(),
            budget_ratio: Family::default(),
            budget_reached: Family::default(),
            budget_thresholds: Mutex::new(HashMap::new()),
            guards: Guards {
                provider: TenantLabels::new(config.provider_label_limit),
                model: TenantLabels::new(config.model_label_limit),
                channel: TenantLabels::new(config.label_limit),
                resolution_status: TenantLabels::new(config.label_limit),
                message_type: TenantLabels::new(config.label_limit),
                integration_id: TenantLabels::new(config.label_limit),
                integration_type: TenantLabels::new(config.label_limit),
                error_type: TenantLabels::new(config.label_limit),
            },
        };
        // The seed names this gauge `…_total`; kept for its dashboards, and untyped so that
        // promtool's lint accepts the name (see docs/metrics.md).
        registry.register(
            "conversations_active_total",
            "Conversations started and not yet completed (a gauge despite the seed's name; exposed untyped)",
            m.conversations_active.clone(),
        );
        registry.register(
            "conversations_started",
            "Total conversations started",
            m.conversations_started.clone(),
        );
        registry.register(
            "conversations_completed",
            "Total conversations completed",
            m.conversations_completed.clone(),
        );
        registry.register(
            "messages_processed",
            "Total messages processed",
            m.messages.clone(),
        );
        registry.register(
            "integration_calls",
            "Total integration calls",
            m.integration_calls.clone(),
        );
        registry.register(
            "integration_duration_seconds",
            "Integration call duration in seconds",
            m.integration_durations.clone(),
        );
        registry.register(
            "otlp_spans_received",
            "OTLP spans received, by outcome (model_call, not_genai, rejected, duplicate)",
            m.spans.clone(),
        );
        registry.register(
            "llm_events_received",
            "LLM events received on the event API, by type and outcome (accepted, duplicate, rejected)",
            m.events.clone(),
        );
        registry.register(
            "llm_budget_spent_ratio",
            "This month's LLM spend divided by the monthly budget",
            m.budget_ratio.clone(),
        );
        registry.register(
            "llm_budget_threshold_reached",
            "1 once this month's LLM spend crossed the threshold (percent of the budget)",
            m.budget_reached.clone(),
        );
        m
    }
}

/// Records LLM series for a tenant; see [`crate::Metrics::llm`].
#[derive(Debug, Clone, Copy)]
pub struct LlmRecorder<'a> {
    pub(crate) metrics: &'a LlmMetrics,
    pub(crate) tenants: &'a TenantLabels,
}

impl LlmRecorder<'_> {
    /// Records one stored model call: its call count, duration, tokens by exclusive type, cost
    /// (or an unpriced call when it has none), and the GenAI client histograms. Call it once
    /// per call actually stored (not for duplicates).
    pub fn record_model_call(&self, tenant_id: &str, call: &ModelCall) {
        let g = &self.metrics.guards;
        let error_type = match call.status {
            CallStatus::Success => String::new(),
            CallStatus::Error => match call.error_type.as_deref() {
                Some(e) if !e.is_empty() => guarded(&g.error_type, e),
                _ => OTHER_ERROR.to_owned(),
            },
        };
        self.metrics.calls.record(
            &guarded(self.tenants, tenant_id),
            &guarded(&g.provider, &call.provider),
            &guarded(&g.model, &call.model),
            &error_type,
            call,
        );
    }

    /// Records one stored event of any type (a model call as [`Self::record_model_call`]).
    /// Call it once per event actually stored, not for duplicates, so counters match the store.
    ///
    /// `conversations_active_total` goes up on a start and down on a completion, never below 0
    /// (a completion whose start came before a restart).
    pub fn record_event(&self, tenant_id: &str, event: &LlmEvent) {
        let m = self.metrics;
        let g = &m.guards;
        match event {
            LlmEvent::ModelCall(call) => self.record_model_call(tenant_id, call),
            LlmEvent::ConversationStarted(e) => {
                let labels = ChannelLabels {
                    tenant_id: guarded(self.tenants, tenant_id),
                    channel: guarded(&g.channel, &e.channel),
                };
                m.conversations_started.get_or_create(&labels).inc();
                m.conversations_active.get_or_create(&labels).0.inc();
            }
            LlmEvent::ConversationCompleted(e) => {
                let tenant = guarded(self.tenants, tenant_id);
                let channel = guarded(&g.channel, &e.channel);
                m.conversations_completed
                    .get_or_create(&CompletedLabels {
                        tenant_id: tenant.clone(),
                        channel: channel.clone(),
                        resolution_status: guarded(&g.resolution_status, &e.resolution_status),
                    })
                    .inc();
                let active = m.conversations_active.get_or_create(&ChannelLabels {
                    tenant_id: tenant,
                    channel,
                });
                let _ = active
                    .0
                    .inner()
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some((v - 1).max(0))
                    });
            }
            LlmEvent::MessageProcessed(e) => {
                m.messages
                    .get_or_create(&MessageLabels {
                        tenant_id: guarded(self.tenants, tenant_id),
                        channel: guarded(&g.channel, &e.channel),
                        direction: e.direction.as_str(),
                        message_type: guarded(&g.message_type, &e.message_type),
                    })
                    .inc();
            }
            LlmEvent::IntegrationCall(e) => {
                let tenant = guarded(self.tenants, tenant_id);
                let integration_id = guarded(&g.integration_id, &e.integration_id);
                let integration_type = guarded(&g.integration_type, &e.integration_type);
                m.integration_calls
                    .get_or_create(&IntegrationStatusLabels {
                        tenant_id: tenant.clone(),
                        integration_id: integration_id.clone(),
                        integration_type: integration_type.clone(),
                        status: e.status.as_str(),
                    })
                    .inc();
                m.integration_durations
                    .get_or_create(&IntegrationLabels {
                        tenant_id: tenant,
                        integration_id,
                        integration_type,
                    })
                    .observe(e.duration_us as f64 / 1e6);
            }
        }
    }

    /// Counts `n` OTLP spans of a request by what became of them.
    pub fn record_span_outcome(&self, tenant_id: &str, outcome: SpanOutcome, n: u64) {
        if n == 0 {
            return;
        }
        self.metrics
            .spans
            .get_or_create(&SpanLabels {
                tenant_id: guarded(self.tenants, tenant_id),
                outcome: outcome.as_str(),
            })
            .inc_by(n);
    }

    /// Counts `n` events of `event_type` (one of [`EVENT_TYPES`]; anything else is counted as
    /// `unknown`, e.g. an event too malformed to have a type) by what became of them.
    pub fn record_event_outcome(
        &self,
        tenant_id: &str,
        event_type: &str,
        outcome: EventOutcome,
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        let event_type = EVENT_TYPES
            .into_iter()
            .find(|t| *t == event_type)
            .unwrap_or("unknown");
        self.metrics
            .events
            .get_or_create(&EventLabels {
                tenant_id: guarded(self.tenants, tenant_id),
                event_type,
                outcome: outcome.as_str(),
            })
            .inc_by(n);
    }

    /// Sets a tenant's budget gauges: `spent_ratio` is this month's spend over the budget, and
    /// `reached` the thresholds (percent) the store has recorded as crossed this period. Every
    /// threshold not in `reached` that had a series (or is a default threshold) is set to 0,
    /// so a new period starts clean. Call it at start-up from the store's recorded crossings
    /// and after each budget change or ingest that moves the spend.
    ///
    /// A tenant without a label value of its own (folded into `other`) gets no budget series:
    /// a ratio or a crossing of several tenants' budgets under one label would mean nothing.
    pub fn set_budget(&self, tenant_id: &str, spent_ratio: f64, reached: &[u8]) {
        let m = self.metrics;
        let tenant = guarded(self.tenants, tenant_id);
        if tenant == crate::tenants::OTHER {
            return;
        }
        let ratio = if spent_ratio.is_finite() {
            spent_ratio.max(0.0)
        } else {
            0.0
        };
        m.budget_ratio
            .get_or_create(&TenantOnly {
                tenant_id: tenant.clone(),
            })
            .set(ratio);
        let mut known = m
            .budget_thresholds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let thresholds = known.entry(tenant.clone()).or_default();
        thresholds.extend(llm::budget::DEFAULT_THRESHOLDS);
        thresholds.extend(reached.iter().copied());
        for t in thresholds.iter() {
            let value = i64::from(reached.contains(t));
            m.budget_reached
                .get_or_create(&ThresholdLabels {
                    tenant_id: tenant.clone(),
                    threshold: t.to_string(),
                })
                .set(value);
        }
    }
}

/// `value`'s label value under `guard`, escaped for the exposition.
fn guarded(guard: &TenantLabels, value: &str) -> String {
    crate::tenant_scrape::escape(guard.label(value)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{parse, samples, total, OpenMetricsValue};
    use crate::{Format, Metrics};
    use llm::{
        ConversationCompleted, ConversationStarted, Cost, IntegrationCall, MessageProcessed,
        Operation, TokenCounts, TokenType,
    };
    use proptest::prelude::*;

    fn call(model: &str, tokens: TokenCounts, cost: Option<u64>) -> ModelCall {
        ModelCall {
            id: "c".into(),
            time_ms: 0,
            provider: "openai".into(),
            model: model.into(),
            operation: Operation::Chat,
            conversation_id: None,
            duration_us: 1_500_000,
            tokens,
            status: CallStatus::Success,
            error_type: None,
            client_cost: None,
            computed_cost: cost.map(Cost::from_picodollars),
        }
    }

    /// A family's sample lines (without `_created`), sorted: series order is a hash map's.
    fn lines_of<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(family) && !l.contains("_created"))
            .collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn a_recorded_call_renders_exactly() {
        let m = Metrics::new(MetricsConfig::default());
        let tokens = TokenCounts {
            input: 100,
            output: 20,
            cache_read: 30,
            cache_write: 0,
            reasoning: 5,
        };
        m.llm()
            .record_model_call("tn_a", &call("gpt-4o", tokens, Some(2_500_000_000)));
        let text = m.encode();
        let labels = r#"provider="openai",model="gpt-4o",tenant_id="tn_a""#;
        assert_eq!(
            lines_of(&text, "model_api_calls_total"),
            [format!(
                r#"model_api_calls_total{{{labels},operation_type="chat",status="success"}} 1"#
            )]
        );
        assert_eq!(
            lines_of(&text, "model_api_tokens_total"),
            [
                format!(r#"model_api_tokens_total{{{labels},token_type="cache_read"}} 30"#),
                format!(r#"model_api_tokens_total{{{labels},token_type="input"}} 100"#),
                format!(r#"model_api_tokens_total{{{labels},token_type="output"}} 20"#),
                format!(r#"model_api_tokens_total{{{labels},token_type="reasoning"}} 5"#),
            ]
        );
        assert_eq!(
            lines_of(&text, "model_api_cost_cents_total"),
            [format!(r#"model_api_cost_cents_total{{{labels}}} 0.25"#)]
        );
        assert!(lines_of(&text, "model_api_unpriced_calls_total").is_empty());
        let duration = lines_of(&text, "model_api_duration_seconds");
        let op = r#"operation_type="chat""#;
        for expected in [
            format!(r#"model_api_duration_seconds_sum{{{labels},{op}}} 1.5"#),
            format!(r#"model_api_duration_seconds_count{{{labels},{op}}} 1"#),
            format!(r#"model_api_duration_seconds_bucket{{le="1.0",{labels},{op}}} 0"#),
            format!(r#"model_api_duration_seconds_bucket{{le="2.0",{labels},{op}}} 1"#),
            format!(r#"model_api_duration_seconds_bucket{{le="60.0",{labels},{op}}} 1"#),
            format!(r#"model_api_duration_seconds_bucket{{le="+Inf",{labels},{op}}} 1"#),
        ] {
            assert!(
                duration.contains(&expected.as_str()),
                "{expected} in {duration:#?}"
            );
        }
        assert_eq!(duration.len(), 2 + MODEL_DURATION_BUCKETS.len() + 1);
        // GenAI token usage is inclusive: input 100 + 30 cached, output 20 + 5 reasoning.
        let genai = r#"gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o""#;
        for expected in [
            format!(
                r#"gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type="input",tenant_id="tn_a"}} 130.0"#
            ),
            format!(
                r#"gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type="output",tenant_id="tn_a"}} 25.0"#
            ),
            format!(
                r#"gen_ai_client_operation_duration_seconds_count{{{genai},error_type="",tenant_id="tn_a"}} 1"#
            ),
        ] {
            assert!(text.contains(&expected), "{expected} in\n{text}");
        }
        parse(&text);
    }

    #[test]
    fn cost_in_cents_is_exact_however_many_calls() {
        let m = Metrics::new(MetricsConfig::default());
        // 0.1 cent, three times: a float counter would show 0.30000000000000004.
        for _ in 0..3 {
            m.llm().record_model_call(
                "tn_a",
                &call("m", TokenCounts::default(), Some(Cost::PER_CENT / 10)),
            );
        }
        // A million calls of one picodollar each sum to exactly 1e-4 cents.
        for _ in 0..1_000 {
            m.llm()
                .record_model_call("tn_b", &call("m", TokenCounts::default(), Some(1_000)));
        }
        // A client cost wins over the computed one; no cost at all is counted as unpriced.
        let mut with_client = call("m", TokenCounts::default(), Some(1));
        with_client.client_cost = Some(Cost::from_picodollars(7 * Cost::PER_CENT));
        m.llm().record_model_call("tn_c", &with_client);
        m.llm()
            .record_model_call("tn_c", &call("m", TokenCounts::default(), None));
        let text = m.encode();
        let cost = lines_of(&text, "model_api_cost_cents_total");
        assert!(
            cost.contains(
                &r#"model_api_cost_cents_total{provider="openai",model="m",tenant_id="tn_a"} 0.3"#
            ),
            "{cost:#?}"
        );
        assert!(cost.contains(&r#"model_api_cost_cents_total{provider="openai",model="m",tenant_id="tn_b"} 0.0001"#), "{cost:#?}");
        assert!(
            cost.contains(
                &r#"model_api_cost_cents_total{provider="openai",model="m",tenant_id="tn_c"} 7.0"#
            ),
            "{cost:#?}"
        );
        assert!(text.contains(
            r#"model_api_unpriced_calls_total{provider="openai",model="m",tenant_id="tn_c"} 1"#
        ));
        parse(&text);
    }

    #[test]
    fn client_chosen_labels_fold_to_other_past_their_limit() {
        let m = Metrics::new(MetricsConfig {
            model_label_limit: 2,
            label_limit: 1,
            ..MetricsConfig::default()
        });
        let llm = m.llm();
        for model in ["a", "b", "c", "d", "a"] {
            llm.record_model_call("tn", &call(model, TokenCounts::default(), Some(1)));
        }
        for channel in ["web", "sms", "voice"] {
            llm.record_event(
                "tn",
                &LlmEvent::ConversationStarted(ConversationStarted {
                    id: channel.into(),
                    time_ms: 0,
                    conversation_id: channel.into(),
                    channel: channel.into(),
                }),
            );
        }
        let exp = parse(&m.encode());
        let calls = |model| total(&exp, "model_api_calls", &[("model", model)]);
        assert_eq!(
            (calls("a"), calls("b"), calls("c"), calls(OTHER_MODEL)),
            (Some(2.0), Some(1.0), None, Some(2.0))
        );
        let started = |channel| total(&exp, "conversations_started", &[("channel", channel)]);
        assert_eq!(
            (started("web"), started("sms"), started("other")),
            (Some(1.0), None, Some(2.0))
        );
    }

    const OTHER_MODEL: &str = crate::tenants::OTHER;

    #[test]
    fn hostile_label_values_are_escaped_and_parse() {
        let m = Metrics::new(MetricsConfig::default());
        let model = "evil\",tenant_id=\"tn_victim\"} 1\n\\";
        m.llm().record_model_call(
            "tn_a",
            &call(
                model,
                TokenCounts {
                    input: 3,
                    ..Default::default()
                },
                Some(1),
            ),
        );
        let text = m.encode();
        let exp = parse(&text);
        assert_eq!(
            total(&exp, "model_api_calls", &[("model", model)]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "model_api_calls", &[("tenant_id", "tn_victim")]),
            None
        );
        // The same through a family kept in the registry, whose text the tenant scrape filters.
        let channel = "evil\",tenant_id=\"tn_victim\"} 1\n\\";
        m.llm().record_event(
            "tn_a",
            &LlmEvent::ConversationStarted(ConversationStarted {
                id: "c".into(),
                time_ms: 0,
                conversation_id: "c".into(),
                channel: channel.into(),
            }),
        );
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "conversations_started", &[("channel", channel)]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "conversations_started", &[("tenant_id", "tn_victim")]),
            None
        );
        let own = m.encode_tenant("tn_a", Format::OpenMetrics);
        assert!(own.contains("tenant_id=\"tn_a\""), "{own}");
        m.count_error("x", "llm", Some("tn_victim"));
        let victim = m.encode_tenant("tn_victim", Format::OpenMetrics);
        assert!(victim.contains("tenant_id=\"tn_victim\""), "{victim}");
        assert!(!victim.contains("evil"), "{victim}");
    }

    #[test]
    fn the_tenant_scrape_has_only_that_tenant_and_parses() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 2,
            ..MetricsConfig::default()
        });
        let llm = m.llm();
        for tenant in ["tn_a", "tn_b", "tn_c"] {
            llm.record_model_call(
                tenant,
                &call(
                    "gpt",
                    TokenCounts {
                        input: 10,
                        ..Default::default()
                    },
                    Some(5),
                ),
            );
            llm.record_span_outcome(tenant, SpanOutcome::NotGenAi, 2);
            llm.set_budget(tenant, 0.6, &[50]);
        }
        m.observe_http(&crate::HttpObservation {
            method: "GET",
            endpoint: "/x",
            status: 200,
            tenant_id: Some("tn_a"),
            service: "llm",
            duration: std::time::Duration::from_millis(1),
            request_bytes: 0,
        });
        let text = m.encode_tenant("tn_a", Format::OpenMetrics);
        assert!(!text.contains("tn_b") && !text.contains("other"), "{text}");
        assert!(
            !text.contains("process_"),
            "families without tenant_id are left out"
        );
        let exp = parse(&text);
        assert_eq!(total(&exp, "model_api_tokens", &[]), Some(10.0));
        assert_eq!(
            total(&exp, "otlp_spans_received", &[("outcome", "not_genai")]),
            Some(2.0)
        );
        assert_eq!(
            total(&exp, "llm_budget_threshold_reached", &[("threshold", "50")]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "llm_budget_threshold_reached", &[("threshold", "80")]),
            Some(0.0)
        );
        assert_eq!(total(&exp, "http_requests", &[]), Some(1.0));
        let text004 = m.encode_tenant("tn_a", Format::Text004);
        assert!(
            text004.contains("# TYPE model_api_tokens_total counter"),
            "{text004}"
        );
        assert!(!text004.contains("# EOF") && !text004.contains("tn_b"));
        // tn_c was folded into `other`: it gets nothing rather than other tenants' sums.
        assert_eq!(m.encode_tenant("tn_c", Format::OpenMetrics), "# EOF\n");
        assert_eq!(m.encode_tenant("other", Format::OpenMetrics), "# EOF\n");
        assert_eq!(m.encode_tenant("unknown", Format::Text004), "");
        // Never scraped into existence: a tenant with no series is not admitted by asking.
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        assert_eq!(m.encode_tenant("tn_z", Format::OpenMetrics), "# EOF\n");
        m.llm()
            .record_span_outcome("tn_y", SpanOutcome::Rejected, 1);
        assert!(m
            .encode_tenant("tn_y", Format::OpenMetrics)
            .contains("tn_y"));
    }

    #[test]
    fn events_feed_their_families() {
        let m = Metrics::new(MetricsConfig::default());
        let llm = m.llm();
        let started = |id: &str| {
            LlmEvent::ConversationStarted(ConversationStarted {
                id: id.into(),
                time_ms: 0,
                conversation_id: id.into(),
                channel: "web".into(),
            })
        };
        let completed = |id: &str| {
            LlmEvent::ConversationCompleted(ConversationCompleted {
                id: format!("{id}-done"),
                time_ms: 1,
                conversation_id: id.into(),
                channel: "web".into(),
                resolution_status: "resolved".into(),
            })
        };
        llm.record_event("tn", &started("c1"));
        llm.record_event("tn", &started("c2"));
        llm.record_event("tn", &completed("c1"));
        llm.record_event("tn", &completed("c2"));
        // A completion whose start was before a restart does not take the gauge below 0.
        llm.record_event("tn", &completed("c0"));
        llm.record_event("tn", &started("c3"));
        llm.record_event(
            "tn",
            &LlmEvent::MessageProcessed(MessageProcessed {
                id: "m".into(),
                time_ms: 0,
                conversation_id: None,
                channel: "web".into(),
                direction: llm::event::Direction::Inbound,
                message_type: "text".into(),
            }),
        );
        llm.record_event(
            "tn",
            &LlmEvent::IntegrationCall(IntegrationCall {
                id: "i".into(),
                time_ms: 0,
                conversation_id: None,
                integration_id: "crm-1".into(),
                integration_type: "crm".into(),
                status: CallStatus::Error,
                duration_us: 300_000,
            }),
        );
        llm.record_event_outcome("tn", "model_call", EventOutcome::Duplicate, 3);
        llm.record_event_outcome("tn", "nonsense", EventOutcome::Rejected, 1);
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "conversations_active_total", &[("channel", "web")]),
            Some(1.0)
        );
        assert_eq!(total(&exp, "conversations_started", &[]), Some(3.0));
        assert_eq!(
            total(
                &exp,
                "conversations_completed",
                &[("resolution_status", "resolved")]
            ),
            Some(3.0)
        );
        assert_eq!(
            total(
                &exp,
                "messages_processed",
                &[("direction", "inbound"), ("message_type", "text")]
            ),
            Some(1.0)
        );
        assert_eq!(
            total(
                &exp,
                "integration_calls",
                &[("integration_id", "crm-1"), ("status", "error")]
            ),
            Some(1.0)
        );
        match samples(&exp, "integration_duration_seconds", &[]).first() {
            Some(OpenMetricsValue::Histogram(h)) => {
                let le = |b: f64| {
                    h.buckets
                        .iter()
                        .find(|x| x.upper_bound == b)
                        .map(|x| x.count.as_f64())
                };
                assert_eq!((le(0.1), le(0.5)), (Some(0.0), Some(1.0)));
            }
            other => panic!("expected a histogram, got {other:?}"),
        }
        assert_eq!(
            total(
                &exp,
                "llm_events_received",
                &[("event_type", "model_call"), ("outcome", "duplicate")]
            ),
            Some(3.0)
        );
        assert_eq!(
            total(
                &exp,
                "llm_events_received",
                &[("event_type", "unknown"), ("outcome", "rejected")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn failed_calls_carry_their_error_type_in_the_genai_duration() {
        let m = Metrics::new(MetricsConfig::default());
        let mut failed = call("m", TokenCounts::default(), None);
        failed.status = CallStatus::Error;
        failed.error_type = Some("timeout".into());
        m.llm().record_model_call("tn", &failed);
        failed.error_type = None;
        m.llm().record_model_call("tn", &failed);
        let exp = parse(&m.encode());
        let count = |e: &str| match samples(
            &exp,
            "gen_ai_client_operation_duration_seconds",
            &[("error_type", e)],
        )
        .first()
        {
            Some(OpenMetricsValue::Histogram(h)) => h.count,
            _ => None,
        };
        assert_eq!((count("timeout"), count(OTHER_ERROR)), (Some(1), Some(1)));
        assert_eq!(
            total(&exp, "model_api_calls", &[("status", "error")]),
            Some(2.0)
        );
        assert_eq!(total(&exp, "model_api_unpriced_calls", &[]), Some(2.0));
    }

    #[test]
    fn a_new_budget_period_clears_the_thresholds() {
        let m = Metrics::new(MetricsConfig::default());
        m.llm().set_budget("tn", 1.2, &[50, 80, 100]);
        m.llm().set_budget("tn", 0.1, &[]);
        let exp = parse(&m.encode());
        assert_eq!(total(&exp, "llm_budget_threshold_reached", &[]), Some(0.0));
        assert_eq!(total(&exp, "llm_budget_spent_ratio", &[]), Some(0.1));
    }

    #[test]
    fn a_tenant_folded_into_other_has_no_budget_series() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        m.llm().set_budget("tn_x", 0.5, &[50]);
        m.llm().set_budget("tn_y", 0.9, &[50, 80]);
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "llm_budget_spent_ratio", &[("tenant_id", "tn_x")]),
            Some(0.5)
        );
        assert_eq!(
            total(&exp, "llm_budget_spent_ratio", &[("tenant_id", "other")]),
            None
        );
        assert_eq!(
            total(
                &exp,
                "llm_budget_threshold_reached",
                &[("tenant_id", "other")]
            ),
            None
        );
    }

    #[test]
    fn calls_recorded_from_many_threads_are_all_counted() {
        let m = Metrics::new(MetricsConfig::default());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let m = &m;
                scope.spawn(move || {
                    for i in 0..500 {
                        let tokens = TokenCounts {
                            input: 3,
                            ..Default::default()
                        };
                        m.llm().record_model_call(
                            &format!("tn_{}", i % 3),
                            &call(&format!("m{t}"), tokens, Some(7)),
                        );
                    }
                });
            }
        });
        let exp = parse(&m.encode());
        assert_eq!(total(&exp, "model_api_calls", &[]), Some(2_000.0));
        assert_eq!(total(&exp, "model_api_tokens", &[]), Some(6_000.0));
        match samples(
            &exp,
            "model_api_duration_seconds",
            &[("tenant_id", "tn_0"), ("model", "m0")],
        )
        .first()
        {
            Some(OpenMetricsValue::Histogram(h)) => assert_eq!(h.count, Some(167)),
            other => panic!("expected a histogram, got {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn cents_are_the_exact_picodollar_sum_divided_once(
            costs in proptest::collection::vec(0u64..50_000_000_000, 1..60),
        ) {
            let m = Metrics::new(MetricsConfig::default());
            for c in &costs {
                m.llm().record_model_call("tn", &call("m", TokenCounts::default(), Some(*c)));
            }
            let text = m.encode();
            let line = text
                .lines()
                .find(|l| l.starts_with("model_api_cost_cents_total{"))
                .expect("a cost series");
            let written: f64 = line.rsplit_once(' ').expect("a value").1.parse().expect("a float");
            let sum: u64 = costs.iter().sum();
            prop_assert_eq!(written, sum as f64 / Cost::PER_CENT as f64);
        }

        #[test]
        fn token_counters_sum_to_the_recorded_tokens(
            calls in proptest::collection::vec(
                (0usize..4, 0usize..3, proptest::array::uniform5(0u64..1_000_000_000)),
                0..40,
            ),
        ) {
            let m = Metrics::new(MetricsConfig { model_label_limit: 2, tenant_label_limit: 2, ..MetricsConfig::default() });
            let mut expected = [0u64; 5];
            for (model, tenant, t) in &calls {
                let tokens = TokenCounts { input: t[0], output: t[1], cache_read: t[2], cache_write: t[3], reasoning: t[4] };
                for (i, token_type) in TokenType::ALL.iter().enumerate() {
                    expected[i] += tokens.get(*token_type);
                }
                m.llm().record_model_call(&format!("tn_{tenant}"), &call(&format!("m{model}"), tokens, Some(1)));
            }
            let text = m.encode();
            // Sum the integer sample values straight from the text: no float in between.
            let mut got = [0u64; 5];
            for line in text.lines().filter(|l| l.starts_with("model_api_tokens_total{")) {
                let (labels, value) = line.rsplit_once(' ').expect("a value");
                let i = TokenType::ALL
                    .iter()
                    .position(|t| labels.contains(&format!("token_type=\"{}\"", t.as_str())))
                    .expect("a token type");
                got[i] += value.parse::<u64>().expect("an integer");
            }
            prop_assert_eq!(got, expected);
        }
    }
}
