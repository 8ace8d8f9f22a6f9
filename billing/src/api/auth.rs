//! The admin token (`Authorization: Bearer <token>`) that guards everything under
//! `/billing/v1/`: a middleware layered on those routes only, so `/healthz` and `/metrics`
//! stay open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Lets the request through only with the admin token; 401 otherwise.
pub async fn admin_only(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if holds_token(request.headers(), &state.token) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Whether the request carries exactly `Bearer <token>` (the scheme as written, one space).
fn holds_token(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the bytes compared, so the answer's timing does not tell how much of
    // a guess was right (the length may show; the token's length is no secret).
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).expect("a header value"));
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = "billing-admin-token-0123456789";
        assert!(holds_token(&with("Bearer billing-admin-token-0123456789"), token));
        for refused in [
            "Bearer billing-admin-token-012345678",
            "Bearer billing-admin-token-01234567890",
            "bearer billing-admin-token-0123456789",
            "Bearer  billing-admin-token-0123456789",
            "billing-admin-token-0123456789",
            "Bearer ",
            "",
        ] {
            assert!(!holds_token(&with(refused), token), "{refused:?}");
        }
        assert!(!holds_token(&HeaderMap::new(), token));
    }
}
