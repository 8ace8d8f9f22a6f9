//! The ledger port: where what must outlive the process is written (events with their
//! gap-free sequence, internal records), and how consumers read it back. The journal on one
//! node, `store::redis_ledger` on several.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

use super::outbox::Message;
use super::Unavailable;
use crate::domain::changes::AdminChange;
use crate::domain::market::ConfigChange;
use crate::domain::operator::Actor;
use crate::domain::returns::LeadReturn;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The log cannot be read now (disk or Redis); a retry may help.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A stored event does not decode; an operator must look.
    #[error("event log corrupt at sequence {sequence}: {message}")]
    Corrupt { sequence: u64, message: String },
    /// Retention removed the segments holding this sequence (DESIGN §14).
    #[error("sequences before {first_retained} were removed by retention (--retain-days)")]
    Removed { first_retained: u64 },
}

/// Where the engine writes what must outlive the process: ledger events, which get their
/// gap-free sequence here, and internal records (idempotency answers, outbox messages, ...).
/// An append answers only once it is durable. The embedded journal implements it on one
/// node; the Redis adapters will on several (ARCHITECTURE.md).
#[async_trait]
pub trait Ledger: EventLog {
    async fn append(
        &self,
        event: crate::domain::ledger::Event,
        at: DateTime<Utc>,
    ) -> Result<crate::domain::ledger::LedgerEvent, JournalError>;
    async fn append_internal(&self, record: InternalRecord) -> Result<(), JournalError>;
    /// `append_internal`, answering where the record was written (for records read back by
    /// location, as pull leads are).
    async fn append_internal_at(&self, record: InternalRecord) -> Result<Location, JournalError> {
        self.append_internal(record).await.map(|()| Location::default())
    }
    /// The internal records written together at `location`.
    fn internal_at(&self, _location: Location) -> Result<Vec<InternalRecord>, LogError> {
        Ok(Vec::new())
    }
    /// Makes everything appended so far durable and refuses later appends.
    async fn close(&self);
    /// Why the ledger takes no more appends, when a write failed for good (the node must
    /// restart into recovery).
    fn failure(&self) -> Option<String> {
        None
    }
    /// A settled sale by id from durable storage (memory keeps only sales inside their
    /// return window). None where the ledger cannot look sales up.
    fn find_sale(&self, _sale_id: &str) -> Result<Option<crate::domain::ledger::SaleSettled>, LogError> {
        Ok(None)
    }
    /// Whether `find_sale` looks sales up; where it does not (Redis), every sale stays in
    /// memory, mirrored from the ledger.
    fn finds_sales(&self) -> bool {
        false
    }
    /// Changes to `Some(reason)` when a write fails for good.
    fn failures(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        tokio::sync::watch::channel(None).1
    }
    /// The same ledger as its consumers read it.
    fn event_log(self: Arc<Self>) -> Arc<dyn EventLog>;
}

/// The ledger as its consumers read it: history by sequence, then live events.
///
/// The embedded journal implements it on one node; a Redis Stream on several (issue 6).
pub trait EventLog: Send + Sync + 'static {
    /// Up to `max` events with `sequence > after`, in order.
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<crate::domain::ledger::LedgerEvent>, LogError>;
    /// The sequence of the newest event (0 when empty).
    fn last_sequence(&self) -> u64;
    /// Wakes when events newer than what a reader saw are appended: `changed()` on the
    /// receiver resolves with the new last sequence.
    fn watch(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The oldest sequence still held (1 until retention removed any).
    fn first_sequence(&self) -> u64 {
        1
    }
}

/// Internal records of every node in the order they were written (on Redis: the second
/// stream of `redis_ledger`), so each node can take in what another node recorded.
#[async_trait]
pub trait InternalFeed: Send + Sync + 'static {
    /// Up to `max` records after position `after` ("" = from the start): (position, the
    /// node that wrote it, the record).
    async fn internal_after(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<(String, String, InternalRecord)>, Unavailable>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(String),
    #[error("the journal writer has stopped")]
    Closed,
    /// A write or fsync failed: this process appends nothing more (see the module doc).
    #[error("journal failed: {0}")]
    Failed(String),
    /// Acknowledged data is damaged: the start stops here, naming where.
    #[error("journal corrupt: {0}")]
    Corrupt(String),
    /// A shared ledger (Redis) cannot be reached; nothing was acknowledged.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// A record the router needs after a restart that is not a ledger event (so it takes no
/// ledger sequence, and ledger consumers never see it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InternalRecord {
    /// The first answer to a request with an `Idempotency-Key`, replayed to retries.
    Answer {
        /// Who sent it: a supplier id, or `buyer/<id>`.
        party: String,
        key: String,
        body_hash: String,
        answer: super::idempotency::KeptAnswer,
        created_at: DateTime<Utc>,
    },
    /// A first answer as journals kept it before answers were typed (HTTP status and
    /// body): read back, no longer written.
    Idempotency {
        supplier_id: String,
        key: String,
        body_hash: String,
        status: u16,
        body: String,
        created_at: DateTime<Utc>,
    },
    /// A supplier's `external_id` taken by a lead.
    ExternalId {
        supplier_id: String,
        external_id: String,
        lead_id: String,
        at: DateTime<Utc>,
    },
    /// A lead sold to a pull campaign, waiting for its buyer at `position`. Journaled before
    /// the sale; restored only if its sale was journaled too.
    PullLead {
        buyer_id: String,
        sale_id: String,
        position: u64,
        lead: serde_json::Value,
    },
    /// A pull buyer passed back cursor `through`: it has every lead up to there.
    PullAcknowledged {
        buyer_id: String,
        through: u64,
    },
    /// A return waiting for an operator, at its revision (a resolved return is the ledger's
    /// `ReturnResolved`).
    ReturnRequested {
        lead_return: Box<LeadReturn>,
        revision: u64,
    },
    /// A message for the outbox, journaled before the fact it announces.
    OutboxQueued {
        message: Message,
    },
    /// A delivery attempt failed; `attempts` failed so far.
    OutboxFailed {
        id: String,
        attempts: u32,
        error: String,
    },
    OutboxDelivered {
        id: String,
        at: DateTime<Utc>,
    },
    OutboxDeadLettered {
        id: String,
        attempts: u32,
        error: String,
        at: DateTime<Utc>,
    },
    /// An operator asked for a dead letter to be tried again.
    OutboxRevived {
        id: String,
        at: DateTime<Utc>,
    },
    /// An operator's change to the market, applied again over the config file at start
    /// (or an admin act recorded beside them), with who made it (`unknown` in records
    /// journaled before actors were).
    ConfigChanged {
        change: ConfigChange,
        at: DateTime<Utc>,
        #[serde(default)]
        by: Actor,
    },
}

impl InternalRecord {
    /// The admin change log's entry a `ConfigChanged` record holds.
    pub fn admin_change(&self) -> Option<AdminChange> {
        match self {
            InternalRecord::ConfigChanged { change, at, by } => {
                Some(AdminChange { change: change.clone(), by: by.clone(), at: Some(*at) })
            }
            _ => None,
        }
    }
}

/// Where a record is: the batch holding it (records written together share one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
}
