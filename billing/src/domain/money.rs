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
    let text = text.trim();
    if text.is_empty() || text.contains(['e', 'E']) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn amounts_keep_two_places_and_their_precision() {
        assert_eq!(format(dec!(38.5)), "38.50");
        assert_eq!(format(dec!(-12)), "-12.00");
        assert_eq!(format(dec!(0)), "0.00");
        assert_eq!(format(dec!(1.005)), "1.005");
        assert_eq!(parse(" 38.50 "), Some(dec!(38.50)));
        assert_eq!(parse("1e3"), None);
        assert_eq!(parse("abc"), None);
    }
}
