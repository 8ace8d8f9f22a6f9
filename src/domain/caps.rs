//! Cap windows (hour, day, week, month) in a campaign's time zone. (STUB: helper fills in.)

use chrono::{DateTime, Utc};
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
    /// The config name: "hourly", "daily", ..., "daily_spend", "monthly_spend".
    pub name: &'static str,
}

/// The caps a campaign sets, in a fixed order.
pub fn caps_of(_caps: &Caps) -> Vec<Cap> {
    todo!()
}

/// The instant the local window containing `now` started (local midnight, Monday 00:00 for
/// ISO weeks, the 1st for months, the start of the local hour). Windows are identified by
/// this instant, so the repeated local hour of a DST fall-back is two distinct windows.
pub fn window_start(_window: Window, _now: DateTime<Utc>, _tz: Tz) -> DateTime<Utc> {
    todo!()
}

/// The instant the window containing `now` ends (the next window's start).
pub fn window_end(_window: Window, _now: DateTime<Utc>, _tz: Tz) -> DateTime<Utc> {
    todo!()
}
