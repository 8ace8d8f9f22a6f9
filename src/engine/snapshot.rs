//! The router's durable state as one value: what a checkpoint stores, so that a start loads
//! it and replays only the journal after it (DESIGN §14), instead of every record since the
//! first sale.
//!
//! It is what replaying the journal rebuilds, and nothing else: balances and cap usage,
//! dedup keys, sales inside their return window, top-up references, returns, idempotency
//! answers and external ids of the last 24 hours, pull queues, the outbox, what the ledger
//! last said of each account, and the records whose fact comes later in the journal.
//! Holds, open pings and traces are not durable and are not here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::memory::idempotency::{AnswerState, ExternalIdState};
use super::memory::outbox::OutboxState;
use super::ports::ledger::{InternalRecord, Location};
use super::ports::pull::QueueState;
use super::ports::returns::Stored;
use super::{AccountsSaid, Router};
use crate::domain::budget::BookState;
use crate::domain::dedup::DedupKey;
use crate::domain::ledger::SaleSettled as Sale;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RouterState {
    pub books: Vec<(String, BookState)>,
    /// Dedup keys and when they were sold, packed (millions of them in a busy window).
    pub dedup: DedupKeys,
    pub sales: Vec<Arc<Sale>>,
    pub top_up_references: Vec<(String, String)>,
    pub returns: Vec<Stored>,
    pub return_revision: u64,
    pub answers: Vec<AnswerState>,
    pub external_ids: Vec<ExternalIdState>,
    pub pull: Vec<QueueState>,
    pub outbox: Vec<OutboxState>,
    pub accounts: AccountsSaid,
    /// Records announcing a fact not journaled by this point (restored after what follows).
    pub awaiting: Vec<(Location, InternalRecord)>,
}

/// Dedup keys as one hex string of 40-byte entries (the key, then the sale's time in
/// milliseconds, little endian): a tenth of the JSON of pairs, read without a string per key.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DedupKeys(String);

const DEDUP_ENTRY_BYTES: usize = 40;

impl DedupKeys {
    fn pack(keys: &[(DedupKey, DateTime<Utc>)]) -> DedupKeys {
        let mut bytes = Vec::with_capacity(keys.len() * DEDUP_ENTRY_BYTES);
        for (key, at) in keys {
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(&at.timestamp_millis().to_le_bytes());
        }
        DedupKeys(hex::encode(bytes))
    }

    /// The keys; an entry that does not decode is skipped (a checksummed checkpoint holds
    /// none).
    fn unpack(&self) -> Vec<(DedupKey, DateTime<Utc>)> {
        let bytes = hex::decode(&self.0).unwrap_or_default();
        bytes
            .chunks_exact(DEDUP_ENTRY_BYTES)
            .filter_map(|entry| {
                let key: DedupKey = entry[..32].try_into().ok()?;
                let millis = i64::from_le_bytes(entry[32..].try_into().ok()?);
                Some((key, DateTime::from_timestamp_millis(millis)?))
            })
            .collect()
    }
}

impl RouterState {
    /// The oldest journal segment this state reads from (waiting pull leads, records
    /// waiting for their fact): retention keeps it and every later one.
    pub fn oldest_segment_referenced(&self) -> Option<u64> {
        let pulled = self.pull.iter().flat_map(|queue| queue.waiting.unpack()).map(|(_, at)| at.segment);
        let awaiting = self.awaiting.iter().map(|(at, _)| at.segment);
        pulled.chain(awaiting).min()
    }
}

impl Router {
    /// The state replay has built so far (the checkpointer's router, which serves nothing).
    pub fn export_state(&self, accounts: AccountsSaid, awaiting: Vec<(Location, InternalRecord)>) -> RouterState {
        let (answers, external_ids) = self.core.idempotency.export();
        let (returns, return_revision) = self.core.returns.export();
        RouterState {
            books: self.core.budget.export(),
            dedup: DedupKeys::pack(&self.core.dedup.export()),
            sales: self.core.sales.all(),
            top_up_references: self.accounts.export_references(),
            returns,
            return_revision,
            answers,
            external_ids,
            pull: self.core.pull.export(),
            outbox: self.deliveries.outbox.export(),
            accounts,
            awaiting,
        }
    }

    /// Loads a checkpoint's state into a router that has not served yet; answers what the
    /// ledger last said of each account and the records still waiting for their fact.
    pub fn import_state(&self, state: RouterState) -> (AccountsSaid, Vec<(Location, InternalRecord)>) {
        self.core.budget.import(state.books);
        self.core.dedup.import(state.dedup.unpack());
        for sale in state.sales {
            self.core.sales.record(sale);
        }
        self.accounts.import_references(state.top_up_references);
        self.core.returns.import(state.returns, state.return_revision);
        self.core.idempotency.import(state.answers, state.external_ids);
        self.core.pull.import(state.pull);
        self.deliveries.outbox.import(state.outbox, tokio::time::Instant::now());
        (state.accounts, state.awaiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_pack_and_unpack_to_the_millisecond() {
        let at = DateTime::from_timestamp_millis(1_796_000_000_123).unwrap();
        let keys = vec![([1u8; 32], at), ([255u8; 32], at + chrono::Duration::days(3))];
        let packed = DedupKeys::pack(&keys);
        assert_eq!(packed.0.len(), 2 * DEDUP_ENTRY_BYTES * 2);
        assert_eq!(packed.unpack(), keys);
        assert!(DedupKeys::default().unpack().is_empty());
    }
}
