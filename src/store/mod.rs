//! Adapters for the engine's ports (`engine::ports`: the traits live with the engine that
//! uses them and are re-exported here for the adapters): the embedded ones of one node
//! (`embedded` builds them) and the Redis ones of several (`redis_*`); the journal, its
//! checkpoints and backups. (What the engine keeps in memory is `engine::memory`.)
//!
//! `Budget` is the port that carries invariant 2 (no overspend): the embedded adapter keeps
//! one `BuyerBook` per buyer behind its own lock; the Redis adapter (several nodes) runs
//! the same checks in one atomic script per buyer.

pub mod backup;
pub mod checkpoint;
pub mod claims;
pub mod config_log;
pub mod dedup;
pub mod dedup_secret;
pub mod event_mirror;
pub mod files;
pub mod journal;
pub mod memory;
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

use std::sync::Arc;

use crate::clock::Clock;
use crate::engine::ports::Stores;

/// One node's stores: balances, pings, dedup claims and pull places in memory, made
/// durable by `journal` (the embedded default, no external service).
pub fn embedded(journal: Arc<dyn Ledger>, clock: Arc<dyn Clock>) -> Stores {
    embedded_after(journal, clock, &[])
}

/// `embedded`, on a journal that holds `changes`, the admin changes made before this start
/// (already in the market the router starts with; listed by `ConfigLog::history`).
pub fn embedded_after(
    journal: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    changes: &[crate::domain::changes::AdminChange],
) -> Stores {
    Stores {
        budget: Arc::new(memory::MemoryBudget::new()),
        pings: Arc::new(pings::Pings::default()),
        dedup: Arc::new(dedup::Dedup::default()),
        claims: Arc::new(claims::JournaledClaims::new(Arc::clone(&journal), Arc::clone(&clock))),
        config: Arc::new(config_log::JournaledConfig::new(Arc::clone(&journal), clock).with_history(changes)),
        pull: Arc::new(pull::JournaledPull::new(Arc::clone(&journal))),
        ledger: journal,
    }
}

// The ports live with the engine that uses them; adapters here implement them.
pub use crate::engine::ports::{
    Budget, BudgetError, ChangeId, Claims, ConfigLog, DedupClaims, EventLog, Held, HoldHandle, InternalFeed, KeyClaim,
    Ledger, LogError, PullLog, Unavailable,
};
