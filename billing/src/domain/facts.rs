//! What the ledger stream tells the worker (DESIGN §7), parsed into exact types.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use leadrouter_types::Model;
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
    pub sale_id: String,
    pub lead_id: String,
    pub ping_id: String,
    pub supplier_id: String,
    pub buyer_id: String,
    pub campaign_id: String,
    pub vertical: String,
    pub country: String,
    pub model: Model,
    pub price: Decimal,
    pub payout: Decimal,
    pub currency: String,
    pub sold_at: DateTime<Utc>,
    pub internal: bool,
}

#[derive(Debug, Clone)]
pub struct Return {
    pub return_id: String,
    pub sale_id: String,
    pub buyer_id: String,
    pub supplier_id: String,
    pub approved: bool,
    pub credit: Decimal,
    pub payout_reversed: Decimal,
    pub currency: String,
    pub reason: String,
    pub note: String,
    pub requested_at: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    pub sold_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct TopUp {
    pub buyer_id: String,
    pub amount: Decimal,
    pub reference: String,
    pub balance_after: Decimal,
    pub currency: String,
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
    pub buyer_id: String,
    pub name: String,
    pub email: Option<String>,
    pub currency: String,
    pub timezone: Tz,
    pub mode: BillingMode,
    pub interval: Interval,
    pub payment_terms_days: u32,
    pub credit_limit: Option<Decimal>,
}

#[derive(Debug, Clone)]
pub struct Supplier {
    pub supplier_id: String,
    pub name: String,
    pub email: Option<String>,
    pub interval: Interval,
    pub timezone: Tz,
}
