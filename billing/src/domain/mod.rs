//! The pure billing core: periods, ledger facts, document drafting, dunning and report
//! arithmetic. No I/O, no async, no clock: callers pass `as_of` and the facts.

pub mod document;
pub mod dunning;
pub mod facts;
pub mod money;
pub mod period;
pub mod report;
