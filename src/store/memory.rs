//! The embedded `Budget`: one `BuyerBook` per buyer, each behind its own mutex.
//!
//! Rationale: a per-buyer lock serializes exactly the operations that compete for the same
//! money and caps, and nothing else; two buyers never wait for each other, and the lock is
//! held for microseconds (no I/O, no await inside).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::{Budget, BudgetError, Held, HoldHandle};

use crate::domain::budget::lease::CapStanding;
use crate::domain::budget::{BalanceView, BookState, BuyerBook, Funding, HoldRequest, ReplayedSale, Settled};
use crate::domain::caps::Cap;
use crate::domain::money::Money;

#[derive(Default)]
pub struct MemoryBudget {
    books: DashMap<Arc<str>, Arc<Mutex<BuyerBook>>>,
}

impl MemoryBudget {
    pub fn new() -> MemoryBudget {
        MemoryBudget::default()
    }

    fn book(&self, buyer_id: &str) -> Arc<Mutex<BuyerBook>> {
        if let Some(book) = self.books.get(buyer_id) {
            return Arc::clone(&book);
        }
        Arc::clone(&self.books.entry(Arc::from(buyer_id)).or_default())
    }
}

#[async_trait]
impl Budget for MemoryBudget {
    async fn try_hold(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
    ) -> Result<Held, BudgetError> {
        let hold_id = request.hold_id.clone();
        let available = self.book(buyer_id).lock().try_hold(now, request)?;
        Ok(Held { handle: HoldHandle { buyer_id: Arc::clone(buyer_id), hold_id }, available })
    }

    async fn settle(&self, hold: &HoldHandle) -> Result<Settled, BudgetError> {
        self.book(&hold.buyer_id).lock().settle(&hold.hold_id).map_err(|_| BudgetError::UnknownHold)
    }

    async fn release(&self, hold: &HoldHandle) -> Result<(), BudgetError> {
        self.book(&hold.buyer_id).lock().release(&hold.hold_id);
        Ok(())
    }

    async fn top_up(&self, buyer_id: &str, amount: Money) -> Result<Money, BudgetError> {
        Ok(self.book(buyer_id).lock().top_up(amount))
    }

    async fn balance(&self, buyer_id: &str, now: DateTime<Utc>, funding: Funding) -> Result<BalanceView, BudgetError> {
        Ok(self.book(buyer_id).lock().view(now, funding))
    }

    async fn cap_standings(
        &self,
        buyer_id: &str,
        campaign_id: &str,
        caps: &[Cap],
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Vec<CapStanding>, BudgetError> {
        Ok(self.book(buyer_id).lock().cap_standings(campaign_id, caps, tz, now, &BTreeMap::new()))
    }

    async fn replay_sale(&self, buyer_id: &str, sale: ReplayedSale<'_>) -> Result<(), BudgetError> {
        self.book(buyer_id).lock().replay_sale(&sale);
        Ok(())
    }

    fn export(&self) -> Vec<(String, BookState)> {
        self.books.iter().map(|entry| (entry.key().to_string(), BookState::from(&*entry.value().lock()))).collect()
    }

    fn import(&self, books: Vec<(String, BookState)>) {
        for (buyer_id, book) in books {
            self.books.insert(Arc::from(buyer_id.as_str()), Arc::new(Mutex::new(BuyerBook::from(book))));
        }
    }

    async fn expire(&self, now: DateTime<Utc>) -> Result<usize, BudgetError> {
        let books: Vec<_> = self.books.iter().map(|entry| Arc::clone(entry.value())).collect();
        for book in &books {
            book.lock().expire(now);
        }
        Ok(books.len())
    }
}
