//! The flag admin API: create, read, replace and delete flags of the caller's tenant in one
//! environment (`?environment=` or `X-Environment`, default `production`), the kill switch, the
//! field-level audit trail and the change stream (SSE).
//!
//! Reads need the read scope (SDKs watch the stream with their read key); changes need admin.
//! Every change is validated against the whole environment (prerequisites must exist and form
//! no cycle), so an invalid set is never stored; it is then served before the response is sent.
//! Versions are strong ETags (`"3"`); a change with `If-Match` naming another version is 412.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{FlagRecord, Scope};
use tokio::sync::broadcast;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::extract::{ApiJson, ApiQuery, Auth, FlagEnvironment};
use crate::feature_flags::FlagChange;
use crate::flag_admin::{self, not_found, parse_flag, FlagTarget};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// A flag as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct FlagResponse {
    key: String,
    environment: String,
    /// 1 when created, one more per change; the ETag.
    version: i64,
    created_at: String,
    updated_at: String,
    /// The API key id (or `cli`) that made the last change.
    updated_by: String,
    /// The definition, in the documented flag format (docs/flags.md).
    #[schema(value_type = Object)]
    definition: Value,
}

impl TryFrom<FlagRecord> for FlagResponse {
    type Error = ApiError;

    fn try_from(r: FlagRecord) -> Result<Self, ApiError> {
        let definition = serde_json::from_str(&r.definition_json).map_err(|e| {
            tracing::error!(flag = %r.key, error = %e, "stored flag definition is not JSON");
            ApiError::internal()
        })?;
        Ok(FlagResponse {
            key: r.key,
            environment: r.environment,
            version: r.version,
            created_at: crate::rfc3339_ms(r.created_at_ms),
            updated_at: crate::rfc3339_ms(r.updated_at_ms),
            updated_by: r.updated_by,
            definition,
        })
    }
}

/// Every flag of the environment.
#[derive(Serialize, ToSchema)]
pub(crate) struct FlagListResponse {
    environment: String,
    /// Sorted by key.
    flags: Vec<FlagResponse>,
}

fn version_etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn flag_response(status: StatusCode, record: FlagRecord) -> Result<Response, ApiError> {
    let etag = version_etag(record.version);
    let location = HeaderValue::from_str(&format!("/api/v1/flags/{}", record.key)).ok();
    let body = FlagResponse::try_from(record)?;
    let mut response = (status, [(header::ETAG, etag)], axum::Json(body)).into_response();
    if status == StatusCode::CREATED {
        if let Some(location) = location {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    Ok(response)
}

/// The version `If-Match` requires, if any. `*` (any version) is no requirement; anything but
/// one quoted version number is 400.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    // The quotes of the entity-tag are optional here: `3` means what `"3"` means.
    let unquoted = text.strip_prefix('"').unwrap_or(text);
    let unquoted = unquoted.strip_suffix('"').unwrap_or(unquoted);
    Some(unquoted)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "If-Match",
                format!("If-Match must be a flag's ETag such as \"3\" (got '{text}')"),
            )
        })
}

/// Lists the environment's flags (read scope).
#[utoipa::path(get, path = "/api/v1/flags", tag = "flags", security(("api_key" = [])),
    params(("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header")),
    responses(
        (status = 200, body = FlagListResponse),
        (status = 400, description = "Invalid environment name", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list_flags(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
) -> Result<axum::Json<FlagListResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let mut records = state.store().flags(auth.tenant_id(), &environment).await?;
    records.sort_by(|a, b| a.key.cmp(&b.key));
    let flags = records
        .into_iter()
        .map(FlagResponse::try_from)
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(FlagListResponse { environment, flags }))
}

/// Creates a flag (admin scope). The body is a flag in the documented format (docs/flags.md).
#[utoipa::path(post, path = "/api/v1/flags", tag = "flags", security(("api_key" = [])),
    params(("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header")),
    request_body(content = super::flag_schema::FlagDefinition, description = "A flag definition (docs/flags.md)"),
    responses(
        (status = 201, body = FlagResponse, headers(("etag" = String, description = "The version, \"1\""), ("location" = String, description = "The flag's URL"))),
        (status = 400, description = "Malformed body or a field of the wrong type", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "A flag with this key exists", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Invalid definition (`field` names the first field at fault, `errors` lists each), or the environment already holds 5,000 flags", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn create_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let flag = parse_flag(body)?;
    let record = crate::flag_admin::create(
        &state,
        FlagTarget {
            tenant_id: auth.tenant_id(),
            environment: &environment,
            key: &flag.key,
            actor: &auth.0.key_id,
        },
        &flag,
    )
    .await?;
    flag_response(StatusCode::CREATED, record)
}

/// Reads one flag (read scope).
#[utoipa::path(get, path = "/api/v1/flags/{key}", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
    ),
    responses(
        (status = 200, body = FlagResponse, headers(("etag" = String, description = "The version, e.g. \"3\""))),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let record = state
        .store()
        .flag(auth.tenant_id(), &environment, &key)
        .await?
        .ok_or_else(|| not_found(&key, &environment))?;
    flag_response(StatusCode::OK, record)
}

/// Replaces a flag's definition (admin scope). `If-Match: "<version>"` makes it conditional.
#[utoipa::path(put, path = "/api/v1/flags/{key}", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|\"?[0-9]{1,18}\"?)$", description = "The version this change is based on, e.g. \"3\""),
    ),
    request_body(content = super::flag_schema::FlagDefinition, description = "The new definition (docs/flags.md); its `key` must be the path's"),
    responses(
        (status = 200, body = FlagResponse, headers(("etag" = String, description = "The new version"))),
        (status = 400, description = "Malformed body, a field of the wrong type or a bad If-Match", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "A running or paused experiment owns the flag and the new variants or split do not match it (`experiment` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 412, description = "The flag is no longer at the If-Match version", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Invalid definition: `field` names the first field at fault, `errors` lists each", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn replace_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let expected = if_match(&headers)?;
    let flag = parse_flag(body)?;
    let record = flag_admin::replace(
        &state,
        FlagTarget {
            tenant_id: auth.tenant_id(),
            environment: &environment,
            key: &key,
            actor: &auth.0.key_id,
        },
        &flag,
        expected,
    )
    .await?;
    flag_response(StatusCode::OK, record)
}

/// Deletes a flag (admin scope). Refused (409) while another flag has it as a prerequisite.
#[utoipa::path(delete, path = "/api/v1/flags/{key}", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|\"?[0-9]{1,18}\"?)$", description = "The version this deletion is based on"),
    ),
    responses(
        (status = 204, description = "Deleted; the audit trail keeps its history"),
        (status = 400, description = "A bad If-Match", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "Another flag has it as a prerequisite, or an experiment that is not completed or failed owns it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 412, description = "The flag is no longer at the If-Match version", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn delete_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    let expected = if_match(&headers)?;
    flag_admin::delete(
        &state,
        FlagTarget {
            tenant_id: auth.tenant_id(),
            environment: &environment,
            key: &key,
            actor: &auth.0.key_id,
        },
        expected,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns the kill switch on (admin scope): the flag serves its off variant everywhere, at once.
/// Recorded in the audit trail as `kill`; a flag already killed is returned unchanged. Undo by
/// replacing the definition with `kill_switch: false`.
#[utoipa::path(post, path = "/api/v1/flags/{key}/kill", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|\"?[0-9]{1,18}\"?)$", description = "The version this change is based on"),
    ),
    responses(
        (status = 200, body = FlagResponse, headers(("etag" = String, description = "The new version"))),
        (status = 400, description = "A bad If-Match", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such flag in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 412, description = "The flag is no longer at the If-Match version", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn kill_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let expected = if_match(&headers)?;
    let record = flag_admin::kill(
        &state,
        FlagTarget {
            tenant_id: auth.tenant_id(),
            environment: &environment,
            key: &key,
            actor: &auth.0.key_id,
        },
        expected,
    )
    .await?;
    flag_response(StatusCode::OK, record)
}

/// Paging of the audit trail.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// The environment [default: production]; or the X-Environment header.
    #[allow(dead_code)]
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    environment: Option<String>,
    /// Most entries to return, 1-1000 [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only entries older than this sequence number (the previous page's `next_before`).
    before: Option<i64>,
}

/// One change in the audit trail.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    /// The environment's change sequence number.
    seq: i64,
    /// The flag's version after the change.
    version: i64,
    /// `create`, `update`, `kill` or `delete`.
    action: String,
    /// The API key id (or `cli`) that made it.
    actor: String,
    at: String,
    /// Field-level changes: JSON Pointer `path`, `before` (absent: added), `after` (absent:
    /// removed).
    #[schema(value_type = Vec<Object>)]
    changes: Vec<store::FieldChange>,
    /// The whole definition before (absent for a create).
    #[schema(value_type = Option<Object>)]
    before: Option<Value>,
    /// The whole definition after (absent for a delete).
    #[schema(value_type = Option<Object>)]
    after: Option<Value>,
}

/// A page of the audit trail, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditResponse {
    key: String,
    environment: String,
    entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

/// The flag's audit trail, newest first: who changed what, when, field by field (read scope).
/// A deleted flag's trail stays readable.
#[utoipa::path(get, path = "/api/v1/flags/{key}/audit", tag = "flags", security(("api_key" = [])),
    params(("key" = String, Path, description = "The flag key"), AuditQuery),
    responses(
        (status = 200, body = AuditResponse),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "The flag never existed in this environment", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn flag_audit(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<axum::Json<AuditResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=store::MAX_FLAG_PAGE).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!(
                "limit must be from 1 to {} (got {limit})",
                store::MAX_FLAG_PAGE
            ),
        ));
    }
    let records = state
        .store()
        .flag_audit(auth.tenant_id(), &environment, &key, limit, query.before)
        .await?;
    if records.is_empty() && query.before.is_none() {
        return Err(not_found(&key, &environment));
    }
    let next_before = if records.len() as u32 == limit {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    let parse = |json: Option<String>| json.and_then(|j| serde_json::from_str(&j).ok());
    let entries = records
        .into_iter()
        .map(|r| AuditEntry {
            seq: r.seq,
            version: r.version,
            action: r.action.as_str().to_owned(),
            actor: r.actor,
            at: crate::rfc3339_ms(r.at_ms),
            changes: r.diff,
            before: parse(r.before_json),
            after: parse(r.after_json),
        })
        .collect();
    Ok(axum::Json(AuditResponse {
        key,
        environment,
        entries,
        next_before,
    }))
}

/// The `data` of the first event of a stream, `ready`: the current change number.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the shape; the event is written by hand
pub(crate) struct ReadyEvent {
    seq: i64,
}

/// The `data` of a `resync` event: changes were missed, fetch the flags again.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the shape; the event is written by hand
pub(crate) struct ResyncEvent {
    seq: i64,
    detail: String,
}

/// One event of the change stream, as schemathesis and OpenAPI 3.2's `itemSchema` read an event
/// stream: the SSE fields `event`, `id` and `data`, where `data` is JSON whose shape the event
/// name decides (`ready`, `change`, `resync`).
pub(crate) struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let event = |name: &str, data: &str| {
            let payload = ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .extensions(Some(utoipa::openapi::extensions::Extensions::from_iter([
                    (
                        "contentSchema",
                        serde_json::json!({"$ref": format!("#/components/schemas/{data}")}),
                    ),
                ])));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .property(
                    "id",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[0-9]+$"))
                        .description(Some("The change number")),
                )
                .property("data", payload)
                .required("event")
                .required("data")
        };
        OneOfBuilder::new()
            .item(event("ready", "ReadyEvent"))
            .item(event("change", "FlagChange"))
            .item(event("resync", "ResyncEvent"))
            .description(Some(
                "An event of the change stream: `ready` first (data `{seq}`), then a `change` \
                 per change (data: FlagChange), or `resync` when changes were missed (data \
                 `{seq, detail}`)",
            ))
            .into()
    }
}

impl ToSchema for StreamEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push(("ReadyEvent".into(), ReadyEvent::schema()));
        schemas.push(("ResyncEvent".into(), ResyncEvent::schema()));
        schemas.push(("FlagChange".into(), FlagChange::schema()));
    }
}

/// How long a stream stays quiet before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct StreamState {
    receiver: broadcast::Receiver<FlagChange>,
    backlog: VecDeque<Event>,
    last_sent: i64,
    closing: tokio::sync::watch::Receiver<bool>,
    state: AppState,
    tenant_id: String,
    environment: String,
    /// Counts the stream in `sse_connections_active` while it lives.
    _open: telemetry::OpenConnection,
}

fn change_event(change: &FlagChange) -> Event {
    Event::default()
        .event("change")
        .id(change.seq.to_string())
        .json_data(change)
        .unwrap_or_else(|_| Event::default().event("change"))
}

fn resync_event(seq: i64) -> Event {
    Event::default()
        .event("resync")
        .id(seq.to_string())
        .data(format!(
            "{{\"seq\":{seq},\"detail\":\"changes were missed; fetch the flags again\"}}"
        ))
}

impl StreamState {
    /// Queues the stored changes after `self.last_sent` (after a reconnect, or after falling
    /// behind the in-memory buffer). More than a page missed: a `resync` event instead.
    async fn catch_up(&mut self) {
        let page = self
            .state
            .store()
            .flag_changes(
                &self.tenant_id,
                &self.environment,
                self.last_sent,
                store::MAX_FLAG_PAGE,
            )
            .await;
        match page {
            Ok(page) if (page.len() as u32) < store::MAX_FLAG_PAGE => {
                for record in &page {
                    let change = FlagChange::from(record);
                    self.backlog.push_back(change_event(&change));
                    self.last_sent = change.seq;
                }
            }
            Ok(page) => {
                let seq = page.last().map_or(self.last_sent, |r| r.seq);
                self.backlog.push_back(resync_event(seq));
                self.last_sent = seq;
            }
            Err(e) => {
                tracing::warn!(error = %e, "flag stream could not catch up from the store");
                self.backlog.push_back(resync_event(self.last_sent));
            }
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Some(event);
            }
            if *self.closing.borrow() {
                return None;
            }
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Ok(change) if change.seq <= self.last_sent => continue,
                    Ok(change) => {
                        self.last_sent = change.seq;
                        return Some(change_event(&change));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.closing.changed() => return None,
            }
        }
    }
}

/// The environment's flag changes as server-sent events (read scope), so clients refresh
/// without polling. First a `ready` event whose id is the current change number; then a
/// `change` event per change (`{seq, key, version, action, at}`, id = `seq`). Reconnect with
/// `Last-Event-ID` to receive what was missed; a `resync` event means too much was missed and
/// the client should fetch all flags again.
#[utoipa::path(get, path = "/api/v1/flags/stream", tag = "flags", security(("api_key" = [])),
    params(
        ("environment" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]; or the X-Environment header"),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}$", description = "Resume after this change number"),
    ),
    responses(
        (status = 200, description = "An event stream (`ready`, `change`, `resync`)", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A bad Last-Event-ID or environment", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn flag_stream(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "Last-Event-ID",
                        "Last-Event-ID must be a change number from this stream",
                    )
                })?,
        ),
    };
    let tenant_id = auth.tenant_id().to_owned();
    let (receiver, current) = state
        .flags()
        .subscribe(state.store(), &tenant_id, &environment)
        .await?;
    let closing = state.flags().closing();
    let mut stream = StreamState {
        receiver,
        backlog: VecDeque::new(),
        last_sent: current,
        closing,
        _open: state.metrics().connections().sse_opened(),
        state: state.clone(),
        tenant_id,
        environment,
    };
    stream.backlog.push_back(
        Event::default()
            .event("ready")
            .id(current.to_string())
            .data(format!("{{\"seq\":{current}}}")),
    );
    if let Some(after) = last_event_id.filter(|after| *after < current) {
        stream.last_sent = after;
        stream.catch_up().await;
        // Whatever the catch-up did not reach arrives live (the subscription came first).
    }
    if state.flags().is_closed() {
        return Err(ApiError::new(
            ProblemKind::Unavailable,
            "the server is shutting down",
        ));
    }
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((Ok::<_, Infallible>(event), stream))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
