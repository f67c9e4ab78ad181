//! `signalbox weber predict`: a transactions file in, one prediction per customer out, fitted
//! the way the `lifetimes` workflow does (calibration up to a date, holdout after it), through
//! the same `lifetime::model::fit_model` use case the server's refit job calls.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::predict_input::{self, format_day, parse_date};

/// The summary period: purchases in the same period merge into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeriodArg {
    Day,
    Week,
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Transactions CSV with a header naming customer_id, date and amount (dates YYYY-MM-DD or
    /// YYYYMMDD; other columns are ignored; amounts >= 0 in one currency).
    #[arg(long, value_name = "FILE")]
    transactions: PathBuf,
    /// Last day of the calibration period: the models are fitted on purchases up to and
    /// including it, and predictions are made as of it.
    #[arg(long, value_name = "DATE")]
    calibration_end: String,
    /// Last day of the holdout period, which measures the predictions against what happened
    /// [default: the latest purchase in the file].
    #[arg(long, value_name = "DATE")]
    observation_end: Option<String>,
    /// Summary period (recency, T and the horizons are counted in it).
    #[arg(long, value_enum, default_value = "day")]
    period: PeriodArg,
    /// Months of customer lifetime value.
    #[arg(long, default_value_t = 12)]
    horizon: u32,
    /// Monthly discount rate of customer lifetime value.
    #[arg(long, default_value_t = 0.01)]
    discount_rate: f64,
    /// Churn horizon: churn risk is the probability of no purchase within this many days.
    #[arg(long, default_value_t = 30)]
    churn_horizon_days: u32,
    /// Weber profiles (the JSON lines `signalbox weber batch` writes), joined on
    /// user_id = customer_id, for the Weber-enhanced churn model.
    #[arg(long, value_name = "FILE")]
    weber_profiles: Option<PathBuf>,
    /// Predictions, one JSON line per customer seen by --calibration-end (written atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The fitted parameters as JSON.
    #[arg(long, value_name = "FILE")]
    params_out: Option<PathBuf>,
    /// The holdout evaluation as JSON (accuracy, weekly tracking, churn AUCs).
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
}

/// Bounds that keep a typo from asking for nonsense (a 1000-year CLV, a 300% monthly rate).
const MAX_HORIZON_MONTHS: u32 = 1200;
const MAX_CHURN_HORIZON_DAYS: u32 = 3650;

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let calibration_end =
        parse_date(&args.calibration_end).map_err(|e| anyhow!("--calibration-end: {e}"))?;
    let observation_end = args
        .observation_end
        .as_deref()
        .map(parse_date)
        .transpose()
        .map_err(|e| anyhow!("--observation-end: {e}"))?;
    if args.horizon == 0 || args.horizon > MAX_HORIZON_MONTHS {
        bail!("--horizon: must be between 1 and {MAX_HORIZON_MONTHS} months");
    }
    if !(0.0..1.0).contains(&args.discount_rate) {
        bail!("--discount-rate: must be a monthly rate in [0, 1)");
    }
    if args.churn_horizon_days == 0 || args.churn_horizon_days > MAX_CHURN_HORIZON_DAYS {
        bail!("--churn-horizon-days: must be between 1 and {MAX_CHURN_HORIZON_DAYS}");
    }
    let today = predict_input::today();
    let purchases = predict_input::read_transactions(&args.transactions, today)?;
    let first = purchases
        .iter()
        .map(|p| p.day)
        .min()
        .unwrap_or(calibration_end);
    let last = purchases
        .iter()
        .map(|p| p.day)
        .max()
        .unwrap_or(calibration_end);
    let observation_end = observation_end.unwrap_or(last.max(calibration_end));
    if calibration_end < first {
        bail!(
            "--calibration-end: {} is before the first purchase ({})",
            format_day(calibration_end),
            format_day(first)
        );
    }
    if observation_end < calibration_end {
        bail!(
            "--observation-end: {} is before --calibration-end ({})",
            format_day(observation_end),
            format_day(calibration_end)
        );
    }
    if last > observation_end {
        bail!(
            "--observation-end: {} is before the last purchase in {} ({})",
            format_day(observation_end),
            args.transactions.display(),
            format_day(last)
        );
    }
    let profiles = match &args.weber_profiles {
        Some(path) => predict_input::read_profiles(path)?,
        None => Default::default(),
    };
    let _ = profiles;
    bail!("the prediction model is not available in this build yet")
}

/// Writes to a temporary file beside `path` and renames it into place, so a failed or
/// interrupted run never leaves a half-written output behind (nor replaces a good one).
pub(crate) fn write_atomically(
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

/// Writes one JSON document, pretty-printed, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, flag: &str, value: &T) -> anyhow::Result<()> {
    write_atomically(path, flag, |out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}
