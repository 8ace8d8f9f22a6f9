//! Money strings: `Money::parse` (amounts from outside: bids, prices, top-ups),
//! `Money::parse_stored` (amounts read back from the journal and Redis), `Money`'s JSON form,
//! and the billing worker's `money::parse` / `money::format`.
//!
//! Laws: never panics; an accepted amount is exactly the number written (no silent
//! rounding), prints with two decimals and parses back to itself; what the router accepts
//! or stores, the billing worker reads as the same number. The parsers are pure, so a
//! refusal has nothing to leave behind.

#![no_main]

use leadrouter::domain::money::{Money, MoneyError};
use leadrouter_billing::domain::money as billing_money;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Money::parse(text);
    let stored = Money::parse_stored(text);
    assert_eq!(text.parse::<Money>(), parsed, "FromStr is Money::parse");

    match parsed {
        Ok(money) => {
            assert_eq!(stored, Ok(money), "an input amount is a storable amount");
            assert!(money.is_input_range());
            assert_exactly(text, money);
            let shown = money.to_string();
            let (_, cents) = shown.split_once('.').expect("two decimals");
            assert_eq!(cents.len(), 2, "{shown:?}");
            assert_eq!(Money::parse(&shown), Ok(money), "{text:?} shows as {shown:?}");
            assert_eq!(Money::cents(money.to_cents()), money);
        }
        // Out of range is checked before precision: a stored read may still refuse it.
        Err(MoneyError::OutOfRange) => {
            if let Ok(money) = stored {
                assert!(!money.is_input_range());
            }
        }
        Err(error) => assert_eq!(stored, Err(error), "the grammar is the same for both"),
    }

    if let Ok(money) = stored {
        assert_exactly(text, money);
        let shown = money.to_string();
        assert_eq!(Money::parse_stored(&shown), Ok(money), "{text:?} shows as {shown:?}");
        let json = serde_json::to_string(&money).expect("money serializes");
        assert_eq!(serde_json::from_str::<Money>(&json).ok(), Some(money), "{json}");
        // The billing worker reads every amount the router writes, as the same number.
        assert_eq!(billing_money::parse(&shown), Some(money.amount()), "{shown:?}");
        assert_eq!(billing_money::parse(text), Some(money.amount()), "{text:?}");
    }

    // A JSON string holding the text reads exactly as `parse_stored` does.
    let quoted = serde_json::to_string(text).expect("a string serializes");
    assert_eq!(serde_json::from_str::<Money>(&quoted).ok(), stored.ok(), "{quoted}");

    if let Some(amount) = billing_money::parse(text) {
        assert_eq!(canonical(text), amount.normalize().to_string(), "billing read {text:?} as {amount}");
        let formatted = billing_money::format(amount);
        assert_eq!(billing_money::parse(&formatted), Some(amount), "{text:?} formats as {formatted:?}");
    }
});

/// The amount is the number the text writes, digit for digit.
fn assert_exactly(text: &str, money: Money) {
    assert_eq!(canonical(text), money.amount().normalize().to_string(), "{text:?} read as {money}");
}

/// `-?digits(.digits)?` without leading zeros, trailing fraction zeros or a negative zero,
/// as `Decimal::normalize` prints a number.
fn canonical(text: &str) -> String {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut out = String::new();
    if negative && (whole != "0" || !fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}
