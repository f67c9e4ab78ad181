//! Dual-write to a legacy system: the tenant's `[dual_write]` settings, the JSON each accepted
//! item is forwarded as, and how the legacy endpoint's answers are judged.
//!
//! ```toml
//! [dual_write]
//! enabled = true                           # default false
//! url = "https://legacy.example.com/api/feedback"
//! timeout_ms = 5000                        # per request, 100 to 60000 (default 5000)
//! max_attempts = 8                         # attempts of a forwarding job, 1 to 26 (default 8)
//! auth_header_env = "LEGACY_TOKEN"         # Authorization = the value of this server env var
//! [dual_write.headers]                     # more headers: header name = env var name
//! X-Api-Key = "LEGACY_API_KEY"
//! ```
//!
//! Secrets never go into the configuration (which any admin of the tenant can read back): the
//! configuration names environment variables, and the worker reads their values when it
//! sends. A variable that is unset when a request is made fails that attempt (retried: an
//! operator can set it).
//!
//! Pure: no I/O. The server sends the requests; this module says what to send and what an
//! answer means.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Bounds of `timeout_ms`.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Default attempts of a forwarding job.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Bounds of `max_attempts` (the jobs system allows 25 retries after the first attempt).
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=26;
/// Longest accepted URL.
pub const MAX_URL_BYTES: usize = 2_048;
/// Most extra headers.
pub const MAX_HEADERS: usize = 16;
/// Headers the forwarder sets itself, which the configuration may not name.
pub const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "idempotency-key",
    "authorization",
];

/// `[dual_write]`: forwarding each item accepted over HTTP to a legacy endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DualWriteConfig {
    /// Forward accepted items (default false).
    pub enabled: bool,
    /// The legacy endpoint items are POSTed to (`http://` or `https://`); required when
    /// enabled.
    pub url: Option<String>,
    /// Per-request timeout in milliseconds (connect, send and answer).
    pub timeout_ms: u64,
    /// Attempts of one forwarding job before it is dead.
    pub max_attempts: u32,
    /// The environment variable whose value is sent as `Authorization` (e.g. `Bearer …`).
    pub auth_header_env: Option<String>,
    /// More headers: header name → environment variable holding its value.
    pub headers: BTreeMap<String, String>,
}

impl Default for DualWriteConfig {
    fn default() -> Self {
        DualWriteConfig {
            enabled: false,
            url: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            auth_header_env: None,
            headers: BTreeMap::new(),
        }
    }
}

fn fault(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: format!("dual_write.{path}"),
        message: message.into(),
    }
}

/// Whether `name` is a portable environment variable name (`[A-Z_][A-Z0-9_]*`, at most 128).
pub fn valid_env_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` is an HTTP header name (an RFC 9110 token, at most 64 bytes).
pub fn valid_header_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The parts of an `http(s)://host[:port]/path` URL the forwarder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyUrl {
    /// Whether the scheme is `https`.
    pub tls: bool,
    /// The host (a name, IPv4 address or bracketed IPv6 address).
    pub host: String,
    /// The port (the scheme's default when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl LegacyUrl {
    /// Reads `url`; the error says what is wrong.
    pub fn parse(url: &str) -> Result<LegacyUrl, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
        }
        if url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
        {
            return Err("must not contain spaces, control or non-ASCII characters".to_owned());
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with http:// or https://".to_owned());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.contains('#') {
            return Err("must not have a fragment".to_owned());
        }
        if authority.contains('@') {
            return Err(
                "must not carry credentials (name an environment variable in auth_header_env)"
                    .to_owned(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| "has an unclosed [IPv6] host".to_owned())?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err("has no host".to_owned());
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("has an invalid port {p:?}")),
            },
        };
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(LegacyUrl {
            tls,
            host,
            port,
            path_and_query,
        })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl DualWriteConfig {
    /// Checks every field; the error names its path (`dual_write.url`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.url, self.enabled) {
            (None, true) => return Err(fault("url", "is required when enabled = true")),
            (Some(url), _) => {
                LegacyUrl::parse(url).map_err(|m| fault("url", m))?;
            }
            (None, false) => {}
        }
        if !TIMEOUT_MS_RANGE.contains(&self.timeout_ms) {
            return Err(fault(
                "timeout_ms",
                format!(
                    "must be {} to {}",
                    TIMEOUT_MS_RANGE.start(),
                    TIMEOUT_MS_RANGE.end()
                ),
            ));
        }
        if !MAX_ATTEMPTS_RANGE.contains(&self.max_attempts) {
            return Err(fault(
                "max_attempts",
                format!(
                    "must be {} to {}",
                    MAX_ATTEMPTS_RANGE.start(),
                    MAX_ATTEMPTS_RANGE.end()
                ),
            ));
        }
        if let Some(env) = &self.auth_header_env {
            if !valid_env_name(env) {
                return Err(fault(
                    "auth_header_env",
                    "must be an environment variable name (A-Z, 0-9, _), not a secret",
                ));
            }
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(fault("headers", format!("at most {MAX_HEADERS} headers")));
        }
        for (name, env) in &self.headers {
            if !valid_header_name(name) {
                return Err(fault(
                    &format!("headers.{name}"),
                    "is not an HTTP header name",
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(fault(
                    &format!("headers.{name}"),
                    "is set by the forwarder (use auth_header_env for Authorization)",
                ));
            }
            if !valid_env_name(env) {
                return Err(fault(
                    &format!("headers.{name}"),
                    "must name an environment variable (A-Z, 0-9, _), not hold a secret",
                ));
            }
        }
        Ok(())
    }

    /// The parsed URL, when forwarding is on.
    pub fn target(&self) -> Option<LegacyUrl> {
        if !self.enabled {
            return None;
        }
        self.url.as_deref().and_then(|u| LegacyUrl::parse(u).ok())
    }

    /// The headers to send besides the forwarder's own, as (header name, env var name),
    /// `Authorization` first when configured.
    pub fn header_envs(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 1);
        if let Some(env) = &self.auth_header_env {
            out.push(("Authorization", env));
        }
        out.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out
    }
}

/// The JSON body of one forwarded item: the item as signalbox holds it, text in clear, in
/// the shape `POST /api/v1/feedback` accepts (so the legacy side's export maps back with the
/// import mapping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyItem {
    /// The item's id (also the `Idempotency-Key`).
    pub id: String,
    /// Who sent it.
    pub user_id: Option<String>,
    /// The item's kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it came from (`web`, `api`, …).
    pub channel: Option<String>,
    /// 1 to 5, when rated.
    pub rating: Option<i64>,
    /// The original text, in clear.
    pub text: Option<String>,
    /// BCP 47 locale, when sent.
    pub locale: Option<String>,
    /// Region, when sent.
    pub region: Option<String>,
    /// When it happened (Unix ms).
    pub occurred_at_ms: i64,
    /// A JSON object, or null.
    pub metadata: serde_json::Value,
}

impl LegacyItem {
    /// The request body's bytes.
    pub fn body(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What one answer of the legacy endpoint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: stored; 409: it already had this Idempotency-Key. Either way delivered.
    Delivered,
    /// 5xx, 408 and 429: the endpoint is unwell or busy; a later attempt may work.
    Retry,
    /// Any other answer (4xx, redirects, 1xx): it refuses this item; no retry fixes that.
    Permanent,
}

/// Judges a status code of the legacy endpoint.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 | 409 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// The outcomes `feedback_legacy_forward_total{outcome}` counts (a closed set).
pub const OUTCOMES: [&str; 5] = [
    "delivered",
    "duplicate",
    "retry",
    "rejected",
    "skipped_purged",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enabled(url: &str) -> DualWriteConfig {
        DualWriteConfig {
            enabled: true,
            url: Some(url.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn urls_are_read_with_their_defaults() {
        let u = LegacyUrl::parse("http://127.0.0.1:8080/legacy/feedback?x=1").unwrap();
        assert_eq!(
            u,
            LegacyUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                path_and_query: "/legacy/feedback?x=1".into()
            }
        );
        assert_eq!(u.authority(), "127.0.0.1:8080");
        let u = LegacyUrl::parse("https://legacy.example.com").unwrap();
        assert_eq!((u.tls, u.port, u.path_and_query.as_str()), (true, 443, "/"));
        assert_eq!(u.authority(), "legacy.example.com");
        let u = LegacyUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, why) in [
            ("ftp://x/y", "http:// or https://"),
            ("http:///path", "no host"),
            ("http://x:0/", "invalid port"),
            ("http://x:99999/", "invalid port"),
            ("http://user:pw@x/", "credentials"),
            ("http://x/a b", "spaces"),
            ("http://x/#frag", "fragment"),
            ("http://[::1/", "unclosed"),
        ] {
            let e = LegacyUrl::parse(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        assert!(LegacyUrl::parse(&format!("http://x/{}", "a".repeat(MAX_URL_BYTES))).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(DualWriteConfig::default().validate(), Ok(()));
        let path = |c: DualWriteConfig| c.validate().unwrap_err().path;
        assert_eq!(
            path(DualWriteConfig {
                enabled: true,
                ..Default::default()
            }),
            "dual_write.url"
        );
        assert_eq!(path(enabled("mailto:x")), "dual_write.url");
        assert_eq!(
            path(DualWriteConfig {
                timeout_ms: 50,
                ..enabled("http://x/")
            }),
            "dual_write.timeout_ms"
        );
        assert_eq!(
            path(DualWriteConfig {
                max_attempts: 0,
                ..enabled("http://x/")
            }),
            "dual_write.max_attempts"
        );
        assert_eq!(
            path(DualWriteConfig {
                auth_header_env: Some("Bearer abc123".into()),
                ..enabled("http://x/")
            }),
            "dual_write.auth_header_env"
        );
        let mut headers = BTreeMap::new();
        headers.insert("X-Api-Key".to_owned(), "sk_live_abc".to_owned());
        assert_eq!(
            path(DualWriteConfig {
                headers,
                ..enabled("http://x/")
            }),
            "dual_write.headers.X-Api-Key"
        );
        let mut headers = BTreeMap::new();
        headers.insert("Idempotency-Key".to_owned(), "K".to_owned());
        assert_eq!(
            path(DualWriteConfig {
                headers,
                ..enabled("http://x/")
            }),
            "dual_write.headers.Idempotency-Key"
        );
    }

    #[test]
    fn the_target_and_headers_follow_the_settings() {
        let mut c = enabled("http://legacy:81/in");
        c.auth_header_env = Some("LEGACY_TOKEN".into());
        c.headers.insert("X-Source".into(), "LEGACY_SOURCE".into());
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.target().unwrap().port, 81);
        assert_eq!(
            c.header_envs(),
            [
                ("Authorization", "LEGACY_TOKEN"),
                ("X-Source", "LEGACY_SOURCE")
            ]
        );
        c.enabled = false;
        assert_eq!(c.target(), None);
    }

    #[test]
    fn answers_are_judged_as_documented() {
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(201), Verdict::Delivered);
        assert_eq!(verdict(409), Verdict::Delivered);
        assert_eq!(verdict(503), Verdict::Retry);
        assert_eq!(verdict(429), Verdict::Retry);
        assert_eq!(verdict(408), Verdict::Retry);
        assert_eq!(verdict(400), Verdict::Permanent);
        assert_eq!(verdict(422), Verdict::Permanent);
        assert_eq!(verdict(301), Verdict::Permanent);
    }

    #[test]
    fn the_body_carries_every_field() {
        let item = LegacyItem {
            id: "fb_1".into(),
            user_id: Some("u1".into()),
            kind: "review".into(),
            channel: Some("web".into()),
            rating: Some(4),
            text: Some("café \u{1F600} \"quoted\"".into()),
            locale: Some("fr-FR".into()),
            region: Some("eu".into()),
            occurred_at_ms: 1_700_000_000_000,
            metadata: serde_json::json!({"plan": "pro"}),
        };
        let v: serde_json::Value = serde_json::from_slice(&item.body()).unwrap();
        assert_eq!(v["type"], "review");
        assert_eq!(v["text"], "café \u{1F600} \"quoted\"");
        assert_eq!(v["metadata"]["plan"], "pro");
        assert_eq!(v.as_object().unwrap().len(), 10);
    }

    proptest! {
        /// Every status gets exactly one verdict, and only 2xx and 409 count as delivered.
        #[test]
        fn only_2xx_and_409_are_delivered(status in 100u16..1000) {
            let delivered = (200..300).contains(&status) || status == 409;
            prop_assert_eq!(verdict(status) == Verdict::Delivered, delivered);
            if (500..600).contains(&status) {
                prop_assert_eq!(verdict(status), Verdict::Retry);
            }
        }

        /// Any text survives the body byte for byte.
        #[test]
        fn texts_round_trip_through_the_body(text in any::<String>(), id in "[a-z0-9_]{1,40}") {
            let item = LegacyItem {
                id, user_id: None, kind: "review".into(), channel: None, rating: None,
                text: Some(text), locale: None, region: None, occurred_at_ms: 0,
                metadata: serde_json::Value::Null,
            };
            let back: LegacyItem = serde_json::from_slice(&item.body()).unwrap();
            prop_assert_eq!(back, item);
        }

        /// Parsing never panics, and what parses has a host and a path starting with '/'.
        #[test]
        fn url_parsing_is_total(url in "(https?://)?[a-z0-9.:\\[\\]@/?#%-]{0,40}") {
            if let Ok(u) = LegacyUrl::parse(&url) {
                prop_assert!(!u.host.is_empty());
                prop_assert!(u.path_and_query.starts_with('/'));
                prop_assert!(u.port > 0);
            }
        }
    }
}
