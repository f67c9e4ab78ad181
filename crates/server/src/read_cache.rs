//! The server's read caches: one [`cache::TieredCache`] per data type (Weber profiles today),
//! so each has its own memory cap and its own `cache_*{cache="…"}` series.

use cache::{CacheConfig, CacheError, TieredCache};
use telemetry::Metrics;

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
        // Replicas sharing the Redis layer tell each other what they change, so none serves
        // its memory copy of another's change for longer than the bus takes.
        invalidation_channel: Some(format!("invalidate:{name}")),
        ..CacheConfig::default()
    })?;
    let watched = cache.clone();
    metrics.caches().watch(name, move || watched.stats());
    Ok(cache)
}
