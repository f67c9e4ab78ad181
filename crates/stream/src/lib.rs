//! The event log behind one API, with two implementations picked at run time.
//!
//! An HTTP handler commits accepted events to the database, then [`EventLog::append`]s a small
//! message per event. A background worker reads them with a named durable [`Consumer`],
//! processes a batch and [`Consumer::ack`]s it. [`EventLog`] is a cheap `Clone + Send + Sync`
//! handle, so every handler shares one.
//!
//! - [`EventLog::open_file`]: the default, an in-process durable log in a directory;
//! - [`EventLog::connect_jetstream`]: NATS JetStream, when several processes share the log.
//!
//! # Guarantees (both implementations)
//!
//! - **Offsets** start at 1 and increase by one per payload. `append` returns the offset of
//!   the last payload of the call, and a call's payloads get consecutive offsets. (On
//!   JetStream only among the clones of one handle: another process, or another
//!   `connect_jetstream` handle, publishing to the same stream can interleave with a call.)
//! - **Durability:** `append` returns only when every payload of the call is durable: on disk
//!   and `fdatasync`'d (file log), or acknowledged by the JetStream server (PubAck; how the
//!   server itself syncs to disk is its configuration: nats-server by default fsyncs its file
//!   store periodically, not per message). If `append` returns an error, or its future is
//!   dropped, some or all payloads may still have been stored: the caller retries and the
//!   consumer must be idempotent, as it must be anyway.
//! - **Delivery is at-least-once, in offset order.** Within one [`Consumer`], each message is
//!   delivered once; `next_batch` continues after the last message it returned, acked or
//!   not. `ack(offset)` is cumulative (everything up to `offset`) and durable when it returns.
//!   A new [`Consumer`] with the same name (after a restart, say) starts after the last acked
//!   offset, so unacked messages are delivered again. A new name starts at the oldest message
//!   kept. Run one `Consumer` per name at a time: the file log refuses a second one in the same
//!   process ([`StreamError::ConsumerBusy`]); JetStream cannot tell.
//! - [`Consumer::next_batch`] is cancel-safe: dropping it (say, in `tokio::select!` against a
//!   shutdown signal) loses nothing, and the next call returns the same messages.
//! - Payloads over the limit (default [`DEFAULT_MAX_PAYLOAD_BYTES`], 1 MiB) are refused with
//!   [`StreamError::PayloadTooLarge`] before anything of the call is written.
//!
//! # The file log
//!
//! One log per directory, used by one process: `open_file` takes an exclusive `flock` on
//! `DIR/LOCK` (released by the kernel if the process dies), so a second opener gets
//! [`StreamError::Locked`] instead of corrupting the files.
//!
//! Records live in segment files `DIR/<base offset, 20 digits>.log`, sealed and replaced by a
//! new one when the next record would take them past [`FileLogOptions::segment_bytes`]
//! (64 MiB by default). All integers are little-endian:
//!
//! ```text
//! segment header (16 bytes): magic "SBXLOG" | format version u16 (= 1) | base offset u64
//! record (16 + len bytes):   payload len u32 | crc32 u32 | offset u64 | payload
//! ```
//!
//! The CRC-32 (IEEE) covers length, offset and payload. One writer thread owns the active
//! segment and *group-commits*: every append that arrives while an fsync runs is written with
//! the others in one `write` and made durable by one `fdatasync`, and each caller is answered
//! when the fsync covering its records returns. Consumers read segments with positioned
//! reads on the blocking pool, never past the durable end, and are woken by the writer (a
//! `tokio::sync::watch`), not by polling.
//!
//! Opening validates every segment header (a foreign file or unknown version is an error
//! naming the file) and scans the last segment. Anything after its last whole, valid record
//! is a *torn tail*: data written after the last fsync an `append` waited for, when the
//! process or machine stopped. It is truncated with a `tracing` warning. Sealed segments are
//! not re-read at open (that would read the whole log); instead every record's CRC, offset
//! and position are checked as consumers read it. Damage there, or in any record that was
//! durable, is never skipped: the consumer gets the records before it, then
//! [`StreamError::Corrupt`] naming the file and byte position, on every call.
//!
//! Consumer offsets are one file per name, `DIR/consumers/<name>.offset` (magic, version,
//! offset, CRC), replaced atomically: write a temporary file, fsync, rename, fsync the
//! directory. Unless [`FileLogOptions::retain_acked`] is set, a sealed segment is deleted
//! once every consumer name the log has seen has acked all of it; the active segment always
//! stays, and a log that has never had a consumer keeps everything. A consumer name that is
//! no longer used therefore holds segments back: delete its offset file while the log is
//! closed.
//!
//! # The JetStream log
//!
//! The stream (file storage, limits retention) is created if missing, with the subject
//! `signalbox.<stream>`; an offset is the stream sequence. A consumer is a durable pull
//! consumer with `AckPolicy::All`, so one ack covers everything before it. `append`
//! publishes every payload, then awaits all PubAcks together. When a consumer is opened and the
//! server still holds messages a previous session received but never acked, the durable
//! consumer is recreated starting just after its ack floor, so those come first instead of
//! after the ack timeout, behind newer messages whose cumulative ack would skip them.
//!
//! # Performance
//!
//! Measured on the 2-core development VM (ext4 on a virtio disk where `fdatasync` takes about
//! 0.15 ms), 300-byte payloads, one per `append` call (`benches/append.rs`,
//! `examples/latency.rs`):
//!
//! - 1 appender: 148 µs per append (6.8 k/s), one fsync each;
//! - 16 concurrent appenders: 18.5 µs per append (54 k/s): group commit shares each fsync;
//! - 5,000 messages/s from 16 tasks with a consumer acking batches: append p99 0.5 ms,
//!   append-call-to-delivery p99 0.8 ms (file log); JetStream on the local nats-server:
//!   0.8 ms and 1.5 ms.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), stream::StreamError> {
//! use bytes::Bytes;
//! use stream::{EventLog, FileLogOptions};
//!
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let log = EventLog::open_file(dir.path(), FileLogOptions::default()).await?;
//! let last = log
//!     .append(&[Bytes::from_static(b"{\"event\":1}"), Bytes::from_static(b"{\"event\":2}")])
//!     .await?;
//! assert_eq!(last, 2);
//!
//! let mut worker = log.consumer("weber-worker").await?;
//! let batch = worker.next_batch(100).await?;
//! assert_eq!(batch.iter().map(|d| d.offset).collect::<Vec<_>>(), [1, 2]);
//! worker.ack(2).await?; // durable: a restarted worker starts at offset 3
//! assert_eq!(worker.lag().await?, 0);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
mod file;
mod jetstream;

use std::path::Path;

use bytes::Bytes;

pub use error::StreamError;
pub use file::{FileLog, FileLogOptions, DEFAULT_SEGMENT_BYTES};
pub use jetstream::JetStreamLog;

/// Default largest payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// One message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its offset in the log (JetStream: the stream sequence).
    pub offset: u64,
    /// The bytes given to `append`.
    pub payload: Bytes,
}

/// Which log to use. Chosen at run time (from configuration); cheap to clone.
#[derive(Debug, Clone)]
pub enum EventLog {
    /// The in-process durable log in a directory.
    File(FileLog),
    /// A NATS JetStream stream.
    JetStream(JetStreamLog),
}

impl EventLog {
    /// In-process durable log in `dir` (created if missing), one topic per log.
    ///
    /// Recovers from a crash (see the crate docs) and fails if another log has `dir` open.
    pub async fn open_file(dir: &Path, options: FileLogOptions) -> Result<EventLog, StreamError> {
        Ok(EventLog::File(FileLog::open(dir, options).await?))
    }

    /// NATS JetStream: `url` like `nats://127.0.0.1:4222`; `stream` is the stream name (also
    /// used for the subject `signalbox.<stream>`), 1 to 64 characters of `[A-Za-z0-9_-]`. The
    /// stream is created if missing (file storage, limits retention).
    pub async fn connect_jetstream(url: &str, stream: &str) -> Result<EventLog, StreamError> {
        Ok(EventLog::JetStream(
            JetStreamLog::connect(url, stream).await?,
        ))
    }

    /// Appends `payloads` in order and returns the offset of the last one, once every one of
    /// them is durable. An empty slice appends nothing and returns [`EventLog::last_offset`].
    ///
    /// Fails with [`StreamError::PayloadTooLarge`], having written nothing, if any payload is
    /// over the limit.
    pub async fn append(&self, payloads: &[Bytes]) -> Result<u64, StreamError> {
        match self {
            EventLog::File(log) => log.append(payloads).await,
            EventLog::JetStream(log) => log.append(payloads).await,
        }
    }

    /// A named durable consumer (`name`: 1 to 64 characters of `[A-Za-z0-9_-]`). It resumes
    /// after its last acked offset; a new name starts at the oldest message kept.
    pub async fn consumer(&self, name: &str) -> Result<Consumer, StreamError> {
        Ok(Consumer {
            inner: match self {
                EventLog::File(log) => ConsumerInner::File(log.consumer(name).await?),
                EventLog::JetStream(log) => {
                    ConsumerInner::JetStream(Box::new(log.consumer(name).await?))
                }
            },
        })
    }

    /// Highest appended (durable) offset, 0 when the log is empty.
    pub async fn last_offset(&self) -> Result<u64, StreamError> {
        match self {
            EventLog::File(log) => Ok(log.last_offset()),
            EventLog::JetStream(log) => log.last_offset().await,
        }
    }

    /// `"file"` or `"jetstream"`, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            EventLog::File(_) => "file",
            EventLog::JetStream(_) => "jetstream",
        }
    }
}

/// A named durable consumer of an [`EventLog`]; see the crate docs for delivery semantics.
#[derive(Debug)]
pub struct Consumer {
    inner: ConsumerInner,
}

#[derive(Debug)]
enum ConsumerInner {
    File(file::FileConsumer),
    JetStream(Box<jetstream::JetStreamConsumer>),
}

impl Consumer {
    /// Waits until at least one message this consumer has not yet returned exists, then
    /// returns up to `max` of them (at least one, even if `max` is 0) in offset order.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing is lost and the next
    /// call returns the same messages.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, StreamError> {
        match &mut self.inner {
            ConsumerInner::File(c) => c.next_batch(max).await,
            ConsumerInner::JetStream(c) => c.next_batch(max).await,
        }
    }

    /// Cumulative ack: everything up to and including `offset` is done and will not be
    /// delivered again after a restart. Durable when it returns. Acking an offset at or below
    /// an earlier ack does nothing; acking one not yet delivered is
    /// [`StreamError::AckBeyondDelivered`].
    pub async fn ack(&mut self, offset: u64) -> Result<(), StreamError> {
        match &mut self.inner {
            ConsumerInner::File(c) => c.ack(offset).await,
            ConsumerInner::JetStream(c) => c.ack(offset).await,
        }
    }

    /// Offsets not yet acked (`last_offset - acked`), for a lag gauge.
    pub async fn lag(&self) -> Result<u64, StreamError> {
        match &self.inner {
            ConsumerInner::File(c) => Ok(c.lag()),
            ConsumerInner::JetStream(c) => c.lag().await,
        }
    }
}

/// Checks a consumer or stream name: 1 to 64 characters of `[A-Za-z0-9_-]` (safe as a file
/// name and as a NATS token).
pub(crate) fn validate_name(name: &str) -> Result<(), StreamError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StreamError::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "worker-1", "W_x", &"z".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a b", "../x", "é", &"z".repeat(65), "a*", "a>"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn handles_are_shareable() {
        assert_traits::<EventLog>();
        assert_send::<Consumer>();
    }
}
