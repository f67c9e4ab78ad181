//! Criterion benchmarks: IVF-PQ with the seed's configurations on 13,148
//! vectors x 52 dimensions (24h: nlist 64, m 8, nbits 8, nprobe 8; 48h:
//! nlist 128, m 16, nbits 8, nprobe 16), L2, k = 10, one query at a time,
//! raw and with exact re-ranking of 50 candidates. `m` does not divide 52:
//! sub-vectors of 6 and 7 (or 3 and 4) values.

use std::hint::black_box;

use analog::{IvfPqIndex, IvfPqParams, Metric};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: usize = 13_148;
const DIM: usize = 52;
const K: usize = 10;
const QUERIES: usize = 256;

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

fn search(c: &mut Criterion) {
    let data = values(7, N * DIM);
    let queries = values(11, QUERIES * DIM);
    let mut g = c.benchmark_group(format!("ivfpq_{N}x{DIM}_k{K}_{}", analog::simd_level()));
    g.throughput(Throughput::Elements(1));
    for (name, params) in [
        ("24h", IvfPqParams::new(64, 8, 8, 8)),
        ("48h", IvfPqParams::new(128, 16, 8, 16)),
    ] {
        let params = params.with_refine(5).with_kmeans_iters(10);
        let mut index = IvfPqIndex::train(&data, DIM, Metric::L2, params, 1).expect("valid");
        index.add(&data).expect("valid");
        let nprobe = params.nprobe;
        g.bench_function(format!("{name}_raw"), |b| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[(i % QUERIES) * DIM..][..DIM];
                i += 1;
                black_box(index.search(black_box(q), K, nprobe).expect("valid"))
            });
        });
        g.bench_function(format!("{name}_refined50"), |b| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[(i % QUERIES) * DIM..][..DIM];
                i += 1;
                black_box(
                    index
                        .search_refined(black_box(q), K, nprobe, 50)
                        .expect("valid"),
                )
            });
        });
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
