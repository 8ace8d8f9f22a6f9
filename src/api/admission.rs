//! The middleware a request passes before its handler, in this order: the outer `guard`
//! (request line and headers within bounds, the public listener not shutting down, the
//! request's start time, its duration metric), then on the public routes `admit` (an
//! unknown key is refused before a byte of body is read; the body is read by its deadline
//! holding a connection but no permit; only then is an in-flight permit taken, at most
//! `--max-in-flight-per-key` of them by one key) and on the admin routes `operator`
//! (`api::caller`) then `buffer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;

use super::caller::Caller;
use super::error::ApiError;
use super::http::{read_body, BODY_LIMIT_BYTES, BULK_BODY_LIMIT_BYTES};
use super::{AppState, Listener};
use crate::telemetry;

/// The longest request target we read (hyper's own limit, far above, answers without a body).
pub const URI_MAX_BYTES: usize = 8 * 1024;
/// The most header bytes and headers we read (hyper is set to buffer more, so that these
/// refusals carry §4's error JSON instead of hyper's empty 431).
pub const HEADER_MAX_BYTES: usize = 16 * 1024;
pub const HEADERS_MAX: usize = 100;
/// A bulk body of 16 MiB gets at least this long, however short `--body-timeout-ms` is.
const BULK_BODY_TIME: Duration = Duration::from_secs(60);

/// When the request started: its body's deadline counts from here.
#[derive(Debug, Clone, Copy)]
pub struct Started(pub Instant);

/// The route a response answered, for the duration metric (`unmatched` when none did).
#[derive(Debug, Clone)]
enum Answered {
    /// A public route, named when its table was built.
    Named(&'static str),
    /// An ops route, as it matched.
    Matched(MatchedPath),
}

/// The outermost layer of both listeners.
pub async fn guard(
    State((state, listener)): State<(Arc<AppState>, Listener)>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    request.extensions_mut().insert(Started(started));
    let response = if let Some(refusal) = too_large(&request) {
        refusal.into_response()
    } else if listener == Listener::Public && state.is_shutting_down() {
        ApiError::unavailable("shutting_down", "the server is shutting down").into_response()
    } else {
        next.run(request).await
    };
    let route = match response.extensions().get::<Answered>() {
        None => "unmatched",
        Some(Answered::Named(route)) => route,
        Some(Answered::Matched(matched)) => matched.as_str(),
    };
    telemetry::meters::http_request(route, response.status(), started.elapsed().as_secs_f64());
    response
}

/// Marks the response with the route that answered it (a route layer of the ops listener,
/// where the matched path is known; public routes are named by `admit`).
pub async fn label(matched: MatchedPath, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Answered::Matched(matched));
    response
}

/// A public route that needs no key (the OpenAPI document): only named for the duration
/// metric, as `admit` names the others.
pub async fn open(State(route): State<&'static str>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Answered::Named(route));
    response
}

/// A request line or headers past our limits: 414 or 431 with the error JSON.
fn too_large<B>(request: &http::Request<B>) -> Option<ApiError> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > URI_MAX_BYTES {
        return Some(ApiError::new(414, "uri_too_long", format!("the request target is over {URI_MAX_BYTES} bytes")));
    }
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers.len() > HEADERS_MAX || bytes > HEADER_MAX_BYTES {
        let message = format!("at most {HEADERS_MAX} headers and {HEADER_MAX_BYTES} bytes of them");
        return Some(ApiError::new(431, "headers_too_large", message));
    }
    None
}

/// What a public route reads before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// No body (a GET): whatever was sent is not read.
    Nothing,
    /// A JSON body of at most 64 KiB.
    Json,
    /// A CSV body of at most 16 MiB, read while one of 16 bulk places is held.
    Bulk,
}

/// Admission of a public request (see the module doc for the order).
pub async fn admit(
    State((state, reads, route)): State<(Arc<AppState>, Reads, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match admitted(&state, reads, request, next).await {
        Ok(response) | Err(response) => response,
    };
    response.extensions_mut().insert(Answered::Named(route));
    response
}

async fn admitted(state: &AppState, reads: Reads, request: Request, next: Next) -> Result<Response, Response> {
    let (mut parts, body) = request.into_parts();
    let refuse = |error: ApiError| error.into_response();
    let caller = Caller::identify(state, &parts.headers).map_err(refuse)?;
    let deadline = deadline(&parts.extensions, state.limits.body_timeout);
    let (body, _bulk) = match reads {
        Reads::Nothing => (Body::empty(), None),
        Reads::Json => {
            let bytes = read_body(&parts.headers, body, BODY_LIMIT_BYTES, deadline).await.map_err(refuse)?;
            (Body::from(bytes), None)
        }
        Reads::Bulk => {
            // Held until the answer: a bulk body stays in memory while its rows are sold.
            let place = state.in_flight.bulk_read().ok_or_else(|| refuse(overloaded()))?;
            let deadline = deadline.max(Instant::now() + BULK_BODY_TIME);
            let bytes = read_body(&parts.headers, body, BULK_BODY_LIMIT_BYTES, deadline).await.map_err(refuse)?;
            (Body::from(bytes), Some(place))
        }
    };
    let _permit = state.in_flight.admit(&caller.0).ok_or_else(|| refuse(overloaded()))?;
    parts.extensions.insert(caller);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// Reads an admin request's body (64 KiB, by the body deadline) once the token is checked.
pub async fn buffer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET {
        return next.run(Request::from_parts(parts, Body::empty())).await;
    }
    let deadline = deadline(&parts.extensions, state.limits.body_timeout);
    match read_body(&parts.headers, body, BODY_LIMIT_BYTES, deadline).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(error) => error.into_response(),
    }
}

fn deadline(extensions: &http::Extensions, body_timeout: Duration) -> Instant {
    let started = extensions.get::<Started>().map_or_else(Instant::now, |started| started.0);
    started + body_timeout
}

fn overloaded() -> ApiError {
    ApiError::unavailable("overloaded", "too many requests in flight; retry shortly")
}
