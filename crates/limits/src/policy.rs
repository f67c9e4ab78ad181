//! [`Policy`]: a validated [`Config`] with one in-memory [`KeyedLimiter`] per rule, deciding
//! requests.

use std::collections::HashMap;
use std::sync::Arc;

use crate::algo::{
    AnyAlgorithm, FixedWindow, Gcra, ParamError, SlidingWindowCounter, SlidingWindowLog,
    TokenBucket,
};
use crate::config::{
    capacity, ActionConfig, AlgorithmKind, Config, FailurePolicy, RuleConfig, Scope, Tier,
};
use crate::glob::Glob;
use crate::keyed::KeyedLimiter;

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;

/// What is known about a request when it is decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The tenant, if authenticated.
    pub tenant: Option<&'a str>,
    /// The user, if known.
    pub user: Option<&'a str>,
    /// The client address.
    pub ip: Option<&'a str>,
    /// The API key (an identifier of it, not the secret).
    pub api_key: Option<&'a str>,
    /// The tenant's subscription tier; `None` uses each rule's own numbers.
    pub tier: Option<Tier>,
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// Request path without the query.
    pub path: &'a str,
}

/// The quota one rule applied to a request, for the `RateLimit-Policy` and `RateLimit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStatus {
    /// The rule's name.
    pub name: Arc<str>,
    /// Cost units per window (after the tier override).
    pub quota: u64,
    /// The window in seconds.
    pub window_secs: u64,
    /// Units still available.
    pub remaining: u64,
    /// Nanoseconds until the full quota is back.
    pub reset_after_ns: u64,
    /// Whether this rule admitted the request.
    pub allowed: bool,
    /// Whether the rule only counts (a refusal here did not refuse the request).
    pub shadow: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Serve it.
    Allow,
    /// Not admitted: wait `wait_ns` (within the rule's bound), then decide again.
    Delay {
        /// How long to wait.
        wait_ns: u64,
    },
    /// Not admitted: queue it (at most `max_queued` waiting for this rule), decide again after
    /// `wait_ns`.
    Queue {
        /// How long it would wait.
        wait_ns: u64,
        /// The queue's bound.
        max_queued: u32,
    },
    /// Not admitted: serve a degraded answer.
    Degrade,
    /// Refused: 429 with `Retry-After`.
    Reject {
        /// Nanoseconds until the request would be admitted ([`crate::NEVER`] if never).
        retry_after_ns: u64,
    },
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub outcome: Outcome,
    /// The rule whose refusal decided the outcome (`None` when allowed).
    pub decided_by: Option<Arc<str>>,
    /// Every rule checked, in configuration order.
    pub rules: Vec<RuleStatus>,
}

impl Verdict {
    /// Whether the request is served now.
    pub fn allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// The enforcing rule closest to refusing (least remaining, then the longest reset): the
    /// one to put in the `RateLimit` field.
    pub fn most_restrictive(&self) -> Option<&RuleStatus> {
        self.rules
            .iter()
            .filter(|r| !r.shadow)
            .min_by_key(|r| (r.remaining, std::cmp::Reverse(r.reset_after_ns)))
    }

    /// Shadow rules that would have refused the request.
    pub fn shadow_refusals(&self) -> impl Iterator<Item = &RuleStatus> {
        self.rules.iter().filter(|r| r.shadow && !r.allowed)
    }
}

struct Quota {
    algorithm: AnyAlgorithm,
    limit: u64,
}

struct Rule {
    name: Arc<str>,
    scope: Scope,
    window_secs: u64,
    paths: Vec<Glob>,
    methods: Vec<String>,
    cost: Option<u64>,
    action: ActionConfig,
    shadow: bool,
    on_backend_failure: FailurePolicy,
    base: Quota,
    tiers: [Option<Quota>; Tier::ALL.len()],
    limiter: KeyedLimiter<AnyAlgorithm>,
}

/// The rules of a [`Config`], each with its in-memory limiter.
pub struct Policy {
    rules: Vec<Rule>,
    default_cost: u64,
    exact_costs: HashMap<String, u64>,
    /// Longest pattern first, so the most specific glob wins.
    glob_costs: Vec<(Glob, u64)>,
}

fn algorithm(
    kind: AlgorithmKind,
    limit: u64,
    window_ns: u64,
    burst: u64,
) -> Result<AnyAlgorithm, ParamError> {
    Ok(match kind {
        AlgorithmKind::FixedWindow => {
            AnyAlgorithm::FixedWindow(FixedWindow::new(limit, window_ns)?)
        }
        AlgorithmKind::SlidingWindowLog => {
            AnyAlgorithm::SlidingWindowLog(SlidingWindowLog::new(limit, window_ns)?)
        }
        AlgorithmKind::SlidingWindow => {
            AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(limit, window_ns)?)
        }
        AlgorithmKind::TokenBucket => AnyAlgorithm::TokenBucket(TokenBucket::new(
            capacity(kind, limit, burst),
            limit,
            window_ns,
        )?),
        AlgorithmKind::LeakyBucket => AnyAlgorithm::Gcra(Gcra::per_window(
            limit,
            window_ns,
            capacity(kind, limit, burst),
        )?),
    })
}

impl Rule {
    fn compile(config: &RuleConfig, max_keys: usize, shards: usize) -> Result<Rule, ParamError> {
        let window_ns = config.window_secs.get().saturating_mul(NS_PER_SEC);
        let quota = |limit: u64, burst: u64| -> Result<Quota, ParamError> {
            Ok(Quota {
                algorithm: algorithm(config.algorithm, limit, window_ns, burst)?,
                limit,
            })
        };
        let mut tiers: [Option<Quota>; Tier::ALL.len()] = Default::default();
        for (tier, o) in &config.tiers {
            tiers[*tier as usize] = Some(quota(o.limit.get(), o.burst)?);
        }
        let paths = config
            .paths
            .iter()
            .filter_map(|p| Glob::new(p).ok())
            .collect();
        Ok(Rule {
            name: config.name.as_str().into(),
            scope: config.scope,
            window_secs: config.window_secs.get(),
            paths,
            methods: config.methods.clone(),
            cost: config.cost.map(|c| c.get()),
            action: config.action,
            shadow: config.shadow,
            on_backend_failure: config.on_backend_failure,
            base: quota(config.limit.get(), config.burst)?,
            tiers,
            // The global scope has one key; the others as many as `max_keys`.
            limiter: if config.scope == Scope::Global {
                KeyedLimiter::new(1, 1)
            } else {
                KeyedLimiter::new(max_keys, shards)
            },
        })
    }

    fn applies(&self, facts: &RequestFacts<'_>) -> bool {
        (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(facts.path)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == facts.method))
    }

    fn key<'a>(&self, facts: &RequestFacts<'a>) -> Option<&'a str> {
        match self.scope {
            Scope::Global => Some(""),
            Scope::Tenant => facts.tenant,
            Scope::User => facts.user,
            Scope::Ip => facts.ip,
            Scope::ApiKey => facts.api_key,
        }
    }
}

impl Policy {
    /// Compiles a validated configuration; each non-global rule's limiter holds at most
    /// `max_keys_per_rule` keys.
    pub fn new(config: &Config, max_keys_per_rule: usize) -> Result<Policy, ParamError> {
        let shards = 64;
        let rules = config
            .rules
            .iter()
            .map(|r| Rule::compile(r, max_keys_per_rule, shards))
            .collect::<Result<Vec<_>, _>>()?;
        let mut exact_costs = HashMap::new();
        let mut glob_costs = Vec::new();
        for (pattern, cost) in &config.costs.endpoints {
            if let Ok(glob) = Glob::new(pattern) {
                if glob.is_exact() {
                    exact_costs.insert(pattern.clone(), cost.get());
                } else {
                    glob_costs.push((glob, cost.get()));
                }
            }
        }
        glob_costs.sort_by_key(|(g, _)| std::cmp::Reverse(g.as_str().len()));
        Ok(Policy {
            rules,
            default_cost: config.costs.default.get(),
            exact_costs,
            glob_costs,
        })
    }

    /// The cost of a request to `path` from the endpoint table.
    pub fn endpoint_cost(&self, path: &str) -> u64 {
        if let Some(&cost) = self.exact_costs.get(path) {
            return cost;
        }
        self.glob_costs
            .iter()
            .find(|(g, _)| g.matches(path))
            .map_or(self.default_cost, |&(_, cost)| cost)
    }

    /// The failure policy of the rule called `name`.
    pub fn on_backend_failure(&self, name: &str) -> Option<FailurePolicy> {
        self.rules
            .iter()
            .find(|r| &*r.name == name)
            .map(|r| r.on_backend_failure)
    }

    /// Decides a request at `now_ns`: every applicable rule is checked in configuration order,
    /// with the request's cost (the rule's own cost, else the endpoint's); the first enforcing
    /// rule that refuses decides the outcome through its action, and later rules are not
    /// charged. Shadow rules are charged and reported but never refuse. Rules checked before a
    /// refusing one keep the charge (conservative: a refused request may count against them).
    pub fn decide(&self, facts: &RequestFacts<'_>, now_ns: u64) -> Verdict {
        let endpoint_cost = self.endpoint_cost(facts.path);
        let mut statuses = Vec::new();
        for rule in &self.rules {
            if !rule.applies(facts) {
                continue;
            }
            let Some(key) = rule.key(facts) else {
                continue;
            };
            let quota = facts
                .tier
                .and_then(|t| rule.tiers[t as usize].as_ref())
                .unwrap_or(&rule.base);
            let cost = rule.cost.unwrap_or(endpoint_cost);
            let d = rule.limiter.check(&quota.algorithm, key, now_ns, cost);
            statuses.push(RuleStatus {
                name: rule.name.clone(),
                quota: quota.limit,
                window_secs: rule.window_secs,
                remaining: d.remaining,
                reset_after_ns: d.reset_after_ns,
                allowed: d.allowed,
                shadow: rule.shadow,
            });
            if !d.allowed && !rule.shadow {
                return Verdict {
                    outcome: refusal(rule.action, d.retry_after_ns),
                    decided_by: Some(rule.name.clone()),
                    rules: statuses,
                };
            }
        }
        Verdict {
            outcome: Outcome::Allow,
            decided_by: None,
            rules: statuses,
        }
    }

    /// Drops expired keys from every rule's limiter; returns how many.
    pub fn sweep(&self, now_ns: u64) -> u64 {
        self.rules.iter().map(|r| r.limiter.sweep(now_ns)).sum()
    }

    /// Keys evicted from full limiters since creation, over all rules.
    pub fn evictions(&self) -> u64 {
        self.rules.iter().map(|r| r.limiter.evictions()).sum()
    }
}

fn refusal(action: ActionConfig, retry_after_ns: u64) -> Outcome {
    let reject = Outcome::Reject { retry_after_ns };
    match action {
        ActionConfig::Reject => reject,
        ActionConfig::Delay { max_delay_ms } => {
            if retry_after_ns <= max_delay_ms.saturating_mul(NS_PER_MS) {
                Outcome::Delay {
                    wait_ns: retry_after_ns,
                }
            } else {
                reject
            }
        }
        ActionConfig::Queue {
            max_queued,
            max_wait_ms,
        } => {
            if retry_after_ns <= max_wait_ms.saturating_mul(NS_PER_MS) {
                Outcome::Queue {
                    wait_ns: retry_after_ns,
                    max_queued,
                }
            } else {
                reject
            }
        }
        ActionConfig::Degrade => Outcome::Degrade,
    }
}
