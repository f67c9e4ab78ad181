//! Speed (acceptance 3): fitting BG/NBD and Gamma-Gamma on 100,000 simulated customers, and
//! scoring 1,000,000 (expected purchases over 30 days, P(alive), 12-month CLV).
//!
//! `cargo bench -p lifetime --bench fit` (prefix `taskset -c 0` for per-core figures). The
//! comparison with Python `lifetimes` on the same summaries is
//! `scripts/bench/lifetime_vs_lifetimes.sh`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use lifetime::{customer_lifetime_value, fit_bgnbd, fit_gamma_gamma, FitOptions, Period};

#[path = "../examples/support/simulated.rs"]
mod simulated;

fn fits(c: &mut Criterion) {
    let data = simulated::simulated_summaries(100_000, 1);
    let mut group = c.benchmark_group("fit_100k");
    group.sample_size(10);
    group.bench_function("bgnbd", |b| {
        b.iter(|| fit_bgnbd(black_box(&data), &FitOptions::default()))
    });
    group.bench_function("gamma_gamma", |b| {
        b.iter(|| fit_gamma_gamma(black_box(&data), &FitOptions::default()))
    });
    group.finish();
}

fn scoring(c: &mut Criterion) {
    let fit_data = simulated::simulated_summaries(100_000, 1);
    let (Ok(bg), Ok(gg)) = (
        fit_bgnbd(&fit_data, &FitOptions::default()),
        fit_gamma_gamma(&fit_data, &FitOptions::default()),
    ) else {
        panic!("the simulated population fits");
    };
    let customers = simulated::simulated_summaries(1_000_000, 99);
    let mut group = c.benchmark_group("score_1m");
    group.sample_size(10);
    group.bench_function("expected_p_alive_clv", |b| {
        b.iter(|| {
            let mut total = 0.0;
            for s in &customers {
                total += bg.params.expected_purchases(30.0, s)
                    + bg.params.p_alive(s)
                    + customer_lifetime_value(&bg.params, &gg.params, s, 12, 0.01, Period::Day);
            }
            black_box(total)
        })
    });
    group.finish();
}

criterion_group!(benches, fits, scoring);
criterion_main!(benches);
