//! Request and response plumbing shared by every route: bounded body reads, content types,
//! query strings, JSON answers.

use std::time::Instant;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
pub use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::model::FieldError;

use super::error::{from_json_error, ApiError};

/// DESIGN §4: JSON bodies up to 64 KiB.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// A bulk CSV of 10,000 leads at ~400 bytes a row, with room to spare.
pub const BULK_BODY_LIMIT_BYTES: usize = 16 * 1024 * 1024;

pub type ApiResponse = Response;

/// A request's headers and its body, which admission has already read within its limits:
/// taken by value, so neither is copied on the way to the handler.
pub struct Buffered {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Buffered {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, _state: &S) -> Result<Buffered, ApiError> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|_| ApiError::malformed("request body could not be read"))?;
        Ok(Buffered { headers: parts.headers, body })
    }
}

/// Reads a whole body of at most `limit` bytes by `deadline` (set from the start of the
/// request, so a body sent a byte at a time cannot stretch it).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize, deadline: Instant) -> Result<Bytes, ApiError> {
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
    // Tracking the path costs an allocation per key, so a body is read without it first;
    // only one that fails is read again (deterministically, to the same failure) for the
    // path the error names.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(from_json_error)?;
    deserializer.end().map_err(|e| ApiError::new(400, "malformed_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

pub fn json<T: Serialize>(status: u16, value: &T) -> ApiResponse {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            // A trailing newline keeps terminals and line-based tools tidy; still valid JSON.
            body.push(b'\n');
            bytes_response(status, "application/json", Bytes::from(body))
        }
        Err(_) => ApiError::new(500, "internal", "could not encode the answer").into_response(),
    }
}

pub fn bytes_response(status: u16, content_type: &'static str, body: Bytes) -> ApiResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn empty(status: u16) -> ApiResponse {
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT).into_response()
}

/// A list endpoint's query string: `after` (a cursor from an earlier `next`), `limit`, and
/// the filters in `filters`; any other name is a 422, so a typo is not silently ignored.
/// Names and values are percent-decoded (`serde_urlencoded`, the one query parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: usize,
    pub filters: Vec<(String, String)>,
}

impl ListQuery {
    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }
}

pub fn list_query(
    query: Option<&str>,
    filters: &[&str],
    limit_default: usize,
    limit_max: usize,
) -> Result<ListQuery, ApiError> {
    let mut list = ListQuery { after: None, limit: limit_default, filters: Vec::new() };
    let mut errors = Vec::new();
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "after" if !value.is_empty() => list.after = Some(value),
            "after" => {}
            "limit" => match value.parse() {
                Ok(n) if (1..=limit_max).contains(&n) => list.limit = n,
                _ => errors.push(FieldError::new("limit", format!("between 1 and {limit_max}"))),
            },
            known if filters.contains(&known) => list.filters.push((name, value)),
            _ => errors.push(FieldError::new(name, "unknown parameter")),
        }
    }
    if errors.is_empty() {
        Ok(list)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// A query string's pairs, in order, percent-decoded.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::invalid(vec![FieldError::new("query", format!("unreadable query string: {e}"))]))
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn a_good_body_parses_and_a_bad_one_names_where_it_failed() {
        let parsed: Outer = parse_json(br#"{"name":"a","inner":{"count":3}}"#).expect("a good body");
        assert_eq!(parsed, Outer { name: "a".into(), inner: Inner { count: 3 } });

        // The failures are read again with the path tracked: the error still names it.
        let wrong_type = parse_json::<Outer>(br#"{"name":"a","inner":{"count":"three"}}"#).unwrap_err();
        assert_eq!((wrong_type.status, wrong_type.code.as_ref()), (400, "invalid_type"));
        assert_eq!(wrong_type.details[0].field, "inner.count");

        let missing = parse_json::<Outer>(br#"{"name":"a","inner":{}}"#).unwrap_err();
        assert_eq!((missing.status, missing.code.as_ref()), (422, "validation_failed"));
        assert_eq!(missing.details[0].field, "inner.count");

        for malformed in [&br#"{"name":"a","inner":{"count":3}} trailing"#[..], br#"{"name":"#, b"  "] {
            let error = parse_json::<Outer>(malformed).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (400, "malformed_json"),
                "{:?}",
                String::from_utf8_lossy(malformed)
            );
        }
    }
}
