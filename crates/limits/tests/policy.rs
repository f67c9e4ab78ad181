//! The configuration file and the policy built from it.

use limits::{
    ActionConfig, AlgorithmKind, Config, ConfigError, Outcome, Policy, RequestFacts, Scope, Tier,
    DEFAULT_TOML, NEVER,
};

const MINUTE_NS: u64 = 60_000_000_000;

fn parse_err(text: &str) -> ConfigError {
    Config::parse("limits.toml", text).expect_err("config should be refused")
}

const ONE_RULE: &str = r#"
[[rule]]
name = "per_user"
scope = "user"
algorithm = "fixed_window"
limit = 3
window_secs = 60
action = { kind = "reject" }
"#;

fn facts<'a>(user: &'a str, path: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        tenant: Some("t1"),
        user: Some(user),
        ip: Some("192.0.2.1"),
        api_key: None,
        tier: None,
        method: "GET",
        path,
        cost: None,
    }
}

#[test]
fn the_default_config_has_the_seed_rules_tiers_and_costs() {
    let config = Config::parse("default.toml", DEFAULT_TOML).unwrap();
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "global_requests",
            "tenant_requests",
            "user_requests",
            "ip_requests",
            "api_key_requests",
            "analytics_requests",
            "flag_evaluations",
            "flag_evaluations_tenant",
            "flag_evaluations_ip",
            "telemetry_ingest",
            "telemetry_ingest_tenant",
            "telemetry_ingest_ip"
        ]
    );
    let tenant = &config.rules[1];
    assert_eq!(tenant.scope, Scope::Tenant);
    assert_eq!(tenant.algorithm, AlgorithmKind::TokenBucket);
    let tiers: Vec<(u64, u64)> = Tier::ALL
        .iter()
        .map(|t| (tenant.tiers[t].limit.get(), tenant.tiers[t].burst))
        .collect();
    assert_eq!(
        tiers,
        [
            (1000, 100),
            (5000, 500),
            (15000, 3000),
            (50000, 10000),
            (100000, 20000)
        ]
    );
    let analytics = &config.rules[5];
    assert_eq!(analytics.algorithm, AlgorithmKind::LeakyBucket);
    assert_eq!(analytics.cost.map(|c| c.get()), Some(5));
    assert_eq!(analytics.window_secs.get(), 3600);
    assert!(matches!(analytics.action, ActionConfig::Degrade));
    let policy = Policy::new(&config, 1_000).unwrap();
    // Costs name signalbox's own routes; globs cover path parameters.
    assert_eq!(
        policy.endpoint_cost("/api/v1/experiments/checkout/results"),
        10
    );
    assert_eq!(policy.endpoint_cost("/api/v1/analytics/weber-segments"), 5);
    assert_eq!(
        policy.endpoint_cost("/api/v1/users/ann/weber-profile/update"),
        5
    );
    assert_eq!(policy.endpoint_cost("/api/v1/users/ann/weber-profile"), 1);
    assert_eq!(policy.endpoint_cost("/api/v1/forecast"), 2);
    assert_eq!(policy.endpoint_cost("/elsewhere"), 1);
}

/// Every path in the shipped cost table and rules is a route signalbox serves.
#[test]
fn the_default_config_names_only_signalbox_routes() {
    let config = Config::parse("default.toml", DEFAULT_TOML).unwrap();
    let routes = [
        "/api/v1/analytics/weber-segments",
        "/api/v1/experiments/{key}/results",
        "/api/v1/users/{user_id}/weber-profile/update",
        "/api/v1/interactions",
        "/api/v1/weber-profiles:batchGet",
        "/api/v1/forecast",
        "/forecast",
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/{key}",
        "/v1/traces",
        "/api/v1/llm/events",
    ];
    let patterns = config.costs.endpoints.keys().chain(
        config
            .rules
            .iter()
            .flat_map(|r| r.paths.iter().chain(&r.exclude_paths)),
    );
    for pattern in patterns {
        let glob = limits::Glob::new(pattern).unwrap();
        assert!(
            routes.iter().any(|r| glob.matches(r)),
            "{pattern} names no signalbox route"
        );
    }
}

/// Flag evaluation is decided by its own rules, keyed by API key, not by the per-IP 600 a minute.
#[test]
fn flag_evaluations_have_rules_of_their_own() {
    let config = Config::parse("default.toml", DEFAULT_TOML).unwrap();
    let policy = Policy::new(&config, 1_000).unwrap();
    let eval = RequestFacts {
        tenant: Some("tn_1"),
        ip: Some("198.51.100.7"),
        api_key: Some("key_1"),
        tier: Some(Tier::Free),
        method: "POST",
        path: "/ofrep/v1/evaluate/flags/new-checkout",
        ..RequestFacts::default()
    };
    let names: Vec<String> = policy
        .checks(&eval)
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "flag_evaluations",
            "flag_evaluations_tenant",
            "flag_evaluations_ip"
        ]
    );
    // A free-tier tenant's backend evaluating 5,000 flags within a second: all admitted.
    let admitted = (0..5_000u64)
        .filter(|i| policy.decide(&eval, MINUTE_NS + i * 200_000).allowed())
        .count();
    assert_eq!(admitted, 5_000);
    // Other routes still meet the seed's rules.
    let read = RequestFacts {
        path: "/api/v1/tenant",
        method: "GET",
        ..eval
    };
    assert!(policy
        .checks(&read)
        .iter()
        .any(|c| &**c.name == "ip_requests"));
}

/// Telemetry ingest is decided by its own rules: an SDK exporting from one host is not held to
/// the per-IP 600 a minute, and a refused key still has a bound.
#[test]
fn telemetry_ingest_has_rules_of_its_own() {
    let config = Config::parse("default.toml", DEFAULT_TOML).unwrap();
    let policy = Policy::new(&config, 1_000).unwrap();
    for path in ["/v1/traces", "/api/v1/llm/events"] {
        let export = RequestFacts {
            tenant: Some("tn_1"),
            ip: Some("198.51.100.7"),
            api_key: Some("key_1"),
            tier: Some(Tier::Free),
            method: "POST",
            path,
            ..RequestFacts::default()
        };
        let names: Vec<String> = policy
            .checks(&export)
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "telemetry_ingest",
                "telemetry_ingest_tenant",
                "telemetry_ingest_ip"
            ],
            "{path}"
        );
    }
    // A free-tier tenant's exporter sending 100 batches a second for a minute: all admitted
    // (the per-IP general rule would have refused from the 601st).
    let export = RequestFacts {
        tenant: Some("tn_2"),
        ip: Some("198.51.100.8"),
        api_key: Some("key_2"),
        tier: Some(Tier::Free),
        method: "POST",
        path: "/v1/traces",
        ..RequestFacts::default()
    };
    let admitted = (0..6_000u64)
        .filter(|i| policy.decide(&export, MINUTE_NS + i * 10_000_000).allowed())
        .count();
    assert_eq!(admitted, 6_000);
    // The key's budget is finite: of 10,000 more within the next second, the bucket's depth
    // (6,000 + 1,200) and that second's refill (100) are admitted.
    let next = MINUTE_NS + 60 * 1_000_000_000;
    let admitted = (0..10_000u64)
        .filter(|i| policy.decide(&export, next + i * 100_000).allowed())
        .count();
    assert!((7_200..=7_300).contains(&admitted), "{admitted}");
}

#[test]
fn unknown_field_is_refused_with_file_line_and_field() {
    let text = ONE_RULE.replace("limit = 3", "limit = 3\nlimt = 4");
    let e = parse_err(&text);
    assert_eq!(e.file, "limits.toml");
    assert_eq!(e.line, 7, "{e}");
    assert_eq!(e.field, "limt", "{e}");
    assert!(e.to_string().starts_with("limits.toml:7: limt:"), "{e}");
}

#[test]
fn wrong_type_is_refused_with_the_line_and_key() {
    let e = parse_err(&ONE_RULE.replace("limit = 3", "limit = \"three\""));
    assert_eq!((e.line, e.field.as_str()), (6, "limit"), "{e}");
    let e = parse_err(&ONE_RULE.replace("limit = 3", "limit = 0"));
    assert_eq!((e.line, e.field.as_str()), (6, "limit"), "{e}");
    assert!(e.message.contains("nonzero"), "{e}");
}

#[test]
fn unknown_enum_values_and_missing_fields_are_refused() {
    let e = parse_err(&ONE_RULE.replace("\"user\"", "\"planet\""));
    assert_eq!((e.line, e.field.as_str()), (4, "scope"), "{e}");
    let e = parse_err(&ONE_RULE.replace("{ kind = \"reject\" }", "{ kind = \"delay\" }"));
    assert_eq!(e.line, 8, "{e}");
    assert_eq!(e.field, "max_delay_ms", "{e}");
    let e = parse_err(&ONE_RULE.replace("window_secs = 60\n", ""));
    assert_eq!(e.field, "window_secs", "{e}");
    let e = parse_err(&format!(
        "{ONE_RULE}\n[rule.tiers]\ngold = {{ limit = 5 }}\n"
    ));
    assert_eq!(e.line, 11, "{e}");
}

#[test]
fn semantic_errors_name_the_rule_field_and_line() {
    let e = parse_err(&format!("{ONE_RULE}{ONE_RULE}"));
    assert_eq!((e.field.as_str(), e.line), ("rule[1].name", 11), "{e}");
    let e = parse_err(&ONE_RULE.replace("action", "paths = [\"api/*\"]\naction"));
    assert_eq!((e.field.as_str(), e.line), ("rule[0].paths", 8), "{e}");
    let e = parse_err(&ONE_RULE.replace("action", "methods = [\"get\"]\naction"));
    assert_eq!((e.field.as_str(), e.line), ("rule[0].methods", 8), "{e}");
    let e = parse_err(&format!("{ONE_RULE}\n[costs]\ndefault = 4\n"));
    assert_eq!(e.field, "rule[0].limit", "{e}");
    assert!(e.message.contains("cost 4"), "{e}");
    let e = parse_err("this is not toml");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn a_rule_refuses_past_its_limit_and_reports_headers_data() {
    let config = Config::parse("limits.toml", ONE_RULE).unwrap();
    let policy = Policy::new(&config, 100).unwrap();
    for left in (0..3).rev() {
        let v = policy.decide(&facts("u1", "/a"), 1_000);
        assert!(v.allowed());
        let s = v.most_restrictive().unwrap();
        assert_eq!(
            (&*s.name, s.quota, s.window_secs, s.remaining),
            ("per_user", 3, 60, left)
        );
    }
    let v = policy.decide(&facts("u1", "/a"), 2_000);
    assert_eq!(
        v.outcome,
        Outcome::Reject {
            retry_after_ns: MINUTE_NS - 2_000
        }
    );
    assert_eq!(v.decided_by.as_deref(), Some("per_user"));
    assert!(
        policy.decide(&facts("u2", "/a"), 2_000).allowed(),
        "other users unaffected"
    );
    // No user: the user rule does not apply.
    let mut anonymous = facts("u1", "/a");
    anonymous.user = None;
    let v = policy.decide(&anonymous, 2_000);
    assert!(v.allowed() && v.rules.is_empty());
}

#[test]
fn tiers_paths_methods_costs_shadow_and_actions() {
    let text = r#"
[[rule]]
name = "writes"
scope = "tenant"
algorithm = "token_bucket"
limit = 2
window_secs = 60
methods = ["POST"]
action = { kind = "delay", max_delay_ms = 40000 }
[rule.tiers]
business = { limit = 10, burst = 0 }

[[rule]]
name = "reports"
scope = "user"
algorithm = "leaky_bucket"
limit = 60
window_secs = 60
paths = ["/api/v1/reports/*"]
shadow = true
action = { kind = "reject" }

[costs.endpoints]
"/api/v1/reports/*" = 30
"#;
    let policy = Policy::new(&Config::parse("t.toml", text).unwrap(), 100).unwrap();
    let post = |tier, path| RequestFacts {
        tenant: Some("t1"),
        user: Some("u1"),
        tier,
        method: "POST",
        path,
        ..RequestFacts::default()
    };
    // GETs are not counted by the write rule.
    let mut get = post(None, "/x");
    get.method = "GET";
    for _ in 0..5 {
        assert!(policy.decide(&get, 0).allowed());
    }
    assert!(policy.decide(&post(None, "/x"), 0).allowed());
    assert!(policy.decide(&post(None, "/x"), 0).allowed());
    // Refill is 2 per minute: the third write waits 30 s, within the 40 s delay bound.
    assert_eq!(
        policy.decide(&post(None, "/x"), 0).outcome,
        Outcome::Delay {
            wait_ns: MINUTE_NS / 2
        }
    );
    // The business tier of another tenant has its own, larger quota.
    let mut business = post(Some(Tier::Business), "/x");
    business.tenant = Some("t2");
    for _ in 0..10 {
        assert!(policy.decide(&business, 0).allowed());
    }
    // The shadow rule: cost 30 out of 60, the third report would be refused but is served.
    let mut report = post(None, "/api/v1/reports/q1");
    report.method = "GET";
    report.tenant = Some("t3");
    assert!(policy.decide(&report, 0).allowed());
    assert!(policy.decide(&report, 0).allowed());
    let v = policy.decide(&report, 0);
    assert!(v.allowed());
    assert_eq!(v.shadow_refusals().count(), 1);
    assert!(
        v.most_restrictive().is_none(),
        "shadow rules are not advertised"
    );
}

#[test]
fn refusals_past_the_bound_are_rejections() {
    let text = ONE_RULE.replace(
        "{ kind = \"reject\" }",
        "{ kind = \"queue\", max_queued = 5, max_wait_ms = 1000 }",
    );
    let policy = Policy::new(&Config::parse("t.toml", &text).unwrap(), 100).unwrap();
    for _ in 0..3 {
        assert!(policy.decide(&facts("u", "/"), 0).allowed());
    }
    assert_eq!(
        policy.decide(&facts("u", "/"), MINUTE_NS - 1_000).outcome,
        Outcome::Queue {
            wait_ns: 1_000,
            max_queued: 5
        }
    );
    assert_eq!(
        policy.decide(&facts("u", "/"), 0).outcome,
        Outcome::Reject {
            retry_after_ns: MINUTE_NS
        }
    );
    assert_ne!(MINUTE_NS, NEVER);
}

#[test]
fn a_million_distinct_users_never_hold_more_than_the_key_cap() {
    // A hostile client inventing a user id per request cannot grow the limiter past its cap.
    let config = Config::parse("limits.toml", ONE_RULE).unwrap();
    let policy = Policy::new(&config, 10_000).unwrap();
    let mut most = 0;
    for i in 0..1_000_000u64 {
        let user = format!("u{i}");
        assert!(policy.decide(&facts(&user, "/a"), i).allowed());
        if i % 50_000 == 0 {
            most = most.max(policy.keys());
        }
    }
    most = most.max(policy.keys());
    assert!(most <= 10_000, "{most} keys held");
    assert!(policy.evictions() >= 990_000, "{}", policy.evictions());
}

#[test]
fn checks_then_verdict_is_decide_and_a_request_cost_replaces_the_endpoint_cost() {
    let config = Config::parse("limits.toml", ONE_RULE).unwrap();
    let policy = Policy::new(&config, 100).unwrap();
    let mut heavy = facts("u1", "/a");
    heavy.cost = Some(2);
    let checks = policy.checks(&heavy);
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].cost, checks[0].limit, checks[0].capacity),
        (2, 3, 3)
    );
    let decisions: Vec<_> = checks
        .iter()
        .map(|c| policy.check_locally(c, 1_000))
        .collect();
    let verdict = policy.verdict(&checks, &decisions);
    assert!(verdict.allowed());
    assert_eq!(verdict.rules[0].remaining, 1);
    // The same limiter: one unit left, so a second request of 2 is refused.
    let refused = policy.decide(&heavy, 2_000);
    assert!(matches!(refused.outcome, Outcome::Reject { .. }));
    assert_eq!(policy.max_wait_ns("per_user"), None);
}

// --- the burst allowance on window algorithms (seed 002: limit = requests_per_window + burst) ---

const WINDOW_KINDS: [&str; 3] = ["fixed_window", "sliding_window_log", "sliding_window"];

fn window_rule(kind: &str, limit: u64, burst: u64) -> Policy {
    let text = format!(
        "[[rule]]\nname = \"r\"\nscope = \"user\"\nalgorithm = \"{kind}\"\nlimit = {limit}\n\
         window_secs = 60\nburst = {burst}\naction = {{ kind = \"reject\" }}\n"
    );
    Policy::new(&Config::parse("limits.toml", &text).unwrap(), 100).unwrap()
}

#[test]
fn every_window_algorithm_admits_limit_plus_burst_per_window() {
    for kind in WINDOW_KINDS {
        let policy = window_rule(kind, 5, 2);
        let t0 = 10 * MINUTE_NS;
        for i in 0..7u64 {
            let v = policy.decide(&facts("u", "/a"), t0 + i);
            assert!(v.allowed(), "{kind}: request {i} refused");
            assert_eq!(v.rules[0].quota, 7, "{kind}: q is limit + burst");
            assert_eq!(v.rules[0].remaining, 6 - i, "{kind}");
        }
        let v = policy.decide(&facts("u", "/a"), t0 + 7);
        assert!(
            matches!(v.outcome, Outcome::Reject { .. }),
            "{kind}: the eighth request was admitted"
        );
        // Without a burst, the limit alone.
        let policy = window_rule(kind, 5, 0);
        let admitted = (0..7)
            .filter(|i| policy.decide(&facts("u", "/a"), t0 + i).allowed())
            .count();
        assert_eq!(admitted, 5, "{kind}");
    }
}

#[test]
fn the_shipped_rules_admit_exactly_600_per_minute_from_one_address() {
    // Seed 002's per-IP rule: 500 per minute plus a burst of 100.
    let config = Config::parse("default.toml", DEFAULT_TOML).unwrap();
    let policy = Policy::new(&config, 1_000).unwrap();
    let from = |ip| RequestFacts {
        ip: Some(ip),
        method: "GET",
        path: "/api/v1/tenant",
        ..RequestFacts::default()
    };
    // 601 requests spread over one minute-aligned window.
    let t0 = 100 * MINUTE_NS;
    let step = MINUTE_NS / 700;
    let mut admitted = 0;
    let mut refused_by = None;
    for i in 0..601u64 {
        let v = policy.decide(&from("198.51.100.7"), t0 + i * step);
        if v.allowed() {
            admitted += 1;
        } else {
            refused_by = v.decided_by.clone();
        }
    }
    assert_eq!(admitted, 600);
    assert_eq!(refused_by.as_deref(), Some("ip_requests"));
    let v = policy.decide(&from("198.51.100.8"), t0 + 601 * step);
    assert!(v.allowed(), "another address has its own 600");
    let ip = v.rules.iter().find(|r| &*r.name == "ip_requests").unwrap();
    assert_eq!((ip.quota, ip.remaining), (600, 599));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    /// A window rule with `burst` decides every request as its algorithm with a limit of
    /// `limit + burst` does (the algorithms themselves are checked against reference models in
    /// `algorithms.rs`), and its capacity is `limit + burst`.
    #[test]
    fn a_window_rule_with_a_burst_is_its_algorithm_with_limit_plus_burst(
        kind in 0usize..3,
        limit in 1u64..20,
        burst in 0u64..20,
        steps in proptest::collection::vec((0u64..30_000_000_000, 0u64..8), 1..80),
    ) {
        use limits::{Algorithm, AnyAlgorithm, FixedWindow, SlidingWindowCounter, SlidingWindowLog};
        let name = WINDOW_KINDS[kind];
        let policy = window_rule(name, limit, burst);
        let capacity = limit + burst;
        let reference = match kind {
            0 => AnyAlgorithm::FixedWindow(FixedWindow::new(capacity, MINUTE_NS).unwrap()),
            1 => AnyAlgorithm::SlidingWindowLog(SlidingWindowLog::new(capacity, MINUTE_NS).unwrap()),
            _ => AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(capacity, MINUTE_NS).unwrap()),
        };
        let mut state = Default::default();
        let mut now = 0;
        for (gap, cost) in steps {
            now += gap;
            let mut f = facts("u", "/a");
            f.cost = Some(cost.max(1));
            let checks = policy.checks(&f);
            proptest::prop_assert_eq!(checks[0].capacity, capacity);
            let expected = reference.check(&mut state, now, cost.max(1));
            let got = policy.decide(&f, now);
            proptest::prop_assert_eq!(got.rules[0].allowed, expected.allowed);
            proptest::prop_assert_eq!(got.rules[0].remaining, expected.remaining);
            proptest::prop_assert_eq!(got.rules[0].reset_after_ns, expected.reset_after_ns);
        }
    }
}
