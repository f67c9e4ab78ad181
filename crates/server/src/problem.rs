//! The error catalogue: every error signalbox answers over HTTP, as RFC 9457 problem+json.
//!
//! Handlers and extractors return [`ApiError`]. Its `IntoResponse` only sets the status and
//! stashes the problem in the response's extensions; the request envelope
//! ([`crate::envelope`]) renders the body, because only it knows the request path
//! (`instance`) and request id. The envelope also turns any bare error response that did not come
//! from here (a panic, axum's 405) into a problem, so no client ever sees a non-problem error.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! catalogue {
    ($($kind:ident => ($status:ident, $code:literal, $title:literal)),* $(,)?) => {
        /// What went wrong, as a stable code. The code is the last part of the problem `type`
        /// URI and the `error_type` label of `errors_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProblemKind { $($kind),* }

        impl ProblemKind {
            /// Every kind, for documentation and tests.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$kind),*];

            pub fn status(self) -> StatusCode {
                match self { $(ProblemKind::$kind => StatusCode::$status),* }
            }

            /// Stable machine-readable code, `snake_case`.
            pub fn code(self) -> &'static str {
                match self { $(ProblemKind::$kind => $code),* }
            }

            /// Short human summary; the same for every occurrence of this kind.
            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$kind => $title),* }
            }
        }
    };
}

catalogue! {
    MalformedJson => (BAD_REQUEST, "malformed_json", "Request body is not valid JSON"),
    MalformedOtlp => (BAD_REQUEST, "malformed_otlp", "Request body is not a valid OTLP export request"),
    InvalidField => (BAD_REQUEST, "invalid_field", "A field has the wrong type or value"),
    InvalidParameter => (BAD_REQUEST, "invalid_parameter", "A query or path parameter is invalid"),
    Unauthorized => (UNAUTHORIZED, "unauthorized", "Missing or invalid API key"),
    Forbidden => (FORBIDDEN, "forbidden", "The API key lacks a required scope"),
    PrivacyBudgetExhausted => (FORBIDDEN, "privacy_budget_exhausted", "The privacy budget of this period is spent"),
    NotFound => (NOT_FOUND, "not_found", "Resource not found"),
    RouteNotFound => (NOT_FOUND, "route_not_found", "No such route"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed on this route"),
    Gone => (GONE, "gone", "The resource was deleted"),
    Conflict => (CONFLICT, "conflict", "Resource already exists"),
    InvalidState => (CONFLICT, "invalid_state", "The resource is not in a state that allows this"),
    LastAdminKey => (CONFLICT, "last_admin_key", "This is the tenant's last active admin key"),
    PreconditionFailed => (PRECONDITION_FAILED, "precondition_failed", "The resource changed since it was read"),
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "Request body too large"),
    UriTooLong => (URI_TOO_LONG, "uri_too_long", "Request target too long"),
    HeadersTooLarge => (REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "Request head too large"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported content type"),
    Unprocessable => (UNPROCESSABLE_ENTITY, "unprocessable", "Request is well-formed but cannot be processed"),
    FlagEvaluation => (BAD_REQUEST, "flag_evaluation_failed", "The flag cannot be evaluated for this context"),
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
    Internal => (INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "A dependency is unavailable"),
    Timeout => (SERVICE_UNAVAILABLE, "timeout", "The request took too long"),
    ForecastModelMissing => (NOT_IMPLEMENTED, "forecast_model_missing", "This server has no forecast model"),
    DatabaseTimeout => (SERVICE_UNAVAILABLE, "database_timeout", "A database statement ran past its timeout"),
    DatabaseBusy => (SERVICE_UNAVAILABLE, "database_busy", "No database connection was free in time"),
}

impl ProblemKind {
    /// The problem `type` URI. URNs are stable and promise no web page we might not keep.
    pub fn type_uri(self) -> String {
        format!("urn:signalbox:problem:{}", self.code())
    }

    /// The kind for a bare error status that reached the envelope without a problem.
    pub fn for_status(status: StatusCode) -> ProblemKind {
        match status {
            StatusCode::BAD_REQUEST => ProblemKind::InvalidParameter,
            StatusCode::UNAUTHORIZED => ProblemKind::Unauthorized,
            StatusCode::FORBIDDEN => ProblemKind::Forbidden,
            StatusCode::NOT_FOUND => ProblemKind::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
            StatusCode::CONFLICT => ProblemKind::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => ProblemKind::UriTooLong,
            StatusCode::GONE => ProblemKind::Gone,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ProblemKind::Unprocessable,
            StatusCode::TOO_MANY_REQUESTS => ProblemKind::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ProblemKind::Unavailable,
            s if s.is_client_error() => ProblemKind::InvalidParameter,
            _ => ProblemKind::Internal,
        }
    }
}

impl ProblemKind {
    /// Whether an occurrence means the server failed (logged at ERROR). A 5xx that reports how
    /// the server is configured, the same every time, is not a failure to alert on.
    pub fn is_failure(self) -> bool {
        self.status().is_server_error() && self != ProblemKind::ForecastModelMissing
    }
}

/// An error answer: a kind, a detail for this occurrence, and optional extension members.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub extensions: Map<String, Value>,
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds a member to the problem object (RFC 9457 §3.2), e.g. the offending `field`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> ApiError {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn invalid_field(field: &str, detail: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::InvalidField, detail).with("field", field)
    }

    /// 400 for a bad query or path parameter; `parameter` names it in the problem.
    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::InvalidParameter, detail).with("parameter", parameter)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::Unauthorized, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::NotFound, detail)
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            ProblemKind::Internal,
            "the server failed to handle this request; it has been logged",
        )
    }

    /// The problem object, complete with `instance` and the request id.
    ///
    /// Details and extension strings often quote what the client sent (a bad value, a key);
    /// each is cut to a short excerpt here, so a rejected megabyte is never echoed back.
    pub fn to_body(&self, instance: &str, request_id: Option<&str>) -> Value {
        let mut body = Map::with_capacity(6 + self.extensions.len());
        body.insert("type".into(), self.kind.type_uri().into());
        body.insert("title".into(), self.kind.title().into());
        body.insert("status".into(), self.kind.status().as_u16().into());
        body.insert(
            "detail".into(),
            excerpt(&self.detail, MAX_DETAIL_CHARS).into(),
        );
        body.insert(
            "instance".into(),
            excerpt(instance, MAX_QUOTED_CHARS).into(),
        );
        if let Some(id) = request_id {
            body.insert("request_id".into(), id.into());
        }
        for (k, v) in &self.extensions {
            body.entry(k.clone()).or_insert_with(|| bounded(v));
        }
        Value::Object(body)
    }
}

/// Longest `detail` a problem carries, in characters.
pub const MAX_DETAIL_CHARS: usize = 512;
/// Longest string a problem's extension members (and `instance`) carry, in characters.
pub const MAX_QUOTED_CHARS: usize = 256;

/// `text` cut to at most `max` characters (on a character boundary), marked with `…` and the
/// number of bytes left out when cut.
///
/// ```
/// assert_eq!(server::problem::excerpt("short", 10), "short");
/// assert_eq!(server::problem::excerpt("abcdefghij", 4), "abcd… (6 more bytes)");
/// ```
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} more bytes)", &text[..cut], text.len() - cut),
    }
}

/// A copy of an extension value whose strings are excerpts.
fn bounded(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(excerpt(s, MAX_QUOTED_CHARS)),
        Value::Array(items) => Value::Array(items.iter().map(bounded).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (excerpt(k, MAX_QUOTED_CHARS), bounded(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.kind.status().into_response();
        if self.kind == ProblemKind::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            self.kind,
            ProblemKind::Timeout
                | ProblemKind::Unavailable
                | ProblemKind::DatabaseTimeout
                | ProblemKind::DatabaseBusy
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        use store::StoreError as E;
        match e {
            E::Invalid { field, reason } => {
                ApiError::invalid_field(field, format!("{field} {reason}"))
            }
            E::Conflict { what } => {
                ApiError::new(ProblemKind::Conflict, format!("{what} already exists"))
            }
            E::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            E::JobState {
                job_id,
                status,
                action,
            } => ApiError::new(
                ProblemKind::Conflict,
                format!("job {job_id} is {status}; it cannot be {action}"),
            )
            .with("status", status.as_str()),
            E::LastAdminKey { key_id, .. } => ApiError::new(
                ProblemKind::LastAdminKey,
                format!(
                    "key {key_id} is this tenant's last active admin key; revoking it would leave \
                     nobody able to manage the tenant's keys. Create another admin key first \
                     (POST /api/v1/tenant/keys with scopes [\"admin\"]), then revoke this one"
                ),
            )
            .with("key_id", key_id),
            E::VersionMismatch {
                what,
                expected,
                current,
            } => {
                let detail = match current {
                    Some(current) => format!(
                        "{what} is at version {current}, not {expected}; read it again and retry"
                    ),
                    None => format!(
                        "{what} changed while this request ran (expected version {expected}); read it again and retry"
                    ),
                };
                let error = ApiError::new(ProblemKind::PreconditionFailed, detail);
                match current {
                    Some(current) => error.with("current_version", current),
                    None => error,
                }
            }
            E::StatementTimeout => {
                tracing::warn!("database statement timeout");
                ApiError::new(
                    ProblemKind::DatabaseTimeout,
                    "a database statement ran past the statement timeout \
                     (--database-statement-timeout) and was cancelled; retry shortly",
                )
            }
            E::PoolTimedOut => {
                tracing::warn!("database pool exhausted");
                ApiError::new(
                    ProblemKind::DatabaseBusy,
                    "every database connection stayed in use for the whole acquire timeout \
                     (--database-pool-size, --database-acquire-timeout); retry shortly",
                )
            }
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::new(
                    ProblemKind::Unavailable,
                    "storage is unavailable; retry shortly",
                )
            }
            e => {
                tracing::error!(error = %e, "storage error");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_codes_are_unique_and_statuses_are_errors() {
        let mut codes: Vec<_> = ProblemKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ProblemKind::ALL.len());
        for kind in ProblemKind::ALL {
            assert!(
                kind.status().is_client_error() || kind.status().is_server_error(),
                "{kind:?}"
            );
            assert!(kind.type_uri().ends_with(kind.code()));
        }
    }

    #[test]
    fn body_has_the_rfc_9457_members_and_extensions_cannot_override_them() {
        let e = ApiError::invalid_field("scopes", "bad")
            .with("status", 999)
            .with("hint", "x");
        let body = e.to_body("/api/v1/tenant/keys", Some("req-1"));
        assert_eq!(body["type"], "urn:signalbox:problem:invalid_field");
        assert_eq!(body["status"], 400);
        assert_eq!(body["instance"], "/api/v1/tenant/keys");
        assert_eq!(body["field"], "scopes");
        assert_eq!(body["hint"], "x");
        assert_eq!(body["request_id"], "req-1");
    }
}

#[cfg(test)]
mod docs {
    use super::ProblemKind;

    /// docs/errors.md lists every code with its status; this keeps the page true.
    #[test]
    fn every_problem_kind_is_documented_with_its_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let page = std::fs::read_to_string(path).expect("docs/errors.md");
        for kind in ProblemKind::ALL {
            let row = format!("| `{}` | {} |", kind.code(), kind.status().as_u16());
            assert!(
                page.contains(&row),
                "docs/errors.md lacks the row starting {row}"
            );
        }
        let rows = page.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            ProblemKind::ALL.len(),
            "docs/errors.md lists codes that do not exist"
        );
    }
}
