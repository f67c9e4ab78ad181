//! The full tenant configuration example of `docs/feedback.md` parses, validates and does what
//! its comments say, so the document cannot drift from the code.

use feedback::analysis::{AnalyzeContext, Analyzer};
use feedback::config::{FeedbackConfig, RedactionMode, Veto};
use feedback::item::{validate, RawFeedbackItem};
use feedback::policy::Principle;
use feedback::routing::{Mode, Tier};
use serde_json::json;

/// The TOML block that follows the `<!-- tenant-config-example -->` marker.
fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/feedback.md");
    let doc = std::fs::read_to_string(path).expect("docs/feedback.md");
    let (_, after) = doc
        .split_once("<!-- tenant-config-example -->\n```toml\n")
        .expect("the marker followed by a ```toml block");
    let (block, _) = after.split_once("\n```").expect("the block ends");
    block.to_owned()
}

#[test]
fn the_documented_example_configuration_is_valid_and_applies() {
    let config = FeedbackConfig::parse(&doc_example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mode.0, Mode::Hybrid);
    assert_eq!(config.default_tier.0, Tier::Standard);
    assert_eq!(config.redaction, RedactionMode::Pseudonym);
    assert_eq!(config.policy.veto, Veto::Critical);
    assert_eq!(
        config.hybrid.full_check_tiers,
        [Tier::Realtime, Tier::Priority]
    );
    assert_eq!(config.privacy.contribution_cap, 5);
    assert_eq!(config.privacy.regions, ["eu-west", "us-east"]);
    assert_eq!(config.privacy.epsilon, Some(0.1));
    assert_eq!(config.privacy.delta, Some(1e-6));
    let analyzer = Analyzer::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(analyzer.policy().threshold(), 0.75);
    assert_eq!(analyzer.policy().weights().get(Principle::Honest), 1.0);
    assert_eq!(analyzer.policy().weights().get(Principle::Privacy), 3.0);
    // Not overridden: hybrid's (the research) weight.
    assert_eq!(analyzer.policy().weights().get(Principle::Harmless), 3.0);
    let ids: Vec<&str> = analyzer
        .policy()
        .rules()
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert!(!ids.contains(&"harmless.profanity"), "{ids:?}");
    assert!(ids.contains(&"aligned.competitor"), "{ids:?}");
    assert!(ids.contains(&"harmless.threat"), "{ids:?}");

    let raw: RawFeedbackItem = serde_json::from_value(json!({
        "user_id": "u1",
        "type": "review",
        "rating": 3,
        "text": "Order ORD-2024-558812 from Acme Corp: what the hell, bozo. \
                 Mail jo@example.org, not support@example.com, about Project Falcon.",
    }))
    .unwrap();
    let item = validate(raw, "fb-1", 1_750_000_000_000).unwrap();
    let key = b"tenant pseudonym key";
    let ctx = AnalyzeContext {
        pseudonym_key: Some(key),
        force_full_checks: true,
        ..AnalyzeContext::default()
    };
    let analysis = analyzer.analyze(&item, &ctx);
    let found: Vec<&str> = analysis
        .findings
        .iter()
        .map(|f| f.entity.as_str())
        .collect();
    // The tenant pattern and the deny list are found; the allowed address is not.
    assert_eq!(found, ["ORDER_ID", "EMAIL_ADDRESS", "DENY_LIST"]);
    let redacted = analysis.text_redacted.unwrap();
    assert!(redacted.contains("<ORDER_ID_"), "{redacted}");
    assert!(redacted.contains("support@example.com"), "{redacted}");
    assert!(!redacted.contains("jo@example.org"), "{redacted}");
    // "hell" was removed from the lexicon and "bozo" added as a medium insult.
    let terms: Vec<&str> = analysis
        .toxicity
        .matches
        .iter()
        .map(|m| &item.text.as_deref().unwrap()[m.span.clone()])
        .collect();
    assert_eq!(terms, ["bozo"]);
    let policy = analysis.policy.expect("full checks");
    let fired: Vec<&str> = policy.trace.iter().map(|f| f.rule_id.as_str()).collect();
    for id in ["privacy.pii.order", "aligned.competitor", "harmless.insult"] {
        assert!(fired.contains(&id), "{id} did not fire: {fired:?}");
    }
    assert_eq!(policy.threshold, 0.75);
}
