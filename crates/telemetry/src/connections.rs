//! The HTTP server's connection series:
//! - `http_connections_open` (gauge): connections open now;
//! - `http_connections_closed_total{reason}`: connections the server closed on its own:
//!   `header_timeout` (a request head not complete in time), `idle_timeout` (a keep-alive
//!   connection quiet too long), `over_limit` (accepted past the connection cap and closed
//!   at once) or `head_too_large` (a request head over the limit, answered 414 or 431).
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
}

impl ConnectionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ConnectionMetrics {
        let m = ConnectionMetrics {
            open: Gauge::default(),
            closed: Family::default(),
        };
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
