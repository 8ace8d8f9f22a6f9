//! Money as integer cents: parsing the mock buyer's `--bid-min/--bid-max`, drawing a bid
//! and writing it as the decimal string buyers answer (`"38.07"`, DESIGN §4/§5).
//!
//! Rationale: money is never a float in leadrouter's contract, so the tool that imitates
//! its buyers draws and prints bids in whole cents too.

use anyhow::{bail, Context};
use leadrouter_types::Money;

use crate::rng::Rng;

/// Highest bid the mock buyer accepts as a bound: leadrouter's own money bound is far
/// larger, but no lead costs a million; a typo (an extra zero or three) is caught early.
pub const BID_CENTS_MAX: u64 = 100_000_000;

/// Parses `"38"`, `"38.5"` or `"38.50"` into cents: the router's grammar and limit of
/// cents (`leadrouter_types::Money`), no sign, at most `BID_CENTS_MAX`.
pub fn parse_cents(text: &str) -> anyhow::Result<u64> {
    let amount = Money::parse(text).with_context(|| format!("not an amount: {text:?}"))?;
    if amount.is_negative() {
        bail!("a bid is not negative: {text:?}");
    }
    let cents = u64::try_from(amount.to_cents()).with_context(|| format!("not an amount: {text:?}"))?;
    if cents > BID_CENTS_MAX {
        bail!("amount above {}: {text:?}", format_cents(BID_CENTS_MAX));
    }
    Ok(cents)
}

/// `3807` → `"38.07"`.
pub fn format_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The inclusive range a mock buyer bids in, checked once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidRange {
    pub min_cents: u64,
    pub max_cents: u64,
}

impl BidRange {
    pub fn parse(min: &str, max: &str) -> anyhow::Result<BidRange> {
        let min_cents = parse_cents(min).context("--bid-min")?;
        let max_cents = parse_cents(max).context("--bid-max")?;
        if min_cents == 0 || min_cents > max_cents {
            bail!("need 0 < --bid-min <= --bid-max, got {min} and {max}");
        }
        Ok(BidRange { min_cents, max_cents })
    }

    /// A bid drawn uniformly in whole cents between the bounds (both included).
    pub fn draw(&self, rng: &Rng) -> u64 {
        rng.in_range(self.min_cents, self.max_cents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_into_cents() {
        assert_eq!(parse_cents("38").ok(), Some(3800));
        assert_eq!(parse_cents("38.5").ok(), Some(3850));
        assert_eq!(parse_cents("38.50").ok(), Some(3850));
        assert_eq!(parse_cents("0.07").ok(), Some(7));
        for bad in [
            "",
            ".5",
            "38.",
            "38.505",
            "-1",
            "-0.01",
            "1e3",
            " 1",
            "1,5",
            "+1",
            "1_0",
            "99999999999999999999",
            "1000001",
        ] {
            assert!(parse_cents(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_two_decimals() {
        assert_eq!(format_cents(3807), "38.07");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(6000), "60.00");
    }

    #[test]
    fn bids_are_whole_cents_within_the_bounds() {
        let range = BidRange::parse("20.00", "20.03").expect("valid range");
        let rng = Rng::new(42);
        let mut seen = [false; 4];
        for _ in 0..1_000 {
            let bid = range.draw(&rng);
            assert!((2000..=2003).contains(&bid), "{bid} out of bounds");
            seen[(bid - 2000) as usize] = true;
            let text = format_cents(bid);
            assert_eq!(parse_cents(&text).ok(), Some(bid), "round trip of {text}");
        }
        assert!(seen.iter().all(|s| *s), "both ends and the middle are drawn");
    }

    #[test]
    fn a_reversed_or_zero_range_is_refused() {
        assert!(BidRange::parse("60.00", "20.00").is_err());
        assert!(BidRange::parse("0", "20.00").is_err());
        assert_eq!(BidRange::parse("20", "20").ok(), Some(BidRange { min_cents: 2000, max_cents: 2000 }));
    }
}
