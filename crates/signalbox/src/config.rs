//! Configuration: built-in defaults < TOML file (`--config`) < environment < command-line flags.
//! Clap applies the last two (each flag names its variable in `--help`); this module reads the
//! file and fills what neither set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// The config file. Every key is optional; unknown keys are an error naming the key.
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// data_dir = "/var/lib/signalbox"
/// database_url = "postgres://signalbox@db/signalbox"
/// database_schema = "signalbox"
/// redis_url = "redis://127.0.0.1:6379"
/// nats_url = "nats://127.0.0.1:4222"
/// log_format = "json"
/// demo = false
///
/// [http]
/// body_limit_bytes = 1048576
/// request_timeout = "30s"
/// shutdown_grace = "30s"
/// trusted_proxies = ["10.0.0.0/8"]   # Forwarded / X-Forwarded-For believed only from these
/// header_read_timeout = "10s"        # a request head must arrive within this
/// idle_timeout = "60s"               # keep-alive connections quiet longer are closed
/// max_connections = 10000            # more are closed as soon as they are accepted
///
/// [auth]
/// cache_ttl = "5s"
///
/// [database]
/// pool_size = 20                     # connections per pool (primary, and replica if any)
/// acquire_timeout = "5s"             # wait for a free connection, then 503 database_busy
/// idle_timeout = "10m"               # "0s": keep idle connections
/// max_lifetime = "1h"                # "0s": never recycle
/// statement_timeout = "30s"          # then 503 database_timeout; "0s": none
/// slow_query_threshold = "1s"
/// read_url = "postgres://signalbox@db-replica/signalbox"  # read replica (PostgreSQL only)
///
/// [metrics]
/// tenant_label_limit = 100
/// token = "a-long-random-string"     # /metrics then needs Authorization: Bearer <token>
///
/// [weber]
/// event_log = "file"          # or "nats" (JetStream at nats_url)
/// event_log_stream = "signalbox_interactions"   # the JetStream stream (nats only)
/// profile_cache_ttl = "30s"
/// profile_cache_capacity = 200000   # 0: no read cache
///
/// [cache]
/// backend = "redis"                  # or "memory" (default); redis needs redis_url
/// key_prefix = "signalbox:cache:"
///
/// [cors]
/// allow_origins = ["https://app.example.com"]   # or ["*"]; default: none (CORS off)
/// max_age = "10m"
///
/// [console]
/// idle_timeout = "30m"               # a session unused this long is signed out
/// max_lifetime = "12h"               # and every session after this long
/// secure_cookie = true               # behind TLS: the cookie goes over HTTPS only
///
/// [predictions]
/// churn_horizon_days = 30            # churn risk: no purchase within this many days
/// clv_months = 12                    # CLV horizon
/// monthly_discount_rate = 0.01
/// recommendations = "/etc/signalbox/recommendations.toml" # default: the documented table
///
/// [forecast]
/// index = "/srv/signalbox/forecast"   # default: DATA_DIR/forecast (demo model)
/// cache_ttl = "10m"
/// cache_capacity = 10000             # 0: no forecast cache
/// rewarm_interval = "5m"             # "0s": no periodic re-warming
/// memory_budget = "2GiB"             # refuse a larger model at start; default: none
///
/// [flags]
/// refresh_interval = "1s"            # how soon changes made elsewhere are served
///
/// [rate_limits]
/// rules = "/etc/signalbox/limits.toml" # or "off"; default: the shipped seed 002 rules
/// tenants_dir = "/etc/signalbox/limits.d" # TENANT_ID.toml: a tenant's own rules
/// backend = "redis"                  # or "memory" (default); redis needs redis_url
/// key_prefix = "signalbox:rl"
/// max_keys_per_rule = 100000
/// legacy_headers = false             # also send X-RateLimit-*
/// grpc_listen = "127.0.0.1:8081"     # Envoy RateLimitService (off unless set)
/// grpc_domain = "signalbox"          # the domain Envoy's requests must name
///
/// [llm]
/// prices = "/etc/signalbox/prices.toml" # default: the shipped price table
/// default_prices = true              # false: only tenants' own prices apply
/// retention_days = 90                # raw events older are purged (rollups stay); default: keep
/// purge_interval = "1h"
/// max_events_per_request = 10000     # POST /api/v1/llm/events; more is 413
/// max_spans_per_request = 50000      # POST /v1/traces; more is 413
/// body_limit_bytes = 8388608         # both LLM ingest routes, after gzip; more is 413
/// usage_cache_ttl = "15m"            # usage answers; this server's ingest drops them at once
///
/// [jobs]
/// workers = true                     # serve also works jobs; `signalbox jobs work` always does
/// lease = "30s"                      # a worker silent this long is presumed dead
/// poll_interval = "1s"               # idle queues ask the database this often
/// shutdown_grace = "30s"             # running jobs may finish this long, then are given back
/// keep_finished = "7days"            # finished jobs are deleted this long after they finished
/// forecast_data_dir = "/srv/signalbox/forecast-data"  # forecast.rebuild reads only here
///
/// [jobs.queues.bulk]                 # critical, high, normal, low or bulk; seed 002's defaults
/// max_workers = 5                    # jobs of this queue one process runs at once (0: none)
/// rate_per_minute = 50               # starts per minute per process (0: unlimited)
/// timeout = "2h"                     # an attempt's hard time limit (soft: 60 s earlier)
/// max_retries = 1
/// retry_delay = "10m"                # first retry's delay; doubles up to 10 minutes
/// prefetch = 1                       # jobs claimed per round trip
/// ```
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_schema: Option<String>,
    pub redis_url: Option<String>,
    pub nats_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub demo: Option<bool>,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub weber: WeberSection,
    #[serde(default)]
    pub forecast: ForecastSection,
    #[serde(default)]
    pub flags: FlagsSection,
    #[serde(default)]
    pub rate_limits: RateLimitsSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub cors: CorsSection,
    #[serde(default)]
    pub console: ConsoleSection,
    #[serde(default)]
    pub predictions: PredictionsSection,
    #[serde(default)]
    pub llm: LlmSection,
    #[serde(default)]
    pub jobs: JobsSection,
}

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Service URLs may carry passwords, like the replica URL and the scrape token.
        f.debug_struct("FileConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("database_schema", &self.database_schema)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("nats_url", &self.nats_url.as_ref().map(|_| "<set>"))
            .field("log_format", &self.log_format)
            .field("demo", &self.demo)
            .field("http", &self.http)
            .field("auth", &self.auth)
            .field("database", &self.database)
            .field("metrics", &self.metrics)
            .field("weber", &self.weber)
            .field("forecast", &self.forecast)
            .field("flags", &self.flags)
            .field("rate_limits", &self.rate_limits)
            .field("cache", &self.cache)
            .field("cors", &self.cors)
            .field("console", &self.console)
            .field("predictions", &self.predictions)
            .field("llm", &self.llm)
            .field("jobs", &self.jobs)
            .finish()
    }
}

/// Background jobs: whether `serve` works them, the runtime's timings, per-queue overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    pub workers: Option<bool>,
    #[serde(default, with = "humantime_serde_opt")]
    pub lease: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub keep_finished: Option<Duration>,
    pub forecast_data_dir: Option<PathBuf>,
    /// By queue name (`critical` … `bulk`); an unknown name is refused when settings are built.
    #[serde(default)]
    pub queues: std::collections::BTreeMap<String, QueueOverride>,
}

/// One queue's settings that differ from seed 002's.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOverride {
    pub max_workers: Option<u32>,
    pub rate_per_minute: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub retry_delay: Option<Duration>,
    pub prefetch: Option<u32>,
}

/// LLM observability (seed 003): prices, retention and ingest limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    pub prices: Option<PathBuf>,
    pub default_prices: Option<bool>,
    pub retention_days: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub purge_interval: Option<Duration>,
    pub max_events_per_request: Option<usize>,
    pub max_spans_per_request: Option<usize>,
    pub body_limit_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    pub usage_cache_ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub max_age: Option<Duration>,
}

/// Weber predictions: the churn horizon, CLV months and discount rate, and the recommendation
/// table (a TOML file of the default table's shape, validated at start).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionsSection {
    pub churn_horizon_days: Option<u32>,
    pub clv_months: Option<u32>,
    pub monthly_discount_rate: Option<f64>,
    pub recommendations: Option<PathBuf>,
}

/// The web console's sessions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    #[serde(default, with = "humantime_serde_opt")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub max_lifetime: Option<Duration>,
    pub secure_cookie: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    pub backend: Option<CacheBackendKind>,
    pub key_prefix: Option<String>,
}

/// Where the read cache keeps its shared layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackendKind {
    /// In this process only.
    Memory,
    /// In memory in front of Redis at REDIS_URL (replicas share the Redis copies).
    Redis,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSection {
    pub rules: Option<String>,
    pub tenants_dir: Option<PathBuf>,
    pub backend: Option<RateLimitBackendKind>,
    pub key_prefix: Option<String>,
    pub max_keys_per_rule: Option<usize>,
    pub legacy_headers: Option<bool>,
    pub grpc_listen: Option<SocketAddr>,
    pub grpc_domain: Option<String>,
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackendKind {
    /// In this process (each replica counts on its own).
    Memory,
    /// On Redis at REDIS_URL (one limit for every replica).
    Redis,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsSection {
    #[serde(default, with = "humantime_serde_opt")]
    pub refresh_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSection {
    pub index: Option<PathBuf>,
    #[serde(default, with = "humantime_serde_opt")]
    pub cache_ttl: Option<Duration>,
    pub cache_capacity: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    pub rewarm_interval: Option<Duration>,
    #[serde(default, with = "byte_size_opt")]
    pub memory_budget: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeberSection {
    pub event_log: Option<EventLogKind>,
    pub event_log_stream: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub profile_cache_ttl: Option<Duration>,
    pub profile_cache_capacity: Option<u64>,
}

/// Where ingested interactions travel to the profile worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EventLogKind {
    /// A durable log in DATA_DIR/events (one process).
    File,
    /// NATS JetStream at NATS_URL (replicas share it).
    Nats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub body_limit_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    pub request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub shutdown_grace: Option<Duration>,
    /// CIDR blocks of the proxies whose forwarding headers name the client.
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde_opt")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub idle_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default, with = "humantime_serde_opt")]
    pub cache_ttl: Option<Duration>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub tenant_label_limit: Option<usize>,
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSection")
            .field("tenant_label_limit", &self.tenant_label_limit)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Connection pools, timeouts and the read replica (seed 002's database settings).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub pool_size: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub acquire_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub max_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub statement_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub slow_query_threshold: Option<Duration>,
    pub read_url: Option<String>,
}

impl std::fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The replica URL may carry a password.
        f.debug_struct("DatabaseSection")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("statement_timeout", &self.statement_timeout)
            .field("slow_query_threshold", &self.slow_query_threshold)
            .field("read_url", &self.read_url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl FileConfig {
    /// Reads `path`, or returns the empty config when no file was given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("config: cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // toml's message spans several lines with a source excerpt; keep the first.
            let first = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            anyhow::anyhow!("config: {}{at}: {first}", path.display())
        })
    }
}

/// Durations in the file are written like `30s`, `500ms` or `2m`.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A size in bytes: a whole number of bytes (`1048576`), or a number with a unit, decimal
/// (`kB`, `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`, `TiB`: powers of
/// 1024), as in `2GiB` or `1.5 GB`. Units are case-insensitive except that `b` is not `B`.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let bad = || {
        format!(
            "'{text}' is not a byte size; give bytes (1048576) or a number with a unit (512MiB, 2GiB, \
             1.5GB)"
        )
    };
    if number.is_empty() {
        return Err(bad());
    }
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" if unit != "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(scale).ok_or_else(bad);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * scale as f64).round();
    if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(bad())
    }
}

/// Sizes in the file are a whole number of bytes or a string such as `"2GiB"`.
mod byte_size_opt {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Size>::deserialize(d)? {
            None => Ok(None),
            Some(Size::Bytes(n)) => Ok(Some(n)),
            Some(Size::Text(t)) => super::parse_byte_size(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_settings_parse_with_sizes_as_text_or_bytes() {
        let c = parse(
            "[forecast]\ncache_ttl = \"10m\"\nrewarm_interval = \"0s\"\nmemory_budget = \"2GiB\"\n",
        )
        .unwrap();
        assert_eq!(c.forecast.rewarm_interval, Some(Duration::ZERO));
        assert_eq!(c.forecast.memory_budget, Some(2 << 30));
        let c = parse("[forecast]\nmemory_budget = 1000\n").unwrap();
        assert_eq!(c.forecast.memory_budget, Some(1000));
        let e = parse("[forecast]\nmemory_budget = \"lots\"\n").unwrap_err();
        assert!(e.contains("not a byte size"), "{e}");
    }

    #[test]
    fn byte_sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_byte_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("2 gib"), Ok(2 << 30));
        assert_eq!(parse_byte_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("10B"), Ok(10));
        for bad in ["", "GiB", "2 GiBs", "2b", "-1", "1.2.3MB", "99999999999TiB"] {
            let e = parse_byte_size(bad).unwrap_err();
            assert!(e.contains("not a byte size"), "{bad}: {e}");
        }
    }

    fn parse(text: &str) -> Result<FileConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signalbox.toml");
        std::fs::write(&path, text).unwrap();
        FileConfig::load(Some(&path)).map_err(|e| e.to_string())
    }

    #[test]
    fn debug_never_shows_a_service_url_or_token() {
        let file = parse(
            "database_url = \"postgres://u:hunter2@db/x\"\nredis_url = \"redis://:hunter3@r\"\n\
             nats_url = \"nats://u:hunter4@n\"\n[database]\nread_url = \"postgres://u:hunter5@r/x\"\n\
             [metrics]\ntoken = \"hunter6\"\n",
        )
        .unwrap();
        let shown = format!("{file:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("database_url: Some(\"<set>\")"), "{shown}");
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(
            r#"
            listen = "0.0.0.0:9000"
            log_format = "json"
            [http]
            request_timeout = "2s"
            body_limit_bytes = 10
            header_read_timeout = "3s"
            idle_timeout = "1m"
            max_connections = 50
            [auth]
            cache_ttl = "500ms"
            [database]
            pool_size = 4
            statement_timeout = "250ms"
            max_lifetime = "0s"
            read_url = "postgres://replica/db"
            [metrics]
            tenant_label_limit = 3
            token = "t0ken"
            [llm]
            prices = "/etc/prices.toml"
            default_prices = false
            retention_days = 90
            purge_interval = "1h"
            max_events_per_request = 100
            max_spans_per_request = 200
            body_limit_bytes = 4096
            usage_cache_ttl = "15m"
            [jobs]
            workers = false
            lease = "10s"
            keep_finished = "7days"
            [jobs.queues.bulk]
            max_workers = 2
            retry_delay = "100ms"
            "#,
        )
        .unwrap();
        assert_eq!(c.jobs.workers, Some(false));
        assert_eq!(c.jobs.lease, Some(Duration::from_secs(10)));
        assert_eq!(c.jobs.keep_finished, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.jobs.queues["bulk"].max_workers, Some(2));
        assert_eq!(
            c.jobs.queues["bulk"].retry_delay,
            Some(Duration::from_millis(100))
        );
        assert_eq!(c.listen, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.http.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.http.header_read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.http.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.http.max_connections, Some(50));
        assert_eq!(c.auth.cache_ttl, Some(Duration::from_millis(500)));
        assert_eq!(c.metrics.tenant_label_limit, Some(3));
        assert_eq!(c.llm.prices.as_deref(), Some(Path::new("/etc/prices.toml")));
        assert_eq!(c.llm.default_prices, Some(false));
        assert_eq!(c.llm.retention_days, Some(90));
        assert_eq!(c.llm.purge_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.llm.max_events_per_request, Some(100));
        assert_eq!(c.llm.max_spans_per_request, Some(200));
        assert_eq!(c.llm.body_limit_bytes, Some(4096));
        assert_eq!(c.llm.usage_cache_ttl, Some(Duration::from_secs(900)));
        assert_eq!(c.metrics.token.as_deref(), Some("t0ken"));
        assert_eq!(c.database.pool_size, Some(4));
        assert_eq!(
            c.database.statement_timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(c.database.max_lifetime, Some(Duration::ZERO));
        assert_eq!(
            c.database.read_url.as_deref(),
            Some("postgres://replica/db")
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("t0ken") && !debug.contains("replica/db"),
            "{debug}"
        );
    }

    #[test]
    fn mistakes_are_named_on_one_line() {
        let e = parse("listne = \"x\"").unwrap_err();
        assert!(
            e.contains("unknown field `listne`") && !e.contains('\n'),
            "{e}"
        );
        let e = parse("[http]\nrequest_timeout = \"soon\"").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("listen = \"not an address\"").unwrap_err();
        assert!(e.contains("invalid socket address"), "{e}");
        assert!(FileConfig::load(Some(Path::new("/nonexistent/x.toml"))).is_err());
    }
}
