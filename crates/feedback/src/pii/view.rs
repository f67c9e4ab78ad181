//! Findings as JSON: Presidio's `RecognizerResult` shape and the API's shape, both with
//! character offsets (Unicode scalar values, as Python `str` indices count).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::Finding;

/// A finding as Presidio's analyzer reports it (`RecognizerResult.to_dict()` without the
/// explanation), so pipelines reading Presidio's output can read ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresidioResult {
    /// Presidio entity name (`EMAIL_ADDRESS`).
    pub entity_type: String,
    /// Start, in characters.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
    /// Confidence in `[0, 1]`.
    pub score: f32,
}

/// A finding as `GET /api/v1/feedback/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiFinding {
    /// Entity name (`EMAIL_ADDRESS`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Start, in characters.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
    /// Confidence in `[0, 1]`.
    pub confidence: f32,
}

/// The findings in Presidio's shape.
///
/// ```
/// use feedback::pii::{presidio_results, Detector};
/// let text = "Müller: müller@example.de";
/// let found = Detector::default().detect(text);
/// let json = serde_json::to_string(&presidio_results(text, &found)).unwrap();
/// assert_eq!(json, r#"[{"entity_type":"EMAIL_ADDRESS","start":8,"end":25,"score":1.0}]"#);
/// ```
pub fn presidio_results(text: &str, findings: &[Finding]) -> Vec<PresidioResult> {
    char_spans(text, findings)
        .map(|(finding, span)| PresidioResult {
            entity_type: finding.entity.as_str().to_owned(),
            start: span.start,
            end: span.end,
            score: two_decimals(finding.confidence),
        })
        .collect()
}

/// The findings in the API's shape.
pub fn api_findings(text: &str, findings: &[Finding]) -> Vec<ApiFinding> {
    char_spans(text, findings)
        .map(|(finding, span)| ApiFinding {
            entity_type: finding.entity.as_str().to_owned(),
            start: span.start,
            end: span.end,
            confidence: two_decimals(finding.confidence),
        })
        .collect()
}

/// Confidences are sums of f32 constants (0.85 + 0.1 is 0.95000005 in f32); two decimals is
/// all they mean, and it keeps the JSON readable.
fn two_decimals(confidence: f32) -> f32 {
    (confidence * 100.0).round() / 100.0
}

/// A byte range of `text` as a character range (ends past the text are clamped; an end inside
/// a character counts that character).
pub fn char_span(text: &str, span: &Range<usize>) -> Range<usize> {
    let bytes = text.as_bytes();
    let start = span.start.min(bytes.len());
    let end = span.end.clamp(start, bytes.len());
    let chars = count_chars(&bytes[..start]);
    chars..chars + count_chars(&bytes[start..end])
}

/// Characters starting in `bytes` (bytes that are not UTF-8 continuation bytes).
fn count_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count()
}

/// Character spans of findings, walking the text once when they are sorted by start.
fn char_spans<'a>(
    text: &'a str,
    findings: &'a [Finding],
) -> impl Iterator<Item = (&'a Finding, Range<usize>)> + 'a {
    let bytes = text.as_bytes();
    let mut byte = 0;
    let mut chars = 0;
    findings.iter().map(move |finding| {
        let start = finding.span.start.min(bytes.len());
        let end = finding.span.end.clamp(start, bytes.len());
        if start < byte {
            byte = 0;
            chars = 0;
        }
        chars += count_chars(&bytes[byte..start]);
        byte = start;
        (finding, chars..chars + count_chars(&bytes[start..end]))
    })
}
