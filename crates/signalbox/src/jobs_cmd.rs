//! `signalbox jobs …`: background jobs from the command line. Enqueue, list, show, cancel,
//! retry, purge, statistics and schedules talk to the store directly through the server's
//! `JobService` (the same rules as `POST /api/v1/jobs`), so they work with or without a running
//! server; a running server's workers pick enqueued jobs up. `work` and `bench` run workers
//! (`jobs_worker.rs`).
//!
//! Output is one JSON object per line, in the HTTP API's shapes. A refused request is one line
//! on stderr naming the option at fault, and a non-zero exit.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use jobs::{JobStatus, Priority};
use serde::Serialize;
use serde_json::{json, Value};
use server::jobs::{EnqueueRequest, JobError, JobService, ListQuery, ScheduleRequest};
use store::Store;

use crate::Common;

/// The largest `--payload @FILE` read; the service then holds a payload to 64 KiB.
const MAX_PAYLOAD_FILE_BYTES: u64 = 1024 * 1024;

#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// Enqueue a built-in job (weber.recalculate, retention.purge, forecast.rebuild,
    /// jobs.canary, jobs.noop). Prints the job with `"created": true`, or the job an earlier
    /// enqueue with the same --idempotency-key made with `"created": false`.
    Enqueue(EnqueueArgs),
    /// The tenant's jobs, newest first, one JSON line each (page with --before LAST_ID).
    List(ListArgs),
    /// One job: status, attempts, timings, result, error.
    Show(JobArgs),
    /// Cancel a job: a waiting one at once, a running one at its worker's next heartbeat.
    Cancel(JobArgs),
    /// Run a dead or failed job again from its first attempt.
    Retry(JobArgs),
    /// Delete the tenant's jobs in one final status (`--status dead` empties the dead letters).
    Purge(PurgeArgs),
    /// Jobs per status in each queue, the oldest waiting job's age, throughput and failure
    /// rate over the last five minutes.
    Stats(TenantArg),
    /// Recurring jobs: one job per tick of a cron expression (UTC).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run job workers (no HTTP) against the configured database until SIGINT/SIGTERM.
    Work(crate::jobs_worker::WorkArgs),
    /// Measure jobs per second through enqueue → claim → complete, and enqueue latency.
    Bench(crate::jobs_worker::BenchArgs),
}

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Create or replace a schedule. Prints it, with its next tick.
    Put(SchedulePutArgs),
    /// The tenant's schedules, by name, one JSON line each.
    List(TenantArg),
    /// Delete a schedule (jobs it already enqueued stay).
    Delete(ScheduleNameArgs),
}

/// Whose jobs.
#[derive(clap::Args, Debug)]
pub struct TenantArg {
    /// The tenant's id (`tn_…`).
    #[arg(long)]
    tenant: String,
}

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    /// The handler's name.
    handler: String,
    #[command(flatten)]
    tenant: TenantArg,
    /// The handler's input: a JSON object, or @FILE to read it from a file [default: {}].
    #[arg(long, value_name = "JSON|@FILE")]
    payload: Option<String>,
    /// The queue: critical, high, normal, low or bulk [default: normal].
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    /// Run no sooner than this many seconds from now.
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        conflicts_with = "at"
    )]
    delay: Option<f64>,
    /// Run no sooner than this time (RFC 3339, e.g. 2026-01-02T03:04:05Z).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Give up if not started by this time (RFC 3339) [default: a day after a later run time;
    /// never for a job to run now].
    #[arg(long, value_name = "RFC3339")]
    expires_at: Option<String>,
    /// Enqueue at most once per key: a repeat prints the first job.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Retries after a failed attempt, 0 to 25 [default: the queue's].
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// Hard time limit of one attempt, in seconds (1 to 86400) [default: the queue's].
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    tenant: TenantArg,
    /// Only this queue.
    #[arg(long, value_parser = parse_priority)]
    queue: Option<Priority>,
    /// Only this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<JobStatus>,
    /// Only this handler.
    #[arg(long)]
    handler: Option<String>,
    /// Only jobs older than this job id (the last id of the previous page).
    #[arg(long, value_name = "JOB_ID")]
    before: Option<String>,
    /// Most jobs to print, 1 to 500 [default: 50].
    #[arg(long)]
    limit: Option<u32>,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job's id (`job_…`).
    id: String,
    #[command(flatten)]
    tenant: TenantArg,
}

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    tenant: TenantArg,
    /// A final status: success, failed, cancelled, expired or dead.
    #[arg(long, value_parser = parse_status)]
    status: JobStatus,
}

#[derive(clap::Args, Debug)]
pub struct SchedulePutArgs {
    /// The schedule's name, unique in the tenant (1 to 100 of A-Z a-z 0-9 . _ -).
    name: String,
    #[command(flatten)]
    tenant: TenantArg,
    /// Cron expression in UTC: five fields, or six with seconds first (quote it).
    #[arg(long)]
    cron: String,
    /// The handler each tick enqueues.
    #[arg(long)]
    handler: String,
    /// Each tick's payload: a JSON object, or @FILE [default: {}].
    #[arg(long, value_name = "JSON|@FILE")]
    payload: Option<String>,
    /// The queue of each tick's job [default: normal].
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    /// Store it disabled: it enqueues nothing until put again without --disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(clap::Args, Debug)]
pub struct ScheduleNameArgs {
    /// The schedule's name.
    name: String,
    #[command(flatten)]
    tenant: TenantArg,
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse()
        .map_err(|e: jobs::ParsePriorityError| e.to_string())
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    s.parse().map_err(|e: jobs::ParseStatusError| e.to_string())
}

pub async fn run(common: Common, cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::Work(args) => return crate::jobs_worker::work(common, args).await,
        JobsCommand::Bench(args) => return crate::jobs_worker::bench(common, args).await,
        _ => {}
    }
    let store = common.open_store().await?;
    let service = crate::jobs_worker::job_service(&common, store.clone())?;
    let result = run_with(&store, &service, cmd).await;
    store.close().await;
    result
}

async fn run_with(store: &Store, service: &JobService, cmd: JobsCommand) -> anyhow::Result<()> {
    let now = server::jobs::now_ms();
    match cmd {
        JobsCommand::Enqueue(args) => {
            let request = enqueue_request(&args)?;
            let tenant = known_tenant(store, &args.tenant).await?;
            let enqueued = service
                .enqueue(tenant, &request, now)
                .await
                .map_err(cli_error)?;
            let mut line = serde_json::to_value(server::JobView::from(enqueued.job))?;
            if let Value::Object(members) = &mut line {
                members.insert("created".to_owned(), enqueued.created.into());
            }
            println!("{line}");
        }
        JobsCommand::List(args) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            let query = ListQuery {
                priority: args.queue,
                status: args.status,
                handler: args.handler,
                before: args.before,
                limit: args.limit,
            };
            for job in service.list(tenant, &query).await.map_err(cli_error)? {
                print_json(&server::JobView::from(job))?;
            }
        }
        JobsCommand::Show(args) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            let job = service.get(tenant, &args.id).await.map_err(cli_error)?;
            print_json(&server::JobView::from(job))?;
        }
        JobsCommand::Cancel(args) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            let job = service
                .cancel(tenant, &args.id, now)
                .await
                .map_err(cli_error)?;
            print_json(&server::JobView::from(job))?;
        }
        JobsCommand::Retry(args) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            let job = service
                .retry(tenant, &args.id, now)
                .await
                .map_err(cli_error)?;
            print_json(&server::JobView::from(job))?;
        }
        JobsCommand::Purge(args) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            let purged = service
                .purge(tenant, args.status)
                .await
                .map_err(cli_error)?;
            println!(
                "{}",
                json!({"status": args.status.as_str(), "purged": purged})
            );
        }
        JobsCommand::Stats(args) => {
            let tenant = known_tenant(store, &args).await?;
            let stats = service.stats(tenant, now).await.map_err(cli_error)?;
            print_json(&server::JobStatsView::new(stats, now))?;
        }
        JobsCommand::Schedule(ScheduleCommand::Put(args)) => {
            let request = ScheduleRequest {
                cron: args.cron.clone(),
                handler: args.handler.clone(),
                payload: payload(args.payload.as_deref())?,
                priority: args.priority,
                enabled: Some(!args.disabled),
            };
            let tenant = known_tenant(store, &args.tenant).await?;
            let schedule = service
                .put_schedule(tenant, &args.name, &request, now)
                .await
                .map_err(cli_error)?;
            print_json(&server::ScheduleView::from(schedule))?;
        }
        JobsCommand::Schedule(ScheduleCommand::List(args)) => {
            let tenant = known_tenant(store, &args).await?;
            for schedule in service.schedules(tenant).await.map_err(cli_error)? {
                print_json(&server::ScheduleView::from(schedule))?;
            }
        }
        JobsCommand::Schedule(ScheduleCommand::Delete(args)) => {
            let tenant = known_tenant(store, &args.tenant).await?;
            service
                .delete_schedule(tenant, &args.name)
                .await
                .map_err(cli_error)?;
            println!("{}", json!({"deleted": args.name}));
        }
        JobsCommand::Work(_) | JobsCommand::Bench(_) => {}
    }
    Ok(())
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The tenant's id, once the store knows it (the store answers an unknown tenant with no jobs,
/// which would look like an empty queue).
async fn known_tenant<'a>(store: &Store, arg: &'a TenantArg) -> anyhow::Result<&'a str> {
    if store.tenant(&arg.tenant).await?.is_none() {
        bail!("--tenant: no tenant '{}'", arg.tenant.escape_debug());
    }
    Ok(&arg.tenant)
}

/// The service's request from the options; times and durations become milliseconds.
fn enqueue_request(args: &EnqueueArgs) -> anyhow::Result<EnqueueRequest> {
    let delay_ms = args
        .delay
        .map(|secs| seconds_to_ms("--delay", secs))
        .transpose()?;
    let timeout_ms = match args.timeout {
        Some(secs) if secs < 0.0 => bail!("--timeout: must not be negative (got {secs})"),
        Some(secs) => Some(seconds_to_ms("--timeout", secs)?.unsigned_abs()),
        None => None,
    };
    Ok(EnqueueRequest {
        handler: args.handler.clone(),
        payload: payload(args.payload.as_deref())?,
        priority: args.priority,
        delay_ms,
        run_at_ms: args
            .at
            .as_deref()
            .map(|t| rfc3339_ms("--at", t))
            .transpose()?,
        expires_at_ms: args
            .expires_at
            .as_deref()
            .map(|t| rfc3339_ms("--expires-at", t))
            .transpose()?,
        max_retries: args.max_retries,
        timeout_ms,
        idempotency_key: args.idempotency_key.clone(),
    })
}

/// Seconds (fractions allowed) as whole milliseconds; the sign is kept, so the service names a
/// negative delay.
fn seconds_to_ms(option: &str, secs: f64) -> anyhow::Result<i64> {
    let ms = (secs * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 1e15 {
        bail!("{option}: {secs} seconds is out of range");
    }
    Ok(ms as i64)
}

fn rfc3339_ms(option: &str, text: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow::anyhow!(
                "{option}: '{}' is not an RFC 3339 time: {e}",
                text.escape_debug()
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| anyhow::anyhow!("{option}: '{}' is out of range", text.escape_debug()))
}

/// `--payload`: JSON text, or `@FILE`; absent is `{}`. Whether it is an object the handler
/// accepts is the service's question.
fn payload(arg: Option<&str>) -> anyhow::Result<Value> {
    let Some(arg) = arg else {
        return Ok(json!({}));
    };
    let (text, source) = match arg.strip_prefix('@') {
        Some(path) => (read_payload_file(Path::new(path))?, format!(" ({path})")),
        None => (arg.to_owned(), String::new()),
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--payload: not JSON{source}: {e}"))
}

fn read_payload_file(path: &Path) -> anyhow::Result<String> {
    let name = path.display();
    let file =
        std::fs::File::open(path).with_context(|| format!("--payload: cannot open {name}"))?;
    let mut text = String::new();
    file.take(MAX_PAYLOAD_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("--payload: cannot read {name} as UTF-8 text"))?;
    if text.len() as u64 > MAX_PAYLOAD_FILE_BYTES {
        bail!("--payload: {name} is larger than {MAX_PAYLOAD_FILE_BYTES} bytes");
    }
    Ok(text)
}

/// The service's refusal as one line naming the option at fault (`--delay: must not be
/// negative`), or the field inside `--payload`.
fn cli_error(e: JobError) -> anyhow::Error {
    let option = |field: &str| -> String {
        match field {
            "handler" => "HANDLER".to_owned(),
            "delay_ms" => "--delay".to_owned(),
            "run_at_ms" => "--at".to_owned(),
            "expires_at_ms" => "--expires-at".to_owned(),
            "max_retries" => "--max-retries".to_owned(),
            "timeout_ms" => "--timeout".to_owned(),
            "idempotency_key" => "--idempotency-key".to_owned(),
            "cron" => "--cron".to_owned(),
            "name" => "NAME".to_owned(),
            "limit" => "--limit".to_owned(),
            "before" => "--before".to_owned(),
            "status" => "--status".to_owned(),
            "payload" => "--payload".to_owned(),
            f => match f.strip_prefix("payload.") {
                Some(inner) => format!("--payload: {inner}"),
                None => f.to_owned(),
            },
        }
    };
    match &e {
        JobError::Invalid { field, message } => {
            anyhow::anyhow!("{}: {message}", option(field))
        }
        JobError::UnknownHandler { .. } | JobError::PayloadTooLarge { .. } => {
            let text = e.to_string();
            let field = e.field().unwrap_or_default();
            let message = text
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&text)
                .to_owned();
            anyhow::anyhow!("{}: {message}", option(field))
        }
        _ => anyhow::anyhow!("{e}"),
    }
}
