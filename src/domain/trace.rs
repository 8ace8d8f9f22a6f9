//! The decision trace: every campaign considered for a ping or lead, and what happened to it,
//! in order (DESIGN §6, `GET /admin/v1/{pings,leads}/{id}/trace`).
//!
//! Entries carry ids, amounts, reason codes and latencies: never lead data.

use chrono::{DateTime, Utc};
use serde::Serialize;

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEntry {
    pub campaign_id: String,
    pub buyer_id: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
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

    pub fn push(&mut self, campaign_id: &str, buyer_id: &str, outcome: Outcome) -> &mut TraceEntry {
        self.entries.push(TraceEntry {
            campaign_id: campaign_id.to_string(),
            buyer_id: buyer_id.to_string(),
            outcome,
            reason: None,
            amount: None,
            latency_ms: None,
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }
}

impl TraceEntry {
    pub fn reason(&mut self, reason: impl Into<String>) -> &mut TraceEntry {
        self.reason = Some(reason.into());
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
}
