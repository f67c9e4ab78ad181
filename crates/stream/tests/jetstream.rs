//! The JetStream log against a real NATS server: `SIGNALBOX_TEST_NATS_URL`, or
//! `nats://127.0.0.1:4222`. Each test uses its own stream (`sbxtest_<uuid>`) and deletes it.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use stream::{Consumer, Delivery, EventLog, StreamError, DEFAULT_MAX_PAYLOAD_BYTES};

fn nats_url() -> String {
    std::env::var("SIGNALBOX_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Serialises the tests' stream lifecycles. nats-server 2.9 removes the account's stream
/// directory when its last stream is deleted, and a stream created at that moment fails with
/// "error creating store for stream" (seen here with parallel tests).
static LIFECYCLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `body` with a fresh stream name, then deletes the stream whether the body passed or
/// panicked. The timeout only keeps a broken test from hanging the suite.
async fn with_stream<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _serial = LIFECYCLE.lock().await;
    let name = format!("sbxtest_{}", uuid::Uuid::new_v4().simple());
    let run = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(60),
        body(name.clone()),
    ));
    let outcome = run.await;
    let client = async_nats::connect(nats_url())
        .await
        .expect("connect for cleanup");
    let deleted = async_nats::jetstream::new(client)
        .delete_stream(&name)
        .await;
    match outcome {
        Err(join) => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(_elapsed)) => panic!("test timed out"),
        Ok(Ok(())) => {
            deleted.expect("delete the test stream");
        }
    }
}

async fn connect(stream: &str) -> EventLog {
    EventLog::connect_jetstream(&nats_url(), stream)
        .await
        .expect("connect to NATS (is nats-server -js running?)")
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("{{\"event\":{i}}}"))
}

async fn take(consumer: &mut Consumer, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(
            consumer
                .next_batch(n - out.len())
                .await
                .expect("next_batch"),
        );
    }
    out
}

fn offsets(batch: &[Delivery]) -> Vec<u64> {
    batch.iter().map(|d| d.offset).collect()
}

#[tokio::test]
async fn round_trip() {
    with_stream(|name| async move {
        let log = connect(&name).await;
        assert_eq!(log.kind(), "jetstream");
        assert_eq!(log.last_offset().await.expect("last"), 0);
        assert_eq!(log.append(&[payload(1)]).await.expect("append"), 1);
        let batch: Vec<Bytes> = (2..=6).map(payload).collect();
        assert_eq!(log.append(&batch).await.expect("append batch"), 6);
        assert_eq!(log.append(&[]).await.expect("empty append"), 6);
        assert_eq!(log.last_offset().await.expect("last"), 6);

        let mut c = log.consumer("worker").await.expect("consumer");
        assert_eq!(c.lag().await.expect("lag"), 6);
        let got = take(&mut c, 6).await;
        assert_eq!(offsets(&got), [1, 2, 3, 4, 5, 6]);
        assert!(got.iter().all(|d| d.payload == payload(d.offset)));
        c.ack(6).await.expect("ack");
        assert_eq!(c.lag().await.expect("lag"), 0);
        assert!(matches!(
            c.ack(7).await,
            Err(StreamError::AckBeyondDelivered {
                offset: 7,
                delivered: 6
            })
        ));
    })
    .await;
}

#[tokio::test]
async fn cumulative_ack_and_reconnect_redeliver_only_unacked() {
    with_stream(|name| async move {
        {
            let log = connect(&name).await;
            let batch: Vec<Bytes> = (1..=10).map(payload).collect();
            assert_eq!(log.append(&batch).await.expect("append"), 10);
            let mut c = log.consumer("worker").await.expect("consumer");
            assert_eq!(
                offsets(&take(&mut c, 10).await),
                (1..=10).collect::<Vec<_>>()
            );
            // One ack for 1..=6, from the middle of what was delivered.
            c.ack(6).await.expect("ack");
            assert_eq!(c.lag().await.expect("lag"), 4);
        }
        // A restart: new connection, same consumer name. 7..=10 come back first and at once,
        // not after the server's ack timeout.
        for session in 2..=3 {
            let log = connect(&name).await;
            let mut c = log.consumer("worker").await.expect("consumer again");
            assert_eq!(c.lag().await.expect("lag"), 4, "session {session}");
            let again = take(&mut c, 4).await;
            assert_eq!(offsets(&again), [7, 8, 9, 10], "session {session}");
            assert!(again.iter().all(|d| d.payload == payload(d.offset)));
            // Session 2 stops without acking: session 3 must again start at 7, not at 1.
            if session == 3 {
                c.ack(10).await.expect("ack");
            }
        }

        let log = connect(&name).await;
        let mut c = log.consumer("worker").await.expect("consumer third time");
        assert_eq!(c.lag().await.expect("lag"), 0);
        assert_eq!(log.append(&[payload(11)]).await.expect("append"), 11);
        assert_eq!(
            offsets(&take(&mut c, 1).await),
            [11],
            "nothing acked comes back"
        );

        let mut other = log.consumer("other").await.expect("new name");
        assert_eq!(
            offsets(&take(&mut other, 1).await),
            [1],
            "a new name starts at the beginning"
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_payload_is_refused() {
    with_stream(|name| async move {
        let log = connect(&name).await;
        let big = Bytes::from(vec![0u8; DEFAULT_MAX_PAYLOAD_BYTES + 1]);
        match log.append(&[payload(1), big]).await {
            Err(StreamError::PayloadTooLarge { index, len, max }) => {
                assert_eq!(index, 1);
                assert_eq!(len, DEFAULT_MAX_PAYLOAD_BYTES + 1);
                assert!(max <= DEFAULT_MAX_PAYLOAD_BYTES);
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert_eq!(
            log.last_offset().await.expect("last"),
            0,
            "nothing was published"
        );
    })
    .await;
}

#[tokio::test]
async fn next_batch_is_cancel_safe() {
    with_stream(|name| async move {
        let log = connect(&name).await;
        let mut c = log.consumer("worker").await.expect("consumer");
        tokio::select! {
            biased;
            r = c.next_batch(10) => panic!("nothing was appended, yet got {r:?}"),
            () = std::future::ready(()) => {}
        }
        log.append(&[payload(1), payload(2)]).await.expect("append");
        let got = take(&mut c, 2).await;
        assert_eq!(offsets(&got), [1, 2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_unique_offsets_and_all_are_delivered() {
    with_stream(|name| async move {
        let log = connect(&name).await;
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..50u64 {
                    let batch = [payload(t * 1000 + 2 * i), payload(t * 1000 + 2 * i + 1)];
                    let last = log.append(&batch).await.expect("append");
                    offsets.push(last);
                }
                offsets
            }));
        }
        let mut lasts = HashSet::new();
        for t in tasks {
            lasts.extend(t.await.expect("task"));
        }
        assert_eq!(lasts.len(), 400);
        let mut c = log.consumer("worker").await.expect("consumer");
        let got = take(&mut c, 800).await;
        assert_eq!(offsets(&got), (1..=800).collect::<Vec<_>>());
        // Each call's two payloads are adjacent (one process publishes them as one run).
        for pair in got.chunks(2) {
            assert!(lasts.contains(&pair[1].offset), "{:?}", offsets(pair));
        }
    })
    .await;
}
