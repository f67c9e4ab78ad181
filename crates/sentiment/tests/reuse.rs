//! A reused `Analyzer` gives exactly what a fresh one gives, whatever it scored before.

use proptest::prelude::*;
use sentiment::Analyzer;

const WORDS: &[&str] = &[
    "good",
    "bad",
    "not",
    "very",
    "GREAT",
    "but",
    "kind of",
    "love",
    "hate",
    "!",
    "?",
    ":)",
    ":(",
    "never",
    "so",
    "least",
    "no",
    "the",
    "product",
    "awful",
    "extremely",
    "meh",
    "😀",
    "AMAZING",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(WORDS), 0..40).prop_map(|w| w.join(" "))
}

proptest! {
    #[test]
    fn reused_analyzer_equals_fresh(texts in proptest::collection::vec(text(), 1..12)) {
        let mut reused = Analyzer::new();
        for t in &texts {
            let fresh = Analyzer::new().score(t);
            prop_assert_eq!(reused.score(t), fresh, "{}", t);
        }
    }
}

#[test]
fn generated_review_texts_score_the_same_reused_or_fresh() {
    let texts = [
        "Love it!. very great value. great value! love it!!",
        "Could be better. not what I expected kind of disappointing.",
        "Terrible. AWFUL, but nice enough.",
    ];
    let mut reused = Analyzer::new();
    for _ in 0..3 {
        for t in texts {
            assert_eq!(reused.score(t), Analyzer::new().score(t), "{t}");
        }
    }
}
