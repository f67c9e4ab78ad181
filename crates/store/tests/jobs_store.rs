//! Job queue storage: idempotent enqueue, claim order and exclusivity (`SKIP LOCKED`), fencing
//! by lease, retries to the dead-letter status, lease rescue, release, cancel, retry, purge,
//! expiry, stats, schedules enqueued once per tick by concurrent schedulers, tenant isolation,
//! input limits and wake-ups. Every case runs on a fresh SQLite file and in a private
//! PostgreSQL schema.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use jobs::{JobEvent, JobStatus, Priority, Schedule};
use proptest::prelude::*;
use store::testing::TestStore;
use store::{
    AttemptOutcome, Backend, Finish, JobFilter, NewJob, Store, StoreError, Tier,
    MAX_JOB_PAYLOAD_BYTES,
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
    enqueue_is_idempotent_per_tenant,
    claims_follow_queue_and_run_time_and_never_start_early,
    expired_jobs_are_not_claimed_and_the_sweep_expires_them,
    a_stale_worker_or_attempt_cannot_finish_or_heartbeat,
    a_failing_job_is_dead_after_max_attempts_and_a_person_can_retry_it,
    lost_leases_are_rescued_then_dead_when_attempts_are_used_up,
    release_gives_jobs_back_with_the_attempt_uncounted,
    cancel_pending_at_once_and_running_through_the_heartbeat,
    only_dead_or_failed_jobs_can_be_retried,
    purge_deletes_only_one_final_status_of_one_tenant,
    stats_count_every_queue_and_status,
    listing_filters_and_pages_newest_first,
    concurrent_claimers_never_share_a_job,
    schedules_enqueue_each_tick_once_across_concurrent_schedulers,
    another_tenants_job_is_not_found,
    bad_input_is_refused_naming_the_field,
    a_waiter_is_woken_by_an_enqueue,
    retention_deletes_finished_jobs_and_old_history_in_batches,
    canary_receipts_are_recorded_once,
    store_calls_are_timed_under_the_jobs_tables,
    concurrent_single_enqueues_are_grouped_and_each_caller_gets_its_own_job,
);

/// What one caller of the group-commit test asked for and got.
struct Call {
    tenant: String,
    payload: String,
    key: Option<String>,
    answer: Result<store::Enqueued, StoreError>,
}

/// 64 tasks x 50 single enqueues at once (three tenants, shared keys, one invalid job, one
/// unknown tenant): every caller gets its own job, or its own error alone.
async fn concurrent_single_enqueues_are_grouped_and_each_caller_gets_its_own_job(f: &TestStore) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    let s = &f.store;
    let tenants = vec![
        tenant(s, "a").await,
        tenant(s, "b").await,
        tenant(s, "c").await,
    ];
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (s, start) = (s.clone(), start.clone());
        let own_tenant = tenants[task % tenants.len()].clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut calls = Vec::new();
            for n in 0..PER_TASK {
                let tenant = if (task, n) == (13, 5) {
                    "tnt_no_such_tenant".to_owned()
                } else {
                    own_tenant.clone()
                };
                let payload = format!(r#"{{"task":{task},"n":{n}}}"#);
                // Every tenth job shares its key with the same job of the tenant's other tasks.
                let key = (n % 10 == 0).then(|| format!("shared-{n}"));
                let handler = if (task, n) == (7, 25) {
                    "Bad Name"
                } else {
                    "jobs.noop"
                };
                let new = NewJob {
                    handler,
                    payload: &payload,
                    idempotency_key: key.as_deref(),
                    ..job(Priority::Normal, T0)
                };
                let answer = s.enqueue_job(&tenant, &new, T0).await;
                calls.push(Call {
                    tenant,
                    payload,
                    key,
                    answer,
                });
            }
            calls
        }));
    }
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.unwrap());
    }
    assert_eq!(calls.len(), TASKS * PER_TASK);

    let mut ids = HashSet::new();
    let mut by_key: HashMap<(String, String), (String, usize)> = HashMap::new();
    let mut stored: HashMap<String, u64> = HashMap::new();
    let (mut invalid, mut unknown_tenant) = (0, 0);
    for call in &calls {
        let enqueued = match &call.answer {
            Err(StoreError::Invalid { field, .. }) => {
                assert_eq!(*field, "handler");
                assert!(call.payload.contains(r#""task":7,"n":25"#));
                invalid += 1;
                continue;
            }
            Err(StoreError::NotFound { what }) => {
                assert!(what.contains("tnt_no_such_tenant"), "{what}");
                unknown_tenant += 1;
                continue;
            }
            Err(e) => panic!("unexpected enqueue error: {e}"),
            Ok(enqueued) => enqueued,
        };
        assert_eq!(enqueued.job.tenant_id, call.tenant);
        assert_eq!(enqueued.job.handler, "jobs.noop");
        assert_eq!(enqueued.job.idempotency_key, call.key);
        match &call.key {
            None => {
                assert!(enqueued.created);
                assert_eq!(enqueued.job.payload, call.payload);
                assert!(ids.insert(enqueued.job.id.clone()), "a job id given twice");
                *stored.entry(call.tenant.clone()).or_default() += 1;
            }
            Some(key) => {
                let entry = by_key
                    .entry((call.tenant.clone(), key.clone()))
                    .or_insert_with(|| (enqueued.job.id.clone(), 0));
                assert_eq!(entry.0, enqueued.job.id, "a repeated key got another job");
                entry.1 += usize::from(enqueued.created);
            }
        }
        let read = get(s, &call.tenant, &enqueued.job.id).await;
        assert_eq!(read, enqueued.job);
    }
    assert_eq!((invalid, unknown_tenant), (1, 1));
    // Each key of each tenant enqueued once, and exactly one caller was told it created it.
    assert_eq!(by_key.len(), tenants.len() * (PER_TASK / 10));
    for ((tenant, _), (id, created)) in &by_key {
        assert_eq!(*created, 1, "key of job {id}");
        assert!(ids.insert(id.clone()), "a keyed job shares an id");
        *stored.entry(tenant.clone()).or_default() += 1;
    }
    for t in &tenants {
        let counted: u64 = s
            .job_stats(t, T0)
            .await
            .unwrap()
            .queues
            .iter()
            .flat_map(|q| q.by_status.iter().map(|(_, n)| n))
            .sum();
        assert_eq!(counted, stored[t], "tenant {t}");
    }

    // Callers dropped while their jobs wait or are being written cost the others nothing.
    let mut kept = Vec::new();
    for n in 0..32 {
        let (s, t) = (s.clone(), tenants[0].clone());
        let task = tokio::spawn(async move {
            let payload = format!(r#"{{"dropped":{n}}}"#);
            let new = NewJob {
                payload: &payload,
                ..job(Priority::Low, T0)
            };
            s.enqueue_job(&t, &new, T0).await
        });
        if n % 2 == 0 {
            task.abort();
        } else {
            kept.push(task);
        }
    }
    for task in kept {
        let answer = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("an enqueue answered after other callers went away")
            .unwrap();
        assert!(answer.unwrap().created);
    }
    let enqueued = s
        .enqueue_job(&tenants[1], &keyed("after"), T0)
        .await
        .unwrap();
    assert!(enqueued.created);
}

/// 2027-01-15T08:00:00Z: a whole minute.
const T0: i64 = 1_800_000_000_000;
const LEASE: u64 = 30_000;

async fn tenant(s: &Store, name: &str) -> String {
    s.create_tenant(name, Tier::Starter).await.unwrap().id
}

fn job(priority: Priority, run_at_ms: i64) -> NewJob<'static> {
    NewJob {
        handler: "jobs.noop",
        payload: "{}",
        priority,
        run_at_ms,
        expires_at_ms: None,
        max_attempts: 3,
        timeout_ms: 60_000,
        idempotency_key: None,
    }
}

fn keyed(key: &str) -> NewJob<'_> {
    NewJob {
        idempotency_key: Some(key),
        ..job(Priority::Normal, T0)
    }
}

fn lease(job: &store::JobRecord) -> (String, u32) {
    (job.id.clone(), job.attempts)
}

fn finish(job: &store::JobRecord, outcome: AttemptOutcome) -> Finish<'_> {
    Finish {
        job_id: &job.id,
        attempt: job.attempts,
        outcome,
    }
}

async fn get(s: &Store, t: &str, id: &str) -> store::JobRecord {
    s.job(t, id).await.unwrap().expect("job exists")
}

async fn enqueue_is_idempotent_per_tenant(f: &TestStore) {
    let s = &f.store;
    let (a, b) = (tenant(s, "a").await, tenant(s, "b").await);
    let first = s.enqueue_job(&a, &keyed("order-1"), T0).await.unwrap();
    assert!(first.created);
    assert!(first.job.id.starts_with("job_"));
    assert_eq!(
        (
            first.job.status,
            first.job.attempts,
            first.job.tenant_id.as_str()
        ),
        (JobStatus::Pending, 0, a.as_str())
    );
    let again = NewJob {
        payload: r#"{"other":true}"#,
        ..keyed("order-1")
    };
    let second = s.enqueue_job(&a, &again, T0 + 5).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.job, first.job, "the existing job, unchanged");
    // Also once it has finished.
    let claimed = s
        .claim_jobs(Priority::Normal, "w", 1, T0, LEASE)
        .await
        .unwrap();
    s.finish_jobs(
        "w",
        &[finish(
            &claimed[0],
            AttemptOutcome::Succeeded { result: None },
        )],
        T0,
    )
    .await
    .unwrap();
    let third = s.enqueue_job(&a, &keyed("order-1"), T0 + 9).await.unwrap();
    assert!(!third.created);
    assert_eq!(third.job.status, JobStatus::Success);

    let other = s.enqueue_job(&b, &keyed("order-1"), T0).await.unwrap();
    assert!(other.created, "another tenant's key does not collide");
    assert_ne!(other.job.id, first.job.id);

    // A batch: a key repeated in it, a known key, and keyless jobs.
    let batch = [
        keyed("order-2"),
        keyed("order-2"),
        job(Priority::Low, T0),
        keyed("order-1"),
        job(Priority::Low, T0),
    ];
    let out = s.enqueue_jobs(&a, &batch, T0).await.unwrap();
    let created: Vec<bool> = out.iter().map(|e| e.created).collect();
    assert_eq!(created, [true, false, true, false, true]);
    assert_eq!(out[0].job.id, out[1].job.id);
    assert_eq!(out[3].job.id, first.job.id);
    assert_ne!(out[2].job.id, out[4].job.id);
    assert_eq!(out[2].job.priority, Priority::Low);

    // Concurrent enqueues of one key make one job.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, a) = (s.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            s.enqueue_job(&a, &keyed("race"), T0 + i).await.unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut creators = 0;
    for task in tasks {
        let e = task.await.unwrap();
        creators += usize::from(e.created);
        ids.insert(e.job.id);
    }
    assert_eq!((creators, ids.len()), (1, 1));
}

async fn claims_follow_queue_and_run_time_and_never_start_early(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let normal = s
        .enqueue_jobs(
            &t,
            &[
                job(Priority::Normal, T0 + 30),
                job(Priority::Normal, T0 + 10),
                job(Priority::Normal, T0 + 20),
                job(Priority::Normal, T0 + 1_000),
            ],
            T0,
        )
        .await
        .unwrap();
    let high = s
        .enqueue_job(&t, &job(Priority::High, T0), T0)
        .await
        .unwrap();

    let claimed = s
        .claim_jobs(Priority::Normal, "w1", 10, T0 + 100, LEASE)
        .await
        .unwrap();
    let order: Vec<i64> = claimed.iter().map(|j| j.run_at_ms).collect();
    assert_eq!(
        order,
        [T0 + 10, T0 + 20, T0 + 30],
        "run-time order; the delayed job waits"
    );
    for j in &claimed {
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.attempts, 1);
        assert_eq!(j.worker_id.as_deref(), Some("w1"));
        assert_eq!(j.lease_until_ms, Some(T0 + 100 + LEASE as i64));
        assert_eq!(j.started_at_ms, Some(T0 + 100));
    }
    assert!(claimed.iter().all(|j| j.priority == Priority::Normal));
    assert_eq!(
        s.next_job_run_ms(Priority::Normal, T0 + 100).await.unwrap(),
        Some(T0 + 1_000)
    );
    assert!(s
        .claim_jobs(Priority::Normal, "w1", 10, T0 + 999, LEASE)
        .await
        .unwrap()
        .is_empty());
    let late = s
        .claim_jobs(Priority::Normal, "w1", 10, T0 + 1_000, LEASE)
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].id, normal.enqueued_id(3));
    assert_eq!(
        s.next_job_run_ms(Priority::Normal, T0 + 1_000)
            .await
            .unwrap(),
        None
    );

    // Each queue is claimed on its own; the limit holds.
    let more = s
        .enqueue_jobs(
            &t,
            &[job(Priority::High, T0), job(Priority::High, T0 + 1)],
            T0,
        )
        .await
        .unwrap();
    let h = s
        .claim_jobs(Priority::High, "w2", 2, T0 + 100, LEASE)
        .await
        .unwrap();
    let ids: Vec<&str> = h.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        ids,
        [high.job.id.as_str(), more.enqueued_id(0).as_str()],
        "run_at, then id order"
    );
    assert!(s
        .claim_jobs(Priority::Bulk, "w2", 5, T0 + 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_jobs(Priority::High, "w2", 0, T0 + 100, LEASE)
        .await
        .unwrap()
        .is_empty());
}

trait EnqueuedIds {
    fn enqueued_id(&self, i: usize) -> String;
}

impl EnqueuedIds for Vec<store::Enqueued> {
    fn enqueued_id(&self, i: usize) -> String {
        self[i].job.id.clone()
    }
}

async fn expired_jobs_are_not_claimed_and_the_sweep_expires_them(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let expiring = s
        .enqueue_job(
            &t,
            &NewJob {
                expires_at_ms: Some(T0 + 50),
                ..job(Priority::Normal, T0)
            },
            T0,
        )
        .await
        .unwrap()
        .job;
    let lasting = s
        .enqueue_job(&t, &job(Priority::Normal, T0 + 1), T0)
        .await
        .unwrap()
        .job;
    let claimed = s
        .claim_jobs(Priority::Normal, "w", 10, T0 + 50, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].id, lasting.id,
        "a job at its expiry is not started"
    );
    assert_eq!(s.expire_jobs(T0 + 49).await.unwrap(), 0);
    assert_eq!(s.expire_jobs(T0 + 50).await.unwrap(), 1);
    let expired = get(s, &t, &expiring.id).await;
    assert_eq!(
        (expired.status, expired.finished_at_ms),
        (JobStatus::Expired, Some(T0 + 50))
    );
    assert_eq!(
        s.expire_jobs(T0 + 99).await.unwrap(),
        0,
        "running jobs do not expire"
    );
}

async fn a_stale_worker_or_attempt_cannot_finish_or_heartbeat(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.enqueue_job(&t, &job(Priority::Normal, T0), T0)
        .await
        .unwrap();
    let j = s
        .claim_jobs(Priority::Normal, "w1", 1, T0, LEASE)
        .await
        .unwrap()
        .remove(0);
    let ok = AttemptOutcome::Succeeded {
        result: Some(r#"{"n":1}"#.to_owned()),
    };
    let wrong_attempt = Finish {
        job_id: &j.id,
        attempt: 2,
        outcome: ok.clone(),
    };
    let applied = s
        .finish_jobs("w2", &[finish(&j, ok.clone())], T0 + 1)
        .await
        .unwrap();
    assert_eq!(applied, [false], "another worker");
    assert_eq!(
        s.finish_jobs("w1", &[wrong_attempt], T0 + 1).await.unwrap(),
        [false]
    );
    // A heartbeat under a stale lease changes nothing.
    assert!(s
        .heartbeat_jobs("w2", &[lease(&j)], T0 + 5, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        get(s, &t, &j.id).await.lease_until_ms,
        Some(T0 + LEASE as i64)
    );
    assert!(s
        .heartbeat_jobs("w1", &[lease(&j)], T0 + 5, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        get(s, &t, &j.id).await.lease_until_ms,
        Some(T0 + 5 + LEASE as i64)
    );

    let both = [
        finish(&j, ok.clone()),
        finish(&j, AttemptOutcome::Cancelled),
    ];
    assert_eq!(
        s.finish_jobs("w1", &both, T0 + 7).await.unwrap(),
        [true, false]
    );
    let done = get(s, &t, &j.id).await;
    assert_eq!(done.status, JobStatus::Success);
    assert_eq!(done.result.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(
        (done.finished_at_ms, done.lease_until_ms),
        (Some(T0 + 7), None)
    );
    assert_eq!(
        s.finish_jobs("w1", &[finish(&j, ok)], T0 + 8)
            .await
            .unwrap(),
        [false],
        "once"
    );
}

async fn a_failing_job_is_dead_after_max_attempts_and_a_person_can_retry_it(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let id = s
        .enqueue_job(&t, &job(Priority::Normal, T0), T0)
        .await
        .unwrap()
        .job
        .id;
    let mut now = T0;
    for attempt in 1..=3u32 {
        let claimed = s
            .claim_jobs(Priority::Normal, "w", 1, now, LEASE)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        assert_eq!(claimed[0].attempts, attempt);
        let outcome = AttemptOutcome::RetryAt {
            at_ms: now + 100,
            error: format!("boom {attempt}"),
        };
        assert_eq!(
            s.finish_jobs("w", &[finish(&claimed[0], outcome)], now)
                .await
                .unwrap(),
            [true]
        );
        let after = get(s, &t, &id).await;
        if attempt < 3 {
            assert_eq!(
                (after.status, after.run_at_ms),
                (JobStatus::Retrying, now + 100)
            );
            assert!(s
                .claim_jobs(Priority::Normal, "w", 1, now + 99, LEASE)
                .await
                .unwrap()
                .is_empty());
        } else {
            // The worker asked for a retry, but no attempt is left.
            assert_eq!(after.status, JobStatus::Dead);
            assert_eq!(after.finished_at_ms, Some(now));
        }
        assert_eq!(after.last_error, Some(format!("boom {attempt}")));
        now += 100;
    }
    assert!(s
        .claim_jobs(Priority::Normal, "w", 1, now + 10_000, LEASE)
        .await
        .unwrap()
        .is_empty());
    let retried = s.retry_job(&t, &id, now).await.unwrap();
    assert_eq!(
        (
            retried.status,
            retried.attempts,
            retried.run_at_ms,
            retried.finished_at_ms
        ),
        (JobStatus::Pending, 0, now, None)
    );
    assert_eq!(
        retried.last_error.as_deref(),
        Some("boom 3"),
        "kept as history"
    );
    let again = s
        .claim_jobs(Priority::Normal, "w", 1, now, LEASE)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1);
    // An explicit dead outcome and a permanent failure.
    s.finish_jobs(
        "w",
        &[finish(
            &again[0],
            AttemptOutcome::Dead {
                error: "gone".into(),
            },
        )],
        now,
    )
    .await
    .unwrap();
    assert_eq!(get(s, &t, &id).await.status, JobStatus::Dead);
}

async fn lost_leases_are_rescued_then_dead_when_attempts_are_used_up(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let id = s
        .enqueue_job(
            &t,
            &NewJob {
                max_attempts: 2,
                ..job(Priority::Critical, T0)
            },
            T0,
        )
        .await
        .unwrap()
        .job
        .id;
    let first = s
        .claim_jobs(Priority::Critical, "w1", 1, T0, 1_000)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        s.rescue_lost_jobs(T0 + 1_000).await.unwrap(),
        Default::default(),
        "lease still held"
    );
    let report = s.rescue_lost_jobs(T0 + 1_001).await.unwrap();
    assert_eq!((report.requeued, report.dead), (1, 0));
    let back = get(s, &t, &id).await;
    assert_eq!(
        (back.status, back.run_at_ms, back.attempts),
        (JobStatus::Retrying, T0 + 1_001, 1)
    );
    assert!(back.last_error.unwrap().starts_with("worker lost"));
    // The lost worker comes back too late.
    let late = s
        .finish_jobs(
            "w1",
            &[finish(&first, AttemptOutcome::Succeeded { result: None })],
            T0 + 1_002,
        )
        .await
        .unwrap();
    assert_eq!(late, [false]);

    let second = s
        .claim_jobs(Priority::Critical, "w2", 1, T0 + 1_001, 1_000)
        .await
        .unwrap();
    assert_eq!(second[0].attempts, 2);
    let report = s.rescue_lost_jobs(T0 + 5_000).await.unwrap();
    assert_eq!((report.requeued, report.dead), (0, 1));
    let dead = get(s, &t, &id).await;
    assert_eq!(
        (dead.status, dead.attempts, dead.finished_at_ms),
        (JobStatus::Dead, 2, Some(T0 + 5_000))
    );
    assert_eq!(
        s.rescue_lost_jobs(T0 + 9_000).await.unwrap(),
        Default::default()
    );
}

async fn release_gives_jobs_back_with_the_attempt_uncounted(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.enqueue_jobs(
        &t,
        &[job(Priority::Low, T0), job(Priority::Low, T0 + 1)],
        T0,
    )
    .await
    .unwrap();
    let claimed = s
        .claim_jobs(Priority::Low, "w", 2, T0 + 5, LEASE)
        .await
        .unwrap();
    let stale = (claimed[1].id.clone(), 7);
    let released = s
        .release_jobs("w", &[lease(&claimed[0]), stale])
        .await
        .unwrap();
    assert_eq!(released, 1);
    let back = get(s, &t, &claimed[0].id).await;
    assert_eq!(
        (
            back.status,
            back.attempts,
            back.worker_id,
            back.lease_until_ms
        ),
        (JobStatus::Pending, 0, None, None)
    );
    assert_eq!(get(s, &t, &claimed[1].id).await.status, JobStatus::Running);
    let again = s
        .claim_jobs(Priority::Low, "w2", 2, T0 + 6, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (claimed[0].id.as_str(), 1)
    );
    assert_eq!(s.release_jobs("w", &[]).await.unwrap(), 0);
}

async fn cancel_pending_at_once_and_running_through_the_heartbeat(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let out = s
        .enqueue_jobs(
            &t,
            &[job(Priority::High, T0), job(Priority::High, T0 + 100)],
            T0,
        )
        .await
        .unwrap();
    let running = s
        .claim_jobs(Priority::High, "w", 1, T0, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(running.id, out[0].job.id);
    let waiting = s.cancel_job(&t, &out[1].job.id, T0 + 1).await.unwrap();
    assert_eq!(
        (waiting.status, waiting.finished_at_ms),
        (JobStatus::Cancelled, Some(T0 + 1))
    );

    let marked = s.cancel_job(&t, &running.id, T0 + 2).await.unwrap();
    assert_eq!(
        (marked.status, marked.cancel_requested),
        (JobStatus::Running, true)
    );
    assert_eq!(
        s.cancel_job(&t, &running.id, T0 + 3).await.unwrap(),
        marked,
        "asked once"
    );
    let to_stop = s
        .heartbeat_jobs("w", &[lease(&running)], T0 + 4, LEASE)
        .await
        .unwrap();
    assert_eq!(to_stop, std::slice::from_ref(&running.id));
    let applied = s
        .finish_jobs("w", &[finish(&running, AttemptOutcome::Cancelled)], T0 + 5)
        .await
        .unwrap();
    assert_eq!(applied, [true]);
    assert_eq!(get(s, &t, &running.id).await.status, JobStatus::Cancelled);

    for id in [&running.id, &out[1].job.id] {
        let e = s.cancel_job(&t, id, T0 + 6).await.unwrap_err();
        assert!(
            matches!(
                &e,
                StoreError::JobState {
                    status: JobStatus::Cancelled,
                    action: "cancelled",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // A released job whose cancellation was asked for ends cancelled, not back in the queue.
    let third = s
        .enqueue_job(&t, &job(Priority::High, T0), T0)
        .await
        .unwrap()
        .job;
    let claimed = s
        .claim_jobs(Priority::High, "w", 1, T0 + 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claimed.id, third.id);
    s.cancel_job(&t, &third.id, T0 + 11).await.unwrap();
    assert_eq!(s.release_jobs("w", &[lease(&claimed)]).await.unwrap(), 1);
    assert_eq!(get(s, &t, &third.id).await.status, JobStatus::Cancelled);
}

async fn only_dead_or_failed_jobs_can_be_retried(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let out = s
        .enqueue_jobs(
            &t,
            &[
                job(Priority::Normal, T0),
                job(Priority::Normal, T0 + 1),
                job(Priority::Normal, T0 + 2),
            ],
            T0,
        )
        .await
        .unwrap();
    let claimed = s
        .claim_jobs(Priority::Normal, "w", 2, T0 + 5, LEASE)
        .await
        .unwrap();
    s.finish_jobs(
        "w",
        &[
            finish(&claimed[0], AttemptOutcome::Succeeded { result: None }),
            finish(
                &claimed[1],
                AttemptOutcome::Failed {
                    error: "bad payload".into(),
                },
            ),
        ],
        T0 + 6,
    )
    .await
    .unwrap();
    let failed = get(s, &t, &claimed[1].id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    for (id, status) in [
        (&claimed[0].id, JobStatus::Success),
        (&out[2].job.id, JobStatus::Pending),
    ] {
        let e = s.retry_job(&t, id, T0 + 7).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::JobState { status: st, action: "retried", .. } if *st == status),
            "{e:?}"
        );
    }
    let retried = s.retry_job(&t, &failed.id, T0 + 7).await.unwrap();
    assert_eq!((retried.status, retried.attempts), (JobStatus::Pending, 0));
}

async fn purge_deletes_only_one_final_status_of_one_tenant(f: &TestStore) {
    let s = &f.store;
    let (a, b) = (tenant(s, "a").await, tenant(s, "b").await);
    for t in [&a, &b] {
        s.enqueue_jobs(
            t,
            &[
                job(Priority::Normal, T0),
                job(Priority::Normal, T0),
                job(Priority::Normal, T0),
            ],
            T0,
        )
        .await
        .unwrap();
    }
    for _ in 0..2 {
        let claimed = s
            .claim_jobs(Priority::Normal, "w", 2, T0, LEASE)
            .await
            .unwrap();
        let done: Vec<Finish<'_>> = claimed
            .iter()
            .map(|j| finish(j, AttemptOutcome::Dead { error: "x".into() }))
            .collect();
        s.finish_jobs("w", &done, T0).await.unwrap();
    }
    for status in [JobStatus::Pending, JobStatus::Running, JobStatus::Retrying] {
        let e = s.purge_jobs(&a, status).await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Invalid {
                    field: "status",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let a_dead = s
        .list_jobs(
            &a,
            &JobFilter {
                status: Some(JobStatus::Dead),
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap()
        .len() as u64;
    assert!(a_dead >= 1);
    assert_eq!(s.purge_jobs(&a, JobStatus::Success).await.unwrap(), 0);
    assert_eq!(s.purge_jobs(&a, JobStatus::Dead).await.unwrap(), a_dead);
    let left = s
        .list_jobs(
            &a,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(left.len() as u64, 3 - a_dead);
    assert!(left.iter().all(|j| j.status != JobStatus::Dead));
    let b_all = s
        .list_jobs(
            &b,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(b_all.len(), 3, "the other tenant keeps its jobs");
}

async fn stats_count_every_queue_and_status(f: &TestStore) {
    let s = &f.store;
    let (t, other) = (tenant(s, "acme").await, tenant(s, "other").await);
    s.enqueue_jobs(
        &t,
        &[
            job(Priority::Normal, T0 - 60_000),
            job(Priority::Normal, T0 - 1_000),
            job(Priority::Normal, T0 - 500),
            job(Priority::Normal, T0 - 400),
            job(Priority::Normal, T0 + 60_000),
            job(Priority::Bulk, T0 - 2_000),
        ],
        T0 - 60_000,
    )
    .await
    .unwrap();
    s.enqueue_job(&other, &job(Priority::Normal, T0 - 999_999), T0 - 999_999)
        .await
        .unwrap();
    // The other tenant's old job is claimed first; this tenant's three oldest follow.
    let claimed = s
        .claim_jobs(Priority::Normal, "w", 4, T0, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed[0].tenant_id, other);
    s.finish_jobs(
        "w",
        &[
            finish(&claimed[1], AttemptOutcome::Succeeded { result: None }),
            finish(
                &claimed[2],
                AttemptOutcome::RetryAt {
                    at_ms: T0 + 100,
                    error: "e".into(),
                },
            ),
        ],
        T0 - 10 * 60_000,
    )
    .await
    .unwrap();
    s.finish_jobs(
        "w",
        &[finish(
            &claimed[3],
            AttemptOutcome::Failed { error: "e".into() },
        )],
        T0,
    )
    .await
    .unwrap();

    let stats = s.job_stats(&t, T0).await.unwrap();
    let ranks: Vec<Priority> = stats.queues.iter().map(|q| q.priority).collect();
    assert_eq!(ranks, Priority::ALL);
    let normal = &stats.queues[Priority::Normal.rank() as usize];
    assert_eq!(normal.by_status.len(), 8);
    let count = |q: &store::QueueStats, st: JobStatus| {
        q.by_status.iter().find(|(s, _)| *s == st).unwrap().1
    };
    assert_eq!(count(normal, JobStatus::Pending), 2);
    assert_eq!(count(normal, JobStatus::Success), 1);
    assert_eq!(count(normal, JobStatus::Retrying), 1);
    assert_eq!(count(normal, JobStatus::Failed), 1);
    assert_eq!(count(normal, JobStatus::Running), 0);
    // The due pending job at T0 - 400 (the one at T0 + 60 s is not due, retrying is not due).
    assert_eq!(normal.oldest_pending_age_ms, Some(400));
    // The success and the retry were recorded 10 minutes ago; the failure now.
    assert_eq!((normal.finished_last_5m, normal.failed_last_5m), (0, 1));
    let bulk = &stats.queues[Priority::Bulk.rank() as usize];
    assert_eq!(
        (count(bulk, JobStatus::Pending), bulk.oldest_pending_age_ms),
        (1, Some(2_000))
    );
    assert!(stats.queues[0].by_status.iter().all(|(_, n)| *n == 0));
    assert_eq!(stats.queues[0].oldest_pending_age_ms, None);

    let depths = s.job_depths(T0).await.unwrap();
    let mine: Vec<(Priority, u64, Option<i64>)> = depths
        .iter()
        .filter(|d| d.tenant_id == t)
        .map(|d| (d.priority, d.pending, d.oldest_pending_age_ms))
        .collect();
    assert_eq!(
        mine,
        [
            (Priority::Normal, 1, Some(400)),
            (Priority::Bulk, 1, Some(2_000))
        ]
    );
    assert!(
        depths.iter().all(|d| d.tenant_id != other),
        "its only job is running"
    );
}

async fn listing_filters_and_pages_newest_first(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let mut batch = Vec::new();
    for i in 0..7 {
        let priority = if i % 2 == 0 {
            Priority::Normal
        } else {
            Priority::High
        };
        batch.push(NewJob {
            handler: if i < 3 {
                "weber.recalculate"
            } else {
                "jobs.noop"
            },
            ..job(priority, T0)
        });
    }
    let ids: Vec<String> = s
        .enqueue_jobs(&t, &batch, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let all = |limit| JobFilter {
        limit,
        ..JobFilter::default()
    };
    let page1 = s.list_jobs(&t, &all(3)).await.unwrap();
    let got: Vec<&str> = page1.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, [ids[6].as_str(), &ids[5], &ids[4]]);
    let page2 = s
        .list_jobs(
            &t,
            &JobFilter {
                before_id: Some(&page1[2].id),
                ..all(3)
            },
        )
        .await
        .unwrap();
    let got: Vec<&str> = page2.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, [ids[3].as_str(), &ids[2], &ids[1]]);
    let high = s
        .list_jobs(
            &t,
            &JobFilter {
                priority: Some(Priority::High),
                ..all(100)
            },
        )
        .await
        .unwrap();
    assert_eq!(high.len(), 3);
    let weber = s
        .list_jobs(
            &t,
            &JobFilter {
                handler: Some("weber.recalculate"),
                priority: Some(Priority::Normal),
                ..all(100)
            },
        )
        .await
        .unwrap();
    let got: Vec<&str> = weber.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, [ids[2].as_str(), &ids[0]]);
    let none = s
        .list_jobs(
            &t,
            &JobFilter {
                status: Some(JobStatus::Dead),
                ..all(100)
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        s.list_jobs(&t, &all(0)).await.unwrap().len(),
        1,
        "a limit of 0 is 1"
    );
}

async fn concurrent_claimers_never_share_a_job(f: &TestStore) {
    const JOBS: usize = 2_000;
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let batch: Vec<NewJob<'static>> = (0..JOBS)
        .map(|i| job(Priority::Normal, T0 + (i % 50) as i64))
        .collect();
    let enqueued: HashSet<String> = s
        .enqueue_jobs(&t, &batch, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    assert_eq!(enqueued.len(), JOBS);
    let mut tasks = Vec::new();
    for w in 0..4 {
        // On PostgreSQL each claimer has its own pool, as separate replicas would.
        let store = match s.backend() {
            Backend::Postgres => f.reopen().await,
            Backend::Sqlite => s.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_jobs(Priority::Normal, &worker, 25, T0 + 100, LEASE)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                let done: Vec<Finish<'_>> = claimed
                    .iter()
                    .map(|j| finish(j, AttemptOutcome::Succeeded { result: None }))
                    .collect();
                let applied = store.finish_jobs(&worker, &done, T0 + 100).await.unwrap();
                assert!(applied.iter().all(|a| *a));
                mine.extend(claimed.into_iter().map(|j| j.id));
            }
            mine
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut busy_workers = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        busy_workers += usize::from(!mine.is_empty());
        for id in mine {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), JOBS);
    assert!(seen.values().all(|n| *n == 1), "a job claimed twice");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), enqueued);
    assert!(busy_workers >= 2, "claimers ran side by side");
    let stats = s.job_stats(&t, T0 + 100).await.unwrap();
    let success = stats.queues[Priority::Normal.rank() as usize]
        .by_status
        .iter()
        .find(|(st, _)| *st == JobStatus::Success)
        .unwrap()
        .1;
    assert_eq!(success, JOBS as u64);
}

async fn schedules_enqueue_each_tick_once_across_concurrent_schedulers(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let cron = Schedule::parse("* * * * *").unwrap();
    let sched = s
        .put_job_schedule(
            &t,
            "every-minute",
            &cron,
            "jobs.canary",
            r#"{"x":1}"#,
            Priority::High,
            true,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        (sched.next_run_ms, sched.enabled, sched.priority),
        (T0 + 60_000, true, Priority::High)
    );
    assert!(s
        .enqueue_due_schedules(T0 + 59_999)
        .await
        .unwrap()
        .is_empty());

    let handles = [s.clone(), f.reopen().await, f.reopen().await];
    let mut all_jobs = Vec::new();
    for (tick, now) in [(T0 + 60_000, T0 + 60_000), (T0 + 120_000, T0 + 120_500)] {
        let mut tasks = Vec::new();
        for h in &handles {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.enqueue_due_schedules(now).await.unwrap()
            }));
        }
        let mut created = Vec::new();
        for task in tasks {
            created.extend(task.await.unwrap());
        }
        assert_eq!(created.len(), 1, "one job per tick");
        let j = &created[0].job;
        assert_eq!(j.schedule.as_deref(), Some("every-minute"));
        assert_eq!(
            j.idempotency_key,
            Some(format!("schedule:every-minute:{tick}"))
        );
        assert_eq!(
            (
                j.run_at_ms,
                j.priority,
                j.handler.as_str(),
                j.payload.as_str()
            ),
            (tick, Priority::High, "jobs.canary", r#"{"x":1}"#)
        );
        assert_eq!(j.max_attempts, Priority::High.settings().max_retries + 1);
        all_jobs.push(j.id.clone());
    }
    // All schedulers down for ten minutes: only the latest tick is enqueued.
    let created = s.enqueue_due_schedules(T0 + 780_000 + 5).await.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].job.run_at_ms, T0 + 780_000);
    let listed = s.job_schedules(&t).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].next_run_ms, T0 + 840_000);

    // Unchanged and enabled: the pending tick is kept; disabled: nothing is enqueued.
    let same = s
        .put_job_schedule(
            &t,
            "every-minute",
            &cron,
            "jobs.canary",
            "{}",
            Priority::High,
            true,
            T0 + 800_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (same.next_run_ms, same.created_at_ms, same.updated_at_ms),
        (T0 + 840_000, T0 + 1, T0 + 800_000)
    );
    s.put_job_schedule(
        &t,
        "every-minute",
        &cron,
        "jobs.canary",
        "{}",
        Priority::High,
        false,
        T0 + 800_000,
    )
    .await
    .unwrap();
    assert!(s
        .enqueue_due_schedules(T0 + 900_000)
        .await
        .unwrap()
        .is_empty());
    let hourly = Schedule::parse("0 * * * *").unwrap();
    let changed = s
        .put_job_schedule(
            &t,
            "every-minute",
            &hourly,
            "jobs.canary",
            "{}",
            Priority::Low,
            true,
            T0 + 900_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.cron.as_str(), changed.next_run_ms),
        ("0 * * * *", T0 + 3_600_000)
    );
    assert!(s.delete_job_schedule(&t, "every-minute").await.unwrap());
    assert!(!s.delete_job_schedule(&t, "every-minute").await.unwrap());
    assert!(s.job_schedules(&t).await.unwrap().is_empty());
    assert_eq!(
        s.list_jobs(
            &t,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            }
        )
        .await
        .unwrap()
        .len(),
        3
    );
    for h in handles.iter().skip(1) {
        h.close().await;
    }
}

async fn another_tenants_job_is_not_found(f: &TestStore) {
    let s = &f.store;
    let (a, b) = (tenant(s, "a").await, tenant(s, "b").await);
    let j = s
        .enqueue_job(&a, &job(Priority::Normal, T0), T0)
        .await
        .unwrap()
        .job;
    assert_eq!(s.job(&b, &j.id).await.unwrap(), None);
    assert!(matches!(
        s.cancel_job(&b, &j.id, T0).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.retry_job(&b, &j.id, T0).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s
        .list_jobs(
            &b,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            }
        )
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.purge_jobs(&b, JobStatus::Cancelled).await.unwrap(), 0);
    assert_eq!(
        get(s, &a, &j.id).await.status,
        JobStatus::Pending,
        "untouched"
    );
    assert_eq!(s.job(&a, "job_\0").await.unwrap(), None);
    let cron = Schedule::parse("@hourly").unwrap();
    s.put_job_schedule(
        &a,
        "nightly",
        &cron,
        "jobs.noop",
        "{}",
        Priority::Low,
        true,
        T0,
    )
    .await
    .unwrap();
    assert!(s.job_schedules(&b).await.unwrap().is_empty());
    assert!(!s.delete_job_schedule(&b, "nightly").await.unwrap());
    let missing = s
        .enqueue_job("tn_missing", &job(Priority::Normal, T0), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
}

async fn bad_input_is_refused_naming_the_field(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_JOB_PAYLOAD_BYTES));
    let long_key = "k".repeat(201);
    let cases: Vec<(NewJob<'_>, &str)> = vec![
        (
            NewJob {
                payload: &big,
                ..job(Priority::Normal, T0)
            },
            "payload",
        ),
        (
            NewJob {
                payload: "[1]",
                ..job(Priority::Normal, T0)
            },
            "payload",
        ),
        (
            NewJob {
                payload: "not json",
                ..job(Priority::Normal, T0)
            },
            "payload",
        ),
        (
            NewJob {
                handler: "Bad Name",
                ..job(Priority::Normal, T0)
            },
            "handler",
        ),
        (
            NewJob {
                handler: "",
                ..job(Priority::Normal, T0)
            },
            "handler",
        ),
        (
            NewJob {
                max_attempts: 0,
                ..job(Priority::Normal, T0)
            },
            "max_attempts",
        ),
        (
            NewJob {
                max_attempts: 101,
                ..job(Priority::Normal, T0)
            },
            "max_attempts",
        ),
        (
            NewJob {
                timeout_ms: 0,
                ..job(Priority::Normal, T0)
            },
            "timeout_ms",
        ),
        (keyed(""), "idempotency_key"),
        (keyed("has space"), "idempotency_key"),
        (keyed("é"), "idempotency_key"),
        (keyed(&long_key), "idempotency_key"),
    ];
    for (bad, field) in &cases {
        let e = s.enqueue_job(&t, bad, T0).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { field: f, .. } if f == field),
            "{field}: {e:?}"
        );
        // A bad job fails its whole batch.
        let e = s
            .enqueue_jobs(&t, &[job(Priority::Normal, T0), bad.clone()], T0)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { field: f, .. } if f == field),
            "{field}: {e:?}"
        );
    }
    assert!(s
        .list_jobs(
            &t,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            }
        )
        .await
        .unwrap()
        .is_empty());
    let exact = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_JOB_PAYLOAD_BYTES - 8));
    assert_eq!(exact.len(), MAX_JOB_PAYLOAD_BYTES);
    s.enqueue_job(
        &t,
        &NewJob {
            payload: &exact,
            ..job(Priority::Normal, T0)
        },
        T0,
    )
    .await
    .unwrap();
    assert!(s
        .enqueue_job(&t, &keyed(&"k".repeat(200)), T0)
        .await
        .is_ok());

    for worker in ["", "has space", &"w".repeat(201)] {
        let e = s
            .claim_jobs(Priority::Normal, worker, 1, T0, LEASE)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Invalid {
                    field: "worker_id",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let j = s
        .claim_jobs(Priority::Normal, "w", 1, T0, LEASE)
        .await
        .unwrap()
        .remove(0);
    let huge = AttemptOutcome::Succeeded {
        result: Some("x".repeat(65_537)),
    };
    let e = s
        .finish_jobs("w", &[finish(&j, huge)], T0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "result",
                ..
            }
        ),
        "{e:?}"
    );
    // A long error is cut to 2 KiB on a character boundary.
    let long = AttemptOutcome::Failed {
        error: "é".repeat(3_000),
    };
    assert_eq!(
        s.finish_jobs("w", &[finish(&j, long)], T0).await.unwrap(),
        [true]
    );
    let stored = get(s, &t, &j.id).await.last_error.unwrap();
    assert!(stored.len() <= 2_048 && stored.len() > 2_040 && stored.chars().all(|c| c == 'é'));

    let cron = Schedule::parse("@daily").unwrap();
    for (name, handler, payload, field) in [
        ("Nightly", "jobs.noop", "{}", "name"),
        ("", "jobs.noop", "{}", "name"),
        ("nightly", "NOOP", "{}", "handler"),
        ("nightly", "jobs.noop", "[]", "payload"),
    ] {
        let e = s
            .put_job_schedule(&t, name, &cron, handler, payload, Priority::Low, true, T0)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { field: f, .. } if *f == field),
            "{field}: {e:?}"
        );
    }
}

async fn a_waiter_is_woken_by_an_enqueue(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    // On PostgreSQL the wake-up travels through NOTIFY to another handle's listener.
    let waiter_store = match s.backend() {
        Backend::Postgres => f.reopen().await,
        Backend::Sqlite => s.clone(),
    };
    let mut wakeups = waiter_store.job_wakeups();
    let deadline = Instant::now() + Duration::from_secs(20);
    if s.backend() == Backend::Postgres {
        while !wakeups.listening() {
            assert!(Instant::now() < deadline, "listener never connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Absorb the wake-up the listener sends when it connects.
    wakeups.wait(Priority::High, Duration::ZERO).await;
    assert!(
        !wakeups.wait(Priority::High, Duration::from_millis(1)).await,
        "nothing happened yet"
    );

    // A waiter that starts waiting before the enqueue is woken.
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let woken = wakeups.wait(Priority::High, Duration::from_secs(30)).await;
        (woken, started.elapsed(), wakeups)
    });
    s.enqueue_job(&t, &job(Priority::High, T0), T0)
        .await
        .unwrap();
    let (woken, took, mut wakeups) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("woken within the deadline")
        .unwrap();
    assert!(
        woken && took < Duration::from_secs(20),
        "woken {woken} after {took:?}"
    );

    // A wake-up between a claim and the next wait is kept for that wait.
    s.enqueue_job(&t, &job(Priority::High, T0), T0)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if wakeups
            .wait(Priority::High, Duration::from_millis(50))
            .await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second wake-up never arrived"
        );
    }
    // Another queue's enqueue, and a delayed job, do not wake this one.
    s.enqueue_job(&t, &job(Priority::Bulk, T0), T0)
        .await
        .unwrap();
    let far = s
        .enqueue_job(&t, &job(Priority::High, i64::MAX / 2), T0)
        .await
        .unwrap();
    assert!(far.created);
    assert!(
        !wakeups
            .wait(Priority::High, Duration::from_millis(200))
            .await,
        "no job due in high"
    );
    if s.backend() == Backend::Postgres {
        waiter_store.close().await;
    }
}

async fn retention_deletes_finished_jobs_and_old_history_in_batches(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    let batch: Vec<NewJob<'static>> = (0..5).map(|_| job(Priority::Normal, T0)).collect();
    s.enqueue_jobs(&t, &batch, T0).await.unwrap();
    let claimed = s
        .claim_jobs(Priority::Normal, "w", 4, T0, LEASE)
        .await
        .unwrap();
    for (i, j) in claimed.iter().enumerate() {
        s.finish_jobs(
            "w",
            &[finish(j, AttemptOutcome::Succeeded { result: None })],
            T0 + i as i64,
        )
        .await
        .unwrap();
    }
    // Finished at T0..T0+3; one still pending.
    assert_eq!(s.delete_finished_jobs_before(T0 + 3, 2).await.unwrap(), 2);
    assert_eq!(s.delete_finished_jobs_before(T0 + 3, 2).await.unwrap(), 1);
    assert_eq!(s.delete_finished_jobs_before(T0 + 3, 2).await.unwrap(), 0);
    let left = s
        .list_jobs(
            &t,
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    let mut statuses: Vec<JobStatus> = left.iter().map(|j| j.status).collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, [JobStatus::Pending, JobStatus::Success]);

    // Interactions and calculations older than the cut, per tenant, in batches.
    let other = tenant(s, "other").await;
    for (who, base) in [(&t, 0), (&other, 100)] {
        let events: Vec<store::NewInteraction> = (0..5)
            .map(|i| store::NewInteraction {
                event_id: format!("e{}", base + i),
                user_id: "u1".into(),
                event_time_ms: T0 + i,
                sentiment: 0.5,
                rating: None,
                text: None,
                item_id: None,
                verified_purchase: None,
                helpful_votes: None,
                channel: None,
            })
            .collect();
        s.insert_interactions(who, &events, T0).await.unwrap();
    }
    assert_eq!(s.purge_interactions_before(&t, T0 + 3, 2).await.unwrap(), 2);
    assert_eq!(s.purge_interactions_before(&t, T0 + 3, 2).await.unwrap(), 1);
    assert_eq!(s.purge_interactions_before(&t, T0 + 3, 2).await.unwrap(), 0);
    assert_eq!(s.purge_interactions_before(&t, T0 + 3, 0).await.unwrap(), 0);
    let windows = s
        .interaction_windows(&t, &["u1".to_owned()], 100)
        .await
        .unwrap();
    let times: Vec<i64> = windows[0].events.iter().map(|e| e.event_time_ms).collect();
    assert_eq!(times, [T0 + 3, T0 + 4]);
    let theirs = s
        .interaction_windows(&other, &["u1".to_owned()], 100)
        .await
        .unwrap();
    assert_eq!(theirs[0].total, 5, "another tenant's history is kept");
    assert_eq!(
        s.purge_weber_calculations_before(&t, T0 + 3, 10)
            .await
            .unwrap(),
        0
    );
}

async fn canary_receipts_are_recorded_once(f: &TestStore) {
    let s = &f.store;
    let (a, b) = (tenant(s, "a").await, tenant(s, "b").await);
    assert!(s.record_job_receipt(&a, "job_1", "w1", T0).await.unwrap());
    assert!(!s
        .record_job_receipt(&a, "job_1", "w2", T0 + 1)
        .await
        .unwrap());
    assert!(s
        .record_job_receipt(&a, "job_2", "w2", T0 + 2)
        .await
        .unwrap());
    assert!(s.record_job_receipt(&b, "job_1", "w1", T0).await.unwrap());
    let receipts = s.job_receipts(&a).await.unwrap();
    let got: Vec<(&str, &str, i64, u64)> = receipts
        .iter()
        .map(|r| {
            (
                r.job_id.as_str(),
                r.worker_id.as_str(),
                r.at_ms,
                r.deliveries,
            )
        })
        .collect();
    assert_eq!(got, [("job_1", "w1", T0, 2), ("job_2", "w2", T0 + 2, 1)]);
    assert_eq!(s.count_job_receipts(&a).await.unwrap(), 2);
    assert_eq!(s.count_job_receipts(&b).await.unwrap(), 1);
}

async fn store_calls_are_timed_under_the_jobs_tables(f: &TestStore) {
    let s = &f.store;
    let t = tenant(s, "acme").await;
    s.enqueue_job(&t, &job(Priority::Normal, T0), T0)
        .await
        .unwrap();
    s.claim_jobs(Priority::Normal, "w", 1, T0, LEASE)
        .await
        .unwrap();
    s.job_schedules(&t).await.unwrap();
    s.count_job_receipts(&t).await.unwrap();
    let stats = s.stats();
    let has = |op: &str, table: &str| {
        stats
            .queries
            .iter()
            .any(|q| q.operation == op && q.table == table && q.durations.count >= 1)
    };
    assert!(has("insert", "jobs"));
    assert!(has("update", "jobs"));
    assert!(has("select", "job_schedules"));
    assert!(has("select", "job_receipts"));
}

// ---- property test: random operation sequences keep the queue's invariants ----------------

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        priority: u8,
        delay: i64,
        max_attempts: u32,
    },
    Claim {
        worker: u8,
        limit: u32,
    },
    Finish {
        worker: u8,
        pick: usize,
        outcome: u8,
        stale: bool,
    },
    Heartbeat {
        worker: u8,
    },
    Release {
        worker: u8,
    },
    Cancel {
        pick: usize,
    },
    Retry {
        pick: usize,
    },
    Advance {
        ms: i64,
    },
    Rescue,
    Expire,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..5, 0i64..3, 1u32..4).prop_map(|(priority, delay, max_attempts)| Op::Enqueue { priority, delay, max_attempts }),
        3 => (0u8..2, 1u32..4).prop_map(|(worker, limit)| Op::Claim { worker, limit }),
        3 => (0u8..2, 0usize..64, 0u8..5, proptest::bool::weighted(0.2))
            .prop_map(|(worker, pick, outcome, stale)| Op::Finish { worker, pick, outcome, stale }),
        1 => (0u8..2).prop_map(|worker| Op::Heartbeat { worker }),
        1 => (0u8..2).prop_map(|worker| Op::Release { worker }),
        1 => (0usize..64).prop_map(|pick| Op::Cancel { pick }),
        1 => (0usize..64).prop_map(|pick| Op::Retry { pick }),
        2 => (1i64..20).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Rescue),
        1 => Just(Op::Expire),
    ]
}

#[test]
fn random_operations_keep_the_invariants_on_sqlite() {
    random_operations_keep_the_invariants(Backend::Sqlite);
}

#[test]
fn random_operations_keep_the_invariants_on_postgres() {
    random_operations_keep_the_invariants(Backend::Postgres);
}

fn random_operations_keep_the_invariants(backend: Backend) {
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
    proptest!(config, |(ops in proptest::collection::vec(arb_op(), 1..60))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = runtime.block_on(tenant(&s, &format!("tenant-{n}")));
        let mut now = T0;
        // What each worker holds: (id, attempt).
        let mut held: [Vec<(String, u32)>; 2] = [Vec::new(), Vec::new()];
        let mut before: HashMap<String, store::JobRecord> = HashMap::new();
        for op in &ops {
            let mut retried: Option<String> = None;
            match op.clone() {
                Op::Enqueue { priority, delay, max_attempts } => {
                    let new = NewJob {
                        max_attempts,
                        expires_at_ms: (delay == 2).then_some(now + 5),
                        ..job(Priority::from_rank(priority).unwrap(), now + delay * 3)
                    };
                    runtime.block_on(s.enqueue_job(&t, &new, now)).unwrap();
                }
                Op::Claim { worker, limit } => {
                    for p in Priority::ALL {
                        let got = runtime.block_on(s.claim_jobs(p, &format!("w{worker}"), limit, now, 10)).unwrap();
                        held[worker as usize].extend(got.iter().map(lease));
                    }
                }
                Op::Finish { worker, pick, outcome, stale } => {
                    let list = &mut held[worker as usize];
                    if !list.is_empty() {
                        let (id, attempt) = list.remove(pick % list.len());
                        let outcome = match outcome {
                            0 => AttemptOutcome::Succeeded { result: None },
                            1 => AttemptOutcome::RetryAt { at_ms: now + 4, error: "e".into() },
                            2 => AttemptOutcome::Dead { error: "d".into() },
                            3 => AttemptOutcome::Failed { error: "f".into() },
                            _ => AttemptOutcome::Cancelled,
                        };
                        let attempt = if stale { attempt + 1 } else { attempt };
                        runtime.block_on(s.finish_jobs(&format!("w{worker}"), &[Finish { job_id: &id, attempt, outcome }], now)).unwrap();
                    }
                }
                Op::Heartbeat { worker } => {
                    runtime.block_on(s.heartbeat_jobs(&format!("w{worker}"), &held[worker as usize], now, 10)).unwrap();
                }
                Op::Release { worker } => {
                    let list = std::mem::take(&mut held[worker as usize]);
                    runtime.block_on(s.release_jobs(&format!("w{worker}"), &list)).unwrap();
                }
                Op::Cancel { pick } | Op::Retry { pick } => {
                    let all = runtime.block_on(s.list_jobs(&t, &JobFilter { limit: 1000, ..JobFilter::default() })).unwrap();
                    if !all.is_empty() {
                        let id = all[pick % all.len()].id.clone();
                        let result = if matches!(op, Op::Cancel { .. }) {
                            runtime.block_on(s.cancel_job(&t, &id, now))
                        } else {
                            retried = Some(id.clone());
                            runtime.block_on(s.retry_job(&t, &id, now))
                        };
                        if let Err(e) = result {
                            prop_assert!(matches!(e, StoreError::JobState { .. }), "{:?}", e);
                        }
                    }
                }
                Op::Advance { ms } => now += ms,
                Op::Rescue => { runtime.block_on(s.rescue_lost_jobs(now)).unwrap(); }
                Op::Expire => { runtime.block_on(s.expire_jobs(now)).unwrap(); }
            }
            let all = runtime.block_on(s.list_jobs(&t, &JobFilter { limit: 1000, ..JobFilter::default() })).unwrap();
            for j in &all {
                prop_assert!(j.attempts <= j.max_attempts, "{:?}", j);
                prop_assert_eq!(j.status == JobStatus::Running, j.lease_until_ms.is_some(), "lease iff running: {:?}", j);
                prop_assert_eq!(j.status.is_final(), j.finished_at_ms.is_some(), "finished iff final: {:?}", j);
                if j.cancel_requested {
                    // Asked while running: it runs to an end or stops, never waits for another run.
                    prop_assert!(!j.status.is_claimable(), "{:?}", j);
                }
                if let Some(old) = before.get(&j.id) {
                    if old.status.is_final() && j.status != old.status {
                        prop_assert_eq!(retried.as_deref(), Some(j.id.as_str()), "a final status changed other than by retry: {:?} -> {:?}", old, j);
                        prop_assert_eq!(old.status.apply(JobEvent::Retry), Ok(j.status));
                    }
                }
            }
            before = all.into_iter().map(|j| (j.id.clone(), j)).collect();
        }
    });
    runtime.block_on(fixture.cleanup());
}

/// The backend of the newest `LISTEN` connection on `schema`'s channel.
async fn listener_pid(admin: &mut sqlx::AnyConnection, schema: &str) -> Option<i64> {
    use sqlx::Row;
    let sql = format!(
        "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity
         WHERE query = 'LISTEN \"{}\"' ORDER BY backend_start DESC",
        store::jobs_channel(Some(schema))
    );
    sqlx::query(&sql)
        .fetch_optional(admin)
        .await
        .unwrap()
        .map(|r| r.try_get::<i64, _>(0).unwrap())
}

/// The PostgreSQL listener survives losing its connection: it reconnects, and wake-ups arrive
/// again; meanwhile a waiter returns at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects_after_its_connection_is_killed() {
    use sqlx::{Connection, Row};
    let fixture = TestStore::new(Backend::Postgres).await;
    let s = fixture.store.clone();
    let t = tenant(&s, "acme").await;
    let waiter_store = fixture.reopen().await;
    let mut wakeups = waiter_store.job_wakeups();
    let schema = fixture.options.schema.clone().expect("a test schema");
    let mut admin = sqlx::AnyConnection::connect(&store::testing::postgres_url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if wakeups.listening() {
            if let Some(pid) = listener_pid(&mut admin, &schema).await {
                break pid;
            }
        }
        assert!(Instant::now() < deadline, "listener never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed: bool = sqlx::query("SELECT pg_terminate_backend(CAST($1 AS INTEGER))")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert!(killed);
    // Until it is back, waiting ends at the timeout (or at the reconnection's wake-up).
    wakeups
        .wait(Priority::Normal, Duration::from_millis(20))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pid = listener_pid(&mut admin, &schema).await;
        if wakeups.listening() && pid.is_some_and(|p| p != first) {
            break;
        }
        assert!(Instant::now() < deadline, "listener never reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Absorb the reconnection's wake-up, then an enqueue elsewhere wakes the waiter again.
    wakeups.wait(Priority::Normal, Duration::ZERO).await;
    s.enqueue_job(&t, &job(Priority::Normal, T0), T0)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wakeups
        .wait(Priority::Normal, Duration::from_millis(100))
        .await
    {
        assert!(
            Instant::now() < deadline,
            "no wake-up after the reconnection"
        );
    }
    admin.close().await.unwrap();
    waiter_store.close().await;
    fixture.cleanup().await;
}
