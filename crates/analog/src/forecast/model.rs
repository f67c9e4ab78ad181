//! The forecast model: per station, the series, the states (one copy) and per horizon the
//! ids of the states that are analogs for it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::anen::{AnEnIndex, TILE};
use super::data::SeriesView;
use super::ensemble::ensemble_stats;
use super::index::{build_station_ivfpq, training_seed, HorizonIndex};
use super::state::{Standardization, StateShape};
use super::{
    format_time, Dataset, ForecastError, Horizon, IndexChoice, IndexInfo, IndexPlan, IndexRequest,
    IvfPqSettings, Members, NoStateReason, Similarity, StationSeries, Variable, NVARS,
};
use crate::storage::Section;
use crate::IvfPqIndex;

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
    /// Which index serves each horizon ([`IndexPlan::resolve`] per station and horizon).
    #[serde(default)]
    pub index: IndexPlan,
    /// Bytes the model may keep resident ([`ForecastModel::resident_bytes`]): `auto` horizons
    /// switch to IVF-PQ with re-ranking, stations with the most states first, until the
    /// estimate fits. `None`: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            window: 3,
            hour_weight: 10.0,
            season_weight: 1.0,
            predictor_weights: [1.0; NVARS],
            members: Members::Delta,
            index: IndexPlan::default(),
            memory_budget: None,
        }
    }
}

impl BuildOptions {
    pub(crate) fn check(&self) -> Result<(), ForecastError> {
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

/// A station's hourly observations as the model holds them: owned after a build, borrowed
/// from the memory-mapped series file after a load.
pub(crate) struct StoredSeries {
    /// Unix seconds of the first hour of the grid.
    pub start: i64,
    /// Per [`Variable::ALL`]: the value at each grid hour (NaN = gap); all the same length.
    pub columns: [Section<f32>; NVARS],
}

impl StoredSeries {
    pub(crate) fn owned(series: StationSeries) -> Self {
        let StationSeries { start, columns, .. } = series;
        StoredSeries {
            start,
            columns: columns.map(Section::owned),
        }
    }

    pub(crate) fn view(&self) -> SeriesView<'_> {
        SeriesView {
            start: self.start,
            columns: std::array::from_fn(|v| self.columns[v].as_slice()),
        }
    }
}

/// A station's states: every grid hour whose window is complete, once, in AnEn's transposed
/// tile layout (the one copy every horizon and both similarities search).
pub(crate) struct StationStates {
    /// Number of states. A state's id is its position.
    pub len: usize,
    /// Grid hour of each state, ascending.
    pub hours: Section<u32>,
    /// The states' tiles (owned, or read in place from the states file) with the AnEn blocks.
    pub anen: AnEnIndex,
}

/// One horizon's analogs: the states whose outcome `h` hours later is observed.
pub(crate) struct HorizonModel {
    pub horizon: Horizon,
    /// State ids, ascending.
    pub ids: Section<u32>,
    /// How the analogs are searched.
    pub choice: IndexChoice,
    /// The IVF-PQ index over the horizon's states (its ids are positions in `ids`) when the
    /// choice is IVF-PQ.
    pub ivfpq: Option<IvfPqIndex>,
}

impl HorizonModel {
    pub(crate) fn len(&self) -> usize {
        self.ids.as_slice().len()
    }
}

/// One station: its observations, its states and an analog set per horizon.
pub(crate) struct StationModel {
    pub code: String,
    pub series: StoredSeries,
    pub states: StationStates,
    /// Per [`Horizon::ALL`].
    pub horizons: Vec<HorizonModel>,
}

impl StationModel {
    /// The index of each horizon, in [`Horizon::ALL`] order.
    pub(crate) fn choices(&self) -> [IndexChoice; 4] {
        std::array::from_fn(|h| {
            self.horizons
                .get(h)
                .map_or(IndexChoice::Flat, |hm| hm.choice)
        })
    }

    /// Bytes a search of `hm` reads: the station's tiles for flat, the index for IVF-PQ.
    pub(crate) fn index_bytes(&self, hm: &HorizonModel, dim: usize) -> u64 {
        match (&hm.ivfpq, hm.choice.ivfpq()) {
            (Some(index), _) => index.search_bytes(),
            (None, Some(settings)) => ivfpq_bytes_estimate(settings, hm.len(), dim),
            (None, None) => (self.states.anen.tiles().len() * 4) as u64,
        }
    }

    /// See [`ForecastModel::resident_bytes`].
    pub(crate) fn resident_bytes(&self, dim: usize) -> u64 {
        let series = self.series.view();
        let mut total = (series.len() * NVARS * 4) as u64;
        if self
            .horizons
            .iter()
            .any(|hm| hm.choice == IndexChoice::Flat)
        {
            total += (self.states.anen.tiles().len() * 4) as u64;
        }
        for hm in &self.horizons {
            total += match hm.choice {
                IndexChoice::Flat => (hm.len() * 4) as u64,
                _ => self.index_bytes(hm, dim),
            };
        }
        total
    }

    /// First and last issue time with a state.
    pub(crate) fn issue_range(&self) -> Option<(i64, i64)> {
        let hours = self.states.hours.as_slice();
        let view = self.series.view();
        Some((
            view.time(*hours.first()? as usize),
            view.time(*hours.last()? as usize),
        ))
    }

    /// Builds one station's states and analog ids (pure; the series is kept).
    pub(crate) fn build(
        series: StationSeries,
        shape: StateShape,
        standardization: &Standardization,
        weights: &[f32; NVARS],
        choices: [IndexChoice; 4],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<StationModel, ForecastError> {
        let view = series.view();
        let dim = shape.dim();
        let has_ivfpq = choices.iter().any(|c| c.ivfpq().is_some());
        let total = 1 + Horizon::ALL.len() + usize::from(has_ivfpq);
        let too_long = || ForecastError::InvalidOption {
            field: "data",
            message: format!(
                "station {}: {} hours do not fit the model's 32-bit hour index",
                series.station,
                view.len()
            ),
        };
        u32::try_from(view.len()).map_err(|_| too_long())?;
        let mut hours: Vec<u32> = Vec::new();
        let mut tiles: Vec<f32> = Vec::new();
        let mut state = vec![0.0f32; dim];
        for i in 0..view.len() {
            if shape.state(view, standardization, i, &mut state).is_err() {
                continue;
            }
            let id = hours.len();
            if id.is_multiple_of(TILE) {
                tiles.resize(tiles.len() + dim * TILE, 0.0);
            }
            let tile = &mut tiles[(id / TILE) * dim * TILE..][..dim * TILE];
            for (j, &x) in state.iter().enumerate() {
                tile[j * TILE + id % TILE] = x;
            }
            // i < view.len(), which fits a u32 (checked above).
            hours.push(i as u32);
        }
        progress(1, total);
        let mut horizons = Vec::with_capacity(Horizon::ALL.len());
        for (done, horizon) in Horizon::ALL.into_iter().enumerate() {
            let h = horizon.hours() as usize;
            let ids: Vec<u32> = (0..hours.len())
                .filter(|&id| {
                    let j = hours[id] as usize + h;
                    Variable::ALL.iter().all(|&v| view.value(v, j).is_finite())
                })
                // Ids are positions in `hours`, whose length is at most the grid's (a u32).
                .map(|id| id as u32)
                .collect();
            horizons.push(HorizonModel {
                horizon,
                ids: Section::owned(ids),
                choice: choices[horizon.index()],
                ivfpq: None,
            });
            progress(done + 2, total);
        }
        let len = hours.len();
        let anen = AnEnIndex::from_tiles(dim, len, &shape.blocks(weights), tiles).map_err(|e| {
            ForecastError::InvalidOption {
                field: "data",
                message: format!("station {}: {e}", series.station),
            }
        })?;
        if has_ivfpq {
            // One training (and one encoding) per distinct setting, shared by the horizons.
            let wanted: Vec<(usize, IvfPqSettings)> = horizons
                .iter()
                .enumerate()
                .filter_map(|(h, hm)| hm.choice.ivfpq().map(|s| (h, s)))
                .collect();
            let entries: Vec<(&[u32], IvfPqSettings)> = wanted
                .iter()
                .map(|(h, s)| (horizons[*h].ids.as_slice(), *s))
                .collect();
            let built = build_station_ivfpq(&anen, &entries, training_seed(&series.station))
                .map_err(|e| ForecastError::InvalidOption {
                    field: "index",
                    message: format!("station {}: {e}", series.station),
                })?;
            for ((h, _), index) in wanted.iter().zip(built) {
                horizons[*h].ivfpq = Some(index);
            }
            progress(total, total);
        }
        Ok(StationModel {
            code: series.station.clone(),
            series: StoredSeries::owned(series),
            states: StationStates {
                len,
                hours: Section::owned(hours),
                anen,
            },
            horizons,
        })
    }
}

/// A built (or loaded) analog-ensemble model. `Send + Sync`: forecasts take `&self`.
///
/// A loaded model reads its series, states and analog ids in place from the memory maps it
/// was loaded from (it keeps them alive); a built one owns them.
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

/// What a build decides before its first station: the options, the standardisation (fitted
/// on every station), the index of every station and horizon, and the content version.
/// Stations are then built one at a time ([`ModelPlan::build_station`]), so a build never
/// holds more than the stations in flight, and the manifest ([`ModelPlan::manifest`]) is
/// written last.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    pub(crate) options: BuildOptions,
    pub(crate) standardization: Standardization,
    pub(crate) version: String,
    pub(crate) stations: Vec<PlannedStation>,
}

/// One station of a [`ModelPlan`].
#[derive(Debug, Clone)]
pub(crate) struct PlannedStation {
    pub code: String,
    /// Per [`Horizon::ALL`].
    pub choices: [IndexChoice; 4],
}

impl ModelPlan {
    /// Checks the options, fits the standardisation over every station, resolves each
    /// station's and horizon's index (within the memory budget, if any) and computes the
    /// content version.
    ///
    /// # Errors
    /// [`ForecastError::InvalidOption`] for bad options, or a memory budget that even IVF-PQ
    /// on every `auto` horizon cannot meet.
    pub fn new(
        stations: &[StationSeries],
        options: &BuildOptions,
    ) -> Result<ModelPlan, ForecastError> {
        options.check()?;
        let standardization = Standardization::fit(stations);
        let counts: Vec<[usize; 4]> = stations
            .iter()
            .map(|s| analog_counts(s.view(), options.window))
            .collect();
        let states: Vec<usize> = stations
            .iter()
            .map(|s| state_count(s.view(), options.window))
            .collect();
        let mut choices: Vec<[IndexChoice; 4]> = counts
            .iter()
            .map(|c| std::array::from_fn(|h| options.index.resolve(Horizon::ALL[h], c[h])))
            .collect();
        if let Some(budget) = options.memory_budget {
            fit_budget(budget, options, stations, &states, &counts, &mut choices)?;
        }
        let version = content_version(
            options,
            &standardization,
            stations
                .iter()
                .zip(&choices)
                .map(|(s, c)| (s.station.as_str(), s.view(), *c)),
        );
        Ok(ModelPlan {
            options: options.clone(),
            standardization,
            version,
            stations: stations
                .iter()
                .zip(choices)
                .map(|(s, choices)| PlannedStation {
                    code: s.station.clone(),
                    choices,
                })
                .collect(),
        })
    }

    /// The content version the model will have ([`ForecastModel::version`]).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The index resolved for each station and horizon: `(station, horizon, choice)`.
    pub fn choices(&self) -> Vec<(String, Horizon, IndexChoice)> {
        self.stations
            .iter()
            .flat_map(|s| {
                Horizon::ALL
                    .iter()
                    .zip(s.choices)
                    .map(|(h, c)| (s.code.clone(), *h, c))
            })
            .collect()
    }

    /// Builds one station in memory. `progress(done, total)` is called per step.
    pub(crate) fn station_model(
        &self,
        series: StationSeries,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<StationModel, ForecastError> {
        let planned = self
            .stations
            .iter()
            .find(|p| p.code == series.station)
            .ok_or_else(|| ForecastError::InvalidOption {
                field: "station",
                message: format!("{} is not one of the planned stations", series.station),
            })?;
        StationModel::build(
            series,
            self.options.shape(),
            &self.standardization,
            &self.options.predictor_weights,
            planned.choices,
            progress,
        )
    }
}

/// Hours with a complete window (the states a build makes).
fn state_count(series: SeriesView<'_>, window: usize) -> usize {
    complete_windows(series, window).filter(|ok| *ok).count()
}

/// Whether each grid hour's window is complete, computed from the observations alone.
fn complete_windows(series: SeriesView<'_>, window: usize) -> impl Iterator<Item = bool> + '_ {
    let mut run = 0usize;
    (0..series.len()).map(move |i| {
        let observed = Variable::ALL
            .iter()
            .all(|&v| series.value(v, i).is_finite());
        run = if observed { run + 1 } else { 0 };
        run >= window
    })
}

/// Analogs per horizon (states whose outcome `h` later is observed), without building them.
fn analog_counts(series: SeriesView<'_>, window: usize) -> [usize; 4] {
    let mut counts = [0; 4];
    for (i, complete) in complete_windows(series, window).enumerate() {
        if !complete {
            continue;
        }
        for (count, horizon) in counts.iter_mut().zip(Horizon::ALL) {
            let j = i + horizon.hours() as usize;
            if Variable::ALL
                .iter()
                .all(|&v| series.value(v, j).is_finite())
            {
                *count += 1;
            }
        }
    }
    counts
}

/// Bytes of a station's state tiles.
pub(crate) fn tile_bytes(states: usize, dim: usize) -> u64 {
    (states.div_ceil(TILE) * TILE * dim * std::mem::size_of::<f32>()) as u64
}

/// Bytes an IVF-PQ index of `settings` over `vectors` vectors reads, estimated before it is
/// trained ([`ivfpq_bytes`]).
pub(crate) fn ivfpq_bytes_estimate(settings: IvfPqSettings, vectors: usize, dim: usize) -> u64 {
    ivfpq_bytes(settings.nlist, settings.m, settings.nbits, vectors, dim)
}

/// Bytes of an IVF-PQ index's search structures: per vector its codes and id; per list an
/// offset, a coarse centroid and the `m` distance tables of 256 entries (Euclidean); the PQ
/// codebook.
fn ivfpq_bytes(nlist: usize, m: usize, nbits: u32, vectors: usize, dim: usize) -> u64 {
    let code_bytes = (nbits as usize).div_ceil(8);
    let ksub = 1usize.checked_shl(nbits).unwrap_or(0);
    (vectors * (m * code_bytes + 4) + nlist * (8 + dim * 4 + m * 256 * 4) + ksub * dim * 4) as u64
}

/// The resident bytes of a model with these choices ([`ForecastModel::resident_bytes`]),
/// estimated before the build.
fn resident_estimate(
    dim: usize,
    stations: &[StationSeries],
    states: &[usize],
    counts: &[[usize; 4]],
    choices: &[[IndexChoice; 4]],
) -> u64 {
    let mut total = 0u64;
    for (((s, &n), c), ch) in stations.iter().zip(states).zip(counts).zip(choices) {
        total += (s.len() * NVARS * 4) as u64;
        if ch.contains(&IndexChoice::Flat) {
            total += tile_bytes(n, dim);
        }
        for (h, x) in ch.iter().enumerate() {
            total += match x.ivfpq() {
                None => (c[h] * 4) as u64,
                Some(settings) => ivfpq_bytes_estimate(settings, c[h], dim),
            };
        }
    }
    total
}

/// Switches `auto` horizons to IVF-PQ with re-ranking, the station with the most states first
/// and all its `auto` horizons at once (a station's tiles leave the resident set only when none
/// of its horizons is flat), until the estimate fits `budget`.
fn fit_budget(
    budget: u64,
    options: &BuildOptions,
    stations: &[StationSeries],
    states: &[usize],
    counts: &[[usize; 4]],
    choices: &mut [[IndexChoice; 4]],
) -> Result<(), ForecastError> {
    let dim = options.shape().dim();
    let mut order: Vec<usize> = (0..stations.len()).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(states[s]));
    let mut order = order.into_iter();
    loop {
        let estimate = resident_estimate(dim, stations, states, counts, choices);
        if estimate <= budget {
            return Ok(());
        }
        let switched = order.by_ref().find_map(|s| {
            let mut any = false;
            for (h, horizon) in Horizon::ALL.into_iter().enumerate() {
                if options.index.request(horizon) == IndexRequest::Auto
                    && choices[s][h] == IndexChoice::Flat
                {
                    let choice = IndexRequest::IvfpqRerank.resolve(horizon, counts[s][h]);
                    any |= choice != IndexChoice::Flat;
                    choices[s][h] = choice;
                }
            }
            any.then_some(())
        });
        if switched.is_none() {
            return Err(ForecastError::InvalidOption {
                field: "memory_budget",
                message: format!(
                    "the model needs about {estimate} bytes resident even with IVF-PQ on every \
                     `auto` horizon large enough to train, more than the budget of {budget} \
                     bytes; raise the budget or ask for IVF-PQ on more horizons (--index)"
                ),
            });
        }
    }
}

/// FNV-1a over the options, the standardisation, every station's observations and index
/// choices (everything else derives from them).
pub(crate) fn content_version<'a>(
    options: &BuildOptions,
    standardization: &Standardization,
    stations: impl Iterator<Item = (&'a str, SeriesView<'a>, [IndexChoice; 4])>,
) -> String {
    let mut hash = Fnv::new();
    hash.bytes(
        serde_json::to_string(&(options, standardization))
            .unwrap_or_default()
            .as_bytes(),
    );
    for (code, series, choices) in stations {
        hash.bytes(code.as_bytes());
        hash.bytes(
            serde_json::to_string(&choices)
                .unwrap_or_default()
                .as_bytes(),
        );
        hash.bytes(&series.start.to_le_bytes());
        for column in series.columns {
            for x in column {
                hash.bytes(&x.to_bits().to_le_bytes());
            }
        }
    }
    format!("anen-{:016x}", hash.0)
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
    /// analogs. `progress(done, total)` is called after each step of each station.
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
        let plan = ModelPlan::new(&series, options)?;
        let count = series.len();
        let mut stations = Vec::with_capacity(count);
        for (si, s) in series.into_iter().enumerate() {
            stations.push(plan.station_model(s, &mut |done, total| {
                progress(si * total + done, count * total);
            })?);
        }
        Ok(ForecastModel {
            options: plan.options,
            standardization: plan.standardization,
            stations,
            version: plan.version,
        })
    }

    /// The content version recomputed from the model's observations.
    pub(crate) fn content_version(&self) -> String {
        content_version(
            &self.options,
            &self.standardization,
            self.stations
                .iter()
                .map(|s| (s.code.as_str(), s.series.view(), s.choices())),
        )
    }

    /// Station codes, sorted.
    pub fn stations(&self) -> Vec<&str> {
        self.stations.iter().map(|s| s.code.as_str()).collect()
    }

    /// First and last issue time (unix seconds) with a state at this station.
    pub fn issue_range(&self, station: &str) -> Option<(i64, i64)> {
        self.station(station).ok()?.issue_range()
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
                    .map(|h| (s.code.clone(), h.horizon, h.len()))
            })
            .collect()
    }

    /// Every station's and horizon's index, as the catalogue and diagnostics report them.
    pub fn indexes(&self) -> Vec<IndexInfo> {
        let dim = self.options.shape().dim();
        self.stations
            .iter()
            .flat_map(|s| {
                s.horizons.iter().map(move |hm| {
                    IndexInfo::new(
                        s.code.clone(),
                        hm.horizon,
                        hm.choice,
                        hm.len(),
                        dim,
                        s.index_bytes(hm, dim),
                    )
                })
            })
            .collect()
    }

    /// Bytes that searches read in full, so that serving fast needs them in memory: every
    /// station's series (the query window, members and observations are read from it), the
    /// state tiles and horizon ids of stations with a flat horizon, and the IVF-PQ structures
    /// (codes, lists, quantizers). Re-ranking reads only a shortlist of tiles per search, so a
    /// station whose horizons are all IVF-PQ does not count its tiles.
    pub fn resident_bytes(&self) -> u64 {
        let dim = self.options.shape().dim();
        self.stations.iter().map(|s| s.resident_bytes(dim)).sum()
    }

    pub(crate) fn station(&self, code: &str) -> Result<&StationModel, ForecastError> {
        self.stations
            .iter()
            .find(|s| s.code == code)
            .ok_or_else(|| ForecastError::UnknownStation {
                station: code.to_owned(),
                known: self
                    .stations()
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            })
    }

    /// The state vector of a series at grid hour `i`, with the model's standardisation.
    pub(crate) fn state_at(
        &self,
        series: SeriesView<'_>,
        i: usize,
    ) -> Result<Vec<f32>, Option<(Variable, usize)>> {
        let shape = self.options.shape();
        let mut out = vec![0.0; shape.dim()];
        shape.state(series, &self.standardization, i, &mut out)?;
        Ok(out)
    }

    /// The `k` nearest analogs of `horizon` at `station` as (state id, distance), skipping
    /// state ids in `exclude`.
    pub(crate) fn neighbors(
        &self,
        station: &StationModel,
        horizon: Horizon,
        query: &[f32],
        k: usize,
        similarity: Similarity,
        exclude: Range<u32>,
    ) -> Result<Vec<(u32, f64)>, ForecastError> {
        let hm = &station.horizons[horizon.index()];
        let index = HorizonIndex {
            states: &station.states.anen,
            ids: hm.ids.as_slice(),
            choice: hm.choice,
            ivfpq: hm.ivfpq.as_ref(),
        };
        Ok(index
            .search(query, k, similarity, exclude)
            .map_err(|e| ForecastError::Corrupt {
                file: format!("{} {horizon} index", station.code),
                message: e.to_string(),
            })?
            .into_iter()
            // State ids come from u32 ids.
            .map(|(id, d)| (id as u32, d))
            .collect())
    }

    /// The member of variable `v` for the analog with state id `id`, given the current value
    /// `now` at the issue time: read from the series at the analog's hour and `h` later.
    pub(crate) fn member(
        &self,
        station: &StationModel,
        horizon: Horizon,
        id: u32,
        v: Variable,
        now: f32,
    ) -> f64 {
        let series = station.series.view();
        // Ids come from the model's horizon ids, which are valid state ids (checked at load).
        let Some(&hour) = station.states.hours.as_slice().get(id as usize) else {
            return f64::NAN;
        };
        let hour = hour as usize;
        let target = f64::from(series.value(v, hour + horizon.hours() as usize));
        match self.options.members {
            Members::Absolute => target,
            Members::Delta => v.clamp(f64::from(now) + target - f64::from(series.value(v, hour))),
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
        let series = station.series.view();
        let issue_range = station.issue_range();
        let at = match req.at {
            Some(t) => t,
            None => match issue_range {
                Some((_, last)) => last,
                None => {
                    return Err(ForecastError::NoState {
                        at: "latest".to_owned(),
                        reason: NoStateReason::Gap,
                        detail: format!("station {} has no complete window", station.code),
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
        let range = issue_range.map_or_else(
            || "no complete window".to_owned(),
            |(a, b)| format!("{} to {}", format_time(a), format_time(b)),
        );
        let Some(i) = series.index_of(at) else {
            return Err(no_state(
                NoStateReason::OutsideData,
                format!("outside the data ({} has states {range})", station.code),
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
                format!("outside the data ({} has states {range})", station.code),
            ),
        })?;
        // Analogs whose hour is within `window + h` hours of the issue hour: a contiguous run
        // of state ids, since state hours ascend.
        let guard = self.options.window + req.horizon.hours() as usize;
        let hours = station.states.hours.as_slice();
        let lo = hours.partition_point(|&t| (t as usize) + guard <= i);
        let hi = hours.partition_point(|&t| (t as usize) < i + guard);
        // Both are at most the number of states, which fits a u32.
        let exclude = lo as u32..hi as u32;
        let neighbors =
            self.neighbors(station, req.horizon, &query, req.k, req.similarity, exclude)?;
        if neighbors.is_empty() {
            return Err(ForecastError::NoAnalogs {
                station: station.code.clone(),
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
                    .map(|(id, _)| self.member(station, req.horizon, *id, v, now))
                    .collect();
                let observed = series
                    .index_of(valid)
                    .map(|j| series.value(v, j))
                    .filter(|x| x.is_finite())
                    .map(|x| round3(f64::from(x)));
                // Members are finite (analogs have an observed outcome), so the stats exist.
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
            station: station.code.clone(),
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
                    time: hours
                        .get(*id as usize)
                        .map_or_else(String::new, |h| format_time(series.time(*h as usize))),
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
