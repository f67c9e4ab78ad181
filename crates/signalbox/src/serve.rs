//! `signalbox serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use server::{AppState, ServerConfig};

use crate::Common;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SIGNALBOX_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Redis: checked by /ready, and the shared rate-limit store with --rate-limit-backend redis.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    redis_url: Option<String>,
    /// NATS to check in /ready (and, in later releases, carry the event stream).
    #[arg(long, env = "NATS_URL", hide_env_values = true, value_name = "URL")]
    nats_url: Option<String>,
    /// Largest accepted request body in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "SIGNALBOX_BODY_LIMIT_BYTES", value_name = "BYTES")]
    body_limit_bytes: Option<usize>,
    /// Requests running longer get 503 [default: 30s].
    #[arg(long, env = "SIGNALBOX_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    request_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish [default: 30s].
    #[arg(long, env = "SIGNALBOX_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    shutdown_grace: Option<Duration>,
    /// Proxies (load balancers, Envoy) whose `Forwarded` / `X-Forwarded-For` name the client,
    /// as comma-separated CIDR blocks, e.g. `10.0.0.0/8,2001:db8::/32`; from any other peer
    /// those headers are ignored and the peer is the client [default: none].
    #[arg(long, env = "SIGNALBOX_TRUSTED_PROXIES", value_parser = parse_trusted_proxies, value_name = "CIDR,...")]
    trusted_proxies: Option<server::TrustedProxies>,
    /// How long a client has to send a complete request head, from its first byte (a new
    /// connection: from being accepted); slower ones are disconnected [default: 10s].
    #[arg(long, env = "SIGNALBOX_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    header_read_timeout: Option<Duration>,
    /// Keep-alive connections with no request for this long are closed [default: 60s].
    #[arg(long, env = "SIGNALBOX_IDLE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    idle_timeout: Option<Duration>,
    /// Most HTTP connections open at once; further ones are closed as soon as they are
    /// accepted, and counted in http_connections_closed_total{reason="over_limit"}
    /// [default: 10000].
    #[arg(long, env = "SIGNALBOX_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// How long a verified API key is trusted before the store is asked again; keys revoked by
    /// another process stop working within this time [default: 5s].
    #[arg(long, env = "SIGNALBOX_AUTH_CACHE_TTL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    auth_cache_ttl: Option<Duration>,
    /// Tenants with their own `tenant_id` metric label; the rest are counted as `other` [default: 100].
    #[arg(long, env = "SIGNALBOX_TENANT_LABEL_LIMIT", value_name = "N")]
    tenant_label_limit: Option<usize>,
    /// Where ingested interactions travel to the profile worker: `file` (DATA_DIR/events, one
    /// process) or `nats` (JetStream at NATS_URL, for replicas) [default: file].
    #[arg(long, env = "SIGNALBOX_EVENT_LOG", value_enum, value_name = "KIND")]
    event_log: Option<crate::config::EventLogKind>,
    /// The JetStream stream of `--event-log nats` (its subject is `signalbox.<stream>`); 1 to 64
    /// of `[A-Za-z0-9_-]`. Replicas that share the log name the same stream; deployments (or
    /// tests) sharing one NATS name their own [default: signalbox_interactions].
    #[arg(long, env = "SIGNALBOX_EVENT_LOG_STREAM", value_name = "NAME")]
    event_log_stream: Option<String>,
    /// How long a profile read is cached. This process's own updates replace entries at once;
    /// with --cache-backend redis, other replicas' updates are announced over Redis pub/sub and
    /// drop the copy here at once (docs/cache.md gives the bound); otherwise they show within
    /// this time [default: 30s].
    #[arg(long, env = "SIGNALBOX_PROFILE_CACHE_TTL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    profile_cache_ttl: Option<Duration>,
    /// Profiles kept in the read cache's memory layer (each budgeted 512 bytes); 0 turns the
    /// cache off (every read asks the store) [default: 200000].
    #[arg(long, env = "SIGNALBOX_PROFILE_CACHE_CAPACITY", value_name = "N")]
    profile_cache_capacity: Option<u64>,
    /// Forecast model directory (from `signalbox forecast build`), loaded at start; a missing or
    /// corrupt file stops the start with its path [default: DATA_DIR/forecast, built from the
    /// bundled 2013 NYC data on first start when --demo is on].
    #[arg(long, env = "SIGNALBOX_FORECAST_INDEX", value_name = "DIR")]
    forecast_index: Option<std::path::PathBuf>,
    /// How long a computed forecast is served from the cache [default: 10m].
    #[arg(long, env = "SIGNALBOX_FORECAST_CACHE_TTL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    forecast_cache_ttl: Option<Duration>,
    /// Most forecasts kept in the cache; 0 turns the cache off [default: 10000].
    #[arg(long, env = "SIGNALBOX_FORECAST_CACHE_CAPACITY", value_name = "N")]
    forecast_cache_capacity: Option<u64>,
    /// How often the popular forecast configurations are recomputed in the background, keeping
    /// the index pages resident and the cache filled; 0 turns it off [default: 5m].
    #[arg(long, env = "SIGNALBOX_FORECAST_REWARM_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    forecast_rewarm_interval: Option<Duration>,
    /// Most memory the forecast model may need resident (its searched structures and series):
    /// a larger model stops the start, naming both figures. Bytes, or with a unit: 512MiB, 2GiB,
    /// 1.5GB [default: no limit].
    #[arg(long, env = "SIGNALBOX_FORECAST_MEMORY_BUDGET", value_parser = crate::config::parse_byte_size, value_name = "BYTES")]
    forecast_memory_budget: Option<u64>,
    /// How often flags are checked against the database, so changes made by another replica or
    /// by `signalbox flags import` are served and streamed [default: 1s].
    #[arg(long, env = "SIGNALBOX_FLAG_REFRESH_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    flag_refresh_interval: Option<Duration>,
    /// Rate-limit rules: a TOML file (format: docs/limits.md), or `off`; a malformed file stops
    /// the start with its line and field [default: the shipped seed 002 rules].
    #[arg(long, env = "SIGNALBOX_RATE_LIMITS", value_name = "FILE|off")]
    rate_limits: Option<String>,
    /// A directory of tenants' own rule files, `TENANT_ID.toml` each (same format); a tenant's
    /// file replaces the default rules for its requests [default: none].
    #[arg(long, env = "SIGNALBOX_RATE_LIMITS_DIR", value_name = "DIR")]
    rate_limits_dir: Option<std::path::PathBuf>,
    /// Where rate-limit counters live: `memory` (this process) or `redis` (shared by every
    /// replica; needs --redis-url) [default: memory].
    #[arg(
        long,
        env = "SIGNALBOX_RATE_LIMIT_BACKEND",
        value_enum,
        value_name = "KIND"
    )]
    rate_limit_backend: Option<crate::config::RateLimitBackendKind>,
    /// Prefix of the rate-limit keys in Redis, used as a Redis Cluster hash tag
    /// [default: signalbox:rl].
    #[arg(long, env = "SIGNALBOX_RATE_LIMIT_KEY_PREFIX", value_name = "PREFIX")]
    rate_limit_key_prefix: Option<String>,
    /// Where the profile read cache keeps its shared layer: `memory` (this process only) or
    /// `redis` (memory in front of Redis, shared by every replica; needs --redis-url)
    /// [default: memory].
    #[arg(long, env = "SIGNALBOX_CACHE_BACKEND", value_enum, value_name = "KIND")]
    cache_backend: Option<crate::config::CacheBackendKind>,
    /// Prefix of the read cache's keys in Redis [default: signalbox:cache:].
    #[arg(long, env = "SIGNALBOX_CACHE_KEY_PREFIX", value_name = "PREFIX")]
    cache_key_prefix: Option<String>,
    /// Most keys each rule's in-memory limiter holds; the least recently used is evicted past it
    /// [default: 100000].
    #[arg(long, env = "SIGNALBOX_RATE_LIMIT_MAX_KEYS", value_name = "N")]
    rate_limit_max_keys: Option<usize>,
    /// Also send X-RateLimit-Limit / -Remaining / -Reset [default: false].
    #[arg(long, env = "SIGNALBOX_RATE_LIMIT_LEGACY_HEADERS", value_name = "BOOL")]
    rate_limit_legacy_headers: Option<bool>,
    /// Serve Envoy's gRPC RateLimitService (ShouldRateLimit) on this address, sharing the HTTP
    /// server's counters; no authentication, so bind it to a private address [default: off].
    #[arg(long, env = "SIGNALBOX_RATE_LIMIT_GRPC_LISTEN", value_name = "ADDR")]
    rate_limit_grpc_listen: Option<SocketAddr>,
    /// The domain Envoy's rate-limit requests must name [default: signalbox].
    #[arg(long, env = "SIGNALBOX_RATE_LIMIT_GRPC_DOMAIN", value_name = "DOMAIN")]
    rate_limit_grpc_domain: Option<String>,
    /// A browser origin allowed to call the API (CORS), exactly as browsers send it
    /// (`https://app.example.com`, `http://127.0.0.1:3000`), or `*` for any; repeat the flag or
    /// separate with commas. Preflights are answered without a key; `ETag` and the rate-limit
    /// headers are exposed to scripts [default: none, CORS off].
    #[arg(
        long = "cors-allow-origin",
        env = "SIGNALBOX_CORS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    cors_allow_origins: Vec<String>,
    /// How long browsers may reuse a preflight answer [default: 10m].
    #[arg(long, env = "SIGNALBOX_CORS_MAX_AGE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    cors_max_age: Option<Duration>,
    /// A web console session unused for this long is signed out [default: 30m].
    #[arg(long, env = "SIGNALBOX_CONSOLE_IDLE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    console_idle_timeout: Option<Duration>,
    /// A web console session is signed out this long after sign-in, however busy [default: 12h].
    #[arg(long, env = "SIGNALBOX_CONSOLE_MAX_LIFETIME", value_parser = humantime::parse_duration, value_name = "DURATION")]
    console_max_lifetime: Option<Duration>,
    /// Mark the console's session cookie `Secure` (sent over HTTPS only): turn on whenever the
    /// console is reached over TLS, directly or through a proxy [default: false].
    #[arg(long, env = "SIGNALBOX_CONSOLE_SECURE_COOKIE", value_name = "BOOL")]
    console_secure_cookie: Option<bool>,
    /// Most open database connections, per pool (the primary's, and the read replica's if
    /// any) [default: 20].
    #[arg(long, env = "SIGNALBOX_DATABASE_POOL_SIZE", value_name = "N")]
    database_pool_size: Option<u32>,
    /// How long a query waits for a free connection before the request gets 503
    /// `database_busy` [default: 5s].
    #[arg(long, env = "SIGNALBOX_DATABASE_ACQUIRE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    database_acquire_timeout: Option<Duration>,
    /// Idle connections are closed after this long; 0s keeps them [default: 10m].
    #[arg(long, env = "SIGNALBOX_DATABASE_IDLE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    database_idle_timeout: Option<Duration>,
    /// Connections are replaced after this long; 0s never [default: 1h].
    #[arg(long, env = "SIGNALBOX_DATABASE_MAX_LIFETIME", value_parser = humantime::parse_duration, value_name = "DURATION")]
    database_max_lifetime: Option<Duration>,
    /// Longest a database statement may run before it is cancelled and the request gets 503
    /// `database_timeout`; on SQLite it bounds waits for another writer's lock. 0s: no limit
    /// [default: 30s].
    #[arg(long, env = "SIGNALBOX_DATABASE_STATEMENT_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    database_statement_timeout: Option<Duration>,
    /// Queries taking at least this long are logged and counted in
    /// database_slow_queries_total [default: 1s].
    #[arg(long, env = "SIGNALBOX_DATABASE_SLOW_QUERY_THRESHOLD", value_parser = humantime::parse_duration, value_name = "DURATION")]
    database_slow_query_threshold: Option<Duration>,
    /// A PostgreSQL read replica for reads that tolerate replication lag (segment pages and
    /// statistics, profiles by id list, audit and calculation history, experiment analysis);
    /// while it is unreachable those reads go to the primary [default: none].
    #[arg(
        long,
        env = "SIGNALBOX_DATABASE_READ_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_read_url: Option<String>,
    /// Require `Authorization: Bearer <TOKEN>` on /metrics (its series carry tenant ids).
    /// Prefer the environment variable or the config file: a command-line value is visible
    /// to other local users [default: none, /metrics is open].
    #[arg(
        long,
        env = "SIGNALBOX_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    metrics_token: Option<String>,
    /// The default LLM price table, a TOML file (format: docs/llm-prices.md); a malformed file
    /// stops the start naming the field [default: the shipped table].
    #[arg(long, env = "SIGNALBOX_LLM_PRICES", value_name = "FILE")]
    llm_prices: Option<std::path::PathBuf>,
    /// Whether default prices apply at all; `false` prices only what tenants set themselves
    /// (PUT /api/v1/llm/prices) [default: true].
    #[arg(long, env = "SIGNALBOX_LLM_DEFAULT_PRICES", value_name = "BOOL")]
    llm_default_prices: Option<bool>,
    /// Raw LLM events older than this many days are purged (daily rollups, budgets and
    /// crossings stay) [default: keep everything].
    #[arg(long, env = "SIGNALBOX_LLM_RETENTION_DAYS", value_name = "DAYS")]
    llm_retention_days: Option<u32>,
    /// How often the LLM retention purge runs [default: 1h].
    #[arg(long, env = "SIGNALBOX_LLM_PURGE_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    llm_purge_interval: Option<Duration>,
    /// Most events in one POST /api/v1/llm/events; more is 413 [default: 10000].
    #[arg(long, env = "SIGNALBOX_LLM_MAX_EVENTS", value_name = "N")]
    llm_max_events: Option<usize>,
    /// Most spans in one POST /v1/traces; more is 413 [default: 50000].
    #[arg(long, env = "SIGNALBOX_LLM_MAX_SPANS", value_name = "N")]
    llm_max_spans: Option<usize>,
    /// Largest body of the LLM ingest routes, after gzip is undone; more is 413
    /// [default: 8388608].
    #[arg(long, env = "SIGNALBOX_LLM_BODY_LIMIT_BYTES", value_name = "BYTES")]
    llm_body_limit_bytes: Option<usize>,
    /// How long a usage answer may be served from the cache; this server's own ingest drops a
    /// tenant's answers at once, ingest on other replicas shows within this time [default: 15m].
    #[arg(long, env = "SIGNALBOX_LLM_USAGE_CACHE_TTL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    llm_usage_cache_ttl: Option<Duration>,
    /// Create a `demo` tenant on first start and write its key to DATA_DIR/demo-tenant.json
    /// [default: true on the embedded database, false on PostgreSQL].
    #[arg(long, env = "SIGNALBOX_DEMO", value_name = "BOOL")]
    demo: Option<bool>,
    /// Also work background jobs in this process (claim loops per queue, schedules, lost-lease
    /// rescue); `false` leaves them to `signalbox jobs work` processes [default: true].
    #[arg(long, env = "SIGNALBOX_JOBS_WORKERS", value_name = "BOOL")]
    jobs_workers: Option<bool>,
    #[command(flatten)]
    jobs: crate::jobs_worker::JobArgs,
    #[command(flatten)]
    custody: crate::custody_cmd::CustodyArgs,
}

fn parse_trusted_proxies(text: &str) -> Result<server::TrustedProxies, String> {
    text.parse()
        .map_err(|e: server::client_addr::CidrError| e.to_string())
}

/// The trusted proxies from the flag, else the config file's `[http] trusted_proxies`.
fn trusted_proxies(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
) -> anyhow::Result<server::TrustedProxies> {
    if let Some(proxies) = &args.trusted_proxies {
        return Ok(proxies.clone());
    }
    match &file.http.trusted_proxies {
        Some(list) => list
            .join(",")
            .parse()
            .map_err(|e| anyhow::anyhow!("config file: http.trusted_proxies: {e}")),
        None => Ok(server::TrustedProxies::none()),
    }
}

/// The rate-limit settings from flags, the config file and the defaults. The rules file is read
/// and validated here, so a bad one stops the start naming the file, line and field.
fn rate_limit_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
    defaults: &server::RateLimitSettings,
) -> anyhow::Result<server::RateLimitSettings> {
    let section = &file.rate_limits;
    let config = match args.rate_limits.as_deref().or(section.rules.as_deref()) {
        None => defaults.config.clone(),
        Some("off") => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("rate limits: cannot read {path}"))?;
            Some(
                limits::Config::parse(path, &text)
                    .map_err(|e| anyhow::anyhow!("rate limits: {e}"))?,
            )
        }
    };
    let tenant_configs = match args
        .rate_limits_dir
        .as_deref()
        .or(section.tenants_dir.as_deref())
    {
        Some(dir) if config.is_some() => tenant_rule_files(dir)?,
        Some(dir) => anyhow::bail!(
            "rate limits: tenants' rule files in {} need rate limits on (--rate-limits is off)",
            dir.display()
        ),
        None => Default::default(),
    };
    let backend = match args
        .rate_limit_backend
        .or(section.backend)
        .unwrap_or(crate::config::RateLimitBackendKind::Memory)
    {
        crate::config::RateLimitBackendKind::Memory => server::RateLimitBackend::Memory,
        crate::config::RateLimitBackendKind::Redis => {
            let url = args
                .redis_url
                .clone()
                .or_else(|| file.redis_url.clone())
                .context("rate limits: --rate-limit-backend redis needs --redis-url (REDIS_URL)")?;
            server::RateLimitBackend::Redis {
                url,
                key_prefix: args
                    .rate_limit_key_prefix
                    .clone()
                    .or_else(|| section.key_prefix.clone())
                    .unwrap_or_else(|| "signalbox:rl".to_owned()),
            }
        }
    };
    let max_keys_per_rule = args
        .rate_limit_max_keys
        .or(section.max_keys_per_rule)
        .unwrap_or(defaults.max_keys_per_rule);
    if max_keys_per_rule == 0 {
        anyhow::bail!("rate limits: max keys per rule must be more than zero");
    }
    Ok(server::RateLimitSettings {
        config,
        tenant_configs,
        backend,
        max_keys_per_rule,
        legacy_headers: args
            .rate_limit_legacy_headers
            .or(section.legacy_headers)
            .unwrap_or(defaults.legacy_headers),
        ..defaults.clone()
    })
}

/// The Envoy rate-limit service's address and domain, when it is to be served. Checked before
/// anything starts: it needs rate limits on, and Envoy refuses an empty domain.
fn envoy_rls_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
    rate_limits_on: bool,
) -> anyhow::Result<Option<(SocketAddr, String)>> {
    let section = &file.rate_limits;
    let Some(addr) = args.rate_limit_grpc_listen.or(section.grpc_listen) else {
        return Ok(None);
    };
    if !rate_limits_on {
        anyhow::bail!(
            "rate limits: --rate-limit-grpc-listen {addr} serves Envoy's rate-limit service, \
             which needs rate limits on, but --rate-limits is `off`; turn them on or drop the \
             gRPC listener"
        );
    }
    let domain = args
        .rate_limit_grpc_domain
        .clone()
        .or_else(|| section.grpc_domain.clone())
        .unwrap_or_else(|| server::envoy_rls::DEFAULT_DOMAIN.to_owned());
    if domain.is_empty() {
        anyhow::bail!("rate limits: the gRPC domain must not be empty (Envoy requires one)");
    }
    Ok(Some((addr, domain)))
}

/// The connection limits from flags and the `[http]` section.
fn connection_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
    defaults: &server::ConnectionSettings,
) -> anyhow::Result<server::ConnectionSettings> {
    let settings = server::ConnectionSettings {
        header_read_timeout: args
            .header_read_timeout
            .or(file.http.header_read_timeout)
            .unwrap_or(defaults.header_read_timeout),
        idle_timeout: args
            .idle_timeout
            .or(file.http.idle_timeout)
            .unwrap_or(defaults.idle_timeout),
        max_connections: args
            .max_connections
            .or(file.http.max_connections)
            .unwrap_or(defaults.max_connections),
    };
    if settings.header_read_timeout.is_zero() {
        anyhow::bail!("header read timeout: must be more than zero");
    }
    if settings.idle_timeout.is_zero() {
        anyhow::bail!("idle timeout: must be more than zero");
    }
    if !(1..=1_000_000).contains(&settings.max_connections) {
        anyhow::bail!("max connections: must be 1 to 1000000");
    }
    Ok(settings)
}

/// The read cache's layers from flags and the `[cache]` section.
fn read_cache_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
) -> anyhow::Result<server::ReadCacheSettings> {
    let backend = args
        .cache_backend
        .or(file.cache.backend)
        .unwrap_or(crate::config::CacheBackendKind::Memory);
    let redis_url = match backend {
        crate::config::CacheBackendKind::Memory => None,
        crate::config::CacheBackendKind::Redis => Some(
            args.redis_url
                .clone()
                .or_else(|| file.redis_url.clone())
                .context("cache: --cache-backend redis needs --redis-url (REDIS_URL)")?,
        ),
    };
    let key_prefix = args
        .cache_key_prefix
        .clone()
        .or_else(|| file.cache.key_prefix.clone())
        .unwrap_or_else(|| server::ReadCacheSettings::DEFAULT_KEY_PREFIX.to_owned());
    Ok(server::ReadCacheSettings {
        redis_url,
        key_prefix,
    })
}

/// Reads every `TENANT_ID.toml` in `dir`; a malformed one stops the start naming its file,
/// line and field.
fn tenant_rule_files(
    dir: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, limits::Config>> {
    let mut configs = std::collections::BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("rate limits: cannot read the directory {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("rate limits: cannot read the directory {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let tenant = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("rate limits: {}: not a tenant id", path.display()))?
            .to_owned();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("rate limits: cannot read {}", path.display()))?;
        let config = limits::Config::parse(&path.display().to_string(), &text)
            .map_err(|e| anyhow::anyhow!("rate limits: {e}"))?;
        configs.insert(tenant, config);
    }
    tracing::info!(tenants = configs.len(), dir = %dir.display(), "tenants' own rate limits read");
    Ok(configs)
}

/// The store's pool, timeout and replica settings from flags, the `[database]` section and
/// the defaults; a zero duration turns the idle timeout, lifetime or statement timeout off.
fn database_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
    base: &store::StoreOptions,
) -> anyhow::Result<store::StoreOptions> {
    let section = &file.database;
    let off_if_zero = |d: Option<Duration>, default: Option<Duration>| match d {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => default,
    };
    let pool_size = args
        .database_pool_size
        .or(section.pool_size)
        .unwrap_or(base.max_connections);
    if pool_size == 0 {
        anyhow::bail!("database pool size: must be at least 1");
    }
    let acquire_timeout = args
        .database_acquire_timeout
        .or(section.acquire_timeout)
        .unwrap_or(base.acquire_timeout);
    if acquire_timeout.is_zero() {
        anyhow::bail!("database acquire timeout: must be more than zero");
    }
    let read_url = args
        .database_read_url
        .clone()
        .or_else(|| section.read_url.clone());
    if let Some(url) = &read_url {
        if store::Backend::from_url(url).ok() != Some(store::Backend::Postgres)
            || store::Backend::from_url(&base.url).ok() != Some(store::Backend::Postgres)
        {
            anyhow::bail!(
                "database read url: a read replica needs PostgreSQL, for the primary and the replica"
            );
        }
    }
    Ok(store::StoreOptions {
        max_connections: pool_size,
        acquire_timeout,
        idle_timeout: off_if_zero(
            args.database_idle_timeout.or(section.idle_timeout),
            base.idle_timeout,
        ),
        max_lifetime: off_if_zero(
            args.database_max_lifetime.or(section.max_lifetime),
            base.max_lifetime,
        ),
        statement_timeout: off_if_zero(
            args.database_statement_timeout
                .or(section.statement_timeout),
            base.statement_timeout,
        ),
        slow_query_threshold: args
            .database_slow_query_threshold
            .or(section.slow_query_threshold)
            .unwrap_or(base.slow_query_threshold),
        read_url,
        ..base.clone()
    })
}

/// How often the LLM retention purge runs unless configured.
const DEFAULT_LLM_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The LLM settings from flags, the `[llm]` section and the defaults. A price table file is
/// read and validated here, so a bad one stops the start naming the file and field.
/// How forecasts are served: from flags, else the config file, else the defaults.
fn forecast_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
) -> server::forecasts::ForecastSettings {
    let defaults = server::forecasts::ForecastSettings::default();
    server::forecasts::ForecastSettings {
        cache_ttl: args
            .forecast_cache_ttl
            .or(file.forecast.cache_ttl)
            .unwrap_or(defaults.cache_ttl),
        cache_capacity: args
            .forecast_cache_capacity
            .or(file.forecast.cache_capacity)
            .unwrap_or(defaults.cache_capacity),
        // Zero turns re-warming off.
        rewarm_interval: Some(
            args.forecast_rewarm_interval
                .or(file.forecast.rewarm_interval)
                .unwrap_or(server::forecasts::DEFAULT_REWARM_INTERVAL),
        )
        .filter(|d| !d.is_zero()),
        memory_budget: args.forecast_memory_budget.or(file.forecast.memory_budget),
        ..defaults
    }
}

fn llm_settings(
    args: &ServeArgs,
    file: &crate::config::FileConfig,
    defaults: &server::LlmSettings,
) -> anyhow::Result<server::LlmSettings> {
    let section = &file.llm;
    let default_prices = match args.llm_prices.as_deref().or(section.prices.as_deref()) {
        None => defaults.default_prices.clone(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("llm prices: cannot read {}", path.display()))?;
            let table = llm::price::PriceTable::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("llm prices: {}: {e}", path.display()))?;
            tracing::info!(version = %table.version, models = table.prices.len(), file = %path.display(), "LLM price table read");
            Arc::new(table)
        }
    };
    let positive = |name: &str, value: usize| {
        if value == 0 {
            anyhow::bail!("llm {name}: must be more than zero");
        }
        Ok(value)
    };
    let settings = server::LlmSettings {
        default_prices,
        default_prices_enabled: args
            .llm_default_prices
            .or(section.default_prices)
            .unwrap_or(defaults.default_prices_enabled),
        max_events_per_request: positive(
            "max events per request",
            args.llm_max_events
                .or(section.max_events_per_request)
                .unwrap_or(defaults.max_events_per_request),
        )?,
        max_spans_per_request: positive(
            "max spans per request",
            args.llm_max_spans
                .or(section.max_spans_per_request)
                .unwrap_or(defaults.max_spans_per_request),
        )?,
        body_limit_bytes: positive(
            "body limit bytes",
            args.llm_body_limit_bytes
                .or(section.body_limit_bytes)
                .unwrap_or(defaults.body_limit_bytes),
        )?,
        retention_days: match args.llm_retention_days.or(section.retention_days) {
            Some(0) => anyhow::bail!(
                "llm retention days: must be at least 1 (leave it unset to keep everything)"
            ),
            other => other,
        },
        usage_cache_ttl: args
            .llm_usage_cache_ttl
            .or(section.usage_cache_ttl)
            .unwrap_or(defaults.usage_cache_ttl),
    };
    Ok(settings)
}

/// Where the demo tenant's credentials are written, inside the data directory.
pub const DEMO_FILE: &str = "demo-tenant.json";

pub async fn run(common: Common, args: ServeArgs) -> anyhow::Result<()> {
    let file = &common.file;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let defaults = ServerConfig::default();
    let rate_limits = rate_limit_settings(&args, file, &defaults.rate_limits)?;
    let rls = envoy_rls_settings(&args, file, rate_limits.config.is_some())?;
    let read_caches = read_cache_settings(&args, file)?;
    let connections = connection_settings(&args, file, &defaults.connections)?;
    let cors = server::CorsSettings {
        allowed_origins: if args.cors_allow_origins.is_empty() {
            file.cors.allow_origins.clone()
        } else {
            args.cors_allow_origins.clone()
        },
        max_age: args
            .cors_max_age
            .or(file.cors.max_age)
            .unwrap_or(defaults.cors.max_age),
    };
    cors.validate()
        .map_err(|e| anyhow::anyhow!("cors allow origin: {e}"))?;
    let trusted_proxies = trusted_proxies(&args, file)?;
    let llm = llm_settings(&args, file, &defaults.llm)?;
    let llm_purge_interval = args
        .llm_purge_interval
        .or(file.llm.purge_interval)
        .unwrap_or(DEFAULT_LLM_PURGE_INTERVAL);
    if llm_purge_interval.is_zero() {
        anyhow::bail!("llm purge interval: must be more than zero");
    }
    let store_options = database_settings(&args, file, &common.store)?;
    let forecast_settings = forecast_settings(&args, file);
    let mut jobs = crate::jobs_worker::job_settings(
        &args.jobs,
        file,
        &common.data_dir,
        args.forecast_index
            .clone()
            .unwrap_or_else(|| crate::jobs_worker::default_forecast_model_dir(&common)),
    )?;
    // A model rebuilt by the `forecast.rebuild` job is served (and checked against the memory
    // budget) with the same settings as the one loaded at start.
    if let Some(rebuild) = jobs.handlers.forecast.as_mut() {
        rebuild.serving = forecast_settings.clone();
    }
    let jobs_workers = args.jobs_workers.or(file.jobs.workers).unwrap_or(true);
    let metrics_token =
        match args
            .metrics_token
            .as_deref()
            .or(file.metrics.token.as_deref())
        {
            None => None,
            Some(token) => Some(server::MetricsToken::new(token).context(
                "metrics token: must not be empty (leave it unset for an open /metrics)",
            )?),
        };
    let console = server::ConsoleSettings {
        idle_timeout: args
            .console_idle_timeout
            .or(file.console.idle_timeout)
            .unwrap_or(defaults.console.idle_timeout),
        max_lifetime: args
            .console_max_lifetime
            .or(file.console.max_lifetime)
            .unwrap_or(defaults.console.max_lifetime),
        secure_cookie: args
            .console_secure_cookie
            .or(file.console.secure_cookie)
            .unwrap_or(defaults.console.secure_cookie),
    };
    if console.idle_timeout.is_zero() || console.max_lifetime.is_zero() {
        anyhow::bail!("console idle timeout, console max lifetime: must be more than zero");
    }
    let predictions = server::predictions::PredictionSettings::from_config(
        file.predictions.churn_horizon_days,
        file.predictions.clv_months,
        file.predictions.monthly_discount_rate,
        file.predictions.recommendations.as_deref(),
    )?;
    let config = ServerConfig {
        body_limit_bytes: args
            .body_limit_bytes
            .or(file.http.body_limit_bytes)
            .unwrap_or(defaults.body_limit_bytes),
        request_timeout: args
            .request_timeout
            .or(file.http.request_timeout)
            .unwrap_or(defaults.request_timeout),
        auth_cache_ttl: args
            .auth_cache_ttl
            .or(file.auth.cache_ttl)
            .unwrap_or(defaults.auth_cache_ttl),
        shutdown_grace: args
            .shutdown_grace
            .or(file.http.shutdown_grace)
            .unwrap_or(defaults.shutdown_grace),
        redis_url: args.redis_url.or_else(|| file.redis_url.clone()),
        nats_url: args.nats_url.or_else(|| file.nats_url.clone()),
        profiles: server::ProfileSettings {
            read_cache_ttl: args
                .profile_cache_ttl
                .or(file.weber.profile_cache_ttl)
                .unwrap_or(defaults.profiles.read_cache_ttl),
            read_cache_capacity: args
                .profile_cache_capacity
                .or(file.weber.profile_cache_capacity)
                .unwrap_or(defaults.profiles.read_cache_capacity),
            ..defaults.profiles.clone()
        },
        flag_refresh_interval: args
            .flag_refresh_interval
            .or(file.flags.refresh_interval)
            .unwrap_or(defaults.flag_refresh_interval),
        max_flags_per_environment: defaults.max_flags_per_environment,
        exposures: defaults.exposures.clone(),
        flag_usage: defaults.flag_usage.clone(),
        rate_limits,
        read_caches,
        trusted_proxies,
        connections,
        cors,
        metrics_token,
        llm,
        jobs,
        custody: server::CustodySettings::default(),
        console,
        predictions,
    };
    if config.flag_refresh_interval.is_zero() {
        anyhow::bail!("flag refresh interval: must be more than zero");
    }
    let event_log = args
        .event_log
        .or(file.weber.event_log)
        .unwrap_or(crate::config::EventLogKind::File);
    let event_log_stream = args
        .event_log_stream
        .clone()
        .or(file.weber.event_log_stream.clone())
        .unwrap_or_else(|| DEFAULT_EVENT_LOG_STREAM.to_owned());
    let valid_stream = (1..=64).contains(&event_log_stream.len())
        && event_log_stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_stream {
        anyhow::bail!("event log stream: must be 1 to 64 characters of [A-Za-z0-9_-]");
    }
    let tenant_label_limit = args
        .tenant_label_limit
        .or(file.metrics.tenant_label_limit)
        .unwrap_or(telemetry::MetricsConfig::default().tenant_label_limit);

    // Listeners first: a second server on a taken port fails here, before it migrates a
    // database, creates the demo tenant or builds the forecast model. Connections that arrive
    // before serving starts wait in the listen backlog.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen: cannot bind {listen}"))?;
    let local = listener.local_addr().context("listen: no local address")?;
    let rls = match rls {
        None => None,
        Some((addr, domain)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("rate-limit gRPC listen: cannot bind {addr}"))?;
            Some((listener, domain))
        }
    };

    let store = store::Store::connect(&store_options)
        .await
        .map_err(|e| anyhow::anyhow!("database: {e}"))?;
    tracing::info!(
        backend = store.backend().as_str(),
        schema_version = store::SCHEMA_VERSION,
        pool_size = store_options.max_connections,
        read_replica = store_options.read_url.is_some(),
        "storage ready"
    );
    let demo = args
        .demo
        .or(file.demo)
        .unwrap_or(store.backend() == store::Backend::Sqlite);
    // Some((tenant id, key)) when this start created the demo tenant: its history is written
    // once the application state exists, through the API's own code.
    let new_demo_tenant = if demo {
        ensure_demo_tenant(&store, &common.data_dir).await?
    } else {
        None
    };

    let metrics = Arc::new(telemetry::Metrics::new(telemetry::MetricsConfig {
        tenant_label_limit,
        ..telemetry::MetricsConfig::default()
    }));
    let events = open_event_log(
        event_log,
        &common.data_dir,
        config.nats_url.as_deref(),
        &event_log_stream,
    )
    .await?;
    tracing::info!(kind = events.kind(), "event log ready");
    let config = ServerConfig {
        custody: crate::custody_cmd::serve_settings(&args.custody, &common, store.backend())?,
        ..config
    };
    let state = AppState::new(store.clone(), metrics, config, events)?;
    let forecast_rewarm_interval = forecast_settings.rewarm_interval;
    let forecast_dir = match args.forecast_index.or_else(|| file.forecast.index.clone()) {
        Some(dir) => Some((dir, false)),
        None if demo => Some((common.data_dir.join("forecast"), true)),
        None => {
            // Said once here rather than at every request: the routes answer 501
            // `forecast_model_missing` until a restart with a model.
            tracing::warn!(
                "no forecast model: the forecast routes answer 501 forecast_model_missing; build \
                 one with `signalbox forecast build` and pass --forecast-index DIR"
            );
            None
        }
    };
    if let Some((dir, is_demo)) = forecast_dir {
        let settings = forecast_settings;
        let service = tokio::task::spawn_blocking(move || {
            crate::forecast_serve::open_for_serving(&dir, is_demo, &settings)
        })
        .await
        .context("forecast: loading panicked")??;
        state.install_forecasts(Arc::new(service));
    }
    if let Some((tenant_id, key)) = new_demo_tenant {
        seed_demo_history(&state, &tenant_id, &key).await;
    }
    tracing::info!("listening on http://{local}");
    let rls = match rls {
        None => None,
        Some((listener, domain)) => {
            let limiter = state
                .rate_limiter()
                .cloned()
                .context("rate limits: the Envoy rate-limit service needs rate limits on")?;
            let local = listener
                .local_addr()
                .context("rate-limit gRPC listen: no local address")?;
            tracing::info!(%domain, "Envoy rate-limit service listening on grpc://{local}");
            Some((listener, limiter, domain))
        }
    };
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let worker = tokio::spawn(server::run_profile_worker(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let exposures = tokio::spawn(server::run_exposure_writer(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let flag_usage = tokio::spawn(server::run_flag_usage_writer(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let gauges = tokio::spawn(refresh_segment_gauges(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let llm_retention = tokio::spawn(server::run_llm_retention(
        state.clone(),
        llm_purge_interval,
        stopped(workers_stopped.clone()),
    ));
    let host_monitor = tokio::spawn(run_host_monitor(
        state.metrics().clone(),
        telemetry::HostMonitor::new(telemetry::HostMonitorConfig::default()),
        stopped(workers_stopped.clone()),
    ));
    let audit_checkpointer = tokio::spawn(server::run_audit_checkpointer(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let flag_refresher = tokio::spawn(server::run_flag_refresher(
        state.clone(),
        stopped(workers_stopped.clone()),
    ));
    let forecast_rewarming = forecast_rewarm_interval.map(|interval| {
        tokio::spawn(server::forecasts::run_forecast_rewarming(
            state.clone(),
            interval,
            stopped(workers_stopped),
        ))
    });
    // One signal stops both servers; a gRPC server that fails stops the HTTP one too, so the
    // process never runs half its listeners.
    let grace = state.config().shutdown_grace;
    let (stop_serving, serving_stopped) = tokio::sync::watch::channel(false);
    let signal = {
        let stop = stop_serving.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
    };
    let rls = rls.map(|(listener, limiter, domain)| {
        let (stop, stopping) = (stop_serving.clone(), stopped(serving_stopped.clone()));
        tokio::spawn(async move {
            let result = server::envoy_rls::serve(listener, limiter, domain, stopping).await;
            let _ = stop.send(true);
            result
        })
    });
    // Job workers stop claiming at the signal, alongside the HTTP drain, and have their own
    // grace for running jobs.
    let job_workers = jobs_workers.then(|| {
        tokio::spawn(server::run_job_workers(
            state.clone(),
            stopped(serving_stopped.clone()),
        ))
    });
    let served = server::serve(listener, state, stopped(serving_stopped)).await;
    let _ = stop_serving.send(true);
    signal.abort();
    let rls_result = match rls {
        None => Ok(()),
        // It drained alongside the HTTP server; a client still holding a call after the grace
        // period is cut off, as HTTP requests are.
        Some(mut rls) => match tokio::time::timeout(grace, &mut rls).await {
            Ok(Ok(result)) => result.context("rate-limit gRPC"),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "rate-limit gRPC: the server task failed: {e}"
            )),
            Err(_) => {
                tracing::warn!(
                    "rate-limit gRPC calls still running after the grace period; stopping anyway"
                );
                rls.abort();
                Ok(())
            }
        },
    };
    served.context("server")?;
    // Requests have drained; the worker finishes its batch (anything unapplied is redelivered
    // or reconciled at the next start), the exposure writer stores everything queued and the
    // flag usage writer everything counted.
    let _ = stop_workers.send(true);
    if let Some(job_workers) = job_workers {
        let _ = job_workers.await;
    }
    let _ = worker.await;
    let _ = exposures.await;
    let _ = flag_usage.await;
    let _ = gauges.await;
    let _ = flag_refresher.await;
    if let Some(rewarming) = forecast_rewarming {
        let _ = rewarming.await;
    }
    let _ = audit_checkpointer.await;
    let _ = llm_retention.await;
    let _ = host_monitor.await;
    store.close().await;
    // After the workers have flushed: a failed gRPC server still lets the HTTP side end cleanly.
    rls_result?;
    tracing::info!("stopped");
    Ok(())
}

/// The JetStream stream name when none is configured.
const DEFAULT_EVENT_LOG_STREAM: &str = "signalbox_interactions";

async fn open_event_log(
    kind: crate::config::EventLogKind,
    data_dir: &Path,
    nats_url: Option<&str>,
    stream_name: &str,
) -> anyhow::Result<stream::EventLog> {
    match kind {
        crate::config::EventLogKind::File => {
            let dir = data_dir.join("events");
            stream::EventLog::open_file(&dir, stream::FileLogOptions::default())
                .await
                .with_context(|| format!("event log: cannot open {}", dir.display()))
        }
        crate::config::EventLogKind::Nats => {
            let url =
                nats_url.context("event log: --event-log nats needs --nats-url (NATS_URL)")?;
            stream::EventLog::connect_jetstream(url, stream_name)
                .await
                .context("event log: cannot reach NATS JetStream")
        }
    }
}

/// Keeps `weber_profiles{tenant_id,segment}` current: the store is the truth, so the gauge is
/// re-read from it every 15 s rather than tracked incrementally.
async fn refresh_segment_gauges(state: AppState, stopped: impl std::future::Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        match state.store().operator_weber_segment_counts().await {
            Ok(rows) => state.metrics().weber().set_profile_counts(&rows),
            Err(e) => tracing::warn!(error = %e, "cannot refresh the profile segment gauge"),
        }
    }
}

/// Samples the host and infrastructure gauges (`system_*`, `database_queries_per_second`, …)
/// every `monitor.interval()`, on a blocking thread: the readings touch `/proc` and file-system
/// stats, which must never delay a request.
async fn run_host_monitor(
    metrics: Arc<telemetry::Metrics>,
    monitor: telemetry::HostMonitor,
    stopped: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let monitor = Arc::new(monitor);
    let mut tick = tokio::time::interval(monitor.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let (metrics, monitor) = (metrics.clone(), monitor.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || monitor.sample(&metrics)).await {
            tracing::warn!(error = %e, "host metrics sample failed");
        }
    }
}

/// The documented example flags (one of every type), given to the demo tenant's `production`.
const DEMO_FLAGS: &str = include_str!("../../../examples/flags.json");

async fn seed_demo_flags(store: &store::Store, tenant_id: &str) -> anyhow::Result<()> {
    let set = flags::FlagSet::from_json(DEMO_FLAGS).context("demo flags")?;
    for flag in set.flags() {
        let definition = serde_json::to_string(flag).context("demo flags")?;
        store
            .create_flag(tenant_id, "production", &flag.key, &definition, "demo")
            .await?;
    }
    Ok(())
}

/// Writes the new demo tenant's history (see `server::demo`). A failure is logged, not fatal:
/// the server is usable without the demo history, and the tenant exists, so a restart would
/// not try again either.
async fn seed_demo_history(state: &server::AppState, tenant_id: &str, key: &str) {
    let started = std::time::Instant::now();
    match server::demo::seed(state, tenant_id, key).await {
        Ok(summary) => tracing::info!(
            tenant_id,
            interactions = summary.interactions,
            exposures = summary.exposures,
            metric_events = summary.metric_events,
            llm_events = summary.llm_events,
            feedback_items = summary.feedback_items,
            jobs = summary.jobs,
            purchases = summary.purchases,
            model_version = summary.model_version.as_deref().unwrap_or("none"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wrote the demo tenant's history"
        ),
        Err(e) => tracing::warn!(tenant_id, error = %e, "the demo tenant's history is incomplete"),
    }
}

/// Creates the `demo` tenant on an empty store, so the quick tour works out of the box. Its
/// key goes to a file only its owner can read, never to the log. Returns the tenant's id and
/// key when this call created it.
async fn ensure_demo_tenant(
    store: &store::Store,
    data_dir: &Path,
) -> anyhow::Result<Option<(String, String)>> {
    if !store.list_tenants().await?.is_empty() {
        return Ok(None);
    }
    let tenant = match store.create_tenant("demo", store::Tier::Professional).await {
        Ok(tenant) => tenant,
        // Another process starting on the same data made it first; its file is the one to use.
        Err(store::StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let key = store
        .issue_api_key(
            &tenant.id,
            store::Scopes::from_iter([store::Scope::Admin]),
            Some("demo"),
        )
        .await?;
    seed_demo_flags(store, &tenant.id).await?;
    server::predictions::ensure_refit_schedule(store, &tenant.id, server::jobs::now_ms()).await?;
    server::feedback::ensure_retention_schedule(store, &tenant.id, server::jobs::now_ms()).await?;
    server::experiments::ensure_review_schedule(store, &tenant.id, server::jobs::now_ms()).await?;
    let path = data_dir.join(DEMO_FILE);
    let body = serde_json::json!({"tenant_id": tenant.id, "api_key": key.secret});
    write_private(&path, &format!("{body}\n"))
        .with_context(|| format!("demo: cannot write {}", path.display()))?;
    tracing::info!(tenant_id = %tenant.id, path = %path.display(), "created the demo tenant; its API key is in this file");
    Ok(Some((tenant.id, key.secret.to_string())))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
