//! Phone numbers to E.164: the one form buyers receive and duplicate detection compares.
//!
//! Parsing and validity come from `phonenumber` (Google's libphonenumber metadata). This
//! module owns the guard in front of it: supplier input is checked for length and
//! characters before the parser sees it, so garbage is refused cheaply and the parser's
//! less-travelled paths are never reached with arbitrary text.

use phonenumber::country::Id;
use phonenumber::Mode;

/// Longest raw input looked at: "+49 (0) 89 / 123 456 789-0" is 26; the longest E.164
/// number has 15 digits, so anything longer than this is not a phone number.
const RAW_LEN_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not a phone number")]
    Unparsable,
    #[error("not a valid number for {0}")]
    InvalidForCountry(String),
}

/// Normalizes `raw` ("089 1234567", "+49 89 1234567", "(415) 555-2671") to E.164
/// ("+49891234567") for `country` (ISO alpha-2).
///
/// `country` is the region a number without `+` / international prefix is read in. A number
/// given in international form may belong to another country and is accepted when valid.
/// Rationale: leads near borders and expatriates give foreign mobiles; the buyer can still
/// call them, and rejecting them would lose real consumers.
pub fn normalize_e164(raw: &str, country: &str) -> Result<String, PhoneError> {
    normalize(raw, country)
}

/// Loads the phone number metadata (parsed on first use: most of a second in a debug build)
/// so that the server's first lead does not pay for it.
pub fn warm_up() {
    let _ = normalize("+49 89 1234567", "DE");
}

fn normalize(raw: &str, country: &str) -> Result<String, PhoneError> {
    let raw = raw.trim();
    if raw.len() > RAW_LEN_MAX || !raw.bytes().all(is_phone_byte) {
        return Err(PhoneError::Unparsable);
    }
    if !raw.bytes().any(|b| b.is_ascii_digit()) {
        return Err(PhoneError::Unparsable);
    }
    let region = country
        .trim()
        .to_ascii_uppercase()
        .parse::<Id>()
        .map_err(|_| PhoneError::InvalidForCountry(country.to_owned()))?;
    let raw = raw.to_owned();
    // Rationale: the parser is third-party code that has panicked on odd input in past
    // releases; a bad phone number must be a 422, never a dropped connection.
    let parsed = std::panic::catch_unwind(move || {
        let number = phonenumber::parse(Some(region), &raw).ok()?;
        Some((number.is_valid(), number.format().mode(Mode::E164).to_string()))
    });
    match parsed {
        Ok(Some((true, e164))) => Ok(e164),
        Ok(Some((false, _))) => Err(PhoneError::InvalidForCountry(region.as_ref().to_owned())),
        Ok(None) | Err(_) => Err(PhoneError::Unparsable),
    }
}

/// Digits and the punctuation people write numbers with. Letters (vanity numbers,
/// "ext.", "tel:") are refused: a lead's number must be dialable as given.
fn is_phone_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b' ' | b'+' | b'(' | b')' | b'-' | b'.' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn german_formats() {
        let munich = "+49891234567";
        for raw in [
            "089 1234567",
            "0891234567",
            "089/1234567",
            "+49 89 1234567",
            "+49 (0)89 1234567",
            "0049 89 1234567",
            " +49891234567 ",
        ] {
            assert_eq!(normalize_e164(raw, "DE").as_deref(), Ok(munich), "{raw}");
        }
        assert_eq!(normalize_e164("0151 23456789", "de").as_deref(), Ok("+4915123456789"));
    }

    #[test]
    fn us_formats() {
        let sf = "+14155552671";
        for raw in ["(415) 555-2671", "415-555-2671", "415.555.2671", "4155552671", "1 415 555 2671", "+1 415 555 2671"]
        {
            assert_eq!(normalize_e164(raw, "US").as_deref(), Ok(sf), "{raw}");
        }
    }

    #[test]
    fn foreign_number_in_international_form_is_kept() {
        assert_eq!(normalize_e164("+1 415 555 2671", "DE").as_deref(), Ok("+14155552671"));
    }

    #[test]
    fn garbage_is_refused() {
        let unparsable = [
            "",
            "   ",
            "abc",
            "call me",
            "+49 89 CALL-NOW",
            "tel:+49891234567",
            "0891234567 ext. 5",
            "++--()",
            "1234567890123456789012345678901234567890",
        ];
        for raw in unparsable {
            assert_eq!(normalize_e164(raw, "DE"), Err(PhoneError::Unparsable), "{raw}");
        }
        for raw in ["123", "0000000", "089 12", "+49 000 0000000"] {
            assert!(normalize_e164(raw, "DE").is_err(), "{raw}");
        }
        assert_eq!(normalize_e164("555-2671", "US"), Err(PhoneError::InvalidForCountry("US".to_owned())));
        assert_eq!(normalize_e164("089 1234567", "XX"), Err(PhoneError::InvalidForCountry("XX".to_owned())));
    }

    /// The patterns are matched outside the regex cache's lock (vendor/regex-cache): threads
    /// normalizing at once, across countries, get what one thread alone gets.
    #[test]
    fn threads_at_once_normalize_as_one_alone() {
        let inputs: Vec<(String, &str)> = (0..400u32)
            .map(|n| match n % 4 {
                0 => (format!("089 {:07}", 1_000_000 + n), "DE"),
                1 => (format!("(415) 555-{:04}", n), "US"),
                2 => (format!("020 7946 {:04}", n), "GB"),
                _ => (format!("+49 151 {:08}", 20_000_000 + n), "FR"),
            })
            .collect();
        let alone: Vec<_> = inputs.iter().map(|(raw, country)| normalize_e164(raw, country)).collect();
        assert!(alone.iter().filter(|answer| answer.is_ok()).count() >= 300, "{alone:?}");
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|offset| {
                    let (inputs, alone) = (&inputs, &alone);
                    scope.spawn(move || {
                        for round in 0..3 {
                            for i in (0..inputs.len()).map(|i| (i + offset * 97 + round * 13) % inputs.len()) {
                                let (raw, country) = &inputs[i];
                                assert_eq!(normalize_e164(raw, country), alone[i], "{raw} {country}");
                            }
                        }
                    })
                })
                .collect();
            for worker in workers {
                assert!(worker.join().is_ok(), "a thread panicked");
            }
        });
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(raw in ".{0,40}", country in "[A-Za-z]{0,3}") {
            let _ = normalize_e164(&raw, &country);
        }

        #[test]
        fn phone_shaped_strings_never_panic(
            raw in "[0-9 +()./-]{0,32}",
            country in prop::sample::select(vec!["DE", "US", "GB", "CH", "AT", "FR"]),
        ) {
            if let Ok(e164) = normalize_e164(&raw, country) {
                prop_assert!(e164.starts_with('+'));
                prop_assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(e164.len() <= 16);
            }
        }
    }
}
