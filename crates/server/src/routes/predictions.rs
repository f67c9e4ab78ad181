//! Weber predictions over HTTP: purchases in (`POST /api/v1/transactions`); the handlers only
//! translate, the use cases live in `crate::predictions`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use store::Scope;

use crate::extract::{body_error, Auth};
use crate::ingest::{BodyError, Framing, MAX_EVENTS_PER_REQUEST};
use crate::predictions::transactions::{self, TransactionIngestError, TransactionReport};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// Ingests purchases (write scope): a JSON array (`application/json`) or NDJSON
/// (`application/x-ndjson`), at most 10,000 per request. Each purchase is `{order_id,
/// customer_id, occurred_at (RFC 3339 or epoch ms), amount, currency?}`: `amount` is the order's
/// net value, a number from 0 (a free order is a purchase) to 1e12 (negative amounts are
/// rejected: send refunds as the net amount); `occurred_at` at most 5 minutes in the future;
/// `currency` an ISO 4217 code (predictions assume one currency per tenant). Bad purchases are
/// rejected one by one (index, field, reason) and the rest are accepted. An order is stored
/// once: the same `order_id` with the same values is a duplicate and changes nothing; with
/// different values it is rejected (`field: order_id`) and the stored order stays.
#[utoipa::path(post, path = "/api/v1/transactions", tag = "weber", security(("api_key" = [])),
    request_body(content = Vec<Object>, description = "Purchases as a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, description = "At least one purchase accepted (or none sent); rejected ones listed", body = TransactionReport),
        (status = 400, description = "The body is not a JSON array / NDJSON", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "Body over the size limit or more than 10,000 purchases", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every purchase was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ingest_transactions(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<TransactionReport>, ApiError> {
    auth.require(Scope::Write)?;
    let framing = Framing::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .ok_or_else(|| {
        ApiError::new(
            ProblemKind::UnsupportedMediaType,
            "send purchases as a JSON array (Content-Type: application/json) or NDJSON \
             (Content-Type: application/x-ndjson)",
        )
    })?;
    let body = body.map_err(body_error)?;
    let now_ms = crate::profiles::now_us() / 1000;
    match transactions::ingest(&state, auth.tenant_id(), &body, framing, now_ms).await {
        Ok(report) => Ok(axum::Json(report)),
        Err(TransactionIngestError::Body(e)) => Err(match e {
            BodyError::Malformed(detail) => ApiError::new(
                ProblemKind::MalformedJson,
                detail.replace("events", "purchases"),
            ),
            BodyError::Duplicate(path) => crate::extract::duplicate_field(&path),
            BodyError::TooMany(n) => ApiError::new(
                ProblemKind::PayloadTooLarge,
                format!(
                    "{n} purchases in one request; send at most {MAX_EVENTS_PER_REQUEST} per \
                     request"
                ),
            )
            .with("max_events", MAX_EVENTS_PER_REQUEST),
        }),
        Err(TransactionIngestError::AllRejected(rejected)) => {
            let listed = serde_json::to_value(&rejected).unwrap_or_default();
            Err(ApiError::new(
                ProblemKind::Unprocessable,
                format!(
                    "all {} purchases were rejected; see `rejected`",
                    rejected.len()
                ),
            )
            .with("accepted", 0)
            .with("rejected", listed))
        }
        Err(TransactionIngestError::Store(e)) => Err(e.into()),
    }
}
