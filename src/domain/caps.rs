//! Cap windows (hour, day, week, month) in a campaign's time zone.
//!
//! A window is identified by the UTC instant it starts: local midnight for days (a DST day
//! is 23 or 25 hours long), Monday 00:00 for ISO weeks, the 1st for months, the start of
//! the local hour for hours (so the repeated hour of a fall-back is two windows). A local
//! start that does not exist (a spring-forward at midnight) moves to the first instant
//! after the gap; one that exists twice takes the first.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::model::Caps;
use super::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u32),
    Spend(Money),
}

/// One cap of a campaign: at most `limit` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub window: Window,
    pub limit: Limit,
    pub name: &'static str,
}

/// The caps a campaign sets, in a fixed order: counts hourly to monthly, then spends.
pub fn caps_of(caps: &Caps) -> Vec<Cap> {
    let mut out = Vec::new();
    let counts = [
        (Window::Hour, caps.hourly, "hourly"),
        (Window::Day, caps.daily, "daily"),
        (Window::Week, caps.weekly, "weekly"),
        (Window::Month, caps.monthly, "monthly"),
    ];
    for (window, limit, name) in counts {
        if let Some(limit) = limit {
            out.push(Cap { window, limit: Limit::Count(limit), name });
        }
    }
    if let Some(s) = caps.daily_spend {
        out.push(Cap { window: Window::Day, limit: Limit::Spend(s), name: "daily_spend" });
    }
    if let Some(s) = caps.monthly_spend {
        out.push(Cap { window: Window::Month, limit: Limit::Spend(s), name: "monthly_spend" });
    }
    out
}

/// The first instant at which the local wall time `naive` (or, in a gap, the first time
/// after it, in 30-minute steps for the half-hour shifts some zones have) occurs in `tz`.
fn local_start(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let mut candidate = naive;
    for _ in 0..48 {
        match tz.from_local_datetime(&candidate) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            LocalResult::None => candidate += Duration::minutes(30),
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// The instant the local window containing `now` started.
pub fn window_start(window: Window, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz);
    match window {
        Window::Hour => {
            let secs = i64::from(local.minute()) * 60 + i64::from(local.second());
            now - Duration::seconds(secs) - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()))
        }
        Window::Day => local_start(tz, local.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default()),
        Window::Week => {
            let monday = local.date_naive() - Duration::days(i64::from(local.weekday().num_days_from_monday()));
            local_start(tz, monday.and_hms_opt(0, 0, 0).unwrap_or_default())
        }
        Window::Month => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or_default();
            local_start(tz, first.and_hms_opt(0, 0, 0).unwrap_or_default())
        }
    }
}

/// The instant the window containing `now` ends: the next window's start.
pub fn window_end(window: Window, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let start = window_start(window, now, tz);
    match window {
        Window::Hour => start + Duration::hours(1),
        Window::Day => window_start(Window::Day, start + Duration::hours(26), tz),
        Window::Week => window_start(Window::Week, start + Duration::days(7) + Duration::hours(2), tz),
        Window::Month => window_start(Window::Month, start + Duration::days(32), tz),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn berlin_dst_days_have_23_and_25_hours() {
        let berlin = chrono_tz::Europe::Berlin;
        let spring = utc(2026, 3, 29, 12, 0);
        assert_eq!(window_start(Window::Day, spring, berlin), utc(2026, 3, 28, 23, 0));
        assert_eq!(
            window_end(Window::Day, spring, berlin) - window_start(Window::Day, spring, berlin),
            Duration::hours(23)
        );
        let autumn = utc(2026, 10, 25, 12, 0);
        assert_eq!(window_start(Window::Day, autumn, berlin), utc(2026, 10, 24, 22, 0));
        assert_eq!(
            window_end(Window::Day, autumn, berlin) - window_start(Window::Day, autumn, berlin),
            Duration::hours(25)
        );
    }

    #[test]
    fn the_repeated_hour_of_a_fall_back_is_two_windows() {
        let berlin = chrono_tz::Europe::Berlin;
        let first = utc(2026, 10, 25, 0, 30); // 02:30 CEST
        let second = utc(2026, 10, 25, 1, 30); // 02:30 CET
        assert_ne!(window_start(Window::Hour, first, berlin), window_start(Window::Hour, second, berlin));
        assert_eq!(window_start(Window::Hour, second, berlin), utc(2026, 10, 25, 1, 0));
    }

    #[test]
    fn weeks_are_iso_weeks_and_months_know_leap_years() {
        let berlin = chrono_tz::Europe::Berlin;
        // Sunday 2027-01-03 belongs to the week that began Monday 2026-12-28.
        assert_eq!(window_start(Window::Week, utc(2027, 1, 3, 12, 0), berlin), utc(2026, 12, 27, 23, 0));
        assert_eq!(window_start(Window::Week, utc(2027, 1, 4, 12, 0), berlin), utc(2027, 1, 3, 23, 0));
        let february = utc(2028, 2, 15, 12, 0);
        assert_eq!(window_start(Window::Month, february, chrono_tz::UTC), utc(2028, 2, 1, 0, 0));
        assert_eq!(window_end(Window::Month, february, chrono_tz::UTC), utc(2028, 3, 1, 0, 0));
    }

    #[test]
    fn hours_start_on_the_local_hour_in_half_hour_zones() {
        let kolkata = chrono_tz::Asia::Kolkata; // UTC+05:30
        assert_eq!(window_start(Window::Hour, utc(2026, 11, 25, 10, 45), kolkata), utc(2026, 11, 25, 10, 30));
    }

    #[test]
    fn caps_are_listed_in_a_fixed_order() {
        let caps = Caps { hourly: Some(1), monthly: Some(4), daily_spend: Some(Money::cents(100)), ..Caps::default() };
        let names: Vec<&str> = caps_of(&caps).iter().map(|c| c.name).collect();
        assert_eq!(names, ["hourly", "monthly", "daily_spend"]);
    }

    proptest! {
        /// For every instant and zone (DST, half-hour offsets, half-hour DST): a window
        /// contains its instant, starting a window again changes nothing, and a window ends
        /// where the next begins.
        #[test]
        fn windows_tile_the_time_line(seconds in 1_600_000_000i64..2_000_000_000, zone in 0usize..5, window in 0usize..4) {
            let tz = [chrono_tz::UTC, chrono_tz::Europe::Berlin, chrono_tz::America::New_York, chrono_tz::Asia::Kolkata,
                      chrono_tz::Australia::Lord_Howe][zone];
            let window = [Window::Hour, Window::Day, Window::Week, Window::Month][window];
            let now = DateTime::from_timestamp(seconds, 0).unwrap();
            let start = window_start(window, now, tz);
            let end = window_end(window, now, tz);
            prop_assert!(start <= now && now < end, "{start} <= {now} < {end}");
            prop_assert_eq!(window_start(window, start, tz), start);
            prop_assert_eq!(window_start(window, end, tz), end);
        }
    }
}
