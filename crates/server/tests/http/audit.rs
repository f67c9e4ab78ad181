//! Custody over a real store: sealing and opening under per-tenant data keys with clear errors
//! for wrong, missing and destroyed keys, rotation and rewrapping; and the audit routes
//! (signed checkpoints that verify with the published key, records, proofs that verify).
//! On both backends.

use audit::{Event, SignedCheckpoint, SigningKey};
use server::{Custody, CustodyError, CustodyKeys, CustodySettings};
use store::{Backend, NewAuditRecord, Scope, Store};
use vault::{Keyring, MasterKey, SecretKey};

use crate::TestApp;

fn keyring(keys: &[(&str, u8, bool)]) -> Keyring {
    Keyring::new(
        keys.iter()
            .map(|(id, byte, active)| MasterKey {
                id: (*id).to_owned(),
                key: SecretKey::from_bytes([*byte; 32]),
                active: *active,
            })
            .collect(),
    )
    .unwrap()
}

fn custody(store: &Store, ring: Keyring) -> Custody {
    Custody::new(
        store.clone(),
        &CustodySettings {
            keys: Some(CustodyKeys {
                keyring: ring,
                signing_key: SigningKey::from_bytes(&[9; 32]),
            }),
            ..CustodySettings::default()
        },
    )
    .unwrap()
}

async fn sealing_opening_rotation_and_shredding(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, _) = app.tenant("acme", &[Scope::Admin]).await;
    let (other, _) = app.tenant("other", &[Scope::Admin]).await;
    let store = app.state.store();
    let c = custody(store, keyring(&[("m1", 1, true)]));
    let t = tenant.id.as_str();

    let sealed = c
        .seal_text(t, "fb_1", "text", "call 555-0100 MARKER")
        .await
        .unwrap();
    let bytes = sealed.as_bytes();
    assert!(!String::from_utf8_lossy(bytes).contains("MARKER"));
    assert_eq!(
        c.open_text(t, "fb_1", "text", bytes).await.unwrap(),
        "call 555-0100 MARKER"
    );
    // Bound to its row, field and tenant.
    for (tenant_id, record, field) in [
        (t, "fb_2", "text"),
        (t, "fb_1", "note"),
        (other.id.as_str(), "fb_1", "text"),
    ] {
        let err = c
            .open_text(tenant_id, record, field, bytes)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CustodyError::AuthenticationFailed | CustodyError::UnknownDataKey { .. }
            ),
            "{err}"
        );
    }
    let mut tampered = bytes.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        c.open_text(t, "fb_1", "text", &tampered).await,
        Err(CustodyError::AuthenticationFailed)
    ));
    assert!(matches!(
        c.open_text(t, "fb_1", "text", b"garbage").await,
        Err(CustodyError::Malformed(_))
    ));

    // A fresh process with another secret under the same id, or without the id at all.
    let impostor = custody(store, keyring(&[("m1", 2, true)]));
    let err = impostor
        .open_text(t, "fb_1", "text", bytes)
        .await
        .unwrap_err();
    assert!(matches!(err, CustodyError::WrongMasterKey { .. }), "{err}");
    let stranger = custody(store, keyring(&[("m9", 1, true)]));
    let err = stranger
        .open_text(t, "fb_1", "text", bytes)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CustodyError::UnknownMasterKey { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("m1"), "{err}");

    // Rotation: new values under the new key, old ones still open.
    let first_key = Custody::sealed_key_id(bytes).unwrap();
    let second_key = c.rotate_data_key(t, "key_admin").await.unwrap();
    assert_ne!(first_key, second_key);
    let newer = c.seal_text(t, "fb_2", "text", "second").await.unwrap();
    assert_eq!(
        Custody::sealed_key_id(newer.as_bytes()).unwrap(),
        second_key
    );
    assert_eq!(
        c.open_text(t, "fb_1", "text", bytes).await.unwrap(),
        "call 555-0100 MARKER"
    );

    // Master key rotation: a new active master key, rewrap, then the old one can go.
    let rotated = custody(store, keyring(&[("m2", 3, true), ("m1", 1, false)]));
    let report = rotated.rewrap_all().await.unwrap();
    assert_eq!((report.rewrapped, report.failed.len()), (2, 0));
    let only_new = custody(store, keyring(&[("m2", 3, true)]));
    assert_eq!(
        only_new
            .open_text(t, "fb_2", "text", newer.as_bytes())
            .await
            .unwrap(),
        "second"
    );

    // Crypto-shredding: the first key goes, its values read as erased, the rest still open.
    assert_eq!(
        c.destroy_data_keys(t, std::slice::from_ref(&first_key), "key_admin")
            .await
            .unwrap(),
        1
    );
    let err = only_new
        .open_text(t, "fb_1", "text", bytes)
        .await
        .unwrap_err();
    assert!(matches!(err, CustodyError::Erased { .. }), "{err}");
    let err = c.open_text(t, "fb_1", "text", bytes).await.unwrap_err();
    assert!(
        matches!(err, CustodyError::Erased { .. }),
        "the local cache forgets at once: {err}"
    );
    assert_eq!(
        c.open_text(t, "fb_2", "text", newer.as_bytes())
            .await
            .unwrap(),
        "second"
    );

    // Every key change is in the log, which still verifies.
    let events: Vec<String> = store
        .audit_records(t, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.event)
        .collect();
    assert_eq!(events, ["key_rotated", "key_rotated", "key_destroyed"]);
    c.checkpoint(t).await.unwrap();
    let verified = c.verify(t, &[]).await.unwrap().unwrap();
    assert_eq!(verified.records, 3);
    app.cleanup().await;
}

#[tokio::test]
async fn sealing_opening_rotation_and_shredding_on_sqlite() {
    sealing_opening_rotation_and_shredding(Backend::Sqlite).await;
}

#[tokio::test]
async fn sealing_opening_rotation_and_shredding_on_postgres() {
    sealing_opening_rotation_and_shredding(Backend::Postgres).await;
}

fn hash(hex_text: &serde_json::Value) -> audit::Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text.as_str().unwrap(), &mut out).unwrap();
    out
}

async fn audit_routes(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("reader", &[Scope::Read]).await;
    let key = Some(admin.secret.as_str());
    let records: Vec<NewAuditRecord> = (0..25)
        .map(|i| {
            NewAuditRecord::new(
                1_796_083_200_000 + i,
                format!("fb_{i}"),
                Event::Received,
                "key_test",
                &serde_json::json!({"i": i}),
            )
        })
        .collect();
    app.state
        .store()
        .append_audit(&tenant.id, &records[..10])
        .await
        .unwrap();

    let first = app.get("/api/v1/audit/checkpoint", key).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    assert_eq!(first["size"], 10);
    let public = app.get("/api/v1/audit/public-key", key).await.json();
    assert_eq!(public["algorithm"], "ed25519");
    let verifying =
        server::custody::parse_public_key(public["public_key"].as_str().unwrap()).unwrap();
    let signed = SignedCheckpoint::parse(first["note"].as_str().unwrap()).unwrap();
    signed.verify(&verifying).unwrap();
    assert_eq!(
        signed.checkpoint.origin,
        format!("signalbox/audit/{}", tenant.id)
    );
    assert_eq!(hex::encode(signed.checkpoint.root), first["root"]);
    // Unchanged head: the same checkpoint again.
    assert_eq!(
        app.get("/api/v1/audit/checkpoint", key).await.json()["note"],
        first["note"]
    );

    app.state
        .store()
        .append_audit(&tenant.id, &records[10..])
        .await
        .unwrap();
    let second = app.get("/api/v1/audit/checkpoint", key).await.json();
    assert_eq!(second["size"], 25);

    let page = app
        .get("/api/v1/audit/records?from=20&limit=3", key)
        .await
        .json();
    assert_eq!(page["records"].as_array().unwrap().len(), 3);
    assert_eq!(page["records"][0]["seq"], 20);
    assert_eq!(page["records"][0]["event"], "received");
    assert_eq!(page["next_from"], 23);
    let last = app
        .get("/api/v1/audit/records?from=23&limit=3", key)
        .await
        .json();
    assert_eq!(last["next_from"], serde_json::Value::Null);

    let proof = app
        .get("/api/v1/audit/proofs/inclusion?seq=7&size=10", key)
        .await
        .json();
    let path: Vec<audit::Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    audit::verify_inclusion(
        7,
        10,
        &hash(&proof["leaf_hash"]),
        &path,
        &signed.checkpoint.root,
    )
    .unwrap();
    let consistency = app
        .get("/api/v1/audit/proofs/consistency?from=10", key)
        .await
        .json();
    assert_eq!(consistency["to"], 25);
    let path: Vec<audit::Hash> = consistency["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    audit::verify_consistency(
        10,
        25,
        &path,
        &signed.checkpoint.root,
        &hash(&second["root"]),
    )
    .unwrap();

    for (query, parameter) in [
        ("/api/v1/audit/proofs/inclusion?seq=10&size=10", "seq"),
        ("/api/v1/audit/proofs/inclusion?seq=1&size=26", "size"),
        ("/api/v1/audit/proofs/consistency?from=12&to=11", "from"),
        ("/api/v1/audit/records?limit=0", "limit"),
        ("/api/v1/audit/records?from=x", "from"),
    ] {
        let path = query.split('?').next().unwrap();
        let body = app
            .get(query, key)
            .await
            .assert_problem(400, "invalid_parameter", path);
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
    app.get("/api/v1/audit/checkpoint", Some(reader.secret.as_str()))
        .await
        .assert_problem(403, "forbidden", "/api/v1/audit/checkpoint");
    app.get("/api/v1/audit/proofs/inclusion?seq=25", key)
        .await
        .assert_problem(404, "not_found", "/api/v1/audit/proofs/inclusion");
    // Another tenant's log is its own: empty.
    let (_, other) = app.tenant("other", &[Scope::Admin]).await;
    let theirs = app
        .get("/api/v1/audit/records", Some(other.secret.as_str()))
        .await
        .json();
    assert_eq!(theirs["size"], 0);
    app.cleanup().await;
}

#[tokio::test]
async fn audit_routes_on_sqlite() {
    audit_routes(Backend::Sqlite).await;
}

#[tokio::test]
async fn audit_routes_on_postgres() {
    audit_routes(Backend::Postgres).await;
}
