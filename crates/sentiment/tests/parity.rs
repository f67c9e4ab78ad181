//! Parity of `sentiment` against the Python reference (vaderSentiment 3.3.2).
//!
//! The fixture is produced by `fixtures/make_vader_fixture.py`.

use sentiment::{score, Analyzer, Scores};

const TOLERANCE: f64 = 1e-4;

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    compound: f64,
    pos: f64,
    neu: f64,
    neg: f64,
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vader_3.3.2.jsonl");

/// The committed fixture, or a larger one built with `make_vader_fixture.py SEED COUNT OUT` and
/// named by `VADER_FIXTURE` (e.g. `VADER_FIXTURE=/tmp/extra.jsonl cargo test -p sentiment --test parity`).
fn load_fixture() -> Vec<Case> {
    match std::env::var("VADER_FIXTURE") {
        Ok(path) => load_cases(&path),
        Err(_) => load_cases(FIXTURE),
    }
}

fn load_cases(path: &str) -> Vec<Case> {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("fixture line {}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn parity_with_python_vader_3_3_2() {
    let cases = load_fixture();
    assert!(cases.len() >= 5000, "fixture too small: {}", cases.len());
    assert_parity(&cases);
}

fn assert_parity(cases: &[Case]) {
    let mut analyzer = Analyzer::new();
    let mut mismatches = Vec::new();
    let mut exact = 0usize;
    for (line, case) in cases.iter().enumerate() {
        let got = analyzer.score(&case.text);
        let want = Scores {
            compound: case.compound,
            pos: case.pos,
            neu: case.neu,
            neg: case.neg,
        };
        if got == want {
            exact += 1;
        }
        let close = (got.compound - want.compound).abs() <= TOLERANCE
            && (got.pos - want.pos).abs() <= TOLERANCE
            && (got.neu - want.neu).abs() <= TOLERANCE
            && (got.neg - want.neg).abs() <= TOLERANCE;
        if !close {
            mismatches.push((line + 1, &case.text, got, want));
        }
    }
    if !mismatches.is_empty() {
        for (line, text, got, want) in mismatches.iter().take(20) {
            eprintln!("line {line}: {text:?}\n   rust:   {got:?}\n   python: {want:?}");
        }
        panic!(
            "{} of {} fixture sentences differ from the reference by more than {TOLERANCE}",
            mismatches.len(),
            cases.len()
        );
    }
    eprintln!("parity: {} sentences, {exact} bit-exact", cases.len());
}

#[test]
fn free_function_and_analyzer_agree() {
    let cases = load_fixture();
    let mut analyzer = Analyzer::new();
    for case in cases.iter().step_by(7) {
        assert_eq!(
            score(&case.text),
            analyzer.score(&case.text),
            "{:?}",
            case.text
        );
    }
}

#[test]
fn known_examples() {
    let cases: &[(&str, [f64; 4])] = &[
        // text, [compound, pos, neu, neg] from vaderSentiment 3.3.2
        (
            "VADER is smart, handsome, and funny.",
            [0.8316, 0.746, 0.254, 0.0],
        ),
        (
            "VADER is VERY SMART, handsome, and FUNNY!!!",
            [0.9342, 0.767, 0.233, 0.0],
        ),
        ("Today SUX!", [-0.5461, 0.0, 0.221, 0.779]),
        ("Not bad at all", [0.431, 0.487, 0.513, 0.0]),
        ("", [0.0, 0.0, 0.0, 0.0]),
        ("a", [0.0, 0.0, 1.0, 0.0]),
    ];
    for (text, [compound, pos, neu, neg]) in cases {
        let got = score(text);
        assert_eq!(
            got,
            Scores {
                compound: *compound,
                pos: *pos,
                neu: *neu,
                neg: *neg
            },
            "{text:?}"
        );
    }
}

#[test]
fn huge_inputs_are_fast_and_sane() {
    // 200k tokens with a "but": the reference rule is quadratic, ours is not.
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(if i % 3 == 0 { "good " } else { "bad but " });
    }
    let s = score(&text);
    assert!((-1.0..=1.0).contains(&s.compound));
    assert!((s.pos + s.neu + s.neg - 1.0).abs() <= 1e-3 + 1e-9);
    let emoji_only = "😀😢❤️👍🏽".repeat(10_000);
    let s = score(&emoji_only);
    assert!((-1.0..=1.0).contains(&s.compound));
}
