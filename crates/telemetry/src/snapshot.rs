//! Reading the HTTP figures back, for the console's overview: Prometheus counters and
//! histograms are write-only in `prometheus_client` (a histogram's buckets cannot be read), so
//! [`Metrics::observe_http`](crate::Metrics::observe_http) also adds each request to a small
//! tally per `tenant_id` label value, the same bounded set the series use.
//!
//! A tally holds totals since start (requests by status class, 304s, 429s, the latency
//! histogram with [`DURATION_BUCKETS`]) and a rolling window of the last
//! [`WINDOW_SECONDS`] seconds (one slot per second, reused as time goes round). The window is
//! approximate by design: a request recorded in the instant its slot is being reused for a new
//! second may be dropped; it is a view for people, the Prometheus series stay exact.
//!
//! ```
//! use std::time::Duration;
//! use telemetry::{HttpObservation, Metrics, MetricsConfig};
//! let metrics = Metrics::new(MetricsConfig::default());
//! for (status, ms) in [(200, 3), (200, 4), (500, 30), (429, 1)] {
//!     metrics.observe_http(&HttpObservation {
//!         method: "GET", endpoint: "/x", status, tenant_id: Some("tn_a"), service: "platform",
//!         duration: Duration::from_millis(ms), request_bytes: 0,
//!     });
//! }
//! let snap = metrics.http_snapshot(Some("tn_a")).unwrap();
//! assert_eq!((snap.requests, snap.server_errors, snap.rate_limited), (4, 1, 1));
//! assert_eq!(snap.last_window.requests, 4);
//! let p50 = snap.latency.quantile(0.5).unwrap();
//! assert!(p50 > 0.002 && p50 <= 0.005, "{p50}");
//! assert!(metrics.http_snapshot(Some("tn_b")).is_none(), "no figures for an unseen tenant");
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::DURATION_BUCKETS;

/// How many seconds the rolling window covers.
pub const WINDOW_SECONDS: u64 = 60;

const SLOTS: usize = WINDOW_SECONDS as usize;
const BUCKETS: usize = DURATION_BUCKETS.len() + 1;

#[derive(Debug, Default)]
struct Slot {
    /// Which second (since the metrics were created) the counts belong to.
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug)]
struct Tally {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    not_modified: AtomicU64,
    rate_limited: AtomicU64,
    /// Non-cumulative: `buckets[i]` counts durations in (bound[i-1], bound[i]]; the last is +Inf.
    buckets: [AtomicU64; BUCKETS],
    window: [Slot; SLOTS],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            window: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl Tally {
    fn record(&self, status: u16, seconds: f64, now_second: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let is_error = status >= 500;
        match status {
            304 => self.not_modified.fetch_add(1, Ordering::Relaxed),
            429 => self.rate_limited.fetch_add(1, Ordering::Relaxed),
            400..=499 => self.client_errors.fetch_add(1, Ordering::Relaxed),
            500.. => self.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        // 429s are client errors too; counted in both so the classes add up to the total.
        if status == 429 {
            self.client_errors.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);

        let slot = &self.window[(now_second % WINDOW_SECONDS) as usize];
        let held = slot.second.load(Ordering::Relaxed);
        if held != now_second
            && slot
                .second
                .compare_exchange(held, now_second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // This request opens the slot's new second: the old counts are a minute stale.
            slot.requests.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if is_error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add_to(&self, snap: &mut HttpSnapshot, now_second: u64) {
        snap.requests += self.requests.load(Ordering::Relaxed);
        snap.client_errors += self.client_errors.load(Ordering::Relaxed);
        snap.server_errors += self.server_errors.load(Ordering::Relaxed);
        snap.not_modified += self.not_modified.load(Ordering::Relaxed);
        snap.rate_limited += self.rate_limited.load(Ordering::Relaxed);
        for (sum, bucket) in snap.latency.counts.iter_mut().zip(&self.buckets) {
            *sum += bucket.load(Ordering::Relaxed);
        }
        for slot in &self.window {
            let second = slot.second.load(Ordering::Relaxed);
            // Slots still at 0 with no requests were never used; the current second counts.
            if second + WINDOW_SECONDS > now_second && second <= now_second {
                snap.last_window.requests += slot.requests.load(Ordering::Relaxed);
                snap.last_window.errors += slot.errors.load(Ordering::Relaxed);
            }
        }
    }
}

/// The tallies of every `tenant_id` label value.
#[derive(Debug, Default)]
pub(crate) struct HttpTallies {
    by_label: RwLock<HashMap<String, Arc<Tally>>>,
}

impl HttpTallies {
    pub(crate) fn record(&self, label: &str, status: u16, seconds: f64, now_second: u64) {
        let found = self
            .by_label
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(label)
            .cloned();
        let tally = match found {
            Some(tally) => tally,
            None => self
                .by_label
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(label.to_owned())
                .or_default()
                .clone(),
        };
        tally.record(status, seconds, now_second);
    }

    /// The sum over the labels `wanted` accepts; `None` when none has a tally.
    pub(crate) fn snapshot(
        &self,
        wanted: impl Fn(&str) -> bool,
        now_second: u64,
    ) -> Option<HttpSnapshot> {
        let by_label = self.by_label.read().unwrap_or_else(PoisonError::into_inner);
        let mut snap = HttpSnapshot::default();
        let mut any = false;
        for (label, tally) in by_label.iter() {
            if wanted(label) {
                tally.add_to(&mut snap, now_second);
                any = true;
            }
        }
        snap.last_window.seconds = (now_second + 1).min(WINDOW_SECONDS);
        any.then_some(snap)
    }
}

/// HTTP figures read back: totals since the process started, and the last window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpSnapshot {
    pub requests: u64,
    /// 4xx answers, 429s included.
    pub client_errors: u64,
    /// 5xx answers: the error rate counts these.
    pub server_errors: u64,
    /// 304 Not Modified: conditional requests answered from the client's cache.
    pub not_modified: u64,
    /// 429 Too Many Requests: refused by a rate limit.
    pub rate_limited: u64,
    pub latency: LatencyHistogram,
    pub last_window: WindowCounts,
}

/// Requests and 5xx errors over the last [`WindowCounts::seconds`] seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowCounts {
    pub seconds: u64,
    pub requests: u64,
    pub errors: u64,
}

/// Request durations by bucket: `counts[i]` is how many took at most `bounds[i]` seconds and
/// more than `bounds[i - 1]`; the last count is above the last bound.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            bounds: &DURATION_BUCKETS,
            counts: vec![0; BUCKETS],
        }
    }
}

impl LatencyHistogram {
    /// The `q` quantile (0 to 1) in seconds, estimated as Prometheus' `histogram_quantile`
    /// does: find the bucket holding the rank, then interpolate linearly inside it (the first
    /// bucket starts at 0). A rank in the open top bucket answers the last bound, a floor: the
    /// histogram cannot say more. `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            let upto = below + count;
            if (upto as f64) >= rank && *count > 0 {
                let Some(upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let within = (rank - below as f64) / *count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        self.bounds.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(counts: &[(usize, u64)]) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for (i, c) in counts {
            h.counts[*i] = *c;
        }
        h
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 requests in (1 ms, 2 ms]: the median sits half way.
        let h = histogram(&[(2, 10)]);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.0015).abs() < 1e-9, "{p50}");
        assert!((h.quantile(1.0).unwrap() - 0.002).abs() < 1e-12);
        // 90 fast, 10 in (50 ms, 100 ms]: p95 half way into the slow bucket.
        let h = histogram(&[(0, 90), (7, 10)]);
        assert!((h.quantile(0.95).unwrap() - 0.075).abs() < 1e-9);
        assert!(h.quantile(0.5).unwrap() <= 0.0005);
    }

    #[test]
    fn the_open_top_bucket_answers_its_floor_and_nothing_answers_none() {
        let h = histogram(&[(BUCKETS - 1, 3)]);
        assert_eq!(h.quantile(0.99), Some(10.0));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        assert_eq!(histogram(&[(1, 1)]).quantile(1.5), None);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_a_minute() {
        let tallies = HttpTallies::default();
        tallies.record("t", 200, 0.001, 5);
        tallies.record("t", 503, 0.001, 5);
        let snap = tallies.snapshot(|l| l == "t", 30).unwrap();
        assert_eq!((snap.last_window.requests, snap.last_window.errors), (2, 1));
        assert_eq!(snap.last_window.seconds, 31, "the process is 30 s old");
        // 65 s later slot 5 is reused: the old second no longer counts.
        tallies.record("t", 200, 0.001, 65);
        let snap = tallies.snapshot(|l| l == "t", 65).unwrap();
        assert_eq!((snap.last_window.requests, snap.last_window.errors), (1, 0));
        assert_eq!(
            (snap.requests, snap.server_errors),
            (3, 1),
            "totals keep everything"
        );
        // Nothing recorded for a minute: the window is empty.
        let snap = tallies.snapshot(|l| l == "t", 200).unwrap();
        assert_eq!(snap.last_window.requests, 0);
        assert!(tallies.snapshot(|l| l == "other", 200).is_none());
    }

    #[test]
    fn status_classes_are_counted() {
        let tallies = HttpTallies::default();
        for status in [200, 304, 404, 429, 500] {
            tallies.record("t", status, 0.01, 1);
        }
        let s = tallies.snapshot(|_| true, 1).unwrap();
        assert_eq!(
            (
                s.requests,
                s.not_modified,
                s.client_errors,
                s.rate_limited,
                s.server_errors
            ),
            (5, 1, 2, 1, 1)
        );
    }
}
