//! What the store measures about itself: per-query timings, slow queries, and its connection
//! pools. The counters are atomics read as a [`StoreStats`] snapshot; the store registers no
//! metrics itself (the server's `telemetry` crate exports the snapshot at scrape time, as it does
//! the caches' counters).
//!
//! A "query" here is one store call: one statement, or one transaction of several (an upsert of
//! a profile batch, a flag change with its audit row). Its time runs from the moment the call has
//! a connection to the moment it gives it back, so a wait for a free connection is not query
//! time; that wait is measured separately per pool (`acquire_*`).
//!
//! Labels are bounded by construction: [`Operation`] and [`Table`] are closed enums, one cell
//! each in a fixed array.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Backend;

/// Upper bounds, in seconds, of the query and acquire-wait histograms. Seed 003's buckets
/// (10 ms to 10 s) plus finer ones below 10 ms, where almost every signalbox query lands.
pub const QUERY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a store call does, for the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Select,
    Insert,
    Update,
    Delete,
    /// Insert or update (`ON CONFLICT … DO UPDATE`).
    Upsert,
}

impl Operation {
    const ALL: [Operation; 5] = [
        Operation::Select,
        Operation::Insert,
        Operation::Update,
        Operation::Delete,
        Operation::Upsert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Select => "select",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Upsert => "upsert",
        }
    }
}

/// The main table a store call works on, for the `table` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Tenants,
    ApiKeys,
    WeberProfiles,
    Interactions,
    WeberCalculations,
    WeberSettings,
    WeberErasures,
    Flags,
    FlagAudit,
    FlagEnvironments,
    FlagExposures,
    Experiments,
    ExperimentEvents,
    LlmModelCalls,
    LlmEvents,
    LlmUsageDaily,
    LlmUsageLatency,
    LlmBudgets,
    LlmBudgetCrossings,
    LlmPrices,
    Jobs,
    JobSchedules,
    JobReceipts,
    FeedbackItems,
    FeedbackHistory,
    FeedbackConfigs,
    AuditLog,
    AuditHeads,
    AuditCheckpoints,
    TenantDataKeys,
    ConsoleSessions,
    WeberTransactions,
    WeberPredictionModels,
    WeberBusinessMetrics,
    PrivacyBudgets,
    PrivacySpend,
    PrivacyLedger,
    FeedbackMigrationPlans,
    FeedbackMigrationHistory,
    FeedbackReports,
    FlagEvaluations,
    FlagLastEvaluated,
    FlagRollouts,
    FlagRolloutHistory,
}

impl Table {
    /// Every table; the telemetry crate's sampler and this module's cells iterate it.
    pub const ALL: [Table; 44] = [
        Table::Tenants,
        Table::ApiKeys,
        Table::WeberProfiles,
        Table::Interactions,
        Table::WeberCalculations,
        Table::WeberSettings,
        Table::WeberErasures,
        Table::Flags,
        Table::FlagAudit,
        Table::FlagEnvironments,
        Table::FlagExposures,
        Table::Experiments,
        Table::ExperimentEvents,
        Table::LlmModelCalls,
        Table::LlmEvents,
        Table::LlmUsageDaily,
        Table::LlmUsageLatency,
        Table::LlmBudgets,
        Table::LlmBudgetCrossings,
        Table::LlmPrices,
        Table::Jobs,
        Table::JobSchedules,
        Table::JobReceipts,
        Table::FeedbackItems,
        Table::FeedbackHistory,
        Table::FeedbackConfigs,
        Table::AuditLog,
        Table::AuditHeads,
        Table::AuditCheckpoints,
        Table::TenantDataKeys,
        Table::ConsoleSessions,
        Table::WeberTransactions,
        Table::WeberPredictionModels,
        Table::WeberBusinessMetrics,
        Table::PrivacyBudgets,
        Table::PrivacySpend,
        Table::PrivacyLedger,
        Table::FeedbackMigrationPlans,
        Table::FeedbackMigrationHistory,
        Table::FeedbackReports,
        Table::FlagEvaluations,
        Table::FlagLastEvaluated,
        Table::FlagRollouts,
        Table::FlagRolloutHistory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Tenants => "tenants",
            Table::ApiKeys => "api_keys",
            Table::WeberProfiles => "weber_profiles",
            Table::Interactions => "interactions",
            Table::WeberCalculations => "weber_calculations",
            Table::WeberSettings => "weber_settings",
            Table::WeberErasures => "weber_erasures",
            Table::Flags => "flags",
            Table::FlagAudit => "flag_audit",
            Table::FlagEnvironments => "flag_environments",
            Table::FlagExposures => "flag_exposures",
            Table::Experiments => "experiments",
            Table::ExperimentEvents => "experiment_events",
            Table::LlmModelCalls => "llm_model_calls",
            Table::LlmEvents => "llm_events",
            Table::LlmUsageDaily => "llm_usage_daily",
            Table::LlmUsageLatency => "llm_usage_latency",
            Table::LlmBudgets => "llm_budgets",
            Table::LlmBudgetCrossings => "llm_budget_crossings",
            Table::LlmPrices => "llm_prices",
            Table::Jobs => "jobs",
            Table::JobSchedules => "job_schedules",
            Table::JobReceipts => "job_receipts",
            Table::FeedbackItems => "feedback_items",
            Table::FeedbackHistory => "feedback_history",
            Table::FeedbackConfigs => "feedback_configs",
            Table::AuditLog => "audit_log",
            Table::AuditHeads => "audit_heads",
            Table::AuditCheckpoints => "audit_checkpoints",
            Table::TenantDataKeys => "tenant_data_keys",
            Table::ConsoleSessions => "console_sessions",
            Table::WeberTransactions => "weber_transactions",
            Table::WeberPredictionModels => "weber_prediction_models",
            Table::WeberBusinessMetrics => "weber_business_metrics",
            Table::PrivacyBudgets => "privacy_budgets",
            Table::PrivacySpend => "privacy_spend",
            Table::PrivacyLedger => "privacy_ledger",
            Table::FeedbackMigrationPlans => "feedback_migration_plans",
            Table::FeedbackMigrationHistory => "feedback_migration_history",
            Table::FeedbackReports => "feedback_reports",
            Table::FlagEvaluations => "flag_evaluations",
            Table::FlagLastEvaluated => "flag_last_evaluated",
            Table::FlagRollouts => "flag_rollouts",
            Table::FlagRolloutHistory => "flag_rollout_history",
        }
    }
}

const CELLS: usize = Operation::ALL.len() * Table::ALL.len();

fn cell_index(operation: Operation, table: Table) -> usize {
    let op = Operation::ALL
        .iter()
        .position(|o| *o == operation)
        .unwrap_or(0);
    let t = Table::ALL.iter().position(|x| *x == table).unwrap_or(0);
    op * Table::ALL.len() + t
}

/// A histogram of durations in atomics: per-bucket counts (not cumulative; the last one is
/// `+Inf`), the count, and the sum in nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; QUERY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = QUERY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(QUERY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = QUERY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        HistogramSnapshot {
            // The +Inf bucket is the count (read last, so it is never below a finite bucket).
            count: count.max(running),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations in all (the `+Inf` bucket).
    pub count: u64,
    pub sum_seconds: f64,
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending, for
    /// every bound of [`QUERY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Debug, Default)]
struct QueryCell {
    durations: AtomicHistogram,
    slow: AtomicU64,
}

/// Per-pool counters.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) acquire_wait: AtomicHistogram,
    pub(crate) acquire_timeouts: AtomicU64,
}

/// The store's counters, shared by every clone of a [`crate::Store`].
#[derive(Debug)]
pub(crate) struct Observed {
    cells: Vec<QueryCell>,
    pub(crate) slow_threshold: Duration,
    pub(crate) primary: PoolCounters,
    pub(crate) replica: PoolCounters,
    pub(crate) replica_reads: AtomicU64,
    pub(crate) replica_fallbacks: AtomicU64,
}

impl Observed {
    pub(crate) fn new(slow_threshold: Duration) -> Observed {
        Observed {
            cells: (0..CELLS).map(|_| QueryCell::default()).collect(),
            slow_threshold,
            primary: PoolCounters::default(),
            replica: PoolCounters::default(),
            replica_reads: AtomicU64::new(0),
            replica_fallbacks: AtomicU64::new(0),
        }
    }

    /// Records one finished store call; a slow one is also counted and logged (without its
    /// parameters, which may be tenant data).
    pub(crate) fn query_done(&self, operation: Operation, table: Table, elapsed: Duration) {
        let Some(cell) = self.cells.get(cell_index(operation, table)) else {
            return;
        };
        cell.durations.observe(elapsed);
        if elapsed >= self.slow_threshold {
            cell.slow.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                operation = operation.as_str(),
                table = table.as_str(),
                elapsed_ms = elapsed.as_millis() as u64,
                threshold_ms = self.slow_threshold.as_millis() as u64,
                "slow database query"
            );
        }
    }

    pub(crate) fn queries(&self) -> Vec<QueryStats> {
        let mut out = Vec::new();
        for operation in Operation::ALL {
            for table in Table::ALL {
                let Some(cell) = self.cells.get(cell_index(operation, table)) else {
                    continue;
                };
                let durations = cell.durations.snapshot();
                if durations.count == 0 {
                    continue;
                }
                out.push(QueryStats {
                    operation: operation.as_str(),
                    table: table.as_str(),
                    durations,
                    slow: cell.slow.load(Ordering::Relaxed),
                });
            }
        }
        out
    }

    pub(crate) fn pool_counters(&self, role: PoolRole) -> &PoolCounters {
        match role {
            PoolRole::Primary => &self.primary,
            PoolRole::Replica => &self.replica,
        }
    }
}

/// Which pool a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolRole {
    /// The database every write and every read-your-writes read goes to.
    Primary,
    /// The optional read replica (`StoreOptions::read_url`).
    Replica,
}

impl PoolRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolRole::Primary => "primary",
            PoolRole::Replica => "replica",
        }
    }
}

/// One (operation, table) pair's timings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryStats {
    pub operation: &'static str,
    pub table: &'static str,
    pub durations: HistogramSnapshot,
    /// Calls that took at least the slow-query threshold.
    pub slow: u64,
}

/// One connection pool at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    pub role: PoolRole,
    /// Open connections handed out to a store call now.
    pub in_use: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The pool's size limit.
    pub max: u32,
    /// How long store calls waited for a connection.
    pub acquire_wait: HistogramSnapshot,
    /// Waits that gave up at the acquire timeout.
    pub acquire_timeouts: u64,
}

/// Everything the store measures, as read at one moment ([`crate::Store::stats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    pub backend: Backend,
    /// Only pairs that have run at least once.
    pub queries: Vec<QueryStats>,
    /// The primary, then the replica when one is configured.
    pub pools: Vec<PoolStats>,
    /// Reads served by the replica.
    pub replica_reads: u64,
    /// Replica-eligible reads served by the primary because the replica was unreachable or
    /// marked down after a failure.
    pub replica_fallbacks: u64,
    pub slow_query_threshold: Duration,
}

pub(crate) fn pool_counters_snapshot(
    role: PoolRole,
    pool: &sqlx::AnyPool,
    counters: &PoolCounters,
) -> PoolStats {
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    PoolStats {
        role,
        in_use: size - idle,
        idle,
        max: pool.options().get_max_connections(),
        acquire_wait: counters.acquire_wait.snapshot(),
        acquire_timeouts: counters.acquire_timeouts.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_snapshot_is_cumulative_and_sums() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 60.0033).abs() < 1e-9, "{}", s.sum_seconds);
        let at = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.0005), Some(1));
        assert_eq!(at(0.0025), Some(1));
        assert_eq!(at(0.005), Some(2));
        assert_eq!(at(10.0), Some(2), "60 s lands only in +Inf");
    }

    #[test]
    fn every_pair_has_its_own_cell() {
        let mut seen = std::collections::HashSet::new();
        for op in Operation::ALL {
            for table in Table::ALL {
                assert!(seen.insert(cell_index(op, table)));
            }
        }
        assert_eq!(seen.len(), CELLS);
        assert!(seen.iter().all(|i| *i < CELLS));
    }

    #[test]
    fn slow_calls_are_counted_at_the_threshold() {
        let o = Observed::new(Duration::from_millis(100));
        o.query_done(Operation::Select, Table::Flags, Duration::from_millis(99));
        o.query_done(Operation::Select, Table::Flags, Duration::from_millis(100));
        o.query_done(Operation::Insert, Table::Tenants, Duration::from_millis(1));
        let q = o.queries();
        assert_eq!(q.len(), 2);
        let flags = q.iter().find(|s| s.table == "flags").expect("flags row");
        assert_eq!(
            (flags.operation, flags.durations.count, flags.slow),
            ("select", 2, 1)
        );
    }
}
