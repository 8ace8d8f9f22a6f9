//! Claims: what must be taken once, on every node at once (idempotency keys, external
//! ids, top-up references, returns), and the dedup claims of one lead per buyer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Unavailable;

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
    Answered(super::idempotency::KeptAnswer),
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
        answer: &super::idempotency::KeptAnswer,
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
