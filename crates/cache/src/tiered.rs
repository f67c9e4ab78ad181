//! [`TieredCache`]: the read path (L1, L2, single-flight load), writes, refresh-ahead and
//! invalidation.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use moka::notification::RemovalCause;
use moka::Expiry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::bus::{Bus, Op};
use crate::l2::{self, RedisLayer};
use crate::stats::{bump, Counters};
use crate::{BoxError, CacheError, CacheProfile, CacheStats, LoadError};

/// What one L1 entry costs beyond its key and value bytes: the moka node, the `Arc`ed entry
/// and the key `String`'s header, rounded up. It keeps a flood of tiny values from holding far
/// more memory than the weighted size says.
pub const L1_ENTRY_OVERHEAD_BYTES: u32 = 160;

/// How a [`TieredCache`] is built.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The L1 cap in bytes, by key + value + [`L1_ENTRY_OVERHEAD_BYTES`] per entry. Past it,
    /// moka evicts (TinyLFU admission, LRU eviction).
    pub l1_max_bytes: u64,
    /// `redis://…` for the L2 layer; `None` runs without one, and profiles that name only L2
    /// are then kept in L1 instead.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key, so several deployments (or tests) can share a Redis.
    pub redis_key_prefix: String,
    /// Deadline of one Redis connect or command; past it the read goes on without L2.
    pub redis_timeout: Duration,
    /// After a Redis failure, how long L2 is skipped before a reconnect is tried.
    pub redis_retry_after: Duration,
    /// Keys per `SCAN` step (and so per `UNLINK`) in prefix invalidation.
    pub scan_batch: usize,
    /// The invalidation bus's channel (Redis pub/sub, under `redis_key_prefix`), for caches
    /// whose L2 other processes share: every process publishes its write-throughs and
    /// invalidations there and drops the keys others announce from its L1. `None` (the
    /// default): no bus, and other processes' changes show in L1 only when entries expire.
    /// Ignored without a Redis URL.
    pub invalidation_channel: Option<String>,
    /// How often the bus publishes a heartbeat. A subscription that hears nothing, not even its
    /// own process's heartbeat, for three of these is taken as lost: L1 is bypassed and emptied
    /// until it is restored. This bounds how long a missed invalidation can be served.
    pub invalidation_heartbeat: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_max_bytes: 64 * 1024 * 1024,
            redis_url: None,
            redis_key_prefix: "sbx:cache:".to_owned(),
            redis_timeout: Duration::from_millis(250),
            redis_retry_after: Duration::from_secs(5),
            scan_batch: 500,
            invalidation_channel: None,
            invalidation_heartbeat: Duration::from_secs(1),
        }
    }
}

/// A two-layer read-through cache of byte values, keyed by string.
///
/// Cheap to clone (one `Arc`); every clone shares the layers, the in-flight loads and the
/// counters. Keys are the caller's: put the data type and the tenant first
/// (`weber:{tenant}:{user}`), so that a prefix names what one invalidation should drop and
/// two tenants can never share an entry. See the crate docs for the behaviour in full.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
}

type Flight = Shared<BoxFuture<'static, Result<Bytes, CacheError>>>;

pub(crate) struct Inner {
    l1: moka::future::Cache<String, L1Entry>,
    l2: Option<RedisLayer>,
    /// Loads in flight, by key: a miss joins the one for its key instead of starting another.
    flights: Mutex<HashMap<String, Flight>>,
    /// Keys with a refresh-ahead reload in flight.
    refreshing: Mutex<HashSet<String>>,
    /// Number of refresh tasks running, for [`TieredCache::wait_for_refreshes`].
    refresh_tasks: watch::Sender<usize>,
    /// Invalidation counters: a load or write that saw another value for its key when it
    /// started does not keep its result, since it may have read the data before the change.
    generations: Generations,
    /// Write-through counters, bumped by [`TieredCache::insert`]: a load that saw another value
    /// when it started does not store its result, which may be older than the written one.
    /// Inserts do not check them, so concurrent writes never undo each other. More shards than
    /// `generations`, because the profile worker writes whole batches at once and a load only
    /// loses its result to a write of a key in its own shard.
    writes: Generations,
    counters: Arc<Counters>,
    /// The invalidation bus, when configured (with Redis).
    bus: Option<Arc<Bus>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(bus) = &self.bus {
            bus.stop();
        }
    }
}

/// One L1 value with the times that drive refresh-ahead.
#[derive(Clone)]
struct L1Entry(Arc<L1Value>);

struct L1Value {
    value: Bytes,
    expires_at: Instant,
    /// From here on a read starts a background reload; `None` with refresh-ahead off.
    refresh_at: Option<Instant>,
    /// Set by the first read that starts a reload of this entry, so it starts only one.
    refresh_claimed: AtomicBool,
}

impl L1Entry {
    fn new(value: Bytes, expires_at: Instant, profile: &CacheProfile) -> Self {
        let window = profile.refresh_window();
        let refresh_at = (!window.is_zero())
            .then(|| expires_at.checked_sub(window).unwrap_or_else(Instant::now));
        Self(Arc::new(L1Value {
            value,
            expires_at,
            refresh_at,
            refresh_claimed: AtomicBool::new(false),
        }))
    }

    /// Whether this read should start the entry's one reload.
    fn claim_refresh(&self, now: Instant) -> bool {
        self.0.refresh_at.is_some_and(|at| now >= at)
            && !self.0.refresh_claimed.swap(true, Ordering::AcqRel)
    }
}

/// Per-entry expiry: each entry carries its own deadline (its profile's TTL, or the remaining
/// TTL of the Redis copy it was backfilled from).
struct EntryDeadline;

impl Expiry<String, L1Entry> for EntryDeadline {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &L1Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.0.expires_at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &L1Entry,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.0.expires_at.saturating_duration_since(updated_at))
    }
}

/// Change counters in shards by key hash: a change of a key bumps its shard, a prefix
/// invalidation bumps them all. Sharding keeps a steady stream of changes to some keys from
/// stopping loads of every other key from being cached.
struct Generations(Box<[AtomicU64]>);

/// Shards of the invalidation counters.
const INVALIDATION_SHARDS: usize = 64;
/// Shards of the write-through counters.
const WRITE_SHARDS: usize = 4096;

impl Generations {
    fn new(shards: usize) -> Self {
        Self((0..shards.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    fn shard(&self, key: &str) -> &AtomicU64 {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut hasher);
        let index = std::hash::Hasher::finish(&hasher) % self.0.len() as u64;
        // In range by the modulo.
        &self.0[index as usize]
    }

    fn of(&self, key: &str) -> u64 {
        self.shard(key).load(Ordering::Acquire)
    }

    fn bump(&self, key: &str) {
        self.shard(key).fetch_add(1, Ordering::AcqRel);
    }

    fn bump_all(&self) {
        for shard in &self.0 {
            shard.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked: every critical section is a
    // single insert or remove.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`TieredCache::invalidate_prefix`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInvalidation {
    /// Redis keys unlinked; `None` without Redis, or when Redis failed part way (the rest
    /// expire by their TTL).
    pub l2_removed: Option<u64>,
}

impl TieredCache {
    /// Builds the cache. Redis is not contacted here: the first read that needs L2 connects,
    /// so a server starts while Redis is down. Fails on a malformed Redis URL, and when an
    /// invalidation bus is configured outside a tokio runtime (its tasks start here).
    pub fn new(config: CacheConfig) -> Result<Self, CacheError> {
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let l1 = moka::future::Cache::builder()
            .max_capacity(config.l1_max_bytes)
            .weigher(|key: &String, entry: &L1Entry| {
                let bytes = key.len().saturating_add(entry.0.value.len());
                u32::try_from(bytes)
                    .unwrap_or(u32::MAX)
                    .saturating_add(L1_ENTRY_OVERHEAD_BYTES)
            })
            .expire_after(EntryDeadline)
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    bump(&listener_counters.l1.evictions);
                }
            })
            .support_invalidation_closures()
            .build();
        let mut bus_client = None;
        let l2 = match &config.redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| CacheError::RedisUrl(Arc::new(e)))?;
                bus_client = Some(client.clone());
                Some(RedisLayer::new(
                    client,
                    config.redis_key_prefix.clone(),
                    config.redis_timeout,
                    config.redis_retry_after,
                    config.scan_batch.max(1),
                ))
            }
        };
        let bus = match (bus_client.as_ref(), &config.invalidation_channel) {
            (Some(_), Some(channel)) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(CacheError::NoRuntime);
                }
                Some(Arc::new(Bus::new(
                    format!("{}{channel}", config.redis_key_prefix),
                    config.invalidation_heartbeat,
                    config.redis_timeout,
                    config.redis_retry_after,
                )))
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            l1,
            l2,
            flights: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashSet::new()),
            refresh_tasks: watch::Sender::new(0),
            generations: Generations::new(INVALIDATION_SHARDS),
            writes: Generations::new(WRITE_SHARDS),
            counters,
            bus,
        });
        if let (Some(bus), Some(client)) = (&inner.bus, bus_client) {
            bus.start(client, Arc::downgrade(&inner));
        }
        Ok(Self { inner })
    }

    /// Whether the invalidation bus is configured and subscribed now (always `false` without
    /// one). While a configured bus is not subscribed, L1 is neither read nor filled.
    pub fn invalidation_bus_live(&self) -> bool {
        self.inner.bus.as_ref().is_some_and(|bus| bus.live())
    }

    /// The value of `key`: from L1, else from Redis (copied into L1 if the profile has it),
    /// else from `loader`, whose value is stored in the profile's layers.
    ///
    /// Concurrent misses of one key call the loader once and share its result, error included;
    /// the load runs in its own task, so a caller that gives up does not cancel it for the
    /// others. A loader error is returned to every caller of that load and not cached. A read
    /// in the last `refresh_ahead_fraction` of the value's TTL returns the cached value and
    /// starts one background reload with this call's `loader`.
    pub async fn get_or_load_bytes<F, Fut, E>(
        &self,
        key: &str,
        profile: &CacheProfile,
        loader: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        profile.validate()?;
        let inner = &self.inner;
        if inner.wants_l1(profile) {
            // While a bus is down, L1 is not asked: the read counts as an L1 miss.
            if inner.uses_l1(profile) {
                if let Some(entry) = inner.l1.get(key).await {
                    bump(&inner.counters.l1.hits);
                    if entry.claim_refresh(Instant::now()) {
                        inner.spawn_refresh(key, profile, loader);
                    }
                    return Ok(entry.0.value.clone());
                }
            }
            bump(&inner.counters.l1.misses);
        }
        let flight = {
            let mut flights = lock(&inner.flights);
            match flights.get(key) {
                Some(flight) => {
                    bump(&inner.counters.coalesced);
                    flight.clone()
                }
                None => {
                    let task = tokio::spawn(Arc::clone(inner).fill(
                        key.to_owned(),
                        profile.clone(),
                        loader,
                    ));
                    let flight =
                        async move { task.await.unwrap_or(Err(CacheError::LoaderPanicked)) }
                            .boxed()
                            .shared();
                    flights.insert(key.to_owned(), flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// [`TieredCache::get_or_load_bytes`] for a value stored as JSON.
    ///
    /// Put a version of `V`'s shape in the key if it can change between deploys: a cached
    /// value that no longer parses is a [`CacheError::Decode`] until it expires or is
    /// invalidated.
    pub async fn get_or_load<V, F, Fut, E>(
        &self,
        key: &str,
        profile: &CacheProfile,
        loader: F,
    ) -> Result<V, CacheError>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let bytes = self
            .get_or_load_bytes(key, profile, move || async move {
                let value = loader().await.map_err(Into::into)?;
                serde_json::to_vec(&value)
                    .map(Bytes::from)
                    .map_err(|e| Box::new(e) as BoxError)
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Decode(Arc::new(e)))
    }

    /// Stores `value` under `key` in the profile's layers (write-through after a change).
    /// A value over `max_entry_bytes` is not stored (and any older value is dropped).
    ///
    /// A load of `key` in flight when this is called does not store its result: it may have
    /// read the data before the change this value carries, and would otherwise overwrite it.
    pub async fn insert(
        &self,
        key: &str,
        profile: &CacheProfile,
        value: Bytes,
    ) -> Result<(), CacheError> {
        profile.validate()?;
        if value.len() > profile.max_entry_bytes {
            bump(&self.inner.counters.oversize);
            self.invalidate(key).await;
            return Ok(());
        }
        self.inner.writes.bump(key);
        let seen = Seen {
            invalidations: self.inner.generations.of(key),
            writes: None,
        };
        self.inner
            .store(key, profile, value, seen, L2Write::Replace)
            .await;
        // After the Redis write, so a process that drops its copy on this message and reads
        // Redis next finds the new value.
        self.inner.announce(Op::Key(key.to_owned()));
        Ok(())
    }

    /// Drops `key` from both layers. Loads of it in flight do not store their result.
    pub async fn invalidate(&self, key: &str) {
        let inner = &self.inner;
        inner.generations.bump(key);
        inner.l1.invalidate(key).await;
        if let Some(l2) = &inner.l2 {
            l2.delete(key, &inner.counters.l2).await;
        }
        inner.announce(Op::Key(key.to_owned()));
    }

    /// Drops every key that starts with `prefix` from both layers: L1 through a moka predicate
    /// (matching entries are never returned again and are removed in the background), Redis by
    /// `SCAN MATCH` and `UNLINK` in batches. Loads in flight do not store their result.
    pub async fn invalidate_prefix(&self, prefix: &str) -> PrefixInvalidation {
        let inner = &self.inner;
        inner.generations.bump_all();
        let owned = prefix.to_owned();
        if inner
            .l1
            .invalidate_entries_if(move |key, _| key.starts_with(&owned))
            .is_err()
        {
            // Only possible if the builder lacked `support_invalidation_closures`, which
            // `new` always sets; fall back to dropping everything rather than serving stale.
            inner.l1.invalidate_all();
        }
        let l2_removed = match &inner.l2 {
            Some(l2) => l2.delete_prefix(prefix, &inner.counters.l2).await,
            None => None,
        };
        inner.announce(Op::Prefix(prefix.to_owned()));
        PrefixInvalidation { l2_removed }
    }

    /// A snapshot of the counters (see [`CacheStats`]).
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let mut stats = inner
            .counters
            .snapshot(inner.l1.weighted_size(), inner.l1.entry_count());
        if let Some(bus) = &inner.bus {
            stats.bus = bus.counters.snapshot(bus.live());
        }
        stats
    }

    /// Applies L1's pending maintenance (evictions, expiries, predicate invalidations) now,
    /// so [`TieredCache::stats`] reports settled sizes. Moka otherwise does it in small steps
    /// on later reads and writes.
    pub async fn run_pending_tasks(&self) {
        self.inner.l1.run_pending_tasks().await;
    }

    /// Returns when no refresh-ahead reload is running (for tests and for a clean shutdown).
    pub async fn wait_for_refreshes(&self) {
        let mut running = self.inner.refresh_tasks.subscribe();
        // The sender lives in `inner`, which `self` keeps alive, so this cannot fail.
        let _ = running.wait_for(|n| *n == 0).await;
    }
}

impl Inner {
    /// Whether values of this profile are kept in L1: when it says so, and also for L2-only
    /// profiles when no Redis is configured at all (a single process without Redis still
    /// caches everything, in memory).
    ///
    /// With an invalidation bus, L1 is used only while its subscription is live: otherwise
    /// another process's change may have gone unheard.
    fn uses_l1(&self, profile: &CacheProfile) -> bool {
        self.wants_l1(profile) && self.bus.as_ref().is_none_or(|bus| bus.live())
    }

    /// Whether values of this profile belong in L1 at all (whatever the bus's state).
    fn wants_l1(&self, profile: &CacheProfile) -> bool {
        profile.layers.l1 || self.l2.is_none()
    }

    /// Queues an invalidation for the other processes, if there is a bus.
    fn announce(&self, op: Op) {
        if let Some(bus) = &self.bus {
            bus.announce(op);
        }
    }

    /// Another process changed `key`: drop this process's L1 copy, and keep a load of it in
    /// flight from storing what it read.
    pub(crate) async fn forget_key(&self, key: &str) {
        self.generations.bump(key);
        self.l1.invalidate(key).await;
    }

    /// Another process invalidated every key under `prefix`.
    pub(crate) fn forget_prefix(&self, prefix: &str) {
        self.generations.bump_all();
        let owned = prefix.to_owned();
        if self
            .l1
            .invalidate_entries_if(move |key, _| key.starts_with(&owned))
            .is_err()
        {
            self.l1.invalidate_all();
        }
    }

    /// Messages may have been missed: drop all of L1, and keep every load in flight from
    /// storing.
    pub(crate) async fn forget_everything(&self) {
        self.generations.bump_all();
        self.l1.invalidate_all();
        self.l1.run_pending_tasks().await;
    }

    /// The miss path, run as its own task: L1 once more (a load may have finished between the
    /// caller's miss and its joining), then Redis, then the loader.
    async fn fill<F, Fut, E>(
        self: Arc<Self>,
        key: String,
        profile: CacheProfile,
        loader: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let _landed = FlightGuard {
            inner: &self,
            key: &key,
        };
        let seen = self.seen_by_load(&key);
        let uses_l1 = self.uses_l1(&profile);
        let mut l2_write = L2Write::IfAbsent;
        if uses_l1 {
            if let Some(entry) = self.l1.get(&key).await {
                return Ok(entry.0.value.clone());
            }
        }
        if let (true, Some(l2)) = (profile.layers.l2, &self.l2) {
            match l2.get(&key, &self.counters.l2).await {
                Ok(Some(found)) => match l2::decode(&found.stored, profile.max_entry_bytes) {
                    Some(value) => {
                        bump(&self.counters.l2.hits);
                        let expires_at = Instant::now() + found.remaining;
                        if uses_l1 {
                            // Backfill: the copy in L1 expires with the one in Redis, and its
                            // refresh point comes from the same TTL, so the next L1 read in
                            // the window starts the reload.
                            if !self.overtaken(&key, seen) {
                                let entry = L1Entry::new(value.clone(), expires_at, &profile);
                                self.l1.insert(key.clone(), entry).await;
                                bump(&self.counters.l1.writes);
                            }
                        } else if found.remaining <= profile.refresh_window() {
                            self.spawn_refresh(&key, &profile, loader);
                        }
                        return Ok(value);
                    }
                    None => {
                        // Written by something else, corrupt, or over this profile's limit:
                        // treated as a miss, and overwritten by the load below.
                        bump(&self.counters.l2.errors);
                        l2_write = L2Write::Replace;
                    }
                },
                Ok(None) => bump(&self.counters.l2.misses),
                Err(l2::Unavailable) => {}
            }
        }
        bump(&self.counters.loads);
        match loader().await {
            Ok(value) => {
                self.store(&key, &profile, value.clone(), seen, l2_write)
                    .await;
                Ok(value)
            }
            Err(e) => {
                bump(&self.counters.load_errors);
                Err(CacheError::Load(LoadError(Arc::from(e.into()))))
            }
        }
    }

    /// What a load must not miss: the key's counters when it started.
    fn seen_by_load(&self, key: &str) -> Seen {
        Seen {
            invalidations: self.generations.of(key),
            writes: Some(self.writes.of(key)),
        }
    }

    /// Whether the key changed since `seen` was read.
    fn overtaken(&self, key: &str, seen: Seen) -> bool {
        self.generations.of(key) != seen.invalidations
            || seen.writes.is_some_and(|w| self.writes.of(key) != w)
    }

    /// Stores a value in the profile's layers, unless it is too large or the key changed since
    /// `seen` was read.
    async fn store(
        &self,
        key: &str,
        profile: &CacheProfile,
        value: Bytes,
        seen: Seen,
        l2_write: L2Write,
    ) {
        if value.len() > profile.max_entry_bytes {
            bump(&self.counters.oversize);
            return;
        }
        if self.overtaken(key, seen) {
            bump(&self.counters.stale_discarded);
            return;
        }
        let expires_at = Instant::now() + profile.ttl;
        let uses_l1 = self.uses_l1(profile);
        if uses_l1 {
            let entry = L1Entry::new(value.clone(), expires_at, profile);
            self.l1.insert(key.to_owned(), entry).await;
            bump(&self.counters.l1.writes);
        }
        let mut in_l2 = false;
        if let (true, Some(l2)) = (profile.layers.l2, &self.l2) {
            let stored = l2::encode(&value, profile.compress_over_bytes);
            let only_if_absent = l2_write == L2Write::IfAbsent;
            match l2
                .set(key, stored, profile.ttl, only_if_absent, &self.counters.l2)
                .await
            {
                Some(true) => {
                    in_l2 = true;
                    bump(&self.counters.l2.writes);
                }
                Some(false) => {
                    // Another process wrote the key since this load missed it: its value (a
                    // write-through) may be newer than what this load read, so it stays, and
                    // this copy leaves L1 too.
                    bump(&self.counters.stale_discarded);
                    if uses_l1 {
                        self.l1.invalidate(key).await;
                    }
                    return;
                }
                None => {}
            }
        }
        // A change that ran while this was being written may have come before the writes: undo
        // them, so the stale value does not outlive the change (the next read loads afresh).
        if self.overtaken(key, seen) {
            bump(&self.counters.stale_discarded);
            if uses_l1 {
                self.l1.invalidate(key).await;
            }
            if let (true, Some(l2)) = (in_l2, &self.l2) {
                l2.delete(key, &self.counters.l2).await;
            }
        }
    }

    /// Starts a background reload of `key` unless one is running; the old value is served
    /// meanwhile. A failed reload is counted and leaves the old value to expire.
    fn spawn_refresh<F, Fut, E>(self: &Arc<Self>, key: &str, profile: &CacheProfile, loader: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        if !lock(&self.refreshing).insert(key.to_owned()) {
            return;
        }
        bump(&self.counters.refreshes);
        self.refresh_tasks.send_modify(|n| *n += 1);
        let inner = Arc::clone(self);
        let key = key.to_owned();
        let profile = profile.clone();
        let seen = self.seen_by_load(&key);
        tokio::spawn(async move {
            let _done = RefreshGuard {
                inner: &inner,
                key: &key,
            };
            match loader().await {
                Ok(value) => {
                    inner
                        .store(&key, &profile, value, seen, L2Write::Replace)
                        .await
                }
                Err(e) => {
                    bump(&inner.counters.load_errors);
                    let e: BoxError = e.into();
                    tracing::debug!(error = %e, "cache: refresh-ahead load failed");
                }
            }
        });
    }
}

/// How a store writes Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L2Write {
    /// `SET`: write-throughs and refreshes.
    Replace,
    /// `SET … NX`: a load's result never replaces a value another process wrote meanwhile.
    IfAbsent,
}

/// A key's change counters as a load or write read them when it started. A write-through
/// (`writes: None`) is only undone by invalidations, never by another write.
#[derive(Debug, Clone, Copy)]
struct Seen {
    invalidations: u64,
    writes: Option<u64>,
}

/// Removes a finished (or panicked) load from the in-flight map.
struct FlightGuard<'a> {
    inner: &'a Inner,
    key: &'a str,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.flights).remove(self.key);
    }
}

/// Marks a refresh finished, however it ended.
struct RefreshGuard<'a> {
    inner: &'a Inner,
    key: &'a str,
}

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.refreshing).remove(self.key);
        self.inner
            .refresh_tasks
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidating_a_key_moves_its_generation_and_a_prefix_moves_all() {
        let generations = Generations::new(INVALIDATION_SHARDS);
        let other = (0..1000)
            .map(|i| format!("other:{i}"))
            .find(|k| !std::ptr::eq(generations.shard(k), generations.shard("key")))
            .unwrap();
        let (key_before, other_before) = (generations.of("key"), generations.of(&other));
        generations.bump("key");
        assert_ne!(generations.of("key"), key_before);
        assert_eq!(generations.of(&other), other_before);
        generations.bump_all();
        assert_ne!(generations.of(&other), other_before);
    }
}
