//! The storage integration suite. Every case runs twice: on a fresh SQLite file and in a private
//! PostgreSQL schema, so both backends are held to the same behaviour.

use store::testing::TestStore;
use store::{Backend, Scope, Scopes, Store, StoreError, Tier};

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
    tenants_cannot_see_or_revoke_each_others_keys,
    issuing_needs_a_tenant_and_a_scope,
    migrations_are_idempotent_across_reopen,
    concurrent_writers_do_not_lose_tenants,
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

async fn tenants_cannot_see_or_revoke_each_others_keys(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Free).await.unwrap();
    let b = s.create_tenant("b", Tier::Free).await.unwrap();
    let ka = s.issue_api_key(&a.id, read_write(), None).await.unwrap();
    let kb = s.issue_api_key(&b.id, read_write(), None).await.unwrap();
    assert_eq!(s.api_key(&b.id, &ka.info.id).await.unwrap(), None);
    assert_eq!(s.revoke_api_key(&b.id, &ka.info.id).await.unwrap(), None);
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
