//! Serving analog forecasts: the loaded model, the response cache, start-up warming and the
//! search-latency record behind `/api/v1/forecast/diagnostics`.
//!
//! The model ([`analog::forecast::ForecastModel`]) is immutable and searched from any number of
//! request tasks at once; this module only adds what a server needs around it. Computation is
//! done inline on the request task: a forecast is tens of microseconds of CPU, less than a
//! hand-off to a blocking pool would cost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analog::forecast::{
    Forecast, ForecastError, ForecastModel, ForecastRequest, Horizon, NoStateReason, Similarity,
    Variable,
};
use bytes::Bytes;
use moka::sync::Cache;
use serde::Serialize;

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
}

impl Default for ForecastSettings {
    fn default() -> Self {
        ForecastSettings {
            // Seed 001 caches forecasts for 600 s.
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            latency_window: 10_000,
        }
    }
}

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
/// Variables forecast when `vars` is not given.
const DEFAULT_VARS: &[Variable] = &[
    Variable::T2m,
    Variable::U10,
    Variable::V10,
    Variable::Msl,
    Variable::Precip,
];
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
    /// Checks a request given as text and builds it; an error names the parameter (400, or 422
    /// for `k` and `mode` together). Whether the station exists and `at` has a state is the
    /// model's to say when it answers.
    pub(crate) fn parse_request(&self, q: &RequestText<'_>) -> Result<ForecastRequest, ApiError> {
        let model = self.model();
        let station = required(q.station, "station")?.to_owned();
        let horizon: Horizon = required(q.horizon, "horizon")?.parse().map_err(|_| {
            ApiError::invalid_parameter(
                "horizon",
                format!(
                    "horizon must be one of {} (got '{}')",
                    list(Horizon::ALL.iter().map(ToString::to_string)),
                    q.horizon.unwrap_or_default()
                ),
            )
        })?;
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
    hits: AtomicU64,
    misses: AtomicU64,
    warmed: AtomicU64,
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
        let latency = Horizon::ALL
            .iter()
            .map(|&h| (h, Mutex::new(LatencyWindow::new(settings.latency_window))))
            .collect();
        ForecastService {
            model,
            version,
            cache,
            latency,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
        }
    }

    /// The model being served.
    pub fn model(&self) -> &ForecastModel {
        &self.model
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
        if let Some((_, window)) = self.latency.iter().find(|(h, _)| *h == horizon) {
            if let Ok(mut window) = window.lock() {
                window.push(elapsed.as_secs_f64() * 1000.0);
            }
        }
    }

    /// Touches every index and fills the cache with the seed's popular configurations at each
    /// station's latest time, so the first real request is neither a cold page fault nor a
    /// miss. Returns how many forecasts were warmed.
    pub fn warm(&self, default_k: usize) -> usize {
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
                match self.answer(&request, false) {
                    Ok(_) => warmed += 1,
                    Err(e) => {
                        tracing::warn!(station, horizon = %horizon, error = %e, "forecast warming failed")
                    }
                }
            }
        }
        self.warmed.fetch_add(warmed as u64, Ordering::Relaxed);
        warmed
    }

    /// Search-latency statistics per horizon, cache counters and the model's indexes.
    pub fn diagnostics(&self) -> Diagnostics {
        let horizons = self
            .latency
            .iter()
            .map(|(h, window)| {
                let stats = window.lock().map(|w| w.stats()).unwrap_or_default();
                HorizonDiagnostics {
                    horizon: h.to_string(),
                    grade: stats.grade(),
                    stats,
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

/// The most recent search times of one horizon, in milliseconds.
struct LatencyWindow {
    capacity: usize,
    samples: VecDeque<f64>,
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

    fn push(&mut self, ms: f64) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        self.total += 1;
    }

    fn stats(&self) -> LatencyStats {
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
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

/// One horizon's search latency and grade.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HorizonDiagnostics {
    /// `6h`, `12h`, `24h` or `48h`.
    pub horizon: String,
    /// A to F (seed 001's rule); null before the first search.
    pub grade: Option<&'static str>,
    /// Latency statistics.
    #[serde(flatten)]
    pub stats: LatencyStats,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(samples: &[f64]) -> LatencyStats {
        let mut w = LatencyWindow::new(samples.len().max(1));
        samples.iter().for_each(|&s| w.push(s));
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
    fn latency_window_keeps_the_most_recent_and_counts_all() {
        let mut w = LatencyWindow::new(3);
        for ms in [100.0, 1.0, 2.0, 3.0] {
            w.push(ms);
        }
        let s = w.stats();
        assert_eq!((s.searches, s.window), (4, 3));
        assert_eq!((s.min_ms, s.max_ms), (Some(1.0), Some(3.0)));
        assert_eq!(s.mean_ms, Some(2.0));
        assert_eq!(s.p50_ms, Some(2.0));
    }
}
