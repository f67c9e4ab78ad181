//! `/api/v1/feedback`: ingest per processing tier, reads, list and search, policy traces, clear
//! text under its own scope, the tenant's configuration and data-key rotation. The use cases
//! are [`crate::feedback::FeedbackService`]'s.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use store::{FeedbackFilter, FeedbackStatus, Scope};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{body_error, ApiQuery, Auth};
use crate::feedback::{to_api_error as feedback_error, IngestReport, ItemPage, ItemView, Tier};
use crate::problem::ApiError;
use crate::state::AppState;

/// The processing tier of a request's items.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IngestParams {
    /// `realtime`, `priority`, `standard` or `batch`, for items without a `tier` field
    /// [default: the tenant's configured tier].
    #[param(pattern = "^(realtime|priority|standard|batch)$")]
    tier: Option<String>,
}

/// Ingests feedback items (write scope): a JSON array (`application/json`) or NDJSON
/// (`application/x-ndjson`), at most 10,000 per request. Each item is `{id?, user_id, type,
/// channel?, rating? (1 to 5), text?, locale?, region?, metadata?, occurred_at_ms?, tier?}` with
/// a rating, a text or both. Bad items are rejected one by one (index, field, reason) and the
/// rest accepted. `realtime` items are analysed before the answer (200 ms budget); the other
/// tiers are stored and processed by the jobs queue within their budgets (1 s, 10 s, 60 s). A
/// repeated item (same id, same content) is a duplicate; a different item under a known id is
/// rejected.
#[utoipa::path(post, path = "/api/v1/feedback", tag = "feedback", security(("api_key" = [])),
    params(IngestParams),
    request_body(content = Vec<Object>, description = "Items as a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, description = "At least one item accepted; rejected ones listed", body = IngestReport),
        (status = 400, description = "The body is not a JSON array / NDJSON, or `tier` is unknown", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "Body over the size limit or more than 10,000 items", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every item was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<IngestParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<IngestReport>, ApiError> {
    auth.require(Scope::Write)?;
    let tier = params
        .tier
        .map(|t| {
            Tier::parse(&t).ok_or_else(|| {
                ApiError::invalid_parameter("tier", "must be realtime, priority, standard or batch")
            })
        })
        .transpose()?;
    let framing = crate::extract::batch_framing(&headers, "items")?;
    let body = body.map_err(body_error)?;
    let report = state
        .feedback()
        .ingest(
            &state,
            auth.tenant_id(),
            &auth.0.key_id,
            &body,
            framing,
            tier,
        )
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(report))
}

/// Filters and paging of the feedback list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only items that occurred at or after this time (Unix ms).
    from_ms: Option<i64>,
    /// Only items that occurred before this time (Unix ms).
    to_ms: Option<i64>,
    /// Only this status (`received`, `processing`, `processed`, `needs_review`, `failed`,
    /// `purged`).
    #[param(pattern = "^(received|processing|processed|needs_review|failed|purged)$")]
    status: Option<String>,
    /// Only this type.
    r#type: Option<String>,
    channel: Option<String>,
    region: Option<String>,
    user_id: Option<String>,
    min_alignment: Option<f64>,
    max_alignment: Option<f64>,
    /// Only items with (true) or without (false) personal data found.
    has_pii: Option<bool>,
    /// Only items violating this principle (`PRIVACY`).
    violation: Option<String>,
    /// The previous page's `next_cursor`.
    #[param(pattern = "^-?[0-9]+:.+$")]
    cursor: Option<String>,
    /// Page size, 1 to 500 [default: 50].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Lists and searches the tenant's feedback items, newest first (read scope).
#[utoipa::path(get, path = "/api/v1/feedback", tag = "feedback", security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, body = ItemPage),
        (status = 400, description = "A filter is invalid (`parameter` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<ItemPage>, ApiError> {
    auth.require(Scope::Read)?;
    let status = params
        .status
        .map(|s| {
            FeedbackStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "status",
                    "must be received, processing, processed, needs_review, failed or purged",
                )
            })
        })
        .transpose()?;
    let after = params
        .cursor
        .map(|c| {
            crate::feedback::parse_page_cursor(&c)
                .ok_or_else(|| ApiError::invalid_parameter("cursor", "not a cursor this API gave"))
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=store::MAX_FEEDBACK_PAGE).contains(&limit) {
        return Err(ApiError::invalid_parameter("limit", "must be 1 to 500"));
    }
    let filter = FeedbackFilter {
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        status,
        kind: params.r#type,
        channel: params.channel,
        region: params.region,
        user_id: params.user_id,
        min_alignment: params.min_alignment,
        max_alignment: params.max_alignment,
        has_pii: params.has_pii,
        violation: params.violation.map(|v| v.to_ascii_uppercase()),
        after,
        limit,
    };
    let page = state
        .feedback()
        .list(&state, auth.tenant_id(), &filter)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(page))
}

/// One feedback item (read scope): redacted text, PII findings (`{type, start, end,
/// confidence}`, character offsets into the original text), sentiment, toxicity, alignment,
/// status and processing history. Never the original text.
#[utoipa::path(get, path = "/api/v1/feedback/{id}", tag = "feedback", security(("api_key" = [])),
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, body = ItemView),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such item in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ItemView>, ApiError> {
    auth.require(Scope::Read)?;
    let item = state
        .feedback()
        .item(&state, auth.tenant_id(), &id)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(item))
}

/// The policy trace of an item (read scope): every rule that fired, its evidence span, its
/// contribution and the counterfactual score without it; `null` until the full checks ran.
#[utoipa::path(get, path = "/api/v1/feedback/{id}/trace", tag = "feedback", security(("api_key" = [])),
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, body = Object),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such item in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    auth.require(Scope::Read)?;
    let trace = state
        .feedback()
        .trace(&state, auth.tenant_id(), &id)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(serde_json::json!({ "id": id, "trace": trace })))
}

/// An item's original text in clear.
#[derive(Serialize, ToSchema)]
pub(crate) struct ClearText {
    id: String,
    /// Null when the item has no text (or it was purged).
    text: Option<String>,
}

/// The original text of an item, in clear (scope `read_clear`, which `admin` does not imply).
/// Every read is recorded as `read_in_clear` in the item's history and the audit log.
#[utoipa::path(get, path = "/api/v1/feedback/{id}/text", tag = "feedback", security(("api_key" = [])),
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, body = ClearText),
        (status = 403, description = "The key lacks the read_clear scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such item in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 410, description = "The text was erased: its data key was destroyed", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 500, description = "The sealed text cannot be opened (wrong or missing key, altered value); the detail says which, never garbage", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn clear_text(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ClearText>, ApiError> {
    auth.require(Scope::ReadClear)?;
    let text = state
        .feedback()
        .clear_text(&state, auth.tenant_id(), &id, &auth.0.key_id)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(ClearText { id, text }))
}

/// A tenant's feedback configuration.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConfigView {
    /// The TOML text.
    config: String,
    /// Changes so far; 0 for the default configuration.
    version: i64,
}

/// The tenant's feedback configuration (admin scope): the stored TOML, or the default.
#[utoipa::path(get, path = "/api/v1/feedback/config", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 200, body = ConfigView),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_config(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<ConfigView>, ApiError> {
    auth.require(Scope::Admin)?;
    let (config, version) = state
        .feedback()
        .config(&state, auth.tenant_id())
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(ConfigView { config, version }))
}

/// A configuration sent as JSON: the shape `GET` answers, so a read can be edited and put back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigBody {
    /// The TOML text (not blank: a comment line keeps every default).
    #[schema(pattern = "\\S")]
    config: String,
}

/// A configuration sent as TOML text (the OpenAPI schema of the text body: not blank).
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "\\S")]
pub(crate) struct ConfigText(#[allow(dead_code)] String);

/// Replaces the tenant's feedback configuration (admin scope). The body is the TOML text (any
/// content type but JSON, e.g. `application/toml` or `text/plain`) or `{"config": "<TOML>"}` as
/// JSON; it is validated first, and a bad value is 422 naming its path (`field`). An empty body
/// is refused rather than read as "all defaults": send a comment line for that.
#[utoipa::path(put, path = "/api/v1/feedback/config", tag = "feedback", security(("api_key" = [])),
    request_body(description = "The configuration as TOML text, or as JSON `{\"config\": \"<TOML>\"}`", content(
        (ConfigBody = "application/json"),
        (ConfigText = "text/plain"),
    )),
    responses(
        (status = 200, body = ConfigView),
        (status = 400, description = "The body is empty, not UTF-8, or not the JSON shape", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The configuration is invalid; `field` names the path", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_config(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ConfigView>, ApiError> {
    auth.require(Scope::Admin)?;
    let body = body.map_err(body_error)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let text = if json {
        let body: ConfigBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid_field(
                "config",
                format!("not a {{\"config\": \"<TOML>\"}} object: {e}"),
            )
        })?;
        body.config
    } else {
        std::str::from_utf8(&body)
            .map_err(|_| ApiError::invalid_field("", "the configuration is not UTF-8 text"))?
            .to_owned()
    };
    if text.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "",
            "the configuration is empty; send TOML (a comment line keeps every default)",
        ));
    }
    let version = state
        .feedback()
        .put_config(&state, auth.tenant_id(), &text)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(ConfigView {
        config: text,
        version,
    }))
}

/// A rotation begun.
#[derive(Serialize, ToSchema)]
pub(crate) struct RotationView {
    /// The tenant's new active data key.
    key_id: String,
    /// The `feedback.reencrypt` job re-sealing older items (follow it at `/api/v1/jobs/{id}`).
    job_id: String,
}

/// Rotates the tenant's data key (admin scope): new texts are sealed under a new key at once,
/// and a background job re-encrypts the stored ones in batches, retiring the old key when no
/// item is sealed under it.
#[utoipa::path(post, path = "/api/v1/feedback/keys:rotate", tag = "feedback", security(("api_key" = [])),
    responses(
        (status = 202, body = RotationView),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn rotate_keys(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<(axum::http::StatusCode, axum::Json<RotationView>), ApiError> {
    auth.require(Scope::Admin)?;
    let (key_id, job_id) = state
        .feedback()
        .rotate_keys(&state, auth.tenant_id(), &auth.0.key_id)
        .await
        .map_err(feedback_error)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(RotationView { key_id, job_id }),
    ))
}

/// What a purge did.
#[derive(Serialize, ToSchema)]
pub(crate) struct PurgeView {
    id: String,
    /// False when the item was purged already.
    purged: bool,
}

/// Erases an item's text (admin scope): the sealed original, the redacted text, the findings
/// and the policy trace; scores, status history and the audit log stay (the log holds hashes,
/// never content, so it still verifies). Recorded as `purged`.
#[utoipa::path(delete, path = "/api/v1/feedback/{id}", tag = "feedback", security(("api_key" = [])),
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, body = PurgeView),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such item in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn purge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<PurgeView>, ApiError> {
    auth.require(Scope::Admin)?;
    let purged = state
        .feedback()
        .purge(&state, auth.tenant_id(), &id, &auth.0.key_id)
        .await
        .map_err(feedback_error)?;
    Ok(axum::Json(PurgeView { id, purged }))
}
