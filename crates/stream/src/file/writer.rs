//! The writer thread: the only code that writes segments. It group-commits: every request
//! that arrived while the previous fsync ran goes into the next write and shares its fsync.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::format::{encode_header, encode_record, record_len, HEADER_LEN};
use super::{lock, segment_path, SegmentInfo, Stats};
use crate::error::StreamError;

/// A batch cut-off: one write stays bounded in memory and latency under a flood.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One `append` call.
pub(crate) struct AppendRequest {
    pub(crate) payloads: Vec<Bytes>,
    /// Gets the offset of the call's last payload once it is durable.
    pub(crate) reply: oneshot::Sender<Result<u64, StreamError>>,
}

impl AppendRequest {
    fn bytes(&self) -> usize {
        self.payloads.iter().map(|p| record_len(p.len())).sum()
    }
}

pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    /// The active (last) segment, opened for appending.
    pub(crate) file: File,
    /// Its path, for error messages.
    pub(crate) path: PathBuf,
    /// Its size in bytes, header included.
    pub(crate) seg_len: u64,
    pub(crate) next_offset: u64,
    pub(crate) segments: Arc<Mutex<Vec<SegmentInfo>>>,
    pub(crate) durable: watch::Sender<u64>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) failed: Option<String>,
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// Runs until every sender is gone (the log was dropped).
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        let mut batch: Vec<AppendRequest> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes();
            batch.push(first);
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.bytes();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            let result = match &self.failed {
                Some(reason) => Err(reason.clone()),
                None => self.commit(&batch).map_err(|e| {
                    let reason = e.to_string();
                    tracing::error!(error = %reason, "event log write failed; refusing further appends until reopened");
                    self.failed = Some(reason.clone());
                    reason
                }),
            };
            match result {
                Ok(lasts) => {
                    for (req, last) in batch.drain(..).zip(lasts) {
                        // The appender may have given up (cancelled); its records are durable
                        // anyway, which at-least-once allows.
                        let _ = req.reply.send(Ok(last));
                    }
                }
                Err(reason) => {
                    for req in batch.drain(..) {
                        let _ = req.reply.send(Err(StreamError::Failed {
                            reason: reason.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Writes and fsyncs a batch; returns the last offset of each request.
    fn commit(&mut self, batch: &[AppendRequest]) -> Result<Vec<u64>, StreamError> {
        self.buf.clear();
        let mut lasts = Vec::with_capacity(batch.len());
        for req in batch {
            for payload in &req.payloads {
                let len = record_len(payload.len()) as u64;
                let pending = self.seg_len + self.buf.len() as u64;
                // A segment always takes at least one record, so an oversized record still
                // finds a home instead of rolling forever.
                if pending > HEADER_LEN && pending + len > self.segment_bytes {
                    self.roll()?;
                }
                encode_record(&mut self.buf, self.next_offset, payload);
                self.next_offset += 1;
            }
            lasts.push(self.next_offset - 1);
        }
        self.flush()?;
        self.stats
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.durable.send_replace(self.next_offset - 1);
        Ok(lasts)
    }

    /// Writes the buffer to the active segment and makes it durable.
    fn flush(&mut self) -> Result<(), StreamError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        self.file
            .write_all(&self.buf)
            .map_err(|e| StreamError::io(format!("writing {}", path.display()), e))?;
        self.seg_len += self.buf.len() as u64;
        self.buf.clear();
        // fdatasync also persists the file size, which is all the metadata a reader needs.
        self.file
            .sync_data()
            .map_err(|e| StreamError::io(format!("syncing {}", path.display()), e))?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self) -> Result<(), StreamError> {
        self.flush()?;
        let base = self.next_offset;
        let path = segment_path(&self.dir, base);
        let mut file = super::private_file()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StreamError::io(format!("creating {}", path.display()), e))?;
        file.write_all(&encode_header(base))
            .map_err(|e| StreamError::io(format!("writing {}", path.display()), e))?;
        // The header reaches the disk with the batch's fsync; the directory entry needs its own.
        super::offsets::sync_dir(&self.dir)?;
        lock(&self.segments).push(SegmentInfo {
            base,
            path: path.clone(),
        });
        self.file = file;
        self.path = path;
        self.seg_len = HEADER_LEN;
        tracing::debug!(base, "event log rolled to a new segment");
        Ok(())
    }
}
