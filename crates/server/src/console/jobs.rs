//! Jobs: the tenant's queues, its recent jobs, the dead-letter queue with each job's error, and
//! a retry button for a dead or failed job. Every part needs the admin scope, as the jobs API
//! does (a job's payload and error can carry whatever its handler works on), and goes through
//! [`crate::jobs::JobService`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jobs::{JobStatus, Priority};
use serde::Deserialize;
use store::{JobRecord, Scope};

use super::{page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::jobs::ListQuery;
use crate::problem::ApiError;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "jobs",
    title: "Jobs",
    path: "/console/jobs",
    needs: Scope::Admin,
};

/// Rows in the recent-jobs and dead-letter tables.
const SHOWN: u32 = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/jobs", get(jobs_page))
        .route("/console/jobs/{job_id}/retry", post(retry))
}

/// The recent-jobs filter (a GET form).
#[derive(Deserialize, Default)]
struct Filter {
    status: Option<String>,
    queue: Option<String>,
}

struct QueueRow {
    name: &'static str,
    counts: Vec<u64>,
    oldest_pending: String,
    finished_5m: u64,
    failed_5m: u64,
}

struct JobRow {
    id: String,
    handler: String,
    queue: &'static str,
    status: &'static str,
    attempts: String,
    created_at: String,
    started_at: String,
    finished_at: String,
    run_at: String,
    last_error: String,
    retryable: bool,
}

impl From<JobRecord> for JobRow {
    fn from(j: JobRecord) -> JobRow {
        let at = |ms: Option<i64>| ms.map(crate::rfc3339_ms).unwrap_or_default();
        JobRow {
            retryable: matches!(j.status, JobStatus::Dead | JobStatus::Failed),
            queue: j.priority.as_str(),
            status: j.status.as_str(),
            attempts: format!("{} of {}", j.attempts, j.max_attempts),
            created_at: crate::rfc3339_ms(j.created_at_ms),
            started_at: at(j.started_at_ms),
            finished_at: at(j.finished_at_ms),
            run_at: crate::rfc3339_ms(j.run_at_ms),
            last_error: j.last_error.unwrap_or_default(),
            id: j.id,
            handler: j.handler,
        }
    }
}

/// A choice of a filter's select.
struct Choice {
    value: &'static str,
    selected: bool,
}

#[derive(askama::Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    statuses: Vec<&'static str>,
    queues: Vec<QueueRow>,
    recent: Vec<JobRow>,
    dead: Vec<JobRow>,
    status_choices: Vec<Choice>,
    queue_choices: Vec<Choice>,
}

async fn jobs_page(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let tenant = session.tenant_id();
    let status = parse_choice::<JobStatus>("status", filter.status.as_deref())?;
    let priority = parse_choice::<Priority>("queue", filter.queue.as_deref())?;
    let service = state.jobs();
    let now = crate::jobs::now_ms();
    let stats = service.stats(tenant, now).await.map_err(ApiError::from)?;
    let recent = service
        .list(
            tenant,
            &ListQuery {
                priority,
                status,
                limit: Some(SHOWN),
                ..ListQuery::default()
            },
        )
        .await
        .map_err(ApiError::from)?;
    let dead = service
        .list(
            tenant,
            &ListQuery {
                status: Some(JobStatus::Dead),
                limit: Some(SHOWN),
                ..ListQuery::default()
            },
        )
        .await
        .map_err(ApiError::from)?;
    page(
        StatusCode::OK,
        &JobsPage {
            chrome: session.chrome(SECTION.id, "Jobs"),
            statuses: JobStatus::ALL.iter().map(|s| s.as_str()).collect(),
            queues: stats
                .queues
                .into_iter()
                .map(|q| QueueRow {
                    name: q.priority.as_str(),
                    counts: q.by_status.iter().map(|(_, n)| *n).collect(),
                    oldest_pending: q
                        .oldest_pending_age_ms
                        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                        .unwrap_or_default(),
                    finished_5m: q.finished_last_5m,
                    failed_5m: q.failed_last_5m,
                })
                .collect(),
            recent: recent.into_iter().map(JobRow::from).collect(),
            dead: dead.into_iter().map(JobRow::from).collect(),
            status_choices: JobStatus::ALL
                .iter()
                .map(|s| Choice {
                    value: s.as_str(),
                    selected: status == Some(*s),
                })
                .collect(),
            queue_choices: Priority::ALL
                .iter()
                .map(|p| Choice {
                    value: p.as_str(),
                    selected: priority == Some(*p),
                })
                .collect(),
        },
    )
}

/// An optional select's value: empty means no filter; anything else must parse.
fn parse_choice<T: std::str::FromStr>(
    field: &str,
    value: Option<&str>,
) -> Result<Option<T>, ConsoleError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ConsoleError::Invalid(format!("field `{field}`: no such {field}"))),
    }
}

/// `POST /console/jobs/{job_id}/retry`: a dead or failed job runs again.
async fn retry(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    Submitted { session, .. }: Submitted<serde::de::IgnoredAny>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    state
        .jobs()
        .retry(session.tenant_id(), &job_id, crate::jobs::now_ms())
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/console/jobs").into_response())
}
