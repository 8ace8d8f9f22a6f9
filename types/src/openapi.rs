//! How these types are described in the router's OpenAPI document (feature `openapi`):
//! money is a decimal string with two decimals (never a JSON number), a currency three
//! uppercase letters. The patterns are the grammar the serializers write, so a client
//! generated from the document reads every amount as text.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{Currency, Money};

/// What `Money` serializes as: an optional minus, digits, a point and two decimals.
pub const MONEY_PATTERN: &str = r"^-?[0-9]+\.[0-9]{2}$";
/// What `Currency` serializes as: an ISO 4217 alphabetic code.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(MONEY_PATTERN))
            .description(Some("An exact amount: a decimal string with two decimals, never a JSON number."))
            .examples(["38.50"])
            .into()
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(CURRENCY_PATTERN))
            .description(Some("An ISO 4217 currency code."))
            .examples(["EUR"])
            .into()
    }
}

impl ToSchema for Currency {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Currency")
    }
}
