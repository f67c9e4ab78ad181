//! Parsing and validating interaction events for `POST /api/v1/interactions`.
//!
//! A body is a JSON array of events or NDJSON (one event per line). Each event is checked on
//! its own: a bad one is rejected with its index, the field at fault and a reason, and the rest
//! go on. Sentiment is derived here, once, at ingest: an explicit `sentiment` in [-1, 1] when the
//! event carries one (teams with their own model send it; the rating and text are then stored
//! but not scored), else the mean of the rating's `(r - 3) / 2` and the text's VADER compound
//! score, whichever exist (see `weber::combined_sentiment` and `weber::event_sentiment`).

use serde::Serialize;
use serde_json::{Map, Value};
use store::NewInteraction;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Most events one request may carry; more is 413.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
const MAX_ID_BYTES: usize = 256;
const MAX_TEXT_BYTES: usize = 32 * 1024;
const MAX_CHANNEL_BYTES: usize = 64;
/// Latest accepted event time: 9999-12-31T23:59:59.999Z.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Why one event was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RejectedEvent {
    /// Position in the array, or 0-based line number in NDJSON.
    pub index: usize,
    /// The event's id, when it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The field at fault; absent when the event as a whole is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

/// How the body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    JsonArray,
    NdJson,
}

impl Framing {
    /// `application/json` (or `+json`) is an array; `application/x-ndjson`, `application/ndjson`
    /// and `application/jsonl` are NDJSON. Anything else is `None` (415).
    pub fn from_content_type(content_type: Option<&str>) -> Option<Framing> {
        let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Some(Framing::JsonArray),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Framing::NdJson)
            }
            m if m.starts_with("application/") && m.ends_with("+json") => Some(Framing::JsonArray),
            _ => None,
        }
    }
}

/// The whole body could not be split into events.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// Not JSON, or JSON that is not an array.
    Malformed(String),
    /// More than [`MAX_EVENTS_PER_REQUEST`] events.
    TooMany(usize),
    /// An object gives a field twice: its path (`[3].user_id`).
    Duplicate(String),
}

/// One event of a body: its index (array position, or 0-based NDJSON line number) and its JSON
/// value, or why the line is unreadable.
pub type Item = (usize, Result<Value, String>);

/// Splits a body into its events.
pub fn split_body(body: &[u8], framing: Framing) -> Result<Vec<Item>, BodyError> {
    match framing {
        Framing::JsonArray => {
            let value = crate::extract::parse_strict(body).map_err(|e| match e {
                crate::extract::StrictError::Duplicate(path) => BodyError::Duplicate(path),
                crate::extract::StrictError::Json(e) => {
                    BodyError::Malformed(format!("the body is not valid JSON: {e}"))
                }
            })?;
            match value {
                Value::Array(items) if items.len() > MAX_EVENTS_PER_REQUEST => {
                    Err(BodyError::TooMany(items.len()))
                }
                Value::Array(items) => Ok(items.into_iter().map(Ok).enumerate().collect()),
                _ => Err(BodyError::Malformed(
                    "the body must be a JSON array of events (or NDJSON, one event per line, \
                     with Content-Type: application/x-ndjson)"
                        .to_owned(),
                )),
            }
        }
        Framing::NdJson => {
            let text = std::str::from_utf8(body)
                .map_err(|e| BodyError::Malformed(format!("the NDJSON body is not UTF-8: {e}")))?;
            let lines: Vec<&str> = text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect();
            // A final newline does not start another event; blank lines are not events either,
            // but they keep their line numbers so indexes match what the client sent.
            let events = lines.iter().filter(|l| !l.trim().is_empty()).count();
            if events > MAX_EVENTS_PER_REQUEST {
                return Err(BodyError::TooMany(events));
            }
            Ok(lines
                .iter()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(n, line)| {
                    let value =
                        crate::extract::parse_strict(line.as_bytes()).map_err(|e| match e {
                            crate::extract::StrictError::Duplicate(path) => {
                                format!(
                                    "field `{path}` is given more than once; give each field once"
                                )
                            }
                            crate::extract::StrictError::Json(e) => format!("invalid JSON: {e}"),
                        });
                    (n, value)
                })
                .collect())
        }
    }
}

/// A valid event before its sentiment is derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub user_id: String,
    pub time_ms: i64,
    /// A precomputed sentiment in [-1, 1]; when present it is the event's sentiment.
    pub sentiment: Option<f64>,
    pub rating: Option<f64>,
    pub text: Option<String>,
    pub item_id: Option<String>,
    pub verified_purchase: Option<bool>,
    pub helpful_votes: Option<i64>,
    pub channel: Option<String>,
}

impl Event {
    /// Derives the sentiment (VADER for text, unless an explicit sentiment makes it moot) and
    /// makes the stored form.
    pub fn score(self, analyzer: &mut sentiment::Analyzer) -> NewInteraction {
        // An explicit sentiment wins, so scoring the text would be wasted work.
        let compound = match self.sentiment {
            Some(_) => None,
            None => self.text.as_deref().map(|t| analyzer.score(t).compound),
        };
        // Every input was range-checked in `parse_event`, and VADER's compound is in [-1, 1].
        let sentiment = weber::event_sentiment(self.sentiment, self.rating, compound)
            .ok()
            .flatten()
            .unwrap_or(0.0);
        NewInteraction {
            event_id: self.event_id,
            user_id: self.user_id,
            event_time_ms: self.time_ms,
            sentiment,
            rating: self.rating,
            text: self.text,
            item_id: self.item_id,
            verified_purchase: self.verified_purchase,
            helpful_votes: self.helpful_votes,
            channel: self.channel,
        }
    }
}

type FieldError = (Option<&'static str>, String);

/// Validates one event object.
pub fn parse_event(value: Value) -> Result<Event, (Option<String>, FieldError)> {
    let Value::Object(mut obj) = value else {
        return Err((None, (None, "each event must be a JSON object".to_owned())));
    };
    let event_id = obj
        .get("event_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
        .map(str::to_owned);
    let id_for_error = event_id.clone();
    parse_fields(&mut obj, event_id).map_err(|e| (id_for_error, e))
}

fn parse_fields(
    obj: &mut Map<String, Value>,
    event_id: Option<String>,
) -> Result<Event, FieldError> {
    const KNOWN: [&str; 10] = [
        "event_id",
        "user_id",
        "timestamp",
        "sentiment",
        "rating",
        "text",
        "item_id",
        "verified_purchase",
        "helpful_votes",
        "channel",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err((
            None,
            format!(
                "unknown field `{unknown}` (expected one of: {})",
                KNOWN.join(", ")
            ),
        ));
    }
    let event_id = event_id.ok_or_else(|| {
        (
            Some("event_id"),
            format!("event_id is required: a string of 1 to {MAX_ID_BYTES} bytes"),
        )
    })?;
    no_nul("event_id", &event_id)?;
    let user_id = required_id(obj, "user_id")?;
    let time_ms = epoch_ms_field(obj.get("timestamp"), "timestamp")?;
    let rating = match present(obj, "rating") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|r| (1.0..=5.0).contains(r))
                .ok_or_else(|| {
                    (
                        Some("rating"),
                        format!("rating must be a number from 1 to 5, got {v}"),
                    )
                })?,
        ),
    };
    let sentiment = match present(obj, "sentiment") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|s| s.is_finite() && (-1.0..=1.0).contains(s))
                .ok_or_else(|| {
                    (
                        Some("sentiment"),
                        format!("sentiment must be a finite number from -1 to 1, got {v}"),
                    )
                })?,
        ),
    };
    let text = match obj.remove("text").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::String(t)) if t.trim().is_empty() => {
            return Err((Some("text"), "text must not be empty".to_owned()))
        }
        Some(Value::String(t)) if t.len() > MAX_TEXT_BYTES => {
            return Err((
                Some("text"),
                format!(
                    "text must be at most {MAX_TEXT_BYTES} bytes (got {})",
                    t.len()
                ),
            ))
        }
        Some(Value::String(t)) => {
            no_nul("text", &t)?;
            Some(t)
        }
        Some(other) => return Err((Some("text"), format!("text must be a string, got {other}"))),
    };
    if sentiment.is_none() && rating.is_none() && text.is_none() {
        return Err((
            Some("rating"),
            "an event needs a rating (1 to 5), a text, a sentiment (-1 to 1), or several of them"
                .to_owned(),
        ));
    }
    let item_id = optional_string(obj, "item_id", MAX_ID_BYTES)?;
    let channel = optional_string(obj, "channel", MAX_CHANNEL_BYTES)?;
    let verified_purchase = match present(obj, "verified_purchase") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            return Err((
                Some("verified_purchase"),
                format!("verified_purchase must be true or false, got {v}"),
            ))
        }
    };
    let helpful_votes = match present(obj, "helpful_votes") {
        None => None,
        Some(v) => Some(v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            (
                Some("helpful_votes"),
                format!("helpful_votes must be a non-negative integer, got {v}"),
            )
        })?),
    };
    Ok(Event {
        event_id,
        user_id,
        time_ms,
        sentiment,
        rating,
        text,
        item_id,
        verified_purchase,
        helpful_votes,
        channel,
    })
}

/// The value of a field that is present and not null.
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn required_id(obj: &Map<String, Value>, field: &'static str) -> Result<String, FieldError> {
    match present(obj, field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => {
            no_nul(field, s)?;
            Ok(s.clone())
        }
        _ => Err((
            Some(field),
            format!("{field} is required: a string of 1 to {MAX_ID_BYTES} bytes"),
        )),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match present(obj, field) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => {
            no_nul(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err((
            Some(field),
            format!("{field} must be a string of 1 to {max} bytes"),
        )),
    }
}

/// PostgreSQL text cannot hold NUL, so a NUL would fail the whole batch at the store; it is
/// refused here, per event, on both backends alike.
fn no_nul(field: &'static str, s: &str) -> Result<(), FieldError> {
    if s.contains('\0') {
        return Err((
            Some(field),
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(())
}

/// A required time field: RFC 3339 text (any offset) or epoch milliseconds, between 1970 and
/// 9999. Events' `timestamp` and purchases' `occurred_at` share it.
pub(crate) fn epoch_ms_field(
    value: Option<&Value>,
    field: &'static str,
) -> Result<i64, (Option<&'static str>, String)> {
    let bad = |detail: String| (Some(field), detail);
    let ms = match value.filter(|v| !v.is_null()) {
        None => {
            return Err(bad(format!(
                "{field} is required: RFC 3339 text or epoch milliseconds"
            )))
        }
        Some(Value::String(s)) => {
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| bad(format!("{field} `{s}` is not RFC 3339: {e}")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| bad(format!("{field} `{s}` is out of range")))?
        }
        Some(v) => v.as_i64().ok_or_else(|| {
            bad(format!(
                "{field} must be RFC 3339 text or whole epoch milliseconds, got {v}"
            ))
        })?,
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(bad(format!(
            "{field} must lie between 1970-01-01 and 9999-12-31 (got {ms} ms)"
        )));
    }
    Ok(ms)
}

/// Validates every event of a split body: the valid ones (with their index) and the rejections.
pub fn validate_all(items: Vec<Item>) -> (Vec<(usize, Event)>, Vec<RejectedEvent>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items {
        match item
            .map_err(|reason| (None, (None, reason)))
            .and_then(parse_event)
        {
            Ok(event) => valid.push((index, event)),
            Err((event_id, (field, reason))) => rejected.push(RejectedEvent {
                index,
                event_id,
                field: field.map(str::to_owned),
                reason,
            }),
        }
    }
    (valid, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reject(v: Value) -> (Option<String>, Option<&'static str>, String) {
        let (id, (field, reason)) = parse_event(v).unwrap_err();
        (id, field, reason)
    }

    #[test]
    fn events_parse_with_both_timestamp_forms() {
        let e = parse_event(json!({"event_id":"e1","user_id":"u","timestamp":"2024-01-02T03:04:05.678+01:00","rating":4}))
            .unwrap();
        assert_eq!(e.time_ms, 1_704_161_045_678);
        let e = parse_event(
            json!({"event_id":"e1","user_id":"u","timestamp":1_704_161_045_678i64,"text":"ok",
            "item_id":"i","verified_purchase":true,"helpful_votes":2,"channel":"web"}),
        )
        .unwrap();
        assert_eq!((e.time_ms, e.helpful_votes), (1_704_161_045_678, Some(2)));
        let scored = e.score(&mut sentiment::Analyzer::new());
        assert_eq!(scored.sentiment, sentiment::score("ok").compound);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = || json!({"event_id":"e1","user_id":"u","timestamp":1,"rating":3});
        let cases: Vec<(Value, Option<&str>, &str)> = vec![
            (json!(3), None, "JSON object"),
            (
                json!({"user_id":"u","timestamp":1,"rating":3}),
                Some("event_id"),
                "required",
            ),
            (
                {
                    let mut v = base();
                    v["user_id"] = json!("");
                    v
                },
                Some("user_id"),
                "1 to 256",
            ),
            (
                {
                    let mut v = base();
                    v["timestamp"] = json!("yesterday");
                    v
                },
                Some("timestamp"),
                "RFC 3339",
            ),
            (
                {
                    let mut v = base();
                    v["timestamp"] = json!(1.5);
                    v
                },
                Some("timestamp"),
                "whole epoch",
            ),
            (
                {
                    let mut v = base();
                    v["timestamp"] = json!(-1);
                    v
                },
                Some("timestamp"),
                "between",
            ),
            (
                {
                    let mut v = base();
                    v["rating"] = json!(6);
                    v
                },
                Some("rating"),
                "1 to 5",
            ),
            (
                {
                    let mut v = base();
                    v["rating"] = json!("5");
                    v
                },
                Some("rating"),
                "1 to 5",
            ),
            (
                {
                    let mut v = base();
                    v["rating"] = Value::Null;
                    v
                },
                Some("rating"),
                "rating (1 to 5), a text, a sentiment",
            ),
            (
                {
                    let mut v = base();
                    v["sentiment"] = json!(1.5);
                    v
                },
                Some("sentiment"),
                "-1 to 1",
            ),
            (
                {
                    let mut v = base();
                    v["sentiment"] = json!("0.5");
                    v
                },
                Some("sentiment"),
                "-1 to 1",
            ),
            (
                {
                    let mut v = base();
                    v["text"] = json!("  ");
                    v
                },
                Some("text"),
                "empty",
            ),
            (
                {
                    let mut v = base();
                    v["text"] = json!(7);
                    v
                },
                Some("text"),
                "string",
            ),
            (
                {
                    let mut v = base();
                    v["helpful_votes"] = json!(-2);
                    v
                },
                Some("helpful_votes"),
                "non-negative",
            ),
            (
                {
                    let mut v = base();
                    v["verified_purchase"] = json!("yes");
                    v
                },
                Some("verified_purchase"),
                "true or false",
            ),
            (
                {
                    let mut v = base();
                    v["colour"] = json!("red");
                    v
                },
                None,
                "unknown field `colour`",
            ),
            (
                {
                    let mut v = base();
                    v["user_id"] = json!("a\u{0}b");
                    v
                },
                Some("user_id"),
                "NUL",
            ),
            (
                {
                    let mut v = base();
                    v["text"] = json!("nice\u{0}");
                    v
                },
                Some("text"),
                "NUL",
            ),
        ];
        for (value, field, has) in cases {
            let (id, got_field, reason) = reject(value.clone());
            assert_eq!(got_field, field, "{value}: {reason}");
            assert!(reason.contains(has), "{value}: {reason}");
            if value.get("event_id").is_some() {
                assert_eq!(id.as_deref(), Some("e1"), "{value}");
            }
        }
    }

    #[test]
    fn an_explicit_sentiment_wins_over_rating_and_text() {
        let mut analyzer = sentiment::Analyzer::new();
        let alone =
            parse_event(json!({"event_id":"e","user_id":"u","timestamp":1,"sentiment":-0.25}))
                .unwrap()
                .score(&mut analyzer);
        assert_eq!(
            (alone.sentiment, alone.rating, alone.text),
            (-0.25, None, None)
        );
        let all = parse_event(
            json!({"event_id":"e","user_id":"u","timestamp":1,"sentiment":0.3,
            "rating":1,"text":"awful, terrible, the worst"}),
        )
        .unwrap()
        .score(&mut analyzer);
        assert_eq!(all.sentiment, 0.3);
        // Rating and text are kept as sent even though they were not scored.
        assert_eq!(all.rating, Some(1.0));
        assert_eq!(all.text.as_deref(), Some("awful, terrible, the worst"));
        // A null sentiment is an absent one.
        let derived = parse_event(
            json!({"event_id":"e","user_id":"u","timestamp":1,"sentiment":null,"rating":5}),
        )
        .unwrap()
        .score(&mut analyzer);
        assert_eq!(derived.sentiment, 1.0);
    }

    #[test]
    fn bodies_split_by_framing_and_are_bounded() {
        assert_eq!(
            Framing::from_content_type(Some("application/x-ndjson; charset=utf-8")),
            Some(Framing::NdJson)
        );
        assert_eq!(Framing::from_content_type(Some("text/plain")), None);
        let nd = b"{\"a\":1}\r\n\nnot json\n{\"b\":2}\n";
        let items = split_body(nd, Framing::NdJson).unwrap();
        let lines: Vec<usize> = items.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![0, 2, 3], "blank lines keep their numbers");
        assert!(items[1].1.as_ref().unwrap_err().contains("invalid JSON"));
        assert!(matches!(
            split_body(b"{\"a\":1}", Framing::JsonArray),
            Err(BodyError::Malformed(m)) if m.contains("JSON array")
        ));
        let many = format!("[{}]", vec!["{}"; MAX_EVENTS_PER_REQUEST + 1].join(","));
        assert_eq!(
            split_body(many.as_bytes(), Framing::JsonArray),
            Err(BodyError::TooMany(MAX_EVENTS_PER_REQUEST + 1))
        );
        let (valid, rejected) = validate_all(vec![
            (
                0,
                Ok(json!({"event_id":"a","user_id":"u","timestamp":1,"rating":5})),
            ),
            (4, Err("invalid JSON: x".into())),
        ]);
        assert_eq!((valid.len(), rejected[0].index), (1, 4));
    }
}
