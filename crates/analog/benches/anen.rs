//! Criterion benchmarks of the analog-ensemble (Delle Monache) distance on the forecast
//! model's shape: 6,300 states of 7 predictors x 3 hours + 4 calendar values (25 dims), the
//! runtime-selected kernel against the portable build of the same code, and the flat L2 scan
//! of the seed metric for comparison. One query, all rows scored. Then whole forecasts
//! (`ForecastModel::forecast`, JFK, 24 h, k = 10, all variables) on the bundled 2013 data.

use std::hint::black_box;

use analog::forecast::anen::{AnEnIndex, Block};
use analog::{FlatIndex, Metric};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: usize = 6_300;
const WINDOW: usize = 3;
const PREDICTORS: usize = 7;
const DIM: usize = PREDICTORS * WINDOW + 4;

/// Fixed-seed values in [-2, 2) (an LCG; quality is irrelevant here).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn blocks() -> Vec<Block> {
    let mut blocks: Vec<Block> = (0..PREDICTORS)
        .map(|p| Block {
            start: p * WINDOW,
            len: WINDOW,
            weight: 1.0,
        })
        .collect();
    blocks.push(Block {
        start: PREDICTORS * WINDOW,
        len: 2,
        weight: 1.0,
    });
    blocks.push(Block {
        start: PREDICTORS * WINDOW + 2,
        len: 2,
        weight: 1.0,
    });
    blocks
}

fn bench(c: &mut Criterion) {
    let rows = values(7, N * DIM);
    let query = values(11, DIM);
    let index = AnEnIndex::new(DIM, &blocks(), &rows).expect("valid rows");
    let mut flat = FlatIndex::new(DIM, Metric::L2).expect("dim > 0");
    flat.add(&rows).expect("finite rows");
    let mut g = c.benchmark_group(format!("anen_{N}x{DIM}_{}", analog::simd_level()));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("anen_scores_selected", |b| {
        b.iter(|| index.scores(black_box(&query)))
    });
    g.bench_function("anen_scores_portable", |b| {
        b.iter(|| index.scores_portable(black_box(&query)))
    });
    g.bench_function("anen_search_k10", |b| {
        b.iter(|| index.search(black_box(&query), 10, |_| true))
    });
    g.bench_function("flat_l2_search_k10", |b| {
        b.iter(|| flat.search(black_box(&query), 10))
    });
    g.finish();
}

fn forecast(c: &mut Criterion) {
    use analog::forecast::{
        parse_csv, BuildOptions, ForecastModel, ForecastRequest, Horizon, Similarity, Variable,
    };
    let data = parse_csv(include_str!("../../../demo/nyc_weather_2013.csv").as_bytes())
        .expect("bundled data parses");
    let model = ForecastModel::build(&data, &BuildOptions::default(), &mut |_, _| {})
        .expect("model builds");
    let mut g = c.benchmark_group("forecast_jfk_24h_k10");
    for similarity in Similarity::ALL {
        let request = ForecastRequest {
            station: "JFK".to_owned(),
            at: Some(1_383_631_200), // 2013-11-05T06:00:00Z
            horizon: Horizon::H24,
            vars: Variable::ALL.to_vec(),
            k: 10,
            similarity,
        };
        g.bench_function(similarity.name(), |b| {
            b.iter(|| model.forecast(black_box(&request)).expect("forecast"))
        });
    }
    g.finish();
    c.bench_function("build_nyc_2013", |b| {
        b.iter(|| ForecastModel::build(black_box(&data), &BuildOptions::default(), &mut |_, _| {}))
    });
}

criterion_group!(benches, bench, forecast);
criterion_main!(benches);
