//! Flag exposures, experiments and experiment metric events: what an experiment's analysis is
//! computed from. Every query is keyed by tenant.
//!
//! - An exposure row records which variant of a flag a user (targeting key) was shown, once per
//!   (tenant, environment, flag, user): the variant of the user's earliest exposure is their
//!   assignment and is kept, whatever later evaluations return; the last-seen time and the count
//!   follow every exposure.
//! - An experiment row keeps the `flags` crate's `Experiment` as JSON text (the store does not
//!   interpret it), the sequential test's running minimum p-value per variant, and a version
//!   for optimistic concurrency.
//! - Metric events belong to an experiment; a repeated client `event_id` is stored once.
//!
//! [`Store::experiment_analysis`] joins each metric event to its user's exposure of the
//! experiment's flag to find the variant: every user assigned inside one of the experiment's
//! running windows counts (as 0, or as not converted, without events); users assigned outside
//! them (before the start, while paused, after the end) and users never exposed do not.
//! - An experiment created with a flag ([`Store::create_experiment_owning`]) owns it: a second
//!   experiment on the same (environment, flag) is a [`StoreError::Conflict`].

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection as _, Row};

use crate::flags::validate_name;
use crate::weber::{foreign_key_or, values_list};
use crate::{could_be_stored, now_ms, Operation, Store, StoreError, Table};

/// Rows per exposure upsert: 8 parameters each.
const EXPOSURE_CHUNK: usize = 500;
/// Rows per event insert: 8 parameters each.
const EVENT_CHUNK: usize = 500;
/// Longest targeting key and event id, in bytes.
pub const MAX_TARGETING_KEY_BYTES: usize = 256;
/// Largest experiment definition accepted, in bytes of JSON text.
pub const MAX_EXPERIMENT_DEFINITION_BYTES: usize = 256 * 1024;
/// Up to this many exposed users in every variant, value metrics are returned as raw per-user
/// values (which the Mann-Whitney U test needs); above it, as summaries computed in SQL.
pub const RAW_VALUES_LIMIT: u64 = 100_000;

/// The largest absolute value of a metric event the store keeps or counts (the `flags` crate's
/// `MAX_ABS_EVENT_VALUE_LIMIT`, the widest bound a metric may set). It keeps every sum and
/// sum of squares an analysis computes, in SQL or in Rust, far from overflowing; events stored
/// before the bound existed and beyond it are left out of analyses.
pub const MAX_EVENT_ABS_VALUE: f64 = 1e12;

/// One evaluation of a flag for a user, as the exposure recorder hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exposure {
    /// The environment the flag was evaluated in.
    pub environment: String,
    /// The flag evaluated.
    pub flag_key: String,
    /// Who it was evaluated for (OpenFeature's targeting key).
    pub targeting_key: String,
    /// The variant returned.
    pub variant: String,
    /// When (epoch milliseconds).
    pub at_ms: i64,
}

impl Exposure {
    /// Checks what the store would refuse, so a caller can drop a bad exposure on its own
    /// instead of failing the batch it would travel in.
    pub fn validate(&self) -> Result<(), StoreError> {
        validate_name("environment", &self.environment)?;
        validate_name("flag_key", &self.flag_key)?;
        validate_targeting_key("targeting_key", &self.targeting_key)?;
        validate_targeting_key("variant", &self.variant)
    }
}

/// A stored exposure row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureRecord {
    /// The environment.
    pub environment: String,
    /// The flag.
    pub flag_key: String,
    /// The user.
    pub targeting_key: String,
    /// The variant of the user's earliest exposure: their assignment.
    pub variant: String,
    /// Earliest exposure (epoch milliseconds).
    pub first_seen_ms: i64,
    /// Latest exposure (epoch milliseconds).
    pub last_seen_ms: i64,
    /// How many exposures were recorded.
    pub count: i64,
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRecord {
    /// The owning tenant.
    pub tenant_id: String,
    /// The experiment key, unique per tenant.
    pub key: String,
    /// The environment whose exposures assign its users.
    pub environment: String,
    /// The experiment (definition and lifecycle) as JSON text.
    pub definition_json: String,
    /// The sequential test's running minimum p-value per variant (empty before the first look).
    pub sequential_p: BTreeMap<String, f64>,
    /// 1 when created, one more per change: the ETag / If-Match value.
    pub version: i64,
    /// When it was created (epoch milliseconds).
    pub created_at_ms: i64,
    /// When it last changed (epoch milliseconds).
    pub updated_at_ms: i64,
}

/// A metric event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentEvent {
    /// The user (the targeting key their flag evaluations used).
    pub targeting_key: String,
    /// The metric's key.
    pub metric_key: String,
    /// The value (1 for a conversion).
    pub value: f64,
    /// When it happened (epoch milliseconds).
    pub at_ms: i64,
    /// The client's id for the event: a repeat of a stored id is not stored again.
    pub event_id: Option<String>,
}

/// A stored metric event, as voiding it returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMetricEvent {
    /// The client's id for the event.
    pub event_id: String,
    /// The user (targeting key).
    pub targeting_key: String,
    /// The metric's key.
    pub metric_key: String,
    /// The value.
    pub value: f64,
    /// When it happened (epoch milliseconds).
    pub at_ms: i64,
    /// When it was voided (epoch milliseconds); `None` while it counts.
    pub voided_at_ms: Option<i64>,
    /// Who voided it (an API key id, or `cli`).
    pub voided_by: Option<String>,
}

/// How a batch of metric events fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventsStored {
    /// Newly stored.
    pub stored: u64,
    /// Carrying an `event_id` already stored (or repeated in the batch): not stored again.
    pub duplicates: u64,
}

/// How a metric is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricShape {
    /// A user converted when they have any event of the metric with a value above 0.
    Conversion,
    /// A user's value is the sum of their events' values (0 without events).
    Value,
}

/// What the analysis of one metric in one variant is computed from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricObservations {
    /// Users who converted, of the `n` exposed.
    Conversions {
        /// Converted users.
        conversions: u64,
        /// Exposed users.
        n: u64,
    },
    /// Every exposed user's value (in no particular order).
    Values(Vec<f64>),
    /// The values' count, mean and unbiased variance, when there are too many to return.
    Summary {
        /// Exposed users.
        n: u64,
        /// Mean value.
        mean: f64,
        /// Unbiased sample variance (denominator n - 1; 0 for a single user).
        variance: f64,
    },
}

/// An experiment's analysis inputs, per variant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalysisInputs {
    /// Exposed users per variant (every requested variant is present, 0 if nobody saw it).
    pub users: BTreeMap<String, u64>,
    /// Per metric key, per variant.
    pub metrics: BTreeMap<String, BTreeMap<String, MetricObservations>>,
}

/// What [`Store::experiment_analysis`] reads.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisQuery<'a> {
    /// The experiment whose events are read.
    pub experiment_key: &'a str,
    /// The environment whose exposures assign users.
    pub environment: &'a str,
    /// The flag whose exposures assign users.
    pub flag_key: &'a str,
    /// The experiment's variants; exposures to any other variant are ignored.
    pub variants: &'a [String],
    /// The metrics to read, with how each is analysed.
    pub metrics: &'a [(String, MetricShape)],
    /// Return raw values while every variant has at most this many users
    /// (normally [`RAW_VALUES_LIMIT`]).
    pub raw_values_limit: u64,
    /// The experiment's running windows: only users whose assignment (first exposure) lies in
    /// one count. Empty: nobody counts (the experiment never ran). At most
    /// [`MAX_ASSIGNMENT_WINDOWS`] are applied.
    pub windows: &'a [AssignmentWindow],
}

/// Most running windows an analysis filters by (the `flags` crate keeps at most 100).
pub const MAX_ASSIGNMENT_WINDOWS: usize = 100;

/// A period in which assignments count: from `start_ms` (inclusive) to `end_ms` (exclusive,
/// `None`: still open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentWindow {
    /// Start (epoch milliseconds).
    pub start_ms: i64,
    /// End (epoch milliseconds), if closed.
    pub end_ms: Option<i64>,
}

/// The SQL condition "`{column}` lies in one of `windows`", with parameters numbered from
/// `first_param`; bind them with [`bind_windows`].
fn window_condition(column: &str, windows: &[AssignmentWindow], first_param: usize) -> String {
    let windows = &windows[..windows.len().min(MAX_ASSIGNMENT_WINDOWS)];
    if windows.is_empty() {
        return "1 = 0".to_owned();
    }
    let mut n = first_param;
    let mut parts = Vec::with_capacity(windows.len());
    for w in windows {
        let part = match w.end_ms {
            Some(_) => {
                let p = format!("({column} >= ${n} AND {column} < ${})", n + 1);
                n += 2;
                p
            }
            None => {
                let p = format!("{column} >= ${n}");
                n += 1;
                p
            }
        };
        parts.push(part);
    }
    format!("({})", parts.join(" OR "))
}

fn bind_windows<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    windows: &[AssignmentWindow],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for w in &windows[..windows.len().min(MAX_ASSIGNMENT_WINDOWS)] {
        query = query.bind(w.start_ms);
        if let Some(end) = w.end_ms {
            query = query.bind(end);
        }
    }
    query
}

const EXPERIMENT_COLUMNS: &str = "tenant_id, experiment_key, environment, definition, \
                                  sequential_p, version, created_at_ms, updated_at_ms";

/// One (environment, flag, user) of a batch, folded from all its exposures in the batch.
struct Folded<'a> {
    first: &'a Exposure,
    last_seen_ms: i64,
    count: i64,
}

impl Store {
    /// Records exposures in one transaction: per (environment, flag, user), the variant of the
    /// earliest exposure stays the user's assignment, the last-seen time and the count follow.
    /// Any invalid exposure fails the whole call with [`StoreError::Invalid`] before anything
    /// is written (use [`Exposure::validate`] to filter first); an unknown tenant is
    /// [`StoreError::NotFound`].
    pub async fn record_exposures(
        &self,
        tenant_id: &str,
        exposures: &[Exposure],
    ) -> Result<(), StoreError> {
        if !could_be_stored(tenant_id) {
            return Err(StoreError::NotFound {
                what: format!("tenant '{}'", tenant_id.escape_debug()),
            });
        }
        for e in exposures {
            e.validate()?;
        }
        // One row per key per statement: PostgreSQL refuses an upsert that touches a row twice.
        // Key order keeps the row locks of concurrent writers (replicas) in one order, so two
        // batches cannot deadlock each other.
        let mut folded: BTreeMap<(&str, &str, &str), Folded<'_>> = BTreeMap::new();
        for e in exposures {
            let slot = folded
                .entry((&e.environment, &e.flag_key, &e.targeting_key))
                .or_insert(Folded {
                    first: e,
                    last_seen_ms: e.at_ms,
                    count: 0,
                });
            if e.at_ms < slot.first.at_ms {
                slot.first = e;
            }
            slot.last_seen_ms = slot.last_seen_ms.max(e.at_ms);
            slot.count += 1;
        }
        let rows: Vec<Folded<'_>> = folded.into_values().collect();
        if rows.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Upsert, Table::FlagExposures)
            .await?;
        let mut tx = conn.begin().await?;
        for chunk in rows.chunks(EXPOSURE_CHUNK) {
            // An exposure older than the stored first one (a late batch from another replica)
            // takes over the assignment; otherwise the stored variant stays.
            let sql = format!(
                "INSERT INTO flag_exposures (tenant_id, environment, flag_key, targeting_key, \
                 variant, first_seen_ms, last_seen_ms, exposure_count) VALUES {} \
                 ON CONFLICT (tenant_id, environment, flag_key, targeting_key) DO UPDATE SET \
                 variant = CASE WHEN excluded.first_seen_ms < flag_exposures.first_seen_ms \
                     THEN excluded.variant ELSE flag_exposures.variant END, \
                 first_seen_ms = CASE WHEN excluded.first_seen_ms < flag_exposures.first_seen_ms \
                     THEN excluded.first_seen_ms ELSE flag_exposures.first_seen_ms END, \
                 last_seen_ms = CASE WHEN excluded.last_seen_ms > flag_exposures.last_seen_ms \
                     THEN excluded.last_seen_ms ELSE flag_exposures.last_seen_ms END, \
                 exposure_count = flag_exposures.exposure_count + excluded.exposure_count",
                values_list(chunk.len(), 8, 1)
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(&row.first.environment)
                    .bind(&row.first.flag_key)
                    .bind(&row.first.targeting_key)
                    .bind(&row.first.variant)
                    .bind(row.first.at_ms)
                    .bind(row.last_seen_ms)
                    .bind(row.count);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| foreign_key_or(e, tenant_id))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One user's exposure to a flag in an environment, if any.
    pub async fn exposure(
        &self,
        tenant_id: &str,
        environment: &str,
        flag_key: &str,
        targeting_key: &str,
    ) -> Result<Option<ExposureRecord>, StoreError> {
        if ![tenant_id, environment, flag_key, targeting_key]
            .into_iter()
            .all(could_be_stored)
        {
            return Ok(None);
        }
        let mut conn = self
            .acquire(Operation::Select, Table::FlagExposures)
            .await?;
        let row = sqlx::query(
            "SELECT environment, flag_key, targeting_key, variant, first_seen_ms, last_seen_ms,
                    exposure_count
             FROM flag_exposures
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND targeting_key = $4",
        )
        .bind(tenant_id)
        .bind(environment)
        .bind(flag_key)
        .bind(targeting_key)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| {
            Ok(ExposureRecord {
                environment: r.try_get(0)?,
                flag_key: r.try_get(1)?,
                targeting_key: r.try_get(2)?,
                variant: r.try_get(3)?,
                first_seen_ms: r.try_get(4)?,
                last_seen_ms: r.try_get(5)?,
                count: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Creates an experiment at version 1 with no sequential p-values, owning no flag. The same
    /// key twice in a tenant is a [`StoreError::Conflict`]; an unknown tenant is
    /// [`StoreError::NotFound`].
    pub async fn create_experiment(
        &self,
        tenant_id: &str,
        key: &str,
        environment: &str,
        definition_json: &str,
    ) -> Result<ExperimentRecord, StoreError> {
        self.create_experiment_owning(tenant_id, key, environment, None, definition_json)
            .await
    }

    /// Creates an experiment as [`Store::create_experiment`] does, owning `flag_key` in its
    /// environment: a flag already owned by another experiment is a [`StoreError::Conflict`]
    /// naming the flag.
    pub async fn create_experiment_owning(
        &self,
        tenant_id: &str,
        key: &str,
        environment: &str,
        flag_key: Option<&str>,
        definition_json: &str,
    ) -> Result<ExperimentRecord, StoreError> {
        if let Some(flag) = flag_key {
            validate_name("flag_key", flag)?;
        }
        if !could_be_stored(tenant_id) {
            return Err(StoreError::NotFound {
                what: format!("tenant '{}'", tenant_id.escape_debug()),
            });
        }
        validate_name("key", key)?;
        validate_name("environment", environment)?;
        validate_definition(definition_json)?;
        let at_ms = now_ms();
        let record = ExperimentRecord {
            tenant_id: tenant_id.to_owned(),
            key: key.to_owned(),
            environment: environment.to_owned(),
            definition_json: definition_json.to_owned(),
            sequential_p: BTreeMap::new(),
            version: 1,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
        };
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Insert, Table::Experiments).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO experiments ({EXPERIMENT_COLUMNS}, flag_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&record.tenant_id)
        .bind(&record.key)
        .bind(&record.environment)
        .bind(&record.definition_json)
        .bind(encode_p(&record.sequential_p)?)
        .bind(record.version)
        .bind(record.created_at_ms)
        .bind(record.updated_at_ms)
        .bind(flag_key)
        .execute(&mut *conn)
        .await;
        drop(conn);
        drop(_turn);
        match inserted {
            Ok(_) => Ok(record),
            Err(e) => match crate::conflict_or(e, || format!("experiment '{key}'")) {
                StoreError::Database(e) => Err(foreign_key_or(e, tenant_id)),
                // Two unique constraints: the key's, or the flag's owner.
                StoreError::Conflict { what } => {
                    match (flag_key, self.experiment(tenant_id, key).await?) {
                        (Some(flag), None) => Err(StoreError::Conflict {
                            what: format!("an experiment owning flag '{flag}' in '{environment}'"),
                        }),
                        _ => Err(StoreError::Conflict { what }),
                    }
                }
                other => Err(other),
            },
        }
    }

    /// One experiment of the tenant; another tenant's is `None`, exactly like a missing one.
    pub async fn experiment(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<ExperimentRecord>, StoreError> {
        if ![tenant_id, key].into_iter().all(could_be_stored) {
            return Ok(None);
        }
        let mut conn = self.acquire(Operation::Select, Table::Experiments).await?;
        sqlx::query(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments
             WHERE tenant_id = $1 AND experiment_key = $2"
        ))
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| experiment_from_row(&row))
        .transpose()
    }

    /// Exposed users per (environment, flag) of the tenant, for lists that show how many users
    /// each experiment's flag has reached: one grouped read instead of one per experiment.
    pub async fn exposed_users_by_flag(
        &self,
        tenant_id: &str,
    ) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        if !could_be_stored(tenant_id) {
            return Ok(BTreeMap::new());
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagExposures)
            .await?;
        let rows = sqlx::query(
            "SELECT environment, flag_key, COUNT(*) FROM flag_exposures
             WHERE tenant_id = $1 GROUP BY environment, flag_key",
        )
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut users = BTreeMap::new();
        for row in rows {
            users.insert((row.try_get(0)?, row.try_get(1)?), count(&row, 2)?);
        }
        Ok(users)
    }

    /// The tenant's experiments in key order (byte order on both backends).
    pub async fn experiments(&self, tenant_id: &str) -> Result<Vec<ExperimentRecord>, StoreError> {
        if !could_be_stored(tenant_id) {
            return Ok(Vec::new());
        }
        let mut conn = self.acquire(Operation::Select, Table::Experiments).await?;
        let mut all = sqlx::query(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(experiment_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        // Sorted here: PostgreSQL's collation and SQLite's byte order disagree on mixed case.
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    /// Replaces an experiment's definition and sequential p-values if it is still at
    /// `expected_version`, and bumps the version. Another version is a
    /// [`StoreError::VersionMismatch`]; a missing experiment is [`StoreError::NotFound`].
    pub async fn update_experiment(
        &self,
        tenant_id: &str,
        key: &str,
        definition_json: &str,
        sequential_p: &BTreeMap<String, f64>,
        expected_version: i64,
    ) -> Result<ExperimentRecord, StoreError> {
        if ![tenant_id, key].into_iter().all(could_be_stored) {
            return Err(StoreError::NotFound {
                what: format!("experiment '{}'", key.escape_debug()),
            });
        }
        validate_definition(definition_json)?;
        let p_json = encode_p(sequential_p)?;
        let at_ms = now_ms();
        let _turn = self.write_turn().await;
        // The version in the WHERE makes check-and-write one atomic statement.
        let mut conn = self.acquire(Operation::Update, Table::Experiments).await?;
        let updated = sqlx::query(&format!(
            "UPDATE experiments SET definition = $1, sequential_p = $2, version = version + 1,
                                    updated_at_ms = $3
             WHERE tenant_id = $4 AND experiment_key = $5 AND version = $6
             RETURNING {EXPERIMENT_COLUMNS}"
        ))
        .bind(definition_json)
        .bind(&p_json)
        .bind(at_ms)
        .bind(tenant_id)
        .bind(key)
        .bind(expected_version)
        .fetch_optional(&mut *conn)
        .await?;
        // Both given back before the read below takes a connection of its own.
        drop(conn);
        drop(_turn);
        if let Some(row) = updated {
            return experiment_from_row(&row);
        }
        match self.experiment(tenant_id, key).await? {
            None => Err(StoreError::NotFound {
                what: format!("experiment '{key}'"),
            }),
            Some(current) => Err(StoreError::VersionMismatch {
                what: format!("experiment '{key}'"),
                expected: expected_version,
                current: Some(current.version),
            }),
        }
    }

    /// Stores an experiment's metric events in one transaction. Events whose `event_id` the
    /// experiment already has (or that repeat one earlier in the batch) are counted as
    /// duplicates and not stored. Invalid events fail the whole call before anything is
    /// written; a missing experiment is [`StoreError::NotFound`].
    pub async fn insert_experiment_events(
        &self,
        tenant_id: &str,
        experiment_key: &str,
        events: &[ExperimentEvent],
        received_at_ms: i64,
    ) -> Result<EventsStored, StoreError> {
        if !could_be_stored(tenant_id) {
            return Err(StoreError::NotFound {
                what: format!("tenant '{}'", tenant_id.escape_debug()),
            });
        }
        validate_name("key", experiment_key)?;
        for e in events {
            validate_targeting_key("targeting_key", &e.targeting_key)?;
            validate_targeting_key("metric", &e.metric_key)?;
            if !(e.value.is_finite() && e.value.abs() <= MAX_EVENT_ABS_VALUE) {
                return Err(StoreError::Invalid {
                    field: "value",
                    reason: format!("must be a finite number within ±{MAX_EVENT_ABS_VALUE:e}"),
                });
            }
            if let Some(id) = &e.event_id {
                validate_targeting_key("event_id", id)?;
            }
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::ExperimentEvents)
            .await?;
        let mut tx = conn.begin().await?;
        let mut stored = 0;
        for chunk in events.chunks(EVENT_CHUNK) {
            let sql = format!(
                "INSERT INTO experiment_events (tenant_id, experiment_key, targeting_key, \
                 metric_key, value, at_ms, event_id, received_at_ms) VALUES {} \
                 ON CONFLICT (tenant_id, experiment_key, event_id) DO NOTHING",
                values_list(chunk.len(), 8, 1)
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(tenant_id)
                    .bind(experiment_key)
                    .bind(&e.targeting_key)
                    .bind(&e.metric_key)
                    .bind(e.value)
                    .bind(e.at_ms)
                    .bind(e.event_id.as_deref())
                    .bind(received_at_ms);
            }
            stored += query
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db)
                        if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                    {
                        StoreError::NotFound {
                            what: format!("experiment '{experiment_key}'"),
                        }
                    }
                    _ => StoreError::Database(e),
                })?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(EventsStored {
            stored,
            duplicates: events.len() as u64 - stored,
        })
    }

    /// Voids one of an experiment's metric events by its client `event_id`: the row stays, with
    /// when and by whom (`actor`), and no analysis counts it from now on. Voiding twice keeps
    /// the first record. `None` when the experiment has no event with that id.
    pub async fn void_experiment_event(
        &self,
        tenant_id: &str,
        experiment_key: &str,
        event_id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Option<StoredMetricEvent>, StoreError> {
        if ![tenant_id, experiment_key, event_id]
            .into_iter()
            .all(could_be_stored)
        {
            return Ok(None);
        }
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::ExperimentEvents)
            .await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "UPDATE experiment_events SET voided_at_ms = $1, voided_by = $2
             WHERE tenant_id = $3 AND experiment_key = $4 AND event_id = $5
               AND voided_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(actor)
        .bind(tenant_id)
        .bind(experiment_key)
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT event_id, targeting_key, metric_key, value, at_ms, voided_at_ms, voided_by
             FROM experiment_events
             WHERE tenant_id = $1 AND experiment_key = $2 AND event_id = $3",
        )
        .bind(tenant_id)
        .bind(experiment_key)
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|row| {
            Ok(StoredMetricEvent {
                event_id: row.try_get(0)?,
                targeting_key: row.try_get(1)?,
                metric_key: row.try_get(2)?,
                value: row.try_get(3)?,
                at_ms: row.try_get(4)?,
                voided_at_ms: row.try_get(5)?,
                voided_by: row.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Reads what an experiment's analysis needs: exposed users per variant and, per metric
    /// and variant, conversions or per-user values (see [`AnalysisQuery`] and the module docs
    /// for how users and events are joined). Each metric is one or two statements; a metric
    /// whose events change between them can be off by those events, which the next look fixes.
    pub async fn experiment_analysis(
        &self,
        tenant_id: &str,
        query: &AnalysisQuery<'_>,
    ) -> Result<AnalysisInputs, StoreError> {
        let mut inputs = AnalysisInputs {
            users: query.variants.iter().map(|v| (v.clone(), 0)).collect(),
            metrics: BTreeMap::new(),
        };
        let ids = [
            tenant_id,
            query.experiment_key,
            query.environment,
            query.flag_key,
        ];
        if !ids.into_iter().all(could_be_stored) {
            return Ok(inputs);
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagExposures)
            .await?;
        let sql = format!(
            "SELECT variant, COUNT(*) FROM flag_exposures
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND {}
             GROUP BY variant",
            window_condition("first_seen_ms", query.windows, 4)
        );
        let rows = bind_windows(
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(query.environment)
                .bind(query.flag_key),
            query.windows,
        )
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let variant: String = row.try_get(0)?;
            if let Some(users) = inputs.users.get_mut(&variant) {
                *users = count(&row, 1)?;
            }
        }
        let raw = inputs.users.values().all(|n| *n <= query.raw_values_limit);
        for (metric, shape) in query.metrics {
            if !could_be_stored(metric) {
                continue;
            }
            let by_variant = match shape {
                MetricShape::Conversion => {
                    Store::conversions(&mut conn, tenant_id, query, metric, &inputs.users).await?
                }
                MetricShape::Value if raw => {
                    Store::user_values(&mut conn, tenant_id, query, metric, &inputs.users).await?
                }
                MetricShape::Value => {
                    Store::value_summaries(&mut conn, tenant_id, query, metric, &inputs.users)
                        .await?
                }
            };
            inputs.metrics.insert(metric.clone(), by_variant);
        }
        Ok(inputs)
    }

    async fn conversions(
        conn: &mut AnyConnection,
        tenant_id: &str,
        query: &AnalysisQuery<'_>,
        metric: &str,
        users: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, MetricObservations>, StoreError> {
        let sql = format!(
            "SELECT x.variant, COUNT(*) FROM flag_exposures x
             WHERE x.tenant_id = $1 AND x.environment = $2 AND x.flag_key = $3 AND {}
               AND EXISTS (SELECT 1 FROM experiment_events e
                           WHERE e.tenant_id = $1 AND e.experiment_key = $4
                             AND e.metric_key = $5 AND e.targeting_key = x.targeting_key
                             AND e.value > 0 AND e.value <= $6 AND e.voided_at_ms IS NULL)
             GROUP BY x.variant",
            window_condition("x.first_seen_ms", query.windows, 7)
        );
        let rows = bind_windows(
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(query.environment)
                .bind(query.flag_key)
                .bind(query.experiment_key)
                .bind(metric)
                .bind(MAX_EVENT_ABS_VALUE),
            query.windows,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut converted: HashMap<String, u64> = HashMap::new();
        for row in rows {
            converted.insert(row.try_get(0)?, count(&row, 1)?);
        }
        Ok(users
            .iter()
            .map(|(variant, n)| {
                let conversions = converted.get(variant).copied().unwrap_or(0);
                (
                    variant.clone(),
                    MetricObservations::Conversions { conversions, n: *n },
                )
            })
            .collect())
    }

    async fn user_values(
        conn: &mut AnyConnection,
        tenant_id: &str,
        query: &AnalysisQuery<'_>,
        metric: &str,
        users: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, MetricObservations>, StoreError> {
        let sql = format!(
            "SELECT variant, v FROM ({}) u",
            per_user_values(query.windows)
        );
        let rows = bind_windows(
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(query.environment)
                .bind(query.flag_key)
                .bind(query.experiment_key)
                .bind(metric)
                .bind(MAX_EVENT_ABS_VALUE),
            query.windows,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut values: BTreeMap<String, Vec<f64>> = users
            .iter()
            .map(|(variant, n)| (variant.clone(), Vec::with_capacity(*n as usize)))
            .collect();
        for row in rows {
            let variant: String = row.try_get(0)?;
            if let Some(list) = values.get_mut(&variant) {
                list.push(row.try_get(1)?);
            }
        }
        Ok(values
            .into_iter()
            .map(|(variant, v)| (variant, MetricObservations::Values(v)))
            .collect())
    }

    async fn value_summaries(
        conn: &mut AnyConnection,
        tenant_id: &str,
        query: &AnalysisQuery<'_>,
        metric: &str,
        users: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, MetricObservations>, StoreError> {
        // Two passes in one statement (the mean by window, then squared deviations from it):
        // as accurate as summing in Rust, and SQLite has no variance aggregate.
        let sql = format!(
            "SELECT variant, COUNT(*), AVG(v), SUM((v - m) * (v - m)) FROM (
                 SELECT variant, v, AVG(v) OVER (PARTITION BY variant) AS m
                 FROM ({}) u
             ) d GROUP BY variant",
            per_user_values(query.windows)
        );
        let rows = bind_windows(
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(query.environment)
                .bind(query.flag_key)
                .bind(query.experiment_key)
                .bind(metric)
                .bind(MAX_EVENT_ABS_VALUE),
            query.windows,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut found: HashMap<String, MetricObservations> = HashMap::new();
        for row in rows {
            let n = count(&row, 1)?;
            let mean: f64 = row.try_get(2)?;
            let squares: f64 = row.try_get(3)?;
            let variance = if n > 1 { squares / (n - 1) as f64 } else { 0.0 };
            found.insert(
                row.try_get(0)?,
                MetricObservations::Summary { n, mean, variance },
            );
        }
        Ok(users
            .keys()
            .map(|variant| {
                let summary = found
                    .remove(variant)
                    .unwrap_or(MetricObservations::Summary {
                        n: 0,
                        mean: 0.0,
                        variance: 0.0,
                    });
                (variant.clone(), summary)
            })
            .collect())
    }
}

/// Each counted user's variant and value (the sum of their events of one metric, 0 without
/// any). Parameters: tenant, environment, flag, experiment, metric, value bound, then the
/// windows. Voided events and events beyond the bound (stored before it existed) do not count.
fn per_user_values(windows: &[AssignmentWindow]) -> String {
    format!(
        "SELECT x.variant AS variant, x.targeting_key AS targeting_key,
        CAST(COALESCE(SUM(e.value), 0.0) AS DOUBLE PRECISION) AS v
    FROM flag_exposures x
    LEFT JOIN experiment_events e
        ON e.tenant_id = $1 AND e.experiment_key = $4 AND e.metric_key = $5
       AND e.targeting_key = x.targeting_key
       AND e.voided_at_ms IS NULL AND ABS(e.value) <= $6
    WHERE x.tenant_id = $1 AND x.environment = $2 AND x.flag_key = $3 AND {}
    GROUP BY x.variant, x.targeting_key",
        window_condition("x.first_seen_ms", windows, 7)
    )
}

fn count(row: &AnyRow, index: usize) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(index)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        table: "flag_exposures",
        reason: format!("negative count {n}"),
    })
}

fn experiment_from_row(row: &AnyRow) -> Result<ExperimentRecord, StoreError> {
    let p_json: String = row.try_get(4)?;
    Ok(ExperimentRecord {
        tenant_id: row.try_get(0)?,
        key: row.try_get(1)?,
        environment: row.try_get(2)?,
        definition_json: row.try_get(3)?,
        sequential_p: serde_json::from_str(&p_json).map_err(|e| StoreError::Corrupt {
            table: "experiments",
            reason: format!("sequential_p is not a JSON object of numbers: {e}"),
        })?,
        version: row.try_get(5)?,
        created_at_ms: row.try_get(6)?,
        updated_at_ms: row.try_get(7)?,
    })
}

fn encode_p(p: &BTreeMap<String, f64>) -> Result<String, StoreError> {
    if p.values().any(|v| !v.is_finite()) {
        return Err(StoreError::Invalid {
            field: "sequential_p",
            reason: "p-values must be finite".to_owned(),
        });
    }
    serde_json::to_string(p).map_err(|e| StoreError::Invalid {
        field: "sequential_p",
        reason: e.to_string(),
    })
}

/// A JSON object of bounded size (the store does not interpret it further).
fn validate_definition(json: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::Invalid {
        field: "definition",
        reason,
    };
    if json.len() > MAX_EXPERIMENT_DEFINITION_BYTES {
        return Err(invalid(format!(
            "is {} bytes, more than the {MAX_EXPERIMENT_DEFINITION_BYTES} allowed",
            json.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid("must be a JSON object".to_owned())),
        Err(e) => Err(invalid(format!("is not JSON: {e}"))),
    }
}

/// Targeting keys, variants and event ids: 1 to 256 bytes without NUL.
fn validate_targeting_key(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_TARGETING_KEY_BYTES || value.contains('\0') {
        return Err(StoreError::Invalid {
            field,
            reason: format!("must be 1 to {MAX_TARGETING_KEY_BYTES} bytes, without NUL"),
        });
    }
    Ok(())
}
