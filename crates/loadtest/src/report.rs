//! The result of a load test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a load test measured. Serializes to JSON for `--json`.
///
/// ```
/// # use std::collections::BTreeMap;
/// # use loadtest::{LatencySummary, Report};
/// let report = Report {
///     requests: 1000,
///     transport_errors: 0,
///     elapsed_seconds: 0.5,
///     requests_per_second: 2000.0,
///     latency_ms: LatencySummary { p50: 0.4, p90: 0.6, p99: 1.1, max: 2.0, mean: 0.45 },
///     status_counts: BTreeMap::from([(200, 1000)]),
///     connections: 4,
/// };
/// assert!(report.to_text().contains("2000.0 req/s"));
/// ```
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// Requests that completed with an HTTP response (any status).
    pub requests: u64,
    /// Connect, I/O and timeout failures.
    pub transport_errors: u64,
    /// Wall-clock time from the start of the test until every connection
    /// task had finished.
    pub elapsed_seconds: f64,
    /// `requests / elapsed_seconds`.
    pub requests_per_second: f64,
    /// Latency of the requests that got a response, from just before the
    /// request was sent until its body had been read in full.
    pub latency_ms: LatencySummary,
    /// Responses by HTTP status code.
    pub status_counts: BTreeMap<u16, u64>,
    /// Number of concurrent connections used.
    pub connections: usize,
}

/// Latency percentiles in milliseconds (all 0 when there were no responses).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest response.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

const NANOS_PER_MILLI: f64 = 1_000_000.0;

impl LatencySummary {
    /// Summarises a histogram of nanosecond values.
    pub fn from_nanos(hist: &Histogram<u64>) -> LatencySummary {
        if hist.is_empty() {
            return LatencySummary {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let ms = |ns: u64| ns as f64 / NANOS_PER_MILLI;
        LatencySummary {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            max: ms(hist.max()),
            mean: hist.mean() / NANOS_PER_MILLI,
        }
    }
}

impl Report {
    pub(crate) fn new(
        requests: u64,
        transport_errors: u64,
        elapsed: Duration,
        hist: &Histogram<u64>,
        status_counts: BTreeMap<u16, u64>,
        connections: usize,
    ) -> Report {
        let elapsed_seconds = elapsed.as_secs_f64();
        let requests_per_second = if elapsed_seconds > 0.0 {
            requests as f64 / elapsed_seconds
        } else {
            0.0
        };
        Report {
            requests,
            transport_errors,
            elapsed_seconds,
            requests_per_second,
            latency_ms: LatencySummary::from_nanos(hist),
            status_counts,
            connections,
        }
    }

    /// A compact human-readable summary, one fact per line, ending in a
    /// newline:
    ///
    /// ```text
    /// requests:     1000 in 0.500s (2000.0 req/s) over 4 connections
    /// errors:       0 transport errors
    /// latency (ms): p50 0.400  p90 0.600  p99 1.100  max 2.000  mean 0.450
    /// status:       200 x 1000
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let l = &self.latency_ms;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "requests:     {} in {:.3}s ({:.1} req/s) over {} connection{}",
            self.requests,
            self.elapsed_seconds,
            self.requests_per_second,
            self.connections,
            if self.connections == 1 { "" } else { "s" },
        );
        let _ = writeln!(
            out,
            "errors:       {} transport error{}",
            self.transport_errors,
            if self.transport_errors == 1 { "" } else { "s" },
        );
        let _ = writeln!(
            out,
            "latency (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.max, l.mean
        );
        out.push_str("status:       ");
        if self.status_counts.is_empty() {
            out.push_str("(no responses)");
        } else {
            let mut first = true;
            for (status, count) in &self.status_counts {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                let _ = write!(out, "{status} x {count}");
            }
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_gives_zeros() {
        let hist = Histogram::<u64>::new(3).unwrap();
        let r = Report::new(0, 3, Duration::ZERO, &hist, BTreeMap::new(), 2);
        assert_eq!(r.requests_per_second, 0.0);
        assert_eq!(r.latency_ms.max, 0.0);
        let text = r.to_text();
        assert!(text.contains("3 transport errors"), "{text}");
        assert!(text.contains("(no responses)"), "{text}");
    }

    #[test]
    fn summary_in_milliseconds() {
        let mut hist = Histogram::<u64>::new(3).unwrap();
        for ms in 1..=100u64 {
            hist.record(ms * 1_000_000).unwrap();
        }
        let s = LatencySummary::from_nanos(&hist);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert!((s.mean - 50.5).abs() < 0.1, "{s:?}");
        let r = Report::new(
            100,
            1,
            Duration::from_secs(2),
            &hist,
            BTreeMap::from([(200, 90), (503, 10)]),
            1,
        );
        assert_eq!(r.requests_per_second, 50.0);
        let text = r.to_text();
        assert!(text.contains("200 x 90, 503 x 10"), "{text}");
        assert!(text.contains("1 transport error\n"), "{text}");
        assert!(text.contains("over 1 connection\n"), "{text}");
    }
}
