//! What a run sends: the request bodies of each mix (DESIGN §4) and how an answer is read
//! back into a business outcome.
//!
//! Every lead is unique (email `lt{n}@example.com`, a Munich number built from the same
//! counter), so leadrouter's duplicate check (same person, same buyer) never turns a load
//! test into a test of the dedup path.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

/// German subscriber numbers: 7 digits, `1_000_000 + n mod PHONE_SPAN`, so they never start
/// with 0 and stay unique for the first ~9 million leads of a run.
const PHONE_FIRST: u64 = 1_000_000;
const PHONE_SPAN: u64 = 8_999_999;

/// The requests one arrival makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Mix {
    /// `POST /v1/leads`: decide and deliver in one call.
    #[value(name = "direct")]
    #[serde(rename = "direct")]
    Direct,
    /// `POST /v1/ping` only.
    #[value(name = "ping")]
    #[serde(rename = "ping")]
    Ping,
    /// `POST /v1/ping`, then `POST /v1/post` when the ping bid.
    #[value(name = "ping+post")]
    #[serde(rename = "ping+post")]
    PingPost,
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Direct => "direct",
            Mix::Ping => "ping",
            Mix::PingPost => "ping+post",
        }
    }
}

pub const PATH_LEADS: &str = "/v1/leads";
pub const PATH_PING: &str = "/v1/ping";
pub const PATH_POST: &str = "/v1/post";

/// Where the generated leads are: one vertical, one postal code, one country.
#[derive(Debug, Clone)]
pub struct LeadShape {
    pub vertical: String,
    pub zip: String,
    pub country: String,
}

impl LeadShape {
    /// Lead number `n` as a JSON value (the direct post body, or the `lead` of a post).
    pub fn lead(&self, n: u64) -> serde_json::Value {
        json!({
            "vertical": self.vertical,
            "first_name": "Load",
            "last_name": "Test",
            "email": email(n),
            "phone": phone(n),
            "zip": self.zip,
            "country": self.country,
            "fields": {"roof_type": "tile"},
        })
    }

    pub fn lead_body(&self, n: u64) -> Bytes {
        Bytes::from(self.lead(n).to_string())
    }

    /// The anonymous ping: the same for every arrival, so built once.
    pub fn ping_body(&self) -> Bytes {
        let body = json!({
            "vertical": self.vertical,
            "zip": self.zip,
            "country": self.country,
            "fields": {"roof_type": "tile"},
        });
        Bytes::from(body.to_string())
    }

    pub fn post_body(&self, ping_id: &str, n: u64) -> Bytes {
        Bytes::from(json!({"ping_id": ping_id, "lead": self.lead(n)}).to_string())
    }
}

pub fn email(n: u64) -> String {
    format!("lt{n}@example.com")
}

/// `089 ` (Munich) and seven digits.
pub fn phone(n: u64) -> String {
    format!("089 {}", PHONE_FIRST + n % PHONE_SPAN)
}

/// The business outcome an answer's `status` field reports (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sold,
    Rejected,
    Bid,
    NoBid,
    /// A `status` this tool does not know (the echo server's `"ok"`).
    Other,
    /// No JSON `status` at all (errors, unreadable bodies).
    None,
}

#[derive(Deserialize)]
struct AnswerFields {
    status: Option<String>,
    ping_id: Option<String>,
}

/// Reads `status` (and `ping_id` for pings) from an answer body. Never fails: a body that
/// is not the expected JSON is `Outcome::None`.
pub fn read_answer(body: &[u8]) -> (Outcome, Option<String>) {
    let Ok(fields) = serde_json::from_slice::<AnswerFields>(body) else {
        return (Outcome::None, None);
    };
    let outcome = match fields.status.as_deref() {
        Some("sold") => Outcome::Sold,
        Some("rejected") => Outcome::Rejected,
        Some("bid") => Outcome::Bid,
        Some("no_bid") => Outcome::NoBid,
        Some(_) => Outcome::Other,
        None => Outcome::None,
    };
    (outcome, fields.ping_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> LeadShape {
        LeadShape { vertical: "solar".into(), zip: "80331".into(), country: "DE".into() }
    }

    #[test]
    fn leads_are_unique_and_complete() {
        let a = shape().lead(0);
        let b = shape().lead(1);
        assert_ne!(a["email"], b["email"]);
        assert_ne!(a["phone"], b["phone"]);
        for field in ["vertical", "first_name", "last_name", "email", "phone", "zip", "country"] {
            assert!(a[field].is_string(), "{field}");
        }
        assert_eq!(a["fields"]["roof_type"], "tile");
    }

    #[test]
    fn phones_are_munich_numbers_with_seven_digits() {
        assert_eq!(phone(0), "089 1000000");
        assert_eq!(phone(8_999_998), "089 9999998");
        assert_eq!(phone(8_999_999), "089 1000000", "wraps after the span");
        assert_eq!(email(17), "lt17@example.com");
    }

    #[test]
    fn pings_carry_no_personal_data() {
        let ping: serde_json::Value = serde_json::from_slice(&shape().ping_body()).expect("JSON");
        for pii in ["first_name", "last_name", "email", "phone", "street"] {
            assert!(ping.get(pii).is_none(), "{pii} in a ping");
        }
        let post: serde_json::Value = serde_json::from_slice(&shape().post_body("png_1", 3)).expect("JSON");
        assert_eq!(post["ping_id"], "png_1");
        assert_eq!(post["lead"]["email"], "lt3@example.com");
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(read_answer(br#"{"lead_id":"led_1","status":"sold","payout":"1.00"}"#).0, Outcome::Sold);
        assert_eq!(read_answer(br#"{"ping_id":"png_9","status":"bid"}"#), (Outcome::Bid, Some("png_9".to_string())));
        assert_eq!(read_answer(br#"{"status":"no_bid"}"#).0, Outcome::NoBid);
        assert_eq!(read_answer(br#"{"status":"rejected"}"#).0, Outcome::Rejected);
        assert_eq!(read_answer(br#"{"status":"ok"}"#).0, Outcome::Other);
        assert_eq!(read_answer(br#"{"error":{"code":"x"}}"#).0, Outcome::None);
        assert_eq!(read_answer(b"not json").0, Outcome::None);
        assert_eq!(read_answer(br#"{"status":7}"#).0, Outcome::None);
    }
}
