//! The business answers of the supplier endpoints (DESIGN §4): always 200 with a status.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::domain::money::{Currency, Money};

fn rfc3339<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingAnswer {
    pub ping_id: String,
    /// `bid` or `no_bid`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadAnswer {
    pub lead_id: String,
    /// `sold` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// `buyer_rejected`, `duplicate`, `no_eligible_buyer` or `deadline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl LeadAnswer {
    pub fn rejected(lead_id: String, reason: &'static str) -> LeadAnswer {
        LeadAnswer { lead_id, status: "rejected", payout: None, currency: None, reason: Some(reason) }
    }
}
