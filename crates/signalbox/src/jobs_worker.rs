//! Working background jobs: the settings `serve` and `signalbox jobs work` share, the worker
//! process (`jobs work`) and the throughput benchmark (`jobs bench`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use jobs::Priority;
use server::jobs::{
    EnqueueRequest, ForecastRebuildSettings, JobHandlerSettings, JobRegistry, JobService,
    JobSettings,
};
use server::{AppState, ServerConfig};

use crate::config::{FileConfig, QueueOverride};
use crate::Common;

/// The worker runtime's settings, taken by `serve` and `jobs work` alike.
#[derive(clap::Args, Debug, Default)]
pub struct JobArgs {
    /// Per-queue overrides of seed 002's settings, as QUEUE.FIELD=VALUE (queue `critical`,
    /// `high`, `normal`, `low`, `bulk` or `*` for all; fields `max_workers`, `rate_per_minute`
    /// (0: unlimited), `timeout`, `max_retries`, `retry_delay`, `prefetch`), e.g.
    /// `bulk.max_workers=2,normal.retry_delay=30s`; repeat the flag or separate with commas
    /// [default: the `[jobs.queues.*]` config sections, then seed 002's table].
    #[arg(
        long = "jobs-queue",
        env = "SIGNALBOX_JOBS_QUEUES",
        value_delimiter = ',',
        value_name = "QUEUE.FIELD=VALUE"
    )]
    pub jobs_queues: Vec<String>,
    /// How long a claimed job is held without a heartbeat (heartbeats go every third of it);
    /// a worker silent this long is presumed dead and its jobs run again [default: 30s].
    #[arg(long, env = "SIGNALBOX_JOBS_LEASE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jobs_lease: Option<Duration>,
    /// How often an idle queue asks the database for work without a wake-up [default: 1s].
    #[arg(long, env = "SIGNALBOX_JOBS_POLL_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jobs_poll_interval: Option<Duration>,
    /// On SIGINT/SIGTERM, how long running jobs may take to finish before they are given back
    /// to their queue [default: 30s].
    #[arg(long, env = "SIGNALBOX_JOBS_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jobs_shutdown_grace: Option<Duration>,
    /// Finished jobs (success, failed, cancelled, expired, dead) are deleted this long after
    /// they finished [default: 7days].
    #[arg(long, env = "SIGNALBOX_JOBS_KEEP_FINISHED", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jobs_keep_finished: Option<Duration>,
    /// The only directory `forecast.rebuild` jobs read station data from
    /// [default: DATA_DIR/forecast-data].
    #[arg(long, env = "SIGNALBOX_JOBS_FORECAST_DATA_DIR", value_name = "DIR")]
    pub jobs_forecast_data_dir: Option<PathBuf>,
}

/// `signalbox jobs work`.
#[derive(clap::Args, Debug)]
pub struct WorkArgs {
    #[command(flatten)]
    pub jobs: JobArgs,
    /// The forecast model directory `forecast.rebuild` writes [default: the `[forecast]`
    /// index, else DATA_DIR/forecast].
    #[arg(long, env = "SIGNALBOX_FORECAST_INDEX", value_name = "DIR")]
    pub forecast_index: Option<PathBuf>,
    /// The keys to open and seal feedback texts with: the same as `serve`'s.
    #[command(flatten)]
    pub custody: crate::custody_cmd::CustodyArgs,
}

/// Which database `jobs bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh schema on DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
    /// dropped afterwards.
    Postgres,
}

impl BenchBackend {
    fn as_str(self) -> &'static str {
        match self {
            BenchBackend::Sqlite => "sqlite",
            BenchBackend::Postgres => "postgres",
        }
    }
}

/// `signalbox jobs bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The database to measure.
    #[arg(long, value_enum)]
    pub backend: BenchBackend,
    /// No-op jobs to enqueue and run.
    #[arg(long = "jobs", default_value_t = 20_000, value_name = "N")]
    pub jobs: u32,
    /// Tasks enqueuing at once (each job is one enqueue call).
    #[arg(long, default_value_t = 4, value_name = "C")]
    pub concurrency: u32,
    /// Jobs the worker runs at once (the normal queue's max_workers).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub workers: u32,
    /// Jobs claimed per round trip (the normal queue's prefetch).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub prefetch: u32,
}

/// The job settings from flags, env, the `[jobs]` section and the defaults.
/// `forecast_model_dir` is where `forecast.rebuild` writes.
pub fn job_settings(
    args: &JobArgs,
    file: &FileConfig,
    data_dir: &Path,
    forecast_model_dir: PathBuf,
) -> anyhow::Result<JobSettings> {
    let section = &file.jobs;
    let defaults = JobSettings::default();
    let mut settings = JobSettings {
        lease: args.jobs_lease.or(section.lease).unwrap_or(defaults.lease),
        poll_interval: args
            .jobs_poll_interval
            .or(section.poll_interval)
            .unwrap_or(defaults.poll_interval),
        shutdown_grace: args
            .jobs_shutdown_grace
            .or(section.shutdown_grace)
            .unwrap_or(defaults.shutdown_grace),
        keep_finished: args
            .jobs_keep_finished
            .or(section.keep_finished)
            .unwrap_or(defaults.keep_finished),
        handlers: JobHandlerSettings {
            forecast: Some(ForecastRebuildSettings {
                data_dir: args
                    .jobs_forecast_data_dir
                    .clone()
                    .or_else(|| section.forecast_data_dir.clone())
                    .unwrap_or_else(|| data_dir.join("forecast-data")),
                model_dir: forecast_model_dir,
                serving: server::forecasts::ForecastSettings::default(),
            }),
        },
        ..defaults
    };
    if settings.lease < Duration::from_millis(100) {
        bail!("jobs lease: must be at least 100ms");
    }
    if settings.poll_interval.is_zero() {
        bail!("jobs poll interval: must be more than zero");
    }
    if settings.keep_finished < Duration::from_secs(60) {
        bail!("jobs keep finished: must be at least 1m");
    }
    for (queue, o) in &section.queues {
        let targets =
            queues_named(queue).with_context(|| format!("config file: jobs.queues.{queue}"))?;
        for p in targets {
            apply_override(&mut settings, p, o)
                .with_context(|| format!("config file: jobs.queues.{queue}"))?;
        }
    }
    for spec in &args.jobs_queues {
        let (queue, o) = parse_queue_spec(spec).with_context(|| format!("jobs queue: '{spec}'"))?;
        for p in queues_named(&queue).with_context(|| format!("jobs queue: '{spec}'"))? {
            apply_override(&mut settings, p, &o)
                .with_context(|| format!("jobs queue: '{spec}'"))?;
        }
    }
    Ok(settings)
}

fn queues_named(name: &str) -> anyhow::Result<Vec<Priority>> {
    if name == "*" {
        return Ok(Priority::ALL.to_vec());
    }
    name.parse::<Priority>()
        .map(|p| vec![p])
        .map_err(|e| anyhow!("{e}"))
}

/// `normal.max_workers=10` as a queue name and an override.
fn parse_queue_spec(spec: &str) -> anyhow::Result<(String, QueueOverride)> {
    let (key, value) = spec
        .trim()
        .split_once('=')
        .context("expected QUEUE.FIELD=VALUE")?;
    let (queue, field) = key.split_once('.').context("expected QUEUE.FIELD=VALUE")?;
    let value = value.trim();
    let number = |name: &str| -> anyhow::Result<u32> {
        value
            .parse()
            .map_err(|_| anyhow!("{name}: '{value}' is not a whole number"))
    };
    let duration = |name: &str| -> anyhow::Result<Duration> {
        humantime::parse_duration(value).map_err(|e| anyhow!("{name}: {e}"))
    };
    let mut o = QueueOverride::default();
    match field.trim() {
        "max_workers" => o.max_workers = Some(number("max_workers")?),
        "rate_per_minute" => o.rate_per_minute = Some(number("rate_per_minute")?),
        "timeout" => o.timeout = Some(duration("timeout")?),
        "max_retries" => o.max_retries = Some(number("max_retries")?),
        "retry_delay" => o.retry_delay = Some(duration("retry_delay")?),
        "prefetch" => o.prefetch = Some(number("prefetch")?),
        other => bail!(
            "unknown field '{other}': expected max_workers, rate_per_minute, timeout, max_retries, retry_delay or prefetch"
        ),
    }
    Ok((queue.trim().to_owned(), o))
}

fn apply_override(
    settings: &mut JobSettings,
    p: Priority,
    o: &QueueOverride,
) -> anyhow::Result<()> {
    let q = settings.queue_mut(p);
    if let Some(n) = o.max_workers {
        if n > 10_000 {
            bail!("max_workers: must be at most 10000");
        }
        q.max_workers = n;
    }
    if let Some(n) = o.rate_per_minute {
        q.rate_per_minute = n;
    }
    if let Some(t) = o.timeout {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        if !(server::jobs::MIN_TIMEOUT_MS..=server::jobs::MAX_TIMEOUT_MS).contains(&ms) {
            bail!("timeout: must be 1s to 24h");
        }
        q.timeout_ms = ms;
    }
    if let Some(n) = o.max_retries {
        if n > server::jobs::MAX_RETRIES {
            bail!("max_retries: must be at most {}", server::jobs::MAX_RETRIES);
        }
        q.max_retries = n;
    }
    if let Some(d) = o.retry_delay {
        if d > Duration::from_secs(3600) {
            bail!("retry_delay: must be at most 1h");
        }
        q.retry_delay_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    }
    if let Some(n) = o.prefetch {
        if !(1..=store::MAX_JOB_CLAIM).contains(&n) {
            bail!("prefetch: must be 1 to {}", store::MAX_JOB_CLAIM);
        }
        q.prefetch = n;
    }
    Ok(())
}

/// Where `forecast.rebuild` writes when nothing else says: the `[forecast]` index, else
/// DATA_DIR/forecast (the demo model's directory).
pub fn default_forecast_model_dir(common: &Common) -> PathBuf {
    common
        .file
        .forecast
        .index
        .clone()
        .unwrap_or_else(|| common.data_dir.join("forecast"))
}

/// The job use cases for a CLI command (`jobs enqueue|list|…`): the built-in handlers and the
/// configured queues.
pub fn job_service(common: &Common, store: store::Store) -> anyhow::Result<JobService> {
    let settings = job_settings(
        &JobArgs::default(),
        &common.file,
        &common.data_dir,
        default_forecast_model_dir(common),
    )?;
    let registry = JobRegistry::builtin(&settings.handlers);
    // The CLI works on the database directly: it is the operator.
    Ok(JobService::new(store, registry, settings).for_operator())
}

/// The state a process without HTTP works jobs with. The profile pipeline needs an event log
/// for ingest, which a worker never does, so it gets a scratch one that nothing reads. Custody
/// gets the same keys as `serve`, so workers open what the server sealed.
pub(crate) async fn worker_state(
    store: store::Store,
    settings: JobSettings,
    custody: server::CustodySettings,
) -> anyhow::Result<(AppState, tempfile::TempDir)> {
    let scratch = tempfile::tempdir().context("jobs: cannot create a scratch directory")?;
    let events = stream::EventLog::open_file(scratch.path(), stream::FileLogOptions::default())
        .await
        .context("jobs: cannot open a scratch event log")?;
    let metrics = Arc::new(telemetry::Metrics::new(telemetry::MetricsConfig::default()));
    let config = ServerConfig {
        jobs: settings,
        custody,
        ..ServerConfig::default()
    };
    let state = AppState::new(store, metrics, config, events)?;
    Ok((state, scratch))
}

/// `serve`'s custody keys for a worker process. Several processes starting at once on a new
/// data directory race to generate the key files (one creates them, the others find them
/// half-written or fail to create them): a failure while the files appear is retried for up to
/// 5 s before it counts.
async fn worker_custody(
    args: &crate::custody_cmd::CustodyArgs,
    common: &Common,
    backend: store::Backend,
) -> anyhow::Result<server::CustodySettings> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match crate::custody_cmd::serve_settings(args, common, backend) {
            Ok(settings) => return Ok(settings),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "custody keys not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `signalbox jobs work`: works every queue until SIGINT/SIGTERM, then stops claiming, lets
/// running jobs finish (up to the shutdown grace) and gives the rest back.
pub async fn work(common: Common, args: WorkArgs) -> anyhow::Result<()> {
    let model_dir = args
        .forecast_index
        .clone()
        .unwrap_or_else(|| default_forecast_model_dir(&common));
    let settings = job_settings(&args.jobs, &common.file, &common.data_dir, model_dir)?;
    let store = common.open_store().await?;
    let custody = worker_custody(&args.custody, &common, store.backend()).await?;
    let (state, _scratch) = worker_state(store.clone(), settings, custody).await?;
    server::run_job_workers(state, crate::serve::shutdown_signal()).await;
    store.close().await;
    Ok(())
}

/// The local PostgreSQL the tests use, when DATABASE_URL is not set.
const DEFAULT_BENCH_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `signalbox jobs bench`: enqueues `--jobs` no-op jobs from `--concurrency` tasks into a fresh
/// database while this process works them, and prints one JSON line: jobs per second from the
/// first enqueue to the last completion, and enqueue latency percentiles.
pub async fn bench(common: Common, args: BenchArgs) -> anyhow::Result<()> {
    if args.jobs == 0 {
        bail!("--jobs: must be at least 1");
    }
    if args.concurrency == 0 || args.concurrency > 1_000 {
        bail!("--concurrency: must be 1 to 1000");
    }
    if args.workers == 0 || args.workers > 10_000 {
        bail!("--workers: must be 1 to 10000");
    }
    if !(1..=store::MAX_JOB_CLAIM).contains(&args.prefetch) {
        bail!("--prefetch: must be 1 to {}", store::MAX_JOB_CLAIM);
    }
    let scratch = tempfile::tempdir().context("bench: cannot create a temporary directory")?;
    let mut options = match args.backend {
        BenchBackend::Sqlite => store::StoreOptions::sqlite_in(scratch.path()),
        BenchBackend::Postgres => {
            let url = match store::Backend::from_url(&common.store.url) {
                Ok(store::Backend::Postgres) => common.store.url.clone(),
                _ => DEFAULT_BENCH_POSTGRES.to_owned(),
            };
            let mut o = store::StoreOptions::from_url(url);
            o.schema = Some(format!("sbxbench_{}", uuid::Uuid::new_v4().simple()));
            o
        }
    };
    options.max_connections = (args.concurrency + 8).max(20);
    let store = store::Store::connect(&options)
        .await
        .map_err(|e| anyhow!("database: {e}"))?;
    let result = run_bench(&store, &args).await;
    store.close().await;
    if let Some(schema) = &options.schema {
        drop_schema(&options.url, schema).await;
    }
    let report = result?;
    println!("{report}");
    Ok(())
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    match sqlx::PgConnection::connect(url).await {
        Ok(mut conn) => {
            if let Err(e) = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut conn)
                .await
            {
                tracing::warn!(schema, error = %e, "bench: cannot drop the schema");
            }
        }
        Err(e) => tracing::warn!(schema, error = %e, "bench: cannot drop the schema"),
    }
}

async fn run_bench(store: &store::Store, args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let tenant = store
        .create_tenant("bench", store::Tier::Enterprise)
        .await?;
    let mut settings = JobSettings::default();
    {
        let q = settings.queue_mut(Priority::Normal);
        q.max_workers = args.workers;
        q.prefetch = args.prefetch;
        q.rate_per_minute = 0;
    }
    // A bench of no-op jobs: throwaway custody keys, nothing is sealed.
    let (state, _scratch) =
        worker_state(store.clone(), settings, server::CustodySettings::default()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(server::run_job_workers(state.clone(), async {
        let _ = stopped.await;
    }));

    let started = Instant::now();
    let started_ms = server::jobs::now_ms();
    let per_task = args.jobs / args.concurrency;
    let extra = args.jobs % args.concurrency;
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let n = per_task + u32::from(t < extra);
        let (service, tenant_id) = (state.jobs().clone(), tenant.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
            let request = EnqueueRequest {
                handler: server::jobs::NOOP.to_owned(),
                ..EnqueueRequest::default()
            };
            for _ in 0..n {
                let at = Instant::now();
                service
                    .enqueue(&tenant_id, &request, server::jobs::now_ms())
                    .await?;
                latencies.record(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX))?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    for task in tasks {
        latencies.add(task.await.context("bench: an enqueue task failed")??)?;
    }
    let enqueued_in = started.elapsed();

    // Wait until every job succeeded (or the run is clearly stuck).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = store.job_stats(&tenant.id, server::jobs::now_ms()).await?;
        let done: u64 = stats
            .queues
            .iter()
            .flat_map(|q| q.by_status.iter())
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum();
        if done >= u64::from(args.jobs) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "bench: only {done} of {} jobs finished within 10 minutes",
                args.jobs
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last completion, exactly: the newest finished_at_ms over every job.
    let mut last_finish = started_ms;
    let mut succeeded = 0u64;
    let mut before: Option<String> = None;
    loop {
        let page = store
            .list_jobs(
                &tenant.id,
                &store::JobFilter {
                    priority: None,
                    status: None,
                    handler: None,
                    before_id: before.as_deref(),
                    limit: store::MAX_JOB_PAGE,
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for job in &page {
            if job.status == jobs::JobStatus::Success {
                succeeded += 1;
            }
            last_finish = last_finish.max(job.finished_at_ms.unwrap_or(started_ms));
        }
    }
    let _ = stop.send(());
    let _ = workers.await;
    if succeeded != u64::from(args.jobs) {
        bail!("bench: {succeeded} of {} jobs succeeded", args.jobs);
    }
    let elapsed_s = (last_finish - started_ms).max(1) as f64 / 1000.0;
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    Ok(serde_json::json!({
        "backend": args.backend.as_str(),
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "prefetch": args.prefetch,
        "jobs_per_second": (f64::from(args.jobs) / elapsed_s).round(),
        "elapsed_s": elapsed_s,
        "enqueue_seconds": enqueued_in.as_secs_f64(),
        "enqueue_p50_ms": ms(0.50),
        "enqueue_p99_ms": ms(0.99),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(file: &str, specs: &[&str]) -> anyhow::Result<JobSettings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let file = FileConfig::load(Some(&path))?;
        let args = JobArgs {
            jobs_queues: specs.iter().map(|s| s.to_string()).collect(),
            ..JobArgs::default()
        };
        job_settings(&args, &file, dir.path(), dir.path().join("forecast"))
    }

    #[test]
    fn queue_overrides_apply_over_the_seed_table_file_first_then_flags() {
        let s = settings(
            "[jobs]\nlease = \"5s\"\n[jobs.queues.bulk]\nmax_workers = 2\nretry_delay = \"1s\"\n",
            &[
                "bulk.max_workers=3",
                "*.rate_per_minute=0",
                "normal.timeout=90s",
            ],
        )
        .unwrap();
        let bulk = s.queue(Priority::Bulk);
        assert_eq!(
            (bulk.max_workers, bulk.retry_delay_ms, bulk.rate_per_minute),
            (3, 1_000, 0)
        );
        assert_eq!(s.queue(Priority::Normal).timeout_ms, 90_000);
        assert_eq!(s.queue(Priority::Critical).rate_per_minute, 0);
        assert_eq!(s.queue(Priority::Critical).max_retries, 5);
        assert_eq!(s.lease, Duration::from_secs(5));
    }

    #[test]
    fn bad_overrides_name_what_is_wrong() {
        let e = |file: &str, specs: &[&str]| format!("{:#}", settings(file, specs).unwrap_err());
        assert!(e("", &["urgent.max_workers=1"]).contains("unknown priority 'urgent'"));
        assert!(e("", &["normal.speed=1"]).contains("unknown field 'speed'"));
        assert!(e("", &["normal.max_retries=99"]).contains("max_retries: must be at most 25"));
        assert!(e("", &["normal.timeout=soon"]).contains("timeout"));
        assert!(e("", &["normal"]).contains("QUEUE.FIELD=VALUE"));
        assert!(e("[jobs.queues.urgent]\nmax_workers = 1\n", &[]).contains("jobs.queues.urgent"));
        assert!(e("[jobs]\nlease = \"1ms\"\n", &[]).contains("jobs lease"));
    }
}
