//! Open hours per weekday in a campaign's time zone. (STUB: helper fills in.)

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::Schedule;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time range {0:?}")]
pub struct ScheduleError(pub String);

/// Parses "HH:MM-HH:MM" into minutes after local midnight, `[start, end)`; end may be 1440.
pub fn parse_range(_range: &str) -> Result<(u16, u16), ScheduleError> {
    todo!()
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenHours {}

impl OpenHours {
    pub fn from_schedule(_schedule: &Schedule) -> Result<OpenHours, ScheduleError> {
        todo!()
    }

    /// Whether the local wall-clock time of `now` in `tz` falls in an open range of its
    /// local weekday.
    pub fn is_open(&self, _now: DateTime<Utc>, _tz: Tz) -> bool {
        todo!()
    }
}
