//! Flag usage on the console's flag pages, over [`crate::flag_usage`]: on the list, each
//! flag's evaluations in the last 24 hours and the stale flags; on a flag's page, its
//! evaluations and first exposures (assignments) per variant, hour by hour over the last week.
//! Each panel is an HTML fragment the flags pages include.

use std::collections::BTreeMap;

use askama::Template;
use store::{DAY_MS, HOUR_MS};

use super::charts::{self, LineChart, Series};
use super::ConsoleError;
use crate::feature_flags::clock_ms;
use crate::flag_usage::{self, Pending, UsageQuery};
use crate::state::AppState;

/// The stale-flag window the list shows, in days.
const STALE_DAYS: u32 = flag_usage::DEFAULT_STALE_DAYS;
/// How far back a flag's page charts usage.
const DETAIL_RANGE_MS: i64 = 7 * DAY_MS;

struct UsageRow {
    key: String,
    href: String,
    evaluations: u64,
    last_evaluated: String,
}

struct StaleRow {
    key: String,
    href: String,
    reasons: Vec<String>,
    last_evaluated: String,
}

#[derive(Template)]
#[template(path = "console/flag_usage_list.html")]
struct ListPanel {
    environment: String,
    usage: Vec<UsageRow>,
    stale: Vec<StaleRow>,
    stale_days: u32,
}

fn render(template: &impl Template) -> Result<String, ConsoleError> {
    template.render().map_err(|e| {
        tracing::error!(error = %e, "console template failed to render");
        ConsoleError::Internal
    })
}

fn never(at: Option<&str>) -> String {
    at.map_or_else(|| "never".to_owned(), str::to_owned)
}

/// The list page's panels: evaluations per flag in the last 24 hours, and stale flags.
pub(super) async fn list_panel(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    detail_path: fn(&str, &str) -> String,
) -> Result<String, ConsoleError> {
    let now = clock_ms();
    let query = UsageQuery::parse(environment, None, None, None, None, now).map_err(|e| {
        tracing::error!(reason = %e.reason, "the default usage range was refused");
        ConsoleError::Internal
    })?;
    // The default range widens to whole hours; count exactly the last 24 of them.
    let since = now - DAY_MS;
    let report =
        flag_usage::usage(state.store(), Some(Pending::of(state)), tenant_id, &query).await?;
    let usage = report
        .flags()
        .iter()
        .map(|f| UsageRow {
            key: f.key().to_owned(),
            href: detail_path(environment, f.key()),
            evaluations: f
                .series()
                .iter()
                .filter(|p| p.start_ms() + HOUR_MS > since)
                .map(|p| p.evaluations())
                .sum(),
            last_evaluated: never(f.last_evaluated_at()),
        })
        .collect();
    let stale =
        flag_usage::stale_flags(state.store(), None, tenant_id, environment, STALE_DAYS, now)
            .await?
            .flags()
            .iter()
            .map(|f| StaleRow {
                key: f.key().to_owned(),
                href: detail_path(environment, f.key()),
                reasons: f.reasons().iter().map(|r| r.detail().to_owned()).collect(),
                last_evaluated: never(f.last_evaluated_at()),
            })
            .collect();
    render(&ListPanel {
        environment: environment.to_owned(),
        usage,
        stale,
        stale_days: STALE_DAYS,
    })
}

struct VariantRow {
    variant: String,
    evaluations: u64,
    assigned_users: u64,
}

#[derive(Template)]
#[template(path = "console/flag_usage_detail.html")]
struct DetailPanel {
    from: String,
    to: String,
    last_evaluated: String,
    evaluations: u64,
    assigned_users: u64,
    variants: Vec<VariantRow>,
    evaluations_chart: String,
    assignments_chart: String,
}

fn variant_label(variant: Option<&str>) -> String {
    variant.map_or_else(|| "(no variant: errors)".to_owned(), str::to_owned)
}

/// `YYYY-MM-DD HH:00` of an x value in epoch hours.
fn hour_text(hours: f64) -> String {
    let text = crate::rfc3339_ms((hours as i64).saturating_mul(HOUR_MS));
    match (text.get(..10), text.get(11..13)) {
        (Some(day), Some(hour)) => format!("{day} {hour}:00"),
        _ => text,
    }
}

/// One line per variant, every hour of the range present (0 when nothing happened).
fn hourly_lines(
    points: &BTreeMap<String, BTreeMap<i64, u64>>,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(String, Vec<(f64, f64)>)> {
    points
        .iter()
        .map(|(variant, by_hour)| {
            let line = (from_ms..to_ms)
                .step_by(HOUR_MS as usize)
                .map(|h| {
                    let n = by_hour.get(&h).copied().unwrap_or(0);
                    ((h / HOUR_MS) as f64, n as f64)
                })
                .collect();
            (variant.clone(), line)
        })
        .collect()
}

fn chart(title: &str, y_label: &str, lines: &[(String, Vec<(f64, f64)>)]) -> String {
    let series: Vec<Series<'_>> = lines
        .iter()
        .map(|(label, points)| Series { label, points })
        .collect();
    charts::line_chart(&LineChart {
        title,
        x_label: "hour (UTC)",
        y_label,
        series: &series,
        x_format: hour_text,
    })
}

/// A flag's page panel: evaluations and assignments per variant over the last week.
pub(super) async fn detail_panel(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    key: &str,
) -> Result<String, ConsoleError> {
    let now = clock_ms();
    let query = UsageQuery {
        environment: environment.to_owned(),
        from_ms: (now - DETAIL_RANGE_MS) - (now - DETAIL_RANGE_MS).rem_euclid(HOUR_MS) + HOUR_MS,
        to_ms: now - now.rem_euclid(HOUR_MS) + HOUR_MS,
        granularity: flag_usage::Granularity::Hour,
        flag_key: Some(key.to_owned()),
    };
    let report =
        flag_usage::usage(state.store(), Some(Pending::of(state)), tenant_id, &query).await?;
    let mut evaluations: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    let mut assignments: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let flag = report.flags().iter().find(|f| f.key() == key);
    for p in flag.map(|f| f.series()).unwrap_or_default() {
        let label = variant_label(p.variant());
        if p.evaluations() > 0 {
            *evaluations
                .entry(label.clone())
                .or_default()
                .entry(p.start_ms())
                .or_default() += p.evaluations();
        }
        if p.assigned_users() > 0 {
            *assignments
                .entry(label.clone())
                .or_default()
                .entry(p.start_ms())
                .or_default() += p.assigned_users();
        }
        let total = totals.entry(label).or_default();
        total.0 += p.evaluations();
        total.1 += p.assigned_users();
    }
    let evaluations_chart = chart(
        "Evaluations per hour, by variant",
        "evaluations",
        &hourly_lines(&evaluations, query.from_ms, query.to_ms),
    );
    let assignments_chart = chart(
        "Users first assigned per hour, by variant",
        "users",
        &hourly_lines(&assignments, query.from_ms, query.to_ms),
    );
    render(&DetailPanel {
        from: crate::rfc3339_ms(query.from_ms),
        to: crate::rfc3339_ms(query.to_ms),
        last_evaluated: never(flag.and_then(|f| f.last_evaluated_at())),
        evaluations: flag.map_or(0, |f| f.evaluations()),
        assigned_users: flag.map_or(0, |f| f.assigned_users()),
        variants: totals
            .into_iter()
            .map(|(variant, (evaluations, assigned_users))| VariantRow {
                variant,
                evaluations,
                assigned_users,
            })
            .collect(),
        evaluations_chart,
        assignments_chart,
    })
}
