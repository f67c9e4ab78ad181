//! The analyzer and the tenant configuration.

use std::sync::Arc;

use feedback::analysis::{AnalyzeContext, Analyzer};
use feedback::config::FeedbackConfig;
use feedback::item::{validate, FeedbackItem, RawFeedbackItem};
use feedback::policy::Principle;
use feedback::routing::{Checks, Mode, RouteReason, Tier};
use serde_json::json;

const NOW: i64 = 1_750_000_000_000;

fn item(text: &str, rating: Option<u8>) -> FeedbackItem {
    let raw: RawFeedbackItem = serde_json::from_value(
        json!({"user_id": "u1", "type": "review", "text": text, "rating": rating}),
    )
    .unwrap();
    validate(raw, "fb-1", NOW).unwrap()
}

fn analyzer(toml: &str) -> Analyzer {
    Analyzer::from_config(&FeedbackConfig::parse(toml).unwrap()).unwrap()
}

fn config_error(toml: &str) -> String {
    match FeedbackConfig::parse(toml) {
        Err(e) => e.to_string(),
        Ok(config) => Analyzer::from_config(&config).unwrap_err().to_string(),
    }
}

#[test]
fn an_empty_configuration_is_hybrid_standard_with_shipped_rules() {
    let a = analyzer("");
    assert_eq!(a.mode(), Mode::Hybrid);
    assert_eq!(a.default_tier(), Tier::Standard);
    assert_eq!(a.policy().threshold(), 0.7);
    assert_eq!(a.policy().weights().get(Principle::Harmless), 3.0);
    assert_eq!(
        a.policy().rules().len(),
        feedback::policy::shipped_rules().unwrap().len()
    );
}

#[test]
fn configuration_errors_name_the_path() {
    let cases = [
        ("mode = \"turbo\"", "mode: unknown variant `turbo`"),
        ("colour = 1", "colour: unknown field `colour`"),
        ("[policy]\nthreshold = 2.0", "policy.threshold: must be within 0..1, got 2"),
        ("[policy.weights]\nHARMLESS = -1.0", "policy.weights.HARMLESS: must be a finite number"),
        ("[policy.weights]\nKIND = 1.0", "policy.weights: unknown variant `KIND`"),
        ("[policy]\ndisable = [\"nope\"]", "policy.disable[0]: no shipped rule has the id \"nope\""),
        (
            "[[policy.rules]]\nid = \"x\"\nprinciple = \"FAIR\"\nkind = \"pattern\"\nseverity = \"low\"\npenalty = 0.5\nparams = { regex = \"(\" }",
            "policy.rules[0].params.regex: regex parse error",
        ),
        (
            "[[policy.rules]]\nid = \"x\"\nprinciple = \"FAIR\"\nkind = \"spam\"\nseverity = \"low\"\npenalty = 3.0",
            "policy.rules[0].penalty: must be within (0, 1], got 3",
        ),
        ("[toxicity]\nremove = [\"zzz\"]", "toxicity.remove[0]: \"zzz\" is not in the lexicon"),
        ("[hybrid]\nfull_check_tiers = [\"urgent\"]", "hybrid.full_check_tiers[0]: unknown variant `urgent`"),
    ];
    for (toml, expected) in cases {
        let got = config_error(toml);
        assert!(
            got.starts_with(expected),
            "{toml:?}: expected {expected:?}, got {got:?}"
        );
    }
}

#[test]
fn tenant_rules_replace_disable_and_reweight() {
    let a = analyzer(
        r#"
        mode = "research"
        [policy]
        disable = ["harmless.profanity"]
        [policy.weights]
        HELPFUL = 0.0
        [[policy.rules]]
        id = "harmless.insult"
        principle = "HARMLESS"
        kind = "lexicon"
        severity = "high"
        penalty = 1.0
        params = { categories = ["insult"], min_severity = "low" }
        "#,
    );
    let ids: Vec<&str> = a.policy().rules().iter().map(|r| r.id.as_str()).collect();
    assert!(!ids.contains(&"harmless.profanity"));
    let a_item = item("this stupid bullshit update", Some(3));
    let analysis = a.analyze(&a_item, &AnalyzeContext::default());
    let policy = analysis.policy.unwrap();
    let fired: Vec<&str> = policy.trace.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(fired, ["harmless.insult"]);
    assert_eq!(policy.trace[0].penalty, 1.0);
    // Total weight without HELPFUL: 13.5; HARMLESS loses all of its 3.0.
    assert!((policy.alignment - (1.0 - 3.0 / 13.5)).abs() < 1e-12);
}

#[test]
fn routes_per_mode() {
    let clean = item(
        "The new dashboard loads quickly and the filters are handy.",
        Some(4),
    );
    let risky = item("I know where you live, you idiot", Some(1));
    let research = analyzer("mode = \"research\"");
    let production = analyzer("mode = \"production\"");
    let hybrid = analyzer("mode = \"hybrid\"");
    let standard = AnalyzeContext {
        tier: Some(Tier::Standard),
        ..Default::default()
    };

    let r = research.analyze(&clean, &standard);
    assert_eq!((r.route.checks, r.route.human_review), (Checks::Full, true));
    assert!(r.policy.unwrap().passed);

    let p = production.analyze(&risky, &standard);
    assert_eq!(p.route.checks, Checks::FastThenAsync);
    assert!(p.policy.is_none());
    assert!(p.risk > 0.5);
    let forced = production.analyze(
        &risky,
        &AnalyzeContext {
            force_full_checks: true,
            ..standard
        },
    );
    assert!(!forced.policy.unwrap().passed);

    let low = hybrid.analyze(&clean, &standard);
    assert_eq!(
        (low.route.checks, low.route.reason),
        (Checks::FastThenAsync, RouteReason::LowRisk)
    );
    let high = hybrid.analyze(&risky, &standard);
    assert_eq!(
        (high.route.checks, high.route.reason),
        (Checks::Full, RouteReason::HighRisk)
    );
    let realtime = hybrid.analyze(
        &clean,
        &AnalyzeContext {
            tier: Some(Tier::Realtime),
            ..standard
        },
    );
    assert_eq!(realtime.route.reason, RouteReason::TierDemandsFull);
    let backed_up = hybrid.analyze(
        &risky,
        &AnalyzeContext {
            queue_depth: 10_001,
            ..standard
        },
    );
    assert_eq!(
        (backed_up.route.checks, backed_up.route.reason),
        (Checks::FastThenAsync, RouteReason::QueueBackedUp)
    );
}

#[test]
fn analysis_carries_sentiment_and_toxicity() {
    let a = analyzer("mode = \"research\"");
    let out = a.analyze(
        &item(
            "Five stars, but the agent was a moron. Terrible, awful!",
            Some(5),
        ),
        &AnalyzeContext::default(),
    );
    assert!(out.sentiment.unwrap().compound < -0.5);
    assert_eq!(out.toxicity.matches[0].term, "moron");
    let fired: Vec<String> = out
        .policy
        .unwrap()
        .trace
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert_eq!(
        fired,
        ["harmless.insult", "honest.rating_sentiment_mismatch"]
    );
    // Rating-only items have no text, sentiment or toxicity.
    let rating_only = validate(
        serde_json::from_value(json!({"user_id": "u", "type": "rating", "rating": 2})).unwrap(),
        "x",
        NOW,
    )
    .unwrap();
    let out = a.analyze(&rating_only, &AnalyzeContext::default());
    assert_eq!((out.sentiment, out.text_redacted), (None, None));
    assert!(out.policy.unwrap().passed);
}

#[test]
fn one_analyzer_serves_many_threads() {
    let a = Arc::new(analyzer("mode = \"research\""));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                let text = if i % 2 == 0 {
                    "lovely, thanks"
                } else {
                    "you idiot"
                };
                a.analyze(&item(text, Some(3)), &AnalyzeContext::default())
                    .policy
                    .unwrap()
                    .trace
                    .len()
            })
        })
        .collect();
    let fired: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(fired, [0, 1, 0, 1]);
}

#[test]
fn pii_is_redacted_and_violates_privacy() {
    let a = analyzer("mode = \"research\"");
    let text =
        "Call me on +44 20 7946 0958 or mail jo.doe@example.org about card 4111 1111 1111 1111";
    let out = a.analyze(&item(text, Some(2)), &AnalyzeContext::default());
    let types: Vec<&str> = out.findings.iter().map(|f| f.entity.as_str()).collect();
    assert_eq!(types, ["PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD"]);
    let redacted = out.text_redacted.unwrap();
    assert_eq!(
        redacted,
        "Call me on <PHONE_NUMBER> or mail <EMAIL_ADDRESS> about card <CREDIT_CARD>"
    );
    assert!(out.risk > 0.5);
    let policy = out.policy.unwrap();
    let fired: Vec<&str> = policy.trace.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(fired, ["privacy.pii.financial", "privacy.pii.contact"]);
    assert_eq!(policy.vetoed_by.as_deref(), Some("privacy.pii.financial"));
    // The trace gives types and spans, never the values.
    let trace = serde_json::to_string(&policy.trace).unwrap();
    for value in ["7946", "jo.doe", "4111"] {
        assert!(!trace.contains(value), "{value} in {trace}");
    }
}

#[test]
fn pseudonyms_need_the_tenant_key() {
    let a = analyzer("redaction = \"pseudonym\"");
    let it = item("mail jo.doe@example.org", None);
    let keyed = a.quick_check(
        &it,
        &AnalyzeContext {
            pseudonym_key: Some(b"tenant key"),
            ..Default::default()
        },
    );
    let again = a.quick_check(
        &it,
        &AnalyzeContext {
            pseudonym_key: Some(b"tenant key"),
            ..Default::default()
        },
    );
    let other = a.quick_check(
        &it,
        &AnalyzeContext {
            pseudonym_key: Some(b"other key"),
            ..Default::default()
        },
    );
    let keyed = keyed.text_redacted.unwrap();
    assert!(keyed.starts_with("mail <EMAIL_ADDRESS_"), "{keyed}");
    assert_eq!(Some(keyed.clone()), again.text_redacted);
    assert_ne!(Some(keyed), other.text_redacted);
    // Without a key: tags, never the value.
    let unkeyed = a.quick_check(&it, &AnalyzeContext::default());
    assert_eq!(
        unkeyed.text_redacted.as_deref(),
        Some("mail <EMAIL_ADDRESS>")
    );
}

#[test]
fn tenant_pii_settings_reach_the_detector_and_the_rules() {
    let a = analyzer(
        r#"
        mode = "research"
        [pii]
        allow_list = ["help@shop.example"]
        [[pii.patterns]]
        name = "ORDER_ID"
        regex = 'ORD-\d{6}'
        confidence = 0.9
        [[policy.rules]]
        id = "privacy.order_ids"
        principle = "PRIVACY"
        kind = "pii"
        severity = "low"
        penalty = 0.1
        params = { entities = ["ORDER_ID"] }
        "#,
    );
    let out = a.analyze(
        &item(
            "ORD-123456 never arrived, help@shop.example ignored me",
            Some(1),
        ),
        &AnalyzeContext::default(),
    );
    assert_eq!(
        out.text_redacted.as_deref(),
        Some("<ORDER_ID> never arrived, help@shop.example ignored me")
    );
    let fired: Vec<String> = out
        .policy
        .unwrap()
        .trace
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert_eq!(fired, ["privacy.order_ids"]);
    assert!(
        config_error("[[pii.patterns]]\nname = \"X\"\nregex = \"(\"\nconfidence = 0.5")
            .starts_with("pii.patterns[0].regex: ")
    );
}
