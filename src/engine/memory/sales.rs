//! Recent settled sales by id (returns look sales up here first). At most
//! `RECENT_SALES_MAX` are kept, and none past its return window; every other sale is read
//! from disk when asked for (`Ledger::find_sale`), so memory does not grow with sales.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

/// A settled sale is exactly what the ledger says of it.
pub type Sale = crate::domain::ledger::SaleSettled;

/// Sales kept in memory at most (~10 MB); a return of an older one reads it from disk.
pub const RECENT_SALES_MAX: usize = 16_384;

pub struct Sales {
    /// How many sales memory keeps.
    kept: usize,
    /// The ledger's own record of each sale, shared with the journal's tail.
    by_id: DashMap<Arc<str>, Arc<Sale>>,
    /// Ids in the order they were recorded, oldest first, to forget the oldest beyond the
    /// cap (held for a push and a pop).
    order: Mutex<VecDeque<Arc<str>>>,
}

impl Default for Sales {
    fn default() -> Sales {
        Sales::keeping(RECENT_SALES_MAX)
    }
}

impl Sales {
    /// Sales that keep at most `kept` in memory (every sale where the ledger cannot look
    /// sales up: several nodes, whose ledger is a mirror in memory).
    pub fn keeping(kept: usize) -> Sales {
        Sales { kept, by_id: DashMap::new(), order: Mutex::new(VecDeque::new()) }
    }

    pub fn record(&self, sale: Arc<Sale>) {
        let id: Arc<str> = Arc::from(sale.sale_id.as_str());
        self.by_id.insert(Arc::clone(&id), sale);
        if self.kept == usize::MAX {
            return;
        }
        let forgotten = {
            let mut order = self.order.lock();
            order.push_back(id);
            if order.len() > self.kept {
                order.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = forgotten {
            self.by_id.remove(&old);
        }
    }

    pub fn get(&self, sale_id: &str) -> Option<Arc<Sale>> {
        self.by_id.get(sale_id).map(|s| Arc::clone(&s))
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
        let mut order = self.order.lock();
        order.retain(|id| self.by_id.contains_key(id));
        before - self.by_id.len()
    }

    pub fn all(&self) -> Vec<Arc<Sale>> {
        self.by_id.iter().map(|s| Arc::clone(&s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_keeps_the_most_recent_sales_only() {
        let sales = Sales::default();
        for n in 0..RECENT_SALES_MAX + 10 {
            let mut sale = Sale::example(chrono::Utc::now());
            sale.sale_id = format!("sal_{n}");
            sales.record(Arc::new(sale));
        }
        assert_eq!(sales.len(), RECENT_SALES_MAX);
        assert!(!sales.contains("sal_9") && sales.contains("sal_10"));
        assert_eq!(sales.retain(|sale| sale.sale_id != "sal_10"), 1);
        assert_eq!(sales.order.lock().len(), RECENT_SALES_MAX - 1);
    }
}
