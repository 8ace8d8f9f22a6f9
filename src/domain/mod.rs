//! The pure core: everything that decides, nothing that waits.
//!
//! No module below reads the clock, touches the network or the disk, or is `async`: time
//! comes in as an argument, results go out as values. That keeps every rule testable fast
//! and exhaustively (unit and property tests sit next to the code).

pub mod auction;
pub mod budget;
pub mod caps;
pub mod changes;
pub mod dedup;
pub mod eligibility;
pub mod geo;
pub mod history;
pub mod integration;
pub mod lead;
pub mod ledger;
pub mod market;
pub mod model;
pub mod money;
pub mod native_reply;
pub mod operator;
pub mod payout;
pub mod phone;
pub mod retry;
pub mod returns;
pub mod rotation;
pub mod schedule;
pub mod supplier_spec;
pub mod trace;
