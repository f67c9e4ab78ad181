//! The keyed limiter: exact admission under contention, expiry and bounded memory.

use std::sync::atomic::{AtomicU64, Ordering};

use limits::{Algorithm, FixedWindow, Gcra, KeyedLimiter, TokenBucket};

#[test]
fn many_threads_admit_exactly_the_limit() {
    const LIMIT: u64 = 1_000;
    let alg = Gcra::per_window(LIMIT, 60_000_000_000, LIMIT).unwrap();
    let limiter = KeyedLimiter::new(1_000, 16);
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..500 {
                    // All at one instant: nothing refills while the threads race.
                    if limiter.check(&alg, "tenant-a", 5, 1).allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), LIMIT);
}

#[test]
fn many_threads_many_keys_admit_exactly_the_limit_per_key() {
    let alg = FixedWindow::new(50, 1_000).unwrap();
    let limiter = KeyedLimiter::new(10_000, 8);
    let admitted: Vec<AtomicU64> = (0..20).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (limiter, admitted, alg) = (&limiter, &admitted, &alg);
            s.spawn(move || {
                for i in 0..2_000 {
                    let k = (i + t) % admitted.len();
                    if limiter.check(alg, &format!("key-{k}"), 10, 1).allowed {
                        admitted[k].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    for a in &admitted {
        assert_eq!(a.load(Ordering::Relaxed), 50);
    }
}

#[test]
fn keys_are_independent_and_quotas_per_call() {
    let small = TokenBucket::new(1, 1, 1_000).unwrap();
    let large = TokenBucket::new(3, 1, 1_000).unwrap();
    let limiter = KeyedLimiter::new(100, 4);
    assert!(limiter.check(&small, "a", 0, 1).allowed);
    assert!(!limiter.check(&small, "a", 0, 1).allowed);
    for _ in 0..3 {
        assert!(limiter.check(&large, "b", 0, 1).allowed);
    }
    assert!(!limiter.check(&large, "b", 0, 1).allowed);
}

#[test]
fn sweep_drops_only_keys_whose_state_no_longer_matters() {
    let alg = Gcra::new(10, 5).unwrap(); // horizon 50 ns
    let limiter = KeyedLimiter::new(100, 1);
    for k in 0..10 {
        limiter.check(&alg, &format!("k{k}"), k, 5);
    }
    assert_eq!(limiter.sweep(49), 0);
    assert_eq!(limiter.sweep(54), 5); // k0..k4 last used at 0..4
    assert_eq!(limiter.len(), 5);
    // k9 was drained at 9: at 58 it is still one unit short of a full burst.
    assert!(!limiter.check(&alg, "k9", 58, 5).allowed);
    assert!(limiter.check(&alg, "k9", 59, 5).allowed);
    assert_eq!(limiter.expirations(), 5);
}

#[test]
fn a_full_limiter_evicts_the_least_recently_used_key() {
    let alg = FixedWindow::new(1, 1_000_000).unwrap();
    let limiter = KeyedLimiter::new(3, 1);
    for k in ["a", "b", "c"] {
        assert!(limiter.check(&alg, k, 0, 1).allowed);
    }
    assert!(!limiter.check(&alg, "a", 1, 1).allowed); // "a" is now the most recent
    assert!(limiter.check(&alg, "d", 2, 1).allowed); // evicts "b"
    assert_eq!(limiter.evictions(), 1);
    assert_eq!(limiter.len(), 3);
    assert!(!limiter.check(&alg, "a", 3, 1).allowed);
    assert!(
        limiter.check(&alg, "b", 4, 1).allowed,
        "b was evicted and starts afresh"
    );
}

#[test]
fn a_million_distinct_keys_never_exceed_the_cap() {
    let alg = Gcra::per_window(100, 60_000_000_000, 100).unwrap();
    let limiter = KeyedLimiter::new(100_000, 64);
    let cap = limiter.max_keys();
    assert!(cap <= 100_000);
    for i in 0..1_000_000u64 {
        limiter.check(&alg, &format!("attacker-{i}"), i, 1);
        if i % 50_000 == 0 {
            assert!(limiter.len() <= cap);
        }
    }
    assert!(limiter.len() <= cap);
    assert!(limiter.evictions() >= 1_000_000 - cap as u64);
    // All those keys are idle after the horizon.
    assert_eq!(
        limiter.sweep(1_000_000 + alg.horizon_ns()),
        limiter.expirations()
    );
    assert_eq!(limiter.len(), 0);
}
