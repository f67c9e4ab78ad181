//! Criterion benchmarks of the exact samplers at the calibration-test scales: nanoseconds per
//! discrete Laplace sample (ε 0.1 and 1.0, sensitivity 1: b = 10 and 1) and per discrete
//! Gaussian sample (ε 0.5, δ 10⁻⁶, sensitivity 1 and 5: σ ≈ 8.68 and 43.38), each drawn from
//! the operating system's generator (`OsRng`, what the server uses) and from a seeded
//! ChaCha20 (what the tests use); plus the Gaussian calibration itself (`Noise::gaussian`).
//!
//! Run: `cargo bench -p privacy --bench sample`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use privacy::{Delta, Epsilon, Noise};
use rand::rngs::OsRng;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn cases() -> Vec<(&'static str, Noise)> {
    let eps = |x| Epsilon::from_f64(x).unwrap();
    let delta = Delta::from_f64(1e-6).unwrap();
    vec![
        ("laplace_b10", Noise::laplace(1, eps(0.1)).unwrap()),
        ("laplace_b1", Noise::laplace(1, eps(1.0)).unwrap()),
        ("gaussian_d1", Noise::gaussian(1, eps(0.5), delta).unwrap()),
        ("gaussian_d5", Noise::gaussian(5, eps(0.5), delta).unwrap()),
    ]
}

fn samplers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample");
    for (name, noise) in cases() {
        let mut chacha = ChaCha20Rng::seed_from_u64(7);
        group.bench_function(format!("{name}/chacha20"), |b| {
            b.iter(|| black_box(noise.sample(&mut chacha)))
        });
        group.bench_function(format!("{name}/os_rng"), |b| {
            b.iter(|| black_box(noise.sample(&mut OsRng)))
        });
    }
    group.finish();
}

fn calibration(c: &mut Criterion) {
    let epsilon = Epsilon::from_f64(0.5).unwrap();
    let delta = Delta::from_f64(1e-6).unwrap();
    c.bench_function("calibrate/gaussian_d1", |b| {
        b.iter(|| black_box(Noise::gaussian(black_box(1), epsilon, delta)))
    });
    let noise = Noise::gaussian(1, epsilon, delta).unwrap();
    c.bench_function("accuracy/gaussian_d1", |b| {
        b.iter(|| black_box(noise.accuracy(black_box(0.05))))
    });
}

criterion_group!(benches, samplers, calibration);
criterion_main!(benches);
