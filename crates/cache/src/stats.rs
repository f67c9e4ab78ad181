//! Counters per layer, kept as atomics and read as a [`CacheStats`] snapshot.
//!
//! The crate does not register metrics itself: the server owns the Prometheus registry
//! (`telemetry`), and reads [`crate::TieredCache::stats`] at scrape time to export these as
//! counters (`cache_hits_total{layer}` and so on). Every counter only grows.

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of one layer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Reads answered by this layer.
    pub hits: u64,
    /// Reads this layer could not answer (the next layer or the loader was asked).
    pub misses: u64,
    /// Values written into this layer (loads, backfills, refreshes, inserts).
    pub writes: u64,
    /// Entries this layer dropped to stay under its size cap. L1 only: Redis evicts by its own
    /// `maxmemory-policy` and does not tell the client; read `evicted_keys` from `INFO stats`.
    pub evictions: u64,
    /// Failed operations (L2: connection refused, timeout, protocol error, undecodable value).
    pub errors: u64,
    /// Operations not attempted because the layer was marked down after an error (L2 only).
    pub skipped: u64,
}

/// A point-in-time copy of every counter of a [`crate::TieredCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The in-process layer.
    pub l1: LayerStats,
    /// The Redis layer.
    pub l2: LayerStats,
    /// Loader calls for misses (one per single-flight group).
    pub loads: u64,
    /// Loader calls that returned an error (never cached).
    pub load_errors: u64,
    /// Reads that joined a load already in flight for their key instead of calling the loader.
    pub coalesced: u64,
    /// Background refresh-ahead reloads started.
    pub refreshes: u64,
    /// Values served but not cached because they exceeded the profile's `max_entry_bytes`.
    pub oversize: u64,
    /// Loaded values not cached because an invalidation or an insert of their key ran while
    /// they were loading.
    pub stale_discarded: u64,
    /// Bytes L1 holds now, by the weigher (key + value + fixed per-entry overhead).
    pub l1_weighted_bytes: u64,
    /// Entries L1 holds now.
    pub l1_entries: u64,
    /// The invalidation bus (all zero without one).
    pub bus: BusStats,
}

/// A point-in-time copy of the invalidation bus's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Messages published (invalidations and heartbeats).
    pub published: u64,
    /// Messages with invalidations received from other processes.
    pub received: u64,
    /// Failed publish attempts (each retried).
    pub publish_errors: u64,
    /// Subscriptions made (the first, and every one after a loss).
    pub subscriptions: u64,
    /// Subscriptions lost (connection closed, or three heartbeats without a message).
    pub subscriptions_lost: u64,
    /// Whether the subscription is live now (L1 is used only then).
    pub live: bool,
}

impl CacheStats {
    /// Reads answered by some layer over all reads (an L2 hit follows an L1 miss, so each read
    /// counts once: answered by L1, by L2, by its own load, or by joining another's load).
    /// 0 when nothing was read.
    pub fn hit_rate(&self) -> f64 {
        let hits = self.l1.hits + self.l2.hits;
        let reads = hits + self.loads + self.coalesced;
        if reads == 0 {
            0.0
        } else {
            hits as f64 / reads as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct LayerCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub evictions: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
}

impl LayerCounters {
    fn snapshot(&self) -> LayerStats {
        LayerStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            writes: get(&self.writes),
            evictions: get(&self.evictions),
            errors: get(&self.errors),
            skipped: get(&self.skipped),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub l1: LayerCounters,
    pub l2: LayerCounters,
    pub loads: AtomicU64,
    pub load_errors: AtomicU64,
    pub coalesced: AtomicU64,
    pub refreshes: AtomicU64,
    pub oversize: AtomicU64,
    pub stale_discarded: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self, l1_weighted_bytes: u64, l1_entries: u64) -> CacheStats {
        CacheStats {
            l1: self.l1.snapshot(),
            l2: self.l2.snapshot(),
            loads: get(&self.loads),
            load_errors: get(&self.load_errors),
            coalesced: get(&self.coalesced),
            refreshes: get(&self.refreshes),
            oversize: get(&self.oversize),
            stale_discarded: get(&self.stale_discarded),
            l1_weighted_bytes,
            l1_entries,
            bus: BusStats::default(),
        }
    }
}

/// Adds one. Relaxed: the counters are independent tallies, nothing is ordered by them.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
