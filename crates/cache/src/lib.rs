//! A two-layer read-through cache: moka in process memory (L1) in front of Redis (L2), with
//! the per-data-type configurations of seeds 002 and 003.
//!
//! [`TieredCache::get_or_load`] is the whole read path:
//!
//! 1. **L1** (if the [`CacheProfile`] names it): a hit returns at once.
//! 2. **Single-flight**: a miss joins the load already in flight for its key, if any, so N
//!    concurrent misses of one key make one trip to Redis and at most one loader call.
//! 3. **L2** (if the profile names it and Redis is configured): `GET` + `PTTL` in one round
//!    trip. A hit is copied into L1 (*backfill*) with Redis's remaining TTL, so both copies
//!    expire together.
//! 4. **Loader**: its value goes into the profile's layers (`SET … PX ttl` in Redis,
//!    gzip-compressed over the profile's threshold) and to every waiting caller. Its error
//!    goes to every waiting caller and is not cached: the next read calls the loader again.
//!
//! **Refresh-ahead:** an L1 hit in the last `refresh_ahead_fraction` of the entry's TTL
//! returns the cached value and starts one background reload (one per entry, and one per key
//! at a time) with that call's loader; the reload rewrites both layers with a fresh TTL.
//!
//! **Size limits:** L1 is capped in bytes ([`CacheConfig::l1_max_bytes`], weighed as key +
//! value + [`L1_ENTRY_OVERHEAD_BYTES`]), so no sequence of keys can grow it past the cap. A
//! value longer than the profile's `max_entry_bytes` is returned but not cached, and counted.
//! A Redis value that would inflate past that limit is refused, not decompressed.
//!
//! **Invalidation:** [`TieredCache::invalidate`] (one key) and
//! [`TieredCache::invalidate_prefix`] (L1 by predicate, Redis by `SCAN MATCH prefix*` +
//! `UNLINK` in batches); [`TieredCache::insert`] writes a changed value through. A load that
//! was in flight when an invalidation or an insert ran does not store its result, since it may
//! have read the data before the change; concurrent inserts never undo each other.
//!
//! **Other processes:** with [`CacheConfig::invalidation_channel`], write-throughs and
//! invalidations are announced over Redis pub/sub and every other process sharing the channel
//! drops those keys from its L1 (see `docs/cache.md` for the staleness bound). A load stores
//! its result in Redis only where no value is (`SET … NX`), so it never replaces another
//! process's write-through. While the subscription is down, L1 is bypassed.
//!
//! **Redis failures never fail a read.** A failed connect or command (or one over
//! [`CacheConfig::redis_timeout`]) is counted, the connection dropped, and L2 skipped for
//! [`CacheConfig::redis_retry_after`]; reads go on from L1 and the loader meanwhile. Nothing
//! is written to Redis during an outage, so a value cached in L1 then may be missing from Redis
//! afterwards, never wrong there.
//!
//! **Metrics:** [`TieredCache::stats`] returns a [`CacheStats`] snapshot of atomic counters
//! (hits, misses, writes, evictions, errors per layer; loads, coalesced reads, refreshes,
//! oversize values). The crate registers nothing itself; the server exports the snapshot.
//!
//! This is an adapter crate: async, on tokio, and it spawns tasks, so it must run inside a
//! tokio runtime.

mod bus;
mod l2;
mod profile;
mod stats;
mod tiered;

use std::sync::Arc;

pub use profile::{
    CacheProfile, Layers, DEFAULT_COMPRESS_OVER_BYTES, SEED_003_COMPRESS_OVER_BYTES,
};
pub use stats::{BusStats, CacheStats, LayerStats};
pub use tiered::{CacheConfig, PrefixInvalidation, TieredCache, L1_ENTRY_OVERHEAD_BYTES};

/// Any error a loader may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a cache call. Redis failures are not among them: they are counted in
/// [`CacheStats`] and the cache carries on without L2.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// A [`CacheProfile`] field is out of range.
    #[error("invalid cache profile: {field} {reason}")]
    InvalidProfile {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The configured Redis URL does not parse.
    #[error("invalid Redis URL for the cache")]
    RedisUrl(#[source] Arc<redis::RedisError>),
    /// The loader failed; every caller that waited on that load gets this error.
    #[error("cache loader failed: {0}")]
    Load(#[source] LoadError),
    /// The loader panicked.
    #[error("cache loader panicked")]
    LoaderPanicked,
    /// An invalidation bus was configured outside a tokio runtime (its tasks start with the
    /// cache).
    #[error("the cache's invalidation bus must be started inside a tokio runtime")]
    NoRuntime,
    /// A cached JSON value does not parse as the requested type.
    #[error("cached value does not decode: {0}")]
    Decode(#[source] Arc<serde_json::Error>),
}

/// A loader's error, shared by every caller of one load.
#[derive(Debug, Clone)]
pub struct LoadError(pub Arc<dyn std::error::Error + Send + Sync + 'static>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
