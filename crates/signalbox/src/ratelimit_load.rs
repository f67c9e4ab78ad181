//! `signalbox loadtest --scenario rate-limit-redis`: rate-limit checks per second against a
//! Redis on this machine, through the same `RateLimiter` the server uses (one Lua script per
//! check, over one multiplexed connection), with latency percentiles. It prints the
//! `redis-benchmark` command that runs the same script with the same arguments, so the two can be
//! compared in one sitting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

pub struct RateLimitLoadPlan {
    pub redis_url: String,
    pub connections: usize,
    pub duration: Duration,
    /// Distinct user keys the checks spread over.
    pub keys: u64,
}

#[derive(Serialize)]
pub struct RateLimitLoadReport {
    pub checks: u64,
    pub checks_per_second: f64,
    pub allowed: u64,
    pub refused: u64,
    pub backend_failures: u64,
    pub elapsed_seconds: f64,
    pub latency_ms: loadtest::LatencySummary,
    pub tasks: usize,
    pub keys: u64,
    /// The same script with the same arguments through `redis-benchmark`, for comparison.
    pub redis_benchmark: String,
}

/// One token-bucket rule per user, generous enough that every check updates state and admits.
const RULES: &str = r#"
[[rule]]
name = "load"
scope = "user"
algorithm = "token_bucket"
limit = 1000000
window_secs = 60
action = { kind = "reject" }
"#;

/// Refuses anything but a Redis on the loopback interface.
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("redis://")
        .context("url: the rate-limit-redis scenario takes redis://HOST:PORT")?;
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = host.split(['/', '?']).next().unwrap_or(host);
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        anyhow::bail!("url: {host} is not a loopback address; load tests only target this machine");
    }
    Ok(())
}

pub async fn run(plan: RateLimitLoadPlan) -> anyhow::Result<RateLimitLoadReport> {
    check_loopback(&plan.redis_url)?;
    if plan.keys == 0 {
        anyhow::bail!("keys: must be at least 1");
    }
    let prefix = format!("loadtest:rl:{}", uuid::Uuid::new_v4().simple());
    let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
    let settings = server::RateLimitSettings {
        config: Some(limits::Config::parse("load.toml", RULES)?),
        backend: server::RateLimitBackend::Redis {
            url: plan.redis_url.clone(),
            key_prefix: prefix.clone(),
        },
        ..Default::default()
    };
    let limiter = Arc::new(
        server::RateLimiter::new(&settings, metrics.clone())?.context("rate limiting is on")?,
    );
    // One check first, so a Redis that is down stops the run with a clear message.
    let probe = server::rate_limit::probe_redis(&plan.redis_url).await;
    probe.with_context(|| format!("url: cannot reach Redis at {}", plan.redis_url))?;

    let stop = Arc::new(AtomicBool::new(false));
    let next_key = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..plan.connections)
        .map(|_| {
            let limiter = limiter.clone();
            let stop = stop.clone();
            let next_key = next_key.clone();
            let keys = plan.keys;
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                    .expect("valid histogram bounds");
                let (mut allowed, mut refused) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let user = (next_key.fetch_add(1, Ordering::Relaxed) % keys).to_string();
                    let facts = limits::RequestFacts {
                        user: Some(&user),
                        method: "GET",
                        path: "/",
                        ..Default::default()
                    };
                    let t = Instant::now();
                    let verdict = limiter.check(&facts).await;
                    let _ = hist.record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    if verdict.allowed() {
                        allowed += 1;
                    } else {
                        refused += 1;
                    }
                }
                (hist, allowed, refused)
            })
        })
        .collect();
    tokio::time::sleep(plan.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut allowed, mut refused) = (0, 0);
    for task in tasks {
        let (h, a, r) = task.await?;
        hist.add(h)?;
        allowed += a;
        refused += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let checks = allowed + refused;
    let backend_failures = metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("rate_limit_backend_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let redis_benchmark = format!(
        "redis-benchmark -q -c {} -n {} -r {} evalsha {} 2 '{{{prefix}}}:load:__rand_int__' \
         '{{{prefix}}}:load:__rand_int__:log' 0 1 4 1000000 60000000 1000000 1 0",
        plan.connections.max(1),
        checks.max(1),
        plan.keys,
        server::rate_limit::redis_script_hash(),
    );
    Ok(RateLimitLoadReport {
        checks,
        checks_per_second: checks as f64 / elapsed,
        allowed,
        refused,
        backend_failures,
        elapsed_seconds: elapsed,
        latency_ms: loadtest::LatencySummary::from_nanos(&hist),
        tasks: plan.connections,
        keys: plan.keys,
        redis_benchmark,
    })
}
