//! Cross-origin resource sharing for browser clients (the OpenFeature web SDK's OFREP provider,
//! dashboards on another origin). Off unless origins are configured.
//!
//! The layer is the outermost one of [`crate::app`]: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered there, before the envelope, the rate limiter and
//! authentication, since browsers send preflights without credentials and do not retry them.
//! Every other response from an allowed origin, problems and 429s included, carries
//! `Access-Control-Allow-Origin` and the exposed headers, so scripts can read ETags and rate-limit
//! fields. Credentials (cookies) are never allowed: API keys travel in `Authorization`, which a
//! script sets itself and which needs no credentials mode; so `*` is safe to offer.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`, `http://127.0.0.1:3000`), or `*` alone for
    /// any origin. Empty: CORS is off, and browsers refuse cross-origin calls.
    pub allowed_origins: Vec<String>,
    /// How long a browser may reuse a preflight answer.
    pub max_age: Duration,
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            allowed_origins: Vec::new(),
            max_age: Duration::from_secs(600),
        }
    }
}

/// A configured origin that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CORS origin `{origin}`: {reason}")]
pub struct CorsOriginError {
    /// The origin as configured.
    pub origin: String,
    /// Why it is refused.
    pub reason: &'static str,
}

/// Request headers a browser may send cross-origin.
const ALLOWED_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::IF_MATCH,
    HeaderName::from_static("x-environment"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-user-id"),
];

/// Response headers a script may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [HeaderName; 6] = [
    header::ETAG,
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-policy"),
    header::RETRY_AFTER,
    header::LOCATION,
    HeaderName::from_static("x-request-id"),
];

const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

impl CorsSettings {
    /// Whether any origin is allowed.
    pub fn enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }

    /// Checks every origin: `*` alone, or `http`/`https` `://host[:port]` with nothing after
    /// (browsers send the origin in exactly that form, so anything else could never match).
    pub fn validate(&self) -> Result<(), CorsOriginError> {
        let many = self.allowed_origins.len() > 1;
        for origin in &self.allowed_origins {
            let refuse = |reason| {
                Err(CorsOriginError {
                    origin: origin.clone(),
                    reason,
                })
            };
            if origin == "*" {
                if many {
                    return refuse("`*` must be the only origin");
                }
                continue;
            }
            let Some((scheme, rest)) = origin.split_once("://") else {
                return refuse("expected scheme://host[:port]");
            };
            if scheme != "http" && scheme != "https" {
                return refuse("the scheme must be http or https");
            }
            if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
                return refuse("expected scheme://host[:port], without a path or a trailing slash");
            }
            if HeaderValue::from_str(origin).is_err() {
                return refuse("not a valid header value");
            }
        }
        Ok(())
    }

    /// The layer, or `None` when CORS is off. Origins must have passed
    /// [`CorsSettings::validate`]; one that does not is left out.
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        if !self.enabled() {
            return None;
        }
        let origins = if self.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.allowed_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(ALLOWED_METHODS)
                .allow_headers(ALLOWED_HEADERS)
                .expose_headers(EXPOSED_HEADERS)
                .max_age(self.max_age),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsSettings::default()
        }
    }

    #[test]
    fn origins_must_be_exact_or_a_lone_star() {
        assert!(settings(&[]).validate().is_ok());
        assert!(settings(&["*"]).validate().is_ok());
        assert!(
            settings(&["https://app.example.com", "http://127.0.0.1:3000"])
                .validate()
                .is_ok()
        );
        for (bad, reason) in [
            (&["*", "https://a.example"][..], "only"),
            (&["app.example.com"][..], "scheme://"),
            (&["ftp://app.example.com"][..], "http or https"),
            (&["https://app.example.com/"][..], "trailing slash"),
            (&["https://app.example.com/path"][..], "path"),
            (&["https://"][..], "scheme://"),
        ] {
            let e = settings(bad).validate().unwrap_err();
            assert!(e.to_string().contains(reason), "{bad:?}: {e}");
        }
    }
}
