//! Validation of feedback items: every failing field is named.

use feedback::item::{validate, Channel, FeedbackKind, RawFeedbackItem, MAX_AGE_MS};
use serde_json::{json, Value};

const NOW: i64 = 1_750_000_000_000;

fn raw(v: Value) -> RawFeedbackItem {
    serde_json::from_value(v).unwrap()
}

fn errors(v: Value) -> Vec<String> {
    validate(raw(v), "assigned", NOW)
        .unwrap_err()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn a_good_item_validates_with_defaults() {
    let item = validate(
        raw(
            json!({"user_id": "u1", "type": "review", "rating": 4, "text": "Nice",
                   "locale": "pt-BR", "region": "eu-west", "metadata": {"app": {"v": "1.2"}}}),
        ),
        "assigned",
        NOW,
    )
    .unwrap();
    assert_eq!(item.id, "assigned");
    assert_eq!(item.kind, FeedbackKind::Review);
    assert_eq!(item.channel, Channel::Api);
    assert_eq!(item.rating, Some(4));
    assert_eq!(item.occurred_at_ms, NOW);
    assert_eq!(item.metadata["app"]["v"], "1.2");
}

#[test]
fn client_ids_win_over_assigned_ones() {
    let item = validate(
        raw(json!({"id": "c-7", "user_id": "u", "type": "praise", "channel": "mobile", "rating": 5})),
        "assigned",
        NOW,
    )
    .unwrap();
    assert_eq!((item.id.as_str(), item.channel), ("c-7", Channel::Mobile));
}

#[test]
fn every_failing_field_is_named() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"type": "review", "rating": 3}), vec!["user_id: required"]),
        (json!({"user_id": "u", "rating": 3}), vec!["type: required"]),
        (
            json!({"user_id": "u", "type": "rant", "rating": 3}),
            vec!["type: unknown value \"rant\" (one of review, rating, survey, support, bug_report, feature_request, complaint, praise, other)"],
        ),
        (json!({"user_id": "u", "type": "review", "rating": 6}), vec!["rating: must be 1..5"]),
        (json!({"user_id": "u", "type": "review", "rating": 0}), vec!["rating: must be 1..5"]),
        (json!({"user_id": "u", "type": "review", "rating": 4.5}), vec!["rating: must be 1..5"]),
        (json!({"user_id": "u", "type": "review", "rating": "5"}), vec!["rating: must be 1..5"]),
        (
            json!({"user_id": "u", "type": "review", "text": "x".repeat(10_001)}),
            vec!["text: longer than 10000 characters"],
        ),
        (
            json!({"user_id": "u", "type": "review", "text": "ab\u{0}c"}),
            vec!["text: contains a NUL byte at character 2"],
        ),
        (
            json!({"user_id": "u", "type": "review", "text": "   "}),
            vec!["item: needs a rating or a text that is not blank"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "mood": "sad"}),
            vec!["mood: unknown field"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "locale": "english!"}),
            vec!["locale: \"english!\" is not a BCP 47 language tag such as en, pt-BR or zh-Hant-TW"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "region": "eu west"}),
            vec!["region: only letters, digits, '-', '_' and '.' are allowed"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "metadata": [1]}),
            vec!["metadata: must be an object, got an array"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "metadata": {"a": {"b": {"c": {"d": {"e": 1}}}}}}),
            vec!["metadata.a.b.c.d: nested deeper than 4 levels"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "metadata": {"big": "x".repeat(5000)}}),
            vec!["metadata: larger than 4096 bytes of JSON"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "occurred_at_ms": NOW + 3_600_001}),
            vec!["occurred_at_ms: more than an hour in the future"],
        ),
        (
            json!({"user_id": "u", "type": "review", "rating": 2, "occurred_at_ms": NOW - MAX_AGE_MS - 1}),
            vec!["occurred_at_ms: more than ten years in the past"],
        ),
        (
            json!({"id": "has space", "user_id": "", "type": "review", "channel": 3, "rating": 9,
                   "text": 5, "extra": true}),
            vec![
                "id: only printable ASCII without spaces is allowed, found U+0020",
                "user_id: must not be empty",
                "channel: must be a string, got a number",
                "rating: must be 1..5",
                "text: must be a string, got a number",
                "extra: unknown field",
            ],
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(errors(input.clone()), expected, "input {input}");
    }
}

#[test]
fn metadata_bounds_keys() {
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(
        errors(json!({"user_id": "u", "type": "review", "rating": 2, "metadata": many})),
        ["metadata: more than 64 keys"]
    );
}

#[test]
fn items_deserialize_from_ndjson_lines() {
    let lines = "{\"user_id\":\"a\",\"type\":\"survey\",\"rating\":1}\n{\"user_id\":\"b\",\"type\":\"bug_report\",\"text\":\"crash\"}";
    let items: Vec<_> = lines
        .lines()
        .enumerate()
        .map(|(i, l)| validate(serde_json::from_str(l).unwrap(), &format!("id{i}"), NOW).unwrap())
        .collect();
    assert_eq!(items[1].kind, FeedbackKind::BugReport);
    assert_eq!(items[1].text.as_deref(), Some("crash"));
}
