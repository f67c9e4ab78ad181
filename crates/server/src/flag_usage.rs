//! Flag usage analytics and the stale-flag report: the use cases the API routes, the console
//! and the CLI share (see `docs/flags.md`, "Usage analytics and stale flags").
//!
//! - Usage: evaluations per flag, variant and hour or day (counted by
//!   [`crate::evaluation_counts`]), beside the users first exposed (assigned) per variant in the
//!   same buckets, from `flag_exposures`.
//! - Stale flags: the environment's flags that were not evaluated for N days, serve one variant
//!   to everyone, have expired, or are completed / archived but still defined
//!   ([`flags::stale_reasons`]).
//!
//! Reads first store what the server has counted so far, so a read sees every evaluation
//! answered before it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use store::{FlagRecord, Store, StoreError, UsageRange, DAY_MS, HOUR_MS};
use utoipa::ToSchema;

use crate::evaluation_counts::EvaluationCounter;
use crate::exposures::ExposureRecorder;

/// The longest range of an hourly usage read: a week of 168 buckets.
pub const MAX_HOURLY_RANGE_MS: i64 = 7 * DAY_MS;
/// The longest range of a daily usage read: 366 days.
pub const MAX_DAILY_RANGE_MS: i64 = 366 * DAY_MS;
/// The stale-flag window when none is given, in days.
pub const DEFAULT_STALE_DAYS: u32 = 30;
/// The longest stale-flag window, in days.
pub const MAX_STALE_DAYS: u32 = 3_650;

/// Bucket width of a usage read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
}

impl Granularity {
    fn width_ms(self) -> i64 {
        match self {
            Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

/// A usage read, validated.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// The environment.
    pub environment: String,
    /// First bucket's start (epoch milliseconds, a bucket boundary).
    pub from_ms: i64,
    /// End of the last bucket, excluded (epoch milliseconds, a bucket boundary).
    pub to_ms: i64,
    /// Bucket width.
    pub granularity: Granularity,
    /// Only this flag, when given.
    pub flag_key: Option<String>,
}

/// Why a usage read was refused: the parameter at fault, and whether the parameters are each
/// well formed but conflict (`from` after `to`, a range too long).
#[derive(Debug, Clone)]
pub struct QueryError {
    /// The query parameter at fault.
    pub parameter: &'static str,
    /// What is wrong, for the problem's `detail`.
    pub reason: String,
    /// Well-formed parameters that break a rule together (422), rather than a bad value (400).
    pub conflicting: bool,
}

impl UsageQuery {
    /// Validates a read's parameters: `from` / `to` RFC 3339 instants (default: the last 24
    /// hours, or the last 30 days by day), `granularity` `hour` (default) or `day`. The range
    /// is widened to whole buckets; at most [`MAX_HOURLY_RANGE_MS`] by hour and
    /// [`MAX_DAILY_RANGE_MS`] by day.
    pub fn parse(
        environment: &str,
        from: Option<&str>,
        to: Option<&str>,
        granularity: Option<&str>,
        flag_key: Option<&str>,
        now_ms: i64,
    ) -> Result<UsageQuery, QueryError> {
        let bad = |parameter: &'static str, reason: String| QueryError {
            parameter,
            reason,
            conflicting: false,
        };
        let granularity = match granularity.unwrap_or("hour") {
            "hour" => Granularity::Hour,
            "day" => Granularity::Day,
            other => {
                return Err(bad(
                    "granularity",
                    format!(
                        "granularity must be `hour` or `day` (got '{}')",
                        crate::problem::excerpt(other, 32)
                    ),
                ))
            }
        };
        let instant = |parameter: &'static str, value: Option<&str>| {
            value
                .map(|v| {
                    flags::parse_instant_ms(v).ok_or_else(|| {
                        bad(
                            parameter,
                            format!(
                                "`{parameter}` must be an RFC 3339 instant such as \
                                 2026-01-31T00:00:00Z (got '{}')",
                                crate::problem::excerpt(v, 64)
                            ),
                        )
                    })
                })
                .transpose()
        };
        let (default_span, max_span) = match granularity {
            Granularity::Hour => (DAY_MS, MAX_HOURLY_RANGE_MS),
            Granularity::Day => (30 * DAY_MS, MAX_DAILY_RANGE_MS),
        };
        let to_ms = instant("to", to)?.unwrap_or(now_ms);
        let from_ms = instant("from", from)?.unwrap_or(to_ms.saturating_sub(default_span));
        if from_ms > to_ms {
            return Err(QueryError {
                parameter: "from",
                reason: "`from` is after `to`".to_owned(),
                conflicting: true,
            });
        }
        let width = granularity.width_ms();
        let from_ms = from_ms - from_ms.rem_euclid(width);
        // `to` is excluded; an instant inside a bucket includes that bucket.
        let to_ms = match to_ms.rem_euclid(width) {
            0 if to_ms > from_ms => to_ms,
            rest => to_ms.saturating_add(width - rest),
        };
        if to_ms - from_ms > max_span {
            return Err(QueryError {
                parameter: "from",
                reason: format!(
                    "the range is longer than {} days by {}",
                    max_span / DAY_MS,
                    granularity.name()
                ),
                conflicting: true,
            });
        }
        Ok(UsageQuery {
            environment: environment.to_owned(),
            from_ms,
            to_ms,
            granularity,
            flag_key: flag_key.map(str::to_owned),
        })
    }
}

/// Evaluations and assignments of flags over time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    environment: String,
    /// `hour` or `day` (UTC).
    granularity: &'static str,
    /// Start of the first bucket (RFC 3339).
    from: String,
    /// End of the last bucket, excluded (RFC 3339).
    to: String,
    /// Sorted by key: every flag defined in the environment (or the one asked for), and any
    /// other flag with counts in the range (since deleted).
    flags: Vec<FlagUsage>,
}

impl UsageReport {
    /// The flags, sorted by key.
    pub fn flags(&self) -> &[FlagUsage] {
        &self.flags
    }
}

/// One flag's usage in the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagUsage {
    key: String,
    /// Evaluations counted in the range (every OFREP answer, any reason).
    evaluations: u64,
    /// Users first exposed (assigned) in the range.
    assigned_users: u64,
    /// The last evaluation counted, at any time (RFC 3339); `null` when never evaluated.
    #[schema(value_type = Option<String>)]
    last_evaluated_at: Option<String>,
    /// Per bucket and variant with any evaluation or assignment, in time then variant order.
    series: Vec<UsagePoint>,
}

impl FlagUsage {
    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Evaluations in the range.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Users first exposed in the range.
    pub fn assigned_users(&self) -> u64 {
        self.assigned_users
    }

    /// The last evaluation (RFC 3339), if any.
    pub fn last_evaluated_at(&self) -> Option<&str> {
        self.last_evaluated_at.as_deref()
    }

    /// The buckets with data.
    pub fn series(&self) -> &[UsagePoint] {
        &self.series
    }
}

/// One bucket of one variant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsagePoint {
    /// Start of the bucket (RFC 3339).
    start: String,
    /// Start of the bucket (epoch milliseconds), for charts.
    #[serde(skip)]
    start_ms: i64,
    /// The variant; `null` for answers without one (evaluation errors).
    #[schema(value_type = Option<String>)]
    variant: Option<String>,
    /// Evaluations that served it.
    evaluations: u64,
    /// Users first exposed to (assigned) it.
    assigned_users: u64,
}

impl UsagePoint {
    /// Start of the bucket (epoch milliseconds).
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// The variant, `None` for answers without one.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// Evaluations.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Users first exposed.
    pub fn assigned_users(&self) -> u64 {
        self.assigned_users
    }
}

/// What a serving process holds in memory and has not stored yet.
#[derive(Clone, Copy)]
pub struct Pending<'a> {
    /// Evaluations counted.
    pub counts: &'a EvaluationCounter,
    /// Exposures queued.
    pub exposures: &'a ExposureRecorder,
}

impl<'a> Pending<'a> {
    /// The server's counter and exposure recorder.
    pub fn of(state: &'a crate::state::AppState) -> Pending<'a> {
        Pending {
            counts: state.evaluation_counts(),
            exposures: state.exposures(),
        }
    }
}

/// Stores what is pending, so the read after it sees every evaluation answered so far.
async fn settle(store: &Store, pending: Option<Pending<'_>>) {
    if let Some(pending) = pending {
        pending.counts.flush(store).await;
        pending.exposures.flush().await;
    }
}

/// Usage of the environment's flags (or of `query.flag_key`) in the range.
pub async fn usage(
    store: &Store,
    pending: Option<Pending<'_>>,
    tenant_id: &str,
    query: &UsageQuery,
) -> Result<UsageReport, StoreError> {
    settle(store, pending).await;
    let range = UsageRange {
        environment: &query.environment,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        bucket_ms: query.granularity.width_ms(),
        flag_key: query.flag_key.as_deref(),
    };
    let evaluations = store.flag_evaluations(tenant_id, &range).await?;
    let assignments = store.flag_assignments(tenant_id, &range).await?;
    let last = store
        .flags_last_evaluated(tenant_id, &query.environment)
        .await?;
    let mut keys: BTreeSet<String> = match &query.flag_key {
        Some(key) => BTreeSet::from([key.clone()]),
        None => store
            .flags(tenant_id, &query.environment)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect(),
    };
    // (flag, bucket, variant) → (evaluations, assigned users)
    let mut points: BTreeMap<(String, i64, Option<String>), (u64, u64)> = BTreeMap::new();
    for e in evaluations {
        keys.insert(e.flag_key.clone());
        points
            .entry((e.flag_key, e.bucket_ms, e.variant))
            .or_default()
            .0 += e.evaluations;
    }
    for a in assignments {
        keys.insert(a.flag_key.clone());
        points
            .entry((a.flag_key, a.bucket_ms, Some(a.variant)))
            .or_default()
            .1 += a.users;
    }
    let mut flags: Vec<FlagUsage> = keys
        .into_iter()
        .map(|key| FlagUsage {
            last_evaluated_at: last.get(&key).map(|ms| crate::rfc3339_ms(*ms)),
            key,
            evaluations: 0,
            assigned_users: 0,
            series: Vec::new(),
        })
        .collect();
    for ((key, start_ms, variant), (evaluations, assigned_users)) in points {
        if let Ok(i) = flags.binary_search_by(|f| f.key.as_str().cmp(&key)) {
            let flag = &mut flags[i];
            flag.evaluations += evaluations;
            flag.assigned_users += assigned_users;
            flag.series.push(UsagePoint {
                start: crate::rfc3339_ms(start_ms),
                start_ms,
                variant,
                evaluations,
                assigned_users,
            });
        }
    }
    Ok(UsageReport {
        environment: query.environment.clone(),
        granularity: query.granularity.name(),
        from: crate::rfc3339_ms(query.from_ms),
        to: crate::rfc3339_ms(query.to_ms),
        flags,
    })
}

/// Usage of one flag; `None` when the environment has no such flag (another tenant's is the
/// same as a missing one).
pub async fn flag_usage(
    store: &Store,
    pending: Option<Pending<'_>>,
    tenant_id: &str,
    query: &UsageQuery,
) -> Result<Option<UsageReport>, StoreError> {
    let Some(key) = query.flag_key.as_deref() else {
        return Ok(None);
    };
    if store
        .flag(tenant_id, &query.environment, key)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    usage(store, pending, tenant_id, query).await.map(Some)
}

/// The flags of an environment that are probably safe to remove.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaleReport {
    environment: String,
    /// The window: flags not evaluated for this many days are reported.
    days: u32,
    /// When the report was made (RFC 3339).
    generated_at: String,
    /// Sorted by key; only flags with at least one reason.
    flags: Vec<StaleFlag>,
}

impl StaleReport {
    /// The stale flags, sorted by key.
    pub fn flags(&self) -> &[StaleFlag] {
        &self.flags
    }
}

/// One stale flag and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaleFlag {
    key: String,
    /// The flag's lifecycle status.
    status: String,
    /// When the flag was created (RFC 3339).
    created_at: String,
    /// The last evaluation counted (RFC 3339); `null` when never evaluated.
    #[schema(value_type = Option<String>)]
    last_evaluated_at: Option<String>,
    /// Every reason that applies, in a fixed order.
    reasons: Vec<StaleFlagReason>,
}

impl StaleFlag {
    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The last evaluation (RFC 3339), if any.
    pub fn last_evaluated_at(&self) -> Option<&str> {
        self.last_evaluated_at.as_deref()
    }

    /// The reasons.
    pub fn reasons(&self) -> &[StaleFlagReason] {
        &self.reasons
    }
}

/// Why a flag is stale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaleFlagReason {
    /// `not_evaluated`, `fully_rolled_out`, `expired` or `finished`.
    code: &'static str,
    /// The explanation, in words.
    detail: String,
}

impl StaleFlagReason {
    /// The reason's code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

fn describe(reason: &flags::StaleReason, days: u32) -> StaleFlagReason {
    use flags::StaleReason as R;
    match reason {
        R::NotEvaluated {
            since_ms,
            ever_evaluated: true,
        } => StaleFlagReason {
            code: "not_evaluated",
            detail: format!(
                "not evaluated for {days} days or more (last evaluated {})",
                crate::rfc3339_ms(*since_ms)
            ),
        },
        R::NotEvaluated { since_ms, .. } => StaleFlagReason {
            code: "not_evaluated",
            detail: format!(
                "never evaluated since it was created {}",
                crate::rfc3339_ms(*since_ms)
            ),
        },
        R::FullyRolledOut {
            variant: Some(variant),
        } => StaleFlagReason {
            code: "fully_rolled_out",
            detail: format!("serves variant `{variant}` to everyone"),
        },
        R::FullyRolledOut { variant: None } => StaleFlagReason {
            code: "fully_rolled_out",
            detail: "serves the environment's override value to everyone".to_owned(),
        },
        R::Expired { at_ms } => StaleFlagReason {
            code: "expired",
            detail: format!(
                "expired {}: serves its off variant to everyone",
                crate::rfc3339_ms(*at_ms)
            ),
        },
        R::Finished { status } => StaleFlagReason {
            code: "finished",
            detail: format!(
                "status `{}`: not served, still defined",
                status_name(*status)
            ),
        },
    }
}

fn status_name(status: flags::FlagStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The environment's stale flags: not evaluated for `days` days (never evaluated counts from
/// creation), serving one variant to everyone, expired, or completed / archived.
pub async fn stale_flags(
    store: &Store,
    pending: Option<Pending<'_>>,
    tenant_id: &str,
    environment: &str,
    days: u32,
    now_ms: i64,
) -> Result<StaleReport, StoreError> {
    settle(store, pending).await;
    let records = store.flags(tenant_id, environment).await?;
    let last = store.flags_last_evaluated(tenant_id, environment).await?;
    let flags = records
        .iter()
        .filter_map(|record| stale_flag(record, &last, environment, days, now_ms))
        .collect();
    Ok(StaleReport {
        environment: environment.to_owned(),
        days,
        generated_at: crate::rfc3339_ms(now_ms),
        flags,
    })
}

fn stale_flag(
    record: &FlagRecord,
    last: &BTreeMap<String, i64>,
    environment: &str,
    days: u32,
    now_ms: i64,
) -> Option<StaleFlag> {
    let flag: flags::Flag = match serde_json::from_str(&record.definition_json) {
        Ok(flag) => flag,
        Err(e) => {
            tracing::warn!(flag = %record.key, error = %e, "stored flag definition unreadable");
            return None;
        }
    };
    let last_evaluated_ms = last.get(&record.key).copied();
    let reasons = flags::stale_reasons(
        &flag,
        &flags::StalenessInputs {
            environment,
            created_at_ms: record.created_at_ms,
            last_evaluated_ms,
            window_ms: i64::from(days) * DAY_MS,
            now_ms,
        },
    );
    if reasons.is_empty() {
        return None;
    }
    Some(StaleFlag {
        key: record.key.clone(),
        status: status_name(flag.status),
        created_at: crate::rfc3339_ms(record.created_at_ms),
        last_evaluated_at: last_evaluated_ms.map(crate::rfc3339_ms),
        reasons: reasons.iter().map(|r| describe(r, days)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    #[test]
    fn ranges_are_widened_to_whole_buckets_and_bounded() {
        let q = UsageQuery::parse("production", None, None, None, None, NOW).expect("defaults");
        assert_eq!(q.granularity, Granularity::Hour);
        assert_eq!(q.from_ms % HOUR_MS, 0);
        assert_eq!(q.to_ms % HOUR_MS, 0);
        assert!(q.from_ms <= NOW - DAY_MS && q.to_ms > NOW);
        let q = UsageQuery::parse(
            "production",
            Some("2026-01-01T10:30:00Z"),
            Some("2026-01-03T00:00:00Z"),
            Some("day"),
            None,
            NOW,
        )
        .expect("two days");
        assert_eq!(q.to_ms - q.from_ms, 2 * DAY_MS);
        let e = UsageQuery::parse(
            "production",
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-09T00:00:00Z"),
            None,
            None,
            NOW,
        )
        .expect_err("eight days by hour");
        assert!(e.conflicting);
        let e = UsageQuery::parse("production", None, None, Some("week"), None, NOW)
            .expect_err("no weeks");
        assert_eq!((e.parameter, e.conflicting), ("granularity", false));
        let e = UsageQuery::parse(
            "production",
            Some("2026-01-02T00:00:00Z"),
            Some("2026-01-01T00:00:00Z"),
            None,
            None,
            NOW,
        )
        .expect_err("backwards");
        assert!(e.conflicting);
    }
}
