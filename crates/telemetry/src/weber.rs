//! The weber engine's series:
//! - `weber_events_ingested_total{tenant_id,outcome}`: interactions offered to the ingest API,
//!   by outcome (`stored`, `duplicate`, `rejected`);
//! - `weber_calculations_total{tenant_id,cause}`: profile recalculations (`event`, `rebuild`,
//!   `manual`, `reconcile`);
//! - `weber_profile_update_seconds` (histogram): from an event's commit at ingest to its profile
//!   being committed and readable;
//! - `weber_profiles{tenant_id,segment}`: stored profiles per sensitivity segment (refreshed
//!   periodically from the store);
//! - `weber_stream_lag`: events appended to the stream and not yet applied;
//! - `weber_stream_publish_errors_total`: committed events whose stream message could not be
//!   written (the worker's reconciliation picks them up);
//! - `weber_profile_reads_total{cache}`: single-profile reads answered from the read cache
//!   (`hit`) or the store (`miss`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::TenantLabels;

/// Update-latency buckets: the objective is 50 ms at p99, the seed's claim 500 ms.
pub const UPDATE_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant_id: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    tenant_id: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SegmentLabels {
    tenant_id: String,
    segment: String,
}

/// The weber series; reach them through [`crate::Metrics::weber`].
#[derive(Debug)]
pub struct WeberMetrics {
    ingested: Family<OutcomeLabels, Counter>,
    calculations: Family<CauseLabels, Counter>,
    update_latency: Histogram,
    profiles: Family<SegmentLabels, Gauge>,
    stream_lag: Gauge,
    publish_errors: Counter,
    reads: Family<CacheLabels, Counter>,
    /// Per-tenant recent figures for the analytics answer (not exported).
    performance: crate::weber_perf::WeberPerformance,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

impl WeberMetrics {
    pub(crate) fn register(registry: &mut Registry) -> WeberMetrics {
        let m = WeberMetrics {
            ingested: Family::default(),
            calculations: Family::default(),
            update_latency: Histogram::new(UPDATE_BUCKETS),
            profiles: Family::default(),
            stream_lag: Gauge::default(),
            publish_errors: Counter::default(),
            reads: Family::default(),
            performance: Default::default(),
        };
        registry.register(
            "weber_profile_reads",
            "Single-profile reads, by whether the read cache answered",
            m.reads.clone(),
        );
        registry.register(
            "weber_events_ingested",
            "Interactions offered to the ingest API, by outcome",
            m.ingested.clone(),
        );
        registry.register(
            "weber_calculations",
            "Weber profile recalculations, by cause",
            m.calculations.clone(),
        );
        registry.register(
            "weber_profile_update_seconds",
            "Time from an interaction's commit to its profile being readable",
            m.update_latency.clone(),
        );
        registry.register(
            "weber_profiles",
            "Stored Weber profiles per sensitivity segment",
            m.profiles.clone(),
        );
        registry.register(
            "weber_stream_lag",
            "Interactions appended to the stream and not yet applied to profiles",
            m.stream_lag.clone(),
        );
        registry.register(
            "weber_stream_publish_errors",
            "Committed interactions whose stream message could not be written",
            m.publish_errors.clone(),
        );
        m
    }
}

/// [`WeberMetrics`] with the process's tenant-label guard.
pub struct WeberRecorder<'a> {
    pub(crate) metrics: &'a WeberMetrics,
    pub(crate) tenants: &'a TenantLabels,
}

impl WeberRecorder<'_> {
    /// Counts `n` interactions with `outcome` (`stored`, `duplicate` or `rejected`).
    pub fn ingested(&self, tenant_id: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            let errors = if outcome == "rejected" { n } else { 0 };
            self.metrics
                .performance
                .offered(tenant_id, n, errors, Instant::now());
            self.metrics
                .ingested
                .get_or_create(&OutcomeLabels {
                    tenant_id: self.tenants.label(tenant_id).to_owned(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// Counts one profile recalculation.
    pub fn calculated(&self, tenant_id: &str, cause: &'static str) {
        self.metrics
            .performance
            .calculation(tenant_id, Instant::now());
        self.metrics
            .calculations
            .get_or_create(&CauseLabels {
                tenant_id: self.tenants.label(tenant_id).to_owned(),
                cause,
            })
            .inc();
    }

    /// Records one event's commit-to-readable time.
    pub fn update_latency(&self, latency: Duration) {
        self.metrics.update_latency.observe(latency.as_secs_f64());
    }

    /// Records one event's commit-to-readable time for its tenant too (the tenant's
    /// `performance_metrics`); the histogram is the same as [`Self::update_latency`]'s.
    pub fn tenant_update_latency(&self, tenant_id: &str, latency: Duration) {
        self.update_latency(latency);
        self.metrics
            .performance
            .latency(tenant_id, latency, Instant::now());
    }

    /// Counts `n` of the tenant's accepted interactions whose profile update failed.
    pub fn update_failed(&self, tenant_id: &str, n: u64) {
        self.metrics
            .performance
            .failed(tenant_id, n, Instant::now());
    }

    /// The tenant's recent performance in this process (see [`crate::weber_perf`]).
    pub fn performance(&self, tenant_id: &str) -> crate::PerformanceSnapshot {
        self.metrics.performance.snapshot(tenant_id, Instant::now())
    }

    /// Replaces the per-segment profile counts with `(tenant_id, segment, count)` rows.
    pub fn set_profile_counts(&self, rows: &[(String, String, i64)]) {
        let mut folded: HashMap<SegmentLabels, i64> = HashMap::new();
        for (tenant, segment, count) in rows {
            *folded
                .entry(SegmentLabels {
                    tenant_id: self.tenants.label(tenant).to_owned(),
                    segment: segment.clone(),
                })
                .or_default() += count;
        }
        // Segments that emptied must disappear, so start from a clean family.
        self.metrics.profiles.clear();
        for (labels, count) in folded {
            self.metrics.profiles.get_or_create(&labels).set(count);
        }
    }

    /// Sets the stream lag gauge.
    pub fn stream_lag(&self, lag: u64) {
        self.metrics
            .stream_lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Counts one profile read; `cache` is `hit` or `miss`.
    pub fn profile_read(&self, cache: &'static str) {
        self.metrics
            .reads
            .get_or_create(&CacheLabels { cache })
            .inc();
    }

    /// Counts events whose stream message could not be written.
    pub fn publish_failed(&self, n: u64) {
        self.metrics.publish_errors.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{parse, total};
    use crate::{Metrics, MetricsConfig};

    #[test]
    fn weber_series_are_exposed_and_segment_counts_replace() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        let w = m.weber();
        w.ingested("tn_a", "stored", 3);
        w.ingested("tn_a", "rejected", 0);
        w.calculated("tn_a", "event");
        w.update_latency(std::time::Duration::from_millis(4));
        w.set_profile_counts(&[
            ("tn_a".into(), "Insensitive".into(), 2),
            ("tn_b".into(), "Insensitive".into(), 5),
            ("tn_c".into(), "Insensitive".into(), 1),
        ]);
        let exp = parse(&m.encode());
        let stored = [("tenant_id", "tn_a"), ("outcome", "stored")];
        assert_eq!(total(&exp, "weber_events_ingested", &stored), Some(3.0));
        assert_eq!(
            total(&exp, "weber_events_ingested", &[("outcome", "rejected")]),
            None,
            "zero counts create no series"
        );
        assert_eq!(
            total(&exp, "weber_calculations", &[("cause", "event")]),
            Some(1.0)
        );
        assert_eq!(
            total(&exp, "weber_profiles", &[("tenant_id", "other")]),
            Some(6.0),
            "tenants past the label limit are summed"
        );
        w.set_profile_counts(&[("tn_a".into(), "Low_Sensitive".into(), 2)]);
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "weber_profiles", &[("segment", "Insensitive")]),
            None,
            "an emptied segment disappears"
        );
    }
}
