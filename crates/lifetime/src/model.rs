//! The one prediction use case: fit the models on a purchase history, evaluate them on held-out
//! data, and predict per customer. The server's refit job and the `weber predict` CLI both call
//! [`fit_model`] and [`FittedModel::predict`].
//!
//! ## What is fitted
//!
//! BG/NBD (purchase timing) and Gamma-Gamma (spend) by maximum likelihood on the customers'
//! summaries, and, when the history has a holdout and enough customers have a Weber profile, the
//! Weber-enhanced logistic churn model of [`crate::churn`].
//!
//! ## Splits
//!
//! - [`Split::Explicit`] (the CLI, `lifetimes`' workflow): the models are fitted on purchases up
//!   to `calibration_end`; predictions are as of `calibration_end`; the holdout is
//!   `(calibration_end, observation_end]` (it may be empty: then there is no evaluation and no
//!   Weber-enhanced model). Only customers first seen by `calibration_end` take part.
//! - [`Split::Serving`] (the server job): when the history is long enough (its first purchase at
//!   least `2 x churn_horizon_days` before the calibration end `observation_end -
//!   churn_horizon_days`), the models are first fitted on that calibration split to evaluate
//!   them and to train the Weber-enhanced model; then BG/NBD and Gamma-Gamma are refitted on
//!   everything up to `observation_end` for the served predictions, which are as of
//!   `observation_end`. The logistic model keeps the coefficients learnt on the split and is fed
//!   the refitted timing features (a small shift the evaluation does not see: documented, not
//!   hidden). When the split is not possible or fails, the served model is timing-only and
//!   [`FittedModel::weber_model_status`] says why.
//!
//! ## Churn label and evaluation
//!
//! The churn event is "no purchase within the churn window after the calibration end", the
//! window being `min(churn_horizon_days, holdout length)` days; the timing-only score is the
//! BG/NBD probability of that event (`p_no_purchase` over the same window). The evaluation
//! ([`HoldoutEvaluation`]) reports, over all calibration customers: the mean absolute error of
//! predicted (`expected_purchases` over the holdout) vs actual holdout purchases (purchase
//! periods, as `lifetimes` counts them), the totals, and weekly cumulative tracking (actual
//! purchase periods from the calibration end up to the end of each week vs the sum of the
//! customers' conditional expectations over the same span).
//!
//! The churn AUCs are measured on a **held-out customer split**: customers whose id hashes
//! (FNV-1a 64) into the lowest 30% are evaluation customers, the others train the logistic
//! model. `auc_timing` and `auc_weber` are computed on **the same** evaluation customers (those
//! with a Weber profile when the enhanced model exists; all evaluation customers otherwise), so
//! the two figures are comparable. The split depends only on the ids: the same history gives the
//! same figures.
//!
//! ## Minimum sizes for the Weber-enhanced model
//!
//! At least [`ModelSettings::min_weber_customers`] (200) calibration customers with a Weber
//! profile, and among the training customers each label class (churned / retained) at least
//! [`ModelSettings::min_class_count`] (20) times. Below that the model is timing-only
//! ([`ChurnModelKind::Timing`]) and the status says which minimum was missed.
//!
//! ## Measured on simulated histories
//!
//! `cargo run --release -p lifetime --example churn_auc -- CUSTOMERS SEED EFFECT [R ALPHA A B
//! ACQUISITION]` simulates with [`crate::simulate`] over 540 days and fits with a 90-day holdout
//! (calibration end = day 450), churn window 30 days:
//!
//! | history | holdout MAE | actual / predicted holdout purchases | AUC timing | AUC Weber-enhanced |
//! |---|---|---|---|---|
//! | 5,000 customers, seed 1, default process, `dropout_effect` 2 | 0.339 | 1,447 / 1,453.7 | 0.8273 | 0.8300 |
//! | the same, `dropout_effect` 0 (no Weber signal) | | | 0.8126 | 0.8108 |
//! | 6,000 customers, seed 3, `10 4 60 5 60 0.8` (frequent buyers, strong effect) | 0.510 | 3,374 / 3,529.6 | 0.9454 | 0.9542 |
//!
//! (AUCs on the ~1,300-1,500 held-out customers with a Weber profile.) The Weber gain is real
//! but modest, and it has to be: under BG/NBD a customer can only leave right after a purchase,
//! so anyone who left a while ago is already told apart by the silence since, which the timing
//! model reads; the segment helps with the customers who bought recently and may just have
//! left. Without a Weber effect in the data the enhanced model is no better (slightly worse, the
//! cost of 11 extra coefficients), as it should be.
//!
//! ## Bounds
//!
//! Every number of a [`CustomerPrediction`] is finite: probabilities are clamped to `[0, 1]`,
//! expectations and CLV to `>= 0`, and a summary with non-finite or negative fields is read as
//! the nearest valid one (non-finite as 0, `recency <= T`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::bgnbd::{fit_bgnbd, BgNbdFit};
use crate::churn::{
    auc, enhanced_features, timing_risk_factors, LogisticModel, LogisticOptions, RiskFactor,
    RiskLevel, TimingInputs, WeberFeatures, ENHANCED_FEATURE_NAMES,
};
use crate::clv::{clv_interval, customer_lifetime_value};
use crate::gamma_gamma::{fit_gamma_gamma, GammaGammaFit};
use crate::summary::{calibration_and_holdout, summarize, CustomerSummary, Period, Purchase};
use crate::{FitOptions, LifetimeError};

/// Settings of [`fit_model`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Period of the summaries (day or ISO week).
    pub period: Period,
    /// Churn horizon in days (default 30).
    pub churn_horizon_days: u32,
    /// CLV horizon in months (default 12).
    pub clv_months: u32,
    /// Monthly discount rate of the CLV (default 0.01).
    pub monthly_discount_rate: f64,
    /// Confidence level of the CLV interval (default 0.9).
    pub clv_interval_level: f64,
    /// BG/NBD and Gamma-Gamma fit options.
    pub fit: FitOptions,
    /// Logistic fit options.
    pub logistic: LogisticOptions,
    /// Fewest calibration customers with a Weber profile for the enhanced model (default 200).
    pub min_weber_customers: usize,
    /// Fewest training customers of each label class for the enhanced model (default 20).
    pub min_class_count: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            period: Period::Day,
            churn_horizon_days: 30,
            clv_months: 12,
            monthly_discount_rate: 0.01,
            clv_interval_level: 0.9,
            fit: FitOptions::default(),
            logistic: LogisticOptions::default(),
            min_weber_customers: 200,
            min_class_count: 20,
        }
    }
}

/// How the history is split (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Split {
    /// Fit up to `calibration_end`, evaluate on `(calibration_end, observation_end]`.
    Explicit {
        /// Last day of the calibration period.
        calibration_end: i32,
        /// Last day of the history.
        observation_end: i32,
    },
    /// Evaluate on the last churn horizon, then refit on everything up to `observation_end`.
    Serving {
        /// Last day of the history ("today").
        observation_end: i32,
    },
}

/// Which churn model a prediction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnModelKind {
    /// BG/NBD only (no logistic model, or no Weber profile for this customer).
    Timing,
    /// The logistic model on timing and Weber features.
    WeberEnhanced,
}

impl ChurnModelKind {
    /// The wire name: `"timing"` or `"weber_enhanced"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Timing => "timing",
            Self::WeberEnhanced => "weber_enhanced",
        }
    }
}

/// One point of the weekly cumulative tracking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeeklyPoint {
    /// First day of the week (the first week starts the day after the calibration end).
    pub week_start_day: i32,
    /// Actual purchase periods from the calibration end to the end of this week.
    pub actual_cumulative: f64,
    /// Sum of the customers' expected purchases over the same span.
    pub predicted_cumulative: f64,
}

/// Accuracy on the holdout (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutEvaluation {
    /// Calibration customers evaluated.
    pub customers: usize,
    /// First and last day of the holdout.
    pub holdout_start_day: i32,
    /// Last day of the holdout.
    pub holdout_end_day: i32,
    /// Mean absolute error of predicted vs actual holdout purchases per customer.
    pub mae_purchases: f64,
    /// Actual holdout purchases, all customers.
    pub actual_total: f64,
    /// Predicted holdout purchases, all customers.
    pub predicted_total: f64,
    /// Weekly cumulative tracking over the holdout.
    pub weekly_tracking: Vec<WeeklyPoint>,
    /// Days of the churn window the labels and AUCs use.
    pub churn_window_days: u32,
    /// Evaluation customers the AUCs are computed on.
    pub auc_customers: usize,
    /// Of them, how many churned.
    pub auc_churned: usize,
    /// AUC of the timing-only risk (`None` when a class is missing).
    pub auc_timing: Option<f64>,
    /// AUC of the Weber-enhanced risk on the same customers (`None` without that model).
    pub auc_weber: Option<f64>,
}

/// One customer's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerPrediction {
    /// Expected purchases over the churn horizon.
    pub expected_purchases: f64,
    /// Probability the customer is still active.
    pub p_alive: f64,
    /// Expected average purchase value (Gamma-Gamma).
    pub expected_average_value: f64,
    /// Discounted CLV over the CLV horizon.
    pub clv: f64,
    /// CLV interval (delta method, parameter uncertainty only), `[low, high]`.
    pub clv_interval: [f64; 2],
    /// BG/NBD churn risk (no purchase in the churn horizon).
    pub churn_risk_timing: f64,
    /// The served churn risk: the enhanced one when available, else the timing one.
    pub churn_risk: f64,
    /// Level of `churn_risk`.
    pub risk_level: RiskLevel,
    /// Which model `churn_risk` comes from.
    pub model: ChurnModelKind,
    /// Factors behind `churn_risk`, largest contribution first.
    pub risk_factors: Vec<RiskFactor>,
}

/// The fitted models (serialisable: the server stores them as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedModel {
    /// The settings used.
    pub settings: ModelSettings,
    /// The split used.
    pub split: Split,
    /// Day the predictions are as of.
    pub as_of_day: i32,
    /// BG/NBD fit.
    pub bgnbd: BgNbdFit,
    /// Gamma-Gamma fit.
    pub gamma_gamma: GammaGammaFit,
    /// The Weber-enhanced churn model, when trained.
    pub logistic: Option<LogisticModel>,
    /// Why there is (or is not) a Weber-enhanced model.
    pub weber_model_status: String,
    /// Holdout evaluation, when there was a holdout.
    pub evaluation: Option<HoldoutEvaluation>,
    /// The summaries as of `as_of_day` (the customers to predict). Not serialised: the stored
    /// model stays small.
    #[serde(skip)]
    pub summaries: Vec<CustomerSummary>,
}

fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        fallback
    }
}

fn probability(v: f64) -> f64 {
    finite_or(v, 1.0).clamp(0.0, 1.0)
}

fn non_negative(v: f64) -> f64 {
    finite_or(v, 0.0).max(0.0)
}

/// The nearest valid summary (see the module docs, "Bounds").
fn sanitised(s: &CustomerSummary) -> CustomerSummary {
    let t = non_negative(s.t);
    CustomerSummary {
        customer_id: s.customer_id.clone(),
        frequency: non_negative(s.frequency).round(),
        recency: non_negative(s.recency).min(t),
        t,
        monetary_value: non_negative(s.monetary_value),
    }
}

/// FNV-1a 64 of the id: the stable customer split.
fn is_evaluation_customer(customer_id: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100 < 30
}

/// Everything learnt on a calibration split.
struct SplitOutcome {
    bgnbd: BgNbdFit,
    gamma_gamma: GammaGammaFit,
    summaries: Vec<CustomerSummary>,
    logistic: Option<LogisticModel>,
    status: String,
    evaluation: Option<HoldoutEvaluation>,
}

fn check_settings(settings: &ModelSettings) -> Result<(), LifetimeError> {
    let bad = |field: &str, reason: &str| {
        Err(LifetimeError::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if settings.churn_horizon_days == 0 || settings.churn_horizon_days > 3660 {
        return bad("churn_horizon_days", "must be in 1..=3660");
    }
    if settings.clv_months > 1200 {
        return bad("clv_months", "must be at most 1200");
    }
    if !(settings.monthly_discount_rate.is_finite()
        && (0.0..1.0).contains(&settings.monthly_discount_rate))
    {
        return bad("monthly_discount_rate", "must be in [0, 1)");
    }
    if !(settings.clv_interval_level.is_finite()
        && settings.clv_interval_level > 0.0
        && settings.clv_interval_level < 1.0)
    {
        return bad("clv_interval_level", "must be in (0, 1)");
    }
    Ok(())
}

/// Fits the models (see the module docs).
///
/// # Errors
/// [`LifetimeError`] for invalid settings or split days, purchases after the observation end,
/// negative amounts, and BG/NBD or Gamma-Gamma fits that fail (too few customers, no repeat
/// purchases, no convergence, degenerate parameters). A Weber-enhanced model that cannot be
/// trained is not an error: the model is then timing-only and says why.
pub fn fit_model(
    purchases: &[Purchase],
    weber: &HashMap<String, WeberFeatures>,
    split: Split,
    settings: &ModelSettings,
) -> Result<FittedModel, LifetimeError> {
    check_settings(settings)?;
    match split {
        Split::Explicit {
            calibration_end,
            observation_end,
        } => {
            if calibration_end > observation_end {
                return Err(LifetimeError::CalibrationAfterObservation {
                    calibration_end,
                    observation_end,
                });
            }
            let outcome = fit_split(purchases, weber, calibration_end, observation_end, settings)?;
            Ok(FittedModel {
                settings: *settings,
                split,
                as_of_day: calibration_end,
                bgnbd: outcome.bgnbd,
                gamma_gamma: outcome.gamma_gamma,
                logistic: outcome.logistic,
                weber_model_status: outcome.status,
                evaluation: outcome.evaluation,
                summaries: outcome.summaries,
            })
        }
        Split::Serving { observation_end } => {
            let horizon = i32::try_from(settings.churn_horizon_days).unwrap_or(i32::MAX);
            let calibration_end = observation_end.saturating_sub(horizon);
            let first_day = purchases.iter().map(|p| p.day).min();
            let long_enough = first_day.is_some_and(|d| {
                i64::from(calibration_end) - i64::from(d) >= 2 * i64::from(horizon)
            });
            let (logistic, status, evaluation) = if long_enough {
                match fit_split(purchases, weber, calibration_end, observation_end, settings) {
                    Ok(o) => (o.logistic, o.status, o.evaluation),
                    Err(e) => (
                        None,
                        format!("timing only: the calibration split could not be fitted ({e})"),
                        None,
                    ),
                }
            } else {
                (
                    None,
                    format!(
                        "timing only: the history is shorter than {} days, too short for a holdout of {horizon} days",
                        3 * i64::from(horizon)
                    ),
                    None,
                )
            };
            let summaries = summarize(purchases, observation_end, settings.period)?;
            let bgnbd = fit_bgnbd(&summaries, &settings.fit)?;
            let gamma_gamma = fit_gamma_gamma(&summaries, &settings.fit)?;
            Ok(FittedModel {
                settings: *settings,
                split,
                as_of_day: observation_end,
                bgnbd,
                gamma_gamma,
                logistic,
                weber_model_status: status,
                evaluation,
                summaries,
            })
        }
    }
}

/// Fits on `..= calibration_end`, evaluates on `(calibration_end, observation_end]` and trains
/// the enhanced model when possible.
fn fit_split(
    purchases: &[Purchase],
    weber: &HashMap<String, WeberFeatures>,
    calibration_end: i32,
    observation_end: i32,
    settings: &ModelSettings,
) -> Result<SplitOutcome, LifetimeError> {
    let period = settings.period;
    let rows = calibration_and_holdout(purchases, calibration_end, observation_end, period)?;
    let summaries: Vec<CustomerSummary> = rows.iter().map(|r| r.calibration.clone()).collect();
    let bgnbd = fit_bgnbd(&summaries, &settings.fit)?;
    let gamma_gamma = fit_gamma_gamma(&summaries, &settings.fit)?;
    if observation_end == calibration_end || rows.is_empty() {
        return Ok(SplitOutcome {
            bgnbd,
            gamma_gamma,
            summaries,
            logistic: None,
            status: "timing only: no holdout period to learn churn from".to_owned(),
            evaluation: None,
        });
    }
    let params = &bgnbd.params;
    let pdays = period.days();
    let holdout_days = observation_end - calibration_end;

    // Purchase days per customer in the holdout, sorted.
    let mut holdout_days_of: HashMap<&str, Vec<i32>> = HashMap::new();
    for p in purchases {
        if p.day > calibration_end && p.day <= observation_end {
            holdout_days_of
                .entry(p.customer_id.as_str())
                .or_default()
                .push(p.day);
        }
    }
    for days in holdout_days_of.values_mut() {
        days.sort_unstable();
    }
    // Distinct purchase periods of a customer in (calibration_end, until].
    let periods_until = |id: &str, until: i32| -> f64 {
        let Some(days) = holdout_days_of.get(id) else {
            return 0.0;
        };
        let mut seen: Vec<i64> = days
            .iter()
            .filter(|d| **d <= until)
            .map(|d| period.index(*d))
            .collect();
        seen.dedup();
        seen.len() as f64
    };

    // Purchases over the whole holdout.
    let mut abs_error = 0.0;
    let mut actual_total = 0.0;
    let mut predicted_total = 0.0;
    for r in &rows {
        let predicted = non_negative(params.expected_purchases(r.duration_holdout, &r.calibration));
        let actual = non_negative(r.frequency_holdout);
        abs_error += (predicted - actual).abs();
        actual_total += actual;
        predicted_total += predicted;
    }
    let n = rows.len() as f64;

    // Weekly cumulative tracking.
    let mut weekly_tracking = Vec::new();
    let mut week_start = calibration_end + 1;
    while week_start <= observation_end {
        let week_end = week_start.saturating_add(6).min(observation_end);
        let span = f64::from(week_end - calibration_end) / pdays;
        let mut actual = 0.0;
        let mut predicted = 0.0;
        for r in &rows {
            actual += periods_until(&r.calibration.customer_id, week_end);
            predicted += non_negative(params.expected_purchases(span, &r.calibration));
        }
        weekly_tracking.push(WeeklyPoint {
            week_start_day: week_start,
            actual_cumulative: actual,
            predicted_cumulative: finite_or(predicted, 0.0),
        });
        week_start = week_start.saturating_add(7);
    }

    // Churn labels over the churn window.
    let window_days = settings
        .churn_horizon_days
        .min(u32::try_from(holdout_days).unwrap_or(u32::MAX));
    let window_end = calibration_end.saturating_add(i32::try_from(window_days).unwrap_or(i32::MAX));
    let window = f64::from(window_days) / pdays;
    struct Labelled<'a> {
        summary: &'a CustomerSummary,
        churned: bool,
        timing: f64,
        weber: Option<&'a WeberFeatures>,
        evaluation: bool,
    }
    let labelled: Vec<Labelled> = rows
        .iter()
        .map(|r| {
            let id = r.calibration.customer_id.as_str();
            Labelled {
                summary: &r.calibration,
                churned: periods_until(id, window_end) == 0.0,
                timing: probability(params.p_no_purchase(window, &r.calibration)),
                weber: weber.get(id),
                evaluation: is_evaluation_customer(id),
            }
        })
        .collect();
    let features = |l: &Labelled, w: &WeberFeatures| {
        enhanced_features(
            &TimingInputs {
                timing_risk: l.timing,
                frequency: l.summary.frequency,
                recency: l.summary.recency,
                t: l.summary.t,
                monetary_value: l.summary.monetary_value,
            },
            w,
        )
    };

    // The enhanced model, trained on the non-evaluation customers with a Weber profile.
    let with_weber = labelled.iter().filter(|l| l.weber.is_some()).count();
    let train: Vec<(&Labelled, &WeberFeatures)> = labelled
        .iter()
        .filter(|l| !l.evaluation)
        .filter_map(|l| l.weber.map(|w| (l, w)))
        .collect();
    let train_churned = train.iter().filter(|(l, _)| l.churned).count();
    let train_retained = train.len() - train_churned;
    let (logistic, status) = if with_weber < settings.min_weber_customers {
        (
            None,
            format!(
                "timing only: {with_weber} customers have a Weber profile, fewer than {}",
                settings.min_weber_customers
            ),
        )
    } else if train_churned.min(train_retained) < settings.min_class_count {
        (
            None,
            format!(
                "timing only: the training customers have {train_churned} churned and {train_retained} retained, fewer than {} of one class",
                settings.min_class_count
            ),
        )
    } else {
        let x: Vec<Vec<f64>> = train.iter().map(|(l, w)| features(l, w)).collect();
        let y: Vec<bool> = train.iter().map(|(l, _)| l.churned).collect();
        match LogisticModel::fit(&ENHANCED_FEATURE_NAMES, &x, &y, &settings.logistic) {
            Ok(m) => (
                Some(m),
                format!(
                    "weber_enhanced: trained on {} customers ({train_churned} churned)",
                    train.len()
                ),
            ),
            Err(e) => (None, format!("timing only: {e}")),
        }
    };

    // AUCs on the evaluation customers: those with a Weber profile when the enhanced model
    // exists (so both AUCs see the same customers), all of them otherwise.
    let eval: Vec<&Labelled> = labelled
        .iter()
        .filter(|l| l.evaluation && (logistic.is_none() || l.weber.is_some()))
        .collect();
    let labels: Vec<bool> = eval.iter().map(|l| l.churned).collect();
    let timing_scores: Vec<f64> = eval.iter().map(|l| l.timing).collect();
    let auc_timing = auc(&timing_scores, &labels);
    let auc_weber = logistic.as_ref().and_then(|m| {
        let scores: Vec<f64> = eval
            .iter()
            .filter_map(|l| l.weber.map(|w| m.predict(&features(l, w))))
            .collect();
        auc(&scores, &labels)
    });

    let evaluation = HoldoutEvaluation {
        customers: rows.len(),
        holdout_start_day: calibration_end + 1,
        holdout_end_day: observation_end,
        mae_purchases: finite_or(abs_error / n, 0.0),
        actual_total,
        predicted_total: finite_or(predicted_total, 0.0),
        weekly_tracking,
        churn_window_days: window_days,
        auc_customers: eval.len(),
        auc_churned: labels.iter().filter(|c| **c).count(),
        auc_timing,
        auc_weber,
    };
    Ok(SplitOutcome {
        bgnbd,
        gamma_gamma,
        summaries,
        logistic,
        status,
        evaluation: Some(evaluation),
    })
}

impl FittedModel {
    /// The churn horizon in periods.
    fn horizon(&self) -> f64 {
        f64::from(self.settings.churn_horizon_days) / self.settings.period.days()
    }

    /// Predicts one customer (summary as of [`FittedModel::as_of_day`]); `weber` is the
    /// customer's Weber profile, if any. Never NaN or infinite (see the module docs).
    #[must_use]
    pub fn predict(
        &self,
        s: &CustomerSummary,
        weber: Option<&WeberFeatures>,
    ) -> CustomerPrediction {
        let s = sanitised(s);
        let params = &self.bgnbd.params;
        let settings = &self.settings;
        let h = self.horizon();
        let expected_purchases = non_negative(params.expected_purchases(h, &s));
        let p_alive = probability(params.p_alive(&s));
        let churn_risk_timing = probability(params.p_no_purchase(h, &s));
        let expected_average_value =
            non_negative(self.gamma_gamma.params.expected_average_value(&s));
        let clv = non_negative(customer_lifetime_value(
            params,
            &self.gamma_gamma.params,
            &s,
            settings.clv_months,
            settings.monthly_discount_rate,
            settings.period,
        ));
        let (lo, hi) = clv_interval(
            &self.bgnbd,
            &self.gamma_gamma,
            &s,
            settings.clv_months,
            settings.monthly_discount_rate,
            settings.period,
            settings.clv_interval_level,
        );
        let lo = non_negative(lo).min(clv);
        let hi = non_negative(hi).max(clv);

        let (churn_risk, model, risk_factors) = match (&self.logistic, weber) {
            (Some(m), Some(w)) => {
                let x = enhanced_features(
                    &TimingInputs {
                        timing_risk: churn_risk_timing,
                        frequency: s.frequency,
                        recency: s.recency,
                        t: s.t,
                        monetary_value: s.monetary_value,
                    },
                    w,
                );
                (
                    probability(m.predict(&x)),
                    ChurnModelKind::WeberEnhanced,
                    m.contributions(&x),
                )
            }
            _ => {
                // P(no purchase | alive) over the horizon, recovered from the decomposition
                // risk = (1 - p_alive) + p_alive * silent.
                let silent = if p_alive > 0.0 {
                    probability((churn_risk_timing - (1.0 - p_alive)) / p_alive)
                } else {
                    1.0
                };
                // Expected purchases of an active customer over the horizon.
                let if_active = if p_alive > 0.0 {
                    non_negative(expected_purchases / p_alive)
                } else {
                    0.0
                };
                let days_since = (s.t - s.recency) * settings.period.days();
                (
                    churn_risk_timing,
                    ChurnModelKind::Timing,
                    timing_risk_factors(p_alive, silent, days_since, if_active),
                )
            }
        };
        CustomerPrediction {
            expected_purchases,
            p_alive,
            expected_average_value,
            clv,
            clv_interval: [lo, hi],
            churn_risk_timing,
            churn_risk,
            risk_level: RiskLevel::of(churn_risk),
            model,
            risk_factors,
        }
    }

    /// Predicts every customer of [`FittedModel::summaries`], in customer-id order.
    #[must_use]
    pub fn predict_all(
        &self,
        weber: &HashMap<String, WeberFeatures>,
    ) -> Vec<(String, CustomerPrediction)> {
        self.summaries
            .iter()
            .map(|s| {
                (
                    s.customer_id.clone(),
                    self.predict(s, weber.get(&s.customer_id)),
                )
            })
            .collect()
    }

    /// `weber_features_importance`: the enhanced model's feature importances (empty for a
    /// timing-only model), keyed by feature name.
    #[must_use]
    pub fn weber_features_importance(&self) -> BTreeMap<String, f64> {
        self.logistic
            .as_ref()
            .map(|m| m.importance().into_iter().collect())
            .unwrap_or_default()
    }
}
