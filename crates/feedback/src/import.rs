//! Importing feedback from a legacy system: the mapping file and the row → item mapping.
//!
//! A mapping file (TOML) says how a legacy export's rows become feedback items:
//!
//! ```toml
//! format = "csv"                 # csv (first line: column names) | jsonl (one object a line)
//! time_format = "rfc3339"        # rfc3339 | epoch_ms | epoch_s | a `time` format description
//!
//! [columns]                      # item field = source column (CSV) or key (JSONL)
//! id = "ticket_id"               # optional: rows without an id get a deterministic one
//! user_id = "customer"
//! type = "category"
//! channel = "source"
//! rating = "score"
//! text = "comment"
//! locale = "lang"
//! region = "market"
//! occurred_at = "created"
//!
//! [metadata]                     # metadata key = source column
//! legacy_agent = "agent"
//!
//! [values.type]                  # source value = item value, per field
//! "Bug" = "bug_report"
//! "Idea" = "feature_request"
//!
//! [rating]                       # the source's rating scale, mapped linearly onto 1..5
//! min = 0
//! max = 10
//!
//! [defaults]                     # used when the column is absent or empty
//! type = "other"
//! channel = "web"
//! ```
//!
//! [`Mapping::map_row`] turns one source row into a validated [`FeedbackItem`] with the
//! feedback item validation ([`crate::item::validate`]), or into every [`RowError`] of the row.
//! Everything here is pure: the caller reads the file, passes `now_ms` and the import's id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::item::{validate, FeedbackItem, RawFeedbackItem};

/// Largest mapping file, in bytes.
pub const MAX_MAPPING_BYTES: usize = 64 * 1024;
/// Most entries of one `[values.FIELD]` table.
pub const MAX_VALUE_MAPPINGS: usize = 1_000;
/// Most `[metadata]` columns.
pub const MAX_METADATA_COLUMNS: usize = 32;
/// Longest source value read from one cell (bytes); longer cells are refused by name, before
/// the item's own (smaller) bounds apply.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

/// A refused mapping file: the path of the fault (`columns.rating`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct MappingError {
    /// Where the fault is, as a dotted path from the top of the file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl MappingError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> MappingError {
        MappingError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// One reason a row was refused: its line in the source, the item field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// The 1-based line the row starts on (CSV: the header is line 1).
    pub line: u64,
    /// The item field (`rating`, `occurred_at`, `metadata.agent`, `row` for the whole row).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// The source file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Comma-separated values with a header line naming the columns.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// How `occurred_at` is written in the source.
#[derive(Debug, Clone)]
pub enum TimeFormat {
    /// RFC 3339 (`2024-05-01T12:00:00Z`).
    Rfc3339,
    /// Whole Unix milliseconds.
    EpochMs,
    /// Whole Unix seconds.
    EpochS,
    /// A `time` crate format description (`[year]-[month]-[day] [hour]:[minute]:[second]`);
    /// without an offset in it, times are UTC.
    Custom(time::format_description::OwnedFormatItem),
}

/// The source's rating scale: `min..=max` maps linearly onto 1..=5, rounding half up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingScale {
    /// The source's lowest rating (becomes 1).
    pub min: i64,
    /// The source's highest rating (becomes 5).
    pub max: i64,
}

impl Default for RatingScale {
    fn default() -> Self {
        RatingScale { min: 1, max: 5 }
    }
}

impl RatingScale {
    /// The 1..=5 rating of source rating `value`, or `None` outside `min..=max`.
    ///
    /// `1 + round((value − min) · 4 / (max − min))`, rounding half up, in exact integers: on a
    /// 0–10 scale 0–1 → 1, 2–3 → 2, 4–6 → 3, 7–8 → 4, 9–10 → 5.
    pub fn to_five(self, value: i64) -> Option<u8> {
        if value < self.min || value > self.max {
            return None;
        }
        let span = i128::from(self.max) - i128::from(self.min);
        if span == 0 {
            return Some(5);
        }
        let offset = i128::from(value) - i128::from(self.min);
        let step = (offset * 8 + span) / (2 * span);
        u8::try_from(1 + step).ok()
    }
}

/// The `[columns]` table: item field → source column or key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub id: Option<String>,
    pub user_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub rating: Option<String>,
    pub text: Option<String>,
    pub locale: Option<String>,
    pub region: Option<String>,
    pub occurred_at: Option<String>,
}

/// The `[defaults]` table: values used when a row has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub user_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    format: SourceFormat,
    #[serde(default)]
    time_format: Option<String>,
    columns: Columns,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    rating: Option<RatingScale>,
    #[serde(default)]
    defaults: Defaults,
}

/// Fields whose source values `[values.FIELD]` may translate.
const VALUE_FIELDS: [&str; 5] = ["type", "channel", "locale", "region", "user_id"];

/// A validated mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The source's format.
    pub format: SourceFormat,
    /// How `occurred_at` is written.
    pub time_format: TimeFormat,
    /// Item field → source column.
    pub columns: Columns,
    /// Metadata key → source column.
    pub metadata: BTreeMap<String, String>,
    /// Field → (source value → item value).
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// The source's rating scale.
    pub rating: RatingScale,
    /// Values for absent or empty cells.
    pub defaults: Defaults,
}

impl Mapping {
    /// Reads and validates a mapping file; the error names the faulty path.
    pub fn parse(text: &str) -> Result<Mapping, MappingError> {
        if text.len() > MAX_MAPPING_BYTES {
            return Err(MappingError::new(
                "",
                format!("the mapping file is over {MAX_MAPPING_BYTES} bytes"),
            ));
        }
        let de = toml::Deserializer::new(text);
        let file: MappingFile = serde_path_to_error::deserialize(de).map_err(|e| {
            MappingError::new(
                e.path().to_string().replace(".?", ""),
                e.inner().message().trim().to_owned(),
            )
        })?;
        let time_format = match file.time_format.as_deref() {
            None | Some("rfc3339") => TimeFormat::Rfc3339,
            Some("epoch_ms") => TimeFormat::EpochMs,
            Some("epoch_s") => TimeFormat::EpochS,
            Some(description) => TimeFormat::Custom(
                time::format_description::parse_owned::<2>(description).map_err(|e| {
                    MappingError::new(
                        "time_format",
                        format!(
                            "not rfc3339, epoch_ms, epoch_s or a valid format description: {e}"
                        ),
                    )
                })?,
            ),
        };
        let c = &file.columns;
        for (field, column) in [
            ("id", &c.id),
            ("user_id", &c.user_id),
            ("type", &c.kind),
            ("channel", &c.channel),
            ("rating", &c.rating),
            ("text", &c.text),
            ("locale", &c.locale),
            ("region", &c.region),
            ("occurred_at", &c.occurred_at),
        ] {
            if column
                .as_deref()
                .is_some_and(|s| s.is_empty() || s.len() > 256)
            {
                return Err(MappingError::new(
                    format!("columns.{field}"),
                    "a column name must be 1 to 256 bytes",
                ));
            }
        }
        if c.user_id.is_none() && file.defaults.user_id.is_none() {
            return Err(MappingError::new(
                "columns.user_id",
                "required (or a [defaults] user_id)",
            ));
        }
        if c.kind.is_none() && file.defaults.kind.is_none() {
            return Err(MappingError::new(
                "columns.type",
                "required (or a [defaults] type)",
            ));
        }
        if c.rating.is_none() && c.text.is_none() {
            return Err(MappingError::new(
                "columns",
                "map at least one of rating and text (an item needs one of them)",
            ));
        }
        if let Some(kind) = &file.defaults.kind {
            if crate::item::FeedbackKind::parse(kind).is_none() {
                return Err(MappingError::new(
                    "defaults.type",
                    format!("unknown type {kind:?}"),
                ));
            }
        }
        if let Some(channel) = &file.defaults.channel {
            if crate::item::Channel::parse(channel).is_none() {
                return Err(MappingError::new(
                    "defaults.channel",
                    format!("unknown channel {channel:?}"),
                ));
            }
        }
        if file.metadata.len() > MAX_METADATA_COLUMNS {
            return Err(MappingError::new(
                "metadata",
                format!("more than {MAX_METADATA_COLUMNS} columns"),
            ));
        }
        for (key, column) in &file.metadata {
            if key.is_empty() || key.len() > crate::item::MAX_METADATA_KEY_BYTES {
                return Err(MappingError::new(
                    format!("metadata.{key}"),
                    "keys must be 1 to 64 bytes",
                ));
            }
            if column.is_empty() || column.len() > 256 {
                return Err(MappingError::new(
                    format!("metadata.{key}"),
                    "a column name must be 1 to 256 bytes",
                ));
            }
        }
        for (field, table) in &file.values {
            if !VALUE_FIELDS.contains(&field.as_str()) {
                return Err(MappingError::new(
                    format!("values.{field}"),
                    format!("values can be mapped for {} only", VALUE_FIELDS.join(", ")),
                ));
            }
            if table.len() > MAX_VALUE_MAPPINGS {
                return Err(MappingError::new(
                    format!("values.{field}"),
                    format!("more than {MAX_VALUE_MAPPINGS} entries"),
                ));
            }
            for (from, to) in table {
                let bad = match field.as_str() {
                    "type" => crate::item::FeedbackKind::parse(to).is_none(),
                    "channel" => crate::item::Channel::parse(to).is_none(),
                    _ => to.is_empty(),
                };
                if bad {
                    return Err(MappingError::new(
                        format!("values.{field}.{from}"),
                        format!("{to:?} is not a valid {field}"),
                    ));
                }
            }
        }
        let rating = file.rating.unwrap_or_default();
        if rating.min >= rating.max {
            return Err(MappingError::new(
                "rating.max",
                "must be greater than rating.min",
            ));
        }
        Ok(Mapping {
            format: file.format,
            time_format,
            columns: file.columns,
            metadata: file.metadata,
            values: file.values,
            rating,
            defaults: file.defaults,
        })
    }

    /// The source columns the mapping reads (for checking a CSV header), with the field or
    /// metadata path that reads each.
    pub fn source_columns(&self) -> Vec<(String, &str)> {
        let c = &self.columns;
        let mut out: Vec<(String, &str)> = [
            ("id", &c.id),
            ("user_id", &c.user_id),
            ("type", &c.kind),
            ("channel", &c.channel),
            ("rating", &c.rating),
            ("text", &c.text),
            ("locale", &c.locale),
            ("region", &c.region),
            ("occurred_at", &c.occurred_at),
        ]
        .into_iter()
        .filter_map(|(field, column)| {
            column
                .as_deref()
                .map(|col| (format!("columns.{field}"), col))
        })
        .collect();
        out.extend(
            self.metadata
                .iter()
                .map(|(key, col)| (format!("metadata.{key}"), col.as_str())),
        );
        out
    }

    /// Maps one source row (column or key → value; CSV cells are strings) at `line` of import
    /// `import_id` to a validated item, received at `now_ms`. Also returns the raw item, the
    /// canonical form an idempotency hash is taken of.
    pub fn map_row(
        &self,
        row: &Map<String, Value>,
        line: u64,
        import_id: &str,
        now_ms: i64,
    ) -> Result<MappedRow, Vec<RowError>> {
        let mut errors = Vec::new();
        let err = |errors: &mut Vec<RowError>, field: &str, reason: String| {
            errors.push(RowError {
                line,
                field: field.to_owned(),
                reason,
            })
        };
        let mut raw = Map::new();
        let c = &self.columns;
        let take = |field: &str, column: &Option<String>, errors: &mut Vec<RowError>| {
            let value = column.as_deref().and_then(|col| cell(row, col))?;
            if let Value::String(s) = &value {
                if s.len() > MAX_CELL_BYTES {
                    err(
                        errors,
                        field,
                        format!("longer than {MAX_CELL_BYTES} bytes in the source"),
                    );
                    return None;
                }
            }
            Some(value)
        };
        let id = take("id", &c.id, &mut errors);
        let user = take("user_id", &c.user_id, &mut errors);
        let kind = take("type", &c.kind, &mut errors);
        let channel = take("channel", &c.channel, &mut errors);
        let rating = take("rating", &c.rating, &mut errors);
        let text = take("text", &c.text, &mut errors);
        let locale = take("locale", &c.locale, &mut errors);
        let region = take("region", &c.region, &mut errors);
        let occurred = take("occurred_at", &c.occurred_at, &mut errors);

        if let Some(id) = id {
            raw.insert("id".into(), id);
        }
        let d = &self.defaults;
        for (field, value, default) in [
            ("user_id", user, &d.user_id),
            ("type", kind, &d.kind),
            ("channel", channel, &d.channel),
            ("locale", locale, &d.locale),
            ("region", region, &d.region),
        ] {
            let value = value.or_else(|| default.clone().map(Value::String));
            if let Some(value) = value {
                raw.insert(field.into(), self.translate(field, value));
            }
        }
        if let Some(rating) = rating {
            match source_integer(&rating) {
                Some(r) => match self.rating.to_five(r) {
                    Some(five) => {
                        raw.insert("rating".into(), Value::from(five));
                    }
                    None => err(
                        &mut errors,
                        "rating",
                        format!(
                            "{r} is outside the source scale {}..{}",
                            self.rating.min, self.rating.max
                        ),
                    ),
                },
                None => err(
                    &mut errors,
                    "rating",
                    format!("{} is not a whole number", short(&rating)),
                ),
            }
        }
        if let Some(text) = text {
            raw.insert("text".into(), text);
        }
        if let Some(occurred) = occurred {
            match parse_time(&self.time_format, &occurred) {
                Ok(ms) => {
                    raw.insert("occurred_at_ms".into(), Value::from(ms));
                }
                Err(reason) => err(&mut errors, "occurred_at", reason),
            }
        }
        if !self.metadata.is_empty() {
            let mut metadata = Map::new();
            for (key, column) in &self.metadata {
                if let Some(value) = cell(row, column) {
                    metadata.insert(key.clone(), value);
                }
            }
            if !metadata.is_empty() {
                raw.insert("metadata".into(), Value::Object(metadata));
            }
        }
        if !errors.is_empty() {
            // The item's own validation still runs, so every failing field is reported.
            if let Err(more) = self.validate(&raw, line, import_id, now_ms) {
                let rating_error = errors.iter().any(|x| x.field == "rating");
                errors.extend(
                    more.into_iter()
                        .filter(|e| !(e.field == "item" && rating_error)),
                );
            }
            return Err(errors);
        }
        let item = self.validate(&raw, line, import_id, now_ms)?;
        Ok(MappedRow { raw, item })
    }

    fn validate(
        &self,
        raw: &Map<String, Value>,
        line: u64,
        import_id: &str,
        now_ms: i64,
    ) -> Result<FeedbackItem, Vec<RowError>> {
        let parsed: RawFeedbackItem =
            serde_json::from_value(Value::Object(raw.clone())).map_err(|e| {
                vec![RowError {
                    line,
                    field: "row".into(),
                    reason: e.to_string(),
                }]
            })?;
        validate(parsed, &generated_id(import_id, line), now_ms).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| RowError {
                    line,
                    field: if e.field == "occurred_at_ms" {
                        "occurred_at".into()
                    } else {
                        e.field
                    },
                    reason: e.message,
                })
                .collect()
        })
    }

    /// The `[values.FIELD]` translation of a source value (unmapped values pass unchanged).
    fn translate(&self, field: &str, value: Value) -> Value {
        let Some(table) = self.values.get(field) else {
            return value;
        };
        let key = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match table.get(&key) {
            Some(to) => Value::String(to.clone()),
            None => value,
        }
    }
}

/// A row mapped to an item.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    /// The item as it would have been sent to the API (keys sorted): the canonical form whose
    /// keyed hash makes a re-import of the same row a duplicate.
    pub raw: Map<String, Value>,
    /// The validated item.
    pub item: FeedbackItem,
}

/// The id of a row without one: `imp_` and 32 hex digits of SHA-256 over the import's id and
/// the row's line, so importing the same file again (a resume, a restart) yields the same ids.
pub fn generated_id(import_id: &str, line: u64) -> String {
    let digest = Sha256::digest(format!("{import_id}\n{line}").as_bytes());
    format!("imp_{}", &hex_lower(&digest)[..32])
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

/// SHA-256 over data given in pieces (a file read in chunks), as hex.
#[derive(Debug, Clone, Default)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> ContentHasher {
        ContentHasher(Sha256::new())
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hex digest of everything added.
    pub fn finish_hex(self) -> String {
        hex_lower(&self.0.finalize())
    }
}

/// A cell's value; an empty string or null counts as absent.
fn cell(row: &Map<String, Value>, column: &str) -> Option<Value> {
    match row.get(column)? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        other => Some(other.clone()),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// A whole number from a JSON number or a string (`"7"`, `" 7 "`, `"7.0"`).
fn source_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                let whole = s.strip_suffix(".0").or_else(|| s.strip_suffix(".00"))?;
                whole.parse().ok()
            })
        }
        _ => None,
    }
}

/// Unix milliseconds of a source time.
pub fn parse_time(format: &TimeFormat, v: &Value) -> Result<i64, String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "must be a string or a number, got {}",
                short(other)
            ))
        }
    };
    let whole = || {
        text.parse::<i64>()
            .map_err(|_| format!("{} is not a whole number", short(v)))
    };
    match format {
        TimeFormat::EpochMs => whole(),
        TimeFormat::EpochS => whole()?
            .checked_mul(1_000)
            .ok_or_else(|| format!("{} is out of range", short(v))),
        TimeFormat::Rfc3339 => {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map(ms_of)
                .map_err(|e| format!("{} is not an RFC 3339 time: {e}", short(v)))
        }
        TimeFormat::Custom(description) => time::OffsetDateTime::parse(&text, description)
            .map(ms_of)
            .or_else(|_| {
                time::PrimitiveDateTime::parse(&text, description).map(|t| ms_of(t.assume_utc()))
            })
            .or_else(|_| {
                time::Date::parse(&text, description).map(|d| ms_of(d.midnight().assume_utc()))
            })
            .map_err(|e| format!("{} does not match time_format: {e}", short(v))),
    }
}

fn ms_of(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_760_000_000_000;

    fn mapping() -> Mapping {
        Mapping::parse(
            r#"
            format = "csv"
            time_format = "[year]-[month]-[day] [hour]:[minute]:[second]"
            [columns]
            id = "ticket"
            user_id = "customer"
            type = "category"
            rating = "score"
            text = "comment"
            occurred_at = "created"
            [metadata]
            agent = "agent"
            [values.type]
            "Bug" = "bug_report"
            [rating]
            min = 0
            max = 10
            [defaults]
            channel = "web"
            "#,
        )
        .unwrap()
    }

    fn row(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect()
    }

    #[test]
    fn maps_a_row_through_values_scale_time_and_defaults() {
        let m = mapping();
        let r = row(&[
            ("ticket", "T-1"),
            ("customer", "c9"),
            ("category", "Bug"),
            ("score", "9"),
            ("comment", "crashes on start"),
            ("created", "2025-01-02 03:04:05"),
            ("agent", "ann"),
        ]);
        let mapped = m.map_row(&r, 2, "imp_x", NOW).unwrap();
        let item = mapped.item;
        assert_eq!(item.id, "T-1");
        assert_eq!(item.kind.as_str(), "bug_report");
        assert_eq!(item.channel.as_str(), "web");
        assert_eq!(item.rating, Some(5));
        assert_eq!(item.occurred_at_ms, 1_735_787_045_000);
        assert_eq!(item.metadata.get("agent"), Some(&json!("ann")));
    }

    #[test]
    fn a_row_without_id_gets_a_deterministic_one() {
        let m = mapping();
        let r = row(&[("customer", "c9"), ("category", "praise"), ("score", "4")]);
        let a = m.map_row(&r, 7, "imp_x", NOW).unwrap().item.id;
        let b = m.map_row(&r, 7, "imp_x", NOW + 5).unwrap().item.id;
        let c = m.map_row(&r, 8, "imp_x", NOW).unwrap().item.id;
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("imp_") && a.len() == 36, "{a}");
    }

    #[test]
    fn every_failing_field_is_reported_with_its_line() {
        let m = mapping();
        let r = row(&[
            ("customer", "c9"),
            ("category", "nonsense"),
            ("score", "11"),
            ("created", "yesterday"),
        ]);
        let errors = m.map_row(&r, 42, "imp_x", NOW).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(errors.iter().all(|e| e.line == 42));
        assert!(fields.contains(&"rating"), "{errors:?}");
        assert!(fields.contains(&"occurred_at"), "{errors:?}");
        assert!(fields.contains(&"type"), "{errors:?}");
    }

    #[test]
    fn mapping_errors_name_the_field() {
        let cases = [
            ("format = \"xml\"\n[columns]\nuser_id=\"u\"\ntype=\"t\"\ntext=\"x\"", "format"),
            ("format = \"csv\"\n[columns]\ntype=\"t\"\ntext=\"x\"", "columns.user_id"),
            (
                "format = \"csv\"\ntime_format = \"[nonsense]\"\n[columns]\nuser_id=\"u\"\ntype=\"t\"\ntext=\"x\"",
                "time_format",
            ),
            (
                "format = \"csv\"\n[columns]\nuser_id=\"u\"\ntype=\"t\"\ntext=\"x\"\n[values.type]\nA = \"nope\"",
                "values.type.A",
            ),
            (
                "format = \"csv\"\n[columns]\nuser_id=\"u\"\ntype=\"t\"\ntext=\"x\"\nextra=\"y\"",
                "columns.extra",
            ),
            (
                "format = \"csv\"\n[columns]\nuser_id=\"u\"\ntype=\"t\"\ntext=\"x\"\n[rating]\nmin=5\nmax=5",
                "rating.max",
            ),
        ];
        for (text, path) in cases {
            let e = Mapping::parse(text).unwrap_err();
            assert_eq!(e.path, path, "{text}: {e}");
        }
    }

    #[test]
    fn time_formats() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(
            parse_time(&TimeFormat::Rfc3339, &v("1970-01-01T00:00:01.5Z")),
            Ok(1_500)
        );
        assert_eq!(parse_time(&TimeFormat::EpochS, &v("12")), Ok(12_000));
        assert_eq!(parse_time(&TimeFormat::EpochMs, &json!(12)), Ok(12));
        assert!(parse_time(&TimeFormat::EpochMs, &v("x")).is_err());
    }

    #[test]
    fn zero_to_ten_scale_is_as_documented() {
        let s = RatingScale { min: 0, max: 10 };
        let got: Vec<u8> = (0..=10).map(|v| s.to_five(v).unwrap()).collect();
        assert_eq!(got, [1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5]);
        assert_eq!(s.to_five(-1), None);
        assert_eq!(s.to_five(11), None);
        let identity = RatingScale::default();
        assert!((1..=5).all(|v| identity.to_five(v) == Some(v as u8)));
    }

    proptest! {
        #[test]
        fn scale_is_monotone_and_onto_one_to_five(
            min in -1_000i64..1_000,
            span in 1i64..1_000,
            a in 0i64..1_000,
            b in 0i64..1_000,
        ) {
            let s = RatingScale { min, max: min + span };
            let (a, b) = (min + a % (span + 1), min + b % (span + 1));
            let (fa, fb) = (s.to_five(a).unwrap(), s.to_five(b).unwrap());
            prop_assert!((1..=5).contains(&fa));
            prop_assert!(a > b || fa <= fb);
            prop_assert_eq!(s.to_five(min), Some(1));
            prop_assert_eq!(s.to_five(min + span), Some(5));
        }

        #[test]
        fn generated_ids_are_valid_item_ids(line in 1u64..u64::MAX, import in "[a-z0-9_]{1,40}") {
            let id = generated_id(&import, line);
            prop_assert!(id.len() <= crate::item::MAX_ID_BYTES);
            prop_assert!(id.chars().all(|c| c.is_ascii_graphic()));
            prop_assert_eq!(id.clone(), generated_id(&import, line));
        }
    }
}
