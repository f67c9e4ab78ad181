//! [`KeyedLimiter`]: per-key algorithm states in bounded memory.
//!
//! The keys are spread over lock-striped shards (a `Mutex` around a `HashMap` each), so threads
//! working on different keys rarely wait for each other and one key's check is atomic. Each shard
//! keeps its keys in a list ordered by last use, which makes both ways of forgetting a key O(1)
//! per key:
//!
//! - **Expiry.** A key whose state can no longer hold anything back (last use plus the
//!   algorithm's [`Algorithm::horizon_ns`]) is dropped by [`KeyedLimiter::sweep`], and by any
//!   insertion into a full shard. Expiry never gives quota back early.
//! - **Eviction.** A shard that is full of live keys evicts its least recently used key to make
//!   room for a new one. The evicted key starts again with a full quota when it comes back, so a
//!   cap below the number of active keys loosens the limit for the coldest of them; evictions are
//!   counted ([`KeyedLimiter::evictions`]) so that shows up in metrics. The alternative, refusing
//!   new keys when full, would let one client with many keys lock everyone else out.
//!
//! A key is hashed once (SipHash with a per-limiter random key, so clients cannot aim for
//! collisions); the hash picks the shard and is the slot's hash in the shard's table, which holds
//! only slot numbers.
//!
//! Memory: per key one slot (the key's bytes, its hash, the state, the expiry time, two list
//! links) and a 4-byte table entry. For GCRA state (8 bytes) that is about `76 + key length`
//! bytes of heap per key at the cap, growth slack included (`tests/memory.rs` measures 92 bytes
//! for 16-byte keys with a counting allocator), plus the allocator's own overhead for the key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;

use crate::algo::{Algorithm, Decision};

const NIL: u32 = u32::MAX;

/// Per-key states of one algorithm family in at most a configured number of keys.
///
/// The algorithm's parameters are passed to every [`check`](Self::check), so keys can have
/// different quotas (tiers) while sharing one map.
pub struct KeyedLimiter<A: Algorithm> {
    shards: Box<[Mutex<Shard<A::State>>]>,
    hasher: RandomState,
    shard_capacity: usize,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

struct Slot<S> {
    key: Box<str>,
    hash: u64,
    state: S,
    /// Last use plus the horizon: from then on the state is as good as fresh.
    expires_at: u64,
    /// Towards the most recently used end.
    newer: u32,
    /// Towards the least recently used end.
    older: u32,
}

struct Shard<S> {
    /// Slot numbers, hashed by their slot's `hash`.
    index: HashTable<u32>,
    slots: Vec<Slot<S>>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
}

impl<S: Default> Shard<S> {
    fn new() -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }

    fn unlink(&mut self, i: u32) {
        let (newer, older) = {
            let slot = &self.slots[i as usize];
            (slot.newer, slot.older)
        };
        if newer == NIL {
            self.newest = older;
        } else {
            self.slots[newer as usize].older = older;
        }
        if older == NIL {
            self.oldest = newer;
        } else {
            self.slots[older as usize].newer = newer;
        }
    }

    fn push_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        {
            let slot = &mut self.slots[i as usize];
            slot.newer = NIL;
            slot.older = old_newest;
        }
        if old_newest == NIL {
            self.oldest = i;
        } else {
            self.slots[old_newest as usize].newer = i;
        }
        self.newest = i;
    }

    /// Drops the least recently used key; the slot goes to the free list.
    fn remove_oldest(&mut self) {
        let i = self.oldest;
        if i == NIL {
            return;
        }
        self.unlink(i);
        let slot = &mut self.slots[i as usize];
        slot.key = Box::default();
        // A free slot keeps no memory beyond its fixed size (a sliding log can be large).
        slot.state = S::default();
        let hash = slot.hash;
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.free.push(i);
    }

    /// Drops expired keys from the old end; stops at the first live one.
    fn expire(&mut self, now_ns: u64) -> u64 {
        let mut dropped = 0;
        while self.oldest != NIL && self.slots[self.oldest as usize].expires_at <= now_ns {
            self.remove_oldest();
            dropped += 1;
        }
        dropped
    }
}

impl<A: Algorithm> KeyedLimiter<A> {
    /// A limiter holding at most `max_keys` keys in `shards` shards (each shard holds
    /// `max_keys / shards`, so the total never exceeds `max_keys`).
    pub fn new(max_keys: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, max_keys.max(1));
        let shard_capacity = (max_keys / shards).clamp(1, NIL as usize - 1);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            shard_capacity,
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<A::State>> {
        // The table uses the hash's low bits and its top 7; the shard takes bits in between.
        let shard = &self.shards[((hash >> 32) % self.shards.len() as u64) as usize];
        // A panic while holding the lock cannot leave a half-updated state worth refusing
        // service over (every update is a few integer stores), so poisoning is ignored.
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides a request of `cost` units for `key` at `now_ns` with the quota `algorithm`.
    pub fn check(&self, algorithm: &A, key: &str, now_ns: u64, cost: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let shard = &mut *shard;
        let found = {
            let slots = &shard.slots;
            shard
                .index
                .find(hash, |&i| &*slots[i as usize].key == key)
                .copied()
        };
        let i = match found {
            Some(i) => {
                if shard.newest != i {
                    shard.unlink(i);
                    shard.push_newest(i);
                }
                i
            }
            None => {
                if shard.index.len() >= self.shard_capacity {
                    let expired = shard.expire(now_ns);
                    self.expirations.fetch_add(expired, Ordering::Relaxed);
                    if shard.index.len() >= self.shard_capacity {
                        shard.remove_oldest();
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let slot = Slot {
                    key: key.into(),
                    hash,
                    state: A::State::default(),
                    expires_at: 0,
                    newer: NIL,
                    older: NIL,
                };
                let i = match shard.free.pop() {
                    Some(i) => {
                        shard.slots[i as usize] = slot;
                        i
                    }
                    None => {
                        shard.slots.push(slot);
                        (shard.slots.len() - 1) as u32
                    }
                };
                let slots = &shard.slots;
                shard
                    .index
                    .insert_unique(hash, i, |&j| slots[j as usize].hash);
                shard.push_newest(i);
                i
            }
        };
        let slot = &mut shard.slots[i as usize];
        let decision = algorithm.check(&mut slot.state, now_ns, cost);
        slot.expires_at = slot
            .expires_at
            .max(now_ns.saturating_add(algorithm.horizon_ns()));
        decision
    }

    /// Drops every key whose state has expired by `now_ns`; returns how many were dropped.
    pub fn sweep(&self, now_ns: u64) -> u64 {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            dropped += shard.expire(now_ns);
        }
        self.expirations.fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).index.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter will hold (`max_keys` rounded down to a multiple of the
    /// shard count).
    pub fn max_keys(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Live keys evicted to make room for new ones since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Expired keys dropped since creation.
    pub fn expirations(&self) -> u64 {
        self.expirations.load(Ordering::Relaxed)
    }
}
