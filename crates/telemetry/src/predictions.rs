//! The Weber predictions series (purchases, lifetime model refits, prediction reads):
//! - `weber_transactions_ingested_total{tenant_id,outcome}`: purchases offered to
//!   `POST /api/v1/transactions`, by outcome (`stored`, `duplicate`, `conflict`, `rejected`);
//! - `weber_prediction_refits_total{tenant_id,outcome}`: model refits, by outcome (`fitted`;
//!   `insufficient_data` when the history cannot support a fit; `failed`);
//! - `weber_prediction_refit_seconds` (histogram): a refit's time, loading to commit;
//! - `weber_prediction_customers_scored_total{tenant_id}`: customer predictions written by refits;
//! - `weber_prediction_reads_total{endpoint,outcome}`: reads of the prediction endpoints
//!   (`clv`, `churn`, `recommendations`, `model`), by outcome (`found`, `not_found`).
//!
//! Labels are bounded: tenant ids go through the process's tenant-label guard, and every other
//! label is a closed set of `&'static str`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::TenantLabels;

/// Refit-duration buckets, in seconds: from a small tenant's fraction of a second to a large
/// one's minutes.
pub const REFIT_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant_id: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOnly {
    tenant_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

/// The predictions series; reach them through [`crate::Metrics::predictions`].
#[derive(Debug)]
pub struct PredictionMetrics {
    transactions: Family<OutcomeLabels, Counter>,
    refits: Family<OutcomeLabels, Counter>,
    refit_seconds: Histogram,
    scored: Family<TenantOnly, Counter>,
    reads: Family<ReadLabels, Counter>,
}

impl PredictionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> PredictionMetrics {
        let m = PredictionMetrics {
            transactions: Family::default(),
            refits: Family::default(),
            refit_seconds: Histogram::new(REFIT_BUCKETS),
            scored: Family::default(),
            reads: Family::default(),
        };
        registry.register(
            "weber_transactions_ingested",
            "Purchases offered to the transactions API, by outcome",
            m.transactions.clone(),
        );
        registry.register(
            "weber_prediction_refits",
            "Lifetime model refits, by outcome",
            m.refits.clone(),
        );
        registry.register(
            "weber_prediction_refit_seconds",
            "Time of a lifetime model refit, from loading purchases to commit",
            m.refit_seconds.clone(),
        );
        registry.register(
            "weber_prediction_customers_scored",
            "Customer predictions written by refits",
            m.scored.clone(),
        );
        registry.register(
            "weber_prediction_reads",
            "Reads of the prediction endpoints, by endpoint and outcome",
            m.reads.clone(),
        );
        m
    }
}

/// [`PredictionMetrics`] with the process's tenant-label guard.
pub struct PredictionRecorder<'a> {
    pub(crate) metrics: &'a PredictionMetrics,
    pub(crate) tenants: &'a TenantLabels,
}

impl PredictionRecorder<'_> {
    /// Counts `n` purchases with `outcome` (`stored`, `duplicate`, `conflict` or `rejected`).
    pub fn transactions(&self, tenant_id: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.metrics
                .transactions
                .get_or_create(&OutcomeLabels {
                    tenant_id: self.tenants.label(tenant_id).to_owned(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// Counts one refit with `outcome` (`fitted`, `insufficient_data` or `failed`) and its time.
    pub fn refit(&self, tenant_id: &str, outcome: &'static str, took: Duration) {
        self.metrics
            .refits
            .get_or_create(&OutcomeLabels {
                tenant_id: self.tenants.label(tenant_id).to_owned(),
                outcome,
            })
            .inc();
        self.metrics.refit_seconds.observe(took.as_secs_f64());
    }

    /// Counts `n` customer predictions written by a refit.
    pub fn scored(&self, tenant_id: &str, n: u64) {
        self.metrics
            .scored
            .get_or_create(&TenantOnly {
                tenant_id: self.tenants.label(tenant_id).to_owned(),
            })
            .inc_by(n);
    }

    /// Counts one read of a prediction endpoint.
    pub fn read(&self, endpoint: &'static str, found: bool) {
        self.metrics
            .reads
            .get_or_create(&ReadLabels {
                endpoint,
                outcome: if found { "found" } else { "not_found" },
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{parse, total};
    use crate::{Metrics, MetricsConfig};

    #[test]
    fn prediction_series_are_exposed_with_bounded_labels() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        let p = m.predictions();
        p.transactions("tn_a", "stored", 4);
        p.transactions("tn_a", "conflict", 0);
        p.transactions("tn_b", "stored", 2);
        p.refit("tn_a", "fitted", std::time::Duration::from_millis(300));
        p.scored("tn_a", 120);
        p.read("clv", true);
        p.read("clv", false);
        let exp = parse(&m.encode());
        let a = [("tenant_id", "tn_a"), ("outcome", "stored")];
        assert_eq!(total(&exp, "weber_transactions_ingested", &a), Some(4.0));
        assert_eq!(
            total(
                &exp,
                "weber_transactions_ingested",
                &[("tenant_id", "other")]
            ),
            Some(2.0),
            "tenants past the label limit are summed"
        );
        assert_eq!(
            total(
                &exp,
                "weber_transactions_ingested",
                &[("outcome", "conflict")]
            ),
            None
        );
        assert_eq!(
            total(&exp, "weber_prediction_refits", &[("outcome", "fitted")]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "weber_prediction_customers_scored", &[]),
            Some(120.0)
        );
        assert_eq!(
            total(&exp, "weber_prediction_reads", &[("endpoint", "clv")]),
            Some(2.0)
        );
    }
}
