//! The file log against real files in a private temporary directory per test.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use stream::{Consumer, Delivery, EventLog, FileLogOptions, StreamError};

const HEADER_LEN: u64 = 16;
const RECORD_HEADER_LEN: u64 = 16;

fn small_segments(segment_bytes: u64) -> FileLogOptions {
    FileLogOptions {
        segment_bytes,
        ..FileLogOptions::default()
    }
}

async fn open(dir: &Path) -> EventLog {
    EventLog::open_file(dir, FileLogOptions::default())
        .await
        .expect("open log")
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("{{\"event\":{i}}}"))
}

/// Calls `next_batch` until `n` messages have arrived.
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

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.log")
}

#[tokio::test]
async fn round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path()).await;
    assert_eq!(log.kind(), "file");
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
    for d in &got {
        assert_eq!(d.payload, payload(d.offset));
    }
    c.ack(6).await.expect("ack");
    assert_eq!(c.lag().await.expect("lag"), 0);
    c.ack(3)
        .await
        .expect("acking below the last ack is a no-op");
    assert_eq!(c.lag().await.expect("lag"), 0);
}

#[tokio::test]
async fn offsets_are_consecutive_across_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let log = open(tmp.path()).await;
        let batch: Vec<Bytes> = (1..=10).map(payload).collect();
        assert_eq!(log.append(&batch).await.expect("append"), 10);
    }
    let log = open(tmp.path()).await;
    assert_eq!(log.last_offset().await.expect("last"), 10);
    let batch: Vec<Bytes> = (11..=15).map(payload).collect();
    assert_eq!(log.append(&batch).await.expect("append"), 15);
    let mut c = log.consumer("w").await.expect("consumer");
    let got = take(&mut c, 15).await;
    assert_eq!(offsets(&got), (1..=15).collect::<Vec<_>>());
    assert!(got.iter().all(|d| d.payload == payload(d.offset)));
}

#[tokio::test]
async fn consumer_resumes_after_its_ack_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let log = open(tmp.path()).await;
        let batch: Vec<Bytes> = (1..=10).map(payload).collect();
        log.append(&batch).await.expect("append");
        let mut c = log.consumer("worker").await.expect("consumer");
        assert_eq!(
            offsets(&take(&mut c, 10).await),
            (1..=10).collect::<Vec<_>>()
        );
        c.ack(4).await.expect("ack");
        // Crash-like: everything dropped with 5..=10 delivered but unacked.
    }
    let log = open(tmp.path()).await;
    let mut c = log.consumer("worker").await.expect("consumer again");
    assert_eq!(c.lag().await.expect("lag"), 6);
    let redelivered = take(&mut c, 6).await;
    assert_eq!(offsets(&redelivered), [5, 6, 7, 8, 9, 10]);
    assert!(redelivered.iter().all(|d| d.payload == payload(d.offset)));

    let mut fresh = log.consumer("fresh").await.expect("new name");
    assert_eq!(
        offsets(&take(&mut fresh, 1).await),
        [1],
        "a new name starts at the beginning"
    );
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = Bytes::from(vec![b'x'; 100]);
    {
        let log = open(tmp.path()).await;
        for _ in 0..5 {
            log.append(std::slice::from_ref(&body))
                .await
                .expect("append");
        }
    }
    let seg = tmp.path().join(segment_name(1));
    let len = fs::metadata(&seg).expect("meta").len();
    assert_eq!(len, HEADER_LEN + 5 * (RECORD_HEADER_LEN + 100));
    // A crash mid-write: the fifth record is cut in half and followed by junk.
    let f = OpenOptions::new().write(true).open(&seg).expect("open seg");
    f.set_len(len - 50).expect("truncate");
    drop(f);
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open seg");
    f.write_all(&[0xAB; 37]).expect("garbage");
    drop(f);

    let log = open(tmp.path()).await;
    assert_eq!(log.last_offset().await.expect("last"), 4);
    assert_eq!(
        fs::metadata(&seg).expect("meta").len(),
        HEADER_LEN + 4 * (RECORD_HEADER_LEN + 100),
        "the torn tail is cut off at the last whole record"
    );
    assert_eq!(log.append(&[payload(5)]).await.expect("append"), 5);
    let mut c = log.consumer("w").await.expect("consumer");
    let got = take(&mut c, 5).await;
    assert_eq!(offsets(&got), [1, 2, 3, 4, 5]);
    assert_eq!(got[3].payload, body);
    assert_eq!(got[4].payload, payload(5));
    drop(c);
    drop(log);
    let log = open(tmp.path()).await;
    assert_eq!(
        log.last_offset().await.expect("last"),
        5,
        "the repair is stable"
    );
}

#[tokio::test]
async fn segment_created_but_never_written_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let log = open(tmp.path()).await;
        log.append(&[payload(1), payload(2)]).await.expect("append");
    }
    // A crash right after the writer created the next segment, before its header hit the disk.
    fs::write(tmp.path().join(segment_name(3)), b"").expect("empty segment");
    let log = open(tmp.path()).await;
    assert_eq!(log.last_offset().await.expect("last"), 2);
    assert_eq!(log.append(&[payload(3)]).await.expect("append"), 3);
    let mut c = log.consumer("w").await.expect("consumer");
    assert_eq!(offsets(&take(&mut c, 3).await), [1, 2, 3]);
}

#[tokio::test]
async fn damage_inside_a_sealed_segment_is_an_error_not_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = Bytes::from(vec![b'y'; 200]);
    {
        let log = EventLog::open_file(tmp.path(), small_segments(1024))
            .await
            .expect("open");
        for _ in 0..20 {
            log.append(std::slice::from_ref(&body))
                .await
                .expect("append");
        }
    }
    let segments = segment_files(tmp.path());
    assert!(
        segments.len() >= 3,
        "expected several segments, got {segments:?}"
    );
    // Flip one payload byte of the second record of the first (sealed) segment.
    let first = &segments[0];
    let mut bytes = fs::read(first).expect("read");
    let at = (HEADER_LEN + (RECORD_HEADER_LEN + 200) + RECORD_HEADER_LEN + 10) as usize;
    bytes[at] ^= 0x01;
    fs::write(first, &bytes).expect("write");

    let log = EventLog::open_file(tmp.path(), small_segments(1024))
        .await
        .expect("open scans only the last segment");
    let mut c = log.consumer("w").await.expect("consumer");
    let good = c.next_batch(100).await.expect("records before the damage");
    assert_eq!(offsets(&good), [1]);
    for _ in 0..2 {
        match c.next_batch(100).await {
            Err(StreamError::Corrupt { path, position, .. }) => {
                assert_eq!(&path, first);
                assert_eq!(position, HEADER_LEN + RECORD_HEADER_LEN + 200);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn foreign_files_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(segment_name(1));
    fs::write(&path, b"this is someone else's file, not a segment").expect("write");
    match EventLog::open_file(tmp.path(), FileLogOptions::default()).await {
        Err(e @ StreamError::ForeignFile { .. }) => {
            assert!(e.to_string().contains(&segment_name(1)), "{e}");
        }
        other => panic!("expected ForeignFile, got {other:?}"),
    }

    let mut header = b"SBXLOG".to_vec();
    header.extend_from_slice(&9u16.to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    fs::write(&path, &header).expect("write");
    match EventLog::open_file(tmp.path(), FileLogOptions::default()).await {
        Err(e @ StreamError::ForeignFile { .. }) => {
            assert!(e.to_string().contains("version 9"), "{e}");
        }
        other => panic!("expected ForeignFile, got {other:?}"),
    }
}

#[tokio::test]
async fn second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = open(tmp.path()).await;
    match EventLog::open_file(tmp.path(), FileLogOptions::default()).await {
        Err(e @ StreamError::Locked { .. }) => {
            assert!(
                e.to_string()
                    .contains(&format!("pid {}", std::process::id())),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(tmp.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_deliver_every_payload_exactly_once_in_order() {
    const TASKS: u64 = 16;
    const EACH: u64 = 500;
    const TOTAL: u64 = TASKS * EACH;
    let tmp = tempfile::tempdir().expect("tempdir");
    // Small segments so the consumer crosses segment rolls and retention deletes behind it
    // while appends are still running.
    let log = EventLog::open_file(tmp.path(), small_segments(64 * 1024))
        .await
        .expect("open");
    let mut consumer = log.consumer("w").await.expect("consumer");
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while (seen.len() as u64) < TOTAL {
            let batch = consumer.next_batch(1000).await.expect("next_batch");
            let last = batch.last().map(|d| d.offset).expect("non-empty batch");
            seen.extend(batch);
            consumer.ack(last).await.expect("ack");
        }
        seen
    });
    let mut appenders = Vec::new();
    for t in 0..TASKS {
        let log = log.clone();
        appenders.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let p = Bytes::from(format!("{t}:{i}"));
                let offset = log.append(std::slice::from_ref(&p)).await.expect("append");
                got.push((offset, p));
            }
            got
        }));
    }
    let mut appended = Vec::new();
    for a in appenders {
        let got = a.await.expect("appender");
        // One task's appends are sequential, so its offsets increase.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        appended.extend(got);
    }
    let seen = reader.await.expect("reader");

    let unique: HashSet<u64> = appended.iter().map(|(o, _)| *o).collect();
    assert_eq!(unique.len() as u64, TOTAL, "append offsets are unique");
    assert_eq!(offsets(&seen), (1..=TOTAL).collect::<Vec<_>>());
    appended.sort_by_key(|(o, _)| *o);
    for ((offset, p), d) in appended.iter().zip(&seen) {
        assert_eq!(*offset, d.offset);
        assert_eq!(p, &d.payload);
    }
    assert!(
        segment_files(tmp.path()).len() <= 2,
        "acked segments were deleted: {:?}",
        segment_files(tmp.path())
    );
}

#[tokio::test]
async fn segments_roll_and_fully_acked_ones_are_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = Bytes::from(vec![b'z'; 100]);
    // 16-byte header + 8 records of 116 bytes = 944 <= 1024: eight records per segment.
    let per_segment = 8;
    let log = EventLog::open_file(tmp.path(), small_segments(1024))
        .await
        .expect("open");
    let batch = vec![body.clone(); 40];
    assert_eq!(log.append(&batch).await.expect("append"), 40);
    let names: Vec<String> = segment_files(tmp.path())
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = (0..5).map(|k| segment_name(1 + k * per_segment)).collect();
    assert_eq!(names, expected);

    let mut a = log.consumer("a").await.expect("a");
    let mut b = log.consumer("b").await.expect("b");
    take(&mut a, 40).await;
    a.ack(40).await.expect("ack a");
    assert_eq!(
        segment_files(tmp.path()).len(),
        5,
        "b has acked nothing yet"
    );

    take(&mut b, 20).await;
    b.ack(20).await.expect("ack b");
    // Segments 1..=8 and 9..=16 are acked by both; 17..=24 is not (b is at 20).
    assert_eq!(
        segment_files(tmp.path()).first().expect("segment"),
        &tmp.path().join(segment_name(17))
    );

    drop((a, b, log));
    let log = EventLog::open_file(tmp.path(), small_segments(1024))
        .await
        .expect("reopen");
    let mut b = log.consumer("b").await.expect("b");
    assert_eq!(offsets(&b.next_batch(1).await.expect("b resumes")), [21]);
    let mut c = log.consumer("c").await.expect("c");
    assert_eq!(
        offsets(&c.next_batch(1).await.expect("c starts")),
        [17],
        "a new consumer starts at the oldest segment kept"
    );
    drop(c);
    // Everyone acks everything: only the active segment survives, and appends continue.
    let mut a = log.consumer("a").await.expect("a");
    let mut c = log.consumer("c").await.expect("c");
    take(&mut b, 19).await;
    b.ack(40).await.expect("ack b");
    let last_c = take(&mut c, 24).await.last().map(|d| d.offset);
    assert_eq!(last_c, Some(40));
    c.ack(40).await.expect("ack c");
    assert_eq!(
        segment_files(tmp.path()),
        [tmp.path().join(segment_name(33))]
    );
    assert_eq!(
        log.append(std::slice::from_ref(&body))
            .await
            .expect("append"),
        41
    );
    assert_eq!(offsets(&a.next_batch(10).await.expect("a")), [41]);
}

#[tokio::test]
async fn retain_acked_keeps_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let options = FileLogOptions {
        segment_bytes: 1024,
        retain_acked: true,
        ..FileLogOptions::default()
    };
    let log = EventLog::open_file(tmp.path(), options)
        .await
        .expect("open");
    log.append(&vec![Bytes::from(vec![0u8; 100]); 40])
        .await
        .expect("append");
    let mut c = log.consumer("a").await.expect("consumer");
    take(&mut c, 40).await;
    c.ack(40).await.expect("ack");
    assert_eq!(segment_files(tmp.path()).len(), 5);
}

#[tokio::test]
async fn oversized_payload_is_refused_and_nothing_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let options = FileLogOptions {
        max_payload_bytes: 1000,
        ..FileLogOptions::default()
    };
    let log = EventLog::open_file(tmp.path(), options)
        .await
        .expect("open");
    let ok = Bytes::from(vec![1u8; 1000]);
    let big = Bytes::from(vec![2u8; 1001]);
    match log.append(&[ok.clone(), big]).await {
        Err(StreamError::PayloadTooLarge { index, len, max }) => {
            assert_eq!((index, len, max), (1, 1001, 1000));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(log.last_offset().await.expect("last"), 0);
    let seg = tmp.path().join(segment_name(1));
    assert_eq!(fs::metadata(&seg).expect("meta").len(), HEADER_LEN);
    assert_eq!(log.append(&[ok]).await.expect("a payload at the limit"), 1);
}

#[tokio::test]
async fn next_batch_is_cancel_safe() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path()).await;
    let mut c = log.consumer("w").await.expect("consumer");

    // Cancelled while waiting for a message.
    tokio::select! {
        biased;
        r = c.next_batch(10) => panic!("nothing was appended, yet got {r:?}"),
        () = std::future::ready(()) => {}
    }
    log.append(&[payload(1)]).await.expect("append");

    // Cancelled after one poll, which starts the read on the blocking pool (should that read
    // beat the poll, the batch is simply returned and counted).
    let mut got = Vec::new();
    tokio::select! {
        biased;
        r = c.next_batch(10) => got.extend(r.expect("next_batch")),
        () = std::future::ready(()) => {}
    }
    log.append(&[payload(2)]).await.expect("append");

    let missing = 2 - got.len();
    got.extend(take(&mut c, missing).await);
    assert_eq!(offsets(&got), [1, 2]);
    assert_eq!(got[0].payload, payload(1));
}

#[tokio::test]
async fn consumer_rules() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open(tmp.path()).await;
    for bad in ["", "a/b", "..", "x.y", &"n".repeat(65)] {
        assert!(
            matches!(
                log.consumer(bad).await,
                Err(StreamError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let mut c = log.consumer("w").await.expect("consumer");
    assert!(matches!(
        log.consumer("w").await,
        Err(StreamError::ConsumerBusy { .. })
    ));
    log.append(&[payload(1), payload(2)]).await.expect("append");
    assert!(matches!(
        c.ack(1).await,
        Err(StreamError::AckBeyondDelivered {
            offset: 1,
            delivered: 0
        })
    ));
    assert_eq!(offsets(&c.next_batch(1).await.expect("batch")), [1]);
    c.ack(1).await.expect("ack delivered");
    drop(c);
    let mut c = log.consumer("w").await.expect("free again after drop");
    assert_eq!(offsets(&c.next_batch(10).await.expect("batch")), [2]);
}

#[tokio::test]
async fn bad_options_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for options in [
        small_segments(100),
        FileLogOptions {
            max_payload_bytes: 0,
            ..FileLogOptions::default()
        },
    ] {
        assert!(matches!(
            EventLog::open_file(tmp.path(), options).await,
            Err(StreamError::InvalidOptions(_))
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Writes records through the log, cuts the segment anywhere (adding junk after the cut
    /// when the header survived), reopens: the log keeps exactly the whole records before the
    /// cut and continues with the next offset.
    #[test]
    fn torn_tail_recovery_at_any_point(
        sizes in proptest::collection::vec(0usize..200, 1..20),
        cut_frac in 0.0f64..=1.0,
        junk in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let tmp = tempfile::tempdir().expect("tempdir");
            let payloads: Vec<Bytes> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
                .collect();
            {
                let log = open(tmp.path()).await;
                log.append(&payloads).await.expect("append");
            }
            let seg = tmp.path().join(segment_name(1));
            let len = fs::metadata(&seg).expect("meta").len();
            let cut = (len as f64 * cut_frac) as u64;
            let f = OpenOptions::new().write(true).open(&seg).expect("open");
            f.set_len(cut).expect("truncate");
            drop(f);
            if cut >= HEADER_LEN {
                let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
                f.write_all(&junk).expect("junk");
            }
            let mut end = HEADER_LEN;
            let mut whole = 0u64;
            for p in &payloads {
                end += RECORD_HEADER_LEN + p.len() as u64;
                if end <= cut {
                    whole += 1;
                }
            }

            let log = open(tmp.path()).await;
            assert_eq!(log.last_offset().await.expect("last"), whole);
            assert_eq!(log.append(&[payload(0)]).await.expect("append"), whole + 1);
            let mut c = log.consumer("w").await.expect("consumer");
            let got = take(&mut c, whole as usize + 1).await;
            assert_eq!(offsets(&got), (1..=whole + 1).collect::<Vec<_>>());
            for (d, p) in got.iter().zip(&payloads).take(whole as usize) {
                assert_eq!(&d.payload, p);
            }
            assert_eq!(got.last().map(|d| d.payload.clone()), Some(payload(0)));
        });
    }
}
