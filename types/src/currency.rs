//! A currency: an ISO 4217 alphabetic code (`EUR`, `USD`), three uppercase ASCII letters.
//! Every amount the router and the billing worker exchange is in one; a sale, a return and
//! a top-up name theirs, and an auction compares only bids in the same one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Three uppercase ASCII letters, kept inline (a `Copy` value: no allocation per sale).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

/// Text that is not three uppercase ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 4217 currency code such as EUR")]
pub struct InvalidCurrency(pub String);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Only uppercase ASCII letters are ever stored (`from_str` is the one way in).
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = InvalidCurrency;

    fn from_str(text: &str) -> Result<Currency, InvalidCurrency> {
        match text.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(InvalidCurrency(text.to_string())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl PartialEq<str> for Currency {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Currency {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_currency_is_three_uppercase_letters() {
        assert_eq!("EUR".parse::<Currency>(), Ok(Currency::EUR));
        assert_eq!(Currency::USD.to_string(), "USD");
        for wrong in ["", "eur", "EURO", "EU", "E1R", "ÉUR", " EUR"] {
            assert!(wrong.parse::<Currency>().is_err(), "{wrong:?}");
        }
        assert_eq!(serde_json::to_string(&Currency::EUR).unwrap(), "\"EUR\"");
        assert_eq!(serde_json::from_str::<Currency>("\"USD\"").unwrap(), Currency::USD);
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
        assert!(serde_json::from_str::<Currency>("3").is_err());
    }

    proptest! {
        #[test]
        fn any_text_reads_as_a_currency_only_if_it_prints_back_the_same(text in "\\PC{0,5}") {
            if let Ok(currency) = text.parse::<Currency>() {
                prop_assert_eq!(currency.as_str(), text.as_str());
            } else {
                prop_assert!(text.len() != 3 || !text.bytes().all(|b| b.is_ascii_uppercase()));
            }
        }
    }
}
