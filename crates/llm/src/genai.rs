//! OpenTelemetry GenAI semantic-convention spans, read as model calls.
//!
//! # Which spans are model calls
//!
//! A span is a GenAI span when it has `gen_ai.operation.name`, or, for instrumentations
//! older than that attribute, `gen_ai.system` (or `gen_ai.provider.name`) together with a
//! token count. Other spans are [`SpanReading::NotGenAi`]: counted and dropped. Old-style
//! spans take their operation from `llm.request.type` (`chat`, `completion`,
//! `embedding`), else `chat`.
//!
//! `execute_tool`, `create_agent` and `invoke_agent` spans without a model are not model calls
//! (a tool run or a remote agent calls no model itself): they are `NotGenAi`, not rejected.
//!
//! # Attributes read (first present wins)
//!
//! | what                  | attributes                                                        |
//! |-----------------------|-------------------------------------------------------------------|
//! | operation             | `gen_ai.operation.name` (unknown value → rejected)                |
//! | provider              | `gen_ai.provider.name`, `gen_ai.system` (normalised, see [`crate::provider`]) |
//! | model                 | `gen_ai.response.model`, `gen_ai.request.model` (missing → rejected) |
//! | input tokens (incl.)  | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens`         |
//! | output tokens (incl.) | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens`    |
//! | cache reads           | `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_read_input_tokens` |
//! | cache writes          | `gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.cache_creation_input_tokens` |
//! | reasoning             | `gen_ai.usage.reasoning.output_tokens`, `gen_ai.usage.reasoning_tokens` |
//! | conversation          | `gen_ai.conversation.id`                                          |
//! | error                 | span status ERROR or `error.type` → status error; `error.type`   |
//! | client cost (USD)     | `gen_ai.usage.cost` (as OpenLIT sends it)                         |
//!
//! As the conventions say, input tokens include cache reads and writes and output tokens
//! include reasoning; they are made exclusive with [`crate::TokenCounts::from_inclusive`].
//! Some instrumentations pass a provider's exclusive counts instead (Anthropic's
//! `input_tokens` leaves out cache reads and writes, Gemini's candidate count leaves out
//! thoughts): when the cache parts are larger than the input count, or reasoning larger than
//! the output count, that count is read as exclusive instead of rejecting the call (the one
//! case where the two readings can be told apart). Missing counts are 0. Counts may arrive as
//! integers, as integral doubles or as decimal strings (some JSON exporters); negative,
//! fractional or absurd (over [`crate::event::MAX_TOKENS`]) counts are rejected.
//!
//! The call's id is `hex(trace_id)-hex(span_id)` (lower case), so a re-sent span is stored
//! once; its time is the span start; its duration is end − start (end before start, or
//! longer than a day, is rejected). Times get the bounds of the event API
//! ([`crate::event::check_time`]). An `error.type` that is not label-safe is kept with its
//! other characters replaced by `_` (it is free text in some SDKs; not a reason to lose the
//! call).

use crate::event::{
    check_id, check_label, check_time, check_tokens, inclusive_to_exclusive, EventError, ModelCall,
    TokenFields, MAX_DURATION_MS, MAX_LABEL_LEN,
};
use crate::{CallStatus, Cost, Operation};

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

/// Attribute names read, in order of preference.
pub mod attrs {
    pub const OPERATION: &str = "gen_ai.operation.name";
    pub const PROVIDER: [&str; 2] = ["gen_ai.provider.name", "gen_ai.system"];
    pub const MODEL: [&str; 2] = ["gen_ai.response.model", "gen_ai.request.model"];
    pub const INPUT_TOKENS: [&str; 2] = ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
    pub const OUTPUT_TOKENS: [&str; 2] = [
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
    ];
    pub const CACHE_READ_TOKENS: [&str; 2] = [
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
    ];
    pub const CACHE_WRITE_TOKENS: [&str; 2] = [
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ];
    pub const REASONING_TOKENS: [&str; 2] = [
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
    ];
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const ERROR_TYPE: &str = "error.type";
    pub const COST: &str = "gen_ai.usage.cost";
    /// The operation of spans from instrumentations older than `gen_ai.operation.name`.
    pub const LEGACY_REQUEST_TYPE: &str = "llm.request.type";
}

/// Reads one span at server time `now_ms` (rules in the module docs).
///
/// ```
/// use llm::genai::{read_span, AttrValue, SpanReading, SpanView};
/// struct Span(Vec<(&'static str, AttrValue<'static>)>);
/// impl SpanView for Span {
///     fn trace_id(&self) -> &[u8] { &[0xab; 16] }
///     fn span_id(&self) -> &[u8] { &[0x01; 8] }
///     fn name(&self) -> &str { "chat gpt-4o" }
///     fn start_unix_nanos(&self) -> u64 { 1_764_842_400_000_000_000 }
///     fn end_unix_nanos(&self) -> u64 { 1_764_842_401_500_000_000 }
///     fn status_is_error(&self) -> bool { false }
///     fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
///         self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
///     }
/// }
/// let span = Span(vec![
///     ("gen_ai.operation.name", AttrValue::Str("chat")),
///     ("gen_ai.provider.name", AttrValue::Str("openai")),
///     ("gen_ai.request.model", AttrValue::Str("gpt-4o")),
///     ("gen_ai.usage.input_tokens", AttrValue::Int(120)),
///     ("gen_ai.usage.output_tokens", AttrValue::Str("30")),
/// ]);
/// let SpanReading::ModelCall(call) = read_span(&span, 1_764_842_400_000) else { panic!() };
/// assert_eq!(call.id, format!("{}-{}", "ab".repeat(16), "01".repeat(8)));
/// assert_eq!((call.tokens.input, call.tokens.output), (120, 30));
/// assert_eq!(call.duration_us, 1_500_000);
/// ```
pub fn read_span(span: &impl SpanView, now_ms: i64) -> SpanReading {
    match read(span, now_ms) {
        Ok(Some(call)) => SpanReading::ModelCall(Box::new(call)),
        Ok(None) => SpanReading::NotGenAi,
        Err(e) => SpanReading::Rejected(e),
    }
}

fn first<'a>(
    span: &'a impl SpanView,
    keys: &[&'static str],
) -> Option<(&'static str, AttrValue<'a>)> {
    keys.iter().find_map(|k| span.attribute(k).map(|v| (*k, v)))
}

fn string<'a>(key: &str, value: AttrValue<'a>) -> Result<&'a str, EventError> {
    match value {
        AttrValue::Str(s) => Ok(s),
        _ => Err(EventError::new(key, "must be a string")),
    }
}

fn count(key: &str, value: AttrValue<'_>) -> Result<u64, EventError> {
    let n: i128 = match value {
        AttrValue::Int(i) => i as i128,
        AttrValue::Double(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e18 => d as i128,
        AttrValue::Str(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| EventError::new(key, format!("{s:?} is not a whole number of tokens")))?,
        _ => return Err(EventError::new(key, "must be a whole number of tokens")),
    };
    if n < 0 {
        return Err(EventError::new(key, format!("{n} is negative")));
    }
    let n = u64::try_from(n)
        .map_err(|_| EventError::new(key, format!("{n} is over the limit of tokens")))?;
    check_tokens(n).map_err(|reason| EventError::new(key, reason))
}

fn tokens(span: &impl SpanView, keys: &[&'static str]) -> Result<(u64, &'static str), EventError> {
    match first(span, keys) {
        Some((key, value)) => Ok((count(key, value)?, key)),
        None => Ok((0, keys[0])),
    }
}

fn read(span: &impl SpanView, now_ms: i64) -> Result<Option<ModelCall>, EventError> {
    let provider_attr = first(span, &attrs::PROVIDER);
    let operation = match span.attribute(attrs::OPERATION) {
        Some(value) => {
            let name = string(attrs::OPERATION, value)?;
            crate::event::parse_operation(attrs::OPERATION, name)?
        }
        None => {
            // Instrumentations older than gen_ai.operation.name: a provider and token usage.
            let has_usage = first(span, &attrs::INPUT_TOKENS).is_some()
                || first(span, &attrs::OUTPUT_TOKENS).is_some();
            if provider_attr.is_none() || !has_usage {
                return Ok(None);
            }
            match span.attribute(attrs::LEGACY_REQUEST_TYPE) {
                Some(AttrValue::Str("completion")) => Operation::TextCompletion,
                Some(AttrValue::Str("embedding" | "embeddings")) => Operation::Embeddings,
                _ => Operation::Chat,
            }
        }
    };

    let model = match first(span, &attrs::MODEL) {
        Some((key, value)) => {
            let model = string(key, value)?;
            check_label(model).map_err(|r| EventError::new(key, r))?;
            model
        }
        None if matches!(
            operation,
            Operation::ExecuteTool | Operation::CreateAgent | Operation::InvokeAgent
        ) =>
        {
            return Ok(None)
        }
        None => {
            return Err(EventError::new(
                attrs::MODEL[1],
                "is required (or gen_ai.response.model)",
            ))
        }
    };
    let provider = match provider_attr {
        Some((key, value)) => {
            let provider = string(key, value)?;
            check_label(provider).map_err(|r| EventError::new(key, r))?;
            crate::provider::canonical(provider).into_owned()
        }
        None => {
            return Err(EventError::new(
                attrs::PROVIDER[0],
                "is required (or gen_ai.system)",
            ))
        }
    };

    let (input, input_key) = tokens(span, &attrs::INPUT_TOKENS)?;
    let (output, output_key) = tokens(span, &attrs::OUTPUT_TOKENS)?;
    let (cache_read, cache_read_key) = tokens(span, &attrs::CACHE_READ_TOKENS)?;
    let (cache_write, cache_write_key) = tokens(span, &attrs::CACHE_WRITE_TOKENS)?;
    let (reasoning, reasoning_key) = tokens(span, &attrs::REASONING_TOKENS)?;
    // The conventions make input include the cache parts and output include reasoning. Some
    // instrumentations pass the provider's own exclusive counts instead (Anthropic's
    // `input_tokens` excludes cache reads and writes; Gemini's candidate count excludes
    // thoughts). When a part is larger than its whole, the whole can only be exclusive: read
    // it so rather than lose the call.
    let input = if cache_read.saturating_add(cache_write) > input {
        input.saturating_add(cache_read).saturating_add(cache_write)
    } else {
        input
    };
    let output = if reasoning > output {
        output.saturating_add(reasoning)
    } else {
        output
    };
    let tokens = inclusive_to_exclusive(
        input,
        output,
        cache_read,
        cache_write,
        reasoning,
        TokenFields {
            input: input_key,
            output: output_key,
            cache_read: cache_read_key,
            cache_write: cache_write_key,
            reasoning: reasoning_key,
        },
    )?;

    let trace_id = span.trace_id();
    let span_id = span.span_id();
    if trace_id.is_empty() || trace_id.iter().all(|b| *b == 0) {
        return Err(EventError::new("trace_id", "is missing or all zero"));
    }
    if span_id.is_empty() || span_id.iter().all(|b| *b == 0) {
        return Err(EventError::new("span_id", "is missing or all zero"));
    }
    let id = format!("{}-{}", lower_hex(trace_id), lower_hex(span_id));
    check_id(&id).map_err(|r| EventError::new("span_id", r))?;

    let start = span.start_unix_nanos();
    let end = span.end_unix_nanos();
    let time_ms = i64::try_from(start / 1_000_000)
        .map_err(|_| EventError::new("start_time_unix_nano", "is out of range"))?;
    check_time(time_ms, now_ms).map_err(|r| EventError::new("start_time_unix_nano", r))?;
    let duration_ns = end
        .checked_sub(start)
        .ok_or_else(|| EventError::new("end_time_unix_nano", "is before the span's start"))?;
    let duration_us = duration_ns / 1_000;
    if duration_ns > MAX_DURATION_MS * 1_000_000 {
        return Err(EventError::new(
            "end_time_unix_nano",
            "the span is longer than a day",
        ));
    }

    let conversation_id = match span.attribute(attrs::CONVERSATION_ID) {
        Some(value) => {
            let id = match value {
                AttrValue::Str(s) => s.to_owned(),
                AttrValue::Int(i) => i.to_string(),
                _ => return Err(EventError::new(attrs::CONVERSATION_ID, "must be a string")),
            };
            check_id(&id).map_err(|r| EventError::new(attrs::CONVERSATION_ID, r))?;
            Some(id)
        }
        None => None,
    };

    let error_type = match span.attribute(attrs::ERROR_TYPE) {
        Some(AttrValue::Str(s)) if !s.is_empty() => Some(sanitize_label(s)),
        Some(AttrValue::Int(i)) => Some(i.to_string()),
        _ => None,
    };
    let status = if span.status_is_error() || error_type.is_some() {
        CallStatus::Error
    } else {
        CallStatus::Success
    };

    let client_cost = match span.attribute(attrs::COST) {
        None => None,
        Some(value) => {
            let usd = match value {
                AttrValue::Double(d) => d,
                AttrValue::Int(i) => i as f64,
                AttrValue::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                    EventError::new(attrs::COST, format!("{s:?} is not a number of dollars"))
                })?,
                _ => return Err(EventError::new(attrs::COST, "must be a number of dollars")),
            };
            Some(
                Cost::from_usd(usd)
                    .map_err(|e| EventError::new(attrs::COST, format!("{usd}: {e}")))?,
            )
        }
    };

    Ok(Some(ModelCall {
        id,
        time_ms,
        provider,
        model: model.to_owned(),
        operation,
        conversation_id,
        duration_us,
        tokens,
        status,
        error_type,
        client_cost,
        computed_cost: None,
    }))
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A label-safe version of free text: other characters become `_`, cut at 128 bytes.
fn sanitize_label(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:/@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL_LEN)
        .collect()
}

#[cfg(test)]
mod tests_support {
    use super::*;

    /// 2025-12-04T10:00:00Z
    pub const NOW: i64 = 1_764_842_400_000;
    pub const START_NS: u64 = NOW as u64 * 1_000_000;

    #[derive(Clone)]
    pub struct Span {
        pub trace: Vec<u8>,
        pub span: Vec<u8>,
        pub start: u64,
        pub end: u64,
        pub error: bool,
        pub attrs: Vec<(&'static str, AttrValue<'static>)>,
    }

    impl SpanView for Span {
        fn trace_id(&self) -> &[u8] {
            &self.trace
        }
        fn span_id(&self) -> &[u8] {
            &self.span
        }
        fn name(&self) -> &str {
            "span"
        }
        fn start_unix_nanos(&self) -> u64 {
            self.start
        }
        fn end_unix_nanos(&self) -> u64 {
            self.end
        }
        fn status_is_error(&self) -> bool {
            self.error
        }
        fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
            self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
    }

    pub fn span(attrs: &[(&'static str, AttrValue<'static>)]) -> Span {
        Span {
            trace: (1..=16).collect(),
            span: vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1],
            start: START_NS,
            end: START_NS + 2_345_678_901,
            error: false,
            attrs: attrs.to_vec(),
        }
    }

    pub fn chat() -> Span {
        span(&[
            ("gen_ai.operation.name", AttrValue::Str("chat")),
            ("gen_ai.provider.name", AttrValue::Str("anthropic")),
            ("gen_ai.request.model", AttrValue::Str("claude-sonnet-4-5")),
            (
                "gen_ai.response.model",
                AttrValue::Str("claude-sonnet-4-5-20250929"),
            ),
            ("gen_ai.usage.input_tokens", AttrValue::Int(1_000)),
            ("gen_ai.usage.output_tokens", AttrValue::Int(200)),
        ])
    }

    pub fn with(mut s: Span, key: &'static str, value: AttrValue<'static>) -> Span {
        s.attrs.retain(|(k, _)| *k != key);
        s.attrs.push((key, value));
        s
    }

    pub fn without(mut s: Span, key: &str) -> Span {
        s.attrs.retain(|(k, _)| *k != key);
        s
    }

    pub fn call(s: &Span) -> ModelCall {
        match read_span(s, NOW) {
            SpanReading::ModelCall(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    pub fn rejected(s: &Span) -> EventError {
        match read_span(s, NOW) {
            SpanReading::Rejected(e) => e,
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::TokenCounts;

    #[test]
    fn a_genai_span_is_a_model_call() {
        let c = call(&chat());
        assert_eq!(c.id, "0102030405060708090a0b0c0d0e0f10-deadbeef00000001");
        assert_eq!(c.time_ms, NOW);
        assert_eq!(c.duration_us, 2_345_678);
        assert_eq!(c.provider, "anthropic");
        assert_eq!(
            c.model, "claude-sonnet-4-5-20250929",
            "the response model wins"
        );
        assert_eq!(c.operation, Operation::Chat);
        assert_eq!(c.status, CallStatus::Success);
        assert_eq!((c.tokens.input, c.tokens.output), (1_000, 200));
        assert_eq!(
            (c.client_cost, c.computed_cost, c.conversation_id),
            (None, None, None)
        );
    }

    #[test]
    fn cache_reasoning_conversation_and_cost_are_read() {
        let s = chat();
        let s = with(
            s,
            "gen_ai.usage.cache_read.input_tokens",
            AttrValue::Int(600),
        );
        let s = with(
            s,
            "gen_ai.usage.cache_creation.input_tokens",
            AttrValue::Str("100"),
        );
        let s = with(
            s,
            "gen_ai.usage.reasoning.output_tokens",
            AttrValue::Double(50.0),
        );
        let s = with(s, "gen_ai.conversation.id", AttrValue::Str("conv_abc"));
        let s = with(s, "gen_ai.usage.cost", AttrValue::Double(0.0042));
        let c = call(&s);
        assert_eq!(
            c.tokens,
            TokenCounts {
                input: 300,
                cache_read: 600,
                cache_write: 100,
                output: 150,
                reasoning: 50
            }
        );
        assert_eq!(c.conversation_id.as_deref(), Some("conv_abc"));
        assert_eq!(c.client_cost, Some(Cost::from_picodollars(4_200_000_000)));
        // The older spellings are read too.
        let old = span(&[
            ("gen_ai.system", AttrValue::Str("az.ai.openai")),
            ("gen_ai.request.model", AttrValue::Str("gpt-4o")),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(70)),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(30)),
            ("gen_ai.usage.cache_read_input_tokens", AttrValue::Int(20)),
            ("gen_ai.usage.reasoning_tokens", AttrValue::Int(10)),
            ("llm.request.type", AttrValue::Str("completion")),
        ]);
        let c = call(&old);
        assert_eq!(c.provider, "azure.ai.openai");
        assert_eq!(c.operation, Operation::TextCompletion);
        assert_eq!(
            (
                c.tokens.input,
                c.tokens.cache_read,
                c.tokens.output,
                c.tokens.reasoning
            ),
            (50, 20, 20, 10)
        );
    }

    #[test]
    fn exclusive_counts_are_recognised_when_a_part_exceeds_its_whole() {
        // Anthropic's usage passed through as is: input 21 excludes the 188,086 cached.
        let s = with(chat(), "gen_ai.usage.input_tokens", AttrValue::Int(21));
        let s = with(
            s,
            "gen_ai.usage.cache_read.input_tokens",
            AttrValue::Int(188_086),
        );
        let s = with(
            s,
            "gen_ai.usage.reasoning.output_tokens",
            AttrValue::Int(500),
        );
        let c = call(&s);
        assert_eq!(
            c.tokens,
            TokenCounts {
                input: 21,
                cache_read: 188_086,
                cache_write: 0,
                output: 200,
                reasoning: 500
            }
        );
        // Within the whole, the conventions' inclusive reading applies.
        let s = with(
            chat(),
            "gen_ai.usage.cache_read.input_tokens",
            AttrValue::Int(1_000),
        );
        assert_eq!(
            (call(&s).tokens.input, call(&s).tokens.cache_read),
            (0, 1_000)
        );
    }

    #[test]
    fn errors_come_from_the_status_or_error_type() {
        let mut s = chat();
        s.error = true;
        assert_eq!(call(&s).status, CallStatus::Error);
        let c = call(&with(
            chat(),
            "error.type",
            AttrValue::Str("openai.RateLimitError: 429 Too Many"),
        ));
        assert_eq!(c.status, CallStatus::Error);
        assert_eq!(
            c.error_type.as_deref(),
            Some("openai.RateLimitError:_429_Too_Many")
        );
    }

    #[test]
    fn spans_that_are_not_model_calls_are_dropped() {
        assert_eq!(
            read_span(&span(&[("http.method", AttrValue::Str("GET"))]), NOW),
            SpanReading::NotGenAi
        );
        // gen_ai.system without usage: not a call (e.g. an SDK's wrapper span).
        let no_usage = span(&[
            ("gen_ai.system", AttrValue::Str("openai")),
            ("gen_ai.request.model", AttrValue::Str("gpt-4o")),
        ]);
        assert_eq!(read_span(&no_usage, NOW), SpanReading::NotGenAi);
        let tool = span(&[
            ("gen_ai.operation.name", AttrValue::Str("execute_tool")),
            ("gen_ai.tool.name", AttrValue::Str("search")),
        ]);
        assert_eq!(read_span(&tool, NOW), SpanReading::NotGenAi);
        // An agent span that names its model is counted as a call.
        let agent = with(
            chat(),
            "gen_ai.operation.name",
            AttrValue::Str("invoke_agent"),
        );
        assert_eq!(call(&agent).operation, Operation::InvokeAgent);
    }

    #[test]
    fn malformed_genai_spans_are_rejected_with_the_attribute() {
        let cases: Vec<(Span, &str)> = vec![
            (
                with(chat(), "gen_ai.operation.name", AttrValue::Str("summarize")),
                "gen_ai.operation.name",
            ),
            (
                with(chat(), "gen_ai.operation.name", AttrValue::Int(1)),
                "gen_ai.operation.name",
            ),
            (
                without(
                    without(chat(), "gen_ai.request.model"),
                    "gen_ai.response.model",
                ),
                "gen_ai.request.model",
            ),
            (
                without(chat(), "gen_ai.provider.name"),
                "gen_ai.provider.name",
            ),
            (
                with(chat(), "gen_ai.usage.input_tokens", AttrValue::Int(-1)),
                "gen_ai.usage.input_tokens",
            ),
            (
                with(chat(), "gen_ai.usage.input_tokens", AttrValue::Str("many")),
                "gen_ai.usage.input_tokens",
            ),
            (
                with(chat(), "gen_ai.usage.input_tokens", AttrValue::Double(1.5)),
                "gen_ai.usage.input_tokens",
            ),
            (
                with(
                    chat(),
                    "gen_ai.usage.input_tokens",
                    AttrValue::Int(100_000_001),
                ),
                "gen_ai.usage.input_tokens",
            ),
            (
                with(chat(), "gen_ai.usage.output_tokens", AttrValue::Bool(true)),
                "gen_ai.usage.output_tokens",
            ),
            (
                with(chat(), "gen_ai.response.model", AttrValue::Str("gpt 4o")),
                "gen_ai.response.model",
            ),
            (
                with(chat(), "gen_ai.conversation.id", AttrValue::Str("")),
                "gen_ai.conversation.id",
            ),
            (
                with(chat(), "gen_ai.usage.cost", AttrValue::Double(-1.0)),
                "gen_ai.usage.cost",
            ),
            (
                with(chat(), "gen_ai.usage.cost", AttrValue::Str("cheap")),
                "gen_ai.usage.cost",
            ),
            (
                Span {
                    end: START_NS - 1,
                    ..chat()
                },
                "end_time_unix_nano",
            ),
            (
                Span {
                    end: START_NS + 86_400_000_000_001,
                    ..chat()
                },
                "end_time_unix_nano",
            ),
            (
                Span {
                    start: START_NS + 301_000_000_000,
                    end: START_NS + 302_000_000_000,
                    ..chat()
                },
                "start_time_unix_nano",
            ),
            (
                Span {
                    start: 0,
                    end: 1,
                    ..chat()
                },
                "start_time_unix_nano",
            ),
            (
                Span {
                    trace: vec![0; 16],
                    ..chat()
                },
                "trace_id",
            ),
            (
                Span {
                    span: vec![],
                    ..chat()
                },
                "span_id",
            ),
        ];
        for (s, attr) in cases {
            assert_eq!(rejected(&s).field, attr, "{:?}", s.attrs);
        }
    }
}

#[cfg(test)]
mod agreement {
    //! The event API and the span reader turn the same call into the same `ModelCall`.
    use super::tests_support::*;
    use super::*;
    use crate::event::{validate, WireEvent, WireModelCall};
    use crate::LlmEvent;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn event_api_and_spans_agree(
            exclusive in (0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000),
            duration_us in 0u64..86_400_000_000,
            ago_ms in 0i64..86_400_000,
            error in any::<bool>(),
        ) {
            let (input, output, cache_read, cache_write, reasoning) = exclusive;
            let start_ms = NOW - ago_ms;
            let wire = WireEvent::ModelCall(WireModelCall {
                id: "x".into(),
                time: time::OffsetDateTime::from_unix_timestamp_nanos(start_ms as i128 * 1_000_000)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
                provider: "gemini".into(),
                model: "gemini-2.5-pro".into(),
                operation: "generate_content".into(),
                conversation_id: Some("conv-1".into()),
                duration_ms: serde_json::Number::from_f64(duration_us as f64 / 1000.0).unwrap(),
                input_tokens: (input + cache_read + cache_write).into(),
                output_tokens: (output + reasoning).into(),
                cache_read_tokens: Some(cache_read.into()),
                cache_write_tokens: Some(cache_write.into()),
                reasoning_tokens: Some(reasoning.into()),
                status: Some(if error { "error" } else { "success" }.into()),
                error_type: None,
                cost_usd: None,
            });
            let LlmEvent::ModelCall(from_event) = validate(wire, NOW).unwrap() else { unreachable!() };
            let s = Span {
                start: start_ms as u64 * 1_000_000,
                end: start_ms as u64 * 1_000_000 + duration_us * 1_000,
                error,
                ..span(&[
                    ("gen_ai.operation.name", AttrValue::Str("generate_content")),
                    ("gen_ai.system", AttrValue::Str("gemini")),
                    ("gen_ai.request.model", AttrValue::Str("gemini-2.5-pro")),
                    ("gen_ai.conversation.id", AttrValue::Str("conv-1")),
                ])
            };
            let s = with(s, "gen_ai.usage.input_tokens", AttrValue::Int((input + cache_read + cache_write) as i64));
            let s = with(s, "gen_ai.usage.output_tokens", AttrValue::Int((output + reasoning) as i64));
            let s = with(s, "gen_ai.usage.cache_read.input_tokens", AttrValue::Int(cache_read as i64));
            let s = with(s, "gen_ai.usage.cache_creation.input_tokens", AttrValue::Int(cache_write as i64));
            let s = with(s, "gen_ai.usage.reasoning.output_tokens", AttrValue::Int(reasoning as i64));
            let SpanReading::ModelCall(from_span) = read_span(&s, NOW) else { panic!() };
            let from_span = ModelCall { id: "x".into(), ..*from_span };
            prop_assert_eq!(from_span, from_event);
        }
    }
}
