//! §5's post body (`{"sale_id", "lead_id", "ping_id", "vertical", "price", "currency",
//! "lead"}`), serialized straight from the sale's parts.
//!
//! Rationale (issue 17): it was built as a `serde_json::Value` first (every key and value of
//! the lead copied into a tree of maps, then printed), about 40 allocations a delivery. The
//! bytes must not change (buyers verify the signature over them, and tests compare them), so
//! keys are written in the order the `Value` printed them: `serde_json`'s maps are sorted.
//! `tests` checks both against each other.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::domain::lead::{Consent, ValidLead};
use crate::domain::money::{Currency, Money};

/// One sale's native post body, borrowed from the sale.
pub struct PostBody<'a> {
    pub sale_id: &'a str,
    pub lead_id: &'a str,
    pub ping_id: &'a str,
    pub vertical: &'a str,
    pub price: Money,
    pub currency: Currency,
    pub lead: &'a ValidLead,
}

impl PostBody<'_> {
    /// The body's bytes, as buyers receive them.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serializing borrowed strings and `Value`s into a Vec cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The body's text (the outbox keeps an async lead's body so).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The body as a JSON value (the pull queue keeps it so).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl Serialize for PostBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Sorted keys: currency, lead, lead_id, ping_id, price, sale_id, vertical.
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("currency", &self.currency)?;
        map.serialize_entry("lead", &SortedLead(self.lead))?;
        map.serialize_entry("lead_id", self.lead_id)?;
        map.serialize_entry("ping_id", self.ping_id)?;
        map.serialize_entry("price", &self.price)?;
        map.serialize_entry("sale_id", self.sale_id)?;
        map.serialize_entry("vertical", self.vertical)?;
        map.end()
    }
}

/// `ValidLead`'s own serialization with its keys sorted (optional ones left out when
/// absent, as its derive does).
struct SortedLead<'a>(&'a ValidLead);

impl Serialize for SortedLead<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let lead = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(city) = lead.city() {
            map.serialize_entry("city", city)?;
        }
        if let Some(consent) = lead.consent() {
            map.serialize_entry("consent", &SortedConsent(consent))?;
        }
        map.serialize_entry("country", lead.country())?;
        map.serialize_entry("email", lead.email())?;
        if let Some(external_id) = lead.external_id() {
            map.serialize_entry("external_id", external_id)?;
        }
        map.serialize_entry("fields", lead.fields())?;
        map.serialize_entry("first_name", lead.first_name())?;
        map.serialize_entry("last_name", lead.last_name())?;
        map.serialize_entry("phone", lead.phone())?;
        if let Some(state) = lead.state() {
            map.serialize_entry("state", state)?;
        }
        if let Some(street) = lead.street() {
            map.serialize_entry("street", street)?;
        }
        map.serialize_entry("vertical", lead.vertical())?;
        map.serialize_entry("zip", lead.zip())?;
        map.end()
    }
}

struct SortedConsent<'a>(&'a Consent);

impl Serialize for SortedConsent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let consent = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(captured_at) = &consent.captured_at {
            map.serialize_entry("captured_at", captured_at)?;
        }
        if let Some(certificate_url) = &consent.certificate_url {
            map.serialize_entry("certificate_url", certificate_url)?;
        }
        if let Some(ip) = &consent.ip {
            map.serialize_entry("ip", ip)?;
        }
        map.serialize_entry("tcpa", &consent.tcpa)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::geo::PostalTable;
    use crate::domain::lead::{validate_lead, LeadInput};
    use crate::domain::model::Vertical;
    use serde_json::json;

    fn lead(input: serde_json::Value) -> ValidLead {
        let vertical: Vertical = serde_json::from_value(json!({"name": "solar", "model": "ping_post"})).unwrap();
        let input: LeadInput = serde_json::from_value(input).unwrap();
        validate_lead(input, &vertical, PostalTable::bundled()).unwrap()
    }

    /// What the body was before: a `Value` built by `json!` and printed.
    fn as_value_printed(body: &PostBody) -> String {
        json!({
            "sale_id": body.sale_id,
            "lead_id": body.lead_id,
            "ping_id": body.ping_id,
            "vertical": body.vertical,
            "price": body.price,
            "currency": body.currency,
            "lead": body.lead,
        })
        .to_string()
    }

    #[test]
    fn the_bytes_are_those_of_the_json_value_it_replaces() {
        let full = lead(json!({
            "vertical": "solar", "first_name": "Anna", "last_name": "Muster", "email": "anna@example.com",
            "phone": "+49 89 1234567", "zip": "80331", "country": "DE", "state": "BY", "city": "München",
            "street": "Marienplatz 1", "external_id": "ext-1",
            "consent": {"tcpa": true, "certificate_url": "https://cert.example/abc", "ip": "192.0.2.1",
                        "captured_at": "2026-12-04T09:00:00Z"},
            "fields": {"roof_type": "tile", "a": 1, "z_list": [1, "b", true], "b": "\"quoted\" \u{e9} </tag>"},
        }));
        let bare = lead(json!({
            "vertical": "solar", "first_name": "Bo", "last_name": "B", "email": "bo@example.com",
            "phone": "089 1234567", "zip": "80331", "country": "DE",
        }));
        let consent_only = lead(json!({
            "vertical": "solar", "first_name": "C", "last_name": "D", "email": "c@example.com",
            "phone": "089 1234567", "zip": "80331", "country": "DE", "consent": {"tcpa": false},
        }));
        for lead in [&full, &bare, &consent_only] {
            let body = PostBody {
                sale_id: "sal_1",
                lead_id: "led_1",
                ping_id: "png_1",
                vertical: "solar",
                price: Money::cents(3512),
                currency: crate::domain::money::Currency::EUR,
                lead,
            };
            let bytes = body.to_bytes();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), as_value_printed(&body));
            assert_eq!(body.to_value().to_string(), as_value_printed(&body));
            assert_eq!(body.to_text(), as_value_printed(&body));
        }
    }

    /// A key `ValidLead` serializes that `SortedLead` does not know would be lost from the
    /// body: every key of a full lead must be one `SortedLead` writes.
    #[test]
    fn every_key_of_a_lead_is_written() {
        let full = lead(json!({
            "vertical": "solar", "first_name": "Anna", "last_name": "Muster", "email": "anna@example.com",
            "phone": "+49 89 1234567", "zip": "80331", "country": "DE", "state": "BY", "city": "München",
            "street": "Marienplatz 1", "external_id": "ext-1",
            "consent": {"tcpa": true, "certificate_url": "https://cert.example/abc", "ip": "192.0.2.1",
                        "captured_at": "2026-12-04T09:00:00Z"},
        }));
        let derived = serde_json::to_value(&full).unwrap();
        let sorted = serde_json::to_value(SortedLead(&full)).unwrap();
        assert_eq!(derived, sorted);
    }
}
