//! Test fixtures: each call gives a [`Store`] nobody else uses, on either backend.
//!
//! PostgreSQL fixtures live in their own schema (`sbxtest_<random>`) in the database named by
//! `SIGNALBOX_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), so tests
//! can run in parallel against one server. A missing server is a test failure, never a skip.

use crate::{Backend, Store, StoreOptions};

/// The PostgreSQL database integration tests use.
pub fn postgres_url() -> String {
    std::env::var("SIGNALBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
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
        let mut options = StoreOptions::from_url(postgres_url());
        options.schema = Some(format!("sbxtest_{}", uuid::Uuid::new_v4().simple()));
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
