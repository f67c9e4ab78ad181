//! Seed 001's forecast diagnostics as pure functions: the status of one search, the analysis of
//! one slow request (and the bounded record of the last ones), and the advice drawn from the
//! recent searches of a horizon. [`crate::forecasts::ForecastService`] feeds them measured times;
//! nothing here reads a clock.
//!
//! Boundaries (seed 001 compares with `>`; where the issue's design moves an edge it says so):
//! - search status: optimal below 10 ms, suboptimal from 10 ms to below 100 ms, slow from
//!   100 ms. The seed calls exactly 10 ms optimal and exactly 100 ms suboptimal (`> 0.01`,
//!   `> 0.1`); the design counts each threshold into the worse status, so a search that takes
//!   the threshold is never reported as inside it.
//! - slow request: recorded from 1 s (the seed's `threshold_ms = 1000` is where a request
//!   becomes slow), severity low from 1 s, medium above 2 s, high above 5 s, critical above
//!   10 s (the seed's `>`: exactly 2 s is still low, exactly 5 s medium, exactly 10 s high).
//! - causes and recommendations follow the seed: above 5 s (high and critical) the resource
//!   list, above 2 s (medium) the search and cache list, else (low) the caching list.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

/// How one forecast search went, by its time (seed 001's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchStatus {
    /// Below 10 ms.
    Optimal,
    /// From 10 ms to below 100 ms.
    Suboptimal,
    /// 100 ms or more.
    Slow,
}

impl SearchStatus {
    /// Every status, best first (the order of counters and metric labels).
    pub const ALL: [SearchStatus; 3] = [
        SearchStatus::Optimal,
        SearchStatus::Suboptimal,
        SearchStatus::Slow,
    ];

    /// `optimal`, `suboptimal` or `slow` (a bounded metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchStatus::Optimal => "optimal",
            SearchStatus::Suboptimal => "suboptimal",
            SearchStatus::Slow => "slow",
        }
    }

    /// Position in [`SearchStatus::ALL`].
    pub fn index(self) -> usize {
        match self {
            SearchStatus::Optimal => 0,
            SearchStatus::Suboptimal => 1,
            SearchStatus::Slow => 2,
        }
    }
}

/// Searches from this long are suboptimal.
pub const SUBOPTIMAL_FROM: Duration = Duration::from_millis(10);
/// Searches from this long are slow.
pub const SLOW_FROM: Duration = Duration::from_millis(100);

/// The status of a search that took `took`.
///
/// ```
/// use std::time::Duration;
/// use server::forecast_diagnostics::{search_status, SearchStatus};
/// assert_eq!(search_status(Duration::from_micros(9_999)), SearchStatus::Optimal);
/// assert_eq!(search_status(Duration::from_millis(10)), SearchStatus::Suboptimal);
/// assert_eq!(search_status(Duration::from_millis(100)), SearchStatus::Slow);
/// ```
pub fn search_status(took: Duration) -> SearchStatus {
    if took >= SLOW_FROM {
        SearchStatus::Slow
    } else if took >= SUBOPTIMAL_FROM {
        SearchStatus::Suboptimal
    } else {
        SearchStatus::Optimal
    }
}

/// The seed's "consistently slow" rule: more than this many recent searches…
pub const CONSISTENTLY_SLOW_MIN_SEARCHES: usize = 10;
/// …averaging more than this many milliseconds.
pub const CONSISTENTLY_SLOW_MEAN_MS: f64 = 50.0;
/// "Recent" for that rule: the seed's last 5 minutes.
pub const RECENT: Duration = Duration::from_secs(300);

/// Advice about a horizon's recent searches: seed 001 warns when more than 10 searches in the
/// last 5 minutes average more than 50 ms.
pub fn search_advice(recent_searches: usize, recent_mean_ms: Option<f64>) -> Vec<String> {
    match recent_mean_ms {
        Some(mean)
            if recent_searches > CONSISTENTLY_SLOW_MIN_SEARCHES
                && mean > CONSISTENTLY_SLOW_MEAN_MS =>
        {
            vec![format!(
                "Consistently slow searches: {mean:.1}ms average; consider index optimization \
                 or hardware upgrade"
            )]
        }
        _ => Vec::new(),
    }
}

/// Below this many vectors an IVF index is advised against (seed 001).
pub const SMALL_INDEX_VECTORS: usize = 10_000;
/// Above this many vectors an exact (flat) index is advised against (seed 001).
pub const LARGE_INDEX_VECTORS: usize = 50_000;
/// An nprobe above this is called high (seed 001).
pub const HIGH_NPROBE: usize = 64;

/// Seed 001's advice about one index: an inverted-file index (`ivf`) on fewer than 10,000
/// vectors, an exact one on more than 50,000, an nprobe above 64.
pub fn index_advice(ivf: bool, vectors: usize, nprobe: Option<usize>) -> Vec<&'static str> {
    let mut advice = Vec::new();
    if ivf && vectors < SMALL_INDEX_VECTORS {
        advice.push("Small dataset - consider a flat (exact) index for better performance");
    } else if !ivf && vectors > LARGE_INDEX_VECTORS {
        advice.push("Large dataset - consider IVF-PQ for memory efficiency");
    }
    if nprobe.is_some_and(|n| n > HIGH_NPROBE) {
        advice.push("High nprobe value may impact performance");
    }
    advice
}

/// How slow a slow request was (seed 001's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// 1 s to 2 s inclusive.
    Low,
    /// Above 2 s to 5 s inclusive.
    Medium,
    /// Above 5 s to 10 s inclusive.
    High,
    /// Above 10 s.
    Critical,
}

impl Severity {
    /// Every severity, worst first (the seed's summary order).
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];
}

/// A request is recorded as slow from this long (the seed's `threshold_ms`).
pub const SLOW_REQUEST_FROM: Duration = Duration::from_secs(1);
const MEDIUM_ABOVE: Duration = Duration::from_secs(2);
const HIGH_ABOVE: Duration = Duration::from_secs(5);
const CRITICAL_ABOVE: Duration = Duration::from_secs(10);

/// The severity of a request that took `took`, or `None` below 1 s.
pub fn severity(took: Duration) -> Option<Severity> {
    Some(if took > CRITICAL_ABOVE {
        Severity::Critical
    } else if took > HIGH_ABOVE {
        Severity::High
    } else if took > MEDIUM_ABOVE {
        Severity::Medium
    } else if took >= SLOW_REQUEST_FROM {
        Severity::Low
    } else {
        return None;
    })
}

/// One slow request and what may have caused it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlowRequest {
    /// The route's path template (`/api/v1/forecast`).
    pub route: String,
    /// When it finished (RFC 3339).
    pub at: String,
    /// How long it took, in milliseconds.
    pub response_time_ms: f64,
    /// low, medium, high or critical.
    pub severity: Severity,
    /// Seed 001's likely causes for a request this slow.
    pub potential_causes: Vec<&'static str>,
    /// Seed 001's recommendations for a request this slow.
    pub recommendations: Vec<&'static str>,
}

/// Analyses one request: `None` when it was not slow (below 1 s). `at` is when it finished
/// (RFC 3339), passed in because this module reads no clock.
pub fn analyse_request(route: &str, took: Duration, at: String) -> Option<SlowRequest> {
    let severity = severity(took)?;
    let (potential_causes, recommendations): (&[&'static str], &[&'static str]) =
        if took > HIGH_ABOVE {
            (
                &[
                    "Database connection timeout",
                    "External API timeout",
                    "Memory pressure causing GC pauses",
                    "CPU starvation",
                ],
                &[
                    "Check database connection pool",
                    "Review external API timeouts",
                    "Monitor memory usage and GC frequency",
                    "Scale up CPU resources",
                ],
            )
        } else if took > MEDIUM_ABOVE {
            (
                &[
                    "Inefficient FAISS search",
                    "Cache miss on large dataset",
                    "Network latency",
                    "Container resource limits",
                ],
                &[
                    "Optimize FAISS index parameters",
                    "Pre-warm frequently accessed cache entries",
                    "Check network configuration",
                    "Review container resource allocation",
                ],
            )
        } else {
            (
                &[
                    "Suboptimal caching strategy",
                    "Inefficient query patterns",
                    "High concurrent load",
                ],
                &[
                    "Implement or tune response caching",
                    "Optimize query parameters",
                    "Consider load balancing",
                ],
            )
        };
    Some(SlowRequest {
        route: route.to_owned(),
        at,
        response_time_ms: took.as_secs_f64() * 1000.0,
        severity,
        potential_causes: potential_causes.to_vec(),
        recommendations: recommendations.to_vec(),
    })
}

/// Slow requests kept (the seed's 100).
pub const SLOW_REQUESTS_KEPT: usize = 100;

/// The most recent slow requests, oldest first, at most [`SLOW_REQUESTS_KEPT`].
#[derive(Debug, Default)]
pub struct SlowRequestLog {
    recent: VecDeque<SlowRequest>,
    total: u64,
}

impl SlowRequestLog {
    /// Records one slow request, forgetting the oldest beyond the bound.
    pub fn push(&mut self, request: SlowRequest) {
        if self.recent.len() == SLOW_REQUESTS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(request);
        self.total += 1;
    }

    /// Seed 001's performance insights over the kept requests.
    pub fn summary(&self) -> SlowRequestSummary {
        let mut severity_distribution = BTreeMap::new();
        for s in Severity::ALL {
            severity_distribution.insert(s, 0u64);
        }
        let mut per_route: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &self.recent {
            *severity_distribution.entry(r.severity).or_default() += 1;
            *per_route.entry(r.route.as_str()).or_default() += 1;
        }
        let mut routes: Vec<RouteCount> = per_route
            .into_iter()
            .map(|(route, count)| RouteCount {
                route: route.to_owned(),
                count,
            })
            .collect();
        // Most first; equal counts by route, so the order does not depend on arrival.
        routes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.route.cmp(&b.route)));
        routes.truncate(5);
        let mut recommendations = Vec::new();
        if self.recent.len() > 10 {
            recommendations
                .push("High number of slow requests detected. Consider scaling resources.");
        }
        let critical_recently = self
            .recent
            .iter()
            .rev()
            .take(20)
            .filter(|r| r.severity == Severity::Critical)
            .count();
        if critical_recently > 5 {
            recommendations
                .push("Multiple critical performance issues. Immediate investigation required.");
        }
        SlowRequestSummary {
            total_slow_requests: self.recent.len(),
            recorded_since_start: self.total,
            severity_distribution: SeverityCounts {
                critical: severity_distribution[&Severity::Critical],
                high: severity_distribution[&Severity::High],
                medium: severity_distribution[&Severity::Medium],
                low: severity_distribution[&Severity::Low],
            },
            most_problematic_routes: routes,
            recent_issues: self.recent.iter().rev().take(5).rev().cloned().collect(),
            recommendations,
        }
    }
}

/// Slow requests per severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SeverityCounts {
    /// Above 10 s.
    pub critical: u64,
    /// Above 5 s.
    pub high: u64,
    /// Above 2 s.
    pub medium: u64,
    /// 1 s to 2 s.
    pub low: u64,
}

/// How many of the kept slow requests one route had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RouteCount {
    /// The route's path template.
    pub route: String,
    /// Slow requests among the kept ones.
    pub count: u64,
}

/// Seed 001's insights over the last slow requests.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlowRequestSummary {
    /// Slow requests kept (the last 100 at most).
    pub total_slow_requests: usize,
    /// Slow requests since start.
    pub recorded_since_start: u64,
    /// Kept slow requests per severity.
    pub severity_distribution: SeverityCounts,
    /// The routes with the most kept slow requests, most first (at most 5).
    pub most_problematic_routes: Vec<RouteCount>,
    /// The last 5, oldest first.
    pub recent_issues: Vec<SlowRequest>,
    /// Seed 001's: more than 10 kept → scale; more than 5 critical among the last 20 →
    /// investigate.
    pub recommendations: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const NS: fn(u64) -> Duration = Duration::from_nanos;

    #[test]
    fn search_status_boundaries_count_into_the_worse_status() {
        assert_eq!(search_status(Duration::ZERO), SearchStatus::Optimal);
        assert_eq!(search_status(MS(10) - NS(1)), SearchStatus::Optimal);
        assert_eq!(search_status(MS(10)), SearchStatus::Suboptimal);
        assert_eq!(search_status(MS(100) - NS(1)), SearchStatus::Suboptimal);
        assert_eq!(search_status(MS(100)), SearchStatus::Slow);
        assert_eq!(search_status(Duration::from_secs(60)), SearchStatus::Slow);
        let labels: Vec<&str> = SearchStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(labels, ["optimal", "suboptimal", "slow"]);
        for (i, s) in SearchStatus::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn severity_boundaries_follow_the_seed() {
        assert_eq!(severity(MS(1000) - NS(1)), None);
        assert_eq!(severity(MS(1000)), Some(Severity::Low));
        assert_eq!(severity(MS(2000)), Some(Severity::Low));
        assert_eq!(severity(MS(2000) + NS(1)), Some(Severity::Medium));
        assert_eq!(severity(MS(5000)), Some(Severity::Medium));
        assert_eq!(severity(MS(5000) + NS(1)), Some(Severity::High));
        assert_eq!(severity(MS(10_000)), Some(Severity::High));
        assert_eq!(severity(MS(10_000) + NS(1)), Some(Severity::Critical));
    }

    #[test]
    fn causes_follow_the_time_not_only_the_severity() {
        let at = || "2026-01-01T00:00:00Z".to_owned();
        assert_eq!(analyse_request("/forecast", MS(999), at()), None);
        let low = analyse_request("/forecast", MS(1500), at()).expect("slow");
        assert_eq!(low.severity, Severity::Low);
        assert_eq!(low.potential_causes[0], "Suboptimal caching strategy");
        assert_eq!(low.recommendations.len(), 3);
        assert_eq!(low.response_time_ms, 1500.0);
        let medium = analyse_request("/forecast", MS(5000), at()).expect("slow");
        assert_eq!(medium.potential_causes[0], "Inefficient FAISS search");
        // High and critical share the seed's "above 5 s" causes.
        for took in [MS(5001), MS(20_000)] {
            let r = analyse_request("/api/v1/forecast", took, at()).expect("slow");
            assert_eq!(
                r.potential_causes[0], "Database connection timeout",
                "{took:?}"
            );
            assert_eq!(r.recommendations[3], "Scale up CPU resources");
        }
    }

    fn slow(route: &str, ms: u64) -> SlowRequest {
        analyse_request(route, MS(ms), "2026-01-01T00:00:00Z".to_owned()).expect("slow")
    }

    #[test]
    fn the_log_keeps_the_last_hundred_and_summarises_them() {
        let mut log = SlowRequestLog::default();
        let empty = log.summary();
        assert_eq!(empty.total_slow_requests, 0);
        assert!(empty.recommendations.is_empty());
        for i in 0..105u64 {
            let route = if i % 3 == 0 { "/a" } else { "/b" };
            // The first five are critical and fall out of the log.
            log.push(slow(route, if i < 5 { 11_000 } else { 1000 + i }));
        }
        let s = log.summary();
        assert_eq!((s.total_slow_requests, s.recorded_since_start), (100, 105));
        assert_eq!(s.severity_distribution.critical, 0);
        assert_eq!(s.severity_distribution.low, 100);
        assert_eq!(s.most_problematic_routes[0].route, "/b");
        assert_eq!(
            s.most_problematic_routes
                .iter()
                .map(|r| r.count)
                .sum::<u64>(),
            100
        );
        let recent: Vec<f64> = s.recent_issues.iter().map(|r| r.response_time_ms).collect();
        assert_eq!(recent, [1100.0, 1101.0, 1102.0, 1103.0, 1104.0]);
        assert_eq!(
            s.recommendations,
            ["High number of slow requests detected. Consider scaling resources."]
        );
    }

    #[test]
    fn many_recent_criticals_ask_for_investigation() {
        let mut log = SlowRequestLog::default();
        for _ in 0..6 {
            log.push(slow("/forecast", 10_001));
        }
        let s = log.summary();
        assert_eq!(s.severity_distribution.critical, 6);
        assert_eq!(
            s.recommendations,
            ["Multiple critical performance issues. Immediate investigation required."]
        );
        // Five are not "more than 5".
        let mut five = SlowRequestLog::default();
        for _ in 0..5 {
            five.push(slow("/forecast", 10_001));
        }
        assert!(five.summary().recommendations.is_empty());
    }

    #[test]
    fn index_advice_follows_the_seed_thresholds() {
        assert!(index_advice(true, 10_000, Some(8)).is_empty());
        assert_eq!(index_advice(true, 9_999, Some(8)).len(), 1);
        assert!(index_advice(false, 50_000, None).is_empty());
        assert_eq!(
            index_advice(false, 50_001, None),
            ["Large dataset - consider IVF-PQ for memory efficiency"]
        );
        assert!(index_advice(true, 100_000, Some(64)).is_empty());
        assert_eq!(
            index_advice(true, 100_000, Some(65)),
            ["High nprobe value may impact performance"]
        );
    }

    #[test]
    fn consistently_slow_needs_more_than_ten_searches_above_fifty_ms() {
        assert!(search_advice(10, Some(80.0)).is_empty());
        assert!(search_advice(11, Some(50.0)).is_empty());
        assert!(search_advice(11, None).is_empty());
        let advice = search_advice(11, Some(50.5));
        assert_eq!(advice.len(), 1);
        assert!(advice[0].contains("50.5ms average"), "{advice:?}");
    }
}
