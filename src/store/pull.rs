//! Leads waiting for pull buyers (`GET /v1/buyer/leads`), by buyer and position: where
//! each lead is in the journal, not the lead itself, so a buyer that fetches rarely costs
//! 24 bytes a lead of memory, not the lead.
//!
//! A position is a per-buyer counter; the cursor a buyer passes back (`after`) says up to
//! where it has taken leads, so a lead is never handed out again past an acknowledged
//! cursor, and never dropped before. Positions and leads are journaled with the sale and
//! restored at start; what a buyer acknowledged is forgotten from memory on its next fetch.
//!
//! `JournaledPull` is the embedded adapter of the `PullLog` port: these queues for the
//! places, the journal for the leads. (`redis_pull` is the adapter for several nodes.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::Value;

use super::journal::{InternalRecord, Location};
use super::{Ledger, PullLog, Unavailable};
pub use crate::engine::ports::pull::{Places, QueueState};

pub use crate::engine::ports::pull::PULL_LIMIT_MAX;

#[derive(Default)]
struct Queue {
    next: u64,
    /// Positions taken for leads whose journal write has not finished. Nothing at or after
    /// the oldest is handed out: with concurrent sales position p + 1 can be written before
    /// p, and a buyer handed p + 1 would acknowledge p before it was there to take.
    reserved: std::collections::BTreeSet<u64>,
    /// The highest cursor the buyer has passed back (journaled, so it holds across restarts).
    acknowledged: u64,
    waiting: BTreeMap<u64, Location>,
}

#[derive(Default)]
pub struct PullQueues {
    by_buyer: DashMap<String, Mutex<Queue>>,
}

impl PullQueues {
    /// Takes the buyer's next position (1, 2, ...), for a lead about to be journaled.
    pub fn next_position(&self, buyer_id: &str) -> u64 {
        let queue = self.by_buyer.entry(buyer_id.to_string()).or_default();
        let mut queue = queue.lock();
        // Cursors never pass `next` (see `last_position`), so this cannot reach the top.
        queue.next = queue.next.saturating_add(1);
        let position = queue.next;
        queue.reserved.insert(position);
        position
    }

    /// Gives a position back whose lead was never journaled (nothing waits behind it).
    pub fn release(&self, buyer_id: &str, position: u64) {
        if let Some(queue) = self.by_buyer.get(buyer_id) {
            queue.lock().reserved.remove(&position);
        }
    }

    /// The newest position that can have been handed out to the buyer (0: none yet): no
    /// cursor goes past it.
    pub fn last_position(&self, buyer_id: &str) -> u64 {
        self.by_buyer.get(buyer_id).map_or(0, |queue| queue.lock().visible_through())
    }

    /// Makes a journaled lead available to its buyer (also on replay at start), unless the
    /// buyer has already acknowledged its position.
    pub fn put(&self, buyer_id: &str, position: u64, lead: Location) {
        let queue = self.by_buyer.entry(buyer_id.to_string()).or_default();
        let mut queue = queue.lock();
        queue.next = queue.next.max(position);
        queue.reserved.remove(&position);
        if position > queue.acknowledged {
            queue.waiting.insert(position, lead);
        }
    }

    /// Whether `after` acknowledges more than the buyer had (the caller journals it first).
    pub fn advances(&self, buyer_id: &str, after: u64) -> bool {
        self.by_buyer.get(buyer_id).is_some_and(|queue| after > queue.lock().acknowledged)
    }

    /// Records that the buyer has taken everything up to `through` (live, or read back at
    /// start before the leads are).
    pub fn acknowledge(&self, buyer_id: &str, through: u64) {
        self.by_buyer.entry(buyer_id.to_string()).or_default().lock().forget_through(through);
    }

    /// The leads after `after`, oldest first, up to `limit`; forgets those at or before
    /// `after` (the buyer has acknowledged them by asking for what follows).
    pub fn fetch(&self, buyer_id: &str, after: u64, limit: usize) -> Vec<(u64, Location)> {
        let Some(queue) = self.by_buyer.get(buyer_id) else { return Vec::new() };
        let mut queue = queue.lock();
        queue.forget_through(after);
        let through = queue.visible_through();
        queue.waiting.range(..=through).take(limit.min(PULL_LIMIT_MAX)).map(|(p, lead)| (*p, *lead)).collect()
    }
}

impl PullQueues {
    pub fn export(&self) -> Vec<QueueState> {
        self.by_buyer
            .iter()
            .map(|entry| {
                let queue = entry.value().lock();
                QueueState {
                    buyer_id: entry.key().clone(),
                    next: queue.next,
                    acknowledged: queue.acknowledged,
                    waiting: Places::pack(&queue.waiting),
                }
            })
            .collect()
    }

    pub fn import(&self, states: Vec<QueueState>) {
        for state in states {
            let queue = Queue {
                next: state.next,
                acknowledged: state.acknowledged,
                reserved: Default::default(),
                waiting: state.waiting.unpack().into_iter().collect(),
            };
            self.by_buyer.insert(state.buyer_id, Mutex::new(queue));
        }
    }
}

impl Queue {
    /// Positions up to here are journaled or given back: they may be handed out.
    fn visible_through(&self) -> u64 {
        self.reserved.first().map_or(self.next, |oldest| oldest - 1)
    }

    fn forget_through(&mut self, through: u64) {
        if through > self.acknowledged {
            self.acknowledged = through;
            self.next = self.next.max(through);
            self.waiting = match through.checked_add(1) {
                Some(first_kept) => self.waiting.split_off(&first_kept),
                None => BTreeMap::new(),
            };
        }
    }
}

/// The pull log of one node: places in `PullQueues`, leads in the journal beside their
/// sale, so a sale that is answered is never a lead its buyer cannot fetch.
pub struct JournaledPull {
    queues: PullQueues,
    journal: Arc<dyn Ledger>,
}

impl JournaledPull {
    pub fn new(journal: Arc<dyn Ledger>) -> JournaledPull {
        JournaledPull { queues: PullQueues::default(), journal }
    }
}

#[async_trait]
impl PullLog for JournaledPull {
    async fn push(&self, buyer_id: &str, sale_id: &str, lead: Value) -> Result<u64, Unavailable> {
        let position = self.queues.next_position(buyer_id);
        let record =
            InternalRecord::PullLead { buyer_id: buyer_id.to_string(), sale_id: sale_id.to_string(), position, lead };
        match self.journal.append_internal_at(record).await {
            Ok(location) => {
                self.queues.put(buyer_id, position, location);
                Ok(position)
            }
            Err(error) => {
                self.queues.release(buyer_id, position);
                Err(Unavailable(error.to_string()))
            }
        }
    }

    async fn fetch(&self, buyer_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, Value)>, Unavailable> {
        // The cursor is journaled before it is acted on, so a restart never hands out
        // again what the buyer acknowledged.
        if self.queues.advances(buyer_id, after) {
            let record = InternalRecord::PullAcknowledged { buyer_id: buyer_id.to_string(), through: after };
            self.journal.append_internal(record).await.map_err(|error| Unavailable(error.to_string()))?;
        }
        let waiting = self.queues.fetch(buyer_id, after, limit);
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let (journal, buyer_id) = (Arc::clone(&self.journal), buyer_id.to_string());
        tokio::task::spawn_blocking(move || read_leads(journal.as_ref(), &buyer_id, waiting))
            .await
            .map_err(|error| Unavailable(format!("reading pull leads: {error}")))?
    }

    async fn last_position(&self, buyer_id: &str) -> Result<u64, Unavailable> {
        Ok(self.queues.last_position(buyer_id))
    }

    fn restore_lead(&self, buyer_id: &str, position: u64, at: Location) {
        self.queues.put(buyer_id, position, at);
    }

    fn restore_acknowledged(&self, buyer_id: &str, through: u64) {
        self.queues.acknowledge(buyer_id, through);
    }

    fn export(&self) -> Vec<QueueState> {
        self.queues.export()
    }

    fn import(&self, states: Vec<QueueState>) {
        self.queues.import(states);
    }
}

/// The leads at `waiting`'s positions, read from the batches the journal wrote them in
/// (leads written together are read once).
fn read_leads(
    journal: &dyn Ledger,
    buyer_id: &str,
    waiting: Vec<(u64, Location)>,
) -> Result<Vec<(u64, Value)>, Unavailable> {
    let mut batches: HashMap<Location, Vec<InternalRecord>> = HashMap::new();
    let mut leads = Vec::with_capacity(waiting.len());
    for (position, location) in waiting {
        let records = match batches.entry(location) {
            std::collections::hash_map::Entry::Occupied(read) => read.into_mut(),
            std::collections::hash_map::Entry::Vacant(unread) => {
                unread.insert(journal.internal_at(location).map_err(|error| Unavailable(error.to_string()))?)
            }
        };
        let lead = records.iter().find_map(|record| match record {
            InternalRecord::PullLead { buyer_id: owner, position: at, lead, .. }
                if owner == buyer_id && *at == position =>
            {
                Some(lead.clone())
            }
            _ => None,
        });
        let lead = lead.ok_or_else(|| {
            Unavailable(format!("pull lead {position} of {buyer_id} is not where the journal put it"))
        })?;
        leads.push((position, lead));
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_written_before_an_older_one_waits_for_it() {
        let queues = PullQueues::default();
        let (first, second, third) =
            (queues.next_position("b1"), queues.next_position("b1"), queues.next_position("b1"));
        queues.put("b1", second, Location::default());
        assert!(queues.fetch("b1", 0, 10).is_empty(), "1 is not written yet");
        assert_eq!(queues.last_position("b1"), 0, "so no cursor may pass it");
        queues.put("b1", first, Location::default());
        assert_eq!(queues.fetch("b1", 0, 10).iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(queues.last_position("b1"), 2);
        queues.release("b1", third);
        assert_eq!(queues.last_position("b1"), 3, "a position given back holds nothing up");
        assert_eq!(queues.fetch("b1", 2, 10), []);
    }

    #[test]
    fn acknowledging_the_largest_cursor_does_not_wrap() {
        let queues = PullQueues::default();
        queues.put("b1", 1, Location::default());
        queues.acknowledge("b1", u64::MAX);
        assert!(queues.fetch("b1", 0, 10).is_empty());
        assert_eq!(queues.next_position("b1"), u64::MAX, "saturates, never back to 0");
    }

    /// A lead's place in the journal (the tests tell leads apart by it).
    fn at(n: u64) -> Location {
        Location { segment: 1, offset: n * 100 }
    }

    #[test]
    fn leads_come_in_order_and_never_again_past_the_cursor() {
        let queues = PullQueues::default();
        for n in 0..5 {
            let position = queues.next_position("b1");
            queues.put("b1", position, at(n));
        }
        let first = queues.fetch("b1", 0, 2);
        assert_eq!(first.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(queues.fetch("b1", 0, 10).len(), 5, "not acknowledged yet: handed out again");
        let next = queues.fetch("b1", 2, 10);
        assert_eq!(next.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(queues.fetch("b1", 0, 10).len(), 3, "1 and 2 were acknowledged and are gone");
        assert!(queues.fetch("b2", 0, 10).is_empty());
    }

    #[test]
    fn an_acknowledgement_read_back_first_keeps_acknowledged_leads_out() {
        let queues = PullQueues::default();
        queues.acknowledge("b1", 2);
        for position in 1..=3 {
            queues.put("b1", position, at(position));
        }
        assert_eq!(queues.fetch("b1", 0, 10).iter().map(|(p, _)| *p).collect::<Vec<_>>(), [3]);
        assert!(!queues.advances("b1", 2) && queues.advances("b1", 3));
        assert_eq!(queues.next_position("b1"), 4);
    }

    #[test]
    fn places_pack_and_unpack() {
        let waiting: BTreeMap<u64, Location> = (1..=3).map(|n| (n, at(n))).collect();
        let packed = Places::pack(&waiting);
        assert_eq!(packed.unpack(), waiting.into_iter().collect::<Vec<_>>());
        assert!(Places::default().unpack().is_empty());
    }

    #[test]
    fn restored_positions_continue_the_counter() {
        let queues = PullQueues::default();
        queues.put("b1", 7, at(7));
        assert_eq!(queues.next_position("b1"), 8);
    }
}
