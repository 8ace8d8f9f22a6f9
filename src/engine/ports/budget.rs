//! The budget port: balances, holds and caps (invariant 2). `store::memory::MemoryBudget`
//! on one node, `store::redis_budget` on several.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::budget::lease::CapStanding;
use crate::domain::budget::{BalanceView, Funding, HoldRefusal, HoldRequest, ReplayedSale, Settled};
use crate::domain::caps::Cap;
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
    /// How a campaign stands against its caps in the windows containing `now`.
    async fn cap_standings(
        &self,
        buyer_id: &str,
        campaign_id: &str,
        caps: &[Cap],
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Vec<CapStanding>, BudgetError>;
    /// Books a sale read back from the journal at start (balance and cap windows).
    async fn replay_sale(&self, buyer_id: &str, sale: ReplayedSale<'_>) -> Result<(), BudgetError>;
    /// Drops expired holds everywhere; answers how many buyers' books were swept.
    async fn expire(&self, now: DateTime<Utc>) -> Result<usize, BudgetError>;
    /// Gives back what this node took in advance (budget leases), once no request runs.
    async fn close(&self) {}
    /// Every book, for a checkpoint (embedded only: Redis keeps its own).
    fn export(&self) -> Vec<(String, crate::domain::budget::BookState)> {
        Vec::new()
    }
    fn import(&self, _books: Vec<(String, crate::domain::budget::BookState)>) {}
}
