//! The outbox's messages (what is delivered after the answer: async leads, return
//! notifications) and their delivery states as operators filter them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    DeadLetter,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "pending" => Some(Status::Pending),
            "dead_letter" => Some(Status::DeadLetter),
            _ => None,
        }
    }
}

/// Who a message is for: its signing secret is looked up when it is sent, so a rotated
/// secret applies to retries too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Recipient {
    Buyer(String),
    Supplier(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A lead sold to a `webhook_async` campaign.
    Lead,
    /// `return.requested` / `return.resolved`.
    Notification,
}

impl MessageKind {
    /// The `mode` label of `deliveries_total`.
    pub fn mode(self) -> &'static str {
        match self {
            MessageKind::Lead => "webhook_async",
            MessageKind::Notification => "notification",
        }
    }
}

/// What must be on the journal for a message to count: a message is journaled before the
/// fact it announces, and restored only if that fact made it to disk too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Requires {
    Sale(String),
    Return(String),
    ResolvedReturn(String),
}

/// One message to deliver: its body is sent (and signed) exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub kind: MessageKind,
    pub recipient: Recipient,
    pub url: String,
    pub body: String,
    pub timeout_ms: u64,
    pub requires: Requires,
    pub created_at: DateTime<Utc>,
}
