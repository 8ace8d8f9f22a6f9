//! Cap windows (hour, day, week, month) in a campaign's time zone (DESIGN §3, "caps").
//!
//! Owns two things: the list of caps a campaign sets (`caps_of`), and the calendar windows
//! they count in (`window_start`, `window_end`). Counting itself (holds, settled sales)
//! lives with the budget; this module only says which window an instant belongs to.
//!
//! A window is identified by the UTC instant it starts at. The starts of one window kind
//! form a sorted set of instants, the *boundaries*, and a window is the span between two
//! neighbouring boundaries. `window_start(now)` is the last boundary at or before `now`,
//! `window_end(now)` the first one after it. Defined that way the windows tile the time
//! line whatever the zone does: `start <= now < end`, a start is its own start, and an end
//! is the next window's start.
//!
//! Boundaries per kind, in local wall time of the zone:
//! - Hour: every instant whose local time is on the hour (HH:00:00). A fall-back repeats
//!   local hours, so the two 02:00 of a Berlin October night are two boundaries and two
//!   windows. A local hour start skipped by a gap is replaced by the first instant after
//!   the gap.
//! - Day, Week (ISO, Monday), Month (the 1st): local midnight of that date; when midnight
//!   is repeated (a fall-back ending at midnight) its first occurrence, when it is skipped
//!   (a spring-forward at midnight, as in America/Sao_Paulo until 2019) the first instant
//!   after the gap. So a DST day is 23 or 25 hours long.
//!
//! Rationale: computing boundaries from local wall times with `from_local_datetime` and
//! then taking the nearest one on the UTC line (rather than converting one local time and
//! hoping) keeps the three window laws above true in zones with half-hour offsets
//! (Asia/Kolkata), half-hour DST (Australia/Lord_Howe), two-hour DST (Antarctica/Troll)
//! and skipped days (Pacific/Apia, 2011-12-30).

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike,
    Utc,
};
use chrono_tz::{GapInfo, Tz};

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
    /// The config name: "hourly", "daily", ..., "daily_spend", "monthly_spend".
    pub name: &'static str,
}

/// The caps a campaign sets, in a fixed order: hourly, daily, weekly, monthly,
/// daily_spend, monthly_spend.
pub fn caps_of(caps: &Caps) -> Vec<Cap> {
    let counts = [
        (Window::Hour, caps.hourly, "hourly"),
        (Window::Day, caps.daily, "daily"),
        (Window::Week, caps.weekly, "weekly"),
        (Window::Month, caps.monthly, "monthly"),
    ];
    let spends = [(Window::Day, caps.daily_spend, "daily_spend"), (Window::Month, caps.monthly_spend, "monthly_spend")];
    let counts = counts
        .into_iter()
        .filter_map(|(window, limit, name)| limit.map(|n| Cap { window, limit: Limit::Count(n), name }));
    let spends = spends
        .into_iter()
        .filter_map(|(window, limit, name)| limit.map(|amount| Cap { window, limit: Limit::Spend(amount), name }));
    counts.chain(spends).collect()
}

/// The instant the local window containing `now` started (local midnight, Monday 00:00 for
/// ISO weeks, the 1st for months, the start of the local hour). Windows are identified by
/// this instant, so the repeated local hour of a DST fall-back is two distinct windows.
pub fn window_start(window: Window, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let mut start = None;
    for_each_boundary_near(window, now, tz, |boundary| {
        let later = match start {
            Some(best) => boundary > best,
            None => true,
        };
        if boundary <= now && later {
            start = Some(boundary);
        }
    });
    // No boundary found only for instants outside the zone data and chrono's range
    // (hundreds of millennia away): the instant is then its own window start.
    start.unwrap_or(now)
}

/// The instant the window containing `now` ends (the next window's start).
pub fn window_end(window: Window, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let mut end = None;
    for_each_boundary_near(window, now, tz, |boundary| {
        let earlier = match end {
            Some(best) => boundary < best,
            None => true,
        };
        if boundary > now && earlier {
            end = Some(boundary);
        }
    });
    // As in `window_start`, only reachable at the edge of representable time.
    end.unwrap_or_else(|| now.checked_add_signed(FALLBACK_WINDOW).unwrap_or(DateTime::<Utc>::MAX_UTC))
}

/// Both ends of the window containing `now`: `(window_start, window_end)`.
pub fn window_bounds(window: Window, now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    (window_start(window, now, tz), window_end(window, now, tz))
}

/// Local hours before and after the current one whose starts are boundary candidates.
/// Three covers every real transition (the largest, Antarctica/Troll, moves clocks by two
/// hours), so the neighbours of `now` on the UTC line are always among them.
const HOUR_NEIGHBOURS: i64 = 3;

/// Days, weeks or months before (`BEFORE`) and after (`AFTER`) the current local one whose
/// starts are candidates. One before covers a fall-back across midnight, two after covers
/// a window that started early (midnight reached before the fall-back returned to the
/// previous day) and a skipped day (Pacific/Apia).
const CALENDAR_NEIGHBOURS_BEFORE: i64 = 1;
const CALENDAR_NEIGHBOURS_AFTER: i64 = 2;

/// How far past a skipped local time to look for the first one that exists, when the zone
/// data does not say where the gap ends: longer than any gap ever (Apia skipped 24 h).
const GAP_SCAN_LIMIT: TimeDelta = TimeDelta::hours(48);
const GAP_SCAN_STEP: TimeDelta = TimeDelta::minutes(1);

/// The end of a window no boundary could be found for (only at the edge of representable
/// time): short, so a cap there resets soon rather than never.
const FALLBACK_WINDOW: TimeDelta = TimeDelta::hours(1);

/// Calls `visit` with every boundary of `window` that lies near `now`: at least the last
/// one at or before `now` and the first one after it.
fn for_each_boundary_near(window: Window, now: DateTime<Utc>, tz: Tz, mut visit: impl FnMut(DateTime<Utc>)) {
    let Some(local) = local_time(now, tz) else {
        return;
    };
    match window {
        Window::Hour => {
            let hour_start = local.date().and_time(NaiveTime::MIN);
            let Some(hour_start) = hour_start.checked_add_signed(hours(local.hour())) else {
                return;
            };
            for k in -HOUR_NEIGHBOURS..=HOUR_NEIGHBOURS {
                if let Some(start) = hour_start.checked_add_signed(TimeDelta::hours(k)) {
                    every_instant_at(start, tz, &mut visit);
                }
            }
        }
        Window::Day | Window::Week | Window::Month => {
            for k in -CALENDAR_NEIGHBOURS_BEFORE..=CALENDAR_NEIGHBOURS_AFTER {
                if let Some(date) = calendar_start(window, local.date(), k) {
                    if let Some(instant) = first_instant_at(date.and_time(NaiveTime::MIN), tz) {
                        visit(instant);
                    }
                }
            }
        }
    }
}

fn hours(hour: u32) -> TimeDelta {
    TimeDelta::hours(i64::from(hour))
}

/// The local wall time of `now` in `tz`; `None` only outside chrono's date range.
fn local_time(now: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&now.naive_utc()).fix();
    now.naive_utc().checked_add_offset(offset)
}

/// The first day of the day, ISO week or month `k` periods after the one containing `date`.
fn calendar_start(window: Window, date: NaiveDate, k: i64) -> Option<NaiveDate> {
    match window {
        Window::Hour => None,
        Window::Day => shift_days(date, k),
        Window::Week => {
            let monday = date.checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))?;
            shift_days(monday, k.checked_mul(7)?)
        }
        Window::Month => {
            let months = i64::from(date.year()) * 12 + i64::from(date.month0()) + k;
            let year = i32::try_from(months.div_euclid(12)).ok()?;
            let month0 = u32::try_from(months.rem_euclid(12)).ok()?;
            NaiveDate::from_ymd_opt(year, month0 + 1, 1)
        }
    }
}

fn shift_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

/// Every instant whose local time is `local`: one, two on a fall-back, or (when `local` is
/// skipped) the first instant after the gap.
fn every_instant_at(local: NaiveDateTime, tz: Tz, visit: &mut impl FnMut(DateTime<Utc>)) {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => visit(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => {
            visit(first.with_timezone(&Utc));
            visit(second.with_timezone(&Utc));
        }
        LocalResult::None => {
            if let Some(at) = first_instant_after_gap(local, tz) {
                visit(at);
            }
        }
    }
}

/// The earliest instant whose local time is `local`, or the first instant after the gap
/// when `local` is skipped.
fn first_instant_at(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at.with_timezone(&Utc)),
        LocalResult::None => first_instant_after_gap(local, tz),
    }
}

/// `local` is skipped by a gap: the instant the gap ends (its transition). The zone data
/// knows it exactly; should it not (a gap ending in an ambiguous time, or at the edge of
/// the data), the first existing local time is searched minute by minute, bounded.
fn first_instant_after_gap(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    if let Some(end) = GapInfo::new(&local, &tz).and_then(|gap| gap.end) {
        return Some(end.with_timezone(&Utc));
    }
    let mut probe = local;
    let limit = local.checked_add_signed(GAP_SCAN_LIMIT)?;
    while probe < limit {
        probe = probe.checked_add_signed(GAP_SCAN_STEP)?;
        if let Some(at) = tz.from_local_datetime(&probe).earliest() {
            return Some(at.with_timezone(&Utc));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Antarctica, Asia, Australia, Europe, Pacific};
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("test instant").with_timezone(&Utc)
    }

    fn length_h(window: Window, now: DateTime<Utc>, tz: Tz) -> i64 {
        let (start, end) = window_bounds(window, now, tz);
        (end - start).num_hours()
    }

    fn money(text: &str) -> Money {
        Money::parse(text).expect("test amount")
    }

    #[test]
    fn caps_in_fixed_order() {
        let caps = Caps {
            hourly: Some(5),
            daily: None,
            weekly: Some(100),
            monthly: Some(300),
            daily_spend: Some(money("500.00")),
            monthly_spend: Some(money("9000.00")),
        };
        let listed: Vec<(&str, Window, Limit)> =
            caps_of(&caps).into_iter().map(|cap| (cap.name, cap.window, cap.limit)).collect();
        assert_eq!(
            listed,
            vec![
                ("hourly", Window::Hour, Limit::Count(5)),
                ("weekly", Window::Week, Limit::Count(100)),
                ("monthly", Window::Month, Limit::Count(300)),
                ("daily_spend", Window::Day, Limit::Spend(money("500.00"))),
                ("monthly_spend", Window::Month, Limit::Spend(money("9000.00"))),
            ]
        );
        assert!(caps_of(&Caps::default()).is_empty());
        let daily = Caps { daily: Some(0), ..Caps::default() };
        assert_eq!(caps_of(&daily)[0].limit, Limit::Count(0));
    }

    #[test]
    fn berlin_dst_days_are_23_and_25_hours() {
        let berlin = Europe::Berlin;
        let spring = utc("2026-03-29T10:00:00Z");
        assert_eq!(
            window_bounds(Window::Day, spring, berlin),
            (utc("2026-03-28T23:00:00Z"), utc("2026-03-29T22:00:00Z"))
        );
        assert_eq!(length_h(Window::Day, spring, berlin), 23);
        let autumn = utc("2026-10-25T10:00:00Z");
        assert_eq!(
            window_bounds(Window::Day, autumn, berlin),
            (utc("2026-10-24T22:00:00Z"), utc("2026-10-25T23:00:00Z"))
        );
        assert_eq!(length_h(Window::Day, autumn, berlin), 25);
        assert_eq!(length_h(Window::Day, utc("2026-10-26T10:00:00Z"), berlin), 24);
    }

    #[test]
    fn berlin_hours_around_dst() {
        let berlin = Europe::Berlin;
        // Fall back: 02:00-03:00 local twice, two distinct hour windows.
        let first = utc("2026-10-25T00:30:00Z"); // 02:30 CEST
        let second = utc("2026-10-25T01:30:00Z"); // 02:30 CET
        assert_eq!(
            window_bounds(Window::Hour, first, berlin),
            (utc("2026-10-25T00:00:00Z"), utc("2026-10-25T01:00:00Z"))
        );
        assert_eq!(
            window_bounds(Window::Hour, second, berlin),
            (utc("2026-10-25T01:00:00Z"), utc("2026-10-25T02:00:00Z"))
        );
        // Spring forward: 01:00 CET is followed directly by 03:00 CEST.
        assert_eq!(
            window_bounds(Window::Hour, utc("2026-03-29T00:30:00Z"), berlin),
            (utc("2026-03-29T00:00:00Z"), utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            window_bounds(Window::Hour, utc("2026-03-29T01:30:00Z"), berlin),
            (utc("2026-03-29T01:00:00Z"), utc("2026-03-29T02:00:00Z"))
        );
    }

    #[test]
    fn new_york_dst_days() {
        let ny = America::New_York;
        assert_eq!(length_h(Window::Day, utc("2026-03-08T12:00:00Z"), ny), 23);
        assert_eq!(length_h(Window::Day, utc("2026-11-01T12:00:00Z"), ny), 25);
        assert_eq!(window_start(Window::Day, utc("2026-11-01T12:00:00Z"), ny), utc("2026-11-01T04:00:00Z"));
        // 01:30 EDT and 01:30 EST are in different hour windows.
        assert_ne!(
            window_start(Window::Hour, utc("2026-11-01T05:30:00Z"), ny),
            window_start(Window::Hour, utc("2026-11-01T06:30:00Z"), ny)
        );
    }

    #[test]
    fn kolkata_hours_start_on_the_local_hour() {
        // UTC+05:30: local 10:00 is 04:30 UTC.
        assert_eq!(
            window_bounds(Window::Hour, utc("2026-05-10T04:45:00Z"), Asia::Kolkata),
            (utc("2026-05-10T04:30:00Z"), utc("2026-05-10T05:30:00Z"))
        );
        assert_eq!(window_start(Window::Day, utc("2026-05-10T04:45:00Z"), Asia::Kolkata), utc("2026-05-09T18:30:00Z"));
    }

    #[test]
    fn lord_howe_half_hour_dst() {
        let tz = Australia::Lord_Howe;
        // 2026-04-05 02:00 +11 (2026-04-04T15:00Z) falls back to 01:30 +10:30: local
        // 01:30-02:00 repeats, the hour starting 01:00 lasts 90 minutes.
        let repeated = utc("2026-04-04T15:15:00Z"); // 01:45 +10:30
        assert_eq!(
            window_bounds(Window::Hour, repeated, tz),
            (utc("2026-04-04T14:00:00Z"), utc("2026-04-04T15:30:00Z"))
        );
        assert_eq!(length_h(Window::Day, repeated, tz), 24); // 24.5 h, floored
        let (start, end) = window_bounds(Window::Day, repeated, tz);
        assert_eq!((end - start).num_minutes(), 24 * 60 + 30);
        // 2026-10-04 02:00 +10:30 (2026-10-03T15:30Z) jumps to 02:30 +11: the hour starting
        // 02:00 is skipped, its window starts at the jump and lasts 30 minutes.
        assert_eq!(
            window_bounds(Window::Hour, utc("2026-10-03T15:40:00Z"), tz),
            (utc("2026-10-03T15:30:00Z"), utc("2026-10-03T16:00:00Z"))
        );
    }

    #[test]
    fn skipped_midnight_starts_the_day_after_the_gap() {
        // America/Sao_Paulo 2018-11-04: 00:00 -03 jumped to 01:00 -02 (03:00 UTC).
        let tz = America::Sao_Paulo;
        let noon = utc("2018-11-04T14:00:00Z");
        assert_eq!(window_bounds(Window::Day, noon, tz), (utc("2018-11-04T03:00:00Z"), utc("2018-11-05T02:00:00Z")));
        // The previous day ends there too.
        assert_eq!(window_end(Window::Day, utc("2018-11-03T14:00:00Z"), tz), utc("2018-11-04T03:00:00Z"));
        // 2019-02-17 00:00 -02 fell back to 2019-02-16 23:00 -03: Feb 16 has 25 hours.
        assert_eq!(length_h(Window::Day, utc("2019-02-16T15:00:00Z"), tz), 25);
        assert_eq!(
            window_start(Window::Day, utc("2019-02-17T02:30:00Z"), tz), // 23:30 -03, Feb 16
            utc("2019-02-16T02:00:00Z")
        );
        // Asia/Beirut springs forward at midnight: 2026-03-29 00:00 +02 → 01:00 +03.
        assert_eq!(window_start(Window::Day, utc("2026-03-29T09:00:00Z"), Asia::Beirut), utc("2026-03-28T22:00:00Z"));
    }

    #[test]
    fn skipped_day_in_apia() {
        // Pacific/Apia skipped 2011-12-30 entirely (-10 → +14).
        let tz = Pacific::Apia;
        let dec_29 = utc("2011-12-30T00:00:00Z"); // 2011-12-29 14:00 -10
        let (start, end) = window_bounds(Window::Day, dec_29, tz);
        assert_eq!(start, utc("2011-12-29T10:00:00Z"));
        assert_eq!(end, utc("2011-12-30T10:00:00Z")); // 2011-12-31 00:00 +14
        assert_eq!(window_start(Window::Day, end, tz), end);
    }

    #[test]
    fn troll_two_hour_fall_back_has_no_overlapping_hours() {
        // Antarctica/Troll: +02 → +00 on 2026-10-25 at 01:00 UTC (03:00 → 01:00 local).
        let tz = Antarctica::Troll;
        let mut now = utc("2026-10-24T22:00:00Z");
        while now < utc("2026-10-25T05:00:00Z") {
            let (start, end) = window_bounds(Window::Hour, now, tz);
            assert!(start <= now && now < end, "{now}");
            assert_eq!(end - start, TimeDelta::hours(1), "{now}");
            now += TimeDelta::minutes(10);
        }
    }

    #[test]
    fn weeks_are_iso_weeks() {
        let berlin = Europe::Berlin;
        // Wednesday 2026-07-01: the week started Monday 2026-06-29 (across the month).
        assert_eq!(
            window_bounds(Window::Week, utc("2026-07-01T12:00:00Z"), berlin),
            (utc("2026-06-28T22:00:00Z"), utc("2026-07-05T22:00:00Z"))
        );
        // Saturday 2027-01-02 is in ISO week 53 of 2026 (Mon 2026-12-28); week 1 of 2027
        // starts Monday 2027-01-04.
        assert_eq!(
            window_bounds(Window::Week, utc("2027-01-02T12:00:00Z"), berlin),
            (utc("2026-12-27T23:00:00Z"), utc("2027-01-03T23:00:00Z"))
        );
        assert_eq!(window_start(Window::Week, utc("2027-01-04T00:30:00Z"), berlin), utc("2027-01-03T23:00:00Z"));
        // A Monday 00:00 is its own week start; Sunday 23:59 belongs to the week before.
        let monday = utc("2026-07-05T22:00:00Z");
        assert_eq!(window_start(Window::Week, monday, berlin), monday);
        assert_eq!(window_end(Window::Week, monday - TimeDelta::seconds(1), berlin), monday);
        // The week containing the autumn change is 169 hours long.
        assert_eq!(length_h(Window::Week, utc("2026-10-22T12:00:00Z"), berlin), 169);
    }

    #[test]
    fn months_follow_the_calendar() {
        let utc_tz = chrono_tz::UTC;
        // February of the leap year 2028 has 29 days.
        assert_eq!(
            window_bounds(Window::Month, utc("2028-02-15T12:00:00Z"), utc_tz),
            (utc("2028-02-01T00:00:00Z"), utc("2028-03-01T00:00:00Z"))
        );
        assert_eq!(length_h(Window::Month, utc("2028-02-29T23:59:59Z"), utc_tz), 29 * 24);
        assert_eq!(length_h(Window::Month, utc("2027-02-10T00:00:00Z"), utc_tz), 28 * 24);
        // December rolls into the next year.
        assert_eq!(
            window_bounds(Window::Month, utc("2026-12-31T23:00:00Z"), utc_tz),
            (utc("2026-12-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
        );
        // Local month: 2026-01-31 23:30 UTC is already February in Berlin.
        assert_eq!(
            window_start(Window::Month, utc("2026-01-31T23:30:00Z"), Europe::Berlin),
            utc("2026-01-31T23:00:00Z")
        );
        // March 2026 in Berlin loses an hour.
        assert_eq!(length_h(Window::Month, utc("2026-03-10T00:00:00Z"), Europe::Berlin), 31 * 24 - 1);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for window in [Window::Hour, Window::Day, Window::Week, Window::Month] {
            for tz in [chrono_tz::UTC, Europe::Berlin, Australia::Lord_Howe] {
                for now in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                    let (start, end) = window_bounds(window, now, tz);
                    assert!(start <= now || end > now);
                }
            }
        }
    }

    const ZONES: [Tz; 5] = [chrono_tz::UTC, Europe::Berlin, America::New_York, Asia::Kolkata, Australia::Lord_Howe];

    const WINDOWS: [Window; 4] = [Window::Hour, Window::Day, Window::Week, Window::Month];

    /// 1900-01-01 .. 2200-01-01 in Unix seconds.
    const SECONDS_MIN: i64 = -2_208_988_800;
    const SECONDS_MAX: i64 = 7_258_118_400;

    fn check_window_laws(window: Window, now: DateTime<Utc>, tz: Tz) -> Result<(), TestCaseError> {
        let (start, end) = window_bounds(window, now, tz);
        prop_assert!(start <= now && now < end, "{window:?} {tz} {now}: {start} .. {end}");
        prop_assert_eq!(window_start(window, start, tz), start);
        prop_assert_eq!(window_start(window, end, tz), end);
        prop_assert_eq!(window_end(window, start, tz), end);
        // The window just before ends where this one starts.
        prop_assert_eq!(window_end(window, start - TimeDelta::nanoseconds(1), tz), start);
        let hours = (end - start).num_minutes();
        let (min_minutes, max_minutes) = match window {
            Window::Hour => (30, 150),
            Window::Day => (22 * 60, 26 * 60),
            Window::Week => (7 * 24 * 60 - 120, 7 * 24 * 60 + 120),
            Window::Month => (28 * 24 * 60 - 120, 31 * 24 * 60 + 120),
        };
        prop_assert!((min_minutes..=max_minutes).contains(&hours), "{window:?} {tz} {now}: {hours} min");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn windows_tile_the_time_line(
            seconds in SECONDS_MIN..SECONDS_MAX,
            nanos in 0u32..1_000_000_000,
            zone in 0usize..ZONES.len(),
            window in 0usize..WINDOWS.len(),
        ) {
            let now = DateTime::from_timestamp(seconds, nanos).expect("in range");
            check_window_laws(WINDOWS[window], now, ZONES[zone])?;
        }

        #[test]
        fn windows_tile_the_time_line_near_transitions(
            year in 1980i32..2100,
            day in 0u64..366,
            minute in 0i64..(48 * 60),
            zone in 0usize..ZONES.len(),
            window in 0usize..WINDOWS.len(),
        ) {
            // Dense around local midnights and early-morning DST changes.
            let base = NaiveDate::from_ymd_opt(year, 1, 1)
                .and_then(|d| d.checked_add_days(Days::new(day)))
                .expect("in range")
                .and_time(NaiveTime::MIN)
                .and_utc();
            let now = base + TimeDelta::minutes(minute) - TimeDelta::hours(14);
            check_window_laws(WINDOWS[window], now, ZONES[zone])?;
        }

        #[test]
        fn windows_tile_the_time_line_in_every_zone(
            seconds in 0i64..2_208_988_800, // 1970 .. 2040
            zone in 0usize..chrono_tz::TZ_VARIANTS.len(),
            window in 0usize..WINDOWS.len(),
        ) {
            let now = DateTime::from_timestamp(seconds, 0).expect("in range");
            let tz = chrono_tz::TZ_VARIANTS[zone];
            let (start, end) = window_bounds(WINDOWS[window], now, tz);
            prop_assert!(start <= now && now < end, "{tz} {now}: {start} .. {end}");
            prop_assert_eq!(window_start(WINDOWS[window], start, tz), start);
            prop_assert_eq!(window_start(WINDOWS[window], end, tz), end);
        }
    }
}
