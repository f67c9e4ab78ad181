//! Scores every fixture text; throughput is reported in elements/s = docs/s.
//!
//! Run: `cargo bench -p sentiment --bench vader`
//! Compare with Python: `python3 crates/sentiment/bench/compare_python.py`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sentiment::Analyzer;

fn fixture_texts() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vader_3.3.2.jsonl");
    let raw = std::fs::read_to_string(path).expect("fixture readable");
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("fixture line is JSON");
            v["text"].as_str().expect("text field").to_owned()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let texts = fixture_texts();
    let mut group = c.benchmark_group("vader");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("fixture_analyzer", |b| {
        let mut analyzer = Analyzer::new();
        b.iter(|| {
            for t in &texts {
                black_box(analyzer.score(black_box(t)));
            }
        })
    });
    group.bench_function("fixture_score_fn", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(sentiment::score(black_box(t)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
