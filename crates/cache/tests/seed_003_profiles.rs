//! Seed 003's cache profiles against the real Redis (`SIGNALBOX_TEST_REDIS_URL`, or
//! 127.0.0.1:6379): each one's entry size cap (a value at the cap is cached in both layers, one
//! byte over is served, not cached and counted), its compression threshold (what Redis holds
//! carries the gzip tag exactly when the value is longer than the threshold) and its TTL.
//! Each test uses its own random key prefix and removes its keys at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache::{CacheConfig, CacheProfile, Layers, TieredCache};

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fresh_prefix() -> String {
    format!("sbxtest:{}:", uuid::Uuid::new_v4().simple())
}

fn cache_on_redis(prefix: &str) -> TieredCache {
    TieredCache::new(CacheConfig {
        redis_url: Some(redis_url()),
        redis_key_prefix: prefix.to_owned(),
        redis_timeout: Duration::from_secs(5),
        // Room for a few 10 MiB analytics values at once.
        l1_max_bytes: 128 * 1024 * 1024,
        ..CacheConfig::default()
    })
    .unwrap()
}

async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at SIGNALBOX_TEST_REDIS_URL (default 127.0.0.1:6379)")
}

/// What Redis holds under `key` (tag byte first), and its remaining TTL in ms.
async fn stored(prefix: &str, key: &str) -> Option<(Vec<u8>, i64)> {
    let mut conn = raw_redis().await;
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    value.map(|v| (v, pttl))
}

/// A compressible JSON-ish value of exactly `len` bytes.
fn value_of(len: usize) -> Bytes {
    let unit = b"{\"role\":\"assistant\",\"content\":\"hello\"},";
    Bytes::from(unit.iter().copied().cycle().take(len).collect::<Vec<u8>>())
}

/// Reads `key` through the cache with a loader returning `value`, counting loader calls.
async fn read(
    cache: &TieredCache,
    key: &str,
    profile: &CacheProfile,
    value: &Bytes,
    calls: &Arc<AtomicUsize>,
) -> Bytes {
    let value = value.clone();
    let calls = Arc::clone(calls);
    cache
        .get_or_load_bytes(key, profile, move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(value)
        })
        .await
        .expect("an oversize value is served, never an error")
}

const SEED_003: [&str; 6] = [
    "conversation_context",
    "user_session",
    "model_response",
    "tenant_config",
    "integration_config",
    "analytics_data",
];

#[test]
fn seed_003_table() {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    // name, TTL s, max entry, compress over
    let table: [(&str, u64, usize, Option<usize>); 6] = [
        ("conversation_context", 3600, 2 * MIB, Some(100 * KIB)),
        ("user_session", 1800, MIB / 2, None),
        ("model_response", 7200, 5 * MIB, Some(50 * KIB)),
        ("tenant_config", 300, MIB, None),
        ("integration_config", 600, MIB, None),
        ("analytics_data", 900, 10 * MIB, Some(100 * KIB)),
    ];
    for (name, ttl, max, compress) in table {
        let p = CacheProfile::named(name).unwrap_or_else(|| panic!("{name} is named"));
        p.validate().unwrap();
        assert!(CacheProfile::NAMES.contains(&name), "{name} in NAMES");
        assert_eq!(p.ttl, Duration::from_secs(ttl), "{name} ttl");
        assert_eq!(p.max_entry_bytes, max, "{name} max_entry_bytes");
        assert_eq!(
            p.compress_over_bytes, compress,
            "{name} compress_over_bytes"
        );
        assert_eq!(p.layers, Layers::L1_AND_L2, "{name} layers");
    }
    // The named constructors are what the names find.
    let constructors = [
        ("conversation_context", CacheProfile::conversation_context()),
        ("user_session", CacheProfile::user_session()),
        ("model_response", CacheProfile::model_response()),
        ("tenant_config", CacheProfile::tenant_config()),
        ("integration_config", CacheProfile::integration_config()),
        ("analytics_data", CacheProfile::analytics_data()),
    ];
    for (name, profile) in constructors {
        assert_eq!(table_profile(name), profile, "{name}");
    }
    // Seed 003 has no refresh-ahead; user_session keeps seed 002's.
    assert_eq!(CacheProfile::analytics_data().refresh_ahead_fraction, 0.0);
    assert_eq!(CacheProfile::user_session().refresh_ahead_fraction, 0.9);
}

fn table_profile(name: &str) -> CacheProfile {
    CacheProfile::named(name).unwrap()
}

#[tokio::test]
async fn a_value_at_the_cap_is_cached_and_one_byte_over_is_served_and_counted() {
    for name in SEED_003 {
        let prefix = fresh_prefix();
        let cache = cache_on_redis(&prefix);
        let p = table_profile(name);
        let calls = Arc::new(AtomicUsize::new(0));

        let at_cap = value_of(p.max_entry_bytes);
        for _ in 0..2 {
            assert_eq!(
                read(&cache, "fits", &p, &at_cap, &calls).await,
                at_cap,
                "{name}"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{name}: the second read is a hit"
        );
        let (_, pttl) = stored(&prefix, "fits").await.expect("cached in Redis");
        let ttl_ms = i64::try_from(p.ttl.as_millis()).unwrap();
        assert!(
            (ttl_ms - 60_000..=ttl_ms).contains(&pttl),
            "{name}: PTTL {pttl} of {ttl_ms}"
        );

        let over = value_of(p.max_entry_bytes + 1);
        for _ in 0..2 {
            assert_eq!(
                read(&cache, "over", &p, &over, &calls).await,
                over,
                "{name}"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "{name}: oversize is never cached"
        );
        assert!(
            stored(&prefix, "over").await.is_none(),
            "{name}: not in Redis"
        );
        cache.run_pending_tasks().await;
        assert_eq!(cache.stats().oversize, 2, "{name}: oversize counted");

        // A write-through of an oversize value is refused the same way, and drops the old one.
        cache.insert("fits", &p, over.clone()).await.unwrap();
        assert!(stored(&prefix, "fits").await.is_none(), "{name}");
        assert_eq!(cache.stats().oversize, 3, "{name}");

        cache.invalidate_prefix("").await;
    }
}

#[tokio::test]
async fn redis_holds_gzip_exactly_over_the_compression_threshold() {
    for name in SEED_003 {
        let prefix = fresh_prefix();
        let cache = cache_on_redis(&prefix);
        let p = table_profile(name);
        match p.compress_over_bytes {
            Some(threshold) => {
                let at = value_of(threshold);
                cache.insert("at", &p, at.clone()).await.unwrap();
                let (raw, _) = stored(&prefix, "at").await.unwrap();
                assert_eq!(raw[0], 0, "{name}: {threshold} bytes stay raw");
                assert_eq!(&raw[1..], &at[..], "{name}");

                let over = value_of(threshold + 1);
                cache.insert("over", &p, over.clone()).await.unwrap();
                let (raw, _) = stored(&prefix, "over").await.unwrap();
                assert_eq!(raw[0], 1, "{name}: {} bytes are gzipped", threshold + 1);
                assert!(raw.len() < over.len() / 10, "{name}: {} bytes", raw.len());
            }
            None => {
                let large = value_of(p.max_entry_bytes);
                cache.insert("large", &p, large.clone()).await.unwrap();
                let (raw, _) = stored(&prefix, "large").await.unwrap();
                assert_eq!(raw[0], 0, "{name} never compresses");
                assert_eq!(raw.len(), large.len() + 1, "{name}");
            }
        }
        // Another process reads the stored form back to the same bytes.
        let other = cache_on_redis(&prefix);
        let calls = Arc::new(AtomicUsize::new(0));
        for key in ["at", "over", "large"] {
            if stored(&prefix, key).await.is_some() {
                let got = read(&other, key, &p, &Bytes::new(), &calls).await;
                assert!(!got.is_empty(), "{name}/{key}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}: served from Redis");
        cache.invalidate_prefix("").await;
    }
}

/// One random value for a profile: its length near one of the profile's limits or small, its
/// bytes compressible or not.
fn sized_value() -> impl proptest::strategy::Strategy<Value = (&'static str, usize, bool, u64)> {
    use proptest::prelude::*;
    (
        proptest::sample::select(SEED_003.to_vec()),
        prop_oneof![Just(0usize), Just(1usize), Just(2usize)],
        -8i64..=8,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(name, near, offset, compressible, seed)| {
            let p = table_profile(name);
            let anchor = match near {
                0 => 64,
                1 => p.compress_over_bytes.unwrap_or(p.max_entry_bytes / 2),
                _ => p.max_entry_bytes,
            };
            let len = usize::try_from(i64::try_from(anchor).unwrap() + offset).unwrap();
            (name, len, compressible, seed)
        })
}

/// Bytes that gzip cannot shrink (xorshift), or a repeating pattern it can.
fn bytes(len: usize, compressible: bool, mut seed: u64) -> Bytes {
    if compressible {
        return value_of(len);
    }
    seed |= 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect::<Vec<u8>>(),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Whatever its size and content, a value written through a seed 003 profile is read back by
    /// another process exactly when it fits the cap (and then byte for byte), is otherwise
    /// counted as oversize and left out of Redis, and is stored gzipped only over the threshold.
    #[test]
    fn values_round_trip_through_redis_exactly_when_they_fit((name, len, compressible, seed) in sized_value()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let p = table_profile(name);
            let value = bytes(len, compressible, seed);
            let prefix = fresh_prefix();
            let cache = cache_on_redis(&prefix);
            cache.insert("v", &p, value.clone()).await.unwrap();
            let fits = len <= p.max_entry_bytes;
            assert_eq!(cache.stats().oversize, u64::from(!fits), "{name} {len}");
            match stored(&prefix, "v").await {
                None => assert!(!fits, "{name}: {len} bytes fit but are not in Redis"),
                Some((raw, _)) => {
                    assert!(fits, "{name}: {len} bytes stored over the cap");
                    if raw[0] == 1 {
                        assert!(
                            p.compress_over_bytes.is_some_and(|t| len > t),
                            "{name}: {len} bytes gzipped"
                        );
                    } else {
                        assert_eq!(&raw[1..], &value[..], "{name}: raw copy");
                    }
                    if compressible && p.compress_over_bytes.is_some_and(|t| len > t) {
                        assert_eq!(raw[0], 1, "{name}: {len} compressible bytes stay raw");
                    }
                }
            }
            let other = cache_on_redis(&prefix);
            let calls = Arc::new(AtomicUsize::new(0));
            let got = read(&other, "v", &p, &value, &calls).await;
            assert_eq!(got, value, "{name} {len}");
            assert_eq!(calls.load(Ordering::SeqCst), usize::from(!fits), "{name} {len}");
            cache.invalidate_prefix("").await;
        });
    }
}
