//! The five admission algorithms.
//!
//! Each algorithm is split into its parameters (the type implementing [`Algorithm`], shared by
//! every key that has the same quota) and a small per-key state ([`Algorithm::State`]), so a
//! keyed limiter stores only the state per key and different keys can have different quotas.
//!
//! Time is `now_ns`, monotonic nanoseconds chosen by the caller. A `now_ns` earlier than one a
//! state has already seen (two threads reading the clock in one order and locking in the other)
//! is treated as that later time, so a late caller can never reopen a window or refill a bucket
//! that a newer caller already used.
//!
//! Arithmetic is exact integer arithmetic (rates are kept as fractions, in `u128` where products
//! can overflow `u64`), so the admission guarantees below hold exactly, not up to rounding.

use std::collections::VecDeque;

/// `retry_after_ns` of a request that can never be admitted (its cost exceeds the capacity).
pub const NEVER: u64 = u64::MAX;

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was admitted (and its cost taken from the quota).
    pub allowed: bool,
    /// Cost units that could still be admitted right now, after this decision.
    pub remaining: u64,
    /// Nanoseconds until the full quota is available again if nothing more is admitted.
    pub reset_after_ns: u64,
    /// For a refused request, nanoseconds until the same request would be admitted if nothing
    /// else is admitted meanwhile ([`NEVER`] if its cost exceeds the capacity); 0 when admitted.
    pub retry_after_ns: u64,
}

/// Parameters that were refused by a constructor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A limit, capacity or rate of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

/// A rate-limiting algorithm: its parameters are `self`, the per-key state is [`Self::State`].
pub trait Algorithm {
    /// Per-key state. `Default` is the state of a key never seen (full quota).
    type State: Default + Clone + Send;

    /// Decides one request of `cost` units at `now_ns`; an admitted request's cost is taken from
    /// `state`, a refused one leaves the quota unchanged.
    fn check(&self, state: &mut Self::State, now_ns: u64, cost: u64) -> Decision;

    /// An upper bound on how long a state still matters after its last use: at
    /// `last use + horizon_ns()` every state behaves like `Default`, so a keyed limiter can drop
    /// it then without giving anyone extra quota.
    fn horizon_ns(&self) -> u64;

    /// The most cost units this algorithm can ever admit at once.
    fn capacity(&self) -> u64;
}

fn check_nonzero(value: u64, name: &'static str) -> Result<(), ParamError> {
    if value == 0 {
        Err(ParamError::Zero(name))
    } else {
        Ok(())
    }
}

fn ceil_div_u128(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Fixed window: time is cut into aligned windows `[k·W, (k+1)·W)`; each admits `limit` cost.
///
/// **Guarantee (exact):** the admitted cost with timestamps in any aligned window is at most
/// `limit`, and a request is admitted exactly when it fits in what its window has left. Any
/// interval of length `W` overlaps two windows, so it can hold up to `2·limit` (the known
/// boundary burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    limit: u64,
    window_ns: u64,
}

/// State of a [`FixedWindow`] key: the current window's index and its used cost.
#[derive(Debug, Clone, Default)]
pub struct FixedWindowState {
    window: u64,
    used: u64,
}

impl FixedWindow {
    /// `limit` cost units per window of `window_ns`.
    pub fn new(limit: u64, window_ns: u64) -> Result<Self, ParamError> {
        check_nonzero(limit, "limit")?;
        check_nonzero(window_ns, "window")?;
        Ok(Self { limit, window_ns })
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn check(&self, state: &mut FixedWindowState, now_ns: u64, cost: u64) -> Decision {
        let window = now_ns / self.window_ns;
        if window > state.window {
            state.window = window;
            state.used = 0;
        }
        let window_end = (state.window as u128 + 1) * self.window_ns as u128;
        let until_end = to_u64(window_end.saturating_sub(now_ns as u128));
        let allowed = cost <= self.limit - state.used;
        if allowed {
            state.used += cost;
        }
        let retry_after_ns = if allowed {
            0
        } else if cost > self.limit {
            NEVER
        } else {
            until_end
        };
        Decision {
            allowed,
            remaining: self.limit - state.used,
            reset_after_ns: if state.used == 0 { 0 } else { until_end },
            retry_after_ns,
        }
    }

    fn horizon_ns(&self) -> u64 {
        self.window_ns
    }

    fn capacity(&self) -> u64 {
        self.limit
    }
}

/// Sliding window log: every admitted request is logged with its time; a request at `t` is
/// admitted if the cost logged in `(t − W, t]` plus its own is at most `limit`.
///
/// **Guarantee (exact):** the admitted cost in every half-open interval `(s − W, s]` is at most
/// `limit`, for every `s`, and nothing that fits is refused. Memory per key is one log entry per
/// admitted request still in the window (at most `limit` entries, fewer when requests at the
/// same instant are merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowLog {
    limit: u64,
    window_ns: u64,
}

/// State of a [`SlidingWindowLog`] key: the log of admitted `(time, cost)` within the window.
#[derive(Debug, Clone, Default)]
pub struct SlidingWindowLogState {
    log: VecDeque<(u64, u64)>,
    sum: u64,
    latest: u64,
}

impl SlidingWindowLog {
    /// `limit` cost units in any window of `window_ns`.
    pub fn new(limit: u64, window_ns: u64) -> Result<Self, ParamError> {
        check_nonzero(limit, "limit")?;
        check_nonzero(window_ns, "window")?;
        Ok(Self { limit, window_ns })
    }

    /// Time from `now` until an entry logged at `t` leaves the window.
    fn until_expiry(&self, t: u64, now: u64) -> u64 {
        to_u64((t as u128 + self.window_ns as u128).saturating_sub(now as u128))
    }
}

impl Algorithm for SlidingWindowLog {
    type State = SlidingWindowLogState;

    fn check(&self, state: &mut SlidingWindowLogState, now_ns: u64, cost: u64) -> Decision {
        let now = now_ns.max(state.latest);
        state.latest = now;
        // An entry at `t` counts for the windows `(s − W, s]` with `s < t + W`.
        while let Some(&(t, c)) = state.log.front() {
            if t as u128 + self.window_ns as u128 <= now as u128 {
                state.log.pop_front();
                state.sum -= c;
            } else {
                break;
            }
        }
        let allowed = cost <= self.limit - state.sum;
        let mut retry_after_ns = 0;
        if allowed {
            if cost > 0 {
                match state.log.back_mut() {
                    Some((t, c)) if *t == now => *c += cost,
                    _ => state.log.push_back((now, cost)),
                }
                state.sum += cost;
            }
        } else if cost > self.limit {
            retry_after_ns = NEVER;
        } else {
            // The earliest time enough old entries have left the window for `cost` to fit.
            let mut left = state.sum;
            for &(t, c) in &state.log {
                left -= c;
                if left + cost <= self.limit {
                    retry_after_ns = self.until_expiry(t, now);
                    break;
                }
            }
        }
        let reset_after_ns = state
            .log
            .back()
            .map_or(0, |&(t, _)| self.until_expiry(t, now));
        Decision {
            allowed,
            remaining: self.limit - state.sum,
            reset_after_ns,
            retry_after_ns,
        }
    }

    fn horizon_ns(&self) -> u64 {
        self.window_ns
    }

    fn capacity(&self) -> u64 {
        self.limit
    }
}

/// Sliding window counter: the two-window approximation of a sliding window. With `cur` the
/// cost admitted in the current aligned window, `prev` that of the previous one and `e` the time
/// elapsed in the current window, the estimated cost of the last `W` is
/// `prev·(W − e)/W + cur`; a request is admitted if the estimate plus its cost is at most
/// `limit`.
///
/// **Guarantee (exact for the estimate):** at every admission `prev·(W − e) + (cur + cost)·W ≤
/// limit·W` holds exactly (integer arithmetic, no rounding), so the admitted cost in each
/// aligned window is at most `limit` and in any interval of length `W` at most `2·limit`; how
/// close the estimate is to the true sliding count depends on how evenly the previous window's
/// requests were spread. Two counters per key, whatever the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowCounter {
    limit: u64,
    window_ns: u64,
}

/// State of a [`SlidingWindowCounter`] key.
#[derive(Debug, Clone, Default)]
pub struct SlidingWindowCounterState {
    window: u64,
    current: u64,
    previous: u64,
}

impl SlidingWindowCounter {
    /// `limit` cost units in any (estimated) window of `window_ns`.
    pub fn new(limit: u64, window_ns: u64) -> Result<Self, ParamError> {
        check_nonzero(limit, "limit")?;
        check_nonzero(window_ns, "window")?;
        Ok(Self { limit, window_ns })
    }

    /// `prev·(W − e) + cur·W`: the estimate scaled by `W` (saturating: only limits and
    /// windows both near `u64::MAX` get there, and then it errs towards refusing).
    fn scaled_estimate(&self, state: &SlidingWindowCounterState, elapsed: u64) -> u128 {
        let w = self.window_ns as u128;
        (state.previous as u128 * (w - elapsed as u128)).saturating_add(state.current as u128 * w)
    }
}

impl Algorithm for SlidingWindowCounter {
    type State = SlidingWindowCounterState;

    fn check(&self, state: &mut SlidingWindowCounterState, now_ns: u64, cost: u64) -> Decision {
        let w = self.window_ns as u128;
        let window = now_ns / self.window_ns;
        if window == state.window + 1 {
            state.previous = state.current;
            state.current = 0;
            state.window = window;
        } else if window > state.window {
            state.previous = 0;
            state.current = 0;
            state.window = window;
        }
        let window_start = state.window as u128 * w;
        // A late caller (now before the window start) is charged the full previous window.
        let elapsed = to_u64((now_ns as u128).saturating_sub(window_start).min(w));
        let budget = self.limit as u128 * w;
        let allowed = cost <= self.limit
            && self
                .scaled_estimate(state, elapsed)
                .saturating_add(cost as u128 * w)
                <= budget;
        if allowed {
            state.current += cost;
        }
        let now = window_start + elapsed as u128;
        let retry_after_ns = if allowed {
            0
        } else if cost > self.limit {
            NEVER
        } else if cost > self.limit - state.current {
            // Wait for the next window, then for `prev` (now `current`) to weigh little enough:
            // current·(W − e') + cost·W ≤ limit·W.
            let next_start = window_start + w;
            let e = if state.current == 0 {
                0
            } else {
                let spare = (self.limit - cost) as u128 * w;
                w.saturating_sub(spare / state.current as u128)
            };
            to_u64(next_start + e - now)
        } else {
            // previous·(W − e) ≤ (limit − current − cost)·W, smallest such e.
            let spare = (self.limit - state.current - cost) as u128 * w;
            let e = w - (spare / state.previous as u128).min(w);
            to_u64((window_start + e).saturating_sub(now))
        };
        let remaining = to_u64(budget.saturating_sub(self.scaled_estimate(state, elapsed)) / w);
        let reset_after_ns = if state.current > 0 {
            to_u64(window_start + 2 * w - now)
        } else if state.previous > 0 {
            to_u64(window_start + w - now)
        } else {
            0
        };
        Decision {
            allowed,
            remaining,
            reset_after_ns,
            retry_after_ns,
        }
    }

    fn horizon_ns(&self) -> u64 {
        self.window_ns.saturating_mul(2)
    }

    fn capacity(&self) -> u64 {
        self.limit
    }
}

/// Token bucket: a bucket of `capacity` tokens, full at first, refilled continuously at
/// `refill` tokens per `period_ns` up to `capacity`; a request is admitted if the bucket holds
/// at least its cost, which it then takes.
///
/// **Guarantee (exact):** for any `s ≤ t`, the admitted cost with timestamps in `[s, t]` is at
/// most `capacity + refill·(t − s)/period`, and the decisions are exactly those of the bucket
/// with real-valued tokens (tokens are kept scaled by `period_ns`, so refill is an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u64,
    refill: u64,
    period_ns: u64,
}

/// State of a [`TokenBucket`] key: the tokens missing from a full bucket (scaled by the period)
/// at the latest time seen.
#[derive(Debug, Clone, Default)]
pub struct TokenBucketState {
    missing_scaled: u128,
    latest: u64,
}

impl TokenBucket {
    /// A bucket of `capacity` tokens refilled by `refill` tokens every `period_ns`.
    pub fn new(capacity: u64, refill: u64, period_ns: u64) -> Result<Self, ParamError> {
        check_nonzero(capacity, "capacity")?;
        check_nonzero(refill, "refill")?;
        check_nonzero(period_ns, "period")?;
        Ok(Self {
            capacity,
            refill,
            period_ns,
        })
    }
}

impl Algorithm for TokenBucket {
    type State = TokenBucketState;

    fn check(&self, state: &mut TokenBucketState, now_ns: u64, cost: u64) -> Decision {
        let period = self.period_ns as u128;
        let refill = self.refill as u128;
        if now_ns > state.latest {
            let gained = (now_ns - state.latest) as u128 * refill;
            state.missing_scaled = state.missing_scaled.saturating_sub(gained);
            state.latest = now_ns;
        }
        let full = self.capacity as u128 * period;
        let needed = state.missing_scaled.saturating_add(cost as u128 * period);
        let allowed = needed <= full;
        let retry_after_ns = if allowed {
            state.missing_scaled = needed;
            0
        } else if cost > self.capacity {
            NEVER
        } else {
            to_u64(ceil_div_u128(needed - full, refill))
        };
        Decision {
            allowed,
            remaining: to_u64((full - state.missing_scaled) / period),
            reset_after_ns: to_u64(ceil_div_u128(state.missing_scaled, refill)),
            retry_after_ns,
        }
    }

    fn horizon_ns(&self) -> u64 {
        to_u64(ceil_div_u128(
            self.capacity as u128 * self.period_ns as u128,
            self.refill as u128,
        ))
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// Leaky bucket as GCRA (generic cell rate algorithm): one "theoretical arrival time" `tat` per
/// key. Units drain at one per `emission_ns`; a request of `cost` at `t` is admitted if
/// `max(tat, t) + cost·emission − t ≤ capacity·emission`, and then `tat` becomes that sum.
///
/// **Guarantee (exact):** GCRA is the token bucket with `capacity` tokens refilled one per
/// `emission_ns`: for any `s ≤ t` the admitted cost in `[s, t]` is at most
/// `capacity + (t − s)/emission_ns`, and the decisions are exactly that bucket's. A steady
/// client is spaced `emission_ns` apart once its `capacity` burst is spent. One `u64` per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    emission_ns: u64,
    capacity: u64,
}

/// State of a [`Gcra`] key: its theoretical arrival time.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcraState {
    tat: u64,
}

impl Gcra {
    /// One unit every `emission_ns`, bursts of up to `capacity` units.
    pub fn new(emission_ns: u64, capacity: u64) -> Result<Self, ParamError> {
        check_nonzero(emission_ns, "emission interval")?;
        check_nonzero(capacity, "capacity")?;
        Ok(Self {
            emission_ns,
            capacity,
        })
    }

    /// `limit` units per `window_ns` (the emission interval rounded up, so the rate is never
    /// above `limit / window`), bursts of up to `capacity` units.
    pub fn per_window(limit: u64, window_ns: u64, capacity: u64) -> Result<Self, ParamError> {
        check_nonzero(limit, "limit")?;
        check_nonzero(window_ns, "window")?;
        Self::new(window_ns.div_ceil(limit), capacity)
    }

    /// The emission interval in nanoseconds.
    pub fn emission_ns(&self) -> u64 {
        self.emission_ns
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    fn check(&self, state: &mut GcraState, now_ns: u64, cost: u64) -> Decision {
        let emission = self.emission_ns as u128;
        let tolerance = self.capacity as u128 * emission;
        let start = state.tat.max(now_ns) as u128;
        let new_tat = start + cost as u128 * emission;
        let allowed = new_tat - now_ns as u128 <= tolerance;
        let retry_after_ns = if allowed {
            state.tat = to_u64(new_tat);
            0
        } else if cost > self.capacity {
            NEVER
        } else {
            to_u64(new_tat - now_ns as u128 - tolerance)
        };
        let backlog = (state.tat as u128).saturating_sub(now_ns as u128);
        Decision {
            allowed,
            remaining: to_u64((tolerance - backlog.min(tolerance)) / emission),
            reset_after_ns: to_u64(backlog),
            retry_after_ns,
        }
    }

    fn horizon_ns(&self) -> u64 {
        self.capacity.saturating_mul(self.emission_ns)
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// One of the five algorithms, chosen at run time (from a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyAlgorithm {
    /// [`FixedWindow`].
    FixedWindow(FixedWindow),
    /// [`SlidingWindowLog`].
    SlidingWindowLog(SlidingWindowLog),
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter(SlidingWindowCounter),
    /// [`TokenBucket`].
    TokenBucket(TokenBucket),
    /// [`Gcra`].
    Gcra(Gcra),
}

/// State of an [`AnyAlgorithm`] key; a state of another variant than the algorithm (a rule
/// whose algorithm changed) is replaced by a fresh one.
#[derive(Debug, Clone, Default)]
pub enum AnyState {
    /// A key not seen yet.
    #[default]
    Fresh,
    /// [`FixedWindowState`].
    FixedWindow(FixedWindowState),
    /// [`SlidingWindowLogState`].
    SlidingWindowLog(SlidingWindowLogState),
    /// [`SlidingWindowCounterState`].
    SlidingWindowCounter(SlidingWindowCounterState),
    /// [`TokenBucketState`].
    TokenBucket(TokenBucketState),
    /// [`GcraState`].
    Gcra(GcraState),
}

macro_rules! dispatch {
    ($self:ident, $state:ident, $now:ident, $cost:ident, $($variant:ident),*) => {
        match $self {
            $(AnyAlgorithm::$variant(alg) => {
                if !matches!($state, AnyState::$variant(_)) {
                    *$state = AnyState::$variant(Default::default());
                }
                match $state {
                    AnyState::$variant(s) => alg.check(s, $now, $cost),
                    _ => unreachable!("state variant set just above"),
                }
            })*
        }
    };
}

impl Algorithm for AnyAlgorithm {
    type State = AnyState;

    fn check(&self, state: &mut AnyState, now_ns: u64, cost: u64) -> Decision {
        dispatch!(
            self,
            state,
            now_ns,
            cost,
            FixedWindow,
            SlidingWindowLog,
            SlidingWindowCounter,
            TokenBucket,
            Gcra
        )
    }

    fn horizon_ns(&self) -> u64 {
        match self {
            AnyAlgorithm::FixedWindow(a) => a.horizon_ns(),
            AnyAlgorithm::SlidingWindowLog(a) => a.horizon_ns(),
            AnyAlgorithm::SlidingWindowCounter(a) => a.horizon_ns(),
            AnyAlgorithm::TokenBucket(a) => a.horizon_ns(),
            AnyAlgorithm::Gcra(a) => a.horizon_ns(),
        }
    }

    fn capacity(&self) -> u64 {
        match self {
            AnyAlgorithm::FixedWindow(a) => a.capacity(),
            AnyAlgorithm::SlidingWindowLog(a) => a.capacity(),
            AnyAlgorithm::SlidingWindowCounter(a) => a.capacity(),
            AnyAlgorithm::TokenBucket(a) => a.capacity(),
            AnyAlgorithm::Gcra(a) => a.capacity(),
        }
    }
}
