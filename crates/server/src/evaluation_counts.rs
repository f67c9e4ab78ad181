//! Flag evaluation counts for usage analytics, from the OFREP hot path to the store.
//!
//! ```text
//! OFREP answer ─► EvaluationCounter::count ─► sharded in-memory cells ─► flush ─► store
//!                 (one shard lock per request)   (tenant, env, flag,      (every 10 s, before a
//!                                                 hour, variant) → n       usage read, at stop)
//! ```
//!
//! - A request takes one shard lock (shards are chosen by tenant and environment) and adds to
//!   existing cells without allocating; only a cell seen for the first time allocates.
//! - Memory is bounded: at most `max_cells` cells are held between flushes. An evaluation that
//!   would need a new cell past that is not counted, and is counted in
//!   `flag_usage_dropped_total` instead (the store is not keeping up, or far more flags and
//!   variants are evaluated than expected).
//! - [`EvaluationCounter::flush`] takes every cell and adds it to the store
//!   ([`store::Store::record_flag_evaluations`]); flushes run one at a time, so a flush that
//!   returns has stored everything counted before it was called (reads flush first and so see
//!   their own evaluations). A failed write is logged and counted in
//!   `flag_usage_write_errors_total`; its counts are not retried (usage is analytics, not a
//!   ledger).
//! - [`run_flag_usage_writer`] flushes on an interval and once more on shutdown.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{EvaluationCount, Store, HOUR_MS};
use telemetry::Metrics;

use crate::state::AppState;

/// Settings of the evaluation counter and its writer.
#[derive(Debug, Clone)]
pub struct FlagUsageSettings {
    /// Distinct (tenant, environment, flag, variant, hour) cells held between flushes at most.
    pub max_cells: usize,
    /// How often the writer adds the counts to the store.
    pub flush_interval: Duration,
}

impl Default for FlagUsageSettings {
    fn default() -> Self {
        FlagUsageSettings {
            max_cells: 100_000,
            flush_interval: Duration::from_secs(10),
        }
    }
}

/// Shards of the counter: enough that concurrent requests of different tenants and
/// environments rarely wait on each other.
const SHARDS: usize = 16;

/// One flag's counts since the last flush.
#[derive(Default)]
struct FlagCells {
    last_evaluated_ms: i64,
    /// (hour start, variant, evaluations): a handful of entries, so a scan beats a map.
    counts: Vec<(i64, Option<String>, u64)>,
}

/// A map looked up by `&str` that allocates its key only on insert (`entry_ref`).
type Map<V> = hashbrown::HashMap<String, V, RandomState>;
/// tenant → environment → flag → cells.
type Shard = Map<Map<Map<FlagCells>>>;

/// Counts flag evaluations in memory; see the module docs.
pub struct EvaluationCounter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    cells: AtomicUsize,
    /// Held by a flush from taking the cells until they are stored.
    flushing: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    settings: FlagUsageSettings,
}

impl EvaluationCounter {
    /// An empty counter.
    pub fn new(settings: FlagUsageSettings, metrics: Arc<Metrics>) -> EvaluationCounter {
        EvaluationCounter {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            cells: AtomicUsize::new(0),
            flushing: tokio::sync::Mutex::new(()),
            metrics,
            settings,
        }
    }

    /// Counts one request's answers in `tenant_id`'s `environment` at `now_ms`: each answer is
    /// a flag key and the variant served (`None` when there was none). Never blocks on I/O.
    pub fn count<'a>(
        &self,
        tenant_id: &str,
        environment: &str,
        now_ms: i64,
        answers: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) {
        let hour_ms = now_ms - now_ms.rem_euclid(HOUR_MS);
        let mut dropped = 0u64;
        {
            let mut shard = self.shard(tenant_id, environment);
            let flags = shard
                .entry_ref(tenant_id)
                .or_default()
                .entry_ref(environment)
                .or_default();
            for (key, variant) in answers {
                let cells = flags.entry_ref(key).or_default();
                cells.last_evaluated_ms = cells.last_evaluated_ms.max(now_ms);
                if let Some(cell) = cells
                    .counts
                    .iter_mut()
                    .find(|(h, v, _)| *h == hour_ms && v.as_deref() == variant)
                {
                    cell.2 += 1;
                } else if self.cells.fetch_add(1, Ordering::Relaxed) < self.settings.max_cells {
                    cells.counts.push((hour_ms, variant.map(str::to_owned), 1));
                } else {
                    self.cells.fetch_sub(1, Ordering::Relaxed);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.metrics.flags().usage_dropped(dropped);
        }
    }

    /// Counts the answers of one OFREP request (flag key and variant served) whose flag
    /// counts its evaluations (`track_events`); keys not in `set` are not counted.
    pub(crate) fn count_answers<'a>(
        &self,
        tenant_id: &str,
        environment: &str,
        now_ms: i64,
        set: &flags::FlagSet,
        answers: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) {
        let tracked = answers
            .into_iter()
            .filter(|(key, _)| set.flag(key).is_some_and(|f| f.track_events));
        self.count(tenant_id, environment, now_ms, tracked);
    }

    fn shard(&self, tenant_id: &str, environment: &str) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = self.hasher.build_hasher();
        tenant_id.hash(&mut h);
        environment.hash(&mut h);
        let i = (h.finish() as usize) % self.shards.len();
        // A poisoned lock only means a panic elsewhere; the counts are still valid.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every cell, by tenant.
    fn take(&self) -> HashMap<String, Vec<EvaluationCount>> {
        let mut by_tenant: HashMap<String, Vec<EvaluationCount>> = HashMap::new();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|e| e.into_inner()));
            for (tenant_id, envs) in taken {
                let counts = by_tenant.entry(tenant_id).or_default();
                for (environment, flags) in envs {
                    for (flag_key, cells) in flags {
                        self.cells.fetch_sub(cells.counts.len(), Ordering::Relaxed);
                        for (hour_ms, variant, evaluations) in cells.counts {
                            counts.push(EvaluationCount {
                                environment: environment.clone(),
                                flag_key: flag_key.clone(),
                                variant,
                                hour_ms,
                                evaluations,
                                last_evaluated_ms: cells.last_evaluated_ms,
                            });
                        }
                    }
                }
            }
        }
        by_tenant
    }

    /// Adds everything counted so far to the store, one call per tenant. Returns once
    /// everything counted before the call is stored (or its write has failed and been
    /// counted).
    pub async fn flush(&self, store: &Store) {
        let _one_at_a_time = self.flushing.lock().await;
        for (tenant_id, counts) in self.take() {
            // Counts the store would refuse (a variant key it cannot hold) are left out alone,
            // so they cannot fail the batch of the others.
            let (valid, invalid): (Vec<_>, Vec<_>) =
                counts.into_iter().partition(|c| c.validate().is_ok());
            let lost =
                |counts: &[EvaluationCount]| -> u64 { counts.iter().map(|c| c.evaluations).sum() };
            if !invalid.is_empty() {
                self.metrics.flags().usage_write_failed(lost(&invalid));
            }
            if let Err(e) = store.record_flag_evaluations(&tenant_id, &valid).await {
                tracing::warn!(error = %e, tenant_id, "flag evaluation counts not stored");
                self.metrics.flags().usage_write_failed(lost(&valid));
            }
        }
    }
}

/// Adds counted evaluations to the store every `flush_interval` until `shutdown` resolves,
/// then once more and returns. Run it beside [`crate::serve`], like
/// [`crate::run_exposure_writer`].
pub async fn run_flag_usage_writer(state: AppState, shutdown: impl Future<Output = ()>) {
    let counter = state.evaluation_counts().clone();
    let mut tick = tokio::time::interval(counter.settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = tick.tick() => counter.flush(state.store()).await,
        }
    }
    // The server has drained its requests: store what they counted.
    counter.flush(state.store()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counter(max_cells: usize) -> EvaluationCounter {
        EvaluationCounter::new(
            FlagUsageSettings {
                max_cells,
                ..FlagUsageSettings::default()
            },
            Arc::new(Metrics::new(Default::default())),
        )
    }

    type Answer = (usize, usize, usize, Option<usize>, i64);

    fn answers() -> impl Strategy<Value = Vec<Answer>> {
        prop::collection::vec(
            (
                0usize..3,
                0usize..2,
                0usize..4,
                prop::option::of(0usize..3),
                0i64..(3 * HOUR_MS),
            ),
            0..200,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every evaluation is either taken exactly once, in its own cell, or dropped; the
        /// cells held never exceed the bound.
        #[test]
        fn every_evaluation_is_taken_or_dropped_and_cells_stay_bounded(
            answers in answers(),
            max_cells in 1usize..40,
        ) {
            let counter = counter(max_cells);
            let names = ["t0", "t1", "t2", "e0", "e1", "f0", "f1", "f2", "f3", "a", "b", "c"];
            let mut expected: HashMap<(String, String, String, Option<String>, i64), u64> =
                HashMap::new();
            for (t, e, f, v, at) in &answers {
                let (tenant, env, flag) = (names[*t], names[3 + e], names[5 + f]);
                let variant = v.map(|v| names[9 + v]);
                counter.count(tenant, env, *at, [(flag, variant)]);
                prop_assert!(counter.cells.load(Ordering::Relaxed) <= max_cells);
                *expected
                    .entry((tenant.into(), env.into(), flag.into(), variant.map(Into::into), at - at % HOUR_MS))
                    .or_default() += 1;
            }
            let mut taken: HashMap<(String, String, String, Option<String>, i64), u64> =
                HashMap::new();
            for (tenant, counts) in counter.take() {
                for c in counts {
                    let key = (tenant.clone(), c.environment, c.flag_key, c.variant, c.hour_ms);
                    prop_assert!(taken.insert(key, c.evaluations).is_none(), "a cell taken twice");
                }
            }
            prop_assert!(taken.len() <= max_cells);
            prop_assert_eq!(counter.cells.load(Ordering::Relaxed), 0);
            let dropped: u64 = expected
                .iter()
                .map(|(key, n)| {
                    let got = taken.get(key).copied().unwrap_or(0);
                    // A cell is either complete (created at its first evaluation) or absent.
                    assert!(got == 0 || got == *n, "{key:?}: {got} of {n}");
                    n - got
                })
                .sum();
            let total = answers.len() as u64;
            prop_assert_eq!(taken.values().sum::<u64>() + dropped, total);
            prop_assert!(counter.take().is_empty());
        }
    }
}
