//! Returns by id, by sale (one return per sale), and in the orders their readers page
//! through: a buyer's returns by when they were requested, a supplier's by when they last
//! changed (so the supplier feed shows a return again when it is resolved).
//!
//! Every change takes the next revision number; revisions are journaled with the return,
//! so cursors handed out before a restart stay valid after it.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use crate::domain::returns::{LeadReturn, ReturnStatus};
pub use crate::engine::ports::returns::{Stored, RETURNS_PAGE_MAX};

#[derive(Default)]
struct State {
    by_id: HashMap<String, Stored>,
    /// sale id → return id, or "" while a request for the sale is being journaled.
    by_sale: HashMap<String, String>,
    by_buyer: HashMap<String, BTreeMap<u64, String>>,
    by_supplier: HashMap<String, BTreeMap<u64, String>>,
    last_revision: u64,
}

#[derive(Default)]
pub struct Returns {
    state: Mutex<State>,
}

/// Why a sale cannot take a return now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// The sale already has a return (or one is being requested right now).
    Taken,
}

impl Returns {
    /// Reserves `sale_id` for a return being requested, so two concurrent requests for one
    /// sale cannot both succeed.
    pub fn claim(&self, sale_id: &str) -> Claim {
        let mut state = self.state.lock();
        if state.by_sale.contains_key(sale_id) {
            return Claim::Taken;
        }
        state.by_sale.insert(sale_id.to_string(), String::new());
        Claim::Claimed
    }

    /// Gives a claim back (the request was not journaled).
    pub fn unclaim(&self, sale_id: &str) {
        let mut state = self.state.lock();
        if state.by_sale.get(sale_id).is_some_and(String::is_empty) {
            state.by_sale.remove(sale_id);
        }
    }

    /// The revision the next change will take (journaled with it).
    pub fn next_revision(&self) -> u64 {
        let mut state = self.state.lock();
        state.last_revision += 1;
        state.last_revision
    }

    /// Records a new or changed return at `revision` (live, or read back at start).
    pub fn put(&self, lead_return: LeadReturn, revision: u64) {
        let mut state = self.state.lock();
        state.last_revision = state.last_revision.max(revision);
        let id = lead_return.return_id.clone();
        let created = match state.by_id.get(&id) {
            Some(old) if old.revision > revision => return,
            Some(old) => {
                let (old_revision, created) = (old.revision, old.created);
                if let Some(feed) = state.by_supplier.get_mut(&lead_return.supplier_id) {
                    feed.remove(&old_revision);
                }
                created
            }
            None => revision,
        };
        state.by_sale.insert(lead_return.sale_id.clone(), id.clone());
        state.by_buyer.entry(lead_return.buyer_id.clone()).or_default().insert(created, id.clone());
        state.by_supplier.entry(lead_return.supplier_id.clone()).or_default().insert(revision, id.clone());
        state.by_id.insert(id, Stored { lead_return, created, revision });
    }

    /// Every return with its places, and the last revision, for a checkpoint.
    pub fn export(&self) -> (Vec<Stored>, u64) {
        let state = self.state.lock();
        (state.by_id.values().cloned().collect(), state.last_revision)
    }

    pub fn import(&self, returns: Vec<Stored>, last_revision: u64) {
        let mut state = self.state.lock();
        state.last_revision = state.last_revision.max(last_revision);
        for stored in returns {
            let id = stored.lead_return.return_id.clone();
            let (buyer, supplier) = (stored.lead_return.buyer_id.clone(), stored.lead_return.supplier_id.clone());
            state.by_sale.insert(stored.lead_return.sale_id.clone(), id.clone());
            state.by_buyer.entry(buyer).or_default().insert(stored.created, id.clone());
            state.by_supplier.entry(supplier).or_default().insert(stored.revision, id.clone());
            state.by_id.insert(id, stored);
        }
    }

    /// The return of a sale (none while a request for it is only claimed).
    pub fn of_sale(&self, sale_id: &str) -> Option<Stored> {
        let return_id = self.state.lock().by_sale.get(sale_id).filter(|id| !id.is_empty()).cloned()?;
        self.get(&return_id)
    }

    pub fn get(&self, return_id: &str) -> Option<Stored> {
        self.state.lock().by_id.get(return_id).cloned()
    }

    /// The buyer's returns requested after cursor `after`, oldest first, optionally only
    /// those with `status`.
    pub fn of_buyer(&self, buyer_id: &str, status: Option<ReturnStatus>, after: u64, limit: usize) -> Vec<Stored> {
        let state = self.state.lock();
        let Some(list) = state.by_buyer.get(buyer_id) else { return Vec::new() };
        list.range(after + 1..)
            .filter_map(|(_, id)| state.by_id.get(id))
            .filter(|stored| status.is_none_or(|s| stored.lead_return.status == s))
            .take(limit.min(RETURNS_PAGE_MAX))
            .cloned()
            .collect()
    }

    /// Returns of the supplier's leads that changed after cursor `after`, in change order.
    pub fn of_supplier(&self, supplier_id: &str, after: u64, limit: usize) -> Vec<Stored> {
        let state = self.state.lock();
        let Some(feed) = state.by_supplier.get(supplier_id) else { return Vec::new() };
        feed.range(after + 1..)
            .filter_map(|(_, id)| state.by_id.get(id))
            .take(limit.min(RETURNS_PAGE_MAX))
            .cloned()
            .collect()
    }

    /// Every return with `status` (the operator's queue), oldest first.
    pub fn with_status(&self, status: ReturnStatus, after: u64, limit: usize) -> Vec<Stored> {
        let state = self.state.lock();
        let mut found: Vec<&Stored> =
            state.by_id.values().filter(|s| s.lead_return.status == status && s.created > after).collect();
        found.sort_by_key(|s| s.created);
        found.into_iter().take(limit.min(RETURNS_PAGE_MAX)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Money;
    use chrono::Utc;

    fn lead_return(id: &str, sale: &str, status: ReturnStatus) -> LeadReturn {
        LeadReturn {
            return_id: id.into(),
            sale_id: sale.into(),
            lead_id: "led".into(),
            buyer_id: "b1".into(),
            supplier_id: "s1".into(),
            campaign_id: "c1".into(),
            vertical: "solar".into(),
            reason: "other".into(),
            note: None,
            status,
            requested_at: Utc::now(),
            resolved_at: None,
            resolution_reason: None,
            price: Money::cents(100),
            payout: Money::cents(50),
            currency: crate::domain::money::Currency::EUR,
            internal: false,
            sold_at: Utc::now(),
            buyer_reference: None,
        }
    }

    #[test]
    fn one_return_per_sale() {
        let returns = Returns::default();
        assert_eq!(returns.claim("sal_1"), Claim::Claimed);
        assert_eq!(returns.claim("sal_1"), Claim::Taken, "in flight");
        returns.unclaim("sal_1");
        assert_eq!(returns.claim("sal_1"), Claim::Claimed);
        let revision = returns.next_revision();
        returns.put(lead_return("ret_1", "sal_1", ReturnStatus::Pending), revision);
        returns.unclaim("sal_1");
        assert_eq!(returns.claim("sal_1"), Claim::Taken, "recorded: an unclaim cannot free it");
    }

    #[test]
    fn the_supplier_feed_shows_a_return_again_when_it_changes_and_the_buyer_list_keeps_its_place() {
        let returns = Returns::default();
        for (id, sale) in [("ret_1", "sal_1"), ("ret_2", "sal_2"), ("ret_3", "sal_3")] {
            let revision = returns.next_revision();
            returns.put(lead_return(id, sale, ReturnStatus::Pending), revision);
        }
        let feed: Vec<_> = returns.of_supplier("s1", 0, 10).into_iter().map(|s| s.revision).collect();
        assert_eq!(feed, [1, 2, 3]);
        let revision = returns.next_revision();
        returns.put(lead_return("ret_1", "sal_1", ReturnStatus::Approved), revision);
        let after_3: Vec<_> = returns.of_supplier("s1", 3, 10).into_iter().map(|s| s.lead_return.return_id).collect();
        assert_eq!(after_3, ["ret_1"]);
        assert_eq!(returns.of_supplier("s1", 0, 10).len(), 3, "each return once, at its latest change");
        let buyer: Vec<_> = returns.of_buyer("b1", None, 0, 10).into_iter().map(|s| s.lead_return.return_id).collect();
        assert_eq!(buyer, ["ret_1", "ret_2", "ret_3"]);
        let approved = returns.of_buyer("b1", Some(ReturnStatus::Approved), 0, 10);
        assert_eq!(approved.len(), 1);
        assert_eq!(returns.with_status(ReturnStatus::Pending, 0, 10).len(), 2);
        // An older revision read back later never overwrites a newer one.
        returns.put(lead_return("ret_1", "sal_1", ReturnStatus::Pending), 1);
        assert_eq!(returns.get("ret_1").unwrap().lead_return.status, ReturnStatus::Approved);
    }
}
