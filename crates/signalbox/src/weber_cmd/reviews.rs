//! Review files in the Amazon Reviews 2023 shape: one review per JSON line, or a CSV with the
//! same column names. Each review becomes one scored interaction.

use std::borrow::Cow;

use serde::Deserialize;

/// The columns signalbox reads; others (`images`, `asin`, …) are ignored.
///
/// `timestamp` is milliseconds since the Unix epoch (as in the Amazon files) or an RFC 3339
/// string. At least one of `rating` and `text`/`title` is required.
#[derive(Debug, Deserialize)]
pub struct ReviewRow<'a> {
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
    pub timestamp: Timestamp<'a>,
    pub rating: Option<f64>,
    #[serde(borrow, default)]
    pub title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[allow(dead_code)] // validated for type, not used by the profile
    pub parent_asin: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    #[allow(dead_code)]
    pub verified_purchase: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    pub helpful_vote: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Timestamp<'a> {
    Millis(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// CSV cells are text, so booleans arrive as `true`/`false` strings there and as JSON booleans
/// in JSONL; accept both, and an empty cell as absent.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag<'a> {
        Bool(bool),
        #[serde(borrow)]
        Text(Cow<'a, str>),
    }
    match Option::<Flag>::deserialize(d)? {
        None => Ok(None),
        Some(Flag::Bool(b)) => Ok(Some(b)),
        Some(Flag::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got '{other}'"
            ))),
        },
    }
}

/// A review reduced to what the Weber engine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub user_id: Box<str>,
    pub time_ms: i64,
    pub sentiment: f64,
}

/// Parses one JSON line into a review, naming the field at fault on error.
pub fn parse_json_line(line: &str) -> Result<ReviewRow<'_>, String> {
    if !line.trim_start().starts_with('{') {
        return Err("not a JSON object (expected one review object per line)".to_owned());
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let row: ReviewRow = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {inner}")
        } else if path == "." {
            inner.to_string() // e.g. "missing field `user_id`", which names the field
        } else {
            format!("{path}: {inner}")
        }
    })?;
    de.end().map_err(|e| format!("not valid JSON: {e}"))?;
    Ok(row)
}

/// Validates a review and scores it: the text (title and body joined by ". ") with VADER, the
/// rating with `(r - 3) / 2`, combined by their mean when both exist.
pub fn score(row: &ReviewRow<'_>, analyzer: &mut sentiment::Analyzer) -> Result<Scored, String> {
    let user_id = row.user_id.trim();
    if user_id.is_empty() {
        return Err("user_id: must not be empty".to_owned());
    }
    if user_id.len() > 256 {
        return Err("user_id: longer than 256 bytes".to_owned());
    }
    let time_ms = match &row.timestamp {
        Timestamp::Millis(ms) => *ms,
        Timestamp::Text(text) => parse_time(text)?,
    };
    let title = row
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let body = row.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let text_compound = match (title, body) {
        (Some(t), Some(b)) => Some(analyzer.score(&format!("{t}. {b}")).compound),
        (Some(only), None) | (None, Some(only)) => Some(analyzer.score(only).compound),
        (None, None) => None,
    };
    let sentiment = weber::combined_sentiment(row.rating, text_compound)
        .map_err(|e| match e {
            weber::WeberError::InvalidRating { .. } => format!("rating: {e}"),
            e => format!("text: {e}"),
        })?
        .ok_or_else(|| "at least one of rating, title, text is required".to_owned())?;
    Ok(Scored {
        user_id: user_id.into(),
        time_ms,
        sentiment,
    })
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    let t =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("timestamp: '{text}' is neither epoch milliseconds nor RFC 3339 ({e})")
            })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "timestamp: out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str) -> Result<Scored, String> {
        let row = parse_json_line(line)?;
        score(&row, &mut sentiment::Analyzer::new())
    }

    #[test]
    fn amazon_shaped_lines_score() {
        let s = check(r#"{"rating": 5.0, "title": "Great", "text": "Love it", "images": [], "asin": "B1", "parent_asin": "B1", "user_id": "U1", "timestamp": 1588687728923, "helpful_vote": 2, "verified_purchase": true}"#).unwrap();
        assert_eq!(&*s.user_id, "U1");
        assert_eq!(s.time_ms, 1588687728923);
        let text = sentiment::score("Great. Love it").compound;
        assert!((s.sentiment - (1.0 + text) / 2.0).abs() < 1e-12);
        let rated =
            check(r#"{"rating": 2, "user_id": "U1", "timestamp": "2020-05-05T14:08:48.923Z"}"#)
                .unwrap();
        assert_eq!((rated.sentiment, rated.time_ms), (-0.5, 1588687728923));
    }

    #[test]
    fn bad_rows_name_the_field() {
        let cases = [
            (
                r#"{"rating": 9, "user_id": "U", "timestamp": 1}"#,
                "rating:",
            ),
            (
                r#"{"rating": "five", "user_id": "U", "timestamp": 1}"#,
                "rating:",
            ),
            (r#"{"user_id": "U", "timestamp": 1}"#, "at least one of"),
            (
                r#"{"rating": 3, "user_id": " ", "timestamp": 1}"#,
                "user_id:",
            ),
            (r#"{"rating": 3, "timestamp": 1}"#, "user_id"),
            (
                r#"{"rating": 3, "user_id": "U", "timestamp": "yesterday"}"#,
                "timestamp",
            ),
            (
                r#"{"rating": 3, "user_id": "U", "timestamp": 1, "verified_purchase": "maybe"}"#,
                "verified_purchase",
            ),
            ("{not json", "not valid JSON"),
            (
                r#"{"rating": 3, "user_id": "U", "timestamp": 1} extra"#,
                "not valid JSON",
            ),
            ("[1, 2]", "not a JSON object"),
        ];
        for (line, mentions) in cases {
            let err = check(line).unwrap_err();
            assert!(err.contains(mentions), "{line}: {err}");
        }
    }
}
