//! PII detection and redaction over the labelled corpus's texts (2,400 feedback sentences, 60%
//! with personal data), one item at a time as the feedback pipeline calls them. Throughput is
//! reported per item (items/s) and per byte (MB/s).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use feedback::pii::eval::LabelledText;
use feedback::pii::{redact, Detector, Redaction};

fn texts() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pii_corpus.jsonl");
    let data = std::fs::read_to_string(path).expect("corpus file");
    data.lines()
        .map(|line| {
            serde_json::from_str::<LabelledText>(line)
                .expect("corpus line")
                .text
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let texts = texts();
    let bytes: usize = texts.iter().map(String::len).sum();
    let detector = Detector::default();
    let pseudonym = Redaction::Pseudonym { key: vec![7; 32] };

    for (unit, throughput) in [
        ("items", Throughput::Elements(texts.len() as u64)),
        ("bytes", Throughput::Bytes(bytes as u64)),
    ] {
        let mut group = c.benchmark_group(format!("pii_corpus_{unit}"));
        group.throughput(throughput);
        group.bench_function("detect", |b| {
            let mut findings = Vec::new();
            b.iter(|| {
                for text in &texts {
                    detector.detect_into(black_box(text), &mut findings);
                    black_box(&findings);
                }
            })
        });
        group.bench_function("detect_redact_tag", |b| {
            let mut findings = Vec::new();
            b.iter(|| {
                for text in &texts {
                    detector.detect_into(black_box(text), &mut findings);
                    black_box(redact(text, &findings, &Redaction::Tag));
                }
            })
        });
        group.bench_function("detect_redact_pseudonym", |b| {
            let mut findings = Vec::new();
            b.iter(|| {
                for text in &texts {
                    detector.detect_into(black_box(text), &mut findings);
                    black_box(redact(text, &findings, &pseudonym));
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
