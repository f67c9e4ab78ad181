//! Forecast model directories on disk: building one from a station CSV and loading one. Used by
//! `signalbox forecast build`, by `serve` at start, and by the `forecast.rebuild` job, so the
//! three write and read the same way.
//!
//! A directory is written file by file, each to a temporary name in the directory, synced and
//! renamed over the old one, the manifest last: a directory with a manifest is complete, and a
//! reader never sees a half-written file. A loaded model keeps its files mapped; renaming never
//! disturbs a mapped file, so a model keeps serving while a rebuild replaces its directory.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use analog::forecast::{
    BuildOptions, ForecastError, ForecastModel, ModelPlan, StationEntry, StationSeries, MANIFEST,
};

/// What [`build_model_dir`] did.
pub struct BuildSummary {
    /// Data rows read.
    pub rows: u64,
    /// Stations in the data.
    pub stations: usize,
    /// `(line, reason)` of every skipped row.
    pub bad_rows: Vec<(u64, String)>,
    /// Bytes written, manifest included.
    pub bytes_written: u64,
    /// How long the build took.
    pub elapsed: Duration,
    /// The model, loaded from the directory just written.
    pub model: ForecastModel,
}

/// Why a model directory could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The station CSV does not parse.
    #[error(transparent)]
    Data(#[from] analog::forecast::DataError),
    /// The model cannot be built from the data (too little of it, a bad option).
    #[error(transparent)]
    Build(ForecastError),
    /// A directory or file of the model cannot be created or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Write {
        /// `create` or `write to`.
        action: &'static str,
        /// What.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory has no readable manifest.
    #[error("cannot read {} (is {} a model directory from `forecast build`?): {source}", manifest.display(), dir.display())]
    NoManifest {
        /// The manifest's path.
        manifest: PathBuf,
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the model is corrupt, foreign or inconsistent.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file (or the directory when no one file is at fault).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// How far a build is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum BuildProgress<'a> {
    /// The data is parsed; `stations` are to be built.
    Parsed {
        /// Stations in the data.
        stations: usize,
        /// Data rows used.
        rows: u64,
    },
    /// One step of one station's build (its states, then each horizon).
    Station {
        /// The station.
        station: &'a str,
        /// Steps done.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// A station's files are written.
    Written {
        /// The station.
        station: &'a str,
        /// Stations written so far.
        written: usize,
        /// Stations in all.
        stations: usize,
    },
}

/// Stations built at once. Each thread holds one station's states and files (tens of MB for
/// decades of hourly data), never the whole model.
const BUILD_THREADS: usize = 2;

/// [`build_model_dir_from_reader`] over CSV text (the embedded demo data).
pub fn build_model_dir(
    csv_text: &str,
    out: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(BuildProgress<'_>),
) -> Result<BuildSummary, ModelFileError> {
    build_model_dir_from_reader(csv_text.as_bytes(), out, options, progress)
}

/// Parses the station CSV from `data` (streamed, never read into one string), builds the
/// model station by station and writes it to `out` (created 0700 if missing; each file
/// written to a temporary name and renamed, the manifest last), then loads the directory by
/// memory map. Two stations are built at once on two threads; a station's files are written
/// and dropped as soon as it is built, so the build holds the parsed observations and the
/// stations in flight, not the model. `progress` is called on the calling thread.
pub fn build_model_dir_from_reader<R: Read>(
    data: R,
    out: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(BuildProgress<'_>),
) -> Result<BuildSummary, ModelFileError> {
    let start = Instant::now();
    let data = analog::forecast::parse_csv(data)?;
    let rows = data.rows;
    let station_count = data.stations.len();
    let bad_rows: Vec<(u64, String)> = data
        .bad_rows
        .into_iter()
        .map(|b| (b.line, b.reason))
        .collect();
    progress(BuildProgress::Parsed {
        stations: station_count,
        rows,
    });
    let plan = ModelPlan::new(&data.stations, options).map_err(ModelFileError::Build)?;
    // Owner-only like the rest of the data directory (0700; the files are 0600 temporary
    // files renamed into place). An existing directory keeps its mode.
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(out).map_err(|source| ModelFileError::Write {
        action: "create",
        path: out.to_owned(),
        source,
    })?;

    let queue = Mutex::new(data.stations.into_iter());
    let failed = AtomicBool::new(false);
    let (events, received) = mpsc::channel::<Event>();
    let (entries, bytes_written) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..BUILD_THREADS.min(station_count.max(1)))
            .map(|_| {
                let events = events.clone();
                let (queue, failed, plan) = (&queue, &failed, &plan);
                scope.spawn(move || build_stations(queue, failed, plan, out, &events))
            })
            .collect();
        // The workers hold the other senders: the loop ends when they are all done.
        drop(events);
        let mut written = 0;
        for event in received {
            match event {
                Event::Step(station, done, total) => progress(BuildProgress::Station {
                    station: &station,
                    done,
                    total,
                }),
                Event::Written(station) => {
                    written += 1;
                    progress(BuildProgress::Written {
                        station: &station,
                        written,
                        stations: station_count,
                    });
                }
            }
        }
        let mut entries = Vec::with_capacity(station_count);
        let mut bytes = 0u64;
        let mut first_error = None;
        for worker in workers {
            match worker.join() {
                Ok(Ok((e, b))) => {
                    entries.extend(e);
                    bytes += b;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((entries, bytes)),
        }
    })?;
    let manifest = plan.manifest(entries).map_err(ModelFileError::Build)?;
    write_atomic(out, MANIFEST, manifest.as_bytes())?;
    let model = load_model_dir(out)?;
    Ok(BuildSummary {
        rows,
        stations: station_count,
        bad_rows,
        bytes_written: bytes_written + manifest.len() as u64,
        elapsed: start.elapsed(),
        model,
    })
}

/// What a build thread reports to the calling thread.
enum Event {
    Step(String, usize, usize),
    Written(String),
}

type StationQueue = Mutex<std::vec::IntoIter<StationSeries>>;

/// One build thread: takes stations off the queue until it is empty (or another thread
/// failed), building and writing each.
fn build_stations(
    queue: &StationQueue,
    failed: &AtomicBool,
    plan: &ModelPlan,
    out: &Path,
    events: &mpsc::Sender<Event>,
) -> Result<(Vec<StationEntry>, u64), ModelFileError> {
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    loop {
        if failed.load(Ordering::Relaxed) {
            return Ok((entries, bytes));
        }
        // A poisoned lock means another thread panicked; its panic is re-raised on join.
        let next = match queue.lock() {
            Ok(mut q) => q.next(),
            Err(_) => None,
        };
        let Some(series) = next else {
            return Ok((entries, bytes));
        };
        let code = series.station.clone();
        let result = plan
            .build_station(series, &mut |done, total| {
                // The receiver lives until every thread is done.
                let _ = events.send(Event::Step(code.clone(), done, total));
            })
            .map_err(ModelFileError::Build)
            .and_then(|built| {
                for (name, data) in &built.files {
                    write_atomic(out, name, data)?;
                    bytes += data.len() as u64;
                }
                Ok(built.entry)
            });
        match result {
            Ok(entry) => {
                entries.push(entry);
                let _ = events.send(Event::Written(code));
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ModelFileError> {
    let path = dir.join(name);
    let write = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ModelFileError::Write {
            action,
            path,
            source,
        }
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write("write in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(write("write to", &path))?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .map_err(write("create", &path))?;
    Ok(())
}

/// Loads a model directory: the manifest, then each file through a memory map that the model
/// keeps and reads in place (nothing large is copied). A corrupt, foreign or replaced file is
/// refused with its path.
pub fn load_model_dir(dir: &Path) -> Result<ForecastModel, ModelFileError> {
    let manifest_path = dir.join(MANIFEST);
    let manifest =
        std::fs::read_to_string(&manifest_path).map_err(|source| ModelFileError::NoManifest {
            manifest: manifest_path.clone(),
            dir: dir.to_owned(),
            source,
        })?;
    let mut open = |name: &str| -> Result<memmap2::Mmap, String> {
        let file = std::fs::File::open(dir.join(name)).map_err(|e| format!("cannot open: {e}"))?;
        // SAFETY: the map lives as long as the model (which borrows its sections), so the file
        // must not change under it. Builds never write a model file in place: they write a
        // temporary file and rename it over the old name, which leaves the mapped inode
        // untouched, so a model keeps serving its own files while a rebuild replaces them.
        // Truncating or rewriting a served file in place (by hand, another tool) is
        // unsupported: reads past a truncation fault the process (SIGBUS), and other changes
        // go unnoticed after the checksum verified at load.
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))
    };
    ForecastModel::load(&manifest, &mut open).map_err(|e| match e {
        ForecastError::Corrupt { file, message } => ModelFileError::Corrupt {
            path: dir.join(file),
            message,
        },
        other => ModelFileError::Corrupt {
            path: dir.to_owned(),
            message: other.to_string(),
        },
    })
}
