//! Integration tests of the billing worker: the real router in-process sells leads through
//! its HTTP API on dates the test sets; the real `leadrouter-billing` binary follows the
//! router's gRPC ledger; the tests read documents, reports and reconciliation over HTTP.

mod harness;
#[path = "../smtp_sink/mod.rs"]
mod smtp_sink;

mod documents;
mod durability;
mod notifications;
mod payments;
mod returns;
