//! What a job runs: handlers registered by name, and the context each attempt gets.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jobs::Priority;
use tokio::sync::watch;

use crate::state::AppState;

/// What a handler returns on success: an optional JSON result, kept with the job (at most
/// `store::MAX_JOB_PAYLOAD_BYTES` once serialized; a larger one is replaced by a note).
pub type JobOutput = Option<serde_json::Value>;

/// The future a handler's [`JobHandler::run`] returns. It is spawned on its own task, so it
/// owns what it uses (`'static`).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<JobOutput, HandlerError>> + Send>>;

/// Why an attempt failed, as the handler judges it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Something that may work next time (a dependency down, a stop request): the job is
    /// retried on its queue's backoff schedule until its attempts are used up, then dead.
    #[error("{0}")]
    Retry(String),
    /// Something no retry can fix (its payload, a missing input file): the job fails at once.
    #[error("{0}")]
    Permanent(String),
}

impl HandlerError {
    /// A store error: retryable, since storage being busy or unreachable passes.
    pub fn store(e: store::StoreError) -> HandlerError {
        HandlerError::Retry(format!("storage: {e}"))
    }
}

/// A payload a handler refuses, naming the offending field (`payload.user_ids[3]`), so an
/// enqueue with it is answered 422 rather than becoming a failed job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PayloadError {
    /// The field path, starting at `payload`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl PayloadError {
    /// `payload.<path>` is wrong because of `message`.
    pub fn new(path: &str, message: impl Into<String>) -> PayloadError {
        let field = if path.is_empty() || path == "." {
            "payload".to_owned()
        } else {
            format!("payload.{}", path.trim_start_matches('.'))
        };
        PayloadError {
            field,
            message: message.into(),
        }
    }

    /// Reads `payload` as `T` (whose serde attributes say what is allowed), naming the field
    /// that does not fit.
    pub fn parse<T: serde::de::DeserializeOwned>(
        payload: &serde_json::Value,
    ) -> Result<T, PayloadError> {
        serde_path_to_error::deserialize(payload).map_err(|e| {
            let path = e.path().to_string();
            PayloadError::new(&path, e.into_inner().to_string())
        })
    }
}

/// A named kind of job. Handlers are registered once per process in a [`JobRegistry`];
/// the name is what a job stores and what `queue_processing_duration_seconds` is labelled
/// with, so the set of names is fixed by the code, never by a client.
pub trait JobHandler: Send + Sync + 'static {
    /// The handler's name (`weber.recalculate`); see [`jobs::valid_handler_name`].
    fn name(&self) -> &'static str;

    /// Checks a payload up front, at enqueue. The default accepts any JSON object.
    fn validate(&self, _payload: &serde_json::Value) -> Result<(), PayloadError> {
        Ok(())
    }

    /// Whether only the operator may enqueue or schedule it (the CLI on the database), not a
    /// tenant's API key: true for handlers that change what every tenant is served, such as
    /// `forecast.rebuild` (one model for all tenants).
    fn operator_only(&self) -> bool {
        false
    }

    /// Runs one attempt. The attempt may be asked to stop ([`JobContext::stop_reason`]): a
    /// handler with long loops checks it between steps and returns early; one that does not
    /// is aborted at its hard timeout or after the cancellation grace.
    fn run(&self, ctx: JobContext) -> HandlerFuture;
}

/// Why a running attempt is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled the job; whatever the handler returns, it ends `cancelled`.
    Cancelled,
    /// The soft time limit passed; the hard one aborts the attempt.
    SoftTimeout,
}

impl StopReason {
    /// A short description, for logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Cancelled => "cancelled",
            StopReason::SoftTimeout => "soft time limit reached",
        }
    }
}

/// One attempt of one job, as its handler sees it.
#[derive(Clone)]
pub struct JobContext {
    /// The job's tenant: every store call the handler makes is scoped to it.
    pub tenant_id: String,
    /// The job's id (`job_…`).
    pub job_id: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// Most attempts the job may have.
    pub max_attempts: u32,
    /// The job's queue.
    pub priority: Priority,
    /// The payload (a JSON object).
    pub payload: serde_json::Value,
    /// The worker running it (`host/pid/random`).
    pub worker_id: Arc<str>,
    pub(crate) state: AppState,
    pub(crate) stop: watch::Receiver<Option<StopReason>>,
}

impl JobContext {
    /// Builds a context outside the runtime, for running a handler directly (tests, tools).
    /// The returned sender asks the attempt to stop.
    pub fn detached(
        state: AppState,
        tenant_id: &str,
        job_id: &str,
        payload: serde_json::Value,
    ) -> (JobContext, watch::Sender<Option<StopReason>>) {
        let (tx, rx) = watch::channel(None);
        let ctx = JobContext {
            tenant_id: tenant_id.to_owned(),
            job_id: job_id.to_owned(),
            attempt: 1,
            max_attempts: 1,
            priority: Priority::Normal,
            payload,
            worker_id: Arc::from("detached"),
            state,
            stop: rx,
        };
        (ctx, tx)
    }

    /// The server's state: store, metrics, profile pipeline, forecast service.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The store.
    pub fn store(&self) -> &store::Store {
        self.state.store()
    }

    /// Whether (and why) this attempt has been asked to stop.
    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    /// `Err` when the attempt has been asked to stop: the `?` a long handler puts between its
    /// steps. The error is retryable (a soft timeout leaves work to do; a cancellation's
    /// error is not recorded).
    pub fn check_stop(&self) -> Result<(), HandlerError> {
        match self.stop_reason() {
            None => Ok(()),
            Some(reason) => Err(HandlerError::Retry(format!("stopped: {}", reason.as_str()))),
        }
    }

    /// Resolves when the attempt is asked to stop (never, if it is not).
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.stop.clone();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The runtime dropped the sender: nobody will ask any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The handlers a process can run, by name.
#[derive(Clone, Default)]
pub struct JobRegistry {
    handlers: BTreeMap<&'static str, Arc<dyn JobHandler>>,
}

impl std::fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> JobRegistry {
        JobRegistry::default()
    }

    /// Adds `handler` under its name, replacing one of the same name.
    ///
    /// # Panics
    /// When the name is not a valid handler name: a programming error, caught by the first
    /// test that builds the registry.
    pub fn register(&mut self, handler: impl JobHandler) -> &mut JobRegistry {
        let name = handler.name();
        assert!(
            jobs::valid_handler_name(name),
            "handler name {name:?} is not valid"
        );
        self.handlers.insert(name, Arc::new(handler));
        self
    }

    /// The handler named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(name)
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }
}
