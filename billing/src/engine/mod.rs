//! The worker's use cases, one function each, over the SQLite store: a billing run,
//! recording a payment, reconciliation and reports.

pub mod notices;
pub mod payments;
pub mod reconcile;
pub mod reports;
pub mod run;
