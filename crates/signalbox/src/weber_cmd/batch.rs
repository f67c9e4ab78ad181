//! `signalbox weber batch`: reviews file in, one Weber profile per user out.
//!
//! A reader thread cuts the input into blocks of whole records; worker threads parse, validate
//! and score them (VADER is most of the work); the main thread groups interactions by user. Then
//! the workers compute profiles and the main thread writes them, sorted by user id. Records are
//! numbered in input order and that number is the interaction's tiebreak, so reviews with equal
//! timestamps keep their input order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use weber::{Interaction, WeberParams, WeberProfile};

use super::reviews::{self, Scored};
use super::Format;

const BLOCK_BYTES: usize = 1 << 20;
/// No review is this long; a file without newlines must not be read into memory whole.
const MAX_LINE_BYTES: usize = 64 << 20;
const CSV_BLOCK_RECORDS: usize = 4096;
/// How many bad rows are listed before the rest are only counted.
const SHOWN_ERRORS: usize = 20;

pub struct BatchJob {
    pub input: PathBuf,
    pub input_format: Format,
    /// Where to write profiles; `None` with `write_stdout` false writes nothing (e.g. `--load`).
    pub output: Option<PathBuf>,
    pub write_stdout: bool,
    /// Also return the profiles as store records, for `--load`.
    pub collect_records: bool,
    pub output_format: Format,
    pub params: WeberParams,
    pub skip_bad_rows: bool,
    pub threads: usize,
}

pub struct BatchSummary {
    pub records: Vec<store::WeberProfileRecord>,
    pub reviews: u64,
    pub users: usize,
    pub bad_rows: u64,
    pub elapsed: Duration,
    pub peak_rss_bytes: Option<u64>,
}

/// One block of input for a worker.
enum Block {
    /// Whole JSON lines; the first is line `first_line` (1-based).
    Lines { first_line: u64, data: Vec<u8> },
    /// CSV records with their line numbers.
    Records {
        headers: Arc<csv::StringRecord>,
        rows: Vec<(u64, csv::StringRecord)>,
    },
}

#[derive(Default)]
struct BlockResult {
    scored: Vec<(u64, Scored)>,
    errors: Vec<(u64, String)>,
}

/// One output row: seed 000's WeberProfileResponse fields.
#[derive(Serialize)]
struct ProfileRow<'a> {
    user_id: &'a str,
    weber_constant: f64,
    sensitivity_segment: &'static str,
    calculation_confidence: f64,
    review_count: usize,
    bias_ratio: Option<f64>,
    last_updated: String,
}

pub fn run(job: &BatchJob) -> anyhow::Result<BatchSummary> {
    let start = Instant::now();
    let file = File::open(&job.input)
        .with_context(|| format!("FILE: cannot open {}", job.input.display()))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = progress_bar(total_bytes);

    let threads = job.threads.max(1);
    let (block_tx, block_rx) = sync_channel::<Block>(threads * 2);
    let (result_tx, result_rx) = sync_channel::<BlockResult>(threads * 2);
    let block_rx = Arc::new(Mutex::new(block_rx));

    let mut by_user: HashMap<Box<str>, Vec<Interaction>> = HashMap::new();
    let mut errors: Vec<(u64, String)> = Vec::new();
    let mut bad_rows = 0u64;
    let mut reviews = 0u64;

    let read_outcome = std::thread::scope(|scope| -> anyhow::Result<()> {
        let reader = {
            let progress = progress.clone();
            let format = job.input_format;
            scope.spawn(move || match format {
                Format::Jsonl => read_lines(file, &block_tx, &progress),
                Format::Csv => read_csv(file, &block_tx, &progress),
            })
        };
        for _ in 0..threads {
            let block_rx = Arc::clone(&block_rx);
            let result_tx = result_tx.clone();
            scope.spawn(move || score_blocks(&block_rx, &result_tx));
        }
        drop(result_tx);
        for result in result_rx {
            bad_rows += result.errors.len() as u64;
            for e in result.errors {
                if errors.len() < SHOWN_ERRORS {
                    errors.push(e);
                }
            }
            for (record, s) in result.scored {
                reviews += 1;
                by_user.entry(s.user_id).or_default().push(Interaction::new(
                    s.sentiment,
                    s.time_ms,
                    record,
                ));
            }
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("FILE: the reader thread failed"))?
    });
    progress.finish_and_clear();
    read_outcome?;

    if bad_rows > 0 {
        errors.sort_by_key(|(line, _)| *line);
        for (line, message) in &errors {
            eprintln!("{}: line {line}: {message}", job.input.display());
        }
        if bad_rows > errors.len() as u64 {
            eprintln!("… and {} more bad rows", bad_rows - errors.len() as u64);
        }
        if !job.skip_bad_rows {
            bail!(
                "FILE: {bad_rows} bad rows (listed above); fix them or pass --skip-bad-rows to profile the {reviews} good ones"
            );
        }
    }
    if reviews == 0 {
        bail!("FILE: {} holds no reviews", job.input.display());
    }

    let mut users: Vec<(Box<str>, Vec<Interaction>)> = by_user.into_iter().collect();
    users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let profiles = compute_profiles(&users, &job.params, threads)?;
    if job.output.is_some() || job.write_stdout {
        write_profiles(job, &users, &profiles)?;
    }
    let records = if job.collect_records {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        users
            .iter()
            .zip(&profiles)
            .map(|((user, events), p)| store::WeberProfileRecord {
                user_id: user.to_string(),
                weber_constant: p.weber_constant,
                calculation_confidence: p.calculation_confidence,
                sensitivity_segment: p.sensitivity_segment.as_str().to_owned(),
                bias_ratio: p.bias_ratio,
                review_count: events.len() as i64,
                window_len: p.window_len as i64,
                newest_event_ms: p.newest_time_ms,
                updated_at_ms: now_ms,
            })
            .collect()
    } else {
        Vec::new()
    };

    Ok(BatchSummary {
        records,
        reviews,
        users: users.len(),
        bad_rows,
        elapsed: start.elapsed(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "reading {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Cuts a JSONL file into blocks of whole lines.
fn read_lines(
    mut file: File,
    tx: &std::sync::mpsc::SyncSender<Block>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    let mut next_line = 1u64;
    let mut buf = vec![0u8; BLOCK_BYTES];
    loop {
        let n = file.read(&mut buf).context("FILE: read failed")?;
        progress.inc(n as u64);
        if n == 0 {
            if !carry.is_empty() {
                let _ = tx.send(Block::Lines {
                    first_line: next_line,
                    data: std::mem::take(&mut carry),
                });
            }
            return Ok(());
        }
        let before = carry.len();
        carry.extend_from_slice(&buf[..n]);
        // Only the new bytes can hold the block's last newline; scanning them alone keeps
        // reading linear however long a line is.
        let Some(pos) = buf[..n].iter().rposition(|b| *b == b'\n') else {
            if carry.len() > MAX_LINE_BYTES {
                bail!(
                    "FILE: line {next_line} is longer than {} MiB; is this a JSON-lines file?",
                    MAX_LINE_BYTES >> 20
                );
            }
            continue;
        };
        let rest = carry.split_off(before + pos + 1);
        let data = std::mem::replace(&mut carry, rest);
        let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
        if tx
            .send(Block::Lines {
                first_line: next_line,
                data,
            })
            .is_err()
        {
            return Ok(()); // workers stopped; the main thread reports why
        }
        next_line += lines;
    }
}

/// CSV fields may hold newlines, so records are parsed here and only scored in parallel.
fn read_csv(
    file: File,
    tx: &std::sync::mpsc::SyncSender<Block>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(progress.wrap_read(file));
    let headers = Arc::new(
        reader
            .headers()
            .context("FILE: cannot read the CSV header")?
            .clone(),
    );
    for required in ["user_id", "timestamp"] {
        if !headers.iter().any(|h| h == required) {
            bail!("FILE: the CSV header has no `{required}` column");
        }
    }
    let mut rows = Vec::with_capacity(CSV_BLOCK_RECORDS);
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("FILE: line {line}: malformed CSV: {e}")
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        rows.push((line, record.clone()));
        if rows.len() == CSV_BLOCK_RECORDS {
            let block = Block::Records {
                headers: Arc::clone(&headers),
                rows: std::mem::replace(&mut rows, Vec::with_capacity(CSV_BLOCK_RECORDS)),
            };
            if tx.send(block).is_err() {
                return Ok(());
            }
        }
    }
    if !rows.is_empty() {
        let _ = tx.send(Block::Records { headers, rows });
    }
    Ok(())
}

fn score_blocks(
    blocks: &Mutex<Receiver<Block>>,
    results: &std::sync::mpsc::SyncSender<BlockResult>,
) {
    let mut analyzer = sentiment::Analyzer::new();
    loop {
        // A poisoned lock means another worker panicked; the receiver itself is still sound.
        let block = match blocks.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(block) => block,
            Err(_) => return,
        };
        let mut out = BlockResult::default();
        match block {
            Block::Lines { first_line, data } => {
                for (i, raw) in data.split(|b| *b == b'\n').enumerate() {
                    let line = first_line + i as u64;
                    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                    if raw.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let scored = std::str::from_utf8(raw)
                        .map_err(|_| "not valid UTF-8".to_owned())
                        .and_then(reviews::parse_json_line)
                        .and_then(|row| reviews::score(&row, &mut analyzer));
                    match scored {
                        Ok(s) => out.scored.push((line, s)),
                        Err(e) => out.errors.push((line, e)),
                    }
                }
            }
            Block::Records { headers, rows } => {
                for (line, record) in &rows {
                    let scored = record
                        .deserialize::<reviews::ReviewRow>(Some(&headers))
                        .map_err(|e| csv_error(&e))
                        .and_then(|row| reviews::score(&row, &mut analyzer));
                    match scored {
                        Ok(s) => out.scored.push((*line, s)),
                        Err(e) => out.errors.push((*line, e)),
                    }
                }
            }
        }
        if results.send(out).is_err() {
            return;
        }
    }
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(field) => format!("column {}: {}", field + 1, err.kind()),
            None => err.kind().to_string(),
        },
        _ => e.to_string(),
    }
}

fn compute_profiles(
    users: &[(Box<str>, Vec<Interaction>)],
    params: &WeberParams,
    threads: usize,
) -> anyhow::Result<Vec<WeberProfile>> {
    let chunk = users.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut engine = weber::Engine::new(*params);
                    part.iter()
                        .map(|(user, events)| {
                            engine
                                .profile(events)
                                .with_context(|| format!("user {user}: profile failed"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(users.len());
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a profile worker failed"))??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// Writes to a temporary file beside the target and renames it into place, so a failed run
/// never leaves a half-written output behind.
fn write_profiles(
    job: &BatchJob,
    users: &[(Box<str>, Vec<Interaction>)],
    profiles: &[WeberProfile],
) -> anyhow::Result<()> {
    match &job.output {
        None => {
            let stdout = std::io::stdout().lock();
            write_rows(BufWriter::new(stdout), job.output_format, users, profiles)
                .context("stdout: write failed")
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("out: cannot write in {}", dir.display()))?;
            write_rows(
                BufWriter::new(tmp.as_file()),
                job.output_format,
                users,
                profiles,
            )
            .with_context(|| format!("out: write to {} failed", path.display()))?;
            tmp.as_file().sync_all().context("out: sync failed")?;
            tmp.persist(path)
                .with_context(|| format!("out: cannot create {}", path.display()))?;
            Ok(())
        }
    }
}

fn write_rows<W: Write>(
    mut out: W,
    format: Format,
    users: &[(Box<str>, Vec<Interaction>)],
    profiles: &[WeberProfile],
) -> anyhow::Result<()> {
    let rows = users
        .iter()
        .zip(profiles)
        .map(|((user, events), p)| ProfileRow {
            user_id: user,
            weber_constant: p.weber_constant,
            sensitivity_segment: p.sensitivity_segment.as_str(),
            calculation_confidence: p.calculation_confidence,
            review_count: events.len(),
            bias_ratio: p.bias_ratio,
            last_updated: p.newest_time_ms.map(server::rfc3339_ms).unwrap_or_default(),
        });
    match format {
        Format::Jsonl => {
            for row in rows {
                serde_json::to_writer(&mut out, &row)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            for row in rows {
                writer.serialize(row)?;
            }
            writer.flush()?;
        }
    }
    Ok(())
}

/// The process's peak resident memory, where the platform tells.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}
