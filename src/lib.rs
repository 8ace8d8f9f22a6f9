//! leadrouter: a real-time lead distribution server.
//!
//! The tree shows the architecture (see ARCHITECTURE.md): `domain` is the pure core (no I/O,
//! no async, no clock reads); `engine` orchestrates one use case per function; `store`,
//! `buyers` and `api` are the adapters at the edge. Dependencies point inward.

pub mod api;
pub mod buyers;
pub mod checkpoints;
pub mod clock;
pub mod domain;
pub mod engine;
pub mod ids;
pub mod ledger;
pub mod retention;
pub mod server;
pub mod store;
pub mod telemetry;
