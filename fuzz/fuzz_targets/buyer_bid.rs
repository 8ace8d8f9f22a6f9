//! A buyer's answer to a ping: `domain::native_reply::parse_bid`, the serde_json check plus the
//! hand-rolled scanner that reads a JSON number bid without passing through `f64`.
//!
//! Laws: never panics; the scanner agrees with serde_json about the body (no `bid` member
//! or `null` is no bid, a repeated `bid` is refused, a string bid is read as `Money::parse`
//! reads it, anything but a string or number is "bid not a number"); an accepted bid is
//! non-negative, within the input range, and reads back the same from `{"bid":"<it>"}` and
//! `{"bid":<it>}`. Pure: a refusal leaves nothing behind.

#![no_main]

use leadrouter::domain::native_reply::parse_bid;
use leadrouter::domain::money::{Money, MoneyError};
use leadrouter_fuzz::{members, top_level_members};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

/// The prefix of serde_json's private map keys.
const PRIVATE_MARKER: &[u8] = b"$serde_json::private::";

fuzz_target!(|data: &[u8]| {
    let verdict = parse_bid(data);

    if let Ok(Some(bid)) = verdict {
        assert!(!bid.is_negative() && bid.is_input_range(), "{bid}");
        for body in [format!(r#"{{"bid":"{bid}"}}"#), format!(r#"{{"bid":{bid}}}"#)] {
            assert_eq!(parse_bid(body.as_bytes()), Ok(Some(bid)), "{body}");
        }
    }

    if serde_json::from_slice::<IgnoredAny>(data).is_err() {
        assert_eq!(verdict, Err("invalid json"));
        return;
    }
    // serde_json reads an object whose key is one of its private markers (`raw_value`
    // builds: "$serde_json::private::RawValue") as something else than an object; the
    // answer is an object to every JSON reader, so serde_json is no oracle for it.
    if data.windows(PRIVATE_MARKER.len()).any(|w| w == PRIVATE_MARKER) {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        // Valid JSON serde_json will not hold as a value (a number out of f64 range).
        return;
    };
    if !value.is_object() {
        assert_eq!(verdict, Err("answer not an object"));
        return;
    }
    let Some(top) = top_level_members(data) else {
        return;
    };
    match members(&top, "bid")[..] {
        [] | [Value::Null] => assert_eq!(verdict, Ok(None)),
        [Value::String(text)] => assert_eq!(verdict, bid_from_text(text.trim()), "{text:?}"),
        [Value::Number(number)] => match verdict {
            Ok(Some(bid)) => {
                let close = number.as_f64().map(|f| (f - bid.as_f64_for_metrics()).abs() <= 1e-6 * f.abs().max(1.0));
                assert_eq!(close, Some(true), "{number} read as {bid}");
            }
            Ok(None) => panic!("the number {number} read as no bid"),
            Err(reason) => assert!(
                matches!(
                    reason,
                    "negative bid" | "bid out of range" | "bid has an exponent" | "bid has more than 2 decimals"
                ),
                "{number}: {reason}"
            ),
        },
        [_] => assert_eq!(verdict, Err("bid not a number")),
        _ => assert_eq!(verdict, Err("duplicate key")),
    }
});

/// What the contract says a string bid is: `Money::parse`'s grammar and limits, not negative.
fn bid_from_text(text: &str) -> Result<Option<Money>, &'static str> {
    match Money::parse(text) {
        Ok(money) if money.is_negative() => Err("negative bid"),
        Ok(money) => Ok(Some(money)),
        Err(MoneyError::NotDecimal) => Err("bid not a decimal"),
        Err(MoneyError::TooPrecise) => Err("bid has more than 2 decimals"),
        Err(MoneyError::OutOfRange) => Err("bid out of range"),
    }
}
