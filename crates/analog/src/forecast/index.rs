//! Which index serves each horizon's analog search, and how it is chosen.
//!
//! A station's horizons are searched either exactly (`flat`: a scan of the station's state
//! tiles restricted to the horizon's ids) or through an IVF-PQ index over the horizon's
//! states (`ivfpq`, `ivfpq-rerank`). `forecast build --index PLAN` asks per horizon
//! ([`IndexPlan`]); the build resolves each request with the horizon's number of vectors
//! ([`IndexPlan::resolve`]) and records the resolved [`IndexChoice`] in the manifest.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::anen::{euclidean_blocks, AnEnIndex, Block};
use super::{Horizon, Similarity};
use crate::{AnalogError, IvfPqIndex, IvfPqParams, Metric};

/// How one horizon's analogs are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexKind {
    /// Exact scan of the station's state tiles.
    Flat,
    /// IVF-PQ: the seed similarity ranks by the PQ estimate; anen re-scores a shortlist.
    Ivfpq,
    /// IVF-PQ candidates, every similarity re-scored exactly from the state tiles.
    IvfpqRerank,
}

impl IndexKind {
    /// `"flat"`, `"ivfpq"` or `"ivfpq-rerank"`.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Flat => "flat",
            IndexKind::Ivfpq => "ivfpq",
            IndexKind::IvfpqRerank => "ivfpq-rerank",
        }
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// IVF-PQ settings of one horizon's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvfPqSettings {
    /// Inverted lists (coarse centroids).
    pub nlist: usize,
    /// PQ sub-quantizers (need not divide the dimension: the sub-vectors differ by at most one
    /// component).
    pub m: usize,
    /// Bits per PQ code (`2^nbits` centroids per sub-quantizer).
    pub nbits: u32,
    /// Lists visited per search.
    pub nprobe: usize,
    /// Candidates re-scored exactly (≥ k is enforced at search time).
    pub shortlist: usize,
}

impl IvfPqSettings {
    /// Vectors needed to train these settings: `max(nlist, 2^nbits)`.
    pub fn min_training_vectors(&self) -> usize {
        let ksub = 1usize.checked_shl(self.nbits).unwrap_or(usize::MAX);
        self.nlist.max(ksub)
    }

    /// The seed's (seed 001) IVF-PQ setting for `horizon`, if the seed uses IVF-PQ there
    /// (24 h and 48 h). The seed has no re-ranking; its shortlist here is used only by the
    /// anen similarity, which PQ cannot estimate (see [`IndexChoice`]).
    pub fn seed(horizon: Horizon) -> Option<Self> {
        match horizon {
            Horizon::H6 | Horizon::H12 => None,
            Horizon::H24 => Some(Self {
                nlist: 64,
                m: 8,
                nbits: 8,
                nprobe: 8,
                shortlist: SEED_SHORTLIST,
            }),
            Horizon::H48 => Some(Self {
                nlist: 128,
                m: 16,
                nbits: 8,
                nprobe: 16,
                shortlist: SEED_SHORTLIST,
            }),
        }
    }

    /// The automatic setting for `vectors` vectors (the documented formula; see
    /// `docs/forecast.md`, "Index choice"):
    ///
    /// * `nlist` = the power of two nearest `√vectors / 2` (lists of about `2√n` vectors),
    ///   at least 16 and at most 4096: 256 for one station's 30 years (263 k states);
    /// * `m` = 5 (each sub-quantizer encodes five values of a 25-value state; 5 divides
    ///   25, so FAISS can build the same index), `nbits` = 8;
    /// * `nprobe` = `nlist / 32`, at least 8;
    /// * `shortlist` = 128 candidates re-scored exactly.
    ///
    /// Tuned on 263 k states of synthetic hourly weather: the shortlist of 128 re-scored
    /// exactly keeps recall@10 against exact search at about 0.99 or better for both
    /// similarities (measured per horizon at 100 stations × 30 years, `docs/forecast.md`), so
    /// `m` is chosen for speed: 5 table lookups per candidate instead of 13 (the first tuning)
    /// scans the probed lists about 2.5× faster. Larger `nlist` searches faster but each index
    /// then holds `nlist · m` lookup tables of 1 KiB in memory (1.25 MiB at 256, shared by a
    /// station's horizons).
    pub fn auto(vectors: usize) -> Self {
        let half_root = (vectors as f64).sqrt() / 2.0;
        let nlist = if half_root <= 16.0 {
            16
        } else {
            // Nearest power of two in log scale.
            let exponent = half_root.log2().round().min(12.0) as u32;
            (1usize << exponent).clamp(16, 4096)
        };
        Self {
            nlist,
            m: AUTO_M,
            nbits: 8,
            nprobe: (nlist / 32).max(8),
            shortlist: AUTO_SHORTLIST,
        }
    }
}

/// Shortlist of the seed preset (used by anen over an `ivfpq` horizon).
const SEED_SHORTLIST: usize = 100;
/// Sub-quantizers of the automatic setting.
const AUTO_M: usize = 5;
/// Shortlist of the automatic setting.
const AUTO_SHORTLIST: usize = 128;

/// Below this many vectors, `auto` keeps a horizon flat (the seed's "ntotal > 50000 …
/// consider IVFPQ").
pub const AUTO_FLAT_BELOW: usize = 50_000;

/// The index resolved for one station and horizon (recorded in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum IndexChoice {
    /// Exact scan.
    Flat,
    /// IVF-PQ, seed similarity ranked by the PQ estimate; anen re-scores `shortlist`
    /// candidates exactly (PQ cannot compute a sum of per-block roots).
    Ivfpq(IvfPqSettings),
    /// IVF-PQ candidates, `shortlist` of them re-scored exactly for both similarities.
    IvfpqRerank(IvfPqSettings),
}

impl IndexChoice {
    /// The kind of index.
    pub fn kind(&self) -> IndexKind {
        match self {
            IndexChoice::Flat => IndexKind::Flat,
            IndexChoice::Ivfpq(_) => IndexKind::Ivfpq,
            IndexChoice::IvfpqRerank(_) => IndexKind::IvfpqRerank,
        }
    }

    /// The IVF-PQ settings, if any.
    pub fn ivfpq(&self) -> Option<IvfPqSettings> {
        match self {
            IndexChoice::Flat => None,
            IndexChoice::Ivfpq(s) | IndexChoice::IvfpqRerank(s) => Some(*s),
        }
    }
}

/// What `forecast build --index PLAN` asks for one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexRequest {
    /// Flat below [`AUTO_FLAT_BELOW`] vectors, else IVF-PQ with re-ranking
    /// ([`IvfPqSettings::auto`]).
    Auto,
    /// Exact scan.
    Flat,
    /// IVF-PQ with the automatic settings, no re-ranking for the seed similarity.
    Ivfpq,
    /// IVF-PQ with the automatic settings and exact re-ranking.
    IvfpqRerank,
    /// The seed's setting for that horizon (flat for 6 h and 12 h, IVF-PQ for 24 h and 48 h).
    Seed,
}

impl IndexRequest {
    /// The name used in a plan.
    pub fn name(self) -> &'static str {
        match self {
            IndexRequest::Auto => "auto",
            IndexRequest::Flat => "flat",
            IndexRequest::Ivfpq => "ivfpq",
            IndexRequest::IvfpqRerank => "ivfpq-rerank",
            IndexRequest::Seed => "seed",
        }
    }

    const ALL: [IndexRequest; 5] = [
        IndexRequest::Auto,
        IndexRequest::Flat,
        IndexRequest::Ivfpq,
        IndexRequest::IvfpqRerank,
        IndexRequest::Seed,
    ];

    /// Resolves this request for `horizon` with `vectors` vectors (see
    /// [`IndexPlan::resolve`]).
    pub fn resolve(self, horizon: Horizon, vectors: usize) -> IndexChoice {
        let choice = match self {
            IndexRequest::Flat => IndexChoice::Flat,
            IndexRequest::Auto if vectors < AUTO_FLAT_BELOW => IndexChoice::Flat,
            IndexRequest::Auto | IndexRequest::IvfpqRerank => {
                IndexChoice::IvfpqRerank(IvfPqSettings::auto(vectors))
            }
            IndexRequest::Ivfpq => IndexChoice::Ivfpq(IvfPqSettings::auto(vectors)),
            IndexRequest::Seed => match IvfPqSettings::seed(horizon) {
                Some(settings) => IndexChoice::Ivfpq(settings),
                None => IndexChoice::Flat,
            },
        };
        // Too few vectors to train the quantizers: exact search is both possible and cheap.
        match choice.ivfpq() {
            Some(settings) if vectors < settings.min_training_vectors() => IndexChoice::Flat,
            _ => choice,
        }
    }
}

impl fmt::Display for IndexRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IndexRequest {
    type Err = IndexPlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndexRequest::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| IndexPlanError {
                part: s.to_owned(),
                message: "expected auto, seed, flat, ivfpq or ivfpq-rerank".to_owned(),
            })
    }
}

/// What `forecast build --index PLAN` asks for, per horizon (in [`Horizon::ALL`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPlan {
    /// The request for each horizon, in [`Horizon::ALL`] order.
    pub horizons: [IndexRequest; 4],
}

impl Default for IndexPlan {
    /// `auto` for every horizon.
    fn default() -> Self {
        Self::all(IndexRequest::Auto)
    }
}

impl IndexPlan {
    /// The same request for every horizon.
    pub fn all(request: IndexRequest) -> Self {
        Self {
            horizons: [request; 4],
        }
    }

    /// The request for `horizon`.
    pub fn request(&self, horizon: Horizon) -> IndexRequest {
        self.horizons[horizon.index()]
    }

    /// The index for `horizon` given its number of `vectors`:
    ///
    /// * `flat` → flat; `seed` → the seed preset ([`IvfPqSettings::seed`]);
    /// * `auto` → flat below [`AUTO_FLAT_BELOW`] vectors, else `ivfpq-rerank` with
    ///   [`IvfPqSettings::auto`]; `ivfpq` / `ivfpq-rerank` → that kind with the automatic
    ///   settings;
    /// * an IVF-PQ choice on fewer vectors than it needs to train
    ///   ([`IvfPqSettings::min_training_vectors`]) falls back to flat, recorded as flat.
    ///
    /// ```
    /// use analog::forecast::{Horizon, IndexChoice, IndexPlan};
    /// let plan: IndexPlan = "seed".parse().unwrap();
    /// assert_eq!(plan.resolve(Horizon::H6, 100_000), IndexChoice::Flat);
    /// assert!(matches!(plan.resolve(Horizon::H24, 100_000), IndexChoice::Ivfpq(s) if s.nlist == 64));
    /// assert_eq!(plan.resolve(Horizon::H24, 100), IndexChoice::Flat);
    /// ```
    pub fn resolve(&self, horizon: Horizon, vectors: usize) -> IndexChoice {
        self.request(horizon).resolve(horizon, vectors)
    }
}

impl fmt::Display for IndexPlan {
    /// One word when every horizon asks the same, else `6h=flat,12h=auto,…` (parses back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.horizons[0];
        if self.horizons.iter().all(|&r| r == first) {
            return f.write_str(first.name());
        }
        for (i, (h, r)) in Horizon::ALL.iter().zip(self.horizons).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{h}={r}")?;
        }
        Ok(())
    }
}

/// A plan that does not parse; names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index plan: '{part}': {message}")]
pub struct IndexPlanError {
    /// The part of the plan at fault.
    pub part: String,
    /// What is wrong with it.
    pub message: String,
}

impl FromStr for IndexPlan {
    type Err = IndexPlanError;

    /// `auto`, `seed`, `flat`, `ivfpq`, `ivfpq-rerank` for every horizon, or a comma list
    /// `6h=flat,24h=ivfpq-rerank` (unlisted horizons: `auto`; a horizon listed twice is an
    /// error).
    ///
    /// ```
    /// use analog::forecast::{IndexPlan, IndexRequest};
    /// let plan: IndexPlan = "6h=flat, 24h=ivfpq-rerank".parse().unwrap();
    /// assert_eq!(plan.horizons[0], IndexRequest::Flat);
    /// assert_eq!(plan.horizons[1], IndexRequest::Auto);
    /// assert!("24h=fast".parse::<IndexPlan>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if !trimmed.contains('=') {
            return Ok(Self::all(trimmed.parse()?));
        }
        let mut plan = Self::default();
        let mut seen = [false; 4];
        for part in trimmed.split(',').map(str::trim) {
            let bad = |message: String| IndexPlanError {
                part: part.to_owned(),
                message,
            };
            let (horizon, request) = part
                .split_once('=')
                .ok_or_else(|| bad("expected HORIZON=INDEX, e.g. 24h=ivfpq".to_owned()))?;
            let horizon: Horizon = horizon.trim().parse().map_err(|e| bad(format!("{e}")))?;
            let request: IndexRequest = request
                .trim()
                .parse()
                .map_err(|e: IndexPlanError| bad(e.message))?;
            if std::mem::replace(&mut seen[horizon.index()], true) {
                return Err(bad(format!("horizon {horizon} is listed twice")));
            }
            plan.horizons[horizon.index()] = request;
        }
        Ok(plan)
    }
}

/// One index as the catalogue and diagnostics report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// Station id.
    pub station: String,
    /// Horizon (`"24h"` in JSON).
    #[serde(serialize_with = "serialize_display")]
    pub horizon: Horizon,
    /// Kind of index.
    pub kind: IndexKind,
    /// Vectors searched (the horizon's states).
    pub vectors: usize,
    /// Vector dimension.
    pub dimension: usize,
    /// IVF lists (IVF-PQ only).
    pub nlist: Option<usize>,
    /// Lists visited per search (IVF-PQ only).
    pub nprobe: Option<usize>,
    /// PQ sub-quantizers (IVF-PQ only).
    pub m: Option<usize>,
    /// Bits per PQ code (IVF-PQ only).
    pub nbits: Option<u32>,
    /// Candidates re-scored exactly (IVF-PQ only).
    pub shortlist: Option<usize>,
    /// Bytes a search reads from (codes + lists + quantizers for IVF-PQ; the station's state
    /// tiles for flat).
    pub bytes: u64,
}

impl IndexInfo {
    /// The info for `choice`, with the IVF-PQ fields filled from its settings.
    pub fn new(
        station: impl Into<String>,
        horizon: Horizon,
        choice: IndexChoice,
        vectors: usize,
        dimension: usize,
        bytes: u64,
    ) -> Self {
        let settings = choice.ivfpq();
        Self {
            station: station.into(),
            horizon,
            kind: choice.kind(),
            vectors,
            dimension,
            nlist: settings.map(|s| s.nlist),
            nprobe: settings.map(|s| s.nprobe),
            m: settings.map(|s| s.m),
            nbits: settings.map(|s| s.nbits),
            shortlist: settings.map(|s| s.shortlist),
            bytes,
        }
    }
}

/// One horizon's search: the station's states (tiles, scored with the AnEn blocks), the
/// horizon's state ids, and its IVF-PQ index when [`IndexChoice`] says so. Borrows
/// everything; cheap to make per request.
#[derive(Debug, Clone, Copy)]
pub struct HorizonIndex<'a> {
    /// All of the station's states; state id = row.
    pub states: &'a AnEnIndex,
    /// The horizon's state ids (those whose outcome at `t + h` is observed), ascending.
    pub ids: &'a [u32],
    /// How the horizon is searched.
    pub choice: IndexChoice,
    /// The IVF-PQ index over the horizon's rows (its ids are positions in `ids`); required
    /// for an IVF-PQ choice.
    pub ivfpq: Option<&'a IvfPqIndex>,
}

/// Why a horizon could not be searched or built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HorizonIndexError {
    /// The choice is IVF-PQ but no IVF-PQ index was given, or it does not match the ids.
    #[error("horizon index: {0}")]
    Mismatch(String),
    /// The IVF-PQ index refused the query or the build.
    #[error("horizon index: {0}")]
    Search(#[from] AnalogError),
}

impl HorizonIndex<'_> {
    /// The `k` nearest analogs of `query` as `(state id, distance)`, nearest first, ties by
    /// lower id, skipping state ids in `exclude`. Distance: Euclidean for
    /// [`Similarity::Seed`], the AnEn metric for [`Similarity::AnEn`].
    ///
    /// * flat: exact scan of the tiles restricted to the horizon's ids;
    /// * ivfpq: seed ranks by the PQ estimate (distance = its square root, as FAISS
    ///   `IndexIVFPQ`); anen re-scores `shortlist` PQ candidates exactly;
    /// * ivfpq-rerank: both re-score `shortlist` PQ candidates exactly.
    ///
    /// # Errors
    /// [`HorizonIndexError::Mismatch`] for an IVF-PQ choice without a matching index;
    /// [`HorizonIndexError::Search`] for a query the IVF-PQ index refuses.
    ///
    /// # Panics
    /// If `query.len()` is not the states' dimension (a caller bug).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        similarity: Similarity,
        exclude: Range<u32>,
    ) -> Result<Vec<(usize, f64)>, HorizonIndexError> {
        let Some(settings) = self.choice.ivfpq() else {
            return Ok(self.search_exact(query, k, similarity, exclude));
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let ivfpq = self.checked_ivfpq()?;
        let skip = self.excluded_positions(&exclude);
        let rerank =
            matches!(self.choice, IndexChoice::IvfpqRerank(_)) || similarity == Similarity::AnEn;
        let wanted = if rerank { settings.shortlist.max(k) } else { k };
        // At most `skip.len()` candidates can be excluded, so asking for that many more and
        // dropping them leaves `wanted` candidates whenever the probed lists hold them.
        let candidates: Vec<(u32, f32)> = ivfpq
            .search(query, wanted + skip.len(), settings.nprobe.max(1))?
            .into_iter()
            .filter(|n| !skip.contains(&(n.id as usize)))
            .take(wanted)
            .filter_map(|n| Some((*self.ids.get(n.id as usize)?, n.score)))
            .collect();
        if !rerank {
            return Ok(candidates
                .into_iter()
                .map(|(id, score)| (id as usize, f64::from(score.max(0.0)).sqrt()))
                .collect());
        }
        let ids: Vec<u32> = candidates.iter().map(|c| c.0).collect();
        let blocks = self.blocks(similarity);
        let exact = self.states.distances(query, &ids, &blocks);
        Ok(select_nearest(
            exact
                .into_iter()
                .zip(ids)
                .map(|(d, id)| (d + 0.0, id))
                .collect(),
            k,
        ))
    }

    /// The exact `k` nearest (the flat search whatever the choice): the reference for
    /// recall, and the `flat` path of [`search`](Self::search).
    ///
    /// # Panics
    /// If `query.len()` is not the states' dimension (a caller bug).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        similarity: Similarity,
        exclude: Range<u32>,
    ) -> Vec<(usize, f64)> {
        if k == 0 {
            return Vec::new();
        }
        let blocks = self.blocks(similarity);
        let scores = self.states.scores_with_blocks(query, &blocks);
        let candidates = self
            .ids
            .iter()
            .filter(|id| !exclude.contains(id))
            .filter_map(|&id| Some((*scores.get(id as usize)? + 0.0, id)))
            .collect();
        select_nearest(candidates, k)
    }

    fn blocks(&self, similarity: Similarity) -> Vec<Block> {
        match similarity {
            Similarity::Seed => euclidean_blocks(self.states.dim()).to_vec(),
            Similarity::AnEn => self.states.blocks().to_vec(),
        }
    }

    /// Positions in `ids` of the excluded state ids (a range, as `ids` ascend).
    fn excluded_positions(&self, exclude: &Range<u32>) -> Range<usize> {
        let lo = self.ids.partition_point(|&id| id < exclude.start);
        let hi = self.ids.partition_point(|&id| id < exclude.end).max(lo);
        lo..hi
    }

    fn checked_ivfpq(&self) -> Result<&IvfPqIndex, HorizonIndexError> {
        let ivfpq = self.ivfpq.ok_or_else(|| {
            HorizonIndexError::Mismatch(format!(
                "the choice is {} but there is no IVF-PQ index",
                self.choice.kind()
            ))
        })?;
        if ivfpq.len() != self.ids.len() || ivfpq.dim() != self.states.dim() {
            return Err(HorizonIndexError::Mismatch(format!(
                "the IVF-PQ index holds {} vectors of {} values, the horizon {} of {}",
                ivfpq.len(),
                ivfpq.dim(),
                self.ids.len(),
                self.states.dim()
            )));
        }
        Ok(ivfpq)
    }
}

/// The `k` best `(distance, id)`, nearest first, ties by lower id, as `(id, distance)`.
fn select_nearest(mut candidates: Vec<(f32, u32)>, k: usize) -> Vec<(usize, f64)> {
    super::anen::nearest(&mut candidates, k);
    candidates
        .into_iter()
        .map(|(d, id)| (id as usize, f64::from(d)))
        .collect()
}

/// Training vectors per coarse list at most (FAISS warns below 39 and caps at 256; k-means
/// quality saturates long before the cap, and training time is linear in it).
const TRAINING_PER_LIST: usize = 64;

/// The rows an IVF-PQ training uses: every row when there are few, else an evenly strided
/// deterministic sample of at most `max(64 · nlist, 64 · 2^nbits)` of `ids`.
pub fn training_sample(ids: &[u32], settings: &IvfPqSettings) -> Vec<u32> {
    let cap = settings
        .min_training_vectors()
        .saturating_mul(TRAINING_PER_LIST)
        .max(1);
    if ids.len() <= cap {
        return ids.to_vec();
    }
    // Evenly spaced over the whole period so every season and year is represented.
    (0..cap).map(|i| ids[i * ids.len() / cap]).collect()
}

/// A deterministic training seed for a station (FNV-1a of its code), so rebuilding gives the
/// same index and stations differ.
pub fn training_seed(station: &str) -> u64 {
    station.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Trains the quantizers of an IVF-PQ index (Euclidean, as the seed similarity) on a capped
/// sample ([`training_sample`]) of `ids`' states: an empty index, to be filled per horizon
/// with [`fill_ivfpq`]. Horizons of one station with equal `nlist`, `m`, `nbits` can share
/// one training (train once on the station's state ids, fill once per horizon).
///
/// # Errors
/// [`HorizonIndexError::Search`] for settings the index refuses or too few vectors.
pub fn train_ivfpq(
    states: &AnEnIndex,
    ids: &[u32],
    settings: &IvfPqSettings,
    seed: u64,
) -> Result<IvfPqIndex, HorizonIndexError> {
    let sample = training_sample(ids, settings);
    check_ids(states, &sample)?;
    let rows = states.gather_rows(&sample);
    let params = IvfPqParams::new(settings.nlist, settings.m, settings.nbits, settings.nprobe)
        .with_kmeans_iters(KMEANS_ITERS);
    Ok(IvfPqIndex::train(
        &rows,
        states.dim(),
        Metric::L2,
        params,
        seed,
    )?)
}

/// Lloyd iterations of the trainings (FAISS's default is 25; the assignment changes little
/// after ~10 on weather states, and build time is linear in it).
const KMEANS_ITERS: usize = 15;

/// A copy of the `trained` (empty) index holding the rows of `ids` (IVF-PQ id = position in
/// `ids`), without raw vectors: re-ranking reads the station's tiles.
///
/// # Errors
/// [`HorizonIndexError::Mismatch`] for an id past the states or a non-empty `trained`.
pub fn fill_ivfpq(
    trained: &IvfPqIndex,
    states: &AnEnIndex,
    ids: &[u32],
) -> Result<IvfPqIndex, HorizonIndexError> {
    if !trained.is_empty() {
        return Err(HorizonIndexError::Mismatch(
            "fill_ivfpq takes an empty trained index".to_owned(),
        ));
    }
    check_ids(states, ids)?;
    let mut index = trained.clone();
    // Add in chunks so the gathered row-major copy stays small.
    for chunk in ids.chunks(ADD_CHUNK) {
        index.add(&states.gather_rows(chunk))?;
    }
    Ok(index)
}

/// Rows gathered per `add` when filling an index.
const ADD_CHUNK: usize = 16_384;

/// [`train_ivfpq`] on `ids` then [`fill_ivfpq`] with them.
///
/// # Errors
/// As those two.
pub fn build_ivfpq(
    states: &AnEnIndex,
    ids: &[u32],
    settings: &IvfPqSettings,
    seed: u64,
) -> Result<IvfPqIndex, HorizonIndexError> {
    fill_ivfpq(&train_ivfpq(states, ids, settings, seed)?, states, ids)
}

/// The IVF-PQ indexes of a station's IVF-PQ horizons, one per entry of `horizons` (the
/// horizon's ids and settings), in order. Horizons with equal `nlist`, `m` and `nbits` share
/// one training (on a sample of all the station's states, seeded with `seed`) and one
/// encoding of the states: each state is assigned and encoded once, and each horizon's index
/// picks its ids' codes. Each index is equal to [`fill_ivfpq`] of that training with the
/// horizon's ids, with the horizon's `nprobe` as its default.
///
/// # Errors
/// [`HorizonIndexError`] for settings the index refuses, too few states, or an id past the
/// states.
pub fn build_station_ivfpq(
    states: &AnEnIndex,
    horizons: &[(&[u32], IvfPqSettings)],
    seed: u64,
) -> Result<Vec<IvfPqIndex>, HorizonIndexError> {
    let all: Vec<u32> = (0..states.len())
        .map(|i| {
            u32::try_from(i).map_err(|_| {
                HorizonIndexError::Mismatch(format!("{} states exceed u32 ids", states.len()))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut out: Vec<Option<IvfPqIndex>> = vec![None; horizons.len()];
    for (first, (_, settings)) in horizons.iter().enumerate() {
        if out[first].is_some() {
            continue;
        }
        let same = |s: &IvfPqSettings| {
            (s.nlist, s.m, s.nbits) == (settings.nlist, settings.m, settings.nbits)
        };
        let trained = train_ivfpq(states, &all, settings, seed)?;
        let (mut lists, mut codes) = (Vec::new(), Vec::new());
        for chunk in all.chunks(ADD_CHUNK) {
            let (l, c) = trained.encode(&states.gather_rows(chunk))?;
            lists.extend(l);
            codes.extend(c);
        }
        for (slot, (ids, s)) in out.iter_mut().zip(horizons).skip(first) {
            if slot.is_none() && same(s) {
                check_ids(states, ids)?;
                let mut index = trained.with_encoded(&lists, &codes, ids)?;
                index.set_nprobe(s.nprobe);
                *slot = Some(index);
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

fn check_ids(states: &AnEnIndex, ids: &[u32]) -> Result<(), HorizonIndexError> {
    match ids.iter().find(|&&id| id as usize >= states.len()) {
        Some(id) => Err(HorizonIndexError::Mismatch(format!(
            "state id {id} is past the station's {} states",
            states.len()
        ))),
        None => Ok(()),
    }
}

pub(super) fn serialize_display<S: serde::Serializer>(
    value: &impl fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_word_plans_apply_to_every_horizon() {
        for (text, request) in [
            ("auto", IndexRequest::Auto),
            ("seed", IndexRequest::Seed),
            ("flat", IndexRequest::Flat),
            ("ivfpq", IndexRequest::Ivfpq),
            ("ivfpq-rerank", IndexRequest::IvfpqRerank),
        ] {
            let plan: IndexPlan = text.parse().unwrap();
            assert_eq!(plan, IndexPlan::all(request));
            assert_eq!(plan.to_string(), text);
        }
    }

    #[test]
    fn lists_set_the_named_horizons_and_leave_the_rest_auto() {
        let plan: IndexPlan = "6h=flat,24h=ivfpq-rerank".parse().unwrap();
        assert_eq!(
            plan.horizons,
            [
                IndexRequest::Flat,
                IndexRequest::Auto,
                IndexRequest::IvfpqRerank,
                IndexRequest::Auto
            ]
        );
        assert_eq!(
            plan.to_string(),
            "6h=flat,12h=auto,24h=ivfpq-rerank,48h=auto"
        );
        assert_eq!(plan.to_string().parse::<IndexPlan>(), Ok(plan));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = "6h=flat,3h=flat".parse::<IndexPlan>().unwrap_err();
        assert_eq!(e.part, "3h=flat");
        assert!(e.message.contains("horizon"), "{e}");
        let e = "6h=flat,24h=fast".parse::<IndexPlan>().unwrap_err();
        assert_eq!(e.part, "24h=fast");
        let e = "6h=flat,6h=ivfpq".parse::<IndexPlan>().unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
        let e = "fast".parse::<IndexPlan>().unwrap_err();
        assert_eq!(e.part, "fast");
        assert!(e.to_string().contains("'fast'"));
        let e = "6h=flat,".parse::<IndexPlan>().unwrap_err();
        assert_eq!(e.part, "");
    }

    #[test]
    fn seed_preset_is_the_seeds_setting() {
        let plan = IndexPlan::all(IndexRequest::Seed);
        assert_eq!(plan.resolve(Horizon::H6, 1_000_000), IndexChoice::Flat);
        assert_eq!(plan.resolve(Horizon::H12, 1_000_000), IndexChoice::Flat);
        let IndexChoice::Ivfpq(h24) = plan.resolve(Horizon::H24, 1_000_000) else {
            panic!("24h is IVF-PQ in the seed")
        };
        assert_eq!((h24.nlist, h24.m, h24.nbits, h24.nprobe), (64, 8, 8, 8));
        let IndexChoice::Ivfpq(h48) = plan.resolve(Horizon::H48, 1_000_000) else {
            panic!("48h is IVF-PQ in the seed")
        };
        assert_eq!((h48.nlist, h48.m, h48.nbits, h48.nprobe), (128, 16, 8, 16));
    }

    #[test]
    fn auto_is_flat_below_the_threshold_and_reranked_ivfpq_above() {
        let plan = IndexPlan::default();
        assert_eq!(
            plan.resolve(Horizon::H24, AUTO_FLAT_BELOW - 1),
            IndexChoice::Flat
        );
        let choice = plan.resolve(Horizon::H24, AUTO_FLAT_BELOW);
        assert_eq!(choice.kind(), IndexKind::IvfpqRerank);
        let big = IvfPqSettings::auto(263_000);
        assert_eq!((big.nlist, big.nprobe, big.shortlist), (256, 8, 128));
        assert!(big.nprobe >= 8 && big.nprobe <= big.nlist);
        assert!(big.shortlist >= 10);
    }

    #[test]
    fn ivfpq_on_too_few_vectors_falls_back_to_flat() {
        // 2^8 = 256 PQ centroids need 256 training vectors.
        assert_eq!(
            IndexRequest::Ivfpq.resolve(Horizon::H6, 255),
            IndexChoice::Flat
        );
        assert_eq!(
            IndexRequest::Ivfpq.resolve(Horizon::H6, 256).kind(),
            IndexKind::Ivfpq
        );
        assert_eq!(
            IndexRequest::Seed.resolve(Horizon::H48, 200),
            IndexChoice::Flat
        );
    }

    #[test]
    fn auto_nlist_grows_with_the_square_root() {
        assert_eq!(IvfPqSettings::auto(0).nlist, 16);
        assert_eq!(IvfPqSettings::auto(65_536).nlist, 128);
        assert_eq!(IvfPqSettings::auto(1 << 40).nlist, 4096);
        assert_eq!(IvfPqSettings::auto(1 << 40).nprobe, 128);
        let mut last = 0;
        for n in [1_000, 50_000, 263_000, 1_000_000, 26_000_000] {
            let s = IvfPqSettings::auto(n);
            assert!(s.nlist >= last);
            last = s.nlist;
        }
    }

    #[test]
    fn serde_shapes() {
        let choice = IndexChoice::IvfpqRerank(IvfPqSettings::auto(100_000));
        let json = serde_json::to_value(choice).unwrap();
        assert_eq!(json["kind"], "ivfpq-rerank");
        assert_eq!(json["nlist"], 128);
        assert_eq!(serde_json::from_value::<IndexChoice>(json).unwrap(), choice);
        let flat = serde_json::to_value(IndexChoice::Flat).unwrap();
        assert_eq!(flat, serde_json::json!({"kind": "flat"}));
        let plan: IndexPlan = "6h=flat".parse().unwrap();
        let json = serde_json::to_value(plan).unwrap();
        assert_eq!(json["horizons"][0], "flat");
        assert_eq!(serde_json::from_value::<IndexPlan>(json).unwrap(), plan);
        let info = IndexInfo::new("X", Horizon::H24, choice, 100_000, 25, 1);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["horizon"], "24h");
        assert_eq!(json["kind"], "ivfpq-rerank");
        assert_eq!(json["nlist"], 128);
    }
}
