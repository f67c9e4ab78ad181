//! Criterion benchmarks: (a) batch profiles in ratios/s over many users,
//! (b) streaming updates/s at W = 100 (each update re-derives the profile).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weber::{Engine, Interaction, ProfileState, WeberParams};

const USERS: usize = 10_000;
const LEN: usize = 100;

fn sentiment(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*state >> 33) % 20_001) as f64 / 10_000.0 - 1.0
}

fn data() -> Vec<Interaction> {
    let mut st = 7u64;
    (0..USERS * LEN)
        .map(|k| Interaction::new(sentiment(&mut st), (k % LEN) as i64 * 1000, 0))
        .collect()
}

fn batch(c: &mut Criterion) {
    let params = WeberParams::default();
    let data = data();
    let quant: Vec<i16> = data
        .iter()
        .map(|e| weber::quantize(e.sentiment).unwrap_or(0))
        .collect();
    let mut engine = Engine::new(params);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements((USERS * LEN) as u64));
    g.sample_size(20);
    g.bench_function("profiles_10k_users_x100_interactions", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for u in data.chunks_exact(LEN) {
                if let Ok(p) = engine.profile(black_box(u)) {
                    acc += p.weber_constant;
                }
            }
            acc
        });
    });
    g.bench_function("profiles_quantized_10k_users_x100", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for u in quant.chunks_exact(LEN) {
                if let Ok(p) = engine.profile_quantized(black_box(u), None) {
                    acc += p.weber_constant;
                }
            }
            acc
        });
    });
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let params = WeberParams::default();
    let data = data();
    let n_states = 1000;
    let mut states: Vec<ProfileState> = data
        .chunks_exact(LEN)
        .take(n_states)
        .map(|h| ProfileState::rebuild(h, &params).unwrap_or_default())
        .collect();
    let mut engine = Engine::new(params);
    let mut st = 99u64;
    let mut k = 0usize;
    let mut time = 1_000_000i64;
    let mut g = c.benchmark_group("streaming");
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply_w100_full_window", |b| {
        b.iter(|| {
            k += 1;
            if k.is_multiple_of(n_states) {
                time += 1;
            }
            let s = sentiment(&mut st);
            let state = &mut states[k % n_states];
            state.apply_with(black_box(&Interaction::new(s, time, 0)), &mut engine)
        });
    });
    g.bench_function("apply_w100_thread_local_scratch", |b| {
        b.iter(|| {
            k += 1;
            if k.is_multiple_of(n_states) {
                time += 1;
            }
            let s = sentiment(&mut st);
            let state = &mut states[k % n_states];
            state.apply(black_box(&Interaction::new(s, time, 0)), &params)
        });
    });
    g.finish();
}

criterion_group!(benches, batch, streaming);
criterion_main!(benches);
