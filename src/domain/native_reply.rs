//! Parsing what a buyer answers to a ping or a post (DESIGN §5). Pure: bytes in, verdict out.
//!
//! Owns the contract's reading of buyer bodies: `{"bid":"38.00"}` / `{"bid":38.5}` is a bid,
//! `{"bid":null}` / `{}` is no bid, `{"accepted":true}` sells. Everything else is an error
//! with a short, fixed reason: reasons never echo buyer data (bodies may carry PII).
//!
//! Rationale for the hand-rolled member scan: a JSON number bid (`38.5`) must reach
//! `Money` without passing through `f64`, and serde_json (built here without
//! `arbitrary_precision`/`raw_value`) only hands numbers out as floats. So the body is
//! first validated in full by serde_json, then a small scanner finds the raw bytes of one
//! top-level member and the decimal text is parsed exactly. The scanner is total: on any
//! surprise it returns an error, never panics, and it loops at most once per byte.

use serde::de::IgnoredAny;

use crate::domain::money::{Money, MoneyError};

/// Reasons longer than this are cut: enough for "daily cap reached for state NY", short
/// enough for a trace line and a metric label's neighbour.
pub const REASON_CHARS_MAX: usize = 200;

/// A ping answer is either a bid or none.
pub type BidVerdict = Result<Option<Money>, &'static str>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostVerdict {
    Accepted,
    /// The buyer said no, with its (sanitized) reason.
    Rejected(String),
    /// The body does not follow the contract.
    Invalid,
}

/// Reads a 2xx ping answer body: `Ok(Some(bid))`, `Ok(None)` for no bid, or why not.
pub fn parse_bid(body: &[u8]) -> BidVerdict {
    if serde_json::from_slice::<IgnoredAny>(body).is_err() {
        return Err("invalid json");
    }
    let raw = match top_level_member(body, "bid")? {
        None => return Ok(None),
        Some(raw) => raw,
    };
    match raw.first() {
        Some(b'n') if raw == b"null" => Ok(None),
        Some(b'"') => {
            let text: String = serde_json::from_slice(raw).map_err(|_| "invalid json")?;
            bid_from_text(text.trim())
        }
        Some(b'-' | b'0'..=b'9') => {
            if raw.iter().any(|b| matches!(b, b'e' | b'E')) {
                return Err("bid has an exponent");
            }
            // Valid JSON number bytes are ASCII.
            let text = std::str::from_utf8(raw).map_err(|_| "invalid json")?;
            bid_from_text(text)
        }
        _ => Err("bid not a number"),
    }
}

/// Reads a 2xx post answer body.
pub fn parse_post(body: &[u8]) -> PostVerdict {
    if serde_json::from_slice::<IgnoredAny>(body).is_err() {
        return PostVerdict::Invalid;
    }
    let accepted = match top_level_member(body, "accepted") {
        Ok(Some(raw)) => raw,
        Ok(None) | Err(_) => return PostVerdict::Invalid,
    };
    match accepted {
        b"true" => PostVerdict::Accepted,
        b"false" => {
            let reason = match top_level_member(body, "reason") {
                Ok(Some(raw)) if raw.first() == Some(&b'"') => {
                    serde_json::from_slice::<String>(raw).unwrap_or_default()
                }
                _ => String::new(),
            };
            let reason = sanitize_reason(&reason);
            if reason.is_empty() {
                PostVerdict::Rejected("no reason given".to_string())
            } else {
                PostVerdict::Rejected(reason)
            }
        }
        _ => PostVerdict::Invalid,
    }
}

/// Control characters stripped (no forged log lines), at most `REASON_CHARS_MAX` chars.
pub fn sanitize_reason(reason: &str) -> String {
    reason.chars().filter(|c| !c.is_control()).take(REASON_CHARS_MAX).collect::<String>().trim().to_string()
}

/// Strict decimal: `-?[0-9]+(\.[0-9]+)?`, then `Money`'s range and precision rules. Stricter
/// than `Money::parse` (which would take "+5" or "1_000") because a bid is a contract field.
fn bid_from_text(text: &str) -> BidVerdict {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.into_iter().all(all_digits) {
        return Err("bid not a decimal");
    }
    let money = Money::parse(text).map_err(|error| match error {
        MoneyError::NotDecimal => "bid not a decimal",
        MoneyError::TooPrecise => "bid has more than 2 decimals",
        MoneyError::OutOfRange => "bid out of range",
    })?;
    if money.is_negative() {
        return Err("negative bid");
    }
    Ok(Some(money))
}

/// The raw bytes of the value of top-level member `name` in `json`, which must already be
/// valid JSON. A duplicated `name` is an error: which one a buyer meant is a guess.
fn top_level_member<'a>(json: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, &'static str> {
    let mut pos = skip_ws(json, 0);
    if json.get(pos) != Some(&b'{') {
        return Err("answer not an object");
    }
    pos += 1;
    let mut found = None;
    loop {
        pos = skip_ws(json, pos);
        match json.get(pos) {
            Some(b'}') => return Ok(found),
            Some(b',') => {
                pos += 1;
                continue;
            }
            Some(b'"') => {}
            _ => return Err("invalid json"),
        }
        let key_end = string_end(json, pos).ok_or("invalid json")?;
        let is_name = key_equals(&json[pos..key_end], name)?;
        pos = skip_ws(json, key_end);
        if json.get(pos) != Some(&b':') {
            return Err("invalid json");
        }
        pos = skip_ws(json, pos + 1);
        let value_end = value_end(json, pos).ok_or("invalid json")?;
        if is_name {
            if found.is_some() {
                return Err("duplicate key");
            }
            found = Some(&json[pos..value_end]);
        }
        pos = value_end;
    }
}

/// Compares a raw JSON string token (quotes included) with `name`, decoding escapes only
/// when there are any (`"b\u0069d"` is `"bid"`).
fn key_equals(raw: &[u8], name: &str) -> Result<bool, &'static str> {
    if !raw.contains(&b'\\') {
        return Ok(raw.len() == name.len() + 2 && &raw[1..raw.len() - 1] == name.as_bytes());
    }
    let key: String = serde_json::from_slice(raw).map_err(|_| "invalid json")?;
    Ok(key == name)
}

fn skip_ws(json: &[u8], mut pos: usize) -> usize {
    while matches!(json.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// `json[start]` is `"`: the index just past the closing quote.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut pos = start + 1;
    loop {
        match json.get(pos)? {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
}

/// The index just past the JSON value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut pos = start;
            loop {
                match json.get(pos)? {
                    b'"' => pos = string_end(json, pos)?,
                    b'{' | b'[' => {
                        depth += 1;
                        pos += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        pos += 1;
                        if depth == 0 {
                            return Some(pos);
                        }
                    }
                    _ => pos += 1,
                }
            }
        }
        _ => {
            let mut pos = start;
            while !matches!(json.get(pos), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                pos += 1;
            }
            Some(pos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bid(body: &str) -> BidVerdict {
        parse_bid(body.as_bytes())
    }

    fn money(text: &str) -> Option<Money> {
        Some(Money::parse(text).unwrap())
    }

    #[test]
    fn bids_as_strings_and_exact_numbers() {
        assert_eq!(bid(r#"{"bid":"38.00"}"#), Ok(money("38")));
        assert_eq!(bid(r#"{"bid": 38.5}"#), Ok(money("38.50")));
        assert_eq!(bid(r#"{"bid":41}"#), Ok(money("41")));
        assert_eq!(bid(r#" { "x" : [1,{"bid":2}], "bid" : 0.10 } "#), Ok(money("0.1")));
        assert_eq!(bid(r#"{"b\u0069d":"7.25"}"#), Ok(money("7.25")));
        assert_eq!(bid(r#"{"bid":"1000000000"}"#), Ok(money("1000000000")));
        // A float would have turned this into 0.30000000000000004-ish; text stays exact.
        assert_eq!(bid(r#"{"bid":0.30}"#), Ok(money("0.3")));
        assert_eq!(bid(r#"{"bid":38.50000}"#), Ok(money("38.5")));
    }

    #[test]
    fn no_bids() {
        assert_eq!(bid(r#"{"bid":null}"#), Ok(None));
        assert_eq!(bid("{}"), Ok(None));
        assert_eq!(bid(r#"{"other":"38.00","nested":{"bid":"1"}}"#), Ok(None));
    }

    #[test]
    fn refusals_with_short_reasons() {
        let cases = [
            (r#"{"bid":"-1.00"}"#, "negative bid"),
            (r#"{"bid":-1}"#, "negative bid"),
            (r#"{"bid":"1000000000.01"}"#, "bid out of range"),
            (r#"{"bid":1e3}"#, "bid has an exponent"),
            (r#"{"bid":"1e3"}"#, "bid not a decimal"),
            (r#"{"bid":38.505}"#, "bid has more than 2 decimals"),
            (r#"{"bid":38.5000000000000001}"#, "bid has more than 2 decimals"),
            (r#"{"bid":"abc"}"#, "bid not a decimal"),
            (r#"{"bid":"+5"}"#, "bid not a decimal"),
            (r#"{"bid":"1_000"}"#, "bid not a decimal"),
            (r#"{"bid":""}"#, "bid not a decimal"),
            (r#"{"bid":true}"#, "bid not a number"),
            (r#"{"bid":{"amount":"1"}}"#, "bid not a number"),
            (r#"{"bid":"1","bid":"2"}"#, "duplicate key"),
            (r#"["bid",1]"#, "answer not an object"),
            (r#""38.00""#, "answer not an object"),
            ("38", "answer not an object"),
            (r#"{"bid":"38.00""#, "invalid json"),
            ("", "invalid json"),
            ("<html>", "invalid json"),
        ];
        for (body, reason) in cases {
            assert_eq!(bid(body), Err(reason), "{body}");
        }
    }

    #[test]
    fn post_answers() {
        let post = |body: &str| parse_post(body.as_bytes());
        assert_eq!(post(r#"{"accepted":true}"#), PostVerdict::Accepted);
        assert_eq!(
            post(r#"{"accepted":false,"reason":"dup\nlead\u0007"}"#),
            PostVerdict::Rejected("duplead".to_string())
        );
        assert_eq!(post(r#"{"accepted":false}"#), PostVerdict::Rejected("no reason given".to_string()));
        let long = format!(r#"{{"accepted":false,"reason":"{}"}}"#, "é".repeat(500));
        assert_eq!(post(&long), PostVerdict::Rejected("é".repeat(REASON_CHARS_MAX)));
        for invalid in [
            "",
            "{}",
            r#"{"accepted":"true"}"#,
            r#"{"accepted":1}"#,
            r#"{"accepted":false,"accepted":true}"#,
            "[true]",
            "garbage",
        ] {
            assert_eq!(post(invalid), PostVerdict::Invalid, "{invalid}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_bid(&body);
            let _ = parse_post(&body);
        }

        #[test]
        fn parsers_never_panic_on_json_like_input(body in r#"[{}\[\]",:\\ a-z0-9.eE+-]{0,80}"#) {
            let _ = parse_bid(body.as_bytes());
            let _ = parse_post(body.as_bytes());
            let _ = parse_bid(format!(r#"{{"bid":{body}}}"#).as_bytes());
        }

        #[test]
        fn number_bids_equal_string_bids(cents in 0i64..100_000_000_000) {
            let text = Money::cents(cents).to_string();
            let as_number = parse_bid(format!(r#"{{"bid":{text}}}"#).as_bytes());
            let as_string = parse_bid(format!(r#"{{"bid":"{text}"}}"#).as_bytes());
            prop_assert_eq!(as_number, Ok(Some(Money::cents(cents))));
            prop_assert_eq!(as_string, Ok(Some(Money::cents(cents))));
        }
    }
}
