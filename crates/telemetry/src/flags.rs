//! The flags engine's series:
//! - `flag_evaluations_total{reason}`: flag evaluations answered over OFREP (single and bulk
//!   alike), by OFREP reason (`STATIC`, `DEFAULT`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`,
//!   `ERROR`); six counters made up front, so counting is one atomic add with no label lookup;
//! - `flag_exposures_total{tenant_id}`: flag exposures handed to the exposure recorder;
//! - `flag_exposures_dropped_total`: exposures dropped because the recorder's queue was full
//!   (the database is not keeping up);
//! - `flag_exposure_write_errors_total`: exposures whose batch the store refused or could not
//!   write;
//! - `flag_usage_dropped_total`: evaluations left uncounted for usage analytics because the
//!   in-memory counter held its limit of distinct (tenant, environment, flag, variant, hour)
//!   cells;
//! - `flag_usage_write_errors_total`: counted evaluations whose batch could not be written.
//! - `flag_rollout_actions_total{action}`: what guarded rollouts did (`advance`, `rollback`,
//!   `kill`, `complete`, `abort`), by the check job or an admin; counters made up front.
//!
//! Labels are bounded by construction: `tenant_id` passes through the process's tenant guard.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::TenantLabels;

/// The OFREP reasons, in the order of [`FlagMetrics`]' evaluation counters.
pub const REASONS: [&str; 6] = [
    "STATIC",
    "DEFAULT",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "ERROR",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The guarded-rollout actions, in the order of [`FlagMetrics`]' rollout counters.
pub const ROLLOUT_ACTIONS: [&str; 5] = ["advance", "rollback", "kill", "complete", "abort"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant_id: String,
}

/// The flags series; reach them through [`crate::Metrics::flags`].
#[derive(Debug)]
pub struct FlagMetrics {
    evaluations: [Counter; 6],
    exposures: Family<TenantLabel, Counter>,
    dropped: Counter,
    write_errors: Counter,
    usage_dropped: Counter,
    usage_write_errors: Counter,
    rollout_actions: [Counter; 5],
}

impl FlagMetrics {
    pub(crate) fn register(registry: &mut Registry) -> FlagMetrics {
        let reasons = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "flag_evaluations",
            "Flag evaluations answered over OFREP, by reason",
            reasons.clone(),
        );
        let m = FlagMetrics {
            evaluations: REASONS
                .map(|reason| reasons.get_or_create(&ReasonLabels { reason }).clone()),
            exposures: Family::default(),
            dropped: Counter::default(),
            write_errors: Counter::default(),
            usage_dropped: Counter::default(),
            usage_write_errors: Counter::default(),
            rollout_actions: Default::default(),
        };
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "flag_rollout_actions",
            "Guarded rollout actions (advance, rollback, kill, complete, abort)",
            actions.clone(),
        );
        let m = FlagMetrics {
            rollout_actions: ROLLOUT_ACTIONS
                .map(|action| actions.get_or_create(&ActionLabels { action }).clone()),
            ..m
        };
        registry.register(
            "flag_exposures",
            "Flag exposures handed to the exposure recorder",
            m.exposures.clone(),
        );
        registry.register(
            "flag_exposures_dropped",
            "Flag exposures dropped because the recorder's queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "flag_exposure_write_errors",
            "Flag exposures whose batch could not be written to the store",
            m.write_errors.clone(),
        );
        registry.register(
            "flag_usage_dropped",
            "Flag evaluations not counted for usage analytics because the counter was full",
            m.usage_dropped.clone(),
        );
        registry.register(
            "flag_usage_write_errors",
            "Counted flag evaluations whose batch could not be written to the store",
            m.usage_write_errors.clone(),
        );
        m
    }
}

/// [`FlagMetrics`] with the process's tenant-label guard.
pub struct FlagRecorder<'a> {
    pub(crate) metrics: &'a FlagMetrics,
    pub(crate) tenants: &'a TenantLabels,
}

impl FlagRecorder<'_> {
    /// Counts one evaluation with OFREP reason `reason` (an unknown reason counts as `ERROR`).
    pub fn count_evaluation(&self, reason: &str) {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(5);
        if let Some(counter) = self.metrics.evaluations.get(i) {
            counter.inc();
        }
    }

    /// Counts one exposure of a flag in `tenant_id`.
    pub fn exposed(&self, tenant_id: &str) {
        self.metrics
            .exposures
            .get_or_create(&TenantLabel {
                tenant_id: self.tenants.label(tenant_id).to_owned(),
            })
            .inc();
    }

    /// Counts one exposure dropped at a full queue.
    pub fn exposure_dropped(&self) {
        self.metrics.dropped.inc();
    }

    /// Counts one guarded-rollout action (one of [`ROLLOUT_ACTIONS`]; others are not counted).
    pub fn rollout_action(&self, action: &str) {
        if let Some(i) = ROLLOUT_ACTIONS.iter().position(|a| *a == action) {
            self.metrics.rollout_actions[i].inc();
        }
    }

    /// Counts `n` exposures lost to a failed write.
    pub fn exposure_write_failed(&self, n: u64) {
        self.metrics.write_errors.inc_by(n);
    }

    /// Counts `n` evaluations left out of usage analytics at a full counter.
    pub fn usage_dropped(&self, n: u64) {
        self.metrics.usage_dropped.inc_by(n);
    }

    /// Counts `n` evaluations whose usage batch could not be written.
    pub fn usage_write_failed(&self, n: u64) {
        self.metrics.usage_write_errors.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{parse, total};
    use crate::{Metrics, MetricsConfig};

    #[test]
    fn flag_series_are_exposed_with_guarded_tenant_labels() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        let f = m.flags();
        f.exposed("tn_a");
        f.exposed("tn_a");
        f.exposed("tn_b");
        f.exposure_dropped();
        f.exposure_write_failed(3);
        f.usage_dropped(4);
        f.usage_write_failed(5);
        f.rollout_action("rollback");
        f.rollout_action("not-an-action");
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "flag_rollout_actions", &[("action", "rollback")]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "flag_rollout_actions", &[("action", "advance")]),
            Some(0.0)
        );
        assert_eq!(
            total(&exp, "flag_exposures", &[("tenant_id", "tn_a")]),
            Some(2.0)
        );
        assert_eq!(
            total(&exp, "flag_exposures", &[("tenant_id", "other")]),
            Some(1.0)
        );
        assert_eq!(total(&exp, "flag_exposures_dropped", &[]), Some(1.0));
        assert_eq!(total(&exp, "flag_exposure_write_errors", &[]), Some(3.0));
        assert_eq!(total(&exp, "flag_usage_dropped", &[]), Some(4.0));
        assert_eq!(total(&exp, "flag_usage_write_errors", &[]), Some(5.0));
    }
}
