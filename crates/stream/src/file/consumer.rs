//! A named durable consumer of the file log.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::format::{RecordReader, Step, HEADER_LEN};
use super::{lock, offsets, Shared};
use crate::error::StreamError;
use crate::Delivery;

/// What the log knows about one consumer name.
#[derive(Debug)]
pub(crate) struct ConsumerEntry {
    /// The durable acked offset. Held while its file is rewritten, which serialises writes
    /// for one name and keeps the stored value from going backwards.
    pub(crate) acked: Mutex<u64>,
    /// A [`FileConsumer`] for this name exists.
    pub(crate) active: AtomicBool,
}

/// Clears [`ConsumerEntry::active`] when dropped, including when the future that opened the
/// consumer was cancelled after the flag was set.
#[derive(Debug)]
pub(crate) struct ActiveGuard(pub(crate) Arc<ConsumerEntry>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.store(false, Ordering::Release);
    }
}

/// Where the next record to deliver lives.
#[derive(Debug, Clone, Copy)]
struct ReadPos {
    /// Offset of the next record to deliver.
    next: u64,
    /// Base of the segment holding it and the record's byte position there, once known.
    seg: Option<(u64, u64)>,
}

/// The open segment and read buffer, reused across batches. A cache only: any state in it is
/// correct for any position, so a cancelled read cannot leave it wrong.
#[derive(Debug, Default)]
struct ReadCache {
    file: Option<(u64, PathBuf, File)>,
    reader: RecordReader,
}

pub(crate) struct FileConsumer {
    shared: Arc<Shared>,
    name: String,
    guard: ActiveGuard,
    acked: u64,
    delivered: u64,
    pos: ReadPos,
    cache: Arc<Mutex<ReadCache>>,
    durable: watch::Receiver<u64>,
}

impl std::fmt::Debug for FileConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConsumer")
            .field("name", &self.name)
            .field("acked", &self.acked)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl FileConsumer {
    pub(crate) fn new(shared: Arc<Shared>, name: String, guard: ActiveGuard, acked: u64) -> Self {
        let durable = shared.durable.clone();
        FileConsumer {
            shared,
            name,
            guard,
            acked,
            delivered: acked,
            pos: ReadPos {
                next: acked + 1,
                seg: None,
            },
            cache: Arc::default(),
            durable,
        }
    }

    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, StreamError> {
        let max = max.max(1);
        loop {
            let durable = *self.durable.borrow_and_update();
            if durable >= self.pos.next {
                let shared = Arc::clone(&self.shared);
                let cache = Arc::clone(&self.cache);
                let pos = self.pos;
                let (batch, pos) = tokio::task::spawn_blocking(move || {
                    read_batch(&shared, &cache, pos, durable, max)
                })
                .await
                .map_err(|e| StreamError::Internal(format!("read task failed: {e}")))??;
                // Only now, with nothing left to await, does the position move: a future
                // dropped before this line leaves the consumer where it was.
                self.pos = pos;
                if let Some(last) = batch.last() {
                    self.delivered = last.offset;
                    return Ok(batch);
                }
                continue;
            }
            if self.durable.changed().await.is_err() {
                return Err(StreamError::Closed);
            }
        }
    }

    pub(crate) async fn ack(&mut self, offset: u64) -> Result<(), StreamError> {
        if offset <= self.acked {
            return Ok(());
        }
        if offset > self.delivered {
            return Err(StreamError::AckBeyondDelivered {
                offset,
                delivered: self.delivered,
            });
        }
        let shared = Arc::clone(&self.shared);
        let entry = Arc::clone(&self.guard.0);
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            {
                let mut acked = lock(&entry.acked);
                if offset > *acked {
                    offsets::store(&shared.consumers_dir, &name, offset)?;
                    *acked = offset;
                }
            }
            // The ack is durable; failing to delete an old segment must not undo that.
            if let Err(e) = shared.apply_retention() {
                tracing::warn!(error = %e, "event log retention failed; old segments kept");
            }
            Ok::<(), StreamError>(())
        })
        .await
        .map_err(|e| StreamError::Internal(format!("ack task failed: {e}")))??;
        self.acked = offset;
        Ok(())
    }

    pub(crate) fn lag(&self) -> u64 {
        self.durable.borrow().saturating_sub(self.acked)
    }
}

/// Reads up to `max` records from `pos.next`, never past `upto` (the durable end).
fn read_batch(
    shared: &Shared,
    cache: &Mutex<ReadCache>,
    mut pos: ReadPos,
    upto: u64,
    max: usize,
) -> Result<(Vec<Delivery>, ReadPos), StreamError> {
    let mut out = Vec::new();
    match read_into(shared, cache, &mut pos, upto, max, &mut out) {
        Ok(()) => Ok((out, pos)),
        // Hand out the good records before the damage; the next call starts at the damage
        // and reports it, so nothing is skipped.
        Err(_) if !out.is_empty() => Ok((out, pos)),
        Err(e) => Err(e),
    }
}

fn read_into(
    shared: &Shared,
    cache: &Mutex<ReadCache>,
    pos: &mut ReadPos,
    upto: u64,
    max: usize,
    out: &mut Vec<Delivery>,
) -> Result<(), StreamError> {
    let mut cache = lock(cache);
    let ReadCache { file, reader } = &mut *cache;
    while out.len() < max && pos.next <= upto {
        let (base, at) = match pos.seg {
            Some(seg) => seg,
            None => (shared.segment_for(pos.next)?.base, HEADER_LEN),
        };
        let open = !matches!(file, Some((b, _, _)) if *b == base);
        if open {
            let path = shared.segment_path_of(base)?;
            let f = File::open(&path)
                .map_err(|e| StreamError::io(format!("opening {}", path.display()), e))?;
            *file = Some((base, path, f));
            reader.seek(at);
        } else if reader.position() != at {
            reader.seek(at);
        }
        let Some((_, path, f)) = file.as_ref() else {
            return Err(StreamError::Internal("segment not open".to_owned()));
        };
        let step = reader
            .next(f)
            .map_err(|e| StreamError::io(format!("reading {}", path.display()), e))?;
        match step {
            Step::Record {
                pos: record_pos,
                offset,
                payload,
            } => {
                let after = record_pos + super::format::record_len(payload.len()) as u64;
                if offset < pos.next {
                    // Positioning: skipping records before the resume point.
                    pos.seg = Some((base, after));
                    continue;
                }
                if offset > pos.next {
                    return Err(StreamError::Corrupt {
                        path: path.clone(),
                        position: record_pos,
                        reason: format!("expected offset {} but found {offset}", pos.next),
                    });
                }
                out.push(Delivery {
                    offset,
                    payload: Bytes::copy_from_slice(payload),
                });
                pos.next += 1;
                pos.seg = Some((base, after));
            }
            Step::End { pos: end, trailing } => {
                // Offsets up to `upto` are durable, so the record must be whole here or
                // start the next segment.
                let next_seg = shared.segment_starting_at(pos.next);
                match next_seg {
                    Some(next) if trailing == 0 && next > base => pos.seg = Some((next, HEADER_LEN)),
                    _ => {
                        return Err(StreamError::Corrupt {
                            path: path.clone(),
                            position: end,
                            reason: format!(
                                "durable offset {} is missing (segment ends with {trailing} stray bytes)",
                                pos.next
                            ),
                        })
                    }
                }
            }
            Step::Bad { pos: bad, reason } => {
                return Err(StreamError::Corrupt {
                    path: path.clone(),
                    position: bad,
                    reason: reason.to_owned(),
                })
            }
        }
    }
    Ok(())
}
