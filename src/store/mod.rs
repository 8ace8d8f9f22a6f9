//! Ports (traits) for the state the engine shares across requests, and their adapters.
//!
//! `Budget` is the port that carries invariant 2 (no overspend): the embedded adapter keeps
//! one `BuyerBook` per buyer behind its own lock; the Redis adapter (several nodes) runs
//! the same checks in one atomic script per buyer. The other stores are in memory for one
//! node; they keep the shape the durable and Redis versions will have.

pub mod backup;
pub mod checkpoint;
pub mod claims;
pub mod config_log;
pub mod dedup;
pub mod dedup_secret;
pub mod event_mirror;
pub mod files;
pub mod idempotency;
pub mod journal;
pub mod memory;
pub mod outbox;
pub mod pings;
pub mod pull;
pub mod redis;
pub mod redis_budget;
pub mod redis_claims;
pub mod redis_config;
pub mod redis_dedup;
pub mod redis_ledger;
pub mod redis_pings;
pub mod redis_pull;
pub mod returns;
pub mod sales;
pub mod traces;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::engine::ports::Stores;

/// One node's stores: balances, pings, dedup claims and pull places in memory, made
/// durable by `journal` (the embedded default, no external service).
pub fn embedded(journal: Arc<dyn Ledger>, clock: Arc<dyn Clock>) -> Stores {
    Stores {
        budget: Arc::new(memory::MemoryBudget::new()),
        pings: Arc::new(pings::Pings::default()),
        dedup: Arc::new(dedup::Dedup::default()),
        claims: Arc::new(claims::JournaledClaims::new(Arc::clone(&journal), Arc::clone(&clock))),
        config: Arc::new(config_log::JournaledConfig::new(Arc::clone(&journal), clock)),
        pull: Arc::new(pull::JournaledPull::new(Arc::clone(&journal))),
        ledger: journal,
    }
}

use crate::domain::budget::{BalanceView, Funding, HoldRefusal, HoldRequest, ReplayedSale, Settled};
use crate::domain::money::Money;

/// A hold placed in a `Budget`: which buyer's book, which hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldHandle {
    pub buyer_id: Arc<str>,
    pub hold_id: String,
}

/// A hold taken, and what its buyer has available after it.
#[derive(Debug, Clone)]
pub struct Held {
    pub handle: HoldHandle,
    pub available: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(transparent)]
    Refused(#[from] HoldRefusal),
    #[error("hold not found (expired or already settled)")]
    UnknownHold,
    /// The store cannot answer (e.g. Redis down): the caller must not sell.
    #[error("budget store unavailable: {0}")]
    Unavailable(String),
}

/// Balances, holds and caps: every method is atomic per buyer.
#[async_trait]
pub trait Budget: Send + Sync + 'static {
    async fn try_hold(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
    ) -> Result<Held, BudgetError>;
    async fn settle(&self, hold: &HoldHandle) -> Result<Settled, BudgetError>;
    async fn release(&self, hold: &HoldHandle) -> Result<(), BudgetError>;
    async fn top_up(&self, buyer_id: &str, amount: Money) -> Result<Money, BudgetError>;
    async fn balance(&self, buyer_id: &str, now: DateTime<Utc>, funding: Funding) -> Result<BalanceView, BudgetError>;
    /// Books a sale read back from the journal at start (balance and cap windows).
    async fn replay_sale(&self, buyer_id: &str, sale: ReplayedSale<'_>) -> Result<(), BudgetError>;
    /// Drops expired holds everywhere; answers how many buyers' books were swept.
    async fn expire(&self, now: DateTime<Utc>) -> Result<usize, BudgetError>;
    /// Every book, for a checkpoint (embedded only: Redis keeps its own).
    fn export(&self) -> Vec<(String, crate::domain::budget::BookState)> {
        Vec::new()
    }
    fn import(&self, _books: Vec<(String, crate::domain::budget::BookState)>) {}
}

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

/// A store that cannot answer now (Redis away); the caller must not sell on a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct Unavailable(pub String);

/// Dedup claims (one lead, one sale per buyer within the campaign's window): the lead's
/// contact keys are claimed for a buyer before delivery, committed as sold on success, and
/// released on failure. In memory on one node; in Redis (atomic scripts) on several.
#[async_trait]
pub trait DedupClaims: Send + Sync + 'static {
    /// Claims all keys, or none if any was sold within `window` or is in flight, or any of
    /// `plain` (keys made before the dedup secret: looked up, never taken) was sold within it.
    async fn claim(
        &self,
        buyer_id: &str,
        keys: &[crate::domain::dedup::DedupKey],
        plain: &[crate::domain::dedup::DedupKey],
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<bool, Unavailable>;
    /// Marks the keys sold at `now`.
    async fn commit(
        &self,
        buyer_id: &str,
        keys: &[crate::domain::dedup::DedupKey],
        now: DateTime<Utc>,
    ) -> Result<(), Unavailable>;
    /// Gives back keys claimed for a delivery that did not sell.
    async fn release(&self, buyer_id: &str, keys: &[crate::domain::dedup::DedupKey]);
    /// Forgets sales older than the longest window in use (Redis expires keys itself).
    fn sweep(&self, now: DateTime<Utc>, longest: chrono::Duration);
    /// The keys marked sold and when, for a checkpoint (embedded only).
    fn export(&self) -> Vec<(crate::domain::dedup::DedupKey, DateTime<Utc>)> {
        Vec::new()
    }
    fn import(&self, _keys: Vec<(crate::domain::dedup::DedupKey, DateTime<Utc>)>) {}
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
    ) -> Result<crate::domain::ledger::LedgerEvent, journal::JournalError>;
    async fn append_internal(&self, record: journal::InternalRecord) -> Result<(), journal::JournalError>;
    /// `append_internal`, answering where the record was written (for records read back by
    /// location, as pull leads are).
    async fn append_internal_at(
        &self,
        record: journal::InternalRecord,
    ) -> Result<journal::Location, journal::JournalError> {
        self.append_internal(record).await.map(|()| journal::Location::default())
    }
    /// The internal records written together at `location`.
    fn internal_at(&self, _location: journal::Location) -> Result<Vec<journal::InternalRecord>, LogError> {
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

/// What holds an `Idempotency-Key` across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// Nobody had it: this request runs and stores its answer.
    Fresh,
    /// The key was used with another body: 409.
    Conflict,
    /// A request with the same key and body is still running (on another node).
    InFlight,
    /// The first answer, to give again.
    Answered(idempotency::StoredAnswer),
}

/// Claims that must hold on every node at once and outlive a restart: idempotency keys,
/// external ids, top-up references, returns. `redis_claims` on several nodes; on one node
/// (`claims::JournaledClaims`) the in-memory stores take the claims and the journal keeps
/// them.
#[async_trait]
pub trait Claims: Send + Sync + 'static {
    async fn begin_answer(&self, party: &str, key: &str, body_hash: [u8; 32]) -> Result<KeyClaim, Unavailable>;
    /// Keeps the first answer to `key` (made with a body of `body_hash`) for 24 hours.
    async fn store_answer(
        &self,
        party: &str,
        key: &str,
        body_hash: [u8; 32],
        answer: &idempotency::StoredAnswer,
    ) -> Result<(), Unavailable>;
    /// Gives a key back after an answer that must not be replayed (overload, our failure).
    async fn release_answer(&self, party: &str, key: &str);
    /// Takes `external_id` for `lead_id`; `Err` names the lead that has it.
    async fn claim_external_id(
        &self,
        supplier_id: &str,
        external_id: &str,
        lead_id: &str,
    ) -> Result<Result<(), String>, Unavailable>;
    /// Takes `id` of kind `what` for a buyer for good (`topup` references, `return`s of a
    /// sale); false if it was taken before.
    async fn claim_once(&self, buyer_id: &str, what: &'static str, id: &str) -> Result<bool, Unavailable>;
    /// Gives back what `claim_once` took, when the step it guarded failed.
    async fn release_once(&self, buyer_id: &str, what: &'static str, id: &str);
    /// The next value of a counter shared by all nodes (1, 2, ...); None where the store
    /// that owns the counter counts alone (one node).
    async fn next_number(&self, counter: &'static str) -> Result<Option<u64>, Unavailable>;
    /// Answers when the shared store answers (a health probe).
    async fn probe(&self) -> Result<(), Unavailable>;
}

/// A position in the shared log of admin changes (a Redis Stream id, `ms-n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(pub u64, pub u64);

impl ChangeId {
    pub fn parse(text: &str) -> Option<ChangeId> {
        let (ms, n) = text.split_once('-')?;
        Some(ChangeId(ms.parse().ok()?, n.parse().ok()?))
    }
}

impl std::fmt::Display for ChangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Admin changes in one order for every node: `redis_config` on several nodes,
/// `config_log::JournaledConfig` on one.
#[async_trait]
pub trait ConfigLog: Send + Sync + 'static {
    /// Appends a change and announces it; answers its position.
    async fn publish(&self, change: &crate::domain::market::ConfigChange) -> Result<ChangeId, Unavailable>;
    /// Every change after `after`, in order.
    async fn after(&self, after: ChangeId)
        -> Result<Vec<(ChangeId, crate::domain::market::ConfigChange)>, Unavailable>;
    /// Changes (counts up) whenever a change is announced or the subscription reconnects.
    fn announcements(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Leads sold to pull buyers, waiting for their fetch: positions are per buyer, and a
/// fetch's cursor acknowledges everything up to it. `pull::JournaledPull` on one node (the
/// journal holds the leads), `redis_pull` on several (positions global per buyer).
#[async_trait]
pub trait PullLog: Send + Sync + 'static {
    /// Appends a sold lead, durably; answers its position.
    async fn push(&self, buyer_id: &str, sale_id: &str, lead: serde_json::Value) -> Result<u64, Unavailable>;
    /// Forgets everything up to `after` (the buyer has taken it) and answers what follows.
    async fn fetch(
        &self,
        buyer_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, Unavailable>;
    /// The newest position handed out to the buyer (0: none yet): no cursor goes past it.
    async fn last_position(&self, buyer_id: &str) -> Result<u64, Unavailable>;
    /// A lead journaled with its sale at `at`, read back at start (embedded only).
    fn restore_lead(&self, _buyer_id: &str, _position: u64, _at: journal::Location) {}
    /// A cursor a fetch journaled, read back at start (embedded only).
    fn restore_acknowledged(&self, _buyer_id: &str, _through: u64) {}
    /// The queues, for a checkpoint (embedded only: Redis keeps its own).
    fn export(&self) -> Vec<pull::QueueState> {
        Vec::new()
    }
    fn import(&self, _states: Vec<pull::QueueState>) {}
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
    ) -> Result<Vec<(String, String, journal::InternalRecord)>, Unavailable>;
}
