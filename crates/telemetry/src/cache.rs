//! The read caches' series, read from each cache's own counters at scrape time:
//! - per layer (`layer` = `l1` or `l2`): `cache_hits_total`, `cache_misses_total`,
//!   `cache_writes_total`, `cache_evictions_total`, `cache_errors_total`,
//!   `cache_skipped_total` (operations not tried while the layer was marked down);
//! - per cache: `cache_loads_total`, `cache_load_errors_total`, `cache_coalesced_total`
//!   (reads that joined a load in flight), `cache_refreshes_total`, `cache_oversize_total`,
//!   `cache_stale_discarded_total`, and the gauges `cache_l1_bytes` and `cache_l1_entries`.
//!
//! Every series carries `cache`, the data type's name (`weber_profile`), fixed by the server,
//! so labels stay bounded. The values are the cache's own [`cache::CacheStats`] snapshot.
//!
//! ```
//! use cache::{CacheStats, LayerStats};
//! use telemetry::{Metrics, MetricsConfig};
//! let metrics = Metrics::new(MetricsConfig::default());
//! metrics.caches().watch("weber_profile", || CacheStats {
//!     l1: LayerStats { hits: 9, misses: 1, ..Default::default() },
//!     loads: 1,
//!     ..Default::default()
//! });
//! let text = metrics.encode();
//! assert!(text.contains(r#"cache_hits_total{cache="weber_profile",layer="l1"} 9"#));
//! assert!(text.contains(r#"cache_loads_total{cache="weber_profile"} 1"#));
//! ```

use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use cache::{CacheStats, LayerStats};

type Reader = Arc<dyn Fn() -> CacheStats + Send + Sync>;

/// The caches whose counters `/metrics` shows; reach it through [`crate::Metrics::caches`].
#[derive(Clone, Default)]
pub struct CacheMetrics {
    watched: Arc<RwLock<Vec<(&'static str, Reader)>>>,
}

impl std::fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.readers().iter().map(|(name, _)| *name).collect();
        f.debug_struct("CacheMetrics")
            .field("watched", &names)
            .finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabels {
    cache: &'static str,
    layer: &'static str,
}

impl CacheMetrics {
    pub(crate) fn register(registry: &mut Registry) -> CacheMetrics {
        let metrics = CacheMetrics::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Shows the counters `read` returns under `cache` from the next scrape on. Watching a
    /// name again replaces the earlier reader, so a rebuilt cache does not show twice.
    pub fn watch(
        &self,
        cache: &'static str,
        read: impl Fn() -> CacheStats + Send + Sync + 'static,
    ) {
        let mut watched = self.watched.write().unwrap_or_else(PoisonError::into_inner);
        watched.retain(|(name, _)| *name != cache);
        watched.push((cache, Arc::new(read)));
    }

    /// Every watched cache's counters now, by name (read back for the console).
    pub fn snapshot(&self) -> Vec<(&'static str, CacheStats)> {
        self.readers()
            .into_iter()
            .map(|(name, read)| (name, read()))
            .collect()
    }

    pub(crate) fn readers(&self) -> Vec<(&'static str, Reader)> {
        self.watched
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

type LayerField = fn(&LayerStats) -> u64;
type CacheField = fn(&CacheStats) -> u64;

const LAYER_SERIES: [(&str, &str, LayerField); 6] = [
    ("cache_hits", "Reads answered by the cache layer", |l| {
        l.hits
    }),
    (
        "cache_misses",
        "Reads the cache layer could not answer",
        |l| l.misses,
    ),
    ("cache_writes", "Values written into the cache layer", |l| {
        l.writes
    }),
    (
        "cache_evictions",
        "Entries the cache layer dropped to stay under its size cap",
        |l| l.evictions,
    ),
    (
        "cache_errors",
        "Failed operations of the cache layer",
        |l| l.errors,
    ),
    (
        "cache_skipped",
        "Cache operations not tried because the layer was marked down",
        |l| l.skipped,
    ),
];

const CACHE_COUNTERS: [(&str, &str, CacheField); 6] = [
    (
        "cache_loads",
        "Loader calls for cache misses (one per single-flight group)",
        |c| c.loads,
    ),
    (
        "cache_load_errors",
        "Cache loader calls that failed (never cached)",
        |c| c.load_errors,
    ),
    (
        "cache_coalesced",
        "Cache reads that joined a load already in flight",
        |c| c.coalesced,
    ),
    ("cache_refreshes", "Refresh-ahead reloads started", |c| {
        c.refreshes
    }),
    (
        "cache_oversize",
        "Values served but not cached because they were too large",
        |c| c.oversize,
    ),
    (
        "cache_stale_discarded",
        "Loaded values not cached because the key changed while they were loading",
        |c| c.stale_discarded,
    ),
];

const CACHE_GAUGES: [(&str, &str, CacheField); 2] = [
    (
        "cache_l1_bytes",
        "Bytes the in-process cache layer holds, by its weigher",
        |c| c.l1_weighted_bytes,
    ),
    (
        "cache_l1_entries",
        "Entries the in-process cache layer holds",
        |c| c.l1_entries,
    ),
];

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings: Vec<(&'static str, CacheStats)> = self
            .readers()
            .into_iter()
            .map(|(name, read)| (name, read()))
            .collect();
        if readings.is_empty() {
            return Ok(());
        }
        for (name, help, field) in LAYER_SERIES {
            let kind = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (cache, counts) in &readings {
                for (layer, of_layer) in [("l1", &counts.l1), ("l2", &counts.l2)] {
                    let labels = LayerLabels { cache, layer };
                    ConstCounter::new(field(of_layer)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, field) in CACHE_COUNTERS {
            let kind = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (cache, counts) in &readings {
                let labels = CacheLabel { cache };
                ConstCounter::new(field(counts)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, field) in CACHE_GAUGES {
            let kind = ConstGauge::new(0i64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (cache, counts) in &readings {
                let labels = CacheLabel { cache };
                let level = i64::try_from(field(counts)).unwrap_or(i64::MAX);
                ConstGauge::new(level).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
