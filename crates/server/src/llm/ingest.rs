//! The two ingest use cases as the transports hand them over: an OTLP export request (spans
//! read as model calls) and checked JSON events. Both end in [`LlmService::ingest`]; what is
//! here is what comes before and after it (reading and validating, and counting every span or
//! event by outcome), so that a route, a CLI import or a job handler ingests the same way.

use llm::LlmEvent;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;
use store::{Store, StoreError};
use telemetry::{EventOutcome, Metrics, SpanOutcome};

use super::{otlp, LlmService};
use crate::ingest::RejectedEvent;

/// How many rejected spans are described in the partial-success message.
const REASONS_LISTED: usize = 5;

/// What one OTLP export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanIngest {
    /// Model calls stored for the first time.
    pub stored: usize,
    /// Model calls already stored (same trace and span id).
    pub duplicates: usize,
    /// Spans without GenAI attributes: counted and dropped.
    pub not_genai: usize,
    /// GenAI spans rejected as malformed.
    pub rejected: usize,
    /// The first rejections, `span INDEX (SPAN_ID): reason`.
    pub reasons: Vec<String>,
}

impl SpanIngest {
    /// OTLP's `partial_success.error_message`: empty when nothing was rejected.
    pub fn rejection_message(&self) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let more = if self.rejected > self.reasons.len() {
            format!("; and {} more", self.rejected - self.reasons.len())
        } else {
            String::new()
        };
        format!(
            "{} GenAI span(s) rejected: {}{more}",
            self.rejected,
            self.reasons.join("; ")
        )
    }
}

/// What one batch of checked events did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventIngest {
    /// Events accepted: newly stored plus duplicates.
    pub accepted: usize,
    /// Events stored for the first time.
    pub stored: usize,
    /// Events whose id the tenant had already sent.
    pub duplicates: usize,
    /// The events not accepted, in input order.
    pub rejected: Vec<RejectedEvent>,
}

impl LlmService {
    /// Ingests an OTLP export: GenAI spans become model calls (stored as [`LlmService::ingest`]
    /// does), other spans are dropped, malformed GenAI spans are rejected one by one; every
    /// span is counted by outcome.
    pub async fn ingest_spans(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        request: &ExportTraceServiceRequest,
        now_ms: i64,
    ) -> Result<SpanIngest, StoreError> {
        let mut calls = Vec::new();
        let mut outcome = SpanIngest::default();
        for (index, span) in otlp::spans(request).enumerate() {
            match llm::genai::read_span(&span, now_ms) {
                llm::genai::SpanReading::ModelCall(call) => {
                    calls.push(LlmEvent::ModelCall(*call));
                }
                llm::genai::SpanReading::NotGenAi => outcome.not_genai += 1,
                llm::genai::SpanReading::Rejected(e) => {
                    outcome.rejected += 1;
                    if outcome.reasons.len() < REASONS_LISTED {
                        outcome.reasons.push(format!(
                            "span {index} ({}): {e}",
                            hex::encode(&span.span.span_id)
                        ));
                    }
                }
            }
        }
        let stored = self
            .ingest(store, metrics, tenant_id, calls, now_ms)
            .await?;
        outcome.stored = stored.stored;
        outcome.duplicates = stored.duplicates;
        let recorder = metrics.llm();
        for (kind, n) in [
            (SpanOutcome::ModelCall, outcome.stored),
            (SpanOutcome::Duplicate, outcome.duplicates),
            (SpanOutcome::NotGenAi, outcome.not_genai),
            (SpanOutcome::Rejected, outcome.rejected),
        ] {
            recorder.record_span_outcome(tenant_id, kind, n as u64);
        }
        Ok(outcome)
    }

    /// Ingests events checked by [`validate_events`]: the valid ones are stored as
    /// [`LlmService::ingest`] does (nothing is stored when none is valid), and every event is
    /// counted by outcome, the rejected ones included.
    pub async fn ingest_checked_events(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        valid: Vec<LlmEvent>,
        rejected: Vec<Rejection>,
        now_ms: i64,
    ) -> Result<EventIngest, StoreError> {
        let recorder = metrics.llm();
        let rejected: Vec<RejectedEvent> = rejected
            .into_iter()
            .map(|r| {
                recorder.record_event_outcome(tenant_id, r.event_type, EventOutcome::Rejected, 1);
                r.rejected
            })
            .collect();
        let accepted = valid.len();
        let types: Vec<&'static str> = valid.iter().map(telemetry::event_type).collect();
        let stored = self
            .ingest(store, metrics, tenant_id, valid, now_ms)
            .await?;
        for (event_type, new) in types.iter().zip(&stored.inserted) {
            let kind = if *new {
                EventOutcome::Accepted
            } else {
                EventOutcome::Duplicate
            };
            recorder.record_event_outcome(tenant_id, event_type, kind, 1);
        }
        Ok(EventIngest {
            accepted,
            stored: stored.stored,
            duplicates: stored.duplicates,
            rejected,
        })
    }
}

/// A rejected event and its `type` for the metrics (`unknown` when it had no known one).
pub struct Rejection {
    pub rejected: RejectedEvent,
    pub event_type: &'static str,
}

/// Validates each item: wire shape (naming the field), then the domain rules.
pub fn validate_events(
    items: Vec<crate::ingest::Item>,
    now_ms: i64,
) -> (Vec<LlmEvent>, Vec<Rejection>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items {
        let value = match item {
            Ok(v) => v,
            Err(reason) => {
                rejected.push(Rejection {
                    rejected: RejectedEvent {
                        index,
                        event_id: None,
                        field: None,
                        reason,
                    },
                    event_type: "unknown",
                });
                continue;
            }
        };
        let event_type = value
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| telemetry::EVENT_TYPES.into_iter().find(|known| *known == t))
            .unwrap_or("unknown");
        let event_id = value
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id.len() <= 256)
            .map(str::to_owned);
        let wire = match llm::event::wire_from_value(value) {
            Ok(w) => w,
            Err(e) => {
                rejected.push(Rejection {
                    rejected: RejectedEvent {
                        index,
                        event_id,
                        field: (!e.field.is_empty()).then_some(e.field),
                        reason: e.reason,
                    },
                    event_type,
                });
                continue;
            }
        };
        match llm::event::validate(wire, now_ms) {
            Ok(event) => valid.push(event),
            Err(e) => rejected.push(Rejection {
                rejected: RejectedEvent {
                    index,
                    event_id,
                    field: Some(e.field),
                    reason: e.reason,
                },
                event_type,
            }),
        }
    }
    (valid, rejected)
}
