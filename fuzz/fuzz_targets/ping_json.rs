//! Ping JSON: what `POST /v1/ping` reads (`api::http::parse_json::<PingInput>`), then
//! `domain::lead::validate_ping`.
//!
//! Laws: never panics; a refused ping gets between 1 and 100 field errors; an accepted
//! ping carries no person (only vertical, zip, country, state and custom fields, none
//! holding an email address) and is a fixed point: written out as JSON it reads and
//! validates back to itself. Pure: a refusal leaves nothing behind.

#![no_main]

use leadrouter::api::http::parse_json;
use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::lead::{validate_ping, PingInput};
use leadrouter_fuzz::vertical_for;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(
    // The postal table loads once, before fuzzing, so that its coverage does not crowd the
    // first inputs'.
    init: {
        PostalTable::bundled();
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let Ok(input) = parse_json::<PingInput>(data) else {
        return;
    };
    let vertical = vertical_for(input.vertical.as_deref());
    let table = PostalTable::bundled();
    let ping = match validate_ping(input, vertical, table) {
        Ok(ping) => ping,
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= 100, "{} errors", errors.len());
            return;
        }
    };
    let view = serde_json::to_value(&ping).expect("a ping serializes");
    let object = view.as_object().expect("an object");
    assert!(object.keys().all(|k| ["vertical", "zip", "country", "state", "fields"].contains(&k.as_str())));
    for (key, value) in ping.fields() {
        assert!(!holds_email(value), "fields.{key} holds an email address");
    }

    let json = serde_json::to_vec(&ping).expect("a ping serializes");
    let again: PingInput = parse_json(&json).expect("a valid ping, written out, parses");
    let again = validate_ping(again, vertical, table)
        .unwrap_or_else(|errors| panic!("a valid ping, written out, is refused: {errors:?}"));
    assert_eq!(again, ping, "normalizing is a fixed point");
}

fn holds_email(value: &Value) -> bool {
    match value {
        Value::String(text) => text.split_once('@').is_some_and(|(_, after)| after.contains('.')),
        Value::Array(items) => items.iter().any(holds_email),
        _ => false,
    }
}
