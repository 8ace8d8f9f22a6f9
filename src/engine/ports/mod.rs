//! The engine's ports: what the use cases need of state, and the record types and limits
//! they share with the adapters that keep it (`store`, embedded and Redis). Adapters import
//! these; the engine and the API never import an adapter's own types. Types move here from
//! `store` as each piece of state gets its port.

pub mod budget;
pub mod buyers;
pub mod claims;
pub mod config;
pub mod idempotency;
pub mod ledger;
pub mod outbox;
pub mod pings;
pub mod pull;
pub mod returns;

pub use budget::{Budget, BudgetError, Held, HoldHandle};
pub use buyers::BuyerCalls;
pub use claims::{Claims, DedupClaims, KeyClaim};
pub use config::{ChangeId, ConfigLog};
pub use ledger::{EventLog, InternalFeed, Ledger, LogError};
pub use pull::PullLog;

/// A store that cannot answer now (Redis away); the caller must not sell on a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct Unavailable(pub String);

use std::sync::Arc;

use pings::PingContexts;

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
