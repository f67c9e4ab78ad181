//! Shared test helpers: a plain f64 brute-force oracle and seeded data.

#![allow(dead_code)]

use analog::Metric;

/// One oracle result: id, exact score, and `Σ |term|`, the scale the f32
/// rounding error is proportional to.
#[derive(Debug, Clone, Copy)]
pub struct Exact {
    pub id: u32,
    pub score: f64,
    pub scale: f64,
}

/// Score and scale of one vector, computed plainly in f64.
pub fn exact(metric: Metric, q: &[f32], x: &[f32]) -> (f64, f64) {
    let mut score = 0.0f64;
    let mut scale = 0.0f64;
    for (a, b) in q.iter().zip(x) {
        let (a, b) = (f64::from(*a), f64::from(*b));
        let term = match metric {
            Metric::InnerProduct => a * b,
            Metric::L2 => (a - b) * (a - b),
        };
        score += term;
        scale += term.abs();
    }
    (score, scale)
}

/// Every vector ranked best first, ties by lower id.
pub fn brute_force(metric: Metric, data: &[f32], dim: usize, q: &[f32]) -> Vec<Exact> {
    let mut all: Vec<Exact> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(id, x)| {
            let (score, scale) = exact(metric, q, x);
            Exact {
                id: id as u32,
                score,
                scale,
            }
        })
        .collect();
    all.sort_by(|a, b| {
        let by_score = match metric {
            Metric::InnerProduct => b.score.total_cmp(&a.score),
            Metric::L2 => a.score.total_cmp(&b.score),
        };
        by_score.then(a.id.cmp(&b.id))
    });
    all
}

/// Tolerance for an f32 score: 1e-5 relative to `Σ |term|`, floored at
/// 1e-5 absolute. Relative to the score itself would be wrong for inner
/// products, where cancellation can make the score tiny while the rounding
/// error stays proportional to the terms.
pub fn tol(scale: f64) -> f64 {
    1e-5 * scale.max(1.0)
}

/// Fixed-seed values in [-lim, lim).
pub fn values(seed: u64, len: usize, lim: f32) -> Vec<f32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * lim
        })
        .collect()
}
