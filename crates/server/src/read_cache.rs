//! The server's read caches: one [`cache::TieredCache`] per data type (Weber profiles today),
//! so each has its own memory cap and its own `cache_*{cache="…"}` series.

use cache::{CacheConfig, CacheError, CacheStats, LayerStats, TieredCache};
use telemetry::{CacheCounts, CacheLayerCounts, Metrics};

/// Where the read caches keep their shared layer.
#[derive(Debug, Clone, Default)]
pub struct ReadCacheSettings {
    /// `redis://…` for the L2 layer that replicas share; `None` keeps every cache in process
    /// memory only.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key, so deployments (and tests) can share one Redis.
    pub key_prefix: String,
}

impl ReadCacheSettings {
    /// The key prefix used when none is configured.
    pub const DEFAULT_KEY_PREFIX: &'static str = "signalbox:cache:";

    /// Memory only, under the default prefix.
    pub fn memory_only() -> ReadCacheSettings {
        ReadCacheSettings {
            redis_url: None,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
        }
    }
}

/// Builds the cache of one data type, capped at `l1_max_bytes` in memory, and shows its counters
/// on `/metrics` under `name`.
pub(crate) fn build(
    name: &'static str,
    l1_max_bytes: u64,
    settings: &ReadCacheSettings,
    metrics: &Metrics,
) -> Result<TieredCache, CacheError> {
    let cache = TieredCache::new(CacheConfig {
        l1_max_bytes,
        redis_url: settings.redis_url.clone(),
        redis_key_prefix: settings.key_prefix.clone(),
        ..CacheConfig::default()
    })?;
    let watched = cache.clone();
    metrics
        .caches()
        .watch(name, move || counts(&watched.stats()));
    Ok(cache)
}

fn counts(stats: &CacheStats) -> CacheCounts {
    let layer = |l: &LayerStats| CacheLayerCounts {
        hits: l.hits,
        misses: l.misses,
        writes: l.writes,
        evictions: l.evictions,
        errors: l.errors,
        skipped: l.skipped,
    };
    CacheCounts {
        l1: layer(&stats.l1),
        l2: layer(&stats.l2),
        loads: stats.loads,
        load_errors: stats.load_errors,
        coalesced: stats.coalesced,
        refreshes: stats.refreshes,
        oversize: stats.oversize,
        stale_discarded: stats.stale_discarded,
        l1_bytes: stats.l1_weighted_bytes,
        l1_entries: stats.l1_entries,
    }
}
