//! The Redis layer: connection handling that degrades instead of failing, the value codec,
//! and prefix deletion by `SCAN` + `UNLINK`.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::stats::{bump, LayerCounters};

/// First byte of every stored value: how the rest is encoded.
const TAG_RAW: u8 = 0;
const TAG_GZIP: u8 = 1;

/// Encodes a value for Redis: a tag byte, then the value, gzip-compressed when it is longer
/// than `compress_over` and compression actually made it shorter.
pub(crate) fn encode(value: &[u8], compress_over: Option<usize>) -> Vec<u8> {
    if compress_over.is_some_and(|over| value.len() > over) {
        let mut out = Vec::with_capacity(value.len() / 2 + 16);
        out.push(TAG_GZIP);
        let mut encoder = GzEncoder::new(out, flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        if std::io::Write::write_all(&mut encoder, value).is_ok() {
            if let Ok(out) = encoder.finish() {
                if out.len() < value.len() + 1 {
                    return out;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(value.len() + 1);
    out.push(TAG_RAW);
    out.extend_from_slice(value);
    out
}

/// Decodes a stored value. `None` for an unknown tag, corrupt data, or a value that inflates
/// past `max_bytes` (so a crafted entry cannot make this process allocate without bound).
pub(crate) fn decode(stored: &[u8], max_bytes: usize) -> Option<Bytes> {
    let (&tag, body) = stored.split_first()?;
    match tag {
        TAG_RAW if body.len() <= max_bytes => Some(Bytes::copy_from_slice(body)),
        TAG_GZIP => {
            let mut out = Vec::new();
            let limit = u64::try_from(max_bytes)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            GzDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out)
                .ok()?;
            (out.len() <= max_bytes).then(|| Bytes::from(out))
        }
        _ => None,
    }
}

/// A Redis connection that is opened lazily, dropped on the first error, and not retried
/// until `retry_after` has passed, so a Redis outage costs one failed attempt per period
/// instead of one per read.
pub(crate) struct RedisLayer {
    client: redis::Client,
    pub prefix: String,
    op_timeout: Duration,
    retry_after: Duration,
    pub scan_batch: usize,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    conn: Option<MultiplexedConnection>,
    down_until: Option<Instant>,
}

/// Redis could not be asked (down, timed out, or marked down); already counted.
pub(crate) struct Unavailable;

/// A value read from Redis with its remaining time to live.
pub(crate) struct Found {
    pub stored: Vec<u8>,
    pub remaining: Duration,
}

impl RedisLayer {
    pub fn new(
        client: redis::Client,
        prefix: String,
        op_timeout: Duration,
        retry_after: Duration,
        scan_batch: usize,
    ) -> Self {
        Self {
            client,
            prefix,
            op_timeout,
            retry_after,
            scan_batch,
            state: Mutex::new(ConnState::default()),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A connection, or `None` while Redis is marked down (counted as skipped) or when
    /// connecting fails (counted as an error, and Redis is marked down).
    async fn connection(&self, counters: &LayerCounters) -> Option<MultiplexedConnection> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            return Some(conn.clone());
        }
        if state.down_until.is_some_and(|until| Instant::now() < until) {
            bump(&counters.skipped);
            return None;
        }
        let connect = self.client.get_multiplexed_async_connection();
        match tokio::time::timeout(self.op_timeout, connect).await {
            Ok(Ok(conn)) => {
                if state.down_until.take().is_some() {
                    tracing::info!("cache: Redis reachable again");
                }
                state.conn = Some(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                self.mark_down(&mut state, counters, &e.to_string());
                None
            }
            Err(_) => {
                self.mark_down(&mut state, counters, "connect timed out");
                None
            }
        }
    }

    fn mark_down(&self, state: &mut ConnState, counters: &LayerCounters, why: &str) {
        bump(&counters.errors);
        if state.down_until.is_none() {
            // Logged once per outage, not per failed operation.
            tracing::warn!(
                error = why,
                "cache: Redis unavailable, serving from memory only"
            );
        }
        state.conn = None;
        state.down_until = Some(Instant::now() + self.retry_after);
    }

    /// Runs one command (or pipeline) with the operation timeout; on failure the connection is
    /// dropped and Redis marked down.
    async fn run<T: redis::FromRedisValue>(
        &self,
        counters: &LayerCounters,
        cmd: impl FnOnce(MultiplexedConnection) -> BoxedQuery<T>,
    ) -> Option<T> {
        let conn = self.connection(counters).await?;
        let outcome = tokio::time::timeout(self.op_timeout, cmd(conn)).await;
        let why = match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "operation timed out".to_owned(),
        };
        let mut state = self.state.lock().await;
        self.mark_down(&mut state, counters, &why);
        None
    }

    /// `GET` and `PTTL` in one round trip: `Ok(None)` on a miss, `Err` when Redis is
    /// unavailable (already counted).
    pub async fn get(
        &self,
        key: &str,
        counters: &LayerCounters,
    ) -> Result<Option<Found>, Unavailable> {
        let key = self.key(key);
        let (stored, pttl): (Option<Vec<u8>>, i64) = self
            .run(counters, move |mut conn| {
                Box::pin(async move {
                    redis::pipe()
                        .cmd("GET")
                        .arg(&key)
                        .cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                })
            })
            .await
            .ok_or(Unavailable)?;
        // PTTL is -2 when the key expired between the two commands and -1 without an expiry
        // (not written by this crate); neither is served.
        let remaining = u64::try_from(pttl).ok().filter(|&ms| ms > 0);
        Ok(stored.zip(remaining).map(|(stored, ms)| Found {
            stored,
            remaining: Duration::from_millis(ms),
        }))
    }

    /// `SET key value PX ttl`, with `NX` when `only_if_absent`. `Some(true)` when written,
    /// `Some(false)` when `NX` found the key, `None` when Redis failed (already counted).
    pub async fn set(
        &self,
        key: &str,
        stored: Vec<u8>,
        ttl: Duration,
        only_if_absent: bool,
        counters: &LayerCounters,
    ) -> Option<bool> {
        let key = self.key(key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: redis::Value = self
            .run(counters, move |mut conn| {
                Box::pin(async move {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&key).arg(stored).arg("PX").arg(ttl_ms);
                    if only_if_absent {
                        cmd.arg("NX");
                    }
                    cmd.query_async(&mut conn).await
                })
            })
            .await?;
        // `OK` when set; nil when `NX` found the key.
        Some(!matches!(reply, redis::Value::Nil))
    }

    /// `UNLINK key`. Returns whether Redis answered.
    pub async fn delete(&self, key: &str, counters: &LayerCounters) -> bool {
        let key = self.key(key);
        self.run::<()>(counters, move |mut conn| {
            Box::pin(async move { redis::cmd("UNLINK").arg(&key).query_async(&mut conn).await })
        })
        .await
        .is_some()
    }

    /// Deletes every key under `prefix`: `SCAN MATCH` in batches of `scan_batch`, each batch
    /// `UNLINK`ed (freed by Redis in the background). Returns the number of keys removed, or
    /// `None` if Redis failed part way (some keys may be left; they expire by their TTL).
    pub async fn delete_prefix(&self, prefix: &str, counters: &LayerCounters) -> Option<u64> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let pattern = pattern.clone();
            let batch = self.scan_batch;
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run(counters, move |mut conn| {
                    Box::pin(async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(batch)
                            .query_async(&mut conn)
                            .await
                    })
                })
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .run(counters, move |mut conn| {
                        Box::pin(async move {
                            redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await
                        })
                    })
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Some(removed);
            }
            cursor = next;
        }
    }
}

type BoxedQuery<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = redis::RedisResult<T>> + Send>>;

/// Escapes Redis glob metacharacters, so a prefix is matched literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_stored_raw_and_large_ones_compressed() {
        let small = b"{\"a\":1}";
        let stored = encode(small, Some(16));
        assert_eq!(stored[0], TAG_RAW);
        assert_eq!(decode(&stored, 1024).unwrap(), &small[..]);

        let large = "ab".repeat(1000);
        let stored = encode(large.as_bytes(), Some(16));
        assert_eq!(stored[0], TAG_GZIP);
        assert!(stored.len() < large.len() / 4, "{} bytes", stored.len());
        assert_eq!(decode(&stored, 4096).unwrap(), large.as_bytes());

        // No threshold: never compressed.
        assert_eq!(encode(large.as_bytes(), None)[0], TAG_RAW);
    }

    #[test]
    fn incompressible_values_stay_raw() {
        // xorshift64 output: no structure gzip can use.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let stored = encode(&noise, Some(16));
        assert_eq!(stored[0], TAG_RAW);
        assert_eq!(decode(&stored, 8192).unwrap(), &noise[..]);
    }

    #[test]
    fn decode_refuses_what_it_cannot_trust() {
        assert_eq!(decode(&[], 10), None);
        assert_eq!(decode(&[7, 1, 2], 10), None);
        assert_eq!(decode(&[TAG_GZIP, 1, 2, 3], 10), None);
        assert_eq!(decode(&[TAG_RAW, 1, 2, 3], 2), None);
        // A bomb: 1 MB of zeros inflates past the limit and is refused.
        let bomb = encode(&vec![0u8; 1 << 20], Some(0));
        assert!(bomb.len() < 10_000);
        assert_eq!(decode(&bomb, 1000), None);
        assert_eq!(decode(&bomb, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("t1:a*b?[c]"), "t1:a\\*b\\?\\[c\\]");
        assert_eq!(glob_escape("plain:key"), "plain:key");
    }
}
