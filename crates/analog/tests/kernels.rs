//! The SIMD kernel agrees with the scalar one (and with f64) for every
//! dimension 1..=130, which exercises every chunk/remainder split.

mod common;

use analog::kernel::{dot_scalar, dot_simd, l2_scalar, l2_simd};
use analog::Metric;
use common::{exact, tol};

#[test]
fn simd_level_matches_cpu() {
    let has_simd = dot_simd(&[1.0], &[1.0]).is_some();
    let want = if has_simd { "avx2+fma" } else { "scalar" };
    assert_eq!(analog::simd_level(), want);
}

#[test]
fn simd_equals_scalar_for_all_dims() {
    if dot_simd(&[0.0], &[0.0]).is_none() {
        eprintln!("AVX2+FMA not available: only the scalar kernel is checked");
    }
    for dim in 1..=130usize {
        for seed in 0..8u64 {
            let a = common::values(seed * 1000 + dim as u64, dim, 10.0);
            let b = common::values(seed * 1000 + dim as u64 + 500, dim, 10.0);
            for (metric, scalar, simd) in [
                (Metric::InnerProduct, dot_scalar(&a, &b), dot_simd(&a, &b)),
                (Metric::L2, l2_scalar(&a, &b), l2_simd(&a, &b)),
            ] {
                let (want, scale) = exact(metric, &a, &b);
                let t = tol(scale);
                assert!(
                    (f64::from(scalar) - want).abs() <= t,
                    "{metric:?} dim {dim}: scalar {scalar} vs exact {want}"
                );
                if let Some(simd) = simd {
                    assert!(
                        (f64::from(simd) - want).abs() <= t,
                        "{metric:?} dim {dim}: simd {simd} vs exact {want}"
                    );
                    assert!(
                        (simd - scalar).abs() as f64 <= 2.0 * t,
                        "{metric:?} dim {dim}: simd {simd} vs scalar {scalar}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_lane_contributes() {
    // A single 1 at each position catches a dropped lane or tail element.
    for dim in 1..=130usize {
        for at in 0..dim {
            let mut a = vec![0.0f32; dim];
            a[at] = 1.0;
            let b: Vec<f32> = (0..dim).map(|i| i as f32 + 1.0).collect();
            let want = at as f32 + 1.0;
            assert_eq!(dot_scalar(&a, &b), want, "scalar dim {dim} at {at}");
            assert_eq!(
                l2_scalar(&a, &a.iter().map(|_| 0.0).collect::<Vec<_>>()),
                1.0
            );
            if let Some(got) = dot_simd(&a, &b) {
                assert_eq!(got, want, "simd dim {dim} at {at}");
            }
            if let Some(got) = l2_simd(&a, &vec![0.0; dim]) {
                assert_eq!(got, 1.0, "simd l2 dim {dim} at {at}");
            }
        }
    }
}

/// The block kernels (every tile shape: 1 to 7 queries, 1 to 30 blocks)
/// agree with f64 for every dimension 1..=130, SIMD with scalar.
#[test]
fn block_kernels_match_f64_for_all_shapes() {
    use analog::kernel::{score_blocks_scalar, score_blocks_simd, to_blocks, LANES};
    for dim in 1..=130usize {
        let nq = 1 + dim % 7;
        let rows = LANES * (1 + dim % 30);
        let data = common::values(dim as u64, rows * dim, 4.0);
        let queries = common::values(dim as u64 + 7, nq * dim, 4.0);
        let blocks = to_blocks(&data, dim);
        for metric in [Metric::InnerProduct, Metric::L2] {
            let mut scalar = vec![0.0f32; nq * rows];
            score_blocks_scalar(metric, &queries, dim, &blocks, &mut scalar);
            let mut simd = vec![0.0f32; nq * rows];
            let has_simd = score_blocks_simd(metric, &queries, dim, &blocks, &mut simd);
            for (qi, q) in queries.chunks_exact(dim).enumerate() {
                for (r, x) in data.chunks_exact(dim).enumerate() {
                    let (want, scale) = exact(metric, q, x);
                    let got = scalar[qi * rows + r];
                    assert!(
                        (f64::from(got) - want).abs() <= tol(scale),
                        "{metric:?} dim {dim} q {qi} row {r}: scalar {got} vs {want}"
                    );
                    if has_simd {
                        let got = simd[qi * rows + r];
                        assert!(
                            (f64::from(got) - want).abs() <= tol(scale),
                            "{metric:?} dim {dim} q {qi} row {r}: simd {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
