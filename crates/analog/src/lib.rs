//! # analog: exact vector search
//!
//! A pure library (no I/O, no async, no threads of its own) for exact
//! ("flat", brute-force) nearest-neighbour search over `f32` vectors. Every
//! stored vector is scored against the query; nothing is approximated.
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
//!   distance (no square root); **smaller is better**.
//!
//! Results are sorted best first. Scores are computed in `f32` with
//! several partial sums, so they can differ from a sequential or `f64`
//! evaluation by a few ulps of `Σ |term|` (and between CPUs with and without
//! AVX2+FMA, which fuse the multiply-add).
//!
//! ## Ties and `k`
//!
//! Equal scores are ordered by **lower id first**, so results are fully
//! deterministic for a given kernel. `+0.0` and `-0.0` are equal. Ids are
//! `u32` insertion positions: the first vector added is id 0.
//!
//! `k = 0` is rejected ([`AnalogError::ZeroK`]); `k > len()` is not an
//! error and returns all vectors, sorted (an empty index returns an empty
//! list). If finite inputs overflow `f32` (magnitudes near `1e19` and up), a
//! score can be infinite or NaN; a NaN ranks last.
//!
//! ## SIMD dispatch
//!
//! On `x86_64`, the CPU is probed once (`is_x86_feature_detected!` for
//! `avx2` and `fma`) and the result cached process-wide; an index captures
//! the chosen kernel when it is built, so searches pay no per-element (or
//! per-row) dispatch. The AVX2 kernel runs 4 accumulators × 8 lanes over
//! chunks of 32 values, then 8-wide steps, then a scalar tail, so any
//! dimension works. Other CPUs and architectures use a portable kernel with
//! 4 accumulators. [`simd_level`] reports which one is in use; both are
//! callable directly through [`kernel`] for testing.
//!
//! ## Concurrency
//!
//! [`FlatIndex`] is `Send + Sync` and search takes `&self` with no interior
//! mutability, so one index can be searched from any number of threads at
//! once (e.g. behind an `Arc`) with results identical to a single-threaded
//! run. Adding vectors needs `&mut self`. [`FlatIndex::search_batch`] runs its
//! queries in order on the calling thread; split the batch across threads to
//! parallelise.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod forecast;
pub mod format;
pub mod kernel;
mod topk;

use kernel::ScoreRows;
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

/// Rows scored per kernel call: large enough to amortise the indirect call,
/// small enough that the scores stay in a stack buffer in L1.
const BLOCK: usize = 256;

/// Queries per sweep in [`FlatIndex::search_batch`]: their top-k states
/// and a row block (256 x dim floats) stay in cache together.
const QUERY_GROUP: usize = 32;

/// An exact index: vectors stored row-major, searched by scoring every row.
///
/// Immutable during search (`&self`), `Send + Sync`.
#[derive(Clone)]
pub struct FlatIndex {
    dim: usize,
    metric: Metric,
    data: Vec<f32>,
    // Chosen once at construction so a search never re-dispatches.
    score_rows: ScoreRows,
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
        Ok(Self {
            dim,
            metric,
            data: Vec::new(),
            score_rows: kernel::selected().for_metric(metric),
        })
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
        check_capacity(self.len(), vectors.len() / self.dim)?;
        self.data.extend_from_slice(vectors);
        Ok(())
    }

    /// Number of vectors stored.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether no vectors are stored.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The stored vector with id `id`, if any.
    pub fn vector(&self, id: u32) -> Option<&[f32]> {
        let start = (id as usize).checked_mul(self.dim)?;
        self.data.get(start..start + self.dim)
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
        Ok(self.search_checked(query, k))
    }

    /// [`search`](Self::search) for each query in a row-major buffer
    /// (`queries.len() / dim` queries); result `i` belongs to query `i` and
    /// equals `search(query_i, k)`. All queries are validated before any is
    /// searched.
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
        // Query groups sweep the data once per group rather than once per
        // query, so each row block is loaded from memory once and reused
        // from cache by every query in the group. Same kernel, same offer
        // order: results are identical to `search`.
        for group in queries.chunks(QUERY_GROUP * self.dim) {
            let mut tops: Vec<topk::TopK> = (0..group.len() / self.dim)
                .map(|_| topk::TopK::new(k.min(self.len()), self.metric))
                .collect();
            self.scan(group, &mut tops);
            results.extend(tops.into_iter().map(topk::TopK::into_sorted));
        }
        Ok(results)
    }

    /// Search with `k >= 1` and a finite query of the right length.
    fn search_checked(&self, query: &[f32], k: usize) -> Vec<Neighbor> {
        let mut top = [topk::TopK::new(k.min(self.len()), self.metric)];
        self.scan(query, &mut top);
        let [top] = top;
        top.into_sorted()
    }

    /// Offers every stored vector to `tops[i]` scored against query `i` of
    /// `queries`, block by block, ids in increasing order.
    fn scan(&self, queries: &[f32], tops: &mut [topk::TopK]) {
        let mut scores = [0.0f32; BLOCK];
        for (block, rows) in self.data.chunks(BLOCK * self.dim).enumerate() {
            let out = &mut scores[..rows.len() / self.dim];
            // `add` caps the count at u32::MAX + 1, so every id fits.
            let first = (block * BLOCK) as u32;
            for (query, top) in queries.chunks_exact(self.dim).zip(tops.iter_mut()) {
                (self.score_rows)(query, rows, out);
                for (offset, &score) in out.iter().enumerate() {
                    top.offer(first + offset as u32, score);
                }
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
