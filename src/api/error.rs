//! The one mapping from errors to HTTP status and the error JSON of DESIGN §4:
//! `{"error":{"code","message","details":[{"field","message"}]}}`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::model::FieldError;
use crate::engine::ports::idempotency::Refusal;
use crate::engine::EngineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: Cow<'static, str>,
    pub message: String,
    pub details: Vec<FieldError>,
}

/// Every refusal's JSON (DESIGN §4), as the OpenAPI document describes it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorAnswer {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code (`validation_failed`, `unauthorized`, ...).
    #[schema(value_type = String, example = "validation_failed")]
    pub code: Cow<'static, str>,
    #[schema(example = "the request is not valid")]
    pub message: String,
    /// The fields at fault, each with its path; empty when no field is.
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: Cow::Borrowed(code), message: message.into(), details: Vec::new() }
    }

    /// An error whose code was read back (a kept answer) rather than written here.
    pub fn owning_code(status: u16, code: String, message: String) -> ApiError {
        ApiError { status, code: Cow::Owned(code), message, details: Vec::new() }
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> ApiError {
        self.details = details;
        self
    }

    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "malformed_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "unauthorized", "missing or unknown API key")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "no such resource")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "method_not_allowed", "method not allowed on this resource")
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(413, "body_too_large", format!("request body over the limit of {limit} bytes"))
    }

    pub fn unsupported_media_type(expected: &str) -> ApiError {
        ApiError::new(415, "unsupported_media_type", format!("Content-Type must be {expected}"))
    }

    pub fn invalid(details: Vec<FieldError>) -> ApiError {
        ApiError::new(422, "validation_failed", "the request is not valid").with_details(details)
    }

    pub fn rate_limited() -> ApiError {
        ApiError::new(429, "rate_limited", "too many requests; slow down")
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(503, code, message)
    }

    /// The error JSON's `error` object (also a failed bulk row's).
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.clone(), message: self.message.clone(), details: self.details.clone() }
    }

    pub fn to_json(&self) -> Bytes {
        let envelope = ErrorAnswer { error: self.body() };
        let mut json =
            serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\"}}".to_vec());
        json.push(b'\n');
        Bytes::from(json)
    }
}

/// The one place an error becomes an answer: its status, the error JSON, and for a 401 the
/// scheme the client should use.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.to_json()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == 401 {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Invalid(details) => Refusal::Invalid { details }.into(),
            EngineError::NotFound(what) => Refusal::NotFound { what: what.to_string() }.into(),
            EngineError::Refused { code, message } => ApiError::new(422, code, message),
            EngineError::PingExpired => Refusal::PingExpired.into(),
            EngineError::Conflict { code, message } => ApiError::new(409, code, message),
            EngineError::Unavailable(message) => {
                tracing::error!(%message, "storage unavailable");
                ApiError::unavailable("unavailable", "temporarily unable to record; retry later")
            }
            EngineError::InProgress => {
                ApiError::unavailable("request_in_progress", EngineError::InProgress.to_string())
            }
            EngineError::Interrupted => ApiError::new(500, "internal", EngineError::Interrupted.to_string()),
        }
    }
}

/// A refusal kept under an `Idempotency-Key`, answered again as the engine's error it was
/// made from is answered.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Invalid { details } => ApiError::invalid(details),
            Refusal::NotFound { what } => ApiError::new(404, "not_found", format!("{what} not found")),
            Refusal::PingExpired => ApiError::new(410, "ping_expired", "the ping expired; ping again"),
            Refusal::Refused { code, message } => ApiError::owning_code(422, code, message),
            Refusal::Conflict { code, message } => ApiError::owning_code(409, code, message),
        }
    }
}

/// A serde error while reading a JSON body: syntax → malformed JSON, data → wrong type, both
/// 400 with the field path when there is one.
pub fn from_json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let text = inner.to_string();
    if let Some(rest) = text.strip_prefix("missing field `") {
        // A missing required field is a validation failure (422), not a type error.
        let name = rest.split('`').next().unwrap_or_default();
        let field = if path == "." { name.to_string() } else { format!("{path}.{name}") };
        return ApiError::invalid(vec![FieldError::new(field, "required")]);
    }
    match inner.classify() {
        // A string where an amount goes is the right type; its content is what is wrong.
        serde_json::error::Category::Data
            if text.starts_with("invalid amount") || text.starts_with("duplicate key") =>
        {
            let field = if path == "." { String::new() } else { path };
            let message = text.split(" at line ").next().unwrap_or(&text).to_string();
            ApiError::invalid(vec![FieldError::new(field, message)])
        }
        serde_json::error::Category::Data => {
            let field = if path == "." { String::new() } else { path };
            ApiError::new(400, "invalid_type", "a field has the wrong type")
                .with_details(vec![FieldError::new(field, inner.to_string())])
        }
        _ => ApiError::new(400, "malformed_json", format!("malformed JSON: {inner}")),
    }
}
