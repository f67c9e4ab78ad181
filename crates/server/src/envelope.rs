//! The request envelope: the one middleware every request passes through.
//!
//! In order, it: accepts or mints the `x-request-id`, opens the tracing span every log line of
//! the request is written in, counts the request in flight, enforces the handler timeout (503),
//! renders problems (filling `instance` and `request_id`) and converts any bare error response
//! into problem+json (on the OTLP trace path, into OTLP's `google.rpc.Status` instead), counts
//! errors, records the HTTP metrics, and echoes the request id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::context::RequestContext;
use crate::llm::otlp;
use crate::problem::{ApiError, ProblemKind, PROBLEM_JSON};
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request target (path and query) served, in bytes; longer is 414 `uri_too_long`.
/// Heads too long for `http::Uri` (64 KiB) never reach here: the connection layer answers them
/// (`connections::MAX_HEAD_BYTES`), also with a problem.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The `endpoint` label of requests that matched no route, so raw paths never become labels.
pub const UNMATCHED: &str = "unmatched";

pub(crate) async fn envelope(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let endpoint = matched
        .as_ref()
        .map_or(UNMATCHED, |m| m.as_str())
        .to_owned();
    let service = crate::routes::owners::service_for(&endpoint);
    let method = req.method().clone();
    // The path alone: a query string may carry things that do not belong in an error body.
    let instance = req.uri().path().to_owned();
    let request_bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let ctx = RequestContext::new(&request_id);
    req.extensions_mut().insert(ctx.clone());
    let uri_bytes = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    // OTLP/HTTP clients read errors as a google.rpc.Status in the request's encoding (JSON when
    // it declared none we know), whichever layer refused the request.
    let otlp_errors = (endpoint == otlp::TRACES_PATH).then(|| {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        otlp::Encoding::from_content_type(content_type).unwrap_or(otlp::Encoding::Json)
    });

    let span = tracing::info_span!("request", request_id = %request_id, method = %method, endpoint = %endpoint);
    let in_flight = state.metrics().request_started();
    let timeout = state.config().request_timeout;
    let outcome = if uri_bytes > MAX_URI_BYTES {
        Ok(ApiError::new(
            ProblemKind::UriTooLong,
            format!(
                "the request target is {uri_bytes} bytes; at most {MAX_URI_BYTES} are accepted (send large inputs in a body)"
            ),
        )
        .with("max_bytes", MAX_URI_BYTES)
        .into_response())
    } else {
        tokio::time::timeout(timeout, next.run(req))
            .instrument(span.clone())
            .await
    };
    drop(in_flight);
    let mut response = outcome.unwrap_or_else(|_| {
        ApiError::new(
            ProblemKind::Timeout,
            format!(
                "the request did not finish within {} ms",
                timeout.as_millis()
            ),
        )
        .into_response()
    });

    let tenant = ctx.tenant();
    if let Some(own) = response.extensions_mut().remove::<OwnErrorBody>() {
        // A protocol with its own error body (OTLP's google.rpc.Status): counted and logged
        // like a problem, the body left as the handler wrote it.
        let _entered = span.enter();
        if own.kind.is_failure() {
            tracing::error!(code = own.kind.code(), detail = %own.detail, "request failed");
        } else {
            tracing::debug!(code = own.kind.code(), detail = %own.detail, "request rejected");
        }
        state
            .metrics()
            .count_error(own.kind.code(), service, tenant);
    } else if let Some(problem) = take_problem(&mut response, &method) {
        let _entered = span.enter();
        if problem.kind.is_failure() {
            tracing::error!(code = problem.kind.code(), detail = %problem.detail, "request failed");
        } else {
            tracing::debug!(code = problem.kind.code(), detail = %problem.detail, "request rejected");
        }
        state
            .metrics()
            .count_error(problem.kind.code(), service, tenant);
        let (bytes, content_type) = match otlp_errors {
            Some(encoding) => {
                let status = otlp::RpcStatus {
                    code: otlp::rpc_code::for_status(response.status()),
                    message: crate::problem::excerpt(
                        &problem.detail,
                        crate::problem::MAX_DETAIL_CHARS,
                    ),
                };
                (status.encode_as(encoding), encoding.content_type())
            }
            None => {
                let body = problem.to_body(&instance, Some(&request_id));
                (serde_json::to_vec(&body).unwrap_or_default(), PROBLEM_JSON)
            }
        };
        *response.body_mut() = axum::body::Body::from(bytes);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.remove(header::CONTENT_LENGTH);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = start.elapsed();
    state.metrics().observe_http(&telemetry::HttpObservation {
        method: method.as_str(),
        endpoint: &endpoint,
        status: response.status().as_u16(),
        tenant_id: tenant,
        service,
        duration: elapsed,
        request_bytes,
    });
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request finished"
        );
    });
    response
}

/// Put in an error response's extensions by a handler whose protocol defines its own error
/// body (OTLP/HTTP): the envelope counts and logs the error as `kind` but does not replace the
/// body with a problem.
#[derive(Debug, Clone)]
pub(crate) struct OwnErrorBody {
    pub kind: ProblemKind,
    pub detail: String,
}

/// The problem to render, if this response is an error: the one a handler returned, or one made
/// up for a bare error status from a layer that knows nothing of problems.
fn take_problem(response: &mut Response, method: &axum::http::Method) -> Option<ApiError> {
    if let Some(problem) = response.extensions_mut().remove::<ApiError>() {
        return Some(problem);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let already_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if already_problem {
        return None;
    }
    let kind = ProblemKind::for_status(status);
    let detail = match status {
        // axum adds the Allow header outside this layer, so point to it rather than quote it.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on this route; the Allow header lists the methods that are")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this server accepts".to_owned()
        }
        s if s.is_server_error() => {
            "the server failed to handle this request; it has been logged".to_owned()
        }
        s => s
            .canonical_reason()
            .unwrap_or("request rejected")
            .to_owned(),
    };
    Some(ApiError::new(kind, detail))
}

/// The caller's request id if it is sane (1-128 visible ASCII characters), else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(value: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(value).unwrap());
        request_id(&headers)
    }

    fn bare(status: StatusCode) -> Response {
        (status, "plain text from a layer").into_response()
    }

    #[test]
    fn bare_error_responses_become_problems() {
        let method = axum::http::Method::GET;
        let cases = [
            (StatusCode::INTERNAL_SERVER_ERROR, ProblemKind::Internal),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                ProblemKind::MethodNotAllowed,
            ),
            (StatusCode::PAYLOAD_TOO_LARGE, ProblemKind::PayloadTooLarge),
            (StatusCode::BAD_GATEWAY, ProblemKind::Internal),
            (StatusCode::IM_A_TEAPOT, ProblemKind::InvalidParameter),
        ];
        for (status, kind) in cases {
            let problem = take_problem(&mut bare(status), &method).expect("a problem");
            assert_eq!(problem.kind, kind, "{status}");
            assert!(
                !problem.detail.contains("plain text"),
                "internal text must not leak"
            );
        }
        assert!(take_problem(&mut bare(StatusCode::OK), &method).is_none());
        let mut handled = ApiError::not_found("x").into_response();
        assert_eq!(
            take_problem(&mut handled, &method).map(|p| p.kind),
            Some(ProblemKind::NotFound)
        );
    }

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        assert_eq!(id_for("abc-123"), "abc-123");
        assert_eq!(id_for("trace:01/x@y"), "trace:01/x@y");
        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            let got = id_for(bad);
            assert_ne!(got, bad);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{bad:?} -> {got}");
        }
        assert!(uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }
}
