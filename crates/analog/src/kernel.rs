//! Distance kernels: a portable scalar path and an AVX2+FMA path picked once
//! at runtime.
//!
//! [`FlatIndex`](crate::FlatIndex) scores vectors stored in **blocks of
//! [`LANES`] rows, transposed**: block `b` holds, for each dimension `d`,
//! the `d`-th value of its 8 rows side by side. One SIMD lane then follows
//! one row, and a score is `acc = fma(q[d], x[d], acc)` for `d = 0, 1, …`
//! in that lane: no horizontal sum per row, no remainder handling for any
//! dimension, and a broadcast query value is reused by every block of a
//! tile. Several queries and blocks are scored per pass (register
//! blocking, as in a matrix-multiply micro-kernel), and every tile shape
//! performs the same operations in the same order for a (query, row) pair,
//! so a batch gives bit-identical scores to one query at a time.
//!
//! The index never calls these per element through a pointer: it hands a
//! whole tile of blocks and queries to one dispatched function
//! (`ScoreBlocks`), so the indirect call is paid once per tile.
//!
//! The explicit `*_scalar` / `*_simd` functions score one pair of
//! row-major vectors (used for exact re-ranking); they are public so tests
//! and diagnostics can compare the two paths directly.

use std::sync::OnceLock;

use crate::Metric;

/// Rows per block of the transposed layout (one AVX2 register of `f32`).
pub const LANES: usize = 8;

/// Scores every query of `queries` (row-major, `dim` values each) against
/// every row of `blocks` (transposed blocks of [`LANES`] rows), writing
/// `out[query * rows + row]` with `rows = blocks.len() / dim`.
pub(crate) type ScoreBlocks = fn(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]);

/// Scores one vector against another.
pub(crate) type ScorePair = fn(a: &[f32], b: &[f32]) -> f32;

/// `out[i] += scale * x[i]` over the common length.
pub(crate) type Axpy = fn(out: &mut [f32], scale: f32, x: &[f32]);

/// The first run of 8 scores (at a multiple of 8 in `scores`, whose
/// length is a multiple of 8) with a score strictly better than `bound`
/// (greater when `larger_is_better`, else smaller; NaN never is): its start
/// and a mask of the lanes that are.
pub(crate) type Screen =
    fn(scores: &[f32], bound: f32, larger_is_better: bool) -> Option<(usize, u32)>;

/// `out[i] = a[i] + scale * b[i]` over the common length.
pub(crate) type ScaledSum = fn(out: &mut [f32], a: &[f32], scale: f32, b: &[f32]);

/// The kernels selected for this CPU.
pub(crate) struct Kernels {
    /// Used for PQ lookup tables (256-wide rows).
    pub(crate) axpy: Axpy,
    pub(crate) scaled_sum: ScaledSum,
    /// Top-k screening of kernel output.
    pub(crate) screen: Screen,
    pub(crate) name: &'static str,
    pub(crate) ip: ScoreBlocks,
    pub(crate) l2: ScoreBlocks,
    pub(crate) ip_pair: ScorePair,
    pub(crate) l2_pair: ScorePair,
}

impl Kernels {
    pub(crate) fn for_metric(&self, metric: Metric) -> ScoreBlocks {
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
                axpy: avx2::axpy,
                scaled_sum: avx2::scaled_sum,
                screen: avx2::screen,
                name: "avx2+fma",
                ip: avx2::ip_blocks,
                l2: avx2::l2_blocks,
                ip_pair: avx2::ip_pair,
                l2_pair: avx2::l2_pair,
            };
        }
    }
    Kernels {
        axpy: axpy_portable,
        scaled_sum: scaled_sum_portable,
        screen: screen_portable,
        name: "scalar",
        ip: scalar_ip_blocks,
        l2: scalar_l2_blocks,
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

#[inline]
fn axpy_portable(out: &mut [f32], scale: f32, x: &[f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o += scale * x;
    }
}

fn screen_portable(scores: &[f32], bound: f32, larger_is_better: bool) -> Option<(usize, u32)> {
    scores.chunks_exact(8).enumerate().find_map(|(c, chunk)| {
        let mask = chunk.iter().enumerate().fold(0u32, |mask, (i, &s)| {
            let better = if larger_is_better {
                s > bound
            } else {
                s < bound
            };
            mask | (u32::from(better) << i)
        });
        (mask != 0).then_some((c * 8, mask))
    })
}

#[inline]
fn scaled_sum_portable(out: &mut [f32], a: &[f32], scale: f32, b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + scale * b;
    }
}

/// Checks the shapes of a `ScoreBlocks` call; returns (queries, rows).
fn block_shapes(queries: &[f32], dim: usize, blocks: &[f32], out: &[f32]) -> (usize, usize) {
    assert!(dim > 0, "score_blocks: dim 0");
    assert_eq!(queries.len() % dim, 0, "score_blocks: ragged queries");
    assert_eq!(
        blocks.len() % (dim * LANES),
        0,
        "score_blocks: ragged blocks"
    );
    let (nq, rows) = (queries.len() / dim, blocks.len() / dim);
    assert_eq!(out.len(), nq * rows, "score_blocks: output size");
    (nq, rows)
}

/// The portable kernel: per lane, `acc += q[d] * x[d]` (or the squared
/// difference) for `d` in order, the same sequence as the SIMD kernel but
/// with a separate multiply and add.
fn scalar_blocks<const L2: bool>(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]) {
    let (_, rows) = block_shapes(queries, dim, blocks, out);
    for (query, out) in queries
        .chunks_exact(dim)
        .zip(out.chunks_exact_mut(rows.max(1)))
    {
        for (block, out) in blocks
            .chunks_exact(dim * LANES)
            .zip(out.chunks_exact_mut(LANES))
        {
            let mut acc = [0.0f32; LANES];
            for (&q, x) in query.iter().zip(block.chunks_exact(LANES)) {
                for (a, &x) in acc.iter_mut().zip(x) {
                    if L2 {
                        let t = q - x;
                        *a += t * t;
                    } else {
                        *a += q * x;
                    }
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

fn scalar_ip_blocks(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]) {
    scalar_blocks::<false>(queries, dim, blocks, out);
}

fn scalar_l2_blocks(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]) {
    scalar_blocks::<true>(queries, dim, blocks, out);
}

/// Scores of `queries` against `blocks` with the portable kernel, for
/// tests that compare it with [`score_blocks_simd`].
///
/// # Panics
/// If the shapes do not match (see [`score_blocks_simd`]).
pub fn score_blocks_scalar(
    metric: Metric,
    queries: &[f32],
    dim: usize,
    blocks: &[f32],
    out: &mut [f32],
) {
    match metric {
        Metric::InnerProduct => scalar_ip_blocks(queries, dim, blocks, out),
        Metric::L2 => scalar_l2_blocks(queries, dim, blocks, out),
    }
}

/// Scores of `queries` (row-major, `dim` values each) against the rows of
/// `blocks` (transposed blocks of [`LANES`] rows, see the module docs) into
/// `out[query * rows + row]`, on the AVX2+FMA path; `false` when this CPU
/// does not have it (`out` untouched).
///
/// # Panics
/// If `dim == 0`, `queries` is not whole queries, `blocks` is not whole
/// blocks, or `out.len()` is not queries x rows.
pub fn score_blocks_simd(
    metric: Metric,
    queries: &[f32],
    dim: usize,
    blocks: &[f32],
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            match metric {
                Metric::InnerProduct => avx2::ip_blocks(queries, dim, blocks, out),
                Metric::L2 => avx2::l2_blocks(queries, dim, blocks, out),
            }
            return true;
        }
    }
    let _ = (metric, queries, dim, blocks, out);
    false
}

/// Rows (row-major, `dim` values each) in the transposed block layout the
/// block kernels read, the last block zero-padded.
///
/// ```
/// // Two 2-d rows: block 0 holds dimension 0 of rows 0..8, then dimension 1.
/// let b = analog::kernel::to_blocks(&[1.0, 2.0, 3.0, 4.0], 2);
/// assert_eq!(b.len(), 2 * analog::kernel::LANES);
/// assert_eq!(&b[..2], &[1.0, 3.0]);
/// assert_eq!(&b[8..10], &[2.0, 4.0]);
/// ```
pub fn to_blocks(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows.len().div_ceil(dim * LANES) * dim * LANES];
    write_blocks(&mut out, 0, rows, dim);
    out
}

/// Blocks per padding unit of [`extend_blocks`]: a multiple of every tile
/// width, so the kernels never fall back to a one-block tile (a single FMA
/// chain, latency-bound) for a ragged end.
pub(crate) const BLOCK_GROUP: usize = 12;

/// Blocks of `old` (holding `len` rows) followed by `rows`, zero-padded to
/// a multiple of [`BLOCK_GROUP`] blocks, in a new buffer whose returned
/// start offset is 64-byte aligned: a 32-byte load then never straddles a
/// cache line (which costs a second load).
pub(crate) fn extend_blocks(
    old: &[f32],
    len: usize,
    rows: &[f32],
    dim: usize,
) -> (Vec<f32>, usize) {
    let total = len + rows.len() / dim;
    let size = total.div_ceil(LANES * BLOCK_GROUP) * BLOCK_GROUP * dim * LANES;
    const ALIGN_FLOATS: usize = 16;
    let mut buf = vec![0.0f32; size + ALIGN_FLOATS];
    let misalign = (buf.as_ptr() as usize / 4) % ALIGN_FLOATS;
    let start = (ALIGN_FLOATS - misalign) % ALIGN_FLOATS;
    let body = &mut buf[start..start + size];
    body[..old.len().min(size)].copy_from_slice(&old[..old.len().min(size)]);
    write_blocks(body, len, rows, dim);
    // Drop the unused tail (no reallocation, so the alignment holds).
    buf.truncate(start + size);
    (buf, start)
}

fn write_blocks(blocks: &mut [f32], len: usize, rows: &[f32], dim: usize) {
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let id = len + i;
        let start = (id / LANES) * dim * LANES + id % LANES;
        for (d, &v) in row.iter().enumerate() {
            blocks[start + d * LANES] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps256_ps128, _mm256_cmp_ps, _mm256_extractf128_ps,
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_movemask_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm256_sub_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps,
        _mm_shuffle_ps, _CMP_GT_OQ, _CMP_LT_OQ,
    };

    use super::LANES;

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

    /// A `Q` queries x `B` blocks tile: `Q * B` accumulators stay in
    /// registers for the whole pass over the dimensions, each block load is
    /// shared by `Q` queries and each broadcast query value by `B` blocks.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `queries` must hold `Q * dim`
    /// readable values, `blocks` `B * dim * LANES`, and `out` must have
    /// `(Q - 1) * out_stride + B * LANES` writable values.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const Q: usize, const B: usize, const L2: bool>(
        queries: *const f32,
        dim: usize,
        blocks: *const f32,
        out: *mut f32,
        out_stride: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); B]; Q];
        for d in 0..dim {
            let mut x = [_mm256_setzero_ps(); B];
            for (b, x) in x.iter_mut().enumerate() {
                // SAFETY: b * dim * LANES + d * LANES + LANES <= B * dim * LANES.
                *x = unsafe { _mm256_loadu_ps(blocks.add((b * dim + d) * LANES)) };
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i * dim + d < Q * dim.
                let q = _mm256_set1_ps(unsafe { *queries.add(i * dim + d) });
                for (acc, &x) in acc.iter_mut().zip(&x) {
                    *acc = if L2 {
                        let t = _mm256_sub_ps(q, x);
                        _mm256_fmadd_ps(t, t, *acc)
                    } else {
                        _mm256_fmadd_ps(q, x, *acc)
                    };
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (b, &acc) in acc.iter().enumerate() {
                // SAFETY: i * out_stride + b * LANES + LANES fits (contract).
                unsafe { _mm256_storeu_ps(out.add(i * out_stride + b * LANES), acc) };
            }
        }
    }

    /// Queries per tile in a batch and blocks per tile: 4 x 2 = 8
    /// accumulators, 2 block registers and a broadcast stay well inside the
    /// 16 AVX2 registers (12 accumulators made LLVM spill one per step,
    /// which measured 1.6x slower), and 8 independent FMA chains cover the
    /// FMA latency.
    const TILE_Q: usize = 4;
    const TILE_B: usize = 2;
    /// Blocks per tile for a single query: 12 accumulators (13 registers
    /// with the broadcast; block loads fold into the FMAs). Each
    /// accumulator is a chain of `dim` dependent FMAs, so 8 chains (2 FMA
    /// units x 4 cycles latency) would only just keep the units busy; 12
    /// leave slack for load latency. (A single query is bound by memory
    /// bandwidth anyway: every value is used once.)
    const TILE_B1: usize = 12;

    /// Every query against every block, in tiles.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; shapes as `super::block_shapes`
    /// checks them.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn blocks_impl<const L2: bool>(
        queries: &[f32],
        dim: usize,
        blocks: &[f32],
        out: &mut [f32],
    ) {
        let (nq, rows) = super::block_shapes(queries, dim, blocks, out);
        let nb = rows / LANES;
        let (q, x, o) = (queries.as_ptr(), blocks.as_ptr(), out.as_mut_ptr());
        let block = dim * LANES;
        // SAFETY (all calls below): query i < nq and block b < nb are in
        // bounds, and out row i has `rows` values starting at i * rows,
        // as block_shapes asserted.
        let mut i = 0;
        while i + TILE_Q <= nq {
            let mut b = 0;
            while b + TILE_B <= nb {
                unsafe {
                    tile::<TILE_Q, TILE_B, L2>(
                        q.add(i * dim),
                        dim,
                        x.add(b * block),
                        o.add(i * rows + b * LANES),
                        rows,
                    )
                };
                b += TILE_B;
            }
            while b < nb {
                unsafe {
                    tile::<TILE_Q, 1, L2>(
                        q.add(i * dim),
                        dim,
                        x.add(b * block),
                        o.add(i * rows + b * LANES),
                        rows,
                    )
                };
                b += 1;
            }
            i += TILE_Q;
        }
        while i < nq {
            let mut b = 0;
            while b + TILE_B1 <= nb {
                unsafe {
                    tile::<1, TILE_B1, L2>(
                        q.add(i * dim),
                        dim,
                        x.add(b * block),
                        o.add(i * rows + b * LANES),
                        rows,
                    )
                };
                b += TILE_B1;
            }
            while b < nb {
                unsafe {
                    tile::<1, 1, L2>(
                        q.add(i * dim),
                        dim,
                        x.add(b * block),
                        o.add(i * rows + b * LANES),
                        rows,
                    )
                };
                b += 1;
            }
            i += 1;
        }
    }

    /// One compare and a movemask per 8 scores.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn screen_impl(
        scores: &[f32],
        bound: f32,
        larger_is_better: bool,
    ) -> Option<(usize, u32)> {
        let b = _mm256_set1_ps(bound);
        let p = scores.as_ptr();
        let mut at = 0;
        while at + LANES <= scores.len() {
            // SAFETY: at + 8 <= scores.len().
            let v = unsafe { _mm256_loadu_ps(p.add(at)) };
            // Ordered comparisons: false for NaN.
            let hits = if larger_is_better {
                _mm256_cmp_ps::<_CMP_GT_OQ>(v, b)
            } else {
                _mm256_cmp_ps::<_CMP_LT_OQ>(v, b)
            };
            let mask = _mm256_movemask_ps(hits) as u32;
            if mask != 0 {
                return Some((at, mask));
            }
            at += LANES;
        }
        None
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn screen(
        scores: &[f32],
        bound: f32,
        larger_is_better: bool,
    ) -> Option<(usize, u32)> {
        // SAFETY: handed out by `super::detect` only after `available()`.
        unsafe { screen_impl(scores, bound, larger_is_better) }
    }

    /// The portable loop, compiled for AVX2 (LLVM vectorises it 8 wide).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpy_impl(out: &mut [f32], scale: f32, x: &[f32]) {
        super::axpy_portable(out, scale, x);
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn axpy(out: &mut [f32], scale: f32, x: &[f32]) {
        // SAFETY: handed out by `super::detect` only after `available()`.
        unsafe { axpy_impl(out, scale, x) }
    }

    /// The portable loop, compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scaled_sum_impl(out: &mut [f32], a: &[f32], scale: f32, b: &[f32]) {
        super::scaled_sum_portable(out, a, scale, b);
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn scaled_sum(out: &mut [f32], a: &[f32], scale: f32, b: &[f32]) {
        // SAFETY: handed out by `super::detect` only after `available()`.
        unsafe { scaled_sum_impl(out, a, scale, b) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn ip_blocks(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]) {
        // SAFETY: `super::detect` hands out this function only after
        // `available()` returned true (and `score_blocks_simd` checks it),
        // and `blocks_impl` checks the shapes before any access.
        unsafe { blocks_impl::<false>(queries, dim, blocks, out) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn l2_blocks(queries: &[f32], dim: usize, blocks: &[f32], out: &mut [f32]) {
        // SAFETY: as in `ip_blocks`.
        unsafe { blocks_impl::<true>(queries, dim, blocks, out) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn ip_pair(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "ip_pair: length mismatch");
        // SAFETY: as in `ip_blocks`; lengths asserted equal.
        unsafe { dot(a, b) }
    }

    /// Safe entry point stored in `super::Kernels`.
    pub(super) fn l2_pair(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "l2_pair: length mismatch");
        // SAFETY: as in `ip_blocks`; lengths asserted equal.
        unsafe { l2(a, b) }
    }
}
