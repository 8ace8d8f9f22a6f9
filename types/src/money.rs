//! Exact money: a `rust_decimal::Decimal` that travels as a decimal string.
//!
//! Rationale: a float never touches a price, payout or balance (DESIGN §8.1). `Money`
//! deserializes only from a JSON/TOML *string* ("38.50") or an integer, never from a float,
//! so a client cannot smuggle binary rounding in; it serializes with two decimals.
//!
//! Deserializing applies no magnitude limit: the same `Deserialize` reads the journal and
//! Redis back, and a balance grown past any input limit must read back as written.
//! Amounts that come from outside are bounded where they enter (`Money::parse` for bids,
//! `Money::is_input_range` in config validation and top-ups).
//!
//! `parse_decimal` is the one grammar of amounts on the wire, for every reader: the router
//! (through `Money`), the billing worker (ledger amounts, any precision) and the load tester.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Money has cents: amounts are rounded half away from zero to this many decimals.
pub const MONEY_SCALE: u32 = 2;

/// The largest amount we accept from outside (a bid, a price, a top-up); far above any real
/// lead price, far below where `Decimal` arithmetic could overflow when summed.
pub const MONEY_ABS_MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal amount")]
    NotDecimal,
    #[error("more than {MONEY_SCALE} decimal places")]
    TooPrecise,
    #[error("amount out of range")]
    OutOfRange,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Rounds to cents (half away from zero): the one place rounding happens.
    pub fn from_decimal(value: Decimal) -> Money {
        Money(value.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero))
    }

    /// Parses an amount from outside: at most two decimals, |amount| ≤ `MONEY_ABS_MAX`.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        Money::checked(decimal(text)?)
    }

    pub fn checked(value: Decimal) -> Result<Money, MoneyError> {
        if value.abs() > MONEY_ABS_MAX {
            return Err(MoneyError::OutOfRange);
        }
        Money::exact(value)
    }

    /// Parses a stored amount: any magnitude `Decimal` holds, at most two decimals.
    pub fn parse_stored(text: &str) -> Result<Money, MoneyError> {
        Money::exact(decimal(text)?)
    }

    fn exact(value: Decimal) -> Result<Money, MoneyError> {
        if value.normalize().scale() > MONEY_SCALE {
            return Err(MoneyError::TooPrecise);
        }
        Ok(Money(value))
    }

    /// Whether an amount from outside (a price, a limit, a top-up) is within what we accept.
    pub fn is_input_range(self) -> bool {
        self.0.abs() <= MONEY_ABS_MAX
    }

    pub fn cents(cents: i64) -> Money {
        Money(Decimal::new(cents, MONEY_SCALE))
    }

    /// Whole cents, for sorting and integer arithmetic; amounts are kept to cents, so this
    /// is exact (saturating far beyond `MONEY_ABS_MAX`).
    pub fn to_cents(self) -> i64 {
        let mut value = self.0;
        value.rescale(MONEY_SCALE);
        i64::try_from(value.mantissa()).unwrap_or(if value.is_sign_negative() { i64::MIN } else { i64::MAX })
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// For Prometheus gauges only: metrics are floats by nature, money never is.
    pub fn as_f64_for_metrics(self) -> f64 {
        use rust_decimal::prelude::ToPrimitive;
        self.0.to_f64().unwrap_or(0.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = self.0;
        value.rescale(MONEY_SCALE);
        write!(f, "{value}")
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        self.0 -= rhs.0;
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The one grammar of an amount, for input and stored text alike: an optional minus, digits,
/// and optionally a point and digits. No spaces, underscores, plus signs or exponents
/// (`Decimal::from_str` takes `"1_0.0_0"` as 10.00).
///
/// The amount is exactly the number written, never a nearby one: `Decimal::from_str` rounds
/// what does not fit its 96 bits ("0.000…001" with 31 decimals reads as 0,
/// "70000000000000000000000000000.55" as …001). Zeros ending the fraction say nothing and
/// are dropped first; a number that still does not fit is too precise if it has digits past
/// the cents, else out of range.
/// Reads an amount exactly as written: an optional minus, digits, optionally a point and
/// digits; no spaces, underscores, plus signs or exponents (`Decimal` alone takes
/// "1_0.0_0"), and never a rounded number (`Decimal::from_str` rounds what does not fit
/// its 96 bits: "0.000…001" with 31 decimals reads as 0). Zeros ending the fraction say
/// nothing, so they are dropped before a number is refused for not fitting. Any precision:
/// `Money` adds its limit of cents.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    decimal(text)
}

fn decimal(text: &str) -> Result<Decimal, MoneyError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(MoneyError::NotDecimal);
    }
    let significant = fraction.trim_end_matches('0');
    let exact = match Decimal::from_str_exact(text) {
        Ok(value) => return Ok(value),
        Err(_) if significant.len() == fraction.len() => None,
        Err(_) => {
            let sign = &text[..text.len() - digits.len()];
            let point = if significant.is_empty() { "" } else { "." };
            Decimal::from_str_exact(&format!("{sign}{whole}{point}{significant}")).ok()
        }
    };
    exact.ok_or(if significant.len() > MONEY_SCALE as usize { MoneyError::TooPrecise } else { MoneyError::OutOfRange })
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        struct MoneyVisitor;
        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string such as \"38.50\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse_stored(v).map_err(|e| E::custom(format!("invalid amount {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                Ok(Money(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                Ok(Money(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Money, E> {
                Err(E::custom("money must be a decimal string such as \"38.50\", not a float"))
            }
        }
        deserializer.deserialize_any(MoneyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_two_decimals() {
        assert_eq!(Money::parse("38.5").unwrap().to_string(), "38.50");
        assert_eq!(Money::parse("41").unwrap().to_string(), "41.00");
        assert_eq!(Money::parse("0.10").unwrap() + Money::parse("0.20").unwrap(), Money::parse("0.3").unwrap());
    }

    #[test]
    fn refuses_floats_exponents_and_fractions_of_cents() {
        assert!(serde_json::from_str::<Money>("38.5").is_err());
        assert!(serde_json::from_str::<Money>("\"38.50\"").is_ok());
        assert_eq!(Money::parse("1e3"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse("0.001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("abc"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse("99999999999"), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn one_strict_grammar_for_every_amount() {
        for bad in ["1_0.0_0", " 10.00", "10.00 ", "+10", "10.", ".5", "1e3", "", "-", "10.0.0", "١٠", "0x10"] {
            assert_eq!(Money::parse(bad), Err(MoneyError::NotDecimal), "{bad:?}");
            assert!(Money::parse_stored(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<Money>(serde_json::json!(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(Money::parse("10.001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("-0.50").map(|m| m.to_string()), Ok("-0.50".to_string()));
        assert_eq!(Money::parse_stored("10.100").map(|m| m.amount()), Ok(Decimal::new(1010, 2)), "as once stored");
    }

    #[test]
    fn an_amount_is_the_number_written_never_a_rounded_one() {
        // Found by fuzzing (fuzz/fuzz_targets/money.rs): `Decimal::from_str` rounds digits
        // past what a `Decimal` holds, and these read as 0.00, 1.00 and …01.00.
        let tiny = format!("0.{}1", "0".repeat(30));
        assert_eq!(Money::parse(&tiny), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse_stored(&tiny), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse(&format!("1.{}1", "0".repeat(29))), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse_stored("70000000000000000000000000000.55"), Err(MoneyError::OutOfRange));
        // Too many digits to hold is out of range, not "not a decimal".
        assert_eq!(Money::parse(&"9".repeat(40)), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse_stored(&"9".repeat(40)), Err(MoneyError::OutOfRange));
        // Zeros ending the fraction are no precision, however many.
        let one = format!("1.{}", "0".repeat(40));
        assert_eq!(Money::parse(&one), Ok(Money::cents(100)));
        assert_eq!(Money::parse_stored(&format!("-{one}")), Ok(Money::cents(-100)));
        assert_eq!(Money::parse_stored("79228162514264337593543950335.000").map(|m| m.amount()), Ok(Decimal::MAX));
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(Money::from_decimal(Decimal::new(1005, 3)).to_string(), "1.01");
        assert_eq!(Money::from_decimal(Decimal::new(-1005, 3)).to_string(), "-1.01");
    }

    #[test]
    fn stored_amounts_read_back_at_any_magnitude_and_inputs_are_bounded_where_they_enter() {
        let huge = Money::from_decimal(Decimal::MAX / Decimal::from(1_000));
        let json = serde_json::to_string(&huge).unwrap();
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), huge);
        assert!(!huge.is_input_range());
        assert!(Money::cents(100_000_000_000).is_input_range());
        assert!(!Money::cents(100_000_000_001).is_input_range());
        assert_eq!(Money::parse("1000000000.01"), Err(MoneyError::OutOfRange), "bids and other parsed input");
        assert!(serde_json::from_str::<Money>("\"1.001\"").is_err(), "cents still");
    }

    proptest! {
        #[test]
        fn stored_amounts_round_trip(mantissa in any::<i64>(), scale in 0u32..=2) {
            // Up to ~9.2e24: far past any input limit, still whole cents in a `Decimal`.
            let amount = Money::exact(Decimal::new(mantissa, scale) * Decimal::from(1_000_000)).unwrap();
            let back: Money = serde_json::from_str(&serde_json::to_string(&amount).unwrap()).unwrap();
            prop_assert_eq!(back, amount);
        }

        #[test]
        fn cents_round_trip(cents in -100_000_000_000i64..100_000_000_000i64) {
            prop_assert_eq!(Money::cents(cents).to_cents(), cents);
            prop_assert_eq!(Money::parse(&Money::cents(cents).to_string()).unwrap().to_cents(), cents);
        }

        #[test]
        fn display_round_trips(cents in -100_000_000_000i64..100_000_000_000i64) {
            let m = Money::cents(cents);
            prop_assert_eq!(Money::parse(&m.to_string()).unwrap(), m);
        }
    }
}
