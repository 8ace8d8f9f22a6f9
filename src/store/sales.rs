//! Settled sales by id while their return window is open, rebuilt from the journal at
//! start (returns look sales up here). Older sales are forgotten from memory; the journal
//! finds them on disk (`Ledger::find_sale`).

use dashmap::DashMap;

/// A settled sale is exactly what the ledger says of it.
pub type Sale = crate::domain::ledger::SaleSettled;

#[derive(Default)]
pub struct Sales {
    by_id: DashMap<String, Sale>,
}

impl Sales {
    pub fn record(&self, sale: Sale) {
        self.by_id.insert(sale.sale_id.clone(), sale);
    }

    pub fn get(&self, sale_id: &str) -> Option<Sale> {
        self.by_id.get(sale_id).map(|s| s.clone())
    }

    pub fn contains(&self, sale_id: &str) -> bool {
        self.by_id.contains_key(sale_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Forgets the sales `keep` says no to; answers how many were forgotten.
    pub fn retain(&self, mut keep: impl FnMut(&Sale) -> bool) -> usize {
        let before = self.by_id.len();
        self.by_id.retain(|_, sale| keep(sale));
        before - self.by_id.len()
    }

    pub fn all(&self) -> Vec<Sale> {
        self.by_id.iter().map(|s| s.clone()).collect()
    }
}
