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

use crate::format::FormatError;
use crate::storage::{self, Section};
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
    /// offered as results. Owned, or borrowed in place from a loaded file.
    tiles: Section<f32>,
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
    /// A tiles section is missing, has the wrong length, or holds a non-finite value.
    #[error("tiles: {0}")]
    Tiles(String),
}

impl From<FormatError> for AnEnError {
    fn from(e: FormatError) -> Self {
        AnEnError::Tiles(e.to_string())
    }
}

/// Checks every block against the dimension.
fn check_blocks(dim: usize, blocks: &[Block]) -> Result<(), AnEnError> {
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
    Ok(())
}

/// The single block of weight 1 over the whole vector: under it the "AnEn" distance is the
/// Euclidean distance, so the tiles serve the seed similarity too.
///
/// ```
/// use analog::forecast::anen::{euclidean_blocks, naive_distance};
/// assert_eq!(naive_distance(&[0.0, 0.0], &[3.0, 4.0], &euclidean_blocks(2)), 5.0);
/// ```
pub fn euclidean_blocks(dim: usize) -> [Block; 1] {
    [Block {
        start: 0,
        len: dim,
        weight: 1.0,
    }]
}

/// Values in the tile layout for `rows` rows of `dim` values: `rows.div_ceil(TILE) · dim · TILE`.
pub fn tiled_len(dim: usize, rows: usize) -> usize {
    rows.div_ceil(TILE) * dim * TILE
}

/// Row-major `rows` (whole rows of `dim` values) in the transposed tile layout the index
/// scores: tile `t` holds rows `16t .. 16t + 16`, value `j` of its rows contiguous; padding
/// rows are zero. This is what a model's `tiles` section stores.
///
/// ```
/// use analog::forecast::anen::{tile_rows, TILE};
/// let tiles = tile_rows(2, &[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(tiles.len(), 2 * TILE);
/// assert_eq!((tiles[0], tiles[1], tiles[TILE], tiles[TILE + 1]), (1.0, 3.0, 2.0, 4.0));
/// ```
///
/// # Panics
/// If `dim` is 0 (a caller bug). A trailing partial row is ignored.
pub fn tile_rows(dim: usize, rows: &[f32]) -> Vec<f32> {
    assert!(dim > 0, "tile_rows: dimension 0");
    let len = rows.len() / dim;
    let mut tiles = vec![0.0f32; tiled_len(dim, len)];
    for (r, row) in rows.chunks_exact(dim).enumerate() {
        let tile = &mut tiles[(r / TILE) * dim * TILE..][..dim * TILE];
        for (j, &x) in row.iter().enumerate() {
            tile[j * TILE + r % TILE] = x;
        }
    }
    tiles
}

/// Row `row` gathered out of the tile layout into `out` (`dim` values).
fn gather_row(tiles: &[f32], dim: usize, row: usize, out: &mut [f32]) {
    let tile = &tiles[(row / TILE) * dim * TILE..][..dim * TILE];
    for (j, o) in out.iter_mut().enumerate() {
        *o = tile[j * TILE + row % TILE];
    }
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
        check_blocks(dim, blocks)?;
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
        Ok(Self {
            dim,
            len: rows.len() / dim,
            blocks: blocks.to_vec(),
            tiles: Section::owned(tile_rows(dim, rows)),
            score_tiles: selected(),
        })
    }

    /// The index over `len` rows already in the tile layout ([`tile_rows`]), owned.
    ///
    /// # Errors
    /// [`AnEnError::BadBlock`]; [`AnEnError::Tiles`] when `tiles` is not
    /// [`tiled_len`]`(dim, len)` finite values.
    pub fn from_tiles(
        dim: usize,
        len: usize,
        blocks: &[Block],
        tiles: Vec<f32>,
    ) -> Result<Self, AnEnError> {
        Self::from_section(dim, len, blocks, Section::owned(tiles))
    }

    /// The index over section `name` of a loaded file (a memory map, …) holding `len` rows in
    /// the tile layout, read in place: nothing is copied.
    ///
    /// # Errors
    /// As [`from_tiles`](Self::from_tiles), and [`AnEnError::Tiles`] for a missing or
    /// misaligned section.
    // Called by the model loader (format 2) once it reads the states file in place.
    #[allow(dead_code)]
    pub(crate) fn from_file_section(
        file: &storage::SharedFile,
        name: &'static str,
        dim: usize,
        len: usize,
        blocks: &[Block],
    ) -> Result<Self, AnEnError> {
        // Validates the section's presence, type and alignment once; later accesses re-borrow.
        file.f32s(name)?;
        Self::from_section(dim, len, blocks, Section::borrowed(file, name))
    }

    fn from_section(
        dim: usize,
        len: usize,
        blocks: &[Block],
        tiles: Section<f32>,
    ) -> Result<Self, AnEnError> {
        check_blocks(dim, blocks)?;
        if dim == 0 {
            return Err(AnEnError::Tiles("dimension 0".to_owned()));
        }
        let values = tiles.as_slice();
        let expected = len
            .checked_mul(dim)
            .map(|_| tiled_len(dim, len))
            .ok_or_else(|| AnEnError::Tiles(format!("{len} rows overflow")))?;
        if values.len() != expected {
            return Err(AnEnError::Tiles(format!(
                "{} values, expected {expected} for {len} rows of {dim} in tiles of {TILE}",
                values.len()
            )));
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(AnEnError::Tiles(format!("value {at} is not finite")));
        }
        Ok(Self {
            dim,
            len,
            blocks: blocks.to_vec(),
            tiles,
            score_tiles: selected(),
        })
    }

    /// The tiles (for writing them to a file).
    pub fn tiles(&self) -> &[f32] {
        self.tiles.as_slice()
    }

    /// The blocks the index scores with.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Row `id` (row-major, gathered from the tiles), or `None` past the end.
    pub fn row(&self, id: u32) -> Option<Vec<f32>> {
        let id = id as usize;
        if id >= self.len {
            return None;
        }
        let mut out = vec![0.0f32; self.dim];
        gather_row(self.tiles.as_slice(), self.dim, id, &mut out);
        Some(out)
    }

    /// Rows `ids` (each `< len`), row-major, gathered from the tiles.
    ///
    /// # Panics
    /// If an id is out of range (a caller bug).
    pub fn gather_rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = vec![0.0f32; ids.len() * self.dim];
        let tiles = self.tiles.as_slice();
        for (o, &id) in out.chunks_exact_mut(self.dim).zip(ids) {
            assert!((id as usize) < self.len, "AnEnIndex::gather_rows: id {id}");
            gather_row(tiles, self.dim, id as usize, o);
        }
        out
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
        self.scores_under(query, &self.blocks, kernel)
    }

    /// The distance from `query` to every row under `blocks` instead of the index's own
    /// (e.g. [`euclidean_blocks`]), in id order.
    ///
    /// # Panics
    /// If `query.len() != dim` or a block reaches past it (caller bugs).
    pub fn scores_with_blocks(&self, query: &[f32], blocks: &[Block]) -> Vec<f32> {
        self.scores_under(query, blocks, self.score_tiles)
    }

    fn scores_under(&self, query: &[f32], blocks: &[Block], kernel: ScoreTiles) -> Vec<f32> {
        assert_eq!(query.len(), self.dim, "AnEnIndex: query dimension");
        assert!(
            blocks.iter().all(|b| b.start + b.len <= self.dim),
            "AnEnIndex: block outside the dimension"
        );
        let mut out = vec![0.0f32; self.len.div_ceil(TILE) * TILE];
        kernel(query, self.tiles.as_slice(), blocks, &mut out);
        out.truncate(self.len);
        out
    }

    /// The exact distances from `query` to rows `ids` under `blocks`, in `ids` order: the
    /// rows are gathered into scratch tiles and scored by the same kernel as a full scan, so
    /// each distance is bit-identical to its [`scores_with_blocks`](Self::scores_with_blocks)
    /// value (re-ranking a shortlist agrees exactly with a flat scan).
    ///
    /// # Panics
    /// If `query.len() != dim`, a block reaches past it, or an id is out of range (caller
    /// bugs).
    pub fn distances(&self, query: &[f32], ids: &[u32], blocks: &[Block]) -> Vec<f32> {
        assert_eq!(query.len(), self.dim, "AnEnIndex: query dimension");
        assert!(
            blocks.iter().all(|b| b.start + b.len <= self.dim),
            "AnEnIndex: block outside the dimension"
        );
        let dim = self.dim;
        let source = self.tiles.as_slice();
        let mut scratch = vec![0.0f32; tiled_len(dim, ids.len())];
        for (slot, &id) in ids.iter().enumerate() {
            let id = id as usize;
            assert!(id < self.len, "AnEnIndex::distances: id {id}");
            let from = &source[(id / TILE) * dim * TILE..][..dim * TILE];
            let to = &mut scratch[(slot / TILE) * dim * TILE..][..dim * TILE];
            for j in 0..dim {
                to[j * TILE + slot % TILE] = from[j * TILE + id % TILE];
            }
        }
        let mut out = vec![0.0f32; ids.len().div_ceil(TILE) * TILE];
        (self.score_tiles)(query, &scratch, blocks, &mut out);
        out.truncate(ids.len());
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
        nearest(&mut candidates, k);
        candidates
            .into_iter()
            .map(|(score, id)| Neighbor { id, score })
            .collect()
    }
}

/// Keeps the `k` best `(score, id)` of `candidates`, smallest score first, ties by lower id.
pub(crate) fn nearest(candidates: &mut Vec<(f32, u32)>, k: usize) {
    let by_rank = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if k == 0 {
        candidates.clear();
        return;
    }
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, by_rank);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(by_rank);
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
