//! The business answers of the supplier endpoints (DESIGN §4): always 200 with a status.
//!
//! The statuses and reasons are named here once: the use cases answer with these
//! constants and the OpenAPI document lists them as the answers' allowed values.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::domain::money::{Currency, Money};

fn rfc3339<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => serializer.serialize_none(),
    }
}

/// A string that is one of `values`, for a field typed `&'static str` in Rust.
fn one_of(values: &[&str]) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

/// Ping statuses: an offer stands (`bid`) or none does (`no_bid`).
pub const BID: &str = "bid";
pub const NO_BID: &str = "no_bid";
/// Why a ping got no bid, or a lead was not sold.
pub const NO_ELIGIBLE_BUYER: &str = "no_eligible_buyer";
pub const NO_BIDS: &str = "no_bids";
pub const BUYER_REJECTED: &str = "buyer_rejected";
pub const DUPLICATE: &str = "duplicate";
pub const DEADLINE: &str = "deadline";
pub const NO_BID_REASONS: [&str; 2] = [NO_ELIGIBLE_BUYER, NO_BIDS];
/// Lead statuses: sold to a buyer, or not.
pub const SOLD: &str = "sold";
pub const REJECTED: &str = "rejected";
/// Why a lead was not sold (DESIGN §4).
pub const REJECTION_REASONS: [&str; 4] = [BUYER_REJECTED, DUPLICATE, NO_ELIGIBLE_BUYER, DEADLINE];

fn ping_status() -> Object {
    one_of(&[BID, NO_BID])
}
fn no_bid_reason() -> Object {
    one_of(&NO_BID_REASONS)
}
fn lead_status() -> Object {
    one_of(&[SOLD, REJECTED])
}
fn rejection_reason() -> Object {
    one_of(&REJECTION_REASONS)
}

/// The answer to `POST /v1/ping`: a bid (the payout the supplier earns if it posts the lead
/// before `expires_at`) or no bid with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PingAnswer {
    #[schema(example = "png_Example0000000000000")]
    pub ping_id: String,
    /// `bid` or `no_bid`.
    #[schema(schema_with = ping_status)]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payout: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub currency: Option<Currency>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    #[schema(nullable = false)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = no_bid_reason)]
    pub reason: Option<&'static str>,
}

/// The answer to `POST /v1/post`, `POST /v1/leads` and each row of `POST /v1/leads/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeadAnswer {
    #[schema(example = "led_Example0000000000000")]
    pub lead_id: String,
    /// `sold` or `rejected`.
    #[schema(schema_with = lead_status)]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payout: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub currency: Option<Currency>,
    /// `buyer_rejected`, `duplicate`, `no_eligible_buyer` or `deadline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = rejection_reason)]
    pub reason: Option<&'static str>,
}

impl LeadAnswer {
    pub fn rejected(lead_id: String, reason: &'static str) -> LeadAnswer {
        LeadAnswer { lead_id, status: REJECTED, payout: None, currency: None, reason: Some(reason) }
    }
}
