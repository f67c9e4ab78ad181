//! Cost of the experiment statistics: Mann-Whitney U on raw values (sort-bound) and a full
//! experiment analysis on summary data.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flags::experiment::*;
use flags::stats::mann_whitney_u;

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let x = values(10_000, 1);
    let y = values(10_000, 2);
    c.bench_function("mann_whitney_u 10k+10k", |b| {
        b.iter(|| mann_whitney_u(black_box(&x), black_box(&y)))
    });

    let spec = ExperimentSpec {
        key: "exp".into(),
        hypothesis: "B converts better".into(),
        flag_key: "flag".into(),
        variants: vec![
            Variant::new("A", 1),
            Variant::new("B", 1),
            Variant::new("C", 1),
        ],
        control: "A".into(),
        primary_metric: Metric::conversion("signup", Goal::Increase, 0.01),
        secondary_metrics: vec![Metric::value("revenue", Goal::Increase, 0.5)],
        guardrails: vec![],
        alpha: 0.05,
        power: 0.8,
        min_sample_size: 1000,
        early_stopping: true,
    };
    let experiment = Experiment::create(spec, 0).unwrap();
    let data: BTreeMap<String, VariantData> = ["A", "B", "C"]
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let metrics = BTreeMap::from([
                (
                    "signup".to_string(),
                    MetricData::Conversions {
                        conversions: 1_000 + 40 * i as u64,
                        n: 10_000,
                    },
                ),
                (
                    "revenue".to_string(),
                    MetricData::Summary(flags::stats::Summary {
                        n: 10_000,
                        mean: 20.0 + i as f64,
                        variance: 100.0,
                    }),
                ),
            ]);
            (
                key.to_string(),
                VariantData {
                    users: 10_000,
                    metrics,
                    previous_sequential_p: None,
                },
            )
        })
        .collect();
    c.bench_function("analyze 3 variants, 2 metrics (summaries)", |b| {
        b.iter(|| experiment.analyze(black_box(&data)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
