//! The outbox's messages (what is delivered after the answer: async leads, return
//! notifications) and their delivery states as operators filter them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::integration::request::{Method, TokenFetch};

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
    /// The rest of a request rendered in the buyer's own format (DESIGN §5.1); `None`: the
    /// native protocol (a signed JSON POST, any 2xx delivers). Absent from messages
    /// journaled before buyer-format async deliveries, which therefore read as native.
    /// Boxed: most messages are native, and journal records stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Box<BuyerRequest>>,
}

/// A lead rendered in its buyer's format when it was sold: `Message::url` and
/// `Message::body` hold the rendered URL and body, this the rest. Every attempt sends the
/// same bytes; only the signature (it carries the time) is made per attempt, with the
/// buyer's webhook secret of that moment, as for native messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerRequest {
    /// The campaign whose answer rules read the reply (any 2xx delivers once it is gone).
    pub campaign_id: String,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    /// Signed as §5 says unless the campaign said `"sign": false`.
    pub sign: bool,
    /// `auth.type = token`: the token endpoint's request, rendered with the lead's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenFetch>,
    /// Headers (by name, any case) whose values an operator is not shown: those the
    /// campaign's auth sets and those rendered from lead data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unshown_headers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn native() -> serde_json::Value {
        json!({
            "id": "dlv_1", "kind": "lead", "recipient": {"kind": "buyer", "id": "b1"},
            "url": "http://127.0.0.1:1/leads", "body": "{}", "timeout_ms": 1000,
            "requires": {"kind": "sale", "id": "sal_1"}, "created_at": "2025-01-02T03:04:05Z",
        })
    }

    #[test]
    fn a_message_journaled_before_buyer_formats_reads_as_native() {
        let message: Message = serde_json::from_value(native()).expect("an old message reads");
        assert_eq!(message.request, None, "native: a signed JSON POST");
        let written = serde_json::to_value(&message).unwrap();
        assert_eq!(written, native(), "and a native message is written as before");
    }

    #[test]
    fn a_rendered_request_keeps_everything_it_sends_across_the_journal() {
        let mut message: Message = serde_json::from_value(native()).unwrap();
        message.request = Some(Box::new(BuyerRequest {
            campaign_id: "c1".into(),
            method: Method::Put,
            headers: vec![("Content-Type".into(), "application/xml".into()), ("X-Key".into(), "k".into())],
            sign: false,
            token: Some(TokenFetch {
                url: "http://127.0.0.1:1/token".into(),
                content_type: "application/x-www-form-urlencoded".into(),
                form_body: "client_id=a&client_secret=b".into(),
                token_path: "access_token".into(),
                expires_in_path: None,
                ttl_s: Some(60),
            }),
            unshown_headers: vec!["X-Key".into()],
        }));
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), message);
        let mut value = serde_json::to_value(&message).unwrap();
        value["request"].as_object_mut().unwrap().remove("unshown_headers");
        value["request"].as_object_mut().unwrap().remove("token");
        let lean: Message = serde_json::from_value(value).expect("optional parts may be absent");
        let lean = lean.request.unwrap();
        assert_eq!((lean.token, lean.unshown_headers.len()), (None, 0));
    }
}
