//! The two exposition formats `/metrics` serves, and the choice between them.
//!
//! The registry encodes OpenMetrics 1.0.0. Scrapers that do not ask for it (older Prometheus
//! servers, `promtool check metrics`, most agents) get the Prometheus text format 0.0.4,
//! converted from the OpenMetrics text by [`to_text_004`]. The differences handled:
//!
//! | OpenMetrics | text 0.0.4 |
//! |---|---|
//! | `# TYPE x counter`, samples `x_total`, `x_created` | `# TYPE x_total counter`, `x_total` only |
//! | `# TYPE x info`, sample `x_info` | `# TYPE x_info gauge` |
//! | `# TYPE x stateset` | `# TYPE x gauge` |
//! | `# TYPE x gaugehistogram`, `x_gcount`, `x_gsum` | `# TYPE x histogram`, `x_count`, `x_sum` |
//! | `# TYPE x unknown` | `# TYPE x untyped` |
//! | `_created` samples of histograms and summaries | dropped |
//! | `# UNIT`, `# EOF` | dropped |
//! | exemplars (` # {…} v`) after a sample | dropped |
//! | timestamps in seconds (may be fractional) | integer milliseconds |
//! | `\"` in HELP text | `"` (0.0.4 escapes only `\\` and `\n` there) |
//!
//! A family's `# HELP` and `# TYPE` lines are written with its first sample, so a family with
//! no samples yet is left out rather than written empty.

/// The OpenMetrics media type of [`crate::Metrics::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of the Prometheus text format 0.0.4.
pub const TEXT_004_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text004,
}

impl Format {
    /// Picks the format for an `Accept` header: OpenMetrics when the client accepts
    /// `application/openmetrics-text` (version 1.0.0 or unversioned) at least as much as
    /// anything else it accepts; the 0.0.4 text in every other case, including no header.
    ///
    /// Prometheus sends, for example,
    /// `application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`,
    /// and gets OpenMetrics; `promtool check metrics` reads the 0.0.4 text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let mut openmetrics: f64 = 0.0;
        let mut other: f64 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0;
            let mut version = None;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0),
                    "version" => version = Some(value.to_owned()),
                    _ => {}
                }
            }
            if media == "application/openmetrics-text" {
                if version.as_deref().is_none_or(|v| v == "1.0.0") {
                    openmetrics = openmetrics.max(q);
                }
            } else if !media.is_empty() {
                other = other.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= other {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }

    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text004 => TEXT_004_CONTENT_TYPE,
        }
    }
}

/// A family as its metadata declared it.
struct Family {
    name: String,
    kind: String,
    help: Option<String>,
    written: bool,
}

impl Family {
    /// The family's name and type in the 0.0.4 text.
    fn converted(&self) -> (String, &'static str) {
        match self.kind.as_str() {
            "counter" => (format!("{}_total", self.name), "counter"),
            "gauge" => (self.name.clone(), "gauge"),
            "histogram" | "gaugehistogram" => (self.name.clone(), "histogram"),
            "summary" => (self.name.clone(), "summary"),
            "info" => (format!("{}_info", self.name), "gauge"),
            "stateset" => (self.name.clone(), "gauge"),
            _ => (self.name.clone(), "untyped"),
        }
    }
}

/// Converts OpenMetrics text into the Prometheus text format 0.0.4 (see the module docs).
pub fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family: Option<Family> = None;
    let mut pending_help: Option<(String, String)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name.to_owned(), help.to_owned()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let help = pending_help
                .take()
                .filter(|(of, _)| of == name)
                .map(|(_, help)| help);
            family = Some(Family {
                name: name.to_owned(),
                kind: kind.trim().to_owned(),
                help,
                written: false,
            });
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            // `# UNIT`, `# EOF`, and comments, which 0.0.4 would read as free text anyway.
            continue;
        }
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        let mut name = sample.name.to_owned();
        if let Some(f) = family.as_mut() {
            let has_created = matches!(
                f.kind.as_str(),
                "counter" | "histogram" | "summary" | "gaugehistogram"
            );
            if has_created && name.strip_prefix(f.name.as_str()) == Some("_created") {
                continue;
            }
            if f.kind == "gaugehistogram" {
                if let Some(base) = name.strip_suffix("_gcount") {
                    name = format!("{base}_count");
                } else if let Some(base) = name.strip_suffix("_gsum") {
                    name = format!("{base}_sum");
                }
            }
            if !f.written {
                f.written = true;
                let (converted, kind) = f.converted();
                if let Some(help) = &f.help {
                    out.push_str("# HELP ");
                    out.push_str(&converted);
                    out.push(' ');
                    out.push_str(&help_text_004(help));
                    out.push('\n');
                }
                out.push_str("# TYPE ");
                out.push_str(&converted);
                out.push(' ');
                out.push_str(kind);
                out.push('\n');
            }
        }
        out.push_str(&name);
        out.push_str(sample.labels);
        out.push(' ');
        out.push_str(sample.value);
        if let Some(ts) = sample.timestamp.and_then(seconds_to_millis) {
            out.push(' ');
            out.push_str(&ts.to_string());
        }
        out.push('\n');
    }
    out
}

/// One sample line, split into its parts (the exemplar, if any, is left out).
struct Sample<'a> {
    name: &'a str,
    /// `{…}` including the braces, or empty.
    labels: &'a str,
    value: &'a str,
    timestamp: Option<&'a str>,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = "";
        if rest.starts_with('{') {
            // Find the closing brace outside quoted label values (which may hold `}` or `#`).
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = None;
            for (i, c) in rest.char_indices() {
                match (in_quotes, escaped, c) {
                    (true, true, _) => escaped = false,
                    (true, false, '\\') => escaped = true,
                    (_, false, '"') => in_quotes = !in_quotes,
                    (false, _, '}') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            labels = &rest[..=end];
            rest = &rest[end + 1..];
        }
        // Everything after ` # ` is an exemplar.
        let rest = rest.split(" # ").next().unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let value = fields.next()?;
        Some(Sample {
            name,
            labels,
            value,
            timestamp: fields.next(),
        })
    }
}

/// An OpenMetrics timestamp (seconds, maybe fractional) as 0.0.4's integer milliseconds.
fn seconds_to_millis(ts: &str) -> Option<i64> {
    let seconds: f64 = ts.parse().ok()?;
    let millis = (seconds * 1000.0).round();
    (millis.is_finite() && millis.abs() < 9.0e15).then_some(millis as i64)
}

/// HELP text in 0.0.4 escapes only backslash and line feed: `\"` becomes `"`, and a backslash
/// that starts no escape is doubled.
fn help_text_004(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    let mut chars = help.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('\\') => {
                chars.next();
                out.push_str("\\\\");
            }
            Some('n') => {
                chars.next();
                out.push_str("\\n");
            }
            Some('"') => {
                chars.next();
                out.push('"');
            }
            _ => out.push_str("\\\\"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_promtool_accept_headers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        let prometheus_3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus_3)), Format::OpenMetrics);
        let text_first = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5";
        assert_eq!(Format::negotiate(Some(text_first)), Format::Text004);
        assert_eq!(Format::negotiate(None), Format::Text004);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text004);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text004);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; Version=1.0.0")),
            Format::OpenMetrics
        );
        // Only the 0.0.1 draft, which this server does not write, or refused outright.
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=0.0.1")),
            Format::Text004
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text004
        );
    }

    #[test]
    fn counters_are_renamed_and_created_samples_dropped() {
        let om = "# HELP http_requests Total HTTP requests.\n\
                  # TYPE http_requests counter\n\
                  http_requests_total{method=\"GET\"} 3\n\
                  http_requests_created{method=\"GET\"} 1700000000.5\n\
                  # EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP http_requests_total Total HTTP requests.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"GET\"} 3\n"
        );
    }

    #[test]
    fn units_exemplars_and_timestamps() {
        let om = "# HELP op_seconds Time.\n\
                  # TYPE op_seconds histogram\n\
                  # UNIT op_seconds seconds\n\
                  op_seconds_sum 1.5\n\
                  op_seconds_count 2\n\
                  op_seconds_bucket{le=\"1.0\"} 1 # {trace_id=\"a # }\"} 0.5 1700000000.0\n\
                  op_seconds_bucket{le=\"+Inf\"} 2\n\
                  op_seconds_created 1700000000.0\n\
                  # HELP temp Degrees \\\"C\\\" \\\\ n.\n\
                  # TYPE temp gauge\n\
                  temp{room=\"a}b # c\",x=\"q\\\"\"} 21.5 1700000000.25\n\
                  # EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP op_seconds Time.\n\
             # TYPE op_seconds histogram\n\
             op_seconds_sum 1.5\n\
             op_seconds_count 2\n\
             op_seconds_bucket{le=\"1.0\"} 1\n\
             op_seconds_bucket{le=\"+Inf\"} 2\n\
             # HELP temp Degrees \"C\" \\\\ n.\n\
             # TYPE temp gauge\n\
             temp{room=\"a}b # c\",x=\"q\\\"\"} 21.5 1700000000250\n"
        );
    }

    #[test]
    fn info_stateset_gaugehistogram_unknown_and_empty_families() {
        let om = "# HELP build Build.\n\
                  # TYPE build info\n\
                  build_info{version=\"1\"} 1\n\
                  # HELP mode Mode.\n\
                  # TYPE mode stateset\n\
                  mode{mode=\"a\"} 1\n\
                  mode{mode=\"b\"} 0\n\
                  # HELP queue Queue.\n\
                  # TYPE queue gaugehistogram\n\
                  queue_bucket{le=\"+Inf\"} 4\n\
                  queue_gcount 4\n\
                  queue_gsum 9\n\
                  # HELP nobody Never observed.\n\
                  # TYPE nobody counter\n\
                  # HELP thing Thing.\n\
                  # TYPE thing unknown\n\
                  thing 7\n\
                  # EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP build_info Build.\n\
             # TYPE build_info gauge\n\
             build_info{version=\"1\"} 1\n\
             # HELP mode Mode.\n\
             # TYPE mode gauge\n\
             mode{mode=\"a\"} 1\n\
             mode{mode=\"b\"} 0\n\
             # HELP queue Queue.\n\
             # TYPE queue histogram\n\
             queue_bucket{le=\"+Inf\"} 4\n\
             queue_count 4\n\
             queue_sum 9\n\
             # HELP thing Thing.\n\
             # TYPE thing untyped\n\
             thing 7\n"
        );
    }

    #[test]
    fn the_registry_output_converts_without_openmetrics_leftovers() {
        let m = crate::Metrics::new(crate::MetricsConfig::default());
        m.observe_http(&crate::HttpObservation {
            method: "GET",
            endpoint: "/x",
            status: 200,
            tenant_id: None,
            service: "platform",
            duration: std::time::Duration::from_millis(2),
            request_bytes: 10,
        });
        let text = to_text_004(&m.encode());
        assert!(
            text.contains("# TYPE http_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE http_request_duration_seconds histogram\n"));
        for leftover in [
            "# EOF",
            "# UNIT",
            "_created",
            "# TYPE http_requests counter",
        ] {
            assert!(!text.contains(leftover), "{leftover} in:\n{text}");
        }
    }
}
