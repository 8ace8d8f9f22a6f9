//! Phone numbers to E.164. (STUB: helper fills in.)

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not a phone number")]
    Unparsable,
    #[error("not a valid number for {0}")]
    InvalidForCountry(String),
}

/// Normalizes `raw` ("089 1234567", "+49 89 1234567", "(415) 555-2671") to E.164
/// ("+49891234567") for `country` (ISO alpha-2).
pub fn normalize_e164(_raw: &str, _country: &str) -> Result<String, PhoneError> {
    todo!()
}
