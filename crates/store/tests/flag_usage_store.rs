//! Flag usage storage on both backends: hourly counts add up across batches, the last
//! evaluation only moves forward, reads bucket by hour and day, and tenants stay apart.

use store::testing::TestStore;
use store::{EvaluationCount, Exposure, StoreError, Tier, UsageRange, DAY_MS, HOUR_MS};

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
    evaluation_counts_add_up_and_bucket_by_hour_and_day,
    usage_is_isolated_by_tenant_and_environment,
    bad_counts_are_refused_before_anything_is_written,
);

/// A day boundary, so hour and day buckets are easy to tell apart.
const DAY0: i64 = 20_000 * DAY_MS;

fn count(flag: &str, variant: Option<&str>, hour: i64, n: u64, last: i64) -> EvaluationCount {
    EvaluationCount {
        environment: "production".to_owned(),
        flag_key: flag.to_owned(),
        variant: variant.map(str::to_owned),
        hour_ms: DAY0 + hour * HOUR_MS,
        evaluations: n,
        last_evaluated_ms: last,
    }
}

fn range(bucket_ms: i64, flag_key: Option<&str>) -> UsageRange<'_> {
    UsageRange {
        environment: "production",
        from_ms: DAY0,
        to_ms: DAY0 + 2 * DAY_MS,
        bucket_ms,
        flag_key,
    }
}

async fn evaluation_counts_add_up_and_bucket_by_hour_and_day(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    // The same cell twice in one batch, and again in a later batch (another replica).
    s.record_flag_evaluations(
        &t.id,
        &[
            count("btn", Some("on"), 1, 3, DAY0 + 90),
            count("btn", Some("on"), 1, 2, DAY0 + 50),
            count("btn", None, 1, 1, DAY0 + 10),
            count("btn", Some("off"), 25, 4, DAY0 + DAY_MS + 3_600_500),
        ],
    )
    .await
    .unwrap();
    s.record_flag_evaluations(&t.id, &[count("btn", Some("on"), 1, 10, DAY0 + 20)])
        .await
        .unwrap();
    let hourly = s
        .flag_evaluations(&t.id, &range(HOUR_MS, None))
        .await
        .unwrap();
    let rows: Vec<(i64, Option<&str>, u64)> = hourly
        .iter()
        .map(|b| {
            (
                (b.bucket_ms - DAY0) / HOUR_MS,
                b.variant.as_deref(),
                b.evaluations,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [(1, None, 1), (1, Some("on"), 15), (25, Some("off"), 4)]
    );
    let daily = s
        .flag_evaluations(&t.id, &range(DAY_MS, Some("btn")))
        .await
        .unwrap();
    let rows: Vec<(i64, Option<&str>, u64)> = daily
        .iter()
        .map(|b| {
            (
                (b.bucket_ms - DAY0) / DAY_MS,
                b.variant.as_deref(),
                b.evaluations,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [(0, None, 1), (0, Some("on"), 15), (1, Some("off"), 4)]
    );
    // The last evaluation is the latest ever written, whatever the batch order.
    let last = s.flags_last_evaluated(&t.id, "production").await.unwrap();
    assert_eq!(last.get("btn"), Some(&(DAY0 + DAY_MS + 3_600_500)));
    // Assignments bucket by each user's first exposure.
    let exposure = |user: &str, variant: &str, at_ms: i64| Exposure {
        environment: "production".to_owned(),
        flag_key: "btn".to_owned(),
        targeting_key: user.to_owned(),
        variant: variant.to_owned(),
        at_ms,
    };
    s.record_exposures(
        &t.id,
        &[
            exposure("u1", "on", DAY0 + 10),
            exposure("u2", "on", DAY0 + HOUR_MS + 5),
            exposure("u3", "off", DAY0 + DAY_MS),
            exposure("u1", "off", DAY0 + DAY_MS + 1),
        ],
    )
    .await
    .unwrap();
    let assigned = s
        .flag_assignments(&t.id, &range(DAY_MS, None))
        .await
        .unwrap();
    let rows: Vec<(i64, &str, u64)> = assigned
        .iter()
        .map(|a| ((a.bucket_ms - DAY0) / DAY_MS, a.variant.as_str(), a.users))
        .collect();
    assert_eq!(rows, [(0, "on", 2), (1, "off", 1)]);
    let hourly = s
        .flag_assignments(&t.id, &range(HOUR_MS, None))
        .await
        .unwrap();
    assert_eq!(hourly.len(), 3);
}

async fn usage_is_isolated_by_tenant_and_environment(f: &TestStore) {
    let s = &f.store;
    let a = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let b = s.create_tenant("globex", Tier::Starter).await.unwrap();
    s.record_flag_evaluations(&a.id, &[count("btn", Some("on"), 0, 7, DAY0)])
        .await
        .unwrap();
    let mut staging = count("btn", Some("on"), 0, 1, DAY0);
    staging.environment = "staging".to_owned();
    s.record_flag_evaluations(&b.id, &[staging]).await.unwrap();
    assert!(s
        .flag_evaluations(&b.id, &range(HOUR_MS, None))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .flags_last_evaluated(&b.id, "production")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.flag_evaluations(&a.id, &range(HOUR_MS, None))
            .await
            .unwrap()
            .len(),
        1
    );
    let unknown = s
        .record_flag_evaluations("tn_nope", &[count("btn", None, 0, 1, DAY0)])
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
}

async fn bad_counts_are_refused_before_anything_is_written(f: &TestStore) {
    let s = &f.store;
    let t = s.create_tenant("acme", Tier::Starter).await.unwrap();
    let mut off_hour = count("btn", None, 0, 1, DAY0);
    off_hour.hour_ms += 1;
    let bad_variant = count("btn", Some(""), 0, 1, DAY0);
    let bad_flag = count("no flag!", None, 0, 1, DAY0);
    for bad in [off_hour, bad_variant, bad_flag] {
        let refused = s
            .record_flag_evaluations(&t.id, &[count("btn", None, 0, 1, DAY0), bad])
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid { .. })),
            "{refused:?}"
        );
    }
    assert!(s
        .flag_evaluations(&t.id, &range(HOUR_MS, None))
        .await
        .unwrap()
        .is_empty());
    let odd = s
        .flag_evaluations(
            &t.id,
            &UsageRange {
                bucket_ms: 60_000,
                ..range(HOUR_MS, None)
            },
        )
        .await;
    assert!(matches!(odd, Err(StoreError::Invalid { .. })), "{odd:?}");
}
