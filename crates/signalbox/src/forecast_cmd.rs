//! `signalbox forecast …`: build an analog-ensemble model from station observations, forecast
//! with it, and verify it on a held-out period. The engine is `analog::forecast`; this module
//! reads and writes files and prints.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use analog::forecast::{
    BuildOptions, ForecastError, ForecastModel, ForecastRequest, Horizon, IndexPlan, Members, Mode,
    Similarity, VerificationReport, VerifyOptions,
};
use anyhow::{anyhow, bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How many bad rows are listed before the rest are only counted.
const SHOWN_BAD_ROWS: usize = 20;

#[derive(clap::Subcommand, Debug)]
pub enum ForecastCommand {
    /// Build a model directory from a station CSV (all stations, all horizons).
    Build(BuildArgs),
    /// Forecast one station, time and horizon with a built model.
    Run(RunArgs),
    /// Score the model on a held-out period against persistence and climatology.
    Verify(VerifyArgs),
    /// Write a deterministic synthetic station archive (CSV) for measuring at scale.
    Generate(GenerateArgs),
    /// Write the state vectors one station-horizon's index searches (raw little-endian f32).
    ExportVectors(ExportVectorsArgs),
    /// Recall@k of each horizon's index against exact search, and search times.
    Recall(RecallArgs),
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Station CSV (columns origin, time_hour, temp, dewp, humid, wind_dir, wind_speed,
    /// precip, pressure; see docs/forecast.md).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Model directory to write (created if missing; its files are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Trailing window of the state vector, hours.
    #[arg(long, default_value_t = BuildOptions::default().window)]
    window: usize,
    /// Weight of the hour-of-day components of the state (0 ignores the time of day).
    #[arg(long, default_value_t = BuildOptions::default().hour_weight)]
    hour_weight: f32,
    /// Weight of the time-of-year components of the state (0 ignores the season).
    #[arg(long, default_value_t = BuildOptions::default().season_weight)]
    season_weight: f32,
    /// Ensemble members: the analogs' later values (absolute) or the current value plus the
    /// analogs' change (delta).
    #[arg(long, default_value = BuildOptions::default().members.name())]
    members: String,
    /// AnEn weight per predictor, as NAME=WEIGHT pairs (e.g. precip=0.5); unnamed ones are 1.
    #[arg(long, value_name = "PAIRS")]
    weights: Option<String>,
    /// Index per horizon: auto, seed, flat, ivfpq, ivfpq-rerank, or a list such as
    /// 6h=flat,24h=ivfpq-rerank (unlisted horizons: auto). See docs/forecast.md.
    #[arg(long, value_name = "PLAN", default_value = "auto")]
    index: String,
    /// Bytes the served model may keep resident (e.g. 2GiB, 500MB, 1000000): `auto` horizons
    /// switch to IVF-PQ, largest stations first, until the model fits [default: no budget].
    #[arg(long, value_name = "BYTES")]
    memory_budget: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model directory written by `forecast build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Station code, e.g. JFK.
    #[arg(long)]
    station: String,
    /// Issue time, RFC 3339 on the hour (e.g. 2013-11-05T06:00:00Z) [default: the station's
    /// latest state].
    #[arg(long)]
    at: Option<String>,
    /// Horizon: 6h, 12h, 24h or 48h.
    #[arg(long, default_value = "24h")]
    horizon: String,
    /// Comma-separated variables: t2m, dewpoint, humidity, u10, v10, msl, precip.
    #[arg(long, default_value = "t2m,u10,v10,msl,precip")]
    vars: String,
    /// Ensemble size (overrides --mode).
    #[arg(long)]
    k: Option<String>,
    /// Ensemble size by name: fast (5), default (10), accurate (20).
    #[arg(long, default_value = "default")]
    mode: String,
    /// Similarity: anen (Delle Monache et al. 2013) or seed (L2 over the stacked state).
    #[arg(long, default_value = "anen")]
    similarity: String,
    /// Print JSON (schema in docs/forecast.md) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Model directory written by `forecast build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// First held-out time (date or RFC 3339); the model is retrained on what came before.
    #[arg(long)]
    holdout_from: String,
    /// End of the held-out issue times (exclusive) [default: the end of the data].
    #[arg(long)]
    holdout_until: Option<String>,
    /// Ensemble size (overrides --mode).
    #[arg(long)]
    k: Option<String>,
    /// Ensemble size by name: fast (5), default (10), accurate (20).
    #[arg(long, default_value = "default")]
    mode: String,
    /// Comma-separated similarities to score: seed, anen.
    #[arg(long, default_value = "seed,anen")]
    similarity: String,
    /// Comma-separated index plans to score, each by rebuilding the training model with it:
    /// auto, seed, flat, ivfpq, ivfpq-rerank; with `flat` among them, the text output gives
    /// each other plan's largest CRPS difference from exact search [default: the model's plan].
    #[arg(long, value_name = "PLANS")]
    index_plans: Option<String>,
    /// Print JSON (schema in docs/forecast.md) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ForecastCommand) -> anyhow::Result<()> {
    match cmd {
        ForecastCommand::Build(args) => build(&args),
        ForecastCommand::Run(args) => forecast(&args),
        ForecastCommand::Verify(args) => verify(&args),
        ForecastCommand::Generate(args) => generate(&args),
        ForecastCommand::ExportVectors(args) => export_vectors(&args),
        ForecastCommand::Recall(args) => recall(&args),
    }
}

pub use server::forecast_files::BuildSummary;
use server::forecast_files::{BuildProgress, ModelFileError};

/// Parses `csv_text`, builds the model and writes it to `out` (each file written to a
/// temporary name and renamed; the manifest last, so a directory with a manifest is complete),
/// then loads it. `progress(written, stations)` is called as each station's files are written.
pub fn build_model_dir(
    csv_text: &str,
    out: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<BuildSummary> {
    server::forecast_files::build_model_dir(csv_text, out, options, &mut |event| {
        if let BuildProgress::Written {
            written, stations, ..
        } = event
        {
            progress(written, stations);
        }
    })
    .map_err(build_error)
}

fn build_error(e: ModelFileError) -> anyhow::Error {
    match e {
        // Kept typed: `build` names the data file for parse errors.
        ModelFileError::Data(e) => anyhow::Error::new(e),
        // Option errors name the build flag.
        ModelFileError::Build(ForecastError::InvalidOption { field, message }) => {
            let flag = match field {
                "predictor_weights" => "weights".to_owned(),
                other => other.replace('_', "-"),
            };
            anyhow!("--{flag}: {message}")
        }
        ModelFileError::Build(e) => anyhow!("{e}"),
        other => anyhow!("--out: {other}"),
    }
}

/// Loads a model directory: the manifest, then each file through a memory map. A corrupt,
/// foreign or replaced file is refused with its path.
pub fn load_model(dir: &Path) -> anyhow::Result<ForecastModel> {
    server::forecast_files::load_model_dir(dir).map_err(|e| match e {
        e @ ModelFileError::NoManifest { .. } => anyhow!("--index: {e}"),
        other => anyhow!("{other}"),
    })
}

fn progress_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{label} {{bar:40}} {{pos}}/{{len}} {{elapsed}}"))
    {
        bar.set_style(style);
    }
    bar
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let members: Members = args
        .members
        .parse()
        .map_err(|e| anyhow!("--members: {e}"))?;
    let mut predictor_weights = BuildOptions::default().predictor_weights;
    for pair in args.weights.iter().flat_map(|w| w.split(',')) {
        let (name, weight) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--weights: '{pair}' is not NAME=WEIGHT"))?;
        let v: analog::forecast::Variable =
            name.trim().parse().map_err(|e| anyhow!("--weights: {e}"))?;
        predictor_weights[v.index()] = weight
            .trim()
            .parse()
            .map_err(|_| anyhow!("--weights: '{weight}' is not a number"))?;
    }
    let index: IndexPlan = args.index.parse().map_err(|e| anyhow!("--index: {e}"))?;
    let memory_budget = args
        .memory_budget
        .as_deref()
        .map(|raw| crate::config::parse_byte_size(raw).map_err(|e| anyhow!("--memory-budget: {e}")))
        .transpose()?;
    let options = BuildOptions {
        window: args.window,
        hour_weight: args.hour_weight,
        season_weight: args.season_weight,
        predictor_weights,
        members,
        index,
        memory_budget,
    };
    let file = std::fs::File::open(&args.data)
        .with_context(|| format!("--data: cannot read {}", args.data.display()))?;
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let stations_bar = bars.add(progress_bar("stations", 1));
    // One bar per station being built (two at a time), removed when its files are written.
    let mut station_bars: Vec<(String, ProgressBar)> = Vec::new();
    let summary = server::forecast_files::build_model_dir_from_reader(
        std::io::BufReader::new(file),
        &args.out,
        &options,
        &mut |event| match event {
            BuildProgress::Parsed { stations, .. } => {
                stations_bar.set_length(stations as u64);
            }
            BuildProgress::Station {
                station,
                done,
                total,
            } => {
                let bar = match station_bars.iter().position(|(s, _)| s == station) {
                    Some(i) => &station_bars[i].1,
                    None => {
                        let bar = bars.add(progress_bar(&format!("  {station:<16}"), 1));
                        station_bars.push((station.to_owned(), bar));
                        &station_bars[station_bars.len() - 1].1
                    }
                };
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            BuildProgress::Written {
                station, written, ..
            } => {
                if let Some(i) = station_bars.iter().position(|(s, _)| s == station) {
                    let (_, bar) = station_bars.swap_remove(i);
                    bar.finish_and_clear();
                    bars.remove(&bar);
                }
                stations_bar.set_position(written as u64);
            }
        },
    )
    .map_err(build_error)
    .map_err(|e| {
        // Parse errors name the file; option errors name the flag.
        if e.downcast_ref::<analog::forecast::DataError>().is_some() {
            anyhow!("{}: {e}", args.data.display())
        } else {
            e
        }
    })?;
    stations_bar.finish_and_clear();
    for (line, reason) in summary.bad_rows.iter().take(SHOWN_BAD_ROWS) {
        eprintln!(
            "{}: line {line}: {reason} (row skipped: its hour is a gap)",
            args.data.display()
        );
    }
    if summary.bad_rows.len() > SHOWN_BAD_ROWS {
        eprintln!(
            "… and {} more bad rows",
            summary.bad_rows.len() - SHOWN_BAD_ROWS
        );
    }
    let mut counts = String::new();
    for (station, horizon, n) in summary.model.analog_counts() {
        if horizon == Horizon::H24 {
            let _ = write!(counts, " {station} {n}");
        }
    }
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for info in summary.model.indexes() {
        let kind = info.kind.to_string();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "forecast build: {} rows, {} stations, {} bad rows; 24h analogs:{counts}; indexes: {}; \
         {:.1} MiB in {} ({:.1} MiB resident when served) ({}) in {:.2} s",
        summary.rows,
        summary.stations,
        summary.bad_rows.len(),
        kinds.join(", "),
        summary.bytes_written as f64 / (1024.0 * 1024.0),
        args.out.display(),
        summary.model.resident_bytes() as f64 / (1024.0 * 1024.0),
        summary.model.version(),
        summary.elapsed.as_secs_f64(),
    );
    Ok(())
}

fn parse_k(k: Option<&str>, mode: &str) -> anyhow::Result<usize> {
    match k {
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| anyhow!("--k: '{raw}' is not a whole number")),
        None => Ok(mode
            .parse::<Mode>()
            .map_err(|e| anyhow!("--mode: {e}"))?
            .k()),
    }
}

/// Names the flag a forecast error is about.
fn flag_error(e: ForecastError) -> anyhow::Error {
    match e {
        ForecastError::UnknownStation { .. }
        | ForecastError::NoState { .. }
        | ForecastError::KOutOfRange { .. }
        | ForecastError::NoVariables => anyhow!("--{e}"),
        ForecastError::InvalidOption { field, message } => {
            anyhow!("--{}: {message}", field.replace('_', "-"))
        }
        other => anyhow!("{other}"),
    }
}

fn forecast(args: &RunArgs) -> anyhow::Result<()> {
    let horizon: Horizon = args
        .horizon
        .parse()
        .map_err(|e| anyhow!("--horizon: {e}"))?;
    let vars = analog::forecast::parse_variables(&args.vars).map_err(|e| anyhow!("--vars: {e}"))?;
    if vars.is_empty() {
        bail!("--vars: at least one variable is required");
    }
    let k = parse_k(args.k.as_deref(), &args.mode)?;
    let similarity: Similarity = args
        .similarity
        .parse()
        .map_err(|e| anyhow!("--similarity: {e}"))?;
    let at = args
        .at
        .as_deref()
        .map(|raw| analog::forecast::parse_time(raw).map_err(|e| anyhow!("--at: {e}")))
        .transpose()?;
    let model = load_model(&args.index)?;
    let forecast = model
        .forecast(&ForecastRequest {
            station: args.station.clone(),
            at,
            horizon,
            vars,
            k,
            similarity,
        })
        .map_err(flag_error)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &forecast)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} issued {} valid {} (+{}), k={} {} analogs, {} members, model {}",
        forecast.station,
        forecast.issued_at,
        forecast.valid_at,
        forecast.horizon,
        forecast.k,
        forecast.similarity,
        forecast.member_kind,
        model.version()
    )?;
    writeln!(
        out,
        "{:<9} {:>5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "variable", "unit", "mean", "median", "p10", "p90", "spread", "observed"
    )?;
    for v in &forecast.variables {
        writeln!(
            out,
            "{:<9} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.2} {:>9}",
            v.name,
            v.unit,
            v.mean,
            v.median,
            v.p10,
            v.p90,
            v.spread,
            v.observed.map_or("-".to_owned(), |o| format!("{o:.2}"))
        )?;
    }
    if let Some(info) = model
        .indexes()
        .into_iter()
        .find(|i| i.station == forecast.station && i.horizon == horizon)
    {
        writeln!(
            out,
            "index: {} over {} analogs{}",
            info.kind,
            info.vectors,
            info.nprobe
                .map_or(String::new(), |p| format!(" (nprobe {p})"))
        )?;
    }
    writeln!(out, "analogs (nearest first):")?;
    for a in &forecast.analogs {
        writeln!(out, "  {}  distance {:.4}", a.time, a.distance)?;
    }
    Ok(())
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let holdout_from = analog::forecast::parse_time(&args.holdout_from)
        .map_err(|e| anyhow!("--holdout-from: {e}"))?;
    let holdout_until = args
        .holdout_until
        .as_deref()
        .map(|raw| analog::forecast::parse_time(raw).map_err(|e| anyhow!("--holdout-until: {e}")))
        .transpose()?;
    let k = parse_k(args.k.as_deref(), &args.mode)?;
    let similarities = parse_similarities(&args.similarity)?;
    let mut indexes: Vec<IndexPlan> = Vec::new();
    for name in args
        .index_plans
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
    {
        // A per-horizon plan (`24h=ivfpq`) contains commas itself, so only whole-model plans
        // are listed here.
        let plan: IndexPlan = name.parse().map_err(|e| anyhow!("--index-plans: {e}"))?;
        if !indexes.contains(&plan) {
            indexes.push(plan);
        }
    }
    let model = load_model(&args.index)?;
    let bar = progress_bar("verifying", 1);
    let start = Instant::now();
    let report = model
        .verify(
            &VerifyOptions {
                holdout_from,
                holdout_until,
                k,
                similarities,
                indexes,
            },
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )
        .map_err(flag_error)?;
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render_report(&report).as_bytes())?;
    }
    eprintln!("forecast verify: {:.2} s", elapsed.as_secs_f64());
    Ok(())
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |v| format!("{:+.1}%", v * 100.0))
}

/// The report as text tables, one per station (then ALL).
fn render_report(r: &VerificationReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "held out from {} to {}; k={}, {} members, {}-hour window",
        r.holdout_from,
        r.holdout_until.as_deref().unwrap_or("the end of the data"),
        r.k,
        r.member_kind,
        r.window
    );
    let _ = writeln!(s, "climatology: {}", r.climatology);
    let _ = writeln!(
        s,
        "skill = 1 - score/reference (RMSE and CRPS); references are deterministic, so their CRPS is their MAE"
    );
    let mut station = "";
    for row in &r.rows {
        if row.station != station {
            station = &row.station;
            let _ = writeln!(s, "\n== {station} ==");
            let _ = writeln!(
                s,
                "{:<4} {:<9} {:<5} {:<12} {:>5} {:>7} {:>7} {:>7} {:>7} {:>6} | {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} {:>8} {:>8}",
                "h", "variable", "sim", "index", "cases", "RMSE", "MAE", "bias", "CRPS", "spread",
                "pRMSE", "pCRPS", "cRMSE", "cCRPS", "RMSEvsP", "RMSEvsC", "CRPSvsP", "CRPSvsC"
            );
        }
        let _ = writeln!(
            s,
            "{:<4} {:<9} {:<5} {:<12} {:>5} {:>7.3} {:>7.3} {:>+7.3} {:>7.3} {:>6.2} | {:>7.3} {:>7.3} | {:>7.3} {:>7.3} | {:>8} {:>8} {:>8} {:>8}",
            row.horizon,
            row.variable,
            row.similarity,
            row.index,
            row.cases,
            row.ensemble.rmse,
            row.ensemble.mae,
            row.ensemble.bias,
            row.ensemble.crps,
            row.mean_spread,
            row.persistence.rmse,
            row.persistence.crps,
            row.climatology.rmse,
            row.climatology.crps,
            opt_pct(row.skill.rmse_vs_persistence),
            opt_pct(row.skill.rmse_vs_climatology),
            opt_pct(row.skill.crps_vs_persistence),
            opt_pct(row.skill.crps_vs_climatology),
        );
    }
    let differences = r.index_differences();
    if !differences.is_empty() {
        let _ = writeln!(s);
    }
    for d in differences {
        let _ = writeln!(
            s,
            "{} similarity, {} vs flat: CRPS differs by at most {:.2} % ({}, {}, {}; CRPS skill vs climatology {} flat, {} {})",
            d.similarity,
            d.index,
            d.relative_crps * 100.0,
            d.station,
            d.horizon,
            d.variable,
            opt_pct(d.skill_vs_climatology.0),
            opt_pct(d.skill_vs_climatology.1),
            d.index,
        );
    }
    s
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Number of stations (codes ST0001, ST0002, …).
    #[arg(long, default_value_t = 100)]
    stations: usize,
    /// Calendar years of hourly observations from --start.
    #[arg(long, default_value_t = 30)]
    years: u32,
    /// First hour: a date (midnight UTC) or an RFC 3339 time on the hour.
    #[arg(long, default_value = "1994-01-01")]
    start: String,
    /// Seed of the generator: the same seed and sizes give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CSV file to write (written to FILE.partial and renamed when complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `forecast generate`: streams `analog::forecast::synthetic` to a CSV file.
fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    use analog::forecast::synthetic::{SyntheticSpec, SyntheticWeather, CSV_HEADER};

    let start = analog::forecast::parse_time(&args.start).map_err(|e| anyhow!("--start: {e}"))?;
    let spec = SyntheticSpec {
        stations: args.stations,
        years: args.years,
        start,
        seed: args.seed,
    };
    // The generator's messages start with the field, which is the flag's name.
    let mut weather = SyntheticWeather::new(spec).map_err(|e| anyhow!("--{e}"))?;
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("--out: cannot create {}", partial.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let write_error = |e: std::io::Error| anyhow!("--out: cannot write {}: {e}", partial.display());

    let began = Instant::now();
    let bar = progress_bar("generating (hours)", weather.hours());
    let mut text = format!("{CSV_HEADER}\n");
    let mut rows = Vec::with_capacity(args.stations);
    let (mut written_rows, mut bytes) = (0u64, 0u64);
    while weather.next_hour(&mut rows).is_some() {
        for row in &rows {
            weather.write_csv_row(row, &mut text);
        }
        written_rows += rows.len() as u64;
        // Flush the text in chunks: one allocation reused, one write per ~1 MiB.
        if text.len() >= 1 << 20 {
            out.write_all(text.as_bytes()).map_err(write_error)?;
            bytes += text.len() as u64;
            text.clear();
        }
        if weather.hours_done() % 240 == 0 {
            bar.set_position(weather.hours_done());
        }
    }
    out.write_all(text.as_bytes()).map_err(write_error)?;
    bytes += text.len() as u64;
    out.flush().map_err(write_error)?;
    drop(out);
    std::fs::rename(&partial, &args.out).with_context(|| {
        format!(
            "--out: cannot rename {} to {}",
            partial.display(),
            args.out.display()
        )
    })?;
    bar.finish_and_clear();
    eprintln!(
        "forecast generate: {} stations, {} hours, {written_rows} rows, {:.1} MiB in {} in {:.1} s (seed {})",
        args.stations,
        weather.hours(),
        bytes as f64 / (1024.0 * 1024.0),
        args.out.display(),
        began.elapsed().as_secs_f64(),
        args.seed,
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RecallArgs {
    /// Model directory written by `forecast build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Query states per horizon (spread over the stations and the period).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Neighbours compared per query (1..=100).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Comma-separated similarities: seed, anen.
    #[arg(long, default_value = "seed,anen")]
    similarity: String,
    /// Print JSON (an array of per-horizon rows, schema in docs/forecast.md).
    #[arg(long)]
    json: bool,
}

/// `forecast recall`: per horizon and similarity, recall@k of the model's index against
/// exact search and the p50/p99 time of both (this process's monotonic clock).
/// `--similarity seed,anen`: each named once, in the order given.
fn parse_similarities(list: &str) -> anyhow::Result<Vec<Similarity>> {
    let mut similarities = Vec::new();
    for name in list.split(',').map(str::trim) {
        let s: Similarity = name.parse().map_err(|e| anyhow!("--similarity: {e}"))?;
        if !similarities.contains(&s) {
            similarities.push(s);
        }
    }
    Ok(similarities)
}

fn recall(args: &RecallArgs) -> anyhow::Result<()> {
    if args.queries == 0 {
        bail!("--queries: must be at least 1");
    }
    let similarities = parse_similarities(&args.similarity)?;
    let model = load_model(&args.index)?;
    let origin = Instant::now();
    let now = || origin.elapsed();
    let mut rows = Vec::new();
    for similarity in similarities {
        rows.extend(
            model
                .index_recall(args.queries, args.k, similarity, &now)
                .map_err(|e| match e {
                    ForecastError::KOutOfRange { k, max } => {
                        anyhow!("--k: must be between 1 and {max}, got {k}")
                    }
                    other => anyhow!("{other}"),
                })?,
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<8} {:<10} {:<18} {:>8} {:>8} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "horizon",
        "similarity",
        "index",
        "stations",
        "queries",
        "recall@k",
        "index p50 µs",
        "index p99 µs",
        "exact p50 µs",
        "exact p99 µs"
    )?;
    for r in &rows {
        let kinds: Vec<&str> = r.kinds.iter().map(|k| k.name()).collect();
        writeln!(
            out,
            "{:<8} {:<10} {:<18} {:>8} {:>8} {:>9.3} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            r.horizon.to_string(),
            r.similarity.name(),
            kinds.join("+"),
            r.stations,
            r.queries,
            r.recall,
            r.index_us_p50,
            r.index_us_p99,
            r.exact_us_p50,
            r.exact_us_p99
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExportVectorsArgs {
    /// Model directory written by `forecast build`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Station code.
    #[arg(long)]
    station: String,
    /// Horizon whose analogs are exported: 6h, 12h, 24h or 48h.
    #[arg(long, default_value = "24h")]
    horizon: String,
    /// File to write: the states, raw little-endian f32, row-major (count × dim).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print one JSON object (dim, count, the horizon's index and IVF-PQ settings).
    #[arg(long)]
    json: bool,
}

/// `forecast export-vectors`: the state vectors one station-horizon's index searches, for
/// comparing with other libraries on exactly the same vectors (faiss_compare.py --vectors).
fn export_vectors(args: &ExportVectorsArgs) -> anyhow::Result<()> {
    let horizon: Horizon = args
        .horizon
        .parse()
        .map_err(|e| anyhow!("--horizon: {e}"))?;
    let model = load_model(&args.index)?;
    let (dim, vectors) = model
        .horizon_vectors(&args.station, horizon)
        .map_err(flag_error)?;
    let count = vectors.len().checked_div(dim).unwrap_or(0);
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("--out: cannot create {}", args.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let write_error =
        |e: std::io::Error| anyhow!("--out: cannot write {}: {e}", args.out.display());
    for chunk in vectors.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes).map_err(write_error)?;
    }
    out.flush().map_err(write_error)?;
    let info = model
        .indexes()
        .into_iter()
        .find(|i| i.station == args.station && i.horizon == horizon);
    let ivfpq = info.as_ref().and_then(|i| {
        Some(serde_json::json!({
            "nlist": i.nlist?, "m": i.m?, "nbits": i.nbits?, "nprobe": i.nprobe?,
            "shortlist": i.shortlist?,
        }))
    });
    let kind = info.as_ref().map(|i| i.kind);
    if args.json {
        let doc = serde_json::json!({
            "station": args.station, "horizon": horizon.to_string(), "dim": dim, "count": count,
            "index": kind, "ivfpq": ivfpq, "out": args.out.display().to_string(),
        });
        println!("{doc}");
    } else {
        let index = match (&kind, &ivfpq) {
            (Some(k), Some(s)) => format!("{}, {s}", serde_json::to_string(k)?),
            (Some(k), None) => serde_json::to_string(k)?,
            _ => "unknown".to_owned(),
        };
        println!(
            "{} {horizon}: dim {dim}, count {count} (index {index}); wrote {}",
            args.station,
            args.out.display()
        );
    }
    Ok(())
}
