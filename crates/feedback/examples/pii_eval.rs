//! PII quality and speed of the detector on a labelled corpus, as JSON on stdout (the format
//! `scripts/pii/presidio_eval.py` reads to compare with Presidio in the same run).
//!
//! ```text
//! cargo run --release -p feedback --example pii_eval -- --corpus FILE [--speed] [--runs N]
//! ```
//!
//! Without `--speed`: `{"per_type": {"EMAIL_ADDRESS": {"tp", "fp", "fn", "precision",
//! "recall"}, …}}` (exact type and character-span match). With `--speed`: detection over every
//! text of the corpus, `--runs` times (default 7) on one thread, and the median items/s and
//! MB/s (`{"speed": {"items_per_second", "mb_per_second", "runs", "items", "bytes"}}`).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use feedback::pii::eval::{evaluate, LabelledText};
use feedback::pii::Detector;
use serde_json::json;

fn main() -> ExitCode {
    let mut corpus_path = None;
    let mut speed = false;
    let mut runs = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--corpus" => corpus_path = args.next(),
            "--speed" => speed = true,
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => return usage("--runs needs a positive number"),
            },
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(path) = corpus_path else {
        return usage("--corpus FILE is required");
    };
    let data = match std::fs::read_to_string(&path) {
        Ok(data) => data,
        Err(e) => return usage(&format!("cannot read {path}: {e}")),
    };
    let mut corpus: Vec<LabelledText> = Vec::new();
    for (i, line) in data
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(item) => corpus.push(item),
            Err(e) => return usage(&format!("{path}:{}: {e}", i + 1)),
        }
    }
    let detector = Detector::default();

    let output = if speed {
        let bytes: usize = corpus.iter().map(|t| t.text.len()).sum();
        let mut findings = Vec::new();
        let mut seconds = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            for item in &corpus {
                detector.detect_into(black_box(&item.text), &mut findings);
                black_box(&findings);
            }
            seconds.push(started.elapsed().as_secs_f64());
        }
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        json!({"speed": {
            "items_per_second": corpus.len() as f64 / median,
            "mb_per_second": bytes as f64 / median / 1e6,
            "runs": runs,
            "items": corpus.len(),
            "bytes": bytes,
        }})
    } else {
        let evaluation = evaluate(&detector, &corpus);
        let per_type: serde_json::Map<String, serde_json::Value> = evaluation
            .per_type
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "tp": c.true_positives,
                        "fp": c.false_positives,
                        "fn": c.false_negatives,
                        "precision": c.precision(),
                        "recall": c.recall(),
                    }),
                )
            })
            .collect();
        json!({"per_type": per_type})
    };
    println!("{output}");
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("pii_eval: {message}");
    eprintln!("usage: pii_eval --corpus FILE [--speed] [--runs N]");
    ExitCode::from(2)
}
