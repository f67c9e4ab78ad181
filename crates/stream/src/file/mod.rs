//! The in-process durable log: segment files in one directory, one writer thread, consumer
//! offsets in small files.

mod consumer;
mod format;
mod offsets;
mod writer;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::StreamError;
use crate::DEFAULT_MAX_PAYLOAD_BYTES;
pub(crate) use consumer::FileConsumer;
use consumer::{ActiveGuard, ConsumerEntry};
use format::{decode_header, encode_header, HeaderError, RecordReader, Step, HEADER_LEN};
use writer::{AppendRequest, Writer};

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".log";
/// How many append calls may queue for the writer before `append` waits (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// Settings of a [`FileLog`](crate::FileLog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogOptions {
    /// A segment is sealed and a new one started when the next record would take it past this
    /// size (a single larger record still gets a segment of its own). At least 1 KiB.
    pub segment_bytes: u64,
    /// Largest accepted payload; `append` refuses larger ones before writing anything. At most
    /// 64 MiB.
    pub max_payload_bytes: usize,
    /// Keep segments even when every known consumer has acked them. When `false` (the default)
    /// a sealed segment is deleted once all consumers that ever existed on the log have acked
    /// its last record; a log no consumer has opened keeps everything.
    pub retain_acked: bool,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        FileLogOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            retain_acked: false,
        }
    }
}

impl FileLogOptions {
    fn validate(&self) -> Result<(), StreamError> {
        if self.segment_bytes < 1024 {
            return Err(StreamError::InvalidOptions(
                "segment_bytes must be at least 1024".to_owned(),
            ));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > format::MAX_RECORD_PAYLOAD {
            return Err(StreamError::InvalidOptions(format!(
                "max_payload_bytes must be between 1 and {}",
                format::MAX_RECORD_PAYLOAD
            )));
        }
        Ok(())
    }
}

/// The in-process durable log (see the crate docs for format and guarantees). Cheap to clone.
#[derive(Clone)]
pub struct FileLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.shared.dir)
            .field("last_offset", &*self.shared.durable.borrow())
            .finish_non_exhaustive()
    }
}

/// A segment file and the offset of its first record.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// `append` calls committed.
    pub(crate) appends: AtomicU64,
    /// `fdatasync` calls on segments.
    pub(crate) syncs: AtomicU64,
}

pub(crate) struct Shared {
    dir: PathBuf,
    consumers_dir: PathBuf,
    options: FileLogOptions,
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<AppendRequest>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The highest durable offset.
    durable: watch::Receiver<u64>,
    /// Every segment, oldest first; the last is the active one.
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    consumers: Mutex<HashMap<String, Arc<ConsumerEntry>>>,
    stats: Arc<Stats>,
    /// Holds the directory's lock; released when dropped, after the writer has stopped.
    _lock: File,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has answered every queued append; joining
        // it means the lock is only released when nothing writes any more.
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        tracing::debug!(
            dir = %self.dir.display(),
            appends = self.stats.appends.load(Ordering::Relaxed),
            fsyncs = self.stats.syncs.load(Ordering::Relaxed),
            "event log closed"
        );
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent
/// before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Options for creating a log file: readable and writable by its owner only (0600 on Unix,
/// whatever the umask), since records hold tenants' data.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `dir` and any missing parents, owner-only (0700 on Unix). An existing directory
/// keeps its mode: an operator may have chosen it.
pub(crate) fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

impl FileLog {
    pub(crate) async fn open(dir: &Path, options: FileLogOptions) -> Result<FileLog, StreamError> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || open_blocking(&dir, options))
            .await
            .map_err(|e| StreamError::Internal(format!("open task failed: {e}")))?
    }

    pub(crate) async fn append(&self, payloads: &[Bytes]) -> Result<u64, StreamError> {
        let max = self.shared.options.max_payload_bytes;
        if let Some((index, p)) = payloads.iter().enumerate().find(|(_, p)| p.len() > max) {
            return Err(StreamError::PayloadTooLarge {
                index,
                len: p.len(),
                max,
            });
        }
        if payloads.is_empty() {
            return Ok(self.last_offset());
        }
        let tx = self.shared.tx.as_ref().ok_or(StreamError::Closed)?;
        let (reply, done) = oneshot::channel();
        tx.send(AppendRequest {
            payloads: payloads.to_vec(),
            reply,
        })
        .await
        .map_err(|_| StreamError::Closed)?;
        done.await.map_err(|_| StreamError::Closed)?
    }

    pub(crate) async fn consumer(&self, name: &str) -> Result<FileConsumer, StreamError> {
        crate::validate_name(name)?;
        let shared = Arc::clone(&self.shared);
        let owned = name.to_owned();
        let (guard, acked) = tokio::task::spawn_blocking(move || shared.register(&owned))
            .await
            .map_err(|e| StreamError::Internal(format!("consumer task failed: {e}")))??;
        Ok(FileConsumer::new(
            Arc::clone(&self.shared),
            name.to_owned(),
            guard,
            acked,
        ))
    }

    pub(crate) fn last_offset(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// (append calls committed, fsyncs), to show group commit at work.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.shared.stats.appends.load(Ordering::Relaxed),
            self.shared.stats.syncs.load(Ordering::Relaxed),
        )
    }
}

impl Shared {
    /// Finds or creates the consumer `name` and marks it active.
    fn register(&self, name: &str) -> Result<(ActiveGuard, u64), StreamError> {
        // Held across the offset-file write so retention cannot delete the segment a new
        // consumer is about to start in.
        let mut consumers = lock(&self.consumers);
        let entry = match consumers.get(name) {
            Some(entry) => Arc::clone(entry),
            None => {
                let first = lock(&self.segments).first().map_or(1, |s| s.base);
                let acked = first - 1;
                offsets::store(&self.consumers_dir, name, acked)?;
                let entry = Arc::new(ConsumerEntry {
                    acked: Mutex::new(acked),
                    active: AtomicBool::new(false),
                });
                consumers.insert(name.to_owned(), Arc::clone(&entry));
                entry
            }
        };
        if entry.active.swap(true, Ordering::AcqRel) {
            return Err(StreamError::ConsumerBusy {
                name: name.to_owned(),
            });
        }
        let guard = ActiveGuard(Arc::clone(&entry));
        let acked = *lock(&entry.acked);
        Ok((guard, acked))
    }

    /// The segment holding `offset`.
    fn segment_for(&self, offset: u64) -> Result<SegmentInfo, StreamError> {
        let segments = lock(&self.segments);
        segments
            .iter()
            .rev()
            .find(|s| s.base <= offset)
            .cloned()
            .ok_or_else(|| StreamError::Corrupt {
                path: segments
                    .first()
                    .map_or_else(|| self.dir.clone(), |s| s.path.clone()),
                position: 0,
                reason: format!("offset {offset} is older than the oldest segment"),
            })
    }

    fn segment_path_of(&self, base: u64) -> Result<PathBuf, StreamError> {
        lock(&self.segments)
            .iter()
            .find(|s| s.base == base)
            .map(|s| s.path.clone())
            .ok_or_else(|| StreamError::Corrupt {
                path: segment_path(&self.dir, base),
                position: 0,
                reason: "segment disappeared while being read".to_owned(),
            })
    }

    fn segment_starting_at(&self, offset: u64) -> Option<u64> {
        lock(&self.segments)
            .iter()
            .find(|s| s.base == offset)
            .map(|s| s.base)
    }

    /// Deletes sealed segments every known consumer has acked completely.
    fn apply_retention(&self) -> Result<(), StreamError> {
        if self.options.retain_acked {
            return Ok(());
        }
        let doomed: Vec<SegmentInfo> = {
            let consumers = lock(&self.consumers);
            let Some(min_acked) = consumers.values().map(|c| *lock(&c.acked)).min() else {
                return Ok(());
            };
            let mut segments = lock(&self.segments);
            // Segment i ends at segment i+1's base - 1; the last (active) one always stays.
            let n = segments
                .windows(2)
                .take_while(|w| w[1].base - 1 <= min_acked)
                .count();
            segments.drain(..n).collect()
        };
        for segment in &doomed {
            match fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StreamError::io(
                        format!("deleting {}", segment.path.display()),
                        e,
                    ))
                }
            }
            // One at a time, oldest first, each made durable, so a crash can never leave a
            // hole in front of a segment that survives.
            offsets::sync_dir(&self.dir)?;
            tracing::debug!(path = %segment.path.display(), "deleted fully acked segment");
        }
        Ok(())
    }
}

fn open_blocking(dir: &Path, options: FileLogOptions) -> Result<FileLog, StreamError> {
    options.validate()?;
    create_private_dir_all(dir)
        .map_err(|e| StreamError::io(format!("creating {}", dir.display()), e))?;
    let lock_file = take_lock(dir)?;

    let mut segments = list_segments(dir)?;
    if segments.is_empty() {
        segments.push(create_segment(dir, 1)?);
    }
    let last_index = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        check_header(segment, i == last_index)?;
    }
    let active = segments[last_index].clone();
    let (file, seg_len, last_offset) = recover_active(&active)?;

    let consumers_dir = offsets::consumers_dir(dir);
    let first_base = segments[0].base;
    let mut consumers = HashMap::new();
    for (name, acked) in offsets::load_all(&consumers_dir)? {
        if acked > last_offset || acked + 1 < first_base {
            return Err(StreamError::Corrupt {
                path: consumers_dir.join(format!("{name}.offset")),
                position: 0,
                reason: format!(
                    "consumer acked offset {acked}, but the log holds offsets {first_base}..={last_offset}"
                ),
            });
        }
        consumers.insert(
            name,
            Arc::new(ConsumerEntry {
                acked: Mutex::new(acked),
                active: AtomicBool::new(false),
            }),
        );
    }

    let segments = Arc::new(Mutex::new(segments));
    let stats = Arc::new(Stats::default());
    let (durable_tx, durable_rx) = watch::channel(last_offset);
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let writer = Writer {
        dir: dir.to_owned(),
        segment_bytes: options.segment_bytes,
        file,
        path: active.path,
        seg_len,
        next_offset: last_offset + 1,
        segments: Arc::clone(&segments),
        durable: durable_tx,
        stats: Arc::clone(&stats),
        failed: None,
        buf: Vec::new(),
    };
    let handle = std::thread::Builder::new()
        .name("stream-writer".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(|e| StreamError::io("starting the event log writer thread", e))?;

    let shared = Shared {
        dir: dir.to_owned(),
        consumers_dir,
        options,
        tx: Some(tx),
        writer: Some(handle),
        durable: durable_rx,
        segments,
        consumers: Mutex::new(consumers),
        stats,
        _lock: lock_file,
    };
    shared.apply_retention()?;
    Ok(FileLog {
        shared: Arc::new(shared),
    })
}

/// Takes the directory's exclusive lock (an advisory `flock`, released by the kernel if the
/// process dies, so a crash never leaves a stale lock).
fn take_lock(dir: &Path) -> Result<File, StreamError> {
    let path = dir.join(LOCK_FILE);
    let mut file = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StreamError::io(format!("opening {}", path.display()), e))?;
    // Called through the trait: `File::try_lock` in std is newer than the crate's MSRV.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StreamError::Locked {
                dir: dir.to_owned(),
                holder: holder.trim().to_owned(),
            });
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(StreamError::io(format!("locking {}", path.display()), e))
        }
    }
    // Diagnostics only: who holds the lock.
    let note = format!("pid {}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(note.as_bytes()))
        .map_err(|e| StreamError::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}

/// Segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, StreamError> {
    let entries =
        fs::read_dir(dir).map_err(|e| StreamError::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StreamError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match stem.parse::<u64>() {
            Ok(base) if base >= 1 => out.push(SegmentInfo { base, path }),
            _ => {
                return Err(StreamError::ForeignFile {
                    path,
                    reason: "segment file name is not a valid base offset".to_owned(),
                })
            }
        }
    }
    out.sort_by_key(|s| s.base);
    Ok(out)
}

fn create_segment(dir: &Path, base: u64) -> Result<SegmentInfo, StreamError> {
    let path = segment_path(dir, base);
    let mut file = private_file()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StreamError::io(format!("creating {}", path.display()), e))?;
    file.write_all(&encode_header(base))
        .and_then(|()| file.sync_all())
        .map_err(|e| StreamError::io(format!("writing {}", path.display()), e))?;
    offsets::sync_dir(dir)?;
    Ok(SegmentInfo { base, path })
}

/// Validates a segment's header. A missing or all-zero header on the last segment is a crash
/// during segment creation and is repaired by [`recover_active`].
fn check_header(segment: &SegmentInfo, is_last: bool) -> Result<(), StreamError> {
    let path = &segment.path;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    File::open(path)
        .and_then(|f| f.take(HEADER_LEN).read_to_end(&mut header))
        .map_err(|e| StreamError::io(format!("reading {}", path.display()), e))?;
    let foreign = |reason: String| StreamError::ForeignFile {
        path: path.clone(),
        reason,
    };
    match decode_header(&header) {
        Ok(base) if base == segment.base => Ok(()),
        Ok(base) => Err(StreamError::Corrupt {
            path: path.clone(),
            position: 8,
            reason: format!(
                "header says base offset {base}, the file name {}",
                segment.base
            ),
        }),
        Err(HeaderError::Short | HeaderError::Zeroed) if is_last => Ok(()),
        Err(HeaderError::Short) => Err(StreamError::Corrupt {
            path: path.clone(),
            position: 0,
            reason: "sealed segment is shorter than its header".to_owned(),
        }),
        Err(HeaderError::Zeroed) => Err(StreamError::Corrupt {
            path: path.clone(),
            position: 0,
            reason: "sealed segment has an all-zero header".to_owned(),
        }),
        Err(HeaderError::Magic) => Err(foreign(
            "bad magic (expected a segment starting with \"SBXLOG\")".to_owned(),
        )),
        Err(HeaderError::Version(v)) => Err(foreign(format!(
            "segment format version {v} is not supported (this build reads version {})",
            format::FORMAT_VERSION
        ))),
    }
}

/// Scans the active segment, cuts off a torn tail, and returns the file opened for appending,
/// its length and the last offset in the log.
fn recover_active(segment: &SegmentInfo) -> Result<(File, u64, u64), StreamError> {
    let path = &segment.path;
    let io = |what: &str, e| StreamError::io(format!("{what} {}", path.display()), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io("opening", e))?;
    let len = file.metadata().map_err(|e| io("reading", e))?.len();

    let mut header = [0u8; HEADER_LEN as usize];
    let header_ok =
        len >= HEADER_LEN && file.read_exact(&mut header).is_ok() && decode_header(&header).is_ok();
    if !header_ok {
        // `check_header` let this through only for the last segment: it was being created
        // when the process stopped, and nothing in it was ever acknowledged.
        tracing::warn!(path = %path.display(), len, "event log: re-initialising a segment whose header never reached the disk");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| file.write_all(&encode_header(segment.base)))
            .and_then(|()| file.sync_all())
            .map_err(|e| io("repairing", e))?;
        return Ok((reopen_append(path)?, HEADER_LEN, segment.base - 1));
    }

    let mut reader = RecordReader::default();
    reader.seek(HEADER_LEN);
    let mut expected = segment.base;
    let torn = loop {
        match reader.next(&file).map_err(|e| io("reading", e))? {
            Step::Record { offset, .. } if offset == expected => expected += 1,
            Step::Record { pos, .. } => break Some((pos, "record with an unexpected offset")),
            Step::End { trailing: 0, .. } => break None,
            Step::End { pos, .. } => break Some((pos, "partial record")),
            Step::Bad { pos, reason } => break Some((pos, reason)),
        }
    };
    let valid = reader.position();
    if let Some((pos, reason)) = torn {
        // Everything past the last whole record was written after the last fsync that any
        // append waited for: a crash tore it, and no caller was told it was durable.
        tracing::warn!(
            path = %path.display(),
            position = pos,
            dropped_bytes = len - valid,
            reason,
            "event log: truncating a torn tail left by a crash"
        );
        file.set_len(valid)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("truncating", e))?;
    }
    Ok((reopen_append(path)?, valid, expected - 1))
}

fn reopen_append(path: &Path) -> Result<File, StreamError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StreamError::io(format!("opening {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 tasks appending one payload at a time share fsyncs: far fewer syncs than appends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_fsyncs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = FileLog::open(tmp.path(), FileLogOptions::default())
            .await
            .expect("open");
        let mut tasks = Vec::new();
        for t in 0..16u8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50u8 {
                    log.append(&[Bytes::from(vec![t, i])])
                        .await
                        .expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let (appends, syncs) = log.stats();
        assert_eq!(appends, 800);
        assert!(
            syncs * 2 < appends,
            "expected group commit: {syncs} fsyncs for {appends} appends"
        );
    }
}
