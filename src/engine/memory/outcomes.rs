//! What became of each supplier's recent leads (sold, or rejected and why), and per UTC
//! day and vertical how many it sent and how many sold: the supplier portal's "leads sent"
//! and "sold rate" (DESIGN §15).
//!
//! Rationale: a rejected lead leaves nothing in the ledger (only sales are journaled, and
//! journaling every rejection would cost a write per lead on the hot path), so these are
//! counted in this process's memory as leads are decided: since the node started, on this
//! node. Per supplier the newest `RECENT_MAX` leads and `DAYS_KEPT` days are kept; one lock
//! per supplier, held for a push.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::domain::money::{Currency, Money};

/// Recent leads kept per supplier.
pub const RECENT_MAX: usize = 1_000;
/// Days of sent and sold counts kept per supplier.
pub const DAYS_KEPT: i64 = 35;

/// One decided lead as its supplier may see it (no PII: ids, vertical, outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadOutcome {
    pub lead_id: String,
    /// The supplier's own id for the lead, when it gave one.
    pub external_id: Option<String>,
    pub vertical: String,
    pub at: DateTime<Utc>,
    /// `sold` or `rejected`.
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub payout: Option<(Money, Currency)>,
}

/// Leads of one vertical on one day: sent (decided) and sold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    pub sold: u64,
}

#[derive(Default)]
struct SupplierLog {
    recent: VecDeque<LeadOutcome>,
    days: BTreeMap<(NaiveDate, String), Sent>,
}

#[derive(Default)]
pub struct LeadOutcomes {
    by_supplier: DashMap<String, Mutex<SupplierLog>>,
}

impl LeadOutcomes {
    pub fn record(&self, supplier_id: &str, outcome: LeadOutcome) {
        let day = outcome.at.date_naive();
        let entry = match self.by_supplier.get(supplier_id) {
            Some(entry) => entry,
            None => self.by_supplier.entry(supplier_id.to_string()).or_default().downgrade(),
        };
        let mut log = entry.lock();
        let counts = log.days.entry((day, outcome.vertical.clone())).or_default();
        counts.sent += 1;
        counts.sold += u64::from(outcome.status == "sold");
        if log.days.first_key_value().is_some_and(|((first, _), _)| (day - *first).num_days() >= DAYS_KEPT) {
            let oldest_kept = day - chrono::Duration::days(DAYS_KEPT - 1);
            log.days.retain(|(kept, _), _| *kept >= oldest_kept);
        }
        if log.recent.len() == RECENT_MAX {
            log.recent.pop_front();
        }
        log.recent.push_back(outcome);
    }

    /// The supplier's recent leads, newest first, that `keep` keeps, at most `limit`.
    pub fn recent(&self, supplier_id: &str, limit: usize, keep: impl Fn(&LeadOutcome) -> bool) -> Vec<LeadOutcome> {
        let Some(entry) = self.by_supplier.get(supplier_id) else { return Vec::new() };
        let log = entry.lock();
        log.recent.iter().rev().filter(|outcome| keep(outcome)).take(limit).cloned().collect()
    }

    /// Per vertical, what the supplier sent and sold on UTC days `since..`.
    pub fn sent_since(&self, supplier_id: &str, since: NaiveDate) -> BTreeMap<String, Sent> {
        let Some(entry) = self.by_supplier.get(supplier_id) else { return BTreeMap::new() };
        let log = entry.lock();
        let mut by_vertical: BTreeMap<String, Sent> = BTreeMap::new();
        for ((_, vertical), counts) in log.days.range((since, String::new())..) {
            let sum = by_vertical.entry(vertical.clone()).or_default();
            sum.sent += counts.sent;
            sum.sold += counts.sold;
        }
        by_vertical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(n: usize, vertical: &str, sold: bool, at: DateTime<Utc>) -> LeadOutcome {
        LeadOutcome {
            lead_id: format!("led_{n}"),
            external_id: None,
            vertical: vertical.into(),
            at,
            status: if sold { "sold" } else { "rejected" },
            reason: (!sold).then_some("no_eligible_buyer"),
            payout: None,
        }
    }

    fn day(n: u32) -> DateTime<Utc> {
        format!("2026-11-{n:02}T12:00:00Z").parse().unwrap()
    }

    #[test]
    fn recent_leads_are_newest_first_and_bounded() {
        let outcomes = LeadOutcomes::default();
        for n in 0..RECENT_MAX + 5 {
            outcomes.record("s1", outcome(n, "solar", n % 2 == 0, day(1)));
        }
        let recent = outcomes.recent("s1", usize::MAX, |_| true);
        assert_eq!(recent.len(), RECENT_MAX);
        assert_eq!(recent[0].lead_id, format!("led_{}", RECENT_MAX + 4));
        let sold = outcomes.recent("s1", 3, |o| o.status == "sold");
        assert_eq!(sold.iter().map(|o| o.lead_id.as_str()).collect::<Vec<_>>(), ["led_1004", "led_1002", "led_1000"]);
        assert!(outcomes.recent("s2", 10, |_| true).is_empty(), "another supplier sees nothing");
    }

    #[test]
    fn sold_rates_count_per_vertical_since_a_day_and_old_days_go() {
        let outcomes = LeadOutcomes::default();
        outcomes.record("s1", outcome(1, "solar", true, day(1)));
        outcomes.record("s1", outcome(2, "solar", false, day(2)));
        outcomes.record("s1", outcome(3, "solar", true, day(3)));
        outcomes.record("s1", outcome(4, "loans", false, day(3)));
        outcomes.record("s2", outcome(5, "loans", true, day(3)));
        let since = |n: u32| day(n).date_naive();
        let sent = outcomes.sent_since("s1", since(2));
        assert_eq!(sent["solar"], Sent { sent: 2, sold: 1 });
        assert_eq!(sent["loans"], Sent { sent: 1, sold: 0 });
        assert_eq!(outcomes.sent_since("s1", since(1))["solar"], Sent { sent: 3, sold: 2 });
        // Thirty-five days after the first day, the first is forgotten.
        let later = day(1) + chrono::Duration::days(DAYS_KEPT);
        outcomes.record("s1", outcome(6, "solar", false, later));
        assert_eq!(outcomes.sent_since("s1", since(1))["solar"], Sent { sent: 3, sold: 1 });
    }
}
