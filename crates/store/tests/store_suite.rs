//! The storage integration suite. Every case runs twice: on a fresh SQLite file and in a private
//! PostgreSQL schema, so both backends are held to the same behaviour.

use serde_json::json;
use std::collections::BTreeMap;
use store::testing::TestStore;

use store::{
    AnalysisQuery, Backend, CalculationRecord, ExperimentEvent, Exposure, FlagAction, Insertion,
    MetricObservations, MetricShape, NewInteraction, Scope, Scopes, Store, StoreError, Tier,
    WeberProfileRecord, WeberUpdate,
};

/// Declares each case once per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                let fixture = store::testing::TestStore::new(store::Backend::Sqlite).await;
                super::$case(&fixture).await;
                fixture.cleanup().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                let fixture = store::testing::TestStore::new(store::Backend::Postgres).await;
                super::$case(&fixture).await;
                fixture.cleanup().await;
            })*
        }
    };
}

on_both_backends!(
    tenants_round_trip,
    tenant_names_are_unique_and_validated,
    issued_key_authenticates_and_secret_is_not_stored,
    unknown_and_malformed_keys_do_not_authenticate,
    revoked_key_stops_authenticating,
    the_last_admin_key_cannot_be_revoked_even_by_concurrent_revokers,
    tenants_cannot_see_or_revoke_each_others_keys,
    issuing_needs_a_tenant_and_a_scope,
    keys_bound_to_a_user_and_allowed_to_assert_users_round_trip,
    migrations_are_idempotent_across_reopen,
    concurrent_writers_do_not_lose_tenants,
    weber_profiles_upsert_and_read_back,
    a_missing_bias_ratio_then_a_present_one_both_store,
    weber_profiles_are_isolated_by_tenant,
    weber_segment_pages_and_stats,
    weber_profiles_reject_bad_records_and_unknown_tenants,
    interactions_are_stored_once_and_windowed_by_time,
    weber_updates_never_go_backwards_and_are_audited,
    weber_settings_are_per_tenant_and_replaced,
    erasing_a_user_removes_every_row_in_one_go_and_audits_a_pseudonym,
    flags_create_read_list_update_delete,
    flag_audit_records_field_diffs_and_pages,
    flag_change_feed_is_gapless_and_resumable,
    flag_writers_with_the_same_version_exactly_one_wins,
    flags_are_isolated_by_tenant_and_environment,
    flag_inputs_are_validated,
    exposures_keep_the_first_variant_and_count_every_exposure,
    experiments_create_read_list_and_update_with_versions,
    experiment_events_with_a_repeated_id_are_stored_once,
    experiments_and_exposures_are_isolated_by_tenant,
    analysis_inputs_join_events_to_exposed_users,
    analysis_summaries_match_raw_values_over_the_limit,
    analysis_counts_only_assignments_inside_running_windows,
    an_experiment_owns_its_flag,
);

fn read_write() -> Scopes {
    Scopes::from_iter([Scope::Read, Scope::Write])
}

async fn tenants_round_trip(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let b = s
        .create_tenant("  globex  ", Tier::Enterprise)
        .await
        .unwrap();
    assert_eq!(b.name, "globex", "names are trimmed");
    assert_ne!(a.id, b.id);
    assert_eq!(s.tenant(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.tenant("tn_missing").await.unwrap(), None);
    let all = s.list_tenants().await.unwrap();
    assert_eq!(all, vec![a, b]);
}

async fn tenant_names_are_unique_and_validated(f: &TestStore) {
    let s = &f.store;
    s.create_tenant("acme", Tier::Free).await.unwrap();
    let dup = s.create_tenant("acme", Tier::Business).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");
    for bad in ["", "   ", "a\u{0}b", &"x".repeat(101)] {
        let err = s.create_tenant(bad, Tier::Free).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { field: "name", .. }),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(
        s.list_tenants().await.unwrap().len(),
        1,
        "rejected input wrote nothing"
    );
}

async fn issued_key_authenticates_and_secret_is_not_stored(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Professional).await.unwrap();
    let issued = s
        .issue_api_key(&t.id, read_write(), Some("ci"))
        .await
        .unwrap();
    assert!(store::secret::looks_like_key(&issued.secret));
    assert!(issued.secret.starts_with(&issued.info.prefix));
    let who = s.authenticate(&issued.secret).await.unwrap().unwrap();
    assert_eq!(who.tenant, t);
    assert_eq!(who.key_id, issued.info.id);
    assert_eq!(who.scopes, read_write());

    let listed = s.list_api_keys(&t.id).await.unwrap();
    assert_eq!(listed, vec![issued.info.clone()]);
    assert_eq!(listed[0].label.as_deref(), Some("ci"));
    // Nothing the store returns about a key contains the secret.
    let shown = format!("{listed:?}");
    assert!(!shown.contains(&issued.secret[store::secret::DISPLAY_PREFIX_LEN..]));
}

async fn keys_bound_to_a_user_and_allowed_to_assert_users_round_trip(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    let bound = s
        .issue_key(
            &t.id,
            store::NewKey {
                scopes: Scopes::from_iter([Scope::Read]),
                label: None,
                user_id: Some("user-42"),
            },
        )
        .await
        .unwrap();
    let who = s.authenticate(&bound.secret).await.unwrap().unwrap();
    assert_eq!(who.user_id.as_deref(), Some("user-42"));
    let asserting = s
        .issue_api_key(&t.id, "read,assert_user".parse().unwrap(), None)
        .await
        .unwrap();
    let who = s.authenticate(&asserting.secret).await.unwrap().unwrap();
    assert_eq!(who.user_id, None);
    assert!(who.scopes.allows(Scope::AssertUser) && !who.scopes.allows(Scope::Write));
    assert_eq!(who.scopes.to_string(), "read,assert_user");
    // Admin implies asserting users; read does not.
    assert!(Scopes::from_iter([Scope::Admin]).allows(Scope::AssertUser));
    assert!(!read_write().allows(Scope::AssertUser));
    let listed = s.list_api_keys(&t.id).await.unwrap();
    assert!(listed.contains(&bound.info) && listed.contains(&asserting.info));
    for bad in ["", "two words", &"x".repeat(129), "tab\there"] {
        let e = s
            .issue_key(
                &t.id,
                store::NewKey {
                    scopes: Scopes::from_iter([Scope::Read]),
                    label: None,
                    user_id: Some(bad),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                store::StoreError::Invalid {
                    field: "user_id",
                    ..
                }
            ),
            "{bad:?}: {e}"
        );
    }
}

async fn unknown_and_malformed_keys_do_not_authenticate(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    s.issue_api_key(&t.id, read_write(), None).await.unwrap();
    let unknown = format!("sbx_{}", "ab".repeat(24));
    for presented in [
        unknown.as_str(),
        "",
        "sbx_",
        "Bearer sbx_x",
        "'; DROP TABLE tenants; --",
    ] {
        assert_eq!(
            s.authenticate(presented).await.unwrap(),
            None,
            "{presented:?}"
        );
    }
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
}

async fn revoked_key_stops_authenticating(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    let keep = s.issue_api_key(&t.id, read_write(), None).await.unwrap();
    let gone = s.issue_api_key(&t.id, read_write(), None).await.unwrap();
    let revoked = s
        .revoke_api_key(&t.id, &gone.info.id)
        .await
        .unwrap()
        .unwrap();
    let first_time = revoked.revoked_at_ms.expect("revocation time recorded");
    assert_eq!(s.authenticate(&gone.secret).await.unwrap(), None);
    assert!(s.authenticate(&keep.secret).await.unwrap().is_some());
    let again = s
        .revoke_api_key(&t.id, &gone.info.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.revoked_at_ms,
        Some(first_time),
        "second revoke keeps the first time"
    );
    assert_eq!(s.revoke_api_key(&t.id, "key_missing").await.unwrap(), None);
}

async fn the_last_admin_key_cannot_be_revoked_even_by_concurrent_revokers(f: &TestStore) {
    let s = &f.store;
    let admin = || Scopes::from_iter([Scope::Admin]);
    let active_admins = |keys: Vec<store::ApiKeyInfo>| {
        keys.iter()
            .filter(|k| k.revoked_at_ms.is_none() && k.scopes.contains(Scope::Admin))
            .count()
    };
    // Two admins revoking each other's keys at the same moment: one wins, one is refused, and
    // the tenant keeps an admin key. Repeated so the race has chances to go wrong.
    for round in 0..15 {
        let t = s
            .create_tenant(&format!("race-{round}"), Tier::Free)
            .await
            .unwrap();
        let a = s.issue_api_key(&t.id, admin(), None).await.unwrap();
        let b = s.issue_api_key(&t.id, admin(), None).await.unwrap();
        let (ra, rb) = tokio::join!(
            s.revoke_api_key(&t.id, &a.info.id),
            s.revoke_api_key(&t.id, &b.info.id)
        );
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastAdminKey { .. })))
            .count();
        let revoked = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok(Some(k)) if k.revoked_at_ms.is_some()))
            .count();
        assert_eq!((revoked, refused), (1, 1), "round {round}: {ra:?} {rb:?}");
        assert_eq!(active_admins(s.list_api_keys(&t.id).await.unwrap()), 1);
    }

    let t = s.create_tenant("alone", Tier::Free).await.unwrap();
    let last = s.issue_api_key(&t.id, admin(), None).await.unwrap();
    let reader = s.issue_api_key(&t.id, read_write(), None).await.unwrap();
    // Other keys go as before; the last admin key is refused and stays usable.
    let gone = s.revoke_api_key(&t.id, &reader.info.id).await.unwrap();
    assert!(gone.unwrap().revoked_at_ms.is_some());
    match s.revoke_api_key(&t.id, &last.info.id).await {
        Err(StoreError::LastAdminKey { key_id, tenant_id }) => {
            assert_eq!((key_id, tenant_id), (last.info.id.clone(), t.id.clone()));
        }
        other => panic!("the last admin key was not refused: {other:?}"),
    }
    assert!(s.authenticate(&last.secret).await.unwrap().is_some());
    // Another tenant's admin keys do not count.
    let other = s.create_tenant("other", Tier::Free).await.unwrap();
    s.issue_api_key(&other.id, admin(), None).await.unwrap();
    assert!(s.revoke_api_key(&t.id, &last.info.id).await.is_err());
    // The operator's deliberate lockout, then the documented recovery.
    let forced = s
        .revoke_api_key_allowing_lockout(&t.id, &last.info.id)
        .await
        .unwrap()
        .unwrap();
    assert!(forced.revoked_at_ms.is_some());
    assert_eq!(active_admins(s.list_api_keys(&t.id).await.unwrap()), 0);
    // Revoking it again is still harmless.
    let again = s.revoke_api_key(&t.id, &last.info.id).await.unwrap();
    assert_eq!(again.unwrap().revoked_at_ms, forced.revoked_at_ms);
    s.issue_api_key(&t.id, admin(), None).await.unwrap();
    assert_eq!(active_admins(s.list_api_keys(&t.id).await.unwrap()), 1);
}

async fn tenants_cannot_see_or_revoke_each_others_keys(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    let ka = s.issue_api_key(&a.id, read_write(), None).await.unwrap();
    let kb = s.issue_api_key(&b.id, read_write(), None).await.unwrap();
    assert_eq!(s.api_key(&b.id, &ka.info.id).await.unwrap(), None);
    assert_eq!(s.revoke_api_key(&b.id, &ka.info.id).await.unwrap(), None);
    // An id no key can have (PostgreSQL text cannot hold NUL) is simply not found.
    assert_eq!(s.api_key(&a.id, "key_\u{0}").await.unwrap(), None);
    assert_eq!(s.revoke_api_key(&a.id, "key_\u{0}").await.unwrap(), None);
    assert!(
        s.authenticate(&ka.secret).await.unwrap().is_some(),
        "a's key still live"
    );
    let b_keys = s.list_api_keys(&b.id).await.unwrap();
    assert_eq!(b_keys, vec![kb.info.clone()]);
    assert_eq!(
        s.operator_key_owner(&ka.info.id).await.unwrap().as_deref(),
        Some(a.id.as_str())
    );
}

async fn issuing_needs_a_tenant_and_a_scope(f: &TestStore) {
    let s = &f.store;
    let err = s
        .issue_api_key("tn_missing", read_write(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    let err = s
        .issue_api_key(&t.id, Scopes::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "scopes",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(s.list_api_keys(&t.id).await.unwrap().is_empty());
}

async fn migrations_are_idempotent_across_reopen(f: &TestStore) {
    let t = f.store.create_tenant("acme", Tier::Free).await.unwrap();
    let again: Store = f.reopen().await;
    assert_eq!(again.tenant(&t.id).await.unwrap(), Some(t));
    again.ping().await.unwrap();
    again.close().await;
}

async fn concurrent_writers_do_not_lose_tenants(f: &TestStore) {
    // Two handles (as the server and a CLI command would have) write at the same time.
    let other = f.reopen().await;
    let (left, right) = tokio::join!(
        async {
            for i in 0..20 {
                f.store
                    .create_tenant(&format!("left-{i}"), Tier::Free)
                    .await
                    .unwrap();
            }
        },
        async {
            for i in 0..20 {
                other
                    .create_tenant(&format!("right-{i}"), Tier::Free)
                    .await
                    .unwrap();
            }
        }
    );
    let ((), ()) = (left, right);
    assert_eq!(f.store.list_tenants().await.unwrap().len(), 40);
    other.close().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused_with_a_clear_error() {
    let err = Store::connect(&store::StoreOptions::from_url("mysql://localhost/x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("sqlite:// or postgres://"),
        "{err}"
    );
    assert_eq!(
        Backend::from_url("postgresql://h/db").unwrap(),
        Backend::Postgres
    );
}

fn record(user: &str, constant: f64, segment: &str, reviews: i64) -> WeberProfileRecord {
    WeberProfileRecord {
        user_id: user.to_owned(),
        weber_constant: constant,
        calculation_confidence: 0.5,
        sensitivity_segment: segment.to_owned(),
        bias_ratio: if reviews % 2 == 0 { Some(1.25) } else { None },
        review_count: reviews,
        window_len: reviews.min(100),
        newest_event_ms: Some(1_700_000_000_000 + reviews),
        updated_at_ms: 1_800_000_000_000,
    }
}

async fn weber_profiles_upsert_and_read_back(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    // More rows than one INSERT carries, to cross a chunk boundary.
    let many: Vec<_> = (0..1_203)
        .map(|i| record(&format!("u{i:05}"), i as f64 / 1000.0, "Low_Sensitive", i))
        .collect();
    assert_eq!(s.upsert_weber_profiles(&t.id, &many).await.unwrap(), 1_203);
    assert_eq!(
        s.weber_profile(&t.id, "u00042").await.unwrap(),
        Some(many[42].clone())
    );
    // A second upsert replaces, exactly (f64 round trip included).
    let changed = record("u00042", 0.123_456_789_012_345_6, "Highly_Sensitive", 7);
    s.upsert_weber_profiles(&t.id, std::slice::from_ref(&changed))
        .await
        .unwrap();
    assert_eq!(
        s.weber_profile(&t.id, "u00042").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(s.weber_profile(&t.id, "nobody").await.unwrap(), None);
    let ids: Vec<String> = ["u00042", "nobody", "u00001", "u00042"]
        .map(String::from)
        .to_vec();
    let got = s.weber_profiles(&t.id, &ids).await.unwrap();
    assert_eq!(
        got.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>(),
        vec!["u00001", "u00042"]
    );
}

// sqlx's `Any` driver binds a missing `f64` as a PostgreSQL `float4`; a statement first prepared
// (and cached on its connection) with a NULL bias ratio then refused an 8-byte float for that
// parameter ("incorrect binary data format in bind parameter 6"). One row per call, alternating,
// many times, so every pooled connection sees both orders.
async fn a_missing_bias_ratio_then_a_present_one_both_store(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    for reviews in 1..=40 {
        let p = record("u1", 0.25, "Low_Sensitive", reviews);
        s.upsert_weber_profiles(&t.id, std::slice::from_ref(&p))
            .await
            .unwrap_or_else(|e| panic!("bias ratio {:?}: {e}", p.bias_ratio));
        assert_eq!(s.weber_profile(&t.id, "u1").await.unwrap(), Some(p));
    }
}

async fn weber_profiles_are_isolated_by_tenant(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    s.upsert_weber_profiles(&a.id, &[record("shared-id", 0.9, "Highly_Sensitive", 3)])
        .await
        .unwrap();
    s.upsert_weber_profiles(&b.id, &[record("shared-id", 0.1, "Insensitive", 4)])
        .await
        .unwrap();
    assert_eq!(
        s.weber_profile(&a.id, "shared-id")
            .await
            .unwrap()
            .unwrap()
            .weber_constant,
        0.9
    );
    assert_eq!(
        s.weber_profile(&b.id, "shared-id")
            .await
            .unwrap()
            .unwrap()
            .weber_constant,
        0.1
    );
    assert!(s
        .weber_segment_users(&b.id, "Highly_Sensitive", None, 10)
        .await
        .unwrap()
        .is_empty());
    let stats_b = s.weber_segment_stats(&b.id).await.unwrap();
    assert_eq!(stats_b.len(), 1);
    assert_eq!(stats_b[0].segment, "Insensitive");
}

async fn weber_segment_pages_and_stats(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    let mut rows: Vec<_> = (0..25)
        .map(|i| {
            record(
                &format!("h{i:02}"),
                0.8 + i as f64 / 100.0,
                "Highly_Sensitive",
                10,
            )
        })
        .collect();
    rows.push(record("i1", 0.1, "Insensitive", 2));
    rows.push(record("i2", 0.3, "Insensitive", 4));
    s.upsert_weber_profiles(&t.id, &rows).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .weber_segment_users(&t.id, "Highly_Sensitive", after.as_deref(), 10)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(
        seen,
        (0..25).map(|i| format!("h{i:02}")).collect::<Vec<_>>()
    );
    let stats = s.weber_segment_stats(&t.id).await.unwrap();
    assert_eq!(
        stats.iter().map(|x| x.segment.as_str()).collect::<Vec<_>>(),
        vec!["Highly_Sensitive", "Insensitive"]
    );
    let ins = &stats[1];
    assert_eq!(ins.users, 2);
    assert!((ins.mean_constant - 0.2).abs() < 1e-12);
    assert!(
        (ins.std_constant - 0.1).abs() < 1e-12,
        "population std of 0.1 and 0.3"
    );
    assert!((ins.mean_review_count - 3.0).abs() < 1e-12);
    assert!((ins.mean_confidence - 0.5).abs() < 1e-12);
}

async fn weber_profiles_reject_bad_records_and_unknown_tenants(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    let good = record("ok", 0.5, "Moderately_Sensitive", 3);
    let mut nan = record("nan", f64::NAN, "Insensitive", 1);
    let err = s
        .upsert_weber_profiles(&t.id, &[good.clone(), nan.clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    nan.weber_constant = 0.0;
    nan.user_id = String::new();
    assert!(s.upsert_weber_profiles(&t.id, &[nan]).await.is_err());
    // Nothing of a rejected batch was written.
    assert_eq!(s.weber_profile(&t.id, "ok").await.unwrap(), None);
    let err = s
        .upsert_weber_profiles("tn_missing", &[good])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// Schemas left by panicking tests are dropped once they are old; fresh ones (a test running
/// now, elsewhere) are kept.
#[tokio::test]
async fn stale_test_schemas_are_dropped_and_fresh_ones_kept() {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let url = store::testing::postgres_url();
    let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ancient = format!("sbxtest_1000_{}", uuid_like());
    let fresh = format!("sbxtest_{now}_{}", uuid_like());
    for schema in [&ancient, &fresh] {
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let fixture = TestStore::postgres().await;
    let exists = |name: String| {
        sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname::text = $1").bind(name)
    };
    let count = |row: sqlx::any::AnyRow| row.try_get::<i64, _>(0).unwrap();
    assert_eq!(
        count(exists(ancient.clone()).fetch_one(&mut admin).await.unwrap()),
        0,
        "ancient schema dropped"
    );
    assert_eq!(
        count(exists(fresh.clone()).fetch_one(&mut admin).await.unwrap()),
        1,
        "fresh schema kept"
    );
    sqlx::raw_sql(&format!("DROP SCHEMA {fresh} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    fixture.cleanup().await;
}

fn uuid_like() -> String {
    format!(
        "{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn interaction(event_id: &str, user: &str, time_ms: i64, sentiment: f64) -> NewInteraction {
    NewInteraction {
        event_id: event_id.to_owned(),
        user_id: user.to_owned(),
        event_time_ms: time_ms,
        sentiment,
        rating: Some(4.0),
        text: Some("fine".to_owned()),
        item_id: None,
        verified_purchase: Some(true),
        helpful_votes: Some(3),
        channel: None,
    }
}

async fn interactions_are_stored_once_and_windowed_by_time(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    let batch = [
        interaction("e1", "u1", 3_000, 0.5),
        interaction("e2", "u1", 1_000, -0.5),
        interaction("e1", "u1", 9_000, 1.0), // repeated id in the batch: the first wins
        interaction("e3", "u1", 3_000, 0.25), // same time as e1: after it (arrival order)
        interaction("e4", "u2", 5_000, 0.0),
    ];
    let out = s.insert_interactions(&a.id, &batch, 42).await.unwrap();
    let seqs: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Insertion::Stored { seq } => Some(*seq),
            Insertion::Duplicate => None,
        })
        .collect();
    assert_eq!(out[2], Insertion::Duplicate);
    assert_eq!(seqs.len(), 4);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq follows input order: {seqs:?}"
    );
    // The whole batch again: every one a duplicate, nothing changes.
    let again = s.insert_interactions(&a.id, &batch, 43).await.unwrap();
    assert!(again.iter().all(|o| *o == Insertion::Duplicate));
    // The same event id in another tenant is that tenant's own event.
    let other = s
        .insert_interactions(&b.id, &[interaction("e1", "u1", 1, 0.1)], 44)
        .await
        .unwrap();
    assert!(matches!(other[0], Insertion::Stored { .. }));

    let users = ["u1", "u2", "nobody"].map(String::from).to_vec();
    let windows = s.interaction_windows(&a.id, &users, 2).await.unwrap();
    assert_eq!(windows.len(), 2, "users without events are absent");
    let u1 = &windows[0];
    assert_eq!(u1.user_id, "u1");
    assert_eq!(u1.total, 3);
    assert_eq!(u1.max_seq, seqs[2]);
    let got: Vec<(i64, f64)> = u1
        .events
        .iter()
        .map(|e| (e.event_time_ms, e.sentiment))
        .collect();
    assert_eq!(
        got,
        vec![(3_000, 0.5), (3_000, 0.25)],
        "last 2 by (time, seq), oldest first"
    );
    assert_eq!(windows[1].events.len(), 1);
    let b_windows = s.interaction_windows(&b.id, &users, 100).await.unwrap();
    assert_eq!(b_windows.len(), 1);
    assert_eq!(b_windows[0].total, 1, "tenant b sees only its own event");

    let with_nul = interaction("e8", "u\u{0}1", 1, 0.5);
    assert!(matches!(
        s.insert_interactions(&a.id, &[with_nul], 1).await,
        Err(StoreError::Invalid {
            field: "user_id",
            ..
        })
    ));
    let mut bad = interaction("e9", "u1", 1, 2.0);
    assert!(matches!(
        s.insert_interactions(&a.id, std::slice::from_ref(&bad), 1)
            .await,
        Err(StoreError::Invalid {
            field: "sentiment",
            ..
        })
    ));
    bad.sentiment = 0.0;
    assert!(matches!(
        s.insert_interactions("tn_missing", &[bad], 1).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn weber_updates_never_go_backwards_and_are_audited(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Free).await.unwrap();
    s.insert_interactions(
        &t.id,
        &[
            interaction("e1", "u1", 1, 0.5),
            interaction("e2", "u2", 1, 0.5),
        ],
        1,
    )
    .await
    .unwrap();
    let stale = s.operator_stale_weber_users(i64::MAX, 100).await.unwrap();
    assert!(stale.contains(&(t.id.clone(), "u1".to_owned())));
    assert!(stale.contains(&(t.id.clone(), "u2".to_owned())));
    // Bounded by sequence: interactions after the bound are not the pass's business.
    let newest = s.operator_newest_interaction_seq().await.unwrap();
    let u2_seq = s
        .interaction_windows(&t.id, &["u2".to_owned()], 1)
        .await
        .unwrap()[0]
        .max_seq;
    assert_eq!(newest, u2_seq, "u2's event was stored last");
    let before_u2 = s.operator_stale_weber_users(u2_seq - 1, 100).await.unwrap();
    assert!(
        !before_u2.contains(&(t.id.clone(), "u2".to_owned())),
        "{before_u2:?}"
    );

    let update = |constant: f64, applied_seq: i64| WeberUpdate {
        tenant_id: t.id.clone(),
        profile: record("u1", constant, "Highly_Sensitive", 1),
        applied_seq,
        calculation: Some(CalculationRecord {
            event_seq: applied_seq,
            review_sequence: 1,
            sentiment_value: 0.5,
            baseline_sentiment: 0.5,
            weber_ratio: 0.0,
            cause: "event",
        }),
    };
    let seq_u1 = s
        .interaction_windows(&t.id, &["u1".to_owned()], 1)
        .await
        .unwrap()[0]
        .max_seq;
    assert_eq!(
        s.record_weber_updates(&[update(0.9, seq_u1)])
            .await
            .unwrap(),
        1
    );
    // An older view of the history does not replace the newer profile.
    s.record_weber_updates(&[update(0.1, seq_u1 - 1)])
        .await
        .unwrap();
    assert_eq!(
        s.weber_profile(&t.id, "u1")
            .await
            .unwrap()
            .unwrap()
            .weber_constant,
        0.9
    );
    let stale = s.operator_stale_weber_users(i64::MAX, 100).await.unwrap();
    assert!(
        !stale.contains(&(t.id.clone(), "u1".to_owned())),
        "u1 is up to date"
    );
    assert!(stale.contains(&(t.id.clone(), "u2".to_owned())));

    let audit = s.weber_calculations(&t.id, "u1", 10).await.unwrap();
    assert_eq!(audit.len(), 2, "every calculation is audited");
    assert_eq!(audit[0].weber_constant, 0.1, "newest first");
    assert_eq!(audit[1].cause, "event");
    // Paging: the rows below a cursor, newest first; the first page is the unpaged read.
    let first = s
        .weber_calculations_page(&t.id, "u1", None, 1)
        .await
        .unwrap();
    assert_eq!(first, audit[..1]);
    let rest = s
        .weber_calculations_page(&t.id, "u1", Some(first[0].id), 10)
        .await
        .unwrap();
    assert_eq!(rest, audit[1..]);
    assert!(audit[0].id > audit[1].id);
    // Segment counts at an instant: each user in the segment of their newest row before it.
    let at = s
        .weber_segment_counts_at(&t.id, &[0, i64::MAX])
        .await
        .unwrap();
    assert!(at[0].counts.is_empty(), "{at:?}");
    assert_eq!(
        at[1].counts,
        vec![(audit[0].sensitivity_segment.clone(), 1)],
        "{at:?}"
    );
    let other = s.create_tenant("other", Tier::Starter).await.unwrap();
    assert!(s
        .weber_calculations_page(&other.id, "u1", None, 10)
        .await
        .unwrap()
        .is_empty());
    let counts = s.operator_weber_segment_counts().await.unwrap();
    assert!(counts.contains(&(t.id.clone(), "Highly_Sensitive".to_owned(), 1)));
}

async fn weber_settings_are_per_tenant_and_replaced(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    assert_eq!(s.weber_settings(&a.id).await.unwrap(), None);
    let first = store::WeberSettingsRecord {
        eps: 0.25,
        window: 50,
        updated_at_ms: 1_000,
        updated_by: "key_1".to_owned(),
    };
    s.put_weber_settings(&a.id, &first).await.unwrap();
    let second = store::WeberSettingsRecord {
        eps: 1e-3,
        window: 7,
        updated_at_ms: 2_000,
        updated_by: "key_2".to_owned(),
    };
    s.put_weber_settings(&a.id, &second).await.unwrap();
    assert_eq!(s.weber_settings(&a.id).await.unwrap(), Some(second.clone()));
    assert_eq!(s.weber_settings(&b.id).await.unwrap(), None);
    for bad in [
        store::WeberSettingsRecord {
            eps: f64::NAN,
            ..second.clone()
        },
        store::WeberSettingsRecord {
            window: 0,
            ..second.clone()
        },
    ] {
        assert!(s.put_weber_settings(&a.id, &bad).await.is_err(), "{bad:?}");
    }
    assert!(matches!(
        s.put_weber_settings("tn_missing", &first).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn erasing_a_user_removes_every_row_in_one_go_and_audits_a_pseudonym(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    for t in [&a, &b] {
        s.insert_interactions(
            &t.id,
            &[
                interaction("e1", "u1", 1_000, 0.5),
                interaction("e2", "u1", 2_000, -0.5),
                interaction("e3", "u2", 1_000, 0.1),
            ],
            1,
        )
        .await
        .unwrap();
        s.upsert_weber_profiles(
            &t.id,
            &[
                record("u1", 0.5, "Moderately_Sensitive", 2),
                record("u2", 0.1, "Insensitive", 1),
            ],
        )
        .await
        .unwrap();
        let purchase = |order: &str, customer: &str| store::NewTransaction {
            order_id: order.to_owned(),
            customer_id: customer.to_owned(),
            occurred_at_ms: 1_000,
            amount: 10.0,
            currency: None,
        };
        s.insert_transactions(
            &t.id,
            &[
                purchase("o1", "u1"),
                purchase("o2", "u1"),
                purchase("o3", "u2"),
            ],
            1,
        )
        .await
        .unwrap();
    }
    let counts = s
        .erase_weber_user(&a.id, "u1", "key_9", 5_000)
        .await
        .unwrap();
    assert_eq!(
        (counts.interactions, counts.profiles, counts.transactions),
        (2, 1, 2),
        "{counts:?}"
    );
    assert!(s.weber_profile(&a.id, "u1").await.unwrap().is_none());
    assert!(s.weber_profile(&a.id, "u2").await.unwrap().is_some());
    assert!(
        s.weber_profile(&b.id, "u1").await.unwrap().is_some(),
        "other tenant kept"
    );
    assert_eq!(
        s.weber_customer_transaction_count(&a.id, "u1")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.weber_customer_transaction_count(&b.id, "u1")
            .await
            .unwrap(),
        2
    );
    let audit = s.weber_erasures(&a.id, "u1").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].counts, counts);
    assert_eq!(
        (audit[0].key_id.as_str(), audit[0].erased_at_ms),
        ("key_9", 5_000)
    );
    assert_eq!(
        audit[0].subject_hash,
        store::erasure_subject_hash(&a.id, "u1")
    );
    assert_ne!(
        store::erasure_subject_hash(&a.id, "u1"),
        store::erasure_subject_hash(&b.id, "u1")
    );
    // Again: nothing found, nothing recorded.
    let again = s
        .erase_weber_user(&a.id, "u1", "key_9", 6_000)
        .await
        .unwrap();
    assert_eq!(again.total(), 0);
    assert_eq!(s.weber_erasures(&a.id, "u1").await.unwrap().len(), 1);
}

// ---- flags -------------------------------------------------------------------------------

fn flag_json(key: &str, enabled: bool, owner: &str) -> String {
    json!({"key": key, "enabled": enabled, "meta": {"owner": owner, "tags": ["a"]}}).to_string()
}

async fn flags_create_read_list_update_delete(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let beta = flag_json("beta", false, "ann");
    let created = s
        .create_flag(&t.id, "prod", "beta", &beta, "key_1")
        .await
        .unwrap();
    assert_eq!((created.version, created.updated_by.as_str()), (1, "key_1"));
    assert_eq!(created.definition_json, beta);
    assert_eq!(
        s.flag(&t.id, "prod", "beta").await.unwrap(),
        Some(created.clone())
    );
    let dup = s
        .create_flag(&t.id, "prod", "beta", &beta, "key_1")
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");

    // Key order is byte order on both backends ('B' < 'a').
    for key in ["alpha", "B-upper", "zeta"] {
        s.create_flag(&t.id, "prod", key, "{}", "key_1")
            .await
            .unwrap();
    }
    let keys: Vec<String> = s
        .flags(&t.id, "prod")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["B-upper", "alpha", "beta", "zeta"]);

    let on = flag_json("beta", true, "ann");
    let updated = s
        .update_flag(&t.id, "prod", "beta", &on, Some(1), "key_2")
        .await
        .unwrap();
    assert_eq!((updated.version, updated.updated_by.as_str()), (2, "key_2"));
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert!(updated.change_seq > created.change_seq);
    // Without an expected version the current one is overwritten.
    let third = s
        .update_flag(&t.id, "prod", "beta", &beta, None, "key_2")
        .await
        .unwrap();
    assert_eq!(third.version, 3);
    assert_eq!(
        s.flag(&t.id, "prod", "beta").await.unwrap(),
        Some(third.clone())
    );

    let gone = s
        .delete_flag(&t.id, "prod", "beta", Some(3), "key_3")
        .await
        .unwrap();
    assert_eq!(gone, third);
    assert_eq!(s.flag(&t.id, "prod", "beta").await.unwrap(), None);
    for err in [
        s.update_flag(&t.id, "prod", "beta", &on, None, "key_3")
            .await
            .unwrap_err(),
        s.delete_flag(&t.id, "prod", "beta", None, "key_3")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    }
    let again = s
        .create_flag(&t.id, "prod", "beta", &on, "key_3")
        .await
        .unwrap();
    assert_eq!(again.version, 1, "a re-created flag starts over");
}

async fn flag_audit_records_field_diffs_and_pages(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let v1 = flag_json("beta", false, "ann");
    let v2 = flag_json("beta", true, "bob");
    s.create_flag(&t.id, "prod", "beta", &v1, "key_a")
        .await
        .unwrap();
    s.update_flag(&t.id, "prod", "beta", &v2, Some(1), "key_b")
        .await
        .unwrap();
    let killed = s
        .update_flag_as(
            FlagAction::Kill,
            &t.id,
            "prod",
            "beta",
            &v1,
            Some(2),
            "key_k",
        )
        .await
        .unwrap();
    assert_eq!(killed.version, 3);
    let not_an_update = s
        .update_flag_as(
            FlagAction::Create,
            &t.id,
            "prod",
            "beta",
            &v1,
            None,
            "key_k",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            not_an_update,
            StoreError::Invalid {
                field: "action",
                ..
            }
        ),
        "{not_an_update:?}"
    );
    s.delete_flag(&t.id, "prod", "beta", Some(3), "key_c")
        .await
        .unwrap();

    let mut audit = s.flag_audit(&t.id, "prod", "beta", 10, None).await.unwrap();
    let kill = audit.remove(1);
    assert_eq!((kill.action, kill.version), (FlagAction::Kill, 3));
    assert_eq!(kill.diff.len(), 2, "the kill reverts both changed fields");
    assert_eq!(kill.seq, 3);
    let summary: Vec<(FlagAction, i64, &str)> = audit
        .iter()
        .map(|a| (a.action, a.version, a.actor.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (FlagAction::Delete, 4, "key_c"),
            (FlagAction::Update, 2, "key_b"),
            (FlagAction::Create, 1, "key_a"),
        ]
    );
    let (delete, update, create) = (&audit[0], &audit[1], &audit[2]);
    assert_eq!(create.before_json, None);
    assert_eq!(create.after_json.as_deref(), Some(v1.as_str()));
    let created_paths: Vec<&str> = create.diff.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(created_paths, ["/enabled", "/key", "/meta"]);
    assert!(create.diff.iter().all(|c| c.before.is_none()));

    let changed: Vec<(&str, Option<serde_json::Value>, Option<serde_json::Value>)> = update
        .diff
        .iter()
        .map(|c| (c.path.as_str(), c.before.clone(), c.after.clone()))
        .collect();
    assert_eq!(
        changed,
        [
            ("/enabled", Some(json!(false)), Some(json!(true))),
            ("/meta/owner", Some(json!("ann")), Some(json!("bob"))),
        ]
    );
    assert_eq!(update.before_json.as_deref(), Some(v1.as_str()));
    assert_eq!(update.after_json.as_deref(), Some(v2.as_str()));
    assert_eq!(delete.after_json, None);
    assert!(delete.diff.iter().all(|c| c.after.is_none()));
    assert_eq!(delete.diff.len(), 3);

    // Paging: two rows, then the rest before the last seen seq.
    audit.insert(1, kill);
    let first = s.flag_audit(&t.id, "prod", "beta", 2, None).await.unwrap();
    assert_eq!(first, audit[..2]);
    let rest = s
        .flag_audit(&t.id, "prod", "beta", 3, Some(first[1].seq))
        .await
        .unwrap();
    assert_eq!(rest, audit[2..]);
    // Another flag's history stays apart.
    s.create_flag(&t.id, "prod", "other", "{}", "key_a")
        .await
        .unwrap();
    assert_eq!(
        s.flag_audit(&t.id, "prod", "beta", 10, None).await.unwrap(),
        audit
    );
}

async fn flag_change_feed_is_gapless_and_resumable(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    assert_eq!(s.flag_change_seq(&t.id, "prod").await.unwrap(), 0);
    s.create_flag(&t.id, "prod", "a", "{}", "k").await.unwrap();
    s.create_flag(&t.id, "prod", "b", "{}", "k").await.unwrap();
    // A failed change (conflict, stale version, missing flag) takes no number.
    s.create_flag(&t.id, "prod", "a", "{}", "k")
        .await
        .unwrap_err();
    s.update_flag(&t.id, "prod", "a", "{\"x\":1}", Some(7), "k")
        .await
        .unwrap_err();
    s.delete_flag(&t.id, "prod", "nope", None, "k")
        .await
        .unwrap_err();
    s.update_flag(&t.id, "prod", "a", "{\"x\":1}", Some(1), "k")
        .await
        .unwrap();
    s.create_flag(&t.id, "staging", "a", "{}", "k")
        .await
        .unwrap();
    s.delete_flag(&t.id, "prod", "b", None, "k").await.unwrap();

    assert_eq!(s.flag_change_seq(&t.id, "prod").await.unwrap(), 4);
    assert_eq!(s.flag_change_seq(&t.id, "staging").await.unwrap(), 1);
    let all = s.flag_changes(&t.id, "prod", 0, 100).await.unwrap();
    let feed: Vec<(i64, &str, FlagAction)> = all
        .iter()
        .map(|c| (c.seq, c.flag_key.as_str(), c.action))
        .collect();
    assert_eq!(
        feed,
        [
            (1, "a", FlagAction::Create),
            (2, "b", FlagAction::Create),
            (3, "a", FlagAction::Update),
            (4, "b", FlagAction::Delete),
        ]
    );
    let resumed = s.flag_changes(&t.id, "prod", 2, 1).await.unwrap();
    assert_eq!(resumed, all[2..3]);
    assert!(s
        .flag_changes(&t.id, "prod", 4, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.flag(&t.id, "prod", "a")
            .await
            .unwrap()
            .unwrap()
            .change_seq,
        3
    );
}

async fn flag_writers_with_the_same_version_exactly_one_wins(f: &TestStore) {
    let s = &f.store;
    let other = f.reopen().await;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    s.create_flag(&t.id, "prod", "beta", "{\"n\":0}", "k")
        .await
        .unwrap();
    let stale = s
        .update_flag(&t.id, "prod", "beta", "{\"n\":1}", Some(2), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::VersionMismatch {
                expected: 2,
                current: Some(1),
                ..
            }
        ),
        "{stale:?}"
    );
    for round in 1..=5_i64 {
        // Two handles (pools), as two server replicas would have.
        let (a, b) = tokio::join!(
            s.update_flag(&t.id, "prod", "beta", "{\"by\":\"a\"}", Some(round), "a"),
            other.update_flag(&t.id, "prod", "beta", "{\"by\":\"b\"}", Some(round), "b"),
        );
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert!(
            matches!(lost, StoreError::VersionMismatch { expected, .. } if expected == round),
            "{lost:?}"
        );
        assert_eq!(won.version, round + 1);
        assert_eq!(
            s.flag(&t.id, "prod", "beta").await.unwrap(),
            Some(won.clone())
        );
    }
    let stale_delete = s
        .delete_flag(&t.id, "prod", "beta", Some(1), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(stale_delete, StoreError::VersionMismatch { .. }),
        "{stale_delete:?}"
    );
    let audit = s
        .flag_audit(&t.id, "prod", "beta", 100, None)
        .await
        .unwrap();
    assert_eq!(audit.len(), 6, "one create and one update per round");
    other.close().await;
}

async fn flags_are_isolated_by_tenant_and_environment(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let b = s.create_tenant("globex", Tier::Starter).await.unwrap();
    let a_prod = s
        .create_flag(&a.id, "prod", "beta", "{\"owner\":\"a\"}", "ka")
        .await
        .unwrap();
    // Same key in another environment of A, and in B: independent flags.
    s.create_flag(&a.id, "dev", "beta", "{\"owner\":\"a-dev\"}", "ka")
        .await
        .unwrap();
    assert_eq!(s.flag(&b.id, "prod", "beta").await.unwrap(), None);
    assert!(s.flags(&b.id, "prod").await.unwrap().is_empty());
    assert!(s
        .flag_audit(&b.id, "prod", "beta", 10, None)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .flag_changes(&b.id, "prod", 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.flag_change_seq(&b.id, "prod").await.unwrap(), 0);
    for err in [
        s.update_flag(&b.id, "prod", "beta", "{}", Some(1), "kb")
            .await
            .unwrap_err(),
        s.delete_flag(&b.id, "prod", "beta", Some(1), "kb")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    }
    let b_prod = s
        .create_flag(&b.id, "prod", "beta", "{\"owner\":\"b\"}", "kb")
        .await
        .unwrap();
    assert_eq!(b_prod.change_seq, 1, "B's environment has its own sequence");
    s.update_flag(&b.id, "prod", "beta", "{\"owner\":\"b2\"}", Some(1), "kb")
        .await
        .unwrap();
    assert_eq!(s.flag(&a.id, "prod", "beta").await.unwrap(), Some(a_prod));
    let dev = s.flag(&a.id, "dev", "beta").await.unwrap().unwrap();
    assert_eq!(dev.definition_json, "{\"owner\":\"a-dev\"}");
    assert_eq!(s.flags(&a.id, "prod").await.unwrap().len(), 1);
    assert_eq!(
        s.flag_audit(&a.id, "prod", "beta", 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
    let unknown = s
        .create_flag("tn_missing", "prod", "beta", "{}", "k")
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );
}

async fn flag_inputs_are_validated(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let big = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(store::MAX_FLAG_DEFINITION_BYTES)
    );
    let cases: [(&str, &str, &str, &str, &str); 12] = [
        ("", "k", "{}", "a", "environment"),
        ("pr od", "k", "{}", "a", "environment"),
        ("prod", "", "{}", "a", "key"),
        ("prod", "a\u{0}b", "{}", "a", "key"),
        ("prod", "ключ", "{}", "a", "key"),
        ("prod", &"k".repeat(201), "{}", "a", "key"),
        ("prod", "k", "{}", "", "actor"),
        ("prod", "k", "{}", "a\u{0}", "actor"),
        ("prod", "k", "[1]", "a", "definition"),
        ("prod", "k", "{nope", "a", "definition"),
        ("prod", "k", "{\"key\":\"other\"}", "a", "definition"),
        ("prod", "k", &big, "a", "definition"),
    ];
    for (env, key, definition, actor, field) in cases {
        let err = s
            .create_flag(&t.id, env, key, definition, actor)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { field: f, .. } if *f == field),
            "{env:?} {key:?} {actor:?}: {err:?}"
        );
    }
    s.create_flag(&t.id, "prod", "k", "{\"key\":\"k\"}", "a")
        .await
        .unwrap();
    let err = s
        .update_flag(&t.id, "prod", "k", "null", Some(1), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "definition",
                ..
            }
        ),
        "{err:?}"
    );
    // Reads with NUL are simply not found (PostgreSQL would reject the text).
    assert_eq!(s.flag(&t.id, "prod", "k\u{0}").await.unwrap(), None);
    assert_eq!(s.flag("tn\u{0}", "prod", "k").await.unwrap(), None);
    assert!(s.flags(&t.id, "pr\u{0}od").await.unwrap().is_empty());
    assert_eq!(s.flags(&t.id, "prod").await.unwrap().len(), 1);
}

// ---- exposures and experiments -------------------------------------------------------------

fn exposure(flag: &str, user: &str, variant: &str, at_ms: i64) -> Exposure {
    Exposure {
        environment: "production".to_owned(),
        flag_key: flag.to_owned(),
        targeting_key: user.to_owned(),
        variant: variant.to_owned(),
        at_ms,
    }
}

fn event(user: &str, metric: &str, value: f64, event_id: Option<&str>) -> ExperimentEvent {
    ExperimentEvent {
        targeting_key: user.to_owned(),
        metric_key: metric.to_owned(),
        value,
        at_ms: 1_000,
        event_id: event_id.map(str::to_owned),
    }
}

async fn exposures_keep_the_first_variant_and_count_every_exposure(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    // In one batch, out of order: the earliest exposure (20, "a") is the assignment.
    s.record_exposures(
        &t.id,
        &[
            exposure("btn", "u1", "b", 30),
            exposure("btn", "u1", "a", 20),
            exposure("btn", "u2", "b", 25),
        ],
    )
    .await
    .unwrap();
    let u1 = s
        .exposure(&t.id, "production", "btn", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            u1.variant.as_str(),
            u1.first_seen_ms,
            u1.last_seen_ms,
            u1.count
        ),
        ("a", 20, 30, 2)
    );
    // A later batch with another variant changes the times and count, not the assignment.
    s.record_exposures(&t.id, &[exposure("btn", "u1", "b", 50)])
        .await
        .unwrap();
    let u1 = s
        .exposure(&t.id, "production", "btn", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            u1.variant.as_str(),
            u1.first_seen_ms,
            u1.last_seen_ms,
            u1.count
        ),
        ("a", 20, 50, 3)
    );
    // A late batch holding an earlier exposure takes the assignment over.
    s.record_exposures(&t.id, &[exposure("btn", "u2", "a", 10)])
        .await
        .unwrap();
    let u2 = s
        .exposure(&t.id, "production", "btn", "u2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            u2.variant.as_str(),
            u2.first_seen_ms,
            u2.last_seen_ms,
            u2.count
        ),
        ("a", 10, 25, 2)
    );
    // Other environments and flags are other rows.
    assert_eq!(
        s.exposure(&t.id, "staging", "btn", "u1").await.unwrap(),
        None
    );
    // More rows than one statement holds.
    let many: Vec<Exposure> = (0..1200)
        .map(|i| exposure("big", &format!("user-{i}"), "a", i))
        .collect();
    s.record_exposures(&t.id, &many).await.unwrap();
    let last = s
        .exposure(&t.id, "production", "big", "user-1199")
        .await
        .unwrap();
    assert_eq!(last.map(|e| e.count), Some(1));
    // Bad input fails before writing; an unknown tenant is not found.
    let bad = s
        .record_exposures(
            &t.id,
            &[exposure("btn", "u9", "a", 1), exposure("btn", "", "a", 1)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            bad,
            StoreError::Invalid {
                field: "targeting_key",
                ..
            }
        ),
        "{bad:?}"
    );
    assert_eq!(
        s.exposure(&t.id, "production", "btn", "u9").await.unwrap(),
        None
    );
    let missing = s
        .record_exposures("tn_missing", &[exposure("btn", "u1", "a", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
}

async fn experiments_create_read_list_and_update_with_versions(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let def = r#"{"spec":{"key":"exp-b"},"state":"draft"}"#;
    let created = s
        .create_experiment(&t.id, "exp-b", "production", def)
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert!(created.sequential_p.is_empty());
    assert_eq!(
        s.experiment(&t.id, "exp-b").await.unwrap(),
        Some(created.clone())
    );
    let dup = s
        .create_experiment(&t.id, "exp-b", "staging", def)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");
    s.create_experiment(&t.id, "exp-a", "staging", "{}")
        .await
        .unwrap();
    let keys: Vec<String> = s
        .experiments(&t.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["exp-a", "exp-b"]);

    let running = r#"{"spec":{"key":"exp-b"},"state":"running"}"#;
    let p = BTreeMap::from([("green".to_owned(), 0.25)]);
    let updated = s
        .update_experiment(&t.id, "exp-b", running, &p, 1)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.definition_json, running);
    assert_eq!(updated.sequential_p, p);
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert_eq!(s.experiment(&t.id, "exp-b").await.unwrap(), Some(updated));
    let stale = s
        .update_experiment(&t.id, "exp-b", def, &BTreeMap::new(), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::VersionMismatch {
                expected: 1,
                current: Some(2),
                ..
            }
        ),
        "{stale:?}"
    );
    let missing = s
        .update_experiment(&t.id, "nope", def, &BTreeMap::new(), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    for (key, env, json, field) in [
        ("bad key", "production", "{}", "key"),
        ("ok", "prod env", "{}", "environment"),
        ("ok", "production", "[1]", "definition"),
        ("ok", "production", "{", "definition"),
    ] {
        let err = s
            .create_experiment(&t.id, key, env, json)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { field: f, .. } if f == field),
            "{key} {env} {json}: {err:?}"
        );
    }
    let nan = BTreeMap::from([("a".to_owned(), f64::NAN)]);
    let err = s
        .update_experiment(&t.id, "exp-b", def, &nan, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "sequential_p",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn experiment_events_with_a_repeated_id_are_stored_once(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    s.create_experiment(&t.id, "exp", "production", "{}")
        .await
        .unwrap();
    s.record_exposures(
        &t.id,
        &[
            exposure("flag", "u1", "a", 1),
            exposure("flag", "u2", "b", 1),
        ],
    )
    .await
    .unwrap();
    let first = s
        .insert_experiment_events(
            &t.id,
            "exp",
            &[
                event("u1", "revenue", 5.0, Some("e1")),
                event("u1", "revenue", 5.0, Some("e1")),
                event("u1", "revenue", 2.0, None),
                event("u2", "revenue", 1.0, None),
            ],
            7,
        )
        .await
        .unwrap();
    assert_eq!((first.stored, first.duplicates), (3, 1));
    let again = s
        .insert_experiment_events(
            &t.id,
            "exp",
            &[
                event("u1", "revenue", 5.0, Some("e1")),
                event("u2", "revenue", 1.0, None),
            ],
            8,
        )
        .await
        .unwrap();
    assert_eq!(
        (again.stored, again.duplicates),
        (1, 1),
        "no id: stored again"
    );
    let inputs = s
        .experiment_analysis(
            &t.id,
            &AnalysisQuery {
                experiment_key: "exp",
                environment: "production",
                flag_key: "flag",
                variants: &["a".to_owned(), "b".to_owned()],
                metrics: &[("revenue".to_owned(), MetricShape::Value)],
                raw_values_limit: store::RAW_VALUES_LIMIT,
                windows: ALWAYS,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        inputs.metrics["revenue"]["a"],
        MetricObservations::Values(vec![7.0]),
        "e1 counted once"
    );
    assert_eq!(
        inputs.metrics["revenue"]["b"],
        MetricObservations::Values(vec![2.0])
    );
    let missing = s
        .insert_experiment_events(&t.id, "nope", &[event("u1", "m", 1.0, None)], 9)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    let bad = s
        .insert_experiment_events(&t.id, "exp", &[event("u1", "m", f64::INFINITY, None)], 9)
        .await
        .unwrap_err();
    assert!(
        matches!(bad, StoreError::Invalid { field: "value", .. }),
        "{bad:?}"
    );
}

async fn experiments_and_exposures_are_isolated_by_tenant(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Starter).await.unwrap();
    let b = s.create_tenant("b", Tier::Starter).await.unwrap();
    s.create_experiment(&a.id, "exp", "production", r#"{"owner":"a"}"#)
        .await
        .unwrap();
    // B may use the same key: its own row.
    s.create_experiment(&b.id, "exp", "production", r#"{"owner":"b"}"#)
        .await
        .unwrap();
    s.record_exposures(&a.id, &[exposure("flag", "u1", "a", 1)])
        .await
        .unwrap();
    s.record_exposures(
        &b.id,
        &[
            exposure("flag", "u1", "b", 1),
            exposure("flag", "u2", "b", 1),
        ],
    )
    .await
    .unwrap();
    s.insert_experiment_events(&a.id, "exp", &[event("u1", "buy", 1.0, Some("x"))], 1)
        .await
        .unwrap();
    // The same event id in another tenant is another event.
    let b_events = s
        .insert_experiment_events(&b.id, "exp", &[event("u1", "buy", 1.0, Some("x"))], 1)
        .await
        .unwrap();
    assert_eq!(b_events.stored, 1);

    let a_exp = s.experiment(&a.id, "exp").await.unwrap().unwrap();
    assert_eq!(a_exp.definition_json, r#"{"owner":"a"}"#);
    assert_eq!(s.experiments(&a.id).await.unwrap().len(), 1);
    assert_eq!(
        s.exposure(&a.id, "production", "flag", "u1")
            .await
            .unwrap()
            .map(|e| e.variant),
        Some("a".to_owned())
    );
    assert_eq!(
        s.exposure(&a.id, "production", "flag", "u2").await.unwrap(),
        None
    );
    // B's update with A's version changes only B's row.
    s.update_experiment(&b.id, "exp", "{}", &BTreeMap::new(), 1)
        .await
        .unwrap();
    assert_eq!(s.experiment(&a.id, "exp").await.unwrap(), Some(a_exp));

    let query = AnalysisQuery {
        experiment_key: "exp",
        environment: "production",
        flag_key: "flag",
        variants: &["a".to_owned(), "b".to_owned()],
        metrics: &[("buy".to_owned(), MetricShape::Conversion)],
        raw_values_limit: store::RAW_VALUES_LIMIT,
        windows: ALWAYS,
    };
    let a_inputs = s.experiment_analysis(&a.id, &query).await.unwrap();
    assert_eq!(
        a_inputs.users,
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 0)])
    );
    assert_eq!(
        a_inputs.metrics["buy"]["a"],
        MetricObservations::Conversions {
            conversions: 1,
            n: 1
        }
    );
    let b_inputs = s.experiment_analysis(&b.id, &query).await.unwrap();
    assert_eq!(
        b_inputs.users,
        BTreeMap::from([("a".to_owned(), 0), ("b".to_owned(), 2)])
    );
    assert_eq!(
        b_inputs.metrics["buy"]["b"],
        MetricObservations::Conversions {
            conversions: 1,
            n: 2
        }
    );
}

/// A small hand-made experiment: users u1..u6, flag `btn` in production.
async fn analysis_fixture(s: &Store, tenant: &str) {
    s.create_experiment(tenant, "exp", "production", "{}")
        .await
        .unwrap();
    let mut exposures = vec![
        exposure("btn", "u1", "control", 1),
        exposure("btn", "u2", "control", 1),
        exposure("btn", "u3", "control", 1),
        exposure("btn", "u4", "green", 1),
        exposure("btn", "u5", "green", 1),
        exposure("btn", "u6", "green", 1),
        // Not one of the experiment's variants: ignored.
        exposure("btn", "u7", "off", 1),
        // Another environment and another flag: not this experiment's users.
        exposure("other", "u8", "green", 1),
    ];
    exposures.push(Exposure {
        environment: "staging".to_owned(),
        ..exposure("btn", "u9", "green", 1)
    });
    s.record_exposures(tenant, &exposures).await.unwrap();
    s.insert_experiment_events(
        tenant,
        "exp",
        &[
            // checkout: u1 (control), u4 and u5 (green) convert; u6's event is worth 0.
            event("u1", "checkout", 1.0, None),
            event("u1", "checkout", 1.0, None),
            event("u4", "checkout", 1.0, None),
            event("u5", "checkout", 2.0, None),
            event("u6", "checkout", 0.0, None),
            // revenue: summed per user, 0 for users without events.
            event("u1", "revenue", 10.0, None),
            event("u1", "revenue", 5.0, None),
            event("u2", "revenue", 3.0, None),
            event("u4", "revenue", 20.0, None),
            event("u6", "revenue", 4.0, None),
            // Users outside the experiment: never counted.
            event("u7", "revenue", 100.0, None),
            event("u8", "revenue", 100.0, None),
            event("u9", "checkout", 1.0, None),
            event("stranger", "revenue", 100.0, None),
        ],
        1,
    )
    .await
    .unwrap();
}

fn analysis_query(raw_values_limit: u64) -> AnalysisQuery<'static> {
    static VARIANTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    static METRICS: std::sync::OnceLock<Vec<(String, MetricShape)>> = std::sync::OnceLock::new();
    AnalysisQuery {
        experiment_key: "exp",
        environment: "production",
        flag_key: "btn",
        variants: VARIANTS.get_or_init(|| vec!["control".to_owned(), "green".to_owned()]),
        metrics: METRICS.get_or_init(|| {
            vec![
                ("checkout".to_owned(), MetricShape::Conversion),
                ("revenue".to_owned(), MetricShape::Value),
            ]
        }),
        raw_values_limit,
        windows: ALWAYS,
    }
}

/// One open window from the beginning of time: every assignment counts.
const ALWAYS: &[store::AssignmentWindow] = &[store::AssignmentWindow {
    start_ms: i64::MIN,
    end_ms: None,
}];

fn sorted(observations: &MetricObservations) -> Vec<f64> {
    let MetricObservations::Values(v) = observations else {
        panic!("expected raw values, got {observations:?}");
    };
    let mut v = v.clone();
    v.sort_by(f64::total_cmp);
    v
}

async fn analysis_inputs_join_events_to_exposed_users(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    analysis_fixture(s, &t.id).await;
    let inputs = s
        .experiment_analysis(&t.id, &analysis_query(store::RAW_VALUES_LIMIT))
        .await
        .unwrap();
    assert_eq!(
        inputs.users,
        BTreeMap::from([("control".to_owned(), 3), ("green".to_owned(), 3)])
    );
    assert_eq!(
        inputs.metrics["checkout"]["control"],
        MetricObservations::Conversions {
            conversions: 1,
            n: 3
        }
    );
    assert_eq!(
        inputs.metrics["checkout"]["green"],
        MetricObservations::Conversions {
            conversions: 2,
            n: 3
        }
    );
    assert_eq!(
        sorted(&inputs.metrics["revenue"]["control"]),
        [0.0, 3.0, 15.0]
    );
    assert_eq!(
        sorted(&inputs.metrics["revenue"]["green"]),
        [0.0, 4.0, 20.0]
    );
    // Another tenant reading the same keys sees nothing.
    let other = s.create_tenant("other", Tier::Starter).await.unwrap();
    let empty = s
        .experiment_analysis(&other.id, &analysis_query(store::RAW_VALUES_LIMIT))
        .await
        .unwrap();
    assert_eq!(
        empty.users,
        BTreeMap::from([("control".to_owned(), 0), ("green".to_owned(), 0)])
    );
    assert_eq!(
        empty.metrics["checkout"]["green"],
        MetricObservations::Conversions {
            conversions: 0,
            n: 0
        }
    );
}

async fn analysis_summaries_match_raw_values_over_the_limit(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    analysis_fixture(s, &t.id).await;
    // Three users per variant is over a limit of 2: summaries computed in SQL.
    let inputs = s
        .experiment_analysis(&t.id, &analysis_query(2))
        .await
        .unwrap();
    let check = |variant: &str, values: [f64; 3]| {
        let mean = values.iter().sum::<f64>() / 3.0;
        let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 2.0;
        let MetricObservations::Summary {
            n,
            mean: got_mean,
            variance: got_variance,
        } = inputs.metrics["revenue"][variant]
        else {
            panic!(
                "expected a summary: {:?}",
                inputs.metrics["revenue"][variant]
            );
        };
        assert_eq!(n, 3, "{variant}");
        assert!(
            (got_mean - mean).abs() < 1e-12,
            "{variant}: {got_mean} vs {mean}"
        );
        assert!(
            (got_variance - variance).abs() < 1e-9,
            "{variant}: {got_variance} vs {variance}"
        );
    };
    check("control", [15.0, 3.0, 0.0]);
    check("green", [20.0, 0.0, 4.0]);
    // Conversions do not depend on the limit.
    assert_eq!(
        inputs.metrics["checkout"]["green"],
        MetricObservations::Conversions {
            conversions: 2,
            n: 3
        }
    );
}

async fn analysis_counts_only_assignments_inside_running_windows(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    s.create_experiment(&t.id, "exp", "production", "{}")
        .await
        .unwrap();
    s.record_exposures(
        &t.id,
        &[
            exposure("btn", "before", "control", 5),
            exposure("btn", "first", "control", 10),
            exposure("btn", "paused", "green", 25),
            exposure("btn", "second", "green", 30),
            exposure("btn", "late", "green", 1_000),
        ],
    )
    .await
    .unwrap();
    let windows = [
        store::AssignmentWindow {
            start_ms: 10,
            end_ms: Some(20),
        },
        store::AssignmentWindow {
            start_ms: 30,
            end_ms: None,
        },
    ];
    let users = |inputs: &store::AnalysisInputs| (inputs.users["control"], inputs.users["green"]);
    for limit in [store::RAW_VALUES_LIMIT, 0] {
        let query = AnalysisQuery {
            windows: &windows,
            ..analysis_query(limit)
        };
        let inputs = s.experiment_analysis(&t.id, &query).await.unwrap();
        // `before` and `paused` were assigned outside the windows.
        assert_eq!(users(&inputs), (1, 2), "limit {limit}");
        assert_eq!(
            inputs.metrics["checkout"]["green"],
            MetricObservations::Conversions {
                conversions: 0,
                n: 2
            }
        );
    }
    let closed = [store::AssignmentWindow {
        start_ms: 10,
        end_ms: Some(30),
    }];
    let query = AnalysisQuery {
        windows: &closed,
        ..analysis_query(store::RAW_VALUES_LIMIT)
    };
    let inputs = s.experiment_analysis(&t.id, &query).await.unwrap();
    assert_eq!(users(&inputs), (1, 1), "the end is exclusive");
    let never = AnalysisQuery {
        windows: &[],
        ..analysis_query(store::RAW_VALUES_LIMIT)
    };
    let inputs = s.experiment_analysis(&t.id, &never).await.unwrap();
    assert_eq!(users(&inputs), (0, 0), "never ran: nobody counts");
}

async fn an_experiment_owns_its_flag(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    s.create_experiment_owning(&t.id, "a", "production", Some("btn"), "{}")
        .await
        .unwrap();
    let second = s
        .create_experiment_owning(&t.id, "b", "production", Some("btn"), "{}")
        .await
        .unwrap_err();
    assert!(
        matches!(&second, StoreError::Conflict { what } if what.contains("flag 'btn'")),
        "{second:?}"
    );
    let same_key = s
        .create_experiment_owning(&t.id, "a", "staging", Some("btn"), "{}")
        .await
        .unwrap_err();
    assert!(
        matches!(&same_key, StoreError::Conflict { what } if what.contains("experiment 'a'")),
        "{same_key:?}"
    );
    // Another environment's flag of the same key, and experiments owning nothing, are fine.
    s.create_experiment_owning(&t.id, "c", "staging", Some("btn"), "{}")
        .await
        .unwrap();
    s.create_experiment(&t.id, "d", "production", "{}")
        .await
        .unwrap();
    s.create_experiment(&t.id, "e", "production", "{}")
        .await
        .unwrap();
}
