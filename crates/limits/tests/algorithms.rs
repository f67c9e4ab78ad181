//! Property tests: each algorithm against a literal reference model of its definition, over
//! arbitrary request sequences (times and costs), plus the exactness of `remaining` and
//! `retry_after_ns`.

use std::collections::HashMap;

use limits::{
    Algorithm, Decision, FixedWindow, Gcra, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
    NEVER,
};
use proptest::prelude::*;

/// Requests as (time, cost), times non-decreasing; small numbers so windows, boundaries and
/// exhaustion are all hit often.
fn requests(max_gap: u64, max_cost: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0..=max_gap, 0..=max_cost), 1..120).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .map(|(gap, cost)| {
                t += gap;
                (t, cost)
            })
            .collect()
    })
}

/// Runs `alg` over `reqs`, checking after each decision that `remaining` and `retry_after_ns`
/// are exact (on copies of the state), and returns the decisions.
fn run<A: Algorithm>(alg: &A, reqs: &[(u64, u64)]) -> Vec<Decision> {
    let mut state = A::State::default();
    let mut out = Vec::new();
    for &(t, cost) in reqs {
        let d = alg.check(&mut state, t, cost);
        if d.remaining > 0 {
            let mut copy = state.clone();
            assert!(
                alg.check(&mut copy, t, d.remaining).allowed,
                "remaining {} refused",
                d.remaining
            );
        }
        let mut copy = state.clone();
        assert!(
            !alg.check(&mut copy, t, d.remaining + 1).allowed,
            "more than remaining admitted"
        );
        if !d.allowed {
            if d.retry_after_ns == NEVER {
                assert!(cost > alg.capacity());
            } else {
                let mut copy = state.clone();
                assert!(
                    alg.check(&mut copy, t + d.retry_after_ns, cost).allowed,
                    "refused at retry_after"
                );
                if d.retry_after_ns > 0 {
                    let mut copy = state.clone();
                    assert!(
                        !alg.check(&mut copy, t + d.retry_after_ns - 1, cost).allowed,
                        "admitted before retry_after"
                    );
                }
            }
        } else {
            assert_eq!(d.retry_after_ns, 0);
        }
        out.push(d);
    }
    out
}

fn admitted(reqs: &[(u64, u64)], decisions: &[Decision]) -> Vec<(u64, u64)> {
    reqs.iter()
        .zip(decisions)
        .filter(|(_, d)| d.allowed)
        .map(|(&r, _)| r)
        .collect()
}

/// The bucket of capacity `c` refilled `r` per `p` ns, written as its closed form: the tokens
/// at `t` (scaled by `p`) are the least of `c·p` and, for every earlier admitted request `j`,
/// `c·p + r·(t − t_j) − p·(cost admitted from j on)`.
fn bucket_reference(c: u64, r: u64, p: u64, reqs: &[(u64, u64)]) -> Vec<bool> {
    let mut log: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::new();
    for &(t, cost) in reqs {
        let full = c as i128 * p as i128;
        let mut tokens = full;
        for j in 0..log.len() {
            let since: i128 = log[j..].iter().map(|&(_, c)| c as i128).sum();
            tokens = tokens.min(full + r as i128 * (t - log[j].0) as i128 - p as i128 * since);
        }
        let ok = tokens >= cost as i128 * p as i128;
        if ok {
            log.push((t, cost));
        }
        out.push(ok);
    }
    out
}

/// For every pair of admitted requests i ≤ j: cost of i..=j ≤ c + r·(t_j − t_i)/p.
fn assert_bucket_bound(c: u64, r: u64, p: u64, admitted: &[(u64, u64)]) {
    for i in 0..admitted.len() {
        let mut sum = 0u128;
        for j in i..admitted.len() {
            sum += admitted[j].1 as u128;
            let span = (admitted[j].0 - admitted[i].0) as u128;
            assert!(
                sum * p as u128 <= c as u128 * p as u128 + r as u128 * span,
                "bucket bound broken"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fixed_window_matches_reference(limit in 1u64..10, window in 1u64..40, reqs in requests(30, 11)) {
        let alg = FixedWindow::new(limit, window).unwrap();
        let decisions = run(&alg, &reqs);
        let mut used: HashMap<u64, u64> = HashMap::new();
        for (&(t, cost), d) in reqs.iter().zip(&decisions) {
            let u = used.entry(t / window).or_default();
            let ok = *u + cost <= limit;
            if ok { *u += cost; }
            prop_assert_eq!(d.allowed, ok);
            prop_assert_eq!(d.remaining, limit - *u);
        }
        for (_, u) in used { prop_assert!(u <= limit); }
    }

    #[test]
    fn sliding_log_matches_reference(limit in 1u64..10, window in 1u64..40, reqs in requests(30, 11)) {
        let alg = SlidingWindowLog::new(limit, window).unwrap();
        let decisions = run(&alg, &reqs);
        let mut log: Vec<(u64, u64)> = Vec::new();
        for (&(t, cost), d) in reqs.iter().zip(&decisions) {
            let in_window: u64 = log.iter().filter(|&&(s, _)| s + window > t).map(|&(_, c)| c).sum();
            let ok = in_window + cost <= limit;
            if ok { log.push((t, cost)); }
            prop_assert_eq!(d.allowed, ok);
        }
        // Every window (s − W, s] ending at an admission holds at most `limit`.
        for &(s, _) in &log {
            let sum: u64 = log.iter().filter(|&&(u, _)| u <= s && u + window > s).map(|&(_, c)| c).sum();
            prop_assert!(sum <= limit);
        }
    }

    #[test]
    fn sliding_counter_matches_reference(limit in 1u64..10, window in 1u64..40, reqs in requests(30, 11)) {
        let alg = SlidingWindowCounter::new(limit, window).unwrap();
        let decisions = run(&alg, &reqs);
        let mut per_window: HashMap<u64, u64> = HashMap::new();
        for (&(t, cost), d) in reqs.iter().zip(&decisions) {
            let i = t / window;
            let prev = if i == 0 { 0 } else { per_window.get(&(i - 1)).copied().unwrap_or(0) };
            let cur = per_window.get(&i).copied().unwrap_or(0);
            let elapsed = t - i * window;
            // prev·(W − e)/W + cur + cost ≤ limit, multiplied through by W.
            let ok = prev as u128 * (window - elapsed) as u128 + (cur + cost) as u128 * window as u128
                <= limit as u128 * window as u128;
            if ok { *per_window.entry(i).or_default() += cost; }
            prop_assert_eq!(d.allowed, ok);
        }
        for (_, used) in per_window { prop_assert!(used <= limit); }
    }

    #[test]
    fn token_bucket_matches_reference(capacity in 1u64..10, refill in 1u64..5, period in 1u64..40, reqs in requests(30, 11)) {
        let alg = TokenBucket::new(capacity, refill, period).unwrap();
        let decisions = run(&alg, &reqs);
        let expected = bucket_reference(capacity, refill, period, &reqs);
        let got: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
        prop_assert_eq!(got, expected);
        assert_bucket_bound(capacity, refill, period, &admitted(&reqs, &decisions));
    }

    #[test]
    fn gcra_matches_reference(emission in 1u64..20, capacity in 1u64..10, reqs in requests(30, 11)) {
        let alg = Gcra::new(emission, capacity).unwrap();
        let decisions = run(&alg, &reqs);
        // GCRA is the bucket of `capacity` refilled one unit per emission interval.
        let expected = bucket_reference(capacity, 1, emission, &reqs);
        let got: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
        prop_assert_eq!(got, expected);
        assert_bucket_bound(capacity, 1, emission, &admitted(&reqs, &decisions));
    }

    /// A caller whose clock reading is older than one already used gets no extra quota.
    #[test]
    fn late_callers_get_nothing_extra(emission in 1u64..20, capacity in 1u64..10, reqs in requests(30, 3), back in 0u64..50) {
        let alg = Gcra::new(emission, capacity).unwrap();
        let mut state = Default::default();
        let mut log = Vec::new();
        for &(t, cost) in &reqs {
            let late = t.saturating_sub(back);
            if alg.check(&mut state, late, cost).allowed { log.push((t, cost)); }
        }
        assert_bucket_bound(capacity, 1, emission, &log);
    }
}

#[test]
fn fixed_window_resets_at_the_boundary() {
    let alg = FixedWindow::new(2, 100).unwrap();
    let mut s = Default::default();
    assert!(alg.check(&mut s, 10, 1).allowed);
    assert!(alg.check(&mut s, 20, 1).allowed);
    let refused = alg.check(&mut s, 30, 1);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after_ns, 70);
    assert!(alg.check(&mut s, 100, 2).allowed);
}

#[test]
fn gcra_spaces_requests_after_the_burst() {
    // 10 per second, bursts of 3.
    let alg = Gcra::per_window(10, 1_000_000_000, 3).unwrap();
    let mut s = Default::default();
    for _ in 0..3 {
        assert!(alg.check(&mut s, 0, 1).allowed);
    }
    let refused = alg.check(&mut s, 0, 1);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after_ns, 100_000_000);
    assert!(alg.check(&mut s, 100_000_000, 1).allowed);
    assert_eq!(alg.check(&mut s, 100_000_000, 4).retry_after_ns, NEVER);
}

#[test]
fn zero_parameters_are_refused() {
    assert!(FixedWindow::new(0, 1).is_err());
    assert!(SlidingWindowLog::new(1, 0).is_err());
    assert!(TokenBucket::new(1, 0, 1).is_err());
    assert!(Gcra::new(0, 1).is_err());
}

/// Parameters, costs and times at the edges of `u64` neither panic (overflow checks are on in
/// tests) nor admit more than the capacity.
#[test]
fn extreme_values_do_not_overflow() {
    let max = u64::MAX;
    let algs: Vec<limits::AnyAlgorithm> = vec![
        limits::AnyAlgorithm::FixedWindow(FixedWindow::new(max, max).unwrap()),
        limits::AnyAlgorithm::SlidingWindowLog(SlidingWindowLog::new(max, max).unwrap()),
        limits::AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(max, max).unwrap()),
        limits::AnyAlgorithm::TokenBucket(TokenBucket::new(max, max, max).unwrap()),
        limits::AnyAlgorithm::Gcra(Gcra::new(max, max).unwrap()),
        limits::AnyAlgorithm::Gcra(Gcra::new(1, max).unwrap()),
        limits::AnyAlgorithm::TokenBucket(TokenBucket::new(1, 1, max).unwrap()),
    ];
    for alg in algs {
        let mut state = Default::default();
        let mut admitted = 0u128;
        for (t, cost) in [
            (0, max),
            (0, max),
            (1, 1),
            (max - 1, max),
            (max, max),
            (max, 1),
            (3, 1),
        ] {
            if alg.check(&mut state, t, cost).allowed {
                admitted += cost as u128;
            }
        }
        let _ = alg.horizon_ns();
        assert!(admitted >= 1, "{alg:?} admitted nothing");
        assert!(
            admitted <= 3 * alg.capacity() as u128,
            "{alg:?} admitted {admitted}"
        );
    }
}
