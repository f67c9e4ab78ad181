//! The invalidation bus: Redis pub/sub between the processes that share a cache's L2, so a
//! change written through (or invalidated) on one replica drops the others' L1 copies.
//!
//! One channel per cache (`{redis_key_prefix}{invalidation_channel}`). Every process both
//! publishes and subscribes:
//!
//! - **Publishing** is queued: `insert`, `invalidate` and `invalidate_prefix` push an operation
//!   and return; one task sends what is queued as JSON messages (several keys per message, one
//!   pipeline per turn), after the Redis write it announces. A failed publish is retried, in
//!   order, with the operations queued meanwhile; past [`MAX_PENDING_OPS`] they collapse into
//!   one "drop everything". The same task publishes a heartbeat every `heartbeat`.
//! - **Subscribing** is a second task on a dedicated connection. A message from another process
//!   bumps the generation of each key it names (so a load of that key in flight here does not
//!   store what it read) and drops the key from L1; a process's own messages are only taken as
//!   proof that the subscription works.
//! - **Liveness:** the subscription is *live* from its `SUBSCRIBE` reply until the connection
//!   ends or nothing (not even this process's own heartbeat) arrived for
//!   [`MISSED_HEARTBEATS`] heartbeats. While it is not live, messages may be missed, so the cache
//!   neither reads nor fills L1 (reads go to L2 and the loader), and L1 is emptied both when the
//!   subscription is lost and when it is live again (with every generation bumped, so loads
//!   that started before do not store).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::bump;
use crate::tiered::Inner;

/// Queued operations past which the queue collapses into one "drop everything" message.
pub(crate) const MAX_PENDING_OPS: usize = 10_000;
/// Heartbeats without any message after which the subscription is taken as lost.
pub(crate) const MISSED_HEARTBEATS: u32 = 3;
/// Keys (or prefixes) per published message.
const OPS_PER_MESSAGE: usize = 256;

/// One invalidation to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Key(String),
    Prefix(String),
}

/// What goes over the channel. A message with no keys, no prefixes and `all` unset is a
/// heartbeat.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Message {
    /// The sending cache instance.
    #[serde(rename = "o")]
    origin: u64,
    #[serde(rename = "k", default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<String>,
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    prefixes: Vec<String>,
    #[serde(rename = "a", default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

#[derive(Debug, Default)]
struct Pending {
    ops: VecDeque<Op>,
    /// Too much was queued (or lost): the next message drops every key.
    all: bool,
}

/// Counters of the bus, read into [`crate::CacheStats`].
#[derive(Debug, Default)]
pub(crate) struct BusCounters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub publish_errors: AtomicU64,
    pub subscriptions: AtomicU64,
    pub subscriptions_lost: AtomicU64,
}

impl BusCounters {
    pub fn snapshot(&self, live: bool) -> crate::BusStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::BusStats {
            published: get(&self.published),
            received: get(&self.received),
            publish_errors: get(&self.publish_errors),
            subscriptions: get(&self.subscriptions),
            subscriptions_lost: get(&self.subscriptions_lost),
            live,
        }
    }
}

/// The bus state shared by the cache and its two tasks.
pub(crate) struct Bus {
    /// Random per cache instance, to recognise this process's own messages.
    origin: u64,
    channel: String,
    heartbeat: Duration,
    op_timeout: Duration,
    retry_after: Duration,
    live: AtomicBool,
    pending: Mutex<Pending>,
    wake: Notify,
    pub counters: BusCounters,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Bus {
    pub fn new(
        channel: String,
        heartbeat: Duration,
        op_timeout: Duration,
        retry_after: Duration,
    ) -> Bus {
        Bus {
            origin: rand_origin(),
            channel,
            heartbeat: heartbeat.max(Duration::from_millis(10)),
            // Not the reads' tight deadline: a publish or subscribe that is merely slow (a
            // starved machine) is better waited for than retried, up to a heartbeat.
            op_timeout: op_timeout.max(heartbeat),
            retry_after,
            live: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            counters: BusCounters::default(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Whether the subscription is live, so L1 may be used.
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Queues an invalidation for the other processes.
    pub fn announce(&self, op: Op) {
        {
            let mut pending = lock(&self.pending);
            if !pending.all {
                pending.ops.push_back(op);
                if pending.ops.len() > MAX_PENDING_OPS {
                    pending.ops.clear();
                    pending.all = true;
                }
            }
        }
        self.wake.notify_one();
    }

    /// Starts the publisher and the subscriber. They hold `inner` weakly and stop when the
    /// cache is dropped ([`Bus::stop`]).
    pub fn start(self: &Arc<Self>, client: redis::Client, inner: Weak<Inner>) {
        let publisher = tokio::spawn(Arc::clone(self).publish_loop(client.clone()));
        let subscriber = tokio::spawn(Arc::clone(self).subscribe_loop(client, inner));
        lock(&self.tasks).extend([publisher.abort_handle(), subscriber.abort_handle()]);
    }

    /// Stops both tasks (the cache is being dropped).
    pub fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn take_pending(&self, into: &mut Pending) {
        let mut pending = lock(&self.pending);
        into.all |= pending.all;
        into.ops.append(&mut pending.ops);
        pending.all = false;
        if into.all || into.ops.len() > MAX_PENDING_OPS {
            into.ops.clear();
            into.all = true;
        }
    }

    /// Sends queued operations as they come, retrying failures in order, and a heartbeat every
    /// period.
    async fn publish_loop(self: Arc<Self>, client: redis::Client) {
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Pending::default();
        let mut backoff = Backoff::new(self.retry_after);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = heartbeat.tick() => {}
            }
            loop {
                self.take_pending(&mut batch);
                let messages = self.messages(&batch);
                match self.publish(&client, &mut conn, &messages).await {
                    Ok(()) => {
                        self.counters
                            .published
                            .fetch_add(messages.len() as u64, Ordering::Relaxed);
                        batch = Pending::default();
                        backoff.reset();
                        break;
                    }
                    Err(why) => {
                        bump(&self.counters.publish_errors);
                        if backoff.first() {
                            tracing::warn!(error = why, channel = %self.channel, "cache: cannot publish invalidations; retrying");
                        }
                        conn = None;
                        tokio::time::sleep(backoff.next()).await;
                    }
                }
            }
        }
    }

    /// The messages for one turn: the queued operations, in order, or a heartbeat.
    fn messages(&self, batch: &Pending) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut message = Message {
            origin: self.origin,
            all: batch.all,
            ..Message::default()
        };
        let mut ops_in_message = 0;
        for op in &batch.ops {
            match op {
                Op::Key(k) => message.keys.push(k.clone()),
                Op::Prefix(p) => message.prefixes.push(p.clone()),
            }
            ops_in_message += 1;
            if ops_in_message == OPS_PER_MESSAGE {
                out.extend(serde_json::to_vec(&message).ok());
                message.keys.clear();
                message.prefixes.clear();
                ops_in_message = 0;
            }
        }
        if ops_in_message > 0 || out.is_empty() {
            out.extend(serde_json::to_vec(&message).ok());
        }
        out
    }

    async fn publish(
        &self,
        client: &redis::Client,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
        messages: &[Vec<u8>],
    ) -> Result<(), String> {
        let mut c = match conn {
            Some(c) => c.clone(),
            None => {
                let connect = client.get_multiplexed_async_connection();
                let c = tokio::time::timeout(self.op_timeout, connect)
                    .await
                    .map_err(|_| "connect timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                *conn = Some(c.clone());
                c
            }
        };
        let mut pipe = redis::pipe();
        for message in messages {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(message.as_slice())
                .ignore();
        }
        tokio::time::timeout(self.op_timeout, pipe.query_async::<()>(&mut c))
            .await
            .map_err(|_| "publish timed out".to_owned())?
            .map_err(|e| e.to_string())
    }

    /// Keeps a subscription, applying other processes' messages, and resubscribes (emptying L1)
    /// when it is lost.
    async fn subscribe_loop(self: Arc<Self>, client: redis::Client, inner: Weak<Inner>) {
        let mut backoff = Backoff::new(self.retry_after);
        let silence = self.heartbeat * MISSED_HEARTBEATS;
        loop {
            let subscribed = tokio::time::timeout(self.op_timeout, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            let pubsub = match subscribed {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(e)) => {
                    self.subscribe_failed(&mut backoff, &e.to_string()).await;
                    continue;
                }
                Err(_) => {
                    self.subscribe_failed(&mut backoff, "subscribe timed out")
                        .await;
                    continue;
                }
            };
            // Whatever L1 holds, and whatever loads started, may predate changes announced
            // while there was no subscription: forget them before trusting L1 again.
            let Some(cache) = inner.upgrade() else { return };
            cache.forget_everything().await;
            drop(cache);
            self.live.store(true, Ordering::Release);
            bump(&self.counters.subscriptions);
            if !backoff.first() {
                tracing::info!(channel = %self.channel, "cache: invalidation subscription restored; memory layer emptied");
            }
            backoff.reset();
            let mut messages = pubsub.into_on_message();
            let mut deadline = Instant::now() + silence;
            let why = loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            deadline = Instant::now() + silence;
                            let Some(cache) = inner.upgrade() else { return };
                            self.apply(&cache, message.get_payload_bytes()).await;
                        }
                        None => break "connection closed",
                    },
                    _ = tokio::time::sleep_until(deadline) => break "no message for three heartbeats",
                }
            };
            self.live.store(false, Ordering::Release);
            bump(&self.counters.subscriptions_lost);
            tracing::warn!(reason = why, channel = %self.channel, "cache: invalidation subscription lost; memory layer bypassed until it is restored");
            let Some(cache) = inner.upgrade() else { return };
            cache.forget_everything().await;
        }
    }

    async fn subscribe_failed(&self, backoff: &mut Backoff, why: &str) {
        if backoff.first() {
            tracing::warn!(error = why, channel = %self.channel, "cache: cannot subscribe to invalidations; memory layer bypassed until it can");
        }
        tokio::time::sleep(backoff.next()).await;
    }

    /// Applies one received message.
    async fn apply(&self, cache: &Inner, payload: &[u8]) {
        let message: Message = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                // Not from this crate (or a newer release): drop everything to be safe.
                tracing::warn!(error = %e, channel = %self.channel, "cache: unreadable invalidation message; memory layer emptied");
                cache.forget_everything().await;
                return;
            }
        };
        if message.origin == self.origin {
            return;
        }
        if message.keys.is_empty() && message.prefixes.is_empty() && !message.all {
            return;
        }
        bump(&self.counters.received);
        if message.all {
            cache.forget_everything().await;
            return;
        }
        for key in &message.keys {
            cache.forget_key(key).await;
        }
        for prefix in &message.prefixes {
            cache.forget_prefix(prefix);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a push or a swap: the state stays consistent after a panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A random instance id (std's randomly seeded hasher, so no RNG dependency).
fn rand_origin() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}

/// Retry delays: 50 ms doubling up to the cache's `redis_retry_after`.
struct Backoff {
    next: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(50),
            max: max.max(Duration::from_millis(50)),
            failures: 0,
        }
    }

    /// Whether no failure was seen since the last success (to log once per outage).
    fn first(&self) -> bool {
        self.failures == 0
    }

    fn next(&mut self) -> Duration {
        self.failures += 1;
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.next = Duration::from_millis(50);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> Bus {
        Bus::new(
            "c".to_owned(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn queued_operations_go_out_in_order_and_in_chunks() {
        let bus = bus();
        for i in 0..300 {
            bus.announce(Op::Key(format!("k{i}")));
        }
        bus.announce(Op::Prefix("t1:".to_owned()));
        let mut batch = Pending::default();
        bus.take_pending(&mut batch);
        let messages: Vec<Message> = bus
            .messages(&batch)
            .iter()
            .map(|m| serde_json::from_slice(m).unwrap())
            .collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].keys.len(), 256);
        assert_eq!(messages[0].keys[0], "k0");
        assert_eq!(messages[1].keys.len(), 44);
        assert_eq!(messages[1].prefixes, ["t1:"]);
        assert!(messages.iter().all(|m| m.origin == bus.origin && !m.all));
    }

    #[test]
    fn an_overflowing_queue_collapses_into_drop_everything() {
        let bus = bus();
        for i in 0..=MAX_PENDING_OPS {
            bus.announce(Op::Key(format!("k{i}")));
        }
        let mut batch = Pending::default();
        bus.take_pending(&mut batch);
        assert!(batch.all && batch.ops.is_empty());
        let messages = bus.messages(&batch);
        assert_eq!(messages.len(), 1);
        let message: Message = serde_json::from_slice(&messages[0]).unwrap();
        assert!(message.all);
    }

    #[test]
    fn an_empty_turn_is_a_heartbeat() {
        let bus = bus();
        let messages = bus.messages(&Pending::default());
        let message: Message = serde_json::from_slice(&messages[0]).unwrap();
        assert!(message.keys.is_empty() && message.prefixes.is_empty() && !message.all);
    }
}
