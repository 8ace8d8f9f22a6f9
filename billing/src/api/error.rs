//! `ApiError`: every refusal the API gives, and the one place it becomes an HTTP answer
//! with the error JSON of DESIGN §4 (`{"error":{"code","message","details":[...]}}`).
//!
//! Handlers, extractors, the token check and the fallbacks all answer with an `ApiError`,
//! so no refusal can take another shape (axum's own rejections are plain text; none of them
//! reaches a client).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::engine::payments::PaymentError;
use crate::engine::reports::ReportError;
use crate::store::StoreError;

/// An error answer: status, code, message and field details.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<(String, String)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Vec::new() }
    }

    /// A 422 naming the field at fault.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("{field}: {message}"),
            details: vec![(field.to_string(), message)],
        }
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub(crate) fn method_not_allowed() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown admin token")
    }

    /// A failure of ours; the message says what, the worker's log says why.
    pub(crate) fn internal(message: &str) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let details: Vec<Value> =
            self.details.iter().map(|(field, message)| json!({"field": field, "message": message})).collect();
        let body = json!({"error": {"code": self.code, "message": self.message, "details": details}});
        (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string())
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        tracing::error!(%error, "billing store");
        ApiError::internal("the billing database failed; see the worker's log")
    }
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> ApiError {
        match error {
            ReportError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            ReportError::Invalid { field, message } => ApiError::invalid(field, message),
            ReportError::Store(store) => store.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> ApiError {
        match error {
            PaymentError::UnknownInvoice(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            PaymentError::Overpayment { .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "overpayment",
                message: error.to_string(),
                details: vec![("amount".into(), error.to_string())],
            },
            PaymentError::ReferenceReused { .. } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_reference", error.to_string())
            }
            PaymentError::Store(store) => store.into(),
        }
    }
}
