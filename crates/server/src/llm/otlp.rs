//! OTLP/HTTP trace export requests (`POST /v1/traces`): decoding, reading spans as model calls,
//! and the answers the OTLP/HTTP specification asks for.
//!
//! Both encodings use the `opentelemetry-proto` crate's messages: protobuf through `prost`, JSON
//! through the crate's serde support, which follows the OTLP/JSON rules (lowerCamelCase field
//! names, trace and span ids as hex strings, 64-bit integers as strings or numbers, enums as
//! integers). Spans are read in place through [`OtlpSpan`], a [`llm::genai::SpanView`] over the
//! decoded message and its resource, with nothing copied.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;

use llm::genai::{AttrValue, SpanView};

/// How an OTLP body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `application/x-protobuf` or `application/json` (parameters ignored); anything else is
    /// `None` (415).
    pub fn from_content_type(content_type: Option<&str>) -> Option<Encoding> {
        let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not gzip, not protobuf, or not OTLP/JSON of the right shape.
    #[error("{0}")]
    Malformed(String),
    /// The decompressed body is larger than the limit.
    #[error("the decompressed body is larger than {0} bytes")]
    TooLarge(usize),
    /// A `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding `{0}`; send gzip or no encoding")]
    UnsupportedEncoding(String),
}

/// Undoes `Content-Encoding` (gzip or identity), refusing to inflate past `limit` bytes.
pub fn decompress(
    body: bytes::Bytes,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<bytes::Bytes, DecodeError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(body),
        Some(e) if e.is_empty() || e == "identity" => Ok(body),
        Some(e) if e == "gzip" || e == "x-gzip" => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            // One byte past the limit tells "exactly the limit" from "more".
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::Malformed(format!("the gzip body is corrupt: {e}")))?;
            if out.len() > limit {
                return Err(DecodeError::TooLarge(limit));
            }
            Ok(out.into())
        }
        Some(other) => Err(DecodeError::UnsupportedEncoding(other)),
    }
}

/// Decodes an export request.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            DecodeError::Malformed(format!(
                "the body is not an OTLP ExportTraceServiceRequest in protobuf: {e}"
            ))
        }),
        Encoding::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(DecodeError::Malformed(
                    "the body is empty; send an OTLP/JSON ExportTraceServiceRequest".into(),
                ));
            }
            serde_json::from_slice(body).map_err(|e| {
                DecodeError::Malformed(format!(
                    "the body is not an OTLP/JSON ExportTraceServiceRequest: {e}"
                ))
            })
        }
    }
}

/// Every span of a request with its resource's attributes, in order.
pub fn spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = OtlpSpan<'_>> {
    request.resource_spans.iter().flat_map(|rs| {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        rs.scope_spans
            .iter()
            .flat_map(|ss| ss.spans.iter())
            .map(move |span| OtlpSpan { span, resource })
    })
}

/// How many spans a request carries.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum()
}

/// One decoded span seen with its resource: a [`SpanView`] that borrows both.
#[derive(Debug, Clone, Copy)]
pub struct OtlpSpan<'a> {
    pub span: &'a Span,
    pub resource: &'a [KeyValue],
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<AttrValue<'a>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            any_value::Value::StringValue(s) => AttrValue::Str(s),
            any_value::Value::IntValue(i) => AttrValue::Int(*i),
            any_value::Value::DoubleValue(d) => AttrValue::Double(*d),
            any_value::Value::BoolValue(b) => AttrValue::Bool(*b),
            _ => AttrValue::Other,
        })
}

impl SpanView for OtlpSpan<'_> {
    fn trace_id(&self) -> &[u8] {
        &self.span.trace_id
    }

    fn span_id(&self) -> &[u8] {
        &self.span.span_id
    }

    fn name(&self) -> &str {
        &self.span.name
    }

    fn start_unix_nanos(&self) -> u64 {
        self.span.start_time_unix_nano
    }

    fn end_unix_nanos(&self) -> u64 {
        self.span.end_time_unix_nano
    }

    fn status_is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }

    fn attribute(&self, key: &str) -> Option<AttrValue<'_>> {
        find(&self.span.attributes, key).or_else(|| find(self.resource, key))
    }
}

/// The success answer: empty when every span was taken, else the partial-success message with
/// the number of rejected spans and why.
pub fn success(rejected_spans: usize, error_message: String, encoding: Encoding) -> Vec<u8> {
    let response = ExportTraceServiceResponse {
        partial_success: (rejected_spans > 0 || !error_message.is_empty()).then(|| {
            ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected_spans).unwrap_or(i64::MAX),
                error_message,
            }
        }),
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers. Only `code` and `message` are
/// sent (`details` is optional), so the message is written here rather than pulled in from a
/// googleapis crate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The OTLP/HTTP trace export path. Every error answered on it, the rate limiter's and the
/// envelope's included, is a `google.rpc.Status`, never a problem.
pub const TRACES_PATH: &str = "/v1/traces";

/// `google.rpc.Code` values used in answers.
pub mod rpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;

    /// The code for an HTTP error status, as OTLP/HTTP clients read it.
    pub fn for_status(status: axum::http::StatusCode) -> i32 {
        match status.as_u16() {
            401 => UNAUTHENTICATED,
            403 => PERMISSION_DENIED,
            413 | 429 => RESOURCE_EXHAUSTED,
            503 => UNAVAILABLE,
            s if s >= 500 => INTERNAL,
            _ => INVALID_ARGUMENT,
        }
    }
}

impl RpcStatus {
    /// The status encoded like the request.
    pub fn encode_as(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&serde_json::json!({
                "code": self.code,
                "message": self.message,
            }))
            .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn span_attributes_fall_back_to_the_resource() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "gen_ai.provider.name",
                            any_value::Value::StringValue("openai".into()),
                        ),
                        kv(
                            "gen_ai.request.model",
                            any_value::Value::StringValue("res".into()),
                        ),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        attributes: vec![
                            kv(
                                "gen_ai.request.model",
                                any_value::Value::StringValue("gpt".into()),
                            ),
                            kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(7)),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let decoded = decode(&bytes, Encoding::Protobuf).unwrap();
        assert_eq!(span_count(&decoded), 1);
        let span = spans(&decoded).next().unwrap();
        assert_eq!(
            span.attribute("gen_ai.request.model"),
            Some(AttrValue::Str("gpt"))
        );
        assert_eq!(
            span.attribute("gen_ai.provider.name"),
            Some(AttrValue::Str("openai"))
        );
        assert_eq!(
            span.attribute("gen_ai.usage.input_tokens"),
            Some(AttrValue::Int(7))
        );
        assert_eq!(span.attribute("missing"), None);
    }

    #[test]
    fn otlp_json_rules_are_followed() {
        // Hex ids, camelCase, int64 as strings, enums as integers.
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"chat gpt","kind":3,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,"status":{"code":2},
            "attributes":[{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}}]}]}]}]}"#;
        let decoded = decode(body, Encoding::Json).unwrap();
        let span = spans(&decoded).next().unwrap();
        assert_eq!(span.trace_id().len(), 16);
        assert_eq!(span.span_id().len(), 8);
        assert_eq!(span.start_unix_nanos(), 1_544_712_660_000_000_000);
        assert_eq!(span.end_unix_nanos(), 1_544_712_661_000_000_000);
        assert!(span.status_is_error());
        assert_eq!(
            span.attribute("gen_ai.usage.input_tokens"),
            Some(AttrValue::Int(12))
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(decode(b"\xff\xff\xff", Encoding::Protobuf).is_err());
        assert!(decode(br#"{"resourceSpans": 3}"#, Encoding::Json).is_err());
        assert!(decode(b"", Encoding::Json).is_err());
    }

    #[test]
    fn gzip_is_inflated_up_to_the_limit_only() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[0u8; 10_000]).unwrap();
        let packed = bytes::Bytes::from(gz.finish().unwrap());
        assert_eq!(
            decompress(packed.clone(), Some("gzip"), 10_000)
                .unwrap()
                .len(),
            10_000
        );
        assert_eq!(
            decompress(packed, Some("gzip"), 9_999),
            Err(DecodeError::TooLarge(9_999))
        );
        assert!(matches!(
            decompress(bytes::Bytes::from_static(b"x"), Some("br"), 10),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn partial_success_round_trips() {
        let bytes = success(2, "why".into(), Encoding::Protobuf);
        let back = ExportTraceServiceResponse::decode(&bytes[..]).unwrap();
        assert_eq!(back.partial_success.unwrap().rejected_spans, 2);
        assert!(success(0, String::new(), Encoding::Protobuf).is_empty());
        let json: serde_json::Value =
            serde_json::from_slice(&success(1, "x".into(), Encoding::Json)).unwrap();
        assert_eq!(json["partialSuccess"]["errorMessage"], "x");
    }
}
