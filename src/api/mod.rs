//! The HTTP adapter (axum on hyper 1.x, tower-http layers): the public listener (supplier and buyer endpoints, DESIGN
//! §4) and the ops listener (admin API, metrics, health, DESIGN §6). Both route tables are
//! here; auth (`caller`), admission control (`admission`, `limits`) and the one error
//! mapping (`error`) beside them; decisions live in `engine`.

pub mod admin;
pub mod admission;
pub mod bulk;
pub mod caller;
pub mod console;
pub mod docs;
pub mod error;
pub mod http;
pub mod limits;
pub mod portal;
pub mod public;
pub mod returns;
pub mod session;
pub mod web;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, MethodRouter};
use leadrouter_http::{with_common_layers, CommonLayers};
use tower_http::normalize_path::NormalizePath;

use self::admission::Reads;
use self::error::ApiError;
use self::limits::{AdmissionLimits, InFlight, RateLimits};
use crate::engine::Router;

pub struct AppState {
    pub router: Arc<Router>,
    pub admin_token: String,
    pub rate_limits: RateLimits,
    /// The embedded journal's retention (None on nodes that keep their ledger on Redis).
    pub retention: Option<Arc<crate::retention::Retention>>,
    pub limits: AdmissionLimits,
    /// Operators signed in to the console (DESIGN §15).
    pub console_sessions: session::Sessions,
    /// Buyers and suppliers signed in to the portal (DESIGN §15).
    pub portal_sessions: session::Sessions,
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
            console_sessions: session::Sessions::new("lr_console"),
            portal_sessions: session::Sessions::new("lr_portal"),
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

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Ops => "ops",
        }
    }
}

/// A listener's whole HTTP service: trailing slashes trimmed, then its routes.
pub type ApiService = NormalizePath<axum::Router>;

/// The public listener: supplier and buyer endpoints (DESIGN §4), the integration docs
/// (§5.2) and the buyer and supplier portal (§15).
pub fn public_service(state: Arc<AppState>) -> ApiService {
    // Each route is admitted knowing what it reads and its own name (the duration metric's
    // `route` label, with no lookup or allocation per request).
    let admitted = |path: &'static str, reads: Reads, handler: MethodRouter<Arc<AppState>>| {
        (path, handler.route_layer(middleware::from_fn_with_state((Arc::clone(&state), reads, path), admission::admit)))
    };
    let routes = [
        admitted("/v1/ping", Reads::Json, post(public::ping)),
        admitted("/v1/post", Reads::Json, post(public::post)),
        admitted("/v1/leads", Reads::Json, post(public::direct)),
        admitted("/v1/leads/bulk", Reads::Bulk, post(public::bulk_leads)),
        admitted("/v1/buyer/balance", Reads::Nothing, get(public::balance)),
        admitted("/v1/buyer/leads", Reads::Nothing, get(public::pull_leads)),
        admitted("/v1/returns", Reads::Json, post(returns::request)),
        admitted("/v1/returns", Reads::Nothing, get(returns::list)),
        admitted("/v1/returns/bulk", Reads::Bulk, post(returns::bulk)),
        admitted("/v1/returns/{id}", Reads::Nothing, get(returns::get)),
        admitted("/v1/supplier/returns", Reads::Nothing, get(returns::supplier_feed)),
        admitted("/v1/supplier/spec", Reads::Nothing, get(docs::supplier_spec)),
        // The one public route without a key: integration docs for anyone.
        (
            "/v1/openapi.json",
            get(docs::openapi_json).route_layer(middleware::from_fn_with_state("/v1/openapi.json", admission::open)),
        ),
    ];
    let routes = routes.into_iter().fold(axum::Router::new(), |router, (path, handler)| router.route(path, handler));
    let routes = routes.merge(portal::routes().route_layer(middleware::from_fn(admission::label)));
    service(routes, state, Listener::Public)
}

/// The ops listener: the admin API (DESIGN §6) behind the admin token, and `/metrics`,
/// `/healthz` and `/readyz`, which need none.
pub fn ops_service(state: Arc<AppState>) -> ApiService {
    let admin = admin::routes()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), admission::buffer))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), caller::operator));
    let routes = axum::Router::new()
        .route("/metrics", get(admin::metrics))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .nest("/admin/v1", admin)
        .merge(console::routes())
        .route_layer(middleware::from_fn(admission::label));
    service(routes, state, Listener::Ops)
}

/// What both listeners share around their routes: JSON 404 and 405 answers,
/// request ids (`x-request-id`, kept when the client sent one), a tracing span per request
/// (method and path only: no query, no body, so no PII), gzip for answers over 1 KiB when
/// the client asks for it, and the outer `guard`.
fn service(routes: axum::Router<Arc<AppState>>, state: Arc<AppState>, listener: Listener) -> ApiService {
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state((Arc::clone(&state), listener), admission::guard));
    // Spans at DEBUG: the hot path pays nothing for them under the default filter.
    let layers = CommonLayers { span_level: tracing::Level::DEBUG, compress_above: 1024 };
    NormalizePath::trim_trailing_slash(with_common_layers(routes, layers).with_state(state))
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
