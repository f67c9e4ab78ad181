//! Rate limiting: the middleware's answers and fields, and the Redis backend, whose Lua script
//! is checked against the `limits` crate's algorithms (the oracle) at chosen instants, and for
//! exactness under concurrency against the real Redis.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use limits::{
    Algorithm, AnyAlgorithm, Config, FixedWindow, Gcra, RequestFacts, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket,
};
use proptest::prelude::*;
use server::{RateLimitBackend, RateLimitSettings, RateLimiter, ServerConfig};
use store::{Backend, Scope};

use crate::TestApp;

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn rules(toml: &str) -> Config {
    Config::parse("test.toml", toml).unwrap_or_else(|e| panic!("{e}"))
}

fn settings(toml: &str, backend: RateLimitBackend) -> RateLimitSettings {
    RateLimitSettings {
        config: Some(rules(toml)),
        backend,
        ..RateLimitSettings::default()
    }
}

/// A Redis backend under a key prefix of its own, so tests never share counters.
fn redis_backend() -> RateLimitBackend {
    RateLimitBackend::Redis {
        url: redis_url(),
        key_prefix: format!("test:rl:{}", uuid::Uuid::new_v4().simple()),
    }
}

fn limiter(settings: &RateLimitSettings) -> RateLimiter {
    RateLimiter::new(
        settings,
        Arc::new(telemetry::Metrics::new(Default::default())),
    )
    .expect("valid settings")
    .expect("rate limiting on")
}

async fn app_with(toml: &str, backend: RateLimitBackend) -> TestApp {
    let config = ServerConfig {
        rate_limits: settings(toml, backend),
        ..ServerConfig::default()
    };
    TestApp::with_config(Backend::Sqlite, config).await
}

fn header<'a>(reply: &'a crate::Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", reply.headers))
}

const PER_KEY: &str = r#"
[[rule]]
name = "per_key"
scope = "api_key"
algorithm = "fixed_window"
limit = 3
window_secs = 3600
action = { kind = "reject" }

[[rule]]
name = "watch_tenant"
scope = "tenant"
algorithm = "fixed_window"
limit = 1
window_secs = 3600
shadow = true
action = { kind = "reject" }
"#;

#[tokio::test]
async fn responses_carry_the_ratelimit_fields_and_the_fourth_request_is_a_429_problem() {
    let app = app_with(PER_KEY, RateLimitBackend::Memory).await;
    let (_, key) = app.tenant("limited", &[Scope::Read]).await;
    for left in (0..3).rev() {
        let reply = app.get("/api/v1/tenant", Some(&key.secret)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(header(&reply, "ratelimit-policy"), "\"per_key\";q=3;w=3600");
        let state = header(&reply, "ratelimit");
        assert!(
            state.starts_with(&format!("\"per_key\";r={left};t=")),
            "{state}"
        );
    }
    let refused = app.get("/api/v1/tenant", Some(&key.secret)).await;
    let body = refused.assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert_eq!(body["rule"], "per_key", "{body}");
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    assert_eq!(body["retry_after_secs"], retry, "{body}");
    assert!(header(&refused, "ratelimit").contains("r=0"));
    assert_eq!(header(&refused, "cache-control"), "no-store");

    // The shadow rule never refused, but counted the requests past its limit that reached it:
    // the second and third (the fourth was refused by `per_key`, checked first).
    let metrics = app.get("/metrics", None).await.text();
    let shadow = metrics
        .lines()
        .find(|l| {
            l.starts_with("rate_limit_decisions_total")
                && l.contains("rule=\"watch_tenant\"")
                && l.contains("decision=\"shadow_refused\"")
        })
        .unwrap_or_else(|| panic!("no shadow count in:\n{metrics}"));
    assert!(shadow.ends_with(" 2"), "{shadow}");
    assert!(metrics
        .lines()
        .any(|l| l.contains("rule=\"per_key\"") && l.contains("decision=\"rejected\"")));
    app.cleanup().await;
}

#[tokio::test]
async fn probes_and_scrapes_are_never_limited_and_keys_are_limited_apart() {
    let app = app_with(
        r#"
[[rule]]
name = "everyone"
scope = "global"
algorithm = "fixed_window"
limit = 2
window_secs = 3600
action = { kind = "reject" }
"#,
        RateLimitBackend::Memory,
    )
    .await;
    for _ in 0..5 {
        for path in ["/health", "/metrics", "/openapi.json"] {
            let reply = app.get(path, None).await;
            assert_eq!(reply.status, 200, "{path}");
            assert!(reply.headers.get("ratelimit").is_none(), "{path}");
        }
    }
    let (_, key) = app.tenant("t", &[Scope::Read]).await;
    assert_eq!(
        app.get("/api/v1/tenant", Some(&key.secret)).await.status,
        200
    );
    // A request without a key is counted by the global rule too (then refused by auth).
    assert_eq!(app.get("/api/v1/tenant", None).await.status, 401);
    app.get("/api/v1/tenant", Some(&key.secret))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    app.cleanup().await;
}

#[tokio::test]
async fn a_bad_user_header_is_a_400_naming_it() {
    let app = app_with(PER_KEY, RateLimitBackend::Memory).await;
    let (_, key) = app.tenant("t", &[Scope::Read]).await;
    let req = Request::builder()
        .uri("/api/v1/tenant")
        .header("authorization", format!("Bearer {}", key.secret))
        .header("x-user-id", "x".repeat(200))
        .body(Body::empty())
        .unwrap();
    let body = app
        .send(req)
        .await
        .assert_problem(400, "invalid_parameter", "/api/v1/tenant");
    assert_eq!(body["parameter"], "X-User-Id", "{body}");
    app.cleanup().await;
}

#[tokio::test]
async fn user_rules_follow_the_tenants_tier_and_a_delay_action_waits_instead_of_refusing() {
    // Starter tier (the test tenants' tier): 2 per hour per user; delay up to 5 s.
    let app = app_with(
        r#"
[[rule]]
name = "per_user"
scope = "user"
algorithm = "token_bucket"
limit = 100
window_secs = 3600
action = { kind = "reject" }

[rule.tiers]
starter = { limit = 2, burst = 0 }

[[rule]]
name = "paced"
scope = "tenant"
algorithm = "leaky_bucket"
limit = 2
window_secs = 1
methods = ["POST"]
action = { kind = "delay", max_delay_ms = 5000 }
"#,
        RateLimitBackend::Memory,
    )
    .await;
    let (_, key) = app.tenant("t", &[Scope::Admin]).await;
    let as_user = |user: &str| {
        Request::builder()
            .uri("/api/v1/tenant")
            .header("authorization", format!("Bearer {}", key.secret))
            .header("x-user-id", user)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.send(as_user("ann")).await.status, 200);
    let second = app.send(as_user("ann")).await;
    assert_eq!(
        header(&second, "ratelimit-policy"),
        "\"per_user\";q=2;w=3600"
    );
    app.send(as_user("ann"))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert_eq!(app.send(as_user("bob")).await.status, 200, "users apart");

    // 2 per second, bursts of 2: of 3 POSTs sent at once, the third waits ~500 ms, then
    // succeeds (the first two take far less than 500 ms, so it cannot have refilled before).
    let posts = (0..3).map(|_| {
        app.call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&key.secret),
            Some(serde_json::json!({"scopes": ["read"]})),
        )
    });
    for reply in futures_util::future::join_all(posts).await {
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("rule=\"paced\"") && l.contains("decision=\"delayed\"")),
        "{metrics}"
    );
    app.cleanup().await;
}

// --- the Redis backend ---------------------------------------------------------------------

/// One rule of `kind` with the given numbers, in TOML.
fn one_rule(kind: &str, limit: u64, window_secs: u64, burst: u64) -> String {
    format!(
        "[[rule]]\nname = \"r\"\nscope = \"user\"\nalgorithm = \"{kind}\"\nlimit = {limit}\n\
         window_secs = {window_secs}\nburst = {burst}\naction = {{ kind = \"reject\" }}\n"
    )
}

/// The in-memory algorithm the script must agree with, in microsecond-granular nanoseconds (the
/// script counts microseconds, so GCRA's emission interval is rounded up to whole ones).
fn oracle(kind: &str, limit: u64, window_secs: u64, burst: u64) -> AnyAlgorithm {
    let w = window_secs * 1_000_000_000;
    // Seed 002: a window admits `limit + burst` (requests_per_window + burst_allowance).
    let capacity = limit + burst;
    match kind {
        "fixed_window" => AnyAlgorithm::FixedWindow(FixedWindow::new(capacity, w).unwrap()),
        "sliding_window_log" => {
            AnyAlgorithm::SlidingWindowLog(SlidingWindowLog::new(capacity, w).unwrap())
        }
        "sliding_window" => {
            AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(capacity, w).unwrap())
        }
        "token_bucket" => {
            AnyAlgorithm::TokenBucket(TokenBucket::new(limit + burst, limit, w).unwrap())
        }
        "leaky_bucket" => {
            let emission_us = (window_secs * 1_000_000).div_ceil(limit);
            AnyAlgorithm::Gcra(Gcra::new(emission_us * 1_000, limit + burst).unwrap())
        }
        other => panic!("{other}"),
    }
}

const KINDS: [&str; 5] = [
    "fixed_window",
    "sliding_window_log",
    "sliding_window",
    "token_bucket",
    "leaky_bucket",
];

fn user_facts(user: &str, cost: u64) -> RequestFacts<'_> {
    RequestFacts {
        user: Some(user),
        method: "GET",
        path: "/",
        cost: Some(cost),
        ..RequestFacts::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// For any request sequence, the script's decisions are the algorithm's: the same
    /// admissions and `remaining`, and times equal up to the script's microsecond resolution.
    /// The burst counts for every algorithm: a window admits `limit + burst`.
    #[test]
    fn the_redis_script_decides_as_the_algorithms_do(
        kind in 0usize..5,
        limit in 1u64..20,
        window_secs in 1u64..5,
        burst in 0u64..5,
        steps in prop::collection::vec((0u64..1_500_000, 0u64..6), 1..40),
    ) {
        let kind = KINDS[kind];
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let limiter = limiter(&settings(&one_rule(kind, limit, window_secs, burst), redis_backend()));
        let algorithm = oracle(kind, limit, window_secs, burst);
        let mut state = Default::default();
        // Start far from zero, as a real clock does, and step through chosen instants.
        let mut now_us = 1_700_000_000_000_000u64;
        for (i, &(step_us, cost)) in steps.iter().enumerate() {
            now_us += step_us;
            let cost = cost.min(limit + burst);
            let expected = algorithm.check(&mut state, now_us * 1_000, cost);
            let verdict = runtime.block_on(limiter.check_at(&user_facts("u", cost), Some(now_us)));
            let got = &verdict.rules[0];
            prop_assert_eq!(got.allowed, expected.allowed, "step {}: {:?} vs {:?}", i, got, expected);
            prop_assert_eq!(got.remaining, expected.remaining, "step {}: {:?} vs {:?}", i, got, expected);
            let close = |a: u64, b: u64| a.abs_diff(b) < 1_000;
            prop_assert!(close(got.reset_after_ns, expected.reset_after_ns), "step {}: {:?} vs {:?}", i, got, expected);
            if let limits::Outcome::Reject { retry_after_ns } = verdict.outcome {
                prop_assert!(
                    retry_after_ns == expected.retry_after_ns || close(retry_after_ns, expected.retry_after_ns),
                    "step {}: retry {} vs {:?}", i, retry_after_ns, expected
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_racing_on_redis_admit_exactly_the_limit() {
    for kind in ["sliding_window_log", "leaky_bucket", "fixed_window"] {
        // Leaky bucket: a burst of 200 and one unit a day, so nothing refills during the test.
        let (limit, burst) = if kind == "leaky_bucket" {
            (1, 199)
        } else {
            (200, 0)
        };
        let limiter = Arc::new(limiter(&settings(
            &one_rule(kind, limit, 86_400, burst),
            redis_backend(),
        )));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut admitted = 0u32;
                    for _ in 0..25 {
                        if limiter.check(&user_facts("shared", 1)).await.allowed() {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        // 400 requests for a quota of 200.
        assert_eq!(admitted, 200, "{kind}");
    }
}

#[tokio::test]
async fn every_failure_policy_applies_when_redis_is_unreachable() {
    let toml = r#"
[[rule]]
name = "open"
scope = "user"
algorithm = "fixed_window"
limit = 1
window_secs = 60
paths = ["/open"]
on_backend_failure = "fail_open"
action = { kind = "reject" }

[[rule]]
name = "closed"
scope = "user"
algorithm = "fixed_window"
limit = 100
window_secs = 60
paths = ["/closed"]
on_backend_failure = "fail_closed"
action = { kind = "reject" }

[[rule]]
name = "local"
scope = "user"
algorithm = "fixed_window"
limit = 3
window_secs = 60
paths = ["/local"]
on_backend_failure = "local_fallback"
action = { kind = "reject" }
"#;
    // Nothing listens on port 1.
    let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
    let limiter = RateLimiter::new(
        &RateLimitSettings {
            config: Some(rules(toml)),
            backend: RateLimitBackend::Redis {
                url: "redis://127.0.0.1:1".into(),
                key_prefix: "unreachable".into(),
            },
            ..RateLimitSettings::default()
        },
        metrics.clone(),
    )
    .unwrap()
    .unwrap();
    let facts = |path| RequestFacts {
        user: Some("u"),
        method: "GET",
        path,
        ..RequestFacts::default()
    };
    let admitted = |path: &'static str| {
        let limiter = &limiter;
        async move {
            let mut n = 0;
            for _ in 0..10 {
                if limiter.check(&facts(path)).await.allowed() {
                    n += 1;
                }
            }
            n
        }
    };
    assert_eq!(admitted("/open").await, 10, "fail_open admits everything");
    assert_eq!(
        admitted("/closed").await,
        0,
        "fail_closed refuses everything"
    );
    assert_eq!(
        admitted("/local").await,
        3,
        "local_fallback enforces the limit here"
    );
    let text = metrics.encode();
    for (rule, policy) in [
        ("open", "fail_open"),
        ("closed", "fail_closed"),
        ("local", "local_fallback"),
    ] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("rate_limit_backend_failures_total")
                    && l.contains(&format!("rule=\"{rule}\""))
                    && l.contains(&format!("policy=\"{policy}\""))
            })
            .unwrap_or_else(|| panic!("no failure count for {rule}:\n{text}"));
        assert!(line.ends_with(" 10"), "{line}");
    }
}

#[tokio::test]
async fn the_server_keeps_serving_with_redis_down() {
    let backend = RateLimitBackend::Redis {
        url: "redis://127.0.0.1:1".into(),
        key_prefix: "unreachable".into(),
    };
    let app = app_with(PER_KEY, backend).await;
    let (_, key) = app.tenant("t", &[Scope::Read]).await;
    // per_key falls back to this process's limiter (the default policy): 3, then 429.
    for _ in 0..3 {
        assert_eq!(
            app.get("/api/v1/tenant", Some(&key.secret)).await.status,
            200
        );
    }
    app.get("/api/v1/tenant", Some(&key.secret))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert_eq!(app.get("/health", None).await.status, 200);
    app.cleanup().await;
}

#[test]
fn rules_too_large_for_exact_redis_arithmetic_are_refused_at_start() {
    let err = RateLimiter::new(
        &settings(
            &one_rule("token_bucket", 1 << 40, 86_400, 0),
            redis_backend(),
        ),
        Arc::new(telemetry::Metrics::new(Default::default())),
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(text.contains("rule `r`") && text.contains("2^52"), "{text}");
}

#[tokio::test]
async fn redis_keys_expire_with_their_rule() {
    let prefix = format!("test:rl:{}", uuid::Uuid::new_v4().simple());
    let limiter = limiter(&settings(
        &one_rule("sliding_window_log", 5, 60, 0),
        RateLimitBackend::Redis {
            url: redis_url(),
            key_prefix: prefix.clone(),
        },
    ));
    assert!(limiter.check(&user_facts("ttl", 1)).await.allowed());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in [
        format!("{{{prefix}}}:r:ttl"),
        format!("{{{prefix}}}:r:ttl:log"),
    ] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=60_001).contains(&ttl), "{key}: PTTL {ttl}");
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{{{prefix}}}:r:ttl"))
        .arg(format!("{{{prefix}}}:r:ttl:log"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_with_its_own_rules_is_decided_by_them_alone_in_memory_and_on_redis() {
    let per_tenant = |limit: u64| {
        format!(
            "[[rule]]\nname = \"per_tenant\"\nscope = \"tenant\"\nalgorithm = \"fixed_window\"\n\
             limit = {limit}\nwindow_secs = 3600\naction = {{ kind = \"reject\" }}\n"
        )
    };
    for backend in [RateLimitBackend::Memory, redis_backend()] {
        let mut settings = settings(&per_tenant(3), backend.clone());
        settings
            .tenant_configs
            .insert("tn_big".to_owned(), rules(&per_tenant(5)));
        let limiter = limiter(&settings);
        let admitted = |tenant: &'static str| {
            let limiter = &limiter;
            async move {
                let facts = RequestFacts {
                    tenant: Some(tenant),
                    method: "GET",
                    path: "/",
                    ..RequestFacts::default()
                };
                let mut n = 0;
                for _ in 0..10 {
                    if limiter.check(&facts).await.allowed() {
                        n += 1;
                    }
                }
                n
            }
        };
        // Same rule name in both files, counted apart.
        assert_eq!(admitted("tn_big").await, 5, "{backend:?}");
        assert_eq!(admitted("tn_small").await, 3, "{backend:?}");
        assert_eq!(limiter.policy(Some("tn_big")).rule_names().count(), 1);
    }
}

#[tokio::test]
async fn a_queue_action_holds_at_most_max_queued_requests() {
    let app = app_with(
        r#"
[[rule]]
name = "queued"
scope = "tenant"
algorithm = "leaky_bucket"
limit = 2
window_secs = 1
action = { kind = "queue", max_queued = 1, max_wait_ms = 5000 }
"#,
        RateLimitBackend::Memory,
    )
    .await;
    let (_, key) = app.tenant("t", &[Scope::Read]).await;
    // Two fit the bucket, one waits in the queue (~500 ms), the fourth finds the queue full.
    let reads = (0..4).map(|_| app.get("/api/v1/tenant", Some(&key.secret)));
    let replies = futures_util::future::join_all(reads).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let full: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!((ok, full.len()), (3, 1), "{replies:?}");
    let body = full[0].assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert!(
        body["detail"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );
    app.cleanup().await;
}

// --- the burst rule over HTTP: the shipped rules ----------------------------------------------

#[tokio::test]
async fn the_shipped_rules_admit_600_requests_a_minute_from_one_address() {
    // Seed 002's per-IP rule: 500 per minute plus a burst of 100 (the shipped default).
    let app = TestApp::new(Backend::Sqlite).await;
    let peer = "198.51.100.20:40000";
    for i in 0..600 {
        let reply = app.send(from_peer(peer, "/api/v1/tenant", &[])).await;
        // No key: the route answers 401, but every request is counted.
        assert_eq!(reply.status, 401, "request {i}: {}", reply.text());
    }
    let refused = app.send(from_peer(peer, "/api/v1/tenant", &[])).await;
    let body = refused.assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert_eq!(body["rule"], "ip_requests", "{body}");
    assert!(
        header(&refused, "ratelimit-policy").contains("\"ip_requests\";q=600;w=60"),
        "{:?}",
        refused.headers
    );
    // Another address has its own 600.
    let other = app
        .send(from_peer("198.51.100.21:40000", "/api/v1/tenant", &[]))
        .await;
    assert_eq!(other.status, 401);
    app.cleanup().await;
}

// --- trusted proxies ---------------------------------------------------------------------------

/// Two requests per address, then 429.
const PER_IP: &str = r#"
[[rule]]
name = "per_ip"
scope = "ip"
algorithm = "fixed_window"
limit = 2
window_secs = 3600
action = { kind = "reject" }
"#;

/// A request to `path` arriving from the socket address `peer`, with extra headers.
fn from_peer(peer: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

async fn app_behind(proxies: &str, toml: &str) -> TestApp {
    let config = ServerConfig {
        rate_limits: settings(toml, RateLimitBackend::Memory),
        trusted_proxies: proxies.parse().unwrap(),
        ..ServerConfig::default()
    };
    TestApp::with_config(Backend::Sqlite, config).await
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    for proxies in ["", "10.0.0.0/8"] {
        let app = app_behind(proxies, PER_IP).await;
        let client = "203.0.113.5:5000";
        // Each request claims another origin; all are the peer's.
        let spoofs: [&[(&str, &str)]; 3] = [
            &[("x-forwarded-for", "192.0.2.1")],
            &[
                ("forwarded", "for=192.0.2.2"),
                ("x-forwarded-for", "10.0.0.9"),
            ],
            &[("x-forwarded-for", "192.0.2.3, 10.0.0.2")],
        ];
        for headers in &spoofs[..2] {
            let reply = app.send(from_peer(client, "/health/none", headers)).await;
            assert_eq!(reply.status, 404, "proxies {proxies:?}: {}", reply.text());
        }
        app.send(from_peer(client, "/health/none", spoofs[2]))
            .await
            .assert_problem(429, "rate_limited", "/health/none");
        // The spoofed addresses were never charged.
        let reply = app
            .send(from_peer("192.0.2.1:1", "/health/none", &[]))
            .await;
        assert_eq!(reply.status, 404, "proxies {proxies:?}");
        assert!(
            header(&reply, "ratelimit").contains("r=1"),
            "{:?}",
            reply.headers
        );
        app.cleanup().await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let app = app_behind("10.0.0.0/8, 2001:db8::/32", PER_IP).await;
    let lb = "10.0.0.2:443";
    let via =
        |headers: &'static [(&'static str, &'static str)]| from_peer(lb, "/health/none", headers);
    // Client .1 twice (the second time with a spoofed left-most entry), then refused.
    assert_eq!(
        app.send(via(&[("x-forwarded-for", "198.51.100.1")]))
            .await
            .status,
        404
    );
    let spoofed = via(&[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.1.1.1")]);
    assert_eq!(app.send(spoofed).await.status, 404);
    app.send(via(&[("x-forwarded-for", "198.51.100.1")]))
        .await
        .assert_problem(429, "rate_limited", "/health/none");
    // Other clients behind the same balancer are not affected: X-Forwarded-For and Forwarded.
    assert_eq!(
        app.send(via(&[("x-forwarded-for", "198.51.100.2")]))
            .await
            .status,
        404
    );
    let forwarded = via(&[("forwarded", r#"for="[2001:db9::7]:4711";proto=https"#)]);
    assert_eq!(app.send(forwarded).await.status, 404);
    // A trusted IPv6 proxy forwarding client .2: the same client, its second request.
    let v6 = from_peer(
        "[2001:db8::10]:443",
        "/health/none",
        &[("x-forwarded-for", "198.51.100.2")],
    );
    assert_eq!(app.send(v6).await.status, 404);
    app.send(via(&[("x-forwarded-for", "198.51.100.2")]))
        .await
        .assert_problem(429, "rate_limited", "/health/none");
    // Malformed headers from the proxy never fail the request: they count against the proxy.
    for garbage in ["not-an-address", "unknown"] {
        let reply = app
            .send(from_peer(
                lb,
                "/health/none",
                &[("x-forwarded-for", garbage)],
            ))
            .await;
        assert_eq!(reply.status, 404, "{garbage}: {}", reply.text());
    }
    app.send(via(&[("forwarded", "for=_hidden")]))
        .await
        .assert_problem(429, "rate_limited", "/health/none");
    app.cleanup().await;
}

// --- user identity -----------------------------------------------------------------------------

/// Two requests per user, then 429.
const PER_USER: &str = r#"
[[rule]]
name = "per_user"
scope = "user"
algorithm = "fixed_window"
limit = 2
window_secs = 3600
action = { kind = "reject" }
"#;

fn as_user(key: &str, user: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .uri("/api/v1/tenant")
        .header("authorization", format!("Bearer {key}"));
    if let Some(user) = user {
        req = req.header("x-user-id", user);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn x_user_id_counts_only_from_keys_allowed_to_assert_users() {
    let app = app_with(PER_USER, RateLimitBackend::Memory).await;
    let (tenant, plain) = app.tenant("t", &[Scope::Read]).await;
    // A key without `assert_user`: the header is ignored, no user rule applies, never refused.
    for _ in 0..4 {
        let reply = app.send(as_user(&plain.secret, Some("ann"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.headers.get("ratelimit-policy").is_none(),
            "{:?}",
            reply.headers
        );
    }
    // A backend key allowed to assert users: ann's own budget, apart from bob's.
    let backend = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read, Scope::AssertUser].into_iter().collect(),
            None,
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let reply = app.send(as_user(&backend.secret, Some("ann"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            header(&reply, "ratelimit-policy"),
            "\"per_user\";q=2;w=3600"
        );
    }
    app.send(as_user(&backend.secret, Some("ann")))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    assert_eq!(
        app.send(as_user(&backend.secret, Some("bob"))).await.status,
        200
    );
    // Without the header, the backend key names no user.
    assert_eq!(app.send(as_user(&backend.secret, None)).await.status, 200);
    app.cleanup().await;
}

#[tokio::test]
async fn a_key_bound_to_a_user_is_limited_as_that_user_whatever_it_claims() {
    let app = app_with(PER_USER, RateLimitBackend::Memory).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    // Created through the API, bound to carol.
    let created = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&admin.secret),
            Some(serde_json::json!({"scopes": ["read"], "user_id": "carol"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["user_id"], "carol", "{created}");
    let carol_key = created["api_key"].as_str().unwrap().to_owned();
    let me = app.send(as_user(&carol_key, None)).await;
    assert_eq!(me.json()["user_id"], "carol");
    // Claiming another user changes nothing: carol's second request, then her budget is spent.
    let second = app.send(as_user(&carol_key, Some("dave"))).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert!(header(&second, "ratelimit").starts_with("\"per_user\";r=0;"));
    app.send(as_user(&carol_key, Some("dave")))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    // dave's own budget is untouched, and an asserting key speaking for carol shares hers.
    assert_eq!(
        app.send(as_user(&admin.secret, Some("dave"))).await.status,
        200
    );
    app.send(as_user(&admin.secret, Some("carol")))
        .await
        .assert_problem(429, "rate_limited", "/api/v1/tenant");
    // The binding is listed with the key; a bad user id is refused naming the field.
    let keys = app
        .get("/api/v1/tenant/keys", Some(&admin.secret))
        .await
        .json();
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["user_id"] == "carol"),
        "{keys}"
    );
    let bad = app
        .call(
            Method::POST,
            "/api/v1/tenant/keys",
            Some(&admin.secret),
            Some(serde_json::json!({"scopes": ["read"], "user_id": "two words"})),
        )
        .await;
    let body = bad.assert_problem(400, "invalid_field", "/api/v1/tenant/keys");
    assert!(body.to_string().contains("user_id"), "{body}");
    app.cleanup().await;
}

// --- the degrade action --------------------------------------------------------------------------

#[tokio::test]
async fn past_a_degrade_rule_segment_analytics_is_the_last_answer_and_says_so() {
    let app = app_with(
        r#"
[[rule]]
name = "cheap_analytics"
scope = "tenant"
algorithm = "fixed_window"
limit = 1
window_secs = 3600
paths = ["/api/v1/analytics/*", "/api/v1/tenant"]
action = { kind = "degrade" }
"#,
        RateLimitBackend::Memory,
    )
    .await;
    let (tenant, key) = app.tenant("t", &[Scope::Read]).await;
    let path = "/api/v1/analytics/weber-segments";
    let first = app.get(path, Some(&key.secret)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.headers.get("signalbox-degraded").is_none());
    assert_eq!(first.json()["total_users"], 0);
    // A profile arrives; the degraded answer is the last one, without a store query.
    app.fixture
        .store
        .upsert_weber_profiles(&tenant.id, &[crate::weber::profile_record("ann", 0.5)])
        .await
        .unwrap();
    let degraded = app.get(path, Some(&key.secret)).await;
    assert_eq!(degraded.status, 200, "{}", degraded.text());
    assert_eq!(header(&degraded, "signalbox-degraded"), "cheap_analytics");
    assert_eq!(degraded.json()["total_users"], 0, "the last answer");
    assert_eq!(degraded.json()["timestamp"], first.json()["timestamp"]);
    // A route with nothing cheaper to give serves the full answer, without the header.
    let full = app.get("/api/v1/tenant", Some(&key.secret)).await;
    assert_eq!(full.status, 200);
    assert!(
        full.headers.get("signalbox-degraded").is_none(),
        "{:?}",
        full.headers
    );
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("rule=\"cheap_analytics\"") && l.contains("decision=\"degraded\"")),
        "{metrics}"
    );
    app.cleanup().await;
}

// --- telemetry ingest ------------------------------------------------------------------------

/// An empty OTLP/HTTP export (valid, no spans) from `peer`.
fn otlp_export(peer: &str, key: &str, content_type: &str) -> Request<Body> {
    let body = match content_type {
        "application/json" => b"{}".to_vec(),
        _ => Vec::new(),
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/traces")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

#[tokio::test]
async fn the_shipped_rules_let_one_address_export_more_than_600_batches_a_minute() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("exporter", &[Scope::Write]).await;
    let peer = "198.51.100.30:40000";
    for i in 0..700 {
        let reply = app
            .send(otlp_export(peer, &key.secret, "application/x-protobuf"))
            .await;
        assert_eq!(reply.status, 200, "export {i}: {:?}", reply.headers);
        assert!(
            header(&reply, "ratelimit-policy").contains("\"telemetry_ingest\""),
            "{:?}",
            reply.headers
        );
    }
    // The exports spent nothing of the address's general budget.
    let other = app.send(from_peer(peer, "/api/v1/tenant", &[])).await;
    assert_eq!(other.status, 401, "{}", other.text());
    app.cleanup().await;
}

#[tokio::test]
async fn a_refused_otlp_export_gets_a_google_rpc_status_with_retry_after() {
    use prost::Message;
    let app = app_with(PER_KEY, RateLimitBackend::Memory).await;
    let (_, key) = app.tenant("exporter", &[Scope::Write]).await;
    let peer = "198.51.100.31:40000";
    for _ in 0..3 {
        let reply = app
            .send(otlp_export(peer, &key.secret, "application/x-protobuf"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let refused = app
        .send(otlp_export(peer, &key.secret, "application/x-protobuf"))
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.content_type(), "application/x-protobuf");
    let status = server::llm::otlp::RpcStatus::decode(&refused.body[..]).unwrap();
    assert_eq!(status.code, 8, "{status:?}");
    assert!(status.message.contains("per_key"), "{status:?}");
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");

    // In the request's encoding: OTLP/JSON gets the Status as JSON.
    let refused = app
        .send(otlp_export(peer, &key.secret, "application/json"))
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.content_type(), "application/json");
    let body = refused.json();
    assert_eq!(body["code"], 8, "{body}");
    assert!(body["message"].as_str().unwrap().contains("per_key"));

    // Counted as a rate-limit refusal like any other.
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        metrics.lines().any(|l| l.starts_with("errors_total")
            && l.contains("error_type=\"rate_limited\"")
            && l.contains("service=\"llm\"")),
        "{metrics}"
    );
    app.cleanup().await;
}
