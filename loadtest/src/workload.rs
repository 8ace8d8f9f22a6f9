//! What a run sends: the request bodies of each mix (DESIGN §4) and how an answer is read
//! back into a business outcome.
//!
//! Every lead is unique (email `lt{n}@example.com`, a Munich number built from the same
//! counter), so leadrouter's duplicate check (same person, same buyer) never turns a load
//! test into a test of the dedup path. With several postal codes (`--zip a,b,c`) the
//! arrivals take them in turn, so a market whose campaigns each take one postal code sees
//! its leads spread evenly over those campaigns.

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
    /// `POST /ping` to every target at once (mock buyers, with the body leadrouter sends
    /// them), the arrival done when all have answered: the fan-out floor.
    #[value(name = "fanout")]
    #[serde(rename = "fanout")]
    Fanout,
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Direct => "direct",
            Mix::Ping => "ping",
            Mix::PingPost => "ping+post",
            Mix::Fanout => "fanout",
        }
    }
}

pub const PATH_LEADS: &str = "/v1/leads";
pub const PATH_PING: &str = "/v1/ping";
pub const PATH_POST: &str = "/v1/post";
/// A buyer's ping endpoint as the mock buyer serves it (leadrouter calls `ping_url`).
pub const PATH_BUYER_PING: &str = "/ping";

/// The `tmax_ms` a fan-out ping tells the buyers: ping-fanout.sh's vertical allows 1000 ms,
/// and leadrouter sends what is left of it (a few ms less), the same number of digits.
pub const BUYER_TMAX_MS: u64 = 1_000;

/// The most postal codes one run rotates over.
pub const ZIPS_MAX: usize = 1_000;

/// Where the generated leads are: one vertical, one or more postal codes (taken in turn),
/// one country.
#[derive(Debug, Clone)]
pub struct LeadShape {
    pub vertical: String,
    /// At least one; `zip` indexes below wrap around.
    pub zips: Vec<String>,
    pub country: String,
}

impl LeadShape {
    /// The shape of `--vertical`, `--zip` (one postal code, or several separated by
    /// commas) and `--country`.
    pub fn new(vertical: &str, zips: &str, country: &str) -> anyhow::Result<LeadShape> {
        let zips: Vec<String> = zips.split(',').map(|zip| zip.trim().to_string()).collect();
        if zips.iter().any(String::is_empty) {
            anyhow::bail!("--zip: a postal code, or several separated by commas, none empty");
        }
        if zips.len() > ZIPS_MAX {
            anyhow::bail!("--zip: at most {ZIPS_MAX} postal codes");
        }
        Ok(LeadShape { vertical: vertical.to_string(), zips, country: country.to_string() })
    }

    /// The postal code of turn `zip` (any number: it wraps around the list).
    fn zip(&self, zip: u64) -> &str {
        // The remainder is below the list's length, a usize, so it converts back exactly.
        let index = usize::try_from(zip % self.zips.len() as u64).unwrap_or(0);
        &self.zips[index]
    }

    /// Lead number `n` in postal code turn `zip` as a JSON value (the direct post body, or
    /// the `lead` of a post).
    pub fn lead(&self, n: u64, zip: u64) -> serde_json::Value {
        json!({
            "vertical": self.vertical,
            "first_name": "Load",
            "last_name": "Test",
            "email": email(n),
            "phone": phone(n),
            "zip": self.zip(zip),
            "country": self.country,
            "fields": {"roof_type": "tile"},
        })
    }

    pub fn lead_body(&self, n: u64, zip: u64) -> Bytes {
        Bytes::from(self.lead(n, zip).to_string())
    }

    /// The anonymous pings, one per postal code: the same for every arrival in that postal
    /// code, so built once (index them like the list, `zip % zips.len()`).
    pub fn ping_bodies(&self) -> Vec<Bytes> {
        self.zips
            .iter()
            .map(|zip| {
                let body = json!({
                    "vertical": self.vertical,
                    "zip": zip,
                    "country": self.country,
                    "fields": {"roof_type": "tile"},
                });
                Bytes::from(body.to_string())
            })
            .collect()
    }

    /// The ping leadrouter sends a buyer (DESIGN §5) for ping `ping_id` in postal code turn
    /// `zip`: `{"ping_id","vertical","zip","country","state","fields","tmax_ms"}`.
    pub fn buyer_ping_body(&self, ping_id: &str, zip: u64) -> Bytes {
        let body = json!({
            "ping_id": ping_id,
            "vertical": self.vertical,
            "zip": self.zip(zip),
            "country": self.country,
            "state": null,
            "fields": {"roof_type": "tile"},
            "tmax_ms": BUYER_TMAX_MS,
        });
        Bytes::from(body.to_string())
    }

    /// The post after a ping in postal code turn `zip`: the lead is in the same postal code.
    pub fn post_body(&self, ping_id: &str, n: u64, zip: u64) -> Bytes {
        Bytes::from(json!({"ping_id": ping_id, "lead": self.lead(n, zip)}).to_string())
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

/// Reads a buyer's answer to a ping (DESIGN §5): `{"bid":"38.00"}` is a bid, `{"bid":null}`
/// or an empty 204 no bid; anything else (an error body) `Outcome::None`.
pub fn read_bid(status: u16, body: &[u8]) -> Outcome {
    if status == 204 && body.is_empty() {
        return Outcome::NoBid;
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Outcome::None;
    };
    match answer.get("bid") {
        Some(serde_json::Value::String(_)) => Outcome::Bid,
        Some(serde_json::Value::Null) => Outcome::NoBid,
        _ => Outcome::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> LeadShape {
        LeadShape::new("solar", "80331", "DE").expect("one postal code")
    }

    #[test]
    fn leads_are_unique_and_complete() {
        let a = shape().lead(0, 0);
        let b = shape().lead(1, 1);
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
        let pings = shape().ping_bodies();
        assert_eq!(pings.len(), 1);
        let ping: serde_json::Value = serde_json::from_slice(&pings[0]).expect("JSON");
        for pii in ["first_name", "last_name", "email", "phone", "street"] {
            assert!(ping.get(pii).is_none(), "{pii} in a ping");
        }
        let post: serde_json::Value = serde_json::from_slice(&shape().post_body("png_1", 3, 7)).expect("JSON");
        assert_eq!(post["ping_id"], "png_1");
        assert_eq!(post["lead"]["email"], "lt3@example.com");
        assert_eq!(post["lead"]["zip"], "80331", "one postal code: every turn has it");
    }

    #[test]
    fn several_postal_codes_take_turns() {
        let shape = LeadShape::new("solar", "80331, 80333,80335", "DE").expect("three postal codes");
        assert_eq!(shape.zips, ["80331", "80333", "80335"]);
        let zips: Vec<_> = (0..7).map(|turn| shape.lead(100 + turn, turn)["zip"].clone()).collect();
        assert_eq!(zips, ["80331", "80333", "80335", "80331", "80333", "80335", "80331"]);
        let pings: Vec<serde_json::Value> =
            shape.ping_bodies().iter().map(|b| serde_json::from_slice(b).expect("JSON")).collect();
        assert_eq!(pings.iter().map(|p| p["zip"].as_str().expect("zip")).collect::<Vec<_>>(), shape.zips);
        let post: serde_json::Value = serde_json::from_slice(&shape.post_body("png_2", 5, 4)).expect("JSON");
        assert_eq!(post["lead"]["zip"], "80333", "the post is in its ping's postal code");
        assert!(LeadShape::new("solar", "80331,", "DE").is_err(), "an empty postal code");
        assert!(LeadShape::new("solar", "", "DE").is_err());
        let too_many = vec!["80331"; ZIPS_MAX + 1].join(",");
        assert!(LeadShape::new("solar", &too_many, "DE").is_err());
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

    #[test]
    fn buyer_pings_carry_the_router_fields_and_bids_are_read() {
        let ping: serde_json::Value = serde_json::from_slice(&shape().buyer_ping_body("png_lt4", 0)).expect("JSON");
        let mut fields: Vec<&str> = ping.as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["country", "fields", "ping_id", "state", "tmax_ms", "vertical", "zip"]);
        assert_eq!((ping["ping_id"].as_str(), ping["tmax_ms"].as_u64()), (Some("png_lt4"), Some(1_000)));
        assert_eq!(read_bid(200, br#"{"bid":"38.07"}"#), Outcome::Bid);
        assert_eq!(read_bid(200, br#"{"bid":null}"#), Outcome::NoBid);
        assert_eq!(read_bid(204, b""), Outcome::NoBid);
        assert_eq!(read_bid(500, br#"{"error":"mock failure"}"#), Outcome::None, "no bid member");
        assert_eq!(read_bid(404, b"not json"), Outcome::None);
    }
}
