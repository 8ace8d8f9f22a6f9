//! Integration tests of the billing worker: the real router in-process sells leads through
//! its HTTP API on dates the test sets; the real `leadrouter-billing` binary follows the
//! router's gRPC ledger; the tests read documents, reports and reconciliation over HTTP.

mod harness;

mod documents;
mod durability;
mod payments;
mod returns;
