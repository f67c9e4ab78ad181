//! `SegmentAnalyticsService`: the per-tenant segment statistics behind
//! `/api/v1/analytics/weber-segments`, with the cheaper answer a `degrade` rate-limit action asks
//! for.
//!
//! Every full answer is computed from the store (one aggregate query over the tenant's
//! profiles) and kept as the tenant's last answer. A request the rate limiter marked
//! [`crate::rate_limit::Degraded`] gets that last answer instead, without a store query, when
//! there is one no older than [`MAX_DEGRADED_AGE`]; otherwise it is computed as usual (there is
//! nothing cheaper to give, and a first answer is never refused by this path).

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use store::{SegmentStats, Store, StoreError};

/// The oldest last answer a degraded request is given.
pub const MAX_DEGRADED_AGE: Duration = Duration::from_secs(600);
/// Tenants whose last answer is kept.
const MAX_TENANTS: u64 = 10_000;

/// One computed answer.
#[derive(Debug, Clone)]
pub struct SegmentAnswer {
    /// Per segment, as the store computed them.
    pub stats: Vec<SegmentStats>,
    /// Segment counts at the end of each of the last [`TREND_DAYS`] UTC days, oldest first
    /// (the last one is the current day so far).
    pub trends: Vec<store::SegmentCountsAt>,
    /// When it was computed, milliseconds since the Unix epoch.
    pub computed_at_ms: i64,
}

/// How an answer was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Computed now.
    Fresh,
    /// The tenant's last answer, served for a degraded request.
    Cached,
}

/// The tenants' last segment answers.
pub struct SegmentAnalyticsService {
    last: Cache<String, Arc<SegmentAnswer>>,
}

impl Default for SegmentAnalyticsService {
    fn default() -> Self {
        SegmentAnalyticsService {
            last: Cache::builder()
                .max_capacity(MAX_TENANTS)
                .time_to_live(MAX_DEGRADED_AGE)
                .build(),
        }
    }
}

impl SegmentAnalyticsService {
    /// The tenant's segment statistics: its last answer when `degraded` and one is kept,
    /// else computed from the store (and kept).
    pub async fn segment_stats(
        &self,
        store: &Store,
        tenant_id: &str,
        degraded: bool,
    ) -> Result<(Arc<SegmentAnswer>, Served), StoreError> {
        if degraded {
            if let Some(last) = self.last.get(tenant_id) {
                return Ok((last, Served::Cached));
            }
        }
        let stats = store.weber_segment_stats(tenant_id).await?;
        let now = now_ms();
        let trends = store
            .weber_segment_counts_at(tenant_id, &trend_instants(now))
            .await?;
        let answer = Arc::new(SegmentAnswer {
            stats,
            trends,
            computed_at_ms: now,
        });
        self.last.insert(tenant_id.to_owned(), answer.clone());
        Ok((answer, Served::Fresh))
    }
}

/// Days of segment shares in an analytics answer.
pub const TREND_DAYS: i64 = 30;

const DAY_MS: i64 = 86_400_000;

/// The ends of the last [`TREND_DAYS`] UTC days, oldest first: the midnights ending each of
/// the 29 days before today, then just after `now` for today so far.
pub(crate) fn trend_instants(now_ms: i64) -> Vec<i64> {
    let today = now_ms.div_euclid(DAY_MS) * DAY_MS;
    let mut at: Vec<i64> = (1..TREND_DAYS)
        .rev()
        .map(|back| today - (back - 1) * DAY_MS)
        .collect();
    at.push(now_ms.saturating_add(1));
    at
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
