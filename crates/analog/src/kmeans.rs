//! k-means (Lloyd's algorithm) with k-means++ seeding, shared by the coarse
//! quantizer and the product quantizer's sub-quantizers.
//!
//! Deterministic for a seed: seeding draws from [`SplitMix64`], assignment
//! ties go to the lower centroid id (the flat index's tie rule), and empty
//! clusters are refilled by a fixed rule.

use crate::rng::SplitMix64;
use crate::{kernel, AnalogError, FlatIndex, Metric};

/// Trains `k` centroids (row-major, `k * dim` values) on the `data.len() /
/// dim` points of `data`.
///
/// The caller guarantees `1 <= k <= points`, `dim >= 1` and finite data.
/// Stops after `iters` Lloyd iterations or when no assignment changes.
pub(crate) fn train(
    data: &[f32],
    dim: usize,
    k: usize,
    iters: usize,
    rng: &mut SplitMix64,
) -> Result<Vec<f32>, AnalogError> {
    let n = data.len() / dim;
    let mut centroids = plus_plus(data, dim, k, rng);
    let mut assignment = vec![u32::MAX; n];
    let mut dist = vec![0.0f32; n];
    for iter in 0..iters {
        let changed = assign(&centroids, data, dim, &mut assignment, &mut dist)?;
        if iter > 0 && !changed {
            break;
        }
        centroids = update(data, dim, k, &mut assignment, &mut dist);
    }
    Ok(centroids)
}

/// Nearest centroid (squared L2, ties to the lower id) and its distance for
/// every point; returns whether any assignment changed.
pub(crate) fn assign(
    centroids: &[f32],
    data: &[f32],
    dim: usize,
    assignment: &mut [u32],
    dist: &mut [f32],
) -> Result<bool, AnalogError> {
    let mut index = FlatIndex::new(dim, Metric::L2)?;
    index.add(centroids)?;
    let hits = index.search_batch(data, 1)?;
    let mut changed = false;
    for ((hit, a), d) in hits.iter().zip(assignment.iter_mut()).zip(dist.iter_mut()) {
        if let Some(best) = hit.first() {
            changed |= *a != best.id;
            *a = best.id;
            *d = best.score;
        }
    }
    Ok(changed)
}

/// k-means++ seeding (Arthur and Vassilvitskii 2007): each next centroid is
/// a point drawn with probability proportional to its squared distance to
/// the nearest centroid chosen so far. Spreads the seeds out, which matters
/// for small `points / k` ratios like a 6,000-vector index with 256 PQ codes.
fn plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let n = data.len() / dim;
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.below(n);
    centroids.extend_from_slice(&data[first * dim..][..dim]);
    let mut nearest: Vec<f32> = data
        .chunks_exact(dim)
        .map(|x| kernel::l2_scalar(x, &centroids[..dim]))
        .collect();
    for _ in 1..k {
        let total: f64 = nearest.iter().map(|&d| f64::from(d)).sum();
        let pick = if total > 0.0 {
            let target = rng.next_f64() * total;
            let mut acc = 0.0f64;
            // The last point with a positive weight catches rounding at the end.
            let mut pick = nearest.iter().rposition(|&d| d > 0.0).unwrap_or(0);
            for (i, &d) in nearest.iter().enumerate() {
                acc += f64::from(d);
                if acc > target && d > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point coincides with a centroid: duplicates are all
            // that is left, any of them will do.
            rng.below(n)
        };
        let chosen = &data[pick * dim..][..dim];
        for (x, d) in data.chunks_exact(dim).zip(nearest.iter_mut()) {
            *d = d.min(kernel::l2_scalar(x, chosen));
        }
        centroids.extend_from_slice(chosen);
    }
    centroids
}

/// New centroids as the means of their points. An empty cluster takes the
/// point farthest from its centroid among clusters with two or more points
/// (lowest point index on ties), so every centroid keeps at least one point
/// (`points >= k` guarantees such a donor exists).
fn update(
    data: &[f32],
    dim: usize,
    k: usize,
    assignment: &mut [u32],
    dist: &mut [f32],
) -> Vec<f32> {
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (x, &a) in data.chunks_exact(dim).zip(assignment.iter()) {
        let a = a as usize;
        counts[a] += 1;
        for (s, &v) in sums[a * dim..][..dim].iter_mut().zip(x) {
            *s += f64::from(v);
        }
    }
    for empty in 0..k {
        if counts[empty] > 0 {
            continue;
        }
        let mut donor: Option<usize> = None;
        for (i, (&a, &d)) in assignment.iter().zip(dist.iter()).enumerate() {
            if counts[a as usize] > 1 && donor.is_none_or(|best| d > dist[best]) {
                donor = Some(i);
            }
        }
        let Some(i) = donor else { break };
        let from = assignment[i] as usize;
        let x = &data[i * dim..][..dim];
        counts[from] -= 1;
        for (s, &v) in sums[from * dim..][..dim].iter_mut().zip(x) {
            *s -= f64::from(v);
        }
        counts[empty] = 1;
        for (s, &v) in sums[empty * dim..][..dim].iter_mut().zip(x) {
            *s = f64::from(v);
        }
        assignment[i] = empty as u32;
        // Now the point is its cluster's centroid: never a donor again.
        dist[i] = 0.0;
    }
    sums.chunks_exact(dim)
        .zip(&counts)
        .flat_map(|(s, &c)| {
            let c = c.max(1) as f64;
            s.iter().map(move |&v| (v / c) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight, far-apart blobs: k-means with k = 3 puts one centroid
    /// in each, whatever the seed.
    #[test]
    fn finds_separated_blobs() {
        let centers = [[0.0f32, 0.0], [100.0, 0.0], [0.0, 100.0]];
        let mut data = Vec::new();
        for i in 0..30 {
            let c = centers[i % 3];
            let jitter = (i / 3) as f32 * 0.1;
            data.extend_from_slice(&[c[0] + jitter, c[1] - jitter]);
        }
        for seed in 0..5 {
            let got = train(&data, 2, 3, 20, &mut SplitMix64::new(seed)).expect("valid");
            for c in centers {
                let near = got
                    .chunks_exact(2)
                    .any(|g| (g[0] - c[0]).abs() < 1.0 && (g[1] - c[1]).abs() < 1.0);
                assert!(near, "seed {seed}: no centroid near {c:?} in {got:?}");
            }
        }
    }

    /// All-identical points: seeding finds no distance to sample by, and
    /// every cluster but one starts empty; each still ends with a point.
    #[test]
    fn duplicates_and_empty_clusters() {
        let data = vec![1.5f32; 8 * 3];
        let got = train(&data, 3, 4, 5, &mut SplitMix64::new(1)).expect("valid");
        assert_eq!(got.len(), 4 * 3);
        assert!(got.iter().all(|&v| v == 1.5), "{got:?}");
    }

    #[test]
    fn same_seed_same_centroids() {
        let data: Vec<f32> = (0..400).map(|i| ((i * 37) % 101) as f32).collect();
        let a = train(&data, 4, 7, 10, &mut SplitMix64::new(9)).expect("valid");
        let b = train(&data, 4, 7, 10, &mut SplitMix64::new(9)).expect("valid");
        assert_eq!(a, b);
    }
}
