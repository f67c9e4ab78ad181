//! signalbox's metrics: one Prometheus registry for the whole process.
//!
//! The HTTP series follow seed 003's names and labels:
//! - `http_requests_total{method,endpoint,status,tenant_id,service}`
//! - `http_request_duration_seconds{method,endpoint,tenant_id,service}` (histogram)
//! - `http_request_size_bytes{method,endpoint,service}` (histogram)
//! - `errors_total{error_type,service,tenant_id}`
//! - `http_requests_in_flight` and the `process_*` family (CPU, memory, fds, threads);
//! - the weber engine's `weber_*` series ([`Metrics::weber`]) and its predictions'
//!   ([`Metrics::predictions`]);
//! - the forecast engine's `forecast_*` series ([`Metrics::forecast`]);
//! - the rate limiter's `rate_limit_*` series ([`Metrics::rate_limit`]);
//! - the flags engine's `flag_*` series ([`Metrics::flags`]);
//! - the read caches' `cache_*` series ([`Metrics::caches`]);
//! - the store's `database_*` series ([`Metrics::database`]);
//! - seed 003's chatbot and model-call series (`conversations_*`, `messages_processed_total`,
//!   `model_api_*`, `integration_*`), the OpenTelemetry GenAI client histograms
//!   (`gen_ai_client_*`), LLM ingest accounting and budgets ([`Metrics::llm`]);
//! - the in-process queues' `queue_*` series ([`Metrics::queues`]);
//! - the autoscaling signal `signalbox_desired_replicas` ([`Metrics::scaling`]);
//! - the host and infrastructure gauges (`system_*`, `database_connections_current`, …) that a
//!   [`HostMonitor`] samples on an interval, off the request path.
//!
//! [`Metrics::encode_tenant`] writes only one tenant's samples, for the tenant-scoped scrape.
//! [`Metrics::http_snapshot`] reads the HTTP figures back (module [`snapshot`]), for the console.
//!
//! [`Metrics::encode_as`] writes OpenMetrics or the Prometheus text format 0.0.4, as the
//! scraper's `Accept` header asks ([`Format::negotiate`], module [`exposition`]).
//!
//! Labels are bounded by construction: `endpoint` is a route template supplied by the server,
//! `method` is folded into the standard methods plus `OTHER`, `error_type` is a stable error
//! code, and `tenant_id` passes through a [`TenantLabels`] guard that lets at most N tenants have
//! their own series (the rest share `other`).
//!
//! ```
//! use telemetry::{HttpObservation, Metrics, MetricsConfig};
//! let metrics = Metrics::new(MetricsConfig::default());
//! metrics.observe_http(&HttpObservation {
//!     method: "GET", endpoint: "/api/v1/tenant", status: 200, tenant_id: Some("tn_1"),
//!     service: "platform", duration: std::time::Duration::from_micros(300), request_bytes: 0,
//! });
//! let text = metrics.encode();
//! assert!(text.contains(r#"http_requests_total{method="GET",endpoint="/api/v1/tenant",status="200",tenant_id="tn_1",service="platform"} 1"#));
//! ```

mod cache;
mod connections;
mod database;
pub mod exposition;
mod feedback;
mod flags;
mod forecast;
mod host;
mod jobs;
mod llm;
mod llm_calls;
mod predictions;
mod process;
mod queues;
mod rate_limit;
mod scaling;
pub mod snapshot;
mod tenant_scrape;
mod tenants;
#[cfg(feature = "test-support")]
pub mod testing;
mod weber;
pub mod weber_perf;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use self::scaling::{ScalingMetrics, SIGNALBOX_POLICY};
pub use cache::CacheMetrics;
pub use connections::{ConnectionMetrics, OpenConnection};
pub use database::DatabaseMetrics;
pub use exposition::Format;
pub use feedback::{
    FeedbackMetrics, FeedbackOutcome, FEEDBACK_DURATION_BUCKETS, FEEDBACK_KINDS, FEEDBACK_REGIONS,
    PRINCIPLES, SENTIMENT_BUCKETS,
};
pub use flags::{FlagMetrics, FlagRecorder};
pub use forecast::{ForecastMetrics, SEARCH_BUCKETS};
pub use host::{HostInputs, HostMonitor, HostMonitorConfig, NetworkTotals};
pub use jobs::{JobDepthSample, JobMetrics, JobRecorder};
pub use llm::{
    event_type, EventOutcome, LlmMetrics, LlmRecorder, SpanOutcome, EVENT_TYPES,
    GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS, INTEGRATION_DURATION_BUCKETS,
    MODEL_DURATION_BUCKETS, OTHER_ERROR,
};
pub use predictions::{PredictionMetrics, PredictionRecorder, REFIT_BUCKETS};
pub use queues::{QueueMetrics, ALL_TENANTS, QUEUE_BUCKETS};
pub use rate_limit::{RateLimitMetrics, RuleDecisions};
pub use snapshot::{HttpSnapshot, LatencyHistogram, WindowCounts};
pub use tenants::{LabelGuard, TenantLabels, OTHER};
pub use weber::{WeberMetrics, WeberRecorder, UPDATE_BUCKETS};
pub use weber_perf::PerformanceSnapshot;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = exposition::OPENMETRICS_CONTENT_TYPE;

/// Label used for requests that carried no valid credentials.
pub const NO_TENANT: &str = "unknown";

/// Seed 003's duration buckets (0.1 s to 10 s), with finer ones below 100 ms added because
/// signalbox's own latency objectives (2 ms p99 for reads) sit far below the seed's smallest
/// bucket.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Seed 003's request-size buckets, in bytes.
pub const SIZE_BUCKETS: [f64; 5] = [100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// Label limits of the metric set. Each limit is how many distinct values of one label get
/// their own value before the rest share `other` (see [`LabelGuard`]).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// How many tenants get their own `tenant_id` label value before the rest share `other`.
    pub tenant_label_limit: usize,
    /// Distinct `model` values (LLM series), 200 by default.
    pub model_label_limit: usize,
    /// Distinct `provider` values (LLM series), 50 by default.
    pub provider_label_limit: usize,
    /// Distinct values of each other client-chosen label (`channel`, `resolution_status`,
    /// `message_type`, `integration_id`, `integration_type`, `error_type`), 100 by default.
    pub label_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            tenant_label_limit: 100,
            model_label_limit: 200,
            provider_label_limit: 50,
            label_limit: 100,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    endpoint: String,
    status: u16,
    tenant_id: String,
    service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    method: &'static str,
    endpoint: String,
    tenant_id: String,
    service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    method: &'static str,
    endpoint: String,
    service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error_type: &'static str,
    service: &'static str,
    tenant_id: String,
}

#[derive(Clone)]
pub(crate) struct Buckets(pub(crate) &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// One finished HTTP request, as the serving layer saw it.
#[derive(Debug, Clone)]
pub struct HttpObservation<'a> {
    pub method: &'a str,
    /// The route template (`/api/v1/users/{user_id}`), never the raw path.
    pub endpoint: &'a str,
    pub status: u16,
    /// The authenticated tenant, if any.
    pub tenant_id: Option<&'a str>,
    /// The engine that owns the route (`platform`, `weber`, …).
    pub service: &'static str,
    pub duration: Duration,
    pub request_bytes: u64,
}

/// The process-wide metric set. Build it once at start-up, register engine metrics through
/// [`Metrics::registry_mut`], then share it behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, Buckets>,
    sizes: Family<SizeLabels, Histogram, Buckets>,
    errors: Family<ErrorLabels, Counter>,
    in_flight: Gauge,
    connections: ConnectionMetrics,
    weber: WeberMetrics,
    predictions: PredictionMetrics,
    forecast: ForecastMetrics,
    rate_limit: RateLimitMetrics,
    caches: CacheMetrics,
    database: DatabaseMetrics,
    flags: FlagMetrics,
    llm: LlmMetrics,
    queues: QueueMetrics,
    jobs: JobMetrics,
    feedback: FeedbackMetrics,
    scaling: ScalingMetrics,
    host: host::HostMetrics,
    tenants: TenantLabels,
    http: snapshot::HttpTallies,
    started: Instant,
    requests_seen: AtomicU64,
    errors_seen: AtomicU64,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Buckets").field(&self.0.len()).finish()
    }
}

impl Metrics {
    pub fn new(config: MetricsConfig) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "Total HTTP requests", requests.clone());
        let durations = Family::new_with_constructor(Buckets(&DURATION_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration in seconds",
            durations.clone(),
        );
        let sizes = Family::new_with_constructor(Buckets(&SIZE_BUCKETS));
        registry.register(
            "http_request_size_bytes",
            "HTTP request body size in bytes",
            sizes.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Total errors by type", errors.clone());
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served now",
            in_flight.clone(),
        );
        let connections = ConnectionMetrics::register(&mut registry);
        process::register(&mut registry);
        let weber = WeberMetrics::register(&mut registry);
        let predictions = PredictionMetrics::register(&mut registry);
        let forecast = ForecastMetrics::register(&mut registry);
        let rate_limit = RateLimitMetrics::register(&mut registry);
        let caches = CacheMetrics::register(&mut registry);
        let database = DatabaseMetrics::register(&mut registry);
        let flags = FlagMetrics::register(&mut registry);
        let llm = LlmMetrics::register(&mut registry, &config);
        let queues = QueueMetrics::register(&mut registry);
        let jobs = JobMetrics::register(&mut registry);
        let feedback = FeedbackMetrics::register(&mut registry);
        let scaling = ScalingMetrics::register(&mut registry);
        let host = host::HostMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            durations,
            sizes,
            errors,
            in_flight,
            connections,
            weber,
            predictions,
            forecast,
            rate_limit,
            caches,
            database,
            flags,
            llm,
            queues,
            jobs,
            feedback,
            scaling,
            host,
            tenants: TenantLabels::new(config.tenant_label_limit),
            http: snapshot::HttpTallies::default(),
            started: Instant::now(),
            requests_seen: AtomicU64::new(0),
            errors_seen: AtomicU64::new(0),
        }
    }

    /// Where engines register their own metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Records one finished request.
    pub fn observe_http(&self, obs: &HttpObservation<'_>) {
        let method = bounded_method(obs.method);
        let tenant = self.tenant_label(obs.tenant_id);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                endpoint: obs.endpoint.to_owned(),
                status: obs.status,
                tenant_id: tenant.clone(),
                service: obs.service,
            })
            .inc();
        self.http.record(
            &tenant,
            obs.status,
            obs.duration.as_secs_f64(),
            self.started.elapsed().as_secs(),
        );
        self.durations
            .get_or_create(&DurationLabels {
                method,
                endpoint: obs.endpoint.to_owned(),
                tenant_id: tenant,
                service: obs.service,
            })
            .observe(obs.duration.as_secs_f64());
        self.sizes
            .get_or_create(&SizeLabels {
                method,
                endpoint: obs.endpoint.to_owned(),
                service: obs.service,
            })
            .observe(obs.request_bytes as f64);
        self.feedback
            .observe_api(obs.endpoint, method, obs.duration.as_secs_f64());
        self.requests_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error by its stable code (`error_type` must come from a fixed set).
    pub fn count_error(
        &self,
        error_type: &'static str,
        service: &'static str,
        tenant_id: Option<&str>,
    ) {
        self.errors
            .get_or_create(&ErrorLabels {
                error_type,
                service,
                tenant_id: self.tenant_label(tenant_id),
            })
            .inc();
        self.errors_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request as started; the returned guard marks it finished when dropped, so a
    /// cancelled request is not counted in flight forever.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The exposition in OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = self.encode_registry();
        self.llm.calls.write(&mut out, None, false);
        out.push_str("# EOF\n");
        out
    }

    /// The registry's families in OpenMetrics, without the closing `# EOF` (the model-call
    /// families are written after them, module `llm_calls`).
    fn encode_registry(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The exposition in `format`: OpenMetrics as [`Metrics::encode`] writes it, or the
    /// Prometheus text format 0.0.4 ([`exposition::to_text_004`]).
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text004 => {
                let mut out = exposition::to_text_004(&self.encode_registry());
                self.llm.calls.write(&mut out, None, true);
                out
            }
        }
    }

    /// Only `tenant_id`'s samples, in `format`: every family with a `tenant_id` label, each
    /// sample kept when its `tenant_id` is exactly this tenant's label value (families
    /// without `tenant_id` are left out). This is what a tenant may scrape with its own key.
    ///
    /// A tenant that has no label value of its own (past [`MetricsConfig::tenant_label_limit`],
    /// so its series are summed into `other` with other tenants') gets an empty exposition:
    /// `other` mixes tenants, and one tenant must not see another's figures. The same holds for
    /// the reserved values `other` and `unknown`, which are never a tenant's own. Scraping
    /// never admits a tenant to the guard.
    ///
    /// ```
    /// use telemetry::{Format, Metrics, MetricsConfig};
    /// let metrics = Metrics::new(MetricsConfig::default());
    /// metrics.count_error("invalid", "llm", Some("tn_a"));
    /// metrics.count_error("invalid", "llm", Some("tn_b"));
    /// let text = metrics.encode_tenant("tn_a", Format::OpenMetrics);
    /// assert!(text.contains(r#"tenant_id="tn_a""#));
    /// assert!(!text.contains("tn_b"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn encode_tenant(&self, tenant_id: &str, format: Format) -> String {
        let admitted = tenant_id != tenants::OTHER
            && tenant_id != NO_TENANT
            && self.tenants.is_admitted(tenant_id);
        if !admitted {
            return match format {
                Format::OpenMetrics => "# EOF\n".to_owned(),
                Format::Text004 => String::new(),
            };
        }
        let registry = tenant_scrape::only_tenant(&self.encode_registry(), tenant_id);
        let escaped = tenant_scrape::escape(tenant_id);
        match format {
            Format::OpenMetrics => {
                let mut out = registry;
                self.llm.calls.write(&mut out, Some(&escaped), false);
                out.push_str("# EOF\n");
                out
            }
            Format::Text004 => {
                let mut out = exposition::to_text_004(&registry);
                self.llm.calls.write(&mut out, Some(&escaped), true);
                out
            }
        }
    }

    /// The HTTP figures read back (module [`snapshot`]): one tenant's when `tenant_id` is
    /// given, the whole server's otherwise. A tenant without a label of its own (never seen,
    /// or past the label limit and summed into `other`) gets `None`, for the reason
    /// [`Metrics::encode_tenant`] gives: `other` mixes tenants.
    pub fn http_snapshot(&self, tenant_id: Option<&str>) -> Option<HttpSnapshot> {
        let now = self.started.elapsed().as_secs();
        match tenant_id {
            Some(id) => {
                let admitted =
                    id != tenants::OTHER && id != NO_TENANT && self.tenants.is_admitted(id);
                if !admitted {
                    return None;
                }
                self.http.snapshot(|label| label == id, now)
            }
            None => self.http.snapshot(|_| true, now),
        }
    }

    /// The chatbot, model-call, GenAI, ingest and budget series (module `llm`; catalogue in
    /// `docs/metrics.md`).
    pub fn llm(&self) -> LlmRecorder<'_> {
        LlmRecorder {
            metrics: &self.llm,
            tenants: &self.tenants,
        }
    }

    /// The in-process queues' series (see the `queues` module docs for names).
    pub fn queues(&self) -> &QueueMetrics {
        &self.queues
    }

    /// The background job series (see the `jobs` module docs for names).
    pub fn jobs(&self) -> JobRecorder<'_> {
        JobRecorder {
            metrics: &self.jobs,
            queues: &self.queues,
            tenants: &self.tenants,
        }
    }

    /// The feedback engine's series (see the `feedback` module docs for names).
    pub fn feedback(&self) -> &FeedbackMetrics {
        &self.feedback
    }

    /// The autoscaling signal, `signalbox_desired_replicas` (module `scaling`).
    pub fn scaling(&self) -> &ScalingMetrics {
        &self.scaling
    }

    /// The weber engine's series (see the `weber` module docs for names).
    pub fn weber(&self) -> WeberRecorder<'_> {
        WeberRecorder {
            metrics: &self.weber,
            tenants: &self.tenants,
        }
    }

    /// The Weber predictions series: purchases, refits, prediction reads (see the
    /// `predictions` module docs for names).
    pub fn predictions(&self) -> PredictionRecorder<'_> {
        PredictionRecorder {
            metrics: &self.predictions,
            tenants: &self.tenants,
        }
    }

    /// The HTTP server's connection series (see the `connections` module docs for names).
    pub fn connections(&self) -> &ConnectionMetrics {
        &self.connections
    }

    /// The rate limiter's series (see the `rate_limit` module docs for names).
    pub fn rate_limit(&self) -> &RateLimitMetrics {
        &self.rate_limit
    }

    /// The read caches' series (see the `cache` module docs for names).
    pub fn caches(&self) -> &CacheMetrics {
        &self.caches
    }

    /// The store's series (see the `database` module docs for names).
    pub fn database(&self) -> &DatabaseMetrics {
        &self.database
    }

    /// The forecast engine's series (see the `forecast` module docs for names).
    pub fn forecast(&self) -> &ForecastMetrics {
        &self.forecast
    }

    /// The flags engine's series (see the `flags` module docs for names).
    pub fn flags(&self) -> FlagRecorder<'_> {
        FlagRecorder {
            metrics: &self.flags,
            tenants: &self.tenants,
        }
    }

    /// A few headline numbers for the health endpoint.
    pub fn summary(&self) -> Summary {
        Summary {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            requests_total: self.requests_seen.load(Ordering::Relaxed),
            errors_total: self.errors_seen.load(Ordering::Relaxed),
            requests_in_flight: self.in_flight.get(),
        }
    }

    fn tenant_label(&self, tenant_id: Option<&str>) -> String {
        match tenant_id {
            Some(id) => self.tenants.label(id).to_owned(),
            None => NO_TENANT.to_owned(),
        }
    }
}

/// Headline numbers, see [`Metrics::summary`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub uptime_seconds: f64,
    pub requests_total: u64,
    pub errors_total: u64,
    pub requests_in_flight: i64,
}

/// Keeps a request counted in `http_requests_in_flight` while it lives.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn bounded_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(tenant: Option<&'a str>, endpoint: &'a str, status: u16) -> HttpObservation<'a> {
        HttpObservation {
            method: "GET",
            endpoint,
            status,
            tenant_id: tenant,
            service: "platform",
            duration: Duration::from_millis(3),
            request_bytes: 120,
        }
    }

    use crate::testing::{parse, samples, total as value, OpenMetricsValue};

    #[test]
    fn http_series_carry_the_seed_labels_and_parse() {
        let m = Metrics::new(MetricsConfig::default());
        m.observe_http(&obs(Some("tn_a"), "/api/v1/items/{item_id}", 200));
        m.observe_http(&obs(Some("tn_a"), "/api/v1/items/{item_id}", 200));
        m.observe_http(&obs(None, "/api/v1/tenant", 401));
        m.count_error("unauthorized", "platform", None);
        let exp = parse(&m.encode());
        let ok = [
            ("method", "GET"),
            ("endpoint", "/api/v1/items/{item_id}"),
            ("status", "200"),
            ("tenant_id", "tn_a"),
            ("service", "platform"),
        ];
        assert_eq!(value(&exp, "http_requests", &ok), Some(2.0));
        assert_eq!(
            value(
                &exp,
                "http_requests",
                &[("status", "401"), ("tenant_id", NO_TENANT)]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&exp, "errors", &[("error_type", "unauthorized")]),
            Some(1.0)
        );
        let hist = samples(
            &exp,
            "http_request_duration_seconds",
            &[("tenant_id", "tn_a")],
        );
        match hist.first() {
            Some(OpenMetricsValue::Histogram(h)) => {
                let count_le = |bound: f64| {
                    h.buckets
                        .iter()
                        .find(|b| (b.upper_bound - bound).abs() < 1e-12)
                        .map(|b| b.count.as_f64())
                };
                assert_eq!(
                    (count_le(0.002), count_le(0.005)),
                    (Some(0.0), Some(2.0)),
                    "3 ms lands between 2 and 5 ms"
                );
            }
            other => panic!("expected a histogram, got {other:?}"),
        }
        assert!(value(&exp, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 0.0);
        assert!(value(&exp, "process_threads", &[]).unwrap_or(0.0) >= 1.0);
        assert!(value(&exp, "process_cpu_seconds", &[]).is_some());
    }

    #[test]
    fn tenants_past_the_limit_share_one_label() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 2,
            ..MetricsConfig::default()
        });
        for t in ["t1", "t2", "t3", "t4", "t1"] {
            m.observe_http(&obs(Some(t), "/x", 200));
        }
        let exp = parse(&m.encode());
        assert_eq!(
            value(&exp, "http_requests", &[("tenant_id", "t1")]),
            Some(2.0)
        );
        assert_eq!(value(&exp, "http_requests", &[("tenant_id", "t3")]), None);
        assert_eq!(
            value(&exp, "http_requests", &[("tenant_id", tenants::OTHER)]),
            Some(2.0)
        );
    }

    #[test]
    fn unknown_methods_are_folded() {
        assert_eq!(bounded_method("GET"), "GET");
        assert_eq!(bounded_method("BREW"), "OTHER");
    }

    #[test]
    fn in_flight_guard_decrements_on_drop() {
        let m = Metrics::new(MetricsConfig::default());
        let a = m.request_started();
        let b = m.request_started();
        assert_eq!(m.summary().requests_in_flight, 2);
        drop(a);
        drop(b);
        assert_eq!(m.summary().requests_in_flight, 0);
    }
}
