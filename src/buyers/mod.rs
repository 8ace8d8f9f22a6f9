//! Outbound calls to buyers (DESIGN §5): signing, pings with deadlines, posts, parsing of
//! whatever a buyer answers, and a circuit breaker per endpoint.

pub mod breaker;
pub mod client;
pub mod signature;

pub use breaker::Breakers;
pub use client::{BidAnswer, BuyerClient, PostAnswer};
