//! Heap held by a keyed limiter under a flood of distinct keys, measured with a counting
//! allocator (its own test binary, so no other test allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use limits::{Gcra, KeyedLimiter};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn memory_stays_under_the_cap_for_a_million_keys() {
    const CAP: usize = 100_000;
    let alg = Gcra::per_window(100, 60_000_000_000, 100).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    let limiter = KeyedLimiter::new(CAP, 64);
    let mut peak = 0;
    for i in 0..1_000_000u64 {
        // 16-byte keys, like an IPv6 prefix or a short id.
        limiter.check(&alg, &format!("k{i:015}"), i, 1);
        if i % 10_000 == 0 {
            peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
    let per_key = peak / limiter.max_keys();
    println!(
        "peak heap {peak} bytes for {} keys: {per_key} bytes per key",
        limiter.max_keys()
    );
    // A 16-byte key, an 8-byte state and bookkeeping: documented as about 76 + key length;
    // growth is bounded by the cap, not by the million keys.
    assert!(per_key <= 120, "{per_key} bytes per key");
}
