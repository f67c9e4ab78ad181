//! The tiered cache against the real Redis: `SIGNALBOX_TEST_REDIS_URL`, or 127.0.0.1:6379.
//! Each test uses its own random key prefix and removes its keys at the end (and every value
//! has a TTL of at most a minute, so a failed test's keys go away by themselves).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache::{CacheConfig, CacheError, CacheProfile, Layers, TieredCache};
use tokio::sync::{mpsc, Notify};

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A cache on the test Redis under a fresh prefix.
fn cache_on_redis(prefix: &str) -> TieredCache {
    TieredCache::new(CacheConfig {
        redis_url: Some(redis_url()),
        redis_key_prefix: prefix.to_owned(),
        redis_timeout: Duration::from_secs(2),
        scan_batch: 100,
        ..CacheConfig::default()
    })
    .unwrap()
}

fn fresh_prefix() -> String {
    format!("sbxtest:{}:", uuid::Uuid::new_v4().simple())
}

/// A raw connection, to look at what the cache wrote.
async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at SIGNALBOX_TEST_REDIS_URL (default 127.0.0.1:6379)")
}

async fn keys_under(prefix: &str) -> Vec<String> {
    let mut conn = raw_redis().await;
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn cleanup(cache: &TieredCache, prefix: &str) {
    cache.invalidate_prefix("").await;
    assert!(keys_under(prefix).await.is_empty(), "cleanup left keys");
}

fn profile(layers: Layers) -> CacheProfile {
    CacheProfile {
        ttl: Duration::from_secs(60),
        layers,
        compress_over_bytes: None,
        max_entry_bytes: 64 * 1024,
        refresh_ahead_fraction: 0.0,
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

// A current-thread runtime polls tasks in the order they were woken: the 100 readers spawned
// below all reach the cache before the load task they start gets to the loader, so every one of
// them is a concurrent miss.
#[tokio::test]
async fn a_hundred_concurrent_misses_call_the_loader_once() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();

    let readers: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let release = Arc::clone(&release);
            let started_tx = started_tx.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load_bytes("hot", &profile(Layers::L1_AND_L2), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = started_tx.send(());
                        release.notified().await;
                        Ok::<_, std::io::Error>(Bytes::from_static(b"loaded once"))
                    })
                    .await
            })
        })
        .collect();

    started_rx.recv().await.unwrap();
    // Every reader has missed and joined the one load, which is now waiting to be released.
    let stats = cache.stats();
    assert_eq!(stats.loads, 1);
    assert_eq!(stats.coalesced, 99);
    release.notify_one();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap(), "loaded once");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The value is in both layers now.
    let again = cache
        .get_or_load_bytes("hot", &profile(Layers::L1_AND_L2), counting(&calls, "x"))
        .await
        .unwrap();
    assert_eq!(again, "loaded once");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(keys_under(&prefix).await, vec![format!("{prefix}hot")]);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);

    let err = cache
        .get_or_load_bytes("k", &p, || async {
            Err::<Bytes, _>(std::io::Error::other("database down"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Load(_)), "{err:?}");
    assert!(err.to_string().contains("database down"), "{err}");
    assert!(keys_under(&prefix).await.is_empty());

    let calls = Arc::new(AtomicUsize::new(0));
    let value = cache
        .get_or_load_bytes("k", &p, counting(&calls, "v"))
        .await
        .unwrap();
    assert_eq!(value, "v");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors), (2, 1));
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn an_l2_hit_backfills_l1_of_another_replica() {
    let prefix = fresh_prefix();
    let writer = cache_on_redis(&prefix);
    let reader = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);
    let calls = Arc::new(AtomicUsize::new(0));

    let value: Vec<u32> = writer
        .get_or_load("nums", &p, || async {
            Ok::<_, std::io::Error>(vec![1, 2, 3])
        })
        .await
        .unwrap();
    assert_eq!(value, vec![1, 2, 3]);

    let first = reader
        .get_or_load_bytes("nums", &p, counting(&calls, "wrong"))
        .await
        .unwrap();
    assert_eq!(first, "[1,2,3]");
    let stats = reader.stats();
    assert_eq!((stats.l1.misses, stats.l2.hits, stats.l1.writes), (1, 1, 1));

    let second = reader
        .get_or_load_bytes("nums", &p, counting(&calls, "wrong"))
        .await
        .unwrap();
    assert_eq!(second, "[1,2,3]");
    let stats = reader.stats();
    assert_eq!((stats.l1.hits, stats.l2.hits), (1, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cleanup(&writer, &prefix).await;
}

#[tokio::test]
async fn values_over_the_threshold_are_compressed_in_redis() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = CacheProfile {
        compress_over_bytes: Some(100),
        ..profile(Layers::L2_ONLY)
    };
    let large = Bytes::from("{\"segment\":\"sensitive\"}".repeat(400));
    let small = Bytes::from_static(b"{\"segment\":\"calm\"}");
    cache.insert("large", &p, large.clone()).await.unwrap();
    cache.insert("small", &p, small.clone()).await.unwrap();

    let mut conn = raw_redis().await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("{prefix}large"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored[0], 1, "gzip tag");
    assert!(
        stored.len() < large.len() / 10,
        "{} of {} bytes",
        stored.len(),
        large.len()
    );
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("{prefix}small"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored[0], 0, "raw tag");
    assert_eq!(&stored[1..], &small[..]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}large"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl}");

    let calls = Arc::new(AtomicUsize::new(0));
    let other = cache_on_redis(&prefix);
    assert_eq!(
        other
            .get_or_load_bytes("large", &p, counting(&calls, ""))
            .await
            .unwrap(),
        large
    );
    assert_eq!(
        other
            .get_or_load_bytes("small", &p, counting(&calls, ""))
            .await
            .unwrap(),
        small
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn oversize_values_are_served_but_not_cached() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = CacheProfile {
        max_entry_bytes: 1000,
        ..profile(Layers::L1_AND_L2)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let big: &'static str = Box::leak("x".repeat(2000).into_boxed_str());
    for _ in 0..2 {
        let value = cache
            .get_or_load_bytes("big", &p, counting(&calls, big))
            .await
            .unwrap();
        assert_eq!(value.len(), 2000);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert_eq!(
        (stats.oversize, stats.l1_entries, stats.l2.writes),
        (2, 0, 0)
    );
    assert!(keys_under(&prefix).await.is_empty());
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn invalidation_by_key_and_by_prefix_reaches_both_layers() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["t1:a", "t1:b", "t2:a", "g*:x", "gx:y"] {
        cache
            .get_or_load_bytes(key, &p, counting(&calls, "v1"))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let read = |key: &'static str| {
        let cache = cache.clone();
        let p = p.clone();
        let calls = Arc::clone(&calls);
        async move {
            cache
                .get_or_load_bytes(key, &p, counting(&calls, "v2"))
                .await
                .unwrap()
        }
    };

    cache.invalidate("t1:a").await;
    assert_eq!(read("t1:a").await, "v2");
    assert_eq!(read("t1:b").await, "v1");

    let removed = cache.invalidate_prefix("t1:").await;
    assert_eq!(removed.l2_removed, Some(2));
    assert_eq!(read("t1:b").await, "v2");
    assert_eq!(read("t2:a").await, "v1");

    // Glob characters in a prefix are literal.
    assert_eq!(cache.invalidate_prefix("g*:").await.l2_removed, Some(1));
    assert_eq!(read("g*:x").await, "v2");
    assert_eq!(read("gx:y").await, "v1");

    // Many keys: several SCAN batches of 100.
    let bulk = profile(Layers::L2_ONLY);
    for i in 0..1200 {
        cache
            .insert(&format!("bulk:{i}"), &bulk, Bytes::from_static(b"b"))
            .await
            .unwrap();
    }
    assert_eq!(keys_under(&format!("{prefix}bulk:")).await.len(), 1200);
    assert_eq!(
        cache.invalidate_prefix("bulk:").await.l2_removed,
        Some(1200)
    );
    assert!(keys_under(&format!("{prefix}bulk:")).await.is_empty());
    let mut left = keys_under(&prefix).await;
    left.sort();
    // t1:a went with the "t1:" prefix and was not read again.
    let expected: Vec<String> = ["g*:x", "gx:y", "t1:b", "t2:a"]
        .iter()
        .map(|key| format!("{prefix}{key}"))
        .collect();
    assert_eq!(left, expected);
    cleanup(&cache, &prefix).await;
}

/// Starts a load of `k` that returns `value` once `release` is notified; returns when the loader
/// is running.
async fn held_load(
    cache: &TieredCache,
    p: &CacheProfile,
    value: &'static str,
) -> (
    tokio::task::JoinHandle<Result<Bytes, cache::CacheError>>,
    Arc<Notify>,
) {
    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let load = {
        let cache = cache.clone();
        let p = p.clone();
        let release = Arc::clone(&release);
        tokio::spawn(async move {
            cache
                .get_or_load_bytes("k", &p, move || async move {
                    let _ = started_tx.send(());
                    release.notified().await;
                    Ok::<_, std::io::Error>(Bytes::from_static(value.as_bytes()))
                })
                .await
        })
    };
    started_rx.recv().await.unwrap();
    (load, release)
}

#[tokio::test]
async fn a_load_overtaken_by_an_invalidation_is_not_cached() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);
    let (load, release) = held_load(&cache, &p, "read before the change").await;
    cache.invalidate("k").await;
    release.notify_one();
    assert_eq!(load.await.unwrap().unwrap(), "read before the change");
    assert_eq!(cache.stats().stale_discarded, 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let value = cache
        .get_or_load_bytes("k", &p, counting(&calls, "after"))
        .await
        .unwrap();
    assert_eq!(value, "after");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn a_write_through_during_a_load_is_not_overwritten_by_it() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);
    let (load, release) = held_load(&cache, &p, "read before the write").await;
    cache
        .insert("k", &p, Bytes::from_static(b"written"))
        .await
        .unwrap();
    release.notify_one();
    assert_eq!(load.await.unwrap().unwrap(), "read before the write");
    assert_eq!(cache.stats().stale_discarded, 1);

    // Both layers keep the written value: a second replica (L2 only) sees it too.
    let calls = Arc::new(AtomicUsize::new(0));
    let value = cache
        .get_or_load_bytes("k", &p, counting(&calls, "loaded"))
        .await
        .unwrap();
    assert_eq!(value, "written");
    let replica = cache_on_redis(&prefix);
    let value = replica
        .get_or_load_bytes("k", &p, counting(&calls, "loaded"))
        .await
        .unwrap();
    assert_eq!(value, "written");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn concurrent_write_throughs_never_undo_each_other() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = profile(Layers::L1_AND_L2);
    // A worker's batch: 500 distinct keys at once, and two writes of one key racing.
    let writes = (0..500)
        .map(|i| format!("batch:{i}"))
        .chain(["same".to_owned(), "same".to_owned()])
        .map(|key| {
            let (cache, p) = (cache.clone(), p.clone());
            async move {
                let value = Bytes::from(format!("value of {key}"));
                cache.insert(&key, &p, value).await.unwrap();
            }
        });
    futures_util::future::join_all(writes).await;
    assert_eq!(cache.stats().stale_discarded, 0);
    let replica = cache_on_redis(&prefix);
    let calls = Arc::new(AtomicUsize::new(0));
    for key in (0..500)
        .map(|i| format!("batch:{i}"))
        .chain(["same".to_owned()])
    {
        let expected = format!("value of {key}");
        for layer in [&cache, &replica] {
            let value = layer
                .get_or_load_bytes(&key, &p, counting(&calls, "loaded"))
                .await
                .unwrap();
            assert_eq!(value, expected.as_bytes(), "{key}");
        }
    }
    // Every read was a hit: in L1 here, in Redis for the replica.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(replica.stats().l2.hits, 501);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn refresh_ahead_serves_the_old_value_and_reloads_once() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    // Fraction 1: every read after a load is inside the refresh window.
    let p = CacheProfile {
        refresh_ahead_fraction: 1.0,
        ..profile(Layers::L1_AND_L2)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load_bytes("k", &p, counting(&calls, "v1"))
        .await
        .unwrap();

    let release = Arc::new(Notify::new());
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let slow_reload = {
        let release = Arc::clone(&release);
        move || async move {
            let _ = started_tx.send(());
            release.notified().await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"v2"))
        }
    };
    assert_eq!(
        cache.get_or_load_bytes("k", &p, slow_reload).await.unwrap(),
        "v1"
    );
    started_rx.recv().await.unwrap();
    // While the reload runs, reads get the old value and start no second reload.
    for _ in 0..10 {
        assert_eq!(
            cache
                .get_or_load_bytes("k", &p, counting(&calls, "v3"))
                .await
                .unwrap(),
            "v1"
        );
    }
    assert_eq!(cache.stats().refreshes, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    release.notify_one();
    cache.wait_for_refreshes().await;
    // The reload rewrote both layers: this process and another replica see v2.
    let other = cache_on_redis(&prefix);
    assert_eq!(
        other
            .get_or_load_bytes("k", &p, counting(&calls, "v3"))
            .await
            .unwrap(),
        "v2"
    );
    let mut no_refresh = p.clone();
    no_refresh.refresh_ahead_fraction = 0.0;
    assert_eq!(
        cache
            .get_or_load_bytes("k", &no_refresh, counting(&calls, "v3"))
            .await
            .unwrap(),
        "v2"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cleanup(&cache, &prefix).await;
}

#[tokio::test]
async fn with_redis_down_the_cache_serves_from_memory_and_counts_errors() {
    let cache = TieredCache::new(CacheConfig {
        // Nothing listens on port 1.
        redis_url: Some("redis://127.0.0.1:1".to_owned()),
        redis_retry_after: Duration::from_secs(3600),
        ..CacheConfig::default()
    })
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let both = profile(Layers::L1_AND_L2);
    for _ in 0..3 {
        let value = cache
            .get_or_load_bytes("k", &both, counting(&calls, "v"))
            .await
            .unwrap();
        assert_eq!(value, "v");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "served from L1 after the first load"
    );

    // An L2-only type is not cached during the outage, but still served.
    let l2_only = profile(Layers::L2_ONLY);
    for _ in 0..2 {
        let value = cache
            .get_or_load_bytes("only", &l2_only, counting(&calls, "w"))
            .await
            .unwrap();
        assert_eq!(value, "w");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.invalidate_prefix("").await.l2_removed, None);

    let stats = cache.stats();
    assert_eq!(stats.l2.errors, 1, "one failed connect marks Redis down");
    assert!(stats.l2.skipped >= 4, "{stats:?}");
    assert_eq!(stats.l1.hits, 2);
}

#[tokio::test]
async fn without_redis_every_profile_is_kept_in_memory() {
    let cache = TieredCache::new(CacheConfig::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let p = CacheProfile::api_response();
    for _ in 0..3 {
        assert_eq!(
            cache
                .get_or_load_bytes("k", &p, counting(&calls, "v"))
                .await
                .unwrap(),
            "v"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().l1.hits, 2);
}

#[tokio::test]
async fn an_invalid_profile_is_refused_naming_the_field() {
    let cache = TieredCache::new(CacheConfig::default()).unwrap();
    let p = CacheProfile {
        refresh_ahead_fraction: -0.1,
        ..CacheProfile::feature_flags()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let err = cache
        .get_or_load_bytes("k", &p, counting(&calls, "v"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refresh_ahead_fraction"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(TieredCache::new(CacheConfig {
        redis_url: Some("not a url".to_owned()),
        ..CacheConfig::default()
    })
    .is_err());
}

/// Acceptance 6: a hostile client cannot grow L1 past its cap, whatever keys it sends.
#[tokio::test]
async fn a_million_distinct_keys_stay_under_the_l1_cap() {
    const CAP: u64 = 4 * 1024 * 1024;
    let cache = TieredCache::new(CacheConfig {
        l1_max_bytes: CAP,
        ..CacheConfig::default()
    })
    .unwrap();
    let p = profile(Layers::L1_ONLY);
    let value = Bytes::from_static(b"{\"constant\":0.25}");
    for i in 0..1_000_000u32 {
        cache
            .insert(&format!("weber:t1:user-{i}"), &p, value.clone())
            .await
            .unwrap();
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.l1_weighted_bytes <= CAP, "{stats:?}");
    assert!(
        stats.l1_weighted_bytes > CAP / 2,
        "the cap is used: {stats:?}"
    );
    assert!(stats.l1.evictions > 0, "{stats:?}");
    assert_eq!(stats.l1.writes, 1_000_000);
}

#[tokio::test]
async fn an_l2_only_hit_in_the_refresh_window_reloads_in_the_background() {
    let prefix = fresh_prefix();
    let cache = cache_on_redis(&prefix);
    let p = CacheProfile {
        refresh_ahead_fraction: 1.0,
        ..profile(Layers::L2_ONLY)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        cache
            .get_or_load_bytes("k", &p, counting(&calls, "v1"))
            .await
            .unwrap(),
        "v1"
    );
    assert_eq!(
        cache
            .get_or_load_bytes("k", &p, counting(&calls, "v2"))
            .await
            .unwrap(),
        "v1"
    );
    cache.wait_for_refreshes().await;
    assert_eq!(cache.stats().refreshes, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let mut no_refresh = p.clone();
    no_refresh.refresh_ahead_fraction = 0.0;
    let value = cache
        .get_or_load_bytes("k", &no_refresh, counting(&calls, "v3"))
        .await
        .unwrap();
    assert_eq!(value, "v2");
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.l2.hits, stats.loads), (1, 2, 1));
    assert!((stats.hit_rate() - 2.0 / 3.0).abs() < 1e-9, "{stats:?}");
    cleanup(&cache, &prefix).await;
}
