//! The rate limiter's series:
//! - `rate_limit_decisions_total{rule,decision}`: requests a rule decided, `decision` one of
//!   `allowed`, `rejected`, `delayed`, `queued`, `degraded`, `shadow_refused` (a shadow rule that
//!   would have refused);
//! - `rate_limit_backend_failures_total{rule,policy}`: checks the shared backend (Redis) could
//!   not decide, by the rule's failure policy (`fail_open`, `fail_closed`, `local_fallback`);
//! - `rate_limit_keys`: keys held by the in-memory limiters (the memory backend, or the local
//!   fallback of the Redis one).
//!
//! Labels are bounded by construction: rule names come from the configuration (at most 64
//! rules), decisions and policies are fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    rule: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    rule: String,
    policy: &'static str,
}

/// The rate-limit series; reach them through [`crate::Metrics::rate_limit`].
#[derive(Debug)]
pub struct RateLimitMetrics {
    decisions: Family<DecisionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    keys: Gauge,
}

impl RateLimitMetrics {
    pub(crate) fn register(registry: &mut Registry) -> RateLimitMetrics {
        let m = RateLimitMetrics {
            decisions: Family::default(),
            failures: Family::default(),
            keys: Gauge::default(),
        };
        registry.register(
            "rate_limit_decisions",
            "Requests decided by a rate-limit rule, by decision",
            m.decisions.clone(),
        );
        registry.register(
            "rate_limit_backend_failures",
            "Rate-limit checks the shared backend could not decide, by the rule's failure policy",
            m.failures.clone(),
        );
        registry.register(
            "rate_limit_keys",
            "Keys held by the in-memory rate limiters",
            m.keys.clone(),
        );
        m
    }

    /// Counts one decision of `rule`.
    pub fn decided(&self, rule: &str, decision: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                rule: rule.to_owned(),
                decision,
            })
            .inc();
    }

    /// Counts one check of `rule` that the shared backend could not decide.
    pub fn backend_failed(&self, rule: &str, policy: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                rule: rule.to_owned(),
                policy,
            })
            .inc();
    }

    /// Sets the number of keys the in-memory limiters hold.
    pub fn set_keys(&self, keys: usize) {
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}
