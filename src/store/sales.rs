//! Settled sales. In memory for now; the durable journal and the ledger stream take them
//! over (issue 4).

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;

use crate::domain::model::Model;
use crate::domain::money::Money;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sale {
    pub sale_id: String,
    pub lead_id: String,
    pub ping_id: Option<String>,
    pub supplier_id: String,
    pub buyer_id: String,
    pub campaign_id: String,
    pub vertical: String,
    pub country: String,
    pub model: Model,
    pub price: Money,
    pub payout: Money,
    pub currency: String,
    pub sold_at: DateTime<Utc>,
    pub internal: bool,
}

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

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn all(&self) -> Vec<Sale> {
        self.by_id.iter().map(|s| s.clone()).collect()
    }
}
