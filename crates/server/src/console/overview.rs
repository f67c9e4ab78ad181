//! The overview: the health of each component the server depends on, and the server's own
//! figures read back from its metrics ([`telemetry::snapshot`]).
//!
//! What a key sees: every key with `read` sees its own tenant's HTTP figures (the series carry
//! `tenant_id`; a tenant past the metrics' tenant-label limit has no figures of its own and is
//! told so, as the tenant-scoped scrape does). An admin key also sees the whole server's figures,
//! the rate limiter's refusals by rule and the read caches' hit rates: those series carry no
//! tenant, so they would show other tenants' traffic, and only an operator's key reads them.
//!
//! Latency percentiles come from the request-duration histogram's buckets, interpolated
//! linearly inside the bucket holding the rank (as Prometheus' `histogram_quantile`); a rank in
//! the open top bucket shows as "> 10 s".

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use store::Scope;
use telemetry::HttpSnapshot;

use super::{page, Chrome, ConsoleError, Section, Session};
use crate::readiness::ComponentStatus;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "overview",
    title: "Overview",
    path: "/console",
    needs: Scope::Read,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console", get(overview))
}

/// One dependency's row in the health table.
struct ComponentRow {
    name: &'static str,
    status: &'static str,
    backend: &'static str,
    latency: String,
    error: String,
}

impl ComponentRow {
    fn new(name: &'static str, c: ComponentStatus) -> ComponentRow {
        ComponentRow {
            name,
            status: c.status,
            backend: c.backend.unwrap_or(""),
            latency: c
                .latency_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_default(),
            error: c.error.unwrap_or_default(),
        }
    }
}

/// HTTP figures of one scope (the tenant, or the whole server), formatted for people.
struct Figures {
    requests: String,
    request_rate: String,
    window_requests: String,
    window_rate: String,
    window_seconds: u64,
    error_rate: String,
    window_error_rate: String,
    server_errors: String,
    client_errors: String,
    p50: String,
    p95: String,
    p99: String,
    rate_limited: String,
    not_modified: String,
    not_modified_share: String,
}

impl Figures {
    fn new(s: &HttpSnapshot, uptime_seconds: f64) -> Figures {
        let quantile = |q: f64| match s.latency.quantile(q) {
            None => "–".to_owned(),
            Some(v) if s.latency.bounds.last().is_some_and(|top| v >= *top) => {
                format!("> {}", duration(v))
            }
            Some(v) => duration(v),
        };
        Figures {
            requests: s.requests.to_string(),
            request_rate: per_second(s.requests, uptime_seconds),
            window_requests: s.last_window.requests.to_string(),
            window_rate: per_second(s.last_window.requests, s.last_window.seconds as f64),
            window_seconds: s.last_window.seconds,
            error_rate: percent(s.server_errors, s.requests),
            window_error_rate: percent(s.last_window.errors, s.last_window.requests),
            server_errors: s.server_errors.to_string(),
            client_errors: s.client_errors.to_string(),
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
            rate_limited: s.rate_limited.to_string(),
            not_modified: s.not_modified.to_string(),
            not_modified_share: percent(s.not_modified, s.requests),
        }
    }
}

/// One rate-limit rule's refusals (admin view).
struct RuleRefusals {
    rule: String,
    rejected: u64,
    shadow_refused: u64,
}

/// One cache's hit rate (admin view).
struct CacheRow {
    name: String,
    reads: u64,
    hits: u64,
    hit_rate: String,
}

#[derive(askama::Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    components: Vec<ComponentRow>,
    uptime: String,
    /// How many seconds the "last minute" figures cover (less while the server is younger).
    window_seconds: u64,
    /// This tenant's figures; `None` when its series have no label of their own.
    tenant: Option<Figures>,
    /// The whole server's, for an admin key only.
    server: Option<Figures>,
    rules: Vec<RuleRefusals>,
    caches: Vec<CacheRow>,
}

async fn overview(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let components = state.inner.readiness.check(state.store()).await;
    let metrics = state.metrics();
    let uptime_seconds = metrics.summary().uptime_seconds;
    let tenant = metrics
        .http_snapshot(Some(session.tenant_id()))
        .map(|s| Figures::new(&s, uptime_seconds));
    let admin = session.can(Scope::Admin);
    let server = admin
        .then(|| metrics.http_snapshot(None))
        .flatten()
        .map(|s| Figures::new(&s, uptime_seconds));
    let rules = if admin {
        rule_refusals(&state)
    } else {
        Vec::new()
    };
    let caches = if admin {
        cache_rows(&state)
    } else {
        Vec::new()
    };
    page(
        StatusCode::OK,
        &OverviewPage {
            chrome: session.chrome(SECTION.id, "Overview"),
            components: vec![
                ComponentRow::new("Storage", components.storage),
                ComponentRow::new("Redis", components.redis),
                ComponentRow::new("NATS", components.nats),
            ],
            uptime: duration(uptime_seconds),
            window_seconds: (uptime_seconds as u64 + 1).min(telemetry::snapshot::WINDOW_SECONDS),
            tenant,
            server,
            rules,
            caches,
        },
    )
}

/// Refusals per configured rule (default rules and tenants' own, each name once).
fn rule_refusals(state: &AppState) -> Vec<RuleRefusals> {
    let settings = &state.config().rate_limits;
    let mut names: Vec<&str> = settings
        .config
        .iter()
        .chain(settings.tenant_configs.values())
        .flat_map(|c| c.rules.iter().map(|r| r.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let metrics = state.metrics().rate_limit();
    names
        .into_iter()
        .map(|rule| {
            let d = metrics.decisions(rule);
            RuleRefusals {
                rule: rule.to_owned(),
                rejected: d.rejected,
                shadow_refused: d.shadow_refused,
            }
        })
        .collect()
}

/// Hit rates of the read caches (a read is answered by L1 or L2, or loaded) and of the
/// forecast cache.
fn cache_rows(state: &AppState) -> Vec<CacheRow> {
    let mut rows: Vec<CacheRow> = state
        .metrics()
        .caches()
        .snapshot()
        .into_iter()
        .map(|(name, stats)| {
            let reads = stats.l1.hits + stats.l1.misses;
            let hits = stats.l1.hits + stats.l2.hits;
            CacheRow {
                name: name.to_owned(),
                reads,
                hits,
                hit_rate: percent(hits, reads),
            }
        })
        .collect();
    let (hit, miss, bypass) = state.metrics().forecast().cache_outcomes();
    rows.push(CacheRow {
        name: "forecast".to_owned(),
        reads: hit + miss + bypass,
        hits: hit,
        hit_rate: percent(hit, hit + miss + bypass),
    });
    rows
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".to_owned()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

fn per_second(count: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        "–".to_owned()
    } else {
        format!("{:.2}/s", count as f64 / seconds)
    }
}

/// Seconds as people read them: µs, ms, s, min or h.
fn duration(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_expect() {
        assert_eq!(percent(1, 4), "25.0 %");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(per_second(30, 60.0), "0.50/s");
        assert_eq!(duration(0.0005), "500 µs");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(3.0), "3.0 s");
        assert_eq!(duration(600.0), "10 min");
    }
}
