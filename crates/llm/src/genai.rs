//! OpenTelemetry GenAI semantic-convention spans, read as model calls.
//!
//! (H1 fills in: the attribute names read, old and new spellings, and the rejection rules.)

use crate::event::{EventError, ModelCall};

/// An attribute value, borrowed from the wire message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes: never a GenAI scalar.
    Other,
}

/// What the reader needs of one span; the server implements it over the OTLP message without
/// copying.
pub trait SpanView {
    fn trace_id(&self) -> &[u8];
    fn span_id(&self) -> &[u8];
    fn name(&self) -> &str;
    fn start_unix_nanos(&self) -> u64;
    fn end_unix_nanos(&self) -> u64;
    /// The span status is ERROR.
    fn status_is_error(&self) -> bool;
    /// A span attribute, falling back to the resource's.
    fn attribute(&self, key: &str) -> Option<AttrValue<'_>>;
}

/// What a span is.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanReading {
    /// A GenAI model call (cost not yet computed).
    ModelCall(Box<ModelCall>),
    /// No `gen_ai.*` operation: counted and dropped.
    NotGenAi,
    /// A GenAI span that is malformed: rejected with the reason.
    Rejected(EventError),
}

/// Reads one span.
pub fn read_span(_span: &impl SpanView, _now_ms: i64) -> SpanReading {
    todo!("H1")
}
