//! What the router keeps in this process's memory between requests, beside the ports:
//! idempotency records (24 h), recent sales, returns and their page orders, the outbox's
//! live state (and `outbox_view`, what operators are shown of a message in a buyer's
//! format), decision traces, and what became of suppliers' recent leads (`outcomes`, not
//! rebuilt: counted from the node's start). Each is rebuilt at start from the journal (or the shared
//! ledger) and a checkpoint; none is an adapter of anything, so they live with the engine.

pub mod idempotency;
pub mod outbox;
pub mod outbox_view;
pub mod outcomes;
pub mod returns;
pub mod sales;
pub mod traces;
