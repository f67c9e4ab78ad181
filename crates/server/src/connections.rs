//! Accepting and serving HTTP/1.1 connections, with limits a hostile client cannot outwait.
//!
//! `axum::serve` keeps a connection open for as long as its client likes: a client that sends
//! half a request head and then nothing (slowloris) holds a socket, a task and a file
//! descriptor forever, and enough of them exhaust the process. Here every connection is held to:
//!
//! - **a header-read timeout**: a request head must be complete within
//!   [`ConnectionSettings::header_read_timeout`] of its first byte (for a new connection, of
//!   the connection being accepted);
//! - **an idle timeout**: a keep-alive connection with no request in flight and no byte of a
//!   new one is closed after [`ConnectionSettings::idle_timeout`];
//! - **a connection cap**: past [`ConnectionSettings::max_connections`] open connections, a new
//!   one is accepted and closed at once (counted), rather than left in the kernel's backlog,
//!   where it would wait unseen and unmeasured while the slots it waits for may be held by the
//!   very clients being defended against.
//!
//! - **a request-head size limit**: a head over [`MAX_HEAD_BYTES`] gets a problem+json 414
//!   `uri_too_long` (the request line alone is that long) or 431 `headers_too_large`, and the
//!   connection is closed. hyper would answer such a head with a bare status and no body, and
//!   past 64 KiB of request target `http::Uri` cannot hold it at all, so the limit is kept
//!   here, where the bytes arrive, below both.
//!
//! A request in flight (from its head being read until its response body is finished or
//! dropped) is not limited here: its handler runs under the envelope's request timeout, and
//! event streams send keep-alive comments. hyper's own `header_read_timeout` is not used,
//! because its timer also runs while a keep-alive connection waits for its next request, which
//! would make the idle timeout and the header timeout one setting.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::problem::{ProblemKind, PROBLEM_JSON};

/// Largest request head (request line and header fields) read, in bytes. Below 64 KiB + the
/// request line's other 15 bytes, so any request target `http::Uri` could not hold trips it.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most bytes read and thrown away after refusing an oversized head, so that closing does not
/// reset the connection before the client reads the refusal (a lingering close).
const MAX_DISCARD_BYTES: usize = 1024 * 1024;

/// Connection limits; see the module docs.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// How long a client has to send a complete request head, from its first byte (or, for a
    /// connection's first request, from the connection being accepted).
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit with no request in flight and no byte of a
    /// new one.
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (idle connections close at once) and returns when every
/// connection has closed. The caller bounds that wait.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: ConnectionSettings,
    metrics: Arc<telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    // `draining` turns true on shutdown; every connection task holds a receiver, so the
    // sender's `closed()` is "every connection has ended".
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors or similar: accepting again at once would spin.
                    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections().closed("over_limit");
            tracing::debug!(%remote, "connection refused: at the connection cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            stream,
            remote,
            router: router.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            draining: drain_rx.clone(),
        };
        tokio::spawn(async move {
            connection.run().await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    drop(drain_rx);
    drain_tx.closed().await;
    Ok(())
}

/// Errors that concern one connection only (the client gave up before we accepted it).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    stream: TcpStream,
    remote: SocketAddr,
    router: axum::Router,
    settings: ConnectionSettings,
    metrics: Arc<telemetry::Metrics>,
    draining: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self) {
        let open = self.metrics.connections().opened();
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(Watched {
            inner: self.stream,
            activity: activity.clone(),
            metrics: self.metrics.clone(),
            refusal: None,
        });
        let service = hyper::service::service_fn({
            let (router, activity, remote) = (self.router, activity.clone(), self.remote);
            move |request: http::Request<hyper::body::Incoming>| {
                let guard = activity.request_started();
                let mut request = request.map(|body| {
                    if body.is_end_stream() {
                        activity.request_body_ended();
                    }
                    axum::body::Body::new(RequestBody {
                        body,
                        activity: activity.clone(),
                    })
                });
                request.extensions_mut().insert(ConnectInfo(remote));
                let call = tower::ServiceExt::oneshot(router.clone(), request);
                async move {
                    let response = call.await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        axum::body::Body::new(Tracked {
                            body,
                            _guard: guard,
                        })
                    }))
                }
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The head deadline is enforced below; hyper's own would also cut idle connections.
        builder.header_read_timeout(None);
        let mut conn = std::pin::pin!(builder.serve_connection(io, service));
        let mut draining = false;
        let mut check_at = activity.deadline(&self.settings);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(remote = %self.remote, error = %e, "connection ended with an error");
                    }
                    break;
                }
                changed = self.draining.changed(), if !draining => {
                    draining = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep_until(check_at) => {
                    match activity.verdict(Instant::now(), &self.settings) {
                        Verdict::Open { check_at: next } => check_at = next,
                        Verdict::Close(reason) => {
                            tracing::debug!(remote = %self.remote, reason, "closing the connection");
                            self.metrics.connections().closed(reason);
                            // Dropping the connection closes the socket.
                            break;
                        }
                    }
                }
            }
        }
        drop(open);
    }
}

/// What a connection is doing, shared by its socket, its requests and its watchdog.
struct Activity(Mutex<ActivityState>);

struct ActivityState {
    /// Requests whose response has not been finished or dropped yet.
    in_flight: usize,
    /// When the request head being read started arriving; `None` while none is.
    head_since: Option<Instant>,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
    /// How far the head being read has come.
    head: HeadScan,
    /// Whether the bytes read while nothing is in flight are a request head: not after a
    /// request whose body was left unread, since hyper may then read (and throw away) the
    /// rest of that body, which is no head.
    head_expected: bool,
}

/// How far the request head being read has come.
#[derive(Debug, Default)]
struct HeadScan {
    bytes: usize,
    /// The request line has ended.
    line_done: bool,
    /// The empty line after the header fields has been read: the head is complete.
    done: bool,
    /// Bytes of the current line, not counting CR.
    line_len: usize,
}

/// What a head over [`MAX_HEAD_BYTES`] is refused as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oversized {
    /// The request line alone is over the limit.
    Target,
    /// The request line ended, the header fields are too many or too long.
    Fields,
}

impl HeadScan {
    /// Takes the next bytes of the connection while no request is in flight; tells whether
    /// the head is now over the limit without having ended.
    fn feed(&mut self, bytes: &[u8]) -> Option<Oversized> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.done {
                return None;
            }
            // Lines end in CRLF or, as parsers accept, a bare LF; empty lines before the
            // request line are skipped, as hyper does.
            match b {
                b'\n' if self.line_len == 0 => self.done = self.line_done,
                b'\n' => {
                    self.line_done = true;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
            if self.bytes + i + 1 > MAX_HEAD_BYTES && !self.done {
                self.bytes += i + 1;
                return Some(if self.line_done {
                    Oversized::Fields
                } else {
                    Oversized::Target
                });
            }
        }
        self.bytes += bytes.len();
        None
    }
}

enum Verdict {
    Open { check_at: Instant },
    Close(&'static str),
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity(Mutex::new(ActivityState {
            in_flight: 0,
            // A new connection owes its first request head from the moment it is accepted, so
            // a client that connects and sends nothing is held to the header timeout too.
            head_since: Some(accepted),
            idle_since: accepted,
            head: HeadScan::default(),
            head_expected: true,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes bytes read from the socket; tells whether they make the head being read too
    /// large.
    fn bytes_read(&self, bytes: &[u8]) -> Option<Oversized> {
        let mut state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        if state.head_since.is_none() {
            state.head_since = Some(Instant::now());
        }
        if !state.head_expected {
            return None;
        }
        state.head.feed(bytes)
    }

    /// The request body was read to its end, so what follows it is the next head.
    fn request_body_ended(&self) {
        self.state().head_expected = true;
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_since = None;
        state.head = HeadScan::default();
        // Until its body is known to have ended (see `RequestBody`).
        state.head_expected = false;
        RequestGuard(self.clone())
    }

    fn deadline(&self, settings: &ConnectionSettings) -> Instant {
        match self.verdict(Instant::now(), settings) {
            Verdict::Open { check_at } => check_at,
            Verdict::Close(_) => Instant::now(),
        }
    }

    fn verdict(&self, now: Instant, settings: &ConnectionSettings) -> Verdict {
        let state = self.state();
        if state.in_flight > 0 {
            // Not limited here; look again later in case it finishes and goes quiet.
            return Verdict::Open {
                check_at: now + settings.idle_timeout,
            };
        }
        let (since, limit, reason) = match state.head_since {
            Some(since) => (since, settings.header_read_timeout, "header_timeout"),
            None => (state.idle_since, settings.idle_timeout, "idle_timeout"),
        };
        let deadline = since + limit;
        if now >= deadline {
            Verdict::Close(reason)
        } else {
            Verdict::Open { check_at: deadline }
        }
    }
}

/// Marks a request in flight until its response body is finished or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A request body that tells the connection when it has been read to its end.
struct RequestBody {
    body: hyper::body::Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for RequestBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.activity.request_body_ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that holds its request's [`RequestGuard`] until it is dropped.
struct Tracked {
    body: axum::body::Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when bytes of a new request head arrive and refusing a head that grows
/// past [`MAX_HEAD_BYTES`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    metrics: Arc<telemetry::Metrics>,
    /// Set once a head was refused: the answer being written, then the bytes thrown away.
    refusal: Option<Refusal>,
}

struct Refusal {
    answer: Vec<u8>,
    sent: usize,
    shut: bool,
    discarded: usize,
}

impl Refusal {
    fn new(oversized: Oversized) -> Refusal {
        let (kind, detail) = match oversized {
            Oversized::Target => (
                ProblemKind::UriTooLong,
                format!("the request line is over {MAX_HEAD_BYTES} bytes; send large inputs in a body"),
            ),
            Oversized::Fields => (
                ProblemKind::HeadersTooLarge,
                format!("the request head (request line and header fields) is over {MAX_HEAD_BYTES} bytes"),
            ),
        };
        let body = serde_json::json!({
            "type": kind.type_uri(),
            "title": kind.title(),
            "status": kind.status().as_u16(),
            "detail": detail,
            "max_bytes": MAX_HEAD_BYTES,
        })
        .to_string();
        let status = kind.status();
        let answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
        );
        Refusal {
            answer: answer.into_bytes(),
            sent: 0,
            shut: false,
            discarded: 0,
        }
    }

    /// Writes the answer, ends the sending side, then reads and drops what the client still
    /// sends until it closes (hyper then sees the end of the connection) or too much came.
    fn poll(&mut self, inner: &mut TcpStream, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.answer.len() {
            match Pin::new(&mut *inner).poll_write(cx, &self.answer[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(refused())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.shut {
            match Pin::new(&mut *inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => self.shut = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut drop_buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut drop_buf) {
                Poll::Ready(Ok(())) if drop_buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    self.discarded += drop_buf.filled().len();
                    if self.discarded > MAX_DISCARD_BYTES {
                        return Poll::Ready(Err(refused()));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn refused() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "request head too large")
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(refusal) = &mut this.refusal {
            return refusal.poll(&mut this.inner, cx);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if let Some(oversized) = this.activity.bytes_read(&buf.filled()[before..]) {
                // hyper never sees these bytes: the head is answered here.
                buf.set_filled(before);
                this.metrics.connections().closed("head_too_large");
                let refusal = this.refusal.insert(Refusal::new(oversized));
                return refusal.poll(&mut this.inner, cx);
            }
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; the first verdict and the bytes counted.
    fn scan(input: &[u8], chunk: usize) -> (Option<Oversized>, HeadScan) {
        let mut head = HeadScan::default();
        for part in input.chunks(chunk) {
            if let Some(verdict) = head.feed(part) {
                return (Some(verdict), head);
            }
        }
        (None, head)
    }

    #[test]
    fn a_head_that_ends_within_the_limit_passes_whatever_follows() {
        let mut input = b"POST / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 3 * MAX_HEAD_BYTES));
        for chunk in [1, 2, 3, 7, 4096, input.len()] {
            let (verdict, head) = scan(&input, chunk);
            assert_eq!(verdict, None, "chunk {chunk}");
            assert!(head.done && head.line_done, "chunk {chunk}");
        }
        // Bare line feeds end lines too, and empty lines before the request line are skipped.
        let (verdict, head) = scan(b"\r\n\nGET / HTTP/1.1\nhost: x\n\n", 1);
        assert_eq!(verdict, None);
        assert!(head.done);
    }

    #[test]
    fn a_long_request_line_is_a_target_and_long_fields_are_fields() {
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        for chunk in [1, 1000, line.len()] {
            let (verdict, head) = scan(&line, chunk);
            assert_eq!(verdict, Some(Oversized::Target), "chunk {chunk}");
            assert_eq!(head.bytes, MAX_HEAD_BYTES + 1, "chunk {chunk}");
        }
        let mut fields = b"GET / HTTP/1.1\r\n".to_vec();
        while fields.len() <= MAX_HEAD_BYTES {
            fields.extend_from_slice(b"x-filler: yyyyyyyyyyyyyyyy\r\n");
        }
        assert_eq!(scan(&fields, 512).0, Some(Oversized::Fields));
        // Exactly at the limit, ended: not over it.
        let mut exact = b"GET / HTTP/1.1\r\nx: ".to_vec();
        exact.resize(MAX_HEAD_BYTES - 4, b'v');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), MAX_HEAD_BYTES);
        assert_eq!(scan(&exact, 100).0, None);
    }
}
