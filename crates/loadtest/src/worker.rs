//! The load loop: one task per connection, each sending requests back-to-back.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Sleep;

use crate::report::UrlTally;
use crate::{resolve_loopback, LoadTestError, Plan, Report, Stop};

type Body = Full<Bytes>;
type Conn = Connection<TokioIo<TcpStream>, Body>;

/// Runs a load test and reports what it measured.
///
/// Validates the plan, resolves the host (refusing unless every address is
/// loopback), then runs [`Plan::connections`] tasks, each owning one
/// keep-alive HTTP/1.1 connection, until [`Plan::stop`] is reached. With
/// [`Plan::extra_urls`], each request takes the next URL round-robin.
///
/// A connection that fails is counted as a transport error and replaced. A
/// task stops (after counting the error) when it cannot connect, or when a
/// fresh connection fails before producing a single response, so a dead or
/// broken server does not cause a reconnect storm. If no connection could be
/// established at all, [`LoadTestError::Connect`] is returned.
///
/// Dropping the returned future aborts the test.
///
/// ```no_run
/// # async fn demo() -> Result<(), loadtest::LoadTestError> {
/// use loadtest::{Plan, Stop};
/// let plan = Plan::new("http://127.0.0.1:8080/".parse().unwrap(), 2, Stop::Requests(1000));
/// let report = loadtest::run(plan).await?;
/// assert_eq!(report.requests + report.transport_errors, 1000);
/// # Ok(())
/// # }
/// ```
pub async fn run(plan: Plan) -> Result<Report, LoadTestError> {
    plan.validate()?;
    let (url, paths) = plan.targets()?;
    let addrs = resolve_loopback(&url.host, url.port).await?;

    let mut headers = HeaderMap::with_capacity(plan.headers.len() + 1);
    if !plan.headers.iter().any(|(name, _)| name == HOST) {
        headers.insert(HOST, url.host_header.clone());
    }
    for (name, value) in &plan.headers {
        headers.append(name.clone(), value.clone());
    }

    let start = Instant::now();
    let limit = match plan.stop {
        Stop::Requests(total) => Limit::Requests {
            total,
            issued: AtomicU64::new(0),
        },
        // Validation bounds the duration, so this cannot overflow in practice;
        // fall back to "already over" rather than panic.
        Stop::Duration(d) => Limit::Until(start.checked_add(d).unwrap_or(start)),
    };
    let shared = Arc::new(Shared {
        addrs,
        target: format!("{}:{}", url.host_header_host(), url.port),
        method: plan.method,
        paths,
        next_path: AtomicU64::new(0),
        headers,
        body: plan.body,
        timeout: plan.request_timeout,
        limit,
    });

    // Dropping a JoinSet aborts its tasks, so cancelling `run` stops the load.
    let mut tasks = JoinSet::new();
    for _ in 0..plan.connections {
        tasks.spawn(worker(Arc::clone(&shared)));
    }

    let mut per_url: Vec<(String, UrlTally)> = shared
        .paths
        .iter()
        .map(|p| (p.to_string(), UrlTally::new()))
        .collect();
    let mut unattributed_errors = 0u64;
    let mut any_connected = false;
    let mut connect_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(|e| LoadTestError::Internal(e.to_string()))?;
        for ((_, total), tally) in per_url.iter_mut().zip(&outcome.per_url) {
            total.add(tally);
        }
        unattributed_errors += outcome.unattributed_errors;
        any_connected |= outcome.connected;
        if connect_error.is_none() {
            connect_error = outcome.connect_error;
        }
    }
    let elapsed = start.elapsed();

    if !any_connected {
        if let Some(source) = connect_error {
            return Err(LoadTestError::Connect {
                target: shared.target.clone(),
                source,
            });
        }
    }
    Ok(Report::new(
        unattributed_errors,
        elapsed,
        &per_url,
        plan.connections,
    ))
}

impl crate::TargetUrl {
    /// The host as it appears in a `host:port` string (IPv6 bracketed).
    fn host_header_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// Everything the connection tasks share, built once.
struct Shared {
    addrs: Vec<SocketAddr>,
    /// `host:port`, for error messages.
    target: String,
    method: Method,
    /// Origin-form request target of each URL, in plan order.
    paths: Vec<Uri>,
    /// Requests started so far, for the round-robin choice of URL.
    next_path: AtomicU64,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    limit: Limit,
}

impl Shared {
    /// The index of the URL the next request goes to (round-robin).
    fn next_url(&self) -> usize {
        if self.paths.len() == 1 {
            return 0;
        }
        let n = self.next_path.fetch_add(1, Ordering::Relaxed);
        // The remainder is below paths.len(), so it fits a usize.
        (n % self.paths.len() as u64) as usize
    }

    /// A fresh request to URL `url` from the pre-built parts; every clone
    /// here is a reference-count bump except the header map's two small
    /// vectors.
    fn request(&self, url: usize) -> Request<Body> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.paths[url].clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

enum Limit {
    /// Tickets are handed out from `issued` until it reaches `total`.
    Requests { total: u64, issued: AtomicU64 },
    /// No request is started at or after this instant.
    Until(Instant),
}

impl Limit {
    /// Whether no further request will be allowed (a hint; see `take`).
    fn exhausted(&self) -> bool {
        match self {
            Limit::Requests { total, issued } => issued.load(Ordering::Relaxed) >= *total,
            Limit::Until(deadline) => Instant::now() >= *deadline,
        }
    }

    /// Claims permission to start one request at `now`.
    fn take(&self, now: Instant) -> bool {
        match self {
            // Each task stops after its first refused ticket, so `issued`
            // overshoots `total` by at most the number of tasks.
            Limit::Requests { total, issued } => issued.fetch_add(1, Ordering::Relaxed) < *total,
            Limit::Until(deadline) => now < *deadline,
        }
    }
}

/// What one connection task measured.
struct Outcome {
    /// One tally per URL, in plan order.
    per_url: Vec<UrlTally>,
    /// Transport errors of no request: failed connects, connections lost
    /// before their first request.
    unattributed_errors: u64,
    /// Whether any connection was established.
    connected: bool,
    /// The first connect error, if any.
    connect_error: Option<io::Error>,
}

/// How a connection's life ended.
enum ConnEnd {
    /// The stop condition was reached.
    Done,
    /// The connection became unusable (closed by the peer, failed, or timed
    /// out), after producing `responses` responses. Any error has already
    /// been counted.
    Lost { responses: u64 },
}

async fn worker(shared: Arc<Shared>) -> Outcome {
    let mut out = Outcome {
        per_url: shared.paths.iter().map(|_| UrlTally::new()).collect(),
        unattributed_errors: 0,
        connected: false,
        connect_error: None,
    };
    // One timer per task, re-armed for each request.
    let mut timer = pin!(tokio::time::sleep(shared.timeout));
    while !shared.limit.exhausted() {
        let (sender, conn) = match connect(&shared).await {
            Ok(pair) => pair,
            Err(e) => {
                out.unattributed_errors += 1;
                out.connect_error = Some(e);
                break;
            }
        };
        out.connected = true;
        match drive(&shared, sender, conn, &mut out, timer.as_mut()).await {
            ConnEnd::Done => break,
            // A connection that yielded nothing will most likely be followed
            // by another one that yields nothing: give up instead of spinning.
            ConnEnd::Lost { responses: 0 } => break,
            ConnEnd::Lost { .. } => continue,
        }
    }
    out
}

/// Connects to the first address that accepts, within the request timeout.
async fn connect(shared: &Shared) -> io::Result<(SendRequest<Body>, Conn)> {
    let attempt = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses to connect to");
        for addr in &shared.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(shared.timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)
}

/// Sends requests on one connection until it is lost or the limit is hit.
///
/// The connection future is polled from this task alongside each request, so
/// no separate task (and no cross-task wake-up) is needed per request.
async fn drive(
    shared: &Shared,
    mut sender: SendRequest<Body>,
    conn: Conn,
    out: &mut Outcome,
    mut timer: Pin<&mut Sleep>,
) -> ConnEnd {
    let mut conn = pin!(conn);
    let mut conn_done = false;
    let mut responses = 0u64;
    loop {
        let now = Instant::now();
        let deadline = now.checked_add(shared.timeout).unwrap_or(now);
        timer.as_mut().reset(deadline.into());

        // Wait until the connection can take another request.
        let ready = poll_fn(|cx| {
            if !conn_done && conn.as_mut().poll(cx).is_ready() {
                conn_done = true;
            }
            if conn_done {
                return Poll::Ready(false);
            }
            match sender.poll_ready(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending if timer.as_mut().poll(cx).is_ready() => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if !ready {
            if responses == 0 {
                // Closed (or stuck) before a single request: a transport error.
                out.unattributed_errors += 1;
            }
            return ConnEnd::Lost { responses };
        }

        let start = Instant::now();
        if !shared.limit.take(start) {
            return ConnEnd::Done;
        }
        let url = shared.next_url();
        let mut exchange = pin!(exchange(&mut sender, shared.request(url)));
        let result = poll_fn(|cx| {
            if !conn_done && conn.as_mut().poll(cx).is_ready() {
                conn_done = true;
            }
            if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        let tally = &mut out.per_url[url];
        match result {
            Some(Ok(status)) => {
                let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if tally.hist.record(nanos).is_err() {
                    tally.hist.saturating_record(nanos);
                }
                *tally.statuses.entry(status.as_u16()).or_insert(0) += 1;
                tally.requests += 1;
                responses += 1;
            }
            // An I/O error, or a timeout (None): the connection is in an
            // unknown state, so drop it.
            Some(Err(_)) | None => {
                tally.errors += 1;
                return ConnEnd::Lost { responses };
            }
        }
    }
}

/// Sends one request and reads the whole response body, discarding it.
async fn exchange(
    sender: &mut SendRequest<Body>,
    req: Request<Body>,
) -> Result<StatusCode, hyper::Error> {
    let res = sender.send_request(req).await?;
    let status = res.status();
    let mut body = res.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_budget_is_exact() {
        let limit = Limit::Requests {
            total: 3,
            issued: AtomicU64::new(0),
        };
        let now = Instant::now();
        assert!(!limit.exhausted());
        assert!(limit.take(now) && limit.take(now) && limit.take(now));
        assert!(!limit.take(now));
        assert!(limit.exhausted());
    }

    #[test]
    fn deadline_limit() {
        let now = Instant::now();
        let limit = Limit::Until(now);
        assert!(limit.exhausted());
        assert!(!limit.take(now));
        let later = Limit::Until(now + Duration::from_secs(60));
        assert!(later.take(now));
    }
}
