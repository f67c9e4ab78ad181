//! Rate limits: the rules in force for the signed-in tenant (its own rule file when it has one,
//! the server's otherwise), and the refusals so far.
//!
//! Refusals per rule come from `rate_limit_decisions_total{rule,decision}`, which counts every
//! tenant's requests together; like the overview, only an admin key sees those counts. Every
//! key sees its own tenant's 429s, from the HTTP series that carry its tenant.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use limits::{ActionConfig, AlgorithmKind, FailurePolicy, RuleConfig};
use store::Scope;

use super::{page, Chrome, ConsoleError, Section, Session};
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "rate-limits",
    title: "Rate limits",
    path: "/console/rate-limits",
    needs: Scope::Read,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/rate-limits", get(rate_limits))
}

/// One rule as the table shows it.
struct RuleRow {
    name: String,
    scope: &'static str,
    algorithm: &'static str,
    limit: String,
    window: String,
    action: String,
    tiers: String,
    endpoints: String,
    on_backend_failure: &'static str,
    shadow: bool,
    /// Admin keys only: refused so far, shadow refusals and backend failures.
    refused: Option<u64>,
    shadow_refused: Option<u64>,
    backend_failures: Option<u64>,
}

#[derive(askama::Template)]
#[template(path = "console/limits.html")]
struct LimitsPage {
    chrome: Chrome,
    /// Whether rate limiting is on at all.
    enabled: bool,
    /// The tenant has a rule file of its own.
    own_rules: bool,
    backend: &'static str,
    rules: Vec<RuleRow>,
    /// This tenant's 429s since start (`None`: no figures of its own in the metrics).
    tenant_refusals: Option<u64>,
    show_counts: bool,
}

async fn rate_limits(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let settings = &state.config().rate_limits;
    let own = settings.tenant_configs.get(session.tenant_id());
    let in_force = own.or(settings.config.as_ref());
    let show_counts = session.can(Scope::Admin);
    let decisions = state.metrics().rate_limit();
    let rules = in_force
        .map(|config| {
            config
                .rules
                .iter()
                .map(|rule| {
                    let d = show_counts.then(|| decisions.decisions(&rule.name));
                    row(rule, d)
                })
                .collect()
        })
        .unwrap_or_default();
    let tenant_refusals = state
        .metrics()
        .http_snapshot(Some(session.tenant_id()))
        .map(|s| s.rate_limited);
    page(
        StatusCode::OK,
        &LimitsPage {
            chrome: session.chrome(SECTION.id, "Rate limits"),
            enabled: state.rate_limiter().is_some() && in_force.is_some(),
            own_rules: own.is_some(),
            backend: match settings.backend {
                crate::RateLimitBackend::Memory => "in memory (this replica)",
                crate::RateLimitBackend::Redis { .. } => "Redis (shared by every replica)",
            },
            rules,
            tenant_refusals,
            show_counts,
        },
    )
}

fn row(rule: &RuleConfig, d: Option<telemetry::RuleDecisions>) -> RuleRow {
    RuleRow {
        name: rule.name.clone(),
        scope: match rule.scope {
            limits::Scope::Global => "global",
            limits::Scope::Tenant => "tenant",
            limits::Scope::User => "user",
            limits::Scope::Ip => "ip",
            limits::Scope::ApiKey => "api_key",
        },
        algorithm: match rule.algorithm {
            AlgorithmKind::FixedWindow => "fixed window",
            AlgorithmKind::SlidingWindowLog => "sliding window log",
            AlgorithmKind::SlidingWindow => "sliding window",
            AlgorithmKind::TokenBucket => "token bucket",
            AlgorithmKind::LeakyBucket => "leaky bucket",
        },
        limit: with_burst(rule.limit.get(), rule.burst),
        window: format!("{} s", rule.window_secs),
        action: match rule.action {
            ActionConfig::Reject => "reject (429)".to_owned(),
            ActionConfig::Delay { max_delay_ms } => format!("delay up to {max_delay_ms} ms"),
            ActionConfig::Queue {
                max_queued,
                max_wait_ms,
            } => format!("queue up to {max_queued}, {max_wait_ms} ms"),
            ActionConfig::Degrade => "degrade (cheaper answer)".to_owned(),
        },
        tiers: rule
            .tiers
            .iter()
            .map(|(tier, o)| format!("{}: {}", tier.as_str(), with_burst(o.limit.get(), o.burst)))
            .collect::<Vec<_>>()
            .join(", "),
        endpoints: endpoints(rule),
        on_backend_failure: match rule.on_backend_failure {
            FailurePolicy::FailOpen => "fail open",
            FailurePolicy::FailClosed => "fail closed",
            FailurePolicy::LocalFallback => "local fallback",
        },
        shadow: rule.shadow,
        refused: d.map(|d| d.rejected),
        shadow_refused: d.map(|d| d.shadow_refused),
        backend_failures: d.map(|d| d.backend_failures),
    }
}

fn with_burst(limit: u64, burst: u64) -> String {
    if burst == 0 {
        limit.to_string()
    } else {
        format!("{limit} + {burst} burst")
    }
}

/// The requests a rule applies to, in words.
fn endpoints(rule: &RuleConfig) -> String {
    let mut parts = Vec::new();
    if !rule.methods.is_empty() {
        parts.push(rule.methods.join(" "));
    }
    if rule.paths.is_empty() {
        parts.push("every path".to_owned());
    } else {
        parts.push(rule.paths.join(", "));
    }
    if !rule.exclude_paths.is_empty() {
        parts.push(format!("except {}", rule.exclude_paths.join(", ")));
    }
    if let Some(cost) = rule.cost {
        parts.push(format!("cost {cost} each"));
    }
    parts.join("; ")
}
