//! Flag exposures, from the evaluation hot path to the store without waiting on the database.
//!
//! ```text
//! evaluation ─► ExposureRecorder::record ─► dedupe cache ─► bounded queue ─► exposure writer ─► store
//!                (counted)                   (skip rows       (full: drop,     (batches of up to
//!                                             just written)    counted)         1,000 or 200 ms)
//! ```
//!
//! - `record` never blocks or awaits: it is a cache lookup and a `try_send`. When the queue is
//!   full, the exposure is dropped and counted (`flag_exposures_dropped_total`): evaluation
//!   latency matters more than one exposure of a user who will be exposed again.
//! - The dedupe cache remembers (tenant, environment, flag, user, variant) for a few minutes,
//!   so a user evaluated on every page view rewrites their row once per window, not per view.
//!   The stored count and last-seen time are therefore "at least", to the window's precision;
//!   the assignment (the first variant) is exact.
//! - The writer ([`run_exposure_writer`]) writes a batch per tenant through
//!   [`store::Store::record_exposures`]. On shutdown it stops taking new exposures, writes
//!   everything queued and returns, so a graceful stop loses nothing.
//! - [`ExposureRecorder::flush`] returns once everything queued before it is stored:
//!   read-your-writes for tests and embedders, without sleeping.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use store::Exposure;
use telemetry::Metrics;
use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;

/// Settings of the exposure recorder and its writer.
#[derive(Debug, Clone)]
pub struct ExposureSettings {
    /// Exposures queued for the writer at most; more are dropped (and counted).
    pub queue_capacity: usize,
    /// Most exposures the writer holds before writing.
    pub batch_max: usize,
    /// The writer writes what it holds at least this often.
    pub flush_interval: Duration,
    /// How long an exposure already queued is not queued again.
    pub dedupe_ttl: Duration,
    /// Exposures the dedupe cache remembers.
    pub dedupe_capacity: u64,
}

impl Default for ExposureSettings {
    fn default() -> Self {
        ExposureSettings {
            queue_capacity: 65_536,
            batch_max: 1_000,
            flush_interval: Duration::from_millis(200),
            dedupe_ttl: Duration::from_secs(300),
            dedupe_capacity: 200_000,
        }
    }
}

/// The exposure queue's `queue_name` in the queue metrics.
const EXPOSURE_QUEUE: &str = "flag_exposures";

/// What travels through the queue.
enum Message {
    Exposure(String, Exposure),
    /// Write everything held, then answer.
    Flush(oneshot::Sender<()>),
}

/// (tenant, environment, flag, targeting key, variant).
type SeenKey = (String, String, String, String, String);

/// Takes exposures from evaluations and hands them to the writer; see the module docs.
pub struct ExposureRecorder {
    queue: mpsc::Sender<Message>,
    /// Taken by the writer when it starts.
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
    seen: Cache<SeenKey, ()>,
    metrics: Arc<Metrics>,
    settings: ExposureSettings,
}

impl ExposureRecorder {
    /// A recorder whose queue waits for [`run_exposure_writer`].
    pub fn new(settings: ExposureSettings, metrics: Arc<Metrics>) -> ExposureRecorder {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        // The host sampler reads the queue's depth on its interval; a weak handle, so the
        // metrics never keep the queue open.
        let watched = queue.downgrade();
        metrics.queues().watch_depth(EXPOSURE_QUEUE, move || {
            watched
                .upgrade()
                .map_or(0, |q| (q.max_capacity() - q.capacity()) as u64)
        });
        ExposureRecorder {
            queue,
            receiver: Mutex::new(Some(receiver)),
            seen: Cache::builder()
                .max_capacity(settings.dedupe_capacity)
                .time_to_live(settings.dedupe_ttl)
                .build(),
            metrics,
            settings,
        }
    }

    /// Records that `tenant_id`'s flag was evaluated for a user; returns at once. An exposure
    /// the store would refuse (see [`Exposure::validate`]) is counted but not queued.
    pub fn record(&self, tenant_id: &str, exposure: Exposure) {
        let flags = self.metrics.flags();
        flags.exposed(tenant_id);
        if let Err(e) = exposure.validate() {
            tracing::debug!(error = %e, "exposure not recorded");
            return;
        }
        let key = (
            tenant_id.to_owned(),
            exposure.environment.clone(),
            exposure.flag_key.clone(),
            exposure.targeting_key.clone(),
            exposure.variant.clone(),
        );
        if self.seen.contains_key(&key) {
            return;
        }
        match self
            .queue
            .try_send(Message::Exposure(tenant_id.to_owned(), exposure))
        {
            // Remembered only once queued, so a dropped exposure is tried again next time.
            Ok(()) => self.seen.insert(key, ()),
            Err(_) => flags.exposure_dropped(),
        }
    }

    /// Returns once every exposure recorded before this call has been written (or its write
    /// has failed and been counted). Needs [`run_exposure_writer`] running; returns at once
    /// when the writer has stopped.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<Message>> {
        // A poisoned lock only means a panic elsewhere; the Option is still valid.
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Writes recorded exposures to the store until `shutdown` resolves, then writes everything
/// still queued and returns. Run it once beside [`crate::serve`]; a second writer returns at
/// once.
pub async fn run_exposure_writer(state: AppState, shutdown: impl Future<Output = ()>) {
    let recorder = state.exposures().clone();
    let Some(mut queue) = recorder.take_receiver() else {
        tracing::warn!("an exposure writer is already running");
        return;
    };
    let settings = recorder.settings.clone();
    let mut held: Vec<(String, Exposure)> = Vec::with_capacity(settings.batch_max);
    let mut tick = tokio::time::interval(settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            message = queue.recv() => match message {
                Some(message) => {
                    take(&state, &mut held, message, settings.batch_max).await;
                }
                None => break,
            },
            _ = tick.tick() => write(&state, &mut held).await,
        }
    }
    // No new exposures from here on (the server has drained its requests); write the rest.
    queue.close();
    while let Some(message) = queue.recv().await {
        take(&state, &mut held, message, settings.batch_max).await;
    }
    write(&state, &mut held).await;
}

async fn take(
    state: &AppState,
    held: &mut Vec<(String, Exposure)>,
    message: Message,
    batch_max: usize,
) {
    match message {
        Message::Exposure(tenant_id, exposure) => {
            held.push((tenant_id, exposure));
            if held.len() >= batch_max {
                write(state, held).await;
            }
        }
        Message::Flush(ack) => {
            write(state, held).await;
            let _ = ack.send(());
        }
    }
}

/// Writes the held exposures, one store call per tenant, and empties `held`.
async fn write(state: &AppState, held: &mut Vec<(String, Exposure)>) {
    if held.is_empty() {
        return;
    }
    let mut by_tenant: BTreeMap<String, Vec<Exposure>> = BTreeMap::new();
    for (tenant_id, exposure) in held.drain(..) {
        by_tenant.entry(tenant_id).or_default().push(exposure);
    }
    for (tenant_id, exposures) in by_tenant {
        let started = std::time::Instant::now();
        let written = state.store().record_exposures(&tenant_id, &exposures).await;
        state.metrics().queues().observe_processing(
            EXPOSURE_QUEUE,
            "exposure_batch",
            started.elapsed(),
        );
        if let Err(e) = written {
            tracing::warn!(error = %e, tenant_id, n = exposures.len(), "exposures not stored");
            state
                .metrics()
                .flags()
                .exposure_write_failed(exposures.len() as u64);
            // Let the next evaluation of these users queue them again.
            let seen = &state.exposures().seen;
            for e in exposures {
                seen.invalidate(&(
                    tenant_id.clone(),
                    e.environment,
                    e.flag_key,
                    e.targeting_key,
                    e.variant,
                ));
            }
        }
    }
}
