//! The pooled HTTP client for buyer pings and posts. (STUB: helper fills in.)

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::domain::money::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidAnswer {
    Bid(Money),
    NoBid,
    Timeout,
    /// The call failed or the answer made no sense; the text says why (never buyer data).
    Error(String),
    /// The endpoint's circuit breaker is open: no call was made.
    CircuitOpen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAnswer {
    Accepted,
    Rejected(String),
    Timeout,
    Error(String),
    CircuitOpen,
}

pub struct PingCall {
    pub url: String,
    pub secret: String,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct BuyerClient {}

impl BuyerClient {
    pub fn new() -> BuyerClient {
        BuyerClient {}
    }

    /// POSTs a signed ping body to `url`; answers by `deadline` at the latest.
    pub async fn ping(&self, _url: &str, _secret: &str, _body: Bytes, _deadline: Instant) -> (BidAnswer, Duration) {
        todo!()
    }

    pub async fn ping_all(&self, _calls: Vec<PingCall>, _deadline: Instant) -> Vec<(BidAnswer, Duration)> {
        todo!()
    }

    /// POSTs a signed lead body to `url`; answers by `deadline` at the latest.
    pub async fn post(&self, _url: &str, _secret: &str, _body: Bytes, _deadline: Instant) -> (PostAnswer, Duration) {
        todo!()
    }
}

impl Default for BuyerClient {
    fn default() -> Self {
        BuyerClient::new()
    }
}
