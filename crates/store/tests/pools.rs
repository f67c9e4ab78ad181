//! Pools, timeouts, the read replica and the store's own measurements, against real databases.
//!
//! The read replica is a second PostgreSQL database holding the same schema name but different
//! rows, so every read shows which pool served it.

use std::time::Duration;

use sqlx::Connection;
use store::testing::{postgres_url, ScratchDatabase, TestStore};
use store::{Backend, PoolRole, Store, StoreError, StoreOptions, Tier, WeberProfileRecord};

fn profile(user: &str) -> WeberProfileRecord {
    WeberProfileRecord {
        user_id: user.to_owned(),
        weber_constant: 0.4,
        calculation_confidence: 0.9,
        sensitivity_segment: "moderate".to_owned(),
        bias_ratio: None,
        review_count: 12,
        window_len: 12,
        newest_event_ms: Some(1_700_000_000_000),
        updated_at_ms: 1_700_000_000_000,
    }
}

/// A replica database with the primary's schema and tenant, and `user` as its only profile.
async fn replica_with(primary: &TestStore, tenant: &store::Tenant, user: &str) -> ScratchDatabase {
    let db = ScratchDatabase::create().await;
    let mut options = StoreOptions::from_url(db.url.clone());
    options.schema = primary.options.schema.clone();
    let replica = Store::connect(&options).await.expect("migrate the replica");
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let schema = primary.options.schema.as_deref().unwrap();
    sqlx::query(&format!(
        "INSERT INTO {schema}.tenants (id, name, tier, created_at_ms) VALUES ($1, $2, $3, $4)"
    ))
    .bind(&tenant.id)
    .bind(&tenant.name)
    .bind(tenant.tier.as_str())
    .bind(tenant.created_at_ms)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    replica
        .upsert_weber_profiles(&tenant.id, &[profile(user)])
        .await
        .unwrap();
    replica.close().await;
    db
}

#[tokio::test]
async fn lag_tolerant_reads_go_to_the_replica_and_the_rest_to_the_primary() {
    let primary = TestStore::postgres().await;
    let tenant = primary
        .store
        .create_tenant("acme", Tier::Starter)
        .await
        .unwrap();
    primary
        .store
        .upsert_weber_profiles(&tenant.id, &[profile("on-primary")])
        .await
        .unwrap();
    let replica_db = replica_with(&primary, &tenant, "on-replica").await;

    let mut options = primary.options.clone();
    options.read_url = Some(replica_db.url.clone());
    let store = Store::connect(&options).await.unwrap();

    // Segment pages and statistics, and profiles by id list, come from the replica...
    let page = store
        .weber_segment_users(&tenant.id, "moderate", None, 10)
        .await
        .unwrap();
    assert_eq!(page, ["on-replica"]);
    let listed = store
        .weber_profiles(&tenant.id, &["on-primary".into(), "on-replica".into()])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_id, "on-replica");
    // ...a single profile (the read cache's loader) and authentication from the primary.
    assert!(store
        .weber_profile(&tenant.id, "on-primary")
        .await
        .unwrap()
        .is_some());
    assert!(store
        .weber_profile(&tenant.id, "on-replica")
        .await
        .unwrap()
        .is_none());

    let stats = store.stats();
    assert_eq!((stats.replica_reads, stats.replica_fallbacks), (2, 0));
    let roles: Vec<PoolRole> = stats.pools.iter().map(|p| p.role).collect();
    assert_eq!(roles, [PoolRole::Primary, PoolRole::Replica]);
    assert!(stats.pools[1].acquire_wait.count >= 2, "{stats:?}");
    store.close().await;
    replica_db.drop_now().await;
    primary.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_replica_sends_reads_to_the_primary_and_is_counted() {
    let primary = TestStore::postgres().await;
    let tenant = primary
        .store
        .create_tenant("acme", Tier::Starter)
        .await
        .unwrap();
    primary
        .store
        .upsert_weber_profiles(&tenant.id, &[profile("on-primary")])
        .await
        .unwrap();
    // Nothing listens on port 1: the replica refuses every connection. The start still works.
    let mut options = primary.options.clone();
    let base = postgres_url();
    let (_, db) = base.rsplit_once('/').unwrap();
    options.read_url = Some(format!("postgres://postgres@127.0.0.1:1/{db}"));
    let store = Store::connect(&options)
        .await
        .expect("a dead replica does not stop the start");

    for _ in 0..2 {
        let page = store
            .weber_segment_users(&tenant.id, "moderate", None, 10)
            .await
            .unwrap();
        assert_eq!(page, ["on-primary"]);
    }
    let stats = store.stats();
    assert_eq!((stats.replica_reads, stats.replica_fallbacks), (0, 2));
    // The first read tried the replica and gave up; the second did not try it again.
    assert_eq!(stats.pools[1].acquire_wait.count, 1, "{stats:?}");
    store.close().await;
    primary.cleanup().await;
}

#[tokio::test]
async fn a_replica_needs_postgresql() {
    let mut options = StoreOptions::from_url("sqlite::memory:");
    options.read_url = Some(postgres_url());
    let err = Store::connect(&options).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "read_url",
                ..
            }
        ),
        "{err}"
    );
}

/// Holds a lock that keeps every write to `tenants` waiting, from outside the store.
async fn block_tenant_writes(f: &TestStore) -> sqlx::AnyConnection {
    let mut conn = match f.store.backend() {
        Backend::Postgres => sqlx::AnyConnection::connect(&postgres_url()).await.unwrap(),
        Backend::Sqlite => sqlx::AnyConnection::connect(&f.options.url).await.unwrap(),
    };
    let sql = match f.store.backend() {
        Backend::Postgres => format!(
            "BEGIN; LOCK TABLE {}.tenants IN ACCESS EXCLUSIVE MODE",
            f.options.schema.as_deref().unwrap()
        ),
        // SQLite's one writer lock.
        Backend::Sqlite => "BEGIN IMMEDIATE".to_owned(),
    };
    sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    conn
}

async fn statement_timeout_is_a_typed_error(f: TestStore) {
    let blocker = block_tenant_writes(&f).await;
    let err = f
        .store
        .create_tenant("blocked", Tier::Starter)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StatementTimeout), "{err:?}");
    assert!(err.is_unavailable());
    blocker.close().await.unwrap();
    // The lock gone, the same write succeeds.
    f.store
        .create_tenant("blocked", Tier::Starter)
        .await
        .unwrap();
    f.cleanup().await;
}

#[tokio::test]
async fn statement_timeout_on_postgres() {
    let f =
        TestStore::postgres_with(|o| o.statement_timeout = Some(Duration::from_millis(200))).await;
    statement_timeout_is_a_typed_error(f).await;
}

#[tokio::test]
async fn statement_timeout_on_sqlite_bounds_lock_waits() {
    let f =
        TestStore::sqlite_with(|o| o.statement_timeout = Some(Duration::from_millis(200))).await;
    statement_timeout_is_a_typed_error(f).await;
}

#[tokio::test]
async fn queries_are_timed_per_operation_and_table() {
    let f = TestStore::postgres_with(|o| o.slow_query_threshold = Duration::ZERO).await;
    let tenant = f.store.create_tenant("acme", Tier::Starter).await.unwrap();
    f.store.tenant(&tenant.id).await.unwrap();
    f.store.tenant(&tenant.id).await.unwrap();
    let stats = f.store.stats();
    assert_eq!(stats.backend, Backend::Postgres);
    let find = |op: &str, table: &str| {
        stats
            .queries
            .iter()
            .find(|q| q.operation == op && q.table == table)
            .unwrap_or_else(|| panic!("no {op} on {table}: {stats:?}"))
    };
    let selects = find("select", "tenants");
    assert_eq!(selects.durations.count, 2);
    assert!(selects.durations.sum_seconds > 0.0);
    // A zero threshold makes every call slow.
    assert_eq!(selects.slow, 2);
    assert_eq!(find("insert", "tenants").durations.count, 1);
    let primary = &stats.pools[0];
    assert_eq!((primary.role, primary.max), (PoolRole::Primary, 4));
    assert!(primary.acquire_wait.count >= 3);
    // A connection goes back to the pool in a task of its own, so `in_use` drops just after.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pool = f.store.stats().pools[0].clone();
        if pool.in_use == 0 && pool.idle >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never idle: {pool:?}");
        tokio::task::yield_now().await;
    }
    f.cleanup().await;
}
