//! The HTTP server's connection series:
//! - `http_connections_open` (gauge): connections open now;
//! - `http_connections_closed_total{reason}`: connections the server closed on its own:
//!   `header_timeout` (a request head not complete in time), `idle_timeout` (a keep-alive
//!   connection quiet too long), `over_limit` (accepted past the connection cap and closed
//!   at once) or `head_too_large` (a request head over the limit, answered 414 or 431);
//! - `sse_connections_active` (gauge): server-sent-event streams open now. Seed 003 samples
//!   `websocket_connections_active`; signalbox streams with SSE and has no WebSockets, so
//!   this is the same figure under a true name, kept live by a guard rather than sampled.
//!
//! Labels are bounded by construction: four reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The connection series; reach them through [`crate::Metrics::connections`].
#[derive(Debug)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed: Family<ReasonLabels, Counter>,
    sse: Gauge,
}

impl ConnectionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ConnectionMetrics {
        let m = ConnectionMetrics {
            open: Gauge::default(),
            closed: Family::default(),
            sse: Gauge::default(),
        };
        registry.register(
            "sse_connections_active",
            "Server-sent-event streams open now (seed 003's websocket_connections_active; signalbox has no WebSockets)",
            m.sse.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            m.open.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections the server closed on its own, by reason (header_timeout, idle_timeout, over_limit, head_too_large)",
            m.closed.clone(),
        );
        m
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn opened(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    /// Counts an SSE stream as open until the returned guard is dropped (keep it in the
    /// stream's state, so a client that goes away is counted out).
    pub fn sse_opened(&self) -> OpenConnection {
        self.sse.inc();
        OpenConnection(self.sse.clone())
    }

    /// SSE streams open now.
    pub fn sse_active(&self) -> i64 {
        self.sse.get()
    }

    /// Counts a connection the server closed; `reason` is `header_timeout`, `idle_timeout`,
    /// `over_limit` or `head_too_large`.
    pub fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// One open connection in `http_connections_open`, until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
