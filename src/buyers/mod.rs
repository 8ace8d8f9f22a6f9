//! Outbound calls to buyers (DESIGN §5): signing, pings with deadlines, posts, parsing of
//! whatever a buyer answers, and a circuit breaker per endpoint.
//!
//! Layers, each testable alone: `signature` (pure), `breaker` (pure state machine, time
//! passed in), and `client`, the only part that does I/O, wiring them around one pooled
//! HTTP client (native answers are read by `domain::native_reply`, through the port's
//! `BidAnswer::of_native` / `PostAnswer::of_native`); `exchange` sends requests in a
//! buyer's own format (§5.1) through the same client, with the token flow's cache; `tls`
//! says which certificate authorities buyers' https certificates may chain to.

pub mod breaker;
pub mod client;
pub mod exchange;
mod h1;
pub mod signature;
pub mod tls;

#[cfg(test)]
mod https_tests;
#[cfg(test)]
mod tests;

pub use breaker::{BreakerConfig, BreakerState, Breakers};
pub use client::{BidAnswer, BuyerClient, PingCall, PostAnswer};
pub use tls::{BuyerTrust, TrustError};
