//! Money on documents: exact decimals, written with two places ("38.50").

use rust_decimal::Decimal;

/// Formats an amount with at least two decimal places, never in exponent form.
pub fn format(amount: Decimal) -> String {
    let amount = amount.normalize();
    if amount.scale() < 2 {
        format!("{amount:.2}")
    } else {
        amount.to_string()
    }
}

/// Parses a decimal string from the ledger or a client ("38.50"): the router's one grammar
/// (`leadrouter_types::money::parse_decimal`), at any precision.
pub fn parse(text: &str) -> Option<Decimal> {
    leadrouter_types::money::parse_decimal(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn only_plain_decimals_parse() {
        for bad in ["1_0.0_0", " 10.00", "10.00 ", "+10", "10.", ".5", "1e3", "", "-"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse("-38.50"), Some(dec!(-38.50)));
    }

    #[test]
    fn an_amount_is_the_number_written_never_a_rounded_one() {
        // Found by fuzzing (fuzz/fuzz_targets/money.rs): `Decimal::from_str` read this as 0.
        assert_eq!(parse(&format!("0.{}1", "0".repeat(30))), None);
        assert_eq!(parse("70000000000000000000000000000.55"), None);
        assert_eq!(parse(&format!("-1.{}", "0".repeat(40))), Some(dec!(-1)));
        assert_eq!(parse("79228162514264337593543950335"), Some(Decimal::MAX));
    }

    #[test]
    fn amounts_keep_two_places_and_their_precision() {
        assert_eq!(format(dec!(38.5)), "38.50");
        assert_eq!(format(dec!(-12)), "-12.00");
        assert_eq!(format(dec!(0)), "0.00");
        assert_eq!(format(dec!(1.005)), "1.005");
        assert_eq!(parse("38.50"), Some(dec!(38.50)));
        assert_eq!(parse("1e3"), None);
        assert_eq!(parse("abc"), None);
    }
}
