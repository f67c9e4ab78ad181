//! A tenant's privacy budget: how much ε and δ its releases may spend per calendar period.
//!
//! Composition is *basic*: the ε and δ of the releases in a period add up. This is
//! conservative (advanced composition or zCDP accounting would allow more releases for the
//! same guarantee) and exact on the integer units of [`Epsilon`] and [`Delta`], so the ledger's
//! sum equals the spent total to the last unit.
//!
//! ```
//! use privacy::budget::{Budget, Period, Spend};
//! use privacy::{Delta, Epsilon};
//! let budget = Budget { period: Period::Month, epsilon: Epsilon::from_nanos(1_000_000_000), delta: Delta::ZERO };
//! let tenth = Spend { epsilon: Epsilon::from_nanos(100_000_000), delta: Delta::ZERO };
//! let spent = Spend { epsilon: Epsilon::from_nanos(950_000_000), delta: Delta::ZERO };
//! assert!(budget.check(spent, tenth).is_err());
//! ```

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::units::{Delta, Epsilon};

const DAY_MS: i64 = 86_400_000;

/// The calendar period a budget renews over (UTC). Weeks start on Monday (ISO 8601); quarters
/// in January, April, July and October.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A UTC day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// A calendar month (the default).
    #[default]
    Month,
    /// A calendar quarter.
    Quarter,
    /// A calendar year.
    Year,
}

impl Period {
    /// Every period.
    pub const ALL: [Period; 5] = [
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Quarter,
        Period::Year,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
        }
    }

    /// The period of a wire name.
    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The first millisecond (UTC) of the period holding `now_ms`.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let date = date_of(now_ms);
        let start = match self {
            Period::Day => date,
            Period::Week => {
                let back = i64::from(date.weekday().number_days_from_monday());
                return days_ms(date) - back * DAY_MS;
            }
            Period::Month => first_of(date.year(), date.month()),
            Period::Quarter => {
                let q = (u8::from(date.month()) - 1) / 3;
                first_of(date.year(), month_of(q * 3 + 1))
            }
            Period::Year => first_of(date.year(), Month::January),
        };
        days_ms(start)
    }

    /// The first millisecond (UTC) after the period holding `now_ms` (exclusive end).
    pub fn end_ms(self, now_ms: i64) -> i64 {
        let start = self.start_ms(now_ms);
        let date = date_of(start);
        let next = match self {
            Period::Day => return start + DAY_MS,
            Period::Week => return start + 7 * DAY_MS,
            Period::Month => add_months(date, 1),
            Period::Quarter => add_months(date, 3),
            Period::Year => add_months(date, 12),
        };
        days_ms(next)
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn date_of(ms: i64) -> Date {
    let secs = ms.div_euclid(1000);
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(if secs < 0 {
            OffsetDateTime::UNIX_EPOCH
        } else {
            // Beyond year 9999: clamp to the largest representable day.
            OffsetDateTime::new_utc(Date::MAX, time::Time::MIDNIGHT)
        })
        .date()
}

fn days_ms(date: Date) -> i64 {
    (date.to_julian_day() - OffsetDateTime::UNIX_EPOCH.date().to_julian_day()) as i64 * DAY_MS
}

fn month_of(n: u8) -> Month {
    Month::try_from(n).unwrap_or(Month::January)
}

fn first_of(year: i32, month: Month) -> Date {
    Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN)
}

fn add_months(first: Date, months: u8) -> Date {
    let index = i32::from(u8::from(first.month()) - 1) + i32::from(months);
    let year = first.year() + index.div_euclid(12);
    let month = month_of((index.rem_euclid(12) + 1) as u8);
    Date::from_calendar_date(year, month, 1).unwrap_or(Date::MAX)
}

/// An ε and a δ spent (or to spend) together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Spend {
    /// The ε.
    pub epsilon: Epsilon,
    /// The δ.
    pub delta: Delta,
}

impl Spend {
    /// Nothing spent.
    pub const ZERO: Spend = Spend {
        epsilon: Epsilon::ZERO,
        delta: Delta::ZERO,
    };

    /// The sum, or `None` on overflow.
    pub fn checked_add(self, other: Spend) -> Option<Spend> {
        Some(Spend {
            epsilon: self.epsilon.checked_add(other.epsilon)?,
            delta: self.delta.checked_add(other.delta)?,
        })
    }
}

/// A tenant's budget: at most `epsilon` and `delta` per `period` (basic composition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The period the budget renews over.
    pub period: Period,
    /// Total ε per period.
    pub epsilon: Epsilon,
    /// Total δ per period.
    pub delta: Delta,
}

impl Budget {
    /// The budget used when a tenant has set none: ε 1.0 and δ 10⁻⁵ per month (ten research
    /// queries of ε 0.1).
    pub const DEFAULT: Budget = Budget {
        period: Period::Month,
        epsilon: Epsilon::from_nanos(Epsilon::SCALE),
        delta: Delta::from_femtos(10_000_000_000),
    };

    /// The total as a [`Spend`].
    pub fn total(&self) -> Spend {
        Spend {
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }

    /// What is left after `spent` (floored at zero).
    pub fn remaining(&self, spent: Spend) -> Spend {
        Spend {
            epsilon: self.epsilon.saturating_sub(spent.epsilon),
            delta: self.delta.saturating_sub(spent.delta),
        }
    }

    /// Whether `request` fits beside `spent`: the remaining budget after it, or the refusal
    /// naming what is left. Both ε and δ must fit.
    pub fn check(&self, spent: Spend, request: Spend) -> Result<Spend, Refusal> {
        let refused = Refusal {
            remaining: self.remaining(spent),
            requested: request,
        };
        let after = spent.checked_add(request).ok_or(refused)?;
        if after.epsilon > self.epsilon || after.delta > self.delta {
            return Err(refused);
        }
        Ok(self.remaining(after))
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::DEFAULT
    }
}

/// A spend that does not fit: what is left and what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "privacy budget exhausted: requested epsilon {} and delta {}, remaining epsilon {} and delta {}",
    requested.epsilon, requested.delta, remaining.epsilon, remaining.delta
)]
pub struct Refusal {
    /// What is left of the period's budget.
    pub remaining: Spend,
    /// What the refused release asked for.
    pub requested: Spend,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(y: i32, m: u8, d: u8, h: u8) -> i64 {
        let date = Date::from_calendar_date(y, month_of(m), d).unwrap();
        days_ms(date) + i64::from(h) * 3_600_000
    }

    #[test]
    fn periods_follow_the_utc_calendar() {
        // Saturday 2026-12-05 09:00 UTC.
        let now = ms(2026, 12, 5, 9);
        assert_eq!(Period::Day.start_ms(now), ms(2026, 12, 5, 0));
        assert_eq!(Period::Day.end_ms(now), ms(2026, 12, 6, 0));
        assert_eq!(Period::Week.start_ms(now), ms(2026, 11, 30, 0));
        assert_eq!(Period::Week.end_ms(now), ms(2026, 12, 7, 0));
        assert_eq!(Period::Month.start_ms(now), ms(2026, 12, 1, 0));
        assert_eq!(Period::Month.end_ms(now), ms(2027, 1, 1, 0));
        assert_eq!(Period::Quarter.start_ms(now), ms(2026, 10, 1, 0));
        assert_eq!(Period::Quarter.end_ms(now), ms(2027, 1, 1, 0));
        assert_eq!(Period::Year.start_ms(now), ms(2026, 1, 1, 0));
        assert_eq!(Period::Year.end_ms(now), ms(2027, 1, 1, 0));
        assert_eq!(
            Period::Quarter.start_ms(ms(2026, 5, 31, 23)),
            ms(2026, 4, 1, 0)
        );
        assert_eq!(Period::Month.end_ms(ms(2028, 2, 10, 0)), ms(2028, 3, 1, 0));
    }

    #[test]
    fn a_spend_that_does_not_fit_is_refused_with_what_is_left() {
        let budget = Budget {
            period: Period::Month,
            epsilon: Epsilon::from_f64(5.0).unwrap(),
            delta: Delta::from_f64(1e-5).unwrap(),
        };
        let tenth = Spend {
            epsilon: Epsilon::from_f64(0.1).unwrap(),
            delta: Delta::ZERO,
        };
        let mut spent = Spend::ZERO;
        let mut answered = 0;
        for _ in 0..60 {
            if budget.check(spent, tenth).is_ok() {
                spent = spent.checked_add(tenth).unwrap();
                answered += 1;
            }
        }
        assert_eq!(answered, 50);
        assert_eq!(spent.epsilon, budget.epsilon);
        let refusal = budget.check(spent, tenth).unwrap_err();
        assert_eq!(refusal.remaining.epsilon, Epsilon::ZERO);
        assert_eq!(refusal.remaining.delta, budget.delta);
        let too_much_delta = Spend {
            epsilon: Epsilon::ZERO,
            delta: Delta::from_f64(2e-5).unwrap(),
        };
        assert!(budget.check(Spend::ZERO, too_much_delta).is_err());
    }

    proptest! {
        #[test]
        fn no_sequence_of_checks_overspends(
            total_e in 0u64..10_000_000_000,
            total_d in 0u64..10_000_000_000,
            requests in proptest::collection::vec((0u64..3_000_000_000, 0u64..3_000_000_000), 0..64),
        ) {
            let budget = Budget { period: Period::Day, epsilon: Epsilon::from_nanos(total_e), delta: Delta::from_femtos(total_d) };
            let mut spent = Spend::ZERO;
            for (e, d) in requests {
                let request = Spend { epsilon: Epsilon::from_nanos(e), delta: Delta::from_femtos(d) };
                match budget.check(spent, request) {
                    Ok(remaining) => {
                        spent = spent.checked_add(request).unwrap();
                        prop_assert_eq!(budget.remaining(spent), remaining);
                    }
                    Err(refusal) => prop_assert_eq!(refusal.remaining, budget.remaining(spent)),
                }
                prop_assert!(spent.epsilon <= budget.epsilon);
                prop_assert!(spent.delta <= budget.delta);
            }
        }

        #[test]
        fn a_period_holds_its_instant(now in -10_000_000_000_000i64..200_000_000_000_000) {
            for p in Period::ALL {
                let (s, e) = (p.start_ms(now), p.end_ms(now));
                prop_assert!(s <= now && now < e, "{p}: {s} <= {now} < {e}");
                prop_assert_eq!(p.start_ms(e), e);
                prop_assert_eq!(p.start_ms(e - 1), s);
            }
        }
    }
}
