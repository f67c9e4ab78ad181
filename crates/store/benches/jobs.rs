//! Job queue storage speed: enqueue (one job per call, and 100 per call), and the whole cycle a
//! worker makes of no-op jobs: enqueue a batch, claim it, record it finished (one queue, and
//! four queues at once). Criterion reports
//! throughput in jobs per second (`thrpt`, elements/s); after the groups, the single enqueue's
//! latency percentiles over 2,000 calls are printed per backend.
//!
//! Runs on a temporary SQLite file, and on PostgreSQL (a private schema of the test database,
//! `SIGNALBOX_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) when that
//! server answers; otherwise PostgreSQL is skipped with a note.
//!
//! ```text
//! cargo bench -p store --bench jobs
//! cargo bench -p store --bench jobs -- cycle      # only the cycle
//! ```

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jobs::Priority;
use store::testing::TestStore;
use store::{AttemptOutcome, Backend, Finish, NewJob, Store, Tier};

/// 2027-01-15T08:00:00Z. Every job is due at once.
const T0: i64 = 1_800_000_000_000;
const BATCH: usize = 100;

fn noop(priority: Priority) -> NewJob<'static> {
    NewJob {
        handler: "jobs.noop",
        payload: "{}",
        priority,
        run_at_ms: T0,
        expires_at_ms: None,
        max_attempts: 4,
        timeout_ms: 60_000,
        idempotency_key: None,
    }
}

/// The backends to measure: SQLite always, PostgreSQL when its server answers.
fn backends(runtime: &tokio::runtime::Runtime) -> Vec<Backend> {
    let reachable = runtime.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = store::testing::postgres_url();
        matches!(
            tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(&url)).await,
            Ok(Ok(_))
        )
    });
    if reachable {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        eprintln!("PostgreSQL unreachable: measuring SQLite only");
        vec![Backend::Sqlite]
    }
}

struct Bench {
    fixture: TestStore,
    tenant: String,
}

impl Bench {
    fn store(&self) -> &Store {
        &self.fixture.store
    }
}

fn open(runtime: &tokio::runtime::Runtime, backend: Backend) -> Bench {
    runtime.block_on(async {
        let fixture = TestStore::new(backend).await;
        let tenant = fixture
            .store
            .create_tenant("bench", Tier::Starter)
            .await
            .expect("bench tenant")
            .id;
        Bench { fixture, tenant }
    })
}

/// Enqueue, claim and finish one batch of no-op jobs (all of `batch`'s queue); returns how many
/// finished.
async fn cycle(store: &Store, tenant: &str, batch: &[NewJob<'_>]) -> usize {
    store
        .enqueue_jobs(tenant, batch, T0)
        .await
        .expect("enqueue");
    let claimed = store
        .claim_jobs(
            batch[0].priority,
            "bench-worker",
            batch.len() as u32,
            T0,
            30_000,
        )
        .await
        .expect("claim");
    let done: Vec<Finish<'_>> = claimed
        .iter()
        .map(|j| Finish {
            job_id: &j.id,
            attempt: j.attempts,
            outcome: AttemptOutcome::Succeeded { result: None },
        })
        .collect();
    let applied = store
        .finish_jobs("bench-worker", &done, T0)
        .await
        .expect("finish");
    applied.iter().filter(|a| **a).count()
}

fn bench_jobs(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime for the bench");
    let single = [noop(Priority::Bulk)];
    let batch: Vec<NewJob<'static>> = (0..BATCH).map(|_| noop(Priority::Bulk)).collect();
    let cycle_batch: Vec<NewJob<'static>> = (0..BATCH).map(|_| noop(Priority::Normal)).collect();
    for backend in backends(&runtime) {
        let bench = open(&runtime, backend);
        let (store, tenant) = (bench.store(), bench.tenant.as_str());

        let mut group = c.benchmark_group("enqueue");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("single", backend.as_str()), |b| {
            b.iter(|| {
                runtime
                    .block_on(store.enqueue_jobs(tenant, &single, T0))
                    .expect("enqueue")
            })
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("batch_100", backend.as_str()), |b| {
            b.iter(|| {
                runtime
                    .block_on(store.enqueue_jobs(tenant, &batch, T0))
                    .expect("enqueue")
            })
        });
        group.finish();

        let mut group = c.benchmark_group("cycle");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(
            BenchmarkId::new("enqueue_claim_finish_100", backend.as_str()),
            |b| {
                b.iter(|| {
                    let done = runtime.block_on(cycle(store, tenant, &cycle_batch));
                    assert_eq!(done, BATCH, "every claimed job finished");
                })
            },
        );
        // Four cycles at once, one per queue, as a worker process's queues run side by side:
        // their commits overlap (PostgreSQL flushes concurrent commits together).
        let queues = [
            Priority::Critical,
            Priority::High,
            Priority::Normal,
            Priority::Low,
        ];
        let batches: Vec<Vec<NewJob<'static>>> = queues
            .iter()
            .map(|p| (0..BATCH).map(|_| noop(*p)).collect())
            .collect();
        group.throughput(Throughput::Elements((BATCH * queues.len()) as u64));
        group.bench_function(
            BenchmarkId::new("four_queues_at_once_100_each", backend.as_str()),
            |b| {
                b.iter(|| {
                    let done = runtime.block_on(async {
                        let runs = batches.iter().map(|batch| {
                            let (store, tenant) = (store.clone(), tenant.to_owned());
                            let batch = batch.clone();
                            tokio::spawn(async move { cycle(&store, &tenant, &batch).await })
                        });
                        let mut done = 0;
                        for run in runs.collect::<Vec<_>>() {
                            done += run.await.expect("cycle task");
                        }
                        done
                    });
                    assert_eq!(done, BATCH * queues.len(), "every claimed job finished");
                })
            },
        );
        group.finish();

        // Latency of one enqueue, as an API call makes it.
        let mut took: Vec<Duration> = (0..2_000)
            .map(|_| {
                let started = Instant::now();
                runtime
                    .block_on(store.enqueue_job(tenant, &single[0], T0))
                    .expect("enqueue");
                started.elapsed()
            })
            .collect();
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
        println!(
            "enqueue_job latency on {}: p50 {:?}, p99 {:?}, max {:?}",
            backend.as_str(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        runtime.block_on(bench.fixture.cleanup());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_jobs
}
criterion_main!(benches);
