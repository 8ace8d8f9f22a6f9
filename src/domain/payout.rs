//! What the supplier earns for a sold lead.
//!
//! Owns one rule: a revshare payout is `percent / 100 × price`, rounded to cents half away
//! from zero by `Money::from_decimal` (the one place rounding happens); a fixed payout is
//! its amount, but never more than the price (a fixed payout above a bid or a reprice would
//! be a negative margin nobody chose). Pure decimal arithmetic, no float.

use rust_decimal::Decimal;

use super::model::Payout;
use super::money::Money;

/// Revshare: percent of the price, rounded to cents; fixed: the amount, at most the price.
///
/// Validated inputs cannot overflow (|price| ≤ `MONEY_ABS_MAX`, percent in 0..=100); should
/// an unvalidated one ever do so, the payout is zero rather than a panic: paying nothing is
/// the mistake an operator can correct afterwards.
pub fn supplier_payout(payout: &Payout, price: Money) -> Money {
    match payout {
        Payout::Revshare { percent } => price
            .amount()
            .checked_mul(*percent)
            .and_then(|share| share.checked_div(Decimal::ONE_HUNDRED))
            .map_or(Money::ZERO, Money::from_decimal),
        Payout::Fixed { amount } => (*amount).min(price.max(Money::ZERO)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn revshare(percent: Decimal) -> Payout {
        Payout::Revshare { percent }
    }

    fn money(text: &str) -> Money {
        Money::parse(text).expect("test amount")
    }

    #[test]
    fn revshare_rounds_to_cents() {
        assert_eq!(supplier_payout(&revshare(dec!(33.33)), money("10.00")), money("3.33"));
        assert_eq!(supplier_payout(&revshare(dec!(60)), money("38.50")), money("23.10"));
        assert_eq!(supplier_payout(&revshare(dec!(100)), money("38.50")), money("38.50"));
        assert_eq!(supplier_payout(&revshare(dec!(0)), money("38.50")), Money::ZERO);
    }

    #[test]
    fn revshare_rounds_half_away_from_zero() {
        assert_eq!(supplier_payout(&revshare(dec!(50)), money("0.01")), money("0.01"));
        // 12.5 % of 0.20 = 0.025 → 0.03
        assert_eq!(supplier_payout(&revshare(dec!(12.5)), money("0.20")), money("0.03"));
        // 33.33 % of 0.15 = 0.049995 → 0.05
        assert_eq!(supplier_payout(&revshare(dec!(33.33)), money("0.15")), money("0.05"));
    }

    #[test]
    fn fixed_is_its_amount_up_to_the_price() {
        let fixed = Payout::Fixed { amount: money("12.00") };
        assert_eq!(supplier_payout(&fixed, money("38.50")), money("12.00"));
        // A 50.00 payout on a 10.00 lead was once paid in full: a negative margin.
        assert_eq!(supplier_payout(&Payout::Fixed { amount: money("50.00") }, money("10.00")), money("10.00"));
        assert_eq!(supplier_payout(&fixed, Money::ZERO), Money::ZERO);
    }

    #[test]
    fn absurd_percent_does_not_panic() {
        let payout = revshare(Decimal::MAX);
        assert_eq!(supplier_payout(&payout, money("1000000000")), Money::ZERO);
    }

    proptest! {
        #[test]
        fn revshare_never_exceeds_price_and_is_within_half_a_cent(
            cents in 0i64..100_000_000,
            basis_points in 0u32..=10_000,
        ) {
            let price = Money::cents(cents);
            let percent = Decimal::new(i64::from(basis_points), 2);
            let paid = supplier_payout(&revshare(percent), price);
            prop_assert!(paid <= price);
            prop_assert!(!paid.is_negative());
            let exact = price.amount() * percent / Decimal::ONE_HUNDRED;
            prop_assert!((paid.amount() - exact).abs() <= dec!(0.005));
        }

        #[test]
        fn no_payout_exceeds_its_price(price in 0i64..100_000_000, amount in 0i64..100_000_000) {
            let paid = supplier_payout(&Payout::Fixed { amount: Money::cents(amount) }, Money::cents(price));
            prop_assert_eq!(paid, Money::cents(amount.min(price)));
        }
    }
}
