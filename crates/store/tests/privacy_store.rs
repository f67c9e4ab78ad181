//! Privacy budgets, atomic spending with its ledger, and the analytics row loader, on both
//! backends.

use std::sync::Arc;

use store::testing::TestStore;
use store::{
    FeedbackEvent, FeedbackStatus, NewFeedbackItem, NewPrivacyRelease, PrivacyBudgetRecord,
    PrivacyLimit, PrivacySpendOutcome, PrivacySpent, Tier, WeberProfileRecord,
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
    budgets_round_trip_per_tenant,
    concurrent_spends_never_pass_the_limit_and_the_ledger_sums_to_the_spend,
    ledger_pages_newest_first_and_stays_in_its_tenant,
    analytics_rows_join_the_segment_and_stay_in_the_window_and_tenant,
    a_stored_budget_lowered_after_the_limit_was_read_is_the_one_that_holds,
);

const PERIOD: i64 = 1_764_547_200_000;
const TENTH: i64 = 100_000_000;

fn release<'a>(query: &'a str, eps: i64) -> NewPrivacyRelease<'a> {
    NewPrivacyRelease {
        period_start_ms: PERIOD,
        released_at_ms: PERIOD + 1,
        actor: "key_1",
        kind: "query",
        query,
        epsilon_nanos: eps,
        delta_femtos: 0,
    }
}

async fn budgets_round_trip_per_tenant(f: &TestStore) {
    let a = f.store.create_tenant("a", Tier::Starter).await.unwrap();
    let b = f.store.create_tenant("b", Tier::Starter).await.unwrap();
    assert_eq!(f.store.privacy_budget(&a.id).await.unwrap(), None);
    let budget = PrivacyBudgetRecord {
        period: "week".into(),
        epsilon_nanos: 5 * 1_000_000_000,
        delta_femtos: 10,
        updated_at_ms: 7,
        updated_by: "key_a".into(),
    };
    f.store.put_privacy_budget(&a.id, &budget).await.unwrap();
    assert_eq!(
        f.store.privacy_budget(&a.id).await.unwrap(),
        Some(budget.clone())
    );
    assert_eq!(f.store.privacy_budget(&b.id).await.unwrap(), None);
    let changed = PrivacyBudgetRecord {
        period: "day".into(),
        ..budget
    };
    f.store.put_privacy_budget(&a.id, &changed).await.unwrap();
    assert_eq!(f.store.privacy_budget(&a.id).await.unwrap(), Some(changed));
    assert!(f
        .store
        .put_privacy_budget(
            "nope",
            &PrivacyBudgetRecord {
                period: "day".into(),
                epsilon_nanos: 1,
                delta_femtos: 0,
                updated_at_ms: 1,
                updated_by: "k".into()
            }
        )
        .await
        .is_err());
}

async fn concurrent_spends_never_pass_the_limit_and_the_ledger_sums_to_the_spend(f: &TestStore) {
    let a = f.store.create_tenant("a", Tier::Starter).await.unwrap();
    let b = f.store.create_tenant("b", Tier::Starter).await.unwrap();
    let limit = PrivacyLimit {
        epsilon_nanos: 10 * TENTH,
        delta_femtos: 0,
    };
    let store = Arc::new(f.store.clone());
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let (store, tenant) = (store.clone(), a.id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .spend_privacy(&tenant, &release("{\"metric\":\"count\"}", TENTH), limit)
                .await
                .unwrap()
        }));
    }
    let mut spent = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            PrivacySpendOutcome::Spent { spent: s, .. } => {
                assert!(s.epsilon_nanos <= limit.epsilon_nanos);
                spent += 1;
            }
            PrivacySpendOutcome::Refused { spent: s } => {
                assert!(s.epsilon_nanos + TENTH > limit.epsilon_nanos);
                refused += 1;
            }
        }
    }
    assert_eq!((spent, refused), (10, 15));
    let total = f.store.privacy_spent(&a.id, PERIOD).await.unwrap();
    assert_eq!(
        total,
        PrivacySpent {
            epsilon_nanos: 10 * TENTH,
            delta_femtos: 0
        }
    );
    let (sum, rows) = f.store.privacy_ledger_totals(&a.id, PERIOD).await.unwrap();
    assert_eq!((sum, rows), (total, 10));
    // δ is limited too, and another tenant's spend is its own.
    let with_delta = NewPrivacyRelease {
        delta_femtos: 5,
        ..release("{}", 1)
    };
    let tight = PrivacyLimit {
        epsilon_nanos: 100,
        delta_femtos: 4,
    };
    assert!(matches!(
        f.store
            .spend_privacy(&b.id, &with_delta, tight)
            .await
            .unwrap(),
        PrivacySpendOutcome::Refused {
            spent: PrivacySpent {
                epsilon_nanos: 0,
                delta_femtos: 0
            }
        }
    ));
    assert_eq!(
        f.store
            .privacy_ledger_totals(&b.id, PERIOD)
            .await
            .unwrap()
            .1,
        0
    );
    // Bad input is refused before anything is written.
    let bad = NewPrivacyRelease {
        kind: "other",
        ..release("{}", 1)
    };
    assert!(f.store.spend_privacy(&b.id, &bad, limit).await.is_err());
}

async fn ledger_pages_newest_first_and_stays_in_its_tenant(f: &TestStore) {
    let a = f.store.create_tenant("a", Tier::Starter).await.unwrap();
    let b = f.store.create_tenant("b", Tier::Starter).await.unwrap();
    let limit = PrivacyLimit {
        epsilon_nanos: 100 * TENTH,
        delta_femtos: 0,
    };
    for i in 0..5 {
        let q = format!("{{\"i\":{i}}}");
        f.store
            .spend_privacy(&a.id, &release(&q, TENTH), limit)
            .await
            .unwrap();
    }
    let first = f
        .store
        .privacy_ledger(&a.id, PERIOD, None, 3)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].query, "{\"i\":4}");
    assert!(first.windows(2).all(|w| w[0].id > w[1].id));
    let rest = f
        .store
        .privacy_ledger(&a.id, PERIOD, Some(first[2].id), 3)
        .await
        .unwrap();
    let queries: Vec<_> = rest.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(queries, ["{\"i\":1}", "{\"i\":0}"]);
    assert!(f
        .store
        .privacy_ledger(&b.id, PERIOD, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .store
        .privacy_ledger(&a.id, PERIOD + 1, None, 10)
        .await
        .unwrap()
        .is_empty());
}

fn item(id: &str, user: &str, at: i64) -> NewFeedbackItem {
    NewFeedbackItem {
        id: id.to_owned(),
        user_id: Some(user.to_owned()),
        kind: "review".to_owned(),
        channel: Some("web".to_owned()),
        rating: Some(4),
        locale: None,
        region: Some("eu".to_owned()),
        metadata: None,
        occurred_ms: at,
        tier: "standard".to_owned(),
        mode: "hybrid".to_owned(),
        content_hash: format!("hash-{id}"),
        text_sealed: Some("c2VhbGVk".to_owned()),
        text_key_id: Some("dk1".to_owned()),
        status: FeedbackStatus::Received,
        analysis: None,
        events: vec![FeedbackEvent::new(
            "received",
            "key_1",
            serde_json::json!({}),
        )],
    }
}

async fn analytics_rows_join_the_segment_and_stay_in_the_window_and_tenant(f: &TestStore) {
    let a = f.store.create_tenant("a", Tier::Starter).await.unwrap();
    let b = f.store.create_tenant("b", Tier::Starter).await.unwrap();
    let now = PERIOD + 10_000;
    f.store
        .insert_feedback(
            &a.id,
            &[
                item("f1", "u1", PERIOD),
                item("f2", "u2", PERIOD + 5),
                item("f3", "u1", PERIOD + 100),
            ],
            None,
            now,
        )
        .await
        .unwrap();
    f.store
        .insert_feedback(&b.id, &[item("g1", "u1", PERIOD + 1)], None, now)
        .await
        .unwrap();
    f.store
        .upsert_weber_profiles(
            &a.id,
            &[WeberProfileRecord {
                user_id: "u1".into(),
                weber_constant: 0.9,
                calculation_confidence: 0.5,
                sensitivity_segment: "Highly_Sensitive".into(),
                bias_ratio: None,
                review_count: 3,
                window_len: 3,
                newest_event_ms: None,
                updated_at_ms: now,
            }],
        )
        .await
        .unwrap();
    let rows = f
        .store
        .privacy_analytics_rows(&a.id, PERIOD, PERIOD + 100, 100)
        .await
        .unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["f1", "f2"]);
    assert_eq!(rows[0].segment.as_deref(), Some("Highly_Sensitive"));
    assert_eq!(rows[1].segment, None);
    assert_eq!(rows[0].rating, Some(4));
    assert_eq!(rows[0].user_id.as_deref(), Some("u1"));
    let limited = f
        .store
        .privacy_analytics_rows(&a.id, PERIOD, PERIOD + 1000, 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    let rows = f
        .store
        .privacy_analytics_rows(&b.id, 0, PERIOD * 2, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].segment, None, "a's profile must not leak into b");
}

/// The limit a caller read before answering may be stale: a budget stored (or lowered) since is
/// the one the spend checks against.
async fn a_stored_budget_lowered_after_the_limit_was_read_is_the_one_that_holds(f: &TestStore) {
    let a = f.store.create_tenant("a", Tier::Starter).await.unwrap();
    let stale = PrivacyLimit {
        epsilon_nanos: 10 * TENTH,
        delta_femtos: 0,
    };
    f.store
        .put_privacy_budget(
            &a.id,
            &PrivacyBudgetRecord {
                period: "month".into(),
                epsilon_nanos: 2 * TENTH,
                delta_femtos: 0,
                updated_at_ms: 1,
                updated_by: "key_admin".into(),
            },
        )
        .await
        .unwrap();
    let mut answered = 0;
    for _ in 0..5 {
        if let PrivacySpendOutcome::Spent { .. } = f
            .store
            .spend_privacy(&a.id, &release("{\"metric\":\"count\"}", TENTH), stale)
            .await
            .unwrap()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 2, "the stored budget of 0.2, not the stale 1.0");
    let spent = f.store.privacy_spent(&a.id, PERIOD).await.unwrap();
    assert_eq!(spent.epsilon_nanos, 2 * TENTH);
}
