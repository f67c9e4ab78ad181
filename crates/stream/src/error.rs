//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening, appending to or consuming an [`EventLog`](crate::EventLog).
///
/// Every message is a single line. Errors about a file name the file, so an operator can find
/// it without a debugger.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// A file system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path involved.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another [`EventLog`](crate::EventLog) in this process) has the
    /// directory open.
    #[error("log directory {dir} is locked by another open log (lock file holds: {holder:?})")]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// What the lock file says about its holder (a process id), if readable.
        holder: String,
    },

    /// A file in the log directory is not one of ours, or is of a format version this build
    /// cannot read.
    #[error("{path}: not a signalbox stream file: {reason}")]
    ForeignFile {
        /// The offending file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// Stored data failed validation where a crash cannot explain it (a sealed segment, a
    /// durable record, a consumer offset file).
    #[error("{path}: corrupt at byte {position}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage within the file.
        position: u64,
        /// What was wrong.
        reason: String,
    },

    /// A payload is larger than the log's `max_payload_bytes`; nothing of the call was written.
    #[error("payload {index} is {len} bytes, more than the limit of {max} bytes")]
    PayloadTooLarge {
        /// Index of the first oversized payload in the slice passed to `append`.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A consumer or stream name is not 1 to 64 characters of `[A-Za-z0-9_-]`.
    #[error("invalid name {name:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },

    /// [`FileLogOptions`](crate::FileLogOptions) out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A [`Consumer`](crate::Consumer) with this name is already open on this log.
    #[error("consumer {name:?} is already open on this log")]
    ConsumerBusy {
        /// The consumer name.
        name: String,
    },

    /// `ack` named an offset this consumer has not been given yet.
    #[error("cannot ack offset {offset}: only offsets up to {delivered} have been delivered")]
    AckBeyondDelivered {
        /// The offset passed to `ack`.
        offset: u64,
        /// The highest offset delivered so far.
        delivered: u64,
    },

    /// An earlier write or fsync failed, so the log refuses further appends: after a failed
    /// fsync the kernel may have dropped the data, and only a reopen (which re-reads the files)
    /// knows what is on disk.
    #[error("log is failed after an earlier write error ({reason}); reopen it")]
    Failed {
        /// The original error, as text.
        reason: String,
    },

    /// The log has shut down (its writer stopped, or the JetStream subscription ended).
    #[error("the event log is closed")]
    Closed,

    /// A NATS / JetStream operation failed.
    #[error("jetstream: {op}: {source}")]
    JetStream {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The JetStream stream exists but is not usable as this log (e.g. other subjects).
    #[error("jetstream: stream {stream:?}: {reason}")]
    StreamMismatch {
        /// The stream name.
        stream: String,
        /// What did not match.
        reason: String,
    },

    /// A background task failed (a bug in this crate).
    #[error("internal error: {0}")]
    Internal(String),
}

impl StreamError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StreamError {
        StreamError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn jetstream(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StreamError {
        StreamError::JetStream {
            op,
            source: Box::new(source),
        }
    }
}
