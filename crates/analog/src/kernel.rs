//! Distance kernels: a portable scalar path and an AVX2+FMA path picked once
//! at runtime.
//!
//! The index never calls these per element through a pointer: it hands a
//! whole block of rows to one dispatched function (`ScoreRows`), so the
//! per-row kernel is inlined inside it and the indirect call is paid once
//! per block.
//!
//! The explicit `*_scalar` / `*_simd` functions are public so tests and
//! diagnostics can compare the two paths directly.

use std::sync::OnceLock;

use crate::Metric;

/// Scores every row of `rows` (row-major, `out.len()` rows of
/// `query.len()` values) against `query`, writing one score per row.
pub(crate) type ScoreRows = fn(query: &[f32], rows: &[f32], out: &mut [f32]);

/// Scores one vector against another.
pub(crate) type ScorePair = fn(a: &[f32], b: &[f32]) -> f32;

/// The kernels selected for this CPU.
pub(crate) struct Kernels {
    pub(crate) name: &'static str,
    pub(crate) ip: ScoreRows,
    pub(crate) l2: ScoreRows,
    pub(crate) ip_pair: ScorePair,
    pub(crate) l2_pair: ScorePair,
}

impl Kernels {
    pub(crate) fn for_metric(&self, metric: Metric) -> ScoreRows {
        match metric {
            Metric::InnerProduct => self.ip,
            Metric::L2 => self.l2,
        }
    }

    pub(crate) fn pair_for(&self, metric: Metric) -> ScorePair {
        match metric {
            Metric::InnerProduct => self.ip_pair,
            Metric::L2 => self.l2_pair,
        }
    }
}

static SELECTED: OnceLock<Kernels> = OnceLock::new();

/// The kernels for this CPU, detected on first use and cached.
pub(crate) fn selected() -> &'static Kernels {
    SELECTED.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            return Kernels {
                name: "avx2+fma",
                ip: avx2::ip_rows,
                l2: avx2::l2_rows,
                ip_pair: avx2::ip_pair,
                l2_pair: avx2::l2_pair,
            };
        }
    }
    Kernels {
        name: "scalar",
        ip: scalar_ip_rows,
        l2: scalar_l2_rows,
        ip_pair: dot_scalar,
        l2_pair: l2_scalar,
    }
}

/// Inner product, portable path: four independent accumulators so the
/// additions can overlap (and LLVM can keep them in one vector register).
///
/// ```
/// assert_eq!(analog::kernel::dot_scalar(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
///
/// # Panics
/// If the slices differ in length (a caller bug, not a data error).
#[inline]
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_scalar: length mismatch");
    let mut acc = [0.0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Squared Euclidean distance, portable path (four accumulators).
///
/// ```
/// assert_eq!(analog::kernel::l2_scalar(&[1.0, 2.0], &[4.0, 6.0]), 25.0);
/// ```
///
/// # Panics
/// If the slices differ in length (a caller bug, not a data error).
#[inline]
pub fn l2_scalar(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_scalar: length mismatch");
    let mut acc = [0.0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        tail += d * d;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Inner product on the AVX2+FMA path, or `None` when this CPU (or
/// architecture) does not have it.
///
/// # Panics
/// If the slices differ in length (a caller bug, not a data error).
pub fn dot_simd(a: &[f32], b: &[f32]) -> Option<f32> {
    assert_eq!(a.len(), b.len(), "dot_simd: length mismatch");
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            // SAFETY: AVX2 and FMA were detected on this CPU just above, and
            // the lengths are equal (asserted).
            return Some(unsafe { avx2::dot(a, b) });
        }
    }
    None
}

/// Squared Euclidean distance on the AVX2+FMA path, or `None` when this
/// CPU (or architecture) does not have it.
///
/// # Panics
/// If the slices differ in length (a caller bug, not a data error).
pub fn l2_simd(a: &[f32], b: &[f32]) -> Option<f32> {
    assert_eq!(a.len(), b.len(), "l2_simd: length mismatch");
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            // SAFETY: AVX2 and FMA were detected on this CPU just above, and
            // the lengths are equal (asserted).
            return Some(unsafe { avx2::l2(a, b) });
        }
    }
    None
}

fn scalar_ip_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out) {
        *o = dot_scalar(query, row);
    }
}

fn scalar_l2_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out) {
        *o = l2_scalar(query, row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm256_sub_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32,
        _mm_movehl_ps, _mm_shuffle_ps,
    };

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// Sum of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Shared shape of both kernels: 4 accumulators x 8 lanes over chunks
    /// of 32, then 8-wide steps, then a scalar tail; `step` folds one
    /// 8-lane pair into an accumulator.
    macro_rules! kernel {
        ($a:ident, $b:ident, |$acc:ident, $x:ident, $y:ident| $step:expr, |$tx:ident, $ty:ident| $tail:expr) => {{
            let n = $a.len();
            let pa = $a.as_ptr();
            let pb = $b.as_ptr();
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8 * j + 8 <= i + 32 <= n = a.len() = b.len(),
                    // so both unaligned 8-float loads are in bounds.
                    let ($x, $y) = unsafe {
                        (
                            _mm256_loadu_ps(pa.add(i + 8 * j)),
                            _mm256_loadu_ps(pb.add(i + 8 * j)),
                        )
                    };
                    let $acc = *acc;
                    *acc = $step;
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n = a.len() = b.len(); in bounds.
                let ($x, $y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
                let $acc = acc[0];
                acc[0] = $step;
                i += 8;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut total = hsum(sum);
            for ($tx, $ty) in $a[i..].iter().zip(&$b[i..]) {
                total += $tail;
            }
            total
        }};
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        kernel!(a, b, |acc, x, y| _mm256_fmadd_ps(x, y, acc), |x, y| x * y)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn l2(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        kernel!(
            a,
            b,
            |acc, x, y| {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            },
            |x, y| (x - y) * (x - y)
        )
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn ip_rows_impl(query: &[f32], rows: &[f32], out: &mut [f32]) {
        for (row, o) in rows.chunks_exact(query.len()).zip(out) {
            // SAFETY: this function's features are enabled (caller
            // contract) and `chunks_exact` yields rows of `query.len()`.
            *o = unsafe { dot(query, row) };
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_rows_impl(query: &[f32], rows: &[f32], out: &mut [f32]) {
        for (row, o) in rows.chunks_exact(query.len()).zip(out) {
            // SAFETY: as in `ip_rows_impl`.
            *o = unsafe { l2(query, row) };
        }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn ip_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: `super::detect` hands out this function only after
        // `available()` returned true, and it is private to this module
        // tree, so no other path can call it on a CPU without AVX2+FMA.
        unsafe { ip_rows_impl(query, rows, out) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn ip_pair(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "ip_pair: length mismatch");
        // SAFETY: as in `ip_rows`; lengths asserted equal.
        unsafe { dot(a, b) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn l2_pair(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "l2_pair: length mismatch");
        // SAFETY: as in `ip_rows`; lengths asserted equal.
        unsafe { l2(a, b) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn l2_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: as in `ip_rows`.
        unsafe { l2_rows_impl(query, rows, out) }
    }
}
