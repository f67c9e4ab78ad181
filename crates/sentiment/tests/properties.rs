//! Property tests: arbitrary input never panics and scores stay in range.

use proptest::prelude::*;
use sentiment::{score, Scores};

fn check(text: &str) -> Result<(), TestCaseError> {
    let s = score(text);
    prop_assert!((-1.0..=1.0).contains(&s.compound), "{s:?}");
    for v in [s.pos, s.neu, s.neg] {
        prop_assert!((0.0..=1.0).contains(&v), "{s:?}");
    }
    if s == Scores::ZERO {
        // The reference returns all zeros only when the text has no tokens
        // (otherwise neu or pos/neg is non-zero).
        prop_assert!(text.split_whitespace().next().is_none() || text.chars().all(is_py_space));
    } else {
        // Each proportion is rounded to 3 decimals, so the sum is 1 +/- 0.001
        // (the reference hits 0.001 too).
        let sum = s.pos + s.neu + s.neg;
        prop_assert!((sum - 1.0).abs() <= 1e-3 + 1e-9, "{s:?} sum {sum}");
    }
    Ok(())
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn wordy_strings_never_panic(
        words in proptest::collection::vec(
            prop_oneof![
                Just("good".to_string()), Just("BAD".to_string()), Just("not".to_string()),
                Just("but".to_string()), Just("no".to_string()), Just("least".to_string()),
                Just("kind".to_string()), Just("of".to_string()), Just("very".to_string()),
                Just("never".to_string()), Just("so".to_string()), Just("the".to_string()),
                Just("shit".to_string()), Just(":)".to_string()), Just("😀".to_string()),
                Just("!!!".to_string()), Just("??".to_string()), "[a-zA-Z!?.,'\\- ]{0,8}",
                "\\PC{0,4}",
            ],
            0..60,
        ),
        sep in prop_oneof![Just(" "), Just(""), Just("\u{3000}"), Just("\u{1c}"), Just("\t")],
    ) {
        check(&words.join(sep))?;
    }
}
