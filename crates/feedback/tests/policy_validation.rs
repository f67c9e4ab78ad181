//! Rule files are validated on load, with errors naming the path of the fault.

use feedback::policy::{parse_rules, Policy, Principle, PrincipleWeights};

fn rule(id: &str, extra: &str) -> String {
    format!(
        "[[rules]]\nid = \"{id}\"\nprinciple = \"HELPFUL\"\nkind = \"low_information\"\nseverity = \"low\"\npenalty = 0.5\n{extra}\n"
    )
}

fn error(text: &str) -> String {
    parse_rules(text).unwrap_err().to_string()
}

#[test]
fn faults_are_named_by_path() {
    let four_good = (0..3)
        .map(|i| rule(&format!("ok{i}"), ""))
        .collect::<String>();
    let cases: Vec<(String, &str)> = vec![
        (
            four_good.clone() + &rule("bad", "").replace("0.5", "1.5"),
            "rules[3].penalty: must be within (0, 1], got 1.5",
        ),
        (
            four_good.clone() + &rule("bad", "").replace("0.5", "0"),
            "rules[3].penalty: must be within (0, 1], got 0",
        ),
        (
            four_good.clone() + &rule("bad", "").replace("HELPFUL", "KIND"),
            "rules[3].principle: unknown variant `KIND`",
        ),
        (
            four_good.clone() + &rule("bad", "").replace("low_information", "vibes"),
            "rules[3].kind: unknown variant `vibes`",
        ),
        (
            four_good.clone() + &rule("bad", "").replace("\"low\"", "\"severe\""),
            "rules[3].severity: unknown variant `severe`",
        ),
        (
            four_good.clone() + &rule("ok1", ""),
            "rules[3].id: duplicate rule id \"ok1\"",
        ),
        (
            four_good.clone() + &rule("Bad Id", ""),
            "rules[3].id: 1 to 64 bytes",
        ),
        (
            four_good.clone() + &rule("bad", "colour = \"red\""),
            "rules[3].colour: unknown field `colour`",
        ),
        (
            four_good.clone() + &rule("bad", "params = { min_wrds = 3 }"),
            "rules[3].params.min_wrds: unknown field `min_wrds`",
        ),
        (
            four_good.clone() + &rule("bad", "params = { min_words = \"three\" }"),
            "rules[3].params.min_words: invalid type",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { regex = \"(unclosed\" }")
                    .replace("low_information", "pattern"),
            "rules[3].params.regex: regex parse error",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { regex = \"x*\" }").replace("low_information", "pattern"),
            "rules[3].params.regex: matches the empty text",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { entities = [\"email\"] }")
                    .replace("low_information", "pii"),
            "rules[3].params.entities[0]: \"email\" is not an entity name",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { categories = [] }")
                    .replace("low_information", "lexicon"),
            "rules[3].params.categories: name at least one category",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { categories = [\"rude\"] }")
                    .replace("low_information", "lexicon"),
            "rules[3].params.categories[0]: unknown variant `rude`",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { high_rating = 6 }")
                    .replace("low_information", "rating_sentiment_mismatch"),
            "rules[3].params.high_rating: must be 1..5, got 6",
        ),
        (
            four_good.clone()
                + &rule(
                    "bad",
                    "params = { zero_width = false, bidi_controls = false }",
                )
                .replace("low_information", "hidden_text"),
            "rules[3].params: checks nothing",
        ),
        (
            four_good.clone()
                + &rule("bad", "params = { max_caps_ratio = 2.0 }")
                    .replace("low_information", "spam"),
            "rules[3].params.max_caps_ratio: must be within 0..1, got 2",
        ),
        (
            four_good.clone()
                + &rule(
                    "bad",
                    "params = { min_severity = \"high\", max_severity = \"low\" }",
                )
                .replace("low_information", "threat"),
            "rules[3].params.max_severity: low is below min_severity high",
        ),
        (
            four_good + &rule("bad", "").replace("penalty = 0.5\n", ""),
            "rules[3]: missing field `penalty`",
        ),
    ];
    for (text, expected) in cases {
        let got = error(&text);
        assert!(
            got.starts_with(expected),
            "expected {expected:?}, got {got:?}"
        );
    }
}

#[test]
fn weights_and_threshold_are_checked() {
    let mut w = PrincipleWeights::research();
    w.set(Principle::Fair, -1.0);
    assert_eq!(
        Policy::new(Vec::new(), w, 0.8).unwrap_err().path,
        "weights.FAIR"
    );
    let mut zero = PrincipleWeights::research();
    for p in Principle::ALL {
        zero.set(p, 0.0);
    }
    assert_eq!(
        Policy::new(Vec::new(), zero, 0.8).unwrap_err().path,
        "weights"
    );
    assert_eq!(
        Policy::new(Vec::new(), PrincipleWeights::research(), 1.2)
            .unwrap_err()
            .path,
        "threshold"
    );
}

#[test]
fn the_shipped_rules_cover_every_principle() {
    let rules = feedback::policy::shipped_rules().unwrap();
    for p in Principle::ALL {
        assert!(rules.iter().any(|r| r.principle == p), "{p} has no rule");
    }
}
