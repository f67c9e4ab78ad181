//! Feedback imports: a batch's items, rejects and checkpoint commit together; a stale
//! checkpoint writes nothing; a re-import of committed rows stores nothing twice; a restart
//! resets the import; imports are per tenant. Every case runs on a fresh SQLite file and in a
//! private PostgreSQL schema.

use store::testing::TestStore;
use store::{FeedbackEvent, FeedbackStatus, ImportCheckpoint, NewFeedbackItem, StoreError, Tier};

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = store::testing::TestStore::new(store::Backend::Sqlite).await;
                super::$case(&fixture).await;
                fixture.cleanup().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = store::testing::TestStore::new(store::Backend::Postgres).await;
                super::$case(&fixture).await;
                fixture.cleanup().await;
            })*
        }
    };
}

on_both_backends!(
    a_batch_commits_items_rejects_and_checkpoint_together,
    a_stale_checkpoint_writes_nothing,
    restart_resets_and_imports_are_per_tenant,
);

const NOW: i64 = 1_750_000_000_000;

fn item(id: &str, hash: &str, line: i64) -> NewFeedbackItem {
    NewFeedbackItem {
        id: id.to_owned(),
        user_id: Some("u1".to_owned()),
        kind: "review".to_owned(),
        channel: Some("web".to_owned()),
        rating: Some(4),
        locale: None,
        region: None,
        metadata: None,
        occurred_ms: NOW - 1_000,
        tier: "batch".to_owned(),
        mode: "hybrid".to_owned(),
        content_hash: hash.to_owned(),
        text_sealed: None,
        text_key_id: None,
        status: FeedbackStatus::Processed,
        analysis: None,
        events: vec![FeedbackEvent::new(
            "received",
            "import",
            serde_json::json!({ "import_line": line }),
        )],
    }
}

fn at(next_line: i64, byte_offset: i64) -> ImportCheckpoint {
    ImportCheckpoint {
        next_line,
        byte_offset,
    }
}

async fn tenant(fixture: &TestStore, name: &str) -> String {
    fixture
        .store
        .create_tenant(name, Tier::Business)
        .await
        .unwrap()
        .id
}

async fn a_batch_commits_items_rejects_and_checkpoint_together(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let started = store
        .begin_feedback_import(&t, "imp_1", "legacy.csv", "f", "m", at(2, 10), false, NOW)
        .await
        .unwrap();
    assert_eq!((started.next_line, started.byte_offset), (2, 10));
    assert_eq!(started.status, "running");
    let rejects = vec![
        (3, "rating".to_owned(), "must be 1..5".to_owned()),
        (3, "type".to_owned(), "unknown".to_owned()),
    ];
    let out = store
        .store_feedback_import_batch(
            &t,
            "imp_1",
            &[item("a", "h1", 2), item("b", "h2", 4)],
            &rejects,
            at(2, 10),
            at(5, 50),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((out.stored, out.duplicates, out.rejected), (2, 0, 1));
    // The same rows again (a lost checkpoint): duplicates, and a changed one is a conflict.
    let again = store
        .store_feedback_import_batch(
            &t,
            "imp_1",
            &[item("a", "h1", 5), item("b", "other", 6)],
            &[],
            at(5, 50),
            at(7, 70),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates, again.rejected), (0, 1, 1));
    assert_eq!(again.conflicts, vec![1]);
    let import = store.feedback_import(&t, "imp_1").await.unwrap().unwrap();
    assert_eq!((import.next_line, import.byte_offset), (7, 70));
    assert_eq!(
        (import.stored, import.duplicates, import.rejected),
        (2, 1, 2)
    );
    let listed = store
        .feedback_import_rejects(&t, "imp_1", 100)
        .await
        .unwrap();
    let lines: Vec<(i64, &str)> = listed.iter().map(|r| (r.line, r.field.as_str())).collect();
    assert_eq!(lines, vec![(3, "rating"), (3, "type"), (6, "id")]);
    assert!(store.feedback_item(&t, "a").await.unwrap().is_some());
    store
        .set_feedback_import_status(&t, "imp_1", "completed", NOW + 1)
        .await
        .unwrap();
    let done = store.feedback_import(&t, "imp_1").await.unwrap().unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.finished_at_ms, Some(NOW + 1));
}

async fn a_stale_checkpoint_writes_nothing(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    store
        .begin_feedback_import(&t, "imp_1", "legacy.csv", "f", "m", at(2, 10), false, NOW)
        .await
        .unwrap();
    let stale = store
        .store_feedback_import_batch(
            &t,
            "imp_1",
            &[item("a", "h1", 9)],
            &[(9, "text".to_owned(), "bad".to_owned())],
            at(8, 80),
            at(10, 100),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::VersionMismatch { .. }),
        "{stale}"
    );
    assert!(store.feedback_item(&t, "a").await.unwrap().is_none());
    assert!(store
        .feedback_import_rejects(&t, "imp_1", 10)
        .await
        .unwrap()
        .is_empty());
    let import = store.feedback_import(&t, "imp_1").await.unwrap().unwrap();
    assert_eq!((import.next_line, import.stored), (2, 0));
}

async fn restart_resets_and_imports_are_per_tenant(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let other = tenant(fixture, "globex").await;
    store
        .begin_feedback_import(&t, "imp_1", "legacy.csv", "f", "m", at(2, 10), false, NOW)
        .await
        .unwrap();
    store
        .store_feedback_import_batch(
            &t,
            "imp_1",
            &[],
            &[(2, "text".to_owned(), "bad".to_owned())],
            at(2, 10),
            at(3, 20),
            NOW,
        )
        .await
        .unwrap();
    let resumed = store
        .begin_feedback_import(&t, "imp_1", "legacy.csv", "f", "m", at(2, 10), false, NOW)
        .await
        .unwrap();
    assert_eq!(resumed.next_line, 3, "a resume keeps the checkpoint");
    assert!(store.feedback_imports(&other).await.unwrap().is_empty());
    assert!(store
        .feedback_import(&other, "imp_1")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .feedback_import_rejects(&other, "imp_1", 10)
        .await
        .unwrap()
        .is_empty());
    let restarted = store
        .begin_feedback_import(&t, "imp_1", "legacy.csv", "f", "m", at(2, 10), true, NOW)
        .await
        .unwrap();
    assert_eq!((restarted.next_line, restarted.rejected), (2, 0));
    assert!(store
        .feedback_import_rejects(&t, "imp_1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.feedback_imports(&t).await.unwrap().len(), 1);
}
