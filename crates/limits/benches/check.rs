//! In-memory GCRA check against the `governor` crate in the same run, same quota: one hot key,
//! and 10,000 keys visited in turn. Both read a monotonic clock on every check (`limits` through
//! `Instant`; governor through its default clock, quanta's TSC reads, which are cheaper), and
//! `limits` is also measured with the time given, to separate the limiter from the clock.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use limits::{Gcra, KeyedLimiter};

const PER_SECOND: u32 = 1_000_000;
const KEYS: usize = 10_000;

fn quotas() -> (Gcra, Quota) {
    let per_second = NonZeroU32::new(PER_SECOND).unwrap();
    (
        Gcra::per_window(PER_SECOND as u64, 1_000_000_000, PER_SECOND as u64).unwrap(),
        Quota::per_second(per_second).allow_burst(per_second),
    )
}

fn bench(c: &mut Criterion) {
    let (gcra, quota) = quotas();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("tenant-{i:05}")).collect();
    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;

    // The clock read alone, part of every `limits` check below.
    c.bench_function("clock/instant_now", |b| b.iter(now_ns));

    let mut group = c.benchmark_group("gcra_one_key");
    let ours = KeyedLimiter::new(100_000, 64);
    group.bench_function("limits", |b| {
        b.iter(|| ours.check(&gcra, black_box(&keys[0]), now_ns(), 1).allowed)
    });
    // The same check with the time given (a coarse clock the server reads once per request
    // for every rule, or a cheaper clock source): the limiter's own cost.
    let ours = KeyedLimiter::new(100_000, 64);
    let mut now = 0;
    group.bench_function("limits_time_given", |b| {
        b.iter(|| {
            now += 1_000;
            ours.check(&gcra, black_box(&keys[0]), now, 1).allowed
        })
    });
    let theirs = RateLimiter::keyed(quota);
    group.bench_function("governor", |b| {
        b.iter(|| theirs.check_key(black_box(&keys[0])).is_ok())
    });
    group.finish();

    let mut group = c.benchmark_group("gcra_10k_keys");
    let ours = KeyedLimiter::new(100_000, 64);
    let mut i = 0;
    group.bench_function("limits", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            ours.check(&gcra, black_box(&keys[i]), now_ns(), 1).allowed
        })
    });
    let ours = KeyedLimiter::new(100_000, 64);
    let (mut i, mut now) = (0, 0);
    group.bench_function("limits_time_given", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            now += 1_000;
            ours.check(&gcra, black_box(&keys[i]), now, 1).allowed
        })
    });
    let theirs = RateLimiter::keyed(quota);
    let mut i = 0;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            theirs.check_key(black_box(&keys[i])).is_ok()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
