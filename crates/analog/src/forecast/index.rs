//! Which index serves each horizon's analog search, and how it is chosen.
//!
//! A station's horizons are searched either exactly (`flat`: a scan of the station's state
//! tiles restricted to the horizon's ids) or through an IVF-PQ index over the horizon's
//! states (`ivfpq`, `ivfpq-rerank`). `forecast build --index PLAN` asks per horizon
//! ([`IndexPlan`]); the build resolves each request with the horizon's number of vectors
//! ([`IndexPlan::resolve`]) and records the resolved [`IndexChoice`] in the manifest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Horizon;

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
    /// * `nlist` = the power of two nearest `sqrt(vectors)` (FAISS's rule of thumb of
    ///   `√n`-sized lists), at least 16 and at most 4096;
    /// * `m` = 13 (each sub-quantizer encodes about two window values of a 25-dimensional
    ///   state), `nbits` = 8;
    /// * `nprobe` = `nlist / 8`, at least 8;
    /// * `shortlist` = 256 candidates re-scored exactly.
    pub fn auto(vectors: usize) -> Self {
        let root = (vectors as f64).sqrt();
        let nlist = if root <= 16.0 {
            16
        } else {
            // Nearest power of two in log scale.
            let exponent = root.log2().round() as u32;
            (1usize << exponent.min(12)).clamp(16, 4096)
        };
        Self {
            nlist,
            m: AUTO_M,
            nbits: 8,
            nprobe: (nlist / 8).max(8),
            shortlist: AUTO_SHORTLIST,
        }
    }
}

/// Shortlist of the seed preset (used by anen over an `ivfpq` horizon).
const SEED_SHORTLIST: usize = 100;
/// Sub-quantizers of the automatic setting.
const AUTO_M: usize = 13;
/// Shortlist of the automatic setting.
const AUTO_SHORTLIST: usize = 256;

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

fn serialize_display<S: serde::Serializer>(
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
        assert_eq!(big.nlist, 512);
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
        assert_eq!(IvfPqSettings::auto(65_536).nlist, 256);
        assert_eq!(IvfPqSettings::auto(1 << 30).nlist, 4096);
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
        assert_eq!(json["nlist"], 256);
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
        assert_eq!(json["nlist"], 256);
    }
}
