//! The store's series, read from its own counters at scrape time ([`store::StoreStats`]):
//! - `database_query_duration_seconds{database_type,operation,table}` (histogram, seed 003):
//!   one observation per store call, from having a connection to giving it back;
//! - `database_slow_queries_total{database_type,operation,table}`: calls at or over the
//!   slow-query threshold (`--database-slow-query-threshold`);
//! - per pool (`pool` = `primary` or `replica`): the gauges `database_connections_active`
//!   (handed out now), `database_connections_idle` and `database_connections_max`, the
//!   histogram `database_pool_acquire_duration_seconds` (waits for a connection) and
//!   `database_pool_acquire_timeouts_total`;
//! - with a read replica: `database_replica_reads_total` and
//!   `database_replica_fallbacks_total` (replica reads served by the primary instead).
//!
//! `database_type` is `sqlite` or `postgres`; `operation` and `table` come from the store's
//! closed enums, so every label is bounded.
//!
//! ```
//! # async fn demo() -> Result<(), store::StoreError> {
//! use telemetry::{Metrics, MetricsConfig};
//! let dir = std::env::temp_dir().join(format!("telemetry-doc-{}", std::process::id()));
//! let store = store::Store::connect(&store::StoreOptions::sqlite_in(&dir)).await?;
//! let metrics = Metrics::new(MetricsConfig::default());
//! let watched = store.clone();
//! metrics.database().watch(move || watched.stats());
//! store.list_tenants().await?;
//! let text = metrics.encode();
//! assert!(text.contains(r#"database_query_duration_seconds_count{database_type="sqlite",operation="select",table="tenants"} 1"#));
//! # Ok(()) }
//! ```

use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

use store::{HistogramSnapshot, StoreStats};

type Reader = Arc<dyn Fn() -> StoreStats + Send + Sync>;

/// The store whose counters `/metrics` shows; reach it through [`crate::Metrics::database`].
#[derive(Clone, Default)]
pub struct DatabaseMetrics {
    watched: Arc<RwLock<Option<Reader>>>,
}

impl std::fmt::Debug for DatabaseMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseMetrics")
            .field("watching", &self.reader().is_some())
            .finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    database_type: &'static str,
    operation: &'static str,
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database_type: &'static str,
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    database_type: &'static str,
}

impl DatabaseMetrics {
    pub(crate) fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = DatabaseMetrics::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Shows what `read` returns from the next scrape on, replacing any earlier reader (a
    /// process has one store).
    pub fn watch(&self, read: impl Fn() -> StoreStats + Send + Sync + 'static) {
        *self.watched.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(read));
    }

    pub(crate) fn reader(&self) -> Option<Reader> {
        self.watched
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn histogram(
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    // The encoder wants each bucket's own count, ending with `+Inf` (written for `f64::MAX`),
    // and accumulates them itself; the snapshot is cumulative.
    let mut previous = 0;
    let mut own: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|(bound, cumulative)| {
            let n = cumulative.saturating_sub(previous);
            previous = (*cumulative).max(previous);
            (*bound, n)
        })
        .collect();
    own.push((f64::MAX, h.count.saturating_sub(previous)));
    family.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &own, None)
}

impl Collector for DatabaseMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(read) = self.reader() else {
            return Ok(());
        };
        let stats = read();
        let database_type = stats.backend.as_str();
        if !stats.queries.is_empty() {
            let mut family = encoder.encode_descriptor(
                "database_query_duration_seconds",
                "Database query duration in seconds (one store call: a statement or a transaction)",
                None,
                MetricType::Histogram,
            )?;
            for q in &stats.queries {
                let labels = QueryLabels {
                    database_type,
                    operation: q.operation,
                    table: q.table,
                };
                histogram(&mut family.encode_family(&labels)?, &q.durations)?;
            }
            let mut family = encoder.encode_descriptor(
                "database_slow_queries",
                "Database queries that took at least the slow-query threshold",
                None,
                MetricType::Counter,
            )?;
            for q in &stats.queries {
                let labels = QueryLabels {
                    database_type,
                    operation: q.operation,
                    table: q.table,
                };
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&q.slow, None)?;
            }
        }
        type PoolField = fn(&store::PoolStats) -> i64;
        let gauges: [(&str, &str, PoolField); 3] = [
            (
                "database_connections_active",
                "Database connections handed out to queries now",
                |p| i64::from(p.in_use),
            ),
            (
                "database_connections_idle",
                "Open database connections waiting in the pool",
                |p| i64::from(p.idle),
            ),
            (
                "database_connections_max",
                "Most connections the pool may open",
                |p| i64::from(p.max),
            ),
        ];
        for (name, help, field) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for p in &stats.pools {
                let labels = PoolLabels {
                    database_type,
                    pool: p.role.as_str(),
                };
                family.encode_family(&labels)?.encode_gauge(&field(p))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "database_pool_acquire_duration_seconds",
            "Time queries waited for a free database connection",
            None,
            MetricType::Histogram,
        )?;
        for p in &stats.pools {
            let labels = PoolLabels {
                database_type,
                pool: p.role.as_str(),
            };
            histogram(&mut family.encode_family(&labels)?, &p.acquire_wait)?;
        }
        let mut family = encoder.encode_descriptor(
            "database_pool_acquire_timeouts",
            "Waits for a database connection that gave up at the acquire timeout",
            None,
            MetricType::Counter,
        )?;
        for p in &stats.pools {
            let labels = PoolLabels {
                database_type,
                pool: p.role.as_str(),
            };
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&p.acquire_timeouts, None)?;
        }
        if stats.pools.len() > 1 {
            let labels = TypeLabel { database_type };
            for (name, help, value) in [
                (
                    "database_replica_reads",
                    "Reads served by the read replica",
                    stats.replica_reads,
                ),
                (
                    "database_replica_fallbacks",
                    "Reads meant for the read replica that the primary served because the replica was unavailable",
                    stats.replica_fallbacks,
                ),
            ] {
                let mut family =
                    encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{parse, samples, OpenMetricsValue};

    #[test]
    fn snapshots_encode_as_cumulative_histograms_with_inf() {
        let metrics = crate::Metrics::new(crate::MetricsConfig::default());
        let mut buckets: Vec<(f64, u64)> = store::QUERY_BUCKETS.iter().map(|b| (*b, 0)).collect();
        // Two observations at or under 1 ms, three under 10 ms, and one over every bound.
        for (bound, n) in buckets.iter_mut() {
            *n = if *bound >= 0.01 {
                3
            } else if *bound >= 0.001 {
                2
            } else {
                0
            };
        }
        let stats = StoreStats {
            backend: store::Backend::Sqlite,
            queries: vec![store::QueryStats {
                operation: "select",
                table: "flags",
                durations: HistogramSnapshot {
                    count: 4,
                    sum_seconds: 60.5,
                    buckets,
                },
                slow: 1,
            }],
            pools: Vec::new(),
            replica_reads: 0,
            replica_fallbacks: 0,
            slow_query_threshold: std::time::Duration::from_secs(1),
        };
        metrics.database().watch(move || stats.clone());
        let exp = parse(&metrics.encode());
        match samples(
            &exp,
            "database_query_duration_seconds",
            &[("table", "flags")],
        )
        .first()
        {
            Some(OpenMetricsValue::Histogram(h)) => {
                let at = |bound: f64| {
                    h.buckets
                        .iter()
                        .find(|b| b.upper_bound == bound)
                        .map(|b| b.count.as_f64())
                };
                assert_eq!(at(0.0005), Some(0.0));
                assert_eq!(at(0.001), Some(2.0));
                assert_eq!(at(0.01), Some(3.0));
                assert_eq!(at(10.0), Some(3.0));
                assert_eq!(at(f64::INFINITY), Some(4.0));
                assert_eq!(h.count, Some(4));
            }
            other => panic!("expected a histogram, got {other:?}"),
        }
    }
}
