//! Test fixtures: each call gives a [`Store`] nobody else uses, on either backend.
//!
//! PostgreSQL fixtures live in their own schema (`sbxtest_<unix seconds>_<random>`) in the
//! database named by `SIGNALBOX_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), so tests can run in parallel against one server.
//! A test that panics before [`TestStore::cleanup`] leaves its schema behind; every new fixture
//! drops test schemas older than an hour, so they never pile up. A missing server is a test
//! failure, never a skip.

use crate::{Backend, Store, StoreOptions};

/// The PostgreSQL database integration tests use.
pub fn postgres_url() -> String {
    std::env::var("SIGNALBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// How old a test schema must be before any fixture may drop it: far longer than a test runs.
const STALE_AFTER_SECS: u64 = 3600;

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Best effort: drops `sbxtest_*` schemas created more than an hour ago (or named in an older
/// format without a time). Failures are ignored; the test's own connection reports a dead server.
async fn drop_stale_schemas(now: u64) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let Ok(mut admin) = sqlx::AnyConnection::connect(&postgres_url()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'sbxtest%'")
            .fetch_all(&mut admin)
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.try_get::<String, _>(0).ok())
                    .collect()
            })
            .unwrap_or_default();
    for name in names {
        let created = name
            .strip_prefix("sbxtest_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let stale = created.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER_SECS);
        let safe_name = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if stale && safe_name {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut admin)
                .await;
        }
    }
    let _ = admin.close().await;
}

/// A private store for one test; call [`TestStore::cleanup`] at the end to drop what it made.
pub struct TestStore {
    pub store: Store,
    pub options: StoreOptions,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Sqlite => TestStore::sqlite().await,
            Backend::Postgres => TestStore::postgres().await,
        }
    }

    pub async fn sqlite() -> TestStore {
        TestStore::sqlite_with(|_| {}).await
    }

    /// A private SQLite store whose options `adjust` may change before it connects.
    pub async fn sqlite_with(adjust: impl FnOnce(&mut StoreOptions)) -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory for a test database");
        let mut options = StoreOptions::sqlite_in(dir.path());
        adjust(&mut options);
        let store = Store::connect(&options)
            .await
            .expect("open a fresh SQLite store");
        TestStore {
            store,
            options,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestStore {
        TestStore::postgres_with(|_| {}).await
    }

    /// A private PostgreSQL store whose options (pool size, timeouts, replica) `adjust` may
    /// change before it connects; the schema is already chosen.
    pub async fn postgres_with(adjust: impl FnOnce(&mut StoreOptions)) -> TestStore {
        let now = unix_seconds();
        drop_stale_schemas(now).await;
        let mut options = StoreOptions::from_url(postgres_url());
        options.schema = Some(format!("sbxtest_{now}_{}", uuid::Uuid::new_v4().simple()));
        options.max_connections = 4;
        adjust(&mut options);
        let store = Store::connect(&options).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} is required for this test (set SIGNALBOX_TEST_DATABASE_URL): {e}",
                postgres_url()
            )
        });
        TestStore {
            store,
            options,
            _dir: None,
        }
    }

    /// Opens a second handle on the same database, as another process would.
    pub async fn reopen(&self) -> Store {
        Store::connect(&self.options)
            .await
            .expect("reopen the test store")
    }

    /// Closes the pool and drops the PostgreSQL schema (the SQLite file goes with its directory).
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(schema) = &self.options.schema {
            use sqlx::Connection;
            // A plain connection: `Store::connect` would migrate the default schema.
            let mut admin = sqlx::AnyConnection::connect(&postgres_url())
                .await
                .expect("connect to drop the test schema");
            sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .expect("drop the test schema");
            let _ = admin.close().await;
        }
    }
}

/// A whole PostgreSQL database for one test (`sbxtest_db_<unix seconds>_<random>`), for what a
/// schema cannot stand in for, such as a read replica holding the same schema name. Dropped by
/// [`ScratchDatabase::drop_now`]; ones older than an hour are dropped by later fixtures.
pub struct ScratchDatabase {
    pub name: String,
    /// The URL of the new database, on the test server.
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create() -> ScratchDatabase {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let now = unix_seconds();
        let mut admin = sqlx::AnyConnection::connect(&postgres_url())
            .await
            .expect("connect to create a scratch database");
        let old: Vec<String> =
            sqlx::query("SELECT datname::text FROM pg_database WHERE datname LIKE 'sbxtest_db_%'")
                .fetch_all(&mut admin)
                .await
                .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
                .unwrap_or_default();
        for name in old {
            let created = name
                .strip_prefix("sbxtest_db_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok());
            let stale = created.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER_SECS);
            if stale && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
        let name = format!("sbxtest_db_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a scratch database");
        let _ = admin.close().await;
        let base = postgres_url();
        let server = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(server, _)| server);
        let url = format!("{server}/{name}");
        ScratchDatabase { name, url }
    }

    pub async fn drop_now(self) {
        use sqlx::Connection;
        let mut admin = sqlx::AnyConnection::connect(&postgres_url())
            .await
            .expect("connect to drop the scratch database");
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop the scratch database");
        let _ = admin.close().await;
    }
}
