//! leadrouter-billing: turns the router's ledger stream into documents, money owed and
//! reports (DESIGN §13).
//!
//! `domain` is pure; `engine` runs one use case per function over `store` (SQLite);
//! `consume` (gRPC), `api` (axum) and `notify` (SMTP) are the adapters at the edge.

pub mod api;
pub mod consume;
pub mod domain;
pub mod engine;
pub mod html;
pub mod notify;
pub mod store;
pub mod telemetry;

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
