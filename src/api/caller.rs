//! Who is calling: the party behind a public request's API key, resolved once by admission
//! and read by the handlers as `Supplier` or `Buyer` extractors; and the operator's admin
//! token on the ops listener, compared in constant time, which makes the request's admin
//! changes `Actor::AdminToken`'s (`Acting`).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderMap;

use super::error::ApiError;
use super::AppState;
use crate::domain::market::Party;
use crate::domain::operator::Actor;
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

/// The admin API's gate: the operator's token, or 401 before anything else is read. A
/// request let in by the token makes its changes as `Actor::AdminToken`.
pub async fn operator(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => {
            request.extensions_mut().insert(Actor::AdminToken);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Who makes the admin changes of a request: the `Actor` whoever let the request in put in
/// its extensions (the admin token's gate: `admin-token`; the console: the signed-in
/// operator). A request nobody vouched for acts as `unknown`, never as the admin token.
pub struct Acting(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Acting, Self::Rejection> {
        Ok(Acting(parts.extensions.get::<Actor>().cloned().unwrap_or_default()))
    }
}

/// The token is compared in constant time (`leadrouter_http::auth`).
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match leadrouter_http::auth::holds_token(headers, &state.admin_token) {
        true => Ok(()),
        false => Err(ApiError::unauthorized()),
    }
}
