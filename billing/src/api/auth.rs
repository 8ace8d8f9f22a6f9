//! The admin token (`Authorization: Bearer <token>`) that guards everything under
//! `/billing/v1/`: a middleware layered on those routes only, so `/healthz` and `/metrics`
//! stay open. The token is read and compared as the router's admin API does
//! (`leadrouter_http::auth`: the scheme in any case, constant time).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Lets the request through only with the admin token; 401 otherwise.
pub async fn admin_only(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if leadrouter_http::auth::holds_token(request.headers(), &state.token) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}
