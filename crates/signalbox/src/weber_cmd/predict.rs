//! `signalbox weber predict`: a transactions file in, one prediction per customer out, fitted
//! the way the `lifetimes` workflow does (calibration up to a date, holdout after it), through
//! the same `lifetime::model::fit_model` use case the server's refit job calls.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::predict_input::{self, format_day, parse_date};
use super::write_atomically;

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
    let settings = lifetime::model::ModelSettings {
        period: match args.period {
            PeriodArg::Day => lifetime::Period::Day,
            PeriodArg::Week => lifetime::Period::Week,
        },
        churn_horizon_days: args.churn_horizon_days,
        clv_months: args.horizon,
        monthly_discount_rate: args.discount_rate,
        ..lifetime::model::ModelSettings::default()
    };
    let split = lifetime::model::Split::Explicit {
        calibration_end,
        observation_end,
    };
    let fitting = spinner("fitting BG/NBD, Gamma-Gamma and the churn model");
    let fitted = lifetime::model::fit_model(&purchases, &profiles, split, &settings);
    fitting.finish_and_clear();
    let model = fitted.map_err(|e| anyhow!("fit: {e}"))?;
    let customers = lifetime::calibration_and_holdout(
        &purchases,
        calibration_end,
        observation_end,
        settings.period,
    )
    .map_err(|e| anyhow!("{}: {e}", args.transactions.display()))?;
    let holdout_exists = observation_end > calibration_end;
    // Checked before anything is written: a run either writes every output asked for or none.
    if args.report_out.is_some() && model.evaluation.is_none() {
        bail!(
            "--report-out: no purchases after --calibration-end, so there is nothing to evaluate"
        );
    }

    let bar = count_bar("predicting", customers.len() as u64);
    let mut rows = Vec::with_capacity(customers.len());
    for (i, c) in customers.iter().enumerate() {
        let s = &c.calibration;
        let p = model.predict(s, profiles.get(&s.customer_id));
        rows.push(CustomerRow {
            customer_id: &s.customer_id,
            frequency: s.frequency,
            recency: s.recency,
            t: s.t,
            monetary_value: s.monetary_value,
            expected_purchases: p.expected_purchases,
            p_alive: p.p_alive,
            expected_average_value: p.expected_average_value,
            clv: p.clv,
            clv_low: p.clv_interval[0],
            clv_high: p.clv_interval[1],
            churn_risk: p.churn_risk,
            churn_risk_timing: p.churn_risk_timing,
            risk_level: p.risk_level,
            churn_model: p.model,
            risk_factors: p.risk_factors,
            holdout: holdout_exists.then_some(Holdout {
                frequency: c.frequency_holdout,
                monetary_value: c.monetary_value_holdout,
                duration: c.duration_holdout,
            }),
        });
        if i % 4096 == 0 {
            bar.set_position(i as u64);
        }
    }
    bar.finish_and_clear();
    for row in &rows {
        row.check_finite()?;
    }

    write_atomically(&args.out, "--out", |out| {
        for row in &rows {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    if let Some(path) = &args.params_out {
        let bg = &model.bgnbd;
        let gg = &model.gamma_gamma;
        let params = serde_json::json!({
            "bgnbd": {"r": bg.params.r, "alpha": bg.params.alpha, "a": bg.params.a, "b": bg.params.b},
            "gamma_gamma": {"p": gg.params.p, "q": gg.params.q, "v": gg.params.v},
            "log_likelihood": bg.log_likelihood,
            "gamma_gamma_log_likelihood": gg.log_likelihood,
            "customers": bg.customers,
            "gamma_gamma_customers": gg.customers,
            "period": settings.period,
            "calibration_end": format_day(calibration_end),
            "observation_end": format_day(observation_end),
        });
        write_json(path, "--params-out", &params)?;
    }
    if let Some(path) = &args.report_out {
        let Some(evaluation) = &model.evaluation else {
            bail!("--report-out: no purchases after --calibration-end, so there is nothing to evaluate");
        };
        write_json(
            path,
            "--report-out",
            &Report {
                calibration_end: format_day(calibration_end),
                observation_end: format_day(observation_end),
                period: settings.period,
                weber_model_status: &model.weber_model_status,
                weber_features_importance: model.weber_features_importance(),
                evaluation,
            },
        )?;
    }
    let first_seen_later = {
        let mut ids: Vec<&str> = purchases
            .iter()
            .filter(|p| p.day > calibration_end)
            .map(|p| p.customer_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter(|id| {
                customers
                    .binary_search_by(|c| c.calibration.customer_id.as_str().cmp(id))
                    .is_err()
            })
            .count()
    };
    eprintln!(
        "weber predict: {} purchases, {} customers predicted as of {}{}",
        purchases.len(),
        rows.len(),
        format_day(calibration_end),
        if first_seen_later > 0 {
            format!(" ({first_seen_later} first seen after it: not predicted)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// One line of `--out`: the customer's calibration summary, the predictions as of the
/// calibration end, and what they actually did in the holdout.
#[derive(Serialize)]
struct CustomerRow<'a> {
    customer_id: &'a str,
    frequency: f64,
    recency: f64,
    #[serde(rename = "T")]
    t: f64,
    monetary_value: f64,
    /// Over the churn horizon.
    expected_purchases: f64,
    p_alive: f64,
    expected_average_value: f64,
    clv: f64,
    clv_low: f64,
    clv_high: f64,
    churn_risk: f64,
    churn_risk_timing: f64,
    risk_level: lifetime::churn::RiskLevel,
    churn_model: lifetime::model::ChurnModelKind,
    risk_factors: Vec<lifetime::churn::RiskFactor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    holdout: Option<Holdout>,
}

impl CustomerRow<'_> {
    /// The library promises finite predictions; checking here turns a broken promise into an
    /// error naming the customer instead of a `null` in the output.
    fn check_finite(&self) -> anyhow::Result<()> {
        let values = [
            ("expected_purchases", self.expected_purchases),
            ("p_alive", self.p_alive),
            ("expected_average_value", self.expected_average_value),
            ("clv", self.clv),
            ("clv_low", self.clv_low),
            ("clv_high", self.clv_high),
            ("churn_risk", self.churn_risk),
            ("churn_risk_timing", self.churn_risk_timing),
        ];
        let factors = self.risk_factors.iter().flat_map(|f| {
            [
                ("risk_factors.value", f.value),
                ("risk_factors.contribution", f.contribution),
            ]
        });
        for (field, v) in values.into_iter().chain(factors) {
            if !v.is_finite() {
                bail!("customer {}: {field}: the model gave {v}", self.customer_id);
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Holdout {
    frequency: f64,
    monetary_value: f64,
    duration: f64,
}

/// `--report-out`: the holdout evaluation with the split it was measured on.
#[derive(Serialize)]
struct Report<'a> {
    calibration_end: String,
    observation_end: String,
    period: lifetime::Period,
    /// Why there is (or is not) a Weber-enhanced churn model.
    weber_model_status: &'a str,
    /// The enhanced model's feature importances (empty when timing-only).
    weber_features_importance: std::collections::BTreeMap<String, f64>,
    #[serde(flatten)]
    evaluation: &'a lifetime::model::HoldoutEvaluation,
}

fn spinner(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn count_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{label} {{bar:40}} {{pos}}/{{len}} {{elapsed}}"))
    {
        bar.set_style(style);
    }
    bar
}

/// Writes one JSON document, pretty-printed, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, flag: &str, value: &T) -> anyhow::Result<()> {
    write_atomically(path, flag, |out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}
