//! Per-customer summaries (frequency, recency, T, monetary value) from a purchase log, with
//! exactly the semantics of `lifetimes.utils.summary_data_from_transaction_data` and
//! `calibration_and_holdout_data` (lifetimes 0.11.3).
//!
//! Time is counted in whole periods (days, or ISO weeks Monday..Sunday, pandas' `W-SUN`):
//! purchases in the same period merge into one (their amounts add up). `frequency` is the number
//! of periods with a purchase after the first, `recency` the periods from the first to the last
//! purchase, `T` the periods from the first purchase to the observation end, and
//! `monetary_value` the mean of the repeat periods' totals (0 when `frequency` is 0).
//!
//! Deviations from lifetimes, on purpose: purchases after the observation end and negative or
//! non-finite amounts are errors naming the customer (lifetimes silently drops the former and
//! averages the latter); refunds are the caller's business (send net amounts). Zero amounts are
//! purchases like any other (a free order is still a visit); the Gamma-Gamma fit leaves out
//! customers whose mean repeat spend is 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::LifetimeError;

/// Unit of time of the summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Calendar days (UTC).
    #[default]
    Day,
    /// ISO weeks, Monday to Sunday (pandas' `W-SUN` periods, lifetimes' `freq="W"`).
    Week,
}

impl Period {
    /// The period index of a day (days since 1970-01-01): the day itself, or the week number
    /// counted from the Monday 1969-12-29.
    pub fn index(self, day: i32) -> i64 {
        match self {
            Period::Day => i64::from(day),
            Period::Week => (i64::from(day) + 3).div_euclid(7),
        }
    }

    /// Periods per month in lifetimes' CLV: 30 days or 4.345 weeks.
    pub fn per_month(self) -> f64 {
        match self {
            Period::Day => 30.0,
            Period::Week => 4.345,
        }
    }

    /// Days in one period.
    pub fn days(self) -> f64 {
        match self {
            Period::Day => 1.0,
            Period::Week => 7.0,
        }
    }
}

/// One purchase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    /// The customer's id (non-empty).
    pub customer_id: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    /// Amount spent, finite and >= 0.
    pub amount: f64,
}

/// A customer's sufficient statistics for BG/NBD and Gamma-Gamma, in periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The customer's id.
    pub customer_id: String,
    /// Number of repeat periods (periods with a purchase after the first one).
    pub frequency: f64,
    /// Periods between the first and the last purchase.
    pub recency: f64,
    /// Periods between the first purchase and the observation end (the customer's age).
    pub t: f64,
    /// Mean total of the repeat periods; 0 when `frequency` is 0.
    pub monetary_value: f64,
}

/// A customer's calibration summary and what they did in the holdout window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationHoldout {
    /// Summary as of the calibration end.
    pub calibration: CustomerSummary,
    /// Number of holdout periods with a purchase.
    pub frequency_holdout: f64,
    /// Mean amount of the holdout purchases (per purchase, not per period, as lifetimes); 0
    /// without holdout purchases.
    pub monetary_value_holdout: f64,
    /// Length of the holdout window in periods.
    pub duration_holdout: f64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date, `None` if the date does not exist.
///
/// ```
/// assert_eq!(lifetime::summary::day_from_ymd(1970, 1, 2), Some(1));
/// assert_eq!(lifetime::summary::day_from_ymd(2023, 2, 29), None);
/// ```
pub fn day_from_ymd(year: i32, month: u32, day: u32) -> Option<i32> {
    if !(1..=12).contains(&month) || day == 0 || !(-100_000..=100_000).contains(&year) {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > days_in_month[(month - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Parses `YYYY-MM-DD` or `YYYYMMDD` into days since 1970-01-01.
///
/// ```
/// assert_eq!(lifetime::summary::parse_day("1997-01-01"), lifetime::summary::parse_day("19970101"));
/// assert!(lifetime::summary::parse_day("1997-13-01").is_err());
/// ```
pub fn parse_day(s: &str) -> Result<i32, LifetimeError> {
    let bad = || LifetimeError::InvalidDate {
        value: s.chars().take(40).collect(),
    };
    let t = s.trim();
    // Byte slicing below needs ASCII (a multi-byte character would split mid-character).
    if !t.is_ascii() {
        return Err(bad());
    }
    let (y, m, d) = match t.len() {
        10 if t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' => (&t[0..4], &t[5..7], &t[8..10]),
        8 => (&t[0..4], &t[4..6], &t[6..8]),
        _ => return Err(bad()),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y) && digits(m) && digits(d)) {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    let day: u32 = d.parse().map_err(|_| bad())?;
    day_from_ymd(year, month, day).ok_or_else(bad)
}

fn check_purchase(p: &Purchase) -> Result<(), LifetimeError> {
    if p.customer_id.is_empty() {
        return Err(LifetimeError::EmptyCustomerId);
    }
    if !p.amount.is_finite() {
        return Err(LifetimeError::NonFiniteAmount {
            customer_id: p.customer_id.clone(),
        });
    }
    if p.amount < 0.0 {
        return Err(LifetimeError::NegativeAmount {
            customer_id: p.customer_id.clone(),
            amount: p.amount,
        });
    }
    Ok(())
}

/// Period totals per customer: customer -> (period -> summed amount), sorted.
fn period_totals<'a>(
    purchases: impl Iterator<Item = &'a Purchase>,
    period: Period,
) -> BTreeMap<&'a str, BTreeMap<i64, f64>> {
    let mut by_customer: BTreeMap<&str, BTreeMap<i64, f64>> = BTreeMap::new();
    for p in purchases {
        *by_customer
            .entry(p.customer_id.as_str())
            .or_default()
            .entry(period.index(p.day))
            .or_insert(0.0) += p.amount;
    }
    by_customer
}

fn summary_of(customer_id: &str, periods: &BTreeMap<i64, f64>, end: i64) -> CustomerSummary {
    let mut it = periods.iter();
    let first = it.next().map(|(k, _)| *k).unwrap_or(end);
    let last = periods.keys().next_back().copied().unwrap_or(first);
    let repeats: Vec<f64> = it.map(|(_, v)| *v).collect();
    let frequency = repeats.len() as f64;
    let monetary_value = if repeats.is_empty() {
        0.0
    } else {
        repeats.iter().sum::<f64>() / frequency
    };
    CustomerSummary {
        customer_id: customer_id.to_string(),
        frequency,
        recency: (last - first) as f64,
        t: (end - first) as f64,
        monetary_value,
    }
}

/// Summarises a purchase log as of `observation_end` (a day, inclusive).
///
/// Sorted by customer id; the order of `purchases` does not matter. Errors name the customer:
/// a purchase after `observation_end`, a negative or non-finite amount, an empty id.
///
/// ```
/// use lifetime::summary::{summarize, Period, Purchase};
/// let p = |id: &str, day, amount| Purchase { customer_id: id.into(), day, amount };
/// let s = summarize(&[p("a", 0, 10.0), p("a", 3, 20.0), p("a", 3, 5.0)], 10, Period::Day).unwrap();
/// assert_eq!((s[0].frequency, s[0].recency, s[0].t, s[0].monetary_value), (1.0, 3.0, 10.0, 25.0));
/// ```
pub fn summarize(
    purchases: &[Purchase],
    observation_end: i32,
    period: Period,
) -> Result<Vec<CustomerSummary>, LifetimeError> {
    for p in purchases {
        check_purchase(p)?;
        if p.day > observation_end {
            return Err(LifetimeError::PurchaseAfterEnd {
                customer_id: p.customer_id.clone(),
                day: p.day,
                observation_end,
            });
        }
    }
    let end = period.index(observation_end);
    Ok(period_totals(purchases.iter(), period)
        .iter()
        .map(|(id, periods)| summary_of(id, periods, end))
        .collect())
}

/// Calibration summaries (purchases on or before `calibration_end`) with each customer's
/// holdout activity in `(calibration_end, observation_end]`.
///
/// Only customers first seen by `calibration_end` appear (lifetimes' left join). The holdout
/// may be empty (`observation_end == calibration_end`): every customer then has zero holdout
/// purchases (lifetimes raises instead). Purchases after `observation_end` are an error.
pub fn calibration_and_holdout(
    purchases: &[Purchase],
    calibration_end: i32,
    observation_end: i32,
    period: Period,
) -> Result<Vec<CalibrationHoldout>, LifetimeError> {
    if calibration_end > observation_end {
        return Err(LifetimeError::CalibrationAfterObservation {
            calibration_end,
            observation_end,
        });
    }
    for p in purchases {
        check_purchase(p)?;
        if p.day > observation_end {
            return Err(LifetimeError::PurchaseAfterEnd {
                customer_id: p.customer_id.clone(),
                day: p.day,
                observation_end,
            });
        }
    }
    let cal_end = period.index(calibration_end);
    let calibration = period_totals(
        purchases.iter().filter(|p| p.day <= calibration_end),
        period,
    );
    // Holdout: distinct periods and the mean of the individual amounts.
    let mut holdout: BTreeMap<&str, (std::collections::BTreeSet<i64>, f64, usize)> =
        BTreeMap::new();
    for p in purchases.iter().filter(|p| p.day > calibration_end) {
        let e = holdout.entry(p.customer_id.as_str()).or_default();
        e.0.insert(period.index(p.day));
        e.1 += p.amount;
        e.2 += 1;
    }
    let duration = (period.index(observation_end) - cal_end) as f64;
    Ok(calibration
        .iter()
        .map(|(id, periods)| {
            let (frequency_holdout, monetary_value_holdout) = match holdout.get(id) {
                Some((set, total, n)) if *n > 0 => (set.len() as f64, total / *n as f64),
                _ => (0.0, 0.0),
            };
            CalibrationHoldout {
                calibration: summary_of(id, periods, cal_end),
                frequency_holdout,
                monetary_value_holdout,
                duration_holdout: duration,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, day: i32, amount: f64) -> Purchase {
        Purchase {
            customer_id: id.into(),
            day,
            amount,
        }
    }

    #[test]
    fn days_and_weeks() {
        assert_eq!(day_from_ymd(1970, 1, 1), Some(0));
        assert_eq!(day_from_ymd(1969, 12, 31), Some(-1));
        assert_eq!(day_from_ymd(2000, 3, 1), Some(11_017));
        assert_eq!(parse_day("2000-03-01").unwrap(), 11_017);
        assert_eq!(parse_day("20000301").unwrap(), 11_017);
        for bad in [
            "",
            "2000-3-1",
            "2000/03/01",
            "20000230",
            "abcdefgh",
            "2000-03-011",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        // 1997-01-05 is a Sunday, 1997-01-06 a Monday.
        let sun = day_from_ymd(1997, 1, 5).unwrap();
        assert_eq!(Period::Week.index(sun), Period::Week.index(sun - 6));
        assert_eq!(Period::Week.index(sun + 1), Period::Week.index(sun) + 1);
    }

    proptest::proptest! {
        #[test]
        fn parse_day_never_panics(s in "\\PC{0,12}") {
            let _ = parse_day(&s);
        }

        #[test]
        fn parse_day_round_trips(day in -50_000i64..100_000) {
            // Howard Hinnant's civil_from_days, the inverse of day_from_ymd.
            let z = day + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            let text = format!("{y:04}-{m:02}-{d:02}");
            if (0..=9999).contains(&y) {
                proptest::prop_assert_eq!(parse_day(&text).ok().map(i64::from), Some(day));
                proptest::prop_assert_eq!(parse_day(&text.replace('-', "")).ok().map(i64::from), Some(day));
            }
        }
    }

    #[test]
    fn errors_name_the_customer() {
        let e = summarize(&[p("x", 0, -1.0)], 5, Period::Day).unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = summarize(&[p("y", 6, 1.0)], 5, Period::Day).unwrap_err();
        assert!(e.to_string().contains("\"y\""), "{e}");
        assert!(summarize(&[], 5, Period::Day).unwrap().is_empty());
    }

    #[test]
    fn holdout_counts_periods_and_means_amounts() {
        let log = [
            p("a", 0, 1.0),
            p("a", 5, 2.0),
            p("a", 12, 3.0),
            p("a", 12, 5.0),
            p("b", 11, 1.0),
        ];
        let ch = calibration_and_holdout(&log, 10, 20, Period::Day).unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].frequency_holdout, 1.0);
        assert_eq!(ch[0].monetary_value_holdout, 4.0);
        assert_eq!(ch[0].duration_holdout, 10.0);
        assert_eq!(ch[0].calibration.t, 10.0);
    }
}
