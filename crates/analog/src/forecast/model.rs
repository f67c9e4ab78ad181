//! The forecast model: per station, the series and one analog index per horizon.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::anen::AnEnIndex;
use super::ensemble::ensemble_stats;
use super::state::{Standardization, StateShape};
use super::{
    format_time, Dataset, ForecastError, Horizon, Members, NoStateReason, Similarity,
    StationSeries, Variable, NVARS,
};
use crate::{AnalogError, FlatIndex, Metric, Neighbor};

/// The largest ensemble a request may ask for.
pub const MAX_K: usize = 100;
/// The longest trailing window a model may use (one week).
const MAX_WINDOW: usize = 168;

/// How a model is built. The defaults were chosen by skill on a training-period split (see
/// `docs/forecast.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Trailing window of the state vector, hours (1..=168).
    pub window: usize,
    /// Scale of the hour-of-day components (0 ignores the time of day).
    pub hour_weight: f32,
    /// Scale of the time-of-year components (0 ignores the season).
    pub season_weight: f32,
    /// AnEn weight per predictor block, in [`Variable::ALL`] order.
    pub predictor_weights: [f32; NVARS],
    /// How analogs become members.
    pub members: Members,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            window: 3,
            hour_weight: 10.0,
            season_weight: 1.0,
            predictor_weights: [1.0; NVARS],
            members: Members::Delta,
        }
    }
}

impl BuildOptions {
    fn check(&self) -> Result<(), ForecastError> {
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(ForecastError::InvalidOption {
                field: "window",
                message: format!("must be between 1 and {MAX_WINDOW} hours"),
            });
        }
        let bad = |w: f32| !w.is_finite() || w < 0.0;
        if bad(self.hour_weight) {
            return Err(invalid("hour_weight", "must be finite and ≥ 0"));
        }
        if bad(self.season_weight) {
            return Err(invalid("season_weight", "must be finite and ≥ 0"));
        }
        if self.predictor_weights.iter().any(|w| bad(*w)) {
            return Err(invalid("predictor_weights", "must be finite and ≥ 0"));
        }
        Ok(())
    }

    pub(crate) fn shape(&self) -> StateShape {
        StateShape {
            window: self.window,
            hour_weight: self.hour_weight,
            season_weight: self.season_weight,
        }
    }
}

fn invalid(field: &'static str, message: &str) -> ForecastError {
    ForecastError::InvalidOption {
        field,
        message: message.to_owned(),
    }
}

/// The search behind [`Similarity::Seed`]: the swap point for approximate indexes. Scores are
/// squared L2 distances, smallest first, ties by lower id.
pub trait SeedSearch: Send + Sync {
    /// The `k` nearest stored states.
    ///
    /// # Errors
    /// Whatever the index reports for a bad query.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError>;
    /// A short description (e.g. `flat-l2`).
    fn describe(&self) -> String;
}

impl SeedSearch for FlatIndex {
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, AnalogError> {
        FlatIndex::search(self, query, k)
    }

    fn describe(&self) -> String {
        "flat-l2".to_owned()
    }
}

/// Builds the seed-metric search over row-major `states` of `dim` values: an exact
/// [`FlatIndex`] with [`Metric::L2`] today. Replace this to serve the seed metric from another
/// index.
///
/// # Errors
/// [`AnalogError`] for a zero dimension or non-finite states.
pub fn seed_backend(dim: usize, states: &[f32]) -> Result<Box<dyn SeedSearch>, AnalogError> {
    let mut index = FlatIndex::new(dim, Metric::L2)?;
    index.add(states)?;
    Ok(Box::new(index))
}

/// One horizon's analogs: the states with a known outcome `h` hours later.
pub(crate) struct HorizonModel {
    pub horizon: Horizon,
    /// Issue times of the entries, ascending.
    pub times: Vec<i64>,
    /// Row-major states, `times.len() × dim`.
    pub states: Vec<f32>,
    /// `targets[v][id]`: variable `v` at `times[id] + h`.
    pub targets: [Vec<f32>; NVARS],
    /// `current[v][id]`: variable `v` at `times[id]` (for delta members).
    pub current: [Vec<f32>; NVARS],
    pub seed: Box<dyn SeedSearch>,
    pub anen: AnEnIndex,
}

impl HorizonModel {
    pub(crate) fn new(
        horizon: Horizon,
        dim: usize,
        blocks: &[super::anen::Block],
        times: Vec<i64>,
        states: Vec<f32>,
        targets: [Vec<f32>; NVARS],
        current: [Vec<f32>; NVARS],
    ) -> Result<Self, ForecastError> {
        let seed = seed_backend(dim, &states)?;
        let anen = AnEnIndex::new(dim, blocks, &states).map_err(|e| ForecastError::Corrupt {
            file: format!("{horizon} analogs"),
            message: e.to_string(),
        })?;
        Ok(HorizonModel {
            horizon,
            times,
            states,
            targets,
            current,
            seed,
            anen,
        })
    }

    fn len(&self) -> usize {
        self.times.len()
    }
}

/// One station: its observations and an analog set per horizon.
pub(crate) struct StationModel {
    pub series: StationSeries,
    /// Per [`Horizon::ALL`].
    pub horizons: Vec<HorizonModel>,
    /// First and last hour with a state.
    pub issue_range: Option<(i64, i64)>,
}

/// A built (or loaded) analog-ensemble model. `Send + Sync`: forecasts take `&self`.
pub struct ForecastModel {
    pub(crate) options: BuildOptions,
    pub(crate) standardization: Standardization,
    pub(crate) stations: Vec<StationModel>,
    pub(crate) version: String,
}

impl std::fmt::Debug for ForecastModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastModel")
            .field("stations", &self.stations())
            .field("options", &self.options)
            .field("version", &self.version)
            .finish()
    }
}

/// One forecast request.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRequest {
    /// Station code.
    pub station: String,
    /// Issue time (unix seconds, on the hour); `None` is the station's latest state.
    pub at: Option<i64>,
    /// How far ahead.
    pub horizon: Horizon,
    /// Which variables to report (at least one).
    pub vars: Vec<Variable>,
    /// Ensemble size (1..=[`MAX_K`]).
    pub k: usize,
    /// How analogs are found.
    pub similarity: Similarity,
}

/// A forecast: per variable the ensemble and its statistics, plus the analogs used. Values are
/// rounded to 3 decimals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Station code.
    pub station: String,
    /// Issue time, RFC 3339.
    pub issued_at: String,
    /// Issue time plus the horizon, RFC 3339.
    pub valid_at: String,
    /// `6h`, `12h`, `24h` or `48h`.
    pub horizon: String,
    /// Ensemble size used (fewer than requested only if the model holds fewer analogs).
    pub k: usize,
    /// `seed` or `anen`.
    pub similarity: String,
    /// How analogs became members: `absolute` or `delta`.
    pub member_kind: String,
    /// One entry per requested variable, in request order.
    pub variables: Vec<VariableForecast>,
    /// The analogs, nearest first.
    pub analogs: Vec<AnalogRef>,
}

/// One variable's ensemble.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariableForecast {
    /// Variable name.
    pub name: String,
    /// Unit of every value below.
    pub unit: String,
    /// Ensemble mean.
    pub mean: f64,
    /// Ensemble median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Sample standard deviation of the members.
    pub spread: f64,
    /// Members, in analog order.
    pub members: Vec<f64>,
    /// The value observed at `valid_at`, when the data holds it.
    pub observed: Option<f64>,
}

/// One analog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalogRef {
    /// The analog's time (its state's last hour), RFC 3339.
    pub time: String,
    /// Distance to the request's state under the chosen similarity (Euclidean for `seed`).
    pub distance: f64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl ForecastModel {
    /// Builds a model from parsed station data, using every hour for standardisation and
    /// analogs. `progress(done, total)` is called after each station and horizon.
    ///
    /// # Errors
    /// [`ForecastError::InvalidOption`] for bad options.
    pub fn build(
        data: &Dataset,
        options: &BuildOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ForecastModel, ForecastError> {
        Self::build_from_series(data.stations.clone(), options, progress)
    }

    /// [`build`](Self::build) from station series.
    pub(crate) fn build_from_series(
        series: Vec<StationSeries>,
        options: &BuildOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ForecastModel, ForecastError> {
        options.check()?;
        let standardization = Standardization::fit(&series);
        let shape = options.shape();
        let dim = shape.dim();
        let blocks = shape.blocks(&options.predictor_weights);
        let total = series.len() * Horizon::ALL.len();
        let mut done = 0;
        let mut stations = Vec::with_capacity(series.len());
        for s in series {
            // Every hour's state once; `None` where the window has a gap.
            let mut all = vec![0.0f32; s.len() * dim];
            let mut valid = vec![false; s.len()];
            for (i, ok) in valid.iter_mut().enumerate() {
                *ok = shape
                    .state(&s, &standardization, i, &mut all[i * dim..(i + 1) * dim])
                    .is_ok();
            }
            let first = valid.iter().position(|v| *v);
            let last = valid.iter().rposition(|v| *v);
            let issue_range = first.zip(last).map(|(a, b)| (s.time(a), s.time(b)));
            let mut horizons = Vec::with_capacity(Horizon::ALL.len());
            for horizon in Horizon::ALL {
                let h = horizon.hours() as usize;
                let mut times = Vec::new();
                let mut states = Vec::new();
                let mut targets: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
                let mut current: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
                for i in (0..s.len().saturating_sub(h)).filter(|i| valid[*i]) {
                    let outcome: [f32; NVARS] = std::array::from_fn(|v| s.columns[v][i + h]);
                    if outcome.iter().any(|x| !x.is_finite()) {
                        continue;
                    }
                    times.push(s.time(i));
                    states.extend_from_slice(&all[i * dim..(i + 1) * dim]);
                    for v in 0..NVARS {
                        targets[v].push(outcome[v]);
                        current[v].push(s.columns[v][i]);
                    }
                }
                horizons.push(HorizonModel::new(
                    horizon, dim, &blocks, times, states, targets, current,
                )?);
                done += 1;
                progress(done, total);
            }
            stations.push(StationModel {
                series: s,
                horizons,
                issue_range,
            });
        }
        let mut model = ForecastModel {
            options: options.clone(),
            standardization,
            stations,
            version: String::new(),
        };
        model.version = model.content_version();
        Ok(model)
    }

    /// A version string that changes whenever the model's content does: FNV-1a over the options,
    /// the standardisation and every station's observations (everything else derives from them).
    pub(crate) fn content_version(&self) -> String {
        let mut hash = Fnv::new();
        hash.bytes(
            serde_json::to_string(&(&self.options, &self.standardization))
                .unwrap_or_default()
                .as_bytes(),
        );
        for s in &self.stations {
            hash.bytes(s.series.station.as_bytes());
            hash.bytes(&s.series.start.to_le_bytes());
            for column in &s.series.columns {
                for x in column {
                    hash.bytes(&x.to_bits().to_le_bytes());
                }
            }
        }
        format!("anen-{:016x}", hash.0)
    }

    /// Station codes, sorted.
    pub fn stations(&self) -> Vec<&str> {
        self.stations
            .iter()
            .map(|s| s.series.station.as_str())
            .collect()
    }

    /// First and last issue time (unix seconds) with a state at this station.
    pub fn issue_range(&self, station: &str) -> Option<(i64, i64)> {
        self.station(station).ok()?.issue_range
    }

    /// The largest `k` a request may use.
    pub fn max_k(&self) -> usize {
        MAX_K
    }

    /// Changes whenever the model's content changes (e.g. a rebuild on other data).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The options the model was built with.
    pub fn options(&self) -> &BuildOptions {
        &self.options
    }

    /// The training standardisation.
    pub fn standardization(&self) -> &Standardization {
        &self.standardization
    }

    /// Number of analogs per station and horizon.
    pub fn analog_counts(&self) -> Vec<(String, Horizon, usize)> {
        self.stations
            .iter()
            .flat_map(|s| {
                s.horizons
                    .iter()
                    .map(|h| (s.series.station.clone(), h.horizon, h.len()))
            })
            .collect()
    }

    pub(crate) fn station(&self, code: &str) -> Result<&StationModel, ForecastError> {
        self.stations
            .iter()
            .find(|s| s.series.station == code)
            .ok_or_else(|| ForecastError::UnknownStation {
                station: code.to_owned(),
                known: self
                    .stations()
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            })
    }

    /// The state vector of `station` at grid hour `i`, with the model's standardisation.
    pub(crate) fn state_at(
        &self,
        series: &StationSeries,
        i: usize,
    ) -> Result<Vec<f32>, Option<(Variable, usize)>> {
        let shape = self.options.shape();
        let mut out = vec![0.0; shape.dim()];
        shape.state(series, &self.standardization, i, &mut out)?;
        Ok(out)
    }

    /// The `k` nearest analogs (id, distance), skipping ids in `exclude`.
    pub(crate) fn neighbors(
        &self,
        hm: &HorizonModel,
        query: &[f32],
        k: usize,
        similarity: Similarity,
        exclude: Range<usize>,
    ) -> Result<Vec<(usize, f64)>, ForecastError> {
        let skip = exclude.len();
        Ok(match similarity {
            Similarity::Seed => {
                // Asking for `skip` more than needed and dropping the excluded ones is exact:
                // at most `skip` of the results can be excluded.
                hm.seed
                    .search(query, k + skip)?
                    .into_iter()
                    .map(|n| (n.id as usize, f64::from(n.score.max(0.0)).sqrt()))
                    .filter(|(id, _)| !exclude.contains(id))
                    .take(k)
                    .collect()
            }
            Similarity::AnEn => hm
                .anen
                .search(query, k, |id| !exclude.contains(&(id as usize)))
                .into_iter()
                .map(|n| (n.id as usize, f64::from(n.score)))
                .collect(),
        })
    }

    /// The member for analog `id`, given the current value `now` at the issue time.
    pub(crate) fn member(&self, hm: &HorizonModel, id: usize, v: Variable, now: f32) -> f64 {
        let target = f64::from(hm.targets[v.index()][id]);
        match self.options.members {
            Members::Absolute => target,
            Members::Delta => {
                v.clamp(f64::from(now) + target - f64::from(hm.current[v.index()][id]))
            }
        }
    }

    /// Forecasts for one request.
    ///
    /// Analogs whose window or outcome shares an hour with the request's (within `window + h`
    /// hours of the issue time) are not used, so a forecast for a past hour never sees its own
    /// outcome.
    ///
    /// # Errors
    /// [`ForecastError::UnknownStation`], [`ForecastError::NoVariables`],
    /// [`ForecastError::KOutOfRange`], [`ForecastError::NoState`] (outside the data, a gap in
    /// the window, not on the hour), [`ForecastError::NoAnalogs`].
    pub fn forecast(&self, req: &ForecastRequest) -> Result<Forecast, ForecastError> {
        let station = self.station(&req.station)?;
        if req.vars.is_empty() {
            return Err(ForecastError::NoVariables);
        }
        if req.k == 0 || req.k > MAX_K {
            return Err(ForecastError::KOutOfRange {
                k: req.k,
                max: MAX_K,
            });
        }
        let series = &station.series;
        let at = match req.at {
            Some(t) => t,
            None => match station.issue_range {
                Some((_, last)) => last,
                None => {
                    return Err(ForecastError::NoState {
                        at: "latest".to_owned(),
                        reason: NoStateReason::Gap,
                        detail: format!("station {} has no complete window", series.station),
                    })
                }
            },
        };
        let no_state = |reason, detail: String| ForecastError::NoState {
            at: format_time(at),
            reason,
            detail,
        };
        if at % 3600 != 0 {
            return Err(no_state(
                NoStateReason::NotOnTheHour,
                "issue times are whole hours".to_owned(),
            ));
        }
        let range = station.issue_range.map_or_else(
            || "no complete window".to_owned(),
            |(a, b)| format!("{} to {}", format_time(a), format_time(b)),
        );
        let Some(i) = series.index_of(at) else {
            return Err(no_state(
                NoStateReason::OutsideData,
                format!("outside the data ({} has states {range})", series.station),
            ));
        };
        let query = self.state_at(series, i).map_err(|missing| match missing {
            Some((v, j)) => no_state(
                NoStateReason::Gap,
                format!(
                    "{v} is missing at {} (a gap in the {}-hour window)",
                    format_time(series.time(j)),
                    self.options.window
                ),
            ),
            None => no_state(
                NoStateReason::OutsideData,
                format!("outside the data ({} has states {range})", series.station),
            ),
        })?;
        let hm = &station.horizons[req.horizon.index()];
        let guard = (self.options.window as i64 + i64::from(req.horizon.hours())) * 3600;
        let lo = hm.times.partition_point(|t| *t <= at - guard);
        let hi = hm.times.partition_point(|t| *t < at + guard);
        let neighbors = self.neighbors(hm, &query, req.k, req.similarity, lo..hi)?;
        if neighbors.is_empty() {
            return Err(ForecastError::NoAnalogs {
                station: series.station.clone(),
                horizon: req.horizon,
            });
        }
        let valid = at + req.horizon.seconds();
        let variables = req
            .vars
            .iter()
            .map(|&v| {
                let now = series.value(v, i);
                let members: Vec<f64> = neighbors
                    .iter()
                    .map(|(id, _)| self.member(hm, *id, v, now))
                    .collect();
                let observed = series
                    .index_of(valid)
                    .map(|j| series.value(v, j))
                    .filter(|x| x.is_finite())
                    .map(|x| round3(f64::from(x)));
                // Members are finite (stored targets are), so the stats exist.
                let stats = ensemble_stats(&members).unwrap_or(super::EnsembleStats {
                    mean: f64::NAN,
                    median: f64::NAN,
                    p10: f64::NAN,
                    p90: f64::NAN,
                    spread: f64::NAN,
                });
                VariableForecast {
                    name: v.name().to_owned(),
                    unit: v.unit().to_owned(),
                    mean: round3(stats.mean),
                    median: round3(stats.median),
                    p10: round3(stats.p10),
                    p90: round3(stats.p90),
                    spread: round3(stats.spread),
                    members: members.into_iter().map(round3).collect(),
                    observed,
                }
            })
            .collect();
        Ok(Forecast {
            station: series.station.clone(),
            issued_at: format_time(at),
            valid_at: format_time(valid),
            horizon: req.horizon.to_string(),
            k: neighbors.len(),
            similarity: req.similarity.to_string(),
            member_kind: self.options.members.name().to_owned(),
            variables,
            analogs: neighbors
                .iter()
                .map(|(id, d)| AnalogRef {
                    time: format_time(hm.times[*id]),
                    distance: (d * 10_000.0).round() / 10_000.0,
                })
                .collect(),
        })
    }
}

/// 64-bit FNV-1a: a content fingerprint, not a security hash.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
