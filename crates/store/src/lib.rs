//! Persistence for signalbox: tenants, API keys, engine data, feature flags, experiments and
//! LLM observability data (model calls, chatbot events, usage rollups, budgets, prices), and
//! purchases with the lifetime predictions fitted on them.
//!
//! One [`Store`] handle speaks to either backend, chosen by URL:
//! - `sqlite://PATH` — the embedded default, a single file in the data directory (WAL mode);
//! - `postgres://…` — the system of record when several replicas share state.
//!
//! Queries are written once in the SQL both backends accept (`$N` placeholders, `BIGINT`
//! millisecond timestamps, `TEXT`) and run through sqlx's `Any` driver; where the dialects must
//! differ, the migration table in [`migrations`] carries a text per dialect. The same integration
//! suite (`tests/store_suite.rs`) runs against both backends.
//!
//! Architecture invariant: every query that reads or changes tenant-owned data takes the tenant
//! id as a bound parameter. The only tenant-agnostic reads are [`Store::authenticate`] and [`Store::authenticate_hash`]
//! (which are how a tenant is found in the first place) and the operator functions used by the CLI, whose
//! names say so.
//!
//! ```no_run
//! # async fn demo() -> Result<(), store::StoreError> {
//! use store::{Scope, Scopes, Store, StoreOptions, Tier};
//! let store = Store::connect(&StoreOptions::sqlite_in("./data".as_ref())).await?;
//! let tenant = store.create_tenant("acme", Tier::Starter).await?;
//! let key = store.issue_api_key(&tenant.id, Scopes::from_iter([Scope::Read]), None).await?;
//! let who = store.authenticate(&key.secret).await?.expect("fresh key authenticates");
//! assert_eq!(who.tenant.id, tenant.id);
//! # Ok(()) }
//! ```

mod audit;
mod console;
mod diff;
mod experiments;
mod feedback;
mod feedback_forward;
mod feedback_import;
mod feedback_migration;
mod feedback_reports;
mod flag_rollouts;
mod flag_usage;
mod flags;
mod interactions;
mod jobs;
mod llm;
mod migrations;
mod model;
mod observe;
mod predictions;
mod privacy;
pub mod secret;
#[cfg(feature = "test-support")]
pub mod testing;
mod vault;
mod weber;
mod weber_admin;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

pub use self::audit::{
    AuditHead, AuditHeadStatus, AuditLogReader, NewAuditRecord, StoredAuditRecord,
    StoredCheckpoint, MAX_AUDIT_PAGE, MAX_AUDIT_TEXT_BYTES,
};
pub use self::console::{ConsoleSessionRecord, NewConsoleSession};
pub use self::jobs::{
    error_text as job_error_text, jobs_channel, valid_idempotency_key, AttemptOutcome, Enqueued,
    Finish, JobDepth, JobFilter, JobReceipt, JobRecord, JobSchedule, JobStats, JobWakeups, NewJob,
    QueueStats, RescueReport, MAX_IDEMPOTENCY_KEY_BYTES, MAX_JOB_ATTEMPTS, MAX_JOB_CLAIM,
    MAX_JOB_ERROR_BYTES, MAX_JOB_PAGE, MAX_JOB_PAYLOAD_BYTES, MAX_JOB_RESULT_BYTES,
    MAX_WORKER_ID_BYTES,
};
pub use self::llm::{
    LlmBudget, LlmBudgetCrossing, LlmInsertOutcome, LlmInsertion, LlmPrices, LlmPurged,
    LlmUsageKey, MAX_LLM_PRICES_BYTES, MAX_LLM_TEXT_BYTES,
};
pub use self::vault::{DataKeyRecord, DataKeyState, NewDataKey};
pub use diff::{json_diff, FieldChange};
pub use experiments::{
    AnalysisInputs, AnalysisQuery, AssignmentWindow, EventsStored, ExperimentEvent,
    ExperimentRecord, Exposure, ExposureRecord, MetricObservations, MetricShape, StoredMetricEvent,
    MAX_ASSIGNMENT_WINDOWS, MAX_EVENT_ABS_VALUE, MAX_EXPERIMENT_DEFINITION_BYTES,
    MAX_TARGETING_KEY_BYTES, RAW_VALUES_LIMIT,
};
pub use feedback::{
    FeedbackAnalysis, FeedbackEvent, FeedbackFilter, FeedbackHistoryEntry, FeedbackInsertion,
    FeedbackJobSpec, FeedbackRecord, FeedbackStatus, NewFeedbackItem, SealedText,
    StoredFeedbackConfig, FEEDBACK_ITEMS_PER_JOB, MAX_FEEDBACK_PAGE,
};
pub use feedback_forward::{ForwardOutcome, NewFeedbackForward};
pub use feedback_import::{
    FeedbackImport, ImportBatchOutcome, ImportCheckpoint, ImportReject, MAX_IMPORT_SOURCE_BYTES,
    MAX_REJECT_REASON_BYTES,
};
pub use feedback_migration::{
    MigrationChange, MigrationHistoryRecord, MigrationPlanRecord, MigrationWindow,
    MAX_MIGRATION_HISTORY,
};
pub use feedback_reports::{FeedbackReportRecord, MAX_FEEDBACK_REPORT_PAGE};
pub use flag_rollouts::{
    FlagRolloutChange, FlagRolloutHistoryRecord, FlagRolloutRecord, RolloutKey, MAX_ROLLOUT_HISTORY,
};
pub use flag_usage::{
    AssignmentBucket, EvaluationBucket, EvaluationCount, UsageRange, DAY_MS, HOUR_MS,
};
pub use flags::{
    FlagAction, FlagAuditRecord, FlagRecord, MAX_FLAG_DEFINITION_BYTES, MAX_FLAG_PAGE,
};
pub use interactions::{
    CalculationRecord, Insertion, InteractionWindow, NewInteraction, StoredCalculation,
    StoredEvent, WeberUpdate,
};
pub use migrations::LATEST_VERSION as SCHEMA_VERSION;
pub use model::{
    ApiKeyInfo, IssuedKey, NewKey, ParseNameError, Principal, Scope, Scopes, Tenant, Tier,
};
pub use observe::{
    HistogramSnapshot, Operation, PoolRole, PoolStats, QueryStats, StoreStats, Table, QUERY_BUCKETS,
};
pub use predictions::{
    BusinessMetricsRecord, MetricsOrder, MetricsSummary, NewPredictionModel, NewTransaction,
    PredictionModelRecord, StoredTransaction, TransactionCursor, TransactionInsertion,
    MAX_TRANSACTION_ID_BYTES, MAX_TRANSACTION_PAGE,
};
pub use privacy::{
    NewPrivacyRelease, PrivacyAnalyticsRow, PrivacyBudgetRecord, PrivacyLedgerRecord, PrivacyLimit,
    PrivacySpendOutcome, PrivacySpent, MAX_PRIVACY_ACTOR_BYTES, MAX_PRIVACY_LEDGER_PAGE,
    MAX_PRIVACY_QUERY_BYTES,
};
pub use weber::{SegmentCountsAt, SegmentStats, WeberProfileRecord};
pub use weber_admin::{erasure_subject_hash, ErasureCounts, ErasureRecord, WeberSettingsRecord};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::InvalidUrl(
                "expected a sqlite:// or postgres:// URL".to_owned(),
            ))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to reach the database, and how the connection pools behave.
///
/// Defaults follow seed 002's database settings where it gives them (pool of 20, connections
/// recycled after an hour, 30 s statement timeout, 1 s slow-query threshold); the acquire
/// timeout is shorter than the seed's 30 s so that a request meets it well inside its own
/// timeout and is answered `database_busy`, not a generic timeout.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    /// PostgreSQL only: the schema to keep signalbox's tables in (created if missing).
    /// `None` uses the server's default `search_path`. The read replica uses the same schema.
    pub schema: Option<String>,
    /// Most open connections per pool (the primary's, and the replica's if any).
    pub max_connections: u32,
    /// How long a store call waits for a free connection before failing with
    /// [`StoreError::PoolTimedOut`].
    pub acquire_timeout: Duration,
    /// Idle connections beyond this age are closed; `None` keeps them.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed and replaced after this long; `None` keeps them forever.
    pub max_lifetime: Option<Duration>,
    /// Longest a statement may run ([`StoreError::StatementTimeout`] after). PostgreSQL
    /// enforces it on the server (`statement_timeout`, which covers lock waits too). SQLite has
    /// no server to cancel a running statement, so there it bounds only lock waits
    /// (`busy_timeout`): the one unbounded wait on a local file. `None` turns it off.
    pub statement_timeout: Option<Duration>,
    /// Store calls that take at least this long are counted as slow and logged.
    pub slow_query_threshold: Duration,
    /// PostgreSQL only: a read replica for the reads that tolerate replication lag (see
    /// [`Store`]). When it cannot be reached those reads go to the primary.
    pub read_url: Option<String>,
}

impl StoreOptions {
    /// The embedded default: `signalbox.db` inside `data_dir` (created if missing).
    pub fn sqlite_in(data_dir: &Path) -> StoreOptions {
        StoreOptions::from_url(format!(
            "sqlite://{}?mode=rwc",
            data_dir.join(SQLITE_FILE).display()
        ))
    }

    pub fn from_url(url: impl Into<String>) -> StoreOptions {
        StoreOptions {
            url: url.into(),
            schema: None,
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(3600)),
            statement_timeout: Some(Duration::from_secs(30)),
            slow_query_threshold: Duration::from_secs(1),
            read_url: None,
        }
    }
}

/// How long a read waits for a replica connection before it goes to the primary instead. A
/// replica that refuses connections would otherwise hold reads for the whole acquire timeout
/// (the pool retries refused connections until then).
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// After a replica failure, reads go to the primary for this long before the replica is tried
/// again, so a dead replica costs one slow read per period, not one per read.
const REPLICA_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The file name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "signalbox.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    /// An optimistic-concurrency check failed: the record is not at the version the caller
    /// last read (HTTP 412). `current` is known when the check failed before writing, and
    /// `None` when another writer won the race between the read and the write.
    #[error("{what} is not at version {expected}")]
    VersionMismatch {
        what: String,
        expected: i64,
        current: Option<i64>,
    },
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade signalbox")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("could not create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Revoking this key would leave the tenant without an active admin key, so nobody could
    /// manage its keys over the API (HTTP 409 `last_admin_key`).
    #[error("key {key_id} is the last active admin key of tenant {tenant_id}; issue another admin key first")]
    LastAdminKey { key_id: String, tenant_id: String },
    /// A statement ran past the statement timeout (PostgreSQL cancelled it), or on SQLite
    /// waited that long for another writer's lock.
    #[error("a database statement ran past the statement timeout")]
    StatementTimeout,
    /// Every connection of the pool stayed in use for the whole acquire timeout.
    #[error("no database connection became free within the acquire timeout")]
    PoolTimedOut,
    /// A job is in a status the asked change does not apply to (cancelling a finished job,
    /// retrying one that is not dead or failed): HTTP 409.
    #[error("job {job_id} is {status}; it cannot be {action}")]
    JobState {
        job_id: String,
        status: ::jobs::JobStatus,
        action: &'static str,
    },
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::PoolTimedOut => StoreError::PoolTimedOut,
            sqlx::Error::Database(db) if is_statement_timeout(db.as_ref()) => {
                StoreError::StatementTimeout
            }
            _ => StoreError::Database(e),
        }
    }
}

/// PostgreSQL's `query_canceled` (57014), or SQLite's `SQLITE_BUSY` (5, or an extended code
/// of it such as 773 `SQLITE_BUSY_TIMEOUT`), which it returns once `busy_timeout` has passed.
/// 57014 also means an operator's `pg_cancel_backend`; the message cannot tell them apart,
/// since its language follows the server's `lc_messages`, and either way a retry is the
/// answer.
fn is_statement_timeout(db: &dyn sqlx::error::DatabaseError) -> bool {
    match db.code().as_deref() {
        Some("57014") => true,
        // SQLite's codes are numbers below 10,000; PostgreSQL's SQLSTATEs are five characters.
        Some(code) if code.len() < 5 => code.parse::<u32>().is_ok_and(|c| c & 0xff == 5),
        Some(_) => false,
        None => false,
    }
}

impl StoreError {
    /// Whether the database itself is unreachable or overloaded (as opposed to bad input).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::StatementTimeout | StoreError::PoolTimedOut
        ) || matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

/// A handle on the database; cheap to clone, safe to share between tasks.
///
/// With a read replica ([`StoreOptions::read_url`]), the reads that tolerate replication lag go
/// to it: profiles by id list, segment pages and statistics, calculation history, flag audit
/// history, experiment analysis and the operator's segment counts. Everything else stays on the
/// primary: writes, authentication (a revoked key must stop at once), a single profile read
/// (the read cache's loader: a stale answer would be cached for its TTL), flag loads and
/// change sequences (an admin change is reloaded right after it commits), and the reads of
/// read-modify-write cycles (experiments, flag versions). A replica that cannot be reached
/// sends its reads to the primary for a few seconds, counted in [`StoreStats`].
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    replica: Option<AnyPool>,
    backend: Backend,
    /// SQLite allows one writer at a time, and a writer that finds the lock taken waits in
    /// SQLite's busy handler, which sleeps in steps of up to 100 ms. Queuing this process's hot
    /// write transactions here instead hands the lock over at once. (Other processes, such as
    /// the CLI, still meet the busy timeout.) Unused on PostgreSQL.
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    observed: Arc<observe::Observed>,
    /// Job wake-up signals and, on PostgreSQL, the `LISTEN` task's state.
    jobs_hub: Arc<self::jobs::JobHub>,
    /// Concurrent single enqueues, written together (group commit).
    enqueue_group: Arc<self::jobs::EnqueueGroup>,
    /// Milliseconds since `epoch` until which the replica is not tried (0: try it).
    replica_down_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

/// A pooled connection lent to one store call; when dropped it records the call's time under
/// its operation and table.
pub(crate) struct Conn {
    conn: PoolConnection<Any>,
    observed: Arc<observe::Observed>,
    operation: Operation,
    table: Table,
    started: Instant,
}

impl std::ops::Deref for Conn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.observed
            .query_done(self.operation, self.table, self.started.elapsed());
    }
}

impl Store {
    /// Connects, creates the data directory or schema if needed, and applies pending migrations.
    pub async fn connect(options: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&options.url)?;
        if backend == Backend::Sqlite {
            prepare_sqlite_file(&options.url)?;
        }
        let schema = match (&options.schema, backend) {
            (Some(schema), Backend::Postgres) => Some(validate_schema(schema)?),
            (Some(_), Backend::Sqlite) => {
                return Err(StoreError::Invalid {
                    field: "schema",
                    reason: "a schema can only be chosen for PostgreSQL".to_owned(),
                })
            }
            (None, _) => None,
        };
        let replica_options = match (&options.read_url, backend) {
            (None, _) => None,
            (Some(url), Backend::Postgres) => {
                if Backend::from_url(url)? != Backend::Postgres {
                    return Err(StoreError::InvalidUrl(
                        "the read replica must be PostgreSQL, like the primary".to_owned(),
                    ));
                }
                Some(
                    AnyConnectOptions::from_str(url)
                        .map_err(|e| StoreError::InvalidUrl(format!("read replica: {e}")))?
                        .disable_statement_logging(),
                )
            }
            (Some(_), Backend::Sqlite) => {
                return Err(StoreError::Invalid {
                    field: "read_url",
                    reason: "a read replica needs PostgreSQL; SQLite is one local file".to_owned(),
                })
            }
        };
        if options.max_connections == 0 {
            return Err(StoreError::Invalid {
                field: "max_connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        let connect_options = AnyConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .disable_statement_logging();

        // Migrations run without a statement timeout: building an index on a large table may
        // rightly take longer than any query should.
        let mut conn = AnyConnection::connect_with(&connect_options).await?;
        if let Some(schema) = &schema {
            sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&mut conn)
                .await?;
        }
        if let Some(sql) = session_sql(backend, schema.as_deref(), None) {
            conn.execute(sqlx::raw_sql(&sql)).await?;
        }
        migrations::run(&mut conn, backend).await?;
        drop(conn);

        let statement_timeout = options.statement_timeout.filter(|t| !t.is_zero());
        let pool_options = |acquire_timeout: Duration| {
            let schema = schema.clone();
            AnyPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(acquire_timeout)
                .idle_timeout(options.idle_timeout)
                .max_lifetime(options.max_lifetime)
                .after_connect(move |conn, _meta| {
                    let sql = session_sql(backend, schema.as_deref(), statement_timeout);
                    Box::pin(async move {
                        if let Some(sql) = sql {
                            conn.execute(sqlx::raw_sql(&sql)).await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = pool_options(options.acquire_timeout)
            .connect_with(connect_options)
            .await?;
        // Lazy: a replica that is down at start must not stop the start; its reads go to the
        // primary until it answers.
        let replica = replica_options.map(|replica| {
            pool_options(options.acquire_timeout.min(REPLICA_ACQUIRE_TIMEOUT))
                .connect_lazy_with(replica)
        });
        Ok(Store {
            pool,
            replica,
            backend,
            sqlite_writer: Arc::default(),
            jobs_hub: Arc::new(self::jobs::JobHub::new(
                backend,
                &options.url,
                schema.as_deref(),
            )),
            enqueue_group: Arc::default(),
            observed: Arc::new(observe::Observed::new(options.slow_query_threshold)),
            replica_down_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    /// A connection from the primary for one store call of `operation` on `table`.
    pub(crate) async fn acquire(
        &self,
        operation: Operation,
        table: Table,
    ) -> Result<Conn, StoreError> {
        Ok(self
            .acquire_from(PoolRole::Primary, &self.pool, operation, table)
            .await?)
    }

    /// A connection for a read that tolerates replication lag: from the replica when one is
    /// configured and answering, else from the primary.
    pub(crate) async fn acquire_read(
        &self,
        operation: Operation,
        table: Table,
    ) -> Result<Conn, StoreError> {
        if let Some(replica) = &self.replica {
            let now_ms = self.epoch.elapsed().as_millis() as u64;
            if now_ms >= self.replica_down_until_ms.load(Ordering::Relaxed) {
                match self
                    .acquire_from(PoolRole::Replica, replica, operation, table)
                    .await
                {
                    Ok(conn) => {
                        self.observed.replica_reads.fetch_add(1, Ordering::Relaxed);
                        return Ok(conn);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = REPLICA_RETRY_AFTER.as_secs(),
                            "read replica unavailable; reading from the primary");
                        let until = self.epoch.elapsed() + REPLICA_RETRY_AFTER;
                        self.replica_down_until_ms
                            .store(until.as_millis() as u64, Ordering::Relaxed);
                    }
                }
            }
            self.observed
                .replica_fallbacks
                .fetch_add(1, Ordering::Relaxed);
        }
        self.acquire(operation, table).await
    }

    async fn acquire_from(
        &self,
        role: PoolRole,
        pool: &AnyPool,
        operation: Operation,
        table: Table,
    ) -> Result<Conn, sqlx::Error> {
        let counters = self.observed.pool_counters(role);
        let asked = Instant::now();
        let result = pool.acquire().await;
        counters.acquire_wait.observe(asked.elapsed());
        match result {
            Ok(conn) => Ok(Conn {
                conn,
                observed: self.observed.clone(),
                operation,
                table,
                started: Instant::now(),
            }),
            Err(e) => {
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    counters.acquire_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// What the store has measured so far, and its pools now.
    pub fn stats(&self) -> StoreStats {
        let mut pools = vec![observe::pool_counters_snapshot(
            PoolRole::Primary,
            &self.pool,
            &self.observed.primary,
        )];
        if let Some(replica) = &self.replica {
            pools.push(observe::pool_counters_snapshot(
                PoolRole::Replica,
                replica,
                &self.observed.replica,
            ));
        }
        StoreStats {
            backend: self.backend,
            queries: self.observed.queries(),
            pools,
            replica_reads: self.observed.replica_reads.load(Ordering::Relaxed),
            replica_fallbacks: self.observed.replica_fallbacks.load(Ordering::Relaxed),
            slow_query_threshold: self.observed.slow_threshold,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Takes this process's SQLite write turn (see `sqlite_writer`); `None` on PostgreSQL.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        migrations::ping(&mut conn).await
    }

    /// Waits for connections to be returned, then closes the pools.
    pub async fn close(&self) {
        self.jobs_hub.stop();
        self.pool.close().await;
        if let Some(replica) = &self.replica {
            replica.close().await;
        }
    }

    // ---- tenants -------------------------------------------------------------------------

    /// Creates a tenant. Names are unique: a second tenant with the same name is a conflict.
    pub async fn create_tenant(&self, name: &str, tier: Tier) -> Result<Tenant, StoreError> {
        let name = validate_text("name", name, 100)?;
        let tenant = Tenant {
            id: format!("tn_{}", uuid::Uuid::now_v7().simple()),
            name: name.to_owned(),
            tier,
            created_at_ms: now_ms(),
        };
        let mut conn = self.acquire(Operation::Insert, Table::Tenants).await?;
        sqlx::query("INSERT INTO tenants (id, name, tier, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tier.as_str())
            .bind(tenant.created_at_ms)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or(e, || format!("tenant named '{name}'")))?;
        Ok(tenant)
    }

    pub async fn tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Tenants).await?;
        sqlx::query("SELECT id, name, tier, created_at_ms FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| tenant_from_row(&row, 0))
            .transpose()
    }

    /// Operator view: every tenant, oldest first. Not reachable from any tenant's API key.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::Tenants).await?;
        sqlx::query("SELECT id, name, tier, created_at_ms FROM tenants ORDER BY created_at_ms, id")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| tenant_from_row(row, 0))
            .collect()
    }

    // ---- API keys ------------------------------------------------------------------------

    /// Mints a key for a tenant. The returned secret is not stored and cannot be shown again.
    pub async fn issue_api_key(
        &self,
        tenant_id: &str,
        scopes: Scopes,
        label: Option<&str>,
    ) -> Result<IssuedKey, StoreError> {
        self.issue_key(
            tenant_id,
            NewKey {
                scopes,
                label,
                user_id: None,
            },
        )
        .await
    }

    /// Mints a key for a tenant, optionally bound to a user. The returned secret is not stored
    /// and cannot be shown again.
    pub async fn issue_key(
        &self,
        tenant_id: &str,
        key: NewKey<'_>,
    ) -> Result<IssuedKey, StoreError> {
        let NewKey {
            scopes,
            label,
            user_id,
        } = key;
        if scopes.is_empty() {
            return Err(StoreError::Invalid {
                field: "scopes",
                reason: "at least one of read, write, admin, assert_user, read_clear is required"
                    .to_owned(),
            });
        }
        let label = label.map(|l| validate_text("label", l, 100)).transpose()?;
        if let Some(user) = user_id {
            if !valid_user_id(user) {
                return Err(StoreError::Invalid {
                    field: "user_id",
                    reason: "must be 1 to 128 visible ASCII characters (as X-User-Id)".to_owned(),
                });
            }
        }
        if self.tenant(tenant_id).await?.is_none() {
            return Err(StoreError::NotFound {
                what: format!("tenant '{tenant_id}'"),
            });
        }
        let secret = secret::mint(&mut rand::rngs::OsRng);
        let info = ApiKeyInfo {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            tenant_id: tenant_id.to_owned(),
            prefix: secret[..secret::DISPLAY_PREFIX_LEN].to_owned(),
            scopes,
            label: label.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let mut conn = self.acquire(Operation::Insert, Table::ApiKeys).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, scopes, label, user_id, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&info.id)
        .bind(&info.tenant_id)
        .bind(secret::hash(&secret))
        .bind(&info.prefix)
        .bind(info.scopes.to_string())
        .bind(info.label.clone())
        .bind(info.user_id.clone())
        .bind(info.created_at_ms)
        .execute(&mut *conn)
        .await?;
        Ok(IssuedKey { info, secret })
    }

    /// Finds who holds `presented`, if it is a live key. Malformed input is simply not a key.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, StoreError> {
        if !secret::looks_like_key(presented) {
            return Ok(None);
        }
        self.authenticate_hash(&secret::hash(presented)).await
    }

    /// Like [`Store::authenticate`], for a caller that already holds the key's
    /// [`secret::hash`] (the server keys its cache by it, so it hashes once).
    pub async fn authenticate_hash(&self, key_hash: &str) -> Result<Option<Principal>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::ApiKeys).await?;
        let row = sqlx::query(
            "SELECT t.id, t.name, t.tier, t.created_at_ms, k.id, k.scopes, k.user_id
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1 AND k.revoked_at_ms IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Principal {
            tenant: tenant_from_row(&row, 0)?,
            key_id: row.try_get(4)?,
            scopes: scopes_from_row(&row, 5)?,
            user_id: row.try_get(6)?,
        }))
    }

    /// The tenant's keys, newest first, revoked ones included.
    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::ApiKeys).await?;
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms DESC, id DESC"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// One key of one tenant; another tenant's key is `None`, exactly like a missing one.
    pub async fn api_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        if !could_be_stored(key_id) {
            return Ok(None);
        }
        let mut conn = self.acquire(Operation::Select, Table::ApiKeys).await?;
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
    }

    /// Revokes one of the tenant's keys. Revoking twice keeps the first revocation time.
    /// Returns `None` when the tenant has no such key.
    ///
    /// The tenant's last active admin key is not revoked: that would leave nobody able to manage
    /// the tenant's keys over the API. It fails with [`StoreError::LastAdminKey`]; an operator
    /// issues another admin key first (`signalbox keys create --scopes admin`), or uses
    /// [`Store::revoke_api_key_allowing_lockout`]. The check and the revocation are one
    /// serialised step, so two admins revoking each other's keys at once leave one standing.
    pub async fn revoke_api_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.revoke_key(tenant_id, key_id, true).await
    }

    /// [`Store::revoke_api_key`] without the last-admin rule, for an operator who means to lock
    /// the tenant out of its admin API (recovery: `signalbox keys create --scopes admin`).
    pub async fn revoke_api_key_allowing_lockout(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.revoke_key(tenant_id, key_id, false).await
    }

    async fn revoke_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        keep_last_admin: bool,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        if !could_be_stored(key_id) {
            return Ok(None);
        }
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::ApiKeys).await?;
        let mut tx = conn.begin().await?;
        // Touching the tenant's row first serialises its revocations: a row lock on
        // PostgreSQL (a concurrent revoker waits, then its statement sees this one's commit),
        // the write lock on SQLite. Without it, two admins revoking each other's keys at once
        // would each see the other's key still active and leave none.
        sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1
             WHERE tenant_id = $2 AND id = $3 AND revoked_at_ms IS NULL
               AND ($4 = 0
                    OR (',' || scopes || ',') NOT LIKE '%,admin,%'
                    OR EXISTS (SELECT 1 FROM api_keys other
                               WHERE other.tenant_id = $2 AND other.id <> $3
                                 AND other.revoked_at_ms IS NULL
                                 AND (',' || other.scopes || ',') LIKE '%,admin,%'))",
        )
        .bind(now_ms())
        .bind(tenant_id)
        .bind(key_id)
        .bind(i64::from(keep_last_admin))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let key = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()?;
        tx.commit().await?;
        match key {
            // Still active although it exists: the only reason is the last-admin rule.
            Some(key) if revoked == 0 && key.revoked_at_ms.is_none() => {
                Err(StoreError::LastAdminKey {
                    key_id: key.id,
                    tenant_id: key.tenant_id,
                })
            }
            key => Ok(key),
        }
    }

    /// Operator lookup for the CLI: which tenant owns a key id, whoever it is.
    pub async fn operator_key_owner(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::ApiKeys).await?;
        let row = sqlx::query("SELECT tenant_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(StoreError::from)
    }
}

const KEY_COLUMNS: &str =
    "id, tenant_id, prefix, scopes, label, created_at_ms, revoked_at_ms, user_id";

fn key_from_row(row: &AnyRow) -> Result<ApiKeyInfo, StoreError> {
    Ok(ApiKeyInfo {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        prefix: row.try_get(2)?,
        scopes: scopes_from_row(row, 3)?,
        label: row.try_get(4)?,
        created_at_ms: row.try_get(5)?,
        revoked_at_ms: row.try_get(6)?,
        user_id: row.try_get(7)?,
    })
}

/// A user id as `X-User-Id` accepts it: 1-128 visible ASCII characters.
pub fn valid_user_id(user: &str) -> bool {
    !user.is_empty() && user.len() <= 128 && user.bytes().all(|b| b.is_ascii_graphic())
}

fn tenant_from_row(row: &AnyRow, first: usize) -> Result<Tenant, StoreError> {
    let tier: String = row.try_get(first + 2)?;
    Ok(Tenant {
        id: row.try_get(first)?,
        name: row.try_get(first + 1)?,
        tier: tier
            .parse()
            .map_err(|e: ParseNameError| StoreError::Corrupt {
                table: "tenants",
                reason: e.to_string(),
            })?,
        created_at_ms: row.try_get(first + 3)?,
    })
}

fn scopes_from_row(row: &AnyRow, index: usize) -> Result<Scopes, StoreError> {
    let scopes: String = row.try_get(index)?;
    scopes
        .parse()
        .map_err(|e: ParseNameError| StoreError::Corrupt {
            table: "api_keys",
            reason: e.to_string(),
        })
}

/// Turns a unique-constraint violation into a [`StoreError::Conflict`].
fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict { what: what() }
        }
        _ => StoreError::from(e),
    }
}

/// Whether a lookup value could match a stored one. PostgreSQL text cannot hold NUL (it fails
/// the query rather than matching nothing), and nothing stored contains one.
fn could_be_stored(value: &str) -> bool {
    !value.contains('\0')
}

fn validate_text<'a>(
    field: &'static str,
    value: &'a str,
    max: usize,
) -> Result<&'a str, StoreError> {
    let trimmed = value.trim();
    let reason = if trimmed.is_empty() {
        "must not be empty"
    } else if trimmed.chars().count() > max {
        "is too long"
    } else if trimmed.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(trimmed);
    };
    Err(StoreError::Invalid {
        field,
        reason: format!("{reason} (1 to {max} printable characters)"),
    })
}

fn validate_schema(schema: &str) -> Result<String, StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(schema.to_owned())
    } else {
        Err(StoreError::Invalid {
            field: "schema",
            reason: "use 1-63 characters of a-z, 0-9 and _, not starting with a digit".to_owned(),
        })
    }
}

/// Prepares an SQLite database file so that only its owner can read it, whatever the umask:
/// missing directories are created 0700, a missing database file is created 0600 before
/// SQLite opens it (SQLite gives its `-wal` and `-shm` files the database file's mode), and
/// an existing database file and its `-wal`/`-shm` readable by others (made by an older
/// release) are narrowed to 0600. An existing directory keeps its mode.
fn prepare_sqlite_file(url: &str) -> Result<(), StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(());
    }
    let path = Path::new(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(parent)
            .map_err(|source| StoreError::DataDir {
                path: parent.to_owned(),
                source,
            })?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let data_dir_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::DataDir { path, source }
        };
        // Only where SQLite would create the file anyway (`mode=rwc`).
        if query.split('&').any(|p| p == "mode=rwc") {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(data_dir_error(path)(e)),
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = Path::new(&file);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                    .map_err(data_dir_error(file))?;
            }
        }
    }
    Ok(())
}

/// Per-connection settings: WAL and a busy timeout on SQLite (the CLI may write while the
/// server runs; the statement timeout when set, else 5 s), the schema and the statement
/// timeout on PostgreSQL.
///
/// A batch write with random keys (OTLP span ids, conversation ids) dirties a page per row in
/// each index. SQLite's defaults spill dirty pages to the WAL once 2 MiB of them are held, then
/// read them back, and checkpoint every 4 MiB of WAL, inside the committing request; holding
/// up to 16,000 dirty pages (62.5 MiB) of a transaction (`cache_spill`) and checkpointing every
/// 40 MiB (`wal_autocheckpoint`) store 512-span OTLP batches about a fifth faster and shorten
/// each request as much (docs/llm-observability.md, "Ingest speed"). Durability is unchanged:
/// every commit is still synced. (SQLite also reads `cache_spill`'s number as a boolean from its
/// low byte, so a count such as 16384 would switch spilling off altogether.)
fn session_sql(
    backend: Backend,
    schema: Option<&str>,
    statement_timeout: Option<Duration>,
) -> Option<String> {
    let millis = statement_timeout.map(|t| t.as_millis().clamp(1, i32::MAX as u128));
    match backend {
        Backend::Sqlite => Some(format!(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; \
             PRAGMA cache_spill = 16000; PRAGMA wal_autocheckpoint = 10000",
            millis.unwrap_or(5000)
        )),
        Backend::Postgres => {
            let mut sql = Vec::new();
            if let Some(schema) = schema {
                sql.push(format!("SET search_path TO {schema}"));
            }
            if let Some(ms) = millis {
                sql.push(format!("SET statement_timeout = {ms}"));
            }
            (!sql.is_empty()).then(|| sql.join("; "))
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod session_tests {
    use super::*;

    /// Every pooled SQLite connection gets the batch-write settings, not only the first.
    #[tokio::test]
    async fn sqlite_connections_hold_a_batch_checkpoint_every_40_mib_and_sync_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&StoreOptions::sqlite_in(dir.path()))
            .await
            .unwrap();
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut conn = store.pool.acquire().await.unwrap();
            let spill: i64 = sqlx::query_scalar("PRAGMA cache_spill")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let checkpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!((spill, checkpoint), (16000, 10000));
            // Every commit is synced: 2 is FULL.
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(synchronous, 2);
            conns.push(conn);
        }
    }
}
