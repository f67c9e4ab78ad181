//! The invalidation bus against the real Redis (`SIGNALBOX_TEST_REDIS_URL`, or 127.0.0.1:6379):
//! two `TieredCache`s on one key prefix and channel stand for two replicas. Each test has its own
//! random prefix, so its channel is its own too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{CacheConfig, CacheProfile, Layers, TieredCache};
use tokio::sync::{mpsc, Notify};

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fresh_prefix() -> String {
    format!("sbxtest:{}:", uuid::Uuid::new_v4().simple())
}

/// One "replica": a cache on the test Redis under `prefix`, with the bus on (or off).
fn replica(prefix: &str, bus: bool) -> TieredCache {
    TieredCache::new(CacheConfig {
        redis_url: Some(redis_url()),
        redis_key_prefix: prefix.to_owned(),
        redis_timeout: Duration::from_secs(2),
        invalidation_channel: bus.then(|| "invalidate:test".to_owned()),
        ..CacheConfig::default()
    })
    .unwrap()
}

fn profile() -> CacheProfile {
    CacheProfile {
        // Far longer than any deadline below: only the bus can make a change show.
        ttl: Duration::from_secs(600),
        layers: Layers::L1_AND_L2,
        compress_over_bytes: None,
        max_entry_bytes: 64 * 1024,
        refresh_ahead_fraction: 0.0,
    }
}

/// Polls `condition` until it holds, failing after 10 s.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

async fn live(caches: &[&TieredCache]) {
    for cache in caches {
        eventually("the bus to subscribe", async || {
            cache.invalidation_bus_live()
        })
        .await;
    }
}

/// A loader that counts its calls and returns `value`.
fn counting(
    calls: &Arc<AtomicUsize>,
    value: &'static str,
) -> impl FnOnce() -> std::future::Ready<Result<Bytes, std::io::Error>> + Send + 'static {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Bytes::from_static(value.as_bytes())))
    }
}

async fn read(cache: &TieredCache, key: &str, calls: &Arc<AtomicUsize>) -> Bytes {
    cache
        .get_or_load_bytes(key, &profile(), counting(calls, "loaded"))
        .await
        .unwrap()
}

async fn cleanup(cache: &TieredCache) {
    cache.invalidate_prefix("").await;
}

#[tokio::test]
async fn a_write_through_on_one_replica_drops_the_other_replicas_copy() {
    let prefix = fresh_prefix();
    let (a, b) = (replica(&prefix, true), replica(&prefix, true));
    live(&[&a, &b]).await;
    let p = profile();
    let calls = Arc::new(AtomicUsize::new(0));
    a.insert("k", &p, Bytes::from_static(b"v1")).await.unwrap();
    // (A message still on its way would keep B's first read from staying in memory.)
    eventually("B to hear of A's write", async || {
        b.stats().bus.received >= 1
    })
    .await;
    assert_eq!(read(&b, "k", &calls).await, "v1");
    // B now answers from its memory.
    let hits = b.stats().l1.hits;
    assert_eq!(read(&b, "k", &calls).await, "v1");
    assert_eq!(b.stats().l1.hits, hits + 1);

    for i in 2..50 {
        let value = Bytes::from(format!("v{i}"));
        a.insert("k", &p, value.clone()).await.unwrap();
        let waited = eventually("B to read the new value", async || {
            read(&b, "k", &calls).await == value
        })
        .await;
        assert!(waited < Duration::from_secs(1), "{waited:?}");
    }
    // Every new value came from Redis, none from B's loader, and A's own messages were not
    // taken for another replica's.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(b.stats().bus.received >= 49, "{:?}", b.stats().bus);
    assert_eq!(a.stats().bus.received, 0);
    cleanup(&a).await;
}

#[tokio::test]
async fn without_the_bus_the_other_replica_serves_its_old_copy() {
    // The control for the test above: the same steps without a channel keep the old value.
    let prefix = fresh_prefix();
    let (a, b) = (replica(&prefix, false), replica(&prefix, false));
    let p = profile();
    let calls = Arc::new(AtomicUsize::new(0));
    a.insert("k", &p, Bytes::from_static(b"v1")).await.unwrap();
    assert_eq!(read(&b, "k", &calls).await, "v1");
    a.insert("k", &p, Bytes::from_static(b"v2")).await.unwrap();
    // A's own memory and Redis hold v2; B's memory still holds v1.
    assert_eq!(read(&a, "k", &calls).await, "v2");
    assert_eq!(read(&b, "k", &calls).await, "v1");
    cleanup(&a).await;
}

#[tokio::test]
async fn invalidations_by_key_and_by_prefix_reach_the_other_replica() {
    let prefix = fresh_prefix();
    let (a, b) = (replica(&prefix, true), replica(&prefix, true));
    live(&[&a, &b]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["t1:x", "t1:y", "t2:z"] {
        assert_eq!(read(&b, key, &calls).await, "loaded");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    a.invalidate("t2:z").await;
    eventually("B to reload t2:z", async || {
        read(&b, "t2:z", &calls).await;
        calls.load(Ordering::SeqCst) == 4
    })
    .await;
    a.invalidate_prefix("t1:").await;
    eventually("B to reload t1:x", async || {
        read(&b, "t1:x", &calls).await;
        calls.load(Ordering::SeqCst) == 5
    })
    .await;
    read(&b, "t1:y", &calls).await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // t2:z was not under the prefix: still cached.
    read(&b, "t2:z", &calls).await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    cleanup(&a).await;
}

#[tokio::test]
async fn a_load_on_one_replica_never_puts_back_a_value_older_than_the_others_write() {
    let prefix = fresh_prefix();
    let (a, b) = (replica(&prefix, true), replica(&prefix, true));
    live(&[&a, &b]).await;
    let p = profile();
    // B misses and asks its source, which answers with what it read before A's change.
    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let load = {
        let (b, p, release) = (b.clone(), p.clone(), Arc::clone(&release));
        tokio::spawn(async move {
            b.get_or_load_bytes("k", &p, move || async move {
                let _ = started_tx.send(());
                release.notified().await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"read before the change"))
            })
            .await
        })
    };
    started_rx.recv().await.unwrap();
    a.insert("k", &p, Bytes::from_static(b"written"))
        .await
        .unwrap();
    eventually("B to hear of A's write", async || {
        b.stats().bus.received >= 1
    })
    .await;
    release.notify_one();
    assert_eq!(load.await.unwrap().unwrap(), "read before the change");
    assert!(b.stats().stale_discarded >= 1);

    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(read(&b, "k", &calls).await, "written");
    assert_eq!(read(&a, "k", &calls).await, "written");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cleanup(&a).await;
}

#[tokio::test]
async fn a_load_whose_result_lands_after_another_replicas_write_does_not_replace_it() {
    // The same race without the bus's help: B's message arrives too late to stop the store,
    // but a load writes Redis only where no value is (`SET NX`), so A's write stays.
    let prefix = fresh_prefix();
    let (a, b) = (replica(&prefix, false), replica(&prefix, false));
    let p = profile();
    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let load = {
        let (b, p, release) = (b.clone(), p.clone(), Arc::clone(&release));
        tokio::spawn(async move {
            b.get_or_load_bytes("k", &p, move || async move {
                let _ = started_tx.send(());
                release.notified().await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"read before the change"))
            })
            .await
        })
    };
    started_rx.recv().await.unwrap();
    a.insert("k", &p, Bytes::from_static(b"written"))
        .await
        .unwrap();
    release.notify_one();
    assert_eq!(load.await.unwrap().unwrap(), "read before the change");
    assert_eq!(b.stats().stale_discarded, 1);
    let calls = Arc::new(AtomicUsize::new(0));
    // B did not keep its result in memory either.
    assert_eq!(read(&b, "k", &calls).await, "written");
    assert_eq!(read(&replica(&prefix, false), "k", &calls).await, "written");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cleanup(&a).await;
}

#[tokio::test]
async fn an_unreachable_redis_keeps_the_memory_layer_off() {
    let cache = TieredCache::new(CacheConfig {
        redis_url: Some("redis://127.0.0.1:1".to_owned()),
        redis_timeout: Duration::from_millis(200),
        invalidation_channel: Some("invalidate:test".to_owned()),
        ..CacheConfig::default()
    })
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(read(&cache, "k", &calls).await, "loaded");
    }
    // No subscription, so nothing may be served from memory: every read asked the source.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().l1.hits, 0);
    assert!(!cache.invalidation_bus_live());
}

#[test]
fn a_bus_needs_a_runtime() {
    let built = TieredCache::new(CacheConfig {
        redis_url: Some(redis_url()),
        invalidation_channel: Some("invalidate:test".to_owned()),
        ..CacheConfig::default()
    });
    assert!(matches!(built, Err(cache::CacheError::NoRuntime)));
}
