//! Purchases, fitted models and stored predictions, on both backends.

use store::testing::TestStore;
use store::{
    BusinessMetricsRecord, MetricsOrder, NewPredictionModel, NewTransaction, StoreError, Tier,
    TransactionInsertion,
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
    purchases_are_stored_once_per_order_and_conflicts_are_reported,
    purchases_page_in_customer_order_and_stay_in_their_tenant,
    predictions_replace_the_previous_version_as_a_whole,
    bad_purchases_and_predictions_are_refused,
    ranked_pages_and_the_clv_histogram_stay_in_their_tenant,
);

fn purchase(order: &str, customer: &str, at_ms: i64, amount: f64) -> NewTransaction {
    NewTransaction {
        order_id: order.to_owned(),
        customer_id: customer.to_owned(),
        occurred_at_ms: at_ms,
        amount,
        currency: Some("EUR".to_owned()),
    }
}

fn prediction(user: &str, clv: f64, risk: f64) -> BusinessMetricsRecord {
    BusinessMetricsRecord {
        user_id: user.to_owned(),
        model_version: 0,
        predicted_clv: clv,
        clv_low: clv * 0.8,
        clv_high: clv * 1.2,
        clv_confidence: 0.8,
        churn_risk_score: risk,
        churn_risk_timing: risk,
        risk_level: if risk < 0.3 { "low" } else { "high" }.to_owned(),
        p_alive: 1.0 - risk,
        expected_purchases: 0.5,
        expected_average_value: 20.0,
        churn_prediction_date: 20_000,
        engagement_score: 0.5,
        recommendation_strategy: Some("value_messaging".to_owned()),
        risk_factors_json: "[]".to_owned(),
        last_prediction_update_ms: 1,
    }
}

fn model(customers: i64) -> NewPredictionModel {
    NewPredictionModel {
        fitted_at_ms: 1_700_000_000_000,
        observation_end_day: 19_700,
        model_json: "{\"params\":1}".to_owned(),
        evaluation_json: None,
        customers,
    }
}

async fn purchases_are_stored_once_per_order_and_conflicts_are_reported(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let first = s
        .insert_transactions(
            &t.id,
            &[
                purchase("o1", "c1", 1_000, 10.0),
                purchase("o2", "c1", 2_000, 0.0),
                // Same order again in the batch: identical is a duplicate, different a conflict.
                purchase("o1", "c1", 1_000, 10.0),
                purchase("o2", "c2", 2_000, 0.0),
            ],
            5,
        )
        .await
        .unwrap();
    use TransactionInsertion::*;
    assert_eq!(first, vec![Stored, Stored, Duplicate, Conflict]);
    let mut changed_currency = purchase("o2", "c1", 2_000, 0.0);
    changed_currency.currency = None;
    let again = s
        .insert_transactions(
            &t.id,
            &[
                purchase("o1", "c1", 1_000, 10.0),
                purchase("o1", "c1", 1_000, 10.5),
                changed_currency,
                purchase("o3", "c2", 3_000, 7.25),
            ],
            6,
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Duplicate, Conflict, Conflict, Stored]);
    assert_eq!(s.weber_transaction_count(&t.id).await.unwrap(), 3);
    assert_eq!(
        s.weber_customer_transaction_count(&t.id, "c1")
            .await
            .unwrap(),
        2
    );
    // The conflicting values were not stored.
    let all = s.weber_transactions_page(&t.id, None, 100).await.unwrap();
    let o1 = all.iter().find(|p| p.order_id == "o1").unwrap();
    assert_eq!((o1.amount, o1.currency.as_deref()), (10.0, Some("EUR")));

    let missing = s
        .insert_transactions("tn_nobody", &[purchase("o1", "c1", 1, 1.0)], 1)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn purchases_page_in_customer_order_and_stay_in_their_tenant(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("a", Tier::Starter).await.unwrap();
    let b = s.create_tenant("b", Tier::Starter).await.unwrap();
    let mut sent = Vec::new();
    for c in 0..7i32 {
        for k in 0..3i32 {
            // Equal times inside a customer are ordered by order id.
            sent.push(purchase(
                &format!("o{c}-{k}"),
                &format!("c{c}"),
                1_000 * i64::from(k % 2),
                f64::from(k),
            ));
        }
    }
    s.insert_transactions(&a.id, &sent, 1).await.unwrap();
    s.insert_transactions(&b.id, &[purchase("o0-0", "other", 9, 1.0)], 1)
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .weber_transactions_page(&a.id, cursor.as_ref(), 4)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor());
        read.extend(page);
    }
    let keys: Vec<(String, i64, String)> = read
        .iter()
        .map(|p| (p.customer_id.clone(), p.occurred_at_ms, p.order_id.clone()))
        .collect();
    let mut expected: Vec<(String, i64, String)> = sent
        .iter()
        .map(|p| (p.customer_id.clone(), p.occurred_at_ms, p.order_id.clone()))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(read.iter().all(|p| p.customer_id != "other"));
    assert_eq!(s.weber_transaction_count(&b.id).await.unwrap(), 1);
    assert_eq!(
        s.weber_customer_transaction_count(&b.id, "c0")
            .await
            .unwrap(),
        0
    );
}

async fn predictions_replace_the_previous_version_as_a_whole(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let other = s.create_tenant("other", Tier::Starter).await.unwrap();
    assert!(s.latest_prediction_model(&t.id).await.unwrap().is_none());
    let v1 = s
        .store_predictions(
            &t.id,
            &model(2),
            &[prediction("u1", 100.0, 0.1), prediction("u2", 50.0, 0.7)],
        )
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let mut evaluated = model(1);
    evaluated.evaluation_json = Some("{\"auc\":0.7}".to_owned());
    let v2 = s
        .store_predictions(&t.id, &evaluated, &[prediction("u2", 60.0, 0.2)])
        .await
        .unwrap();
    assert_eq!(v2, 2);
    // u1 was not scored by version 2: its version-1 row is gone with the rest of version 1.
    assert!(s
        .weber_business_metrics(&t.id, "u1")
        .await
        .unwrap()
        .is_none());
    let u2 = s
        .weber_business_metrics(&t.id, "u2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u2.model_version, u2.predicted_clv), (2, 60.0));
    let latest = s.latest_prediction_model(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (latest.version, latest.evaluation_json.as_deref()),
        (2, Some("{\"auc\":0.7}"))
    );
    assert_eq!(
        s.prediction_model(&t.id, 1)
            .await
            .unwrap()
            .unwrap()
            .customers,
        2
    );

    // Another tenant sees none of it and counts its own versions.
    assert!(s
        .weber_business_metrics(&other.id, "u2")
        .await
        .unwrap()
        .is_none());
    assert!(s
        .latest_prediction_model(&other.id)
        .await
        .unwrap()
        .is_none());
    let ov = s
        .store_predictions(&other.id, &model(1), &[prediction("u9", 1.0, 0.9)])
        .await
        .unwrap();
    assert_eq!(ov, 1);

    let v3 = s
        .store_predictions(
            &t.id,
            &model(3),
            &[
                prediction("a", 5.0, 0.9),
                prediction("b", 500.0, 0.1),
                prediction("c", 50.0, 0.5),
            ],
        )
        .await
        .unwrap();
    assert_eq!(v3, 3);
    let by_clv: Vec<String> = s
        .weber_business_metrics_page(&t.id, MetricsOrder::ClvDesc, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(by_clv, ["b", "c", "a"]);
    let by_risk: Vec<String> = s
        .weber_business_metrics_page(&t.id, MetricsOrder::ChurnRiskDesc, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(by_risk, ["a", "c"]);
    let summary = s.weber_business_metrics_summary(&t.id).await.unwrap();
    assert_eq!(summary.customers, 3);
    assert_eq!(summary.total_clv, 555.0);
    assert_eq!(
        summary.by_risk_level,
        vec![("high".to_owned(), 2), ("low".to_owned(), 1)]
    );

    // The user erasure removes the customer's purchases and row, in that tenant only.
    s.insert_transactions(&t.id, &[purchase("o1", "a", 1, 1.0)], 1)
        .await
        .unwrap();
    s.insert_transactions(&other.id, &[purchase("o1", "a", 1, 1.0)], 1)
        .await
        .unwrap();
    let erased = s.erase_weber_user(&t.id, "a", "key", 2).await.unwrap();
    assert_eq!((erased.transactions, erased.business_metrics), (1, 1));
    assert!(s
        .weber_business_metrics(&t.id, "a")
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.weber_transaction_count(&other.id).await.unwrap(), 1);
}

async fn bad_purchases_and_predictions_are_refused(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    for (bad, field) in [
        (purchase("", "c", 1, 1.0), "order_id"),
        (purchase("o", "c\0", 1, 1.0), "customer_id"),
        (purchase("o", "c", 1, -1.0), "amount"),
        (purchase("o", "c", 1, f64::NAN), "amount"),
        (purchase("o", "c", 1, f64::INFINITY), "amount"),
        (purchase("o", "c", -5, 1.0), "occurred_at"),
    ] {
        let got = s.insert_transactions(&t.id, &[bad], 1).await;
        assert!(
            matches!(&got, Err(StoreError::Invalid { field: f, .. }) if *f == field),
            "{field}: {got:?}"
        );
    }
    let mut nan = prediction("u", 1.0, 0.5);
    nan.p_alive = f64::NAN;
    let got = s.store_predictions(&t.id, &model(1), &[nan]).await;
    assert!(matches!(got, Err(StoreError::Invalid { .. })), "{got:?}");
    let got = s
        .store_predictions("tn_nobody", &model(1), &[prediction("u", 1.0, 0.5)])
        .await;
    assert!(matches!(got, Err(StoreError::NotFound { .. })), "{got:?}");
    assert!(s.latest_prediction_model(&t.id).await.unwrap().is_none());
}

async fn ranked_pages_and_the_clv_histogram_stay_in_their_tenant(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let other = s.create_tenant("other", Tier::Starter).await.unwrap();
    let rows: Vec<BusinessMetricsRecord> = (0..7)
        .map(|i| {
            prediction(
                &format!("u{i}"),
                f64::from(i) * 10.0,
                f64::from(6 - i) / 10.0,
            )
        })
        .collect();
    s.store_predictions(&t.id, &model(7), &rows).await.unwrap();
    s.store_predictions(&other.id, &model(1), &[prediction("x", 25.0, 0.99)])
        .await
        .unwrap();
    let tenant = t.id.as_str();
    let page = |order, offset, limit| async move {
        s.weber_business_metrics_ranked(tenant, order, offset, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.user_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(MetricsOrder::ClvDesc, 0, 3).await, ["u6", "u5", "u4"]);
    assert_eq!(page(MetricsOrder::ClvDesc, 3, 3).await, ["u3", "u2", "u1"]);
    assert_eq!(page(MetricsOrder::ClvDesc, 6, 3).await, ["u0"]);
    assert!(page(MetricsOrder::ClvDesc, 7, 3).await.is_empty());
    // The other tenant's riskier customer is not on this tenant's page.
    assert_eq!(page(MetricsOrder::ChurnRiskDesc, 0, 2).await, ["u0", "u1"]);

    // CLVs 0, 10, ..., 60 in [0, 15), [15, 40), [40, ...).
    assert_eq!(
        s.weber_clv_histogram(&t.id, &[0.0, 15.0, 40.0])
            .await
            .unwrap(),
        vec![2, 2, 3]
    );
    assert_eq!(
        s.weber_clv_histogram(&other.id, &[0.0, 15.0, 40.0])
            .await
            .unwrap(),
        vec![0, 1, 0]
    );
    assert!(s.weber_clv_histogram(&t.id, &[]).await.unwrap().is_empty());
    assert!(matches!(
        s.weber_clv_histogram(&t.id, &[1.0, 1.0]).await,
        Err(StoreError::Invalid { field: "edges", .. })
    ));
}
