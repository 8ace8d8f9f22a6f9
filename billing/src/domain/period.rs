//! Billing periods: which calendar days a document covers, in the account's time zone.
//!
//! Periods are inclusive date ranges (`from..=to`). An instant belongs to the period of its
//! local calendar date, so a sale at 23:30 on a Sunday in Berlin is in that week even
//! though it is Monday in UTC. A period is closed for a run when its last day is before the
//! run's `as_of` (DESIGN §13.1).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How often an account is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// Monday to Sunday.
    Weekly,
    /// The 1st to the 15th, and the 16th to the month's end.
    SemiMonthly,
    Monthly,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Weekly => "weekly",
            Interval::SemiMonthly => "semi_monthly",
            Interval::Monthly => "monthly",
        }
    }

    /// The period that contains `date`.
    pub fn period_of(self, date: NaiveDate) -> Period {
        match self {
            Interval::Weekly => {
                let from = days_before(date, u64::from(date.weekday().num_days_from_monday()));
                Period { from, to: days_after(from, 6) }
            }
            Interval::SemiMonthly if date.day() <= 15 => {
                Period { from: first_of_month(date), to: days_after(first_of_month(date), 14) }
            }
            Interval::SemiMonthly => Period { from: days_after(first_of_month(date), 15), to: last_of_month(date) },
            Interval::Monthly => Period { from: first_of_month(date), to: last_of_month(date) },
        }
    }

    /// The period that follows `period`.
    pub fn next(self, period: Period) -> Period {
        self.period_of(days_after(period.to, 1))
    }
}

impl FromStr for Interval {
    type Err = UnknownInterval;

    fn from_str(text: &str) -> Result<Interval, UnknownInterval> {
        match text {
            "weekly" => Ok(Interval::Weekly),
            "semi_monthly" => Ok(Interval::SemiMonthly),
            "monthly" => Ok(Interval::Monthly),
            other => Err(UnknownInterval(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown billing interval {0:?} (weekly, semi_monthly or monthly)")]
pub struct UnknownInterval(pub String);

/// An inclusive range of calendar days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    pub fn contains(self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }

    /// Closed for a run on `as_of`: its last day is before `as_of`.
    pub fn is_closed(self, as_of: NaiveDate) -> bool {
        self.to < as_of
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.from, self.to)
    }
}

/// The calendar date of `at` in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The periods that close between two runs: every period after the one ending on
/// `billed_through` (or starting with the one containing `first`, for an account never
/// billed) whose last day is before `as_of`.
///
/// When an account changed its interval, the first new period may start before
/// `billed_through`; it is cut so that no day is billed twice.
pub fn closing_periods(
    interval: Interval,
    billed_through: Option<NaiveDate>,
    first: NaiveDate,
    as_of: NaiveDate,
) -> Vec<Period> {
    let mut period = match billed_through {
        Some(through) => {
            let next_day = days_after(through, 1);
            Period { from: next_day, ..interval.period_of(next_day) }
        }
        None => interval.period_of(first),
    };
    let mut closing = Vec::new();
    // Dates at chrono's limits saturate instead of panicking; the guard ends the loop there.
    while period.is_closed(as_of) && closing.last() != Some(&period) {
        closing.push(period);
        period = interval.next(period);
    }
    closing
}

/// The last day of the last period closed on `as_of`.
pub fn closed_through(interval: Interval, as_of: NaiveDate) -> NaiveDate {
    days_before(interval.period_of(as_of).from, 1)
}

/// `date` plus `days`, saturating at chrono's last date.
pub fn days_after(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days)).unwrap_or(NaiveDate::MAX)
}

/// `date` minus `days`, saturating at chrono's first date.
pub fn days_before(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_sub_days(Days::new(days)).unwrap_or(NaiveDate::MIN)
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

fn last_of_month(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
    NaiveDate::from_ymd_opt(year, month, 1).map_or(NaiveDate::MAX, |next| days_before(next, 1))
}

/// ISO week key (`2026-W48`) of a date.
pub fn week_key(date: NaiveDate) -> String {
    let week = date.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

/// Month key (`2026-11`) of a date.
pub fn month_key(date: NaiveDate) -> String {
    format!("{}-{:02}", date.year(), date.month())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Weekday};
    use proptest::prelude::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        // 1990..2100 covers leap years, the 2000 exception and DST rule changes.
        (0i64..40_000).prop_map(|offset| day("1990-01-01") + chrono::Duration::days(offset))
    }

    fn any_interval() -> impl Strategy<Value = Interval> {
        prop_oneof![Just(Interval::Weekly), Just(Interval::SemiMonthly), Just(Interval::Monthly)]
    }

    proptest! {
        #[test]
        fn a_period_contains_its_date_and_the_next_one_follows_without_gap(date in any_date(), interval in any_interval()) {
            let period = interval.period_of(date);
            prop_assert!(period.contains(date));
            let next = interval.next(period);
            prop_assert_eq!(next.from, period.to + Days::new(1));
            prop_assert_eq!(interval.period_of(period.from), period);
            prop_assert_eq!(interval.period_of(period.to), period);
        }

        #[test]
        fn weeks_run_monday_to_sunday(date in any_date()) {
            let week = Interval::Weekly.period_of(date);
            prop_assert_eq!(week.from.weekday(), Weekday::Mon);
            prop_assert_eq!(week.to.weekday(), Weekday::Sun);
        }

        #[test]
        fn semi_monthly_halves_split_on_the_15th(date in any_date()) {
            let half = Interval::SemiMonthly.period_of(date);
            let month = Interval::Monthly.period_of(date);
            if date.day() <= 15 {
                prop_assert_eq!((half.from, half.to.day()), (month.from, 15));
            } else {
                prop_assert_eq!((half.from.day(), half.to), (16, month.to));
            }
        }

        #[test]
        fn months_end_on_their_last_day(date in any_date()) {
            let month = Interval::Monthly.period_of(date);
            prop_assert_eq!(month.from.day(), 1);
            prop_assert_eq!((month.to + Days::new(1)).day(), 1);
            let leap = date.year() % 4 == 0 && (date.year() % 100 != 0 || date.year() % 400 == 0);
            if date.month() == 2 {
                prop_assert_eq!(month.to.day(), if leap { 29 } else { 28 });
            }
        }

        #[test]
        fn closing_periods_tile_the_calendar_up_to_as_of(
            first in any_date(), interval in any_interval(), ahead in 0i64..400, billed in proptest::option::of(0i64..60),
        ) {
            let through = billed.map(|d| interval.period_of(first).to + Days::new(d as u64));
            let as_of = first + chrono::Duration::days(ahead);
            let periods = closing_periods(interval, through, first, as_of);
            let mut expected_from = through.map(|t| t + Days::new(1)).unwrap_or(interval.period_of(first).from);
            for period in &periods {
                prop_assert_eq!(period.from, expected_from);
                prop_assert!(period.to < as_of);
                expected_from = period.to + Days::new(1);
            }
            // Nothing closed is left out: the period after the last one is still open.
            prop_assert!(!interval.period_of(expected_from).is_closed(as_of));
        }

        #[test]
        fn berlin_dates_follow_the_eu_summer_time_rule(seconds in 946_684_800i64..4_102_444_800) {
            // Computed by hand, independently of chrono-tz: since 1996 Berlin is UTC+2 from
            // 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
            // October, and UTC+1 otherwise.
            let at = Utc.timestamp_opt(seconds, 0).unwrap();
            let last_sunday = |month: u32| {
                let last = last_of_month(NaiveDate::from_ymd_opt(at.year(), month, 1).unwrap());
                last - Days::new(u64::from(last.weekday().num_days_from_sunday()))
            };
            let switch = |month| Utc.from_utc_datetime(&last_sunday(month).and_hms_opt(1, 0, 0).unwrap());
            let summer = at >= switch(3) && at < switch(10);
            let offset = chrono::Duration::hours(if summer { 2 } else { 1 });
            prop_assert_eq!(local_date(at, chrono_tz::Europe::Berlin), (at + offset).date_naive());
        }

        #[test]
        fn new_york_dates_follow_the_us_daylight_rule(seconds in 1_199_145_600i64..4_102_444_800) {
            // Since 2007: UTC-4 from 07:00 UTC on the second Sunday of March to 06:00 UTC on
            // the first Sunday of November, UTC-5 otherwise.
            let at = Utc.timestamp_opt(seconds, 0).unwrap();
            let nth_sunday = |month: u32, n: u64| {
                let first = NaiveDate::from_ymd_opt(at.year(), month, 1).unwrap();
                let to_sunday = (7 - u64::from(first.weekday().num_days_from_sunday())) % 7;
                first + Days::new(to_sunday + 7 * (n - 1))
            };
            let start = Utc.from_utc_datetime(&nth_sunday(3, 2).and_hms_opt(7, 0, 0).unwrap());
            let end = Utc.from_utc_datetime(&nth_sunday(11, 1).and_hms_opt(6, 0, 0).unwrap());
            let offset = chrono::Duration::hours(if at >= start && at < end { -4 } else { -5 });
            prop_assert_eq!(local_date(at, chrono_tz::America::New_York), (at + offset).date_naive());
        }
    }

    #[test]
    fn a_sale_late_on_sunday_in_berlin_is_in_that_week_even_across_dst() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-03-29 is the spring-forward Sunday: 21:30 UTC is 23:30 CEST, still Sunday.
        let sunday_night = Utc.with_ymd_and_hms(2026, 3, 29, 21, 30, 0).unwrap();
        assert_eq!(Interval::Weekly.period_of(local_date(sunday_night, berlin)).to, day("2026-03-29"));
        // One hour later it is Monday in Berlin and a new week.
        let monday = Utc.with_ymd_and_hms(2026, 3, 29, 22, 30, 0).unwrap();
        assert_eq!(Interval::Weekly.period_of(local_date(monday, berlin)).from, day("2026-03-30"));
        // 2026-10-25 falls back: 22:30 UTC is 23:30 CET, still Sunday; 23:00 UTC is Monday.
        let fall_back = Utc.with_ymd_and_hms(2026, 10, 25, 22, 30, 0).unwrap();
        assert_eq!(local_date(fall_back, berlin), day("2026-10-25"));
        assert_eq!(local_date(Utc.with_ymd_and_hms(2026, 10, 25, 23, 0, 0).unwrap(), berlin), day("2026-10-26"));
    }

    #[test]
    fn new_york_month_end_is_utc_next_month() {
        let new_york = chrono_tz::America::New_York;
        // 2026-12-01 03:00 UTC is still November 30 in New York.
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        assert_eq!(Interval::Monthly.period_of(local_date(at, new_york)).to, day("2026-11-30"));
    }

    #[test]
    fn a_period_closes_the_day_after_its_last_day() {
        let week = Interval::Weekly.period_of(day("2026-11-25"));
        assert_eq!(week, Period { from: day("2026-11-23"), to: day("2026-11-29") });
        assert!(!week.is_closed(day("2026-11-29")));
        assert!(week.is_closed(day("2026-11-30")));
        assert_eq!(closed_through(Interval::Weekly, day("2026-11-30")), day("2026-11-29"));
        assert_eq!(closed_through(Interval::Monthly, day("2026-11-30")), day("2026-10-31"));
        assert_eq!(closed_through(Interval::SemiMonthly, day("2024-02-16")), day("2024-02-15"));
    }

    #[test]
    fn an_interval_change_never_bills_a_day_twice() {
        // Weekly through Wednesday 2026-11-04 (a mid-month week end is impossible for weekly,
        // but a switch from semi-monthly leaves the 15th): monthly continues on the 16th.
        let periods = closing_periods(Interval::Monthly, Some(day("2026-11-15")), day("2026-11-20"), day("2026-12-05"));
        assert_eq!(periods, vec![Period { from: day("2026-11-16"), to: day("2026-11-30") }]);
    }

    #[test]
    fn keys_are_iso_weeks_and_months() {
        assert_eq!(week_key(day("2026-11-25")), "2026-W48");
        assert_eq!(week_key(day("2027-01-01")), "2026-W53");
        assert_eq!(month_key(day("2026-11-25")), "2026-11");
    }
}
