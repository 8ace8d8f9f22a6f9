//! leadrouter-billing: turns the router's ledger stream into documents, money owed and
//! reports (DESIGN §13).
//!
//! `domain` is pure; `engine` runs one use case per function over `store` (SQLite);
//! `consume` (gRPC), `api` (hyper) and `notify` (SMTP) are the adapters at the edge.

pub mod domain;
pub mod engine;
pub mod html;
pub mod notify;
pub mod store;
