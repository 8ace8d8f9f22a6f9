//! The billing worker's query parameters (`leadrouter-billing`'s `api`): percent-decoding
//! (`decode`, `query_pairs`), the list cursor and limit (`cursor`, `limit`), dates
//! (`date` for `from`/`to`/`as_of`, `engine::reports::parse_date` for reports), and the
//! names of document kinds, report groupings and bases.
//!
//! Laws: never panics; decoded text, percent-encoded again, decodes to itself, and so does
//! the whole query; an accepted cursor is not negative and an accepted limit is 1 to 500,
//! each printed back reading the same; the two date readers agree, and an accepted date is
//! in 1970..=9999 and prints back to itself; an accepted name prints back to itself. Pure:
//! a refusal leaves nothing behind.

#![no_main]

use std::collections::HashMap;

use chrono::Datelike;
use leadrouter_billing::api::{cursor, date, decode, limit, query_pairs};
use leadrouter_billing::domain::document::DocumentKind;
use leadrouter_billing::domain::report::{Basis, GroupBy};
use leadrouter_billing::engine::reports::parse_date;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode(text);
    assert_eq!(decode(&encode(&decoded)), decoded);

    let query = query_pairs(text);
    let written: Vec<String> =
        query.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect();
    assert_eq!(query_pairs(&written.join("&")), query, "the query written back reads the same");

    if let Ok(after) = cursor(&query) {
        assert!(after >= 0);
        assert_eq!(cursor(&one("after", &after.to_string())).ok(), Some(after));
    }
    if let Ok(limit) = limit(&query) {
        assert!((1..=500).contains(&limit));
        assert_eq!(limit_of(&limit.to_string()), Some(limit));
    }
    for field in ["from", "to", "as_of"] {
        let Some(text) = query.get(field) else {
            continue;
        };
        let api = date(field, text).ok();
        let report = parse_date("date", text).ok();
        assert_eq!(api, report, "{text:?}");
        if let Some(day) = api {
            assert!((1970..=9999).contains(&day.year()));
            assert_eq!(date(field, &day.to_string()).ok(), Some(day));
        }
    }
    if let Some(kind) = query.get("kind").and_then(|kind| DocumentKind::parse(kind)) {
        assert_eq!(DocumentKind::parse(kind.as_str()), Some(kind));
        assert_eq!(Some(kind.as_str()), query.get("kind").map(String::as_str));
    }
    if let Some(group) = query.get("group_by").and_then(|group| GroupBy::parse(group)) {
        assert_eq!(Some(group.as_str()), query.get("group_by").map(String::as_str));
    }
    if let Some(basis) = query.get("basis").and_then(|basis| Basis::parse(basis)) {
        assert!(["accrual", "booked"].contains(&query["basis"].as_str()), "{basis:?}");
    }
});

fn one(name: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(name.to_string(), value.to_string())])
}

fn limit_of(text: &str) -> Option<usize> {
    limit(&one("limit", text)).ok()
}

/// Every byte as `%XX`: the strictest encoding, which any decoder must read.
fn encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}
