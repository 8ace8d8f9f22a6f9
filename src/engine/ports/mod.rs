//! The engine's ports: what the use cases need of state, and the record types and limits
//! they share with the adapters that keep it (`store`, embedded and Redis). Adapters import
//! these; the engine and the API never import an adapter's own types. Types move here from
//! `store` as each piece of state gets its port.

pub mod idempotency;
pub mod outbox;
pub mod pull;
pub mod returns;

use std::sync::Arc;

use crate::store::pings::PingContexts;
use crate::store::{Budget, Claims, ConfigLog, DedupClaims, Ledger, PullLog};

/// Every piece of state the router keeps between requests, one port each, chosen once at
/// start: `store::embedded` for one node, the Redis adapters for several (`server`).
/// Nothing past this choice asks which it was.
pub struct Stores {
    /// Balances, holds and caps (invariant 2).
    pub budget: Arc<dyn Budget>,
    /// Ledger events and internal records, durable before they are acknowledged.
    pub ledger: Arc<dyn Ledger>,
    pub pings: Arc<dyn PingContexts>,
    pub dedup: Arc<dyn DedupClaims>,
    /// Idempotency keys, external ids, top-up references, returns.
    pub claims: Arc<dyn Claims>,
    /// Admin changes, in the order every node applies them.
    pub config: Arc<dyn ConfigLog>,
    /// Leads waiting for pull buyers.
    pub pull: Arc<dyn PullLog>,
}
