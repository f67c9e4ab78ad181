//! LLM observability storage: exactly-once ingest, rollups that equal the raw sums, timelines,
//! budgets crossed once, tenant isolation and retention. Every case runs on a fresh SQLite file
//! and in a private PostgreSQL schema.

use std::collections::BTreeMap;

use llm::budget::Period;
use llm::latency::LatencyHistogram;
use llm::usage::{Dimension, UsageTotals};
use llm::{
    CallStatus, ConversationCompleted, ConversationStarted, Cost, IntegrationCall, LlmEvent,
    MessageProcessed, ModelCall, Operation, TokenCounts,
};
use proptest::prelude::*;
use store::testing::TestStore;
use store::{LlmInsertion, LlmUsageKey, Store, StoreError, Tier};

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
    a_repeated_batch_changes_nothing,
    timeline_is_in_time_then_id_order,
    budget_crossings_are_recorded_once_also_concurrently_and_after_reopen,
    budgets_and_prices_round_trip,
    tenants_never_see_each_others_rows,
    purge_keeps_rollups_and_drops_raw_rows,
    bad_values_fail_the_whole_batch,
    a_rollup_sum_past_bigint_is_refused_and_rolled_back,
    store_calls_are_timed_per_llm_table,
    a_batch_of_several_chunks_is_stored_once_with_duplicates_across_chunks,
);

const DAY_MS: i64 = 86_400_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;

fn call(id: &str, time_ms: i64, model: &str, conversation: Option<&str>) -> ModelCall {
    ModelCall {
        id: id.to_owned(),
        time_ms,
        provider: "openai".to_owned(),
        model: model.to_owned(),
        operation: Operation::Chat,
        conversation_id: conversation.map(str::to_owned),
        duration_us: 250_000,
        tokens: TokenCounts {
            input: 100,
            output: 20,
            cache_read: 3,
            cache_write: 2,
            reasoning: 1,
        },
        status: CallStatus::Success,
        error_type: None,
        client_cost: None,
        computed_cost: Some(Cost::from_picodollars(1_000_000)),
    }
}

async fn tenant(s: &Store, name: &str) -> String {
    s.create_tenant(name, Tier::Starter).await.unwrap().id
}

/// The straightforward sums: what usage must report for `calls` (already deduplicated).
fn reference(calls: &[ModelCall], dims: &[Dimension]) -> Vec<(LlmUsageKey, UsageTotals)> {
    let mut out: BTreeMap<LlmUsageKey, UsageTotals> = BTreeMap::new();
    for c in calls {
        let mut key = LlmUsageKey::default();
        for d in dims {
            match d {
                Dimension::Day => key.day = Some(c.time_ms.div_euclid(DAY_MS)),
                Dimension::Provider => key.provider = Some(c.provider.clone()),
                Dimension::Model => key.model = Some(c.model.clone()),
                Dimension::Operation => key.operation = Some(c.operation),
                Dimension::Conversation => key.conversation = c.conversation_id.clone(),
            }
        }
        let t = out.entry(key).or_default();
        t.calls += 1;
        t.errors += u64::from(c.status == CallStatus::Error);
        t.tokens = t.tokens.checked_add(&c.tokens).unwrap();
        match c.cost() {
            Some(cost) => t.cost = t.cost.checked_add(cost).unwrap(),
            None => t.unpriced_calls += 1,
        }
        t.latency.record(c.duration_us);
    }
    out.into_iter().collect()
}

const ALL_DIMS: [Dimension; 5] = [
    Dimension::Day,
    Dimension::Provider,
    Dimension::Model,
    Dimension::Operation,
    Dimension::Conversation,
];

fn subsets() -> Vec<Vec<Dimension>> {
    (0..32u32)
        .map(|mask| {
            ALL_DIMS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect()
        })
        .collect()
}

async fn all_usage(s: &Store, t: &str, from: i64, to: i64) -> Vec<Vec<(LlmUsageKey, UsageTotals)>> {
    let mut out = Vec::new();
    for dims in subsets() {
        out.push(s.llm_usage(t, from, to, &dims).await.unwrap());
    }
    out
}

async fn a_repeated_batch_changes_nothing(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let calls = vec![
        call("c1", T0, "gpt-4o", Some("conv-1")),
        call("c2", T0 + 10, "gpt-4o", None),
        call("c1", T0 + 20, "gpt-4o-mini", None), // repeats c1 within the batch
        call("c3", T0 + DAY_MS, "gpt-4o-mini", Some("conv-1")),
    ];
    let events = vec![LlmEvent::ConversationStarted(ConversationStarted {
        id: "e1".to_owned(),
        time_ms: T0,
        conversation_id: "conv-1".to_owned(),
        channel: "web".to_owned(),
    })];
    let first = s.insert_llm_batch(&t, &calls, &events).await.unwrap();
    use LlmInsertion::{Duplicate, New};
    assert_eq!(first.calls, vec![New, New, Duplicate, New]);
    assert_eq!(first.events, vec![New]);
    assert_eq!((first.new_calls(), first.new_events()), (3, 1));

    let day = T0 / DAY_MS;
    let before = all_usage(s, &t, day, day + 2).await;
    let stored = [calls[0].clone(), calls[1].clone(), calls[3].clone()];
    for (dims, got) in subsets().iter().zip(&before) {
        assert_eq!(got, &reference(&stored, dims), "group by {dims:?}");
    }

    let again = s.insert_llm_batch(&t, &calls, &events).await.unwrap();
    assert_eq!(again.calls, vec![Duplicate; 4]);
    assert_eq!(again.events, vec![Duplicate]);
    assert_eq!(all_usage(s, &t, day, day + 2).await, before);

    // Partly new: only the new call counts.
    let more = [calls[0].clone(), call("c4", T0 + 30, "gpt-4o", None)];
    let outcome = s.insert_llm_batch(&t, &more, &[]).await.unwrap();
    assert_eq!(outcome.calls, vec![Duplicate, New]);
    let total = s.llm_usage(&t, day, day + 2, &[]).await.unwrap();
    assert_eq!(total.len(), 1);
    assert_eq!(total[0].1.calls, 4);
    assert_eq!(
        total[0].1.cost,
        Cost::from_picodollars(4_000_000),
        "effective costs summed"
    );

    // The widest range still answers (clamped to years 0 to 9999), not grouped by day too.
    let widest = s
        .llm_usage(&t, i64::MIN, i64::MAX, &[Dimension::Model])
        .await
        .unwrap();
    assert_eq!(widest.iter().map(|(_, u)| u.calls).sum::<u64>(), 4);
    // An empty range, an inverted range, and nothing at all.
    assert!(s
        .llm_usage(&t, day + 5, day + 9, &[])
        .await
        .unwrap()
        .is_empty());
    assert!(s.llm_usage(&t, day + 1, day, &[]).await.unwrap().is_empty());
    let empty = s.insert_llm_batch(&t, &[], &[]).await.unwrap();
    assert!(empty.calls.is_empty() && empty.events.is_empty());
}

/// A batch larger than one statement's chunk (500 rows), with an id repeated on both sides of
/// a chunk boundary and across the whole batch: each id is stored once, and every rollup and
/// grouping equals the sums of what was stored.
async fn a_batch_of_several_chunks_is_stored_once_with_duplicates_across_chunks(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "bulk").await;
    let mut calls: Vec<ModelCall> = (0..1_200)
        .map(|n| {
            let model = ["gpt-4o", "gpt-4o-mini", "o3"][n % 3];
            let mut c = call(&format!("c{n:05}"), T0 + (n as i64) * 60_000, model, None);
            c.conversation_id = Some(format!("conv-{}", n % 7));
            c.duration_us = 1_000 + (n as u64) * 977;
            c.tokens.input = 100 + n as u64;
            c
        })
        .collect();
    // Ids are inserted in id order, so c00499 and c00500 sit on either side of the first
    // chunk boundary; repeat them at the far end, and repeat the first id in the middle.
    let mut repeat = |id: &str, at: usize| {
        let mut again = calls.iter().find(|c| c.id == id).unwrap().clone();
        again.tokens.input = 999_999; // a repeat's own values must not count
        calls.insert(at, again);
    };
    repeat("c00499", 1_200);
    repeat("c00500", 1_201);
    repeat("c00000", 600);
    let first = s.insert_llm_batch(&t, &calls, &[]).await.unwrap();
    assert_eq!(first.new_calls(), 1_200);
    let duplicates: Vec<&str> = calls
        .iter()
        .zip(&first.calls)
        .filter(|(_, o)| **o == LlmInsertion::Duplicate)
        .map(|(c, _)| c.id.as_str())
        .collect();
    assert_eq!(duplicates, ["c00000", "c00499", "c00500"]);

    let stored: Vec<ModelCall> = calls
        .iter()
        .zip(&first.calls)
        .filter(|(_, o)| **o == LlmInsertion::New)
        .map(|(c, _)| c.clone())
        .collect();
    let day = T0 / DAY_MS;
    let usage = all_usage(s, &t, day, day + 2).await;
    for (dims, got) in subsets().iter().zip(&usage) {
        assert_eq!(got, &reference(&stored, dims), "group by {dims:?}");
    }
    let again = s.insert_llm_batch(&t, &calls, &[]).await.unwrap();
    assert_eq!(again.new_calls(), 0);
    assert_eq!(all_usage(s, &t, day, day + 2).await, usage);
}

async fn timeline_is_in_time_then_id_order(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let mut failed = call("m-b", T0 + 5, "gpt-4o", Some("conv-1"));
    failed.status = CallStatus::Error;
    failed.error_type = Some("timeout".to_owned());
    failed.client_cost = Some(Cost::from_picodollars(7));
    failed.computed_cost = None;
    let calls = vec![
        call("m-c", T0 + 5, "gpt-4o", Some("conv-1")),
        failed.clone(),
        call("m-a", T0 + 9, "gpt-4o", Some("conv-1")),
        call("m-other", T0 + 6, "gpt-4o", Some("conv-2")),
    ];
    let events = vec![
        LlmEvent::ConversationCompleted(ConversationCompleted {
            id: "z-end".to_owned(),
            time_ms: T0 + 20,
            conversation_id: "conv-1".to_owned(),
            channel: "web".to_owned(),
            resolution_status: "resolved".to_owned(),
        }),
        LlmEvent::MessageProcessed(MessageProcessed {
            id: "m-0".to_owned(),
            time_ms: T0 + 5,
            conversation_id: Some("conv-1".to_owned()),
            channel: "web".to_owned(),
            direction: llm::event::Direction::Inbound,
            message_type: "text".to_owned(),
        }),
        LlmEvent::IntegrationCall(IntegrationCall {
            id: "i-1".to_owned(),
            time_ms: T0 + 7,
            conversation_id: Some("conv-1".to_owned()),
            integration_id: "crm".to_owned(),
            integration_type: "salesforce".to_owned(),
            status: CallStatus::Error,
            duration_us: 1234,
        }),
        LlmEvent::ConversationStarted(ConversationStarted {
            id: "start".to_owned(),
            time_ms: T0,
            conversation_id: "conv-1".to_owned(),
            channel: "web".to_owned(),
        }),
    ];
    s.insert_llm_batch(&t, &calls, &events).await.unwrap();
    let timeline = s
        .llm_conversation_timeline(&t, "conv-1", 100)
        .await
        .unwrap();
    let ids: Vec<&str> = timeline.iter().map(LlmEvent::id).collect();
    assert_eq!(ids, ["start", "m-0", "m-b", "m-c", "i-1", "m-a", "z-end"]);
    assert_eq!(timeline[2], LlmEvent::ModelCall(failed), "round trip");
    assert_eq!(timeline[4], events[2], "round trip");
    assert_eq!(timeline[6], events[0], "round trip");
    assert_eq!(timeline[1], events[1], "round trip");

    let first3 = s.llm_conversation_timeline(&t, "conv-1", 3).await.unwrap();
    assert_eq!(
        first3.iter().map(LlmEvent::id).collect::<Vec<_>>(),
        ["start", "m-0", "m-b"]
    );
    assert!(s
        .llm_conversation_timeline(&t, "nope", 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .llm_conversation_timeline(&t, "a\0b", 10)
        .await
        .unwrap()
        .is_empty());
}

async fn budget_crossings_are_recorded_once_also_concurrently_and_after_reopen(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let period = Period::containing(T0);
    let spent = Cost::from_picodollars(600);
    assert_eq!(
        s.record_llm_budget_crossings(&t, period, &[50], spent, T0)
            .await
            .unwrap(),
        vec![50]
    );
    assert_eq!(
        s.record_llm_budget_crossings(&t, period, &[80, 50, 80], spent, T0 + 1)
            .await
            .unwrap(),
        vec![80]
    );
    assert!(s
        .record_llm_budget_crossings(&t, period, &[50, 80], spent, T0 + 2)
        .await
        .unwrap()
        .is_empty());

    // After a restart (another handle on the same database), still recorded.
    let reopened = f.reopen().await;
    assert!(reopened
        .record_llm_budget_crossings(&t, period, &[50, 80], spent, T0 + 3)
        .await
        .unwrap()
        .is_empty());
    let listed = reopened
        .list_llm_budget_crossings(&t, period)
        .await
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.threshold, c.crossed_at_ms, c.spent))
            .collect::<Vec<_>>(),
        vec![(50, T0, spent), (80, T0 + 1, spent)]
    );
    reopened.close().await;

    // Two callers at once, as two replicas: each threshold is reported by exactly one.
    let next = Period::containing(period.end_ms());
    for round in 0..5 {
        let (a, b) = (s.clone(), f.reopen().await);
        let (ta, tb) = (t.clone(), t.clone());
        let thresholds = [50, 80, 100];
        let now = T0 + round;
        let p = Period {
            year: next.year + round as i32,
            month: next.month,
        };
        let ha = tokio::spawn(async move {
            a.record_llm_budget_crossings(&ta, p, &thresholds, spent, now)
                .await
                .unwrap()
        });
        let hb = tokio::spawn(async move {
            let got = b
                .record_llm_budget_crossings(&tb, p, &thresholds, spent, now)
                .await
                .unwrap();
            b.close().await;
            got
        });
        let (ra, rb) = (ha.await.unwrap(), hb.await.unwrap());
        let mut all: Vec<u8> = ra.iter().chain(&rb).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![50, 80, 100], "{ra:?} + {rb:?}");
        assert_eq!(s.list_llm_budget_crossings(&t, p).await.unwrap().len(), 3);
    }
    assert!(s
        .record_llm_budget_crossings(&t, period, &[], spent, T0)
        .await
        .unwrap()
        .is_empty());
}

async fn budgets_and_prices_round_trip(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    assert_eq!(s.get_llm_budget(&t).await.unwrap(), None);
    let put = s
        .put_llm_budget(
            &t,
            Cost::from_picodollars(5 * Cost::PER_USD),
            &[100, 50, 80, 50],
        )
        .await
        .unwrap();
    assert_eq!(put.thresholds, vec![50, 80, 100]);
    assert_eq!(s.get_llm_budget(&t).await.unwrap(), Some(put));
    let replaced = s
        .put_llm_budget(&t, Cost::from_picodollars(7), &[])
        .await
        .unwrap();
    assert_eq!(s.get_llm_budget(&t).await.unwrap(), Some(replaced));
    let err = s
        .put_llm_budget(&t, Cost::from_picodollars(7), &[0, 50])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "thresholds",
                ..
            }
        ),
        "{err:?}"
    );
    let err = s
        .put_llm_budget(&t, Cost::from_picodollars(u64::MAX), &[50])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "monthly",
                ..
            }
        ),
        "{err:?}"
    );
    let err = s
        .put_llm_budget("tn_missing", Cost::ZERO, &[50])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    assert_eq!(s.get_llm_prices(&t).await.unwrap(), None);
    let text = "version = \"tenant-1\"\n[[price]]\nprovider = \"openai\"\n";
    let put = s.put_llm_prices(&t, text, false).await.unwrap();
    assert_eq!(s.get_llm_prices(&t).await.unwrap(), Some(put.clone()));
    assert_eq!((put.text.as_str(), put.use_defaults), (text, false));
    let put = s.put_llm_prices(&t, "", true).await.unwrap();
    assert_eq!(s.get_llm_prices(&t).await.unwrap(), Some(put));
    let err = s.put_llm_prices(&t, "a\0b", true).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "prices",
                ..
            }
        ),
        "{err:?}"
    );

    // Month spend comes from the rollups: priced calls only, this month only.
    let period = Period::containing(T0);
    let mut unpriced = call("u", T0, "gpt-4o", None);
    unpriced.computed_cost = None;
    let mut client = call("k", T0 + 1, "gpt-4o", None);
    client.client_cost = Some(Cost::from_picodollars(5));
    let calls = [
        call("a", T0, "gpt-4o", None),
        unpriced,
        client,
        call("prev", period.start_ms() - 1, "gpt-4o", None),
        call("next", period.end_ms(), "gpt-4o", None),
        call("last", period.end_ms() - 1, "gpt-4o", None),
    ];
    s.insert_llm_batch(&t, &calls, &[]).await.unwrap();
    assert_eq!(
        s.llm_month_spend(&t, period).await.unwrap(),
        Cost::from_picodollars(2_000_005)
    );
}

async fn tenants_never_see_each_others_rows(f: &TestStore) {
    let s = &f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let calls = [call("same-id", T0, "gpt-4o", Some("conv-1"))];
    let events = [LlmEvent::ConversationStarted(ConversationStarted {
        id: "same-event".to_owned(),
        time_ms: T0,
        conversation_id: "conv-1".to_owned(),
        channel: "web".to_owned(),
    })];
    let oa = s.insert_llm_batch(&a, &calls, &events).await.unwrap();
    assert_eq!((oa.new_calls(), oa.new_events()), (1, 1));
    s.put_llm_budget(&a, Cost::from_picodollars(10), &[50])
        .await
        .unwrap();
    s.put_llm_prices(&a, "x", false).await.unwrap();
    let period = Period::containing(T0);
    s.record_llm_budget_crossings(&a, period, &[50], Cost::ZERO, T0)
        .await
        .unwrap();

    let day = T0 / DAY_MS;
    for usage in all_usage(s, &b, day - 1, day + 1).await {
        assert!(usage.is_empty(), "{usage:?}");
    }
    assert!(s
        .llm_conversation_timeline(&b, "conv-1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.get_llm_budget(&b).await.unwrap(), None);
    assert_eq!(s.get_llm_prices(&b).await.unwrap(), None);
    assert_eq!(s.llm_month_spend(&b, period).await.unwrap(), Cost::ZERO);
    assert!(s
        .list_llm_budget_crossings(&b, period)
        .await
        .unwrap()
        .is_empty());

    // The same ids are new for another tenant, and its crossing is its own.
    let ob = s.insert_llm_batch(&b, &calls, &events).await.unwrap();
    assert_eq!((ob.new_calls(), ob.new_events()), (1, 1));
    assert_eq!(
        s.record_llm_budget_crossings(&b, period, &[50], Cost::ZERO, T0)
            .await
            .unwrap(),
        vec![50]
    );
    let ua = s.llm_usage(&a, day, day + 1, &[]).await.unwrap();
    assert_eq!(ua[0].1.calls, 1, "b's insert did not reach a's rollups");
}

async fn purge_keeps_rollups_and_drops_raw_rows(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let u = tenant(s, "globex").await;
    let old = T0 - 40 * DAY_MS;
    let calls = [
        call("old-1", old, "gpt-4o", Some("conv-old")),
        call("old-2", old + 1, "gpt-4o", None),
        call("new-1", T0, "gpt-4o", Some("conv-new")),
    ];
    let events = [
        LlmEvent::ConversationStarted(ConversationStarted {
            id: "old-start".to_owned(),
            time_ms: old,
            conversation_id: "conv-old".to_owned(),
            channel: "web".to_owned(),
        }),
        LlmEvent::ConversationStarted(ConversationStarted {
            id: "new-start".to_owned(),
            time_ms: T0,
            conversation_id: "conv-new".to_owned(),
            channel: "web".to_owned(),
        }),
    ];
    s.insert_llm_batch(&t, &calls, &events).await.unwrap();
    s.insert_llm_batch(&u, &calls[..1], &[]).await.unwrap();
    let (from, to) = (old / DAY_MS, T0 / DAY_MS + 1);
    let by_model = s
        .llm_usage(&t, from, to, &[Dimension::Day, Dimension::Model])
        .await
        .unwrap();

    let purged = s.purge_llm_events_before(T0 - DAY_MS).await.unwrap();
    assert_eq!(
        (purged.calls, purged.events),
        (3, 1),
        "both tenants' old rows"
    );
    assert_eq!(
        s.llm_usage(&t, from, to, &[Dimension::Day, Dimension::Model])
            .await
            .unwrap(),
        by_model,
        "rollups survive retention"
    );
    let by_conversation = s
        .llm_usage(&t, from, to, &[Dimension::Conversation])
        .await
        .unwrap();
    assert_eq!(by_conversation.len(), 1);
    assert_eq!(
        by_conversation[0].0.conversation.as_deref(),
        Some("conv-new")
    );
    assert!(s
        .llm_conversation_timeline(&t, "conv-old", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.llm_conversation_timeline(&t, "conv-new", 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // A purged id may come again; it is stored as raw but the rollups count it a second time,
    // which is why retention must be longer than any client's retry horizon.
    let again = s.purge_llm_events_before(T0 - DAY_MS).await.unwrap();
    assert_eq!((again.calls, again.events), (0, 0));
}

async fn bad_values_fail_the_whole_batch(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let good = call("good", T0, "gpt-4o", None);
    let mut huge = call("huge", T0, "gpt-4o", None);
    huge.tokens.cache_write = u64::MAX;
    let err = s
        .insert_llm_batch(&t, &[good.clone(), huge], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "cache_write_tokens",
                ..
            }
        ),
        "{err:?}"
    );
    for time_ms in [i64::MIN, i64::MAX] {
        let far = call("far", time_ms, "gpt-4o", None);
        let err = s
            .insert_llm_batch(&t, &[good.clone(), far], &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "time_ms",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let mut nul = call("nul", T0, "gpt\0", None);
    nul.model = "gpt\0".to_owned();
    let err = s.insert_llm_batch(&t, &[nul], &[]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "model", .. }),
        "{err:?}"
    );
    let err = s
        .insert_llm_batch(&t, &[], &[LlmEvent::ModelCall(good.clone())])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "events",
                ..
            }
        ),
        "{err:?}"
    );
    let err = s
        .insert_llm_batch("tn_missing", std::slice::from_ref(&good), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let day = T0 / DAY_MS;
    assert!(s.llm_usage(&t, day, day + 1, &[]).await.unwrap().is_empty());
    let ok = s.insert_llm_batch(&t, &[good], &[]).await.unwrap();
    assert_eq!(
        ok.calls,
        vec![LlmInsertion::New],
        "nothing of the refused batches stayed"
    );
}

async fn a_rollup_sum_past_bigint_is_refused_and_rolled_back(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let mut big = call("big", T0, "gpt-4o", None);
    big.client_cost = Some(Cost::from_picodollars(i64::MAX as u64 - 10));
    s.insert_llm_batch(&t, &[big], &[]).await.unwrap();
    let mut more = call("more", T0 + 1, "gpt-4o", None);
    more.client_cost = Some(Cost::from_picodollars(11));
    let err = s
        .insert_llm_batch(&t, &[more.clone()], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "usage", .. }),
        "{err:?}"
    );
    let day = T0 / DAY_MS;
    let usage = s.llm_usage(&t, day, day + 1, &[]).await.unwrap();
    assert_eq!(usage[0].1.calls, 1, "the refused call is not counted");
    let by_conversation = s
        .llm_usage(&t, day, day + 1, &[Dimension::Conversation])
        .await
        .unwrap();
    assert_eq!(
        by_conversation
            .iter()
            .map(|(_, u)| u.calls)
            .collect::<Vec<_>>(),
        [1],
        "{by_conversation:?}"
    );
    // Within one batch the sum is checked before writing.
    let mut a = call("a", T0 + DAY_MS, "gpt-4o", None);
    a.client_cost = Some(Cost::from_picodollars(i64::MAX as u64));
    let mut b = call("b", T0 + DAY_MS, "gpt-4o", None);
    b.client_cost = Some(Cost::from_picodollars(1));
    let err = s.insert_llm_batch(&t, &[a, b], &[]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "cost", .. }),
        "{err:?}"
    );
}

async fn store_calls_are_timed_per_llm_table(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.insert_llm_batch(&t, &[call("a", T0, "m", None)], &[])
        .await
        .unwrap();
    let day = T0 / DAY_MS;
    s.llm_usage(&t, day, day + 1, &[]).await.unwrap();
    s.get_llm_budget(&t).await.unwrap();
    let stats = s.stats();
    for (operation, table) in [
        ("insert", "llm_model_calls"),
        ("select", "llm_usage_daily"),
        ("select", "llm_budgets"),
    ] {
        assert!(
            stats
                .queries
                .iter()
                .any(|q| q.operation == operation && q.table == table && q.durations.count > 0),
            "{operation} {table}"
        );
    }
}

// ---- the property: usage from rollups == usage from raw calls == the plain sums ------------

fn arb_call() -> impl Strategy<Value = ModelCall> {
    (
        (
            0u8..24,
            0i64..70,
            0i64..DAY_MS,
            0usize..2,
            0usize..3,
            0usize..3,
        ),
        (proptest::option::of(0usize..3), 0u64..5_000_000_000),
        proptest::array::uniform5(0u64..1_000_000),
        (any::<bool>(), proptest::option::of(0u64..1_000_000_000)),
        proptest::option::of(0u64..1_000_000_000),
    )
        .prop_map(
            |((id, day, ms, p, m, op), (conv, dur), tok, (error, client), computed)| ModelCall {
                id: format!("call-{id}"),
                time_ms: T0 + day * DAY_MS + ms,
                provider: ["openai", "anthropic"][p].to_owned(),
                model: ["m-small", "m-large", "m-xl"][m].to_owned(),
                operation: [
                    Operation::Chat,
                    Operation::Embeddings,
                    Operation::ExecuteTool,
                ][op],
                conversation_id: conv.map(|c| format!("conv-{c}")),
                duration_us: dur,
                tokens: TokenCounts {
                    input: tok[0],
                    output: tok[1],
                    cache_read: tok[2],
                    cache_write: tok[3],
                    reasoning: tok[4],
                },
                status: if error {
                    CallStatus::Error
                } else {
                    CallStatus::Success
                },
                error_type: error.then(|| "rate_limited".to_owned()),
                client_cost: client.map(Cost::from_picodollars),
                computed_cost: computed.map(Cost::from_picodollars),
            },
        )
}

/// Usage grouped by `dims` computed from the same rows grouped additionally by conversation
/// (which is read from the raw calls), merged in the test.
fn merge_conversations(rows: &[(LlmUsageKey, UsageTotals)]) -> Vec<(LlmUsageKey, UsageTotals)> {
    let mut out: BTreeMap<LlmUsageKey, UsageTotals> = BTreeMap::new();
    for (key, t) in rows {
        let mut key = key.clone();
        key.conversation = None;
        let into = out.entry(key).or_insert_with(|| UsageTotals {
            latency: LatencyHistogram::new(),
            ..UsageTotals::default()
        });
        into.calls += t.calls;
        into.errors += t.errors;
        into.tokens = into.tokens.checked_add(&t.tokens).unwrap();
        into.cost = into.cost.checked_add(t.cost).unwrap();
        into.unpriced_calls += t.unpriced_calls;
        into.latency.merge(&t.latency);
    }
    out.into_iter().collect()
}

fn usage_matches_sums(backend: store::Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = runtime.block_on(TestStore::new(backend));
    let s = fixture.store.clone();
    let case = std::sync::atomic::AtomicU32::new(0);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(batches in proptest::collection::vec(proptest::collection::vec(arb_call(), 0..30), 1..4))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = runtime.block_on(tenant(&s, &format!("tenant-{n}")));
        let mut seen = std::collections::HashSet::new();
        let mut stored = Vec::new();
        for batch in &batches {
            let outcome = runtime.block_on(s.insert_llm_batch(&t, batch, &[])).unwrap();
            for (c, o) in batch.iter().zip(&outcome.calls) {
                let fresh = seen.insert(c.id.clone());
                prop_assert_eq!(*o == LlmInsertion::New, fresh, "{}", c.id);
                if fresh {
                    stored.push(c.clone());
                }
            }
        }
        let day = T0 / DAY_MS;
        // Ranges inside one month, across month ends, and holding whole months (December
        // 2026 and January 2027) with edge days on either side.
        let ranges = [
            (day, day + 4),
            (day + 1, day + 3),
            (day - 10, day + 100),
            (day, day + 62),
            (day + 5, day + 66),
        ];
        for (from, to) in ranges {
            let in_range: Vec<ModelCall> = stored
                .iter()
                .filter(|c| (from..to).contains(&c.time_ms.div_euclid(DAY_MS)))
                .cloned()
                .collect();
            for dims in subsets() {
                let got = runtime.block_on(s.llm_usage(&t, from, to, &dims)).unwrap();
                prop_assert_eq!(&got, &reference(&in_range, &dims), "group by {:?}", dims);
                if !dims.contains(&Dimension::Conversation) {
                    let mut with_conv = dims.clone();
                    with_conv.push(Dimension::Conversation);
                    let raw = runtime.block_on(s.llm_usage(&t, from, to, &with_conv)).unwrap();
                    prop_assert_eq!(&merge_conversations(&raw), &got, "raw vs rollups by {:?}", dims);
                }
            }
        }
    });
    runtime.block_on(fixture.cleanup());
}

#[test]
fn sqlite_usage_from_rollups_and_raw_equals_the_sums() {
    usage_matches_sums(store::Backend::Sqlite);
}

#[test]
fn postgres_usage_from_rollups_and_raw_equals_the_sums() {
    usage_matches_sums(store::Backend::Postgres);
}
