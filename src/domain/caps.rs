//! Cap windows (hour, day, week, month) in a campaign's time zone. (TEMPORARY local version)

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub window: Window,
    pub limit: Limit,
    pub name: &'static str,
}

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

pub fn window_end(window: Window, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let start = window_start(window, now, tz);
    match window {
        Window::Hour => start + Duration::hours(1),
        Window::Day => window_start(Window::Day, start + Duration::hours(26), tz),
        Window::Week => window_start(Window::Week, start + Duration::days(7) + Duration::hours(2), tz),
        Window::Month => window_start(Window::Month, start + Duration::days(32), tz),
    }
}
