//! What every handler can reach: the store, metrics, the auth cache and the configuration.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use store::{Principal, Store};
use telemetry::Metrics;

use crate::exposures::{ExposureRecorder, ExposureSettings};
use crate::feature_flags::FlagService;
use crate::forecasts::ForecastService;
use crate::profiles::ProfilePipeline;
use crate::rate_limit::{RateLimitSetupError, RateLimiter};
use crate::readiness::Readiness;

/// Serving-layer settings; the binary fills them from flags, env and the config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body, in bytes; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// A request still running after this long is answered 503 (`timeout`).
    pub request_timeout: Duration,
    /// How long an authenticated key is trusted without asking the store again. A key revoked
    /// by another process (the CLI, another replica) stops working within this time; a key
    /// revoked through this server's API stops at once.
    pub auth_cache_ttl: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Checked by `/ready` when set.
    pub redis_url: Option<String>,
    /// Checked by `/ready` when set.
    pub nats_url: Option<String>,
    /// The weber real-time path (window, caches, worker batch size).
    pub profiles: crate::ProfileSettings,
    /// How often flag snapshots are checked against the store, so changes made elsewhere
    /// (another replica, `signalbox flags import`) are served and streamed.
    pub flag_refresh_interval: Duration,
    /// Most flags one environment may hold through the admin API: every bulk evaluation answers
    /// all of them, so the bound keeps answers and snapshots of a size clients can handle.
    pub max_flags_per_environment: usize,
    /// The flag exposure recorder's queue, batching and dedupe window.
    pub exposures: ExposureSettings,
    /// The flag evaluation counter's memory bound and flush interval (usage analytics).
    pub flag_usage: crate::evaluation_counts::FlagUsageSettings,
    /// Rate-limit rules and their backend.
    pub rate_limits: crate::RateLimitSettings,
    /// Where the read caches (Weber profiles) keep their shared Redis layer, if anywhere.
    pub read_caches: crate::ReadCacheSettings,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client (load balancers, Envoy);
    /// from any other peer those headers are ignored.
    pub trusted_proxies: crate::TrustedProxies,
    /// Header-read and idle timeouts and the connection cap of [`crate::serve`].
    pub connections: crate::ConnectionSettings,
    /// Which browser origins may call the API (CORS); none by default.
    pub cors: crate::CorsSettings,
    /// When set, `/metrics` answers only scrapes that present it as a bearer token (the series
    /// carry tenant ids).
    pub metrics_token: Option<MetricsToken>,
    /// LLM observability: default prices, ingest limits, retention, usage cache.
    pub llm: crate::LlmSettings,
    /// Background jobs: the queues' settings, the worker runtime's timings, what the
    /// built-in handlers need.
    pub jobs: crate::JobSettings,
    /// Encryption at rest and audit log keys, and how often log heads are signed.
    pub custody: crate::custody::CustodySettings,
    /// Web console sessions: idle and maximum lifetimes, the cookie's `Secure` flag.
    pub console: crate::ConsoleSettings,
    /// Weber predictions: churn horizon, CLV months and discount rate, recommendation table.
    pub predictions: crate::predictions::PredictionSettings,
}

/// The scrape token of `/metrics`. Only its SHA-256 is kept, compared in constant time, and
/// `Debug` shows neither, so it cannot reach a log through the configuration.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// `None` for an empty token, which would protect nothing.
    pub fn new(token: &str) -> Option<MetricsToken> {
        use sha2::Digest;
        (!token.is_empty()).then(|| MetricsToken(sha2::Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `presented` is the token. Comparing digests keeps the time independent of where
    /// the inputs differ and of the token's length.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            auth_cache_ttl: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            redis_url: None,
            nats_url: None,
            profiles: crate::ProfileSettings::default(),
            flag_refresh_interval: Duration::from_secs(1),
            max_flags_per_environment: 5_000,
            exposures: ExposureSettings::default(),
            flag_usage: Default::default(),
            rate_limits: crate::RateLimitSettings::default(),
            read_caches: crate::ReadCacheSettings::memory_only(),
            trusted_proxies: crate::TrustedProxies::none(),
            connections: crate::ConnectionSettings::default(),
            cors: crate::CorsSettings::default(),
            metrics_token: None,
            llm: crate::LlmSettings::default(),
            jobs: crate::JobSettings::default(),
            custody: crate::custody::CustodySettings::default(),
            console: crate::ConsoleSettings::default(),
            predictions: crate::predictions::PredictionSettings::default(),
        }
    }
}

/// Why [`AppState::new`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The rate-limit settings cannot be used.
    #[error(transparent)]
    RateLimits(#[from] RateLimitSetupError),
    /// A read cache cannot be built (its Redis URL does not parse).
    #[error("read cache: {0}")]
    ReadCache(#[from] cache::CacheError),
    /// A configured CORS origin cannot be used.
    #[error(transparent)]
    Cors(#[from] crate::cors::CorsOriginError),
    /// The custody keys cannot be used.
    #[error("custody: {0}")]
    Custody(#[from] vault::KeyringError),
}

/// Shared state, cheap to clone (everything is behind `Arc`s or is a pool handle).
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: ServerConfig,
    /// Key hash -> who holds it. Only hits are cached, so an unknown key always asks the store.
    pub auth_cache: Cache<String, Arc<Principal>>,
    pub readiness: Readiness,
    /// Set once by [`crate::app`] from the routes it mounts, so the document served is the
    /// router's own.
    pub openapi_json: std::sync::OnceLock<bytes::Bytes>,
    pub profiles: Arc<ProfilePipeline>,
    /// Set by [`AppState::install_forecasts`] and replaced by a rebuild
    /// ([`AppState::replace_forecasts`]); forecast routes answer 501 `forecast_model_missing`
    /// without it.
    pub forecasts: std::sync::RwLock<Option<Arc<ForecastService>>>,
    pub flags: FlagService,
    pub exposures: Arc<ExposureRecorder>,
    pub evaluation_counts: Arc<crate::evaluation_counts::EvaluationCounter>,
    /// `None` when rate limiting is off.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    pub segment_analytics: crate::analytics::SegmentAnalyticsService,
    pub llm: Arc<crate::LlmService>,
    pub jobs: crate::JobService,
    pub custody: Arc<crate::custody::Custody>,
    pub feedback: Arc<crate::feedback::FeedbackService>,
    pub predictions: crate::predictions::PredictionService,
}

impl AppState {
    /// `events` carries ingested interactions to the profile worker
    /// ([`crate::run_profile_worker`]), which the caller runs beside [`crate::serve`], as it
    /// runs [`crate::run_exposure_writer`] for flag exposures.
    ///
    /// Fails when the rate-limit settings cannot be used (a rule too large for the Redis
    /// backend, a Redis URL that does not parse) or a read cache's Redis URL does not parse.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        config: ServerConfig,
        events: stream::EventLog,
    ) -> Result<AppState, SetupError> {
        config.cors.validate()?;
        let rate_limiter = RateLimiter::new(&config.rate_limits, metrics.clone())?.map(Arc::new);
        let watched = store.clone();
        metrics.database().watch(move || watched.stats());
        let auth_cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(config.auth_cache_ttl)
            .build();
        let readiness = Readiness::new(config.redis_url.clone(), config.nats_url.clone());
        let profiles = Arc::new(ProfilePipeline::new(
            config.profiles.clone(),
            events,
            &config.read_caches,
            &metrics,
        )?);
        let exposures = Arc::new(ExposureRecorder::new(
            config.exposures.clone(),
            metrics.clone(),
        ));
        let evaluation_counts = Arc::new(crate::evaluation_counts::EvaluationCounter::new(
            config.flag_usage.clone(),
            metrics.clone(),
        ));
        let llm = Arc::new(crate::LlmService::new(config.llm.clone()));
        let jobs = crate::JobService::new(
            store.clone(),
            crate::jobs::JobRegistry::builtin(&config.jobs.handlers),
            config.jobs.clone(),
        );
        let custody = Arc::new(crate::custody::Custody::new(
            store.clone(),
            &config.custody,
        )?);
        // Idempotency hashes are keyed by a secret derived from the audit signing key: kept
        // outside the database and the same on every replica (as the key must be). Throwaway
        // custody keys get a throwaway hash key.
        let hash_key = match &config.custody.keys {
            Some(keys) => crate::feedback::IdempotencyKey::derive(&keys.signing_key.to_bytes()),
            None => crate::feedback::IdempotencyKey::random(),
        };
        let feedback = Arc::new(crate::feedback::FeedbackService::new(
            custody.clone(),
            hash_key,
        ));
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                metrics,
                config,
                auth_cache,
                readiness,
                openapi_json: std::sync::OnceLock::new(),
                profiles,
                forecasts: std::sync::RwLock::new(None),
                flags: FlagService::default(),
                exposures,
                evaluation_counts,
                rate_limiter,
                segment_analytics: Default::default(),
                llm,
                jobs,
                custody,
                feedback,
                predictions: crate::predictions::PredictionService::default(),
            }),
        })
    }

    /// Segment analytics, with the last answers degraded requests get.
    pub(crate) fn segment_analytics(&self) -> &crate::analytics::SegmentAnalyticsService {
        &self.inner.segment_analytics
    }

    /// LLM observability's use cases.
    pub fn llm(&self) -> &Arc<crate::LlmService> {
        &self.inner.llm
    }

    /// The rate limiter, unless rate limiting is off.
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.inner.rate_limiter.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn profiles(&self) -> &Arc<ProfilePipeline> {
        &self.inner.profiles
    }

    /// Serves forecasts from `service` from now on. Returns false (and changes nothing) when a
    /// model is already installed; only a rebuild replaces it ([`AppState::replace_forecasts`]).
    pub fn install_forecasts(&self, service: Arc<ForecastService>) -> bool {
        let mut slot = self
            .inner
            .forecasts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() {
            return false;
        }
        *slot = Some(service);
        true
    }

    /// Serves forecasts from `service` from now on, in place of the model served so far (the
    /// `forecast.rebuild` job). Requests already running finish with the old model; cached
    /// answers are keyed by model version, so none outlives its model.
    pub fn replace_forecasts(&self, service: Arc<ForecastService>) {
        *self
            .inner
            .forecasts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(service);
    }

    /// The forecast service, once installed.
    pub fn forecasts(&self) -> Option<Arc<ForecastService>> {
        self.inner
            .forecasts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The feedback engine's use cases (ingest, process, read, rotation).
    pub fn feedback(&self) -> &Arc<crate::feedback::FeedbackService> {
        &self.inner.feedback
    }

    /// Weber predictions' reads (with their cache of parsed models); refits are
    /// [`crate::predictions::PredictionService::refit`].
    pub fn predictions(&self) -> &crate::predictions::PredictionService {
        &self.inner.predictions
    }

    /// Encryption at rest and the audit log's keys.
    pub fn custody(&self) -> &Arc<crate::custody::Custody> {
        &self.inner.custody
    }

    /// Background jobs' use cases (enqueue, list, cancel, schedules, …).
    pub fn jobs(&self) -> &crate::JobService {
        &self.inner.jobs
    }

    /// Flag snapshots and change streams.
    pub(crate) fn flags(&self) -> &FlagService {
        &self.inner.flags
    }

    /// Reloads the flag environments in memory whose stored flags changed, and streams those
    /// changes: what [`crate::run_flag_refresher`] does on every tick, for embedders and tests
    /// that change flags in the store directly.
    pub async fn refresh_flags(&self) {
        self.inner.flags.refresh_all(&self.inner.store).await;
    }

    /// Where flag evaluations report exposures (stored by [`crate::run_exposure_writer`]).
    pub fn exposures(&self) -> &Arc<ExposureRecorder> {
        &self.inner.exposures
    }

    /// Where flag evaluations are counted for usage analytics (stored by
    /// [`crate::run_flag_usage_writer`], and by every usage read).
    pub fn evaluation_counts(&self) -> &Arc<crate::evaluation_counts::EvaluationCounter> {
        &self.inner.evaluation_counts
    }

    /// The event log ingested interactions go through.
    pub fn events(&self) -> &stream::EventLog {
        &self.inner.profiles.events
    }

    /// Waits until the profile worker has applied the event log up to `offset` (see
    /// [`stream::EventLog::last_offset`]): read-your-writes for embedders and tests.
    pub async fn profiles_applied(&self, offset: u64) {
        self.inner.profiles.wait_applied(offset).await;
    }
}
