//! Ledger events (DESIGN §7): what the billing worker and any other consumer learn, in one
//! gap-free, strictly increasing sequence.
//!
//! These are plain data; the journal stores them and the gRPC stream sends them. Money
//! stays `Money` (decimal strings on every wire).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Buyer, Model, Supplier};
use super::money::{Currency, Money};

/// One event with its place in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEvent {
    /// 1, 2, 3, ... with no gaps.
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Shared: the journal's tail in memory, the recent sales and the answer to the sale's
    /// own request all hold the one record (a sale is a dozen strings).
    SaleSettled(Arc<SaleSettled>),
    ReturnResolved(ReturnResolved),
    BalanceToppedUp(BalanceToppedUp),
    BuyerUpdated(Buyer),
    SupplierUpdated(Supplier),
}

impl From<SaleSettled> for Event {
    fn from(sale: SaleSettled) -> Event {
        Event::SaleSettled(Arc::new(sale))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleSettled {
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
    pub currency: Currency,
    pub sold_at: DateTime<Utc>,
    pub internal: bool,
    /// The lead's dedup keys for this buyer (hex HMAC-SHA-256 of buyer and normalized
    /// contact under the dedup secret: no PII), so duplicate detection survives a restart. Internal to the journal; the
    /// ledger stream does not carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedup_keys: Vec<String>,
    /// The campaign's return terms when the lead was sold (journal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_terms: Option<super::returns::ReturnTerms>,
    /// The buyer's own lead id, when its answer rules read one (DESIGN §5.1 `reference`).
    /// Absent from sales journaled before it existed, and left out when there is none, so
    /// journals, checkpoints and Redis streams written either way read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_reference: Option<String>,
    /// What the sale drew from its node's budget lease, when it was sold from one (several
    /// nodes on Redis, DESIGN §9): the ledger counts it against the lease in the step that
    /// records the sale. Not on the ledger stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<super::budget::lease::LeaseCharge>,
}

#[cfg(test)]
impl SaleSettled {
    /// A 38.00 EUR sale (payout 22.80) of `led_1` from `s1` to `b1` by standing bid; tests
    /// change what they look at.
    pub(crate) fn example(sold_at: DateTime<Utc>) -> SaleSettled {
        SaleSettled {
            sale_id: "sal_1".into(),
            lead_id: "led_1".into(),
            ping_id: None,
            supplier_id: "s1".into(),
            buyer_id: "b1".into(),
            campaign_id: "c1".into(),
            vertical: "solar".into(),
            country: "DE".into(),
            model: Model::Bidding,
            price: Money::cents(3800),
            payout: Money::cents(2280),
            currency: crate::domain::money::Currency::EUR,
            sold_at,
            internal: false,
            dedup_keys: Vec::new(),
            return_terms: None,
            lease: None,
            buyer_reference: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnResolved {
    pub return_id: String,
    pub sale_id: String,
    pub buyer_id: String,
    pub supplier_id: String,
    pub approved: bool,
    /// What the buyer gets back (the sale price when approved, else zero).
    pub credit: Money,
    /// What the supplier gives back (its payout when approved, else zero).
    pub payout_reversed: Money,
    pub currency: Currency,
    pub reason: String,
    pub note: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    /// When the returned lead was sold: refunds are booked against that period.
    pub sold_at: DateTime<Utc>,
    // Journal only (the ledger stream does not carry them). Everything else a return
    // needs at start comes from its sale, which is always journaled before it.
    /// The operator's words when deciding (always present for a rejection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_reason: Option<String>,
    /// The return's revision (its place in the supplier feed).
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceToppedUp {
    pub buyer_id: String,
    pub amount: Money,
    pub reference: String,
    pub balance_after: Money,
    pub currency: Currency,
}
