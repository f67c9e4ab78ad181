//! The events a chatbot platform reports, validated.
//!
//! Every event carries a client-chosen `id` (for OpenTelemetry spans: trace id and span id)
//! that makes a retried delivery harmless: the store keeps the first event with an id and
//! ignores the rest. Times are Unix milliseconds (UTC); durations are microseconds.
//!
//! Strings that become metric labels (provider, model, channel, …) are restricted to short
//! printable tokens here; how many distinct values reach `/metrics` is bounded by the
//! telemetry crate's label guards.

use serde::{Deserialize, Serialize};

use crate::{Cost, TokenCounts};

/// A GenAI operation, the OpenTelemetry `gen_ai.operation.name` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Chat,
    TextCompletion,
    GenerateContent,
    Embeddings,
    CreateAgent,
    InvokeAgent,
    ExecuteTool,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 7] = [
        Operation::Chat,
        Operation::TextCompletion,
        Operation::GenerateContent,
        Operation::Embeddings,
        Operation::CreateAgent,
        Operation::InvokeAgent,
        Operation::ExecuteTool,
    ];

    /// The semantic-convention name, also the `operation_type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::GenerateContent => "generate_content",
            Operation::Embeddings => "embeddings",
            Operation::CreateAgent => "create_agent",
            Operation::InvokeAgent => "invoke_agent",
            Operation::ExecuteTool => "execute_tool",
        }
    }

    /// The operation named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// Whether a call succeeded, the `status` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Success,
    Error,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Success => "success",
            CallStatus::Error => "error",
        }
    }
}

/// One call to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCall {
    pub id: String,
    /// When the call started, Unix milliseconds.
    pub time_ms: i64,
    pub provider: String,
    pub model: String,
    pub operation: Operation,
    pub conversation_id: Option<String>,
    pub duration_us: u64,
    pub tokens: TokenCounts,
    pub status: CallStatus,
    /// The error class (`error.type`) of a failed call.
    pub error_type: Option<String>,
    /// The cost the client reported (`gen_ai.usage.cost`); it wins over the computed one.
    pub client_cost: Option<Cost>,
    /// The cost from the price table; `None` when no price applies.
    pub computed_cost: Option<Cost>,
}

impl ModelCall {
    /// The cost that counts: the client's when it sent one, else the computed one, else
    /// `None` (unpriced, never guessed).
    pub fn cost(&self) -> Option<Cost> {
        self.client_cost.or(self.computed_cost)
    }
}

/// A conversation began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationStarted {
    pub id: String,
    pub time_ms: i64,
    pub conversation_id: String,
    pub channel: String,
}

/// A conversation ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationCompleted {
    pub id: String,
    pub time_ms: i64,
    pub conversation_id: String,
    pub channel: String,
    pub resolution_status: String,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A message was processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageProcessed {
    pub id: String,
    pub time_ms: i64,
    pub conversation_id: Option<String>,
    pub channel: String,
    pub direction: Direction,
    pub message_type: String,
}

/// A call to an external integration (CRM, ticketing, search, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationCall {
    pub id: String,
    pub time_ms: i64,
    pub conversation_id: Option<String>,
    pub integration_id: String,
    pub integration_type: String,
    pub status: CallStatus,
    pub duration_us: u64,
}

/// Any reported event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LlmEvent {
    ConversationStarted(ConversationStarted),
    ConversationCompleted(ConversationCompleted),
    MessageProcessed(MessageProcessed),
    ModelCall(ModelCall),
    IntegrationCall(IntegrationCall),
}

impl LlmEvent {
    /// The event's id.
    pub fn id(&self) -> &str {
        match self {
            LlmEvent::ConversationStarted(e) => &e.id,
            LlmEvent::ConversationCompleted(e) => &e.id,
            LlmEvent::MessageProcessed(e) => &e.id,
            LlmEvent::ModelCall(e) => &e.id,
            LlmEvent::IntegrationCall(e) => &e.id,
        }
    }
}

/// Why an event was refused, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    /// The field at fault, as the client spelled it (`input_tokens`, `model`, …).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl EventError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> EventError {
        EventError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bounds shared by the event API and the OpenTelemetry reader.

/// How far in the future an event may be (clock skew), in milliseconds: 5 minutes.
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// How old an event may be, in milliseconds: 400 days (a year of history plus slack).
pub const MAX_AGE_MS: i64 = 400 * 86_400_000;
/// The longest duration accepted, in milliseconds: a day.
pub const MAX_DURATION_MS: u64 = 86_400_000;
/// The largest token count accepted in any one field of one call.
pub const MAX_TOKENS: u64 = 100_000_000;
/// The longest id or label, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// Checks a label-like string (provider, model, channel, …): 1 to 128 characters of
/// `A-Z a-z 0-9 _ . : / @ + -`.
///
/// ```
/// use llm::event::check_label;
/// assert!(check_label("gpt-4o-2024-08-06").is_ok());
/// assert!(check_label("anthropic.claude-3-5-sonnet-20240620-v1:0").is_ok());
/// assert!(check_label("gpt 4o").is_err());
/// ```
pub fn check_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!("is longer than {MAX_LABEL_LEN} characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.:/@+-".contains(*c)))
    {
        return Err(format!(
            "contains {c:?}; allowed are letters, digits and _ . : / @ + -"
        ));
    }
    Ok(())
}

/// Checks an id (event id, conversation id, integration id): 1 to 128 printable ASCII
/// characters, no spaces.
pub fn check_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!("is longer than {MAX_LABEL_LEN} characters"));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {c:?}; allowed are printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// Checks that an event time is neither more than [`MAX_FUTURE_MS`] ahead of `now_ms` nor
/// more than [`MAX_AGE_MS`] behind it.
pub fn check_time(time_ms: i64, now_ms: i64) -> Result<(), String> {
    if time_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err("is more than 5 minutes in the future".into());
    }
    if time_ms < now_ms.saturating_sub(MAX_AGE_MS) {
        return Err("is more than 400 days in the past".into());
    }
    Ok(())
}

/// Checks a token count against [`MAX_TOKENS`].
pub fn check_tokens(count: u64) -> Result<u64, String> {
    if count > MAX_TOKENS {
        return Err(format!("{count} is over the limit of {MAX_TOKENS} tokens"));
    }
    Ok(count)
}

/// Reads an RFC 3339 timestamp as Unix milliseconds (sub-millisecond digits truncated
/// toward the past).
///
/// ```
/// use llm::event::parse_rfc3339_ms;
/// assert_eq!(parse_rfc3339_ms("2025-12-04T00:00:00.5Z"), Ok(1_764_806_400_500));
/// assert_eq!(parse_rfc3339_ms("2025-12-04T01:00:00+01:00"), Ok(1_764_806_400_000));
/// assert!(parse_rfc3339_ms("2025-12-04 00:00").is_err());
/// ```
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            "must be an RFC 3339 timestamp such as 2025-12-04T10:15:30.123Z".to_string()
        })?;
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).map_err(|_| "is out of range".to_string())
}

// ---------------------------------------------------------------------------------------
// The wire format of `POST /api/v1/llm/events` (JSON objects, one per NDJSON line).

/// One event as a client sends it to `POST /api/v1/llm/events`, before validation.
///
/// Common fields: `type`, `id` (1 to 128 printable ASCII characters without spaces; a
/// repeated id is stored once) and `time` (RFC 3339, at most 5 minutes ahead and 400 days
/// back). Unknown fields are refused. [`validate`] turns it into an [`LlmEvent`].
///
/// ```
/// use llm::event::{validate, WireEvent};
/// let wire: WireEvent = serde_json::from_str(r#"{"type": "model_call", "id": "c-1",
///   "time": "2025-12-04T10:00:00Z", "provider": "openai", "model": "gpt-4o",
///   "operation": "chat", "duration_ms": 812.5, "input_tokens": 1200,
///   "cache_read_tokens": 1000, "output_tokens": 300, "reasoning_tokens": 100}"#).unwrap();
/// let now = 1_764_842_400_000; // 2025-12-04T10:00:00Z
/// let llm::LlmEvent::ModelCall(call) = validate(wire, now).unwrap() else { panic!() };
/// assert_eq!(call.tokens.input, 200); // 1,200 inclusive − 1,000 cache reads
/// assert_eq!(call.tokens.output, 200); // 300 inclusive − 100 reasoning
/// assert_eq!(call.duration_us, 812_500);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireEvent {
    ModelCall(WireModelCall),
    ConversationStarted(WireConversationStarted),
    ConversationCompleted(WireConversationCompleted),
    MessageProcessed(WireMessageProcessed),
    IntegrationCall(WireIntegrationCall),
}

/// The `type` values of [`WireEvent`].
pub const WIRE_EVENT_TYPES: [&str; 5] = [
    "model_call",
    "conversation_started",
    "conversation_completed",
    "message_processed",
    "integration_call",
];

/// `"type": "model_call"`. Token counts are **inclusive**, as OpenTelemetry and the
/// providers report them: `input_tokens` includes `cache_read_tokens` and
/// `cache_write_tokens`, `output_tokens` includes `reasoning_tokens`. Each count is at most
/// [`MAX_TOKENS`]. `status` defaults to `"error"` when `error_type` is given, else
/// `"success"`. `cost_usd`, when given, is the client's cost and wins over the computed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireModelCall {
    pub id: String,
    pub time: String,
    pub provider: String,
    pub model: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub duration_ms: serde_json::Number,
    pub input_tokens: serde_json::Number,
    pub output_tokens: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<serde_json::Number>,
}

/// `"type": "conversation_started"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConversationStarted {
    pub id: String,
    pub time: String,
    pub conversation_id: String,
    pub channel: String,
}

/// `"type": "conversation_completed"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConversationCompleted {
    pub id: String,
    pub time: String,
    pub conversation_id: String,
    pub channel: String,
    pub resolution_status: String,
}

/// `"type": "message_processed"`; `direction` is `"inbound"` or `"outbound"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessageProcessed {
    pub id: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub channel: String,
    pub direction: String,
    pub message_type: String,
}

/// `"type": "integration_call"`; `status` is `"success"` or `"error"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireIntegrationCall {
    pub id: String,
    pub time: String,
    pub integration_id: String,
    pub integration_type: String,
    pub status: String,
    pub duration_ms: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

fn field_err(field: &str) -> impl Fn(String) -> EventError + '_ {
    move |reason| EventError::new(field, reason)
}

fn label(field: &str, value: String) -> Result<String, EventError> {
    check_label(&value).map_err(field_err(field))?;
    Ok(value)
}

fn ident(field: &str, value: String) -> Result<String, EventError> {
    check_id(&value).map_err(field_err(field))?;
    Ok(value)
}

fn opt_ident(field: &str, value: Option<String>) -> Result<Option<String>, EventError> {
    value.map(|v| ident(field, v)).transpose()
}

fn event_time(text: &str, now_ms: i64) -> Result<i64, EventError> {
    let ms = parse_rfc3339_ms(text).map_err(field_err("time"))?;
    check_time(ms, now_ms).map_err(field_err("time"))?;
    Ok(ms)
}

fn tokens(field: &str, n: Option<&serde_json::Number>) -> Result<u64, EventError> {
    let Some(n) = n else { return Ok(0) };
    let count = match n.as_u64() {
        Some(c) => c,
        None if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) => {
            return Err(EventError::new(field, format!("{n} is negative")))
        }
        // A whole number written with a fraction (`1200.0`), as OTLP attributes may be too.
        None if n
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f <= MAX_TOKENS as f64) =>
        {
            n.as_f64().map_or(0, |f| f as u64)
        }
        None if n
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f > MAX_TOKENS as f64) =>
        {
            return Err(EventError::new(
                field,
                format!("{n} is over the limit of {MAX_TOKENS} tokens"),
            ))
        }
        None => {
            return Err(EventError::new(
                field,
                format!("{n} is not a whole number of tokens"),
            ))
        }
    };
    check_tokens(count).map_err(field_err(field))
}

/// Milliseconds (fractions allowed) as whole microseconds.
fn duration_us(field: &str, n: &serde_json::Number) -> Result<u64, EventError> {
    let too_long = || {
        EventError::new(
            field,
            format!("{n} ms is longer than {MAX_DURATION_MS} ms (a day)"),
        )
    };
    if let Some(ms) = n.as_u64() {
        if ms > MAX_DURATION_MS {
            return Err(too_long());
        }
        return Ok(ms * 1000);
    }
    match n.as_f64() {
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            if ms > MAX_DURATION_MS as f64 {
                return Err(too_long());
            }
            Ok((ms * 1000.0).round() as u64)
        }
        _ => Err(EventError::new(
            field,
            format!("{n} is negative or not a number"),
        )),
    }
}

fn call_status(field: &str, value: &str) -> Result<CallStatus, EventError> {
    match value {
        "success" => Ok(CallStatus::Success),
        "error" => Ok(CallStatus::Error),
        other => Err(EventError::new(
            field,
            format!("{other:?} is not one of \"success\", \"error\""),
        )),
    }
}

/// The operation named `name`, or an error listing the allowed names.
pub fn parse_operation(field: &str, name: &str) -> Result<Operation, EventError> {
    Operation::parse(name).ok_or_else(|| {
        let allowed: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        EventError::new(
            field,
            format!(
                "{name:?} is not a GenAI operation; allowed: {}",
                allowed.join(", ")
            ),
        )
    })
}

/// Validates a wire event at server time `now_ms` (Unix ms), naming the wire field at fault.
/// The provider name is stored in its canonical spelling ([`crate::provider::canonical`]);
/// the computed cost is left to the caller (it needs the tenant's prices).
pub fn validate(wire: WireEvent, now_ms: i64) -> Result<LlmEvent, EventError> {
    Ok(match wire {
        WireEvent::ModelCall(w) => {
            let id = ident("id", w.id)?;
            let time_ms = event_time(&w.time, now_ms)?;
            let provider = label("provider", w.provider)?;
            let provider = crate::provider::canonical(&provider).into_owned();
            let model = label("model", w.model)?;
            let operation = parse_operation("operation", &w.operation)?;
            let conversation_id = opt_ident("conversation_id", w.conversation_id)?;
            let duration_us = duration_us("duration_ms", &w.duration_ms)?;
            let input = tokens("input_tokens", Some(&w.input_tokens))?;
            let output = tokens("output_tokens", Some(&w.output_tokens))?;
            let cache_read = tokens("cache_read_tokens", w.cache_read_tokens.as_ref())?;
            let cache_write = tokens("cache_write_tokens", w.cache_write_tokens.as_ref())?;
            let reasoning = tokens("reasoning_tokens", w.reasoning_tokens.as_ref())?;
            let tokens =
                inclusive_to_exclusive(input, output, cache_read, cache_write, reasoning, WIRE)?;
            let error_type = w.error_type.map(|e| label("error_type", e)).transpose()?;
            let status = match (w.status.as_deref(), &error_type) {
                (None, None) => CallStatus::Success,
                (None, Some(_)) => CallStatus::Error,
                (Some(s), _) => call_status("status", s)?,
            };
            if status == CallStatus::Success && error_type.is_some() {
                return Err(EventError::new(
                    "error_type",
                    "is only for calls with status \"error\"",
                ));
            }
            let client_cost = w
                .cost_usd
                .map(|n| match n.as_f64() {
                    Some(usd) => Cost::from_usd(usd)
                        .map_err(|e| EventError::new("cost_usd", format!("{n}: {e}"))),
                    None => Err(EventError::new("cost_usd", "must be a number")),
                })
                .transpose()?;
            LlmEvent::ModelCall(ModelCall {
                id,
                time_ms,
                provider,
                model,
                operation,
                conversation_id,
                duration_us,
                tokens,
                status,
                error_type,
                client_cost,
                computed_cost: None,
            })
        }
        WireEvent::ConversationStarted(w) => LlmEvent::ConversationStarted(ConversationStarted {
            id: ident("id", w.id)?,
            time_ms: event_time(&w.time, now_ms)?,
            conversation_id: ident("conversation_id", w.conversation_id)?,
            channel: label("channel", w.channel)?,
        }),
        WireEvent::ConversationCompleted(w) => {
            LlmEvent::ConversationCompleted(ConversationCompleted {
                id: ident("id", w.id)?,
                time_ms: event_time(&w.time, now_ms)?,
                conversation_id: ident("conversation_id", w.conversation_id)?,
                channel: label("channel", w.channel)?,
                resolution_status: label("resolution_status", w.resolution_status)?,
            })
        }
        WireEvent::MessageProcessed(w) => LlmEvent::MessageProcessed(MessageProcessed {
            id: ident("id", w.id)?,
            time_ms: event_time(&w.time, now_ms)?,
            conversation_id: opt_ident("conversation_id", w.conversation_id)?,
            channel: label("channel", w.channel)?,
            direction: match w.direction.as_str() {
                "inbound" => Direction::Inbound,
                "outbound" => Direction::Outbound,
                other => {
                    return Err(EventError::new(
                        "direction",
                        format!("{other:?} is not one of \"inbound\", \"outbound\""),
                    ))
                }
            },
            message_type: label("message_type", w.message_type)?,
        }),
        WireEvent::IntegrationCall(w) => LlmEvent::IntegrationCall(IntegrationCall {
            id: ident("id", w.id)?,
            time_ms: event_time(&w.time, now_ms)?,
            conversation_id: opt_ident("conversation_id", w.conversation_id)?,
            integration_id: ident("integration_id", w.integration_id)?,
            integration_type: label("integration_type", w.integration_type)?,
            status: call_status("status", &w.status)?,
            duration_us: duration_us("duration_ms", &w.duration_ms)?,
        }),
    })
}

/// Field names of the token counts, for errors: the event API's or the span attributes'.
pub(crate) struct TokenFields {
    pub input: &'static str,
    pub output: &'static str,
    pub cache_read: &'static str,
    pub cache_write: &'static str,
    pub reasoning: &'static str,
}

const WIRE: TokenFields = TokenFields {
    input: "input_tokens",
    output: "output_tokens",
    cache_read: "cache_read_tokens",
    cache_write: "cache_write_tokens",
    reasoning: "reasoning_tokens",
};

/// Inclusive counts to exclusive ones, with an error naming the part larger than its whole.
pub(crate) fn inclusive_to_exclusive(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    reasoning: u64,
    names: TokenFields,
) -> Result<TokenCounts, EventError> {
    TokenCounts::from_inclusive(input, output, cache_read, cache_write, reasoning).ok_or_else(
        || {
            if reasoning > output {
                EventError::new(
                    names.reasoning,
                    format!(
                        "{reasoning} is more than {} ({output}), which includes it",
                        names.output
                    ),
                )
            } else {
                let field = if cache_write > 0 && cache_read <= input {
                    names.cache_write
                } else {
                    names.cache_read
                };
                EventError::new(
                    field,
                    format!(
                        "{} + {} ({cache_read} + {cache_write}) is more than {} ({input}), which includes them",
                        names.cache_read, names.cache_write, names.input
                    ),
                )
            }
        },
    )
}

/// Reads one JSON event (an object) with field-named errors, including for fields of the
/// wrong type, which plain `serde_json` reports without a name.
///
/// ```
/// use llm::event::parse_json_event;
/// let err = parse_json_event(r#"{"type": "model_call", "input_tokens": "many"}"#).unwrap_err();
/// assert_eq!(err.field, "input_tokens");
/// let err = parse_json_event(r#"{"type": "model_cal"}"#).unwrap_err();
/// assert_eq!(err.field, "type");
/// ```
pub fn parse_json_event(text: &str) -> Result<WireEvent, EventError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| EventError::new("", format!("invalid JSON: {e}")))?;
    wire_from_value(value)
}

/// [`parse_json_event`] over an already parsed JSON value (e.g. an element of a JSON array).
pub fn wire_from_value(value: serde_json::Value) -> Result<WireEvent, EventError> {
    let serde_json::Value::Object(mut map) = value else {
        return Err(EventError::new("", "an event must be a JSON object"));
    };
    let kind = match map.remove("type") {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(EventError::new("type", "must be a string")),
        None => {
            return Err(EventError::new(
                "type",
                format!("is required; one of {}", WIRE_EVENT_TYPES.join(", ")),
            ))
        }
    };
    let rest = serde_json::Value::Object(map);
    fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, EventError> {
        // The happy path without path tracking; on error, again with it for the field name.
        if let Ok(typed) = T::deserialize(&value) {
            return Ok(typed);
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner().to_string();
            // Missing and unknown fields are reported at the object itself, with the name in
            // the message: pull the name out so the error names it.
            let named = inner.split('`').nth(1).filter(|_| {
                inner.starts_with("missing field") || inner.starts_with("unknown field")
            });
            let field = match (field.as_str(), named) {
                ("." | "", Some(name)) => name.to_string(),
                _ => field,
            };
            EventError::new(field, inner)
        })
    }
    Ok(match kind.as_str() {
        "model_call" => WireEvent::ModelCall(typed(rest)?),
        "conversation_started" => WireEvent::ConversationStarted(typed(rest)?),
        "conversation_completed" => WireEvent::ConversationCompleted(typed(rest)?),
        "message_processed" => WireEvent::MessageProcessed(typed(rest)?),
        "integration_call" => WireEvent::IntegrationCall(typed(rest)?),
        other => {
            return Err(EventError::new(
                "type",
                format!(
                    "{other:?} is not an event type; one of {}",
                    WIRE_EVENT_TYPES.join(", ")
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    /// 2025-12-04T10:00:00Z
    const NOW: i64 = 1_764_842_400_000;

    fn model_call(extra: &str) -> String {
        let base = r#""type": "model_call", "id": "call-1", "time": "2025-12-04T09:59:00Z",
            "provider": "openai", "model": "gpt-4o", "operation": "chat",
            "duration_ms": 250, "input_tokens": 100, "output_tokens": 20"#;
        if extra.is_empty() {
            format!("{{{base}}}")
        } else {
            format!("{{{base}, {extra}}}")
        }
    }

    fn accept(json: &str) -> LlmEvent {
        let wire = parse_json_event(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        // The typed contract and the field-naming reader agree.
        let typed: WireEvent = serde_json::from_str(json).unwrap();
        assert_eq!(typed, wire);
        validate(wire, NOW).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    /// Expects `json` to be refused, naming `field`.
    fn refuse(json: &str, field: &str) {
        let err = match parse_json_event(json) {
            Err(e) => e,
            Ok(wire) => match validate(wire, NOW) {
                Err(e) => e,
                Ok(event) => panic!("{json} accepted as {event:?}"),
            },
        };
        assert_eq!(err.field, field, "{json}: {err}");
    }

    #[test]
    fn whole_token_counts_written_with_a_fraction_are_read_and_fractions_refused() {
        let c = call(&model_call(r#""reasoning_tokens": 12.0"#));
        assert_eq!(c.tokens.reasoning, 12);
        refuse(
            &model_call(r#""reasoning_tokens": 12.5"#),
            "reasoning_tokens",
        );
        refuse(
            &model_call(r#""reasoning_tokens": 1e300"#),
            "reasoning_tokens",
        );
    }

    fn call(json: &str) -> ModelCall {
        match accept(json) {
            LlmEvent::ModelCall(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_model_call_is_read_with_exclusive_tokens() {
        let c = call(&model_call(
            r#""cache_read_tokens": 60, "cache_write_tokens": 10, "reasoning_tokens": 5,
               "conversation_id": "conv-9", "cost_usd": 0.0125"#,
        ));
        assert_eq!(c.id, "call-1");
        assert_eq!(c.time_ms, NOW - 60_000);
        assert_eq!(c.operation, Operation::Chat);
        assert_eq!(c.duration_us, 250_000);
        assert_eq!(
            c.tokens,
            TokenCounts {
                input: 30,
                cache_read: 60,
                cache_write: 10,
                output: 15,
                reasoning: 5
            }
        );
        assert_eq!(c.conversation_id.as_deref(), Some("conv-9"));
        assert_eq!(c.client_cost, Some(Cost::from_picodollars(12_500_000_000)));
        assert_eq!(c.computed_cost, None);
        assert_eq!(c.status, CallStatus::Success);
        // Old provider spellings are stored under the current name.
        assert_eq!(
            call(&model_call("").replace("\"openai\"", "\"az.ai.openai\"")).provider,
            "azure.ai.openai"
        );
        assert_eq!(
            call(&model_call(r#""duration_ms": 0.5"#).replace("\"duration_ms\": 250, ", ""))
                .duration_us,
            500
        );
    }

    #[test]
    fn status_follows_error_type_unless_given() {
        assert_eq!(
            call(&model_call(r#""status": "error""#)).status,
            CallStatus::Error
        );
        let c = call(&model_call(r#""error_type": "rate_limit""#));
        assert_eq!(
            (c.status, c.error_type.as_deref()),
            (CallStatus::Error, Some("rate_limit"))
        );
        refuse(
            &model_call(r#""status": "success", "error_type": "timeout""#),
            "error_type",
        );
        refuse(&model_call(r#""status": "ok""#), "status");
    }

    #[test]
    fn other_events_are_read() {
        let e = accept(
            r#"{"type": "conversation_started", "id": "e1", "time": "2025-12-04T10:00:00Z", "conversation_id": "c1", "channel": "web"}"#,
        );
        assert!(
            matches!(e, LlmEvent::ConversationStarted(ref s) if s.channel == "web" && s.time_ms == NOW)
        );
        let e = accept(
            r#"{"type": "conversation_completed", "id": "e2", "time": "2025-12-04T10:00:00Z", "conversation_id": "c1", "channel": "web", "resolution_status": "resolved"}"#,
        );
        assert!(
            matches!(e, LlmEvent::ConversationCompleted(ref s) if s.resolution_status == "resolved")
        );
        let e = accept(
            r#"{"type": "message_processed", "id": "e3", "time": "2025-12-04T10:00:00Z", "channel": "sms", "direction": "outbound", "message_type": "text"}"#,
        );
        assert!(
            matches!(e, LlmEvent::MessageProcessed(ref m) if m.direction == Direction::Outbound && m.conversation_id.is_none())
        );
        let e = accept(
            r#"{"type": "integration_call", "id": "e4", "time": "2025-12-04T10:00:00Z", "integration_id": "crm-1", "integration_type": "crm", "status": "error", "duration_ms": 12.25, "conversation_id": "c1"}"#,
        );
        assert!(
            matches!(e, LlmEvent::IntegrationCall(ref i) if i.status == CallStatus::Error && i.duration_us == 12_250)
        );
        assert_eq!(e.id(), "e4");
    }

    #[test]
    fn bad_events_are_refused_naming_the_wire_field() {
        let m = model_call("");
        for (json, field) in [
            (m.replace("\"call-1\"", "\"\""), "id"),
            (m.replace("\"call-1\"", "\"a b\""), "id"),
            (m.replace("\"call-1\"", &format!("\"{}\"", "x".repeat(129))), "id"),
            (m.replace("\"call-1\"", "\"caf\u{e9}\""), "id"),
            (m.replace("2025-12-04T09:59:00Z", "2025-12-04 09:59:00"), "time"),
            (m.replace("2025-12-04T09:59:00Z", "2025-12-04T10:05:01Z"), "time"),
            (m.replace("2025-12-04T09:59:00Z", "2024-10-29T09:59:00Z"), "time"),
            (m.replace("\"openai\"", "\"open ai\""), "provider"),
            (m.replace("\"gpt-4o\"", "\"\""), "model"),
            (m.replace("\"chat\"", "\"summarize\""), "operation"),
            (m.replace("250", "-1"), "duration_ms"),
            (m.replace("250", "86400001"), "duration_ms"),
            (m.replace("\"input_tokens\": 100", "\"input_tokens\": -5"), "input_tokens"),
            (m.replace("\"input_tokens\": 100", "\"input_tokens\": 1.5"), "input_tokens"),
            (m.replace("\"input_tokens\": 100", "\"input_tokens\": 100000001"), "input_tokens"),
            (m.replace("\"input_tokens\": 100", "\"input_tokens\": \"100\""), "input_tokens"),
            (m.replace("\"output_tokens\": 20", "\"output_tokens\": 1e30"), "output_tokens"),
            (m.replace(", \"output_tokens\": 20", ""), "output_tokens"),
            (model_call("\"cache_read_tokens\": 101"), "cache_read_tokens"),
            (model_call("\"cache_read_tokens\": 50, \"cache_write_tokens\": 51"), "cache_write_tokens"),
            (model_call("\"reasoning_tokens\": 21"), "reasoning_tokens"),
            (model_call("\"cost_usd\": -0.5"), "cost_usd"),
            (model_call("\"cost_usd\": 1000001"), "cost_usd"),
            (model_call("\"conversation_id\": \"\""), "conversation_id"),
            (model_call("\"temperature\": 0.2"), "temperature"),
            (model_call("\"error_type\": \"Rate limit!\""), "error_type"),
            (m.replace("\"model_call\"", "\"model_calls\""), "type"),
            (m.replace("\"type\": \"model_call\", ", ""), "type"),
            (r#"{"type": "message_processed", "id": "e", "time": "2025-12-04T10:00:00Z", "channel": "web", "direction": "sideways", "message_type": "text"}"#.into(), "direction"),
            (r#"{"type": "integration_call", "id": "e", "time": "2025-12-04T10:00:00Z", "integration_id": "i", "integration_type": "crm", "status": "fine", "duration_ms": 1}"#.into(), "status"),
            (r#"{"type": "conversation_started", "id": "e", "time": "2025-12-04T10:00:00Z", "conversation_id": "c", "channel": "web", "resolution_status": "x"}"#.into(), "resolution_status"),
            ("[1]".into(), ""),
            ("{".into(), ""),
        ] {
            refuse(&json, field);
        }
        // The allowed operations are listed.
        let err = validate(
            parse_json_event(&m.replace("\"chat\"", "\"summarize\"")).unwrap(),
            NOW,
        )
        .unwrap_err();
        assert!(
            err.reason
                .contains("chat, text_completion, generate_content, embeddings"),
            "{err}"
        );
    }

    #[test]
    fn labels_ids_and_times_have_fixed_bounds() {
        assert!(check_label(&"m".repeat(128)).is_ok());
        assert!(check_label(&"m".repeat(129)).is_err());
        for ok in ["openai", "gpt-4o", "a_b.c:d/e@f+g-h", "0"] {
            assert!(check_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a,b", "a{b}", "é", "a\nb"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_id("conv_5j66UpCpwteGg4YSxUnt7lPY").is_ok());
        assert!(check_id("a\tb").is_err());
        assert!(check_time(NOW + MAX_FUTURE_MS, NOW).is_ok());
        assert!(check_time(NOW + MAX_FUTURE_MS + 1, NOW).is_err());
        assert!(check_time(NOW - MAX_AGE_MS, NOW).is_ok());
        assert!(check_time(NOW - MAX_AGE_MS - 1, NOW).is_err());
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.9995Z"), Ok(-1));
        assert!(check_tokens(MAX_TOKENS).is_ok() && check_tokens(MAX_TOKENS + 1).is_err());
    }

    proptest::proptest! {
        /// Token counts are accepted exactly when every part fits its whole and every count
        /// is within the limit; accepted counts are exclusive and add back to the totals.
        #[test]
        fn token_counts_are_accepted_iff_consistent(
            input in 0u64..200, output in 0u64..200, cr in 0u64..200, cw in 0u64..200, r in 0u64..200,
            scale in proptest::prop_oneof![proptest::strategy::Just(1u64), proptest::strategy::Just(1_000_000u64)],
        ) {
            let (input, output, cr, cw, r) = (input * scale, output * scale, cr * scale, cw * scale, r * scale);
            let json = model_call(&format!(
                r#""cache_read_tokens": {cr}, "cache_write_tokens": {cw}, "reasoning_tokens": {r}"#
            ))
            .replace("\"input_tokens\": 100", &format!("\"input_tokens\": {input}"))
            .replace("\"output_tokens\": 20", &format!("\"output_tokens\": {output}"));
            let ok = cr + cw <= input && r <= output && [input, output, cr, cw, r].iter().all(|n| *n <= MAX_TOKENS);
            match validate(parse_json_event(&json).unwrap(), NOW) {
                Ok(LlmEvent::ModelCall(c)) => {
                    proptest::prop_assert!(ok);
                    proptest::prop_assert_eq!(c.tokens.input + c.tokens.cache_read + c.tokens.cache_write, input);
                    proptest::prop_assert_eq!(c.tokens.output + c.tokens.reasoning, output);
                }
                Ok(other) => proptest::prop_assert!(false, "{other:?}"),
                Err(e) => {
                    proptest::prop_assert!(!ok, "{e}");
                    proptest::prop_assert!(e.field.ends_with("_tokens"), "{e}");
                }
            }
        }

        /// Arbitrary field values never panic the reader: each is accepted or refused, and a
        /// refusal names the field that was changed (the rest of the event is valid).
        #[test]
        fn arbitrary_values_are_accepted_or_refused(
            field in proptest::sample::select(vec!["id", "time", "provider", "model", "operation", "duration_ms", "input_tokens", "cost_usd", "conversation_id", "status"]),
            value in proptest::prop_oneof![
                ".{0,40}".prop_map(serde_json::Value::from),
                proptest::num::f64::ANY.prop_map(serde_json::Value::from),
                proptest::num::i64::ANY.prop_map(serde_json::Value::from),
                proptest::num::u64::ANY.prop_map(serde_json::Value::from),
            ],
        ) {
            let mut v: serde_json::Value = serde_json::from_str(&model_call("")).unwrap();
            v[field] = value;
            match wire_from_value(v) {
                Err(e) => proptest::prop_assert!(e.field.is_empty() || e.field == field, "{field}: {e:?}"),
                Ok(wire) => {
                    if let Err(e) = validate(wire, NOW) {
                        proptest::prop_assert_eq!(e.field, field);
                    }
                }
            }
        }
    }

    #[test]
    fn wire_events_serialise_back_to_the_same_json_shape() {
        let json = model_call(r#""reasoning_tokens": 5"#);
        let wire = parse_json_event(&json).unwrap();
        let again = serde_json::to_string(&wire).unwrap();
        assert_eq!(parse_json_event(&again).unwrap(), wire);
        assert!(again.contains("\"type\":\"model_call\""), "{again}");
    }
}
