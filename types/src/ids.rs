//! The ids the router hands out and the billing worker reads back (`sal_...`, `lead_...`,
//! `ret_...`) and the ids operators give accounts and campaigns: each its own type, so a
//! buyer id is never passed where a supplier id goes. On the wire and in storage each is
//! its plain string.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_string())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id!(
    /// A sale (`sal_...`), unique for good.
    SaleId
);
id!(
    /// A lead (`lead_...`).
    LeadId
);
id!(
    /// A ping (`png_...`).
    PingId
);
id!(
    /// A return (`ret_...`).
    ReturnId
);
id!(
    /// A buyer account, named by the operator.
    BuyerId
);
id!(
    /// A supplier account, named by the operator.
    SupplierId
);
id!(
    /// A buyer's campaign, named by the operator.
    CampaignId
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn an_id_is_its_string_on_the_wire_and_in_a_map() {
        let buyer = BuyerId::from("b1");
        assert_eq!(serde_json::to_string(&buyer).unwrap(), "\"b1\"");
        assert_eq!(serde_json::from_str::<BuyerId>("\"b1\"").unwrap(), buyer);
        assert_eq!(buyer, "b1");
        assert_eq!(format!("{buyer} {buyer:?}"), "b1 BuyerId(\"b1\")");
        let balances = HashMap::from([(buyer.clone(), 3)]);
        assert_eq!(balances.get("b1"), Some(&3), "looked up by its text");
    }
}
