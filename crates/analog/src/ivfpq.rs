//! IVF-PQ: an inverted file over a k-means coarse quantizer, with vectors
//! stored as product-quantizer codes of their residuals, optionally
//! re-ranked exactly (FAISS `IndexIVFPQ`, and `IndexRefineFlat` over it).
//!
//! * **Training** runs k-means (k-means++ seeding from the seed, Lloyd
//!   iterations) for `nlist` coarse centroids, then one k-means per
//!   sub-vector for the `2^nbits` code words, trained on the residuals
//!   `x - centroid(x)` (FAISS `by_residual`).
//! * **Adding** puts each vector in the list of its nearest centroid
//!   (squared L2, for both metrics) and stores the codes of its residual.
//! * **Searching** picks the `nprobe` best centroids under the index metric
//!   and scores each vector of those lists from lookup tables (asymmetric
//!   distance computation, ADC: the query stays exact, only the stored
//!   vector is quantized).
//!
//! For inner product the score is `q·c + Σ_j q_j·w_j`, with one table for
//! all lists. For L2 it is `|q - c|² + Σ_j (|w_j|² + 2 c_j·w_j) - 2 Σ_j q_j·w_j`:
//! the middle term is precomputed per list at build time and the last one
//! once per query, so a probed list costs `m * 2^nbits` additions for its
//! table (FAISS's "precomputed tables").

use std::sync::Arc;

use crate::kmeans;
use crate::pq::{Lut, ProductQuantizer};
use crate::rng::SplitMix64;
use crate::storage::Section;
use crate::topk::TopK;
use crate::{check_capacity, check_rows, kernel, AnalogError, FlatIndex, Metric, Neighbor};

/// Build and default search parameters of an [`IvfPqIndex`].
///
/// The seed's two configurations:
///
/// ```
/// use analog::IvfPqParams;
/// let h24 = IvfPqParams::new(64, 8, 8, 8); // nlist 64, m 8, nbits 8, nprobe 8
/// let h48 = IvfPqParams::new(128, 16, 8, 16).with_refine(4); // + exact re-ranking of 4k
/// assert_eq!(h48.refine, Some(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfPqParams {
    /// Coarse cells (k-means centroids). At least 1 and at most the
    /// number of training vectors.
    pub nlist: usize,
    /// Sub-quantizers, `1..=dim`. When `m` does not divide the dimension,
    /// sub-vectors differ in length by at most one (FAISS requires a
    /// divisor; this index does not).
    pub m: usize,
    /// Bits per code, `1..=8`: `2^nbits` code words per sub-quantizer. Each
    /// code is stored in one byte whatever `nbits` is.
    pub nbits: u32,
    /// Lists probed by [`VectorIndex::search`](crate::VectorIndex::search)
    /// (the explicit search methods take their own).
    pub nprobe: usize,
    /// Lloyd iterations for every k-means (FAISS's default is 25).
    pub kmeans_iters: usize,
    /// Keep the raw vectors and, in
    /// [`VectorIndex::search`](crate::VectorIndex::search), re-rank a
    /// shortlist of `refine * k` PQ candidates by their exact scores. `None`
    /// stores codes only.
    pub refine: Option<usize>,
}

impl IvfPqParams {
    /// `nlist` cells, `m` sub-quantizers of `nbits` bits, `nprobe` lists
    /// probed by default; 25 k-means iterations, no re-ranking.
    pub fn new(nlist: usize, m: usize, nbits: u32, nprobe: usize) -> Self {
        Self {
            nlist,
            m,
            nbits,
            nprobe,
            kmeans_iters: 25,
            refine: None,
        }
    }

    /// Keeps the raw vectors, re-ranking `factor * k` candidates exactly.
    pub fn with_refine(self, factor: usize) -> Self {
        Self {
            refine: Some(factor),
            ..self
        }
    }

    /// Sets the k-means iteration count.
    pub fn with_kmeans_iters(self, iters: usize) -> Self {
        Self {
            kmeans_iters: iters,
            ..self
        }
    }

    /// Code words per sub-quantizer, `2^nbits`.
    pub fn ksub(&self) -> usize {
        1usize << self.nbits.min(8)
    }

    /// Checks the parameters for vectors of `dim` dimensions.
    pub(crate) fn validate(&self, dim: usize) -> Result<(), AnalogError> {
        let bad = |name, value, expected| {
            Err(AnalogError::InvalidParameter {
                name,
                value,
                expected,
            })
        };
        if self.nlist == 0 || self.nlist > u32::MAX as usize {
            return bad("nlist", self.nlist, "1 ..= 2^32 - 1");
        }
        if self.m == 0 || self.m > dim {
            return bad("m", self.m, "1 ..= the vector dimension");
        }
        if !(1..=8).contains(&self.nbits) {
            return bad("nbits", self.nbits as usize, "1 ..= 8");
        }
        if self.nprobe == 0 {
            return bad("nprobe", 0, "at least 1");
        }
        if self.refine == Some(0) {
            return bad("refine", 0, "at least 1");
        }
        Ok(())
    }
}

/// An IVF-PQ index: approximate search over PQ codes in the `nprobe` best
/// coarse cells, with optional exact re-ranking.
///
/// Built trained ([`IvfPqIndex::train`]), so there is no untrained state.
/// Ids are insertion positions, as in [`FlatIndex`]. Ties: lower id first.
/// `Send + Sync`; search takes `&self`.
///
/// ```
/// use analog::{IvfPqIndex, IvfPqParams, Metric};
///
/// // 400 points on a 2-d grid, 4 cells, 2 sub-quantizers of 4 bits.
/// let data: Vec<f32> = (0..400).flat_map(|i| [(i % 20) as f32, (i / 20) as f32]).collect();
/// let params = IvfPqParams::new(4, 2, 4, 4).with_refine(8);
/// let mut index = IvfPqIndex::train(&data, 2, Metric::L2, params, 7)?;
/// index.add(&data)?;
/// // Re-ranked: exact scores for the shortlist, so the point itself is first.
/// let hits = index.search_refined(&[3.0, 5.0], 3, 4, 24)?;
/// assert_eq!(hits[0].id, 5 * 20 + 3);
/// assert_eq!(hits[0].score, 0.0);
/// # Ok::<(), analog::AnalogError>(())
/// ```
#[derive(Clone)]
pub struct IvfPqIndex {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) params: IvfPqParams,
    /// `nlist * dim`, row-major.
    pub(crate) centroids: Vec<f32>,
    /// The centroids under the index metric, for probing.
    pub(crate) coarse: FlatIndex,
    pub(crate) pq: ProductQuantizer,
    /// L2 only: `nlist * m` tables of `|w_jc|² + 2 c_j·w_jc`. Shared (not copied) by clones
    /// and by indexes over the same quantizers ([`IvfPqIndex::share_quantizers`]).
    pub(crate) list_terms: Arc<[Lut]>,
    /// `nlist + 1` offsets into `ids` (and, times `m`, into `codes`).
    pub(crate) list_starts: Vec<usize>,
    /// Vector ids grouped by list, increasing within a list.
    pub(crate) ids: Section<u32>,
    /// `m` codes per vector, in `ids` order.
    pub(crate) codes: Section<u8>,
    /// Raw vectors by id, when built with `refine`.
    pub(crate) vectors: Option<Section<f32>>,
    pub(crate) len: usize,
}

impl std::fmt::Debug for IvfPqIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfPqIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("params", &self.params)
            .field("len", &self.len)
            .finish()
    }
}

impl IvfPqIndex {
    /// Trains the coarse quantizer and the product quantizer on
    /// `training` (row-major, `training.len() / dim` vectors), returning an
    /// empty index. Deterministic for a given `seed`.
    ///
    /// Costs `kmeans_iters * points * (nlist + 2^nbits) * dim`
    /// multiply-adds at most.
    ///
    /// # Errors
    /// [`AnalogError::ZeroDimension`], [`AnalogError::Ragged`],
    /// [`AnalogError::NonFinite`], [`AnalogError::InvalidParameter`] for a
    /// parameter out of range, [`AnalogError::TooFewTrainingVectors`] when
    /// there are fewer training vectors than `nlist` or `2^nbits`.
    pub fn train(
        training: &[f32],
        dim: usize,
        metric: Metric,
        params: IvfPqParams,
        seed: u64,
    ) -> Result<Self, AnalogError> {
        if dim == 0 {
            return Err(AnalogError::ZeroDimension);
        }
        params.validate(dim)?;
        check_rows(training, dim)?;
        let n = training.len() / dim;
        let needed = params.nlist.max(params.ksub());
        if n < needed {
            return Err(AnalogError::TooFewTrainingVectors { got: n, needed });
        }
        let mut rng = SplitMix64::new(seed);
        let centroids = kmeans::train(training, dim, params.nlist, params.kmeans_iters, &mut rng)?;
        let mut assignment = vec![0u32; n];
        let mut dist = vec![0.0f32; n];
        kmeans::assign(&centroids, training, dim, &mut assignment, &mut dist)?;
        let mut residuals = training.to_vec();
        for (r, &a) in residuals.chunks_exact_mut(dim).zip(&assignment) {
            for (v, &c) in r.iter_mut().zip(&centroids[a as usize * dim..][..dim]) {
                *v -= c;
            }
        }
        let pq = ProductQuantizer::train(
            &residuals,
            dim,
            params.m,
            params.ksub(),
            params.kmeans_iters,
            &mut rng,
        )?;
        Self::from_trained(dim, metric, params, centroids, pq)
    }

    /// An empty index over trained quantizers.
    pub(crate) fn from_trained(
        dim: usize,
        metric: Metric,
        params: IvfPqParams,
        centroids: Vec<f32>,
        pq: ProductQuantizer,
    ) -> Result<Self, AnalogError> {
        let mut coarse = FlatIndex::new(dim, metric)?;
        coarse.add(&centroids)?;
        let list_terms: Arc<[Lut]> = match metric {
            Metric::InnerProduct => Arc::from(Vec::new()),
            Metric::L2 => Arc::from(l2_list_terms(&pq, &centroids, dim)),
        };
        Ok(Self {
            dim,
            metric,
            params,
            centroids,
            coarse,
            pq,
            list_terms,
            list_starts: vec![0; params.nlist + 1],
            ids: Section::owned(Vec::new()),
            codes: Section::owned(Vec::new()),
            vectors: params.refine.map(|_| Section::owned(Vec::new())),
            len: 0,
        })
    }

    /// Adds vectors (row-major); ids continue from [`len`](Self::len).
    /// All-or-nothing: on error the index is unchanged.
    ///
    /// # Errors
    /// [`AnalogError::Ragged`], [`AnalogError::NonFinite`],
    /// [`AnalogError::TooManyVectors`].
    pub fn add(&mut self, vectors: &[f32]) -> Result<(), AnalogError> {
        check_rows(vectors, self.dim)?;
        let added = vectors.len() / self.dim;
        check_capacity(self.len, added)?;
        if added == 0 {
            return Ok(());
        }
        let (dim, m, nlist) = (self.dim, self.pq.m(), self.params.nlist);
        let mut assignment = vec![0u32; added];
        let mut dist = vec![0.0f32; added];
        kmeans::assign(&self.centroids, vectors, dim, &mut assignment, &mut dist)?;

        let mut new_codes = Vec::with_capacity(added * m);
        let (mut residual, mut scratch) = (vec![0.0f32; dim], Vec::new());
        for (x, &a) in vectors.chunks_exact(dim).zip(&assignment) {
            let c = &self.centroids[a as usize * dim..][..dim];
            for ((r, &v), &cv) in residual.iter_mut().zip(x).zip(c) {
                *r = v - cv;
            }
            self.pq.encode(&residual, &mut scratch, &mut new_codes);
        }

        // Rebuild the grouped arrays: each list keeps its old entries, then
        // its new ones, so ids stay increasing within a list.
        let mut counts: Vec<usize> = self.list_starts.windows(2).map(|w| w[1] - w[0]).collect();
        for &a in &assignment {
            counts[a as usize] += 1;
        }
        let mut starts = Vec::with_capacity(nlist + 1);
        starts.push(0usize);
        for c in &counts {
            starts.push(starts[starts.len() - 1] + c);
        }
        let total = self.len + added;
        let mut ids = vec![0u32; total];
        let mut codes = vec![0u8; total * m];
        let mut fill: Vec<usize> = starts[..nlist].to_vec();
        let (old_ids, old_codes) = (self.ids.as_slice(), self.codes.as_slice());
        for (at, old) in fill.iter_mut().zip(self.list_starts.windows(2)) {
            let (lo, hi) = (old[0], old[1]);
            ids[*at..*at + hi - lo].copy_from_slice(&old_ids[lo..hi]);
            codes[*at * m..(*at + hi - lo) * m].copy_from_slice(&old_codes[lo * m..hi * m]);
            *at += hi - lo;
        }
        for (i, &a) in assignment.iter().enumerate() {
            let at = fill[a as usize];
            // check_capacity bounds len + added by u32::MAX + 1.
            ids[at] = (self.len + i) as u32;
            codes[at * m..(at + 1) * m].copy_from_slice(&new_codes[i * m..(i + 1) * m]);
            fill[a as usize] += 1;
        }
        self.list_starts = starts;
        self.ids = Section::owned(ids);
        self.codes = Section::owned(codes);
        if let Some(raw) = &mut self.vectors {
            raw.to_mut().extend_from_slice(vectors);
        }
        self.len = total;
        Ok(())
    }

    /// The list and the `m` codes of each of `vectors` (row-major) under this index's
    /// quantizers, without adding them: several indexes sharing one training can then be
    /// filled from one encoding ([`with_encoded`](Self::with_encoded)).
    ///
    /// # Errors
    /// [`AnalogError::Ragged`], [`AnalogError::NonFinite`].
    pub(crate) fn encode(&self, vectors: &[f32]) -> Result<(Vec<u32>, Vec<u8>), AnalogError> {
        check_rows(vectors, self.dim)?;
        let n = vectors.len() / self.dim;
        let dim = self.dim;
        let mut assignment = vec![0u32; n];
        let mut dist = vec![0.0f32; n];
        kmeans::assign(&self.centroids, vectors, dim, &mut assignment, &mut dist)?;
        let mut codes = Vec::with_capacity(n * self.pq.m());
        let (mut residual, mut scratch) = (vec![0.0f32; dim], Vec::new());
        for (x, &a) in vectors.chunks_exact(dim).zip(&assignment) {
            let c = &self.centroids[a as usize * dim..][..dim];
            for ((r, &v), &cv) in residual.iter_mut().zip(x).zip(c) {
                *r = v - cv;
            }
            self.pq.encode(&residual, &mut scratch, &mut codes);
        }
        Ok((assignment, codes))
    }

    /// A copy of this (empty) index holding the encoded vectors `pick` of an
    /// [`encode`](Self::encode) result (`lists`, `codes`): id `i` is vector `pick[i]`.
    /// Equal to adding those vectors in `pick` order.
    ///
    /// # Errors
    /// [`AnalogError::InvalidParameter`] for a non-empty index, a `pick` past the encoding, or
    /// an encoding that does not match the quantizers; [`AnalogError::TooManyVectors`].
    pub(crate) fn with_encoded(
        &self,
        lists: &[u32],
        codes: &[u8],
        pick: &[u32],
    ) -> Result<Self, AnalogError> {
        let (m, nlist) = (self.pq.m(), self.params.nlist);
        let bad = |name, value| AnalogError::InvalidParameter {
            name,
            value,
            expected: "an empty index and an encoding of its quantizers",
        };
        if self.len != 0 {
            return Err(bad("len", self.len));
        }
        if codes.len() != lists.len() * m {
            return Err(bad("codes", codes.len()));
        }
        check_capacity(0, pick.len())?;
        let mut counts = vec![0usize; nlist];
        for &p in pick {
            let list = *lists
                .get(p as usize)
                .ok_or_else(|| bad("pick", p as usize))? as usize;
            *counts.get_mut(list).ok_or_else(|| bad("list", list))? += 1;
        }
        let mut starts = Vec::with_capacity(nlist + 1);
        starts.push(0usize);
        for c in &counts {
            starts.push(starts[starts.len() - 1] + c);
        }
        let mut ids = vec![0u32; pick.len()];
        let mut grouped = vec![0u8; pick.len() * m];
        let mut fill: Vec<usize> = starts[..nlist].to_vec();
        for (i, &p) in pick.iter().enumerate() {
            let list = lists[p as usize] as usize;
            let at = fill[list];
            // check_capacity bounds pick.len() by the u32 id space.
            ids[at] = i as u32;
            grouped[at * m..(at + 1) * m].copy_from_slice(&codes[p as usize * m..][..m]);
            fill[list] += 1;
        }
        let mut index = self.clone();
        index.list_starts = starts;
        index.ids = Section::owned(ids);
        index.codes = Section::owned(grouped);
        index.vectors = None;
        index.params.refine = None;
        index.len = pick.len();
        Ok(index)
    }

    /// Sets the default `nprobe` (what [`VectorIndex::search`](crate::VectorIndex::search)
    /// and the file record).
    pub(crate) fn set_nprobe(&mut self, nprobe: usize) {
        self.params.nprobe = nprobe.max(1);
    }

    /// Bytes a search reads from: codes, ids, list offsets, the coarse centroids (as kept for
    /// probing), the PQ codebook and the per-list lookup tables (counted even when shared),
    /// plus the raw vectors when kept.
    pub fn search_bytes(&self) -> u64 {
        let f32s = |n: usize| (n * std::mem::size_of::<f32>()) as u64;
        let tables = std::mem::size_of_val(&*self.list_terms) as u64;
        self.codes.as_slice().len() as u64
            + std::mem::size_of_val(self.ids.as_slice()) as u64
            + std::mem::size_of_val(self.list_starts.as_slice()) as u64
            + 2 * f32s(self.centroids.len())
            + f32s(self.pq.codebook_t().len())
            + tables
            + self
                .vectors
                .as_ref()
                .map_or(0, |v| f32s(v.as_slice().len()))
    }

    /// Makes this index use `other`'s precomputed lookup tables (`nlist · m` tables of 1 KiB
    /// for L2) when both have the same quantizers, bit for bit: e.g. a station's horizons
    /// trained once and loaded from separate files then hold their tables once. Returns
    /// whether they are now shared. Search results do not change.
    pub fn share_quantizers(&mut self, other: &IvfPqIndex) -> bool {
        if Arc::ptr_eq(&self.list_terms, &other.list_terms) {
            return true;
        }
        let same = self.dim == other.dim
            && self.metric == other.metric
            && self.params.nlist == other.params.nlist
            && self.params.nbits == other.params.nbits
            && self.pq.m() == other.pq.m()
            && bits_equal(&self.centroids, &other.centroids)
            && bits_equal(self.pq.codebook_t(), other.pq.codebook_t());
        if same {
            self.list_terms = Arc::clone(&other.list_terms);
        }
        same
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

    /// The parameters the index was built with.
    pub fn params(&self) -> IvfPqParams {
        self.params
    }

    /// Whether the raw vectors are kept (built with `refine`), which
    /// [`search_refined`](Self::search_refined) needs.
    pub fn has_vectors(&self) -> bool {
        self.vectors.is_some()
    }

    /// Number of vectors in each coarse list.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.list_starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The quantized form of vector `id`: its list's centroid plus the
    /// decoded residual, i.e. what PQ scores are computed against (up to
    /// rounding). Scans the lists, so it is for diagnostics, not hot paths.
    pub fn reconstruct(&self, id: u32) -> Option<Vec<f32>> {
        let at = self.ids.as_slice().iter().position(|&i| i == id)?;
        let list = self.list_starts.partition_point(|&s| s <= at) - 1;
        let m = self.pq.m();
        let mut out = vec![0.0f32; self.dim];
        self.pq
            .decode(&self.codes.as_slice()[at * m..][..m], &mut out);
        for (o, &c) in out
            .iter_mut()
            .zip(&self.centroids[list * self.dim..][..self.dim])
        {
            *o += c;
        }
        Some(out)
    }

    /// The stored raw vector `id`, when built with `refine`.
    pub fn vector(&self, id: u32) -> Option<&[f32]> {
        let start = (id as usize).checked_mul(self.dim)?;
        self.vectors
            .as_ref()?
            .as_slice()
            .get(start..start + self.dim)
    }

    /// The `k` best vectors by their PQ (approximate) scores among the
    /// `nprobe` best lists, best first (ties: lower id first). `nprobe`
    /// above `nlist` probes every list. Returns fewer than `k` when the
    /// probed lists hold fewer vectors.
    ///
    /// # Errors
    /// [`AnalogError::ZeroK`], [`AnalogError::InvalidParameter`] for
    /// `nprobe == 0`, [`AnalogError::QueryDimension`],
    /// [`AnalogError::NonFinite`].
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
    ) -> Result<Vec<Neighbor>, AnalogError> {
        self.check_query(query, k, nprobe)?;
        let mut top = TopK::new(k, self.metric);
        let mut table = vec![[0.0f32; 256]; self.pq.m()];
        self.scan(query, nprobe, &mut table, &mut top)?;
        Ok(top.into_sorted())
    }

    /// [`search`](Self::search) for each query of a row-major buffer.
    ///
    /// # Errors
    /// As [`search`](Self::search), with [`AnalogError::Ragged`] for a
    /// buffer that is not whole queries; all queries are checked first.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        nprobe: usize,
    ) -> Result<Vec<Vec<Neighbor>>, AnalogError> {
        self.check_batch(queries, k, nprobe)?;
        let mut table = vec![[0.0f32; 256]; self.pq.m()];
        queries
            .chunks_exact(self.dim)
            .map(|q| {
                let mut top = TopK::new(k, self.metric);
                self.scan(q, nprobe, &mut table, &mut top)?;
                Ok(top.into_sorted())
            })
            .collect()
    }

    /// The `k` best of a PQ shortlist of `shortlist` candidates (at least
    /// `k`), re-scored exactly against the stored raw vectors (FAISS
    /// `IndexRefineFlat`). Scores are exact, as [`FlatIndex`] computes
    /// them.
    ///
    /// # Errors
    /// As [`search`](Self::search), and [`AnalogError::NoRawVectors`] for
    /// an index built without `refine`.
    pub fn search_refined(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
        shortlist: usize,
    ) -> Result<Vec<Neighbor>, AnalogError> {
        self.check_query(query, k, nprobe)?;
        let mut table = vec![[0.0f32; 256]; self.pq.m()];
        self.refined(query, k, nprobe, shortlist, &mut table)
    }

    /// [`search_refined`](Self::search_refined) for each query of a
    /// row-major buffer.
    ///
    /// # Errors
    /// As [`search_refined`](Self::search_refined) and
    /// [`AnalogError::Ragged`].
    pub fn search_refined_batch(
        &self,
        queries: &[f32],
        k: usize,
        nprobe: usize,
        shortlist: usize,
    ) -> Result<Vec<Vec<Neighbor>>, AnalogError> {
        self.check_batch(queries, k, nprobe)?;
        let mut table = vec![[0.0f32; 256]; self.pq.m()];
        queries
            .chunks_exact(self.dim)
            .map(|q| self.refined(q, k, nprobe, shortlist, &mut table))
            .collect()
    }

    fn refined(
        &self,
        query: &[f32],
        k: usize,
        nprobe: usize,
        shortlist: usize,
        table: &mut [Lut],
    ) -> Result<Vec<Neighbor>, AnalogError> {
        if self.vectors.is_none() {
            return Err(AnalogError::NoRawVectors);
        }
        let mut candidates = TopK::new(shortlist.max(k), self.metric);
        self.scan(query, nprobe, table, &mut candidates)?;
        let score = kernel::selected().pair_for(self.metric);
        let mut top = TopK::new(k, self.metric);
        for n in candidates.into_sorted() {
            if let Some(row) = self.vector(n.id) {
                top.offer_unordered(n.id, score(query, row));
            }
        }
        Ok(top.into_sorted())
    }

    fn check_query(&self, query: &[f32], k: usize, nprobe: usize) -> Result<(), AnalogError> {
        if query.len() != self.dim {
            return Err(AnalogError::QueryDimension {
                got: query.len(),
                dim: self.dim,
            });
        }
        self.check_batch(query, k, nprobe)
    }

    fn check_batch(&self, queries: &[f32], k: usize, nprobe: usize) -> Result<(), AnalogError> {
        if k == 0 {
            return Err(AnalogError::ZeroK);
        }
        if nprobe == 0 {
            return Err(AnalogError::InvalidParameter {
                name: "nprobe",
                value: 0,
                expected: "at least 1",
            });
        }
        check_rows(queries, self.dim)
    }

    /// Offers every vector of the `nprobe` best lists to `top` with its ADC
    /// score. `table` holds `m` rows.
    fn scan(
        &self,
        query: &[f32],
        nprobe: usize,
        table: &mut [Lut],
        top: &mut TopK,
    ) -> Result<(), AnalogError> {
        let probes = self.coarse.search(query, nprobe.min(self.params.nlist))?;
        let m = self.pq.m();
        self.pq.inner_product_table(query, table);
        let mut list_table = match self.metric {
            Metric::InnerProduct => Vec::new(),
            Metric::L2 => vec![[0.0f32; 256]; m],
        };
        let (ids, codes) = (self.ids.as_slice(), self.codes.as_slice());
        for probe in probes {
            let list = probe.id as usize;
            let lut: &[Lut] = match self.metric {
                Metric::InnerProduct => table,
                Metric::L2 => {
                    let terms = &self.list_terms[list * m..][..m];
                    (crate::kernel::selected().scaled_sum)(
                        list_table.as_flattened_mut(),
                        terms.as_flattened(),
                        -2.0,
                        table.as_flattened(),
                    );
                    &list_table
                }
            };
            // The coarse score is q·c (IP) or |q - c|² (L2): the part of the
            // score that does not depend on the code.
            let base = probe.score;
            let (lo, hi) = (self.list_starts[list], self.list_starts[list + 1]);
            for (&id, code) in ids[lo..hi]
                .iter()
                .zip(codes[lo * m..hi * m].chunks_exact(m))
            {
                top.offer_unordered(id, base + adc(lut, code));
            }
        }
        Ok(())
    }
}

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The table sum for one code: two interleaved partial sums, so the
/// additions form two dependency chains instead of one.
#[inline]
fn adc(lut: &[Lut], code: &[u8]) -> f32 {
    let (mut even, mut odd) = (0.0f32, 0.0f32);
    let mut pairs = lut.chunks_exact(2).zip(code.chunks_exact(2));
    for (rows, c) in &mut pairs {
        even += rows[0][usize::from(c[0])];
        odd += rows[1][usize::from(c[1])];
    }
    if let (Some(row), Some(&c)) = (lut.get(code.len() - 1), code.last()) {
        if code.len() % 2 == 1 {
            even += row[usize::from(c)];
        }
    }
    even + odd
}

/// `|w_jc|² + 2 c_j·w_jc` for every list, sub-quantizer and code.
fn l2_list_terms(pq: &ProductQuantizer, centroids: &[f32], dim: usize) -> Vec<Lut> {
    let m = pq.m();
    let mut norms = vec![[0.0f32; 256]; m];
    pq.norms_table(&mut norms);
    let mut terms = vec![[0.0f32; 256]; centroids.len() / dim * m];
    for (c, out) in centroids.chunks_exact(dim).zip(terms.chunks_exact_mut(m)) {
        pq.inner_product_table(c, out);
        for (t, n) in out.iter_mut().zip(&norms) {
            for (t, &n) in t.iter_mut().zip(n) {
                *t = n + 2.0 * *t;
            }
        }
    }
    terms
}
