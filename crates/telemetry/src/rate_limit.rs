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

/// One rule's decisions since start, as [`RateLimitMetrics::decisions`] reads them back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleDecisions {
    pub allowed: u64,
    pub rejected: u64,
    pub delayed: u64,
    pub queued: u64,
    pub degraded: u64,
    /// A shadow rule that would have refused (it let the request through).
    pub shadow_refused: u64,
    /// Checks the shared backend could not decide, whatever the failure policy did.
    pub backend_failures: u64,
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

    /// How `rule` has decided so far (read back for the console; the rule names come from the
    /// configuration, so the caller knows them).
    pub fn decisions(&self, rule: &str) -> RuleDecisions {
        let count = |decision: &'static str| {
            self.decisions
                .get(&DecisionLabels {
                    rule: rule.to_owned(),
                    decision,
                })
                .map(|c| c.get())
                .unwrap_or(0)
        };
        RuleDecisions {
            allowed: count("allowed"),
            rejected: count("rejected"),
            delayed: count("delayed"),
            queued: count("queued"),
            degraded: count("degraded"),
            shadow_refused: count("shadow_refused"),
            backend_failures: ["fail_open", "fail_closed", "local_fallback"]
                .into_iter()
                .map(|policy| {
                    self.failures
                        .get(&FailureLabels {
                            rule: rule.to_owned(),
                            policy,
                        })
                        .map(|c| c.get())
                        .unwrap_or(0)
                })
                .sum(),
        }
    }

    /// Sets the number of keys the in-memory limiters hold.
    pub fn set_keys(&self, keys: usize) {
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_back_per_rule() {
        let m = RateLimitMetrics::register(&mut Registry::default());
        m.decided("per-key", "allowed");
        m.decided("per-key", "rejected");
        m.decided("per-key", "rejected");
        m.decided("burst", "shadow_refused");
        m.backend_failed("per-key", "fail_open");
        let per_key = m.decisions("per-key");
        assert_eq!(
            (per_key.allowed, per_key.rejected, per_key.backend_failures),
            (1, 2, 1)
        );
        assert_eq!(m.decisions("burst").shadow_refused, 1);
        assert_eq!(m.decisions("never-used"), RuleDecisions::default());
    }
}
