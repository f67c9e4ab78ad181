//! Per-tenant performance of the Weber real-time path, as this process saw it over about the
//! last minute: the figures `GET /api/v1/analytics/weber-segments` reports as
//! `performance_metrics`. Not exported as series (they would need a tenant label per tenant);
//! the exported series are `weber_calculations_total`, `weber_profile_update_seconds` and
//! `weber_events_ingested_total`.
//!
//! Counts go into fixed 60-second buckets per tenant; a snapshot covers the previous bucket (when
//! it directly precedes the current one) plus the current one, so its span is 60 to 120 seconds
//! once a tenant has been active that long, and the time since its first record before that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of one bucket.
pub const BUCKET: Duration = Duration::from_secs(60);

/// Most tenants tracked; past it, the tenant idle longest is forgotten.
const MAX_TENANTS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    calculations: u64,
    latency_sum_s: f64,
    latency_n: u64,
    events: u64,
    errors: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.calculations += o.calculations;
        self.latency_sum_s += o.latency_sum_s;
        self.latency_n += o.latency_n;
        self.events += o.events;
        self.errors += o.errors;
    }
}

#[derive(Debug)]
struct TenantWindow {
    first_seen: Instant,
    bucket_start: Instant,
    current: Counts,
    previous: Option<Counts>,
    last_touch: Instant,
}

impl TenantWindow {
    fn new(now: Instant) -> Self {
        TenantWindow {
            first_seen: now,
            bucket_start: now,
            current: Counts::default(),
            previous: None,
            last_touch: now,
        }
    }

    /// Moves to the bucket holding `now`.
    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.bucket_start);
        if age < BUCKET {
            return;
        }
        let buckets = age.as_secs() / BUCKET.as_secs();
        self.previous = (buckets == 1).then_some(self.current);
        self.current = Counts::default();
        self.bucket_start += BUCKET * u32::try_from(buckets).unwrap_or(u32::MAX);
    }
}

/// One tenant's recent performance. Rates are `None` when there is nothing to divide by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerformanceSnapshot {
    /// The span the figures cover, in seconds (0 when the tenant had no activity here).
    pub window_seconds: f64,
    /// Profile recalculations of the tenant's users per second over the span.
    pub calculations_per_second: f64,
    /// Mean time from an interaction's commit to its profile being readable, in milliseconds.
    pub average_latency_ms: Option<f64>,
    /// Interactions offered that were rejected or whose profile update failed, over all
    /// interactions offered, 0 to 1.
    pub error_rate: Option<f64>,
}

/// The per-tenant buckets. Cheap to record into: one mutex, a hash lookup.
#[derive(Debug, Default)]
pub struct WeberPerformance {
    tenants: Mutex<HashMap<String, TenantWindow>>,
}

impl WeberPerformance {
    fn with(&self, tenant_id: &str, now: Instant, f: impl FnOnce(&mut Counts)) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if !tenants.contains_key(tenant_id) && tenants.len() >= MAX_TENANTS {
            let idlest = tenants
                .iter()
                .min_by_key(|(_, w)| w.last_touch)
                .map(|(k, _)| k.clone());
            if let Some(k) = idlest {
                tenants.remove(&k);
            }
        }
        let w = tenants
            .entry(tenant_id.to_owned())
            .or_insert_with(|| TenantWindow::new(now));
        w.roll(now);
        w.last_touch = now;
        f(&mut w.current);
    }

    /// Counts one profile recalculation.
    pub fn calculation(&self, tenant_id: &str, now: Instant) {
        self.with(tenant_id, now, |c| c.calculations += 1);
    }

    /// Records one interaction's commit-to-readable time.
    pub fn latency(&self, tenant_id: &str, latency: Duration, now: Instant) {
        self.with(tenant_id, now, |c| {
            c.latency_sum_s += latency.as_secs_f64();
            c.latency_n += 1;
        });
    }

    /// Counts `events` interactions offered, `errors` of them in error (rejected at ingest).
    pub fn offered(&self, tenant_id: &str, events: u64, errors: u64, now: Instant) {
        self.with(tenant_id, now, |c| {
            c.events += events;
            c.errors += errors;
        });
    }

    /// Counts `n` accepted interactions whose profile update failed (the reconciliation pass
    /// applies them later).
    pub fn failed(&self, tenant_id: &str, n: u64, now: Instant) {
        self.with(tenant_id, now, |c| c.errors += n);
    }

    /// The tenant's figures over the last one to two minutes (see the module docs).
    pub fn snapshot(&self, tenant_id: &str, now: Instant) -> PerformanceSnapshot {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = tenants.get_mut(tenant_id) else {
            return PerformanceSnapshot {
                window_seconds: 0.0,
                calculations_per_second: 0.0,
                average_latency_ms: None,
                error_rate: None,
            };
        };
        w.roll(now);
        let mut total = w.current;
        let mut start = w.bucket_start;
        if let Some(p) = &w.previous {
            total.add(p);
            start = start.checked_sub(BUCKET).unwrap_or(start);
        }
        let start = start.max(w.first_seen);
        // At least a second, so a burst just recorded is not divided by almost nothing.
        let span = now.saturating_duration_since(start).as_secs_f64().max(1.0);
        PerformanceSnapshot {
            window_seconds: span,
            calculations_per_second: total.calculations as f64 / span,
            average_latency_ms: (total.latency_n > 0)
                .then(|| total.latency_sum_s * 1e3 / total.latency_n as f64),
            error_rate: (total.events > 0)
                .then(|| (total.errors as f64 / total.events as f64).min(1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_cover_the_current_and_the_previous_minute_only() {
        let p = WeberPerformance::default();
        let t0 = Instant::now();
        assert_eq!(p.snapshot("a", t0).window_seconds, 0.0);
        for _ in 0..30 {
            p.calculation("a", t0);
        }
        p.latency("a", Duration::from_millis(10), t0);
        p.latency("a", Duration::from_millis(30), t0);
        p.offered("a", 10, 1, t0);
        p.failed("a", 1, t0);
        p.calculation("b", t0);
        let s = p.snapshot("a", t0 + Duration::from_secs(10));
        assert_eq!(s.window_seconds, 10.0);
        assert_eq!(s.calculations_per_second, 3.0);
        assert!((s.average_latency_ms.unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(s.error_rate, Some(0.2));
        // A minute later the first bucket is the previous one: still counted, over 70 s.
        p.calculation("a", t0 + Duration::from_secs(70));
        let s = p.snapshot("a", t0 + Duration::from_secs(70));
        assert_eq!(s.window_seconds, 70.0);
        assert!((s.calculations_per_second - 31.0 / 70.0).abs() < 1e-12);
        // Two idle minutes later nothing is left.
        let s = p.snapshot("a", t0 + Duration::from_secs(200));
        assert_eq!(s.calculations_per_second, 0.0);
        assert_eq!((s.average_latency_ms, s.error_rate), (None, None));
    }

    #[test]
    fn rates_stay_finite_and_bounded() {
        let p = WeberPerformance::default();
        let t0 = Instant::now();
        p.failed("a", 5, t0);
        p.offered("a", 2, 0, t0);
        let s = p.snapshot("a", t0);
        assert_eq!(s.error_rate, Some(1.0));
        assert!(s.calculations_per_second.is_finite());
    }
}
