//! The admin change log's entries: every operator's change (DESIGN §6, §15), with who made
//! it and when, and what the console's list of changes shows of it.
//!
//! An entry is a `ConfigChange` (a change to the market, or an act recorded beside them:
//! a top-up, a return decision) with its actor and time. The log is the journal's
//! `ConfigChanged` records on one node and a Redis Stream on several; a checkpoint keeps
//! every entry. Entries journaled before actors were recorded read as `by: unknown`.
//!
//! A summary names the object and a few plain facts about the change, built from chosen
//! fields only: no API key, webhook or auth secret, password hash, or lead data can reach it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::market::ConfigChange;
use super::model::{Payout, Pricing};
use super::money::Money;
use super::operator::Actor;

/// One entry of the admin change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminChange {
    /// Flattened: a checkpoint's entries read like the bare changes checkpoints held
    /// before (`{"op", "object"}`), with `by` and `at` beside them.
    #[serde(flatten)]
    pub change: ConfigChange,
    #[serde(default)]
    pub by: Actor,
    /// When it was made; `None` only for entries of checkpoints written before times were
    /// kept with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

impl AdminChange {
    pub fn new(change: ConfigChange, by: Actor, at: DateTime<Utc>) -> AdminChange {
        AdminChange { change, by, at: Some(at) }
    }

    /// What the list of changes shows of it.
    pub fn summary(&self) -> ChangeSummary {
        let (kind, object, summary) = describe(&self.change);
        ChangeSummary { at: self.at, by: self.by.clone(), kind, object, summary }
    }
}

/// A top-up as the change log records it (the money itself is the ledger's
/// `BalanceToppedUp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopUpNote {
    pub buyer_id: String,
    pub amount: Money,
    pub currency: String,
    pub reference: String,
}

/// An operator's decision on a return as the change log records it (the decision itself is
/// the ledger's `ReturnResolved`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnDecisionNote {
    pub return_id: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An entry as `GET /admin/v1/changes` lists it (the id is the log's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeSummary {
    pub at: Option<DateTime<Utc>>,
    pub by: Actor,
    /// The change's kind: `put_campaign`, `delete_buyer`, `put_operator`, `top_up`,
    /// `return_decision`, ...
    pub kind: &'static str,
    /// What it changed: `campaign c1`, `operator alice`, ...
    pub object: String,
    /// A few facts, never a secret.
    pub summary: String,
}

fn describe(change: &ConfigChange) -> (&'static str, String, String) {
    let state = |active: bool| if active { "active" } else { "inactive" };
    match change {
        ConfigChange::PutSupplier(supplier) => {
            let payout = match &supplier.payout {
                Payout::Revshare { percent } => format!("revshare {percent}%"),
                Payout::Fixed { amount } => format!("fixed {amount}"),
            };
            let summary = format!("{:?}, {}, payout {payout}", supplier.name, state(supplier.active));
            ("put_supplier", format!("supplier {}", supplier.id), summary)
        }
        ConfigChange::PutBuyer(buyer) => {
            let mode = serde_plain(&buyer.billing.mode);
            let summary = format!("{:?}, {}, {mode} billing", buyer.name, buyer.currency);
            ("put_buyer", format!("buyer {}", buyer.id), summary)
        }
        ConfigChange::PutCampaign(campaign) => {
            let pricing = match &campaign.pricing {
                Pricing::Fixed { price } => format!("fixed {price}"),
                Pricing::Dynamic { .. } => "dynamic".to_string(),
            };
            let summary = format!(
                "buyer {}, vertical {}, {}, {pricing}, {} delivery",
                campaign.buyer_id,
                campaign.vertical,
                state(campaign.active),
                serde_plain(&campaign.delivery.mode)
            );
            ("put_campaign", format!("campaign {}", campaign.id), summary)
        }
        ConfigChange::PutVertical(vertical) => {
            let summary = format!("{}, tmax {} ms", serde_plain(&vertical.model), vertical.tmax_ms);
            ("put_vertical", format!("vertical {}", vertical.name), summary)
        }
        ConfigChange::DeleteSupplier(id) => ("delete_supplier", format!("supplier {id}"), "deleted".into()),
        ConfigChange::DeleteBuyer(id) => ("delete_buyer", format!("buyer {id}"), "deleted".into()),
        ConfigChange::DeleteCampaign(id) => ("delete_campaign", format!("campaign {id}"), "deleted".into()),
        ConfigChange::DeleteVertical(name) => ("delete_vertical", format!("vertical {name}"), "deleted".into()),
        ConfigChange::PutOperator(put) => ("put_operator", format!("operator {}", put.name), "password set".into()),
        ConfigChange::DeleteOperator(name) => ("delete_operator", format!("operator {name}"), "removed".into()),
        ConfigChange::TopUp(note) => (
            "top_up",
            format!("buyer {}", note.buyer_id),
            format!("{} {}, reference {:?}", note.amount, note.currency, note.reference),
        ),
        ConfigChange::ReturnDecision(note) => {
            let summary = match (note.approved, &note.reason) {
                (true, None) => "approved".to_string(),
                (true, Some(reason)) => format!("approved: {reason:?}"),
                (false, None) => "rejected".to_string(),
                (false, Some(reason)) => format!("rejected: {reason:?}"),
            };
            ("return_decision", format!("return {}", note.return_id), summary)
        }
    }
}

/// A unit enum's serde name (`webhook_async`, `ping_post`).
fn serde_plain<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Buyer, Campaign, Supplier};
    use crate::domain::operator::{OperatorName, OperatorPut, PasswordHash};
    use serde_json::json;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$mX6qEVVWgW9VxXrLgrCpIsiZ/Vt3jI8ASUPwa2f8FkU";

    fn at() -> DateTime<Utc> {
        "2026-11-25T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_entry_reads_back_whole_and_a_bare_change_of_an_older_checkpoint_reads_as_unknown() {
        let change = ConfigChange::DeleteCampaign("c1".into());
        let entry = AdminChange::new(change.clone(), Actor::AdminToken, at());
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            json!({"op": "delete_campaign", "object": "c1", "by": "admin-token", "at": "2026-11-25T10:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<AdminChange>(json).unwrap(), entry);
        let bare = serde_json::to_value(&change).unwrap();
        let old: AdminChange = serde_json::from_value(bare).unwrap();
        assert_eq!(old, AdminChange { change: change.clone(), by: Actor::Unknown, at: None });
        // And a reader that knows only bare changes reads an entry as its change.
        let entry_json = serde_json::to_value(&entry).unwrap();
        assert_eq!(serde_json::from_value::<ConfigChange>(entry_json).unwrap(), change);
    }

    #[test]
    fn summaries_name_the_object_and_never_a_secret() {
        let buyer: Buyer = serde_json::from_value(json!({
            "id": "b1", "name": "Sonnenstrom", "api_key": "buyer-key-SECRET", "webhook_secret": "whsec-SECRET",
            "currency": "EUR", "timezone": "Europe/Berlin", "billing": {"mode": "prepaid", "interval": "monthly"}
        }))
        .unwrap();
        let supplier: Supplier = serde_json::from_value(json!({
            "id": "s1", "name": "Portal", "api_key": "supplier-key-SECRET", "webhook_secret": "swh-SECRET",
            "payout": {"type": "revshare", "percent": "60"}
        }))
        .unwrap();
        let campaign: Campaign = serde_json::from_value(json!({
            "id": "c1", "buyer_id": "b1", "vertical": "solar", "pricing": {"type": "fixed", "price": "38.00"},
            "delivery": {"mode": "webhook", "url": "https://buyer.example/leads?token=SECRET",
                         "request": {"format": "json", "auth": {"type": "bearer", "token": "bearer-SECRET"}}}
        }))
        .unwrap();
        let operator = OperatorPut {
            name: OperatorName::parse("alice", "name").unwrap(),
            password_hash: PasswordHash::parse_stored(HASH).unwrap(),
            at: at(),
        };
        let top_up = TopUpNote {
            buyer_id: "b1".into(),
            amount: Money::parse("250.00").unwrap(),
            currency: "EUR".into(),
            reference: "wire-1".into(),
        };
        let decision = ReturnDecisionNote { return_id: "r1".into(), approved: false, reason: Some("late".into()) };
        let cases = [
            (ConfigChange::PutBuyer(Box::new(buyer)), "put_buyer", "buyer b1", "\"Sonnenstrom\", EUR, prepaid billing"),
            (
                ConfigChange::PutSupplier(Box::new(supplier)),
                "put_supplier",
                "supplier s1",
                "\"Portal\", active, payout revshare 60%",
            ),
            (
                ConfigChange::PutCampaign(Box::new(campaign)),
                "put_campaign",
                "campaign c1",
                "buyer b1, vertical solar, active, fixed 38.00, webhook delivery",
            ),
            (ConfigChange::PutOperator(Box::new(operator)), "put_operator", "operator alice", "password set"),
            (
                ConfigChange::DeleteOperator(OperatorName::parse("alice", "name").unwrap()),
                "delete_operator",
                "operator alice",
                "removed",
            ),
            (ConfigChange::TopUp(Box::new(top_up)), "top_up", "buyer b1", "250.00 EUR, reference \"wire-1\""),
            (ConfigChange::ReturnDecision(Box::new(decision)), "return_decision", "return r1", "rejected: \"late\""),
            (ConfigChange::DeleteVertical("solar".into()), "delete_vertical", "vertical solar", "deleted"),
        ];
        for (change, kind, object, summary) in cases {
            let shown = AdminChange::new(change, Actor::AdminToken, at()).summary();
            assert_eq!((shown.kind, shown.object.as_str(), shown.summary.as_str()), (kind, object, summary));
            let json = serde_json::to_string(&shown).unwrap();
            assert!(!json.contains("SECRET") && !json.contains("argon2"), "{json}");
        }
    }
}
