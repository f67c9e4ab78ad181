//! PII quality and speed of the detector on a labelled corpus, as JSON on stdout (the format
//! `scripts/pii/presidio_eval.py` reads to compare with Presidio in the same run).
//!
//! ```text
//! cargo run --release -p feedback --example pii_eval -- --corpus FILE [--speed | --engine] [--runs N]
//! ```
//!
//! Without `--speed`: `{"per_type": {"EMAIL_ADDRESS": {"tp", "fp", "fn", "precision",
//! "recall"}, …}}` (exact type and character-span match). With `--speed`: detection over every
//! text of the corpus, `--runs` times (default 7) on one thread, and the median items/s and
//! MB/s (`{"speed": {"items_per_second", "mb_per_second", "runs", "items", "bytes"}}`).
//!
//! With `--engine`: the whole engine over the same texts on one thread, each text as a review
//! item with a rating (1 to 5 in turn, so the HONEST rule compares it with the text's
//! sentiment), in research mode with the shipped rules: the median items/s of `detect` (PII
//! alone), `Analyzer::quick_check` (PII, redaction, toxicity, risk) and `Analyzer::analyze`
//! with full checks (the above, sentiment, route and every policy rule):
//! `{"engine": {"items", "bytes", "runs", "detect": {"items_per_second", "mb_per_second"},
//! "quick_check": {…}, "analyze": {…}}}`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use feedback::analysis::{AnalyzeContext, Analyzer};
use feedback::config::FeedbackConfig;
use feedback::item::{validate, FeedbackItem, RawFeedbackItem};
use feedback::pii::eval::{evaluate, LabelledText};
use feedback::pii::Detector;
use serde_json::json;

fn main() -> ExitCode {
    let mut corpus_path = None;
    let mut speed = false;
    let mut engine = false;
    let mut runs = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--corpus" => corpus_path = args.next(),
            "--speed" => speed = true,
            "--engine" => engine = true,
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
    if speed && engine {
        return usage("--speed and --engine exclude each other");
    }
    let detector = Detector::default();

    let output = if engine {
        match engine_speed(&detector, &corpus, runs) {
            Ok(output) => output,
            Err(message) => return usage(&message),
        }
    } else if speed {
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

/// The median wall time of `runs` calls of `pass`, in seconds.
fn median_seconds(runs: usize, mut pass: impl FnMut()) -> f64 {
    let mut seconds: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            pass();
            started.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// `--engine`: detect, quick_check and analyze (research mode) over the corpus texts.
fn engine_speed(
    detector: &Detector,
    corpus: &[LabelledText],
    runs: usize,
) -> Result<serde_json::Value, String> {
    let config = FeedbackConfig::parse("mode = \"research\"").map_err(|e| e.to_string())?;
    let analyzer = Analyzer::from_config(&config).map_err(|e| e.to_string())?;
    let mut items: Vec<FeedbackItem> = Vec::with_capacity(corpus.len());
    for (i, labelled) in corpus.iter().enumerate() {
        let raw: RawFeedbackItem = serde_json::from_value(json!({
            "user_id": format!("u{}", i % 100),
            "type": "review",
            "rating": 1 + i % 5,
            "text": labelled.text,
        }))
        .map_err(|e| format!("corpus item {i}: {e}"))?;
        let item = validate(raw, &format!("fb-{i}"), 1_750_000_000_000).map_err(|errors| {
            let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("corpus item {i}: {}", reasons.join("; "))
        })?;
        items.push(item);
    }
    let bytes: usize = corpus.iter().map(|t| t.text.len()).sum();
    let ctx = AnalyzeContext {
        force_full_checks: true,
        ..AnalyzeContext::default()
    };
    let rate = |seconds: f64| {
        json!({
            "items_per_second": items.len() as f64 / seconds,
            "mb_per_second": bytes as f64 / seconds / 1e6,
        })
    };

    let mut findings = Vec::new();
    let detect = median_seconds(runs, || {
        for item in &items {
            detector.detect_into(black_box(item.text.as_deref().unwrap_or("")), &mut findings);
            black_box(&findings);
        }
    });
    let quick = median_seconds(runs, || {
        for item in &items {
            black_box(analyzer.quick_check(black_box(item), &ctx));
        }
    });
    let mut fired = 0usize;
    let full = median_seconds(runs, || {
        for item in &items {
            let analysis = analyzer.analyze(black_box(item), &ctx);
            fired += analysis.policy.map_or(0, |p| p.trace.len());
        }
    });
    // Every item went through the policy: a run where it did not would measure too little.
    if fired == 0 {
        return Err("no policy rule fired on the whole corpus: were full checks skipped?".into());
    }
    Ok(json!({"engine": {
        "items": items.len(),
        "bytes": bytes,
        "runs": runs,
        "detect": rate(detect),
        "quick_check": rate(quick),
        "analyze": rate(full),
    }}))
}

fn usage(message: &str) -> ExitCode {
    eprintln!("pii_eval: {message}");
    eprintln!("usage: pii_eval --corpus FILE [--speed | --engine] [--runs N]");
    ExitCode::from(2)
}
