//! Criterion benchmarks: exact search on the seed's index shapes (6,574 and
//! 13,148 vectors x 52 dimensions), one query at a time and a batch of 256
//! on one thread, for both metrics, k = 10.

use std::hint::black_box;

use analog::{FlatIndex, Metric};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const DIM: usize = 52;
const K: usize = 10;
const BATCH: usize = 256;

/// Fixed-seed values in [-1, 1) (an LCG; quality is irrelevant here).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn index(n: usize, metric: Metric) -> FlatIndex {
    let mut index = FlatIndex::new(DIM, metric).expect("dim > 0");
    index.add(&values(7, n * DIM)).expect("finite data");
    index
}

fn search(c: &mut Criterion) {
    let queries = values(11, BATCH * DIM);
    let mut g = c.benchmark_group(format!("flat_x{DIM}_k{K}_{}", analog::simd_level()));
    for n in [6_574, 13_148] {
        for (name, metric) in [("ip", Metric::InnerProduct), ("l2", Metric::L2)] {
            let index = index(n, metric);
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(format!("single_{name}"), n), |b| {
                let mut i = 0;
                b.iter(|| {
                    // Rotate through the queries so one cached result can't help.
                    let q = &queries[(i % BATCH) * DIM..][..DIM];
                    i += 1;
                    black_box(index.search(black_box(q), K).expect("valid query"))
                });
            });
            g.throughput(Throughput::Elements(BATCH as u64));
            g.bench_function(BenchmarkId::new(format!("batch{BATCH}_{name}"), n), |b| {
                b.iter(|| black_box(index.search_batch(black_box(&queries), K).expect("valid")));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
