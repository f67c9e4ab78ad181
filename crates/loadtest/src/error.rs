//! The error type returned by plan validation, the parse helpers and [`run`](crate::run).

use std::io;

/// Everything that can go wrong before or while running a load test.
///
/// Every message is a single line. Messages about a bad input start with the
/// name of the field at fault (`url:`, `connections:`, `duration:`, ...), so
/// the CLI can print them as they are.
///
/// Failures of individual requests (refused connections, resets, timeouts)
/// during a run are *not* errors: they are counted in
/// [`Report::transport_errors`](crate::Report::transport_errors). The only
/// run-time error is [`LoadTestError::Connect`], returned when no connection
/// to the target could be established at all.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum LoadTestError {
    /// The URL string could not be parsed (from [`parse_url`](crate::parse_url)).
    #[error("url: invalid URL {input:?}: {reason}")]
    InvalidUrl {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The URL has no scheme or no host, e.g. `/ok` or `127.0.0.1:8080`.
    #[error("url: must be an absolute http:// URL with a host, e.g. http://127.0.0.1:8080/")]
    NotAbsolute,

    /// The URL scheme is not `http` (`https` is not supported).
    #[error("url: only http:// targets are supported")]
    UnsupportedScheme,

    /// The URL contains `user:password@`.
    #[error("url: credentials in the URL are not supported; send an Authorization header instead")]
    UrlCredentials,

    /// The URL host is (or resolves to) an address outside 127.0.0.0/8 and ::1.
    #[error(
        "url: target {target} is not a loopback address; loadtest only sends traffic to this machine"
    )]
    NotLoopback {
        /// The offending host (and, for a name, the address it resolved to).
        target: String,
    },

    /// A further URL is on another host or port than the first one: the
    /// connections are shared by every URL of a run.
    #[error("url: {other} is not on the same host and port as {first}; every URL of one run must name the same server")]
    MixedTargets {
        /// The first URL of the plan.
        first: String,
        /// The URL on another server.
        other: String,
    },

    /// A preset name was not recognised (from [`Preset`](crate::Preset)'s `FromStr`).
    #[error("preset: unknown preset {input:?} (expected light, normal, heavy or stress)")]
    InvalidPreset {
        /// The rejected input.
        input: String,
    },

    /// The URL host name could not be resolved.
    #[error("url: could not resolve {host}: {source}")]
    Resolve {
        /// The host name that was looked up.
        host: String,
        /// The resolver error.
        #[source]
        source: io::Error,
    },

    /// `connections` is 0 or more than [`MAX_CONNECTIONS`](crate::MAX_CONNECTIONS).
    #[error("connections: must be between 1 and 1024")]
    Connections {
        /// The rejected value.
        got: usize,
    },

    /// [`Stop::Duration`](crate::Stop::Duration) is zero.
    #[error("duration: must be greater than 0")]
    DurationZero,

    /// [`Stop::Duration`](crate::Stop::Duration) is longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    #[error("duration: at most 10m")]
    DurationTooLong,

    /// A duration string could not be parsed (from [`parse_duration`](crate::parse_duration)).
    #[error("duration: invalid value {input:?}; expected a whole number with a unit, e.g. 500ms, 10s or 2m")]
    InvalidDuration {
        /// The rejected input.
        input: String,
    },

    /// [`Stop::Requests`](crate::Stop::Requests) is 0 or more than
    /// [`MAX_REQUESTS`](crate::MAX_REQUESTS).
    #[error("requests: must be between 1 and 100000000")]
    Requests {
        /// The rejected value.
        got: u64,
    },

    /// `request_timeout` is zero or longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    #[error("request_timeout: must be greater than 0 and at most 10m")]
    RequestTimeout,

    /// The method cannot be used for a load test (`CONNECT`).
    #[error("method: {method} is not supported")]
    UnsupportedMethod {
        /// The rejected method.
        method: String,
    },

    /// A header string or header name was rejected.
    #[error("header: {0}")]
    InvalidHeader(String),

    /// Not a single connection to the target could be established.
    #[error("could not connect to {target}: {source}")]
    Connect {
        /// `host:port` of the target.
        target: String,
        /// The first connect error seen.
        #[source]
        source: io::Error,
    },

    /// A connection task ended abnormally (a bug in this crate).
    #[error("internal error: a connection task failed: {0}")]
    Internal(String),
}
