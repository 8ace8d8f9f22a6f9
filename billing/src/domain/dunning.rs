//! Payment status and dunning tiers of an invoice (DESIGN §13.1).
//!
//! Status is `open` until the invoice is paid in full (`paid`), and `overdue` once a run's
//! `as_of` is past the due date. Tier 1 (reminder) is due `reminder_after_days` after the
//! due date, tier 2 (formal notice) `notice_after_days` after; each is recorded once.

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DunningPolicy {
    pub reminder_after_days: u32,
    pub notice_after_days: u32,
}

impl Default for DunningPolicy {
    fn default() -> DunningPolicy {
        DunningPolicy { reminder_after_days: 1, notice_after_days: 14 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Overdue,
    Paid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Overdue => "overdue",
            Status::Paid => "paid",
        }
    }
}

/// The status of an invoice with `amount_due` left, as of the latest run.
pub fn status(amount_due: Decimal, due_date: NaiveDate, as_of: Option<NaiveDate>) -> Status {
    if amount_due <= Decimal::ZERO {
        Status::Paid
    } else if as_of.is_some_and(|as_of| as_of > due_date) {
        Status::Overdue
    } else {
        Status::Open
    }
}

/// The tiers a run on `as_of` records for an invoice, given those already recorded.
pub fn tiers_due(
    policy: DunningPolicy,
    amount_due: Decimal,
    due_date: NaiveDate,
    as_of: NaiveDate,
    recorded: &[u8],
) -> Vec<u8> {
    if amount_due <= Decimal::ZERO {
        return Vec::new();
    }
    [(1, policy.reminder_after_days), (2, policy.notice_after_days)]
        .into_iter()
        .filter(|(tier, _)| !recorded.contains(tier))
        .filter(|(_, days)| as_of >= due_date + Days::new(u64::from(*days)))
        .map(|(tier, _)| tier)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn status_turns_overdue_the_day_after_the_due_date() {
        let due = day("2026-12-14");
        assert_eq!(status(dec!(10), due, None), Status::Open);
        assert_eq!(status(dec!(10), due, Some(day("2026-12-14"))), Status::Open);
        assert_eq!(status(dec!(10), due, Some(day("2026-12-15"))), Status::Overdue);
        assert_eq!(status(dec!(0), due, Some(day("2027-01-15"))), Status::Paid);
    }

    #[test]
    fn tiers_fall_due_on_their_boundaries_and_once() {
        let policy = DunningPolicy::default();
        let due = day("2026-12-14");
        assert!(tiers_due(policy, dec!(5), due, day("2026-12-14"), &[]).is_empty());
        assert_eq!(tiers_due(policy, dec!(5), due, day("2026-12-15"), &[]), vec![1]);
        assert!(tiers_due(policy, dec!(5), due, day("2026-12-27"), &[1]).is_empty());
        assert_eq!(tiers_due(policy, dec!(5), due, day("2026-12-28"), &[1]), vec![2]);
        assert_eq!(tiers_due(policy, dec!(5), due, day("2026-12-28"), &[]), vec![1, 2]);
        assert!(tiers_due(policy, dec!(5), due, day("2027-06-01"), &[1, 2]).is_empty());
        assert!(tiers_due(policy, dec!(0), due, day("2027-06-01"), &[]).is_empty());
    }

    #[test]
    fn tiers_are_configurable() {
        let policy = DunningPolicy { reminder_after_days: 3, notice_after_days: 30 };
        let due = day("2026-12-14");
        assert!(tiers_due(policy, dec!(5), due, day("2026-12-16"), &[]).is_empty());
        assert_eq!(tiers_due(policy, dec!(5), due, day("2026-12-17"), &[]), vec![1]);
        assert_eq!(tiers_due(policy, dec!(5), due, day("2027-01-13"), &[1]), vec![2]);
    }
}
