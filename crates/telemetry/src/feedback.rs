//! The feedback engine's series (seed 004, "Monitoring"):
//! - `feedback_processed_total{type,region,status}`: items processed (`status` `processed`,
//!   `needs_review` or `error`) or rejected at ingest (`rejected`, type and region `other`). `type` is the item's kind and `region` its region, each from a
//!   closed set or `other`, so a client cannot grow the series without bound;
//! - `constitutional_violations_total{principle,severity}`: violated principles, the seven
//!   principles or `other`;
//! - `feedback_processing_duration_seconds{type,tier}`: the analysis time of one item, the
//!   seed's buckets (0.01, 0.05, 0.1, 0.5, 1, 5);
//! - `feedback_sentiment_score{type}`: sentiment mapped from VADER's `[-1, 1]` to the seed's
//!   `[0, 1]` buckets as `(compound + 1) / 2`;
//! - `processing_queue_depth{tier,priority}`: due jobs on each tier's queue;
//! - `active_users_current{tier}`: distinct users who sent feedback in the last 5 minutes (at
//!   most [`ACTIVE_USERS_CAP`] per tier are tracked);
//! - `feedback_processing_rate`: items processed per second over the last minute (the seed's
//!   HPA metric);
//! - `feedback_legacy_forward_total{outcome}`: dual-write's forwarding of items to a legacy
//!   endpoint, per item and request: `delivered` (2xx), `duplicate` (409: it had the item),
//!   `retry` (5xx, 408, 429, no answer: the job retries), `rejected` (other answers: the job
//!   fails) or `skipped_purged` (purged before it was sent);
//! - `api_request_latency_seconds{endpoint,method}`: request latency as a histogram. The seed
//!   asks for a Summary; prometheus-client has none, and a histogram is the better choice
//!   anyway: its buckets add up across replicas (`histogram_quantile` over
//!   `sum by (le)`), while a Summary's client-side quantiles cannot be aggregated.
//! - `privacy_releases_total{metric,outcome}`: differentially private analytics releases
//!   (queries and reports), `outcome` `answered` or `refused` (budget exhausted); `metric` is
//!   one of the analytics metrics or `report`, else `other`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Buckets;

/// The `metric` labels of `privacy_releases_total`; others count as `other`.
pub const PRIVACY_METRICS: [&str; 8] = [
    "count",
    "rating_mean",
    "rating_histogram",
    "sentiment_mean",
    "violation_count",
    "alignment_mean",
    "text_length_mean",
    "report",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrivacyReleaseLabels {
    metric: &'static str,
    outcome: &'static str,
}

/// Seed 004's processing-duration buckets, in seconds.
pub const FEEDBACK_DURATION_BUCKETS: [f64; 6] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Seed 004's sentiment buckets.
pub const SENTIMENT_BUCKETS: [f64; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// The kinds that are labels of their own; others count as `other`.
pub const FEEDBACK_KINDS: [&str; 8] = [
    "review",
    "rating",
    "bug",
    "feature_request",
    "complaint",
    "praise",
    "question",
    "survey",
];
/// The regions that are labels of their own; others count as `other`.
pub const FEEDBACK_REGIONS: [&str; 10] = [
    "us", "eu", "uk", "apac", "latam", "mea", "ca", "us-east", "us-west", "eu-west",
];
/// The principles that are labels of their own.
pub const PRINCIPLES: [&str; 7] = [
    "HELPFUL",
    "HARMLESS",
    "HONEST",
    "PRIVACY",
    "TRANSPARENT",
    "FAIR",
    "ALIGNED",
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
/// The outcomes of `feedback_legacy_forward_total`.
pub const LEGACY_FORWARD_OUTCOMES: [&str; 5] = [
    "delivered",
    "duplicate",
    "retry",
    "rejected",
    "skipped_purged",
];
const TIERS: [&str; 4] = ["realtime", "priority", "standard", "batch"];
/// Most distinct users `active_users_current` tracks per tier.
pub const ACTIVE_USERS_CAP: usize = 100_000;
/// A user is active for this long after their last item, in seconds.
const ACTIVE_WINDOW_S: i64 = 300;
/// The window of `feedback_processing_rate`, in seconds.
const RATE_WINDOW_S: usize = 60;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessedLabels {
    r#type: &'static str,
    region: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    principle: &'static str,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeTierLabels {
    r#type: &'static str,
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    tier: &'static str,
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    method: String,
}

/// What one analysis found, for the series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackOutcome {
    /// VADER compound in `[-1, 1]`.
    pub sentiment: Option<f64>,
    /// `(principle, severity)` of each violation.
    pub violations: Vec<(String, String)>,
    /// Whether the policy checks ran.
    pub policy_ran: bool,
    /// Whether the policy found nothing.
    pub passed: bool,
}

/// The feedback series; reach them through [`crate::Metrics::feedback`].
#[derive(Debug)]
pub struct FeedbackMetrics {
    processed: Family<ProcessedLabels, Counter>,
    violations: Family<ViolationLabels, Counter>,
    duration: Family<TypeTierLabels, Histogram, Buckets>,
    sentiment: Family<TypeLabel, Histogram, Buckets>,
    queue_depth: Family<DepthLabels, Gauge>,
    active_users: Family<TierLabel, Gauge>,
    rate: Gauge<f64, AtomicU64>,
    api_latency: Family<EndpointLabels, Histogram, Buckets>,
    privacy_releases: Family<PrivacyReleaseLabels, Counter>,
    legacy_forward: Family<OutcomeLabel, Counter>,
    /// Items processed per second of the last minute: (second, count) slots.
    rate_slots: Vec<(AtomicI64, AtomicU64)>,
    /// Last-seen second per tier and user hash, for `active_users_current`.
    seen: Mutex<ActiveUsers>,
}

impl FeedbackMetrics {
    pub(crate) fn register(registry: &mut Registry) -> FeedbackMetrics {
        let m = FeedbackMetrics {
            processed: Family::default(),
            violations: Family::default(),
            duration: Family::new_with_constructor(Buckets(&FEEDBACK_DURATION_BUCKETS)),
            sentiment: Family::new_with_constructor(Buckets(&SENTIMENT_BUCKETS)),
            queue_depth: Family::default(),
            active_users: Family::default(),
            rate: Gauge::default(),
            api_latency: Family::new_with_constructor(Buckets(&crate::DURATION_BUCKETS)),
            privacy_releases: Family::default(),
            legacy_forward: Family::default(),
            rate_slots: (0..RATE_WINDOW_S)
                .map(|_| (AtomicI64::new(-1), AtomicU64::new(0)))
                .collect(),
            seen: Mutex::new(ActiveUsers::default()),
        };
        registry.register(
            "feedback_processed",
            "Total feedback items processed",
            m.processed.clone(),
        );
        registry.register(
            "constitutional_violations",
            "Constitutional principle violations",
            m.violations.clone(),
        );
        registry.register(
            "feedback_processing_duration_seconds",
            "Time spent processing feedback",
            m.duration.clone(),
        );
        registry.register(
            "feedback_sentiment_score",
            "Distribution of sentiment scores ((VADER compound + 1) / 2)",
            m.sentiment.clone(),
        );
        registry.register(
            "processing_queue_depth",
            "Current queue depth",
            m.queue_depth.clone(),
        );
        registry.register(
            "active_users_current",
            "Users who sent feedback in the last 5 minutes",
            m.active_users.clone(),
        );
        registry.register(
            "feedback_processing_rate",
            "Feedback items processed per second over the last minute",
            m.rate.clone(),
        );
        registry.register(
            "api_request_latency_seconds",
            "API request latency (a histogram: prometheus-client has no Summary, and histograms aggregate across replicas)",
            m.api_latency.clone(),
        );
        registry.register(
            "privacy_releases",
            "Differentially private releases, by metric and outcome (answered or refused)",
            m.privacy_releases.clone(),
        );
        registry.register(
            "feedback_legacy_forward",
            "Feedback items forwarded to a legacy endpoint (dual-write), by outcome",
            m.legacy_forward.clone(),
        );
        m
    }

    /// Counts one differentially private release of `metric` (an analytics metric or
    /// `report`), `answered` or refused for want of budget.
    pub fn privacy_release(&self, metric: &str, answered: bool) {
        let metric = bounded(metric, &PRIVACY_METRICS);
        self.privacy_releases
            .get_or_create(&PrivacyReleaseLabels {
                metric,
                outcome: if answered { "answered" } else { "refused" },
            })
            .inc();
    }

    /// Counts one forwarding outcome (one of [`LEGACY_FORWARD_OUTCOMES`]; others count as
    /// `rejected`).
    pub fn legacy_forwarded(&self, outcome: &str) {
        let outcome = LEGACY_FORWARD_OUTCOMES
            .iter()
            .find(|o| **o == outcome)
            .copied()
            .unwrap_or("rejected");
        self.legacy_forward
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Records one processed item of `kind` from `region` on `tier` that took `seconds`.
    pub fn observe_processed(
        &self,
        kind: &str,
        region: Option<&str>,
        tier: &str,
        seconds: f64,
        outcome: &FeedbackOutcome,
    ) {
        let kind = bounded(kind, &FEEDBACK_KINDS);
        let region = region.map_or("other", |r| bounded(r, &FEEDBACK_REGIONS));
        let status = if outcome.policy_ran && !outcome.passed {
            "needs_review"
        } else {
            "processed"
        };
        self.processed
            .get_or_create(&ProcessedLabels {
                r#type: kind,
                region,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&TypeTierLabels {
                r#type: kind,
                tier: bounded(tier, &TIERS),
            })
            .observe(seconds);
        if let Some(s) = outcome.sentiment {
            self.sentiment
                .get_or_create(&TypeLabel { r#type: kind })
                .observe(((s + 1.0) / 2.0).clamp(0.0, 1.0));
        }
        for (principle, severity) in &outcome.violations {
            self.violations
                .get_or_create(&ViolationLabels {
                    principle: bounded_upper(principle, &PRINCIPLES),
                    severity: bounded(severity, &SEVERITIES),
                })
                .inc();
        }
        self.count_rate(now_s());
    }

    /// Records an item whose processing failed for good.
    pub fn observe_failed(&self, kind: &str, region: Option<&str>) {
        self.processed
            .get_or_create(&ProcessedLabels {
                r#type: bounded(kind, &FEEDBACK_KINDS),
                region: region.map_or("other", |r| bounded(r, &FEEDBACK_REGIONS)),
                status: "error",
            })
            .inc();
    }

    /// Counts items rejected at ingest (`status="rejected"`; their type and region are not
    /// trusted, so `other`).
    pub fn rejected(&self, rejected: u64) {
        if rejected > 0 {
            self.processed
                .get_or_create(&ProcessedLabels {
                    r#type: "other",
                    region: "other",
                    status: "rejected",
                })
                .inc_by(rejected);
        }
    }

    /// Sets the due jobs of a tier's queue.
    pub fn set_queue_depth(&self, tier: &str, priority: &'static str, depth: u64) {
        self.queue_depth
            .get_or_create(&DepthLabels {
                tier: bounded(tier, &TIERS),
                priority,
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Notes that `users` sent feedback on `tier` at `now_s` (Unix seconds) and refreshes
    /// `active_users_current`. Users are kept as 64-bit hashes, at most
    /// [`ACTIVE_USERS_CAP`] per tier (beyond it new users are not counted, so the gauge reads
    /// the cap: memory stays bounded whatever clients send); idle ones are forgotten after 5
    /// minutes, swept at most once a second.
    pub fn users_seen<'a>(&self, tier: &str, users: impl IntoIterator<Item = &'a str>, now_s: i64) {
        let tier = bounded(tier, &TIERS);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let ActiveUsers { tiers, swept_at_s } = &mut *seen;
        let tier_users = tiers.entry(tier).or_default();
        for user in users {
            let key = user_key(user);
            if tier_users.len() < ACTIVE_USERS_CAP || tier_users.contains_key(&key) {
                tier_users.insert(key, now_s);
            }
        }
        if *swept_at_s != now_s {
            *swept_at_s = now_s;
            for users in tiers.values_mut() {
                users.retain(|_, at| now_s - *at < ACTIVE_WINDOW_S);
            }
            for tier in TIERS {
                let n = tiers.get(tier).map_or(0, HashMap::len);
                self.active_users
                    .get_or_create(&TierLabel { tier })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        } else {
            let n = tier_users.len();
            self.active_users
                .get_or_create(&TierLabel { tier })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records one API request's latency.
    pub fn observe_api(&self, endpoint: &str, method: &str, seconds: f64) {
        self.api_latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
            })
            .observe(seconds);
    }

    fn count_rate(&self, now_s: i64) {
        let slot = &self.rate_slots[now_s.rem_euclid(RATE_WINDOW_S as i64) as usize];
        if slot.0.swap(now_s, Ordering::Relaxed) != now_s {
            slot.1.store(0, Ordering::Relaxed);
        }
        slot.1.fetch_add(1, Ordering::Relaxed);
        let window_start = now_s - RATE_WINDOW_S as i64;
        let total: u64 = self
            .rate_slots
            .iter()
            .filter(|(at, _)| at.load(Ordering::Relaxed) > window_start)
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .sum();
        self.rate.set(total as f64 / RATE_WINDOW_S as f64);
    }
}

/// Users seen lately per tier, and when idle ones were last swept.
#[derive(Debug, Default)]
struct ActiveUsers {
    tiers: HashMap<&'static str, HashMap<u64, i64>>,
    swept_at_s: i64,
}

/// A user id as a 64-bit hash: the gauge needs distinct users, not their ids.
fn user_key(user: &str) -> u64 {
    use std::hash::Hasher;
    // Fixed keys: the same user maps to the same slot for the process's life.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(user.as_bytes());
    h.finish()
}

fn bounded(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(value))
        .copied()
        .unwrap_or("other")
}

fn bounded_upper(value: &str, known: &[&'static str]) -> &'static str {
    bounded(value, known)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn privacy_releases_are_counted_by_metric_and_outcome() {
        let mut registry = Registry::default();
        let m = FeedbackMetrics::register(&mut registry);
        m.privacy_release("count", true);
        m.privacy_release("count", false);
        m.privacy_release("anything", true);
        let text = render(&registry);
        assert!(
            text.contains("privacy_releases_total{metric=\"count\",outcome=\"answered\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("privacy_releases_total{metric=\"count\",outcome=\"refused\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("privacy_releases_total{metric=\"other\",outcome=\"answered\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn labels_are_bounded_and_series_named_as_the_seed() {
        let mut registry = Registry::default();
        let m = FeedbackMetrics::register(&mut registry);
        m.observe_processed(
            "review",
            Some("mars"),
            "priority",
            0.03,
            &FeedbackOutcome {
                sentiment: Some(0.5),
                violations: vec![
                    ("PRIVACY".into(), "high".into()),
                    ("NEW".into(), "x".into()),
                ],
                policy_ran: true,
                passed: false,
            },
        );
        m.observe_failed("made-up", Some("eu"));
        m.set_queue_depth("standard", "normal", 12);
        m.users_seen("realtime", ["u1", "u2"], 1_000);
        m.users_seen("realtime", ["u1"], 1_100);
        m.users_seen("batch", ["u3"], 1_400);
        let text = render(&registry);
        for line in [
            r#"feedback_processed_total{type="review",region="other",status="needs_review"} 1"#,
            r#"feedback_processed_total{type="other",region="eu",status="error"} 1"#,
            r#"constitutional_violations_total{principle="PRIVACY",severity="high"} 1"#,
            r#"constitutional_violations_total{principle="other",severity="other"} 1"#,
            r#"feedback_processing_duration_seconds_bucket{le="0.05",type="review",tier="priority"} 1"#,
            r#"feedback_processing_duration_seconds_bucket{le="0.01",type="review",tier="priority"} 0"#,
            r#"feedback_sentiment_score_bucket{le="0.8",type="review"} 1"#,
            r#"feedback_sentiment_score_bucket{le="0.6",type="review"} 0"#,
            r#"processing_queue_depth{tier="standard",priority="normal"} 12"#,
            // At 1,400 s the realtime users (last seen at 1,000 and 1,100) are over 5 minutes idle.
            r#"active_users_current{tier="realtime"} 0"#,
            r#"active_users_current{tier="batch"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn active_users_are_distinct_per_tier_and_capped() {
        let mut registry = Registry::default();
        let m = FeedbackMetrics::register(&mut registry);
        let users: Vec<String> = (0..ACTIVE_USERS_CAP + 50)
            .map(|i| format!("u{i}"))
            .collect();
        m.users_seen("standard", users.iter().map(String::as_str), 2_000);
        m.users_seen("standard", ["u1", "u1", "u2"], 2_000);
        m.users_seen("priority", ["u1", "u1", "u2"], 2_001);
        let text = render(&registry);
        for line in [
            format!(r#"active_users_current{{tier="standard"}} {ACTIVE_USERS_CAP}"#),
            r#"active_users_current{tier="priority"} 2"#.to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        // Five minutes after their last item, the standard tier's users are forgotten.
        m.users_seen("priority", ["u3"], 2_300);
        let text = render(&registry);
        assert!(
            text.contains(r#"active_users_current{tier="standard"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"active_users_current{tier="priority"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn the_rate_is_items_per_second_over_a_minute() {
        let mut registry = Registry::default();
        let m = FeedbackMetrics::register(&mut registry);
        for s in 0..30 {
            for _ in 0..4 {
                m.count_rate(10_000 + s);
            }
        }
        // 120 items within the last minute.
        assert_eq!(m.rate.get(), 2.0);
        // A minute later the old slots fall out of the window.
        m.count_rate(10_100);
        assert!((m.rate.get() - 1.0 / 60.0).abs() < 1e-9, "{}", m.rate.get());
    }
}
