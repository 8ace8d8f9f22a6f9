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

/// Parses a decimal string from the ledger or a client ("38.50").
pub fn parse(text: &str) -> Option<Decimal> {
    // The router's grammar: an optional minus, digits, optionally a point and digits; no
    // spaces, underscores, plus signs or exponents (`Decimal` alone takes "1_0.0_0").
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    text.parse().ok()
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
