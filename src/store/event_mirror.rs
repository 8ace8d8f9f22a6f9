//! Ledger events held in memory in sequence order, with a watch of the last sequence: what
//! the journal keeps of its file and what a node keeps of the shared Redis stream, and
//! what the gRPC stream serves from (`EventLog`).

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::{EventLog, LogError};
use crate::domain::ledger::LedgerEvent;

pub struct EventMirror {
    /// Sequences 1..=n at positions 0..n.
    events: RwLock<Vec<Arc<LedgerEvent>>>,
    last: watch::Sender<u64>,
}

impl EventMirror {
    /// A mirror of `events`, which must be the sequences 1..=n in order.
    pub fn new(events: Vec<LedgerEvent>) -> EventMirror {
        let last = events.last().map_or(0, |event| event.sequence);
        EventMirror { events: RwLock::new(events.into_iter().map(Arc::new).collect()), last: watch::channel(last).0 }
    }

    /// Appends the events that follow the last one, then wakes the readers.
    pub fn extend(&self, events: impl IntoIterator<Item = LedgerEvent>) {
        let mut held = self.events.write();
        held.extend(events.into_iter().map(Arc::new));
        let newest = held.last().map_or(0, |event| event.sequence);
        drop(held);
        self.last.send_replace(newest);
    }
}

impl EventLog for EventMirror {
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<LedgerEvent>, LogError> {
        let events = self.events.read();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(events.len());
        Ok(events[start..].iter().take(max).map(|event| (**event).clone()).collect())
    }

    fn last_sequence(&self) -> u64 {
        *self.last.borrow()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}
