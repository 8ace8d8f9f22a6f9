//! Open hours per weekday in a campaign's time zone (DESIGN §3, "schedule").
//!
//! Owns parsing `"HH:MM-HH:MM"` ranges and answering "is this campaign open at this
//! instant". A schedule is wall-clock time: an instant is converted to local time in the
//! campaign's zone and checked against the ranges of its *local* weekday. That makes DST
//! need no special case: on a spring-forward day the skipped local times never occur (a
//! range inside the gap is simply never open that day, a range spanning it stays open
//! across the jump), and on a fall-back day a repeated local time is open on both passes if
//! it is in range.
//!
//! Rationale: ranges are parsed once into minutes (`OpenHours`), so the per-lead check is a
//! time-zone conversion and a few integer comparisons.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::model::Schedule;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time range {0:?}")]
pub struct ScheduleError(pub String);

/// Minutes in a day: the exclusive end of a range that runs to midnight ("24:00").
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// The only accepted shape is "HH:MM-HH:MM": exactly eleven ASCII bytes.
const RANGE_LEN: usize = "HH:MM-HH:MM".len();

/// An error echoes at most this much of the input: enough to recognise it, never a whole
/// request body copied into a log line.
const ERROR_ECHO_CHARS_MAX: usize = 32;

fn error(range: &str) -> ScheduleError {
    ScheduleError(range.chars().take(ERROR_ECHO_CHARS_MAX).collect())
}

/// Two ASCII digits as a number.
fn two_digits(bytes: &[u8]) -> Option<u16> {
    match bytes {
        [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => Some(u16::from(tens - b'0') * 10 + u16::from(ones - b'0')),
        _ => None,
    }
}

/// "HH:MM" as minutes after midnight; "24:00" (1440) only when `allow_midnight_end`.
fn parse_time(bytes: &[u8], allow_midnight_end: bool) -> Option<u16> {
    let [h1, h2, b':', m1, m2] = bytes else {
        return None;
    };
    let hours = two_digits(&[*h1, *h2])?;
    let minutes = two_digits(&[*m1, *m2])?;
    if minutes >= 60 {
        return None;
    }
    match hours {
        0..=23 => Some(hours * 60 + minutes),
        24 if allow_midnight_end && minutes == 0 => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

/// Parses "HH:MM-HH:MM" into minutes after local midnight, `[start, end)`; end may be 1440.
///
/// Strict: two-digit hours and minutes, no spaces, start before end, "24:00" only as an end.
pub fn parse_range(range: &str) -> Result<(u16, u16), ScheduleError> {
    let bytes = range.as_bytes();
    if bytes.len() != RANGE_LEN || bytes[5] != b'-' {
        return Err(error(range));
    }
    let start = parse_time(&bytes[..5], false).ok_or_else(|| error(range))?;
    let end = parse_time(&bytes[6..], true).ok_or_else(|| error(range))?;
    if start >= end {
        return Err(error(range));
    }
    Ok((start, end))
}

/// A campaign's schedule, parsed: per weekday (Monday first) the open `[start, end)` ranges
/// in minutes after local midnight. A day without ranges is closed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenHours {
    days: [Vec<(u16, u16)>; 7],
}

impl OpenHours {
    pub fn from_schedule(schedule: &Schedule) -> Result<OpenHours, ScheduleError> {
        let mut hours = OpenHours::default();
        for (slot, (_, ranges)) in hours.days.iter_mut().zip(schedule.days()) {
            for range in ranges {
                slot.push(parse_range(range)?);
            }
            slot.sort_unstable();
        }
        Ok(hours)
    }

    /// A schedule open around the clock every day.
    pub fn always() -> OpenHours {
        OpenHours { days: std::array::from_fn(|_| vec![(0, MINUTES_PER_DAY)]) }
    }

    /// The open ranges of a weekday, `[start, end)` in minutes after local midnight.
    pub fn ranges(&self, weekday: chrono::Weekday) -> &[(u16, u16)] {
        &self.days[weekday.num_days_from_monday() as usize]
    }

    /// Whether the local wall-clock time of `now` in `tz` falls in an open range of its
    /// local weekday.
    pub fn is_open(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        local_minute(now, tz).is_some_and(|local| self.is_open_at(local))
    }

    /// Whether a local (weekday, minute of the day), from `local_minute`, is open.
    pub fn is_open_at(&self, (weekday, minute_of_day): (chrono::Weekday, u16)) -> bool {
        self.ranges(weekday).iter().any(|&(start, end)| start <= minute_of_day && minute_of_day < end)
    }
}

/// The local weekday and minute of the day of `now` in `tz`; None only for an instant
/// hundreds of millennia away, which has no local time (and is never open).
///
/// Rationale: the zone lookup is the costly part of a schedule check; a decision looks it
/// up once per zone, not once per campaign (`eligibility::evaluate`).
pub fn local_minute(now: DateTime<Utc>, tz: Tz) -> Option<(chrono::Weekday, u16)> {
    let offset = tz.offset_from_utc_datetime(&now.naive_utc()).fix();
    let local = now.naive_utc().checked_add_offset(offset)?;
    // Both values are bounded by the clock (hour < 24, minute < 60): no overflow.
    Some((local.weekday(), (local.hour() * 60 + local.minute()) as u16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("test instant").with_timezone(&Utc)
    }

    fn every_day(ranges: &[&str]) -> Schedule {
        let ranges: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
        Schedule {
            mon: ranges.clone(),
            tue: ranges.clone(),
            wed: ranges.clone(),
            thu: ranges.clone(),
            fri: ranges.clone(),
            sat: ranges.clone(),
            sun: ranges,
        }
    }

    fn hours(schedule: &Schedule) -> OpenHours {
        OpenHours::from_schedule(schedule).expect("valid schedule")
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("08:00-18:00"), Ok((480, 1080)));
        assert_eq!(parse_range("00:00-24:00"), Ok((0, 1440)));
        assert_eq!(parse_range("23:59-24:00"), Ok((1439, 1440)));
        assert_eq!(parse_range("00:00-00:01"), Ok((0, 1)));
    }

    #[test]
    fn refuses_malformed_ranges() {
        for bad in [
            "",
            "8:00-18:00",
            "08:00-18:0",
            "08:00 - 18:00",
            " 08:00-18:00",
            "08:00-18:00 ",
            "08.00-18:00",
            "08:00_18:00",
            "18:00-08:00",
            "08:00-08:00",
            "24:00-24:00",
            "00:00-24:01",
            "00:00-25:00",
            "08:60-18:00",
            "-1:00-18:00",
            "+8:00-18:00",
            "０8:00-18:00",
            "08:00-18:00-20:00",
        ] {
            assert!(parse_range(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn error_echo_is_bounded() {
        let long = "x".repeat(10_000);
        let err = parse_range(&long).expect_err("refused");
        assert_eq!(err.0.len(), ERROR_ECHO_CHARS_MAX);
        // Multi-byte input is cut on a character boundary, never mid-character.
        let err = parse_range(&"é".repeat(100)).expect_err("refused");
        assert_eq!(err.0.chars().count(), ERROR_ECHO_CHARS_MAX);
    }

    #[test]
    fn from_schedule_reports_the_bad_range() {
        let schedule = Schedule { wed: vec!["08:00-12:00".into(), "13:00-1800".into()], ..Schedule::default() };
        assert_eq!(OpenHours::from_schedule(&schedule), Err(ScheduleError("13:00-1800".into())));
    }

    #[test]
    fn open_on_the_local_weekday_only() {
        let schedule = Schedule { mon: vec!["08:00-12:00".into(), "13:00-18:00".into()], ..Schedule::default() };
        let open = hours(&schedule);
        let berlin = chrono_tz::Europe::Berlin;
        // Monday 2026-06-01, CEST (UTC+2).
        assert!(!open.is_open(utc("2026-06-01T05:59:00Z"), berlin)); // 07:59
        assert!(open.is_open(utc("2026-06-01T06:00:00Z"), berlin)); // 08:00
        assert!(open.is_open(utc("2026-06-01T09:59:59Z"), berlin)); // 11:59:59
        assert!(!open.is_open(utc("2026-06-01T10:30:00Z"), berlin)); // 12:30 lunch
        assert!(open.is_open(utc("2026-06-01T11:00:00Z"), berlin)); // 13:00
        assert!(!open.is_open(utc("2026-06-01T16:00:00Z"), berlin)); // 18:00 end exclusive
        assert!(!open.is_open(utc("2026-06-02T06:00:00Z"), berlin)); // Tuesday
                                                                     // Sunday 23:30 UTC is already Monday 01:30 in Berlin: Monday's ranges apply.
        let late = hours(&Schedule { mon: vec!["01:00-02:00".into()], ..Schedule::default() });
        assert!(late.is_open(utc("2026-05-31T23:30:00Z"), berlin));
        assert!(!late.is_open(utc("2026-05-31T23:30:00Z"), chrono_tz::UTC));
    }

    #[test]
    fn range_to_midnight_includes_the_last_minute() {
        let open = hours(&every_day(&["22:00-24:00"]));
        let tz = chrono_tz::UTC;
        assert!(open.is_open(utc("2026-01-01T23:59:59Z"), tz));
        assert!(!open.is_open(utc("2026-01-02T00:00:00Z"), tz));
        assert!(!open.is_open(utc("2026-01-01T21:59:59Z"), tz));
    }

    #[test]
    fn berlin_spring_forward() {
        // 2026-03-29: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
        let berlin = chrono_tz::Europe::Berlin;
        let inside_gap = hours(&every_day(&["02:00-03:00"]));
        let spanning = hours(&every_day(&["01:00-04:00"]));
        let mut instant = utc("2026-03-28T23:00:00Z"); // 00:00 local
        while instant < utc("2026-03-29T22:00:00Z") {
            assert!(!inside_gap.is_open(instant, berlin), "skipped hour is never open ({instant})");
            instant += chrono::TimeDelta::minutes(1);
        }
        assert!(!spanning.is_open(utc("2026-03-28T23:59:00Z"), berlin)); // 00:59 CET
        assert!(spanning.is_open(utc("2026-03-29T00:00:00Z"), berlin)); // 01:00 CET
        assert!(spanning.is_open(utc("2026-03-29T00:59:00Z"), berlin)); // 01:59 CET
        assert!(spanning.is_open(utc("2026-03-29T01:00:00Z"), berlin)); // 03:00 CEST
        assert!(spanning.is_open(utc("2026-03-29T01:59:00Z"), berlin)); // 03:59 CEST
        assert!(!spanning.is_open(utc("2026-03-29T02:00:00Z"), berlin)); // 04:00 CEST
    }

    #[test]
    fn berlin_fall_back_repeated_hour_is_open_twice() {
        // 2026-10-25: 03:00 CEST (01:00 UTC) falls back to 02:00 CET.
        let berlin = chrono_tz::Europe::Berlin;
        let open = hours(&every_day(&["02:00-03:00"]));
        assert!(!open.is_open(utc("2026-10-24T23:59:00Z"), berlin)); // 01:59 CEST
        assert!(open.is_open(utc("2026-10-25T00:00:00Z"), berlin)); // 02:00 CEST
        assert!(open.is_open(utc("2026-10-25T00:59:00Z"), berlin)); // 02:59 CEST
        assert!(open.is_open(utc("2026-10-25T01:00:00Z"), berlin)); // 02:00 CET
        assert!(open.is_open(utc("2026-10-25T01:59:00Z"), berlin)); // 02:59 CET
        assert!(!open.is_open(utc("2026-10-25T02:00:00Z"), berlin)); // 03:00 CET
    }

    #[test]
    fn new_york_dst_days() {
        let ny = chrono_tz::America::New_York;
        let open = hours(&every_day(&["01:00-03:00"]));
        // 2026-03-08: 02:00 EST (07:00 UTC) jumps to 03:00 EDT: open only 01:00-02:00 EST.
        assert!(open.is_open(utc("2026-03-08T06:00:00Z"), ny)); // 01:00 EST
        assert!(open.is_open(utc("2026-03-08T06:59:00Z"), ny)); // 01:59 EST
        assert!(!open.is_open(utc("2026-03-08T07:00:00Z"), ny)); // 03:00 EDT
                                                                 // 2026-11-01: 02:00 EDT (06:00 UTC) falls back to 01:00 EST: 01:00-02:00 twice.
        assert!(!open.is_open(utc("2026-11-01T04:59:00Z"), ny)); // 00:59 EDT
        assert!(open.is_open(utc("2026-11-01T05:00:00Z"), ny)); // 01:00 EDT
        assert!(open.is_open(utc("2026-11-01T06:30:00Z"), ny)); // 01:30 EST
        assert!(open.is_open(utc("2026-11-01T07:59:00Z"), ny)); // 02:59 EST
        assert!(!open.is_open(utc("2026-11-01T08:00:00Z"), ny)); // 03:00 EST
                                                                 // Business hours follow the wall clock across the change.
        let office = hours(&every_day(&["09:00-17:00"]));
        assert!(office.is_open(utc("2026-03-06T14:00:00Z"), ny)); // 09:00 EST, Friday
        assert!(!office.is_open(utc("2026-03-09T12:30:00Z"), ny)); // 08:30 EDT, Monday
        assert!(office.is_open(utc("2026-03-09T13:00:00Z"), ny)); // 09:00 EDT
    }

    #[test]
    fn ranges_are_exposed_per_weekday() {
        let open = hours(&Schedule { fri: vec!["13:00-18:00".into(), "08:00-12:00".into()], ..Schedule::default() });
        assert_eq!(open.ranges(Weekday::Fri), &[(480, 720), (780, 1080)]);
        assert!(open.ranges(Weekday::Sat).is_empty());
    }

    const ZONES: [Tz; 5] = [
        chrono_tz::UTC,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Australia::Lord_Howe,
    ];

    proptest! {
        #[test]
        fn all_week_schedule_is_always_open_and_empty_never(
            seconds in -2_208_988_800i64..7_258_118_400, // 1900 .. 2200
            zone in 0usize..ZONES.len(),
        ) {
            let now = DateTime::from_timestamp(seconds, 0).expect("in range");
            let tz = ZONES[zone];
            prop_assert!(hours(&every_day(&["00:00-24:00"])).is_open(now, tz));
            prop_assert!(OpenHours::always().is_open(now, tz));
            prop_assert!(!hours(&Schedule::default()).is_open(now, tz));
        }

        #[test]
        fn parse_range_never_panics(text in "\\PC{0,16}") {
            let _ = parse_range(&text);
        }

        #[test]
        fn parse_range_accepts_every_valid_range(start in 0u16..1440, len in 1u16..1440) {
            let end = (start + len).min(MINUTES_PER_DAY);
            prop_assume!(start < end);
            let text = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
            prop_assert_eq!(parse_range(&text), Ok((start, end)));
        }
    }
}
