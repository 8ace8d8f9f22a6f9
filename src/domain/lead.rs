//! Leads and pings from suppliers: parse, don't validate. (STUB: helper fills in.)

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::geo::{Point, PostalTable};
use super::model::{FieldError, Vertical};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeadInput {
    pub vertical: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
    pub city: Option<String>,
    pub street: Option<String>,
    pub fields: Option<Map<String, Value>>,
    pub consent: Option<Consent>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub tcpa: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidLead {
    pub vertical: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub zip: String,
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    pub fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip)]
    pub location: Point,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PingInput {
    pub vertical: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
    pub fields: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidPing {
    pub vertical: String,
    pub zip: String,
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub fields: Map<String, Value>,
    #[serde(skip)]
    pub location: Point,
}

pub fn validate_lead(
    _input: LeadInput,
    _vertical: &Vertical,
    _table: &PostalTable,
) -> Result<ValidLead, Vec<FieldError>> {
    todo!()
}

pub fn validate_ping(
    _input: PingInput,
    _vertical: &Vertical,
    _table: &PostalTable,
) -> Result<ValidPing, Vec<FieldError>> {
    todo!()
}

impl ValidLead {
    /// The lead without personal data, as dynamic buyers are pinged with it.
    pub fn anonymized(&self) -> ValidPing {
        todo!()
    }

    /// Normalized contacts for duplicate detection: `phone:<E.164>`, `email:<lowercase>`.
    pub fn dedup_keys(&self) -> [String; 2] {
        todo!()
    }

    /// A posted lead must be the lead that was pinged: same vertical and postal code.
    pub fn matches_ping(&self, _ping: &ValidPing) -> Result<(), Vec<FieldError>> {
        todo!()
    }
}
