//! `JobService`: the job use cases, once, for the routes, the CLI and handlers.

use std::sync::Arc;

use jobs::{JobStatus, Priority, QueueSettings, Schedule};
use serde::Deserialize;
use store::{Enqueued, JobFilter, JobRecord, JobSchedule, JobStats, NewJob, Store, StoreError};

use super::{JobRegistry, JobSettings};

/// Most a job may be delayed (or scheduled ahead): a year.
pub const MAX_DELAY_MS: i64 = 366 * 24 * 3600 * 1000;
/// Most retries a job may ask for.
pub const MAX_RETRIES: u32 = 25;
/// Shortest time limit a job may ask for (1 s).
pub const MIN_TIMEOUT_MS: u64 = 1_000;
/// Longest time limit a job may ask for (24 h).
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Jobs per list page unless asked.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// Most jobs per list page.
pub const MAX_LIST_LIMIT: u32 = 500;
/// Longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 100;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// A job to enqueue, as a client describes it. Every field but `handler` is optional; the
/// queue's settings fill the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// A registered handler's name (`weber.recalculate`).
    pub handler: String,
    /// The handler's input: a JSON object (`{}` when absent).
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// The queue [default: normal].
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Run no sooner than this many milliseconds from now (not with `run_at_ms`).
    #[serde(default)]
    pub delay_ms: Option<i64>,
    /// Run no sooner than this time, Unix ms (an ETA; not with `delay_ms`).
    #[serde(default)]
    pub run_at_ms: Option<i64>,
    /// Not started by then, the job expires [default: a delayed job expires 24 h after its
    /// run time, one to run now never].
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// Retries after the first attempt [default: the queue's].
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// The attempt's hard time limit [default: the queue's].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A repeated enqueue with the same key returns the first job instead of a new one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl Default for EnqueueRequest {
    /// No handler, an empty payload object, everything else the queue's.
    fn default() -> Self {
        EnqueueRequest {
            handler: String::new(),
            payload: empty_object(),
            priority: None,
            delay_ms: None,
            run_at_ms: None,
            expires_at_ms: None,
            max_retries: None,
            timeout_ms: None,
            idempotency_key: None,
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Which jobs a list shows (newest first).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this queue.
    pub priority: Option<Priority>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this handler.
    pub handler: Option<String>,
    /// Only jobs older than this job id (the previous page's last id).
    pub before: Option<String>,
    /// Page size [default: 50, at most 500].
    pub limit: Option<u32>,
}

/// A recurring job, as a client describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Cron expression in UTC (five fields, or six with seconds first).
    pub cron: String,
    /// A registered handler's name.
    pub handler: String,
    /// The handler's input, given to every tick's job.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// The queue of its jobs [default: normal].
    #[serde(default)]
    pub priority: Option<Priority>,
    /// A disabled schedule enqueues nothing [default: true].
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Why a job use case refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No handler of that name is registered (field `handler`).
    #[error("handler: no handler named '{name}'; known handlers: {}", known.join(", "))]
    UnknownHandler {
        /// The name asked for (cut to 64 characters).
        name: String,
        /// What exists.
        known: Vec<&'static str>,
    },
    /// The handler changes what every tenant is served, so only the operator may enqueue or
    /// schedule it (field `handler`).
    #[error("handler: '{name}' changes what every tenant is served; only the operator may run it (signalbox jobs enqueue)")]
    OperatorOnly {
        /// The handler.
        name: &'static str,
    },
    /// A field's value cannot be used.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as the client named it (`delay_ms`, `payload.user_ids[2]`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The payload is larger than a job may carry (field `payload`).
    #[error("payload: {bytes} bytes of JSON, more than the {max} a job may carry")]
    PayloadTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// No such job or schedule for this tenant.
    #[error("{what} not found")]
    NotFound {
        /// `job job_…` or `schedule nightly`.
        what: String,
    },
    /// The job's status does not allow the action (cancel a finished job, retry a running one).
    #[error("job {job_id} is {status}; {action} needs {allowed}")]
    InvalidState {
        /// The job.
        job_id: String,
        /// Its status now.
        status: JobStatus,
        /// `cancel` or `retry`.
        action: &'static str,
        /// The statuses that allow it.
        allowed: &'static str,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JobError {
    fn invalid(field: &str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The field the error names, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            JobError::UnknownHandler { .. } | JobError::OperatorOnly { .. } => Some("handler"),
            JobError::Invalid { field, .. } => Some(field),
            JobError::PayloadTooLarge { .. } => Some("payload"),
            JobError::Store(StoreError::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }
}

impl From<JobError> for crate::problem::ApiError {
    fn from(e: JobError) -> crate::problem::ApiError {
        use crate::problem::{ApiError, ProblemKind};
        let detail = e.to_string();
        match e {
            JobError::UnknownHandler { .. } => {
                ApiError::new(ProblemKind::Unprocessable, detail).with("field", "handler")
            }
            JobError::OperatorOnly { .. } => {
                ApiError::new(ProblemKind::Forbidden, detail).with("field", "handler")
            }
            JobError::Invalid { field, .. } => {
                ApiError::new(ProblemKind::Unprocessable, detail).with("field", field)
            }
            JobError::PayloadTooLarge { .. } => {
                ApiError::new(ProblemKind::PayloadTooLarge, detail).with("field", "payload")
            }
            JobError::NotFound { .. } => ApiError::not_found(detail),
            JobError::InvalidState { status, .. } => {
                ApiError::new(ProblemKind::InvalidState, detail)
                    .with("field", "status")
                    // Not `status`: that member is the problem's HTTP status (RFC 9457).
                    .with("current_status", status.as_str())
            }
            JobError::Store(e) => e.into(),
        }
    }
}

/// The job use cases. Cheap to clone.
#[derive(Clone)]
pub struct JobService {
    store: Store,
    registry: Arc<JobRegistry>,
    settings: Arc<JobSettings>,
    /// Whether the caller is the operator, who may enqueue operator-only handlers
    /// ([`JobHandler::operator_only`]); tenants' API keys are not.
    operator: bool,
}

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService")
            .field("handlers", &self.registry)
            .finish()
    }
}

impl JobService {
    /// Jobs in `store`, runnable by `registry`'s handlers, with the queues of `settings`.
    pub fn new(store: Store, registry: JobRegistry, settings: JobSettings) -> JobService {
        JobService {
            store,
            registry: Arc::new(registry),
            settings: Arc::new(settings),
            operator: false,
        }
    }

    /// The same service for the operator (the CLI working on the database directly), who may
    /// also enqueue and schedule operator-only handlers such as `forecast.rebuild`.
    pub fn for_operator(&self) -> JobService {
        JobService {
            operator: true,
            ..self.clone()
        }
    }

    /// The handlers this service accepts.
    pub fn registry(&self) -> &JobRegistry {
        &self.registry
    }

    /// The queues' settings and the runtime's.
    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    /// The effective settings of `priority`'s queue.
    pub fn queue(&self, priority: Priority) -> QueueSettings {
        self.settings.queue(priority)
    }

    /// Checks `request` and enqueues it for `tenant_id`. With an idempotency key that the
    /// tenant used before, nothing is enqueued and the existing job comes back with
    /// `created: false`, whatever its status.
    pub async fn enqueue(
        &self,
        tenant_id: &str,
        request: &EnqueueRequest,
        now_ms: i64,
    ) -> Result<Enqueued, JobError> {
        let checked = self.check(request, now_ms)?;
        let job = checked.as_new_job(request);
        Ok(self.store.enqueue_job(tenant_id, &job, now_ms).await?)
    }

    /// Checks every request, then enqueues them all in one transaction (all or none), in
    /// order. An invalid request is named by its index: `jobs[3].delay_ms`.
    pub async fn enqueue_many(
        &self,
        tenant_id: &str,
        requests: &[EnqueueRequest],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, JobError> {
        let mut checked = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            checked.push(self.check(request, now_ms).map_err(|e| match e {
                JobError::Invalid { field, message } => JobError::Invalid {
                    field: format!("jobs[{i}].{field}"),
                    message,
                },
                other => other,
            })?);
        }
        let jobs: Vec<NewJob<'_>> = checked
            .iter()
            .zip(requests)
            .map(|(c, r)| c.as_new_job(r))
            .collect();
        Ok(self.store.enqueue_jobs(tenant_id, &jobs, now_ms).await?)
    }

    fn check(&self, request: &EnqueueRequest, now_ms: i64) -> Result<Checked, JobError> {
        self.check_handler(&request.handler, &request.payload)?;
        let payload = serde_json::to_string(&request.payload)
            .map_err(|e| JobError::invalid("payload", e.to_string()))?;
        if payload.len() > store::MAX_JOB_PAYLOAD_BYTES {
            return Err(JobError::PayloadTooLarge {
                bytes: payload.len(),
                max: store::MAX_JOB_PAYLOAD_BYTES,
            });
        }
        let priority = request.priority.unwrap_or_default();
        let queue = self.queue(priority);
        let run_at_ms = match (request.delay_ms, request.run_at_ms) {
            (Some(_), Some(_)) => {
                return Err(JobError::invalid(
                    "run_at_ms",
                    "give delay_ms or run_at_ms, not both",
                ))
            }
            (Some(delay), None) => {
                if delay < 0 {
                    return Err(JobError::invalid(
                        "delay_ms",
                        format!("must not be negative (got {delay})"),
                    ));
                }
                if delay > MAX_DELAY_MS {
                    return Err(JobError::invalid(
                        "delay_ms",
                        format!("must be at most {MAX_DELAY_MS} (a year)"),
                    ));
                }
                now_ms.saturating_add(delay)
            }
            (None, Some(at)) => {
                if at < 0 {
                    return Err(JobError::invalid(
                        "run_at_ms",
                        "must be a Unix time in milliseconds (not negative)",
                    ));
                }
                if at > now_ms.saturating_add(MAX_DELAY_MS) {
                    return Err(JobError::invalid(
                        "run_at_ms",
                        "must be at most a year ahead",
                    ));
                }
                // A time already passed means "now"; the job keeps the time it was given.
                at
            }
            (None, None) => now_ms,
        };
        let expires_at_ms = match request.expires_at_ms {
            Some(at) if at <= run_at_ms.max(now_ms) => {
                return Err(JobError::invalid(
                    "expires_at_ms",
                    "must be after the job's run time (and after now)",
                ))
            }
            Some(at) => Some(at),
            None => jobs::default_expiry_ms(run_at_ms, now_ms),
        };
        let max_retries = request.max_retries.unwrap_or(queue.max_retries);
        if max_retries > MAX_RETRIES {
            return Err(JobError::invalid(
                "max_retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        let timeout_ms = request.timeout_ms.unwrap_or(queue.timeout_ms);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(JobError::invalid(
                "timeout_ms",
                format!("must be {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} (1 s to 24 h)"),
            ));
        }
        if let Some(key) = &request.idempotency_key {
            check_idempotency_key(key)?;
        }
        Ok(Checked {
            payload,
            priority,
            run_at_ms,
            expires_at_ms,
            max_attempts: max_retries + 1,
            timeout_ms,
        })
    }

    /// Whether `handler` is registered and accepts `payload`.
    fn check_handler(&self, handler: &str, payload: &serde_json::Value) -> Result<(), JobError> {
        let Some(found) = self.registry.get(handler) else {
            return Err(JobError::UnknownHandler {
                name: handler.chars().take(64).collect(),
                known: self.registry.names(),
            });
        };
        if found.operator_only() && !self.operator {
            return Err(JobError::OperatorOnly { name: found.name() });
        }
        if !payload.is_object() {
            return Err(JobError::invalid("payload", "must be a JSON object"));
        }
        found.validate(payload).map_err(|e| JobError::Invalid {
            field: e.field,
            message: e.message,
        })
    }

    /// One of the tenant's jobs.
    pub async fn get(&self, tenant_id: &str, job_id: &str) -> Result<JobRecord, JobError> {
        self.store
            .job(tenant_id, job_id)
            .await?
            .ok_or_else(|| JobError::NotFound {
                what: format!("job {}", job_id.chars().take(64).collect::<String>()),
            })
    }

    /// A page of the tenant's jobs, newest first.
    pub async fn list(
        &self,
        tenant_id: &str,
        query: &ListQuery,
    ) -> Result<Vec<JobRecord>, JobError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(JobError::invalid(
                "limit",
                format!("must be 1 to {MAX_LIST_LIMIT}"),
            ));
        }
        if let Some(handler) = &query.handler {
            if !jobs::valid_handler_name(handler) {
                return Err(JobError::invalid(
                    "handler",
                    "must be a handler name (lower-case letters, digits, '.', '_', '-')",
                ));
            }
        }
        if let Some(before) = &query.before {
            if before.is_empty()
                || before.len() > 64
                || !before
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(JobError::invalid("before", "must be a job id"));
            }
        }
        let filter = JobFilter {
            priority: query.priority,
            status: query.status,
            handler: query.handler.as_deref(),
            before_id: query.before.as_deref(),
            limit,
        };
        Ok(self.store.list_jobs(tenant_id, &filter).await?)
    }

    /// Cancels a job: a waiting one at once, a running one when its worker next checks in
    /// (its status says `running` with `cancel_requested` until then).
    pub async fn cancel(
        &self,
        tenant_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Result<JobRecord, JobError> {
        match self.store.cancel_job(tenant_id, job_id, now_ms).await {
            Ok(job) => Ok(job),
            Err(StoreError::JobState { job_id, status, .. }) => Err(JobError::InvalidState {
                job_id,
                status,
                action: "cancel",
                allowed: "pending, retrying or running",
            }),
            Err(StoreError::NotFound { .. }) => Err(not_found(job_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a dead or failed job again: back to pending with its attempts reset.
    pub async fn retry(
        &self,
        tenant_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Result<JobRecord, JobError> {
        match self.store.retry_job(tenant_id, job_id, now_ms).await {
            Ok(job) => Ok(job),
            Err(StoreError::JobState { job_id, status, .. }) => Err(JobError::InvalidState {
                job_id,
                status,
                action: "retry",
                allowed: "dead or failed",
            }),
            Err(StoreError::NotFound { .. }) => Err(not_found(job_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the tenant's jobs in a final status (`dead`, `success`, …); returns how many.
    pub async fn purge(&self, tenant_id: &str, status: JobStatus) -> Result<u64, JobError> {
        if !status.is_final() {
            return Err(JobError::invalid(
                "status",
                format!(
                    "only jobs in a final status (success, failed, cancelled, expired, dead) can be purged, not {status}"
                ),
            ));
        }
        Ok(self.store.purge_jobs(tenant_id, status).await?)
    }

    /// Depth by status, oldest pending age, throughput and failures per queue.
    pub async fn stats(&self, tenant_id: &str, now_ms: i64) -> Result<JobStats, JobError> {
        Ok(self.store.job_stats(tenant_id, now_ms).await?)
    }

    /// Creates or replaces the tenant's schedule `name`. Its first tick is the first one after
    /// now; ticks missed while no worker ran are not made up.
    pub async fn put_schedule(
        &self,
        tenant_id: &str,
        name: &str,
        request: &ScheduleRequest,
        now_ms: i64,
    ) -> Result<JobSchedule, JobError> {
        check_schedule_name(name)?;
        let cron =
            Schedule::parse(&request.cron).map_err(|e| JobError::invalid("cron", e.to_string()))?;
        self.check_handler(&request.handler, &request.payload)?;
        let payload = serde_json::to_string(&request.payload)
            .map_err(|e| JobError::invalid("payload", e.to_string()))?;
        if payload.len() > store::MAX_JOB_PAYLOAD_BYTES {
            return Err(JobError::PayloadTooLarge {
                bytes: payload.len(),
                max: store::MAX_JOB_PAYLOAD_BYTES,
            });
        }
        Ok(self
            .store
            .put_job_schedule(
                tenant_id,
                name,
                &cron,
                &request.handler,
                &payload,
                request.priority.unwrap_or_default(),
                request.enabled.unwrap_or(true),
                now_ms,
            )
            .await?)
    }

    /// The tenant's schedules, by name.
    pub async fn schedules(&self, tenant_id: &str) -> Result<Vec<JobSchedule>, JobError> {
        Ok(self.store.job_schedules(tenant_id).await?)
    }

    /// One of the tenant's schedules.
    pub async fn schedule(&self, tenant_id: &str, name: &str) -> Result<JobSchedule, JobError> {
        check_schedule_name(name)?;
        self.schedules(tenant_id)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| JobError::NotFound {
                what: format!("schedule {name}"),
            })
    }

    /// Deletes the tenant's schedule `name` (its jobs already enqueued stay).
    pub async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<(), JobError> {
        check_schedule_name(name)?;
        if self.store.delete_job_schedule(tenant_id, name).await? {
            Ok(())
        } else {
            Err(JobError::NotFound {
                what: format!("schedule {name}"),
            })
        }
    }
}

fn not_found(job_id: &str) -> JobError {
    JobError::NotFound {
        what: format!("job {}", job_id.chars().take(64).collect::<String>()),
    }
}

/// A schedule name: 1 to 100 bytes of ASCII letters, digits, `.`, `_` and `-`.
fn check_schedule_name(name: &str) -> Result<(), JobError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SCHEDULE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JobError::invalid(
            "name",
            format!("must be 1 to {MAX_SCHEDULE_NAME_BYTES} characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}

/// An idempotency key: 1 to 200 visible ASCII characters.
fn check_idempotency_key(key: &str) -> Result<(), JobError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(JobError::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"),
        ))
    }
}

/// A request after its checks, with every default filled in.
struct Checked {
    payload: String,
    priority: Priority,
    run_at_ms: i64,
    expires_at_ms: Option<i64>,
    max_attempts: u32,
    timeout_ms: u64,
}

impl Checked {
    fn as_new_job<'a>(&'a self, request: &'a EnqueueRequest) -> NewJob<'a> {
        NewJob {
            handler: &request.handler,
            payload: &self.payload,
            priority: self.priority,
            run_at_ms: self.run_at_ms,
            expires_at_ms: self.expires_at_ms,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            idempotency_key: request.idempotency_key.as_deref(),
        }
    }
}
