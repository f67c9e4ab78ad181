//! [`Policy`]: a validated [`Config`] with one in-memory [`KeyedLimiter`] per rule, deciding
//! requests.

use std::collections::HashMap;
use std::sync::Arc;

use crate::algo::{
    Algorithm, AnyAlgorithm, Decision, FixedWindow, Gcra, ParamError, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket,
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
    /// The request's cost, replacing the rule's and the endpoint's (an Envoy `hits_addend`).
    pub cost: Option<u64>,
}

/// The quota one rule applied to a request, for the `RateLimit-Policy` and `RateLimit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStatus {
    /// The rule's name.
    pub name: Arc<str>,
    /// The quota per window (after the tier override): see [`Check::quota`].
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

/// One rule's check of one request, planned by [`Policy::checks`]: which quota, which key, what
/// cost. A backend (the in-memory limiters, or a shared store such as Redis) decides it; the
/// decisions go back to [`Policy::verdict`].
#[derive(Debug, Clone)]
pub struct Check<'p> {
    /// Index of the rule in the configuration.
    pub rule: usize,
    /// The rule's name.
    pub name: &'p Arc<str>,
    /// The rule's scope.
    pub scope: Scope,
    /// The scope's identifier of the request (`""` for the global scope).
    pub key: &'p str,
    /// The rule's algorithm.
    pub kind: AlgorithmKind,
    /// The algorithm with the request's quota (after the tier override).
    pub algorithm: &'p AnyAlgorithm,
    /// Cost units per window (after the tier override).
    pub limit: u64,
    /// The most cost units admitted at once: `limit + burst` (a window admits it per window, a
    /// bucket holds it).
    pub capacity: u64,
    /// The window in seconds.
    pub window_secs: u64,
    /// The request's cost under this rule.
    pub cost: u64,
    /// Whether the rule only counts.
    pub shadow: bool,
    /// What to do when the shared backend cannot decide.
    pub on_backend_failure: FailurePolicy,
}

impl Check<'_> {
    /// The quota per window shown to clients (`RateLimit-Policy`'s `q`): what a window
    /// algorithm admits per window (`limit + burst`), or the rate a bucket refills per window
    /// (`limit`; its `remaining` includes the burst).
    pub fn quota(&self) -> u64 {
        match self.kind {
            AlgorithmKind::FixedWindow
            | AlgorithmKind::SlidingWindowLog
            | AlgorithmKind::SlidingWindow => self.capacity,
            AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket => self.limit,
        }
    }
}

struct Rule {
    name: Arc<str>,
    scope: Scope,
    kind: AlgorithmKind,
    window_secs: u64,
    paths: Vec<Glob>,
    exclude_paths: Vec<Glob>,
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
    check_nonzero_limit(limit)?;
    // Seed 002: `limit = requests_per_window + burst_allowance`. A window admits the whole
    // capacity per window; a bucket holds it and refills `limit` per window.
    let capacity = capacity(limit, burst);
    Ok(match kind {
        AlgorithmKind::FixedWindow => {
            AnyAlgorithm::FixedWindow(FixedWindow::new(capacity, window_ns)?)
        }
        AlgorithmKind::SlidingWindowLog => {
            AnyAlgorithm::SlidingWindowLog(SlidingWindowLog::new(capacity, window_ns)?)
        }
        AlgorithmKind::SlidingWindow => {
            AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(capacity, window_ns)?)
        }
        AlgorithmKind::TokenBucket => {
            AnyAlgorithm::TokenBucket(TokenBucket::new(capacity, limit, window_ns)?)
        }
        AlgorithmKind::LeakyBucket => {
            AnyAlgorithm::Gcra(Gcra::per_window(limit, window_ns, capacity)?)
        }
    })
}

/// A limit of zero is refused even when a burst would make the capacity nonzero (the buckets
/// refill `limit` per window; the window algorithms follow suit).
fn check_nonzero_limit(limit: u64) -> Result<(), ParamError> {
    if limit == 0 {
        Err(ParamError::Zero("limit"))
    } else {
        Ok(())
    }
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
        let exclude_paths = config
            .exclude_paths
            .iter()
            .filter_map(|p| Glob::new(p).ok())
            .collect();
        Ok(Rule {
            name: config.name.as_str().into(),
            scope: config.scope,
            kind: config.algorithm,
            window_secs: config.window_secs.get(),
            paths,
            exclude_paths,
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
            && !self.exclude_paths.iter().any(|g| g.matches(facts.path))
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

    /// Decides a request at `now_ns` with the in-memory limiters: every applicable rule is
    /// checked in configuration order, with the request's cost (the request's own, else the
    /// rule's, else the endpoint's); the first enforcing rule that refuses decides the outcome
    /// through its action, and later rules are not charged. Shadow rules are charged and
    /// reported but never refuse. Rules checked before a refusing one keep the charge
    /// (conservative: a refused request may count against them).
    pub fn decide(&self, facts: &RequestFacts<'_>, now_ns: u64) -> Verdict {
        let checks = self.checks(facts);
        let mut decisions = Vec::with_capacity(checks.len());
        for check in &checks {
            let d = self.check_locally(check, now_ns);
            decisions.push(d);
            if !d.allowed && !check.shadow {
                break;
            }
        }
        self.verdict(&checks, &decisions)
    }

    /// The checks a request needs, in configuration order: one per applicable rule (path,
    /// method, and the scope's identifier present). A backend decides them in this order and
    /// stops after the first refusal of an enforcing (non-shadow) rule.
    pub fn checks<'p>(&'p self, facts: &RequestFacts<'p>) -> Vec<Check<'p>> {
        let endpoint_cost = facts.cost.unwrap_or_else(|| self.endpoint_cost(facts.path));
        let mut checks = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
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
            checks.push(Check {
                rule: index,
                name: &rule.name,
                scope: rule.scope,
                key,
                kind: rule.kind,
                algorithm: &quota.algorithm,
                limit: quota.limit,
                capacity: quota.algorithm.capacity(),
                window_secs: rule.window_secs,
                cost: facts.cost.or(rule.cost).unwrap_or(endpoint_cost),
                shadow: rule.shadow,
                on_backend_failure: rule.on_backend_failure,
            });
        }
        checks
    }

    /// Decides one check with its rule's in-memory limiter (the memory backend, and the local
    /// fallback of a shared one).
    pub fn check_locally(&self, check: &Check<'_>, now_ns: u64) -> Decision {
        match self.rules.get(check.rule) {
            Some(rule) => rule
                .limiter
                .check(check.algorithm, check.key, now_ns, check.cost),
            // A check planned by another policy: refuse rather than guess.
            None => Decision {
                allowed: false,
                remaining: 0,
                reset_after_ns: 0,
                retry_after_ns: crate::NEVER,
            },
        }
    }

    /// The verdict from the decisions of `checks`, in order; `decisions` may be shorter (a
    /// backend stops after the first enforcing refusal), and the first enforcing refusal
    /// decides the outcome through its rule's action.
    pub fn verdict(&self, checks: &[Check<'_>], decisions: &[Decision]) -> Verdict {
        let mut statuses = Vec::with_capacity(decisions.len());
        for (check, d) in checks.iter().zip(decisions) {
            statuses.push(RuleStatus {
                name: check.name.clone(),
                quota: check.quota(),
                window_secs: check.window_secs,
                remaining: d.remaining,
                reset_after_ns: d.reset_after_ns,
                allowed: d.allowed,
                shadow: check.shadow,
            });
            if !d.allowed && !check.shadow {
                let action = self
                    .rules
                    .get(check.rule)
                    .map_or(ActionConfig::Reject, |r| r.action);
                return Verdict {
                    outcome: refusal(action, d.retry_after_ns),
                    decided_by: Some(check.name.clone()),
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

    /// The longest a request may wait in all under the `delay` or `queue` action of the rule
    /// called `name` (`None` for other actions and unknown rules).
    pub fn max_wait_ns(&self, name: &str) -> Option<u64> {
        let rule = self.rules.iter().find(|r| &*r.name == name)?;
        match rule.action {
            ActionConfig::Delay { max_delay_ms } => Some(max_delay_ms.saturating_mul(NS_PER_MS)),
            ActionConfig::Queue { max_wait_ms, .. } => Some(max_wait_ms.saturating_mul(NS_PER_MS)),
            ActionConfig::Reject | ActionConfig::Degrade => None,
        }
    }

    /// The configured rules' names, in order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// Keys held by every rule's in-memory limiter.
    pub fn keys(&self) -> usize {
        self.rules.iter().map(|r| r.limiter.len()).sum()
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
