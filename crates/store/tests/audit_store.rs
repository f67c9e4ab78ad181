//! Audit log and data key storage: appends numbered without gaps (also concurrently), heads
//! that match the Merkle root of the stored leaves, proofs from stored logs, and tampering with
//! the rows from outside the store (edit, delete, insert, reorder, truncate, forged
//! checkpoints) caught at the right record. Every case runs on a fresh SQLite file and in a
//! private PostgreSQL schema.

use audit::{Checkpoint, CheckpointSource, Event, SignedCheckpoint, SigningKey, VerifyFailure};
use sqlx::Connection;
use store::testing::TestStore;
use store::{
    Backend, DataKeyState, NewAuditRecord, NewDataKey, Store, StoreError, StoredCheckpoint, Tier,
};

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
    appends_are_numbered_and_the_head_is_the_merkle_root,
    concurrent_appends_leave_no_gaps_and_tenants_apart,
    proofs_from_the_stored_log_verify,
    an_edited_event_fails_at_its_record,
    an_edited_time_fails_at_its_record,
    a_deleted_record_fails_at_its_seq,
    an_inserted_record_fails_at_its_seq,
    reordered_records_fail_at_the_lower_seq,
    a_rewritten_leaf_fails_at_the_checkpoint_after_it,
    truncation_is_caught_against_an_exported_checkpoint,
    a_forged_checkpoint_signature_is_rejected,
    data_keys_rotate_retire_and_are_destroyed,
    a_failed_key_change_appends_nothing,
);

const T0: i64 = 1_796_083_200_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn origin(tenant: &str) -> String {
    format!("signalbox/audit/{tenant}")
}

async fn tenant(s: &Store, name: &str) -> String {
    s.create_tenant(name, Tier::Starter).await.unwrap().id
}

fn records(from: usize, n: usize) -> Vec<NewAuditRecord> {
    let events = [
        Event::Received,
        Event::Redacted,
        Event::Scored,
        Event::Routed,
    ];
    (from..from + n)
        .map(|i| {
            NewAuditRecord::new(
                T0 + i as i64,
                format!("fb_{}", i / 4),
                events[i % 4].clone(),
                "key_test",
                &serde_json::json!({"i": i}),
            )
        })
        .collect()
}

/// Signs and stores a checkpoint of the current head, as the server's custody does.
async fn checkpoint(s: &Store, tenant: &str) -> SignedCheckpoint {
    let head = s.audit_head(tenant).await.unwrap();
    let signed = Checkpoint {
        origin: origin(tenant),
        size: head.size,
        root: head.root,
        at_ms: T0,
    }
    .sign(&key())
    .unwrap();
    s.insert_audit_checkpoint(
        tenant,
        &StoredCheckpoint {
            size: head.size,
            root: head.root,
            at_ms: T0,
            note: signed.to_note(),
        },
    )
    .await
    .unwrap();
    signed
}

async fn verify(
    s: &Store,
    tenant: &str,
    trusted: &[SignedCheckpoint],
) -> Result<audit::VerifiedLog, audit::VerifyError> {
    s.verify_audit_log(tenant, &origin(tenant), &key().verifying_key(), trusted)
        .await
        .unwrap()
}

/// Runs SQL on the fixture's database from outside the store, as an attacker with database
/// access would.
async fn raw(f: &TestStore, sql: &str) {
    let mut conn = match f.store.backend() {
        Backend::Postgres => {
            let mut c = sqlx::AnyConnection::connect(&store::testing::postgres_url())
                .await
                .unwrap();
            let schema = f.options.schema.as_deref().unwrap();
            sqlx::raw_sql(&format!("SET search_path TO {schema}"))
                .execute(&mut c)
                .await
                .unwrap();
            c
        }
        Backend::Sqlite => sqlx::AnyConnection::connect(&f.options.url).await.unwrap(),
    };
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn logged(f: &TestStore, name: &str, n: usize) -> String {
    let t = tenant(&f.store, name).await;
    f.store.append_audit(&t, &records(0, n)).await.unwrap();
    checkpoint(&f.store, &t).await;
    assert!(verify(&f.store, &t, &[]).await.is_ok());
    t
}

async fn appends_are_numbered_and_the_head_is_the_merkle_root(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    assert_eq!(s.audit_head(&t).await.unwrap().size, 0);
    assert_eq!(s.audit_head(&t).await.unwrap().root, audit::EMPTY_ROOT);
    assert_eq!(s.append_audit(&t, &records(0, 3)).await.unwrap(), 0);
    assert_eq!(s.append_audit(&t, &records(3, 250)).await.unwrap(), 3);
    assert_eq!(s.append_audit(&t, &[]).await.unwrap(), 253);
    let all = s.audit_records(&t, 0, 10_000).await.unwrap();
    assert_eq!(all.len(), 253);
    for (i, stored) in all.iter().enumerate() {
        assert_eq!(stored.record.seq, i as u64);
        assert_eq!(stored.record.tenant_id, t);
        assert_eq!(stored.leaf_hash, stored.record.leaf_hash());
    }
    assert_eq!(all[6].record.event, "scored");
    assert_eq!(
        all[6].record.detail_hash,
        audit::detail_hash(&serde_json::json!({"i": 6}))
    );
    let page = s.audit_records(&t, 100, 10).await.unwrap();
    assert_eq!(page.first().unwrap().record.seq, 100);
    assert_eq!(page.len(), 10);
    let leaves = s.audit_leaf_hashes(&t, 253).await.unwrap();
    let head = s.audit_head(&t).await.unwrap();
    assert_eq!(head.size, 253);
    assert_eq!(head.root, audit::root_of(&leaves));
    assert!(matches!(
        s.audit_leaf_hashes(&t, 254).await,
        Err(StoreError::NotFound { .. })
    ));
    let bad = NewAuditRecord {
        item_id: String::new(),
        ..records(0, 1).remove(0)
    };
    assert!(matches!(
        s.append_audit(&t, &[bad]).await,
        Err(StoreError::Invalid {
            field: "item_id",
            ..
        })
    ));
    // Checkpoints: stored once per size, listed in order, the latest found.
    let first = checkpoint(s, &t).await;
    s.append_audit(&t, &records(253, 1)).await.unwrap();
    checkpoint(s, &t).await;
    let listed = s.audit_checkpoints(&t).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.size).collect::<Vec<_>>(),
        vec![253, 254]
    );
    assert_eq!(
        s.latest_audit_checkpoint(&t).await.unwrap().unwrap().size,
        254
    );
    assert_eq!(
        s.audit_checkpoint(&t, 253).await.unwrap().unwrap().note,
        first.to_note()
    );
    let heads = s.operator_audit_heads().await.unwrap();
    let mine = heads.iter().find(|h| h.tenant_id == t).unwrap();
    assert_eq!(
        (mine.head.size, mine.latest_checkpoint_size),
        (254, Some(254))
    );
    let ok = verify(s, &t, &[first]).await.unwrap();
    assert_eq!((ok.records, ok.heads_checked), (254, 4));
}

async fn concurrent_appends_leave_no_gaps_and_tenants_apart(f: &TestStore) {
    let s = &f.store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let second = f.reopen().await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = if i % 2 == 0 {
            s.clone()
        } else {
            second.clone()
        };
        let t = if i % 3 == 0 { b.clone() } else { a.clone() };
        tasks.push(tokio::spawn(async move {
            store.append_audit(&t, &records(i * 10, 7)).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ra = s.audit_records(&a, 0, 1000).await.unwrap();
    let rb = s.audit_records(&b, 0, 1000).await.unwrap();
    assert_eq!((ra.len(), rb.len()), (56, 28));
    assert!(ra.iter().enumerate().all(|(i, r)| r.record.seq == i as u64));
    assert!(rb.iter().all(|r| r.record.tenant_id == b));
    verify(s, &a, &[]).await.unwrap();
    verify(s, &b, &[]).await.unwrap();
    second.close().await;
}

async fn proofs_from_the_stored_log_verify(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.append_audit(&t, &records(0, 37)).await.unwrap();
    let old = s.audit_head(&t).await.unwrap();
    s.append_audit(&t, &records(37, 21)).await.unwrap();
    let head = s.audit_head(&t).await.unwrap();
    let leaves = s.audit_leaf_hashes(&t, head.size).await.unwrap();
    for seq in [0u64, 17, 36, 57] {
        let proof = audit::inclusion_proof(seq, &leaves).unwrap();
        let leaf = s.audit_records(&t, seq, 1).await.unwrap()[0]
            .record
            .leaf_hash();
        audit::verify_inclusion(seq, head.size, &leaf, &proof, &head.root).unwrap();
    }
    let proof = audit::consistency_proof(old.size, &leaves).unwrap();
    audit::verify_consistency(old.size, head.size, &proof, &old.root, &head.root).unwrap();
}

async fn an_edited_event_fails_at_its_record(f: &TestStore) {
    let t = logged(f, "acme", 40).await;
    raw(
        f,
        &format!("UPDATE audit_log SET event = 'purged' WHERE tenant_id = '{t}' AND seq = 17"),
    )
    .await;
    let err = verify(&f.store, &t, &[]).await.unwrap_err();
    assert_eq!(err.seq, Some(17), "{err}");
    assert_eq!(err.failure, VerifyFailure::Edited);
}

async fn an_edited_time_fails_at_its_record(f: &TestStore) {
    let t = logged(f, "acme", 40).await;
    raw(
        f,
        &format!("UPDATE audit_log SET at_ms = at_ms - 60000 WHERE tenant_id = '{t}' AND seq = 3"),
    )
    .await;
    let err = verify(&f.store, &t, &[]).await.unwrap_err();
    assert_eq!((err.seq, err.failure), (Some(3), VerifyFailure::Edited));
}

async fn a_deleted_record_fails_at_its_seq(f: &TestStore) {
    let t = logged(f, "acme", 40).await;
    raw(
        f,
        &format!("DELETE FROM audit_log WHERE tenant_id = '{t}' AND seq = 22"),
    )
    .await;
    let err = verify(&f.store, &t, &[]).await.unwrap_err();
    assert_eq!(err.seq, Some(22), "{err}");
    assert_eq!(err.failure, VerifyFailure::Missing { next_found: 23 });
}

async fn an_inserted_record_fails_at_its_seq(f: &TestStore) {
    let t = logged(f, "acme", 40).await;
    // A well-formed record with a correct leaf hash, slipped in after the last one.
    raw(
        f,
        &format!(
            "INSERT INTO audit_log (tenant_id, seq, at_ms, item_id, event, actor, detail_hash, leaf_hash)
             SELECT tenant_id, 40, at_ms, item_id, event, actor, detail_hash, leaf_hash
             FROM audit_log WHERE tenant_id = '{t}' AND seq = 39"
        ),
    )
    .await;
    let err = verify(&f.store, &t, &[]).await.unwrap_err();
    assert_eq!(err.seq, Some(40), "{err}");
    assert_eq!(err.failure, VerifyFailure::BeyondHead { head_size: 40 });
}

async fn reordered_records_fail_at_the_lower_seq(f: &TestStore) {
    let t = logged(f, "acme", 40).await;
    let swap = |a: i64, b: i64| {
        format!(
            "UPDATE audit_log SET seq = -1 WHERE tenant_id = '{t}' AND seq = {a};
             UPDATE audit_log SET seq = {a} WHERE tenant_id = '{t}' AND seq = {b};
             UPDATE audit_log SET seq = {b} WHERE tenant_id = '{t}' AND seq = -1;"
        )
    };
    raw(f, &swap(9, 30)).await;
    let err = verify(&f.store, &t, &[]).await.unwrap_err();
    assert_eq!((err.seq, err.failure), (Some(9), VerifyFailure::Edited));
}

async fn a_rewritten_leaf_fails_at_the_checkpoint_after_it(f: &TestStore) {
    // An attacker who knows the encoding edits a record and recomputes its leaf hash: the
    // tree no longer matches the checkpoint signed after it.
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.append_audit(&t, &records(0, 10)).await.unwrap();
    checkpoint(s, &t).await;
    s.append_audit(&t, &records(10, 10)).await.unwrap();
    checkpoint(s, &t).await;
    let mut record = s.audit_records(&t, 14, 1).await.unwrap().remove(0).record;
    record.event = "purged".into();
    let leaf = hex::encode(record.leaf_hash());
    let (set_leaf, set_event) = match s.backend() {
        Backend::Sqlite => (format!("X'{leaf}'"), "'purged'"),
        Backend::Postgres => (format!("'\\x{leaf}'::bytea"), "'purged'"),
    };
    raw(
        f,
        &format!(
            "UPDATE audit_log SET event = {set_event}, leaf_hash = {set_leaf}
             WHERE tenant_id = '{t}' AND seq = 14"
        ),
    )
    .await;
    let err = verify(s, &t, &[]).await.unwrap_err();
    assert_eq!(
        err.seq,
        Some(10),
        "blames the records after the last good head: {err}"
    );
    assert!(
        matches!(err.failure, VerifyFailure::RootMismatch { size: 20, .. }),
        "{err}"
    );
}

async fn truncation_is_caught_against_an_exported_checkpoint(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.append_audit(&t, &records(0, 30)).await.unwrap();
    let exported = checkpoint(s, &t).await;
    // Cut the tail, and every trace of it: the head row and the checkpoints.
    raw(
        f,
        &format!(
            "DELETE FROM audit_log WHERE tenant_id = '{t}' AND seq >= 24;
             DELETE FROM audit_heads WHERE tenant_id = '{t}';
             DELETE FROM audit_checkpoints WHERE tenant_id = '{t}';"
        ),
    )
    .await;
    // Nothing inside the database gives it away…
    assert_eq!(verify(s, &t, &[]).await.unwrap().records, 24);
    // …but the checkpoint kept outside does.
    let err = verify(s, &t, &[exported]).await.unwrap_err();
    assert_eq!(err.seq, Some(24), "{err}");
    assert_eq!(
        err.failure,
        VerifyFailure::Truncated {
            size: 30,
            kind: CheckpointSource::Trusted
        }
    );
}

async fn a_forged_checkpoint_signature_is_rejected(f: &TestStore) {
    let s = &f.store;
    let t = logged(f, "acme", 12).await;
    let head = s.audit_head(&t).await.unwrap();
    let forged = Checkpoint {
        origin: origin(&t),
        size: head.size,
        root: head.root,
        at_ms: T0,
    }
    .sign(&SigningKey::from_bytes(&[1; 32]))
    .unwrap();
    // Keep the genuine key id, so only the signature itself is wrong.
    let mut forged_note = forged.clone();
    forged_note.signatures[0].key_id = audit::key_id(&key().verifying_key());
    let note = forged_note.to_note().replace('\'', "''");
    raw(
        f,
        &format!("UPDATE audit_checkpoints SET note = '{note}' WHERE tenant_id = '{t}'"),
    )
    .await;
    let err = verify(s, &t, &[]).await.unwrap_err();
    assert!(
        matches!(
            err.failure,
            VerifyFailure::BadCheckpoint {
                kind: CheckpointSource::Stored,
                reason: audit::CheckpointError::BadSignature,
                ..
            }
        ),
        "{err}"
    );
    // Presented as a trusted one, a checkpoint by another key is refused too.
    let err = s
        .verify_audit_log(&t, &origin(&t), &key().verifying_key(), &[forged])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err.failure, VerifyFailure::BadCheckpoint { .. }));
}

async fn data_keys_rotate_retire_and_are_destroyed(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    assert!(s.active_data_key(&t).await.unwrap().is_none());
    let audit = |event: Event, key: &str| {
        vec![NewAuditRecord::new(
            T0,
            key,
            event,
            "system",
            &serde_json::json!({}),
        )]
    };
    let first = s
        .add_data_key(
            &t,
            NewDataKey {
                key_id: "dk1",
                master_key_id: "m1",
                wrapped: &[1; 61],
            },
            &audit(Event::KeyRotated, "dk1"),
        )
        .await
        .unwrap();
    assert_eq!(first.state, DataKeyState::Active);
    s.add_data_key(
        &t,
        NewDataKey {
            key_id: "dk2",
            master_key_id: "m1",
            wrapped: &[2; 61],
        },
        &audit(Event::KeyRotated, "dk2"),
    )
    .await
    .unwrap();
    assert_eq!(s.active_data_key(&t).await.unwrap().unwrap().key_id, "dk2");
    assert_eq!(
        s.data_key(&t, "dk1").await.unwrap().unwrap().state,
        DataKeyState::Retired
    );
    assert!(s.data_key(&other, "dk1").await.unwrap().is_none());
    assert!(s.data_keys(&other).await.unwrap().is_empty());
    // Master key rotation: compare-and-set on the wrapping key.
    assert!(s
        .rewrap_data_key(&t, "dk1", "m1", "m2", &[3; 61])
        .await
        .unwrap());
    assert!(!s
        .rewrap_data_key(&t, "dk1", "m1", "m2", &[4; 61])
        .await
        .unwrap());
    let pending = s.operator_data_keys_not_wrapped_by("m2").await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|k| k.key_id.as_str())
            .collect::<Vec<_>>(),
        vec!["dk2"]
    );
    // Crypto-shredding erases the wrapped bytes.
    let destroyed = s
        .destroy_data_keys(
            &t,
            &["dk1".to_owned(), "dk2".to_owned(), "nope".to_owned()],
            &audit(Event::KeyDestroyed, "dk1"),
        )
        .await
        .unwrap();
    assert_eq!(destroyed, 2);
    for key in s.data_keys(&t).await.unwrap() {
        assert_eq!(key.state, DataKeyState::Destroyed);
        assert_eq!(key.wrapped, None);
    }
    assert!(s.active_data_key(&t).await.unwrap().is_none());
    assert!(!format!("{:?}", s.data_keys(&t).await.unwrap()).contains("[3, 3"));
    // Every change was logged, and the log still verifies.
    let events: Vec<String> = s
        .audit_records(&t, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.event)
        .collect();
    assert_eq!(events, ["key_rotated", "key_rotated", "key_destroyed"]);
    verify(s, &t, &[]).await.unwrap();
}

async fn a_failed_key_change_appends_nothing(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let key = NewDataKey {
        key_id: "dk1",
        master_key_id: "m1",
        wrapped: &[1; 61],
    };
    let audit = records(0, 1);
    s.add_data_key(&t, key.clone(), &audit).await.unwrap();
    let err = s.add_data_key(&t, key, &audit).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(s.audit_head(&t).await.unwrap().size, 1);
    assert_eq!(s.active_data_key(&t).await.unwrap().unwrap().key_id, "dk1");
}
