//! The worker runtime: claims jobs from the store, runs their handlers, records outcomes.
//!
//! One process (`serve`, or `signalbox jobs work`) runs [`run_job_workers`] once:
//!
//! - a **claim loop per queue**: up to the queue's `max_workers` jobs at once (a semaphore),
//!   at most `prefetch` claimed per round trip, starts paced at `rate_per_minute` (a
//!   [`limits::Gcra`] with a burst of one, as Celery's rate limit spaces tasks evenly); when the
//!   queue is empty it sleeps until a wake-up (PostgreSQL `NOTIFY`, or an in-process signal
//!   on SQLite), the poll interval, or the next delayed job's run time, whichever is first;
//! - a **task per job**: the handler runs on its own task, so a panic is caught as a
//!   `JoinError` (the attempt fails with "handler panicked: …" and the worker lives on); the
//!   soft time limit asks it to stop ([`super::JobContext::stop_reason`]), the hard limit
//!   aborts it ("timed out after …"); a cancellation seen at a heartbeat asks it to stop and
//!   aborts it after a short grace;
//! - **heartbeats** every lease/3 extend the lease of every job held, and bring back the ids
//!   someone asked to cancel;
//! - a **finisher** batches outcomes into one `finish_jobs` transaction (a few milliseconds or
//!   a few hundred outcomes, whichever first); an outcome is fenced by (job, worker,
//!   attempt), so a job another worker took over after this one lost its lease is not touched;
//! - **maintenance**, cheap and idempotent, so any number of replicas may run it: give back jobs
//!   whose worker died (`rescue_lost_jobs`), expire jobs past their expiry, enqueue the due
//!   tick of every schedule (one job per tick across replicas), delete finished jobs past the
//!   retention, and sample queue depths into the metrics.
//!
//! Shutdown: claiming stops at once; jobs running get up to the grace period to finish; the
//! rest are aborted and given back (`release_jobs`: pending again, the attempt not counted).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jobs::{FailureOutcome, Priority, QueueSettings, RetryPolicy, RETRY_BACKOFF_MAX_MS};
use limits::Algorithm;
use rand::Rng;
use store::{AttemptOutcome, Finish, JobRecord};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::handler::{HandlerError, JobContext, JobOutput, StopReason};
use super::handlers::JobHandlerSettings;
use super::now_ms;
use crate::state::AppState;

/// How jobs are worked: the queues' settings (seed 002's table unless overridden) and the
/// runtime's timings.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Per queue, by [`Priority::rank`].
    pub queues: [QueueSettings; 5],
    /// How long a claimed job is held without a heartbeat; a worker silent for longer is
    /// presumed dead and its jobs go back to the queue.
    pub lease: Duration,
    /// How often an idle queue asks the store for work even without a wake-up.
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before they are given back.
    pub shutdown_grace: Duration,
    /// Finished jobs (success, failed, cancelled, expired, dead) are deleted this long after
    /// they finished.
    pub keep_finished: Duration,
    /// How often maintenance runs (lost leases, expiry, schedules).
    pub maintenance_interval: Duration,
    /// How long a cancelled job's handler may take to stop before it is aborted.
    pub cancel_grace: Duration,
    /// Most outcomes recorded in one transaction.
    pub finish_batch: usize,
    /// How long the finisher waits for more outcomes before recording a batch.
    pub finish_linger: Duration,
    /// What the built-in handlers need (forecast directories).
    pub handlers: JobHandlerSettings,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            queues: Priority::ALL.map(Priority::settings),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            keep_finished: Duration::from_secs(7 * 24 * 3600),
            maintenance_interval: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(5),
            finish_batch: 256,
            finish_linger: Duration::from_millis(2),
            handlers: JobHandlerSettings::default(),
        }
    }
}

impl JobSettings {
    /// The settings of `priority`'s queue.
    pub fn queue(&self, priority: Priority) -> QueueSettings {
        self.queues[usize::from(priority.rank())]
    }

    /// Changes `priority`'s queue settings.
    pub fn queue_mut(&mut self, priority: Priority) -> &mut QueueSettings {
        &mut self.queues[usize::from(priority.rank())]
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// This process's worker id: `host/pid/random`, unique per run, so a restarted process never
/// mistakes its predecessor's leases for its own.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '/')
        .take(64)
        .collect();
    let tag: u32 = rand::thread_rng().gen();
    format!("{host}/{}/{tag:08x}", std::process::id())
}

/// A job this process holds.
struct Running {
    attempt: u32,
    /// What the handler is told (cancellation, soft timeout).
    control: watch::Sender<Option<StopReason>>,
    /// The job's supervising task and its handler's task, aborted at the end of a shutdown.
    supervisor: Option<AbortHandle>,
    handler: Option<AbortHandle>,
}

/// An attempt's end, on its way to the store.
struct Finished {
    job_id: String,
    attempt: u32,
    outcome: AttemptOutcome,
    priority: Priority,
    handler: &'static str,
    took: Duration,
}

/// The pending jobs of every queue and tenant at the last depth sample, for the autoscaling
/// signal (`signalbox_desired_replicas`); `u64::MAX` until the first sample and after shutdown.
struct PendingTotal(std::sync::atomic::AtomicU64);

impl PendingTotal {
    const UNKNOWN: u64 = u64::MAX;

    fn get(&self) -> Option<u64> {
        let n = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (n != Self::UNKNOWN).then_some(n)
    }

    fn set(&self, n: u64) {
        self.0.store(
            n.min(Self::UNKNOWN - 1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

struct Shared {
    state: AppState,
    pending: Arc<PendingTotal>,
    settings: Arc<JobSettings>,
    worker_id: Arc<str>,
    running: Mutex<HashMap<String, Running>>,
    finished: mpsc::UnboundedSender<Finished>,
}

impl Shared {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Works every queue of the store `state` uses, with the handlers and settings of
/// `state.jobs()`, until `shutdown` resolves; then stops claiming, lets running jobs finish
/// for up to the shutdown grace, gives the rest back and returns.
pub async fn run_job_workers(state: AppState, shutdown: impl Future<Output = ()> + Send) {
    let settings = Arc::new(state.jobs().settings().clone());
    let worker_id: Arc<str> = Arc::from(worker_id());
    let (finished_tx, finished_rx) = mpsc::unbounded_channel();
    let pending = Arc::new(PendingTotal(std::sync::atomic::AtomicU64::new(
        PendingTotal::UNKNOWN,
    )));
    {
        let pending = pending.clone();
        state
            .metrics()
            .scaling()
            .watch_pending_jobs(move || pending.get());
    }
    let shared = Arc::new(Shared {
        pending,
        state,
        settings: settings.clone(),
        worker_id: worker_id.clone(),
        running: Mutex::new(HashMap::new()),
        finished: finished_tx,
    });
    tracing::info!(worker_id = %worker_id, handlers = ?shared.state.jobs().registry().names(), "job workers started");
    shared
        .state
        .metrics()
        .jobs()
        .init_queues(&Priority::ALL.map(Priority::as_str));
    let (stop_tx, stop_rx) = watch::channel(false);
    let finisher = tokio::spawn(run_finisher(shared.clone(), finished_rx));
    let heartbeats = tokio::spawn(run_heartbeats(shared.clone()));
    let maintenance = tokio::spawn(run_maintenance(shared.clone(), stop_rx.clone()));
    let queues: Vec<_> = Priority::ALL
        .into_iter()
        .map(|p| tokio::spawn(run_queue(shared.clone(), p, stop_rx.clone())))
        .collect();

    shutdown.await;
    let _ = stop_tx.send(true);
    tracing::info!(
        running = shared.running().len(),
        grace_ms = u64::try_from(settings.shutdown_grace.as_millis()).unwrap_or(u64::MAX),
        "job workers stopping: no new claims, waiting for running jobs"
    );
    // Each queue loop returns once its running jobs are done or the deadline passed.
    for queue in queues {
        let _ = queue.await;
    }
    let _ = maintenance.await;
    // Past the grace: stop what still runs. Their outcomes are never sent, so they stay held.
    let mut aborted = 0;
    for running in shared.running().values() {
        // The supervisor first, so it cannot see its handler end and report an outcome.
        if let Some(supervisor) = &running.supervisor {
            supervisor.abort();
            aborted += 1;
        }
        if let Some(handler) = &running.handler {
            handler.abort();
        }
    }
    if aborted > 0 {
        tracing::warn!(
            aborted,
            "jobs still running after the shutdown grace; giving them back"
        );
    }
    // Record every outcome already sent, then give back what is left.
    drop_sender_and_wait(&shared, finisher).await;
    let held: Vec<(String, u32)> = shared
        .running()
        .iter()
        .map(|(id, r)| (id.clone(), r.attempt))
        .collect();
    if !held.is_empty() {
        match shared
            .state
            .store()
            .release_jobs(&shared.worker_id, &held)
            .await
        {
            Ok(released) => tracing::info!(released, "jobs given back to their queues"),
            Err(e) => {
                tracing::error!(error = %e, jobs = held.len(), "cannot give jobs back; they return when their lease runs out")
            }
        }
    }
    heartbeats.abort();
    // This process no longer samples the queues: its autoscaling signal has no job reading.
    shared
        .pending
        .0
        .store(PendingTotal::UNKNOWN, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("job workers stopped");
}

/// Closes the finisher's channel (every sender is inside `Shared`, so a sentinel tells it to
/// stop) and waits until it has recorded everything sent before.
async fn drop_sender_and_wait(shared: &Arc<Shared>, finisher: tokio::task::JoinHandle<()>) {
    // A `Finished` with an empty id is the stop marker.
    let _ = shared.finished.send(Finished {
        job_id: String::new(),
        attempt: 0,
        outcome: AttemptOutcome::Cancelled,
        priority: Priority::Normal,
        handler: "",
        took: Duration::ZERO,
    });
    let _ = finisher.await;
}

/// One queue's claim loop; on shutdown, waits (until the grace runs out) for its jobs.
async fn run_queue(shared: Arc<Shared>, priority: Priority, mut stop: watch::Receiver<bool>) {
    let queue = shared.settings.queue(priority);
    let slots = usize::try_from(queue.max_workers)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    if slots == 0 {
        // This process does not work this queue.
        return;
    }
    let semaphore = Arc::new(Semaphore::new(slots));
    let store = shared.state.store().clone();
    let lease_ms = shared.settings.lease_ms();
    let limiter = (queue.rate_per_minute > 0)
        .then(|| limits::Gcra::per_window(u64::from(queue.rate_per_minute), 60_000_000_000, 1).ok())
        .flatten();
    let mut pacing = limits::algo::GcraState::default();
    let epoch = Instant::now();
    let mut ready_at = epoch;
    let mut wakeups = store.job_wakeups();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            break;
        }
        if limiter.is_some() && ready_at > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(ready_at) => {}
                _ = stop.changed() => continue,
            }
        }
        let first = tokio::select! {
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => continue,
        };
        let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
        // A paced queue starts one job per token; otherwise up to `prefetch` per round trip.
        let want = if limiter.is_some() {
            1
        } else {
            usize::try_from(queue.prefetch.max(1)).unwrap_or(1)
        };
        while permits.len() < want {
            match semaphore.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let now = now_ms();
        let asked = permits.len();
        let claimed = match store
            .claim_jobs(
                priority,
                &shared.worker_id,
                u32::try_from(asked).unwrap_or(u32::MAX),
                now,
                lease_ms,
            )
            .await
        {
            Ok(jobs) => {
                backoff = Duration::from_millis(50);
                jobs
            }
            Err(e) => {
                tracing::warn!(queue = priority.as_str(), error = %e, "claiming jobs failed; retrying");
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let got = claimed.len();
        if let Some(gcra) = &limiter {
            if got > 0 {
                let now_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let decision = gcra.check(&mut pacing, now_ns, got as u64);
                ready_at = Instant::now() + Duration::from_nanos(decision.reset_after_ns);
            }
        }
        for (job, permit) in claimed.into_iter().zip(permits.drain(..)) {
            start(&shared, job, permit);
        }
        drop(permits);
        if got < asked {
            // The queue is drained for now: sleep until something may be due.
            let next = store
                .next_job_run_ms(priority, now_ms())
                .await
                .ok()
                .flatten();
            let mut wait = shared.settings.poll_interval;
            if let Some(at) = next {
                let until = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                wait = wait.min(Duration::from_millis(until));
            }
            tokio::select! {
                _ = wakeups.wait(priority, wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
    // Shutdown: wait for this queue's jobs to finish, within the grace.
    let grace = shared.settings.shutdown_grace;
    let all = u32::try_from(slots).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, semaphore.acquire_many(all)).await;
}

/// Registers `job` as held and starts its supervising task.
fn start(shared: &Arc<Shared>, job: JobRecord, permit: OwnedSemaphorePermit) {
    let (control, _) = watch::channel(None);
    let id = job.id.clone();
    shared.running().insert(
        id.clone(),
        Running {
            attempt: job.attempts,
            control: control.clone(),
            supervisor: None,
            handler: None,
        },
    );
    let task = tokio::spawn(supervise(shared.clone(), job, control, permit));
    if let Some(running) = shared.running().get_mut(&id) {
        running.supervisor = Some(task.abort_handle());
    }
}

/// How an attempt ended, before it becomes a store outcome.
enum Ended {
    Succeeded(JobOutput),
    Failed(HandlerError),
    Panicked(String),
    TimedOut(Duration),
    Cancelled,
}

/// Runs one attempt of `job` to its end and sends the outcome to the finisher.
async fn supervise(
    shared: Arc<Shared>,
    job: JobRecord,
    control: watch::Sender<Option<StopReason>>,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let registry = shared.state.jobs().registry();
    let handler = registry.get(&job.handler).cloned();
    let handler_name: &'static str = handler.as_ref().map_or("unknown", |h| h.name());
    let ended = match (
        handler,
        serde_json::from_str::<serde_json::Value>(&job.payload),
    ) {
        (None, _) => Ended::Failed(HandlerError::Permanent(format!(
            "no handler named '{}' in this worker (known: {})",
            job.handler,
            registry.names().join(", ")
        ))),
        (Some(_), Err(e)) => Ended::Failed(HandlerError::Permanent(format!(
            "the stored payload is not JSON: {e}"
        ))),
        (Some(handler), Ok(payload)) => {
            let ctx = JobContext {
                tenant_id: job.tenant_id.clone(),
                job_id: job.id.clone(),
                attempt: job.attempts,
                max_attempts: job.max_attempts,
                priority: job.priority,
                payload,
                worker_id: shared.worker_id.clone(),
                state: shared.state.clone(),
                stop: control.subscribe(),
            };
            match run_attempt(&shared, &job, handler.run(ctx), &control).await {
                Some(ended) => ended,
                // Aborted by the shutdown: the job is given back, not finished.
                None => return,
            }
        }
    };
    let took = started.elapsed();
    let outcome = outcome_of(&job, ended, &shared.settings, now_ms());
    let _ = shared.finished.send(Finished {
        job_id: job.id,
        attempt: job.attempts,
        outcome,
        priority: job.priority,
        handler: handler_name,
        took,
    });
}

/// Runs the handler's future on its own task with the job's time limits and cancellation.
/// `None` when the handler was aborted from outside (the end of a shutdown's grace).
async fn run_attempt(
    shared: &Shared,
    job: &JobRecord,
    future: super::HandlerFuture,
    control: &watch::Sender<Option<StopReason>>,
) -> Option<Ended> {
    let mut task = tokio::spawn(future);
    if let Some(running) = shared.running().get_mut(&job.id) {
        running.handler = Some(task.abort_handle());
    }
    let hard = Duration::from_millis(job.timeout_ms.max(1));
    let soft = Duration::from_millis(QueueSettings::soft_timeout_ms(job.timeout_ms));
    let hard_timer = tokio::time::sleep(hard);
    let soft_timer = tokio::time::sleep(soft);
    tokio::pin!(hard_timer, soft_timer);
    let mut soft_fired = false;
    let mut watching = control.subscribe();
    let mut cancel_deadline: Option<Instant> = None;
    loop {
        let cancel_at = cancel_deadline;
        tokio::select! {
            joined = &mut task => {
                let cancelled = *control.borrow() == Some(StopReason::Cancelled);
                return match joined {
                    Ok(Ok(output)) => Some(Ended::Succeeded(output)),
                    Ok(Err(_)) if cancelled => Some(Ended::Cancelled),
                    Ok(Err(e)) => Some(Ended::Failed(e)),
                    Err(e) if e.is_panic() => Some(Ended::Panicked(panic_message(e.into_panic()))),
                    Err(_) => None,
                };
            }
            () = &mut hard_timer => {
                task.abort();
                return Some(Ended::TimedOut(hard));
            }
            () = &mut soft_timer, if !soft_fired => {
                soft_fired = true;
                control.send_if_modified(|reason| {
                    if reason.is_none() {
                        *reason = Some(StopReason::SoftTimeout);
                        true
                    } else {
                        false
                    }
                });
            }
            changed = watching.changed(), if cancel_deadline.is_none() => {
                if changed.is_err() {
                    continue;
                }
                if *watching.borrow_and_update() == Some(StopReason::Cancelled) {
                    cancel_deadline = Some(Instant::now() + shared.settings.cancel_grace);
                }
            }
            () = async { if let Some(at) = cancel_at { tokio::time::sleep_until(at).await } }, if cancel_at.is_some() => {
                task.abort();
                return Some(Ended::Cancelled);
            }
        }
    }
}

/// The text of a panic's payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

/// What to record for an attempt that ended as `ended` at `now_ms`: a retryable failure runs
/// again on the queue's backoff schedule (jitter from `rand`) until the job's attempts are used
/// up, then it is dead.
fn outcome_of(
    job: &JobRecord,
    ended: Ended,
    settings: &JobSettings,
    now_ms: i64,
) -> AttemptOutcome {
    let retryable = |error: String| {
        let policy = RetryPolicy {
            base_ms: settings.queue(job.priority).retry_delay_ms,
            max_delay_ms: RETRY_BACKOFF_MAX_MS,
            max_retries: job.max_attempts.saturating_sub(1),
        };
        let unit: f64 = rand::thread_rng().gen();
        match policy.after_failure(job.attempts, now_ms, unit) {
            FailureOutcome::RetryAt(at_ms) => AttemptOutcome::RetryAt { at_ms, error },
            FailureOutcome::Dead => AttemptOutcome::Dead { error },
        }
    };
    match ended {
        Ended::Succeeded(output) => AttemptOutcome::Succeeded {
            result: output.map(bounded_result),
        },
        Ended::Cancelled => AttemptOutcome::Cancelled,
        Ended::Failed(HandlerError::Permanent(error)) => AttemptOutcome::Failed { error },
        Ended::Failed(HandlerError::Retry(error)) => retryable(error),
        Ended::Panicked(message) => retryable(format!("handler panicked: {message}")),
        Ended::TimedOut(after) => retryable(format!(
            "timed out after {} ms (the job's hard time limit)",
            after.as_millis()
        )),
    }
}

/// A result as stored: its JSON, or a note when it is larger than a job may keep.
fn bounded_result(value: serde_json::Value) -> String {
    let text = value.to_string();
    if text.len() <= store::MAX_JOB_PAYLOAD_BYTES {
        text
    } else {
        serde_json::json!({ "truncated": true, "bytes": text.len() }).to_string()
    }
}

/// Records outcomes in batches until the stop marker arrives.
async fn run_finisher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Finished>) {
    let max = shared.settings.finish_batch.max(1);
    let mut batch: Vec<Finished> = Vec::with_capacity(max);
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.recv().await else {
            break;
        };
        if first.job_id.is_empty() {
            stopping = true;
        } else {
            batch.push(first);
        }
        let linger_until = Instant::now() + shared.settings.finish_linger;
        while !stopping && batch.len() < max {
            let next = match rx.try_recv() {
                Ok(f) => Some(f),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(linger_until, rx.recv()).await {
                        Ok(f) => f,
                        Err(_) => break,
                    }
                }
            };
            match next {
                Some(f) if f.job_id.is_empty() => stopping = true,
                Some(f) => batch.push(f),
                None => stopping = true,
            }
        }
        if !batch.is_empty() {
            record(&shared, &mut batch).await;
        }
    }
}

/// Writes one batch of outcomes, retrying a failing store a few times (an outcome that never
/// gets written leaves its job held until the lease runs out, then it runs again).
async fn record(shared: &Shared, batch: &mut Vec<Finished>) {
    let finishes: Vec<Finish<'_>> = batch
        .iter()
        .map(|f| Finish {
            job_id: &f.job_id,
            attempt: f.attempt,
            outcome: f.outcome.clone(),
        })
        .collect();
    let mut wait = Duration::from_millis(50);
    let mut applied = None;
    for _ in 0..8 {
        match shared
            .state
            .store()
            .finish_jobs(&shared.worker_id, &finishes, now_ms())
            .await
        {
            Ok(a) => {
                applied = Some(a);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = finishes.len(), "recording job outcomes failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    drop(finishes);
    let metrics = shared.state.metrics().jobs();
    {
        let mut running = shared.running();
        for f in batch.iter() {
            // The same job may have been claimed again since (its lease ran out while this
            // outcome waited): that newer attempt stays held.
            if running
                .get(&f.job_id)
                .is_some_and(|r| r.attempt == f.attempt)
            {
                running.remove(&f.job_id);
            }
        }
    }
    match applied {
        None => tracing::error!(
            jobs = batch.len(),
            "job outcomes could not be recorded; those jobs run again after their lease"
        ),
        Some(applied) => {
            for (f, applied) in batch.iter().zip(applied) {
                if !applied {
                    tracing::debug!(job_id = %f.job_id, attempt = f.attempt, "outcome not recorded: the job is no longer held by this worker");
                    continue;
                }
                let status = match &f.outcome {
                    AttemptOutcome::Succeeded { .. } => "success",
                    AttemptOutcome::RetryAt { .. } => "retrying",
                    AttemptOutcome::Dead { .. } => "dead",
                    AttemptOutcome::Failed { .. } => "failed",
                    AttemptOutcome::Cancelled => "cancelled",
                };
                if let AttemptOutcome::RetryAt { error, .. }
                | AttemptOutcome::Dead { error }
                | AttemptOutcome::Failed { error } = &f.outcome
                {
                    tracing::warn!(job_id = %f.job_id, handler = f.handler, attempt = f.attempt, status, error = %error, "job attempt failed");
                }
                metrics.finished(f.priority.as_str(), f.handler, status, f.took);
            }
        }
    }
    batch.clear();
}

/// Extends the leases of held jobs every lease/3 and tells cancelled ones to stop. Runs until
/// aborted, after the last job is given back.
async fn run_heartbeats(shared: Arc<Shared>) {
    let every = (shared.settings.lease / 3).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let held: Vec<(String, u32)> = shared
            .running()
            .iter()
            .map(|(id, r)| (id.clone(), r.attempt))
            .collect();
        if held.is_empty() {
            continue;
        }
        match shared
            .state
            .store()
            .heartbeat_jobs(
                &shared.worker_id,
                &held,
                now_ms(),
                shared.settings.lease_ms(),
            )
            .await
        {
            Ok(cancelled) => {
                let running = shared.running();
                for id in cancelled {
                    if let Some(r) = running.get(&id) {
                        r.control.send_if_modified(|reason| {
                            if *reason == Some(StopReason::Cancelled) {
                                false
                            } else {
                                *reason = Some(StopReason::Cancelled);
                                true
                            }
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, jobs = held.len(), "job heartbeat failed"),
        }
    }
}

/// How often finished jobs past the retention are deleted, and how many per statement.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCH: u32 = 5_000;
/// How often queue depths are sampled into the metrics.
const DEPTHS_EVERY: Duration = Duration::from_secs(5);

/// Lost leases, expiry, due schedules, retention of finished jobs, depth metrics.
async fn run_maintenance(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let store = shared.state.store().clone();
    let mut ticks = tokio::time::interval(
        shared
            .settings
            .maintenance_interval
            .max(Duration::from_millis(10)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention: Option<Instant> = None;
    let mut last_depths: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        match store.rescue_lost_jobs(now).await {
            Ok(report) => {
                if report.requeued + report.dead > 0 {
                    tracing::warn!(
                        requeued = report.requeued,
                        dead = report.dead,
                        "jobs of a lost worker given back"
                    );
                }
                for priority in Priority::ALL {
                    let dead = report.dead_by_rank[usize::from(priority.rank())];
                    shared.state.metrics().jobs().lost(priority.as_str(), dead);
                }
            }
            Err(e) => tracing::warn!(error = %e, "rescuing lost jobs failed"),
        }
        match store.expire_jobs(now).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "jobs expired before they started"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiring jobs failed"),
        }
        match store.enqueue_due_schedules(now).await {
            Ok(created) if !created.is_empty() => {
                tracing::debug!(jobs = created.len(), "scheduled jobs enqueued");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "enqueuing scheduled jobs failed"),
        }
        if last_retention.is_none_or(|at| at.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            let keep = i64::try_from(shared.settings.keep_finished.as_millis()).unwrap_or(i64::MAX);
            let before = now.saturating_sub(keep);
            // Bounded per pass, so a large backlog is worked off over several passes.
            for _ in 0..20 {
                match store
                    .delete_finished_jobs_before(before, RETENTION_BATCH)
                    .await
                {
                    Ok(n) if n < u64::from(RETENTION_BATCH) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting old finished jobs failed");
                        break;
                    }
                }
            }
        }
        if last_depths.is_none_or(|at| at.elapsed() >= DEPTHS_EVERY) {
            last_depths = Some(Instant::now());
            match store.job_depths(now).await {
                Ok(depths) => {
                    shared.pending.set(depths.iter().map(|d| d.pending).sum());
                    crate::feedback::record_queue_depths(shared.state.metrics(), &depths);
                    let rows: Vec<telemetry::JobDepthSample<'_>> = depths
                        .iter()
                        .map(|d| telemetry::JobDepthSample {
                            tenant_id: &d.tenant_id,
                            queue_name: d.priority.as_str(),
                            pending: d.pending,
                            oldest_pending_age_ms: d.oldest_pending_age_ms,
                        })
                        .collect();
                    shared
                        .state
                        .metrics()
                        .jobs()
                        .set_depths(&Priority::ALL.map(Priority::as_str), &rows);
                }
                Err(e) => tracing::warn!(error = %e, "sampling job queue depths failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: u32, max_attempts: u32) -> JobRecord {
        JobRecord {
            id: "job_1".into(),
            tenant_id: "tn_1".into(),
            handler: "jobs.noop".into(),
            payload: "{}".into(),
            priority: Priority::Normal,
            status: jobs::JobStatus::Running,
            attempts,
            max_attempts,
            run_at_ms: 0,
            expires_at_ms: None,
            timeout_ms: 1_000,
            idempotency_key: None,
            schedule: None,
            created_at_ms: 0,
            started_at_ms: Some(0),
            finished_at_ms: None,
            lease_until_ms: Some(30_000),
            worker_id: Some("w".into()),
            result: None,
            last_error: None,
            cancel_requested: false,
        }
    }

    #[test]
    fn failures_retry_on_the_queue_schedule_until_the_attempts_are_used_up() {
        let settings = JobSettings::default();
        let base = settings.queue(Priority::Normal).retry_delay_ms as i64;
        for attempt in 1..=3 {
            match outcome_of(
                &job(attempt, 4),
                Ended::Panicked("boom".into()),
                &settings,
                1_000,
            ) {
                AttemptOutcome::RetryAt { at_ms, error } => {
                    assert_eq!(error, "handler panicked: boom");
                    let cap = (base << (attempt - 1)).min(RETRY_BACKOFF_MAX_MS as i64);
                    assert!((1_000 + cap / 2..=1_000 + cap).contains(&at_ms), "{at_ms}");
                }
                other => panic!("attempt {attempt}: {other:?}"),
            }
        }
        assert!(matches!(
            outcome_of(&job(4, 4), Ended::TimedOut(Duration::from_secs(1)), &settings, 0),
            AttemptOutcome::Dead { error } if error.starts_with("timed out after 1000 ms")
        ));
        assert!(matches!(
            outcome_of(&job(1, 4), Ended::Failed(HandlerError::Permanent("bad".into())), &settings, 0),
            AttemptOutcome::Failed { error } if error == "bad"
        ));
        assert!(matches!(
            outcome_of(&job(1, 1), Ended::Cancelled, &settings, 0),
            AttemptOutcome::Cancelled
        ));
    }

    #[test]
    fn oversized_results_are_replaced_by_a_note() {
        let small = bounded_result(serde_json::json!({"n": 1}));
        assert_eq!(small, r#"{"n":1}"#);
        let big = bounded_result(serde_json::json!("x".repeat(store::MAX_JOB_PAYLOAD_BYTES)));
        assert!(big.contains("\"truncated\":true"), "{big}");
    }

    #[test]
    fn worker_ids_differ_per_call_and_name_the_process() {
        let a = worker_id();
        let b = worker_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!("/{}/", std::process::id())), "{a}");
    }
}
