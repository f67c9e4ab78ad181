//! Monthly budgets and the thresholds crossed within a period.
//!
//! A budget is an amount per calendar month (UTC). Each threshold (50, 80 and 100 % by
//! default) is recorded once per period: the store keeps `(tenant, period, threshold)` unique,
//! so a crossing seen again after a restart, or by a second replica, changes nothing.

use serde::{Deserialize, Serialize};

use crate::Cost;

/// The default thresholds, in percent of the budget.
pub const DEFAULT_THRESHOLDS: [u8; 3] = [50, 80, 100];

/// Most thresholds one budget may have.
pub const MAX_THRESHOLDS: usize = 10;

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
}

impl Period {
    /// The month containing a Unix-millisecond time.
    ///
    /// ```
    /// use llm::budget::Period;
    /// let p = Period::containing(1_764_806_400_000); // 2025-12-04T00:00:00Z
    /// assert_eq!(p.to_string(), "2025-12");
    /// assert_eq!(p.start_ms(), 1_764_547_200_000);
    /// ```
    pub fn containing(time_ms: i64) -> Period {
        let days = time_ms.div_euclid(86_400_000);
        let (year, month, _) = civil_from_days(days);
        Period { year, month }
    }

    /// The first millisecond of the month.
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * 86_400_000
    }

    /// The first millisecond of the next month.
    pub fn end_ms(self) -> i64 {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        days_from_civil(year, month, 1) * 86_400_000
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The thresholds (percent) that `spent` has reached against `budget`, lowest first. A zero
/// budget has every threshold reached as soon as anything is spent.
pub fn reached(budget: Cost, spent: Cost, thresholds: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = thresholds
        .iter()
        .copied()
        .filter(|t| {
            // spent / budget ≥ t / 100, in integers.
            (spent.picodollars() as u128) * 100 >= (budget.picodollars() as u128) * (*t as u128)
                && spent.picodollars() > 0
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = year as i64 - if month <= 2 { 1 } else { 0 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + if m <= 2 { 1 } else { 0 }) as i32, m, d)
}

/// The thresholds `spent` has reached that are not yet in `already_recorded`, lowest first:
/// what to record (once) now.
///
/// ```
/// use llm::budget::newly_crossed;
/// use llm::Cost;
/// let budget = Cost::from_picodollars(100);
/// assert_eq!(newly_crossed(budget, Cost::from_picodollars(85), &[50, 80, 100], &[50]), [80]);
/// assert!(newly_crossed(budget, Cost::from_picodollars(85), &[50, 80, 100], &[50, 80]).is_empty());
/// ```
pub fn newly_crossed(
    budget: Cost,
    spent: Cost,
    thresholds: &[u8],
    already_recorded: &[u8],
) -> Vec<u8> {
    let mut out = reached(budget, spent, thresholds);
    out.retain(|t| !already_recorded.contains(t));
    out
}

/// A tenant's monthly budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The amount per calendar month (UTC).
    pub monthly: Cost,
    /// Percentages of `monthly`, ascending, without repeats, each 1 to 255.
    pub thresholds: Vec<u8>,
}

/// Why a budget was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BudgetError {
    pub field: String,
    pub reason: String,
}

impl Budget {
    /// A budget with `thresholds` sorted and deduplicated; an empty list means
    /// [`DEFAULT_THRESHOLDS`]. Thresholds are percentages from 1 to 255 (the `u8` the
    /// store and metrics use; above 100 % warns of an overrun), at most [`MAX_THRESHOLDS`].
    ///
    /// ```
    /// use llm::budget::Budget;
    /// use llm::Cost;
    /// let b = Budget::new(Cost::parse_usd("500").unwrap(), vec![100, 50, 50]).unwrap();
    /// assert_eq!(b.thresholds, [50, 100]);
    /// assert_eq!(Budget::new(Cost::ZERO, vec![0]).unwrap_err().field, "thresholds[0]");
    /// ```
    pub fn new(monthly: Cost, thresholds: Vec<u8>) -> Result<Budget, BudgetError> {
        if thresholds.len() > MAX_THRESHOLDS {
            return Err(BudgetError {
                field: "thresholds".into(),
                reason: format!("must list at most {MAX_THRESHOLDS} percentages"),
            });
        }
        if let Some(i) = thresholds.iter().position(|t| *t == 0) {
            return Err(BudgetError {
                field: format!("thresholds[{i}]"),
                reason: "must be a percentage from 1 to 255".into(),
            });
        }
        let mut thresholds = if thresholds.is_empty() {
            DEFAULT_THRESHOLDS.to_vec()
        } else {
            thresholds
        };
        thresholds.sort_unstable();
        thresholds.dedup();
        Ok(Budget {
            monthly,
            thresholds,
        })
    }

    /// The thresholds `spent` reaches that are not in `already_recorded`.
    pub fn newly_crossed(&self, spent: Cost, already_recorded: &[u8]) -> Vec<u8> {
        newly_crossed(self.monthly, spent, &self.thresholds, already_recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thresholds_are_reached_in_integers() {
        let budget = Cost::from_picodollars(1_000);
        let at = |spent| reached(budget, Cost::from_picodollars(spent), &DEFAULT_THRESHOLDS);
        assert!(at(0).is_empty());
        assert!(at(499).is_empty());
        assert_eq!(at(500), [50]);
        assert_eq!(at(800), [50, 80]);
        assert_eq!(at(1_000), [50, 80, 100]);
        assert_eq!(
            reached(Cost::ZERO, Cost::from_picodollars(1), &[100, 50]),
            [50, 100]
        );
        assert!(reached(Cost::ZERO, Cost::ZERO, &[50]).is_empty());
        assert_eq!(
            reached(
                Cost::from_picodollars(u64::MAX),
                Cost::from_picodollars(u64::MAX),
                &[100, 255]
            ),
            [100]
        );
    }

    #[test]
    fn each_threshold_is_newly_crossed_once() {
        let budget = Budget::new(Cost::from_picodollars(100), vec![]).unwrap();
        assert_eq!(budget.thresholds, DEFAULT_THRESHOLDS);
        let mut recorded = Vec::new();
        for spent in [10, 55, 60, 85, 120, 130] {
            let new = budget.newly_crossed(Cost::from_picodollars(spent), &recorded);
            recorded.extend(new);
        }
        assert_eq!(recorded, [50, 80, 100]);
        // A jump straight past several thresholds records them all at once.
        assert_eq!(
            budget.newly_crossed(Cost::from_picodollars(100), &[]),
            [50, 80, 100]
        );
        assert_eq!(
            Budget::new(Cost::ZERO, vec![5, 0]).unwrap_err().field,
            "thresholds[1]"
        );
        assert_eq!(
            Budget::new(Cost::ZERO, (1..=11).collect())
                .unwrap_err()
                .field,
            "thresholds"
        );
        assert_eq!(
            Budget::new(Cost::ZERO, vec![150, 90, 150])
                .unwrap()
                .thresholds,
            [90, 150]
        );
    }

    proptest! {
        #[test]
        fn reached_is_monotone_in_spent(budget in any::<u64>(), a in any::<u64>(), b in any::<u64>(), thresholds in proptest::collection::vec(1u8.., 0..6)) {
            let (lo, hi) = (a.min(b), a.max(b));
            let low = reached(Cost::from_picodollars(budget), Cost::from_picodollars(lo), &thresholds);
            let high = reached(Cost::from_picodollars(budget), Cost::from_picodollars(hi), &thresholds);
            prop_assert!(low.iter().all(|t| high.contains(t)), "{low:?} ⊄ {high:?}");
        }

        #[test]
        fn periods_match_day_arithmetic(time_ms in -5_000_000_000_000i64..10_000_000_000_000) {
            let p = Period::containing(time_ms);
            prop_assert!(p.start_ms() <= time_ms && time_ms < p.end_ms());
            let dt = time::OffsetDateTime::from_unix_timestamp_nanos(time_ms as i128 * 1_000_000).unwrap();
            prop_assert_eq!((p.year, p.month), (dt.year(), u8::from(dt.month())));
            prop_assert_eq!(Period::containing(p.start_ms()), p);
            prop_assert_eq!(Period::containing(p.end_ms() - 1), p);
            prop_assert!(Period::containing(p.end_ms()) > p);
            let first = time::Date::from_calendar_date(dt.year(), dt.month(), 1).unwrap();
            prop_assert_eq!(p.start_ms(), (i64::from(first.to_julian_day()) - 2_440_588) * 86_400_000);
            let days = (p.end_ms() - p.start_ms()) / 86_400_000;
            prop_assert_eq!(days, i64::from(dt.month().length(dt.year())));
        }
    }
}
