//! LLM and chatbot observability: OTLP/HTTP traces, the event API, usage, conversation
//! timelines, budgets, prices and the tenant's own metrics. The handlers translate HTTP to and
//! from [`crate::llm::LlmService`], which holds the use cases.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use llm::{Cost, LlmEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::Scope;
use utoipa::ToSchema;

use crate::envelope::OwnErrorBody;
use crate::extract::{ApiJson, Auth};
use crate::ingest::{BodyError, RejectedEvent};
use crate::llm::now_ms;
use crate::llm::otlp::{self, rpc_code, DecodeError, Encoding, RpcStatus};
use crate::llm::usage::{self, UsageAnswer, UsageQuery};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// Why a body could not be read.
enum ReadError {
    TooLarge,
    Broken(String),
}

/// Reads a body of at most `limit` bytes (this route's own limit, not the server-wide one).
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ReadError::TooLarge)
        }
        Err(e) => Err(ReadError::Broken(e.to_string())),
    }
}

fn content_encoding(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// POST /v1/traces

/// An OTLP/HTTP failure: the status and a `google.rpc.Status` in the request's encoding.
struct OtlpError {
    status: StatusCode,
    kind: ProblemKind,
    code: i32,
    message: String,
    encoding: Encoding,
}

impl OtlpError {
    fn new(kind: ProblemKind, code: i32, message: impl Into<String>, encoding: Encoding) -> Self {
        OtlpError {
            status: kind.status(),
            kind,
            code,
            message: message.into(),
            encoding,
        }
    }

    fn from_api(error: ApiError, encoding: Encoding) -> Self {
        let code = rpc_code::for_status(error.kind.status());
        OtlpError::new(error.kind, code, error.detail, encoding)
    }
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let body = RpcStatus {
            code: self.code,
            message: crate::problem::excerpt(&self.message, crate::problem::MAX_DETAIL_CHARS),
        }
        .encode_as(self.encoding);
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, self.encoding.content_type())],
            body,
        )
            .into_response();
        if self.kind == ProblemKind::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The envelope counts the error but keeps this body: OTLP clients expect a Status.
        response.extensions_mut().insert(OwnErrorBody {
            kind: self.kind,
            detail: self.message,
        });
        response
    }
}

/// OTLP/HTTP trace export (write scope), for an unmodified OpenTelemetry SDK: point its OTLP
/// exporter at `<base>/v1/traces` with the header `Authorization: Bearer <api key>`. Protobuf
/// (`application/x-protobuf`) or JSON (`application/json`), optionally `Content-Encoding: gzip`.
/// Spans with GenAI semantic-convention attributes become model calls (priced, stored, counted);
/// other spans are counted and dropped. Malformed GenAI spans are rejected one by one and
/// reported in `partial_success`; nothing of a request is stored unless all its accepted spans
/// are. Errors are a `google.rpc.Status` in the request's encoding (OTLP/HTTP).
#[utoipa::path(post, path = "/v1/traces", tag = "llm", security(("api_key" = [])),
    request_body(description = "An OTLP ExportTraceServiceRequest, binary protobuf or OTLP/JSON", content(
        (Vec<u8> = "application/x-protobuf"),
        (OtlpJsonRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "Accepted; `partialSuccess` tells how many spans were rejected and why", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpJsonResponse = "application/json"),
        )),
        (status = 400, description = "Not an ExportTraceServiceRequest in the declared encoding (a google.rpc.Status says why)", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 401, description = "Missing or invalid API key", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 403, description = "The key lacks the write scope", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 413, description = "Body over the limit (8 MiB after gzip by default) or too many spans", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 414, description = "The request target (path and query) is over the URI limit", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 415, description = "Neither application/x-protobuf nor application/json, or a Content-Encoding other than gzip", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 429, description = "A rate-limit rule refused this export (code 8, RESOURCE_EXHAUSTED); retry after `Retry-After` seconds", headers(
            ("retry-after" = String, description = "Seconds until the export would be admitted"),
        ), content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
        (status = 503, description = "Storage unavailable, or the request did not finish within the handler timeout; retry", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpStatus = "application/json"),
        )),
    ))]
pub(crate) async fn otlp_traces(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpErrorResponse> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let declared = Encoding::from_content_type(content_type);
    // Who is asking comes first: an unauthenticated caller learns nothing else. Errors are in
    // the request's encoding, JSON when it declared none we know.
    let reply_in = declared.unwrap_or(Encoding::Json);
    let auth = auth.map_err(|e| OtlpError::from_api(e, reply_in))?;
    auth.require(Scope::Write)
        .map_err(|e| OtlpError::from_api(e, reply_in))?;
    let Some(encoding) = declared else {
        return Err(OtlpError::new(
            ProblemKind::UnsupportedMediaType,
            rpc_code::INVALID_ARGUMENT,
            "send OTLP traces as application/x-protobuf or application/json",
            Encoding::Json,
        )
        .into());
    };
    let settings = state.llm().settings();
    let limit = settings.body_limit_bytes;
    let too_large = || {
        OtlpError::new(
            ProblemKind::PayloadTooLarge,
            rpc_code::RESOURCE_EXHAUSTED,
            format!("the body is larger than {limit} bytes; export smaller batches"),
            encoding,
        )
    };
    let raw = read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => too_large(),
        ReadError::Broken(e) => OtlpError::new(
            ProblemKind::MalformedOtlp,
            rpc_code::INVALID_ARGUMENT,
            format!("could not read the body: {e}"),
            encoding,
        ),
    })?;
    let max_spans = settings.max_spans_per_request;
    let encoding_header = content_encoding(&headers).map(str::to_owned);
    // Large (or compressed, so possibly large) bodies are decoded off the async workers.
    let decode_inline = raw.len() <= 64 * 1024 && encoding_header.is_none();
    let decode = move || {
        let plain = otlp::decompress(raw, encoding_header.as_deref(), limit)?;
        otlp::decode(&plain, encoding)
    };
    let request = if decode_inline {
        decode()
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|_| OtlpError::from_api(ApiError::internal(), encoding))?
    }
    .map_err(|e| match e {
        DecodeError::TooLarge(_) => too_large(),
        DecodeError::UnsupportedEncoding(_) => OtlpError::new(
            ProblemKind::UnsupportedMediaType,
            rpc_code::INVALID_ARGUMENT,
            e.to_string(),
            encoding,
        ),
        DecodeError::Malformed(m) => OtlpError::new(
            ProblemKind::MalformedOtlp,
            rpc_code::INVALID_ARGUMENT,
            m,
            encoding,
        ),
    })?;
    let total = otlp::span_count(&request);
    if total > max_spans {
        return Err(OtlpError::new(
            ProblemKind::PayloadTooLarge,
            rpc_code::RESOURCE_EXHAUSTED,
            format!("{total} spans in one request; send at most {max_spans}"),
            encoding,
        )
        .into());
    }
    let outcome = state
        .llm()
        .ingest_spans(
            state.store(),
            state.metrics(),
            auth.tenant_id(),
            &request,
            now_ms(),
        )
        .await
        .map_err(|e| OtlpError::from_api(ApiError::from(e), encoding))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        otlp::success(outcome.rejected, outcome.rejection_message(), encoding),
    )
        .into_response())
}

/// The OTLP/JSON request's outline, for the API description (the full message is
/// opentelemetry-proto's `ExportTraceServiceRequest`).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub(crate) struct OtlpJsonRequest {
    /// Absent: no spans (a valid, empty export). Repeated fields may not be `null`.
    #[schema(nullable = false)]
    resource_spans: Option<Vec<OtlpResourceSpans>>,
}

/// Spans of one resource.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub(crate) struct OtlpResourceSpans {
    /// `attributes`: resource attributes, read when a span lacks one.
    resource: Option<Object>,
    #[schema(nullable = false)]
    scope_spans: Option<Vec<OtlpScopeSpans>>,
}

/// Spans of one instrumentation scope.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct OtlpScopeSpans {
    scope: Option<Object>,
    /// OTLP/JSON spans: `traceId`, `spanId` (hex), `name`, `startTimeUnixNano`,
    /// `endTimeUnixNano`, `attributes`, `status`, …
    #[schema(nullable = false)]
    spans: Option<Vec<Object>>,
}

/// Free-form object, for the outline above.
type Object = serde_json::Map<String, Value>;

/// The OTLP/JSON answer: empty, or with `partialSuccess`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub(crate) struct OtlpJsonResponse {
    partial_success: Option<OtlpPartialSuccess>,
}

/// How many spans were rejected, and why.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub(crate) struct OtlpPartialSuccess {
    rejected_spans: i64,
    error_message: String,
}

/// A `google.rpc.Status`: OTLP/HTTP's error body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct OtlpStatus {
    /// A `google.rpc.Code` (3 invalid argument, 7 permission denied, 8 resource exhausted,
    /// 14 unavailable, 16 unauthenticated).
    code: i32,
    message: String,
}

/// Wraps [`OtlpError`] so handlers can use `?` on it.
pub(crate) struct OtlpErrorResponse(OtlpError);

impl From<OtlpError> for OtlpErrorResponse {
    fn from(e: OtlpError) -> Self {
        OtlpErrorResponse(e)
    }
}

impl IntoResponse for OtlpErrorResponse {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/llm/events

#[derive(Serialize, ToSchema)]
pub(crate) struct EventsResponse {
    /// Events accepted: newly stored plus duplicates.
    accepted: usize,
    /// Events stored for the first time.
    stored: usize,
    /// Events whose `id` your tenant had already sent: accepted, nothing changed.
    duplicates: usize,
    /// The events not accepted, each with its index, field and reason.
    rejected: Vec<RejectedEvent>,
}

/// Reports chatbot events (write scope): a JSON array (`application/json`) or NDJSON
/// (`application/x-ndjson`), at most 10,000 per request, optionally gzip-compressed. Each event
/// has `type` (conversation_started, conversation_completed, message_processed, model_call,
/// integration_call), `id` (repeating one is harmless) and `time` (RFC 3339); see
/// docs/llm-observability.md for each type's fields. Model calls are priced with your prices.
/// Bad events are rejected one by one (index, field, reason) and the rest are stored in one
/// transaction before the answer.
#[utoipa::path(post, path = "/api/v1/llm/events", tag = "llm", security(("api_key" = [])),
    request_body(content = Vec<Object>, description = "Events as a JSON array, or NDJSON with Content-Type application/x-ndjson", content_type = "application/json"),
    responses(
        (status = 200, description = "At least one event accepted (or none sent); rejected ones listed", body = EventsResponse),
        (status = 400, description = "The body is not a JSON array / NDJSON", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "Body over the size limit or more than 10,000 events", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 415, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "Every event was rejected; `rejected` lists why", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn ingest_events(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<EventsResponse>, ApiError> {
    auth.require(Scope::Write)?;
    let framing = crate::extract::batch_framing(&headers, "events")?;
    let settings = state.llm().settings();
    let limit = settings.body_limit_bytes;
    let max_events = settings.max_events_per_request;
    let too_large = || {
        ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body is larger than {limit} bytes; send smaller batches"),
        )
        .with("max_bytes", limit)
    };
    let raw = read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => too_large(),
        ReadError::Broken(e) => ApiError::new(
            ProblemKind::MalformedJson,
            format!("could not read the request body: {e}"),
        ),
    })?;
    let raw = otlp::decompress(raw, content_encoding(&headers), limit).map_err(|e| match e {
        DecodeError::TooLarge(_) => too_large(),
        DecodeError::UnsupportedEncoding(_) => {
            ApiError::new(ProblemKind::UnsupportedMediaType, e.to_string())
        }
        DecodeError::Malformed(m) => ApiError::new(ProblemKind::MalformedJson, m),
    })?;
    let now = now_ms();
    // Bodies past 16 KiB (after gzip) are parsed off the async workers.
    let parse_inline = raw.len() <= 16 * 1024;
    let parse = move || {
        let items = crate::ingest::split_body(&raw, framing)?;
        if items.len() > max_events {
            return Err(BodyError::TooMany(items.len()));
        }
        Ok::<_, BodyError>(crate::llm::ingest::validate_events(items, now))
    };
    let parsed = if parse_inline {
        parse()
    } else {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|_| ApiError::internal())?
    };
    let (valid, rejected) = parsed.map_err(|e| match e {
        BodyError::Malformed(detail) => ApiError::new(ProblemKind::MalformedJson, detail),
        BodyError::Duplicate(path) => crate::extract::duplicate_field(&path),
        BodyError::TooMany(n) => ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("{n} events in one request; send at most {max_events} per request"),
        )
        .with("max_events", max_events),
    })?;
    let outcome = state
        .llm()
        .ingest_checked_events(
            state.store(),
            state.metrics(),
            auth.tenant_id(),
            valid,
            rejected,
            now,
        )
        .await?;
    if outcome.accepted == 0 && !outcome.rejected.is_empty() {
        let listed = serde_json::to_value(&outcome.rejected).unwrap_or_default();
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "all {} events were rejected; see `rejected`",
                outcome.rejected.len()
            ),
        )
        .with("accepted", 0)
        .with("rejected", listed));
    }
    Ok(axum::Json(EventsResponse {
        accepted: outcome.accepted,
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        rejected: outcome.rejected,
    }))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/llm/usage

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// First day, `YYYY-MM-DD` (UTC), included [default: 29 days before `to`].
    #[param(format = Date)]
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included [default: today]. At most 366 days in all (422
    /// past that, or when `from` is after `to`).
    #[param(format = Date)]
    to: Option<String>,
    /// Comma-separated dimensions, any subset of `day,provider,model,operation,conversation`
    /// in any order [default: `day`]; empty for one total.
    #[param(
        pattern = "^((day|provider|model|operation|conversation)(,(day|provider|model|operation|conversation))*)?$"
    )]
    group_by: Option<String>,
}

/// Model-call usage of your tenant (read scope): calls, errors, tokens by exclusive type, cost
/// (exact picodollars and dollars; unpriced calls counted apart) and p50/p95 latency, per group.
/// JSON, or CSV with `Accept: text/csv`. Answers are cached per tenant until the tenant's next
/// ingest on this server.
#[utoipa::path(get, path = "/api/v1/llm/usage", tag = "llm", security(("api_key" = [])),
    params(UsageParams),
    responses(
        (status = 200, description = "Usage per group", content(
            (UsageAnswer = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A bad `from`, `to` or `group_by`; `parameter` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "`from` after `to`, or more than 366 days", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    crate::extract::ApiQuery(params): crate::extract::ApiQuery<UsageParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let today = now_ms().div_euclid(86_400_000);
    let query = UsageQuery::parse(
        params.from.as_deref(),
        params.to.as_deref(),
        params.group_by.as_deref(),
        today,
    )
    .map_err(|e| {
        if e.conflicting {
            ApiError::new(ProblemKind::Unprocessable, e.reason).with("parameter", e.parameter)
        } else {
            ApiError::invalid_parameter(e.parameter, e.reason)
        }
    })?;
    let answer = state
        .llm()
        .usage(state.store(), auth.tenant_id(), &query)
        .await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|m| m.trim().starts_with("text/csv")));
    if wants_csv {
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::VARY, "Accept"),
            ],
            usage::to_csv(&answer, &query.group_by),
        )
            .into_response());
    }
    let mut response = axum::Json(answer.as_ref().clone()).into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/llm/conversations/{id}

#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationResponse {
    conversation_id: String,
    /// Messages, model calls, integration calls and the conversation's start and end, in time
    /// order. Each has `type`, `id`, `time` (RFC 3339) and its own fields; model calls add
    /// `cost_picodollars` / `cost_usd` (`null` when unpriced) and `duration_ms`.
    #[schema(value_type = Vec<Object>)]
    events: Vec<Value>,
    /// The conversation's model calls summed, in the usage API's row shape.
    #[schema(value_type = Object)]
    totals: llm::usage::UsageRow,
}

use crate::llm::MAX_TIMELINE_EVENTS;

/// One conversation's timeline (read scope): at most its first 10,000 events.
#[utoipa::path(get, path = "/api/v1/llm/conversations/{id}", tag = "llm", security(("api_key" = [])),
    params(("id" = String, Path, description = "The conversation id (`gen_ai.conversation.id`)")),
    responses(
        (status = 200, description = "The timeline", body = ConversationResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No event of your tenant names this conversation", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn conversation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ConversationResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let timeline = state
        .llm()
        .conversation(state.store(), auth.tenant_id(), &id, MAX_TIMELINE_EVENTS)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no event names conversation `{}`",
                crate::problem::excerpt(&id, 80)
            ))
        })?;
    let totals = timeline.totals;
    let rendered = timeline.events.iter().map(render_event).collect();
    Ok(axum::Json(ConversationResponse {
        conversation_id: id,
        events: rendered,
        totals: llm::usage::UsageRow::new(
            &llm::usage::UsageKey::default(),
            &totals,
            &llm::usage::GroupBy::none(),
        ),
    }))
}

/// An event for the timeline: its serde form with `time` in RFC 3339 and durations in ms.
fn render_event(event: &LlmEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    if let Some(ms) = obj.remove("time_ms").and_then(|v| v.as_i64()) {
        obj.insert("time".into(), crate::rfc3339_ms(ms).into());
    }
    if let Some(us) = obj.remove("duration_us").and_then(|v| v.as_u64()) {
        obj.insert("duration_ms".into(), json!(us as f64 / 1000.0));
    }
    if let LlmEvent::ModelCall(call) = event {
        obj.remove("tokens");
        obj.insert(
            "tokens".into(),
            serde_json::to_value(llm::usage::TokensView::from(&call.tokens)).unwrap_or_default(),
        );
        for (name, cost) in [
            ("client_cost", call.client_cost),
            ("computed_cost", call.computed_cost),
        ] {
            obj.remove(name);
            obj.insert(
                format!("{name}_picodollars"),
                cost.map_or(Value::Null, |c| c.picodollars().into()),
            );
        }
        let cost = call.cost();
        obj.insert(
            "cost_picodollars".into(),
            cost.map_or(Value::Null, |c| c.picodollars().into()),
        );
        obj.insert(
            "cost_usd".into(),
            cost.map_or(Value::Null, |c| c.usd_string().into()),
        );
    }
    value
}

// ---------------------------------------------------------------------------------------------
// Budgets

#[derive(Serialize, ToSchema)]
pub(crate) struct BudgetResponse {
    /// The monthly budget in dollars; `null` when none is set.
    monthly_usd: Option<f64>,
    /// The same, exact, in picodollars.
    monthly_picodollars: Option<u64>,
    /// Thresholds in percent of the budget.
    thresholds: Vec<u8>,
    /// The current calendar month (UTC), `YYYY-MM`.
    period: String,
    /// Spent this month (effective cost of priced calls), in dollars.
    spent_usd: f64,
    spent_picodollars: u64,
    /// Spent / budget in percent; `null` without a budget.
    percent_used: Option<f64>,
    /// Thresholds crossed this month, each recorded once.
    crossings: Vec<CrossingView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CrossingView {
    threshold: u8,
    /// When it was first seen crossed (RFC 3339).
    crossed_at: String,
    /// Spent at that moment, in dollars.
    spent_usd: f64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetRequest {
    /// The monthly budget in dollars (0 to 1,000,000), kept exactly as written (to the picodollar).
    #[schema(minimum = 0, maximum = 1_000_000)]
    monthly_usd: f64,
    /// Thresholds in percent of the budget, 1 to 255 each, 1 to 10 of them (repeats count
    /// once) [default: 50, 80, 100].
    #[serde(default)]
    #[schema(value_type = Option<Vec<ThresholdPercent>>, min_items = 1, max_items = 10)]
    thresholds: Option<Vec<u8>>,
}

/// A budget threshold in percent, 1 to 255 (written out: utoipa puts no bounds on a newtype).
pub(crate) struct ThresholdPercent;

impl utoipa::PartialSchema for ThresholdPercent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(255))
            .into()
    }
}

impl ToSchema for ThresholdPercent {}

fn budget_view(status: crate::llm::BudgetStatus) -> BudgetResponse {
    let crate::llm::BudgetStatus {
        budget,
        period,
        spent,
        crossings,
    } = status;
    BudgetResponse {
        monthly_usd: budget.as_ref().map(|b| b.monthly.usd()),
        monthly_picodollars: budget.as_ref().map(|b| b.monthly.picodollars()),
        thresholds: budget.as_ref().map_or_else(
            || llm::budget::DEFAULT_THRESHOLDS.to_vec(),
            |b| b.thresholds.clone(),
        ),
        period: period.to_string(),
        spent_usd: spent.usd(),
        spent_picodollars: spent.picodollars(),
        percent_used: budget
            .as_ref()
            .filter(|b| b.monthly > Cost::ZERO)
            .map(|b| spent.picodollars() as f64 * 100.0 / b.monthly.picodollars() as f64),
        crossings: crossings
            .into_iter()
            .map(|c| CrossingView {
                threshold: c.threshold,
                crossed_at: crate::rfc3339_ms(c.crossed_at_ms),
                spent_usd: c.spent.usd(),
            })
            .collect(),
    }
}

/// Your tenant's monthly LLM budget, this month's spend and the thresholds crossed (read scope).
#[utoipa::path(get, path = "/api/v1/llm/budget", tag = "llm", security(("api_key" = [])),
    responses(
        (status = 200, description = "The budget and this month's spend", body = BudgetResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_budget(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<BudgetResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let status = state
        .llm()
        .budget_status(state.store(), state.metrics(), auth.tenant_id(), now_ms())
        .await?;
    Ok(axum::Json(budget_view(status)))
}

/// Sets your tenant's monthly LLM budget and thresholds (admin scope). Each threshold crossed
/// within a calendar month (UTC) is recorded once, logged and exported as a metric; the check
/// runs at once (a budget set below this month's spend records its crossings now) and after
/// every ingest.
#[utoipa::path(put, path = "/api/v1/llm/budget", tag = "llm", security(("api_key" = [])),
    request_body = BudgetRequest,
    responses(
        (status = 200, description = "The budget as stored", body = BudgetResponse),
        (status = 400, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_budget(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<BudgetRequest>,
) -> Result<axum::Json<BudgetResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let status = state
        .llm()
        .set_budget(
            state.store(),
            state.metrics(),
            auth.tenant_id(),
            request.monthly_usd,
            request.thresholds,
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            crate::llm::BudgetSetError::Invalid(e) => {
                ApiError::invalid_field(&e.field, format!("{}: {}", e.field, e.reason))
            }
            crate::llm::BudgetSetError::Store(e) => e.into(),
        })?;
    Ok(axum::Json(budget_view(status)))
}

// ---------------------------------------------------------------------------------------------
// Prices

#[derive(Serialize, ToSchema)]
pub(crate) struct PricesResponse {
    /// Whether the default table applies to models your overrides do not list (your switch
    /// and the server's both on).
    use_defaults: bool,
    /// Your switch, as you set it.
    tenant_use_defaults: bool,
    /// Whether this server applies default prices at all (`[llm] default_prices`).
    server_defaults_enabled: bool,
    /// The default table's version.
    defaults_version: String,
    /// How many models the default table prices.
    defaults_models: usize,
    /// Your overrides: the price table in JSON (the TOML format's shape, docs/llm-prices.md),
    /// `null` when you set none.
    #[schema(value_type = Option<Object>)]
    overrides: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PricesRequest {
    /// Whether default prices apply to models your overrides do not list.
    use_defaults: bool,
    /// Your price table in JSON (the TOML format's shape: `version` and `prices`, prices in
    /// dollars per million tokens as decimal strings; docs/llm-prices.md); absent or `null` for
    /// none. Your prices win over the defaults for the models they list.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    overrides: Option<Value>,
}

fn prices_view(state: &AppState, prices: &crate::llm::TenantPrices) -> PricesResponse {
    let settings = state.llm().settings();
    PricesResponse {
        use_defaults: prices.use_defaults && settings.default_prices_enabled,
        tenant_use_defaults: prices.use_defaults,
        server_defaults_enabled: settings.default_prices_enabled,
        defaults_version: settings.default_prices.version.clone(),
        defaults_models: settings.default_prices.prices.len(),
        overrides: if prices.overrides_json.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(&prices.overrides).unwrap_or_default()
        },
    }
}

/// The prices that apply to your tenant (read scope).
#[utoipa::path(get, path = "/api/v1/llm/prices", tag = "llm", security(("api_key" = [])),
    responses(
        (status = 200, description = "Your overrides and whether defaults apply", body = PricesResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_prices(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<PricesResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let prices = state
        .llm()
        .tenant_prices(state.store(), auth.tenant_id())
        .await?;
    Ok(axum::Json(prices_view(&state, &prices)))
}

/// Replaces your price overrides and the defaults switch (admin scope). Applies to calls
/// ingested from now on; stored calls keep their cost.
#[utoipa::path(put, path = "/api/v1/llm/prices", tag = "llm", security(("api_key" = [])),
    request_body = PricesRequest,
    responses(
        (status = 200, description = "The prices as stored", body = PricesResponse),
        (status = 400, description = "The body is not JSON of this shape", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "The price table breaks a rule of docs/llm-prices.md; `field` names the entry (`overrides.prices[0].input`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_prices(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<PricesRequest>,
) -> Result<axum::Json<PricesResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let overrides_json = match request.overrides {
        None | Some(Value::Null) => String::new(),
        Some(table) => serde_json::to_string(&table).unwrap_or_default(),
    };
    if overrides_json.len() > 1024 * 1024 {
        return Err(ApiError::invalid_field(
            "overrides",
            "overrides must be at most 1 MiB of JSON",
        ));
    }
    let prices = state
        .llm()
        .set_prices(
            state.store(),
            auth.tenant_id(),
            &overrides_json,
            request.use_defaults,
        )
        .await
        .map_err(|e| match e {
            // The table's rules (decimal prices, label characters, dates, ascending tiers, no
            // duplicate entries) are the llm crate's, not JSON Schema's: 422 naming the field.
            crate::llm::PricesError::Invalid(e) => {
                let field = if e.field.is_empty() {
                    "overrides".to_owned()
                } else {
                    format!("overrides.{}", e.field)
                };
                ApiError::new(ProblemKind::Unprocessable, format!("{field}: {}", e.reason))
                    .with("field", field)
            }
            crate::llm::PricesError::Store(e) => ApiError::from(e),
        })?;
    Ok(axum::Json(prices_view(&state, &prices)))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/metrics

/// Your tenant's own series (read scope): every family with your `tenant_id` label, in the
/// Prometheus text format (OpenMetrics when `Accept` asks for it). Scrape it with your API key
/// as a bearer token; no other tenant's series are ever included.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "llm", security(("api_key" = [])),
    responses(
        (status = 200, description = "Your series", content(
            (String = "text/plain; version=0.0.4"),
            (String = "application/openmetrics-text; version=1.0.0"),
        )),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn tenant_metrics(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = telemetry::Format::negotiate(accept);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept, Authorization"),
        ],
        state.metrics().encode_tenant(auth.tenant_id(), format),
    )
        .into_response())
}
