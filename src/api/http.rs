//! Request and response plumbing shared by every route: bounded body reads, content types,
//! bearer tokens, JSON answers.

use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
pub use http::StatusCode;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::model::FieldError;

use super::error::{from_json_error, ApiError};

/// DESIGN §4: JSON bodies up to 64 KiB.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// A bulk CSV of 10,000 leads at ~400 bytes a row, with room to spare.
pub const BULK_BODY_LIMIT_BYTES: usize = 16 * 1024 * 1024;

pub type ApiResponse = Response<Full<Bytes>>;

/// Reads a whole body of at most `limit` bytes by `deadline` (set from the start of the
/// request, so a body sent a byte at a time cannot stretch it).
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match tokio::time::timeout_at(deadline.into(), Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::new(408, "body_timeout", "the request body was not received in time")),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large(limit))
        }
        Ok(Err(_)) => Err(ApiError::malformed("request body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Checks the media type, ignoring parameters such as `charset=utf-8`.
pub fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let actual = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = actual.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(expected))
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(400, "malformed_json", "empty body; a JSON object is expected"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(from_json_error)?;
    deserializer.end().map_err(|e| ApiError::new(400, "malformed_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub fn json<T: Serialize>(status: u16, value: &T) -> ApiResponse {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            // A trailing newline keeps terminals and line-based tools tidy; still valid JSON.
            body.push(b'\n');
            bytes_response(status, "application/json", Bytes::from(body))
        }
        Err(_) => error(&ApiError::new(500, "internal", "could not encode the answer")),
    }
}

pub fn bytes_response(status: u16, content_type: &'static str, body: Bytes) -> ApiResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn error(error: &ApiError) -> ApiResponse {
    let mut response = bytes_response(error.status, "application/json", error.to_json());
    if error.status == 401 {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub fn empty(status: u16) -> ApiResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    response
}

/// A list endpoint's query string: `after` (a cursor from an earlier `next`), `limit`, and
/// the filters in `filters`; any other name is a 422, so a typo is not silently ignored.
pub struct ListQuery<'a> {
    pub after: Option<&'a str>,
    pub limit: usize,
    pub filters: Vec<(&'a str, &'a str)>,
}

pub fn list_query<'a>(
    query: Option<&'a str>,
    filters: &[&str],
    limit_default: usize,
    limit_max: usize,
) -> Result<ListQuery<'a>, ApiError> {
    let mut list = ListQuery { after: None, limit: limit_default, filters: Vec::new() };
    let mut errors = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" if !value.is_empty() => list.after = Some(value),
            "after" => {}
            "limit" => match value.parse() {
                Ok(n) if (1..=limit_max).contains(&n) => list.limit = n,
                _ => errors.push(FieldError::new("limit", format!("between 1 and {limit_max}"))),
            },
            _ if filters.contains(&name) => list.filters.push((name, value)),
            _ => errors.push(FieldError::new(name.to_string(), "unknown parameter")),
        }
    }
    if errors.is_empty() {
        Ok(list)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// A numeric cursor (`after`), 0 when absent.
pub fn numeric_cursor(after: Option<&str>) -> Result<u64, ApiError> {
    match after {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::invalid(vec![FieldError::new("after", "a cursor from an earlier answer's `next`")])),
    }
}
