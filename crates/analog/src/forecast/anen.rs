//! Exact search under the analog-ensemble metric of Delle Monache et al. (2013).
//!
//! For a query state `q` and a stored state `x`, both laid out as per-predictor blocks of
//! standardised values over the time window,
//!
//! ```text
//! d(q, x) = Σ_blocks  w_b · sqrt( Σ_{j in block b} (q_j − x_j)² )
//! ```
//!
//! Standardising each predictor by its training standard deviation beforehand is the paper's
//! division by `σ_i`. The sum of square roots is not an inner product or an L2 norm, so the
//! flat index cannot compute it; this module brute-forces it.
//!
//! To vectorise, rows are stored in tiles of [`TILE`] rows, transposed: value `j` of the tile's
//! 16 rows is contiguous. A tile is scored by adding `(q_j − x_j)²` for all 16 rows at once
//! (two 8-lane registers with AVX2, four 4-lane with SSE2), taking 16 square roots at once per
//! block and accumulating the weighted sum. The AVX2+FMA build of the same code is chosen at
//! runtime when the CPU has it.

use crate::Neighbor;

/// Rows per transposed tile.
pub const TILE: usize = 16;

/// One predictor block of the state vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    /// First component of the block.
    pub start: usize,
    /// Number of components (the window length for a predictor).
    pub len: usize,
    /// Weight of the block's distance (finite, ≥ 0).
    pub weight: f32,
}

type ScoreTiles = fn(query: &[f32], tiles: &[f32], blocks: &[Block], out: &mut [f32]);

/// A brute-force index under the analog-ensemble metric. `Send + Sync`; search takes `&self`.
#[derive(Clone)]
pub struct AnEnIndex {
    dim: usize,
    len: usize,
    blocks: Vec<Block>,
    /// `len.div_ceil(TILE)` tiles of `dim × TILE` values; padding rows are zero and never
    /// offered as results.
    tiles: Vec<f32>,
    score_tiles: ScoreTiles,
}

impl std::fmt::Debug for AnEnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnEnIndex")
            .field("dim", &self.dim)
            .field("len", &self.len)
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

/// Why an [`AnEnIndex`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnEnError {
    /// A block reaches past the vector dimension, is empty, or has a bad weight.
    #[error("block {index} ({start}..{end}, weight {weight}) does not fit a {dim}-dimensional vector with a finite weight ≥ 0")]
    BadBlock {
        /// Position of the block.
        index: usize,
        /// Its first component.
        start: usize,
        /// One past its last component.
        end: usize,
        /// Its weight.
        weight: f32,
        /// The vector dimension.
        dim: usize,
    },
    /// The row buffer is not whole rows of finite values.
    #[error("rows: {0}")]
    Rows(String),
}

impl AnEnIndex {
    /// Builds the index over row-major `rows` of `dim` values.
    ///
    /// ```
    /// use analog::forecast::anen::{AnEnIndex, Block};
    /// // Two predictors with a 2-hour window each.
    /// let blocks = [Block { start: 0, len: 2, weight: 1.0 }, Block { start: 2, len: 2, weight: 0.5 }];
    /// let index = AnEnIndex::new(4, &blocks, &[0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 2.0])?;
    /// let hits = index.search(&[0.0; 4], 2, |_| true);
    /// assert_eq!(hits[0].id, 0);
    /// assert_eq!(hits[1].score, 5.0 + 0.5 * 2.0);
    /// # Ok::<(), analog::forecast::anen::AnEnError>(())
    /// ```
    ///
    /// # Errors
    /// [`AnEnError`] for a block outside the dimension or rows that are ragged or not finite.
    pub fn new(dim: usize, blocks: &[Block], rows: &[f32]) -> Result<Self, AnEnError> {
        for (index, b) in blocks.iter().enumerate() {
            let end = b.start.saturating_add(b.len);
            if b.len == 0 || end > dim || !b.weight.is_finite() || b.weight < 0.0 {
                return Err(AnEnError::BadBlock {
                    index,
                    start: b.start,
                    end,
                    weight: b.weight,
                    dim,
                });
            }
        }
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(AnEnError::Rows(format!(
                "{} values is not whole {dim}-dimensional rows",
                rows.len()
            )));
        }
        if let Some(at) = rows.iter().position(|v| !v.is_finite()) {
            return Err(AnEnError::Rows(format!(
                "row {}, component {} is not finite",
                at / dim,
                at % dim
            )));
        }
        let len = rows.len() / dim;
        let mut tiles = vec![0.0f32; len.div_ceil(TILE) * dim * TILE];
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            let tile = &mut tiles[(r / TILE) * dim * TILE..][..dim * TILE];
            for (j, &x) in row.iter().enumerate() {
                tile[j * TILE + r % TILE] = x;
            }
        }
        Ok(Self {
            dim,
            len,
            blocks: blocks.to_vec(),
            tiles,
            score_tiles: selected(),
        })
    }

    /// Rows stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows are stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The distance from `query` to every row, in id order, with the kernel selected for this
    /// CPU.
    ///
    /// # Panics
    /// If `query.len() != dim` (a caller bug).
    pub fn scores(&self, query: &[f32]) -> Vec<f32> {
        self.scores_with(query, self.score_tiles)
    }

    /// [`scores`](Self::scores) on the portable path (the one compiled for the baseline CPU).
    ///
    /// # Panics
    /// If `query.len() != dim` (a caller bug).
    pub fn scores_portable(&self, query: &[f32]) -> Vec<f32> {
        self.scores_with(query, score_tiles_portable)
    }

    fn scores_with(&self, query: &[f32], kernel: ScoreTiles) -> Vec<f32> {
        assert_eq!(query.len(), self.dim, "AnEnIndex: query dimension");
        let mut out = vec![0.0f32; self.len.div_ceil(TILE) * TILE];
        kernel(query, &self.tiles, &self.blocks, &mut out);
        out.truncate(self.len);
        out
    }

    /// The `k` nearest rows accepted by `allow` (called with each id), nearest first, ties by
    /// lower id. `score` is the distance.
    ///
    /// # Panics
    /// If `query.len() != dim` (a caller bug).
    pub fn search(&self, query: &[f32], k: usize, allow: impl Fn(u32) -> bool) -> Vec<Neighbor> {
        let scores = self.scores(query);
        // Every score is at hand, so an O(n) selection beats a heap; the order (distance, then
        // lower id; `+ 0.0` makes -0.0 tie with 0.0) is total, so the result is deterministic.
        let mut candidates: Vec<(f32, u32)> = scores
            .into_iter()
            .enumerate()
            // Ids are row positions; `new` takes rows from u32-indexed entries.
            .map(|(id, score)| (score + 0.0, id as u32))
            .filter(|(_, id)| allow(*id))
            .collect();
        let by_rank = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if k == 0 {
            return Vec::new();
        }
        if candidates.len() > k {
            candidates.select_nth_unstable_by(k - 1, by_rank);
            candidates.truncate(k);
        }
        candidates.sort_unstable_by(by_rank);
        candidates
            .into_iter()
            .map(|(score, id)| Neighbor { id, score })
            .collect()
    }
}

/// The distance computed plainly in `f64`, row by row: the oracle for tests.
///
/// ```
/// use analog::forecast::anen::{naive_distance, Block};
/// let blocks = [Block { start: 0, len: 2, weight: 2.0 }];
/// assert_eq!(naive_distance(&[0.0, 0.0], &[3.0, 4.0], &blocks), 10.0);
/// ```
pub fn naive_distance(query: &[f32], row: &[f32], blocks: &[Block]) -> f64 {
    blocks
        .iter()
        .map(|b| {
            let sum: f64 = (b.start..b.start + b.len)
                .map(|j| {
                    let d = f64::from(query[j]) - f64::from(row[j]);
                    d * d
                })
                .sum();
            f64::from(b.weight) * sum.sqrt()
        })
        .sum()
}

/// The kernel for this CPU.
fn selected() -> ScoreTiles {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            return avx2::score_tiles;
        }
    }
    score_tiles_portable
}

fn score_tiles_portable(query: &[f32], tiles: &[f32], blocks: &[Block], out: &mut [f32]) {
    score_tiles_generic(query, tiles, blocks, out);
}

/// Scores every tile; written so that LLVM vectorises the 16-row inner loops.
#[inline(always)]
fn score_tiles_generic(query: &[f32], tiles: &[f32], blocks: &[Block], out: &mut [f32]) {
    let dim = query.len();
    for (tile, out) in tiles
        .chunks_exact(dim * TILE)
        .zip(out.chunks_exact_mut(TILE))
    {
        let mut total = [0.0f32; TILE];
        for b in blocks {
            let mut acc = [0.0f32; TILE];
            for (j, &q) in query.iter().enumerate().skip(b.start).take(b.len) {
                let Some(column) = tile.get(j * TILE..(j + 1) * TILE) else {
                    continue;
                };
                for (a, &x) in acc.iter_mut().zip(column) {
                    let d = q - x;
                    *a += d * d;
                }
            }
            for (t, a) in total.iter_mut().zip(acc) {
                *t += b.weight * a.sqrt();
            }
        }
        out.copy_from_slice(&total);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Block;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    fn score_tiles_impl(query: &[f32], tiles: &[f32], blocks: &[Block], out: &mut [f32]) {
        super::score_tiles_generic(query, tiles, blocks, out);
    }

    /// Safe entry point handed out by `super::selected`.
    pub(super) fn score_tiles(query: &[f32], tiles: &[f32], blocks: &[Block], out: &mut [f32]) {
        // SAFETY: `super::selected` hands out this function only after `available()` returned
        // true, and it is private to this module tree, so no other path can call it on a CPU
        // without AVX2+FMA.
        unsafe { score_tiles_impl(query, tiles, blocks, out) }
    }
}
