//! The weber real-time path: ingested interactions become profile updates.
//!
//! ```text
//! POST /interactions ─► store (commit) ─► event log ─► ProfileWorker ─► store (profiles, audit)
//!                                                            │
//!                                 profile read cache ◄───────┘ (write-through: memory, and
//!                                                               Redis when configured)
//! ```
//!
//! Invariants:
//! - The store is the system of record. An event is committed before its stream message is
//!   written, so whenever the worker sees a message, the event is already in the store, and a
//!   rebuild from the store covers every message it has seen.
//! - Delivery is at-least-once. Applying a message twice changes nothing: the streaming state
//!   answers `Duplicate` or `NeedsRebuild`, and a rebuild is a pure function of the stored history.
//! - A profile write never replaces a profile computed from a later view of the history (the
//!   store's `applied_seq` guard), so the worker and the manual update route cannot undo each
//!   other.
//! - An event committed just before a crash, whose message was never written, is found by the
//!   reconciliation pass (interactions newer than their profile's `applied_seq`), run at start and
//!   after any failed publish or profile write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache::{CacheError, CacheProfile, Layers, TieredCache};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use store::{CalculationRecord, InteractionWindow, WeberProfileRecord, WeberUpdate};
use weber::{Interaction, ProfileState, Update, WeberParams};

use crate::state::AppState;

/// Settings of the weber real-time path.
#[derive(Debug, Clone)]
pub struct ProfileSettings {
    /// Window and eps of the profiles of a tenant that has not set its own
    /// (`PUT /api/v1/weber/settings`).
    pub params: WeberParams,
    /// How long a profile read stays cached. This process's own updates replace entries at once
    /// (in Redis too, when the read cache has a Redis layer). With a Redis layer, other replicas'
    /// updates are announced on the cache's invalidation bus and drop the entry here when the
    /// message arrives; otherwise (and for the CLI's `weber batch --load`) the TTL bounds how
    /// stale a read can be after another process changed the profile.
    pub read_cache_ttl: Duration,
    /// Profiles kept in the read cache's memory layer, each weighed at
    /// [`PROFILE_ENTRY_BYTES`]; 0 turns the read cache off.
    pub read_cache_capacity: u64,
    /// Users whose streaming state (about 250 bytes each) the worker keeps; others are rebuilt
    /// from the store on their next event.
    pub state_capacity: u64,
    /// Most stream messages the worker applies in one store transaction.
    pub batch_max: usize,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            params: WeberParams::default(),
            read_cache_ttl: Duration::from_secs(30),
            read_cache_capacity: 200_000,
            state_capacity: 200_000,
            batch_max: 2_000,
        }
    }
}

/// What one cached profile is budgeted in the read cache's memory cap: its key and JSON (about
/// 300 bytes) plus the cache's per-entry overhead, rounded up.
pub const PROFILE_ENTRY_BYTES: u64 = 512;

/// How long a replica keeps a tenant's Weber settings before reading them again: the bound on
/// how long another replica's `PUT /api/v1/weber/settings` takes to reach this one's real-time
/// path. The replica that took the PUT uses the new settings at once, and recalculations (the
/// update route, the `weber.recalculate` job the PUT enqueues) always read them from the store.
pub const TENANT_SETTINGS_TTL: Duration = Duration::from_secs(30);

/// Tenants whose settings a replica keeps at once.
const TENANT_SETTINGS_CAPACITY: u64 = 100_000;

/// The name of the profile read cache in the `cache_*` metrics.
const CACHE_NAME: &str = "weber_profile";

/// (tenant id, user id).
pub(crate) type UserKey = (String, String);

/// Where a profile read was answered from, for `weber_profile_reads_total{cache}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProfileRead {
    /// The read cache answered (memory, Redis, or a load another read had in flight).
    Hit,
    /// This read asked the store.
    Miss,
}

impl ProfileRead {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileRead::Hit => "hit",
            ProfileRead::Miss => "miss",
        }
    }
}

/// Why a profile load from the store gave no profile. Neither outcome is cached: a user without
/// a profile gets one as soon as the worker writes it, and a store failure is retried by the next
/// read.
#[derive(Debug, thiserror::Error)]
enum ProfileLoadError {
    #[error("no profile")]
    Missing,
    #[error(transparent)]
    Store(store::StoreError),
}

/// The profile read cache: a tiered cache and the one profile its entries are kept under.
struct ProfileReadCache {
    cache: TieredCache,
    profile: CacheProfile,
}

impl ProfileReadCache {
    /// The cache key. Tenant ids are server-made and hold no `:`, so a tenant's keys are exactly
    /// those under `weber_profile:v1:{tenant}:`. The version changes with the record's shape.
    fn key(tenant_id: &str, user_id: &str) -> String {
        format!("{CACHE_NAME}:v1:{tenant_id}:{user_id}")
    }
}

/// One committed interaction, as the stream carries it to the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EventMessage {
    #[serde(rename = "t")]
    pub tenant_id: String,
    #[serde(rename = "u")]
    pub user_id: String,
    /// The store's arrival sequence number (the tie-breaker).
    #[serde(rename = "q")]
    pub seq: i64,
    #[serde(rename = "at")]
    pub time_ms: i64,
    #[serde(rename = "s")]
    pub sentiment: f64,
    /// Wall-clock microseconds at commit, for the update-latency histogram.
    #[serde(rename = "c")]
    pub committed_us: i64,
    /// Not an event: the user was erased (`DELETE /api/v1/users/{user_id}`). The worker, which
    /// holds the streaming states whichever replica took the erasure, drops the user's state and
    /// rebuilds them from the store, so no erased sentiment reaches a later profile.
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

impl EventMessage {
    /// The message announcing that a user was erased.
    pub fn erasure(tenant_id: &str, user_id: &str) -> EventMessage {
        EventMessage {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            seq: 0,
            time_ms: 0,
            sentiment: 0.0,
            committed_us: now_us(),
            erased: true,
        }
    }
}

struct UserState {
    /// The tenant's settings the state was built with; other settings rebuild it.
    params: WeberParams,
    profile: ProfileState,
    review_count: i64,
    applied_seq: i64,
}

/// The real-time path's shared parts: the event log, the read cache and the worker's states.
pub(crate) struct ProfilePipeline {
    pub settings: ProfileSettings,
    pub events: stream::EventLog,
    /// `None` when configured off (capacity 0).
    read_cache: Option<ProfileReadCache>,
    states: Cache<UserKey, Arc<Mutex<UserState>>>,
    /// Each tenant's effective settings, for [`TENANT_SETTINGS_TTL`].
    tenant_params: Cache<String, WeberParams>,
    /// Highest stream offset whose profile updates are committed and cached.
    applied: tokio::sync::watch::Sender<u64>,
    needs_reconcile: AtomicBool,
    /// Wakes a worker waiting for messages when a reconciliation is asked for (a failed publish
    /// sends no message that would wake it).
    reconcile_wakeup: tokio::sync::Notify,
}

impl ProfilePipeline {
    /// Fails only on a read-cache Redis URL that does not parse.
    pub fn new(
        settings: ProfileSettings,
        events: stream::EventLog,
        caches: &crate::ReadCacheSettings,
        metrics: &telemetry::Metrics,
    ) -> Result<ProfilePipeline, CacheError> {
        let read_cache = if settings.read_cache_capacity > 0 {
            let l1_max_bytes = settings
                .read_cache_capacity
                .saturating_mul(PROFILE_ENTRY_BYTES);
            Some(ProfileReadCache {
                cache: crate::read_cache::build(CACHE_NAME, l1_max_bytes, caches, metrics)?,
                profile: CacheProfile {
                    ttl: settings.read_cache_ttl.max(Duration::from_millis(1)),
                    layers: Layers::L1_AND_L2,
                    compress_over_bytes: None,
                    max_entry_bytes: 16 * 1024,
                    // Off: the worker writes every change through, so the TTL only bounds how
                    // long another process's change takes to show.
                    refresh_ahead_fraction: 0.0,
                },
            })
        } else {
            None
        };
        let states = Cache::builder()
            .max_capacity(settings.state_capacity)
            .build();
        let tenant_params = Cache::builder()
            .max_capacity(TENANT_SETTINGS_CAPACITY)
            .time_to_live(TENANT_SETTINGS_TTL)
            .build();
        Ok(ProfilePipeline {
            settings,
            events,
            read_cache,
            states,
            tenant_params,
            applied: tokio::sync::watch::channel(0).0,
            needs_reconcile: AtomicBool::new(true),
            reconcile_wakeup: tokio::sync::Notify::new(),
        })
    }

    /// The tenant's effective settings as this replica knows them (at most
    /// [`TENANT_SETTINGS_TTL`] old): the real-time path's.
    pub async fn params_for(
        &self,
        store: &store::Store,
        tenant_id: &str,
    ) -> Result<WeberParams, store::StoreError> {
        if let Some(p) = self.tenant_params.get(tenant_id) {
            return Ok(p);
        }
        let p = self.params_fresh(store, tenant_id).await?;
        self.tenant_params.insert(tenant_id.to_owned(), p);
        Ok(p)
    }

    /// The tenant's effective settings read from the store now: its own, or the server's
    /// defaults when it has none. Recalculations use these, so a recalculation enqueued by a
    /// settings change applies the new settings whichever replica runs it.
    pub async fn params_fresh(
        &self,
        store: &store::Store,
        tenant_id: &str,
    ) -> Result<WeberParams, store::StoreError> {
        Ok(match store.weber_settings(tenant_id).await? {
            None => self.settings.params,
            Some(r) => usize::try_from(r.window)
                .ok()
                .and_then(|w| WeberParams::new(w, r.eps).ok())
                .unwrap_or_else(|| {
                    // Only validated settings are written; a row edited by hand falls back.
                    tracing::error!(
                        tenant_id,
                        "stored Weber settings are out of range; using the defaults"
                    );
                    self.settings.params
                }),
        })
    }

    /// Uses `params` for the tenant from now on in this replica (after a settings change).
    pub fn set_params(&self, tenant_id: &str, params: WeberParams) {
        self.tenant_params.insert(tenant_id.to_owned(), params);
    }

    /// Forgets one user's streaming state and cached profile (after the user was erased), so
    /// neither the worker nor a read serves what was erased. Other replicas' read caches drop
    /// the entry through the cache's invalidation bus when there is a Redis layer, otherwise
    /// within the read cache TTL.
    pub async fn forget_user(&self, tenant_id: &str, user_id: &str) {
        self.states
            .invalidate(&(tenant_id.to_owned(), user_id.to_owned()));
        if let Some(read_cache) = &self.read_cache {
            read_cache
                .cache
                .invalidate(&ProfileReadCache::key(tenant_id, user_id))
                .await;
        }
    }

    /// One user's profile, from the read cache or else the store; `None` when the user has no
    /// profile. Concurrent misses of one profile make one store read. A load that a write-through
    /// overtakes is answered but not cached, so the cache never goes back to an older profile.
    pub async fn read(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<(Option<WeberProfileRecord>, ProfileRead), crate::problem::ApiError> {
        let Some(read_cache) = &self.read_cache else {
            let found = state.store().weber_profile(tenant_id, user_id).await?;
            return Ok((found, ProfileRead::Miss));
        };
        let key = ProfileReadCache::key(tenant_id, user_id);
        let asked_store = Arc::new(AtomicBool::new(false));
        let loader = {
            let store = state.store().clone();
            let (tenant_id, user_id) = (tenant_id.to_owned(), user_id.to_owned());
            let asked_store = Arc::clone(&asked_store);
            move || async move {
                asked_store.store(true, Ordering::Relaxed);
                match store.weber_profile(&tenant_id, &user_id).await {
                    Ok(Some(profile)) => Ok(profile),
                    Ok(None) => Err(ProfileLoadError::Missing),
                    Err(e) => Err(ProfileLoadError::Store(e)),
                }
            }
        };
        let result = read_cache
            .cache
            .get_or_load::<WeberProfileRecord, _, _, _>(&key, &read_cache.profile, loader)
            .await;
        let source = if asked_store.load(Ordering::Relaxed) {
            ProfileRead::Miss
        } else {
            ProfileRead::Hit
        };
        match result {
            Ok(profile) => Ok((Some(profile), source)),
            Err(CacheError::Load(e)) => match e.0.downcast_ref::<ProfileLoadError>() {
                Some(ProfileLoadError::Missing) => Ok((None, source)),
                Some(ProfileLoadError::Store(e)) => Err(store_read_problem(e)),
                None => {
                    tracing::error!(error = %e, "profile load failed");
                    Err(crate::problem::ApiError::internal())
                }
            },
            Err(e) => {
                // A cached value that no longer decodes (or a loader panic): drop the entry and
                // answer from the store, so one bad entry cannot keep failing reads.
                tracing::warn!(error = %e, tenant_id, "profile read cache failed; reading the store");
                read_cache.cache.invalidate(&key).await;
                let found = state.store().weber_profile(tenant_id, user_id).await?;
                Ok((found, ProfileRead::Miss))
            }
        }
    }

    /// Writes profiles just stored into the read cache (write-through), concurrently, so a batch
    /// costs about one Redis round trip rather than one per profile.
    async fn cache_written<'a>(
        &self,
        written: impl IntoIterator<Item = (&'a str, &'a WeberProfileRecord)>,
    ) {
        let Some(read_cache) = &self.read_cache else {
            return;
        };
        let writes = written.into_iter().map(|(tenant_id, profile)| {
            let key = ProfileReadCache::key(tenant_id, &profile.user_id);
            let value = serde_json::to_vec(profile);
            async move {
                let cache = &read_cache.cache;
                let written = match value {
                    Ok(value) => cache
                        .insert(&key, &read_cache.profile, bytes::Bytes::from(value))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = written {
                    // Neither can happen with this record and profile; if one did, drop the
                    // entry so the older profile is not served.
                    tracing::error!(error = %e, "profile write-through failed");
                    cache.invalidate(&key).await;
                }
            }
        });
        futures_util::future::join_all(writes).await;
    }

    /// Asks the worker to reconcile the store on its next turn.
    pub fn request_reconcile(&self) {
        self.needs_reconcile.store(true, Ordering::Relaxed);
        self.reconcile_wakeup.notify_one();
    }

    /// Publishes the committed events of one ingest request. On failure the events are still
    /// committed; the worker's reconciliation will apply them.
    pub async fn publish(&self, state: &AppState, messages: &[EventMessage]) {
        if messages.is_empty() {
            return;
        }
        let payloads: Vec<bytes::Bytes> = messages
            .iter()
            .filter_map(|m| serde_json::to_vec(m).ok().map(bytes::Bytes::from))
            .collect();
        if let Err(e) = self.events.append(&payloads).await {
            tracing::error!(error = %e, events = messages.len(), "event log append failed; reconciling from the store");
            state
                .metrics()
                .weber()
                .publish_failed(messages.len() as u64);
            self.request_reconcile();
        }
    }

    /// Recalculates one user's profile from the stored history now (the manual update route).
    /// `None` when the user has no stored interactions.
    pub async fn recalculate(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<Arc<WeberProfileRecord>>, crate::problem::ApiError> {
        let key = (tenant_id.to_owned(), user_id.to_owned());
        // The worker rebuilds this user from the store on their next event.
        self.states.invalidate(&key);
        let params = self.params_fresh(state.store(), tenant_id).await?;
        let windows = state
            .store()
            .interaction_windows(tenant_id, &[user_id.to_owned()], window_u32(&params))
            .await?;
        let Some(window) = windows.into_iter().next() else {
            return Ok(None);
        };
        let Some((update, _)) = self.rebuilt(tenant_id, &window, "manual", params) else {
            return Ok(None);
        };
        state
            .store()
            .record_weber_updates(std::slice::from_ref(&update))
            .await?;
        state.metrics().weber().calculated(tenant_id, "manual");
        // Read back: a concurrent worker write with a later history wins, and this shows it.
        let stored = state
            .store()
            .weber_profile(tenant_id, user_id)
            .await?
            .map(Arc::new);
        if let Some(p) = &stored {
            self.cache_written([(tenant_id, &**p)]).await;
        }
        Ok(stored)
    }

    /// Recalculates many of a tenant's users from their stored history, the way
    /// [`ProfilePipeline::recalculate`] does one (the `weber.recalculate` job): one history
    /// read and one store transaction per call, then the read cache.
    pub async fn recalculate_users(
        &self,
        state: &AppState,
        tenant_id: &str,
        user_ids: &[String],
    ) -> Result<Recalculated, store::StoreError> {
        for user_id in user_ids {
            // The worker rebuilds these users from the store on their next event.
            self.states
                .invalidate(&(tenant_id.to_owned(), user_id.clone()));
        }
        let params = self.params_fresh(state.store(), tenant_id).await?;
        let windows = state
            .store()
            .interaction_windows(tenant_id, user_ids, window_u32(&params))
            .await?;
        let updates: Vec<WeberUpdate> = windows
            .iter()
            .filter_map(|w| self.rebuilt(tenant_id, w, "manual", params))
            .map(|(update, _)| update)
            .collect();
        if !updates.is_empty() {
            state.store().record_weber_updates(&updates).await?;
        }
        let weber = state.metrics().weber();
        for _ in &updates {
            weber.calculated(tenant_id, "manual");
        }
        // Dropped rather than written through: a concurrent worker write with a later history
        // may have won in the store, and the next read loads whichever is stored.
        if let Some(read_cache) = &self.read_cache {
            let drops = updates.iter().map(|u| {
                let key = ProfileReadCache::key(tenant_id, &u.profile.user_id);
                async move { read_cache.cache.invalidate(&key).await }
            });
            futures_util::future::join_all(drops).await;
        }
        let mut distinct: Vec<&String> = user_ids.iter().collect();
        distinct.sort();
        distinct.dedup();
        Ok(Recalculated {
            users: distinct.len() as u64,
            recalculated: updates.len() as u64,
        })
    }

    /// Waits until the worker has applied every message up to `offset` (for tests and
    /// read-your-writes callers embedding the server).
    pub async fn wait_applied(&self, offset: u64) {
        let mut rx = self.applied.subscribe();
        // Only fails when the sender is dropped, which outlives every caller holding `self`.
        let _ = rx.wait_for(|applied| *applied >= offset).await;
    }

    /// A profile update (and the state to keep) from a user's stored window.
    fn rebuilt(
        &self,
        tenant_id: &str,
        window: &InteractionWindow,
        cause: &'static str,
        params: WeberParams,
    ) -> Option<(WeberUpdate, UserState)> {
        let history: Vec<Interaction> = window
            .events
            .iter()
            .map(|e| Interaction::new(e.sentiment, e.event_time_ms, seq_tiebreak(e.seq)))
            .collect();
        let profile = match ProfileState::rebuild(&history, &params) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, tenant_id, user_id = %window.user_id, "stored history is not valid; profile left as it was");
                return None;
            }
        };
        let user = UserState {
            params,
            profile,
            review_count: window.total,
            applied_seq: window.max_seq,
        };
        let newest_seq = window.events.last().map_or(0, |e| e.seq);
        let update = self.update_of(tenant_id, &window.user_id, &user, newest_seq, cause)?;
        Some((update, user))
    }

    fn update_of(
        &self,
        tenant_id: &str,
        user_id: &str,
        user: &UserState,
        newest_seq: i64,
        cause: &'static str,
    ) -> Option<WeberUpdate> {
        let params = &user.params;
        let p = user.profile.profile(params)?;
        let calculation = user
            .profile
            .newest_calculation(params)
            .map(|c| CalculationRecord {
                event_seq: newest_seq,
                review_sequence: user.review_count,
                sentiment_value: c.sentiment,
                baseline_sentiment: c.baseline,
                weber_ratio: c.ratio,
                cause,
            });
        Some(WeberUpdate {
            tenant_id: tenant_id.to_owned(),
            profile: WeberProfileRecord {
                user_id: user_id.to_owned(),
                weber_constant: p.weber_constant,
                calculation_confidence: p.calculation_confidence,
                sensitivity_segment: p.sensitivity_segment.as_str().to_owned(),
                bias_ratio: p.bias_ratio,
                review_count: user.review_count,
                window_len: i64::try_from(p.window_len).unwrap_or(i64::MAX),
                newest_event_ms: p.newest_time_ms,
                updated_at_ms: now_us() / 1000,
            },
            applied_seq: user.applied_seq,
            calculation,
        })
    }
}

/// What [`ProfilePipeline::recalculate_users`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Recalculated {
    /// Distinct users asked for.
    pub users: u64,
    /// Those whose profile was recomputed (the others have no stored interactions).
    pub recalculated: u64,
}

impl Recalculated {
    pub fn add(&mut self, other: Recalculated) {
        self.users += other.users;
        self.recalculated += other.recalculated;
    }
}

/// The problem for a store error met by a cached read (shared by every reader of one load, so
/// only borrowed).
fn store_read_problem(e: &store::StoreError) -> crate::problem::ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "storage unavailable");
        crate::problem::ApiError::new(
            crate::problem::ProblemKind::Unavailable,
            "storage is unavailable; retry shortly",
        )
    } else {
        tracing::error!(error = %e, "profile read failed");
        crate::problem::ApiError::internal()
    }
}

/// The window as the store's history reads take it.
pub(crate) fn window_u32(params: &WeberParams) -> u32 {
    u32::try_from(params.window()).unwrap_or(u32::MAX)
}

/// Store sequence numbers are positive; the engine's tie-breaker is unsigned.
fn seq_tiebreak(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs the profile worker until `shutdown` resolves. Start it once per process, next to
/// [`crate::serve`]:
///
/// ```no_run
/// # async fn demo(state: server::AppState) {
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let worker = tokio::spawn(server::run_profile_worker(state, async { let _ = stopped.await; }));
/// // … serve …
/// let _ = stop.send(());
/// let _ = worker.await;
/// # }
/// ```
pub async fn run_profile_worker(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let pipeline = state.profiles().clone();
    tokio::pin!(shutdown);
    let mut consumer = loop {
        match pipeline.events.consumer("weber-profiles").await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the event log consumer; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut backoff = Backoff::new();
    loop {
        if pipeline.needs_reconcile.swap(false, Ordering::Relaxed) {
            if let Err(e) = reconcile(&state, &pipeline).await {
                tracing::error!(error = %e, "profile reconciliation failed; retrying");
                pipeline.request_reconcile();
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff.next()) => {}
                }
                continue;
            }
            backoff.reset();
        }
        let batch = tokio::select! {
            _ = &mut shutdown => return,
            // `next_batch` is cancel-safe: nothing is lost by turning to reconcile first.
            _ = pipeline.reconcile_wakeup.notified() => continue,
            batch = consumer.next_batch(pipeline.settings.batch_max) => batch,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "event log read failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff.next()) => {}
                }
                continue;
            }
        };
        let Some(last) = batch.last().map(|d| d.offset) else {
            continue;
        };
        let messages: Vec<EventMessage> = batch
            .iter()
            .filter_map(|d| match serde_json::from_slice(&d.payload) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(offset = d.offset, error = %e, "unreadable event message skipped");
                    None
                }
            })
            .collect();
        let started = Instant::now();
        let applied = apply_batch(&state, &pipeline, &messages).await;
        state.metrics().queues().observe_processing(
            "weber_events",
            "interaction_batch",
            started.elapsed(),
        );
        if let Err(e) = applied {
            let weber = state.metrics().weber();
            for m in messages.iter().filter(|m| !m.erased) {
                weber.update_failed(&m.tenant_id, 1);
            }
            // The events are in the store; reconciliation recalculates the affected users.
            tracing::error!(error = %e, "profile update failed; reconciling from the store");
            pipeline.request_reconcile();
        }
        if let Err(e) = consumer.ack(last).await {
            tracing::error!(error = %e, "event log ack failed; messages may be applied again");
        }
        pipeline.applied.send_modify(|a| *a = (*a).max(last));
        if let Ok(lag) = consumer.lag().await {
            state.metrics().weber().stream_lag(lag);
            state.metrics().queues().set_size("weber_events", lag);
        }
    }
}

/// Applies one batch of messages: streaming updates where the worker holds the user's state,
/// rebuilds from the store otherwise; then one store transaction and the read cache.
async fn apply_batch(
    state: &AppState,
    pipeline: &ProfilePipeline,
    messages: &[EventMessage],
) -> Result<(), store::StoreError> {
    // Group by user.
    let mut order: Vec<UserKey> = Vec::new();
    let mut by_user: HashMap<UserKey, Vec<&EventMessage>> = HashMap::new();
    let mut erased: std::collections::HashSet<UserKey> = std::collections::HashSet::new();
    for m in messages {
        let key = (m.tenant_id.clone(), m.user_id.clone());
        if m.erased {
            pipeline.states.invalidate(&key);
            erased.insert(key.clone());
        }
        by_user
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(m);
    }
    // The updates, and beside each the cause counted in metrics.
    let mut updates: Vec<WeberUpdate> = Vec::new();
    let mut causes: Vec<&'static str> = Vec::new();
    let mut rebuild: HashMap<String, Vec<String>> = HashMap::new();
    let mut applied_states: Vec<(UserKey, Arc<Mutex<UserState>>)> = Vec::new();
    let mut tenant_params: HashMap<String, WeberParams> = HashMap::new();
    for key in order.iter().map(|k| &k.0) {
        if !tenant_params.contains_key(key) {
            let p = pipeline.params_for(state.store(), key).await?;
            tenant_params.insert(key.clone(), p);
        }
    }
    for key in &order {
        let params = tenant_params
            .get(&key.0)
            .copied()
            .unwrap_or(pipeline.settings.params);
        let Some(user_messages) = by_user.get_mut(key) else {
            continue;
        };
        // Concurrent requests append in an order slightly different from their commit order;
        // applying a user's batch in event order keeps those from looking late (a rebuild).
        user_messages.sort_by_key(|m| (m.time_ms, m.seq));
        // An erased user's state may hold erased sentiments: only the store is trusted.
        let cell = if erased.contains(key) {
            None
        } else {
            pipeline.states.get(key)
        };
        let Some(cell) = cell else {
            rebuild
                .entry(key.0.clone())
                .or_default()
                .push(key.1.clone());
            continue;
        };
        let outcome = {
            let mut user = cell.lock().unwrap_or_else(|e| e.into_inner());
            if user.params == params {
                apply_in_order(&mut user, user_messages, &params)
            } else {
                // The tenant's settings changed since this state was built.
                Applied::Rebuild
            }
        };
        match outcome {
            Applied::Rebuild => {
                pipeline.states.invalidate(key);
                rebuild
                    .entry(key.0.clone())
                    .or_default()
                    .push(key.1.clone());
            }
            Applied::Unchanged => {}
            Applied::Changed { newest_seq } => {
                let user = cell.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(u) = pipeline.update_of(&key.0, &key.1, &user, newest_seq, "event") {
                    updates.push(u);
                    causes.push("event");
                }
                drop(user);
                applied_states.push((key.clone(), cell.clone()));
            }
        }
    }
    let started = Instant::now();
    let rebuilds: usize = rebuild.values().map(Vec::len).sum();
    let mut rebuilt_states = Vec::new();
    for (tenant_id, users) in rebuild {
        let params = tenant_params
            .get(&tenant_id)
            .copied()
            .unwrap_or(pipeline.settings.params);
        let windows = state
            .store()
            .interaction_windows(&tenant_id, &users, window_u32(&params))
            .await?;
        for window in &windows {
            if let Some((update, user)) = pipeline.rebuilt(&tenant_id, window, "rebuild", params) {
                updates.push(update);
                causes.push("rebuild");
                rebuilt_states.push(((tenant_id.clone(), window.user_id.clone()), user));
            }
        }
    }
    let read = started.elapsed();
    let written = state.store().record_weber_updates(&updates).await;
    tracing::debug!(
        messages = messages.len(),
        users = order.len(),
        rebuilds,
        read_ms = read.as_secs_f64() * 1e3,
        write_ms = (started.elapsed() - read).as_secs_f64() * 1e3,
        "applied a batch"
    );
    if let Err(e) = written {
        // The streaming states ran ahead of the store; forget them so they are rebuilt.
        for (key, _) in &applied_states {
            pipeline.states.invalidate(key);
        }
        return Err(e);
    }
    for (key, user) in rebuilt_states {
        pipeline.states.insert(key, Arc::new(Mutex::new(user)));
    }
    let weber = state.metrics().weber();
    for (update, cause) in updates.iter().zip(causes) {
        weber.calculated(&update.tenant_id, cause);
    }
    pipeline
        .cache_written(updates.iter().map(|u| (u.tenant_id.as_str(), &u.profile)))
        .await;
    let now = now_us();
    for m in messages.iter().filter(|m| !m.erased) {
        let waited = u64::try_from(now.saturating_sub(m.committed_us)).unwrap_or(0);
        weber.tenant_update_latency(&m.tenant_id, Duration::from_micros(waited));
    }
    Ok(())
}

enum Applied {
    Unchanged,
    Changed { newest_seq: i64 },
    Rebuild,
}

fn apply_in_order(
    user: &mut UserState,
    messages: &[&EventMessage],
    params: &WeberParams,
) -> Applied {
    let mut newest = None;
    for m in messages {
        let event = Interaction::new(m.sentiment, m.time_ms, seq_tiebreak(m.seq));
        match user.profile.apply(&event, params) {
            Ok(Update::Updated(_)) => {
                user.review_count += 1;
                user.applied_seq = user.applied_seq.max(m.seq);
                newest = Some(m.seq);
            }
            Ok(Update::Duplicate) => {}
            Ok(Update::NeedsRebuild) | Err(_) => return Applied::Rebuild,
        }
    }
    match newest {
        Some(newest_seq) => Applied::Changed { newest_seq },
        None => Applied::Unchanged,
    }
}

/// Recalculates every user whose stored interactions are newer than their profile.
async fn reconcile(state: &AppState, pipeline: &ProfilePipeline) -> Result<(), store::StoreError> {
    const PAGE: u32 = 1_000;
    let started = Instant::now();
    let mut total = 0usize;
    // Only what was stored before this pass began: later events come through the stream, and
    // chasing them here would never end under a steady load.
    let up_to = state.store().operator_newest_interaction_seq().await?;
    loop {
        let stale = state
            .store()
            .operator_stale_weber_users(up_to, PAGE)
            .await?;
        if stale.is_empty() {
            break;
        }
        let mut by_tenant: HashMap<String, Vec<String>> = HashMap::new();
        for (tenant, user) in stale {
            by_tenant.entry(tenant).or_default().push(user);
        }
        let mut updates = Vec::new();
        for (tenant_id, users) in by_tenant {
            for user in &users {
                pipeline
                    .states
                    .invalidate(&(tenant_id.clone(), user.clone()));
            }
            let params = pipeline.params_for(state.store(), &tenant_id).await?;
            let windows = state
                .store()
                .interaction_windows(&tenant_id, &users, window_u32(&params))
                .await?;
            updates.extend(
                windows
                    .iter()
                    .filter_map(|w| pipeline.rebuilt(&tenant_id, w, "reconcile", params))
                    .map(|(u, _)| u),
            );
        }
        if updates.is_empty() {
            break;
        }
        state.store().record_weber_updates(&updates).await?;
        let weber = state.metrics().weber();
        for u in &updates {
            weber.calculated(&u.tenant_id, "reconcile");
        }
        total += updates.len();
        pipeline
            .cache_written(updates.iter().map(|u| (u.tenant_id.as_str(), &u.profile)))
            .await;
    }
    if total > 0 {
        tracing::info!(
            users = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconciled profiles with stored interactions"
        );
    }
    Ok(())
}

/// Exponential backoff for retrying a failing dependency: 50 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(50))
    }
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        d
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
}
