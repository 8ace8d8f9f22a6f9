//! Integration tests: the real server in-process on ephemeral ports, real buyer HTTP
//! servers, real HTTP. One test binary, so CI links once.

mod harness;
/// The real binary as a child process (shared with the browser tests).
#[path = "../support/router_process.rs"]
mod router_process;

mod admin;
mod async_formats;
mod billing;
mod binary;
mod buyer_formats;
mod buyer_pings;
mod buyer_tls;
mod clock;
mod cluster;
mod console;
mod docs;
mod durability;
mod errors;
mod hardening;
mod hostile;
mod leases;
mod models;
mod operators;
mod outbox;
mod overspend;
mod portal;
mod redis_budget;
mod redis_claims;
mod redis_dedup;
mod redis_ledger;
mod retention;
mod retries;
mod returns;
mod storage;
mod stream;
mod test_sends;
