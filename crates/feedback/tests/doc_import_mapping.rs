//! The mapping file example of `docs/feedback.md` ("Migrating from a legacy system") parses and
//! does what its comments say, so the runbook cannot drift from the code.

use feedback::import::{Mapping, SourceFormat};
use serde_json::{json, Map, Value};

/// The TOML block that follows the `<!-- import-mapping-example -->` marker.
fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/feedback.md");
    let doc = std::fs::read_to_string(path).expect("docs/feedback.md");
    let (_, after) = doc
        .split_once("<!-- import-mapping-example -->\n```toml\n")
        .expect("the marker followed by a ```toml block");
    let (block, _) = after.split_once("\n```").expect("the block ends");
    block.to_owned()
}

fn row(pairs: Value) -> Map<String, Value> {
    match pairs {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[test]
fn the_documented_mapping_is_valid_and_applies() {
    let mapping = Mapping::parse(&doc_example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mapping.format, SourceFormat::Csv);
    let now = 1_760_000_000_000;
    let mapped = mapping
        .map_row(
            &row(json!({
                "ticket_id": "T-9", "customer": "c1", "category": "Bug", "score": "7",
                "comment": "crashes", "created": "2025-01-02T03:04:05Z", "agent": "ann",
                "source": "", "lang": "en", "market": "eu-west",
            })),
            2,
            "imp_doc",
            now,
        )
        .unwrap();
    let item = mapped.item;
    assert_eq!(item.id, "T-9");
    assert_eq!(item.kind.as_str(), "bug_report");
    assert_eq!(item.rating, Some(4), "7 on 0..10 is 4");
    assert_eq!(
        item.channel.as_str(),
        "email",
        "the default for an empty cell"
    );
    assert_eq!(item.occurred_at_ms, 1_735_787_045_000);
    assert_eq!(item.metadata.get("legacy_agent"), Some(&json!("ann")));

    // Without an id: imp_ and 32 hex digits; outside the scale: refused naming rating.
    let no_id = row(json!({ "customer": "c1", "category": "Idea", "comment": "x" }));
    let id = mapping.map_row(&no_id, 3, "imp_doc", now).unwrap().item.id;
    assert!(id.starts_with("imp_") && id.len() == 36, "{id}");
    let errors = mapping
        .map_row(
            &row(json!({ "customer": "c1", "category": "Idea", "score": "11" })),
            4,
            "imp_doc",
            now,
        )
        .unwrap_err();
    assert_eq!(errors[0].field, "rating");
    assert_eq!(errors[0].reason, "11 is outside the source scale 0..10");
}
