//! Rate limiting at the edge of every tenant route: the [`limits`] policy decided in memory or
//! on a shared Redis, the failure policies for when Redis is unreachable, and the HTTP
//! middleware (429 problem, `Retry-After`, the IETF `RateLimit-Policy` / `RateLimit` fields).
//!
//! ```text
//! request ─► identify (tenant, tier, key, user, IP) ─► Policy::checks ─► backend ─► Policy::verdict
//!                                                        memory: the rules' KeyedLimiters
//!                                                        redis:  check.lua, one round trip
//!                                                                (down: each rule's on_backend_failure)
//! ```
//!
//! The same [`RateLimiter`] answers Envoy's `ShouldRateLimit` (see `envoy_rls`).

mod http;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limits::{Check, Decision, FailurePolicy, Policy, RequestFacts, Verdict};
use telemetry::Metrics;
use tokio::sync::Semaphore;

pub(crate) use http::{exempt, field_values, middleware};
pub use http::{AnsweredDegraded, Degraded, DEGRADED, USER_ID};
pub use limits::Outcome;
pub use redis::{probe as probe_redis, script_hash as redis_script_hash};

/// Where rate-limit state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// In this process: exact, but each replica counts on its own.
    Memory,
    /// On a shared Redis, so every replica enforces one limit.
    Redis {
        /// `redis://…`
        url: String,
        /// Keys are `{prefix}:RULE:ID`.
        key_prefix: String,
    },
}

/// Rate-limit settings; the binary fills them from `--rate-limits` and friends.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// The rules; `None` turns rate limiting off.
    pub config: Option<limits::Config>,
    /// Tenants with rules of their own (tenant id → rules), which replace `config` for that
    /// tenant's requests.
    pub tenant_configs: BTreeMap<String, limits::Config>,
    /// Where the counters live.
    pub backend: RateLimitBackend,
    /// Most keys each rule's in-memory limiter holds (the memory backend, and the local
    /// fallback of the Redis one); beyond it the least recently used key is evicted.
    pub max_keys_per_rule: usize,
    /// Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
    pub legacy_headers: bool,
    /// A Redis call slower than this counts as a failure.
    pub redis_timeout: Duration,
    /// After a Redis failure, how long the failure policies apply before Redis is tried again.
    pub redis_retry_after: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            config: Some(default_config()),
            tenant_configs: BTreeMap::new(),
            backend: RateLimitBackend::Memory,
            max_keys_per_rule: 100_000,
            legacy_headers: false,
            redis_timeout: Duration::from_millis(250),
            redis_retry_after: Duration::from_secs(1),
        }
    }
}

/// The shipped rules (seed 002): `limits::DEFAULT_TOML`.
pub fn default_config() -> limits::Config {
    // The shipped file is tested to parse (limits' tests); an error here is a build defect.
    limits::Config::parse("default.toml", limits::DEFAULT_TOML)
        .unwrap_or_else(|e| panic!("the shipped rate-limit rules do not parse: {e}"))
}

/// Settings the rate limiter cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitSetupError {
    /// A rule's numbers are refused by its algorithm.
    #[error("rate limits: {0}")]
    Params(#[from] limits::ParamError),
    /// The Redis URL does not parse.
    #[error("rate limits: bad Redis URL: {0}")]
    RedisUrl(String),
    /// A rule too large for the Redis script's exact arithmetic.
    #[error(
        "rate limits: rule `{rule}`: {what} {value} × window {window_secs} s is too large for the \
         Redis backend's exact arithmetic (at most 2^52 microsecond-units); shorten the window \
         or lower the limit"
    )]
    TooLargeForRedis {
        /// The rule.
        rule: String,
        /// `limit` or `capacity`.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The rule's window.
        window_secs: u64,
    },
}

/// One rule file compiled: its policy and the queues of its `queue` rules.
struct RuleSet {
    policy: Policy,
    /// Requests waiting under a `queue` action, per rule: the bound `max_queued`.
    queues: HashMap<Arc<str>, Arc<Semaphore>>,
    /// Put in this rule set's Redis keys, so a tenant's own rules never share counters with the
    /// default ones (`""` for the default rules).
    namespace: String,
}

impl RuleSet {
    fn new(
        config: &limits::Config,
        max_keys: usize,
        namespace: String,
    ) -> Result<RuleSet, RateLimitSetupError> {
        let queues = config
            .rules
            .iter()
            .filter_map(|r| match r.action {
                limits::ActionConfig::Queue { max_queued, .. } => Some((
                    Arc::<str>::from(r.name.as_str()),
                    Arc::new(Semaphore::new(max_queued as usize)),
                )),
                _ => None,
            })
            .collect();
        Ok(RuleSet {
            policy: Policy::new(config, max_keys)?,
            queues,
            namespace,
        })
    }
}

/// The configured rules with their backend.
pub struct RateLimiter {
    default: RuleSet,
    tenants: HashMap<String, RuleSet>,
    redis: Option<redis::RedisBackend>,
    origin: Instant,
    metrics: Arc<Metrics>,
    legacy_headers: bool,
}

impl RateLimiter {
    /// The limiter for `settings`, or `None` when rate limiting is off.
    pub fn new(
        settings: &RateLimitSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<RateLimiter>, RateLimitSetupError> {
        let Some(config) = &settings.config else {
            return Ok(None);
        };
        let default = RuleSet::new(config, settings.max_keys_per_rule, String::new())?;
        let tenants = settings
            .tenant_configs
            .iter()
            .map(|(tenant, config)| {
                let rules = RuleSet::new(config, settings.max_keys_per_rule, format!("@{tenant}"))?;
                Ok((tenant.clone(), rules))
            })
            .collect::<Result<HashMap<_, _>, RateLimitSetupError>>()?;
        let redis = match &settings.backend {
            RateLimitBackend::Memory => None,
            RateLimitBackend::Redis { url, key_prefix } => {
                check_exact_in_redis(config)?;
                for config in settings.tenant_configs.values() {
                    check_exact_in_redis(config)?;
                }
                Some(
                    redis::RedisBackend::new(
                        url,
                        key_prefix,
                        settings.redis_timeout,
                        settings.redis_retry_after,
                    )
                    .map_err(|e| RateLimitSetupError::RedisUrl(e.to_string()))?,
                )
            }
        };
        Ok(Some(RateLimiter {
            default,
            tenants,
            redis,
            origin: Instant::now(),
            metrics,
            legacy_headers: settings.legacy_headers,
        }))
    }

    /// The rules a tenant's requests are decided by: its own, else the default ones.
    fn rules_for(&self, tenant: Option<&str>) -> &RuleSet {
        tenant
            .and_then(|t| self.tenants.get(t))
            .unwrap_or(&self.default)
    }

    /// The rules that decide `tenant`'s requests (`None`: requests without a tenant).
    pub fn policy(&self, tenant: Option<&str>) -> &Policy {
        &self.rules_for(tenant).policy
    }

    /// Whether counters live on Redis.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Decides one request and charges every applicable rule.
    pub async fn check(&self, facts: &RequestFacts<'_>) -> Verdict {
        self.check_at(facts, None).await
    }

    /// [`Self::check`] with the Redis script's clock set to `now_us` (tests compare the script
    /// with the in-memory algorithms at chosen instants); the memory backend ignores it.
    #[doc(hidden)]
    pub async fn check_at(&self, facts: &RequestFacts<'_>, now_us: Option<u64>) -> Verdict {
        let rules = self.rules_for(facts.tenant);
        let policy = &rules.policy;
        let checks = policy.checks(facts);
        let decisions = if checks.is_empty() {
            Vec::new()
        } else if let Some(redis) = &self.redis {
            match redis.decide(&rules.namespace, &checks, now_us).await {
                Ok(decisions) => decisions,
                Err(redis::Unavailable(why)) => {
                    tracing::debug!(error = %why, "rate limits: deciding by failure policy");
                    self.decide_without_redis(policy, &checks, redis.retry_after())
                }
            }
        } else {
            let now = self.now_ns();
            decide_in_order(&checks, |c| policy.check_locally(c, now))
        };
        let verdict = policy.verdict(&checks, &decisions);
        self.count(&verdict);
        verdict
    }

    /// Each rule's `on_backend_failure`: `fail_open` admits, `fail_closed` refuses until Redis
    /// is tried again, `local_fallback` asks this process's limiter.
    fn decide_without_redis(
        &self,
        policy: &Policy,
        checks: &[Check<'_>],
        retry_after: Duration,
    ) -> Vec<Decision> {
        let now = self.now_ns();
        let retry_ns = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
        decide_in_order(checks, |check| {
            self.metrics
                .rate_limit()
                .backend_failed(check.name, failure_policy_name(check.on_backend_failure));
            match check.on_backend_failure {
                FailurePolicy::FailOpen => Decision {
                    allowed: true,
                    remaining: check.capacity.saturating_sub(check.cost),
                    reset_after_ns: 0,
                    retry_after_ns: 0,
                },
                FailurePolicy::FailClosed => Decision {
                    allowed: false,
                    remaining: 0,
                    reset_after_ns: retry_ns,
                    retry_after_ns: retry_ns,
                },
                FailurePolicy::LocalFallback => policy.check_locally(check, now),
            }
        })
    }

    fn count(&self, verdict: &Verdict) {
        let metrics = self.metrics.rate_limit();
        for rule in verdict.shadow_refusals() {
            metrics.decided(&rule.name, "shadow_refused");
        }
        if let Some(rule) = &verdict.decided_by {
            let decision = match verdict.outcome {
                Outcome::Allow => "allowed",
                Outcome::Delay { .. } => "delayed",
                Outcome::Queue { .. } => "queued",
                Outcome::Degrade => "degraded",
                Outcome::Reject { .. } => "rejected",
            };
            metrics.decided(rule, decision);
        }
    }

    /// The bound on the total wait of a `delay` or `queue` rule, in the rules of `tenant`.
    fn max_wait_ns(&self, tenant: Option<&str>, rule: &str) -> Option<u64> {
        self.rules_for(tenant).policy.max_wait_ns(rule)
    }

    /// The queue of a rule with a `queue` action, in the rules of `tenant`.
    fn queue(&self, tenant: Option<&str>, rule: &str) -> Option<&Arc<Semaphore>> {
        self.rules_for(tenant).queues.get(rule)
    }

    /// Drops expired keys from the in-memory limiters and updates the key gauge.
    pub fn sweep(&self) {
        let now = self.now_ns();
        let mut keys = 0;
        for rules in std::iter::once(&self.default).chain(self.tenants.values()) {
            rules.policy.sweep(now);
            keys += rules.policy.keys();
        }
        self.metrics.rate_limit().set_keys(keys);
    }
}

/// Decides checks in order with `decide`, stopping after the first enforcing refusal, as the
/// policy and the Redis script do.
fn decide_in_order(
    checks: &[Check<'_>],
    mut decide: impl FnMut(&Check<'_>) -> Decision,
) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(checks.len());
    for check in checks {
        let d = decide(check);
        decisions.push(d);
        if !d.allowed && !check.shadow {
            break;
        }
    }
    decisions
}

fn failure_policy_name(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::FailOpen => "fail_open",
        FailurePolicy::FailClosed => "fail_closed",
        FailurePolicy::LocalFallback => "local_fallback",
    }
}

fn check_exact_in_redis(config: &limits::Config) -> Result<(), RateLimitSetupError> {
    for rule in &config.rules {
        let window_secs = rule.window_secs.get();
        let quotas = std::iter::once((rule.limit.get(), rule.burst))
            .chain(rule.tiers.values().map(|t| (t.limit.get(), t.burst)));
        for (limit, burst) in quotas {
            let capacity = limits::config::capacity(limit, burst);
            if !redis::exact_in_redis(limit, capacity, window_secs) {
                return Err(RateLimitSetupError::TooLargeForRedis {
                    rule: rule.name.clone(),
                    what: if capacity > limit {
                        "capacity"
                    } else {
                        "limit"
                    },
                    value: capacity,
                    window_secs,
                });
            }
        }
    }
    Ok(())
}

/// The `limits` tier of a tenant's tier.
pub(crate) fn tier(tier: store::Tier) -> limits::Tier {
    match tier {
        store::Tier::Free => limits::Tier::Free,
        store::Tier::Starter => limits::Tier::Starter,
        store::Tier::Professional => limits::Tier::Professional,
        store::Tier::Business => limits::Tier::Business,
        store::Tier::Enterprise => limits::Tier::Enterprise,
    }
}
