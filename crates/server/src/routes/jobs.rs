//! Background jobs over HTTP: enqueue a built-in job by name, follow it, cancel, retry and purge
//! jobs, read queue statistics, and manage recurring schedules. The handlers translate HTTP to
//! and from [`crate::jobs::JobService`], which holds the rules (the CLI calls the same service).
//!
//! Every route needs the admin scope, reads included: a job's payload, result and error can
//! carry whatever the handler works on (user ids, file names), and starting, cancelling or
//! retrying work is an operator's decision. Every query is keyed by the caller's tenant, so
//! another tenant's job or schedule is 404, as a missing one is.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jobs::{JobStatus, Priority};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{JobRecord, JobSchedule, Scope};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::jobs::{EnqueueRequest, JobError, ListQuery, ScheduleRequest};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// The window of the throughput and failure figures of `/api/v1/jobs/stats` (the store's).
const STATS_WINDOW_MS: i64 = 5 * 60 * 1000;
/// The request header of draft-ietf-httpapi-idempotency-key-header.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

// ---- shapes ---------------------------------------------------------------------------------

/// One of the five queues (seed 002's priorities), most urgent first.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Critical,
    High,
    Normal,
    Low,
    Bulk,
}

impl From<QueueName> for Priority {
    fn from(q: QueueName) -> Priority {
        match q {
            QueueName::Critical => Priority::Critical,
            QueueName::High => Priority::High,
            QueueName::Normal => Priority::Normal,
            QueueName::Low => Priority::Low,
            QueueName::Bulk => Priority::Bulk,
        }
    }
}

/// A job's status.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    /// Waiting for its run time or a worker.
    Pending,
    /// Held by a worker.
    Running,
    /// Done; `result` holds what the handler returned.
    Success,
    /// Failed in a way a retry cannot fix (a bad payload); final.
    Failed,
    /// An attempt failed; it runs again at `run_at`.
    Retrying,
    /// Cancelled before it finished; final.
    Cancelled,
    /// Not started before `expires_at`; final.
    Expired,
    /// Used up its attempts (the dead-letter queue); final until retried.
    Dead,
}

impl From<StatusName> for JobStatus {
    fn from(s: StatusName) -> JobStatus {
        match s {
            StatusName::Pending => JobStatus::Pending,
            StatusName::Running => JobStatus::Running,
            StatusName::Success => JobStatus::Success,
            StatusName::Failed => JobStatus::Failed,
            StatusName::Retrying => JobStatus::Retrying,
            StatusName::Cancelled => JobStatus::Cancelled,
            StatusName::Expired => JobStatus::Expired,
            StatusName::Dead => JobStatus::Dead,
        }
    }
}

/// A final status: what a purge may delete.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FinalStatusName {
    Success,
    Failed,
    Cancelled,
    Expired,
    Dead,
}

impl From<FinalStatusName> for JobStatus {
    fn from(s: FinalStatusName) -> JobStatus {
        match s {
            FinalStatusName::Success => JobStatus::Success,
            FinalStatusName::Failed => JobStatus::Failed,
            FinalStatusName::Cancelled => JobStatus::Cancelled,
            FinalStatusName::Expired => JobStatus::Expired,
            FinalStatusName::Dead => JobStatus::Dead,
        }
    }
}

/// A job to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueBody {
    /// A built-in handler: `weber.recalculate`, `retention.purge`, `forecast.rebuild`,
    /// `jobs.canary`, `jobs.noop` (an unknown name is 422 naming `handler`).
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    handler: String,
    /// The handler's input, a JSON object of at most 64 KiB [default: `{}`]. The handler checks
    /// it now, so a bad payload is a 422 naming `payload`, not a failed job.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
    /// The queue [default: normal]. It decides the order against other queues, the timeout,
    /// the retries and the retry delay unless given here.
    #[serde(default)]
    priority: Option<QueueName>,
    /// Run no earlier than this many milliseconds from now (not with `run_at`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_622_400_000_i64)]
    delay_ms: Option<i64>,
    /// Run no earlier than this time, RFC 3339 (not with `delay_ms`; at most a year ahead).
    #[serde(default)]
    #[schema(format = DateTime)]
    run_at: Option<String>,
    /// Give up (status `expired`) if not started by this time, RFC 3339 [default: a job with a
    /// later run time expires a day after it; a job to run now never does].
    #[serde(default)]
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Retries after a failed attempt, 0 to 25 [default: the queue's].
    #[serde(default)]
    #[schema(minimum = 0, maximum = 25)]
    max_retries: Option<u32>,
    /// Hard time limit of one attempt, 1 s to 24 h in milliseconds [default: the queue's].
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 86_400_000)]
    timeout_ms: Option<u64>,
    /// Enqueue at most once per key: a repeat returns the first job (200) instead of a new
    /// one (202). Or the `Idempotency-Key` header; if both are given they must agree.
    #[serde(default)]
    #[schema(pattern = "^[\\x21-\\x7e]{1,200}$")]
    idempotency_key: Option<String>,
}

/// Links from a job to what can be done with it.
#[derive(Serialize, ToSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    self_: String,
    /// POST here to cancel.
    cancel: String,
    /// POST here to run a dead or failed job again.
    retry: String,
}

/// A job and where it stands.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    /// `job_` and 32 hex digits; ids sort by creation time.
    id: String,
    handler: String,
    queue: QueueName,
    status: StatusName,
    /// The handler's input.
    #[schema(value_type = Object)]
    payload: Value,
    /// Attempts started so far (a job runs at most `max_attempts` times).
    attempts: u32,
    /// `max_retries + 1`.
    max_attempts: u32,
    /// When it may run (next): RFC 3339.
    run_at: String,
    /// When it expires if not started by then.
    expires_at: Option<String>,
    /// Hard time limit of one attempt.
    timeout_ms: u64,
    idempotency_key: Option<String>,
    /// The schedule that enqueued it, if any.
    schedule: Option<String>,
    created_at: String,
    /// When the latest attempt started.
    started_at: Option<String>,
    /// When it reached a final status.
    finished_at: Option<String>,
    /// Until when the worker running it holds it (it heartbeats to keep it).
    lease_until: Option<String>,
    /// The worker running it (or that ran its latest attempt).
    worker_id: Option<String>,
    /// What the handler returned (any JSON), once it succeeded.
    #[schema(value_type = Option<serde_json::Value>)]
    result: Option<Value>,
    /// The latest attempt's error; kept after a retry until the next run.
    error: Option<String>,
    /// A cancel was asked while it ran; the worker stops it at its next heartbeat.
    cancel_requested: bool,
    /// Milliseconds from creation to the start of the latest attempt.
    queued_ms: Option<i64>,
    /// Milliseconds from the start of the latest attempt to the end.
    run_ms: Option<i64>,
    links: JobLinks,
}

fn job_path(id: &str) -> String {
    format!("/api/v1/jobs/{id}")
}

/// Stored JSON text as a value; text that is not JSON (which the store never writes) is shown
/// as a string rather than failing the whole answer.
fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn queue_name(p: Priority) -> QueueName {
    match p {
        Priority::Critical => QueueName::Critical,
        Priority::High => QueueName::High,
        Priority::Normal => QueueName::Normal,
        Priority::Low => QueueName::Low,
        Priority::Bulk => QueueName::Bulk,
    }
}

fn status_name(s: JobStatus) -> StatusName {
    match s {
        JobStatus::Pending => StatusName::Pending,
        JobStatus::Running => StatusName::Running,
        JobStatus::Success => StatusName::Success,
        JobStatus::Failed => StatusName::Failed,
        JobStatus::Retrying => StatusName::Retrying,
        JobStatus::Cancelled => StatusName::Cancelled,
        JobStatus::Expired => StatusName::Expired,
        JobStatus::Dead => StatusName::Dead,
    }
}

impl From<JobRecord> for JobView {
    fn from(r: JobRecord) -> JobView {
        let path = job_path(&r.id);
        let queued_ms = r.started_at_ms.map(|s| s - r.created_at_ms);
        let run_ms = match (r.started_at_ms, r.finished_at_ms) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        };
        JobView {
            links: JobLinks {
                cancel: format!("{path}/cancel"),
                retry: format!("{path}/retry"),
                self_: path,
            },
            id: r.id,
            handler: r.handler,
            queue: queue_name(r.priority),
            status: status_name(r.status),
            payload: stored_json(&r.payload),
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: crate::rfc3339_ms(r.run_at_ms),
            expires_at: r.expires_at_ms.map(crate::rfc3339_ms),
            timeout_ms: r.timeout_ms,
            idempotency_key: r.idempotency_key,
            schedule: r.schedule,
            created_at: crate::rfc3339_ms(r.created_at_ms),
            started_at: r.started_at_ms.map(crate::rfc3339_ms),
            finished_at: r.finished_at_ms.map(crate::rfc3339_ms),
            lease_until: r.lease_until_ms.map(crate::rfc3339_ms),
            worker_id: r.worker_id,
            result: r.result.as_deref().map(stored_json),
            error: r.last_error,
            cancel_requested: r.cancel_requested,
            queued_ms,
            run_ms,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobListResponse {
    jobs: Vec<JobView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

/// Filters and paging of the job listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only this queue.
    queue: Option<QueueName>,
    /// Only this status.
    status: Option<StatusName>,
    /// Only this handler.
    #[param(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    handler: Option<String>,
    /// Only jobs older than this job id (the previous page's `next_before`).
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    before: Option<String>,
    /// Page size, 1 to 500 [default: 50].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Which jobs a purge deletes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PurgeParams {
    /// The final status whose jobs are deleted (`dead` empties the dead-letter queue).
    status: FinalStatusName,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PurgeResponse {
    status: FinalStatusName,
    /// How many jobs were deleted.
    purged: u64,
}

/// Jobs per status in one queue.
#[derive(Serialize, ToSchema)]
pub struct StatusCounts {
    pending: u64,
    running: u64,
    success: u64,
    failed: u64,
    retrying: u64,
    cancelled: u64,
    expired: u64,
    dead: u64,
}

/// One queue's figures.
#[derive(Serialize, ToSchema)]
pub struct QueueStatsView {
    queue: QueueName,
    /// Jobs per status (the queue's depth is `pending + retrying`).
    by_status: StatusCounts,
    /// How long the longest-waiting due job (pending or retrying) has waited since its run
    /// time, in milliseconds; null when none is due.
    oldest_pending_age_ms: Option<i64>,
    /// Jobs that succeeded in the last five minutes.
    succeeded_last_5m: u64,
    /// Failed attempts (retried, dead or failed) in the last five minutes.
    failed_last_5m: u64,
    /// Successes per minute over the last five minutes.
    throughput_per_minute: f64,
    /// `failed / (succeeded + failed)` over the last five minutes; null when nothing finished.
    failure_rate: Option<f64>,
}

/// Queue statistics of one tenant.
#[derive(Serialize, ToSchema)]
pub struct JobStatsView {
    /// When the figures were read (RFC 3339).
    at: String,
    /// The window of the `*_last_5m`, throughput and failure-rate figures.
    window_ms: i64,
    /// Every queue, most urgent first, empty ones included.
    queues: Vec<QueueStatsView>,
}

impl JobStatsView {
    /// The store's figures, read at `now_ms`, with the rates derived from them.
    pub fn new(stats: store::JobStats, now_ms: i64) -> JobStatsView {
        let minutes = STATS_WINDOW_MS as f64 / 60_000.0;
        let queues = stats
            .queues
            .into_iter()
            .map(|q| {
                let count = |status: JobStatus| {
                    q.by_status
                        .iter()
                        .find(|(s, _)| *s == status)
                        .map_or(0, |(_, n)| *n)
                };
                let finished = q.finished_last_5m + q.failed_last_5m;
                QueueStatsView {
                    queue: queue_name(q.priority),
                    by_status: StatusCounts {
                        pending: count(JobStatus::Pending),
                        running: count(JobStatus::Running),
                        success: count(JobStatus::Success),
                        failed: count(JobStatus::Failed),
                        retrying: count(JobStatus::Retrying),
                        cancelled: count(JobStatus::Cancelled),
                        expired: count(JobStatus::Expired),
                        dead: count(JobStatus::Dead),
                    },
                    oldest_pending_age_ms: q.oldest_pending_age_ms,
                    succeeded_last_5m: q.finished_last_5m,
                    failed_last_5m: q.failed_last_5m,
                    throughput_per_minute: q.finished_last_5m as f64 / minutes,
                    failure_rate: (finished > 0).then(|| q.failed_last_5m as f64 / finished as f64),
                }
            })
            .collect();
        JobStatsView {
            at: crate::rfc3339_ms(now_ms),
            window_ms: STATS_WINDOW_MS,
            queues,
        }
    }
}

/// A recurring job to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleBody {
    /// A cron expression in UTC: five fields (minute hour day-of-month month day-of-week) or
    /// six with seconds first; an invalid one is 422 naming `cron`.
    #[schema(min_length = 1, max_length = 200)]
    cron: String,
    /// The handler each tick enqueues (as for POST /api/v1/jobs).
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    handler: String,
    /// Each tick's payload [default: `{}`].
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
    /// The queue of each tick's job [default: normal].
    #[serde(default)]
    priority: Option<QueueName>,
    /// A disabled schedule enqueues nothing [default: true].
    #[serde(default)]
    enabled: Option<bool>,
}

/// A recurring job.
#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    name: String,
    cron: String,
    handler: String,
    #[schema(value_type = Object)]
    payload: Value,
    queue: QueueName,
    enabled: bool,
    /// The next tick (RFC 3339): exactly one job is enqueued per tick, whatever the number of
    /// replicas. Ticks missed while no replica ran are not made up; the latest one runs.
    next_run_at: String,
    created_at: String,
    updated_at: String,
}

impl From<JobSchedule> for ScheduleView {
    fn from(s: JobSchedule) -> ScheduleView {
        ScheduleView {
            payload: stored_json(&s.payload),
            name: s.name,
            cron: s.cron,
            handler: s.handler,
            queue: queue_name(s.priority),
            enabled: s.enabled,
            next_run_at: crate::rfc3339_ms(s.next_run_ms),
            created_at: crate::rfc3339_ms(s.created_at_ms),
            updated_at: crate::rfc3339_ms(s.updated_at_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleListResponse {
    /// Sorted by name.
    schedules: Vec<ScheduleView>,
}

// ---- errors ---------------------------------------------------------------------------------

/// The problem for a refused use case: [`JobError`]'s own mapping (422 naming the field for
/// rules JSON Schema cannot state, 413 naming `payload` for an oversized payload, 409 naming
/// the status for a state change the job's status does not allow), with the service's
/// millisecond time fields renamed to the RFC 3339 fields this API takes.
pub(crate) fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::Invalid { field, message } => {
            let field = match field.as_str() {
                "run_at_ms" => "run_at".to_owned(),
                "expires_at_ms" => "expires_at".to_owned(),
                _ => field,
            };
            ApiError::new(ProblemKind::Unprocessable, format!("{field}: {message}"))
                .with("field", field)
        }
        other => other.into(),
    }
}

/// A listing's or purge's refusal: those fields are query parameters, so a bad one is 400
/// `invalid_parameter` naming it, like every other route's.
fn parameter_error(e: JobError) -> ApiError {
    match e {
        JobError::Invalid { field, message } => {
            ApiError::invalid_parameter(&field, format!("query parameter `{field}`: {message}"))
        }
        other => other.into(),
    }
}

fn now_ms() -> i64 {
    crate::jobs::now_ms()
}

/// RFC 3339 text as epoch milliseconds; 400 naming `field` when it is not RFC 3339.
fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::invalid_field(field, format!("{field} must be an RFC 3339 time: {e}"))
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::invalid_field(field, format!("{field} is out of range")))
}

/// The `Idempotency-Key` header's key: bare, or a Structured Field string (`"k"`), as the
/// draft writes it. Whether the key itself is acceptable is the service's rule.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError::invalid_parameter(
            "Idempotency-Key",
            "Idempotency-Key must be visible ASCII characters, optionally quoted",
        )
    })?;
    let text = text.trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.is_empty())
        .unwrap_or(text);
    Ok(Some(inner.to_owned()))
}

/// The answer to an enqueue: 202 and the new job, or 200 and the job an earlier request with
/// the same idempotency key made. `Location` names the job either way.
pub(crate) fn enqueued_response(enqueued: store::Enqueued) -> Response {
    let status = if enqueued.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let location = HeaderValue::from_str(&job_path(&enqueued.job.id)).ok();
    let mut response = (status, axum::Json(JobView::from(enqueued.job))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The one idempotency key of a request: the body's, the header's, or both when they agree
/// (422 naming `idempotency_key` when they do not).
fn one_key(body: Option<String>, header: Option<String>) -> Result<Option<String>, ApiError> {
    match (body, header) {
        (Some(a), Some(b)) if a != b => Err(ApiError::new(
            ProblemKind::Unprocessable,
            "idempotency_key: the body's idempotency_key and the Idempotency-Key header differ; give one, or the same in both",
        )
        .with("field", "idempotency_key")),
        (a, b) => Ok(a.or(b)),
    }
}

// ---- jobs -----------------------------------------------------------------------------------

/// Enqueues a built-in job (admin scope). Answers 202 with the job and its URL; poll that URL
/// for its status, result and error. With an idempotency key (`idempotency_key` or the
/// `Idempotency-Key` header) a repeat answers 200 with the first job, whatever its status.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^([\\x21-\\x7e]{1,200}|\"[\\x21-\\x7e]{1,200}\")$", description = "Enqueue at most once per key (draft-ietf-httpapi-idempotency-key-header), bare or quoted; the same as the body's `idempotency_key`")),
    request_body = EnqueueBody,
    responses(
        (status = 202, description = "Enqueued", body = JobView, headers(("location" = String, description = "The job's URL"))),
        (status = 200, description = "An earlier request with this idempotency key enqueued this job", body = JobView, headers(("location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed body, a field of the wrong type or out of its bounds, or a bad Idempotency-Key", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope, or the handler is operator-only (`forecast.rebuild`: `field` is `handler`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "The body is over the body limit, or the payload over 64 KiB (`field`: `payload`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "An unknown handler, a payload the handler refuses, a negative delay, both `delay_ms` and `run_at`, a run time more than a year ahead, or body and header keys that differ: `field` names it", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn enqueue(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EnqueueBody>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let idempotency_key = one_key(body.idempotency_key, header_key(&headers)?)?;
    let run_at_ms = body
        .run_at
        .as_deref()
        .map(|t| parse_time("run_at", t))
        .transpose()?;
    let expires_at_ms = body
        .expires_at
        .as_deref()
        .map(|t| parse_time("expires_at", t))
        .transpose()?;
    let request = EnqueueRequest {
        handler: body.handler,
        payload: body
            .payload
            .unwrap_or_else(|| Value::Object(Default::default())),
        priority: body.priority.map(Into::into),
        delay_ms: body.delay_ms,
        run_at_ms,
        expires_at_ms,
        max_retries: body.max_retries,
        timeout_ms: body.timeout_ms,
        idempotency_key,
    };
    let enqueued = state
        .jobs()
        .enqueue(auth.tenant_id(), &request, now_ms())
        .await
        .map_err(job_error)?;
    Ok(enqueued_response(enqueued))
}

/// Lists the tenant's jobs, newest first, a page at a time (admin scope).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, body = JobListResponse),
        (status = 400, description = "A bad filter or limit (`parameter` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<JobListResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let limit = params.limit.unwrap_or(crate::jobs::DEFAULT_LIST_LIMIT);
    let query = ListQuery {
        priority: params.queue.map(Into::into),
        status: params.status.map(Into::into),
        handler: params.handler,
        before: params.before,
        limit: Some(limit),
    };
    let records = state
        .jobs()
        .list(auth.tenant_id(), &query)
        .await
        .map_err(parameter_error)?;
    // A full page may have a next one; an empty page after it ends the listing.
    let next_before = if records.len() as u32 == limit {
        records.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(axum::Json(JobListResponse {
        jobs: records.into_iter().map(JobView::from).collect(),
        next_before,
    }))
}

/// One job: status, attempts, timings, result and error (admin scope).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("api_key" = [])),
    params(("id" = String, Path, description = "The job's id (`job_…`)")),
    responses(
        (status = 200, body = JobView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such job in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    auth.require(Scope::Admin)?;
    let job = state
        .jobs()
        .get(auth.tenant_id(), &id)
        .await
        .map_err(job_error)?;
    Ok(axum::Json(job.into()))
}

/// Cancels a job (admin scope): a waiting job is cancelled at once; a running one is asked to
/// stop (`cancel_requested`) and ends cancelled when its worker next checks in. A job that
/// already finished is 409 naming its status.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("api_key" = [])),
    params(("id" = String, Path, description = "The job's id (`job_…`)")),
    responses(
        (status = 200, description = "The job, cancelled or asked to stop", body = JobView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such job in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "The job already finished (`invalid_state`; `current_status` names its status)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    auth.require(Scope::Admin)?;
    let job = state
        .jobs()
        .cancel(auth.tenant_id(), &id, now_ms())
        .await
        .map_err(job_error)?;
    Ok(axum::Json(job.into()))
}

/// Runs a dead or failed job again from its first attempt (admin scope); its last error stays
/// until it runs. Any other status is 409 naming it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("api_key" = [])),
    params(("id" = String, Path, description = "The job's id (`job_…`)")),
    responses(
        (status = 200, description = "The job, pending again", body = JobView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such job in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "The job is neither dead nor failed (`invalid_state`; `current_status` names its status)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    auth.require(Scope::Admin)?;
    let job = state
        .jobs()
        .retry(auth.tenant_id(), &id, now_ms())
        .await
        .map_err(job_error)?;
    Ok(axum::Json(job.into()))
}

/// Deletes every job of the tenant in one final status (admin scope): `?status=dead` empties
/// the dead-letter queue.
#[utoipa::path(delete, path = "/api/v1/jobs", tag = "jobs", security(("api_key" = [])),
    params(PurgeParams),
    responses(
        (status = 200, body = PurgeResponse),
        (status = 400, description = "`status` is missing or not a final status", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn purge(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<PurgeParams>,
) -> Result<axum::Json<PurgeResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let purged = state
        .jobs()
        .purge(auth.tenant_id(), params.status.into())
        .await
        .map_err(parameter_error)?;
    Ok(axum::Json(PurgeResponse {
        status: params.status,
        purged,
    }))
}

/// Queue statistics (admin scope): jobs per status in each queue, the oldest waiting job's
/// age, and throughput and failure rate over the last five minutes.
#[utoipa::path(get, path = "/api/v1/jobs/stats", tag = "jobs", security(("api_key" = [])),
    responses(
        (status = 200, body = JobStatsView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<JobStatsView>, ApiError> {
    auth.require(Scope::Admin)?;
    let now = now_ms();
    let stats = state
        .jobs()
        .stats(auth.tenant_id(), now)
        .await
        .map_err(job_error)?;
    Ok(axum::Json(JobStatsView::new(stats, now)))
}

// ---- schedules ------------------------------------------------------------------------------

/// Creates or replaces a recurring job (admin scope). Each tick of the cron expression (UTC)
/// enqueues one job, whatever the number of replicas; the first tick is the first after now.
#[utoipa::path(put, path = "/api/v1/jobs/schedules/{name}", tag = "jobs", security(("api_key" = [])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,100}$", description = "The schedule's name, unique in your tenant")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "The schedule as stored", body = ScheduleView),
        (status = 400, description = "Malformed body or a field of the wrong type", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope, or the handler is operator-only (`forecast.rebuild`: `field` is `handler`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, description = "The body is over the body limit, or the payload over 64 KiB (`field`: `payload`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A bad cron expression (`cron`), an unknown handler (`handler`), a payload the handler refuses (`payload…`) or a bad name (`name`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn put_schedule(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<axum::Json<ScheduleView>, ApiError> {
    auth.require(Scope::Admin)?;
    let request = ScheduleRequest {
        cron: body.cron,
        handler: body.handler,
        payload: body
            .payload
            .unwrap_or_else(|| Value::Object(Default::default())),
        priority: body.priority.map(Into::into),
        enabled: body.enabled,
    };
    let schedule = state
        .jobs()
        .put_schedule(auth.tenant_id(), &name, &request, now_ms())
        .await
        .map_err(job_error)?;
    Ok(axum::Json(schedule.into()))
}

/// The tenant's recurring jobs, by name (admin scope).
#[utoipa::path(get, path = "/api/v1/jobs/schedules", tag = "jobs", security(("api_key" = [])),
    responses(
        (status = 200, body = ScheduleListResponse),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list_schedules(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<ScheduleListResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let schedules = state
        .jobs()
        .schedules(auth.tenant_id())
        .await
        .map_err(job_error)?;
    Ok(axum::Json(ScheduleListResponse {
        schedules: schedules.into_iter().map(Into::into).collect(),
    }))
}

/// One recurring job (admin scope).
#[utoipa::path(get, path = "/api/v1/jobs/schedules/{name}", tag = "jobs", security(("api_key" = [])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,100}$", description = "The schedule's name")),
    responses(
        (status = 200, body = ScheduleView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such schedule in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A bad name (`name`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_schedule(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<axum::Json<ScheduleView>, ApiError> {
    auth.require(Scope::Admin)?;
    let schedule = state
        .jobs()
        .schedule(auth.tenant_id(), &name)
        .await
        .map_err(job_error)?;
    Ok(axum::Json(schedule.into()))
}

/// Deletes a recurring job (admin scope); jobs it already enqueued are kept.
#[utoipa::path(delete, path = "/api/v1/jobs/schedules/{name}", tag = "jobs", security(("api_key" = [])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,100}$", description = "The schedule's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No such schedule in your tenant", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A bad name (`name`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn delete_schedule(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    state
        .jobs()
        .delete_schedule(auth.tenant_id(), &name)
        .await
        .map_err(job_error)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- long admin actions as jobs -------------------------------------------------------------

/// Which profiles to recalculate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecalculateBody {
    /// These users only (1 to 10,000 ids) [default: every user with stored interactions].
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10_000)]
    user_ids: Option<Vec<String>>,
    /// The queue [default: bulk].
    #[serde(default)]
    priority: Option<QueueName>,
    /// Enqueue at most once per key (or the `Idempotency-Key` header).
    #[serde(default)]
    #[schema(pattern = "^[\\x21-\\x7e]{1,200}$")]
    idempotency_key: Option<String>,
}

/// Recalculates many users' Weber profiles from their stored interactions, as a job (admin
/// scope): every user of the tenant, or the `user_ids` given. Answers 202 with the job and its
/// URL at once; the job's result counts the users recalculated. One user's profile is still
/// recalculated at once by POST /api/v1/users/{user_id}/weber-profile/update.
#[utoipa::path(post, path = "/api/v1/weber-profiles:recalculate", tag = "weber", security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^([\\x21-\\x7e]{1,200}|\"[\\x21-\\x7e]{1,200}\")$", description = "Enqueue at most once per key, bare or quoted; the same as the body's `idempotency_key`")),
    request_body = RecalculateBody,
    responses(
        (status = 202, description = "Enqueued (a `weber.recalculate` job)", body = JobView, headers(("location" = String, description = "The job's URL"))),
        (status = 200, description = "An earlier request with this idempotency key enqueued this job", body = JobView, headers(("location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed body or a field of the wrong type", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 422, description = "A bad user id (`payload.user_ids[i]`), or body and header keys that differ", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn recalculate_profiles(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RecalculateBody>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let idempotency_key = one_key(body.idempotency_key, header_key(&headers)?)?;
    let payload = match body.user_ids {
        Some(ids) => serde_json::json!({ "user_ids": ids }),
        None => serde_json::json!({}),
    };
    let request = EnqueueRequest {
        handler: crate::jobs::WEBER_RECALCULATE.to_owned(),
        payload,
        priority: Some(body.priority.map_or(Priority::Bulk, Into::into)),
        idempotency_key,
        ..EnqueueRequest::default()
    };
    let enqueued = state
        .jobs()
        .enqueue(auth.tenant_id(), &request, now_ms())
        .await
        .map_err(job_error)?;
    Ok(enqueued_response(enqueued))
}
