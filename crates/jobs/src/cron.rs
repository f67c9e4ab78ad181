//! Cron schedules for recurring jobs.

use std::fmt;

use chrono::{DateTime, NaiveDateTime};

/// Longest cron expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 200;

/// A parsed cron expression, evaluated in UTC.
///
/// The syntax is Vixie cron's five fields (`minute hour day-of-month month day-of-week`), with
/// an optional leading seconds field, names (`MON`, `JAN`), ranges, steps, lists, `L`, `W`, `#`
/// and the nicknames (`@hourly`, `@daily`, …), parsed by the `croner` crate. As in Vixie cron,
/// when both day fields are restricted a day matching either one matches.
///
/// A recurring job is enqueued once per tick: every replica computes the same tick from the
/// same expression, and the store keeps one job per (schedule, tick).
///
/// ```
/// let every_5 = jobs::Schedule::parse("*/5 * * * *").unwrap();
/// // 2026-01-01T00:03:00Z → 00:05:00Z
/// assert_eq!(every_5.next_after_ms(1_767_225_780_000), Some(1_767_225_900_000));
/// assert!(jobs::Schedule::parse("61 * * * *").is_err());
/// ```
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    cron: croner::Cron,
}

/// A cron expression that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression: {0}")]
pub struct CronError(pub String);

impl Schedule {
    /// Parses `expression`.
    pub fn parse(expression: &str) -> Result<Schedule, CronError> {
        let expression = expression.trim();
        if expression.is_empty() {
            return Err(CronError("it is empty".to_owned()));
        }
        if expression.len() > MAX_CRON_BYTES {
            return Err(CronError(format!("longer than {MAX_CRON_BYTES} bytes")));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| CronError(e.to_string()))?;
        let schedule = Schedule {
            expression: expression.to_owned(),
            cron,
        };
        // An expression such as `0 0 30 2 *` (30 February) parses but never fires.
        if schedule.next_after_ms(0).is_none() {
            return Err(CronError("it never matches a date".to_owned()));
        }
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first tick strictly after `after_ms` (Unix ms), or `None` if none is left before
    /// the year 5000.
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        let start = naive(after_ms)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        let next_ms = next.and_utc().timestamp_millis();
        (next_ms > after_ms).then_some(next_ms)
    }

    /// The latest tick at or before `now_ms`, if any: the tick a scheduler that woke at
    /// `now_ms` is due to enqueue.
    pub fn latest_at_or_before_ms(&self, now_ms: i64) -> Option<i64> {
        let start = naive(now_ms)?;
        let prev = self.cron.find_previous_occurrence(&start, true).ok()?;
        Some(prev.and_utc().timestamp_millis())
    }
}

fn naive(ms: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|t| t.naive_utc())
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expression).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expression == other.expression
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JAN_1_2026: i64 = 1_767_225_600_000;

    #[test]
    fn vixie_fields_and_nicknames() {
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next_after_ms(JAN_1_2026),
            Some(JAN_1_2026 + 3_600_000)
        );
        let with_seconds = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            with_seconds.next_after_ms(JAN_1_2026),
            Some(JAN_1_2026 + 10_000)
        );
        // 2026-01-01 is a Thursday; the next Monday 09:00 is 2026-01-05.
        let monday = Schedule::parse("0 9 * * MON").unwrap();
        assert_eq!(
            monday.next_after_ms(JAN_1_2026),
            Some(JAN_1_2026 + 4 * 86_400_000 + 9 * 3_600_000)
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "   ",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "0 0 30 2 *",
            "hello",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Schedule::parse(&"*".repeat(300)).is_err());
    }

    #[test]
    fn latest_tick_is_inclusive() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(
            every_minute.latest_at_or_before_ms(JAN_1_2026),
            Some(JAN_1_2026)
        );
        assert_eq!(
            every_minute.latest_at_or_before_ms(JAN_1_2026 + 59_999),
            Some(JAN_1_2026)
        );
    }

    proptest! {
        /// Ticks of `*/n` minutes are multiples of n minutes, strictly after the start, and no
        /// tick is skipped: the latest tick at the next tick is that tick.
        #[test]
        fn step_minutes(n in 1u32..60, offset in 0i64..86_400_000 * 400) {
            let s = Schedule::parse(&format!("*/{n} * * * *")).unwrap();
            let start = JAN_1_2026 + offset;
            let next = s.next_after_ms(start).unwrap();
            prop_assert!(next > start);
            prop_assert!(next - start <= 3_600_000);
            prop_assert_eq!(next % 60_000, 0);
            let minute = (next / 60_000) % 60;
            prop_assert_eq!(minute % i64::from(n), 0);
            prop_assert_eq!(s.latest_at_or_before_ms(next), Some(next));
            prop_assert!(s.latest_at_or_before_ms(start).is_some_and(|t| t <= start && t < next));
        }
    }
}
