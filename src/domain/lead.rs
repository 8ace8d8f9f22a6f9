//! Leads and pings from suppliers: parse, don't validate (DESIGN §4).
//!
//! This module owns the line between supplier input and the engine: `LeadInput` /
//! `PingInput` are what arrived, `ValidLead` / `ValidPing` are what the engine may act on,
//! and `validate_lead` / `validate_ping` are the only ways from one to the other. Every
//! problem is reported at once with its field path (`email`, `fields.roof_type`,
//! `consent.ip`), so a supplier fixes a request in one round trip.
//!
//! It also owns the ping's privacy promise: a ping, and a lead's `anonymized` view, carry
//! no name, email, phone, street or IP, because they go to every bidding buyer while only
//! the winner pays for the person.
//!
//! Pure: no I/O, no clock, no logging; any input gives a value or errors, never a panic.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::ToSchema;

use super::geo::{Point, PostalPlace, PostalTable};
use super::model::{FieldError, Vertical};
use super::phone::{normalize_e164, PhoneError};

/// Names: long enough for any real double-barrelled name, short enough to fit buyers' CRMs.
const NAME_LEN_MAX: usize = 100;
/// City and street: the longest real addresses are well under this.
const ADDRESS_LEN_MAX: usize = 200;
/// RFC 5321: a forward path is at most 256 octets including the angle brackets.
const EMAIL_LEN_MAX: usize = 254;
/// RFC 5321: the local part is at most 64 octets.
const EMAIL_LOCAL_LEN_MAX: usize = 64;
/// RFC 1035: a DNS label is at most 63 octets.
const EMAIL_LABEL_LEN_MAX: usize = 63;
/// A supplier's own reference: fits UUIDs, URLs-as-ids and composite keys.
const EXTERNAL_ID_LEN_MAX: usize = 128;
/// State codes are 2 (US, DE Länder) to 3 characters; a little headroom for other tables.
const STATE_LEN_MAX: usize = 8;
/// Custom fields per lead: verticals use 5 to 20; the bound keeps a lead's size and the
/// eligibility work per lead small.
const FIELDS_MAX: usize = 50;
/// Custom field names: identifiers, as field rules and CSV headers (`fields.<name>`) use them.
const FIELD_KEY_LEN_MAX: usize = 64;
/// `field_key_ok` as a pattern, for the OpenAPI document.
const FIELD_KEY_PATTERN: &str = "^[A-Za-z0-9_]{1,64}$";
/// A custom string value: room for a free-text comment, not for a document.
const FIELD_STRING_LEN_MAX: usize = 1000;
/// A custom array value (e.g. chosen products): a multiple choice, not a data set.
const FIELD_ARRAY_LEN_MAX: usize = 50;
/// Consent certificate URLs (TrustedForm, Jornaya): well under common URL limits.
const URL_LEN_MAX: usize = 2048;
/// Errors reported per request: enough to fix it, and a bound on the error response.
const ERRORS_MAX: usize = 100;

const MSG_REQUIRED: &str = "required";
const MSG_PII: &str = "personal data is not allowed in a ping";
const MSG_NOT_PING: &str = "does not match the ping";

/// Keys that name personal data, compared after `pii_key_form` (lowercase, separators
/// dropped, so `firstName`, `first-name` and `FIRST_NAME` all match). The DESIGN list plus
/// the `_address` / `_number` spellings of the same fields.
const PII_KEYS: [&str; 34] = [
    "firstname",
    "lastname",
    "name",
    "fullname",
    "surname",
    "givenname",
    "familyname",
    "vorname",
    "nachname",
    "email",
    "emailaddress",
    "emailadresse",
    "mail",
    "phone",
    "phonenumber",
    "tel",
    "telephone",
    "telefon",
    "telefonnummer",
    "mobile",
    "mobilephone",
    "cell",
    "cellphone",
    "handy",
    "fax",
    "street",
    "streetaddress",
    "strasse",
    "address",
    "adresse",
    "ip",
    "ipaddress",
    "birthdate",
    "dateofbirth",
];

/// A lead's own properties (its consent and custom fields apart), named alike in JSON, in
/// bulk CSV columns and in a vertical's `required_fields`.
pub const LEAD_PROPERTIES: [&str; 11] = [
    "vertical",
    "first_name",
    "last_name",
    "email",
    "phone",
    "zip",
    "country",
    "state",
    "city",
    "street",
    "external_id",
];

/// A lead's consent, as bulk CSV columns name its properties (`consent.<name>`).
pub const CONSENT_COLUMNS: [&str; 4] = ["consent.tcpa", "consent.certificate_url", "consent.ip", "consent.captured_at"];

/// Lead properties a vertical's `required_fields` may name besides custom fields.
fn is_top_level_field(name: &str) -> bool {
    name == "consent" || LEAD_PROPERTIES.contains(&name)
}

/// A lead as a supplier sends it: `POST /v1/leads`, the `lead` of `POST /v1/post`, a row
/// of `POST /v1/leads/bulk`. Every property is optional to serde so that `validate_lead`
/// can name every missing one at once; the schema says what the contract requires.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = Lead)]
pub struct LeadInput {
    /// The vertical's name.
    #[schema(required, nullable = false, example = "solar")]
    pub vertical: Option<String>,
    #[schema(required, nullable = false, max_length = 100, example = "Anna")]
    pub first_name: Option<String>,
    #[schema(required, nullable = false, max_length = 100, example = "Muster")]
    pub last_name: Option<String>,
    #[schema(required, nullable = false, format = Email, max_length = 254, example = "anna@example.com")]
    pub email: Option<String>,
    /// Normalizable to E.164 for the lead's country.
    #[schema(required, nullable = false, example = "+49 89 1234567")]
    pub phone: Option<String>,
    /// A postal code known for the lead's country (US ZIP5 or ZIP+4, DE PLZ).
    #[schema(required, nullable = false, example = "80331")]
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2; may be left out when the vertical has a default country.
    #[schema(nullable = false, pattern = "^[A-Za-z]{2}$", example = "DE")]
    pub country: Option<String>,
    /// Must agree with the postal code's state; taken from it when absent.
    #[schema(nullable = false, max_length = 8, example = "BY")]
    pub state: Option<String>,
    #[schema(nullable = false, max_length = 200)]
    pub city: Option<String>,
    #[schema(nullable = false, max_length = 200)]
    pub street: Option<String>,
    #[serde(default, deserialize_with = "unique_fields")]
    #[schema(schema_with = custom_fields_schema)]
    pub fields: Option<Map<String, Value>>,
    #[schema(nullable = false)]
    pub consent: Option<Consent>,
    /// The supplier's own reference, unique per supplier.
    #[schema(nullable = false, max_length = 128)]
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub tcpa: bool,
    /// An absolute http(s) URL (TrustedForm, Jornaya).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = "uri", max_length = 2048)]
    pub certificate_url: Option<String>,
    /// An IPv4 or IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ip: Option<String>,
    /// An RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub captured_at: Option<String>,
}

/// `fields`: custom fields by name, each a string, number, boolean or array of those
/// (`check_fields` enforces the bounds written here).
pub fn custom_fields_schema() -> Object {
    let text = || ObjectBuilder::new().schema_type(Type::String).max_length(Some(FIELD_STRING_LEN_MAX));
    let scalar = || {
        AnyOfBuilder::new()
            .item(text())
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
    };
    let list = ArrayBuilder::new().items(scalar()).max_items(Some(FIELD_ARRAY_LEN_MAX));
    let value = AnyOfBuilder::new().item(scalar()).item(list).build();
    let names = ObjectBuilder::new().schema_type(Type::String).pattern(Some(FIELD_KEY_PATTERN)).build();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Custom fields by name: strings, numbers, booleans or arrays of those."))
        .property_names(Some(names))
        .max_properties(Some(FIELDS_MAX))
        .additional_properties(Some(Schema::from(value)))
        .build()
}

/// A lead that passed `validate_lead`: strings trimmed, `email` lowercased, `phone` in
/// E.164, `zip` normalized and known, `country` / `state` uppercase, `location` the
/// postal-code centroid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidLead {
    vertical: String,
    first_name: String,
    last_name: String,
    email: String,
    phone: String,
    zip: String,
    country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    street: Option<String>,
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<Consent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(skip)]
    location: Point,
}

/// A ping as a supplier sends it (`POST /v1/ping`): where and what, never who.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = Ping)]
pub struct PingInput {
    #[schema(required, nullable = false, example = "solar")]
    pub vertical: Option<String>,
    #[schema(required, nullable = false, example = "80331")]
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2; may be left out when the vertical has a default country.
    #[schema(nullable = false, pattern = "^[A-Za-z]{2}$", example = "DE")]
    pub country: Option<String>,
    #[schema(nullable = false, max_length = 8)]
    pub state: Option<String>,
    /// Custom fields; names and values that look like personal data are refused (422).
    #[serde(default, deserialize_with = "unique_fields")]
    #[schema(schema_with = custom_fields_schema)]
    pub fields: Option<Map<String, Value>>,
    /// Any other key: refused with 422 (personal data has no place in a ping).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

/// A ping that passed `validate_ping`, or a lead's `anonymized` view: no personal data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidPing {
    vertical: String,
    zip: String,
    country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    fields: Map<String, Value>,
    #[serde(skip)]
    location: Point,
}

/// Read access only: a `ValidLead` is made by `validate_lead` and by nothing else.
impl ValidLead {
    pub fn vertical(&self) -> &str {
        &self.vertical
    }
    pub fn first_name(&self) -> &str {
        &self.first_name
    }
    pub fn last_name(&self) -> &str {
        &self.last_name
    }
    pub fn email(&self) -> &str {
        &self.email
    }
    pub fn phone(&self) -> &str {
        &self.phone
    }
    pub fn zip(&self) -> &str {
        &self.zip
    }
    pub fn country(&self) -> &str {
        &self.country
    }
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
    pub fn city(&self) -> Option<&str> {
        self.city.as_deref()
    }
    pub fn street(&self) -> Option<&str> {
        self.street.as_deref()
    }
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
    pub fn consent(&self) -> Option<&Consent> {
        self.consent.as_ref()
    }
    pub fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }
    pub fn location(&self) -> Point {
        self.location
    }
}

/// Read access, and the one way back from storage: a `ValidPing` is made by
/// `validate_ping`, by `ValidLead::anonymized`, or restored from what a store kept of one.
impl ValidPing {
    /// A ping a store kept after `validate_ping` made it (a ping context on Redis).
    pub fn restore(
        vertical: String,
        zip: String,
        country: String,
        state: Option<String>,
        fields: Map<String, Value>,
        location: Point,
    ) -> ValidPing {
        ValidPing { vertical, zip, country, state, fields, location }
    }
    pub fn vertical(&self) -> &str {
        &self.vertical
    }
    pub fn zip(&self) -> &str {
        &self.zip
    }
    pub fn country(&self) -> &str {
        &self.country
    }
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
    pub fn location(&self) -> Point {
        self.location
    }
}

/// Checks a full lead for `vertical` (already looked up by the caller from the lead's own
/// `vertical`). Blank strings count as absent, so CSV rows with empty cells behave like
/// JSON without the key.
pub fn validate_lead(input: LeadInput, vertical: &Vertical, table: &PostalTable) -> Result<ValidLead, Vec<FieldError>> {
    let mut errors = Vec::new();
    let e = &mut errors;
    let vertical_name = check_vertical(e, input.vertical, vertical);
    let place = locate(e, input.country, input.zip, input.state, vertical, table);
    let first_name = required_text(e, "first_name", input.first_name, NAME_LEN_MAX);
    let last_name = required_text(e, "last_name", input.last_name, NAME_LEN_MAX);
    let email = check_email(e, input.email);
    let phone = check_phone(e, input.phone, place.country.as_deref());
    let city = optional_text(e, "city", input.city, ADDRESS_LEN_MAX);
    let street = optional_text(e, "street", input.street, ADDRESS_LEN_MAX);
    let external_id = optional_text(e, "external_id", input.external_id, EXTERNAL_ID_LEN_MAX);
    let fields = input.fields.unwrap_or_default();
    check_fields(e, &fields, Kind::Lead);
    if let Some(consent) = &input.consent {
        check_consent(e, consent);
    }
    let present = |name: &str| match name {
        "state" => place.state.is_some(),
        "city" => city.is_some(),
        "street" => street.is_some(),
        "external_id" => external_id.is_some(),
        "consent" => input.consent.is_some(),
        // Always required: missing ones were reported above.
        _ => true,
    };
    check_required(e, vertical, &fields, Kind::Lead, present);
    let tcpa_given = input.consent.as_ref().is_some_and(|c| c.tcpa);
    if !tcpa_given && vertical.required_fields.iter().any(|f| f == "consent.tcpa") {
        e.push(FieldError::new("consent.tcpa", "must be true"));
    }
    let lead = match (vertical_name, first_name, last_name, email, phone, place.found()) {
        (Some(vertical), Some(first_name), Some(last_name), Some(email), Some(phone), Some(at))
            if errors.is_empty() =>
        {
            ValidLead {
                vertical,
                first_name,
                last_name,
                email,
                phone,
                zip: at.zip,
                country: at.country,
                state: at.state,
                city,
                street,
                fields,
                consent: input.consent,
                external_id,
                location: at.point,
            }
        }
        _ => return Err(finish(errors)),
    };
    Ok(lead)
}

/// Checks a ping: where and what, never who. Personal data anywhere (a top-level key, a
/// custom field named like one, an email address in a value) is refused.
pub fn validate_ping(input: PingInput, vertical: &Vertical, table: &PostalTable) -> Result<ValidPing, Vec<FieldError>> {
    let mut errors = Vec::new();
    let e = &mut errors;
    let vertical_name = check_vertical(e, input.vertical, vertical);
    let place = locate(e, input.country, input.zip, input.state, vertical, table);
    for key in input.extra.keys() {
        let message = if is_pii_key(key) { MSG_PII } else { "unknown field" };
        e.push(FieldError::new(bounded_key(key), message));
    }
    let fields = input.fields.unwrap_or_default();
    check_fields(e, &fields, Kind::Ping);
    check_required(e, vertical, &fields, Kind::Ping, |_| true);
    match (vertical_name, place.found()) {
        (Some(vertical), Some(at)) if errors.is_empty() => {
            Ok(ValidPing { vertical, zip: at.zip, country: at.country, state: at.state, fields, location: at.point })
        }
        _ => Err(finish(errors)),
    }
}

impl ValidLead {
    /// The lead without personal data, as dynamic buyers are pinged with it.
    ///
    /// Custom fields named like personal data or holding an email address are left out:
    /// a lead's fields are not checked for PII on the way in (the buyer gets the person
    /// anyway), but this view goes to every bidder.
    pub fn anonymized(&self) -> ValidPing {
        let fields = self
            .fields
            .iter()
            .filter(|(k, v)| !is_pii_key(k) && !has_email_shape(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ValidPing {
            vertical: self.vertical.clone(),
            zip: self.zip.clone(),
            country: self.country.clone(),
            state: self.state.clone(),
            fields,
            location: self.location,
        }
    }

    /// A posted lead must be the lead that was pinged: same vertical and postal code.
    pub fn matches_ping(&self, ping: &ValidPing) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.vertical != ping.vertical {
            errors.push(FieldError::new("vertical", MSG_NOT_PING));
        }
        if self.country != ping.country || self.zip != ping.zip {
            errors.push(FieldError::new("zip", MSG_NOT_PING));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The person's identities for duplicate detection, `["phone:+49…", "email:…"]`, in
    /// their normalized forms (E.164, lowercase); the caller hashes them.
    ///
    /// Rationale: no provider-specific email folding (Gmail dots, `+tags`): it would merge
    /// different people at other providers, and buyers dedupe on the address as given.
    pub fn dedup_keys(&self) -> [String; 2] {
        [format!("phone:{}", self.phone), format!("email:{}", self.email)]
    }
}

// ---------------------------------------------------------------------------------------
// Shared checks

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lead,
    Ping,
}

fn finish(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    // An empty list would read as success; every path that rejects has pushed a reason.
    debug_assert!(!errors.is_empty(), "rejected without a reason");
    if errors.is_empty() {
        errors.push(FieldError::new("lead", "incomplete"));
    }
    errors.truncate(ERRORS_MAX);
    errors
}

/// The trimmed value, or None when absent or blank.
fn non_blank(raw: Option<String>) -> Option<String> {
    let raw = raw?;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == raw.len() {
        Some(raw)
    } else {
        Some(trimmed.to_owned())
    }
}

fn check_vertical(errors: &mut Vec<FieldError>, raw: Option<String>, vertical: &Vertical) -> Option<String> {
    match non_blank(raw) {
        None => errors.push(FieldError::new("vertical", MSG_REQUIRED)),
        Some(name) if name == vertical.name => return Some(name),
        Some(_) => errors.push(FieldError::new("vertical", "unknown vertical")),
    }
    None
}

/// Where a lead or ping is: what could be established, so later checks (the phone's
/// country) can use a partial result.
struct Located {
    country: Option<String>,
    place: Option<(String, PostalPlace)>,
    state: Option<String>,
}

struct Found {
    country: String,
    zip: String,
    state: Option<String>,
    point: Point,
}

impl Located {
    fn found(self) -> Option<Found> {
        let country = self.country?;
        let (zip, place) = self.place?;
        Some(Found { country, zip, state: self.state, point: place.point })
    }
}

fn locate(
    errors: &mut Vec<FieldError>,
    country: Option<String>,
    zip: Option<String>,
    state: Option<String>,
    vertical: &Vertical,
    table: &PostalTable,
) -> Located {
    let country = resolve_country(errors, country, vertical);
    let place = match (non_blank(zip), &country) {
        (None, _) => {
            errors.push(FieldError::new("zip", MSG_REQUIRED));
            None
        }
        // The country's own error says why the code cannot be checked.
        (Some(_), None) => None,
        (Some(raw), Some(country)) => resolve_zip(errors, &raw, country, table),
    };
    let state = resolve_state(errors, state, place.as_ref().map(|(_, p)| p));
    Located { country, place, state }
}

fn resolve_country(errors: &mut Vec<FieldError>, raw: Option<String>, vertical: &Vertical) -> Option<String> {
    match non_blank(raw) {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => Some(c.to_ascii_uppercase()),
        Some(_) => {
            errors.push(FieldError::new("country", "an ISO 3166-1 alpha-2 code such as DE"));
            None
        }
        None => match &vertical.default_country {
            Some(c) => Some(c.to_ascii_uppercase()),
            None => {
                errors.push(FieldError::new("country", MSG_REQUIRED));
                None
            }
        },
    }
}

fn resolve_zip(
    errors: &mut Vec<FieldError>,
    raw: &str,
    country: &str,
    table: &PostalTable,
) -> Option<(String, PostalPlace)> {
    let Some(zip) = PostalTable::normalize(country, raw) else {
        let message = format!("not a valid postal code for {country}");
        errors.push(FieldError::new("zip", message));
        return None;
    };
    match table.lookup(country, &zip) {
        Some(place) => Some((zip, place.clone())),
        None => {
            let message = format!("unknown postal code for {country}");
            errors.push(FieldError::new("zip", message));
            None
        }
    }
}

/// The given state must agree with the postal code's; absent, the table's is taken. Where
/// the table has none (military ZIPs, an unknown code), a well-formed given one is kept.
fn resolve_state(errors: &mut Vec<FieldError>, raw: Option<String>, place: Option<&PostalPlace>) -> Option<String> {
    let from_table = place.and_then(PostalPlace::state_code);
    let Some(given) = non_blank(raw) else {
        return from_table.map(str::to_owned);
    };
    let given = given.to_ascii_uppercase();
    let shape_ok = given.len() <= STATE_LEN_MAX && given.bytes().all(|b| b.is_ascii_alphanumeric());
    if !shape_ok {
        errors.push(FieldError::new("state", "a state code such as BY or CA"));
        return None;
    }
    match from_table {
        Some(expected) if expected != given => {
            errors.push(FieldError::new("state", "does not match the postal code"));
            None
        }
        _ => Some(given),
    }
}

/// Problems with a free-text value: too long or carrying control characters (which break
/// CSV exports and buyers' CRMs).
fn text_problem(value: &str, len_max: usize) -> Option<String> {
    if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else if value.chars().count() > len_max {
        Some(format!("at most {len_max} characters"))
    } else {
        None
    }
}

fn required_text(errors: &mut Vec<FieldError>, field: &str, raw: Option<String>, len_max: usize) -> Option<String> {
    let Some(value) = non_blank(raw) else {
        errors.push(FieldError::new(field, MSG_REQUIRED));
        return None;
    };
    optional_text(errors, field, Some(value), len_max)
}

fn optional_text(errors: &mut Vec<FieldError>, field: &str, raw: Option<String>, len_max: usize) -> Option<String> {
    let value = non_blank(raw)?;
    match text_problem(&value, len_max) {
        Some(message) => {
            errors.push(FieldError::new(field, message));
            None
        }
        None => Some(value),
    }
}

fn check_email(errors: &mut Vec<FieldError>, raw: Option<String>) -> Option<String> {
    let Some(email) = non_blank(raw) else {
        errors.push(FieldError::new("email", MSG_REQUIRED));
        return None;
    };
    if email.len() > EMAIL_LEN_MAX {
        errors.push(FieldError::new("email", format!("at most {EMAIL_LEN_MAX} characters")));
        return None;
    }
    let email = email.to_ascii_lowercase();
    if email_syntax_ok(&email) {
        Some(email)
    } else {
        errors.push(FieldError::new("email", "not a valid email address"));
        None
    }
}

/// `local@domain`: a dot-atom local part (RFC 5322 atext, no leading, trailing or doubled
/// dots) and a DNS host name with at least one dot. Deliberately ASCII only: buyers' mail
/// and CRM systems commonly reject internationalized addresses.
pub fn email_syntax_ok(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= EMAIL_LOCAL_LEN_MAX
        && local.split('.').all(|atom| {
            !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b))
        });
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= EMAIL_LABEL_LEN_MAX
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-')
        });
    local_ok && domain_ok && email.len() <= EMAIL_LEN_MAX
}

fn check_phone(errors: &mut Vec<FieldError>, raw: Option<String>, country: Option<&str>) -> Option<String> {
    let Some(phone) = non_blank(raw) else {
        errors.push(FieldError::new("phone", MSG_REQUIRED));
        return None;
    };
    // Without a country the number cannot be read; the country's error says so.
    match normalize_e164(&phone, country?) {
        Ok(e164) => Some(e164),
        Err(PhoneError::Unparsable) => {
            errors.push(FieldError::new("phone", "not a phone number"));
            None
        }
        Err(PhoneError::InvalidForCountry(c)) => {
            let message = format!("not a valid phone number for {c}");
            errors.push(FieldError::new("phone", message));
            None
        }
    }
}

/// `key` cut to the longest valid field name, so an error path never echoes a huge key.
fn bounded_key(key: &str) -> &str {
    match key.char_indices().nth(FIELD_KEY_LEN_MAX) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

fn field_path(key: &str) -> String {
    format!("fields.{}", bounded_key(key))
}

fn is_pii_key(key: &str) -> bool {
    if key.len() > FIELD_KEY_LEN_MAX {
        return false;
    }
    let form: String = key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    PII_KEYS.contains(&form.as_str())
}

/// Whether a value (or an item of an array value) looks like an email address (an `@` with
/// a `.` after it) or is written like a phone number (see `has_phone_shape`).
fn has_email_shape(value: &Value) -> bool {
    match value {
        Value::String(s) => s.split_once('@').is_some_and(|(_, after)| after.contains('.')) || has_phone_shape(s),
        Value::Array(items) => items.iter().any(has_email_shape),
        _ => false,
    }
}

/// Written like a phone number: only digits, spaces and `+ - . / ( )`, 7 to 15 digits, and
/// either a leading `+` or `0` or digits in separated groups (`555-123-4567`).
///
/// Rationale: bare digit strings stay allowed (`"12345678"`: meter, policy and account
/// numbers, annual kWh), as do JSON numbers; a privacy check that refuses real data gets
/// switched off. A number written as people write phone numbers is refused in a ping.
fn has_phone_shape(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit() || " +-./()".contains(c)) {
        return false;
    }
    let digits = text.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let groups: Vec<usize> =
        text.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).map(str::len).collect();
    // Dates (2026-12-03, 03.12.2026) and decimals (25000.00) are not phone numbers.
    if matches!(groups.as_slice(), [4, 2, 2] | [2, 2, 4]) || (groups.len() == 2 && text.contains('.')) {
        return false;
    }
    let leading = text.trim_start_matches('(');
    leading.starts_with('+') || leading.starts_with('0') || groups.len() >= 2
}

/// `fields` as a JSON object whose keys are unique: a key given twice is refused (a map
/// would keep the last silently; a buyer and an auditor could read different values).
fn unique_fields<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Map<String, Value>>, D::Error> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = Option<Map<String, Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of custom fields")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
            inner.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = Map::new();
            while let Some((key, value)) = access.next_entry::<String, Value>()? {
                if map.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?} in fields")));
                }
                map.insert(key, value);
            }
            Ok(Some(map))
        }
    }
    deserializer.deserialize_option(Fields)
}

fn check_fields(errors: &mut Vec<FieldError>, fields: &Map<String, Value>, kind: Kind) {
    if fields.len() > FIELDS_MAX {
        // One error, not one per key: the request needs restructuring, not a key fix.
        errors.push(FieldError::new("fields", format!("at most {FIELDS_MAX} fields")));
        return;
    }
    for (key, value) in fields {
        let problem = if kind == Kind::Ping && is_pii_key(key) {
            Some(MSG_PII.to_owned())
        } else if !field_key_ok(key) {
            Some(format!("names are 1 to {FIELD_KEY_LEN_MAX} characters of [A-Za-z0-9_]"))
        } else if let Some(problem) = value_problem(value) {
            Some(problem)
        } else if kind == Kind::Ping && has_email_shape(value) {
            Some(MSG_PII.to_owned())
        } else {
            None
        };
        if let Some(message) = problem {
            errors.push(FieldError::new(field_path(key), message));
        }
    }
}

fn field_key_ok(key: &str) -> bool {
    (1..=FIELD_KEY_LEN_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn value_problem(value: &Value) -> Option<String> {
    match value {
        Value::Bool(_) | Value::Number(_) => None,
        Value::String(s) => string_problem(s),
        Value::Array(items) if items.len() > FIELD_ARRAY_LEN_MAX => {
            Some(format!("at most {FIELD_ARRAY_LEN_MAX} items"))
        }
        Value::Array(items) => items.iter().find_map(|item| match item {
            Value::Bool(_) | Value::Number(_) => None,
            Value::String(s) => string_problem(s),
            _ => Some("array items must be strings, numbers or booleans".to_owned()),
        }),
        Value::Null | Value::Object(_) => Some("must be a string, number, boolean or array of those".to_owned()),
    }
}

fn string_problem(s: &str) -> Option<String> {
    if s.chars().any(char::is_control) {
        // NUL, ESC, CR/LF and the like end up in buyers' CRMs, CSV exports and terminals.
        return Some("must not contain control characters".to_owned());
    }
    (s.chars().count() > FIELD_STRING_LEN_MAX).then(|| format!("at most {FIELD_STRING_LEN_MAX} characters"))
}

fn value_non_empty(value: &Value) -> bool {
    match value {
        Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Null | Value::Object(_) => false,
    }
}

/// The vertical's `required_fields`: a top-level name is checked through `present`, any
/// other name (or `fields.<name>`) in the custom fields. A ping checks only custom fields:
/// it has no person to check. `consent.tcpa` is handled by the lead check itself.
fn check_required(
    errors: &mut Vec<FieldError>,
    vertical: &Vertical,
    fields: &Map<String, Value>,
    kind: Kind,
    present: impl Fn(&str) -> bool,
) {
    for name in &vertical.required_fields {
        if name == "consent.tcpa" {
            continue;
        }
        if is_top_level_field(name.as_str()) {
            let reported = errors.iter().any(|e| e.field == *name);
            if kind == Kind::Lead && !present(name) && !reported {
                errors.push(FieldError::new(name.as_str(), MSG_REQUIRED));
            }
            continue;
        }
        let custom = name.strip_prefix("fields.").unwrap_or(name);
        let path = field_path(custom);
        let reported = errors.iter().any(|e| e.field == path);
        if !fields.get(custom).is_some_and(value_non_empty) && !reported {
            errors.push(FieldError::new(path, MSG_REQUIRED));
        }
    }
}

fn check_consent(errors: &mut Vec<FieldError>, consent: &Consent) {
    if let Some(url) = &consent.certificate_url {
        let ok = url.len() <= URL_LEN_MAX
            && (url.starts_with("http://") || url.starts_with("https://"))
            && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !ok {
            errors.push(FieldError::new("consent.certificate_url", "an absolute http(s) URL"));
        }
    }
    if let Some(ip) = &consent.ip {
        if ip.parse::<IpAddr>().is_err() {
            errors.push(FieldError::new("consent.ip", "an IPv4 or IPv6 address"));
        }
    }
    if let Some(at) = &consent.captured_at {
        if chrono::DateTime::parse_from_rfc3339(at).is_err() {
            errors.push(FieldError::new("consent.captured_at", "an RFC 3339 timestamp such as 2026-05-01T12:00:00Z"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_shaped_values_are_told_from_numbers_dates_and_amounts() {
        for phone in ["089 1234567", "+49 89 1234567", "0891234567", "(089) 123-4567", "555-123-4567", "+14155550100"] {
            assert!(has_phone_shape(phone), "{phone}");
        }
        for other in ["12345678", "4500", "2026-12-03", "03.12.2026", "25000.00", "3.5", "tile", "1234567890123456", ""]
        {
            assert!(!has_phone_shape(other), "{other}");
        }
    }
    use proptest::prelude::*;
    use serde_json::json;

    fn vertical(extra: Value) -> Vertical {
        let mut v = json!({"name": "solar", "model": "ping_post"});
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        serde_json::from_value(v).expect("test vertical")
    }

    fn solar() -> Vertical {
        vertical(json!({}))
    }

    fn table() -> &'static PostalTable {
        PostalTable::bundled()
    }

    fn de_lead() -> LeadInput {
        LeadInput {
            vertical: Some("solar".into()),
            first_name: Some(" Anna ".into()),
            last_name: Some("Müller-Lüdenscheidt".into()),
            email: Some("Anna.Mueller@Example.DE".into()),
            phone: Some("089 1234567".into()),
            zip: Some("80331".into()),
            country: Some("de".into()),
            fields: Some(
                json!({"roof_type": "gable", "kwh": 4500, "own": true, "tags": ["a", 1]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ..LeadInput::default()
        }
    }

    fn de_ping() -> PingInput {
        PingInput {
            vertical: Some("solar".into()),
            zip: Some("80331".into()),
            country: Some("DE".into()),
            ..PingInput::default()
        }
    }

    fn lead_errors(input: LeadInput, v: &Vertical) -> Vec<FieldError> {
        match validate_lead(input, v, table()) {
            Ok(lead) => panic!("accepted {lead:?}"),
            Err(errors) => errors,
        }
    }

    fn ping_errors(input: PingInput, v: &Vertical) -> Vec<FieldError> {
        match validate_ping(input, v, table()) {
            Ok(ping) => panic!("accepted {ping:?}"),
            Err(errors) => errors,
        }
    }

    fn fields(value: Value) -> Option<Map<String, Value>> {
        value.as_object().cloned()
    }

    #[test]
    fn valid_de_lead_is_normalized() {
        let lead = validate_lead(de_lead(), &solar(), table()).expect("valid");
        assert_eq!(lead.vertical, "solar");
        assert_eq!(lead.first_name, "Anna");
        assert_eq!(lead.email, "anna.mueller@example.de");
        assert_eq!(lead.phone, "+49891234567");
        assert_eq!((lead.country.as_str(), lead.zip.as_str()), ("DE", "80331"));
        assert_eq!(lead.state.as_deref(), Some("BY"));
        assert!((lead.location.lat - 48.13).abs() < 0.1);
        assert_eq!(lead.dedup_keys(), ["phone:+49891234567".to_owned(), "email:anna.mueller@example.de".to_owned()]);
    }

    #[test]
    fn valid_us_lead_with_zip4_and_default_country() {
        let input = LeadInput {
            vertical: Some("solar".into()),
            first_name: Some("John".into()),
            last_name: Some("Doe".into()),
            email: Some("john@example.com".into()),
            phone: Some("(415) 555-2671".into()),
            zip: Some("90012-1234".into()),
            state: Some("ca".into()),
            city: Some("Los Angeles".into()),
            consent: Some(Consent {
                tcpa: true,
                certificate_url: Some("https://cert.trustedform.com/abc123".into()),
                ip: Some("2001:db8::1".into()),
                captured_at: Some("2026-05-01T12:00:00Z".into()),
            }),
            external_id: Some("crm-42".into()),
            ..LeadInput::default()
        };
        let v = vertical(json!({"default_country": "US", "required_fields": ["city", "consent.tcpa"]}));
        let lead = validate_lead(input, &v, table()).expect("valid");
        assert_eq!(lead.country, "US");
        assert_eq!(lead.zip, "90012");
        assert_eq!(lead.state.as_deref(), Some("CA"));
        assert_eq!(lead.phone, "+14155552671");
        assert_eq!(lead.external_id.as_deref(), Some("crm-42"));
    }

    #[test]
    fn empty_lead_reports_every_required_field() {
        let errors = lead_errors(LeadInput::default(), &solar());
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ("vertical", "required"),
                ("country", "required"),
                ("zip", "required"),
                ("first_name", "required"),
                ("last_name", "required"),
                ("email", "required"),
                ("phone", "required"),
            ]
        );
    }

    /// One broken property of an otherwise valid lead → exactly that error.
    #[test]
    fn each_lead_rule_reports_its_field() {
        type Edit = fn(&mut LeadInput);
        let cases: Vec<(Edit, &str, &str)> = vec![
            (|l| l.vertical = Some("loans".into()), "vertical", "unknown vertical"),
            (|l| l.country = Some("Germany".into()), "country", "an ISO 3166-1 alpha-2 code such as DE"),
            (|l| l.zip = Some("8033".into()), "zip", "not a valid postal code for DE"),
            (|l| l.zip = Some("00000".into()), "zip", "unknown postal code for DE"),
            (|l| l.zip = Some("  ".into()), "zip", "required"),
            (|l| l.state = Some("HH".into()), "state", "does not match the postal code"),
            (|l| l.state = Some("B-Y".into()), "state", "a state code such as BY or CA"),
            (|l| l.first_name = Some("".into()), "first_name", "required"),
            (|l| l.first_name = Some("An\u{0}na".into()), "first_name", "must not contain control characters"),
            (|l| l.last_name = Some("y".repeat(101)), "last_name", "at most 100 characters"),
            (|l| l.email = Some("anna@example".into()), "email", "not a valid email address"),
            (|l| l.email = Some("a@b@example.de".into()), "email", "not a valid email address"),
            (|l| l.email = Some("anna@-x.de".into()), "email", "not a valid email address"),
            (|l| l.email = Some("an na@x.de".into()), "email", "not a valid email address"),
            (|l| l.email = Some(format!("{}@x.de", "a".repeat(65))), "email", "not a valid email address"),
            (|l| l.email = Some(format!("a@{}.de", "b".repeat(260))), "email", "at most 254 characters"),
            (|l| l.phone = Some("call me".into()), "phone", "not a phone number"),
            (|l| l.phone = Some("089 12".into()), "phone", "not a valid phone number for DE"),
            (|l| l.city = Some("c".repeat(201)), "city", "at most 200 characters"),
            (|l| l.street = Some("Main St\n1".into()), "street", "must not contain control characters"),
            (|l| l.external_id = Some("e".repeat(129)), "external_id", "at most 128 characters"),
            (
                |l| l.fields = fields(json!({"roof-type": "gable"})),
                "fields.roof-type",
                "names are 1 to 64 characters of [A-Za-z0-9_]",
            ),
            (
                |l| l.fields = fields(json!({"roof": {"type": "gable"}})),
                "fields.roof",
                "must be a string, number, boolean or array of those",
            ),
            (
                |l| l.fields = fields(json!({"roof": null})),
                "fields.roof",
                "must be a string, number, boolean or array of those",
            ),
            (|l| l.fields = fields(json!({"note": "n".repeat(1001)})), "fields.note", "at most 1000 characters"),
            (|l| l.fields = fields(json!({"tags": vec![1; 51]})), "fields.tags", "at most 50 items"),
            (
                |l| l.fields = fields(json!({"tags": [[1]]})),
                "fields.tags",
                "array items must be strings, numbers or booleans",
            ),
            (
                |l| {
                    let many: Map<String, Value> = (0..51).map(|i| (format!("f{i}"), json!(i))).collect();
                    l.fields = Some(many);
                },
                "fields",
                "at most 50 fields",
            ),
            (
                |l| {
                    l.consent = Some(Consent {
                        tcpa: true,
                        certificate_url: Some("ftp://x.de/c".into()),
                        ip: None,
                        captured_at: None,
                    })
                },
                "consent.certificate_url",
                "an absolute http(s) URL",
            ),
            (
                |l| {
                    l.consent = Some(Consent {
                        tcpa: true,
                        certificate_url: None,
                        ip: Some("300.1.1.1".into()),
                        captured_at: None,
                    })
                },
                "consent.ip",
                "an IPv4 or IPv6 address",
            ),
            (
                |l| {
                    l.consent = Some(Consent {
                        tcpa: true,
                        certificate_url: None,
                        ip: None,
                        captured_at: Some("yesterday".into()),
                    })
                },
                "consent.captured_at",
                "an RFC 3339 timestamp such as 2026-05-01T12:00:00Z",
            ),
        ];
        for (edit, field, message) in cases {
            let mut input = de_lead();
            edit(&mut input);
            let errors = lead_errors(input, &solar());
            assert_eq!(errors, vec![FieldError::new(field, message)], "{field}");
        }
    }

    #[test]
    fn required_fields_of_the_vertical() {
        let v = vertical(json!({
            "required_fields": ["roof_type", "fields.kwh", "orientation", "city", "street",
                                "state", "email", "consent", "consent.tcpa"]
        }));
        let errors = lead_errors(de_lead(), &v);
        let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        // roof_type and kwh are present; state comes from the postal code.
        assert_eq!(got, ["fields.orientation", "city", "street", "consent", "consent.tcpa"]);

        let mut input = de_lead();
        input.fields = fields(json!({"roof_type": "  ", "kwh": 1, "orientation": []}));
        input.city = Some("München".into());
        input.street = Some("Marienplatz 1".into());
        input.consent = Some(Consent { tcpa: false, certificate_url: None, ip: None, captured_at: None });
        let errors = lead_errors(input, &v);
        let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(got, ["fields.roof_type", "fields.orientation", "consent.tcpa"]);
    }

    #[test]
    fn lead_fields_may_carry_pii_but_the_anonymized_view_drops_it() {
        let mut input = de_lead();
        input.fields = fields(json!({"roof_type": "gable", "Email": "x", "contact": "a@b.de"}));
        let lead = validate_lead(input, &solar(), table()).expect("valid");
        let ping = lead.anonymized();
        assert_eq!(ping.fields, fields(json!({"roof_type": "gable"})).unwrap_or_default());
        assert_eq!((ping.zip.as_str(), ping.state.as_deref()), ("80331", Some("BY")));
        let json = serde_json::to_string(&ping).expect("serializes");
        for pii in ["Anna", "Müller", "anna.mueller", "+49891234567", "a@b.de"] {
            assert!(!json.contains(pii), "{pii} leaked into {json}");
        }
    }

    #[test]
    fn valid_ping_and_matching_lead() {
        let mut input = de_ping();
        input.fields = fields(json!({"roof_type": "gable", "kwh": 12345678}));
        let ping = validate_ping(input, &solar(), table()).expect("valid");
        assert_eq!(ping.state.as_deref(), Some("BY"));
        let lead = validate_lead(de_lead(), &solar(), table()).expect("valid");
        assert_eq!(lead.matches_ping(&ping), Ok(()));
        assert_eq!(lead.matches_ping(&lead.anonymized()), Ok(()));

        let mut other = ping.clone();
        other.zip = "20095".into();
        other.vertical = "loans".into();
        let errors = lead.matches_ping(&other).expect_err("differs");
        assert_eq!(
            errors,
            [FieldError::new("vertical", "does not match the ping"), FieldError::new("zip", "does not match the ping"),]
        );
    }

    #[test]
    fn ping_refuses_personal_data() {
        let mut input = de_ping();
        for key in ["email", "first_name", "phone", "ip", "address", "coupon"] {
            input.extra.insert(key.into(), json!("x"));
        }
        input.fields = fields(json!({
            "fullName": "Anna", "e_mail": "x", "contact": "anna@example.de",
            "alts": ["x", "b@c.de"], "kwh": "4500000", "meter": 1234567890
        }));
        let errors = ping_errors(input, &solar());
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ("address", MSG_PII),
                ("coupon", "unknown field"),
                ("email", MSG_PII),
                ("first_name", MSG_PII),
                ("ip", MSG_PII),
                ("phone", MSG_PII),
                ("fields.alts", MSG_PII),
                ("fields.contact", MSG_PII),
                ("fields.e_mail", MSG_PII),
                ("fields.fullName", MSG_PII),
            ]
        );
    }

    #[test]
    fn ping_required_fields_are_custom_only() {
        let v = vertical(json!({"required_fields": ["email", "city", "roof_type"]}));
        let errors = ping_errors(de_ping(), &v);
        assert_eq!(errors, [FieldError::new("fields.roof_type", "required")]);
    }

    #[test]
    fn ping_location_errors() {
        let mut input = de_ping();
        input.country = None;
        input.vertical = None;
        let errors = ping_errors(input, &solar());
        let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(got, ["vertical", "country"]);

        let mut input = de_ping();
        input.country = Some("FR".into());
        input.zip = Some("75001".into());
        let errors = ping_errors(input, &solar());
        assert_eq!(errors, [FieldError::new("zip", "unknown postal code for FR")]);
    }

    #[test]
    fn error_list_is_bounded() {
        let mut input = de_ping();
        for i in 0..500 {
            input.extra.insert(format!("k{i}"), json!(1));
        }
        input.extra.insert("k".repeat(10_000), json!(1));
        let errors = ping_errors(input, &solar());
        assert_eq!(errors.len(), ERRORS_MAX);
        assert!(errors.iter().all(|e| e.field.len() <= FIELD_KEY_LEN_MAX));
    }

    #[test]
    fn email_syntax() {
        for ok in ["a@b.de", "first.last+tag@sub.example.co.uk", "x_y-z@a-b.io", "o'neil@x.ie"] {
            assert!(email_syntax_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "@b.de",
            "a@",
            "a@b",
            "a@.de",
            "a@b..de",
            ".a@b.de",
            "a.@b.de",
            "a..b@c.de",
            "a@b-.de",
            "a@b_c.de",
            "a b@c.de",
            "ä@b.de",
            "a@b.de.",
            "a\"b@c.de",
        ] {
            assert!(!email_syntax_ok(bad), "{bad}");
        }
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            ".{0,40}".prop_map(Some),
            "[0-9 +()-]{0,20}".prop_map(Some),
            prop::sample::select(vec!["80331", "90012", "DE", "US", "solar", "a@b.de", "089 1234567"])
                .prop_map(|s| Some(s.to_owned())),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_map() -> impl Strategy<Value = Option<Map<String, Value>>> {
        prop::option::of(
            prop::collection::btree_map(".{0,10}", json_value(), 0..6).prop_map(|m| m.into_iter().collect()),
        )
    }

    prop_compose! {
        fn lead_input()(
            a in (text(), text(), text(), text(), text(), text(), text()),
            b in (text(), text(), text(), json_map()),
        ) -> LeadInput {
            LeadInput {
                vertical: a.0, first_name: a.1, last_name: a.2, email: a.3, phone: a.4,
                zip: a.5, country: a.6, state: b.0, city: b.1, street: b.2, fields: b.3,
                consent: None, external_id: None,
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_leads_never_panic(input in lead_input(), ext in text(), url in text(), ip in text(), at in text()) {
            let mut input = input;
            input.external_id = ext;
            input.consent = Some(Consent { tcpa: true, certificate_url: url, ip, captured_at: at });
            let v = vertical(json!({"required_fields": ["roof_type", "city"]}));
            match validate_lead(input, &v, table()) {
                Ok(lead) => {
                    prop_assert!(lead.phone.starts_with('+'));
                    prop_assert!(email_syntax_ok(&lead.email));
                    prop_assert!(lead.anonymized().fields.len() <= lead.fields.len());
                }
                Err(errors) => prop_assert!(!errors.is_empty() && errors.len() <= ERRORS_MAX),
            }
        }

        #[test]
        fn arbitrary_pings_never_panic(
            vertical_name in text(), zip in text(), country in text(), state in text(),
            fields in json_map(), extra in json_map(),
        ) {
            let input = PingInput {
                vertical: vertical_name, zip, country, state, fields,
                extra: extra.unwrap_or_default(),
            };
            match validate_ping(input, &solar(), table()) {
                Ok(ping) => {
                    for (k, v) in &ping.fields {
                        prop_assert!(!is_pii_key(k) && !has_email_shape(v));
                    }
                }
                Err(errors) => prop_assert!(!errors.is_empty() && errors.len() <= ERRORS_MAX),
            }
        }

        #[test]
        fn valid_base_lead_survives_any_valid_custom_field(key in "[a-z][a-z0-9_]{0,20}", n in any::<i64>()) {
            let mut input = de_lead();
            input.fields = fields(json!({ key: n }));
            prop_assert!(validate_lead(input, &solar(), table()).is_ok());
        }
    }
}
