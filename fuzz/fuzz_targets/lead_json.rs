//! Lead JSON: what `POST /v1/leads` (a `LeadInput`) and `POST /v1/post` (a `PostInput`
//! holding one) read with `api::http::parse_json`, then `domain::lead::validate_lead`.
//!
//! Laws: never panics; a refused lead gets between 1 and 100 field errors; an accepted
//! lead is normalized (E.164 phone, a valid email) and its normalization is a fixed point:
//! the lead written out as JSON reads and validates back to itself. Its anonymized view
//! carries no person and is a valid ping for the same lead, short only of required custom
//! fields it left out for looking like contact data. Parsing and validating are pure: a
//! refusal leaves nothing behind.

#![no_main]

use leadrouter::api::http::parse_json;
use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::lead::{email_syntax_ok, validate_lead, validate_ping, LeadInput, PingInput};
use leadrouter::engine::PostInput;
use leadrouter_fuzz::vertical_for;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    // The postal table and phone number metadata load once, before fuzzing, so that their
    // coverage does not crowd the first inputs'.
    init: {
        PostalTable::bundled();
        leadrouter::domain::phone::warm_up();
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    if let Ok(input) = parse_json::<LeadInput>(data) {
        check(input);
    }
    if let Ok(PostInput { lead: Some(input), .. }) = parse_json::<PostInput>(data) {
        check(input);
    }
}

fn check(input: LeadInput) {
    let vertical = vertical_for(input.vertical.as_deref());
    let table = PostalTable::bundled();
    let lead = match validate_lead(input, vertical, table) {
        Ok(lead) => lead,
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= 100, "{} errors", errors.len());
            return;
        }
    };
    let phone = lead.phone();
    assert!(phone.starts_with('+') && phone[1..].bytes().all(|b| b.is_ascii_digit()), "{phone}");
    assert!(email_syntax_ok(lead.email()), "{}", lead.email());

    let json = serde_json::to_vec(&lead).expect("a lead serializes");
    let again: LeadInput = parse_json(&json).expect("a valid lead, written out, parses");
    let again = validate_lead(again, vertical, table)
        .unwrap_or_else(|errors| panic!("a valid lead, written out, is refused: {errors:?}"));
    assert_eq!(again, lead, "normalizing is a fixed point");

    let ping = lead.anonymized();
    assert!(lead.matches_ping(&ping).is_ok());
    let view = serde_json::to_value(&ping).expect("a ping serializes");
    let keys: Vec<&str> = view.as_object().expect("an object").keys().map(String::as_str).collect();
    assert!(keys.iter().all(|k| ["vertical", "zip", "country", "state", "fields"].contains(k)), "{keys:?}");
    let as_ping: PingInput = serde_json::from_value(view).expect("the anonymized view reads as a ping");
    match validate_ping(as_ping, vertical, table) {
        Ok(as_ping) => assert_eq!(as_ping, ping),
        // A required custom field holding a value shaped like an email address or a phone
        // number is dropped from the view (so bidders are pinged without it); nothing else
        // may be wrong with it.
        Err(errors) => {
            for error in &errors {
                let dropped = error.field.strip_prefix("fields.").is_some_and(|name| {
                    lead.fields().contains_key(name) && !ping.fields().contains_key(name) && error.message == "required"
                });
                assert!(dropped, "a valid lead's anonymized view is refused as a ping: {errors:?}");
            }
        }
    }
}
