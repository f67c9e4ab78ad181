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
