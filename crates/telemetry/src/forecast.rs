//! The forecast engine's series:
//! - `forecast_requests_total{horizon,cache}`: forecasts answered, by horizon and by whether the
//!   answer came from the cache (`hit`), was computed (`miss`) or was computed because the
//!   client asked for a fresh one (`bypass`);
//! - `forecast_search_duration_seconds{horizon}` (histogram): time to compute one forecast
//!   (analog search and ensemble statistics), cache hits excluded.
//!
//! - `forecast_search_status_total{horizon,status}`: computed forecasts by seed 001's search
//!   status: `optimal` (< 10 ms), `suboptimal` (10 ms to < 100 ms), `slow` (≥ 100 ms).
//!
//! Labels are bounded by construction: four horizons, three cache outcomes, three statuses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Search-time buckets, with boundaries at seed 001's grade thresholds (1, 5, 20, 50, 100 ms).
pub const SEARCH_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    horizon: &'static str,
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    horizon: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HorizonLabels {
    horizon: &'static str,
}

/// The forecast series; reach them through [`crate::Metrics::forecast`].
#[derive(Debug)]
pub struct ForecastMetrics {
    requests: Family<RequestLabels, Counter>,
    /// Answers by cache outcome, all horizons together, readable back ([`ForecastMetrics::cache_outcomes`]).
    outcomes: [AtomicU64; 3],
    search: Family<HorizonLabels, Histogram, fn() -> Histogram>,
    statuses: Family<StatusLabels, Counter>,
}

impl ForecastMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ForecastMetrics {
        let m = ForecastMetrics {
            requests: Family::default(),
            outcomes: Default::default(),
            search: Family::new_with_constructor(|| Histogram::new(SEARCH_BUCKETS)),
            statuses: Family::default(),
        };
        registry.register(
            "forecast_requests",
            "Forecasts answered, by horizon and cache outcome",
            m.requests.clone(),
        );
        registry.register(
            "forecast_search_duration_seconds",
            "Time to compute one forecast (analog search and ensemble), cache hits excluded",
            m.search.clone(),
        );
        registry.register(
            "forecast_search_status",
            "Computed forecasts by search status: optimal (< 10 ms), suboptimal (< 100 ms), slow",
            m.statuses.clone(),
        );
        m
    }

    /// Counts one computation by its status: `optimal`, `suboptimal` or `slow`.
    pub fn search_status(&self, horizon: &'static str, status: &'static str) {
        self.statuses
            .get_or_create(&StatusLabels { horizon, status })
            .inc();
    }

    /// Counts one answered forecast; `cache` is `hit`, `miss` or `bypass`.
    pub fn answered(&self, horizon: &'static str, cache: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { horizon, cache })
            .inc();
        let i = match cache {
            "hit" => 0,
            "miss" => 1,
            _ => 2,
        };
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Forecasts answered since start, all horizons: `(hit, miss, bypass)`.
    ///
    /// ```
    /// let m = telemetry::Metrics::new(Default::default());
    /// m.forecast().answered("24h", "hit");
    /// m.forecast().answered("6h", "miss");
    /// assert_eq!(m.forecast().cache_outcomes(), (1, 1, 0));
    /// ```
    pub fn cache_outcomes(&self) -> (u64, u64, u64) {
        let [hit, miss, bypass] = &self.outcomes;
        (
            hit.load(Ordering::Relaxed),
            miss.load(Ordering::Relaxed),
            bypass.load(Ordering::Relaxed),
        )
    }

    /// Records one computation's time.
    pub fn searched(&self, horizon: &'static str, took: Duration) {
        self.search
            .get_or_create(&HorizonLabels { horizon })
            .observe(took.as_secs_f64());
    }
}
