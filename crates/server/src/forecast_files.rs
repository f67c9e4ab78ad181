//! Forecast model directories on disk: building one from a station CSV and loading one. Used by
//! `signalbox forecast build`, by `serve` at start, and by the `forecast.rebuild` job, so the
//! three write and read the same way.
//!
//! A directory is written file by file, each to a temporary name in the directory, synced and
//! renamed over the old one, the manifest last: a directory with a manifest is complete, and a
//! reader never sees a half-written file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use analog::forecast::{BuildOptions, ForecastError, ForecastModel, MANIFEST};

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
    /// The model built (the same as loading the directory would give).
    pub model: ForecastModel,
}

/// Why a model directory could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The station CSV does not parse.
    #[error(transparent)]
    Data(#[from] analog::forecast::DataError),
    /// The model cannot be built from the data (too little of it, a bad option).
    #[error("{0}")]
    Build(String),
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

/// Parses `csv_text`, builds the model and writes it to `out` (created 0700 if missing; each
/// file written to a temporary name and renamed, the manifest last).
pub fn build_model_dir(
    csv_text: &str,
    out: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BuildSummary, ModelFileError> {
    let start = Instant::now();
    let data = analog::forecast::parse_csv(csv_text.as_bytes())?;
    let model = ForecastModel::build(&data, options, progress)
        .map_err(|e| ModelFileError::Build(e.to_string()))?;
    let files = model
        .to_files()
        .map_err(|e| ModelFileError::Build(e.to_string()))?;
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
    let mut bytes_written = 0u64;
    for (name, bytes) in &files.files {
        write_atomic(out, name, bytes)?;
        bytes_written += bytes.len() as u64;
    }
    write_atomic(out, MANIFEST, files.manifest.as_bytes())?;
    bytes_written += files.manifest.len() as u64;
    Ok(BuildSummary {
        rows: data.rows,
        stations: data.stations.len(),
        bad_rows: data
            .bad_rows
            .into_iter()
            .map(|b| (b.line, b.reason))
            .collect(),
        bytes_written,
        elapsed: start.elapsed(),
        model,
    })
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

/// Loads a model directory: the manifest, then each file through a memory map. A corrupt,
/// foreign or replaced file is refused with its path.
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
        // SAFETY: the map is read only while `ForecastModel::load` parses it, checksums it and
        // copies its sections, then dropped. A concurrent writer is the one hazard; builds
        // never write in place (they rename new files over old ones), and a change by anything
        // else during those milliseconds is caught by the checksum.
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
