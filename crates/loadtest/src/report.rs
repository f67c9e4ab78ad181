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
/// # use loadtest::{LatencySummary, Report, UrlReport};
/// let latency_ms = LatencySummary { min: 0.2, p50: 0.4, p90: 0.6, p95: 0.8, p99: 1.1, max: 2.0, mean: 0.45 };
/// let report = Report {
///     requests: 1000,
///     transport_errors: 0,
///     elapsed_seconds: 0.5,
///     requests_per_second: 2000.0,
///     latency_ms: latency_ms.clone(),
///     status_counts: BTreeMap::from([(200, 1000)]),
///     connections: 4,
///     urls: vec![UrlReport {
///         url: "/ok".to_owned(),
///         requests: 1000,
///         transport_errors: 0,
///         requests_per_second: 2000.0,
///         latency_ms,
///         status_counts: BTreeMap::from([(200, 1000)]),
///     }],
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
    /// The same figures per URL, in the plan's order ([`Plan::url`](crate::Plan::url) first,
    /// then [`Plan::extra_urls`](crate::Plan::extra_urls)); one entry for a single URL.
    pub urls: Vec<UrlReport>,
}

/// What one URL of a round-robin run measured.
#[derive(Serialize, Debug, Clone)]
pub struct UrlReport {
    /// The request target as sent (`/path?query`).
    pub url: String,
    /// Requests to this URL that completed with an HTTP response.
    pub requests: u64,
    /// Requests to this URL that failed (I/O error or timeout). A connection
    /// that fails before any request was sent on it is counted only in
    /// [`Report::transport_errors`].
    pub transport_errors: u64,
    /// `requests / elapsed_seconds` of the whole run.
    pub requests_per_second: f64,
    /// Latency of this URL's responses.
    pub latency_ms: LatencySummary,
    /// This URL's responses by HTTP status code.
    pub status_counts: BTreeMap<u16, u64>,
}

/// One URL's counts as the workers collect them.
#[derive(Debug)]
pub(crate) struct UrlTally {
    pub(crate) hist: Histogram<u64>,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) statuses: BTreeMap<u16, u64>,
}

impl UrlTally {
    pub(crate) fn new() -> UrlTally {
        UrlTally {
            hist: new_histogram(),
            requests: 0,
            errors: 0,
            statuses: BTreeMap::new(),
        }
    }

    /// Adds another tally of the same URL.
    pub(crate) fn add(&mut self, other: &UrlTally) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.hist.add(&other.hist);
        self.requests += other.requests;
        self.errors += other.errors;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_insert(0) += count;
        }
    }
}

/// An empty latency histogram in nanoseconds.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing (from a tiny initial range) with 3 significant figures;
    // creation with these constant arguments cannot fail.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
}

/// Latency percentiles in milliseconds (all 0 when there were no responses).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LatencySummary {
    /// Fastest response.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
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
                min: 0.0,
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let ms = |ns: u64| ns as f64 / NANOS_PER_MILLI;
        LatencySummary {
            min: ms(hist.min()),
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p95: ms(hist.value_at_quantile(0.95)),
            p99: ms(hist.value_at_quantile(0.99)),
            max: ms(hist.max()),
            mean: hist.mean() / NANOS_PER_MILLI,
        }
    }
}

impl Report {
    /// The report of a run: `unattributed_errors` are transport errors of no
    /// request (failed connects); `urls` pairs each request target with its
    /// tally, in plan order.
    pub(crate) fn new(
        unattributed_errors: u64,
        elapsed: Duration,
        urls: &[(String, UrlTally)],
        connections: usize,
    ) -> Report {
        let elapsed_seconds = elapsed.as_secs_f64();
        let rate = |requests: u64| {
            if elapsed_seconds > 0.0 {
                requests as f64 / elapsed_seconds
            } else {
                0.0
            }
        };
        let mut total = UrlTally::new();
        for (_, tally) in urls {
            total.add(tally);
        }
        Report {
            requests: total.requests,
            transport_errors: total.errors + unattributed_errors,
            elapsed_seconds,
            requests_per_second: rate(total.requests),
            latency_ms: LatencySummary::from_nanos(&total.hist),
            status_counts: total.statuses,
            connections,
            urls: urls
                .iter()
                .map(|(url, tally)| UrlReport {
                    url: url.clone(),
                    requests: tally.requests,
                    transport_errors: tally.errors,
                    requests_per_second: rate(tally.requests),
                    latency_ms: LatencySummary::from_nanos(&tally.hist),
                    status_counts: tally.statuses.clone(),
                })
                .collect(),
        }
    }

    /// A compact human-readable summary, one fact per line, ending in a
    /// newline:
    ///
    /// ```text
    /// requests:     1000 in 0.500s (2000.0 req/s) over 4 connections
    /// errors:       0 transport errors
    /// latency (ms): min 0.200  p50 0.400  p90 0.600  p95 0.800  p99 1.100  max 2.000  mean 0.450
    /// status:       200 x 1000
    /// ```
    ///
    /// With several URLs, one more block follows, a line per URL:
    ///
    /// ```text
    /// per URL (round-robin):
    ///   /a  500 req (1000.0 req/s)  min 0.200  p50 0.400  p95 0.800  p99 1.100  max 2.000  errors 0  status 200 x 500
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
            "latency (ms): min {:.3}  p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            l.min, l.p50, l.p90, l.p95, l.p99, l.max, l.mean
        );
        out.push_str("status:       ");
        out.push_str(&statuses_text(&self.status_counts));
        out.push('\n');
        if self.urls.len() > 1 {
            out.push_str("per URL (round-robin):\n");
            for u in &self.urls {
                let l = &u.latency_ms;
                let _ = writeln!(
                    out,
                    "  {}  {} req ({:.1} req/s)  min {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  errors {}  status {}",
                    u.url,
                    u.requests,
                    u.requests_per_second,
                    l.min,
                    l.p50,
                    l.p95,
                    l.p99,
                    l.max,
                    u.transport_errors,
                    statuses_text(&u.status_counts)
                );
            }
        }
        out
    }
}

/// `200 x 90, 503 x 10`, or `(no responses)`.
fn statuses_text(counts: &BTreeMap<u16, u64>) -> String {
    if counts.is_empty() {
        return "(no responses)".to_owned();
    }
    counts
        .iter()
        .map(|(status, count)| format!("{status} x {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_gives_zeros() {
        let r = Report::new(3, Duration::ZERO, &[("/".to_owned(), UrlTally::new())], 2);
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
        assert!((s.min - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p95 - 95.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert!((s.mean - 50.5).abs() < 0.1, "{s:?}");
        let tally = UrlTally {
            hist,
            requests: 100,
            errors: 0,
            statuses: BTreeMap::from([(200, 90), (503, 10)]),
        };
        let r = Report::new(1, Duration::from_secs(2), &[("/x".to_owned(), tally)], 1);
        assert_eq!(r.requests_per_second, 50.0);
        let text = r.to_text();
        assert!(text.contains("200 x 90, 503 x 10"), "{text}");
        assert!(text.contains("1 transport error\n"), "{text}");
        assert!(text.contains("over 1 connection\n"), "{text}");
        assert!(
            !text.contains("per URL"),
            "one URL has no per-URL block: {text}"
        );
        assert_eq!(r.urls.len(), 1);
        assert_eq!(r.urls[0].latency_ms, r.latency_ms);
    }

    #[test]
    fn several_urls_are_totalled_and_listed() {
        let tally = |ms: &[u64], errors: u64| {
            let mut t = UrlTally::new();
            for &m in ms {
                t.hist.record(m * 1_000_000).unwrap();
                t.requests += 1;
                *t.statuses.entry(200).or_insert(0) += 1;
            }
            t.errors = errors;
            t
        };
        let urls = [
            ("/fast".to_owned(), tally(&[1, 1, 2], 0)),
            ("/slow".to_owned(), tally(&[10, 20], 2)),
        ];
        let r = Report::new(1, Duration::from_secs(1), &urls, 2);
        assert_eq!((r.requests, r.transport_errors), (5, 3));
        assert_eq!(r.status_counts.get(&200), Some(&5));
        assert!((r.latency_ms.min - 1.0).abs() < 0.01, "{:?}", r.latency_ms);
        assert!((r.latency_ms.max - 20.0).abs() < 0.1, "{:?}", r.latency_ms);
        assert_eq!(r.urls[1].url, "/slow");
        assert_eq!((r.urls[1].requests, r.urls[1].transport_errors), (2, 2));
        assert!((r.urls[1].latency_ms.min - 10.0).abs() < 0.01);
        assert!((r.urls[0].latency_ms.max - 2.0).abs() < 0.01);
        let text = r.to_text();
        assert!(
            text.contains("per URL (round-robin):\n  /fast  3 req"),
            "{text}"
        );
        assert!(text.contains("  /slow  2 req"), "{text}");
        assert!(text.contains("errors 2  status 200 x 2"), "{text}");
    }
}
