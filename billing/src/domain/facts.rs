//! What the ledger stream tells the worker (DESIGN §7), parsed into exact types.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use leadrouter_types::{BuyerId, CampaignId, Currency, LeadId, Model, PingId, ReturnId, SaleId, SupplierId};
use rust_decimal::Decimal;

use super::period::Interval;

/// One ledger event with its gap-free sequence.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub fact: Fact,
}

#[derive(Debug, Clone)]
pub enum Fact {
    Sale(Sale),
    Return(Return),
    TopUp(TopUp),
    Buyer(Buyer),
    Supplier(Supplier),
}

#[derive(Debug, Clone)]
pub struct Sale {
    pub sale_id: SaleId,
    pub lead_id: LeadId,
    /// The ping a ping-post sale was posted from; `None` for direct posts.
    pub ping_id: Option<PingId>,
    pub supplier_id: SupplierId,
    pub buyer_id: BuyerId,
    pub campaign_id: CampaignId,
    pub vertical: String,
    pub country: String,
    pub model: Model,
    pub price: Decimal,
    pub payout: Decimal,
    pub currency: Currency,
    pub sold_at: DateTime<Utc>,
    pub internal: bool,
    /// The buyer's own id for the lead when its answer rules read one (DESIGN §5.1); shown
    /// on the buyer's documents so its accounts can match our lines to its records.
    pub buyer_reference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Return {
    pub return_id: ReturnId,
    pub sale_id: SaleId,
    pub buyer_id: BuyerId,
    pub supplier_id: SupplierId,
    pub approved: bool,
    pub credit: Decimal,
    pub payout_reversed: Decimal,
    pub currency: Currency,
    pub reason: String,
    pub note: String,
    pub requested_at: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    pub sold_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct TopUp {
    pub buyer_id: BuyerId,
    pub amount: Decimal,
    pub reference: String,
    pub balance_after: Decimal,
    pub currency: Currency,
}

/// How a buyer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    Prepaid,
    Invoice,
    /// Recorded and reported, never billed.
    Internal,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Prepaid => "prepaid",
            BillingMode::Invoice => "invoice",
            BillingMode::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<BillingMode> {
        match text {
            "prepaid" => Some(BillingMode::Prepaid),
            "invoice" => Some(BillingMode::Invoice),
            "internal" => Some(BillingMode::Internal),
            _ => None,
        }
    }
}

/// Payment terms when the buyer has none (DESIGN §13.1).
pub const DEFAULT_PAYMENT_TERMS_DAYS: u32 = 14;

#[derive(Debug, Clone)]
pub struct Buyer {
    pub buyer_id: BuyerId,
    pub name: String,
    pub email: Option<String>,
    pub currency: Currency,
    pub timezone: Tz,
    pub mode: BillingMode,
    pub interval: Interval,
    pub payment_terms_days: u32,
    pub credit_limit: Option<Decimal>,
}

#[derive(Debug, Clone)]
pub struct Supplier {
    pub supplier_id: SupplierId,
    pub name: String,
    pub email: Option<String>,
    pub interval: Interval,
    pub timezone: Tz,
}
