//! # analog: vector search for analog forecasting
//!
//! A pure library (no I/O, no async, no threads of its own, no clock, no
//! global randomness) for nearest-neighbour search over `f32` vectors:
//!
//! * [`FlatIndex`]: exact ("flat", brute-force) search. Every stored vector
//!   is scored against the query; nothing is approximated.
//! * [`IvfPqIndex`]: approximate search (FAISS's IVF-PQ): a k-means coarse
//!   quantizer of `nlist` cells, vectors stored as product-quantizer codes
//!   of their residuals, `nprobe` cells searched per query, optionally an
//!   exact re-ranking of a shortlist against the stored raw vectors (FAISS
//!   `IndexRefineFlat`). Trained from a seed, deterministically.
//! * [`VectorIndex`]: the common interface, so a caller can hold either.
//! * Index files ([`format`](mod@format)): versioned, checksummed containers that load
//!   in place from a caller's memory map ([`FlatIndex::from_file`],
//!   [`IvfPqIndex::from_file`]); corrupt, truncated, foreign or inconsistent
//!   files are refused with an error.
//! * [`forecast`]: the analog-ensemble forecaster built on this search, with
//!   its verification.
//!
//! ```
//! use analog::{FlatIndex, Metric, Neighbor};
//!
//! let mut index = FlatIndex::new(2, Metric::InnerProduct)?;
//! index.add(&[
//!     1.0, 0.0, // id 0
//!     0.0, 1.0, // id 1
//!     1.0, 0.0, // id 2: a duplicate of id 0
//! ])?;
//! let hits = index.search(&[2.0, 0.5], 2)?;
//! // Ids 0 and 2 tie on 2.0: the lower id comes first.
//! assert_eq!(hits, vec![Neighbor { id: 0, score: 2.0 }, Neighbor { id: 2, score: 2.0 }]);
//!
//! let l2 = {
//!     let mut i = FlatIndex::new(2, Metric::L2)?;
//!     i.add(&[0.0, 0.0, 3.0, 4.0])?;
//!     i
//! };
//! // L2 scores are squared distances, smallest first.
//! assert_eq!(l2.search(&[3.0, 0.0], 5)?, vec![
//!     Neighbor { id: 0, score: 9.0 },
//!     Neighbor { id: 1, score: 16.0 },
//! ]);
//! # Ok::<(), analog::AnalogError>(())
//! ```
//!
//! ## Metrics and scores
//!
//! * [`Metric::InnerProduct`]: `score = Σ q_i x_i`; **larger is better**.
//! * [`Metric::L2`]: `score = Σ (q_i - x_i)²`, the *squared* Euclidean
//!   distance (no square root); **smaller is better**. Computed from the
//!   differences, never as `|q|² + |x|² - 2 q·x`, which loses all precision
//!   for near neighbours.
//!
//! Results are sorted best first. Exact scores are computed in `f32`,
//! summed over the dimensions in order (with fused multiply-adds on
//! AVX2+FMA), so they can differ from an `f64` evaluation by a few ulps of
//! `Σ |term|`, and between CPUs with and without FMA. On one machine,
//! [`FlatIndex::search_batch`] gives bit-identical scores to
//! [`FlatIndex::search`]. IVF-PQ scores are approximate (table lookups);
//! re-ranked ones are exact, summed as [`kernel::dot_simd`] does, so they
//! may differ from a flat index's in the last ulps.
//!
//! ## Ties and `k`
//!
//! Equal scores are ordered by **lower id first**, so results are fully
//! deterministic for a given kernel. `+0.0` and `-0.0` are equal. Ids are
//! `u32` insertion positions: the first vector added is id 0.
//!
//! `k = 0` is rejected ([`AnalogError::ZeroK`]); `k > len()` is not an
//! error and returns all vectors, sorted (an empty index returns an empty
//! list; IVF-PQ returns at most what the probed cells hold). If finite
//! inputs overflow `f32` (magnitudes near `1e19` and up), a score can be
//! infinite or NaN; a NaN ranks last.
//!
//! ## Exact search layout and SIMD dispatch
//!
//! A [`FlatIndex`] keeps its vectors once, in transposed blocks of 8 rows,
//! 64-byte aligned, that the kernels stream through ([`FlatIndex::vector`]
//! gathers a row back out of them): one SIMD lane follows one row, so there
//! is no horizontal sum per row and any dimension works without a
//! remainder loop (see [`kernel`]). A single query is scored 12 blocks (96
//! rows) per pass; a batch 4 queries x 2 blocks per pass (register
//! blocking), each tile of 384 rows loaded once per group of 32 queries.
//! The top-k screens scores 8 at a time against the current k-th best.
//! Single-query search of a few thousand vectors is then limited by memory
//! bandwidth (the index is read once per query), not arithmetic.
//!
//! On `x86_64`, the CPU is probed once (`is_x86_feature_detected!` for
//! `avx2` and `fma`) and the result cached process-wide; an index captures
//! the chosen kernel when it is built, so searches pay no per-element (or
//! per-row) dispatch. Other CPUs and architectures use a portable kernel
//! with the same layout. [`simd_level`] reports which one is in use; both
//! are callable directly through [`kernel`] for testing.
//!
//! ## IVF-PQ parameters
//!
//! [`IvfPqParams`] takes `nlist`, `m`, `nbits` (1..=8) and a default
//! `nprobe`; the seed's 24h configuration is `IvfPqParams::new(64, 8, 8, 8)`
//! and its 48h one `IvfPqParams::new(128, 16, 8, 16)`. Unlike FAISS, `m`
//! need not divide the dimension: sub-vectors then differ in length by one.
//! Training needs at least `max(nlist, 2^nbits)` vectors. On small indexes
//! (a few thousand weather states) PQ codes alone rank coarsely (recall@10
//! around 0.7 to 0.9); re-ranking a shortlist of 5 to 10 times `k` exactly
//! ([`IvfPqIndex::search_refined`], or [`IvfPqParams::with_refine`] for
//! [`VectorIndex::search`]) brings it to about 0.99 for little extra time.
//!
//! ## Concurrency
//!
//! Both index types are `Send + Sync` and search takes `&self` with no
//! interior mutability, so one index can be searched from any number of
//! threads at once (e.g. behind an `Arc`) with results identical to a
//! single-threaded run. Adding vectors needs `&mut self`. Batch searches
//! run on the calling thread; to use several cores, split the queries into
//! chunks and search each chunk from its own thread (e.g.
//! `std::thread::scope` over `queries.chunks(n * dim)`): results are the
//! same as one batch.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod forecast;
pub mod format;
mod index;
mod ivfpq;
pub mod kernel;
mod kmeans;
mod persist;
mod pq;
mod rng;
mod storage;
mod topk;

pub use index::VectorIndex;
pub use ivfpq::{IvfPqIndex, IvfPqParams};
use kernel::ScoreBlocks;
use storage::Section;
use thiserror::Error;

/// How vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Inner (dot) product; larger is better.
    InnerProduct,
    /// Squared Euclidean distance; smaller is better.
    L2,
}

/// One search result: a vector's id and its score under the index metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Insertion position of the vector (the first vector added is 0).
    pub id: u32,
    /// Inner product, or squared L2 distance, to the query.
    pub score: f32,
}

/// Errors from building or searching an index.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AnalogError {
    /// The index dimension was 0.
    #[error("vector dimension must be at least 1")]
    ZeroDimension,
    /// A flat buffer's length is not a multiple of the dimension.
    #[error("{len} values is not a whole number of {dim}-dimensional vectors")]
    Ragged {
        /// Number of values given.
        len: usize,
        /// The index dimension.
        dim: usize,
    },
    /// A query's length differs from the index dimension.
    #[error("query has {got} values but the index dimension is {dim}")]
    QueryDimension {
        /// Number of values in the query.
        got: usize,
        /// The index dimension.
        dim: usize,
    },
    /// A value is NaN or infinite.
    #[error("vector {vector}, component {component} is not finite ({value})")]
    NonFinite {
        /// Position of the vector within the input (not the index id).
        vector: usize,
        /// Position of the value within the vector.
        component: usize,
        /// The offending value.
        value: f32,
    },
    /// `k` was 0.
    #[error("k must be at least 1")]
    ZeroK,
    /// Adding would exceed the `u32` id space.
    #[error("index would hold {count} vectors, more than the {max} that u32 ids allow")]
    TooManyVectors {
        /// Vectors the index would hold after the add.
        count: usize,
        /// The largest supported count.
        max: usize,
    },
    /// An index parameter is out of range.
    #[error("parameter {name} = {value} is out of range (expected {expected})")]
    InvalidParameter {
        /// The parameter's name, as in [`IvfPqParams`].
        name: &'static str,
        /// The value given.
        value: usize,
        /// The accepted range.
        expected: &'static str,
    },
    /// Too few training vectors for the requested cells or code words.
    #[error("training needs at least {needed} vectors (nlist and 2^nbits), got {got}")]
    TooFewTrainingVectors {
        /// Training vectors given.
        got: usize,
        /// `max(nlist, 2^nbits)`.
        needed: usize,
    },
    /// Exact re-ranking was asked of an index that keeps no raw vectors.
    #[error("this IVF-PQ index keeps no raw vectors to re-rank: build it with refine")]
    NoRawVectors,
    /// An index file could not be written or read.
    #[error("index file: {0}")]
    Format(#[from] format::FormatError),
}

/// The kernel in use on this machine: `"avx2+fma"` or `"scalar"`.
///
/// ```
/// assert!(["avx2+fma", "scalar"].contains(&analog::simd_level()));
/// ```
pub fn simd_level() -> &'static str {
    kernel::selected().name
}

/// Rows scored per kernel call: large enough to amortise the call and
/// the tile set-up, small enough that a tile of blocks (256 x dim floats)
/// and its scores stay in L1/L2 while every query of a group uses it. A
/// multiple of `LANES * kernel::BLOCK_GROUP`.
const TILE_ROWS: usize = 384;

/// Queries per sweep in [`FlatIndex::search_batch`]: each tile of rows is
/// loaded from memory once per group and reused from cache by every query
/// in it; the group's scores for one tile (32 x 256 floats) fit in L1.
const QUERY_GROUP: usize = 32;

/// An exact index: every stored vector is scored against the query.
///
/// Vectors are kept once, in transposed blocks of [`kernel::LANES`] rows
/// that the search kernels stream through (see [`kernel`]);
/// [`vector`](Self::vector) gathers a row out of them. Immutable during search
/// (`&self`), `Send + Sync`.
#[derive(Clone)]
pub struct FlatIndex {
    dim: usize,
    metric: Metric,
    len: usize,
    /// Blocks of `dim * LANES` values, zero-padded to a multiple of
    /// `kernel::BLOCK_GROUP` blocks.
    blocked: Section<f32>,
    // Chosen once at construction so a search never re-dispatches.
    score_blocks: ScoreBlocks,
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("len", &self.len())
            .field("kernel", &simd_level())
            .finish()
    }
}

impl FlatIndex {
    /// An empty index of `dim`-dimensional vectors.
    ///
    /// # Errors
    /// [`AnalogError::ZeroDimension`] if `dim == 0`.
    pub fn new(dim: usize, metric: Metric) -> Result<Self, AnalogError> {
        if dim == 0 {
            return Err(AnalogError::ZeroDimension);
        }
        Ok(Self::from_parts(dim, metric, 0, Section::owned(Vec::new())))
    }

    /// An index over already-validated arrays.
    fn from_parts(dim: usize, metric: Metric, len: usize, blocked: Section<f32>) -> Self {
        Self {
            dim,
            metric,
            len,
            blocked,
            score_blocks: kernel::selected().for_metric(metric),
        }
    }

    /// Appends vectors given as one row-major buffer (`len / dim` vectors).
    /// Ids continue from [`len`](Self::len). All-or-nothing: on error the
    /// index is unchanged.
    ///
    /// ```
    /// let mut index = analog::FlatIndex::new(3, analog::Metric::L2)?;
    /// index.add(&[0.0; 6])?;
    /// assert_eq!(index.len(), 2);
    /// assert!(index.add(&[1.0, f32::NAN, 0.0]).is_err());
    /// assert_eq!(index.len(), 2);
    /// # Ok::<(), analog::AnalogError>(())
    /// ```
    ///
    /// # Errors
    /// [`AnalogError::Ragged`] if `vectors.len()` is not a multiple of the
    /// dimension, [`AnalogError::NonFinite`] for NaN or infinite values,
    /// [`AnalogError::TooManyVectors`] past `u32::MAX + 1` vectors.
    pub fn add(&mut self, vectors: &[f32]) -> Result<(), AnalogError> {
        check_rows(vectors, self.dim)?;
        let added = vectors.len() / self.dim;
        check_capacity(self.len, added)?;
        if added == 0 {
            return Ok(());
        }
        let (blocked, start) =
            kernel::extend_blocks(self.blocked.as_slice(), self.len, vectors, self.dim);
        self.blocked = Section::owned_from(blocked, start);
        self.len += added;
        Ok(())
    }

    /// Number of vectors stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no vectors are stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The stored vector with id `id`, if any, gathered from the blocks.
    pub fn vector(&self, id: u32) -> Option<Vec<f32>> {
        let id = id as usize;
        if id >= self.len {
            return None;
        }
        let block = self
            .blocked
            .as_slice()
            .get((id / kernel::LANES) * self.dim * kernel::LANES..)?;
        (0..self.dim)
            .map(|d| block.get(d * kernel::LANES + id % kernel::LANES).copied())
            .collect()
    }

    /// The `k` best vectors for `query`, best first (ties: lower id first).
    /// Returns all vectors when `k > len()`.
    ///
    /// # Errors
    /// [`AnalogError::ZeroK`], [`AnalogError::QueryDimension`],
    /// [`AnalogError::NonFinite`] (with `vector` 0).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError> {
        if k == 0 {
            return Err(AnalogError::ZeroK);
        }
        if query.len() != self.dim {
            return Err(AnalogError::QueryDimension {
                got: query.len(),
                dim: self.dim,
            });
        }
        check_rows(query, self.dim)?;
        let mut top = [topk::TopK::new(k.min(self.len), self.metric)];
        let mut scores = [0.0f32; TILE_ROWS];
        self.scan(query, &mut top, &mut scores);
        let [top] = top;
        Ok(top.into_sorted())
    }

    /// [`search`](Self::search) for each query in a row-major buffer
    /// (`queries.len() / dim` queries); result `i` belongs to query `i` and
    /// equals `search(query_i, k)` exactly (same scores, bit for bit). All
    /// queries are validated before any is searched.
    ///
    /// Runs on the calling thread. To use several cores, split the queries
    /// into chunks and search each from its own thread (the index is
    /// `Sync`; e.g. `std::thread::scope` over `queries.chunks(..)`).
    ///
    /// ```
    /// let mut index = analog::FlatIndex::new(1, analog::Metric::L2)?;
    /// index.add(&[0.0, 10.0])?;
    /// let ids: Vec<Vec<u32>> = index
    ///     .search_batch(&[1.0, 9.0], 1)?
    ///     .iter()
    ///     .map(|hits| hits.iter().map(|n| n.id).collect())
    ///     .collect();
    /// assert_eq!(ids, vec![vec![0], vec![1]]);
    /// # Ok::<(), analog::AnalogError>(())
    /// ```
    ///
    /// # Errors
    /// [`AnalogError::ZeroK`], [`AnalogError::Ragged`] if the buffer is not
    /// whole queries, [`AnalogError::NonFinite`] (with `vector` = query
    /// position).
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, AnalogError> {
        if k == 0 {
            return Err(AnalogError::ZeroK);
        }
        check_rows(queries, self.dim)?;
        let mut results = Vec::with_capacity(queries.len() / self.dim);
        let mut scores = vec![0.0f32; QUERY_GROUP * TILE_ROWS];
        // Query groups sweep the data once per group rather than once per
        // query, so each tile of rows is loaded from memory once and reused
        // from cache by every query in the group.
        for group in queries.chunks(QUERY_GROUP * self.dim) {
            let mut tops: Vec<topk::TopK> = (0..group.len() / self.dim)
                .map(|_| topk::TopK::new(k.min(self.len), self.metric))
                .collect();
            self.scan(group, &mut tops, &mut scores);
            results.extend(tops.into_iter().map(topk::TopK::into_sorted));
        }
        Ok(results)
    }

    /// Offers every stored vector to `tops[i]` scored against query `i` of
    /// `queries`, tile by tile, ids in increasing order. `scores` holds at
    /// least `tops.len() * TILE_ROWS` values.
    fn scan(&self, queries: &[f32], tops: &mut [topk::TopK], scores: &mut [f32]) {
        let blocked = self.blocked.as_slice();
        for (tile, blocks) in blocked.chunks(TILE_ROWS * self.dim).enumerate() {
            let rows = blocks.len() / self.dim;
            let out = &mut scores[..tops.len() * rows];
            (self.score_blocks)(queries, self.dim, blocks, out);
            let first = tile * TILE_ROWS;
            // The last block's padding rows are scored but never offered.
            let valid = rows.min(self.len.saturating_sub(first));
            for (top, scores) in tops.iter_mut().zip(out.chunks_exact(rows)) {
                // `add` caps the count at u32::MAX + 1, so every id fits.
                top.offer_run(first as u32, &scores[..valid]);
            }
        }
    }
}

/// Most vectors an index can hold: ids are `u32` (memory caps 32-bit
/// targets first).
const MAX_VECTORS: usize = if usize::BITS > 32 {
    u32::MAX as usize + 1
} else {
    usize::MAX
};

/// Checks that `current + adding` vectors still have `u32` ids.
fn check_capacity(current: usize, adding: usize) -> Result<(), AnalogError> {
    match current.checked_add(adding) {
        Some(count) if count <= MAX_VECTORS => Ok(()),
        count => Err(AnalogError::TooManyVectors {
            count: count.unwrap_or(usize::MAX),
            max: MAX_VECTORS,
        }),
    }
}

/// Checks that `values` is whole rows of `dim` finite values.
fn check_rows(values: &[f32], dim: usize) -> Result<(), AnalogError> {
    if !values.len().is_multiple_of(dim) {
        return Err(AnalogError::Ragged {
            len: values.len(),
            dim,
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(AnalogError::NonFinite {
            vector: at / dim,
            component: at % dim,
            value: values[at],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Four billion vectors do not fit in a test, so the cap is checked here.
    #[test]
    fn capacity_cap_is_u32_ids() {
        assert_eq!(check_capacity(0, MAX_VECTORS), Ok(()));
        assert_eq!(check_capacity(MAX_VECTORS - 1, 1), Ok(()));
        let err = check_capacity(MAX_VECTORS, 1).unwrap_err();
        assert_eq!(
            err,
            AnalogError::TooManyVectors {
                count: MAX_VECTORS + 1,
                max: MAX_VECTORS
            }
        );
        assert_eq!(
            err.to_string(),
            "index would hold 4294967297 vectors, more than the 4294967296 that u32 ids allow"
        );
        assert!(check_capacity(usize::MAX, 1).is_err());
    }
}
