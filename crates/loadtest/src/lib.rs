//! A small, bounded HTTP/1.1 load generator for loopback targets.
//!
//! [`run`] opens [`Plan::connections`] keep-alive connections to the target
//! and sends requests back-to-back on each of them (a closed loop: one request
//! in flight per connection) until the [`Stop`] condition is met. It then
//! returns a [`Report`] with throughput, latency percentiles and counts by
//! HTTP status.
//!
//! Several URLs on one server ([`Plan::extra_urls`]) are measured in the
//! same run, **round-robin**: every request takes the next URL from one
//! counter shared by all connections, so each URL gets an equal share of the
//! requests under the same load, and the report has per-URL figures
//! ([`Report::urls`]) besides the totals. [`Preset`] names the seed's load
//! levels (connections and duration).
//!
//! Safety rules enforced by [`Plan::validate`] and [`run`]:
//!
//! * only `http://` URLs are accepted;
//! * the target host must be, or resolve *only* to, loopback addresses
//!   (127.0.0.0/8 or ::1), so traffic never leaves this machine;
//! * the load is bounded: at most [`MAX_CONNECTIONS`] connections, at most
//!   [`MAX_DURATION`] or [`MAX_REQUESTS`] requests.
//!
//! ```no_run
//! use std::time::Duration;
//! use loadtest::{Plan, Stop};
//!
//! # async fn demo() -> Result<(), loadtest::LoadTestError> {
//! let url = loadtest::parse_url("http://127.0.0.1:8080/healthz")?;
//! let mut plan = Plan::new(url, 4, Stop::Duration(Duration::from_secs(10)));
//! plan.headers.push(loadtest::parse_header("Accept: application/json")?);
//! let report = loadtest::run(plan).await?;
//! println!("{}", report.to_text());
//! # Ok(())
//! # }
//! ```
//!
//! [`run`] needs a tokio runtime with the I/O and time drivers enabled
//! (e.g. `#[tokio::main]`).

mod error;
mod report;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri};

pub use error::LoadTestError;
pub use report::{LatencySummary, Report, UrlReport};
pub use worker::run;

/// Largest accepted [`Plan::connections`].
pub const MAX_CONNECTIONS: usize = 1024;
/// Longest accepted [`Stop::Duration`] and [`Plan::request_timeout`] (10 minutes).
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Largest accepted [`Stop::Requests`].
pub const MAX_REQUESTS: u64 = 100_000_000;
/// [`Plan::request_timeout`] used by [`Plan::new`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to send, to where, and for how long.
///
/// Build one with [`Plan::new`] and adjust the public fields, or fill in
/// every field yourself. [`run`] calls [`Plan::validate`] first.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Target URL. Must be `http://` with a loopback host; the path and query
    /// are sent as-is on every request. The `Host` header is set from the
    /// authority unless [`Plan::headers`] contains one.
    pub url: Uri,
    /// Further URLs on the same scheme, host and port as [`Plan::url`]
    /// (usually empty). Requests go round-robin over `url`, `extra_urls[0]`,
    /// … from one counter shared by every connection, so each URL gets the
    /// same share (within one request per URL) under the same load; the
    /// connections are shared, hence the one-server rule.
    pub extra_urls: Vec<Uri>,
    /// Request method (`CONNECT` is refused).
    pub method: Method,
    /// Extra request headers, sent in this order (repeats allowed).
    /// `Content-Length`, `Transfer-Encoding` and `Upgrade` are refused: framing
    /// is derived from [`Plan::body`].
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request body, sent on every request; empty means no body.
    pub body: Bytes,
    /// Number of concurrent connections, `1..=1024`.
    pub connections: usize,
    /// When to stop sending.
    pub stop: Stop,
    /// Per-request limit (also applied to connecting). A timeout counts as a
    /// transport error and the connection is replaced.
    pub request_timeout: Duration,
}

/// When a load test stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop starting new requests once this much time has passed (at most
    /// 10 minutes). Requests in flight at the deadline are allowed to finish.
    Duration(Duration),
    /// Attempt exactly this many requests in total across all connections
    /// (`1..=100_000_000`).
    Requests(u64),
}

impl Plan {
    /// A `GET` plan with no extra headers, no body and
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// ```
    /// use loadtest::{Plan, Stop};
    /// let url = "http://127.0.0.1:8080/ok".parse().unwrap();
    /// let plan = Plan::new(url, 8, Stop::Requests(10_000));
    /// assert!(plan.validate().is_ok());
    /// ```
    pub fn new(url: Uri, connections: usize, stop: Stop) -> Plan {
        Plan {
            url,
            extra_urls: Vec::new(),
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            connections,
            stop,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Checks every bound without touching the network.
    ///
    /// A URL whose host is an IP literal outside loopback is refused here;
    /// host names are resolved and checked by [`run`].
    ///
    /// ```
    /// use loadtest::{LoadTestError, Plan, Stop};
    /// let plan = Plan::new("http://10.0.0.1/".parse().unwrap(), 1, Stop::Requests(1));
    /// let err = plan.validate().unwrap_err();
    /// assert!(matches!(err, LoadTestError::NotLoopback { .. }));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "url: target 10.0.0.1 is not a loopback address; loadtest only sends traffic to this machine"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), LoadTestError> {
        self.targets()?;
        if self.method == Method::CONNECT {
            return Err(LoadTestError::UnsupportedMethod {
                method: self.method.to_string(),
            });
        }
        for (name, _) in &self.headers {
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::UPGRADE
            {
                return Err(LoadTestError::InvalidHeader(format!(
                    "{name} cannot be set; it is derived from the request body"
                )));
            }
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(LoadTestError::Connections {
                got: self.connections,
            });
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return Err(LoadTestError::DurationZero),
            Stop::Duration(d) if d > MAX_DURATION => return Err(LoadTestError::DurationTooLong),
            Stop::Requests(n) if n == 0 || n > MAX_REQUESTS => {
                return Err(LoadTestError::Requests { got: n })
            }
            _ => {}
        }
        if self.request_timeout.is_zero() || self.request_timeout > MAX_DURATION {
            return Err(LoadTestError::RequestTimeout);
        }
        Ok(())
    }

    /// Checks every URL and extracts what the workers need: the first URL's
    /// target and the request path of each URL in round-robin order.
    fn targets(&self) -> Result<(TargetUrl, Vec<Uri>), LoadTestError> {
        let first = target_of(&self.url)?;
        let mut paths = vec![first.path.clone()];
        for url in &self.extra_urls {
            let other = target_of(url)?;
            if !other.host.eq_ignore_ascii_case(&first.host) || other.port != first.port {
                return Err(LoadTestError::MixedTargets {
                    first: self.url.to_string(),
                    other: url.to_string(),
                });
            }
            paths.push(other.path);
        }
        Ok((first, paths))
    }
}

/// What a [`Plan`] asks for at one of the seed's load levels.
///
/// | preset | connections | duration |
/// |---|---|---|
/// | `light` | 10 | 60 s |
/// | `normal` | 50 | 300 s |
/// | `heavy` | 100 | 180 s |
/// | `stress` | 200 | 60 s |
///
/// ```
/// use std::time::Duration;
/// use loadtest::Preset;
/// let p: Preset = "heavy".parse().unwrap();
/// assert_eq!((p.connections(), p.duration()), (100, Duration::from_secs(180)));
/// assert_eq!(p.to_string(), "heavy");
/// assert!("extreme".parse::<Preset>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// 10 connections for 60 s.
    Light,
    /// 50 connections for 300 s.
    Normal,
    /// 100 connections for 180 s.
    Heavy,
    /// 200 connections for 60 s.
    Stress,
}

impl Preset {
    /// Every preset, lightest first.
    pub const ALL: [Preset; 4] = [Preset::Light, Preset::Normal, Preset::Heavy, Preset::Stress];

    /// The preset's name as [`FromStr`](std::str::FromStr) accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Light => "light",
            Preset::Normal => "normal",
            Preset::Heavy => "heavy",
            Preset::Stress => "stress",
        }
    }

    /// Concurrent connections (the seed's concurrent users).
    pub fn connections(self) -> usize {
        match self {
            Preset::Light => 10,
            Preset::Normal => 50,
            Preset::Heavy => 100,
            Preset::Stress => 200,
        }
    }

    /// How long the seed runs it.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Preset::Light | Preset::Stress => 60,
            Preset::Normal => 300,
            Preset::Heavy => 180,
        })
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = LoadTestError;

    fn from_str(s: &str) -> Result<Preset, LoadTestError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| LoadTestError::InvalidPreset {
                input: s.to_owned(),
            })
    }
}

/// Checks one URL and extracts what the workers need from it.
fn target_of(url: &Uri) -> Result<TargetUrl, LoadTestError> {
    let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
        return Err(LoadTestError::NotAbsolute);
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(LoadTestError::UnsupportedScheme);
    }
    if authority.as_str().contains('@') {
        return Err(LoadTestError::UrlCredentials);
    }
    let host = authority.host();
    // IPv6 literals come bracketed ("[::1]"); the resolver wants them bare.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.is_empty() {
        return Err(LoadTestError::NotAbsolute);
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if !is_loopback(ip) {
            return Err(LoadTestError::NotLoopback {
                target: bare.to_owned(),
            });
        }
    }
    let host_header =
        HeaderValue::from_str(authority.as_str()).map_err(|_| LoadTestError::InvalidUrl {
            input: url.to_string(),
            reason: "the host is not a valid Host header value".to_owned(),
        })?;
    let path = match url.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => Uri::from(pq.clone()),
        _ => Uri::from_static("/"),
    };
    Ok(TargetUrl {
        host: bare.to_owned(),
        port: authority.port_u16().unwrap_or(80),
        host_header,
        path,
    })
}

/// The parts of one URL that [`run`] uses.
#[derive(Debug)]
struct TargetUrl {
    /// Host without IPv6 brackets, for the resolver.
    host: String,
    port: u16,
    /// `host[:port]` exactly as written in the URL.
    host_header: HeaderValue,
    /// Origin-form request target (`/path?query`).
    path: Uri,
}

/// The loopback rule: 127.0.0.0/8 or ::1, nothing else.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Resolves `host:port` and refuses unless every address is loopback.
async fn resolve_loopback(host: &str, port: u16) -> Result<Vec<SocketAddr>, LoadTestError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| LoadTestError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(LoadTestError::Resolve {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found"),
        });
    }
    if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        let target = if host.parse::<IpAddr>().is_ok() {
            host.to_owned()
        } else {
            format!("{host} ({})", bad.ip())
        };
        return Err(LoadTestError::NotLoopback { target });
    }
    Ok(addrs)
}

/// Parses a URL string such as `http://127.0.0.1:8080/path?q=1`.
///
/// Only syntax is checked here; the scheme and loopback rules are checked by
/// [`Plan::validate`] and [`run`].
///
/// ```
/// let url = loadtest::parse_url("http://localhost:3000/ok").unwrap();
/// assert_eq!(url.path(), "/ok");
/// assert!(loadtest::parse_url("http://exa mple/").is_err());
/// ```
pub fn parse_url(s: &str) -> Result<Uri, LoadTestError> {
    s.trim()
        .parse::<Uri>()
        .map_err(|e| LoadTestError::InvalidUrl {
            input: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Parses a `"Name: value"` header string (as given to `--header`).
///
/// Whitespace around the value is trimmed; the value may be empty.
///
/// ```
/// let (name, value) = loadtest::parse_header("X-Tenant:  acme ").unwrap();
/// assert_eq!(name, "x-tenant");
/// assert_eq!(value, "acme");
/// assert!(loadtest::parse_header("no colon here").is_err());
/// ```
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), LoadTestError> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(LoadTestError::InvalidHeader(format!(
            "{s:?} is not of the form 'Name: value'"
        )));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(LoadTestError::InvalidHeader(format!(
            "{s:?} has an empty header name"
        )));
    }
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        LoadTestError::InvalidHeader(format!("{name:?} is not a valid header name"))
    })?;
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let value = HeaderValue::from_str(value).map_err(|_| {
        LoadTestError::InvalidHeader(format!("the value of {name} contains invalid characters"))
    })?;
    Ok((name, value))
}

/// Parses a duration such as `500ms`, `10s`, `2m` or `1h`; a bare number
/// means seconds.
///
/// Bounds are checked by [`Plan::validate`], not here.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(loadtest::parse_duration("10s").unwrap(), Duration::from_secs(10));
/// assert_eq!(loadtest::parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(loadtest::parse_duration("ten").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, LoadTestError> {
    let invalid = || LoadTestError::InvalidDuration {
        input: s.to_owned(),
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let secs_per_unit = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid()),
    };
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.255.0.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("10.1.2.3".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    fn target(plan: &Plan) -> TargetUrl {
        plan.targets().unwrap().0
    }

    #[test]
    fn target_extraction() {
        let plan = Plan::new(
            "http://[::1]:9000/a/b?c=d".parse().unwrap(),
            1,
            Stop::Requests(1),
        );
        let t = target(&plan);
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 9000);
        assert_eq!(t.host_header, "[::1]:9000");
        assert_eq!(t.path, "/a/b?c=d");

        let plan = Plan::new("http://127.0.0.1".parse().unwrap(), 1, Stop::Requests(1));
        let t = target(&plan);
        assert_eq!(t.port, 80);
        assert_eq!(t.host_header, "127.0.0.1");
        assert_eq!(t.path, "/");
    }

    #[test]
    fn url_shape_errors() {
        let check = |url: &str| {
            Plan::new(url.parse().unwrap(), 1, Stop::Requests(1))
                .validate()
                .unwrap_err()
        };
        assert!(matches!(check("/ok"), LoadTestError::NotAbsolute));
        assert!(matches!(check("127.0.0.1:80"), LoadTestError::NotAbsolute));
        assert!(matches!(
            check("ftp://127.0.0.1/"),
            LoadTestError::UnsupportedScheme
        ));
        assert!(matches!(
            check("http://u:p@127.0.0.1/"),
            LoadTestError::UrlCredentials
        ));
        assert!(matches!(
            check("http://[fe80::1]/"),
            LoadTestError::NotLoopback { .. }
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration(" 1h ").unwrap(), Duration::from_secs(3600));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }

    #[tokio::test]
    async fn resolve_rejects_nothing_loopback() {
        let addrs = resolve_loopback("127.0.0.1", 8080).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        let err = resolve_loopback("10.1.2.3", 80).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "url: target 10.1.2.3 is not a loopback address; loadtest only sends traffic to this machine"
        );
    }
}
