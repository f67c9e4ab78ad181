//! `POST /api/v1/interactions`: interaction events in, per-item verdicts out.
//!
//! Accepted events are committed to the store before the response, then handed to the profile
//! worker through the event log (see `crate::profiles`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use serde::Serialize;
use store::{Insertion, Scope};
use utoipa::ToSchema;

use crate::extract::{body_error, Auth};
use crate::ingest::{self, BodyError, RejectedEvent, MAX_EVENTS_PER_REQUEST};
use crate::problem::{ApiError, ProblemKind};
use crate::profiles::{now_us, EventMessage};
use crate::state::AppState;

/// Batches smaller than this are scored on the request's own task; VADER on larger ones would
/// hold an executor thread too long.
const INLINE_SCORING_LIMIT: usize = 32;

#[derive(Serialize, ToSchema)]
pub(crate) struct IngestResponse {
    /// Events accepted: newly stored plus duplicates.
    accepted: usize,
    /// Events stored for the first time.
    stored: usize,
    /// Events whose `event_id` your tenant had already sent: accepted, nothing changed.
    duplicates: usize,
    /// The events not accepted, each with its index and the reason.
    rejected: Vec<RejectedEvent>,
}

/// Ingests interaction events (write scope): a JSON array (`application/json`) or NDJSON
/// (`application/x-ndjson`), at most 10,000 per request. Each event is
/// `{event_id, user_id, timestamp (RFC 3339 or epoch ms), sentiment? (-1 to 1), rating? (1 to 5),
/// text?, item_id?, verified_purchase?, helpful_votes?, channel?}` with at least one of sentiment,
/// rating and text. An explicit `sentiment` (your own model's score) is what the profile uses:
/// rating and text are then stored but not scored; without one, the sentiment is the mean of
/// the rating's `(r - 3) / 2` and the text's VADER compound score. Bad events are
/// rejected one by one (index, field, reason) and the rest are accepted; accepted events are
/// committed before the response. A repeated `event_id` is accepted and changes nothing; a late
/// event takes its place by timestamp. Profiles update within milliseconds.
#[utoipa::path(post, path = "/api/v1/interactions", tag = "weber", security(("api_key" = [])),
    request_body(content = Vec<Object>, description = "Events as a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, description = "At least one event accepted (or none sent); rejected ones listed", body = IngestResponse),
        (status = 400, description = "The body is not a JSON array / NDJSON", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "Body over the size limit or more than 10,000 events", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every event was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<IngestResponse>, ApiError> {
    auth.require(Scope::Write)?;
    let framing = crate::extract::batch_framing(&headers, "events")?;
    let body = body.map_err(body_error)?;

    let parse = move || {
        let items = ingest::split_body(&body, framing)?;
        let (valid, rejected) = ingest::validate_all(items);
        let mut analyzer = sentiment::Analyzer::new();
        let scored: Vec<(usize, store::NewInteraction)> = valid
            .into_iter()
            .map(|(i, e)| (i, e.score(&mut analyzer)))
            .collect();
        Ok::<_, BodyError>((scored, rejected))
    };
    let parsed = if body_is_small(&headers) {
        parse()
    } else {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|_| ApiError::internal())?
    };
    let (scored, rejected) = parsed.map_err(|e| match e {
        BodyError::Malformed(detail) => ApiError::new(ProblemKind::MalformedJson, detail),
        BodyError::Duplicate(path) => crate::extract::duplicate_field(&path),
        BodyError::TooMany(n) => ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("{n} events in one request; send at most {MAX_EVENTS_PER_REQUEST} per request"),
        )
        .with("max_events", MAX_EVENTS_PER_REQUEST),
    })?;

    let tenant_id = auth.tenant_id();
    let weber = state.metrics().weber();
    weber.ingested(tenant_id, "rejected", rejected.len() as u64);
    if scored.is_empty() && !rejected.is_empty() {
        let listed = serde_json::to_value(&rejected).unwrap_or_default();
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "all {} events were rejected; see `rejected`",
                rejected.len()
            ),
        )
        .with("accepted", 0)
        .with("rejected", listed));
    }

    let events: Vec<store::NewInteraction> = scored.into_iter().map(|(_, e)| e).collect();
    let outcomes = state
        .store()
        .insert_interactions(tenant_id, &events, now_us() / 1000)
        .await?;
    let committed_us = now_us();
    let messages: Vec<EventMessage> = events
        .iter()
        .zip(&outcomes)
        .filter_map(|(e, o)| match o {
            Insertion::Stored { seq } => Some(EventMessage {
                tenant_id: tenant_id.to_owned(),
                user_id: e.user_id.clone(),
                seq: *seq,
                time_ms: e.event_time_ms,
                sentiment: e.sentiment,
                committed_us,
                erased: false,
            }),
            Insertion::Duplicate => None,
        })
        .collect();
    state.profiles().publish(&state, &messages).await;
    let stored = messages.len();
    let duplicates = events.len() - stored;
    weber.ingested(tenant_id, "stored", stored as u64);
    weber.ingested(tenant_id, "duplicate", duplicates as u64);
    Ok(axum::Json(IngestResponse {
        accepted: events.len(),
        stored,
        duplicates,
        rejected,
    }))
}

/// Whether the declared body is small enough to parse and score inline.
fn body_is_small(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len <= INLINE_SCORING_LIMIT * 256)
}
