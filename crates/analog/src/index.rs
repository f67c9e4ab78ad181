//! One interface over the index types, so callers can hold either.

use crate::{AnalogError, FlatIndex, IvfPqIndex, Metric, Neighbor};

/// A searchable vector index: [`FlatIndex`] (exact) or [`IvfPqIndex`]
/// (approximate; with its configured `nprobe`, and exact re-ranking of
/// `refine * k` candidates when built with `refine`).
///
/// ```
/// use analog::{FlatIndex, Metric, VectorIndex};
///
/// let mut flat = FlatIndex::new(2, Metric::L2)?;
/// flat.add(&[0.0, 0.0, 1.0, 1.0])?;
/// let index: Box<dyn VectorIndex> = Box::new(flat);
/// assert_eq!(index.search(&[0.9, 0.9], 1)?[0].id, 1);
/// # Ok::<(), analog::AnalogError>(())
/// ```
pub trait VectorIndex: Send + Sync {
    /// The vector dimension.
    fn dim(&self) -> usize;
    /// Number of vectors stored.
    fn len(&self) -> usize;
    /// Whether no vectors are stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The metric.
    fn metric(&self) -> Metric;
    /// The `k` best vectors for `query`, best first (ties: lower id first).
    ///
    /// # Errors
    /// As the implementing type's `search`.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError>;
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        FlatIndex::dim(self)
    }
    fn len(&self) -> usize {
        FlatIndex::len(self)
    }
    fn metric(&self) -> Metric {
        FlatIndex::metric(self)
    }
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError> {
        FlatIndex::search(self, query, k)
    }
}

impl VectorIndex for IvfPqIndex {
    fn dim(&self) -> usize {
        IvfPqIndex::dim(self)
    }
    fn len(&self) -> usize {
        IvfPqIndex::len(self)
    }
    fn metric(&self) -> Metric {
        IvfPqIndex::metric(self)
    }
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError> {
        let params = self.params();
        match params.refine {
            Some(factor) => self.search_refined(query, k, params.nprobe, k.saturating_mul(factor)),
            None => IvfPqIndex::search(self, query, k, params.nprobe),
        }
    }
}
