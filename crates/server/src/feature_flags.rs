//! Serving feature flags: one compiled [`FlagSet`] per tenant and environment, held in memory and
//! swapped whole when the stored flags change, and the stream of those changes.
//!
//! Evaluation (OFREP) only ever reads a snapshot: an `Arc` taken under a read lock, so a request
//! sees one consistent flag set however the flags change meanwhile. The store is the source of
//! truth; a snapshot is (re)built from it when
//! - a request first needs an environment,
//! - this server changes a flag (the admin API reloads before it answers, so a client reads its
//!   own writes), and
//! - the refresher ([`crate::run_flag_refresher`]) sees the environment's change sequence move,
//!   which is how changes made by another replica or by `signalbox flags import` arrive.
//!
//! The same reload publishes the environment's changes, in sequence order, to the SSE stream.
//! Admin writes of one environment are serialised here (a per-environment lock held from
//! validation to reload), so two concurrent writes cannot together make a set that neither
//! validated, such as a prerequisite cycle. Writers in other processes are not covered by that
//! lock: should the stored set ever fail to compile, the last good snapshot keeps serving and the
//! failure is logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flags::{ErrorCode, Flag, FlagSet, Reason, ValidationError};
use serde::Serialize;
use store::{FlagAuditRecord, FlagRecord, Store, StoreError};
use tokio::sync::{broadcast, OwnedMutexGuard};

/// Environments kept in memory beyond which an environment without flags is evaluated without
/// being cached, so that clients naming arbitrary environments cannot grow memory.
const MAX_CACHED_ENVIRONMENTS: usize = 10_000;
/// An environment nobody has evaluated or watched for this long is dropped from memory.
const IDLE_EVICTION: Duration = Duration::from_secs(600);
/// Changes buffered per environment for slow stream readers; a reader that falls further behind
/// catches up from the store.
const CHANGE_BUFFER: usize = 1024;

/// A compiled flag set and the environment change it reflects.
pub struct FlagSnapshot {
    /// The flags, ready to evaluate.
    pub set: FlagSet,
    /// The environment's change sequence number this set was read at (0: never changed).
    pub seq: i64,
}

/// One change of a flag, as the change stream reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FlagChange {
    /// The environment's change sequence number; also the SSE event id.
    pub seq: i64,
    /// The flag changed.
    pub key: String,
    /// The flag's version after the change.
    pub version: i64,
    /// `create`, `update`, `kill` or `delete`.
    pub action: String,
    /// When, RFC 3339.
    pub at: String,
}

impl From<&FlagAuditRecord> for FlagChange {
    fn from(r: &FlagAuditRecord) -> Self {
        FlagChange {
            seq: r.seq,
            key: r.flag_key.clone(),
            version: r.version,
            action: r.action.as_str().to_owned(),
            at: crate::rfc3339_ms(r.at_ms),
        }
    }
}

/// One environment's flags in memory.
struct EnvFlags {
    snapshot: RwLock<Arc<FlagSnapshot>>,
    /// Held while reloading, and by admin writes from validation to reload.
    reload: Arc<tokio::sync::Mutex<ReloadState>>,
    changes: broadcast::Sender<FlagChange>,
    last_used_ms: AtomicI64,
}

struct ReloadState {
    /// Changes up to this sequence number have been published to the stream.
    published_through: i64,
    /// A sequence number whose set failed to compile, so the failure is logged once.
    broken_seq: Option<i64>,
}

impl EnvFlags {
    fn current(&self) -> Arc<FlagSnapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, snapshot: Arc<FlagSnapshot>) {
        match self.snapshot.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Flag snapshots of every environment in use, and their change streams.
pub struct FlagService {
    /// Tenant id -> environment -> flags. Nested so that a lookup borrows the request's names
    /// instead of allocating a key.
    envs: RwLock<HashMap<String, HashMap<String, Arc<EnvFlags>>>>,
    closing: tokio::sync::watch::Sender<bool>,
    closed: AtomicBool,
}

impl Default for FlagService {
    fn default() -> Self {
        FlagService {
            envs: RwLock::new(HashMap::new()),
            closing: tokio::sync::watch::channel(false).0,
            closed: AtomicBool::new(false),
        }
    }
}

/// Why a stored flag set could not be turned into a snapshot.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored flag `{key}` is not a valid definition: {message}")]
    Unreadable { key: String, message: String },
    #[error("stored flags do not compile: {}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<ValidationError>),
}

impl From<ReloadError> for crate::problem::ApiError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "flag set cannot be loaded");
                crate::problem::ApiError::internal()
            }
        }
    }
}

/// Parses stored definitions (they were validated when written).
pub(crate) fn parse_records(records: &[FlagRecord]) -> Result<Vec<Flag>, ReloadError> {
    records
        .iter()
        .map(|r| {
            serde_json::from_str::<Flag>(&r.definition_json).map_err(|e| ReloadError::Unreadable {
                key: r.key.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}

async fn read_set(
    store: &Store,
    tenant_id: &str,
    environment: &str,
) -> Result<(FlagSet, i64), ReloadError> {
    // The sequence number first: flags read after it are at least that new, so a change that
    // lands in between is picked up again by the next reload, never missed.
    let seq = store.flag_change_seq(tenant_id, environment).await?;
    if seq == 0 {
        return Ok((FlagSet::default(), 0));
    }
    let records = store.flags(tenant_id, environment).await?;
    let set = FlagSet::compile(parse_records(&records)?).map_err(ReloadError::Invalid)?;
    Ok((set, seq))
}

impl FlagService {
    fn entry(&self, tenant_id: &str, environment: &str) -> Option<Arc<EnvFlags>> {
        let envs = match self.envs.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let env = envs.get(tenant_id)?.get(environment)?.clone();
        env.touch();
        Some(env)
    }

    fn env_count(&self) -> usize {
        let envs = match self.envs.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        envs.values().map(HashMap::len).sum()
    }

    /// Keeps `snapshot` as the environment's, unless another request loaded it meanwhile (then
    /// that one is kept: it is as new).
    fn insert(
        &self,
        tenant_id: &str,
        environment: &str,
        snapshot: Arc<FlagSnapshot>,
    ) -> Arc<EnvFlags> {
        let mut envs = match self.envs.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let seq = snapshot.seq;
        envs.entry(tenant_id.to_owned())
            .or_default()
            .entry(environment.to_owned())
            .or_insert_with(|| {
                Arc::new(EnvFlags {
                    snapshot: RwLock::new(snapshot),
                    reload: Arc::new(tokio::sync::Mutex::new(ReloadState {
                        published_through: seq,
                        broken_seq: None,
                    })),
                    changes: broadcast::channel(CHANGE_BUFFER).0,
                    last_used_ms: AtomicI64::new(now_ms()),
                })
            })
            .clone()
    }

    /// The environment's entry, loading it from the store on first use.
    async fn load(
        &self,
        store: &Store,
        tenant_id: &str,
        environment: &str,
    ) -> Result<Arc<EnvFlags>, ReloadError> {
        if let Some(env) = self.entry(tenant_id, environment) {
            return Ok(env);
        }
        let (set, seq) = read_set(store, tenant_id, environment).await?;
        Ok(self.insert(tenant_id, environment, Arc::new(FlagSnapshot { set, seq })))
    }

    /// The flags to evaluate for a tenant's environment.
    pub(crate) async fn snapshot(
        &self,
        store: &Store,
        tenant_id: &str,
        environment: &str,
    ) -> Result<Arc<FlagSnapshot>, ReloadError> {
        if let Some(env) = self.entry(tenant_id, environment) {
            return Ok(env.current());
        }
        let (set, seq) = read_set(store, tenant_id, environment).await?;
        let snapshot = Arc::new(FlagSnapshot { set, seq });
        // An environment without flags is not kept once many are: clients naming arbitrary
        // environments must not grow memory.
        if seq == 0 && self.env_count() >= MAX_CACHED_ENVIRONMENTS {
            return Ok(snapshot);
        }
        Ok(self.insert(tenant_id, environment, snapshot).current())
    }

    /// Locks the environment for an admin change: the caller reads, validates and writes, then
    /// calls [`EnvWrite::publish`] so the change is served and streamed before it answers.
    pub(crate) async fn lock_for_write(
        &self,
        store: &Store,
        tenant_id: &str,
        environment: &str,
    ) -> Result<EnvWrite, ReloadError> {
        let env = self.load(store, tenant_id, environment).await?;
        let guard = env.reload.clone().lock_owned().await;
        Ok(EnvWrite {
            env,
            guard,
            tenant_id: tenant_id.to_owned(),
            environment: environment.to_owned(),
        })
    }

    /// Subscribes to an environment's changes; returns the receiver and the sequence number
    /// the current snapshot reflects (changes after it will arrive on the receiver).
    pub(crate) async fn subscribe(
        &self,
        store: &Store,
        tenant_id: &str,
        environment: &str,
    ) -> Result<(broadcast::Receiver<FlagChange>, i64), ReloadError> {
        let env = self.load(store, tenant_id, environment).await?;
        // Under the reload lock, so no change is published between reading the number and
        // subscribing.
        let state = env.reload.lock().await;
        let receiver = env.changes.subscribe();
        Ok((receiver, state.published_through))
    }

    /// Reloads every environment in memory whose stored flags changed, and forgets those idle
    /// for a while that nobody watches.
    pub(crate) async fn refresh_all(&self, store: &Store) {
        let entries: Vec<(String, String, Arc<EnvFlags>)> = {
            let envs = match self.envs.read() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            envs.iter()
                .flat_map(|(tenant, envs)| {
                    envs.iter()
                        .map(move |(name, env)| (tenant.clone(), name.clone(), env.clone()))
                })
                .collect()
        };
        let idle_before = now_ms() - IDLE_EVICTION.as_millis() as i64;
        for (tenant_id, environment, env) in entries {
            if env.last_used_ms.load(Ordering::Relaxed) < idle_before
                && env.changes.receiver_count() == 0
            {
                self.forget(&tenant_id, &environment);
                continue;
            }
            let mut state = env.reload.lock().await;
            if let Err(e) = reload(store, &env, &mut state, &tenant_id, &environment).await {
                tracing::warn!(tenant_id, environment, error = %e, "flag refresh failed");
            }
        }
    }

    fn forget(&self, tenant_id: &str, environment: &str) {
        let mut envs = match self.envs.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tenant) = envs.get_mut(tenant_id) {
            tenant.remove(environment);
            if tenant.is_empty() {
                envs.remove(tenant_id);
            }
        }
    }

    /// Ends every change stream (at shutdown, so open streams do not hold the server up).
    pub(crate) fn close_streams(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.closing.send(true);
    }

    /// Resolves when the server is shutting down.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Whether [`FlagService::close_streams`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// Re-reads the environment if its change sequence moved; swaps the snapshot and publishes the
/// changes in between.
async fn reload(
    store: &Store,
    env: &EnvFlags,
    state: &mut ReloadState,
    tenant_id: &str,
    environment: &str,
) -> Result<(), ReloadError> {
    let seq = store.flag_change_seq(tenant_id, environment).await?;
    if seq == env.current().seq && seq == state.published_through {
        return Ok(());
    }
    match read_set(store, tenant_id, environment).await {
        Ok((set, read_seq)) => {
            env.swap(Arc::new(FlagSnapshot { set, seq: read_seq }));
            state.broken_seq = None;
        }
        Err(ReloadError::Store(e)) => return Err(e.into()),
        Err(e) => {
            if state.broken_seq != Some(seq) {
                tracing::error!(tenant_id, environment, seq, error = %e, "stored flags do not compile; the previous flag set keeps serving");
                state.broken_seq = Some(seq);
            }
        }
    }
    // Publish what changed, in order, even when the set did not compile: the stream reports
    // changes to the stored flags.
    while state.published_through < seq {
        let page = store
            .flag_changes(
                tenant_id,
                environment,
                state.published_through,
                store::MAX_FLAG_PAGE,
            )
            .await?;
        let Some(last) = page.last() else { break };
        let last = last.seq;
        for record in &page {
            // No receiver is not an error: nobody is watching.
            let _ = env.changes.send(FlagChange::from(record));
        }
        state.published_through = last;
    }
    Ok(())
}

/// An environment locked for an admin change.
pub(crate) struct EnvWrite {
    env: Arc<EnvFlags>,
    guard: OwnedMutexGuard<ReloadState>,
    tenant_id: String,
    environment: String,
}

impl EnvWrite {
    /// Serves and streams what was written, then releases the lock.
    pub(crate) async fn publish(mut self, store: &Store) -> Result<(), ReloadError> {
        reload(
            store,
            &self.env,
            &mut self.guard,
            &self.tenant_id,
            &self.environment,
        )
        .await
    }
}

/// Checks that the environment's flags, with `replace` put in (or added) and `remove` taken
/// out, form a valid set.
pub(crate) fn validate_change(
    current: Vec<Flag>,
    replace: Option<&Flag>,
    remove: Option<&str>,
) -> Result<(), Vec<ValidationError>> {
    let mut candidate: Vec<Flag> = current
        .into_iter()
        .filter(|f| Some(f.key.as_str()) != remove)
        .filter(|f| replace.is_none_or(|r| r.key != f.key))
        .collect();
    if let Some(flag) = replace {
        candidate.push(flag.clone());
    }
    FlagSet::compile(candidate).map(|_| ())
}

/// A readable explanation of a failed evaluation.
pub(crate) fn error_details(key: &str, code: ErrorCode, set: &FlagSet) -> String {
    match code {
        ErrorCode::FlagNotFound => format!("no flag `{key}` in this environment"),
        ErrorCode::TargetingKeyMissing => {
            let by = set
                .flag(key)
                .and_then(|f| f.bucket_by.as_deref())
                .unwrap_or(flags::TARGETING_KEY);
            format!("flag `{key}` buckets by `{by}` and the context has none")
        }
        ErrorCode::InvalidContext => {
            let by = set
                .flag(key)
                .and_then(|f| f.bucket_by.as_deref())
                .unwrap_or(flags::TARGETING_KEY);
            format!("flag `{key}` buckets by `{by}`, which must be a string in the context")
        }
        ErrorCode::ParseError => format!("flag `{key}` could not be parsed"),
        ErrorCode::General => {
            format!("flag `{key}` could not be evaluated (prerequisites nested too deep)")
        }
    }
}

/// A reason as OFREP spells it.
pub(crate) fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Static => "STATIC",
        Reason::Default => "DEFAULT",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled => "DISABLED",
        Reason::Error => "ERROR",
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch, for evaluation.
pub(crate) fn clock_ms() -> i64 {
    now_ms()
}
