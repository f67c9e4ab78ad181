//! A lost subscription (as when Redis restarts) against the real Redis: the bus resubscribes
//! and empties the memory layer, since messages may have been missed meanwhile.
//!
//! A test binary of its own: it drops every pub/sub connection of the test Redis
//! (`CLIENT KILL TYPE pubsub`), which would disturb other bus tests running beside it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{CacheConfig, CacheProfile, Layers, TieredCache};

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_lost_subscription_is_restored_and_the_memory_layer_emptied() {
    let prefix = format!("sbxtest:{}:", uuid::Uuid::new_v4().simple());
    let cache = TieredCache::new(CacheConfig {
        redis_url: Some(redis_url()),
        redis_key_prefix: prefix.clone(),
        redis_timeout: Duration::from_secs(2),
        invalidation_channel: Some("invalidate:test".to_owned()),
        ..CacheConfig::default()
    })
    .unwrap();
    let p = CacheProfile {
        ttl: Duration::from_secs(600),
        layers: Layers::L1_AND_L2,
        compress_over_bytes: None,
        max_entry_bytes: 1024,
        refresh_ahead_fraction: 0.0,
    };
    eventually("the bus to subscribe", || cache.invalidation_bus_live()).await;
    cache
        .insert("k", &p, Bytes::from_static(b"old"))
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let read = || {
        let calls = Arc::clone(&calls);
        cache.get_or_load_bytes("k", &p, move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, std::io::Error>(Bytes::from_static(b"loaded")))
        })
    };
    assert_eq!(read().await.unwrap(), "old");
    assert_eq!(cache.stats().l1.hits, 1);

    // Another replica's change whose message this process never gets: written to Redis
    // directly (tag byte 0 = raw), while the subscription is cut.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(killed >= 1);
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}k"))
        .arg(b"\0new".as_slice())
        .arg("PX")
        .arg(600_000)
        .query_async(&mut redis)
        .await
        .unwrap();

    eventually("the subscription to be restored", || {
        let bus = cache.stats().bus;
        bus.subscriptions >= 2 && bus.live
    })
    .await;
    assert!(cache.stats().bus.subscriptions_lost >= 1);
    // The old copy is gone from memory: the read goes to Redis and finds the change.
    assert_eq!(read().await.unwrap(), "new");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cache.invalidate_prefix("").await;
}
