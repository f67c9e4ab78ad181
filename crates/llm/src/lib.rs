//! # llm: LLM and chatbot observability
//!
//! A pure library (no I/O, no clock: times are Unix milliseconds passed in) for seed 003's
//! chatbot and model-call accounting:
//!
//! - the events a chatbot platform reports ([`event`]): conversations started and completed,
//!   messages processed, model calls and integration calls, their JSON wire format
//!   ([`event::WireEvent`]) and validation ([`event::validate`]);
//! - exclusive token types ([`TokenCounts`]) so that no token is counted twice;
//! - exact cost ([`Cost`], integer picodollars) from a versioned price table ([`price`],
//!   shipped in `prices.toml`), with provider names normalised ([`provider`]);
//! - OpenTelemetry GenAI semantic-convention spans read as model calls ([`genai`]);
//! - latency histograms that merge by addition ([`latency`]), usage grouping ([`usage`]) and
//!   monthly budgets with thresholds crossed once per period ([`budget`]).
//!
//! Storage, HTTP and metrics live in the adapter crates (`store`, `server`, `telemetry`).

pub mod budget;
pub mod event;
pub mod genai;
pub mod latency;
pub mod price;
pub mod provider;
pub mod usage;

mod cost;
mod tokens;

pub use cost::{Cost, CostError, DecimalError};
pub use event::{
    CallStatus, ConversationCompleted, ConversationStarted, Direction, EventError, IntegrationCall,
    LlmEvent, MessageProcessed, ModelCall, Operation, WireEvent,
};
pub use tokens::{TokenCounts, TokenType};
