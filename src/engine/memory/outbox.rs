//! The outbox (DESIGN §5): deliveries that must reach a buyer or supplier after the
//! request that caused them has been answered (async leads, return notifications).
//!
//! Every message and every change of its state is journaled (`InternalRecord::Outbox*`)
//! before it takes effect here, so pending deliveries survive a restart and a dead letter
//! stays one. This module keeps the live state: which messages are due when, which are
//! being tried, and which are dead-lettered waiting for an operator.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::outbox_view::{url_shown, RequestShown};
pub use crate::engine::ports::outbox::{Message, MessageKind, Recipient, Requires, Status};

/// A message with its delivery history, as the admin API lists it (without the body: it
/// may carry a lead's PII). A message in a buyer's own format shows its URL without the
/// query's values, and how it is sent with its secrets as `***` (`outbox_view`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub kind: MessageKind,
    pub recipient: Recipient,
    pub url: String,
    pub status: Status,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestShown>,
}

/// A message not delivered, as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxState {
    pub message: Message,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_since: Option<DateTime<Utc>>,
}

struct Slot {
    message: Message,
    attempts: u32,
    last_error: Option<String>,
    state: SlotState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Waiting; due at the instant (a heap entry with the same instant points here).
    Waiting(Instant),
    Sending,
    Dead(DateTime<Utc>),
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    /// Due times; stale entries (the slot moved on) are skipped when popped.
    due: BinaryHeap<Reverse<(Instant, String)>>,
    /// Slots not dead-lettered, kept as a count for the gauge.
    live: usize,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the sender when something becomes due earlier than it planned.
    wake: Notify,
}

/// A message taken for sending, with the attempt it is.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub message: Message,
    /// 1 for the first attempt.
    pub number: u32,
}

/// What `take_due` found.
pub enum Due {
    Ready(Vec<Attempt>),
    /// Nothing due before this instant (or `None`: nothing waiting at all).
    Until(Option<Instant>),
}

impl Outbox {
    /// Adds a journaled message, due now.
    pub fn push(&self, message: Message, now: Instant) {
        self.insert(message, 0, None, now);
    }

    /// Puts back a message read from the journal with its failed attempts so far.
    pub fn restore(&self, message: Message, attempts: u32, last_error: Option<String>, now: Instant) {
        self.insert(message, attempts, last_error, now);
    }

    /// Puts back a message that was dead-lettered before a restart.
    pub fn restore_dead(&self, message: Message, attempts: u32, last_error: Option<String>, at: DateTime<Utc>) {
        let mut state = self.state.lock();
        let id = message.id.clone();
        let slot = Slot { message, attempts, last_error, state: SlotState::Dead(at) };
        if let Some(old) = state.slots.insert(id, slot) {
            if !matches!(old.state, SlotState::Dead(_)) {
                state.live -= 1;
            }
        }
    }

    fn insert(&self, message: Message, attempts: u32, last_error: Option<String>, due: Instant) {
        let mut state = self.state.lock();
        let id = message.id.clone();
        state.due.push(Reverse((due, id.clone())));
        let slot = Slot { message, attempts, last_error, state: SlotState::Waiting(due) };
        match state.slots.insert(id, slot) {
            Some(old) if !matches!(old.state, SlotState::Dead(_)) => {}
            _ => state.live += 1,
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Every message not delivered, for a checkpoint: due again at once after a restart,
    /// dead letters stay dead.
    pub fn export(&self) -> Vec<OutboxState> {
        let state = self.state.lock();
        state
            .slots
            .values()
            .map(|slot| OutboxState {
                message: slot.message.clone(),
                attempts: slot.attempts,
                last_error: slot.last_error.clone(),
                dead_since: match slot.state {
                    SlotState::Dead(at) => Some(at),
                    SlotState::Waiting(_) | SlotState::Sending => None,
                },
            })
            .collect()
    }

    /// Every message, taken out (a restore folds the journal's tail into what a checkpoint
    /// held, then puts the result back).
    pub fn take_all(&self) -> Vec<OutboxState> {
        let taken = self.export();
        *self.state.lock() = State::default();
        taken
    }

    pub fn import(&self, messages: Vec<OutboxState>, now: Instant) {
        for m in messages {
            match m.dead_since {
                Some(at) => self.restore_dead(m.message, m.attempts, m.last_error, at),
                None => self.restore(m.message, m.attempts, m.last_error, now),
            }
        }
    }

    /// Takes up to `max` messages due at `now` and marks them as being sent.
    pub fn take_due(&self, now: Instant, max: usize) -> Due {
        let mut state = self.state.lock();
        let mut ready = Vec::new();
        while ready.len() < max {
            let Some(Reverse((due, id))) = state.due.peek().cloned() else { break };
            if due > now {
                break;
            }
            state.due.pop();
            let Some(slot) = state.slots.get_mut(&id) else { continue };
            if slot.state != SlotState::Waiting(due) {
                continue;
            }
            slot.state = SlotState::Sending;
            ready.push(Attempt { message: slot.message.clone(), number: slot.attempts + 1 });
        }
        if ready.is_empty() {
            Due::Until(state.due.peek().map(|Reverse((due, _))| *due))
        } else {
            Due::Ready(ready)
        }
    }

    /// Resolves when a message may have become due sooner than the sender planned.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// The message reached its recipient: forget it.
    pub fn delivered(&self, id: &str) {
        let mut state = self.state.lock();
        if let Some(slot) = state.slots.remove(id) {
            if !matches!(slot.state, SlotState::Dead(_)) {
                state.live -= 1;
            }
        }
    }

    /// An attempt failed; try again at `due`.
    pub fn failed(&self, id: &str, attempts: u32, error: String, due: Instant) {
        let mut state = self.state.lock();
        if let Some(slot) = state.slots.get_mut(id) {
            slot.attempts = attempts;
            slot.last_error = Some(error);
            slot.state = SlotState::Waiting(due);
            state.due.push(Reverse((due, id.to_string())));
        }
        drop(state);
        // The sender may be asleep until a later time (or idle): it must see this one.
        self.wake.notify_one();
    }

    /// The retry budget is spent: keep the message for an operator.
    pub fn dead_letter(&self, id: &str, attempts: u32, error: String, at: DateTime<Utc>) {
        let mut state = self.state.lock();
        let Some(slot) = state.slots.get_mut(id) else { return };
        let was_live = !matches!(slot.state, SlotState::Dead(_));
        slot.attempts = attempts;
        slot.last_error = Some(error);
        slot.state = SlotState::Dead(at);
        if was_live {
            state.live -= 1;
        }
    }

    /// An operator asked for a dead letter to be tried again: due now, with a fresh budget.
    /// False when `id` is not dead-lettered.
    pub fn revive(&self, id: &str, now: Instant) -> bool {
        let mut state = self.state.lock();
        let Some(slot) = state.slots.get_mut(id) else { return false };
        if !matches!(slot.state, SlotState::Dead(_)) {
            return false;
        }
        slot.attempts = 0;
        slot.state = SlotState::Waiting(now);
        state.live += 1;
        state.due.push(Reverse((now, id.to_string())));
        drop(state);
        self.wake.notify_one();
        true
    }

    pub fn get(&self, id: &str) -> Option<Delivery> {
        self.state.lock().slots.get(id).map(|slot| delivery(id, slot))
    }

    pub fn is_dead(&self, id: &str) -> bool {
        self.state.lock().slots.get(id).is_some_and(|slot| matches!(slot.state, SlotState::Dead(_)))
    }

    /// Messages not yet delivered and not dead-lettered (the `outbox_pending` gauge).
    pub fn pending(&self) -> usize {
        self.state.lock().live
    }

    /// Dead letters waiting for an operator.
    pub fn dead(&self) -> usize {
        let state = self.state.lock();
        state.slots.len() - state.live
    }

    /// Deliveries with `status`, oldest first, after the delivery id `after` in that order.
    pub fn list(&self, status: Status, after: Option<&str>, limit: usize) -> Vec<Delivery> {
        let state = self.state.lock();
        let mut found: Vec<Delivery> = state
            .slots
            .iter()
            .map(|(id, slot)| delivery(id, slot))
            .filter(|delivery| delivery.status == status)
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let start = match after {
            Some(after) => found.iter().position(|d| d.id == after).map_or(0, |at| at + 1),
            None => 0,
        };
        found.into_iter().skip(start).take(limit).collect()
    }
}

fn delivery(id: &str, slot: &Slot) -> Delivery {
    let (status, dead_lettered_at) = match slot.state {
        SlotState::Dead(at) => (Status::DeadLetter, Some(at)),
        SlotState::Waiting(_) | SlotState::Sending => (Status::Pending, None),
    };
    let (url, request) = match &slot.message.request {
        None => (slot.message.url.clone(), None),
        Some(request) => (url_shown(&slot.message.url), Some(RequestShown::of(request))),
    };
    Delivery {
        id: id.to_string(),
        kind: slot.message.kind,
        recipient: slot.message.recipient.clone(),
        url,
        status,
        attempts: slot.attempts,
        last_error: slot.last_error.clone(),
        created_at: slot.message.created_at,
        dead_lettered_at,
        request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(id: &str) -> Message {
        Message {
            id: id.into(),
            kind: MessageKind::Lead,
            recipient: Recipient::Buyer("b1".into()),
            url: "http://127.0.0.1:1/leads".into(),
            body: "{}".into(),
            timeout_ms: 1_000,
            requires: Requires::Sale("sal_1".into()),
            created_at: Utc::now(),
            request: None,
        }
    }

    fn ids(due: Due) -> Vec<String> {
        match due {
            Due::Ready(attempts) => attempts.into_iter().map(|a| a.message.id).collect(),
            Due::Until(_) => Vec::new(),
        }
    }

    #[test]
    fn a_message_is_taken_once_until_it_fails_and_comes_due_again() {
        let outbox = Outbox::default();
        let now = Instant::now();
        outbox.push(message("dlv_1"), now);
        assert_eq!(ids(outbox.take_due(now, 10)), ["dlv_1"]);
        assert!(ids(outbox.take_due(now, 10)).is_empty(), "being sent: not handed out twice");
        let later = now + Duration::from_secs(2);
        outbox.failed("dlv_1", 1, "http 500".into(), later);
        assert!(matches!(outbox.take_due(now, 10), Due::Until(Some(at)) if at == later));
        let Due::Ready(attempts) = outbox.take_due(later, 10) else { panic!("due") };
        assert_eq!(attempts[0].number, 2);
        outbox.delivered("dlv_1");
        assert_eq!(outbox.pending(), 0);
        assert!(matches!(outbox.take_due(later, 10), Due::Until(None)));
    }

    #[test]
    fn dead_letters_wait_for_an_operator_and_come_back_with_a_fresh_budget() {
        let outbox = Outbox::default();
        let now = Instant::now();
        outbox.push(message("dlv_1"), now);
        outbox.push(message("dlv_2"), now);
        let _ = outbox.take_due(now, 10);
        outbox.dead_letter("dlv_1", 5, "timeout".into(), Utc::now());
        assert_eq!(outbox.pending(), 1, "dlv_2 is still being sent");
        let dead = outbox.list(Status::DeadLetter, None, 10);
        assert_eq!((dead.len(), dead[0].attempts, dead[0].last_error.as_deref()), (1, 5, Some("timeout")));
        assert!(!outbox.revive("dlv_2", now), "only dead letters are revived");
        assert!(outbox.revive("dlv_1", now));
        let Due::Ready(attempts) = outbox.take_due(now, 10) else { panic!("due") };
        assert_eq!(attempts[0].number, 1);
    }
}
