//! The worker's HTTP API (DESIGN §13): runs, documents, payments, notifications, reports
//! and reconciliation under `/billing/v1`, behind the admin token; `/metrics` and
//! `/healthz` are open. Errors use the shape of DESIGN §4.
//!
//! This module owns the routing table (`app`) and the connection loop (`serve`). The rest
//! is split by what it does to a request: `auth` checks the token, `input` reads query
//! strings, bodies and path segments into typed values, `endpoints` does the work,
//! `render` writes documents as JSON, CSV and HTML, and `error` is the one place a refusal
//! becomes an answer.

mod auth;
mod endpoints;
mod error;
mod input;
pub mod render;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use leadrouter_http::{with_common_layers, CommonLayers};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::domain::dunning::DunningPolicy;
use crate::store::Db;

pub use error::ApiError;
pub use input::{
    cursor, date, limit, parse_query, DocumentsQuery, NotificationPage, NotificationsQuery, ReportFormat, ReportParams,
};

/// A client gets this long to send a request's head; a slow or idle one loses its
/// connection instead of holding it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, open connections get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (out of file descriptors, most likely), wait before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

pub struct AppState {
    pub db: Db,
    pub token: String,
    pub policy: DunningPolicy,
}

/// The API: the routing table, the token check on `/billing/v1/`, the body limit, and
/// around it all request ids, tracing and response compression.
pub fn app(state: Arc<AppState>) -> Router {
    // Another method on an open path is a 404 there, not a 405: they always answered so.
    let routes = Router::new()
        .route("/healthz", get(endpoints::healthz).fallback(endpoints::not_found))
        .route("/metrics", get(endpoints::metrics).fallback(endpoints::not_found))
        .merge(billing(Arc::clone(&state)))
        .fallback(endpoints::not_found)
        .layer(DefaultBodyLimit::max(input::BODY_LIMIT));
    // Spans at INFO, so that whatever a handler logs (a failing store, at ERROR) names its
    // request; answers of any size are gzipped for a client that asks.
    let layers = CommonLayers { span_level: tracing::Level::INFO, compress_above: 0 };
    with_common_layers(routes, layers).with_state(state)
}

/// The routes under `/billing/v1/`, each behind the admin token.
///
/// Rationale: the token is checked before the path, so that a caller without it learns
/// nothing about which paths exist (an unknown path is 401 to it, 404 only with the token).
/// The catch-all routes carry the token check to unknown paths; a fallback would not.
fn billing(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/billing/v1/runs", post(endpoints::post_run))
        .route("/billing/v1/documents", get(endpoints::list_documents))
        .route("/billing/v1/documents/{name}", get(endpoints::get_document))
        .route("/billing/v1/invoices/{number}/payments", post(endpoints::post_payment))
        .route("/billing/v1/notifications", get(endpoints::list_notifications))
        .route("/billing/v1/reports/{name}", get(endpoints::get_report))
        .route("/billing/v1/reconciliation", get(endpoints::get_reconciliation))
        .route("/billing/v1/", any(endpoints::not_found))
        .route("/billing/v1/{*unknown}", any(endpoints::not_found))
        .method_not_allowed_fallback(endpoints::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(state, auth::admin_only))
}

/// Serves the API until `stopped` turns true, then drains open connections.
///
/// Rationale: hyper's own connection loop rather than `axum::serve`, which has neither a
/// header read timeout nor a bound on the drain.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
    let app = app(state);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = crate::stopped(&mut stopped) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests;
