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

use self::error::ApiError;
use self::http::ApiResponse;
use self::limits::{AdmissionLimits, InFlight, RateLimits};
use crate::engine::Router;
use crate::telemetry;

pub struct AppState {
    pub router: Arc<Router>,
    pub admin_token: String,
    pub rate_limits: RateLimits,
    /// The embedded journal's retention (None on nodes that keep their ledger on Redis).
    pub retention: Option<Arc<crate::retention::Retention>>,
    pub limits: AdmissionLimits,
    in_flight: InFlight,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(router: Arc<Router>, admin_token: String, limits: AdmissionLimits) -> AppState {
        AppState {
            router,
            admin_token,
            rate_limits: RateLimits::default(),
            retention: None,
            limits,
            in_flight: InFlight::new(&limits),
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
    let deadline = started + state.limits.body_timeout;
    let (route, response) = match too_large(&request) {
        Some(refusal) => ("too_large", http::error(&refusal)),
        None => match listener {
            Listener::Public if state.is_shutting_down() => {
                ("shutdown", http::error(&ApiError::unavailable("shutting_down", "the server is shutting down")))
            }
            Listener::Public => public::route(&state, request, deadline).await,
            Listener::Ops => admin::route(&state, request, deadline).await,
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
