//! The decision trace: every campaign considered for a ping or lead, and what happened to it,
//! in order (DESIGN §6, `GET /admin/v1/{pings,leads}/{id}/trace`).
//!
//! Entries carry ids, amounts, reason codes and latencies: never lead data. A `sold` entry
//! also carries the buyer's own id for the lead when its answer named one
//! (`buyer_reference`, DESIGN §5.1): the buyer's id, not the lead's contact data.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Filtered,
    Bid,
    NoBid,
    Timeout,
    Error,
    Won,
    RejectedPost,
    Sold,
}

/// One step for one campaign. Codes are static strings and numbers stay numbers, so a
/// decision that filters hundreds of campaigns formats nothing until a trace is read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEntry {
    pub campaign_id: Arc<str>,
    pub buyer_id: Arc<str>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    /// What the reason is about: a field name, a cap name, a buyer's error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "one_decimal")]
    pub distance_km: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `sold` only: the buyer's reference for the lead. Boxed, not a `String`: every entry
    /// of every kept trace pays for this slot, and only sales fill it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_reference: Option<Box<str>>,
}

fn one_decimal<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(km) => serializer.serialize_f64((km * 10.0).round() / 10.0),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub id: String,
    pub kind: &'static str,
    pub vertical: String,
    pub model: &'static str,
    pub started_at: DateTime<Utc>,
    pub entries: Vec<TraceEntry>,
    /// Campaigns of the vertical the eligibility index ruled out by country or postal area
    /// without evaluating them (so not listed in `entries`).
    pub outside_area: usize,
    /// The final status given to the supplier (`bid`, `no_bid`, `sold`, `rejected`).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Trace {
    pub fn new(
        id: String,
        kind: &'static str,
        vertical: String,
        model: &'static str,
        started_at: DateTime<Utc>,
    ) -> Trace {
        Trace {
            id,
            kind,
            vertical,
            model,
            started_at,
            entries: Vec::new(),
            outside_area: 0,
            status: String::new(),
            reason: None,
        }
    }

    pub fn push(&mut self, campaign_id: &Arc<str>, buyer_id: &Arc<str>, outcome: Outcome) -> &mut TraceEntry {
        self.entries.push(TraceEntry {
            campaign_id: Arc::clone(campaign_id),
            buyer_id: Arc::clone(buyer_id),
            outcome,
            reason: None,
            detail: None,
            distance_km: None,
            amount: None,
            latency_ms: None,
            buyer_reference: None,
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }
}

impl TraceEntry {
    pub fn reason(&mut self, reason: impl Into<Cow<'static, str>>) -> &mut TraceEntry {
        self.reason = Some(reason.into());
        self
    }

    pub fn detail(&mut self, detail: impl Into<Cow<'static, str>>) -> &mut TraceEntry {
        self.detail = Some(detail.into());
        self
    }

    pub fn distance_km(&mut self, km: Option<f64>) -> &mut TraceEntry {
        self.distance_km = km;
        self
    }

    pub fn amount(&mut self, amount: Money) -> &mut TraceEntry {
        self.amount = Some(amount);
        self
    }

    pub fn latency(&mut self, latency: std::time::Duration) -> &mut TraceEntry {
        self.latency_ms = Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
        self
    }

    pub fn buyer_reference(&mut self, reference: Option<&str>) -> &mut TraceEntry {
        self.buyer_reference = reference.map(Box::from);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sold_entry_shows_the_buyer_reference_only_when_there_is_one() {
        let (campaign, buyer): (Arc<str>, Arc<str>) = (Arc::from("c1"), Arc::from("b1"));
        let mut trace = Trace::new("led_1".into(), "lead", "solar".into(), "bidding", DateTime::UNIX_EPOCH);
        trace.push(&campaign, &buyer, Outcome::Sold).amount(Money::cents(3800)).buyer_reference(Some("CRM-42"));
        trace.push(&campaign, &buyer, Outcome::Sold).amount(Money::cents(3800)).buyer_reference(None);
        let json = serde_json::to_value(&trace).expect("a trace serializes");
        assert_eq!(json["entries"][0]["buyer_reference"], "CRM-42");
        assert_eq!(json["entries"][0]["amount"], "38.00");
        let without = json["entries"][1].as_object().expect("an entry is an object");
        assert!(!without.contains_key("buyer_reference"), "absent, not null: {without:?}");
    }
}
