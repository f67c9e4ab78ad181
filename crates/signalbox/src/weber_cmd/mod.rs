//! `signalbox weber …`: Weber sensitivity profiles from review files.

mod batch;
mod gen;
mod gen_tenant;
mod predict;
mod predict_input;
mod reviews;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A file format, given with `--format`/`--out-format` or inferred from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    /// `.csv` means CSV; anything else JSON lines.
    fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum WeberCommand {
    /// Compute one Weber profile per user from a reviews file (Amazon Reviews 2023 JSONL shape,
    /// or CSV with the same columns: rating, title, text, user_id, timestamp in ms, parent_asin,
    /// verified_purchase, helpful_vote).
    Batch(BatchArgs),
    /// Write a realistic synthetic reviews file for benchmarks and tests (same seed, same file).
    Gen(GenArgs),
    /// Predict purchases, churn risk and lifetime value per customer from a transactions file:
    /// BG/NBD and Gamma-Gamma fitted on the purchases up to --calibration-end, with the rest of
    /// the file as the holdout that measures how well they did (and trains the Weber-enhanced
    /// churn model when --weber-profiles is given).
    Predict(predict::PredictArgs),
}

#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// The reviews file.
    file: PathBuf,
    /// Input format [default: from the file name; .csv is CSV, anything else JSON lines].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write profiles here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Output format [default: from --out's name, JSON lines on stdout].
    #[arg(long, value_enum)]
    out_format: Option<Format>,
    /// Interactions per profile: the most recent W.
    #[arg(long, default_value_t = weber::DEFAULT_WINDOW)]
    window: usize,
    /// Noise floor added to |baseline| in every ratio.
    #[arg(long, default_value_t = weber::DEFAULT_EPS)]
    eps: f64,
    /// Profile the good rows even if some are bad (bad rows are still listed on stderr).
    #[arg(long)]
    skip_bad_rows: bool,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Store the profiles for this tenant (same --data-dir / DATABASE_URL as `serve`), replacing
    /// the users' existing profiles. Safe to re-run.
    #[arg(long, requires = "tenant")]
    load: bool,
    /// The tenant (`tn_…`) whose profiles --load writes.
    #[arg(long, requires = "load")]
    tenant: Option<String>,
}

/// Profiles written per store transaction while loading: a failure part-way keeps what was
/// written, and re-running the load (an upsert) completes it.
const LOAD_CHUNK: usize = 10_000;

#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// How many users.
    #[arg(
        long,
        required_unless_present = "purchases",
        conflicts_with = "purchases"
    )]
    users: Option<usize>,
    /// How many reviews in total.
    #[arg(
        long,
        required_unless_present = "purchases",
        conflicts_with = "purchases"
    )]
    reviews: Option<usize>,
    /// Simulate a tenant instead: write these customers' purchases here (CSV
    /// customer_id,date,amount, the input of `weber predict`) and their reviews to FILE.
    /// Purchases follow BG/NBD with Gamma-Gamma spend; sensitive customers (by their reviews)
    /// drop out sooner, so Weber profiles carry churn signal.
    #[arg(long, value_name = "CSV", requires = "customers")]
    purchases: Option<PathBuf>,
    /// How many simulated customers (with --purchases).
    #[arg(long, requires = "purchases")]
    customers: Option<usize>,
    /// First day of the simulated history (with --purchases).
    #[arg(long, value_name = "DATE", default_value = "2024-01-01")]
    start: String,
    /// Days of simulated history (with --purchases); it must end by today.
    #[arg(long, default_value_t = 730)]
    days: u32,
    /// How strongly sensitivity raises dropout (with --purchases): per-purchase dropout
    /// p becomes 1 - (1 - p)^(1 + effect * w), w = 1 for Highly_Sensitive down to 0 for
    /// Insensitive; 0 gives Weber features no churn signal.
    #[arg(long, default_value_t = 2.0)]
    dropout_effect: f64,
    /// Random seed; the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output format [default: from the file name; .csv is CSV, anything else JSON lines].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The file to write.
    file: PathBuf,
}

pub fn run(common: &crate::Common, cmd: WeberCommand) -> anyhow::Result<()> {
    match cmd {
        WeberCommand::Batch(args) => {
            let params = weber::WeberParams::new(args.window, args.eps)
                .map_err(|e| anyhow::anyhow!("window/eps: {e}"))?;
            let threads = args.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            if threads == 0 || threads > 256 {
                anyhow::bail!("threads: must be between 1 and 256");
            }
            let load_into = match (args.load, args.tenant) {
                (true, Some(tenant)) => Some(tenant),
                _ => None,
            };
            let job = batch::BatchJob {
                write_stdout: args.out.is_none() && load_into.is_none(),
                collect_records: load_into.is_some(),
                input_format: args.format.unwrap_or_else(|| Format::of(&args.file)),
                output_format: args
                    .out_format
                    .or_else(|| args.out.as_deref().map(Format::of))
                    .unwrap_or(Format::Jsonl),
                input: args.file,
                output: args.out,
                params,
                skip_bad_rows: args.skip_bad_rows,
                threads,
            };
            // Check the tenant before the work, so a typo fails in a second, not after it.
            let runtime = tokio::runtime::Handle::current();
            let store = match &load_into {
                Some(tenant) => Some(runtime.block_on(async {
                    let store = common.open_store().await?;
                    if store.tenant(tenant).await?.is_none() {
                        anyhow::bail!("tenant: no tenant '{tenant}'");
                    }
                    Ok::<_, anyhow::Error>(store)
                })?),
                None => None,
            };
            let summary = batch::run(&job)?;
            if let (Some(store), Some(tenant)) = (&store, &load_into) {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(summary.records.len() as u64),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                runtime.block_on(async {
                    for chunk in summary.records.chunks(LOAD_CHUNK) {
                        store
                            .upsert_weber_profiles(tenant, chunk)
                            .await
                            .map_err(|e| anyhow::anyhow!("load: {e}"))?;
                        bar.inc(chunk.len() as u64);
                    }
                    store.close().await;
                    Ok::<_, anyhow::Error>(())
                })?;
                bar.finish_and_clear();
                eprintln!(
                    "weber batch: stored {} profiles for tenant {tenant}",
                    summary.records.len()
                );
            }
            let secs = summary.elapsed.as_secs_f64();
            let peak = summary
                .peak_rss_bytes
                .map(|b| format!(", peak memory {:.0} MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_default();
            eprintln!(
                "weber batch: {} reviews, {} users, {} bad rows in {:.2} s ({:.0} reviews/s on {} threads{peak})",
                summary.reviews,
                summary.users,
                summary.bad_rows,
                secs,
                summary.reviews as f64 / secs.max(1e-9),
                job.threads,
            );
            Ok(())
        }
        WeberCommand::Predict(args) => predict::run(&args),
        WeberCommand::Gen(args) => {
            let format = args.format.unwrap_or_else(|| Format::of(&args.file));
            if let (Some(purchases), Some(customers)) = (&args.purchases, args.customers) {
                let start_day = predict_input::parse_date(&args.start)
                    .map_err(|e| anyhow::anyhow!("--start: {e}"))?;
                let last_day = i64::from(start_day) + i64::from(args.days) - 1;
                if args.days == 0 || last_day > i64::from(predict_input::today()) {
                    anyhow::bail!(
                        "--days: the history must have at least one day and end by today"
                    );
                }
                let (purchases_written, reviews_written) = gen_tenant::run(&gen_tenant::Job {
                    customers,
                    seed: args.seed,
                    start_day,
                    days: args.days,
                    dropout_effect: args.dropout_effect,
                    reviews: &args.file,
                    format,
                    purchases,
                })?;
                eprintln!(
                    "weber gen: {customers} customers, {purchases_written} purchases to {}, {reviews_written} reviews to {}",
                    purchases.display(),
                    args.file.display()
                );
                return Ok(());
            }
            let (Some(users), Some(reviews)) = (args.users, args.reviews) else {
                anyhow::bail!("--users and --reviews: both are required without --purchases");
            };
            gen::run(&gen::GenJob {
                users,
                reviews,
                seed: args.seed,
                output: &args.file,
                format,
            })
            .with_context(|| format!("weber gen {}", args.file.display()))
        }
    }
}

/// Writes to a temporary file beside `path` and renames it into place, so a failed or
/// interrupted run never leaves a half-written output behind (nor replaces a good one).
fn write_atomically(
    path: &Path,
    flag: &str,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("{flag}: cannot write in {}", dir.display()))?;
    {
        let mut out = BufWriter::new(tmp.as_file());
        write(&mut out).with_context(|| format!("{flag}: write to {} failed", path.display()))?;
        out.flush()
            .with_context(|| format!("{flag}: write to {} failed", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("{flag}: sync of {} failed", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("{flag}: cannot create {}", path.display()))?;
    Ok(())
}
