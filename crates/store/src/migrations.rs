//! Schema migrations, embedded in the binary and applied at connect time.
//!
//! Each migration has a text per dialect; most are the same portable SQL. Migrations run in one
//! transaction under a lock (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL), so a
//! CLI command and a server starting at the same moment cannot both apply one.

use sqlx::{AnyConnection, Connection, Row};

use crate::{Backend, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants",
        sqlite: include_str!("../migrations/0001_tenants.sql"),
        postgres: include_str!("../migrations/0001_tenants.sql"),
    },
    Migration {
        version: 2,
        name: "weber_profiles",
        sqlite: include_str!("../migrations/0002_weber_profiles.sql"),
        postgres: include_str!("../migrations/0002_weber_profiles.sql"),
    },
    Migration {
        version: 3,
        name: "interactions",
        sqlite: include_str!("../migrations/0003_interactions.sqlite.sql"),
        postgres: include_str!("../migrations/0003_interactions.postgres.sql"),
    },
    Migration {
        version: 4,
        name: "flags",
        sqlite: include_str!("../migrations/0004_flags.sql"),
        postgres: include_str!("../migrations/0004_flags.sql"),
    },
    Migration {
        version: 5,
        name: "experiments",
        sqlite: include_str!("../migrations/0005_experiments.sql"),
        postgres: include_str!("../migrations/0005_experiments.sql"),
    },
    Migration {
        version: 6,
        name: "key_users",
        sqlite: include_str!("../migrations/0006_key_users.sql"),
        postgres: include_str!("../migrations/0006_key_users.sql"),
    },
    Migration {
        version: 7,
        name: "void_experiment_events",
        sqlite: include_str!("../migrations/0007_void_experiment_events.sql"),
        postgres: include_str!("../migrations/0007_void_experiment_events.sql"),
    },
    Migration {
        version: 8,
        name: "llm",
        sqlite: include_str!("../migrations/0008_llm.sqlite.sql"),
        postgres: include_str!("../migrations/0008_llm.postgres.sql"),
    },
    Migration {
        version: 9,
        name: "jobs",
        sqlite: include_str!("../migrations/0009_jobs.sqlite.sql"),
        postgres: include_str!("../migrations/0009_jobs.postgres.sql"),
    },
    Migration {
        version: 10,
        name: "audit",
        sqlite: include_str!("../migrations/0010_audit.sqlite.sql"),
        postgres: include_str!("../migrations/0010_audit.postgres.sql"),
    },
    Migration {
        version: 11,
        name: "feedback",
        sqlite: include_str!("../migrations/0011_feedback.sql"),
        postgres: include_str!("../migrations/0011_feedback.sql"),
    },
    Migration {
        version: 12,
        name: "console_sessions",
        sqlite: include_str!("../migrations/0012_console_sessions.sql"),
        postgres: include_str!("../migrations/0012_console_sessions.sql"),
    },
    Migration {
        version: 13,
        name: "weber_predictions",
        sqlite: include_str!("../migrations/0013_weber_predictions.sql"),
        postgres: include_str!("../migrations/0013_weber_predictions.sql"),
    },
    Migration {
        version: 14,
        name: "weber_settings",
        sqlite: include_str!("../migrations/0014_weber_settings.sqlite.sql"),
        postgres: include_str!("../migrations/0014_weber_settings.postgres.sql"),
    },
    Migration {
        version: 15,
        name: "privacy",
        sqlite: include_str!("../migrations/0015_privacy.sqlite.sql"),
        postgres: include_str!("../migrations/0015_privacy.postgres.sql"),
    },
    Migration {
        version: 16,
        name: "feedback_imports",
        sqlite: include_str!("../migrations/0016_feedback_imports.sql"),
        postgres: include_str!("../migrations/0016_feedback_imports.sql"),
    },
    Migration {
        version: 17,
        name: "feedback_forwards",
        sqlite: include_str!("../migrations/0017_feedback_forwards.sql"),
        postgres: include_str!("../migrations/0017_feedback_forwards.sql"),
    },
    Migration {
        version: 18,
        name: "feedback_migration",
        sqlite: include_str!("../migrations/0018_feedback_migration.sql"),
        postgres: include_str!("../migrations/0018_feedback_migration.sql"),
    },
    Migration {
        version: 19,
        name: "feedback_reports",
        sqlite: include_str!("../migrations/0019_feedback_reports.sql"),
        postgres: include_str!("../migrations/0019_feedback_reports.sql"),
    },
    Migration {
        version: 20,
        name: "flag_rollouts",
        sqlite: include_str!("../migrations/0020_flag_rollouts.sql"),
        postgres: include_str!("../migrations/0020_flag_rollouts.sql"),
    },
    Migration {
        version: 21,
        name: "flag_usage",
        sqlite: include_str!("../migrations/0021_flag_usage.sql"),
        postgres: include_str!("../migrations/0021_flag_usage.sql"),
    },
    Migration {
        version: 22,
        name: "experiment_flags",
        sqlite: include_str!("../migrations/0022_experiment_flags.sql"),
        postgres: include_str!("../migrations/0022_experiment_flags.sql"),
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Arbitrary constant identifying signalbox's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x5167_6e61_6c62_6f78;

pub(crate) async fn run(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE".to_owned(),
        Backend::Postgres => format!("BEGIN; SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})"),
    };
    sqlx::raw_sql(&begin).execute(&mut *conn).await?;
    match apply_pending(conn, backend).await {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            // The connection is dropped by the caller after a failure; rolling back keeps a
            // partially applied migration out of the database either way.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn apply_pending(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS signalbox_migrations (
            version       BIGINT PRIMARY KEY,
            name          TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM signalbox_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newer) = applied.iter().find(|v| **v > LATEST_VERSION) {
        return Err(StoreError::SchemaTooNew {
            found: *newer,
            supported: LATEST_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .map_err(|source| StoreError::Migration {
                version: migration.version,
                name: migration.name,
                source,
            })?;
        sqlx::query(
            "INSERT INTO signalbox_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(crate::now_ms())
        .execute(&mut *conn)
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(())
}

/// Checks that a connection is usable, for readiness probes.
pub(crate) async fn ping(conn: &mut AnyConnection) -> Result<(), StoreError> {
    conn.ping().await?;
    Ok(())
}
