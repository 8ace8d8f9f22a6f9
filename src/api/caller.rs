//! Who is calling: the party behind a public request's API key, resolved once by admission
//! and read by the handlers as `Supplier` or `Buyer` extractors; and the operator's admin
//! token on the ops listener, compared in constant time.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderMap;

use super::error::ApiError;
use super::AppState;
use crate::domain::market::Party;
use leadrouter_http::auth::bearer;

/// The party whose key a public request carries, put in the request's extensions by
/// admission (`api::admission::admit`).
#[derive(Debug, Clone)]
pub struct Caller(pub Party);

impl Caller {
    /// A missing or unknown key is 401, answered before any of the body is read.
    pub fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let key = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        let party = state.router.market().party(key).cloned().ok_or_else(ApiError::unauthorized)?;
        Ok(Caller(party))
    }
}

/// Taken out of the extensions, not cloned: a handler reads its caller once.
fn caller(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    match parts.extensions.remove::<Caller>() {
        Some(caller) => Ok(caller),
        None => Caller::identify(state, &parts.headers),
    }
}

/// An active supplier within its rate limit.
pub struct Supplier(pub String);

impl FromRequestParts<Arc<AppState>> for Supplier {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Supplier, ApiError> {
        let id = match caller(parts, state)?.0 {
            Party::Buyer(_) => {
                return Err(ApiError::forbidden("this endpoint is for suppliers; the key belongs to a buyer"))
            }
            Party::Supplier(id) => id,
        };
        let supplier = state.router.market().supplier(&id).cloned().ok_or_else(ApiError::unauthorized)?;
        if !supplier.active {
            return Err(ApiError::forbidden("this supplier is not active"));
        }
        if let Some(rate) = supplier.rate_limit_per_s {
            if !state.rate_limits.allow(&id, rate, std::time::Instant::now()) {
                return Err(ApiError::rate_limited());
            }
        }
        Ok(Supplier(id))
    }
}

/// A buyer.
pub struct Buyer(pub String);

impl FromRequestParts<Arc<AppState>> for Buyer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Buyer, ApiError> {
        match caller(parts, state)?.0 {
            Party::Supplier(_) => {
                Err(ApiError::forbidden("this endpoint is for buyers; the key belongs to a supplier"))
            }
            Party::Buyer(id) => Ok(Buyer(id)),
        }
    }
}

/// The admin API's gate: the operator's token, or 401 before anything else is read.
pub async fn operator(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The token is compared in constant time (`leadrouter_http::auth`).
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match leadrouter_http::auth::holds_token(headers, &state.admin_token) {
        true => Ok(()),
        false => Err(ApiError::unauthorized()),
    }
}
