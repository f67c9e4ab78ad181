//! PII quality on the labelled corpus (`tests/data/pii_corpus.jsonl`, made by
//! `scripts/pii/make_corpus.py`): precision and recall per entity type with EXACT span match
//! (type, start and end in characters must all equal the label's; a finding off by one
//! character counts as one false positive and one false negative). Goal: recall ≥ 0.99 and
//! precision ≥ 0.98 for every type.

use feedback::pii::eval::{evaluate, LabelledText};
use feedback::pii::{Detector, EntityType};

const MIN_RECALL: f64 = 0.99;
const MIN_PRECISION: f64 = 0.98;

fn corpus() -> Vec<LabelledText> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pii_corpus.jsonl");
    let data = std::fs::read_to_string(path).expect("corpus file");
    data.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn precision_and_recall_per_entity_type() {
    let corpus = corpus();
    assert!(corpus.len() >= 2_000, "corpus has {} texts", corpus.len());
    let evaluation = evaluate(&Detector::default(), &corpus);

    println!("exact span match over {} texts", corpus.len());
    println!(
        "{:<14} {:>6} {:>5} {:>5} {:>9} {:>7}",
        "entity", "tp", "fp", "fn", "precision", "recall"
    );
    for (name, c) in &evaluation.per_type {
        println!(
            "{name:<14} {:>6} {:>5} {:>5} {:>9.4} {:>7.4}",
            c.true_positives,
            c.false_positives,
            c.false_negatives,
            c.precision(),
            c.recall()
        );
    }
    for m in &evaluation.mismatches {
        let text = &corpus[m.index].text;
        let value: String = text
            .chars()
            .skip(m.span.start)
            .take(m.span.end - m.span.start)
            .collect();
        println!(
            "{} {} {:?} in line {}: {text:?}",
            if m.false_positive { "FP" } else { "FN" },
            m.span.entity_type,
            value,
            m.index + 1
        );
    }

    let mut failures = Vec::new();
    for entity in EntityType::BUILT_IN {
        let name = entity.as_str();
        let Some(c) = evaluation.per_type.get(name) else {
            failures.push(format!("{name}: absent from the corpus"));
            continue;
        };
        if c.true_positives + c.false_negatives < 100 {
            failures.push(format!(
                "{name}: only {} labels",
                c.true_positives + c.false_negatives
            ));
        }
        if c.recall() < MIN_RECALL {
            failures.push(format!("{name}: recall {:.4} < {MIN_RECALL}", c.recall()));
        }
        if c.precision() < MIN_PRECISION {
            failures.push(format!(
                "{name}: precision {:.4} < {MIN_PRECISION}",
                c.precision()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
