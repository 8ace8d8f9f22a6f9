//! What every service of the engine reads: the market, the clock and the stores chosen at
//! start, plus the small steps they all take (take a claim once, publish a balance, find
//! a sale). Whether the stores are there (`store_problem`, `ensure_store`) is answered in
//! `shared.rs`, the one file that knows about other nodes.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::memory::idempotency::Idempotency;
use super::memory::outcomes::LeadOutcomes;
use super::memory::returns::Returns;
use super::memory::sales::Sales;
use super::ports::pings::PingContexts;
use super::ports::{Budget, BuyerCalls, Claims, ConfigLog, DedupClaims, Ledger, PullLog};
use super::shared::Shared;
use super::EngineError;
use crate::clock::Clock;
use crate::domain::budget::Funding;
use crate::domain::dedup::DedupKeying;
use crate::domain::geo::PostalTable;
use crate::domain::ledger::SaleSettled as Sale;
use crate::domain::market::Market;
use crate::telemetry;

pub(super) struct Core {
    pub market: ArcSwap<Market>,
    pub postal: &'static PostalTable,
    pub clock: Arc<dyn Clock>,
    pub budget: Arc<dyn Budget>,
    /// Buyers' endpoints: pings, posts and outbox deliveries.
    pub buyers: Arc<dyn BuyerCalls>,
    pub pings: Arc<dyn PingContexts>,
    pub dedup: Arc<dyn DedupClaims>,
    /// How dedup keys are made: the deployment's secret, so that they match across
    /// restarts and nodes.
    pub dedup_keying: DedupKeying,
    pub idempotency: Idempotency,
    /// Sales inside their return window (every sale where the ledger cannot find them).
    pub sales: Sales,
    /// Returns by id, pending and resolved: the return desk writes them, the outbox reads
    /// whether the return a notification announces exists.
    pub returns: Returns,
    /// Suppliers' recent leads and their outcomes (the supplier portal).
    pub outcomes: LeadOutcomes,
    /// Every sale, top-up and account change, on disk before it is acknowledged.
    pub journal: Arc<dyn Ledger>,
    pub pull: Arc<dyn PullLog>,
    pub claims: Arc<dyn Claims>,
    /// Admin changes in the order every node applies them.
    pub config: Arc<dyn ConfigLog>,
    /// What working beside other nodes on one Redis needs; `None` on one node (only
    /// `shared.rs` reads it).
    pub shared: Option<Shared>,
}

impl Core {
    pub fn market(&self) -> Arc<Market> {
        self.market.load_full()
    }

    /// `Claims::claim_once`, `taken()` when it was taken before (on another node).
    pub async fn claim_once(
        &self,
        buyer_id: &str,
        what: &'static str,
        id: &str,
        taken: impl FnOnce() -> EngineError,
    ) -> Result<(), EngineError> {
        match self.claims.claim_once(buyer_id, what, id).await? {
            true => Ok(()),
            false => Err(taken()),
        }
    }

    /// Sets the buyer's available balance gauge from its book.
    pub async fn publish_balance(&self, buyer_id: &str, funding: Funding) {
        if let Ok(view) = self.budget.balance(buyer_id, self.clock.now(), funding).await {
            publish_available(buyer_id, view.available);
        }
    }

    /// A sale by id: from memory while its return window is open, else from disk.
    pub async fn sale(&self, sale_id: &str) -> Result<Option<Sale>, EngineError> {
        if let Some(sale) = self.sales.get(sale_id) {
            return Ok(Some(Sale::clone(&sale)));
        }
        let journal = Arc::clone(&self.journal);
        let sale_id = sale_id.to_string();
        let found = tokio::task::spawn_blocking(move || journal.find_sale(&sale_id))
            .await
            .map_err(|e| EngineError::Unavailable(format!("sale lookup: {e}")))?;
        found.map_err(|e| EngineError::Unavailable(e.to_string()))
    }
}

pub(super) fn publish_available(buyer_id: &str, available: crate::domain::money::Money) {
    telemetry::meters::buyer_available(buyer_id, available.as_f64_for_metrics());
}
