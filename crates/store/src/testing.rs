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
        let dir = tempfile::tempdir().expect("temporary directory for a test database");
        let options = StoreOptions::sqlite_in(dir.path());
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
        let now = unix_seconds();
        drop_stale_schemas(now).await;
        let mut options = StoreOptions::from_url(postgres_url());
        options.schema = Some(format!("sbxtest_{now}_{}", uuid::Uuid::new_v4().simple()));
        options.max_connections = 4;
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
