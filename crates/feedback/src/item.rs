//! The feedback item and its validation.
//!
//! Clients send a [`RawFeedbackItem`] (JSON; every field is read as a loose JSON value so that
//! [`validate`] can name *every* failing field at once instead of stopping at the first type
//! error). [`validate`] turns it into a [`FeedbackItem`] or a list of [`FieldError`]s.
//!
//! ```
//! use feedback::item::{validate, RawFeedbackItem};
//! let raw: RawFeedbackItem = serde_json::from_str(
//!     r#"{"user_id": "u1", "type": "review", "rating": 7, "text": "great\u0000"}"#,
//! ).unwrap();
//! let errors = validate(raw, "fb-1", 1_700_000_000_000).unwrap_err();
//! let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
//! assert_eq!(fields, ["rating", "text"]);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted text, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest item or user id, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest region label, in bytes.
pub const MAX_REGION_BYTES: usize = 32;
/// Longest locale tag, in bytes (RFC 5646 recommends supporting at least 35).
pub const MAX_LOCALE_BYTES: usize = 35;
/// Largest metadata object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 4_096;
/// Deepest nesting of metadata (the top-level object is depth 1).
pub const MAX_METADATA_DEPTH: usize = 4;
/// Most keys in the metadata, counted over all nested objects.
pub const MAX_METADATA_KEYS: usize = 64;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// How far `occurred_at_ms` may lie after the receiving time (client clock skew).
pub const MAX_FUTURE_SKEW_MS: i64 = 3_600_000;
/// How far `occurred_at_ms` may lie before the receiving time: ten years, the seed's research
/// retention (3,650 days); anything older cannot be kept anyway.
pub const MAX_AGE_MS: i64 = 3_650 * 86_400_000;

/// What kind of feedback an item is (`type` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// A product or service review.
    Review,
    /// A bare rating, perhaps with a comment.
    Rating,
    /// An answer to a survey.
    Survey,
    /// A support conversation or ticket.
    Support,
    /// A reported defect.
    BugReport,
    /// A wish.
    FeatureRequest,
    /// A complaint.
    Complaint,
    /// Praise.
    Praise,
    /// Anything else.
    Other,
}

impl FeedbackKind {
    /// Every kind, in declaration order.
    pub const ALL: [FeedbackKind; 9] = [
        FeedbackKind::Review,
        FeedbackKind::Rating,
        FeedbackKind::Survey,
        FeedbackKind::Support,
        FeedbackKind::BugReport,
        FeedbackKind::FeatureRequest,
        FeedbackKind::Complaint,
        FeedbackKind::Praise,
        FeedbackKind::Other,
    ];

    /// The wire name (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Review => "review",
            FeedbackKind::Rating => "rating",
            FeedbackKind::Survey => "survey",
            FeedbackKind::Support => "support",
            FeedbackKind::BugReport => "bug_report",
            FeedbackKind::FeatureRequest => "feature_request",
            FeedbackKind::Complaint => "complaint",
            FeedbackKind::Praise => "praise",
            FeedbackKind::Other => "other",
        }
    }

    /// The kind of a wire name.
    pub fn parse(name: &str) -> Option<FeedbackKind> {
        FeedbackKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for FeedbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A web page.
    Web,
    /// A mobile app.
    Mobile,
    /// E-mail.
    Email,
    /// Chat.
    Chat,
    /// A phone call (transcribed).
    Phone,
    /// A survey tool.
    Survey,
    /// Sent directly through the API (the default).
    Api,
    /// Anything else.
    Other,
}

impl Channel {
    /// Every channel, in declaration order.
    pub const ALL: [Channel; 8] = [
        Channel::Web,
        Channel::Mobile,
        Channel::Email,
        Channel::Chat,
        Channel::Phone,
        Channel::Survey,
        Channel::Api,
        Channel::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Phone => "phone",
            Channel::Survey => "survey",
            Channel::Api => "api",
            Channel::Other => "other",
        }
    }

    /// The channel of a wire name.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feedback item as received, before validation.
///
/// Every known field is a loose JSON value (checked by [`validate`]); any other field lands in
/// `unknown` and is rejected by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RawFeedbackItem {
    /// Client-chosen id (idempotency key); when absent the caller assigns one.
    #[serde(default)]
    pub id: Option<Value>,
    /// Who gave the feedback (required).
    #[serde(default)]
    pub user_id: Option<Value>,
    /// The [`FeedbackKind`] name (required).
    #[serde(default, rename = "type")]
    pub kind: Option<Value>,
    /// The [`Channel`] name (default `api`).
    #[serde(default)]
    pub channel: Option<Value>,
    /// Whole number 1 to 5.
    #[serde(default)]
    pub rating: Option<Value>,
    /// Free text, at most [`MAX_TEXT_CHARS`] characters.
    #[serde(default)]
    pub text: Option<Value>,
    /// BCP 47 language tag (`en`, `pt-BR`, `zh-Hant-TW`).
    #[serde(default)]
    pub locale: Option<Value>,
    /// Short region label (`eu-west`, `US`).
    #[serde(default)]
    pub region: Option<Value>,
    /// A JSON object of client data, bounded in size, depth and keys.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// When the feedback was given, Unix milliseconds (default: when it was received).
    #[serde(default)]
    pub occurred_at_ms: Option<Value>,
    /// Fields this type does not know; each is an error.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// A validated feedback item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackItem {
    /// The item id: the client's, else the one the caller assigned.
    pub id: String,
    /// Who gave the feedback.
    pub user_id: String,
    /// What kind of feedback it is.
    #[serde(rename = "type")]
    pub kind: FeedbackKind,
    /// Where it came from.
    pub channel: Channel,
    /// 1 to 5, if given.
    pub rating: Option<u8>,
    /// The free text, if given and not blank.
    pub text: Option<String>,
    /// BCP 47 language tag, if given.
    pub locale: Option<String>,
    /// Region label, if given.
    pub region: Option<String>,
    /// Client data (an empty object when none was given).
    pub metadata: Map<String, Value>,
    /// When the feedback was given, Unix milliseconds.
    pub occurred_at_ms: i64,
    /// When it was received (the `now_ms` given to [`validate`]), Unix milliseconds.
    pub received_at_ms: i64,
}

/// One reason an item was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The wire name of the field (`text`, `metadata.source`, or `item` for the whole item).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Validates `raw`, received at `now_ms`. The item's id is the client's `id` if it sent one,
/// else `assigned_id`. Returns every failing field, in wire order, not just the first.
pub fn validate(
    raw: RawFeedbackItem,
    assigned_id: &str,
    now_ms: i64,
) -> Result<FeedbackItem, Vec<FieldError>> {
    let mut errors = Vec::new();
    let id = match raw.id {
        None | Some(Value::Null) => Some(assigned_id.to_owned()),
        Some(v) => keep(&mut errors, "id", identifier(&v, MAX_ID_BYTES)),
    };
    let user_id = match raw.user_id {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("user_id", "required"));
            None
        }
        Some(v) => keep(&mut errors, "user_id", identifier(&v, MAX_ID_BYTES)),
    };
    let kind = match raw.kind {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("type", "required"));
            None
        }
        Some(v) => keep(
            &mut errors,
            "type",
            closed_name(&v, FeedbackKind::parse, FEEDBACK_KINDS),
        ),
    };
    let channel = match raw.channel {
        None | Some(Value::Null) => Some(Channel::Api),
        Some(v) => keep(
            &mut errors,
            "channel",
            closed_name(&v, Channel::parse, CHANNELS),
        ),
    };
    let rating = match raw.rating {
        None | Some(Value::Null) => None,
        Some(v) => keep(&mut errors, "rating", rating(&v)),
    };
    let text = match raw.text {
        None | Some(Value::Null) => None,
        Some(v) => keep(&mut errors, "text", text(v)).flatten(),
    };
    let text_error = errors.iter().any(|e| e.field == "text");
    let rating_error = errors.iter().any(|e| e.field == "rating");
    if rating.is_none() && text.is_none() && !text_error && !rating_error {
        errors.push(FieldError::new(
            "item",
            "needs a rating or a text that is not blank",
        ));
    }
    let locale = match raw.locale {
        None | Some(Value::Null) => None,
        Some(v) => keep(&mut errors, "locale", locale(&v)),
    };
    let region = match raw.region {
        None | Some(Value::Null) => None,
        Some(v) => keep(&mut errors, "region", region(&v)),
    };
    let metadata = match raw.metadata {
        None | Some(Value::Null) => Some(Map::new()),
        Some(v) => metadata(v, &mut errors),
    };
    let occurred_at_ms = match raw.occurred_at_ms {
        None | Some(Value::Null) => Some(now_ms),
        Some(v) => keep(&mut errors, "occurred_at_ms", occurred_at(&v, now_ms)),
    };
    for name in raw.unknown.keys() {
        errors.push(FieldError::new(name.as_str(), "unknown field"));
    }
    match (id, user_id, kind, channel, metadata, occurred_at_ms) {
        (
            Some(id),
            Some(user_id),
            Some(kind),
            Some(channel),
            Some(metadata),
            Some(occurred_at_ms),
        ) if errors.is_empty() => Ok(FeedbackItem {
            id,
            user_id,
            kind,
            channel,
            rating,
            text,
            locale,
            region,
            metadata,
            occurred_at_ms,
            received_at_ms: now_ms,
        }),
        _ => Err(errors),
    }
}

const FEEDBACK_KINDS: &str =
    "review, rating, survey, support, bug_report, feature_request, complaint, praise, other";
const CHANNELS: &str = "web, mobile, email, chat, phone, survey, api, other";

fn keep<T>(errors: &mut Vec<FieldError>, field: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("must be a string, got {}", type_name(v)))
}

/// Ids: 1 to `max` bytes of printable ASCII without spaces (they end up in URLs and logs).
fn identifier(v: &Value, max: usize) -> Result<String, String> {
    let s = string(v)?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max {
        return Err(format!("longer than {max} bytes"));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "only printable ASCII without spaces is allowed, found U+{:04X}",
            c as u32
        ));
    }
    Ok(s.to_owned())
}

fn closed_name<T>(v: &Value, parse: fn(&str) -> Option<T>, names: &str) -> Result<T, String> {
    let s = string(v)?;
    parse(s).ok_or_else(|| format!("unknown value {s:?} (one of {names})"))
}

fn rating(v: &Value) -> Result<u8, String> {
    match v.as_u64() {
        Some(r @ 1..=5) => Ok(r as u8),
        _ => Err("must be 1..5".into()),
    }
}

/// Texts: at most [`MAX_TEXT_CHARS`] characters, no NUL or other C0 control characters
/// except tab, line feed and carriage return. A blank text counts as no text.
fn text(v: Value) -> Result<Option<String>, String> {
    let Value::String(s) = v else {
        return Err(format!("must be a string, got {}", type_name(&v)));
    };
    let mut chars = 0usize;
    for c in s.chars() {
        if c == '\0' {
            return Err(format!("contains a NUL byte at character {chars}"));
        }
        if c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r') {
            return Err(format!(
                "contains the control character U+{:04X} at character {chars}",
                c as u32
            ));
        }
        chars += 1;
    }
    if chars > MAX_TEXT_CHARS {
        return Err(format!("longer than {MAX_TEXT_CHARS} characters"));
    }
    Ok((!s.trim().is_empty()).then_some(s))
}

/// The shape of a BCP 47 tag (RFC 5646): a 2–3 letter (or 4–8 letter registered) language,
/// then subtags of 1–8 letters or digits, separated by `-`. Registry membership is not
/// checked (no I/O, and tags keep being registered).
fn locale(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    let bad = || format!("{s:?} is not a BCP 47 language tag such as en, pt-BR or zh-Hant-TW");
    if s.is_empty() || s.len() > MAX_LOCALE_BYTES {
        return Err(bad());
    }
    let mut subtags = s.split('-');
    let language = subtags.next().unwrap_or_default();
    let private_use = language.eq_ignore_ascii_case("x") || language.eq_ignore_ascii_case("i");
    if !(private_use
        || (matches!(language.len(), 2 | 3 | 5..=8)
            && language.bytes().all(|b| b.is_ascii_alphabetic())))
    {
        return Err(bad());
    }
    for subtag in subtags {
        if subtag.is_empty()
            || subtag.len() > 8
            || !subtag.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad());
        }
    }
    Ok(s.to_owned())
}

fn region(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.is_empty() || s.len() > MAX_REGION_BYTES {
        return Err(format!("must be 1 to {MAX_REGION_BYTES} bytes"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed".into());
    }
    Ok(s.to_owned())
}

fn metadata(v: Value, errors: &mut Vec<FieldError>) -> Option<Map<String, Value>> {
    let Value::Object(map) = v else {
        errors.push(FieldError::new(
            "metadata",
            format!("must be an object, got {}", type_name(&v)),
        ));
        return None;
    };
    let before = errors.len();
    let mut keys = 0usize;
    check_metadata(&map, "metadata", 1, &mut keys, errors);
    if keys > MAX_METADATA_KEYS {
        errors.push(FieldError::new(
            "metadata",
            format!("more than {MAX_METADATA_KEYS} keys"),
        ));
    }
    // Only measured when the structure is sound: the size check serialises the whole object.
    if errors.len() == before {
        let size = serde_json::to_string(&map).map_or(usize::MAX, |s| s.len());
        if size > MAX_METADATA_BYTES {
            errors.push(FieldError::new(
                "metadata",
                format!("larger than {MAX_METADATA_BYTES} bytes of JSON"),
            ));
        }
    }
    (errors.len() == before).then_some(map)
}

/// Walks the metadata below `path` (at nesting `depth`, the top-level object being 1),
/// counting keys and recording keys that are too long, NUL bytes and nesting that is too deep.
fn check_metadata(
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
    keys: &mut usize,
    errors: &mut Vec<FieldError>,
) {
    for (key, value) in map {
        *keys += 1;
        let at = format!("{path}.{key}");
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            errors.push(FieldError::new(
                at.as_str(),
                format!("keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes"),
            ));
        }
        check_metadata_value(value, &at, depth, keys, errors);
    }
}

fn check_metadata_value(
    value: &Value,
    at: &str,
    depth: usize,
    keys: &mut usize,
    errors: &mut Vec<FieldError>,
) {
    match value {
        Value::String(s) if s.contains('\0') => {
            errors.push(FieldError::new(at, "contains a NUL byte"));
        }
        Value::Object(_) | Value::Array(_) if depth >= MAX_METADATA_DEPTH => {
            errors.push(FieldError::new(
                at,
                format!("nested deeper than {MAX_METADATA_DEPTH} levels"),
            ));
        }
        Value::Object(m) => check_metadata(m, at, depth + 1, keys, errors),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_metadata_value(item, &format!("{at}[{i}]"), depth + 1, keys, errors);
            }
        }
        _ => {}
    }
}

fn occurred_at(v: &Value, now_ms: i64) -> Result<i64, String> {
    let ms = v
        .as_i64()
        .ok_or_else(|| "must be whole Unix milliseconds".to_owned())?;
    if ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err("more than an hour in the future".into());
    }
    if ms < now_ms.saturating_sub(MAX_AGE_MS) {
        return Err("more than ten years in the past".into());
    }
    Ok(ms)
}
