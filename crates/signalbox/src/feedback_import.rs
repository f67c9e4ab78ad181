//! `signalbox feedback import` and `signalbox feedback reconcile`: migrating feedback from a
//! legacy system.
//!
//! The file is read here (CSV or JSON lines, with byte offsets so a resume seeks straight to
//! its checkpoint); rows are mapped by [`feedback::import::Mapping`] and stored in batches by
//! the server's [`server::FeedbackService::import_batch`], each batch with the checkpoint in
//! one transaction. The import's id derives from the file's SHA-256, so running the same
//! command again after a crash or a Ctrl-C resumes where the last committed batch ended.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use feedback::import::{sha256_hex, Mapping, RowError, SourceFormat};
use serde_json::{Map, Value};
use server::feedback::import::{ExportItem, ImportRow};
use store::ImportCheckpoint;

/// Longest JSON line read, in bytes.
const MAX_LINE_BYTES: usize = 1 << 20;
/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `signalbox feedback import` options.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub command: Option<ImportSubcommand>,
    #[command(flatten)]
    pub run: ImportRun,
}

/// `signalbox feedback import status`.
#[derive(clap::Subcommand, Debug)]
pub enum ImportSubcommand {
    /// The tenant's imports, newest first: one JSON object a line with the checkpoint
    /// (`next_line`, `byte_offset`), counts and status.
    Status {
        /// The tenant's id (`tn_…`) or name.
        #[arg(long)]
        tenant: String,
    },
}

/// Loading (or validating) a legacy export.
#[derive(clap::Args, Debug)]
pub struct ImportRun {
    /// The legacy export (CSV with a header line, or JSON lines, as the mapping says).
    #[arg(required = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The tenant's id (`tn_…`) or name.
    #[arg(long, required = true)]
    pub tenant: Option<String>,
    /// The mapping file (TOML; see docs/feedback.md "Migrating from a legacy system").
    #[arg(long, required = true, value_name = "M.toml")]
    pub mapping: Option<PathBuf>,
    /// Map and validate every row, print the report, store nothing.
    #[arg(long)]
    pub validate_only: bool,
    /// Write the refused rows here, one JSON object a line: `{"line", "field", "reason"}`.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Rows per batch (each batch commits with its checkpoint) [1 to 10000].
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Start this file's import over from the first row (stored items are kept: rows already
    /// imported count as duplicates).
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub custody: crate::custody_cmd::CustodyArgs,
}

/// `signalbox feedback reconcile` options.
#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// The legacy export (same format as for import).
    #[arg(value_name = "EXPORT")]
    pub export: PathBuf,
    /// The tenant's id (`tn_…`) or name.
    #[arg(long)]
    pub tenant: String,
    /// The mapping file the import used.
    #[arg(long, value_name = "M.toml")]
    pub mapping: PathBuf,
    /// Write every difference here, one JSON object a line.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Report `extra` items (held, not in the export) from this time on (RFC 3339 or Unix
    /// ms) instead of within the export's own time range.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[command(flatten)]
    pub custody: crate::custody_cmd::CustodyArgs,
}

/// One row read from the source.
struct SourceRow {
    /// The line the row starts on.
    line: u64,
    /// The row, or why it cannot be read.
    row: Result<Map<String, Value>, String>,
    /// Where the next row starts.
    next: ImportCheckpoint,
}

/// A CSV or JSON lines reader that knows each row's line and the byte offset after it.
enum SourceReader {
    Csv {
        reader: csv::Reader<File>,
        headers: Vec<String>,
        record: csv::StringRecord,
    },
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        offset: u64,
        buf: Vec<u8>,
    },
}

impl SourceReader {
    /// Opens `path`; the first row's checkpoint comes with it. `resume_at`: seek there.
    fn open(
        path: &Path,
        mapping: &Mapping,
        resume_at: Option<ImportCheckpoint>,
    ) -> anyhow::Result<(SourceReader, ImportCheckpoint)> {
        let file = File::open(path).with_context(|| format!("{}", path.display()))?;
        match mapping.format {
            SourceFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(file);
                let headers: Vec<String> = reader
                    .headers()
                    .with_context(|| format!("{}: cannot read the header line", path.display()))?
                    .iter()
                    .map(str::to_owned)
                    .collect();
                for (field, column) in mapping.source_columns() {
                    if !headers.iter().any(|h| h == column) {
                        bail!(
                            "{field}: column {column:?} is not in the header of {}",
                            path.display()
                        );
                    }
                }
                let first = checkpoint_of(reader.position());
                if let Some(at) = resume_at {
                    let mut pos = csv::Position::new();
                    pos.set_byte(u64::try_from(at.byte_offset).unwrap_or(0))
                        .set_line(u64::try_from(at.next_line).unwrap_or(1));
                    reader
                        .seek(pos)
                        .with_context(|| format!("{}: cannot seek", path.display()))?;
                }
                Ok((
                    SourceReader::Csv {
                        reader,
                        headers,
                        record: csv::StringRecord::new(),
                    },
                    first,
                ))
            }
            SourceFormat::Jsonl => {
                let mut reader = BufReader::new(file);
                let (line, offset) = match resume_at {
                    Some(at) => (
                        u64::try_from(at.next_line).unwrap_or(1),
                        u64::try_from(at.byte_offset).unwrap_or(0),
                    ),
                    None => (1, 0),
                };
                reader
                    .seek(SeekFrom::Start(offset))
                    .with_context(|| format!("{}: cannot seek", path.display()))?;
                Ok((
                    SourceReader::Jsonl {
                        reader,
                        line,
                        offset,
                        buf: Vec::new(),
                    },
                    ImportCheckpoint {
                        next_line: 1,
                        byte_offset: 0,
                    },
                ))
            }
        }
    }

    /// The next row; `None` at the end of the file.
    fn next_row(&mut self) -> anyhow::Result<Option<SourceRow>> {
        match self {
            SourceReader::Csv {
                reader,
                headers,
                record,
            } => {
                let line = reader.position().line();
                let row = match reader.read_record(record) {
                    Ok(false) => return Ok(None),
                    Ok(true) if record.len() != headers.len() => Err(format!(
                        "has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    )),
                    Ok(true) => Ok(headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                        .collect()),
                    Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                        return Err(e).context("read failed")
                    }
                    Err(e) => Err(format!("cannot be read: {e}")),
                };
                let line = record.position().map_or(line, |p| p.line());
                Ok(Some(SourceRow {
                    line,
                    row,
                    next: checkpoint_of(reader.position()),
                }))
            }
            SourceReader::Jsonl {
                reader,
                line,
                offset,
                buf,
            } => loop {
                buf.clear();
                let read = (&mut *reader)
                    .take(MAX_LINE_BYTES as u64 + 1)
                    .read_until(b'\n', buf)
                    .context("read failed")?;
                if read == 0 {
                    return Ok(None);
                }
                let this = *line;
                let mut too_long = false;
                if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
                    // Skip the rest of the line.
                    too_long = true;
                    let mut rest = 0usize;
                    loop {
                        let chunk = reader.fill_buf().context("read failed")?;
                        if chunk.is_empty() {
                            break;
                        }
                        match chunk.iter().position(|b| *b == b'\n') {
                            Some(i) => {
                                reader.consume(i + 1);
                                rest += i + 1;
                                break;
                            }
                            None => {
                                let n = chunk.len();
                                reader.consume(n);
                                rest += n;
                            }
                        }
                    }
                    *offset += rest as u64;
                }
                *offset += read as u64;
                *line += 1;
                let next = ImportCheckpoint {
                    next_line: *line as i64,
                    byte_offset: *offset as i64,
                };
                if too_long {
                    return Ok(Some(SourceRow {
                        line: this,
                        row: Err(format!("longer than {MAX_LINE_BYTES} bytes")),
                        next,
                    }));
                }
                let text = buf.strip_suffix(b"\n").unwrap_or(buf);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let row = match serde_json::from_slice::<Value>(text) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(_) => Err("must be a JSON object".to_owned()),
                    Err(e) => Err(format!("is not JSON: {e}")),
                };
                return Ok(Some(SourceRow {
                    line: this,
                    row,
                    next,
                }));
            },
        }
    }
}

fn checkpoint_of(pos: &csv::Position) -> ImportCheckpoint {
    ImportCheckpoint {
        next_line: pos.line() as i64,
        byte_offset: pos.byte() as i64,
    }
}

/// Reads and validates the mapping file; errors name the file and the field.
fn load_mapping(path: &Path) -> anyhow::Result<(Mapping, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("--mapping {}", path.display()))?;
    if bytes.len() > feedback::import::MAX_MAPPING_BYTES {
        bail!(
            "--mapping {}: over {} bytes",
            path.display(),
            feedback::import::MAX_MAPPING_BYTES
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("--mapping {}: not UTF-8", path.display()))?;
    let mapping = Mapping::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "--mapping {}: {}: {}",
            path.display(),
            e.path,
            crate::feedback_cmd::one_line(&e.message)
        )
    })?;
    Ok((mapping, sha256_hex(text.as_bytes())))
}

/// Hex SHA-256 of a file, read in 1 MiB chunks.
fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut hasher = feedback::import::ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: read failed", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish_hex())
}

/// The import id of a file: its SHA-256's first 24 hex digits.
fn import_id_of(file_sha256: &str) -> String {
    format!("imp_{}", &file_sha256[..24])
}

fn write_rejects(path: &Path, rejects: &[RowError]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        File::create(path).with_context(|| format!("--report {}", path.display()))?,
    );
    for r in rejects {
        serde_json::to_writer(&mut out, r).context("--report: write failed")?;
        out.write_all(b"\n").context("--report: write failed")?;
    }
    out.flush().context("--report: write failed")?;
    Ok(())
}

/// Runs `signalbox feedback import …`.
pub async fn import(common: crate::Common, args: ImportArgs) -> anyhow::Result<()> {
    if let Some(ImportSubcommand::Status { tenant }) = args.command {
        let store = common.open_store().await?;
        let tenant_id = crate::feedback_cmd::tenant_id(&store, &tenant).await?;
        for import in store.feedback_imports(&tenant_id).await? {
            println!("{}", serde_json::to_string(&import)?);
        }
        store.close().await;
        return Ok(());
    }
    let run = args.run;
    let (Some(file), Some(tenant), Some(mapping_path)) = (run.file, run.tenant, run.mapping) else {
        bail!("FILE, --tenant and --mapping are required");
    };
    let (mapping, mapping_sha) = load_mapping(&mapping_path)?;
    let file_sha = file_sha256(&file)?;
    let import_id = import_id_of(&file_sha);
    let file_len = std::fs::metadata(&file)
        .with_context(|| format!("{}", file.display()))?
        .len();

    if run.validate_only {
        return validate_only(&file, &mapping, &import_id, run.report.as_deref());
    }

    let store = common.open_store().await?;
    let tenant_id = crate::feedback_cmd::tenant_id(&store, &tenant).await?;
    let custody = crate::custody_cmd::serve_settings(&run.custody, &common, store.backend())?;
    let (state, _scratch) =
        crate::jobs_worker::worker_state(store.clone(), server::JobSettings::default(), custody)
            .await?;

    // Where the first row starts (after a CSV header): the checkpoint of a new import.
    let (_, first) = SourceReader::open(&file, &mapping, None)?;
    let source_name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if !run.restart {
        if let Some(existing) = store.feedback_import(&tenant_id, &import_id).await? {
            if existing.mapping_sha256 != mapping_sha {
                bail!(
                    "--mapping: import {import_id} of this file was started with another mapping \
                     (sha256 {}); pass --restart to start over with this one",
                    existing.mapping_sha256
                );
            }
        }
    }
    let import = store
        .begin_feedback_import(
            &tenant_id,
            &import_id,
            &source_name,
            &file_sha,
            &mapping_sha,
            first,
            run.restart,
            server::jobs::now_ms(),
        )
        .await?;
    if import.status == "completed" {
        eprintln!(
            "import {import_id} of {} is already complete; pass --restart to import it again",
            file.display()
        );
        println!("{}", serde_json::to_string(&import)?);
        store.close().await;
        return Ok(());
    }
    let mut at = ImportCheckpoint {
        next_line: import.next_line,
        byte_offset: import.byte_offset,
    };
    let resumed = at != first;
    if resumed {
        eprintln!(
            "resuming import {import_id} at line {} (byte {})",
            at.next_line, at.byte_offset
        );
    }
    let (mut reader, _) = SourceReader::open(&file, &mapping, resumed.then_some(at))?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }

    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = indicatif::ProgressBar::new(file_len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(at.byte_offset as u64);

    let started = Instant::now();
    let mut last_plain = Instant::now();
    let mut rows_read: u64 = 0;
    let mut totals = (import.stored, import.duplicates, import.rejected);
    let batch_size = run.batch_size as usize;
    let mut interrupted = false;
    loop {
        let from = at;
        let mut rows = Vec::with_capacity(batch_size);
        let mut rejects: Vec<RowError> = Vec::new();
        let now_ms = server::jobs::now_ms();
        let mut read_in_batch = 0usize;
        while read_in_batch < batch_size {
            let Some(source) = reader.next_row()? else {
                break;
            };
            read_in_batch += 1;
            at = source.next;
            match source.row {
                Err(reason) => rejects.push(RowError {
                    line: source.line,
                    field: "row".to_owned(),
                    reason,
                }),
                Ok(row) => match mapping.map_row(&row, source.line, &import_id, now_ms) {
                    Ok(mapped) => rows.push(ImportRow {
                        line: source.line,
                        mapped,
                    }),
                    Err(errors) => rejects.extend(errors),
                },
            }
        }
        if read_in_batch == 0 {
            break;
        }
        let outcome = match state
            .feedback()
            .import_batch(&state, &tenant_id, &import_id, rows, &rejects, from, at)
            .await
        {
            Ok(outcome) => outcome,
            // Another process moved the checkpoint (a killed importer's last commit landed
            // after this run read it, or a second importer): continue from where it is now.
            Err(server::feedback::FeedbackError::Store(store::StoreError::VersionMismatch {
                ..
            })) => {
                let current = store
                    .feedback_import(&tenant_id, &import_id)
                    .await?
                    .with_context(|| format!("import {import_id} vanished"))?;
                at = ImportCheckpoint {
                    next_line: current.next_line,
                    byte_offset: current.byte_offset,
                };
                totals = (current.stored, current.duplicates, current.rejected);
                eprintln!(
                    "import {import_id}: another process moved the checkpoint to line {}; \
                     continuing there",
                    at.next_line
                );
                if current.status == "completed" {
                    break;
                }
                reader = SourceReader::open(&file, &mapping, Some(at))?.0;
                continue;
            }
            Err(e) => bail!("feedback import: {e}"),
        };
        rows_read += read_in_batch as u64;
        totals.0 += outcome.stored;
        totals.1 += outcome.duplicates;
        totals.2 += outcome.rejected;
        let rate = rows_read as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(at.byte_offset as u64);
        bar.set_message(format!(
            "line {} · {} rows · {:.0} rows/s",
            at.next_line, rows_read, rate
        ));
        if !tty && last_plain.elapsed() >= PLAIN_PROGRESS_EVERY {
            last_plain = Instant::now();
            eprintln!(
                "import {import_id}: line {}, {rows_read} rows this run, {:.0} rows/s, {:.1}% of the file",
                at.next_line,
                rate,
                100.0 * at.byte_offset as f64 / file_len.max(1) as f64
            );
        }
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let status = if interrupted {
        "interrupted"
    } else {
        "completed"
    };
    store
        .set_feedback_import_status(&tenant_id, &import_id, status, server::jobs::now_ms())
        .await?;
    let rejects: Vec<RowError> = store
        .feedback_import_rejects(&tenant_id, &import_id, u32::MAX)
        .await?
        .into_iter()
        .map(|r| RowError {
            line: r.line as u64,
            field: r.field,
            reason: r.reason,
        })
        .collect();
    print_rejects(&rejects, run.report.as_deref())?;
    let rate = rows_read as f64 / seconds.max(1e-9);
    eprintln!(
        "import {import_id} {status}: {rows_read} rows in {seconds:.1} s ({rate:.0} rows/s); \
         {} stored, {} duplicates, {} rejected in all",
        totals.0, totals.1, totals.2
    );
    println!(
        "{}",
        serde_json::json!({
            "import_id": import_id,
            "status": status,
            "rows": rows_read,
            "seconds": seconds,
            "rows_per_s": rate,
            "stored": totals.0,
            "duplicates": totals.1,
            "rejected": totals.2,
            "next_line": at.next_line,
        })
    );
    store.close().await;
    if interrupted {
        bail!(
            "interrupted after line {}; run the same command again to resume",
            at.next_line - 1
        );
    }
    Ok(())
}

/// Lists the refused rows: into `report` when given (and a count on stderr), else the first 20
/// on stderr.
fn print_rejects(rejects: &[RowError], report: Option<&Path>) -> anyhow::Result<()> {
    match report {
        Some(path) => {
            write_rejects(path, rejects)?;
            if !rejects.is_empty() {
                eprintln!(
                    "{} refused rows written to {}",
                    rejects.len(),
                    path.display()
                );
            }
        }
        None => {
            for r in rejects.iter().take(20) {
                eprintln!("line {}: {}: {}", r.line, r.field, r.reason);
            }
            if rejects.len() > 20 {
                eprintln!("… {} more (pass --report FILE for all)", rejects.len() - 20);
            }
        }
    }
    Ok(())
}

/// `--validate-only`: maps every row, reports, stores nothing. Prints a JSON summary.
fn validate_only(
    file: &Path,
    mapping: &Mapping,
    import_id: &str,
    report: Option<&Path>,
) -> anyhow::Result<()> {
    let (mut reader, _) = SourceReader::open(file, mapping, None)?;
    let now_ms = server::jobs::now_ms();
    let mut rows = 0u64;
    let mut valid = 0u64;
    let mut rejects = Vec::new();
    let mut bad_lines = 0u64;
    while let Some(source) = reader.next_row()? {
        rows += 1;
        match source.row {
            Err(reason) => {
                bad_lines += 1;
                rejects.push(RowError {
                    line: source.line,
                    field: "row".to_owned(),
                    reason,
                })
            }
            Ok(row) => match mapping.map_row(&row, source.line, import_id, now_ms) {
                Ok(_) => valid += 1,
                Err(errors) => {
                    bad_lines += 1;
                    rejects.extend(errors)
                }
            },
        }
    }
    print_rejects(&rejects, report)?;
    println!(
        "{}",
        serde_json::json!({ "rows": rows, "valid": valid, "rejected": bad_lines })
    );
    Ok(())
}

/// Runs `signalbox feedback reconcile …`; an error (exit 1) when there are differences.
pub async fn reconcile(common: crate::Common, args: ReconcileArgs) -> anyhow::Result<()> {
    let (mapping, _) = load_mapping(&args.mapping)?;
    let since = match &args.since {
        None => None,
        Some(text) => Some(
            feedback::import::parse_time(
                &feedback::import::TimeFormat::Rfc3339,
                &Value::String(text.clone()),
            )
            .or_else(|_| text.trim().parse::<i64>().map_err(|_| ()))
            .map_err(|_| anyhow::anyhow!("--since: {text:?} is neither RFC 3339 nor Unix ms"))?,
        ),
    };
    let file_sha = file_sha256(&args.export)?;
    let import_id = import_id_of(&file_sha);
    let (mut reader, _) = SourceReader::open(&args.export, &mapping, None)?;
    let now_ms = server::jobs::now_ms();
    let mut export: HashMap<String, ExportItem> = HashMap::new();
    let mut unreadable = 0u64;
    let (mut min_ms, mut max_ms) = (i64::MAX, i64::MIN);
    while let Some(source) = reader.next_row()? {
        let Ok(row) = source.row else {
            unreadable += 1;
            continue;
        };
        match mapping.map_row(&row, source.line, &import_id, now_ms) {
            Ok(mapped) => {
                min_ms = min_ms.min(mapped.item.occurred_at_ms);
                max_ms = max_ms.max(mapped.item.occurred_at_ms);
                export.insert(
                    mapped.item.id.clone(),
                    ExportItem::of(source.line, &mapped.item),
                );
            }
            Err(_) => unreadable += 1,
        }
    }
    let range = match since {
        Some(from) => Some((from, i64::MAX)),
        None if export.is_empty() => None,
        None => Some((min_ms, max_ms)),
    };

    let store = common.open_store().await?;
    let tenant_id = crate::feedback_cmd::tenant_id(&store, &args.tenant).await?;
    let custody = crate::custody_cmd::serve_settings(&args.custody, &common, store.backend())?;
    let (state, _scratch) =
        crate::jobs_worker::worker_state(store.clone(), server::JobSettings::default(), custody)
            .await?;
    let (summary, differences) = state
        .feedback()
        .reconcile(&state, &tenant_id, &export, range)
        .await
        .map_err(|e| anyhow::anyhow!("feedback reconcile: {e}"))?;
    if let Some(path) = &args.out {
        let mut out = std::io::BufWriter::new(
            File::create(path).with_context(|| format!("--out {}", path.display()))?,
        );
        for d in &differences {
            serde_json::to_writer(&mut out, d).context("--out: write failed")?;
            out.write_all(b"\n").context("--out: write failed")?;
        }
        out.flush().context("--out: write failed")?;
    } else {
        for d in differences.iter().take(20) {
            eprintln!("{}", serde_json::to_string(d)?);
        }
        if differences.len() > 20 {
            eprintln!(
                "… {} more (pass --out FILE for all)",
                differences.len() - 20
            );
        }
    }
    let mut summary_json = serde_json::to_value(&summary)?;
    if let Some(o) = summary_json.as_object_mut() {
        o.insert("export_rows_skipped".into(), unreadable.into());
        o.insert("agrees".into(), summary.agrees().into());
    }
    println!("{summary_json}");
    store.close().await;
    if !summary.agrees() {
        bail!(
            "reconcile: {} missing, {} extra, {} different",
            summary.missing,
            summary.extra,
            summary.different
        );
    }
    Ok(())
}
