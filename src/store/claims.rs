//! The `Claims` port on one node. Every claim is first taken in memory by the store that
//! owns it (`Idempotency` for keys and external ids, the router's top-up references, the
//! returns store), and one process is all there is, so nothing more needs taking here:
//! what remains is to make the claims that must outlive the process durable, in the
//! journal, as `redis_claims` makes them durable in Redis on several nodes.

use std::sync::Arc;

use async_trait::async_trait;

use super::journal::InternalRecord;
use super::{Claims, KeyClaim, Ledger, Unavailable};
use crate::clock::Clock;
use crate::engine::ports::idempotency::KeptAnswer;

pub struct JournaledClaims {
    journal: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
}

impl JournaledClaims {
    pub fn new(journal: Arc<dyn Ledger>, clock: Arc<dyn Clock>) -> JournaledClaims {
        JournaledClaims { journal, clock }
    }

    async fn append(&self, record: InternalRecord) -> Result<(), Unavailable> {
        self.journal.append_internal(record).await.map_err(|error| Unavailable(error.to_string()))
    }
}

#[async_trait]
impl Claims for JournaledClaims {
    /// The in-memory `Idempotency` record, taken before this, is the whole claim.
    async fn begin_answer(&self, _party: &str, _key: &str, _body_hash: [u8; 32]) -> Result<KeyClaim, Unavailable> {
        Ok(KeyClaim::Fresh)
    }

    /// Journaled before the answer is returned, so a retry after a crash still gets it.
    async fn store_answer(
        &self,
        party: &str,
        key: &str,
        body_hash: [u8; 32],
        answer: &KeptAnswer,
    ) -> Result<(), Unavailable> {
        self.append(InternalRecord::Answer {
            party: party.to_string(),
            key: key.to_string(),
            body_hash: hex::encode(body_hash),
            answer: answer.clone(),
            created_at: self.clock.now(),
        })
        .await
    }

    /// Nothing was written for a key whose answer is not kept.
    async fn release_answer(&self, _party: &str, _key: &str) {}

    /// Journaled, so the claim holds for its 24 hours across a restart.
    async fn claim_external_id(
        &self,
        supplier_id: &str,
        external_id: &str,
        lead_id: &str,
    ) -> Result<Result<(), String>, Unavailable> {
        self.append(InternalRecord::ExternalId {
            supplier_id: supplier_id.to_string(),
            external_id: external_id.to_string(),
            lead_id: lead_id.to_string(),
            at: self.clock.now(),
        })
        .await
        .map(Ok)
    }

    /// The fact the claim guards (a top-up, a return) is journaled itself, and restores
    /// the in-memory claim at start.
    async fn claim_once(&self, _buyer_id: &str, _what: &'static str, _id: &str) -> Result<bool, Unavailable> {
        Ok(true)
    }

    async fn release_once(&self, _buyer_id: &str, _what: &'static str, _id: &str) {}

    /// One node counts in the store that owns the counter.
    async fn next_number(&self, _counter: &'static str) -> Result<Option<u64>, Unavailable> {
        Ok(None)
    }

    /// The journal's health is `Ledger::failure`.
    async fn probe(&self) -> Result<(), Unavailable> {
        Ok(())
    }
}
