//! The rate-limit middleware: identifies the caller, asks the [`RateLimiter`], carries out the
//! outcome (serve, wait, queue, degrade, or 429) and writes the rate-limit fields on the
//! response.
//!
//! Fields (draft-ietf-httpapi-ratelimit-headers, structured-field syntax), for the enforcing
//! rules that applied to the request:
//! - `RateLimit-Policy: "tenant_requests";q=18000;w=60, "user_requests";q=2000;w=60`
//! - `RateLimit: "tenant_requests";r=17999;t=1, "user_requests";r=1999;t=60`
//!   (`r` units left, `t` seconds until the full quota is back)
//! - `Retry-After: SECONDS` on a 429 (absent when the request can never fit the rule).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limits::{Outcome, RequestFacts, RuleStatus, Verdict, NEVER};

use super::RateLimiter;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// Names the rule whose `degrade` action applied, on an answer the route gave more cheaply.
pub const DEGRADED: HeaderName = HeaderName::from_static("signalbox-degraded");
/// The caller's user id, for `user`-scoped rules.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");

/// Paths never limited: probes and scrapes must work when a tenant is over its quota.
pub(crate) fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/api/v1/health" | "/ready" | "/metrics" | "/openapi.json"
    )
}

/// A request whose rate limit was decided by a `degrade` action; handlers may read it from the
/// request extensions to answer more cheaply.
#[derive(Debug, Clone)]
pub struct Degraded(pub Arc<str>);

/// Put in a response's extensions (as `Option<AnsweredDegraded>`, so a handler can return
/// `Extension(None)` for a full answer) by a route that answered a [`Degraded`] request more
/// cheaply; the middleware then adds `Signalbox-Degraded: RULE`.
#[derive(Debug, Clone, Copy)]
pub struct AnsweredDegraded;

pub(crate) async fn middleware(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(limiter) = state.rate_limiter().cloned() else {
        return next.run(req).await;
    };
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let mut req = req;
    let asserted = match user_id(req.headers()) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    // A bad or missing key is not refused here: the route's `Auth` extractor answers 401. The
    // principal found is kept for it, so the key is looked up once.
    let principal = match crate::extract::bearer_token(req.headers()) {
        Some(token) => crate::extract::authenticate(&state, token).await.ok(),
        None => None,
    };
    if let Some(principal) = &principal {
        // So a refusal is counted against the tenant, as the route's own errors are.
        if let Some(ctx) = req.extensions().get::<crate::context::RequestContext>() {
            ctx.set_tenant(&principal.tenant.id);
        }
        req.extensions_mut()
            .insert(crate::extract::Authenticated(principal.clone()));
    }
    let user = principal
        .as_ref()
        .and_then(|p| limited_user(p, asserted.as_deref()));
    // The address resolved by `client_addr` (the peer, or what trusted proxies report).
    let ip = req
        .extensions()
        .get::<crate::ClientAddr>()
        .map(|crate::ClientAddr(addr)| addr.to_string());
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let facts = RequestFacts {
        tenant: principal.as_ref().map(|p| p.tenant.id.as_str()),
        user: user.as_deref(),
        ip: ip.as_deref(),
        api_key: principal.as_ref().map(|p| p.key_id.as_str()),
        tier: principal.as_ref().map(|p| super::tier(p.tenant.tier)),
        method: &method,
        path: &path,
        cost: None,
    };

    let verdict = match settle(&limiter, &facts).await {
        Ok(verdict) => verdict,
        Err(refused) => return refused,
    };
    if let Outcome::Degrade = verdict.outcome {
        if let Some(rule) = &verdict.decided_by {
            req.extensions_mut().insert(Degraded(rule.clone()));
        }
    }
    let mut response = next.run(req).await;
    write_fields(response.headers_mut(), &verdict, limiter.legacy_headers);
    // Only a route that did answer more cheaply says so; others served the full answer.
    let answered_degraded = response
        .extensions()
        .get::<Option<AnsweredDegraded>>()
        .is_some_and(Option::is_some);
    if let (Outcome::Degrade, Some(rule), true) =
        (verdict.outcome, &verdict.decided_by, answered_degraded)
    {
        if let Ok(value) = HeaderValue::from_str(rule) {
            response.headers_mut().insert(DEGRADED, value);
        }
    }
    response
}

/// Decides the request, waiting where a `delay` or `queue` action says so and deciding again
/// after each wait, until it is admitted or the rule's bound on the total wait would be passed
/// (requests delayed together wake together, and only some fit: the others wait their turn).
/// `Err` is the 429 to answer.
async fn settle(limiter: &RateLimiter, facts: &RequestFacts<'_>) -> Result<Verdict, Response> {
    let started = std::time::Instant::now();
    let mut verdict = limiter.check(facts).await;
    // Held while waiting under a `queue` action: the queue's bound counts waiting requests.
    let mut permit = None;
    let mut waited_once = false;
    loop {
        let wait_ns = match verdict.outcome {
            Outcome::Allow | Outcome::Degrade => return Ok(verdict),
            Outcome::Reject { .. } if waited_once => {
                return Err(too_many(
                    &verdict,
                    limiter,
                    Some("still over the limit after waiting"),
                ))
            }
            Outcome::Reject { .. } => return Err(too_many(&verdict, limiter, None)),
            Outcome::Delay { wait_ns } | Outcome::Queue { wait_ns, .. } => wait_ns,
        };
        let rule = verdict.decided_by.as_deref().unwrap_or_default();
        let bound = limiter.max_wait_ns(facts.tenant, rule).unwrap_or(0);
        let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if waited.saturating_add(wait_ns) > bound {
            return Err(too_many(
                &verdict,
                limiter,
                Some("still over the limit after waiting"),
            ));
        }
        if let (Outcome::Queue { .. }, None) = (verdict.outcome, &permit) {
            let queue = limiter.queue(facts.tenant, rule);
            match queue.and_then(|q| q.clone().try_acquire_owned().ok()) {
                Some(p) => permit = Some(p),
                None => return Err(too_many(&verdict, limiter, Some("its queue is full"))),
            }
        }
        tokio::time::sleep(Duration::from_nanos(wait_ns)).await;
        waited_once = true;
        verdict = limiter.check(facts).await;
    }
}

fn too_many(verdict: &Verdict, limiter: &RateLimiter, why: Option<&str>) -> Response {
    let rule = verdict.decided_by.as_deref().unwrap_or("rate limit");
    let status = verdict.rules.iter().find(|r| &*r.name == rule);
    let retry_ns = match verdict.outcome {
        Outcome::Reject { retry_after_ns } => retry_after_ns,
        Outcome::Delay { wait_ns } | Outcome::Queue { wait_ns, .. } => wait_ns,
        Outcome::Allow | Outcome::Degrade => 0,
    };
    let mut detail = match status {
        Some(s) => format!(
            "rate limit `{rule}` exceeded: {} units per {} s",
            s.quota, s.window_secs
        ),
        None => format!("rate limit `{rule}` exceeded"),
    };
    if let Some(why) = why {
        let _ = write!(detail, " ({why})");
    }
    let retry_secs = (retry_ns != NEVER).then(|| ceil_secs(retry_ns));
    match retry_secs {
        Some(secs) => {
            let _ = write!(detail, "; retry in {secs} s");
        }
        None => detail.push_str("; this request costs more than the rule ever admits at once"),
    }
    let mut error = ApiError::new(ProblemKind::RateLimited, detail).with("rule", rule);
    if let Some(secs) = retry_secs {
        error = error.with("retry_after_secs", secs);
    }
    let mut response = error.into_response();
    let headers = response.headers_mut();
    // A refusal is about this moment: no cache may replay it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = retry_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    write_fields(headers, verdict, limiter.legacy_headers);
    response
}

/// Whole seconds, rounded up (a client waiting this long is never early).
fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// The `RateLimit-Policy` and `RateLimit` field values of `rules` (shadow rules left out), or
/// `None` when no enforcing rule applied.
pub(crate) fn field_values<'a>(
    rules: impl IntoIterator<Item = &'a RuleStatus>,
) -> Option<(String, String)> {
    let mut policy = String::new();
    let mut state = String::new();
    for rule in rules.into_iter().filter(|r| !r.shadow) {
        let sep = if policy.is_empty() { "" } else { ", " };
        let _ = write!(
            policy,
            "{sep}\"{}\";q={};w={}",
            rule.name, rule.quota, rule.window_secs
        );
        let _ = write!(
            state,
            "{sep}\"{}\";r={};t={}",
            rule.name,
            rule.remaining,
            ceil_secs(rule.reset_after_ns)
        );
    }
    (!policy.is_empty()).then_some((policy, state))
}

fn write_fields(headers: &mut HeaderMap, verdict: &Verdict, legacy: bool) {
    let Some((policy, state)) = field_values(&verdict.rules) else {
        return;
    };
    if let (Ok(p), Ok(s)) = (
        HeaderValue::from_str(&policy),
        HeaderValue::from_str(&state),
    ) {
        headers.insert(RATELIMIT_POLICY, p);
        headers.insert(RATELIMIT, s);
    }
    if legacy {
        if let Some(rule) = verdict.most_restrictive() {
            headers.insert(X_LIMIT, HeaderValue::from(rule.quota));
            headers.insert(X_REMAINING, HeaderValue::from(rule.remaining));
            headers.insert(X_RESET, HeaderValue::from(ceil_secs(rule.reset_after_ns)));
        }
    }
}

/// Who the `user` rules count a request against: the user the key is bound to; else the
/// `X-User-Id` the key asserts, if it may (`assert_user`, implied by `admin`); else nobody (the
/// header of another key is ignored, so a client cannot pick whose quota it spends).
fn limited_user(principal: &store::Principal, asserted: Option<&str>) -> Option<String> {
    if let Some(bound) = &principal.user_id {
        return Some(bound.clone());
    }
    if principal.scopes.allows(store::Scope::AssertUser) {
        return asserted.map(str::to_owned);
    }
    None
}

/// The `X-User-Id` header: 1-128 visible ASCII characters, or absent.
fn user_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(USER_ID) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_parameter(
            "X-User-Id",
            "the X-User-Id header must be 1-128 visible ASCII characters",
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if !store::valid_user_id(text) {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}
