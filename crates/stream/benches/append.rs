//! File-log append throughput: 300-byte payloads, one per `append` call, from 1 and from 16
//! concurrent tasks. With one appender every call waits for its own fdatasync; with 16 the
//! writer's group commit shares each fsync among the calls that queued during the previous one.
//!
//! Runs on a temporary directory (set `TMPDIR` to measure another disk).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stream::{EventLog, FileLogOptions};

fn append_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = rt
        .block_on(EventLog::open_file(dir.path(), FileLogOptions::default()))
        .expect("open log");
    let payload = Bytes::from(vec![b'x'; 300]);

    let mut group = c.benchmark_group("file_append_300B");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for appenders in [1u64, 16] {
        group.bench_function(BenchmarkId::new("appenders", appenders), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|t| {
                            // Split `iters` appends exactly across the tasks.
                            let n = iters / appenders + u64::from(t < iters % appenders);
                            let log = log.clone();
                            let p = payload.clone();
                            tokio::spawn(async move {
                                for _ in 0..n {
                                    log.append(std::slice::from_ref(&p)).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("appender task");
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append_throughput);
criterion_main!(benches);
