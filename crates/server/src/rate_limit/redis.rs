//! The shared rate-limit backend: every rule of a request decided by one Lua script in one
//! round trip (`check.lua`), so replicas sharing a Redis enforce one limit.
//!
//! Keys are `{PREFIX}:RULE:ID` (and `…:log` for the sliding log), `{PREFIX}:@TENANT:RULE:ID` for
//! a tenant's own rules. The braces are a Redis Cluster
//! hash tag: every key of a deployment hashes to one slot, which a script touching several keys
//! requires. Every key carries a TTL of its algorithm's horizon, so idle keys leave by
//! themselves.

use std::time::{Duration, Instant};

use limits::{Check, Decision, NEVER};
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

const SCRIPT: &str = include_str!("check.lua");

/// The largest `limit × window` or `capacity × window` (in microseconds) the script computes
/// with exactly: Lua numbers are doubles, exact for integers below 2^53, and the script adds two
/// such products.
pub(crate) const MAX_EXACT: u128 = 1 << 52;

/// The script's number for an algorithm.
fn algorithm_code(kind: limits::AlgorithmKind) -> u8 {
    match kind {
        limits::AlgorithmKind::FixedWindow => 1,
        limits::AlgorithmKind::SlidingWindowLog => 2,
        limits::AlgorithmKind::SlidingWindow => 3,
        limits::AlgorithmKind::TokenBucket => 4,
        limits::AlgorithmKind::LeakyBucket => 5,
    }
}

/// Redis could not decide (unreachable, timed out, marked down, or an unexpected reply).
#[derive(Debug)]
pub(crate) struct Unavailable(pub String);

/// A lazily opened connection, dropped on the first error and not retried until `retry_after`
/// has passed, so an outage costs one failed attempt per period instead of one per request.
pub(crate) struct RedisBackend {
    client: redis::Client,
    prefix: String,
    script: redis::Script,
    op_timeout: Duration,
    retry_after: Duration,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    conn: Option<MultiplexedConnection>,
    down_until: Option<Instant>,
}

impl RedisBackend {
    /// A backend for `url`, with keys under `{prefix}`. Nothing is connected yet.
    pub(crate) fn new(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
        retry_after: Duration,
    ) -> Result<RedisBackend, redis::RedisError> {
        Ok(RedisBackend {
            client: redis::Client::open(url)?,
            prefix: format!("{{{prefix}}}"),
            script: redis::Script::new(SCRIPT),
            op_timeout,
            retry_after,
            state: Mutex::new(ConnState::default()),
        })
    }

    /// How long after a failure Redis is tried again.
    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            return Ok(conn.clone());
        }
        if state.down_until.is_some_and(|until| Instant::now() < until) {
            return Err(Unavailable("Redis marked down after a failure".into()));
        }
        let connect = self.client.get_multiplexed_async_connection();
        let why = match tokio::time::timeout(self.op_timeout, connect).await {
            Ok(Ok(conn)) => {
                if state.down_until.take().is_some() {
                    tracing::info!("rate limits: Redis reachable again");
                }
                state.conn = Some(conn.clone());
                return Ok(conn);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_owned(),
        };
        self.mark_down(&mut state, &why);
        Err(Unavailable(why))
    }

    fn mark_down(&self, state: &mut ConnState, why: &str) {
        if state.down_until.is_none() {
            // Once per outage, not per request.
            tracing::warn!(
                error = why,
                "rate limits: Redis unavailable, applying each rule's on_backend_failure policy"
            );
        }
        state.conn = None;
        state.down_until = Some(Instant::now() + self.retry_after);
    }

    /// Decides `checks` in order, stopping after the first enforcing refusal, at `now_us`
    /// microseconds (`None`: Redis's clock, shared by every replica). `namespace` keeps one rule
    /// set's keys apart from another's (`""` for the default rules).
    pub(crate) async fn decide(
        &self,
        namespace: &str,
        checks: &[Check<'_>],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, Unavailable> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now_us.unwrap_or(0)).arg(checks.len());
        for check in checks {
            let key = if namespace.is_empty() {
                format!("{}:{}:{}", self.prefix, check.name, check.key)
            } else {
                format!("{}:{namespace}:{}:{}", self.prefix, check.name, check.key)
            };
            invocation.key(&key).key(format!("{key}:log"));
            let window_us = check.window_secs.saturating_mul(1_000_000);
            invocation
                .arg(algorithm_code(check.kind))
                .arg(check.limit)
                .arg(window_us)
                .arg(check.capacity)
                .arg(check.cost)
                .arg(u8::from(check.shadow));
        }
        let conn = self.connection().await?;
        let mut conn_for_call = conn;
        let call = invocation.invoke_async::<Vec<Vec<i64>>>(&mut conn_for_call);
        let why = match tokio::time::timeout(self.op_timeout, call).await {
            Ok(Ok(rows)) => return parse(&rows, checks.len()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "script timed out".to_owned(),
        };
        let mut state = self.state.lock().await;
        self.mark_down(&mut state, &why);
        Err(Unavailable(why))
    }
}

fn parse(rows: &[Vec<i64>], planned: usize) -> Result<Vec<Decision>, Unavailable> {
    if rows.is_empty() && planned > 0 || rows.len() > planned {
        return Err(Unavailable(format!(
            "the script answered {} checks of {planned}",
            rows.len()
        )));
    }
    let us_to_ns = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1_000);
    rows.iter()
        .map(|row| match row.as_slice() {
            &[allowed, remaining, reset, retry] => Ok(Decision {
                allowed: allowed == 1,
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset_after_ns: us_to_ns(reset),
                retry_after_ns: if retry < 0 { NEVER } else { us_to_ns(retry) },
            }),
            other => Err(Unavailable(format!("unexpected script reply {other:?}"))),
        })
        .collect()
}

/// The SHA-1 Redis knows the script by (for `EVALSHA` from other tools).
pub fn script_hash() -> String {
    redis::Script::new(SCRIPT).get_hash().to_owned()
}

/// Connects to `url` and sends `PING`.
pub async fn probe(url: &str) -> Result<(), redis::RedisError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await
}

/// Whether a rule's numbers fit the script's exact arithmetic.
pub(crate) fn exact_in_redis(limit: u64, capacity: u64, window_secs: u64) -> bool {
    let window_us = u128::from(window_secs) * 1_000_000;
    u128::from(limit.max(capacity)) * window_us <= MAX_EXACT
}
