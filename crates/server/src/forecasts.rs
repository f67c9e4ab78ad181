//! Serving analog forecasts: the loaded model, the response cache, start-up warming and the
//! search-latency record behind `/api/v1/forecast/diagnostics`.
//!
//! The model ([`analog::forecast::ForecastModel`]) is immutable and searched from any number of
//! request tasks at once; this module only adds what a server needs around it. Computation is
//! done inline on the request task: a forecast is tens of microseconds of CPU, less than a
//! hand-off to a blocking pool would cost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analog::forecast::{
    Forecast, ForecastError, ForecastModel, ForecastRequest, Horizon, IndexInfo, IndexKind,
    NoStateReason, Similarity, Variable,
};
use bytes::Bytes;
use moka::sync::Cache;
use serde::Serialize;

use crate::forecast_diagnostics::{
    analyse_request, index_advice, search_advice, search_status, SearchStatus, SlowRequestLog,
    SlowRequestSummary, RECENT,
};
use crate::problem::{ApiError, ProblemKind};

/// How forecasts are served.
#[derive(Debug, Clone)]
pub struct ForecastSettings {
    /// How long a computed forecast is served from the cache.
    pub cache_ttl: Duration,
    /// Most forecasts kept in the cache (0 turns the cache off).
    pub cache_capacity: u64,
    /// Searches kept per horizon for the latency statistics.
    pub latency_window: usize,
    /// How often the popular configurations are recomputed in the background (`None`: never).
    /// Only reported here; `serve` runs [`run_forecast_rewarming`] with it.
    pub rewarm_interval: Option<Duration>,
    /// Most bytes the model may need resident (`ForecastModel::resident_bytes`); a larger model
    /// is refused at start. `None`: no limit.
    pub memory_budget: Option<u64>,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        ForecastSettings {
            // Seed 001 caches forecasts for 600 s.
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            latency_window: 10_000,
            rewarm_interval: Some(DEFAULT_REWARM_INTERVAL),
            memory_budget: None,
        }
    }
}

/// Seed 001's re-warming period (`schedule_periodic_warming(interval=300)`).
pub const DEFAULT_REWARM_INTERVAL: Duration = Duration::from_secs(300);

/// The seed's popular configurations, warmed at start for every station.
pub const POPULAR: &[(Horizon, &[Variable])] = &[
    (
        Horizon::H24,
        &[Variable::T2m, Variable::U10, Variable::V10, Variable::Msl],
    ),
    (Horizon::H6, &[Variable::T2m, Variable::U10, Variable::V10]),
    (Horizon::H48, &[Variable::T2m, Variable::Msl]),
    (
        Horizon::H12,
        &[
            Variable::T2m,
            Variable::U10,
            Variable::V10,
            Variable::Msl,
            Variable::Precip,
        ],
    ),
];

/// Seed 001's k modes.
pub(crate) const MODES: &[(&str, usize)] = &[("fast", 5), ("default", 10), ("accurate", 20)];
/// Variables forecast when `vars` is not given (seed 001's `vars="t2m,u10,v10"`).
pub const DEFAULT_VARS: &[Variable] = &[Variable::T2m, Variable::U10, Variable::V10];
/// Horizon forecast when `horizon` is not given (seed 001's `horizon="24h"`).
pub const DEFAULT_HORIZON: Horizon = Horizon::H24;
/// Most horizons one request may ask for (each at most once: there are four).
pub const MAX_HORIZONS: usize = 4;
/// Ensemble size when neither `k` nor `mode` is given.
pub(crate) const DEFAULT_K: usize = 10;

/// A forecast request as text (a query string, the console's picker), so each error can name
/// its parameter precisely. `None` or blank is "not given".
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RequestText<'a> {
    pub station: Option<&'a str>,
    pub horizon: Option<&'a str>,
    pub vars: Option<&'a str>,
    pub k: Option<&'a str>,
    pub mode: Option<&'a str>,
    pub at: Option<&'a str>,
    pub similarity: Option<&'a str>,
}

/// The installed forecast service, or the problem a server without a model answers (501
/// `forecast_model_missing`).
pub(crate) fn service(state: &crate::state::AppState) -> Result<Arc<ForecastService>, ApiError> {
    state.forecasts().ok_or_else(|| {
        // Configuration, not an outage: no Retry-After, and not logged per request (serve
        // warns once at start).
        ApiError::new(
            ProblemKind::ForecastModelMissing,
            "this server was started without a forecast model; build one with `signalbox \
             forecast build` and start the server with `--forecast-index DIR` (or with `--demo \
             true`, which builds the bundled demo data's model)",
        )
    })
}

fn required<'a>(value: Option<&'a str>, parameter: &str) -> Result<&'a str, ApiError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::invalid_parameter(
            parameter,
            format!("query parameter `{parameter}` is required"),
        )),
    }
}

impl ForecastService {
    /// Checks a request given as text and builds one forecast request per horizon, in the
    /// order asked (`horizon=6h,24h`); an error names the parameter (400, or 422 for `k` and
    /// `mode` together). Whether the station exists and `at` has a state is the model's to say
    /// when it answers. This is the one rule for every way a forecast is asked for: the GET
    /// query, each item of a batch and the console's picker.
    pub(crate) fn parse_requests(
        &self,
        q: &RequestText<'_>,
    ) -> Result<Vec<ForecastRequest>, ApiError> {
        // The station first, as a single-horizon request always checked it.
        required(q.station, "station")?;
        // Absent is the default; blank is a bad value, as the documented pattern says.
        let horizons = match q.horizon {
            None => vec![DEFAULT_HORIZON],
            Some(text) => parse_horizons(text)?,
        };
        let first = self.parse_one(q, horizons.first().copied().unwrap_or(DEFAULT_HORIZON))?;
        Ok(horizons
            .iter()
            .map(|&horizon| ForecastRequest {
                horizon,
                ..first.clone()
            })
            .collect())
    }

    /// [`ForecastService::parse_requests`] for a request that must be one forecast (a batch
    /// item, the console): several horizons are 400 naming `horizon`.
    pub(crate) fn parse_request(&self, q: &RequestText<'_>) -> Result<ForecastRequest, ApiError> {
        let mut requests = self.parse_requests(q)?;
        match requests.len() {
            1 => Ok(requests.remove(0)),
            n => Err(ApiError::invalid_parameter(
                "horizon",
                format!(
                    "horizon must be one horizon here (got {n}); ask for each horizon \
                     separately"
                ),
            )),
        }
    }

    fn parse_one(
        &self,
        q: &RequestText<'_>,
        horizon: Horizon,
    ) -> Result<ForecastRequest, ApiError> {
        let model = self.model();
        let station = required(q.station, "station")?.to_owned();
        let vars = match q.vars {
            None => DEFAULT_VARS.to_vec(),
            Some(text) => parse_vars(text)?,
        };
        let k = match (q.k, q.mode) {
            (Some(_), Some(_)) => {
                // Each is valid alone; the pair is a rule across parameters, so 422.
                return Err(ApiError::new(
                    ProblemKind::Unprocessable,
                    "give `k` or `mode`, not both",
                )
                .with("parameter", "mode"));
            }
            (Some(k), None) => {
                let max = model.max_k();
                match k.trim().parse::<usize>() {
                    Ok(k) if (1..=max).contains(&k) => k,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "k",
                            format!("k must be a whole number from 1 to {max} (got '{k}')"),
                        ))
                    }
                }
            }
            (None, Some(mode)) => MODES
                .iter()
                .find(|(name, _)| *name == mode.trim())
                .map(|&(_, k)| k)
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "mode",
                        format!(
                            "mode must be one of {} (got '{mode}')",
                            list(MODES.iter().map(|(m, _)| m.to_string()))
                        ),
                    )
                })?,
            (None, None) => DEFAULT_K,
        };
        let similarity = match q.similarity.map(str::trim) {
            None | Some("") => Similarity::AnEn,
            Some(s) => s.parse().map_err(|_| {
                ApiError::invalid_parameter(
                    "similarity",
                    format!("similarity must be `seed` or `anen` (got '{s}')"),
                )
            })?,
        };
        let at = match q.at.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                analog::forecast::parse_time(text)
                    .map_err(|e| ApiError::invalid_parameter("at", format!("at: {e}")))?,
            ),
        };
        Ok(ForecastRequest {
            station,
            at,
            horizon,
            vars,
            k,
            similarity,
        })
    }
}

/// `6h,24h`: each a known horizon, none twice, at most [`MAX_HORIZONS`].
fn parse_horizons(text: &str) -> Result<Vec<Horizon>, ApiError> {
    let mut horizons: Vec<Horizon> = Vec::new();
    let names: Vec<&str> = text.split(',').map(str::trim).collect();
    if names.len() > MAX_HORIZONS {
        return Err(ApiError::invalid_parameter(
            "horizon",
            format!(
                "horizon takes at most {MAX_HORIZONS} horizons (got {})",
                names.len()
            ),
        ));
    }
    for name in names {
        let horizon: Horizon = name.parse().map_err(|_| {
            ApiError::invalid_parameter(
                "horizon",
                format!(
                    "horizon must be one of {}, or several separated by commas (got '{name}')",
                    list(Horizon::ALL.iter().map(ToString::to_string)),
                ),
            )
        })?;
        if horizons.contains(&horizon) {
            return Err(ApiError::invalid_parameter(
                "horizon",
                format!("horizon {horizon} is asked for twice"),
            ));
        }
        horizons.push(horizon);
    }
    Ok(horizons)
}

fn parse_vars(text: &str) -> Result<Vec<Variable>, ApiError> {
    let mut vars = Vec::new();
    for name in text.split(',').map(str::trim) {
        let var: Variable = name.parse().map_err(|_| {
            ApiError::invalid_parameter(
                "vars",
                format!(
                    "unknown variable '{name}' in vars; known: {}",
                    list(Variable::ALL.iter().map(ToString::to_string))
                ),
            )
        })?;
        if !vars.contains(&var) {
            vars.push(var);
        }
    }
    Ok(vars)
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// What a model error means to the client: an unknown station or a time without a state is
/// 404 naming its parameter, a time off the hour or a bad `k` or `vars` is 400.
pub(crate) fn problem(e: ForecastError) -> ApiError {
    match e {
        ForecastError::UnknownStation { .. } => {
            ApiError::not_found(e.to_string()).with("parameter", "station")
        }
        ForecastError::NoState {
            reason: NoStateReason::NotOnTheHour,
            ..
        } => ApiError::invalid_parameter("at", e.to_string()),
        ForecastError::NoState { .. } => ApiError::not_found(e.to_string()).with("parameter", "at"),
        ForecastError::KOutOfRange { .. } => ApiError::invalid_parameter("k", e.to_string()),
        ForecastError::NoVariables => ApiError::invalid_parameter("vars", e.to_string()),
        other => {
            tracing::error!(error = %other, "forecast failed");
            ApiError::internal()
        }
    }
}

/// Everything that makes two forecasts the same answer. The model version is part of it, so a
/// cached answer can never outlive the index it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    model_version: Arc<str>,
    station: String,
    horizon: Horizon,
    vars: Vec<Variable>,
    k: usize,
    similarity: analog::forecast::Similarity,
    at: i64,
}

/// The loaded model and what serves it.
pub struct ForecastService {
    model: Arc<ForecastModel>,
    version: Arc<str>,
    cache: Option<Cache<CacheKey, Bytes>>,
    latency: Vec<(Horizon, Mutex<LatencyWindow>)>,
    /// Searches per horizon (in `Horizon::ALL` order) per status (in `SearchStatus::ALL` order).
    statuses: [[AtomicU64; 3]; 4],
    /// The last search's status per horizon: 0 before the first, else `index() + 1`.
    last_status: [AtomicU8; 4],
    slow_requests: Mutex<SlowRequestLog>,
    hits: AtomicU64,
    misses: AtomicU64,
    warmed: AtomicU64,
    rewarm_interval: Option<Duration>,
    memory_budget: Option<u64>,
    /// The model's indexes and resident bytes: the model is immutable, so asked once.
    indexes: Vec<IndexInfo>,
    resident_bytes: u64,
    rewarms: AtomicU64,
    last_rewarm: Mutex<Option<RewarmRun>>,
}

/// One background re-warming run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RewarmRun {
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Forecasts it recomputed.
    pub warmed: u64,
    /// How long it took, in milliseconds.
    pub took_ms: f64,
}

/// A forecast ready to send.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON document.
    pub body: Bytes,
    /// Whether it came from the cache.
    pub outcome: CacheOutcome,
    /// How long the model took, when it was computed now.
    pub computed_in: Option<Duration>,
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache.
    Hit,
    /// Computed now (and cached).
    Miss,
    /// Computed now because the client asked for a fresh answer (`Cache-Control: no-cache`).
    Bypass,
}

impl CacheOutcome {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

impl ForecastService {
    /// Wraps a loaded model.
    pub fn new(model: Arc<ForecastModel>, settings: &ForecastSettings) -> ForecastService {
        let cache = (settings.cache_capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_live(settings.cache_ttl)
                .build()
        });
        let version: Arc<str> = Arc::from(model.version());
        let (indexes, resident_bytes) = (model.indexes(), model.resident_bytes());
        let latency = Horizon::ALL
            .iter()
            .map(|&h| (h, Mutex::new(LatencyWindow::new(settings.latency_window))))
            .collect();
        ForecastService {
            model,
            version,
            cache,
            latency,
            statuses: Default::default(),
            last_status: Default::default(),
            slow_requests: Mutex::new(SlowRequestLog::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
            rewarm_interval: settings.rewarm_interval,
            memory_budget: settings.memory_budget,
            indexes,
            resident_bytes,
            rewarms: AtomicU64::new(0),
            last_rewarm: Mutex::new(None),
        }
    }

    /// The model being served.
    pub fn model(&self) -> &ForecastModel {
        &self.model
    }

    /// The memory budget the model is checked against (`--forecast-memory-budget`).
    pub fn memory_budget(&self) -> Option<u64> {
        self.memory_budget
    }

    /// Refuses the model when it needs more resident memory than the budget, naming both
    /// figures.
    ///
    /// # Errors
    /// [`BudgetExceeded`].
    pub fn check_memory_budget(&self) -> Result<(), BudgetExceeded> {
        check_memory_budget(self.resident_bytes, self.memory_budget)
    }

    /// The model's version string (changes with the index files).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The forecast for `request` as a JSON body, from the cache unless `fresh` (the client sent
    /// `Cache-Control: no-cache`). Without `request.at`, the station's latest issue time is
    /// used, and it is that time which keys the cache.
    ///
    /// # Errors
    /// The model's [`ForecastError`] (unknown station, no state at that time, k out of range…).
    pub fn answer(&self, request: &ForecastRequest, fresh: bool) -> Result<Answer, ForecastError> {
        let at = match request.at {
            Some(at) => at,
            None => match self.model.issue_range(&request.station) {
                Some((_, latest)) => latest,
                // No issue time at all: an unknown station (or one without a complete window).
                None => {
                    return Err(ForecastError::UnknownStation {
                        station: request.station.clone(),
                        known: self
                            .model
                            .stations()
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                    })
                }
            },
        };
        let key = CacheKey {
            model_version: self.version.clone(),
            station: request.station.clone(),
            horizon: request.horizon,
            vars: request.vars.clone(),
            k: request.k,
            similarity: request.similarity,
            at,
        };
        if !fresh {
            if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&key)) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Answer {
                    body: hit,
                    outcome: CacheOutcome::Hit,
                    computed_in: None,
                });
            }
        }
        let started = Instant::now();
        let forecast = self.model.forecast(request)?;
        let took = started.elapsed();
        self.record(request.horizon, took);
        let body = render(&forecast, &self.version);
        if let Some(cache) = &self.cache {
            cache.insert(key, body.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let outcome = if fresh {
            CacheOutcome::Bypass
        } else {
            CacheOutcome::Miss
        };
        Ok(Answer {
            body,
            outcome,
            computed_in: Some(took),
        })
    }

    /// The forecast for `request` as the model gives it (the console draws it; the API sends
    /// [`ForecastService::answer`]'s cached JSON). Its search time is recorded like any other.
    ///
    /// # Errors
    /// The model's [`ForecastError`].
    pub fn forecast(&self, request: &ForecastRequest) -> Result<Forecast, ForecastError> {
        let started = Instant::now();
        let forecast = self.model.forecast(request)?;
        self.record(request.horizon, started.elapsed());
        Ok(forecast)
    }

    fn record(&self, horizon: Horizon, elapsed: Duration) {
        let status = search_status(elapsed);
        if let Some(h) = Horizon::ALL.iter().position(|&h| h == horizon) {
            self.statuses[h][status.index()].fetch_add(1, Ordering::Relaxed);
            self.last_status[h].store(status.index() as u8 + 1, Ordering::Relaxed);
        }
        if let Some((_, window)) = self.latency.iter().find(|(h, _)| *h == horizon) {
            if let Ok(mut window) = window.lock() {
                window.push(Instant::now(), elapsed.as_secs_f64() * 1000.0);
            }
        }
    }

    /// Records one forecast-route request's whole time; one of 1 s or more is analysed and kept
    /// for the diagnostics' slow-request summary. `route` is the path template.
    pub fn observe_request(&self, route: &str, took: Duration) {
        // Every forecast request passes here: the clock and the timestamp text are only for
        // the rare slow one.
        if took < crate::forecast_diagnostics::SLOW_REQUEST_FROM {
            return;
        }
        let at = crate::rfc3339_ms(crate::jobs::now_ms());
        if let Some(slow) = analyse_request(route, took, at) {
            tracing::warn!(
                route,
                took_ms = slow.response_time_ms,
                severity = ?slow.severity,
                "slow forecast request"
            );
            if let Ok(mut log) = self.slow_requests.lock() {
                log.push(slow);
            }
        }
    }

    /// Touches every index and fills the cache with the seed's popular configurations at each
    /// station's latest time, so the first real request is neither a cold page fault nor a
    /// miss. Returns how many forecasts were warmed.
    pub fn warm(&self, default_k: usize) -> usize {
        let warmed = self.warm_popular(default_k, false);
        self.warmed.fetch_add(warmed as u64, Ordering::Relaxed);
        warmed
    }

    /// Recomputes the popular configurations at each station's latest time and refreshes their
    /// cache entries (seed 001's periodic warming): pages of the index the operating system
    /// dropped are read again, and the entries never expire for want of a request. Counted in
    /// the diagnostics' `rewarm`. Returns how many forecasts were recomputed.
    pub fn rewarm(&self) -> usize {
        let started = Instant::now();
        let warmed = self.warm_popular(DEFAULT_K, true);
        self.rewarms.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_rewarm.lock() {
            *last = Some(RewarmRun {
                finished_at: crate::rfc3339_ms(crate::jobs::now_ms()),
                warmed: warmed as u64,
                took_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        warmed
    }

    fn warm_popular(&self, default_k: usize, fresh: bool) -> usize {
        use analog::forecast::Similarity;
        let mut warmed = 0;
        for station in self.model.stations() {
            // Both similarities, so both search paths (the index and the brute-force kernel)
            // have touched their pages.
            let configs = POPULAR
                .iter()
                .flat_map(|c| [(c, Similarity::AnEn), (c, Similarity::Seed)]);
            for (&(horizon, vars), similarity) in configs {
                let request = ForecastRequest {
                    station: station.to_owned(),
                    at: None,
                    horizon,
                    vars: vars.to_vec(),
                    k: default_k,
                    similarity,
                };
                match self.answer(&request, fresh) {
                    Ok(_) => warmed += 1,
                    Err(e) => {
                        tracing::warn!(station, horizon = %horizon, error = %e, "forecast warming failed")
                    }
                }
            }
        }
        warmed
    }

    /// Search-latency statistics and statuses per horizon, cache counters, the slow-request
    /// summary and re-warming.
    pub fn diagnostics(&self) -> Diagnostics {
        let now = Instant::now();
        let horizons = self
            .latency
            .iter()
            .map(|(h, window)| {
                let (stats, (recent_searches, recent_mean_ms)) = window
                    .lock()
                    .map(|w| (w.stats(), w.recent(now, RECENT)))
                    .unwrap_or_default();
                let i = Horizon::ALL.iter().position(|x| x == h).unwrap_or(0);
                let count = |s: SearchStatus| self.statuses[i][s.index()].load(Ordering::Relaxed);
                let last_status = match self.last_status[i].load(Ordering::Relaxed) {
                    0 => None,
                    n => SearchStatus::ALL.get(usize::from(n) - 1).copied(),
                };
                HorizonDiagnostics {
                    horizon: h.to_string(),
                    grade: stats.grade(),
                    stats,
                    statuses: SearchStatusCounts {
                        optimal: count(SearchStatus::Optimal),
                        suboptimal: count(SearchStatus::Suboptimal),
                        slow: count(SearchStatus::Slow),
                    },
                    last_status,
                    recent_searches,
                    recent_mean_ms,
                    advice: search_advice(recent_searches, recent_mean_ms),
                }
            })
            .collect();
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        Diagnostics {
            model_version: self.version.to_string(),
            simd: analog::simd_level(),
            horizons,
            cache: CacheDiagnostics {
                enabled: self.cache.is_some(),
                entries: self.cache.as_ref().map_or(0, |c| c.entry_count()),
                hits,
                misses,
                hit_rate: if hits + misses == 0 {
                    None
                } else {
                    Some(hits as f64 / (hits + misses) as f64)
                },
                warmed: self.warmed.load(Ordering::Relaxed),
            },
            slow_requests: self
                .slow_requests
                .lock()
                .map(|log| log.summary())
                .unwrap_or_else(|_| SlowRequestLog::default().summary()),
            model: ModelDiagnostics {
                resident_bytes: self.resident_bytes,
                memory_budget: self.memory_budget,
                indexes: self.indexes.iter().map(IndexDiagnostics::from).collect(),
            },
            rewarm: RewarmDiagnostics {
                interval_seconds: self.rewarm_interval.map(|d| d.as_secs()),
                runs: self.rewarms.load(Ordering::Relaxed),
                last: self.last_rewarm.lock().ok().and_then(|l| l.clone()),
            },
        }
    }
}

fn render(forecast: &Forecast, version: &str) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(flatten)]
        forecast: &'a Forecast,
        model_version: &'a str,
    }
    // Serialising plain data with string keys cannot fail.
    Bytes::from(
        serde_json::to_vec(&Body {
            forecast,
            model_version: version,
        })
        .unwrap_or_default(),
    )
}

/// The most recent search times of one horizon, in milliseconds, with when each finished.
struct LatencyWindow {
    capacity: usize,
    samples: VecDeque<(Instant, f64)>,
    total: u64,
}

impl LatencyWindow {
    fn new(capacity: usize) -> Self {
        LatencyWindow {
            capacity: capacity.max(1),
            samples: VecDeque::new(),
            total: 0,
        }
    }

    fn push(&mut self, at: Instant, ms: f64) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((at, ms));
        self.total += 1;
    }

    /// How many of the kept searches finished within `period` before `now`, and their mean.
    fn recent(&self, now: Instant, period: Duration) -> (usize, Option<f64>) {
        let recent: Vec<f64> = self
            .samples
            .iter()
            .rev()
            .take_while(|(at, _)| now.saturating_duration_since(*at) <= period)
            .map(|&(_, ms)| ms)
            .collect();
        let n = recent.len();
        (n, (n > 0).then(|| recent.iter().sum::<f64>() / n as f64))
    }

    fn stats(&self) -> LatencyStats {
        let mut sorted: Vec<f64> = self.samples.iter().map(|&(_, ms)| ms).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let at = |q: f64| -> Option<f64> {
            // Nearest rank, as the seed's `sorted(times)[int(len * q)]`.
            (n > 0).then(|| sorted[((n as f64 * q) as usize).min(n - 1)])
        };
        LatencyStats {
            searches: self.total,
            window: n,
            mean_ms: (n > 0).then(|| sorted.iter().sum::<f64>() / n as f64),
            min_ms: sorted.first().copied(),
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: sorted.last().copied(),
        }
    }
}

/// Latency statistics of one horizon's searches (uncached computations only).
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct LatencyStats {
    /// Searches since start.
    pub searches: u64,
    /// Searches the statistics below cover (the most recent ones).
    pub window: usize,
    /// Mean, in milliseconds.
    pub mean_ms: Option<f64>,
    /// Fastest, in milliseconds.
    pub min_ms: Option<f64>,
    /// Median, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile, in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Slowest, in milliseconds.
    pub max_ms: Option<f64>,
}

impl LatencyStats {
    /// Seed 001's grade: A when mean < 1 ms and p95 < 5 ms, B (< 5, < 20), C (< 20, < 50),
    /// D (< 50, < 100), else F; none without searches.
    pub fn grade(&self) -> Option<&'static str> {
        let (mean, p95) = (self.mean_ms?, self.p95_ms?);
        Some(match () {
            () if mean < 1.0 && p95 < 5.0 => "A",
            () if mean < 5.0 && p95 < 20.0 => "B",
            () if mean < 20.0 && p95 < 50.0 => "C",
            () if mean < 50.0 && p95 < 100.0 => "D",
            () => "F",
        })
    }
}

/// One horizon's search latency, grade and statuses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HorizonDiagnostics {
    /// `6h`, `12h`, `24h` or `48h`.
    pub horizon: String,
    /// A to F (seed 001's rule); null before the first search.
    pub grade: Option<&'static str>,
    /// Latency statistics.
    #[serde(flatten)]
    pub stats: LatencyStats,
    /// Searches since start per status: optimal (< 10 ms), suboptimal (10 to < 100 ms), slow
    /// (≥ 100 ms).
    pub statuses: SearchStatusCounts,
    /// The last search's status; null before the first search.
    pub last_status: Option<SearchStatus>,
    /// Searches in the last 5 minutes (of the kept ones).
    pub recent_searches: usize,
    /// Their mean, in milliseconds; null without any.
    pub recent_mean_ms: Option<f64>,
    /// Seed 001's advice: consistently slow when more than 10 recent searches average more
    /// than 50 ms.
    pub advice: Vec<String>,
}

/// Searches per status.
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchStatusCounts {
    /// Below 10 ms.
    pub optimal: u64,
    /// 10 ms to below 100 ms.
    pub suboptimal: u64,
    /// 100 ms or more.
    pub slow: u64,
}

/// The model's indexes and the memory they need.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelDiagnostics {
    /// Bytes the model's searches read in full (`ForecastModel::resident_bytes`).
    pub resident_bytes: u64,
    /// `--forecast-memory-budget`; null when there is none.
    pub memory_budget: Option<u64>,
    /// One entry per station and horizon.
    pub indexes: Vec<IndexDiagnostics>,
}

/// One station and horizon's index, with seed 001's advice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IndexDiagnostics {
    /// Station code.
    pub station: String,
    /// `6h`, `12h`, `24h` or `48h`.
    pub horizon: String,
    /// `flat`, `ivfpq` or `ivfpq-rerank`.
    pub kind: &'static str,
    /// Vectors searched.
    pub vectors: usize,
    /// Their dimension.
    pub dimension: usize,
    /// IVF lists (IVF-PQ only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nlist: Option<usize>,
    /// Lists visited per search (IVF-PQ only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nprobe: Option<usize>,
    /// PQ sub-quantizers (IVF-PQ only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub m: Option<usize>,
    /// Bits per PQ code (IVF-PQ only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nbits: Option<u32>,
    /// Candidates re-scored exactly (IVF-PQ only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub shortlist: Option<usize>,
    /// Bytes a search reads from.
    pub bytes: u64,
    /// Seed 001's advice: IVF on fewer than 10,000 vectors, flat on more than 50,000, nprobe
    /// above 64.
    pub advice: Vec<&'static str>,
}

impl From<&IndexInfo> for IndexDiagnostics {
    fn from(i: &IndexInfo) -> Self {
        IndexDiagnostics {
            station: i.station.clone(),
            horizon: i.horizon.to_string(),
            kind: i.kind.name(),
            vectors: i.vectors,
            dimension: i.dimension,
            nlist: i.nlist,
            nprobe: i.nprobe,
            m: i.m,
            nbits: i.nbits,
            shortlist: i.shortlist,
            bytes: i.bytes,
            advice: index_advice(i.kind != IndexKind::Flat, i.vectors, i.nprobe),
        }
    }
}

/// Background re-warming.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewarmDiagnostics {
    /// Seconds between runs; null when re-warming is off.
    pub interval_seconds: Option<u64>,
    /// Runs since start.
    pub runs: u64,
    /// The last run; null before the first.
    pub last: Option<RewarmRun>,
}

/// The response cache's counters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheDiagnostics {
    /// Whether forecasts are cached at all.
    pub enabled: bool,
    /// Forecasts cached now.
    pub entries: u64,
    /// Answers served from the cache since start.
    pub hits: u64,
    /// Answers computed since start (misses and bypasses).
    pub misses: u64,
    /// hits / (hits + misses); null before the first request.
    pub hit_rate: Option<f64>,
    /// Forecasts computed by start-up warming.
    pub warmed: u64,
}

/// `GET /api/v1/forecast/diagnostics`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Diagnostics {
    /// Version of the loaded model (changes with its files).
    pub model_version: String,
    /// The distance kernel in use: `avx2+fma` or `scalar`.
    pub simd: &'static str,
    /// One entry per horizon.
    pub horizons: Vec<HorizonDiagnostics>,
    /// The response cache.
    pub cache: CacheDiagnostics,
    /// The model's indexes and memory.
    pub model: ModelDiagnostics,
    /// Forecast-route requests of 1 s or more (seed 001's slow-request analyser).
    pub slow_requests: SlowRequestSummary,
    /// Periodic re-warming of the popular configurations.
    pub rewarm: RewarmDiagnostics,
}

/// Re-runs [`ForecastService::rewarm`] on the installed service every `interval` (the first
/// run one interval after start, which warmed already) until `stopped` resolves. A rebuilt
/// model installed meanwhile is the one re-warmed next.
pub async fn run_forecast_rewarming(
    state: crate::AppState,
    interval: Duration,
    stopped: impl std::future::Future<Output = ()>,
) {
    let stopped = std::pin::pin!(stopped);
    let rewarm = async {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(service) = state.forecasts() else {
                continue;
            };
            // Searches are CPU work: off the request threads.
            match tokio::task::spawn_blocking(move || service.rewarm()).await {
                Ok(warmed) => tracing::debug!(warmed, "forecasts re-warmed"),
                Err(e) => tracing::warn!(error = %e, "forecast re-warming failed"),
            }
        }
    };
    tokio::select! {
        () = stopped => {}
        () = rewarm => {}
    }
}

/// A model that needs more resident memory than `--forecast-memory-budget` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the forecast model needs {resident} bytes ({}) resident, more than the memory budget of \
     {budget} bytes ({}); raise the budget, or rebuild the model with `signalbox forecast build \
     --memory-budget` so its largest horizons use IVF-PQ",
    human_bytes(*resident),
    human_bytes(*budget)
)]
pub struct BudgetExceeded {
    /// What the model needs (`ForecastModel::resident_bytes`).
    pub resident: u64,
    /// The budget.
    pub budget: u64,
}

/// Refuses a model that needs more resident memory than `budget` (none: no limit).
///
/// ```
/// use server::forecasts::check_memory_budget;
/// assert!(check_memory_budget(100, Some(100)).is_ok());
/// assert!(check_memory_budget(101, Some(100)).is_err());
/// assert!(check_memory_budget(u64::MAX, None).is_ok());
/// ```
///
/// # Errors
/// [`BudgetExceeded`] naming both figures.
pub fn check_memory_budget(resident: u64, budget: Option<u64>) -> Result<(), BudgetExceeded> {
    match budget {
        Some(budget) if resident > budget => Err(BudgetExceeded { resident, budget }),
        _ => Ok(()),
    }
}

/// `bytes` in binary units with one decimal (`2.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(samples: &[f64]) -> LatencyStats {
        let mut w = LatencyWindow::new(samples.len().max(1));
        let now = Instant::now();
        samples.iter().for_each(|&s| w.push(now, s));
        w.stats()
    }

    #[test]
    fn grades_follow_the_seed_thresholds() {
        let check = |samples: &[f64], grade: Option<&str>| {
            assert_eq!(stats_of(samples).grade(), grade, "{samples:?}");
        };
        check(&[], None);
        check(&[0.5; 20], Some("A"));
        // p95 over 5 ms with a low mean drops to B.
        check(&[&[0.1; 18][..], &[6.0, 6.0]].concat(), Some("B"));
        check(&[4.9; 20], Some("B"));
        check(&[19.0; 20], Some("C"));
        check(&[49.0; 20], Some("D"));
        check(&[50.0; 20], Some("F"));
        check(
            &[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 500.0],
            Some("F"),
        );
    }

    #[test]
    fn recent_searches_are_those_within_the_period() {
        let start = Instant::now();
        let mut w = LatencyWindow::new(10);
        w.push(start, 500.0);
        w.push(start + Duration::from_secs(100), 10.0);
        w.push(start + Duration::from_secs(200), 30.0);
        let now = start + Duration::from_secs(400);
        assert_eq!(w.recent(now, Duration::from_secs(300)), (2, Some(20.0)));
        assert_eq!(w.recent(now, Duration::from_secs(400)), (3, Some(180.0)));
        assert_eq!(w.recent(now, Duration::from_secs(100)), (0, None));
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(2 << 30), "2.0 GiB");
        let e = check_memory_budget(3 << 30, Some(2 << 30)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("3221225472 bytes (3.0 GiB)"), "{text}");
        assert!(text.contains("2147483648 bytes (2.0 GiB)"), "{text}");
    }

    #[test]
    fn latency_window_keeps_the_most_recent_and_counts_all() {
        let mut w = LatencyWindow::new(3);
        let now = Instant::now();
        for ms in [100.0, 1.0, 2.0, 3.0] {
            w.push(now, ms);
        }
        let s = w.stats();
        assert_eq!((s.searches, s.window), (4, 3));
        assert_eq!((s.min_ms, s.max_ms), (Some(1.0), Some(3.0)));
        assert_eq!(s.mean_ms, Some(2.0));
        assert_eq!(s.p50_ms, Some(2.0));
    }
}
