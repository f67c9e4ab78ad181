//! Feedback storage: idempotent ingest by (tenant, id) with per-item conflicts, items and their
//! processing jobs in one transaction, fenced processing results (a retried job applies once),
//! history, list filters with keyset pages, re-encryption fencing, configs and tenant isolation.
//! Every case runs on a fresh SQLite file and in a private PostgreSQL schema.

use jobs::Priority;
use store::testing::TestStore;
use store::{
    FeedbackAnalysis, FeedbackEvent, FeedbackFilter, FeedbackInsertion, FeedbackJobSpec,
    FeedbackStatus, JobFilter, NewFeedbackItem, Tier,
};

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
    ingest_is_idempotent_and_conflicts_per_item,
    items_and_their_jobs_commit_together,
    a_processing_result_applies_once,
    list_filters_and_pages_by_keyset,
    reseal_applies_only_under_the_old_key,
    configs_are_versioned_and_tenants_isolated,
    purge_erases_text_and_keeps_history,
);

const NOW: i64 = 1_750_000_000_000;

fn item(id: &str, hash: &str) -> NewFeedbackItem {
    NewFeedbackItem {
        id: id.to_owned(),
        user_id: Some("u1".to_owned()),
        kind: "review".to_owned(),
        channel: Some("web".to_owned()),
        rating: Some(4),
        locale: Some("en-GB".to_owned()),
        region: Some("eu".to_owned()),
        metadata: Some("{\"k\":1}".to_owned()),
        occurred_ms: NOW - 1_000,
        tier: "standard".to_owned(),
        mode: "hybrid".to_owned(),
        content_hash: hash.to_owned(),
        text_sealed: Some("c2VhbGVk".to_owned()),
        text_key_id: Some("dk1".to_owned()),
        status: FeedbackStatus::Received,
        analysis: None,
        events: vec![FeedbackEvent::new(
            "received",
            "key_1",
            serde_json::json!({"tier": "standard"}),
        )],
    }
}

fn analysis(alignment: f64, violations: &[&str]) -> FeedbackAnalysis {
    FeedbackAnalysis {
        text_redacted: Some("mail me at <EMAIL_ADDRESS>".to_owned()),
        has_pii: true,
        pii: Some("[]".to_owned()),
        sentiment: Some(0.5),
        toxicity: Some("{}".to_owned()),
        alignment: Some(alignment),
        risk: Some(0.2),
        route: Some("full".to_owned()),
        violations: violations.iter().map(|s| (*s).to_owned()).collect(),
        trace: Some("{\"rules\":[]}".to_owned()),
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

async fn ingest_is_idempotent_and_conflicts_per_item(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let (first, _) = store
        .insert_feedback(&t, &[item("a", "h1"), item("b", "h2")], None, NOW)
        .await
        .unwrap();
    assert_eq!(first, vec![FeedbackInsertion::Stored; 2]);
    let (again, _) = store
        .insert_feedback(
            &t,
            &[
                item("a", "h1"),
                item("b", "other"),
                item("c", "h3"),
                item("c", "h3"),
                item("c", "x"),
            ],
            None,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![
            FeedbackInsertion::Duplicate,
            FeedbackInsertion::Conflict,
            FeedbackInsertion::Stored,
            FeedbackInsertion::Duplicate,
            FeedbackInsertion::Conflict,
        ]
    );
    let b = store.feedback_item(&t, "b").await.unwrap().unwrap();
    assert_eq!(b.content_hash, "h2", "a conflict changes nothing");
    assert_eq!(b.status, FeedbackStatus::Received);
    assert_eq!(b.revision, 1);
    let history = store.feedback_history(&t, "a").await.unwrap();
    assert_eq!(
        history.len(),
        1,
        "a duplicate writes no history: {history:?}"
    );
    assert_eq!(history[0].event, "received");
}

async fn items_and_their_jobs_commit_together(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let items: Vec<NewFeedbackItem> = (0..250).map(|i| item(&format!("i{i:03}"), "h")).collect();
    let spec = FeedbackJobSpec {
        handler: "feedback.process",
        priority: Priority::High,
        max_attempts: 2,
        timeout_ms: 2_000,
    };
    let (out, jobs) = store
        .insert_feedback(&t, &items, Some(spec), NOW)
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == FeedbackInsertion::Stored));
    // 100 item ids per job.
    assert_eq!(jobs.len(), 3);
    let mut named: Vec<String> = Vec::new();
    for job in &jobs {
        assert_eq!(job.job.priority, Priority::High);
        assert_eq!(job.job.max_attempts, 2);
        assert_eq!(job.job.timeout_ms, 2_000);
        let payload: serde_json::Value = serde_json::from_str(&job.job.payload).unwrap();
        for id in payload["item_ids"].as_array().unwrap() {
            named.push(id.as_str().unwrap().to_owned());
        }
    }
    named.sort();
    let mut expected: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    expected.sort();
    assert_eq!(named, expected);
    // A re-post stores nothing and enqueues nothing.
    let (_, again) = store
        .insert_feedback(&t, &items[..10], Some(spec), NOW)
        .await
        .unwrap();
    assert!(again.is_empty());
    let listed = store
        .list_jobs(
            &t,
            &JobFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
}

async fn a_processing_result_applies_once(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    store
        .insert_feedback(&t, &[item("a", "h")], None, NOW)
        .await
        .unwrap();
    let read = store.feedback_item(&t, "a").await.unwrap().unwrap();
    let events = [
        FeedbackEvent::new("redacted", "worker", serde_json::json!({"findings": 1})),
        FeedbackEvent::new("processed", "worker", serde_json::json!({})),
    ];
    let result = analysis(0.9, &["PRIVACY"]);
    // Two attempts that read the same revision: the first applies, the second changes nothing.
    let first = store
        .apply_feedback_result(
            &t,
            "a",
            read.revision,
            FeedbackStatus::Processed,
            &result,
            &events,
            NOW + 5,
        )
        .await
        .unwrap();
    let second = store
        .apply_feedback_result(
            &t,
            "a",
            read.revision,
            FeedbackStatus::NeedsReview,
            &analysis(0.1, &[]),
            &events,
            NOW + 6,
        )
        .await
        .unwrap();
    assert!(first);
    assert!(!second);
    let after = store.feedback_item(&t, "a").await.unwrap().unwrap();
    assert_eq!(after.status, FeedbackStatus::Processed);
    assert_eq!(after.analysis, result);
    assert_eq!(after.attempts, 1);
    assert_eq!(after.processed_ms, Some(NOW + 5));
    assert_eq!(after.revision, read.revision + 1);
    let history = store.feedback_history(&t, "a").await.unwrap();
    let names: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(names, ["received", "redacted", "processed"]);
    // A processed item cannot be failed by a late job either.
    assert!(!store
        .fail_feedback(
            &t,
            "a",
            after.revision,
            &FeedbackEvent::new("failed", "worker", serde_json::json!({})),
            NOW + 7
        )
        .await
        .unwrap());
}

async fn list_filters_and_pages_by_keyset(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let other = tenant(fixture, "other").await;
    let mut items = Vec::new();
    for i in 0..30 {
        let mut it = item(&format!("i{i:02}"), "h");
        it.occurred_ms = NOW + (i / 2) as i64; // pairs share a time: the id breaks ties
        it.kind = if i % 3 == 0 { "bug" } else { "review" }.to_owned();
        it.region = Some(if i % 2 == 0 { "eu" } else { "us" }.to_owned());
        if i % 5 == 0 {
            it.status = FeedbackStatus::Processed;
            it.analysis = Some(analysis(i as f64 / 30.0, &["HARMLESS", "PRIVACY"]));
        }
        items.push(it);
    }
    store.insert_feedback(&t, &items, None, NOW).await.unwrap();
    store
        .insert_feedback(&other, &items[..5], None, NOW)
        .await
        .unwrap();

    // Pages of 7 cover every item once, newest first.
    let mut seen = Vec::new();
    let mut filter = FeedbackFilter {
        limit: 7,
        ..Default::default()
    };
    loop {
        let page = store.list_feedback(&t, &filter).await.unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        filter.after = Some((last.occurred_ms, last.id.clone()));
        seen.extend(page.into_iter().map(|r| (r.occurred_ms, r.id)));
    }
    assert_eq!(seen.len(), 30);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let t = t.as_str();
    let count = |f: FeedbackFilter| async move {
        store
            .list_feedback(t, &FeedbackFilter { limit: 500, ..f })
            .await
            .unwrap()
            .len()
    };
    assert_eq!(
        count(FeedbackFilter {
            kind: Some("bug".into()),
            ..Default::default()
        })
        .await,
        10
    );
    assert_eq!(
        count(FeedbackFilter {
            region: Some("us".into()),
            ..Default::default()
        })
        .await,
        15
    );
    assert_eq!(
        count(FeedbackFilter {
            status: Some(FeedbackStatus::Processed),
            ..Default::default()
        })
        .await,
        6
    );
    assert_eq!(
        count(FeedbackFilter {
            has_pii: Some(true),
            ..Default::default()
        })
        .await,
        6
    );
    // Alignment i/30 for i in {0,5,10,15,20,25}: >= 0.5 and <= 0.75 keeps 15, 20.
    assert_eq!(
        count(FeedbackFilter {
            min_alignment: Some(0.5),
            max_alignment: Some(0.75),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(FeedbackFilter {
            violation: Some("PRIVACY".into()),
            ..Default::default()
        })
        .await,
        6
    );
    assert_eq!(
        count(FeedbackFilter {
            violation: Some("FAIR".into()),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(FeedbackFilter {
            from_ms: Some(NOW + 10),
            to_ms: Some(NOW + 12),
            ..Default::default()
        })
        .await,
        4
    );
}

async fn reseal_applies_only_under_the_old_key(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let items: Vec<NewFeedbackItem> = (0..5).map(|i| item(&format!("i{i}"), "h")).collect();
    store.insert_feedback(&t, &items, None, NOW).await.unwrap();
    let todo = store
        .feedback_sealed_under_other_keys(&t, "dk2", 3)
        .await
        .unwrap();
    assert_eq!(todo.len(), 3);
    assert!(todo.iter().all(|(key, _)| key == "dk1"));
    assert!(store
        .reseal_feedback(&t, "i0", "dk1", "dk2", "bmV3")
        .await
        .unwrap());
    // Fenced: it is no longer under dk1.
    assert!(!store
        .reseal_feedback(&t, "i0", "dk1", "dk3", "b3RoZXI=")
        .await
        .unwrap());
    let i0 = store.feedback_item(&t, "i0").await.unwrap().unwrap();
    assert_eq!(i0.text_key_id.as_deref(), Some("dk2"));
    assert_eq!(i0.text_sealed.as_deref(), Some("bmV3"));
    assert_eq!(i0.revision, 1, "re-encryption is not a state change");
    assert_eq!(
        store.count_feedback_sealed_with(&t, "dk1").await.unwrap(),
        4
    );
    assert_eq!(
        store
            .feedback_sealed_under_other_keys(&t, "dk2", 100)
            .await
            .unwrap()
            .len(),
        4
    );
}

async fn configs_are_versioned_and_tenants_isolated(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let other = tenant(fixture, "other").await;
    assert!(store.feedback_config(&t).await.unwrap().is_none());
    let v1 = store
        .put_feedback_config(&t, "mode = 'research'", NOW)
        .await
        .unwrap();
    let v2 = store
        .put_feedback_config(&t, "mode = 'hybrid'", NOW + 1)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    let read = store.feedback_config(&t).await.unwrap().unwrap();
    assert_eq!(read.config, "mode = 'hybrid'");
    assert!(store.feedback_config(&other).await.unwrap().is_none());
    store
        .insert_feedback(&t, &[item("secret", "h")], None, NOW)
        .await
        .unwrap();
    assert!(store
        .feedback_item(&other, "secret")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .feedback_history(&other, "secret")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .feedback_items(&other, &["secret".to_owned()])
        .await
        .unwrap()
        .is_empty());
    assert!(!store
        .purge_feedback(
            &other,
            "secret",
            &FeedbackEvent::new("purged", "key", serde_json::json!({})),
            NOW
        )
        .await
        .unwrap());
    // An unknown tenant is refused, not stored.
    assert!(store
        .insert_feedback("tn_missing", &[item("x", "h")], None, NOW)
        .await
        .is_err());
}

async fn purge_erases_text_and_keeps_history(fixture: &TestStore) {
    let store = &fixture.store;
    let t = tenant(fixture, "acme").await;
    let mut it = item("a", "h");
    it.status = FeedbackStatus::Processed;
    it.analysis = Some(analysis(0.9, &[]));
    store.insert_feedback(&t, &[it], None, NOW).await.unwrap();
    assert!(store
        .purge_feedback(
            &t,
            "a",
            &FeedbackEvent::new("purged", "key_1", serde_json::json!({})),
            NOW + 1
        )
        .await
        .unwrap());
    let a = store.feedback_item(&t, "a").await.unwrap().unwrap();
    assert_eq!(a.status, FeedbackStatus::Purged);
    assert_eq!(a.text_sealed, None);
    assert_eq!(a.analysis.text_redacted, None);
    assert_eq!(a.analysis.alignment, Some(0.9));
    let names: Vec<String> = store
        .feedback_history(&t, "a")
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(names, ["received", "purged"]);
}
