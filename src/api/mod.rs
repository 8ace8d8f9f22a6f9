//! The HTTP adapter (hyper 1.x): the public listener (supplier and buyer endpoints, DESIGN
//! §4) and the ops listener (admin API, metrics, health, DESIGN §6). Routing, auth,
//! admission control and the one error mapping live here; decisions live in `engine`.

pub mod admin;
pub mod bulk;
pub mod error;
pub mod http;
pub mod limits;
pub mod public;
pub mod returns;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::Request;
use tokio::sync::Semaphore;

use self::error::ApiError;
use self::http::ApiResponse;
use self::limits::{RateLimits, IN_FLIGHT_MAX};
use crate::engine::Router;
use crate::telemetry;

pub struct AppState {
    pub router: Arc<Router>,
    pub admin_token: String,
    pub rate_limits: RateLimits,
    /// The embedded journal's retention (None on nodes that keep their ledger on Redis).
    pub retention: Option<Arc<crate::retention::Retention>>,
    in_flight: Arc<Semaphore>,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(router: Arc<Router>, admin_token: String) -> AppState {
        AppState {
            router,
            admin_token,
            rate_limits: RateLimits::default(),
            retention: None,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn with_retention(mut self, retention: Option<Arc<crate::retention::Retention>>) -> AppState {
        self.retention = retention;
        self
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Ops,
}

pub async fn handle(
    state: Arc<AppState>,
    listener: Listener,
    request: Request<Incoming>,
) -> Result<ApiResponse, Infallible> {
    let started = Instant::now();
    let (route, response) = match too_large(&request) {
        Some(refusal) => ("too_large", http::error(&refusal)),
        None => match listener {
            Listener::Public => admit(&state, request).await,
            Listener::Ops => admin::route(&state, request).await,
        },
    };
    let status = response.status().as_u16().to_string();
    metrics::histogram!(telemetry::HTTP_REQUEST_DURATION_SECONDS, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// The longest request target we read (hyper's own limit, far above, answers without a body).
pub const URI_MAX_BYTES: usize = 8 * 1024;
/// The most header bytes and headers we read (hyper is set to buffer more, so that these
/// refusals carry §4's error JSON instead of hyper's empty 431).
pub const HEADER_MAX_BYTES: usize = 16 * 1024;
pub const HEADERS_MAX: usize = 100;

/// A request line or headers past our limits: 414 or 431 with the error JSON.
fn too_large<B>(request: &Request<B>) -> Option<ApiError> {
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

/// Admission for the public listener: refuse early when shutting down or overloaded.
async fn admit(state: &Arc<AppState>, request: Request<Incoming>) -> (&'static str, ApiResponse) {
    if state.is_shutting_down() {
        return ("shutdown", http::error(&ApiError::unavailable("shutting_down", "the server is shutting down")));
    }
    let Ok(_permit) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        return (
            "overload",
            http::error(&ApiError::unavailable("overloaded", "too many requests in flight; retry shortly")),
        );
    };
    public::route(state, request).await
}
