//! Rate limits as an operator runs them: two `signalbox serve` processes sharing Redis enforce
//! one limit, a server whose Redis is unreachable keeps serving under each rule's failure
//! policy, and a malformed rules file stops the start naming the file, line and field.

mod support;

use std::path::Path;

use support::{json_lines, run_err, run_ok, signalbox, Server};

fn redis_url() -> String {
    std::env::var("SIGNALBOX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn write_rules(dir: &Path, toml: &str) -> String {
    let path = dir.join("limits.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_servers_sharing_redis_enforce_one_global_limit_exactly() {
    let fixture = store::testing::TestStore::postgres().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let rules = write_rules(
        dirs[0].path(),
        r#"
[[rule]]
name = "everyone"
scope = "global"
algorithm = "sliding_window_log"
limit = 40
window_secs = 3600
action = { kind = "reject" }
"#,
    );
    let prefix = format!("test:rl:{}", uuid::Uuid::new_v4().simple());
    let command = |dir: &Path| {
        let mut cmd = signalbox(dir);
        cmd.env("DATABASE_URL", &fixture.options.url)
            .env(
                "SIGNALBOX_DATABASE_SCHEMA",
                fixture.options.schema.as_deref().unwrap(),
            )
            // Server::start appends `serve`, so serve's settings go through the environment.
            .env("SIGNALBOX_DEMO", "false")
            .env("SIGNALBOX_RATE_LIMITS", &rules)
            .env("SIGNALBOX_RATE_LIMIT_BACKEND", "redis")
            .env("SIGNALBOX_RATE_LIMIT_KEY_PREFIX", &prefix)
            .env("REDIS_URL", redis_url());
        cmd
    };
    let created = json_lines(&run_ok(
        command(dirs[0].path()).args(["tenants", "create", "shared"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap().to_owned();
    let servers = [
        Server::start(&mut command(dirs[0].path())),
        Server::start(&mut command(dirs[1].path())),
    ];
    // 100 requests, alternating between the processes, from four threads.
    let outcomes: Vec<(u16, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let addrs = [servers[0].addr.clone(), servers[1].addr.clone()];
                let key = &key;
                scope.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let which = (t + i) % 2;
                            (
                                support::get_raw(&addrs[which], "/api/v1/tenant", key).0,
                                which,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let limited = outcomes.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((ok, limited), (40, 60), "{outcomes:?}");
    // Both processes refused some: the limit is one, not one each.
    for which in 0..2 {
        assert!(
            outcomes.iter().any(|&(s, w)| s == 200 && w == which),
            "server {which} admitted none"
        );
    }
    fixture.cleanup().await;
}

#[test]
fn with_redis_unreachable_each_rule_follows_its_failure_policy_and_the_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        r#"
[[rule]]
name = "tenant_reads"
scope = "api_key"
algorithm = "fixed_window"
limit = 2
window_secs = 3600
paths = ["/api/v1/tenant"]
on_backend_failure = "local_fallback"
action = { kind = "reject" }

[[rule]]
name = "key_listing"
scope = "api_key"
algorithm = "fixed_window"
limit = 1000
window_secs = 3600
paths = ["/api/v1/tenant/keys"]
on_backend_failure = "fail_closed"
action = { kind = "reject" }

[[rule]]
name = "catalogue"
scope = "api_key"
algorithm = "fixed_window"
limit = 1
window_secs = 3600
paths = ["/api/v1/flags"]
on_backend_failure = "fail_open"
action = { kind = "reject" }
"#,
    );
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "outage"]),
    ));
    let key = created[0]["api_key"].as_str().unwrap().to_owned();
    // Nothing listens on port 1.
    let server = Server::start(
        signalbox(dir.path())
            .env("SIGNALBOX_DEMO", "false")
            .env("SIGNALBOX_RATE_LIMITS", &rules)
            .env("SIGNALBOX_RATE_LIMIT_BACKEND", "redis")
            .env("REDIS_URL", "redis://127.0.0.1:1"),
    );
    let statuses = |path: &str, n: usize| -> Vec<u16> {
        (0..n).map(|_| server.get_raw(path, &key).0).collect()
    };
    assert_eq!(
        statuses("/api/v1/tenant", 4),
        [200, 200, 429, 429],
        "local fallback"
    );
    assert_eq!(
        statuses("/api/v1/tenant/keys", 2),
        [429, 429],
        "fail closed"
    );
    let (status, headers, _) = server.get_raw("/api/v1/tenant/keys", &key);
    assert_eq!(status, 429);
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "1"),
        "{headers:?}"
    );
    assert_eq!(statuses("/api/v1/flags", 3), [200, 200, 200], "fail open");
    assert_eq!(server.get_raw("/health", &key).0, 200);
    let (_, _, metrics) = server.get_raw("/metrics", &key);
    for policy in ["local_fallback", "fail_closed", "fail_open"] {
        assert!(
            metrics.contains(&format!("policy=\"{policy}\"")),
            "{policy} not counted:\n{metrics}"
        );
    }
}

#[test]
fn a_malformed_rules_file_stops_the_start_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[[rule]]\nname = \"a\"\nscope = \"user\"\nalgorithm = \"fixed_window\"\nlimt = 5\n\
         window_secs = 60\naction = { kind = \"reject\" }\n",
    );
    let (_, stderr) = run_err(signalbox(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limits",
        &rules,
    ]));
    assert!(
        stderr.contains(&format!("{rules}:5: limt: unknown field `limt`")),
        "{stderr}"
    );
    let (_, stderr) = run_err(signalbox(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limits",
        &dir.path().join("missing.toml").to_string_lossy(),
    ]));
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let (_, stderr) = run_err(signalbox(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit-backend",
        "redis",
    ]));
    assert!(stderr.contains("--redis-url"), "{stderr}");
}

#[test]
fn a_malformed_tenant_rules_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("limits.d");
    std::fs::create_dir(&tenants).unwrap();
    std::fs::write(
        tenants.join("tn_acme.toml"),
        "[[rule]]\nname = \"a\"\nscope = \"tenant\"\nalgorithm = \"fixed_window\"\nlimit = 0\n\
         window_secs = 60\naction = { kind = \"reject\" }\n",
    )
    .unwrap();
    let (_, stderr) = run_err(signalbox(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limits-dir",
        tenants.to_str().unwrap(),
    ]));
    assert!(
        stderr.contains("tn_acme.toml:5: limit: invalid value"),
        "{stderr}"
    );
}
